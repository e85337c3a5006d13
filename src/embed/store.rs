//! The store's side of embedding: vectors for memories just written, and filling in what is
//! missing (`memory embed`). The embedder is called outside every transaction and the write
//! lock; only the finished vectors are written, one short transaction per batch.

use super::{Embedder, Kind, Quantized};
use crate::error::{Error, Result};
use crate::memory::Memory;
use crate::store::Store;

/// How far [`Store::embed_missing`] has got.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EmbedProgress {
    /// Vectors stored so far.
    pub embedded: u64,
    /// Memories that lacked a vector when the run started (of the namespace, if given).
    pub missing: u64,
}

/// How many live memories have a vector of the embedder's model, and how many lack one.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Coverage {
    /// The model id (`name@dimension`) counted.
    pub model: String,
    /// Memories with a vector of it.
    pub embedded: u64,
    /// Memories without one (`memory embed` fills them in).
    pub missing: u64,
}

impl Store {
    /// Computes the vectors of `memories` (just written) and stores each while its memory is
    /// still at the version it was computed from; answers how many were stored. The write of
    /// the memories is already committed: a failure here (embedder down, slow, wrong) only
    /// means they lack a vector until `memory embed`.
    pub fn embed_memories(&self, embedder: &dyn Embedder, memories: &[Memory]) -> Result<usize> {
        if memories.is_empty() {
            return Ok(0);
        }
        let texts: Vec<&str> = memories.iter().map(|m| m.body.as_str()).collect();
        let (model, vectors) = vectors_of(embedder, &texts, Kind::Passage)?;
        let rows: Vec<(String, u64, Vec<f32>)> = memories
            .iter()
            .zip(vectors)
            .map(|(m, v)| (m.id.clone(), m.version, v))
            .collect();
        self.backend().put_vectors(&model, &rows)
    }

    /// Embeds every live memory (of `namespace`) lacking a vector of the embedder's model, in
    /// batches of `batch`: each batch is embedded outside any transaction, then stored in one.
    /// Resumable by construction: what a stopped run stored stays, and the next run starts
    /// with what is still missing. A memory changed while its batch was embedded is skipped
    /// (it lacks a vector of its new text and a later run embeds it). A batch the embedder
    /// fails on while its first text alone succeeds was too much for one request (long texts
    /// on a busy CPU outlast the request timeout): the run goes on with batches a quarter the
    /// size; only an embedder that fails on a single text ends it.
    pub fn embed_missing(
        &self,
        embedder: &dyn Embedder,
        namespace: Option<&str>,
        batch: usize,
        progress: &mut dyn FnMut(EmbedProgress),
    ) -> Result<EmbedProgress> {
        let model = embedder.model_id()?;
        let mut batch = batch.max(1);
        let (_, missing) = self.backend().vector_coverage(&model)?;
        let mut done = EmbedProgress {
            embedded: 0,
            missing,
        };
        let mut after: Option<String> = None;
        loop {
            let rows = self
                .backend()
                .unembedded(&model, namespace, after.as_deref(), batch)?;
            let Some(last) = rows.last() else {
                break;
            };
            let texts: Vec<&str> = rows.iter().map(|(_, _, body)| body.as_str()).collect();
            let (now, vectors) = match vectors_of(embedder, &texts, Kind::Passage) {
                Ok(answer) => answer,
                Err(Error::Embedder(why)) if texts.len() > 1 => {
                    // Too much for one request, or a broken embedder? One text tells.
                    vectors_of(embedder, &texts[..1], Kind::Passage)
                        .map_err(|_| Error::Embedder(why))?;
                    batch = (texts.len() / 4).max(1);
                    continue;
                }
                Err(e) => return Err(e),
            };
            after = Some(last.0.clone());
            if now != model {
                return Err(Error::Embedder(format!(
                    "the embedder's model changed from {model} to {now} during the run; run it again"
                )));
            }
            let rows: Vec<(String, u64, Vec<f32>)> = rows
                .into_iter()
                .zip(vectors)
                .map(|((id, version, _), v)| (id, version, v))
                .collect();
            done.embedded += self.backend().put_vectors(&model, &rows)? as u64;
            progress(done);
        }
        Ok(done)
    }

