//! Growth: the cost of each main operation as the store grows ten-fold, twice.
//!
//! One store grows through the sizes in `MODSTATE_BENCH_GROWTH` (comma-separated; default
//! 10k and 100k at quick scale, 10k, 100k and 1M at full scale), holding that many artifacts
//! *and* that many memories. At each size it measures, in process:
//! get hit (random keys), a single durable put (FULL), memory search for a rare and a common
//! word (top 20, ranked), and a snapshot export per MiB beside `cp` + fsync of the same file.
//! Artifacts here are small (~100-byte envelopes) so that a million fit in this benchmark's
//! time; the index depth, not the payload, is what grows.
//!
//! The report labels each step's growth from the numbers: a B-tree lookup should grow as
//! log n (×1.25 from 10k to 100k, ×1.2 from 100k to 1M), so a step above ×1.5 is called out.
//!
//! A workload of `benches/compare.rs`: `BENCH_ONLY=growth cargo bench --bench compare`.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use modstate::{Digest, Envelope, MemoryFilter, Options, SnapshotOptions, Store, Synchronous};

/// Above this cost ratio per ten-fold step, growth is called out as faster than log n.
const LOG_N_BOUND: f64 = 1.5;

struct Row {
    n: usize,
    db_mib: f64,
    get_us: f64,
    put_ms: f64,
    rare: (String, usize, f64),
    common: (usize, f64),
    export_ms_per_mib: f64,
    cp_ms_per_mib: f64,
}

pub fn run(root: &Path, quick: bool) -> String {
    let sizes: Vec<usize> = std::env::var("MODSTATE_BENCH_GROWTH")
        .ok()
        .map(|v| {
            v.split(',')
                .map(|n| {
                    n.trim()
                        .parse()
                        .unwrap_or_else(|_| panic!("MODSTATE_BENCH_GROWTH: {n:?} is not a count"))
                })
                .collect()
        })
        .unwrap_or_else(|| {
            if quick {
                vec![10_000, 100_000]
            } else {
                vec![10_000, 100_000, 1_000_000]
            }
        });
    let tmp = tempfile::tempdir_in(root).expect("temp dir");
    let db = tmp.path().join("growth.db");
    // Built with NORMAL for speed; the put row opens its own FULL store.
    let builder = Store::open(
        &db,
        Options {
            synchronous: Synchronous::Normal,
            ..Options::default()
        },
    )
    .expect("open");
    let full = Store::open(&db, Options::default()).expect("open FULL");
    let mut words = super::memory_search::Sentences::new(0x6077);
    let mut bodies: Vec<String> = Vec::new();
    let mut have = 0;
    let mut rows = Vec::new();
    let build_started = Instant::now();
    for &n in &sizes {
        while have < n {
            let step = 10_000.min(n - have);
            let items: Vec<(Digest, Envelope)> = (have..have + step)
                .map(|i| (super::key(i), small(i)))
                .collect();
            builder
                .put_many(items.iter().map(|(k, v)| (k, v)))
                .expect("put_many");
            let batch: Vec<_> = (0..step).map(|_| words.memory()).collect();
            bodies.extend(batch.iter().map(|m| m.body.clone()));
            builder.add_memories(batch).expect("add_memories");
            have += step;
        }
        rows.push(measure(&full, &db, tmp.path(), n, &bodies));
    }
    let built = build_started.elapsed();
    drop((builder, full));
    render(&rows, built)
}

