//! The options that say which store to use and how: `--db`, `--lock-timeout`,
//! `--synchronous`. Each group lists only those that apply to it (`lockfile` has no database),
//! and every one of them is accepted before the group too (`modstate --db X artifact ls`).
//! The nearest spelling wins: after the group, then before it, then `MODSTATE_DB`, then the
//! per-user default.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;

use modstate::Synchronous;

pub const DB_HELP: &str = "Database: a SQLite file, or a postgres://USER@HOST:PORT/DBNAME URL (PG* variables fill its gaps) [env: MODSTATE_DB] [default: $XDG_DATA_HOME/modstate/state.db, else ~/.local/share/modstate/state.db]";
pub const LOCK_TIMEOUT_HELP: &str =
    "Seconds to wait for a lock or a busy database before giving up (exit 5) [default: 30]";
pub const SYNCHRONOUS_HELP: &str = "Commit durability: full (survives power loss) or normal (survives a crash of the process) [default: full]";

/// The store options given before the group (`modstate --db X artifact ls`).
#[derive(Args, Default)]
pub struct RootStoreArgs {
    #[arg(long, value_name = "PATH", help = DB_HELP)]
    pub db: Option<PathBuf>,
    #[arg(long, value_name = "SECS", value_parser = parse_secs, help = LOCK_TIMEOUT_HELP)]
    pub lock_timeout: Option<f64>,
    #[arg(long, value_name = "MODE", value_parser = ["full", "normal"], help = SYNCHRONOUS_HELP)]
    pub synchronous: Option<String>,
}

/// The store options of a group that opens the database.
#[derive(Args, Default)]
pub struct StoreArgs {
    #[arg(long, global = true, value_name = "PATH", help = DB_HELP)]
    pub db: Option<PathBuf>,
    #[arg(long, global = true, value_name = "SECS", value_parser = parse_secs, help = LOCK_TIMEOUT_HELP)]
    pub lock_timeout: Option<f64>,
    #[arg(long, global = true, value_name = "MODE", value_parser = ["full", "normal"], help = SYNCHRONOUS_HELP)]
    pub synchronous: Option<String>,
}

/// The options of `lock`: its locks live beside a database, which it never opens.
#[derive(Args, Default)]
pub struct LockArgs {
    #[arg(long, global = true, value_name = "PATH", help = DB_HELP)]
    pub db: Option<PathBuf>,
    #[arg(long, global = true, value_name = "SECS", value_parser = parse_secs, help = LOCK_TIMEOUT_HELP)]
    pub lock_timeout: Option<f64>,
}

/// The option of `lockfile`: it waits for the lockfile's own lock, and has no database.
#[derive(Args, Default)]
pub struct TimeoutArgs {
    #[arg(long, global = true, value_name = "SECS", value_parser = parse_secs, help = LOCK_TIMEOUT_HELP)]
    pub lock_timeout: Option<f64>,
}

/// What a group's options add to the root's.
#[derive(Default)]
pub struct GroupOptions {
    pub db: Option<PathBuf>,
    pub lock_timeout: Option<f64>,
    pub synchronous: Option<String>,
}

impl From<StoreArgs> for GroupOptions {
    fn from(a: StoreArgs) -> Self {
        GroupOptions {
            db: a.db,
            lock_timeout: a.lock_timeout,
            synchronous: a.synchronous,
        }
    }
}

impl From<LockArgs> for GroupOptions {
    fn from(a: LockArgs) -> Self {
        GroupOptions {
            db: a.db,
            lock_timeout: a.lock_timeout,
            synchronous: None,
        }
    }
}

impl From<TimeoutArgs> for GroupOptions {
    fn from(a: TimeoutArgs) -> Self {
        GroupOptions {
            lock_timeout: a.lock_timeout,
            ..GroupOptions::default()
        }
    }
}

/// Where the database path came from.
#[derive(Clone, Copy, PartialEq, Eq, Debug, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DbSource {
    Flag,
    Env,
    Default,
}

impl DbSource {
    pub fn describe(self) -> &'static str {
        match self {
            DbSource::Flag => "from --db",
            DbSource::Env => "from MODSTATE_DB",
            DbSource::Default => "the per-user default",
        }
    }
}

/// The resolved options.
pub struct Resolved {
    /// The database path, or why there is none (no home directory to put the default in).
    pub db: std::result::Result<PathBuf, String>,
    pub db_source: DbSource,
    pub lock_timeout: Duration,
    pub synchronous: Synchronous,
}

pub fn resolve(root: RootStoreArgs, group: GroupOptions) -> Resolved {
    let (db, db_source) = match group.db.or(root.db) {
        Some(path) => (Ok(path), DbSource::Flag),
        None => match std::env::var_os("MODSTATE_DB").filter(|v| !v.is_empty()) {
            Some(path) => (Ok(PathBuf::from(path)), DbSource::Env),
            None => (default_db(), DbSource::Default),
        },
    };
    let secs = group.lock_timeout.or(root.lock_timeout).unwrap_or(30.0);
    let synchronous = match group.synchronous.or(root.synchronous).as_deref() {
        Some("normal") => Synchronous::Normal,
        _ => Synchronous::Full,
    };
    Resolved {
        db,
        db_source,
        lock_timeout: Duration::from_secs_f64(secs),
        synchronous,
    }
}

/// The per-user database, where tools of this kind keep their data: the XDG base-directory
/// rules on Linux and the BSDs (`$XDG_DATA_HOME`, which must be absolute, else
/// `~/.local/share`), `~/Library/Application Support` on macOS. One store per user, whatever
/// the current directory, so agents started in different places share it and no clone is
/// left with a stray database.
pub fn default_db() -> std::result::Result<PathBuf, String> {
    modstate::dirs::data_dir().map(|d| d.join("state.db")).ok_or_else(|| {
        "no per-user data directory for the default database (HOME is not set); pass --db PATH or set MODSTATE_DB".to_owned()
    })
}

/// The text `--help` shows about the database this invocation would use.
pub fn db_in_use_line() -> String {
    let resolved = resolve(RootStoreArgs::default(), GroupOptions::default());
    match resolved.db {
        Ok(path) => format!(
            "Database in use without --db: {} ({})",
            display(&path),
            resolved.db_source.describe()
        ),
        Err(why) => format!("Database in use without --db: none; {why}"),
    }
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

pub fn parse_secs(text: &str) -> std::result::Result<f64, String> {
    match text.parse::<f64>() {
        Ok(secs) if secs.is_finite() && (0.0..=86_400.0).contains(&secs) => Ok(secs),
        _ => Err(format!(
            "{text:?} is not a number of seconds between 0 and 86400"
        )),
    }
}
