//! The memories tables in SQLite: the rows, the FTS5 index (body and CJK bigrams, ranked by
//! `modstate_rank`), and the stamp counter of the drift guard.

use std::cmp::Ordering;
use std::time::SystemTime;

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params, params_from_iter};

use rusqlite::TransactionBehavior;
use serde_json::{Map, Value as Json};

use super::stamps::{counter, namespace_generation, next_stamp, set_namespace_generation};
use super::{SqliteBackend, filter, fts, rank};
use crate::error::{Error, Result};
use crate::memory::{
    Cursor, Expect, Expiry, Hit, Memory, MemoryChange, MemoryEvent, MemoryFilter, NamespaceInfo,
    NewMemory, QueryPhrase, Ranking, Rows, SearchMode, Statistics, check_expected, grams,
    later_than, next_id, not_found, timestamp,
};
use crate::memory::{
    added_event, apply_change, changed_event, check_supersede, removed_event, writer_name,
};
use crate::store::sqlite::errors::SqlContext;

/// The memory's columns and its namespace's generation, on aliases `m` and `n`.
pub(super) const COLUMNS: &str = "m.id, m.namespace, m.category, m.body, m.created_at, m.updated_at, m.version, coalesce(n.generation, 0), m.metadata, m.tags, m.expires_at, m.ttl_seconds, m.refresh_on_read, m.superseded_by, coalesce(nullif((SELECT e.actor FROM memory_events e WHERE e.memory_id = m.id ORDER BY e.seq DESC LIMIT 1), ''), 'local')";

/// The page cache (KiB) of a read connection that has searched words: room for the word
/// index (about 70 bytes a memory), its lengths and the rows a search joins, for some 300,000
/// memories. SQLite's default, 2 MiB, holds less than a third of the index of 100,000, so with
/// other searches in between each one read most of its lists back from the file (5–9% of a
/// question's time, 20–25% of a short query's; BENCHMARKS.md, "A floor that rises while a
/// round reads").
const SEARCH_CACHE_KIB: i64 = 32 * 1024;

/// The `seq` of every memory no read shows at `?1` (now): expired or superseded. Written as
/// two selects, each through its partial index, because SQLite answers the same condition
/// written with OR by scanning the whole table (30 ms at 100,000 memories, on every search).
const HIDDEN_SEQS: &str =
    "SELECT seq FROM memories WHERE expires_at IS NOT NULL AND expires_at <= ?1
       AND superseded_by IS NULL
     UNION ALL SELECT seq FROM memories WHERE superseded_by IS NOT NULL";

/// How often writes sweep expired memories, at most.
const SWEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);
pub(super) const FROM: &str =
    "memories m LEFT JOIN memory_namespaces n ON n.namespace = m.namespace";

