//! Crash loop: a writer process is SIGKILLed at random moments, again and again, on one
//! database; after every kill the database must open, pass integrity_check and hold every
//! acknowledged write.
//!
//! The workload mixes artifact puts and batches, memory adds/updates/deletes (the generation
//! must equal the number of committed memory writes, the search index must agree with the
//! rows) and dagger.lock session flushes.
//! The writer is this test binary re-executed (`CRASH_WORKER` set) so the workload uses the
//! library directly. It prints `begin <op>` before and `ack` after each operation; an operation
//! without its `ack` may or may not have happened, everything acknowledged must be there.
//! `CRASH_ITERS` (default 50) and `CRASH_SEED` (default: time) control the loop; the seed is
//! printed so a failure reproduces.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use modstate::lockfile::{Json, Key, Lockfile, Session};
use modstate::{Digest, MemoryFilter, Options, Store};
use serde_json::{Value, json};

const WORKER_ENV: &str = "CRASH_WORKER";

/// xorshift64*: a seeded generator, so a failing seed replays the same kills and workload.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn envelope_text(tag: &str) -> String {
    format!(
        r#"{{"type":"Module","version":1,"state":{{"tag":"{tag}","pad":"{}"}}}}"#,
        "x".repeat(512)
    )
}

/// One operation of the workload, as the worker announces it.
fn op_put(digest: &Digest, tag: &str) -> Value {
    json!({"op": "put", "digest": digest.as_str(), "tag": tag})
}

/// The worker: an endless mix of single puts and batches, each announced and acknowledged.
fn run_worker(db: &Path, seed: u64) {
    let store = Store::open(db, Options::default()).expect("worker open");
    let mut rng = Rng(seed | 1);
    let mut out = std::io::stdout().lock();
    let mut memories: Vec<String> = store
        .list_memories(&MemoryFilter::default())
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect();
    for step in 0.. {
        let tag = format!("{seed}-{step}");
        let roll = rng.below(8);
        let mut ack = String::from("ack");
        if roll == 3 || roll == 4 {
            // Memories: add, update or delete; the body carries a word unique to this step.
            let body = memory_body(seed, step);
            let choice = rng.below(3);
            if choice == 0 || memories.is_empty() {
                writeln!(out, "begin {}", json!({"op": "madd", "body": body})).unwrap();
                out.flush().unwrap();
                let added = store.add_memory("", &body, "crash").expect("add memory");
                ack = format!("ack {}", json!({"id": added.id}));
                memories.push(added.id);
            } else {
                let at = rng.below(memories.len() as u64) as usize;
                if choice == 1 {
                    let id = memories[at].clone();
                    writeln!(
                        out,
                        "begin {}",
                        json!({"op": "mupdate", "id": id, "body": body})
                    )
                    .unwrap();
                    out.flush().unwrap();
                    store
                        .update_memory(&id, &body, None, Default::default())
                        .expect("update memory");
                } else {
                    let id = memories.swap_remove(at);
                    writeln!(out, "begin {}", json!({"op": "mdelete", "id": id})).unwrap();
                    out.flush().unwrap();
                    store
                        .delete_memory(&id, Default::default())
                        .expect("delete memory");
                }
            }
        } else if roll == 0 {
            // A lockfile session pinning a few lookups, flushed once.
            let pins: Vec<(String, String)> = (0..rng.below(5) + 1)
                .map(|i| (format!("image-{tag}-{i}"), format!("sha256:{tag}-{i}")))
                .collect();
            let ops: Vec<Value> = pins
                .iter()
                .map(|(k, v)| json!({"ref": k, "pin": v}))
                .collect();
            writeln!(out, "begin {}", json!({"op": "pin", "pins": ops})).unwrap();
            out.flush().unwrap();
            let session = Session::open(lockfile_path(db));
            for (k, v) in &pins {
                let key = Key::new("", "oci-sha", Json::from_value(json!([k]))).unwrap();
                session.set(key, Json::from_value(json!(v))).unwrap();
            }
            session.close().expect("lockfile flush");
        } else if roll <= 2 {
            let items: Vec<(Digest, modstate::Envelope)> = (0..rng.below(20) + 2)
                .map(|i| {
                    let tag = format!("{tag}-{i}");
                    let env = store.envelope(envelope_text(&tag).into_bytes()).unwrap();
                    (Digest::of(tag.as_bytes()), env)
                })
                .collect();
            let ops: Vec<Value> = items
                .iter()
                .enumerate()
                .map(|(i, (d, _))| op_put(d, &format!("{tag}-{i}")))
                .collect();
            writeln!(out, "begin {}", json!({"op": "batch", "items": ops})).unwrap();
            out.flush().unwrap();
            store
                .put_many(items.iter().map(|(d, e)| (d, e)))
                .expect("put_many");
        } else {
            let digest = Digest::of(tag.as_bytes());
            writeln!(out, "begin {}", op_put(&digest, &tag)).unwrap();
            out.flush().unwrap();
            let env = store.envelope(envelope_text(&tag).into_bytes()).unwrap();
            store.put(&digest, &env).expect("put");
        }
        writeln!(out, "{ack}").unwrap();
        out.flush().unwrap();
    }
}

