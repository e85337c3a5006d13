//! Snapshots on PostgreSQL. (Being built: see issue 15.)

use std::path::Path;

use super::PgBackend;
use crate::error::{Error, Result};
use crate::snapshot::{CopyProgress, SnapshotInfo};
use crate::store::SnapshotFile;

fn todo() -> Error {
    Error::Unsupported("snapshots on PostgreSQL are not built yet".to_owned())
}

impl PgBackend {
    pub(crate) fn export_snapshot_pg(
        &self,
        _into: &Path,
        _after_step: &mut dyn FnMut(CopyProgress),
    ) -> Result<SnapshotInfo> {
        Err(todo())
    }

    pub(crate) fn restore_snapshot_pg(
        &self,
        _file: &SnapshotFile,
        _staging: &Path,
        _before_copy: &mut dyn FnMut() -> Result<()>,
    ) -> Result<u32> {
        Err(todo())
    }
}
