//! `modstate serve`: MCP over Streamable HTTP, started on an ephemeral loopback port.
//!
//! Raw HTTP (a `TcpStream`, nothing between the test and the server) checks each auth case —
//! 401 with its challenge, 403 for scope, namespace, Origin and Host, a revoked token — and
//! that a refused request wrote nothing. The Python MCP SDK's Streamable HTTP client (PyPI
//! `mcp`, `tests/serve_client/client.py`) drives every tool, on both backends. A burst of 200
//! writes from 20 clients loses none; SIGTERM answers what is in flight and exits 0.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::common::postgres::{Cluster, clear_pg_env};
use crate::common::{BIN, assert_exit, json, kill_with_parent, stderr};

/// A running `modstate serve` and the address it printed.
struct Server {
    child: Child,
    addr: String,
    log: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `modstate --db DB serve --listen 127.0.0.1:0 ARGS…` and waits for its address.
    fn start(db: &str, args: &[&str]) -> Server {
        let mut cmd = Command::new(BIN);
        cmd.env_remove("MODSTATE_DB")
            .args(["--db", db, "serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        clear_pg_env(&mut cmd);
        kill_with_parent(&mut cmd);
        let mut child = cmd.spawn().expect("spawn modstate serve");
        let mut lines = BufReader::new(child.stderr.take().expect("piped stderr"));
        let log = Arc::new(Mutex::new(String::new()));
        let addr = loop {
            let mut line = String::new();
            if lines.read_line(&mut line).expect("read serve's stderr") == 0 {
                let status = child.wait().expect("wait");
                panic!(
                    "serve exited ({status}) before listening: {}",
                    log.lock().unwrap()
                );
            }
            log.lock().unwrap().push_str(&line);
            if let Some(rest) = line.split("listening on ").nth(1) {
                let rest = rest.split_once("://").expect("a URL").1;
                break rest.split('/').next().expect("an address").to_owned();
            }
        };
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in lines.lines().map_while(Result::ok) {
                sink.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        Server { child, addr, log }
    }

    fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    /// Sends SIGTERM and waits: the exit code (`None` if a signal ended it).
    fn terminate(mut self) -> (Option<i32>, String) {
        // SAFETY: kill(2) on our own child's pid.
        let sent = unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        assert_eq!(sent, 0, "SIGTERM sent");
        let status = self.child.wait().expect("wait for serve");
        // The log thread ends with the pipe; give it the lock once more.
        let log = self.log.lock().unwrap().clone();
        (status.code(), log)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One raw HTTP/1.1 answer.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// Sends one request on a new connection and reads the whole answer. `None` if the
/// connection failed or was cut (the server stopped).
fn try_http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Option<Answer> {
    let mut stream = TcpStream::connect(addr).ok()?;
    let mut request = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        request.push_str(&format!("Host: {addr}\r\n"));
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(request.as_bytes()).ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.lines();
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Some(Answer {
        status,
        headers,
        body: body.to_owned(),
    })
}

fn http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    try_http(addr, method, path, headers, body).expect("an HTTP answer")
}

/// A JSON-RPC `tools/call` of the 2025-11-25 revision (stateless: no session needed).
fn tool_call(name: &str, arguments: Value) -> String {
    json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
           "params": {"name": name, "arguments": arguments}})
    .to_string()
}

const MCP_HEADERS: [(&str, &str); 3] = [
    ("Content-Type", "application/json"),
    ("Accept", "application/json, text/event-stream"),
    ("MCP-Protocol-Version", "2025-11-25"),
];

/// `tools/call` through `/mcp` with a token (or none) and maybe a namespace header.
fn call(
    server: &Server,
    token: Option<&str>,
    namespace: Option<&str>,
    name: &str,
    arguments: Value,
) -> Answer {
    call_with(server, token, namespace, &[], name, arguments)
}

fn call_with(
    server: &Server,
    token: Option<&str>,
    namespace: Option<&str>,
    extra: &[(&str, &str)],
    name: &str,
    arguments: Value,
) -> Answer {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut headers: Vec<(&str, &str)> = MCP_HEADERS.to_vec();
    if let Some(bearer) = &bearer {
        headers.push(("Authorization", bearer));
    }
    if let Some(ns) = namespace {
        headers.push(("Modstate-Namespace", ns));
    }
    headers.extend_from_slice(extra);
    http(
        &server.addr,
        "POST",
        "/mcp",
        &headers,
        &tool_call(name, arguments),
    )
}

/// The tool result of a 200 answer: `(isError, structuredContent or text)`.
#[track_caller]
fn result(answer: &Answer) -> (bool, Value) {
    assert_eq!(answer.status, 200, "{answer:?}");
    let message = answer.json();
    let result = &message["result"];
    assert!(result.is_object(), "no result: {message}");
    let is_error = result["isError"].as_bool().unwrap_or(false);
    let content = if result["structuredContent"].is_null() {
        result["content"][0]["text"].clone()
    } else {
        result["structuredContent"].clone()
    };
    (is_error, content)
}

/// `modstate --db DB ARGS…`.
fn modstate(db: &str, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(BIN);
    cmd.env_remove("MODSTATE_DB").arg("--db").arg(db).args(args);
    clear_pg_env(&mut cmd);
    cmd.output().expect("run modstate")
}

/// Creates a token and returns it.
fn token(db: &str, name: &str, namespaces: &[&str], scope: &str) -> String {
    let mut args = vec!["token", "create", name, "--scope", scope];
    for ns in namespaces {
        args.extend(["--namespace", ns]);
    }
    let out = modstate(db, &args);
    assert_exit(&out, 0);
    let secret = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(secret.starts_with("mst_") && secret.len() > 40, "{secret}");
    secret
}

/// Every memory of `namespace`, through the CLI.
fn memories(db: &str, namespace: &str) -> Vec<Value> {
    let out = modstate(
        db,
        &[
            "--json",
            "memory",
            "ls",
            "--namespace",
            namespace,
            "--limit",
            "1000",
        ],
    );
    assert_exit(&out, 0);
    json(&out)["memories"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn sqlite_db(dir: &Path) -> String {
    dir.join("state.db").display().to_string()
}

#[test]
fn tokens_are_shown_once_and_stored_only_as_a_hash() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_db(dir.path());
    let secret = token(&db, "alice", &["a", "b"], "write");
    let listed = modstate(&db, &["--json", "token", "ls"]);
    assert_exit(&listed, 0);
    let listed = json(&listed);
    assert_eq!(listed["tokens"][0]["name"], "alice");
    assert_eq!(listed["tokens"][0]["scope"], "write");
    assert_eq!(listed["tokens"][0]["namespaces"], json!(["a", "b"]));
    assert!(!listed.to_string().contains(&secret), "ls shows the token");
    let file = std::fs::read(dir.path().join("state.db")).unwrap();
    let hex = &secret["mst_".len()..];
    assert!(
        !file.windows(hex.len()).any(|w| w == hex.as_bytes()),
        "the token is in the database file"
    );
    // A name in use, a bad scope, no namespace: one line, nothing created.
    let again = modstate(
        &db,
        &[
            "token",
            "create",
            "alice",
            "--namespace",
            "a",
            "--scope",
            "read",
        ],
    );
    assert_exit(&again, 6);
    assert!(
        stderr(&again).contains("revoke it first"),
        "{}",
        stderr(&again)
    );
    let bad = modstate(
        &db,
        &[
            "token",
            "create",
            "bob",
            "--namespace",
            "a",
            "--scope",
            "admin",
        ],
    );
    assert_exit(&bad, 2);
    let none = modstate(&db, &["token", "create", "bob", "--scope", "read"]);
    assert_exit(&none, 2);
    // A token made elsewhere, registered from a file: it authenticates, its file is not kept.
    let file = dir.path().join("secret");
    let made = "0123456789abcdef0123456789abcdef-made-by-vault";
    std::fs::write(&file, format!("{made}\n")).unwrap();
    let imported = modstate(
        &db,
        &[
            "token",
            "create",
            "vault",
            "--namespace",
            "a",
            "--scope",
            "read",
            "--from-file",
            file.to_str().unwrap(),
        ],
    );
    assert_exit(&imported, 0);
    assert!(imported.stdout.is_empty(), "nothing secret is printed");
    std::fs::write(&file, "short\n").unwrap();
    let short = modstate(
        &db,
        &[
            "token",
            "create",
            "short",
            "--namespace",
            "a",
            "--scope",
            "read",
            "--from-file",
            file.to_str().unwrap(),
        ],
    );
    assert_exit(&short, 6);
    let server = Server::start(&db, &["--require-token"]);
    let (is_error, _) = result(&call(&server, Some(made), None, "get_memories", json!({})));
    assert!(!is_error);
    drop(server);
    assert_exit(&modstate(&db, &["token", "revoke", "vault"]), 0);
    assert_exit(&modstate(&db, &["token", "revoke", "alice"]), 0);
    let gone = modstate(&db, &["token", "revoke", "alice"]);
    assert_exit(&gone, 3);
    let listed = json(&modstate(&db, &["--json", "token", "ls"]));
    assert_eq!(listed["tokens"], json!([]));
}

#[test]
fn serve_off_loopback_without_tokens_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_db(dir.path());
    let out = modstate(&db, &["serve", "--listen", "0.0.0.0:0", "--insecure-http"]);
    assert_exit(&out, 6);
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("needs tokens") && err.contains("token create"),
        "{err}"
    );
    let plain = modstate(&db, &["serve", "--listen", "0.0.0.0:0"]);
    assert_exit(&plain, 6);
    assert!(
        stderr(&plain).contains("--insecure-http"),
        "{}",
        stderr(&plain)
    );
    token(&db, "t", &["a"], "read");
    let required = modstate(
        &dir.path().join("other.db").display().to_string(),
        &["serve", "--listen", "127.0.0.1:0", "--require-token"],
    );
    assert_exit(&required, 6);
}

#[test]
fn every_auth_case_answers_as_specified_and_refused_requests_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_db(dir.path());
    let writer = token(&db, "writer-a", &["a"], "write");
    let reader = token(&db, "reader-a", &["a"], "read");
    let other = token(&db, "writer-b", &["b"], "write");
    let doomed = token(&db, "doomed", &["a"], "write");
    let server = Server::start(&db, &["--require-token"]);
    let add = |t: Option<&str>, ns: Option<&str>| {
        call(&server, t, ns, "add_memory", json!({"text": "refused?"}))
    };

