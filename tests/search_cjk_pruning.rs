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
        let whole: Vec<(String, f64)> = store
            .search_memories(query, &MemoryFilter::default())
            .unwrap()
            .into_iter()
            .map(|(m, s)| (m.id, s))
            .collect();
        for limit in 1..=whole.len() {
            let mut cursor = None;
            let mut paged = Vec::new();
            loop {
                let page = store
                    .search_page(
                        query,
                        &MemoryFilter {
                            limit: Some(limit),
                            cursor: cursor.take(),
                            ..MemoryFilter::default()
                        },
                    )
                    .unwrap();
                paged.extend(page.page.items.into_iter().map(|h| (h.memory.id, h.score)));
                match page.page.next_cursor {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
            assert_eq!(paged, whole, "{query:?}, pages of {limit}");
        }
    }
}
