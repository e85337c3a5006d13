//! The store's artifact operations: validation and hashing above the storage backend.

use serde::Serialize;

use super::Envelope;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::store::Store;

/// What a put did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PutOutcome {
    /// The digest was new.
    Inserted,
    /// The same bytes (or the same JSON in other bytes) were already stored; nothing was
    /// written.
    Unchanged,
    /// A different payload was stored under this digest and has been replaced.
    Replaced,
}

/// One row of `artifact ls`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ArtifactInfo {
    /// The module source digest the artifact is stored under.
    pub digest: String,
    /// The envelope's `type`.
    #[serde(rename = "type")]
    pub state_type: String,
    /// The envelope's `version`.
    pub version: i64,
    /// The envelope's size in bytes.
    pub bytes: i64,
    /// The envelope's sha256 (hex).
    pub sha256: String,
    /// When it was stored (RFC 3339 UTC).
    pub created_at: String,
}

impl Store {
    /// Parses and validates `bytes` as an envelope under this store's size limit.
    pub fn envelope(&self, bytes: Vec<u8>) -> Result<Envelope> {
        Envelope::parse(bytes, self.options().max_artifact_bytes)
    }

    /// Stores `envelope` under `digest`. Identical bytes are a no-op; different bytes replace
    /// the stored payload and say so.
    pub fn put(&self, digest: &Digest, envelope: &Envelope) -> Result<PutOutcome> {
        let sha = Digest::of(envelope.as_bytes());
        let mut outcomes = self.backend().put_artifacts(&[(digest, envelope, sha)])?;
        let outcome = outcomes.pop().unwrap_or(PutOutcome::Unchanged);
        if outcome != PutOutcome::Unchanged {
            self.after_artifact_write();
        }
        Ok(outcome)
    }

    /// Stores many artifacts in one transaction under one write-lock hold: all or nothing.
    /// The items are validated envelopes already, so only the database can refuse the batch.
    pub fn put_many<'a>(
        &self,
        items: impl IntoIterator<Item = (&'a Digest, &'a Envelope)>,
    ) -> Result<Vec<PutOutcome>> {
        let items: Vec<(&Digest, &Envelope, Digest)> = items
            .into_iter()
            .map(|(digest, envelope)| (digest, envelope, Digest::of(envelope.as_bytes())))
            .collect();
        let outcomes = self.backend().put_artifacts(&items)?;
        if outcomes.iter().any(|o| *o != PutOutcome::Unchanged) {
            self.after_artifact_write();
        }
        Ok(outcomes)
    }

    /// The stored envelope, its hash verified on every read whatever the engine; `None` if
    /// absent.
    pub fn get(&self, digest: &Digest) -> Result<Option<Envelope>> {
        let Some(stored) = self.backend().get_artifact(digest)? else {
            return Ok(None);
        };
        if Digest::of(&stored.bytes).hex() != stored.sha256 {
            return Err(Error::Integrity(format!(
                "artifact {digest} is corrupted: its payload no longer matches its stored sha256; remove it with `modstate artifact rm` and store it again, or restore a snapshot"
            )));
        }
        Ok(Some(Envelope::from_stored(
            stored.bytes,
            stored.state_type,
            stored.state_version,
        )))
    }

    /// Whether `digest` is stored.
    pub fn contains(&self, digest: &Digest) -> Result<bool> {
        Ok(self.backend().get_artifact(digest)?.is_some())
    }

    /// Every stored artifact, by digest.
    pub fn list(&self) -> Result<Vec<ArtifactInfo>> {
        self.backend().list_artifacts()
    }

    /// Removes `digest`; `false` if it was not stored.
    pub fn delete(&self, digest: &Digest) -> Result<bool> {
        self.backend().delete_artifact(digest)
    }
}