    // No token, an unknown one, another scheme, a token in the query string: 401 + challenge.
    for answer in [
        add(None, None),
        add(Some("mst_0000"), None),
        call(
            &server,
            Some("not-even-a-token"),
            None,
            "add_memory",
            json!({"text": "x"}),
        ),
        http(
            &server.addr,
            "POST",
            &format!("/mcp?access_token={writer}"),
            &MCP_HEADERS,
            &tool_call("add_memory", json!({"text": "x"})),
        ),
        http(
            &server.addr,
            "POST",
            "/mcp",
            &[
                MCP_HEADERS[0],
                MCP_HEADERS[1],
                MCP_HEADERS[2],
                ("Authorization", &format!("Basic {writer}")),
            ],
            &tool_call("add_memory", json!({"text": "x"})),
        ),
    ] {
        assert_eq!(answer.status, 401, "{answer:?}");
        let challenge = answer.header("www-authenticate").expect("a challenge");
        assert!(
            challenge.starts_with("Bearer resource_metadata=\"http://")
                && challenge.contains("/.well-known/oauth-protected-resource\""),
            "{challenge}"
        );
    }
    // The metadata the challenge points at.
    let metadata = http(
        &server.addr,
        "GET",
        "/.well-known/oauth-protected-resource",
        &[],
        "",
    );
    assert_eq!(metadata.status, 200);
    assert_eq!(
        metadata.json()["resource"],
        format!("http://{}/mcp", server.addr)
    );
    assert_eq!(
        metadata.json()["bearer_methods_supported"],
        json!(["header"])
    );
    // Health needs no token.
    let health = http(&server.addr, "GET", "/healthz", &[], "");
    assert_eq!(
        (health.status, health.json()["status"].clone()),
        (200, json!("ok"))
    );

