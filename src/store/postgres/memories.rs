//! The memories tables on PostgreSQL: the rows (with their search vectors, see `search.rs`),
//! and the stamp counter of the drift guard.
//!
//! On SQLite a write transaction runs under the store's write lock, so memory writers take
//! turns. Here nothing around a transaction orders them; the counter row does. Every
//! memory-writing transaction first takes the counter's row lock (`UPDATE memory_counter …
//! RETURNING`, its first stamp) and only then reads the newest id or the row it checks. A
//! second writer waits on that lock until the first commits, and (READ COMMITTED: each
//! statement sees what was committed before it started) then reads what the first wrote. So
//! ids increase in commit order, and of two writers that expect the same generation or
//! version exactly one writes.

use std::collections::HashMap;
use std::time::SystemTime;

use postgres::types::ToSql;
use postgres::{GenericClient, Row, Transaction};

use super::PgBackend;
use super::errors::PgContext;
use super::search::{indexed_text, probe_limit, search_rows};
use crate::error::Result;
use crate::memory::{
    Cursor, Expect, Hit, Memory, MemoryFilter, NewMemory, Rows, SearchMode, check_expected, grams,
    later_than, next_id, not_found, timestamp,
};

/// The memory's columns and its namespace's generation, on aliases `m` and `n`.
pub(super) const COLUMNS: &str = "m.id, m.namespace, m.category, m.body, m.created_at, m.updated_at, m.version, coalesce(n.generation, 0)";
pub(super) const FROM: &str =
    "memories m LEFT JOIN memory_namespaces n ON n.namespace = m.namespace";

/// Inserts a memory row with its search vector: `$1` id, `$2` namespace, `$3` category,
/// `$4` body, `$5` grams, `$6` the indexed text, `$7` created_at, `$8` updated_at,
/// `$9` version.
pub(super) const INSERT: &str = "INSERT INTO memories
     (id, namespace, category, body, grams, search, created_at, updated_at, version)
     VALUES ($1, $2, $3, $4, $5, to_tsvector('modstate_search', $6), $7, $8, $9)";

/// A statement built piece by piece with its parameters.
pub(super) struct Args {
    pub sql: String,
    values: Vec<Box<dyn ToSql + Sync>>,
}

impl Args {
    pub(super) fn new(sql: String) -> Args {
        Args {
            sql,
            values: Vec::new(),
        }
    }

    /// Adds a parameter; returns its placeholder (`$n`).
    pub(super) fn push(&mut self, value: impl ToSql + Sync + 'static) -> String {
        self.values.push(Box::new(value));
        format!("${}", self.values.len())
    }

    pub(super) fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.values.iter().map(|v| v.as_ref()).collect()
    }
}

/// Appends the filter's conditions on alias `m`: the namespace exactly, the category ignoring
/// ASCII case (as SQLite's NOCASE column).
pub(super) fn push_filter(args: &mut Args, filter: &MemoryFilter) {
    if let Some(namespace) = &filter.namespace {
        let p = args.push(namespace.clone());
        args.sql.push_str(&format!(" AND m.namespace = {p}"));
    }
    if let Some(category) = &filter.category {
        let p = args.push(category.clone());
        args.sql.push_str(&format!(
            " AND modstate_fold(m.category) = modstate_fold({p})"
        ));
    }
}

/// Whether the filter names a namespace or category no memory can have: one holding a NUL,
/// which writes refuse and the server cannot take as text.
fn impossible(filter: &MemoryFilter) -> bool {
    [&filter.namespace, &filter.category]
        .into_iter()
        .flatten()
        .any(|label| label.contains('\0'))
}

/// Decodes the [`COLUMNS`] that start at column `first`.
pub(super) fn memory_from_row(r: &Row, first: usize) -> Result<Memory> {
    let what = "reading a memory";
    let version: i64 = r.try_get(first + 6).context(what)?;
    let generation: i64 = r.try_get(first + 7).context(what)?;
    Ok(Memory {
        id: r.try_get(first).context(what)?,
        namespace: r.try_get(first + 1).context(what)?,
        category: r.try_get(first + 2).context(what)?,
        body: r.try_get(first + 3).context(what)?,
        created_at: r.try_get(first + 4).context(what)?,
        updated_at: r.try_get(first + 5).context(what)?,
        version: u64::try_from(version).unwrap_or(0),
        generation: u64::try_from(generation).unwrap_or(0),
    })
}

