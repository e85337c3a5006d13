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

use modstate::memory::{check_id, check_label};
use modstate::{Error, Expect, Memory, MemoryFilter, Page, Result, Store};

use super::input::read_limited;
use super::{Context, Table, notice, print_json, print_text, quiet};

#[derive(Subcommand)]
pub enum MemoryCommand {
    /// Remember a text; prints the new memory's id.
    Add {
        /// Namespace (an agent, a project…); memories in other namespaces stay apart.
        #[arg(long, default_value = "")]
        namespace: String,
        /// Category, e.g. preference, fact, decision.
        #[arg(long, default_value = "")]
        category: String,
        /// The text; `-` reads it from stdin (one trailing newline is dropped).
        #[arg(allow_hyphen_values = true)]
        text: OsString,
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
    },
    /// Replace a memory's text (and category, if given).
    Update {
        /// The memory's id, as `add` printed it.
        id: String,
        /// The new text; `-` reads it from stdin (one trailing newline is dropped).
        #[arg(allow_hyphen_values = true)]
        text: OsString,
        /// New category; the old one stays if omitted.
        #[arg(long)]
        category: Option<String>,
        #[command(flatten)]
        expect: ExpectArgs,
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
}

impl FilterArgs {
    fn with_limit(self, limit: usize) -> MemoryFilter {
        MemoryFilter {
            namespace: self.namespace,
            category: self.category,
            limit: Some(limit),
            cursor: self.cursor,
        }
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
        } => add(ctx, &namespace, &category, text),
        MemoryCommand::Get { id } => get(ctx, &id),
        MemoryCommand::Ls { filter, limit } => ls(ctx, filter, limit),
        MemoryCommand::Search {
            query,
            filter,
            limit,
        } => search(ctx, &query, filter, limit),
        MemoryCommand::Update {
            id,
            text,
            category,
            expect,
        } => update(ctx, &id, text, category.as_deref(), expect),
        MemoryCommand::Rm { id, expect } => rm(ctx, &id, expect),
        MemoryCommand::Generation { namespace } => generation(ctx, &namespace),
        MemoryCommand::Export { namespace } => export(ctx, namespace.as_deref()),
        MemoryCommand::Import { file } => import(ctx, &file),
    }?;
    Ok(0)
}

fn add(ctx: &Context, namespace: &str, category: &str, text: OsString) -> Result<()> {
    let store = ctx.open()?;
    let body = read_text(&store, text)?;
    let memory = store.add_memory(namespace, &body, category)?;
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
    print_memory(ctx, &memory)
}

fn ls(ctx: &Context, filter: FilterArgs, limit: usize) -> Result<()> {
    let store = ctx.open_existing()?;
    let page = store.list_page(&filter.with_limit(limit))?;
    if ctx.json {
        return print_json(&page);
    }
    print_lines(page.page.items.iter())?;
    note_more(&page.page);
    Ok(())
}

fn search(ctx: &Context, query: &str, filter: FilterArgs, limit: usize) -> Result<()> {
    let store = ctx.open_existing()?;
    let page = store.search_page(query, &filter.with_limit(limit))?;
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
    text: OsString,
    category: Option<&str>,
    expect: ExpectArgs,
) -> Result<()> {
    check_id(id)?;
    let store = ctx.open()?;
    let body = read_text(&store, text)?;
    let memory = store.update_memory(id, &body, category, expect.into())?;
    print_memory(ctx, &memory)
}

fn rm(ctx: &Context, id: &str, expect: ExpectArgs) -> Result<()> {
    let id = check_id(id)?;
    let store = ctx.open()?;
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