    // Scope read: 403 naming the scope, for every tool that writes.
    for (tool, args) in [
        ("add_memory", json!({"text": "x"})),
        (
            "update_memory",
            json!({"id": "01a24cce-14e5-75e4-b8cd-23de8424dfa1", "text": "x"}),
        ),
        (
            "delete_memory",
            json!({"id": "01a24cce-14e5-75e4-b8cd-23de8424dfa1"}),
        ),
    ] {
        let answer = call(&server, Some(&reader), None, tool, args);
        assert_eq!(answer.status, 403, "{tool}: {answer:?}");
        assert!(
            answer.json()["error"]
                .as_str()
                .unwrap()
                .contains("needs scope write"),
            "{answer:?}"
        );
        assert_eq!(
            answer.header("www-authenticate"),
            Some("Bearer error=\"insufficient_scope\", scope=\"write\"")
        );
    }
    // A namespace the token does not reach: 403.
    let answer = add(Some(&writer), Some("b"));
    assert_eq!(answer.status, 403, "{answer:?}");
    assert!(
        answer.body.contains("does not reach namespace \\\"b\\\""),
        "{answer:?}"
    );
    // Origin: refused unless allowed (even with a good token); Host likewise.
    let answer = call_with(
        &server,
        Some(&writer),
        None,
        &[("Origin", "http://evil.example")],
        "add_memory",
        json!({"text": "x"}),
    );
    assert_eq!(answer.status, 403, "{answer:?}");
    assert!(answer.body.contains("Origin"), "{answer:?}");
    let answer = call_with(
        &server,
        Some(&writer),
        None,
        &[("Host", "evil.example")],
        "add_memory",
        json!({"text": "x"}),
    );
    assert_eq!(answer.status, 403, "{answer:?}");
    assert!(answer.body.contains("Host"), "{answer:?}");

