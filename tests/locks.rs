//! Cross-process locks with real processes: mutual exclusion per key, no serialization across
//! keys, global vs keyed, SIGKILLed holders, single-flight resolve, hostile keys, timeouts.

use crate::common::{BIN, code, stderr};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use modstate::Error;
use modstate::lock::{LockDir, Mode};

fn modstate(db: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("--db").arg(db);
    cmd
}

/// `lock run <args> -- sh -c <critical section>` that appends `id start <ns>` / `id end <ns>`
/// to `log` around a sleep.
fn hold(db: &Path, lock_args: &[&str], id: &str, sleep: &str, log: &Path) -> Child {
    let script = format!(
        "echo \"{id} start $(date +%s%N)\" >> '{log}'; sleep {sleep}; echo \"{id} end $(date +%s%N)\" >> '{log}'",
        log = log.display()
    );
    modstate(db)
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
fn wait_for_state(db: &Path, name: &str, state: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let out = modstate(db)
            .args(["--json", "lock", "status"])
            .output()
            .unwrap();
        // Exit 3 until the first lock creates the lock directory.
        let rows: Vec<serde_json::Value> = if code(&out) == 0 {
            serde_json::from_slice(&out.stdout).unwrap()
        } else {
            Vec::new()
        };
        if rows
            .iter()
            .any(|r| r["name"] == name && r["state"] == state)
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{name} never became {state}");
}

fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    let log = dir.path().join("stamps.log");
    (dir, db, log)
}

#[test]
fn same_key_never_overlaps() {
    let (_dir, db, log) = setup();
    let children = (0..3)
        .map(|i| hold(&db, &["k"], &format!("p{i}"), "0.3", &log))
        .collect();
    wait_all(children);
    let spans: Vec<(u128, u128)> = intervals(&log).into_values().collect();
    assert_eq!(spans.len(), 3);
    for (i, a) in spans.iter().enumerate() {
        for b in &spans[i + 1..] {
            assert!(
                a.1 <= b.0 || b.1 <= a.0,
                "critical sections overlap: {a:?} {b:?}"
            );
        }
    }
}

