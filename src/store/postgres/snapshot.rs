//! Snapshots on PostgreSQL: the same portable file a SQLite store writes (a self-contained
//! SQLite database of this binary's schema), written from and read into this engine row by
//! row through `sqlite/portable.rs`.
//!
//! Export reads everything in ONE `REPEATABLE READ READ ONLY` transaction: one snapshot of
//! the database, taken at its first statement, for every table, while writers go on and
//! nobody waits. Not `SERIALIZABLE READ ONLY DEFERRABLE`: its extra promise (no state that no
//! serial order of the *serializable* writers could produce) covers only serializable writers,
//! and modstate's writers run in READ COMMITTED with the rows they depend on locked, each
//! write one transaction; snapshot isolation already shows every such transaction entirely
//! or not at all. DEFERRABLE would also make the export wait, for an unbounded time, for a
//! moment free of concurrent serializable transactions.
//!
//! Restore, straight-line; the data changes only in step 4, one transaction, so a crash or a
//! lost connection at any step leaves the store as it was or fully restored:
//! 1. stage the verified snapshot into a private file and migrate it to this binary's schema;
//! 2. begin; lock the tables against writers (readers go on, seeing the old state until the
//!    commit) and the counter row, and read the live counter;
//! 3. the safety snapshot (`before_copy`), which therefore holds the exact state replaced;
//! 4. replace the rows (artifacts and memory vectors by binary COPY, memories by multi-row
//!    INSERTs that compute the full-text vector on the server), move every stamp past what
//!    either side handed out, commit.

use std::path::Path;

use postgres::Transaction;
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::{ToSql, Type};

use super::PgBackend;
use super::errors::PgContext;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::memory::grams;
use crate::snapshot::{CopyProgress, SnapshotInfo};
use crate::store::SnapshotFile;
use crate::store::portable::{ArtifactRow, MemoryRow, VectorRow};
use crate::store::sqlite::portable::{PortableReader, PortableWriter};

/// The page size progress is counted in: SQLite's default, which the snapshot file uses, so
/// a progress display shows about the bytes being written.
const PROGRESS_PAGE_SIZE: u64 = 4096;

/// Progress is reported after about this many bytes of rows.
const PROGRESS_EVERY_BYTES: u64 = 4 * 1024 * 1024;

/// Namespaces inserted per statement on restore.
const NAMESPACES_PER_STATEMENT: usize = 1000;

/// Memories inserted per statement on restore (8 parameters each, far below the protocol's
/// 65,535), unless they reach [`BYTES_PER_STATEMENT`] first.
const MEMORIES_PER_STATEMENT: usize = 500;

/// Text held for one restore statement at most (bodies of up to 64 KiB, with their grams).
const BYTES_PER_STATEMENT: usize = 8 * 1024 * 1024;

/// No parameters, for `query_raw`.
fn no_params() -> std::iter::Empty<&'static (dyn ToSql + Sync)> {
    std::iter::empty()
}

impl PgBackend {
    /// Writes the whole store, as of one instant, into the empty file `into` in the portable
    /// snapshot format, and checks the file. Rows are streamed from the server one at a time
    /// (never the whole table in memory); `after_step` hears how far the copy has got, in
    /// bytes of rows mapped onto 4 KiB pages.
    pub(crate) fn export_snapshot_pg(
        &self,
        into: &Path,
        after_step: &mut dyn FnMut(CopyProgress),
    ) -> Result<SnapshotInfo> {
        let what = "exporting a snapshot";
        // 1. The snapshot file: this binary's schema, its one write transaction open.
        let mut writer = PortableWriter::create(into)?;

        // 2. One REPEATABLE READ READ ONLY transaction (see the module doc): every statement
        //    in it reads the instant of the first one; the transaction ends (and stops holding
        //    back the server's cleanup of old rows) before the file is checked.
        self.read(what, |tx| {
            export_rows(tx, &mut writer, after_step, self.display())
        })?;

        // 7. Commit the file, make it self-contained and check it.
        writer.finish()
    }

