//! The memories table: add, get, list, update, delete, search, generation.

use std::time::{Duration, SystemTime};

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params, params_from_iter};

use super::id::next_id;
use super::{Memory, MemoryFilter, NewMemory, check_body, check_label, fts_query, not_found};
use crate::error::{Error, Result, SqlContext};
use crate::store::Store;

const COLUMNS: &str =
    "m.id, m.namespace, m.category, m.body, m.created_at, m.updated_at, m.generation";

impl Store {
    /// Adds one memory; returns it with its new id.
    pub fn add_memory(&self, namespace: &str, body: &str, category: &str) -> Result<Memory> {
        let mut added = self.add_memories([NewMemory {
            namespace: namespace.to_owned(),
            category: category.to_owned(),
            body: body.to_owned(),
        }])?;
        added
            .pop()
            .ok_or_else(|| Error::Invalid("no memory was given to add".into()))
    }

    /// Adds many memories in one transaction: all of them or, on any error, none. Every one
    /// is checked before anything is written; the generation advances once per memory.
    pub fn add_memories(
        &self,
        memories: impl IntoIterator<Item = NewMemory>,
    ) -> Result<Vec<Memory>> {
        let memories: Vec<NewMemory> = memories.into_iter().collect();
        let max_bytes = self.options().max_memory_bytes;
        for m in &memories {
            check_label("namespace", &m.namespace)?;
            check_label("category", &m.category)?;
            check_body(&m.body, max_bytes)?;
        }
        if memories.is_empty() {
            return Ok(Vec::new());
        }
        self.write("adding memories", |tx| {
            let mut newest = newest_id(tx)?;
            let mut added = Vec::with_capacity(memories.len());
            for m in memories {
                let generation = bump_generation(tx)?;
                let id = next_id(newest.as_deref());
                let now = timestamp(SystemTime::now());
                tx.prepare_cached(
                    "INSERT INTO memories (id, namespace, category, body, created_at, updated_at, generation)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6)",
                )
                .and_then(|mut stmt| {
                    stmt.execute(params![id, m.namespace, m.category, m.body, now, generation as i64])
                })
                .context("adding a memory")?;
                newest = Some(id.clone());
                added.push(Memory {
                    id,
                    namespace: m.namespace,
                    category: m.category,
                    body: m.body,
                    created_at: now.clone(),
                    updated_at: now,
                    generation,
                });
            }
            Ok(added)
        })
    }

    /// The memory with `id`, or `None`.
    pub fn get_memory(&self, id: &str) -> Result<Option<Memory>> {
        self.read(|conn| select_by_id(conn, id))
    }

    /// Memories matching `filter`, newest first.
    pub fn list_memories(&self, filter: &MemoryFilter) -> Result<Vec<Memory>> {
        let mut sql = format!("SELECT {COLUMNS} FROM memories m WHERE 1 = 1");
        let mut args = Vec::new();
        push_filter(&mut sql, &mut args, filter);
        sql.push_str(" ORDER BY m.id DESC LIMIT ?");
        args.push(limit_value(filter.limit));
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(&sql).context("listing memories")?;
            let rows = stmt
                .query_map(params_from_iter(args), |r| memory_from_row(r, 0))
                .context("listing memories")?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
                .context("listing memories")
        })
    }

    /// Memories whose body holds every word of `query` (case-insensitive, the last word as a
    /// prefix), best match first, each with its score (higher is better: the negated bm25).
    /// User text is never read as FTS5 syntax. A query with no word lists newest first, each
    /// with score 0.
    pub fn search_memories(
        &self,
        query: &str,
        filter: &MemoryFilter,
    ) -> Result<Vec<(Memory, f64)>> {
        let Some(fts) = fts_query(query) else {
            let listed = self.list_memories(filter)?;
            return Ok(listed.into_iter().map(|m| (m, 0.0)).collect());
        };
        // Rank inside the index first and fetch only the winners' rows: reading every
        // match's body just to sort would cost more than the search itself.
        let mut sql = String::from(
            "SELECT s.score, {COLUMNS} FROM (
                 SELECT memories_fts.rowid AS seq, bm25(memories_fts) AS score
                 FROM memories_fts",
        );
        let mut args = vec![Value::Text(fts)];
        if filter.namespace.is_some() || filter.category.is_some() || filter.after.is_some() {
            sql.push_str(
                " JOIN memories m ON m.seq = memories_fts.rowid WHERE memories_fts MATCH ?",
            );
            push_filter(&mut sql, &mut args, filter);
        } else {
            sql.push_str(" WHERE memories_fts MATCH ?");
        }
        sql.push_str(
            " ORDER BY score, memories_fts.rowid DESC LIMIT ?
             ) s JOIN memories m ON m.seq = s.seq
             ORDER BY s.score, m.seq DESC",
        );
        let sql = sql.replace("{COLUMNS}", COLUMNS);
        args.push(limit_value(filter.limit));
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(&sql).context("searching memories")?;
            let rows = stmt
                .query_map(params_from_iter(args), |r| {
                    let bm25: f64 = r.get(0)?;
                    Ok((memory_from_row(r, 1)?, -bm25))
                })
                .context("searching memories")?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
                .context("searching memories")
        })
    }

    /// Replaces the body (and the category, if given) of memory `id`. With `expect`, the
    /// write happens only if the store is still at that generation; otherwise nothing is
    /// written and [`Error::Conflict`] says where the store is.
    pub fn update_memory(
        &self,
        id: &str,
        body: &str,
        category: Option<&str>,
        expect: Option<u64>,
    ) -> Result<Memory> {
        check_body(body, self.options().max_memory_bytes)?;
        if let Some(category) = category {
            check_label("category", category)?;
        }
        self.write("updating a memory", |tx| {
            check_expected(tx, expect)?;
            let old = select_by_id(tx, id)?.ok_or_else(|| not_found(id))?;
            let generation = bump_generation(tx)?;
            let updated_at = later_than(&old.updated_at);
            let category = category.map_or(old.category, str::to_owned);
            tx.prepare_cached(
                "UPDATE memories SET body = ?1, category = ?2, updated_at = ?3, generation = ?4
                 WHERE id = ?5",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![body, category, updated_at, generation as i64, id])
            })
            .context("updating a memory")?;
            Ok(Memory {
                id: old.id,
                namespace: old.namespace,
                category,
                body: body.to_owned(),
                created_at: old.created_at,
                updated_at,
                generation,
            })
        })
    }

    /// Removes memory `id` and returns the new generation. With `expect`, as for
    /// [`Store::update_memory`].
    pub fn delete_memory(&self, id: &str, expect: Option<u64>) -> Result<u64> {
        self.write("deleting a memory", |tx| {
            check_expected(tx, expect)?;
            let removed = tx
                .prepare_cached("DELETE FROM memories WHERE id = ?1")
                .and_then(|mut stmt| stmt.execute([id]))
                .context("deleting a memory")?;
            if removed == 0 {
                return Err(not_found(id));
            }
            bump_generation(tx)
        })
    }

    /// The store's memory generation: how many memory writes it has committed.
    pub fn memory_generation(&self) -> Result<u64> {
        self.read(current_generation)
    }
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
    if let Some(after) = &filter.after {
        sql.push_str(" AND m.id < ?");
        args.push(Value::Text(after.clone()));
    }
}

