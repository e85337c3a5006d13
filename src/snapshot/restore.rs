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
    pub fn restore(
        &self,
        snapshot: impl AsRef<Path>,
        options: &RestoreOptions,
    ) -> Result<RestoreReport> {
        let started = Instant::now();
        let snapshot = snapshot.as_ref();
        // 1. Refuse the live database itself.
        if same_file(snapshot, self.path()) {
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
        // 4. A private staging file beside the database (removed on drop and on signals).
        let staging = TempSnapshot::create(&self.database_dir())?;
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

    /// The directory holding the database file.
    fn database_dir(&self) -> PathBuf {
        match self.canonical_path().parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }

    /// Deletes the oldest safety copies `<db>-pre-restore-<timestamp>.db` beside the database
    /// so that `keep` remain, never `newest` (the one a restore just made). Other files are
    /// never touched. Returns the deleted paths, oldest first.
    pub fn prune_safety_snapshots(
        &self,
        keep: std::num::NonZeroUsize,
        newest: &Path,
    ) -> Result<Vec<PathBuf>> {
        let (dir, prefix) = self.safety_snapshot_prefix();
        super::names::retain(&dir, &prefix, keep.get(), newest)
    }

    /// The directory and name prefix of this database's safety snapshots:
    /// `<db dir>`, `<db stem>-pre-restore`.
    fn safety_snapshot_prefix(&self) -> (PathBuf, String) {
        let db = self.path();
        let dir = match db.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let stem = db
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "modstate".to_owned());
        (dir, format!("{stem}-pre-restore"))
    }

    /// Exports the current state as `<db>-pre-restore-<timestamp>.db` beside the database.
    /// The caller holds the write lock, so nothing committed after it is lost by the restore.
    fn safety_snapshot(&self) -> Result<PathBuf> {
        let (dir, prefix) = self.safety_snapshot_prefix();
        let name = snapshot_file_name(&prefix, SystemTime::now());
        let report = self.snapshot(dir.join(name), &SnapshotOptions::default())?;
        Ok(report.info.path)
    }
}
