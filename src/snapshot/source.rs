//! The read connection an export copies from, for users who can write the database and for
//! backup users who can only read it.
//!
//! A WAL database is read through its `-shm` file. When no process has the database open
//! there is no `-shm`, and a user without write access to the directory cannot create one:
//! SQLite then fails the first read with "attempt to write a readonly database". The copy
//! falls back to opening the file `immutable`: SQLite reads the main file alone, with no
//! locks. That shows the state as of the last checkpoint (with no connection open, that is
//! the whole state: the last connection to close checkpoints and removes the `-wal`), but it
//! is consistent only if nothing checkpoints into the file meanwhile — so the file's identity,
//! size and change time are compared before and after the copy, and a copy that raced a
//! writer is refused (`Busy`, retry) rather than kept.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags};

use crate::error::{Error, Result};

/// The read side of a copy, inside an open read transaction.
pub(super) struct Source {
    pub(super) conn: Connection,
    /// Set when reading `immutable`: what the file looked like before the copy.
    unguarded_since: Option<FileStamp>,
}

impl Source {
    /// Opens `db` read-only and starts the read transaction that pins the copy's state.
    pub(super) fn open(db: &Path, busy_timeout: Duration) -> Result<Source> {
        match begin(db, busy_timeout, false) {
            Ok(conn) => Ok(Source {
                conn,
                unguarded_since: None,
            }),
            Err(e) if cannot_share_memory(&e) => {
                let before = FileStamp::of(db)?;
                let conn = begin(db, busy_timeout, true).map_err(|e| {
                    Error::sqlite(format!("opening {} read-only (immutable)", db.display()), e)
                })?;
                Ok(Source {
                    conn,
                    unguarded_since: Some(before),
                })
            }
            Err(e) => Err(Error::sqlite("starting the snapshot's read transaction", e)),
        }
    }

    /// Ends the read transaction; for an `immutable` read, checks nothing changed the file
    /// while it was copied.
    pub(super) fn finish(self, db: &Path) -> Result<()> {
        drop(self.conn);
        match self.unguarded_since {
            Some(before) if FileStamp::of(db)? != before => Err(Error::Busy(format!(
                "{} changed while it was copied by a user who cannot write beside it; retry (or grant read access to its -shm file, which exists while a process has the database open)",
                db.display()
            ))),
            _ => Ok(()),
        }
    }
}

fn begin(db: &Path, busy_timeout: Duration, immutable: bool) -> rusqlite::Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = if immutable {
        Connection::open_with_flags(immutable_uri(db), flags | OpenFlags::SQLITE_OPEN_URI)?
    } else {
        Connection::open_with_flags(db, flags)?
    };
    conn.busy_timeout(busy_timeout)?;
    // Pin one read snapshot for the whole copy: later commits by any other connection are
    // invisible to it, so the backup never restarts and never mixes two states.
    conn.execute_batch("BEGIN")?;
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))?;
    Ok(conn)
}

/// SQLite could not use (or create) the `-shm` file: the user may read but not write there.
fn cannot_share_memory(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::ReadOnly | ErrorCode::CannotOpen)
    )
}

/// `file:<path>?immutable=1`, the path percent-encoded where a URI needs it.
fn immutable_uri(path: &Path) -> String {
    let mut uri = String::from("file:");
    for b in path.as_os_str().as_encoded_bytes() {
        match b {
            b'?' | b'#' | b'%' | 0x80.. => uri.push_str(&format!("%{b:02X}")),
            _ => uri.push(char::from(*b)),
        }
    }
    uri.push_str("?immutable=1");
    uri
}

/// What changes when anything writes the file: a checkpoint writes pages (ctime, mtime) and
/// may grow or truncate it; a restore elsewhere would be another inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileStamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
}

impl FileStamp {
    fn of(path: &Path) -> Result<FileStamp> {
        let meta = path
            .metadata()
            .map_err(|e| Error::io("reading the metadata of", path, e))?;
        Ok(FileStamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            ctime_ns: meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
        })
    }
}
