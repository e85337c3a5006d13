//! The artifacts table on PostgreSQL, and this engine's one `Backend` implementation (the
//! memory and snapshot methods forward to `memories.rs` and `snapshot.rs`).

use std::path::Path;
use std::sync::atomic::Ordering;

use postgres::types::ToSql;
use postgres::{GenericClient, Statement, Transaction};

use super::PgBackend;
use super::errors::PgContext;
use crate::artifact::{ArtifactInfo, Envelope, PutOutcome};
use crate::digest::Digest;
use crate::error::Result;
use crate::lock::Locks;
use crate::memory::{
    Cursor, Expect, Hit, Memory, MemoryChange, MemoryEvent, MemoryFilter, NamespaceInfo, NewMemory,
    Rows, SearchMode,
};
use crate::snapshot::{CopyProgress, SnapshotInfo};
use crate::store::{Backend, SnapshotFile, StoredArtifact};
use crate::time::now_rfc3339;

impl Backend for PgBackend {
    fn locks(&self) -> &dyn Locks {
        &self.locks
    }

    fn put_artifacts(&self, items: &[(&Digest, &Envelope, Digest)]) -> Result<Vec<PutOutcome>> {
        let what = if items.len() == 1 {
            "storing an artifact"
        } else {
            "storing a batch of artifacts"
        };
        let mut conn = self.connection()?;
        // Cheap: one statement only when this process has counted reads since its last write.
        self.fold_counters(&mut *conn)?;
        let insert = conn.prepared(INSERT)?;
        // One statement is one transaction: a new digest, the common put, costs one round
        // trip (and a new connection prepares nothing else). A digest already stored takes
        // the transaction below, which decides what to do with the row locked.
        if let [(digest, envelope, sha)] = items
            && insert_row(&mut *conn, &insert, digest, envelope, sha, what)?
        {
            return Ok(vec![PutOutcome::Inserted]);
        }
        let statements = Statements {
            insert,
            lock: conn.prepared(LOCK)?,
            update: conn.prepared(UPDATE)?,
        };
        // In digest order: two batches that share digests then wait for each other's rows in
        // one order and cannot deadlock. The sort is stable, so repeats of one digest keep
        // their order (and their outcomes, as one after another on SQLite).
        let mut order: Vec<usize> = (0..items.len()).collect();
        order.sort_by(|&a, &b| items[a].0.as_str().cmp(items[b].0.as_str()));
        let mut outcomes = vec![None; items.len()];
        let mut tx = conn.transaction().context(what)?;
        for i in order {
            let (digest, envelope, sha) = &items[i];
            outcomes[i] = Some(put_row(&mut tx, &statements, digest, envelope, sha)?);
        }
        tx.commit().context(what)?;
        Ok(outcomes.into_iter().flatten().collect())
    }

    fn get_artifact(&self, digest: &Digest) -> Result<Option<StoredArtifact>> {
        let mut conn = self.connection()?;
        let select = conn.prepared(
            "SELECT a.envelope, a.sha256, a.state_type, a.state_version,
                    coalesce(a.last_used_ms, 0), c.touch_interval_ms
             FROM artifacts a, artifact_cache c WHERE a.digest = $1 AND c.singleton = 0",
        )?;
        let row = conn
            .query_opt(&select, &[&digest.as_str()])
            .context("reading an artifact")?;
        drop(conn);
        let what = "reading an artifact";
        let Some(r) = row else {
            self.misses.fetch_add(1, Ordering::Relaxed);
            return Ok(None);
        };
        let stored = StoredArtifact {
            bytes: r.try_get(0).context(what)?,
            sha256: r.try_get(1).context(what)?,
            state_type: r.try_get(2).context(what)?,
            state_version: r.try_get(3).context(what)?,
        };
        self.hits.fetch_add(1, Ordering::Relaxed);
        let last_used_ms: i64 = r.try_get(4).context(what)?;
        let interval_ms: i64 = r.try_get(5).context(what)?;
        let now_ms = crate::artifact::cache::now_ms();
        if now_ms.saturating_sub(last_used_ms) >= interval_ms {
            self.touch(digest, now_ms);
        }
        Ok(Some(stored))
    }

