//! `modstate artifact …`: module-state artifacts by module source digest.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use clap::Subcommand;
use serde_json::json;

use std::os::unix::process::ExitStatusExt;

use modstate::artifact::cache::CachePolicy;
use modstate::artifact::file::read_artifact_file_any;
use modstate::artifact::{Served, read_artifact_file, write_artifact_file};
use modstate::{Digest, Error, Outcome, PutOutcome, Result};

use super::batch;
use super::child::{SignalForwarder, spawn_failure_code};
use super::input::read_limited;
use super::{Context, Table, notice, print_bytes, print_json, print_text, quiet};

/// The help of every `<DIGEST>`.
const DIGEST_HELP: &str = "Module source digest: sha256: and 64 lowercase hex digits";

#[derive(Subcommand)]
pub enum ArtifactCommand {
    /// Store a state envelope {"type","version","state"} under a module source digest.
    Put {
        #[arg(help = DIGEST_HELP)]
        digest: String,
        /// File holding the envelope; `-` reads stdin.
        #[arg(default_value = "-")]
        file: String,
    },
    /// Store many artifacts in one transaction (all or nothing).
    ///
    /// SOURCE is a directory of artifact files (*.json), or `-` for JSON Lines of
    /// {"digest": …, "state": {envelope}} on stdin. One bad item rejects the whole batch and is
    /// named by its line or file.
    PutMany {
        /// Directory of artifact files (*.json), or `-` for JSON Lines on stdin.
        source: String,
    },
    /// Print the stored envelope exactly as stored (exit 3 if absent).
    Get {
        #[arg(help = DIGEST_HELP)]
        digest: String,
    },
    /// List stored artifacts: digest, type, version, bytes, created.
    ///
    /// On a terminal: aligned columns under a header. Piped: one artifact a line, the five
    /// fields separated by tabs, no header.
    Ls,
    /// Remove an artifact (exit 3 if absent).
    Rm {
        #[arg(help = DIGEST_HELP)]
        digest: String,
    },
    /// Store an artifact file's state under its moduleSourceDigest.
    Import {
        /// The artifact file to read (e.g. dagger.moduletypes.json).
        file: PathBuf,
    },
    /// Write the artifact file for a stored digest, atomically.
    Export {
        #[arg(help = DIGEST_HELP)]
        digest: String,
        /// The artifact file to write (replaced atomically if it exists).
        file: PathBuf,
    },
    /// The loader fast path: artifact file, else store, else compute once.
    ///
    /// Prints the state envelope as compact JSON on one line — the same bytes whichever source
    /// served it — from a current artifact file, else from the store, else by running COMMAND
    /// under the digest's lock (once across all processes that miss at the same time), whose
    /// stdout must be a state envelope, and storing it. Says on stderr which source served and
    /// why a given artifact file was skipped. With no COMMAND it only looks: exit 3 on a miss.
    /// SIGINT, SIGTERM and SIGHUP are forwarded to COMMAND, and the lock is held until it exits.
    Resolve {
        #[arg(help = DIGEST_HELP)]
        digest: String,
        /// The artifact file to try first (e.g. dagger.moduletypes.json).
        #[arg(long)]
        file: Option<PathBuf>,
        /// After a store hit or a computation, write the artifact file (--file) atomically, so
        /// the next load is served from it.
        #[arg(long, requires = "file")]
        write_file: bool,
        /// The command that computes the envelope on a miss; omit it to only look.
        #[arg(last = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// Tell whether an artifact file is current for a digest (exit 0 only for loaded).
    ///
    /// Prints loaded, missing, stale, malformed or unsupported; the reason goes to stderr (and
    /// into --json). Exit 0 for loaded, 3 for the other four, 1 on an I/O error.
    Check {
        /// The artifact file to check.
        file: PathBuf,
        /// The module source digest the file should be for.
        #[arg(long)]
        digest: String,
    },
    /// Remove artifacts by one policy: size cap, age, newest kept, free space.
    ///
    /// Any combination: the N most recently used (--keep-newest) and pinned artifacts never
    /// go; of the rest, those unused for --older-than go, then the least recently used until
    /// the artifacts take at most --max-size and the file system has --min-free bytes free.
    /// With --keep-newest alone, every other artifact goes. One transaction; prints the
    /// digests removed. `modstate vacuum` then gives the space back to the file system.
    #[command(group(clap::ArgGroup::new("which").required(true).multiple(true)))]
    Prune {
        #[command(flatten)]
        policy: PolicyArgs,
        /// Print what would be removed, and remove nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Store the prune policy, applied automatically by writers from then on.
    ///
    /// After a put that leaves the store over --max-size (or, for the other rules, once per
    /// --touch-interval), the writer collects in a transaction of its own, one collector at a
    /// time, down to 90% of the cap. With no rule, prints the stored policy; --clear removes it.
    #[command(group(clap::ArgGroup::new("which").multiple(true)))]
    Policy {
        #[command(flatten)]
        policy: PolicyArgs,
        /// Remove the stored policy: no automatic collection.
        #[arg(long, conflicts_with = "which")]
        clear: bool,
        /// How often a read records the artifact's use (default 1h), and how often writers
        /// apply the age rules.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        touch_interval: Option<Duration>,
    },
    /// Pin an artifact: no prune or collection removes it.
    Pin {
        #[arg(help = DIGEST_HELP)]
        digest: String,
        /// Until this long from now (e.g. 2h); without it, until `artifact unpin`.
        #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration)]
        for_how_long: Option<Duration>,
    },
    /// Remove an artifact's pin (exit 3 if it had none).
    Unpin {
        #[arg(help = DIGEST_HELP)]
        digest: String,
    },
}

/// The rules of a prune policy.
#[derive(clap::Args)]
pub struct PolicyArgs {
    /// Evict least recently used first until artifacts take at most SIZE (e.g. 500MB, 2GiB).
    #[arg(long, value_name = "SIZE", group = "which", value_parser = parse_size)]
    max_size: Option<u64>,
    /// Remove artifacts not read or stored for this long, e.g. 30d, 12h, 1w 2d.
    #[arg(long, value_name = "DURATION", group = "which", value_parser = parse_duration)]
    older_than: Option<Duration>,
    /// Keep the N most recently used artifacts.
    #[arg(long, value_name = "N", group = "which")]
    keep_newest: Option<u64>,
    /// Evict least recently used first until the database's file system has SIZE free
    /// (SQLite only).
    #[arg(long, value_name = "SIZE", group = "which", value_parser = parse_size)]
    min_free: Option<u64>,
}

impl PolicyArgs {
    fn policy(&self) -> CachePolicy {
        CachePolicy {
            max_size: self.max_size,
            older_than: self.older_than,
            keep_newest: self.keep_newest,
            min_free: self.min_free,
        }
    }
}

/// A size as humans write it: bytes, or with K/M/G/T (powers of 1000) or KiB/MiB/GiB/TiB.
fn parse_size(text: &str) -> std::result::Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let bad = || format!("{text:?} is not a size; write it as 500000, 500KB, 20MB or 2GiB");
    let n: u64 = number.parse().map_err(|_| bad())?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "m" | "mb" => 1000 * 1000,
        "g" | "gb" => 1000 * 1000 * 1000,
        "t" | "tb" => 1000 * 1000 * 1000 * 1000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => return Err(bad()),
    };
    n.checked_mul(scale)
        .ok_or_else(|| format!("{text:?} is too large a size"))
}

