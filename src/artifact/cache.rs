//! The artifact cache's bounds: one prune policy (size cap, age, newest kept, free space),
//! stored once and then applied by writers, pins, and one collector at a time.
//!
//! The rules live here; the engines keep the exact totals (by triggers, in the transaction of
//! every put and delete), the last use of each artifact and the counters, and run a
//! collection as one write transaction that calls [`plan`] with what it read inside it.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::lock::{KeyedGuard, Mode};
use crate::store::Store;

/// The lock key held (shared) by a process that pins an artifact while it runs.
pub(crate) fn pin_key(digest: &str) -> String {
    format!("artifact-pin:{digest}")
}

/// The lock key of the one collector.
const COLLECTOR_KEY: &str = "artifact-collector";

/// An automatic collection brings the store to this share of its cap (per mille), not just
/// under it, so that a store at its cap does not collect on every write.
const LOW_WATER_PER_MILLE: u64 = 900;

/// Which artifacts may go, and when the store is over its bounds. Every rule is optional;
/// any combination works (see [`plan`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CachePolicy {
    /// Evict least recently used first until the artifacts take at most this many bytes.
    pub max_size: Option<u64>,
    /// Remove artifacts not used (read or stored) for this long.
    #[serde(rename = "older_than_secs", serialize_with = "seconds")]
    pub older_than: Option<Duration>,
    /// Never remove the N most recently used.
    pub keep_newest: Option<u64>,
    /// Evict least recently used first until the database's file system has this many bytes
    /// free (SQLite only; space freed inside the file is reused by the next writes, and
    /// `vacuum` gives it back to the file system).
    pub min_free: Option<u64>,
}

fn seconds<S: serde::Serializer>(
    value: &Option<Duration>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match value {
        Some(d) => s.serialize_some(&d.as_secs()),
        None => s.serialize_none(),
    }
}

impl CachePolicy {
    /// Whether the policy says anything.
    pub fn is_empty(&self) -> bool {
        self == &CachePolicy::default()
    }

    /// Whether any rule removes artifacts by itself (`keep_newest` alone removes all others).
    fn removes(&self) -> bool {
        self.max_size.is_some() || self.older_than.is_some() || self.min_free.is_some()
    }
}

/// The cache section of `stats`: totals, the stored policy and what the collectors did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CacheStats {
    /// Stored artifacts (exact, kept in every write transaction).
    pub artifacts: u64,
    /// Bytes of their envelopes (exact, kept in every write transaction).
    pub bytes: u64,
    /// The stored policy, applied automatically by writers.
    pub policy: CachePolicy,
    /// How often a read records its use, and how often writers look at the age rules.
    pub touch_interval_ms: u64,
    /// Reads that found their artifact (folded in by each process when it writes).
    pub hits: u64,
    /// Reads that did not.
    pub misses: u64,
    /// Artifacts removed by collections and prunes.
    pub evictions: u64,
    /// Their bytes.
    pub evicted_bytes: u64,
    /// Collections that ran (took the lock and found work, whether or not it could be done).
    pub collections: u64,
    /// Collectors that took the lock and found the work already done by another.
    pub rechecks_skipped: u64,
    /// When the last collection ran (RFC 3339 UTC).
    pub last_collection_at: Option<String>,
    /// How many artifacts it removed.
    pub last_collection_removed: Option<u64>,
    /// How many bytes it freed.
    pub last_collection_freed: Option<u64>,
    /// No automatic collection before this (Unix ms).
    #[serde(skip)]
    pub next_collection_ms: i64,
    /// Artifacts under a lease that has not expired.
    pub pinned: u64,
    /// Their bytes.
    pub pinned_bytes: u64,
}

/// One artifact as a collection sees it.
#[derive(Clone, Debug)]
pub(crate) struct Candidate {
    /// Its digest.
    pub digest: String,
    /// Its envelope's bytes.
    pub size: u64,
    /// Last stored or read, Unix ms (0: never recorded).
    pub last_used_ms: i64,
    /// Under a lease that has not expired.
    pub leased: bool,
}

