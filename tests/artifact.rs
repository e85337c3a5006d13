//! Module-state artifacts through the CLI: round trips, the artifact file outcomes, integrity,
//! multi-process puts and opens, contention with a foreign writer, file modes, schema refusal.

use crate::common::{BIN, code, stderr};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

const VALID_DIGEST: &str =
    "sha256:721e3d1485011d4fe4bb939e608c6036d91442db94818655bd6ee65f29af63f6";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/moduletypes")
        .join(name)
}

/// Runs `modstate --db <db> args…` with `stdin` as standard input.
fn run_in(db: &Path, args: &[&str], stdin: &[u8]) -> Output {
    crate::common::output_with_stdin(Command::new(BIN).arg("--db").arg(db).args(args), stdin)
}

fn run(db: &Path, args: &[&str]) -> Output {
    run_in(db, args, b"")
}

fn digest_of(n: usize) -> String {
    format!("sha256:{n:064x}")
}

fn envelope(n: usize) -> String {
    format!(r#"{{"type":"Module","version":1,"state":{{"name":"m{n}","objects":[]}}}}"#)
}

fn db_in(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("state").join("state.db")
}

fn count_rows(db: &Path) -> i64 {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row("SELECT count(*) FROM artifacts", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn check_answers_one_of_five_outcomes() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_in(&dir);
    let scratch = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        fs::write(&p, bytes).unwrap();
        p
    };
    let valid = fs::read_to_string(fixture("valid.json")).unwrap();
    let mut with_extra: serde_json::Value = serde_json::from_str(&valid).unwrap();
    with_extra["generator"] = "dagger v0.19".into();
    with_extra["state"]["state"]["futureField"] = serde_json::json!({"x": 1});
    let wrong_types = valid.replace("\"artifactVersion\": 1", "\"artifactVersion\": \"1\"");
    let digest_number = valid.replace(&format!("\"{VALID_DIGEST}\""), "42");
    let state_not_object = r#"{"artifactVersion":1,"moduleSourceDigest":"DIGEST","state":[1]}"#
        .replace("DIGEST", VALID_DIGEST);
    let version_not_integer = valid.replacen("\"version\": 1", "\"version\": 1.5", 1);

    let cases: Vec<(PathBuf, &str)> = vec![
        (fixture("valid.json"), "loaded"),
        (fixture("stale.json"), "stale"),
        (fixture("malformed.json"), "malformed"),
        (fixture("unsupported-artifact-version.json"), "unsupported"),
        (fixture("unsupported-state-type.json"), "unsupported"),
        (fixture("unsupported-state-version.json"), "unsupported"),
        (dir.path().join("absent.json"), "missing"),
        (scratch("empty.json", b""), "malformed"),
        (
            scratch("truncated.json", &valid.as_bytes()[..valid.len() - 3]),
            "malformed",
        ),
        (
            scratch("wrong-types.json", wrong_types.as_bytes()),
            "malformed",
        ),
        (
            scratch("digest-number.json", digest_number.as_bytes()),
            "malformed",
        ),
        (
            scratch("state-array.json", state_not_object.as_bytes()),
            "malformed",
        ),
        (
            scratch("version-float.json", version_not_integer.as_bytes()),
            "malformed",
        ),
        (scratch("array.json", b"[1,2,3]"), "malformed"),
        (
            scratch("binary.json", &[0xff, 0xfe, 0x00, 0x01]),
            "malformed",
        ),
        (
            scratch("extra.json", with_extra.to_string().as_bytes()),
            "loaded",
        ),
    ];
    for (path, want) in cases {
        let out = run(
            &db,
            &[
                "--json",
                "artifact",
                "check",
                path.to_str().unwrap(),
                "--digest",
                VALID_DIGEST,
            ],
        );
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{}: {e}: {}", path.display(), stderr(&out)));
        assert_eq!(doc["outcome"], want, "{}: {doc}", path.display());
        assert_eq!(
            code(&out),
            if want == "loaded" { 0 } else { 3 },
            "{}",
            path.display()
        );
        if want != "loaded" {
            assert!(
                doc["reason"].is_string(),
                "{}: a reason is given",
                path.display()
            );
        }
    }

    // A directory where the file should be is an I/O error, not an answer.
    let out = run(
        &db,
        &[
            "artifact",
            "check",
            dir.path().to_str().unwrap(),
            "--digest",
            VALID_DIGEST,
        ],
    );
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("directory"), "{}", stderr(&out));

    // Permission denied is an error too (root reads anything, so only as another user).
    if unsafe { libc::geteuid() } != 0 {
        let locked = scratch("locked.json", valid.as_bytes());
        fs::set_permissions(&locked, fs::Permissions::from_mode(0o000)).unwrap();
        let out = run(
            &db,
            &[
                "artifact",
                "check",
                locked.to_str().unwrap(),
                "--digest",
                VALID_DIGEST,
            ],
        );
        assert_eq!(code(&out), 1, "{}", stderr(&out));
    }

    // A bad expected digest is a usage-level invalid input.
    let out = run(
        &db,
        &[
            "artifact",
            "check",
            fixture("valid.json").to_str().unwrap(),
            "--digest",
            "sha256:ABC",
        ],
    );
    assert_eq!(code(&out), 6);
    assert!(
        stderr(&out).contains("64 lowercase hex"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn corrupted_row_is_an_integrity_error() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_in(&dir);
    let d = digest_of(7);
    assert_eq!(
        code(&run_in(
            &db,
            &["artifact", "put", &d],
            envelope(7).as_bytes()
        )),
        0
    );
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        // Flip one byte of the stored payload, keeping its length.
        conn.execute(
            "UPDATE artifacts SET envelope = CAST(replace(CAST(envelope AS TEXT), 'm7', 'm8') AS BLOB)",
            [],
        )
        .unwrap();
    }
    let out = run(&db, &["artifact", "get", &d]);
    assert_eq!(code(&out), 7, "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&d),
        "the error names the digest: {}",
        stderr(&out)
    );
    assert!(out.stdout.is_empty(), "nothing corrupted is printed");
}

#[test]
fn eight_processes_open_a_fresh_database_at_once() {
    for round in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let db = db_in(&dir);
        let barrier = Arc::new(Barrier::new(8));
        let workers: Vec<_> = (0..8)
            .map(|_| {
                let db = db.clone();
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    let mut cmd = Command::new(BIN);
                    cmd.arg("--db").arg(&db).arg("init");
                    barrier.wait();
                    cmd.output().unwrap()
                })
            })
            .collect();
        for w in workers {
            let out = w.join().unwrap();
            assert_eq!(code(&out), 0, "round {round}: {}", stderr(&out));
            assert!(String::from_utf8_lossy(&out.stdout).contains("schema version"));
        }
    }
}

