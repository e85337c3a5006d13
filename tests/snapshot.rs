//! Snapshots: export while real writer processes commit, failure injection (file-size limit,
//! SIGKILL), retention, verify, and restore round trips. Every writer and exporter is the
//! `modstate` binary in its own process.

use crate::common::fill;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use modstate::{Digest, Options, Store};
use rusqlite::{Connection, OpenFlags};
use serde_json::Value;

const TEMP_PREFIX: &str = ".modstate-snapshot-";
/// Generous bound for things that must happen "soon" on a loaded, shared machine.
const PATIENCE: Duration = Duration::from_secs(60);

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_modstate")
}

fn command(db: &Path) -> Command {
    let mut cmd = Command::new(bin());
    cmd.arg("--db").arg(db).args(["--lock-timeout", "60"]);
    cmd
}

fn run(db: &Path, args: &[&str]) -> Output {
    command(db).args(args).output().unwrap()
}

fn run_ok(db: &Path, args: &[&str]) -> Output {
    let out = run(db, args);
    assert!(
        out.status.success(),
        "modstate {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap()
}

fn digest(label: &str) -> Digest {
    Digest::of(label.as_bytes())
}

fn put(db: &Path, digest: &Digest, envelope: &str) -> Output {
    let mut child = command(db)
        .args(["artifact", "put", digest.as_str(), "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(envelope.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn put_ok(db: &Path, label: &str, state: Value) {
    let envelope = serde_json::json!({"type": "Module", "version": 1, "state": state}).to_string();
    let out = put(db, &digest(label), &envelope);
    assert!(
        out.status.success(),
        "put {label}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The snapshot is one self-contained file: integrity ok, rollback journal in the header, no
/// -wal beside it, private.
fn assert_self_contained(path: &Path) {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    assert!(!Path::new(&wal).exists(), "{} has a -wal", path.display());
    let header = fs::read(path).unwrap();
    assert_eq!(
        &header[18..20],
        &[1, 1],
        "header of {} does not say rollback journal",
        path.display()
    );
    let mode = fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{} has mode {mode:o}", path.display());
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "delete");
}

/// `writer → sorted seqs` of the writer rows in a snapshot (filler rows are skipped).
fn writer_rows(path: &Path) -> BTreeMap<u64, Vec<u64>> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let mut stmt = conn.prepare("SELECT envelope FROM artifacts").unwrap();
    let mut out: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for envelope in stmt.query_map([], |r| r.get::<_, Vec<u8>>(0)).unwrap() {
        let value: Value = serde_json::from_slice(&envelope.unwrap()).unwrap();
        if let (Some(w), Some(s)) = (
            value["state"]["writer"].as_u64(),
            value["state"]["seq"].as_u64(),
        ) {
            out.entry(w).or_default().push(s);
        }
    }
    for seqs in out.values_mut() {
        seqs.sort_unstable();
    }
    out
}

fn temp_files(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(TEMP_PREFIX))
        .collect()
}

/// One acknowledged commit of a writer process.
#[derive(Clone, Copy, Debug)]
struct Ack {
    writer: u64,
    seq: u64,
    started: Instant,
    acked: Instant,
}

/// Four writers, each a loop of `modstate artifact put` processes committing as fast as they
/// can, each put acknowledged (exit 0) before the next starts.
struct Writers {
    stop: Arc<AtomicBool>,
    acks: Arc<Mutex<Vec<Ack>>>,
    threads: Vec<JoinHandle<()>>,
}

impl Writers {
    fn start(db: &Path, count: u64) -> Writers {
        let stop = Arc::new(AtomicBool::new(false));
        let acks = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..count)
            .map(|writer| {
                let (db, stop, acks) = (db.to_path_buf(), stop.clone(), acks.clone());
                std::thread::spawn(move || {
                    let mut seq = 0;
                    while !stop.load(Ordering::SeqCst) {
                        let state = serde_json::json!({"writer": writer, "seq": seq});
                        let envelope =
                            serde_json::json!({"type": "Module", "version": 1, "state": state})
                                .to_string();
                        let started = Instant::now();
                        let out = put(&db, &digest(&format!("w{writer}-s{seq}")), &envelope);
                        assert!(
                            out.status.success(),
                            "writer {writer} put {seq}: {}",
                            String::from_utf8_lossy(&out.stderr)
                        );
                        acks.lock().unwrap().push(Ack {
                            writer,
                            seq,
                            started,
                            acked: Instant::now(),
                        });
                        seq += 1;
                    }
                })
            })
            .collect();
        Writers {
            stop,
            acks,
            threads,
        }
    }

    fn acks(&self) -> Vec<Ack> {
        self.acks.lock().unwrap().clone()
    }

    /// Waits until every writer has at least `n` acknowledged commits after `since`.
    fn wait_for_commits_after(&self, since: Instant, n: usize, writers: u64) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let acks = self.acks();
            if (0..writers).all(|w| {
                acks.iter()
                    .filter(|a| a.writer == w && a.started > since)
                    .count()
                    >= n
            }) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "writers did not commit {n} times each within {PATIENCE:?}: stalled"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn finish(self) -> Vec<Ack> {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            t.join().unwrap();
        }
        self.acks.lock().unwrap().clone()
    }
}

