//! Agent memories through the CLI on any backend: CRUD and exit codes, namespaces, paging
//! with cursors, the drift guard (generations and versions) under contention from eight
//! processes, and search: ranking order, paging in rank order, stemming, accents, CJK,
//! symbols, and what user text can never do to the query.

use super::Db;
use crate::common::{assert_exit, json, stderr};
use std::collections::BTreeSet;
use std::process::Output;
use std::sync::Barrier;
use std::thread;

fn modstate(db: &Db, args: &[&str]) -> Output {
    db.run(args)
}

fn modstate_with_stdin(db: &Db, args: &[&str], stdin: &[u8]) -> Output {
    db.run_in(args, stdin)
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn cli_generation(db: &Db) -> u64 {
    let out = modstate(db, &["memory", "generation"]);
    assert_exit(&out, 0);
    stdout(&out).trim().parse().unwrap()
}

/// `modstate --json ARGS…`, exit 0, its JSON.
fn cli_json(db: &Db, args: &[&str]) -> serde_json::Value {
    let mut all_args = vec!["--json"];
    all_args.extend_from_slice(args);
    let out = modstate(db, &all_args);
    assert_exit(&out, 0);
    json(&out)
}

/// Adds a memory to `namespace` through the CLI; its id.
fn add(db: &Db, namespace: &str, text: &str) -> String {
    let out = modstate(db, &["memory", "add", "--namespace", namespace, "--", text]);
    assert_exit(&out, 0);
    stdout(&out).trim().to_owned()
}

/// The ids of `memory search <query>` (JSON), best first.
fn search_ids(db: &Db, query: &str) -> Vec<String> {
    page_ids(&cli_json(db, &["memory", "search", "--", query]))
}

/// The texts of a `{"memories": [...]}` page.
fn page_texts(page: &serde_json::Value) -> Vec<String> {
    page["memories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_owned())
        .collect()
}

fn page_ids(page: &serde_json::Value) -> Vec<String> {
    page["memories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect()
}

pub fn cli_round_trip_and_exit_codes(db: &Db) {
    let out = modstate(
        db,
        &[
            "memory",
            "add",
            "--namespace",
            "a",
            "--category",
            "pref",
            "likes tea",
        ],
    );
    assert_exit(&out, 0);
    let tea = stdout(&out).trim().to_owned();
    assert_eq!(tea.len(), 36, "prints the id: {tea:?}");

    let out = modstate_with_stdin(
        db,
        &["--json", "memory", "add", "-"],
        "two\nlines\twith tab \\ slash".as_bytes(),
    );
    assert_exit(&out, 0);
    let two = json(&out);
    assert_eq!(two["text"], "two\nlines\twith tab \\ slash");
    assert_eq!(two["namespace"], "");
    assert_eq!(two["generation"], 2);
    let two_id = two["id"].as_str().unwrap().to_owned();

    // Text output: one memory a line, newest first, the body escaped.
    let out = modstate(db, &["memory", "ls"]);
    assert_exit(&out, 0);
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    let fields: Vec<&str> = lines[0].split('\t').collect();
    assert_eq!(fields[0], two_id);
    assert_eq!(fields[4], "two\\nlines\\twith tab \\\\ slash");
    let fields: Vec<&str> = lines[1].split('\t').collect();
    assert_eq!(
        (fields[0], fields[1], fields[2], fields[4]),
        (tea.as_str(), "a", "pref", "likes tea")
    );

    let out = modstate(db, &["--json", "memory", "get", &tea]);
    assert_exit(&out, 0);
    assert_eq!(json(&out)["text"], "likes tea");

    let out = modstate(
        db,
        &["--json", "memory", "search", "TEA", "--category", "PREF"],
    );
    assert_exit(&out, 0);
    let hits = json(&out);
    assert_eq!(hits["memories"].as_array().unwrap().len(), 1);
    assert_eq!(hits["memories"][0]["id"], tea.as_str());
    assert!(hits["memories"][0]["score"].as_f64().unwrap() > 0.0);
    assert_eq!(
        hits["generation"],
        serde_json::Value::Null,
        "no namespace: no one generation"
    );
    assert_eq!(
        hits["memories"][0]["generation"], 1,
        "namespace a's generation"
    );

    let out = modstate(db, &["memory", "search", "NEAR(\"unbalanced -x:^"]);
    assert_exit(&out, 0);
    assert_eq!(stdout(&out), "");

    let out = modstate(
        db,
        &["--json", "memory", "ls", "--namespace", "a", "--limit", "5"],
    );
    assert_exit(&out, 0);
    assert_eq!(json(&out)["memories"].as_array().unwrap().len(), 1);

    let out = modstate(db, &["memory", "ls", "--limit", "1"]);
    assert_exit(&out, 0);
    assert_eq!(stdout(&out).lines().count(), 1);
    assert!(stderr(&out).contains("--cursor"), "says more exist");

    assert_eq!(cli_generation(db), 2);

    // Drift guard on the command line.
    let out = modstate(
        db,
        &[
            "memory",
            "update",
            &tea,
            "likes green tea",
            "--expect-generation",
            "2",
        ],
    );
    assert_exit(&out, 4);
    assert!(
        stderr(&out).contains("the generation of namespace \"a\" is 1, not the expected 2"),
        "{}",
        stderr(&out)
    );
    let out = modstate(
        db,
        &[
            "--json",
            "memory",
            "update",
            &tea,
            "likes green tea",
            "--expect-generation",
            "1",
        ],
    );
    assert_exit(&out, 0);
    assert_eq!(json(&out)["text"], "likes green tea");
    assert_eq!(json(&out)["category"], "pref");
    assert_eq!(json(&out)["generation"], 3);

    let out = modstate(db, &["memory", "rm", &two_id, "--expect-generation", "1"]);
    assert_exit(&out, 4);
    let out = modstate(db, &["--json", "memory", "rm", &two_id]);
    assert_exit(&out, 0);
    assert_eq!(json(&out)["generation"], 4);

    // Absent ids: exit 3.
    assert_exit(&modstate(db, &["memory", "get", &two_id]), 3);
    assert_exit(&modstate(db, &["memory", "rm", &two_id]), 3);
    assert_exit(&modstate(db, &["memory", "update", &two_id, "x"]), 3);

    // Invalid input: exit 6, nothing written.
    let out = modstate_with_stdin(db, &["memory", "add", "-"], b"bad \xff utf8");
    assert_exit(&out, 6);
    assert!(stderr(&out).contains("UTF-8"), "{}", stderr(&out));
    assert_exit(&modstate(db, &["memory", "add", ""]), 6);
    let big = vec![b'a'; 64 * 1024 + 1];
    let out = modstate_with_stdin(db, &["memory", "add", "-"], &big);
    assert_exit(&out, 6);
    assert!(stderr(&out).contains("65536"), "{}", stderr(&out));
    let long = "c".repeat(257);
    let out = modstate(db, &["memory", "add", "--category", &long, "text"]);
    assert_exit(&out, 6);
    assert!(stderr(&out).contains("256-byte limit"), "{}", stderr(&out));
    let out = modstate(db, &["memory", "rm", &tea, "--expect-generation", "soon"]);
    assert_exit(&out, 2);
    assert_eq!(cli_generation(db), 4, "no failed command wrote");
    let out = modstate(db, &["--json", "memory", "ls"]);
    assert_eq!(json(&out)["memories"].as_array().unwrap().len(), 1);
}

pub fn invalid_utf8_in_an_argument_is_invalid_input(db: &Db) {
    use std::os::unix::ffi::OsStrExt;
    let out = db
        .cmd()
        .args(["memory", "add"])
        .arg(std::ffi::OsStr::from_bytes(b"bad \xff"))
        .output()
        .unwrap();
    assert_exit(&out, 6);
}

pub fn cli_text_and_queries_may_start_with_a_dash(db: &Db) {
    let out = modstate(
        db,
        &["--json", "memory", "add", "- bullet item from markdown"],
    );
    assert_exit(&out, 0);
    assert_eq!(json(&out)["text"], "- bullet item from markdown");
    let id = json(&out)["id"].as_str().unwrap().to_owned();

    let out = modstate(
        db,
        &["--json", "memory", "search", "-bullet", "--limit", "5"],
    );
    assert_exit(&out, 0);
    assert_eq!(json(&out)["memories"][0]["id"], id.as_str());

    let out = modstate(db, &["memory", "update", &id, "-5 degrees"]);
    assert_exit(&out, 0);
    // No query at all lists, like an empty one.
    let out = modstate(db, &["--json", "memory", "search"]);
    assert_exit(&out, 0);
    assert_eq!(json(&out)["memories"][0]["text"], "-5 degrees");
}

pub fn cli_listing_pages_with_a_cursor_and_the_documented_shape(db: &Db) {
    for i in 0..7 {
        assert_exit(
            &modstate(
                db,
                &["memory", "add", "--namespace", "a", &format!("memo {i}")],
            ),
            0,
        );
    }
    let first = cli_json(db, &["memory", "ls", "--namespace", "a", "--limit", "3"]);
    let keys: Vec<&String> = first.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["memories", "generation", "next_cursor"]);
    assert_eq!(first["generation"], 7);
    let memory_keys: Vec<&String> = first["memories"][0].as_object().unwrap().keys().collect();
    assert_eq!(
        memory_keys,
        [
            "id",
            "namespace",
            "category",
            "text",
            "created_at",
            "updated_at",
            "version",
            "generation",
            "metadata",
            "tags",
            "expires_at",
            "ttl_seconds",
            "refresh_on_read",
            "superseded_by",
            "written_by"
        ]
    );
    let mut texts = page_texts(&first);
    let mut cursor = first["next_cursor"].as_str().unwrap().to_owned();
    // A write between pages: the new memory is newer than the first page, so it is not
    // listed; nothing repeats.
    assert_exit(
        &modstate(db, &["memory", "add", "--namespace", "a", "late"]),
        0,
    );
    loop {
        let page = cli_json(
            db,
            &[
                "memory",
                "ls",
                "--namespace",
                "a",
                "--limit",
                "3",
                "--cursor",
                &cursor,
            ],
        );
        texts.extend(page_texts(&page));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = c.to_owned(),
            None => break,
        }
    }
    let expected: Vec<String> = (0..7).rev().map(|i| format!("memo {i}")).collect();
    assert_eq!(texts, expected);
    // A cursor of one listing does not continue another.
    let out = modstate(
        db,
        &["memory", "ls", "--namespace", "b", "--cursor", &cursor],
    );
    assert_exit(&out, 6);
    let out = modstate(db, &["memory", "search", "memo", "--cursor", &cursor]);
    assert_exit(&out, 6);
}

pub fn stemming_finds_other_forms_of_english_words_and_accents_still_fold(db: &Db) {
    for text in [
        "Deploys to production happen on Fridays",
        "The user prefers Rust for CLI tools",
        "Crème brûlée recipe from the café",
        "unrelated note about lunch",
    ] {
        assert_exit(&modstate(db, &["memory", "add", text]), 0);
    }
    let cases: &[(&str, &str)] = &[
        (
            "deploy production",
            "Deploys to production happen on Fridays",
        ),
        (
            "deployed to production",
            "Deploys to production happen on Fridays",
        ),
        ("prefer rust", "The user prefers Rust for CLI tools"),
        ("preferring rust", "The user prefers Rust for CLI tools"),
        ("creme brulee", "Crème brûlée recipe from the café"),
        ("CAFE recipes", "Crème brûlée recipe from the café"),
    ];
    for (query, expected) in cases {
        let page = cli_json(db, &["memory", "search", query]);
        assert_eq!(page_texts(&page), [*expected], "query {query:?}");
    }
}

pub fn words_inside_cjk_text_are_found(db: &Db) {
    let texts = [
        "日本語のドキュメントを更新する",
        "提交信息请用中文写",
        "Dagger的配置文件在仓库根目录",
        "데이터베이스를 매일 백업합니다",
        "English only note",
    ];
    for text in texts {
        assert_exit(&modstate(db, &["memory", "add", text]), 0);
    }
    let cases: &[(&str, &[usize])] = &[
        ("日本語", &[0]),
        ("ドキュメント", &[0]),
        ("中文", &[1]),
        ("提交信息", &[1]),
        ("中", &[1]),
        ("配置", &[2]),
        ("dagger", &[2]),
        ("dagger 配置文件", &[2]),
        ("데이터베이스", &[3]),
        ("백업", &[3]),
        ("文档", &[]),
        ("中文文档", &[]),
    ];
    for (query, expected) in cases {
        let page = cli_json(db, &["memory", "search", query]);
        let expected: Vec<String> = expected.iter().map(|&i| texts[i].to_owned()).collect();
        assert_eq!(page_texts(&page), expected, "query {query:?}");
    }
}

pub fn symbol_queries_find_what_was_typed_or_nothing_with_a_note(db: &Db) {
    for text in ["Release shipped 🚀", "plain note one", "plain note two"] {
        assert_exit(&modstate(db, &["memory", "add", text]), 0);
    }
    let out = modstate(db, &["--json", "memory", "search", "🚀"]);
    assert_exit(&out, 0);
    assert_eq!(page_texts(&json(&out)), ["Release shipped 🚀"]);
    assert!(
        stderr(&out).contains("no letters or digits"),
        "{}",
        stderr(&out)
    );
    let out = modstate(db, &["--json", "memory", "search", "✅"]);
    assert_exit(&out, 0);
    assert!(
        page_texts(&json(&out)).is_empty(),
        "never unrelated memories"
    );
    assert!(json(&out)["note"].as_str().unwrap().contains("✅"));
    // Text output: nothing on stdout, the note on stderr.
    let out = modstate(db, &["memory", "search", "✅"]);
    assert_exit(&out, 0);
    assert_eq!(stdout(&out), "");
    assert!(stderr(&out).contains("no letters or digits"));
}

pub fn stdin_text_loses_one_trailing_newline_only(db: &Db) {
    for (input, stored) in [
        ("Deploys happen on Fridays\n", "Deploys happen on Fridays"),
        ("windows line\r\n", "windows line"),
        ("two newlines\n\n", "two newlines\n"),
        ("no newline", "no newline"),
    ] {
        let out = modstate_with_stdin(db, &["--json", "memory", "add", "-"], input.as_bytes());
        assert_exit(&out, 0);
        assert_eq!(json(&out)["text"], stored, "{input:?}");
        let id = json(&out)["id"].as_str().unwrap().to_owned();
        let out = modstate_with_stdin(
            db,
            &["--json", "memory", "update", &id, "-"],
            input.as_bytes(),
        );
        assert_exit(&out, 0);
        assert_eq!(json(&out)["text"], stored, "update {input:?}");
    }
}

pub fn generations_are_per_namespace_and_versions_per_memory(db: &Db) {
    let mine = cli_json(db, &["memory", "add", "--namespace", "agent-a", "mine"]);
    let id = mine["id"].as_str().unwrap().to_owned();
    let seen = mine["generation"].as_u64().unwrap();
    let version = mine["version"].as_u64().unwrap();
    // Another namespace's writes do not move agent-a's generation…
    cli_json(db, &["memory", "add", "--namespace", "other", "theirs"]);
    let out = modstate(db, &["memory", "generation", "--namespace", "agent-a"]);
    assert_exit(&out, 0);
    assert_eq!(stdout(&out).trim(), seen.to_string());
    let out = modstate(db, &["memory", "generation", "--namespace", "other"]);
    assert_eq!(stdout(&out).trim(), (seen + 1).to_string());
    // …so agent-a's guarded update goes through.
    let seen_text = seen.to_string();
    let updated = cli_json(
        db,
        &[
            "memory",
            "update",
            &id,
            "mine, updated",
            "--expect-generation",
            &seen_text,
        ],
    );
    assert!(updated["version"].as_u64().unwrap() > version);
    assert_eq!(updated["generation"], updated["version"]);
    // A stale version: exit 4, nothing written.
    let version_text = version.to_string();
    let out = modstate(
        db,
        &[
            "memory",
            "update",
            &id,
            "lost",
            "--expect-version",
            &version_text,
        ],
    );
    assert_exit(&out, 4);
    assert!(
        stderr(&out).contains("version of memory"),
        "{}",
        stderr(&out)
    );
    let out = modstate(
        db,
        &["memory", "rm", &id, "--expect-version", &version_text],
    );
    assert_exit(&out, 4);
    assert_eq!(
        cli_json(db, &["memory", "get", &id])["text"],
        "mine, updated"
    );
    // The current version: written. Every `generation` shown is usable as expected.
    let current = updated["version"].as_u64().unwrap().to_string();
    let listed = cli_json(db, &["memory", "ls", "--namespace", "agent-a"]);
    let generation = listed["generation"].as_u64().unwrap().to_string();
    assert_eq!(listed["memories"][0]["generation"], listed["generation"]);
    let deleted = cli_json(
        db,
        &[
            "memory",
            "rm",
            &id,
            "--expect-version",
            &current,
            "--expect-generation",
            &generation,
        ],
    );
    assert_eq!(deleted["deleted"], true);
    let keys: Vec<&String> = deleted.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["id", "deleted", "generation"]);
}

