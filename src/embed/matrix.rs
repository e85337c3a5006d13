//! The stored vectors of one model side by side in memory, and the exact best of them for a
//! query.
//!
//! Why: a semantic search on SQLite scores every vector of the model, and stepping through
//! 100,000 rows costs several times more than the dot products themselves. A long-lived
//! process (`mcp`, `serve`) keeps the vectors it read as one block between searches, for as
//! long as the store says no vector was added since (the SQLite backend keys it by the
//! store's counter), and scores the block instead of reading the table again. Memory: the
//! dimension plus 12 bytes a vector (39 MB for 100,000 memories of 384 dimensions).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::vector::Quantized;

/// Vectors in their stored form ([`Quantized::to_bytes`]), one row per memory, in one block,
/// in the order of the memories' rows (as the table is read).
#[derive(Clone, Debug, Default)]
pub struct Matrix {
    /// The dimension of the rows in `values` (that of the first vector read).
    dims: usize,
    /// Each row's memory, by its row number in the store.
    seqs: Vec<i64>,
    /// Each row's scale.
    scales: Vec<f32>,
    /// The rows' bytes, `dims` per row.
    values: Vec<u8>,
    /// Vectors of another length than the first (only a damaged store has them), kept whole
    /// so they score exactly as a read from the table does.
    others: Vec<(i64, Vec<u8>)>,
}

impl Matrix {
    /// Adds one stored vector; bytes too short to hold a scale are no vector and are left out,
    /// as a search of the table leaves them out.
    pub fn push(&mut self, seq: i64, stored: &[u8]) {
        let Some((scale, values)) = stored.split_first_chunk::<4>() else {
            return;
        };
        if self.seqs.is_empty() && self.others.is_empty() {
            self.dims = values.len();
        }
        if values.len() == self.dims {
            self.seqs.push(seq);
            self.scales.push(f32::from_le_bytes(*scale));
            self.values.extend_from_slice(values);
        } else {
            self.others.push((seq, stored.to_vec()));
        }
    }

    /// Stores one memory's vector as a write just stored it in the table: replaces the row of
    /// `seq`, or appends it after the last. `false` when it cannot keep the order (a row
    /// between others) or the vector is not of the block's dimension: the caller then drops
    /// the block, and the next search reads the table.
    pub fn upsert(&mut self, seq: i64, stored: &[u8]) -> bool {
        let Some((scale, values)) = stored.split_first_chunk::<4>() else {
            return false;
        };
        if !self.others.is_empty() {
            return false;
        }
        if self.seqs.is_empty() {
            self.dims = values.len();
        }
        if values.len() != self.dims {
            return false;
        }
        let scale = f32::from_le_bytes(*scale);
        match self.seqs.binary_search(&seq) {
            Ok(row) => {
                self.scales[row] = scale;
                self.values[row * self.dims..(row + 1) * self.dims].copy_from_slice(values);
                true
            }
            Err(row) if row == self.seqs.len() => {
                self.seqs.push(seq);
                self.scales.push(scale);
                self.values.extend_from_slice(values);
                true
            }
            Err(_) => false,
        }
    }

    /// Empties the block and keeps its memory, to be filled again: a 39 MB block allocated
    /// afresh costs the page faults of every page (measured: more than scoring it).
    pub fn clear(&mut self) {
        self.dims = 0;
        self.seqs.clear();
        self.scales.clear();
        self.values.clear();
        self.others.clear();
    }

    /// The bytes this block holds (what keeping it costs).
    pub fn bytes(&self) -> usize {
        self.values.len()
            + self.seqs.len() * (std::mem::size_of::<i64>() + std::mem::size_of::<f32>())
            + self.others.iter().map(|(_, v)| v.len() + 8).sum::<usize>()
    }

    /// The best `keep` vectors for `query` that score at most `at_most` (a cursor's score:
    /// the ones above it were shown), as [`Best::offer`] keeps them.
    pub fn best(&self, query: &Quantized, at_most: Option<f64>, keep: usize) -> Best {
        let query = query.query();
        let mut best = Best::new(keep);
        let mut offer = |score: f64, seq: i64| {
            if at_most.is_none_or(|limit| score <= limit) {
                best.offer(score, seq);
            }
        };
        if self.dims > 0 {
            for ((row, &scale), &seq) in self
                .values
                .chunks_exact(self.dims)
                .zip(&self.scales)
                .zip(&self.seqs)
            {
                offer(query.similarity(row, scale), seq);
            }
        }
        for (seq, stored) in &self.others {
            if let Some(score) = query.similarity_to_stored(stored) {
                offer(score, *seq);
            }
        }
        best
    }
}

