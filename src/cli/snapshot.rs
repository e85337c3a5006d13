//! `modstate snapshot …`: export, ls, verify, restore, to and from local paths or
//! `s3://bucket/prefix/`.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::num::NonZeroUsize;
use std::sync::{Arc, OnceLock};

use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use modstate::snapshot::{CopyProgress, ProgressFn, SnapshotEntry, SnapshotLocation};
use modstate::{RestoreOptions, Result, SnapshotInfo, SnapshotOptions, Store};

use super::{Context, Table, notice, print_json, print_text, quiet};

/// Copies smaller than this finish too fast for a progress bar to help.
const PROGRESS_MIN_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Subcommand)]
pub enum SnapshotCommand {
    /// Export a consistent snapshot while writers keep writing. PATH is a file, or a
    /// directory in which the snapshot is named <db name>-<UTC timestamp>.db (for a
    /// postgres:// database, its database name); or
    /// s3://bucket/prefix/ (credentials and endpoint from AWS_* variables, see GUIDE.md).
    Export {
        /// Where to write: a snapshot file, a directory to name it in, or s3://bucket/prefix/.
        #[arg(value_name = "PATH|s3://BUCKET/PREFIX/")]
        path: OsString,
        /// Keep only the newest N snapshots of this name pattern in PATH's directory.
        #[arg(long, value_name = "N", value_parser = parse_keep)]
        keep: Option<u64>,
    },
    /// List the snapshots in a directory or under s3://bucket/prefix/, oldest first.
    ///
    /// Each row: when it was taken (from its name), its size, its artifact and memory counts
    /// (for an S3 object only with --verify, which downloads it), and with --verify whether
    /// it verifies. On a terminal: aligned columns under a header. Piped: TAKEN, BYTES,
    /// ARTIFACTS, MEMORIES, [VERIFIED,] LOCATION separated by tabs, no header, `-` where a
    /// value is not known.
    Ls {
        /// The directory, or s3://bucket/prefix/, to list.
        #[arg(value_name = "DIR|s3://BUCKET/PREFIX/")]
        path: OsString,
        /// Check each snapshot as `snapshot verify` does; exit 7 if any fails.
        #[arg(long)]
        verify: bool,
    },
    /// Check a snapshot: exit 0 ok, 7 corrupt (or an S3 object whose sha256 does not match),
    /// 6 unknown schema. s3://bucket/prefix/ checks the newest snapshot there.
    Verify {
        /// The snapshot file, s3://bucket/key, or s3://bucket/prefix/ (its newest).
        #[arg(value_name = "PATH|s3://BUCKET/KEY")]
        path: OsString,
    },
    /// Replace the database's content with a verified snapshot; the current state is first
    /// saved beside the database as <db name>-pre-restore-<UTC timestamp>.db (for a
    /// postgres:// database: <database name>-pre-restore-<UTC timestamp>.db in
    /// $XDG_DATA_HOME/modstate/pre-restore/, else ~/.local/share/modstate/pre-restore/).
    /// s3://bucket/prefix/ restores this database's newest snapshot there.
    Restore {
        /// The snapshot file, s3://bucket/key, or s3://bucket/prefix/ (its newest).
        #[arg(value_name = "PATH|s3://BUCKET/KEY")]
        path: OsString,
        /// Do not save the current state before restoring.
        #[arg(long, conflicts_with = "keep_pre_restore")]
        no_safety_snapshot: bool,
        /// Keep only the newest N safety copies (<db name>-pre-restore-*.db, where the
        /// restore saves them), this one included, so they do not pile up.
        #[arg(long, value_name = "N", value_parser = parse_keep_pre_restore)]
        keep_pre_restore: Option<u64>,
    },
}

/// `--keep N`: at least 1, said in words rather than as a range of integers.
fn parse_keep(text: &str) -> std::result::Result<u64, String> {
    at_least_one(text, "--keep", "the newest N stay")
}

fn parse_keep_pre_restore(text: &str) -> std::result::Result<u64, String> {
    at_least_one(
        text,
        "--keep-pre-restore",
        "the newest N safety copies stay; --no-safety-snapshot makes none",
    )
}

fn at_least_one(text: &str, flag: &str, why: &str) -> std::result::Result<u64, String> {
    match text.parse::<u64>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!(
            "{flag} needs a whole number of snapshots to keep, 1 or more ({why}), not {text:?}"
        )),
    }
}

pub fn run(ctx: &Context, cmd: SnapshotCommand) -> Result<i32> {
    // Ctrl-C or a TERM from a job runner must not leave a half-written copy (an export's, a
    // restore's safety snapshot, a download) behind.
    modstate::snapshot::remove_temp_files_on_signal()?;
    match cmd {
        SnapshotCommand::Export { path, keep } => export(ctx, &path, keep),
        SnapshotCommand::Ls { path, verify } => ls(ctx, &path, verify),
        SnapshotCommand::Verify { path } => verify(ctx, &path),
        SnapshotCommand::Restore {
            path,
            no_safety_snapshot,
            keep_pre_restore,
        } => restore(ctx, &path, no_safety_snapshot, keep_pre_restore),
    }
}

