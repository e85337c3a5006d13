//! `Store::verify_snapshot`: is this file a sound modstate snapshot this binary can restore?

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::{SnapshotInfo, counts, integrity_check, page_count};
use crate::digest::Digest;
use crate::error::{Error, Result, SqlContext};
use crate::store::{Options, SCHEMA_VERSION, Store};

impl Store {
    /// Opens the snapshot at `path` read-only and checks it: SQLite's integrity_check, a
    /// schema version this binary knows, and every artifact's payload against its stored hash.
    ///
    /// Errors: `NotFound` (no such file), `Integrity` (corrupt), `Unsupported` (newer schema),
    /// `Invalid` (not a modstate database).
    pub fn verify_snapshot(path: impl AsRef<Path>) -> Result<SnapshotInfo> {
        verify(path.as_ref(), Options::default().busy_timeout)
    }
}

/// [`Store::verify_snapshot`] with the caller's busy timeout.
pub(crate) fn verify(path: &Path, busy_timeout: Duration) -> Result<SnapshotInfo> {
    let bytes = regular_file_len(path)?;
    let conn = open_read_only(path, busy_timeout)?;
    verify_open(&conn, path, bytes)
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

/// Checks the snapshot through `conn`, which may hold a read transaction that a restore then
/// copies from, so what was checked is exactly what gets copied.
pub(crate) fn verify_open(conn: &Connection, path: &Path, bytes: u64) -> Result<SnapshotInfo> {
    let what = format!("snapshot {}", path.display());
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
        path: path.to_path_buf(),
        bytes,
        pages,
        schema_version,
        artifacts,
        memories,
    })
}

pub(crate) fn open_read_only(path: &Path, busy_timeout: Duration) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| Error::sqlite(format!("opening {}", path.display()), e))?;
    conn.busy_timeout(busy_timeout)
        .context("setting busy_timeout")?;
    Ok(conn)
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
