//! Where a snapshot lives: a local path, or an object in S3-compatible storage.
//!
//! In the spirit of Litestream's replica clients, the commands (export, ls, verify, restore)
//! are written once against a [`SnapshotLocation`] and the two sides beside this file do the
//! storage work: [`file`] lists a local directory (export, verify and restore of local files
//! are the long-standing code paths, unchanged), [`s3`] uploads, lists, downloads and deletes
//! objects.
//!
//! A remote export is the local export into a private temp file (copied, checked, fsynced)
//! followed by an upload of that verified file; a remote verify or restore first downloads the
//! object into a private temp file and checks it against the sha256 the upload stored in the
//! object's metadata, and only then opens it with SQLite. Temp files live in the system temp
//! directory (`$TMPDIR`), so a backup user needs no write access beside the database.

mod file;
mod s3;

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use serde::Serialize;

use super::export::{copy_into, millis, retention_prefix};
use super::names::{snapshot_file_name, split};
use super::temp::{TempSnapshot, sweep};
use super::verify::verify;
use super::{RestoreOptions, RestoreReport, SnapshotInfo, SnapshotOptions, SnapshotReport};
use crate::error::{Error, Result};
use crate::store::{Options, Store};

pub use s3::S3Location;

/// A snapshot destination or source as a user writes it: a path, or `s3://bucket/key`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SnapshotLocation {
    /// A file or directory on this machine.
    Local(PathBuf),
    /// `s3://bucket/key` or a prefix ending in `/`.
    S3(S3Location),
}

impl SnapshotLocation {
    /// Parses a command-line argument. Anything that looks like a URL (`scheme://…`) is a URL:
    /// `s3://` is supported, every other scheme is refused rather than taken as a local path
    /// (a directory named `gs:` would make a backup job believe it had shipped its backup).
    pub fn parse(text: &OsStr) -> Result<SnapshotLocation> {
        let Some(text_str) = text.to_str() else {
            // Not UTF-8: not a URL, a local path.
            return Ok(SnapshotLocation::Local(PathBuf::from(text)));
        };
        let Some((scheme, rest)) = url_scheme(text_str) else {
            return Ok(SnapshotLocation::Local(PathBuf::from(text)));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "s3" => Ok(SnapshotLocation::S3(S3Location::parse(text_str, rest)?)),
            _ => Err(Error::Invalid(format!(
                "unsupported snapshot location {text_str}: only local paths and s3://bucket/prefix/ are supported (for a local directory whose name looks like a URL, write ./{text_str})"
            ))),
        }
    }

    /// The location as the user would write it.
    pub fn display(&self) -> String {
        match self {
            SnapshotLocation::Local(path) => path.display().to_string(),
            SnapshotLocation::S3(s3) => s3.to_string(),
        }
    }
}

impl fmt::Display for SnapshotLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display())
    }
}

impl From<PathBuf> for SnapshotLocation {
    fn from(path: PathBuf) -> Self {
        SnapshotLocation::Local(path)
    }
}

impl TryFrom<OsString> for SnapshotLocation {
    type Error = Error;
    fn try_from(text: OsString) -> Result<Self> {
        SnapshotLocation::parse(&text)
    }
}

/// `(scheme, rest)` of `scheme://rest`, the scheme as RFC 3986 defines it.
fn url_scheme(text: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = text.split_once("://")?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    (first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
    .then_some((scheme, rest))
}

/// One snapshot found by [`Store::list_snapshots`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SnapshotEntry {
    /// Where it is: a path, or an `s3://` URL.
    pub location: String,
    /// The file or object name, `<prefix>-<UTC timestamp>.db`.
    pub name: String,
    /// When it was taken, from its name (RFC 3339, UTC).
    pub taken_at: String,
    /// Its size in bytes.
    pub bytes: u64,
}

impl SnapshotEntry {
    fn new(location: String, name: &str, bytes: u64) -> Option<SnapshotEntry> {
        let (_, timestamp) = split(name)?;
        Some(SnapshotEntry {
            location,
            name: name.to_owned(),
            taken_at: rfc3339(timestamp),
            bytes,
        })
    }
}

/// `20261122T125726.123Z` → `2026-11-22T12:57:26.123Z`.
fn rfc3339(t: &str) -> String {
    format!(
        "{}-{}-{}T{}:{}:{}",
        &t[0..4],
        &t[4..6],
        &t[6..8],
        &t[9..11],
        &t[11..13],
        &t[13..]
    )
}

