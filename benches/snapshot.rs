//! Snapshot benchmark, side by side in one run:
//!
//! 1. export throughput (`Store::snapshot`) vs `cp` + fsync of the same database file;
//! 2. writer commits per second while an export runs vs with none.
//!
//! A workload of `benches/compare.rs`: `BENCH_ONLY=snapshot cargo bench --bench compare`.
//! The database is 64 MiB at quick scale and 512 MiB at full scale; `MODSTATE_BENCH_MB`
//! overrides. Files go in the compare benchmark's directory on the project's disk.

use std::fs::File;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use modstate::{Digest, Options, SnapshotOptions, Store};
use rusqlite::Connection;

const WRITERS: usize = 2;
/// Export / cp pairs measured after the warm-up.
const RUNS: usize = 5;
/// Idle / busy rounds measured after the warm-up round.
const PHASE_ROUNDS: usize = 4;

/// Runs the workload in `root` on a database of `default_mb` MiB (or `MODSTATE_BENCH_MB`) and
/// returns its report section in markdown.
pub fn run(root: &Path, default_mb: usize) -> String {
    let megabytes: usize = std::env::var("MODSTATE_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_mb);
    let tmp = tempfile::tempdir_in(root).expect("temp dir");
    let db = tmp.path().join("bench.db");
    let built = Instant::now();
    fill(&db, megabytes);
    let db_bytes = std::fs::metadata(&db).expect("db size").len();
    let mut md = format!(
        "## Snapshot export of a {:.0} MiB database ({megabytes} × 1 MiB artifacts, built in {:.1} s)\n\n",
        mib(db_bytes),
        built.elapsed().as_secs_f64(),
    );

    let store = Store::open(&db, Options::default()).expect("open");
    let snap = tmp.path().join("snap.db");
    let copy = tmp.path().join("copy.db");

    // 1. Export vs cp + fsync, alternating, one warm-up of each, then RUNS pairs (page cache
    //    warm for both); medians, min–max, and the median of the paired ratios.
    let export_once = || {
        let started = Instant::now();
        store
            .snapshot(&snap, &SnapshotOptions::default())
            .expect("export");
        started.elapsed().as_secs_f64()
    };
    let cp_once = || {
        let started = Instant::now();
        cp_fsync(&db, &copy);
        started.elapsed().as_secs_f64()
    };
    export_once();
    cp_once();
    let (mut exports_s, mut cps_s, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..RUNS {
        let (e, c) = if run % 2 == 0 {
            let e = export_once();
            (e, cp_once())
        } else {
            let c = cp_once();
            (export_once(), c)
        };
        exports_s.push(e);
        cps_s.push(c);
        // Throughput ratio export / cp = cp time / export time.
        ratios.push(c / e);
    }
    let row = |label: &str, v: &[f64]| {
        let (lo, hi) = crate::min_max(v);
        let m = crate::median(v);
        format!(
            "| {label} | {:.0} ms | {:.0}–{:.0} ms | {:.0} MiB/s |\n",
            m * 1e3,
            lo * 1e3,
            hi * 1e3,
            mib(db_bytes) / m
        )
    };
    let (rlo, rhi) = crate::min_max(&ratios);
    md.push_str(&format!(
        "{RUNS} pairs after a warm-up of each, order alternating, page cache warm for both.\n\n\
         | system | median time | min–max | throughput |\n| --- | ---: | ---: | ---: |\n{}{}\n\
         Export throughput / cp + fsync throughput, median of the paired ratios: **{:.2}×** \
         (min–max {rlo:.2}–{rhi:.2}×, {RUNS} pairs; target ≥ 0.8×).\n\n",
        row("cp + fsync", &cps_s),
        row("modstate snapshot export", &exports_s),
        crate::median(&ratios),
    ));

    // 2. Writer commits/s, idle vs while exports run back to back: the phases alternate
    //    (which one goes first alternates too), a warm-up round of both is dropped, and each
    //    phase starts its writers afresh and lets them commit before the clock starts.
    let window = Duration::from_secs_f64((crate::median(&exports_s) * 3.0).max(2.0));
    let mut exports = 0;
    let (mut idle, mut busy, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..=PHASE_ROUNDS {
        let idle_phase = || commits_per_sec(&db, || std::thread::sleep(window));
        let busy_phase = || {
            let mut n = 0;
            let rate = commits_per_sec(&db, || {
                let until = Instant::now() + window;
                while Instant::now() < until {
                    store
                        .snapshot(&snap, &SnapshotOptions::default())
                        .expect("export");
                    n += 1;
                }
            });
            (rate, n)
        };
        let (i, (b, n)) = if round % 2 == 0 {
            let i = idle_phase();
            (i, busy_phase())
        } else {
            let b = busy_phase();
            (idle_phase(), b)
        };
        if round > 0 {
            idle.push(i);
            busy.push(b);
            ratios.push(b / i);
            exports += n;
        }
    }
    let (ilo, ihi) = crate::min_max(&idle);
    let (blo, bhi) = crate::min_max(&busy);
    let (rlo, rhi) = crate::min_max(&ratios);
    md.push_str(&format!(
        "## Writer commits/s during snapshot exports ({WRITERS} writers, synchronous=FULL)\n\n\
         {PHASE_ROUNDS} rounds of an idle and a busy phase of {:.1} s each (order alternating), \
         after a dropped warm-up round of both; {exports} exports in the busy phases.\n\n\
         | phase | median commits/s | min–max |\n| --- | ---: | ---: |\n\
         | idle | {:.1} | {ilo:.1}–{ihi:.1} |\n\
         | exports back to back | {:.1} | {blo:.1}–{bhi:.1} |\n\n\
         Busy / idle, median of the {PHASE_ROUNDS} paired rounds: **{:.2}×** (min–max {rlo:.2}–{rhi:.2}×).\n\n",
        window.as_secs_f64(),
        crate::median(&idle),
        crate::median(&busy),
        crate::median(&ratios),
    ));
    let rss_snap = tmp.path().join("rss-snap.db");
    let peak = crate::peak_rss_kib(&[
        "--db",
        &db.display().to_string(),
        "snapshot",
        "export",
        &rss_snap.display().to_string(),
    ]);
    let _ = std::fs::remove_file(&rss_snap);
    let anon = peak_anon_kib(&db, &rss_snap);
    md.push_str(&format!(
        "Peak resident memory of `modstate snapshot export` on this {:.0} MiB database: {:.1} MiB \
         (VmHWM), of which at most {:.1} MiB anonymous (RssAnon, sampled every millisecond): the \
         rest is the copy's own file pages, mapped for its integrity check — page cache, which a \
         read through pread fills just the same, only not counted against the process.\n\n",
        mib(db_bytes),
        peak / 1024.0,
        anon / 1024.0
    ));
    md
}

/// The largest RssAnon (KiB) of a `modstate snapshot export` process, sampled from
/// /proc/<pid>/status every millisecond while it runs.
fn peak_anon_kib(db: &Path, dest: &Path) -> f64 {
    let mut child = Command::new(crate::BIN)
        .arg("--db")
        .arg(db)
        .args(["snapshot", "export"])
        .arg(dest)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn export");
    let status = format!("/proc/{}/status", child.id());
    let mut peak = 0.0f64;
    loop {
        if let Ok(text) = std::fs::read_to_string(&status)
            && let Some(kib) = text
                .lines()
                .find_map(|l| l.strip_prefix("RssAnon:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        {
            peak = peak.max(kib);
        }
        if child.try_wait().expect("export").is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    peak
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// `megabytes` 1 MiB artifacts, inserted with plain SQL in one transaction (set-up only).
fn fill(db: &Path, megabytes: usize) {
    drop(Store::open(db, Options::default()).expect("create"));
    let blob = "abcdefghijklmnopqrstuvwxyz".repeat((1024 * 1024 - 64) / 26);
    let envelope = format!(r#"{{"type":"Module","version":1,"state":{{"blob":"{blob}"}}}}"#);
    let sha = Digest::of(envelope.as_bytes()).hex().to_owned();
    let mut conn = Connection::open(db).expect("open");
    let tx = conn.transaction().expect("begin");
    for i in 0..megabytes {
        tx.execute(
            "INSERT INTO artifacts (digest, envelope, sha256, size, state_type, state_version, created_at)
             VALUES (?1, ?2, ?3, ?4, 'Module', 1, '2026-01-01T00:00:00.000Z')",
            rusqlite::params![
                Digest::of(format!("filler-{i}").as_bytes()).as_str(),
                envelope.as_bytes(),
                sha,
                envelope.len() as i64
            ],
        )
        .expect("insert");
    }
    tx.commit().expect("commit");
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .expect("checkpoint");
}

/// The same work an export's file handling does, with the standard tools: copy, fsync the
/// file, fsync the directory.
pub(crate) fn cp_fsync(from: &Path, to: &Path) {
    let status = Command::new("cp").arg(from).arg(to).status().expect("cp");
    assert!(status.success(), "cp failed");
    File::open(to).and_then(|f| f.sync_all()).expect("fsync");
    let dir = to.parent().expect("parent");
    File::open(dir)
        .and_then(|d| d.sync_all())
        .expect("dir fsync");
}

/// Runs WRITERS writer threads (each its own Store, so they contend on the cross-process
/// write lock like separate processes) while `during` runs; returns their commits per second.
fn commits_per_sec(db: &Path, during: impl FnOnce()) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let commits = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (db, stop, commits) = (db.to_path_buf(), stop.clone(), commits.clone());
            std::thread::spawn(move || {
                let store = Store::open(&db, Options::default()).expect("open writer");
                let mut seq = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let envelope = store
                        .envelope(
                            format!(
                                r#"{{"type":"Module","version":1,"state":{{"w":{w},"seq":{seq}}}}}"#
                            )
                            .into_bytes(),
                        )
                        .expect("envelope");
                    store
                        .put(&Digest::of(format!("w{w}-{seq}").as_bytes()), &envelope)
                        .expect("put");
                    commits.fetch_add(1, Ordering::Relaxed);
                    seq += 1;
                }
            })
        })
        .collect();
    // Let every writer open and commit once before measuring.
    while commits.load(Ordering::Relaxed) < WRITERS as u64 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let before = commits.load(Ordering::Relaxed);
    let started = Instant::now();
    during();
    let elapsed = started.elapsed();
    let after = commits.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().expect("writer");
    }
    (after - before) as f64 / elapsed.as_secs_f64()
}
