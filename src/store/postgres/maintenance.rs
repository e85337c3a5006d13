//! Looking after a PostgreSQL store. (Being built: see issue 15.)

use super::PgBackend;
use crate::error::{Error, Result};
use crate::maintenance::{ExportedMemory, ImportReport, IntegrityReport, PruneRule, Stats};
use crate::store::Maintenance;

fn todo() -> Error {
    Error::Unsupported("maintenance on PostgreSQL is not built yet".to_owned())
}

impl Maintenance for PgBackend {
    fn stats(&self) -> Result<Stats> {
        Err(todo())
    }

    fn check_integrity(&self) -> Result<IntegrityReport> {
        Err(todo())
    }

    fn prune_artifacts(&self, _rule: &PruneRule, _dry_run: bool) -> Result<Vec<String>> {
        Err(todo())
    }

    fn vacuum(&self) -> Result<()> {
        Err(todo())
    }

    fn export_memories(&self, _namespace: Option<&str>) -> Result<Vec<ExportedMemory>> {
        Err(todo())
    }

    fn import_memories(&self, _memories: &[(usize, ExportedMemory)]) -> Result<ImportReport> {
        Err(todo())
    }
}
