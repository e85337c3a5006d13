//! `modstate snapshot …`: export, verify, restore.

use std::io::IsTerminal;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};

use modstate::snapshot::{CopyProgress, ProgressFn};
use modstate::{RestoreOptions, Result, SnapshotInfo, SnapshotOptions, Store};

use super::{Context, print_json, print_text};

/// Copies smaller than this finish too fast for a progress bar to help.
const PROGRESS_MIN_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Subcommand)]
pub enum SnapshotCommand {
    /// Export a consistent snapshot while writers keep writing. PATH is a file, or a
    /// directory in which the snapshot is named <db name>-<UTC timestamp>.db.
    Export {
        /// Where to write: a snapshot file, or a directory to name it in.
        path: PathBuf,
        /// Keep only the newest N snapshots of this name pattern in PATH's directory.
        #[arg(long, value_name = "N", value_parser = parse_keep)]
        keep: Option<u64>,
    },
    /// Check a snapshot: exit 0 ok, 7 corrupt, 6 unknown schema.
    Verify {
        /// The snapshot file to check.
        path: PathBuf,
    },
    /// Replace the database's content with a verified snapshot; the current state is first
    /// saved beside the database as <db name>-pre-restore-<UTC timestamp>.db.
    Restore {
        /// The snapshot file to restore (it is verified first).
        path: PathBuf,
        /// Do not save the current state before restoring.
        #[arg(long)]
        no_safety_snapshot: bool,
    },
}

/// `--keep N`: at least 1, said in words rather than as a range of integers.
fn parse_keep(text: &str) -> std::result::Result<u64, String> {
    match text.parse::<u64>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!(
            "--keep needs a whole number of snapshots to keep, 1 or more (the newest N stay), not {text:?}"
        )),
    }
}

pub fn run(ctx: &Context, cmd: SnapshotCommand) -> Result<i32> {
    match cmd {
        SnapshotCommand::Export { path, keep } => {
            let store = ctx.open()?;
            let bar = Arc::new(OnceLock::<ProgressBar>::new());
            let options = SnapshotOptions {
                keep: keep.and_then(|n| NonZeroUsize::new(usize::try_from(n).ok()?)),
                progress: std::io::stderr()
                    .is_terminal()
                    .then(|| progress_bar(Arc::clone(&bar))),
            };
            let result = store.snapshot(&path, &options);
            if let Some(bar) = bar.get() {
                bar.finish_and_clear();
            }
            let report = result?;
            if ctx.json {
                print_json(&report)?;
            } else if !super::quiet() {
                let mut text = format!("wrote {}\n", report.info.path.display());
                text.push_str(&describe(&report.info));
                text.push_str(&format!("  took {} ms\n", report.elapsed_ms));
                for path in &report.removed {
                    text.push_str(&format!("removed {}\n", path.display()));
                }
                for path in &report.swept {
                    text.push_str(&format!(
                        "swept {} (left by a killed export)\n",
                        path.display()
                    ));
                }
                print_text(&text)?;
            }
            Ok(0)
        }
        SnapshotCommand::Verify { path } => {
            let info = Store::verify_snapshot(&path)?;
            if ctx.json {
                print_json(&info)?;
            } else {
                print_text(&format!("ok {}\n{}", info.path.display(), describe(&info)))?;
            }
            Ok(0)
        }
        SnapshotCommand::Restore {
            path,
            no_safety_snapshot,
        } => {
            let store = ctx.open()?;
            let report = store.restore(
                &path,
                &RestoreOptions {
                    safety_snapshot: !no_safety_snapshot,
                },
            )?;
            if ctx.json {
                print_json(&report)?;
            } else {
                let mut text = format!(
                    "restored {} into {}\n",
                    report.restored.path.display(),
                    store.path().display()
                );
                text.push_str(&describe(&report.restored));
                if let Some(safety) = &report.safety_snapshot {
                    text.push_str(&format!("previous state saved to {}\n", safety.display()));
                }
                print_text(&text)?;
            }
            Ok(0)
        }
    }
}

fn describe(info: &SnapshotInfo) -> String {
    let memories = info
        .memories
        .map(|n| format!(", {n} memories"))
        .unwrap_or_default();
    format!(
        "  {} bytes, {} pages, schema version {}, {} artifacts{memories}\n",
        info.bytes, info.pages, info.schema_version, info.artifacts
    )
}

/// A byte progress bar on stderr, drawn only once a copy turns out to be large.
fn progress_bar(bar: Arc<OnceLock<ProgressBar>>) -> ProgressFn {
    Arc::new(move |p: CopyProgress| {
        if p.total_bytes() < PROGRESS_MIN_BYTES {
            return;
        }
        let bar = bar.get_or_init(|| {
            let bar = ProgressBar::new(p.total_bytes());
            if let Ok(style) = ProgressStyle::with_template(
                "{msg} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message("snapshot");
            bar
        });
        bar.set_position(p.copied_bytes());
    })
}
