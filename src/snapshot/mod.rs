//! Snapshots: consistent point-in-time copies made while writers keep writing, checked,
//! kept to the last N, and restored through the same backup API.
//!
//! * [`Store::snapshot`](crate::Store::snapshot) copies the database with SQLite's online backup from a dedicated
//!   read connection inside ONE read transaction, so commits made meanwhile by other
//!   connections neither restart nor tear the copy and no writer waits for it (no write lock
//!   is taken). The copy goes into a private temp file beside the destination, is checked,
//!   switched to a self-contained rollback-journal file, fsynced and renamed into place: the
//!   destination is the complete old snapshot or the complete new one, never a mix.
//! * [`Store::verify_snapshot`](crate::Store::verify_snapshot) opens a snapshot read-only: integrity, schema version, the
//!   artifacts' own hashes, counts.
//! * [`Store::restore`](crate::Store::restore) verifies first, then under the global lock (exclusive) and the write
//!   lock copies the snapshot INTO the live database with the backup API — never a rename over
//!   a file other processes hold open.
//! * [`SnapshotLocation`] says where a snapshot lives, a path or `s3://bucket/key`; `remote`
//!   ships the verified temp file to S3 and checks downloads against their sha256 before any
//!   of the above opens them.
//! * A backup user who may only read the database can export (`source`), and a snapshot
//!   command interrupted by SIGINT/SIGTERM/SIGHUP leaves no temp file (`temp`).

mod export;
mod names;
mod remote;
mod restore;
mod temp;
mod verify;

use std::fmt;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

pub use names::{is_snapshot_name, snapshot_file_name};
pub use remote::{S3Location, SnapshotEntry, SnapshotLocation};
pub use temp::remove_temp_files_on_signal;

/// How far a copy has got, for a progress display.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CopyProgress {
    /// Pages copied so far.
    pub copied_pages: u64,
    /// Pages in all.
    pub total_pages: u64,
    /// Bytes per page.
    pub page_size: u64,
}

impl CopyProgress {
    /// Bytes in all.
    pub fn total_bytes(&self) -> u64 {
        self.total_pages * self.page_size
    }

    /// Bytes copied so far.
    pub fn copied_bytes(&self) -> u64 {
        self.copied_pages * self.page_size
    }
}

/// Called between copy steps; cheap, and must not touch the store.
pub type ProgressFn = Arc<dyn Fn(CopyProgress) + Send + Sync>;

/// Settings for [`Store::snapshot`](crate::Store::snapshot)(crate::Store::snapshot).
#[derive(Clone, Default)]
pub struct SnapshotOptions {
    /// After a successful export, keep only the newest N snapshots of the same name pattern
    /// (`<prefix>-<UTC timestamp>.db`) in the destination directory, the new one included.
    pub keep: Option<NonZeroUsize>,
    /// Told how far the copy has got.
    pub progress: Option<ProgressFn>,
}

impl fmt::Debug for SnapshotOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnapshotOptions")
            .field("keep", &self.keep)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

/// What a snapshot file holds, as found by opening it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SnapshotInfo {
    /// Where the snapshot is.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// Its size in database pages.
    pub pages: u64,
    /// Its schema version.
    pub schema_version: u32,
    /// How many artifacts it holds.
    pub artifacts: u64,
    /// `None` when the schema has no memories table (yet).
    pub memories: Option<u64>,
}

/// What an export did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SnapshotReport {
    #[serde(flatten)]
    /// The snapshot written.
    pub info: SnapshotInfo,
    /// How long it took, in milliseconds.
    pub elapsed_ms: u64,
    /// Older snapshots deleted by `keep`, oldest first.
    pub removed: Vec<PathBuf>,
    /// Temp files of killed exporters that this export cleaned up.
    pub swept: Vec<PathBuf>,
}

/// Settings for [`Store::restore`](crate::Store::restore)(crate::Store::restore).
#[derive(Clone, Debug)]
pub struct RestoreOptions {
    /// Export the current state next to the database before overwriting it.
    pub safety_snapshot: bool,
}

impl Default for RestoreOptions {
    fn default() -> Self {
        RestoreOptions {
            safety_snapshot: true,
        }
    }
}

/// What a restore did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RestoreReport {
    /// The snapshot that was restored, as verified before copying.
    pub restored: SnapshotInfo,
    /// Where the state before the restore was saved, unless disabled.
    pub safety_snapshot: Option<PathBuf>,
    /// The live database's schema version afterwards (older snapshots are migrated).
    pub schema_version: u32,
    /// How long it took, in milliseconds.
    pub elapsed_ms: u64,
}

/// Whether two paths name the same file (same device and inode), looked at without opening.
fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (a.metadata(), b.metadata()) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}