/// A duration as humans write it (`30d`, `12h`, `1w 2d`).
fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("{text:?} is not a duration ({e}); write it as 30d, 12h or 1w 2d"))
}

pub fn run(ctx: &Context, cmd: ArtifactCommand) -> Result<i32> {
    match cmd {
        ArtifactCommand::Put { digest, file } => put(ctx, &digest, &file),
        ArtifactCommand::PutMany { source } => put_many(ctx, &source),
        ArtifactCommand::Get { digest } => get(ctx, &digest),
        ArtifactCommand::Ls => ls(ctx),
        ArtifactCommand::Rm { digest } => rm(ctx, &digest),
        ArtifactCommand::Import { file } => import(ctx, &file),
        ArtifactCommand::Export { digest, file } => export(ctx, &digest, &file),
        ArtifactCommand::Resolve {
            digest,
            file,
            write_file,
            command,
        } => resolve(ctx, &digest, file.as_deref(), write_file, &command),
        ArtifactCommand::Check { file, digest } => check(ctx, &file, &digest),
        ArtifactCommand::Prune { policy, dry_run } => prune(ctx, &policy.policy(), dry_run),
        ArtifactCommand::Policy {
            policy,
            clear,
            touch_interval,
        } => set_policy(ctx, &policy.policy(), clear, touch_interval),
        ArtifactCommand::Pin {
            digest,
            for_how_long,
        } => pin(ctx, &digest, for_how_long),
        ArtifactCommand::Unpin { digest } => unpin(ctx, &digest),
    }
}

