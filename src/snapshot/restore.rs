//! `Store::restore`: copy a verified snapshot INTO the live database.
//!
//! Never a rename over the live file: other processes hold it open, and a rename would leave
//! them reading and writing the old inode (and their -wal would be applied to the wrong file).
//! The backup API instead writes the snapshot's pages through the writer connection as one
//! write transaction, so every connection elsewhere sees the old state or the restored one,
//! at its next transaction.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use rusqlite::Connection;
use rusqlite::backup::{Backup, StepResult};

use super::export::millis;
use super::names::snapshot_file_name;
use super::verify::{open_read_only, regular_file_len, verify_open};
use super::{RestoreOptions, RestoreReport, SnapshotOptions, page_count, same_file};
use crate::error::{Error, Result, SqlContext};
use crate::lock::Mode;
use crate::store::{Store, migrate_restored};

impl Store {
    /// Replaces the database's content with the snapshot at `snapshot`.
    ///
    /// Verifies the snapshot first (`Integrity` if corrupt, `Unsupported` if its schema is
    /// newer) and changes nothing if that fails. Then takes the global lock exclusive (waits
    /// for running keyed work, keeps new work out) and the write lock, exports a safety
    /// snapshot of the current state next to the database unless told not to, copies the
    /// snapshot in, and migrates it to this binary's schema if it is older.
    pub fn restore(
        &self,
        snapshot: impl AsRef<Path>,
        options: &RestoreOptions,
    ) -> Result<RestoreReport> {
        let started = Instant::now();
        let snapshot = snapshot.as_ref();
        let busy_timeout = self.options().busy_timeout;
        let bytes = regular_file_len(snapshot)?;
        if same_file(snapshot, self.path()) {
            return Err(Error::Invalid(format!(
                "{} is the live database itself; give a snapshot file",
                snapshot.display()
            )));
        }

        // One read transaction on the snapshot from verification to the end of the copy: what
        // was verified is exactly what is copied, even if the file is replaced meanwhile.
        let source = open_read_only(snapshot, busy_timeout)?;
        source
            .execute_batch("BEGIN")
            .context("reading the snapshot")?;
        let restored = verify_open(&source, snapshot, bytes)?;

        let _global = self.locks().global(Mode::Exclusive)?;
        let mut writer = self.writer()?;
        let _write = self.locks().write()?;

        check_page_sizes(&source, &writer, snapshot)?;
        let safety_snapshot = if options.safety_snapshot {
            Some(self.safety_snapshot()?)
        } else {
            None
        };
        let live_stamps = crate::memory::stamps_before_restore(&writer)?;
        copy_in(&source, &mut writer, busy_timeout)?;
        drop(source);
        let schema_version = migrate_restored(&mut writer)?;
        // No generation or version handed out before may be handed out again (no ABA).
        crate::memory::advance_after_restore(&mut writer, live_stamps)?;
        // Best effort: fold the restored pages from the WAL into the file now rather than at
        // the next write. Readers still on the old state make this partial; that is fine.
        let _ = writer.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));

        Ok(RestoreReport {
            restored,
            safety_snapshot,
            schema_version,
            elapsed_ms: millis(started.elapsed()),
        })
    }

    /// Exports the current state as `<db>-pre-restore-<timestamp>.db` beside the database.
    /// The caller holds the write lock, so nothing committed after it is lost by the restore.
    fn safety_snapshot(&self) -> Result<PathBuf> {
        let db = self.path();
        let dir = match db.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let stem = db
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "modstate".to_owned());
        let name = snapshot_file_name(&format!("{stem}-pre-restore"), SystemTime::now());
        let report = self.snapshot(dir.join(name), &SnapshotOptions::default())?;
        Ok(report.info.path)
    }
}

/// A WAL database accepts a backup only from a source with the same page size.
fn check_page_sizes(source: &Connection, live: &Connection, snapshot: &Path) -> Result<()> {
    let (_, from) = page_count(source)?;
    let (_, to) = page_count(live)?;
    if from != to {
        return Err(Error::Unsupported(format!(
            "snapshot {} has page size {from} but the live database uses {to}; a WAL database cannot take it in place — restore into a new database path instead",
            snapshot.display()
        )));
    }
    Ok(())
}

/// All pages in one step: one write transaction on the live database, committed atomically.
fn copy_in(source: &Connection, live: &mut Connection, busy_timeout: Duration) -> Result<()> {
    let backup = Backup::new(source, live).context("starting the restore")?;
    let deadline = Instant::now() + busy_timeout;
    loop {
        match backup
            .step(-1)
            .context("copying the snapshot into the database")?
        {
            StepResult::Done => return Ok(()),
            StepResult::Busy | StepResult::Locked => {
                if Instant::now() >= deadline {
                    return Err(Error::Busy(
                        "the database stayed busy while restoring; nothing was changed — retry, or raise --lock-timeout".to_owned(),
                    ));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            // More (and any future non-final result): keep stepping.
            _ => {}
        }
    }
}
