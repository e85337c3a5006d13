//! Side-by-side benchmark: modstate against raw SQLite and the stores a user would pick
//! instead (cacache, one JSON file per key), on the same payloads, durability and disk.
//!
//! `cargo bench --bench compare` (BENCH_SCALE=quick, the default, or full). Every workload runs
//! every system in the same process, interleaved, after a warm-up run; each table row is the
//! median of the measured runs, with min–max and the ratio to the named baseline. The tables go
//! to stdout and to `target/bench/report.md`. Nothing here asserts a time: it reports.

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use modstate::{Digest, Envelope, Options, Store, Synchronous};

// The tests' helpers, for the throwaway PostgreSQL cluster (`common::postgres`).
#[path = "../tests/common/mod.rs"]
#[allow(dead_code)]
mod common;
mod contention;
mod growth;
mod hybrid;
mod lock_run;
mod memory_search;
mod pg_backend;
mod pg_semantic;
mod process;
mod snapshot;

const BIN: &str = env!("CARGO_BIN_EXE_modstate");
/// Set in a re-executed copy of this binary that acts as one writer process.
const WORKER_ENV: &str = "MODSTATE_BENCH_WORKER";

struct Scale {
    name: &'static str,
    runs: usize,
    single_puts: usize,
    batch: usize,
    store_size: usize,
    gets: usize,
    proc_puts: usize,
    memories: usize,
    snapshot_mb: usize,
}

const QUICK: Scale = Scale {
    name: "quick",
    runs: 5,
    single_puts: 100,
    batch: 1000,
    store_size: 10_000,
    gets: 2_000,
    proc_puts: 100,
    memories: 10_000,
    snapshot_mb: 64,
};

const FULL: Scale = Scale {
    name: "full",
    runs: 7,
    single_puts: 500,
    batch: 1000,
    store_size: 100_000,
    gets: 20_000,
    proc_puts: 400,
    memories: 100_000,
    snapshot_mb: 512,
};

fn main() {
    if let Ok(spec) = std::env::var(WORKER_ENV) {
        worker(&spec);
        return;
    }
    if let Ok(spec) = std::env::var(contention::WRITER_ENV) {
        contention::writer(&spec);
        return;
    }
    // `cargo bench` passes --bench; a filter argument would be the first non-flag.
    let scale = match std::env::var("BENCH_SCALE").as_deref() {
        Ok("full") => &FULL,
        _ => &QUICK,
    };
    let root = bench_root();
    let mut report = Report::new(scale, &root);
    // BENCH_ONLY=word runs only the workloads whose name contains it.
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let selected = |name: &str| name.contains(only.as_str());
    if selected("put-full") {
        single_put(&mut report, scale, &root, Synchronous::Full);
    }
    if selected("put-normal") {
        single_put(&mut report, scale, &root, Synchronous::Normal);
    }
    if selected("batch") {
        batch_put(&mut report, scale, &root);
    }
    if selected("get") {
        gets(&mut report, scale, &root);
    }
    if selected("processes") {
        processes(&mut report, scale, &root);
    }
    if selected("lockfile") {
        lockfile_session(&mut report, scale, &root);
    }
    if selected("memory-peak") {
        peak_memory(&mut report, scale, &root);
    }
    if selected("memory-search") {
        report.section(&memory_search::run(BIN, scale.memories));
    }
    if selected("snapshot") {
        report.section(&snapshot::run(&root, scale.snapshot_mb));
    }
    if selected("user-costs") {
        let pairs = if scale.name == "quick" { 60 } else { 200 };
        report.section(&process::run(BIN, &root, pairs, scale.memories));
    }
    if selected("growth") {
        report.section(&growth::run(&root, scale.name == "quick"));
    }
    if selected("contention") {
        report.section(&contention::run(BIN, &root, scale.name == "quick"));
    }
    if selected("postgres") {
        pg_backend::run(&mut report, scale);
    }
    if selected("postgres-semantic") {
        pg_semantic::run(&mut report, scale);
    }
    if selected("hybrid") {
        report.section(&hybrid::run(scale.memories));
    }
    if selected("lock-run") {
        let pairs = if scale.name == "quick" { 30 } else { 100 };
        report.section(&lock_run::run(BIN, &root, pairs));
    }
    report.finish();
    let _ = fs::remove_dir_all(&root);
}

