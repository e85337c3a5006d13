//! The command line as a user meets it: help, completions, the man page, `--quiet` and
//! `--verbose`, JSON errors, listings, where the database lives, and the maintenance
//! commands (`doctor`, `stats`, `artifact prune`, `vacuum`). Every test spawns the binary.

use crate::common::BIN;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::common::{code, output_with_stdin, stderr, stdout_text};
use serde_json::Value;

/// A home directory and a clone-like working directory, with no database named anywhere:
/// the per-user default applies.
struct Home {
    _dir: tempfile::TempDir,
    home: PathBuf,
    cwd: PathBuf,
}

impl Home {
    fn new() -> Home {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let cwd = dir.path().join("clone");
        fs::create_dir_all(&home).unwrap();
        fs::create_dir_all(&cwd).unwrap();
        Home {
            _dir: dir,
            home,
            cwd,
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.current_dir(&self.cwd)
            .env_remove("MODSTATE_DB")
            .env_remove("XDG_DATA_HOME")
            .env("HOME", &self.home)
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    fn run_in(&self, args: &[&str], stdin: &[u8]) -> Output {
        output_with_stdin(&mut self.cmd(args), stdin)
    }

    fn default_db(&self) -> PathBuf {
        self.home.join(".local/share/modstate/state.db")
    }
}

fn digest(n: usize) -> String {
    format!("sha256:{n:064x}")
}

fn envelope(n: usize, pad: usize) -> String {
    format!(
        r#"{{"type":"Module","version":1,"state":{{"name":"m{n}","pad":"{}"}}}}"#,
        "x".repeat(pad)
    )
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout_text(out)))
}

fn ok(out: &Output) -> &Output {
    assert_eq!(code(out), 0, "stderr: {}", stderr(out));
    out
}

// ---------------------------------------------------------------- help

/// Every command path, as `--help` lists them: [], ["artifact"], ["artifact", "put"], …
fn command_paths() -> Vec<Vec<String>> {
    let mut paths = vec![Vec::new()];
    let mut i = 0;
    while i < paths.len() {
        let path = paths[i].clone();
        for sub in subcommands(&path) {
            let mut child = path.clone();
            child.push(sub);
            paths.push(child);
        }
        i += 1;
    }
    paths
}

fn help(path: &[String]) -> String {
    let out = Command::new(BIN).args(path).arg("--help").output().unwrap();
    assert_eq!(code(&out), 0, "{path:?} --help: {}", stderr(&out));
    stdout_text(&out)
}

