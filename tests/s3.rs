//! Snapshots that leave the machine: export, ls, verify and restore through a real
//! S3-compatible server (SeaweedFS, started per test on loopback ports), and the faults a
//! backup job meets there. Without `weed` on PATH these tests skip with one line, unless `CI`
//! is set.

use crate::common::stderr;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{SeaweedFs, fill};
use serde_json::Value;

const BUCKET: &str = "backups";

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_modstate")
}

/// One test's world: a database, a private TMPDIR (where remote exports stage their copy),
/// and the server.
struct World {
    server: SeaweedFs,
    dir: tempfile::TempDir,
}

impl World {
    fn start() -> Option<World> {
        let server = SeaweedFs::start(&[BUCKET])?;
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("tmp")).unwrap();
        Some(World { server, dir })
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("db/state.db")
    }

    fn tmp(&self) -> PathBuf {
        self.dir.path().join("tmp")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin());
        self.server.s3_env(&mut cmd);
        cmd.env("TMPDIR", self.tmp())
            .current_dir(self.dir.path())
            .arg("--db")
            .arg(self.db())
            .args(args);
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    fn run_ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "modstate {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn ls(&self, url: &str) -> Vec<Value> {
        let out = self.run_ok(&["--json", "snapshot", "ls", url]);
        serde_json::from_slice::<Value>(&out.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    }

    fn memory_add(&self, text: &str) {
        self.run_ok(&["memory", "add", text]);
    }

    /// What the database holds, as the CLI shows it.
    fn contents(&self) -> String {
        let memories = self.run_ok(&["memory", "ls"]);
        let artifacts = self.run_ok(&["artifact", "ls"]);
        format!(
            "{}\n{}",
            String::from_utf8_lossy(&memories.stdout),
            String::from_utf8_lossy(&artifacts.stdout)
        )
    }

    fn temp_files(&self) -> Vec<String> {
        fs::read_dir(self.tmp())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".modstate-snapshot-"))
            .collect()
    }

    /// The files beside the database (a failed restore must not even leave a safety snapshot).
    fn db_dir_files(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.db().parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.ends_with("-wal") && !n.ends_with("-shm"))
            .collect();
        names.sort();
        names
    }

    /// A client of the bucket for the test itself: to tamper with objects as bit rot or an
    /// attacker would.
    fn bucket(&self) -> (tokio::runtime::Runtime, object_store::aws::AmazonS3) {
        let store = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(BUCKET)
            .with_region("us-east-1")
            .with_endpoint(&self.server.endpoint)
            .with_allow_http(true)
            .with_access_key_id(crate::common::S3_ACCESS_KEY)
            .with_secret_access_key(crate::common::S3_SECRET_KEY)
            .build()
            .unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        (runtime, store)
    }
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A failure says one line, with the given exit code.
fn assert_fails(out: &Output, exit: i32, says: &str) {
    let err = stderr(out);
    assert_eq!(code(out), exit, "{err}");
    assert_eq!(err.lines().count(), 1, "not one line: {err}");
    assert!(err.contains(says), "{err:?} does not say {says:?}");
}

#[test]
fn export_ls_verify_restore_round_trip_through_seaweedfs() {
    let Some(world) = World::start() else { return };
    world.memory_add("before the snapshot");
    let out = world.run_ok(&["--json", "snapshot", "export", "s3://backups/team/"]);
    let report = json_of(&out);
    let first = report["path"].as_str().unwrap().to_owned();
    assert!(
        first.starts_with("s3://backups/team/state-") && first.ends_with(".db"),
        "{first}"
    );
    assert_eq!(report["memories"], 1);
    assert!(
        world.temp_files().is_empty(),
        "temp left: {:?}",
        world.temp_files()
    );
    // Nothing local was written under a directory named like the URL.
    assert!(!world.dir.path().join("s3:").exists());

    let listed = world.ls("s3://backups/team/");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["location"], first.as_str());
    assert_eq!(listed[0]["bytes"], report["bytes"]);

    let verified = json_of(&world.run_ok(&["--json", "snapshot", "verify", &first]));
    assert_eq!(verified["path"], first.as_str());
    assert_eq!(verified["memories"], 1);

    // Restore brings back exactly the exported state.
    let at_export = world.contents();
    world.memory_add("after the snapshot");
    assert_ne!(world.contents(), at_export);
    let restored = json_of(&world.run_ok(&["--json", "snapshot", "restore", &first]));
    assert_eq!(restored["restored"]["path"], first.as_str());
    assert_eq!(world.contents(), at_export);

    // --keep on a remote prefix: the newest N of this database's snapshots remain; objects
    // of another name pattern are left alone.
    world.run_ok(&[
        "snapshot",
        "export",
        "s3://backups/team/other-20200101T000000.000Z.db",
    ]);
    let mut newest = String::new();
    for _ in 0..3 {
        let out = world.run_ok(&[
            "--json",
            "snapshot",
            "export",
            "s3://backups/team/",
            "--keep",
            "2",
        ]);
        newest = json_of(&out)["path"].as_str().unwrap().to_owned();
    }
    let names: Vec<String> = world
        .ls("s3://backups/team/")
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert_eq!(names[0], "other-20200101T000000.000Z.db");
    assert!(newest.ends_with(&names[2]), "{newest} vs {names:?}");
    assert!(!names.iter().any(|n| first.ends_with(n)), "{names:?}");

    // A prefix means its newest snapshot.
    let verified = json_of(&world.run_ok(&["--json", "snapshot", "verify", "s3://backups/team/"]));
    assert_eq!(verified["path"], newest.as_str());

    // From a prefix, restore takes this database's newest snapshot, never another
    // database's that happens to be newer.
    world.run_ok(&[
        "snapshot",
        "export",
        "s3://backups/team/zzz-20991231T000000.000Z.db",
    ]);
    let restored = json_of(&world.run_ok(&["--json", "snapshot", "restore", "s3://backups/team/"]));
    assert_eq!(restored["restored"]["path"], newest.as_str());

    // An explicit key is put-if-absent: never overwritten.
    world.run_ok(&["snapshot", "export", "s3://backups/fixed/nightly.db"]);
    world.memory_add("changes the next snapshot");
    let again = world.run(&["snapshot", "export", "s3://backups/fixed/nightly.db"]);
    assert_fails(&again, 6, "already exists");
    let kept = json_of(&world.run_ok(&[
        "--json",
        "snapshot",
        "verify",
        "s3://backups/fixed/nightly.db",
    ]));
    assert_eq!(kept["memories"], 1);
    assert!(world.temp_files().is_empty(), "{:?}", world.temp_files());
}

