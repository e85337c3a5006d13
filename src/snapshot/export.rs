//! `Store::snapshot`: the online copy, checked and renamed into place.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

use super::names::{prefix_of, retain, snapshot_file_name};
use super::temp::{TempSnapshot, sweep};
use super::{
    CopyProgress, ProgressFn, SnapshotInfo, SnapshotOptions, SnapshotReport, counts,
    integrity_check, page_count, same_file,
};
use crate::error::{Error, Result, SqlContext};
use crate::lock::create_private_dir;
use crate::store::Store;

/// Pages copied per backup step: between steps the progress display is updated. All steps run
/// inside one read transaction, so the number of steps does not affect consistency.
const PAGES_PER_STEP: i32 = 4096;

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
        let prefix = self
            .path()
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "modstate".to_owned());
        loop {
            let name = snapshot_file_name(&prefix, SystemTime::now());
            if !dir.join(&name).exists() {
                return name;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Whether `dest` is the database or one of SQLite's files beside it.
    fn is_live_file(&self, dir: &Path, dest: &Path) -> bool {
        let db = self.path();
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

/// The prefix retention applies to: the pattern the destination name follows.
fn retention_prefix(dest: &Path) -> Result<String> {
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
/// copy's facts (path filled in by the caller). Both connections are closed on return.
fn copy_into(
    store: &Store,
    temp_file: &TempSnapshot,
    progress: Option<&ProgressFn>,
) -> Result<SnapshotInfo> {
    let temp = temp_file.path();
    let busy_timeout = store.options().busy_timeout;
    let source = Connection::open_with_flags(
        store.path(),
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| Error::sqlite(format!("opening {}", store.path().display()), e))?;
    source
        .busy_timeout(busy_timeout)
        .context("setting busy_timeout")?;
    // Pin one read snapshot for the whole copy: later commits by any other connection are
    // invisible to it, so the backup never restarts and never mixes two states.
    source
        .execute_batch("BEGIN")
        .context("starting the snapshot's read transaction")?;
    source
        .query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))
        .context("starting the snapshot's read transaction")?;
    let (_, page_size) = page_count(&source)?;

    let mut dest = Connection::open_with_flags(
        temp,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| Error::sqlite(format!("opening {}", temp.display()), e))?;
    // The file is fsynced once, after the copy; a crash before that leaves a temp file only.
    dest.pragma_update(None, "synchronous", "OFF")
        .context("configuring the snapshot copy")?;

    {
        let backup = Backup::new(&source, &mut dest).context("starting the backup")?;
        let deadline = Instant::now() + busy_timeout;
        loop {
            match backup
                .step(PAGES_PER_STEP)
                .context("copying the database")?
            {
                StepResult::Done => break,
                StepResult::Busy | StepResult::Locked => {
                    if Instant::now() >= deadline {
                        return Err(Error::Busy(
                            "the database stayed locked while starting the snapshot copy; retry, or raise --lock-timeout".to_owned(),
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                // More (and any future non-final result): keep stepping.
                _ => {}
            }
            // Pages written so far start going to disk now, so the final fsync waits less.
            temp_file.start_writeback();
            if let Some(progress) = progress {
                let p = backup.progress();
                let total = p.pagecount.max(0) as u64;
                progress(CopyProgress {
                    copied_pages: total.saturating_sub(p.remaining.max(0) as u64),
                    total_pages: total,
                    page_size,
                });
            }
        }
    }
    // End the read transaction now: it holds back WAL checkpoints for everyone.
    drop(source);

    // The copy's header still says WAL (copied from the source); make it a self-contained
    // single file that needs no -wal to be read.
    let mode: String = dest
        .query_row("PRAGMA journal_mode=DELETE", [], |r| r.get(0))
        .context("switching the snapshot to a rollback journal")?;
    if !mode.eq_ignore_ascii_case("delete") {
        return Err(Error::Integrity(format!(
            "the snapshot copy stayed in journal mode {mode}; it was not kept"
        )));
    }
    integrity_check(&dest, "the snapshot copy")?;
    let (pages, _) = page_count(&dest)?;
    let schema_version: u32 = dest
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .context("reading the schema version")?;
    let (artifacts, memories) = counts(&dest)?;
    dest.close()
        .map_err(|(_, e)| Error::sqlite("closing the snapshot copy", e))?;
    let bytes = temp
        .metadata()
        .map_err(|e| Error::io("reading the size of", temp, e))?
        .len();
    Ok(SnapshotInfo {
        path: temp.to_path_buf(),
        bytes,
        pages,
        schema_version,
        artifacts,
        memories,
    })
}

/// A failed copy says what happened to the destination and what to do.
fn explain_write_failure(error: Error, dir: &Path, dest: &Path) -> Error {
    let Error::Database { source, context } = &error else {
        return error;
    };
    let Some(code) = source
        .downcast_ref::<rusqlite::Error>()
        .and_then(rusqlite::Error::sqlite_error_code)
    else {
        return error;
    };
    match code {
        rusqlite::ErrorCode::DiskFull | rusqlite::ErrorCode::SystemIoFailure => Error::Io {
            action: "writing the snapshot copy into",
            path: dir.to_path_buf(),
            source: std::io::Error::other(format!(
                "{source} while {context} (disk full, file size limit, or a failing disk); {} was left as it was — free space or raise the limit and retry",
                dest.display()
            )),
        },
        _ => error,
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
