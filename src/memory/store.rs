//! The store's memory operations: validation, cursors, pages and notes above the storage
//! backend, which decides ids, stamps and ranks inside its transactions.

use super::cursor::{Cursor, Kind, fingerprint};
use super::page::{Hit, MemoryPage, Page};
use super::query::{SearchText, open_end};
use super::rank::{Ranking, Statistics};
use super::{
    Expect, Expiry, Memory, MemoryChange, MemoryEvent, MemoryFilter, NamespaceInfo, NewMemory,
    check_body, check_id, check_label, check_metadata, check_tags,
};
use crate::error::{Error, Result};
use crate::store::Store;
use serde_json::{Map, Value, json};
use std::time::{Duration, SystemTime};

/// How a search finds its rows; the backend turns it into its own query language.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SearchMode {
    /// Every memory, newest first.
    Everything,
    /// Memories holding this text as typed, newest first.
    Literal(String),
    /// Memories holding any phrase of the plan, best first (see `rank.rs`).
    Ranked(Ranking),
}

/// What one paged read found, inside one read transaction of the backend.
#[derive(Clone, Debug)]
pub struct Rows<T> {
    /// Up to one row more than the page's limit, so the page knows whether more exist.
    pub rows: Vec<T>,
    /// The stamp counter when the first page was read (from the cursor on later pages).
    pub snapshot: u64,
    /// The generation of the namespace the read is limited to, if it is.
    pub generation: Option<u64>,
    /// A ranked search's statistics: read at the first page, the cursor's on later pages.
    pub statistics: Option<Statistics>,
}

