//! Agent memories: namespaced notes with a category, ranked full-text search with paging, and
//! a drift guard per namespace and per memory.
//!
//! * Search: English stemming and folded accents (`porter unicode61 remove_diacritics 2`),
//!   words inside CJK text through bigrams ([`grams`]), symbol-only queries searched
//!   literally (`query.rs`), and BM25 ranking over the query's content words and their
//!   irregular forms (`rank.rs`, `words.rs`), with the statistics of the first page carried in
//!   the cursor so pages continue exactly (`cursor.rs`).
//! * Drift guard (the backend's stamps): every write takes the next value of one store-wide counter;
//!   it becomes the memory's `version` and its namespace's `generation`. A write may carry the
//!   generation and/or version its caller saw; the checks and the write happen inside one
//!   `BEGIN IMMEDIATE` under the cross-process write lock, so of two writers that saw the same
//!   value exactly one writes and the other gets [`Error::Conflict`] with nothing written.

mod cursor;
pub mod filter;
mod fusion;
mod grams;
mod id;
mod page;
mod query;
mod rank;
mod recall;
mod store;
mod words;

use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::error::{Error, Result};

pub(crate) use crate::time::{later_than, timestamp};
pub(crate) use cursor::Cursor;
pub use cursor::check_cursor;
pub use filter::{Where, check_metadata, check_tags, parse_metadata};
pub use fusion::{DEPTH, Fusion, KEYWORD_WEIGHT, RRF_K, Ranks};
pub use grams::grams;
pub(crate) use grams::run_bigrams;
pub(crate) use id::next_id;
pub use page::{Hit, MemoryPage, Page};
pub use query::{SearchText, Term, open_end, terms};
pub use rank::{Features, QueryPhrase, Ranking, Scorer, Scratch, Statistics};
pub use recall::{Explained, Mode, Recalled, Why, hybrid_or_keyword};
pub use store::{Rows, SearchMode};
pub(crate) use store::{added_event, apply_change, changed_event, check_supersede, removed_event};

/// Longest namespace or category accepted, in bytes.
pub const MAX_LABEL_BYTES: usize = 256;

/// One stored memory, as every front end shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Memory {
    /// Time-sortable identifier (UUIDv7), strictly increasing in commit order in one store.
    pub id: String,
    /// The namespace it belongs to (`""` is the default one).
    pub namespace: String,
    /// Its category (`""` when none).
    pub category: String,
    /// The remembered text.
    #[serde(rename = "text")]
    pub body: String,
    /// RFC 3339, UTC, microseconds.
    pub created_at: String,
    /// RFC 3339, UTC, microseconds; moves forward on every update.
    pub updated_at: String,
    /// This memory's version: a new, larger value on every update (for `expect_version`).
    pub version: u64,
    /// Its namespace's generation when this was read or written (for `expect_generation`):
    /// the namespace's current value, never an older one.
    pub generation: u64,
    /// Free-form metadata (a JSON object), filterable with `where`.
    pub metadata: Map<String, Value>,
    /// Tags, sorted, without duplicates.
    pub tags: Vec<String>,
    /// When it stops being visible (RFC 3339, UTC), `None`: never.
    pub expires_at: Option<String>,
    /// The lifetime its expiry was set from, in seconds, if it was set from one.
    pub ttl_seconds: Option<u64>,
    /// Whether reading it pushes `expires_at` forward by `ttl_seconds`.
    pub refresh_on_read: bool,
    /// The id of the memory that replaced it (`supersedes`), `None` while it is current.
    pub superseded_by: Option<String>,
    /// Who wrote it last (provenance): the writer its latest history event records — the
    /// token's name through `modstate serve`, `mcp:CLIENT` through stdio MCP, the CLI's
    /// `$MODSTATE_WRITER` — or `local` when the writer gave no name.
    pub written_by: String,
}

/// The name recorded as a memory's last writer: `writer`, or `local` for a handle that
/// gave none (see [`Memory::written_by`]).
pub(crate) fn writer_name(writer: &str) -> String {
    if writer.is_empty() {
        "local".to_owned()
    } else {
        writer.to_owned()
    }
}

