//! The store's promise under load, measured with real processes:
//!
//! 1. the wall time of a whole `modstate artifact get` process, idle and while 4 writer
//!    processes commit batches in a loop (reads must not wait for writers), phases interleaved
//!    and repeated, p50 / p99 / max;
//! 2. the `-wal` high-water mark while 2 writer processes commit batches and `snapshot export`
//!    processes run back to back, and its size once the load stops, with a long-lived process
//!    keeping the database open throughout (so the last close cannot simply delete the WAL).
//!
//! A workload of `benches/compare.rs`: `BENCH_ONLY=contention cargo bench --bench compare`.

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use modstate::{Digest, Options, Store};

/// Set in a re-executed copy of the benchmark binary that acts as one looping writer.
pub const WRITER_ENV: &str = "MODSTATE_BENCH_LOOP_WRITER";
const BATCH: usize = 50;

/// Runs both measurements in `root`; `quick` shortens them. Returns the markdown section.
pub fn run(bin: &str, root: &Path, quick: bool) -> String {
    let tmp = tempfile::tempdir_in(root).expect("temp dir");
    let mut md = String::new();
    md.push_str(&reads_under_writers(bin, tmp.path(), quick));
    md.push_str(&wal_bound(bin, tmp.path(), quick));
    md
}

/// The body of a writer process: batches of 50 puts until `stop` exists.
pub fn writer(spec: &str) {
    let mut parts = spec.split('\t');
    let db = parts.next().expect("db");
    let stop = Path::new(parts.next().expect("stop file")).to_path_buf();
    let seed: usize = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let store = Store::open(db, Options::default()).expect("writer open");
    let mut n = seed * 1_000_000;
    while !stop.exists() {
        let items: Vec<(Digest, modstate::Envelope)> = (n..n + BATCH)
            .map(|i| (super::key(i), super::envelope(i)))
            .collect();
        store
            .put_many(items.iter().map(|(k, v)| (k, v)))
            .expect("writer put_many");
        n += BATCH;
    }
}

fn start_writers(db: &Path, stop: &Path, count: usize) -> Vec<Child> {
    let _ = fs::remove_file(stop);
    (0..count)
        .map(|seed| {
            Command::new(std::env::current_exe().expect("bench binary"))
                .env(
                    WRITER_ENV,
                    format!("{}\t{}\t{}", db.display(), stop.display(), seed + 1),
                )
                .spawn()
                .expect("spawn writer")
        })
        .collect()
}

fn stop_writers(stop: &Path, writers: Vec<Child>) {
    fs::write(stop, b"stop").expect("stop file");
    for mut w in writers {
        assert!(w.wait().expect("writer").success(), "a writer failed");
    }
}

fn reads_under_writers(bin: &str, dir: &Path, quick: bool) -> String {
    let db = dir.join("reads.db");
    let store = Store::open(&db, Options::default()).expect("open");
    let items: Vec<(Digest, modstate::Envelope)> = (0..1000)
        .map(|i| (super::key(i), super::envelope(i)))
        .collect();
    store.put_many(items.iter().map(|(k, v)| (k, v))).unwrap();
    drop(store);
    let stop = dir.join("stop-reads");
    let per_phase = if quick { 40 } else { 200 };
    let rounds = if quick { 2 } else { 3 };
    let get = |i: usize| {
        let started = Instant::now();
        let out = Command::new(bin)
            .arg("--db")
            .arg(&db)
            .args(["artifact", "get", super::key(i % 1000).as_str()])
            .stdout(Stdio::null())
            .status()
            .expect("modstate get");
        assert!(out.success(), "get failed");
        started.elapsed().as_secs_f64() * 1000.0
    };
    // Warm-up of both phases, then idle and busy interleaved, `rounds` times each.
    for i in 0..10 {
        get(i);
    }
    let (mut idle, mut busy) = (Vec::new(), Vec::new());
    for round in 0..=rounds {
        let writers = start_writers(&db, &stop, 4);
        std::thread::sleep(Duration::from_millis(300));
        let sample: Vec<f64> = (0..per_phase).map(get).collect();
        stop_writers(&stop, writers);
        let quiet: Vec<f64> = (0..per_phase).map(get).collect();
        if round > 0 {
            busy.extend(sample);
            idle.extend(quiet);
        }
    }
    let row = |label: &str, v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        format!(
            "| {label} | {:.2} | {:.2} | {:.2} | {} |\n",
            at(0.5),
            at(0.99),
            v[v.len() - 1],
            v.len()
        )
    };
    let (idle_p50, busy_p50) = {
        let mut i = idle.clone();
        let mut b = busy.clone();
        i.sort_by(f64::total_cmp);
        b.sort_by(f64::total_cmp);
        (i[i.len() / 2], b[b.len() / 2])
    };
    let mut md = format!(
        "## Reads never wait for writers: a whole `modstate artifact get` process\n\n\
         Idle and busy phases interleaved, {rounds} rounds of {per_phase} gets each after a \
         warm-up round; busy = 4 writer processes committing batches of {BATCH} (FULL) in a loop.\n\n\
         | phase | p50 ms | p99 ms | max ms | gets |\n|---|---|---|---|---|\n"
    );
    md.push_str(&row("idle", &mut idle));
    md.push_str(&row("4 writers looping", &mut busy));
    md.push_str(&format!(
        "\np50 under writers / p50 idle: **{:.2}×**\n\n",
        busy_p50 / idle_p50
    ));
    md
}

