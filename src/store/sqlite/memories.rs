//! The memories tables in SQLite: the rows, the FTS5 index (body and CJK bigrams, ranked by
//! `modstate_rank`), and the stamp counter of the drift guard.

use std::time::SystemTime;

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params, params_from_iter};

use super::stamps::{counter, namespace_generation, next_stamp, set_namespace_generation};
use super::{SqliteBackend, fts, rank};
use crate::error::Result;
use crate::memory::{
    Cursor, Expect, Hit, Memory, MemoryFilter, NewMemory, Ranking, Rows, SearchMode, Statistics,
    check_expected, grams, later_than, next_id, not_found, timestamp,
};
use crate::store::sqlite::errors::SqlContext;

/// The memory's columns and its namespace's generation, on aliases `m` and `n`.
const COLUMNS: &str = "m.id, m.namespace, m.category, m.body, m.created_at, m.updated_at, m.version, coalesce(n.generation, 0)";
const FROM: &str = "memories m LEFT JOIN memory_namespaces n ON n.namespace = m.namespace";

impl SqliteBackend {
    pub(crate) fn add_memories_sql(&self, memories: Vec<NewMemory>) -> Result<Vec<Memory>> {
        self.write("adding memories", |tx| {
            let mut newest = newest_id(tx)?;
            let mut added = Vec::with_capacity(memories.len());
            for m in memories {
                let stamp = next_stamp(tx)?;
                let id = next_id(newest.as_deref());
                let now = timestamp(SystemTime::now());
                tx.prepare_cached(
                    "INSERT INTO memories (id, namespace, category, body, grams, created_at, updated_at, version)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7)",
                )
                .and_then(|mut stmt| {
                    stmt.execute(params![id, m.namespace, m.category, m.body, grams(&m.body), now, stamp as i64])
                })
                .context("adding a memory")?;
                set_namespace_generation(tx, &m.namespace, stamp)?;
                newest = Some(id.clone());
                added.push(Memory {
                    id,
                    namespace: m.namespace,
                    category: m.category,
                    body: m.body,
                    created_at: now.clone(),
                    updated_at: now,
                    version: stamp,
                    generation: stamp,
                });
            }
            // A later memory of the same namespace moved its generation on: show the current
            // one, so every `generation` handed out is usable as `expect_generation`.
            for memory in &mut added {
                memory.generation = namespace_generation(tx, &memory.namespace)?;
            }
            Ok(added)
        })
    }

    pub(crate) fn get_memory_sql(&self, id: &str) -> Result<Option<Memory>> {
        self.read(|conn| select_by_id(conn, id))
    }

    pub(crate) fn list_memories_sql(
        &self,
        filter: &MemoryFilter,
        cursor: Option<&Cursor>,
    ) -> Result<Rows<Memory>> {
        let mut sql = format!("SELECT {COLUMNS} FROM {FROM} WHERE 1 = 1");
        let mut args = Vec::new();
        push_filter(&mut sql, &mut args, filter);
        if let Some(cursor) = cursor {
            sql.push_str(" AND m.id < ?");
            args.push(Value::Text(cursor.id.clone()));
        }
        sql.push_str(" ORDER BY m.id DESC LIMIT ?");
        args.push(probe_limit(filter.limit));
        self.read(|conn| {
            let tx = conn.unchecked_transaction().context("listing memories")?;
            let snapshot = cursor.map_or_else(|| counter(&tx), |c| Ok(c.snapshot))?;
            let generation = envelope_generation(&tx, filter)?;
            let mut stmt = tx.prepare_cached(&sql).context("listing memories")?;
            let rows = stmt
                .query_map(params_from_iter(args), |r| memory_from_row(r, 0))
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .context("listing memories")?;
            Ok(Rows {
                rows,
                snapshot,
                generation,
                statistics: None,
            })
        })
    }

