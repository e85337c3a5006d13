//! The store: one SQLite database shared by many processes.
//!
//! * Exactly one writer connection per `Store`, behind a mutex, and an r2d2 pool of
//!   `query_only` connections for reads.
//! * Every write is one `BEGIN IMMEDIATE` transaction taken while holding the cross-process
//!   write lock (`<db>.locks/write`). IMMEDIATE, because a deferred transaction that upgrades
//!   to a write fails in WAL mode with SQLITE_BUSY_SNAPSHOT without consulting the busy handler.
//! * Opening and migrating happen under the write lock as well: switching a fresh database to
//!   WAL needs an exclusive lock that busy_timeout does not retry.

mod migrate;

use std::fs::OpenOptions;
use std::io::ErrorKind;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};

use crate::error::{Error, Result, SqlContext};
use crate::lock::{LockDir, create_private_dir};

pub use migrate::SCHEMA_VERSION;

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

impl Synchronous {
    fn pragma(self) -> &'static str {
        match self {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        }
    }
}

/// Settings for [`Store::open`].
#[derive(Clone, Debug)]
pub struct Options {
    /// How long SQLite retries a busy database before giving up.
    pub busy_timeout: Duration,
    /// How long to wait for a modstate lock (write, global, keyed) before giving up.
    pub lock_timeout: Duration,
    pub synchronous: Synchronous,
    /// Most read connections kept open at once.
    pub read_pool_size: u32,
    /// Largest artifact envelope accepted, in bytes.
    pub max_artifact_bytes: usize,
    /// Largest memory body accepted, in bytes.
    pub max_memory_bytes: usize,
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
        }
    }
}

/// A handle on one database. `Send + Sync` and cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    options: Options,
    locks: LockDir,
    // Declared before `writer` so it drops first: the writer, closing last, can checkpoint and
    // remove the -wal and -shm files, which a read-only connection cannot.
    readers: r2d2::Pool<SqliteConnectionManager>,
    /// `None` when the database's directory is read-only for this process: reads work,
    /// writes fail with a clear error.
    writer: Option<Mutex<Connection>>,
    schema_version: u32,
}

impl Store {
    /// Opens (creating and migrating if needed) the database at `path`.
    pub fn open(path: impl AsRef<Path>, options: Options) -> Result<Store> {
        let path = path.as_ref().to_path_buf();
        if path.is_dir() {
            return Err(Error::Invalid(format!(
                "database path {} is a directory; pass a file path with --db",
                path.display()
            )));
        }
        if let Some(parent) = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty() && !p.exists())
        {
            create_private_dir(parent)?;
        }
        let (locks, write_lock) = match LockDir::open(&path, options.lock_timeout) {
            Ok(locks) => match locks.write() {
                Ok(guard) => (locks, Some(guard)),
                Err(e) if is_read_only(&e) && path.is_file() => (locks, None),
                Err(e) => return Err(e),
            },
            Err(e) if is_read_only(&e) && path.is_file() => {
                (LockDir::existing(&path, options.lock_timeout), None)
            }
            Err(e) => return Err(e),
        };
        let writer = match write_lock {
            Some(_guard) => Some(open_writer(&path, &options)?),
            None => None,
        };

        let busy_timeout = options.busy_timeout;
        let reader_target = if writer.is_some() {
            ReaderTarget::Shared
        } else {
            read_only_target(&path, busy_timeout)?
        };
        let manager = reader_target.manager(&path).with_init(move |conn| {
            conn.busy_timeout(busy_timeout)?;
            conn.pragma_update(None, "query_only", true)
        });
        let readers = r2d2::Pool::builder()
            .max_size(options.read_pool_size.max(1))
            // Connect lazily: a CLI invocation that only writes opens no reader at all.
            .min_idle(Some(0))
            // A SQLite connection does not go stale like a network one: skip the per-checkout
            // validity query on the hot read path.
            .test_on_check_out(false)
            .connection_timeout(options.lock_timeout.max(Duration::from_millis(100)))
            .build(manager)
            .map_err(|e| Error::Busy(format!("cannot open read connections: {e}")))?;