fn select_by_id(conn: &mut impl GenericClient, id: &str) -> Result<Option<Memory>> {
    conn.query_opt(
        &format!("SELECT {COLUMNS} FROM {FROM} WHERE m.id = $1"),
        &[&id],
    )
    .context("reading a memory")?
    .map(|r| memory_from_row(&r, 0))
    .transpose()
}

/// The store-wide counter: the last stamp handed out.
pub(super) fn counter(conn: &mut impl GenericClient) -> Result<u64> {
    let row = conn
        .query_one("SELECT value FROM memory_counter WHERE singleton = 0", &[])
        .context("reading the memory counter")?;
    let value: i64 = row.try_get(0).context("reading the memory counter")?;
    Ok(u64::try_from(value).unwrap_or(0))
}

/// Takes the next stamp inside the writing transaction. The first call in a transaction
/// also takes the counter's row lock, held until commit: call it before reading anything
/// the write depends on.
pub(super) fn next_stamp(tx: &mut Transaction<'_>) -> Result<u64> {
    let row = tx
        .query_one(
            "UPDATE memory_counter SET value = value + 1 WHERE singleton = 0 RETURNING value",
            &[],
        )
        .context("advancing the memory counter")?;
    let value: i64 = row.try_get(0).context("advancing the memory counter")?;
    Ok(u64::try_from(value).unwrap_or(0))
}

/// A namespace's generation: the stamp of its last write, 0 if it was never written.
pub(super) fn namespace_generation(conn: &mut impl GenericClient, namespace: &str) -> Result<u64> {
    if namespace.contains('\0') {
        return Ok(0);
    }
    let row = conn
        .query_opt(
            "SELECT generation FROM memory_namespaces WHERE namespace = $1",
            &[&namespace],
        )
        .context("reading a namespace's generation")?;
    let value: Option<i64> = row
        .map(|r| r.try_get(0))
        .transpose()
        .context("reading a namespace's generation")?;
    Ok(value.and_then(|v| u64::try_from(v).ok()).unwrap_or(0))
}

/// Records `stamp` as the namespace's generation, inside the writing transaction.
pub(super) fn set_namespace_generation(
    tx: &mut Transaction<'_>,
    namespace: &str,
    stamp: u64,
) -> Result<()> {
    tx.execute(
        "INSERT INTO memory_namespaces (namespace, generation) VALUES ($1, $2)
         ON CONFLICT (namespace) DO UPDATE SET generation = excluded.generation",
        &[&namespace, &stamp_value(stamp)],
    )
    .context("recording a namespace's generation")?;
    Ok(())
}

/// A stamp as the server's bigint.
pub(super) fn stamp_value(stamp: u64) -> i64 {
    i64::try_from(stamp).unwrap_or(i64::MAX)
}

fn newest_id(tx: &mut Transaction<'_>) -> Result<Option<String>> {
    let row = tx
        .query_one("SELECT max(id) FROM memories", &[])
        .context("reading the newest memory id")?;
    row.try_get(0).context("reading the newest memory id")
}

/// The namespace's generation when the read is limited to one namespace.
fn envelope_generation(tx: &mut Transaction<'_>, filter: &MemoryFilter) -> Result<Option<u64>> {
    filter
        .namespace
        .as_deref()
        .map(|namespace| namespace_generation(tx, namespace))
        .transpose()
}

impl PgBackend {
    pub(crate) fn add_memories_pg(&self, memories: Vec<NewMemory>) -> Result<Vec<Memory>> {
        self.write("adding memories", |tx| {
            // The counter's row lock first: ids then follow commit order.
            let mut stamp = Some(next_stamp(tx)?);
            let mut newest = newest_id(tx)?;
            let insert = tx.prepare(INSERT).context("adding a memory")?;
            let mut added = Vec::with_capacity(memories.len());
            let mut last_stamp: HashMap<String, u64> = HashMap::new();
            for m in memories {
                let stamp = match stamp.take() {
                    Some(first) => first,
                    None => next_stamp(tx)?,
                };
                let id = next_id(newest.as_deref());
                let now = timestamp(SystemTime::now());
                let grams = grams(&m.body);
                let text = indexed_text(&m.body, &grams);
                tx.execute(
                    &insert,
                    &[
                        &id,
                        &m.namespace,
                        &m.category,
                        &m.body,
                        &grams,
                        &text,
                        &now,
                        &now,
                        &stamp_value(stamp),
                    ],
                )
                .context("adding a memory")?;
                set_namespace_generation(tx, &m.namespace, stamp)?;
                last_stamp.insert(m.namespace.clone(), stamp);
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
                if let Some(stamp) = last_stamp.get(&memory.namespace) {
                    memory.generation = *stamp;
                }
            }
            Ok(added)
        })
    }

