//! Command-line interface: clap definitions, one module per command group, output helpers and
//! the mapping from library errors to exit codes.

mod admin;
mod argv;
mod artifact;
mod batch;
mod child;
mod embedder;
mod global;
mod help;
mod input;
mod lock;
mod lockfile;
mod mcp;
mod memory;
mod output;
mod serve;
mod snapshot;
mod token;

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use modstate::{Error, Options, Result, Store, Synchronous};

pub use global::{DbSource, parse_secs};
pub use output::{Table, detail, notice, one_line, print_bytes, print_json, print_text, quiet};

/// A local, SQLite-backed store for module-state artifacts, agent memories and snapshots,
/// shared safely by many processes.
#[derive(Parser)]
#[command(name = "modstate", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    store: global::RootStoreArgs,

    /// Print one JSON document on stdout instead of text, on failure too.
    #[arg(long, global = true)]
    json: bool,

    /// Print nothing on success but the data asked for: no notices, no reports.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,

    /// Also say which database is used and why, its backend, and why `resolve` skipped a file.
    #[arg(short, long, global = true)]
    verbose: bool,

    #[command(flatten)]
    embedder: embedder::EmbedderArgs,

    #[command(subcommand)]
    command: Command,
}

/// A group's commands with the store options that apply to them.
#[derive(Args)]
pub struct WithStore<C: Subcommand> {
    #[command(flatten)]
    store: global::StoreArgs,
    #[command(subcommand)]
    command: C,
}

/// A group that writes data, with the store options and `--fence`.
#[derive(Args)]
pub struct WithFencedStore<C: Subcommand> {
    #[command(flatten)]
    store: global::StoreArgs,
    /// Refuse this command's writes (exit 4, nothing written) if a newer fencing token than
    /// TOKEN was issued for lock KEY since: the token `lock run KEY` gave its command in
    /// MODSTATE_LOCK_TOKEN.
    #[arg(long, global = true, value_name = "KEY=TOKEN", value_parser = parse_fence)]
    fence: Option<modstate::lock::Fence>,
    #[command(subcommand)]
    command: C,
}

fn parse_fence(text: &str) -> std::result::Result<modstate::lock::Fence, String> {
    text.parse().map_err(|e: Error| e.to_string())
}

/// A command's own arguments with the store options.
#[derive(Args)]
pub struct StoreCommand<A: Args> {
    #[command(flatten)]
    store: global::StoreArgs,
    #[command(flatten)]
    args: A,
}

/// `lock`: its commands, and the options of a lock directory.
#[derive(Args)]
pub struct LockGroup {
    #[command(flatten)]
    store: global::LockArgs,
    #[command(subcommand)]
    command: lock::LockCommand,
}

#[derive(Subcommand)]
enum Command {
    /// Create or migrate the database; print its path and schema version.
    #[command(after_help = "Examples:\n  modstate init\n  modstate --db ./state.db init")]
    Init(StoreCommand<admin::NoArgs>),
    /// Module-state artifacts keyed by module source digest.
    #[command(after_help = help::ARTIFACT_EXAMPLES)]
    Artifact(WithFencedStore<artifact::ArtifactCommand>),
    /// Cross-process locks: who holds what; run a command under a lock.
    #[command(after_help = help::LOCK_EXAMPLES)]
    Lock(LockGroup),
    /// The dagger.lock lookup lockfile: pinned image digests and git commits.
    #[command(after_help = help::LOCKFILE_EXAMPLES)]
    Lockfile(lockfile::LockfileArgs),
    /// Agent memories: namespaced notes with ranked full-text search and a drift guard.
    #[command(after_help = help::MEMORY_EXAMPLES)]
    Memory(WithFencedStore<memory::MemoryCommand>),
    /// Consistent snapshots: export while writers keep writing, verify, restore.
    #[command(after_help = help::SNAPSHOT_EXAMPLES)]
    Snapshot(WithStore<snapshot::SnapshotCommand>),
    /// Serve agent memories and module state to an agent host over MCP (stdin/stdout).
    #[command(after_help = help::MCP_EXAMPLES)]
    Mcp(StoreCommand<mcp::McpArgs>),
    /// Serve agent memories to agents on other hosts: MCP over Streamable HTTP at /mcp, with
    /// bearer tokens (`modstate token`), GET /healthz, until SIGTERM.
    #[command(after_help = help::SERVE_EXAMPLES)]
    Serve(StoreCommand<serve::ServeArgs>),
    /// Bearer tokens for `modstate serve`: create (shown once), ls, revoke.
    #[command(after_help = help::TOKEN_EXAMPLES)]
    Token(WithStore<token::TokenCommand>),
    /// Check the database and its surroundings, one line per check (exit 1 if any fails).
    #[command(after_help = help::MAINTENANCE_EXAMPLES)]
    Doctor(StoreCommand<admin::NoArgs>),
    /// Counts and sizes: artifacts, memories per namespace, database and WAL, generations.
    ///
    /// Piped: one WHAT and VALUE pair a line, tab-separated, no header; --json for tools.
    #[command(after_help = help::MAINTENANCE_EXAMPLES)]
    Stats(StoreCommand<admin::NoArgs>),
    /// Rebuild the database file to return the space of removed rows to the file system.
    ///
    /// Runs under the global lock held exclusively: it waits for keyed work to finish and keeps
    /// new work out until it is done. Shows progress on a terminal.
    #[command(after_help = help::MAINTENANCE_EXAMPLES)]
    Vacuum(StoreCommand<admin::NoArgs>),
    /// Print a shell completion script on stdout.
    #[command(after_help = admin::COMPLETIONS_HELP)]
    Completions(admin::CompletionsArgs),
    /// Print the man page (roff) on stdout.
    #[command(
        after_help = "Examples:\n  modstate man > ~/.local/share/man/man1/modstate.1\n  modstate man | man -l -"
    )]
    Man,
}