fn put(ctx: &Context, digest: &str, file: &str) -> Result<i32> {
    let digest = Digest::parse(digest)?;
    let store = ctx.open()?;
    let bytes = read_limited(file, store.options().max_artifact_bytes, "state envelope")?;
    let envelope = store.envelope(bytes)?;
    let outcome = store.put(&digest, &envelope)?;
    report_put(ctx, &digest, outcome)
}

fn put_many(ctx: &Context, source: &str) -> Result<i32> {
    let store = ctx.open()?;
    let limit = store.options().max_artifact_bytes;
    let items = if source == "-" {
        batch::from_json_lines(std::io::stdin().lock(), limit)?
    } else {
        batch::from_directory(Path::new(source), limit)?
    };
    let outcomes = store.put_many(items.iter().map(|(d, e)| (d, e)))?;
    let count = |want: PutOutcome| outcomes.iter().filter(|o| **o == want).count();
    let (inserted, unchanged, replaced) = (
        count(PutOutcome::Inserted),
        count(PutOutcome::Unchanged),
        count(PutOutcome::Replaced),
    );
    if ctx.json {
        print_json(&json!({"stored": outcomes.len(), "inserted": inserted,
            "unchanged": unchanged, "replaced": replaced}))?;
    } else if !quiet() {
        print_text(&format!(
            "stored {} artifacts ({inserted} new, {unchanged} unchanged, {replaced} replaced)\n",
            outcomes.len()
        ))?;
    }
    Ok(0)
}

fn get(ctx: &Context, digest: &str) -> Result<i32> {
    let digest = Digest::parse(digest)?;
    let store = ctx.open_existing()?;
    let envelope = store.get(&digest)?.ok_or_else(|| absent(&digest))?;
    // The envelope is one JSON document already, so --json prints it as is too.
    print_bytes(envelope.as_bytes())?;
    Ok(0)
}

fn ls(ctx: &Context) -> Result<i32> {
    let store = ctx.open_existing()?;
    let rows = store.list()?;
    if ctx.json {
        print_json(&rows)?;
        return Ok(0);
    }
    let mut table = Table::new(&["DIGEST", "TYPE", "VERSION", "BYTES", "CREATED"]);
    for r in &rows {
        table.row(vec![
            r.digest.clone(),
            r.state_type.clone(),
            r.version.to_string(),
            r.bytes.to_string(),
            r.created_at.clone(),
        ]);
    }
    table.print()?;
    Ok(0)
}

fn rm(ctx: &Context, digest: &str) -> Result<i32> {
    let digest = Digest::parse(digest)?;
    let store = ctx.open_existing()?;
    if !store.delete(&digest)? {
        return Err(absent(&digest));
    }
    if ctx.json {
        print_json(&json!({"digest": digest.as_str(), "removed": true}))?;
    } else if !quiet() {
        print_text(&format!("removed {digest}\n"))?;
    }
    Ok(0)
}

