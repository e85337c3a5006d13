//! Cross-process locks in the sidecar directory `<db>.locks/`.
//!
//! Every lock is a kernel advisory lock (`flock` through fs2) on a file that is never deleted,
//! so a holder that dies — even by SIGKILL — releases it at once: there is no TTL, no
//! heartbeat and no stale-lock reclaim that could break a live holder. Each acquisition opens
//! its own descriptor, so two acquisitions inside one process conflict exactly as two
//! processes do.
//!
//! This is the one module that takes file locks (`clippy.toml` refuses the lock calls
//! elsewhere), so every lock in the program is found here.
//!
//! Lock order, to rule out deadlock: `global` → keys (sorted, deduplicated) → `write`.
//!
//! * `write`  — exclusive, for the span of one write transaction.
//! * `global` — exclusive for structural work (restore, gc, vacuum); shared for keyed work, so
//!   structural work waits for running keyed work and keeps new keyed work out, without polling.
//! * keys     — one file per key, named by the sha256 of the key, so no key can name a path.
//!   An exclusive holder's record in the file carries the key's fencing token, one more than
//!   the previous holder's: the counter lives with the lock, written while it is held.

#![allow(clippy::disallowed_methods)] // the one place allowed to take file locks

use std::fs::{self, File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{FileExt as _, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::private::create_private_dir;

/// Longest key accepted, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// How long a waiter stays silent before telling the user what it waits for (like cargo).
pub(crate) const QUIET_WAIT: Duration = Duration::from_secs(1);

/// Holder records are padded to a multiple of this, so rewrites rarely change the file size.
const HOLDER_PAD: usize = 512;

const WRITE: &str = "write";
const GLOBAL: &str = "global";
const KEY_PREFIX: &str = "key-";

/// Shared or exclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Many holders at once, none exclusive.
    Shared,
    /// One holder, no shared holders.
    Exclusive,
}

/// Who holds a lock. An exclusive holder writes this record into the lock file after
/// acquiring it; holders the kernel reports without a matching record (shared holders, or an
/// exclusive holder that has not written its record yet) are described from `/proc`, with no
/// acquisition time.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Holder {
    /// Process id of the holder.
    pub pid: u32,
    /// Host the holder runs on.
    pub host: String,
    /// The lock's name as the holder gave it (`write`, `global` or the key).
    pub key: String,
    /// The holder's command line (cut at 200 bytes).
    pub command: String,
    /// When the lock was taken (RFC 3339 UTC), when known.
    pub acquired_at: Option<String>,
    /// The fencing token of this holding of an exclusive key: larger than every token issued
    /// for that key before it. `None` for `write`, `global` and shared holders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<u64>,
}

/// A fencing token presented with a write: the write is refused with [`Error::Fenced`] when
/// a larger token has been issued for `key` since, because then a newer holder of the lock
/// exists and the writer may be a holder that lost it without knowing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fence {
    /// The lock key the token was issued for.
    pub key: String,
    /// The token, as [`KeyedGuard::token`] (or `MODSTATE_LOCK_TOKEN` in `lock run`) gave it.
    pub token: u64,
}

impl std::str::FromStr for Fence {
    type Err = Error;

    /// `KEY=TOKEN`, the token a positive whole number; the key may itself hold `=` (the last
    /// one separates).
    fn from_str(text: &str) -> Result<Fence> {
        let bad = || {
            Error::Invalid(format!(
                "fence {text:?} is not KEY=TOKEN with TOKEN a positive whole number; give the key and the token its lock holder was issued"
            ))
        };
        let (key, token) = text.rsplit_once('=').ok_or_else(bad)?;
        let token: u64 = token.parse().map_err(|_| bad())?;
        if token == 0 {
            return Err(bad());
        }
        check_key(key)?;
        Ok(Fence {
            key: key.to_owned(),
            token,
        })
    }
}

/// Refuses a fence whose token is not the latest issued for its key (`issued`, 0 when none
/// ever was).
pub(crate) fn check_fence(fence: &Fence, issued: u64) -> Result<()> {
    if fence.token < issued {
        return Err(Error::Fenced(format!(
            "fenced: token {} for lock {:?} is stale, token {issued} was issued since to a newer holder; nothing was written — this holder lost the lock, stop its work",
            fence.token, fence.key
        )));
    }
    if fence.token > issued {
        return Err(Error::Invalid(format!(
            "fence token {} for lock {:?} was never issued (the latest is {issued}); give the token its lock holder was issued",
            fence.token, fence.key
        )));
    }
    Ok(())
}

/// Whether a held lock is still held, as its heartbeat last saw it; shared by a guard, the
/// thread that renews its lease and the thread that waits to report a loss.
pub(crate) struct Watch {
    state: Mutex<WatchState>,
    changed: Condvar,
}

/// What a guard calls when its lock is lost.
type LossCallback = Box<dyn FnOnce(Error) + Send>;

struct WatchState {
    /// Why the lock was lost, once it was.
    lost: Option<String>,
    /// Until when the holder may act as the holder without another renewal; `None` for a lock
    /// that cannot expire while its process lives (a file lock).
    valid_until: Option<Instant>,
    /// The guard was dropped: the lock was released, nothing more to watch.
    stopped: bool,
    /// What to call on loss, at most once.
    on_lost: Option<LossCallback>,
    /// Whether a thread already waits to call `on_lost`.
    waiting: bool,
}