        let schema_version = match (&writer, reader_target) {
            (Some((_, version)), _) => *version,
            (None, ReaderTarget::ReadOnly(version)) => version,
            (None, ReaderTarget::Shared) => unreachable!("read_only_target never answers Shared"),
        };
        Ok(Store {
            inner: Arc::new(Inner {
                path,
                options,
                locks,
                readers,
                writer: writer.map(|(conn, _)| Mutex::new(conn)),
                schema_version,
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    pub fn options(&self) -> &Options {
        &self.inner.options
    }

    /// The schema version after opening.
    pub fn schema_version(&self) -> u32 {
        self.inner.schema_version
    }

    /// The lock directory `<db>.locks/`.
    pub fn locks(&self) -> &LockDir {
        &self.inner.locks
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction under the write lock and commits it.
    /// An error or panic in `f` rolls everything back.
    pub(crate) fn write<T>(
        &self,
        what: &str,
        f: impl FnOnce(&Transaction<'_>) -> Result<T>,
    ) -> Result<T> {
        let mut conn = self.writer()?;
        let _write = self.inner.locks.write()?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .context(what)?;
        let out = f(&tx)?;
        tx.commit().context(what)?;
        Ok(out)
    }

    /// Runs `f` on a pooled read-only connection.
    pub(crate) fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = self
            .inner
            .readers
            .get()
            .map_err(|e| Error::Busy(format!("no read connection became free: {e}")))?;
        f(&conn)
    }

    /// The writer connection. A panic inside a write rolled its transaction back when the
    /// transaction dropped, so a poisoned mutex still guards a clean connection.
    pub(crate) fn writer(&self) -> Result<MutexGuard<'_, Connection>> {
        let writer = self.inner.writer.as_ref().ok_or_else(|| {
            Error::io(
                "writing to",
                &self.inner.path,
                std::io::Error::new(
                    ErrorKind::PermissionDenied,
                    "the database is read-only for this user (no write access to its directory); reads work, writes need that access",
                ),
            )
        })?;
        Ok(writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()))
    }

    /// Whether writes are possible (false when the database's directory is read-only).
    pub fn is_writable(&self) -> bool {
        self.inner.writer.is_some()
    }
}

/// Opens the writer connection, sets the pragmas and migrates. The caller holds the write lock.
fn open_writer(path: &Path, options: &Options) -> Result<(Connection, u32)> {
    create_private_file(path)?;
    let mut conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| Error::sqlite(format!("opening {}", path.display()), e))?;
    conn.busy_timeout(options.busy_timeout)
        .context("setting busy_timeout")?;
    // Refuse a newer schema before WAL mode or anything else changes a byte.
    migrate::check_known(&conn, &format!("database {}", path.display()))?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0))
        .context("switching to WAL")?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::Invalid(format!(
            "database {} cannot use WAL (journal mode stays {mode}); keep it on a local file system",
            path.display()
        )));
    }
    conn.pragma_update(None, "synchronous", options.synchronous.pragma())
        .context("setting synchronous")?;
    conn.pragma_update(None, "foreign_keys", true)
        .context("enabling foreign keys")?;
    let version = migrate::migrate(&mut conn)?;
    Ok((conn, version))
}

/// How read connections open the file.
#[derive(Clone, Copy)]
enum ReaderTarget {
    /// The normal case: WAL readers alongside this store's writer and other processes.
    Shared,
    /// A database in a directory this process cannot write, at this schema version.
    ReadOnly(u32),
}

impl ReaderTarget {
    fn manager(self, path: &Path) -> SqliteConnectionManager {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        match self {
            ReaderTarget::Shared => SqliteConnectionManager::file(path).with_flags(flags),
            ReaderTarget::ReadOnly(_) => SqliteConnectionManager::file(read_only_uri(path))
                .with_flags(flags | OpenFlags::SQLITE_OPEN_URI),
        }
    }
}

/// Checks a database in a read-only directory and says how to read it. The schema must be
/// current: it cannot be migrated from here.
fn read_only_target(path: &Path, busy_timeout: Duration) -> Result<ReaderTarget> {
    let conn = Connection::open_with_flags(
        read_only_uri(path),
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI,
    )
    .map_err(|e| Error::sqlite(format!("opening {} read-only", path.display()), e))?;
    conn.busy_timeout(busy_timeout)
        .context("setting busy_timeout")?;
    let version = migrate::check_known(&conn, &format!("database {}", path.display()))?;
    if version < SCHEMA_VERSION {
        return Err(Error::Unsupported(format!(
            "database {} has schema version {version} and needs migrating to {SCHEMA_VERSION}, but its directory is read-only; open it once with write access",
            path.display()
        )));
    }
    Ok(ReaderTarget::ReadOnly(version))
}

/// A WAL database needs its -shm file to be read. In a read-only directory it cannot be
/// created; when it is absent (or not readable for us) the file is read as immutable: the state
/// as of the last checkpoint, consistent but possibly behind a writer elsewhere. When a
/// readable -shm exists, SQLite reads through it and sees everything committed.
fn read_only_uri(path: &Path) -> String {
    let mut shm = path.as_os_str().to_owned();
    shm.push("-shm");
    let mut uri = String::from("file:");
    for b in path.as_os_str().as_encoded_bytes() {
        match b {
            b'?' | b'#' | b'%' | 0x80.. => uri.push_str(&format!("%{b:02X}")),
            _ => uri.push(char::from(*b)),
        }
    }
    let readable = std::ffi::CString::new(shm.as_encoded_bytes())
        .is_ok_and(|c| unsafe { libc::access(c.as_ptr(), libc::R_OK) } == 0);
    if !readable {
        uri.push_str("?immutable=1");
    }
    uri
}

/// A permission or read-only file system error: the location is read-only for us.
fn is_read_only(error: &Error) -> bool {
    match error {
        Error::Io { source, .. } => {
            source.kind() == ErrorKind::PermissionDenied
                || source.raw_os_error() == Some(libc::EROFS)
        }
        _ => false,
    }
}

/// Brings a database whose content was just replaced by a restore up to this binary's schema.
/// The caller holds the write lock and the writer connection.
pub(crate) fn migrate_restored(conn: &mut Connection) -> Result<u32> {
    migrate::migrate(conn)
}

/// Creates the database file with mode 0600 before SQLite opens it, so memories that may hold
/// secrets are never world-readable; SQLite gives -wal and -shm the same mode. Only a file that
/// does not exist yet is touched: closing a descriptor of a database this process has open
/// would drop its SQLite locks.
fn create_private_file(path: &Path) -> Result<()> {
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::io("creating database", path, e)),
    }
}