fn subcommands(path: &[String]) -> Vec<String> {
    help(path)
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

/// The entries of the `Arguments:` and `Options:` sections without a description. An entry
/// starts with two spaces and `-`, `<` or `[`; its description follows on the same line
/// after two or more spaces, or on the next, more deeply indented line.
fn undescribed(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut missing = Vec::new();
    let mut in_section = false;
    for (i, line) in lines.iter().enumerate() {
        if !line.starts_with(' ') {
            in_section = line.starts_with("Arguments:") || line.starts_with("Options:");
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let entry = line.trim_start();
        if !in_section || !(indent == 2 || indent == 6) || !entry.starts_with(['-', '<', '[']) {
            continue;
        }
        let same_line = entry.trim().split_once("  ").is_some();
        let next_line = lines
            .get(i + 1)
            .is_some_and(|next| next.starts_with("          ") && !next.trim().is_empty());
        if !same_line && !next_line {
            missing.push(entry.trim().to_owned());
        }
    }
    missing
}

#[test]
fn every_argument_of_every_command_has_a_description() {
    let paths = command_paths();
    assert!(paths.len() > 30, "found only {} commands", paths.len());
    let mut missing = Vec::new();
    for path in &paths {
        for entry in undescribed(&help(path)) {
            missing.push(format!("modstate {} {entry}", path.join(" ")));
        }
    }
    assert!(
        missing.is_empty(),
        "undescribed arguments:\n{}",
        missing.join("\n")
    );
}

#[test]
fn the_description_check_finds_a_bare_argument() {
    let text = "Usage: x\n\nArguments:\n  <DIGEST>\n  <FILE>  The file\n\nOptions:\n  -h, --help  Print help\n";
    assert_eq!(undescribed(text), vec!["<DIGEST>".to_owned()]);
}

#[test]
fn help_shows_exit_codes_and_every_group_has_examples() {
    let root = help(&[]);
    assert!(root.contains("Exit codes:"), "{root}");
    for code in ["  3 ", "  5 ", "  7 ", "126, 127", "128+N"] {
        assert!(root.contains(code), "exit code {code} missing:\n{root}");
    }
    assert!(root.contains("{\"error\": {\"exit\": N"), "{root}");
    for group in subcommands(&[]) {
        let text = help(std::slice::from_ref(&group));
        assert!(
            text.contains("Examples:\n  modstate"),
            "{group} has no examples:\n{text}"
        );
    }
}

#[test]
fn each_group_shows_only_the_options_that_apply() {
    let lockfile = help(&["lockfile".into()]);
    for flag in ["--db", "--synchronous"] {
        assert!(
            !lockfile.contains(flag),
            "lockfile --help shows {flag}:\n{lockfile}"
        );
    }
    assert!(lockfile.contains("--lock-timeout"), "{lockfile}");
    let lock = help(&["lock".into(), "status".into()]);
    assert!(
        lock.contains("--db") && !lock.contains("--synchronous"),
        "{lock}"
    );
    let put = help(&["artifact".into(), "put".into()]);
    for flag in [
        "--db",
        "--lock-timeout",
        "--synchronous",
        "--json",
        "--quiet",
        "--verbose",
    ] {
        assert!(
            put.contains(flag),
            "artifact put --help lacks {flag}:\n{put}"
        );
    }
    // And an option that does not apply is refused, not ignored.
    let h = Home::new();
    let out = h.run(&["lockfile", "ls", "--db", "x.db"]);
    assert_eq!(code(&out), 2);
}

#[test]
fn root_help_says_which_database_is_in_use_and_why() {
    let h = Home::new();
    let out = ok(&h.run(&["--help"])).clone();
    let text = stdout_text(&out);
    assert!(
        text.contains(&format!(
            "{} (the per-user default)",
            h.default_db().display()
        )),
        "{text}"
    );
    let out = h
        .cmd(&["--help"])
        .env("MODSTATE_DB", "/srv/m.db")
        .output()
        .unwrap();
    assert!(
        stdout_text(&out).contains("/srv/m.db (from MODSTATE_DB)"),
        "{}",
        stdout_text(&out)
    );
}

#[test]
fn lock_run_without_arguments_is_a_one_line_usage_error() {
    let h = Home::new();
    let out = h.run(&["lock", "run"]);
    assert_eq!(code(&out), 2);
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    assert!(stderr(&out).starts_with("error: "), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
}

#[test]
fn completions_for_every_shell_come_from_the_definitions() {
    let h = Home::new();
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let out = h.run(&["completions", shell]);
        ok(&out);
        let script = stdout_text(&out);
        for word in ["modstate", "prune", "keep-newest", "doctor"] {
            assert!(script.contains(word), "{shell} completions lack {word}");
        }
    }
    assert!(
        h.home.read_dir().unwrap().next().is_none(),
        "completions created files"
    );
}

#[test]
fn man_prints_a_man_page_with_every_group() {
    let h = Home::new();
    let out = h.run(&["man"]);
    ok(&out);
    let page = stdout_text(&out);
    assert!(
        page.starts_with(".ie") || page.contains(".TH modstate"),
        "{page}"
    );
    for word in ["artifact", "lockfile", "doctor", "vacuum", "Exit codes"] {
        assert!(page.contains(word), "man page lacks {word}");
    }
}

// ---------------------------------------------------------------- where the database lives

#[test]
fn the_default_database_is_per_user_and_the_clone_stays_clean() {
    let h = Home::new();
    let out = h.run_in(
        &["artifact", "put", &digest(1), "-"],
        envelope(1, 1).as_bytes(),
    );
    ok(&out);
    assert!(h.default_db().exists());
    assert!(
        h.cwd.read_dir().unwrap().next().is_none(),
        "the clone got files"
    );
    assert_eq!(
        stderr(&out),
        format!(
            "created database {} (the per-user default)\n",
            h.default_db().display()
        )
    );
    let mode = fs::metadata(h.default_db()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // Once: the next write says nothing about it.
    let again = h.run_in(
        &["artifact", "put", &digest(2), "-"],
        envelope(2, 1).as_bytes(),
    );
    assert_eq!(stderr(ok(&again)), "");
}

#[test]
fn xdg_data_home_then_modstate_db_then_db_win_in_that_order() {
    let h = Home::new();
    let xdg = h.home.join("xdg");
    let out = h
        .cmd(&["init"])
        .env("XDG_DATA_HOME", &xdg)
        .output()
        .unwrap();
    ok(&out);
    assert!(xdg.join("modstate/state.db").exists());
    // A relative XDG_DATA_HOME is ignored, as the spec says.
    let out = h
        .cmd(&["-v", "stats"])
        .env("XDG_DATA_HOME", "rel")
        .output()
        .unwrap();
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(stderr(&out).contains(&h.default_db().display().to_string()));

    let env_db = h.home.join("env.db");
    let flag_db = h.home.join("flag.db");
    let out = h
        .cmd(&["-v", "init"])
        .env("MODSTATE_DB", &env_db)
        .output()
        .unwrap();
    assert!(
        stderr(ok(&out)).contains("(from MODSTATE_DB)"),
        "{}",
        stderr(&out)
    );
    assert!(env_db.exists());
    let out = h
        .cmd(&["-v", "init", "--db", flag_db.to_str().unwrap()])
        .env("MODSTATE_DB", &env_db)
        .output()
        .unwrap();
    assert!(stderr(ok(&out)).contains("(from --db)"), "{}", stderr(&out));
    assert!(flag_db.exists());
}

#[test]
fn without_a_home_the_default_database_is_a_clear_error() {
    let h = Home::new();
    let out = h
        .cmd(&["--json", "init"])
        .env_remove("HOME")
        .output()
        .unwrap();
    assert_eq!(code(&out), 6);
    assert!(
        stderr(&out).contains("pass --db PATH or set MODSTATE_DB"),
        "{}",
        stderr(&out)
    );
    assert_eq!(json(&out)["error"]["kind"], "invalid");
}

// ---------------------------------------------------------------- output

#[test]
fn json_failures_print_one_error_document_and_one_stderr_line() {
    let h = Home::new();
    for (args, exit, kind) in [
        (vec!["--json", "artifact", "get", "sha256:zz"], 6, "invalid"),
        (
            vec!["--json", "artifact", "get", &digest(1)],
            3,
            "not_found",
        ),
        (vec!["--json", "artifact", "frobnicate"], 2, "usage"),
        (vec!["--json", "lock", "run"], 2, "usage"),
        (vec!["--json"], 2, "usage"),
        (
            vec!["--json", "lock", "run", "k", "--", "/nonexistent/program"],
            127,
            "command",
        ),
    ] {
        let out = h.run(&args);
        assert_eq!(code(&out), exit, "{args:?}: {}", stderr(&out));
        let doc = json(&out);
        assert_eq!(doc["error"]["exit"], exit, "{args:?}");
        assert_eq!(doc["error"]["kind"], kind, "{args:?}");
        let line = stderr(&out);
        assert_eq!(line.lines().count(), 1, "{args:?}: {line}");
        assert_eq!(
            doc["error"]["message"],
            line.trim_end().trim_start_matches("error: ")
        );
    }
}

#[test]
fn quiet_prints_only_requested_data_and_verbose_says_more() {
    let h = Home::new();
    let snaps = h.home.join("snaps");
    fs::create_dir(&snaps).unwrap();
    ok(&h.run(&["-q", "init"]));
    let out = h.run(&[
        "-q",
        "snapshot",
        "export",
        snaps.to_str().unwrap(),
        "--keep",
        "2",
    ]);
    ok(&out);
    assert!(
        out.stdout.is_empty() && out.stderr.is_empty(),
        "{}{}",
        stdout_text(&out),
        stderr(&out)
    );
    // Requested data still prints.
    let out = h.run_in(
        &["-q", "artifact", "put", &digest(1)],
        envelope(1, 1).as_bytes(),
    );
    assert_eq!(stdout_text(ok(&out)), format!("{}\n", digest(1)));
    let out = h.run(&["-q", "artifact", "get", &digest(1)]);
    assert_eq!(stdout_text(ok(&out)), envelope(1, 1));
    // Lockfile: no "using dagger.lock" line under -q.
    let out = h.run(&["-q", "lockfile", "set", "", "op", r#"["a"]"#, "1"]);
    assert!(ok(&out).stderr.is_empty(), "{}", stderr(&out));
    let out = h.run(&["lockfile", "set", "", "op", r#"["b"]"#, "1"]);
    assert!(stderr(ok(&out)).contains("using dagger.lock"));
    // Verbose: database, why, backend.
    let out = h.run(&["-v", "artifact", "ls"]);
    let err = stderr(ok(&out));
    assert!(err.contains(&h.default_db().display().to_string()), "{err}");
    assert!(
        err.contains("per-user default") && err.contains("backend sqlite"),
        "{err}"
    );
    assert_eq!(code(&h.run(&["-q", "-v", "stats"])), 2);
}

#[test]
fn lock_waits_are_said_unless_quiet_and_timeouts_name_the_flag_used() {
    let h = Home::new();
    ok(&h.run(&["init"]));
    let mut holder = h
        .cmd(&["lock", "run", "--global", "--", "sleep", "30"])
        .spawn()
        .unwrap();
    // Wait until the holder is seen.
    let started = std::time::Instant::now();
    loop {
        let status = stdout_text(&h.run(&["lock", "status"]));
        if status.lines().any(|l| l.starts_with("global\theld")) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "holder never took the lock"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = h.run(&["--lock-timeout", "1.5", "vacuum"]);
    assert_eq!(code(&out), 5, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.starts_with("Blocking waiting for lock on global"),
        "{err}"
    );
    assert!(err.contains("(raise --lock-timeout SECS)"), "{err}");
    let out = h.run(&["-q", "--lock-timeout", "1.5", "vacuum"]);
    assert_eq!(code(&out), 5);
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    let out = h.run(&[
        "-q",
        "lock",
        "run",
        "--global",
        "--timeout",
        "0.2",
        "--",
        "true",
    ]);
    assert_eq!(code(&out), 5);
    assert!(
        stderr(&out).contains("(raise --timeout SECS)"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("--lock-timeout"), "{}", stderr(&out));
    stop(&mut holder);
}

/// Ends a `lock run` holder the way a user would (SIGTERM, which it forwards to its command).
fn stop(holder: &mut std::process::Child) {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(holder.id() as libc::pid_t, libc::SIGTERM) };
    let _ = holder.wait();
}

#[test]
fn piped_listings_are_tab_separated_rows_without_a_header() {
    let h = Home::new();
    for n in 1..=2 {
        ok(&h.run_in(&["artifact", "put", &digest(n)], envelope(n, 1).as_bytes()));
    }
    let out = h.run(&["artifact", "ls"]);
    let text = stdout_text(ok(&out));
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(rows.len(), 2, "{text}");
    for row in &rows {
        assert_eq!(row.len(), 5, "{text}");
        assert!(row[0].starts_with("sha256:"), "{text}");
    }
    let status = stdout_text(&h.run(&["lock", "status"]));
    assert!(
        status.lines().all(|l| l.split('\t').count() == 6),
        "{status}"
    );
    assert!(!status.contains("NAME"), "{status}");
}

/// RFC 3339, UTC, microseconds.
fn is_timestamp(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 27
        && b[4] == b'-'
        && b[10] == b'T'
        && b[19] == b'.'
        && b[26] == b'Z'
        && text[20..26].bytes().all(|c| c.is_ascii_digit())
}

#[test]
fn every_timestamp_has_one_format() {
    let h = Home::new();
    ok(&h.run_in(&["artifact", "put", &digest(1)], envelope(1, 1).as_bytes()));
    let artifacts = json(&h.run(&["--json", "artifact", "ls"]));
    let created = artifacts[0]["created_at"].as_str().unwrap().to_owned();
    let memory = json(&h.run(&["--json", "memory", "add", "a note"]));
    let mut holder = h
        .cmd(&["lock", "run", "k", "--", "sleep", "30"])
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let since = loop {
        let status = json(&h.run(&["--json", "lock", "status"]));
        let found = status.as_array().unwrap().iter().find_map(|s| {
            s["holders"].as_array()?.first()?["acquired_at"]
                .as_str()
                .map(str::to_owned)
        });
        if let Some(since) = found {
            break since;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "holder never took the lock"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    stop(&mut holder);
    for t in [
        created.as_str(),
        memory["created_at"].as_str().unwrap(),
        memory["updated_at"].as_str().unwrap(),
        since.as_str(),
    ] {
        assert!(
            is_timestamp(t),
            "{t:?} is not RFC 3339 UTC with microseconds"
        );
    }
}

// ---------------------------------------------------------------- doctor, stats, prune, vacuum

fn doctor(h: &Home) -> (i32, Value) {
    let out = h.run(&["--json", "doctor"]);
    (code(&out), json(&out))
}

fn failed_checks(doc: &Value) -> Vec<String> {
    doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == false)
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn doctor_passes_a_healthy_store_and_names_each_problem() {
    let h = Home::new();
    let out = h.run(&["doctor"]);
    assert_eq!(code(&out), 1, "no database is a problem");
    assert!(
        stdout_text(&out).starts_with("FAIL database"),
        "{}",
        stdout_text(&out)
    );
    ok(&h.run(&["init"]));
    let (code, doc) = doctor(&h);
    assert_eq!(code, 0, "{doc}");
    let names: Vec<&str> = doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for name in [
        "database",
        "schema",
        "integrity",
        "search index",
        "file modes",
        "wal",
        "temp files",
        "locks",
    ] {
        assert!(names.contains(&name), "no {name} check: {doc}");
    }
    let text = stdout_text(&h.run(&["doctor"]));
    assert_eq!(text.lines().count(), names.len(), "{text}");
    assert!(text.contains("the per-user default"), "{text}");

    // A group-readable database.
    fs::set_permissions(h.default_db(), fs::Permissions::from_mode(0o644)).unwrap();
    let (code, doc) = doctor(&h);
    assert_eq!(
        (code, failed_checks(&doc)),
        (1, vec!["file modes".to_owned()])
    );
    // SQLite gave the WAL and shared-memory files the database's mode: close them all.
    for suffix in ["", "-wal", "-shm"] {
        let path = PathBuf::from(format!("{}{suffix}", h.default_db().display()));
        if path.exists() {
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        }
    }

    // A temp file left by a writer that died (pid far above pid_max).
    let dir = h.default_db().parent().unwrap().to_path_buf();
    let leftover = dir.join(".state.db.tmp-4194305-1a2b");
    fs::write(&leftover, b"x").unwrap();
    let (code, doc) = doctor(&h);
    assert_eq!(
        (code, failed_checks(&doc)),
        (1, vec!["temp files".to_owned()])
    );
    fs::remove_file(&leftover).unwrap();
    assert_eq!(doctor(&h).0, 0);
}

#[test]
fn doctor_finds_a_search_index_out_of_step_with_the_memories() {
    let h = Home::new();
    ok(&h.run(&["memory", "add", "alpha beta"]));
    let conn = rusqlite::Connection::open(h.default_db()).unwrap();
    // Change a body behind the trigger's back: drop the trigger, update, the index is stale.
    conn.execute_batch("DROP TRIGGER memories_fts_update; UPDATE memories SET body = 'gamma';")
        .unwrap();
    drop(conn);
    let (code, doc) = doctor(&h);
    assert_eq!(
        (code, failed_checks(&doc)),
        (1, vec!["search index".to_owned()]),
        "{doc}"
    );
}

#[test]
fn stats_counts_artifacts_memories_and_sizes() {
    let h = Home::new();
    for n in 1..=3 {
        ok(&h.run_in(&["artifact", "put", &digest(n)], envelope(n, 10).as_bytes()));
    }
    for ns in ["a", "a", "b"] {
        ok(&h.run(&["memory", "add", "--namespace", ns, "note"]));
    }
    let doc = json(ok(&h.run(&["--json", "stats"])));
    let stats = &doc["stats"];
    assert_eq!(stats["artifacts"], 3);
    assert_eq!(stats["artifact_bytes"], 3 * envelope(1, 10).len());
    let generation = |ns: &str| -> u64 {
        stdout_text(&h.run(&["memory", "generation", "--namespace", ns]))
            .trim()
            .parse()
            .unwrap()
    };
    assert_eq!(
        stats["memories"],
        serde_json::json!([
            {"namespace": "a", "memories": 2, "generation": generation("a")},
            {"namespace": "b", "memories": 1, "generation": generation("b")}
        ])
    );
    assert!(stats["db_bytes"].as_u64().unwrap() > 0);
    let text = stdout_text(&h.run(&["stats"]));
    assert!(text.contains("memories[a]\t2\n"), "{text}");
}

#[test]
fn prune_keeps_the_newest_and_removes_by_age() {
    let h = Home::new();
    for n in 1..=4 {
        ok(&h.run_in(&["artifact", "put", &digest(n)], envelope(n, 1).as_bytes()));
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = h.run(&["artifact", "prune", "--keep-newest", "1", "--dry-run"]);
    assert_eq!(stdout_text(ok(&out)).lines().count(), 3);
    assert_eq!(
        stdout_text(&h.run(&["artifact", "ls"])).lines().count(),
        4,
        "dry run removed"
    );
    let out = h.run(&["artifact", "prune", "--older-than", "1h"]);
    assert_eq!(stdout_text(ok(&out)), "");
    let out = h.run(&["artifact", "prune", "--keep-newest", "2"]);
    assert_eq!(
        stdout_text(ok(&out)),
        format!("{}\n{}\n", digest(1), digest(2))
    );
    assert!(
        stderr(&out).contains("removed 2 artifacts"),
        "{}",
        stderr(&out)
    );
    std::thread::sleep(Duration::from_millis(1100));
    let out = h.run(&[
        "--json",
        "artifact",
        "prune",
        "--older-than",
        "1s",
        "--keep-newest",
        "1",
    ]);
    assert_eq!(json(ok(&out))["removed"], serde_json::json!([digest(3)]));
    let left = stdout_text(&h.run(&["artifact", "ls"]));
    assert!(
        left.starts_with(&digest(4)) && left.lines().count() == 1,
        "{left}"
    );
}

#[test]
fn vacuum_gives_the_space_of_removed_rows_back() {
    let h = Home::new();
    for n in 1..=8 {
        ok(&h.run_in(
            &["artifact", "put", &digest(n)],
            envelope(n, 500_000).as_bytes(),
        ));
    }
    ok(&h.run(&["artifact", "prune", "--keep-newest", "1"]));
    let wal = h.home.join(".local/share/modstate/state.db-wal");
    let size = |p: &PathBuf| fs::metadata(p).map_or(0, |m| m.len());
    let before = size(&h.default_db()) + size(&wal);
    let out = h.run(&["--json", "vacuum"]);
    let report = json(ok(&out));
    let after = size(&h.default_db());
    assert!(after + size(&wal) < before / 2, "{before} -> {after}");
    assert_eq!(report["bytes_after"], after);
    assert_eq!(
        stdout_text(&h.run(&["artifact", "get", &digest(8)])),
        envelope(8, 500_000)
    );
    let out = h.run(&["-q", "vacuum"]);
    assert!(ok(&out).stdout.is_empty() && out.stderr.is_empty());
    assert_eq!(doctor(&h).0, 0);
}

// ---------------------------------------------------------------- memory export and import

#[test]
fn memory_export_import_is_lossless_idempotent_and_all_or_nothing() {
    let h = Home::new();
    let a = json(ok(&h.run(&[
        "--json",
        "memory",
        "add",
        "--namespace",
        "a",
        "--category",
        "fact",
        "tabs\tand\nnewlines",
    ])));
    ok(&h.run(&["memory", "add", "--namespace", "b", "second"]));
    let id = a["id"].as_str().unwrap();
    ok(&h.run(&["memory", "update", id, "tabs, updated"]));
    let exported = stdout_text(ok(&h.run(&["memory", "export"])));
    assert_eq!(exported.lines().count(), 2, "{exported}");
    let only_a = stdout_text(ok(&h.run(&["memory", "export", "--namespace", "a"])));
    assert_eq!(only_a.lines().count(), 1);
    assert!(only_a.contains(id));

    let other = h.home.join("other.db");
    let other_db = other.to_str().unwrap();
    let out = h.run_in(
        &["--db", other_db, "--json", "memory", "import", "-"],
        exported.as_bytes(),
    );
    assert_eq!(
        json(ok(&out)),
        serde_json::json!({"imported": 2, "unchanged": 0})
    );
    let again = stdout_text(ok(&h.run(&["--db", other_db, "memory", "export"])));
    assert_eq!(again, exported, "the round trip changed something");
    let generation_before: u64 =
        stdout_text(&h.run(&["--db", other_db, "memory", "generation", "--namespace", "a"]))
            .trim()
            .parse()
            .unwrap();
    assert!(generation_before > 0);

    // Twice: nothing changes, not even a generation.
    let file = h.home.join("memories.jsonl");
    fs::write(&file, &exported).unwrap();
    let out = h.run(&[
        "--db",
        other_db,
        "--json",
        "memory",
        "import",
        file.to_str().unwrap(),
    ]);
    assert_eq!(
        json(ok(&out)),
        serde_json::json!({"imported": 0, "unchanged": 2})
    );
    let generation_after: u64 =
        stdout_text(&h.run(&["--db", other_db, "memory", "generation", "--namespace", "a"]))
            .trim()
            .parse()
            .unwrap();
    assert_eq!(generation_after, generation_before);

    // A later write in the new store takes a version past every imported one.
    let imported_version = a["version"].as_u64().unwrap();
    let updated =
        json(ok(&h.run(&[
            "--db", other_db, "--json", "memory", "update", id, "again",
        ])));
    assert!(
        updated["version"].as_u64().unwrap() > imported_version + 1,
        "{updated}"
    );

    // All or nothing, the bad line named.
    let third = h.home.join("third.db");
    let bad = format!("{exported}{{\"id\": 1}}\n");
    let out = h.run_in(
        &["--db", third.to_str().unwrap(), "memory", "import", "-"],
        bad.as_bytes(),
    );
    assert_eq!(code(&out), 6);
    assert!(stderr(&out).contains("line 3:"), "{}", stderr(&out));
    let left = h.run(&["--db", third.to_str().unwrap(), "memory", "export"]);
    assert_eq!(stdout_text(&left), "", "a failed import left memories");

    // A memory already here with other content is refused, naming its line.
    let changed = exported.replacen("\"second\"", "\"changed\"", 1);
    let out = h.run_in(
        &["--db", other_db, "memory", "import", "-"],
        changed.as_bytes(),
    );
    assert_eq!(code(&out), 6);
    assert!(stderr(&out).contains("other content"), "{}", stderr(&out));
}

// ---------------------------------------------------------------- messages

#[test]
fn messages_say_what_to_do_and_only_what_can_be_done() {
    let h = Home::new();
    // snapshot verify of a non-database: says so, no "restore a snapshot".
    let junk = h.home.join("junk.db");
    fs::write(
        &junk,
        b"not a database at all, just text that is long enough to be read\n".repeat(100),
    )
    .unwrap();
    let out = h.run(&["snapshot", "verify", junk.to_str().unwrap()]);
    assert_eq!(code(&out), 7, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("not a SQLite database") && !err.contains("restore a snapshot"),
        "{err}"
    );
    // --keep 0 says what --keep needs.
    let out = h.run(&["snapshot", "export", "snaps/", "--keep", "0"]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("--keep needs a whole number of snapshots to keep, 1 or more"),
        "{}",
        stderr(&out)
    );
    // The INPUTS hint shows an array.
    let out = h.run(&["lockfile", "get", "", "op", "alpine"]);
    assert_eq!(code(&out), 6);
    assert!(
        stderr(&out).contains(r#"'["docker.io/library/alpine:3.20"]'"#),
        "{}",
        stderr(&out)
    );
    // No flag raises the envelope limit: the message does not offer one.
    let big = envelope(1, 17 << 20);
    let out = h.run_in(&["artifact", "put", &digest(1)], big.as_bytes());
    assert_eq!(code(&out), 6);
    assert!(
        !stderr(&out).contains("raise the limit"),
        "{}",
        stderr(&out)
    );
    assert!(!h.cwd.join("dagger.lock").exists());
}

#[test]
fn doctor_names_lock_holders_and_the_nearest_db_flag_wins() {
    let h = Home::new();
    ok(&h.run(&["init"]));
    let mut holder = h
        .cmd(&["lock", "run", "deploy", "--", "sleep", "30"])
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let line = loop {
        let out = h.run(&["doctor"]);
        let text = stdout_text(&out);
        if let Some(line) = text
            .lines()
            .find(|l| l.contains("locks") && l.contains("pid"))
        {
            assert_eq!(code(&out), 0, "a held lock is not a problem: {text}");
            break line.to_owned();
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "holder never seen: {text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(line.contains(&format!("pid {}", holder.id())), "{line}");
    stop(&mut holder);

    // `--db` after the group beats `--db` before it, which beats MODSTATE_DB.
    let before = h.home.join("before.db");
    let after = h.home.join("after.db");
    let out = h
        .cmd(&[
            "--db",
            before.to_str().unwrap(),
            "init",
            "--db",
            after.to_str().unwrap(),
        ])
        .env("MODSTATE_DB", h.home.join("env.db"))
        .output()
        .unwrap();
    ok(&out);
    assert!(after.exists() && !before.exists() && !h.home.join("env.db").exists());
}

// ---------------------------------------------------------------- snapshot ls, --keep-pre-restore

#[test]
fn snapshot_ls_shows_time_size_counts_and_verifies() {
    let h = Home::new();
    let snaps = h.home.join("snaps");
    fs::create_dir(&snaps).unwrap();
    ok(&h.run_in(&["artifact", "put", &digest(1)], envelope(1, 1).as_bytes()));
    ok(&h.run(&["memory", "add", "one"]));
    ok(&h.run(&["-q", "snapshot", "export", snaps.to_str().unwrap()]));
    std::thread::sleep(Duration::from_millis(5));
    ok(&h.run(&["memory", "add", "two"]));
    ok(&h.run(&["-q", "snapshot", "export", snaps.to_str().unwrap()]));
    let out = h.run(&["snapshot", "ls", snaps.to_str().unwrap()]);
    let text = stdout_text(ok(&out));
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(rows.len(), 2, "{text}");
    assert!(is_timestamp_millis(rows[0][0]), "{text}");
    assert_eq!((rows[0][2], rows[0][3]), ("1", "1"), "{text}");
    assert_eq!((rows[1][2], rows[1][3]), ("1", "2"), "{text}");
    let size = fs::metadata(rows[1][4]).unwrap().len();
    assert_eq!(rows[1][1], size.to_string());

    let out = h.run(&[
        "--json",
        "snapshot",
        "ls",
        snaps.to_str().unwrap(),
        "--verify",
    ]);
    let doc = json(ok(&out));
    assert!(
        doc.as_array()
            .unwrap()
            .iter()
            .all(|r| r["verified"] == true),
        "{doc}"
    );

    // A damaged copy: listed, marked FAILED, exit 7.
    let newest = PathBuf::from(rows[1][4]);
    let mut bytes = fs::read(&newest).unwrap();
    let mid = bytes.len() / 2;
    bytes.truncate(mid);
    fs::write(&newest, &bytes).unwrap();
    let out = h.run(&["snapshot", "ls", snaps.to_str().unwrap(), "--verify"]);
    assert_eq!(code(&out), 7, "{}", stderr(&out));
    let text = stdout_text(&out);
    assert!(text.lines().next().unwrap().contains("\tok\t"), "{text}");
    assert!(
        text.lines().nth(1).unwrap().contains("\tFAILED\t"),
        "{text}"
    );
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
}

/// A snapshot name's time as `snapshot ls` shows it: RFC 3339 UTC, from the file name.
fn is_timestamp_millis(text: &str) -> bool {
    text.len() == 24 && text.ends_with('Z') && text.as_bytes()[10] == b'T'
}

#[test]
fn restore_keeps_only_the_newest_safety_copies() {
    let h = Home::new();
    let snap = h.home.join("snap.db");
    ok(&h.run(&["memory", "add", "kept"]));
    ok(&h.run(&["-q", "snapshot", "export", snap.to_str().unwrap()]));
    let dir = h.default_db().parent().unwrap().to_path_buf();
    let safety = || -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("state-pre-restore-"))
            .collect();
        names.sort();
        names
    };
    for _ in 0..3 {
        ok(&h.run(&["-q", "snapshot", "restore", snap.to_str().unwrap()]));
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(safety().len(), 3);
    let before = safety();
    let out = h.run(&[
        "--json",
        "snapshot",
        "restore",
        snap.to_str().unwrap(),
        "--keep-pre-restore",
        "2",
    ]);
    let doc = json(ok(&out));
    let after = safety();
    assert_eq!(after.len(), 2, "{after:?}");
    assert_eq!(after[0], before[2], "the newest older copy stays");
    assert_eq!(
        doc["removed_safety_snapshots"].as_array().unwrap().len(),
        2,
        "{doc}"
    );
    // Unrelated files beside the database are never touched.
    assert!(h.default_db().exists());
}
