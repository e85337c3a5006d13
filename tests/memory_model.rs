//! The memory model agents expect (issue 27), through the built binary on both backends:
//! expiry enforced on every read path before any sweep, metadata and tags with the `where`
//! filter (every operator and combinator, exact paging while others write), history (CLI and
//! MCP writers, kept after a delete, carried by export/import), supersedes (hidden in the
//! add's transaction; of concurrent supersedes exactly one wins), namespaces, and migration of
//! a schema-4 database made by the previous binary.

use crate::common::postgres::Cluster;
use crate::common::{assert_exit, json, stderr};
use crate::conformance::Db;
use crate::mcp::Server;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::process::Output;
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, SystemTime};

/// Makes `sqlite::<test>` and `postgres::<test>` cases of each `fn <test>(db: &Db)`.
macro_rules! both_backends {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(#[test]
            fn $test() {
                super::$test(&crate::conformance::Db::sqlite());
            })*
        }
        mod postgres {
            $(#[test]
            fn $test() {
                let Some(db) = crate::conformance::Db::postgres() else {
                    return;
                };
                super::$test(&db);
            })*
        }
    };
}

both_backends! {
    an_expired_memory_is_gone_from_every_read_path_before_any_sweep,
    refresh_on_read_pushes_the_expiry_and_a_namespace_default_applies,
    every_operator_and_combinator_selects_the_same_memories,
    filtered_pages_stay_exact_while_others_write,
    history_records_every_change_by_cli_and_mcp_and_survives_export_import,
    supersedes_hides_the_old_memory_and_refuses_missing_or_already_superseded,
    of_eight_processes_superseding_one_memory_exactly_one_wins,
    namespaces_list_counts_and_generations_by_prefix,
    bad_ttls_filters_and_metadata_are_refused_with_exit_6_and_change_nothing,
    snapshots_carry_every_new_field_and_the_history_to_either_backend,
    expired_and_superseded_memories_do_not_count_in_the_ranking_statistics,
}

fn ok(db: &Db, args: &[&str]) -> String {
    let out = db.run(args);
    assert_exit(&out, 0);
    String::from_utf8(out.stdout).unwrap()
}

fn add(db: &Db, args: &[&str]) -> String {
    let mut all = vec!["memory", "add"];
    all.extend_from_slice(args);
    ok(db, &all).trim().to_owned()
}

fn ids(page: &Value) -> Vec<String> {
    page["memories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect()
}

fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_micros(at).to_string()
}

/// Sleeps until the wall clock is past `at`.
fn wait_past(at: SystemTime) {
    while SystemTime::now() <= at {
        thread::sleep(Duration::from_millis(50));
    }
}

fn mcp(db: &Db, namespace: &str) -> Server {
    let log = db.dir().join(format!("mcp-{namespace}.log"));
    let mut server = Server::spawn(db.cmd(), &["--namespace", namespace], log);
    let init = server.initialize("2025-11-25");
    assert!(init["result"].is_object(), "{init}");
    server.notify("notifications/initialized", None);
    server
}

