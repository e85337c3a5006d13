//! Memory vectors in SQLite (`migrations/0009_memory_vectors.sql`): stored quantised to int8,
//! searched exactly — every vector of the model that passes the filter is scored in Rust and
//! the best kept — so the answer is the true k-nearest, and paging continues it exactly.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::SystemTime;

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Transaction, params, params_from_iter};

use super::SqliteBackend;
use super::memories::{envelope_generation, hits_of, push_filter};
use super::stamps::{counter, next_stamp};
use crate::embed::Quantized;
use crate::embed::matrix::{Best, Matrix};
use crate::embed::vector::QueryVector;
use crate::error::Result;
use crate::memory::{Cursor, Hit, MemoryFilter, Rows, timestamp};
use crate::store::sqlite::errors::SqlContext;

/// The page cache (KiB) of a read connection that has searched vectors: room for the vectors
/// of about 250,000 memories of 384 dimensions (a page holds ten); memory is taken only as
/// pages are read.
const VECTOR_CACHE_KIB: i64 = 128 * 1024;

/// The most vector bytes a process keeps in memory between searches (about 650,000 memories
/// of 384 dimensions); a model with more is read from the table at every search.
const VECTOR_BLOCK_BYTES: usize = 256 * 1024 * 1024;

impl SqliteBackend {
    pub(crate) fn put_vectors_sql(
        &self,
        model: &str,
        rows: &[(String, u64, Vec<f32>)],
    ) -> Result<usize> {
        let mut quantised = Vec::with_capacity(rows.len());
        for (id, version, vector) in rows {
            quantised.push((id, *version, Quantized::of(vector)?.to_bytes()));
        }
        let what = "storing memory vectors";
        let (stored, before, after) = self.write(what, |tx| {
            // A vector write ticks the store's counter, as a memory write does: a process
            // that kept the vectors it read at one value knows none was added while the
            // counter still reads it (`best_vectors`).
            let after = next_stamp(tx)?;
            let before = after.saturating_sub(1);
            let mut stmt = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO memory_vectors (seq, model, version, vector)
                     SELECT seq, ?1, version, ?2 FROM memories WHERE id = ?3 AND version = ?4
                     RETURNING seq",
                )
                .context(what)?;
            let mut stored = Vec::with_capacity(quantised.len());
            for (id, version, bytes) in &quantised {
                let seq: Option<i64> = stmt
                    .query_row(
                        params![
                            model,
                            bytes,
                            id,
                            i64::try_from(*version).unwrap_or(i64::MAX)
                        ],
                        |r| r.get(0),
                    )
                    .optional()
                    .context(what)?;
                if let Some(seq) = seq {
                    stored.push((seq, bytes.as_slice()));
                }
            }
            Ok((stored, before, after))
        })?;
        self.carry_block(before, after, Some((model, &stored)));
        Ok(stored.len())
    }

    /// Runs a write that stores no vector — a memory add, update or delete: their triggers
    /// only remove vectors, and `best_first` checks every candidate against the table — so the
    /// block of vectors this process keeps stays valid across it if it was valid before.
    /// Without this, an agent's every `add` would make its next search read every vector again.
    pub(crate) fn write_memories<T>(
        &self,
        what: &str,
        f: impl FnOnce(&Transaction<'_>) -> Result<T>,
    ) -> Result<T> {
        // Without a kept block (a one-shot command) there is nothing to carry.
        if !self.keeps_block() {
            return self.write(what, f);
        }
        let (out, before, after) = self.write(what, |tx| {
            let before = counter(tx)?;
            let out = f(tx)?;
            Ok((out, before, counter(tx)?))
        })?;
        self.carry_block(before, after, None);
        Ok(out)
    }

    /// Whether this process keeps a block of vectors (a block made during a write that did
    /// not carry it is simply read again at the next search: its counter is behind).
    fn keeps_block(&self) -> bool {
        self.vector_block.lock().is_ok_and(|kept| kept.is_some())
    }

    /// After this process's write took the counter from `before` to `after` (storing `stored`
    /// vectors of a model, as (memory row, stored bytes)): the kept block, if it was read at
    /// `before`, is brought to `after`. Read at another value, someone else wrote in between and
    /// the next search reads the table; a vector the block cannot take in order drops it.
    fn carry_block(&self, before: u64, after: u64, stored: Option<(&str, &[StoredVector<'_>])>) {
        let Ok(mut kept) = self.vector_block.lock() else {
            return;
        };
        let Some(block) = kept.as_mut() else {
            return;
        };
        if block.counter != before {
            return;
        }
        if let Some((model, rows)) = stored
            && model == block.model
        {
            let matrix = Arc::make_mut(&mut block.matrix);
            let fits = rows.iter().all(|(seq, bytes)| matrix.upsert(*seq, bytes));
            if !fits || matrix.bytes() > VECTOR_BLOCK_BYTES {
                *kept = None;
                return;
            }
        }
        block.counter = after;
    }

    pub(crate) fn unembedded_sql(
        &self,
        model: &str,
        namespace: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, u64, String)>> {
        let now = timestamp(SystemTime::now());
        let mut sql = "SELECT m.id, m.version, m.body FROM memories m
             WHERE (m.expires_at IS NULL OR m.expires_at > ?)
               AND NOT EXISTS (SELECT 1 FROM memory_vectors v WHERE v.model = ? AND v.seq = m.seq)"
            .to_owned();
        let mut args = vec![Value::Text(now), Value::Text(model.to_owned())];
        if let Some(namespace) = namespace {
            sql.push_str(" AND m.namespace = ?");
            args.push(Value::Text(namespace.to_owned()));
        }
        if let Some(after) = after {
            sql.push_str(" AND m.id > ?");
            args.push(Value::Text(after.to_owned()));
        }
        sql.push_str(" ORDER BY m.id LIMIT ?");
        args.push(Value::Integer(i64::try_from(limit).unwrap_or(i64::MAX)));
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached(&sql)
                .context("finding memories without vectors")?;
            stmt.query_map(params_from_iter(args), |r| {
                let version: i64 = r.get(1)?;
                Ok((r.get(0)?, u64::try_from(version).unwrap_or(0), r.get(2)?))
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .context("finding memories without vectors")
        })
    }

    pub(crate) fn vector_coverage_sql(&self, model: &str) -> Result<(u64, u64)> {
        let now = timestamp(SystemTime::now());
        self.read(|conn| {
            let (with, all): (i64, i64) = conn
                .prepare_cached(
                    "SELECT count(v.seq), count(*) FROM memories m
                     LEFT JOIN memory_vectors v ON v.model = ?1 AND v.seq = m.seq
                     WHERE m.expires_at IS NULL OR m.expires_at > ?2",
                )
                .and_then(|mut stmt| {
                    stmt.query_row(params![model, now], |r| Ok((r.get(0)?, r.get(1)?)))
                })
                .context("counting memory vectors")?;
            let with = u64::try_from(with).unwrap_or(0);
            Ok((with, u64::try_from(all).unwrap_or(0).saturating_sub(with)))
        })
    }

    pub(crate) fn nearest_memories_sql(
        &self,
        model: &str,
        query: &[f32],
        filter: &MemoryFilter,
        cursor: Option<&Cursor>,
    ) -> Result<Rows<Hit>> {
        let query = Quantized::of(query)?;
        let mut sql =
            "SELECT m.seq, m.id, v.vector FROM memory_vectors v JOIN memories m ON m.seq = v.seq
             WHERE v.model = ?"
                .to_owned();
        let mut args = vec![Value::Text(model.to_owned())];
        push_filter(&mut sql, &mut args, filter, &timestamp(SystemTime::now()));
        if let Some(cursor) = cursor {
            sql.push_str(" AND m.version <= ?");
            args.push(Value::Integer(
                i64::try_from(cursor.snapshot).unwrap_or(i64::MAX),
            ));
        }
        let wanted = filter.limit.map(|n| n.saturating_add(1));
        let now = timestamp(SystemTime::now());
        self.read(|conn| {
            // Every search reads every vector of the model: let this (pooled) connection keep
            // them in its page cache between searches instead of reading them from the file
            // each time (SQLite keeps the cache across transactions while nothing changed).
            super::widen_page_cache(conn, VECTOR_CACHE_KIB).context("searching memory vectors")?;
            let tx = conn
                .unchecked_transaction()
                .context("searching memory vectors")?;
            let snapshot = cursor.map_or_else(|| counter(&tx), |c| Ok(c.snapshot))?;
            let generation = envelope_generation(&tx, filter)?;
            let found = match wanted {
                Some(n) => best_first(self, &tx, model, &query, filter, cursor, n, &now)?,
                None => None,
            };
            let winners = match found {
                Some(winners) => winners,
                None => scan_all(&tx, &sql, args, &query.query(), cursor, wanted)?,
            };
            let hits = hits_of(
                &tx,
                winners.into_iter().map(|w| (w.seq, w.score)),
                "searching memory vectors",
            )?;
            Ok(Rows {
                rows: hits,
                snapshot,
                generation,
                statistics: None,
            })
        })
    }
}

/// Every vector of the model that passes the filter (read joined with its memory), scored; the
/// best `wanted` after the cursor (all without a limit), best first.
fn scan_all(
    tx: &Connection,
    sql: &str,
    args: Vec<Value>,
    query: &QueryVector,
    cursor: Option<&Cursor>,
    wanted: Option<usize>,
) -> Result<Vec<Scored>> {
    // The best `wanted` after the cursor, kept in a heap whose top is the worst kept.
    let mut best: BinaryHeap<Scored> = BinaryHeap::new();
    {
        let mut stmt = tx.prepare_cached(sql).context("searching memory vectors")?;
        let mut rows = stmt
            .query(params_from_iter(args))
            .context("searching memory vectors")?;
        while let Some(row) = rows.next().context("searching memory vectors")? {
            let bytes = row
                .get_ref(2)
                .and_then(|v| v.as_blob().map_err(Into::into))
                .context("searching memory vectors")?;
            let Some(score) = query.similarity_to_stored(bytes) else {
                continue;
            };
            let id: String = row.get(1).context("searching memory vectors")?;
            if let Some(c) = cursor
                && !(score < c.score || (score == c.score && id < c.id))
            {
                continue;
            }
            let scored = Scored {
                score,
                id,
                seq: row.get(0).context("searching memory vectors")?,
            };
            match wanted {
                Some(n) if best.len() >= n => {
                    if let Some(worst) = best.peek()
                        && scored < *worst
                    {
                        best.pop();
                        best.push(scored);
                    }
                }
                _ => best.push(scored),
            }
        }
    }
    let mut winners = best.into_sorted_vec();
    winners.truncate(wanted.unwrap_or(usize::MAX));
    Ok(winners)
}

/// The fast way to the best `wanted`: score every vector of the model (from the block kept
/// in memory, or straight from its table: no join, one sequential read of 388-byte rows), keep
/// the best few times `wanted`, then check only those against the filter. `None` when too few
/// of them pass to be sure of the answer (a narrow filter): the caller then scans with the
/// filter.
///
/// Exact: every vector scoring above the best one left out is kept, so if at least `wanted`
/// of those pass the filter, they are the answer. The check reads each candidate's memory and
/// vector row as of this transaction, so a kept block holding vectors since deleted (with
/// their memory, or swept) never answers with them.
#[allow(clippy::too_many_arguments)]
fn best_first(
    backend: &SqliteBackend,
    tx: &Connection,
    model: &str,
    query: &Quantized,
    filter: &MemoryFilter,
    cursor: Option<&Cursor>,
    wanted: usize,
    now: &str,
) -> Result<Option<Vec<Scored>>> {
    let what = "searching memory vectors";
    let keep = wanted.saturating_mul(8).max(64);
    // Before the cursor: shown already (a tie is settled by id below).
    let best = backend.best_vectors(tx, model, query, cursor.map(|c| c.score), keep)?;
    let left_out = best.left_out;
    let candidates = best.above_left_out();
    let seqs: Vec<String> = candidates.iter().map(|(_, seq)| seq.to_string()).collect();
    let mut sql = "SELECT m.seq, m.id FROM memories m
         WHERE m.seq IN (SELECT value FROM json_each(?))
           AND EXISTS (SELECT 1 FROM memory_vectors v WHERE v.model = ? AND v.seq = m.seq)"
        .to_owned();
    let mut args = vec![
        Value::Text(format!("[{}]", seqs.join(","))),
        Value::Text(model.to_owned()),
    ];
    push_filter(&mut sql, &mut args, filter, now);
    if let Some(cursor) = cursor {
        sql.push_str(" AND m.version <= ?");
        args.push(Value::Integer(
            i64::try_from(cursor.snapshot).unwrap_or(i64::MAX),
        ));
    }
    let passing: std::collections::HashMap<i64, String> = tx
        .prepare_cached(&sql)
        .and_then(|mut stmt| {
            stmt.query_map(params_from_iter(args), |r| Ok((r.get(0)?, r.get(1)?)))
                .and_then(|rows| rows.collect::<rusqlite::Result<_>>())
        })
        .context(what)?;
    let mut winners: Vec<Scored> = candidates
        .into_iter()
        .filter_map(|(score, seq)| {
            let id = passing.get(&seq)?.clone();
            match cursor {
                Some(c) if score == c.score && id >= c.id => None,
                _ => Some(Scored { score, id, seq }),
            }
        })
        .collect();
    winners.sort();
    if winners.len() < wanted && left_out > f64::NEG_INFINITY {
        return Ok(None);
    }
    winners.truncate(wanted);
    Ok(Some(winners))
}

impl SqliteBackend {
    /// The best `keep` vectors of `model` for `query` scoring at most `at_most`: from the
    /// block this process kept, while the store's counter says no vector was stored since it
    /// was read; else read from the table (and kept, when it fits [`VECTOR_BLOCK_BYTES`]).
    ///
    /// Why the counter tells: every transaction that stores a vector takes a stamp
    /// (`put_vectors_sql`), as every memory write does, and a restore moves the counter past
    /// every value handed out before. Vectors only *removed* since (a swept memory) may still
    /// be in the block; `best_first` checks its candidates against the table.
    fn best_vectors(
        &self,
        tx: &Connection,
        model: &str,
        query: &Quantized,
        at_most: Option<f64>,
        keep: usize,
    ) -> Result<Best> {
        let what = "searching memory vectors";
        let live = counter(tx)?;
        // Scored outside the lock: concurrent searches (`serve`) share the block.
        let current = self.vector_block.lock().ok().and_then(|kept| {
            kept.as_ref()
                .filter(|block| block.model == model && block.counter == live)
                .map(|block| Arc::clone(&block.matrix))
        });
        if let Some(matrix) = current {
            return Ok(matrix.best(query, at_most, keep));
        }
        let search = query.query();
        let mut best = Best::new(keep);
        // The stale block's memory is filled again (unless a search still holds it).
        let stale = self
            .vector_block
            .lock()
            .ok()
            .and_then(|mut kept| kept.take());
        let mut matrix = Some(
            stale
                .and_then(|block| Arc::try_unwrap(block.matrix).ok())
                .map(|mut matrix| {
                    matrix.clear();
                    matrix
                })
                .unwrap_or_default(),
        );
        {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT seq, vector FROM memory_vectors WHERE model = ?1 ORDER BY seq",
                )
                .context(what)?;
            let mut rows = stmt.query([model]).context(what)?;
            while let Some(row) = rows.next().context(what)? {
                let bytes = row
                    .get_ref(1)
                    .and_then(|v| v.as_blob().map_err(Into::into))
                    .context(what)?;
                let Some(score) = search.similarity_to_stored(bytes) else {
                    continue;
                };
                let seq: i64 = row.get(0).context(what)?;
                if at_most.is_none_or(|limit| score <= limit) {
                    best.offer(score, seq);
                }
                if let Some(block) = matrix.as_mut() {
                    block.push(seq, bytes);
                    if block.bytes() > VECTOR_BLOCK_BYTES {
                        matrix = None;
                    }
                }
            }
        }
        if let (Some(matrix), Ok(mut kept)) = (matrix, self.vector_block.lock()) {
            *kept = Some(VectorBlock {
                model: model.to_owned(),
                counter: live,
                matrix: Arc::new(matrix),
            });
        }
        Ok(best)
    }
}

/// A vector a write stored: its memory's row and its stored bytes.
type StoredVector<'a> = (i64, &'a [u8]);

