//! `modstate lockfile …`: the `dagger.lock` lookup lockfile. Each command is one session:
//! it reads the file at most once and writes it at most once (see `modstate::lockfile`).
//!
//! Without `--file` the file is found where Dagger looks: `dagger.lock` in the current
//! directory (beside `.dagger/`), else the legacy `.dagger/lock` when only that exists; a
//! successful command says which on stderr. What a rewrite changed silently (duplicates
//! collapsed, version 1 policies dropped) is one stderr line each.

use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use modstate::lockfile::{Flush, Json, Key, Session, SetOutcome, entry_line};
use modstate::{Error, Result};

use super::{Context, notice, one_line, print_json, print_text, quiet};

/// Longest request line `batch` accepts.
const MAX_REQUEST_BYTES: u64 = 16 << 20;
/// Dagger's canonical lockfile, beside `.dagger/`.
const DEFAULT_FILE: &str = "dagger.lock";
/// Where Dagger kept it before, still read when `dagger.lock` is absent.
const LEGACY_FILE: &str = ".dagger/lock";

#[derive(Args)]
pub struct LockfileArgs {
    /// The lockfile to use [default: dagger.lock, else the legacy .dagger/lock if only it exists].
    #[arg(long, global = true, value_name = "FILE")]
    file: Option<PathBuf>,

    /// How long to wait for the lockfile's lock (the only store option that applies here).
    #[command(flatten)]
    pub timeout: super::global::TimeoutArgs,

    #[command(subcommand)]
    command: LockfileCommand,
}

#[derive(Subcommand)]
pub enum LockfileCommand {
    /// Print the value pinned for a lookup, as JSON (exit 3 if absent).
    Get {
        /// Namespace of the lookup: "" for core, else the module's name.
        namespace: String,
        /// Operation of the lookup, e.g. container.from, git.ref, oci-latest.
        operation: String,
        /// JSON array, e.g. '["docker.io/library/alpine:3.20"]'.
        inputs: String,
    },
    /// Pin a lookup to a value; prints the entry as written (and on stderr what it replaced).
    Set {
        /// Namespace of the lookup: "" for core, else the module's name.
        namespace: String,
        /// Operation of the lookup, e.g. container.from, git.ref, oci-latest.
        operation: String,
        /// JSON array, e.g. '["github.com/dagger/go","refs/heads/main"]'.
        inputs: String,
        /// Any JSON value; a string needs its quotes, e.g. '"sha256:…"'.
        #[arg(allow_hyphen_values = true)]
        value: String,
    },
    /// Remove a pinned lookup (exit 3 if absent).
    Rm {
        /// Namespace of the lookup: "" for core, else the module's name.
        namespace: String,
        /// Operation of the lookup, e.g. container.from, git.ref, oci-latest.
        operation: String,
        /// JSON array, e.g. '["docker.io/library/alpine:3.20"]'.
        inputs: String,
    },
    /// List entries, one a line as in the file (--json: an array of objects).
    ///
    /// Unlike the other listings, each row is the entry's own line of dagger.lock, a JSON
    /// array [namespace, operation, inputs, value], on a terminal and piped alike: it already
    /// is one stable line per entry, and jq reads it.
    Ls {
        /// Only entries of this namespace (exact; "" is core).
        #[arg(long)]
        namespace: Option<String>,
        /// Only entries of this operation (exact).
        #[arg(long)]
        operation: Option<String>,
    },
    /// Rewrite the file exactly as Dagger's writer would (sorted, version 2, no trailing newline).
    Fmt {
        /// Exit 1 if the file is not what Dagger would write, writing nothing.
        #[arg(long)]
        check: bool,
    },
    /// Serve many requests from stdin in one session; write once at end of input.
    ///
    /// One JSON array a line: ["get",NS,OP,INPUTS], ["set",NS,OP,INPUTS,VALUE],
    /// ["rm",NS,OP,INPUTS] or ["flush"]. Each is answered on stdout with ["ok"], ["ok",VALUE]
    /// or ["absent"]. A bad request stops with exit 6; changes since the last flush are not
    /// written, and the error says what earlier flushes wrote.
    Batch,
}