/// A memory body with one word (`t<seed>s<step>`) no other body has, to find it by search.
fn memory_body(seed: u64, step: u64) -> String {
    format!("remember t{seed}s{step} about the nightly deploy")
}

/// The memories part of the model: id -> body, and how many memory writes committed.
#[derive(Default)]
struct MemoryModel {
    bodies: BTreeMap<String, String>,
    writes: u64,
}

impl MemoryModel {
    fn apply(&mut self, op: &Value, payload: &Value) -> bool {
        let body = || op["body"].as_str().unwrap().to_owned();
        match op["op"].as_str().unwrap() {
            "madd" => self
                .bodies
                .insert(payload["id"].as_str().unwrap().to_owned(), body()),
            "mupdate" => self
                .bodies
                .insert(op["id"].as_str().unwrap().to_owned(), body()),
            "mdelete" => self.bodies.remove(op["id"].as_str().unwrap()),
            _ => return false,
        };
        self.writes += 1;
        true
    }

    /// Checks the store against the model, allowing the in-flight operation to have landed or
    /// not (never in part); then takes it in if it landed.
    fn check(&mut self, store: &Store, in_flight: Option<&Value>, ctx: &str) {
        let in_flight = in_flight.filter(|op| op["op"].as_str().unwrap_or("").starts_with('m'));
        let mut landed: Option<Value> = None;
        for (id, body) in &self.bodies {
            match store.get_memory(id).unwrap() {
                Some(m) if &m.body == body => {}
                Some(m) => {
                    let op = in_flight.unwrap_or_else(|| panic!("{ctx}: memory {id} changed"));
                    assert!(
                        op["op"] == "mupdate"
                            && op["id"] == id.as_str()
                            && op["body"] == m.body.as_str(),
                        "{ctx}: memory {id} is {:?}",
                        m.body
                    );
                    landed = Some(json!({}));
                }
                None => {
                    let op =
                        in_flight.unwrap_or_else(|| panic!("{ctx}: acknowledged memory {id} lost"));
                    assert!(
                        op["op"] == "mdelete" && op["id"] == id.as_str(),
                        "{ctx}: memory {id} lost"
                    );
                    landed = Some(json!({}));
                }
            }
        }
        for m in store.list_memories(&MemoryFilter::default()).unwrap() {
            if !self.bodies.contains_key(&m.id) {
                let op = in_flight
                    .unwrap_or_else(|| panic!("{ctx}: memory {} appeared from nowhere", m.id));
                assert!(
                    op["op"] == "madd" && op["body"] == m.body.as_str(),
                    "{ctx}: stray memory {:?}",
                    m.body
                );
                landed = Some(json!({"id": m.id}));
            }
        }
        if let (Some(op), Some(payload)) = (in_flight, &landed) {
            self.apply(op, payload);
        }
        assert_eq!(
            store.memory_generation("").unwrap(),
            self.writes,
            "{ctx}: generation drifted"
        );
        // The full-text index is in step with the rows.
        for (id, body) in &self.bodies {
            let word = body.split_whitespace().nth(1).unwrap();
            let hits = store
                .search_memories(&format!("{word} about"), &MemoryFilter::default())
                .unwrap();
            let ids: Vec<&str> = hits.iter().map(|(m, _)| m.id.as_str()).collect();
            assert_eq!(ids, [id.as_str()], "{ctx}: search for {word}");
        }
    }
}