pub fn malformed_ids_and_cursors_are_invalid_input(db: &Db) {
    assert_exit(&modstate(db, &["memory", "add", "kept"]), 0);
    for args in [
        &["memory", "get", "nonsense"][..],
        &["memory", "update", "nonsense", "text"],
        &["memory", "rm", "nonsense"],
        &["memory", "get", "../../x"],
        &["memory", "ls", "--cursor", "nonsense"],
        &["memory", "search", "kept", "--cursor", "nonsense"],
        &["memory", "search", "kept", "--cursor", "6c2e"],
    ] {
        let out = modstate(db, args);
        assert_exit(&out, 6);
        assert_eq!(stdout(&out), "", "{args:?}");
        assert_eq!(
            stderr(&out).lines().count(),
            1,
            "{args:?}: {}",
            stderr(&out)
        );
    }
    assert_eq!(page_texts(&cli_json(db, &["memory", "ls"])), ["kept"]);
}

pub fn a_restore_never_brings_back_a_generation_already_handed_out(db: &Db) {
    let snapshot = db.dir().join("old.db");
    let first = cli_json(db, &["memory", "add", "the plan, first draft"]);
    let id = first["id"].as_str().unwrap().to_owned();
    assert_eq!(first["generation"], 1);
    assert_exit(
        &modstate(db, &["snapshot", "export", snapshot.to_str().unwrap()]),
        0,
    );
    cli_json(db, &["memory", "update", &id, "the plan, second draft"]);
    cli_json(db, &["memory", "update", &id, "the plan, third draft"]);
    let agent_read = cli_json(db, &["memory", "get", &id]);
    assert_eq!(agent_read["generation"], 3);
    let agent_version = agent_read["version"].as_u64().unwrap();

    assert_exit(
        &modstate(db, &["snapshot", "restore", snapshot.to_str().unwrap()]),
        0,
    );
    cli_json(db, &["memory", "add", "someone else's note"]);
    cli_json(db, &["memory", "add", "and another"]);
    let now = cli_generation(db);
    assert_ne!(
        now, 3,
        "the generation came back to a value already handed out"
    );

    let out = modstate(
        db,
        &[
            "memory",
            "update",
            &id,
            "the agent's stale edit",
            "--expect-generation",
            "3",
        ],
    );
    assert_exit(&out, 4);
    let version = agent_version.to_string();
    let out = modstate(
        db,
        &[
            "memory",
            "update",
            &id,
            "the agent's stale edit",
            "--expect-version",
            &version,
        ],
    );
    assert_exit(&out, 4);
    assert_eq!(
        cli_json(db, &["memory", "get", &id])["text"],
        "the plan, first draft"
    );
}

