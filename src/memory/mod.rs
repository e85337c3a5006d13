//! Agent memories: namespaced notes with a category, ranked full-text search, and a drift
//! guard.
//!
//! The drift guard is one store-wide generation number that every memory write (add, update,
//! delete) increments in the same transaction. A write may carry the generation its caller
//! last saw (`expect`); the check and the write happen inside one `BEGIN IMMEDIATE` under the
//! cross-process write lock, so when two writers both saw generation G, exactly one of them
//! writes and the other gets [`Error::Conflict`] with nothing written.

mod id;
mod query;
mod table;

use serde::Serialize;

use crate::error::{Error, Result};

pub use query::fts_query;

/// Longest namespace or category accepted, in bytes.
pub const MAX_LABEL_BYTES: usize = 256;

/// One stored memory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Memory {
    /// Time-sortable identifier (UUIDv7), strictly increasing in commit order in one store.
    pub id: String,
    pub namespace: String,
    pub category: String,
    pub body: String,
    /// RFC 3339, UTC, microseconds.
    pub created_at: String,
    /// RFC 3339, UTC, microseconds; moves forward on every update.
    pub updated_at: String,
    /// The store generation right after this memory was last written.
    pub generation: u64,
}

/// A memory to add with [`Store::add_memories`](crate::Store::add_memories).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NewMemory {
    pub namespace: String,
    pub category: String,
    pub body: String,
}

/// Which memories a listing or a search considers. `None` means "any".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryFilter {
    /// Exact namespace.
    pub namespace: Option<String>,
    /// Exact category, compared case-insensitively (ASCII).
    pub category: Option<String>,
    /// Most results returned.
    pub limit: Option<usize>,
    /// Only memories older than this id (a cursor: pass the last id of the previous page).
    pub after: Option<String>,
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

fn not_found(id: &str) -> Error {
    Error::NotFound(format!(
        "no memory with id {id:?}; `modstate memory ls` lists memories"
    ))
}
