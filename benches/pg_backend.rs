//! The PostgreSQL backend against the `postgres` crate alone, on the same server, tables and
//! payloads: single puts, get hits, a batch put, memory search, and 4 writer processes.
//!
//! The limit row ("postgres crate alone") does the least the same job needs: one connection,
//! prepared statements, no validation, no pool, no error mapping (the get also checks the
//! payload's sha256, as modstate does). The server is the tests' throwaway cluster
//! (`tests/common/postgres.rs`), started with `fsync=off`: the ratios measure modstate's own
//! cost over the client, not the disk. Without PostgreSQL's server binaries the workload is
//! skipped with one line.

use std::process::Command;
use std::time::Instant;

use modstate::{Digest, Envelope, MemoryFilter, NewMemory, Options, Store};

use super::common::postgres::Cluster;
use super::{Better, Report, Scale, WORKER_ENV, envelope, key};

const LIMIT: &str = "postgres crate alone";
const MODSTATE: &str = "modstate (PostgreSQL backend)";

/// Runs every PostgreSQL workload into `report`.
pub fn run(report: &mut Report, scale: &Scale) {
    let Some(cluster) = Cluster::shared() else {
        report.section(
            "## PostgreSQL backend\n\nSkipped: no PostgreSQL server binaries (`pg_config --bindir`); install Debian's `postgresql` and `postgresql-contrib`.\n\n",
        );
        return;
    };
    report.section(&format!(
        "## PostgreSQL backend\n\nServer: {} (the tests' throwaway cluster, Unix socket, fsync=off). Baseline: the `postgres` crate alone with prepared statements on one connection.\n\n",
        cluster.psql_query("postgres", "SHOW server_version").trim()
    ));
    single_puts(report, scale, cluster);
    gets(report, scale, cluster);
    batch(report, scale, cluster);
    search(report, scale, cluster);
    processes(report, scale, cluster);
}

fn open(cluster: &Cluster) -> (Store, String) {
    let url = cluster.socket_url(&cluster.database());
    let store = Store::open(&url, Options::default()).expect("open the PostgreSQL store");
    (store, url)
}

/// The limit: one client on the same database, with the schema modstate created.
fn raw(url: &str) -> postgres::Client {
    postgres::Client::connect(url, postgres::NoTls).expect("connect the raw client")
}

const INSERT: &str =
    "INSERT INTO artifacts (digest, envelope, sha256, size, state_type, state_version, created_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (digest) DO NOTHING";

fn raw_insert(
    client: &mut impl postgres::GenericClient,
    statement: &postgres::Statement,
    k: &Digest,
    v: &Envelope,
) {
    client
        .execute(
            statement,
            &[
                &k.as_str(),
                &v.as_bytes(),
                &Digest::of(v.as_bytes()).hex(),
                &(v.as_bytes().len() as i64),
                &v.state_type(),
                &v.state_version(),
                &"2026-01-01T00:00:00Z",
            ],
        )
        .expect("raw insert");
}

/// Runs `measure(row, run)` for the limit (row 0) and modstate (row 1), interleaved, dropping
/// the warm-up run.
fn interleaved(scale: &Scale, mut measure: impl FnMut(usize, usize) -> f64) -> Vec<Vec<f64>> {
    let mut samples = vec![Vec::new(), Vec::new()];
    for run in 0..=scale.runs {
        for (row, sample) in samples.iter_mut().enumerate() {
            let value = measure(row, run);
            if run > 0 {
                sample.push(value);
            }
        }
    }
    samples
}

fn labels() -> Vec<String> {
    vec![LIMIT.to_owned(), MODSTATE.to_owned()]
}

