//! The artifact cache's SQL on PostgreSQL: the totals row (kept by a trigger, see
//! `migrations/postgres/0005_cache_bounds.sql`), the policy, leases, last use and
//! collections. The rules are in `crate::artifact::cache`.

use std::sync::atomic::Ordering;
use std::time::Duration;

use postgres::GenericClient;

use super::PgBackend;
use super::errors::PgContext;
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

fn rfc3339_ms(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    crate::time::timestamp(t)
}

const ROW: &str = "SELECT artifacts, bytes, max_size, older_than_ms, keep_newest, min_free,
        touch_interval_ms, hits, misses, evictions, evicted_bytes, collections,
        rechecks_skipped, last_collection_ms, last_collection_removed,
        last_collection_freed, next_collection_ms
     FROM artifact_cache WHERE singleton = 0";

/// The cache row (locked `FOR UPDATE` when `lock`); with `pins`, the unexpired leases too.
pub(crate) fn cache_stats(
    client: &mut impl GenericClient,
    pins: bool,
    lock: bool,
) -> Result<CacheStats> {
    let what = "reading the cache totals";
    let sql = if lock {
        format!("{ROW} FOR UPDATE")
    } else {
        ROW.to_owned()
    };
    let r = client.query_one(sql.as_str(), &[]).context(what)?;
    let get = |i: usize| -> Result<Option<i64>> { r.try_get(i).context(what) };
    let mut stats = CacheStats {
        artifacts: unsigned(get(0)?).unwrap_or(0),
        bytes: unsigned(get(1)?).unwrap_or(0),
        policy: CachePolicy {
            max_size: unsigned(get(2)?),
            older_than: unsigned(get(3)?).map(Duration::from_millis),
            keep_newest: unsigned(get(4)?),
            min_free: unsigned(get(5)?),
        },
        touch_interval_ms: unsigned(get(6)?).unwrap_or(0),
        hits: unsigned(get(7)?).unwrap_or(0),
        misses: unsigned(get(8)?).unwrap_or(0),
        evictions: unsigned(get(9)?).unwrap_or(0),
        evicted_bytes: unsigned(get(10)?).unwrap_or(0),
        collections: unsigned(get(11)?).unwrap_or(0),
        rechecks_skipped: unsigned(get(12)?).unwrap_or(0),
        last_collection_at: get(13)?.map(rfc3339_ms),
        last_collection_removed: unsigned(get(14)?),
        last_collection_freed: unsigned(get(15)?),
        next_collection_ms: get(16)?.unwrap_or(0),
        pinned: 0,
        pinned_bytes: 0,
    };
    if pins {
        let r = client
            .query_one(
                "SELECT count(*), coalesce(sum(a.size), 0)::bigint FROM artifact_pins p
                 JOIN artifacts a USING (digest)
                 WHERE p.expires_ms IS NULL OR p.expires_ms > $1",
                &[&crate::artifact::cache::now_ms()],
            )
            .context(what)?;
        stats.pinned = unsigned(Some(r.try_get(0).context(what)?)).unwrap_or(0);
        stats.pinned_bytes = unsigned(Some(r.try_get(1).context(what)?)).unwrap_or(0);
    }
    Ok(stats)
}

pub(crate) fn set_policy(
    client: &mut impl GenericClient,
    policy: &CachePolicy,
    touch_interval_ms: Option<i64>,
) -> Result<()> {
    client
        .execute(
            "UPDATE artifact_cache SET max_size = $1, older_than_ms = $2, keep_newest = $3,
                 min_free = $4, touch_interval_ms = coalesce($5, touch_interval_ms),
                 next_collection_ms = 0
             WHERE singleton = 0",
            &[
                &signed(policy.max_size),
                &policy.older_than.map(|d| d.as_millis() as i64),
                &signed(policy.keep_newest),
                &signed(policy.min_free),
                &touch_interval_ms,
            ],
        )
        .context("storing the cache policy")?;
    Ok(())
}

pub(crate) fn pin(
    client: &mut impl GenericClient,
    digest: &Digest,
    expires_ms: Option<i64>,
) -> Result<bool> {
    let n = client
        .execute(
            "INSERT INTO artifact_pins (digest, expires_ms, pinned_at)
             SELECT digest, $2, $3 FROM artifacts WHERE digest = $1
             ON CONFLICT (digest) DO UPDATE SET expires_ms = excluded.expires_ms,
                 pinned_at = excluded.pinned_at",
            &[&digest.as_str(), &expires_ms, &now_rfc3339()],
        )
        .context("pinning an artifact")?;
    Ok(n > 0)
}

