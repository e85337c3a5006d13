//! Looking after a PostgreSQL store: counts, integrity, prune, vacuum, memory export and
//! import. The rules are in `crate::maintenance`; this is the SQL.
//!
//! Where SQLite reports on its file (its size, its WAL, its free pages), a server has no one
//! file: the size is that of this store's tables with their indexes and TOAST, and the
//! server's write-ahead log and free space (shared by every database of the cluster) are
//! not this store's to report; those fields are 0.

use std::collections::BTreeSet;

use postgres::fallible_iterator::FallibleIterator;
use postgres::{Row, Transaction};

use super::PgBackend;
use super::errors::PgContext;
use super::memories::{INSERT, next_stamp, set_namespace_generation, stamp_value};
use super::search::indexed_text;
use crate::artifact::cache::{CachePolicy, CacheStats, Candidate, Collection, Plan};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::maintenance::{ExportedMemory, ImportReport, IntegrityReport, NamespaceCount, Stats};
use crate::memory::grams;
use crate::store::Maintenance;

const EXPORT_COLUMNS: &str = "id, namespace, category, body, created_at, updated_at, version, metadata::text, tags::text, expires_at, ttl_seconds, refresh_on_read, superseded_by";

/// The store's tables, for sizes and vacuum.
const TABLES: &[&str] = &[
    "artifacts",
    "memories",
    "memory_counter",
    "memory_namespaces",
    "memory_events",
    "memory_sweep",
    "modstate_schema",
    "modstate_lock_holders",
];

/// At most this many findings are reported by an integrity check (as SQLite's
/// `integrity_check(10)`).
const MAX_FINDINGS: usize = 10;

/// Memories compared with their search vectors per statement in an integrity check.
const CHECK_BATCH: i64 = 1000;

fn exported_from_row(r: &Row) -> Result<ExportedMemory> {
    let what = "reading a memory";
    let version: i64 = r.try_get(6).context(what)?;
    Ok(ExportedMemory {
        format: crate::maintenance::EXPORT_FORMAT,
        metadata: match serde_json::from_str(&r.try_get::<_, String>(7).context(what)?) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => serde_json::Map::new(),
        },
        tags: serde_json::from_str(&r.try_get::<_, String>(8).context(what)?).unwrap_or_default(),
        expires_at: r.try_get(9).context(what)?,
        ttl_seconds: r
            .try_get::<_, Option<i64>>(10)
            .context(what)?
            .and_then(|t| u64::try_from(t).ok()),
        refresh_on_read: r.try_get(11).context(what)?,
        superseded_by: r.try_get(12).context(what)?,
        history: Vec::new(),
        id: r.try_get(0).context(what)?,
        namespace: r.try_get(1).context(what)?,
        category: r.try_get(2).context(what)?,
        text: r.try_get(3).context(what)?,
        created_at: r.try_get(4).context(what)?,
        updated_at: r.try_get(5).context(what)?,
        version: u64::try_from(version).unwrap_or(0),
    })
}

fn count(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// Every artifact's bytes hashed again and compared with its stored sha256 and size.
fn check_artifacts(tx: &mut Transaction<'_>) -> Result<Vec<String>> {
    let what = "checking artifacts";
    let mut findings = Vec::new();
    let mut rows = tx
        .query_raw(
            "SELECT digest, envelope, sha256, size FROM artifacts ORDER BY digest",
            std::iter::empty::<&str>(),
        )
        .context(what)?;
    while let Some(row) = rows.next().context(what)? {
        let digest: &str = row.try_get(0).context(what)?;
        let envelope: &[u8] = row.try_get(1).context(what)?;
        let sha256: &str = row.try_get(2).context(what)?;
        let size: i64 = row.try_get(3).context(what)?;
        let actual = Digest::of(envelope);
        if actual.hex() != sha256 {
            findings.push(format!(
                "artifact {digest}: its bytes hash to {}, the stored sha256 is {sha256}",
                actual.hex()
            ));
        } else if usize::try_from(size).ok() != Some(envelope.len()) {
            findings.push(format!(
                "artifact {digest}: {} bytes, the stored size is {size}",
                envelope.len()
            ));
        }
        if findings.len() >= MAX_FINDINGS {
            break;
        }
    }
    Ok(findings)
}

/// Every memory's `grams` and search vector recomputed from its body and compared with the
/// stored ones, a batch at a time (by id). Returns the findings (at most [`MAX_FINDINGS`])
/// and how many memories disagree.
fn check_search(tx: &mut Transaction<'_>) -> Result<(Vec<String>, usize)> {
    let what = "checking the search vectors";
    let mut findings = Vec::new();
    let mut wrong = 0;
    let mut after = String::new();
    loop {
        let rows = tx
            .query(
                "SELECT id, body, grams FROM memories WHERE id > $1 ORDER BY id LIMIT $2",
                &[&after, &CHECK_BATCH],
            )
            .context(what)?;
        let Some(last) = rows.last() else { break };
        after = last.try_get(0).context(what)?;
        let mut ids = Vec::with_capacity(rows.len());
        let mut texts = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: String = row.try_get(0).context(what)?;
            let body: &str = row.try_get(1).context(what)?;
            let stored: &str = row.try_get(2).context(what)?;
            let expected = grams(body);
            if expected != stored {
                wrong += 1;
                if findings.len() < MAX_FINDINGS {
                    findings.push(format!(
                        "memory {id}: its CJK bigrams do not match its text"
                    ));
                }
            }
            texts.push(indexed_text(body, &expected));
            ids.push(id);
        }
        let differ = tx
            .query(
                "SELECT u.id FROM unnest($1::text[], $2::text[]) AS u(id, t)
                 JOIN memories m ON m.id = u.id
                 WHERE m.search IS DISTINCT FROM to_tsvector('modstate_search', u.t)
                 ORDER BY u.id",
                &[&ids, &texts],
            )
            .context(what)?;
        for row in &differ {
            let id: String = row.try_get(0).context(what)?;
            wrong += 1;
            if findings.len() < MAX_FINDINGS {
                findings.push(format!(
                    "memory {id}: its search vector does not match its text"
                ));
            }
        }
    }
    Ok((findings, wrong))
}