impl SqliteBackend {
    pub(crate) fn add_memories_sql(
        &self,
        memories: Vec<NewMemory>,
        writer: &str,
    ) -> Result<Vec<Memory>> {
        self.write_memories("adding memories", |tx| {
            let start = SystemTime::now();
            maybe_sweep(tx, start)?;
            let mut newest = newest_id(tx)?;
            let mut added = Vec::with_capacity(memories.len());
            for m in memories {
                let stamp = next_stamp(tx)?;
                let id = next_id(newest.as_deref());
                let now_at = SystemTime::now();
                let now = timestamp(now_at);
                let expiry = match m.expiry.clone() {
                    Some(expiry) => expiry,
                    None => default_expiry(tx, &m.namespace)?,
                };
                let (expires_at, ttl_seconds) = expiry.resolve(now_at);
                let refresh = m.refresh_on_read && ttl_seconds.is_some();
                let metadata = Json::Object(m.metadata.clone()).to_string();
                let tags = serde_json::to_string(&m.tags).unwrap_or_else(|_| "[]".into());
                tx.prepare_cached(
                    "INSERT INTO memories (id, namespace, category, body, grams, created_at, updated_at, version,
                                           metadata, tags, expires_at, ttl_seconds, refresh_on_read)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                )
                .and_then(|mut stmt| {
                    stmt.execute(params![
                        id,
                        m.namespace,
                        m.category,
                        m.body,
                        grams(&m.body),
                        now,
                        stamp as i64,
                        metadata,
                        tags,
                        expires_at,
                        ttl_seconds.map(|t| t as i64),
                        refresh
                    ])
                })
                .context("adding a memory")?;
                set_namespace_generation(tx, &m.namespace, stamp)?;
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
                    refresh_on_read: refresh,
                    superseded_by: None,
                    written_by: writer_name(writer),
                };
                insert_event(tx, &added_event(&memory, writer, &m.supersedes))?;
                for old_id in &m.supersedes {
                    let old = select_by_id(tx, old_id, &now)?.ok_or_else(|| not_found(old_id))?;
                    check_supersede(&old, &memory, m.expect)?;
                    let stamp = next_stamp(tx)?;
                    let mut new = old.clone();
                    new.superseded_by = Some(id.clone());
                    new.version = stamp;
                    new.updated_at = later_than(&old.updated_at);
                    tx.prepare_cached(
                        "UPDATE memories SET superseded_by = ?1, version = ?2, updated_at = ?3 WHERE id = ?4",
                    )
                    .and_then(|mut stmt| stmt.execute(params![id, stamp as i64, new.updated_at, old.id]))
                    .context("marking a superseded memory")?;
                    set_namespace_generation(tx, &old.namespace, stamp)?;
                    insert_event(tx, &changed_event(&old, &new, "supersede", writer))?;
                }
                newest = Some(id);
                added.push(memory);
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
        let now = timestamp(SystemTime::now());
        self.read(|conn| select_by_id(conn, id, &now))
    }

    pub(crate) fn list_memories_sql(
        &self,
        filter: &MemoryFilter,
        cursor: Option<&Cursor>,
    ) -> Result<Rows<Memory>> {
        let mut sql = format!("SELECT {COLUMNS} FROM {FROM} WHERE 1 = 1");
        let mut args = Vec::new();
        push_filter(&mut sql, &mut args, filter, &timestamp(SystemTime::now()));
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
        let now = timestamp(SystemTime::now());
        self.read(|conn| {
            super::widen_page_cache(conn, SEARCH_CACHE_KIB).context("searching memories")?;
            let tx = conn.unchecked_transaction().context("searching memories")?;
            let snapshot = cursor.map_or_else(|| counter(&tx), |c| Ok(c.snapshot))?;
            let generation = envelope_generation(&tx, filter)?;
            let statistics = match (mode, cursor) {
                (SearchMode::Ranked(_), Some(cursor)) => cursor.statistics.clone(),
                (SearchMode::Ranked(plan), None) => statistics(&tx, plan, &now)?,
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
        change: &MemoryChange,
        expect: Expect,
        writer: &str,
    ) -> Result<Memory> {
        self.write_memories("updating a memory", |tx| {
            let now = timestamp(SystemTime::now());
            let old = select_by_id(tx, id, &now)?.ok_or_else(|| not_found(id))?;
            check_expected(&old, expect)?;
            let stamp = next_stamp(tx)?;
            let mut new = apply_change(&old, change, stamp, later_than(&old.updated_at));
            new.written_by = crate::memory::writer_name(writer);
            tx.prepare_cached(
                "UPDATE memories SET body = ?1, grams = ?2, category = ?3, updated_at = ?4, version = ?5,
                     metadata = ?6, tags = ?7, expires_at = ?8, ttl_seconds = ?9, refresh_on_read = ?10
                 WHERE id = ?11",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    new.body,
                    grams(&new.body),
                    new.category,
                    new.updated_at,
                    stamp as i64,
                    Json::Object(new.metadata.clone()).to_string(),
                    serde_json::to_string(&new.tags).unwrap_or_else(|_| "[]".into()),
                    new.expires_at,
                    new.ttl_seconds.map(|t| t as i64),
                    new.refresh_on_read,
                    id
                ])
            })
            .context("updating a memory")?;
            set_namespace_generation(tx, &old.namespace, stamp)?;
            insert_event(tx, &changed_event(&old, &new, "update", writer))?;
            Ok(new)
        })
    }

    pub(crate) fn delete_memory_sql(&self, id: &str, expect: Expect, writer: &str) -> Result<u64> {
        self.write_memories("deleting a memory", |tx| {
            let now = timestamp(SystemTime::now());
            let old = select_by_id(tx, id, &now)?.ok_or_else(|| not_found(id))?;
            check_expected(&old, expect)?;
            tx.prepare_cached("DELETE FROM memories WHERE id = ?1")
                .and_then(|mut stmt| stmt.execute([id]))
                .context("deleting a memory")?;
            let stamp = next_stamp(tx)?;
            set_namespace_generation(tx, &old.namespace, stamp)?;
            insert_event(tx, &removed_event(&old, "delete", stamp, &now, writer))?;
            Ok(stamp)
        })
    }

    /// Never waits: the write lock and the writer connection are only tried, and SQLite's
    /// busy handler is not reached because holding the write lock means no other writer.
    pub(crate) fn refresh_expiry_sql(
        &self,
        due: &[(String, String)],
        now: &str,
    ) -> Result<Vec<String>> {
        if !self.writable {
            return Ok(Vec::new());
        }
        let Some(_write) = self.locks().try_write()? else {
            return Ok(Vec::new());
        };
        let Some(mut conn) = self.try_writer()? else {
            return Ok(Vec::new());
        };
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .context("refreshing expiries")?;
        let mut done = Vec::new();
        {
            let mut stmt = tx
                .prepare_cached(
                    "UPDATE memories SET expires_at = ?1
                     WHERE id = ?2 AND refresh_on_read AND expires_at IS NOT NULL
                       AND expires_at > ?3 AND expires_at < ?1",
                )
                .context("refreshing expiries")?;
            for (id, pushed) in due {
                if stmt
                    .execute(params![pushed, id, now])
                    .context("refreshing expiries")?
                    > 0
                {
                    done.push(id.clone());
                }
            }
        }
        tx.commit().context("refreshing expiries")?;
        Ok(done)
    }

    pub(crate) fn memory_history_sql(&self, id: &str) -> Result<Vec<MemoryEvent>> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT memory_id, namespace, action, version, old_text, new_text, changes, actor, at
                     FROM memory_events WHERE memory_id = ?1 ORDER BY seq",
                )
                .context("reading a memory's history")?;
            let rows = stmt
                .query_map([id], event_from_row)
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .context("reading a memory's history")?;
            Ok(rows)
        })
    }

    pub(crate) fn prune_history_sql(&self, cutoff: &str) -> Result<u64> {
        self.write("pruning memory history", |tx| {
            let n = tx
                .execute("DELETE FROM memory_events WHERE at < ?1", [cutoff])
                .context("pruning memory history")?;
            Ok(n as u64)
        })
    }

    pub(crate) fn sweep_expired_sql(&self, now: &str) -> Result<u64> {
        self.write("sweeping expired memories", |tx| sweep(tx, now))
    }

    pub(crate) fn namespaces_sql(&self, prefix: &str, now: &str) -> Result<Vec<NamespaceInfo>> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT n.namespace, n.generation, n.default_ttl_seconds,
                            (SELECT count(*) FROM memories m WHERE m.namespace = n.namespace
                               AND (m.expires_at IS NULL OR m.expires_at > ?2))
                     FROM memory_namespaces n
                     WHERE substr(n.namespace, 1, length(?1)) = ?1
                     ORDER BY n.namespace",
                )
                .context("listing namespaces")?;
            let rows = stmt
                .query_map(params![prefix, now], |r| {
                    let generation: i64 = r.get(1)?;
                    let ttl: Option<i64> = r.get(2)?;
                    let count: i64 = r.get(3)?;
                    Ok(NamespaceInfo {
                        namespace: r.get(0)?,
                        memories: u64::try_from(count).unwrap_or(0),
                        generation: u64::try_from(generation).unwrap_or(0),
                        default_ttl_seconds: ttl.and_then(|t| u64::try_from(t).ok()),
                    })
                })
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .context("listing namespaces")?;
            Ok(rows)
        })
    }

    pub(crate) fn set_namespace_ttl_sql(
        &self,
        namespace: &str,
        seconds: Option<u64>,
    ) -> Result<()> {
        self.write("setting a namespace's default expiry", |tx| {
            tx.execute(
                "INSERT INTO memory_namespaces (namespace, generation, default_ttl_seconds)
                 VALUES (?1, 0, ?2)
                 ON CONFLICT (namespace) DO UPDATE SET default_ttl_seconds = excluded.default_ttl_seconds",
                params![namespace, seconds.map(|s| s as i64)],
            )
            .context("setting a namespace's default expiry")?;
            Ok(())
        })
    }

    pub(crate) fn memory_generation_sql(&self, namespace: &str) -> Result<u64> {
        self.read(|conn| namespace_generation(conn, namespace))
    }
}

