//! The SQLite side of looking after a store: counts, integrity, prune, vacuum, memory export
//! and import. The rules are in `crate::maintenance`; this is the SQL.

use std::collections::BTreeSet;

use rusqlite::{OptionalExtension, params};

use super::SqlContext;
use super::{SqliteBackend, stamps};
use crate::artifact::cache::{CachePolicy, CacheStats, Candidate, Collection, Plan};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::maintenance::imported_event;
use crate::maintenance::{
    ExportedMemory, ImportReport, IntegrityReport, NamespaceCount, Stats, file_len, suffixed,
};
use crate::memory::grams;
use crate::store::Maintenance;

const EXPORT_COLUMNS: &str = "id, namespace, category, body, created_at, updated_at, version, metadata, tags, expires_at, ttl_seconds, refresh_on_read, superseded_by";

fn exported_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ExportedMemory> {
    Ok(ExportedMemory {
        format: crate::maintenance::EXPORT_FORMAT,
        metadata: match serde_json::from_str(&r.get::<_, String>(7)?) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => serde_json::Map::new(),
        },
        tags: serde_json::from_str(&r.get::<_, String>(8)?).unwrap_or_default(),
        expires_at: r.get(9)?,
        ttl_seconds: r
            .get::<_, Option<i64>>(10)?
            .and_then(|t| u64::try_from(t).ok()),
        refresh_on_read: r.get(11)?,
        superseded_by: r.get(12)?,
        history: Vec::new(),
        id: r.get(0)?,
        namespace: r.get(1)?,
        category: r.get(2)?,
        text: r.get(3)?,
        created_at: r.get(4)?,
        updated_at: r.get(5)?,
        version: u64::try_from(r.get::<_, i64>(6)?).unwrap_or(0),
    })
}

