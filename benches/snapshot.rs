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
const RUNS: usize = 3;

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

    // 1. Export vs cp + fsync, alternating, best of RUNS each (page cache warm for both).
    let (mut export_best, mut cp_best) = (Duration::MAX, Duration::MAX);
    for _ in 0..RUNS {
        let started = Instant::now();
        store
            .snapshot(&snap, &SnapshotOptions::default())
            .expect("export");
        export_best = export_best.min(started.elapsed());

        let started = Instant::now();
        cp_fsync(&db, &copy);
        cp_best = cp_best.min(started.elapsed());
    }
    let export_rate = mib(db_bytes) / export_best.as_secs_f64();
    let cp_rate = mib(db_bytes) / cp_best.as_secs_f64();
    md.push_str(&format!(
        "Best of {RUNS}, alternating, page cache warm for both.\n\n\
         | system | time | throughput | ratio to cp + fsync |\n| --- | ---: | ---: | ---: |\n\
         | cp + fsync | {:.0} ms | {cp_rate:.0} MiB/s | 1.00× |\n\
         | modstate snapshot export | {:.0} ms | {export_rate:.0} MiB/s | {:.2}× |\n\n",
        cp_best.as_secs_f64() * 1e3,
        export_best.as_secs_f64() * 1e3,
        export_rate / cp_rate
    ));

    // 2. Writer commits/s: idle, then while exports run back to back for the same duration.
    let window = (export_best * 3).max(Duration::from_secs(3));
    let idle = commits_per_sec(&db, || std::thread::sleep(window));
    let mut exports = 0;
    let during = commits_per_sec(&db, || {
        let until = Instant::now() + window;
        while Instant::now() < until {
            store
                .snapshot(&snap, &SnapshotOptions::default())
                .expect("export");
            exports += 1;
        }
    });
    md.push_str(&format!(
        "## Writer commits/s during snapshot exports ({WRITERS} writers, synchronous=FULL)\n\n\
         | system | commits/s | ratio to idle |\n| --- | ---: | ---: |\n\
         | idle | {idle:.1} | 1.00× |\n\
         | during {exports} exports back to back | {during:.1} | {:.2}× |\n\n",
        during / idle
    ));
    let rss_snap = tmp.path().join("rss-snap.db");
    let peak = crate::peak_rss_kib(&[
        "--db",
        &db.display().to_string(),
        "snapshot",
        "export",
        &rss_snap.display().to_string(),
    ]);
    md.push_str(&format!(
        "Peak resident memory of `modstate snapshot export` on this {:.0} MiB database: {:.1} MiB.\n\n",
        mib(db_bytes),
        peak / 1024.0
    ));
    md
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
fn cp_fsync(from: &Path, to: &Path) {
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