fn export(ctx: &Context, path: &OsString, keep: Option<u64>) -> Result<i32> {
    // A bad location is refused before the database is even opened.
    let location = SnapshotLocation::parse(path)?;
    let store = ctx.open()?;
    let bar = Arc::new(OnceLock::<ProgressBar>::new());
    let options = SnapshotOptions {
        keep: keep.and_then(|n| NonZeroUsize::new(usize::try_from(n).ok()?)),
        progress: (std::io::stderr().is_terminal() && !quiet())
            .then(|| progress_bar(Arc::clone(&bar))),
    };
    let result = store.snapshot_to(&location, &options);
    if let Some(bar) = bar.get() {
        bar.finish_and_clear();
    }
    let report = result?;
    if ctx.json {
        print_json(&report)?;
    } else if !quiet() {
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

/// One row of `snapshot ls`.
#[derive(Serialize)]
struct Listed {
    #[serde(flatten)]
    entry: SnapshotEntry,
    artifacts: Option<u64>,
    memories: Option<u64>,
    /// With --verify: whether it verifies.
    #[serde(skip_serializing_if = "Option::is_none")]
    verified: Option<bool>,
    /// With --verify, when it does not: why.
    #[serde(skip_serializing_if = "Option::is_none")]
    problem: Option<String>,
}

fn ls(ctx: &Context, path: &OsString, verify: bool) -> Result<i32> {
    let location = SnapshotLocation::parse(path)?;
    let local = matches!(location, SnapshotLocation::Local(_));
    let entries = Store::list_snapshots(&location)?;
    let mut rows = Vec::with_capacity(entries.len());
    for entry in entries {
        let mut row = Listed {
            entry,
            artifacts: None,
            memories: None,
            verified: None,
            problem: None,
        };
        if verify {
            match Store::verify_snapshot_at(&SnapshotLocation::parse(std::ffi::OsStr::new(
                &row.entry.location,
            ))?) {
                Ok(info) => {
                    row.artifacts = Some(info.artifacts);
                    row.memories = info.memories;
                    row.verified = Some(true);
                }
                Err(e) => {
                    row.verified = Some(false);
                    row.problem = Some(e.to_string());
                }
            }
        } else if local
            && let Ok((artifacts, memories)) = Store::snapshot_counts(&row.entry.location)
        {
            row.artifacts = Some(artifacts);
            row.memories = memories;
        }
        rows.push(row);
    }
    let failed = rows.iter().filter(|r| r.verified == Some(false)).count();
    if ctx.json {
        print_json(&rows)?;
    } else {
        let known = |n: Option<u64>| n.map_or_else(|| "-".to_owned(), |n| n.to_string());
        let mut table = if verify {
            Table::new(&[
                "TAKEN",
                "BYTES",
                "ARTIFACTS",
                "MEMORIES",
                "VERIFIED",
                "LOCATION",
            ])
        } else {
            Table::new(&["TAKEN", "BYTES", "ARTIFACTS", "MEMORIES", "LOCATION"])
        };
        for r in &rows {
            let mut cells = vec![
                r.entry.taken_at.clone(),
                r.entry.bytes.to_string(),
                known(r.artifacts),
                known(r.memories),
            ];
            if let Some(ok) = r.verified {
                cells.push(if ok { "ok".into() } else { "FAILED".into() });
            }
            cells.push(r.entry.location.clone());
            table.row(cells);
        }
        table.print()?;
    }
    if failed > 0 {
        let first = rows
            .iter()
            .find_map(|r| r.problem.as_deref().map(|p| (r.entry.location.as_str(), p)));
        if let Some((location, problem)) = first {
            eprintln!(
                "error: {}",
                super::one_line(&format!(
                    "{failed} of {} snapshots failed to verify; first: {location}: {problem}",
                    rows.len()
                ))
            );
        }
        return Ok(7);
    }
    Ok(0)
}

fn verify(ctx: &Context, path: &OsString) -> Result<i32> {
    let info = Store::verify_snapshot_at(&SnapshotLocation::parse(path)?)?;
    if ctx.json {
        print_json(&info)?;
    } else {
        print_text(&format!("ok {}\n{}", info.path.display(), describe(&info)))?;
    }
    Ok(0)
}

fn restore(
    ctx: &Context,
    path: &OsString,
    no_safety_snapshot: bool,
    keep_pre_restore: Option<u64>,
) -> Result<i32> {
    let location = SnapshotLocation::parse(path)?;
    let store = ctx.open()?;
    let report = store.restore_from(
        &location,
        &RestoreOptions {
            safety_snapshot: !no_safety_snapshot,
        },
    )?;
    // Only once the restore succeeded: a failed one leaves every safety copy where it was.
    let mut pruned = Vec::new();
    if let (Some(keep), Some(newest)) = (
        keep_pre_restore.and_then(|n| NonZeroUsize::new(usize::try_from(n).ok()?)),
        &report.safety_snapshot,
    ) {
        pruned = store.prune_safety_snapshots(keep, newest)?;
    }
    if ctx.json {
        let mut doc = serde_json::to_value(&report)
            .map_err(|e| modstate::Error::Invalid(format!("cannot serialize output: {e}")))?;
        doc["removed_safety_snapshots"] = serde_json::json!(pruned);
        print_json(&doc)?;
    } else if !quiet() {
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
        for path in &pruned {
            notice(&format!("removed the older safety copy {}", path.display()));
        }
    }
    Ok(0)
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
