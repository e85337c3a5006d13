//! The SQLite backend, the embedded default: one database file shared by many processes.
//!
//! * Exactly one writer connection per store, behind a mutex, and an r2d2 pool of
//!   `query_only` connections for reads.
//! * Every write is one `BEGIN IMMEDIATE` transaction taken while holding the cross-process
//!   write lock (`<db>.locks/write`). IMMEDIATE, because a deferred transaction that upgrades
//!   to a write fails in WAL mode with SQLITE_BUSY_SNAPSHOT without consulting the busy handler.
//! * Creating and migrating happen under the write lock as well: switching a fresh database to
//!   WAL needs an exclusive lock that busy_timeout does not retry. Opening an existing, current
//!   database takes no lock at all, so reads never wait for writers.
//! * One database, one name: the file is opened by its canonical path (symlinks and `..`
//!   resolved), so every spelling shares one WAL and one lock directory, and a file with more
//!   than one hard link is refused (SQLite names its -wal after the path it is given, so two
//!   names of one file would get two WALs and lose writes).
//! * The WAL is bounded: `journal_size_limit` trims it when it restarts, and a write that
//!   leaves it above the limit tries a TRUNCATE checkpoint that waits for nobody.
//!
//! This is the only module (with its children) that names `rusqlite`.

mod artifacts;
pub(crate) mod errors;
pub(crate) mod fts;
mod maintenance;
mod memories;
mod migrate;
pub(crate) mod rank;
pub(crate) mod snapshot;
mod source;
pub(crate) mod stamps;

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};

use crate::error::{Error, Result};
use crate::lock::LockDir;
use crate::private::{create_private_dir, create_private_file};
use crate::store::sqlite::errors::SqlContext;
use crate::store::{Options, Synchronous};

pub use migrate::SCHEMA_VERSION;

/// The `synchronous` pragma for a durability setting.
fn synchronous_pragma(sync: Synchronous) -> &'static str {
    match sync {
        Synchronous::Full => "FULL",
        Synchronous::Normal => "NORMAL",
    }
}

/// One SQLite database: its connections, its lock directory and how it was opened.
pub(crate) struct SqliteBackend {
    /// The path as the caller spelled it, for messages.
    path: PathBuf,
    /// The path SQLite and the locks use.
    canonical: PathBuf,
    options: Options,
    locks: LockDir,
    // Declared before `writer` so it drops first: the writer, closing last, can checkpoint and
    // remove the -wal and -shm files, which a read-only connection cannot.
    readers: r2d2::Pool<SqliteConnectionManager>,
    /// `None` when the database's directory is read-only for this process: reads work,
    /// writes fail with a clear error.
    writer: Option<Mutex<Connection>>,
    schema_version: u32,
    /// Whether this open created the database file.
    created: bool,
}

impl SqliteBackend {
    /// Opens the database at `path`; with `create`, creating it (and its directory) if
    /// missing, else a missing database is `NotFound`. Migrates an older schema either way.
    pub(crate) fn open(path: &Path, options: Options, create: bool) -> Result<SqliteBackend> {
        let path = path.to_path_buf();
        if path.is_dir() {
            return Err(Error::Invalid(format!(
                "database path {} is a directory; name a database file instead",
                path.display()
            )));
        }
        // 1. Find the one real name of the database file.
        let exists = match fs::metadata(&path) {
            Ok(_) => true,
            Err(e) if e.kind() == ErrorKind::NotFound => false,
            // A regular file where a directory of the path should be, say.
            Err(e) => return Err(Error::io("opening database", &path, e)),
        };
        if !exists && !create {
            return Err(Error::NotFound(format!(
                "no database at {}",
                path.display()
            )));
        }
        if let Some(parent) = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty() && !p.exists())
        {
            create_private_dir(parent)?;
        }
        let canonical = canonical_db_path(&path)?;
        if exists {
            refuse_hard_links(&canonical)?;
        }
        let locks = LockDir::new(&canonical, options.lock_timeout);

        // 2. The writer: opened with no lock when the database is current, else created or
        //    migrated under the write lock. None where this user cannot write.
        let writer = if can_write(&canonical, exists) {
            Some(open_writer(&canonical, &locks, &options)?)
        } else {
            None
        };