pub(crate) fn unpin(client: &mut impl GenericClient, digest: &Digest) -> Result<bool> {
    let n = client
        .execute(
            "DELETE FROM artifact_pins WHERE digest = $1",
            &[&digest.as_str()],
        )
        .context("unpinning an artifact")?;
    Ok(n > 0)
}

fn candidates(client: &mut impl GenericClient, now_ms: i64) -> Result<Vec<Candidate>> {
    let what = "choosing artifacts to remove";
    client
        .query(
            "SELECT a.digest, a.size, coalesce(a.last_used_ms, 0),
                    EXISTS (SELECT 1 FROM artifact_pins p WHERE p.digest = a.digest
                            AND (p.expires_ms IS NULL OR p.expires_ms > $1))
             FROM artifacts a
             ORDER BY coalesce(a.last_used_ms, 0), a.created_at, a.digest",
            &[&now_ms],
        )
        .context(what)?
        .iter()
        .map(|r| {
            Ok(Candidate {
                digest: r.try_get(0).context(what)?,
                size: unsigned(Some(r.try_get(1).context(what)?)).unwrap_or(0),
                last_used_ms: r.try_get(2).context(what)?,
                leased: r.try_get(3).context(what)?,
            })
        })
        .collect()
}

/// One collection in `client`'s transaction (a write one unless `dry_run`). The cache row
/// is locked first: puts of new artifacts (whose trigger updates it) wait for the collection,
/// readers do not.
pub(crate) fn collect(
    client: &mut impl GenericClient,
    choose: &mut dyn FnMut(&CacheStats, &[Candidate]) -> Result<Plan>,
    dry_run: bool,
    now_ms: i64,
) -> Result<Option<Collection>> {
    let what = "collecting artifacts";
    let stats = cache_stats(client, false, !dry_run)?;
    let all = candidates(client, now_ms)?;
    let (chosen, kept_pinned) = match choose(&stats, &all)? {
        Plan::Within => {
            if !dry_run {
                client
                    .execute(
                        "UPDATE artifact_cache SET rechecks_skipped = rechecks_skipped + 1
                         WHERE singleton = 0",
                        &[],
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
        let digests: Vec<&str> = chosen.iter().map(|c| c.digest.as_str()).collect();
        client
            .execute("DELETE FROM artifacts WHERE digest = ANY($1)", &[&digests])
            .context(what)?;
        client
            .execute(
                "DELETE FROM artifact_pins WHERE (expires_ms IS NOT NULL AND expires_ms <= $1)
                     OR digest NOT IN (SELECT digest FROM artifacts)",
                &[&now_ms],
            )
            .context(what)?;
        client
            .execute(
                "UPDATE artifact_cache SET evictions = evictions + $1,
                     evicted_bytes = evicted_bytes + $2, collections = collections + 1,
                     last_collection_ms = $3, last_collection_removed = $1,
                     last_collection_freed = $2, next_collection_ms = $3 + touch_interval_ms
                 WHERE singleton = 0",
                &[&(chosen.len() as i64), &signed(Some(freed)), &now_ms],
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

impl PgBackend {
    /// Adds this process's hit and miss counts to the cache row unless another transaction
    /// holds it (then they wait for the next write): never waits.
    pub(crate) fn fold_counters(&self, client: &mut impl GenericClient) -> Result<()> {
        let hits = self.hits.swap(0, Ordering::Relaxed);
        let misses = self.misses.swap(0, Ordering::Relaxed);
        if hits == 0 && misses == 0 {
            return Ok(());
        }
        let done = client.execute(
            "UPDATE artifact_cache SET hits = hits + $1, misses = misses + $2
             WHERE singleton = (SELECT singleton FROM artifact_cache WHERE singleton = 0
                                FOR UPDATE SKIP LOCKED)",
            &[&signed(Some(hits)), &signed(Some(misses))],
        );
        if !matches!(done, Ok(1)) {
            self.hits.fetch_add(hits, Ordering::Relaxed);
            self.misses.fetch_add(misses, Ordering::Relaxed);
        }
        done.context("counting cache hits")?;
        Ok(())
    }

    /// Records a read of `digest`, unless a writer holds its row right now: never waits.
    pub(crate) fn touch(&self, digest: &Digest, now_ms: i64) {
        let Ok(mut conn) = self.connection() else {
            return;
        };
        let Ok(mut tx) = conn.transaction() else {
            return;
        };
        let updated = tx
            .execute(
                "UPDATE artifacts SET last_used_ms = $2
                 WHERE digest = (SELECT digest FROM artifacts WHERE digest = $1
                                 FOR UPDATE SKIP LOCKED)",
                &[&digest.as_str(), &now_ms],
            )
            .is_ok()
            && self.fold_counters(&mut tx).is_ok();
        if updated {
            let _ = tx.commit();
        }
    }
}
