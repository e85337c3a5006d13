//! The commands about the store as a whole: `init`, `doctor`, `stats`, `vacuum`, and the
//! generated `completions` and `man`.

use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use serde_json::json;

use modstate::maintenance::{file_len, file_mode, leftover_temps, suffixed};
use modstate::store::{SCHEMA_VERSION, display_database};
use modstate::{Error, Result, Store};

use super::{Context, Table, notice, print_bytes, print_json, print_text, quiet};

/// A command with no arguments of its own.
#[derive(Args)]
pub struct NoArgs {}

pub const COMPLETIONS_HELP: &str = "\
Examples:
  modstate completions bash > ~/.local/share/bash-completion/completions/modstate
  modstate completions zsh > ~/.zfunc/_modstate     # with fpath+=~/.zfunc before compinit
  modstate completions fish > ~/.config/fish/completions/modstate.fish
  modstate completions powershell >> $PROFILE
  modstate completions elvish >> ~/.config/elvish/rc.elv";

#[derive(Args)]
pub struct CompletionsArgs {
    /// The shell to write completions for.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

pub fn init(ctx: &Context) -> Result<i32> {
    let store = ctx.open()?;
    let path = store.path().display().to_string();
    if ctx.json {
        print_json(
            &json!({"path": path, "schema_version": store.schema_version(),
            "source": ctx.db_source}),
        )?;
    } else {
        print_text(&format!(
            "{path}\nschema version {}\n",
            store.schema_version()
        ))?;
    }
    Ok(0)
}

pub fn completions(args: &CompletionsArgs) -> Result<i32> {
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut super::command(), "modstate", &mut out);
    print_bytes(&out)?;
    Ok(0)
}

pub fn man() -> Result<i32> {
    let mut out = Vec::new();
    clap_mangen::Man::new(super::command())
        .render(&mut out)
        .map_err(|e| Error::io("rendering", "the man page", e))?;
    print_bytes(&out)?;
    Ok(0)
}

/// One line of `doctor`.
#[derive(Serialize)]
struct Check {
    name: &'static str,
    ok: bool,
    detail: String,
}

fn check(name: &'static str, ok: bool, detail: impl Into<String>) -> Check {
    Check {
        name,
        ok,
        detail: detail.into(),
    }
}

/// `doctor`: every check, one line each; exit 0 when all pass, 1 otherwise. It reports, and
/// changes nothing (the index check is a write that writes nothing).
pub fn doctor(ctx: &Context) -> Result<i32> {
    let mut checks = Vec::new();
    let path = ctx.db_path()?;
    match Store::open_existing(path, ctx.options()) {
        Err(Error::NotFound(_)) => checks.push(check(
            "database",
            false,
            format!(
                "no database at {} ({}); run modstate init",
                display_database(path),
                ctx.db_source.describe()
            ),
        )),
        Err(e) => checks.push(check(
            "database",
            false,
            format!(
                "{} ({}): {e}",
                display_database(path),
                ctx.db_source.describe()
            ),
        )),
        Ok(store) => {
            store_checks(ctx, &store, &mut checks)?;
            checks.extend(vector_check(ctx, &store)?);
        }
    }
    let healthy = checks.iter().all(|c| c.ok);
    if !healthy {
        let failed: Vec<&str> = checks.iter().filter(|c| !c.ok).map(|c| c.name).collect();
        eprintln!(
            "error: doctor found {} problem{}: {} (see the FAIL lines)",
            failed.len(),
            if failed.len() == 1 { "" } else { "s" },
            failed.join(", ")
        );
    }
    if ctx.json {
        print_json(&json!({"healthy": healthy, "checks": checks}))?;
    } else {
        let mut text = String::new();
        for c in &checks {
            let mark = if c.ok { "ok  " } else { "FAIL" };
            text.push_str(&format!(
                "{mark} {:<12} {}\n",
                c.name,
                super::one_line(&c.detail)
            ));
        }
        print_text(&text)?;
    }
    Ok(if healthy { 0 } else { 1 })
}