fn lockfile_path(db: &Path) -> PathBuf {
    db.with_file_name("dagger.lock")
}

/// What must exist: artifacts digest -> tag and lockfile pins ref -> value; and what may
/// exist (the one unacknowledged operation).
#[derive(Default)]
struct Model {
    acked: BTreeMap<String, String>,
    maybe: BTreeMap<String, String>,
    pins: BTreeMap<String, String>,
    maybe_pins: BTreeMap<String, String>,
    memories: MemoryModel,
}

impl Model {
    fn apply(&mut self, op: &Value, acked: bool, payload: &Value) {
        if acked && self.memories.apply(op, payload) {
            return;
        }
        let (target, pins) = if acked {
            (&mut self.acked, &mut self.pins)
        } else {
            (&mut self.maybe, &mut self.maybe_pins)
        };
        match op["op"].as_str().unwrap() {
            "pin" => {
                for pin in op["pins"].as_array().unwrap() {
                    pins.insert(
                        pin["ref"].as_str().unwrap().to_owned(),
                        pin["pin"].as_str().unwrap().to_owned(),
                    );
                }
            }
            "put" => {
                target.insert(
                    op["digest"].as_str().unwrap().to_owned(),
                    op["tag"].as_str().unwrap().to_owned(),
                );
            }
            "batch" => {
                for item in op["items"].as_array().unwrap() {
                    target.insert(
                        item["digest"].as_str().unwrap().to_owned(),
                        item["tag"].as_str().unwrap().to_owned(),
                    );
                }
            }
            "madd" | "mupdate" | "mdelete" => {} // in flight: settled by MemoryModel::check
            other => panic!("unknown op {other}"),
        }
    }

    fn check(&mut self, db: &Path, seed: u64, iteration: usize, in_flight: Option<&Value>) {
        let ctx = format!("seed {seed}, iteration {iteration}");
        let store =
            Store::open(db, Options::default()).unwrap_or_else(|e| panic!("{ctx}: open: {e}"));
        {
            let conn = rusqlite::Connection::open(db).unwrap();
            let check: String = conn
                .query_row("PRAGMA integrity_check", [], |r| r.get(0))
                .unwrap();
            assert_eq!(check, "ok", "{ctx}");
        }
        for (digest, tag) in &self.acked {
            let d = Digest::parse(digest).unwrap();
            let got = store
                .get(&d)
                .unwrap_or_else(|e| panic!("{ctx}: get {digest}: {e}"))
                .unwrap_or_else(|| panic!("{ctx}: acknowledged put of {digest} lost"));
            assert_eq!(got.as_bytes(), envelope_text(tag).as_bytes(), "{ctx}");
        }
        self.memories.check(&store, in_flight, &ctx);
        // The lockfile parses and holds every acknowledged pin; nothing else is in it.
        let lockfile = match std::fs::read(lockfile_path(db)) {
            Ok(bytes) => {
                Lockfile::parse(&bytes, "dagger.lock").unwrap_or_else(|e| panic!("{ctx}: {e}"))
            }
            Err(_) => Lockfile::new(),
        };
        for (reference, pin) in &self.pins {
            let key = Key::new("", "oci-sha", Json::from_value(json!([reference]))).unwrap();
            let got = lockfile
                .get(&key)
                .unwrap_or_else(|| panic!("{ctx}: acknowledged pin {reference} lost"));
            assert_eq!(got.value(), &json!(pin), "{ctx}");
        }
        for (key, _) in lockfile.iter() {
            let reference = key.inputs().value()[0].as_str().unwrap().to_owned();
            assert!(
                self.pins.contains_key(&reference) || self.maybe_pins.contains_key(&reference),
                "{ctx}: pin {reference} appeared from nowhere"
            );
        }
        // Nothing but acknowledged or in-flight writes exists, and nothing is half-written.
        for info in store.list().unwrap() {
            let known =
                self.acked.contains_key(&info.digest) || self.maybe.contains_key(&info.digest);
            assert!(known, "{ctx}: {} appeared from nowhere", info.digest);
            store
                .get(&Digest::parse(&info.digest).unwrap())
                .unwrap()
                .unwrap();
        }
    }
}

