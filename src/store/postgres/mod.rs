//! The PostgreSQL backend: one store shared by many machines.
//!
//! * `url.rs`      — the `postgres://` URL and the `PG*` environment variables.
//! * `tls.rs`      — TLS with libpq's `sslmode` meanings.
//! * `pool.rs`     — a few connections kept for reuse (none opened before it is needed).
//! * `migrate.rs`  — the schema, tracked by `modstate_schema.version`.
//! * `artifacts.rs`, `memories.rs`, `search.rs` — the data, and ranked full-text search.
//! * `locks.rs`    — session-level advisory locks, each on a connection of its own.
//! * `snapshot.rs` — the portable SQLite snapshot, written from and read into this engine.
//! * `maintenance.rs` — `stats`, `doctor`, `prune`, `vacuum`, memory export and import.
//! * `vectors.rs`  — memory vectors, searched through pgvector where the server has it.
//!
//! Every write is one transaction (READ COMMITTED; the rows it depends on are locked), every
//! multi-statement read one REPEATABLE READ READ ONLY transaction, so a read sees one
//! instant.

mod artifacts;
mod cache;
mod errors;
mod filter;
mod locks;
mod maintenance;
mod memories;
mod migrate;
mod pool;
mod search;
mod snapshot;
mod tls;
mod tokens;
mod url;
mod vectors;

use std::path::Path;

use postgres::{IsolationLevel, Transaction};

use crate::error::{Error, Result};
use crate::store::{Location, Options};
pub(crate) use errors::PgContext;
use locks::PgLocks;
use pool::Pool;

/// The URL schemes this backend serves.
pub(crate) const SCHEMES: &[&str] = &["postgres", "postgresql"];

/// One PostgreSQL database holding a modstate store.
pub(crate) struct PgBackend {
    location: Location,
    options: Options,
    pool: Pool,
    locks: PgLocks,
    schema_version: u32,
    created: bool,
    /// Artifact reads that hit, since this process last folded them into the cache row.
    hits: std::sync::atomic::AtomicU64,
    /// Artifact reads that missed, likewise.
    misses: std::sync::atomic::AtomicU64,
    /// Whether the database was seen to have pgvector (`vectors.rs`).
    pgvector: vectors::Pgvector,
}

impl PgBackend {
    /// Connects to the database `url` names and checks (with `create`: makes or migrates)
    /// its schema. The database itself must exist: creating databases is the server
    /// administrator's business.
    pub(crate) fn open(url: &Path, options: Options, create: bool) -> Result<PgBackend> {
        let url = url.to_str().ok_or_else(|| {
            Error::Invalid("the database URL is not UTF-8; fix the URL".to_owned())
        })?;
        let target = url::parse(url, &|key| std::env::var(key).ok())?;
        let pool = Pool::new(target, &options)?;
        let (schema_version, created) = {
            let mut conn = pool.get()?;
            migrate::open(&mut conn, create, pool.display())?
        };
        let locks = PgLocks::new(pool.clone(), options.lock_timeout);
        Ok(PgBackend {
            location: Location::Server {
                url: pool.display().to_owned(),
            },
            options,
            pool,
            locks,
            schema_version,
            created,
            hits: Default::default(),
            misses: Default::default(),
            pgvector: vectors::Pgvector::new(),
        })
    }

    /// The URL without its password, for messages.
    pub(crate) fn display(&self) -> &str {
        self.pool.display()
    }

    /// Runs `f` in one read-write transaction and commits it. An error in `f` rolls
    /// everything back.
    pub(crate) fn write<T>(
        &self,
        what: &str,
        f: impl FnOnce(&mut Transaction<'_>) -> Result<T>,
    ) -> Result<T> {
        let mut conn = self.pool.get()?;
        let mut tx = conn.transaction().context(what)?;
        if let Some(fence) = &self.options.fence {
            locks::check_fence_in(&mut tx, fence)?;
        }
        let out = f(&mut tx)?;
        tx.commit().context(what)?;
        Ok(out)
    }

    /// Runs `f` in one `REPEATABLE READ READ ONLY` transaction: every statement in it sees the
    /// same instant.
    pub(crate) fn read<T>(
        &self,
        what: &str,
        f: impl FnOnce(&mut Transaction<'_>) -> Result<T>,
    ) -> Result<T> {
        let mut conn = self.pool.get()?;
        let mut tx = conn
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .context(what)?;
        let out = f(&mut tx)?;
        tx.commit().context(what)?;
        Ok(out)
    }

    /// A pooled connection, for work that manages its own transactions.
    pub(crate) fn connection(&self) -> Result<pool::Conn<'_>> {
        self.pool.get()
    }
}

impl crate::store::Engine for PgBackend {
    fn location(&self) -> &Location {
        &self.location
    }

    fn options(&self) -> &Options {
        &self.options
    }

    fn created(&self) -> bool {
        self.created
    }

    fn schema_version(&self) -> u32 {
        self.schema_version
    }

    fn is_writable(&self) -> bool {
        // The server decides per statement (privileges, read-only replicas) and says so.
        true
    }

    fn shrink_wal(&self) -> Result<()> {
        // The server manages its own write-ahead log.
        Ok(())
    }
}