pub fn an_expired_memory_is_gone_from_every_read_path_before_any_sweep(db: &Db) {
    // Written first, so no later write's automatic sweep can be what hides the memory.
    let keep = add(
        db,
        &["--namespace", "n", "--ttl", "1h", "ephemeral-kept word"],
    );
    let at = SystemTime::now() + Duration::from_secs(3);
    let gone = add(
        db,
        &[
            "--namespace",
            "n",
            "--expires-at",
            &rfc3339(at),
            "ephemeral-gone word",
        ],
    );
    wait_past(at);
    // get
    assert_exit(&db.run(&["memory", "get", &gone]), 3);
    assert_eq!(db.json(&["memory", "get", &keep])["id"], keep.as_str());
    // ls and search
    assert_eq!(
        ids(&db.json(&["memory", "ls", "--namespace", "n"])),
        [keep.as_str()]
    );
    assert_eq!(
        ids(&db.json(&["memory", "search", "ephemeral", "--namespace", "n"])),
        [keep.as_str()]
    );
    assert_eq!(
        ids(&db.json(&["memory", "search", "--namespace", "n"])),
        [keep.as_str()]
    );
    // export
    let exported = ok(db, &["memory", "export"]);
    assert!(exported.contains(&keep), "{exported}");
    assert!(!exported.contains(&gone), "{exported}");
    // update and rm see it absent too
    assert_exit(&db.run(&["memory", "update", &gone, "x"]), 3);
    // MCP
    let mut server = mcp(db, "n");
    let listed = server.call_ok("get_memories", json!({}));
    assert_eq!(ids(&listed), [keep.as_str()], "{listed}");
    let found = server.call_ok("search_memories", json!({"query": "ephemeral word"}));
    assert_eq!(ids(&found), [keep.as_str()], "{found}");
    drop(server);
    // No sweep ran: its history ends with the add, and only a sweep records an expiry.
    let history = db.json(&["memory", "history", &gone]);
    let actions: Vec<&str> = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_object().unwrap()["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["add"], "{history}");
    // The sweep reclaims the row and says so in its history.
    assert_eq!(db.json(&["memory", "sweep"])["removed"], 1);
    let history = db.json(&["memory", "history", &gone]);
    assert_eq!(history["events"][1]["action"], "expire", "{history}");
    assert_eq!(db.json(&["memory", "sweep"])["removed"], 0);
}

pub fn refresh_on_read_pushes_the_expiry_and_a_namespace_default_applies(db: &Db) {
    let id = add(
        db,
        &[
            "--namespace",
            "r",
            "--ttl",
            "20s",
            "--refresh-on-read",
            "refreshing note",
        ],
    );
    let first = db.json(&["memory", "get", &id]);
    let before = first["expires_at"].as_str().unwrap().to_owned();
    assert_eq!(first["ttl_seconds"], 20);
    assert_eq!(first["refresh_on_read"], true);
    // The expiry moves at most once per tenth of the lifetime (2 s here).
    thread::sleep(Duration::from_millis(2100));
    let listed = db.json(&["memory", "ls", "--namespace", "r"]);
    let pushed = listed["memories"][0]["expires_at"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(pushed > before, "{pushed} after {before}");
    // The push was stored, not only shown.
    let again = db.json(&["memory", "get", &id]);
    assert!(
        again["expires_at"].as_str().unwrap() >= pushed.as_str(),
        "{again}"
    );
    // The version did not move: a refresh is not a change.
    assert_eq!(again["version"], first["version"]);

    // A namespace default lifetime applies to memories added without one.
    assert_eq!(
        db.json(&["memory", "default-ttl", "--namespace", "d", "7d"])["default_ttl_seconds"],
        7 * 24 * 3600
    );
    let defaulted = add(db, &["--namespace", "d", "note with a default lifetime"]);
    let m = db.json(&["memory", "get", &defaulted]);
    assert_eq!(m["ttl_seconds"], 7 * 24 * 3600, "{m}");
    let own = add(db, &["--namespace", "d", "--ttl", "1h", "own lifetime"]);
    assert_eq!(db.json(&["memory", "get", &own])["ttl_seconds"], 3600);
    ok(db, &["memory", "default-ttl", "--namespace", "d", "none"]);
    let none = add(db, &["--namespace", "d", "no lifetime"]);
    assert_eq!(
        db.json(&["memory", "get", &none])["expires_at"],
        Value::Null
    );
}

/// Memories with metadata of every JSON type, tags and categories, named by their text.
fn seed(db: &Db) -> Vec<(String, String)> {
    let rows: &[(&str, &str, &str, &[&str])] = &[
        (
            "m1",
            "fact",
            r#"{"project": "apollo", "priority": 3, "done": false, "owners": ["ann", "bob"], "note": null}"#,
            &["work", "urgent"],
        ),
        (
            "m2",
            "Fact",
            r#"{"project": "gemini", "priority": 1.5, "done": true, "owners": ["cid"]}"#,
            &["work"],
        ),
        (
            "m3",
            "preference",
            r#"{"project": "apollo", "priority": 10, "title": "Zebra crossing"}"#,
            &["home"],
        ),
        (
            "m4",
            "",
            r#"{"priority": "high", "title": "apple pie"}"#,
            &[],
        ),
        ("m5", "decision", r#"{}"#, &["urgent"]),
    ];
    let mut out = Vec::new();
    for (text, category, metadata, tags) in rows {
        let mut args = vec![
            "--namespace",
            "f",
            "--category",
            category,
            "--metadata",
            metadata,
        ];
        for tag in *tags {
            args.push("--tag");
            args.push(tag);
        }
        args.push(text);
        out.push((text.to_string(), add(db, &args)));
    }
    out
}

fn texts_matching(db: &Db, filter: &str) -> BTreeSet<String> {
    let page = db.json(&["memory", "ls", "--namespace", "f", "--where", filter]);
    page["memories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_owned())
        .collect()
}

pub fn every_operator_and_combinator_selects_the_same_memories(db: &Db) {
    seed(db);
    let cases: &[(&str, &[&str])] = &[
        // bare value and $eq, per JSON type
        (r#"{"project": "apollo"}"#, &["m1", "m3"]),
        (r#"{"metadata.project": {"$eq": "gemini"}}"#, &["m2"]),
        (r#"{"priority": 3}"#, &["m1"]),
        (r#"{"priority": 3.0}"#, &["m1"]),
        (r#"{"priority": "3"}"#, &[]),
        (r#"{"done": false}"#, &["m1"]),
        (r#"{"done": true}"#, &["m2"]),
        (r#"{"note": null}"#, &["m1"]),
        // $ne and $nin also match a memory without the key
        (r#"{"project": {"$ne": "apollo"}}"#, &["m2", "m4", "m5"]),
        (
            r#"{"project": {"$nin": ["apollo", "gemini"]}}"#,
            &["m4", "m5"],
        ),
        (r#"{"project": {"$in": ["gemini", "zeus"]}}"#, &["m2"]),
        (r#"{"priority": {"$in": [1.5, 10]}}"#, &["m2", "m3"]),
        // order: numbers as numbers, strings by code point, other types never
        (r#"{"priority": {"$gt": 1.5}}"#, &["m1", "m3"]),
        (r#"{"priority": {"$gte": 1.5}}"#, &["m1", "m2", "m3"]),
        (r#"{"priority": {"$lt": 3}}"#, &["m2"]),
        (r#"{"priority": {"$lte": 3, "$gt": 1}}"#, &["m1", "m2"]),
        (r#"{"priority": {"$gt": "a"}}"#, &["m4"]),
        (r#"{"title": {"$lt": "a"}}"#, &["m3"]),
        // $exists
        (r#"{"title": {"$exists": true}}"#, &["m3", "m4"]),
        (r#"{"project": {"$exists": false}}"#, &["m4", "m5"]),
        (r#"{"note": {"$exists": true}}"#, &["m1"]),
        // $contains: an array element or a substring
        (r#"{"owners": {"$contains": "bob"}}"#, &["m1"]),
        (r#"{"owners": {"$contains": "bo"}}"#, &[]),
        (r#"{"title": {"$contains": "pie"}}"#, &["m4"]),
        (r#"{"title": {"$contains": "zebra"}}"#, &[]),
        // tags
        (r#"{"tags": "work"}"#, &["m1", "m2"]),
        (r#"{"tags": {"$contains": "urgent"}}"#, &["m1", "m5"]),
        (
            r#"{"tags": {"$in": ["home", "urgent"]}}"#,
            &["m1", "m3", "m5"],
        ),
        (r#"{"tags": {"$nin": ["work"]}}"#, &["m3", "m4", "m5"]),
        (r#"{"tags": {"$ne": "work"}}"#, &["m3", "m4", "m5"]),
        (r#"{"tags": {"$exists": false}}"#, &["m4"]),
        // category, ignoring ASCII case
        (r#"{"category": "fact"}"#, &["m1", "m2"]),
        (
            r#"{"category": {"$in": ["FACT", "decision"]}}"#,
            &["m1", "m2", "m5"],
        ),
        (r#"{"category": {"$ne": "fact"}}"#, &["m3", "m4", "m5"]),
        (r#"{"category": {"$contains": "REF"}}"#, &["m3"]),
        (r#"{"category": {"$exists": false}}"#, &["m4"]),
        (r#"{"category": {"$gt": "e"}}"#, &["m1", "m2", "m3"]),
        // times
        (
            r#"{"created_at": {"$gt": "2000-01-01T00:00:00Z"}}"#,
            &["m1", "m2", "m3", "m4", "m5"],
        ),
        (r#"{"updated_at": {"$lt": "2000-01-01T00:00:00Z"}}"#, &[]),
        // combinators
        (
            r#"{"$and": [{"project": "apollo"}, {"tags": "work"}]}"#,
            &["m1"],
        ),
        (
            r#"{"$or": [{"project": "gemini"}, {"tags": "home"}]}"#,
            &["m2", "m3"],
        ),
        (r#"{"$not": {"tags": "work"}}"#, &["m3", "m4", "m5"]),
        (
            r#"{"$or": [{"$and": [{"priority": {"$gte": 3}}, {"$not": {"project": "apollo"}}]}, {"done": true}]}"#,
            &["m2"],
        ),
        (r#"{"$and": []}"#, &["m1", "m2", "m3", "m4", "m5"]),
        (r#"{"$or": []}"#, &[]),
    ];
    for (filter, expected) in cases {
        let expected: BTreeSet<String> = expected.iter().map(|s| s.to_string()).collect();
        assert_eq!(texts_matching(db, filter), expected, "where {filter}");
    }
    // The same filter applies to search, in the same query as the ranking.
    let page = db.json(&[
        "memory",
        "search",
        "m1 m2 m3",
        "--namespace",
        "f",
        "--where",
        r#"{"project": "apollo"}"#,
    ]);
    let found: BTreeSet<&str> = page["memories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(found, BTreeSet::from(["m1", "m3"]));
    // And to MCP.
    let mut server = mcp(db, "f");
    let listed = server.call_ok(
        "get_memories",
        json!({"where": {"tags": {"$in": ["home"]}}}),
    );
    assert_eq!(listed["memories"][0]["text"], "m3", "{listed}");
    assert_eq!(listed["memories"].as_array().unwrap().len(), 1);
    let bad = server.call_err("get_memories", json!({"where": {"tags": {"$gt": "a"}}}));
    assert!(bad.contains("tags are not ordered"), "{bad}");
}

pub fn filtered_pages_stay_exact_while_others_write(db: &Db) {
    let mut matching = BTreeSet::new();
    for i in 0..9 {
        let metadata = format!(r#"{{"n": {i}, "keep": {}}}"#, i % 3 != 0);
        let id = add(
            db,
            &[
                "--namespace",
                "p",
                "--metadata",
                &metadata,
                &format!("paged {i}"),
            ],
        );
        if i % 3 != 0 {
            matching.insert(id);
        }
    }
    let filter = r#"{"keep": true}"#;
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut args = vec![
            "memory",
            "ls",
            "--namespace",
            "p",
            "--where",
            filter,
            "--limit",
            "2",
        ];
        if let Some(c) = &cursor {
            args.push("--cursor");
            args.push(c);
        }
        let page = db.json(&args);
        seen.extend(ids(&page));
        pages += 1;
        // Writes between pages: a matching memory and a non-matching one, both newer.
        add(
            db,
            &[
                "--namespace",
                "p",
                "--metadata",
                r#"{"keep": true}"#,
                "written between pages",
            ],
        );
        add(
            db,
            &[
                "--namespace",
                "p",
                "--metadata",
                r#"{"keep": false}"#,
                "not kept",
            ],
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 3, "6 matching memories in pages of 2");
    let unique: BTreeSet<String> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "a memory repeated: {seen:?}");
    assert_eq!(
        unique, matching,
        "every matching memory, only those, exactly once"
    );
    // A filtered search pages in rank order, each match once, while others write: the pages
    // hold exactly what one unpaged search finds before them.
    let whole: BTreeSet<String> = ids(&db.json(&[
        "memory",
        "search",
        "paged",
        "--namespace",
        "p",
        "--where",
        filter,
        "--limit",
        "1000",
    ]))
    .into_iter()
    .collect();
    assert!(whole.is_superset(&matching) && whole.len() > matching.len());
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut args = vec![
            "memory",
            "search",
            "paged",
            "--namespace",
            "p",
            "--where",
            filter,
            "--limit",
            "2",
        ];
        if let Some(c) = &cursor {
            args.push("--cursor");
            args.push(c);
        }
        let page = db.json(&args);
        seen.extend(ids(&page));
        add(
            db,
            &[
                "--namespace",
                "p",
                "--metadata",
                r#"{"keep": true}"#,
                "paged late",
            ],
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let unique: BTreeSet<String> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "a memory repeated: {seen:?}");
    assert_eq!(
        unique, whole,
        "the search pages hold every match of the first page once"
    );
    // A cursor continues only the filter it came from.
    let first = db.json(&[
        "memory",
        "ls",
        "--namespace",
        "p",
        "--where",
        filter,
        "--limit",
        "1",
    ]);
    let cursor = first["next_cursor"].as_str().unwrap();
    let other = db.run(&[
        "memory",
        "ls",
        "--namespace",
        "p",
        "--where",
        r#"{"keep": false}"#,
        "--cursor",
        cursor,
    ]);
    assert_exit(&other, 6);
}

pub fn history_records_every_change_by_cli_and_mcp_and_survives_export_import(db: &Db) {
    let mut cmd = db.cmd();
    let out = cmd
        .env("MODSTATE_WRITER", "alice")
        .args([
            "memory",
            "add",
            "--namespace",
            "h",
            "--tag",
            "a",
            "first text",
        ])
        .output()
        .unwrap();
    assert_exit(&out, 0);
    let id = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    ok(
        db,
        &[
            "memory",
            "update",
            &id,
            "second text",
            "--metadata",
            r#"{"k": 1}"#,
        ],
    );
    let mut server = mcp(db, "h");
    server.call_ok(
        "update_memory",
        json!({"id": id, "text": "third text", "tags": ["b"]}),
    );
    let history = server.call_ok("memory_history", json!({"id": id}));
    assert_eq!(history["events"].as_array().unwrap().len(), 3, "{history}");
    drop(server);

    let exported = ok(db, &["memory", "export", "--namespace", "h"]);
    let events = db.json(&["memory", "history", &id])["events"].clone();
    let summary: Vec<(String, String, Option<String>, Option<String>)> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["actor"].as_str().unwrap().to_owned(),
                e["old_text"].as_str().map(str::to_owned),
                e["new_text"].as_str().map(str::to_owned),
            )
        })
        .collect();
    let s = |t: &str| Some(t.to_owned());
    assert_eq!(
        summary,
        [
            ("add".into(), "alice".into(), None, s("first text")),
            (
                "update".into(),
                "".into(),
                s("first text"),
                s("second text")
            ),
            (
                "update".into(),
                "mcp:modstate-tests".into(),
                s("second text"),
                s("third text")
            ),
        ]
    );
    assert_eq!(
        events[1]["changes"]["metadata"],
        json!({"old": {}, "new": {"k": 1}})
    );
    assert_eq!(
        events[2]["changes"]["tags"],
        json!({"old": ["a"], "new": ["b"]})
    );
    let versions: Vec<u64> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["version"].as_u64().unwrap())
        .collect();
    assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");

    // Export carries the history; import brings it back in another store.
    let other = db.another();
    assert_exit(
        &other.run_in(&["memory", "import", "-"], exported.as_bytes()),
        0,
    );
    assert_eq!(other.json(&["memory", "history", &id])["events"], events);
    assert_eq!(
        ok(&other, &["memory", "export", "--namespace", "h"]),
        exported
    );
    // A format-1 line (today's files) still imports.
    let old = r#"{"id":"01900000-0000-7000-8000-000000000001","namespace":"old","category":"","text":"from an old export","created_at":"2026-01-01T00:00:00.000000Z","updated_at":"2026-01-01T00:00:00.000000Z","version":3}"#;
    assert_exit(&other.run_in(&["memory", "import", "-"], old.as_bytes()), 0);
    assert_eq!(
        other.json(&["memory", "get", "01900000-0000-7000-8000-000000000001"])["text"],
        "from an old export"
    );
    // Its past was not recorded: its history starts with the import.
    let imported = other.json(&["memory", "history", "01900000-0000-7000-8000-000000000001"]);
    assert_eq!(imported["events"][0]["action"], "import", "{imported}");
    assert_eq!(imported["events"].as_array().unwrap().len(), 1);

    // A deleted memory's history stays readable, ending with the delete.
    ok(db, &["memory", "rm", &id]);
    let after = db.json(&["memory", "history", &id]);
    assert_eq!(after["events"][3]["action"], "delete", "{after}");
    assert_eq!(after["events"][3]["old_text"], "third text");
    // Pruning bounds it; stats shows its size.
    assert!(
        db.json(&["stats"])["stats"]["history_events"]
            .as_u64()
            .unwrap()
            >= 4
    );
    assert_eq!(
        db.json(&["memory", "history", "prune", "--older-than", "1h"])["removed"],
        0
    );
    thread::sleep(Duration::from_millis(1100));
    assert!(
        db.json(&["memory", "history", "prune", "--older-than", "1s"])["removed"]
            .as_u64()
            .unwrap()
            >= 4
    );
    assert_exit(&db.run(&["memory", "history", &id]), 3);
}

pub fn supersedes_hides_the_old_memory_and_refuses_missing_or_already_superseded(db: &Db) {
    let old = add(db, &["--namespace", "s", "the office is on floor 3"]);
    let other = add(db, &["--namespace", "s", "the cafeteria opens at 8"]);
    let new = add(
        db,
        &[
            "--namespace",
            "s",
            "--supersedes",
            &old,
            "the office is on floor 5",
        ],
    );
    assert_eq!(
        ids(&db.json(&["memory", "ls", "--namespace", "s"])),
        [new.as_str(), other.as_str()]
    );
    assert_eq!(
        ids(&db.json(&["memory", "search", "office floor", "--namespace", "s"])),
        [new.as_str()]
    );
    let all = db.json(&["memory", "ls", "--namespace", "s", "--include-superseded"]);
    assert_eq!(ids(&all).len(), 3);
    let got = db.run(&["memory", "get", &old]);
    assert_exit(&got, 0);
    assert!(
        stderr(&got).contains(&format!("superseded by {new}")),
        "{}",
        stderr(&got)
    );
    assert_eq!(
        db.json(&["memory", "get", &old])["superseded_by"],
        new.as_str()
    );
    // Already superseded: a conflict, nothing written.
    let generation = db.json(&["memory", "generation", "--namespace", "s"]);
    let again = db.run(&[
        "memory",
        "add",
        "--namespace",
        "s",
        "--supersedes",
        &old,
        "floor 6",
    ]);
    assert_exit(&again, 4);
    assert_eq!(
        db.json(&["memory", "generation", "--namespace", "s"]),
        generation
    );
    // Missing: not found; stale expected version: conflict; another namespace: invalid.
    let missing = "01900000-0000-7000-8000-0000000000ff";
    assert_exit(
        &db.run(&[
            "memory",
            "add",
            "--namespace",
            "s",
            "--supersedes",
            missing,
            "x",
        ]),
        3,
    );
    let version = db.json(&["memory", "get", &other])["version"]
        .as_u64()
        .unwrap();
    let stale = (version - 1).to_string();
    assert_exit(
        &db.run(&[
            "memory",
            "add",
            "--namespace",
            "s",
            "--supersedes",
            &other,
            "--expect-version",
            &stale,
            "x",
        ]),
        4,
    );
    assert_exit(
        &db.run(&[
            "memory",
            "add",
            "--namespace",
            "t",
            "--supersedes",
            &other,
            "x",
        ]),
        6,
    );
    assert_eq!(
        db.json(&["memory", "generation", "--namespace", "s"]),
        generation
    );
    assert_eq!(
        ids(&db.json(&["memory", "ls", "--namespace", "s"])),
        [new.as_str(), other.as_str()]
    );
    // History on both sides.
    let history = db.json(&["memory", "history", &old]);
    assert_eq!(history["events"][1]["action"], "supersede");
    assert_eq!(
        history["events"][1]["changes"]["superseded_by"]["new"],
        new.as_str()
    );
    // MCP takes supersedes too.
    let mut server = mcp(db, "s");
    let replaced = server.call_ok(
        "add_memory",
        json!({"text": "cafeteria opens at 7", "supersedes": [other]}),
    );
    assert_eq!(
        db.json(&["memory", "get", &other])["superseded_by"],
        replaced["id"]
    );
}

pub fn of_eight_processes_superseding_one_memory_exactly_one_wins(db: &Db) {
    let target = add(db, &["--namespace", "c", "contested fact"]);
    let barrier = Barrier::new(8);
    let outputs: Vec<Output> = thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let barrier = &barrier;
                let target = &target;
                s.spawn(move || {
                    let mut cmd = db.cmd();
                    cmd.args([
                        "memory",
                        "add",
                        "--namespace",
                        "c",
                        "--supersedes",
                        target,
                        &format!("replacement {i}"),
                    ]);
                    barrier.wait();
                    cmd.output().unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let codes: Vec<i32> = outputs.iter().map(|o| o.status.code().unwrap()).collect();
    assert_eq!(codes.iter().filter(|c| **c == 0).count(), 1, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == 4).count(), 7, "{codes:?}");
    let winner = outputs.iter().find(|o| o.status.success()).unwrap();
    let winner = String::from_utf8(winner.stdout.clone())
        .unwrap()
        .trim()
        .to_owned();
    assert_eq!(
        ids(&db.json(&["memory", "ls", "--namespace", "c"])),
        [winner.as_str()]
    );
    assert_eq!(
        db.json(&["memory", "get", &target])["superseded_by"],
        winner.as_str()
    );
}

pub fn namespaces_list_counts_and_generations_by_prefix(db: &Db) {
    add(db, &["--namespace", "team/a", "one"]);
    add(db, &["--namespace", "team/a", "two"]);
    add(db, &["--namespace", "team/b", "three"]);
    add(db, &["--namespace", "other", "four"]);
    let listed = db.json(&["memory", "namespaces", "--prefix", "team/"]);
    let rows: Vec<(String, u64, u64)> = listed["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["namespace"].as_str().unwrap().to_owned(),
                n["memories"].as_u64().unwrap(),
                n["generation"].as_u64().unwrap(),
            )
        })
        .collect();
    let generation = |ns: &str| -> u64 {
        ok(db, &["memory", "generation", "--namespace", ns])
            .trim()
            .parse()
            .unwrap()
    };
    assert_eq!(
        rows,
        [
            ("team/a".to_owned(), 2, generation("team/a")),
            ("team/b".to_owned(), 1, generation("team/b")),
        ]
    );
    assert_eq!(
        db.json(&["memory", "namespaces"])["namespaces"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
}

pub fn bad_ttls_filters_and_metadata_are_refused_with_exit_6_and_change_nothing(db: &Db) {
    let id = add(db, &["--namespace", "b", "unchanged"]);
    let before = ok(db, &["memory", "export"]);
    let cases: &[(&[&str], &str)] = &[
        (
            &["memory", "add", "--ttl", "soon", "x"],
            "is not a duration",
        ),
        (
            &["memory", "add", "--ttl", "0s", "x"],
            "shorter than one second",
        ),
        (
            &["memory", "add", "--expires-at", "tomorrow", "x"],
            "not an RFC 3339 time",
        ),
        (
            &["memory", "add", "--refresh-on-read", "x"],
            "needs a lifetime",
        ),
        (
            &["memory", "add", "--metadata", "[1]", "x"],
            "must be a JSON object",
        ),
        (
            &["memory", "add", "--metadata", "{", "x"],
            "metadata is not JSON",
        ),
        (
            &["memory", "add", "--metadata", r#"{"$x": 1}"#, "x"],
            "is not allowed",
        ),
        (&["memory", "add", "--tag", "", "x"], "a tag is empty"),
        (
            &["memory", "update", &id, "--ttl", "7 fortnights"],
            "is not a duration",
        ),
        (&["memory", "ls", "--where", "not json"], "is not JSON"),
        (
            &["memory", "ls", "--where", r#"{"a": {"$regex": "x"}}"#],
            r#""$regex" is not an operator"#,
        ),
        (
            &["memory", "search", "q", "--where", r#"{"$or": {"a": 1}}"#],
            "$or takes a list",
        ),
        (
            &["memory", "ls", "--where", r#"{"a": {"$in": "x"}}"#],
            "a.$in takes a list",
        ),
        (
            &["memory", "ls", "--where", r#"{"a": {"$gt": true}}"#],
            "order comparisons take a number or a string",
        ),
        (
            &["memory", "ls", "--where", r#"{"a": [1]}"#],
            "a bare value must be",
        ),
    ];
    for (args, message) in cases {
        let out = db.run(args);
        assert_exit(&out, 6);
        let err = stderr(&out);
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(message), "{args:?}: {err}");
    }
    let metadata = format!(r#"{{"big": "{}"}}"#, "x".repeat(17 * 1024));
    let out = db.run(&["memory", "add", "--metadata", &metadata, "x"]);
    assert_exit(&out, 6);
    assert!(
        stderr(&out).contains("16384-byte limit"),
        "{}",
        stderr(&out)
    );
    assert_eq!(ok(db, &["memory", "export"]), before);
}

pub fn snapshots_carry_every_new_field_and_the_history_to_either_backend(db: &Db) {
    let old = add(
        db,
        &[
            "--namespace",
            "z",
            "--metadata",
            r#"{"k": [1, "two"]}"#,
            "--tag",
            "t",
            "old fact",
        ],
    );
    add(
        db,
        &[
            "--namespace",
            "z",
            "--supersedes",
            &old,
            "--ttl",
            "30d",
            "--refresh-on-read",
            "new fact",
        ],
    );
    ok(db, &["memory", "default-ttl", "--namespace", "z", "12h"]);
    let gone = add(db, &["--namespace", "z", "deleted later"]);
    ok(db, &["memory", "rm", &gone]);
    let snap = db.dir().join("snap.db");
    ok(db, &["snapshot", "export", snap.to_str().unwrap()]);
    // Everything but the stamps a restore moves on: memories, history, namespace settings.
    let content = |db: &Db| -> (Vec<Value>, Value, Value) {
        let mut memories: Vec<Value> = ok(db, &["memory", "export"])
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        for m in &mut memories {
            m.as_object_mut().unwrap().remove("version");
            for e in m["history"].as_array_mut().unwrap() {
                e.as_object_mut().unwrap().remove("version");
            }
        }
        let mut deleted = db.json(&["memory", "history", &gone]);
        for e in deleted["events"].as_array_mut().unwrap() {
            e.as_object_mut().unwrap().remove("version");
        }
        let mut namespaces = db.json(&["memory", "namespaces"]);
        for n in namespaces["namespaces"].as_array_mut().unwrap() {
            n.as_object_mut().unwrap().remove("generation");
        }
        (memories, deleted, namespaces)
    };
    let before = content(db);
    assert_eq!(before.0.len(), 2);
    assert_eq!(before.2["namespaces"][0]["default_ttl_seconds"], 12 * 3600);
    // Into a store of the same backend and into one of the other (SQLite for PostgreSQL).
    let targets = if db.is_postgres() {
        vec![db.another(), Db::sqlite()]
    } else {
        vec![db.another()]
    };
    for target in targets {
        ok(
            &target,
            &[
                "memory",
                "add",
                "--namespace",
                "z",
                "replaced by the restore",
            ],
        );
        ok(&target, &["snapshot", "restore", snap.to_str().unwrap()]);
        assert_eq!(content(&target), before, "{:?}", target.backend);
    }
    if !db.is_postgres()
        && let Some(pg) = Db::postgres()
    {
        ok(&pg, &["snapshot", "restore", snap.to_str().unwrap()]);
        assert_eq!(content(&pg), before, "SQLite snapshot into PostgreSQL");
    }
}

/// A store holding expired and superseded memories ranks exactly as one without them: they
/// count neither as memories nor as holders of a word (each memory here is four words long, so
/// the average length is the same either way).
pub fn expired_and_superseded_memories_do_not_count_in_the_ranking_statistics(db: &Db) {
    let plain = db.another();
    let score = |db: &Db| -> (String, f64) {
        let page = db.json(&["memory", "search", "rare"]);
        assert_eq!(page["memories"].as_array().unwrap().len(), 1, "{page}");
        (
            page["memories"][0]["text"].as_str().unwrap().to_owned(),
            page["memories"][0]["score"].as_f64().unwrap(),
        )
    };
    for db in [db, &plain] {
        add(db, &["the rare bird sings"]);
        add(db, &["common words only here"]);
    }
    add(&plain, &["replacement note about lunch"]);
    let hidden = add(db, &["rare rare rare extra"]);
    add(
        db,
        &["--supersedes", &hidden, "replacement note about lunch"],
    );
    // Far enough ahead that a slow start of `add` still gives a future time.
    let at = SystemTime::now() + Duration::from_secs(3);
    add(db, &["--expires-at", &rfc3339(at), "rare once more again"]);
    wait_past(at);
    assert_eq!(score(db), score(&plain));
}

// ---------------------------------------------------------------------------------------------
// migration

/// `fixtures/memories/schema-4.db` was made by the previous binary (main at 1f39076): four
/// `memory add`s in team/alpha, team/beta and the default namespace, an update, a removal and
/// another add. It migrates in place keeping every memory, version and generation, then takes
/// the new fields.
#[test]
fn a_schema_4_database_migrates_in_place_keeping_every_memory_version_and_generation() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    std::fs::copy("fixtures/memories/schema-4.db", &db).unwrap();
    let run = |args: &[&str]| -> Value {
        let out = std::process::Command::new(crate::common::BIN)
            .env_remove("MODSTATE_DB")
            .arg("--db")
            .arg(&db)
            .arg("--json")
            .args(args)
            .output()
            .unwrap();
        assert_exit(&out, 0);
        json(&out)
    };
    let listed = run(&["memory", "ls"]);
    let rows: Vec<(String, String, u64, u64)> = listed["memories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["namespace"].as_str().unwrap().to_owned(),
                m["text"].as_str().unwrap().to_owned(),
                m["version"].as_u64().unwrap(),
                m["generation"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            (
                "team/alpha".into(),
                "Melanie ran a charity race".into(),
                7,
                7
            ),
            ("".into(), "default namespace note".into(), 4, 4),
            ("team/beta".into(), "prefers tabs over spaces".into(), 3, 3),
            (
                "team/alpha".into(),
                "the deploy target is fly.io, region ams".into(),
                5,
                7
            ),
        ]
    );
    let conn = rusqlite::Connection::open(&db).unwrap();
    let version: u32 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, modstate::store::SCHEMA_VERSION);
    drop(conn);
    let first = listed["memories"][3]["id"].as_str().unwrap().to_owned();
    let stale = run(&[
        "memory",
        "update",
        &first,
        "--tag",
        "t",
        "--expect-generation",
        "7",
    ]);
    assert_eq!(stale["version"], 8);
    assert_eq!(stale["tags"], json!(["t"]));
}

/// A PostgreSQL database of schema 4, as the previous binary left it, migrates in place.
#[test]
fn a_schema_4_postgres_database_migrates_in_place() {
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let db = cluster.database();
    let url = cluster.socket_url(&db);
    cluster.psql_exec(&db, include_str!("../migrations/postgres/0003_schema.sql"));
    cluster.psql_exec(
        &db,
        include_str!("../migrations/postgres/0004_search_statistics.sql"),
    );
    cluster.psql_exec(
        &db,
        "INSERT INTO modstate_schema (singleton, version) VALUES (true, 4)",
    );
    cluster.psql_exec(
        &db,
        "INSERT INTO memories (id, namespace, category, body, grams, search, created_at, updated_at, version)
         VALUES ('01900000-0000-7000-8000-000000000001', 'old', 'fact', 'kept through the upgrade', '',
                 to_tsvector('modstate_search', 'kept through the upgrade'),
                 '2026-01-01T00:00:00.000000Z', '2026-01-01T00:00:00.000000Z', 9);
         UPDATE memory_counter SET value = 12; INSERT INTO memory_namespaces VALUES ('old', 12)",
    );
    let run = |args: &[&str]| -> Value {
        let mut cmd = std::process::Command::new(crate::common::BIN);
        crate::common::postgres::clear_pg_env(&mut cmd);
        let out = cmd
            .env_remove("MODSTATE_DB")
            .args(["--db", &url, "--json"])
            .args(args)
            .output()
            .unwrap();
        assert_exit(&out, 0);
        json(&out)
    };
    let page = run(&["memory", "ls"]);
    assert_eq!(
        page["memories"][0]["text"], "kept through the upgrade",
        "{page}"
    );
    assert_eq!(page["memories"][0]["version"], 9);
    assert_eq!(page["memories"][0]["generation"], 12);
    assert_eq!(page["memories"][0]["metadata"], json!({}));
    assert_eq!(
        cluster
            .psql_query(&db, "SELECT version FROM modstate_schema")
            .trim(),
        modstate::store::SCHEMA_VERSION.to_string()
    );
    let found = run(&[
        "memory",
        "search",
        "upgrade",
        "--where",
        r#"{"category": "fact"}"#,
    ]);
    assert_eq!(found["memories"].as_array().unwrap().len(), 1);
    let updated = run(&[
        "memory",
        "update",
        "01900000-0000-7000-8000-000000000001",
        "--metadata",
        r#"{"k": 2}"#,
        "--expect-generation",
        "12",
    ]);
    assert_eq!(updated["version"], 13);
}

// ---------------------------------------------------------------------------------------------
// refresh-on-read never waits for a writer

/// While another process holds the SQLite write lock (as a writer in its transaction does), a
/// read of a refresh-on-read memory that is due a push answers at once (with a 1 s lock
/// timeout it would fail with exit 5 if it waited) and leaves the expiry as it was; once the
/// lock is free, the next read pushes it.
#[test]
fn refresh_on_read_skips_the_push_instead_of_waiting_for_the_write_lock() {
    let Some(flock) = crate::common::require_tool(
        "flock",
        "the refresh-without-waiting test",
        "apt-get install util-linux",
    ) else {
        return;
    };
    let db = Db::sqlite();
    let id = add(&db, &["--ttl", "10s", "--refresh-on-read", "refresh me"]);
    let added = db.json(&["memory", "get", &id])["expires_at"].clone();
    // Past a tenth of the lifetime: the next read is due to push.
    thread::sleep(Duration::from_millis(1100));
    let lock = std::path::PathBuf::from(format!("{}.locks/write", db.arg()));
    assert!(lock.exists(), "{}", lock.display());
    // -F: flock execs the command, so the process killed below is the one holding the lock.
    let mut holder = std::process::Command::new(flock)
        .args(["-x", "-F"])
        .arg(&lock)
        .args(["-c", "echo held; exec sleep 60"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "held");
    // A long lock timeout: a read that waited for the lock would still succeed, after the
    // holder is gone, with the expiry pushed. The holder is ended only once the reads are
    // done, or after 20 s if one of them hangs on the lock.
    let read = |args: &[&str]| -> Value {
        let mut all = vec!["--lock-timeout", "600"];
        all.extend_from_slice(args);
        db.json(&all)
    };
    let seen = thread::scope(|s| {
        let reads = s.spawn(|| {
            [
                read(&["memory", "get", &id])["expires_at"].clone(),
                read(&["memory", "ls"])["memories"][0]["expires_at"].clone(),
                read(&["memory", "search", "refresh"])["memories"][0]["expires_at"].clone(),
            ]
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !reads.is_finished() && std::time::Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        holder.kill().unwrap();
        holder.wait().unwrap();
        reads.join().unwrap()
    });
    assert_eq!(seen, [added.clone(), added.clone(), added.clone()]);
    let pushed = read(&["memory", "get", &id])["expires_at"].clone();
    assert!(
        pushed.as_str().unwrap() > added.as_str().unwrap(),
        "{pushed} {added}"
    );
    assert_eq!(db.json(&["memory", "get", &id])["expires_at"], pushed);
}
