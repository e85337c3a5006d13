//! `modstate memory …`: agent memories.
//!
//! Text output is one memory a line: id, namespace, category, updated_at, body — aligned
//! under a header on a terminal, tab-separated with separators escaped when piped (see
//! `cli::output`), so a memory never spans lines. `--json` prints the memory objects as they
//! are.

use std::ffi::OsString;

use clap::{Args, Subcommand};
use serde::Serialize;
use serde_json::json;

use modstate::memory::fts_query;
use modstate::{Error, Memory, MemoryFilter, Result, Store};

use super::input::read_limited;
use super::{Context, print_json, print_text};

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
        /// The text; `-` reads it from stdin.
        #[arg(allow_hyphen_values = true)]
        text: OsString,
    },
    /// Print one memory (exit 3 if absent).
    Get {
        /// The memory's id, as `add` printed it.
        id: String,
    },
    /// List memories, newest first.
    Ls {
        #[command(flatten)]
        filter: FilterArgs,
        /// Most memories printed.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Search memories: every word must occur (case-insensitive), the last one as a prefix;
    /// best match first. An empty query lists newest first.
    Search {
        /// Plain words; quotes, operators and punctuation are taken literally, never as syntax.
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
        /// The new text; `-` reads it from stdin.
        #[arg(allow_hyphen_values = true)]
        text: OsString,
        /// New category; the old one stays if omitted.
        #[arg(long)]
        category: Option<String>,
        /// Write only if the store is still at this generation (exit 4 otherwise, nothing
        /// written). Read it with `modstate memory generation`.
        #[arg(long, value_name = "G")]
        expect_generation: Option<u64>,
    },
    /// Remove a memory (exit 3 if absent).
    Rm {
        /// The memory's id, as `add` printed it.
        id: String,
        /// Remove only if the store is still at this generation (exit 4 otherwise).
        #[arg(long, value_name = "G")]
        expect_generation: Option<u64>,
    },
    /// Print the store's memory generation (it advances on every add, update and remove).
    Generation,
}

#[derive(Args)]
pub struct FilterArgs {
    /// Only this namespace (exact); all namespaces if omitted.
    #[arg(long)]
    namespace: Option<String>,
    /// Only this category (exact, case-insensitive).
    #[arg(long)]
    category: Option<String>,
    /// Only memories older than this id: pass the last id of the previous page.
    #[arg(long, value_name = "ID")]
    after: Option<String>,
}

impl FilterArgs {
    /// The library filter, asking for one row more than `limit` to tell whether more exist.
    fn with_probe(self, limit: usize) -> MemoryFilter {
        MemoryFilter {
            namespace: self.namespace,
            category: self.category,
            limit: Some(limit.saturating_add(1)),
            after: self.after,
        }
    }
}

pub fn run(ctx: &Context, cmd: MemoryCommand) -> Result<i32> {
    match cmd {
        MemoryCommand::Add {
            namespace,
            category,
            text,
        } => {
            let store = ctx.open()?;
            let body = read_text(&store, text)?;
            let memory = store.add_memory(&namespace, &body, &category)?;
            if ctx.json {
                print_json(&memory)?;
            } else {
                print_text(&format!("{}\n", memory.id))?;
            }
            Ok(0)
        }
        MemoryCommand::Get { id } => {
            let store = ctx.open_existing()?;
            let memory = store.get_memory(&id)?.ok_or_else(|| absent(&id))?;
            print_memory(ctx, &memory)?;
            Ok(0)
        }
        MemoryCommand::Ls { filter, limit } => {
            let store = ctx.open_existing()?;
            let mut memories = store.list_memories(&filter.with_probe(limit))?;
            note_more(&mut memories, limit);
            if ctx.json {
                print_json(&memories)?;
            } else {
                print_lines(&memories)?;
            }
            Ok(0)
        }
        MemoryCommand::Search {
            query,
            filter,
            limit,
        } => {
            let store = ctx.open_existing()?;
            if fts_query(&query).is_none() && !query.trim().is_empty() {
                super::notice(
                    "the query has no letters or digits to search for; listing newest first",
                );
            }
            let mut hits = store.search_memories(&query, &filter.with_probe(limit))?;
            note_more(&mut hits, limit);
            if ctx.json {
                let hits: Vec<Hit<'_>> = hits
                    .iter()
                    .map(|(memory, score)| Hit {
                        memory,
                        score: *score,
                    })
                    .collect();
                print_json(&hits)?;
            } else {
                let memories: Vec<Memory> = hits.into_iter().map(|(m, _)| m).collect();
                print_lines(&memories)?;
            }
            Ok(0)
        }
        MemoryCommand::Update {
            id,
            text,
            category,
            expect_generation,
        } => {
            let store = ctx.open()?;
            let body = read_text(&store, text)?;
            let memory = store.update_memory(&id, &body, category.as_deref(), expect_generation)?;
            print_memory(ctx, &memory)?;
            Ok(0)
        }
        MemoryCommand::Rm {
            id,
            expect_generation,
        } => {
            let store = ctx.open()?;
            let generation = store.delete_memory(&id, expect_generation)?;
            if ctx.json {
                print_json(&json!({"id": id, "removed": true, "generation": generation}))?;
            } else {
                print_text(&format!("removed {id}\n"))?;
            }
            Ok(0)
        }
        MemoryCommand::Generation => {
            let store = ctx.open_existing()?;
            let generation = store.memory_generation()?;
            if ctx.json {
                print_json(&json!({"generation": generation}))?;
            } else {
                print_text(&format!("{generation}\n"))?;
            }
            Ok(0)
        }
    }
}

/// A search result in `--json` output: the memory's fields and its score.
#[derive(Serialize)]
struct Hit<'a> {
    #[serde(flatten)]
    memory: &'a Memory,
    score: f64,
}

/// The memory text from the argument, or from stdin for `-`; it must be UTF-8.
fn read_text(store: &Store, text: OsString) -> Result<String> {
    let not_utf8 = || Error::Invalid("memory text is not valid UTF-8; pass UTF-8 text".into());
    if text != "-" {
        return text.into_string().map_err(|_| not_utf8());
    }
    let bytes = read_limited("-", store.options().max_memory_bytes, "memory text")?;
    String::from_utf8(bytes).map_err(|_| not_utf8())
}

/// Drops the probe row past `limit` and says on stderr that there is more.
fn note_more<T>(rows: &mut Vec<T>, limit: usize) {
    if rows.len() > limit {
        rows.truncate(limit);
        super::notice("more memories match; raise --limit, or page on with --after <last id>");
    }
}

/// One memory: its object with `--json`, else its line.
fn print_memory(ctx: &Context, memory: &Memory) -> Result<()> {
    if ctx.json {
        print_json(memory)
    } else {
        print_lines(std::slice::from_ref(memory))
    }
}

/// One memory a row: aligned under a header on a terminal, tab-separated when piped (see
/// `cli::output`).
fn print_lines(memories: &[Memory]) -> Result<()> {
    let mut table = super::Table::new(&["ID", "NAMESPACE", "CATEGORY", "UPDATED", "BODY"]);
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