    fn list_artifacts(&self) -> Result<Vec<ArtifactInfo>> {
        let mut conn = self.connection()?;
        let rows = conn
            .query(
                "SELECT digest, state_type, state_version, size, sha256, created_at
                 FROM artifacts ORDER BY digest",
                &[],
            )
            .context("listing artifacts")?;
        let what = "listing artifacts";
        rows.iter()
            .map(|r| {
                Ok(ArtifactInfo {
                    digest: r.try_get(0).context(what)?,
                    state_type: r.try_get(1).context(what)?,
                    version: r.try_get(2).context(what)?,
                    bytes: r.try_get(3).context(what)?,
                    sha256: r.try_get(4).context(what)?,
                    created_at: r.try_get(5).context(what)?,
                })
            })
            .collect()
    }

    fn delete_artifact(&self, digest: &Digest) -> Result<bool> {
        self.write("deleting an artifact", |tx| {
            let n = tx
                .execute(
                    "DELETE FROM artifacts WHERE digest = $1",
                    &[&digest.as_str()],
                )
                .context("deleting an artifact")?;
            Ok(n > 0)
        })
    }

    fn add_memories(&self, memories: Vec<NewMemory>, writer: &str) -> Result<Vec<Memory>> {
        self.add_memories_pg(memories, writer)
    }

    fn get_memory(&self, id: &str) -> Result<Option<Memory>> {
        self.get_memory_pg(id)
    }

    fn list_memories(&self, filter: &MemoryFilter, after: Option<&Cursor>) -> Result<Rows<Memory>> {
        self.list_memories_pg(filter, after)
    }

    fn search_memories(
        &self,
        mode: &SearchMode,
        filter: &MemoryFilter,
        after: Option<&Cursor>,
    ) -> Result<Rows<Hit>> {
        self.search_memories_pg(mode, filter, after)
    }

    fn update_memory(
        &self,
        id: &str,
        change: &MemoryChange,
        expect: Expect,
        writer: &str,
    ) -> Result<Memory> {
        self.update_memory_pg(id, change, expect, writer)
    }

    fn delete_memory(&self, id: &str, expect: Expect, writer: &str) -> Result<u64> {
        self.delete_memory_pg(id, expect, writer)
    }

    fn refresh_expiry(&self, due: &[(String, String)], now: &str) -> Result<Vec<String>> {
        self.refresh_expiry_pg(due, now)
    }

    fn memory_history(&self, id: &str) -> Result<Vec<MemoryEvent>> {
        self.memory_history_pg(id)
    }

    fn prune_history(&self, cutoff: &str) -> Result<u64> {
        self.prune_history_pg(cutoff)
    }

    fn sweep_expired(&self, now: &str) -> Result<u64> {
        self.sweep_expired_pg(now)
    }

    fn namespaces(&self, prefix: &str, now: &str) -> Result<Vec<NamespaceInfo>> {
        self.namespaces_pg(prefix, now)
    }

    fn set_namespace_ttl(&self, namespace: &str, seconds: Option<u64>) -> Result<()> {
        self.set_namespace_ttl_pg(namespace, seconds)
    }

    fn memory_generation(&self, namespace: &str) -> Result<u64> {
        self.memory_generation_pg(namespace)
    }

    fn export_snapshot(
        &self,
        into: &Path,
        after_step: &mut dyn FnMut(CopyProgress),
    ) -> Result<SnapshotInfo> {
        self.export_snapshot_pg(into, after_step)
    }

    fn restore_snapshot(
        &self,
        file: &SnapshotFile,
        staging: &Path,
        before_copy: &mut dyn FnMut() -> Result<()>,
    ) -> Result<u32> {
        self.restore_snapshot_pg(file, staging, before_copy)
    }

    fn create_token(&self, token: &crate::token::TokenRow) -> Result<()> {
        self.create_token_pg(token)
    }

    fn tokens(&self) -> Result<Vec<crate::token::TokenInfo>> {
        self.tokens_pg()
    }

    fn token_by_hash(&self, hash: &str) -> Result<Option<crate::token::TokenInfo>> {
        self.token_by_hash_pg(hash)
    }

    fn revoke_token(&self, name: &str) -> Result<bool> {
        self.revoke_token_pg(name)
    }

    fn touch_token(&self, name: &str, at: &str) -> Result<()> {
        self.touch_token_pg(name, at)
    }

    fn put_vectors(&self, model: &str, rows: &[(String, u64, Vec<f32>)]) -> Result<usize> {
        self.put_vectors_pg(model, rows)
    }

    fn unembedded(
        &self,
        model: &str,
        namespace: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, u64, String)>> {
        self.unembedded_pg(model, namespace, after, limit)
    }

