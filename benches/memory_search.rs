//! Memory search: modstate's ranked FTS5 search against the `LIKE '%word%'` scan that today's
//! peers run, on the same rows in the same run; the ranking's quality on the judged fixture
//! (hit@1, hit@3); and what the CJK bigram index costs in size and insert time.
//!
//! A workload of `benches/compare.rs` (`BENCH_ONLY=memory-search cargo bench --bench compare`):
//! fills a fresh store with generated but realistic memories (100,000 at full scale, 10,000 at
//! quick scale; `MODSTATE_BENCH_MEMORIES` overrides), then times each query both ways and
//! returns a markdown table of the medians and their ratios.
//!
//! Every side returns the 20 results a caller would show, decoding the same columns:
//! * FTS: the best-ranked 20, through `Store::search_memories` as an agent would call it;
//!   ranking scores every match, so its cost grows with the number of matches;
//! * LIKE by time: the peers' query, every word AND-ed, `ORDER BY created_at DESC LIMIT 20`;
//!   `created_at` has no index (as in the peers' schema), so every row is scanned;
//! * LIKE by id: the same filter walking the id index newest first, which stops as soon as
//!   20 rows match — the best case for LIKE, fast for common words, a full scan for rare ones.

use std::time::{Duration, Instant};

use modstate::memory::grams;
use modstate::store::fts5_query as fts_query;
use modstate::{MemoryFilter, NewMemory, Options, Store, Synchronous};
use rusqlite::{Connection, OpenFlags, params_from_iter};

const RESULTS: usize = 20;
const BATCH: usize = 10_000;

/// Runs the workload on `default_count` memories (or `MODSTATE_BENCH_MEMORIES`) and returns
/// its report section in markdown.
pub fn run(bin: &str, default_count: usize) -> String {
    let count = std::env::var("MODSTATE_BENCH_MEMORIES")
        .ok()
        .map(|v| {
            v.parse::<usize>()
                .unwrap_or_else(|_| panic!("MODSTATE_BENCH_MEMORIES={v:?} is not a count"))
        })
        .unwrap_or(default_count);
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("bench.db");
    let store = Store::open(
        &path,
        Options {
            synchronous: Synchronous::Normal,
            ..Options::default()
        },
    )
    .expect("open the store");

    let mut words = Sentences::new(0x5eed);
    let started = Instant::now();
    let mut added = 0;
    let mut codenames = Vec::new();
    while added < count {
        let n = BATCH.min(count - added);
        let batch: Vec<NewMemory> = (0..n).map(|_| words.memory()).collect();
        codenames.extend(batch.iter().filter_map(|m| codename_in(&m.body)));
        store.add_memories(batch).expect("add a batch");
        added += n;
    }
    let insert = started.elapsed();
    let mut md = format!(
        "## Memory search over {count} memories: ranked FTS vs LIKE scans\n\n\
         Inserted with add_memories in {:.2} s ({:.0} memories/s). Each cell is the median time \
         to fetch the top {RESULTS}; ratios are LIKE time / FTS time (higher: FTS faster).\n\n\
         | query | matches | FTS (ranked) | LIKE newest by created_at (peers' query) | ratio | LIKE walking the id index | ratio |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n",
        insert.as_secs_f64(),
        count as f64 / insert.as_secs_f64()
    );

    let like = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("open a read connection");
    // A rare word: the least used project codename (the first of those, alphabetically).
    let mut uses = std::collections::BTreeMap::<String, usize>::new();
    for name in codenames {
        *uses.entry(name).or_default() += 1;
    }
    let rare = uses
        .iter()
        .min_by_key(|(_, n)| **n)
        .map(|(name, _)| name.clone())
        .unwrap_or_else(|| "zorvex".into());
    // A word in about a quarter of all memories.
    let quarter = [
        "deploy", "prefers", "owns", "incident", "meeting", "remember", "project", "friday",
        "billing",
    ]
    .into_iter()
    .min_by_key(|word| (count_fts(&like, word) - count as i64 / 4).abs())
    .unwrap_or("deploy");
    let mut queries = vec![
        rare.as_str(),
        quarter,
        "deploy",
        "postgres timeout",
        "alice kubernetes",
        "certificate rolled",
        "kube",
        "the user prefers rust",
    ];
    queries.dedup();

    let mut peer_ratios = Vec::new();
    let mut indexed_ratios = Vec::new();
    for query in queries {
        let fts_hits = count_fts(&like, query);
        let like_hits = count_like(&like, query);
        assert_eq!(
            fts_hits, like_hits,
            "{query:?}: FTS and LIKE should find the same rows in this vocabulary"
        );
        let fts = median(|| {
            let hits = store
                .search_memories(
                    query,
                    &MemoryFilter {
                        limit: Some(RESULTS),
                        ..MemoryFilter::default()
                    },
                )
                .expect("search");
            hits.len()
        });
        let by_time = median(|| like_search(&like, query, "created_at DESC"));
        let by_id = median(|| like_search(&like, query, "id DESC"));
        let peer = by_time.as_secs_f64() / fts.as_secs_f64();
        let indexed = by_id.as_secs_f64() / fts.as_secs_f64();
        peer_ratios.push(peer);
        indexed_ratios.push(indexed);
        md.push_str(&format!(
            "| {query:?} | {} | {} | {} | {:.1}× | {} | {:.2}× |\n",
            fts_hits,
            millis(fts),
            millis(by_time),
            peer,
            millis(by_id),
            indexed
        ));
    }
    md.push_str(&format!(
        "\nMedian ratio: {:.1}× against the peers' query (newest by created_at, a full scan), {:.2}× against LIKE walking the id index newest first (it stops after {RESULTS} matches). The first row is the rarest word (a project codename), the second a word in about a quarter of all memories ({quarter:?}).\n\n",
        middle(&mut peer_ratios),
        middle(&mut indexed_ratios)
    ));
    md.push_str(&questions(&store, &like));
    md.push_str(&processes(bin, &path));
    md.push_str(&with_superseded(&store, &like));
    md.push_str(&judged());
    md.push_str(&cjk_cost(count / 10));
    md
}

