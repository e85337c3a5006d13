//! The artifacts table in SQLite, and the one `Backend` implementation of this engine (the
//! memory methods forward to `memories.rs`).

use std::path::Path;
use std::sync::atomic::Ordering;

use rusqlite::{OptionalExtension, params};

use super::snapshot::SnapshotFile;
use crate::snapshot::{CopyProgress, SnapshotInfo};

use super::SqliteBackend;
use crate::artifact::{ArtifactInfo, Envelope, PutOutcome};
use crate::digest::Digest;
use crate::error::Result;
use crate::lock::Locks;
use crate::memory::{
    Cursor, Expect, Hit, Memory, MemoryChange, MemoryEvent, MemoryFilter, NamespaceInfo, NewMemory,
    Rows, SearchMode,
};
use crate::store::sqlite::errors::SqlContext;
use crate::store::{Backend, StoredArtifact};
use crate::time::now_rfc3339;

impl Backend for SqliteBackend {
    fn locks(&self) -> &dyn Locks {
        SqliteBackend::locks(self)
    }

    fn put_artifacts(&self, items: &[(&Digest, &Envelope, Digest)]) -> Result<Vec<PutOutcome>> {
        // No read before the write: an identical payload is found inside the transaction and
        // nothing is written (an empty commit costs no fsync), while a pooled read up front
        // cost every put a quarter of its throughput.
        let what = if items.len() == 1 {
            "storing an artifact"
        } else {
            "storing a batch of artifacts"
        };
        let now_ms = crate::artifact::cache::now_ms();
        self.write(what, |tx| {
            self.fold_counters(tx)?;
            items
                .iter()
                .map(|(digest, envelope, sha)| put_row(tx, digest, envelope, sha, now_ms))
                .collect()
        })
    }

    fn get_artifact(&self, digest: &Digest) -> Result<Option<StoredArtifact>> {
        let found = self.read(|conn| {
            conn.prepare_cached(
                "SELECT a.envelope, a.sha256, a.state_type, a.state_version,
                        coalesce(a.last_used_ms, 0), c.touch_interval_ms
                 FROM artifacts a, artifact_cache c WHERE a.digest = ?1 AND c.only = 0",
            )
            .and_then(|mut stmt| {
                stmt.query_row([digest.as_str()], |r| {
                    Ok((
                        StoredArtifact {
                            bytes: r.get(0)?,
                            sha256: r.get(1)?,
                            state_type: r.get(2)?,
                            state_version: r.get(3)?,
                        },
                        r.get::<_, i64>(4)?,
                        r.get::<_, i64>(5)?,
                    ))
                })
                .optional()
            })
            .context("reading an artifact")
        })?;
        let Some((stored, last_used_ms, interval_ms)) = found else {
            self.misses.fetch_add(1, Ordering::Relaxed);
            return Ok(None);
        };
        self.hits.fetch_add(1, Ordering::Relaxed);
        let now_ms = crate::artifact::cache::now_ms();
        if now_ms.saturating_sub(last_used_ms) >= interval_ms {
            self.touch(digest, now_ms);
        }
        Ok(Some(stored))
    }

