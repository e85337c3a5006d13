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

use std::path::Path;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use postgres::Client;
use postgres::error::SqlState;
use sha2::{Digest as _, Sha256};

use super::errors::PgContext;
use super::pool::{Pool, millis};
use crate::error::{Error, Result};
use crate::lock::{
    Holder, KeyedGuard, LockGuard, LockState, Locks, Mode, QUIET_WAIT, check_key, command_line,
    describe_holders, host, now_rfc3339,
};

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
     h.key, h.host, h.process, h.command, h.acquired_at \
     FROM pg_locks l LEFT JOIN modstate_lock_holders h ON h.pid = l.pid \
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
    /// server until `deadline`.
    fn acquire(&self, name: Name<'_>, mode: Mode, deadline: Instant) -> Result<LockGuard> {
        let label = name.label();
        let what = format!("taking the lock on {label}");
        let id = name.id();
        // From here on, any early return drops the session, which releases whatever it holds.
        let mut session = Session::new(self.pool.connect_by(deadline)?, label);
        let client = session.client()?;
        client.batch_execute(SESSION_SETUP).context(&what)?;
        // Best effort, as a lock file's record: it only informs `lock status` and waiters.
        let _ = record_holder(client, label);
        let try_lock = match mode {
            Mode::Shared => "SELECT pg_try_advisory_lock_shared($1)",
            Mode::Exclusive => "SELECT pg_try_advisory_lock($1)",
        };
        let got: bool = client
            .query_one(try_lock, &[&id])
            .context(&what)?
            .try_get(0)
            .context(&what)?;
        if !got {
            self.wait(client, name, mode, deadline, &what)?;
            // The row was written before the wait; the lock was taken now.
            let _ = client.execute(
                "UPDATE modstate_lock_holders SET acquired_at = $1 WHERE pid = pg_backend_pid()",
                &[&now_rfc3339()],
            );
        }
        Ok(LockGuard::session(Box::new(session)))
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
        let global = self.acquire(Name::Global, Mode::Shared, deadline)?;
        let mut held = Vec::with_capacity(keys.len());
        for key in keys {
            // An error drops `held` and `global`: nothing stays locked.
            held.push(self.acquire(Name::Key(key), mode, deadline)?);
        }
        Ok(KeyedGuard::new(global, held))
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
    /// In a mutex only to be `Sync`, as a guard must be (the client is not): nothing uses the
    /// client once the lock is held, until the drop, which has it to itself.
    client: Mutex<Option<Client>>,
    /// The lock's name, for the warning when the session was lost while held.
    label: String,
}

impl Session {
    fn new(client: Client, label: &str) -> Session {
        Session {
            client: Mutex::new(Some(client)),
            label: label.to_owned(),
        }
    }

    fn client(&mut self) -> Result<&mut Client> {
        self.client
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .as_mut()
            .ok_or_else(|| Error::Invalid("the lock's session is already closed".to_owned()))
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let taken = self
            .client
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(client) = taken else {
            return;
        };
        let label = std::mem::take(&mut self.label);
        if tokio::runtime::Handle::try_current().is_ok() {
            // A sync client must not be used or dropped on a thread that runs a tokio
            // runtime (it would start a runtime inside it and panic): release it from a
            // thread of its own, and wait, so the lock is free when the guard is gone.
            let _ = std::thread::spawn(move || release(client, &label)).join();
        } else {
            release(client, &label);
        }
    }
}

/// Unlocks at once, so the lock is free when the guard's drop returns (closing alone frees
/// it too, but only once the server has seen the connection end), then closes the session.
///
/// A session that ended while the lock was held (the server restarted, an administrator
/// ended it, the network failed past the keepalives) lost the lock when it ended, and
/// others may have taken it since: unlike a file lock, a server lock can be lost by a
/// holder that is still running. Nothing can undo that at release; it is said, so the
/// holder's user knows the work was not protected to the end.
fn release(mut client: Client, label: &str) {
    let ended = [SqlState::ADMIN_SHUTDOWN, SqlState::CRASH_SHUTDOWN];
    if let Err(e) = client.batch_execute(RELEASE)
        && (e.is_closed()
            || e.as_db_error().is_none()
            || e.code().is_some_and(|code| ended.contains(code)))
    {
        log::warn!(
            target: "modstate::lock",
            "the lock on {label} was lost while held: its server session ended (server restart, ended session or network failure), so others may have held it meanwhile"
        );
    }
    drop(client);
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