#[test]
fn crash_worker_entry() {
    // Only does something when re-executed as the worker by the crash loop.
    if let Ok(spec) = std::env::var(WORKER_ENV) {
        let (db, seed) = spec.split_once('\t').unwrap();
        run_worker(Path::new(db), seed.parse().unwrap());
    }
}

#[test]
fn sigkill_loop_never_loses_an_acknowledged_write() {
    let iterations: usize = std::env::var("CRASH_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    let seed: u64 = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("crash loop: {iterations} iterations, CRASH_SEED={seed}");
    let dir = tempfile::tempdir().unwrap();
    let db: PathBuf = dir.path().join("state.db");
    let mut rng = Rng(seed | 1);
    let mut model = Model::default();
    let mut total_acked = 0;
    for iteration in 0..iterations {
        let worker_seed = rng.next();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "crash::crash_worker_entry",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(WORKER_ENV, format!("{}\t{worker_seed}", db.display()))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(20 + rng.below(200)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();

        model.maybe.clear();
        let mut pending: Option<Value> = None;
        for line in BufReader::new(child.stdout.take().unwrap()).lines() {
            let line = line.unwrap();
            // The test harness may print its own prefix on the first line.
            if let Some(op) = line.find("begin {").map(|at| &line[at + "begin ".len()..]) {
                // A torn last line is the kill landing mid-print: that op was never started.
                pending = serde_json::from_str(op).ok();
            } else if let Some(payload) = line.strip_prefix("ack") {
                let payload: Value = serde_json::from_str(payload.trim()).unwrap_or(Value::Null);
                model.apply(&pending.take().expect("ack without begin"), true, &payload);
                total_acked += 1;
            }
        }
        if let Some(op) = &pending {
            model.apply(op, false, &Value::Null);
        }
        model.check(&db, seed, iteration, pending.as_ref());
        // An in-flight write either landed whole or not at all; from now on it is known.
        let in_flight_pins = std::mem::take(&mut model.maybe_pins);
        if !in_flight_pins.is_empty() {
            let bytes = std::fs::read(lockfile_path(&db)).unwrap_or_default();
            let lockfile = Lockfile::parse(&bytes, "dagger.lock").unwrap();
            let landed = in_flight_pins.keys().filter(|r| {
                lockfile
                    .get(&Key::new("", "oci-sha", Json::from_value(json!([r]))).unwrap())
                    .is_some()
            });
            let landed: Vec<String> = landed.cloned().collect();
            assert!(
                landed.is_empty() || landed.len() == in_flight_pins.len(),
                "a flush landed in part"
            );
            for r in landed {
                model.pins.insert(r.clone(), in_flight_pins[&r].clone());
            }
        }
        let landed: Vec<(String, String)> = std::mem::take(&mut model.maybe).into_iter().collect();
        let store = Store::open(&db, Options::default()).unwrap();
        for (digest, tag) in landed {
            if store.contains(&Digest::parse(&digest).unwrap()).unwrap() {
                model.acked.insert(digest, tag);
            }
        }
    }
    eprintln!(
        "crash loop: {total_acked} acknowledged operations ({} artifacts, {} lockfile pins, {} memory writes) survived {iterations} SIGKILLs",
        model.acked.len(),
        model.pins.len(),
        model.memories.writes
    );
    assert!(total_acked > 0, "the worker never got to write");
}
