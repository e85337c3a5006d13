//! `modstate memory …`: agent memories.
//!
//! Text output is one memory a line: id, namespace, category, updated_at, body — aligned
//! under a header on a terminal, tab-separated with separators escaped when piped (see
//! `cli::output`), so a memory never spans lines; when more match, stderr says how to continue.
//! `--json` prints the library's shapes as they are, the same the MCP tools return: a memory
//! object, or for `ls` and `search` `{"memories": [...], "generation", "next_cursor"}`.

use std::ffi::OsString;

use clap::{Args, Subcommand};
use serde_json::json;

use modstate::memory::{Expiry, MemoryChange, Where, check_id, check_label, parse_metadata};
use modstate::{Error, Expect, Memory, MemoryFilter, NewMemory, Page, Result, Store};

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};
use modstate::embed::{EmbedProgress, Embedder, OpenAi};
use modstate::memory::{Mode, hybrid_or_keyword};

use super::embedder::embed_written;
use super::input::read_limited;
use super::{Context, Table, notice, print_json, print_text, quiet};

#[derive(Subcommand)]
pub enum MemoryCommand {
    /// Remember a text; prints the new memory's id.
    Add {
        /// Namespace (an agent, a project…); memories in other namespaces stay apart. A
        /// hierarchy is spelled with slashes, team/agent/topic (see `memory namespaces`).
        #[arg(long, default_value = "")]
        namespace: String,
        /// Category, e.g. preference, fact, decision.
        #[arg(long, default_value = "")]
        category: String,
        /// The text; `-` reads it from stdin (one trailing newline is dropped).
        #[arg(allow_hyphen_values = true)]
        text: OsString,
        #[command(flatten)]
        model: ModelArgs,
        /// This memory replaces memory ID (repeatable): the old one is hidden from ls and
        /// search (kept, shown with --include-superseded) in the same transaction. Exit 4 if
        /// it was already superseded or moved past --expect-generation/--expect-version.
        #[arg(long, value_name = "ID")]
        supersedes: Vec<String>,
        #[command(flatten)]
        expect: ExpectArgs,
    },
    /// Print one memory (exit 3 if absent, 6 if the id is malformed).
    Get {
        /// The memory's id, as `add` printed it.
        id: String,
    },
    /// List memories, newest first, a page at a time.
    ///
    /// On a terminal: aligned columns under a header, long texts cut. Piped: one memory a
    /// line, ID, NAMESPACE, CATEGORY, UPDATED and TEXT separated by tabs (backslash, tab,
    /// newline and carriage return in a field escaped as \\, \t, \n, \r), no header.
    Ls {
        #[command(flatten)]
        filter: FilterArgs,
        /// Most memories printed.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Search memories, best match first: ask a question or give keywords.
    ///
    /// Every memory holding any word of the query is ranked (ignoring case, accents, English
    /// word endings and common irregular forms: "went" finds "go"; words inside
    /// Chinese/Japanese text are found too). A question's function words ("what", "did",
    /// "the") are left out when it has other words. The score is BM25 (rare words weigh more,
    /// repeats help less and less, length normalised) plus a bonus for query words found side
    /// by side; higher is better. The last word also matches as a prefix unless the query ends
    /// a sentence (?, !, .). Pages continue exactly with --cursor: the cursor carries the
    /// statistics of the first page, so each memory keeps its score while others write. An
    /// empty query lists newest first.
    Search {
        /// A question or plain words; quotes, operators and punctuation are taken literally,
        /// never as syntax. A query of symbols only (🚀) finds memories holding it exactly as
        /// typed.
        #[arg(default_value = "", allow_hyphen_values = true)]
        query: String,
        #[command(flatten)]
        filter: FilterArgs,
        /// Most memories printed.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// keyword (shared words), semantic (meaning: nearest vectors of the --embedder's
        /// model) or hybrid (both, by weighted reciprocal-rank fusion with ranks frozen at the first
        /// page). [default: hybrid with an --embedder, keyword without — or when the embedder
        /// does not answer, which the search then says]
        #[arg(long, value_name = "MODE", value_parser = ["keyword", "semantic", "hybrid"])]
        mode: Option<String>,
        /// Print JSON (as --json) giving each memory a `why`: its keyword score and rank, similarity and
        /// rank, and fused score.
        #[arg(long)]
        explain: bool,
    },
    /// Compute the vectors of memories that lack one for the --embedder's model (after the
    /// embedder was down, an import, or a change of model), in batches of one transaction
    /// each; stop it any time and run it again to go on.
    Embed {
        /// Only this namespace.
        #[arg(long)]
        namespace: Option<String>,
        /// Memories per batch (one request to the embedder, one transaction).
        #[arg(long, default_value_t = 64)]
        batch: usize,
    },
    /// Change a memory: its text, category, metadata, tags or expiry (what is not given stays).
    Update {
        /// The memory's id, as `add` printed it.
        id: String,
        /// The new text; `-` reads it from stdin (one trailing newline is dropped). Omit it
        /// to change only other fields.
        #[arg(allow_hyphen_values = true)]
        text: Option<OsString>,
        /// New category; the old one stays if omitted.
        #[arg(long)]
        category: Option<String>,
        #[command(flatten)]
        model: ModelArgs,
        /// Remove the expiry: the memory never expires.
        #[arg(long, conflicts_with_all = ["ttl", "expires_at"])]
        no_expiry: bool,
        /// Remove every tag.
        #[arg(long, conflicts_with = "tag")]
        clear_tags: bool,
        #[command(flatten)]
        expect: ExpectArgs,
    },
    /// Every recorded change of a memory, oldest first (kept after it is deleted, until
    /// pruned): add, update, supersede, delete, expire, import.
    #[command(args_conflicts_with_subcommands = true)]
    History {
        /// The memory's id.
        id: Option<String>,
        #[command(subcommand)]
        command: Option<HistoryCommand>,
    },
    /// Remove expired memories now (each keeps an `expire` event in its history). Expired
    /// memories are invisible to every read already; adds also sweep, at most once a minute.
    Sweep,
    /// List namespaces with their memory counts and generations.
    ///
    /// Namespaces are flat strings; a hierarchy is spelled with slashes (team/agent/topic),
    /// and --prefix team/ lists one subtree.
    Namespaces {
        /// Only namespaces starting with this text.
        #[arg(long, default_value = "")]
        prefix: String,
    },
    /// Set (or with `none` remove) the default lifetime of new memories in a namespace.
    DefaultTtl {
        /// The namespace; the default namespace ("") if omitted.
        #[arg(long, default_value = "")]
        namespace: String,
        /// A duration such as 30m, 12h, 7d; `none` removes the default.
        ttl: String,
    },
    /// Remove a memory (exit 3 if absent).
    Rm {
        /// The memory's id, as `add` printed it.
        id: String,
        #[command(flatten)]
        expect: ExpectArgs,
    },
    /// Write memories as JSON Lines on stdout, one memory a line, oldest first.
    ///
    /// Each line holds id, namespace, category, text, created_at, updated_at and version,
    /// exactly as stored: `memory import` in another database brings them back as they were.
    /// With --json: one JSON array instead.
    Export {
        /// Only this namespace; every namespace if omitted.
        #[arg(long)]
        namespace: Option<String>,
    },
    /// Add memories written by `memory export`, keeping their ids, times and versions.
    ///
    /// All or nothing: every line is checked first, and a bad one is named by its number.
    /// Importing the same file twice changes nothing; a memory already here with other
    /// content is refused. Each namespace that gains memories takes a new generation.
    Import {
        /// The file `memory export` wrote; `-` reads stdin.
        file: String,
    },
    /// Print a namespace's memory generation (it advances on every add, update and remove in
    /// that namespace, and never repeats).
    Generation {
        /// The namespace; the default namespace ("") if omitted.
        #[arg(long, default_value = "")]
        namespace: String,
    },
}

#[derive(Subcommand)]
pub enum HistoryCommand {
    /// Remove history events older than a duration (history grows by one event per change;
    /// prune it to bound its size, `modstate stats` shows it).
    Prune {
        /// A duration such as 90d.
        #[arg(long, value_name = "DURATION")]
        older_than: String,
    },
}

/// Metadata, tags and expiry of `add` and `update`.
#[derive(Args)]
pub struct ModelArgs {
    /// Metadata: a JSON object (up to 16 KiB), filterable with --where.
    #[arg(long, value_name = "JSON")]
    metadata: Option<String>,
    /// A tag (repeatable). On update, the given tags replace the old ones.
    #[arg(long)]
    tag: Vec<String>,
    /// Expire after this long: 30m, 12h, 7d. Expired memories vanish from every read at once.
    #[arg(long, value_name = "DURATION", conflicts_with = "expires_at")]
    ttl: Option<String>,
    /// Expire at this time (RFC 3339 UTC, 2026-01-31T12:00:00Z).
    #[arg(long, value_name = "TIME")]
    expires_at: Option<String>,
    /// Each read (get, or being returned by ls or search) pushes the expiry forward by the
    /// TTL (needs --ttl).
    #[arg(long)]
    refresh_on_read: bool,
}

impl ModelArgs {
    fn expiry(&self) -> Result<Option<Expiry>> {
        match (&self.ttl, &self.expires_at) {
            (Some(ttl), _) => Expiry::ttl(ttl).map(Some),
            (None, Some(at)) => Expiry::at(at).map(Some),
            (None, None) => Ok(None),
        }
    }

