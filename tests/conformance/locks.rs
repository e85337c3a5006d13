//! Keyed and global locks with real processes on any backend: mutual exclusion per key (eight
//! contenders), no serialization across keys, global vs keyed, shared holders, a SIGKILLed
//! holder, timeouts naming the holder, `lock run`'s exit codes and signals, and single-flight
//! `artifact resolve` across eight processes.

use super::Db;
use crate::common::{code, stderr};
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::sync::Barrier;
use std::time::{Duration, Instant};

/// `lock run <args> -- sh -c <critical section>` that appends `id start <ns>` / `id end <ns>`
/// to `log` around a sleep.
fn hold(db: &Db, lock_args: &[&str], id: &str, sleep: &str, log: &Path) -> Child {
    let script = format!(
        "echo \"{id} start $(date +%s%N)\" >> '{log}'; sleep {sleep}; echo \"{id} end $(date +%s%N)\" >> '{log}'",
        log = log.display()
    );
    db.cmd()
        .args(["lock", "run"])
        .args(lock_args)
        .args(["--", "sh", "-c", &script])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Intervals `id -> (start, end)` in nanoseconds, read from a stamp log.
fn intervals(log: &Path) -> BTreeMap<String, (u128, u128)> {
    let mut starts = BTreeMap::new();
    let mut out = BTreeMap::new();
    for line in fs::read_to_string(log).unwrap().lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let t: u128 = parts[2].parse().unwrap();
        match parts[1] {
            "start" => {
                starts.insert(parts[0].to_owned(), t);
            }
            _ => {
                out.insert(parts[0].to_owned(), (starts[parts[0]], t));
            }
        }
    }
    out
}

fn wait_all(children: Vec<Child>) {
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert_eq!(code(&out), 0, "{}", stderr(&out));
    }
}

/// Polls `lock status` until `name` shows `state`.
pub fn wait_for_state(db: &Db, name: &str, state: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let out = db
            .cmd()
            .args(["--json", "lock", "status"])
            .output()
            .unwrap();
        // Exit 3 until the first lock creates the store (or its lock directory).
        let rows: Vec<serde_json::Value> = if code(&out) == 0 {
            serde_json::from_slice(&out.stdout).unwrap()
        } else {
            Vec::new()
        };
        let shown = rows.iter().find(|r| r["name"] == name);
        // A server backend lists only held locks: a lock it does not list is free.
        if shown.map_or(state == "free" && code(&out) == 0, |r| r["state"] == state) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{name} never became {state}");
}

/// Nanoseconds since the epoch written in `path` by `date +%s%N`.
fn stamp(path: &Path) -> u128 {
    fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .parse()
        .unwrap()
}

/// Eight processes contend for one key; no two critical sections overlap.
pub fn same_key_never_overlaps(db: &Db) {
    let log = db.dir().join("stamps.log");
    let children = (0..8)
        .map(|i| hold(db, &["k"], &format!("p{i}"), "0.2", &log))
        .collect();
    wait_all(children);
    let spans: Vec<(u128, u128)> = intervals(&log).into_values().collect();
    assert_eq!(spans.len(), 8);
    for (i, a) in spans.iter().enumerate() {
        for b in &spans[i + 1..] {
            assert!(
                a.1 <= b.0 || b.1 <= a.0,
                "critical sections overlap: {a:?} {b:?}"
            );
        }
    }
}

pub fn different_keys_run_in_parallel(db: &Db) {
    let log = db.dir().join("stamps.log");
    let started = Instant::now();
    let children = (0..4)
        .map(|i| hold(db, &[&format!("key-{i}")], &format!("p{i}"), "1", &log))
        .collect();
    wait_all(children);
    let elapsed = started.elapsed();
    let spans: Vec<(u128, u128)> = intervals(&log).into_values().collect();
    // All four held at the same moment: the latest start precedes the earliest end.
    let latest_start = spans.iter().map(|s| s.0).max().unwrap();
    let earliest_end = spans.iter().map(|s| s.1).min().unwrap();
    assert!(
        latest_start < earliest_end,
        "keyed work was serialized: {spans:?}"
    );
    eprintln!("four 1 s holds on different keys took {elapsed:?}");
}

