//! The costs users pay: modstate as module loaders and agents call it, as a whole process or
//! over MCP, not in-process.
//!
//! 1. a whole `modstate artifact get D` process against `cat dagger.moduletypes.json` (the
//!    file a loader would read instead), in pairs whose order alternates, with
//!    `modstate --version` (loading the binary and nothing else) beside them as the floor;
//! 2. a whole `modstate memory search` process, a rare and a common word;
//! 3. `add_memory` and `search_memories` round trips over one long-lived `modstate mcp`
//!    server, spoken to as JSON-RPC over its stdin and stdout.
//!
//! A workload of `benches/compare.rs`: `BENCH_ONLY=user-costs cargo bench --bench compare`.

use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use modstate::{Digest, Envelope, MemoryFilter, Options, Store, Synchronous};
use serde_json::{Value, json};

/// Runs the three measurements in `root` with `pairs` paired process runs; returns markdown.
pub fn run(bin: &str, root: &Path, pairs: usize, memories: usize) -> String {
    let tmp = tempfile::tempdir_in(root).expect("temp dir");
    let mut md = String::new();
    md.push_str(&get_vs_cat(bin, tmp.path(), pairs));
    md.push_str(&memory_search(bin, tmp.path(), pairs / 2, memories));
    md.push_str(&mcp_round_trips(bin, tmp.path(), pairs * 2));
    md
}

/// Wall time of one process in ms, its stdout discarded; it must succeed.
fn wall_ms(bin: &str, args: &[&str]) -> f64 {
    let started = Instant::now();
    let status = Command::new(bin)
        .args(args)
        .env_remove("MODSTATE_DB")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("spawn {bin}: {e}"));
    let ms = started.elapsed().as_secs_f64() * 1e3;
    assert!(status.success(), "{bin} {args:?} failed");
    ms
}

