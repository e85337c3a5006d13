//! The SQLite side of the portable snapshot format, for engines that move rows rather than
//! pages (PostgreSQL).
//!
//! A snapshot is a self-contained SQLite database of this binary's schema (see `snapshot.rs`).
//! A SQLite store copies it page by page; another engine:
//!
//! * exports through [`PortableWriter`]: a fresh file at this binary's schema, the rows
//!   inserted one at a time in ONE transaction (the FTS triggers index the memories as they
//!   go in), switched to a rollback journal and checked — the same result as a SQLite export,
//!   so `snapshot verify` and a SQLite restore accept it;
//! * restores through [`PortableReader`]: the verified snapshot staged into a private file
//!   (from the read transaction it was verified in, as the SQLite restore does), migrated to
//!   this binary's schema, then read back table by table.
//!
//! Rows go through one at a time in both directions (row callbacks, a SQLite statement
//! stepping underneath), so memory stays bounded by the largest row, not the store.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, params};

use super::errors::SqlContext;
use super::migrate;
use super::snapshot::{SnapshotFile, backup, counts, integrity_check, page_count};
use crate::error::{Error, Result};
use crate::memory::{MemoryEvent, grams};
use crate::snapshot::SnapshotInfo;
use crate::store::portable::{ArtifactRow, MemoryRow, VectorRow};

/// A snapshot file being written row by row, inside one open transaction.
///
/// Dropped without [`PortableWriter::finish`], the connection closes and the transaction
/// rolls back; the caller removes the (temp) file.
pub(crate) struct PortableWriter {
    conn: Connection,
    path: PathBuf,
}

impl PortableWriter {
    /// Opens the empty file `into` (made by the caller, private), creates this binary's
    /// schema in it and starts the transaction the rows go into.
    pub(crate) fn create(into: &Path) -> Result<PortableWriter> {
        let mut conn = Connection::open_with_flags(
            into,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| Error::sqlite(format!("opening {}", into.display()), e))?;
        // The file is fsynced once, by the caller, after it is complete; a crash before that
        // leaves a temp file only.
        conn.pragma_update(None, "synchronous", "OFF")
            .context("configuring the snapshot copy")?;
        migrate::migrate(&mut conn)?;
        conn.execute_batch("BEGIN IMMEDIATE")
            .context("starting the snapshot copy")?;
        Ok(PortableWriter {
            conn,
            path: into.to_path_buf(),
        })
    }