/// Checks that a snapshot taken between `export_started` and `export_ended` holds, for every
/// writer, exactly the first k of its commits, with every commit acknowledged before the export
/// started included and no commit started after it ended.
fn assert_consistent_prefix(
    snapshot: &Path,
    acks: &[Ack],
    writers: u64,
    export_started: Instant,
    export_ended: Instant,
) -> BTreeMap<u64, u64> {
    let rows = writer_rows(snapshot);
    let mut prefix = BTreeMap::new();
    for w in 0..writers {
        let seqs = rows.get(&w).cloned().unwrap_or_default();
        let k = seqs.len() as u64;
        assert_eq!(
            seqs,
            (0..k).collect::<Vec<_>>(),
            "writer {w}: snapshot rows are not a prefix of its commits"
        );
        let mine: Vec<&Ack> = acks.iter().filter(|a| a.writer == w).collect();
        // Commits 0..n of a writer: n is one past the highest seq in the set.
        let prefix_len = |keep: &dyn Fn(&Ack) -> bool| {
            mine.iter()
                .filter(|a| keep(a))
                .map(|a| a.seq + 1)
                .max()
                .unwrap_or(0)
        };
        let acked_before = prefix_len(&|a| a.acked < export_started);
        let started_before = prefix_len(&|a| a.started < export_ended);
        assert!(
            k >= acked_before,
            "writer {w}: snapshot has {k} rows but {acked_before} were acknowledged before the export started"
        );
        assert!(
            k <= started_before,
            "writer {w}: snapshot has {k} rows but only {started_before} commits started before the export ended"
        );
        prefix.insert(w, k);
    }
    prefix
}

fn wait_with_deadline(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "process did not finish in time");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Starts an export of `db` into `dest` and returns it once its temp file in `dir` has data:
/// the copy is under way. `None` if the export finished before that could be seen.
fn export_caught_mid_copy(db: &Path, dir: &Path, dest: &Path) -> Option<Child> {
    let mut child = command(db)
        .args(["--json", "snapshot", "export"])
        .arg(dest)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let copying = temp_files(dir).iter().any(|name| {
            name.ends_with(".tmp")
                && fs::metadata(dir.join(name))
                    .map(|m| m.len() > 0)
                    .unwrap_or(false)
        });
        if copying {
            return Some(child);
        }
        if child.try_wait().unwrap().is_some() {
            return None;
        }
        assert!(Instant::now() < deadline, "export never started copying");
        std::thread::sleep(Duration::from_micros(500));
    }
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: sending a signal to our own child by pid.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, sig) };
    assert_eq!(rc, 0, "kill failed");
}

