//! A throwaway PostgreSQL cluster the tests start themselves: `initdb` into a temp dir, then the
//! `postgres` binary on 127.0.0.1 and a Unix socket in that dir, with `fsync=off`.
//!
//! - The binaries come from `pg_config --bindir` (Debian keeps them off PATH), or, for the
//!   clusters with pgvector (`shared_vector`, `private_vector`), from `common::pgvector`. When they are
//!   missing, outside CI one line per test process says the PostgreSQL tests were skipped and
//!   how to enable them, and [`Cluster::shared`] returns `None`; with `CI` set it panics.
//! - One shared cluster per test process ([`Cluster::shared`]), started on first use; each test
//!   takes a fresh empty database from it ([`Cluster::database`]), so tests stay isolated. A test
//!   that restarts or stops its server takes a private cluster ([`Cluster::private`]) instead.
//! - As root (CI), `initdb` and `postgres` run as the `postgres` system user, which owns the
//!   temp dir.
//! - The server is started directly (not through `pg_ctl`) from a dedicated thread that lives
//!   as long as the cluster, with a parent-death signal: PR_SET_PDEATHSIG fires when the
//!   *thread* that spawned the child ends, and libtest ends each test's thread with the test.
//!   A test process that is killed takes its servers with it; one that exits normally stops the
//!   shared server and removes its dir from an `atexit` handler.
//!
//! Authentication (`pg_hba.conf`): the superuser `postgres` and every role connect without a
//! password over the Unix socket and over TCP, except the role [`PW_USER`], which over TCP must
//! give the password [`PW_PASSWORD`] (scram-sha-256); wrong-password tests use it.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The role whose TCP logins need a password (scram-sha-256); it may create databases.
#[allow(dead_code)]
pub const PW_USER: &str = "pwuser";
/// [`PW_USER`]'s password. Distinctive, so a test can check it never shows in any output.
#[allow(dead_code)]
pub const PW_PASSWORD: &str = "Sekr1t-pw-7f3c";

/// How to install the server binaries, for the skip line and the CI panic.
const INSTALL: &str = "apt-get install postgresql postgresql-contrib";

/// The PostgreSQL server binaries (`pg_config --bindir`), or `None` when there are none and
/// this is not CI (one stderr line per test process says so); panics in CI.
#[allow(dead_code)]
pub fn bindir() -> Option<PathBuf> {
    static BINDIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    BINDIR
        .get_or_init(|| {
            let found = Command::new("pg_config")
                .arg("--bindir")
                .stderr(Stdio::null())
                .output()
                .ok()
                .filter(|out| out.status.success())
                .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
                .filter(|dir| {
                    ["initdb", "postgres", "psql"]
                        .iter()
                        .all(|b| dir.join(b).is_file())
                });
            if found.is_none() {
                if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
                    panic!(
                        "no PostgreSQL server binaries (pg_config --bindir), and CI is set: the PostgreSQL tests must run in CI ({INSTALL})"
                    );
                }
                let line = format!(
                    "note: PostgreSQL tests skipped: no PostgreSQL server binaries (pg_config --bindir); enable them with `{INSTALL}` (with CI set they fail instead)\n"
                );
                let _ = std::io::stderr().write_all(line.as_bytes());
            }
            found
        })
        .clone()
}

/// The uid and gid the server runs as: the `postgres` system user when we are root (the
/// server refuses to run as root), else nobody in particular (`None`: ourselves).
fn server_user() -> Option<(libc::uid_t, libc::gid_t)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let name = std::ffi::CString::new("postgres").unwrap();
    // SAFETY: getpwnam with a valid C string; the record is copied out at once, and the tests
    // call nothing else that uses the static buffer concurrently with cluster start.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    assert!(
        !pw.is_null(),
        "running as root, but there is no `postgres` system user to run the server as ({INSTALL} creates it)"
    );
    // SAFETY: pw is non-null and points at a valid passwd record.
    unsafe { Some(((*pw).pw_uid, (*pw).pw_gid)) }
}

/// Makes `cmd` run as `user` (when given).
fn run_as(cmd: &mut Command, user: Option<(libc::uid_t, libc::gid_t)>) {
    // std drops the supplementary groups itself when root sets a uid (pre_exec hooks run
    // after the switch, too late for that).
    if let Some((uid, gid)) = user {
        cmd.uid(uid).gid(gid);
    }
}