/// A ~100-byte envelope, different for every `n`.
fn small(n: usize) -> Envelope {
    Envelope::parse(
        format!(r#"{{"type":"Module","version":1,"state":{{"name":"module-{n}","n":{n}}}}}"#)
            .into_bytes(),
        usize::MAX,
    )
    .expect("valid envelope")
}

fn median_of(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn measure(store: &Store, db: &Path, dir: &Path, n: usize, bodies: &[String]) -> Row {
    // Get hit: 5 rounds of 2,000 random keys after one warm-up round; µs per get.
    let mut rng = super::Rng(0x1234_5678 ^ n as u64);
    let mut rounds = Vec::new();
    for round in 0..6 {
        let keys: Vec<Digest> = (0..2000).map(|_| super::key(rng.below(n))).collect();
        let started = Instant::now();
        for k in &keys {
            assert!(store.get(k).expect("get").is_some());
        }
        if round > 0 {
            rounds.push(started.elapsed().as_secs_f64() * 1e6 / keys.len() as f64);
        }
    }
    let get_us = median_of(rounds);

    // Single durable put: 30 new keys, each its own FULL commit; median ms.
    let puts: Vec<f64> = (0..30)
        .map(|i| {
            let k = Digest::of(format!("growth put {n} {i}").as_bytes());
            let v = small(n + i);
            let started = Instant::now();
            store.put(&k, &v).expect("put");
            started.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    let put_ms = median_of(puts);

    let rare_word = super::memory_search::rarest_codename(bodies.iter().map(String::as_str));
    let rare = search(store, &rare_word);
    let common = search(store, "deploy");

    // Export per MiB, best of 2, beside cp + fsync of the same file at the same moment.
    let snap = dir.join("growth-snap.db");
    let copy = dir.join("growth-copy.db");
    let db_bytes = std::fs::metadata(db).expect("db size").len() as f64;
    let (mut export, mut cp) = (Duration::MAX, Duration::MAX);
    for _ in 0..2 {
        let started = Instant::now();
        store
            .snapshot(&snap, &SnapshotOptions::default())
            .expect("export");
        export = export.min(started.elapsed());
        let started = Instant::now();
        super::snapshot::cp_fsync(db, &copy);
        cp = cp.min(started.elapsed());
    }
    let _ = std::fs::remove_file(&snap);
    let _ = std::fs::remove_file(&copy);
    let mib = db_bytes / (1024.0 * 1024.0);
    Row {
        n,
        db_mib: mib,
        get_us,
        put_ms,
        rare: (rare_word, rare.0, rare.1),
        common,
        export_ms_per_mib: export.as_secs_f64() * 1e3 / mib,
        cp_ms_per_mib: cp.as_secs_f64() * 1e3 / mib,
    }
}

/// (matches, median ms for the top 20) of a ranked search.
fn search(store: &Store, word: &str) -> (usize, f64) {
    let all = store
        .search_memories(
            word,
            &MemoryFilter {
                limit: Some(usize::MAX >> 1),
                ..MemoryFilter::default()
            },
        )
        .expect("search")
        .len();
    let filter = MemoryFilter {
        limit: Some(20),
        ..MemoryFilter::default()
    };
    let times: Vec<f64> = (0..12)
        .map(|_| {
            let started = Instant::now();
            std::hint::black_box(store.search_memories(word, &filter).expect("search"));
            started.elapsed().as_secs_f64() * 1e3
        })
        .skip(2)
        .collect();
    (all, median_of(times))
}

fn render(rows: &[Row], built: Duration) -> String {
    let mut md = format!(
        "## Growth: cost per operation as the store grows (one store, {} artifacts and as many memories at the end, built in {:.0} s)\n\n\
         In process; get = median µs of 5 × 2,000 random hits; put = median of 30 single FULL commits; \
         search = median of 10 top-20 ranked searches; export = best of 2 (cp + fsync of the same file beside it). \
         Each cell shows the cost and, after the first size, its ratio to the size before; \
         log n predicts ×1.25 then ×1.20, and a step above ×{LOG_N_BOUND} is marked ▲.\n\n\
         | n | db MiB | get hit µs | single put ms | search rare word | search \"deploy\" (common) | export ms/MiB | cp + fsync ms/MiB |\n\
         | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
        rows.last().map_or(0, |r| r.n),
        built.as_secs_f64()
    );
    let step = |now: f64, before: Option<f64>| match before {
        None => fmt(now),
        Some(b) => {
            let r = now / b;
            let mark = if r > LOG_N_BOUND { " ▲" } else { "" };
            format!("{} (×{r:.2}{mark})", fmt(now))
        }
    };
    let mut faster = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        let prev = i.checked_sub(1).map(|j| &rows[j]);
        let _ = writeln!(
            md,
            "| {} | {:.0} | {} | {} | {} ms, {:?}, {} matches | {} ms, {} matches | {} | {} |",
            r.n,
            r.db_mib,
            step(r.get_us, prev.map(|p| p.get_us)),
            step(r.put_ms, prev.map(|p| p.put_ms)),
            step(r.rare.2, prev.map(|p| p.rare.2)),
            r.rare.0,
            r.rare.1,
            step(r.common.1, prev.map(|p| p.common.1)),
            r.common.0,
            step(r.export_ms_per_mib, prev.map(|p| p.export_ms_per_mib)),
            step(r.cp_ms_per_mib, prev.map(|p| p.cp_ms_per_mib)),
        );
        if let Some(p) = prev {
            for (name, now, before) in [
                ("get hit", r.get_us, p.get_us),
                ("single put", r.put_ms, p.put_ms),
                ("search rare", r.rare.2, p.rare.2),
                ("search common", r.common.1, p.common.1),
                ("export per MiB", r.export_ms_per_mib, p.export_ms_per_mib),
            ] {
                if now / before > LOG_N_BOUND {
                    faster.push(format!(
                        "{name} ×{:.2} from {} to {}",
                        now / before,
                        p.n,
                        r.n
                    ));
                }
            }
        }
    }
    if faster.is_empty() {
        md.push_str("\nEvery operation stayed within ×1.5 per ten-fold step (flat or log n).\n\n");
    } else {
        let _ = writeln!(
            md,
            "\nGrew faster than log n: {} (see BENCHMARKS.md for why).\n",
            faster.join("; ")
        );
    }
    md
}

fn fmt(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}
