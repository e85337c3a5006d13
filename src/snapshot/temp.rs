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

use std::fs::{self, File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::atomic::{process_alive, rename_into_place};
use crate::error::{Error, Result};

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
}

impl TempSnapshot {
    /// Creates a new, empty, locked temp file in `dir`.
    pub(crate) fn create(dir: &Path) -> Result<TempSnapshot> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let pid = std::process::id();
        let mut attempts = 0;
        loop {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            let count = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = dir.join(format!("{PREFIX}{pid}-{nanos:x}-{count:x}{SUFFIX}"));
            match OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path)
            {
                Ok(file) => {
                    fs2::FileExt::lock_exclusive(&file)
                        .map_err(|e| Error::io("locking snapshot temp file", &path, e))?;
                    return Ok(TempSnapshot {
                        path,
                        lock: Some(file),
                    });
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists && attempts < 16 => attempts += 1,
                Err(e) => return Err(Error::io("creating snapshot temp file", &path, e)),
            }
        }
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
        // Unlock last, so no sweeper sees an unlocked file that is still ours.
        self.lock = None;
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
            Ok(file) => match fs2::FileExt::try_lock_exclusive(&file) {
                Ok(()) => Some(file),
                // Locked: alive after all (another pid namespace).
                Err(_) => continue,
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