pub fn global_exclusive_waits_for_keyed_and_keeps_new_keyed_out(db: &Db) {
    let log = db.dir().join("stamps.log");
    let keyed = hold(db, &["k"], "keyed1", "1", &log);
    wait_for_state(db, "k", "held");
    let global = hold(db, &["--global"], "global", "1", &log);
    wait_for_state(db, "global", "held");
    let late = hold(db, &["other"], "keyed2", "0.1", &log);
    wait_all(vec![keyed, global, late]);
    let spans = intervals(&log);
    let (k1, g, k2) = (spans["keyed1"], spans["global"], spans["keyed2"]);
    assert!(
        k1.1 <= g.0,
        "global started before the keyed holder ended: {k1:?} {g:?}"
    );
    assert!(
        g.1 <= k2.0,
        "a keyed holder got in during the global hold: {g:?} {k2:?}"
    );
}

pub fn sigkilled_holder_frees_the_lock_at_once(db: &Db) {
    let mut holder = db
        .cmd()
        .args(["lock", "run", "k", "--", "sleep", "30"])
        .process_group(0)
        .spawn()
        .unwrap();
    wait_for_state(db, "k", "held");
    let pgid = holder.id() as i32;
    holder.kill().unwrap(); // SIGKILL, the holder only; its child sleeps on
    holder.wait().unwrap();

    let started = Instant::now();
    // On PostgreSQL the server cannot tell a killed holder from a lost session (a restart, a
    // network cut), so the key waits out the holder's lease (lock-delay, at most 10 s): the
    // lock timeout is the documented bound with a margin.
    let timeout = if db.is_postgres() { "15" } else { "5" };
    let out = db
        .cmd()
        .args(["--lock-timeout", timeout, "lock", "run", "k", "--", "true"])
        .output()
        .unwrap();
    let waited = started.elapsed();
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    if db.is_postgres() {
        assert!(stderr(&out).contains("lease runs out"), "{}", stderr(&out));
    } else {
        assert!(
            waited < Duration::from_secs(1),
            "took {waited:?}: no reclaim delay expected"
        );
        assert!(!stderr(&out).contains("Blocking"), "{}", stderr(&out));
    }
    eprintln!("lock after SIGKILL of its holder taken in {waited:?}");
}

pub fn timeout_names_the_holder(db: &Db) {
    let mut holder = db
        .cmd()
        .args(["lock", "run", "k", "--", "sleep", "5"])
        .spawn()
        .unwrap();
    wait_for_state(db, "k", "held");
    let started = Instant::now();
    let out = db
        .cmd()
        .args(["--lock-timeout", "1", "lock", "run", "k", "--", "true"])
        .output()
        .unwrap();
    let waited = started.elapsed();
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert_eq!(code(&out), 5, "{}", stderr(&out));
    assert!(
        waited >= Duration::from_millis(900),
        "gave up too early: {waited:?}"
    );
    assert!(
        stderr(&out).contains(&format!("held by pid {}", holder.id())),
        "{}",
        stderr(&out)
    );
}

pub fn a_waiter_says_what_it_waits_for(db: &Db) {
    let mut holder = db
        .cmd()
        .args(["lock", "run", "k", "--", "sleep", "2"])
        .spawn()
        .unwrap();
    wait_for_state(db, "k", "held");
    let out = db
        .cmd()
        .args(["--lock-timeout", "20", "lock", "run", "k", "--", "true"])
        .output()
        .unwrap();
    holder.wait().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    // A server backend also names the holder's host: `pid N on HOST:`.
    let line = format!(
        "Blocking waiting for lock on k (held by pid {}",
        holder.id()
    );
    let said = stderr(&out);
    let rest = said.split_once(&line).map(|(_, rest)| rest);
    assert!(
        rest.is_some_and(|r| r.starts_with(':') || r.starts_with(" on ")),
        "{said}"
    );
}

