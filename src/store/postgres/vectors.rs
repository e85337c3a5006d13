//! Memory vectors on PostgreSQL (`migrations/postgres/0009_memory_vectors.sql`), searched with
//! pgvector where the server has it, ranked exactly as on SQLite.
//!
//! * **Stored.** Each vector twice: `vector`, the bytes SQLite stores (int8 with one scale,
//!   [`Quantized`]), which define its similarity and travel in snapshots; and `floats`, the
//!   same values as `real[]`, which pgvector reads through a cast to `vector(n)`. Neither needs
//!   the extension, so any server holds them.
//! * **Searched.** The server picks candidates by pgvector's inner product (`<#>`) on
//!   `floats`, in C, without sending every vector over; Rust then scores the candidates' bytes
//!   with the function SQLite uses ([`QueryVector::similarity_to_stored`](crate::embed::vector::QueryVector::similarity_to_stored)), so both
//!   engines give the same scores to the bit, and the order (score, then id) and the cursor
//!   are SQLite's. The inner product of the stored values *is* their cosine similarity (they
//!   are unit vectors, quantised) and is what SQLite computes; pgvector sums it in `f32`, off
//!   the exact value by far less than [`MARGIN`], so candidates are taken until the next
//!   unread one cannot beat the page's last (exact, however close the scores).
//! * **Exact, not approximate.** The candidate query orders by an expression no index
//!   matches, so the server scans the model's vectors that pass the filter: an HNSW index
//!   answers approximately (it may miss a nearer vector), which would break paging (a later
//!   page continues from the cursor and would never show what the first page missed) and
//!   agreement with SQLite. Measured against pgvector alone, exact and through HNSW:
//!   `benches/pg_semantic.rs`.
//! * **Without pgvector.** Vectors are still stored (and snapshotted), and a search refuses
//!   with one line naming the extension; keyword search is unaffected. Where the server offers
//!   the extension but the database lacks it, the first search creates it
//!   (`CREATE EXTENSION IF NOT EXISTS vector`, which needs the right to), once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use postgres::Transaction;
use postgres::types::ToSql;

use super::PgBackend;
use super::errors::PgContext;
use super::memories::{
    Args, COLUMNS, FROM, counter, envelope_generation, impossible, memory_from_row, push_filter,
};
use super::search::push_snapshot;
use crate::embed::Quantized;
use crate::error::{Error, Result};
use crate::memory::{Cursor, Hit, MemoryFilter, Rows, timestamp};

/// How far pgvector's `f32` inner product may be from the exact similarity, at most (a sum of
/// up to a few thousand products of values below 1 loses far less than this).
const MARGIN: f64 = 1e-3;

/// Candidates fetched beyond the page at first; doubled while more are needed.
const SLACK: usize = 32;

/// Whether the `vector` extension was seen in this database (it is never dropped by modstate;
/// a process that saw it once need not look again).
pub(super) struct Pgvector(AtomicBool);

impl Pgvector {
    pub(super) fn new() -> Pgvector {
        Pgvector(AtomicBool::new(false))
    }
}

/// Whether a hit of `score` and `id` comes after the cursor's (score descending, then id
/// descending).
fn after_cursor(cursor: Option<&Cursor>, score: f64, id: &str) -> bool {
    cursor.is_none_or(|c| score < c.score || (score == c.score && id < c.id.as_str()))
}

impl PgBackend {
    pub(crate) fn put_vectors_pg(
        &self,
        model: &str,
        rows: &[(String, u64, Vec<f32>)],
    ) -> Result<usize> {
        let mut stored = Vec::with_capacity(rows.len());
        for (id, version, vector) in rows {
            let quantised = Quantized::of(vector)?;
            let dimension = i32::try_from(quantised.values.len()).map_err(|_| {
                Error::Invalid(format!(
                    "an embedding of {} dimensions is too long to store",
                    quantised.values.len()
                ))
            })?;
            stored.push((
                id.as_str(),
                i64::try_from(*version).unwrap_or(i64::MAX),
                dimension,
                quantised.to_bytes(),
                quantised.to_f32(),
            ));
        }
        self.write("storing memory vectors", |tx| {
            // FOR SHARE: an update of the memory waits until this commits (and its trigger
            // then removes what this stored), or, having committed first, makes the version
            // check fail here. Without the lock both could pass and a stale vector survive.
            let statement = tx
                .prepare(
                    "INSERT INTO memory_vectors (memory_id, model, version, dimension, vector, floats)
                     SELECT m.id, $2, m.version, $4, $5, $6 FROM memories m
                     WHERE m.id = $1 AND m.version = $3 FOR SHARE
                     ON CONFLICT (model, memory_id) DO UPDATE SET version = excluded.version,
                         dimension = excluded.dimension, vector = excluded.vector,
                         floats = excluded.floats",
                )
                .context("storing memory vectors")?;
            let mut count = 0;
            for (id, version, dimension, bytes, floats) in &stored {
                count += tx
                    .execute(
                        &statement,
                        &[id, &model, version, dimension, bytes, floats],
                    )
                    .context("storing memory vectors")?;
            }
            Ok(usize::try_from(count).unwrap_or(usize::MAX))
        })
    }

