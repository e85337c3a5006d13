//! Snapshot file names `<prefix>-<YYYYMMDDTHHMMSS.mmmZ>.db` and retention over them.
//!
//! The timestamp is fixed-width UTC, so names sort in time order; retention relies on the name
//! alone (never on mtime, which a copy or a restore from backup media changes).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::error::{Error, Result};

/// `20261122T125726.123Z`: 20 characters.
const TIMESTAMP_LEN: usize = 20;
const EXTENSION: &str = ".db";

/// `<prefix>-<UTC timestamp>.db` for the instant `at`.
pub fn snapshot_file_name(prefix: &str, at: SystemTime) -> String {
    let rfc3339 = humantime::format_rfc3339_millis(at).to_string();
    let compact: String = rfc3339.chars().filter(|c| *c != '-' && *c != ':').collect();
    format!("{prefix}-{compact}{EXTENSION}")
}

/// Whether `name` is `<prefix>-<UTC timestamp>.db` for exactly this prefix.
pub fn is_snapshot_name(name: &str, prefix: &str) -> bool {
    split(name).is_some_and(|(p, _)| p == prefix)
}

/// The prefix of a snapshot name, if `name` follows the pattern.
pub(crate) fn prefix_of(name: &str) -> Option<&str> {
    split(name).map(|(prefix, _)| prefix)
}

/// `(prefix, timestamp)` of a name that follows the pattern.
pub(crate) fn split(name: &str) -> Option<(&str, &str)> {
    let stem = name.strip_suffix(EXTENSION)?;
    let split_at = stem.len().checked_sub(TIMESTAMP_LEN + 1)?;
    if !stem.is_char_boundary(split_at) {
        return None;
    }
    let (prefix, rest) = stem.split_at(split_at);
    let timestamp = rest.strip_prefix('-')?;
    if prefix.is_empty() || !is_timestamp(timestamp) {
        return None;
    }
    Some((prefix, timestamp))
}

/// `DDDDDDDDTDDDDDD.DDDZ`.
fn is_timestamp(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == TIMESTAMP_LEN
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 => *b == b'T',
            15 => *b == b'.',
            19 => *b == b'Z',
            _ => b.is_ascii_digit(),
        })
}

/// Deletes the oldest snapshots named `<prefix>-<timestamp>.db` in `dir` so that `keep` remain,
/// counting `just_written`, which is never deleted. Other files are never touched. Returns the
/// deleted paths, oldest first.
pub(crate) fn retain(
    dir: &Path,
    prefix: &str,
    keep: usize,
    just_written: &Path,
) -> Result<Vec<PathBuf>> {
    let entries = fs::read_dir(dir).map_err(|e| Error::io("listing", dir, e))?;
    let mut older: Vec<(String, String)> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("listing", dir, e))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let Some((p, timestamp)) = split(&name) else {
            continue;
        };
        if p != prefix || just_written.file_name() == Some(entry.file_name().as_os_str()) {
            continue;
        }
        // Only regular files: a directory or symlink that happens to match is not ours.
        match entry.path().symlink_metadata() {
            Ok(meta) if meta.is_file() => older.push((timestamp.to_owned(), name)),
            _ => continue,
        }
    }
    older.sort();
    let excess = older.len().saturating_sub(keep.saturating_sub(1));
    let mut removed = Vec::with_capacity(excess);
    for (_, name) in older.into_iter().take(excess) {
        let path = dir.join(name);
        match fs::remove_file(&path) {
            Ok(()) => removed.push(path),
            // Another exporter's retention got there first.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("removing old snapshot", &path, e)),
        }
    }
    if !removed.is_empty() {
        // Best effort: the removals are durable once the directory is synced; a crash before
        // that only brings an old snapshot back.
        if let Ok(handle) = fs::File::open(dir) {
            let _ = handle.sync_all();
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn names_round_trip_and_sort_by_time() {
        let early = snapshot_file_name(
            "state",
            UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
        );
        let late = snapshot_file_name(
            "state",
            UNIX_EPOCH + Duration::from_millis(1_800_000_000_000),
        );
        assert_eq!(early, "state-20231114T221320.123Z.db");
        assert!(is_snapshot_name(&early, "state"));
        assert!(early < late);
        assert_eq!(prefix_of("my-db-20231114T221320.123Z.db"), Some("my-db"));
    }

    #[test]
    fn other_names_do_not_match() {
        for name in [
            "state.db",
            "state-20231114T221320.123Z.db-journal",
            "state-20231114T221320.123.db",
            "state-2023111xT221320.123Z.db",
            "-20231114T221320.123Z.db",
            "state-pre-restore.db",
            "20231114T221320.123Z.db",
        ] {
            assert_eq!(prefix_of(name), None, "{name}");
        }
        assert!(!is_snapshot_name("other-20231114T221320.123Z.db", "state"));
    }
}
