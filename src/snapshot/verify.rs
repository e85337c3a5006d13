//! `Store::verify_snapshot`: is this file a sound modstate snapshot this binary can restore?

use std::path::Path;
use std::time::Duration;

use super::SnapshotInfo;
use crate::error::Result;
use crate::store::{Options, SnapshotFile, Store};

impl Store {
    /// Opens the snapshot at `path` read-only and checks it: SQLite's integrity_check, a
    /// schema version this binary knows, and every artifact's payload against its stored hash.
    ///
    /// Errors: `NotFound` (no such file), `Integrity` (corrupt), `Unsupported` (newer schema),
    /// `Invalid` (not a modstate database).
    pub fn verify_snapshot(path: impl AsRef<Path>) -> Result<SnapshotInfo> {
        verify(path.as_ref(), Options::default().busy_timeout)
    }
}

impl Store {
    /// How many artifacts and memories (`None` before the memories table existed) the
    /// snapshot at `path` holds, read without the full check of [`Store::verify_snapshot`]:
    /// for listings.
    pub fn snapshot_counts(path: impl AsRef<Path>) -> Result<(u64, Option<u64>)> {
        SnapshotFile::open(path.as_ref(), Options::default().busy_timeout)?.counts()
    }
}

/// [`Store::verify_snapshot`] with the caller's busy timeout.
pub(crate) fn verify(path: &Path, busy_timeout: Duration) -> Result<SnapshotInfo> {
    SnapshotFile::open(path, busy_timeout)?.verify()
}
