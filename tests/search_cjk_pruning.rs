//! A pruned page reads a memory's matches from where each phrase's first match left off, and
//! searches a CJK memory in its `grams` column when any match is there: a memory whose first
//! match of a word is in its body but whose later ones are in its grams (a prefix that
//! matches a Latin word beside CJK text) is scored as a search without a limit scores it. (The
//! paging property test found the case; this keeps it.)

use modstate::{MemoryFilter, NewMemory, Options, Store};

#[test]
fn a_cjk_memory_is_scored_alike_with_and_without_a_limit() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("state.db"), Options::default()).unwrap();
    store
        .add_memories(
            [
                "deploy 日本語",
                "rust rust deploy rust rust",
                "日本語 deploy de",
                "dessert désert",
            ]
            .into_iter()
            .map(|body| NewMemory {
                body: body.into(),
                ..NewMemory::default()
            }),
        )
        .unwrap();
    for query in ["de", "deploy", "日本", "rust de"] {
        let whole = store
            .search_memories(query, &MemoryFilter::default())
            .unwrap()
            .len();
        for limit in 1..=whole {
            crate::search_pruning::check_pages(
                &store,
                query,
                &MemoryFilter::default(),
                limit,
                whole.div_ceil(limit),
            );
        }
    }
}