    fn vector_coverage(&self, model: &str) -> Result<(u64, u64)> {
        self.vector_coverage_pg(model)
    }

    fn nearest_memories(
        &self,
        model: &str,
        query: &[f32],
        filter: &MemoryFilter,
        after: Option<&Cursor>,
    ) -> Result<Rows<Hit>> {
        self.nearest_memories_pg(model, query, filter, after)
    }
}

const INSERT: &str =
    "INSERT INTO artifacts (digest, envelope, sha256, size, state_type, state_version, created_at, last_used_ms)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
     ON CONFLICT (digest) DO NOTHING";
const LOCK: &str = "SELECT sha256, envelope FROM artifacts WHERE digest = $1 FOR UPDATE";
const UPDATE: &str = "UPDATE artifacts SET envelope = $2, sha256 = $3, size = $4, state_type = $5,
         state_version = $6, created_at = $7, last_used_ms = $8
     WHERE digest = $1";

/// The statements of a put, prepared on the connection that runs it.
struct Statements {
    insert: Statement,
    lock: Statement,
    update: Statement,
}

/// Inserts the row unless the digest is stored; whether it did.
fn insert_row(
    client: &mut impl GenericClient,
    insert: &Statement,
    digest: &Digest,
    envelope: &Envelope,
    sha: &Digest,
    what: &str,
) -> Result<bool> {
    let n = client
        .execute(insert, &RowValues::of(digest, envelope, sha).params())
        .context(what)?;
    Ok(n == 1)
}

/// The values of an artifact row, in the column order of [`INSERT`] and [`UPDATE`].
struct RowValues<'a> {
    digest: &'a str,
    envelope: &'a [u8],
    sha256: &'a str,
    size: i64,
    state_type: &'a str,
    state_version: i64,
    created_at: String,
    last_used_ms: i64,
}

impl<'a> RowValues<'a> {
    fn of(digest: &'a Digest, envelope: &'a Envelope, sha: &'a Digest) -> RowValues<'a> {
        RowValues {
            digest: digest.as_str(),
            envelope: envelope.as_bytes(),
            sha256: sha.hex(),
            size: envelope.as_bytes().len() as i64,
            state_type: envelope.state_type(),
            state_version: envelope.state_version(),
            created_at: now_rfc3339(),
            last_used_ms: crate::artifact::cache::now_ms(),
        }
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 8] {
        [
            &self.digest,
            &self.envelope,
            &self.sha256,
            &self.size,
            &self.state_type,
            &self.state_version,
            &self.created_at,
            &self.last_used_ms,
        ]
    }
}

/// Inserts or replaces one artifact row inside the caller's transaction. A stored row is
/// locked first, so two writers of one digest decide "unchanged" one after the other.
fn put_row(
    tx: &mut Transaction<'_>,
    statements: &Statements,
    digest: &Digest,
    envelope: &Envelope,
    sha: &Digest,
) -> Result<PutOutcome> {
    // A row removed between the insert and the lock (another process's `rm`) is inserted
    // again; after a few rounds of that, it is contention.
    let mut row = None;
    for _ in 0..3 {
        let what = "storing an artifact";
        if insert_row(tx, &statements.insert, digest, envelope, sha, what)? {
            return Ok(PutOutcome::Inserted);
        }
        row = tx
            .query_opt(&statements.lock, &[&digest.as_str()])
            .context("looking up an artifact")?;
        if row.is_some() {
            break;
        }
    }
    let Some(row) = row else {
        return Err(crate::error::Error::Busy(format!(
            "artifact {digest} was removed and stored again by others while this put ran; nothing was changed — retry"
        )));
    };
    let stored_sha: String = row.try_get(0).context("looking up an artifact")?;
    if stored_sha == sha.hex() {
        return Ok(PutOutcome::Unchanged);
    }
    // Other bytes, maybe the same JSON: an exported artifact file imported again is
    // pretty-printed where the stored envelope was compact. Keep the stored bytes.
    let stored: Vec<u8> = row.try_get(1).context("looking up an artifact")?;
    if envelope.same_json(&stored) {
        return Ok(PutOutcome::Unchanged);
    }
    tx.execute(
        &statements.update,
        &RowValues::of(digest, envelope, sha).params(),
    )
    .context("storing an artifact")?;
    Ok(PutOutcome::Replaced)
}