#[test]
fn foreign_writer_makes_put_wait_then_fail_busy() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_in(&dir);
    assert_eq!(code(&run(&db, &["init"])), 0);
    let foreign = rusqlite::Connection::open(&db).unwrap();
    foreign.execute_batch("BEGIN IMMEDIATE").unwrap();

    let started = Instant::now();
    let out = run_in(
        &db,
        &["--lock-timeout", "1", "artifact", "put", &digest_of(1)],
        envelope(1).as_bytes(),
    );
    let waited = started.elapsed();
    assert_eq!(code(&out), 5, "{}", stderr(&out));
    assert!(
        waited >= Duration::from_millis(900),
        "it waited: {waited:?}"
    );
    assert!(
        stderr(&out).contains("locked"),
        "names the cause: {}",
        stderr(&out)
    );
    assert_eq!(stderr(&out).lines().count(), 1);

    foreign.execute_batch("ROLLBACK").unwrap();
    assert_eq!(count_rows(&db), 0, "nothing partial was written");

    // Released: the put now goes through.
    assert_eq!(
        code(&run_in(
            &db,
            &["artifact", "put", &digest_of(1)],
            envelope(1).as_bytes()
        )),
        0
    );
}

#[test]
fn files_are_private_whatever_the_umask() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("a").join("b").join("state.db");
    let d = digest_of(1);
    // A permissive umask must not leak into what modstate creates.
    let out = Command::new("sh")
        .arg("-c")
        .arg("umask 000; \"$0\" --db \"$1\" artifact put \"$2\" \"$3\"")
        .arg(BIN)
        .arg(&db)
        .arg(&d)
        .arg({
            let p = dir.path().join("env.json");
            fs::write(&p, envelope(1)).unwrap();
            p
        })
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    // Keep a connection open so -wal and -shm exist to be checked.
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.query_row("SELECT count(*) FROM artifacts", [], |r| r.get::<_, i64>(0))
        .unwrap();
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    for file in [
        "state.db",
        "state.db-wal",
        "state.db-shm",
        "state.db.locks/write",
    ] {
        let p = db.parent().unwrap().join(file);
        assert_eq!(mode(&p), 0o600, "{file}");
    }
    for d in [db.parent().unwrap(), db.parent().unwrap().parent().unwrap()] {
        assert_eq!(mode(d), 0o700, "{}", d.display());
    }
    assert_eq!(mode(&db.parent().unwrap().join("state.db.locks")), 0o700);
}

#[test]
fn newer_schema_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("future.db");
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(
            "CREATE TABLE t(x); INSERT INTO t VALUES (1); PRAGMA user_version = 999;",
        )
        .unwrap();
    }
    let before = fs::read(&db).unwrap();
    for args in [
        &["init"][..],
        &["artifact", "ls"],
        &["artifact", "put", &digest_of(1)],
    ] {
        let out = run_in(&db, args, envelope(1).as_bytes());
        assert_eq!(code(&out), 6, "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("999"), "{}", stderr(&out));
    }
    assert_eq!(fs::read(&db).unwrap(), before, "bytes unchanged");
    assert!(!dir.path().join("future.db-wal").exists());
}

#[test]
fn database_path_that_is_a_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["init"]);
    assert_eq!(code(&out), 6, "{}", stderr(&out));
    assert!(stderr(&out).contains("directory"));
}

#[test]
fn usage_errors_exit_2_and_help_reads() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_in(&dir);
    assert_eq!(code(&run(&db, &["artifact", "frobnicate"])), 2);
    assert_eq!(code(&run(&db, &["artifact", "get"])), 2);
    let help = run(&db, &["artifact", "--help"]);
    assert_eq!(code(&help), 0);
    assert!(String::from_utf8_lossy(&help.stdout).contains("check"));
}
