//! PostgreSQL only: the throwaway cluster itself, migrating between backends with one export
//! and one restore, and the faults only a server has (authentication, a missing database, an
//! unreachable or restarted server, TLS refused, a statement or lock timeout), and that a
//! password never shows. What both backends share is in `conformance/`.
//!
//! Exit codes: `cli::exit_code` (and `modstate --help`). A server fault is a clean failure — a
//! non-zero exit that is not a signal or a panic, one line on stderr, no password — with the
//! documented code: 1 for a server that cannot be reached, refuses the login or TLS, or drops
//! the connection; 3 for a database that does not exist; 5 for a lock or statement timeout.

use crate::common::postgres::{Cluster, PW_PASSWORD, PW_USER, clear_pg_env};
use crate::common::{BIN, free_port, stderr};
use crate::conformance::Db;
use crate::conformance::snapshot::{contents, populate};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// `modstate --db <url> args…` in the cluster's scratch dir, nothing of the caller's
/// MODSTATE_DB or PG* environment.
fn modstate(cluster: &Cluster, url: &str) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(&cluster.scratch);
    cmd.env_remove("MODSTATE_DB");
    clear_pg_env(&mut cmd);
    cmd.arg("--db").arg(url);
    cmd
}

/// A clean failure: exited (no signal), not 0, not a panic, ONE line on stderr, and neither
/// stream holds `secret`.
#[track_caller]
fn assert_clean_failure(out: &Output, secret: &str) -> i32 {
    let err = stderr(out);
    let code = out
        .status
        .code()
        .unwrap_or_else(|| panic!("ended by a signal: {:?}; {err}", out.status));
    assert_ne!(code, 0, "succeeded: {err}");
    assert_ne!(code, 101, "panicked: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.lines().count(), 1, "not one line: {err}");
    assert_no_secret(out, secret);
    code
}

#[track_caller]
fn assert_no_secret(out: &Output, secret: &str) {
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(out));
    assert!(!all.contains(secret), "the password shows: {all}");
}