/// A memory to add with [`Store::add_memories`](crate::Store::add_memories).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NewMemory {
    /// The namespace it belongs to (`""` is the default one).
    pub namespace: String,
    /// Its category (`""` when none).
    pub category: String,
    /// The text to remember.
    pub body: String,
    /// Metadata (a JSON object; empty: none).
    pub metadata: Map<String, Value>,
    /// Tags.
    pub tags: Vec<String>,
    /// When it expires; `None`: its namespace's default lifetime, if any.
    pub expiry: Option<Expiry>,
    /// Whether reads push its expiry forward (needs a lifetime, [`Expiry::After`]).
    pub refresh_on_read: bool,
    /// Ids of memories this one replaces: hidden from ls and search once this is added, in
    /// the same transaction. `expect` guards them like an update.
    pub supersedes: Vec<String>,
    /// For `supersedes`: the generation and/or version the caller saw (of the superseded
    /// memories' namespace / of the one superseded memory).
    pub expect: Expect,
}

/// When a memory expires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expiry {
    /// Never.
    Never,
    /// This many seconds after it is written (and after each read, with refresh-on-read).
    After(u64),
    /// At this instant (RFC 3339 in the stored form).
    At(String),
}

impl Expiry {
    /// Parses a lifetime such as `30m`, `12h`, `7d` (at least one second).
    pub fn ttl(text: &str) -> Result<Expiry> {
        let duration = humantime::parse_duration(text.trim()).map_err(|e| {
            Error::Invalid(format!(
                "TTL {:?} is not a duration ({e}); write it as 30m, 12h or 7d",
                shorten(text)
            ))
        })?;
        if duration.as_secs() == 0 {
            return Err(Error::Invalid(format!(
                "TTL {:?} is shorter than one second; give at least 1s",
                shorten(text)
            )));
        }
        if duration.as_secs() > MAX_TTL_SECONDS {
            return Err(Error::Invalid(format!(
                "TTL {:?} is longer than 100 years; omit it for a memory that never expires",
                shorten(text)
            )));
        }
        Ok(Expiry::After(duration.as_secs()))
    }

    /// Parses an instant: RFC 3339 in UTC (`2026-01-31T12:00:00Z`).
    pub fn at(text: &str) -> Result<Expiry> {
        let at = humantime::parse_rfc3339_weak(text.trim()).map_err(|_| {
            Error::Invalid(format!(
                "expiry {:?} is not an RFC 3339 time in UTC; write it as 2026-01-31T12:00:00Z",
                shorten(text)
            ))
        })?;
        // A past instant would store a memory no read can ever see: surely a mistake.
        if at <= std::time::SystemTime::now() {
            return Err(Error::Invalid(format!(
                "expiry {:?} is in the past, so the memory would be invisible at once; give a future time (or `memory rm` to remove a memory now)",
                shorten(text)
            )));
        }
        Ok(Expiry::At(timestamp(at)))
    }

    /// The stored `(expires_at, ttl_seconds)` for a write at `now`.
    pub(crate) fn resolve(&self, now: std::time::SystemTime) -> (Option<String>, Option<u64>) {
        match self {
            Expiry::Never => (None, None),
            Expiry::After(secs) => (
                Some(timestamp(now + std::time::Duration::from_secs(*secs))),
                Some(*secs),
            ),
            Expiry::At(at) => (Some(at.clone()), None),
        }
    }
}

/// Longest lifetime accepted: a hundred years.
pub const MAX_TTL_SECONDS: u64 = 100 * 365 * 24 * 3600;

/// What an update changes; `None` fields stay as they are.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryChange {
    /// The new text.
    pub body: Option<String>,
    /// The new category.
    pub category: Option<String>,
    /// The new metadata (replaces the old object).
    pub metadata: Option<Map<String, Value>>,
    /// The new tags (replace the old ones).
    pub tags: Option<Vec<String>>,
    /// The new expiry.
    pub expiry: Option<Expiry>,
    /// Whether reads push the expiry forward.
    pub refresh_on_read: Option<bool>,
}

