//! Memory search on arbitrary text: never an error, never a panic. User text must never reach
//! FTS5 as query syntax, so no input can make the query fail to parse.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use modstate::{MemoryFilter, Options, Store};

fn store() -> &'static Store {
    static STORE: OnceLock<(tempfile::TempDir, Store)> = OnceLock::new();
    &STORE
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(dir.path().join("state.db"), Options::default()).unwrap();
            store
                .add_memory("", "The user prefers Rust; deploys run on Fridays (NEAR \"x\")", "")
                .unwrap();
            (dir, store)
        })
        .1
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    store()
        .search_memories(&text, &MemoryFilter::default())
        .expect("search never errors");
});