pub fn memories_holding_more_of_the_words_come_first_and_function_words_do_not_count(db: &Db) {
    for text in [
        "Kenji Watanabe owns the search service; ask him before changing the ranking",
        "The search box on the website uses the same service",
        "Kenji likes ramen",
        "Who is who: the who's who of the team, who knows who",
    ] {
        assert_exit(&modstate(db, &["memory", "add", text]), 0);
    }
    // "who" is a function word: the memory repeating it is not a match for the question.
    let out = modstate(db, &["--json", "memory", "search", "Who owns search?"]);
    assert_exit(&out, 0);
    let page = json(&out);
    let texts = page_texts(&page);
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(texts[0].starts_with("Kenji Watanabe owns"), "{texts:?}");
    assert!(page.get("note").is_none(), "{page}");
    // Its pages continue in the same order.
    let first = cli_json(
        db,
        &["memory", "search", "Who owns search?", "--limit", "1"],
    );
    let cursor = first["next_cursor"].as_str().unwrap();
    let second = cli_json(
        db,
        &[
            "memory",
            "search",
            "Who owns search?",
            "--limit",
            "1",
            "--cursor",
            cursor,
        ],
    );
    assert_eq!([page_texts(&first), page_texts(&second)].concat(), texts);
    // The memory holding every word first, then those holding some.
    let page = cli_json(db, &["memory", "search", "kenji ramen"]);
    assert_eq!(page_texts(&page)[0], "Kenji likes ramen");
    assert_eq!(page_texts(&page).len(), 2);
    // A query of function words only searches for them.
    let page = cli_json(db, &["memory", "search", "who"]);
    assert!(page_texts(&page)[0].starts_with("Who is who"), "{page}");
}