/// The command definition with the help text that is not one argument's: examples and exit
/// codes. The man page and completions use it too.
pub fn command() -> clap::Command {
    Cli::command().after_help(format!("{}\n\n{}", help::ROOT_EXAMPLES, help::EXIT_CODES))
}

/// What every command gets: the parsed global options and a way to open the store.
pub struct Context {
    pub db: PathBuf,
    /// Why there is no database path (no home directory for the default), if so.
    db_error: Option<String>,
    pub db_source: DbSource,
    pub json: bool,
    pub lock_timeout: Duration,
    pub synchronous: Synchronous,
    /// "created database …", said once the command has succeeded: a failing command keeps
    /// to its one error line.
    created: std::cell::RefCell<Option<String>>,
    /// `--fence KEY=TOKEN`: every write of the command carries it.
    pub fence: Option<modstate::lock::Fence>,
    /// `--embedder URL` and `--embedder-model NAME`.
    pub embedder: embedder::EmbedderArgs,
}

impl Context {
    /// Opens the store, creating the database if it does not exist: for commands that write.
    pub fn open(&self) -> Result<Store> {
        let store = Store::open(self.db_path()?, self.options())?;
        self.opened(&store);
        Ok(store)
    }

    /// Opens the store only if the database exists: for commands that only read, which must
    /// create nothing.
    pub fn open_existing(&self) -> Result<Store> {
        let db = self.db_path()?;
        match Store::open_existing(db, self.options()) {
            // A server says itself what is missing (the database, or a store in it).
            Err(Error::NotFound(_)) if modstate::store::url_scheme(db).is_none() => {
                Err(no_database(self))
            }
            Ok(store) => {
                self.opened(&store);
                Ok(store)
            }
            Err(e) => Err(e),
        }
    }

    /// The database path, or the error saying why there is none.
    pub fn db_path(&self) -> Result<&Path> {
        match &self.db_error {
            Some(why) => Err(Error::Invalid(why.clone())),
            None => Ok(&self.db),
        }
    }

    /// Says, with `--verbose`, which database is in use and why; and, once, that it was just
    /// created (the library tells, the CLI speaks).
    fn opened(&self, store: &Store) {
        let backend = match store.location() {
            modstate::store::Location::File { .. } => "sqlite",
            modstate::store::Location::Server { .. } => "postgres",
        };
        detail(&format!(
            "database {} ({}), backend {backend}, schema version {}",
            store.canonical_path().display(),
            self.db_source.describe(),
            store.schema_version()
        ));
        if store.created() {
            let what = match store.location() {
                modstate::store::Location::File { .. } => "database",
                modstate::store::Location::Server { .. } => "modstate store in",
            };
            *self.created.borrow_mut() = Some(format!(
                "created {what} {} ({})",
                store.path().display(),
                self.db_source.describe()
            ));
        }
    }

    /// The "created database" notice, if this command created it and has not said so yet.
    pub fn take_created_notice(&self) -> Option<String> {
        self.created.borrow_mut().take()
    }