    /// How many live memories have a vector of the embedder's model and how many lack one.
    pub fn vector_coverage(&self, embedder: &dyn Embedder) -> Result<Coverage> {
        let model = embedder.model_id()?;
        let (embedded, missing) = self.backend().vector_coverage(&model)?;
        Ok(Coverage {
            model,
            embedded,
            missing,
        })
    }
}

/// The embedder's model id and its vectors of `texts`, checked (one per text, of the model's
/// dimension, finite and not zero) and quantised as stored, so every engine compares the same
/// values. The texts are embedded first, so a remote embedder learns its dimension from this
/// answer instead of a separate request.
pub(crate) fn vectors_of(
    embedder: &dyn Embedder,
    texts: &[&str],
    kind: Kind,
) -> Result<(String, Vec<Vec<f32>>)> {
    let vectors = embedder.embed(texts, kind)?;
    let model = embedder.model_id()?;
    let model = model.as_str();
    if vectors.len() != texts.len() {
        return Err(Error::Embedder(format!(
            "the embedder answered {} vectors for {} texts",
            vectors.len(),
            texts.len()
        )));
    }
    let dimension = dimension_of(model);
    let vectors = vectors
        .iter()
        .map(|v| {
            if dimension.is_some_and(|d| d != v.len()) {
                return Err(Error::Embedder(format!(
                    "the embedder answered a vector of {} dimensions, but model {model} has {}; check that the server runs the model it ran before",
                    v.len(),
                    dimension.unwrap_or(0)
                )));
            }
            Quantized::of(v)
                .map(|q| q.to_f32())
                .map_err(|e| Error::Embedder(format!("the embedder answered a bad vector: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((model.to_owned(), vectors))
}

/// The dimension a model id names (`name@384`).
pub(crate) fn dimension_of(model: &str) -> Option<usize> {
    model.rsplit_once('@').and_then(|(_, d)| d.parse().ok())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::memory::NewMemory;
    use crate::store::Options;

    /// Answers batches of at most `most` texts and fails larger ones, as a server does whose
    /// request timeout a large batch outlasts; counts its requests.
    struct Limited {
        most: usize,
        requests: AtomicUsize,
    }

    impl Embedder for Limited {
        fn model_id(&self) -> Result<String> {
            Ok("limited@4".into())
        }

        fn embed(&self, texts: &[&str], _kind: Kind) -> Result<Vec<Vec<f32>>> {
            self.requests.fetch_add(1, Ordering::Relaxed);
            if texts.len() > self.most {
                return Err(Error::Embedder("no answer within 10s".into()));
            }
            Ok(texts
                .iter()
                .map(|t| vec![1.0, t.len() as f32, 0.5, 0.25])
                .collect())
        }
    }

    fn store_of(count: usize) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("e.db"), Options::default()).unwrap();
        let memories: Vec<NewMemory> = (0..count)
            .map(|i| NewMemory {
                body: format!("memory number {i}"),
                ..NewMemory::default()
            })
            .collect();
        store.add_memories(memories).unwrap();
        (dir, store)
    }

    #[test]
    fn a_batch_too_large_for_one_request_is_split_and_the_run_finishes() {
        let (_dir, store) = store_of(40);
        let embedder = Limited {
            most: 3,
            requests: AtomicUsize::new(0),
        };
        let done = store
            .embed_missing(&embedder, None, 64, &mut |_| {})
            .unwrap();
        assert_eq!(done.embedded, 40);
        assert_eq!(store.vector_coverage(&embedder).unwrap().missing, 0);
    }

    #[test]
    fn an_embedder_that_fails_on_one_text_ends_the_run_with_its_error() {
        let (_dir, store) = store_of(5);
        let embedder = Limited {
            most: 0,
            requests: AtomicUsize::new(0),
        };
        let error = store
            .embed_missing(&embedder, None, 64, &mut |_| {})
            .unwrap_err();
        assert!(
            error.to_string().contains("no answer within 10s"),
            "{error}"
        );
        // The batch, then one text to tell: not a request per text.
        assert_eq!(embedder.requests.load(Ordering::Relaxed), 2);
    }
}
