//! The artifact cache bounds itself (issue 28): exact totals, least recently used first, one
//! policy stored and applied by writers, pins (leases and live processes), one collector at a
//! time, the counters in `stats --json`, and network file systems refused. Every test runs the
//! built binary as separate processes; the first four run on both backends.

use std::collections::HashSet;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use crate::common::{BIN, output_with_stdin, stderr};
use crate::conformance::Db;

fn digest(n: usize) -> String {
    format!("sha256:{n:064x}")
}

fn envelope(n: usize, pad: usize) -> String {
    format!(
        r#"{{"type":"Module","version":1,"state":{{"n":{n},"pad":"{}"}}}}"#,
        "x".repeat(pad)
    )
}

#[track_caller]
fn ok(out: Output) -> Output {
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    out
}

fn put(db: &Db, n: usize, pad: usize) -> Output {
    db.run_in(
        &["artifact", "put", &digest(n)],
        envelope(n, pad).as_bytes(),
    )
}

fn cache(db: &Db) -> serde_json::Value {
    db.json(&["stats"])["stats"]["cache"].clone()
}

fn stored(db: &Db) -> HashSet<String> {
    db.json(&["artifact", "ls"])
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["digest"].as_str().unwrap().to_owned())
        .collect()
}

/// A read is a hit with the exact bytes, or a clean miss (exit 3); nothing else.
#[track_caller]
fn clean_read(out: &Output, n: usize, pad: usize) {
    match out.status.code() {
        Some(0) => assert_eq!(String::from_utf8_lossy(&out.stdout), envelope(n, pad)),
        Some(3) => assert!(
            stderr(out).contains("no artifact stored"),
            "{}",
            stderr(out)
        ),
        _ => panic!("a reader saw an error: {:?} {}", out.status, stderr(out)),
    }
}

fn both(test: fn(&Db)) {
    test(&Db::sqlite());
    if let Some(db) = Db::postgres() {
        test(&db);
    }
}

#[test]
fn exactly_the_least_recently_used_go_and_stats_count_it() {
    both(|db| {
        ok(db.run(&["artifact", "policy", "--touch-interval", "0s"]));
        for n in 1..=6 {
            ok(put(db, n, 1000));
            thread::sleep(Duration::from_millis(3));
        }
        // Reading 1 makes it the most recently used; 2 and 3 are then the least.
        ok(db.run(&["artifact", "get", &digest(1)]));
        assert_eq!(
            db.run(&["artifact", "get", &digest(99)]).status.code(),
            Some(3)
        );
        let size = envelope(1, 1000).len();
        let c = cache(db);
        assert_eq!(c["artifacts"], 6);
        assert_eq!(c["bytes"], 6 * size);
        let cap = (4 * size).to_string();
        let dry = db.json(&["artifact", "prune", "--max-size", &cap, "--dry-run"]);
        assert_eq!(dry["dry_run"], true);
        assert_eq!(dry["freed"], 2 * size);
        assert_eq!(db.artifact_count(), 6, "a dry run removed");
        let done = db.json(&["artifact", "prune", "--max-size", &cap]);
        assert_eq!(done["removed"], serde_json::json!([digest(2), digest(3)]));
        assert_eq!(done["evicted"][0]["bytes"], size);
        // A put folds the hit and miss this process... the next write folds the misses too.
        ok(put(db, 7, 10));
        let c = cache(db);
        assert_eq!(c["bytes"], 4 * size + envelope(7, 10).len());
        assert_eq!(c["evictions"], 2);
        assert_eq!(c["evicted_bytes"], 2 * size);
        assert_eq!(c["collections"], 1);
        assert_eq!(c["last_collection_removed"], 2);
        assert_eq!(c["last_collection_freed"], 2 * size);
        assert!(c["last_collection_at"].is_string(), "{c}");
        assert!(c["hits"].as_u64().unwrap() >= 1, "{c}");
        // Leases: counted with their bytes, never removed, released by unpin.
        ok(db.run(&["artifact", "pin", &digest(4)]));
        ok(db.run(&["artifact", "pin", &digest(5), "--for", "1h"]));
        let c = cache(db);
        assert_eq!(c["pinned"], 2);
        assert_eq!(c["pinned_bytes"], 2 * size);
        let done = db.json(&["artifact", "prune", "--max-size", "0"]);
        assert_eq!(done["kept_pinned"], 2);
        assert_eq!(
            stored(db),
            HashSet::from([digest(4), digest(5)]),
            "pinned artifacts went"
        );
        ok(db.run(&["artifact", "unpin", &digest(4)]));
        assert_eq!(
            db.run(&["artifact", "unpin", &digest(4)]).status.code(),
            Some(3)
        );
        ok(db.run(&["artifact", "prune", "--max-size", "0"]));
        assert_eq!(stored(db), HashSet::from([digest(5)]));
        // A pin of something not stored is a clean miss.
        assert_eq!(
            db.run(&["artifact", "pin", &digest(1)]).status.code(),
            Some(3)
        );
    });
}

