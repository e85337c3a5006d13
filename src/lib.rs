//! modstate — a local, SQLite-backed store that many processes on one machine share safely.
//!
//! Module loaders fetch saved module-state artifacts by content digest; agents persist and
//! search memories; backup jobs export consistent snapshots while everyone keeps writing.
//!
//! Where things happen:
//! * writes: [`store`] (`Store::write`, one `BEGIN IMMEDIATE` under the write lock);
//! * locks: [`lock`] (kernel advisory locks in `<db>.locks/`);
//! * renames: [`atomic`] (temp file, fsync, rename, directory fsync).

pub mod artifact;
pub mod atomic;
pub mod digest;
pub mod error;
pub mod lock;
pub mod lockfile;
pub mod maintenance;
pub mod memory;
pub mod snapshot;
pub mod store;
pub mod time;

pub use artifact::{ArtifactInfo, Envelope, Outcome, PutOutcome};
pub use digest::Digest;
pub use error::{Error, Result};
pub use memory::{Expect, Hit, Memory, MemoryFilter, MemoryPage, NewMemory, Page};
pub use snapshot::{RestoreOptions, RestoreReport, SnapshotInfo, SnapshotOptions, SnapshotReport};
pub use store::{Options, Store, Synchronous};