pub fn lock_run_passes_the_exit_code_through(db: &Db) {
    let out = db
        .cmd()
        .args(["lock", "run", "k", "--", "sh", "-c", "exit 42"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 42);
    let out = db
        .cmd()
        .args(["lock", "run", "--global", "--", "sh", "-c", "exit 3"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 3);
    let out = db
        .cmd()
        .args(["lock", "run", "k", "--shared", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0);
}

pub fn shared_holders_coexist(db: &Db) {
    let log = db.dir().join("stamps.log");
    let children = (0..3)
        .map(|i| hold(db, &["k", "--shared"], &format!("p{i}"), "1", &log))
        .collect();
    wait_all(children);
    let spans: Vec<(u128, u128)> = intervals(&log).into_values().collect();
    let latest_start = spans.iter().map(|s| s.0).max().unwrap();
    let earliest_end = spans.iter().map(|s| s.1).min().unwrap();
    assert!(
        latest_start < earliest_end,
        "shared holders were serialized: {spans:?}"
    );
}

pub fn resolve_computes_once_across_eight_processes(db: &Db) {
    let counter = db.dir().join("counter");
    let digest = format!("sha256:{}", "c".repeat(64));
    let script = format!(
        "echo run >> '{}'; sleep 1; printf '%s' '{{\"type\":\"Module\",\"version\":1,\"state\":{{\"n\":1}}}}'",
        counter.display()
    );
    assert_eq!(code(&db.cmd().arg("init").output().unwrap()), 0);
    let barrier = Barrier::new(8);
    let started = Instant::now();
    let outs: Vec<Output> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..8)
            .map(|_| {
                let mut cmd = db.cmd();
                cmd.args(["artifact", "resolve", &digest, "--", "sh", "-c", &script]);
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    cmd.output().unwrap()
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let elapsed = started.elapsed();
    let mut served = BTreeMap::new();
    for out in &outs {
        assert_eq!(code(out), 0, "{}", stderr(out));
        assert_eq!(
            out.stdout,
            b"{\"type\":\"Module\",\"version\":1,\"state\":{\"n\":1}}\n"
        );
        let word = stderr(out)
            .split_whitespace()
            .last()
            .unwrap_or_default()
            .to_owned();
        *served.entry(word).or_insert(0) += 1;
    }
    assert_eq!(
        fs::read_to_string(&counter).unwrap(),
        "run\n",
        "computed exactly once"
    );
    assert_eq!(served.get("computed"), Some(&1), "{served:?}");
    eprintln!("8 concurrent resolves took {elapsed:?}: {served:?}");

    // A failing compute stores nothing and frees the lock for the next try.
    let d2 = format!("sha256:{}", "d".repeat(64));
    let out = db
        .cmd()
        .args(["artifact", "resolve", &d2, "--", "false"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 1);
    let out = db.cmd().args(["artifact", "get", &d2]).output().unwrap();
    assert_eq!(code(&out), 3);
    let out = db
        .cmd()
        .args([
            "--lock-timeout",
            "1",
            "artifact",
            "resolve",
            &d2,
            "--",
            "sh",
            "-c",
            "echo not-json",
        ])
        .output()
        .unwrap();
    assert_eq!(code(&out), 6, "{}", stderr(&out));
}

/// Signals `lock run` itself (not its command) while the command runs, and proves with time
/// stamps that the next holder started only after the command had ended, and that `lock run`
/// exited with the command's code.
fn lock_run_holds_through(db: &Db, signal: libc::c_int) {
    let ended = db.dir().join("ended");
    let started = db.dir().join("started");
    // The command traps the forwarded signal, works on for half a second, then exits 7.
    let script = format!(
        "trap 'sleep 0.5; date +%s%N > \"{}\"; exit 7' INT TERM HUP; sleep 30",
        ended.display()
    );
    let mut holder = db
        .cmd()
        .args(["lock", "run", "nightly", "--", "sh", "-c", &script])
        .spawn()
        .unwrap();
    wait_for_state(db, "nightly", "held");
    std::thread::sleep(Duration::from_millis(200)); // let sh install its trap
    let waiter = db
        .cmd()
        .args([
            "--lock-timeout",
            "30",
            "lock",
            "run",
            "nightly",
            "--",
            "sh",
            "-c",
        ])
        .arg(format!("date +%s%N > \"{}\"", started.display()))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    unsafe { libc::kill(holder.id() as i32, signal) };
    let status = holder.wait().unwrap();
    let waiter = waiter.wait_with_output().unwrap();
    assert_eq!(code(&waiter), 0);
    assert_eq!(
        status.code(),
        Some(7),
        "lock run must exit with its command's code after forwarding signal {signal}"
    );
    assert!(
        stamp(&started) > stamp(&ended),
        "the next holder started before the command of the signalled holder ended"
    );
}

pub fn lock_run_keeps_the_lock_until_its_command_exits_on_sigterm(db: &Db) {
    lock_run_holds_through(db, libc::SIGTERM);
}

pub fn lock_run_keeps_the_lock_until_its_command_exits_on_sigint(db: &Db) {
    lock_run_holds_through(db, libc::SIGINT);
}

pub fn lock_run_keeps_the_lock_until_its_command_exits_on_sighup(db: &Db) {
    lock_run_holds_through(db, libc::SIGHUP);
}

pub fn lock_run_reports_a_command_killed_by_the_forwarded_signal_as_128_plus_n(db: &Db) {
    let mut holder = db
        .cmd()
        .args(["lock", "run", "k", "--", "sleep", "30"])
        .spawn()
        .unwrap();
    wait_for_state(db, "k", "held");
    unsafe { libc::kill(holder.id() as i32, libc::SIGTERM) };
    let status = holder.wait().unwrap();
    assert_eq!(status.code(), Some(128 + libc::SIGTERM));
    // The command is gone with it: nothing holds the key any more.
    wait_for_state(db, "k", "free");
}

pub fn lock_run_exits_127_for_a_missing_command_and_126_for_one_not_executable(db: &Db) {
    let missing = db
        .cmd()
        .args([
            "lock",
            "run",
            "k",
            "--",
            "/nonexistent/modstate-test-command",
        ])
        .output()
        .unwrap();
    assert_eq!(code(&missing), 127, "{}", stderr(&missing));
    assert_eq!(stderr(&missing).lines().count(), 1, "{}", stderr(&missing));

    let plain = db.dir().join("not-executable.sh");
    fs::write(&plain, "#!/bin/sh\necho hi\n").unwrap();
    let denied = db
        .cmd()
        .args(["lock", "run", "k", "--"])
        .arg(&plain)
        .output()
        .unwrap();
    assert_eq!(code(&denied), 126, "{}", stderr(&denied));

    let resolve = db
        .cmd()
        .args(["artifact", "resolve", &format!("sha256:{}", "d".repeat(64))])
        .args(["--", "/nonexistent/modstate-test-command"])
        .output()
        .unwrap();
    assert_eq!(code(&resolve), 127, "{}", stderr(&resolve));
}

pub fn resolve_keeps_the_key_until_its_interrupted_compute_exits(db: &Db) {
    let runs = db.dir().join("runs");
    let digest = format!("sha256:{}", "e".repeat(64));
    // The first compute traps the signal, finishes its work anyway and prints the envelope.
    let script = format!(
        "echo run >> \"{}\"; trap 'sleep 0.5; printf %s \"{{\\\"type\\\":\\\"Module\\\",\\\"version\\\":1,\\\"state\\\":{{}}}}\"; exit 0' INT TERM; sleep 30",
        runs.display()
    );
    let mut first = db
        .cmd()
        .args(["artifact", "resolve", &digest, "--", "sh", "-c", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_state(db, &digest, "held");
    std::thread::sleep(Duration::from_millis(200));
    let second = db.cmd()
        .args(["--lock-timeout", "30", "artifact", "resolve", &digest, "--", "sh", "-c"])
        .arg(format!("echo run >> \"{}\"; echo '{{\"type\":\"Module\",\"version\":1,\"state\":{{\"other\":1}}}}'", runs.display()))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    unsafe { libc::kill(first.id() as i32, libc::SIGINT) };
    let status = first.wait().unwrap();
    let second = second.wait_with_output().unwrap();
    assert_eq!(status.code(), Some(0));
    assert_eq!(code(&second), 0, "{}", stderr(&second));
    assert!(
        stderr(&second).contains("from store"),
        "{}",
        stderr(&second)
    );
    assert_eq!(
        fs::read_to_string(&runs).unwrap().lines().count(),
        1,
        "the waiter computed again while the first compute still ran"
    );
}