    pub(crate) fn unembedded_pg(
        &self,
        model: &str,
        namespace: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, u64, String)>> {
        let mut args = Args::new(
            "SELECT m.id, m.version, m.body FROM memories m
             WHERE NOT EXISTS (SELECT 1 FROM memory_vectors v WHERE v.model = $1 AND v.memory_id = m.id)"
                .to_owned(),
        );
        args.push(model.to_owned());
        let now = args.push(timestamp(SystemTime::now()));
        args.sql.push_str(&format!(
            " AND (m.expires_at IS NULL OR m.expires_at > {now}::text)"
        ));
        if let Some(namespace) = namespace {
            if namespace.contains('\0') {
                return Ok(Vec::new());
            }
            let p = args.push(namespace.to_owned());
            args.sql.push_str(&format!(" AND m.namespace = {p}"));
        }
        if let Some(after) = after {
            if after.contains('\0') {
                return Ok(Vec::new());
            }
            let p = args.push(after.to_owned());
            args.sql.push_str(&format!(" AND m.id > {p}"));
        }
        let p = args.push(i64::try_from(limit).unwrap_or(i64::MAX));
        args.sql.push_str(&format!(" ORDER BY m.id LIMIT {p}"));
        let what = "finding memories without vectors";
        self.read(what, |tx| {
            tx.query(&args.sql, &args.params())
                .context(what)?
                .iter()
                .map(|r| {
                    let version: i64 = r.try_get(1).context(what)?;
                    Ok((
                        r.try_get(0).context(what)?,
                        u64::try_from(version).unwrap_or(0),
                        r.try_get(2).context(what)?,
                    ))
                })
                .collect()
        })
    }

    pub(crate) fn vector_coverage_pg(&self, model: &str) -> Result<(u64, u64)> {
        let what = "counting memory vectors";
        let now = timestamp(SystemTime::now());
        self.read(what, |tx| {
            let row = tx
                .query_one(
                    "SELECT count(v.memory_id), count(*) FROM memories m
                     LEFT JOIN memory_vectors v ON v.model = $1 AND v.memory_id = m.id
                     WHERE m.expires_at IS NULL OR m.expires_at > $2::text",
                    &[&model, &now],
                )
                .context(what)?;
            let with: i64 = row.try_get(0).context(what)?;
            let all: i64 = row.try_get(1).context(what)?;
            let with = u64::try_from(with).unwrap_or(0);
            Ok((with, u64::try_from(all).unwrap_or(0).saturating_sub(with)))
        })
    }

    pub(crate) fn nearest_memories_pg(
        &self,
        model: &str,
        query: &[f32],
        filter: &MemoryFilter,
        cursor: Option<&Cursor>,
    ) -> Result<Rows<Hit>> {
        let query = Quantized::of(query)?;
        self.require_pgvector()?;
        self.read("searching memory vectors", |tx| {
            let snapshot = cursor.map_or_else(|| counter(tx), |c| Ok(c.snapshot))?;
            let generation = envelope_generation(tx, filter)?;
            let rows = if impossible(filter) {
                Vec::new()
            } else {
                nearest(tx, model, &query, filter, cursor)?
            };
            Ok(Rows {
                rows,
                snapshot,
                generation,
                statistics: None,
            })
        })
    }

    /// Makes sure the database has pgvector: already there, or created now where the server
    /// offers it; else the one-line refusal.
    fn require_pgvector(&self) -> Result<()> {
        if self.pgvector.0.load(Ordering::Relaxed) {
            return Ok(());
        }
        let what = "looking for the vector extension";
        let mut conn = self.connection()?;
        let row = conn
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'vector'),
                        EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'vector')",
                &[],
            )
            .context(what)?;
        let installed: bool = row.try_get(0).context(what)?;
        let available: bool = row.try_get(1).context(what)?;
        if !installed {
            if !available {
                return Err(Error::Unsupported(format!(
                    "semantic and hybrid search need the pgvector extension (`vector`), which the server of {} does not have; install pgvector on the server, or search by keyword",
                    self.display()
                )));
            }
            let mut tx = conn.transaction().context(what)?;
            // Two processes creating it at once would collide on the catalog.
            tx.execute(
                "SELECT pg_advisory_xact_lock($1)",
                &[&super::migrate::MIGRATION_LOCK],
            )
            .context(what)?;
            match tx.batch_execute("CREATE EXTENSION IF NOT EXISTS vector") {
                Ok(()) => tx.commit().context("creating the vector extension")?,
                Err(e) if e.code() == Some(&postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) => {
                    return Err(Error::Unsupported(format!(
                        "semantic and hybrid search need the pgvector extension (`vector`) in {}, and this role may not create it; have the database owner or a superuser run CREATE EXTENSION vector, or search by keyword",
                        self.display()
                    )));
                }
                Err(e) => return Err(Error::postgres("creating the vector extension", e)),
            }
        }
        self.pgvector.0.store(true, Ordering::Relaxed);
        Ok(())
    }
}