    pub fn options(&self) -> Options {
        Options {
            busy_timeout: self.lock_timeout,
            lock_timeout: self.lock_timeout,
            synchronous: self.synchronous,
            fence: self.fence.clone(),
            ..Options::default()
        }
    }
}

/// The error of a read-only command run where there is no database.
pub fn no_database(ctx: &Context) -> Error {
    Error::NotFound(format!(
        "no database at {} ({}); run modstate init, or pass --db / MODSTATE_DB",
        modstate::store::display_database(&ctx.db),
        ctx.db_source.describe()
    ))
}

/// A busy error with the hint that fits the CLI: the option that raises the wait it ran out
/// of. The library's text names no flag (an MCP agent or an embedding program has none).
pub fn busy_hint(error: Error, flag: &str) -> Error {
    match error {
        Error::Busy(m) if !m.contains("--lock-timeout") && !m.contains("--timeout") => {
            Error::Busy(format!("{m} (raise {flag} SECS)"))
        }
        other => other,
    }
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

/// `[--db PATH] artifact get DIGEST` and nothing else, as a loader spawns it: the database
/// and the digest, read without building the whole command tree (a third of a one-shot get's
/// own CPU). Anything else, or anything that looks like an option, takes the full parse.
fn plain_artifact_get() -> Option<(Option<PathBuf>, String)> {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let (db, rest) = match args.as_slice() {
        [flag, db, rest @ ..] if flag == "--db" => (Some(PathBuf::from(db)), rest),
        rest => (None, rest),
    };
    let [group, verb, digest] = rest else {
        return None;
    };
    let digest = digest.to_str()?;
    if group != "artifact" || verb != "get" || digest.starts_with('-') {
        return None;
    }
    if db
        .as_ref()
        .is_some_and(|d| d.as_os_str().is_empty() || d.to_string_lossy().starts_with('-'))
    {
        return None;
    }
    Some((db, digest.to_owned()))
}

fn run() -> i32 {
    if let Some((db, digest)) = plain_artifact_get() {
        argv::hide_passwords();
        output::init(output::Verbosity::Normal);
        let resolved = global::resolve(
            global::RootStoreArgs {
                db,
                ..Default::default()
            },
            global::GroupOptions::default(),
        );
        let (db, db_error) = match resolved.db {
            Ok(path) => (path, None),
            Err(why) => (PathBuf::new(), Some(why)),
        };
        let ctx = Context {
            db,
            db_error,
            db_source: resolved.db_source,
            json: false,
            lock_timeout: resolved.lock_timeout,
            synchronous: resolved.synchronous,
            created: std::cell::RefCell::new(None),
            fence: None,
            embedder: embedder::EmbedderArgs::default(),
        };
        return match artifact::run(&ctx, artifact::ArtifactCommand::Get { digest }) {
            Ok(code) => code,
            Err(e) => {
                let e = busy_hint(e, "--lock-timeout");
                output::fail(false, exit_code(&e), output::error_kind(&e), &e.to_string())
            }
        };
    }
    let wants_json = wants_json();
    let help = command().mut_arg("db", |a| {
        a.long_help(format!("{}\n{}", global::DB_HELP, global::db_in_use_line()))
    });
    let matches = match help.try_get_matches() {
        Ok(matches) => matches,
        // --help and --version are not errors.
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return 0;
        }
        // A bare group shows its help, as git and cargo do, but it is still a usage error.
        Err(e)
            if !wants_json
                && e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand =>
        {
            let _ = e.print();
            return 2;
        }
        Err(e) => return output::fail(wants_json, 2, "usage", &usage_error_line(&e)),
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => return output::fail(wants_json, 2, "usage", &usage_error_line(&e)),
    };
    // Parsed: from here on nobody needs the password's bytes where `ps` shows them.
    argv::hide_passwords();
    output::init(if cli.quiet {
        output::Verbosity::Quiet
    } else if cli.verbose {
        output::Verbosity::Verbose
    } else {
        output::Verbosity::Normal
    });
    let json = cli.json;
    let (group, command, fence) = split(cli.command);
    let resolved = global::resolve(cli.store, group);
    let (db, db_error) = match resolved.db {
        Ok(path) => (path, None),
        Err(why) => (PathBuf::new(), Some(why)),
    };
    let ctx = Context {
        db,
        db_error,
        db_source: resolved.db_source,
        json,
        lock_timeout: resolved.lock_timeout,
        synchronous: resolved.synchronous,
        created: std::cell::RefCell::new(None),
        fence,
        embedder: cli.embedder,
    };
    match command.run(&ctx) {
        Ok(code) => {
            if let Some(created) = ctx.take_created_notice().filter(|_| code == 0) {
                notice(&created);
            }
            code
        }
        Err(e) => {
            let e = busy_hint(e, "--lock-timeout");
            output::fail(json, exit_code(&e), output::error_kind(&e), &e.to_string())
        }
    }
}

