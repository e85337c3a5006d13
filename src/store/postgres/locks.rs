//! modstate's locks on PostgreSQL: session-level advisory locks, so hosts that share one
//! server share its locks, with the same semantics as the `flock` locks of a database file
//! (`crate::lock`): no TTL, no heartbeat, released the moment the holder's session ends.
//!
//! * Each held lock lives on a connection of its own, opened for it and closed when it is
//!   released, never a pooled one: a session lock survives ROLLBACK and would go back to a
//!   pool still held, and it is re-entrant, so two acquisitions on one session would not
//!   exclude each other. A holder that dies (even by SIGKILL) closes its socket, its session
//!   ends and the server frees the lock at once; a holder whose host vanishes is dropped by
//!   the TCP keepalives and user timeout (`url.rs`: about 25 s). A stopped holder (SIGSTOP)
//!   keeps its session and its lock, as with `flock`.
//! * A lock's key is the first 8 bytes of the sha256 of a namespaced name (`modstate/write`,
//!   `modstate/global`, `modstate/key/<key>`) as a big-endian bigint, so a user key named
//!   `write` is not the write lock, and any string is a safe key. Two keys colliding (about
//!   3e-8 among a million keys) only makes them wait on each other.
//! * Waiting happens inside the server (`pg_advisory_lock` under `lock_timeout`): quietly for
//!   [`QUIET_WAIT`], then once more until the deadline after a log record naming the holders;
//!   `Busy` at the deadline, naming them again.
//! * Who holds a lock comes from the server's lock table (`pg_locks`), described by the rows
//!   of `modstate_lock_holders` (one per session holding a lock, keyed by the backend pid,
//!   because `application_name` is cut at 63 bytes). A row describes a lock only if its
//!   session holds that very lock now, so a row left by a dead or later session is never
//!   shown as a holder.
//!
//! Lock order, as for files: `global` → keys (sorted, deduplicated) → `write`.
//!
//! Unlike a file lock, a session lock can be lost while its holder runs (the server
//! restarts, an administrator ends the session, the network fails). So:
//!
//! * **Heartbeat.** Every held lock's session is checked every [`HEARTBEAT`] (1 s) by a
//!   thread of the guard, on the lock's own connection; a failed check marks the guard lost
//!   (`LockGuard::check`, `on_lost`). A check that gets no answer does not hang the verdict:
//!   the guard counts as lost [`VALID_FOR`] (5 s) after its last successful renewal was sent.
//! * **Leases and lock-delay** (exclusive keys). The holder's row in `modstate_lock_leases`
//!   expires [`LEASE`] (10 s, the server's clock) after each renewal. Whoever takes the key
//!   next waits, holding the advisory lock, until a lost holder's lease has run out, so the
//!   lost holder has seen the loss (≤ 5 s) and stopped its work (`lock run`: SIGTERM, SIGKILL
//!   3 s later) before anyone else starts. A clean release clears the lease: no delay.
//! * **Fencing tokens.** Each exclusive acquisition of a key increments the row's `token`,
//!   in the statement that takes the lease; a fenced write reads the row `FOR SHARE` in its
//!   own transaction, so a newer acquisition waits for it or it sees the newer token.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use postgres::error::SqlState;
use postgres::{Client, SimpleQueryMessage, Transaction};
use sha2::{Digest as _, Sha256};

use super::errors::PgContext;
use super::pool::{Pool, millis};
use crate::error::{Error, Result};
use crate::lock::{
    Fence, Holder, KeyedGuard, LockGuard, LockState, Locks, Mode, QUIET_WAIT, Watch, check_fence,
    check_key, command_line, describe_holders, host, now_rfc3339,
};

/// How often a held lock's session is checked and its lease renewed.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(1);
/// How long a lease lasts on the server's clock after each renewal: after a holder's session
/// is lost, the key stays out of reach this long at most (lock-delay).
pub(crate) const LEASE: Duration = Duration::from_secs(10);
/// How long after sending its last successful renewal a holder counts its lock as held:
/// the lease minus the time to stop its work (`lock run`'s 3 s grace, 2 s to spare).
pub(crate) const VALID_FOR: Duration = Duration::from_secs(5);

