//! The store's promise with real processes: reads never wait for a writer, one database has one
//! name (symlinks, `..`, hard links), the WAL is bounded, and reading creates nothing.

use crate::common::{BIN, code, stderr};
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use modstate::lock::LockDir;
use modstate::store::canonical_db_path;
use modstate::{Digest, Options, Store};

fn modstate(db: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("--db").arg(db);
    cmd
}

fn digest(n: u32) -> String {
    Digest::of(n.to_string().as_bytes()).to_string()
}

fn envelope(n: u32) -> String {
    format!(r#"{{"type":"Module","version":1,"state":{{"n":{n}}}}}"#)
}

fn put(db: &Path, n: u32) -> Output {
    crate::common::output_with_stdin(
        modstate(db).args(["artifact", "put", &digest(n)]),
        envelope(n).as_bytes(),
    )
}

fn setup() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    let out = put(&db, 1);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    (dir, db)
}

#[test]
fn reads_finish_while_another_process_holds_the_write_lock() {
    let (_dir, db) = setup();
    let out = crate::common::output_with_stdin(
        modstate(&db).args(["memory", "add", "--namespace", "a", "-"]),
        b"deploys happen on fridays",
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    // This test process holds the write lock for the whole test, as a long writer would.
    let locks = LockDir::new(&canonical_db_path(&db).unwrap(), Duration::from_secs(1));
    let _write = locks.write().unwrap();
    // With a 1 s lock timeout, any command that waited for the write lock would fail with 5.
    for args in [
        vec!["artifact", "get", &digest(1)],
        vec!["artifact", "ls"],
        vec!["memory", "search", "fridays"],
        vec!["memory", "ls"],
        vec!["lock", "status"],
    ] {
        let out = modstate(&db)
            .arg("--lock-timeout")
            .arg("1")
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(code(&out), 0, "{args:?} waited: {}", stderr(&out));
    }
    let snapshot = db.with_file_name("snap.db");
    let out = modstate(&db)
        .args(["--lock-timeout", "1", "snapshot", "export"])
        .arg(&snapshot)
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "snapshot export waited: {}", stderr(&out));
}

#[test]
fn every_spelling_of_one_database_shares_one_lock_directory() {
    let dir = tempfile::tempdir().unwrap();
    let real_dir = dir.path().join("real");
    fs::create_dir(&real_dir).unwrap();
    let db = real_dir.join("state.db");
    assert_eq!(code(&put(&db, 1)), 0);
    symlink(&db, dir.path().join("alias.db")).unwrap();
    symlink(&real_dir, dir.path().join("linkdir")).unwrap();
    fs::create_dir(dir.path().join("x")).unwrap();

    let mut holder = modstate(&db)
        .args(["lock", "run", "k", "--", "sleep", "30"])
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !db.with_file_name("state.db.locks").exists() {
        assert!(std::time::Instant::now() < deadline, "holder never locked");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));

    let spellings: Vec<(PathBuf, Option<&Path>)> = vec![
        (dir.path().join("alias.db"), None),
        (dir.path().join("linkdir/state.db"), None),
        (PathBuf::from("real/state.db"), Some(dir.path())),
        (PathBuf::from("./x/../real/state.db"), Some(dir.path())),
        (dir.path().join("x/../real/./state.db"), None),
    ];
    let mut failures = Vec::new();
    for (spelling, cwd) in &spellings {
        let mut cmd = modstate(spelling);
        if let Some(cwd) = cwd {
            cmd.current_dir(cwd);
        }
        let out = cmd
            .args(["--lock-timeout", "0.3", "lock", "run", "k", "--", "true"])
            .output()
            .unwrap();
        if code(&out) != 5 {
            failures.push(format!(
                "{}: exit {} ({})",
                spelling.display(),
                code(&out),
                stderr(&out)
            ));
        }
        // A write through the spelling lands in the one database.
        let mut cmd = modstate(spelling);
        if let Some(cwd) = cwd {
            cmd.current_dir(cwd);
        }
        let out = cmd.args(["artifact", "get", &digest(1)]).output().unwrap();
        assert_eq!(code(&out), 0, "{}", stderr(&out));
    }
    unsafe { libc::kill(holder.id() as i32, libc::SIGTERM) };
    holder.wait().unwrap();
    assert!(failures.is_empty(), "not excluded: {failures:#?}");
    let stray: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".locks") || n.ends_with("-wal"))
        .collect();
    assert!(
        stray.is_empty(),
        "a second lock directory or WAL: {stray:?}"
    );
}

#[test]
fn a_database_with_a_second_hard_link_is_refused_before_sqlite_opens_it() {
    let (dir, db) = setup();
    let hard = dir.path().join("hard.db");
    fs::hard_link(&db, &hard).unwrap();
    let before = fs::read(&db).unwrap();
    for name in [&db, &hard] {
        for args in [vec!["artifact", "ls"], vec!["artifact", "put", &digest(2)]] {
            let out = crate::common::output_with_stdin(
                modstate(name).args(&args),
                envelope(2).as_bytes(),
            );
            assert_eq!(code(&out), 6, "{args:?}: {}", stderr(&out));
            assert!(stderr(&out).contains("hard links"), "{}", stderr(&out));
            assert_eq!(stderr(&out).lines().count(), 1);
        }
    }
    assert_eq!(
        fs::read(&db).unwrap(),
        before,
        "the refused database changed"
    );
    assert!(!dir.path().join("hard.db-wal").exists());
}

