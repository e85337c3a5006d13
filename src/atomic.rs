//! The one place modstate replaces a user-visible file: write a temp file beside the target,
//! fsync it, rename it over the target, fsync the directory. Readers see the old file or the
//! new one, never a mix, and a crash at any point leaves one of the two.

use std::io::{ErrorKind, Write};
use std::path::Path;

use crate::error::{Error, Result};

/// Replaces `path` with `bytes` atomically. The temp file is created exclusively with mode
/// 0600 (atomicwrites uses tempfile), so a planted symlink is never followed.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    if path.is_dir() {
        return Err(Error::io(
            "writing",
            path,
            std::io::Error::new(ErrorKind::IsADirectory, "is a directory"),
        ));
    }
    let file = atomicwrites::AtomicFile::new(path, atomicwrites::AllowOverwrite);
    file.write(|f| f.write_all(bytes)).map_err(|e| match e {
        atomicwrites::Error::Internal(e) | atomicwrites::Error::User(e) => {
            Error::io("writing", path, e)
        }
    })
}
