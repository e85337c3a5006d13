//! The MCP server itself: what it tells `initialize`, `tools/list` and `tools/call`.
//!
//! Store calls run on tokio's blocking pool (`spawn_blocking`), not on the one runtime
//! thread. They are short, but a write can wait up to `--lock-timeout` for the cross-process
//! write lock while another process writes; meanwhile the runtime keeps answering `ping`,
//! cancellations and reads that the host sends in parallel.

use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    InitializeResult, ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig,
    Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde::Serialize;
use serde_json::json;

use modstate::embed::Embedder;
use modstate::lock::Fence;
use modstate::memory::{Expiry, MemoryChange, Where, check_cursor, check_id};
use modstate::memory::{Mode, hybrid_or_keyword};
use modstate::token::{Grant, Guarded, Scope};
use modstate::{Digest, Error, Memory, MemoryFilter, NewMemory, Result, Store};

use super::tools::{self, Call, Model};

const INSTRUCTIONS: &str = "Long-term memory shared with other agents and sessions on this machine. \
Search or list before adding, to avoid duplicates; update a memory rather than adding a near-copy. \
Every result carries a generation (of this server's namespace) and each memory a version: pass \
expect_version to update_memory or delete_memory to refuse the write if that memory changed since \
you read it, or expect_generation if any memory of the namespace did. Long results come in pages: \
pass next_cursor back as cursor. When a fact changes, add the new memory with supersedes \
set to the old one's id rather than leaving both; give scratch notes a ttl; filter with where \
on the metadata and tags you set.";

/// The server: one store, one namespace for every memory tool.
#[derive(Clone)]
pub struct MemoryServer {
    store: Store,
    namespace: Arc<str>,
    tools: Arc<[Tool]>,
    /// Opens the same database with a fence, for a write tool called with `fence`.
    reopen: Reopen,
    /// The embedding model for semantic and hybrid search (`--embedder`), if any.
    embedder: Option<Arc<dyn Embedder>>,
}

/// Opens the server's database again with every write carrying `Fence`.
pub type Reopen = Arc<dyn Fn(Fence) -> Result<Store> + Send + Sync>;

impl MemoryServer {
    pub fn new(store: Store, namespace: &str, reopen: Reopen) -> MemoryServer {
        MemoryServer {
            store,
            namespace: namespace.into(),
            tools: tools::list().into(),
            reopen,
            embedder: None,
        }
    }

    /// This server, embedding written memories and searching by meaning with `embedder`.
    pub fn with_embedder(mut self, embedder: Option<Arc<dyn Embedder>>) -> MemoryServer {
        self.embedder = embedder;
        self
    }
}

impl ServerHandler for MemoryServer {
    fn get_info(&self) -> ServerConfig {
        InitializeResult::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("modstate", env!("CARGO_PKG_VERSION")))
            .with_instructions(INSTRUCTIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> std::result::Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(self.tools.to_vec()))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.tools.iter().find(|tool| tool.name == name).cloned()
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> std::result::Result<CallToolResponse, ErrorData> {
        // An unknown tool is a protocol error (the spec's -32602); bad arguments are not.
        let Some(tool) = tools::find(&request.name) else {
            return Err(ErrorData::invalid_params(
                format!(
                    "unknown tool {:?}; tools/list names the tools this server has",
                    request.name
                ),
                None,
            ));
        };
        let call = match tool.parse(request.arguments) {
            Ok(call) => call,
            Err(message) => return Ok(failure(message).into()),
        };
        check_ids(&call)?;
        // Over HTTP (`modstate serve`) the request says who calls, what it may reach and in
        // which namespace (see `super::http`); over stdio the server's one namespace, written
        // as the client named itself in `initialize`.
        let access = context
            .extensions
            .get::<axum::http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<super::http::Access>());
        let (store, namespace) = match access {
            Some(access) => (
                self.store
                    .with_writer(&access.writer)
                    .guarded(access.grant.clone()),
                access.namespace.clone(),
            ),
            None => {
                let store = match context.peer.peer_info() {
                    Some(info) => self
                        .store
                        .with_writer(&format!("mcp:{}", info.client_info.name)),
                    None => self.store.with_writer("mcp"),
                };
                let grant = Grant {
                    namespaces: Some(vec![self.namespace.to_string()]),
                    scope: Scope::Write,
                };
                (store.guarded(grant), self.namespace.clone())
            }
        };
        let reopen = Arc::clone(&self.reopen);
        let embedder = self.embedder.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            let embedder = embedder.as_deref();
            let fence = match &call {
                Call::AddMemory { fence, .. }
                | Call::UpdateMemory { fence, .. }
                | Call::DeleteMemory { fence, .. } => fence.clone(),
                _ => None,
            };
            let Some(fence) = fence else {
                return run(&store, &namespace, call, embedder);
            };
            // A fenced write goes through a store opened with the fence (its write
            // transaction checks the token), with the same writer and the same grant.
            let fenced = fence
                .parse()
                .and_then(|fence| reopen(fence))?
                .with_writer(store.writer());
            let done = run(
                &fenced.guarded(store.grant().clone()),
                &namespace,
                call,
                embedder,
            );
            // Dropped off the runtime: a server backend's client blocks on its own runtime
            // when it closes, which tokio forbids on this one's threads.
            let _ = std::thread::spawn(move || drop(fenced)).join();
            done
        })
        .await;
        match outcome {
            Ok(Ok(done)) => Ok(done.into()),
            Ok(Err(e)) => Ok(failure(e.to_string()).into()),
            Err(e) => Err(ErrorData::internal_error(
                format!("{} failed inside the server: {e}", tool.name),
                None,
            )),
        }
    }
}

