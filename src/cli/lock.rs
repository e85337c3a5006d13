//! `modstate lock …`: see who holds what, and run a command under a lock.

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitStatus};
use std::time::Duration;

use clap::Subcommand;

use modstate::lock::{LockDir, Mode};
use modstate::{Error, Result};

use super::{Context, parse_secs, print_json, print_text};

#[derive(Subcommand)]
pub enum LockCommand {
    /// Show every lock: name (global, write, or the key), state (free, held, shared) and holder.
    Status,
    /// Run COMMAND while holding KEY (and the global lock shared); exit with COMMAND's code,
    /// or 5 if the lock is not had within the timeout.
    #[command(arg_required_else_help = true)]
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
        } => {
            let timeout = timeout.map_or(ctx.lock_timeout, Duration::from_secs_f64);
            let locks = LockDir::open(&ctx.db, timeout)?;
            let status = if global {
                let _guard = locks.global(Mode::Exclusive)?;
                spawn(&command)?
            } else {
                let mode = if shared {
                    Mode::Shared
                } else {
                    Mode::Exclusive
                };
                let key = key.unwrap_or_default();
                let _guard = locks.keyed(&[key], mode)?;
                spawn(&command)?
            };
            Ok(exit_code_of(status))
        }
    }
}

fn status(ctx: &Context) -> Result<i32> {
    let locks = LockDir::open(&ctx.db, ctx.lock_timeout)?;
    let states = locks.status()?;
    if ctx.json {
        print_json(&states)?;
        return Ok(0);
    }
    let mut text = String::from("NAME\tSTATE\tPID\tCOMMAND\tSINCE\n");
    for s in &states {
        let (pid, command, since) = match &s.holder {
            Some(h) => (
                h.pid.to_string(),
                h.command.as_str(),
                h.acquired_at.as_str(),
            ),
            None => ("-".to_owned(), "-", "-"),
        };
        text.push_str(&format!(
            "{}\t{}\t{pid}\t{command}\t{since}\n",
            printable(&s.name),
            s.state
        ));
    }
    print_text(&text)?;
    Ok(0)
}

/// Keys are arbitrary strings; keep control characters from reaching the terminal raw.
fn printable(name: &str) -> String {
    name.escape_debug().to_string()
}

fn spawn(command: &[String]) -> Result<ExitStatus> {
    let (program, args) = command
        .split_first()
        .ok_or_else(|| Error::Invalid("no command given after --".to_owned()))?;
    Command::new(program)
        .args(args)
        .status()
        .map_err(|e| Error::io("running", program, e))
}

/// The child's exit code, or 128 + signal number like a shell when it was killed.
fn exit_code_of(status: ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1)
}
