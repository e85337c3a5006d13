//! Files and directories only their owner can read or write: memories can hold secrets, so
//! what modstate creates is private whatever the umask (files 0600, directories 0700).

use std::fs::{DirBuilder, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use crate::error::{Error, Result};

/// Creates `dir` (and missing parents) with mode 0700.
pub fn create_private_dir(dir: &Path) -> Result<()> {
    match DirBuilder::new().recursive(true).mode(0o700).create(dir) {
        Ok(()) => Ok(()),
        Err(e) => Err(Error::io("creating directory", dir, e)),
    }
}

/// Creates the database file with mode 0600 before SQLite opens it, so memories that may hold
/// secrets are never world-readable; SQLite gives -wal and -shm the same mode. Only a file that
/// does not exist yet is touched: closing a descriptor of a database this process has open
/// would drop its SQLite locks. Answers whether this call created it (`O_EXCL`: exactly one
/// caller does), so a front end can say so once.
pub(crate) fn create_private_file(path: &Path) -> Result<bool> {
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(Error::io("creating database", path, e)),
    }
}