/// Stores the vectors of memories just written. The write is committed: an embedder that is
/// down or wrong only leaves them without vectors (until `memory embed`), said on stderr.
fn embed_written(store: &Guarded, embedder: Option<&dyn Embedder>, memories: &[Memory]) {
    if let Some(embedder) = embedder
        && let Err(e) = store.embed_memories(embedder, memories)
    {
        log::warn!("memory stored without a vector ({e}); `modstate memory embed` adds it later");
    }
}

/// A tool error: `isError` with the one-line message the CLI would print after `error: `.
fn failure(message: String) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(message)])
}

/// A tool result: the JSON object as structured content and, for clients that read only
/// text, the same object as compact JSON text.
fn success(value: impl Serialize) -> Result<CallToolResult> {
    let value = serde_json::to_value(value)
        .map_err(|e| Error::Invalid(format!("cannot serialize the result: {e}")))?;
    Ok(CallToolResult::structured(value))
}

/// Runs one checked call against the store (on a blocking thread). Results have the shapes
/// the CLI prints under `--json`: a memory, a page `{memories, generation, next_cursor}`, or
/// `{id, deleted, generation}`.
fn run(
    store: &Guarded,
    namespace: &str,
    call: Call,
    embedder: Option<&dyn Embedder>,
) -> Result<CallToolResult> {
    match call {
        Call::AddMemory {
            text,
            category,
            model,
            supersedes,
            expect,
            ..
        } => {
            let mut added = store.add_memories([NewMemory {
                namespace: namespace.to_owned(),
                category,
                body: text,
                metadata: model.metadata.clone().unwrap_or_default(),
                tags: model.tags.clone().unwrap_or_default(),
                expiry: expiry(&model)?,
                refresh_on_read: model.refresh_on_read.unwrap_or(false),
                supersedes,
                expect,
            }])?;
            embed_written(store, embedder, &added);
            success(added.pop())
        }
        Call::SearchMemories {
            query,
            category,
            limit,
            cursor,
            filter: where_,
            include_superseded,
            mode,
            explain,
        } => {
            let filter = filter(
                namespace,
                category,
                limit,
                cursor,
                where_,
                include_superseded,
            )?;
            let defaulted = mode.is_none();
            let mode = match (mode.as_deref(), embedder) {
                (Some(mode), _) => Mode::parse(mode)?,
                (None, Some(_)) => Mode::Hybrid,
                (None, None) => Mode::Keyword,
            };
            if mode != Mode::Keyword && embedder.is_none() {
                return Err(Error::Invalid(format!(
                    "mode {} needs an embedding model, and this server was started without one (--embedder); search with mode keyword",
                    mode.name()
                )));
            }
            let recalled = if defaulted && mode == Mode::Hybrid {
                hybrid_or_keyword(
                    filter.cursor.is_none(),
                    || store.recall_page(&query, &filter, Mode::Hybrid, embedder),
                    || store.recall_page(&query, &filter, Mode::Keyword, None),
                )?
            } else {
                store.recall_page(&query, &filter, mode, embedder)?
            };
            if explain {
                success(recalled.explained())
            } else {
                success(recalled.page)
            }
        }
        Call::GetMemories {
            category,
            limit,
            cursor,
            filter: where_,
            include_superseded,
        } => {
            let filter = filter(
                namespace,
                category,
                limit,
                cursor,
                where_,
                include_superseded,
            )?;
            success(store.list_page(&filter)?)
        }
        Call::UpdateMemory {
            id,
            text,
            category,
            model,
            expect,
            ..
        } => {
            check_namespace(store, namespace, &id)?;
            let change = MemoryChange {
                body: text,
                category,
                metadata: model.metadata.clone(),
                tags: model.tags.clone(),
                expiry: expiry(&model)?,
                refresh_on_read: model.refresh_on_read,
            };
            let text_changed = change.body.is_some();
            let memory = store.change_memory(&id, change, expect)?;
            if text_changed {
                embed_written(store, embedder, std::slice::from_ref(&memory));
            }
            success(memory)
        }
        Call::MemoryHistory { id } => {
            let events = store.memory_history(&id)?;
            if events.iter().any(|e| e.namespace != namespace) {
                return Err(Error::NotFound(format!(
                    "no memory with id {id:?} in this namespace"
                )));
            }
            success(json!({"id": id, "events": events}))
        }
        Call::DeleteMemory { id, expect, .. } => {
            check_namespace(store, namespace, &id)?;
            let generation = store.delete_memory(&id, expect)?;
            success(json!({"id": id, "deleted": true, "generation": generation}))
        }
        Call::GetModuleState { digest } => {
            let digest = Digest::parse(&digest)?;
            let envelope = store.get_artifact(&digest)?.ok_or_else(|| {
                Error::NotFound(format!(
                    "no artifact stored for {digest}; the module state is computed and stored by the module loader (get_module_state only reads)"
                ))
            })?;
            // Structured content for clients that read it; the text is the envelope exactly
            // as stored, byte for byte, as `modstate artifact get` prints it.
            let mut result = CallToolResult::structured(envelope.to_value()?);
            let exact = String::from_utf8(envelope.into_bytes()).map_err(|_| {
                Error::Integrity(format!("the envelope stored for {digest} is not UTF-8"))
            })?;
            result.content = vec![ContentBlock::text(exact)];
            Ok(result)
        }
    }
}

