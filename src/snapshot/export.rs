//! `Store::snapshot`: the online copy, checked and renamed into place.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use super::names::{prefix_of, retain, snapshot_file_name};
use super::temp::{TempSnapshot, sweep};
use super::{CopyProgress, ProgressFn, SnapshotInfo, SnapshotOptions, SnapshotReport, same_file};
use crate::error::{Error, Result};
use crate::private::create_private_dir;
use crate::store::{Location, Store, is_storage_failure};

impl Store {
    /// Exports a consistent snapshot of the database to `dest` without stopping writers.
    ///
    /// `dest` is a file path, or a directory (existing, or written with a trailing `/`) in
    /// which the snapshot is named `<db name>-<UTC timestamp>.db`. On any failure `dest` is
    /// untouched and no temp file remains.
    pub fn snapshot(
        &self,
        dest: impl AsRef<Path>,
        options: &SnapshotOptions,
    ) -> Result<SnapshotReport> {
        let started = Instant::now();
        let (dir, dest) = self.resolve_destination(dest.as_ref())?;
        let retention = match options.keep {
            Some(keep) => Some((retention_prefix(&dest)?, keep.get())),
            None => None,
        };
        let swept = sweep(&dir);

        let temp = TempSnapshot::create(&dir)?;
        let mut info = copy_into(self, &temp, options.progress.as_ref())
            .map_err(|e| explain_write_failure(e, &dir, &dest))?;
        temp.sync()?;
        refuse_hot_journal(&dest)?;
        temp.persist(&dest)?;
        info.path = dest.clone();
        // The export's read transaction pinned the WAL; now that it is over, bring the WAL back
        // under its limit if nobody else needs its frames. Never waits; best effort.
        let _ = self.shrink_wal();

        let removed = match retention {
            Some((prefix, keep)) => retain(&dir, &prefix, keep, &dest)?,
            None => Vec::new(),
        };
        Ok(SnapshotReport {
            info,
            elapsed_ms: millis(started.elapsed()),
            removed,
            swept,
        })
    }