fn single_puts(report: &mut Report, scale: &Scale, cluster: &Cluster) {
    let items: Vec<(Digest, Envelope)> = (0..scale.single_puts)
        .map(|n| (key(n), envelope(n)))
        .collect();
    let samples = interleaved(scale, |row, _| {
        let (store, url) = open(cluster);
        let started;
        if row == 0 {
            let mut client = raw(&url);
            let statement = client.prepare(INSERT).expect("prepare");
            started = Instant::now();
            for (k, v) in &items {
                raw_insert(&mut client, &statement, k, v);
            }
        } else {
            started = Instant::now();
            for (k, v) in &items {
                store.put(k, v).expect("modstate put");
            }
        }
        items.len() as f64 / started.elapsed().as_secs_f64()
    });
    report.table(
        "PostgreSQL: single put, each its own transaction",
        "puts/s",
        Better::Higher,
        &labels(),
        &samples,
        0,
    );
}

fn gets(report: &mut Report, scale: &Scale, cluster: &Cluster) {
    let (store, url) = open(cluster);
    let size = scale.store_size;
    for start in (0..size).step_by(1000) {
        let chunk: Vec<(Digest, Envelope)> = (start..(start + 1000).min(size))
            .map(|n| (key(n), envelope(n)))
            .collect();
        store
            .put_many(chunk.iter().map(|(k, v)| (k, v)))
            .expect("populate");
    }
    drop(store);
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    // A new connection for every run, of both rows: a round trip costs two to four times as
    // much when the server's backend process runs on the other core than the client (seen
    // here on 2 cores: 13 µs against 40–65 µs, for one connection a whole run long), and
    // where it lands is chance. New connections each run spread that over both rows.
    let samples = interleaved(scale, |row, _| {
        seed += 1;
        let mut rng = super::Rng(seed);
        let keys: Vec<Digest> = (0..scale.gets.min(5000))
            .map(|_| key(rng.below(size)))
            .collect();
        let mut client = raw(&url);
        let select = client
            .prepare("SELECT envelope, sha256 FROM artifacts WHERE digest = $1")
            .expect("prepare");
        let store = Store::open(&url, Options::default()).expect("open the PostgreSQL store");
        // Warm both: a connection prepares its statement on first use.
        let _ = client.query_opt(&select, &[&keys[0].as_str()]);
        let _ = store.get(&keys[0]);
        let started = Instant::now();
        for k in &keys {
            if row == 0 {
                let r = client.query_one(&select, &[&k.as_str()]).expect("raw get");
                let bytes: Vec<u8> = r.get(0);
                let sha: String = r.get(1);
                assert_eq!(Digest::of(&bytes).hex(), sha);
            } else {
                assert!(store.get(k).expect("modstate get").is_some());
            }
        }
        started.elapsed().as_secs_f64() * 1e6 / keys.len() as f64
    });
    let title = format!("PostgreSQL: get hit, random keys, store of {size} artifacts");
    report.table(&title, "µs/get", Better::Lower, &labels(), &samples, 0);
    report.limit_check(&title, Better::Lower, &labels(), &samples, &[0], &[1]);
}

fn batch(report: &mut Report, scale: &Scale, cluster: &Cluster) {
    let items: Vec<(Digest, Envelope)> = (0..scale.batch).map(|n| (key(n), envelope(n))).collect();
    let samples = interleaved(scale, |row, _| {
        let (store, url) = open(cluster);
        let started;
        if row == 0 {
            let mut client = raw(&url);
            let statement = client.prepare(INSERT).expect("prepare");
            started = Instant::now();
            let mut tx = client.transaction().expect("begin");
            for (k, v) in &items {
                raw_insert(&mut tx, &statement, k, v);
            }
            tx.commit().expect("commit");
        } else {
            started = Instant::now();
            store
                .put_many(items.iter().map(|(k, v)| (k, v)))
                .expect("modstate put_many");
        }
        items.len() as f64 / started.elapsed().as_secs_f64()
    });
    report.table(
        &format!(
            "PostgreSQL: batch put of {} in one transaction",
            scale.batch
        ),
        "puts/s",
        Better::Higher,
        &labels(),
        &samples,
        0,
    );
}

