//! Module-state artifacts through the CLI: round trips, the artifact file outcomes, integrity,
//! multi-process puts and opens, contention with a foreign writer, file modes, schema refusal.

use crate::common::{BIN, code, stderr};
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
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
    let mut child = Command::new(BIN)
        .arg("--db")
        .arg(db)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn modstate");
    let mut input = child.stdin.take().unwrap();
    // A command may exit before reading all of stdin (e.g. a bad digest); that is fine.
    let _ = input.write_all(stdin);
    drop(input);
    child.wait_with_output().expect("wait modstate")
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
fn put_get_ls_rm_round_trip_is_byte_exact_and_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_in(&dir);
    // Odd spacing and key order must come back exactly as given.
    let body = b"{ \"version\": 1,\n  \"type\": \"Module\", \"state\": {\"z\": 1.50, \"a\": [] } }";
    let d = digest_of(1);

    let put = run_in(&db, &["artifact", "put", &d, "-"], body);
    assert_eq!(code(&put), 0, "{}", stderr(&put));
    assert_eq!(String::from_utf8_lossy(&put.stdout).trim(), d);

    let get = run(&db, &["artifact", "get", &d]);
    assert_eq!(code(&get), 0, "{}", stderr(&get));
    assert_eq!(get.stdout, body);

    // Same bytes again: unchanged.
    let again = run_in(&db, &["--json", "artifact", "put", &d], body);
    assert_eq!(code(&again), 0);
    let doc: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(doc["outcome"], "unchanged");

    // Different bytes: replaced, and it says so.
    let other = envelope(2);
    let replaced = run_in(&db, &["--json", "artifact", "put", &d], other.as_bytes());
    assert_eq!(code(&replaced), 0);
    let doc: serde_json::Value = serde_json::from_slice(&replaced.stdout).unwrap();
    assert_eq!(doc["outcome"], "replaced");
    let replaced_text = run_in(&db, &["artifact", "put", &d], body);
    assert!(
        stderr(&replaced_text).contains("replaced"),
        "{}",
        stderr(&replaced_text)
    );

    // A file argument works as well as stdin.
    let file = dir.path().join("env.json");
    fs::write(&file, envelope(3)).unwrap();
    let d3 = digest_of(3);
    assert_eq!(
        code(&run(&db, &["artifact", "put", &d3, file.to_str().unwrap()])),
        0
    );

    let ls = run(&db, &["--json", "artifact", "ls"]);
    assert_eq!(code(&ls), 0);
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&ls.stdout).unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["digest"], d);
    assert_eq!(rows[0]["type"], "Module");
    assert_eq!(rows[0]["version"], 1);
    assert_eq!(rows[0]["bytes"], body.len());
    let text = run(&db, &["artifact", "ls"]);
    assert!(String::from_utf8_lossy(&text.stdout).contains(&d3));

    assert_eq!(code(&run(&db, &["artifact", "rm", &d])), 0);
    assert_eq!(code(&run(&db, &["artifact", "rm", &d])), 3);
    assert_eq!(code(&run(&db, &["artifact", "get", &d])), 3);
    assert_eq!(count_rows(&db), 1);
}

#[test]
fn import_export_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_in(&dir);
    let import = run(
        &db,
        &[
            "artifact",
            "import",
            fixture("valid.json").to_str().unwrap(),
        ],
    );
    assert_eq!(code(&import), 0, "{}", stderr(&import));
    assert_eq!(String::from_utf8_lossy(&import.stdout).trim(), VALID_DIGEST);

    let out = dir.path().join("out").join("dagger.moduletypes.json");
    fs::create_dir(out.parent().unwrap()).unwrap();
    let export = run(
        &db,
        &["artifact", "export", VALID_DIGEST, out.to_str().unwrap()],
    );
    assert_eq!(code(&export), 0, "{}", stderr(&export));
    let written = fs::read_to_string(&out).unwrap();
    assert!(
        written.ends_with("}\n"),
        "pretty-printed with a trailing newline"
    );
    assert!(written.starts_with("{\n  \"artifactVersion\": 1,\n  \"moduleSourceDigest\""));
    // Same JSON as the fixture (which is also pretty-printed, in the same key order).
    let a: serde_json::Value = serde_json::from_str(&written).unwrap();
    let b: serde_json::Value =
        serde_json::from_slice(&fs::read(fixture("valid.json")).unwrap()).unwrap();
    assert_eq!(a, b);
    // Key order is kept, not sorted.
    assert!(
        written.find("\"name\": \"hello\"").unwrap() < written.find("\"description\"").unwrap()
    );

    let check = run(
        &db,
        &[
            "artifact",
            "check",
            out.to_str().unwrap(),
            "--digest",
            VALID_DIGEST,
        ],
    );
    assert_eq!(code(&check), 0);
    assert_eq!(String::from_utf8_lossy(&check.stdout).trim(), "loaded");

    // The exported file imports again to the same bytes.
    let before = run(&db, &["artifact", "get", VALID_DIGEST]).stdout;
    let reimport = run(
        &db,
        &["--json", "artifact", "import", out.to_str().unwrap()],
    );
    let doc: serde_json::Value = serde_json::from_slice(&reimport.stdout).unwrap();
    assert_eq!(doc["outcome"], "unchanged");
    assert_eq!(run(&db, &["artifact", "get", VALID_DIGEST]).stdout, before);

    // Export of an absent digest: exit 3, no file.
    let missing = dir.path().join("missing.json");
    let e = run(
        &db,
        &[
            "artifact",
            "export",
            &digest_of(9),
            missing.to_str().unwrap(),
        ],
    );
    assert_eq!(code(&e), 3);
    assert!(!missing.exists());
}

