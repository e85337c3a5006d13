//! The storage backend boundary.
//!
//! A backend stores and fetches rows; it knows its engine's dialect, transactions and locks,
//! and nothing of the rules above it. Everything that does not depend on the engine (what an
//! envelope is, hashing, what a query means, file formats, retention) stays in the domain
//! modules, which call these methods. Ids, generations and "is it the same payload" are
//! decided inside the backend's write transaction, so the answer holds under concurrency.
//!
//! Every write method is one transaction: all of it commits or none of it does.

use crate::artifact::{ArtifactInfo, Envelope, PutOutcome};
use crate::digest::Digest;
use crate::error::Result;
use std::path::Path;

use crate::lock::Locks;
use crate::memory::{
    Cursor, Expect, Hit, Memory, MemoryChange, MemoryEvent, MemoryFilter, NamespaceInfo, NewMemory,
    Rows, SearchMode,
};
use crate::snapshot::{CopyProgress, SnapshotInfo};
use crate::store::SnapshotFile;

/// An artifact as a backend returns it: the stored bytes and what was recorded about them,
/// not yet checked against the recorded hash (the caller checks, whatever the engine).
#[derive(Clone, Debug)]
pub(crate) struct StoredArtifact {
    /// The envelope's bytes exactly as stored.
    pub bytes: Vec<u8>,
    /// The sha256 (hex) recorded when the bytes were stored.
    pub sha256: String,
    /// The envelope's `type`, recorded at put.
    pub state_type: String,
    /// The envelope's `version`, recorded at put.
    pub state_version: i64,
}

/// What a storage engine provides to the store.
pub(crate) trait Backend: Send + Sync {
    /// The store's cross-process locks.
    fn locks(&self) -> &dyn Locks;

    /// Stores each `(digest, envelope, sha256 of the envelope)` in one transaction. Identical
    /// bytes, or other bytes of the same JSON, are `Unchanged` and not written.
    fn put_artifacts(&self, items: &[(&Digest, &Envelope, Digest)]) -> Result<Vec<PutOutcome>>;

    /// The artifact stored under `digest`, if any.
    fn get_artifact(&self, digest: &Digest) -> Result<Option<StoredArtifact>>;

    /// Every stored artifact, by digest.
    fn list_artifacts(&self) -> Result<Vec<ArtifactInfo>>;

    /// Removes `digest`; `false` if it was not stored.
    fn delete_artifact(&self, digest: &Digest) -> Result<bool>;

    /// Adds validated memories in one transaction, each with a new id (time-sortable, larger
    /// than every id before) and the next stamp as its version and its namespace's generation.
    /// Each superseded memory is marked in the same transaction (refused if absent, expired,
    /// already superseded, or if that would make a cycle); `writer` goes into the history.
    fn add_memories(&self, memories: Vec<NewMemory>, writer: &str) -> Result<Vec<Memory>>;

    /// The memory with this (well-formed) id, unless it has expired.
    fn get_memory(&self, id: &str) -> Result<Option<Memory>>;

    /// Memories matching the filter, newest first, after the cursor: up to one more than the
    /// filter's limit, read in one transaction.
    fn list_memories(&self, filter: &MemoryFilter, after: Option<&Cursor>) -> Result<Rows<Memory>>;

    /// Searches in one read transaction — by score then id, strictly after the cursor, among
    /// memories not written since the cursor's snapshot; up to one more than the filter's
    /// limit. A ranked search scores with the cursor's statistics, or on a first page with
    /// the collection's as of this transaction, and answers with the statistics it used.
    fn search_memories(
        &self,
        mode: &SearchMode,
        filter: &MemoryFilter,
        after: Option<&Cursor>,
    ) -> Result<Rows<Hit>>;

    /// Changes a memory's fields, checking `expect` against the memory as it is inside the
    /// writing transaction, and records the event.
    fn update_memory(
        &self,
        id: &str,
        change: &MemoryChange,
        expect: Expect,
        writer: &str,
    ) -> Result<Memory>;

    /// Removes a memory, checking `expect` inside the writing transaction; answers the
    /// namespace's new generation.
    fn delete_memory(&self, id: &str, expect: Expect, writer: &str) -> Result<u64>;

