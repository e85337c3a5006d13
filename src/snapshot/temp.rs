//! The private temp file an export copies into, and the sweep of those left by killed
//! exporters.
//!
//! A temp file is named `.modstate-snapshot-<pid>-<nonce>.tmp` (SQLite may add `-journal`,
//! `-wal`, `-shm` beside it) and created exclusively with mode 0600, so no other process can
//! pick or read it. Its exporter holds an `flock` on it for its whole life. A sweep removes a
//! leftover only when its pid is not running AND its flock is free: the flock covers a live
//! exporter in another pid namespace, the pid covers the instant between creating the file and
//! locking it. A killed exporter's flock is released by the kernel, so its leftovers go at the
//! next export into the same directory.
//!
//! Our descriptor is separate from SQLite's and is closed only after SQLite closed its own
//! connection: closing any descriptor of a SQLite file would drop SQLite's POSIX locks on it.
//!
//! SIGINT, SIGTERM or SIGHUP would end the process without running `Drop`. A process that
//! calls [`remove_temp_files_on_signal`] gets a handler that unlinks the live temp files (and
//! their sidecars) and then dies of the signal as it would have: the paths are kept, ready
//! as C strings, in a fixed table of atomic slots that the handler reads without locking or
//! allocating (`unlink` is async-signal-safe).

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

use crate::atomic::{create_unique, process_alive, rename_into_place};
use crate::error::{Error, Result};
use crate::lock::{hold_exclusive, try_hold_exclusive};

const PREFIX: &str = ".modstate-snapshot-";
const SUFFIX: &str = ".tmp";
/// Files SQLite may create beside a database it writes.
const SIDECARS: [&str; 3] = ["-journal", "-wal", "-shm"];

/// A temp file being filled; removed (with SQLite's sidecars) on drop unless persisted.
#[derive(Debug)]
pub(crate) struct TempSnapshot {
    path: PathBuf,
    /// Holds the flock that tells sweepers this file is alive.
    lock: Option<File>,
    /// This file's entry in the signal handler's table, while it is ours to clean up.
    registered: Option<Registration>,
}