/// One artifact a prune removed (or, dry, would remove).
#[derive(Clone, Debug, Serialize)]
pub struct Evicted {
    /// Its digest.
    pub digest: String,
    /// Its bytes.
    pub bytes: u64,
}

/// What a prune or collection did.
#[derive(Clone, Debug, Serialize)]
pub struct Collection {
    /// Removed (or, dry, to be removed), least recently used first.
    pub removed: Vec<Evicted>,
    /// Their bytes.
    pub freed: u64,
    /// Artifact bytes before.
    pub bytes_before: u64,
    /// Artifact bytes after (as they would be, dry).
    pub bytes_after: u64,
    /// Nothing was removed: a dry run.
    pub dry_run: bool,
    /// Artifacts the policy wanted gone but that are pinned (lease or running process).
    pub kept_pinned: u64,
}

impl Collection {
    /// What removing `chosen` from a store holding `bytes_before` bytes does (or would do).
    pub(crate) fn of(
        chosen: &[Candidate],
        bytes_before: u64,
        dry_run: bool,
        kept_pinned: u64,
    ) -> Collection {
        let freed = chosen.iter().map(|c| c.size).sum();
        Collection {
            removed: chosen
                .iter()
                .map(|c| Evicted {
                    digest: c.digest.clone(),
                    bytes: c.size,
                })
                .collect(),
            freed,
            bytes_before,
            bytes_after: bytes_before.saturating_sub(freed),
            dry_run,
            kept_pinned,
        }
    }
}

/// How a collection is asked for.
pub(crate) struct Request<'a> {
    /// The rules.
    pub policy: &'a CachePolicy,
    /// Bring the size to the low-water mark (automatic) rather than just under the cap.
    pub low_water: bool,
    /// Bytes free on the database's file system now, when `min_free` is set.
    pub free_now: Option<u64>,
    /// Now, Unix ms.
    pub now_ms: i64,
}

/// What a collection decided, inside its transaction.
pub(crate) enum Plan {
    /// The store is within its policy: nothing to do (the re-check after the lock).
    Within,
    /// Remove these (maybe none, when everything wanted is pinned).
    Remove {
        /// The chosen, least recently used first.
        chosen: Vec<Candidate>,
        /// Wanted but pinned.
        kept_pinned: u64,
    },
}

/// Chooses what goes: `candidates` least recently used first, `bytes` the exact total,
/// `held` the digests a running process pins. The N most recently used (`keep_newest`) and
/// the pinned never go; of the rest, those unused for `older_than` go, and then the least
/// recently used until the size is under the cap (or the low-water mark) and the file system
/// has `min_free` bytes free. With `keep_newest` alone, every other artifact goes.
pub(crate) fn plan(
    req: &Request<'_>,
    bytes: u64,
    candidates: &[Candidate],
    held: &HashSet<String>,
) -> Plan {
    let p = req.policy;
    let target = p.max_size.map(|max| {
        if req.low_water {
            max / 1000 * LOW_WATER_PER_MILLE + max % 1000 * LOW_WATER_PER_MILLE / 1000
        } else {
            max
        }
    });
    let over_size = p.max_size.is_some_and(|max| bytes > max);
    let need_size = if over_size {
        target.map_or(0, |t| bytes.saturating_sub(t))
    } else {
        0
    };
    let need_free = match (p.min_free, req.free_now) {
        (Some(want), Some(have)) => want.saturating_sub(have),
        _ => 0,
    };
    let need = need_size.max(need_free);
    let cutoff = p
        .older_than
        .map(|age| req.now_ms.saturating_sub(age.as_millis() as i64));
    let keep = p
        .keep_newest
        .map_or(0, |n| usize::try_from(n).unwrap_or(usize::MAX));
    let removable = candidates.len().saturating_sub(keep);
    let all_others = !p.removes() && p.keep_newest.is_some();
    let mut chosen = Vec::new();
    let mut kept_pinned = 0;
    let mut freed = 0u64;
    for c in &candidates[..removable] {
        let old = cutoff.is_some_and(|cut| c.last_used_ms < cut);
        if !(all_others || old || freed < need) {
            continue;
        }
        if c.leased || held.contains(&c.digest) {
            kept_pinned += 1;
            continue;
        }
        freed += c.size;
        chosen.push(c.clone());
    }
    if chosen.is_empty() && kept_pinned == 0 && need == 0 {
        return Plan::Within;
    }
    Plan::Remove {
        chosen,
        kept_pinned,
    }
}

