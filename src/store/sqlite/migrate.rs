//! Schema migrations: SQL files embedded at build time, applied in order, one transaction
//! each, tracked by `PRAGMA user_version`.

use rusqlite::{Connection, TransactionBehavior};

use crate::error::{Error, Result};
use crate::store::sqlite::errors::SqlContext;

/// Every migration, in order; entry `i` moves the schema from version `i` to `i + 1`.
const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_artifacts",
        include_str!("../../../migrations/0001_artifacts.sql"),
    ),
    (
        "0002_memories",
        include_str!("../../../migrations/0002_memories.sql"),
    ),
    (
        "0003_memory_search",
        include_str!("../../../migrations/0003_memory_search.sql"),
    ),
    (
        "0004_search_statistics",
        include_str!("../../../migrations/0004_search_statistics.sql"),
    ),
    (
        "0005_cache_bounds",
        include_str!("../../../migrations/0005_cache_bounds.sql"),
    ),
    (
        "0006_lock_leases",
        include_str!("../../../migrations/0006_lock_leases.sql"),
    ),
    (
        "0007_memory_model",
        include_str!("../../../migrations/0007_memory_model.sql"),
    ),
    (
        "0008_tokens",
        include_str!("../../../migrations/0008_tokens.sql"),
    ),
    (
        "0009_memory_vectors",
        include_str!("../../../migrations/0009_memory_vectors.sql"),
    ),
];

/// The schema version this binary writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// The database's schema version.
pub fn user_version(conn: &Connection) -> Result<u32> {
    conn.query_row("PRAGMA user_version", [], |row| row.get(0))
        .context("reading the schema version")
}

/// Refuses a database written by a newer modstate, before anything touches it.
pub fn check_known(conn: &Connection, what: &str) -> Result<u32> {
    let found = user_version(conn)?;
    if found > SCHEMA_VERSION {
        return Err(Error::Unsupported(format!(
            "{what} has schema version {found}, but this modstate knows only up to {SCHEMA_VERSION}; upgrade modstate"
        )));
    }
    Ok(found)
}

/// Applies the migrations the database lacks. The caller holds the write lock.
pub fn migrate(conn: &mut Connection) -> Result<u32> {
    let mut version = check_known(conn, "the database")?;
    while version < SCHEMA_VERSION {
        let (name, sql) = MIGRATIONS[version as usize];
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .context("starting a migration")?;
        tx.execute_batch(sql)
            .map_err(|e| Error::sqlite(format!("applying migration {name}"), e))?;
        tx.pragma_update(None, "user_version", version + 1)
            .context("recording the schema version")?;
        tx.commit().context("committing a migration")?;
        version += 1;
    }
    Ok(version)
}