/// The collection statistics of a ranked search as of the caller's read transaction, or
/// `None` when no memory holds any of its phrases: the index's rows and tokens, and each scored
/// term's document frequency (FTS5 counts the matches of a MATCH without reading the rows).
///
/// Expired and superseded memories, which no read shows, are left out of the count of
/// memories and of each term's: they are found through their partial indexes (none at all
/// costs one index probe), and the totals function skips them as it walks each phrase's rows.
/// The index keeps no per-row length outside a full-text query, so their share of the tokens
/// is taken off at the average length.
fn statistics(conn: &Connection, plan: &Ranking, now: &str) -> Result<Option<Statistics>> {
    if plan.phrases.is_empty() {
        return Ok(None);
    }
    // The memories no read shows, sorted, for the totals function to leave out of each
    // phrase's count as it walks the phrase's rows.
    let mut hidden: Vec<i64> = conn
        .prepare_cached(HIDDEN_SEQS)
        .and_then(|mut stmt| stmt.query_map([now], |r| r.get(0))?.collect())
        .context("reading the search statistics")?;
    hidden.sort_unstable();
    hidden.dedup();
    let hidden_seqs: Vec<u8> = hidden.iter().flat_map(|seq| seq.to_le_bytes()).collect();
    let totals: Option<String> = with_rank(conn, || {
        conn.prepare_cached(&format!(
            "SELECT {}(memories_fts, ?2) FROM memories_fts WHERE memories_fts MATCH ?1 LIMIT 1",
            rank::TOTALS
        ))?
        .query_row(params![fts::any(&plan.phrases), hidden_seqs], |r| r.get(0))
        .optional()
    })
    .context("reading the search statistics")?;
    let Some(totals) = totals else {
        return Ok(None);
    };
    let mut numbers = totals.split(',').map(str::parse::<u64>);
    let (Some(Ok(memories)), Some(Ok(tokens))) = (numbers.next(), numbers.next()) else {
        return Err(Error::Integrity(format!(
            "the search statistics {totals:?} are not counts"
        )));
    };
    let counted = numbers.collect::<std::result::Result<Vec<u64>, _>>().ok();
    let Some(counted) = counted.filter(|c| c.len() == plan.phrases.len()) else {
        return Err(Error::Integrity(format!(
            "the search statistics {totals:?} do not count every phrase"
        )));
    };
    let hidden = u64::try_from(hidden.len()).unwrap_or(0).min(memories);
    if hidden == memories {
        return Ok(None);
    }
    let tokens = tokens.saturating_sub(
        u64::try_from(u128::from(tokens) * u128::from(hidden) / u128::from(memories.max(1)))
            .unwrap_or(tokens),
    );
    let memories = memories - hidden;
    Ok(Some(Statistics {
        memories,
        tokens,
        frequencies: counted,
    }))
}