/// The page (plus one) of memories nearest to `query` after `cursor`, best first: candidates
/// from the server by pgvector's inner product, scored here, until no unread candidate can
/// beat the last one kept (see the module docs).
fn nearest(
    tx: &mut Transaction<'_>,
    model: &str,
    query: &Quantized,
    filter: &MemoryFilter,
    cursor: Option<&Cursor>,
) -> Result<Vec<Hit>> {
    let what = "searching memory vectors";
    let dimension = i32::try_from(query.values.len()).unwrap_or(i32::MAX);
    let wanted = filter.limit.map(|n| n.saturating_add(1));
    // The similarity is the negated `<#>`: pgvector's index scans only serve `<#>` ascending
    // as written, so this order comes from a scan of every candidate (see the module docs).
    let mut args = Args::new(format!(
        "SELECT * FROM (SELECT v.memory_id, v.vector,
                 -(v.floats::vector({dimension}) <#> $1::real[]::vector) AS similarity
             FROM memory_vectors v JOIN memories m ON m.id = v.memory_id
             WHERE v.model = $2 AND v.dimension = $3"
    ));
    args.push(query.to_f32());
    args.push(model.to_owned());
    args.push(dimension);
    push_filter(&mut args, filter);
    if let Some(cursor) = cursor {
        push_snapshot(&mut args, cursor);
    }
    args.sql.push_str(") c");
    if let Some(cursor) = cursor {
        // A superset of what is after the cursor; the exact test is below.
        let p = args.push(cursor.score + MARGIN);
        args.sql.push_str(&format!(" WHERE c.similarity <= {p}"));
    }
    args.sql
        .push_str(" ORDER BY c.similarity DESC, c.memory_id DESC");
    let search = query.query();
    let mut fetch = wanted.map(|n| n + SLACK);
    let mut scored: Vec<(f64, String)> = loop {
        let mut sql = args.sql.clone();
        if let Some(n) = fetch {
            sql.push_str(&format!(" LIMIT {n}"));
        }
        let rows = tx.query(&sql, &args.params()).context(what)?;
        let complete = fetch.is_none_or(|n| rows.len() < n);
        let mut lowest = f64::INFINITY;
        let mut scored = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: String = row.try_get(0).context(what)?;
            let bytes: &[u8] = row.try_get(1).context(what)?;
            let similarity: f64 = row.try_get(2).context(what)?;
            lowest = lowest.min(similarity);
            let score = search.similarity_to_stored(bytes).unwrap_or(0.0);
            if after_cursor(cursor, score, &id) {
                scored.push((score, id));
            }
        }
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| b.1.cmp(&a.1)));
        // Every unread row has a pgvector similarity of at most `lowest`, so an exact score
        // below `lowest + MARGIN`: the page is settled once its last row scores above that.
        let settled = match wanted {
            Some(n) => scored.len() >= n && scored[n - 1].0 > lowest + MARGIN,
            None => false,
        };
        if complete || settled {
            break scored;
        }
        fetch = fetch.map(|n| n.saturating_mul(2));
    };
    if let Some(n) = wanted {
        scored.truncate(n);
    }
    if scored.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<&str> = scored.iter().map(|(_, id)| id.as_str()).collect();
    let rows = tx
        .query(
            &format!("SELECT {COLUMNS} FROM {FROM} WHERE m.id = ANY($1)"),
            &[&ids as &(dyn ToSql + Sync)],
        )
        .context(what)?;
    let mut found: HashMap<String, crate::memory::Memory> = HashMap::with_capacity(rows.len());
    for row in &rows {
        let memory = memory_from_row(row, 0)?;
        found.insert(memory.id.clone(), memory);
    }
    Ok(scored
        .into_iter()
        .filter_map(|(score, id)| found.remove(&id).map(|memory| Hit { memory, score }))
        .collect())
}