    /// Adds one artifact.
    pub(crate) fn artifact(&mut self, row: &ArtifactRow) -> Result<()> {
        let size = i64::try_from(row.envelope.len()).unwrap_or(i64::MAX);
        self.conn
            .prepare_cached(
                "INSERT INTO artifacts (digest, envelope, sha256, size, state_type, state_version, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    row.digest,
                    row.envelope,
                    row.sha256,
                    size,
                    row.state_type,
                    row.state_version,
                    row.created_at
                ])
            })
            .context("writing an artifact into the snapshot")?;
        Ok(())
    }

    /// Adds one memory, with its CJK bigrams computed here so the full-text index (filled by
    /// the triggers) finds it exactly as the store did. Add them in id order: `seq`, the
    /// index's row key, then follows the ids as in a store written by this binary.
    pub(crate) fn memory(&mut self, row: &MemoryRow) -> Result<()> {
        let version = i64::try_from(row.version).unwrap_or(i64::MAX);
        self.conn
            .prepare_cached(
                "INSERT INTO memories (id, namespace, category, body, grams, created_at, updated_at, version,
                                       metadata, tags, expires_at, ttl_seconds, refresh_on_read, superseded_by)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    row.id,
                    row.namespace,
                    row.category,
                    row.body,
                    grams(&row.body),
                    row.created_at,
                    row.updated_at,
                    version,
                    row.metadata,
                    row.tags,
                    row.expires_at,
                    row.ttl_seconds,
                    row.refresh_on_read,
                    row.superseded_by
                ])
            })
            .context("writing a memory into the snapshot")?;
        Ok(())
    }

    /// Adds one memory's vector (after the memories: it is keyed by the memory's row). A
    /// vector of a memory the snapshot does not hold is left out.
    pub(crate) fn vector(&mut self, row: &VectorRow) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO memory_vectors (seq, model, version, vector)
                 SELECT seq, ?2, ?3, ?4 FROM memories WHERE id = ?1",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    row.memory_id,
                    row.model,
                    i64::try_from(row.version).unwrap_or(i64::MAX),
                    row.vector
                ])
            })
            .context("writing a memory vector into the snapshot")?;
        Ok(())
    }

    /// Adds one history event (in the order they happened).
    pub(crate) fn event(&mut self, event: &MemoryEvent) -> Result<()> {
        super::memories::insert_event(&self.conn, event)
    }

    /// Records a namespace's default lifetime (after [`PortableWriter::namespace`]).
    pub(crate) fn namespace_ttl(&mut self, namespace: &str, seconds: Option<i64>) -> Result<()> {
        self.conn
            .execute(
                "UPDATE memory_namespaces SET default_ttl_seconds = ?2 WHERE namespace = ?1",
                params![namespace, seconds],
            )
            .context("writing a namespace into the snapshot")?;
        Ok(())
    }

    /// Sets the store-wide counter: the last stamp handed out.
    pub(crate) fn counter(&mut self, value: u64) -> Result<()> {
        let value = i64::try_from(value).unwrap_or(i64::MAX);
        self.conn
            .execute(
                "UPDATE memory_counter SET value = ?1 WHERE only = 0",
                [value],
            )
            .context("writing the memory counter into the snapshot")?;
        Ok(())
    }

    /// Records one namespace's generation.
    pub(crate) fn namespace(&mut self, namespace: &str, generation: u64) -> Result<()> {
        let generation = i64::try_from(generation).unwrap_or(i64::MAX);
        self.conn
            .prepare_cached("INSERT INTO memory_namespaces (namespace, generation) VALUES (?1, ?2)")
            .and_then(|mut stmt| stmt.execute(params![namespace, generation]))
            .context("writing a namespace into the snapshot")?;
        Ok(())
    }

    /// Commits the rows, makes the file a self-contained rollback-journal database, checks
    /// it, closes it and says what it holds (as the SQLite export does).
    pub(crate) fn finish(self) -> Result<SnapshotInfo> {
        let PortableWriter { conn, path } = self;
        conn.execute_batch("COMMIT")
            .context("committing the snapshot copy")?;
        // A new file is in DELETE mode already; say so, as the SQLite export does, so a
        // snapshot never depends on a -wal beside it.
        let mode: String = conn
            .query_row("PRAGMA journal_mode=DELETE", [], |r| r.get(0))
            .context("switching the snapshot to a rollback journal")?;
        if !mode.eq_ignore_ascii_case("delete") {
            return Err(Error::Integrity(format!(
                "the snapshot copy stayed in journal mode {mode}; it was not kept"
            )));
        }
        integrity_check(&conn, "the snapshot copy")?;
        let (pages, _) = page_count(&conn)?;
        let schema_version = migrate::user_version(&conn)?;
        let (artifacts, memories) = counts(&conn)?;
        conn.close()
            .map_err(|(_, e)| Error::sqlite("closing the snapshot copy", e))?;
        let bytes = path
            .metadata()
            .map_err(|e| Error::io("reading the size of", &path, e))?
            .len();
        Ok(SnapshotInfo {
            path,
            bytes,
            pages,
            schema_version,
            artifacts,
            memories,
        })
    }
}

/// A verified snapshot staged in a private file and migrated to this binary's schema, read
/// back table by table.
pub(crate) struct PortableReader {
    conn: Connection,
    schema_version: u32,
}

impl PortableReader {
    /// Copies the verified snapshot `file` (from the read transaction it was verified in, so
    /// what was verified is what is read) into the empty private file `staging`, and migrates
    /// the copy to this binary's schema. The snapshot file itself is never written.
    pub(crate) fn stage(
        file: &SnapshotFile,
        staging: &Path,
        busy_timeout: Duration,
    ) -> Result<PortableReader> {
        let mut conn = Connection::open_with_flags(
            staging,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| Error::sqlite(format!("opening {}", staging.display()), e))?;
        conn.pragma_update(None, "synchronous", "OFF")
            .context("configuring the restore's staging copy")?;
        backup(&file.conn, &mut conn, -1, busy_timeout, &mut |_| {})?;
        let schema_version = migrate::migrate(&mut conn)?;
        Ok(PortableReader {
            conn,
            schema_version,
        })
    }

    /// The staged copy's schema version: this binary's.
    pub(crate) fn schema_version(&self) -> u32 {
        self.schema_version
    }

    /// Hands every artifact to `each`, by digest.
    pub(crate) fn artifacts(&self, each: &mut dyn FnMut(ArtifactRow) -> Result<()>) -> Result<()> {
        let what = "reading the snapshot's artifacts";
        let mut stmt = self
            .conn
            .prepare(
                "SELECT digest, envelope, sha256, state_type, state_version, created_at
                 FROM artifacts ORDER BY digest",
            )
            .context(what)?;
        let mut rows = stmt.query([]).context(what)?;
        while let Some(row) = rows.next().context(what)? {
            each(ArtifactRow {
                digest: row.get(0).context(what)?,
                envelope: row.get(1).context(what)?,
                sha256: row.get(2).context(what)?,
                state_type: row.get(3).context(what)?,
                state_version: row.get(4).context(what)?,
                created_at: row.get(5).context(what)?,
            })?;
        }
        Ok(())
    }