    /// Replaces the store's content with the verified snapshot `file` (see the module doc for
    /// the steps), through the empty private file `staging`. The caller holds the global lock
    /// exclusively; `before_copy` (the safety snapshot) runs once no writer can commit and
    /// before anything changes. Returns the schema version of the restored content.
    pub(crate) fn restore_snapshot_pg(
        &self,
        file: &SnapshotFile,
        staging: &Path,
        before_copy: &mut dyn FnMut() -> Result<()>,
    ) -> Result<u32> {
        let what = "restoring a snapshot";
        // 1. Stage the verified snapshot (from the read transaction it was verified in) and
        //    migrate the staged copy to this binary's schema. Nothing on the server yet.
        let staged = PortableReader::stage(file, staging, self.options.busy_timeout)?;
        let restored_counter = staged.counter()?;

        // 2. One READ COMMITTED transaction. EXCLUSIVE table locks keep every writer out
        //    (they wait, up to their lock timeout) while plain reads go on and see the old
        //    state until the commit. The order is the one memory writers take (counter
        //    first), so no writer holds one of these while waiting for another.
        let mut conn = self.connection()?;
        let mut tx = conn.transaction().context(what)?;
        tx.batch_execute(
            "LOCK TABLE memory_counter, memories, memory_namespaces, artifacts, memory_events IN EXCLUSIVE MODE",
        )
        .context("locking the store for a restore")?;
        //    The live counter, its row locked: the last stamp this store handed out.
        let live_counter: i64 = tx
            .query_one(
                "SELECT value FROM memory_counter WHERE singleton = 0 FOR UPDATE",
                &[],
            )
            .context(what)?
            .try_get(0)
            .context(what)?;

        // 3. The safety snapshot, on another connection: nothing can commit a write now, so
        //    it holds exactly the state this restore replaces.
        before_copy()?;

        // 4. Replace the content. Every stamp goes past what the live store or the snapshot
        //    handed out (`sqlite/stamps.rs`, `advance_after_restore`: no ABA): the counter
        //    becomes max(live, restored) + 1 and every memory version and namespace generation
        //    that value.
        let next = non_negative(live_counter).max(restored_counter) + 1;
        let next = i64::try_from(next).map_err(|_| {
            Error::Invalid(format!(
                "the memory counter would pass {} after this restore; the store cannot take it",
                i64::MAX
            ))
        })?;
        //    DELETE, not TRUNCATE: TRUNCATE is not MVCC-safe (a reader's older snapshot would
        //    see the tables empty). The namespace rows stay: a live namespace the snapshot
        //    does not know keeps a generation, which then moves on, never back to 0.
        tx.batch_execute("DELETE FROM memories; DELETE FROM artifacts; DELETE FROM memory_events;")
            .context(what)?;
        copy_artifacts(&mut tx, &staged)?;
        insert_memories(&mut tx, &staged, next)?;
        copy_vectors(&mut tx, &staged)?;
        insert_model(&mut tx, &staged)?;
        insert_namespaces(&mut tx, &staged)?;
        tx.execute(
            "INSERT INTO memory_namespaces (namespace, generation)
             SELECT DISTINCT namespace, 0 FROM memories
             ON CONFLICT (namespace) DO NOTHING",
            &[],
        )
        .context(what)?;
        tx.execute("UPDATE memory_namespaces SET generation = $1", &[&next])
            .context(what)?;
        tx.execute(
            "UPDATE memory_counter SET value = $1 WHERE singleton = 0",
            &[&next],
        )
        .context(what)?;
        tx.commit().context(what)?;
        Ok(staged.schema_version())
    }
}

