//! Fault injection: writes that hit a file-size limit (a disk-full stand-in, RLIMIT_FSIZE with
//! SIGXFSZ ignored) fail with a clear error and leave the database and files exactly as they
//! were; a database in a read-only directory still serves reads.

use crate::common::{BIN, code, stderr};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use sha2::{Digest as _, Sha256};

use crate::common::{limit_file_size, output_with_stdin};

/// `modstate args…` with `stdin`, its file-size limit set to `fsize` bytes when given.
fn run_limited(args: &[&str], stdin: &[u8], fsize: Option<u64>) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    if let Some(limit) = fsize {
        limit_file_size(&mut cmd, limit);
    }
    output_with_stdin(&mut cmd, stdin)
}

/// A digest of every row of every table: equal before and after means nothing changed.
fn rows_digest(db: &Path) -> String {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut hash = Sha256::new();
    for table in tables {
        hash.update(table.as_bytes());
        let mut stmt = conn
            .prepare(&format!("SELECT * FROM \"{table}\" ORDER BY 1"))
            .unwrap();
        let columns = stmt.column_count();
        let mut rows = stmt.query([]).unwrap();
        while let Some(row) = rows.next().unwrap() {
            for i in 0..columns {
                let value: rusqlite::types::Value = row.get(i).unwrap();
                hash.update(format!("{value:?}").as_bytes());
            }
        }
    }
    modstate::digest::hex(&hash.finalize())
}

fn envelope(pad: usize) -> String {
    format!(
        r#"{{"type":"Module","version":1,"state":{{"pad":"{}"}}}}"#,
        "x".repeat(pad)
    )
}

fn digest(n: u32) -> String {
    format!("sha256:{n:064x}")
}

fn assert_disk_full(out: &Output, what: &str) {
    assert_eq!(code(out), 1, "{what}: {}", stderr(out));
    let err = stderr(out);
    assert_eq!(err.lines().count(), 1, "{what}: one line: {err}");
    assert!(
        err.contains("full") || err.contains("too large"),
        "{what}: names the cause: {err}"
    );
    assert!(!err.contains("panicked"), "{what}: {err}");
}

#[test]
fn disk_full_put_and_batch_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    let db_arg = db.to_str().unwrap();
    let small = envelope(100);
    let out = run_limited(
        &["--db", db_arg, "artifact", "put", &digest(1)],
        small.as_bytes(),
        None,
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let before = rows_digest(&db);

    let big = envelope(2 << 20);
    let out = run_limited(
        &["--db", db_arg, "artifact", "put", &digest(2)],
        big.as_bytes(),
        Some(256 << 10),
    );
    assert_disk_full(&out, "put");
    assert_eq!(rows_digest(&db), before, "put changed the database");

    let lines: String = (10..20)
        .map(|n| {
            format!(
                "{{\"digest\":\"{}\",\"state\":{}}}\n",
                digest(n),
                envelope(100 << 10)
            )
        })
        .collect();
    let out = run_limited(
        &["--db", db_arg, "artifact", "put-many", "-"],
        lines.as_bytes(),
        Some(256 << 10),
    );
    assert_disk_full(&out, "put-many");
    assert_eq!(rows_digest(&db), before, "put-many changed the database");

    // Without the limit the same writes go through: the failure left nothing in the way.
    let out = run_limited(
        &["--db", db_arg, "artifact", "put-many", "-"],
        lines.as_bytes(),
        None,
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_ne!(rows_digest(&db), before);
}

#[test]
fn disk_full_memory_add_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    let db_arg = db.to_str().unwrap();
    let out = run_limited(
        &["--db", db_arg, "memory", "add", "the first note"],
        b"",
        None,
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let before = rows_digest(&db);
    let body = "a long note about the deploy pipeline ".repeat(1500);
    let out = run_limited(
        &["--db", db_arg, "memory", "add", "-"],
        body.as_bytes(),
        Some(32 << 10),
    );
    assert_disk_full(&out, "memory add");
    assert_eq!(rows_digest(&db), before, "memory add changed the database");
    let generation = run_limited(&["--db", db_arg, "memory", "generation"], b"", None);
    assert_eq!(String::from_utf8_lossy(&generation.stdout).trim(), "1");
}

// Snapshot export under the same limit is tested in tests/snapshot.rs (the old snapshot stays
// byte-identical and no temp file is left).

#[test]
fn disk_full_lockfile_flush_leaves_the_file_alone() {
    let dir = tempfile::tempdir().unwrap();
    let lockfile = dir.path().join("dagger.lock");
    fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/dagger-lock/dagger-main.dagger.lock"),
        &lockfile,
    )
    .unwrap();
    let before = fs::read(&lockfile).unwrap();
    let file_arg = lockfile.to_str().unwrap();
    let out = run_limited(
        &[
            "lockfile",
            "--file",
            file_arg,
            "set",
            "",
            "oci-sha",
            r#"["docker.io/library/new:1"]"#,
            r#""sha256:0""#,
        ],
        b"",
        Some(1 << 10), // the sample is 2.3 KiB: its rewrite cannot fit
    );
    assert_disk_full(&out, "lockfile set");
    assert_eq!(fs::read(&lockfile).unwrap(), before, "lockfile changed");
    let leftovers: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "dagger.lock" && n != "dagger.lock.lock")
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
}

#[test]
fn read_only_directory_serves_reads_and_refuses_writes_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let db = data.join("state.db");
    let db_arg = db.to_str().unwrap().to_owned();
    let out = run_limited(
        &["--db", &db_arg, "artifact", "put", &digest(1)],
        envelope(10).as_bytes(),
        None,
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let before = rows_digest(&db);

    // As root, permissions do not bind: run the commands as `nobody` with read access only.
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(&data, fs::Permissions::from_mode(0o555)).unwrap();
    fs::set_permissions(&db, fs::Permissions::from_mode(0o444)).unwrap();
    let run = |args: &[&str], stdin: &[u8]| {
        let mut cmd = Command::new(BIN);
        cmd.arg("--db").arg(&db_arg).args(args);
        crate::common::as_nobody(&mut cmd);
        output_with_stdin(&mut cmd, stdin)
    };

    let get = run(&["artifact", "get", &digest(1)], b"");
    assert_eq!(
        code(&get),
        0,
        "read in a read-only directory: {}",
        stderr(&get)
    );
    assert_eq!(get.stdout, envelope(10).as_bytes());
    let ls = run(&["artifact", "ls"], b"");
    assert_eq!(code(&ls), 0, "{}", stderr(&ls));

    let put = run(&["artifact", "put", &digest(2)], envelope(20).as_bytes());
    assert_eq!(code(&put), 1, "{}", stderr(&put));
    assert!(stderr(&put).contains("read-only"), "{}", stderr(&put));
    assert_eq!(stderr(&put).lines().count(), 1);
    let rm = run(&["artifact", "rm", &digest(1)], b"");
    assert_eq!(code(&rm), 1, "{}", stderr(&rm));

    fs::set_permissions(&data, fs::Permissions::from_mode(0o700)).unwrap();
    fs::set_permissions(&db, fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(rows_digest(&db), before);
}