#[test]
fn a_large_snapshot_goes_up_in_parts_and_comes_back_whole() {
    let Some(world) = World::start() else { return };
    fill(&world.db(), 24);
    let out = world.run_ok(&["--json", "snapshot", "export", "s3://backups/big/"]);
    let report = json_of(&out);
    assert!(report["bytes"].as_u64().unwrap() > 24 * 1024 * 1024);
    let url = report["path"].as_str().unwrap().to_owned();
    let listed = world.ls("s3://backups/big/");
    assert_eq!(listed[0]["bytes"], report["bytes"]);
    let verified = json_of(&world.run_ok(&["--json", "snapshot", "verify", &url]));
    assert_eq!(verified["artifacts"], 24);
    assert_eq!(verified["pages"], report["pages"]);
}

/// `(name, environment change, bucket, exit code, what the one line says)`.
type Fault = (
    &'static str,
    Box<dyn Fn(&mut Command)>,
    &'static str,
    i32,
    &'static str,
);

#[test]
fn unreachable_endpoint_missing_bucket_and_wrong_credentials_fail_cleanly() {
    let Some(world) = World::start() else { return };
    world.memory_add("precious");
    world.run_ok(&["snapshot", "export", "s3://backups/team/"]);
    let before = world.contents();
    let files_before = world.db_dir_files();
    let objects_before = world.ls("s3://backups/team/");

    // Each fault, for each command that talks to the server.
    let closed_port = crate::common::free_port();
    let faults: Vec<Fault> = vec![
        (
            "unreachable endpoint",
            Box::new(move |cmd: &mut Command| {
                cmd.env(
                    "AWS_ENDPOINT_URL",
                    format!("http://127.0.0.1:{closed_port}"),
                );
            }),
            "backups",
            1,
            "cannot reach the S3 endpoint",
        ),
        (
            "missing bucket",
            Box::new(|_: &mut Command| {}),
            "no-such-bucket",
            3,
            "bucket no-such-bucket does not exist",
        ),
        (
            "wrong credentials",
            Box::new(|cmd: &mut Command| {
                cmd.env("AWS_SECRET_ACCESS_KEY", "not-the-secret");
            }),
            "backups",
            1,
            "refused the credentials",
        ),
    ];
    for (fault, setup, bucket, exit, says) in &faults {
        let prefix = format!("s3://{bucket}/team/");
        for args in [
            vec!["snapshot", "export", prefix.as_str()],
            vec!["snapshot", "ls", prefix.as_str()],
            vec!["snapshot", "verify", prefix.as_str()],
            vec!["snapshot", "restore", prefix.as_str()],
        ] {
            let mut cmd = world.command(&args);
            setup(&mut cmd);
            let started = Instant::now();
            let out = cmd.output().unwrap();
            let err = stderr(&out);
            assert_eq!(code(&out), *exit, "{fault}, {args:?}: {err}");
            assert_eq!(err.lines().count(), 1, "{fault}, {args:?}: {err}");
            assert!(err.contains(says), "{fault}, {args:?}: {err}");
            // Fails in seconds, not after minutes of retries.
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{fault}: too slow"
            );
        }
        assert!(
            world.temp_files().is_empty(),
            "{fault}: {:?}",
            world.temp_files()
        );
    }
    assert_eq!(world.contents(), before);
    assert_eq!(world.db_dir_files(), files_before);
    assert_eq!(world.ls("s3://backups/team/"), objects_before);
    assert!(world.ls("s3://backups/").is_empty());
}