/// Takes the advisory lock if free and, if taken, the key's lease: a new token when no live
/// lease is left (none, released, or run out), else nothing. Answers (taken, new token, ms
/// until the live lease runs out). One statement, so an uncontended acquisition costs no
/// extra round trip.
const TRY_LOCK_AND_LEASE: &str = "WITH got AS (SELECT pg_try_advisory_lock($1) AS ok), \
     lease AS (INSERT INTO modstate_lock_leases AS l (id, key, token, holder, expires) \
       SELECT $1, $2, 1, pg_backend_pid(), clock_timestamp() + interval '10 seconds' \
       FROM got WHERE ok \
       ON CONFLICT (id) DO UPDATE SET key = excluded.key, token = l.token + 1, \
       holder = excluded.holder, expires = excluded.expires \
       WHERE l.expires IS NULL OR l.expires <= clock_timestamp() \
       RETURNING token) \
     SELECT (SELECT ok FROM got), (SELECT token FROM lease), \
     (SELECT ceil(extract(epoch FROM l.expires - clock_timestamp()) * 1000)::bigint \
      FROM modstate_lock_leases l WHERE l.id = $1)";

/// [`TRY_LOCK_AND_LEASE`] once the advisory lock is held (after a wait).
const LEASE_HELD: &str = "WITH lease AS (INSERT INTO modstate_lock_leases AS l \
       (id, key, token, holder, expires) \
       SELECT $1, $2, 1, pg_backend_pid(), clock_timestamp() + interval '10 seconds' \
       ON CONFLICT (id) DO UPDATE SET key = excluded.key, token = l.token + 1, \
       holder = excluded.holder, expires = excluded.expires \
       WHERE l.expires IS NULL OR l.expires <= clock_timestamp() \
       RETURNING token) \
     SELECT true, (SELECT token FROM lease), \
     (SELECT ceil(extract(epoch FROM l.expires - clock_timestamp()) * 1000)::bigint \
      FROM modstate_lock_leases l WHERE l.id = $1)";

/// For a shared key: the advisory lock if free, and ms until a live lease of an exclusive
/// holder runs out (shared holders take no lease, but respect a lost holder's).
const TRY_SHARED_AND_DELAY: &str = "SELECT pg_try_advisory_lock_shared($1), NULL::bigint, \
     (SELECT ceil(extract(epoch FROM l.expires - clock_timestamp()) * 1000)::bigint \
      FROM modstate_lock_leases l WHERE l.id = $1 AND l.expires > clock_timestamp() \
      AND $2::text IS NOT NULL)";

/// [`TRY_SHARED_AND_DELAY`] once the shared lock is held.
const SHARED_DELAY: &str = "SELECT true, NULL::bigint, \
     (SELECT ceil(extract(epoch FROM l.expires - clock_timestamp()) * 1000)::bigint \
      FROM modstate_lock_leases l WHERE l.id = $1 AND l.expires > clock_timestamp() \
      AND $2::text IS NOT NULL)";

/// A modstate lock by what it guards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Name<'a> {
    /// The write lock.
    Write,
    /// The global lock.
    Global,
    /// A user's key.
    Key(&'a str),
}

impl<'a> Name<'a> {
    /// The name a user sees: `write`, `global`, or the key itself.
    fn label(self) -> &'a str {
        match self {
            Name::Write => "write",
            Name::Global => "global",
            Name::Key(key) => key,
        }
    }

    /// The advisory-lock key: the first 8 bytes of the sha256 of the namespaced name, read
    /// as a big-endian bigint. The namespace keeps user keys apart from `write` and `global`,
    /// and from other programs' advisory locks in the same database.
    fn id(self) -> i64 {
        let namespaced = match self {
            Name::Write => "modstate/write".to_owned(),
            Name::Global => "modstate/global".to_owned(),
            Name::Key(key) => format!("modstate/key/{key}"),
        };
        let digest = Sha256::digest(namespaced.as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        i64::from_be_bytes(first)
    }
}

/// How `pg_locks` shows a bigint advisory key (with `objsubid = 1`): its high 32 bits as
/// `classid`, its low 32 bits as `objid`, both as oids.
fn split_id(id: i64) -> (u32, u32) {
    let bits = id as u64;
    ((bits >> 32) as u32, bits as u32)
}

/// The bigint advisory key `pg_locks` shows as `classid` and `objid`.
fn join_id(classid: u32, objid: u32) -> i64 {
    ((u64::from(classid) << 32) | u64::from(objid)) as i64
}

/// The lock a holder row names, if that is the lock `id`: the row's key must hash to the key
/// of the lock its session holds, so a row left behind by an earlier session with the same
/// backend pid is never taken for the current holder's.
fn recorded_name(recorded_key: &str, id: i64) -> Option<Name<'_>> {
    [Name::Write, Name::Global, Name::Key(recorded_key)]
        .into_iter()
        .find(|name| name.label() == recorded_key && name.id() == id)
}

