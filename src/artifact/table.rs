//! The artifacts table: put, get (hash-checked), contains, list, delete.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::Envelope;
use crate::digest::Digest;
use crate::error::{Error, Result, SqlContext};
use crate::lock::now_rfc3339;
use crate::store::Store;

/// What a put did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PutOutcome {
    /// The digest was new.
    Inserted,
    /// The same bytes were already stored; nothing was written.
    Unchanged,
    /// A different payload was stored under this digest and has been replaced.
    Replaced,
}

/// One row of `artifact ls`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ArtifactInfo {
    pub digest: String,
    #[serde(rename = "type")]
    pub state_type: String,
    pub version: i64,
    pub bytes: i64,
    pub sha256: String,
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
        // No read before the write: an identical payload is found inside the transaction and
        // nothing is written (an empty commit costs no fsync), while a pooled read up front
        // cost every put a quarter of its throughput.
        self.write("storing an artifact", |tx| {
            put_row(tx, digest, envelope, &sha)
        })
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
        self.write("storing a batch of artifacts", |tx| {
            items
                .iter()
                .map(|(digest, envelope, sha)| put_row(tx, digest, envelope, sha))
                .collect()
        })
    }

    /// The stored envelope, its hash verified; `None` if absent.
    pub fn get(&self, digest: &Digest) -> Result<Option<Envelope>> {
        type Row = (Vec<u8>, String, String, i64);
        let row: Option<Row> = self.read(|conn| {
            conn.prepare_cached(
                "SELECT envelope, sha256, state_type, state_version FROM artifacts WHERE digest = ?1",
            )
            .and_then(|mut stmt| {
                stmt.query_row([digest.as_str()], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })
                .optional()
            })
            .context("reading an artifact")
        })?;
        let Some((bytes, stored_sha, state_type, state_version)) = row else {
            return Ok(None);
        };
        if Digest::of(&bytes).hex() != stored_sha {
            return Err(Error::Integrity(format!(
                "artifact {digest} is corrupted: its payload no longer matches its stored sha256; remove it with `modstate artifact rm` and store it again, or restore a snapshot"
            )));
        }
        Ok(Some(Envelope::from_stored(
            bytes,
            state_type,
            state_version,
        )))
    }

    /// Whether `digest` is stored.
    pub fn contains(&self, digest: &Digest) -> Result<bool> {
        Ok(self.stored_sha(digest)?.is_some())
    }

    /// Every stored artifact, by digest.
    pub fn list(&self) -> Result<Vec<ArtifactInfo>> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT digest, state_type, state_version, size, sha256, created_at
                     FROM artifacts ORDER BY digest",
                )
                .context("listing artifacts")?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(ArtifactInfo {
                        digest: r.get(0)?,
                        state_type: r.get(1)?,
                        version: r.get(2)?,
                        bytes: r.get(3)?,
                        sha256: r.get(4)?,
                        created_at: r.get(5)?,
                    })
                })
                .context("listing artifacts")?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
                .context("listing artifacts")
        })
    }

    /// Removes `digest`; `false` if it was not stored.
    pub fn delete(&self, digest: &Digest) -> Result<bool> {
        self.write("deleting an artifact", |tx| {
            let n = tx
                .execute("DELETE FROM artifacts WHERE digest = ?1", [digest.as_str()])
                .context("deleting an artifact")?;
            Ok(n > 0)
        })
    }

    fn stored_sha(&self, digest: &Digest) -> Result<Option<String>> {
        self.read(|conn| {
            conn.prepare_cached("SELECT sha256 FROM artifacts WHERE digest = ?1")
                .and_then(|mut stmt| stmt.query_row([digest.as_str()], |r| r.get(0)).optional())
                .context("looking up an artifact")
        })
    }
}

/// Whether the envelope stored under `digest` holds the same JSON as `envelope`. Only asked
/// when the bytes differ, so the common put pays nothing for it.
fn same_json_stored(
    tx: &rusqlite::Transaction<'_>,
    digest: &Digest,
    envelope: &Envelope,
) -> Result<bool> {
    let stored: Vec<u8> = tx
        .prepare_cached("SELECT envelope FROM artifacts WHERE digest = ?1")
        .and_then(|mut stmt| stmt.query_row([digest.as_str()], |r| r.get(0)))
        .context("looking up an artifact")?;
    Ok(envelope.same_json(&stored))
}

/// Inserts or replaces one artifact row inside the caller's write transaction.
pub(crate) fn put_row(
    tx: &rusqlite::Transaction<'_>,
    digest: &Digest,
    envelope: &Envelope,
    sha: &Digest,
) -> Result<PutOutcome> {
    let existing: Option<String> = tx
        .prepare_cached("SELECT sha256 FROM artifacts WHERE digest = ?1")
        .and_then(|mut stmt| stmt.query_row([digest.as_str()], |r| r.get(0)).optional())
        .context("looking up an artifact")?;
    let outcome = match existing {
        Some(old) if old == sha.hex() => return Ok(PutOutcome::Unchanged),
        // Other bytes, maybe the same JSON: an exported artifact file imported again is
        // pretty-printed where the stored envelope was compact. Keep the stored bytes.
        Some(_) if same_json_stored(tx, digest, envelope)? => return Ok(PutOutcome::Unchanged),
        Some(_) => PutOutcome::Replaced,
        None => PutOutcome::Inserted,
    };
    tx.prepare_cached(
        "INSERT INTO artifacts (digest, envelope, sha256, size, state_type, state_version, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (digest) DO UPDATE SET
             envelope = excluded.envelope, sha256 = excluded.sha256, size = excluded.size,
             state_type = excluded.state_type, state_version = excluded.state_version,
             created_at = excluded.created_at",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            digest.as_str(),
            envelope.as_bytes(),
            sha.hex(),
            envelope.as_bytes().len() as i64,
            envelope.state_type(),
            envelope.state_version(),
            now_rfc3339(),
        ])
    })
    .context("storing an artifact")?;
    Ok(outcome)
}
