//! Command-line interface: clap definitions, one module per command group, output helpers and
//! the mapping from library errors to exit codes.

mod artifact;
mod batch;
mod child;
mod input;
mod lock;
mod lockfile;
mod mcp;
mod memory;
mod snapshot;

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use serde_json::json;

use modstate::{Error, Options, Result, Store, Synchronous};

/// A local, SQLite-backed store for module-state artifacts, agent memories and snapshots,
/// shared safely by many processes.
#[derive(Parser)]
#[command(name = "modstate", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Database file.
    #[arg(
        long,
        global = true,
        env = "MODSTATE_DB",
        default_value = ".modstate/state.db",
        value_name = "PATH"
    )]
    db: PathBuf,

    /// Print one JSON document on stdout instead of text.
    #[arg(long, global = true)]
    json: bool,

    /// Seconds to wait for a lock or a busy database before giving up (exit 5).
    #[arg(long, global = true, default_value_t = 30.0, value_name = "SECS", value_parser = parse_secs)]
    lock_timeout: f64,

    /// Commit durability: full (survives power loss) or normal (survives a crash of the process).
    #[arg(long, global = true, default_value = "full", value_name = "MODE", value_parser = ["full", "normal"])]
    synchronous: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create or migrate the database; print its path and schema version.
    Init,
    /// Module-state artifacts keyed by module source digest.
    #[command(subcommand)]
    Artifact(artifact::ArtifactCommand),
    /// Cross-process locks: who holds what; run a command under a lock.
    #[command(subcommand)]
    Lock(lock::LockCommand),
    /// The dagger.lock lookup lockfile: pinned image digests and git commits.
    Lockfile(lockfile::LockfileArgs),
    /// Agent memories: namespaced notes with ranked full-text search and a drift guard.
    #[command(subcommand)]
    Memory(memory::MemoryCommand),
    /// Consistent snapshots: export while writers keep writing, verify, restore.
    #[command(subcommand)]
    Snapshot(snapshot::SnapshotCommand),
    /// Serve agent memories and module state to an agent host over MCP (stdin/stdout).
    Mcp(mcp::McpArgs),
}

/// What every command gets: the parsed global options and a way to open the store.
pub struct Context {
    pub db: PathBuf,
    pub json: bool,
    pub lock_timeout: Duration,
    pub synchronous: Synchronous,
}

impl Context {
    /// Opens the store, creating the database if it does not exist: for commands that write.
    pub fn open(&self) -> Result<Store> {
        Store::open(&self.db, self.options())
    }

    /// Opens the store only if the database exists: for commands that only read, which must
    /// create nothing.
    pub fn open_existing(&self) -> Result<Store> {
        match Store::open_existing(&self.db, self.options()) {
            Err(Error::NotFound(_)) => Err(no_database(self)),
            other => other,
        }
    }

    fn options(&self) -> Options {
        Options {
            busy_timeout: self.lock_timeout,
            lock_timeout: self.lock_timeout,
            synchronous: self.synchronous,
            ..Options::default()
        }
    }
}

/// The error of a read-only command run where there is no database.
pub fn no_database(ctx: &Context) -> Error {
    Error::NotFound(format!(
        "no database at {} (run modstate init, or pass --db / MODSTATE_DB)",
        ctx.db.display()
    ))
}

/// Runs the command line and returns the process exit code.
pub fn main() -> i32 {
    let code = run();
    report_peak_rss();
    code
}

/// With `MODSTATE_REPORT_PEAK_RSS=1`, prints this process's peak resident set (VmHWM) on
/// stderr at exit, for the benchmarks: a parent cannot measure it reliably, because a child's
/// ru_maxrss includes the parent's memory when it was spawned with vfork semantics.
fn report_peak_rss() {
    if std::env::var_os("MODSTATE_REPORT_PEAK_RSS").is_none() {
        return;
    }
    if let Ok(status) = std::fs::read_to_string("/proc/self/status")
        && let Some(line) = status.lines().find(|l| l.starts_with("VmHWM:"))
    {
        eprintln!(
            "modstate: peak RSS {}",
            line.trim_start_matches("VmHWM:").trim()
        );
    }
}

