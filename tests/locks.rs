//! Locks as SQLite's lock directory implements them: hostile keys stay inside the directory,
//! in-process acquisitions, the holder records in the lock files, a reader without write
//! access. Lock behaviour that any backend must share is in `conformance/locks.rs`.

use crate::common::{BIN, code, stderr};
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use modstate::Error;
use modstate::lock::{LockDir, Mode};

fn modstate(db: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("--db").arg(db);
    cmd
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
