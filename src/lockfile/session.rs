//! A load-once, flush-once session on one `dagger.lock`.
//!
//! A tool that pins hundreds of lookups in one run must not re-read and re-write the file on
//! every lookup, and several runs on one workspace must not lose each other's entries. So a
//! session reads the file at most once (lazily, on first access), answers every later read
//! from memory, records its own changes as a delta, and on close writes only if it changed
//! something: under `<path>.lock` it re-reads the file, applies just its delta on top (entries
//! other processes wrote meanwhile survive; for one key the last flusher wins), and replaces
//! the file atomically, as the exact bytes Dagger's writer would write. A file this binary
//! cannot read (unknown version, malformed) is never written. What a rewrite changes silently
//! (duplicates collapsed, version 1 policies dropped) comes back as data in [`Flush`]: the
//! library prints nothing.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::File;
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use super::format::{Key, Lockfile, Notice};
use super::json::Json;
use crate::atomic::write_atomically;
use crate::error::{Error, Result};
use crate::lock::{self, Mode};

/// Largest lockfile read, so a runaway file cannot exhaust memory.
pub const MAX_LOCKFILE_BYTES: u64 = 64 << 20;
/// How long a flush waits for `<path>.lock` unless told otherwise.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// One session on one lockfile; `Send + Sync`, so many threads may share it.
///
/// Dropping a session flushes it as a safety net, best effort: like `std::io::BufWriter`, a
/// failure there is lost (the library prints nothing). Call [`Session::close`] to see the
/// error and what was written, or [`Session::discard`] to drop the changes.
#[derive(Debug)]
pub struct Session {
    path: PathBuf,
    lock_path: PathBuf,
    lock_timeout: Duration,
    state: RwLock<State>,
    file_reads: AtomicU64,
    file_writes: AtomicU64,
}

/// What a flush (or a `fmt` rewrite) did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Flush {
    /// Whether the file was replaced (false when its bytes would not change).
    pub written: bool,
    /// How many of this session's changes (pins set or removed) the flush carried.
    pub changes: usize,
    /// What the rewrite changed beyond those changes, silently in Dagger: duplicate entries
    /// collapsed, version 1 policies dropped. Empty unless `written`.
    pub notices: Vec<Notice>,
}

/// What [`Session::set`] found before it pinned the value.
#[derive(Clone, Debug, PartialEq)]
pub enum SetOutcome {
    /// Already pinned to that value: nothing recorded, nothing to write.
    Unchanged,
    /// The lookup was not pinned.
    Added,
    /// The lookup was pinned to this other value (as the session saw the file).
    Replaced(Json),
}

/// What [`Session::check_format`] found.
#[derive(Clone, Debug, PartialEq)]
pub struct FormatCheck {
    /// The file is byte for byte what Dagger's writer would write (below its comments).
    pub canonical: bool,
    /// What a rewrite would collapse or drop.
    pub notices: Vec<Notice>,
}

#[derive(Debug, Default)]
struct State {
    /// The file as first read, with this session's changes applied; `None` until first access.
    view: Option<Lockfile>,
    /// This session's changes not yet flushed: a value to set, or `None` to delete.
    delta: BTreeMap<Key, Option<Json>>,
    /// Closed or discarded: dropping does nothing more.
    finished: bool,
}

impl Session {
    /// A session on the lockfile at `path`. Touches nothing until first access.
    pub fn open(path: impl Into<PathBuf>) -> Session {
        let path = path.into();
        let mut lock_path = OsString::from(path.as_os_str());
        lock_path.push(".lock");
        Session {
            path,
            lock_path: PathBuf::from(lock_path),
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
            state: RwLock::new(State::default()),
            file_reads: AtomicU64::new(0),
            file_writes: AtomicU64::new(0),
        }
    }

    /// How long a flush waits for `<path>.lock` before failing with `Busy`.
    pub fn with_lock_timeout(mut self, timeout: Duration) -> Session {
        self.lock_timeout = timeout;
        self
    }

    /// The lockfile this session reads and writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The value pinned for `key`, if any.
    pub fn get(&self, key: &Key) -> Result<Option<Json>> {
        self.with_view(|view| view.get(key).cloned())
    }

