//! The statistics a first page freezes, counted inside FTS5 by the totals function
//! (`rank.rs`, one `xQueryPhrase` walk per phrase), are the counts a MATCH of each phrase alone
//! gives, as they were read before: for plain words, irregular forms, a prefix, CJK runs and
//! phrases of several tokens, after updates and deletes, and less the memories no read shows.

use super::*;
use crate::memory::{Expect, NewMemory, open_end, terms};

/// Each phrase's memories counted by a MATCH of that phrase alone, less the hidden ones.
fn counted_one_by_one(conn: &Connection, plan: &Ranking, now: &str) -> Vec<u64> {
    plan.phrases
        .iter()
        .map(|phrase| {
            let expression = fts::any([phrase]);
            let all: i64 = conn
                .query_row(
                    "SELECT count(*) FROM memories_fts WHERE memories_fts MATCH ?1",
                    [&expression],
                    |r| r.get(0),
                )
                .unwrap();
            let hidden: i64 = conn
                .query_row(
                    &format!(
                        "SELECT count(*) FROM memories_fts WHERE memories_fts MATCH ?2
                           AND rowid IN ({HIDDEN_SEQS})"
                    ),
                    params![now, expression],
                    |r| r.get(0),
                )
                .unwrap();
            u64::try_from(all - hidden).unwrap()
        })
        .collect()
}

#[test]
fn frequencies_are_each_phrases_count() {
    let dir = tempfile::tempdir().unwrap();
    let bodies = [
        "Deploys to production happen on Fridays after the standup",
        "Caroline went to the pottery class and bought a vase",
        "The children go to school; Caroline's child goes by bus",
        "We will go to Zürich by train, the café is near the station",
        "日本語のドキュメントを読んだ deploy",
        "deploy 日本語",
        "foo.example.com runs v1.2 of the billing cache",
        "the the the the",
        "Who owns the billing cache? Alice, on call every Friday",
    ];
    let (store, added) = crate::store::sqlite::store_with(dir.path(), &bodies);
    // An update and a delete leave FTS5 delete markers behind; a superseded memory is hidden.
    store
        .update_memory_sql(
            &added[0].id,
            &crate::memory::MemoryChange {
                body: Some("Deploy the billing cache on Monday".into()),
                ..Default::default()
            },
            Expect::default(),
            "",
        )
        .unwrap();
    store
        .delete_memory_sql(&added[7].id, Expect::default(), "")
        .unwrap();
    store
        .add_memories_sql(
            vec![NewMemory {
                body: "Caroline bought pottery in Zurich".into(),
                supersedes: vec![added[1].id.clone()],
                ..NewMemory::default()
            }],
            "",
        )
        .unwrap();
    let now = timestamp(SystemTime::now());
    for query in [
        "What did Caroline's children buy?",
        "Where did the children go",
        "deploy billing cache",
        "de",
        "日本語",
        "本",
        "foo.example.com v1.2",
        "the",
        "cafe zurich",
        "pottery nothing-holds-this",
    ] {
        let plan = Ranking::plan(&terms(query), open_end(query));
        let (statistics, expected) = store
            .read(|conn| {
                Ok((
                    statistics(conn, &plan, &now)?,
                    counted_one_by_one(conn, &plan, &now),
                ))
            })
            .unwrap();
        let statistics = statistics.unwrap();
        assert_eq!(statistics.frequencies, expected, "{query}");
        assert_eq!(statistics.memories, 8, "{query}");
    }
}
