//! `modstate lock …`: see who holds what, and run a command under a lock.

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitStatus};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use clap::Subcommand;

use modstate::lock::{LockDir, Locks, Mode};
use modstate::store::{Options, Store, canonical_db_path, url_scheme};
use modstate::{Error, Result};

use super::child::{STOP_GRACE, SignalForwarder, spawn_failure_code};
use super::{Context, Table, busy_hint, no_database, parse_secs, print_json};

#[derive(Subcommand)]
pub enum LockCommand {
    /// Show every lock: name (global, write, or the key), state (free, held, shared) and holder.
    ///
    /// On a terminal: aligned columns under a header. Piped: one holder a line (a free lock
    /// has `-` for its holder), NAME, STATE, PID, COMMAND and SINCE separated by tabs, no
    /// header. On a server database (a postgres:// URL), whose holders may run on other
    /// machines, a column HOST names the holder's host; a held lock whose holder has
    /// not described itself yet shows `?` for it. A last column TOKEN shows an exclusively
    /// held key's fencing token (`-` otherwise).
    Status,
    /// Run COMMAND while holding KEY (and the global lock shared); exit with COMMAND's code,
    /// or 5 if the lock is not had within the timeout.
    ///
    /// COMMAND gets the key's fencing token in MODSTATE_LOCK_TOKEN (larger than every earlier
    /// holder's; pass it to writes with --fence KEY=TOKEN). On a server database, a lock lost
    /// while COMMAND runs (the server restarted, the session was ended) stops COMMAND: SIGTERM
    /// to its process group, SIGKILL 3 s later, and exit 8.
    Run {
        /// The key to hold; any UTF-8 string up to 1 KiB. Omit with --global.
        #[arg(required_unless_present = "global", conflicts_with = "global")]
        key: Option<String>,
        /// Hold the key shared: many shared holders at once, none exclusive.
        #[arg(long)]
        shared: bool,
        /// Hold the global lock exclusively: waits for all keyed work, keeps new work out.
        #[arg(long, conflicts_with = "shared")]
        global: bool,
        /// Seconds to wait for the lock (default: --lock-timeout).
        #[arg(long, value_name = "SECS", value_parser = parse_secs)]
        timeout: Option<f64>,
        /// The command and its arguments.
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
}

pub fn run(ctx: &Context, cmd: LockCommand) -> Result<i32> {
    match cmd {
        LockCommand::Status => status(ctx),
        LockCommand::Run {
            key,
            shared,
            global,
            timeout,
            command,
        } => run_locked(ctx, key, shared, global, timeout, &command),
    }
}

/// `lock run`: take the lock, run the command, hold the lock until the command has exited
/// (whatever signals arrive meanwhile), exit with its code.
fn run_locked(
    ctx: &Context,
    key: Option<String>,
    shared: bool,
    global: bool,
    timeout: Option<f64>,
    command: &[String],
) -> Result<i32> {
    // First, before any thread starts: from here on SIGINT, SIGTERM and SIGHUP are ours.
    let signals =
        SignalForwarder::install().map_err(|e| Error::io("handling signals", "lock run", e))?;
    // The hint of a timeout names the option that set the wait.
    let flag = if timeout.is_some() {
        "--timeout"
    } else {
        "--lock-timeout"
    };
    let timeout = timeout.map_or(ctx.lock_timeout, Duration::from_secs_f64);
    let source = lock_source(ctx, timeout, true)?;
    let locks = source.locks();
    let held = if global {
        locks.global(Mode::Exclusive).map(Held::Global)
    } else {
        let mode = if shared {
            Mode::Shared
        } else {
            Mode::Exclusive
        };
        let key = key.unwrap_or_default();
        locks
            .keyed(&[key.as_str()], mode)
            .map(|guard| Held::Keyed(guard, key))
    };
    let guard = held.map_err(|e| busy_hint(e, flag))?;
    // The guard holds its own server sessions: the store's idle pooled connection is not
    // needed while the command runs.
    drop(source);
    let (program, args) = command
        .split_first()
        .ok_or_else(|| Error::Invalid("no command given after --".to_owned()))?;
    let mut cmd = Command::new(program);
    cmd.args(args);
    if let Some(token) = guard.token() {
        cmd.env("MODSTATE_LOCK_TOKEN", token.to_string());
    }
    let mut child = match signals.spawn(&mut cmd) {
        Ok(child) => child,
        Err(e) => {
            return Ok(super::output::fail(
                ctx.json,
                spawn_failure_code(&e),
                "command",
                &format!("cannot run {program}: {e}"),
            ));
        }
    };
    // A server lock lost while the command runs: stop the command (SIGTERM, SIGKILL after
    // the grace) before the lock's lease lets anyone else start.
    let lost: Arc<Mutex<Option<Error>>> = Arc::default();
    {
        let lost = Arc::clone(&lost);
        let stopper = signals.stopper();
        guard.on_lost(move |e| {
            *lost.lock().unwrap_or_else(PoisonError::into_inner) = Some(e);
            stopper.stop();
        });
    }
    let status = child.wait();
    signals.finished();
    let status = status.map_err(|e| Error::io("waiting for", program, e))?;
    if let Some(e) = lost.lock().unwrap_or_else(PoisonError::into_inner).take() {
        return Err(Error::LockLost(format!(
            "{e}; stopped {program} (SIGTERM, then SIGKILL after {}s)",
            STOP_GRACE.as_secs()
        )));
    }
    // The guard drops only now, after the command has exited.
    drop(guard);
    Ok(exit_code_of(status))
}

/// The locks `lock run` holds, released when dropped.
enum Held {
    Global(modstate::lock::LockGuard),
    Keyed(modstate::lock::KeyedGuard, String),
}

impl Held {
    /// The fencing token of an exclusively held key.
    fn token(&self) -> Option<u64> {
        match self {
            Held::Global(guard) => guard.token(),
            Held::Keyed(guard, key) => guard.token(key),
        }
    }