        // 3. The read pool.
        let busy_timeout = options.busy_timeout;
        let reader_target = if writer.is_some() {
            ReaderTarget::Shared
        } else {
            read_only_target(&canonical, busy_timeout)?
        };
        let manager = reader_target.manager(&canonical).with_init(move |conn| {
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

        let created = writer.as_ref().is_some_and(|(_, _, created)| *created);
        let schema_version = match (&writer, reader_target) {
            (Some((_, version, _)), _) => *version,
            (None, ReaderTarget::ReadOnly(version)) => version,
            (None, ReaderTarget::Shared) => unreachable!("read_only_target never answers Shared"),
        };
        Ok(SqliteBackend {
            path,
            canonical,
            options,
            locks,
            readers,
            writer: writer.map(|(conn, _, _)| Mutex::new(conn)),
            schema_version,
            created,
        })
    }

    /// Tries to empty the `-wal` file without waiting for anyone: only when the write lock is
    /// free right now, and only if no reader still needs its frames. For the end of long reads
    /// such as a snapshot export, which pin the WAL while they run: once they end, the WAL
    /// shrinks back even in a process that stays open, with no further write needed.
    pub(crate) fn shrink_wal(&self) -> Result<()> {
        let Some(writer) = self.writer.as_ref() else {
            return Ok(());
        };
        let Some(_write) = self.locks.try_write()? else {
            return Ok(());
        };
        let conn = writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if fs::metadata(wal_path(&self.canonical)).map_or(0, |m| m.len()) > 0 {
            self.truncate_wal(&conn);
        }
        Ok(())
    }

    /// After a commit, with the write lock held: when the WAL has grown past the limit (a
    /// reader pinned old frames while writers went on), try to empty it. The next commit or
    /// [`SqliteBackend::shrink_wal`] tries again if a reader still needs the frames.
    fn bound_wal(&self, conn: &Connection) {
        let size = fs::metadata(wal_path(&self.canonical)).map_or(0, |m| m.len());
        if size > self.options.wal_size_limit {
            self.truncate_wal(conn);
        }
    }

    /// A TRUNCATE checkpoint with no busy wait: copies back what no reader needs and empties
    /// the file if no reader needs any of it; gives up at once otherwise. Never blocks a writer
    /// or a reader.
    fn truncate_wal(&self, conn: &Connection) {
        if conn.busy_timeout(Duration::ZERO).is_ok() {
            let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        }
        let _ = conn.busy_timeout(self.options.busy_timeout);
    }

    /// The database file, as the caller named it.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The database file's canonical path: the one SQLite and the locks use.
    pub(crate) fn canonical_path(&self) -> &Path {
        &self.canonical
    }

    pub(crate) fn options(&self) -> &Options {
        &self.options
    }

    /// Whether opening created the database file.
    pub(crate) fn created(&self) -> bool {
        self.created
    }

    /// The schema version after opening.
    pub(crate) fn schema_version(&self) -> u32 {
        self.schema_version
    }

    /// The lock directory `<db>.locks/`.
    pub(crate) fn locks(&self) -> &LockDir {
        &self.locks
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction under the write lock and commits it.
    /// An error or panic in `f` rolls everything back.
    pub(crate) fn write<T>(
        &self,
        what: &str,
        f: impl FnOnce(&Transaction<'_>) -> Result<T>,
    ) -> Result<T> {
        let mut conn = self.writer()?;
        let _write = self.locks.write()?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .context(what)?;
        let out = f(&tx)?;
        tx.commit().context(what)?;
        self.bound_wal(&conn);
        Ok(out)
    }

    /// Runs `f` on a pooled read-only connection.
    pub(crate) fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = self
            .readers
            .get()
            .map_err(|e| Error::Busy(format!("no read connection became free: {e}")))?;
        f(&conn)
    }

    /// The writer connection. A panic inside a write rolled its transaction back when the
    /// transaction dropped, so a poisoned mutex still guards a clean connection.
    pub(crate) fn writer(&self) -> Result<MutexGuard<'_, Connection>> {
        let writer = self.writer.as_ref().ok_or_else(|| {
            Error::io(
                "writing to",
                &self.path,
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
    pub(crate) fn is_writable(&self) -> bool {
        self.writer.is_some()
    }
}

/// Opens the writer connection. An existing database at the current schema in WAL mode is
/// opened with no lock, so opening never waits for writers; anything else (a new file, an
/// older schema, a rollback-journal database) is created or migrated under the write lock,
/// where the state is checked again.
/// The third element says whether this call created the database file (exactly one opener
/// does, `O_EXCL`), so a front end can say so once.
fn open_writer(path: &Path, locks: &LockDir, options: &Options) -> Result<(Connection, u32, bool)> {
    if path.exists() {
        let conn = connect_writer(path, options)?;
        let version = migrate::check_known(&conn, &format!("database {}", path.display()))?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |row| row.get(0))
            .context("reading the journal mode")?;
        if version == SCHEMA_VERSION && mode.eq_ignore_ascii_case("wal") {
            set_writer_pragmas(&conn, options)?;
            return Ok((conn, version, false));
        }
    }
    let _write = locks.write()?;
    let created = create_private_file(path)?;
    let mut conn = connect_writer(path, options)?;
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
    set_writer_pragmas(&conn, options)?;
    let version = migrate::migrate(&mut conn)?;
    Ok((conn, version, created))
}

/// A read-write connection with `busy_timeout` set first, before anything can meet a lock.
fn connect_writer(path: &Path, options: &Options) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| Error::sqlite(format!("opening {}", path.display()), e))?;
    conn.busy_timeout(options.busy_timeout)
        .context("setting busy_timeout")?;
    Ok(conn)
}

/// The writer's per-connection settings, after `busy_timeout` and WAL.
fn set_writer_pragmas(conn: &Connection, options: &Options) -> Result<()> {
    conn.pragma_update(None, "synchronous", synchronous_pragma(options.synchronous))
        .context("setting synchronous")?;
    conn.pragma_update(None, "foreign_keys", true)
        .context("enabling foreign keys")?;
    let limit = i64::try_from(options.wal_size_limit).unwrap_or(i64::MAX);
    conn.query_row(
        &format!("PRAGMA journal_size_limit={limit}"),
        [],
        |_| Ok(()),
    )
    .context("setting journal_size_limit")
}

/// The canonical path of a database file: symlinks and `..` resolved, so every spelling of
/// one database names the same file, WAL and lock directory. A file that does not exist yet
/// is named inside its resolved directory, which must exist.
pub fn canonical_db_path(path: &Path) -> Result<PathBuf> {
    match fs::canonicalize(path) {
        Ok(canonical) => Ok(canonical),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            let name = path.file_name().ok_or_else(|| {
                Error::Invalid(format!("{} does not name a database file", path.display()))
            })?;
            let parent = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let dir = fs::canonicalize(parent).map_err(|e| Error::io("resolving", parent, e))?;
            Ok(dir.join(name))
        }
        Err(e) => Err(Error::io("resolving", path, e)),
    }
}

/// Refuses a database file that has another name: SQLite keeps the -wal and -shm beside the
/// path it is given, so writers through two names of one file use two WALs, lose
/// acknowledged writes and corrupt the file.
fn refuse_hard_links(path: &Path) -> Result<()> {
    let meta = fs::metadata(path).map_err(|e| Error::io("reading", path, e))?;
    if meta.nlink() > 1 {
        return Err(Error::Invalid(format!(
            "database {} has {} hard links; two names for one SQLite file give it two WALs and lose writes — remove the other links (find / -samefile {}) and use one path",
            path.display(),
            meta.nlink(),
            path.display()
        )));
    }
    Ok(())
}

/// Whether this process can write the database: its directory (for the -wal and -shm files)
/// and, when it exists, the file itself.
fn can_write(path: &Path, exists: bool) -> bool {
    let writable = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_encoded_bytes())
            // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
            .is_ok_and(|c| unsafe { libc::access(c.as_ptr(), libc::W_OK) } == 0)
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    writable(dir) && (!exists || writable(path))
}

/// `<db>-wal`
fn wal_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
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
    let mut uri = file_uri(path);
    let readable = std::ffi::CString::new(shm.as_encoded_bytes())
        // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
        .is_ok_and(|c| unsafe { libc::access(c.as_ptr(), libc::R_OK) } == 0);
    if !readable {
        uri.push_str("?immutable=1");
    }
    uri
}

/// `file:<path>`, the path percent-encoded where a URI needs it, for opening with
/// `SQLITE_OPEN_URI` (and query parameters such as `immutable=1`).
pub(crate) fn file_uri(path: &Path) -> String {
    let mut uri = String::from("file:");
    for b in path.as_os_str().as_encoded_bytes() {
        match b {
            b'?' | b'#' | b'%' | 0x80.. => uri.push_str(&format!("%{b:02X}")),
            _ => uri.push(char::from(*b)),
        }
    }
    uri
}