/// Which file a command works on, and how it was chosen.
struct Target {
    path: PathBuf,
    /// Named with `--file`: a missing file is an error for reads, not an empty lockfile.
    named: bool,
    /// What to say on stderr about the choice (only when `--file` was not given).
    choice: Option<String>,
}

impl Target {
    fn resolve(file: Option<PathBuf>) -> Target {
        if let Some(path) = file {
            return Target {
                path,
                named: true,
                choice: None,
            };
        }
        let exists = |p: &str| std::fs::symlink_metadata(p).is_ok();
        let (path, choice) = if exists(DEFAULT_FILE) {
            (DEFAULT_FILE, format!("using {DEFAULT_FILE}"))
        } else if exists(LEGACY_FILE) {
            (
                LEGACY_FILE,
                format!(
                    "using {LEGACY_FILE} (the legacy location; there is no {DEFAULT_FILE} here)"
                ),
            )
        } else {
            (
                DEFAULT_FILE,
                format!("using {DEFAULT_FILE} (not there yet, nor {LEGACY_FILE})"),
            )
        };
        Target {
            path: PathBuf::from(path),
            named: false,
            choice: Some(choice),
        }
    }

    fn display(&self) -> String {
        self.path.display().to_string()
    }

    /// Says which file was used; called once a command succeeded (an error names the file).
    fn say_choice(&self) {
        if let Some(choice) = &self.choice {
            notice(choice);
        }
    }

    /// For reads of a file named with `--file`: its absence is an error, not an empty file.
    fn require(&self, session: &Session) -> Result<()> {
        if self.named && !session.file_exists() {
            return Err(Error::NotFound(format!(
                "no lockfile at {}; check the path, or `modstate lockfile set` creates one",
                self.display()
            )));
        }
        Ok(())
    }
}

pub fn run(ctx: &Context, args: LockfileArgs) -> Result<i32> {
    let target = Target::resolve(args.file);
    let session = Session::open(&target.path).with_lock_timeout(ctx.lock_timeout);
    match args.command {
        LockfileCommand::Get {
            namespace,
            operation,
            inputs,
        } => get(&target, session, namespace, operation, &inputs)?,
        LockfileCommand::Set {
            namespace,
            operation,
            inputs,
            value,
        } => set(ctx, &target, session, namespace, operation, &inputs, &value)?,
        LockfileCommand::Rm {
            namespace,
            operation,
            inputs,
        } => rm(ctx, &target, session, namespace, operation, &inputs)?,
        LockfileCommand::Ls {
            namespace,
            operation,
        } => ls(ctx, &target, session, namespace, operation)?,
        LockfileCommand::Fmt { check: true } => return fmt_check(ctx, &target, session),
        LockfileCommand::Fmt { check: false } => fmt(ctx, &target, session)?,
        LockfileCommand::Batch => {
            batch(&target, session)?;
            target.say_choice();
        }
    }
    Ok(0)
}

fn get(
    target: &Target,
    session: Session,
    namespace: String,
    operation: String,
    inputs: &str,
) -> Result<()> {
    let key = parse_key(namespace, operation, inputs)?;
    target.require(&session)?;
    let value = session
        .get(&key)?
        .ok_or_else(|| absent(&key, target, &session))?;
    session.close()?;
    target.say_choice();
    // The value is one JSON document already, so --json prints it as is too.
    print_text(&format!("{value}\n"))
}