    /// Every entry, in file order.
    pub fn entries(&self) -> Result<Vec<(Key, Json)>> {
        self.with_view(|view| view.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
    }

    /// Pins `key` to `value` and says what was pinned before. Records nothing when the
    /// session already sees that value: confirming a pin costs no write.
    pub fn set(&self, key: Key, value: Json) -> Result<SetOutcome> {
        let mut state = self.write_state();
        let State { view, delta, .. } = &mut *state;
        let view = self.loaded(view)?;
        if view.get(&key) == Some(&value) {
            return Ok(SetOutcome::Unchanged);
        }
        let previous = view.set(key.clone(), value.clone());
        delta.insert(key, Some(value));
        Ok(previous.map_or(SetOutcome::Added, SetOutcome::Replaced))
    }

    /// Removes `key`. Returns false, recording nothing, when the session does not see it.
    pub fn delete(&self, key: &Key) -> Result<bool> {
        let mut state = self.write_state();
        let State { view, delta, .. } = &mut *state;
        let view = self.loaded(view)?;
        if view.remove(key).is_none() {
            return Ok(false);
        }
        delta.insert(key.clone(), None);
        Ok(true)
    }

    /// Whether the session holds changes not yet written.
    pub fn is_dirty(&self) -> bool {
        !self.read_state().delta.is_empty()
    }

    /// How many changes (pins set or removed) are waiting for the next flush.
    pub fn pending(&self) -> usize {
        self.read_state().delta.len()
    }

    /// Writes this session's changes now (see the module docs); nothing at all when there are
    /// none. On failure the changes stay in the session and the file is left alone. Other
    /// threads' calls on this session wait until it is done.
    pub fn flush(&self) -> Result<Flush> {
        self.write_back(&mut self.write_state(), false)
    }

    /// Flushes, then rewrites the file as Dagger would write it even when nothing changed
    /// (`fmt`). A missing file is `NotFound`.
    pub fn rewrite(&self) -> Result<Flush> {
        self.write_back(&mut self.write_state(), true)
    }

    /// Whether the file on disk is already byte for byte what Dagger's writer would write,
    /// and what a rewrite would collapse or drop. Reads the file; writes nothing.
    pub fn check_format(&self) -> Result<FormatCheck> {
        let bytes = self.read_file()?.ok_or_else(|| self.missing())?;
        let lockfile = Lockfile::parse(&bytes, &self.origin())?;
        Ok(FormatCheck {
            canonical: lockfile.to_text().as_bytes() == bytes.as_slice(),
            notices: lockfile.notices().to_vec(),
        })
    }

    /// Whether a lockfile exists at the session's path (anything there counts: a directory
    /// or a dangling symlink is an error later, not an absent file).
    pub fn file_exists(&self) -> bool {
        std::fs::symlink_metadata(&self.path).is_ok()
    }

    /// Flushes and ends the session.
    pub fn close(self) -> Result<Flush> {
        let mut state = self.write_state();
        state.finished = true;
        self.write_back(&mut state, false)
    }

    /// Ends the session without writing its changes.
    pub fn discard(self) {
        let mut state = self.write_state();
        state.finished = true;
        state.delta.clear();
    }

    /// How many times this session has read the file (the first access, plus one re-read per
    /// flush that had something to write).
    pub fn file_reads(&self) -> u64 {
        self.file_reads.load(Ordering::Relaxed)
    }

    /// How many times this session has replaced the file.
    pub fn file_writes(&self) -> u64 {
        self.file_writes.load(Ordering::Relaxed)
    }

    fn with_view<T>(&self, f: impl FnOnce(&Lockfile) -> T) -> Result<T> {
        if let Some(view) = &self.read_state().view {
            return Ok(f(view));
        }
        let mut state = self.write_state();
        Ok(f(self.loaded(&mut state.view)?))
    }

    /// The view, reading the file first if this is the session's first access.
    fn loaded<'a>(&self, view: &'a mut Option<Lockfile>) -> Result<&'a mut Lockfile> {
        let lockfile = match view.take() {
            Some(lockfile) => lockfile,
            None => self.read_lockfile()?.unwrap_or_default(),
        };
        Ok(view.insert(lockfile))
    }

    /// Under `<path>.lock`: re-read, apply the delta, write if the bytes differ.
    fn write_back(&self, state: &mut State, canonicalize: bool) -> Result<Flush> {
        if state.delta.is_empty() && !canonicalize {
            return Ok(Flush::default());
        }
        if canonicalize
            && matches!(std::fs::metadata(&self.path), Err(e) if e.kind() == ErrorKind::NotFound)
        {
            // Checked again under the lock; this only spares creating `<path>.lock` for nothing.
            return Err(self.missing());
        }
        let label = self.path.display().to_string();
        let _guard = lock::acquire_path(
            &self.lock_path,
            &label,
            Mode::Exclusive,
            Instant::now() + self.lock_timeout,
            self.lock_timeout,
        )?;
        let before = self.read_file()?;
        let mut lockfile = match &before {
            Some(bytes) => Lockfile::parse(bytes, &self.origin())?,
            None if canonicalize => return Err(self.missing()),
            None => Lockfile::new(),
        };
        for (key, change) in &state.delta {
            match change {
                Some(value) => lockfile.set(key.clone(), value.clone()),
                None => lockfile.remove(key),
            };
        }
        let text = lockfile.to_text();
        let written = before.as_deref() != Some(text.as_bytes());
        if written {
            write_atomically(&self.path, text.as_bytes())?;
            self.file_writes.fetch_add(1, Ordering::Relaxed);
        }
        let flush = Flush {
            written,
            changes: state.delta.len(),
            notices: if written {
                lockfile.notices().to_vec()
            } else {
                Vec::new()
            },
        };
        state.view = Some(lockfile);
        state.delta.clear();
        Ok(flush)
    }

    fn read_lockfile(&self) -> Result<Option<Lockfile>> {
        match self.read_file()? {
            Some(bytes) => Lockfile::parse(&bytes, &self.origin()).map(Some),
            None => Ok(None),
        }
    }

    /// The file's bytes, or `None` when there is no file yet.
    fn read_file(&self) -> Result<Option<Vec<u8>>> {
        self.file_reads.fetch_add(1, Ordering::Relaxed);
        let file = match File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("opening", &self.path, e)),
        };
        let mut bytes = Vec::new();
        file.take(MAX_LOCKFILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::io("reading", &self.path, e))?;
        if bytes.len() as u64 > MAX_LOCKFILE_BYTES {
            return Err(Error::Invalid(format!(
                "{} is larger than {MAX_LOCKFILE_BYTES} bytes; that is not a lockfile this tool can handle",
                self.origin()
            )));
        }
        Ok(Some(bytes))
    }

    fn origin(&self) -> String {
        self.path.display().to_string()
    }

    fn missing(&self) -> Error {
        Error::NotFound(format!("no lockfile at {}", self.origin()))
    }

    fn read_state(&self) -> RwLockReadGuard<'_, State> {
        // A panic elsewhere cannot leave the state half-changed: every change is one insert.
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_state(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let mut state = self.write_state();
        if state.finished || state.delta.is_empty() {
            return;
        }
        state.finished = true;
        // Nobody is left to tell: the caller that wanted to know called `close`.
        let _ = self.write_back(&mut state, false);
    }
}
