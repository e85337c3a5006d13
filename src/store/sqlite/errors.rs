//! SQLite's errors as the library's backend-neutral [`Error`]: contention becomes `Busy`,
//! corruption `Integrity`, a full disk an error that says so.

use crate::error::{Error, Result};

impl Error {
    /// Wraps a SQLite error, turning contention (SQLITE_BUSY / SQLITE_LOCKED) into `Busy`.
    pub(crate) fn sqlite(context: impl Into<String>, source: rusqlite::Error) -> Self {
        let context = context.into();
        if let rusqlite::Error::SqliteFailure(e, _) = &source {
            if matches!(
                e.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ) {
                return Error::Busy(format!(
                    "database stayed locked by another connection while {context} (busy timeout exceeded); retry, or allow a longer lock timeout"
                ));
            }
            if matches!(
                e.code,
                rusqlite::ErrorCode::DiskFull | rusqlite::ErrorCode::SystemIoFailure
            ) {
                return Error::Database {
                    context: format!(
                        "{context} (the disk may be full or a file-size limit reached; free space and retry)"
                    ),
                    source: Box::new(source),
                };
            }
            // A file that is no database at all is a wrong path more often than damage:
            // say so, and do not send the user to a snapshot they may not need.
            if e.code == rusqlite::ErrorCode::NotADatabase {
                return Error::Integrity(format!(
                    "the file is not a SQLite database (while {context}: {source}); check the path"
                ));
            }
            if e.code == rusqlite::ErrorCode::DatabaseCorrupt {
                return Error::Integrity(format!(
                    "database is corrupt while {context}: {source}; restore a snapshot"
                ));
            }
        }
        Error::Database {
            context,
            source: Box::new(source),
        }
    }
}

/// Adds SQLite context to a rusqlite result, the one way errors leave `rusqlite`.
pub(crate) trait SqlContext<T> {
    fn context(self, what: &str) -> Result<T>;
}

impl<T> SqlContext<T> for rusqlite::Result<T> {
    fn context(self, what: &str) -> Result<T> {
        self.map_err(|e| Error::sqlite(what, e))
    }
}

/// Whether `error` is a write failing for lack of space or a failing disk: the caller
/// can then say which of its files was left as it was.
pub(crate) fn is_storage_failure(error: &Error) -> bool {
    // The fast export path writes the copy itself (see `pinned`), so the same failures also
    // come as plain I/O errors.
    if let Error::Io { source, .. } = error {
        return matches!(
            source.raw_os_error(),
            Some(libc::ENOSPC | libc::EFBIG | libc::EDQUOT | libc::EIO)
        );
    }
    let Error::Database { source, .. } = error else {
        return false;
    };
    source
        .downcast_ref::<rusqlite::Error>()
        .and_then(rusqlite::Error::sqlite_error_code)
        .is_some_and(|code| {
            matches!(
                code,
                rusqlite::ErrorCode::DiskFull | rusqlite::ErrorCode::SystemIoFailure
            )
        })
}