fn quantile(values: &[f64], q: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

fn get_vs_cat(bin: &str, dir: &Path, pairs: usize) -> String {
    let db = dir.join("get.db");
    let store = Store::open(&db, Options::default()).expect("open");
    let items: Vec<(Digest, Envelope)> = (0..1000)
        .map(|n| (super::key(n), super::envelope(n)))
        .collect();
    store.put_many(items.iter().map(|(k, v)| (k, v))).unwrap();
    drop(store);
    let file = dir.join("dagger.moduletypes.json");
    fs::write(&file, super::envelope_text(7)).unwrap();
    let db_arg = db.display().to_string();
    let key = super::key(7);
    let get_args = ["--db", db_arg.as_str(), "artifact", "get", key.as_str()];
    let file_arg = file.display().to_string();
    // MODSTATE_BENCH_BASELINE_BIN: another build (say, of the previous commit) measured in the
    // same pairs, for a before/after in one run.
    let baseline = std::env::var("MODSTATE_BENCH_BASELINE_BIN").ok();
    // The baseline may be of an older schema: it gets a database of its own, written by itself.
    let old_db = dir.join("get-baseline.db");
    let old_db_arg = old_db.display().to_string();
    let old_args = ["--db", old_db_arg.as_str(), "artifact", "get", key.as_str()];
    if let Some(old) = &baseline {
        let mut lines = String::new();
        for (k, v) in &items {
            let envelope = std::str::from_utf8(v.as_bytes()).expect("an envelope is UTF-8");
            let _ = writeln!(lines, "{{\"digest\":\"{k}\",\"state\":{envelope}}}");
        }
        let mut child = Command::new(old)
            .args(["--db", old_db_arg.as_str(), "artifact", "put-many", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn the baseline");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(lines.as_bytes())
            .expect("write");
        assert!(child.wait().expect("wait").success(), "baseline put-many");
    }
    // The same get when every read records its use (touch interval 0: a write transaction per
    // read); with the default interval (1h) a read pays it once an hour per artifact.
    let touch_db = dir.join("get-touch.db");
    let store = Store::open(&touch_db, Options::default()).expect("open");
    store.put_many(items.iter().map(|(k, v)| (k, v))).unwrap();
    store
        .set_cache_policy(
            &modstate::artifact::cache::CachePolicy::default(),
            Some(std::time::Duration::ZERO),
        )
        .unwrap();
    drop(store);
    let touch_db_arg = touch_db.display().to_string();
    let touch_args = [
        "--db",
        touch_db_arg.as_str(),
        "artifact",
        "get",
        key.as_str(),
    ];
    let mut touching = Vec::new();
    let (mut get, mut cat, mut version, mut ratios) = (vec![], vec![], vec![], vec![]);
    let mut before = Vec::new();
    // A warm-up of each, then pairs whose order alternates so neither always runs second.
    wall_ms(bin, &get_args);
    wall_ms("cat", &[&file_arg]);
    wall_ms(bin, &["--version"]);
    for i in 0..pairs {
        let (g, c) = if i % 2 == 0 {
            let g = wall_ms(bin, &get_args);
            (g, wall_ms("cat", &[&file_arg]))
        } else {
            let c = wall_ms("cat", &[&file_arg]);
            (wall_ms(bin, &get_args), c)
        };
        get.push(g);
        cat.push(c);
        ratios.push(g / c);
        version.push(wall_ms(bin, &["--version"]));
        if let Some(old) = &baseline {
            before.push(wall_ms(old, &old_args));
        }
        touching.push(wall_ms(bin, &touch_args));
    }
    let mut md = format!(
        "## A whole `modstate artifact get` process vs `cat dagger.moduletypes.json`\n\n\
         {pairs} pairs, order alternating, after a warm-up; a 2 KiB envelope from a store of \
         1,000; `modstate --version` (the binary loaded, no database opened) run after each pair.\n\n\
         | command | p50 ms | p10–p90 ms | ratio of p50 to cat |\n| --- | ---: | ---: | ---: |\n"
    );
    let cat_p50 = quantile(&cat, 0.5);
    let mut rows = vec![
        ("cat dagger.moduletypes.json", &cat),
        ("modstate --version", &version),
        ("modstate artifact get", &get),
    ];
    rows.push((
        "modstate artifact get, recording its use on every read",
        &touching,
    ));
    if !before.is_empty() {
        rows.push((
            "modstate artifact get, MODSTATE_BENCH_BASELINE_BIN",
            &before,
        ));
    }
    for (label, v) in rows {
        let _ = writeln!(
            md,
            "| {label} | {:.2} | {:.2}–{:.2} | {:.2}× |",
            quantile(v, 0.5),
            quantile(v, 0.1),
            quantile(v, 0.9),
            quantile(v, 0.5) / cat_p50
        );
    }
    let _ = writeln!(
        md,
        "\nMedian of the paired ratios get / cat: **{:.2}×** (p10–p90 {:.2}–{:.2}×; goal ≤ 2×).\n",
        quantile(&ratios, 0.5),
        quantile(&ratios, 0.1),
        quantile(&ratios, 0.9)
    );
    md
}

fn memory_search(bin: &str, dir: &Path, runs: usize, count: usize) -> String {
    let db = dir.join("memories.db");
    let store = Store::open(
        &db,
        Options {
            synchronous: Synchronous::Normal,
            ..Options::default()
        },
    )
    .expect("open");
    let mut words = super::memory_search::Sentences::new(0x5eed);
    let mut added = 0;
    let mut bodies = Vec::new();
    while added < count {
        let n = 10_000.min(count - added);
        let batch: Vec<_> = (0..n).map(|_| words.memory()).collect();
        bodies.extend(batch.iter().map(|m| m.body.clone()));
        store.add_memories(batch).expect("add");
        added += n;
    }
    let rare = super::memory_search::rarest_codename(bodies.iter().map(String::as_str));
    let matches = |q: &str| {
        store
            .search_memories(
                q,
                &MemoryFilter {
                    limit: Some(usize::MAX >> 1),
                    ..MemoryFilter::default()
                },
            )
            .map_or(0, |v| v.len())
    };
    let question = super::memory_search::QUESTIONS[0];
    let (rare_n, common_n, question_n) = (matches(&rare), matches("deploy"), matches(question));
    drop(store);
    let db_arg = db.display().to_string();
    let search = |q: &str| wall_ms(bin, &["--db", &db_arg, "memory", "search", q]);
    search("deploy");
    let (mut rare_t, mut common_t, mut question_t, mut version) = (vec![], vec![], vec![], vec![]);
    for _ in 0..runs.max(5) {
        rare_t.push(search(&rare));
        common_t.push(search("deploy"));
        question_t.push(search(question));
        version.push(wall_ms(bin, &["--version"]));
    }
    let floor = quantile(&version, 0.5);
    let mut md = format!(
        "## A whole `modstate memory search` process over {count} memories\n\n\
         {} runs of each, interleaved, top 20 printed as text.\n\n\
         | command | matches | p50 ms | p10–p90 ms | ratio to `--version` |\n| --- | ---: | ---: | ---: | ---: |\n\
         | modstate --version | – | {floor:.2} | {:.2}–{:.2} | 1.00× |\n",
        runs.max(5),
        quantile(&version, 0.1),
        quantile(&version, 0.9),
    );
    for (label, n, v) in [
        (format!("memory search {rare:?} (rare)"), rare_n, &rare_t),
        (
            "memory search \"deploy\" (common)".to_owned(),
            common_n,
            &common_t,
        ),
        (
            format!("memory search {question:?} (a question)"),
            question_n,
            &question_t,
        ),
    ] {
        let _ = writeln!(
            md,
            "| {label} | {n} | {:.2} | {:.2}–{:.2} | {:.2}× |",
            quantile(v, 0.5),
            quantile(v, 0.1),
            quantile(v, 0.9),
            quantile(v, 0.5) / floor
        );
    }
    let _ = writeln!(
        md,
        "\nThe question costs {:.2}× the one-word query (p50).",
        quantile(&question_t, 0.5) / quantile(&common_t, 0.5)
    );
    md.push('\n');
    md
}

/// One `modstate mcp` server on stdin/stdout.
struct Mcp {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: BufReader<std::process::ChildStdout>,
    next_id: i64,
}

impl Mcp {
    fn start(bin: &str, db: &Path) -> Mcp {
        let mut child = Command::new(bin)
            .arg("--db")
            .arg(db)
            .arg("mcp")
            .env_remove("MODSTATE_DB")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn modstate mcp");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut mcp = Mcp {
            child,
            stdin,
            stdout,
            next_id: 1,
        };
        let init = mcp.request(
            "initialize",
            json!({"protocolVersion": "2025-11-25", "capabilities": {},
                   "clientInfo": {"name": "modstate-bench", "version": "0"}}),
        );
        assert!(init.get("result").is_some(), "initialize failed: {init}");
        mcp.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        mcp
    }

    fn send(&mut self, message: &Value) {
        let mut line = message.to_string();
        line.push('\n');
        self.stdin.write_all(line.as_bytes()).expect("write to mcp");
        self.stdin.flush().expect("flush mcp");
    }

    fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        let mut line = String::new();
        loop {
            line.clear();
            let n = self.stdout.read_line(&mut line).expect("read mcp");
            assert!(n > 0, "modstate mcp closed stdout");
            let message: Value = serde_json::from_str(&line).expect("mcp line is JSON");
            // Skip notifications; answer to this request only.
            if message["id"] == id {
                return message;
            }
        }
    }

    fn call(&mut self, tool: &str, arguments: Value) {
        let answer = self.request("tools/call", json!({"name": tool, "arguments": arguments}));
        assert_eq!(
            answer["result"]["isError"], false,
            "{tool} failed: {answer}"
        );
    }
}

fn mcp_round_trips(bin: &str, dir: &Path, calls: usize) -> String {
    const PRELOAD: usize = 500;
    let db = dir.join("mcp.db");
    let store = Store::open(&db, Options::default()).expect("open");
    let mut words = super::memory_search::Sentences::new(0xacdc);
    store
        .add_memories((0..PRELOAD).map(|_| words.memory()).collect::<Vec<_>>())
        .expect("preload");
    drop(store);
    let mut server = Mcp::start(bin, &db);
    let (mut add, mut search) = (vec![], vec![]);
    for i in 0..=calls {
        let started = Instant::now();
        server.call(
            "add_memory",
            json!({"text": format!("Round trip {i}: {}", words.memory().body)}),
        );
        let a = started.elapsed().as_secs_f64() * 1e3;
        let started = Instant::now();
        server.call("search_memories", json!({"query": "deploy"}));
        let s = started.elapsed().as_secs_f64() * 1e3;
        // The first pair warms the server's connections and statement caches.
        if i > 0 {
            add.push(a);
            search.push(s);
        }
    }
    drop(server.stdin);
    let _ = server.child.wait();
    let mut md = format!(
        "## MCP round trips over one long-lived `modstate mcp` server ({PRELOAD} memories at start)\n\n\
         {calls} calls of each, alternating, after one warm-up pair; time from writing the request \
         line to reading the answer line. `add_memory` commits with synchronous=FULL.\n\n\
         | tool | p50 ms | p99 ms | max ms |\n| --- | ---: | ---: | ---: |\n"
    );
    for (label, v) in [
        ("add_memory", &add),
        ("search_memories \"deploy\"", &search),
    ] {
        let _ = writeln!(
            md,
            "| {label} | {:.2} | {:.2} | {:.2} |",
            quantile(v, 0.5),
            quantile(v, 0.99),
            quantile(v, 1.0)
        );
    }
    md.push('\n');
    md
}