    pub(crate) fn search_memories_sql(
        &self,
        mode: &SearchMode,
        filter: &MemoryFilter,
        cursor: Option<&Cursor>,
    ) -> Result<Rows<Hit>> {
        self.read(|conn| {
            let tx = conn.unchecked_transaction().context("searching memories")?;
            let snapshot = cursor.map_or_else(|| counter(&tx), |c| Ok(c.snapshot))?;
            let generation = envelope_generation(&tx, filter)?;
            let statistics = match (mode, cursor) {
                (SearchMode::Ranked(_), Some(cursor)) => cursor.statistics.clone(),
                (SearchMode::Ranked(plan), None) => statistics(&tx, plan)?,
                _ => None,
            };
            let rows = match (mode, &statistics) {
                // Nothing in the index holds any of the words.
                (SearchMode::Ranked(_), None) => Vec::new(),
                _ => search_rows(&tx, mode, statistics.as_ref(), filter, cursor)?,
            };
            Ok(Rows {
                rows,
                snapshot,
                generation,
                statistics,
            })
        })
    }

    pub(crate) fn update_memory_sql(
        &self,
        id: &str,
        body: &str,
        category: Option<&str>,
        expect: Expect,
    ) -> Result<Memory> {
        self.write("updating a memory", |tx| {
            let old = select_by_id(tx, id)?.ok_or_else(|| not_found(id))?;
            check_expected(&old, expect)?;
            let stamp = next_stamp(tx)?;
            let updated_at = later_than(&old.updated_at);
            let category = category.map_or(old.category, str::to_owned);
            tx.prepare_cached(
                "UPDATE memories SET body = ?1, grams = ?2, category = ?3, updated_at = ?4, version = ?5
                 WHERE id = ?6",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![body, grams(body), category, updated_at, stamp as i64, id])
            })
            .context("updating a memory")?;
            set_namespace_generation(tx, &old.namespace, stamp)?;
            Ok(Memory {
                id: old.id,
                namespace: old.namespace,
                category,
                body: body.to_owned(),
                created_at: old.created_at,
                updated_at,
                version: stamp,
                generation: stamp,
            })
        })
    }

    pub(crate) fn delete_memory_sql(&self, id: &str, expect: Expect) -> Result<u64> {
        self.write("deleting a memory", |tx| {
            let old = select_by_id(tx, id)?.ok_or_else(|| not_found(id))?;
            check_expected(&old, expect)?;
            tx.prepare_cached("DELETE FROM memories WHERE id = ?1")
                .and_then(|mut stmt| stmt.execute([id]))
                .context("deleting a memory")?;
            let stamp = next_stamp(tx)?;
            set_namespace_generation(tx, &old.namespace, stamp)?;
            Ok(stamp)
        })
    }

    pub(crate) fn memory_generation_sql(&self, namespace: &str) -> Result<u64> {
        self.read(|conn| namespace_generation(conn, namespace))
    }
}

/// The collection statistics of a ranked search as of the caller's read transaction, or
/// `None` when no memory holds any of its phrases: the index's rows and tokens, and each scored
/// term's document frequency (FTS5 counts the matches of a MATCH without reading the rows).
fn statistics(conn: &Connection, plan: &Ranking) -> Result<Option<Statistics>> {
    if plan.phrases.is_empty() {
        return Ok(None);
    }
    let totals: Option<String> = with_rank(conn, || {
        conn.prepare_cached(&format!(
            "SELECT {}(memories_fts) FROM memories_fts WHERE memories_fts MATCH ?1 LIMIT 1",
            rank::TOTALS
        ))?
        .query_row([fts::any(&plan.phrases)], |r| r.get(0))
        .optional()
    })
    .context("reading the search statistics")?;
    let Some(totals) = totals else {
        return Ok(None);
    };
    let (memories, tokens) = totals
        .split_once(',')
        .and_then(|(n, t)| Some((n.parse().ok()?, t.parse().ok()?)))
        .unwrap_or((0, 0));
    let mut frequencies = Vec::with_capacity(plan.terms());
    let mut stmt = conn
        .prepare_cached("SELECT count(*) FROM memories_fts WHERE memories_fts MATCH ?1")
        .context("reading the search statistics")?;
    for phrase in &plan.phrases {
        let df: i64 = stmt
            .query_row([fts::any([phrase])], |r| r.get(0))
            .context("reading the search statistics")?;
        frequencies.push(u64::try_from(df).unwrap_or(0));
    }
    Ok(Some(Statistics {
        memories,
        tokens,
        frequencies,
    }))
}