/// Natural questions of 8–12 words, as agents ask them, in this vocabulary.
pub(crate) const QUESTIONS: &[&str] = &[
    "Who owns the billing cache and is on call every Friday?",
    "Which language does the user prefer over Go for data pipelines?",
    "When did the search queue time out and why was the limit raised?",
];

/// The median time of the top 10 for `query`, in process.
fn top10(store: &Store, query: &str) -> Duration {
    median(|| {
        store
            .search_memories(
                query,
                &MemoryFilter {
                    limit: Some(10),
                    ..MemoryFilter::default()
                },
            )
            .expect("search")
            .len()
    })
}

/// The top 10 for each of [`QUESTIONS`], in process, against a one-word query in the same
/// run: what a question costs with every memory holding any of its words a candidate; and
/// the ranking before issue 24 on the same rows ([`old_ranking`]).
fn questions(store: &Store, conn: &Connection) -> String {
    let top10 = |query: &str| top10(store, query);
    let candidates = |query: &str| -> i64 {
        let fts = fts_query(query).expect("a query with words");
        conn.query_row(
            "SELECT count(*) FROM memories_fts WHERE memories_fts MATCH ?1",
            [fts],
            |r| r.get(0),
        )
        .expect("count candidates")
    };
    let old = |query: &str| median(|| old_ranking(conn, query));
    let one_word = top10("deploy");
    let old_one_word = old("deploy");
    let mut md = String::from(
        "### Natural questions: the top 10, in process\n\n\
         Candidates are the memories holding any scored word (function words left out); each \
         is scored by BM25 with the statistics read for the first page. Memories holding every \
         word are read first; their page's last score is a floor that memories holding only \
         commoner words cannot reach, and those are skipped from which words they hold, \
         without being scored. The old ranking (before issue 24, every word AND-ed, else any \
         word; FTS5's bm25() stands in for its per-row scoring function, see `old_ranking`) \
         runs on the same rows in the same run.\n\n\
         | query | candidates | median top 10 | ratio to the one-word query | old ranking | ratio old / new |\n\
         | --- | ---: | ---: | ---: | ---: | ---: |\n",
    );
    md.push_str(&format!(
        "| \"deploy\" (one word) | {} | {} | 1.00× | {} | {:.2}× |\n",
        candidates("deploy"),
        millis(one_word),
        millis(old_one_word),
        old_one_word.as_secs_f64() / one_word.as_secs_f64()
    ));
    for question in QUESTIONS {
        let t = top10(question);
        let o = old(question);
        md.push_str(&format!(
            "| {question:?} | {} | {} | {:.2}× | {} | {:.2}× |\n",
            candidates(question),
            millis(t),
            t.as_secs_f64() / one_word.as_secs_f64(),
            millis(o),
            o.as_secs_f64() / t.as_secs_f64()
        ));
    }
    md.push('\n');
    md
}