/// Newest last: names sort by their fixed-width UTC timestamp.
fn sort_by_time(entries: &mut [SnapshotEntry]) {
    entries.sort_by(|a, b| a.taken_at.cmp(&b.taken_at).then(a.name.cmp(&b.name)));
}

impl Store {
    /// Exports a snapshot to `location`: a local path exactly as [`Store::snapshot`], or an
    /// S3 object. For S3, the snapshot is made and checked in a private temp file first and
    /// then uploaded; the object appears under its final name only once complete, carries the
    /// file's sha256 in its metadata, and never replaces an existing object.
    pub fn snapshot_to(
        &self,
        location: &SnapshotLocation,
        options: &SnapshotOptions,
    ) -> Result<SnapshotReport> {
        match location {
            SnapshotLocation::Local(path) => self.snapshot(path, options),
            SnapshotLocation::S3(target) => self.snapshot_to_s3(target, options),
        }
    }

    fn snapshot_to_s3(
        &self,
        target: &S3Location,
        options: &SnapshotOptions,
    ) -> Result<SnapshotReport> {
        let started = Instant::now();
        // `s3://bucket/team` most likely means the prefix `team/`: an object named `team`
        // would be a snapshot nobody finds. A key must say it is a database file.
        if !target.is_prefix() && !target.name().ends_with(".db") {
            return Err(Error::Invalid(format!(
                "{target} is neither a prefix nor a .db key; write {}/ for a timestamped snapshot under it, or a key ending in .db",
                target.to_string().trim_end_matches('/')
            )));
        }
        let client = s3::Client::connect(target)?;
        let prefix = self.snapshot_prefix();
        let (key, retention) = if target.is_prefix() {
            let retention = options.keep.map(|keep| (prefix.clone(), keep.get()));
            (None, retention)
        } else {
            let retention = match options.keep {
                Some(keep) => Some((retention_prefix(Path::new(target.name()))?, keep.get())),
                None => None,
            };
            (Some(target.clone()), retention)
        };

        let temp_dir = std::env::temp_dir();
        let swept = sweep(&temp_dir);
        let temp = TempSnapshot::create(&temp_dir)?;
        let mut info = copy_into(self, &temp, options.progress.as_ref())?;
        temp.sync()?;

        let uploaded = match key {
            Some(key) => {
                client.upload(&key, temp.path(), info.bytes)?;
                key
            }
            // A timestamped name: on the rare clash with an existing object (two exporters in
            // the same millisecond) take the next millisecond rather than overwrite.
            None => {
                let mut attempts = 0;
                loop {
                    let name = snapshot_file_name(&prefix, SystemTime::now());
                    let key = target.join(&name);
                    match client.upload(&key, temp.path(), info.bytes) {
                        Err(s3::UploadError::Exists(_)) if attempts < 8 => {
                            attempts += 1;
                            std::thread::sleep(std::time::Duration::from_millis(1));
                        }
                        other => {
                            other?;
                            break key;
                        }
                    }
                }
            }
        };
        drop(temp);
        info.path = PathBuf::from(uploaded.to_string());

        let removed = match retention {
            Some((prefix, keep)) => client
                .retain(&uploaded.parent(), &prefix, keep, &uploaded)?
                .into_iter()
                .map(|key| PathBuf::from(key.to_string()))
                .collect(),
            None => Vec::new(),
        };
        Ok(SnapshotReport {
            info,
            elapsed_ms: millis(started.elapsed()),
            removed,
            swept,
        })
    }

    /// The snapshots in a directory or under an S3 prefix, oldest first: every file or object
    /// named `<prefix>-<UTC timestamp>.db`, whatever the prefix. Other names are not listed.
    pub fn list_snapshots(location: &SnapshotLocation) -> Result<Vec<SnapshotEntry>> {
        let mut entries = match location {
            SnapshotLocation::Local(dir) => file::list(dir)?,
            SnapshotLocation::S3(target) => {
                s3::Client::connect(target)?.list(&target.as_prefix())?
            }
        };
        sort_by_time(&mut entries);
        Ok(entries)
    }