/// One page (plus one row) of a search in `mode`, inside the caller's read transaction; a
/// ranked one scored under `statistics`.
///
/// A ranked page is found with MaxScore pruning: the candidates are first the memories holding
/// the weightiest (rarest) terms — the fewest such that the other terms together could score
/// less than they do (`Scorer::bound`) — every query word still scored. If the page's last
/// score beats the highest score a memory holding only the other terms could reach, no such
/// memory can be on the page and the search stops; otherwise every memory holding any word is
/// scored. A question's rare word keeps the candidates few; the answer is always the same as
/// scoring every memory holding any word, and a failed attempt costs one query.
fn search_rows(
    conn: &Connection,
    mode: &SearchMode,
    statistics: Option<&Statistics>,
    filter: &MemoryFilter,
    cursor: Option<&Cursor>,
) -> Result<Vec<Hit>> {
    let (plan, statistics) = match (mode, statistics) {
        (SearchMode::Ranked(plan), Some(statistics)) => (plan, statistics),
        (SearchMode::Literal(literal), _) => {
            return page(conn, Source::Literal(literal), filter, cursor);
        }
        _ => return page(conn, Source::Everything, filter, cursor),
    };
    let scorer = plan.scorer(statistics);
    let order = scorer.terms_by_weight();
    let all_phrases = fts::any(&plan.phrases);
    // Without a limit every candidate is on the page: no pruning.
    let split = filter.limit.and_then(|_| {
        (1..order.len()).find(|&n| scorer.bound(&order[n..]) < scorer.bound(&order[..n]))
    });
    if let (Some(split), Some(limit)) = (split, filter.limit) {
        let (searched, rest) = order.split_at(split);
        // The candidates hold a searched term; the second operand (true for all of them)
        // makes FTS5 report every phrase's matches, so each is scored by every word.
        let searched_phrases: Vec<_> = plan
            .phrases
            .iter()
            .filter(|p| searched.contains(&p.of))
            .collect();
        let expression = format!(
            "({}) AND ({all_phrases})",
            fts::any(searched_phrases.iter().copied())
        );
        let reported = searched_phrases.iter().copied().chain(&plan.phrases);
        let text = plan.scorer_for(statistics, reported).encode();
        let rows = page(conn, Source::Ranked(&text, &expression), filter, cursor)?;
        let wanted = limit.saturating_add(1);
        if rows.len() >= wanted && rows[wanted - 1].score > scorer.bound(rest) {
            return Ok(rows);
        }
    }
    let text = scorer.encode();
    page(conn, Source::Ranked(&text, &all_phrases), filter, cursor)
}

/// What a page is read from.
enum Source<'a> {
    /// Ranked: the scorer's text and the MATCH expression.
    Ranked(&'a str, &'a str),
    /// Memories holding this text as typed, newest first.
    Literal(&'a str),
    /// Every memory, newest first.
    Everything,
}

/// One page (plus one row) from `source`, after the cursor, with the filter.
fn page(
    conn: &Connection,
    source: Source<'_>,
    filter: &MemoryFilter,
    cursor: Option<&Cursor>,
) -> Result<Vec<Hit>> {
    let mut args = Vec::new();
    let (source, ranked) = match source {
        Source::Ranked(scorer, expression) => {
            args.push(Value::Text(scorer.to_owned()));
            args.push(Value::Text(expression.to_owned()));
            (
                format!(
                    "(SELECT rowid AS seq, {}(memories_fts, ?) AS score FROM memories_fts WHERE memories_fts MATCH ?) r
                     JOIN memories m ON m.seq = r.seq WHERE 1 = 1",
                    rank::NAME
                ),
                true,
            )
        }
        Source::Literal(literal) => {
            args.push(Value::Text(literal.to_owned()));
            ("memories m WHERE instr(m.body, ?) > 0".to_owned(), false)
        }
        Source::Everything => ("memories m WHERE 1 = 1".to_owned(), false),
    };
    let score = if ranked { "r.score" } else { "0.0" };
    let mut inner = format!("SELECT m.seq AS seq, {score} AS score, m.id AS id FROM {source}");
    push_filter(&mut inner, &mut args, filter);
    if let Some(cursor) = cursor {
        // Later pages: only what was there, unchanged, at the first page…
        inner.push_str(" AND m.version <= ?");
        args.push(Value::Integer(
            i64::try_from(cursor.snapshot).unwrap_or(i64::MAX),
        ));
        // …and strictly after the last result shown.
        if ranked {
            inner.push_str(" AND (r.score < ? OR (r.score = ? AND m.id < ?))");
            args.push(Value::Real(cursor.score));
            args.push(Value::Real(cursor.score));
        } else {
            inner.push_str(" AND m.id < ?");
        }
        args.push(Value::Text(cursor.id.clone()));
    }
    inner.push_str(if ranked {
        " ORDER BY r.score DESC, m.id DESC LIMIT ?"
    } else {
        " ORDER BY m.id DESC LIMIT ?"
    });
    args.push(probe_limit(filter.limit));
    // Rank inside the index first and fetch only the winners' rows.
    let sql = format!(
        "SELECT s.score, {COLUMNS} FROM ({inner}) s
         JOIN memories m ON m.seq = s.seq
         LEFT JOIN memory_namespaces n ON n.namespace = m.namespace
         ORDER BY s.score DESC, s.id DESC"
    );
    with_rank(conn, || {
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(params_from_iter(args.iter()), |r| {
            Ok(Hit {
                score: r.get(0)?,
                memory: memory_from_row(r, 1)?,
            })
        })?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
    })
    .context("searching memories")
}