/// Steps 3–6 of an export, inside its read transaction `tx`: every row into `writer`.
/// `store` names the store in messages.
fn export_rows(
    tx: &mut Transaction<'_>,
    writer: &mut PortableWriter,
    after_step: &mut dyn FnMut(CopyProgress),
    store: &str,
) -> Result<()> {
    let what = "exporting a snapshot";
    // 3. How much there is, from the same instant, for the progress display.
    let totals = tx
        .query_one(
            "SELECT (SELECT coalesce(sum(size), 0)::bigint FROM artifacts),
                    (SELECT coalesce(sum(octet_length(body)), 0)::bigint FROM memories)",
            &[],
        )
        .context(what)?;
    let artifact_bytes: i64 = totals.try_get(0).context(what)?;
    let memory_bytes: i64 = totals.try_get(1).context(what)?;
    let mut progress = Progress {
        total: non_negative(artifact_bytes).saturating_add(non_negative(memory_bytes)),
        copied: 0,
        reported: 0,
        after_step,
    };

    // 4. Artifacts, streamed, each checked against its recorded hash: a corrupted row is
    //    reported, never written into a snapshot that would then fail to verify.
    let mut rows = tx
        .query_raw(
            "SELECT digest, envelope, sha256, state_type, state_version, created_at
             FROM artifacts ORDER BY digest",
            no_params(),
        )
        .context("reading artifacts for a snapshot")?;
    while let Some(row) = rows.next().context("reading artifacts for a snapshot")? {
        let artifact = ArtifactRow {
            digest: row.try_get(0).context(what)?,
            envelope: row.try_get(1).context(what)?,
            sha256: row.try_get(2).context(what)?,
            state_type: row.try_get(3).context(what)?,
            state_version: row.try_get(4).context(what)?,
            created_at: row.try_get(5).context(what)?,
        };
        if Digest::of(&artifact.envelope).hex() != artifact.sha256 {
            return Err(Error::Integrity(format!(
                "artifact {} in {} no longer matches its stored sha256; no snapshot was written — delete or put that artifact again",
                artifact.digest, store
            )));
        }
        writer.artifact(&artifact)?;
        progress.add(artifact.envelope.len());
    }
    drop(rows);

    // 5. Memories, streamed, oldest id first (the snapshot's `seq` then follows the ids).
    let mut rows = tx
        .query_raw(
            "SELECT id, namespace, category, body, created_at, updated_at, version,
                    metadata::text, tags::text, expires_at, ttl_seconds, refresh_on_read, superseded_by
             FROM memories ORDER BY id",
            no_params(),
        )
        .context("reading memories for a snapshot")?;
    while let Some(row) = rows.next().context("reading memories for a snapshot")? {
        let version: i64 = row.try_get(6).context(what)?;
        let memory = MemoryRow {
            id: row.try_get(0).context(what)?,
            namespace: row.try_get(1).context(what)?,
            category: row.try_get(2).context(what)?,
            body: row.try_get(3).context(what)?,
            created_at: row.try_get(4).context(what)?,
            updated_at: row.try_get(5).context(what)?,
            version: non_negative(version),
            metadata: row.try_get(7).context(what)?,
            tags: row.try_get(8).context(what)?,
            expires_at: row.try_get(9).context(what)?,
            ttl_seconds: row.try_get(10).context(what)?,
            refresh_on_read: row.try_get(11).context(what)?,
            superseded_by: row.try_get(12).context(what)?,
        };
        writer.memory(&memory)?;
        progress.add(memory.body.len());
    }
    drop(rows);

    // Their vectors (after the memories: the snapshot keys them by the memory's row).
    let mut rows = tx
        .query_raw(
            "SELECT memory_id, model, version, vector FROM memory_vectors ORDER BY memory_id, model",
            no_params(),
        )
        .context("reading memory vectors for a snapshot")?;
    while let Some(row) = rows
        .next()
        .context("reading memory vectors for a snapshot")?
    {
        let version: i64 = row.try_get(2).context(what)?;
        let vector = VectorRow {
            memory_id: row.try_get(0).context(what)?,
            model: row.try_get(1).context(what)?,
            version: non_negative(version),
            vector: row.try_get(3).context(what)?,
        };
        writer.vector(&vector)?;
        progress.add(vector.vector.len());
    }
    drop(rows);

    // History, in the order it was recorded.
    let mut rows = tx
        .query_raw(
            "SELECT memory_id, namespace, action, version, old_text, new_text, changes::text, actor, at
             FROM memory_events ORDER BY seq",
            no_params(),
        )
        .context("reading memory history for a snapshot")?;
    while let Some(row) = rows
        .next()
        .context("reading memory history for a snapshot")?
    {
        writer.event(&super::memories::event_from_row(&row)?)?;
    }
    drop(rows);

    // 6. The drift guard's stamps: the counter and every namespace's generation.
    let counter: i64 = tx
        .query_one("SELECT value FROM memory_counter WHERE singleton = 0", &[])
        .context(what)?
        .try_get(0)
        .context(what)?;
    writer.counter(non_negative(counter))?;
    let mut rows = tx
        .query_raw(
            "SELECT namespace, generation, default_ttl_seconds FROM memory_namespaces ORDER BY namespace",
            no_params(),
        )
        .context("reading namespaces for a snapshot")?;
    while let Some(row) = rows.next().context("reading namespaces for a snapshot")? {
        let namespace: String = row.try_get(0).context(what)?;
        let generation: i64 = row.try_get(1).context(what)?;
        let ttl: Option<i64> = row.try_get(2).context(what)?;
        writer.namespace(&namespace, non_negative(generation))?;
        if ttl.is_some() {
            writer.namespace_ttl(&namespace, ttl)?;
        }
    }
    drop(rows);

    progress.finish();
    Ok(())
}