impl Store {
    /// Adds one memory; returns it with its new id.
    pub fn add_memory(&self, namespace: &str, body: &str, category: &str) -> Result<Memory> {
        let mut added = self.add_memories([NewMemory {
            namespace: namespace.to_owned(),
            category: category.to_owned(),
            body: body.to_owned(),
            ..NewMemory::default()
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
        let mut memories: Vec<NewMemory> = memories.into_iter().collect();
        let max_bytes = self.options().max_memory_bytes;
        for m in &mut memories {
            check_label("namespace", &m.namespace)?;
            check_label("category", &m.category)?;
            check_body(&m.body, max_bytes)?;
            check_metadata(&m.metadata)?;
            m.tags = check_tags(&m.tags)?;
            check_refresh(m.refresh_on_read, m.expiry.as_ref())?;
            let mut ids = Vec::with_capacity(m.supersedes.len());
            for id in &m.supersedes {
                ids.push(check_id(id)?);
            }
            ids.sort();
            ids.dedup();
            m.supersedes = ids;
        }
        if memories.is_empty() {
            return Ok(Vec::new());
        }
        self.backend().add_memories(memories, self.writer())
    }

    /// The memory with `id`, or `None` (also when it has expired). A malformed id is
    /// [`Error::Invalid`]. A superseded memory is returned, with `superseded_by` saying by what.
    pub fn get_memory(&self, id: &str) -> Result<Option<Memory>> {
        let id = check_id(id)?;
        let mut found = self.backend().get_memory(&id)?;
        if let Some(memory) = found.as_mut() {
            self.refresh_on_read(std::slice::from_mut(memory));
        }
        Ok(found)
    }

    /// Pushes forward the expiry of the refresh-on-read memories among `memories` that were
    /// last pushed at least a tenth of their lifetime ago (so a memory read in a loop is
    /// written at most ten times per lifetime, not once per read).
    ///
    /// A read must not wait on the write lock, so this never blocks: it runs after the read
    /// (no read transaction or connection is held), and the backend only tries the write lock
    /// (SQLite) or skips rows a writer holds (PostgreSQL); when busy it does nothing and a
    /// later read pushes instead. Failing to push is not an error of the read: the memory was
    /// visible when read, and a memory read at least once per lifetime stays alive.
    pub(crate) fn refresh_on_read(&self, memories: &mut [Memory]) {
        let now = SystemTime::now();
        let mut due = Vec::new();
        for m in memories.iter() {
            let (true, Some(ttl), Some(expires)) =
                (m.refresh_on_read, m.ttl_seconds, m.expires_at.as_deref())
            else {
                continue;
            };
            let interval = (ttl / 10).max(1);
            let pushed = super::timestamp(now + Duration::from_secs(ttl));
            let threshold = super::timestamp(now + Duration::from_secs(ttl - interval.min(ttl)));
            if expires < threshold.as_str() {
                due.push((m.id.clone(), pushed));
            }
        }
        if due.is_empty() {
            return;
        }
        let now_text = super::timestamp(now);
        if let Ok(done) = self.backend().refresh_expiry(&due, &now_text) {
            for m in memories.iter_mut() {
                if let Some((_, pushed)) = due.iter().find(|(id, _)| *id == m.id)
                    && done.contains(&m.id)
                {
                    m.expires_at = Some(pushed.clone());
                }
            }
        }
    }

    /// [`Store::refresh_on_read`] of the memories of search hits.
    pub(crate) fn refresh_hits(&self, hits: &mut [Hit]) {
        let mut memories: Vec<Memory> = hits.iter().map(|h| h.memory.clone()).collect();
        if memories.iter().any(|m| m.refresh_on_read) {
            self.refresh_on_read(&mut memories);
            for (hit, memory) in hits.iter_mut().zip(memories) {
                hit.memory = memory;
            }
        }
    }

    /// The first page of [`Store::list_page`], its memories only.
    pub fn list_memories(&self, filter: &MemoryFilter) -> Result<Vec<Memory>> {
        Ok(self.list_page(filter)?.page.items)
    }

    /// Memories matching `filter`, newest first, one page of them. See `cursor.rs` for what
    /// paging guarantees.
    pub fn list_page(&self, filter: &MemoryFilter) -> Result<MemoryPage<Memory>> {
        let category = category_key(filter);
        let key = where_key(filter);
        let print = fingerprint(&[
            Some("list"),
            filter.namespace.as_deref(),
            category.as_deref(),
            Some(&key),
        ]);
        let cursor = filter
            .cursor
            .as_deref()
            .map(|token| Cursor::decode(token, Kind::List, &[print]))
            .transpose()?;
        let mut found = self.backend().list_memories(filter, cursor.as_ref())?;
        self.refresh_on_read(&mut found.rows);
        let snapshot = found.snapshot;
        let page = Page::cut(found.rows, filter.limit, |m: &Memory| {
            Cursor {
                kind: Kind::List,
                snapshot,
                fingerprint: print,
                score: 0.0,
                id: m.id.clone(),
                statistics: None,
                query: None,
                fusion: None,
            }
            .encode()
        });
        Ok(MemoryPage {
            page,
            generation: found.generation,
            note: None,
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

    /// Memories ranked by how well they match `query`, a question or keywords, best first, one
    /// page of them. Every memory holding any scored word of the query is a candidate
    /// (case-, accent- and inflection-insensitive, irregular forms included; function words
    /// left out when the query has others; CJK words as substrings; the last word also as a
    /// prefix while the query does not end a sentence); the score is BM25 with a proximity
    /// bonus and a stuffing penalty (`rank.rs`). User text never reaches the engine as query
    /// syntax. A query with no letter or digit but something else (`🚀`) finds memories
    /// holding it as typed, newest first, with a note; an empty query lists newest first
    /// (score 0). Paging: see `cursor.rs`.
    pub fn search_page(&self, query: &str, filter: &MemoryFilter) -> Result<MemoryPage<Hit>> {
        let (text, mode, key) = keyword_mode(query);
        let category = category_key(filter);
        let where_text = where_key(filter);
        let print = fingerprint(&[
            Some("search"),
            Some(&key),
            filter.namespace.as_deref(),
            category.as_deref(),
            Some(&where_text),
        ]);
        let cursor = filter
            .cursor
            .as_deref()
            .map(|token| Cursor::decode(token, Kind::Search, &[print]))
            .transpose()?;
        if let (SearchMode::Ranked(plan), Some(cursor)) = (&mode, &cursor) {
            let terms = cursor.statistics.as_ref().map(|s| s.frequencies.len());
            if terms != Some(plan.phrases.len()) {
                return Err(Error::Invalid(
                    "the cursor does not carry this search's statistics; start again without a cursor".into(),
                ));
            }
        }
        let mut found = self
            .backend()
            .search_memories(&mode, filter, cursor.as_ref())?;
        self.refresh_hits(&mut found.rows);
        let note = match &text {
            SearchText::Literal(literal) => Some(format!(
                "the query has no letters or digits, so memories holding {literal:?} exactly as typed are shown, newest first"
            )),
            _ => None,
        };
        let snapshot = found.snapshot;
        let statistics = found.statistics;
        let page = Page::cut(found.rows, filter.limit, |hit: &Hit| {
            Cursor {
                kind: Kind::Search,
                snapshot,
                fingerprint: print,
                score: hit.score,
                id: hit.memory.id.clone(),
                statistics: statistics.clone(),
                query: None,
                fusion: None,
            }
            .encode()
        });
        Ok(MemoryPage {
            page,
            generation: found.generation,
            note,
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
        self.change_memory(
            id,
            MemoryChange {
                body: Some(body.to_owned()),
                category: category.map(str::to_owned),
                ..MemoryChange::default()
            },
            expect,
        )
    }

    /// Changes the fields of memory `id` that `change` names, guarded by `expect` as
    /// [`Store::update_memory`]. An expired memory is absent ([`Error::NotFound`]).
    pub fn change_memory(
        &self,
        id: &str,
        mut change: MemoryChange,
        expect: Expect,
    ) -> Result<Memory> {
        let id = check_id(id)?;
        if let Some(body) = &change.body {
            check_body(body, self.options().max_memory_bytes)?;
        }
        if let Some(category) = &change.category {
            check_label("category", category)?;
        }
        if let Some(metadata) = &change.metadata {
            check_metadata(metadata)?;
        }
        if let Some(tags) = &change.tags {
            change.tags = Some(check_tags(tags)?);
        }
        if change.refresh_on_read == Some(true) && change.expiry.is_some() {
            check_refresh(true, change.expiry.as_ref())?;
        }
        self.backend()
            .update_memory(&id, &change, expect, self.writer())
    }

    /// Removes memory `id` and returns its namespace's new generation. With `expect`, as for
    /// [`Store::update_memory`].
    pub fn delete_memory(&self, id: &str, expect: Expect) -> Result<u64> {
        let id = check_id(id)?;
        self.backend().delete_memory(&id, expect, self.writer())
    }

    /// Every recorded change of memory `id`, oldest first; readable after the memory is gone
    /// until pruned. An id with no history is [`Error::NotFound`].
    pub fn memory_history(&self, id: &str) -> Result<Vec<MemoryEvent>> {
        let id = check_id(id)?;
        let events = self.backend().memory_history(&id)?;
        if events.is_empty() {
            return Err(Error::NotFound(format!(
                "no memory with id {id:?} and no recorded history of one"
            )));
        }
        Ok(events)
    }

    /// Removes the history events older than `older_than` (e.g. 90 days) of every memory;
    /// returns how many were removed. Bounds the history's growth.
    pub fn prune_memory_history(&self, older_than: Duration) -> Result<u64> {
        let cutoff = super::timestamp(SystemTime::now() - older_than);
        self.backend().prune_history(&cutoff)
    }

    /// Removes every expired memory (recording an `expire` event for each); returns how many.
    /// Expired memories are already invisible to every read; this reclaims their rows.
    pub fn sweep_memories(&self) -> Result<u64> {
        let now = super::timestamp(SystemTime::now());
        self.backend().sweep_expired(&now)
    }

    /// Namespaces whose name starts with `prefix` (all with `""`), by name, with their counts
    /// of visible memories and their generations.
    pub fn memory_namespaces(&self, prefix: &str) -> Result<Vec<NamespaceInfo>> {
        let now = super::timestamp(SystemTime::now());
        self.backend().namespaces(prefix, &now)
    }

    /// Sets (or with `None` clears) the lifetime new memories of `namespace` get when they
    /// are added without an expiry of their own.
    pub fn set_namespace_ttl(&self, namespace: &str, ttl: Option<Expiry>) -> Result<()> {
        check_label("namespace", namespace)?;
        let seconds = match ttl {
            None | Some(Expiry::Never) => None,
            Some(Expiry::After(secs)) => Some(secs),
            Some(Expiry::At(_)) => {
                return Err(Error::Invalid(
                    "a namespace's default expiry is a lifetime such as 7d, not an instant".into(),
                ));
            }
        };
        self.backend().set_namespace_ttl(namespace, seconds)
    }

    /// The generation of `namespace`: the stamp of its last write (0 if never written). It
    /// only grows, and no two writes share a value.
    pub fn memory_generation(&self, namespace: &str) -> Result<u64> {
        self.backend().memory_generation(namespace)
    }
}

/// How a keyword search of `query` finds its rows, and its key in cursor fingerprints.
pub(super) fn keyword_mode(query: &str) -> (SearchText, SearchMode, String) {
    let text = SearchText::parse(query);
    let (mode, key) = match &text {
        SearchText::Everything => (SearchMode::Everything, "all".to_owned()),
        SearchText::Literal(literal) => (
            SearchMode::Literal(literal.clone()),
            format!("literal {literal}"),
        ),
        SearchText::Words(terms) => {
            let plan = Ranking::plan(terms, open_end(query));
            let key = format!("ranked {:?}", plan);
            (SearchMode::Ranked(plan), key)
        }
    };
    (text, mode, key)
}

/// The filter as cursors remember it (and whether superseded memories are shown).
pub(super) fn where_key(filter: &MemoryFilter) -> String {
    format!(
        "{}|{}",
        filter.include_superseded,
        filter
            .filter
            .as_ref()
            .map(super::Where::key)
            .unwrap_or_default()
    )
}

fn check_refresh(refresh: bool, expiry: Option<&Expiry>) -> Result<()> {
    if refresh && !matches!(expiry, Some(Expiry::After(_))) {
        return Err(Error::Invalid(
            "refresh-on-read needs a lifetime to push the expiry by; give --ttl (e.g. --ttl 7d) with it".into(),
        ));
    }
    Ok(())
}

/// The event of an add, naming the memories it supersedes.
pub(crate) fn added_event(m: &Memory, actor: &str, supersedes: &[String]) -> MemoryEvent {
    let mut changes = Map::new();
    for (field, value) in fields(m) {
        if !is_default(&value) {
            changes.insert(field.to_owned(), json!({"old": null, "new": value}));
        }
    }
    if !supersedes.is_empty() {
        changes.insert("supersedes".into(), json!(supersedes));
    }
    MemoryEvent {
        memory_id: m.id.clone(),
        namespace: m.namespace.clone(),
        action: "add".into(),
        version: m.version,
        old_text: None,
        new_text: Some(m.body.clone()),
        changes,
        actor: actor.to_owned(),
        at: m.updated_at.clone(),
    }
}

/// The event of a change from `old` to `new` (an update, or `supersede`).
pub(crate) fn changed_event(old: &Memory, new: &Memory, action: &str, actor: &str) -> MemoryEvent {
    let mut changes = Map::new();
    for ((field, before), (_, after)) in fields(old).into_iter().zip(fields(new)) {
        if before != after {
            changes.insert(field.to_owned(), json!({"old": before, "new": after}));
        }
    }
    let text_changed = old.body != new.body;
    MemoryEvent {
        memory_id: new.id.clone(),
        namespace: new.namespace.clone(),
        action: action.into(),
        version: new.version,
        old_text: text_changed.then(|| old.body.clone()),
        new_text: text_changed.then(|| new.body.clone()),
        changes,
        actor: actor.to_owned(),
        at: new.updated_at.clone(),
    }
}

/// The event of a removal (`delete`, or `expire` by a sweep) at `stamp`.
pub(crate) fn removed_event(
    old: &Memory,
    action: &str,
    stamp: u64,
    at: &str,
    actor: &str,
) -> MemoryEvent {
    MemoryEvent {
        memory_id: old.id.clone(),
        namespace: old.namespace.clone(),
        action: action.into(),
        version: stamp,
        old_text: Some(old.body.clone()),
        new_text: None,
        changes: Map::new(),
        actor: actor.to_owned(),
        at: at.to_owned(),
    }
}

fn fields(m: &Memory) -> Vec<(&'static str, Value)> {
    vec![
        ("category", json!(m.category)),
        ("metadata", Value::Object(m.metadata.clone())),
        ("tags", json!(m.tags)),
        ("expires_at", json!(m.expires_at)),
        ("ttl_seconds", json!(m.ttl_seconds)),
        ("refresh_on_read", json!(m.refresh_on_read)),
        ("superseded_by", json!(m.superseded_by)),
    ]
}

fn is_default(value: &Value) -> bool {
    match value {
        Value::Null | Value::Bool(false) => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::Number(_) | Value::Bool(true) => false,
    }
}

/// The memory an update makes of `old` at `stamp` and `now` (stored `updated_at`).
pub(crate) fn apply_change(
    old: &Memory,
    change: &MemoryChange,
    stamp: u64,
    updated_at: String,
) -> Memory {
    let mut new = old.clone();
    if let Some(body) = &change.body {
        new.body = body.clone();
    }
    if let Some(category) = &change.category {
        new.category = category.clone();
    }
    if let Some(metadata) = &change.metadata {
        new.metadata = metadata.clone();
    }
    if let Some(tags) = &change.tags {
        new.tags = tags.clone();
    }
    if let Some(expiry) = &change.expiry {
        let (expires_at, ttl) = expiry.resolve(SystemTime::now());
        new.expires_at = expires_at;
        new.ttl_seconds = ttl;
        if ttl.is_none() {
            new.refresh_on_read = false;
        }
    }
    if let Some(refresh) = change.refresh_on_read {
        new.refresh_on_read = refresh && new.ttl_seconds.is_some();
    }
    new.updated_at = updated_at;
    new.version = stamp;
    new.generation = stamp;
    new
}

/// The category as cursors remember it: categories compare ignoring ASCII case, so a cursor
/// from `--category PREF` continues `--category pref`.
pub(super) fn category_key(filter: &MemoryFilter) -> Option<String> {
    filter.category.as_deref().map(str::to_ascii_lowercase)
}

/// The drift guard of a supersede, against the old memory as it is in the transaction.
pub(crate) fn check_supersede(old: &Memory, new: &Memory, expect: Expect) -> Result<()> {
    if old.namespace != new.namespace {
        return Err(Error::Invalid(format!(
            "memory {} is in namespace {:?}, not {:?}; a memory supersedes only memories of its own namespace",
            old.id, old.namespace, new.namespace
        )));
    }
    if let Some(by) = &old.superseded_by {
        return Err(Error::Superseded {
            id: old.id.clone(),
            by: by.clone(),
        });
    }
    super::check_expected(old, expect)
}