/// Questions as agents ask them: the function words ("what", "did", "when", "I") fill chatty
/// turns and must not outvote the one content word that matters. Here they are rare in the
/// store (one chatty memory), so term weights alone would rank the chatter first.
pub fn function_words_of_a_question_do_not_outvote_its_content_words(db: &Db) {
    let research = add(db, "", "Researched adoption agencies last week");
    let zurich = add(db, "", "Moved to Zurich in March 2021, for the new job");
    let pottery = add(db, "", "Signed up for a pottery class on Saturdays");
    add(
        db,
        "",
        "What did you do? What did they say when I asked? When did I? What did I?",
    );
    for (question, wanted) in [
        ("What did I research?", &research),
        ("When did I move?", &zurich),
        ("What class did I sign up for?", &pottery),
    ] {
        let hits = search_ids(db, question);
        assert_eq!(hits.first(), Some(wanted), "{question}: {hits:?}");
    }
}

/// A question's word and a memory's word that differ by an irregular form match, both ways:
/// each wanted memory holds one query word as typed and one as another form, and a shorter
/// decoy holds only the word as typed.
pub fn irregular_forms_match_both_ways(db: &Db) {
    let lisbon = add(db, "", "We went to Lisbon in May and loved it");
    let bike = add(db, "", "Bought a new bike for the commute");
    let park = add(db, "", "The children love the park by the river");
    let swim = add(db, "", "Ana goes swimming before work");
    for decoy in [
        "Lisbon is lovely",
        "The bike is red",
        "The park is closed",
        "Swimming pool hours",
    ] {
        add(db, "", decoy);
    }
    for (query, wanted) in [
        ("go to Lisbon", &lisbon),
        ("When did I buy the bike?", &bike),
        ("child park", &park),
        ("who went swimming", &swim),
    ] {
        let hits = search_ids(db, query);
        assert_eq!(hits.first(), Some(wanted), "{query}: {hits:?}");
    }
}