    // A revoked token works until revoked, and not on its next request.
    let (is_error, _) = result(&call(
        &server,
        Some(&doomed),
        None,
        "get_memories",
        json!({}),
    ));
    assert!(!is_error);
    assert_exit(&modstate(&db, &["token", "revoke", "doomed"]), 0);
    let answer = add(Some(&doomed), None);
    assert_eq!(answer.status, 401, "{answer:?}");
    assert!(
        answer
            .header("www-authenticate")
            .unwrap()
            .contains("invalid_token")
    );

    // Nothing was written by any of the refused requests.
    assert_eq!(memories(&db, "a"), Vec::<Value>::new());
    assert_eq!(memories(&db, "b"), Vec::<Value>::new());
    // And the good ones do write, as their token.
    let (is_error, memory) = result(&add(Some(&writer), None));
    assert!(!is_error, "{memory}");
    assert_eq!(memory["namespace"], "a");
    assert_eq!(memory["written_by"], "writer-a");
    let (_, memory_b) = result(&add(Some(&other), None));
    assert_eq!(memory_b["namespace"], "b");
    let history = json(&modstate(
        &db,
        &[
            "--json",
            "memory",
            "history",
            memory["id"].as_str().unwrap(),
        ],
    ));
    assert_eq!(history["events"][0]["actor"], "writer-a", "{history}");
    // Provenance survives export and import (it travels with the history).
    let exported = modstate(&db, &["memory", "export", "--namespace", "a"]);
    assert_exit(&exported, 0);
    let file = dir.path().join("a.jsonl");
    std::fs::write(&file, &exported.stdout).unwrap();
    let copy = dir.path().join("copy.db").display().to_string();
    assert_exit(
        &modstate(&copy, &["memory", "import", file.to_str().unwrap()]),
        0,
    );
    assert_eq!(memories(&copy, "a")[0]["written_by"], "writer-a");
    let (code, log) = server.terminate();
    assert_eq!(code, Some(0), "{log}");
}