fn wal_bound(bin: &str, dir: &Path, quick: bool) -> String {
    let db = dir.join("wal.db");
    let wal = dir.join("wal.db-wal");
    let snapshots = dir.join("snapshots");
    fs::create_dir_all(&snapshots).unwrap();
    // The long-lived process: it keeps a writer and readers open all along, as `modstate mcp`.
    let long_lived = Store::open(&db, Options::default()).expect("open");
    let items: Vec<(Digest, modstate::Envelope)> = (0..20_000)
        .map(|i| (super::key(i), super::envelope(i)))
        .collect();
    long_lived
        .put_many(items.iter().map(|(k, v)| (k, v)))
        .unwrap();
    let limit = long_lived.options().wal_size_limit;
    let seconds = if quick { 15 } else { 60 };
    let stop = dir.join("stop-wal");
    let writers = start_writers(&db, &stop, 2);
    let started = Instant::now();
    let mut high = 0u64;
    let mut exports = 0;
    let mut export: Option<Child> = None;
    while started.elapsed() < Duration::from_secs(seconds) {
        // Back to back: the next export starts as soon as the last one has exited.
        let done = match export.as_mut() {
            None => true,
            Some(child) => child.try_wait().expect("export").is_some(),
        };
        if done {
            export = Some(
                Command::new(bin)
                    .arg("--db")
                    .arg(&db)
                    .args(["snapshot", "export", "--keep", "2"])
                    .arg(&snapshots)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("export"),
            );
            exports += 1;
        }
        high = high.max(fs::metadata(&wal).map_or(0, |m| m.len()));
        std::thread::sleep(Duration::from_millis(20));
    }
    stop_writers(&stop, writers);
    if let Some(mut child) = export {
        child.wait().expect("export");
    }
    let at_stop = fs::metadata(&wal).map_or(0, |m| m.len());
    // One more export, as a nightly job would run; it shrinks the WAL on its way out.
    let out = Command::new(bin)
        .arg("--db")
        .arg(&db)
        .args(["snapshot", "export"])
        .arg(&snapshots)
        .output()
        .expect("export");
    assert!(out.status.success(), "final export failed");
    let after = fs::metadata(&wal).map_or(0, |m| m.len());
    drop(long_lived);
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    format!(
        "## A bounded WAL: 2 writer processes (batches of {BATCH}) + back-to-back snapshot exports for {seconds} s\n\n\
         A long-lived process keeps the database open throughout. `wal_size_limit` = {:.0} MiB.\n\n\
         | measure | MiB |\n|---|---|\n\
         | `-wal` high-water mark ({exports} exports) | {:.1} |\n\
         | `-wal` when the load stopped | {:.1} |\n\
         | `-wal` after one more export, long-lived process still open | {:.1} |\n\n",
        mib(limit),
        mib(high),
        mib(at_stop),
        mib(after),
    )
}
