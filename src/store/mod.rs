//! The store: the public API every front end uses, above one storage backend.
//!
//! [`Store`] keeps the rules that do not depend on the engine (envelope validation, hashing,
//! query parsing, retention live in `artifact/`, `memory/` and `snapshot/`) and reaches the
//! data only through the `Backend` boundary in `backend.rs`. Each engine is a sibling module
//! behind that boundary:
//!
//! * `sqlite/` — the embedded default: WAL, one writer connection, a read pool, `flock` locks
//!   in `<db>.locks/`.
//! * `postgres/` — a PostgreSQL server shared by many machines: a small connection pool,
//!   session-level advisory locks, the full-text index in a GIN index.
//!
//! The database is named by a path, or by a `postgres://` URL; any other URL scheme is
//! refused, never taken as a path.

mod backend;
pub(crate) mod portable;
pub(crate) mod postgres;
pub(crate) mod sqlite;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::lock::Locks;

pub(crate) use backend::{Backend, Engine, Maintenance, StoredArtifact};
pub use sqlite::SCHEMA_VERSION;
pub use sqlite::canonical_db_path;
pub(crate) use sqlite::errors::is_storage_failure;
pub use sqlite::fts::fts5_query;
pub use sqlite::skip_memory_statistics;
pub(crate) use sqlite::snapshot::SnapshotFile;

use postgres::PgBackend;
use sqlite::SqliteBackend;

/// Where a store's data lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// A SQLite database file.
    File {
        /// The path as the caller named it.
        path: PathBuf,
        /// Its canonical path: the one SQLite and the locks use.
        canonical: PathBuf,
    },
    /// A PostgreSQL database.
    Server {
        /// The connection URL with the password left out, safe to print.
        url: String,
    },
}

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
    /// Open a SQLite store on a network file system (NFS, SMB/CIFS…) anyway: only safe when
    /// a single host ever opens it. Also set by `MODSTATE_ALLOW_NETWORK_FS=1`.
    pub allow_network_fs: bool,
    /// A fencing token every write of this store carries: each write transaction first checks
    /// it, and refuses the write ([`crate::Error::Fenced`]) if a newer token was issued for
    /// its key since. `None`: writes are not fenced.
    pub fence: Option<crate::lock::Fence>,
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
            allow_network_fs: false,
            fence: None,
        }
    }
}

/// A handle on one database. `Send + Sync` and cheap to clone.
#[derive(Clone)]
pub struct Store {
    engine: Arc<dyn Engine>,
    /// Who writes through this handle, recorded in memory history (`""`: unknown).
    writer: Arc<str>,
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
        let engine: Arc<dyn Engine> = match url_scheme(path) {
            None => Arc::new(SqliteBackend::open(path, options, create)?),
            Some(scheme) if postgres::SCHEMES.contains(&scheme.as_str()) => {
                Arc::new(PgBackend::open(path, options, create)?)
            }
            Some(scheme) => {
                return Err(Error::Unsupported(format!(
                    "database {scheme}://… is a URL of a kind modstate does not serve; name a SQLite file path or a postgres:// URL"
                )));
            }
        };
        Ok(Store {
            engine,
            writer: Arc::from(""),
        })
    }

    /// This handle, recording `writer` as the author of the memory changes made through it
    /// (history events); front ends pass the name they know (the MCP client, `--as`).
    pub fn with_writer(&self, writer: &str) -> Store {
        Store {
            engine: Arc::clone(&self.engine),
            writer: Arc::from(writer),
        }
    }

    /// Who writes through this handle (`""`: unknown).
    pub fn writer(&self) -> &str {
        &self.writer
    }

    /// The engine's side of looking after the store (see `maintenance.rs`).
    pub(crate) fn maintenance(&self) -> &dyn Maintenance {
        &*self.engine
    }

    /// The storage backend: every read and write of data goes through this boundary.
    pub(crate) fn backend(&self) -> &dyn Backend {
        &*self.engine
    }

    /// Where the data lives.
    pub fn location(&self) -> &Location {
        self.engine.location()
    }

    /// The database file's canonical path; `None` for a server database.
    pub fn file(&self) -> Option<&Path> {
        match self.location() {
            Location::File { canonical, .. } => Some(canonical),
            Location::Server { .. } => None,
        }
    }

    /// The database as the caller named it: the file's path, or the server URL without its
    /// password.
    pub fn path(&self) -> &Path {
        match self.location() {
            Location::File { path, .. } => path,
            Location::Server { url } => Path::new(url.as_str()),
        }
    }

    /// The database file's canonical path (the one SQLite and the locks use), or the server
    /// URL without its password.
    pub fn canonical_path(&self) -> &Path {
        match self.location() {
            Location::File { canonical, .. } => canonical,
            Location::Server { url } => Path::new(url.as_str()),
        }
    }

    /// The settings the store was opened with.
    pub fn options(&self) -> &Options {
        self.engine.options()
    }

    /// Whether opening created the database (file, or schema on a server): true for exactly
    /// one opener of a new database. The library says nothing itself; a front end may tell
    /// its user.
    pub fn created(&self) -> bool {
        self.engine.created()
    }

    /// The schema version after opening.
    pub fn schema_version(&self) -> u32 {
        self.engine.schema_version()
    }

    /// The store's cross-process locks (write, global, keyed, holders), through the backend.
    pub fn locks(&self) -> &dyn Locks {
        self.backend().locks()
    }

    /// Whether writes are possible (false when the database's directory is read-only).
    pub fn is_writable(&self) -> bool {
        self.engine.is_writable()
    }

    /// Tries to empty the write-ahead log without waiting for anyone; see the backend.
    pub fn shrink_wal(&self) -> Result<()> {
        self.engine.shrink_wal()
    }
}