fn import(ctx: &Context, file: &Path) -> Result<i32> {
    let store = ctx.open()?;
    let (digest, envelope) = read_artifact_file_any(file, store.options().max_artifact_bytes)?;
    let outcome = store.put(&digest, &envelope)?;
    report_put(ctx, &digest, outcome)
}

fn export(ctx: &Context, digest: &str, file: &Path) -> Result<i32> {
    let digest = Digest::parse(digest)?;
    let store = ctx.open_existing()?;
    let envelope = store.get(&digest)?.ok_or_else(|| absent(&digest))?;
    write_artifact_file(file, &digest, &envelope)?;
    if ctx.json {
        print_json(&json!({"digest": digest.as_str(), "file": file.display().to_string()}))?;
    } else if !quiet() {
        print_text(&format!("wrote {}\n", file.display()))?;
    }
    Ok(0)
}

fn check(ctx: &Context, file: &Path, digest: &str) -> Result<i32> {
    let digest = Digest::parse(digest)?;
    let outcome = read_artifact_file(file, &digest)?;
    if ctx.json {
        let mut doc = json!({"outcome": outcome.word(), "reason": outcome.reason()});
        if let Outcome::Stale { found } = &outcome {
            doc["found"] = json!(found);
        }
        print_json(&doc)?;
    } else {
        print_text(&format!("{}\n", outcome.word()))?;
    }
    // The reason is the one stderr line of a non-zero exit, with --json too.
    if let Some(reason) = outcome.reason() {
        notice(&format!("{}: {reason}", file.display()));
    }
    Ok(if matches!(outcome, Outcome::Loaded(_)) {
        0
    } else {
        3
    })
}

/// Refuses an age no artifact can have: one that reaches before 1970.
fn check_age(policy: &CachePolicy) -> Result<()> {
    if let Some(age) = policy.older_than
        && std::time::SystemTime::now()
            .checked_sub(age)
            .is_none_or(|t| t < std::time::SystemTime::UNIX_EPOCH)
    {
        return Err(Error::Invalid(format!(
            "--older-than {} reaches before 1970; give a shorter duration",
            humantime::format_duration(age)
        )));
    }
    Ok(())
}

fn prune(ctx: &Context, policy: &CachePolicy, dry_run: bool) -> Result<i32> {
    check_age(policy)?;
    let store = ctx.open_existing()?;
    let done = store.prune(policy, dry_run)?;
    if ctx.json {
        // `removed` stays a list of digests, as before the policy; `evicted` adds the bytes.
        let digests: Vec<&str> = done.removed.iter().map(|e| e.digest.as_str()).collect();
        print_json(&json!({"removed": digests, "dry_run": done.dry_run,
            "evicted": done.removed, "freed": done.freed, "bytes_before": done.bytes_before,
            "bytes_after": done.bytes_after, "kept_pinned": done.kept_pinned}))?;
        return Ok(0);
    }
    let mut text = String::new();
    for e in &done.removed {
        text.push_str(&e.digest);
        text.push('\n');
    }
    print_text(&text)?;
    notice(&format!(
        "{} {} artifact{} ({} bytes){}",
        if dry_run { "would remove" } else { "removed" },
        done.removed.len(),
        if done.removed.len() == 1 { "" } else { "s" },
        done.freed,
        if done.kept_pinned > 0 {
            format!("; kept {} pinned", done.kept_pinned)
        } else {
            String::new()
        }
    ));
    Ok(0)
}

