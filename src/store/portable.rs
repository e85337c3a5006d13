//! The rows a snapshot carries, whatever engine they come from or go to.
//!
//! The snapshot format is a SQLite database (see `sqlite/snapshot.rs`). A SQLite store copies
//! it page by page; another engine moves it row by row through these types: export reads its
//! rows in one consistent transaction and hands them to the SQLite snapshot writer, restore
//! reads them back from a staged, migrated snapshot (`sqlite/portable.rs`). The stamps of the
//! drift guard (the counter, each namespace's generation) travel as plain values beside them.

/// One artifact row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ArtifactRow {
    /// The module source digest (`sha256:<hex>`).
    pub digest: String,
    /// The envelope's bytes exactly as stored.
    pub envelope: Vec<u8>,
    /// The sha256 (hex) of `envelope`.
    pub sha256: String,
    /// The envelope's `type`.
    pub state_type: String,
    /// The envelope's `version`.
    pub state_version: i64,
    /// When it was stored (RFC 3339).
    pub created_at: String,
}

/// One memory row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MemoryRow {
    /// The public id (UUIDv7 text).
    pub id: String,
    /// Its namespace.
    pub namespace: String,
    /// Its category.
    pub category: String,
    /// Its text.
    pub body: String,
    /// When it was added (RFC 3339).
    pub created_at: String,
    /// When it was last written (RFC 3339).
    pub updated_at: String,
    /// The stamp of its last write.
    pub version: u64,
    /// Its metadata, as JSON text (an object).
    pub metadata: String,
    /// Its tags, as JSON text (an array).
    pub tags: String,
    /// When it expires (RFC 3339), if ever.
    pub expires_at: Option<String>,
    /// The lifetime its expiry was set from, in seconds.
    pub ttl_seconds: Option<i64>,
    /// Whether reads push its expiry forward.
    pub refresh_on_read: bool,
    /// The memory that superseded it.
    pub superseded_by: Option<String>,
}

impl MemoryRow {
    /// Whether it carries any of the issue-27 fields (a restore writes those in a second
    /// step, only for the rows that have them).
    pub(crate) fn has_model(&self) -> bool {
        self.metadata != "{}"
            || self.tags != "[]"
            || self.expires_at.is_some()
            || self.ttl_seconds.is_some()
            || self.refresh_on_read
            || self.superseded_by.is_some()
    }
}

/// One memory's vector of one embedding model (issue 25).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct VectorRow {
    /// The memory's public id.
    pub memory_id: String,
    /// The model id (`name@dimension`).
    pub model: String,
    /// The memory version it was computed from.
    pub version: u64,
    /// The stored form, [`Quantized::to_bytes`](crate::embed::Quantized::to_bytes): exactly
    /// SQLite's blob.
    pub vector: Vec<u8>,
}
