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

use serde_json::{Map, Value as Json};

use super::PgBackend;
use super::errors::PgContext;
use super::filter::push_where;
use super::search::{indexed_text, probe_limit, search_rows};
use crate::error::Result;
use crate::memory::{
    Cursor, Expect, Expiry, Hit, Memory, MemoryChange, MemoryEvent, MemoryFilter, NamespaceInfo,
    NewMemory, Rows, SearchMode, added_event, apply_change, changed_event, check_expected,
    check_supersede, grams, later_than, next_id, not_found, removed_event, timestamp, writer_name,
};

/// The memory's columns and its namespace's generation, on aliases `m` and `n`.
pub(super) const COLUMNS: &str = "m.id, m.namespace, m.category, m.body, m.created_at, m.updated_at, m.version, coalesce(n.generation, 0), m.metadata::text, m.tags::text, m.expires_at, m.ttl_seconds, m.refresh_on_read, m.superseded_by, coalesce(nullif((SELECT e.actor FROM memory_events e WHERE e.memory_id = m.id ORDER BY e.seq DESC LIMIT 1), ''), 'local')";

/// How often writes sweep expired memories, at most.
const SWEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);
pub(super) const FROM: &str =
    "memories m LEFT JOIN memory_namespaces n ON n.namespace = m.namespace";

/// Inserts a memory row with its search vector: `$1` id, `$2` namespace, `$3` category,
/// `$4` body, `$5` grams, `$6` the indexed text, `$7` created_at, `$8` updated_at,
/// `$9` version.
pub(super) const INSERT: &str = "INSERT INTO memories
     (id, namespace, category, body, grams, search, created_at, updated_at, version)
     VALUES ($1, $2, $3, $4, $5, to_tsvector('modstate_search', $6), $7, $8, $9)";

/// Sets the issue-27 fields of a memory row: `$1` id, `$2` metadata (JSON text), `$3` tags
/// (JSON text), `$4` expires_at, `$5` ttl_seconds, `$6` refresh_on_read, `$7` superseded_by.
pub(super) const SET_MODEL: &str =
    "UPDATE memories SET metadata = $2::text::jsonb, tags = $3::text::jsonb,
     expires_at = $4, ttl_seconds = $5, refresh_on_read = $6, superseded_by = $7 WHERE id = $1";

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
///
/// Never an expired memory (as of now), a superseded one only when asked, and the `where`.
pub(super) fn push_filter(args: &mut Args, filter: &MemoryFilter) {
    let now = args.push(timestamp(SystemTime::now()));
    args.sql.push_str(&format!(
        " AND (m.expires_at IS NULL OR m.expires_at > {now}::text)"
    ));
    if !filter.include_superseded {
        args.sql.push_str(" AND m.superseded_by IS NULL");
    }
    if let Some(filter) = &filter.filter {
        push_where(args, filter);
    }
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
pub(super) fn impossible(filter: &MemoryFilter) -> bool {
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
        metadata: json_object(&r.try_get::<_, String>(first + 8).context(what)?),
        tags: serde_json::from_str(&r.try_get::<_, String>(first + 9).context(what)?)
            .unwrap_or_default(),
        expires_at: r.try_get(first + 10).context(what)?,
        ttl_seconds: r
            .try_get::<_, Option<i64>>(first + 11)
            .context(what)?
            .and_then(|t| u64::try_from(t).ok()),
        refresh_on_read: r.try_get(first + 12).context(what)?,
        superseded_by: r.try_get(first + 13).context(what)?,
        written_by: r.try_get(first + 14).context(what)?,
    })
}

/// Stored metadata text as an object.
fn json_object(text: &str) -> Map<String, Json> {
    match serde_json::from_str(text) {
        Ok(Json::Object(map)) => map,
        _ => Map::new(),
    }
}

/// The memory with `id` unless it has expired.
fn select_by_id(conn: &mut impl GenericClient, id: &str) -> Result<Option<Memory>> {
    let now = timestamp(SystemTime::now());
    conn.query_opt(
        &format!(
            "SELECT {COLUMNS} FROM {FROM} WHERE m.id = $1 AND (m.expires_at IS NULL OR m.expires_at > $2::text)"
        ),
        &[&id, &now],
    )
    .context("reading a memory")?
    .map(|r| memory_from_row(&r, 0))
    .transpose()
}