fn run() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version are not errors, and help shown for a bare command is help.
        Err(e)
            if !e.use_stderr()
                || e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand =>
        {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
        Err(e) => {
            eprintln!("{}", usage_error_line(&e));
            return 2;
        }
    };
    let ctx = Context {
        db: cli.db,
        json: cli.json,
        lock_timeout: Duration::from_secs_f64(cli.lock_timeout),
        synchronous: if cli.synchronous == "normal" {
            Synchronous::Normal
        } else {
            Synchronous::Full
        },
    };
    let result = match cli.command {
        Command::Init => init(&ctx),
        Command::Artifact(cmd) => artifact::run(&ctx, cmd),
        Command::Lock(cmd) => lock::run(&ctx, cmd),
        Command::Lockfile(args) => lockfile::run(&ctx, args),
        Command::Memory(cmd) => memory::run(&ctx, cmd),
        Command::Snapshot(cmd) => snapshot::run(&ctx, cmd),
        Command::Mcp(args) => mcp::run(&ctx, args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", one_line(&e.to_string()));
            exit_code(&e)
        }
    }
}

/// An error is one line on stderr. Paths and user text inside a message may hold line breaks;
/// they are shown escaped.
pub fn one_line(text: &str) -> String {
    text.replace('\n', "\\n").replace('\r', "\\r")
}

/// Clap's usage errors span several lines (message, details, usage, a hint); folded into the
/// one line the CLI promises, with the usage kept.
fn usage_error_line(e: &clap::Error) -> String {
    let rendered = e.render().to_string();
    let mut message = String::new();
    let mut usage = None;
    for line in rendered.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(u) = line.strip_prefix("Usage: ") {
            usage = Some(u);
        } else if !line.starts_with("For more information") {
            if !message.is_empty() {
                message.push_str(if line.starts_with("tip:") { "; " } else { " " });
            }
            message.push_str(line);
        }
    }
    match usage {
        Some(usage) => format!("{message}; usage: {usage} (see --help)"),
        None => format!("{message} (see --help)"),
    }
}

/// The exit code of each error kind (see the table in README.md).
pub fn exit_code(error: &Error) -> i32 {
    match error {
        Error::Io { .. } | Error::Database { .. } => 1,
        Error::NotFound(_) => 3,
        Error::Conflict { .. } => 4,
        Error::Busy(_) => 5,
        Error::Invalid(_) | Error::Unsupported(_) => 6,
        Error::Integrity(_) => 7,
        // A kind added to the library later: a failure like any other.
        _ => 1,
    }
}

pub fn parse_secs(text: &str) -> std::result::Result<f64, String> {
    match text.parse::<f64>() {
        Ok(secs) if secs.is_finite() && (0.0..=86_400.0).contains(&secs) => Ok(secs),
        _ => Err(format!(
            "{text:?} is not a number of seconds between 0 and 86400"
        )),
    }
}

fn init(ctx: &Context) -> Result<i32> {
    let store = ctx.open()?;
    let path = store.path().display().to_string();
    if ctx.json {
        print_json(&json!({"path": path, "schema_version": store.schema_version()}))?;
    } else {
        print_text(&format!(
            "{path}\nschema version {}\n",
            store.schema_version()
        ))?;
    }
    Ok(0)
}

/// Prints one JSON document and a newline on stdout.
pub fn print_json(value: &impl serde::Serialize) -> Result<()> {
    let mut text = serde_json::to_vec(value)
        .map_err(|e| Error::Invalid(format!("cannot serialize output: {e}")))?;
    text.push(b'\n');
    print_bytes(&text)
}

pub fn print_text(text: &str) -> Result<()> {
    print_bytes(text.as_bytes())
}

/// Writes to stdout; a closed pipe (`| head`) is not worth a panic.
pub fn print_bytes(bytes: &[u8]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Error::io("writing to", "stdout", e)),
    }
}
