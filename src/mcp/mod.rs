//! `modstate mcp`: a Model Context Protocol server on stdin/stdout, so an agent host can give
//! its agents memories (and module state) in the shared database without glue code.
//!
//! Built on rmcp, the official Rust SDK, which does the protocol: `initialize` with version
//! negotiation, `ping`, request dispatch, cancellation, draining answers at end of input.
//! This module adds the tools ([`tools`], [`handler`]) and a stdio transport that answers
//! malformed lines instead of dropping them ([`transport`]).
//!
//! The server lives in the binary, not the library: it is a front end like the CLI, and
//! library users should not get an async runtime through `modstate::Store`.
//!
//! One current-thread tokio runtime runs the protocol; store calls go to tokio's blocking
//! pool (see [`handler`]). Stdout carries protocol messages only; everything else — the
//! start-up line, skipped input, failures — goes to stderr.

pub(crate) mod handler;
pub mod http;
mod tls;
mod tools;
mod transport;

use rmcp::service::{QuitReason, ServerInitializeError};

use modstate::{Error, Result, Store};

use handler::MemoryServer;
use transport::StdioTransport;

/// Serves MCP on stdin/stdout until end of input; returns the exit code.
pub fn serve(
    store: Store,
    namespace: &str,
    reopen: handler::Reopen,
    embedder: Option<std::sync::Arc<dyn modstate::embed::Embedder>>,
) -> Result<i32> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| Error::io("starting the runtime for", store.path(), e))?;
    let transport = StdioTransport::start()
        .map_err(|e| Error::io("starting the stdin reader for", store.path(), e))?;
    eprintln!(
        "modstate mcp: serving {} (namespace {namespace:?}) on stdin/stdout",
        store.path().display()
    );
    // The last handle on the store is dropped here, outside the runtime: a server backend's
    // client closes its connections by blocking on its own runtime, which tokio forbids
    // inside another runtime's `block_on`.
    let last_handle = store.clone();
    let server = MemoryServer::new(store, namespace, reopen).with_embedder(embedder);
    let code = runtime.block_on(async move {
        let running = match rmcp::serve_server(server, transport).await {
            Ok(running) => running,
            // End of input before `initialize`: nothing was asked, nothing went wrong.
            Err(ServerInitializeError::ConnectionClosed(_)) => return 0,
            Err(ServerInitializeError::ExpectedInitializeRequest(message)) => {
                eprintln!(
                    "error: the client sent {} before initialize; an MCP session starts with an initialize request",
                    describe(message.as_ref())
                );
                return 1;
            }
            Err(e) => {
                eprintln!("error: MCP initialization failed: {e}");
                return 1;
            }
        };
        match running.waiting().await {
            Ok(QuitReason::JoinError(e)) => {
                eprintln!("error: the MCP service stopped: {e}");
                1
            }
            Ok(_) => 0,
            Err(e) => {
                eprintln!("error: the MCP service stopped: {e}");
                1
            }
        }
    });
    // Dropping the runtime waits for store calls still running on the blocking pool (each
    // bounded by --lock-timeout), so a write in flight at end of input commits or rolls back
    // before the process exits, instead of being cut off.
    drop(runtime);
    drop(last_handle);
    Ok(code)
}

/// Names a message for an error line without dumping its content.
fn describe(message: Option<&rmcp::model::ClientJsonRpcMessage>) -> String {
    let Some(message) = message else {
        return "nothing".into();
    };
    let value = serde_json::to_value(message).unwrap_or_default();
    match value.get("method").and_then(|m| m.as_str()) {
        Some(method) => format!("{method:?}"),
        None => "a response".into(),
    }
}
