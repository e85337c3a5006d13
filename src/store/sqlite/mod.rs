//! The SQLite backend, the embedded default: one database file shared by many processes.
//!
//! * Exactly one writer connection per store, behind a mutex, and `query_only` connections
//!   for reads: the one that checked the schema at open, then an r2d2 pool for reads that
//!   overlap it.
//! * Nothing is paid for before it is needed: opening an existing, current database opens one
//!   read-only connection, which checks the schema and then serves reads; the writer connection
//!   is opened at the first write, and the pool (with its helper threads) at the first read that
//!   finds that connection busy. A one-shot `artifact get` process thus opens one connection
//!   and spawns no thread, and on its way out it neither checkpoints nor deletes the WAL (only
//!   a closing writer does that).
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
mod cache;
pub(crate) mod errors;
mod filter;
pub(crate) mod fts;
mod maintenance;
mod memories;
mod migrate;
mod netfs;
mod pinned;
pub(crate) mod portable;
pub(crate) mod rank;
pub(crate) mod snapshot;
mod source;
pub(crate) mod stamps;
pub(crate) mod tokens;
mod vectors;

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};
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

/// Turns SQLite's memory statistics off for this process. With them on (the bundled build's
/// default) every allocation and free takes a global mutex to count bytes, and a one-shot
/// `artifact get` mostly allocates: the parsed schema, some thirty tables, indexes and
/// triggers, is a tenth of that process's instructions with the counting. modstate reads no
/// memory statistics and sets no heap limit (the two things they serve).
///
/// # Safety
/// Call it before any thread uses SQLite: `sqlite3_config` is not thread-safe. After SQLite is
/// initialised it is refused (the statistics stay on), which is harmless.
pub unsafe fn skip_memory_statistics() {
    // SAFETY: the caller guarantees no other thread is in SQLite; the option takes one int.
    unsafe {
        rusqlite::ffi::sqlite3_config(rusqlite::ffi::SQLITE_CONFIG_MEMSTATUS, 0 as libc::c_int);
    }
}

/// One SQLite database: its connections, its lock directory and how it was opened.
pub(crate) struct SqliteBackend {
    /// The path as the caller spelled it, for messages.
    path: PathBuf,
    /// The path SQLite and the locks use.
    canonical: PathBuf,
    /// Both paths, as the store reports them.
    location: crate::store::Location,
    options: Options,
    locks: LockDir,
    /// How read connections open the file, for the pool built on first need.
    reader_target: ReaderTarget,
    // The readers are declared before `writer` so they drop first: the writer, closing last,
    // can checkpoint and remove the -wal and -shm files, which a read-only connection cannot.
    /// The read-only connection that checked the schema at open; it serves reads while free.
    first_reader: Mutex<Option<Connection>>,
    /// Built at the first read that finds `first_reader` busy (concurrent readers).
    readers: OnceLock<r2d2::Pool<SqliteConnectionManager>>,
    /// False when the database's directory is read-only for this process: reads work,
    /// writes fail with a clear error.
    writable: bool,
    /// Opened at the first write (or at open, when open created or migrated the database).
    writer: OnceLock<Mutex<Connection>>,
    schema_version: u32,
    /// Whether this open created the database file.
    created: bool,
    /// Artifact reads that hit, since this process last folded them into the cache row.
    hits: std::sync::atomic::AtomicU64,
    /// Artifact reads that missed, likewise.
    misses: std::sync::atomic::AtomicU64,
    /// The vectors of the model searched last, kept between searches (`vectors.rs`).
    vector_block: Mutex<Option<vectors::VectorBlock>>,
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
        netfs::refuse_network_fs(&canonical, options.allow_network_fs)?;
        if exists {
            refuse_hard_links(&canonical)?;
        }
        let locks = LockDir::new(&canonical, options.lock_timeout);