#[test]
fn a_token_reaches_its_namespaces_only_whatever_the_tool_call_says() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_db(dir.path());
    let a = token(&db, "a-writer", &["a"], "write");
    let b = token(&db, "b-writer", &["b"], "write");
    let both = token(&db, "both-reader", &["a", "b"], "read");
    let server = Server::start(&db, &[]);
    let (_, secret) = result(&call(
        &server,
        Some(&b),
        None,
        "add_memory",
        json!({"text": "b's secret plan"}),
    ));
    let id_b = secret["id"].as_str().unwrap().to_owned();
    let (_, mine) = result(&call(
        &server,
        Some(&a),
        None,
        "add_memory",
        json!({"text": "a's plan"}),
    ));
    let id_a = mine["id"].as_str().unwrap().to_owned();

    // Every tool, with token a, against b's memory: nothing seen, nothing changed.
    let (_, page) = result(&call(&server, Some(&a), None, "get_memories", json!({})));
    assert_eq!(page["memories"].as_array().unwrap().len(), 1, "{page}");
    assert_eq!(page["memories"][0]["id"], id_a.as_str());
    let (_, hits) = result(&call(
        &server,
        Some(&a),
        None,
        "search_memories",
        json!({"query": "secret plan"}),
    ));
    assert!(
        hits["memories"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["namespace"] == "a"),
        "{hits}"
    );
    for (tool, args) in [
        ("update_memory", json!({"id": id_b, "text": "hijacked"})),
        ("delete_memory", json!({"id": id_b})),
        ("memory_history", json!({"id": id_b})),
        (
            "add_memory",
            json!({"text": "replaces b", "supersedes": [id_b]}),
        ),
    ] {
        let (is_error, message) = result(&call(&server, Some(&a), None, tool, args));
        assert!(is_error, "{tool} reached b: {message}");
        assert!(
            message.as_str().unwrap().contains("no memory with id"),
            "{tool}: {message}"
        );
    }
    // Module state is not namespaced: any token may read it.
    let (is_error, message) = result(&call(
        &server,
        Some(&a),
        None,
        "get_module_state",
        json!({"digest": format!("sha256:{}", "0".repeat(64))}),
    ));
    assert!(
        is_error && message.as_str().unwrap().contains("no artifact"),
        "{message}"
    );

    // A token of several namespaces names one; without it, the server's default ("") is
    // out of its reach.
    let answer = call(&server, Some(&both), None, "get_memories", json!({}));
    assert_eq!(answer.status, 403, "{answer:?}");
    let (_, page) = result(&call(
        &server,
        Some(&both),
        Some("b"),
        "get_memories",
        json!({}),
    ));
    assert_eq!(page["memories"][0]["id"], id_b.as_str());
    let (_, history) = result(&call(
        &server,
        Some(&both),
        Some("b"),
        "memory_history",
        json!({"id": id_b}),
    ));
    assert_eq!(history["events"][0]["actor"], "b-writer");

    let memory_b = &memories(&db, "b")[0];
    assert_eq!(
        (memory_b["text"].as_str(), memory_b["version"].as_u64()),
        (Some("b's secret plan"), secret["version"].as_u64())
    );
    assert_eq!(memories(&db, "a").len(), 1);
    drop(server);
}

/// The Python MCP SDK, or `None` (with one line saying what was skipped) outside CI.
fn python_mcp() -> Option<PathBuf> {
    let python = crate::common::require_tool(
        "python3",
        "Python MCP client tests",
        "apt-get install python3",
    )?;
    let probe = Command::new(&python)
        .args(["-c", "import mcp.client.streamable_http"])
        .output();
    if probe.is_ok_and(|o| o.status.success()) {
        return Some(python);
    }
    if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
        panic!(
            "the Python package `mcp` is missing, and CI is set: the Python MCP client tests must run in CI (python3 -m pip install mcp)"
        );
    }
    use std::sync::Once;
    static TOLD: Once = Once::new();
    TOLD.call_once(|| {
        let _ = std::io::stderr().write_all(
            b"note: Python MCP client tests (serve::) skipped: the Python package `mcp` is not installed; enable them with `python3 -m pip install mcp` (with CI set they fail instead)\n",
        );
    });
    None
}