/// Writes the issue-27 fields of `m` to its row.
pub(super) fn set_model(tx: &mut Transaction<'_>, m: &Memory) -> Result<()> {
    tx.execute(
        SET_MODEL,
        &[
            &m.id,
            &Json::Object(m.metadata.clone()).to_string(),
            &serde_json::to_string(&m.tags).unwrap_or_else(|_| "[]".into()),
            &m.expires_at,
            &m.ttl_seconds.map(stamp_value),
            &m.refresh_on_read,
            &m.superseded_by,
        ],
    )
    .context("writing a memory's metadata and expiry")?;
    Ok(())
}

/// Records a history event inside the writing transaction.
pub(super) fn insert_event(tx: &mut Transaction<'_>, event: &MemoryEvent) -> Result<()> {
    tx.execute(
        "INSERT INTO memory_events (memory_id, namespace, action, version, old_text, new_text, changes, actor, at)
         VALUES ($1, $2, $3, $4, $5, $6, $7::text::jsonb, $8, $9)",
        &[
            &event.memory_id,
            &event.namespace,
            &event.action,
            &stamp_value(event.version),
            &event.old_text,
            &event.new_text,
            &Json::Object(event.changes.clone()).to_string(),
            &event.actor,
            &event.at,
        ],
    )
    .context("recording a memory's history")?;
    Ok(())
}

pub(super) fn event_from_row(r: &Row) -> Result<MemoryEvent> {
    let what = "reading a memory's history";
    let version: i64 = r.try_get(3).context(what)?;
    Ok(MemoryEvent {
        memory_id: r.try_get(0).context(what)?,
        namespace: r.try_get(1).context(what)?,
        action: r.try_get(2).context(what)?,
        version: u64::try_from(version).unwrap_or(0),
        old_text: r.try_get(4).context(what)?,
        new_text: r.try_get(5).context(what)?,
        changes: json_object(&r.try_get::<_, String>(6).context(what)?),
        actor: r.try_get(7).context(what)?,
        at: r.try_get(8).context(what)?,
    })
}

/// The default expiry of new memories in `namespace`.
fn default_expiry(tx: &mut Transaction<'_>, namespace: &str) -> Result<Expiry> {
    let row = tx
        .query_opt(
            "SELECT default_ttl_seconds FROM memory_namespaces WHERE namespace = $1",
            &[&namespace],
        )
        .context("reading a namespace's default expiry")?;
    let ttl: Option<i64> = match row {
        Some(r) => r
            .try_get(0)
            .context("reading a namespace's default expiry")?,
        None => None,
    };
    Ok(match ttl.and_then(|t| u64::try_from(t).ok()) {
        Some(secs) if secs > 0 => Expiry::After(secs),
        _ => Expiry::Never,
    })
}

/// Sweeps if the last sweep was more than [`SWEEP_INTERVAL`] ago (inside a write that holds
/// the counter's row lock, so sweeps take turns with other memory writes).
fn maybe_sweep(tx: &mut Transaction<'_>, now: SystemTime) -> Result<()> {
    let due = timestamp(now - SWEEP_INTERVAL);
    let last: String = tx
        .query_one("SELECT last_at FROM memory_sweep WHERE singleton = 0", &[])
        .context("reading when memories were last swept")?
        .try_get(0)
        .context("reading when memories were last swept")?;
    if last < due {
        sweep(tx, &timestamp(now))?;
    }
    Ok(())
}