        // 2. The schema check. An existing database at the current schema in WAL mode needs
        //    no lock and no writer: one read-only connection checks it and then serves reads.
        //    Anything else (a new file, an older schema, a rollback-journal database) is
        //    created or migrated by the writer under the write lock, where the state is
        //    checked again. A directory this user cannot write gets read-only connections.
        let busy_timeout = options.busy_timeout;
        let writable = can_write(&canonical, exists);
        let writer = OnceLock::new();
        let (first_reader, reader_target, schema_version, created) = if writable {
            let current = if exists {
                check_existing(&canonical, &options)?
            } else {
                None
            };
            match current {
                Some(reader) => (Some(reader), ReaderTarget::Shared, SCHEMA_VERSION, false),
                None => {
                    let (conn, version, created) = create_or_migrate(&canonical, &locks, &options)?;
                    let _ = writer.set(Mutex::new(conn));
                    (None, ReaderTarget::Shared, version, created)
                }
            }
        } else {
            let (conn, version) = read_only_target(&canonical, busy_timeout)?;
            (Some(conn), ReaderTarget::ReadOnly, version, false)
        };
        Ok(SqliteBackend {
            location: crate::store::Location::File {
                path: path.clone(),
                canonical: canonical.clone(),
            },
            path,
            canonical,
            options,
            locks,
            reader_target,
            first_reader: Mutex::new(first_reader),
            readers: OnceLock::new(),
            writable,
            writer,
            schema_version,
            created,
            hits: Default::default(),
            misses: Default::default(),
            vector_block: Mutex::new(None),
        })
    }

    /// The read pool, built on first need. Connections open lazily, and skip the per-checkout
    /// validity query: a SQLite connection does not go stale like a network one.
    fn readers(&self) -> Result<&r2d2::Pool<SqliteConnectionManager>> {
        if let Some(pool) = self.readers.get() {
            return Ok(pool);
        }
        let busy_timeout = self.options.busy_timeout;
        let manager = self
            .reader_target
            .manager(&self.canonical)
            .with_init(move |conn| init_reader(conn, busy_timeout));
        let pool = r2d2::Pool::builder()
            .max_size(self.options.read_pool_size.max(1))
            .min_idle(Some(0))
            .test_on_check_out(false)
            .connection_timeout(self.options.lock_timeout.max(Duration::from_millis(100)))
            .build(manager)
            .map_err(|e| Error::Busy(format!("cannot open read connections: {e}")))?;
        // Two threads may race here; one pool wins and the other is dropped unused.
        Ok(self.readers.get_or_init(|| pool))
    }

    /// Tries to empty the `-wal` file without waiting for anyone: only when the write lock is
    /// free right now, and only if no reader still needs its frames. For the end of long reads
    /// such as a snapshot export, which pin the WAL while they run: once they end, the WAL
    /// shrinks back even in a process that stays open, with no further write needed.
    pub(crate) fn shrink_wal(&self) -> Result<()> {
        if !self.writable || fs::metadata(wal_path(&self.canonical)).map_or(0, |m| m.len()) == 0 {
            return Ok(());
        }
        let Some(_write) = self.locks.try_write()? else {
            return Ok(());
        };
        // Never wait for the writer connection while holding the lock: a thread of this
        // process (or this very thread, inside a restore) may hold it and wait for the lock.
        let Some(conn) = self.try_writer()? else {
            return Ok(());
        };
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
        // Under the write lock: a newer holder's writes, which need that lock too, come after.
        if let Some(fence) = &self.options.fence {
            crate::lock::check_fence(fence, self.locks.issued_token(&fence.key)?)?;
        }
        let out = f(&tx)?;
        tx.commit().context(what)?;
        self.bound_wal(&conn);
        Ok(out)
    }

    /// Runs `f` on a read-only connection: the one opened at open when it is free (the common
    /// case, and the only one in a one-shot command), else one from the pool.
    pub(crate) fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        // A poisoned slot (a panic inside `f`) is simply not used again.
        if let Ok(slot) = self.first_reader.try_lock()
            && let Some(conn) = slot.as_ref()
        {
            return f(conn);
        }
        let conn = self
            .readers()?
            .get()
            .map_err(|e| Error::Busy(format!("no read connection became free: {e}")))?;
        f(&conn)
    }

    /// The writer connection if no one holds it right now (`None` then), opened if needed. For
    /// maintenance taken while holding the write lock, which must not wait for a writer that
    /// waits for that lock in turn (another thread, or this one further up the stack).
    pub(crate) fn try_writer(&self) -> Result<Option<MutexGuard<'_, Connection>>> {
        match self.writer_slot()?.try_lock() {
            Ok(conn) => Ok(Some(conn)),
            Err(std::sync::TryLockError::Poisoned(poisoned)) => Ok(Some(poisoned.into_inner())),
            Err(std::sync::TryLockError::WouldBlock) => Ok(None),
        }
    }

    /// The writer connection, opened at the first call. A panic inside a write rolled its
    /// transaction back when the transaction dropped, so a poisoned mutex still guards a clean
    /// connection.
    pub(crate) fn writer(&self) -> Result<MutexGuard<'_, Connection>> {
        Ok(self
            .writer_slot()?
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()))
    }

    /// The writer connection's mutex, the connection opened at the first call.
    fn writer_slot(&self) -> Result<&Mutex<Connection>> {
        if let Some(writer) = self.writer.get() {
            return Ok(writer);
        }
        if !self.writable {
            return Err(Error::io(
                "writing to",
                &self.path,
                std::io::Error::new(
                    ErrorKind::PermissionDenied,
                    "the database is read-only for this user (no write access to its directory); reads work, writes need that access",
                ),
            ));
        }
        // The schema was current at open; a newer modstate that migrated it since is refused
        // here, before this binary writes with its idea of the tables.
        let conn = connect_writer(&self.canonical, &self.options)?;
        migrate::check_known(&conn, &format!("database {}", self.path.display()))?;
        set_writer_pragmas(&conn, &self.options)?;
        // Two threads may race here; one connection wins and the other is closed unused.
        Ok(self.writer.get_or_init(|| Mutex::new(conn)))
    }

    /// Whether this store has opened its writer connection.
    pub(crate) fn writer_is_open(&self) -> bool {
        self.writer.get().is_some()
    }

    /// Whether writes are possible (false when the database's directory is read-only).
    pub(crate) fn is_writable(&self) -> bool {
        self.writable
    }
}

