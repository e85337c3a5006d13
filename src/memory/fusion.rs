//! Hybrid search: one score per memory from its keyword score and its vector similarity.
//!
//! Weighted reciprocal-rank fusion (`w / (k + keyword rank) + 1 / (k + vector rank)`, with
//! [`KEYWORD_WEIGHT`] and [`RRF_K`] chosen by measurement) is the recipe, but a rank is not a property of a memory: a memory deleted between two pages moves
//! every rank after it, so pages computed from live ranks overlap or skip. Here the ranks are
//! *frozen at the first page*: each list's scores at ranks 1–32 exactly and at geometrically
//! spaced ranks beyond (the list's [`Ranks`]) travel in the cursor, and a memory's rank in a
//! list is read off that scale from its own score — exactly the first page's rank in the top
//! 32, interpolated below. A memory's fused score then depends only on the memory, the query
//! and the cursor: later pages continue exactly, as keyword search does with its statistics.

/// A ranked list's scores at chosen ranks, best first, as of the first page.
#[derive(Clone, Debug, PartialEq)]
pub struct Ranks {
    /// How many results the list had (at most [`DEPTH`]).
    pub total: u64,
    /// The score of the first result left out below [`DEPTH`] (`-inf`: none was): a memory
    /// is in the list only when it scores above it, on every page.
    pub cut: f64,
    /// The score at each rank of [`positions`]`(total)`, non-increasing.
    pub scores: Vec<f64>,
}

/// The `k` of reciprocal-rank fusion: how much the first ranks outweigh later ones. Chosen
/// by measurement (issue 25's fusion study over the recall benchmark's rows, LongMemEval and
/// LoCoMo): with the textbook 60 and equal weights, the small dense model's ranks push keyword
/// search's best results out, and hybrid falls *below* keyword alone on LoCoMo.
pub const RRF_K: f64 = 30.0;

/// How much a keyword rank weighs against a vector rank of the same place. Weight 3 with k =
/// 30 was the only setting at or above both modstate keyword search and the Python reference
/// fusion (rank_bm25 + the same model, RRF k = 60) on every cell, and sits on a plateau
/// (k 15–50, weight 3–5 all pass), with float and with int8 vectors alike.
pub const KEYWORD_WEIGHT: f64 = 3.0;

/// Ranks 1 to this are kept exactly.
const EXACT: u64 = 32;

/// How deep each list is fused: a memory ranked below this in both lists is not a hybrid
/// result (its fused score would be under 1/1030 of the first's anyway). Keeps a hybrid page
/// at two bounded reads however large the store.
pub const DEPTH: usize = 1000;

/// A hybrid search's frozen rank scales: the keyword list's and the vector list's.
#[derive(Clone, Debug, PartialEq)]
pub struct Fusion {
    /// The keyword search's scores by rank.
    pub keyword: Ranks,
    /// The vector search's similarities by rank.
    pub semantic: Ranks,
}

/// The ranks whose scores a [`Ranks`] keeps for a list of `total`: 1 to 32, then each half
/// again as far, then the last.
pub fn positions(total: u64) -> Vec<u64> {
    let mut out: Vec<u64> = (1..=EXACT.min(total)).collect();
    let mut next = EXACT + EXACT / 2;
    while next < total {
        out.push(next);
        next += next / 2;
    }
    if total > EXACT {
        out.push(total);
    }
    out
}

impl Ranks {
    /// The scale of a list whose scores, best first, are `sorted`.
    pub fn of(sorted: &[f64]) -> Ranks {
        Ranks::cut(sorted, usize::MAX)
    }

    /// The scale of the first `depth` of `sorted` (best first); a score equal to the first
    /// one left out is left out too, so membership is decided by the score alone.
    pub fn cut(sorted: &[f64], depth: usize) -> Ranks {
        let (kept, cut) = match sorted.get(depth) {
            Some(&cut) => {
                let kept = sorted[..depth].partition_point(|&s| s > cut);
                (&sorted[..kept], cut)
            }
            None => (sorted, f64::NEG_INFINITY),
        };
        let total = kept.len() as u64;
        let scores = positions(total)
            .into_iter()
            .map(|p| kept[(p - 1) as usize])
            .collect();
        Ranks { total, cut, scores }
    }

