//! The memories table: add, get, list, update, delete, search, generation.

use std::time::{Duration, SystemTime};

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params, params_from_iter};

use super::cursor::{Cursor, Kind, fingerprint};
use super::grams::grams;
use super::id::next_id;
use super::page::{Hit, MemoryPage, Page};
use super::query::SearchText;
use super::rank;
use super::stamps::{counter, namespace_generation, next_stamp, set_namespace_generation};
use super::{
    Expect, Memory, MemoryFilter, NewMemory, check_body, check_id, check_label, not_found,
};
use crate::error::{Error, Result, SqlContext};
use crate::store::Store;

/// The memory's columns and its namespace's generation, on aliases `m` and `n`.
const COLUMNS: &str = "m.id, m.namespace, m.category, m.body, m.created_at, m.updated_at, m.version, coalesce(n.generation, 0)";
const FROM: &str = "memories m LEFT JOIN memory_namespaces n ON n.namespace = m.namespace";

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
    /// is checked before anything is written; each takes its own stamp.
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

    /// The memory with `id`, or `None`. A malformed id is [`Error::Invalid`].
    pub fn get_memory(&self, id: &str) -> Result<Option<Memory>> {
        let id = check_id(id)?;
        self.read(|conn| select_by_id(conn, &id))
    }

    /// The first page of [`Store::list_page`], its memories only.
    pub fn list_memories(&self, filter: &MemoryFilter) -> Result<Vec<Memory>> {
        Ok(self.list_page(filter)?.page.items)
    }

    /// Memories matching `filter`, newest first, one page of them. See `cursor.rs` for what
    /// paging guarantees.
    pub fn list_page(&self, filter: &MemoryFilter) -> Result<MemoryPage<Memory>> {
        let category = category_key(filter);
        let print = fingerprint(&[
            Some("list"),
            filter.namespace.as_deref(),
            category.as_deref(),
        ]);
        let cursor = decode(filter, Kind::List, print)?;
        let mut sql = format!("SELECT {COLUMNS} FROM {FROM} WHERE 1 = 1");
        let mut args = Vec::new();
        push_filter(&mut sql, &mut args, filter);
        if let Some(cursor) = &cursor {
            sql.push_str(" AND m.id < ?");
            args.push(Value::Text(cursor.id.clone()));
        }
        sql.push_str(" ORDER BY m.id DESC LIMIT ?");
        args.push(probe_limit(filter.limit));
        self.read(|conn| {
            let tx = conn.unchecked_transaction().context("listing memories")?;
            let snapshot = cursor.as_ref().map_or(counter(&tx), |c| Ok(c.snapshot))?;
            let generation = envelope_generation(&tx, filter)?;
            let mut stmt = tx.prepare_cached(&sql).context("listing memories")?;
            let rows = stmt
                .query_map(params_from_iter(args), |r| memory_from_row(r, 0))
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .context("listing memories")?;
            let page = Page::cut(rows, filter.limit, |m: &Memory| {
                Cursor {
                    kind: Kind::List,
                    snapshot,
                    fingerprint: print,
                    score: 0.0,
                    id: m.id.clone(),
                }
                .encode()
            });
            Ok(MemoryPage {
                page,
                generation,
                note: None,
                some_words: false,
            })
        })
    }

    /// The first page of [`Store::search_page`], as (memory, score) pairs.
    pub fn search_memories(
        &self,
        query: &str,
        filter: &MemoryFilter,
    ) -> Result<Vec<(Memory, f64)>> {
        let page = self.search_page(query, filter)?;
        Ok(page
            .page
            .items
            .into_iter()
            .map(|h| (h.memory, h.score))
            .collect())
    }

    /// Memories whose text holds every word of `query` (case-, accent- and
    /// inflection-insensitive; CJK words as substrings; the last word also as a prefix), best
    /// match first, one page of them. When no memory holds every word of a query of two or
    /// more, those holding the most of them, with a note and `some_words` set (later pages
    /// stay in that mode). User text is never read as FTS5 syntax. A query with no
    /// letter or digit but something else (`🚀`) finds memories holding it as typed, newest
    /// first, with a note; an empty query lists newest first. Scores: see `rank.rs`; 0 where
    /// nothing is ranked. Paging: see `cursor.rs`.
    pub fn search_page(&self, query: &str, filter: &MemoryFilter) -> Result<MemoryPage<Hit>> {
        let text = SearchText::parse(query);
        let category = category_key(filter);
        let print = |mode: &str, key: Option<&str>| {
            fingerprint(&[
                Some("search"),
                Some(mode),
                key,
                filter.namespace.as_deref(),
                category.as_deref(),
            ])
        };
        // Each way of searching, with the fingerprint its cursors carry.
        let mut modes: Vec<(Mode, u64)> = match &text {
            SearchText::Everything => vec![(Mode::Everything, print("all", None))],
            SearchText::Literal(literal) => vec![(
                Mode::Literal(literal.clone()),
                print("literal", Some(literal)),
            )],
            SearchText::Words { all, any } => {
                let mut modes = vec![(Mode::Ranked(all.clone()), print("words", Some(all)))];
                if let Some(any) = any {
                    modes.push((Mode::Ranked(any.clone()), print("some words", Some(any))));
                }
                modes
            }
        };
        let prints: Vec<u64> = modes.iter().map(|(_, p)| *p).collect();
        let cursor = filter
            .cursor
            .as_deref()
            .map(|token| Cursor::decode(token, Kind::Search, &prints))
            .transpose()?;
        // A later page continues in the mode of the first; a first page tries every word,
        // then (if nothing holds them all) any of them.
        if let Some(cursor) = &cursor {
            modes.retain(|(_, p)| *p == cursor.fingerprint);
        }
        let literal_note = match &text {
            SearchText::Literal(literal) => Some(format!(
                "the query has no letters or digits, so memories holding {literal:?} exactly as typed are shown, newest first"
            )),
            _ => None,
        };
        self.read(|conn| {
            let tx = conn.unchecked_transaction().context("searching memories")?;
            let snapshot = cursor.as_ref().map_or(counter(&tx), |c| Ok(c.snapshot))?;
            let generation = envelope_generation(&tx, filter)?;
            let mut rows = Vec::new();
            let mut used = 0;
            for (i, (mode, _)) in modes.iter().enumerate() {
                rows = search_rows(&tx, mode, filter, cursor.as_ref())?;
                used = i;
                if !rows.is_empty() {
                    break;
                }
            }
            let print = modes.get(used).map_or(0, |(_, p)| *p);
            let some_words = prints.len() == 2 && print == prints[1];
            let note = if some_words && !rows.is_empty() {
                Some(
                    "no memory holds every word of the query; these hold some of them, those with the most first"
                        .to_owned(),
                )
            } else {
                literal_note
            };
            let page = Page::cut(rows, filter.limit, |hit: &Hit| {
                Cursor {
                    kind: Kind::Search,
                    snapshot,
                    fingerprint: print,
                    score: hit.score,
                    id: hit.memory.id.clone(),
                }
                .encode()
            });
            Ok(MemoryPage {
                page,
                generation,
                note,
                some_words,
            })
        })
    }

    /// Replaces the body (and the category, if given) of memory `id`. With `expect`, the
    /// write happens only if the memory's namespace is still at that generation and/or the
    /// memory still at that version; otherwise nothing is written and [`Error::Conflict`] says
    /// what it is now.
    pub fn update_memory(
        &self,
        id: &str,
        body: &str,
        category: Option<&str>,
        expect: Expect,
    ) -> Result<Memory> {
        let id = check_id(id)?;
        check_body(body, self.options().max_memory_bytes)?;
        if let Some(category) = category {
            check_label("category", category)?;
        }
        self.write("updating a memory", |tx| {
            let old = select_by_id(tx, &id)?.ok_or_else(|| not_found(&id))?;
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

    /// Removes memory `id` and returns its namespace's new generation. With `expect`, as for
    /// [`Store::update_memory`].
    pub fn delete_memory(&self, id: &str, expect: Expect) -> Result<u64> {
        let id = check_id(id)?;
        self.write("deleting a memory", |tx| {
            let old = select_by_id(tx, &id)?.ok_or_else(|| not_found(&id))?;
            check_expected(&old, expect)?;
            tx.prepare_cached("DELETE FROM memories WHERE id = ?1")
                .and_then(|mut stmt| stmt.execute([&id]))
                .context("deleting a memory")?;
            let stamp = next_stamp(tx)?;
            set_namespace_generation(tx, &old.namespace, stamp)?;
            Ok(stamp)
        })
    }

    /// The generation of `namespace`: the stamp of its last write (0 if never written). It
    /// only grows, and no two writes share a value.
    pub fn memory_generation(&self, namespace: &str) -> Result<u64> {
        self.read(|conn| namespace_generation(conn, namespace))
    }
}

/// How a search finds its rows.
enum Mode {
    /// Every memory, newest first.
    Everything,
    /// Memories holding this text as typed, newest first.
    Literal(String),
    /// Memories matching this FTS5 expression, best first.
    Ranked(String),
}

/// One page (plus one row) of a search in `mode`, inside the caller's read transaction.
fn search_rows(
    conn: &Connection,
    mode: &Mode,
    filter: &MemoryFilter,
    cursor: Option<&Cursor>,
) -> Result<Vec<Hit>> {
    let mut args = Vec::new();
    let (source, ranked) = match mode {
        Mode::Ranked(fts) => {
            args.push(Value::Text(fts.clone()));
            (
                format!(
                    "(SELECT rowid AS seq, {}(memories_fts) AS score FROM memories_fts WHERE memories_fts MATCH ?) r
                     JOIN memories m ON m.seq = r.seq WHERE 1 = 1",
                    rank::NAME
                ),
                true,
            )
        }
        Mode::Literal(literal) => {
            args.push(Value::Text(literal.clone()));
            ("memories m WHERE instr(m.body, ?) > 0".to_owned(), false)
        }
        Mode::Everything => ("memories m WHERE 1 = 1".to_owned(), false),
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

/// Runs `query`; if this connection does not know the ranking function yet, registers it and
/// runs `query` again. (Read connections are pooled by the store; registering on first use
/// keeps the store's connection setup free of search details.)
fn with_rank<T>(conn: &Connection, query: impl Fn() -> rusqlite::Result<T>) -> rusqlite::Result<T> {
    match query() {
        Err(e)
            if e.to_string()
                .contains(&format!("no such function: {}", rank::NAME)) =>
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

fn decode(filter: &MemoryFilter, kind: Kind, print: u64) -> Result<Option<Cursor>> {
    filter
        .cursor
        .as_deref()
        .map(|token| Cursor::decode(token, kind, &[print]))
        .transpose()
}

/// The category as cursors remember it: categories compare ignoring ASCII case, so a cursor
/// from `--category PREF` continues `--category pref`.
fn category_key(filter: &MemoryFilter) -> Option<String> {
    filter.category.as_deref().map(str::to_ascii_lowercase)
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

/// The drift guard's checks, inside the writing transaction, against the memory as it is.
fn check_expected(current: &Memory, expect: Expect) -> Result<()> {
    if let Some(expected) = expect.generation
        && expected != current.generation
    {
        return Err(Error::Conflict {
            what: format!("generation of namespace {:?}", current.namespace),
            expected,
            found: current.generation,
        });
    }
    if let Some(expected) = expect.version
        && expected != current.version
    {
        return Err(Error::Conflict {
            what: format!("version of memory {}", current.id),
            expected,
            found: current.version,
        });
    }
    Ok(())
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