fn set(
    ctx: &Context,
    target: &Target,
    session: Session,
    namespace: String,
    operation: String,
    inputs: &str,
    value: &str,
) -> Result<()> {
    let key = parse_key(namespace, operation, inputs)?;
    let value = parse_json(value, "VALUE")?;
    let outcome = session.set(key.clone(), value.clone())?;
    let flush = session.close()?;
    target.say_choice();
    say_notices(target, &flush);
    if let SetOutcome::Replaced(old) = &outcome {
        notice(&format!(
            "{}: replaced {old} with {value} for [{}]",
            target.display(),
            key.text()
        ));
    }
    if ctx.json {
        let mut doc = EntryDoc::new(&key, Some(&value))?;
        doc.file = Some(target.display());
        doc.changed = Some(outcome != SetOutcome::Unchanged);
        if let SetOutcome::Replaced(old) = &outcome {
            doc.replaced = Some(raw(old)?);
        }
        print_json(&doc)
    } else if quiet() {
        Ok(())
    } else {
        print_text(&format!("{}\n", entry_line(&key, &value)))
    }
}

fn rm(
    ctx: &Context,
    target: &Target,
    session: Session,
    namespace: String,
    operation: String,
    inputs: &str,
) -> Result<()> {
    let key = parse_key(namespace, operation, inputs)?;
    target.require(&session)?;
    if !session.delete(&key)? {
        return Err(absent(&key, target, &session));
    }
    let flush = session.close()?;
    target.say_choice();
    say_notices(target, &flush);
    if ctx.json {
        let mut doc = EntryDoc::new(&key, None)?;
        doc.file = Some(target.display());
        doc.removed = Some(true);
        print_json(&doc)
    } else if quiet() {
        Ok(())
    } else {
        print_text(&format!("removed {}\n", key_line(&key)))
    }
}

fn ls(
    ctx: &Context,
    target: &Target,
    session: Session,
    namespace: Option<String>,
    operation: Option<String>,
) -> Result<()> {
    target.require(&session)?;
    let entries = session.entries()?;
    session.close()?;
    target.say_choice();
    let wanted = entries.iter().filter(|(key, _)| {
        namespace.as_ref().is_none_or(|ns| key.namespace() == ns)
            && operation.as_ref().is_none_or(|op| key.operation() == op)
    });
    if ctx.json {
        let docs = wanted
            .map(|(key, value)| EntryDoc::new(key, Some(value)))
            .collect::<Result<Vec<_>>>()?;
        return print_json(&docs);
    }
    let mut text = String::new();
    for (key, value) in wanted {
        text.push_str(&entry_line(key, value));
        text.push('\n');
    }
    print_text(&text)
}

fn fmt_check(ctx: &Context, target: &Target, session: Session) -> Result<i32> {
    target.require(&session)?;
    let check = session.check_format()?;
    target.say_choice();
    if ctx.json {
        print_json(&json!({"file": target.display(), "canonical": check.canonical}))?;
    }
    if !check.canonical {
        eprintln!(
            "{}",
            one_line(&format!(
                "{} is not in canonical form (the bytes Dagger would write); run `modstate lockfile fmt` to rewrite it",
                target.display()
            ))
        );
        return Ok(1);
    }
    Ok(0)
}

fn fmt(ctx: &Context, target: &Target, session: Session) -> Result<()> {
    target.require(&session)?;
    let flush = session.rewrite()?;
    session.close()?;
    target.say_choice();
    say_notices(target, &flush);
    if ctx.json {
        print_json(&json!({"file": target.display(), "rewritten": flush.written}))
    } else if flush.written && !quiet() {
        print_text(&format!("formatted {}\n", target.display()))
    } else {
        Ok(())
    }
}

/// One stderr line for each thing a rewrite changed that Dagger changes silently.
fn say_notices(target: &Target, flush: &Flush) {
    for said in &flush.notices {
        notice(&format!("{}: {said}", target.display()));
    }
}

/// What a batch's `["flush"]` requests have written so far, for an error that stops it.
#[derive(Default)]
struct Written {
    /// (request line, changes written) of each flush that wrote.
    flushes: Vec<(usize, usize)>,
}