impl Maintenance for PgBackend {
    fn stats(&self) -> Result<Stats> {
        self.read("reading the store's counts", |tx| {
            let memories = tx
                .query(
                    "SELECT m.namespace, count(*), coalesce(max(n.generation), 0)
                     FROM memories m LEFT JOIN memory_namespaces n USING (namespace)
                     GROUP BY m.namespace ORDER BY m.namespace",
                    &[],
                )
                .context("counting memories")?
                .iter()
                .map(|r| {
                    Ok(NamespaceCount {
                        namespace: r.try_get(0).context("counting memories")?,
                        memories: count(r.try_get(1).context("counting memories")?),
                        generation: count(r.try_get(2).context("counting memories")?),
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let tables: Vec<&str> = TABLES.to_vec();
            let row = tx
                .query_one(
                    "SELECT coalesce(sum(pg_total_relation_size(to_regclass(t))), 0)::bigint,
                            current_setting('block_size')::bigint
                     FROM unnest($1::text[]) AS t",
                    &[&tables],
                )
                .context("reading the store's size")?;
            let db_bytes: i64 = row.try_get(0).context("reading the store's size")?;
            let page_size: i64 = row.try_get(1).context("reading the store's size")?;
            let row = tx
                .query_one(
                    "SELECT count(*), coalesce(sum(coalesce(octet_length(old_text), 0)
                        + coalesce(octet_length(new_text), 0) + octet_length(changes::text)), 0)::bigint
                     FROM memory_events",
                    &[],
                )
                .context("counting memory history")?;
            let history_events: i64 = row.try_get(0).context("counting memory history")?;
            let history_bytes: i64 = row.try_get(1).context("counting memory history")?;
            Ok(Stats {
                // From the cache's totals, by the caller: no scan.
                artifacts: 0,
                artifact_bytes: 0,
                history_events: count(history_events),
                history_bytes: count(history_bytes),
                memories,
                db_bytes: count(db_bytes),
                // The server's WAL and free space are the cluster's, not this store's.
                wal_bytes: 0,
                free_pages: 0,
                page_size: count(page_size),
                cache: Default::default(),
            })
        })
    }

    fn check_integrity(&self) -> Result<IntegrityReport> {
        // The server checks its own pages (checksums, when the cluster has them); what can go
        // wrong in the store's terms is data that no longer matches its hash or its index.
        self.read("checking integrity", |tx| {
            let artifacts = check_artifacts(tx)?;
            let (memories, wrong) = check_search(tx)?;
            let integrity_problem = (!artifacts.is_empty()).then(|| artifacts.join("; "));
            let fts_problem = (wrong > 0).then(|| {
                let more = wrong.saturating_sub(memories.len());
                let mut text = memories.join("; ");
                if more > 0 {
                    text.push_str(&format!("; and {more} more"));
                }
                text
            });
            Ok(IntegrityReport {
                integrity_problem,
                fts_problem,
            })
        })
    }

    fn cache_stats(&self, pins: bool) -> Result<CacheStats> {
        self.read("reading the cache totals", |tx| {
            super::cache::cache_stats(tx, pins, false)
        })
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
            return self.read("choosing artifacts to remove", |tx| {
                super::cache::collect(tx, choose, true, now_ms)
            });
        }
        self.write("collecting artifacts", |tx| {
            self.fold_counters(tx)?;
            super::cache::collect(tx, choose, false, now_ms)
        })
    }

    fn vacuum(&self) -> Result<()> {
        // VACUUM cannot run inside a transaction block: on a connection of its own, outside
        // one. It makes the space of removed rows reusable and refreshes the planner's
        // statistics; it does not lock out readers or writers.
        let mut conn = self.connection()?;
        conn.batch_execute(&format!("VACUUM (ANALYZE) {}", TABLES.join(", ")))
            .context("vacuuming")?;
        Ok(())
    }

    fn export_memories(&self, namespace: Option<&str>) -> Result<Vec<ExportedMemory>> {
        if namespace.is_some_and(|n| n.contains('\0')) {
            return Ok(Vec::new());
        }
        let now = crate::time::now_rfc3339();
        // One REPEATABLE READ transaction: the memories and their histories as of one instant.
        self.read("exporting memories", |tx| {
            let mut memories = tx
                .query(
                    &format!(
                        "SELECT {EXPORT_COLUMNS} FROM memories
                         WHERE ($1::text IS NULL OR namespace = $1)
                           AND (expires_at IS NULL OR expires_at > $2::text) ORDER BY id"
                    ),
                    &[&namespace, &now],
                )
                .context("exporting memories")?
                .iter()
                .map(exported_from_row)
                .collect::<Result<Vec<_>>>()?;
            let events = tx
                .prepare(
                    "SELECT memory_id, namespace, action, version, old_text, new_text, changes::text, actor, at
                     FROM memory_events WHERE memory_id = $1 ORDER BY seq",
                )
                .context("exporting memory history")?;
            for m in &mut memories {
                m.history = tx
                    .query(&events, &[&m.id])
                    .context("exporting memory history")?
                    .iter()
                    .map(super::memories::event_from_row)
                    .collect::<Result<Vec<_>>>()?;
            }
            Ok(memories)
        })
    }

    fn import_memories(&self, memories: &[(usize, ExportedMemory)]) -> Result<ImportReport> {
        self.write("importing memories", |tx| {
            // The counter's row lock first, as every memory write: imports and other memory
            // writes take turns.
            tx.query_one(
                "SELECT value FROM memory_counter WHERE singleton = 0 FOR UPDATE",
                &[],
            )
            .context("importing memories")?;
            let select = tx
                .prepare(&format!(
                    "SELECT {EXPORT_COLUMNS} FROM memories WHERE id = $1"
                ))
                .context("importing memories")?;
            let insert = tx.prepare(INSERT).context("importing memories")?;
            let mut report = ImportReport::default();
            let mut touched = BTreeSet::new();
            let mut newest_version = 0;
            for (line, m) in memories {
                let existing = tx
                    .query_opt(&select, &[&m.id])
                    .context("importing memories")?
                    .map(|r| exported_from_row(&r))
                    .transpose()?;
                match existing {
                    Some(here) if here.same_memory(m) => report.unchanged += 1,
                    Some(here) => {
                        return Err(Error::Invalid(format!(
                            "line {line}: memory {} is already in this store with other content (version {} here, {} in the file); nothing was imported — remove that line, or the memory here, and retry",
                            m.id, here.version, m.version
                        )));
                    }
                    None => {
                        let grams = grams(&m.text);
                        let text = indexed_text(&m.text, &grams);
                        tx.execute(
                            &insert,
                            &[
                                &m.id,
                                &m.namespace,
                                &m.category,
                                &m.text,
                                &grams,
                                &text,
                                &m.created_at,
                                &m.updated_at,
                                &stamp_value(m.version),
                            ],
                        )
                        .context("importing memories")?;
                        super::memories::set_model(
                            tx,
                            &crate::memory::Memory {
                                id: m.id.clone(),
                                namespace: m.namespace.clone(),
                                category: m.category.clone(),
                                body: m.text.clone(),
                                created_at: m.created_at.clone(),
                                updated_at: m.updated_at.clone(),
                                version: m.version,
                                generation: 0,
                                metadata: m.metadata.clone(),
                                tags: m.tags.clone(),
                                expires_at: m.expires_at.clone(),
                                ttl_seconds: m.ttl_seconds,
                                refresh_on_read: m.refresh_on_read,
                                superseded_by: m.superseded_by.clone(),
                                written_by: String::new(),
                            },
                        )?;
                        let known: i64 = tx
                            .query_one(
                                "SELECT count(*) FROM memory_events WHERE memory_id = $1",
                                &[&m.id],
                            )
                            .context("importing memory history")?
                            .try_get(0)
                            .context("importing memory history")?;
                        if known == 0 {
                            for event in &m.history {
                                super::memories::insert_event(tx, event)?;
                            }
                            if m.history.is_empty() {
                                super::memories::insert_event(
                                    tx,
                                    &crate::maintenance::imported_event(m),
                                )?;
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
                    "UPDATE memory_counter SET value = greatest(value, $1) WHERE singleton = 0",
                    &[&stamp_value(newest_version)],
                )
                .context("importing memories")?;
                // Each namespace that changed moves to a new generation.
                for namespace in &touched {
                    let stamp = next_stamp(tx)?;
                    set_namespace_generation(tx, namespace, stamp)?;
                }
            }
            Ok(report)
        })
    }
}