/// Runs the Python client against `server` and returns what it printed.
fn python_client(python: &Path, server: &Server, token: Option<&str>, namespace: &str) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/serve_client/client.py");
    let out = Command::new(python)
        .arg(script)
        .arg(server.url())
        .arg(token.unwrap_or(""))
        .arg(namespace)
        .output()
        .expect("run the Python client");
    assert!(
        out.status.success(),
        "python client failed: {}",
        stderr(&out)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// What the Python client must see through HTTP: every tool, each with the result it has
/// through stdio.
#[track_caller]
fn check_python_run(run: &Value, writer: &str, namespace: &str) {
    assert_eq!(
        run["tools"],
        json!([
            "add_memory",
            "delete_memory",
            "get_memories",
            "get_module_state",
            "memory_history",
            "search_memories",
            "update_memory"
        ])
    );
    let added = &run["add"]["structured"];
    assert_eq!(run["add"]["is_error"], false, "{run}");
    assert_eq!(added["namespace"], namespace);
    assert_eq!(added["tags"], json!(["ops"]));
    assert_eq!(added["written_by"], writer, "provenance: {run}");
    let id = added["id"].as_str().unwrap();
    assert_eq!(
        run["search"]["structured"]["memories"][0]["id"], id,
        "{run}"
    );
    assert!(
        run["search"]["structured"]["memories"][0]["score"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    assert_eq!(run["get"]["structured"]["memories"][0]["id"], id, "{run}");
    assert_eq!(
        run["update"]["structured"]["text"], "the deploy runs on thursdays",
        "{run}"
    );
    assert_eq!(run["update"]["structured"]["written_by"], writer, "{run}");
    assert_eq!(
        run["stale"]["is_error"], true,
        "the drift guard holds over HTTP: {run}"
    );
    assert!(
        run["stale"]["text"][0]
            .as_str()
            .unwrap()
            .starts_with("conflict:"),
        "{run}"
    );
    let events = run["history"]["structured"]["events"].as_array().unwrap();
    assert_eq!(events.len(), 2, "{run}");
    assert!(
        events.iter().all(|e| e["actor"] == writer),
        "provenance: {run}"
    );
    // Paging: two pages of one, different memories, the first with a cursor.
    let pages = &run["pages"];
    assert!(pages[0]["structured"]["next_cursor"].is_string(), "{run}");
    assert_ne!(
        pages[0]["structured"]["memories"][0]["id"], pages[1]["structured"]["memories"][0]["id"],
        "{run}"
    );
    assert_eq!(run["delete"]["structured"]["deleted"], true, "{run}");
    assert_eq!(run["module"]["is_error"], true, "{run}");
    assert_eq!(run["bad"]["is_error"], true, "{run}");
    assert!(
        run["bad"]["text"][0]
            .as_str()
            .unwrap()
            .contains("\"limit\""),
        "{run}"
    );
}

#[test]
fn the_python_sdk_client_drives_every_tool_through_http_on_sqlite() {
    let Some(python) = python_mcp() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_db(dir.path());
    let secret = token(&db, "py-agent", &["team"], "write");
    let server = Server::start(&db, &["--require-token"]);
    let run = python_client(&python, &server, Some(&secret), "team");
    check_python_run(&run, "py-agent", "team");
    // Without tokens on loopback (not required): the writer is `local`.
    let open = Server::start(&db, &["--namespace", "solo"]);
    let run = python_client(&python, &open, None, "solo");
    check_python_run(&run, "local", "solo");
    let (code, log) = server.terminate();
    assert_eq!(code, Some(0), "{log}");
}

#[test]
fn the_python_sdk_client_drives_every_tool_through_http_on_postgres() {
    let Some(python) = python_mcp() else {
        return;
    };
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let db = cluster.socket_url(&cluster.database());
    let secret = token(&db, "pg-agent", &["team"], "write");
    let server = Server::start(&db, &["--require-token"]);
    let run = python_client(&python, &server, Some(&secret), "team");
    check_python_run(&run, "pg-agent", "team");
    assert_exit(&modstate(&db, &["token", "revoke", "pg-agent"]), 0);
    let answer = call(&server, Some(&secret), None, "get_memories", json!({}));
    assert_eq!(answer.status, 401, "{answer:?}");
    let (code, log) = server.terminate();
    assert_eq!(code, Some(0), "{log}");
}

/// 20 clients send 10 writes each at once: every one is answered (200, or a clean 503), and
/// every acknowledged write is in the store afterwards.
#[test]
fn a_burst_of_200_requests_from_20_clients_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_db(dir.path());
    let secret = token(&db, "burst", &["a"], "write");
    let server = Server::start(&db, &["--require-token", "--max-concurrent", "8"]);
    let addr = server.addr.clone();
    let threads: Vec<_> = (0..20)
        .map(|client| {
            let addr = addr.clone();
            let bearer = format!("Bearer {secret}");
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                let mut busy = 0;
                for n in 0..10 {
                    let mut headers = MCP_HEADERS.to_vec();
                    headers.push(("Authorization", &bearer));
                    let body = tool_call(
                        "add_memory",
                        json!({"text": format!("client {client} write {n}")}),
                    );
                    let answer = http(&addr, "POST", "/mcp", &headers, &body);
                    match answer.status {
                        200 => {
                            let message = answer.json();
                            assert_eq!(message["result"]["isError"], false, "{message}");
                            acked.push(
                                message["result"]["structuredContent"]["id"]
                                    .as_str()
                                    .unwrap()
                                    .to_owned(),
                            );
                        }
                        503 => busy += 1,
                        other => panic!("status {other}: {answer:?}"),
                    }
                }
                (acked, busy)
            })
        })
        .collect();
    let mut acked = Vec::new();
    let mut busy = 0;
    for thread in threads {
        let (ids, refused) = thread.join().expect("a client thread");
        acked.extend(ids);
        busy += refused;
    }
    assert_eq!(acked.len() + busy, 200);
    let stored: Vec<String> = memories(&db, "a")
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(stored.len(), acked.len(), "{busy} busy");
    for id in &acked {
        assert!(stored.contains(id), "acknowledged write {id} is lost");
    }
    let (code, log) = server.terminate();
    assert_eq!(code, Some(0), "{log}");
}

