//! The one error type of the library.
//!
//! Each variant is one *kind* of failure a caller can act on differently; the CLI maps each to
//! exactly one exit code (see `cli::exit_code`). Messages are one line and say what to do.

use std::io;
use std::path::{Path, PathBuf};

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every failure the library reports, independent of the storage engine behind the store: no
/// engine's error type appears here, so callers match on kinds, never on SQLite codes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file-system operation failed. `path` names what we were touching.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. `reading`.
        action: &'static str,
        /// The file or directory it was done to.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },

    /// The storage engine reported an error that is not contention (contention becomes
    /// `Busy`), corruption (`Integrity`) or a missing file (`Io`).
    #[error("database error while {context}: {source}")]
    Database {
        /// What the store was doing.
        context: String,
        /// The engine's own error, kept for its message and source chain.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },

    /// The thing asked for does not exist (or an artifact file is not usable as is).
    #[error("{0}")]
    NotFound(String),

    /// The drift guard refused a write: what the caller read has changed since. `what` names
    /// the value compared, e.g. `generation of namespace "a"` or `version of memory <id>`.
    #[error(
        "conflict: the {what} is {found}, not the expected {expected}; nothing was written — re-read and retry"
    )]
    Conflict {
        /// What was compared, e.g. `generation of namespace "a"`.
        what: String,
        /// The value the caller expected.
        expected: u64,
        /// The value found.
        found: u64,
    },

    /// A lock or the database stayed busy past the timeout.
    #[error("{0}")]
    Busy(String),

    /// The input is wrong: bad digest, malformed JSON, too large, bad shape.
    #[error("{0}")]
    Invalid(String),

    /// The input is well-formed but of a version or kind this binary does not know.
    #[error("{0}")]
    Unsupported(String),

    /// Stored data failed a check: a row's hash does not match, integrity_check failed.
    #[error("{0}")]
    Integrity(String),

    /// A held lock was lost while its holder still ran (a server lock whose session ended):
    /// the work it guarded is no longer protected, and others may take the lock once its
    /// lease has run out.
    #[error("{0}")]
    LockLost(String),

    /// A write carried a fencing token older than one issued since for its key: a newer
    /// holder of that lock exists, so the write was refused and nothing was written.
    #[error("{0}")]
    Fenced(String),
    /// A memory to supersede was already superseded by another (someone replaced it first);
    /// nothing was written. A conflict, like [`Error::Conflict`].
    #[error(
        "conflict: memory {id} was already superseded by {by}; nothing was written — read {by} and supersede that one if it is still wrong"
    )]
    Superseded {
        /// The memory asked to be superseded.
        id: String,
        /// The memory that superseded it.
        by: String,
    },

    /// A token's grant does not allow this: a namespace it does not reach, or a write with
    /// scope read. Nothing was read or written.
    #[error("{0}")]
    Denied(String),

    /// The embedding model failed: unreachable, slower than its timeout, or its answer is not
    /// vectors of the model's dimension. Writes are not affected (the memory is stored
    /// without a vector); a search that needs the model fails with this.
    #[error("embedder: {0}")]
    Embedder(String),
}

impl Error {
    /// Wraps an I/O error with the action and path it came from.
    pub fn io(action: &'static str, path: impl AsRef<Path>, source: io::Error) -> Self {
        Error::Io {
            action,
            path: path.as_ref().to_path_buf(),
            source,
        }
    }
}