/// The name shown for the lock `id` when no holder row describes it: `write` or `global`, or
/// for a key (whose text only its holder knows) the hex of its advisory key.
fn anonymous_name(id: i64) -> String {
    if id == Name::Write.id() {
        "write".to_owned()
    } else if id == Name::Global.id() {
        "global".to_owned()
    } else {
        format!("{:016x}", id as u64)
    }
}

/// Makes the lock's session fit for holding a lock for hours: no statement timeout cuts a
/// lock wait short (the lock timeout bounds it), and no idle timeout ends the session, and
/// with it the lock, while the holder's work runs (`idle_session_timeout` exists from
/// PostgreSQL 14 on).
const SESSION_SETUP: &str = "SET statement_timeout = 0; \
     SET idle_in_transaction_session_timeout = 0; \
     SELECT set_config('idle_session_timeout', '0', false) \
     WHERE current_setting('server_version_num')::int >= 140000";

/// Describes this session's holder; written before the lock is tried, so a lock taken at
/// once is never seen without its description (a waiting session's row is not shown: its
/// lock is not granted). A session that has to wait empties `acquired_at` (see [`WAITING`])
/// until it has the lock, so the moment between the grant and the update never shows a
/// time before the lock was had.
const RECORD_HOLDER: &str = "INSERT INTO modstate_lock_holders \
     (pid, key, host, process, command, acquired_at) \
     VALUES (pg_backend_pid(), $1, $2, $3, $4, $5) \
     ON CONFLICT (pid) DO UPDATE SET key = excluded.key, host = excluded.host, \
     process = excluded.process, command = excluded.command, \
     acquired_at = excluded.acquired_at";

/// Marks this session's row as not holding yet: `acquired_at` is `''` (shown as unknown)
/// while it waits.
const WAITING: &str =
    "UPDATE modstate_lock_holders SET acquired_at = '' WHERE pid = pg_backend_pid()";

/// Releases the lock before anything else (unlocking is not transactional, so a failing
/// delete after it cannot keep the lock), then removes this session's row and any row of a
/// session that has ended (a holder killed before it could remove its own).
const RELEASE: &str = "SELECT pg_advisory_unlock_all(); \
     SET lock_timeout = 1000; \
     DELETE FROM modstate_lock_holders \
     WHERE pid = pg_backend_pid() OR pid NOT IN (SELECT pid FROM pg_stat_activity)";

/// Every granted bigint advisory lock in this database with the holder row of its session,
/// if any; `$1`/`$2` (classid, objid) narrow it to one lock.
const HELD_LOCKS: &str = "SELECT l.classid, l.objid, l.mode = 'ExclusiveLock', \
     h.key, h.host, h.process, h.command, h.acquired_at, k.token \
     FROM pg_locks l LEFT JOIN modstate_lock_holders h ON h.pid = l.pid \
     LEFT JOIN modstate_lock_leases k ON l.mode = 'ExclusiveLock' AND k.holder = l.pid \
       AND k.id = ((l.classid::bigint << 32) | l.objid::bigint) \
     WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 \
     AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
     AND ($1::oid IS NULL OR (l.classid = $1 AND l.objid = $2)) \
     ORDER BY l.pid";

/// The locks of one PostgreSQL store.
pub(crate) struct PgLocks {
    pool: Pool,
    timeout: Duration,
}

impl PgLocks {
    pub(crate) fn new(pool: Pool, timeout: Duration) -> PgLocks {
        PgLocks { pool, timeout }
    }

    /// Takes one lock on a new session of its own: at once if free, else by waiting in the
    /// server until `deadline`. A session lost while waiting (a server restart) is replaced
    /// by a new one, until the deadline: the waiter keeps its place in the line of work.
    fn acquire(&self, name: Name<'_>, mode: Mode, deadline: Instant) -> Result<LockGuard> {
        self.acquire_tracked(name, mode, deadline)
            .map(|(guard, _)| guard)
    }