impl TempSnapshot {
    /// Creates a new, empty, locked temp file in `dir`.
    pub(crate) fn create(dir: &Path) -> Result<TempSnapshot> {
        let (file, path) = create_unique(dir, |pid, unique| {
            format!("{PREFIX}{pid}-{unique:x}-0{SUFFIX}").into()
        })
        .map_err(|e| Error::io("creating snapshot temp file in", dir, e))?;
        // The lock tells sweepers this file is alive (pid checks alone cannot see across pid
        // namespaces); a fresh file nobody else has opened is locked at once.
        hold_exclusive(&file).map_err(|e| Error::io("locking snapshot temp file", &path, e))?;
        let registered = Registration::new(&path);
        Ok(TempSnapshot {
            path,
            lock: Some(file),
            registered,
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The open file, for writing a download into it (never for SQLite's use).
    pub(crate) fn file(&self) -> Result<&File> {
        self.lock.as_ref().ok_or_else(|| {
            Error::io(
                "writing",
                &self.path,
                std::io::Error::other("the temp file was already persisted"),
            )
        })
    }

    /// fsyncs the file. Call only after SQLite has closed its connection to it.
    pub(crate) fn sync(&self) -> Result<()> {
        match &self.lock {
            Some(file) => file
                .sync_all()
                .map_err(|e| Error::io("syncing snapshot", &self.path, e)),
            None => Ok(()),
        }
    }

    /// Asks the kernel to start writing the file's dirty pages to disk without waiting (a
    /// hint; the durability point is still [`TempSnapshot::sync`]). Spreads the disk writes
    /// over the copy instead of leaving them all to the final fsync.
    pub(crate) fn start_writeback(&self) {
        #[cfg(target_os = "linux")]
        if let Some(file) = &self.lock {
            use std::os::fd::AsRawFd;
            // SAFETY: a valid descriptor we own; the call only schedules writeback.
            unsafe {
                libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
            }
        }
    }

    /// Renames the (closed, synced) file over `dest` and fsyncs the directory.
    pub(crate) fn persist(mut self, dest: &Path) -> Result<()> {
        remove_sidecars(&self.path);
        // From the rename on, the file is the snapshot: a signal must not remove it.
        self.registered = None;
        rename_into_place(&self.path, dest)?;
        // The name now belongs to the snapshot: nothing to clean up.
        self.path = PathBuf::new();
        self.lock = None;
        Ok(())
    }
}

impl Drop for TempSnapshot {
    fn drop(&mut self) {
        if self.path.as_os_str().is_empty() {
            return;
        }
        remove_sidecars(&self.path);
        let _ = fs::remove_file(&self.path);
        self.registered = None;
        // Unlock last, so no sweeper sees an unlocked file that is still ours.
        self.lock = None;
    }
}

/// How many temp files the signal handler can know of at once (a process exports few at a
/// time; one beyond this is still cleaned up by `Drop` and by the next sweep).
const SLOTS: usize = 16;
/// The paths the handler removes: a temp file and its sidecars, as C strings.
type SignalPaths = [CString; 1 + SIDECARS.len()];

static LIVE: [AtomicPtr<SignalPaths>; SLOTS] =
    [const { AtomicPtr::new(std::ptr::null_mut()) }; SLOTS];
/// Handlers running now. Once one runs the process is about to die, so a slot is never freed
/// while a handler may still read it.
static HANDLING: AtomicUsize = AtomicUsize::new(0);

/// A temp file's slot in [`LIVE`]; frees it on drop.
#[derive(Debug)]
struct Registration {
    slot: usize,
}

impl Registration {
    fn new(path: &Path) -> Option<Registration> {
        let c = |suffix: &str| {
            let mut name = path.as_os_str().as_encoded_bytes().to_vec();
            name.extend_from_slice(suffix.as_bytes());
            CString::new(name).ok()
        };
        let paths: SignalPaths = [c("")?, c(SIDECARS[0])?, c(SIDECARS[1])?, c(SIDECARS[2])?];
        let raw = Box::into_raw(Box::new(paths));
        for (slot, cell) in LIVE.iter().enumerate() {
            if cell
                .compare_exchange(
                    std::ptr::null_mut(),
                    raw,
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                )
                .is_ok()
            {
                return Some(Registration { slot });
            }
        }
        // SAFETY: `raw` came from Box::into_raw above and was published nowhere.
        drop(unsafe { Box::from_raw(raw) });
        None
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let raw = LIVE[self.slot].swap(std::ptr::null_mut(), Ordering::SeqCst);
        // A handler that started before the swap may still be reading the paths; it ends
        // the process, so waiting for it costs nothing.
        while HANDLING.load(Ordering::SeqCst) != 0 {
            std::thread::yield_now();
        }
        if !raw.is_null() {
            // SAFETY: only this registration put `raw` there, and no handler reads it now.
            drop(unsafe { Box::from_raw(raw) });
        }
    }
}

/// Makes SIGINT, SIGTERM and SIGHUP remove this process's snapshot temp files before the
/// process dies of the signal (its exit status stays "killed by signal N"). For a process
/// with no handlers of its own for these signals, such as a CLI; installs once.
pub fn remove_temp_files_on_signal() -> Result<()> {
    static INSTALLED: std::sync::OnceLock<std::result::Result<(), i32>> =
        std::sync::OnceLock::new();
    let installed = INSTALLED.get_or_init(|| {
        for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            // SAFETY: a zeroed sigaction with our handler is a valid argument.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
                libc::sigemptyset(&mut action.sa_mask);
                if libc::sigaction(signal, &action, std::ptr::null_mut()) != 0 {
                    return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
                }
            }
        }
        Ok(())
    });
    installed.map_err(|errno| {
        Error::io(
            "installing the signal handler that removes",
            "snapshot temp files",
            std::io::Error::from_raw_os_error(errno),
        )
    })
}

/// Async-signal-safe only: atomics, `unlink`, `signal`, `raise`.
extern "C" fn on_signal(signal: libc::c_int) {
    HANDLING.fetch_add(1, Ordering::SeqCst);
    for cell in &LIVE {
        let raw = cell.load(Ordering::SeqCst);
        if raw.is_null() {
            continue;
        }
        // SAFETY: a published slot stays valid while HANDLING is non-zero (see Registration).
        for path in unsafe { &*raw } {
            // SAFETY: a NUL-terminated path.
            unsafe { libc::unlink(path.as_ptr()) };
        }
    }
    // Die of the signal as without this handler: it is blocked until we return, then
    // delivered with the default action.
    // SAFETY: both are async-signal-safe.
    unsafe {
        libc::signal(signal, libc::SIG_DFL);
        libc::raise(signal);
    }
}

fn remove_sidecars(path: &Path) {
    for suffix in SIDECARS {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let _ = fs::remove_file(PathBuf::from(name));
    }
}

/// Removes the temp files of dead exporters in `dir`; returns what it removed. Best effort:
/// a file it cannot judge or remove is left alone.
pub(crate) fn sweep(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut bases: Vec<(String, u32)> = Vec::new();
    for entry in entries.flatten() {
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if let Some((base, pid)) = parse(&name)
            && !bases.iter().any(|(b, _)| *b == base)
        {
            bases.push((base, pid));
        }
    }
    let mut removed = Vec::new();
    for (base, pid) in bases {
        if pid == std::process::id() || process_alive(pid) {
            continue;
        }
        let main = dir.join(&base);
        // Hold the flock while removing, so two sweepers never both judge the same file.
        let _lock = match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&main)
        {
            Ok(file) => match try_hold_exclusive(&file) {
                Ok(true) => Some(file),
                // Locked: alive after all (another pid namespace).
                _ => continue,
            },
            Err(e) if e.kind() == ErrorKind::NotFound => None,
            Err(_) => continue,
        };
        for suffix in SIDECARS {
            let path = dir.join(format!("{base}{suffix}"));
            if fs::remove_file(&path).is_ok() {
                removed.push(path);
            }
        }
        if fs::remove_file(&main).is_ok() {
            removed.push(main);
        }
    }
    removed
}

/// `(base name, pid)` of a temp file or one of its sidecars.
fn parse(name: &str) -> Option<(String, u32)> {
    let rest = name.strip_prefix(PREFIX)?;
    let base_len = rest.find(SUFFIX)? + SUFFIX.len();
    let tail = &rest[base_len..];
    if !tail.is_empty() && !SIDECARS.contains(&tail) {
        return None;
    }
    let pid: u32 = rest.split('-').next()?.parse().ok()?;
    Some((format!("{PREFIX}{}", &rest[..base_len]), pid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_temp_names_and_sidecars() {
        let base = ".modstate-snapshot-42-abc-0.tmp";
        assert_eq!(parse(base), Some((base.to_owned(), 42)));
        assert_eq!(
            parse(".modstate-snapshot-42-abc-0.tmp-journal"),
            Some((base.to_owned(), 42))
        );
        assert_eq!(parse(".modstate-snapshot-42-abc-0.tmpx"), None);
        assert_eq!(parse(".modstate-snapshot-x-abc-0.tmp"), None);
        assert_eq!(parse("state-20231114T221320.123Z.db"), None);
    }

    #[test]
    fn sweep_keeps_live_files_and_removes_dead_ones() {
        let dir = tempfile::tempdir().unwrap();
        let live = TempSnapshot::create(dir.path()).unwrap();
        // A pid that cannot exist (above pid_max), with a sidecar.
        let dead = dir.path().join(".modstate-snapshot-4294967294-1-0.tmp");
        fs::write(&dead, b"x").unwrap();
        fs::write(
            dir.path()
                .join(".modstate-snapshot-4294967294-1-0.tmp-journal"),
            b"x",
        )
        .unwrap();
        let removed = sweep(dir.path());
        assert_eq!(removed.len(), 2, "{removed:?}");
        assert!(live.path().exists());
        assert!(!dead.exists());
        let path = live.path().to_owned();
        drop(live);
        assert!(!path.exists());
    }
}