#[test]
fn the_cluster_starts_and_serves_a_fresh_database() {
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let db = cluster.database();
    let version = cluster.psql_query(&db, "SELECT version()");
    assert!(version.starts_with("PostgreSQL "), "{version}");
    assert_eq!(
        cluster.psql_query(&db, "SHOW server_encoding").trim(),
        "UTF8"
    );
    assert_eq!(
        cluster.psql_query(&db, "SHOW lc_ctype").trim(),
        "C.UTF-8",
        "Greek is lowercased and pg_trgm finds CJK only in a UTF-8 locale"
    );
    assert_eq!(
        cluster.psql_query(&db, "SELECT current_database()").trim(),
        db
    );
    // The contrib extensions the backend may use are installed.
    cluster.psql_exec(&db, "CREATE EXTENSION unaccent; CREATE EXTENSION pg_trgm");
    // The password role: refused without its password over TCP, admitted with it.
    let psql = |password: &str| {
        let mut cmd = Command::new(crate::common::postgres::bindir().unwrap().join("psql"));
        clear_pg_env(&mut cmd);
        cmd.args(["-X", "-w", "-At", "-c", "SELECT 1"])
            .arg(format!(
                "postgresql://{PW_USER}@127.0.0.1:{}/{db}?sslmode=disable",
                cluster.port
            ))
            .env("PGPASSWORD", password)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    assert!(!psql("wrong").status.success());
    let ok = psql(PW_PASSWORD);
    assert!(ok.status.success(), "{}", stderr(&ok));
}

/// A server stopped by its test, or by the test's thread ending, is gone, and a panicking
/// test leaves no server behind.
#[test]
fn a_private_cluster_restarts_and_is_gone_when_dropped_or_its_test_panics() {
    let Some(cluster) = Cluster::private() else {
        return;
    };
    let db = cluster.database();
    cluster.restart();
    assert_eq!(cluster.psql_query(&db, "SELECT 1").trim(), "1");
    let socket = cluster
        .socket_dir
        .join(format!(".s.PGSQL.{}", cluster.port));
    assert!(socket.exists());
    drop(cluster);
    assert!(!socket.exists(), "the server outlived its cluster");

    // A test thread that panics while holding a private cluster.
    let (tx, rx) = std::sync::mpsc::channel();
    let panicked = std::thread::spawn(move || {
        let cluster = Cluster::private().unwrap();
        tx.send(
            cluster
                .socket_dir
                .join(format!(".s.PGSQL.{}", cluster.port)),
        )
        .unwrap();
        panic!("a test failing with its cluster up");
    })
    .join();
    assert!(panicked.is_err());
    let socket = rx.recv().unwrap();
    assert!(!socket.exists(), "a panicking test left its server running");
}

/// The migration path: `snapshot export` from SQLite, `snapshot restore --db postgres://…`,
/// and back again, each a round trip of everything a user can read.
#[test]
fn a_sqlite_store_moves_to_postgres_and_back_with_one_export_and_one_restore() {
    let Some(pg) = Db::postgres() else {
        return;
    };
    let sqlite = Db::sqlite();
    populate(&sqlite);
    let namespaces = ["", "agent"];
    let original = contents(&sqlite, &namespaces);
    let snap = sqlite.dir().join("move.db");
    sqlite.json(&["snapshot", "export", snap.to_str().unwrap()]);

    let report = pg.json(&["snapshot", "restore", snap.to_str().unwrap()]);
    assert_eq!(report["restored"]["artifacts"], 2, "{report}");
    assert_eq!(contents(&pg, &namespaces), original);
    let found = pg.json(&["memory", "search", "kubernetes"]);
    assert_eq!(found["memories"].as_array().unwrap().len(), 1, "{found}");

    // And back: a PostgreSQL export is the same portable file.
    let back = pg.dir().join("back.db");
    pg.json(&["snapshot", "export", back.to_str().unwrap()]);
    let verify = Command::new(BIN)
        .args(["snapshot", "verify"])
        .arg(&back)
        .output()
        .unwrap();
    assert_eq!(verify.status.code(), Some(0), "{}", stderr(&verify));
    let home = Db::sqlite();
    home.json(&["snapshot", "restore", back.to_str().unwrap()]);
    assert_eq!(contents(&home, &namespaces), original);
}

/// The same store through TCP and through `MODSTATE_DB`, as well as `--db` on the socket.
#[test]
fn tcp_and_socket_urls_and_modstate_db_reach_the_same_store() {
    let Some(db) = Db::postgres() else {
        return;
    };
    let cluster = db.cluster();
    let d = format!("sha256:{}", "7".repeat(64));
    let env = r#"{"type":"Module","version":1,"state":{"via":"tcp"}}"#;
    let mut put = modstate(cluster, &cluster.tcp_url(&db.name));
    put.args(["artifact", "put", &d, "-"]);
    let out = crate::common::output_with_stdin(&mut put, env.as_bytes());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let get = db.run(&["artifact", "get", &d]);
    assert_eq!(get.stdout, env.as_bytes());
    let via_env = db.cmd_env().args(["artifact", "get", &d]).output().unwrap();
    assert_eq!(via_env.stdout, env.as_bytes(), "{}", stderr(&via_env));
}

#[test]
fn a_wrong_password_fails_in_one_line_that_never_shows_it() {
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let db = cluster.database_owned_by(PW_USER);
    let wrong = "Wr0ng-pw-9d1e";
    for args in [&["artifact", "ls"][..], &["memory", "add", "x"], &["init"]] {
        let out = modstate(cluster, &cluster.password_url(&db, wrong))
            .args(args)
            .output()
            .unwrap();
        // Exit 1: the server refused the login.
        assert_eq!(assert_clean_failure(&out, wrong), 1);
        // Through PGPASSWORD instead of the URL.
        let url = format!(
            "postgres://{PW_USER}@127.0.0.1:{}/{db}?sslmode=disable",
            cluster.port
        );
        let out = modstate(cluster, &url)
            .env("PGPASSWORD", wrong)
            .args(args)
            .output()
            .unwrap();
        assert_clean_failure(&out, wrong);
    }
    // The right one works.
    let out = modstate(cluster, &cluster.password_url(&db, PW_PASSWORD))
        .args(["memory", "add", "hello"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_no_secret(&out, PW_PASSWORD);
}

#[test]
fn a_missing_database_fails_cleanly_and_is_not_created() {
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let name = format!("t_absent_{}", std::process::id());
    for url in [cluster.socket_url(&name), cluster.tcp_url(&name)] {
        let out = modstate(cluster, &url)
            .args(["artifact", "ls"])
            .output()
            .unwrap();
        // Exit 3, as for an absent SQLite file: no database there.
        assert_eq!(assert_clean_failure(&out, PW_PASSWORD), 3);
    }
    let exists = cluster.psql_query(
        "postgres",
        &format!("SELECT count(*) FROM pg_database WHERE datname = '{name}'"),
    );
    assert_eq!(exists.trim(), "0");
}

#[test]
fn an_unreachable_server_fails_cleanly_and_promptly() {
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let port = free_port(); // nothing listens there
    let dir = tempfile::tempdir().unwrap();
    for url in [
        format!("postgres://{PW_USER}:{PW_PASSWORD}@127.0.0.1:{port}/x?sslmode=disable"),
        format!(
            "postgres://postgres@/x?host={}&port={port}",
            crate::common::postgres::percent_encode(&dir.path().to_string_lossy())
        ),
    ] {
        let started = Instant::now();
        let out = modstate(cluster, &url)
            .args(["artifact", "ls"])
            .output()
            .unwrap();
        // Exit 1: no server to talk to.
        assert_eq!(assert_clean_failure(&out, PW_PASSWORD), 1);
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "took {:?}",
            started.elapsed()
        );
    }
}

#[test]
fn sslmode_require_against_a_server_without_tls_fails_cleanly() {
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let db = cluster.database_owned_by(PW_USER);
    let url = format!(
        "postgres://{PW_USER}:{PW_PASSWORD}@127.0.0.1:{}/{db}?sslmode=require",
        cluster.port
    );
    let out = modstate(cluster, &url)
        .args(["artifact", "ls"])
        .output()
        .unwrap();
    // Exit 1: the server refused TLS.
    assert_eq!(assert_clean_failure(&out, PW_PASSWORD), 1);
    // `prefer` falls back to a plain connection.
    let url = url.replace("sslmode=require", "sslmode=prefer");
    let out = modstate(cluster, &url).args(["init"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

/// Writers keep putting while the server restarts (fast shutdown): each command either
/// succeeds or fails cleanly, every acknowledged put is there afterwards, and the next
/// commands succeed.
#[test]
fn a_server_restarted_mid_load_fails_clients_cleanly_and_the_next_commands_work() {
    let Some(owned) = Cluster::private() else {
        return;
    };
    let cluster = &owned;
    let db = cluster.database();
    let url = cluster.socket_url(&db);
    assert_eq!(
        modstate(cluster, &url)
            .arg("init")
            .output()
            .unwrap()
            .status
            .code(),
        Some(0)
    );
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (acked, failures) = std::thread::scope(|s| {
        let writers: Vec<_> = (0..4)
            .map(|w| {
                let (url, stop) = (&url, &stop);
                s.spawn(move || {
                    let mut acked = Vec::new();
                    let mut failures = Vec::new();
                    let mut i = 0;
                    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                        let d = modstate::Digest::of(format!("w{w}-{i}").as_bytes());
                        let env = format!(
                            r#"{{"type":"Module","version":1,"state":{{"w":{w},"i":{i}}}}}"#
                        );
                        let mut cmd = modstate(cluster, url);
                        cmd.args(["--lock-timeout", "2", "artifact", "put", d.as_str(), "-"]);
                        let out = crate::common::output_with_stdin(&mut cmd, env.as_bytes());
                        if out.status.success() {
                            acked.push((d.as_str().to_owned(), env));
                        } else {
                            failures.push(out);
                        }
                        i += 1;
                    }
                    (acked, failures)
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(500));
        cluster.restart();
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let mut acked = Vec::new();
        let mut failures = Vec::new();
        for w in writers {
            let (a, f) = w.join().unwrap();
            acked.extend(a);
            failures.extend(f);
        }
        (acked, failures)
    });
    eprintln!(
        "restart under load: {} puts acknowledged, {} failed",
        acked.len(),
        failures.len()
    );
    for out in &failures {
        // Exit 1: the connection was lost, or the server was not there.
        assert_eq!(assert_clean_failure(out, PW_PASSWORD), 1);
    }
    // The next commands work, and every acknowledged put is there, byte for byte.
    for (d, env) in &acked {
        let out = modstate(cluster, &url)
            .args(["artifact", "get", d])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{d}: {}", stderr(&out));
        assert_eq!(out.stdout, env.as_bytes());
    }
    let out = modstate(cluster, &url)
        .args(["memory", "add", "after the restart"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

/// A write that waits on a table another session holds locked gives up after
/// `--lock-timeout` with exit 5, and writes nothing.
#[test]
fn a_statement_blocked_by_a_table_lock_times_out_with_exit_5() {
    let Some(db) = Db::postgres() else {
        return;
    };
    let cluster = db.cluster();
    assert_eq!(db.run(&["init"]).status.code(), Some(0));
    // Lock every table modstate made, whatever their names, in one open transaction.
    let mut session = cluster.psql_session(&db.name);
    {
        use std::io::{BufRead, Write};
        let stdin = session.stdin.as_mut().unwrap();
        writeln!(
            stdin,
            "BEGIN;\nDO $$ DECLARE t record; BEGIN FOR t IN SELECT schemaname, tablename FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema') LOOP EXECUTE format('LOCK TABLE %I.%I IN ACCESS EXCLUSIVE MODE', t.schemaname, t.tablename); END LOOP; END $$;\nSELECT 'locked';"
        )
        .unwrap();
        stdin.flush().unwrap();
        let mut line = String::new();
        std::io::BufReader::new(session.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "locked");
    }
    let d = format!("sha256:{}", "5".repeat(64));
    let env = r#"{"type":"Module","version":1,"state":{}}"#;
    let started = Instant::now();
    let mut cmd = db.cmd();
    cmd.args(["--lock-timeout", "1", "artifact", "put", &d, "-"]);
    let out = crate::common::output_with_stdin(&mut cmd, env.as_bytes());
    let waited = started.elapsed();
    drop(session.stdin.take()); // ends the session: ROLLBACK
    let _ = session.wait();
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    assert!(waited < Duration::from_secs(10), "waited {waited:?}");
    assert_eq!(db.run(&["artifact", "get", &d]).status.code(), Some(3));
}

/// A lock held through a URL with a password: `lock status`, the waiter's line and the
/// timeout message name the holder, never the password.
#[test]
fn lock_holders_and_lock_status_never_show_the_password() {
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let db = cluster.database_owned_by(PW_USER);
    let url = cluster.password_url(&db, PW_PASSWORD);
    let mut holder = modstate(cluster, &url)
        .args(["lock", "run", "k", "--", "sleep", "5"])
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        let out = modstate(cluster, &url)
            .args(["--json", "lock", "status"])
            .output()
            .unwrap();
        assert_no_secret(&out, PW_PASSWORD);
        if out.status.success() {
            let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            if rows
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["name"] == "k" && r["state"] == "held")
            {
                break out;
            }
        }
        assert!(Instant::now() < deadline, "k never became held");
        std::thread::sleep(Duration::from_millis(20));
    };
    // What `ps` shows of the holder: its arguments with the password overwritten.
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", holder.id())).unwrap();
    let cmdline = String::from_utf8_lossy(&cmdline);
    assert!(!cmdline.contains(PW_PASSWORD), "{cmdline}");
    assert!(cmdline.contains(&format!("{PW_USER}:xxx")), "{cmdline}");
    let text = modstate(cluster, &url)
        .args(["lock", "status"])
        .output()
        .unwrap();
    let waiter = modstate(cluster, &url)
        .args(["--lock-timeout", "0.5", "lock", "run", "k", "--", "true"])
        .output()
        .unwrap();
    let _ = holder.kill();
    let _ = holder.wait();
    assert_no_secret(&text, PW_PASSWORD);
    assert_eq!(waiter.status.code(), Some(5), "{}", stderr(&waiter));
    assert_no_secret(&waiter, PW_PASSWORD);
    assert!(
        stderr(&waiter).contains(&format!("held by pid {}", holder.id())),
        "{}",
        stderr(&waiter)
    );
    assert!(String::from_utf8_lossy(&status.stdout).contains(&holder.id().to_string()));
}

/// A database written by a newer modstate is refused (exit 6) and left as it was.
#[test]
fn a_newer_schema_is_refused_and_left_untouched() {
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let db = cluster.database();
    let url = cluster.socket_url(&db);
    let out = modstate(cluster, &url).args(["init"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    cluster.psql_exec(&db, "UPDATE modstate_schema SET version = 99");
    let tables = |c: &Cluster| {
        c.psql_query(
            &db,
            "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables WHERE schemaname = 'public'",
        )
    };
    let before = tables(cluster);
    for args in [&["artifact", "ls"][..], &["memory", "add", "x"], &["init"]] {
        let out = modstate(cluster, &url).args(args).output().unwrap();
        assert_eq!(assert_clean_failure(&out, PW_PASSWORD), 6, "{args:?}");
        assert!(
            stderr(&out).contains("schema version 99"),
            "{}",
            stderr(&out)
        );
    }
    assert_eq!(tables(cluster), before);
    assert_eq!(
        cluster
            .psql_query(&db, "SELECT version FROM modstate_schema")
            .trim(),
        "99"
    );
}

/// Eight processes opening one new database at once: the schema is created exactly once and
/// every one of them works.
#[test]
fn eight_processes_creating_one_store_at_once_create_it_once() {
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let db = cluster.database();
    let url = cluster.socket_url(&db);
    let children: Vec<_> = (0..8)
        .map(|i| {
            modstate(cluster, &url)
                .args(["memory", "add", &format!("memory {i}")])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<Output> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    for out in &outs {
        assert_eq!(out.status.code(), Some(0), "{}", stderr(out));
    }
    let created = outs
        .iter()
        .filter(|o| stderr(o).contains("created modstate store"))
        .count();
    assert_eq!(created, 1);
    assert_eq!(
        cluster
            .psql_query(&db, "SELECT count(*) FROM memories")
            .trim(),
        "8"
    );
}

/// The PG* variables fill in what the URL leaves out, as for libpq: `postgres:///` alone
/// reaches the store when PGHOST, PGPORT, PGUSER and PGDATABASE say where.
#[test]
fn pg_environment_variables_fill_what_the_url_leaves_out() {
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let db = cluster.database();
    let out = modstate(cluster, &cluster.socket_url(&db))
        .args(["artifact", "import", "fixtures/moduletypes/valid.json"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = modstate(cluster, "postgres:///")
        .env("PGHOST", &cluster.socket_dir)
        .env("PGPORT", cluster.port.to_string())
        .env("PGUSER", "postgres")
        .env("PGDATABASE", &db)
        .args(["artifact", "ls"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
}

/// TLS with libpq's sslmodes, against a server whose certificate a throwaway CA signed for
/// `localhost`: `require` encrypts (the session shows in `pg_stat_ssl`) without checking the
/// certificate; `verify-full` needs the CA (`sslrootcert`) and the host name; `verify-ca`
/// needs the CA only. Every refusal is one line, exit 1.
#[test]
fn tls_follows_libpq_sslmodes() {
    if crate::common::require_tool("openssl", "the TLS test", "apt-get install openssl").is_none() {
        return;
    }
    let Some(owned) = Cluster::private() else {
        return;
    };
    let cluster = &owned;
    let ca = cluster.enable_tls();
    let db = cluster.database();
    let port = cluster.port;
    let by_name = format!("postgres://postgres@localhost:{port}/{db}?hostaddr=127.0.0.1");
    let by_address = format!("postgres://postgres@127.0.0.1:{port}/{db}?connect_timeout=10");
    let run = |url: &str, args: &[&str]| modstate(cluster, url).args(args).output().unwrap();

    // require: encrypted, whatever the certificate. A held lock keeps a session open to look at.
    let required = format!("{by_address}&sslmode=require");
    let out = run(&required, &["init"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let mut holder = modstate(cluster, &required)
        .args(["lock", "run", "k", "--", "sleep", "3"])
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let version = loop {
        let version = cluster.psql_query(
            "postgres",
            "SELECT s.version FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
             WHERE a.application_name = 'modstate' AND s.ssl",
        );
        if !version.trim().is_empty() {
            break version;
        }
        assert!(Instant::now() < deadline, "no TLS session from modstate");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(version.contains("TLSv1.3"), "{version}");
    let _ = holder.kill();
    let _ = holder.wait();

    // Over the Unix socket there is no TLS, whatever sslmode says (the server never offers
    // it there; libpq ignores sslmode for sockets too).
    for mode in ["prefer", "require"] {
        let out = run(
            &format!("{}&sslmode={mode}", cluster.socket_url(&db)),
            &["artifact", "ls"],
        );
        assert_eq!(out.status.code(), Some(0), "{mode}: {}", stderr(&out));
    }

    let root = format!("sslrootcert={}", ca.display());
    // verify-full: the CA and the name.
    let out = run(
        &format!("{by_name}&sslmode=verify-full&{root}"),
        &["artifact", "ls"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // Without the CA (the system's roots do not know it): refused.
    let out = run(
        &format!("{by_name}&sslmode=verify-full"),
        &["artifact", "ls"],
    );
    assert_eq!(assert_clean_failure(&out, PW_PASSWORD), 1);
    // The certificate names localhost, not 127.0.0.1: verify-full refuses, verify-ca accepts.
    let out = run(
        &format!("{by_address}&sslmode=verify-full&{root}"),
        &["artifact", "ls"],
    );
    assert_eq!(assert_clean_failure(&out, PW_PASSWORD), 1);
    let out = run(
        &format!("{by_address}&sslmode=verify-ca&{root}"),
        &["artifact", "ls"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

/// `lock status` lists holders on every host: a session from another machine (here a psql
/// session that holds key `k` as modstate does and records itself as host `build-7`) is
/// listed with its host, and a waiter names it.
#[test]
fn lock_status_lists_holders_on_other_hosts() {
    use std::io::{BufRead, Write};
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let db = cluster.database();
    let url = cluster.socket_url(&db);
    let out = modstate(cluster, &url).args(["init"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let mut session = cluster.psql_session(&db);
    let stdin = session.stdin.as_mut().unwrap();
    // The key as modstate derives it: the first 8 bytes of sha256("modstate/key/k").
    writeln!(
        stdin,
        "SELECT pg_advisory_lock(('x' || substr(encode(sha256('modstate/key/k'), 'hex'), 1, 16))::bit(64)::bigint);
         INSERT INTO modstate_lock_holders (pid, key, host, process, command, acquired_at)
             VALUES (pg_backend_pid(), 'k', 'build-7', 4242, 'modstate lock run k -- make', '2026-12-01T00:00:00Z');
         SELECT 'held';"
    )
    .unwrap();
    stdin.flush().unwrap();
    let mut reader = std::io::BufReader::new(session.stdout.as_mut().unwrap());
    let mut line = String::new();
    while !line.contains("held") {
        line.clear();
        assert!(reader.read_line(&mut line).unwrap() > 0, "psql ended");
    }
    let out = modstate(cluster, &url)
        .args(["--json", "lock", "status"])
        .output()
        .unwrap();
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let k = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "k")
        .unwrap_or_else(|| panic!("k not listed: {rows}"));
    assert_eq!(k["state"], "held");
    assert_eq!(k["holders"][0]["host"], "build-7", "{k}");
    assert_eq!(k["holders"][0]["pid"], 4242, "{k}");
    let waiter = modstate(cluster, &url)
        .args(["--lock-timeout", "0.3", "lock", "run", "k", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(waiter.status.code(), Some(5), "{}", stderr(&waiter));
    assert!(
        stderr(&waiter).contains("held by pid 4242 on build-7: modstate lock run k -- make"),
        "{}",
        stderr(&waiter)
    );
    drop(session.stdin.take());
    let _ = session.wait();
}

/// A long-lived `modstate mcp` outlives a server restart: the pooled connection the server
/// dropped is noticed before use, and the next tool call works.
#[test]
fn an_mcp_server_outlives_a_postgres_restart() {
    let Some(owned) = Cluster::private() else {
        return;
    };
    let cluster = &owned;
    let db = cluster.database();
    let url = cluster.socket_url(&db);
    let mut server = crate::mcp::Server::spawn(
        modstate(cluster, &url),
        &[],
        cluster.scratch.join("mcp-stderr.log"),
    );
    let init = server.initialize("2025-11-25");
    assert_eq!(init["result"]["protocolVersion"], "2025-11-25", "{init}");
    server.notify("notifications/initialized", None);
    let first = server.call(
        "add_memory",
        serde_json::json!({"text": "before the restart"}),
    );
    assert_eq!(first["isError"], false, "{first}");
    cluster.restart();
    // Past the idle time after which a pooled connection is checked before use.
    std::thread::sleep(Duration::from_secs(6));
    let second = server.call(
        "add_memory",
        serde_json::json!({"text": "after the restart"}),
    );
    assert_eq!(second["isError"], false, "{second}");
    let found = server.call("search_memories", serde_json::json!({"query": "restart"}));
    assert_eq!(found["isError"], false, "{found}");
    let (status, _) = server.close();
    assert_eq!(status.code(), Some(0));
}

/// A database the previous release created (schema 3, built here from its own schema file
/// and rows as its writes stored them) upgrades to schema 4: every memory kept, and the
/// search totals the migration counts from the existing rows rank them exactly as a new
/// SQLite store of the same memories does.
#[test]
fn a_schema_3_database_upgrades_and_counts_its_search_totals() {
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let db = cluster.database();
    let url = cluster.socket_url(&db);
    cluster.psql_exec(&db, include_str!("../migrations/postgres/0003_schema.sql"));
    cluster.psql_exec(
        &db,
        "INSERT INTO modstate_schema (singleton, version) VALUES (true, 3)",
    );
    let bodies = [
        "The user prefers Rust for CLI tools",
        "Deploys to production happen on Fridays after the standup",
        "We went to Lisbon in May and the children loved the trams",
        "Caroline researched adoption agencies last week",
        "deploy deploy deploy: the deploy runbook",
    ];
    for (i, body) in bodies.iter().enumerate() {
        // As the schema-3 writer stored a memory: the vector of its letters and digits.
        let indexed: String = body
            .chars()
            .map(|c| if c.is_alphanumeric() { c } else { ' ' })
            .collect();
        cluster.psql_exec(
            &db,
            &format!(
                "INSERT INTO memories (id, namespace, category, body, grams, search, created_at, updated_at, version)
                 VALUES ('01900000-0000-7000-8000-00000000000{i}', 'old', '', '{body}', '',
                         to_tsvector('modstate_search', '{indexed}'),
                         '2026-01-01T00:00:00.000000Z', '2026-01-01T00:00:00.000000Z', {})",
                i + 1
            ),
        );
    }
    cluster.psql_exec(
        &db,
        "UPDATE memory_counter SET value = 5; INSERT INTO memory_namespaces VALUES ('old', 5)",
    );

    let run = |url: &str, args: &[&str]| {
        let out = modstate(cluster, url).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        out
    };
    let page: serde_json::Value =
        serde_json::from_slice(&run(&url, &["--json", "memory", "ls"]).stdout).unwrap();
    assert_eq!(page["memories"].as_array().unwrap().len(), bodies.len());
    assert_eq!(page["memories"][0]["generation"], 5);
    assert_eq!(
        cluster
            .psql_query(&db, "SELECT version FROM modstate_schema")
            .trim(),
        modstate::store::SCHEMA_VERSION.to_string()
    );
    assert_eq!(
        cluster
            .psql_query(
                &db,
                "SELECT memories || ',' || tokens FROM memory_search_totals"
            )
            .trim(),
        format!(
            "{},{}",
            bodies.len(),
            bodies
                .iter()
                .map(|b| b
                    .split(|c: char| !c.is_alphanumeric())
                    .filter(|w| !w.is_empty())
                    .count())
                .sum::<usize>()
        )
    );

    let export = run(&url, &["memory", "export"]);
    let sqlite = cluster.scratch.join(format!("{db}.db"));
    let sqlite = sqlite.to_str().unwrap();
    let mut import = Command::new(BIN)
        .args(["--db", sqlite, "memory", "import", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(import.stdin.as_mut().unwrap(), &export.stdout).unwrap();
    drop(import.stdin.take());
    assert!(import.wait().unwrap().success());
    for query in [
        "deploy production",
        "Where did the kids go?",
        "What did Caroline research?",
    ] {
        let scores = |url: &str| -> Vec<(String, f64)> {
            let out = run(url, &["--json", "memory", "search", query]);
            let page: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            page["memories"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| {
                    (
                        m["id"].as_str().unwrap().to_owned(),
                        m["score"].as_f64().unwrap(),
                    )
                })
                .collect()
        };
        let upgraded = scores(&url);
        assert!(!upgraded.is_empty(), "{query}");
        let new = scores(sqlite);
        assert_eq!(upgraded.len(), new.len(), "{query}");
        for ((a, x), (b, y)) in upgraded.iter().zip(&new) {
            assert_eq!(a, b, "{query}");
            assert!((x - y).abs() < 1e-9, "{query}: {x} vs {y}");
        }
    }
}