/// A malformed memory id or cursor is invalid input to the protocol (-32602), as it is exit 6
/// for the CLI; the message says what is wrong.
fn check_ids(call: &Call) -> std::result::Result<(), ErrorData> {
    let (id, cursor) = match call {
        Call::UpdateMemory { id, .. }
        | Call::DeleteMemory { id, .. }
        | Call::MemoryHistory { id } => (Some(id), None),
        Call::SearchMemories { cursor, .. } | Call::GetMemories { cursor, .. } => {
            (None, cursor.as_ref())
        }
        _ => (None, None),
    };
    let invalid = |e: Error| ErrorData::invalid_params(e.to_string(), None);
    if let Some(id) = id {
        check_id(id).map_err(invalid)?;
    }
    if let Some(cursor) = cursor {
        check_cursor(cursor).map_err(invalid)?;
    }
    Ok(())
}

/// The filter for this server's namespace.
fn filter(
    namespace: &str,
    category: Option<String>,
    limit: usize,
    cursor: Option<String>,
    where_: Option<serde_json::Value>,
    include_superseded: bool,
) -> Result<MemoryFilter> {
    Ok(MemoryFilter {
        namespace: Some(namespace.to_owned()),
        category,
        limit: Some(limit),
        cursor,
        filter: where_.as_ref().map(Where::parse).transpose()?,
        include_superseded,
    })
}

/// The expiry a tool call asks for: `ttl` ("never" clears it) or `expires_at`.
fn expiry(model: &Model) -> Result<Option<Expiry>> {
    match (&model.ttl, &model.expires_at) {
        (Some(_), Some(_)) => Err(Error::Invalid("give ttl or expires_at, not both".into())),
        (Some(ttl), None) if ttl.trim().eq_ignore_ascii_case("never") => Ok(Some(Expiry::Never)),
        (Some(ttl), None) => Expiry::ttl(ttl).map(Some),
        (None, Some(at)) => Expiry::at(at).map(Some),
        (None, None) => Ok(None),
    }
}

/// A memory of another namespace is, to this server, absent. A memory's namespace never
/// changes and ids are never reused, so checking before the write is enough.
fn check_namespace(store: &Guarded, namespace: &str, id: &str) -> Result<()> {
    match store.get_memory(id)? {
        Some(memory) if memory.namespace == namespace => Ok(()),
        _ => Err(Error::NotFound(format!(
            "no memory with id {id:?} in this namespace; the get_memories tool lists its memories"
        ))),
    }
}
