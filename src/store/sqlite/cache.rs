//! The artifact cache's SQL on SQLite: the totals row (kept by triggers, see
//! `migrations/0005_cache_bounds.sql`), the policy, leases, last use and collections. The
//! rules are in `crate::artifact::cache`.

use std::sync::atomic::Ordering;
use std::time::Duration;

use rusqlite::{Connection, params};

use super::SqliteBackend;
use super::errors::SqlContext;
use crate::artifact::cache::{CachePolicy, CacheStats, Candidate, Collection, Plan};
use crate::digest::Digest;
use crate::error::Result;
use crate::time::now_rfc3339;

fn unsigned(v: Option<i64>) -> Option<u64> {
    v.map(|v| u64::try_from(v).unwrap_or(0))
}

fn signed(v: Option<u64>) -> Option<i64> {
    v.map(|v| i64::try_from(v).unwrap_or(i64::MAX))
}

/// RFC 3339 UTC of a Unix ms time.
pub(crate) fn rfc3339_ms(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    crate::time::timestamp(t)
}

/// The cache row; with `pins`, the unexpired leases and their bytes too.
pub(crate) fn cache_stats(conn: &Connection, pins: bool) -> Result<CacheStats> {
    let what = "reading the cache totals";
    let mut stats = conn
        .prepare_cached(
            "SELECT artifacts, bytes, max_size, older_than_ms, keep_newest, min_free,
                    touch_interval_ms, hits, misses, evictions, evicted_bytes, collections,
                    rechecks_skipped, last_collection_ms, last_collection_removed,
                    last_collection_freed, next_collection_ms
             FROM artifact_cache WHERE only = 0",
        )
        .and_then(|mut stmt| {
            stmt.query_row([], |r| {
                let last: Option<i64> = r.get(13)?;
                Ok(CacheStats {
                    artifacts: unsigned(r.get(0)?).unwrap_or(0),
                    bytes: unsigned(r.get(1)?).unwrap_or(0),
                    policy: CachePolicy {
                        max_size: unsigned(r.get(2)?),
                        older_than: unsigned(r.get(3)?).map(Duration::from_millis),
                        keep_newest: unsigned(r.get(4)?),
                        min_free: unsigned(r.get(5)?),
                    },
                    touch_interval_ms: unsigned(r.get(6)?).unwrap_or(0),
                    hits: unsigned(r.get(7)?).unwrap_or(0),
                    misses: unsigned(r.get(8)?).unwrap_or(0),
                    evictions: unsigned(r.get(9)?).unwrap_or(0),
                    evicted_bytes: unsigned(r.get(10)?).unwrap_or(0),
                    collections: unsigned(r.get(11)?).unwrap_or(0),
                    rechecks_skipped: unsigned(r.get(12)?).unwrap_or(0),
                    last_collection_at: last.map(rfc3339_ms),
                    last_collection_removed: unsigned(r.get(14)?),
                    last_collection_freed: unsigned(r.get(15)?),
                    next_collection_ms: r.get(16)?,
                    pinned: 0,
                    pinned_bytes: 0,
                })
            })
        })
        .context(what)?;
    if pins {
        let (n, bytes): (i64, i64) = conn
            .query_row(
                "SELECT count(*), coalesce(sum(a.size), 0) FROM artifact_pins p
                 JOIN artifacts a USING (digest)
                 WHERE p.expires_ms IS NULL OR p.expires_ms > ?1",
                [crate::artifact::cache::now_ms()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .context(what)?;
        stats.pinned = unsigned(Some(n)).unwrap_or(0);
        stats.pinned_bytes = unsigned(Some(bytes)).unwrap_or(0);
    }
    Ok(stats)
}

pub(crate) fn set_policy(
    conn: &Connection,
    policy: &CachePolicy,
    touch_interval_ms: Option<i64>,
) -> Result<()> {
    conn.execute(
        "UPDATE artifact_cache SET max_size = ?1, older_than_ms = ?2, keep_newest = ?3,
             min_free = ?4, touch_interval_ms = coalesce(?5, touch_interval_ms),
             next_collection_ms = 0
         WHERE only = 0",
        params![
            signed(policy.max_size),
            policy.older_than.map(|d| d.as_millis() as i64),
            signed(policy.keep_newest),
            signed(policy.min_free),
            touch_interval_ms,
        ],
    )
    .context("storing the cache policy")?;
    Ok(())
}

pub(crate) fn pin(conn: &Connection, digest: &Digest, expires_ms: Option<i64>) -> Result<bool> {
    let n = conn
        .execute(
            "INSERT INTO artifact_pins (digest, expires_ms, pinned_at)
             SELECT digest, ?2, ?3 FROM artifacts WHERE digest = ?1
             ON CONFLICT (digest) DO UPDATE SET expires_ms = excluded.expires_ms,
                 pinned_at = excluded.pinned_at",
            params![digest.as_str(), expires_ms, now_rfc3339()],
        )
        .context("pinning an artifact")?;
    Ok(n > 0)
}

pub(crate) fn unpin(conn: &Connection, digest: &Digest) -> Result<bool> {
    let n = conn
        .execute(
            "DELETE FROM artifact_pins WHERE digest = ?1",
            [digest.as_str()],
        )
        .context("unpinning an artifact")?;
    Ok(n > 0)
}

/// Every artifact, least recently used first, with whether a lease holds it.
fn candidates(conn: &Connection, now_ms: i64) -> Result<Vec<Candidate>> {
    let what = "choosing artifacts to remove";
    let mut stmt = conn
        .prepare_cached(
            "SELECT a.digest, a.size, coalesce(a.last_used_ms, 0),
                    EXISTS (SELECT 1 FROM artifact_pins p WHERE p.digest = a.digest
                            AND (p.expires_ms IS NULL OR p.expires_ms > ?1))
             FROM artifacts a
             ORDER BY coalesce(a.last_used_ms, 0), a.created_at, a.digest",
        )
        .context(what)?;
    stmt.query_map([now_ms], |r| {
        Ok(Candidate {
            digest: r.get(0)?,
            size: unsigned(r.get(1)?).unwrap_or(0),
            last_used_ms: r.get(2)?,
            leased: r.get(3)?,
        })
    })
    .context(what)?
    .collect::<rusqlite::Result<Vec<_>>>()
    .context(what)
}

/// One collection on `conn` (a write transaction unless `dry_run`).
pub(crate) fn collect(
    conn: &Connection,
    choose: &mut dyn FnMut(&CacheStats, &[Candidate]) -> Result<Plan>,
    dry_run: bool,
    now_ms: i64,
) -> Result<Option<Collection>> {
    let what = "collecting artifacts";
    let stats = cache_stats(conn, false)?;
    let all = candidates(conn, now_ms)?;
    let (chosen, kept_pinned) = match choose(&stats, &all)? {
        Plan::Within => {
            if !dry_run {
                conn.execute(
                    "UPDATE artifact_cache SET rechecks_skipped = rechecks_skipped + 1
                     WHERE only = 0",
                    [],
                )
                .context(what)?;
            }
            return Ok(None);
        }
        Plan::Remove {
            chosen,
            kept_pinned,
        } => (chosen, kept_pinned),
    };
    let freed: u64 = chosen.iter().map(|c| c.size).sum();
    if !dry_run {
        let mut delete = conn
            .prepare_cached("DELETE FROM artifacts WHERE digest = ?1")
            .context(what)?;
        for c in &chosen {
            delete.execute([&c.digest]).context(what)?;
        }
        conn.execute(
            "DELETE FROM artifact_pins WHERE expires_ms IS NOT NULL AND expires_ms <= ?1
                 OR digest NOT IN (SELECT digest FROM artifacts)",
            [now_ms],
        )
        .context(what)?;
        conn.execute(
            "UPDATE artifact_cache SET evictions = evictions + ?1,
                 evicted_bytes = evicted_bytes + ?2, collections = collections + 1,
                 last_collection_ms = ?3, last_collection_removed = ?1,
                 last_collection_freed = ?2, next_collection_ms = ?3 + touch_interval_ms
             WHERE only = 0",
            params![chosen.len() as i64, signed(Some(freed)), now_ms],
        )
        .context(what)?;
    }
    Ok(Some(Collection::of(
        &chosen,
        stats.bytes,
        dry_run,
        kept_pinned,
    )))
}

impl SqliteBackend {
    /// Adds this process's hit and miss counts to the cache row, inside a write transaction.
    pub(crate) fn fold_counters(&self, conn: &Connection) -> Result<()> {
        let hits = self.hits.swap(0, Ordering::Relaxed);
        let misses = self.misses.swap(0, Ordering::Relaxed);
        if hits == 0 && misses == 0 {
            return Ok(());
        }
        let done = conn.execute(
            "UPDATE artifact_cache SET hits = hits + ?1, misses = misses + ?2 WHERE only = 0",
            params![signed(Some(hits)), signed(Some(misses))],
        );
        if done.is_err() {
            // Kept for the next write.
            self.hits.fetch_add(hits, Ordering::Relaxed);
            self.misses.fetch_add(misses, Ordering::Relaxed);
        }
        done.context("counting cache hits")?;
        Ok(())
    }

    /// Records a read of `digest` when its last use is older than the interval, only if the
    /// write lock and the writer connection are free right now: a read never waits.
    pub(crate) fn touch(&self, digest: &Digest, now_ms: i64) {
        if !self.is_writable() {
            return;
        }
        let Ok(Some(_write)) = self.locks().try_write() else {
            return;
        };
        let Ok(Some(conn)) = self.try_writer() else {
            return;
        };
        let Ok(tx) = conn.unchecked_transaction() else {
            return;
        };
        let updated = tx
            .execute(
                "UPDATE artifacts SET last_used_ms = ?2 WHERE digest = ?1",
                params![digest.as_str(), now_ms],
            )
            .is_ok()
            && self.fold_counters(&tx).is_ok();
        if updated {
            let _ = tx.commit();
        }
    }
}