fn chown(path: &Path, user: Option<(libc::uid_t, libc::gid_t)>) {
    if let Some((uid, gid)) = user {
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("chown to postgres");
    }
}

/// What the keeper thread is asked to do.
enum Request {
    /// Start the server; answer its pid, or the end of its log when it did not come up.
    Start(mpsc::Sender<Result<u32, String>>),
    /// Stop the server (fast shutdown, SIGINT), waiting until it has exited.
    Stop(mpsc::Sender<()>),
    /// Stop the server and end the thread.
    Quit(mpsc::Sender<()>),
}

/// A running PostgreSQL cluster (see the module docs).
#[allow(dead_code)]
pub struct Cluster {
    bindir: PathBuf,
    /// The Unix-socket directory (`host=` in a URL).
    pub socket_dir: PathBuf,
    /// The TCP port on 127.0.0.1, which also names the Unix socket.
    pub port: u16,
    /// `SHOW server_version`.
    pub version: String,
    /// A scratch directory removed with the cluster: the working directory of the commands a
    /// test runs, so nothing they might create lands in the source tree.
    pub scratch: PathBuf,
    root: PathBuf,
    keeper: Mutex<mpsc::Sender<Request>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Whether `root` is removed when the cluster stops (the shared one's `atexit`, or Drop).
    shared: bool,
}

static NEXT_DB: AtomicUsize = AtomicUsize::new(0);

#[allow(dead_code)]
impl Cluster {
    /// The test process's cluster, started on first use; `None` when PostgreSQL is not
    /// installed and this is not CI.
    pub fn shared() -> Option<&'static Cluster> {
        static SHARED: OnceLock<Cluster> = OnceLock::new();
        extern "C" fn stop_shared() {
            if let Some(cluster) = SHARED.get() {
                cluster.shutdown();
            }
        }
        Some(Cluster::shared_in(&SHARED, bindir()?, "", stop_shared))
    }

