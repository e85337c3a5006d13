//! One page of results and how to continue: the type every paged read returns, so the CLI
//! and the MCP server page the same way instead of each probing for "one more row".

use serde::Serialize;
use serde::ser::{SerializeStruct, Serializer};

use super::Memory;

/// Items in order, and the cursor of the page after them (`None`: this was the last page).
#[derive(Clone, Debug, PartialEq)]
pub struct Page<T> {
    /// The items of this page, in order.
    pub items: Vec<T>,
    /// The cursor of the next page; `None` on the last one.
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// The first `limit` of `rows` (fetched as `limit + 1` to know whether more exist), and
    /// a cursor made from the last item kept when more do.
    pub fn cut(
        mut rows: Vec<T>,
        limit: Option<usize>,
        cursor_after: impl Fn(&T) -> String,
    ) -> Page<T> {
        let more = limit.is_some_and(|limit| rows.len() > limit);
        if let Some(limit) = limit {
            rows.truncate(limit);
        }
        let next_cursor = if more {
            rows.last().map(cursor_after)
        } else {
            None
        };
        Page {
            items: rows,
            next_cursor,
        }
    }
}

/// A search result: the memory and its score (higher is better; see `rank.rs`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Hit {
    #[serde(flatten)]
    /// The memory found.
    pub memory: Memory,
    /// Its score: higher is a better match.
    pub score: f64,
}

/// A page of memories (or hits) as the CLI's `--json` and the MCP tools show it:
/// `{"memories": [...], "generation": G | null, "next_cursor": "…" | null, "note"?: "…"}`.
#[derive(Clone, Debug, PartialEq)]
pub struct MemoryPage<T> {
    /// The items and the cursor of the next page.
    pub page: Page<T>,
    /// The current generation of the namespace the read was limited to, for
    /// `expect_generation`; `None` when it spanned every namespace (each memory then carries
    /// its own namespace's generation).
    pub generation: Option<u64>,
    /// Why the results are what they are, when that is not obvious (a query of symbols only).
    pub note: Option<String>,
}

impl<T: Serialize> Serialize for MemoryPage<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let fields = if self.note.is_some() { 4 } else { 3 };
        let mut s = serializer.serialize_struct("MemoryPage", fields)?;
        s.serialize_field("memories", &self.page.items)?;
        s.serialize_field("generation", &self.generation)?;
        s.serialize_field("next_cursor", &self.page.next_cursor)?;
        if let Some(note) = &self.note {
            s.serialize_field("note", note)?;
        }
        s.end()
    }
}