/// Removes the memories expired at `now`, each with an `expire` event.
fn sweep(tx: &mut Transaction<'_>, now: &str) -> Result<u64> {
    let expired = tx
        .query(
            &format!(
                "SELECT {COLUMNS} FROM {FROM} WHERE m.expires_at IS NOT NULL AND m.expires_at <= $1::text"
            ),
            &[&now],
        )
        .context("sweeping expired memories")?
        .iter()
        .map(|r| memory_from_row(r, 0))
        .collect::<Result<Vec<_>>>()?;
    for old in &expired {
        tx.execute("DELETE FROM memories WHERE id = $1", &[&old.id])
            .context("sweeping expired memories")?;
        insert_event(tx, &removed_event(old, "expire", old.version, now, ""))?;
    }
    tx.execute(
        "UPDATE memory_sweep SET last_at = $1 WHERE singleton = 0",
        &[&now],
    )
    .context("recording the sweep")?;
    Ok(expired.len() as u64)
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
pub(super) fn envelope_generation(
    tx: &mut Transaction<'_>,
    filter: &MemoryFilter,
) -> Result<Option<u64>> {
    filter
        .namespace
        .as_deref()
        .map(|namespace| namespace_generation(tx, namespace))
        .transpose()
}

impl PgBackend {
    pub(crate) fn add_memories_pg(
        &self,
        memories: Vec<NewMemory>,
        writer: &str,
    ) -> Result<Vec<Memory>> {
        self.write("adding memories", |tx| {
            // The counter's row lock first: ids then follow commit order.
            let mut stamp = Some(next_stamp(tx)?);
            maybe_sweep(tx, SystemTime::now())?;
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
                let now_at = SystemTime::now();
                let now = timestamp(now_at);
                let grams = grams(&m.body);
                let text = indexed_text(&m.body, &grams);
                let expiry = match m.expiry.clone() {
                    Some(expiry) => expiry,
                    None => default_expiry(tx, &m.namespace)?,
                };
                let (expires_at, ttl_seconds) = expiry.resolve(now_at);
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
                let memory = Memory {
                    id: id.clone(),
                    namespace: m.namespace.clone(),
                    category: m.category,
                    body: m.body,
                    created_at: now.clone(),
                    updated_at: now.clone(),
                    version: stamp,
                    generation: stamp,
                    metadata: m.metadata,
                    tags: m.tags,
                    expires_at,
                    ttl_seconds,
                    refresh_on_read: m.refresh_on_read && ttl_seconds.is_some(),
                    superseded_by: None,
                    written_by: writer_name(writer),
                };
                set_model(tx, &memory)?;
                insert_event(tx, &added_event(&memory, writer, &m.supersedes))?;
                for old_id in &m.supersedes {
                    let old = select_by_id(tx, old_id)?.ok_or_else(|| not_found(old_id))?;
                    check_supersede(&old, &memory, m.expect)?;
                    let stamp = next_stamp(tx)?;
                    let mut new = old.clone();
                    new.superseded_by = Some(id.clone());
                    new.version = stamp;
                    new.updated_at = later_than(&old.updated_at);
                    tx.execute(
                        "UPDATE memories SET superseded_by = $1, version = $2, updated_at = $3 WHERE id = $4",
                        &[&id, &stamp_value(stamp), &new.updated_at, &old.id],
                    )
                    .context("marking a superseded memory")?;
                    set_namespace_generation(tx, &old.namespace, stamp)?;
                    last_stamp.insert(old.namespace.clone(), stamp);
                    insert_event(tx, &changed_event(&old, &new, "supersede", writer))?;
                }
                newest = Some(id);
                added.push(memory);
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
        change: &MemoryChange,
        expect: Expect,
        writer: &str,
    ) -> Result<Memory> {
        self.write("updating a memory", |tx| {
            // The counter's row lock first: the row read next is the latest committed one,
            // and no other memory write commits until this one has.
            let stamp = next_stamp(tx)?;
            let old = select_by_id(tx, id)?.ok_or_else(|| not_found(id))?;
            check_expected(&old, expect)?;
            let mut new = apply_change(&old, change, stamp, later_than(&old.updated_at));
            new.written_by = crate::memory::writer_name(writer);
            let grams = grams(&new.body);
            let text = indexed_text(&new.body, &grams);
            tx.execute(
                "UPDATE memories SET body = $1, grams = $2, search = to_tsvector('modstate_search', $3),
                     category = $4, updated_at = $5, version = $6
                 WHERE id = $7",
                &[
                    &new.body,
                    &grams,
                    &text,
                    &new.category,
                    &new.updated_at,
                    &stamp_value(stamp),
                    &id,
                ],
            )
            .context("updating a memory")?;
            set_model(tx, &new)?;
            set_namespace_generation(tx, &old.namespace, stamp)?;
            insert_event(tx, &changed_event(&old, &new, "update", writer))?;
            Ok(new)
        })
    }

    pub(crate) fn delete_memory_pg(&self, id: &str, expect: Expect, writer: &str) -> Result<u64> {
        self.write("deleting a memory", |tx| {
            // The counter's row lock first, as for an update.
            let stamp = next_stamp(tx)?;
            let old = select_by_id(tx, id)?.ok_or_else(|| not_found(id))?;
            check_expected(&old, expect)?;
            tx.execute("DELETE FROM memories WHERE id = $1", &[&id])
                .context("deleting a memory")?;
            set_namespace_generation(tx, &old.namespace, stamp)?;
            let now = timestamp(SystemTime::now());
            insert_event(tx, &removed_event(&old, "delete", stamp, &now, writer))?;
            Ok(stamp)
        })
    }

    /// Never waits: rows a writer holds are skipped (`FOR UPDATE SKIP LOCKED`), and the
    /// counter row is not touched (a refresh changes no version), so memory writers and this
    /// do not queue on each other.
    pub(crate) fn refresh_expiry_pg(
        &self,
        due: &[(String, String)],
        now: &str,
    ) -> Result<Vec<String>> {
        let now = now.to_owned();
        self.write("refreshing expiries", |tx| {
            let mut done = Vec::new();
            for (id, pushed) in due {
                let n = tx
                    .execute(
                        "UPDATE memories SET expires_at = $1 WHERE id IN (
                             SELECT id FROM memories
                             WHERE id = $2 AND refresh_on_read AND expires_at IS NOT NULL
                               AND expires_at > $3::text AND expires_at < $1::text
                             FOR UPDATE SKIP LOCKED)",
                        &[pushed, id, &now],
                    )
                    .context("refreshing expiries")?;
                if n > 0 {
                    done.push(id.clone());
                }
            }
            Ok(done)
        })
    }

    pub(crate) fn memory_history_pg(&self, id: &str) -> Result<Vec<MemoryEvent>> {
        let mut conn = self.connection()?;
        conn.query(
            "SELECT memory_id, namespace, action, version, old_text, new_text, changes::text, actor, at
             FROM memory_events WHERE memory_id = $1 ORDER BY seq",
            &[&id],
        )
        .context("reading a memory's history")?
        .iter()
        .map(event_from_row)
        .collect()
    }

    pub(crate) fn prune_history_pg(&self, cutoff: &str) -> Result<u64> {
        self.write("pruning memory history", |tx| {
            tx.execute("DELETE FROM memory_events WHERE at < $1::text", &[&cutoff])
                .context("pruning memory history")
        })
    }

    pub(crate) fn sweep_expired_pg(&self, now: &str) -> Result<u64> {
        self.write("sweeping expired memories", |tx| {
            // Take turns with memory writers, as every memory write does.
            next_stamp(tx)?;
            sweep(tx, now)
        })
    }

    pub(crate) fn namespaces_pg(&self, prefix: &str, now: &str) -> Result<Vec<NamespaceInfo>> {
        if prefix.contains('\0') {
            return Ok(Vec::new());
        }
        let mut conn = self.connection()?;
        conn.query(
            "SELECT n.namespace, n.generation, n.default_ttl_seconds,
                    (SELECT count(*) FROM memories m WHERE m.namespace = n.namespace
                       AND (m.expires_at IS NULL OR m.expires_at > $2::text))
             FROM memory_namespaces n
             WHERE left(n.namespace, length($1::text)) = $1::text
             ORDER BY n.namespace",
            &[&prefix, &now],
        )
        .context("listing namespaces")?
        .iter()
        .map(|r| {
            let what = "listing namespaces";
            let generation: i64 = r.try_get(1).context(what)?;
            let ttl: Option<i64> = r.try_get(2).context(what)?;
            let count: i64 = r.try_get(3).context(what)?;
            Ok(NamespaceInfo {
                namespace: r.try_get(0).context(what)?,
                memories: u64::try_from(count).unwrap_or(0),
                generation: u64::try_from(generation).unwrap_or(0),
                default_ttl_seconds: ttl.and_then(|t| u64::try_from(t).ok()),
            })
        })
        .collect()
    }

    pub(crate) fn set_namespace_ttl_pg(&self, namespace: &str, seconds: Option<u64>) -> Result<()> {
        self.write("setting a namespace's default expiry", |tx| {
            tx.execute(
                "INSERT INTO memory_namespaces (namespace, generation, default_ttl_seconds)
                 VALUES ($1, 0, $2)
                 ON CONFLICT (namespace) DO UPDATE SET default_ttl_seconds = excluded.default_ttl_seconds",
                &[&namespace, &seconds.map(stamp_value)],
            )
            .context("setting a namespace's default expiry")?;
            Ok(())
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