impl Written {
    /// The end of an error message: what is in the file and what is not.
    fn summary(&self, target: &Target, pending: usize) -> String {
        let Some(&(last_line, _)) = self.flushes.last() else {
            return "nothing was written".into();
        };
        let changes: usize = self.flushes.iter().map(|&(_, n)| n).sum();
        let lines: Vec<String> = self.flushes.iter().map(|(l, _)| l.to_string()).collect();
        let not_written = match pending {
            0 => "no change after it was pending".to_owned(),
            1 => "the 1 change after it was not written".to_owned(),
            n => format!("the {n} changes after it were not written"),
        };
        format!(
            "the flush{} on stdin line{} {} wrote {changes} change{} to {} and {}; {not_written} (last flush: line {last_line})",
            if lines.len() == 1 { "" } else { "es" },
            if lines.len() == 1 { "" } else { "s" },
            lines.join(", "),
            if changes == 1 { "" } else { "s" },
            target.display(),
            if changes == 1 {
                "it stays"
            } else {
                "they stay"
            },
        )
    }

    /// `error` with the summary appended (the kind, and so the exit code, is kept).
    fn explain(&self, error: Error, target: &Target, pending: usize) -> Error {
        let summary = self.summary(target, pending);
        match error {
            Error::Invalid(m) => Error::Invalid(format!("{m}; {summary}")),
            Error::Unsupported(m) => Error::Unsupported(format!("{m}; {summary}")),
            Error::NotFound(m) => Error::NotFound(format!("{m}; {summary}")),
            Error::Busy(m) => Error::Busy(format!("{m}; {summary}")),
            Error::Integrity(m) => Error::Integrity(format!("{m}; {summary}")),
            other if self.flushes.is_empty() => other,
            Error::Io {
                action,
                path,
                source,
            } => Error::Io {
                action,
                path,
                source: std::io::Error::new(source.kind(), format!("{source}; {summary}")),
            },
            other => other,
        }
    }
}

