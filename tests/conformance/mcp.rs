//! The MCP server on any backend: the handshake and version negotiation, EOF, and two servers
//! and the CLI writing one namespace at once.

use super::Db;
use crate::mcp::Server;
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::Barrier;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// `modstate --db <db> mcp args…`, its stderr in the test's scratch dir.
fn start(db: &Db, args: &[&str]) -> Server {
    let stderr_path = db.dir().join(format!(
        "mcp-stderr-{}.log",
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    Server::spawn(db.cmd(), args, stderr_path)
}

/// A server past the handshake.
fn ready(db: &Db, args: &[&str]) -> Server {
    let mut server = start(db, args);
    let init = server.initialize("2025-11-25");
    assert_eq!(init["result"]["protocolVersion"], "2025-11-25", "{init}");
    server.notify("notifications/initialized", None);
    server
}

/// Every stderr line the servers of this test wrote is a `modstate mcp:` log line.
fn server_stderr_is_log_lines(db: &Db) -> bool {
    let mut seen = false;
    for entry in std::fs::read_dir(db.dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("mcp-stderr-") {
            let text = std::fs::read_to_string(&path).unwrap();
            for line in text.lines() {
                assert!(line.starts_with("modstate mcp: "), "{name}: {line}");
                seen = true;
            }
        }
    }
    seen
}

fn generation(db: &Db, namespace: &str) -> u64 {
    let out = db.run(&["memory", "generation", "--namespace", namespace]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// The tools a client sees, and a call of each kind against the store.
pub fn tools_are_listed_and_write_and_read_the_store(db: &Db) {
    let mut server = ready(db, &["--namespace", "agent-a"]);
    let listed = server.request("tools/list", None);
    let names: Vec<&str> = listed["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "add_memory",
            "search_memories",
            "get_memories",
            "update_memory",
            "delete_memory",
            "memory_history",
            "get_module_state"
        ]
    );
    let added = server.call_ok(
        "add_memory",
        json!({"text": "The user prefers Rust for CLI tools", "category": "preference"}),
    );
    let id = added["id"].as_str().unwrap().to_owned();
    // The CLI sees it in the server's namespace.
    let got = db.json(&["memory", "get", &id]);
    assert_eq!(got["namespace"], "agent-a");
    assert_eq!(got["text"], "The user prefers Rust for CLI tools");
    let found = server.call_ok("search_memories", json!({"query": "rust"}));
    assert_eq!(found["memories"][0]["id"], id.as_str(), "{found}");
    server.call_ok(
        "update_memory",
        json!({"id": id, "text": "The user prefers Rust", "expect_version": got["version"]}),
    );
    assert_eq!(
        db.json(&["memory", "get", &id])["text"],
        "The user prefers Rust"
    );
    // A stale expected version is a tool error, and writes nothing.
    let err = server.call_err(
        "update_memory",
        json!({"id": id, "text": "stale", "expect_version": got["version"]}),
    );
    assert!(!err.is_empty());
    server.call_ok("delete_memory", json!({"id": id}));
    assert_eq!(db.run(&["memory", "get", &id]).status.code(), Some(3));

    // get_module_state serves what the CLI stored, byte for byte.
    let digest = format!("sha256:{}", "a".repeat(64));
    let envelope = r#"{"type":"Module","version":1,"state":{"n":1}}"#;
    let put = db.run_in(&["artifact", "put", &digest], envelope.as_bytes());
    assert_eq!(put.status.code(), Some(0));
    let state = server.call("get_module_state", json!({"digest": digest}));
    assert_eq!(state["isError"], false, "{state}");
    assert!(
        state.to_string().contains("\\\"n\\\":1") || state.to_string().contains("\"n\":1"),
        "{state}"
    );
    let (status, _) = server.close();
    assert!(status.success());
}

pub fn the_protocol_version_is_negotiated(db: &Db) {
    // A version the server supports is answered with that version...
    let mut server = start(db, &[]);
    let init = server.initialize("2025-06-18");
    assert_eq!(init["result"]["protocolVersion"], "2025-06-18", "{init}");
    server.notify("notifications/initialized", None);
    server.ping();
    let (status, _) = server.close();
    assert!(status.success());

    // ... one it does not know, with the latest it supports.
    let mut server = start(db, &[]);
    let init = server.initialize("1999-01-01");
    assert_eq!(init["result"]["protocolVersion"], "2025-11-25", "{init}");
    server.notify("notifications/initialized", None);
    server.ping();
    let (status, _) = server.close();
    assert!(status.success());
}

pub fn two_servers_and_a_cli_add_memories_at_once_and_all_are_present(db: &Db) {
    const EACH: usize = 25;
    // Create the database first so the three writers race on writes, not on creation.
    assert_eq!(db.run(&["init"]).status.code(), Some(0));
    let mut servers = vec![
        ready(db, &["--namespace", "shared"]),
        ready(db, &["--namespace", "shared"]),
    ];
    let start = Barrier::new(3);
    thread::scope(|scope| {
        let start = &start;
        scope.spawn(move || {
            start.wait();
            for i in 0..EACH {
                let text = format!("cli memory {i}");
                let out = db.run(&["memory", "add", "--namespace", "shared", &text]);
                assert_eq!(
                    out.status.code(),
                    Some(0),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        });
        for (n, mut server) in servers.drain(..).enumerate() {
            scope.spawn(move || {
                start.wait();
                // Pipelined: every request is sent before any answer is read, so the server
                // runs them concurrently too.
                let ids: Vec<i64> = (0..EACH)
                    .map(|i| {
                        server.send_request(
                            "tools/call",
                            Some(json!({
                                "name": "add_memory",
                                "arguments": {"text": format!("server {n} memory {i}")}
                            })),
                        )
                    })
                    .collect();
                let mut answered = BTreeSet::new();
                for _ in 0..EACH {
                    let answer = server.next_message();
                    assert_eq!(answer["result"]["isError"], false, "{answer}");
                    answered.insert(answer["id"].as_i64().unwrap());
                }
                assert_eq!(answered, ids.into_iter().collect());
                let (status, _) = server.close();
                assert!(status.success(), "{status:?}");
            });
        }
    });

    let page = db.json(&["memory", "ls", "--namespace", "shared", "--limit", "1000"]);
    let memories = page["memories"].as_array().unwrap();
    let bodies: BTreeSet<String> = memories
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_owned())
        .collect();
    let mut expected = BTreeSet::new();
    for i in 0..EACH {
        expected.insert(format!("cli memory {i}"));
        expected.insert(format!("server 0 memory {i}"));
        expected.insert(format!("server 1 memory {i}"));
    }
    assert_eq!(bodies, expected);
    assert_eq!(memories.len(), 3 * EACH, "no duplicates");
    assert_eq!(generation(db, "shared"), 3 * EACH as u64);
}

pub fn eof_on_stdin_exits_zero_promptly(db: &Db) {
    // After the handshake.
    let server = ready(db, &[]);
    let (status, took) = server.close();
    assert_eq!(status.code(), Some(0));
    // Generous: "promptly" means no wait on a timer, not a benchmark.
    assert!(took < Duration::from_secs(10), "took {took:?}");

    // Before any message at all.
    let server = start(db, &[]);
    let (status, _) = server.close();
    assert_eq!(status.code(), Some(0));
    assert!(server_stderr_is_log_lines(db));

    // A request sent just before EOF is still answered, then the server exits.
    let mut server = ready(db, &[]);
    let id = server.send_request(
        "tools/call",
        Some(json!({"name": "add_memory", "arguments": {"text": "last words"}})),
    );
    drop(server.stdin.take());
    let answer = server.next_message();
    assert_eq!(answer["id"], id);
    assert_eq!(answer["result"]["isError"], false, "{answer}");
    let (status, _) = server.close();
    assert_eq!(status.code(), Some(0));
    assert_eq!(generation(db, ""), 1);
}