/// One page (plus one row) of a search in `mode`, inside the caller's read transaction; a
/// ranked one scored under `statistics`.
///
/// A ranked page with a limit is found in up to three rounds, each exact: the answer is
/// always the page cut from every memory holding any word scored (a search without a limit,
/// which is how a test checks it):
/// 1. the memories holding every term (FTS5 intersects its lists without reading the others):
///    when more than a page of them pass the filter, the page's last score among them is a
///    floor the real page's last score cannot be below. If it beats what any memory lacking a
///    term could reach (`Scorer::bound`), this is the page;
/// 2. the memories that could still reach the floor by which terms they hold: those holding
///    one of the weightiest (rarest) terms, the fewest such that the others together cannot
///    reach it (MaxScore, as Lucene and tantivy prune), and every term that a memory cannot
///    lack and reach it. Without a floor, the fewest weightiest terms that could score less
///    than the others do, and the page is kept only if the others cannot reach its last score;
/// 3. otherwise every memory holding any word.
///
/// In every round the ranking function reads matches from FTS5's position lists, and with a
/// floor it skips, unscored and without reading its length, a memory whose terms or whose
/// matches cannot reach it (`rank.rs`). That is what keeps a question's common words cheap:
/// few memories holding "owns" or "every" can reach the page of "Who owns the billing cache
/// and is on call every Friday?". The floor rises while a round reads its rows: starting from
/// the last round's, it is raised to the round's own page's last score as soon as that many
/// rows passed the filter (`pruned_page`), so even a one-word query, which has no rounds to
/// prune by, scores and joins only the rows that could still make the page.
///
/// What a round costs is mostly FTS5 walking the lists of the phrases in its expression, once
/// per time a phrase appears in it, and calling the ranking function on each row it matches;
/// the expressions are written so that each phrase appears once where it can (see
/// `candidates` below), and the function rejects a row from which terms it holds before
/// reading anything else (BENCHMARKS.md, "Issue 24, item 5").
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
    let all_phrases = fts::any(&plan.phrases);
    // Without a limit every candidate is on the page: no pruning.
    let Some(limit) = filter.limit else {
        let text = scorer.encode();
        return page(
            conn,
            Source::Ranked(&text, &all_phrases, None),
            filter,
            cursor,
        );
    };
    let wanted = limit.saturating_add(1);
    let order = scorer.terms_by_weight();
    let last = |rows: &[Hit]| rows.get(wanted - 1).map(|hit| hit.score);
    // The bound of a memory holding every term but `gone`.
    let without = |gone: &[usize]| {
        let others: Vec<usize> = order
            .iter()
            .copied()
            .filter(|t| !gone.contains(t))
            .collect();
        scorer.bound(&others)
    };
    // Below `floor` for sure, with the margin the ranking function leaves.
    let below = |bound: f64, floor: f64| bound < floor - 1e-9 * floor.abs().max(1.0);
    // The memories holding a term of each clause (each clause a group of the expression, the
    // groups AND-ed), each scored by every query word: FTS5 reports the matches of a phrase
    // only if the expression names it, so every phrase is named, each once where it can be.
    // The expression stays groups of phrases OR-ed under one AND: a phrase under an AND
    // inside an OR may be reported absent from a row that holds it (FTS5 moves an AND's
    // lists past rows the AND does not match).
    let candidates = |clauses: &[Vec<usize>], floor: f64| {
        // A clause holding another is implied by it: left out, as is a repeated one.
        let holds = |big: &Vec<usize>, small: &Vec<usize>| small.iter().all(|t| big.contains(t));
        let mut kept: Vec<&Vec<usize>> = Vec::new();
        for clause in clauses {
            let implied = clauses
                .iter()
                .any(|other| other.len() < clause.len() && holds(clause, other));
            if !implied && !kept.iter().any(|k| holds(k, clause) && holds(clause, k)) {
                kept.push(clause);
            }
        }
        let mut reported: Vec<&QueryPhrase> = Vec::new();
        let mut groups = Vec::new();
        for clause in &kept {
            let forms: Vec<_> = clause.iter().flat_map(|&t| plan.forms_of(t)).collect();
            reported.extend(forms.iter().copied());
            groups.push(format!("({})", fts::any(forms)));
        }
        // Every phrase must be in the expression for FTS5 to report its matches. Phrases in no
        // clause are a clause of their own when a memory holding none of them cannot reach the
        // floor; otherwise they join the rarest clause's, which every row matched already holds
        // (that clause's lists are walked twice).
        let missing: Vec<&QueryPhrase> = plan
            .phrases
            .iter()
            .filter(|p| !reported.iter().any(|r| std::ptr::eq(*r, *p)))
            .collect();
        let mut missing_terms: Vec<usize> = missing.iter().map(|p| p.of).collect();
        missing_terms.sort_unstable();
        missing_terms.dedup();
        if !missing.is_empty() && below(without(&missing_terms), floor) {
            reported.extend(missing.iter().copied());
            groups.push(format!("({})", fts::any(missing)));
        } else if !missing.is_empty() {
            let weight = |clause: &Vec<usize>| -> u64 {
                plan.phrases
                    .iter()
                    .zip(&statistics.frequencies)
                    .filter(|(p, _)| clause.contains(&p.of))
                    .map(|(_, df)| *df)
                    .sum()
            };
            let forms: Vec<&QueryPhrase> = match kept.iter().min_by_key(|c| weight(c)) {
                Some(rarest) => missing
                    .iter()
                    .copied()
                    .chain(rarest.iter().flat_map(|&t| plan.forms_of(t)))
                    .collect(),
                None => missing,
            };
            reported.extend(forms.iter().copied());
            groups.push(format!("({})", fts::any(forms)));
        }
        let expression = groups.join(" AND ");
        let text = plan.scorer_for(statistics, reported).encode();
        page(
            conn,
            Source::Ranked(&text, &expression, Some(floor)),
            filter,
            cursor,
        )
    };

    // 1. Every term some memory holds (a term none held when the statistics were read is
    // left out of the search, not of the bound below).
    let mut floor = f64::NEG_INFINITY;
    let present: Vec<usize> = order
        .iter()
        .copied()
        .filter(|&term| {
            plan.phrases
                .iter()
                .zip(&statistics.frequencies)
                .any(|(phrase, &df)| phrase.of == term && df > 0)
        })
        .collect();
    if present.len() > 1 {
        let clauses: Vec<Vec<usize>> = present.iter().map(|&t| vec![t]).collect();
        let rows = candidates(&clauses, floor)?;
        if let Some(score) = last(&rows) {
            // A memory not among them lacks one of these terms.
            let lacking_one = present.iter().map(|&t| without(&[t])).fold(0.0, f64::max);
            if score > lacking_one {
                return Ok(rows);
            }
            floor = score;
        }
    }

    // 2. The memories that could reach the floor by their terms.
    let split = if floor > f64::NEG_INFINITY {
        (1..order.len()).find(|&n| below(scorer.bound(&order[n..]), floor))
    } else {
        (1..order.len()).find(|&n| scorer.bound(&order[n..]) < scorer.bound(&order[..n]))
    };
    if let Some(split) = split {
        let (searched, rest) = order.split_at(split);
        let mut clauses = vec![searched.to_vec()];
        if floor > f64::NEG_INFINITY {
            // A term no memory can lack and reach the floor is required outright: its list
            // is one more for FTS5 to walk, but it leaves out every memory lacking it before
            // the ranking function is called. (Required pairs, "a or b", were tried too: each
            // costs FTS5 two more lists to walk, more than the calls they save.)
            for &a in &order {
                if below(without(&[a]), floor) {
                    clauses.push(vec![a]);
                }
            }
        }
        let rows = candidates(&clauses, floor)?;
        if let Some(score) = last(&rows) {
            if score > scorer.bound(rest) {
                return Ok(rows);
            }
            floor = floor.max(score);
        }
    }

    // 3. Every memory holding any word.
    let text = scorer.encode();
    page(
        conn,
        Source::Ranked(&text, &all_phrases, Some(floor)),
        filter,
        cursor,
    )
}