    fn list_artifacts(&self) -> Result<Vec<ArtifactInfo>> {
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

    fn delete_artifact(&self, digest: &Digest) -> Result<bool> {
        self.write("deleting an artifact", |tx| {
            let n = tx
                .execute("DELETE FROM artifacts WHERE digest = ?1", [digest.as_str()])
                .context("deleting an artifact")?;
            Ok(n > 0)
        })
    }

    fn add_memories(&self, memories: Vec<NewMemory>, writer: &str) -> Result<Vec<Memory>> {
        self.add_memories_sql(memories, writer)
    }

    fn get_memory(&self, id: &str) -> Result<Option<Memory>> {
        self.get_memory_sql(id)
    }

    fn list_memories(&self, filter: &MemoryFilter, after: Option<&Cursor>) -> Result<Rows<Memory>> {
        self.list_memories_sql(filter, after)
    }

    fn search_memories(
        &self,
        mode: &SearchMode,
        filter: &MemoryFilter,
        after: Option<&Cursor>,
    ) -> Result<Rows<Hit>> {
        self.search_memories_sql(mode, filter, after)
    }

    fn update_memory(
        &self,
        id: &str,
        change: &MemoryChange,
        expect: Expect,
        writer: &str,
    ) -> Result<Memory> {
        self.update_memory_sql(id, change, expect, writer)
    }

    fn delete_memory(&self, id: &str, expect: Expect, writer: &str) -> Result<u64> {
        self.delete_memory_sql(id, expect, writer)
    }

    fn refresh_expiry(&self, due: &[(String, String)], now: &str) -> Result<Vec<String>> {
        self.refresh_expiry_sql(due, now)
    }

    fn memory_history(&self, id: &str) -> Result<Vec<MemoryEvent>> {
        self.memory_history_sql(id)
    }

    fn prune_history(&self, cutoff: &str) -> Result<u64> {
        self.prune_history_sql(cutoff)
    }

    fn sweep_expired(&self, now: &str) -> Result<u64> {
        self.sweep_expired_sql(now)
    }

    fn namespaces(&self, prefix: &str, now: &str) -> Result<Vec<NamespaceInfo>> {
        self.namespaces_sql(prefix, now)
    }

    fn set_namespace_ttl(&self, namespace: &str, seconds: Option<u64>) -> Result<()> {
        self.set_namespace_ttl_sql(namespace, seconds)
    }

    fn memory_generation(&self, namespace: &str) -> Result<u64> {
        self.memory_generation_sql(namespace)
    }

    fn export_snapshot(
        &self,
        into: &Path,
        after_step: &mut dyn FnMut(CopyProgress),
    ) -> Result<SnapshotInfo> {
        self.export_snapshot_sql(into, after_step)
    }

    fn restore_snapshot(
        &self,
        file: &SnapshotFile,
        staging: &Path,
        before_copy: &mut dyn FnMut() -> Result<()>,
    ) -> Result<u32> {
        self.restore_snapshot_sql(file, staging, before_copy)
    }

    fn create_token(&self, token: &crate::token::TokenRow) -> Result<()> {
        self.create_token_sql(token)
    }

    fn tokens(&self) -> Result<Vec<crate::token::TokenInfo>> {
        self.tokens_sql()
    }

    fn token_by_hash(&self, hash: &str) -> Result<Option<crate::token::TokenInfo>> {
        self.token_by_hash_sql(hash)
    }

    fn revoke_token(&self, name: &str) -> Result<bool> {
        self.revoke_token_sql(name)
    }

    fn touch_token(&self, name: &str, at: &str) -> Result<()> {
        self.touch_token_sql(name, at)
    }

    fn put_vectors(&self, model: &str, rows: &[(String, u64, Vec<f32>)]) -> Result<usize> {
        self.put_vectors_sql(model, rows)
    }

    fn unembedded(
        &self,
        model: &str,
        namespace: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, u64, String)>> {
        self.unembedded_sql(model, namespace, after, limit)
    }

    fn vector_coverage(&self, model: &str) -> Result<(u64, u64)> {
        self.vector_coverage_sql(model)
    }

    fn nearest_memories(
        &self,
        model: &str,
        query: &[f32],
        filter: &MemoryFilter,
        after: Option<&Cursor>,
    ) -> Result<Rows<Hit>> {
        self.nearest_memories_sql(model, query, filter, after)
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
fn put_row(
    tx: &rusqlite::Transaction<'_>,
    digest: &Digest,
    envelope: &Envelope,
    sha: &Digest,
    now_ms: i64,
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
        "INSERT INTO artifacts (digest, envelope, sha256, size, state_type, state_version, created_at, last_used_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (digest) DO UPDATE SET
             envelope = excluded.envelope, sha256 = excluded.sha256, size = excluded.size,
             state_type = excluded.state_type, state_version = excluded.state_version,
             created_at = excluded.created_at, last_used_ms = excluded.last_used_ms",
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
            now_ms,
        ])
    })
    .context("storing an artifact")?;
    Ok(outcome)
}