/// Every artifact of the staged snapshot into `artifacts`, through one binary COPY (10,000
/// artifacts: about 170 ms, against 220 ms by multi-row INSERTs of 500).
fn copy_artifacts(tx: &mut Transaction<'_>, staged: &PortableReader) -> Result<()> {
    let what = "restoring artifacts";
    let sink = tx
        .copy_in(
            "COPY artifacts (digest, envelope, sha256, size, state_type, state_version, created_at)
             FROM STDIN (FORMAT binary)",
        )
        .context(what)?;
    let mut sink = BinaryCopyInWriter::new(
        sink,
        &[
            Type::TEXT,
            Type::BYTEA,
            Type::TEXT,
            Type::INT8,
            Type::TEXT,
            Type::INT8,
            Type::TEXT,
        ],
    );
    staged.artifacts(&mut |a| {
        let size = i64::try_from(a.envelope.len()).unwrap_or(i64::MAX);
        sink.write(&[
            &a.digest,
            &a.envelope,
            &a.sha256,
            &size,
            &a.state_type,
            &a.state_version,
            &a.created_at,
        ])
        .context(what)
    })?;
    sink.finish().context(what)?;
    Ok(())
}

/// Every memory vector of the staged snapshot into `memory_vectors` (after the memories),
/// through one binary COPY, each with the values pgvector reads beside its bytes (see
/// `vectors.rs`). A vector keeps the version it was computed from: it still describes its
/// memory's text, which the restore does not change.
fn copy_vectors(tx: &mut Transaction<'_>, staged: &PortableReader) -> Result<()> {
    let what = "restoring memory vectors";
    let sink = tx
        .copy_in(
            "COPY memory_vectors (memory_id, model, version, dimension, vector, floats)
             FROM STDIN (FORMAT binary)",
        )
        .context(what)?;
    let mut sink = BinaryCopyInWriter::new(
        sink,
        &[
            Type::TEXT,
            Type::TEXT,
            Type::INT8,
            Type::INT4,
            Type::BYTEA,
            Type::FLOAT4_ARRAY,
        ],
    );
    staged.vectors(&mut |v| {
        let stored = crate::embed::Quantized::from_bytes(&v.vector)
            .filter(|q| !q.values.is_empty())
            .ok_or_else(|| {
                Error::Integrity(format!(
                    "the snapshot's vector of memory {} ({}) is not a stored vector; nothing was restored",
                    v.memory_id, v.model
                ))
            })?;
        let dimension = i32::try_from(stored.values.len()).unwrap_or(i32::MAX);
        let version = i64::try_from(v.version).unwrap_or(i64::MAX);
        sink.write(&[
            &v.memory_id,
            &v.model,
            &version,
            &dimension,
            &v.vector,
            &stored.to_f32(),
        ])
        .context(what)
    })?;
    sink.finish().context(what)?;
    Ok(())
}

