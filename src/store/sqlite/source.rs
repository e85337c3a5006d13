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
//! size and change times, and whether a `-wal` exists (any connection that opens creates one),
//! are compared before and after the copy, and a copy that may have raced a writer is refused
//! (`Busy`, retry) rather than kept. (File times come from the kernel's coarse clock, a tick
//! of 1-4 ms: a writer that opened, committed, checkpointed and closed within the same tick as
//! the previous close could go unseen — a window this fallback accepts, and the reason the
//! GUIDE.md asks for read access to the `-shm` where it matters.)

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags};

use crate::error::{Error, Result};

/// The read side of a copy, inside an open read transaction.
pub(crate) struct Source {
    pub(crate) conn: Connection,
    /// Set when reading `immutable`: what the file looked like before the copy.
    unguarded_since: Option<FileStamp>,
}

impl Source {
    /// Opens `db` read-only and starts the read transaction that pins the copy's state.
    pub(crate) fn open(db: &Path, busy_timeout: Duration) -> Result<Source> {
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

    /// Whether the read goes through the `-shm` with the other connections (not `immutable`):
    /// then SQLite's WAL locks protect it.
    pub(crate) fn is_shared(&self) -> bool {
        self.unguarded_since.is_none()
    }

    /// Ends the read transaction; for an `immutable` read, checks nothing changed the file
    /// while it was copied.
    pub(crate) fn finish(self, db: &Path) -> Result<()> {
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

/// `file:<path>?immutable=1`.
fn immutable_uri(path: &Path) -> String {
    let mut uri = super::file_uri(path);
    uri.push_str("?immutable=1");
    uri
}

/// What changes when anything writes the file: a checkpoint writes pages (ctime, mtime) and
/// may grow or truncate it; a restore elsewhere would be another inode; a connection opening
/// creates the `-wal` (and the last one closing removes it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileStamp {
    wal_exists: bool,
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
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        Ok(FileStamp {
            wal_exists: Path::new(&wal).symlink_metadata().is_ok(),
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            ctime_ns: meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: Duration = Duration::from_secs(1);

    fn idle_wal_database(dir: &Path) -> std::path::PathBuf {
        let db = dir.join("state.db");
        let conn = Connection::open(&db).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; CREATE TABLE t (x); INSERT INTO t VALUES (1);",
        )
        .unwrap();
        drop(conn);
        db
    }

    #[test]
    fn an_immutable_copy_of_an_untouched_file_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let db = idle_wal_database(dir.path());
        let source = Source {
            conn: begin(&db, WAIT, true).unwrap(),
            unguarded_since: Some(FileStamp::of(&db).unwrap()),
        };
        source.finish(&db).unwrap();
    }

    #[test]
    fn an_immutable_copy_that_raced_a_writer_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = idle_wal_database(dir.path());
        // File times tick coarsely (see the module doc): step past the set-up's last write.
        std::thread::sleep(Duration::from_millis(20));
        let source = Source {
            conn: begin(&db, WAIT, true).unwrap(),
            unguarded_since: Some(FileStamp::of(&db).unwrap()),
        };
        // Meanwhile a writer commits and checkpoints into the file, and closes (removing its
        // -wal again): only the file's own stamp can tell.
        let writer = Connection::open(&db).unwrap();
        writer.execute_batch("INSERT INTO t VALUES (2)").unwrap();
        writer
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
        drop(writer);
        assert!(matches!(source.finish(&db), Err(Error::Busy(_))));

        // A connection merely open at the end is refused too: it may have written.
        let source = Source {
            conn: begin(&db, WAIT, true).unwrap(),
            unguarded_since: Some(FileStamp::of(&db).unwrap()),
        };
        let reader = Connection::open(&db).unwrap();
        reader
            .query_row("SELECT count(*) FROM t", [], |_| Ok(()))
            .unwrap();
        assert!(matches!(source.finish(&db), Err(Error::Busy(_))));
    }
}