impl crate::store::Engine for SqliteBackend {
    fn location(&self) -> &crate::store::Location {
        &self.location
    }

    fn options(&self) -> &Options {
        SqliteBackend::options(self)
    }

    fn created(&self) -> bool {
        SqliteBackend::created(self)
    }

    fn schema_version(&self) -> u32 {
        SqliteBackend::schema_version(self)
    }

    fn is_writable(&self) -> bool {
        SqliteBackend::is_writable(self)
    }

    fn shrink_wal(&self) -> Result<()> {
        SqliteBackend::shrink_wal(self)
    }
}

/// Raises `conn`'s page cache to at least `kib` KiB, never lowering it (a pooled connection
/// serves searches of both kinds, and the vector search wants the larger cache). SQLite takes
/// the memory only as pages are read, and keeps the pages between transactions while nothing
/// changed the database, so a search reads what the last one read from memory instead of
/// from the file.
pub(crate) fn widen_page_cache(conn: &Connection, kib: i64) -> rusqlite::Result<()> {
    let pages: i64 = conn.pragma_query_value(None, "cache_size", |r| r.get(0))?;
    // A negative cache_size is in KiB, a positive one in pages.
    let current = if pages < 0 {
        -pages
    } else {
        let page_size: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
        pages.saturating_mul(page_size) / 1024
    };
    if current < kib {
        conn.pragma_update(None, "cache_size", -kib)?;
    }
    Ok(())
}

/// A read connection's settings: `busy_timeout` first, before anything can meet a lock.
fn init_reader(conn: &Connection, busy_timeout: Duration) -> rusqlite::Result<()> {
    conn.busy_timeout(busy_timeout)?;
    conn.pragma_update(None, "query_only", true)
}

/// Opens an existing database with no lock: a read-only connection that reads the schema
/// version and the journal mode. `Some(connection)`, ready to serve reads, when the database is
/// at the current schema in WAL mode; `None` when it needs creating or migrating. A newer schema
/// is refused before anything changes a byte.
fn open_current_reader(path: &Path, busy_timeout: Duration) -> Result<Option<Connection>> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| Error::sqlite(format!("opening {}", path.display()), e))?;
    init_reader(&conn, busy_timeout).context("configuring a read connection")?;
    let version = migrate::check_known(&conn, &format!("database {}", path.display()))?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .context("reading the journal mode")?;
    Ok((version == SCHEMA_VERSION && mode.eq_ignore_ascii_case("wal")).then_some(conn))
}