/// The best-scoring vectors seen, at most `keep`, and the best score left out: every vector
/// scoring above `left_out` is kept, which is what makes a search from them exact.
#[derive(Debug)]
pub struct Best {
    keep: usize,
    /// Min-heap of the kept (score, memory row).
    heap: BinaryHeap<(Reverse<OrderedScore>, i64)>,
    /// The best score not kept (minus infinity while nothing was left out).
    pub left_out: f64,
}

impl Best {
    /// Keeps at most `keep`.
    pub fn new(keep: usize) -> Best {
        Best {
            keep,
            heap: BinaryHeap::with_capacity(keep.saturating_add(1).min(1 << 16)),
            left_out: f64::NEG_INFINITY,
        }
    }

    /// Offers one scored vector. When full, a score no better than the worst kept is left
    /// out without touching the heap (most of them, once the heap holds good ones).
    pub fn offer(&mut self, score: f64, seq: i64) {
        if self.heap.len() >= self.keep
            && let Some((Reverse(OrderedScore(worst)), _)) = self.heap.peek()
            && score <= *worst
        {
            self.left_out = self.left_out.max(score);
            return;
        }
        self.heap.push((Reverse(OrderedScore(score)), seq));
        if self.heap.len() > self.keep
            && let Some((Reverse(OrderedScore(dropped)), _)) = self.heap.pop()
        {
            self.left_out = self.left_out.max(dropped);
        }
    }

    /// The kept vectors that score above every one left out, as (score, memory row), in no
    /// particular order (a kept vector tied with one left out is dropped too: the caller
    /// cannot know which of the tied ones come first).
    pub fn above_left_out(self) -> Vec<(f64, i64)> {
        let left_out = self.left_out;
        self.heap
            .into_iter()
            .map(|(Reverse(OrderedScore(score)), seq)| (score, seq))
            .filter(|(score, _)| *score > left_out)
            .collect()
    }
}

/// A similarity ordered by `total_cmp`, for the heap.
#[derive(Clone, Copy, Debug, PartialEq)]
struct OrderedScore(f64);

impl Eq for OrderedScore {}

impl Ord for OrderedScore {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

impl PartialOrd for OrderedScore {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vector(i: usize, dims: usize) -> Quantized {
        let v: Vec<f32> = (0..dims)
            .map(|d| (((i * 31 + d * 17) % 97) as f32 - 48.0) / 7.0)
            .collect();
        Quantized::of(&v).unwrap()
    }

    /// The block answers what scoring each stored vector one by one answers, heap shortcut,
    /// odd-length rows and cursor bound included.
    #[test]
    fn the_block_keeps_what_scoring_each_row_keeps() {
        let mut matrix = Matrix::default();
        let mut rows = Vec::new();
        for i in 0..500 {
            let stored = if i % 97 == 5 {
                vector(i, 7).to_bytes()
            } else {
                vector(i, 48).to_bytes()
            };
            matrix.push(i as i64, &stored);
            rows.push((i as i64, stored));
        }
        matrix.push(9999, &[1, 2]);
        let query = vector(7, 48);
        for (keep, at_most) in [(10, None), (64, Some(0.2)), (600, None), (1, Some(-0.1))] {
            let mut one_by_one = Best::new(keep);
            let mut expected = Vec::new();
            for (seq, stored) in &rows {
                let score = query.similarity_to_stored(stored).unwrap();
                if at_most.is_none_or(|limit| score <= limit) {
                    one_by_one.offer(score, *seq);
                    expected.push((score, *seq));
                }
            }
            let mut got = matrix.best(&query, at_most, keep).above_left_out();
            let mut want = one_by_one.above_left_out();
            got.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            want.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            assert_eq!(got, want, "keep {keep}");
            // And they are the true best: nothing left out scores above the worst kept.
            expected.sort_by(|a, b| b.0.total_cmp(&a.0));
            let kept: std::collections::HashSet<i64> = got.iter().map(|g| g.1).collect();
            let worst = got.iter().map(|g| g.0).fold(f64::INFINITY, f64::min);
            assert!(
                expected
                    .iter()
                    .all(|(s, seq)| kept.contains(seq) || *s <= worst)
            );
        }
    }
}
