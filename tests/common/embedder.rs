//! An embedder with fixed answers for tests and benchmarks that need vectors but not meaning:
//! each text's vector comes from a hash of the text, so every engine and every run sees the
//! same vectors, with no model and no server.

use modstate::embed::{Embedder, Kind};

/// Vectors of `dimension` pseudo-random components in [-1, 1), seeded by the text (FNV-1a,
/// then xorshift); the model id is `hashed@<dimension>`.
pub struct Hashed {
    /// The vectors' length.
    pub dimension: usize,
}

impl Hashed {
    /// The vector of `text`.
    pub fn vector(&self, text: &str) -> Vec<f32> {
        let mut state = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        (0..self.dimension)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }
}

impl Embedder for Hashed {
    fn model_id(&self) -> modstate::Result<String> {
        Ok(format!("hashed@{}", self.dimension))
    }

    fn embed(&self, texts: &[&str], _kind: Kind) -> modstate::Result<Vec<Vec<f32>>> {
        Ok(texts.iter().map(|t| self.vector(t)).collect())
    }
}