    /// [`Store::verify_snapshot`] for a local path or an S3 object. An S3 object is downloaded
    /// and checked against the sha256 in its metadata (`Integrity` on a mismatch) before SQLite
    /// opens it. An S3 prefix (`s3://bucket/dir/`) means its newest snapshot.
    pub fn verify_snapshot_at(location: &SnapshotLocation) -> Result<SnapshotInfo> {
        match location {
            SnapshotLocation::Local(path) => Store::verify_snapshot(path),
            SnapshotLocation::S3(target) => {
                let downloaded = Downloaded::fetch(target, None)?;
                let mut info = verify(downloaded.temp.path(), Options::default().busy_timeout)?;
                info.path = PathBuf::from(downloaded.source.to_string());
                Ok(info)
            }
        }
    }

    /// [`Store::restore`] from a local path or an S3 object (downloaded and checked against
    /// its sha256 first; nothing in the database changes if that fails). An S3 prefix means
    /// its newest snapshot.
    pub fn restore_from(
        &self,
        location: &SnapshotLocation,
        options: &RestoreOptions,
    ) -> Result<RestoreReport> {
        match location {
            SnapshotLocation::Local(path) => self.restore(path, options),
            SnapshotLocation::S3(target) => {
                let started = Instant::now();
                // From a prefix, only this database's own snapshots are candidates: another
                // database sharing the prefix must never be restored over this one by accident.
                let downloaded = Downloaded::fetch(target, Some(&self.snapshot_prefix()))?;
                let mut report = self.restore(downloaded.temp.path(), options)?;
                report.restored.path = PathBuf::from(downloaded.source.to_string());
                report.elapsed_ms = millis(started.elapsed());
                Ok(report)
            }
        }
    }
}

/// An S3 snapshot downloaded into a private temp file, its sha256 already checked.
struct Downloaded {
    source: S3Location,
    temp: TempSnapshot,
}

impl Downloaded {
    /// `target` is an object, or a prefix meaning its newest snapshot (of the name prefix
    /// `only`, when given).
    fn fetch(target: &S3Location, only: Option<&str>) -> Result<Downloaded> {
        let client = s3::Client::connect(target)?;
        let source = if target.is_prefix() {
            let newest = client
                .list(target)?
                .into_iter()
                .filter(|e| only.is_none_or(|p| split(&e.name).is_some_and(|(q, _)| q == p)))
                .max_by(|a, b| a.taken_at.cmp(&b.taken_at).then(a.name.cmp(&b.name)));
            match (newest, only) {
                (Some(entry), _) => target.join(&entry.name),
                (None, None) => {
                    return Err(Error::NotFound(format!(
                        "no snapshot under {target}; export one with `modstate snapshot export {target}`"
                    )));
                }
                (None, Some(prefix)) => {
                    return Err(Error::NotFound(format!(
                        "no snapshot of this database ({prefix}-<UTC timestamp>.db) under {target}; `modstate snapshot ls {target}` lists what is there, and a full key restores any of them"
                    )));
                }
            }
        } else {
            target.clone()
        };
        let temp_dir = std::env::temp_dir();
        sweep(&temp_dir);
        let temp = TempSnapshot::create(&temp_dir)?;
        client.download(&source, &temp)?;
        Ok(Downloaded { source, temp })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<SnapshotLocation> {
        SnapshotLocation::parse(OsStr::new(text))
    }

    #[test]
    fn paths_stay_paths_and_urls_are_urls() {
        assert_eq!(
            parse("backups/").unwrap(),
            SnapshotLocation::Local(PathBuf::from("backups/"))
        );
        assert_eq!(
            parse("./s3://x").unwrap(),
            SnapshotLocation::Local(PathBuf::from("./s3://x"))
        );
        assert_eq!(
            parse("s3:backups").unwrap(),
            SnapshotLocation::Local(PathBuf::from("s3:backups"))
        );
        let SnapshotLocation::S3(s3) = parse("s3://backups/team/").unwrap() else {
            panic!("not s3");
        };
        assert_eq!(s3.to_string(), "s3://backups/team/");
        assert!(s3.is_prefix());
        for bad in [
            "gs://b/p/",
            "https://example.com/x",
            "S4://b/",
            "file:///tmp/x",
        ] {
            let err = parse(bad).unwrap_err();
            assert!(matches!(err, Error::Invalid(_)), "{bad}: {err}");
        }
    }

    #[test]
    fn timestamps_render_as_rfc3339() {
        assert_eq!(rfc3339("20261122T125726.123Z"), "2026-11-22T12:57:26.123Z");
    }
}