/// Every memory of the staged snapshot into `memories`, at version `version`, by multi-row
/// INSERTs that compute the full-text vector on the server. (COPY cannot compute it: through
/// a temporary table and `INSERT … SELECT` it measured slower than these batches, 10,000
/// memories in about 700 ms against 530 ms, as every row is written twice.)
fn insert_memories(tx: &mut Transaction<'_>, staged: &PortableReader, version: i64) -> Result<()> {
    let mut batch = MemoryBatch::default();
    staged.memories(&mut |m| {
        batch.push(m);
        if batch.is_full() {
            batch.flush(tx, version)?;
        }
        Ok(())
    })?;
    batch.flush(tx, version)
}

/// The issue-27 fields of the memories that have any, the history, and the namespaces'
/// default lifetimes, from the staged snapshot (after the rows are in).
fn insert_model(tx: &mut Transaction<'_>, staged: &PortableReader) -> Result<()> {
    let what = "restoring metadata, tags and expiries";
    let update = tx
        .prepare(
            "UPDATE memories SET metadata = $2::text::jsonb, tags = $3::text::jsonb, expires_at = $4,
                 ttl_seconds = $5, refresh_on_read = $6, superseded_by = $7 WHERE id = $1",
        )
        .context(what)?;
    staged.memories(&mut |m| {
        if m.has_model() {
            tx.execute(
                &update,
                &[
                    &m.id,
                    &m.metadata,
                    &m.tags,
                    &m.expires_at,
                    &m.ttl_seconds,
                    &m.refresh_on_read,
                    &m.superseded_by,
                ],
            )
            .context(what)?;
        }
        Ok(())
    })?;
    staged.events(&mut |event| super::memories::insert_event(tx, &event))?;
    let ttl = tx
        .prepare(
            "INSERT INTO memory_namespaces (namespace, generation, default_ttl_seconds) VALUES ($1, 0, $2)
             ON CONFLICT (namespace) DO UPDATE SET default_ttl_seconds = excluded.default_ttl_seconds",
        )
        .context(what)?;
    staged.namespace_ttls(&mut |namespace, seconds| {
        tx.execute(&ttl, &[&namespace, &seconds]).context(what)?;
        Ok(())
    })
}

/// Memories waiting to be inserted together, each with its grams and indexed text.
#[derive(Default)]
struct MemoryBatch {
    rows: Vec<(MemoryRow, String, String)>,
    bytes: usize,
}

impl MemoryBatch {
    fn push(&mut self, memory: MemoryRow) {
        let grams = grams(&memory.body);
        let indexed = super::search::indexed_text(&memory.body, &grams);
        self.bytes += memory.body.len() + grams.len() + indexed.len();
        self.rows.push((memory, grams, indexed));
    }

    fn is_full(&self) -> bool {
        self.rows.len() >= MEMORIES_PER_STATEMENT || self.bytes >= BYTES_PER_STATEMENT
    }

