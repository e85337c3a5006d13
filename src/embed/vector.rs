//! Vectors as modstate stores and compares them: L2-normalised, then quantised to one signed
//! byte per dimension with one scale per vector.
//!
//! Why int8: a SQLite search reads every stored vector of the model (exact k-nearest, no
//! approximate index), and 384 f32 per memory is 150 MB per search at 100,000 memories; one
//! byte a dimension is a quarter of that, and ranking on the quantised values loses less than
//! a thousandth of cosine similarity. Similarity is *defined* on the stored values, so it is
//! exact and deterministic: the same query vector scores a memory the same on every page.

use crate::error::{Error, Result};

/// A vector quantised to int8: `value[i] * scale` approximates the normalised component.
#[derive(Clone, Debug, PartialEq)]
pub struct Quantized {
    /// The multiplier back to the normalised vector (its largest component divided by 127).
    pub scale: f32,
    /// One signed byte per dimension.
    pub values: Vec<i8>,
}

impl Quantized {
    /// Quantises `vector` after scaling it to unit length. A zero vector (or one with a
    /// non-finite component) has no direction to compare: it is refused as invalid.
    pub fn of(vector: &[f32]) -> Result<Quantized> {
        let unit = normalised(vector)?;
        let largest = unit.iter().fold(0f32, |m, x| m.max(x.abs()));
        let scale = largest / 127.0;
        let values = unit
            .iter()
            .map(|x| (x / scale).round().clamp(-127.0, 127.0) as i8)
            .collect();
        Ok(Quantized { scale, values })
    }

    /// The vector back as f32 (what a backend without int8 storage stores and compares), so
    /// every engine ranks by the same values.
    pub fn to_f32(&self) -> Vec<f32> {
        self.values
            .iter()
            .map(|&v| f32::from(v) * self.scale)
            .collect()
    }

    /// The stored form: the scale (4 bytes, little-endian f32), then the bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(4 + self.values.len());
        bytes.extend_from_slice(&self.scale.to_le_bytes());
        bytes.extend(self.values.iter().map(|&v| v as u8));
        bytes
    }

    /// Reads the stored form back; `None` when it is not one.
    pub fn from_bytes(bytes: &[u8]) -> Option<Quantized> {
        let (scale, values) = bytes.split_first_chunk::<4>()?;
        let scale = f32::from_le_bytes(*scale);
        scale.is_finite().then(|| Quantized {
            scale,
            values: values.iter().map(|&b| b as i8).collect(),
        })
    }

    /// This vector as a query, ready to score many stored vectors.
    pub fn query(&self) -> QueryVector {
        QueryVector {
            scale: self.scale,
            wide: self.values.iter().map(|&v| i16::from(v)).collect(),
        }
    }

    /// This (query) vector's similarity to a vector in its stored form
    /// ([`Quantized::to_bytes`]); `None` when the bytes are not one.
    pub fn similarity_to_stored(&self, stored: &[u8]) -> Option<f64> {
        self.query().similarity_to_stored(stored)
    }

    /// Cosine similarity of two quantised unit vectors (the dot product of the stored values).
    /// Vectors of different lengths are not comparable: 0.
    pub fn similarity(&self, other: &Quantized) -> f64 {
        let stored: Vec<u8> = other.values.iter().map(|&v| v as u8).collect();
        self.query().similarity(&stored, other.scale)
    }
}

/// A quantised query with its values widened to 16 bits once, to score many stored vectors:
/// multiplying 16-bit lanes and adding the pairs is one vector instruction on every x86-64
/// (`pmaddwd`) and ARM CPU, and the compiler finds it in [`dot`] only when the query is already
/// wide (twice as fast as widening both sides per vector, measured at 384 dimensions). The
/// products are the same integers either way: scores do not depend on how they were summed.
#[derive(Clone, Debug)]
pub struct QueryVector {
    scale: f32,
    wide: Vec<i16>,
}

impl QueryVector {
    /// Similarity to a vector in its stored form ([`Quantized::to_bytes`]); `None` when the
    /// bytes are not one.
    pub fn similarity_to_stored(&self, stored: &[u8]) -> Option<f64> {
        let (scale, values) = stored.split_first_chunk::<4>()?;
        Some(self.similarity(values, f32::from_le_bytes(*scale)))
    }

    /// Similarity to a stored vector's bytes (without its scale) and its scale: an integer
    /// dot product, then one multiply. Different lengths are not comparable: 0.
    pub fn similarity(&self, stored: &[u8], stored_scale: f32) -> f64 {
        if self.wide.len() != stored.len() {
            return 0.0;
        }
        dot(&self.wide, stored) as f64 * f64::from(self.scale) * f64::from(stored_scale)
    }
}

/// The dot product of a widened query and stored bytes of the same length, summed in i32
/// over runs of 4,096 products (4,096 * 127 * 127 < 2^31): one run for any real model, a
/// loop the compiler keeps in vector registers (runs of 32 or 64 measured 1.6 times slower).
fn dot(wide: &[i16], stored: &[u8]) -> i64 {
    let mut total: i64 = 0;
    for (q, s) in wide.chunks(4096).zip(stored.chunks(4096)) {
        let mut run: i32 = 0;
        for (&a, &b) in q.iter().zip(s) {
            run += i32::from(a) * i32::from(b as i8);
        }
        total += i64::from(run);
    }
    total
}

/// `vector` scaled to unit length; a zero or non-finite vector is invalid.
pub fn normalised(vector: &[f32]) -> Result<Vec<f32>> {
    if vector.iter().any(|x| !x.is_finite()) {
        return Err(Error::Invalid(
            "the embedding has a component that is not a finite number".into(),
        ));
    }
    let norm = vector
        .iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt();
    if norm == 0.0 || vector.is_empty() {
        return Err(Error::Invalid(
            "the embedding is a zero vector, which has no direction to compare".into(),
        ));
    }
    Ok(vector
        .iter()
        .map(|&x| (f64::from(x) / norm) as f32)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantised_similarity_is_close_to_the_cosine_and_round_trips() {
        let a: Vec<f32> = (0..384)
            .map(|i| ((i * 7 % 23) as f32 - 11.0) / 3.0)
            .collect();
        let b: Vec<f32> = (0..384)
            .map(|i| ((i * 5 % 19) as f32 - 9.0) / 2.0)
            .collect();
        let (ua, ub) = (normalised(&a).unwrap(), normalised(&b).unwrap());
        let cosine: f64 = ua.iter().zip(&ub).map(|(x, y)| f64::from(x * y)).sum();
        let (qa, qb) = (Quantized::of(&a).unwrap(), Quantized::of(&b).unwrap());
        assert!((qa.similarity(&qb) - cosine).abs() < 2e-3, "{cosine}");
        assert!((qa.similarity(&qa) - 1.0).abs() < 2e-3);
        assert_eq!(Quantized::from_bytes(&qa.to_bytes()), Some(qa.clone()));
        // What a backend without int8 compares quantises back to the same values.
        assert_eq!(Quantized::of(&qa.to_f32()).unwrap().values, qa.values);
    }

    #[test]
    fn zero_and_non_finite_vectors_are_refused() {
        assert!(Quantized::of(&[0.0, 0.0]).is_err());
        assert!(Quantized::of(&[1.0, f32::NAN]).is_err());
        assert!(Quantized::of(&[]).is_err());
        assert!(Quantized::from_bytes(&[1, 2]).is_none());
    }
}