fn count(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

impl Maintenance for SqliteBackend {
    fn stats(&self) -> Result<Stats> {
        let canonical = self.canonical_path().to_path_buf();
        self.read(|conn| {
            let mut stmt = conn
                .prepare(
                    "SELECT m.namespace, count(*), coalesce(n.generation, 0)
                     FROM memories m LEFT JOIN memory_namespaces n USING (namespace)
                     GROUP BY m.namespace ORDER BY m.namespace",
                )
                .context("counting memories")?;
            let memories = stmt
                .query_map([], |r| {
                    Ok(NamespaceCount {
                        namespace: r.get(0)?,
                        memories: count(r.get(1)?),
                        generation: count(r.get(2)?),
                    })
                })
                .context("counting memories")?
                .collect::<rusqlite::Result<Vec<_>>>()
                .context("counting memories")?;
            let free: i64 = conn
                .query_row("PRAGMA freelist_count", [], |r| r.get(0))
                .context("reading the free page count")?;
            let page_size: i64 = conn
                .query_row("PRAGMA page_size", [], |r| r.get(0))
                .context("reading the page size")?;
            let (history_events, history_bytes): (i64, i64) = conn
                .query_row(
                    "SELECT count(*), coalesce(sum(coalesce(length(CAST(old_text AS BLOB)), 0)
                        + coalesce(length(CAST(new_text AS BLOB)), 0) + length(CAST(changes AS BLOB))), 0)
                     FROM memory_events",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .context("counting memory history")?;
            Ok(Stats {
                // From the cache's totals, by the caller: no scan.
                artifacts: 0,
                artifact_bytes: 0,
                history_events: count(history_events),
                history_bytes: count(history_bytes),
                memories,
                db_bytes: file_len(&canonical),
                wal_bytes: file_len(&suffixed(&canonical, "-wal")),
                free_pages: count(free),
                page_size: count(page_size),
                cache: Default::default(),
            })
        })
    }

    fn check_integrity(&self) -> Result<IntegrityReport> {
        let findings = self.read(|conn| {
            let mut stmt = conn
                .prepare("PRAGMA integrity_check(10)")
                .context("checking integrity")?;
            stmt.query_map([], |r| r.get::<_, String>(0))
                .context("checking integrity")?
                .collect::<rusqlite::Result<Vec<_>>>()
                .context("checking integrity")
        });
        let integrity_problem = match findings {
            Ok(rows) if rows.len() == 1 && rows[0] == "ok" => None,
            Ok(rows) => Some(rows.join("; ")),
            Err(Error::Integrity(m)) => Some(m),
            Err(e) => return Err(e),
        };
        // FTS5's integrity-check with rank 1 compares the index with the content table. It
        // is an INSERT that changes nothing, so it needs a write transaction.
        let fts_problem = if !self.is_writable() {
            Some("skipped: the database is read-only for this user".to_owned())
        } else {
            let checked = self.write("checking the full-text index", |tx| {
                tx.execute(
                    "INSERT INTO memories_fts (memories_fts, rank) VALUES ('integrity-check', 1)",
                    [],
                )
                .context("checking the full-text index")?;
                Ok(())
            });
            match checked {
                Ok(()) => None,
                Err(Error::Integrity(m)) => Some(m),
                Err(Error::Database { source, .. }) => Some(source.to_string()),
                Err(e) => return Err(e),
            }
        };
        Ok(IntegrityReport {
            integrity_problem,
            fts_problem,
        })
    }

    fn cache_stats(&self, pins: bool) -> Result<CacheStats> {
        // After a put (no pins asked), on the writer connection that put used: a process that
        // only wrote then opens no read connection, and its writer, closing last, still
        // checkpoints and removes the WAL.
        if !pins
            && self.writer_is_open()
            && let Ok(Some(conn)) = self.try_writer()
        {
            return super::cache::cache_stats(&conn, false);
        }
        self.read(|conn| super::cache::cache_stats(conn, pins))
    }

    fn set_cache_policy(&self, policy: &CachePolicy, touch_interval_ms: Option<i64>) -> Result<()> {
        self.write("storing the cache policy", |tx| {
            super::cache::set_policy(tx, policy, touch_interval_ms)
        })
    }

    fn pin_artifact(&self, digest: &Digest, expires_ms: Option<i64>) -> Result<bool> {
        self.write("pinning an artifact", |tx| {
            super::cache::pin(tx, digest, expires_ms)
        })
    }

    fn unpin_artifact(&self, digest: &Digest) -> Result<bool> {
        self.write("unpinning an artifact", |tx| {
            super::cache::unpin(tx, digest)
        })
    }

    fn collect_artifacts(
        &self,
        choose: &mut dyn FnMut(&CacheStats, &[Candidate]) -> Result<Plan>,
        dry_run: bool,
        now_ms: i64,
    ) -> Result<Option<Collection>> {
        if dry_run {
            return self.read(|conn| super::cache::collect(conn, choose, true, now_ms));
        }
        self.write("collecting artifacts", |tx| {
            self.fold_counters(tx)?;
            super::cache::collect(tx, choose, false, now_ms)
        })
    }

    fn vacuum(&self) -> Result<()> {
        // VACUUM cannot run inside a transaction: the writer connection, under the write lock.
        let conn = self.writer()?;
        let _write = self.locks().write()?;
        conn.execute_batch("VACUUM").context("vacuuming")?;
        // Copy the rebuilt pages back and empty the WAL, if no reader still needs it.
        let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        Ok(())
    }

    fn export_memories(&self, namespace: Option<&str>) -> Result<Vec<ExportedMemory>> {
        let now = crate::time::now_rfc3339();
        self.read(|conn| {
            // One read transaction: the memories and their histories as of one instant.
            let tx = conn
                .unchecked_transaction()
                .context("exporting memories")?;
            let sql = format!(
                "SELECT {EXPORT_COLUMNS} FROM memories WHERE (?1 IS NULL OR namespace = ?1)
                   AND (expires_at IS NULL OR expires_at > ?2) ORDER BY id"
            );
            let mut memories = {
                let mut stmt = tx.prepare(&sql).context("exporting memories")?;
                stmt.query_map(params![namespace, now], exported_from_row)
                    .context("exporting memories")?
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .context("exporting memories")?
            };
            let mut stmt = tx
                .prepare_cached(
                    "SELECT memory_id, namespace, action, version, old_text, new_text, changes, actor, at
                     FROM memory_events WHERE memory_id = ?1 ORDER BY seq",
                )
                .context("exporting memory history")?;
            for m in &mut memories {
                m.history = stmt
                    .query_map([&m.id], super::memories::event_from_row)
                    .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                    .context("exporting memory history")?;
            }
            Ok(memories)
        })
    }

    fn import_memories(&self, memories: &[(usize, ExportedMemory)]) -> Result<ImportReport> {
        self.write("importing memories", |tx| {
            let mut report = ImportReport::default();
            let mut touched = BTreeSet::new();
            let mut newest_version = 0;
            for (line, m) in memories {
                let existing = tx
                    .prepare_cached(&format!(
                        "SELECT {EXPORT_COLUMNS} FROM memories WHERE id = ?1"
                    ))
                    .and_then(|mut stmt| stmt.query_row([&m.id], exported_from_row).optional())
                    .context("importing memories")?;
                match existing {
                    Some(here) if here.same_memory(m) => report.unchanged += 1,
                    Some(here) => {
                        return Err(Error::Invalid(format!(
                            "line {line}: memory {} is already in this store with other content (version {} here, {} in the file); nothing was imported — remove that line, or the memory here, and retry",
                            m.id, here.version, m.version
                        )));
                    }
                    None => {
                        tx.prepare_cached(
                            "INSERT INTO memories (id, namespace, category, body, grams, created_at, updated_at, version,
                                                   metadata, tags, expires_at, ttl_seconds, refresh_on_read, superseded_by)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
                        )
                        .and_then(|mut stmt| {
                            stmt.execute(params![
                                m.id,
                                m.namespace,
                                m.category,
                                m.text,
                                grams(&m.text),
                                m.created_at,
                                m.updated_at,
                                i64::try_from(m.version).unwrap_or(i64::MAX),
                                serde_json::Value::Object(m.metadata.clone()).to_string(),
                                serde_json::to_string(&m.tags).unwrap_or_else(|_| "[]".into()),
                                m.expires_at,
                                m.ttl_seconds.and_then(|t| i64::try_from(t).ok()),
                                m.refresh_on_read,
                                m.superseded_by
                            ])
                        })
                        .context("importing memories")?;
                        // Its history comes with it, unless this store already has it.
                        let known: i64 = tx
                            .query_row(
                                "SELECT count(*) FROM memory_events WHERE memory_id = ?1",
                                [&m.id],
                                |r| r.get(0),
                            )
                            .context("importing memory history")?;
                        if known == 0 {
                            for event in &m.history {
                                super::memories::insert_event(tx, event)?;
                            }
                            if m.history.is_empty() {
                                super::memories::insert_event(tx, &imported_event(m))?;
                            }
                        }
                        report.imported += 1;
                        newest_version = newest_version.max(m.version);
                        touched.insert(m.namespace.clone());
                    }
                }
            }
            if report.imported > 0 {
                // No version handed out later may repeat an imported one.
                tx.execute(
                    "UPDATE memory_counter SET value = max(value, ?1) WHERE only = 0",
                    [i64::try_from(newest_version).unwrap_or(i64::MAX)],
                )
                .context("importing memories")?;
                // Each namespace that changed moves to a new generation.
                for namespace in &touched {
                    let stamp = stamps::next_stamp(tx)?;
                    stamps::set_namespace_generation(tx, namespace, stamp)?;
                }
            }
            Ok(report)
        })
    }
}