pub fn eight_processes_adding_at_once_lose_nothing(db: &Db) {
    const WORKERS: usize = 8;
    const ADDS: usize = 25;
    assert_exit(&modstate(db, &["init"]), 0);

    let start = Barrier::new(WORKERS);
    let ids: Vec<String> = thread::scope(|s| {
        let workers: Vec<_> = (0..WORKERS)
            .map(|w| {
                let start = &start;
                s.spawn(move || {
                    start.wait();
                    let mut ids = Vec::new();
                    for i in 0..ADDS {
                        let text = format!("worker {w} note {i}");
                        let out = modstate(
                            db,
                            &["memory", "add", "--namespace", &format!("w{w}"), &text],
                        );
                        assert_exit(&out, 0);
                        ids.push(stdout(&out).trim().to_owned());
                    }
                    ids
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });

    let total = WORKERS * ADDS;
    let distinct: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), total, "every add got its own id");

    let mut stored_ids = BTreeSet::new();
    let mut versions = BTreeSet::new();
    for w in 0..WORKERS {
        let ns = format!("w{w}");
        let page = cli_json(db, &["memory", "ls", "--namespace", &ns, "--limit", "1000"]);
        let expected: Vec<String> = (0..ADDS)
            .rev()
            .map(|i| format!("worker {w} note {i}"))
            .collect();
        assert_eq!(
            page_texts(&page),
            expected,
            "a worker's memories, newest first"
        );
        let mine = page["memories"].as_array().unwrap();
        stored_ids.extend(page_ids(&page));
        versions.extend(mine.iter().map(|m| m["version"].as_u64().unwrap()));
        let newest = mine
            .iter()
            .map(|m| m["version"].as_u64().unwrap())
            .max()
            .unwrap();
        let generation = stdout(&modstate(db, &["memory", "generation", "--namespace", &ns]));
        assert_eq!(
            generation.trim(),
            newest.to_string(),
            "a namespace's generation is the stamp of its last write"
        );
    }
    assert_eq!(stored_ids, distinct.into_iter().cloned().collect());
    assert_eq!(versions.len(), total, "each add had its own version");
}

pub fn eight_processes_with_one_expected_version_one_wins_and_namespaces_never_conflict(db: &Db) {
    const WORKERS: usize = 8;
    let target = add(db, "shared", "contended");
    let own: Vec<String> = (0..WORKERS)
        .map(|w| add(db, &format!("ns{w}"), "own"))
        .collect();
    for round in 0..3 {
        let version = cli_json(db, &["memory", "get", &target])["version"].to_string();
        let start = Barrier::new(WORKERS);
        let codes: Vec<(Option<i32>, Option<i32>)> = thread::scope(|s| {
            let workers: Vec<_> = (0..WORKERS)
                .map(|w| {
                    let (start, id, version, own) = (&start, &target, &version, &own[w]);
                    s.spawn(move || {
                        start.wait();
                        let text = format!("racer{w}round{round}");
                        let contended = modstate(
                            db,
                            &["memory", "update", id, &text, "--expect-version", version],
                        );
                        // Each worker also writes its own namespace with the generation it
                        // read: the others' writes never make it conflict.
                        let generation = stdout(&modstate(
                            db,
                            &["memory", "generation", "--namespace", &format!("ns{w}")],
                        ))
                        .trim()
                        .to_owned();
                        let mine = modstate(
                            db,
                            &[
                                "memory",
                                "update",
                                own,
                                &text,
                                "--expect-generation",
                                &generation,
                            ],
                        );
                        (contended.status.code(), mine.status.code())
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).collect()
        });
        let wins = codes.iter().filter(|(c, _)| *c == Some(0)).count();
        let conflicts = codes.iter().filter(|(c, _)| *c == Some(4)).count();
        assert_eq!(
            (wins, conflicts),
            (1, WORKERS - 1),
            "round {round}: {codes:?}"
        );
        assert!(
            codes.iter().all(|(_, mine)| *mine == Some(0)),
            "round {round}: a namespace conflicted with another: {codes:?}"
        );
        let stored = cli_json(db, &["memory", "get", &target]);
        assert!(
            stored["text"]
                .as_str()
                .unwrap()
                .ends_with(&format!("round{round}")),
            "{stored}"
        );
    }
}

pub fn cli_search_pages_in_rank_order_without_repeats_or_skips_while_others_write(db: &Db) {
    // 28 memories with "the", of very different lengths and shapes, so scores spread.
    for i in 0..28 {
        add(
            db,
            "",
            &format!("the note {i}{}", " with the extra words".repeat(i % 5)),
        );
    }
    add(db, "", "unrelated");
    let whole = cli_json(db, &["memory", "search", "the", "--limit", "1000"]);
    let expected = page_ids(&whole);
    assert_eq!(expected.len(), 28);
    assert_eq!(whole["next_cursor"], serde_json::Value::Null);

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut args = vec!["memory", "search", "the", "--limit", "5"];
        if let Some(c) = &cursor {
            args.extend_from_slice(&["--cursor", c]);
        }
        let page = cli_json(db, &args);
        assert!(page["memories"].as_array().unwrap().len() <= 5);
        seen.extend(page_ids(&page));
        pages += 1;
        // Writes between pages: new matching memories (some would rank first) and noise.
        add(db, "", &format!("the the short {pages}"));
        add(db, "", "The");
        add(db, "other", "the note in another namespace");
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 6);
    assert_eq!(seen, expected, "pages in rank order, each match once");

    // Text output says how to continue, with the same cursor.
    let out = modstate(db, &["memory", "search", "the", "--limit", "2"]);
    assert_exit(&out, 0);
    assert!(stderr(&out).contains("--cursor "), "{}", stderr(&out));
}

pub fn search_ranks_better_matches_first(db: &Db) {
    let weak = add(
        db,
        "",
        "a long note that mentions kubernetes once among many other unrelated words here",
    );
    let strong = add(db, "", "Kubernetes cluster runbook");
    add(db, "", "nothing relevant");
    let page = cli_json(db, &["memory", "search", "kubernetes"]);
    assert_eq!(page_ids(&page), [strong.clone(), weak]);
    let scores: Vec<f64> = page["memories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["score"].as_f64().unwrap())
        .collect();
    assert!(scores[0] > scores[1], "scores {scores:?}");
    let limited = cli_json(db, &["memory", "search", "kubernetes", "--limit", "1"]);
    assert_eq!(page_ids(&limited), [strong]);
}

pub fn an_exact_phrase_ranks_first_even_in_a_longer_memory(db: &Db) {
    add(db, "", "Review the code before merging anything");
    let phrase = add(
        db,
        "",
        "Code review happens in pairs on Tuesdays and Thursdays after lunch",
    );
    add(db, "", "The code of conduct asks for a kind review tone");
    let hits = search_ids(db, "code review");
    assert_eq!(hits.len(), 3);
    assert_eq!(hits[0], phrase, "{hits:?}");
}

pub fn keyword_stuffing_does_not_beat_a_natural_sentence(db: &Db) {
    let natural = add(
        db,
        "",
        "Deploys to production happen on Fridays after the standup",
    );
    // Stuffed, and it even holds the query as an exact phrase.
    add(
        db,
        "",
        "deploy deploy deploy production production production deploy production deploy",
    );
    add(
        db,
        "",
        "production deploy production deploy production deploy",
    );
    for query in ["deploy production", "production deploy", "deploy"] {
        let hits = search_ids(db, query);
        assert_eq!(hits.len(), 3, "{query}");
        assert_eq!(hits[0], natural, "{query}: {hits:?}");
    }
}

/// A very long, very repetitive memory gets the same score on every backend: the formula of
/// `memory/rank.rs` over all its words (a server that keeps only some positions of a word
/// must not rank it on those alone, nor count its length from them). "deploy" 300 times: one
/// term in all 300 words of 306 in 2 memories, both holding it; the last word is a prefix.
pub fn a_long_repetitive_memory_scores_by_all_of_its_words(db: &Db) {
    use modstate::memory::{Features, Ranking, Statistics, terms};
    let stuffed = add(db, "", &"deploy ".repeat(300));
    let natural = add(db, "", "Deploys to production happen on Fridays");
    let page = cli_json(db, &["memory", "search", "deploy"]);
    let memories = page["memories"].as_array().unwrap();
    let ids: Vec<&str> = memories.iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [natural.as_str(), stuffed.as_str()], "{page}");
    let scorer = Ranking::plan(&terms("deploy"), true).scorer(&Statistics {
        memories: 2,
        tokens: 306,
        frequencies: vec![2],
    });
    let expected = scorer.score(&Features {
        phrase_sizes: vec![1],
        instances: (0..300).map(|offset| (0, offset)).collect(),
        length: 300,
    });
    let score = memories[1]["score"].as_f64().unwrap();
    assert!((score - expected).abs() < 1e-9, "{score} vs {expected}");
}
