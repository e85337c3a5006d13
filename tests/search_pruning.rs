//! Ranked search's pruning changes no result: a page found by skipping candidates that cannot
//! reach it (memories holding every term first, then the weightiest terms, with a floor the
//! ranking function uses to skip scoring) equals the same page cut from every candidate scored
//! (a search without a limit prunes nothing), memory for memory, score for score to 1e-9, on a
//! generated corpus whose words are as common as the speed bench's, on every page, with
//! filters and superseded memories.

use modstate::{Memory, MemoryFilter, NewMemory, Options, Store};

/// A deterministic corpus: template sentences over small lists, so that a question's words
/// each occur in a large share of the memories and many memories tie on a word.
fn corpus(count: usize) -> Vec<NewMemory> {
    const PEOPLE: &[&str] = &["Alice", "Bob", "Carol", "Dave", "Erin", "Frank"];
    const SERVICES: &[&str] = &["billing", "search", "auth", "ledger", "checkout", "chat"];
    const PARTS: &[&str] = &["cache", "queue", "worker", "index", "webhook"];
    const DAYS: &[&str] = &["Monday", "Friday", "Sunday"];
    const LANGS: &[&str] = &["Rust", "Go", "Python", "Zig"];
    let mut state: u64 = 0x5eed;
    let mut next = move |n: usize| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 33) % n as u64) as usize
    };
    (0..count)
        .map(|i| {
            let sentences = 1 + next(3);
            let body = (0..sentences)
                .map(|_| {
                    let (p, s, c, d, l) = (
                        PEOPLE[next(PEOPLE.len())],
                        SERVICES[next(SERVICES.len())],
                        PARTS[next(PARTS.len())],
                        DAYS[next(DAYS.len())],
                        LANGS[next(LANGS.len())],
                    );
                    match next(6) {
                        0 => format!("{p} owns the {s} {c} and is on call every {d}."),
                        1 => format!("The user prefers {l} over Go for data pipelines."),
                        2 => format!("The {c} in {s} times out; the limit was raised on {d}."),
                        3 => format!("{p} went to the {s} review and bought a {c} {c}."),
                        4 => format!("Deploy {s} on {d} after {p} reviews the {c}."),
                        _ => format!("{p} and the children moved the {s} {c} to {l}."),
                    }
                })
                .collect::<Vec<_>>()
                .join(" ");
            NewMemory {
                namespace: format!("agent-{}", i % 3),
                body,
                ..NewMemory::default()
            }
        })
        .collect()
}

const QUERIES: &[&str] = &[
    "Who owns the billing cache and is on call every Friday?",
    "Which language does the user prefer over Go for data pipelines?",
    "When did the search queue time out and why was the limit raised?",
    "Where did Alice go and what did she buy?",
    "billing cache",
    "cache",
    "Friday deploy",
    "the children moved the ledger",
    "Which tools does the team use for pottery?",
    "auth webhook Carol Sunday Rust",
    "rev",
];

fn ids_and_scores(hits: &[(Memory, f64)]) -> Vec<(String, f64)> {
    hits.iter().map(|(m, s)| (m.id.clone(), *s)).collect()
}

/// Pages of `limit` through `query` under `filter`, against the one unlimited search.
pub(crate) fn check_pages(
    store: &Store,
    query: &str,
    filter: &MemoryFilter,
    limit: usize,
    pages: usize,
) {
    let whole = ids_and_scores(&store.search_memories(query, filter).unwrap());
    let mut cursor = None;
    let mut seen = Vec::new();
    for _ in 0..pages {
        let page = store
            .search_page(
                query,
                &MemoryFilter {
                    limit: Some(limit),
                    cursor: cursor.take(),
                    ..filter.clone()
                },
            )
            .unwrap();
        seen.extend(
            page.page
                .items
                .iter()
                .map(|h| (h.memory.id.clone(), h.score)),
        );
        match page.page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let expected = &whole[..seen.len().min(whole.len())];
    assert_eq!(
        seen.len(),
        (limit * pages).min(whole.len()),
        "{query:?} {filter:?}: pages are short"
    );
    for (i, ((id, score), (want_id, want_score))) in seen.iter().zip(expected).enumerate() {
        assert!(
            id == want_id && (score - want_score).abs() <= 1e-9,
            "{query:?} {filter:?} limit {limit}, result {i}: {id} {score} where every candidate scored gives {want_id} {want_score}"
        );
    }
}

#[test]
fn pruned_pages_equal_every_candidate_scored() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("state.db"), Options::default()).unwrap();
    let added = store.add_memories(corpus(3000)).unwrap();
    // Some memories superseded: hidden from a default search, shown with include_superseded.
    let replacing: Vec<NewMemory> = added
        .iter()
        .step_by(97)
        .map(|old| NewMemory {
            body: format!("{} Superseded note.", old.body),
            namespace: old.namespace.clone(),
            supersedes: vec![old.id.clone()],
            ..NewMemory::default()
        })
        .collect();
    store.add_memories(replacing).unwrap();

    let filters = [
        MemoryFilter::default(),
        MemoryFilter {
            namespace: Some("agent-1".into()),
            ..MemoryFilter::default()
        },
        MemoryFilter {
            include_superseded: true,
            ..MemoryFilter::default()
        },
    ];
    for query in QUERIES {
        for filter in &filters {
            check_pages(&store, query, filter, 10, 3);
            check_pages(&store, query, filter, 1, 2);
        }
    }
}

/// A memory holding only a question's rare words, short and with them side by side, outranks
/// the long memories holding every word: the round searching by the rare words must not also
/// require one of the common ones (it may only when no memory lacking them all could reach
/// the floor).
#[test]
fn a_memory_with_only_the_rare_words_is_not_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("state.db"), Options::default()).unwrap();
    let filler = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor";
    let mut memories = Vec::new();
    for i in 0..60 {
        memories.push(format!("apple banana cherry note {i}"));
    }
    for i in 0..8 {
        memories.push(format!(
            "zebra {filler} quokka {filler} apple {filler} banana {filler} cherry {i}"
        ));
    }
    memories.push("zebra quokka".to_owned());
    memories.push("the zebra quokka pair again".to_owned());
    store
        .add_memories(memories.into_iter().map(|body| NewMemory {
            body,
            ..NewMemory::default()
        }))
        .unwrap();
    let query = "zebra quokka apple banana cherry";
    let top = store
        .search_memories(
            query,
            &MemoryFilter {
                limit: Some(1),
                ..MemoryFilter::default()
            },
        )
        .unwrap();
    assert_eq!(
        top[0].0.body, "zebra quokka",
        "the short memory of the rare pair wins"
    );
    for limit in [1, 2, 3, 5] {
        check_pages(&store, query, &MemoryFilter::default(), limit, 3);
    }
}