/// The ranking before issue 24, whose code is gone, reproduced on the same index: every word
/// of the query AND-ed, function words included and the last a prefix, falling back to any
/// word when no memory holds them all; each candidate scored by an FTS5 auxiliary function
/// reading its positions and length (the old `modstate_rank`, here FTS5's own bm25(), which
/// reads the same per row and also counts each word's memories once per query), filtered as
/// modstate filters, the top 10. Returns how many it found.
fn old_ranking(conn: &Connection, query: &str) -> usize {
    let words = modstate::memory::terms(query);
    let last = words.len().saturating_sub(1);
    let phrases: Vec<String> = words
        .iter()
        .enumerate()
        .map(|(i, term)| {
            let text = match term {
                modstate::memory::Term::Word(word) => word.clone(),
                modstate::memory::Term::Cjk(run) => run
                    .windows(2)
                    .map(|pair| pair.iter().collect::<String>())
                    .collect::<Vec<_>>()
                    .join(" "),
            };
            let star = if i == last { "*" } else { "" };
            format!("\"{}\"{star}", text.replace('"', "\"\""))
        })
        .collect();
    let sql = "SELECT s.score, m.id, m.namespace, m.category, m.body, m.created_at, m.updated_at, m.version
               FROM (SELECT m.seq AS seq, r.score AS score, m.id AS id
                     FROM (SELECT rowid AS seq, -bm25(memories_fts) AS score FROM memories_fts
                           WHERE memories_fts MATCH ?1) r
                     JOIN memories m ON m.seq = r.seq
                     WHERE (m.expires_at IS NULL OR m.expires_at > ?2) AND m.superseded_by IS NULL
                     ORDER BY r.score DESC, m.id DESC LIMIT 11) s
               JOIN memories m ON m.seq = s.seq
               ORDER BY s.score DESC, s.id DESC";
    let now = modstate::time::timestamp(std::time::SystemTime::now());
    let mut stmt = conn.prepare_cached(sql).expect("prepare the old ranking");
    for joiner in [" ", " OR "] {
        let rows = stmt
            .query_map(rusqlite::params![phrases.join(joiner), now], |r| {
                Ok((
                    r.get::<_, f64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, String>(6)?,
                    r.get::<_, i64>(7)?,
                ))
            })
            .expect("the old ranking")
            .collect::<rusqlite::Result<Vec<_>>>()
            .expect("old ranking rows");
        if !rows.is_empty() {
            return std::hint::black_box(rows).len();
        }
    }
    0
}

