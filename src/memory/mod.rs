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
mod grams;
mod id;
mod page;
mod query;
mod rank;
mod store;
mod words;

use serde::Serialize;
use uuid::Uuid;

use crate::error::{Error, Result};

pub(crate) use crate::time::{later_than, timestamp};
pub(crate) use cursor::Cursor;
pub use cursor::check_cursor;
pub use grams::grams;
pub(crate) use grams::run_bigrams;
pub(crate) use id::next_id;
pub use page::{Hit, MemoryPage, Page};
pub use query::{SearchText, Term, open_end, terms};
pub use rank::{Features, QueryPhrase, Ranking, Scorer, Statistics};
pub use store::{Rows, SearchMode};

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
}

/// Which memories a listing or a search considers, and which page. `None` means "any".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryFilter {
    /// Exact namespace.
    pub namespace: Option<String>,
    /// Exact category, compared case-insensitively (ASCII).
    pub category: Option<String>,
    /// Most results in a page; `None`: all of them in one page.
    pub limit: Option<usize>,
    /// Continue after the page that returned this `next_cursor`.
    pub cursor: Option<String>,
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