/// What a page is read from.
enum Source<'a> {
    /// Ranked: the scorer's text, the MATCH expression, and the floor below which a row that
    /// cannot reach it is left out unscored (`rank.rs`; minus infinity for none yet), raised
    /// while the page is read. `None` scores every row from FTS5's instance list, as before
    /// pruning existed: the reference.
    Ranked(&'a str, &'a str, Option<f64>),
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
    let mut rising = None;
    let (source, ranked) = match source {
        Source::Ranked(scorer, expression, floor) => {
            args.push(Value::Text(scorer.to_owned()));
            let (floor_arg, kept) = match (floor, filter.limit) {
                (Some(floor), Some(limit)) => {
                    let floor = rank::RisingFloor::new(floor);
                    args.push(Value::Integer(floor.id()));
                    rising = Some((floor, limit.saturating_add(1)));
                    (", ?", " AND r.score IS NOT NULL")
                }
                _ => ("", ""),
            };
            args.push(Value::Text(expression.to_owned()));
            (
                format!(
                    "(SELECT rowid AS seq, {}(memories_fts, ?{floor_arg}) AS score FROM memories_fts WHERE memories_fts MATCH ?) r
                     JOIN memories m ON m.seq = r.seq WHERE 1 = 1{kept}",
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
    push_filter(&mut inner, &mut args, filter, &timestamp(SystemTime::now()));
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
    if let Some((floor, wanted)) = &rising {
        return pruned_page(conn, &inner, &args, floor, *wanted);
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

/// The best `wanted` rows of a pruned ranked read, best first (score, then id, descending).
///
/// `candidates` yields (seq, score, id) in index order, unsorted: every row the ranking
/// function found able to reach `floor` that passed the filter and the cursor. The best
/// `wanted` so far are kept, and each time they are that many their last score raises the
/// floor: a later row below it cannot be on the page, so the function skips it unscored and
/// SQLite never joins it with its memory. Then the winners' memories are read.
fn pruned_page(
    conn: &Connection,
    candidates: &str,
    args: &[Value],
    floor: &rank::RisingFloor,
    wanted: usize,
) -> Result<Vec<Hit>> {
    let best = with_rank(conn, || {
        let mut best: Vec<(f64, String, i64)> = Vec::with_capacity(wanted.min(1024) + 1);
        let mut stmt = conn.prepare_cached(candidates)?;
        let mut rows = stmt.query(params_from_iter(args.iter()))?;
        while let Some(row) = rows.next()? {
            let (seq, score, id): (i64, f64, String) = (row.get(0)?, row.get(1)?, row.get(2)?);
            let at = best.partition_point(|(s, i, _)| {
                // As SQLite compares REALs (0.0 and -0.0 are equal) and TEXT (bytes).
                s.partial_cmp(&score)
                    .unwrap_or(Ordering::Equal)
                    .then_with(|| i.as_str().cmp(&id))
                    == Ordering::Greater
            });
            if at < wanted {
                best.insert(at, (score, id, seq));
                best.truncate(wanted);
                if best.len() == wanted {
                    floor.raise(best[wanted - 1].0);
                }
            }
        }
        Ok(best)
    })
    .context("searching memories")?;
    hits_of(
        conn,
        best.into_iter().map(|(score, _, seq)| (seq, score)),
        "searching memories",
    )
}

/// The memories of a search's winners, given as (seq, score) best first, as hits in that order:
/// a search ranks by seq and reads only its page's rows.
pub(super) fn hits_of(
    conn: &Connection,
    winners: impl ExactSizeIterator<Item = (i64, f64)>,
    doing: &str,
) -> Result<Vec<Hit>> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM memories m
             LEFT JOIN memory_namespaces n ON n.namespace = m.namespace WHERE m.seq = ?1"
        ))
        .context(doing)?;
    let mut hits = Vec::with_capacity(winners.len());
    for (seq, score) in winners {
        let memory = stmt
            .query_row([seq], |r| memory_from_row(r, 0))
            .context(doing)?;
        hits.push(Hit { score, memory });
    }
    Ok(hits)
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
pub(super) fn envelope_generation(conn: &Connection, filter: &MemoryFilter) -> Result<Option<u64>> {
    filter
        .namespace
        .as_deref()
        .map(|namespace| namespace_generation(conn, namespace))
        .transpose()
}

/// Appends the filter's conditions (on alias `m`) and their values: never an expired memory
/// (as of `now`), a superseded one only when asked, then the namespace, category and `where`.
pub(super) fn push_filter(
    sql: &mut String,
    args: &mut Vec<Value>,
    filter: &MemoryFilter,
    now: &str,
) {
    sql.push_str(" AND (m.expires_at IS NULL OR m.expires_at > ?)");
    args.push(Value::Text(now.to_owned()));
    if !filter.include_superseded {
        sql.push_str(" AND m.superseded_by IS NULL");
    }
    if let Some(filter) = &filter.filter {
        filter::push_where(sql, args, filter);
    }
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
pub(super) fn memory_from_row(r: &Row<'_>, first: usize) -> rusqlite::Result<Memory> {
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
        metadata: json_object(&r.get::<_, String>(first + 8)?),
        tags: serde_json::from_str(&r.get::<_, String>(first + 9)?).unwrap_or_default(),
        expires_at: r.get(first + 10)?,
        ttl_seconds: r
            .get::<_, Option<i64>>(first + 11)?
            .and_then(|t| u64::try_from(t).ok()),
        refresh_on_read: r.get(first + 12)?,
        superseded_by: r.get(first + 13)?,
        written_by: r.get(first + 14)?,
    })
}

/// Stored metadata text as an object (always an object: every write checks it).
fn json_object(text: &str) -> Map<String, Json> {
    match serde_json::from_str(text) {
        Ok(Json::Object(map)) => map,
        _ => Map::new(),
    }
}

/// The memory with `id` unless it has expired at `now`.
fn select_by_id(conn: &Connection, id: &str, now: &str) -> Result<Option<Memory>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM {FROM} WHERE m.id = ?1 AND (m.expires_at IS NULL OR m.expires_at > ?2)"
    ))
    .and_then(|mut stmt| {
        stmt.query_row([id, now], |r| memory_from_row(r, 0))
            .optional()
    })
    .context("reading a memory")
}