impl Drop for SqliteBackend {
    /// A store that only read leaves the WAL as tidy as one that wrote. When a `-wal` with
    /// frames is left (writers ran while this store was open), a writer connection is opened
    /// and closed after this store's readers: if it is the last connection to the database in
    /// any process, SQLite checkpoints the WAL and removes it, as it does whenever a read-write
    /// connection closes last (a read-only one cannot). Otherwise every later one-shot process
    /// would rebuild the WAL index from the whole `-wal` when it opens. With an empty or absent
    /// `-wal`, the usual case of a one-shot read, nothing is opened.
    fn drop(&mut self) {
        if self.writer.get().is_some()
            || !self.writable
            || fs::metadata(wal_path(&self.canonical)).map_or(0, |m| m.len()) == 0
        {
            return;
        }
        drop(self.readers.take());
        if let Ok(slot) = self.first_reader.get_mut() {
            drop(slot.take());
        }
        if let Ok(conn) = connect_writer(&self.canonical, &self.options) {
            // Closing checkpoints only a WAL this connection has opened: read something.
            let _ = conn.query_row("PRAGMA user_version", [], |_| Ok(()));
            drop(conn);
        }
    }
}

/// [`open_current_reader`]; when that fails (a damaged or foreign file), the same check again
/// through a read-write connection, whose error is the one reported: unlike a read-only
/// connection, it removes on closing the `-wal` and `-shm` that opening created, so a refused
/// file is left exactly as it was found.
fn check_existing(path: &Path, options: &Options) -> Result<Option<Connection>> {
    if let Ok(found) = open_current_reader(path, options.busy_timeout) {
        return Ok(found);
    }
    let conn = connect_writer(path, options)?;
    migrate::check_known(&conn, &format!("database {}", path.display()))?;
    conn.query_row("PRAGMA journal_mode", [], |row| row.get::<_, String>(0))
        .context("reading the journal mode")?;
    // The read-only check failed where this one passed (a transient error): take the careful
    // path, under the write lock.
    Ok(None)
}

/// Opens the writer of a database that is new, at an older schema or not in WAL mode, under
/// the write lock: creates it, switches it to WAL and migrates it, checking the state again
/// there.
/// The third element says whether this call created the database file (exactly one opener
/// does, `O_EXCL`), so a front end can say so once.
fn create_or_migrate(
    path: &Path,
    locks: &LockDir,
    options: &Options,
) -> Result<(Connection, u32, bool)> {
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
    /// A database in a directory this process cannot write.
    ReadOnly,
}

impl ReaderTarget {
    fn manager(self, path: &Path) -> SqliteConnectionManager {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        match self {
            ReaderTarget::Shared => SqliteConnectionManager::file(path).with_flags(flags),
            ReaderTarget::ReadOnly => SqliteConnectionManager::file(read_only_uri(path))
                .with_flags(flags | OpenFlags::SQLITE_OPEN_URI),
        }
    }
}

