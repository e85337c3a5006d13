//! Memory vectors on PostgreSQL: not yet implemented on this engine (helper 25pg brings
//! pgvector). Until then every vector method refuses with one line, so adds and keyword
//! search work and semantic and hybrid search say why they cannot.

use super::PgBackend;
use crate::error::{Error, Result};
use crate::memory::{Cursor, Hit, MemoryFilter, Rows};

fn refused() -> Error {
    Error::Unsupported(
        "semantic and hybrid search on PostgreSQL need the pgvector extension, which this modstate does not use yet; search with --mode keyword, or use a SQLite store".into(),
    )
}

impl PgBackend {
    pub(crate) fn put_vectors_pg(
        &self,
        _model: &str,
        _rows: &[(String, u64, Vec<f32>)],
    ) -> Result<usize> {
        Err(refused())
    }

    pub(crate) fn unembedded_pg(
        &self,
        _model: &str,
        _namespace: Option<&str>,
        _after: Option<&str>,
        _limit: usize,
    ) -> Result<Vec<(String, u64, String)>> {
        Err(refused())
    }

    pub(crate) fn vector_coverage_pg(&self, _model: &str) -> Result<(u64, u64)> {
        Err(refused())
    }

    pub(crate) fn nearest_memories_pg(
        &self,
        _model: &str,
        _query: &[f32],
        _filter: &MemoryFilter,
        _after: Option<&Cursor>,
    ) -> Result<Rows<Hit>> {
        Err(refused())
    }
}
