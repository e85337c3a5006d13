//! `modstate artifact …`: module-state artifacts by module source digest.

use std::path::PathBuf;

use clap::Subcommand;
use serde_json::json;

use modstate::artifact::file::read_artifact_file_any;
use modstate::artifact::{read_artifact_file, write_artifact_file};
use modstate::{Digest, Error, Outcome, PutOutcome, Result};

use super::input::read_limited;
use super::{Context, print_bytes, print_json, print_text};

#[derive(Subcommand)]
pub enum ArtifactCommand {
    /// Store a state envelope {"type","version","state"} under a module source digest.
    Put {
        /// Module source digest: sha256: and 64 lowercase hex digits.
        digest: String,
        /// File holding the envelope; `-` reads stdin.
        #[arg(default_value = "-")]
        file: String,
    },
    /// Print the stored envelope exactly as stored (exit 3 if absent).
    Get { digest: String },
    /// List stored artifacts: digest, type, version, bytes, created.
    Ls,
    /// Remove an artifact (exit 3 if absent).
    Rm { digest: String },
    /// Store an artifact file's state under its moduleSourceDigest.
    Import { file: PathBuf },
    /// Write the artifact file for a stored digest, atomically.
    Export { digest: String, file: PathBuf },
    /// Tell whether an artifact file is current for a digest:
    /// loaded, missing, stale, malformed or unsupported (exit 0 only for loaded).
    Check {
        file: PathBuf,
        /// The module source digest the file should be for.
        #[arg(long)]
        digest: String,
    },
}

pub fn run(ctx: &Context, cmd: ArtifactCommand) -> Result<i32> {
    match cmd {
        ArtifactCommand::Put { digest, file } => {
            let digest = Digest::parse(&digest)?;
            let store = ctx.open()?;
            let bytes = read_limited(&file, store.options().max_artifact_bytes, "state envelope")?;
            let envelope = store.envelope(bytes)?;
            let outcome = store.put(&digest, &envelope)?;
            report_put(ctx, &digest, outcome)
        }
        ArtifactCommand::Get { digest } => {
            let digest = Digest::parse(&digest)?;
            let store = ctx.open()?;
            let envelope = store.get(&digest)?.ok_or_else(|| absent(&digest))?;
            // The envelope is one JSON document already, so --json prints it as is too.
            print_bytes(envelope.as_bytes())?;
            Ok(0)
        }
        ArtifactCommand::Ls => {
            let store = ctx.open()?;
            let rows = store.list()?;
            if ctx.json {
                print_json(&rows)?;
            } else {
                let mut text = String::from("DIGEST\tTYPE\tVERSION\tBYTES\tCREATED\n");
                for r in &rows {
                    text.push_str(&format!(
                        "{}\t{}\t{}\t{}\t{}\n",
                        r.digest, r.state_type, r.version, r.bytes, r.created_at
                    ));
                }
                print_text(&text)?;
            }
            Ok(0)
        }
        ArtifactCommand::Rm { digest } => {
            let digest = Digest::parse(&digest)?;
            let store = ctx.open()?;
            if !store.delete(&digest)? {
                return Err(absent(&digest));
            }
            if ctx.json {
                print_json(&json!({"digest": digest.as_str(), "removed": true}))?;
            } else {
                print_text(&format!("removed {digest}\n"))?;
            }
            Ok(0)
        }
        ArtifactCommand::Import { file } => {
            let store = ctx.open()?;
            let (digest, envelope) =
                read_artifact_file_any(&file, store.options().max_artifact_bytes)?;
            let outcome = store.put(&digest, &envelope)?;
            report_put(ctx, &digest, outcome)
        }
        ArtifactCommand::Export { digest, file } => {
            let digest = Digest::parse(&digest)?;
            let store = ctx.open()?;
            let envelope = store.get(&digest)?.ok_or_else(|| absent(&digest))?;
            write_artifact_file(&file, &digest, &envelope)?;
            if ctx.json {
                print_json(
                    &json!({"digest": digest.as_str(), "file": file.display().to_string()}),
                )?;
            } else {
                print_text(&format!("wrote {}\n", file.display()))?;
            }
            Ok(0)
        }
        ArtifactCommand::Check { file, digest } => {
            let digest = Digest::parse(&digest)?;
            let outcome = read_artifact_file(&file, &digest)?;
            if ctx.json {
                let mut doc = json!({"outcome": outcome.word(), "reason": outcome.reason()});
                if let Outcome::Stale { found } = &outcome {
                    doc["found"] = json!(found);
                }
                print_json(&doc)?;
            } else {
                print_text(&format!("{}\n", outcome.word()))?;
                if let Some(reason) = outcome.reason() {
                    eprintln!("{}: {reason}", file.display());
                }
            }
            Ok(if matches!(outcome, Outcome::Loaded(_)) {
                0
            } else {
                3
            })
        }
    }
}

fn report_put(ctx: &Context, digest: &Digest, outcome: PutOutcome) -> Result<i32> {
    if ctx.json {
        print_json(&json!({"digest": digest.as_str(), "outcome": outcome}))?;
    } else {
        if outcome == PutOutcome::Replaced {
            eprintln!("replaced the different payload stored under {digest}");
        }
        print_text(&format!("{digest}\n"))?;
    }
    Ok(0)
}

fn absent(digest: &Digest) -> Error {
    Error::NotFound(format!(
        "no artifact stored for {digest}; `modstate artifact ls` lists what is stored"
    ))
}