    fn on_lost(&self, f: impl FnOnce(Error) + Send + 'static) {
        match self {
            Held::Global(guard) => guard.on_lost(f),
            Held::Keyed(guard, _) => guard.on_lost(f),
        }
    }
}

/// Where `lock` commands find the locks: the lock directory of a database file, or the store
/// on a server.
enum LockSource {
    /// A database file's lock directory, used without opening the database.
    Dir(LockDir),
    /// A server store, whose locks are the server's.
    Store(Store),
}

impl LockSource {
    fn locks(&self) -> &dyn Locks {
        match self {
            LockSource::Dir(dir) => dir,
            LockSource::Store(store) => store.locks(),
        }
    }
}

/// The locks of the database `--db` names, waiting up to `timeout`. A database file's locks
/// are found without opening it (see [`lock_dir`]); a server's locks need a session and the
/// store's holder table, so the store is opened: with `create`, made or migrated if needed.
fn lock_source(ctx: &Context, timeout: Duration, create: bool) -> Result<LockSource> {
    let db = ctx.db_path()?;
    if url_scheme(db).is_none() {
        return lock_dir(ctx, timeout, create).map(LockSource::Dir);
    }
    let store = if create {
        let options = Options {
            lock_timeout: timeout,
            ..ctx.options()
        };
        let store = Store::open(db, options)?;
        ctx.opened(&store);
        store
    } else {
        ctx.open_existing()?
    };
    Ok(LockSource::Store(store))
}

/// The lock directory of the database `--db` names (by its canonical path, so every spelling
/// of one database shares its locks). With `create`, the database's directory is made if
/// missing; without, a database that does not exist is `NotFound`.
fn lock_dir(ctx: &Context, timeout: Duration, create: bool) -> Result<LockDir> {
    let db = ctx.db_path()?;
    if let Some(parent) = db
        .parent()
        .filter(|p| !p.as_os_str().is_empty() && !p.exists())
    {
        if !create {
            return Err(no_database(ctx));
        }
        std::fs::create_dir_all(parent).map_err(|e| Error::io("creating directory", parent, e))?;
        std::fs::set_permissions(parent, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .map_err(|e| Error::io("creating directory", parent, e))?;
    }
    let canonical = canonical_db_path(db)?;
    let locks = LockDir::new(&canonical, timeout);
    if !create && !canonical.exists() && !locks.path().exists() {
        return Err(no_database(ctx));
    }
    Ok(locks)
}

fn status(ctx: &Context) -> Result<i32> {
    let source = lock_source(ctx, ctx.lock_timeout, false)?;
    let states = source.locks().status()?;
    if ctx.json {
        print_json(&states)?;
        return Ok(0);
    }
    // Holders on a server may be anywhere; a file's holders are all on this host. HOST comes
    // last so the columns before it are the same on both.
    let with_host = matches!(source, LockSource::Store(_));
    // TOKEN (an exclusive key's fencing token) comes after them all, so scripts reading the
    // earlier columns by position keep working.
    let headers: &'static [&'static str] = if with_host {
        &["NAME", "STATE", "PID", "COMMAND", "SINCE", "HOST", "TOKEN"]
    } else {
        &["NAME", "STATE", "PID", "COMMAND", "SINCE", "TOKEN"]
    };
    let mut table = Table::new(headers);
    for s in &states {
        if s.holders.is_empty() {
            let mut row = vec![
                s.name.clone(),
                s.state.to_owned(),
                "-".into(),
                "-".into(),
                "-".into(),
            ];
            if with_host {
                row.push("-".into());
            }
            row.push("-".into());
            table.row(row);
        }
        for h in &s.holders {
            // A holder with no pid (pid 0) has not described itself yet.
            let pid = if h.pid == 0 {
                "?".to_owned()
            } else {
                h.pid.to_string()
            };
            let mut row = vec![
                s.name.clone(),
                s.state.to_owned(),
                pid,
                h.command.clone(),
                h.acquired_at.clone().unwrap_or_else(|| "-".into()),
            ];
            if with_host {
                row.push(h.host.clone());
            }
            row.push(h.token.map_or_else(|| "-".to_owned(), |t| t.to_string()));
            table.row(row);
        }
    }
    table.print()?;
    Ok(0)
}

/// The child's exit code, or 128 + signal number like a shell when it was killed.
fn exit_code_of(status: ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1)
}