/// Whether `--json` is on the command line (before any `--`): a usage error is reported
/// before the parse that would tell.
fn wants_json() -> bool {
    std::env::args_os()
        .skip(1)
        .take_while(|a| a != "--")
        .any(|a| a == "--json")
}

/// A parsed command, its group's store options taken out.
enum Run {
    Init,
    Artifact(artifact::ArtifactCommand),
    Lock(lock::LockCommand),
    Lockfile(lockfile::LockfileArgs),
    Memory(memory::MemoryCommand),
    Snapshot(snapshot::SnapshotCommand),
    Mcp(mcp::McpArgs),
    Serve(serve::ServeArgs),
    Token(token::TokenCommand),
    Doctor,
    Stats,
    Vacuum,
    Completions(admin::CompletionsArgs),
    Man,
}

fn split(command: Command) -> (global::GroupOptions, Run, Option<modstate::lock::Fence>) {
    use global::GroupOptions as G;
    let (group, run) = match command {
        Command::Artifact(g) => return (g.store.into(), Run::Artifact(g.command), g.fence),
        Command::Memory(g) => return (g.store.into(), Run::Memory(g.command), g.fence),
        Command::Init(c) => (c.store.into(), Run::Init),
        Command::Lock(g) => (g.store.into(), Run::Lock(g.command)),
        Command::Lockfile(mut args) => (
            std::mem::take(&mut args.timeout).into(),
            Run::Lockfile(args),
        ),
        Command::Snapshot(g) => (g.store.into(), Run::Snapshot(g.command)),
        Command::Mcp(c) => (c.store.into(), Run::Mcp(c.args)),
        Command::Serve(c) => (c.store.into(), Run::Serve(c.args)),
        Command::Token(g) => (g.store.into(), Run::Token(g.command)),
        Command::Doctor(c) => (c.store.into(), Run::Doctor),
        Command::Stats(c) => (c.store.into(), Run::Stats),
        Command::Vacuum(c) => (c.store.into(), Run::Vacuum),
        Command::Completions(args) => (G::default(), Run::Completions(args)),
        Command::Man => (G::default(), Run::Man),
    };
    (group, run, None)
}

impl Run {
    fn run(self, ctx: &Context) -> Result<i32> {
        match self {
            Run::Init => admin::init(ctx),
            Run::Artifact(cmd) => artifact::run(ctx, cmd),
            Run::Lock(cmd) => lock::run(ctx, cmd),
            Run::Lockfile(args) => lockfile::run(ctx, args),
            Run::Memory(cmd) => memory::run(ctx, cmd),
            Run::Snapshot(cmd) => snapshot::run(ctx, cmd),
            Run::Mcp(args) => mcp::run(ctx, args),
            Run::Serve(args) => serve::run(ctx, args),
            Run::Token(cmd) => token::run(ctx, cmd),
            Run::Doctor => admin::doctor(ctx),
            Run::Stats => admin::stats(ctx),
            Run::Vacuum => admin::vacuum(ctx),
            Run::Completions(args) => admin::completions(&args),
            Run::Man => admin::man(),
        }
    }
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
    let message = message.strip_prefix("error: ").unwrap_or(&message);
    match usage {
        Some(usage) => format!("{message}; usage: {usage} (see --help)"),
        None => format!("{message} (see --help)"),
    }
}

/// The exit code of each error kind (the table is in `modstate --help` and README.md).
pub fn exit_code(error: &Error) -> i32 {
    match error {
        Error::Io { .. } | Error::Database { .. } => 1,
        Error::NotFound(_) => 3,
        Error::Conflict { .. } => 4,
        Error::Busy(_) => 5,
        Error::Invalid(_) | Error::Unsupported(_) => 6,
        Error::Integrity(_) => 7,
        Error::Fenced(_) => 4,
        Error::LockLost(_) => 8,
        Error::Superseded { .. } => 4,
        Error::Denied(_) => 6,
        Error::Embedder(_) => 1,
        // A kind added to the library later: a failure like any other.
        _ => 1,
    }
}