    /// [`Self::acquire`], saying whether a lost session was replaced on the way.
    fn acquire_tracked(
        &self,
        name: Name<'_>,
        mode: Mode,
        deadline: Instant,
    ) -> Result<(LockGuard, bool)> {
        let mut retried = false;
        loop {
            match self.acquire_once(name, mode, deadline) {
                Err((e, connected)) if (connected || retried) && session_gone(&e) => {
                    if Instant::now() >= deadline {
                        return Err(e);
                    }
                    retried = true;
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err((e, _)) => return Err(e),
                Ok(guard) => return Ok((guard, retried)),
            }
        }
    }

    /// One attempt of [`Self::acquire`]; an error says whether a session had been opened.
    fn acquire_once(
        &self,
        name: Name<'_>,
        mode: Mode,
        deadline: Instant,
    ) -> std::result::Result<LockGuard, (Error, bool)> {
        let label = name.label();
        let what = format!("taking the lock on {label}");
        let id = name.id();
        // A key's acquisitions deal with its lease; `write` and `global` have none.
        let key = match name {
            Name::Key(key) => Some(key),
            _ => None,
        };
        let leased = key.is_some() && mode == Mode::Exclusive;
        // From here on, any early return drops the session, which releases whatever it holds.
        let client = self.pool.connect_by(deadline).map_err(|e| (e, false))?;
        let mut session = Session::new(client, label);
        let at = |e| (e, true);
        let client = session.client().map_err(at)?;
        client
            .batch_execute(SESSION_SETUP)
            .context(&what)
            .map_err(at)?;
        // Best effort, as a lock file's record: it only informs `lock status` and waiters.
        let _ = record_holder(client, label);
        let key_text = key.unwrap_or("");
        let (first, after_wait) = match (key.is_some(), mode) {
            (true, Mode::Exclusive) => (TRY_LOCK_AND_LEASE, LEASE_HELD),
            (true, Mode::Shared) => (TRY_SHARED_AND_DELAY, SHARED_DELAY),
            (false, Mode::Shared) => (
                "SELECT pg_try_advisory_lock_shared($1), NULL::bigint, NULL::bigint WHERE $2::text IS NOT NULL",
                "",
            ),
            (false, Mode::Exclusive) => (
                "SELECT pg_try_advisory_lock($1), NULL::bigint, NULL::bigint WHERE $2::text IS NOT NULL",
                "",
            ),
        };
        let mut lease_sent = Instant::now();
        let (mut got, mut token, mut delay) =
            lease_row(client, first, id, key_text, &what).map_err(at)?;
        if !got {
            self.wait(client, name, mode, deadline, &what).map_err(at)?;
            // The row was written before the wait; the lock was taken now.
            let _ = client.execute(
                "UPDATE modstate_lock_holders SET acquired_at = $1 WHERE pid = pg_backend_pid()",
                &[&now_rfc3339()],
            );
            got = true;
            if key.is_some() {
                lease_sent = Instant::now();
                (_, token, delay) =
                    lease_row(client, after_wait, id, key_text, &what).map_err(at)?;
            } else {
                delay = None;
            }
        }
        debug_assert!(got);
        // Lock-delay: the advisory lock is ours, but a holder whose session was lost may
        // still be stopping its work until its lease runs out.
        let mut told = false;
        loop {
            let pending = if leased {
                token.is_none()
            } else {
                delay.is_some_and(|ms| ms > 0)
            };
            if !pending {
                break;
            }
            let ms = delay.unwrap_or(0).max(10);
            let now = Instant::now();
            let left = deadline.saturating_duration_since(now);
            let wait = Duration::from_millis(u64::try_from(ms).unwrap_or(10));
            if wait > left {
                return Err(at(Error::Busy(format!(
                    "timed out after {:.1}s waiting for lock on {label}: its last holder's server session was lost and its lease runs out in {:.1}s (lock-delay, so that holder has stopped its work first); retry later, or allow a longer lock timeout",
                    self.timeout.as_secs_f64(),
                    wait.as_secs_f64()
                ))));
            }
            if !told {
                log::warn!(
                    target: "modstate::lock",
                    "Blocking waiting for lock on {label} (its last holder's server session was lost; its lease runs out in {:.1}s)",
                    wait.as_secs_f64()
                );
                told = true;
            }
            std::thread::sleep(wait);
            lease_sent = Instant::now();
            (_, token, delay) = lease_row(client, after_wait, id, key_text, &what).map_err(at)?;
        }
        let token = token.and_then(|t| u64::try_from(t).ok());
        if let Some(t) = token {
            session.lease = Some((id, t));
        }
        // A lock without a lease is valid while its session lives: counted from now.
        let valid_from = if leased { lease_sent } else { Instant::now() };
        let watch = Watch::new(Some(valid_from + VALID_FOR));
        session.start_heartbeat(&watch);
        Ok(LockGuard::session(Box::new(session), label, token, watch))
    }

    /// Waits in the server for the lock until `deadline`: quietly for [`QUIET_WAIT`], then
    /// after a log record naming the holders (cargo's "Blocking waiting for lock" line);
    /// `Busy` at the deadline.
    fn wait(
        &self,
        client: &mut Client,
        name: Name<'_>,
        mode: Mode,
        deadline: Instant,
        what: &str,
    ) -> Result<()> {
        let label = name.label();
        let id = name.id();
        let lock = match mode {
            Mode::Shared => "SELECT pg_advisory_lock_shared($1)",
            Mode::Exclusive => "SELECT pg_advisory_lock($1)",
        };
        let started = Instant::now();
        let mut told = false;
        // Best effort, as the row itself.
        let _ = client.batch_execute(WAITING);
        loop {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let until = if told {
                deadline
            } else {
                (started + QUIET_WAIT).min(deadline)
            };
            client
                .batch_execute(&format!("SET lock_timeout = {}", millis(until - now)))
                .context(what)?;
            match client.execute(lock, &[&id]) {
                Ok(_) => return Ok(()),
                Err(e) if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => {}
                Err(e) => return Err(Error::postgres(what, e)),
            }
            if !told && Instant::now() < deadline {
                // A record, not a print, as for lock files: the CLI's logger shows it.
                log::warn!(
                    target: "modstate::lock",
                    "Blocking waiting for lock on {label}{}",
                    describe(client, id)
                );
                told = true;
            }
        }
        Err(Error::Busy(format!(
            "timed out after {:.1}s waiting for lock on {label}{}; retry later, or allow a longer lock timeout",
            self.timeout.as_secs_f64(),
            describe(client, id)
        )))
    }
}

impl Locks for PgLocks {
    /// The write lock. The server orders write transactions by its own row locks, so the
    /// store's writes do not take it; it exists for callers of the trait that want one
    /// writer at a time.
    fn write(&self) -> Result<LockGuard> {
        self.acquire(Name::Write, Mode::Exclusive, Instant::now() + self.timeout)
    }