    pub(crate) fn get_memory_pg(&self, id: &str) -> Result<Option<Memory>> {
        let mut conn = self.connection()?;
        select_by_id(&mut *conn, id)
    }

    pub(crate) fn list_memories_pg(
        &self,
        filter: &MemoryFilter,
        cursor: Option<&Cursor>,
    ) -> Result<Rows<Memory>> {
        let mut args = Args::new(format!("SELECT {COLUMNS} FROM {FROM} WHERE true"));
        push_filter(&mut args, filter);
        if let Some(cursor) = cursor {
            let p = args.push(cursor.id.clone());
            args.sql.push_str(&format!(" AND m.id < {p}"));
        }
        let p = args.push(probe_limit(filter.limit));
        args.sql.push_str(&format!(" ORDER BY m.id DESC LIMIT {p}"));
        self.read("listing memories", |tx| {
            let snapshot = cursor.map_or_else(|| counter(tx), |c| Ok(c.snapshot))?;
            let generation = envelope_generation(tx, filter)?;
            let rows = if impossible(filter) {
                Vec::new()
            } else {
                tx.query(&args.sql, &args.params())
                    .context("listing memories")?
                    .iter()
                    .map(|r| memory_from_row(r, 0))
                    .collect::<Result<Vec<_>>>()?
            };
            Ok(Rows {
                rows,
                snapshot,
                generation,
                statistics: None,
            })
        })
    }

    pub(crate) fn search_memories_pg(
        &self,
        mode: &SearchMode,
        filter: &MemoryFilter,
        cursor: Option<&Cursor>,
    ) -> Result<Rows<Hit>> {
        self.read("searching memories", |tx| {
            let snapshot = cursor.map_or_else(|| counter(tx), |c| Ok(c.snapshot))?;
            let generation = envelope_generation(tx, filter)?;
            let (rows, statistics) = if impossible(filter) {
                (Vec::new(), cursor.and_then(|c| c.statistics.clone()))
            } else {
                search_rows(tx, mode, filter, cursor)?
            };
            Ok(Rows {
                rows,
                snapshot,
                generation,
                statistics,
            })
        })
    }

    pub(crate) fn update_memory_pg(
        &self,
        id: &str,
        body: &str,
        category: Option<&str>,
        expect: Expect,
    ) -> Result<Memory> {
        self.write("updating a memory", |tx| {
            // The counter's row lock first: the row read next is the latest committed one,
            // and no other memory write commits until this one has.
            let stamp = next_stamp(tx)?;
            let old = select_by_id(tx, id)?.ok_or_else(|| not_found(id))?;
            check_expected(&old, expect)?;
            let updated_at = later_than(&old.updated_at);
            let category = category.map_or(old.category, str::to_owned);
            let grams = grams(body);
            let text = indexed_text(body, &grams);
            tx.execute(
                "UPDATE memories SET body = $1, grams = $2, search = to_tsvector('modstate_search', $3),
                     category = $4, updated_at = $5, version = $6
                 WHERE id = $7",
                &[
                    &body,
                    &grams,
                    &text,
                    &category,
                    &updated_at,
                    &stamp_value(stamp),
                    &id,
                ],
            )
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

    pub(crate) fn delete_memory_pg(&self, id: &str, expect: Expect) -> Result<u64> {
        self.write("deleting a memory", |tx| {
            // The counter's row lock first, as for an update.
            let stamp = next_stamp(tx)?;
            let old = select_by_id(tx, id)?.ok_or_else(|| not_found(id))?;
            check_expected(&old, expect)?;
            tx.execute("DELETE FROM memories WHERE id = $1", &[&id])
                .context("deleting a memory")?;
            set_namespace_generation(tx, &old.namespace, stamp)?;
            Ok(stamp)
        })
    }

    pub(crate) fn memory_generation_pg(&self, namespace: &str) -> Result<u64> {
        // No namespace holds a NUL (labels are checked), and the server refuses one in text.
        if namespace.contains('\0') {
            return Ok(0);
        }
        let mut conn = self.connection()?;
        namespace_generation(&mut *conn, namespace)
    }
}
