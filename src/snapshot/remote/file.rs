//! The local side of [`Store::list_snapshots`](crate::Store::list_snapshots): the snapshot
//! files in a directory.

use std::fs;
use std::path::Path;

use super::SnapshotEntry;
use crate::error::{Error, Result};

/// Regular files named `<prefix>-<UTC timestamp>.db` in `dir` (unsorted).
pub(super) fn list(dir: &Path) -> Result<Vec<SnapshotEntry>> {
    let entries = fs::read_dir(dir).map_err(|e| Error::io("listing snapshots in", dir, e))?;
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("listing snapshots in", dir, e))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        // Only regular files: a directory or symlink that happens to match is not a snapshot.
        let Ok(meta) = entry.path().symlink_metadata() else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        if let Some(snapshot) =
            SnapshotEntry::new(entry.path().display().to_string(), &name, meta.len())
        {
            found.push(snapshot);
        }
    }
    Ok(found)
}