/// SIGTERM while 20 clients write: the server answers what it accepted, exits 0, and every
/// write it acknowledged is stored.
#[test]
fn sigterm_drains_in_flight_requests_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_db(dir.path());
    let secret = token(&db, "drain", &["a"], "write");
    let server = Server::start(&db, &["--require-token"]);
    let addr = server.addr.clone();
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let threads: Vec<_> = (0..20)
        .map(|client| {
            let addr = addr.clone();
            let bearer = format!("Bearer {secret}");
            let acked = Arc::clone(&acked);
            std::thread::spawn(move || {
                for n in 0.. {
                    let mut headers = MCP_HEADERS.to_vec();
                    headers.push(("Authorization", &bearer));
                    let body = tool_call(
                        "add_memory",
                        json!({"text": format!("client {client} write {n}")}),
                    );
                    // Refused or cut off once the server stops: not acknowledged.
                    let Some(answer) = try_http(&addr, "POST", "/mcp", &headers, &body) else {
                        return;
                    };
                    if answer.status == 200 {
                        let message = answer.json();
                        assert_eq!(message["result"]["isError"], false, "{message}");
                        let id = message["result"]["structuredContent"]["id"]
                            .as_str()
                            .unwrap()
                            .to_owned();
                        acked.lock().unwrap().push(id);
                    }
                }
            })
        })
        .collect();
    // Stop once the writes are well under way.
    while acked.lock().unwrap().len() < 60 {
        std::thread::yield_now();
    }
    let (code, log) = server.terminate();
    for thread in threads {
        thread.join().expect("a client thread");
    }
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("stopping"), "{log}");
    let acked = acked.lock().unwrap().clone();
    let stored: Vec<String> = memories(&db, "a")
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    for id in &acked {
        assert!(stored.contains(id), "acknowledged write {id} is lost");
    }
}

/// `--tls-cert`/`--tls-key`: HTTPS with a certificate the client trusts; plain HTTP on that
/// port gets no answer; off loopback, TLS stands in for `--insecure-http`.
#[test]
fn serve_speaks_https_with_the_given_certificate() {
    let Some(openssl) =
        crate::common::require_tool("openssl", "serve TLS tests", "apt-get install openssl")
    else {
        return;
    };
    let Some(python) =
        crate::common::require_tool("python3", "serve TLS tests", "apt-get install python3")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_db(dir.path());
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = Command::new(openssl)
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
        ])
        .args([
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", stderr(&made));
    let secret = token(&db, "tls", &["a"], "write");
    let (cert_arg, key_arg) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let server = Server::start(
        &db,
        &[
            "--require-token",
            "--tls-cert",
            cert_arg,
            "--tls-key",
            key_arg,
        ],
    );
    let script = r#"
import json, ssl, sys, urllib.request
url, cafile, token = sys.argv[1:4]
ctx = ssl.create_default_context(cafile=cafile)
health = json.load(urllib.request.urlopen(url + "/healthz", context=ctx))
body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                   "params": {"name": "add_memory", "arguments": {"text": "over tls"}}}).encode()
request = urllib.request.Request(url + "/mcp", data=body, headers={
    "Authorization": "Bearer " + token, "Content-Type": "application/json",
    "Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-11-25"})
