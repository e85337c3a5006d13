//! Refusing network file systems: SQLite's WAL needs shared memory between the processes that
//! use the database, and modstate's locks are kernel `flock`s; neither holds over NFS,
//! SMB/CIFS and their kin, where two hosts would corrupt the database or both "hold" a lock.
//! Detected by the file system's `statfs` type (the kernel's magic numbers).

use std::path::Path;

use crate::error::{Error, Result};

/// `statfs.f_type` values of network and cluster file systems (linux/magic.h and the file
/// systems' own headers), with their names.
const NETWORK: &[(i64, &str)] = &[
    (0x6969, "NFS"),
    (0x517B, "SMB"),
    (0xFF53_4D42, "CIFS"),
    (0xFE53_4D42, "SMB2"),
    (0x5346_414F, "AFS"),
    (0x6B41_4653, "AFS (kAFS)"),
    (0x7375_7245, "Coda"),
    (0x564C, "NCP"),
    (0x0102_1997, "9P"),
    (0x00C3_6400, "CephFS"),
    (0x0116_1970, "GFS2"),
    (0x7461_636F, "OCFS2"),
    (0x0BD0_0BD0, "Lustre"),
    (0x4750_4653, "GPFS"),
];

/// The environment variable that lets a store be opened on a network file system anyway.
pub(crate) const ALLOW_ENV: &str = "MODSTATE_ALLOW_NETWORK_FS";

/// A test hook: a `statfs` type (decimal or 0x hex) to use instead of the real one, so the
/// refusal can be tested without an NFS server. Not for users.
const SIMULATE_ENV: &str = "MODSTATE_TEST_FS_TYPE";

/// The name of a network file system type, `None` for a local one.
pub(crate) fn network_name(f_type: i64) -> Option<&'static str> {
    // f_type is a signed word on some targets: compare the low 32 bits.
    let t = f_type & 0xFFFF_FFFF;
    NETWORK.iter().find(|(m, _)| *m == t).map(|(_, n)| *n)
}

/// The `statfs` type of the file system holding `dir`.
fn fs_type(dir: &Path) -> Option<i64> {
    if let Ok(text) = std::env::var(SIMULATE_ENV) {
        let text = text.trim();
        return match text.strip_prefix("0x") {
            Some(hex) => i64::from_str_radix(hex, 16).ok(),
            None => text.parse().ok(),
        };
    }
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: `c` is a valid C string and `st` a writable statfs buffer.
    if unsafe { libc::statfs(c.as_ptr(), st.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: statfs returned 0, so it filled the buffer.
    #[allow(clippy::unnecessary_cast)]
    Some(unsafe { st.assume_init() }.f_type as i64)
}

/// Refuses a database whose directory is on a network file system, unless `allow`.
pub(crate) fn refuse_network_fs(db: &Path, allow: bool) -> Result<()> {
    if allow || std::env::var(ALLOW_ENV).is_ok_and(|v| v == "1") {
        return Ok(());
    }
    let dir = match db.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if let Some(name) = fs_type(dir).and_then(network_name) {
        return Err(Error::Unsupported(format!(
            "{} is on a network file system ({name}), where SQLite's WAL and modstate's kernel locks are not safe; use a local disk or a PostgreSQL store (--db postgres://…), or set {ALLOW_ENV}=1 if only one host ever opens it",
            db.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernels_magic_numbers_are_named() {
        // linux/magic.h: NFS_SUPER_MAGIC, SMB_SUPER_MAGIC; fs/smb/common: CIFS and SMB2.
        assert_eq!(network_name(0x6969), Some("NFS"));
        assert_eq!(network_name(0x517B), Some("SMB"));
        assert_eq!(network_name(0xFF53_4D42), Some("CIFS"));
        // As a signed 32-bit f_type (i32 on some targets) sign-extends it.
        assert_eq!(network_name(0xFF53_4D42_u32 as i32 as i64), Some("CIFS"));
        assert_eq!(network_name(0xFE53_4D42), Some("SMB2"));
        assert_eq!(network_name(0x0102_1997), Some("9P"));
    }

    #[test]
    fn local_file_systems_pass() {
        // EXT4_SUPER_MAGIC, XFS, BTRFS, TMPFS, OVERLAYFS.
        for t in [0xEF53, 0x5846_5342, 0x9123_683E, 0x0102_1994, 0x794C_7630] {
            assert_eq!(network_name(t), None, "{t:#x}");
        }
    }

    #[test]
    fn the_real_statfs_of_a_temp_dir_is_local() {
        let dir = std::env::temp_dir();
        let t = fs_type(&dir).expect("statfs works on the temp dir");
        assert_eq!(network_name(t), None, "{t:#x}");
    }
}