    /// Sets `expires_at` of each `(id, new expiry)` that has not expired at `now`, only if
    /// that moves it forward — without ever waiting for a writer: when the write lock or a
    /// row is busy, it does nothing. Answers the ids it pushed.
    fn refresh_expiry(&self, due: &[(String, String)], now: &str) -> Result<Vec<String>>;

    /// The history of a memory, oldest first.
    fn memory_history(&self, id: &str) -> Result<Vec<MemoryEvent>>;

    /// Removes history events recorded before `cutoff` (RFC 3339); answers how many.
    fn prune_history(&self, cutoff: &str) -> Result<u64>;

    /// Removes memories expired at `now`, each with an `expire` event; answers how many.
    fn sweep_expired(&self, now: &str) -> Result<u64>;

    /// Namespaces starting with `prefix`, with their counts of memories visible at `now`.
    fn namespaces(&self, prefix: &str, now: &str) -> Result<Vec<NamespaceInfo>>;

    /// Sets a namespace's default lifetime (seconds) for new memories.
    fn set_namespace_ttl(&self, namespace: &str, seconds: Option<u64>) -> Result<()>;

    /// A namespace's generation (0 if never written).
    fn memory_generation(&self, namespace: &str) -> Result<u64>;

    /// Copies the whole store, as of one instant and while writers go on, into the empty file
    /// `into` in the portable snapshot format (a self-contained SQLite database), and checks
    /// the copy. `after_step` runs after each chunk, for progress.
    fn export_snapshot(
        &self,
        into: &Path,
        after_step: &mut dyn FnMut(CopyProgress),
    ) -> Result<SnapshotInfo>;

    /// Replaces the store's content with the verified snapshot `file` in one transaction,
    /// migrated to this binary's schema, with every generation and version moved past what
    /// the store handed out before. `staging` is an empty private file the backend may use.
    /// The caller holds the global lock exclusively; `before_copy` runs once nothing else can
    /// write and before anything changes. Returns the schema version afterwards.
    fn restore_snapshot(
        &self,
        file: &SnapshotFile,
        staging: &Path,
        before_copy: &mut dyn FnMut() -> Result<()>,
    ) -> Result<u32>;

    /// Stores a new token; a name in use is `Invalid`.
    fn create_token(&self, token: &crate::token::TokenRow) -> Result<()>;

    /// Every token, by name.
    fn tokens(&self) -> Result<Vec<crate::token::TokenInfo>>;

    /// The token with this hash, if any.
    fn token_by_hash(&self, hash: &str) -> Result<Option<crate::token::TokenInfo>>;

    /// Removes the token `name`; `false` if there was none.
    fn revoke_token(&self, name: &str) -> Result<bool>;

    /// Sets when `name` was last used (only forward, to the minute: a busy token costs one
    /// write a minute, not one a request).
    fn touch_token(&self, name: &str, at: &str) -> Result<()>;

    /// Stores vectors computed by embedding model `model` (`name@dimension`) in one
    /// transaction: each `(memory id, version it was computed from, vector)` only if that
    /// memory still exists at that version (otherwise it changed meanwhile and is skipped:
    /// `memory embed` picks it up later), replacing an older vector of the same memory and
    /// model. Vectors arrive L2-normalised and already quantised through
    /// [`Quantized`](crate::embed::Quantized), so every engine compares the same values.
    /// Answers how many were stored. A memory's vectors go when its text changes (in the
    /// update's transaction) and when it is deleted, swept or pruned.
    fn put_vectors(&self, model: &str, rows: &[(String, u64, Vec<f32>)]) -> Result<usize>;

    /// Up to `limit` live (not expired) memories — of `namespace`, when given — that have no
    /// vector of `model`, as `(id, version, text)` in id order after `after`: resumable
    /// batches for `memory embed`.
    fn unembedded(
        &self,
        model: &str,
        namespace: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, u64, String)>>;

    /// How many live memories have a vector of `model`, and how many lack one.
    fn vector_coverage(&self, model: &str) -> Result<(u64, u64)>;