added = json.load(urllib.request.urlopen(request, context=ctx))
print(json.dumps({"health": health, "added": added["result"]["structuredContent"]}))
"#;
    let out = Command::new(python)
        .args([
            "-c",
            script,
            &format!("https://{}", server.addr),
            cert_arg,
            &secret,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(seen["health"]["status"], "ok");
    assert_eq!(seen["added"]["written_by"], "tls");
    // Plain HTTP on the TLS port is not served.
    let plain = try_http(&server.addr, "GET", "/healthz", &[], "");
    assert!(plain.as_ref().is_none_or(|a| a.status != 200), "{plain:?}");
    assert_eq!(memories(&db, "a").len(), 1);
    let (code, log) = server.terminate();
    assert_eq!(code, Some(0), "{log}");
    // A key that is not PEM: one line, exit 6, before listening.
    std::fs::write(&key, "not a key").unwrap();
    let out = modstate(
        &db,
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            cert_arg,
            "--tls-key",
            key_arg,
        ],
    );
    assert_exit(&out, 6);
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
}

/// The 2026-07-28 revision (stateless, `server/discover`, `Mcp-Method`/`Mcp-Name` headers,
/// per-request `_meta`) is served beside 2025-11-25, through the same checks.
#[test]
fn the_2026_07_28_revision_discovers_and_calls_tools() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_db(dir.path());
    let secret = token(&db, "new-client", &["a"], "write");
    let reader = token(&db, "new-reader", &["a"], "read");
    let server = Server::start(&db, &["--require-token"]);
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {}
    });
    let post = |token: &str, method: &str, name: Option<&str>, params: Value| {
        let bearer = format!("Bearer {token}");
        let mut headers = vec![
            ("Content-Type", "application/json"),
            ("Accept", "application/json, text/event-stream"),
            ("MCP-Protocol-Version", "2026-07-28"),
            ("Mcp-Method", method),
            ("Authorization", bearer.as_str()),
        ];
        if let Some(name) = name {
            headers.push(("Mcp-Name", name));
        }
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        http(&server.addr, "POST", "/mcp", &headers, &body.to_string())
    };
    let discovered = post(&secret, "server/discover", None, json!({"_meta": meta}));
    assert_eq!(discovered.status, 200, "{discovered:?}");
    let versions = discovered.json()["result"]["supportedVersions"].clone();
    assert!(
        versions.as_array().unwrap().contains(&json!("2026-07-28"))
            && versions.as_array().unwrap().contains(&json!("2025-11-25")),
        "{versions}"
    );
    let added = post(
        &secret,
        "tools/call",
        Some("add_memory"),
        json!({"name": "add_memory", "arguments": {"text": "new revision"}, "_meta": meta}),
    );
    let (is_error, memory) = result(&added);
    assert!(!is_error, "{memory}");
    assert_eq!(memory["written_by"], "new-client");
    let refused = post(
        &reader,
        "tools/call",
        Some("add_memory"),
        json!({"name": "add_memory", "arguments": {"text": "no"}, "_meta": meta}),
    );
    assert_eq!(refused.status, 403, "{refused:?}");
    assert_eq!(memories(&db, "a").len(), 1);
    drop(server);
}

/// A client that sends half its headers and stalls is cut off after --request-timeout, and
/// meanwhile others are served; SIGTERM still exits 0.
#[test]
fn a_stuck_client_is_cut_off_and_holds_up_no_one() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_db(dir.path());
    let server = Server::start(&db, &["--request-timeout", "1", "--max-concurrent", "1"]);
    let mut stuck = TcpStream::connect(&server.addr).unwrap();
    stuck
        .write_all(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le")
        .unwrap();
    // Served while the stuck client holds its connection.
    let health = http(&server.addr, "GET", "/healthz", &[], "");
    assert_eq!(health.status, 200);
    let (is_error, _) = result(&call(&server, None, None, "get_memories", json!({})));
    assert!(!is_error);
    // The server closes the stuck connection (a 408 or nothing, then end of stream).
    // (The read limit only keeps a broken server from hanging the test; 60 s is far above the
    // 1 s the server is given.)
    stuck
        .set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    let mut rest = Vec::new();
    let read = stuck.read_to_end(&mut rest);
    assert!(
        !matches!(&read, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
        "the stuck connection was not closed: {read:?}"
    );
    let text = String::from_utf8_lossy(&rest);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
    let (code, log) = server.terminate();
    assert_eq!(code, Some(0), "{log}");
}