#[test]
fn import_refuses_anything_but_a_well_formed_v1_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_in(&dir);
    for name in [
        "malformed.json",
        "unsupported-artifact-version.json",
        "unsupported-state-type.json",
        "unsupported-state-version.json",
    ] {
        let out = run(
            &db,
            &["artifact", "import", fixture(name).to_str().unwrap()],
        );
        assert_eq!(code(&out), 6, "{name}: {}", stderr(&out));
        assert_eq!(
            stderr(&out).lines().count(),
            1,
            "one-line error: {}",
            stderr(&out)
        );
    }
    assert_eq!(count_rows(&db), 0);
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
fn put_validates_the_envelope_and_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_in(&dir);
    let d = digest_of(1);
    for bad in [
        &b"not json"[..],
        b"{\"type\":\"Module\",\"version\":1,\"state\":{}",
        b"[]",
        b"{\"type\":1,\"version\":1,\"state\":{}}",
        b"{\"type\":\"Module\",\"version\":\"1\",\"state\":{}}",
        b"{\"type\":\"Module\",\"version\":1.5,\"state\":{}}",
        b"{\"type\":\"Module\",\"version\":1,\"state\":[]}",
        b"{\"type\":\"Module\",\"version\":1}",
        b"\xff\xfe",
    ] {
        let out = run_in(&db, &["artifact", "put", &d], bad);
        assert_eq!(
            code(&out),
            6,
            "{:?}: {}",
            String::from_utf8_lossy(bad),
            stderr(&out)
        );
    }
    // 16 MiB + 1 byte is refused before anything is stored.
    let mut huge = b"{\"type\":\"Module\",\"version\":1,\"state\":{\"pad\":\"".to_vec();
    huge.resize(16 * 1024 * 1024 - 3, b'x');
    huge.extend_from_slice(b"\"}}");
    huge.push(b' ');
    assert_eq!(huge.len(), 16 * 1024 * 1024 + 1);
    let out = run_in(&db, &["artifact", "put", &d], &huge);
    assert_eq!(code(&out), 6, "{}", stderr(&out));
    assert!(stderr(&out).contains("limit"), "{}", stderr(&out));
    huge.pop();
    let out = run_in(&db, &["artifact", "put", &d], &huge);
    assert_eq!(
        code(&out),
        0,
        "exactly the limit is accepted: {}",
        stderr(&out)
    );

    for bad_digest in [
        "",
        "sha256:",
        "md5:abc",
        &format!("sha256:{}", "A".repeat(64)),
        "../../x",
    ] {
        let out = run_in(
            &db,
            &["artifact", "put", bad_digest],
            envelope(1).as_bytes(),
        );
        assert_eq!(code(&out), 6, "{bad_digest:?}");
    }
    assert_eq!(count_rows(&db), 1);
}

#[test]
fn eight_processes_put_fifty_each() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_in(&dir);
    let barrier = Arc::new(Barrier::new(8));
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let db = db.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                for i in 0..50 {
                    let n = w * 1000 + i;
                    let out = run_in(
                        &db,
                        &["artifact", "put", &digest_of(n)],
                        envelope(n).as_bytes(),
                    );
                    assert_eq!(code(&out), 0, "worker {w} put {i}: {}", stderr(&out));
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(count_rows(&db), 400);
    let ls = run(&db, &["--json", "artifact", "ls"]);
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&ls.stdout).unwrap();
    assert_eq!(rows.len(), 400);
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