    fn global(&self, mode: Mode) -> Result<LockGuard> {
        self.acquire(Name::Global, mode, Instant::now() + self.timeout)
    }

    fn keyed(&self, keys: &[&str], mode: Mode) -> Result<KeyedGuard> {
        let mut keys: Vec<&str> = keys.to_vec();
        for key in &keys {
            check_key(key)?;
        }
        keys.sort_unstable();
        keys.dedup();
        let deadline = Instant::now() + self.timeout;
        loop {
            let (global, _) = self.acquire_tracked(Name::Global, Mode::Shared, deadline)?;
            let mut held = Vec::with_capacity(keys.len());
            let mut renewed = false;
            for key in &keys {
                // An error drops `held` and `global`: nothing stays locked.
                let (guard, retried) = self.acquire_tracked(Name::Key(key), mode, deadline)?;
                held.push(guard);
                renewed |= retried;
            }
            // A key taken on a new session after its first one was lost (a server restart):
            // the earlier sessions, `global` among them, may have ended too; take all again.
            if !renewed {
                return Ok(KeyedGuard::new(global, held));
            }
        }
    }

    fn status(&self) -> Result<Vec<LockState>> {
        let mut conn = self.pool.get()?;
        held_locks(&mut conn, None)
    }

    fn directory(&self) -> Option<&Path> {
        None
    }
}

/// A server session holding one lock; dropping it releases the lock and ends the session.
struct Session {
    /// Shared with the heartbeat thread, which takes the mutex for each check; `None` once
    /// released.
    client: Arc<Mutex<Option<Client>>>,
    /// The lock's name, for the warning when the session was lost while held.
    label: String,
    /// (advisory key, token) of an exclusive key's lease, cleared at a clean release.
    lease: Option<(i64, u64)>,
    /// The heartbeat's view: a loss it already reported is not warned about again at release.
    watch: Option<Arc<Watch>>,
}

impl Session {
    fn new(client: Client, label: &str) -> Session {
        Session {
            client: Arc::new(Mutex::new(Some(client))),
            label: label.to_owned(),
            lease: None,
            watch: None,
        }
    }

    fn client(&mut self) -> Result<&mut Client> {
        // Only the acquiring thread has the session until the heartbeat starts.
        Arc::get_mut(&mut self.client)
            .ok_or_else(|| Error::Invalid("the lock's session is in use".to_owned()))?
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .as_mut()
            .ok_or_else(|| Error::Invalid("the lock's session is already closed".to_owned()))
    }