#[test]
fn different_keys_run_in_parallel() {
    let (_dir, db, log) = setup();
    let started = Instant::now();
    let children = (0..4)
        .map(|i| hold(&db, &[&format!("key-{i}")], &format!("p{i}"), "1", &log))
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

#[test]
fn global_exclusive_waits_for_keyed_and_keeps_new_keyed_out() {
    let (_dir, db, log) = setup();
    let keyed = hold(&db, &["k"], "keyed1", "1", &log);
    wait_for_state(&db, "k", "held");
    let global = hold(&db, &["--global"], "global", "1", &log);
    wait_for_state(&db, "global", "held");
    let late = hold(&db, &["other"], "keyed2", "0.1", &log);
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

#[test]
fn sigkilled_holder_frees_the_lock_at_once() {
    let (_dir, db, _log) = setup();
    let mut holder = modstate(&db)
        .args(["lock", "run", "k", "--", "sleep", "30"])
        .process_group(0)
        .spawn()
        .unwrap();
    wait_for_state(&db, "k", "held");
    let pgid = holder.id() as i32;
    holder.kill().unwrap(); // SIGKILL, the holder only; its child sleeps on
    holder.wait().unwrap();

    let started = Instant::now();
    let out = modstate(&db)
        .args(["--lock-timeout", "5", "lock", "run", "k", "--", "true"])
        .output()
        .unwrap();
    let waited = started.elapsed();
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        waited < Duration::from_secs(1),
        "took {waited:?}: no reclaim delay expected"
    );
    assert!(!stderr(&out).contains("Blocking"), "{}", stderr(&out));
    eprintln!("lock after SIGKILL of its holder taken in {waited:?}");
}

#[test]
fn timeout_names_the_holder() {
    let (_dir, db, _log) = setup();
    let mut holder = modstate(&db)
        .args(["lock", "run", "k", "--", "sleep", "5"])
        .spawn()
        .unwrap();
    wait_for_state(&db, "k", "held");
    let started = Instant::now();
    let out = modstate(&db)
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

#[test]
fn a_waiter_says_what_it_waits_for() {
    let (_dir, db, _log) = setup();
    let mut holder = modstate(&db)
        .args(["lock", "run", "k", "--", "sleep", "2"])
        .spawn()
        .unwrap();
    wait_for_state(&db, "k", "held");
    let out = modstate(&db)
        .args(["--lock-timeout", "20", "lock", "run", "k", "--", "true"])
        .output()
        .unwrap();
    holder.wait().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let line = format!(
        "Blocking waiting for lock on k (held by pid {}:",
        holder.id()
    );
    assert!(stderr(&out).contains(&line), "{}", stderr(&out));
}

#[test]
fn lock_run_passes_the_exit_code_through() {
    let (_dir, db, _log) = setup();
    let out = modstate(&db)
        .args(["lock", "run", "k", "--", "sh", "-c", "exit 42"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 42);
    let out = modstate(&db)
        .args(["lock", "run", "--global", "--", "sh", "-c", "exit 3"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 3);
    let out = modstate(&db)
        .args(["lock", "run", "k", "--shared", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0);
}

#[test]
fn shared_holders_coexist() {
    let (_dir, db, log) = setup();
    let children = (0..3)
        .map(|i| hold(&db, &["k", "--shared"], &format!("p{i}"), "1", &log))
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

/// Every file under `root`, relative.
fn tree(root: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            out.insert(p.strip_prefix(root).unwrap().to_path_buf());
            if p.is_dir() && !p.is_symlink() {
                stack.push(p);
            }
        }
    }
    out
}

#[test]
fn no_key_reaches_outside_the_lock_directory() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db").join("state.db");
    let long = "k".repeat(1024);
    let keys = [
        "../../etc/passwd",
        "a/b",
        "",
        long.as_str(),
        "ключ",
        "鍵/..",
        "..",
        "/",
        "C:\\x",
        "tab\there\nnewline",
    ];
    for key in keys {
        let out = modstate(&db)
            .args(["lock", "run", key, "--", "true"])
            .output()
            .unwrap();
        assert_eq!(code(&out), 0, "{key:?}: {}", stderr(&out));
    }
    for p in tree(dir.path()) {
        let s = p.to_string_lossy();
        assert!(
            s == "db" || s == "db/state.db.locks" || s.starts_with("db/state.db.locks/"),
            "unexpected {s}"
        );
        if let Some(name) = s.strip_prefix("db/state.db.locks/") {
            assert!(
                name == "global" || (name.starts_with("key-") && name.len() == 68),
                "{name}"
            );
        }
    }
    // Status names the keys as recorded.
    let out = modstate(&db)
        .args(["--json", "lock", "status"])
        .output()
        .unwrap();
    let names: BTreeSet<String> = serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout)
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_owned())
        .collect();
    for key in keys {
        assert!(names.contains(key), "{key:?} missing from {names:?}");
    }
    // A key over 1 KiB is refused.
    let out = modstate(&db)
        .args(["lock", "run", &"k".repeat(1025), "--", "true"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 6, "{}", stderr(&out));
}

#[test]
fn resolve_computes_once_across_eight_processes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    let counter = dir.path().join("counter");
    let digest = format!("sha256:{}", "c".repeat(64));
    let script = format!(
        "echo run >> '{}'; sleep 1; printf '%s' '{{\"type\":\"Module\",\"version\":1,\"state\":{{\"n\":1}}}}'",
        counter.display()
    );
    assert_eq!(code(&modstate(&db).arg("init").output().unwrap()), 0);
    let barrier = Arc::new(Barrier::new(8));
    let started = Instant::now();
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let mut cmd = modstate(&db);
            cmd.args(["artifact", "resolve", &digest, "--", "sh", "-c", &script]);
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                cmd.output().unwrap()
            })
        })
        .collect();
    let outs: Vec<Output> = workers.into_iter().map(|w| w.join().unwrap()).collect();
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
    let out = modstate(&db)
        .args(["artifact", "resolve", &d2, "--", "false"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 1);
    let out = modstate(&db)
        .args(["artifact", "get", &d2])
        .output()
        .unwrap();
    assert_eq!(code(&out), 3);
    let out = modstate(&db)
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

#[test]
fn in_process_acquisitions_conflict_like_processes() {
    let dir = tempfile::tempdir().unwrap();
    let locks = LockDir::new(&dir.path().join("state.db"), Duration::from_millis(200));
    let held = locks.keyed(&["k"], Mode::Exclusive).unwrap();
    match locks.keyed(&["k"], Mode::Exclusive) {
        Err(Error::Busy(msg)) => assert!(msg.contains("lock on k"), "{msg}"),
        other => panic!("expected Busy, got {other:?}"),
    }
    // A NUL byte cannot travel in argv, but is a fine key in the library.
    drop(locks.keyed(&["nul\0key"], Mode::Exclusive).unwrap());
    // Other keys are free; duplicates in one request are taken once.
    let other = locks.keyed(&["b", "a", "b"], Mode::Exclusive).unwrap();
    drop(held);
    let again = locks.keyed(&["k"], Mode::Exclusive).unwrap();
    drop((other, again));
    // Global exclusive waits for keyed holders to leave.
    let keyed = locks.keyed(&["k"], Mode::Shared).unwrap();
    assert!(matches!(locks.global(Mode::Exclusive), Err(Error::Busy(_))));
    drop(keyed);
    let global = locks.global(Mode::Exclusive).unwrap();
    assert!(matches!(
        locks.keyed(&["k"], Mode::Exclusive),
        Err(Error::Busy(_))
    ));
    drop(global);
    locks.keyed(&["k"], Mode::Exclusive).unwrap();
}

#[test]
fn get_or_compute_panicking_compute_stores_nothing_and_releases() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        modstate::Store::open(dir.path().join("state.db"), modstate::Options::default()).unwrap();
    let digest = modstate::Digest::of(b"source");
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = store.get_or_compute(&digest, || panic!("generator crashed"));
    }));
    assert!(result.is_err());
    assert!(!store.contains(&digest).unwrap());
    let quick = LockDir::new(store.canonical_path(), Duration::from_millis(100));
    drop(quick.keyed(&[digest.as_str()], Mode::Exclusive).unwrap());
    let (env, served) = store
        .get_or_compute(&digest, || {
            store.envelope(br#"{"type":"Module","version":1,"state":{}}"#.to_vec())
        })
        .unwrap();
    assert_eq!(served, modstate::artifact::Served::Computed);
    assert_eq!(store.get(&digest).unwrap(), Some(env));
    let (_, served) = store.get_or_compute(&digest, || unreachable!()).unwrap();
    assert_eq!(served, modstate::artifact::Served::Store);
}