fn set_policy(
    ctx: &Context,
    policy: &CachePolicy,
    clear: bool,
    touch_interval: Option<Duration>,
) -> Result<i32> {
    check_age(policy)?;
    if clear || !policy.is_empty() || touch_interval.is_some() {
        let store = ctx.open()?;
        let policy = if clear || !policy.is_empty() {
            policy.clone()
        } else {
            store.cache_stats()?.policy
        };
        store.set_cache_policy(&policy, touch_interval)?;
    }
    let store = ctx.open_existing()?;
    let stats = store.cache_stats()?;
    if ctx.json {
        print_json(&json!({"policy": stats.policy, "touch_interval_ms": stats.touch_interval_ms}))?;
        return Ok(0);
    }
    let p = &stats.policy;
    let show = |v: Option<String>| v.unwrap_or_else(|| "-".to_owned());
    print_text(&format!(
        "max_size\t{}\nolder_than\t{}\nkeep_newest\t{}\nmin_free\t{}\ntouch_interval\t{}\n",
        show(p.max_size.map(|v| v.to_string())),
        show(
            p.older_than
                .map(|d| humantime::format_duration(d).to_string())
        ),
        show(p.keep_newest.map(|v| v.to_string())),
        show(p.min_free.map(|v| v.to_string())),
        humantime::format_duration(Duration::from_millis(stats.touch_interval_ms)),
    ))?;
    Ok(0)
}

fn pin(ctx: &Context, digest: &str, for_how_long: Option<Duration>) -> Result<i32> {
    let digest = Digest::parse(digest)?;
    let store = ctx.open_existing()?;
    store.pin(&digest, for_how_long)?;
    if ctx.json {
        print_json(&json!({"digest": digest.as_str(), "pinned": true,
            "for_ms": for_how_long.map(|d| d.as_millis() as u64)}))?;
    } else if !quiet() {
        print_text(&format!("pinned {digest}\n"))?;
    }
    Ok(0)
}

fn unpin(ctx: &Context, digest: &str) -> Result<i32> {
    let digest = Digest::parse(digest)?;
    let store = ctx.open_existing()?;
    if !store.unpin(&digest)? {
        return Err(Error::NotFound(format!(
            "{digest} is not pinned; `modstate stats` counts the pins"
        )));
    }
    if ctx.json {
        print_json(&json!({"digest": digest.as_str(), "pinned": false}))?;
    } else if !quiet() {
        print_text(&format!("unpinned {digest}\n"))?;
    }
    Ok(0)
}

fn report_put(ctx: &Context, digest: &Digest, outcome: PutOutcome) -> Result<i32> {
    if ctx.json {
        print_json(&json!({"digest": digest.as_str(), "outcome": outcome}))?;
    } else {
        if outcome == PutOutcome::Replaced {
            notice(&format!(
                "replaced the different payload stored under {digest}"
            ));
        }
        print_text(&format!("{digest}\n"))?;
    }
    Ok(0)
}