    /// Starts the thread that checks the session (and renews the lease) every [`HEARTBEAT`]
    /// until the guard is dropped or the lock is lost. Without a thread the guard still
    /// counts itself lost once [`VALID_FOR`] has passed unrenewed.
    fn start_heartbeat(&mut self, watch: &Arc<Watch>) {
        self.watch = Some(Arc::clone(watch));
        let client = Arc::clone(&self.client);
        let watch = Arc::clone(watch);
        let beat = match self.lease {
            Some((id, token)) => format!(
                "UPDATE modstate_lock_leases SET expires = clock_timestamp() + interval '{} seconds' \
                 WHERE id = {id} AND token = {token} AND holder = pg_backend_pid()",
                LEASE.as_secs()
            ),
            None => "SELECT 1".to_owned(),
        };
        let leased = self.lease.is_some();
        let _ = std::thread::Builder::new()
            .name("lock-heartbeat".to_owned())
            .spawn(move || heartbeat(&client, &watch, &beat, leased));
    }
}

/// The heartbeat of one held lock: see [`Session::start_heartbeat`].
fn heartbeat(client: &Mutex<Option<Client>>, watch: &Watch, beat: &str, leased: bool) {
    while watch.sleep(HEARTBEAT) {
        let mut slot = client.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(client) = slot.as_mut() else {
            return; // released
        };
        let sent = Instant::now();
        match client.simple_query(beat) {
            Ok(messages) => {
                let renewed = !leased
                    || messages
                        .iter()
                        .any(|m| matches!(m, SimpleQueryMessage::CommandComplete(1)));
                if renewed {
                    watch.renewed(sent + VALID_FOR);
                } else {
                    watch.lose("its lease had run out and was taken by a newer holder".to_owned());
                    return;
                }
            }
            Err(e) => {
                watch.lose(format!(
                    "its server session ended (server restart, ended session or network failure: {})",
                    first_line(&e.to_string())
                ));
                return;
            }
        }
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text)
}

impl Drop for Session {
    fn drop(&mut self) {
        // A lost or unrenewed lock's heartbeat may hang in a check the server never answers
        // (a stopped server, a silent network): then the release would hang with it, so the
        // session is left to that thread, which closes it when its check ends.
        let gone = self.watch.as_ref().is_some_and(|w| w.is_lost_or_expired());
        let taken = if gone {
            match self.client.try_lock() {
                Ok(mut slot) => slot.take(),
                Err(std::sync::TryLockError::Poisoned(slot)) => slot.into_inner().take(),
                Err(std::sync::TryLockError::WouldBlock) => return,
            }
        } else {
            self.client
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take()
        };
        let Some(client) = taken else {
            return;
        };
        let label = std::mem::take(&mut self.label);
        let lease = self.lease;
        // A loss the guard already reported needs no second word.
        let warn = !self.watch.as_ref().is_some_and(|w| w.is_lost());
        if tokio::runtime::Handle::try_current().is_ok() {
            // A sync client must not be used or dropped on a thread that runs a tokio
            // runtime (it would start a runtime inside it and panic): release it from a
            // thread of its own, and wait, so the lock is free when the guard is gone.
            let _ = std::thread::spawn(move || release(client, &label, lease, warn)).join();
        } else {
            release(client, &label, lease, warn);
        }
    }
}

/// Clears the lease (so the next holder need not wait it out), then unlocks at once, so the
/// lock is free when the guard's drop returns (closing alone frees it too, but only once the
/// server has seen the connection end), then closes the session. One round trip.
///
/// A session that ended while the lock was held (the server restarted, an administrator
/// ended it, the network failed past the keepalives) lost the lock when it ended; its lease
/// stays until it runs out, so nobody else started meanwhile unless the holder failed to
/// stop in time. It is said, so the holder's user knows.
fn release(mut client: Client, label: &str, lease: Option<(i64, u64)>, warn: bool) {
    let ended = [SqlState::ADMIN_SHUTDOWN, SqlState::CRASH_SHUTDOWN];
    let sql = match lease {
        Some((id, token)) => format!(
            "UPDATE modstate_lock_leases SET expires = NULL, holder = NULL \
             WHERE id = {id} AND token = {token} AND holder = pg_backend_pid(); {RELEASE}"
        ),
        None => RELEASE.to_owned(),
    };
    if let Err(e) = client.batch_execute(&sql)
        && warn
        && (e.is_closed()
            || e.as_db_error().is_none()
            || e.code().is_some_and(|code| ended.contains(code)))
    {
        log::warn!(
            target: "modstate::lock",
            "the lock on {label} was lost while held: its server session ended (server restart, ended session or network failure)"
        );
    }
    drop(client);
}

/// Runs one of the lease statements: (taken, new token, ms until a live lease runs out).
fn lease_row(
    client: &mut Client,
    sql: &str,
    id: i64,
    key: &str,
    what: &str,
) -> Result<(bool, Option<i64>, Option<i64>)> {
    let row = client.query_one(sql, &[&id, &key]).context(what)?;
    Ok((
        row.try_get(0).context(what)?,
        row.try_get(1).context(what)?,
        row.try_get(2).context(what)?,
    ))
}

/// Whether an acquisition failed because its session ended or the server was not there (a
/// restart): worth a new session while the deadline allows.
fn session_gone(error: &Error) -> bool {
    let Error::Database { source, .. } = error else {
        return false;
    };
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(source.as_ref());
    while let Some(c) = cause {
        if let Some(pg) = c.downcast_ref::<postgres::Error>() {
            let ended = [
                SqlState::ADMIN_SHUTDOWN,
                SqlState::CRASH_SHUTDOWN,
                SqlState::CANNOT_CONNECT_NOW,
            ];
            return pg.is_closed()
                || pg.as_db_error().is_none()
                || pg.code().is_some_and(|code| ended.contains(code));
        }
        cause = c.source();
    }
    false
}

/// Refuses, inside the write transaction `tx`, a write whose fence is not the latest token
/// issued for its key. The lease row is read `FOR SHARE`: a newer acquisition, which
/// increments the token, waits for this transaction, so its holder's writes come after.
pub(crate) fn check_fence_in(tx: &mut Transaction<'_>, fence: &Fence) -> Result<()> {
    let what = "checking the write's fencing token";
    let id = Name::Key(&fence.key).id();
    let issued: Option<i64> = tx
        .query_opt(
            "SELECT token FROM modstate_lock_leases WHERE id = $1 FOR SHARE",
            &[&id],
        )
        .context(what)?
        .map(|row| row.try_get(0))
        .transpose()
        .context(what)?;
    check_fence(
        fence,
        issued.and_then(|t| u64::try_from(t).ok()).unwrap_or(0),
    )
}

/// Writes this session's holder row.
fn record_holder(client: &mut Client, label: &str) -> std::result::Result<u64, postgres::Error> {
    let process = i32::try_from(std::process::id()).unwrap_or(0);
    client.execute(
        RECORD_HOLDER,
        &[&label, &host(), &process, &command_line(), &now_rfc3339()],
    )
}

/// The holder part of a wait or timeout line for the lock `id` (` (held by host pid N:
/// command, since T)`), or nothing when the holders cannot be found.
fn describe(client: &mut Client, id: i64) -> String {
    match held_locks(client, Some(id)) {
        Ok(states) => states
            .first()
            .map(|s| describe_holders(s.state, &s.holders, true))
            .unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Every lock held now (or only the lock `only`), sorted by name, with one holder per
/// session holding it, from every host.
fn held_locks(client: &mut Client, only: Option<i64>) -> Result<Vec<LockState>> {
    let what = "reading the server's lock table";
    let (classid, objid) = match only.map(split_id) {
        Some((c, o)) => (Some(c), Some(o)),
        None => (None, None),
    };
    let rows = client
        .query(HELD_LOCKS, &[&classid, &objid])
        .context(what)?;
    // (id, name, named by a holder row, exclusive, holder), one per granted lock of a session.
    let mut found: Vec<(i64, String, bool, bool, Holder)> = Vec::with_capacity(rows.len());
    for row in rows {
        let classid: u32 = row.try_get(0).context(what)?;
        let objid: u32 = row.try_get(1).context(what)?;
        let exclusive: bool = row.try_get(2).context(what)?;
        let recorded_key: Option<String> = row.try_get(3).context(what)?;
        let id = join_id(classid, objid);
        let described = recorded_key.as_deref().and_then(|k| recorded_name(k, id));
        let (name, holder) = match described {
            Some(name) => {
                let process: Option<i32> = row.try_get(5).context(what)?;
                let holder = Holder {
                    pid: process.and_then(|p| u32::try_from(p).ok()).unwrap_or(0),
                    host: row
                        .try_get::<_, Option<String>>(4)
                        .context(what)?
                        .unwrap_or_else(|| "?".to_owned()),
                    key: name.label().to_owned(),
                    command: row
                        .try_get::<_, Option<String>>(6)
                        .context(what)?
                        .unwrap_or_else(|| "?".to_owned()),
                    acquired_at: row
                        .try_get::<_, Option<String>>(7)
                        .context(what)?
                        .filter(|at| !at.is_empty()),
                    token: row
                        .try_get::<_, Option<i64>>(8)
                        .context(what)?
                        .and_then(|t| u64::try_from(t).ok()),
                };
                (name.label().to_owned(), holder)
            }
            None => {
                // A session between taking its lock and describing itself, or another
                // program's advisory lock: shown, so nothing held is hidden.
                let name = anonymous_name(id);
                let holder = Holder {
                    pid: 0,
                    host: "?".to_owned(),
                    key: name.clone(),
                    command: "?".to_owned(),
                    acquired_at: None,
                    token: None,
                };
                (name, holder)
            }
        };
        found.push((id, name, described.is_some(), exclusive, holder));
    }
    let mut states: Vec<(i64, LockState)> = Vec::new();
    for (id, name, named, exclusive, holder) in found {
        let at = match states.iter().position(|(known, _)| *known == id) {
            Some(at) => at,
            None => {
                states.push((
                    id,
                    LockState {
                        name: name.clone(),
                        state: "shared",
                        holder: None,
                        holders: Vec::new(),
                    },
                ));
                states.len() - 1
            }
        };
        let state = &mut states[at].1;
        // A key's text is known from any of its holders' rows.
        if named {
            state.name = name;
        }
        if exclusive {
            state.state = "held";
            state.holder = Some(holder.clone());
        }
        state.holders.push(holder);
    }
    let mut out: Vec<LockState> = states.into_iter().map(|(_, s)| s).collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_key_is_the_first_8_bytes_of_the_namespaced_sha256_big_endian() {
        // printf modstate/write | sha256sum → aab9a47433453f41…
        assert_eq!(Name::Write.id(), 0xaab9_a474_3345_3f41_u64 as i64);
        // printf modstate/global | sha256sum → 81e1692d5b010f5b…
        assert_eq!(Name::Global.id(), 0x81e1_692d_5b01_0f5b_u64 as i64);
        // printf modstate/key/write | sha256sum → 41f0b28ec77ddbac…
        assert_eq!(Name::Key("write").id(), 0x41f0_b28e_c77d_dbac_u64 as i64);
    }

    #[test]
    fn a_user_key_named_like_a_lock_is_another_lock() {
        assert_ne!(Name::Key("write").id(), Name::Write.id());
        assert_ne!(Name::Key("global").id(), Name::Global.id());
        assert_ne!(Name::Key("a").id(), Name::Key("b").id());
    }

    #[test]
    fn pg_locks_shows_a_bigint_key_as_high_and_low_halves() {
        assert_eq!(split_id(0x0000_0001_0000_0002), (1, 2));
        assert_eq!(split_id(-1), (u32::MAX, u32::MAX));
        assert_eq!(split_id(i64::MIN), (0x8000_0000, 0));
        for id in [
            0,
            1,
            -1,
            i64::MIN,
            i64::MAX,
            Name::Write.id(),
            Name::Key("k").id(),
        ] {
            let (classid, objid) = split_id(id);
            assert_eq!(join_id(classid, objid), id);
        }
    }

    #[test]
    fn a_holder_row_describes_only_the_lock_its_key_hashes_to() {
        let write = Name::Write.id();
        let key_write = Name::Key("write").id();
        assert_eq!(recorded_name("write", write), Some(Name::Write));
        assert_eq!(recorded_name("write", key_write), Some(Name::Key("write")));
        assert_eq!(
            recorded_name("global", Name::Global.id()),
            Some(Name::Global)
        );
        // A row left by an earlier session of the same pid that held another lock.
        assert_eq!(recorded_name("other", key_write), None);
    }

    #[test]
    fn an_undescribed_lock_is_named_by_its_key() {
        assert_eq!(anonymous_name(Name::Write.id()), "write");
        assert_eq!(anonymous_name(Name::Global.id()), "global");
        assert_eq!(anonymous_name(-1), "ffffffffffffffff");
        assert_eq!(anonymous_name(255), "00000000000000ff");
    }
}
