//! Fleet locks that never have two holders (issue 29): a PostgreSQL lock lost while `lock run`
//! holds it (the server restarts, the holder's session is ended) stops the command before the
//! next holder may start (heartbeat, lease, lock-delay), and `lock run` exits 8; fencing
//! tokens refuse a stale holder's writes on both backends; the library's guard reports a loss.
//!
//! Overlap is judged by timestamps the commands write themselves (`date +%s%N`, one host, one
//! clock): the second command's start must come after the first command's end.

use crate::common::postgres::{Cluster, clear_pg_env};
use crate::common::{BIN, code, stderr, stdout_text};
use crate::conformance::Db;
use crate::mcp::Server;
use serde_json::json;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use modstate::lock::Mode;
use modstate::store::{Options, Store};

/// `modstate --db <url>` in `dir`, nothing of the caller's environment's database settings.
fn modstate(dir: &Path, url: &str) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir);
    cmd.env_remove("MODSTATE_DB");
    clear_pg_env(&mut cmd);
    cmd.arg("--db").arg(url);
    cmd
}

/// Polls until `path` exists.
fn wait_for_file(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A nanosecond stamp written by a command.
fn stamp(path: &Path) -> u128 {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.trim()
        .parse()
        .unwrap_or_else(|e| panic!("{}: {text:?}: {e}", path.display()))
}

/// Polls the server until some session waits for an advisory lock.
fn wait_for_waiter(cluster: &Cluster, db: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let waiting = cluster.psql_query(
            db,
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted",
        );
        if waiting.trim() != "0" {
            return;
        }
        assert!(Instant::now() < deadline, "the second client never waited");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The first holder: writes `a.start`, and `a.end` when it ends (SIGTERM included), after a
/// long sleep it should never finish.
fn first_holder(dir: &Path, url: &str) -> Child {
    let script = "date +%s%N > a.start; \
                  trap 'date +%s%N > a.end; exit 143' TERM; \
                  sleep 120 & wait; date +%s%N > a.end";
    modstate(dir, url)
        .args(["lock", "run", "k", "--", "sh", "-c", script])
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The second client: waits for `k` (up to 60 s), then writes `b.start`.
fn second_holder(dir: &Path, url: &str) -> Child {
    modstate(dir, url)
        .args(["--lock-timeout", "60", "lock", "run", "k", "--"])
        .args(["sh", "-c", "date +%s%N > b.start"])
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Both holders run; `lose` takes the first one's lock away; then the first must exit 8 with
/// one line, and the second must start only after the first command ended.
fn lost_lock_never_has_two_holders(lose: impl FnOnce(&Cluster, &str)) {
    let Some(cluster) = Cluster::private() else {
        return;
    };
    let db = cluster.database();
    let url = cluster.socket_url(&db);
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let init = modstate(dir, &url).arg("init").output().unwrap();
    assert_eq!(code(&init), 0, "{}", stderr(&init));

    let first = first_holder(dir, &url);
    wait_for_file(&dir.join("a.start"));
    let second = second_holder(dir, &url);
    wait_for_waiter(&cluster, &db);

    let lost_at = Instant::now();
    lose(&cluster, &db);

    let first = first.wait_with_output().unwrap();
    // Reported, not asserted: how long the holder took to see the loss and stop its command.
    let noticed = lost_at.elapsed();
    let second = second.wait_with_output().unwrap();
    let err = stderr(&first);
    assert_eq!(code(&first), 8, "{err}");
    assert_eq!(err.lines().count(), 1, "not one line: {err}");
    assert!(err.contains("lost"), "{err}");
    assert_eq!(code(&second), 0, "{}", stderr(&second));
    let a_end = stamp(&dir.join("a.end"));
    let b_start = stamp(&dir.join("b.start"));
    assert!(
        a_end < b_start,
        "the second command started {} ms before the first ended",
        (a_end - b_start) / 1_000_000
    );
    eprintln!(
        "loss seen and command stopped {noticed:?} after the session was lost; first command \
         ended {} ms before the second started; first said: {err}",
        (b_start - a_end) / 1_000_000
    );
}

#[test]
fn a_server_restart_stops_the_holder_before_the_waiter_starts() {
    lost_lock_never_has_two_holders(|cluster, _| cluster.restart());
}

#[test]
fn an_ended_session_stops_the_holder_before_the_waiter_starts() {
    lost_lock_never_has_two_holders(|cluster, db| {
        // The first holder's session: the only one holding an exclusive advisory lock.
        let ended = cluster.psql_query(
            db,
            "SELECT count(pg_terminate_backend(pid)) FROM pg_locks \
             WHERE locktype = 'advisory' AND granted AND mode = 'ExclusiveLock'",
        );
        assert_eq!(ended.trim(), "1", "{ended}");
    });
}

/// Two acquisitions of `k` in a row, each printing its token; writes with the older are
/// refused (exit 4, nothing written), with the newer accepted.
fn fencing(db: &Db) {
    let token = || {
        let out = db
            .cmd()
            .args([
                "lock",
                "run",
                "k",
                "--",
                "sh",
                "-c",
                "echo $MODSTATE_LOCK_TOKEN",
            ])
            .output()
            .unwrap();
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        stdout_text(&out).trim().parse::<u64>().unwrap()
    };
    let old = token();
    let new = token();
    assert!(new > old, "{old} then {new}");

    let refused = db
        .cmd()
        .args([
            "memory",
            "add",
            "--fence",
            &format!("k={old}"),
            "from the old holder",
        ])
        .output()
        .unwrap();
    assert_eq!(code(&refused), 4, "{}", stderr(&refused));
    assert!(stderr(&refused).contains("fenced"), "{}", stderr(&refused));
    assert_eq!(stderr(&refused).lines().count(), 1, "{}", stderr(&refused));
    let refused_rm = db
        .cmd()
        .args(["artifact", "rm", "--fence", &format!("k={old}")])
        .arg(format!("sha256:{}", "ab".repeat(32)))
        .output()
        .unwrap();
    assert_eq!(code(&refused_rm), 4, "{}", stderr(&refused_rm));

    let accepted = db
        .cmd()
        .args([
            "memory",
            "add",
            "--fence",
            &format!("k={new}"),
            "from the new holder",
        ])
        .output()
        .unwrap();
    assert_eq!(code(&accepted), 0, "{}", stderr(&accepted));

    let listed = db.cmd().args(["memory", "ls"]).output().unwrap();
    let text = stdout_text(&listed);
    assert!(text.contains("from the new holder"), "{text}");
    assert!(!text.contains("from the old holder"), "{text}");

    // The MCP write tools take the same fence.
    let mut server = Server::spawn(db.cmd(), &[], db.dir().join("mcp-stderr.log"));
    let init = server.initialize("2025-11-25");
    assert!(init["result"].is_object(), "{init}");
    server.notify("notifications/initialized", None);
    let refused = server.call_err(
        "add_memory",
        json!({"text": "old holder over MCP", "fence": format!("k={old}")}),
    );
    assert!(refused.contains("fenced"), "{refused}");
    server.call_ok(
        "add_memory",
        json!({"text": "new holder over MCP", "fence": format!("k={new}")}),
    );
    drop(server);
    let text = stdout_text(&db.cmd().args(["memory", "ls"]).output().unwrap());
    assert!(text.contains("new holder over MCP"), "{text}");
    assert!(!text.contains("old holder over MCP"), "{text}");

    // A token never issued is bad input, not a pass.
    let never = db
        .cmd()
        .args(["memory", "add", "--fence", &format!("k={}", new + 1), "x"])
        .output()
        .unwrap();
    assert_eq!(code(&never), 6, "{}", stderr(&never));
}

#[test]
fn a_stale_fencing_token_is_refused_on_sqlite() {
    fencing(&Db::sqlite());
}

#[test]
fn a_stale_fencing_token_is_refused_on_postgres() {
    if let Some(db) = Db::postgres() {
        fencing(&db);
    }
}

#[test]
fn lock_status_shows_the_token_of_an_exclusive_key() {
    for db in [Some(Db::sqlite()), Db::postgres()].into_iter().flatten() {
        let out = db
            .cmd()
            .args(["lock", "run", "k", "--", "sh", "-c"])
            .arg(format!(
                "echo $MODSTATE_LOCK_TOKEN; '{BIN}' --db '{}' --json lock status",
                db.arg()
            ))
            .output()
            .unwrap();
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        let text = stdout_text(&out);
        let (token, status) = text.split_once('\n').unwrap();
        let rows: Vec<serde_json::Value> = serde_json::from_str(status).unwrap();
        let k = rows.iter().find(|r| r["name"] == "k").expect("k listed");
        assert_eq!(
            k["holder"]["token"].as_u64(),
            Some(token.trim().parse().unwrap()),
            "{text}"
        );
    }
}

/// The library's guard of a PostgreSQL lock: a checked method and a callback report its
/// loss when its session is ended; a file lock's guard never reports one.
#[test]
fn a_library_guard_reports_a_lost_session() {
    let Some(db) = Db::postgres() else {
        return;
    };
    let store = Store::open(db.arg(), Options::default()).unwrap();
    let guard = store.locks().keyed(&["lib"], Mode::Exclusive).unwrap();
    assert!(guard.token("lib").is_some());
    guard.check().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    guard.on_lost(move |e| {
        let _ = tx.send(e);
    });
    let ended = db.cluster().psql_query(
        &db.name,
        "SELECT count(pg_terminate_backend(pid)) FROM pg_locks \
         WHERE locktype = 'advisory' AND granted AND mode = 'ExclusiveLock'",
    );
    assert_eq!(ended.trim(), "1");
    let e = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("loss reported");
    assert!(matches!(e, modstate::Error::LockLost(_)), "{e}");
    let checked = guard.check().unwrap_err();
    assert!(matches!(checked, modstate::Error::LockLost(_)), "{checked}");

    let file = Db::sqlite();
    let store = Store::open(file.arg(), Options::default()).unwrap();
    let first = store.locks().keyed(&["lib"], Mode::Exclusive).unwrap();
    let t1 = first.token("lib").unwrap();
    first.check().unwrap();
    drop(first);
    let second = store.locks().keyed(&["lib"], Mode::Exclusive).unwrap();
    assert!(second.token("lib").unwrap() > t1);
}

/// `artifact resolve` whose lock is lost while its compute command runs stops the command,
/// stores nothing and exits 8.
#[test]
fn resolve_stops_its_command_and_stores_nothing_when_its_lock_is_lost() {
    let Some(db) = Db::postgres() else {
        return;
    };
    let digest = format!("sha256:{}", "cd".repeat(32));
    let dir = db.dir().to_path_buf();
    let script = "date +%s%N > r.start; \
                  trap 'date +%s%N > r.end; exit 143' TERM; \
                  sleep 120 & wait; echo '{}'";
    let resolver = db
        .cmd()
        .current_dir(&dir)
        .args(["artifact", "resolve", &digest, "--", "sh", "-c", script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_file(&dir.join("r.start"));
    let ended = db.cluster().psql_query(
        &db.name,
        "SELECT count(pg_terminate_backend(pid)) FROM pg_locks \
         WHERE locktype = 'advisory' AND granted AND mode = 'ExclusiveLock'",
    );
    assert_eq!(ended.trim(), "1", "{ended}");
    let out = resolver.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(code(&out), 8, "{err}");
    assert_eq!(err.lines().count(), 1, "not one line: {err}");
    assert!(err.contains("lost"), "{err}");
    assert!(dir.join("r.end").exists(), "the command was not stopped");
    let get = db
        .cmd()
        .args(["artifact", "get", &digest])
        .output()
        .unwrap();
    assert_eq!(code(&get), 3, "stored after a lost lock: {}", stderr(&get));
}

/// A server that stops answering (its backend stopped with SIGSTOP: the socket stays open and
/// the kernel keeps acknowledging, as on a silent network) is noticed by the lease's own
/// deadline: `lock run` stops its command and exits 8 without waiting for the server.
#[test]
fn a_server_that_stops_answering_stops_the_holder() {
    let Some(db) = Db::postgres() else {
        return;
    };
    let dir = db.dir().to_path_buf();
    let script = "date +%s%N > a.start; \
                  trap 'date +%s%N > a.end; exit 143' TERM; \
                  sleep 120 & wait";
    let holder = db
        .cmd()
        .current_dir(&dir)
        .args(["lock", "run", "k", "--", "sh", "-c", script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_file(&dir.join("a.start"));
    let pid = db.cluster().psql_query(
        &db.name,
        "SELECT pid FROM pg_locks \
         WHERE locktype = 'advisory' AND granted AND mode = 'ExclusiveLock'",
    );
    let pid: i32 = pid.trim().parse().unwrap();
    // SAFETY: signals the cluster's backend process, which this test process started.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let out = holder.wait_with_output();
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let out = out.unwrap();
    let err = stderr(&out);
    assert_eq!(code(&out), 8, "{err}");
    assert_eq!(err.lines().count(), 1, "not one line: {err}");
    assert!(err.contains("could not be renewed"), "{err}");
    assert!(dir.join("a.end").exists(), "the command was not stopped");
}