/// Records a history event inside the writing transaction.
pub(super) fn insert_event(tx: &Connection, event: &MemoryEvent) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO memory_events (memory_id, namespace, action, version, old_text, new_text, changes, actor, at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            event.memory_id,
            event.namespace,
            event.action,
            i64::try_from(event.version).unwrap_or(i64::MAX),
            event.old_text,
            event.new_text,
            Json::Object(event.changes.clone()).to_string(),
            event.actor,
            event.at
        ])
    })
    .context("recording a memory's history")?;
    Ok(())
}

pub(super) fn event_from_row(r: &Row<'_>) -> rusqlite::Result<MemoryEvent> {
    let version: i64 = r.get(3)?;
    Ok(MemoryEvent {
        memory_id: r.get(0)?,
        namespace: r.get(1)?,
        action: r.get(2)?,
        version: u64::try_from(version).unwrap_or(0),
        old_text: r.get(4)?,
        new_text: r.get(5)?,
        changes: json_object(&r.get::<_, String>(6)?),
        actor: r.get(7)?,
        at: r.get(8)?,
    })
}

/// The default expiry of new memories in `namespace`.
fn default_expiry(tx: &Transaction<'_>, namespace: &str) -> Result<Expiry> {
    let ttl: Option<i64> = tx
        .prepare_cached("SELECT default_ttl_seconds FROM memory_namespaces WHERE namespace = ?1")
        .and_then(|mut stmt| stmt.query_row([namespace], |r| r.get(0)).optional())
        .context("reading a namespace's default expiry")?
        .flatten();
    Ok(match ttl.and_then(|t| u64::try_from(t).ok()) {
        Some(secs) if secs > 0 => Expiry::After(secs),
        _ => Expiry::Never,
    })
}

