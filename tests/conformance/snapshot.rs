//! Snapshots on any backend: `snapshot export` writes the portable SQLite snapshot file,
//! `snapshot verify` accepts it, `snapshot restore` brings back exactly what was exported (into
//! the same store or a fresh one), and a corrupted or newer snapshot is refused and changes
//! nothing.

use super::Db;
use rusqlite::Connection;
use serde_json::Value;
use std::fs;
use std::process::Output;

const MARKER: &str = "UNIQUE-MARKER-5d1e0c";

fn digest(label: &str) -> String {
    modstate::Digest::of(label.as_bytes()).as_str().to_owned()
}

#[track_caller]
fn run_ok(db: &Db, args: &[&str]) -> Output {
    let out = db
        .cmd()
        .args(["--lock-timeout", "60"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "modstate {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn run(db: &Db, args: &[&str]) -> Output {
    db.cmd()
        .args(["--lock-timeout", "60"])
        .args(args)
        .output()
        .unwrap()
}

#[track_caller]
fn put_ok(db: &Db, label: &str, state: Value) {
    let envelope = serde_json::json!({"type": "Module", "version": 1, "state": state}).to_string();
    let out = db.run_in(
        &["artifact", "put", &digest(label), "-"],
        envelope.as_bytes(),
    );
    assert!(
        out.status.success(),
        "put {label}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Everything a user can read back: every artifact's bytes, every memory of `namespaces`
/// (id, text, category; not versions — they only ever move forward, so a restore stamps new
/// ones).
pub fn contents(db: &Db, namespaces: &[&str]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for row in db.json(&["artifact", "ls"]).as_array().unwrap() {
        let d = row["digest"].as_str().unwrap();
        let bytes = run_ok(db, &["artifact", "get", d]).stdout;
        out.push((d.to_owned(), String::from_utf8(bytes).unwrap()));
    }
    for ns in namespaces {
        let page = db.json(&["memory", "ls", "--namespace", ns, "--limit", "1000"]);
        for m in page["memories"].as_array().unwrap() {
            out.push((
                m["id"].as_str().unwrap().to_owned(),
                format!("{ns}|{}|{}", m["text"], m["category"]),
            ));
        }
    }
    out.sort();
    out
}

/// Some artifacts and memories in two namespaces.
pub fn populate(db: &Db) {
    put_ok(db, "a", serde_json::json!({"v": "a", "text": "é ü 日本語"}));
    put_ok(db, "b", serde_json::json!({"v": "b1"}));
    for (ns, text) in [
        ("", "deploys happen on Fridays"),
        ("agent", "the user prefers tabs"),
        ("agent", "Kubernetes cluster runbook"),
    ] {
        run_ok(
            db,
            &[
                "memory",
                "add",
                "--namespace",
                ns,
                "--category",
                "fact",
                text,
            ],
        );
    }
}

pub fn export_verify_restore_round_trip(db: &Db) {
    populate(db);
    let namespaces = ["", "agent"];
    let snap = db.dir().join("snap.db");
    let export = db.json(&["snapshot", "export", snap.to_str().unwrap()]);
    assert_eq!(export["artifacts"], 2, "{export}");
    run_ok(db, &["snapshot", "verify", snap.to_str().unwrap()]);
    let at_snapshot = contents(db, &namespaces);

    // Change everything a little.
    run_ok(db, &["artifact", "rm", &digest("a")]);
    put_ok(db, "b", serde_json::json!({"v": "b2"}));
    put_ok(db, "c", serde_json::json!({"v": "c"}));
    run_ok(
        db,
        &["memory", "add", "--namespace", "agent", "added later"],
    );
    assert_ne!(contents(db, &namespaces), at_snapshot);

    let report = db.json(&["snapshot", "restore", snap.to_str().unwrap()]);
    assert_eq!(report["restored"]["artifacts"], 2, "{report}");
    assert_eq!(contents(db, &namespaces), at_snapshot);
    // Search works on what was restored.
    let found = db.json(&["memory", "search", "kubernetes"]);
    assert_eq!(found["memories"].as_array().unwrap().len(), 1, "{found}");
    // And the store still takes writes.
    put_ok(db, "d", serde_json::json!({"v": "d"}));
    assert_eq!(db.artifact_count(), 3);

    // Into a fresh, empty store of the same backend.
    let fresh = db.another();
    let report = fresh.json(&["snapshot", "restore", snap.to_str().unwrap()]);
    assert_eq!(report["restored"]["artifacts"], 2, "{report}");
    assert_eq!(contents(&fresh, &namespaces), at_snapshot);
}

pub fn corrupted_or_newer_snapshots_are_refused_and_change_nothing(db: &Db) {
    for i in 0..60 {
        put_ok(
            db,
            &format!("r{i}"),
            serde_json::json!({"pad": "x".repeat(3000), "i": i}),
        );
    }
    put_ok(db, "marked", serde_json::json!({"marker": MARKER}));
    let snap = db.dir().join("snap.db");
    run_ok(db, &["snapshot", "export", snap.to_str().unwrap()]);
    run_ok(db, &["snapshot", "verify", snap.to_str().unwrap()]);
    put_ok(db, "after", serde_json::json!({}));
    let before = run_ok(db, &["artifact", "ls"]).stdout;
    // On SQLite, the files beside the database too (a refused restore writes none).
    let db_files = || -> Vec<String> {
        if db.is_postgres() {
            return Vec::new();
        }
        let dir = std::path::Path::new(db.arg()).parent().unwrap();
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.ends_with("-wal") && !n.ends_with("-shm"))
            .collect();
        v.sort();
        v
    };
    let files_before = db_files();

    // Flip every byte of one page in the middle of the file.
    let corrupt = db.dir().join("corrupt.db");
    let mut bytes = fs::read(&snap).unwrap();
    let page = 4096;
    let middle = bytes.len() / 2 / page * page;
    for b in &mut bytes[middle..middle + page] {
        *b ^= 0xff;
    }
    fs::write(&corrupt, &bytes).unwrap();

    // One changed byte inside an envelope: integrity_check cannot see it, the hash can. Every
    // copy of the marker is changed, since a page may also hold stale copies in free space.
    let subtle = db.dir().join("subtle.db");
    let mut bytes = fs::read(&snap).unwrap();
    let mut changed = 0;
    for at in 0..bytes.len() - MARKER.len() {
        if &bytes[at..at + MARKER.len()] == MARKER.as_bytes() {
            bytes[at] = b'V';
            changed += 1;
        }
    }
    assert!(changed >= 1);
    fs::write(&subtle, &bytes).unwrap();

    let newer = db.dir().join("newer.db");
    fs::copy(&snap, &newer).unwrap();
    Connection::open(&newer)
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();

    let garbage = db.dir().join("garbage.db");
    fs::write(&garbage, vec![b'z'; 8192]).unwrap();

    for (file, code) in [(&corrupt, 7), (&subtle, 7), (&newer, 6), (&garbage, 7)] {
        let f = file.to_str().unwrap();
        let out = run(db, &["snapshot", "verify", f]);
        assert_eq!(
            out.status.code(),
            Some(code),
            "verify {f}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = run(db, &["snapshot", "restore", f]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "restore {f}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert_eq!(
            run_ok(db, &["artifact", "ls"]).stdout,
            before,
            "restore of {f} changed data"
        );
        assert_eq!(db_files(), files_before, "restore of {f} wrote files");
    }
    let out = run(
        db,
        &[
            "snapshot",
            "verify",
            db.dir().join("absent.db").to_str().unwrap(),
        ],
    );
    // A missing file is an I/O failure (exit 1), as for every file a command reads.
    assert_eq!(out.status.code(), Some(1));
}