fn store_checks(ctx: &Context, store: &Store, checks: &mut Vec<Check>) -> Result<()> {
    let canonical = store.canonical_path();
    checks.push(check(
        "database",
        true,
        format!(
            "{} ({}), backend {}",
            canonical.display(),
            ctx.db_source.describe(),
            if store.file().is_some() {
                "sqlite"
            } else {
                "postgres"
            }
        ),
    ));
    let version = store.schema_version();
    checks.push(check(
        "schema",
        version == SCHEMA_VERSION,
        if version == SCHEMA_VERSION {
            format!("version {version} (current)")
        } else {
            format!(
                "version {version}, this modstate writes {SCHEMA_VERSION}; any write migrates it"
            )
        },
    ));
    let integrity = store.check_integrity()?;
    checks.push(match &integrity.integrity_problem {
        None => check(
            "integrity",
            true,
            if store.file().is_some() {
                "integrity_check ok"
            } else {
                "every artifact's sha256 and size match its row"
            },
        ),
        Some(p) => check(
            "integrity",
            false,
            format!("{p}; restore a snapshot (modstate snapshot restore)"),
        ),
    });
    checks.push(match &integrity.fts_problem {
        None => check("search index", true, "full-text index matches the memories"),
        Some(p) if p.starts_with("skipped") => check("search index", true, p.clone()),
        Some(p) => check(
            "search index",
            false,
            format!("the full-text index does not match the memories: {p}"),
        ),
    });
    // The file checks; a server looks after its own files, log and temp space.
    if let Some(db) = store.file() {
        file_checks(store, db, checks);
    }
    let states = store.locks().status()?;
    let held: Vec<String> = states
        .iter()
        .filter(|s| !s.holders.is_empty())
        .map(|s| {
            let pids: Vec<String> = s.holders.iter().map(|h| format!("pid {}", h.pid)).collect();
            format!("{} {} by {}", s.name, s.state, pids.join(", "))
        })
        .collect();
    checks.push(check(
        "locks",
        true,
        if held.is_empty() {
            "none held".to_owned()
        } else {
            held.join("; ")
        },
    ));
    Ok(())
}

/// The checks of a database file: its modes, its WAL, leftover temp files beside it.
fn file_checks(store: &Store, canonical: &Path, checks: &mut Vec<Check>) {
    checks.push(modes_check(canonical, store.locks().directory()));
    let wal = store.wal_path().map_or(0, |wal| file_len(&wal));
    let limit = store.options().wal_size_limit;
    checks.push(check(
        "wal",
        wal <= limit,
        if wal <= limit {
            format!("{} (limit {})", bytes(wal), bytes(limit))
        } else {
            format!(
                "{} is over the {} limit: a long reader pins it; it shrinks once readers finish",
                bytes(wal),
                bytes(limit)
            )
        },
    ));
    let dir = canonical.parent().unwrap_or(Path::new("."));
    let temps = leftover_temps(dir);
    checks.push(check(
        "temp files",
        temps.is_empty(),
        if temps.is_empty() {
            format!("no leftovers in {}", dir.display())
        } else {
            let names: Vec<String> = temps.iter().map(|p| p.display().to_string()).collect();
            format!(
                "left by writers that died: {}; remove them",
                names.join(", ")
            )
        },
    ));
}