#[test]
fn eight_writers_readers_and_a_resolve_end_under_the_cap_with_pins_kept() {
    both(|db| {
        let pad = 1000;
        let cap: usize = 40_000;
        ok(db.run(&["artifact", "policy", "--touch-interval", "0s"]));
        // A leased one and one a live process pins, both older than everything else.
        ok(put(db, 1, pad));
        ok(db.run(&["artifact", "pin", &digest(1)]));
        ok(put(db, 2, pad));
        let mut holder = db
            .cmd()
            .args([
                "lock",
                "run",
                "--shared",
                &format!("artifact-pin:{}", digest(2)),
            ])
            .args(["--", "sleep", "60"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        // Wait until the holder holds it (a retry loop, not a timed assertion).
        while !String::from_utf8_lossy(&db.run(&["lock", "status"]).stdout)
            .contains(&format!("artifact-pin:{}", digest(2)))
            && db.is_postgres()
        {
            thread::sleep(Duration::from_millis(20));
        }
        if !db.is_postgres() {
            thread::sleep(Duration::from_millis(300));
        }
        // Never read again: the least recently used.
        for n in 10..15 {
            ok(put(db, n, pad));
        }
        ok(db.run(&["artifact", "policy", "--max-size", &cap.to_string()]));
        let done = AtomicBool::new(false);
        thread::scope(|s| {
            let writers: Vec<_> = (0..8)
                .map(|w| {
                    s.spawn(move || {
                        for i in 0..12 {
                            ok(put(db, 1000 + w * 100 + i, pad));
                        }
                    })
                })
                .collect();
            let readers: Vec<_> = (0..2)
                .map(|r| {
                    let done = &done;
                    s.spawn(move || {
                        let mut i = 0;
                        while !done.load(Ordering::Relaxed) {
                            let n = [1, 2, 3, 1000 + (i % 8) * 100 + r][i % 4];
                            clean_read(&db.run(&["artifact", "get", &digest(n)]), n, pad);
                            i += 1;
                        }
                    })
                })
                .collect();
            let resolve = s.spawn(|| {
                let script = format!("sleep 0.3; printf '%s' '{}'", envelope(500, pad));
                db.run(&[
                    "artifact",
                    "resolve",
                    &digest(500),
                    "--",
                    "sh",
                    "-c",
                    &script,
                ])
            });
            for w in writers {
                w.join().unwrap();
            }
            let out = ok(resolve.join().unwrap());
            let printed = String::from_utf8_lossy(&out.stdout);
            assert!(printed.contains(&"x".repeat(pad)), "{printed}");
            done.store(true, Ordering::Relaxed);
            for r in readers {
                r.join().unwrap();
            }
        });
        let c = cache(db);
        assert!(
            c["bytes"].as_u64().unwrap() <= cap as u64,
            "over the cap: {c}"
        );
        assert!(c["collections"].as_u64().unwrap() >= 1, "{c}");
        let left = stored(db);
        assert!(left.contains(&digest(1)), "the leased artifact went");
        assert!(
            left.contains(&digest(2)),
            "the artifact a live process pins went"
        );
        for n in 10..15 {
            assert!(
                !left.contains(&digest(n)),
                "{n}, least recently used, stayed"
            );
        }
        // The holder dies: its pin goes with it.
        holder.kill().unwrap();
        holder.wait().unwrap();
        let mut tries = 0;
        loop {
            ok(db.run(&["artifact", "prune", "--max-size", "0"]));
            let left = stored(db);
            if !left.contains(&digest(2)) {
                assert_eq!(left, HashSet::from([digest(1)]));
                break;
            }
            // A server notices a dead client's session a moment later.
            tries += 1;
            assert!(tries < 200, "a dead process's pin was never released");
            thread::sleep(Duration::from_millis(50));
        }
    });
}

#[test]
fn ten_processes_crossing_the_cap_at_once_make_one_collection() {
    both(|db| {
        let mut lines = String::new();
        for n in 1..=90 {
            lines.push_str(&format!(
                "{{\"digest\":\"{}\",\"state\":{}}}\n",
                digest(n),
                envelope(n, 1000)
            ));
        }
        ok(db.run_in(&["artifact", "put-many", "-"], lines.as_bytes()));
        let bytes = cache(db)["bytes"].as_u64().unwrap();
        let cap = bytes + 300;
        ok(db.run(&["artifact", "policy", "--max-size", &cap.to_string()]));
        let children: Vec<_> = (0..10)
            .map(|i| {
                let mut cmd = db.cmd();
                cmd.args(["artifact", "put", &digest(500 + i), "-"])
                    .stdin(Stdio::piped())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped());
                cmd.spawn().unwrap()
            })
            .collect();
        // All ten started before any gets its input: they cross the cap together.
        let outs: Vec<_> = children
            .into_iter()
            .enumerate()
            .map(|(i, mut child)| {
                use std::io::Write;
                child
                    .stdin
                    .take()
                    .unwrap()
                    .write_all(envelope(500 + i, 500).as_bytes())
                    .unwrap();
                child
            })
            .collect();
        for child in outs {
            ok(child.wait_with_output().unwrap());
        }
        let c = cache(db);
        assert_eq!(c["collections"], 1, "{c}");
        assert!(c["bytes"].as_u64().unwrap() <= cap, "{c}");
    });
}

#[test]
fn the_stored_policy_keeps_a_long_put_loop_under_the_cap_with_reads_going_on() {
    both(|db| {
        let cap = 20_000u64;
        ok(db.run(&[
            "artifact",
            "policy",
            "--max-size",
            "20KB",
            "--touch-interval",
            "0s",
        ]));
        let done = AtomicBool::new(false);
        thread::scope(|s| {
            let reader = s.spawn(|| {
                let mut i = 0;
                while !done.load(Ordering::Relaxed) {
                    let n = i % 60;
                    clean_read(&db.run(&["artifact", "get", &digest(n)]), n, 900);
                    i += 1;
                }
            });
            for n in 0..60 {
                ok(put(db, n, 900));
                if n % 6 == 5 {
                    let c = cache(db);
                    assert!(c["bytes"].as_u64().unwrap() <= cap, "after put {n}: {c}");
                }
            }
            done.store(true, Ordering::Relaxed);
            reader.join().unwrap();
        });
        let c = cache(db);
        assert!(c["bytes"].as_u64().unwrap() <= cap, "{c}");
        assert!(c["evictions"].as_u64().unwrap() > 0, "{c}");
        assert_eq!(
            c["bytes"].as_u64().unwrap(),
            db.json(&["artifact", "ls"])
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["bytes"].as_u64().unwrap())
                .sum::<u64>(),
            "the totals are not exact"
        );
    });
}

#[test]
fn a_store_on_a_network_file_system_is_refused_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    let run = |allow: bool| {
        let mut cmd = Command::new(BIN);
        cmd.env_remove("MODSTATE_DB")
            .env("MODSTATE_TEST_FS_TYPE", "0x6969")
            .arg("--db")
            .arg(&db)
            .args(["artifact", "put", &digest(1)]);
        if allow {
            cmd.env("MODSTATE_ALLOW_NETWORK_FS", "1");
        }
        output_with_stdin(&mut cmd, envelope(1, 1).as_bytes())
    };
    let out = run(false);
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("(NFS)") && err.contains("PostgreSQL"), "{err}");
    assert!(!db.exists(), "a refused store was created");
    ok(run(true));
    assert!(db.exists());
}