#[test]
fn a_corrupted_object_is_refused_before_verify_or_restore_trusts_it() {
    let Some(world) = World::start() else { return };
    world.memory_add("the good state");
    let out = world.run_ok(&["--json", "snapshot", "export", "s3://backups/team/"]);
    let url = json_of(&out)["path"].as_str().unwrap().to_owned();
    let key = url.strip_prefix("s3://backups/").unwrap().to_owned();
    world.memory_add("the live state");
    let before = world.contents();
    let files_before = world.db_dir_files();

    // Flip one byte in a page SQLite would not notice on its own (inside the free space of
    // a leaf page) and keep the metadata: only the sha256 can tell.
    use object_store::{ObjectStore, ObjectStoreExt, PutOptions};
    let (runtime, bucket) = world.bucket();
    let path = object_store::path::Path::from(key.as_str());
    let (mut bytes, attributes) = runtime.block_on(async {
        let got = bucket.get(&path).await.unwrap();
        let attributes = got.attributes.clone();
        (got.bytes().await.unwrap().to_vec(), attributes)
    });
    assert!(
        attributes
            .get(&object_store::Attribute::Metadata("sha256".into()))
            .is_some(),
        "uploaded without its sha256: {attributes:?}"
    );
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    runtime.block_on(async {
        let options = PutOptions {
            attributes,
            ..PutOptions::default()
        };
        bucket.put_opts(&path, bytes.into(), options).await.unwrap();
    });
    let verify = world.run(&["snapshot", "verify", &url]);
    assert_fails(&verify, 7, "is corrupted");
    let restore = world.run(&["snapshot", "restore", &url]);
    assert_fails(&restore, 7, "is corrupted");
    assert_eq!(world.contents(), before);
    assert_eq!(
        world.db_dir_files(),
        files_before,
        "a failed restore left files"
    );

    // An object without the sha256 cannot be checked, so it is not trusted either.
    let bare = object_store::path::Path::from("team/state-20200101T000000.000Z.db");
    let good = fs::read(world.db()).unwrap();
    runtime.block_on(async { bucket.put(&bare, good.into()).await.unwrap() });
    let verify = world.run(&[
        "snapshot",
        "verify",
        "s3://backups/team/state-20200101T000000.000Z.db",
    ]);
    assert_fails(&verify, 7, "carries no sha256");
    assert!(world.temp_files().is_empty(), "{:?}", world.temp_files());
}

/// Whether SeaweedFS has a multipart upload in progress in the bucket (its filer keeps them
/// under `/buckets/<bucket>/.uploads/`).
fn upload_in_progress(filer: &str) -> bool {
    let host = filer.strip_prefix("http://").unwrap();
    let Ok(mut stream) = TcpStream::connect(host) else {
        return false;
    };
    let request = format!(
        "GET /buckets/{BUCKET}/.uploads/ HTTP/1.0\r\nHost: {host}\r\nAccept: application/json\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.contains("\"FullPath\"")
}

#[test]
fn sigkill_mid_upload_leaves_no_object_under_the_final_name() {
    let Some(world) = World::start() else { return };
    fill(&world.db(), 48);
    let before = world.contents();

    let mut caught = false;
    for _ in 0..5 {
        let mut child: Child = world
            .command(&["--json", "snapshot", "export", "s3://backups/team/"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut finished = false;
        while !upload_in_progress(&world.server.filer) {
            if child.try_wait().unwrap().is_some() {
                finished = true;
                break;
            }
            assert!(Instant::now() < deadline, "the upload never started");
            std::thread::sleep(Duration::from_millis(2));
        }
        if finished {
            // Too fast to catch: remove what it uploaded and try again.
            let (runtime, bucket) = world.bucket();
            use object_store::ObjectStoreExt;
            for entry in world.ls("s3://backups/team/") {
                let key = entry["location"]
                    .as_str()
                    .unwrap()
                    .strip_prefix("s3://backups/")
                    .unwrap()
                    .to_owned();
                runtime
                    .block_on(bucket.delete(&object_store::path::Path::from(key)))
                    .unwrap();
            }
            continue;
        }
        // SAFETY: signalling our own child by pid.
        assert_eq!(
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) },
            0
        );
        assert!(!child.wait().unwrap().success());
        caught = true;
        break;
    }
    assert!(
        caught,
        "the upload always finished before it could be killed"
    );

    // Parts were sent, but no object exists under any name.
    assert!(world.ls("s3://backups/team/").is_empty());
    let verify = world.run(&["snapshot", "verify", "s3://backups/team/"]);
    assert_fails(&verify, 3, "no snapshot under");
    assert_eq!(world.contents(), before);
    let leftovers = world.temp_files();
    assert!(!leftovers.is_empty(), "the killed export left no temp file");

    // The next export sweeps the killed one's temp file and ships a whole snapshot.
    let out = world.run_ok(&["--json", "snapshot", "export", "s3://backups/team/"]);
    let report = json_of(&out);
    let swept: Vec<String> = report["swept"]
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
    assert!(world.temp_files().is_empty());
    let url = report["path"].as_str().unwrap();
    let verified = json_of(&world.run_ok(&["--json", "snapshot", "verify", url]));
    assert_eq!(verified["artifacts"], 48);
}
