#![deny(missing_docs)]
//! modstate — a store that many processes share without losing a byte: SQLite on one machine
//! by default, a PostgreSQL server for a fleet, behind one backend boundary.
//!
//! Module loaders fetch saved module-state artifacts by content digest; agents persist and
//! search memories; backup jobs export consistent snapshots while everyone keeps writing.
//!
//! # The layers
//!
//! ```text
//!  front ends      src/main.rs, cli/ (clap), mcp/ (rmcp)       print, flags, exit codes
//!  ───────────────────────────────────────────────────────────────────────────────────────
//!  domain rules    artifact/  envelopes, the artifact file, resolve (single flight)
//!                  memory/    validation, query terms, ranking formula, cursors, drift guard
//!                  snapshot/  naming, retention, temp files and signals, S3 upload/download
//!                  lockfile/  dagger.lock, byte for byte as Dagger writes it
//!  ───────────────────────────────────────────────────────────────────────────────────────
//!  the store       store/mod.rs      Store: the public API every front end calls
//!                  store/backend.rs  Backend: the boundary an engine implements
//!  ───────────────────────────────────────────────────────────────────────────────────────
//!  engines         store/sqlite/     the embedded default: WAL, one writer, a read pool,
//!                                    FTS5, the backup API; the only module naming rusqlite
//!                  store/postgres/   a server for a fleet: a small pool, advisory locks,
//!                                    a GIN full-text index; the only module naming postgres
//!  ───────────────────────────────────────────────────────────────────────────────────────
//!  risky calls     lock.rs     the one place that takes a file lock (`clippy.toml`)
//!                  atomic.rs   the one place that renames a file into place
//!                  private.rs  files and directories created 0600 / 0700
//! ```
//!
//! Where things happen:
//! * a write: `store/sqlite/mod.rs`, `SqliteBackend::write` — one `BEGIN IMMEDIATE`
//!   transaction under the cross-process write lock; every write method of the backend goes
//!   through it. On PostgreSQL, `PgBackend::write` (one transaction) and the single-statement
//!   artifact put in `store/postgres/artifacts.rs`;
//! * a lock: [`lock`] (kernel advisory locks in `<db>.locks/`, holders from `/proc/locks`);
//!   on PostgreSQL, `store/postgres/locks.rs` (session advisory locks);
//! * a rename: [`atomic`] (temp file, fsync, rename, directory fsync).
//!
//! The library prints nothing and names no command-line flag: front ends turn its errors and
//! reports into text, JSON and exit codes.

pub mod artifact;
pub mod atomic;
pub mod digest;
pub mod dirs;
pub mod embed;
pub mod error;
pub mod lock;
pub mod lockfile;
pub mod maintenance;
pub mod memory;
pub mod private;
pub mod snapshot;
pub mod store;
pub mod time;
pub mod token;

pub use artifact::{ArtifactInfo, Envelope, Outcome, PutOutcome};
pub use digest::Digest;
pub use error::{Error, Result};
pub use memory::{Expect, Hit, Memory, MemoryFilter, MemoryPage, NewMemory, Page};
pub use snapshot::{RestoreOptions, RestoreReport, SnapshotInfo, SnapshotOptions, SnapshotReport};
pub use store::{Options, Store, Synchronous};
