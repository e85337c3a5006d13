//! `modstate mcp`: the MCP server on stdin/stdout, driven as an agent host drives it — a real
//! process, newline-delimited JSON-RPC — and checked against the database.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use modstate::{Digest, Options, Store};

/// How long any one answer may take before the test calls the server hung. Generous: the
/// machine is shared and a write may wait for other writers.
const ANSWER_BOUND: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// helpers

/// A running `modstate mcp` with a line reader on its stdout.
pub(crate) struct Server {
    child: Child,
    pub(crate) stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    next_id: i64,
    stderr_path: PathBuf,
}

impl Server {
    fn start(db: &Path, args: &[&str]) -> Server {
        let stderr_path = db.with_file_name(format!(
            "mcp-stderr-{}-{}.log",
            std::process::id(),
            COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_modstate"));
        cmd.arg("--db").arg(db).env_remove("MODSTATE_DB");
        Server::spawn(cmd, args, stderr_path)
    }

    /// Starts `cmd mcp args…` (`cmd` names the store), its stderr in `stderr_path`.
    pub(crate) fn spawn(mut cmd: Command, args: &[&str], stderr_path: PathBuf) -> Server {
        let mut child = cmd
            .arg("mcp")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(File::create(&stderr_path).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (sender, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if sender.send(line).is_err() {
                    return;
                }
            }
        });
        Server {
            stdin: child.stdin.take(),
            child,
            lines,
            next_id: 1,
            stderr_path,
        }
    }

    /// Starts a server and completes the handshake.
    fn ready(db: &Path, args: &[&str]) -> Server {
        let mut server = Server::start(db, args);
        let init = server.initialize("2025-11-25");
        assert_eq!(init["result"]["protocolVersion"], "2025-11-25", "{init}");
        server.notify("notifications/initialized", None);
        server
    }

    pub(crate) fn initialize(&mut self, version: &str) -> Value {
        self.request(
            "initialize",
            Some(json!({
                "protocolVersion": version,
                "capabilities": {},
                "clientInfo": {"name": "modstate-tests", "version": "0"}
            })),
        )
    }

    pub(crate) fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        stdin.write_all(line.as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    }

    pub(crate) fn send(&mut self, message: &Value) {
        self.send_line(&message.to_string());
    }

    pub(crate) fn notify(&mut self, method: &str, params: Option<Value>) {
        let mut message = json!({"jsonrpc": "2.0", "method": method});
        if let Some(params) = params {
            message["params"] = params;
        }
        self.send(&message);
    }

    /// Sends a request without waiting; returns its id.
    pub(crate) fn send_request(&mut self, method: &str, params: Option<Value>) -> i64 {
        let id = self.next_id;
        self.next_id += 1;
        let mut message = json!({"jsonrpc": "2.0", "id": id, "method": method});
        if let Some(params) = params {
            message["params"] = params;
        }
        self.send(&message);
        id
    }

    /// The next message on stdout, which must be one JSON-RPC 2.0 object.
    pub(crate) fn next_message(&mut self) -> Value {
        let line = match self.lines.recv_timeout(ANSWER_BOUND) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => panic!(
                "no answer within {ANSWER_BOUND:?}; stderr: {}",
                self.stderr()
            ),
            Err(RecvTimeoutError::Disconnected) => {
                panic!("the server closed stdout; stderr: {}", self.stderr())
            }
        };
        let message: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"));
        assert_eq!(message["jsonrpc"], "2.0", "{message}");
        message
    }

    /// Sends a request and returns its response (the whole message).
    pub(crate) fn request(&mut self, method: &str, params: Option<Value>) -> Value {
        let id = self.send_request(method, params);
        let message = self.next_message();
        assert_eq!(message["id"], id, "answer to another request: {message}");
        message
    }

    /// Calls a tool; returns the `result` (a CallToolResult), failing on a protocol error.
    pub(crate) fn call(&mut self, tool: &str, arguments: Value) -> Value {
        let response = self.request(
            "tools/call",
            Some(json!({"name": tool, "arguments": arguments})),
        );
        assert!(
            response.get("error").is_none(),
            "{tool} gave a protocol error: {response}"
        );
        response["result"].clone()
    }