// ---------------------------------------------------------------------------------------------
// Payloads

/// A realistic ~2 KiB saved state envelope, different for every `n`.
fn envelope_text(n: usize) -> String {
    let mut functions = Vec::new();
    let mut i = 0;
    loop {
        functions.push(format!(
            r#"{{"name":"fn{i}","description":"Builds target {i} of module {n} and returns the container.","args":[{{"name":"source","typeDef":{{"kind":"OBJECT_KIND","asObject":{{"name":"Directory"}}}}}},{{"name":"tag","typeDef":{{"kind":"STRING_KIND","optional":true}},"defaultValue":"\"latest\""}}],"returnType":{{"kind":"OBJECT_KIND","asObject":{{"name":"Container"}}}}}}"#
        ));
        let text = format!(
            r#"{{"type":"Module","version":1,"state":{{"name":"module-{n}","description":"Module number {n}.","objects":[{{"name":"Module{n}","functions":[{}]}}]}}}}"#,
            functions.join(",")
        );
        if text.len() >= 2048 {
            return text;
        }
        i += 1;
    }
}

fn envelope(n: usize) -> Envelope {
    Envelope::parse(envelope_text(n).into_bytes(), usize::MAX).expect("bench envelope is valid")
}

fn key(n: usize) -> Digest {
    Digest::of(format!("module source {n}").as_bytes())
}

/// xorshift64*: deterministic random keys without a dependency.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n as u64) as usize
    }
}

// ---------------------------------------------------------------------------------------------
// Systems

/// One key-value store under test.
trait Kv {
    fn put(&mut self, key: &Digest, value: &Envelope);
    /// Many puts in one durable step; `false` if the system has no such thing.
    fn put_batch(&mut self, items: &[(Digest, Envelope)]) -> bool;
    fn get(&mut self, key: &Digest) -> Option<Vec<u8>>;
    /// After populating, before reads are measured: bring the store to its steady state (an
    /// SQLite store empties its WAL, so every SQLite row reads pages from the main file).
    fn settle(&mut self) {}
}

fn open_modstate(dir: &Path, sync: Synchronous) -> Store {
    Store::open(
        dir.join("state.db"),
        Options {
            synchronous: sync,
            ..Options::default()
        },
    )
    .expect("open modstate")
}

impl Kv for Store {
    fn put(&mut self, key: &Digest, value: &Envelope) {
        Store::put(self, key, value).expect("modstate put");
    }
    fn put_batch(&mut self, items: &[(Digest, Envelope)]) -> bool {
        self.put_many(items.iter().map(|(k, v)| (k, v)))
            .expect("modstate put_many");
        true
    }
    fn settle(&mut self) {
        self.shrink_wal().expect("modstate shrink_wal");
    }
    fn get(&mut self, key: &Digest) -> Option<Vec<u8>> {
        Store::get(self, key)
            .expect("modstate get")
            .map(Envelope::into_bytes)
    }
}

/// rusqlite alone: the same schema and pragmas, prepared statements, no locks, no validation.
struct Raw(rusqlite::Connection);