#[test]
fn put_many_is_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_in(&dir);
    let lines: String = (0..1000)
        .map(|n| {
            format!(
                "{{\"digest\":\"{}\",\"state\":{}}}\n",
                digest_of(n),
                envelope(n)
            )
        })
        .collect();
    let out = run_in(
        &db,
        &["--json", "artifact", "put-many", "-"],
        lines.as_bytes(),
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["inserted"], 1000);
    assert_eq!(count_rows(&db), 1000);
    // Byte-exact from the line.
    assert_eq!(
        run(&db, &["artifact", "get", &digest_of(5)]).stdout,
        envelope(5).as_bytes()
    );

    // One bad item (the third) rejects the whole batch, naming it.
    for bad in [
        format!("{{\"digest\":\"sha256:bad\",\"state\":{}}}", envelope(1)),
        format!("{{\"digest\":\"{}\",\"state\":[1]}}", digest_of(1)),
        "{\"digest\":".to_owned(),
    ] {
        let batch = format!(
            "{{\"digest\":\"{}\",\"state\":{}}}\n\n{{\"digest\":\"{}\",\"state\":{}}}\n{bad}\n",
            digest_of(5000),
            envelope(5000),
            digest_of(5001),
            envelope(5001)
        );
        let out = run_in(&db, &["artifact", "put-many", "-"], batch.as_bytes());
        assert_eq!(code(&out), 6, "{}", stderr(&out));
        assert!(stderr(&out).contains("line 4"), "{}", stderr(&out));
        assert_eq!(count_rows(&db), 1000, "nothing stored");
    }

    // A directory of artifact files.
    let files = dir.path().join("files");
    fs::create_dir(&files).unwrap();
    fs::copy(fixture("valid.json"), files.join("a.json")).unwrap();
    fs::write(files.join("notes.txt"), "ignored").unwrap();
    let out = run(&db, &["artifact", "put-many", files.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(count_rows(&db), 1001);
    fs::copy(fixture("unsupported-state-type.json"), files.join("b.json")).unwrap();
    let out = run(&db, &["artifact", "put-many", files.to_str().unwrap()]);
    assert_eq!(code(&out), 6, "{}", stderr(&out));
    assert!(stderr(&out).contains("item 2"), "{}", stderr(&out));
    let out = run(
        &db,
        &[
            "artifact",
            "put-many",
            dir.path().join("absent").to_str().unwrap(),
        ],
    );
    assert_eq!(code(&out), 1, "{}", stderr(&out));
}

/// One rule at every entrance: only a saved `Module` state envelope of version 1 is stored.
#[test]
fn only_module_state_version_1_enters_the_store_at_any_entrance() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_in(&dir);
    let others = [
        r#"{"type":"Workspace","version":1,"state":{}}"#,
        r#"{"type":"module","version":1,"state":{}}"#,
        r#"{"type":"Module","version":99,"state":{}}"#,
    ];
    for (i, bad) in others.iter().enumerate() {
        let put = run_in(&db, &["artifact", "put", &digest_of(i)], bad.as_bytes());
        assert_eq!(code(&put), 6, "put {bad}: {}", stderr(&put));
        assert!(stderr(&put).contains("not supported"), "{}", stderr(&put));
        assert_eq!(stderr(&put).lines().count(), 1);

        let line = format!("{{\"digest\":\"{}\",\"state\":{bad}}}\n", digest_of(i));
        let many = run_in(&db, &["artifact", "put-many", "-"], line.as_bytes());
        assert_eq!(code(&many), 6, "put-many {bad}: {}", stderr(&many));

        let resolve = run(
            &db,
            &[
                "artifact",
                "resolve",
                &digest_of(i),
                "--",
                "printf",
                "%s",
                bad,
            ],
        );
        assert_eq!(code(&resolve), 6, "resolve {bad}: {}", stderr(&resolve));
    }
    assert_eq!(count_rows(&db), 0, "an unsupported envelope was stored");
}

/// `resolve` serves the same bytes from the artifact file, the store and a computation.
#[test]
fn resolve_prints_the_same_bytes_whichever_source_serves_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_in(&dir);
    let file = dir.path().join("dagger.moduletypes.json");
    // Stored pretty-printed, with spacing a file or a computation would not reproduce.
    let pretty = "{\n  \"type\": \"Module\",\n  \"version\": 1,\n  \"state\": {\"b\": 1.50, \"a\": [1, 2]}\n}\n";
    let d = digest_of(1);
    let computed = run(
        &db,
        &["artifact", "resolve", &d, "--", "printf", "%s", pretty],
    );
    assert_eq!(code(&computed), 0, "{}", stderr(&computed));
    assert!(stderr(&computed).contains("from computed"));
    let from_store = run(&db, &["artifact", "resolve", &d]);
    assert_eq!(code(&from_store), 0, "{}", stderr(&from_store));
    assert!(stderr(&from_store).contains("from store"));
    let export = run(&db, &["artifact", "export", &d, file.to_str().unwrap()]);
    assert_eq!(code(&export), 0, "{}", stderr(&export));
    let from_file = run(
        &db,
        &["artifact", "resolve", &d, "--file", file.to_str().unwrap()],
    );
    assert_eq!(code(&from_file), 0, "{}", stderr(&from_file));
    assert!(stderr(&from_file).contains("from file"));
    assert_eq!(computed.stdout, from_store.stdout);
    assert_eq!(from_store.stdout, from_file.stdout);
    assert_eq!(
        String::from_utf8(from_file.stdout).unwrap(),
        "{\"type\":\"Module\",\"version\":1,\"state\":{\"b\":1.50,\"a\":[1,2]}}\n"
    );
}