/// Checks a database in a read-only directory; returns the checking connection (it then serves
/// reads) and the schema version. The schema must be current: it cannot be migrated from here.
fn read_only_target(path: &Path, busy_timeout: Duration) -> Result<(Connection, u32)> {
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
    Ok((conn, version))
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

/// A new store in `dir` holding one memory per body, and the memories as added: the set-up
/// of the unit tests that read a search's SQL directly.
#[cfg(test)]
pub(crate) fn store_with(
    dir: &Path,
    bodies: &[&str],
) -> (SqliteBackend, Vec<crate::memory::Memory>) {
    let store = SqliteBackend::open(&dir.join("state.db"), Options::default(), true).unwrap();
    let added = store
        .add_memories_sql(
            bodies
                .iter()
                .map(|body| crate::memory::NewMemory {
                    body: (*body).to_owned(),
                    ..Default::default()
                })
                .collect(),
            "",
        )
        .unwrap();
    (store, added)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_cache_is_widened_and_never_narrowed() {
        let cache = |conn: &Connection| -> i64 {
            conn.pragma_query_value(None, "cache_size", |r| r.get(0))
                .unwrap()
        };
        let conn = Connection::open_in_memory().unwrap();
        widen_page_cache(&conn, 32 * 1024).unwrap();
        assert_eq!(cache(&conn), -32 * 1024);
        widen_page_cache(&conn, 128 * 1024).unwrap();
        assert_eq!(cache(&conn), -128 * 1024);
        widen_page_cache(&conn, 32 * 1024).unwrap();
        assert_eq!(
            cache(&conn),
            -128 * 1024,
            "a smaller wish leaves the cache alone"
        );
        // In pages: 40,000 pages of 4 KiB are more than 32 MiB.
        conn.pragma_update(None, "cache_size", 40_000).unwrap();
        widen_page_cache(&conn, 32 * 1024).unwrap();
        assert_eq!(cache(&conn), 40_000);
    }

    fn existing_database(dir: &Path) -> PathBuf {
        let path = dir.join("state.db");
        let created = SqliteBackend::open(&path, Options::default(), true).unwrap();
        created
            .write("creating a row", |tx| {
                tx.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
                    .context("creating a row")
            })
            .unwrap();
        drop(created);
        path
    }

    #[test]
    fn opening_a_current_database_opens_no_writer_and_no_pool_until_needed() {
        let dir = tempfile::tempdir().unwrap();
        let path = existing_database(dir.path());
        let backend = SqliteBackend::open(&path, Options::default(), false).unwrap();
        assert!(backend.writer.get().is_none(), "writer opened at open");
        let x: i64 = backend
            .read(|c| {
                c.query_row("SELECT x FROM t", [], |r| r.get(0))
                    .context("reading")
            })
            .unwrap();
        assert_eq!(x, 1);
        assert!(backend.readers.get().is_none(), "pool built for one read");
        assert!(backend.writer.get().is_none(), "writer opened by a read");
        // A read while the first reader is busy goes to the pool.
        let nested: i64 = backend
            .read(|_| {
                backend.read(|c| {
                    c.query_row("SELECT x FROM t", [], |r| r.get(0))
                        .context("reading")
                })
            })
            .unwrap();
        assert_eq!(nested, 1);
        assert!(
            backend.readers.get().is_some(),
            "overlapping read without the pool"
        );
        backend
            .write("adding a row", |tx| {
                tx.execute("INSERT INTO t VALUES (2)", [])
                    .context("adding a row")
            })
            .unwrap();
        assert!(backend.writer.get().is_some());
    }

    #[test]
    fn a_writer_opened_late_refuses_a_schema_migrated_by_a_newer_modstate_since_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = existing_database(dir.path());
        let backend = SqliteBackend::open(&path, Options::default(), false).unwrap();
        let newer = Connection::open(&path).unwrap();
        newer
            .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        drop(newer);
        let refused = backend.write("adding a row", |tx| {
            tx.execute("INSERT INTO t VALUES (2)", [])
                .context("adding a row")
        });
        assert!(
            matches!(refused, Err(Error::Unsupported(_))),
            "{:?}",
            refused.map(|_| ())
        );
    }

    #[test]
    fn a_store_that_only_read_still_removes_a_wal_left_with_frames_when_it_closes_last() {
        let dir = tempfile::tempdir().unwrap();
        let path = existing_database(dir.path());
        // A writer that died without closing leaves its frames in the -wal: here, a copy of
        // the -wal taken before a clean close, put back after it.
        let wal = wal_path(&path);
        let saved = dir.path().join("saved-wal");
        let writer = Connection::open(&path).unwrap();
        writer
            .execute_batch("PRAGMA wal_autocheckpoint=0; INSERT INTO t VALUES (2);")
            .unwrap();
        fs::copy(&wal, &saved).unwrap();
        drop(writer);
        fs::copy(&saved, &wal).unwrap();
        assert!(fs::metadata(&wal).unwrap().len() > 0);
        let backend = SqliteBackend::open(&path, Options::default(), false).unwrap();
        let n: i64 = backend
            .read(|c| {
                c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
                    .context("reading")
            })
            .unwrap();
        assert_eq!(n, 2);
        drop(backend);
        assert!(
            fs::metadata(&wal).map_or(0, |m| m.len()) == 0,
            "the WAL stayed"
        );
    }
}
