//! The one place modstate replaces a user-visible file: write a temp file beside the target,
//! fsync it, rename it over the target, fsync the directory. Readers see the old file or the
//! new one, never a mix, and a crash at any point leaves one of the two.
//!
//! Written here rather than with the atomicwrites crate because two of its behaviours do not
//! fit a tool that is SIGKILLed in the field: it stages each write in a temporary *directory*
//! that is left behind in the user's workspace when the writer dies, and its files take the
//! umask's mode instead of 0600.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};

/// Temp files are named `.<target>.tmp-<pid>-<unique>`, so a later writer can tell a dead
/// writer's leftover (its pid is gone) from a live writer's file.
const TEMP_INFIX: &str = ".tmp-";

/// Replaces `path` with `bytes` atomically. A new file is 0600; an existing file keeps its mode.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let (mut file, temp) = create_temp_beside(path)?;
    let result = (|| {
        file.write_all(bytes)
            .map_err(|e| Error::io("writing", &temp, e))?;
        if let Ok(meta) = fs::metadata(path) {
            file.set_permissions(fs::Permissions::from_mode(
                meta.permissions().mode() & 0o7777,
            ))
            .map_err(|e| Error::io("setting the mode of", &temp, e))?;
        }
        file.sync_all()
            .map_err(|e| Error::io("syncing", &temp, e))?;
        drop(file);
        rename_into_place(&temp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

/// Creates a fresh temp file (0600, exclusively: a planted file or symlink is never followed)
/// in `target`'s directory, after sweeping leftovers of writers that died.
pub fn create_temp_beside(target: &Path) -> Result<(File, PathBuf)> {
    if target.is_dir() {
        return Err(Error::io(
            "writing",
            target,
            std::io::Error::new(ErrorKind::IsADirectory, "is a directory"),
        ));
    }
    let name = target
        .file_name()
        .ok_or_else(|| Error::Invalid(format!("{} does not name a file", target.display())))?;
    sweep_dead_temps(target);
    let dir = parent_dir(target);
    create_unique(dir, |pid, unique| {
        let mut temp_name = OsString::from(".");
        temp_name.push(name);
        temp_name.push(format!("{TEMP_INFIX}{pid}-{unique:x}"));
        temp_name
    })
    .map_err(|e| Error::io("creating a temp file beside", target, e))
}

/// Creates a new file (0600, exclusively: a planted file or symlink is never followed, never
/// reused) in `dir`, named by `name(pid, unique)` where `unique` differs on every call in this
/// process and across time. The one place temp files are made: atomic replacement and
/// snapshot temp files alike carry their writer's pid, so a sweep can tell a dead writer's
/// leftovers from a live one's.
pub(crate) fn create_unique(
    dir: &Path,
    name: impl Fn(u32, u64) -> OsString,
) -> std::io::Result<(File, PathBuf)> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let pid = std::process::id();
    let mut attempts = 0;
    loop {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let unique = nanos.rotate_left(16) ^ COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(name(pid, unique));
        match OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
        {
            Ok(file) => return Ok((file, path)),
            Err(e) if e.kind() == ErrorKind::AlreadyExists && attempts < 16 => attempts += 1,
            Err(e) => return Err(e),
        }
    }
}

/// Renames a complete, fsynced temp file over `target` and fsyncs the directory, so the rename
/// itself survives power loss.
pub fn rename_into_place(temp: &Path, target: &Path) -> Result<()> {
    #[allow(clippy::disallowed_methods)] // this module is the one place files are renamed
    fs::rename(temp, target).map_err(|e| Error::io("renaming into place", target, e))?;
    let dir = parent_dir(target);
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("syncing directory", dir, e))
}

/// Removes `.<target>.tmp-<pid>-*` files whose writer process no longer exists.
fn sweep_dead_temps(target: &Path) {
    let (Some(name), Ok(entries)) = (target.file_name(), fs::read_dir(parent_dir(target))) else {
        return;
    };
    let prefix = format!(".{}{TEMP_INFIX}", name.to_string_lossy());
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(rest) = file_name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !process_alive(pid) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Whether a process with this pid exists (signal 0 checks without sending anything). Temp
/// file names carry their writer's pid, so a sweep can tell a dead writer's leftovers from a
/// live writer's file.
pub(crate) fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        // 0 and negatives address process groups, not a process.
        return false;
    }
    // SAFETY: kill with signal 0 sends nothing; it only reports whether `pid` exists.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_keeps_mode_and_sweeps_dead_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("dagger.lock");
        write_atomically(&target, b"one").unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"one");
        assert_eq!(
            fs::metadata(&target).unwrap().permissions().mode() & 0o777,
            0o600
        );

        fs::set_permissions(&target, fs::Permissions::from_mode(0o644)).unwrap();
        // A leftover of a dead writer (pid far above pid_max) and of a live one (us).
        let dead = dir.path().join(".dagger.lock.tmp-999999999-1");
        let live = dir
            .path()
            .join(format!(".dagger.lock.tmp-{}-zz", std::process::id()));
        fs::write(&dead, b"x").unwrap();
        fs::write(&live, b"x").unwrap();
        write_atomically(&target, b"two").unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&target).unwrap().permissions().mode() & 0o777,
            0o644
        );
        assert!(!dead.exists(), "dead writer's temp swept");
        assert!(live.exists(), "live writer's temp kept");
    }

    #[test]
    fn a_directory_target_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            write_atomically(dir.path(), b"x"),
            Err(Error::Io { .. })
        ));
    }
}
