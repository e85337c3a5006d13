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

/// An artifact as a backend returns it: the stored bytes and what was recorded about them,
/// not yet checked against the recorded hash (the caller checks, whatever the engine).
#[derive(Clone, Debug)]
pub struct StoredArtifact {
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
pub trait Backend: Send + Sync {
    /// Stores each `(digest, envelope, sha256 of the envelope)` in one transaction. Identical
    /// bytes, or other bytes of the same JSON, are `Unchanged` and not written.
    fn put_artifacts(&self, items: &[(&Digest, &Envelope, Digest)]) -> Result<Vec<PutOutcome>>;

    /// The artifact stored under `digest`, if any.
    fn get_artifact(&self, digest: &Digest) -> Result<Option<StoredArtifact>>;

    /// Every stored artifact, by digest.
    fn list_artifacts(&self) -> Result<Vec<ArtifactInfo>>;

    /// Removes `digest`; `false` if it was not stored.
    fn delete_artifact(&self, digest: &Digest) -> Result<bool>;
}