/// Exporting an artifact and importing the file again is a round trip: `unchanged`, and the
/// stored bytes are left as they were.
#[test]
fn export_then_import_of_an_unchanged_artifact_reports_unchanged_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_in(&dir);
    let file = dir.path().join("f.json");
    let stored = "{ \"type\" : \"Module\", \"version\" : 1, \"state\" : {\"x\": \"é\"} }";
    let d = digest_of(5);
    assert_eq!(
        code(&run_in(&db, &["artifact", "put", &d], stored.as_bytes())),
        0
    );
    let ls_before = run(&db, &["--json", "artifact", "ls"]);
    assert_eq!(
        code(&run(
            &db,
            &["artifact", "export", &d, file.to_str().unwrap()]
        )),
        0
    );
    let import = run(
        &db,
        &["--json", "artifact", "import", file.to_str().unwrap()],
    );
    assert_eq!(code(&import), 0, "{}", stderr(&import));
    let doc: serde_json::Value = serde_json::from_slice(&import.stdout).unwrap();
    assert_eq!(doc["outcome"], "unchanged", "{doc}");
    let text = run(&db, &["artifact", "import", file.to_str().unwrap()]);
    assert!(!stderr(&text).contains("replaced"), "{}", stderr(&text));
    assert_eq!(run(&db, &["artifact", "get", &d]).stdout, stored.as_bytes());
    assert_eq!(
        run(&db, &["--json", "artifact", "ls"]).stdout,
        ls_before.stdout
    );
    // A real change is still a replacement.
    let changed = "{\"type\":\"Module\",\"version\":1,\"state\":{\"x\":\"e\"}}";
    let put = run_in(&db, &["--json", "artifact", "put", &d], changed.as_bytes());
    let doc: serde_json::Value = serde_json::from_slice(&put.stdout).unwrap();
    assert_eq!(doc["outcome"], "replaced");
}

#[test]
fn resolve_says_why_it_skipped_a_file_and_can_write_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_in(&dir);
    let file = dir.path().join("dagger.moduletypes.json");
    let f = file.to_str().unwrap();
    assert_eq!(
        code(&run(
            &db,
            &[
                "artifact",
                "import",
                fixture("valid.json").to_str().unwrap()
            ]
        )),
        0
    );
    // Stale: the file is for another module source.
    fs::copy(fixture("stale.json"), &file).unwrap();
    let out = run(&db, &["artifact", "resolve", VALID_DIGEST, "--file", f]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("skipped artifact file"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("stale"), "{}", stderr(&out));
    // Malformed.
    fs::write(&file, b"{not json").unwrap();
    let out = run(&db, &["artifact", "resolve", VALID_DIGEST, "--file", f]);
    assert!(stderr(&out).contains("malformed"), "{}", stderr(&out));
    assert_eq!(
        fs::read(&file).unwrap(),
        b"{not json",
        "written without --write-file"
    );

    // --write-file after a store hit: the next load is served from the file.
    let out = run(
        &db,
        &[
            "artifact",
            "resolve",
            VALID_DIGEST,
            "--file",
            f,
            "--write-file",
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let check = run(&db, &["artifact", "check", f, "--digest", VALID_DIGEST]);
    assert_eq!(code(&check), 0, "{}", stderr(&check));
    let again = run(&db, &["artifact", "resolve", VALID_DIGEST, "--file", f]);
    assert!(stderr(&again).contains("from file"), "{}", stderr(&again));
    assert_eq!(again.stdout, out.stdout);

    // --write-file after a computation.
    let other = digest_of(9);
    let file2 = dir.path().join("second.json");
    let out = run(
        &db,
        &[
            "artifact",
            "resolve",
            &other,
            "--file",
            file2.to_str().unwrap(),
            "--write-file",
            "--",
            "printf",
            "%s",
            &envelope(9),
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let check = run(
        &db,
        &[
            "artifact",
            "check",
            file2.to_str().unwrap(),
            "--digest",
            &other,
        ],
    );
    assert_eq!(code(&check), 0, "{}", stderr(&check));

    // Lookup only: no command, a miss exits 3 and computes nothing.
    let miss = run(&db, &["artifact", "resolve", &digest_of(10)]);
    assert_eq!(code(&miss), 3, "{}", stderr(&miss));
    assert!(miss.stdout.is_empty());
}