    /// Whether a result of `score` is in the list (above its cut).
    pub fn holds(&self, score: f64) -> bool {
        score > self.cut && !self.scores.is_empty()
    }

    /// The rank a result of `score` had (or would have had) at the first page: the first
    /// rank whose score it reaches, interpolated between kept ranks; past the end, one more
    /// than the list's length. `None` for an empty list.
    pub fn rank(&self, score: f64) -> Option<f64> {
        let positions = positions(self.total);
        let j = self.scores.iter().position(|&s| s <= score);
        Some(match j {
            _ if self.scores.is_empty() => return None,
            Some(0) => 1.0,
            Some(j) => {
                let (hi, lo) = (self.scores[j - 1], self.scores[j]);
                let (p_hi, p_lo) = (positions[j - 1] as f64, positions[j] as f64);
                p_hi + (p_lo - p_hi) * (hi - score) / (hi - lo)
            }
            None => self.total as f64 + 1.0,
        })
    }
}

impl Fusion {
    /// The fused score of a memory with these scores (`None`: not in that list).
    pub fn score(&self, keyword: Option<f64>, similarity: Option<f64>) -> f64 {
        let part = |ranks: &Ranks, score: Option<f64>| {
            score
                .filter(|&s| ranks.holds(s))
                .and_then(|s| ranks.rank(s))
                .map_or(0.0, |r| 1.0 / (RRF_K + r))
        };
        KEYWORD_WEIGHT * part(&self.keyword, keyword) + part(&self.semantic, similarity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_are_exact_at_the_top_and_interpolated_below() {
        let sorted: Vec<f64> = (0..500).map(|i| 1000.0 - f64::from(i)).collect();
        let ranks = Ranks::of(&sorted);
        assert_eq!(ranks.total, 500);
        for (i, &s) in sorted.iter().enumerate().take(32) {
            assert_eq!(ranks.rank(s), Some(i as f64 + 1.0));
        }
        // Linear scores: the interpolation is exact everywhere.
        for (i, &s) in sorted.iter().enumerate() {
            assert!(
                (ranks.rank(s).unwrap() - (i as f64 + 1.0)).abs() < 1e-9,
                "{i}"
            );
        }
        assert_eq!(ranks.rank(5000.0), Some(1.0));
        assert_eq!(ranks.rank(-5.0), Some(501.0));
        assert_eq!(Ranks::of(&[]).rank(1.0), None);
        assert!(positions(500).len() < 50);
        // Cut at a depth: what ties the first left out is out too, on every page.
        let cut = Ranks::cut(&[9.0, 8.0, 7.0, 7.0, 6.0], 3);
        assert_eq!((cut.total, cut.cut), (2, 7.0));
        assert!(cut.holds(8.0) && !cut.holds(7.0) && !cut.holds(6.5));
        assert!(Ranks::cut(&[9.0, 8.0], 3).holds(-100.0));
    }

    #[test]
    fn fusion_is_weighted_reciprocal_rank_fusion_at_the_top() {
        let fusion = Fusion {
            keyword: Ranks::of(&[9.0, 5.0, 1.0]),
            semantic: Ranks::of(&[0.9, 0.8, 0.7, 0.1]),
        };
        let both = fusion.score(Some(5.0), Some(0.9));
        let k = RRF_K;
        assert!((both - (KEYWORD_WEIGHT / (k + 2.0) + 1.0 / (k + 1.0))).abs() < 1e-12);
        assert!((fusion.score(None, Some(0.7)) - 1.0 / (k + 3.0)).abs() < 1e-12);
        assert_eq!(fusion.score(None, None), 0.0);
        assert!(fusion.score(Some(9.0), None) > fusion.score(Some(1.0), None));
    }
}