/// Serves requests from stdin on one session; flushes at end of input.
fn batch(target: &Target, session: Session) -> Result<()> {
    let stdin = std::io::stdin();
    let mut reader = stdin.lock();
    let mut line = Vec::new();
    let mut number = 0;
    let mut written = Written::default();
    loop {
        number += 1;
        line.clear();
        if let Err(e) = (&mut reader)
            .take(MAX_REQUEST_BYTES + 1)
            .read_until(b'\n', &mut line)
        {
            let pending = session.pending();
            session.discard();
            return Err(written.explain(Error::io("reading", "stdin", e), target, pending));
        }
        if line.is_empty() {
            break;
        }
        if line.len() as u64 > MAX_REQUEST_BYTES {
            let pending = session.pending();
            session.discard();
            let e = Error::Invalid(format!(
                "stdin line {number} is longer than {MAX_REQUEST_BYTES} bytes"
            ));
            return Err(written.explain(e, target, pending));
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serve(&session, &line) {
            Ok(Answer::Text(answer)) => print_text(&format!("{answer}\n"))?,
            Ok(Answer::Flushed(flush)) => {
                say_notices(target, &flush);
                if flush.written {
                    written.flushes.push((number, flush.changes));
                }
                print_text("[\"ok\"]\n")?;
            }
            Err(e) => {
                let pending = session.pending();
                session.discard();
                let e = match e {
                    Error::Invalid(why) => Error::Invalid(format!("stdin line {number}: {why}")),
                    other => other,
                };
                return Err(written.explain(e, target, pending));
            }
        }
    }
    let pending = session.pending();
    match session.close() {
        Ok(flush) => {
            say_notices(target, &flush);
            Ok(())
        }
        Err(e) => Err(written.explain(e, target, pending)),
    }
}

enum Answer {
    Text(String),
    Flushed(Flush),
}

/// Answers one batch request.
fn serve(session: &Session, line: &[u8]) -> Result<Answer> {
    let usage = "expected [\"get\",NS,OP,INPUTS], [\"set\",NS,OP,INPUTS,VALUE], [\"rm\",NS,OP,INPUTS] or [\"flush\"]";
    let text = std::str::from_utf8(line)
        .map_err(|_| Error::Invalid("request is not valid UTF-8".into()))?;
    let parts: Vec<&RawValue> =
        serde_json::from_str(text).map_err(|e| Error::Invalid(format!("{usage} ({e})")))?;
    let string = |raw: &RawValue| match serde_json::from_str::<Value>(raw.get()) {
        Ok(Value::String(s)) => Ok(s),
        _ => Err(Error::Invalid(format!(
            "{} is not a string; {usage}",
            raw.get()
        ))),
    };
    let key = |ns: &RawValue, op: &RawValue, inputs: &RawValue| {
        parse_key(string(ns)?, string(op)?, inputs.get())
    };
    let verb = match parts.first() {
        Some(raw) => string(raw)?,
        None => return Err(Error::Invalid(usage.into())),
    };
    let text = |s: &str| Ok(Answer::Text(s.to_owned()));
    match (verb.as_str(), parts.as_slice()) {
        ("get", [_, ns, op, inputs]) => match session.get(&key(ns, op, inputs)?)? {
            Some(value) => Ok(Answer::Text(format!("[\"ok\",{value}]"))),
            None => text("[\"absent\"]"),
        },
        ("set", [_, ns, op, inputs, value]) => {
            session.set(key(ns, op, inputs)?, parse_json(value.get(), "VALUE")?)?;
            text("[\"ok\"]")
        }
        ("rm", [_, ns, op, inputs]) => {
            if session.delete(&key(ns, op, inputs)?)? {
                text("[\"ok\"]")
            } else {
                text("[\"absent\"]")
            }
        }
        ("flush", [_]) => Ok(Answer::Flushed(session.flush()?)),
        _ => Err(Error::Invalid(usage.into())),
    }
}

fn parse_key(namespace: String, operation: String, inputs: &str) -> Result<Key> {
    let inputs = Json::parse(inputs).map_err(|e| {
        Error::Invalid(format!(
            "INPUTS {inputs:?} is not JSON ({e}); INPUTS is a JSON array, e.g. '[\"docker.io/library/alpine:3.20\"]'"
        ))
    })?;
    Key::new(namespace, operation, inputs)
}

fn parse_json(text: &str, what: &str) -> Result<Json> {
    Json::parse(text).map_err(|e| {
        Error::Invalid(format!(
            "{what} {text:?} is not JSON ({e}); a string needs its quotes, e.g. '\"refs/heads/main\"'"
        ))
    })
}

/// `[namespace,operation,inputs]` as it appears in the file.
fn key_line(key: &Key) -> String {
    format!("[{}]", key.text())
}

/// One entry in `--json` output; inputs and value spelled exactly as in the file (a plain
/// `Value` would respell `1E5` as `1e+5`).
#[derive(Serialize)]
struct EntryDoc<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<String>,
    namespace: &'a str,
    operation: &'a str,
    inputs: Box<RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<Box<RawValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    changed: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    replaced: Option<Box<RawValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    removed: Option<bool>,
}

impl<'a> EntryDoc<'a> {
    fn new(key: &'a Key, value: Option<&Json>) -> Result<EntryDoc<'a>> {
        Ok(EntryDoc {
            file: None,
            namespace: key.namespace(),
            operation: key.operation(),
            inputs: raw(key.inputs())?,
            value: value.map(raw).transpose()?,
            changed: None,
            replaced: None,
            removed: None,
        })
    }
}

fn raw(value: &Json) -> Result<Box<RawValue>> {
    RawValue::from_string(value.text().to_owned())
        .map_err(|e| Error::Invalid(format!("cannot serialize output: {e}")))
}

fn absent(key: &Key, target: &Target, session: &Session) -> Error {
    let missing = if session.file_exists() {
        ""
    } else {
        " (the file does not exist)"
    };
    Error::NotFound(format!(
        "no entry {} in {}{missing}; `modstate lockfile ls` lists the entries",
        key_line(key),
        Path::new(&target.path).display()
    ))
}
