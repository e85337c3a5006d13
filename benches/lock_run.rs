//! What fleet locks (issue 29: heartbeat, lease, fencing token) cost an uncontended
//! `modstate lock run K -- true`, as a whole process, against the build named by
//! `MODSTATE_BENCH_BASELINE_BIN` (say, of the commit before them) in the same run: pairs whose
//! order alternates, on SQLite (a database file) and on PostgreSQL (the tests' throwaway
//! cluster; each build on a database of its own, since the older one refuses a newer schema).
//! Without a baseline build, only this build's times are shown.
//!
//! A workload of `benches/compare.rs`: `BENCH_ONLY=lock-run cargo bench --bench compare`.

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use super::common::postgres::Cluster;

/// One whole `lock run` process's wall time in ms; it must succeed.
fn lock_run_ms(bin: &str, db: &str) -> f64 {
    let started = Instant::now();
    let status = Command::new(bin)
        .args(["--db", db, "lock", "run", "bench-key", "--", "true"])
        .env_remove("MODSTATE_DB")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("spawn {bin}: {e}"));
    let ms = started.elapsed().as_secs_f64() * 1e3;
    assert!(status.success(), "{bin} lock run on {db} failed");
    ms
}

fn quantile(values: &[f64], q: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// Runs the comparison with `pairs` pairs per backend; returns markdown.
pub fn run(bin: &str, root: &Path, pairs: usize) -> String {
    let baseline = std::env::var("MODSTATE_BENCH_BASELINE_BIN").ok();
    let tmp = tempfile::tempdir_in(root).expect("temp dir");
    let mut md = format!(
        "## Uncontended `lock run K -- true` (fleet locks: heartbeat, lease, token)\n\n\
         {pairs} pairs per backend, order alternating, after a warm-up. Baseline: {}.\n\n\
         | backend | this build p50 ms (p10–p90) | baseline p50 ms (p10–p90) | median paired ratio (p10–p90) |\n\
         | --- | ---: | ---: | ---: |\n",
        baseline
            .as_deref()
            .unwrap_or("none (set MODSTATE_BENCH_BASELINE_BIN)")
    );
    let mut targets: Vec<(&str, String, String)> = vec![(
        "SQLite",
        tmp.path().join("new.db").display().to_string(),
        tmp.path().join("old.db").display().to_string(),
    )];
    if let Some(cluster) = Cluster::shared() {
        targets.push((
            "PostgreSQL",
            cluster.socket_url(&cluster.database()),
            cluster.socket_url(&cluster.database()),
        ));
    }
    for (backend, new_db, old_db) in targets {
        // Warm-up: creates each store (and, on PostgreSQL, its schema).
        lock_run_ms(bin, &new_db);
        if let Some(old) = &baseline {
            lock_run_ms(old, &old_db);
        }
        let (mut new, mut old, mut ratios) = (vec![], vec![], vec![]);
        for i in 0..pairs {
            let Some(base) = &baseline else {
                new.push(lock_run_ms(bin, &new_db));
                continue;
            };
            let (n, o) = if i % 2 == 0 {
                let n = lock_run_ms(bin, &new_db);
                (n, lock_run_ms(base, &old_db))
            } else {
                let o = lock_run_ms(base, &old_db);
                (lock_run_ms(bin, &new_db), o)
            };
            new.push(n);
            old.push(o);
            ratios.push(n / o);
        }
        let cell = |v: &[f64]| {
            if v.is_empty() {
                "—".to_owned()
            } else {
                format!(
                    "{:.2} ({:.2}–{:.2})",
                    quantile(v, 0.5),
                    quantile(v, 0.1),
                    quantile(v, 0.9)
                )
            }
        };
        let ratio = if ratios.is_empty() {
            "—".to_owned()
        } else {
            format!(
                "**{:.2}×** ({:.2}–{:.2}×)",
                quantile(&ratios, 0.5),
                quantile(&ratios, 0.1),
                quantile(&ratios, 0.9)
            )
        };
        let _ = writeln!(
            md,
            "| {backend} | {} | {} | {ratio} |",
            cell(&new),
            cell(&old)
        );
    }
    md.push_str("\nGoal: ≤ 1.2× the baseline build.\n\n");
    md
}
