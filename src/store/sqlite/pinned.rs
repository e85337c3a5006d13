//! The fast copy path of an export: when the pinned read snapshot is exactly the database
//! file, copy the file in large chunks through SQLite's own file handle instead of page by
//! page through the backup API.
//!
//! Why the file can be copied as it is, while writers go on:
//!
//! * Under the cross-process write lock (so no modstate writer commits meanwhile), a
//!   `wal_checkpoint(TRUNCATE)` that waits for nobody either fails (a reader still needs WAL
//!   frames: the caller falls back to the backup API) or leaves the WAL empty, with every
//!   commit in the database file.
//! * The export's read transaction then starts, still under the write lock, and the `-wal` is
//!   checked to be empty once it has started. An empty WAL means the snapshot has no WAL frame
//!   (a WAL holding frames of a snapshot is never truncated while that snapshot is read: a
//!   restart or a TRUNCATE checkpoint needs every reader slot). Such a reader holds SQLite's
//!   `WAL_READ_LOCK(0)`, the slot of readers that read the database file alone, and a
//!   checkpoint must take that slot exclusively to write a single page into the database file.
//!   So from then on, until the read transaction ends, no process changes a byte of the file:
//!   writers append to the WAL and checkpoints stop short of the file.
//! * The write lock is released before copying, so writers wait only for the checkpoint.
//!
//! The bytes are read with the `xRead` method of the `sqlite3_file` SQLite itself has open
//! (`SQLITE_FCNTL_FILE_POINTER`): opening and closing another descriptor on the database file
//! would drop every POSIX lock this process holds on it (a close releases the process's locks
//! on that inode), and another process could then think it is the last one, checkpoint and
//! delete the WAL under this process's connections.

use std::ffi::{c_int, c_void};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::{Connection, ffi};

use super::SqliteBackend;
use super::errors::SqlContext;
use crate::error::{Error, Result};
use crate::lock::LockGuard;

/// Bytes read and written per call: large enough that syscalls cost nothing next to the copy.
const CHUNK: usize = 1 << 20;
/// How long the export tries for the write lock before it falls back to the backup API.
const LOCK_PATIENCE: Duration = Duration::from_millis(250);

/// The first half of the fast path, before the export's read transaction starts: takes the
/// write lock (trying for a short while, never the full lock timeout: the backup API is the
/// fallback) and empties the WAL with a TRUNCATE checkpoint that waits for nobody. `Some(guard)`
/// when the WAL is empty: the caller starts its read transaction while holding the guard, then
/// asks [`wal_is_empty`] again and drops the guard. `None` (a read-only user, the lock busy for
/// long, a reader holding WAL frames): the caller copies through the backup API.
pub(crate) fn empty_wal(backend: &SqliteBackend) -> Result<Option<LockGuard>> {
    if !backend.is_writable() {
        return Ok(None);
    }
    let deadline = Instant::now() + LOCK_PATIENCE;
    let guard = loop {
        if let Some(guard) = backend.locks().try_write()? {
            break guard;
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    // Never wait for the writer connection while holding the lock: a thread of this process
    // (or this very thread: a restore's safety snapshot) may hold it and wait for the lock.
    let Some(conn) = backend.try_writer()? else {
        return Ok(None);
    };
    let busy = backend.options().busy_timeout;
    conn.busy_timeout(Duration::ZERO)
        .context("configuring the checkpoint")?;
    // (busy, frames in the log, frames checkpointed): busy = 0 and an empty log.
    let result = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
    });
    conn.busy_timeout(busy)
        .context("configuring the writer after the checkpoint")?;
    let emptied = matches!(result, Ok((0, 0))) && wal_is_empty(backend.canonical_path());
    Ok(emptied.then_some(guard))
}

/// Whether the `-wal` beside the database `db` is empty or absent.
pub(crate) fn wal_is_empty(db: &Path) -> bool {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    match std::fs::metadata(&wal) {
        Ok(meta) => meta.len() == 0,
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

/// Copies the first `bytes` bytes of `source`'s database file into the file at `temp`, in
/// chunks, calling `after_chunk(copied)` after each. `source` must hold a read transaction
/// started under the guard of [`empty_wal`], with [`wal_is_empty`] true once it had started.
pub(crate) fn copy_file(
    source: &Connection,
    db: &Path,
    bytes: u64,
    temp: &Path,
    mut after_chunk: impl FnMut(u64),
) -> Result<()> {
    let mut file: *mut ffi::sqlite3_file = std::ptr::null_mut();
    // SAFETY: `source` is open and used by this thread only; FILE_POINTER writes one pointer
    // to the `sqlite3_file` of the main database into `file`, which stays valid while the
    // connection is open.
    let rc = unsafe {
        ffi::sqlite3_file_control(
            source.handle(),
            c"main".as_ptr(),
            ffi::SQLITE_FCNTL_FILE_POINTER,
            (&raw mut file).cast::<c_void>(),
        )
    };
    // SAFETY: checked non-null; `pMethods` is set on every open sqlite3_file.
    let read = (rc == ffi::SQLITE_OK && !file.is_null())
        .then(|| unsafe { (*file).pMethods })
        .filter(|methods| !methods.is_null())
        // SAFETY: a non-null io_methods table of an open file.
        .and_then(|methods| unsafe { (*methods).xRead })
        .ok_or_else(|| {
            Error::io(
                "reading",
                db,
                std::io::Error::other("SQLite gave no readable handle on the database file"),
            )
        })?;
    let mut out = OpenOptions::new()
        .write(true)
        .open(temp)
        .map_err(|e| Error::io("opening the snapshot copy", temp, e))?;
    let mut buf = vec![0u8; CHUNK];
    let mut copied = 0u64;
    while copied < bytes {
        let n = usize::try_from(bytes - copied).map_or(CHUNK, |left| left.min(CHUNK));
        // SAFETY: `buf` holds at least `n` writable bytes; `file` is the open main database
        // file of `source`, read at an offset inside the pinned snapshot's pages.
        let rc = unsafe {
            read(
                file,
                buf.as_mut_ptr().cast::<c_void>(),
                n as c_int,
                copied as ffi::sqlite3_int64,
            )
        };
        if rc != ffi::SQLITE_OK {
            return Err(Error::io(
                "reading",
                db,
                std::io::Error::other(format!(
                    "reading {n} bytes at offset {copied} failed (SQLite code {rc}); the snapshot was not kept"
                )),
            ));
        }
        out.write_all(&buf[..n])
            .map_err(|e| Error::io("writing the snapshot copy", temp, e))?;
        copied += n as u64;
        after_chunk(copied);
    }
    Ok(())
}