/// A whole `modstate memory search` process for each of [`QUESTIONS`] against one for a
/// one-word query, on the same database, interleaved: start-up, opening, statistics, the
/// page and printing it, as an agent's shell call pays them.
fn processes(bin: &str, db: &std::path::Path) -> String {
    let db = db.display().to_string();
    let run = |query: &str| {
        let started = Instant::now();
        let status = std::process::Command::new(bin)
            .args(["--db", &db, "memory", "search", "--limit", "10", query])
            .env_remove("MODSTATE_DB")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap_or_else(|e| panic!("spawn {bin}: {e}"));
        assert!(status.success(), "memory search {query:?} failed");
        started.elapsed()
    };
    let queries: Vec<&str> = std::iter::once("deploy")
        .chain(QUESTIONS.iter().copied())
        .collect();
    let mut times = vec![Vec::new(); queries.len()];
    for round in 0..17 {
        for (i, query) in queries.iter().enumerate() {
            let t = run(query);
            if round > 1 {
                times[i].push(t);
            }
        }
    }
    let medians: Vec<Duration> = times
        .iter_mut()
        .map(|t| {
            t.sort();
            t[t.len() / 2]
        })
        .collect();
    let mut md = String::from(
        "### A whole `modstate memory search --limit 10` process\n\n\
         15 runs of each, interleaved, after 2 warm-up rounds; the median.\n\n\
         | query | median process | ratio to the one-word query |\n| --- | ---: | ---: |\n",
    );
    for (query, t) in queries.iter().zip(&medians) {
        md.push_str(&format!(
            "| {query:?} | {} | {:.2}× |\n",
            millis(*t),
            t.as_secs_f64() / medians[0].as_secs_f64()
        ));
    }
    md.push('\n');
    md
}

/// The one-word query and the questions before and after every 20th memory is superseded
/// (replaced by a corrected one, as agents using `supersedes` do), in the same run: memories
/// no read shows are counted out of the statistics, and that must cost a search about one
/// more walk of its words' lists, not a lookup per hidden memory.
fn with_superseded(store: &Store, conn: &Connection) -> String {
    let queries: Vec<&str> = std::iter::once("deploy")
        .chain(QUESTIONS.iter().copied())
        .collect();
    let top10 = |query: &str| top10(store, query);
    let before: Vec<Duration> = queries.iter().map(|q| top10(q)).collect();
    let old: Vec<(String, String, String)> = conn
        .prepare("SELECT id, namespace, body FROM memories WHERE seq % 20 = 0")
        .and_then(|mut stmt| {
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect()
        })
        .expect("read the memories to supersede");
    let superseded = old.len();
    store
        .add_memories(old.into_iter().map(|(id, namespace, body)| NewMemory {
            body: format!("{body} (corrected)"),
            namespace,
            supersedes: vec![id],
            ..NewMemory::default()
        }))
        .expect("supersede");
    let mut md = format!(
        "### With {superseded} memories superseded

         The same store after every 20th memory was replaced by a corrected one          (`supersedes`): the superseded ones are hidden from search and counted out of its          statistics. Top 10 in process, median.

         | query | before | after | after / before |
| --- | ---: | ---: | ---: |
"
    );
    for (query, before) in queries.iter().zip(before) {
        let after = top10(query);
        md.push_str(&format!(
            "| {query:?} | {} | {} | {:.2}× |
",
            millis(before),
            millis(after),
            after.as_secs_f64() / before.as_secs_f64()
        ));
    }
    md.push('\n');
    md
}