/// `artifact resolve`: file, store, compute; see the command's help.
fn resolve(
    ctx: &Context,
    digest: &str,
    file: Option<&Path>,
    write_file: bool,
    command: &[String],
) -> Result<i32> {
    // Before any thread starts, so every thread blocks the signals the forwarder receives.
    let signals = if command.is_empty() {
        None
    } else {
        Some(
            SignalForwarder::install()
                .map_err(|e| Error::io("handling signals", "artifact resolve", e))?,
        )
    };
    let digest = Digest::parse(digest)?;
    let store = ctx.open()?;
    let limit = store.options().max_artifact_bytes;
    let mut failure = None;
    let compute = signals.as_ref().map(|signals| {
        let failure = &mut failure;
        let store = &store;
        move |guard: &modstate::lock::KeyedGuard| {
            // A server lock lost while the command computes: stop it (SIGTERM, SIGKILL after
            // the grace), store nothing, exit 8.
            let stopper = signals.stopper();
            guard.on_lost(move |_| stopper.stop());
            let computed = compute(signals, command, limit);
            guard.check()?;
            match computed {
                Ok(bytes) => store.envelope(bytes),
                Err(Computed::Error(e)) => Err(e),
                Err(Computed::Exit(code, e)) => {
                    *failure = Some(code);
                    Err(e)
                }
            }
        }
    });
    // Pinned until printed: no collection removes what this process is serving.
    // Best effort: a store this user may only read has no lock directory to pin in.
    let pin = store.pin_while_running(&digest).ok();
    let resolved = match store.resolve_guarded(&digest, file, compute) {
        Ok(resolved) => resolved,
        Err(e) => match failure {
            // The command could not start, or was ended by a signal: its code, as a shell.
            Some(code) => {
                return Ok(super::output::fail(
                    ctx.json,
                    code,
                    "command",
                    &e.to_string(),
                ));
            }
            None => return Err(e),
        },
    };
    if let (Some(path), Some(skipped)) = (
        file,
        resolved.as_ref().and_then(|r| r.skipped_file.as_ref()),
    ) && let Some(reason) = skipped.reason()
    {
        notice(&format!(
            "skipped artifact file {}: {} ({reason})",
            path.display(),
            skipped.word()
        ));
    }
    let Some(resolved) = resolved else {
        return Err(absent(&digest));
    };
    if write_file
        && resolved.served != Served::File
        && let Some(path) = file
    {
        write_artifact_file(path, &digest, &resolved.envelope)?;
    }
    notice(&format!(
        "resolved {digest} from {}",
        resolved.served.word()
    ));
    if ctx.json {
        let state: serde_json::Value = resolved.envelope.to_value()?;
        let skipped = resolved
            .skipped_file
            .as_ref()
            .map(|o| json!({"outcome": o.word(), "reason": o.reason()}));
        print_json(
            &json!({"digest": digest.as_str(), "served": resolved.served,
            "state": state, "skipped_file": skipped}),
        )?;
    } else {
        let mut bytes = resolved.envelope.canonical_bytes()?;
        bytes.push(b'\n');
        print_bytes(&bytes)?;
    }
    drop(pin);
    Ok(0)
}

/// Why a compute command gave no envelope.
enum Computed {
    /// A failure with the usual exit code of its kind.
    Error(Error),
    /// The command could not be started (126/127) or was ended by a signal (128 + N): exit
    /// with that code, as shells and `env` do.
    Exit(i32, Error),
}

/// Runs the compute command with stdout captured (bounded) and stderr passed through, in its
/// own process group with signals forwarded, and waits for it to exit whatever happens.
fn compute(
    signals: &SignalForwarder,
    command: &[String],
    limit: usize,
) -> std::result::Result<Vec<u8>, Computed> {
    let Some((program, args)) = command.split_first() else {
        return Err(Computed::Error(Error::Invalid(
            "no compute command given after --".to_owned(),
        )));
    };
    let spawned = signals.spawn(
        Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped()),
    );
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            let code = spawn_failure_code(&e);
            return Err(Computed::Exit(
                code,
                Error::io("running compute command", program, e),
            ));
        }
    };
    let mut bytes = Vec::new();
    let read = match child.stdout.take() {
        Some(stdout) => stdout.take(limit as u64 + 1).read_to_end(&mut bytes),
        None => Ok(0),
    };
    if read.is_err() || bytes.len() > limit {
        let _ = child.kill();
    }
    let status = child.wait();
    signals.finished();
    let status = status.map_err(|e| Computed::Error(Error::io("waiting for", program, e)))?;
    read.map_err(|e| Computed::Error(Error::io("reading the output of", program, e)))?;
    if bytes.len() > limit {
        return Err(Computed::Error(Error::Invalid(format!(
            "compute command {program} printed more than the {limit}-byte limit; nothing was stored"
        ))));
    }
    if let Some(sig) = status.signal() {
        return Err(Computed::Exit(
            128 + sig,
            Error::io(
                "running compute command",
                program,
                std::io::Error::other(format!("it was ended by signal {sig}; nothing was stored")),
            ),
        ));
    }
    if !status.success() {
        return Err(Computed::Error(Error::io(
            "running compute command",
            program,
            std::io::Error::other(format!("it failed ({status}); nothing was stored")),
        )));
    }
    Ok(bytes)
}

fn absent(digest: &Digest) -> Error {
    Error::NotFound(format!(
        "no artifact stored for {digest}; `modstate artifact ls` lists what is stored"
    ))
}
