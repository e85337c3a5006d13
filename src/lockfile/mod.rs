//! `dagger.lock`: the lookup lockfile a tool pins image tags and git refs in.
//!
//! * [`format`] — the JSON Lines file: parse, canonical write, v1 read as v2;
//! * [`json`] — values that keep their spelling, so rewrites are byte-stable;
//! * [`session`] — read once, serve from memory, flush a merged delta once.

pub mod format;
pub mod json;
pub mod session;

pub use format::{HEADER, Key, Lockfile, VERSION, entry_line};
pub use json::Json;
pub use session::Session;