    fn metadata(&self) -> Result<Option<serde_json::Map<String, serde_json::Value>>> {
        self.metadata.as_deref().map(parse_metadata).transpose()
    }
}

#[derive(Args)]
pub struct FilterArgs {
    /// Only this namespace (exact); all namespaces if omitted.
    #[arg(long)]
    namespace: Option<String>,
    /// Only this category (exact, case-insensitive).
    #[arg(long)]
    category: Option<String>,
    /// Continue after the previous page: pass the `next_cursor` it printed.
    #[arg(long, value_name = "TOKEN")]
    cursor: Option<String>,
    /// Only memories matching this JSON filter on metadata keys, tags, category, created_at
    /// and updated_at: {"project": "x", "priority": {"$gte": 2}, "tags": {"$in": ["a"]}}.
    /// Operators $eq $ne $gt $gte $lt $lte $in $nin $exists $contains; combinators $and $or
    /// $not; a bare value means $eq.
    #[arg(long = "where", value_name = "JSON")]
    where_: Option<String>,
    /// Also show memories that another memory superseded.
    #[arg(long)]
    include_superseded: bool,
}

impl FilterArgs {
    fn with_limit(self, limit: usize) -> Result<MemoryFilter> {
        Ok(MemoryFilter {
            namespace: self.namespace,
            category: self.category,
            limit: Some(limit),
            cursor: self.cursor,
            filter: self.where_.as_deref().map(Where::parse_str).transpose()?,
            include_superseded: self.include_superseded,
        })
    }
}

/// The drift guard's options of `update` and `rm`.
#[derive(Args)]
pub struct ExpectArgs {
    /// Write only if the memory's namespace is still at this generation (exit 4 otherwise,
    /// nothing written). Any `generation` modstate printed for that namespace will do.
    #[arg(long, value_name = "G")]
    expect_generation: Option<u64>,
    /// Write only if the memory is still at this version (exit 4 otherwise, nothing written).
    #[arg(long, value_name = "V")]
    expect_version: Option<u64>,
}

impl From<ExpectArgs> for Expect {
    fn from(args: ExpectArgs) -> Expect {
        Expect {
            generation: args.expect_generation,
            version: args.expect_version,
        }
    }
}

pub fn run(ctx: &Context, cmd: MemoryCommand) -> Result<i32> {
    match cmd {
        MemoryCommand::Add {
            namespace,
            category,
            text,
            model,
            supersedes,
            expect,
        } => add(ctx, &namespace, &category, text, &model, supersedes, expect),
        MemoryCommand::Get { id } => get(ctx, &id),
        MemoryCommand::Ls { filter, limit } => ls(ctx, filter, limit),
        MemoryCommand::Search {
            query,
            filter,
            limit,
            mode,
            explain,
        } => search(ctx, &query, filter, limit, mode.as_deref(), explain),
        MemoryCommand::Embed { namespace, batch } => embed(ctx, namespace.as_deref(), batch),
        MemoryCommand::Update {
            id,
            text,
            category,
            model,
            no_expiry,
            clear_tags,
            expect,
        } => update(
            ctx,
            &id,
            text,
            category,
            &model,
            (no_expiry, clear_tags),
            expect,
        ),
        MemoryCommand::History { id, command } => history(ctx, id, command),
        MemoryCommand::Sweep => sweep(ctx),
        MemoryCommand::Namespaces { prefix } => namespaces(ctx, &prefix),
        MemoryCommand::DefaultTtl { namespace, ttl } => default_ttl(ctx, &namespace, &ttl),
        MemoryCommand::Rm { id, expect } => rm(ctx, &id, expect),
        MemoryCommand::Generation { namespace } => generation(ctx, &namespace),
        MemoryCommand::Export { namespace } => export(ctx, namespace.as_deref()),
        MemoryCommand::Import { file } => import(ctx, &file),
    }?;
    Ok(0)
}

/// The store, recording `$MODSTATE_WRITER` (if set) as the author of memory changes.
fn open_writing(ctx: &Context) -> Result<Store> {
    let store = ctx.open()?;
    Ok(match std::env::var("MODSTATE_WRITER") {
        Ok(writer) => store.with_writer(&writer),
        Err(_) => store,
    })
}

fn add(
    ctx: &Context,
    namespace: &str,
    category: &str,
    text: OsString,
    model: &ModelArgs,
    supersedes: Vec<String>,
    expect: ExpectArgs,
) -> Result<()> {
    let expiry = model.expiry()?;
    let metadata = model.metadata()?.unwrap_or_default();
    let embedder = ctx.embedder.embedder()?;
    let store = open_writing(ctx)?;
    let body = read_text(&store, text)?;
    let mut added = store.add_memories([NewMemory {
        namespace: namespace.to_owned(),
        category: category.to_owned(),
        body,
        metadata,
        tags: model.tag.clone(),
        expiry,
        refresh_on_read: model.refresh_on_read,
        supersedes,
        expect: expect.into(),
    }])?;
    let memory = added
        .pop()
        .ok_or_else(|| Error::Invalid("no memory was given to add".into()))?;
    embed_written(&store, as_dyn(&embedder), std::slice::from_ref(&memory));
    if ctx.json {
        print_json(&memory)
    } else {
        print_text(&format!("{}\n", memory.id))
    }
}

fn get(ctx: &Context, id: &str) -> Result<()> {
    check_id(id)?;
    let store = ctx.open_existing()?;
    let memory = store.get_memory(id)?.ok_or_else(|| absent(id))?;
    if let Some(by) = &memory.superseded_by {
        notice(&format!(
            "memory {} was superseded by {by}; `modstate memory get {by}` shows what replaced it",
            memory.id
        ));
    }
    print_memory(ctx, &memory)
}

fn ls(ctx: &Context, filter: FilterArgs, limit: usize) -> Result<()> {
    let filter = filter.with_limit(limit)?;
    let store = ctx.open_existing()?;
    let page = store.list_page(&filter)?;
    if ctx.json {
        return print_json(&page);
    }
    print_lines(page.page.items.iter())?;
    note_more(&page.page);
    Ok(())
}

fn search(
    ctx: &Context,
    query: &str,
    filter: FilterArgs,
    limit: usize,
    mode: Option<&str>,
    explain: bool,
) -> Result<()> {
    let filter = filter.with_limit(limit)?;
    let embedder = ctx.embedder.embedder()?;
    let defaulted = mode.is_none();
    let mode = match (mode, &embedder) {
        (Some(mode), _) => Mode::parse(mode)?,
        (None, Some(_)) => Mode::Hybrid,
        (None, None) => Mode::Keyword,
    };
    if mode != Mode::Keyword && embedder.is_none() {
        return Err(Error::Invalid(format!(
            "--mode {} needs an embedding server; pass --embedder URL (or set MODSTATE_EMBEDDER), or use --mode keyword",
            mode.name()
        )));
    }
    let store = ctx.open_existing()?;
    let embedder = as_dyn(&embedder);
    let recalled = if defaulted && mode == Mode::Hybrid {
        hybrid_or_keyword(
            filter.cursor.is_none(),
            || store.recall_page(query, &filter, Mode::Hybrid, embedder),
            || store.recall_page(query, &filter, Mode::Keyword, None),
        )?
    } else {
        store.recall_page(query, &filter, mode, embedder)?
    };
    if explain {
        return print_json(&recalled.explained());
    }
    let page = recalled.page;
    if let Some(note) = &page.note {
        notice(note);
    }
    if ctx.json {
        return print_json(&page);
    }
    print_lines(page.page.items.iter().map(|hit| &hit.memory))?;
    note_more(&page.page);
    Ok(())
}

fn update(
    ctx: &Context,
    id: &str,
    text: Option<OsString>,
    category: Option<String>,
    model: &ModelArgs,
    (no_expiry, clear_tags): (bool, bool),
    expect: ExpectArgs,
) -> Result<()> {
    check_id(id)?;
    let expiry = if no_expiry {
        Some(Expiry::Never)
    } else {
        model.expiry()?
    };
    let metadata = model.metadata()?;
    let tags = if clear_tags {
        Some(Vec::new())
    } else if model.tag.is_empty() {
        None
    } else {
        Some(model.tag.clone())
    };
    let embedder = ctx.embedder.embedder()?;
    let store = open_writing(ctx)?;
    let body = text.map(|t| read_text(&store, t)).transpose()?;
    let change = MemoryChange {
        body,
        category,
        metadata,
        tags,
        expiry,
        refresh_on_read: model.refresh_on_read.then_some(true),
    };
    if change == MemoryChange::default() {
        return Err(Error::Invalid(
            "nothing to change; give a new text, --category, --metadata, --tag, --ttl, --expires-at or --no-expiry".into(),
        ));
    }
    let text_changed = change.body.is_some();
    let memory = store.change_memory(id, change, expect.into())?;
    if text_changed {
        embed_written(&store, as_dyn(&embedder), std::slice::from_ref(&memory));
    }
    print_memory(ctx, &memory)
}

/// `memory embed`: fills in missing vectors, with a progress bar on a terminal.
fn embed(ctx: &Context, namespace: Option<&str>, batch: usize) -> Result<()> {
    let embedder = ctx.embedder.embedder()?.ok_or_else(|| {
        Error::Invalid(
            "memory embed needs an embedding server; pass --embedder URL (or set MODSTATE_EMBEDDER)".into(),
        )
    })?;
    if batch == 0 {
        return Err(Error::Invalid(
            "--batch 0 embeds nothing; give at least 1".into(),
        ));
    }
    if let Some(namespace) = namespace {
        check_label("namespace", namespace)?;
    }
    let store = open_writing(ctx)?;
    let terminal = std::io::stderr().is_terminal() && !quiet();
    let bar: std::cell::OnceCell<ProgressBar> = std::cell::OnceCell::new();
    let done = store.embed_missing(&embedder, namespace, batch, &mut |p: EmbedProgress| {
        if terminal {
            let bar = bar.get_or_init(|| {
                let bar = ProgressBar::new(p.missing);
                if let Ok(style) = ProgressStyle::with_template(
                    "embedding [{bar:40}] {pos}/{len} ({per_sec}, {eta})",
                ) {
                    bar.set_style(style.progress_chars("=> "));
                }
                bar
            });
            bar.set_position(p.embedded);
        }
    });
    if let Some(bar) = bar.get() {
        bar.finish_and_clear();
    }
    let done = done?;
    let coverage = store.vector_coverage(&embedder)?;
    if ctx.json {
        return print_json(&json!({
            "embedded": done.embedded,
            "model": coverage.model,
            "missing": coverage.missing,
        }));
    }
    if !quiet() {
        notice(&format!(
            "embedded {} memories with {}; {} still lack a vector",
            done.embedded, coverage.model, coverage.missing
        ));
    }
    Ok(())
}

/// The embedder as the library takes it.
fn as_dyn(embedder: &Option<OpenAi>) -> Option<&dyn Embedder> {
    embedder.as_ref().map(|e| e as &dyn Embedder)
}

fn history(ctx: &Context, id: Option<String>, command: Option<HistoryCommand>) -> Result<()> {
    if let Some(HistoryCommand::Prune { older_than }) = command {
        let age = humantime::parse_duration(older_than.trim()).map_err(|e| {
            Error::Invalid(format!(
                "--older-than {older_than:?} is not a duration ({e}); write it as 90d or 12h"
            ))
        })?;
        let store = ctx.open()?;
        let removed = store.prune_memory_history(age)?;
        return if ctx.json {
            print_json(&json!({"removed": removed}))
        } else if quiet() {
            Ok(())
        } else {
            print_text(&format!("removed {removed} history events\n"))
        };
    }
    let Some(id) = id else {
        return Err(Error::Invalid(
            "give a memory id (`memory history ID`) or `memory history prune --older-than 90d`"
                .into(),
        ));
    };
    check_id(&id)?;
    let store = ctx.open_existing()?;
    let events = store.memory_history(&id)?;
    if ctx.json {
        return print_json(&json!({"id": check_id(&id)?, "events": events}));
    }
    let mut table = Table::new(&["AT", "ACTION", "VERSION", "ACTOR", "CHANGES", "TEXT"]);
    for e in &events {
        let changes: Vec<&str> = e.changes.keys().map(String::as_str).collect();
        let text = match (&e.old_text, &e.new_text) {
            (Some(old), Some(new)) => format!("{old} -> {new}"),
            (None, Some(new)) => new.clone(),
            (Some(old), None) => old.clone(),
            (None, None) => String::new(),
        };
        table.row(vec![
            e.at.clone(),
            e.action.clone(),
            e.version.to_string(),
            e.actor.clone(),
            changes.join(","),
            text,
        ]);
    }
    table.print()
}

fn sweep(ctx: &Context) -> Result<()> {
    let store = ctx.open()?;
    let removed = store.sweep_memories()?;
    if ctx.json {
        print_json(&json!({"removed": removed}))
    } else if quiet() {
        Ok(())
    } else {
        print_text(&format!("removed {removed} expired memories\n"))
    }
}

fn namespaces(ctx: &Context, prefix: &str) -> Result<()> {
    let store = ctx.open_existing()?;
    let list = store.memory_namespaces(prefix)?;
    if ctx.json {
        return print_json(&json!({"namespaces": list}));
    }
    let mut table = Table::new(&["NAMESPACE", "MEMORIES", "GENERATION", "DEFAULT_TTL"]);
    for n in &list {
        table.row(vec![
            n.namespace.clone(),
            n.memories.to_string(),
            n.generation.to_string(),
            n.default_ttl_seconds
                .map(|s| humantime::format_duration(std::time::Duration::from_secs(s)).to_string())
                .unwrap_or_default(),
        ]);
    }
    table.print()
}

fn default_ttl(ctx: &Context, namespace: &str, ttl: &str) -> Result<()> {
    let expiry = if ttl.trim().eq_ignore_ascii_case("none") {
        None
    } else {
        Some(Expiry::ttl(ttl)?)
    };
    let store = ctx.open()?;
    store.set_namespace_ttl(namespace, expiry.clone())?;
    let seconds = match expiry {
        Some(Expiry::After(s)) => Some(s),
        _ => None,
    };
    if ctx.json {
        print_json(&json!({"namespace": namespace, "default_ttl_seconds": seconds}))
    } else {
        Ok(())
    }
}

fn rm(ctx: &Context, id: &str, expect: ExpectArgs) -> Result<()> {
    let id = check_id(id)?;
    let store = open_writing(ctx)?;
    let generation = store.delete_memory(&id, expect.into())?;
    if ctx.json {
        print_json(&json!({"id": id, "deleted": true, "generation": generation}))
    } else if quiet() {
        Ok(())
    } else {
        print_text(&format!("deleted {id}\n"))
    }
}

fn generation(ctx: &Context, namespace: &str) -> Result<()> {
    let store = ctx.open_existing()?;
    let generation = store.memory_generation(namespace)?;
    if ctx.json {
        print_json(&json!({"namespace": namespace, "generation": generation}))
    } else {
        print_text(&format!("{generation}\n"))
    }
}

fn export(ctx: &Context, namespace: Option<&str>) -> Result<()> {
    if let Some(namespace) = namespace {
        check_label("namespace", namespace)?;
    }
    let store = ctx.open_existing()?;
    let memories = store.export_memories(namespace)?;
    if ctx.json {
        return print_json(&memories);
    }
    let mut text = String::new();
    for m in &memories {
        text.push_str(
            &serde_json::to_string(m)
                .map_err(|e| Error::Invalid(format!("cannot serialize output: {e}")))?,
        );
        text.push('\n');
    }
    print_text(&text)?;
    notice(&format!(
        "exported {} memor{}",
        memories.len(),
        if memories.len() == 1 { "y" } else { "ies" }
    ));
    Ok(())
}

fn import(ctx: &Context, file: &str) -> Result<()> {
    let store = ctx.open()?;
    let report = if file == "-" {
        store.import_memories(std::io::stdin().lock())?
    } else {
        let opened = std::fs::File::open(file).map_err(|e| Error::io("opening", file, e))?;
        if opened.metadata().is_ok_and(|m| m.is_dir()) {
            return Err(Error::io(
                "reading",
                file,
                std::io::Error::new(std::io::ErrorKind::IsADirectory, "is a directory"),
            ));
        }
        store.import_memories(std::io::BufReader::new(opened))?
    };
    if ctx.json {
        print_json(&report)
    } else if quiet() {
        Ok(())
    } else {
        print_text(&format!(
            "imported {} memories ({} already here)\n",
            report.imported, report.unchanged
        ))
    }
}

/// The memory text from the argument, or from stdin for `-`; it must be UTF-8.
fn read_text(store: &Store, text: OsString) -> Result<String> {
    let not_utf8 = || Error::Invalid("memory text is not valid UTF-8; pass UTF-8 text".into());
    if text != "-" {
        return text.into_string().map_err(|_| not_utf8());
    }
    let bytes = read_limited("-", store.options().max_memory_bytes, "memory text")?;
    let mut text = String::from_utf8(bytes).map_err(|_| not_utf8())?;
    // `echo text | modstate memory add -` means "text": drop the line ending echo adds.
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    Ok(text)
}

/// Says on stderr how to get the next page, when there is one.
fn note_more<T>(page: &Page<T>) {
    if let Some(cursor) = &page.next_cursor {
        notice(&format!(
            "more memories match; continue with --cursor {cursor}"
        ));
    }
}

/// One memory: its object with `--json`, else its line.
fn print_memory(ctx: &Context, memory: &Memory) -> Result<()> {
    if ctx.json {
        print_json(memory)
    } else {
        print_lines(std::iter::once(memory))
    }
}

/// One memory a row: aligned under a header on a terminal, tab-separated when piped (see
/// `cli::output`).
fn print_lines<'a>(memories: impl Iterator<Item = &'a Memory>) -> Result<()> {
    let mut table = Table::new(&["ID", "NAMESPACE", "CATEGORY", "UPDATED", "BODY"]);
    for m in memories {
        table.row(vec![
            m.id.clone(),
            m.namespace.clone(),
            m.category.clone(),
            m.updated_at.clone(),
            m.body.clone(),
        ]);
    }
    table.print()
}

fn absent(id: &str) -> Error {
    Error::NotFound(format!(
        "no memory with id {id:?}; `modstate memory ls` lists memories"
    ))
}