/// The database, its WAL and shared memory, and the lock directory must be private to the
/// user: memories can hold secrets.
fn modes_check(db: &Path, locks: Option<&Path>) -> Check {
    let mut open = Vec::new();
    let mut shown = Vec::new();
    let files = [db.to_path_buf(), suffixed(db, "-wal"), suffixed(db, "-shm")];
    for path in files.into_iter().chain(locks.map(Path::to_path_buf)) {
        if let Some(mode) = file_mode(&path) {
            shown.push(format!("{} {mode:o}", file_name(&path)));
            if mode & 0o077 != 0 {
                open.push(format!("{} ({mode:o})", path.display()));
            }
        }
    }
    if open.is_empty() {
        check("file modes", true, shown.join(", "))
    } else {
        check(
            "file modes",
            false,
            format!(
                "readable or writable by others: {}; chmod go-rwx them",
                open.join(", ")
            ),
        )
    }
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// With an embedder configured: whether it answers, and how many memories lack a vector of
/// its model (not a failure: `memory embed` fills them in, and keyword search finds them).
fn vector_check(ctx: &Context, store: &Store) -> Result<Option<Check>> {
    let Some(embedder) = ctx.embedder.embedder()? else {
        return Ok(None);
    };
    Ok(Some(match store.vector_coverage(&embedder) {
        Ok(c) if c.missing == 0 => check(
            "vectors",
            true,
            format!("every memory has a vector of {}", c.model),
        ),
        Ok(c) => check(
            "vectors",
            true,
            format!(
                "{} of {} memories lack a vector of {}; run modstate memory embed",
                c.missing,
                c.missing + c.embedded,
                c.model
            ),
        ),
        Err(e) => check("vectors", false, e.to_string()),
    }))
}

/// Bytes in the unit a person reads: `123 B`, `4.0 KiB`, `16.0 MiB`.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// `stats`: counts and sizes; reads only.
pub fn stats(ctx: &Context) -> Result<i32> {
    let store = ctx.open_existing()?;
    let stats = store.stats()?;
    // With an embedder: how many memories lack a vector of its model (or why that is unknown).
    let vectors = ctx
        .embedder
        .embedder()?
        .map(|embedder| store.vector_coverage(&embedder).map_err(|e| e.to_string()));
    if ctx.json {
        let mut out = json!({"database": store.canonical_path().display().to_string(),
            "source": ctx.db_source, "stats": stats});
        match &vectors {
            Some(Ok(c)) => out["vectors"] = json!(c),
            Some(Err(e)) => out["vectors"] = json!({"error": e}),
            None => {}
        }
        print_json(&out)?;
        return Ok(0);
    }
    let mut table = Table::new(&["WHAT", "VALUE"]);
    let mut row = |what: &str, value: String| table.row(vec![what.to_owned(), value]);
    row("database", store.canonical_path().display().to_string());
    row("artifacts", stats.artifacts.to_string());
    row("artifact_bytes", stats.artifact_bytes.to_string());
    let c = &stats.cache;
    let or_dash = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
    row("artifact_cap", or_dash(c.policy.max_size));
    row("artifact_hits", c.hits.to_string());
    row("artifact_misses", c.misses.to_string());
    row("artifact_evictions", c.evictions.to_string());
    row("artifact_collections", c.collections.to_string());
    row(
        "artifact_last_collection",
        match (&c.last_collection_at, c.last_collection_freed) {
            (Some(at), Some(freed)) => format!("{at} freed {freed} bytes"),
            _ => "-".to_owned(),
        },
    );
    row("artifact_pinned_bytes", c.pinned_bytes.to_string());
    for ns in &stats.memories {
        row(
            &format!("memories[{}]", ns.namespace),
            ns.memories.to_string(),
        );
    }
    row(
        "memories",
        stats
            .memories
            .iter()
            .map(|n| n.memories)
            .sum::<u64>()
            .to_string(),
    );
    match &vectors {
        Some(Ok(c)) => {
            row(&format!("vectors[{}]", c.model), c.embedded.to_string());
            row("memories_without_vector", c.missing.to_string());
        }
        Some(Err(e)) => row("vectors", format!("unknown ({e})")),
        None => {}
    }
    row("history_events", stats.history_events.to_string());
    row("history_bytes", stats.history_bytes.to_string());
    row("db_bytes", stats.db_bytes.to_string());
    // A server's log and free space belong to the whole cluster, not to this store.
    if store.file().is_some() {
        row("wal_bytes", stats.wal_bytes.to_string());
        row(
            "free_bytes",
            (stats.free_pages * stats.page_size).to_string(),
        );
    }
    row(
        "last_snapshot",
        "unknown (snapshots are not recorded in the database)".to_owned(),
    );
    table.print()?;
    Ok(0)
}

/// `vacuum`: under the global lock held exclusively, with a spinner on a terminal.
pub fn vacuum(ctx: &Context) -> Result<i32> {
    let store = ctx.open_existing()?;
    let spinner = (std::io::stderr().is_terminal() && !quiet()).then(|| {
        let bar = ProgressBar::new_spinner();
        if let Ok(style) = ProgressStyle::with_template("{spinner} vacuuming {msg} ({elapsed})") {
            bar.set_style(style);
        }
        bar.set_message(store.canonical_path().display().to_string());
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    });
    let result = store.vacuum();
    if let Some(bar) = spinner {
        bar.finish_and_clear();
    }
    let report = result?;
    if ctx.json {
        print_json(&report)?;
    } else if !quiet() {
        notice(&format!(
            "vacuumed {}: {} -> {}",
            store.canonical_path().display(),
            bytes(report.bytes_before),
            bytes(report.bytes_after)
        ));
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::bytes;

    #[test]
    fn bytes_read_as_a_person_would() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(4096), "4.0 KiB");
        assert_eq!(bytes(16 << 20), "16.0 MiB");
    }
}