    /// Calls a tool that must succeed; returns its structured content.
    pub(crate) fn call_ok(&mut self, tool: &str, arguments: Value) -> Value {
        let result = self.call(tool, arguments);
        assert_eq!(result["isError"], false, "{tool} failed: {result}");
        let structured = result["structuredContent"].clone();
        // The text block carries the same object, for clients that read only text.
        let text = result["content"][0]["text"].as_str().unwrap();
        assert_eq!(serde_json::from_str::<Value>(text).unwrap(), structured);
        structured
    }

    /// Calls a tool that must fail as a tool error; returns its one-line message.
    pub(crate) fn call_err(&mut self, tool: &str, arguments: Value) -> String {
        let result = self.call(tool, arguments);
        assert_eq!(
            result["isError"], true,
            "{tool} should have failed: {result}"
        );
        let text = result["content"][0]["text"].as_str().unwrap().to_owned();
        assert!(!text.contains('\n'), "not one line: {text}");
        text
    }

    pub(crate) fn ping(&mut self) {
        let pong = self.request("ping", None);
        assert_eq!(pong["result"], json!({}), "{pong}");
    }

    /// Closes stdin and waits for the exit; returns the status and how long it took.
    pub(crate) fn close(mut self) -> (ExitStatus, Duration) {
        drop(self.stdin.take());
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status, started.elapsed());
            }
            if started.elapsed() > ANSWER_BOUND {
                let _ = self.child.kill();
                panic!("still running {ANSWER_BOUND:?} after EOF on stdin");
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    pub(crate) fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn temp_db() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    (dir, db)
}

fn open(db: &Path) -> Store {
    Store::open(db, Options::default()).unwrap()
}

fn json_of(out: &Output) -> Value {
    assert_success(out);
    serde_json::from_slice(&out.stdout).unwrap()
}