/// hit@1 and hit@3 over the judged fixture: for each query, whether the memory an agent
/// wants is first, or among the first three.
fn judged() -> String {
    let fixture: serde_json::Value =
        serde_json::from_str(include_str!("../fixtures/memories/judged.json"))
            .expect("the judged fixture is JSON");
    let dir = tempfile::tempdir().expect("a temp dir");
    let store = Store::open(dir.path().join("judged.db"), Options::default()).expect("open");
    let mut keys = std::collections::HashMap::new();
    let memories = fixture["memories"].as_array().expect("memories");
    for m in memories {
        let text = |field: &str| m[field].as_str().expect("a string field");
        let added = store
            .add_memory(text("namespace"), text("text"), text("category"))
            .expect("add");
        keys.insert(added.id, text("key").to_owned());
    }
    let queries = fixture["queries"].as_array().expect("queries");
    let (mut hit1, mut hit3) = (0usize, 0usize);
    let mut misses = Vec::new();
    for q in queries {
        let query = q["query"].as_str().expect("query");
        let want = q["want"].as_str().expect("want");
        let top: Vec<String> = store
            .search_memories(
                query,
                &MemoryFilter {
                    limit: Some(3),
                    ..MemoryFilter::default()
                },
            )
            .expect("search")
            .into_iter()
            .map(|(m, _)| keys[&m.id].clone())
            .collect();
        if top.first().is_some_and(|k| *k == want) {
            hit1 += 1;
        } else if top.iter().any(|k| *k == want) {
            misses.push(format!(
                "{query:?} (at {})",
                1 + top.iter().position(|k| *k == want).unwrap_or(0)
            ));
        } else {
            misses.push(format!("{query:?} (not in the top 3)"));
        }
        if top.iter().any(|k| *k == want) {
            hit3 += 1;
        }
    }
    let n = queries.len();
    format!(
        "### Ranking on the judged fixture\n\n\
         {} realistic memories (preferences, deploy facts, people, errors; English, French, German, Spanish, Chinese, Japanese, Korean) and {n} queries, each with the memory an agent asking it would want (`fixtures/memories/judged.json`).\n\n\
         | hit@1 | hit@3 |\n| ---: | ---: |\n| {:.2} ({hit1}/{n}) | {:.2} ({hit3}/{n}) |\n\n\
         Not first: {}.\n\n",
        memories.len(),
        hit1 as f64 / n as f64,
        hit3 as f64 / n as f64,
        if misses.is_empty() {
            "none".to_owned()
        } else {
            misses.join(", ")
        }
    )
}

/// One measured insert: its time, the word index's bytes, the database's bytes.
type Insert = (Duration, u64, u64);

/// What the CJK bigram column costs: the same CJK memories inserted with their `grams` (as
/// modstate does) and with none (the index before it), in the same run.
fn cjk_cost(count: usize) -> String {
    let count = count.max(1000);
    let mut words = Sentences::new(0xc0ffee);
    let bodies: Vec<String> = (0..count).map(|_| words.cjk_sentence()).collect();
    let measure = |with_grams: bool| -> Insert {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("cjk.db");
        drop(
            Store::open(
                &path,
                Options {
                    synchronous: Synchronous::Normal,
                    ..Options::default()
                },
            )
            .expect("create the schema"),
        );
        let mut conn = Connection::open(&path).expect("open");
        let started = Instant::now();
        let tx = conn.transaction().expect("begin");
        {
            let mut stmt = tx
                .prepare(
                    "INSERT INTO memories (id, namespace, category, body, grams, created_at, updated_at, version)
                     VALUES (?1, '', '', ?2, ?3, '2026-01-01T00:00:00.000000Z', '2026-01-01T00:00:00.000000Z', ?4)",
                )
                .expect("prepare");
            for (i, body) in bodies.iter().enumerate() {
                let grams = if with_grams {
                    grams(body)
                } else {
                    String::new()
                };
                stmt.execute(rusqlite::params![format!("{i:08}"), body, grams, i as i64])
                    .expect("insert");
            }
        }
        tx.commit().expect("commit");
        let took = started.elapsed();
        let index: i64 = conn
            .query_row(
                "SELECT coalesce(sum(length(block)), 0) FROM memories_fts_data",
                [],
                |r| r.get(0),
            )
            .expect("index size");
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .expect("checkpoint");
        let pages: i64 = conn
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .expect("pages");
        let page: i64 = conn
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .expect("page size");
        (took, index as u64, (pages * page) as u64)
    };
    let mut runs: Vec<(Insert, Insert)> = (0..3).map(|_| (measure(false), measure(true))).collect();
    runs.sort_by_key(|(_, with)| with.0);
    let (without, with) = runs[runs.len() / 2];
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    format!(
        "### What finding words inside CJK text costs ({count} Chinese/Japanese memories)\n\n\
         The same memories inserted in one transaction, median of 3 alternating runs. Memories without CJK store no grams and pay nothing.\n\n\
         | index | insert time | word-index size | database size |\n| --- | ---: | ---: | ---: |\n\
         | words only (before) | {} | {:.2} MiB | {:.2} MiB |\n\
         | words + CJK bigrams | {} | {:.2} MiB | {:.2} MiB |\n\
         | ratio | {:.2}× | {:.2}× | {:.2}× |\n\n",
        millis(without.0),
        mib(without.1),
        mib(without.2),
        millis(with.0),
        mib(with.1),
        mib(with.2),
        with.0.as_secs_f64() / without.0.as_secs_f64(),
        with.1 as f64 / without.1.max(1) as f64,
        with.2 as f64 / without.2.max(1) as f64,
    )
}