impl Watch {
    /// A watch valid until `valid_until` (`None`: for good).
    pub(crate) fn new(valid_until: Option<Instant>) -> Arc<Watch> {
        Arc::new(Watch {
            state: Mutex::new(WatchState {
                lost: None,
                valid_until,
                stopped: false,
                on_lost: None,
                waiting: false,
            }),
            changed: Condvar::new(),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, WatchState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A renewal succeeded: the holder may act until `valid_until` (counted from when the
    /// renewal was sent, so a slow answer never stretches it).
    pub(crate) fn renewed(&self, valid_until: Instant) {
        let mut state = self.state();
        if state.lost.is_none() {
            state.valid_until = Some(valid_until);
        }
        self.changed.notify_all();
    }

    /// The lock is lost, for the reason `why`: recorded, and the loss callback (if any) called.
    pub(crate) fn lose(&self, why: String) {
        let callback = {
            let mut state = self.state();
            if state.lost.is_some() || state.stopped {
                return;
            }
            state.lost = Some(why.clone());
            self.changed.notify_all();
            state.on_lost.take()
        };
        if let Some(callback) = callback {
            callback(Error::LockLost(why));
        }
    }

    /// The guard is gone: stop renewing and never report a loss.
    fn stop(&self) {
        let mut state = self.state();
        state.stopped = true;
        state.on_lost = None;
        self.changed.notify_all();
    }

    /// Sleeps up to `pause`, or less if the guard is dropped meanwhile; `false` once it is
    /// (or the lock is lost): then the heartbeat ends.
    pub(crate) fn sleep(&self, pause: Duration) -> bool {
        let state = self.state();
        if state.stopped || state.lost.is_some() {
            return false;
        }
        let (state, _) = self
            .changed
            .wait_timeout_while(state, pause, |s| !s.stopped && s.lost.is_none())
            .unwrap_or_else(PoisonError::into_inner);
        !state.stopped && state.lost.is_none()
    }

    /// Whether a loss was recorded (and so reported to whoever asked).
    pub(crate) fn is_lost(&self) -> bool {
        self.state().lost.is_some()
    }

    /// Whether the lock is lost or went unrenewed past its validity, even after release.
    pub(crate) fn is_lost_or_expired(&self) -> bool {
        let state = self.state();
        state.lost.is_some()
            || state
                .valid_until
                .is_some_and(|until| Instant::now() >= until)
    }

    /// Why the lock is lost, if it is: lost by its session, or not renewed in time.
    fn lost(&self) -> Option<String> {
        let state = self.state();
        if let Some(why) = &state.lost {
            return Some(why.clone());
        }
        match state.valid_until {
            Some(until) if !state.stopped && Instant::now() >= until => Some(not_renewed_message()),
            _ => None,
        }
    }

    /// Calls `f` once when the lock is lost: at once if it is already; from a thread of its own
    /// otherwise, which also notices a lease that was not renewed in time (a renewal hanging
    /// on a silent network). Never called for a lock that cannot expire, or after release.
    fn on_lost(self: &Arc<Self>, f: LossCallback) {
        if let Some(why) = self.lost() {
            f(Error::LockLost(why));
            return;
        }
        let mut state = self.state();
        if state.valid_until.is_none() || state.stopped {
            return;
        }
        state.on_lost = Some(f);
        if state.waiting {
            return;
        }
        state.waiting = true;
        drop(state);
        let watch = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("lock-watch".to_owned())
            .spawn(move || watch.wait_for_expiry());
        if spawned.is_err() {
            // No thread for the deadline: a loss reported by the heartbeat still calls `f`.
            self.state().waiting = false;
        }
    }

    /// Waits until the lease runs out unrenewed (then it is lost), the lock is lost or the
    /// guard is dropped.
    fn wait_for_expiry(&self) {
        let mut state = self.state();
        loop {
            if state.stopped || state.lost.is_some() {
                return;
            }
            let Some(until) = state.valid_until else {
                return;
            };
            let now = Instant::now();
            if now >= until {
                drop(state);
                self.lose(not_renewed_message());
                return;
            }
            state = self
                .changed
                .wait_timeout(state, until - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

fn not_renewed_message() -> String {
    "its lease could not be renewed in time (the server did not answer)".to_owned()
}

/// One lock file as `lock status` reports it.
#[derive(Clone, Debug, Serialize)]
pub struct LockState {
    /// `write`, `global`, or the key as its holder recorded it.
    pub name: String,
    /// `free`, `held` (exclusive) or `shared`.
    pub state: &'static str,
    /// The exclusive holder, when the lock is held exclusively.
    pub holder: Option<Holder>,
    /// Every current holder as the kernel reports them: one for `held`, one or more for
    /// `shared`, none for `free`. Empty too where the kernel's lock table cannot be read.
    pub holders: Vec<Holder>,
}

/// The locks a store offers, whatever holds them: the storage backend boundary for locks
/// (see `store/backend.rs`). [`LockDir`] is the implementation for a database file (kernel
/// `flock` locks in `<db>.locks/`); a server backend implements the same operations with the
/// server's session locks: released when the holder dies, order `global` → keys → `write`,
/// and, because a server session can be lost under a running holder, a heartbeat and an
/// exclusive key's lease (see `store/postgres/locks.rs`).
pub trait Locks: Send + Sync {
    /// The write lock, held for the span of one write transaction.
    fn write(&self) -> Result<LockGuard>;
    /// The global lock: exclusive for structural work, shared for keyed work.
    fn global(&self, mode: Mode) -> Result<LockGuard>;
    /// `global` shared, then every key in sorted order, deduplicated; all or nothing.
    fn keyed(&self, keys: &[&str], mode: Mode) -> Result<KeyedGuard>;
    /// Every lock with its state and current holders.
    fn status(&self) -> Result<Vec<LockState>>;
    /// Where the locks live when they are files (the lock directory), for a diagnosis.
    fn directory(&self) -> Option<&Path>;
    /// Whether someone holds `key` (shared or exclusive) right now; takes nothing. For the
    /// artifact collector, which must not remove what a running process pins.
    fn is_held(&self, key: &str) -> Result<bool> {
        Ok(self
            .status()?
            .iter()
            .any(|s| s.name == key && s.state != "free"))
    }
}

impl Locks for LockDir {
    fn write(&self) -> Result<LockGuard> {
        LockDir::write(self)
    }

    fn global(&self, mode: Mode) -> Result<LockGuard> {
        LockDir::global(self, mode)
    }

    fn keyed(&self, keys: &[&str], mode: Mode) -> Result<KeyedGuard> {
        LockDir::keyed(self, keys, mode)
    }

    fn status(&self) -> Result<Vec<LockState>> {
        LockDir::status(self)
    }

    fn directory(&self) -> Option<&Path> {
        Some(self.path())
    }

    fn is_held(&self, key: &str) -> Result<bool> {
        let path = self.dir.join(key_file_name(key));
        match open_lock_file_read_only(&path) {
            Ok(file) => Ok(probe(&file, &path)? != "free"),
            // Never taken (or no lock directory yet): nobody holds it.
            Err(Error::Io { source, .. }) if source.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// The lock directory of one database.
#[derive(Clone, Debug)]
pub struct LockDir {
    dir: PathBuf,
    timeout: Duration,
}

/// A held lock; released (exactly once) when dropped.
///
/// A file lock cannot be lost while its process lives. A server lock can (its session ends:
/// a server restart, an ended session, a network failure): [`LockGuard::check`] and
/// [`LockGuard::on_lost`] say so, rather than letting the holder hold nothing unawares.
pub struct LockGuard {
    held: Held,
    /// The label of the lock, for messages.
    label: String,
    /// The fencing token of an exclusive key's holding.
    token: Option<u64>,
    /// The heartbeat's view of a server lock; `None` for a file lock.
    watch: Option<Arc<Watch>>,
}

impl std::fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockGuard")
            .field("held", &self.held)
            .field("label", &self.label)
            .field("token", &self.token)
            .finish()
    }
}

/// What keeps a lock held: a locked file here, or a server backend's session.
enum Held {
    File(File),
    /// A server session holding the lock; dropping it releases the lock (see the backend).
    /// Never read: it is held only to be dropped.
    Session(#[allow(dead_code)] Box<dyn Send + Sync>),
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Held::File(file) => f.debug_tuple("File").field(file).finish(),
            Held::Session(_) => f.write_str("Session"),
        }
    }
}

impl LockGuard {
    fn file(file: File, label: &str, token: Option<u64>) -> LockGuard {
        LockGuard {
            held: Held::File(file),
            label: label.to_owned(),
            token,
            watch: None,
        }
    }

    /// A lock held by a server backend's session, released when `session` is dropped, watched
    /// by the backend's heartbeat through `watch`.
    pub(crate) fn session(
        session: Box<dyn Send + Sync>,
        label: &str,
        token: Option<u64>,
        watch: Arc<Watch>,
    ) -> LockGuard {
        LockGuard {
            held: Held::Session(session),
            label: label.to_owned(),
            token,
            watch: Some(watch),
        }
    }

    /// The fencing token of this holding: larger than every token issued for the key before.
    /// Only an exclusive key has one.
    pub fn token(&self) -> Option<u64> {
        self.token
    }

    /// `Err(LockLost)` once the lock has been lost (its server session ended, or its lease
    /// could not be renewed in time): the work it guards is no longer protected and must stop.
    /// A file lock is never lost while its process lives.
    pub fn check(&self) -> Result<()> {
        match self.watch.as_ref().and_then(|w| w.lost()) {
            Some(why) => Err(lost_error(&self.label, &why)),
            None => Ok(()),
        }
    }

    /// Calls `f` once, from another thread, when the lock is lost (at once if it already is);
    /// never after the guard is dropped, and never for a file lock.
    pub fn on_lost(&self, f: impl FnOnce(Error) + Send + 'static) {
        if let Some(watch) = &self.watch {
            let label = self.label.clone();
            watch.on_lost(Box::new(move |e| {
                let why = e.to_string();
                f(lost_error(&label, &why))
            }));
        }
    }
}

/// The error of a lost lock.
fn lost_error(label: &str, why: &str) -> Error {
    Error::LockLost(format!(
        "lock on {label} lost while held: {why}; others may take it once its lease runs out"
    ))
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if let Some(watch) = &self.watch {
            watch.stop();
        }
        // Closing the descriptor releases the lock too; unlocking first makes the release
        // independent of any descriptor a child process might have inherited.
        if let Held::File(file) = &self.held {
            let _ = fs2::FileExt::unlock(file);
        }
    }
}

/// Locks for a set of keys plus `global` shared; all released on drop.
#[derive(Debug)]
pub struct KeyedGuard {
    // Dropped in field order: keys first, then global — the reverse of acquisition.
    _keys: Vec<LockGuard>,
    _global: LockGuard,
}

impl KeyedGuard {
    /// The guard of `keys` (taken in order) under `global` (taken first).
    pub(crate) fn new(global: LockGuard, keys: Vec<LockGuard>) -> KeyedGuard {
        KeyedGuard {
            _keys: keys,
            _global: global,
        }
    }

    /// The fencing token of `key`, held exclusively by this guard: larger than every token
    /// issued for that key before. `None` for a key not held here, or held shared.
    pub fn token(&self, key: &str) -> Option<u64> {
        self._keys
            .iter()
            .find(|g| g.label == key)
            .and_then(LockGuard::token)
    }

    /// `Err(LockLost)` once any of the guard's locks has been lost; see [`LockGuard::check`].
    /// The error names the guard's keys, whichever of its locks (`global` among them) went.
    pub fn check(&self) -> Result<()> {
        match self.watches().iter().find_map(|w| w.lost()) {
            Some(why) => Err(lost_error(&self.label(), &why)),
            None => Ok(()),
        }
    }

    /// Calls `f` once, from another thread, when any of the guard's locks is lost; see
    /// [`LockGuard::on_lost`].
    pub fn on_lost(&self, f: impl FnOnce(Error) + Send + 'static) {
        let once: Arc<Mutex<Option<LossCallback>>> = Arc::new(Mutex::new(Some(Box::new(f))));
        let watches = self.watches();
        let label = self.label();
        for watch in &watches {
            let once = Arc::clone(&once);
            let others = watches.clone();
            let label = label.clone();
            watch.on_lost(Box::new(move |e| {
                let f = once.lock().unwrap_or_else(PoisonError::into_inner).take();
                if let Some(f) = f {
                    // `e` carries the bare reason (see `Watch::lose`).
                    let why = e.to_string();
                    // The guard is lost as a whole: its other locks are not to be relied on
                    // (nor warned about again at release).
                    for other in &others {
                        other.lose(why.clone());
                    }
                    f(lost_error(&label, &why));
                }
            }));
        }
    }

    /// The watches of the guard's server locks (none for file locks).
    fn watches(&self) -> Vec<Arc<Watch>> {
        self._keys
            .iter()
            .chain(std::iter::once(&self._global))
            .filter_map(|g| g.watch.clone())
            .collect()
    }

    /// The guard's keys, for messages (`global` when it holds none).
    fn label(&self) -> String {
        if self._keys.is_empty() {
            return self._global.label.clone();
        }
        self._keys
            .iter()
            .map(|g| g.label.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl LockDir {
    /// The lock directory of the database whose canonical path is `db_path` (see
    /// [`crate::store::canonical_db_path`]: every spelling of one database must share one lock
    /// directory). Nothing is created until a lock is first taken, so reading a database
    /// creates nothing beside it.
    pub fn new(db_path: &Path, timeout: Duration) -> LockDir {
        LockDir {
            dir: lock_dir_path(db_path),
            timeout,
        }
    }

    /// The directory `<db>.locks/`.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// How long an acquisition waits before failing with `Busy`.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The same directory with another timeout.
    pub fn with_timeout(&self, timeout: Duration) -> LockDir {
        LockDir {
            dir: self.dir.clone(),
            timeout,
        }
    }

    /// The write lock, held for the span of one write transaction.
    pub fn write(&self) -> Result<LockGuard> {
        self.acquire(WRITE, WRITE, Mode::Exclusive, Instant::now() + self.timeout)
    }

    /// The write lock if it is free right now, else `None`: for opportunistic maintenance
    /// (a WAL checkpoint) that must never make anyone wait.
    pub fn try_write(&self) -> Result<Option<LockGuard>> {
        let path = self.dir.join(WRITE);
        let file = match self.open_in_dir(&path) {
            Ok(file) => file,
            // A read-only location: no maintenance from here.
            Err(Error::Io { source, .. }) if source.kind() == ErrorKind::PermissionDenied => {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        if !try_lock(&file, Mode::Exclusive).map_err(|e| Error::io("locking", &path, e))? {
            return Ok(None);
        }
        let _ = write_holder(&file, WRITE, None);
        Ok(Some(LockGuard::file(file, WRITE, None)))
    }

    /// The global lock: exclusive for structural work, shared for keyed work.
    pub fn global(&self, mode: Mode) -> Result<LockGuard> {
        self.acquire(GLOBAL, GLOBAL, mode, Instant::now() + self.timeout)
    }

    /// `global` shared, then every key in sorted order, deduplicated; all or nothing within
    /// the timeout.
    pub fn keyed<S: AsRef<str>>(&self, keys: &[S], mode: Mode) -> Result<KeyedGuard> {
        let mut keys: Vec<&str> = keys.iter().map(AsRef::as_ref).collect();
        for key in &keys {
            check_key(key)?;
        }
        keys.sort_unstable();
        keys.dedup();
        let deadline = Instant::now() + self.timeout;
        let global = self.acquire(GLOBAL, GLOBAL, Mode::Shared, deadline)?;
        let mut held = Vec::with_capacity(keys.len());
        for key in keys {
            // An error drops `held` and `global`: nothing stays locked.
            let path = self.dir.join(key_file_name(key));
            let file = self.open_in_dir(&path)?;
            let file = take_lock(file, &path, key, mode, deadline, self.timeout)?;
            held.push(if mode == Mode::Exclusive {
                issue_token(file, key)?
            } else {
                LockGuard::file(file, key, None)
            });
        }
        Ok(KeyedGuard::new(global, held))
    }

    /// The latest fencing token issued for `key` (0 if none ever was), from the counter in
    /// its lock file; read without taking the lock, so it never waits.
    pub fn issued_token(&self, key: &str) -> Result<u64> {
        check_key(key)?;
        let path = self.dir.join(key_file_name(key));
        match open_lock_file_read_only(&path) {
            Ok(file) => Ok(read_holder(&file).and_then(|h| h.token).unwrap_or(0)),
            Err(Error::Io { source, .. }) if source.kind() == ErrorKind::NotFound => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// Every lock file with its state, sorted by name. Opens every file read-only and creates
    /// nothing, so a user with read access alone sees every lock.
    pub fn status(&self) -> Result<Vec<LockState>> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            // No lock has ever been taken on this database.
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("listing", &self.dir, e)),
        };
        let table = KernelLocks::read();
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("listing", &self.dir, e))?;
            let file_name = entry.file_name().to_string_lossy().into_owned();
            if file_name != WRITE && file_name != GLOBAL && !file_name.starts_with(KEY_PREFIX) {
                continue;
            }
            let path = entry.path();
            let Ok(file) = open_lock_file_read_only(&path) else {
                continue;
            };
            let recorded = read_holder(&file);
            let (state, holders) =
                current_holders(&file, &path, table.as_ref(), recorded.as_ref(), &file_name)?;
            let name = if file_name.starts_with(KEY_PREFIX) {
                recorded
                    .as_ref()
                    .map(|h| h.key.clone())
                    .unwrap_or_else(|| file_name.clone())
            } else {
                file_name
            };
            let holder = if state == "held" {
                holders.first().cloned()
            } else {
                None
            };
            out.push(LockState {
                name,
                state,
                holder,
                holders,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn acquire(
        &self,
        file_name: &str,
        label: &str,
        mode: Mode,
        deadline: Instant,
    ) -> Result<LockGuard> {
        let path = self.dir.join(file_name);
        let file = self.open_in_dir(&path)?;
        lock_file(file, &path, label, mode, deadline, self.timeout)
    }

    /// Opens a lock file in the directory, creating the directory (0700) on first use.
    fn open_in_dir(&self, path: &Path) -> Result<File> {
        match open_lock_file(path) {
            Err(Error::Io { source, .. }) if source.kind() == ErrorKind::NotFound => {
                create_private_dir(&self.dir)?;
                open_lock_file(path)
            }
            other => other,
        }
    }
}

/// Locks the file at `path` (created 0600 if missing, never through a symlink) the way every
/// modstate lock is taken: quietly for a second, then saying who holds it, `Busy` at the
/// deadline. Also used for lock files outside a lock directory, such as `dagger.lock.lock`.
pub(crate) fn acquire_path(
    path: &Path,
    label: &str,
    mode: Mode,
    deadline: Instant,
    timeout: Duration,
) -> Result<LockGuard> {
    lock_file(open_lock_file(path)?, path, label, mode, deadline, timeout)
}

/// Takes the lock on an opened lock file: at once if free, else by waiting.
fn lock_file(
    file: File,
    path: &Path,
    label: &str,
    mode: Mode,
    deadline: Instant,
    timeout: Duration,
) -> Result<LockGuard> {
    let file = take_lock(file, path, label, mode, deadline, timeout)?;
    if mode == Mode::Exclusive {
        // Best effort: the record only informs `lock status` and waiters.
        let _ = write_holder(&file, label, None);
    }
    Ok(LockGuard::file(file, label, None))
}

/// Gives an exclusively held key's guard its fencing token: one more than the last issued,
/// kept in the lock file's holder record (written under the lock, so no two holders can
/// issue the same number). Unlike the rest of the record this write must succeed: a token
/// that was not recorded could be issued again.
fn issue_token(file: File, key: &str) -> Result<LockGuard> {
    let previous = read_holder(&file).and_then(|h| h.token).unwrap_or(0);
    let token = previous + 1;
    write_holder(&file, key, Some(token))
        .map_err(|e| Error::io("recording the fencing token of lock", key, e))?;
    Ok(LockGuard::file(file, key, Some(token)))
}

/// Takes the lock on an opened lock file, at once if free, else by waiting; writes nothing.
fn take_lock(
    file: File,
    path: &Path,
    label: &str,
    mode: Mode,
    deadline: Instant,
    timeout: Duration,
) -> Result<File> {
    if try_lock(&file, mode).map_err(|e| Error::io("locking", path, e))? {
        Ok(file)
    } else {
        wait_for_lock(file, path, label, mode, deadline, timeout)
    }
}

/// `<db>.locks`
fn lock_dir_path(db_path: &Path) -> PathBuf {
    let mut name = db_path.as_os_str().to_owned();
    name.push(".locks");
    PathBuf::from(name)
}

/// The file name of a key's lock: the key's sha256, so any string is a safe key.
fn key_file_name(key: &str) -> String {
    format!("{KEY_PREFIX}{}", Digest::of(key.as_bytes()).hex())
}

pub(crate) fn check_key(key: &str) -> Result<()> {
    if key.len() > MAX_KEY_BYTES {
        return Err(Error::Invalid(format!(
            "lock key is {} bytes; the limit is {MAX_KEY_BYTES} bytes — use a shorter key",
            key.len()
        )));
    }
    Ok(())
}

/// Blocks on the lock in a helper thread so the caller can give up at the deadline.
///
/// The thread owns the descriptor: if the caller has gone when the lock arrives, the send fails
/// and dropping the file releases the lock at once.
fn wait_for_lock(
    file: File,
    path: &Path,
    label: &str,
    mode: Mode,
    deadline: Instant,
    timeout: Duration,
) -> Result<File> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let result = match mode {
            Mode::Shared => fs2::FileExt::lock_shared(&file),
            Mode::Exclusive => fs2::FileExt::lock_exclusive(&file),
        };
        let _ = tx.send(result.map(|()| file));
    });
    let started = Instant::now();
    let mut told = false;
    loop {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let wait = if told {
            deadline - now
        } else {
            (started + QUIET_WAIT)
                .saturating_duration_since(now)
                .min(deadline - now)
        };
        match rx.recv_timeout(wait) {
            Ok(Ok(file)) => return Ok(file),
            Ok(Err(e)) => return Err(Error::io("locking", path, e)),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if !told && Instant::now() < deadline {
                    // A record, not a print: the library writes nothing itself. The CLI's logger
                    // turns it into cargo's familiar stderr line; an embedder decides.
                    log::warn!(
                        target: "modstate::lock",
                        "Blocking waiting for lock on {label}{}",
                        describe_holder(path, label)
                    );
                    told = true;
                }
            }
        }
    }
    Err(Error::Busy(format!(
        "timed out after {:.1}s waiting for lock on {label}{}; retry later, or allow a longer lock timeout",
        timeout.as_secs_f64(),
        describe_holder(path, label)
    )))
}

/// What a waiter or a timeout says about the current holders: ` (held by pid N: command,
/// since T)`, ` (held shared by 2 processes: pid N: command; pid M: command)`, or nothing when
/// no holder can be named. Built from the kernel's lock table, so a record left by an earlier
/// holder that has exited is never presented as the holder.
fn describe_holder(path: &Path, label: &str) -> String {
    let Ok(file) = open_lock_file_read_only(path) else {
        return String::new();
    };
    let recorded = read_holder(&file);
    let table = KernelLocks::read();
    let Ok((state, holders)) =
        current_holders(&file, path, table.as_ref(), recorded.as_ref(), label)
    else {
        return String::new();
    };
    describe_holders(state, &holders, false)
}

/// The holder part of a wait or timeout line, from a lock's state and holders; with
/// `with_host`, each holder is named `pid N on HOST` (holders on other machines, for a server
/// backend).
pub(crate) fn describe_holders(state: &str, holders: &[Holder], with_host: bool) -> String {
    let one = |h: &Holder| {
        let who = if with_host {
            format!("pid {} on {}", h.pid, h.host)
        } else {
            format!("pid {}", h.pid)
        };
        match &h.acquired_at {
            Some(since) => format!("{who}: {}, since {since}", h.command),
            None => format!("{who}: {}", h.command),
        }
    };
    match (state, holders) {
        ("held", [h, ..]) => format!(" (held by {})", one(h)),
        ("shared", []) => " (held shared by other processes)".to_owned(),
        ("shared", hs) => {
            let mut named: Vec<String> = hs.iter().take(3).map(one).collect();
            if hs.len() > 3 {
                named.push("…".to_owned());
            }
            let n = hs.len();
            let noun = if n == 1 { "process" } else { "processes" };
            format!(" (held shared by {n} {noun}: {})", named.join("; "))
        }
        _ => String::new(),
    }
}

/// The state of a lock (`free`, `shared` or `held`) and its current holders.
///
/// Where the kernel's lock table is readable it is the truth: the holders are the processes it
/// names, and the record in the file describes one of them only if its pid matches. Elsewhere
/// the state is found by briefly trying the lock, and the record is trusted when held.
fn current_holders(
    file: &File,
    path: &Path,
    table: Option<&KernelLocks>,
    recorded: Option<&Holder>,
    label: &str,
) -> Result<(&'static str, Vec<Holder>)> {
    let Some(table) = table else {
        let state = probe(file, path)?;
        let holders = match (state, recorded) {
            ("held", Some(h)) => vec![h.clone()],
            _ => Vec::new(),
        };
        return Ok((state, holders));
    };
    let meta = file.metadata().map_err(|e| Error::io("reading", path, e))?;
    let entries = table.holders_of(meta.dev(), meta.ino());
    if entries.is_empty() {
        // The table names no holder. Make sure by trying the lock: a file system that reports
        // other device numbers in /proc/locks than in stat (overlayfs, say), or a lock taken
        // between the two reads, must not be shown as free while it is held.
        let state = probe(file, path)?;
        let holders = match (state, recorded) {
            ("held", Some(h)) => vec![h.clone()],
            _ => Vec::new(),
        };
        return Ok((state, holders));
    }
    let state = if entries.iter().any(|&(_, exclusive)| exclusive) {
        "held"
    } else if entries.is_empty() {
        "free"
    } else {
        "shared"
    };
    let holders = entries
        .into_iter()
        .map(|(pid, _)| match recorded {
            Some(h) if h.pid == pid && state == "held" => h.clone(),
            _ => Holder {
                pid,
                host: host().to_owned(),
                key: recorded.map_or_else(|| label.to_owned(), |h| h.key.clone()),
                command: process_command_line(pid),
                acquired_at: None,
                token: None,
            },
        })
        .collect();
    Ok((state, holders))
}

/// The kernel's table of `flock` locks (`/proc/locks`, Linux).
struct KernelLocks {
    /// (device major, device minor, inode, pid, exclusive)
    entries: Vec<(u64, u64, u64, u32, bool)>,
}

impl KernelLocks {
    /// `None` where the table cannot be read (not Linux, or /proc not mounted).
    fn read() -> Option<KernelLocks> {
        let text = fs::read_to_string("/proc/locks").ok()?;
        let entries = text.lines().filter_map(parse_proc_locks_line).collect();
        Some(KernelLocks { entries })
    }

    /// (pid, exclusive) of every process holding a lock on the file with `dev` and `ino`.
    fn holders_of(&self, dev: u64, ino: u64) -> Vec<(u32, bool)> {
        let (major, minor) = dev_major_minor(dev);
        let mut holders: Vec<(u32, bool)> = self
            .entries
            .iter()
            .filter(|e| e.0 == major && e.1 == minor && e.2 == ino)
            .map(|e| (e.3, e.4))
            .collect();
        holders.sort_unstable();
        holders.dedup();
        holders
    }
}

/// One line of `/proc/locks`, e.g. `3: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF`. Waiters
/// (`3: -> FLOCK …`) and other lock kinds are skipped: only held `flock` locks count.
fn parse_proc_locks_line(line: &str) -> Option<(u64, u64, u64, u32, bool)> {
    let mut fields = line.split_whitespace().skip(1);
    if fields.next()? != "FLOCK" {
        return None;
    }
    let _advisory = fields.next()?;
    let exclusive = match fields.next()? {
        "WRITE" => true,
        "READ" => false,
        _ => return None,
    };
    let pid = fields.next()?.parse().ok()?;
    let mut id = fields.next()?.split(':');
    let major = u64::from_str_radix(id.next()?, 16).ok()?;
    let minor = u64::from_str_radix(id.next()?, 16).ok()?;
    let ino = id.next()?.parse().ok()?;
    Some((major, minor, ino, pid, exclusive))
}

/// Splits a Linux `dev_t` into major and minor numbers (glibc's encoding).
fn dev_major_minor(dev: u64) -> (u64, u64) {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    (major, minor)
}

/// A process's command line from `/proc`, cut like a holder record; `?` when unreadable.
fn process_command_line(pid: u32) -> String {
    match fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(raw) if !raw.is_empty() => {
            let words: Vec<String> = raw
                .split(|b| *b == 0)
                .filter(|w| !w.is_empty())
                .map(|w| without_password(&String::from_utf8_lossy(w)))
                .collect();
            cut_command(words.join(" "))
        }
        _ => "?".to_owned(),
    }
}

/// Locks `file` exclusively, waiting if needed: for a private temp file whose lock only tells
/// sweepers that its writer is alive.
pub(crate) fn hold_exclusive(file: &File) -> std::io::Result<()> {
    fs2::FileExt::lock_exclusive(file)
}

/// Locks `file` exclusively if nobody holds it; `false` when someone does.
pub(crate) fn try_hold_exclusive(file: &File) -> std::io::Result<bool> {
    try_lock(file, Mode::Exclusive)
}

fn try_lock(file: &File, mode: Mode) -> std::io::Result<bool> {
    let result = match mode {
        Mode::Shared => fs2::FileExt::try_lock_shared(file),
        Mode::Exclusive => fs2::FileExt::try_lock_exclusive(file),
    };
    match result {
        Ok(()) => Ok(true),
        Err(e)
            if e.kind() == ErrorKind::WouldBlock
                || e.raw_os_error() == fs2::lock_contended_error().raw_os_error() =>
        {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// `free`, `shared` or `held`, found by briefly trying the lock.
fn probe(file: &File, path: &Path) -> Result<&'static str> {
    if try_lock(file, Mode::Exclusive).map_err(|e| Error::io("probing", path, e))? {
        let _ = fs2::FileExt::unlock(file);
        return Ok("free");
    }
    if try_lock(file, Mode::Shared).map_err(|e| Error::io("probing", path, e))? {
        let _ = fs2::FileExt::unlock(file);
        return Ok("shared");
    }
    Ok("held")
}

fn open_lock_file(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        // A symlink planted in the lock directory is refused, never followed.
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .and_then(regular_file)
        .map_err(|e| Error::io("opening lock file", path, e))
}

/// Only a regular file is a lock file: a FIFO or device planted in its place would block the
/// holder-record read forever.
fn regular_file(file: File) -> std::io::Result<File> {
    if file.metadata()?.is_file() {
        Ok(file)
    } else {
        Err(std::io::Error::new(
            ErrorKind::InvalidInput,
            "not a regular file; remove it",
        ))
    }
}

/// Opens an existing lock file read-only, for looking: `flock` works on a read-only
/// descriptor, so a user who may only read the database can still see every lock.
fn open_lock_file_read_only(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .and_then(regular_file)
        .map_err(|e| Error::io("opening lock file", path, e))
}

fn write_holder(file: &File, key: &str, token: Option<u64>) -> std::io::Result<()> {
    let holder = Holder {
        pid: std::process::id(),
        host: host().to_owned(),
        key: key.to_owned(),
        command: command_line().to_owned(),
        acquired_at: Some(now_rfc3339()),
        token,
    };
    let mut text = serde_json::to_vec(&holder).map_err(std::io::Error::other)?;
    // Overwrite in place, padded with spaces (JSON allows trailing whitespace), instead of
    // truncating first: on ext4 a truncate-to-zero followed by a write triggers the
    // replace-via-truncate heuristic (auto_da_alloc), which forces a data flush on every write
    // transaction and halved commit throughput.
    let len = file.metadata()?.len() as usize;
    if text.len() < len {
        text.resize(len, b' ');
    } else {
        text.resize(text.len().next_multiple_of(HOLDER_PAD), b' ');
    }
    file.write_all_at(&text, 0)
}

/// The recorded holder; `None` for an empty, half-written or foreign file. Read from the
/// start whatever the descriptor's offset.
fn read_holder(file: &File) -> Option<Holder> {
    let mut text = vec![0u8; 16 * 1024];
    let mut len = 0;
    while len < text.len() {
        match file.read_at(&mut text[len..], len as u64) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    text.truncate(len);
    serde_json::from_slice(&text).ok()
}

pub use crate::time::now_rfc3339;

pub(crate) fn host() -> &'static str {
    static HOST: OnceLock<String> = OnceLock::new();
    HOST.get_or_init(|| {
        fs::read_to_string("/proc/sys/kernel/hostname")
            .or_else(|_| fs::read_to_string("/etc/hostname"))
            .map(|s| s.trim().to_owned())
            .ok()
            .filter(|s| !s.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "unknown".to_owned())
    })
}

/// This process's command line for a holder record, with the password of any database URL
/// in it removed: a record is shown to everyone who can run `lock status`, and on a server
/// to every host (`--db postgres://u:pw@host/db` would otherwise publish the password).
pub(crate) fn command_line() -> &'static str {
    static COMMAND: OnceLock<String> = OnceLock::new();
    COMMAND.get_or_init(|| {
        // args_os: std::env::args panics on an argument that is not UTF-8.
        cut_command(
            std::env::args_os()
                .map(|arg| without_password(&arg.to_string_lossy()))
                .collect::<Vec<_>>()
                .join(" "),
        )
    })
}

/// One argument with the password of a URL in it removed: the argument itself
/// (`postgres://u:pw@h/db`) or the value of an option (`--db=postgres://u:pw@h/db`).
fn without_password(arg: &str) -> String {
    use crate::store::{display_database, url_scheme};
    if url_scheme(Path::new(arg)).is_some() {
        return display_database(Path::new(arg));
    }
    match arg.split_once('=') {
        Some((option, value)) if url_scheme(Path::new(value)).is_some() => {
            format!("{option}={}", display_database(Path::new(value)))
        }
        _ => arg.to_owned(),
    }
}

/// A command line cut at 200 bytes, so records stay small.
fn cut_command(mut line: String) -> String {
    if line.len() > 200 {
        let mut cut = 200;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
        line.push('…');
    }
    line
}

#[cfg(test)]
mod tests {
    use super::{Fence, check_fence, without_password};
    use crate::Error;

    #[test]
    fn a_fence_is_key_equals_a_positive_token() {
        let fence: Fence = "nightly-gc=7".parse().unwrap();
        assert_eq!(fence.key, "nightly-gc");
        assert_eq!(fence.token, 7);
        // The last `=` separates: a key may hold one.
        let fence: Fence = "a=b=3".parse().unwrap();
        assert_eq!((fence.key.as_str(), fence.token), ("a=b", 3));
        for bad in ["k", "k=", "k=0", "k=-1", "k=x", "=", "k=1.5"] {
            assert!(
                matches!(bad.parse::<Fence>(), Err(Error::Invalid(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn only_the_latest_token_passes_the_fence() {
        let fence = |token| Fence {
            key: "k".to_owned(),
            token,
        };
        check_fence(&fence(3), 3).unwrap();
        assert!(matches!(check_fence(&fence(2), 3), Err(Error::Fenced(_))));
        assert!(matches!(check_fence(&fence(4), 3), Err(Error::Invalid(_))));
        assert!(matches!(check_fence(&fence(1), 0), Err(Error::Invalid(_))));
    }

    #[test]
    fn a_recorded_command_line_never_holds_a_url_password() {
        assert_eq!(
            without_password("postgres://u:pw@h/db"),
            "postgres://u@h/db"
        );
        assert_eq!(
            without_password("--db=postgresql://u:pw@h/db?password=x&sslmode=require"),
            "--db=postgresql://u@h/db?sslmode=require"
        );
        assert_eq!(without_password("lock"), "lock");
        assert_eq!(without_password("a=b"), "a=b");
    }
}