fn cli(db: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_modstate"))
        .arg("--db")
        .arg(db)
        .args(args)
        .env_remove("MODSTATE_DB")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[track_caller]
fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------------------------
// the handshake, the tool list, every tool

#[test]
fn initialize_list_and_call_every_tool_against_the_database() {
    let (dir, db) = temp_db();
    let mut server = Server::start(&db, &["--namespace", "agent-a"]);

    let init = server.initialize("2025-11-25");
    let result = &init["result"];
    assert_eq!(result["protocolVersion"], "2025-11-25");
    assert!(result["capabilities"]["tools"].is_object(), "{init}");
    assert_eq!(result["serverInfo"]["name"], "modstate");
    server.notify("notifications/initialized", None);

    // tools/list: all six, each with an object schema that declares what it requires.
    let listed = server.request("tools/list", None);
    let tools = listed["result"]["tools"].as_array().unwrap();
    let required: Vec<(String, Value)> = tools
        .iter()
        .map(|tool| {
            let schema = &tool["inputSchema"];
            assert_eq!(schema["type"], "object", "{tool}");
            assert!(schema["properties"].is_object(), "{tool}");
            assert!(!tool["description"].as_str().unwrap().is_empty());
            (
                tool["name"].as_str().unwrap().to_owned(),
                schema.get("required").cloned().unwrap_or(json!([])),
            )
        })
        .collect();
    assert_eq!(
        required,
        vec![
            ("add_memory".to_owned(), json!(["text"])),
            ("search_memories".to_owned(), json!([])),
            ("get_memories".to_owned(), json!([])),
            ("update_memory".to_owned(), json!(["id"])),
            ("delete_memory".to_owned(), json!(["id"])),
            ("memory_history".to_owned(), json!(["id"])),
            ("get_module_state".to_owned(), json!(["digest"])),
        ]
    );
    let properties = |name: &str| -> BTreeSet<String> {
        let tool = tools.iter().find(|t| t["name"] == name).unwrap();
        tool["inputSchema"]["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    };
    assert_eq!(
        properties("search_memories"),
        set(&[
            "query",
            "category",
            "limit",
            "cursor",
            "where",
            "include_superseded",
            "mode",
            "explain"
        ])
    );
    assert_eq!(
        properties("get_memories"),
        set(&["category", "limit", "cursor", "where", "include_superseded"])
    );
    assert_eq!(
        properties("update_memory"),
        set(&[
            "id",
            "text",
            "category",
            "metadata",
            "tags",
            "ttl",
            "expires_at",
            "refresh_on_read",
            "expect_generation",
            "expect_version",
            "fence"
        ])
    );

    let store = open(&db);
    // A memory of another namespace, written by the CLI: out of this server's reach.
    let other = store
        .add_memory("agent-b", "The user prefers Rust in agent-b", "preference")
        .unwrap();

    // add_memory
    let added = server.call_ok(
        "add_memory",
        json!({"text": "The user prefers Rust for CLI tools", "category": "preference"}),
    );
    let id = added["id"].as_str().unwrap().to_owned();
    let stored = store.get_memory(&id).unwrap().unwrap();
    assert_eq!(stored.namespace, "agent-a");
    assert_eq!(stored.category, "preference");
    assert_eq!(stored.body, "The user prefers Rust for CLI tools");
    assert_eq!(
        added["generation"],
        store.memory_generation("agent-a").unwrap()
    );
    // The same shape as `modstate --json memory get`.
    let cli_shape = json_of(&cli(&db, &["--json", "memory", "get", &id]));
    assert_eq!(added, cli_shape);
    server.call_ok("add_memory", json!({"text": "Deploys happen on Fridays"}));

    // get_memories: newest first, this namespace only, with the store generation.
    let listed = server.call_ok("get_memories", json!({}));
    let memories = listed["memories"].as_array().unwrap();
    let texts: Vec<&str> = memories
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts,
        [
            "Deploys happen on Fridays",
            "The user prefers Rust for CLI tools"
        ]
    );
    assert_eq!(
        listed["generation"],
        store.memory_generation("agent-a").unwrap()
    );
    assert_eq!(listed["next_cursor"], Value::Null);
    let by_category = server.call_ok(
        "get_memories",
        json!({"category": "PREFERENCE", "limit": 1}),
    );
    assert_eq!(by_category["memories"].as_array().unwrap().len(), 1);
    assert_eq!(by_category["memories"][0]["id"], id.as_str());
    let first_only = server.call_ok("get_memories", json!({"limit": 1}));
    let cursor = first_only["next_cursor"].as_str().unwrap();
    let second = server.call_ok("get_memories", json!({"limit": 1, "cursor": cursor}));
    assert_eq!(second["memories"][0]["id"], id.as_str());
    assert_eq!(second["next_cursor"], Value::Null);

    // search_memories: ranked, prefix on the last word, namespace-scoped.
    let found = server.call_ok("search_memories", json!({"query": "prefers ru"}));
    let hits = found["memories"].as_array().unwrap();
    assert_eq!(hits.len(), 1, "{found}");
    assert_eq!(hits[0]["id"], id.as_str());
    assert!(hits[0]["score"].as_f64().unwrap() > 0.0);
    let generation = found["generation"].as_u64().unwrap();

    // update_memory with the generation it read: written.
    let updated = server.call_ok(
        "update_memory",
        json!({"id": id, "text": "The user prefers Rust and SQLite", "expect_generation": generation}),
    );
    assert_eq!(updated["generation"], generation + 1);
    assert_eq!(updated["text"], "The user prefers Rust and SQLite");
    let stored = store.get_memory(&id).unwrap().unwrap();
    assert_eq!(stored.body, "The user prefers Rust and SQLite");
    assert_eq!(stored.category, "preference", "category kept when omitted");

    // ... and again with the now stale generation: refused, nothing written, and the error
    // says so and gives the current generation.
    let current = store.memory_generation("agent-a").unwrap();
    let conflict = server.call_err(
        "update_memory",
        json!({"id": id, "text": "lost update", "expect_generation": generation}),
    );
    assert_eq!(
        conflict,
        format!(
            "conflict: the generation of namespace \"agent-a\" is {current}, not the expected {generation}; nothing was written — re-read and retry"
        )
    );
    assert_eq!(
        store.get_memory(&id).unwrap().unwrap().body,
        "The user prefers Rust and SQLite"
    );
    assert_eq!(store.memory_generation("agent-a").unwrap(), current);

    // Another namespace's memory is absent to this server, for every tool.
    // Errors name MCP tools, never CLI commands.
    let absent = format!(
        "no memory with id {:?} in this namespace; the get_memories tool lists its memories",
        other.id
    );
    assert_eq!(
        server.call_err("update_memory", json!({"id": other.id, "text": "x"})),
        absent
    );
    assert_eq!(
        server.call_err("delete_memory", json!({"id": other.id})),
        absent
    );
    assert_eq!(
        store.get_memory(&other.id).unwrap().unwrap().body,
        "The user prefers Rust in agent-b"
    );
    let searched = server.call_ok("search_memories", json!({"query": "agent-b"}));
    assert_eq!(searched["memories"], json!([]));

    // delete_memory: a stale generation is refused, the current one deletes.
    let stale = server.call_err("delete_memory", json!({"id": id, "expect_generation": 0}));
    assert!(
        stale.starts_with("conflict: the generation of namespace \"agent-a\" is"),
        "{stale}"
    );
    let deleted = server.call_ok(
        "delete_memory",
        json!({"id": id, "expect_generation": current}),
    );
    assert_eq!(deleted["deleted"], true);
    assert_eq!(deleted["generation"], current + 1);
    assert!(store.get_memory(&id).unwrap().is_none());
    let gone = server.call_err("delete_memory", json!({"id": id}));
    assert_eq!(
        gone,
        format!(
            "no memory with id {id:?} in this namespace; the get_memories tool lists its memories"
        )
    );

    // get_module_state: the envelope exactly as stored (as the CLI put it), or not found.
    let envelope = "{\"type\": \"Module\", \"version\": 1,\n \"state\": {\"description\": \"demo\", \"objects\": [1.50, 2]}}";
    let digest = Digest::of(b"module source");
    let file = dir.path().join("envelope.json");
    std::fs::write(&file, envelope).unwrap();
    assert_success(&cli(
        &db,
        &["artifact", "put", digest.as_str(), file.to_str().unwrap()],
    ));
    let state = server.call("get_module_state", json!({"digest": digest.as_str()}));
    assert_eq!(state["isError"], false, "{state}");
    assert_eq!(state["content"][0]["text"], envelope);
    assert_eq!(state["structuredContent"]["state"]["description"], "demo");
    let missing = Digest::of(b"another module");
    assert_eq!(
        server.call_err("get_module_state", json!({"digest": missing.as_str()})),
        format!(
            "no artifact stored for {missing}; the module state is computed and stored by the module loader (get_module_state only reads)"
        )
    );
    let bad = server.call_err("get_module_state", json!({"digest": "sha256:ABC"}));
    assert!(bad.starts_with("invalid digest"), "{bad}");

    // Logs went to stderr; stdout carried protocol messages only (next_message checked each).
    let (status, _) = server.close();
    assert!(status.success(), "{status:?}");
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

// ---------------------------------------------------------------------------------------------
// bad calls

#[test]
fn bad_calls_get_protocol_correct_errors_and_the_server_keeps_serving() {
    let (_dir, db) = temp_db();
    let mut server = Server::ready(&db, &[]);
    let store = open(&db);

    // An unknown tool is a protocol error: -32602 with the request's id.
    let unknown = server.request(
        "tools/call",
        Some(json!({"name": "forget_everything", "arguments": {}})),
    );
    assert_eq!(unknown["error"]["code"], -32602, "{unknown}");
    assert!(
        unknown["error"]["message"]
            .as_str()
            .unwrap()
            .contains("forget_everything")
    );
    server.ping();

    // Arguments that do not fit the schema are tool errors the model can act on.
    assert_eq!(
        server.call_err("add_memory", json!({"category": "fact"})),
        r#"add_memory: missing required argument "text" (a string)"#
    );
    server.ping();
    assert_eq!(
        server.call_err("add_memory", json!({"text": 42})),
        r#"add_memory: argument "text" must be a string, not 42"#
    );
    assert_eq!(
        server.call_err("search_memories", json!({"query": "x", "limit": "ten"})),
        r#"search_memories: argument "limit" must be an integer from 1 to 1000, not "ten""#
    );
    assert_eq!(
        server.call_err(
            "update_memory",
            json!({"id": "x", "text": "y", "expect_generation": -1})
        ),
        r#"update_memory: argument "expect_generation" must be an integer ≥ 0, not -1"#
    );
    assert_eq!(
        server.call_err("add_memory", json!({"memory": "typo"})),
        r#"add_memory: unknown argument "memory"; it takes text, category, metadata, tags, ttl, expires_at, refresh_on_read, supersedes, expect_generation, expect_version, fence"#
    );
    // Arguments that are not an object do not fit CallToolRequest itself: -32602.
    let not_object = server.request(
        "tools/call",
        Some(json!({"name": "add_memory", "arguments": ["x"]})),
    );
    assert_eq!(not_object["error"]["code"], -32602, "{not_object}");
    let no_name = server.request("tools/call", Some(json!({"arguments": {}})));
    assert_eq!(no_name["error"]["code"], -32602, "{no_name}");
    server.ping();

    // A 1 MiB memory: over the 64 KiB limit, refused with the library's message, nothing
    // written.
    let huge = "m".repeat(1024 * 1024);
    assert_eq!(
        server.call_err("add_memory", json!({"text": huge})),
        "memory text is 1048576 bytes, over the 65536-byte limit; shorten it or split it into several memories"
    );
    assert_eq!(store.memory_generation("").unwrap(), 0);
    server.ping();

    // Malformed JSON: Parse error, no id (there is none to give); then business as usual.
    // Each bad line is followed by a ping, whose answer must come after the error (the
    // transport answers a line before reading the next), so a missing answer fails at once.
    let answer_then_pong = |server: &mut Server, line: &str| -> Value {
        server.send_line(line);
        let ping = server.send_request("ping", None);
        let answer = server.next_message();
        let pong = server.next_message();
        assert_eq!(
            pong["id"], ping,
            "expected the pong after the error: {pong}"
        );
        assert_eq!(pong["result"], json!({}));
        answer
    };
    let parse = answer_then_pong(
        &mut server,
        r#"{"jsonrpc": "2.0", "id": 99, "method": "ping""#,
    );
    assert_eq!(parse["error"]["code"], -32700, "{parse}");
    assert!(parse.get("id").is_none(), "{parse}");
    // JSON that is no request: Invalid Request.
    let batch = answer_then_pong(&mut server, "[1, 2, 3]");
    assert_eq!(batch["error"]["code"], -32600, "{batch}");
    let bad_id = answer_then_pong(
        &mut server,
        r#"{"jsonrpc": "2.0", "id": true, "method": "ping"}"#,
    );
    assert_eq!(bad_id["error"]["code"], -32600, "{bad_id}");
    let old = answer_then_pong(
        &mut server,
        r#"{"jsonrpc": "1.0", "id": 7, "method": "ping"}"#,
    );
    assert_eq!(old["error"]["code"], -32600, "{old}");
    assert_eq!(old["id"], 7);
    // An unknown method: Method not found, with its id.
    let nope = server.request("memories/forget", None);
    assert_eq!(nope["error"]["code"], -32601, "{nope}");
    assert_eq!(
        nope["error"]["message"], "unknown method memories/forget",
        "{nope}"
    );
    // Blank lines are skipped silently.
    server.send_line("");
    server.send_line("   ");

    // After all that, the server still does its job.
    let added = server.call_ok("add_memory", json!({"text": "still serving"}));
    let id = added["id"].as_str().unwrap();
    assert_eq!(store.get_memory(id).unwrap().unwrap().body, "still serving");
    let (status, _) = server.close();
    assert!(status.success(), "{status:?}");
}

#[test]
fn an_oversized_line_is_skipped_and_answered() {
    let (_dir, db) = temp_db();
    let mut server = Server::ready(&db, &[]);
    // Past the 16 MiB line limit: the line is dropped without being held, and answered.
    let huge = format!(
        r#"{{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{{"name":"add_memory","arguments":{{"text":"{}"}}}}}}"#,
        "x".repeat(17 * 1024 * 1024)
    );
    server.send_line(&huge);
    let answer = server.next_message();
    assert_eq!(answer["error"]["code"], -32600, "{answer}");
    server.ping();
    assert_eq!(open(&db).memory_generation("").unwrap(), 0);
}

// ---------------------------------------------------------------------------------------------
// many processes at once

// ---------------------------------------------------------------------------------------------
// end of input

#[test]
fn a_bad_namespace_is_refused_before_serving() {
    let (_dir, db) = temp_db();
    let out = cli(&db, &["mcp", "--namespace", "a\tb"]);
    assert_eq!(out.status.code(), Some(6));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("error: namespace"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// issue 16: paging, versions, one shape, invalid ids

#[test]
fn tools_page_with_cursors_guard_versions_and_share_the_cli_shapes() {
    let (_dir, db) = temp_db();
    let store = open(&db);
    for i in 0..7 {
        store
            .add_memory("agent-a", &format!("deploy note {i}"), "")
            .unwrap();
    }
    let mut server = Server::ready(&db, &["--namespace", "agent-a"]);

    // search_memories pages through every match, in the order of one large query.
    let whole = server.call_ok("search_memories", json!({"query": "deploy", "limit": 100}));
    let expected: Vec<Value> = whole["memories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].clone())
        .collect();
    assert_eq!(expected.len(), 7);
    let mut seen = Vec::new();
    let mut cursor = Value::Null;
    loop {
        let page = server.call_ok(
            "search_memories",
            json!({"query": "deploy", "limit": 3, "cursor": cursor}),
        );
        seen.extend(
            page["memories"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["id"].clone()),
        );
        // A write between pages changes nothing in what the pages show.
        server.call_ok("add_memory", json!({"text": "deploy note, newer"}));
        cursor = page["next_cursor"].clone();
        if cursor.is_null() {
            break;
        }
    }
    assert_eq!(seen, expected);

    // The same search through the CLI gives the same JSON (but for the moving generation).
    let cli_page: Value = serde_json::from_slice(
        &cli(
            &db,
            &[
                "--json",
                "memory",
                "search",
                "deploy",
                "--namespace",
                "agent-a",
                "--limit",
                "2",
            ],
        )
        .stdout,
    )
    .unwrap();
    let mcp_page = server.call_ok("search_memories", json!({"query": "deploy", "limit": 2}));
    assert_eq!(cli_page, mcp_page);

    // expect_version: a stale one is refused with nothing written.
    let target = &whole["memories"][0];
    let id = target["id"].as_str().unwrap();
    let version = target["version"].as_u64().unwrap();
    let updated = server.call_ok(
        "update_memory",
        json!({"id": id, "text": "deploy note, edited", "expect_version": version}),
    );
    assert!(updated["version"].as_u64().unwrap() > version);
    let stale = server.call_err(
        "update_memory",
        json!({"id": id, "text": "lost", "expect_version": version}),
    );
    assert!(
        stale.starts_with("conflict: the version of memory"),
        "{stale}"
    );
    assert_eq!(
        store.get_memory(id).unwrap().unwrap().body,
        "deploy note, edited"
    );

    // delete_memory answers as `modstate --json memory rm` does.
    let deleted = server.call_ok("delete_memory", json!({"id": id}));
    let keys: Vec<&String> = deleted.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["id", "deleted", "generation"]);
    assert_eq!(deleted["deleted"], true);

    // A malformed id or cursor is invalid params (-32602), not "no memory".
    for (tool, arguments) in [
        ("update_memory", json!({"id": "nonsense", "text": "x"})),
        ("delete_memory", json!({"id": "nonsense"})),
        (
            "search_memories",
            json!({"query": "deploy", "cursor": "nonsense"}),
        ),
        ("get_memories", json!({"cursor": "nonsense"})),
    ] {
        let answer = server.request(
            "tools/call",
            Some(json!({"name": tool, "arguments": arguments})),
        );
        assert_eq!(answer["error"]["code"], -32602, "{tool}: {answer}");
    }
    // Stemming and CJK, as in the CLI.
    server.call_ok(
        "add_memory",
        json!({"text": "The user prefers Rust; 提交信息请用中文写"}),
    );
    for query in ["prefer rust", "中文", "提交信息"] {
        let found = server.call_ok("search_memories", json!({"query": query}));
        assert_eq!(
            found["memories"][0]["text"], "The user prefers Rust; 提交信息请用中文写",
            "{query}: {found}"
        );
    }
    // The drift guard is per namespace: a write elsewhere does not refuse this one.
    let read = server.call_ok("get_memories", json!({"limit": 1}));
    let generation = read["generation"].as_u64().unwrap();
    store
        .add_memory("other", "another agent's note", "")
        .unwrap();
    server.call_ok(
        "update_memory",
        json!({"id": read["memories"][0]["id"], "text": "still mine", "expect_generation": generation}),
    );

    // Symbols only: what was typed, or nothing, with a note.
    let rocket = server.call_ok("search_memories", json!({"query": "🚀"}));
    assert_eq!(rocket["memories"], json!([]));
    assert!(
        rocket["note"]
            .as_str()
            .unwrap()
            .contains("no letters or digits")
    );
    let (status, _) = server.close();
    assert!(status.success(), "{status:?}");
}
