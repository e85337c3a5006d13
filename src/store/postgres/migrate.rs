//! The schema on PostgreSQL: SQL files embedded at build time, tracked by
//! `modstate_schema.version`, applied in one transaction under a transaction-level advisory
//! lock so that two processes opening a new database at once do not both create it.
//!
//! A schema version means the same data model as on SQLite (see `migrations/`), so a snapshot
//! of version N restores on either engine. This engine starts at version 3: its first file
//! creates everything SQLite's 0001–0003 do.

use postgres::Client;

use super::errors::PgContext;
use crate::error::{Error, Result};
use crate::store::SCHEMA_VERSION;

/// Each migration: the version it brings the database to, its name, its SQL.
const MIGRATIONS: &[(u32, &str, &str)] = &[
    (
        3,
        "0003_schema",
        include_str!("../../../migrations/postgres/0003_schema.sql"),
    ),
    (
        4,
        "0004_search_statistics",
        include_str!("../../../migrations/postgres/0004_search_statistics.sql"),
    ),
    (
        5,
        "0005_cache_bounds",
        include_str!("../../../migrations/postgres/0005_cache_bounds.sql"),
    ),
    (
        6,
        "0006_lock_leases",
        include_str!("../../../migrations/postgres/0006_lock_leases.sql"),
    ),
    (
        7,
        "0007_memory_model",
        include_str!("../../../migrations/postgres/0007_memory_model.sql"),
    ),
    (
        8,
        "0008_tokens",
        include_str!("../../../migrations/postgres/0008_tokens.sql"),
    ),
    (
        9,
        "0009_memory_vectors",
        include_str!("../../../migrations/postgres/0009_memory_vectors.sql"),
    ),
];

/// The advisory lock held (for one transaction) while a schema is created or migrated.
pub(super) const MIGRATION_LOCK: i64 = 0x6d6f_6473_7461_7465; // "modstate"

/// Checks the schema; with `create`, creates or migrates it. Returns the schema version and
/// whether this call created it. A database with no modstate schema is `NotFound` without
/// `create`; a newer schema is refused and left untouched.
pub(crate) fn open(client: &mut Client, create: bool, display: &str) -> Result<(u32, bool)> {
    let found = version(client)?;
    check_known(found, display)?;
    if found == SCHEMA_VERSION {
        return Ok((found, false));
    }
    // An older schema is migrated even by a command that only reads, as on SQLite: reading
    // it as it is could misread it.
    if !create && found == 0 {
        return Err(Error::NotFound(format!(
            "no modstate store in {display}; a command that writes creates it"
        )));
    }
    check_server(client, display)?;
    let mut tx = client.transaction().context("starting a migration")?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .context("waiting for another migration")?;
    // Another process may have done it while this one waited.
    let mut version = version_in(&mut tx)?;
    check_known(version, display)?;
    let created = version == 0;
    for (to, name, sql) in MIGRATIONS {
        if *to <= version {
            continue;
        }
        tx.batch_execute(sql)
            .context(&format!("applying migration {name}"))?;
        tx.execute(
            "INSERT INTO modstate_schema (singleton, version) VALUES (true, $1)
             ON CONFLICT (singleton) DO UPDATE SET version = excluded.version",
            &[&(*to as i32)],
        )
        .context("recording the schema version")?;
        version = *to;
    }
    tx.commit().context("committing a migration")?;
    Ok((version, created))
}

/// The schema version, 0 where there is no modstate schema: one round trip, the cost every
/// command pays at open.
fn version(client: &mut Client) -> Result<u32> {
    // Cast on the server: a later schema may widen the column, and must still be read (and
    // refused as newer), not make this binary fail to decode it.
    match client.query_opt("SELECT version::bigint FROM modstate_schema", &[]) {
        Ok(row) => row.map_or(Ok(0), |r| stored_version(&r)),
        Err(e) if e.code() == Some(&postgres::error::SqlState::UNDEFINED_TABLE) => Ok(0),
        Err(e) => Err(crate::error::Error::postgres(
            "reading the schema version",
            e,
        )),
    }
}

fn version_in(tx: &mut postgres::Transaction<'_>) -> Result<u32> {
    let exists: bool = tx
        .query_one("SELECT to_regclass('modstate_schema') IS NOT NULL", &[])
        .context("reading the schema version")?
        .try_get(0)
        .context("reading the server's settings")?;
    if !exists {
        return Ok(0);
    }
    let row = tx
        .query_opt("SELECT version::bigint FROM modstate_schema", &[])
        .context("reading the schema version")?;
    row.map_or(Ok(0), |r| stored_version(&r))
}

/// The version in a row of `SELECT version::bigint`; one past every known version when it does
/// not fit, so it is refused as newer.
fn stored_version(row: &postgres::Row) -> Result<u32> {
    let version: i64 = row.try_get(0).context("reading the schema version")?;
    Ok(u32::try_from(version).unwrap_or(u32::MAX))
}

fn check_known(found: u32, display: &str) -> Result<()> {
    if found > SCHEMA_VERSION {
        return Err(Error::Unsupported(format!(
            "{display} has schema version {found}, but this modstate knows only up to {SCHEMA_VERSION}; upgrade modstate"
        )));
    }
    Ok(())
}

/// What the schema needs of the server: UTF-8 text (search folds case and accents per
/// character) and the `unaccent` extension (Debian's postgresql-contrib).
fn check_server(client: &mut Client, display: &str) -> Result<()> {
    let encoding: String = client
        .query_one("SHOW server_encoding", &[])
        .context("reading the server's encoding")?
        .try_get(0)
        .context("reading the server's settings")?;
    if !encoding.eq_ignore_ascii_case("UTF8") {
        return Err(Error::Unsupported(format!(
            "{display} uses the {encoding} encoding; modstate needs a UTF8 database (createdb -E UTF8 --locale=C.UTF-8 --template=template0)"
        )));
    }
    let available: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'unaccent')",
            &[],
        )
        .context("looking for the unaccent extension")?
        .try_get(0)
        .context("reading the server's settings")?;
    if !available {
        return Err(Error::Unsupported(format!(
            "the server of {display} lacks the unaccent extension that memory search needs; install PostgreSQL's contrib package (Debian: postgresql-contrib)"
        )));
    }
    Ok(())
}