fn millis(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn middle(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The median wall time of `run` over enough runs to be steady (after two warm-ups).
fn median(mut run: impl FnMut() -> usize) -> Duration {
    for _ in 0..2 {
        std::hint::black_box(run());
    }
    let mut times = Vec::new();
    let budget = Instant::now();
    while times.len() < 7 || (times.len() < 51 && budget.elapsed() < Duration::from_secs(2)) {
        let started = Instant::now();
        std::hint::black_box(run());
        times.push(started.elapsed());
    }
    times.sort();
    times[times.len() / 2]
}

/// The peers' search: every word as a `LIKE '%word%'` (case-insensitive for ASCII), the 20
/// first in `order`, the same columns decoded.
fn like_search(conn: &Connection, query: &str, order: &str) -> usize {
    let (sql, args) = like_sql(
        "SELECT id, namespace, category, body, created_at, updated_at, version FROM memories",
        query,
    );
    let sql = format!("{sql} ORDER BY {order} LIMIT {RESULTS}");
    let mut stmt = conn.prepare_cached(&sql).expect("prepare LIKE");
    let rows = stmt
        .query_map(params_from_iter(args), |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, i64>(6)?,
            ))
        })
        .expect("LIKE query");
    let mut n = 0;
    for row in rows {
        std::hint::black_box(row.expect("LIKE row"));
        n += 1;
    }
    n
}

fn like_sql(select: &str, query: &str) -> (String, Vec<String>) {
    let mut sql = format!("{select} WHERE 1 = 1");
    let mut args = Vec::new();
    for word in query.split_whitespace() {
        sql.push_str(" AND body LIKE ?");
        args.push(format!("%{word}%"));
    }
    (sql, args)
}

fn count_like(conn: &Connection, query: &str) -> i64 {
    let (sql, args) = like_sql("SELECT count(*) FROM memories", query);
    conn.query_row(&sql, params_from_iter(args), |r| r.get(0))
        .expect("count LIKE")
}

/// Memories holding every word of `query` (the last as a prefix), as the LIKE side counts
/// them: what the table's "matches" column shows.
fn count_fts(conn: &Connection, query: &str) -> i64 {
    let words: Vec<String> = query
        .split_whitespace()
        .map(|w| format!("\"{}\"", w.replace('"', "\"\"")))
        .collect();
    let fts = format!("{}*", words.join(" "));
    conn.query_row(
        "SELECT count(*) FROM memories_fts WHERE memories_fts MATCH ?1",
        [fts],
        |r| r.get(0),
    )
    .expect("count FTS")
}

pub(crate) fn codename_in(body: &str) -> Option<String> {
    body.strip_prefix("Project ")
        .and_then(|rest| rest.split(' ').next())
        .map(str::to_owned)
}

