//! Snapshots on SQLite: the online backup out of the live database, the snapshot file (the
//! portable format, itself a SQLite database), and the restore back in.
//!
//! Export: SQLite's backup API from a dedicated read connection inside ONE read transaction
//! ([`Source`]), so commits made meanwhile neither restart nor tear the copy and no writer
//! waits; the copy is switched to a self-contained rollback-journal file and checked.
//!
//! Restore, straight-line, so a crash at any step leaves the live database as it was or fully
//! restored, never in between:
//! 1. stage the verified snapshot (the very read transaction it was verified in) into a
//!    private staging file beside the database;
//! 2. under the write lock, read what the live database has handed out (stamps);
//! 3. in the staging file: migrate to this binary's schema and move every generation and
//!    version past what the live database handed out (no ABA);
//! 4. copy the staging file into the live database in one backup step: one write transaction.

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

use super::pinned;
use super::source::Source;
use super::stamps::{advance_after_restore, stamps_before_restore};
use super::{SqliteBackend, migrate};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::snapshot::{CopyProgress, SnapshotInfo};
use crate::store::SCHEMA_VERSION;
use crate::store::sqlite::errors::SqlContext;

/// Pages copied per backup step of an export: between steps the progress display is updated
/// and written pages start going to disk. All steps run inside one read transaction, so the
/// number of steps does not affect consistency.
const PAGES_PER_STEP: i32 = 4096;

/// A snapshot file opened read-only inside one read transaction: what is verified through it
/// is exactly what a restore copies from it, even if the file is replaced meanwhile.
pub(crate) struct SnapshotFile {
    pub(super) conn: Connection,
    path: std::path::PathBuf,
    bytes: u64,
}

impl SnapshotFile {
    /// Opens the snapshot at `path` and starts its read transaction.
    pub(crate) fn open(path: &Path, busy_timeout: Duration) -> Result<SnapshotFile> {
        let bytes = regular_file_len(path)?;
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| Error::sqlite(format!("opening {}", path.display()), e))?;
        conn.busy_timeout(busy_timeout)
            .context("setting busy_timeout")?;
        conn.execute_batch("BEGIN")
            .context("reading the snapshot")?;
        Ok(SnapshotFile {
            conn,
            path: path.to_path_buf(),
            bytes,
        })
    }

    /// Its artifact and memory counts, without the checks of [`SnapshotFile::verify`].
    pub(crate) fn counts(&self) -> Result<(u64, Option<u64>)> {
        counts(&self.conn)
    }

    /// Is this a sound modstate snapshot this binary can restore? SQLite's integrity_check, a
    /// schema version this binary knows, and every artifact's payload against its stored hash.
    pub(crate) fn verify(&self) -> Result<SnapshotInfo> {
        let conn = &self.conn;
        let what = format!("snapshot {}", self.path.display());
        integrity_check(conn, &what)?;
        let schema_version: u32 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .context("reading the snapshot's schema version")?;
        if schema_version > SCHEMA_VERSION {
            return Err(Error::Unsupported(format!(
                "{what} has schema version {schema_version}, but this modstate knows only up to {SCHEMA_VERSION}; upgrade modstate"
            )));
        }
        let has_artifacts: bool = conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'artifacts')",
                [],
                |r| r.get(0),
            )
            .context("reading the snapshot's schema")?;
        if schema_version == 0 || !has_artifacts {
            return Err(Error::Invalid(format!(
                "{what} is a SQLite database but not a modstate one (schema version {schema_version}); give a file made by `modstate snapshot export`"
            )));
        }
        check_artifact_hashes(conn, &what)?;
        let (pages, _) = page_count(conn)?;
        let (artifacts, memories) = counts(conn)?;
        Ok(SnapshotInfo {
            path: self.path.clone(),
            bytes: self.bytes,
            pages,
            schema_version,
            artifacts,
            memories,
        })
    }
}

/// The size of the snapshot file. A missing file or a directory in its place is an I/O error
/// (exit 1), as for every other file a command reads.
pub(crate) fn regular_file_len(path: &Path) -> Result<u64> {
    let meta = path
        .metadata()
        .map_err(|e| Error::io("reading snapshot", path, e))?;
    if !meta.is_file() {
        return Err(Error::io(
            "reading snapshot",
            path,
            std::io::Error::other("not a regular file; give the snapshot file's path"),
        ));
    }
    Ok(meta.len())
}