#[test]
fn export_while_four_writers_commit_is_a_consistent_prefix() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db/state.db");
    let snaps = tmp.path().join("snaps");
    fs::create_dir_all(&snaps).unwrap();
    fill(&db, 8);
    let writers = Writers::start(&db, 4);
    writers.wait_for_commits_after(Instant::now() - PATIENCE, 2, 4);

    let mut exported = 0;
    for round in 0..3 {
        let started = Instant::now();
        let out = run_ok(
            &db,
            &["--json", "snapshot", "export", snaps.to_str().unwrap()],
        );
        let ended = Instant::now();
        let report = json_of(&out);
        let path = PathBuf::from(report["path"].as_str().unwrap());
        assert_self_contained(&path);
        // Once every writer has begun a commit after the export ended, every commit begun
        // before it has been acknowledged and is in `acks`.
        writers.wait_for_commits_after(ended, 2, 4);
        let prefix = assert_consistent_prefix(&path, &writers.acks(), 4, started, ended);
        assert_eq!(
            report["artifacts"].as_u64().unwrap(),
            8 + prefix.values().sum::<u64>(),
            "round {round}: reported count"
        );
        exported += 1;
    }
    let acks = writers.finish();
    assert_eq!(exported, 3);
    assert!(acks.len() >= 4 * 6, "writers committed only {}", acks.len());
    assert!(temp_files(&snaps).is_empty());
}

#[test]
fn writers_keep_committing_during_a_large_export() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db/state.db");
    let snaps = tmp.path().join("snaps");
    fs::create_dir_all(&snaps).unwrap();
    fill(&db, 96);
    let writers = Writers::start(&db, 4);
    writers.wait_for_commits_after(Instant::now() - PATIENCE, 1, 4);

    // Freeze the exporter in the middle of its copy (its read transaction open), and require
    // every writer to commit several times meanwhile. An exporter that held the write lock, or
    // copied under a lock writers wait for, fails this.
    let dest = snaps.join("big.db");
    let (mut exporter, started, stopped_at) = (0..5)
        .find_map(|_| {
            let started = Instant::now();
            let child = export_caught_mid_copy(&db, &snaps, &dest)?;
            signal(&child, libc::SIGSTOP);
            Some((child, started, Instant::now()))
        })
        .expect("the export always finished before its copy could be observed");
    writers.wait_for_commits_after(stopped_at, 3, 4);
    signal(&exporter, libc::SIGCONT);
    let status = wait_with_deadline(&mut exporter);
    let ended = Instant::now();
    let mut stderr = String::new();
    std::io::Read::read_to_string(exporter.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "export failed: {stderr}");
    let acks = writers.finish();

    let during = acks
        .iter()
        .filter(|a| a.started > started && a.acked < ended)
        .count();
    eprintln!("writer commits during the export window: {during}");
    assert!(during >= 12, "only {during} commits during the export");

    assert_self_contained(&dest);
    let prefix = assert_consistent_prefix(&dest, &acks, 4, started, ended);
    // The copy is of one instant before the freeze: nothing begun while it was frozen is in it.
    for (w, k) in prefix {
        let started_before_stop = acks
            .iter()
            .filter(|a| a.writer == w && a.started < stopped_at)
            .count() as u64;
        assert!(
            k <= started_before_stop,
            "writer {w}: commits made while the exporter was frozen leaked into the snapshot"
        );
    }
}

#[test]
fn file_size_limit_fails_cleanly_and_keeps_the_old_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db/state.db");
    let snaps = tmp.path().join("snaps");
    put_ok(&db, "small", serde_json::json!({"n": 1}));
    let dest = snaps.join("nightly.db");
    run_ok(&db, &["snapshot", "export", dest.to_str().unwrap()]);
    let old = fs::read(&dest).unwrap();
    fill(&db, 4);

    let limit: libc::rlim_t = 1024 * 1024;
    let mut cmd = command(&db);
    cmd.args(["snapshot", "export", dest.to_str().unwrap()]);
    crate::common::limit_file_size(&mut cmd, limit);
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "export under a 1 MiB file limit succeeded"
    );
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "not one line: {stderr}");
    assert!(
        stderr.contains("file size limit") && stderr.contains("nightly.db was left as it was"),
        "unclear message: {stderr}"
    );
    assert!(fs::read(&dest).unwrap() == old, "old snapshot changed");
    assert_eq!(temp_files(&snaps), Vec::<String>::new());

    // Without the limit the same export works.
    run_ok(&db, &["snapshot", "export", dest.to_str().unwrap()]);
    assert_self_contained(&dest);
}