/// Runs `query`; if this connection does not know the ranking functions yet, registers them
/// and runs `query` again. (Read connections are pooled by the store; registering on first use
/// keeps the store's connection setup free of search details.)
fn with_rank<T>(conn: &Connection, query: impl Fn() -> rusqlite::Result<T>) -> rusqlite::Result<T> {
    match query() {
        Err(e)
            if [rank::NAME, rank::TOTALS]
                .iter()
                .any(|name| e.to_string().contains(&format!("no such function: {name}"))) =>
        {
            rank::register(conn).map_err(|e| {
                rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
                    Some(e.to_string()),
                )
            })?;
            query()
        }
        other => other,
    }
}

/// The namespace's generation when the read is limited to one namespace.
fn envelope_generation(conn: &Connection, filter: &MemoryFilter) -> Result<Option<u64>> {
    filter
        .namespace
        .as_deref()
        .map(|namespace| namespace_generation(conn, namespace))
        .transpose()
}

/// Appends the filter's conditions (on alias `m`) and their values.
fn push_filter(sql: &mut String, args: &mut Vec<Value>, filter: &MemoryFilter) {
    if let Some(namespace) = &filter.namespace {
        sql.push_str(" AND m.namespace = ?");
        args.push(Value::Text(namespace.clone()));
    }
    if let Some(category) = &filter.category {
        sql.push_str(" AND m.category = ?");
        args.push(Value::Text(category.clone()));
    }
}

/// SQLite's LIMIT value for one row more than a page, to know whether more exist; negative
/// means no limit.
fn probe_limit(limit: Option<usize>) -> Value {
    Value::Integer(limit.map_or(-1, |n| {
        i64::try_from(n.saturating_add(1)).unwrap_or(i64::MAX)
    }))
}

/// Decodes the [`COLUMNS`] that start at column `first`.
fn memory_from_row(r: &Row<'_>, first: usize) -> rusqlite::Result<Memory> {
    let version: i64 = r.get(first + 6)?;
    let generation: i64 = r.get(first + 7)?;
    Ok(Memory {
        id: r.get(first)?,
        namespace: r.get(first + 1)?,
        category: r.get(first + 2)?,
        body: r.get(first + 3)?,
        created_at: r.get(first + 4)?,
        updated_at: r.get(first + 5)?,
        version: u64::try_from(version).unwrap_or(0),
        generation: u64::try_from(generation).unwrap_or(0),
    })
}

fn select_by_id(conn: &Connection, id: &str) -> Result<Option<Memory>> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM {FROM} WHERE m.id = ?1"))
        .and_then(|mut stmt| stmt.query_row([id], |r| memory_from_row(r, 0)).optional())
        .context("reading a memory")
}

fn newest_id(tx: &Transaction<'_>) -> Result<Option<String>> {
    tx.query_row("SELECT max(id) FROM memories", [], |r| r.get(0))
        .context("reading the newest memory id")
}