    /// `(directory, file path)` of the snapshot to write; refuses the live database itself.
    fn resolve_destination(&self, dest: &Path) -> Result<(PathBuf, PathBuf)> {
        let as_dir = dest.is_dir() || dest.as_os_str().to_string_lossy().ends_with('/');
        let (dir, name) = if as_dir {
            if !dest.exists() {
                create_private_dir(dest)?;
            }
            (dest.to_path_buf(), self.timestamped_name(dest))
        } else {
            let name = dest.file_name().ok_or_else(|| {
                Error::Invalid(format!(
                    "snapshot path {} names no file; give a file or a directory",
                    dest.display()
                ))
            })?;
            let dir = match dest.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            };
            if !dir.exists() {
                create_private_dir(&dir)?;
            }
            (dir, name.to_string_lossy().into_owned())
        };
        let dest = dir.join(name);
        if self.is_live_file(&dir, &dest) {
            return Err(Error::Invalid(format!(
                "snapshot path {} is the live database (or one of its files); choose another path",
                dest.display()
            )));
        }
        Ok((dir, dest))
    }

    /// `<db stem>-<now>.db`, not yet taken in `dir`.
    fn timestamped_name(&self, dir: &Path) -> String {
        let prefix = self.snapshot_prefix();
        loop {
            let name = snapshot_file_name(&prefix, SystemTime::now());
            if !dir.join(&name).exists() {
                return name;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// The name prefix of this database's snapshots: the database file's stem, or for a
    /// server database its name (`postgres://…/team` → `team-<UTC timestamp>.db`), so an
    /// export into a directory and `snapshot restore s3://bucket/prefix/` find the same
    /// series whichever backend wrote it.
    pub(super) fn snapshot_prefix(&self) -> String {
        let name = match self.location() {
            Location::File { path, .. } => path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            Location::Server { url } => server_database_name(url),
        };
        if name.is_empty() {
            "modstate".to_owned()
        } else {
            name
        }
    }

    /// Whether `dest` is the database or one of SQLite's files beside it (never, for a
    /// server database: no file of it is on this machine).
    fn is_live_file(&self, dir: &Path, dest: &Path) -> bool {
        let Some(db) = self.file() else {
            return false;
        };
        if same_file(dest, db) {
            return true;
        }
        let (Ok(db_canonical), Ok(dir_canonical)) = (db.canonicalize(), dir.canonicalize()) else {
            return false;
        };
        let Some(name) = dest.file_name() else {
            return false;
        };
        let dest_canonical = dir_canonical.join(name);
        ["", "-wal", "-shm", "-journal"].iter().any(|suffix| {
            let mut live = db_canonical.as_os_str().to_owned();
            live.push(suffix);
            dest_canonical.as_os_str() == live
        })
    }
}

/// The database name in a server store's displayed URL (`postgres://user@host:port/NAME` or
/// `postgres://user@/NAME?host=…`), made safe as a file name: anything but ASCII letters,
/// digits, `.`, `_` and `-` becomes `_`. Empty when the URL names none.
pub(super) fn server_database_name(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let name = rest
        .split_once('/')
        .map_or("", |(_, path)| path.split(['?', '#']).next().unwrap_or(""));
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect::<String>()
        .trim_start_matches('.')
        .to_owned()
}

/// The prefix retention applies to: the pattern the destination name follows.
pub(super) fn retention_prefix(dest: &Path) -> Result<String> {
    dest.file_name()
        .and_then(|n| n.to_str())
        .and_then(prefix_of)
        .map(str::to_owned)
        .ok_or_else(|| {
            Error::Invalid(format!(
                "--keep needs snapshots named <name>-<UTC timestamp>.db, and {} is not; pass a directory instead",
                dest.display()
            ))
        })
}

/// Copies the live database into the empty file at `temp` and checks the copy. Returns the
/// copy's facts (path filled in by the caller).
pub(super) fn copy_into(
    store: &Store,
    temp_file: &TempSnapshot,
    progress: Option<&ProgressFn>,
) -> Result<SnapshotInfo> {
    store
        .backend()
        .export_snapshot(temp_file.path(), &mut |p: CopyProgress| {
            // Pages written so far start going to disk now, so the final fsync waits less.
            temp_file.start_writeback();
            if let Some(progress) = progress {
                progress(p);
            }
        })
}

/// A failed copy says what happened to the destination and what to do.
fn explain_write_failure(error: Error, dir: &Path, dest: &Path) -> Error {
    if !is_storage_failure(&error) {
        return error;
    }
    Error::Io {
        action: "writing the snapshot copy into",
        path: dir.to_path_buf(),
        source: std::io::Error::other(format!(
            "{error} (disk full, file size limit, or a failing disk); {} was left as it was — free space or raise the limit and retry",
            dest.display()
        )),
    }
}

/// A `-journal` or `-wal` beside the destination belongs to whoever had the OLD snapshot open
/// for writing; SQLite would apply it to the new file and corrupt it.
fn refuse_hot_journal(dest: &Path) -> Result<()> {
    for suffix in ["-journal", "-wal"] {
        let mut name = dest.as_os_str().to_owned();
        name.push(suffix);
        let path = PathBuf::from(name);
        if path.symlink_metadata().is_ok() {
            return Err(Error::Invalid(format!(
                "{} exists: something has the old snapshot open for writing; close it (or remove that file if nothing does) and retry",
                path.display()
            )));
        }
    }
    Ok(())
}

pub(crate) fn millis(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::server_database_name;

    #[test]
    fn a_server_database_is_named_by_its_database_name() {
        assert_eq!(server_database_name("postgres://u@h:5432/team"), "team");
        assert_eq!(
            server_database_name("postgres://u@/dev?host=/tmp/pg&port=5"),
            "dev"
        );
        assert_eq!(
            server_database_name("postgres://u@h:5432/a b/../c"),
            "a_b_.._c"
        );
        assert_eq!(server_database_name("postgres://u@h:5432/"), "");
        assert_eq!(server_database_name("postgres://u@h:5432"), "");
    }
}