#[test]
fn killed_exporter_keeps_the_old_snapshot_and_the_next_export_sweeps() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db/state.db");
    let snaps = tmp.path().join("snaps");
    fs::create_dir_all(&snaps).unwrap();
    put_ok(&db, "small", serde_json::json!({"n": 1}));
    let dest = snaps.join("nightly.db");
    run_ok(&db, &["snapshot", "export", dest.to_str().unwrap()]);
    let old = fs::read(&dest).unwrap();
    fill(&db, 96);

    let killed = (0..5).any(|_| match export_caught_mid_copy(&db, &snaps, &dest) {
        Some(mut child) => {
            signal(&child, libc::SIGKILL);
            let status = child.wait().unwrap();
            assert!(!status.success());
            true
        }
        None => {
            // Finished first: put the old snapshot back and try again.
            fs::write(&dest, &old).unwrap();
            false
        }
    });
    assert!(
        killed,
        "the export always finished before it could be killed"
    );
    assert!(fs::read(&dest).unwrap() == old, "old snapshot changed");
    let leftovers = temp_files(&snaps);
    assert!(!leftovers.is_empty(), "a killed export left no temp file");

    let out = run_ok(
        &db,
        &["--json", "snapshot", "export", dest.to_str().unwrap()],
    );
    let swept: Vec<String> = json_of(&out)["swept"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            Path::new(p.as_str().unwrap())
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    for name in &leftovers {
        assert!(swept.contains(name), "{name} not swept: {swept:?}");
    }
    assert_eq!(temp_files(&snaps), Vec::<String>::new());
    assert_self_contained(&dest);
    // (Row count via SQL: `snapshot verify` hashes 96 MiB, slow in a debug build.)
    let conn = Connection::open_with_flags(&dest, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let rows: i64 = conn
        .query_row("SELECT count(*) FROM artifacts", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 97);
}

#[test]
fn sigint_or_sigterm_mid_copy_removes_the_temp_file_and_keeps_the_old_snapshot() {
    use std::os::unix::process::ExitStatusExt;
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db/state.db");
    let snaps = tmp.path().join("snaps");
    fs::create_dir_all(&snaps).unwrap();
    put_ok(&db, "small", serde_json::json!({"n": 1}));
    let dest = snaps.join("nightly.db");
    run_ok(&db, &["snapshot", "export", dest.to_str().unwrap()]);
    let old = fs::read(&dest).unwrap();
    fill(&db, 96);

    for sig in [libc::SIGINT, libc::SIGTERM] {
        let interrupted = (0..5).any(|_| match export_caught_mid_copy(&db, &snaps, &dest) {
            Some(mut child) => {
                signal(&child, sig);
                let status = wait_with_deadline(&mut child);
                // It dies of the signal, as before: a job runner sees 128 + N.
                assert_eq!(status.signal(), Some(sig), "{status:?}");
                true
            }
            None => {
                fs::write(&dest, &old).unwrap();
                false
            }
        });
        assert!(
            interrupted,
            "the export always finished before signal {sig}"
        );
        assert_eq!(
            temp_files(&snaps),
            Vec::<String>::new(),
            "signal {sig} left the temp file"
        );
        assert!(fs::read(&dest).unwrap() == old, "old snapshot changed");
    }
}

#[test]
fn a_backup_user_with_read_access_only_can_export() {
    use std::os::unix::fs::chown;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let db = data.join("state.db");
    put_ok(&db, "backed-up", serde_json::json!({"n": 1}));
    let dest = tmp.path().join("backups");
    fs::create_dir_all(&dest).unwrap();
    // The backup user may read the database (and write its destination), nothing more.
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(&data, fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(&db, fs::Permissions::from_mode(0o644)).unwrap();
    if unsafe { libc::geteuid() } == 0 {
        chown(&dest, Some(65534), Some(65534)).unwrap();
    }
    let export = |name: &str| {
        let mut cmd = command(&db);
        cmd.args(["--json", "snapshot", "export"])
            .arg(dest.join(name));
        crate::common::as_nobody(&mut cmd);
        cmd.output().unwrap()
    };

    // No process has the database open: no -shm to read through, and none can be created.
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    assert!(!Path::new(&wal).exists());
    let out = export("idle.db");
    assert!(
        out.status.success(),
        "export by a read-only user: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json_of(&out)["artifacts"], 1);
    assert_self_contained(&dest.join("idle.db"));

    // A process has it open (its -shm exists, readable): the export sees its last commit.
    let live = Connection::open(&db).unwrap();
    live.execute_batch("PRAGMA journal_mode=WAL").unwrap();
    put_ok(&db, "while-open", serde_json::json!({"n": 2}));
    let out = export("live.db");
    assert!(
        out.status.success(),
        "export by a read-only user while the database is open: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json_of(&out)["artifacts"], 2);
    drop(live);
    assert_eq!(
        fs::metadata(&db).unwrap().permissions().mode() & 0o777,
        0o644
    );
}

#[test]
fn retention_keeps_the_newest_n_and_leaves_unrelated_files() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db/state.db");
    let snaps = tmp.path().join("snaps");
    fs::create_dir_all(&snaps).unwrap();
    put_ok(&db, "a", serde_json::json!({}));
    let old = [
        "state-20200101T000000.000Z.db",
        "state-20210101T000000.000Z.db",
        "state-20220101T000000.000Z.db",
    ];
    for name in old {
        fs::write(snaps.join(name), b"old").unwrap();
    }
    let unrelated = [
        "notes.txt",
        "state.db.bak",
        "other-20190101T000000.000Z.db",
        "state-20190101T000000.000Z.db-journal",
        "state-pre-restore-20190101T000000.000Z.db",
    ];
    for name in unrelated {
        fs::write(snaps.join(name), b"keep me").unwrap();
    }
    fs::create_dir(snaps.join("state-20180101T000000.000Z.db")).unwrap();
    let names = |dir: &Path| {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let export = |keep: &str| {
        let out = run_ok(
            &db,
            &[
                "--json",
                "snapshot",
                "export",
                snaps.to_str().unwrap(),
                "--keep",
                keep,
            ],
        );
        let report = json_of(&out);
        let path = report["path"].as_str().unwrap().to_owned();
        let removed: Vec<String> = report["removed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                Path::new(p.as_str().unwrap())
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        (
            Path::new(&path)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned(),
            removed,
        )
    };

    let (first, removed) = export("3");
    assert_eq!(removed, vec![old[0].to_owned()]);
    let mut expected: Vec<String> = unrelated.iter().map(|s| s.to_string()).collect();
    expected.extend([old[1].to_owned(), old[2].to_owned(), first.clone()]);
    expected.push("state-20180101T000000.000Z.db".to_owned());
    expected.sort();
    assert_eq!(names(&snaps), expected);

    std::thread::sleep(Duration::from_millis(5));
    let (second, removed) = export("2");
    assert_eq!(
        removed,
        vec![old[1].to_owned(), old[2].to_owned()],
        "oldest first"
    );
    assert!(snaps.join(&first).exists() && snaps.join(&second).exists());

    // A snapshot named in the future sorts after the new one; the new one is still kept.
    fs::write(snaps.join("state-20990101T000000.000Z.db"), b"future").unwrap();
    let (third, removed) = export("1");
    assert_eq!(
        removed,
        vec![first, second, "state-20990101T000000.000Z.db".to_owned()]
    );
    assert!(snaps.join(&third).exists());
    for name in unrelated {
        assert_eq!(fs::read(snaps.join(name)).unwrap(), b"keep me");
    }
    assert!(snaps.join("state-20180101T000000.000Z.db").is_dir());

    let out = run(
        &db,
        &["snapshot", "export", snaps.to_str().unwrap(), "--keep", "0"],
    );
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn restore_round_trip_reaches_a_process_that_had_the_database_open() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db/state.db");
    let snap = tmp.path().join("snap.db");
    put_ok(&db, "a", serde_json::json!({"v": "a"}));
    put_ok(&db, "b", serde_json::json!({"v": "b1"}));

    // This test process is the "other process": it opens the store before the restore and
    // keeps it open throughout.
    let open = Store::open(&db, Options::default()).unwrap();
    assert!(open.contains(&digest("a")).unwrap());
    run_ok(&db, &["snapshot", "export", snap.to_str().unwrap()]);
    let at_snapshot = open.list().unwrap();

    run_ok(&db, &["artifact", "rm", digest("a").as_str()]);
    put_ok(&db, "b", serde_json::json!({"v": "b2"}));
    put_ok(&db, "c", serde_json::json!({"v": "c"}));
    assert!(!open.contains(&digest("a")).unwrap());
    let changed = open.list().unwrap();

    let out = run_ok(
        &db,
        &["--json", "snapshot", "restore", snap.to_str().unwrap()],
    );
    let report = json_of(&out);
    assert_eq!(report["restored"]["artifacts"], 2);
    let safety = PathBuf::from(report["safety_snapshot"].as_str().unwrap());
    assert_eq!(safety.parent(), db.parent());
    assert_self_contained(&safety);

    // The open store sees the restored state, row for row.
    assert_eq!(open.list().unwrap(), at_snapshot);
    let b = open.get(&digest("b")).unwrap().unwrap();
    assert!(String::from_utf8_lossy(b.as_bytes()).contains("b1"));
    assert!(!open.contains(&digest("c")).unwrap());
    // ... and can still write, and others see that.
    let envelope = open
        .envelope(br#"{"type":"Module","version":1,"state":{"v":"d"}}"#.to_vec())
        .unwrap();
    open.put(&digest("d"), &envelope).unwrap();
    let listed = json_of(&run_ok(&db, &["--json", "artifact", "ls"]));
    assert_eq!(listed.as_array().unwrap().len(), 3);

    // The safety snapshot holds the state the restore replaced; restoring it brings it back.
    let out = run_ok(
        &db,
        &[
            "--json",
            "snapshot",
            "restore",
            "--no-safety-snapshot",
            safety.to_str().unwrap(),
        ],
    );
    assert_eq!(json_of(&out)["safety_snapshot"], Value::Null);
    assert_eq!(open.list().unwrap(), changed);
    let pre_restore = fs::read_dir(db.parent().unwrap())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains("pre-restore")
        })
        .count();
    assert_eq!(pre_restore, 1, "--no-safety-snapshot still wrote one");
}

#[test]
fn snapshot_passes_the_sqlite3_shell_integrity_check() {
    let Ok(probe) = Command::new("sqlite3").arg("-version").output() else {
        eprintln!("sqlite3 shell not installed; skipping");
        return;
    };
    if !probe.status.success() {
        eprintln!("sqlite3 shell not usable; skipping");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db/state.db");
    put_ok(&db, "a", serde_json::json!({"v": 1}));
    let snap = tmp.path().join("snap.db");
    run_ok(&db, &["snapshot", "export", snap.to_str().unwrap()]);
    let out = Command::new("sqlite3")
        .arg(&snap)
        .arg("PRAGMA integrity_check; SELECT count(*) FROM artifacts;")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n1\n");
}

#[test]
fn export_refuses_the_live_database_as_destination() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db/state.db");
    put_ok(&db, "a", serde_json::json!({}));
    let ino = |p: &Path| std::os::unix::fs::MetadataExt::ino(&fs::metadata(p).unwrap());
    let (inode, listed) = (ino(&db), run_ok(&db, &["artifact", "ls"]).stdout);
    for dest in [
        db.clone(),
        tmp.path().join("db/./state.db"),
        tmp.path().join("db/state.db-wal"),
    ] {
        let out = run(&db, &["snapshot", "export", dest.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(6), "{}", dest.display());
    }
    assert_eq!(ino(&db), inode, "the live database was replaced");
    assert_eq!(run_ok(&db, &["artifact", "ls"]).stdout, listed);
}
