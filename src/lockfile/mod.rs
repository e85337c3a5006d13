//! `dagger.lock`: the lookup lockfile Dagger pins image digests and git commits in.
//!
//! * [`format`](mod@format) — the JSON Lines file, read and written exactly as Dagger's own lockfile
//!   package does (v1 read as v2; a leading comment block kept);
//! * [`json`] — JSON spelled as Go's `json.Marshal` spells it;
//! * [`session`] — read once, serve from memory, flush a merged delta once.

pub mod format;
pub mod json;
pub mod session;

pub use format::{HEADER, Key, Lockfile, Notice, VERSION, entry_line};
pub use json::{Json, Kind};
pub use session::{Flush, FormatCheck, Session, SetOutcome};