/// How to show a database name in a message: a path as it is, a URL without its password
/// (`postgres://u:pw@h/db` → `postgres://u@h/db`; a `password=` parameter is dropped too).
pub fn display_database(path: &Path) -> String {
    let text = path.to_string_lossy();
    if url_scheme(path).is_none() {
        return text.into_owned();
    }
    let (scheme, rest) = text.split_once("://").unwrap_or(("", &text));
    // The credentials end at an `@`, wherever it is: the client reads them up to the first
    // one, a person writing an unencoded `@` in a password means the last one. Everything up
    // to the last is left out, so a password holding `/`, `?`, `#` or `@` never shows.
    let rest = match rest.rsplit_once('@') {
        Some((credentials, after)) => {
            let user = credentials.split_once(':').map_or(credentials, |(u, _)| u);
            format!("{user}@{after}")
        }
        None => rest.to_owned(),
    };
    let rest = match rest.split_once('?') {
        Some((before, query)) => {
            let kept: Vec<&str> = query
                .split('&')
                .filter(|pair| !pair.to_ascii_lowercase().starts_with("password="))
                .collect();
            if kept.is_empty() {
                before.to_owned()
            } else {
                format!("{before}?{}", kept.join("&"))
            }
        }
        None => rest,
    };
    format!("{scheme}://{rest}")
}

/// The scheme of a URL given where a database is named (`postgres` for
/// `postgres://u@host/db`), or `None` for a path. A URL is never taken as a file path:
/// `postgres://u:pw@host/db` would otherwise become a directory named `postgres:` holding a
/// file whose name contains the password.
pub fn url_scheme(path: &Path) -> Option<String> {
    let text = path.to_string_lossy();
    let (scheme, _) = text.split_once("://")?;
    (!scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
    .then(|| scheme.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::display_database;
    use std::path::Path;

    #[test]
    fn a_database_url_is_shown_without_its_password() {
        let shown = |s: &str| display_database(Path::new(s));
        assert_eq!(shown("postgres://u:pw@h:5/db"), "postgres://u@h:5/db");
        assert_eq!(
            shown("postgresql://u:p%40w@h/db?sslmode=require&password=x"),
            "postgresql://u@h/db?sslmode=require"
        );
        assert_eq!(shown("postgres://h/db?password=x"), "postgres://h/db");
        // The client ends the credentials at the first `@`, even past a `/`, `?` or `#`.
        assert_eq!(shown("postgres://u:p/ss@h/db"), "postgres://u@h/db");
        assert_eq!(shown("postgres://u:p?w#x@h/db"), "postgres://u@h/db");
        assert_eq!(shown("postgres://u:p@ss@h/db"), "postgres://u@h/db");
        assert_eq!(shown("/tmp/a:b@c/db"), "/tmp/a:b@c/db");
    }
}