impl SqliteBackend {
    /// Copies the database as of one instant into the empty file `into`, switches the copy to
    /// a self-contained rollback-journal file and checks it. `after_step` runs after each
    /// chunk of pages.
    pub(crate) fn export_snapshot_sql(
        &self,
        into: &Path,
        after_step: &mut dyn FnMut(CopyProgress),
    ) -> Result<SnapshotInfo> {
        let busy_timeout = self.options().busy_timeout;
        // One read transaction for the whole copy (see `Source`), also for a read-only user.
        // When it can be started with the WAL empty, the database file alone holds its state
        // and is copied in large chunks outside SQLite's pager (see `pinned`); else the
        // backup API copies it page by page.
        let empty_wal = pinned::empty_wal(self)?;
        let source = Source::open(self.canonical_path(), busy_timeout)?;
        let file_holds_snapshot = empty_wal.is_some()
            && source.is_shared()
            && pinned::wal_is_empty(self.canonical_path());
        // Writers wait only for the checkpoint, not for the copy.
        drop(empty_wal);
        if file_holds_snapshot {
            let (pages, page_size) = page_count(&source.conn)?;
            pinned::copy_file(
                &source.conn,
                self.canonical_path(),
                pages * page_size,
                into,
                |copied| {
                    after_step(CopyProgress {
                        copied_pages: copied / page_size.max(1),
                        total_pages: pages,
                        page_size,
                    })
                },
            )?;
        }
        let mut dest = Connection::open_with_flags(
            into,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| Error::sqlite(format!("opening {}", into.display()), e))?;
        // The file is fsynced once, after the copy; a crash before that leaves a temp file only.
        dest.pragma_update(None, "synchronous", "OFF")
            .context("configuring the snapshot copy")?;
        if !file_holds_snapshot {
            backup(
                &source.conn,
                &mut dest,
                PAGES_PER_STEP,
                busy_timeout,
                after_step,
            )?;
        }
        // End the read transaction now: it holds back WAL checkpoints for everyone.
        source.finish(self.canonical_path())?;

        // The copy's header still says WAL (copied from the source); make it a self-contained
        // single file that needs no -wal to be read.
        let mode: String = dest
            .query_row("PRAGMA journal_mode=DELETE", [], |r| r.get(0))
            .context("switching the snapshot to a rollback journal")?;
        if !mode.eq_ignore_ascii_case("delete") {
            return Err(Error::Integrity(format!(
                "the snapshot copy stayed in journal mode {mode}; it was not kept"
            )));
        }
        // Checked through a memory map of the copy (this export's own temp file, which nothing
        // else opens): the check reads every page, and a page read from the map costs no
        // system call.
        let copy_bytes = into
            .metadata()
            .map_err(|e| Error::io("reading the size of", into, e))?
            .len();
        dest.query_row(&format!("PRAGMA mmap_size={copy_bytes}"), [], |_| Ok(()))
            .context("mapping the snapshot copy")?;
        integrity_check(&dest, "the snapshot copy")?;
        let (pages, _) = page_count(&dest)?;
        let schema_version: u32 = dest
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .context("reading the schema version")?;
        let (artifacts, memories) = counts(&dest)?;
        dest.close()
            .map_err(|(_, e)| Error::sqlite("closing the snapshot copy", e))?;
        let bytes = into
            .metadata()
            .map_err(|e| Error::io("reading the size of", into, e))?
            .len();
        Ok(SnapshotInfo {
            path: into.to_path_buf(),
            bytes,
            pages,
            schema_version,
            artifacts,
            memories,
        })
    }

    /// Replaces the database's content with the verified snapshot `file`, through the empty
    /// private file `staging` (see the module doc for the steps). The caller holds the global
    /// lock exclusively; `before_copy` runs under the write lock before anything changes (the
    /// safety snapshot). Returns the restored database's schema version.
    pub(crate) fn restore_snapshot_sql(
        &self,
        file: &SnapshotFile,
        staging: &Path,
        before_copy: &mut dyn FnMut() -> Result<()>,
    ) -> Result<u32> {
        let busy_timeout = self.options().busy_timeout;
        // 1. Stage the verified snapshot from the read transaction it was verified in.
        let mut staged = Connection::open_with_flags(
            staging,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| Error::sqlite(format!("opening {}", staging.display()), e))?;
        staged
            .pragma_update(None, "synchronous", "OFF")
            .context("configuring the restore's staging copy")?;
        backup(&file.conn, &mut staged, -1, busy_timeout, &mut |_| {})?;

        // 2. Under the write lock: what the live database has handed out.
        let mut writer = self.writer()?;
        let _write = self.locks().write()?;
        check_page_sizes(&staged, &writer, &file.path)?;
        before_copy()?;
        let live = stamps_before_restore(&writer)?;

        // 3. In the staging copy: this binary's schema, and stamps past every value handed out.
        let schema_version = migrate::migrate(&mut staged)?;
        advance_after_restore(&mut staged, live)?;

        // 4. All pages in one step: one write transaction on the live database.
        backup(&staged, &mut writer, -1, busy_timeout, &mut |_| {})?;
        drop(staged);
        // Best effort: fold the restored pages from the WAL into the file now rather than at
        // the next write. Readers still on the old state make this partial; that is fine.
        let _ = writer.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
        Ok(schema_version)
    }
}