/// Generated notes of the kind agents keep: preferences, deploy rules, owners, incidents,
/// meeting decisions, with a long tail of rare project codenames.
pub(crate) struct Sentences {
    state: u64,
}

const LANGS: &[&str] = &[
    "Rust",
    "Go",
    "Python",
    "TypeScript",
    "Java",
    "Kotlin",
    "Swift",
    "C++",
    "Ruby",
    "Elixir",
    "Haskell",
    "Zig",
    "Scala",
    "PHP",
    "Lua",
];
const TASKS: &[&str] = &[
    "command-line tools",
    "data pipelines",
    "web backends",
    "scripts",
    "machine learning",
    "embedded firmware",
    "infrastructure code",
    "test harnesses",
    "mobile apps",
    "build tooling",
];
const SERVICES: &[&str] = &[
    "billing",
    "checkout",
    "search",
    "auth",
    "notifications",
    "inventory",
    "reporting",
    "gateway",
    "ledger",
    "scheduler",
    "ingest",
    "analytics",
    "profile",
    "catalog",
    "payments",
    "shipping",
    "recommendations",
    "chat",
    "uploads",
    "exports",
];
const COMPONENTS: &[&str] = &[
    "cache",
    "queue",
    "worker",
    "cron job",
    "load balancer",
    "database pool",
    "rate limiter",
    "feature flag",
    "migration",
    "webhook",
    "index",
    "retry loop",
    "config loader",
];
const PEOPLE: &[&str] = &[
    "Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace", "Heidi", "Ivan", "Judy", "Mallory",
    "Niaj", "Olivia", "Peggy", "Rupert", "Sybil", "Trent", "Victor", "Walter", "Yara",
];
const DBS: &[&str] = &[
    "Postgres",
    "MySQL",
    "SQLite",
    "Redis",
    "DynamoDB",
    "Cassandra",
    "MongoDB",
    "ClickHouse",
];
const PLATFORMS: &[&str] = &[
    "Kubernetes",
    "Nomad",
    "bare metal",
    "Lambda",
    "Cloud Run",
    "ECS",
    "Fly",
    "Heroku",
];
const DAYS: &[&str] = &[
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];
const CAUSES: &[&str] = &[
    "the disk fills up",
    "a certificate expires",
    "traffic spikes after a release",
    "the upstream API is slow",
    "two deploys overlap",
    "the clock drifts",
    "a timeout is too short",
    "the connection pool is exhausted",
];
const CATEGORIES: &[&str] = &[
    "preference",
    "fact",
    "decision",
    "incident",
    "process",
    "contact",
    "todo",
];
const SYLLABLES: &[&str] = &[
    "zor", "vex", "kal", "mir", "tun", "dra", "pol", "qui", "sen", "bar", "lix", "nor", "fen",
    "gath", "ost", "rim", "ul", "yen", "cor", "wex",
];

impl Sentences {
    pub(crate) fn new(seed: u64) -> Sentences {
        Sentences { state: seed }
    }