/// Holds a pin on an artifact for as long as it lives; see [`Store::pin_while_running`].
#[derive(Debug)]
pub struct PinGuard {
    _guard: KeyedGuard,
}

/// Whether an automatic collection is due after a write, from the totals it read.
fn due(stats: &CacheStats, now_ms: i64) -> bool {
    let p = &stats.policy;
    if p.is_empty() {
        return false;
    }
    // A collection that freed nothing backs off for an interval, whatever the size.
    let backing_off = stats.last_collection_freed == Some(0) && now_ms < stats.next_collection_ms;
    if backing_off {
        return false;
    }
    let over = p.max_size.is_some_and(|max| stats.bytes > max);
    let periodic = (p.older_than.is_some() || p.min_free.is_some() || p.keep_newest.is_some())
        && now_ms >= stats.next_collection_ms;
    over || periodic
}

/// Now as Unix milliseconds.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Bytes available to unprivileged users on the file system holding `path`.
pub(crate) fn free_bytes(path: &Path) -> Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| Error::Invalid(format!("path {} holds a NUL byte", path.display())))?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `c` is a valid C string and `st` a writable statvfs buffer.
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(Error::io(
            "reading the free space of",
            path,
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: statvfs returned 0, so it filled the buffer.
    let st = unsafe { st.assume_init() };
    #[allow(clippy::unnecessary_cast)]
    Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

impl Store {
    /// The cache's totals, policy, counters and leases.
    pub fn cache_stats(&self) -> Result<CacheStats> {
        self.maintenance().cache_stats(true)
    }

    /// Stores `policy` (replacing the one stored; an empty policy turns automatic collection
    /// off) and, when given, how often reads record their use.
    pub fn set_cache_policy(
        &self,
        policy: &CachePolicy,
        touch_interval: Option<Duration>,
    ) -> Result<()> {
        if policy.min_free.is_some() && self.file().is_none() {
            return Err(unsupported_min_free());
        }
        self.maintenance()
            .set_cache_policy(policy, touch_interval.map(|d| d.as_millis() as i64))
    }

    /// Pins a stored artifact against every prune and collection, until `for_how_long` has
    /// passed (`None`: until [`Store::unpin`]). `NotFound` if it is not stored.
    pub fn pin(&self, digest: &Digest, for_how_long: Option<Duration>) -> Result<()> {
        let expires = for_how_long.map(|d| now_ms().saturating_add(d.as_millis() as i64));
        if self.maintenance().pin_artifact(digest, expires)? {
            Ok(())
        } else {
            Err(Error::NotFound(format!(
                "no artifact stored for {digest}; only a stored artifact can be pinned"
            )))
        }
    }

    /// Removes a lease; `false` if there was none.
    pub fn unpin(&self, digest: &Digest) -> Result<bool> {
        self.maintenance().unpin_artifact(digest)
    }

    /// Pins `digest` for as long as the guard lives: a shared lock (a kernel lock on SQLite, a
    /// session lock on PostgreSQL), so a holder that dies releases it.
    pub fn pin_while_running(&self, digest: &Digest) -> Result<PinGuard> {
        let key = pin_key(digest.as_str());
        Ok(PinGuard {
            _guard: self.locks().keyed(&[key.as_str()], Mode::Shared)?,
        })
    }

    /// Removes what `policy` selects (see [`plan`]), least recently used first, in one
    /// transaction; with `dry_run`, removes nothing and says what would go. Waits for a
    /// collection running elsewhere, then decides from the store as it is then.
    pub fn prune(&self, policy: &CachePolicy, dry_run: bool) -> Result<Collection> {
        if policy.is_empty() {
            return Err(Error::Invalid(
                "pruning needs a rule: a size cap, an age, a number to keep or a free-space floor"
                    .to_owned(),
            ));
        }
        if policy.min_free.is_some() && self.file().is_none() {
            return Err(unsupported_min_free());
        }
        let _collector = if dry_run {
            None
        } else {
            Some(self.locks().keyed(&[COLLECTOR_KEY], Mode::Exclusive)?)
        };
        let out = self.run_collection(policy, false, dry_run)?;
        Ok(out.unwrap_or_else(|| Collection {
            removed: Vec::new(),
            freed: 0,
            bytes_before: 0,
            bytes_after: 0,
            dry_run,
            kept_pinned: 0,
        }))
    }

    /// After a write of artifacts: applies the stored policy if it is due, in a transaction
    /// of its own, unless another collector is at work (then that one does it). Errors are
    /// not the writer's: its write is committed whatever happens here.
    pub(crate) fn after_artifact_write(&self) {
        let _ = self.collect_if_due();
    }

    fn collect_if_due(&self) -> Result<()> {
        let stats = self.maintenance().cache_stats(false)?;
        if !due(&stats, now_ms()) {
            return Ok(());
        }
        let Some(_collector) = self.try_collector()? else {
            return Ok(());
        };
        self.run_collection(&stats.policy, true, false)?;
        Ok(())
    }

    /// The collector lock if no one holds it now (`None` then: that collector does the
    /// work). Two writers that both find it free take turns, and the second finds the work
    /// done when it re-checks inside its transaction.
    fn try_collector(&self) -> Result<Option<KeyedGuard>> {
        if self.locks().is_held(COLLECTOR_KEY)? {
            return Ok(None);
        }
        match self.locks().keyed(&[COLLECTOR_KEY], Mode::Exclusive) {
            Ok(guard) => Ok(Some(guard)),
            Err(Error::Busy(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// One collection transaction; `automatic` reads the stored policy inside it again (the
    /// re-check after the lock) and aims at the low-water mark.
    fn run_collection(
        &self,
        policy: &CachePolicy,
        automatic: bool,
        dry_run: bool,
    ) -> Result<Option<Collection>> {
        let free_now = match (policy.min_free, self.file()) {
            (Some(_), Some(db)) => Some(free_bytes(db.parent().unwrap_or(Path::new(".")))?),
            _ => None,
        };
        let locks = self.locks();
        let held_lookup = |digests: &[&str]| -> Result<HashSet<String>> {
            let mut held = HashSet::new();
            for d in digests {
                if locks.is_held(&pin_key(d))? {
                    held.insert((*d).to_owned());
                }
            }
            Ok(held)
        };
        self.maintenance().collect_artifacts(
            &mut |stored: &CacheStats, candidates: &[Candidate]| {
                let policy = if automatic { &stored.policy } else { policy };
                if automatic && !due(stored, now_ms()) {
                    return Ok(Plan::Within);
                }
                let req = Request {
                    policy,
                    low_water: automatic,
                    free_now,
                    now_ms: now_ms(),
                };
                // First without the process pins, then only the chosen are looked up.
                let first = plan(&req, stored.bytes, candidates, &HashSet::new());
                let Plan::Remove { chosen, .. } = &first else {
                    return Ok(first);
                };
                let names: Vec<&str> = chosen.iter().map(|c| c.digest.as_str()).collect();
                let held = held_lookup(&names)?;
                if held.is_empty() {
                    return Ok(first);
                }
                Ok(plan(&req, stored.bytes, candidates, &held))
            },
            dry_run,
            now_ms(),
        )
    }
}

fn unsupported_min_free() -> Error {
    Error::Unsupported(
        "a free-space floor needs a database file: a server's free space is the server's; cap the size instead"
            .to_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(d: &str, size: u64, used: i64) -> Candidate {
        Candidate {
            digest: d.to_owned(),
            size,
            last_used_ms: used,
            leased: false,
        }
    }

    fn req(policy: &CachePolicy, low_water: bool) -> Request<'_> {
        Request {
            policy,
            low_water,
            free_now: None,
            now_ms: 10_000,
        }
    }

    fn names(p: Plan) -> Vec<String> {
        match p {
            Plan::Within => vec!["within".to_owned()],
            Plan::Remove { chosen, .. } => chosen.into_iter().map(|c| c.digest).collect(),
        }
    }

    #[test]
    fn max_size_evicts_least_recently_used_until_under() {
        let cs = [c("a", 10, 1), c("b", 10, 2), c("c", 10, 3), c("d", 10, 4)];
        let p = CachePolicy {
            max_size: Some(25),
            ..Default::default()
        };
        assert_eq!(
            names(plan(&req(&p, false), 40, &cs, &HashSet::new())),
            ["a", "b"]
        );
        let p = CachePolicy {
            max_size: Some(40),
            ..Default::default()
        };
        assert_eq!(
            names(plan(&req(&p, false), 40, &cs, &HashSet::new())),
            ["within"]
        );
    }

    #[test]
    fn low_water_goes_below_the_cap() {
        let cs: Vec<_> = (0..10).map(|i| c(&i.to_string(), 10, i)).collect();
        let p = CachePolicy {
            max_size: Some(99),
            ..Default::default()
        };
        // Under the cap by a put's worth is not enough for an automatic collection.
        assert_eq!(plan(&req(&p, true), 100, &cs, &HashSet::new()).len(), 2);
    }

    #[test]
    fn pins_and_newest_are_never_chosen() {
        let mut cs = vec![c("a", 10, 1), c("b", 10, 2), c("c", 10, 3), c("d", 10, 4)];
        cs[0].leased = true;
        let held: HashSet<String> = ["b".to_owned()].into();
        let p = CachePolicy {
            max_size: Some(0),
            keep_newest: Some(1),
            ..Default::default()
        };
        assert_eq!(names(plan(&req(&p, false), 40, &cs, &held)), ["c"]);
    }

    #[test]
    fn age_and_keep_newest_alone() {
        let cs = [c("a", 10, 1), c("b", 10, 9_500), c("c", 10, 9_900)];
        let p = CachePolicy {
            older_than: Some(Duration::from_secs(1)),
            ..Default::default()
        };
        assert_eq!(
            names(plan(&req(&p, false), 30, &cs, &HashSet::new())),
            ["a"]
        );
        let p = CachePolicy {
            keep_newest: Some(1),
            ..Default::default()
        };
        assert_eq!(
            names(plan(&req(&p, false), 30, &cs, &HashSet::new())),
            ["a", "b"]
        );
    }

    #[test]
    fn everything_pinned_is_a_collection_that_frees_nothing() {
        let mut cs = vec![c("a", 10, 1)];
        cs[0].leased = true;
        let p = CachePolicy {
            max_size: Some(5),
            ..Default::default()
        };
        match plan(&req(&p, false), 10, &cs, &HashSet::new()) {
            Plan::Remove {
                chosen,
                kept_pinned,
            } => assert!(chosen.is_empty() && kept_pinned == 1),
            Plan::Within => panic!("over the cap is not within"),
        }
    }

    impl Plan {
        fn len(&self) -> usize {
            match self {
                Plan::Within => 0,
                Plan::Remove { chosen, .. } => chosen.len(),
            }
        }
    }
}