/// Copies every page of `from` into `to` with SQLite's backup API, `pages` at a time (-1: all
/// in one step, one write transaction on `to`), retrying while busy until the busy timeout.
pub(super) fn backup(
    from: &Connection,
    to: &mut Connection,
    pages: i32,
    busy_timeout: Duration,
    after_step: &mut dyn FnMut(CopyProgress),
) -> Result<()> {
    let (_, page_size) = page_count(from)?;
    let backup = Backup::new(from, to).context("starting the backup")?;
    let deadline = Instant::now() + busy_timeout;
    loop {
        match backup.step(pages).context("copying the database")? {
            StepResult::Done => return Ok(()),
            StepResult::Busy | StepResult::Locked => {
                if Instant::now() >= deadline {
                    return Err(Error::Busy(
                        "the database stayed locked during the backup copy; nothing was changed — retry, or raise the lock timeout".to_owned(),
                    ));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            // More (and any future non-final result): keep stepping.
            _ => {}
        }
        let p = backup.progress();
        let total = p.pagecount.max(0) as u64;
        after_step(CopyProgress {
            copied_pages: total.saturating_sub(p.remaining.max(0) as u64),
            total_pages: total,
            page_size,
        });
    }
}

/// A WAL database accepts a backup only from a source with the same page size.
fn check_page_sizes(source: &Connection, live: &Connection, snapshot: &Path) -> Result<()> {
    let (_, from) = page_count(source)?;
    let (_, to) = page_count(live)?;
    if from != to {
        return Err(Error::Unsupported(format!(
            "snapshot {} has page size {from} but the live database uses {to}; a WAL database cannot take it in place — restore into a new database path instead",
            snapshot.display()
        )));
    }
    Ok(())
}

/// integrity_check sees structure, not payloads: a flipped byte inside an envelope shows only
/// against the hash stored beside it.
fn check_artifact_hashes(conn: &Connection, what: &str) -> Result<()> {
    let mut stmt = conn
        .prepare("SELECT digest, envelope, sha256 FROM artifacts")
        .context("reading the snapshot's artifacts")?;
    let mut rows = stmt.query([]).context("reading the snapshot's artifacts")?;
    while let Some(row) = rows.next().context("reading the snapshot's artifacts")? {
        let digest: String = row.get(0).context("reading the snapshot's artifacts")?;
        let envelope: Vec<u8> = row.get(1).context("reading the snapshot's artifacts")?;
        let sha: String = row.get(2).context("reading the snapshot's artifacts")?;
        if Digest::of(&envelope).hex() != sha {
            return Err(Error::Integrity(format!(
                "{what} is corrupted: artifact {digest} no longer matches its stored sha256; use another snapshot"
            )));
        }
    }
    Ok(())
}

/// Row counts of the tables a report names; `memories` only where that table exists, so this
/// works on schemas from before and after it was added.
pub(super) fn counts(conn: &Connection) -> Result<(u64, Option<u64>)> {
    let artifacts: i64 = conn
        .query_row("SELECT count(*) FROM artifacts", [], |r| r.get(0))
        .context("counting artifacts")?;
    let has_memories: bool = conn
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'memories')",
            [],
            |r| r.get(0),
        )
        .context("looking for the memories table")?;
    let memories = if has_memories {
        let n: i64 = conn
            .query_row("SELECT count(*) FROM memories", [], |r| r.get(0))
            .context("counting memories")?;
        Some(n as u64)
    } else {
        None
    };
    Ok((artifacts as u64, memories))
}

/// `PRAGMA integrity_check` → `ok`, or an Integrity error quoting the first problems.
pub(super) fn integrity_check(conn: &Connection, what: &str) -> Result<()> {
    let mut stmt = conn
        .prepare("PRAGMA integrity_check(20)")
        .context("running integrity_check")?;
    let problems = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .context("running integrity_check")?
        .collect::<rusqlite::Result<Vec<_>>>()
        .context("running integrity_check")?;
    if problems.len() == 1 && problems[0] == "ok" {
        return Ok(());
    }
    Err(Error::Integrity(format!(
        "{what} failed integrity_check: {}",
        problems.join("; ")
    )))
}

pub(super) fn page_count(conn: &Connection) -> Result<(u64, u64)> {
    let pages: i64 = conn
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .context("reading the page count")?;
    let page_size: i64 = conn
        .query_row("PRAGMA page_size", [], |r| r.get(0))
        .context("reading the page size")?;
    Ok((pages as u64, page_size as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memories_are_counted_only_where_the_table_exists() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE artifacts (digest TEXT); INSERT INTO artifacts VALUES ('a');",
        )
        .unwrap();
        assert_eq!(counts(&conn).unwrap(), (1, None));
        conn.execute_batch(
            "CREATE TABLE memories (id INTEGER); INSERT INTO memories VALUES (1), (2);",
        )
        .unwrap();
        assert_eq!(counts(&conn).unwrap(), (1, Some(2)));
    }
}
