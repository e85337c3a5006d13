//! The store's memory operations: validation, cursors, pages and notes above the storage
//! backend, which decides ids, stamps and ranks inside its transactions.

use super::cursor::{Cursor, Kind, fingerprint};
use super::page::{Hit, MemoryPage, Page};
use super::query::{SearchText, open_end};
use super::rank::{Ranking, Statistics};
use super::{Expect, Memory, MemoryFilter, NewMemory, check_body, check_id, check_label};
use crate::error::{Error, Result};
use crate::store::Store;

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
        self.backend().add_memories(memories)
    }

    /// The memory with `id`, or `None`. A malformed id is [`Error::Invalid`].
    pub fn get_memory(&self, id: &str) -> Result<Option<Memory>> {
        let id = check_id(id)?;
        self.backend().get_memory(&id)
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
        let cursor = filter
            .cursor
            .as_deref()
            .map(|token| Cursor::decode(token, Kind::List, &[print]))
            .transpose()?;
        let found = self.backend().list_memories(filter, cursor.as_ref())?;
        let snapshot = found.snapshot;
        let page = Page::cut(found.rows, filter.limit, |m: &Memory| {
            Cursor {
                kind: Kind::List,
                snapshot,
                fingerprint: print,
                score: 0.0,
                id: m.id.clone(),
                statistics: None,
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
        let text = SearchText::parse(query);
        let category = category_key(filter);
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
        let print = fingerprint(&[
            Some("search"),
            Some(&key),
            filter.namespace.as_deref(),
            category.as_deref(),
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
        let found = self
            .backend()
            .search_memories(&mode, filter, cursor.as_ref())?;
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
        let id = check_id(id)?;
        check_body(body, self.options().max_memory_bytes)?;
        if let Some(category) = category {
            check_label("category", category)?;
        }
        self.backend().update_memory(&id, body, category, expect)
    }

    /// Removes memory `id` and returns its namespace's new generation. With `expect`, as for
    /// [`Store::update_memory`].
    pub fn delete_memory(&self, id: &str, expect: Expect) -> Result<u64> {
        let id = check_id(id)?;
        self.backend().delete_memory(&id, expect)
    }

    /// The generation of `namespace`: the stamp of its last write (0 if never written). It
    /// only grows, and no two writes share a value.
    pub fn memory_generation(&self, namespace: &str) -> Result<u64> {
        self.backend().memory_generation(namespace)
    }
}

/// The category as cursors remember it: categories compare ignoring ASCII case, so a cursor
/// from `--category PREF` continues `--category pref`.
fn category_key(filter: &MemoryFilter) -> Option<String> {
    filter.category.as_deref().map(str::to_ascii_lowercase)
}