/// One recorded change of a memory (`memory history`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct MemoryEvent {
    /// The memory's id.
    pub memory_id: String,
    /// Its namespace.
    pub namespace: String,
    /// `add`, `update`, `delete`, `expire`, `supersede` (it was replaced), or `import`.
    pub action: String,
    /// The memory's version after the change (for a delete or expiry: the stamp it took).
    pub version: u64,
    /// The text before the change, where there was one and it changed.
    pub old_text: Option<String>,
    /// The text after the change, where there is one and it changed.
    pub new_text: Option<String>,
    /// The other fields that changed: `{"field": {"old": …, "new": …}}`.
    pub changes: Map<String, Value>,
    /// Who made the change, where the front end knows (`""` otherwise).
    pub actor: String,
    /// When (RFC 3339, UTC).
    pub at: String,
}

/// A namespace as `memory namespaces` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NamespaceInfo {
    /// Its name.
    pub namespace: String,
    /// How many memories it holds now (visible ones: not expired).
    pub memories: u64,
    /// Its generation.
    pub generation: u64,
    /// The default lifetime of its new memories, in seconds, if it has one.
    pub default_ttl_seconds: Option<u64>,
}

/// Which memories a listing or a search considers, and which page. `None` means "any".
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MemoryFilter {
    /// Exact namespace.
    pub namespace: Option<String>,
    /// Exact category, compared case-insensitively (ASCII).
    pub category: Option<String>,
    /// Most results in a page; `None`: all of them in one page.
    pub limit: Option<usize>,
    /// Continue after the page that returned this `next_cursor`.
    pub cursor: Option<String>,
    /// Conditions on metadata, tags, category and times (see [`filter`]).
    pub filter: Option<Where>,
    /// Also show memories another one superseded.
    pub include_superseded: bool,
}

/// What a write expects to find, for the drift guard. `None`: not checked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Expect {
    /// The generation of the memory's namespace.
    pub generation: Option<u64>,
    /// The memory's version.
    pub version: Option<u64>,
}

/// Checks that `id` is a memory id (a UUID) and returns it in the stored form (lowercase,
/// hyphenated). A malformed id is invalid input, not an absent memory.
pub fn check_id(id: &str) -> Result<String> {
    Uuid::parse_str(id.trim())
        .map(|uuid| uuid.hyphenated().to_string())
        .map_err(|_| {
            Error::Invalid(format!(
                "{:?} is not a memory id; ids are UUIDs such as 0192f0c4-5b7e-7c1a-9d3e-4f5a6b7c8d9e, as listings return them",
                shorten(id)
            ))
        })
}

/// Checks a memory body: non-empty, at most `max_bytes` bytes, no NUL byte (SQLite's text
/// functions and C callers stop at a NUL, so the stored text would not read back whole).
pub fn check_body(body: &str, max_bytes: usize) -> Result<()> {
    if body.contains('\0') {
        return Err(Error::Invalid(
            "memory text contains a NUL byte; remove it (binary data does not belong in a memory)"
                .into(),
        ));
    }
    if body.trim().is_empty() {
        return Err(Error::Invalid(
            "memory text is empty; give the text to remember".into(),
        ));
    }
    if body.len() > max_bytes {
        return Err(Error::Invalid(format!(
            "memory text is {} bytes, over the {max_bytes}-byte limit; shorten it or split it into several memories",
            body.len()
        )));
    }
    Ok(())
}

/// Checks a namespace or category: at most [`MAX_LABEL_BYTES`] bytes and no control
/// characters (listings print one memory a line, tab-separated).
pub fn check_label(what: &str, value: &str) -> Result<()> {
    if value.len() > MAX_LABEL_BYTES {
        return Err(Error::Invalid(format!(
            "{what} is {} bytes, over the {MAX_LABEL_BYTES}-byte limit; use a shorter {what}",
            value.len()
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(Error::Invalid(format!(
            "{what} {value:?} contains a control character (newline, tab, …); use printable text"
        )));
    }
    Ok(())
}

/// The drift guard's checks, inside the writing transaction, against the memory as it is.
pub(crate) fn check_expected(current: &Memory, expect: Expect) -> Result<()> {
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

/// The error for an absent memory. It names no command: each front end knows how its users
/// list memories.
pub(crate) fn not_found(id: &str) -> Error {
    Error::NotFound(format!("no memory with id {id:?}"))
}

fn shorten(text: &str) -> String {
    match text.char_indices().nth(60) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}