#[test]
fn a_url_is_refused_or_served_never_taken_as_a_path() {
    let dir = tempfile::tempdir().unwrap();
    // A postgres:// URL names a server (here none listens: exit 1); a scheme modstate does
    // not serve is refused (exit 6). Neither becomes a file, and no password is shown.
    for (url, expected) in [
        ("postgres://user:secret@127.0.0.1:1/db", 1),
        ("s3://bucket/state.db", 6),
        ("mysql://user:secret@localhost/db", 6),
    ] {
        for args in [
            &["artifact", "ls"][..],
            &["lock", "run", "k", "--", "true"],
            &["lock", "status"],
        ] {
            let out = Command::new(BIN)
                .current_dir(dir.path())
                .args(["--db", url])
                .args(args)
                .env_remove("PGPASSWORD")
                .output()
                .unwrap();
            assert_eq!(code(&out), expected, "{url} {args:?}: {}", stderr(&out));
            assert!(!stderr(&out).contains("secret"), "{}", stderr(&out));
            assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
        }
    }
    assert_eq!(
        fs::read_dir(dir.path()).unwrap().count(),
        0,
        "created something"
    );
}

#[test]
fn read_only_commands_create_nothing_where_there_is_no_database() {
    let dir = tempfile::tempdir().unwrap();
    let absent = format!("sha256:{}", "a".repeat(64));
    let id = "0190a4f2-0000-7000-8000-000000000000";
    for args in [
        vec!["artifact", "ls"],
        vec!["artifact", "get", &absent],
        vec!["memory", "ls"],
        vec!["memory", "get", id],
        vec!["memory", "search", "anything"],
        vec!["lock", "status"],
    ] {
        let out = Command::new(BIN)
            .current_dir(dir.path())
            .env_remove("MODSTATE_DB")
            .env("XDG_DATA_HOME", dir.path().join("xdg"))
            .env("HOME", dir.path().join("home"))
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(code(&out), 3, "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("no database at"),
            "{args:?}: {}",
            stderr(&out)
        );
        let created: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert!(created.is_empty(), "{args:?} created {created:?}");
    }
}

/// A long-lived process (an MCP server, say) keeps its connections open. While a reader pins
/// old frames the WAL grows past the limit; once the reader is gone, the next commit or
/// `shrink_wal` (what an export does when it ends) brings it back under the limit.
#[test]
fn the_wal_grows_past_its_limit_only_while_a_reader_pins_it_and_shrinks_back() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    let limit = 1 << 20;
    let store = Store::open(
        &db,
        Options {
            wal_size_limit: limit,
            ..Options::default()
        },
    )
    .unwrap();
    let wal = dir.path().join("state.db-wal");
    let big = |n: u32| {
        let padding = "x".repeat(256 * 1024);
        store
            .envelope(
                format!(r#"{{"type":"Module","version":1,"state":{{"n":{n},"p":"{padding}"}}}}"#)
                    .into_bytes(),
            )
            .unwrap()
    };
    // A reader in another connection pins the snapshot it started with.
    let pin = rusqlite::Connection::open(&db).unwrap();
    pin.execute_batch("BEGIN; SELECT count(*) FROM artifacts;")
        .unwrap();
    for n in 0u32..20 {
        store.put(&Digest::of(&n.to_le_bytes()), &big(n)).unwrap();
    }
    let pinned = fs::metadata(&wal).unwrap().len();
    assert!(pinned > limit, "the pinned WAL is only {pinned} bytes");
    pin.execute_batch("COMMIT").unwrap();
    drop(pin);

    // The next commit finds the WAL over the limit and, with no reader left, empties it.
    store
        .put(
            &Digest::of(b"small"),
            &store.envelope(envelope(7).into_bytes()).unwrap(),
        )
        .unwrap();
    let after_commit = fs::metadata(&wal).map_or(0, |m| m.len());
    assert!(
        after_commit <= limit,
        "WAL still {after_commit} bytes after a commit with no reader"
    );

    // And in-process: grow it again while pinned, then shrink without another write.
    let pin = rusqlite::Connection::open(&db).unwrap();
    pin.execute_batch("BEGIN; SELECT count(*) FROM artifacts;")
        .unwrap();
    for n in 20u32..40 {
        store.put(&Digest::of(&n.to_le_bytes()), &big(n)).unwrap();
    }
    assert!(fs::metadata(&wal).unwrap().len() > limit);
    pin.execute_batch("COMMIT").unwrap();
    drop(pin);
    store.shrink_wal().unwrap();
    let shrunk = fs::metadata(&wal).map_or(0, |m| m.len());
    assert!(shrunk <= limit, "WAL still {shrunk} bytes after shrink_wal");
    eprintln!(
        "WAL: {pinned} bytes while pinned, {after_commit} after a commit, {shrunk} after shrink_wal (limit {limit})"
    );
}