/// Words for memory bodies: a small vocabulary, so queries match many memories.
const WORDS: &[&str] = &[
    "deploy",
    "production",
    "friday",
    "database",
    "migration",
    "rollback",
    "cache",
    "module",
    "typedef",
    "runner",
    "fleet",
    "snapshot",
    "backup",
    "restore",
    "agent",
    "memory",
    "search",
    "index",
    "latency",
    "release",
    "staging",
    "review",
    "incident",
    "owner",
    "schema",
];

fn search(report: &mut Report, scale: &Scale, cluster: &Cluster) {
    let (store, url) = open(cluster);
    let count = scale.memories.min(20_000);
    let mut rng = super::Rng(42);
    for start in (0..count).step_by(1000) {
        let batch: Vec<NewMemory> = (start..(start + 1000).min(count))
            .map(|_| {
                let words: Vec<&str> = (0..12).map(|_| WORDS[rng.below(WORDS.len())]).collect();
                NewMemory {
                    namespace: String::new(),
                    category: String::new(),
                    body: words.join(" "),
                    ..NewMemory::default()
                }
            })
            .collect();
        store.add_memories(batch).expect("populate memories");
    }
    let mut client = raw(&url);
    // The limit: the same index, PostgreSQL's own ranking, no paging, no cursor.
    let select = client
        .prepare(
            "SELECT id, body FROM memories, to_tsquery('modstate_search', $1) q
             WHERE search @@ q ORDER BY ts_rank_cd(search, q) DESC, id DESC LIMIT 20",
        )
        .expect("prepare");
    let queries = [
        ("deploy production", "deploy & production:*"),
        ("incident owner", "incident & owner:*"),
        ("rollback", "rollback:*"),
        ("typedef runner fleet", "typedef & runner & fleet:*"),
    ];
    let samples = interleaved(scale, |row, _| {
        let started = Instant::now();
        for (text, tsquery) in queries {
            if row == 0 {
                let rows = client.query(&select, &[&tsquery]).expect("raw search");
                assert!(!rows.is_empty());
            } else {
                let filter = MemoryFilter {
                    limit: Some(20),
                    ..MemoryFilter::default()
                };
                let page = store.search_page(text, &filter).expect("modstate search");
                assert!(!page.page.items.is_empty());
            }
        }
        started.elapsed().as_secs_f64() * 1e3 / queries.len() as f64
    });
    report.table(
        &format!(
            "PostgreSQL: memory search, top 20 of {count} memories (4 queries, each matching thousands)"
        ),
        "ms/search",
        Better::Lower,
        &labels(),
        &samples,
        0,
    );
}

fn processes(report: &mut Report, scale: &Scale, cluster: &Cluster) {
    let labels = vec![
        "modstate, 1 process".to_owned(),
        "modstate, 4 processes".to_owned(),
    ];
    let mut samples = vec![Vec::new(), Vec::new()];
    for run in 0..=scale.runs {
        for (i, procs) in [1usize, 4].into_iter().enumerate() {
            let (store, url) = open(cluster);
            drop(store);
            let per = scale.proc_puts;
            let started = Instant::now();
            let children: Vec<_> = (0..procs)
                .map(|p| {
                    Command::new(std::env::current_exe().expect("bench binary"))
                        .env(WORKER_ENV, format!("{url}\t{}\t{}", p * per, per))
                        .spawn()
                        .expect("spawn worker")
                })
                .collect();
            for mut c in children {
                assert!(c.wait().expect("wait").success(), "worker failed");
            }
            if run > 0 {
                samples[i].push((procs * per) as f64 / started.elapsed().as_secs_f64());
            }
        }
    }
    report.table(
        &format!(
            "PostgreSQL: concurrent writers, {} single puts per process",
            scale.proc_puts
        ),
        "total puts/s",
        Better::Higher,
        &labels,
        &samples,
        0,
    );
}
