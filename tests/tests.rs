//! The one integration test binary (ripgrep's layout): every file in this directory is a
//! module of it, sharing the helpers in `common/`. One binary links once, instead of once per
//! file. Run one group with `cargo test --test tests <module>::`, e.g. `locks::`.

mod common;

mod artifact;
mod bad_input;
mod cache_bounds;
mod cli;
mod conformance;
mod crash;
mod faults;
mod fleet_locks;
mod hybrid;
mod litestream;
mod lockfile;
mod locks;
mod mcp;
mod memory;
mod memory_model;
mod pg_vectors;
mod postgres;
mod properties;
mod s3;
mod search_cjk_pruning;
mod search_pruning;
mod security;
mod serve;
mod snapshot;
mod store;
