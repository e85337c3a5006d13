//! Cross-process locks in the sidecar directory `<db>.locks/`.
//!
//! Every lock is a kernel advisory lock (`flock` through fs2) on a file that is never deleted,
//! so a holder that dies — even by SIGKILL — releases it at once: there is no TTL, no
//! heartbeat and no stale-lock reclaim that could break a live holder. Each acquisition opens
//! its own descriptor, so two acquisitions inside one process conflict exactly as two
//! processes do.
//!
//! Lock order, to rule out deadlock: `global` → keys (sorted, deduplicated) → `write`.
//!
//! * `write`  — exclusive, for the span of one write transaction.
//! * `global` — exclusive for structural work (restore, gc, vacuum); shared for keyed work, so
//!   structural work waits for running keyed work and keeps new keyed work out, without polling.
//! * keys     — one file per key, named by the sha256 of the key, so no key can name a path.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{ErrorKind, Read};
use std::os::unix::fs::{DirBuilderExt, FileExt as _, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{Error, Result};

/// Longest key accepted, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// How long a waiter stays silent before telling the user what it waits for (like cargo).
const QUIET_WAIT: Duration = Duration::from_secs(1);

/// Holder records are padded to a multiple of this, so rewrites rarely change the file size.
const HOLDER_PAD: usize = 512;

const WRITE: &str = "write";
const GLOBAL: &str = "global";
const KEY_PREFIX: &str = "key-";

/// Shared or exclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Shared,
    Exclusive,
}

/// Who holds a lock, written into the lock file after acquiring it exclusively.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    pub host: String,
    pub key: String,
    pub command: String,
    pub acquired_at: String,
}

/// One lock file as `lock status` reports it.
#[derive(Clone, Debug, Serialize)]
pub struct LockState {
    /// `write`, `global`, or the key as its holder recorded it.
    pub name: String,
    /// `free`, `held` (exclusive) or `shared`.
    pub state: &'static str,
    /// The last exclusive holder's record, when the lock is held exclusively.
    pub holder: Option<Holder>,
}

/// The lock directory of one database.
#[derive(Clone, Debug)]
pub struct LockDir {
    dir: PathBuf,
    timeout: Duration,
}

/// A held lock; released (exactly once) when dropped.
#[derive(Debug)]
pub struct LockGuard {
    file: File,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        // Closing the descriptor releases the lock too; unlocking first makes the release
        // independent of any descriptor a child process might have inherited.
        let _ = fs2::FileExt::unlock(&self.file);
    }
}

/// Locks for a set of keys plus `global` shared; all released on drop.
#[derive(Debug)]
pub struct KeyedGuard {
    // Dropped in field order: keys first, then global — the reverse of acquisition.
    _keys: Vec<LockGuard>,
    _global: LockGuard,
}

impl LockDir {
    /// The lock directory for the database at `db_path`, created (0700) if missing.
    pub fn open(db_path: &Path, timeout: Duration) -> Result<LockDir> {
        let dir = lock_dir_path(db_path);
        create_private_dir(&dir)?;
        Ok(LockDir { dir, timeout })
    }

    /// The lock directory for `db_path` without creating it (for a read-only location, where
    /// every acquisition will fail with a clear error).
    pub fn existing(db_path: &Path, timeout: Duration) -> LockDir {
        LockDir {
            dir: lock_dir_path(db_path),
            timeout,
        }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

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
            held.push(self.acquire(&key_file_name(key), key, mode, deadline)?);
        }
        Ok(KeyedGuard {
            _keys: held,
            _global: global,
        })
    }

    /// Every lock file with its state, sorted by name.
    pub fn status(&self) -> Result<Vec<LockState>> {
        let entries = fs::read_dir(&self.dir).map_err(|e| Error::io("listing", &self.dir, e))?;
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("listing", &self.dir, e))?;
            let file_name = entry.file_name().to_string_lossy().into_owned();
            if file_name != WRITE && file_name != GLOBAL && !file_name.starts_with(KEY_PREFIX) {
                continue;
            }
            let path = entry.path();
            let file = match open_lock_file(&path) {
                Ok(file) => file,
                Err(_) => continue,
            };
            let state = probe(&file, &path)?;
            let recorded = read_holder(&file);
            let name = if file_name.starts_with(KEY_PREFIX) {
                recorded
                    .as_ref()
                    .map(|h| h.key.clone())
                    .unwrap_or_else(|| file_name.clone())
            } else {
                file_name
            };
            let holder = if state == "held" { recorded } else { None };
            out.push(LockState {
                name,
                state,
                holder,
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
        acquire_path(
            &self.dir.join(file_name),
            label,
            mode,
            deadline,
            self.timeout,
        )
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
    let file = open_lock_file(path)?;
    let file = if try_lock(&file, mode).map_err(|e| Error::io("locking", path, e))? {
        file
    } else {
        wait_for_lock(file, path, label, mode, deadline, timeout)?
    };
    if mode == Mode::Exclusive {
        // Best effort: the record only informs `lock status` and waiters.
        let _ = write_holder(&file, label);
    }
    Ok(LockGuard { file })
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

fn check_key(key: &str) -> Result<()> {
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
                    eprintln!(
                        "Blocking waiting for lock on {label}{}",
                        describe_holder(path)
                    );
                    told = true;
                }
            }
        }
    }
    Err(Error::Busy(format!(
        "timed out after {:.1}s waiting for lock on {label}{}; retry later or raise --lock-timeout",
        timeout.as_secs_f64(),
        describe_holder(path)
    )))
}

/// ` (held by pid N: command, since T)`, or nothing when the holder is unknown.
fn describe_holder(path: &Path) -> String {
    let Ok(file) = open_lock_file(path) else {
        return String::new();
    };
    match read_holder(&file) {
        Some(h) => format!(
            " (held by pid {}: {}, since {})",
            h.pid, h.command, h.acquired_at
        ),
        None => String::new(),
    }
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
        .and_then(|file| {
            // A FIFO or device planted in its place would block the holder-record read forever.
            if file.metadata()?.is_file() {
                Ok(file)
            } else {
                Err(std::io::Error::new(
                    ErrorKind::InvalidInput,
                    "not a regular file; remove it",
                ))
            }
        })
        .map_err(|e| Error::io("opening lock file", path, e))
}

fn write_holder(file: &File, key: &str) -> std::io::Result<()> {
    let holder = Holder {
        pid: std::process::id(),
        host: host().to_owned(),
        key: key.to_owned(),
        command: command_line().to_owned(),
        acquired_at: now_rfc3339(),
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

/// The recorded holder; `None` for an empty, half-written or foreign file.
fn read_holder(file: &File) -> Option<Holder> {
    let mut text = Vec::new();
    let reader = file;
    reader.take(16 * 1024).read_to_end(&mut text).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Creates `dir` (and missing parents) with mode 0700.
pub(crate) fn create_private_dir(dir: &Path) -> Result<()> {
    match DirBuilder::new().recursive(true).mode(0o700).create(dir) {
        Ok(()) => Ok(()),
        Err(e) => Err(Error::io("creating directory", dir, e)),
    }
}

/// The current time as RFC 3339 UTC with milliseconds.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

fn host() -> &'static str {
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

fn command_line() -> &'static str {
    static COMMAND: OnceLock<String> = OnceLock::new();
    COMMAND.get_or_init(|| {
        // args_os: std::env::args panics on an argument that is not UTF-8.
        let mut line = std::env::args_os()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        if line.len() > 200 {
            let mut cut = 200;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
            line.push('…');
        }
        line
    })
}