    /// splitmix64: small, fast, deterministic — the same rows every run.
    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// Skewed towards the front of the list, as real word use is.
    fn pick(&mut self, list: &[&'static str]) -> &'static str {
        let a = self.below(list.len());
        let b = self.below(list.len());
        list[a.min(b)]
    }

    fn codename(&mut self) -> String {
        let parts = 2 + self.below(2);
        (0..parts).map(|_| self.pick(SYLLABLES)).collect()
    }

    fn sentence(&mut self) -> String {
        match self.below(9) {
            0 => format!(
                "The user prefers {} over {} for {}.",
                self.pick(LANGS),
                self.pick(LANGS),
                self.pick(TASKS)
            ),
            1 => format!(
                "Deploy {} to {} only after the {} review on {}.",
                self.pick(SERVICES),
                self.pick(PLATFORMS),
                self.pick(PEOPLE),
                self.pick(DAYS)
            ),
            2 => format!(
                "{} owns the {} {} and is on call every {}.",
                self.pick(PEOPLE),
                self.pick(SERVICES),
                self.pick(COMPONENTS),
                self.pick(DAYS)
            ),
            3 => format!(
                "The {} in {} times out when {}; the limit was raised to {} seconds.",
                self.pick(COMPONENTS),
                self.pick(SERVICES),
                self.pick(CAUSES),
                5 + self.below(120)
            ),
            4 => format!(
                "Meeting notes: {} and {} agreed to move {} from {} to {} this quarter.",
                self.pick(PEOPLE),
                self.pick(PEOPLE),
                self.pick(SERVICES),
                self.pick(DBS),
                self.pick(DBS)
            ),
            5 => format!(
                "Incident {}: {} returned errors because {}, and {} rolled it back.",
                1000 + self.below(9000),
                self.pick(SERVICES),
                self.pick(CAUSES),
                self.pick(PEOPLE)
            ),
            6 => format!(
                "Project {} runs on {} with {} and ships every {}.",
                self.codename(),
                self.pick(PLATFORMS),
                self.pick(DBS),
                self.pick(DAYS)
            ),
            7 => format!(
                "Remember to ask {} before changing the {} {} in production.",
                self.pick(PEOPLE),
                self.pick(SERVICES),
                self.pick(COMPONENTS)
            ),
            _ => format!(
                "Use {} for {} and keep the {} tests green before merging.",
                self.pick(LANGS),
                self.pick(TASKS),
                self.pick(SERVICES)
            ),
        }
    }

    /// A Chinese or Japanese note of the same kinds, written without spaces.
    fn cjk_sentence(&mut self) -> String {
        const ZH_WHO: &[&str] = &["李明", "王芳", "张伟", "刘洋", "陈静"];
        const ZH_WHAT: &[&str] = &[
            "数据库备份",
            "提交信息",
            "部署流程",
            "代码审查",
            "监控告警",
            "缓存配置",
        ];
        const ZH_WHEN: &[&str] = &["每天凌晨两点", "每周五下午", "发布之前", "月底"];
        const JA_WHAT: &[&str] = &[
            "ドキュメント",
            "テスト",
            "デプロイ",
            "バックアップ",
            "設定ファイル",
        ];
        const JA_WHEN: &[&str] = &["毎朝", "リリース前に", "金曜日に", "週に一度"];
        if self.below(2) == 0 {
            format!(
                "{}负责{}，{}运行，{}需要{}确认。",
                self.pick(ZH_WHO),
                self.pick(ZH_WHAT),
                self.pick(ZH_WHEN),
                self.pick(ZH_WHAT),
                self.pick(ZH_WHO)
            )
        } else {
            format!(
                "{}は{}更新し、{}の{}を確認する。",
                self.pick(JA_WHAT),
                self.pick(JA_WHEN),
                self.pick(JA_WHAT),
                self.pick(JA_WHAT)
            )
        }
    }

    pub(crate) fn memory(&mut self) -> NewMemory {
        let sentences = 1 + self.below(3);
        let body = (0..sentences)
            .map(|_| self.sentence())
            .collect::<Vec<_>>()
            .join(" ");
        NewMemory {
            namespace: format!("agent-{}", self.below(8)),
            category: self.pick(CATEGORIES).to_owned(),
            body,
            ..NewMemory::default()
        }
    }
}

/// The least used project codename among `bodies` (alphabetically first among ties): a rare
/// word of this vocabulary.
pub(crate) fn rarest_codename<'a>(bodies: impl IntoIterator<Item = &'a str>) -> String {
    let mut uses = std::collections::BTreeMap::<String, usize>::new();
    for name in bodies.into_iter().filter_map(codename_in) {
        *uses.entry(name).or_default() += 1;
    }
    uses.iter()
        .min_by_key(|(_, n)| **n)
        .map(|(name, _)| name.clone())
        .unwrap_or_else(|| "zorvex".into())
}
