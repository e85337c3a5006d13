//! `modstate lockfile …`: the `dagger.lock` lookup lockfile. Each command is one session:
//! it reads the file at most once and writes it at most once (see `modstate::lockfile`).

use std::io::{BufRead, Read};
use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use modstate::lockfile::{Json, Key, Session, entry_line};
use modstate::{Error, Result};

use super::{Context, print_json, print_text};

/// Longest request line `batch` accepts.
const MAX_REQUEST_BYTES: u64 = 16 << 20;

#[derive(Args)]
pub struct LockfileArgs {
    /// The lockfile to use.
    #[arg(
        long,
        global = true,
        default_value = "./dagger.lock",
        value_name = "FILE"
    )]
    file: PathBuf,

    #[command(subcommand)]
    command: LockfileCommand,
}

#[derive(Subcommand)]
pub enum LockfileCommand {
    /// Print the value pinned for a lookup, as JSON (exit 3 if absent).
    Get {
        namespace: String,
        operation: String,
        /// JSON array, e.g. '["docker.io/library/alpine:3.20"]'.
        inputs: String,
    },
    /// Pin a lookup to a value; prints the entry as written.
    Set {
        namespace: String,
        operation: String,
        /// JSON array, e.g. '["github.com/dagger/go","refs/heads/main"]'.
        inputs: String,
        /// Any JSON value; a string needs its quotes, e.g. '"sha256:…"'.
        #[arg(allow_hyphen_values = true)]
        value: String,
    },
    /// Remove a pinned lookup (exit 3 if absent).
    Rm {
        namespace: String,
        operation: String,
        inputs: String,
    },
    /// List entries, one a line as in the file (--json: an array of objects).
    Ls {
        #[arg(long)]
        namespace: Option<String>,
        #[arg(long)]
        operation: Option<String>,
    },
    /// Rewrite the file canonically (sorted, compact, version 2).
    Fmt {
        /// Exit 1 if the file is not canonical, writing nothing.
        #[arg(long)]
        check: bool,
    },
    /// Serve many requests from stdin in one session; write once at end of input.
    ///
    /// One JSON array a line: ["get",NS,OP,INPUTS], ["set",NS,OP,INPUTS,VALUE],
    /// ["rm",NS,OP,INPUTS] or ["flush"]. Each is answered on stdout with ["ok"], ["ok",VALUE]
    /// or ["absent"]. A bad request stops with exit 6 and writes nothing.
    Batch,
}

pub fn run(ctx: &Context, args: LockfileArgs) -> Result<i32> {
    let session = Session::open(&args.file).with_lock_timeout(ctx.lock_timeout);
    match args.command {
        LockfileCommand::Get {
            namespace,
            operation,
            inputs,
        } => {
            let key = parse_key(namespace, operation, &inputs)?;
            let value = session.get(&key)?.ok_or_else(|| absent(&key, &session))?;
            session.close()?;
            // The value is one JSON document already, so --json prints it as is too.
            print_text(&format!("{value}\n"))?;
        }
        LockfileCommand::Set {
            namespace,
            operation,
            inputs,
            value,
        } => {
            let key = parse_key(namespace, operation, &inputs)?;
            let value = parse_json(&value, "VALUE")?;
            let changed = session.set(key.clone(), value.clone())?;
            session.close()?;
            if ctx.json {
                let mut doc = EntryDoc::new(&key, Some(&value))?;
                doc.changed = Some(changed);
                print_json(&doc)?;
            } else {
                print_text(&format!("{}\n", entry_line(&key, &value)))?;
            }
        }
        LockfileCommand::Rm {
            namespace,
            operation,
            inputs,
        } => {
            let key = parse_key(namespace, operation, &inputs)?;
            if !session.delete(&key)? {
                return Err(absent(&key, &session));
            }
            session.close()?;
            if ctx.json {
                let mut doc = EntryDoc::new(&key, None)?;
                doc.removed = Some(true);
                print_json(&doc)?;
            } else {
                print_text(&format!("removed {}\n", key_line(&key)))?;
            }
        }
        LockfileCommand::Ls {
            namespace,
            operation,
        } => {
            let entries = session.entries()?;
            session.close()?;
            let wanted = entries.iter().filter(|(key, _)| {
                namespace.as_ref().is_none_or(|ns| key.namespace() == ns)
                    && operation.as_ref().is_none_or(|op| key.operation() == op)
            });
            if ctx.json {
                let docs = wanted
                    .map(|(key, value)| EntryDoc::new(key, Some(value)))
                    .collect::<Result<Vec<_>>>()?;
                print_json(&docs)?;
            } else {
                let mut text = String::new();
                for (key, value) in wanted {
                    text.push_str(&entry_line(key, value));
                    text.push('\n');
                }
                print_text(&text)?;
            }
        }
        LockfileCommand::Fmt { check: true } => {
            let canonical = session.is_canonical()?;
            if ctx.json {
                print_json(&json!({"file": file_name(&session), "canonical": canonical}))?;
            }
            if !canonical {
                eprintln!(
                    "{} is not in canonical form; run `modstate lockfile fmt` to rewrite it",
                    file_name(&session)
                );
                return Ok(1);
            }
        }
        LockfileCommand::Fmt { check: false } => {
            let file = file_name(&session);
            let rewritten = session.rewrite()?;
            session.close()?;
            if ctx.json {
                print_json(&json!({"file": file, "rewritten": rewritten}))?;
            } else if rewritten {
                print_text(&format!("formatted {file}\n"))?;
            }
        }
        LockfileCommand::Batch => batch(session)?,
    }
    Ok(0)
}

