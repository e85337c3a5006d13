//! `modstate mcp`: serve the Model Context Protocol on stdin/stdout (see `crate::mcp`).

use clap::Args;

use modstate::Result;
use modstate::memory::check_label;

use super::Context;

#[derive(Args)]
pub struct McpArgs {
    /// Namespace every memory tool works in; memories of other namespaces stay out of reach.
    #[arg(long, default_value = "")]
    namespace: String,
}

pub fn run(ctx: &Context, args: McpArgs) -> Result<i32> {
    check_label("namespace", &args.namespace)?;
    let store = ctx.open()?;
    // The server's stderr is its log: every line says whose it is.
    if let Some(created) = ctx.take_created_notice() {
        super::notice(&format!("modstate mcp: {created}"));
    }
    let embedder = ctx.embedder.shared()?;
    crate::mcp::serve(store, &args.namespace, fenced_opener(ctx)?, embedder)
}

/// How a write tool called with `fence` opens the same database with it (its write
/// transactions check the token); `modstate serve` shares it.
pub(super) fn fenced_opener(ctx: &Context) -> Result<crate::mcp::handler::Reopen> {
    let db = ctx.db_path()?.to_path_buf();
    let options = ctx.options();
    Ok(std::sync::Arc::new(move |fence| {
        modstate::Store::open(
            &db,
            modstate::Options {
                fence: Some(fence),
                ..options.clone()
            },
        )
    }))
}