    /// The test process's cluster of a PostgreSQL with pgvector (`common::pgvector`), started
    /// on first use; `None` when that is not installed and this is not CI.
    pub fn shared_vector() -> Option<&'static Cluster> {
        static SHARED: OnceLock<Cluster> = OnceLock::new();
        extern "C" fn stop_shared() {
            if let Some(cluster) = SHARED.get() {
                cluster.shutdown();
            }
        }
        Some(Cluster::shared_in(
            &SHARED,
            super::pgvector::bindir()?,
            "pgvector ",
            stop_shared,
        ))
    }

    /// The cluster in `cell`, started from `bindir` on first use and stopped by `stop` (which
    /// shuts down what `cell` holds) when the process exits.
    fn shared_in(
        cell: &'static OnceLock<Cluster>,
        bindir: PathBuf,
        what: &str,
        stop: extern "C" fn(),
    ) -> &'static Cluster {
        cell.get_or_init(|| {
            let cluster = Cluster::start(bindir, true);
            let line = format!(
                "note: PostgreSQL {what}tests use PostgreSQL {} at {}\n",
                cluster.version,
                cluster.socket_dir.display()
            );
            let _ = std::io::stderr().write_all(line.as_bytes());
            // SAFETY: registering a plain extern "C" fn.
            unsafe { libc::atexit(stop) };
            cluster
        })
    }

    /// A cluster of the caller's own, for tests that restart or stop the server; stopped and
    /// removed when dropped (also when the test panics).
    pub fn private() -> Option<Cluster> {
        Some(Cluster::start(bindir()?, false))
    }

    /// [`Cluster::private`] of the PostgreSQL with pgvector.
    pub fn private_vector() -> Option<Cluster> {
        Some(Cluster::start(super::pgvector::bindir()?, false))
    }

    fn start(bindir: PathBuf, shared: bool) -> Cluster {
        let user = server_user();
        let root = tempfile::Builder::new()
            .prefix("modstate-pg-")
            .tempdir()
            .expect("temp dir")
            .keep();
        // Others may pass through (a test may run modstate as nobody); the data dir stays 0700.
        std::fs::set_permissions(&root, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        chown(&root, user);
        let data = root.join("data");
        let socket_dir = root.join("sock");
        std::fs::create_dir(&socket_dir).unwrap();
        chown(&socket_dir, user);

        let mut initdb = Command::new(bindir.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args([
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
                "-U",
                "postgres",
                "--auth=trust",
            ])
            .current_dir(&root)
            .stdin(Stdio::null());
        run_as(&mut initdb, user);
        let out = initdb.output().expect("spawn initdb");
        assert!(
            out.status.success(),
            "initdb failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // Trust everywhere except PW_USER over TCP (first match wins).
        let hba = format!(
            "local all all trust\nhost all {PW_USER} 127.0.0.1/32 scram-sha-256\nhost all all 127.0.0.1/32 trust\n"
        );
        std::fs::write(data.join("pg_hba.conf"), hba).unwrap();
        chown(&data.join("pg_hba.conf"), user);

        let mut last = String::new();
        for _attempt in 0..3 {
            let port = super::free_port();
            let (keeper, thread) = spawn_keeper(&bindir, &data, &socket_dir, &root, port, user);
            let (tx, rx) = mpsc::channel();
            keeper.send(Request::Start(tx)).unwrap();
            match rx.recv().unwrap() {
                Ok(_pid) => {
                    let mut cluster = Cluster {
                        bindir,
                        socket_dir,
                        port,
                        version: String::new(),
                        scratch: root.join("scratch"),
                        root,
                        keeper: Mutex::new(keeper),
                        thread: Mutex::new(Some(thread)),
                        shared,
                    };
                    std::fs::create_dir(&cluster.scratch).unwrap();
                    cluster.version = cluster
                        .psql_query("postgres", "SHOW server_version")
                        .trim()
                        .to_owned();
                    cluster.psql_exec(
                        "postgres",
                        &format!("CREATE ROLE {PW_USER} LOGIN CREATEDB PASSWORD '{PW_PASSWORD}'"),
                    );
                    return cluster;
                }
                Err(log) => {
                    last = log;
                    let (tx, rx) = mpsc::channel();
                    let _ = keeper.send(Request::Quit(tx));
                    let _ = rx.recv();
                    let _ = thread.join();
                }
            }
        }
        panic!("PostgreSQL did not start; its log ends with:\n{last}");
    }

    fn ask(&self, make: impl FnOnce(mpsc::Sender<()>) -> Request) {
        let (tx, rx) = mpsc::channel();
        let keeper = self.keeper.lock().unwrap_or_else(|e| e.into_inner());
        if keeper.send(make(tx)).is_ok() {
            let _ = rx.recv();
        }
    }

    /// Stops the server (fast shutdown: SIGINT) and waits until it has exited.
    pub fn stop(&self) {
        self.ask(Request::Stop);
    }

    /// Starts the server again on the same port and data dir, and waits until it accepts
    /// connections.
    pub fn start_again(&self) {
        let (tx, rx) = mpsc::channel();
        self.keeper
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(Request::Start(tx))
            .unwrap();
        if let Err(log) = rx.recv().unwrap() {
            panic!("PostgreSQL did not start again; its log ends with:\n{log}");
        }
    }

    /// Stops the server (fast shutdown) and starts it again on the same port and data dir.
    pub fn restart(&self) {
        self.stop();
        self.start_again();
    }

    /// Turns TLS on (the server starts without it): a throwaway CA signs a certificate for
    /// `localhost` (and no address), the server reloads with it. Returns the CA's certificate,
    /// for `sslrootcert`. Needs the `openssl` command.
    pub fn enable_tls(&self) -> PathBuf {
        let dir = self.root.join("tls");
        std::fs::create_dir_all(&dir).unwrap();
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(&dir)
                .output()
                .expect("run openssl");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let key = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        openssl(
            &[
                &["req", "-x509"][..],
                &key,
                &["-keyout", "ca.key", "-out", "ca.crt"],
            ]
            .concat()
            .into_iter()
            .chain(["-subj", "/CN=modstate test CA", "-days", "2"])
            .collect::<Vec<_>>(),
        );
        openssl(
            &[
                &["req"][..],
                &key,
                &["-keyout", "server.key", "-out", "server.csr"],
            ]
            .concat()
            .into_iter()
            .chain(["-subj", "/CN=localhost"])
            .collect::<Vec<_>>(),
        );
        std::fs::write(
            dir.join("server.ext"),
            "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ]);
        let user = server_user();
        for file in ["server.crt", "server.key"] {
            chown(&dir.join(file), user);
        }
        std::fs::set_permissions(
            dir.join("server.key"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        chown(&dir, user);
        self.psql_exec(
            "postgres",
            &format!(
                "ALTER SYSTEM SET ssl_cert_file = '{}'",
                dir.join("server.crt").display()
            ),
        );
        self.psql_exec(
            "postgres",
            &format!(
                "ALTER SYSTEM SET ssl_key_file = '{}'",
                dir.join("server.key").display()
            ),
        );
        self.psql_exec("postgres", "ALTER SYSTEM SET ssl = on");
        self.psql_exec("postgres", "SELECT pg_reload_conf()");
        // The reload is asynchronous: wait until the server says TLS is on.
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.psql_query("postgres", "SHOW ssl").trim() != "on" {
            assert!(Instant::now() < deadline, "TLS never came on");
            std::thread::sleep(Duration::from_millis(50));
        }
        dir.join("ca.crt")
    }

    fn shutdown(&self) {
        self.ask(Request::Quit);
        if let Some(thread) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = thread.join();
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }

    /// `psql` as the superuser over the Unix socket, on database `db`, failing on any error.
    fn psql(&self, db: &str) -> Command {
        let mut cmd = Command::new(self.bindir.join("psql"));
        clear_pg_env(&mut cmd);
        cmd.arg("-h")
            .arg(&self.socket_dir)
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-U", "postgres", "-d", db])
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `sql` as the superuser on database `db`; panics with psql's message on failure.
    pub fn psql_exec(&self, db: &str, sql: &str) {
        self.psql_query(db, sql);
    }

    /// Runs `sql` as the superuser on database `db` and returns its unaligned, tuples-only
    /// output; panics with psql's message on failure.
    pub fn psql_query(&self, db: &str, sql: &str) -> String {
        let out = self.psql_output(db, sql);
        assert!(
            out.status.success(),
            "psql {sql:?} on {db} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `sql` as the superuser on database `db` and returns psql's output, failed or not.
    pub fn psql_output(&self, db: &str, sql: &str) -> Output {
        self.psql(db)
            .arg("-c")
            .arg(sql)
            .output()
            .expect("spawn psql")
    }

    /// A `psql` session as the superuser on `db` that reads SQL from its piped stdin (for
    /// holding a transaction open while a test runs something else).
    pub fn psql_session(&self, db: &str) -> Child {
        self.psql(db)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn psql")
    }

    /// A fresh, empty database owned by the superuser; its name.
    pub fn database(&self) -> String {
        let name = format!(
            "t_{}_{}",
            std::process::id(),
            NEXT_DB.fetch_add(1, Ordering::Relaxed)
        );
        self.psql_exec("postgres", &format!("CREATE DATABASE {name}"));
        name
    }

    /// A fresh, empty database owned by `owner` (so that role may create its tables); its name.
    pub fn database_owned_by(&self, owner: &str) -> String {
        let name = format!(
            "t_{}_{}",
            std::process::id(),
            NEXT_DB.fetch_add(1, Ordering::Relaxed)
        );
        self.psql_exec("postgres", &format!("CREATE DATABASE {name} OWNER {owner}"));
        name
    }

    /// A Unix-socket URL for database `db` as the superuser (no password).
    pub fn socket_url(&self, db: &str) -> String {
        format!(
            "postgres://postgres@/{db}?host={}&port={}",
            percent_encode(&self.socket_dir.to_string_lossy()),
            self.port
        )
    }

    /// A TCP URL (127.0.0.1, no TLS) for database `db` as the superuser (no password).
    pub fn tcp_url(&self, db: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{db}?sslmode=disable",
            self.port
        )
    }

    /// A TCP URL for database `db` as [`PW_USER`] with `password`.
    pub fn password_url(&self, db: &str, password: &str) -> String {
        format!(
            "postgres://{PW_USER}:{}@127.0.0.1:{}/{db}?sslmode=disable",
            percent_encode(password),
            self.port
        )
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if !self.shared {
            self.shutdown();
        }
    }
}

/// Removes the `PG*` variables of the caller's environment from `cmd`, so only what a test
/// gives reaches psql or modstate.
#[allow(dead_code)]
pub fn clear_pg_env(cmd: &mut Command) {
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("PG") {
            cmd.env_remove(name);
        }
    }
}

/// Percent-encodes everything but unreserved characters (for a URL's host or password).
pub fn percent_encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The thread that starts and stops one cluster's server and lives as long as the cluster, so
/// the server's parent-death signal fires only when the cluster is gone or the process ends.
fn spawn_keeper(
    bindir: &Path,
    data: &Path,
    socket_dir: &Path,
    root: &Path,
    port: u16,
    user: Option<(libc::uid_t, libc::gid_t)>,
) -> (mpsc::Sender<Request>, std::thread::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel::<Request>();
    let postgres = bindir.join("postgres");
    let psql = bindir.join("psql");
    let data = data.to_owned();
    let socket_dir = socket_dir.to_owned();
    let log = root.join("server.log");
    let thread = std::thread::Builder::new()
        .name(format!("postgres-{port}"))
        .spawn(move || {
            let mut child: Option<Child> = None;
            let stop = |child: &mut Option<Child>| {
                if let Some(mut c) = child.take() {
                    // SAFETY: signalling our own child by pid.
                    unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGINT) };
                    let deadline = Instant::now() + Duration::from_secs(20);
                    while c.try_wait().ok().flatten().is_none() {
                        if Instant::now() > deadline {
                            // Immediate shutdown, then the hard way.
                            unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGQUIT) };
                            std::thread::sleep(Duration::from_secs(2));
                            let _ = c.kill();
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    let _ = c.wait();
                }
            };
            for request in rx {
                match request {
                    Request::Start(reply) => {
                        stop(&mut child);
                        let result =
                            start_server(&postgres, &psql, &data, &socket_dir, &log, port, user);
                        let _ = reply.send(result.as_ref().map(|c| c.id()).map_err(Clone::clone));
                        child = result.ok();
                    }
                    Request::Stop(reply) => {
                        stop(&mut child);
                        let _ = reply.send(());
                    }
                    Request::Quit(reply) => {
                        stop(&mut child);
                        let _ = reply.send(());
                        return;
                    }
                }
            }
            stop(&mut child);
        })
        .expect("spawn the postgres keeper thread");
    (tx, thread)
}

/// Starts `postgres` and waits (up to 30 s) until it answers a query over the socket.
fn start_server(
    postgres: &Path,
    psql: &Path,
    data: &Path,
    socket_dir: &Path,
    log_path: &Path,
    port: u16,
    user: Option<(libc::uid_t, libc::gid_t)>,
) -> Result<Child, String> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .expect("server log");
    let mut cmd = Command::new(postgres);
    cmd.arg("-D")
        .arg(data)
        .arg("-k")
        .arg(socket_dir)
        .args(["-c", "listen_addresses=127.0.0.1", "-p"])
        .arg(port.to_string())
        .args([
            "-c",
            "fsync=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "max_connections=200",
        ])
        .current_dir(data.parent().unwrap())
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("server log"))
        .stderr(log);
    clear_pg_env(&mut cmd);
    run_as(&mut cmd, user);
    // SAFETY: prctl is async-signal-safe; nothing else runs before exec. SIGQUIT is the
    // server's immediate shutdown: it takes its backends down with it.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGQUIT) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| format!("spawn postgres: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut probe = Command::new(psql);
        clear_pg_env(&mut probe);
        let ready = probe
            .arg("-h")
            .arg(socket_dir)
            .arg("-p")
            .arg(port.to_string())
            .args([
                "-U", "postgres", "-d", "postgres", "-X", "-q", "-c", "SELECT 1",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ready {
            return Ok(child);
        }
        let exited = child.try_wait().ok().flatten().is_some();
        if exited || Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let text = std::fs::read_to_string(log_path).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(20).collect();
            return Err(tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