/// Nanoseconds since the epoch written in `path` by `date +%s%N`.
fn stamp(path: &Path) -> u128 {
    fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .parse()
        .unwrap()
}

/// Signals `lock run` itself (not its command) while the command runs, and proves with time
/// stamps that the next holder started only after the command had ended, and that `lock run`
/// exited with the command's code.
fn lock_run_holds_through(signal: libc::c_int) {
    let (dir, db, _log) = setup();
    let ended = dir.path().join("ended");
    let started = dir.path().join("started");
    // The command traps the forwarded signal, works on for half a second, then exits 7.
    let script = format!(
        "trap 'sleep 0.5; date +%s%N > \"{}\"; exit 7' INT TERM HUP; sleep 30",
        ended.display()
    );
    let mut holder = modstate(&db)
        .args(["lock", "run", "nightly", "--", "sh", "-c", &script])
        .spawn()
        .unwrap();
    wait_for_state(&db, "nightly", "held");
    std::thread::sleep(Duration::from_millis(200)); // let sh install its trap
    let waiter = modstate(&db)
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

#[test]
fn lock_run_keeps_the_lock_until_its_command_exits_on_sigterm() {
    lock_run_holds_through(libc::SIGTERM);
}

#[test]
fn lock_run_keeps_the_lock_until_its_command_exits_on_sigint() {
    lock_run_holds_through(libc::SIGINT);
}

#[test]
fn lock_run_keeps_the_lock_until_its_command_exits_on_sighup() {
    lock_run_holds_through(libc::SIGHUP);
}

#[test]
fn lock_run_reports_a_command_killed_by_the_forwarded_signal_as_128_plus_n() {
    let (_dir, db, _log) = setup();
    let mut holder = modstate(&db)
        .args(["lock", "run", "k", "--", "sleep", "30"])
        .spawn()
        .unwrap();
    wait_for_state(&db, "k", "held");
    unsafe { libc::kill(holder.id() as i32, libc::SIGTERM) };
    let status = holder.wait().unwrap();
    assert_eq!(status.code(), Some(128 + libc::SIGTERM));
    // The command is gone with it: nothing holds the key any more.
    wait_for_state(&db, "k", "free");
}

#[test]
fn lock_run_exits_127_for_a_missing_command_and_126_for_one_not_executable() {
    let (dir, db, _log) = setup();
    let missing = modstate(&db)
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

    let plain = dir.path().join("not-executable.sh");
    fs::write(&plain, "#!/bin/sh\necho hi\n").unwrap();
    let denied = modstate(&db)
        .args(["lock", "run", "k", "--"])
        .arg(&plain)
        .output()
        .unwrap();
    assert_eq!(code(&denied), 126, "{}", stderr(&denied));

    let resolve = modstate(&db)
        .args(["artifact", "resolve", &format!("sha256:{}", "d".repeat(64))])
        .args(["--", "/nonexistent/modstate-test-command"])
        .output()
        .unwrap();
    assert_eq!(code(&resolve), 127, "{}", stderr(&resolve));
}

#[test]
fn resolve_keeps_the_key_until_its_interrupted_compute_exits() {
    let (dir, db, _log) = setup();
    let runs = dir.path().join("runs");
    let digest = format!("sha256:{}", "e".repeat(64));
    // The first compute traps the signal, finishes its work anyway and prints the envelope.
    let script = format!(
        "echo run >> \"{}\"; trap 'sleep 0.5; printf %s \"{{\\\"type\\\":\\\"Module\\\",\\\"version\\\":1,\\\"state\\\":{{}}}}\"; exit 0' INT TERM; sleep 30",
        runs.display()
    );
    let mut first = modstate(&db)
        .args(["artifact", "resolve", &digest, "--", "sh", "-c", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_state(&db, &digest, "held");
    std::thread::sleep(Duration::from_millis(200));
    let second = modstate(&db)
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

#[test]
fn a_timeout_names_the_live_shared_holders_never_a_dead_exclusive_one() {
    let (_dir, db, _log) = setup();
    // An exclusive holder of `global` comes and goes, leaving its record in the file.
    let past = modstate(&db)
        .args(["lock", "run", "--global", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(code(&past), 0, "{}", stderr(&past));
    // Keyed work now holds `global` shared.
    let mut keyed = modstate(&db)
        .args(["lock", "run", "k", "--", "sleep", "10"])
        .spawn()
        .unwrap();
    wait_for_state(&db, "k", "held");
    let out = modstate(&db)
        .args([
            "--lock-timeout",
            "0.5",
            "lock",
            "run",
            "--global",
            "--",
            "true",
        ])
        .output()
        .unwrap();
    let status = modstate(&db)
        .args(["--json", "lock", "status"])
        .output()
        .unwrap();
    unsafe { libc::kill(keyed.id() as i32, libc::SIGTERM) };
    keyed.wait().unwrap();
    assert_eq!(code(&out), 5, "{}", stderr(&out));
    let message = stderr(&out);
    let past_pid = {
        // The dead holder's pid is in the global file's record.
        let record = fs::read_to_string(format!("{}.locks/global", db.display())).unwrap();
        let v: serde_json::Value = serde_json::from_str(record.trim()).unwrap();
        v["pid"].as_u64().unwrap()
    };
    assert!(
        !message.contains(&format!("pid {past_pid}:")),
        "names the dead holder: {message}"
    );
    assert!(
        message.contains(&format!("held shared by 1 process: pid {}", keyed.id())),
        "{message}"
    );
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&status.stdout).unwrap();
    let global = rows.iter().find(|r| r["name"] == "global").unwrap();
    assert_eq!(global["state"], "shared");
    assert_eq!(global["holders"][0]["pid"], keyed.id());
}

#[test]
fn lock_status_shows_every_lock_to_a_reader_without_write_access() {
    let (dir, db, _log) = setup();
    assert_eq!(code(&modstate(&db).arg("init").output().unwrap()), 0);
    let mut holder = modstate(&db)
        .args(["lock", "run", "k", "--", "sleep", "10"])
        .spawn()
        .unwrap();
    wait_for_state(&db, "k", "held");
    // Readable by everyone, writable by nobody but the owner.
    use std::os::unix::fs::PermissionsExt;
    for entry in walk_all(dir.path()) {
        let mode = if entry.is_dir() { 0o755 } else { 0o644 };
        fs::set_permissions(&entry, fs::Permissions::from_mode(mode)).unwrap();
    }
    let mut cmd = modstate(&db);
    cmd.args(["--json", "lock", "status"]);
    let out = crate::common::as_nobody(&mut cmd).output().unwrap();
    unsafe { libc::kill(holder.id() as i32, libc::SIGTERM) };
    holder.wait().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let names: BTreeSet<&str> = rows.iter().filter_map(|r| r["name"].as_str()).collect();
    assert!(names.contains("write"), "{rows:?}");
    assert!(names.contains("global"), "{rows:?}");
    let k = rows.iter().find(|r| r["name"] == "k").expect("key row");
    assert_eq!(k["state"], "held");
}

fn walk_all(root: &Path) -> Vec<PathBuf> {
    let mut out = vec![root.to_path_buf()];
    if root.is_dir() {
        for entry in fs::read_dir(root).unwrap() {
            out.extend(walk_all(&entry.unwrap().path()));
        }
    }
    out
}