impl Raw {
    fn open(dir: &Path, sync: Synchronous) -> Raw {
        let conn = rusqlite::Connection::open(dir.join("raw.db")).expect("open raw");
        conn.busy_timeout(Duration::from_secs(30)).unwrap();
        conn.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))
            .unwrap();
        let sync = if sync == Synchronous::Full {
            "FULL"
        } else {
            "NORMAL"
        };
        conn.pragma_update(None, "synchronous", sync).unwrap();
        conn.pragma_update(None, "foreign_keys", true).unwrap();
        conn.execute_batch(include_str!("../migrations/0001_artifacts.sql"))
            .unwrap();
        Raw(conn)
    }

    fn insert(conn: &rusqlite::Connection, key: &Digest, value: &Envelope) {
        conn.prepare_cached(
            "INSERT OR REPLACE INTO artifacts
             (digest, envelope, sha256, size, state_type, state_version, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .unwrap()
        .execute(rusqlite::params![
            key.as_str(),
            value.as_bytes(),
            Digest::of(value.as_bytes()).hex(),
            value.as_bytes().len() as i64,
            value.state_type(),
            value.state_version(),
            "2026-01-01T00:00:00Z",
        ])
        .unwrap();
    }
}

impl Kv for Raw {
    fn settle(&mut self) {
        self.0
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
    }
    fn put(&mut self, key: &Digest, value: &Envelope) {
        Raw::insert(&self.0, key, value);
    }
    fn put_batch(&mut self, items: &[(Digest, Envelope)]) -> bool {
        let tx = self.0.transaction().unwrap();
        for (k, v) in items {
            Raw::insert(&tx, k, v);
        }
        tx.commit().unwrap();
        true
    }
    fn get(&mut self, key: &Digest) -> Option<Vec<u8>> {
        use rusqlite::OptionalExtension;
        self.0
            .prepare_cached("SELECT envelope FROM artifacts WHERE digest = ?1")
            .unwrap()
            .query_row([key.as_str()], |r| r.get(0))
            .optional()
            .unwrap()
    }
}

/// The limit for a modstate get: the same rows written through a [`Raw`] writer, read back
/// the fastest honest way SQLite allows — a dedicated read-only connection that never holds
/// the WAL write side, one cached statement, `mmap_size` when `mmap` — selecting the same
/// columns modstate reads and checking the payload's sha256 against the stored one, as
/// modstate does. No pool, no envelope type, no error mapping.
struct RawRead {
    writer: Raw,
    reader: rusqlite::Connection,
}

/// mmap window of the `raw … mmap` limit row: larger than any database the benchmark builds.
const RAW_MMAP_BYTES: i64 = 1 << 30;

impl RawRead {
    fn open(dir: &Path, mmap: bool) -> RawRead {
        let writer = Raw::open(dir, Synchronous::Full);
        let reader = rusqlite::Connection::open_with_flags(
            dir.join("raw.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .expect("open raw reader");
        reader.busy_timeout(Duration::from_secs(30)).unwrap();
        if mmap {
            reader
                .query_row(
                    &format!("PRAGMA mmap_size={RAW_MMAP_BYTES}"),
                    [],
                    |_| Ok(()),
                )
                .unwrap();
        }
        RawRead { writer, reader }
    }
}

impl Kv for RawRead {
    fn settle(&mut self) {
        self.writer.settle();
    }
    fn put(&mut self, key: &Digest, value: &Envelope) {
        self.writer.put(key, value);
    }
    fn put_batch(&mut self, items: &[(Digest, Envelope)]) -> bool {
        self.writer.put_batch(items)
    }
    fn get(&mut self, key: &Digest) -> Option<Vec<u8>> {
        use rusqlite::OptionalExtension;
        let row: Option<(Vec<u8>, String)> = self
            .reader
            .prepare_cached("SELECT envelope, sha256 FROM artifacts WHERE digest = ?1")
            .unwrap()
            .query_row([key.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .unwrap();
        row.map(|(bytes, sha)| {
            assert_eq!(Digest::of(&bytes).hex(), sha, "raw payload hash");
            bytes
        })
    }
}

/// The sha256 of the same payloads alone, looked up in memory: the part of a modstate get that
/// no storage layout can remove (it guards against silent corruption).
struct Sha256Only(std::collections::HashMap<Digest, (Vec<u8>, String)>);

impl Kv for Sha256Only {
    fn put(&mut self, key: &Digest, value: &Envelope) {
        let bytes = value.as_bytes().to_vec();
        let sha = Digest::of(&bytes).hex().to_owned();
        self.0.insert(key.clone(), (bytes, sha));
    }
    fn put_batch(&mut self, items: &[(Digest, Envelope)]) -> bool {
        for (k, v) in items {
            self.put(k, v);
        }
        true
    }
    fn get(&mut self, key: &Digest) -> Option<Vec<u8>> {
        let (bytes, sha) = self.0.get(key)?;
        assert_eq!(&Digest::of(bytes).hex(), sha);
        // The caller gets its own copy, as from every other system.
        Some(bytes.clone())
    }
}

/// cacache's synchronous API (it does not fsync).
struct Cacache(PathBuf);

impl Kv for Cacache {
    fn put(&mut self, key: &Digest, value: &Envelope) {
        cacache::write_sync(&self.0, key.as_str(), value.as_bytes()).expect("cacache write");
    }
    fn put_batch(&mut self, _: &[(Digest, Envelope)]) -> bool {
        false
    }
    fn get(&mut self, key: &Digest) -> Option<Vec<u8>> {
        cacache::read_sync(&self.0, key.as_str()).ok()
    }
}

/// One JSON file per key, written with atomicwrites (temp, fsync, rename), read with fs::read.
struct JsonFiles(PathBuf);

impl JsonFiles {
    fn path(&self, key: &Digest) -> PathBuf {
        self.0.join(format!("{}.json", key.hex()))
    }
}

impl Kv for JsonFiles {
    fn put(&mut self, key: &Digest, value: &Envelope) {
        modstate::atomic::write_atomically(&self.path(key), value.as_bytes()).expect("jsonfiles");
    }
    fn put_batch(&mut self, _: &[(Digest, Envelope)]) -> bool {
        false
    }
    fn get(&mut self, key: &Digest) -> Option<Vec<u8>> {
        fs::read(self.path(key)).ok()
    }
}

#[derive(Clone, Copy)]
enum SystemKind {
    Modstate(Synchronous),
    Raw(Synchronous),
    /// [`RawRead`]: the limit row of the get tables, with or without mmap.
    RawRead {
        mmap: bool,
    },
    Sha256Only,
    Cacache,
    JsonFiles,
}

impl SystemKind {
    fn label(self) -> &'static str {
        match self {
            SystemKind::Modstate(Synchronous::Full) => "modstate (FULL)",
            SystemKind::Modstate(Synchronous::Normal) => "modstate (NORMAL)",
            SystemKind::Raw(Synchronous::Full) => "raw (FULL)",
            SystemKind::Raw(Synchronous::Normal) => "raw (NORMAL)",
            SystemKind::RawRead { mmap: false } => "raw limit: read-only conn, cached stmt, sha256",
            SystemKind::RawRead { mmap: true } => "raw limit + mmap",
            SystemKind::Sha256Only => "sha256 of the payload alone (in memory)",
            SystemKind::Cacache => "cacache (no fsync)",
            SystemKind::JsonFiles => "jsonfiles (fsync)",
        }
    }

    fn open(self, dir: &Path) -> Box<dyn Kv> {
        fs::create_dir_all(dir).unwrap();
        match self {
            SystemKind::Modstate(sync) => Box::new(open_modstate(dir, sync)),
            SystemKind::Raw(sync) => Box::new(Raw::open(dir, sync)),
            SystemKind::RawRead { mmap } => Box::new(RawRead::open(dir, mmap)),
            SystemKind::Sha256Only => Box::new(Sha256Only(Default::default())),
            SystemKind::Cacache => Box::new(Cacache(dir.join("cacache"))),
            SystemKind::JsonFiles => {
                let files = dir.join("files");
                fs::create_dir_all(&files).unwrap();
                Box::new(JsonFiles(files))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Workloads

/// Runs `measure` for every system, interleaved, `runs + 1` times, dropping the warm-up.
fn interleaved(
    scale: &Scale,
    systems: &[SystemKind],
    mut measure: impl FnMut(SystemKind, usize) -> f64,
) -> Vec<Vec<f64>> {
    let mut samples = vec![Vec::new(); systems.len()];
    for run in 0..=scale.runs {
        for (i, system) in systems.iter().enumerate() {
            let value = measure(*system, run);
            if run > 0 {
                samples[i].push(value);
            }
        }
    }
    samples
}

fn single_put(report: &mut Report, scale: &Scale, root: &Path, sync: Synchronous) {
    let systems: Vec<SystemKind> = match sync {
        Synchronous::Full => vec![
            SystemKind::Raw(sync),
            SystemKind::Modstate(sync),
            SystemKind::JsonFiles,
            SystemKind::Cacache,
        ],
        Synchronous::Normal => vec![SystemKind::Raw(sync), SystemKind::Modstate(sync)],
    };
    let items: Vec<(Digest, Envelope)> = (0..scale.single_puts)
        .map(|n| (key(n), envelope(n)))
        .collect();
    let samples = interleaved(scale, &systems, |system, run| {
        let dir = root.join(format!("single-{run}-{}", slug(system.label())));
        let mut kv = system.open(&dir);
        let started = Instant::now();
        for (k, v) in &items {
            kv.put(k, v);
        }
        let rate = items.len() as f64 / started.elapsed().as_secs_f64();
        drop(kv);
        let _ = fs::remove_dir_all(&dir);
        rate
    });
    let title = match sync {
        Synchronous::Full => "Single put, each its own durable commit, synchronous=FULL",
        Synchronous::Normal => "Single put, each its own commit, synchronous=NORMAL",
    };
    report.table(
        title,
        "puts/s",
        Better::Higher,
        &systems_labels(&systems),
        &samples,
        0,
    );
}

fn batch_put(report: &mut Report, scale: &Scale, root: &Path) {
    let systems = [
        SystemKind::Raw(Synchronous::Full),
        SystemKind::Modstate(Synchronous::Full),
    ];
    let items: Vec<(Digest, Envelope)> = (0..scale.batch).map(|n| (key(n), envelope(n))).collect();
    let samples = interleaved(scale, &systems, |system, run| {
        let dir = root.join(format!("batch-{run}-{}", slug(system.label())));
        let mut kv = system.open(&dir);
        let started = Instant::now();
        assert!(kv.put_batch(&items));
        let rate = items.len() as f64 / started.elapsed().as_secs_f64();
        drop(kv);
        let _ = fs::remove_dir_all(&dir);
        rate
    });
    report.table(
        &format!("Batch put of {} in one transaction, FULL", scale.batch),
        "puts/s",
        Better::Higher,
        &systems_labels(&systems),
        &samples,
        0,
    );
}

fn gets(report: &mut Report, scale: &Scale, root: &Path) {
    let systems = [
        SystemKind::RawRead { mmap: false },
        SystemKind::RawRead { mmap: true },
        SystemKind::Raw(Synchronous::Full),
        SystemKind::Modstate(Synchronous::Full),
        SystemKind::Sha256Only,
        SystemKind::Cacache,
        SystemKind::JsonFiles,
    ];
    // Populate each system once (not measured), in batches where it has them.
    let mut stores: Vec<Box<dyn Kv>> = Vec::new();
    for system in systems {
        let dir = root.join(format!("gets-{}", slug(system.label())));
        let mut kv = system.open(&dir);
        for chunk_start in (0..scale.store_size).step_by(1000) {
            let chunk: Vec<(Digest, Envelope)> = (chunk_start
                ..(chunk_start + 1000).min(scale.store_size))
                .map(|n| (key(n), envelope(n)))
                .collect();
            if !kv.put_batch(&chunk) {
                match system {
                    // Population is not measured: skip the per-file fsync.
                    SystemKind::JsonFiles => {
                        let files = dir.join("files");
                        for (k, v) in &chunk {
                            fs::write(files.join(format!("{}.json", k.hex())), v.as_bytes())
                                .unwrap();
                        }
                    }
                    _ => {
                        for (k, v) in &chunk {
                            kv.put(k, v);
                        }
                    }
                }
            }
        }
        kv.settle();
        stores.push(kv);
    }
    for (hit, title) in [(true, "Get hit"), (false, "Get miss")] {
        let indices: Vec<usize> = (0..systems.len()).collect();
        let mut seed = 0x9e37_79b9_7f4a_7c15;
        let samples = interleaved(scale, &systems, |system, _run| {
            let i = indices[systems
                .iter()
                .position(|s| s.label() == system.label())
                .unwrap()];
            seed += 1;
            let mut rng = Rng(seed);
            let keys: Vec<Digest> = (0..scale.gets)
                .map(|_| {
                    let n = rng.below(scale.store_size);
                    if hit {
                        key(n)
                    } else {
                        key(scale.store_size + n)
                    }
                })
                .collect();
            let started = Instant::now();
            for k in &keys {
                let found = stores[i].get(k);
                assert_eq!(found.is_some(), hit, "{}", system.label());
            }
            started.elapsed().as_secs_f64() * 1e6 / keys.len() as f64
        });
        let title = format!(
            "{title}, random keys, store of {} artifacts",
            scale.store_size
        );
        let labels = systems_labels(&systems);
        report.table(&title, "µs/get", Better::Lower, &labels, &samples, 0);
        // The limit is the faster of the two raw-limit rows, chosen from this run's numbers;
        // modstate does all of the limit's work and more, so it must not come out faster.
        report.limit_check(&title, Better::Lower, &labels, &samples, &[0, 1], &[3]);
    }
    drop(stores);
}

/// Total puts/s of 1 process vs 4 processes writing one database at once (FULL).
fn processes(report: &mut Report, scale: &Scale, root: &Path) {
    let labels = vec![
        "modstate, 1 process".to_owned(),
        "modstate, 4 processes".to_owned(),
    ];
    let mut samples = vec![Vec::new(), Vec::new()];
    for run in 0..=scale.runs {
        for (i, procs) in [1usize, 4].into_iter().enumerate() {
            let dir = root.join(format!("procs-{run}-{procs}"));
            fs::create_dir_all(&dir).unwrap();
            let db = dir.join("state.db");
            drop(open_modstate(&dir, Synchronous::Full));
            let per = scale.proc_puts;
            let started = Instant::now();
            let children: Vec<_> = (0..procs)
                .map(|p| {
                    Command::new(std::env::current_exe().unwrap())
                        .env(
                            WORKER_ENV,
                            format!("{}\t{}\t{}", db.display(), p * per, per),
                        )
                        .spawn()
                        .expect("spawn worker")
                })
                .collect();
            for mut c in children {
                assert!(c.wait().unwrap().success(), "worker failed");
            }
            let rate = (procs * per) as f64 / started.elapsed().as_secs_f64();
            if run > 0 {
                samples[i].push(rate);
            }
            let _ = fs::remove_dir_all(&dir);
        }
    }
    report.table(
        &format!(
            "Concurrent writers: {} single puts per process, FULL",
            scale.proc_puts
        ),
        "total puts/s",
        Better::Higher,
        &labels,
        &samples,
        0,
    );
}

/// 1,000 lookups pinned in one dagger.lock session with one flush, against reading, updating
/// and atomically rewriting the file for every lookup. Both start from Dagger's own
/// `dagger.lock` (a real file, `fixtures/dagger-lock/`).
fn lockfile_session(report: &mut Report, scale: &Scale, root: &Path) {
    use modstate::lockfile::{Json, Key, Lockfile, Session};
    const LOOKUPS: usize = 1000;
    let fixture = fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/dagger-lock/dagger-main.dagger.lock"),
    )
    .expect("fixtures/dagger-lock/dagger-main.dagger.lock");
    let pins: Vec<(Key, Json)> = (0..LOOKUPS)
        .map(|i| {
            let inputs = serde_json::json!([format!("docker.io/library/app{i}:1.{i}")]);
            let key = Key::new("", "oci-sha", Json::from_value(inputs)).unwrap();
            (key, Json::from_value(serde_json::json!(key_hex(i))))
        })
        .collect();
    let labels = vec![
        "read-modify-write per lookup".to_owned(),
        "one session, one flush".to_owned(),
    ];
    let mut samples = vec![Vec::new(), Vec::new()];
    for run in 0..=scale.runs {
        for (i, per_lookup) in [true, false].into_iter().enumerate() {
            let dir = root.join(format!("lockfile-{run}-{i}"));
            fs::create_dir_all(&dir).unwrap();
            let path = dir.join("dagger.lock");
            fs::write(&path, &fixture).unwrap();
            let started = Instant::now();
            if per_lookup {
                for (key, value) in &pins {
                    let mut file =
                        Lockfile::parse(&fs::read(&path).unwrap(), "dagger.lock").unwrap();
                    file.set(key.clone(), value.clone());
                    modstate::atomic::write_atomically(&path, file.to_text().as_bytes()).unwrap();
                }
            } else {
                let session = Session::open(&path);
                for (key, value) in &pins {
                    session.set(key.clone(), value.clone()).unwrap();
                }
                session.close().unwrap();
            }
            let rate = LOOKUPS as f64 / started.elapsed().as_secs_f64();
            if run > 0 {
                samples[i].push(rate);
            }
            let _ = fs::remove_dir_all(&dir);
        }
    }
    report.table(
        &format!(
            "{LOOKUPS} lookups pinned in dagger.lock (starting from Dagger's own 16-entry file)"
        ),
        "lookups/s",
        Better::Higher,
        &labels,
        &samples,
        0,
    );
}

fn key_hex(i: usize) -> String {
    format!("sha256:{}", Digest::of(i.to_string().as_bytes()).hex())
}

/// A re-executed copy of this binary: `db \t first \t count` puts artifacts first.. in turn.
fn worker(spec: &str) {
    let parts: Vec<&str> = spec.split('\t').collect();
    let db = PathBuf::from(parts[0]);
    let first: usize = parts[1].parse().unwrap();
    let count: usize = parts[2].parse().unwrap();
    let store = Store::open(&db, Options::default()).expect("worker open");
    for n in first..first + count {
        store.put(&key(n), &envelope(n)).expect("worker put");
    }
}

/// Peak resident memory of `modstate artifact get` on the store, against the binary's baseline
/// (`modstate --version`).
fn peak_memory(report: &mut Report, scale: &Scale, root: &Path) {
    let dir = root.join("peak");
    fs::create_dir_all(&dir).unwrap();
    let store = open_modstate(&dir, Synchronous::Normal);
    let items: Vec<(Digest, Envelope)> = (0..scale.store_size.min(10_000))
        .map(|n| (key(n), envelope(n)))
        .collect();
    store.put_many(items.iter().map(|(k, v)| (k, v))).unwrap();
    drop(store);
    let db = dir.join("state.db");
    let labels = vec![
        "modstate --version".to_owned(),
        "modstate artifact get".to_owned(),
    ];
    let mut samples = vec![Vec::new(), Vec::new()];
    for run in 0..=scale.runs {
        let version = peak_rss_kib(&["--version"]);
        let db = db.display().to_string();
        let get = peak_rss_kib(&["--db", &db, "artifact", "get", key(run).as_str()]);
        if run > 0 {
            samples[0].push(version);
            samples[1].push(get);
        }
    }
    report.table(
        "Peak resident memory of one command",
        "KiB",
        Better::Lower,
        &labels,
        &samples,
        0,
    );
}

/// The peak resident set of `modstate args…` in KiB, as the child reports its own VmHWM
/// (a parent's ru_maxrss is polluted by its own size when the child is spawned with vfork).
fn peak_rss_kib(args: &[&str]) -> f64 {
    let out = Command::new(BIN)
        .args(args)
        .env("MODSTATE_REPORT_PEAK_RSS", "1")
        .output()
        .expect("spawn modstate");
    assert!(out.status.success(), "modstate {args:?} failed");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr
        .lines()
        .find_map(|l| l.strip_prefix("modstate: peak RSS "))
        .expect("peak RSS line");
    line.trim_end_matches("kB")
        .trim()
        .parse()
        .expect("peak RSS in kB")
}

// ---------------------------------------------------------------------------------------------
// Report

#[derive(Clone, Copy)]
enum Better {
    Higher,
    Lower,
}

struct Report {
    text: String,
}

impl Report {
    fn new(scale: &Scale, root: &Path) -> Report {
        let cpu = fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split(':').nth(1))
                    .map(|m| m.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".to_owned());
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        let fs_type = Command::new("stat")
            .args(["-f", "-c", "%T"])
            .arg(root)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_else(|| "unknown".to_owned());
        let mut text = String::new();
        let _ = writeln!(text, "# modstate benchmark ({} scale)\n", scale.name);
        let _ = writeln!(
            text,
            "- date: {}\n- machine: {cpu}, {cores} cores\n- temp dir: {} ({fs_type})\n- runs: median of {} after a warm-up, systems interleaved\n",
            humantime::format_rfc3339_seconds(std::time::SystemTime::now()),
            root.display(),
            scale.runs
        );
        print!("{text}");
        Report { text }
    }

    fn table(
        &mut self,
        title: &str,
        unit: &str,
        better: Better,
        labels: &[String],
        samples: &[Vec<f64>],
        baseline: usize,
    ) {
        let medians: Vec<f64> = samples.iter().map(|s| median(s)).collect();
        let direction = match better {
            Better::Higher => "higher is better",
            Better::Lower => "lower is better",
        };
        let mut t = String::new();
        let _ = writeln!(t, "## {title}\n");
        let _ = writeln!(
            t,
            "| system | median {unit} | min–max | ratio to {} ({direction}) |",
            labels[baseline]
        );
        let _ = writeln!(t, "| --- | ---: | ---: | ---: |");
        for (i, label) in labels.iter().enumerate() {
            let (lo, hi) = min_max(&samples[i]);
            let _ = writeln!(
                t,
                "| {label} | {} | {}–{} | {:.2}× |",
                fmt_num(medians[i]),
                fmt_num(lo),
                fmt_num(hi),
                medians[i] / medians[baseline]
            );
        }
        let _ = writeln!(t);
        print!("{t}");
        let _ = std::io::stdout().flush();
        self.text.push_str(&t);
    }

    /// Flags every row of `bounded` whose median beats the best median of the `limits` rows:
    /// a row that does all of its limit's work and more cannot honestly be faster. The reason
    /// is decided from the samples: when the two rows' min–max ranges overlap, the gap is within
    /// this run's spread (noise on a shared machine); when they do not, the limit row is not a
    /// limit and the benchmark is wrong.
    fn limit_check(
        &mut self,
        title: &str,
        better: Better,
        labels: &[String],
        samples: &[Vec<f64>],
        limits: &[usize],
        bounded: &[usize],
    ) {
        let beats = |a: f64, b: f64| match better {
            Better::Lower => a < b,
            Better::Higher => a > b,
        };
        let limit = limits
            .iter()
            .copied()
            .reduce(|best, i| {
                if beats(median(&samples[i]), median(&samples[best])) {
                    i
                } else {
                    best
                }
            })
            .expect("a limit row");
        let limit_median = median(&samples[limit]);
        let (limit_lo, limit_hi) = min_max(&samples[limit]);
        let mut t = String::new();
        for &row in bounded {
            let m = median(&samples[row]);
            let (lo, hi) = min_max(&samples[row]);
            if !beats(m, limit_median) {
                let _ = writeln!(
                    t,
                    "Limit check ({title}): {} is {:.2}× its limit, {} (the faster limit row in this run): not beaten.\n",
                    labels[row],
                    m / limit_median,
                    labels[limit]
                );
                continue;
            }
            let overlap = lo <= limit_hi && limit_lo <= hi;
            let reason = if overlap {
                "the min–max ranges overlap, so the gap is within this run's spread (noise on a shared machine), not a faster path"
            } else {
                "the ranges do not overlap: the limit row is not doing the same work the fastest way, so the benchmark needs fixing"
            };
            let _ = writeln!(
                t,
                "**FLAG** ({title}): {} ({}) beats its limit {} ({}) at {:.2}×; {reason}.\n",
                labels[row],
                fmt_num(m),
                labels[limit],
                fmt_num(limit_median),
                m / limit_median
            );
        }
        print!("{t}");
        let _ = std::io::stdout().flush();
        self.text.push_str(&t);
    }

    /// A section a workload module rendered itself.
    fn section(&mut self, markdown: &str) {
        print!("{markdown}");
        let _ = std::io::stdout().flush();
        self.text.push_str(markdown);
    }

    fn finish(&self) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
        if fs::create_dir_all(&dir).is_ok() {
            let _ = fs::write(dir.join("report.md"), &self.text);
            println!("report written to {}", dir.join("report.md").display());
        }
    }
}

fn median(samples: &[f64]) -> f64 {
    let mut s = samples.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    s[s.len() / 2]
}

fn min_max(samples: &[f64]) -> (f64, f64) {
    samples
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        })
}

fn fmt_num(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

fn slug(label: &str) -> String {
    label
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect()
}

fn systems_labels(systems: &[SystemKind]) -> Vec<String> {
    systems.iter().map(|s| s.label().to_owned()).collect()
}

/// A fresh directory on the project's disk (not /tmp, which may be tmpfs): BENCH_DIR overrides.
fn bench_root() -> PathBuf {
    let base = std::env::var_os("BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench/tmp"));
    fs::create_dir_all(&base).expect("create bench dir");
    tempfile::tempdir_in(&base).expect("bench temp dir").keep()
}