    /// Hands every memory to `each`, oldest id first.
    pub(crate) fn memories(&self, each: &mut dyn FnMut(MemoryRow) -> Result<()>) -> Result<()> {
        let what = "reading the snapshot's memories";
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, namespace, category, body, created_at, updated_at, version,
                        metadata, tags, expires_at, ttl_seconds, refresh_on_read, superseded_by
                 FROM memories ORDER BY id",
            )
            .context(what)?;
        let mut rows = stmt.query([]).context(what)?;
        while let Some(row) = rows.next().context(what)? {
            let version: i64 = row.get(6).context(what)?;
            each(MemoryRow {
                id: row.get(0).context(what)?,
                namespace: row.get(1).context(what)?,
                category: row.get(2).context(what)?,
                body: row.get(3).context(what)?,
                created_at: row.get(4).context(what)?,
                updated_at: row.get(5).context(what)?,
                // A restore moves every version past the counter anyway.
                version: u64::try_from(version).unwrap_or(0),
                metadata: row.get(7).context(what)?,
                tags: row.get(8).context(what)?,
                expires_at: row.get(9).context(what)?,
                ttl_seconds: row.get(10).context(what)?,
                refresh_on_read: row.get(11).context(what)?,
                superseded_by: row.get(12).context(what)?,
            })?;
        }
        Ok(())
    }

    /// Hands every memory vector to `each`, by memory id then model.
    pub(crate) fn vectors(&self, each: &mut dyn FnMut(VectorRow) -> Result<()>) -> Result<()> {
        let what = "reading the snapshot's memory vectors";
        let mut stmt = self
            .conn
            .prepare(
                "SELECT m.id, v.model, v.version, v.vector
                 FROM memory_vectors v JOIN memories m ON m.seq = v.seq ORDER BY m.id, v.model",
            )
            .context(what)?;
        let mut rows = stmt.query([]).context(what)?;
        while let Some(row) = rows.next().context(what)? {
            let version: i64 = row.get(2).context(what)?;
            each(VectorRow {
                memory_id: row.get(0).context(what)?,
                model: row.get(1).context(what)?,
                version: u64::try_from(version).unwrap_or(0),
                vector: row.get(3).context(what)?,
            })?;
        }
        Ok(())
    }

    /// Hands every history event to `each`, in the order they were recorded.
    pub(crate) fn events(&self, each: &mut dyn FnMut(MemoryEvent) -> Result<()>) -> Result<()> {
        let what = "reading the snapshot's memory history";
        let mut stmt = self
            .conn
            .prepare(
                "SELECT memory_id, namespace, action, version, old_text, new_text, changes, actor, at
                 FROM memory_events ORDER BY seq",
            )
            .context(what)?;
        let mut rows = stmt.query([]).context(what)?;
        while let Some(row) = rows.next().context(what)? {
            each(super::memories::event_from_row(row).context(what)?)?;
        }
        Ok(())
    }

    /// Hands every namespace with a default lifetime, and that lifetime, to `each`.
    pub(crate) fn namespace_ttls(
        &self,
        each: &mut dyn FnMut(String, i64) -> Result<()>,
    ) -> Result<()> {
        let what = "reading the snapshot's namespaces";
        let mut stmt = self
            .conn
            .prepare(
                "SELECT namespace, default_ttl_seconds FROM memory_namespaces
                 WHERE default_ttl_seconds IS NOT NULL ORDER BY namespace",
            )
            .context(what)?;
        let mut rows = stmt.query([]).context(what)?;
        while let Some(row) = rows.next().context(what)? {
            each(row.get(0).context(what)?, row.get(1).context(what)?)?;
        }
        Ok(())
    }

    /// The snapshot's counter: the last stamp it had handed out.
    pub(crate) fn counter(&self) -> Result<u64> {
        super::stamps::counter(&self.conn)
    }

    /// Hands every recorded namespace and its generation to `each`.
    pub(crate) fn namespaces(&self, each: &mut dyn FnMut(String, u64) -> Result<()>) -> Result<()> {
        let what = "reading the snapshot's namespaces";
        let mut stmt = self
            .conn
            .prepare("SELECT namespace, generation FROM memory_namespaces ORDER BY namespace")
            .context(what)?;
        let mut rows = stmt.query([]).context(what)?;
        while let Some(row) = rows.next().context(what)? {
            let generation: i64 = row.get(1).context(what)?;
            each(
                row.get(0).context(what)?,
                u64::try_from(generation).unwrap_or(0),
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn artifact(n: u8) -> ArtifactRow {
        let envelope = format!("{{\"type\":\"t\",\"version\":1,\"n\":{n}}}").into_bytes();
        ArtifactRow {
            digest: format!("sha256:{}", crate::digest::Digest::of(&[n]).hex()),
            sha256: crate::digest::Digest::of(&envelope).hex().to_owned(),
            envelope,
            state_type: "t".to_owned(),
            state_version: 1,
            created_at: "2026-01-01T00:00:00Z".to_owned(),
        }
    }

    fn memory(id: &str, namespace: &str, body: &str, version: u64) -> MemoryRow {
        MemoryRow {
            id: id.to_owned(),
            namespace: namespace.to_owned(),
            category: "Note".to_owned(),
            body: body.to_owned(),
            created_at: "2026-01-01T00:00:00Z".to_owned(),
            updated_at: "2026-01-02T00:00:00Z".to_owned(),
            version,
            metadata: r#"{"k":1}"#.to_owned(),
            tags: r#"["t"]"#.to_owned(),
            expires_at: Some("2030-01-01T00:00:00.000000Z".to_owned()),
            ttl_seconds: None,
            refresh_on_read: false,
            superseded_by: None,
        }
    }

    #[test]
    fn rows_written_come_back_through_a_verified_staged_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snap.db");
        std::fs::File::create(&path).unwrap();
        let mut writer = PortableWriter::create(&path).unwrap();
        let artifacts = [artifact(1), artifact(2)];
        for a in &artifacts {
            writer.artifact(a).unwrap();
        }
        let memories = [
            memory("0001", "a", "deploys on Fridays", 3),
            memory("0002", "b", "数据库的配置", 5),
        ];
        for m in &memories {
            writer.memory(m).unwrap();
        }
        let vector = VectorRow {
            memory_id: "0001".to_owned(),
            model: "e5@4".to_owned(),
            version: 3,
            vector: crate::embed::Quantized::of(&[0.5, -0.5, 0.25, 1.0])
                .unwrap()
                .to_bytes(),
        };
        writer.vector(&vector).unwrap();
        // A vector of a memory the snapshot does not hold is left out.
        writer
            .vector(&VectorRow {
                memory_id: "0404".to_owned(),
                ..vector.clone()
            })
            .unwrap();
        writer.counter(5).unwrap();
        writer.namespace("a", 3).unwrap();
        writer.namespace("b", 5).unwrap();
        let info = writer.finish().unwrap();
        assert_eq!(info.artifacts, 2);
        assert_eq!(info.memories, Some(2));
        assert_eq!(info.schema_version, migrate::SCHEMA_VERSION);
        assert_eq!(info.bytes, path.metadata().unwrap().len());

        let file = SnapshotFile::open(&path, Duration::from_secs(1)).unwrap();
        assert_eq!(file.verify().unwrap().artifacts, 2);
        // The triggers indexed the bodies and the bigrams.
        let found: i64 = file
            .conn
            .query_row(
                "SELECT count(*) FROM memories_fts WHERE memories_fts MATCH 'deploy OR 据库'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(found, 2);

        let staging = dir.path().join("staging.db");
        std::fs::File::create(&staging).unwrap();
        let reader = PortableReader::stage(&file, &staging, Duration::from_secs(1)).unwrap();
        let mut read = Vec::new();
        reader
            .artifacts(&mut |a| {
                read.push(a);
                Ok(())
            })
            .unwrap();
        let mut expected = artifacts.to_vec();
        expected.sort_by(|a, b| a.digest.cmp(&b.digest));
        assert_eq!(read, expected);
        let mut read = Vec::new();
        reader
            .memories(&mut |m| {
                read.push(m);
                Ok(())
            })
            .unwrap();
        assert_eq!(read, memories.to_vec());
        let mut vectors = Vec::new();
        reader
            .vectors(&mut |v| {
                vectors.push(v);
                Ok(())
            })
            .unwrap();
        assert_eq!(vectors, vec![vector]);
        assert_eq!(reader.counter().unwrap(), 5);
        let mut namespaces = Vec::new();
        reader
            .namespaces(&mut |n, g| {
                namespaces.push((n, g));
                Ok(())
            })
            .unwrap();
        assert_eq!(namespaces, vec![("a".to_owned(), 3), ("b".to_owned(), 5)]);
    }
}