/// Serves requests from stdin on one session; flushes at end of input.
fn batch(session: Session) -> Result<()> {
    let stdin = std::io::stdin();
    let mut reader = stdin.lock();
    let mut line = Vec::new();
    let mut number = 0;
    loop {
        number += 1;
        line.clear();
        (&mut reader)
            .take(MAX_REQUEST_BYTES + 1)
            .read_until(b'\n', &mut line)
            .map_err(|e| Error::io("reading", "stdin", e))?;
        if line.is_empty() {
            break;
        }
        if line.len() as u64 > MAX_REQUEST_BYTES {
            session.discard();
            return Err(Error::Invalid(format!(
                "stdin line {number} is longer than {MAX_REQUEST_BYTES} bytes; nothing was written"
            )));
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serve(&session, &line) {
            Ok(answer) => print_text(&format!("{answer}\n"))?,
            Err(Error::Invalid(why)) => {
                session.discard();
                return Err(Error::Invalid(format!(
                    "stdin line {number}: {why}; nothing was written"
                )));
            }
            Err(e) => {
                session.discard();
                return Err(e);
            }
        }
    }
    session.close()
}

/// Answers one batch request.
fn serve(session: &Session, line: &[u8]) -> Result<String> {
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
    match (verb.as_str(), parts.as_slice()) {
        ("get", [_, ns, op, inputs]) => Ok(match session.get(&key(ns, op, inputs)?)? {
            Some(value) => format!("[\"ok\",{value}]"),
            None => "[\"absent\"]".into(),
        }),
        ("set", [_, ns, op, inputs, value]) => {
            session.set(key(ns, op, inputs)?, parse_json(value.get(), "VALUE")?)?;
            Ok("[\"ok\"]".into())
        }
        ("rm", [_, ns, op, inputs]) => Ok(if session.delete(&key(ns, op, inputs)?)? {
            "[\"ok\"]".into()
        } else {
            "[\"absent\"]".into()
        }),
        ("flush", [_]) => {
            session.flush()?;
            Ok("[\"ok\"]".into())
        }
        _ => Err(Error::Invalid(usage.into())),
    }
}

fn parse_key(namespace: String, operation: String, inputs: &str) -> Result<Key> {
    Key::new(namespace, operation, parse_json(inputs, "INPUTS")?)
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
    namespace: &'a str,
    operation: &'a str,
    inputs: Box<RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<Box<RawValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    changed: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    removed: Option<bool>,
}

impl<'a> EntryDoc<'a> {
    fn new(key: &'a Key, value: Option<&Json>) -> Result<EntryDoc<'a>> {
        Ok(EntryDoc {
            namespace: key.namespace(),
            operation: key.operation(),
            inputs: raw(key.inputs())?,
            value: value.map(raw).transpose()?,
            changed: None,
            removed: None,
        })
    }
}

fn raw(value: &Json) -> Result<Box<RawValue>> {
    RawValue::from_string(value.text().to_owned())
        .map_err(|e| Error::Invalid(format!("cannot serialize output: {e}")))
}

fn absent(key: &Key, session: &Session) -> Error {
    Error::NotFound(format!(
        "no entry {} in {}; `modstate lockfile ls` lists the entries",
        key_line(key),
        session.path().display()
    ))
}

fn file_name(session: &Session) -> String {
    session.path().display().to_string()
}
