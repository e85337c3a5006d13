//! The store: the public API every front end uses, above one storage backend.
//!
//! [`Store`] keeps the rules that do not depend on the engine (envelope validation, hashing,
//! query parsing, retention live in `artifact/`, `memory/` and `snapshot/`) and reaches the
//! data only through the `Backend` boundary in `backend.rs`. Each engine is a sibling module
//! behind that boundary:
//!
//! * `sqlite/` — the embedded default: WAL, one writer connection, a read pool, `flock` locks
//!   in `<db>.locks/`.
//!
//! The database is named by a path (or, for a server backend, a URL); a URL scheme that this
//! build does not serve is refused, never taken as a path.

mod backend;
pub(crate) mod sqlite;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::lock::Locks;

pub(crate) use backend::{Backend, Maintenance, StoredArtifact};
pub use sqlite::SCHEMA_VERSION;
pub use sqlite::canonical_db_path;
pub(crate) use sqlite::errors::is_storage_failure;
pub use sqlite::fts::fts5_query;
pub(crate) use sqlite::snapshot::SnapshotFile;

use sqlite::SqliteBackend;

/// How hard a commit pushes data to disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// An acknowledged write survives power loss (fsync on every commit). The default.
    #[default]
    Full,
    /// An acknowledged write survives a crash of the process but may be lost on power loss;
    /// the database is never corrupted either way.
    Normal,
}

/// Settings for [`Store::open`].
#[derive(Clone, Debug)]
pub struct Options {
    /// How long SQLite retries a busy database before giving up.
    pub busy_timeout: Duration,
    /// How long to wait for a modstate lock (write, global, keyed) before giving up.
    pub lock_timeout: Duration,
    /// How hard a commit pushes data to disk.
    pub synchronous: Synchronous,
    /// Most read connections kept open at once.
    pub read_pool_size: u32,
    /// Largest artifact envelope accepted, in bytes.
    pub max_artifact_bytes: usize,
    /// Largest memory body accepted, in bytes.
    pub max_memory_bytes: usize,
    /// Size the `-wal` file is brought back under once no reader needs its frames.
    pub wal_size_limit: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            busy_timeout: Duration::from_secs(30),
            lock_timeout: Duration::from_secs(30),
            synchronous: Synchronous::Full,
            read_pool_size: 4,
            max_artifact_bytes: 16 * 1024 * 1024,
            max_memory_bytes: 64 * 1024,
            wal_size_limit: 16 * 1024 * 1024,
        }
    }
}

/// A handle on one database. `Send + Sync` and cheap to clone.
#[derive(Clone)]
pub struct Store {
    backend: Arc<SqliteBackend>,
}

impl Store {
    /// Opens the database at `path`, creating it (and its directory) and migrating it if
    /// needed.
    pub fn open(path: impl AsRef<Path>, options: Options) -> Result<Store> {
        Store::open_with(path.as_ref(), options, true)
    }

    /// Opens the database at `path` only if it exists: nothing is created, and a missing
    /// database is `NotFound`. For commands that only read.
    pub fn open_existing(path: impl AsRef<Path>, options: Options) -> Result<Store> {
        Store::open_with(path.as_ref(), options, false)
    }

    fn open_with(path: &Path, options: Options, create: bool) -> Result<Store> {
        refuse_url(path)?;
        Ok(Store {
            backend: Arc::new(SqliteBackend::open(path, options, create)?),
        })
    }

    /// The engine's side of looking after the store (see `maintenance.rs`).
    pub(crate) fn maintenance(&self) -> &dyn Maintenance {
        &*self.backend
    }

    /// The storage backend: every read and write of data goes through this boundary.
    pub(crate) fn backend(&self) -> &dyn Backend {
        &*self.backend
    }

    /// The database file, as the caller named it.
    pub fn path(&self) -> &Path {
        self.backend.path()
    }

    /// The database file's canonical path: the one SQLite and the locks use.
    pub fn canonical_path(&self) -> &Path {
        self.backend.canonical_path()
    }

    /// The settings the store was opened with.
    pub fn options(&self) -> &Options {
        self.backend.options()
    }

    /// Whether opening created the database file: true for exactly one opener of a new
    /// database. The library says nothing itself; a front end may tell its user.
    pub fn created(&self) -> bool {
        self.backend.created()
    }

    /// The schema version after opening.
    pub fn schema_version(&self) -> u32 {
        self.backend.schema_version()
    }

    /// The store's cross-process locks (write, global, keyed, holders), through the backend.
    pub fn locks(&self) -> &dyn Locks {
        self.backend().locks()
    }

    /// Whether writes are possible (false when the database's directory is read-only).
    pub fn is_writable(&self) -> bool {
        self.backend.is_writable()
    }

    /// Tries to empty the write-ahead log without waiting for anyone; see the backend.
    pub fn shrink_wal(&self) -> Result<()> {
        self.backend.shrink_wal()
    }
}

/// A URL is never taken as a file path: `postgres://u:pw@host/db` would otherwise become a
/// directory named `postgres:` holding a file whose name contains the password.
fn refuse_url(path: &Path) -> Result<()> {
    let text = path.to_string_lossy();
    if let Some((scheme, _)) = text.split_once("://")
        && !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    {
        return Err(Error::Unsupported(format!(
            "database {scheme}://… is a URL, and this build of modstate stores only SQLite files; name a file path"
        )));
    }
    Ok(())
}