    /// Inserts the batch in one statement: `$1` is the version, then 8 parameters a row.
    fn flush(&mut self, tx: &mut Transaction<'_>, version: i64) -> Result<()> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let mut sql = String::from(
            "INSERT INTO memories (id, namespace, category, body, grams, search, created_at, updated_at, version) VALUES ",
        );
        let mut params: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(1 + 8 * self.rows.len());
        params.push(&version);
        for (i, (m, grams, indexed)) in self.rows.iter().enumerate() {
            let p = 2 + 8 * i;
            if i > 0 {
                sql.push(',');
            }
            sql.push_str(&format!(
                "(${},${},${},${},${},to_tsvector('modstate_search', ${}),${},${},$1)",
                p,
                p + 1,
                p + 2,
                p + 3,
                p + 4,
                p + 5,
                p + 6,
                p + 7
            ));
            params.extend_from_slice(&[
                &m.id,
                &m.namespace,
                &m.category,
                &m.body,
                grams,
                indexed,
                &m.created_at,
                &m.updated_at,
            ]);
        }
        tx.execute(sql.as_str(), &params)
            .context("restoring memories")?;
        self.rows.clear();
        self.bytes = 0;
        Ok(())
    }
}

/// The snapshot's namespaces, added where the live store does not have them (their
/// generations are all set after), a batch per statement.
fn insert_namespaces(tx: &mut Transaction<'_>, staged: &PortableReader) -> Result<()> {
    let what = "restoring namespaces";
    let statement = tx
        .prepare(
            "INSERT INTO memory_namespaces (namespace, generation)
             SELECT unnest($1::text[]), 0
             ON CONFLICT (namespace) DO NOTHING",
        )
        .context(what)?;
    let mut batch: Vec<String> = Vec::new();
    staged.namespaces(&mut |namespace, _generation| {
        batch.push(namespace);
        if batch.len() >= NAMESPACES_PER_STATEMENT {
            tx.execute(&statement, &[&batch]).context(what)?;
            batch.clear();
        }
        Ok(())
    })?;
    if !batch.is_empty() {
        tx.execute(&statement, &[&batch]).context(what)?;
    }
    Ok(())
}

/// A stored count or stamp as unsigned (the schema keeps them non-negative).
fn non_negative(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// Export progress: bytes of rows copied, shown as pages of the snapshot file.
struct Progress<'a> {
    total: u64,
    copied: u64,
    reported: u64,
    after_step: &'a mut dyn FnMut(CopyProgress),
}

impl Progress<'_> {
    /// Counts one row of `bytes`; reports every few megabytes.
    fn add(&mut self, bytes: usize) {
        self.copied = self
            .copied
            .saturating_add(u64::try_from(bytes).unwrap_or(u64::MAX));
        if self.copied - self.reported >= PROGRESS_EVERY_BYTES {
            self.report();
        }
    }

    /// The final report: everything copied.
    fn finish(&mut self) {
        self.copied = self.copied.max(self.total);
        self.report();
    }

    fn report(&mut self) {
        self.reported = self.copied;
        // Rows written meanwhile by others are not in this snapshot; never show more than all.
        let total = self.total.max(self.copied);
        (self.after_step)(CopyProgress {
            copied_pages: self.copied.div_ceil(PROGRESS_PAGE_SIZE),
            total_pages: total.div_ceil(PROGRESS_PAGE_SIZE),
            page_size: PROGRESS_PAGE_SIZE,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_indexed_text_is_the_grams_or_the_body_with_only_letters_and_digits() {
        assert_eq!(
            super::super::search::indexed_text("deploy v1.2.3 to foo.example.com", ""),
            "deploy v1 2 3 to foo example com"
        );
        let body = "Dagger的配置";
        assert_eq!(
            super::super::search::indexed_text(body, &grams(body)),
            "Dagger 的配  配置  置 "
        );
        assert_eq!(
            super::super::search::indexed_text("café/naïve", ""),
            "café naïve"
        );
    }

    #[test]
    fn progress_counts_bytes_as_pages_and_ends_at_the_total() {
        let mut seen = Vec::new();
        let mut record = |p: CopyProgress| seen.push((p.copied_pages, p.total_pages));
        let mut progress = Progress {
            total: 10 * 1024 * 1024,
            copied: 0,
            reported: 0,
            after_step: &mut record,
        };
        for _ in 0..10 {
            progress.add(1024 * 1024);
        }
        progress.finish();
        assert_eq!(seen, vec![(1024, 2560), (2048, 2560), (2560, 2560)]);
    }
}