/// The vectors of the model searched last, as read at `counter` (see
/// [`SqliteBackend::best_vectors`]).
#[derive(Debug)]
pub(crate) struct VectorBlock {
    model: String,
    counter: u64,
    matrix: Arc<Matrix>,
}

/// A candidate: ordered best first (higher score, then larger id), so the heap's greatest
/// element is the *worst* kept and `into_sorted_vec` lists the best first.
#[derive(Debug)]
struct Scored {
    score: f64,
    id: String,
    seq: i64,
}

impl Ord for Scored {
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .score
            .total_cmp(&self.score)
            .then_with(|| other.id.cmp(&self.id))
    }
}

impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Scored {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Scored {}

#[cfg(test)]
mod tests {
    use crate::embed::{Embedder, Kind};
    use crate::memory::{MemoryFilter, Mode, NewMemory};
    use crate::store::{Options, Store};

    /// Vectors from the text's bytes: many near-equal memories, a few namespaces.
    struct Letters;

    impl Embedder for Letters {
        fn model_id(&self) -> crate::Result<String> {
            Ok("letters@8".into())
        }

        fn embed(&self, texts: &[&str], _kind: Kind) -> crate::Result<Vec<Vec<f32>>> {
            Ok(texts
                .iter()
                .map(|t| {
                    let mut v = vec![0.1f32; 8];
                    for (i, b) in t.bytes().enumerate() {
                        v[(i + usize::from(b)) % 8] += f32::from(b % 7);
                    }
                    v
                })
                .collect())
        }
    }

    /// Pages of `limit` through a semantic search, every id in order.
    fn paged(store: &Store, filter: &MemoryFilter, limit: Option<usize>) -> Vec<String> {
        let mut filter = MemoryFilter {
            limit,
            ..filter.clone()
        };
        let mut ids = Vec::new();
        loop {
            let page = store
                .recall_page("query text", &filter, Mode::Semantic, Some(&Letters))
                .unwrap()
                .page
                .page;
            ids.extend(page.items.iter().map(|h| h.memory.id.clone()));
            match page.next_cursor {
                Some(next) => filter.cursor = Some(next),
                None => return ids,
            }
        }
    }

    /// The block a store keeps across its own writes (and drops after another's) answers as
    /// a store that reads the table afresh: after adds, updates, deletes and vector writes by
    /// itself or by another store on the same file, in a seeded random order.
    #[test]
    fn a_kept_block_answers_as_the_table_after_any_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.db");
        let store = Store::open(&path, Options::default()).unwrap();
        let other = Store::open(&path, Options::default()).unwrap();
        let mut live: Vec<String> = Vec::new();
        let mut state = 0x5eed_u64;
        let mut next = |n: usize| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) as usize % n
        };
        let queries = ["query text", "memory 3 about 1", "zz"];
        for step in 0..300 {
            let writer = if next(4) == 0 { &other } else { &store };
            match next(6) {
                0 | 1 if !live.is_empty() => {
                    let id = live[next(live.len())].clone();
                    let body = format!("changed {} at {step}", next(13));
                    let changed = writer
                        .update_memory(&id, &body, None, crate::Expect::default())
                        .unwrap();
                    if next(3) > 0 {
                        writer.embed_memories(&Letters, &[changed]).unwrap();
                    }
                }
                2 if !live.is_empty() => {
                    let id = live.swap_remove(next(live.len()));
                    writer.delete_memory(&id, crate::Expect::default()).unwrap();
                }
                _ => {
                    let added = writer
                        .add_memories((0..1 + next(3)).map(|i| NewMemory {
                            body: format!("memory {} about {} {i}", next(17), next(5)),
                            ..NewMemory::default()
                        }))
                        .unwrap();
                    live.extend(added.iter().map(|m| m.id.clone()));
                    if next(4) > 0 {
                        writer.embed_memories(&Letters, &added).unwrap();
                    }
                }
            }
            if next(10) == 0 {
                // Vectors filled in for old memories: written between the block's rows.
                writer
                    .embed_missing(&Letters, None, 100, &mut |_| {})
                    .unwrap();
            }
            // Not after every step: several writes, by both, come between two searches.
            if next(3) > 0 {
                continue;
            }
            let fresh = Store::open(&path, Options::default()).unwrap();
            for query in queries {
                for limit in [Some(3), Some(10), None] {
                    let filter = MemoryFilter {
                        limit,
                        ..MemoryFilter::default()
                    };
                    let ids = |s: &Store| -> Vec<(String, String)> {
                        s.recall_page(query, &filter, Mode::Semantic, Some(&Letters))
                            .unwrap()
                            .page
                            .page
                            .items
                            .iter()
                            .map(|h| (h.memory.id.clone(), format!("{:.9}", h.score)))
                            .collect()
                    };
                    assert_eq!(
                        ids(&store),
                        ids(&fresh),
                        "step {step}, {query:?}, {limit:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_fast_path_and_the_filtered_scan_page_the_same_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("v.db"), Options::default()).unwrap();
        let memories: Vec<NewMemory> = (0..300)
            .map(|i| NewMemory {
                namespace: if i % 50 == 0 { "rare" } else { "common" }.into(),
                body: format!("memory {} about {}", i % 17, i % 5),
                ..NewMemory::default()
            })
            .collect();
        let added = store.add_memories(memories).unwrap();
        assert_eq!(store.embed_memories(&Letters, &added).unwrap(), 300);
        for namespace in [None, Some("common"), Some("rare")] {
            let filter = MemoryFilter {
                namespace: namespace.map(str::to_owned),
                ..MemoryFilter::default()
            };
            // No limit: the filtered scan of every vector; pages of 7: the fast path, which
            // falls back to the scan for the narrow namespace.
            let whole = paged(&store, &filter, None);
            let expected = if namespace == Some("rare") {
                6
            } else if namespace.is_some() {
                294
            } else {
                300
            };
            assert_eq!(whole.len(), expected);
            assert_eq!(paged(&store, &filter, Some(7)), whole, "{namespace:?}");
            assert_eq!(paged(&store, &filter, Some(1)), whole, "{namespace:?}");
        }
    }

    #[test]
    fn hybrid_pages_past_the_fusion_depth_stay_exact_while_shown_memories_go() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("h.db"), Options::default()).unwrap();
        let memories: Vec<NewMemory> = (0..1300)
            .map(|i| NewMemory {
                body: format!("note {} on topic {} and {}", i % 23, i % 7, i % 11),
                ..NewMemory::default()
            })
            .collect();
        let added = store.add_memories(memories).unwrap();
        store.embed_memories(&Letters, &added).unwrap();
        let query = "topic 3 and 5";
        let search = |filter: &MemoryFilter| {
            store
                .recall_page(query, filter, Mode::Hybrid, Some(&Letters))
                .unwrap()
                .page
                .page
        };
        let whole: Vec<String> = search(&MemoryFilter::default())
            .items
            .iter()
            .map(|h| h.memory.id.clone())
            .collect();
        assert!(whole.len() > crate::memory::DEPTH, "{}", whole.len());
        let mut filter = MemoryFilter {
            limit: Some(150),
            ..MemoryFilter::default()
        };
        let mut shown = Vec::new();
        loop {
            let page = search(&filter);
            for hit in &page.items {
                shown.push(hit.memory.id.clone());
            }
            // Everything shown goes: every rank after it moves up.
            for hit in page.items.iter().take(100) {
                store
                    .delete_memory(&hit.memory.id, crate::Expect::default())
                    .unwrap();
            }
            match page.next_cursor {
                Some(next) => filter.cursor = Some(next),
                None => break,
            }
        }
        assert_eq!(shown, whole);
    }
}