    /// Memories with a vector of `model`, most similar to `query` (cosine, on the stored
    /// values) first, then by id descending; the hit's score is the similarity. Same rules as
    /// [`Backend::search_memories`]: the filter applies, strictly after the cursor's (score,
    /// id), among memories not written since the cursor's snapshot, up to one more than the
    /// filter's limit (all of them without one), in one read transaction.
    fn nearest_memories(
        &self,
        model: &str,
        query: &[f32],
        filter: &MemoryFilter,
        after: Option<&Cursor>,
    ) -> Result<Rows<Hit>>;
}

/// What an engine provides for looking after a store (`doctor`, `stats`, `artifact prune`,
/// `vacuum`, `memory export`/`import`). Kept apart from [`Backend`] so the everyday data path
/// stays small; the rules (what a prune removes, what an import line must hold) stay in
/// `maintenance.rs`.
pub(crate) trait Maintenance: Send + Sync {
    /// Counts and sizes.
    fn stats(&self) -> Result<crate::maintenance::Stats>;

    /// The engine's integrity check and the full-text index against the memory rows.
    fn check_integrity(&self) -> Result<crate::maintenance::IntegrityReport>;

    /// The cache's totals, stored policy and counters (read from one row: no scan); with
    /// `pins`, also the leases that have not expired and their bytes.
    fn cache_stats(&self, pins: bool) -> Result<crate::artifact::cache::CacheStats>;

    /// Stores the cache policy, and the touch interval (ms) when given.
    fn set_cache_policy(
        &self,
        policy: &crate::artifact::cache::CachePolicy,
        touch_interval_ms: Option<i64>,
    ) -> Result<()>;

    /// Leases `digest` until `expires_ms` (`None`: until unpinned); `false` if not stored.
    fn pin_artifact(&self, digest: &Digest, expires_ms: Option<i64>) -> Result<bool>;

    /// Removes `digest`'s lease; `false` if it had none.
    fn unpin_artifact(&self, digest: &Digest) -> Result<bool>;

    /// One collection: in one write transaction (a read one when `dry_run`), reads the cache
    /// row and every artifact least recently used first, asks `choose`, removes what it chose
    /// and records what was done (a collection that freed nothing puts the next automatic one
    /// an interval ahead). `None` when `choose` finds the store within its policy.
    fn collect_artifacts(
        &self,
        choose: &mut dyn FnMut(
            &crate::artifact::cache::CacheStats,
            &[crate::artifact::cache::Candidate],
        ) -> Result<crate::artifact::cache::Plan>,
        dry_run: bool,
        now_ms: i64,
    ) -> Result<Option<crate::artifact::cache::Collection>>;

    /// Rebuilds the storage so freed space goes back to the file system. The caller holds
    /// the global lock.
    fn vacuum(&self) -> Result<()>;

    /// Every memory (of `namespace`), oldest id first, with its own fields.
    fn export_memories(
        &self,
        namespace: Option<&str>,
    ) -> Result<Vec<crate::maintenance::ExportedMemory>>;

    /// Adds checked memories (with the line each came from) in one transaction; see
    /// [`Store::import_memories`](crate::Store::import_memories).
    fn import_memories(
        &self,
        memories: &[(usize, crate::maintenance::ExportedMemory)],
    ) -> Result<crate::maintenance::ImportReport>;
}

/// A whole storage engine as the store holds it: the data path, the maintenance side, and
/// what the store reports about itself.
pub(crate) trait Engine: Backend + Maintenance {
    /// Where the data lives.
    fn location(&self) -> &crate::store::Location;

    /// The settings the store was opened with.
    fn options(&self) -> &crate::store::Options;

    /// Whether this opener created the database.
    fn created(&self) -> bool;

    /// The schema version after opening.
    fn schema_version(&self) -> u32;

    /// Whether writes are possible.
    fn is_writable(&self) -> bool;

    /// Gives back space the engine holds only for a while (SQLite: empties the WAL without
    /// waiting for anyone); nothing to do where the engine looks after it itself.
    fn shrink_wal(&self) -> Result<()>;
}
