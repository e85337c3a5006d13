//! `Store::restore`: copy a verified snapshot INTO the live database.
//!
//! Never a rename over the live file: other processes hold it open, and a rename would leave
//! them reading and writing the old inode (and their -wal would be applied to the wrong file).
//! The backend writes the snapshot's content in as one write transaction, so every connection
//! elsewhere sees the old state or the restored one, at its next transaction, and a crash
//! leaves one or the other.

use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use super::export::millis;
use super::names::snapshot_file_name;
use super::temp::TempSnapshot;
use super::{RestoreOptions, RestoreReport, SnapshotOptions, same_file};
use crate::error::{Error, Result};
use crate::lock::Mode;
use crate::store::{SnapshotFile, Store};

impl Store {
    /// Replaces the database's content with the snapshot at `snapshot`.
    ///
    /// Verifies the snapshot first (`Integrity` if corrupt, `Unsupported` if its schema is
    /// newer) and changes nothing if that fails. Then takes the global lock exclusive (waits
    /// for running keyed work, keeps new work out), stages the snapshot in a private file
    /// beside the database, exports a safety snapshot of the current state unless told not to,
    /// and copies the staged content in (migrated to this binary's schema, every generation and
    /// version moved past what the live database handed out) as one transaction.
    ///
    /// The safety snapshot is `<db stem>-pre-restore-<UTC timestamp>.db` beside a database
    /// file. A server database (`postgres://…`) has no directory on this machine: its safety
    /// snapshot is `<database name>-pre-restore-<UTC timestamp>.db` in the user's data
    /// directory, `$XDG_DATA_HOME/modstate/pre-restore/` or
    /// `~/.local/share/modstate/pre-restore/`, and the snapshot is staged in the system's temp
    /// directory.
    pub fn restore(
        &self,
        snapshot: impl AsRef<Path>,
        options: &RestoreOptions,
    ) -> Result<RestoreReport> {
        let started = Instant::now();
        let snapshot = snapshot.as_ref();
        // 1. Refuse the live database itself.
        if self.file().is_some_and(|db| same_file(snapshot, db)) {
            return Err(Error::Invalid(format!(
                "{} is the live database itself; give a snapshot file",
                snapshot.display()
            )));
        }
        // 2. Verify inside the read transaction the copy will read from: what was verified is
        //    exactly what is copied, even if the file is replaced meanwhile.
        let file = SnapshotFile::open(snapshot, self.options().busy_timeout)?;
        let restored = file.verify()?;
        // 3. Structural work: wait for keyed work, keep new work out.
        let _global = self.locks().global(Mode::Exclusive)?;
        // 4. A private staging file beside the database, or in the temp directory for a
        //    server database (removed on drop and on signals).
        let staging = TempSnapshot::create(&self.staging_dir())?;
        // 5. Copy in; the safety snapshot is taken under the write lock, before any change.
        let mut safety_snapshot = None;
        let schema_version = self
            .backend()
            .restore_snapshot(&file, staging.path(), &mut || {
                if options.safety_snapshot {
                    safety_snapshot = Some(self.safety_snapshot()?);
                }
                Ok(())
            })?;
        Ok(RestoreReport {
            restored,
            safety_snapshot,
            schema_version,
            elapsed_ms: millis(started.elapsed()),
        })
    }

    /// Where a restore stages the snapshot: the directory holding the database file (same
    /// file system, private), or for a server database the system's temp directory.
    fn staging_dir(&self) -> PathBuf {
        match self.file() {
            Some(db) => match db.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            },
            None => std::env::temp_dir(),
        }
    }

    /// Deletes the oldest safety copies `<db>-pre-restore-<timestamp>.db` (see
    /// [`Store::restore`] for where they are) so that `keep` remain, never `newest` (the one a restore just made). Other files are
    /// never touched. Returns the deleted paths, oldest first.
    pub fn prune_safety_snapshots(
        &self,
        keep: std::num::NonZeroUsize,
        newest: &Path,
    ) -> Result<Vec<PathBuf>> {
        let (dir, prefix) = self.safety_snapshot_prefix()?;
        super::names::retain(&dir, &prefix, keep.get(), newest)
    }

    /// The directory and name prefix of this database's safety snapshots: `<db dir>`,
    /// `<db stem>-pre-restore` for a database file; for a server database, whose directory
    /// is on another machine, [`server_safety_dir`] and `<database name>-pre-restore`.
    fn safety_snapshot_prefix(&self) -> Result<(PathBuf, String)> {
        let prefix = format!("{}-pre-restore", self.snapshot_prefix());
        let dir = match self.file() {
            Some(db) => match db.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            },
            None => server_safety_dir()?,
        };
        Ok((dir, prefix))
    }

    /// Exports the current state as `<db>-pre-restore-<timestamp>.db` (see
    /// `safety_snapshot_prefix` for where). The caller holds the write lock (on a
    /// server: the tables are locked against writers), so nothing committed after it is lost
    /// by the restore.
    fn safety_snapshot(&self) -> Result<PathBuf> {
        let (dir, prefix) = self.safety_snapshot_prefix()?;
        let name = snapshot_file_name(&prefix, SystemTime::now());
        let report = self.snapshot(dir.join(name), &SnapshotOptions::default())?;
        Ok(report.info.path)
    }
}

/// Where a restore into a server database saves the state it replaces: the user's data
/// directory, where the default database lives too — `$XDG_DATA_HOME/modstate/pre-restore/`
/// (`$XDG_DATA_HOME` must be absolute), else `~/.local/share/modstate/pre-restore/`
/// (`~/Library/Application Support/modstate/pre-restore/` on macOS). Not the current
/// directory: a restore run from a job runner or a source checkout would scatter copies of
/// the whole store there. Created private (0700) when missing.
fn server_safety_dir() -> Result<PathBuf> {
    let dir = crate::dirs::data_dir()
        .map(|d| d.join("pre-restore"))
        .ok_or_else(|| {
            Error::Invalid(
                "no per-user data directory for the safety snapshot of a server database (HOME is not set); set HOME or XDG_DATA_HOME, or pass --no-safety-snapshot".to_owned(),
            )
        })?;
    if !dir.exists() {
        crate::private::create_private_dir(&dir)?;
    }
    Ok(dir)
}