/// SQLite's LIMIT value: negative means no limit.
fn limit_value(limit: Option<usize>) -> Value {
    Value::Integer(limit.map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX)))
}

/// Decodes the [`COLUMNS`] that start at column `first`.
fn memory_from_row(r: &Row<'_>, first: usize) -> rusqlite::Result<Memory> {
    let generation: i64 = r.get(first + 6)?;
    Ok(Memory {
        id: r.get(first)?,
        namespace: r.get(first + 1)?,
        category: r.get(first + 2)?,
        body: r.get(first + 3)?,
        created_at: r.get(first + 4)?,
        updated_at: r.get(first + 5)?,
        generation: u64::try_from(generation).unwrap_or(0),
    })
}

fn select_by_id(conn: &Connection, id: &str) -> Result<Option<Memory>> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM memories m WHERE m.id = ?1"))
        .and_then(|mut stmt| stmt.query_row([id], |r| memory_from_row(r, 0)).optional())
        .context("reading a memory")
}

fn newest_id(tx: &Transaction<'_>) -> Result<Option<String>> {
    tx.query_row("SELECT max(id) FROM memories", [], |r| r.get(0))
        .context("reading the newest memory id")
}

fn current_generation(conn: &Connection) -> Result<u64> {
    let value: i64 = conn
        .prepare_cached("SELECT value FROM memory_generation WHERE only = 0")
        .and_then(|mut stmt| stmt.query_row([], |r| r.get(0)))
        .context("reading the memory generation")?;
    Ok(u64::try_from(value).unwrap_or(0))
}

/// The drift guard's check, inside the writing transaction.
fn check_expected(tx: &Transaction<'_>, expect: Option<u64>) -> Result<()> {
    let Some(expected) = expect else {
        return Ok(());
    };
    let found = current_generation(tx)?;
    if found != expected {
        return Err(Error::Conflict { expected, found });
    }
    Ok(())
}

/// Advances the generation by one inside the writing transaction; returns the new value.
fn bump_generation(tx: &Transaction<'_>) -> Result<u64> {
    let value: i64 = tx
        .prepare_cached(
            "UPDATE memory_generation SET value = value + 1 WHERE only = 0 RETURNING value",
        )
        .and_then(|mut stmt| stmt.query_row([], |r| r.get(0)))
        .context("advancing the memory generation")?;
    Ok(u64::try_from(value).unwrap_or(0))
}

/// RFC 3339 in UTC with microseconds: fixed width, so text order is time order.
fn timestamp(at: SystemTime) -> String {
    humantime::format_rfc3339_micros(at).to_string()
}

/// Now, or a microsecond after `previous` if the clock has not moved past it, so an update
/// always moves `updated_at` forward.
fn later_than(previous: &str) -> String {
    let now = timestamp(SystemTime::now());
    if now.as_str() > previous {
        return now;
    }
    match humantime::parse_rfc3339(previous) {
        Ok(at) => timestamp(at + Duration::from_micros(1)),
        Err(_) => now,
    }
}