/// Sweeps if the last sweep was more than [`SWEEP_INTERVAL`] ago (inside a write).
fn maybe_sweep(tx: &Transaction<'_>, now: SystemTime) -> Result<()> {
    let due = timestamp(now - SWEEP_INTERVAL);
    let last: String = tx
        .prepare_cached("SELECT last_at FROM memory_sweep WHERE only = 0")
        .and_then(|mut stmt| stmt.query_row([], |r| r.get(0)))
        .context("reading when memories were last swept")?;
    if last < due {
        sweep(tx, &timestamp(now))?;
    }
    Ok(())
}

/// Removes the memories expired at `now`, each with an `expire` event.
fn sweep(tx: &Transaction<'_>, now: &str) -> Result<u64> {
    let expired = {
        let mut stmt = tx
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM {FROM} WHERE m.expires_at IS NOT NULL AND m.expires_at <= ?1"
            ))
            .context("sweeping expired memories")?;
        stmt.query_map([now], |r| memory_from_row(r, 0))
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .context("sweeping expired memories")?
    };
    for old in &expired {
        tx.prepare_cached("DELETE FROM memories WHERE id = ?1")
            .and_then(|mut stmt| stmt.execute([&old.id]))
            .context("sweeping expired memories")?;
        insert_event(tx, &removed_event(old, "expire", old.version, now, ""))?;
    }
    tx.execute("UPDATE memory_sweep SET last_at = ?1 WHERE only = 0", [now])
        .context("recording the sweep")?;
    Ok(expired.len() as u64)
}

fn newest_id(tx: &Transaction<'_>) -> Result<Option<String>> {
    tx.query_row("SELECT max(id) FROM memories", [], |r| r.get(0))
        .context("reading the newest memory id")
}

#[cfg(test)]
mod statistics_tests;
