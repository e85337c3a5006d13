//! The search ranking: a score that depends only on the memory and the query.
//!
//! Why not FTS5's built-in `bm25()`:
//! * **Paging.** bm25 weighs a term by how many *other* memories hold it, so every write
//!   anywhere shifts every score and reorders results between two pages: a cursor over
//!   `(score, id)` would then repeat some results and skip others. This score depends only on
//!   the memory itself and the query, so a memory that has not changed keeps its score, and a
//!   cursor over `(score, id)` is exact.
//! * **Keyword stuffing.** bm25 rewards repeating a word; "deploy deploy production deploy"
//!   beats "Deploys to production happen on Fridays". Here a repeated query word is not a
//!   better match, and a memory made mostly of repeated query words is penalised.
//!
//! First, how many of the query's words a memory holds (normally all: the query ANDs them;
//! when no memory holds them all, the search falls back to any of them). Then how closely it
//! matches: the query found as one phrase, in order (the strongest signal), then shorter
//! memories first (a short note about the words is about them; a long one merely mentions
//! them), then stuffing as a penalty. See [`Features::score`].
//!
//! The score is computed here from features any engine can report; the SQLite backend
//! reports them from an FTS5 auxiliary function (`store/sqlite/rank.rs`).

/// What the score is computed from, for one memory and one query.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Features {
    /// Tokens in each query phrase (a word is one token; a CJK run is its bigrams).
    pub phrase_sizes: Vec<usize>,
    /// Every match in the memory: (phrase index, token offset).
    pub instances: Vec<(usize, usize)>,
    /// Tokens in the memory's searched text.
    pub length: usize,
}

impl Features {
    /// Higher is better. Components, by weight:
    /// * 10 for each query word the memory holds: when every word is required all results
    ///   share this part; when any word will do (the fallback), more words always rank first;
    /// * 2 when the whole query (two phrases or more) occurs in order as one phrase;
    /// * 1 / (1 + ln length): from 1 for a one-word memory down to ~0.2 at 100 words;
    /// * −8 × how far the share of the memory that is *repeated* query words exceeds 20%.
    ///   Natural text repeats a word now and then (under the threshold, no penalty);
    ///   stuffed text is mostly repeats and loses the phrase bonus and more.
    pub fn score(&self) -> f64 {
        let phrases = self.phrase_sizes.len();
        let mut seen = vec![false; phrases];
        for &(phrase, _) in &self.instances {
            if let Some(flag) = seen.get_mut(phrase) {
                *flag = true;
            }
        }
        let distinct = seen.iter().filter(|s| **s).count();
        let repeats = self.instances.len().saturating_sub(distinct) as f64;
        let length = self.length.max(1) as f64;
        let phrase = if phrases >= 2 && self.has_whole_phrase() {
            2.0
        } else {
            0.0
        };
        let stuffing = (repeats / length - 0.2).max(0.0);
        10.0 * distinct as f64 + phrase + 1.0 / (1.0 + length.ln()) - 8.0 * stuffing
    }

    /// Whether phrase 0, 1, 2, … occur one right after another somewhere.
    fn has_whole_phrase(&self) -> bool {
        let at = |phrase: usize, offset: usize| self.instances.contains(&(phrase, offset));
        self.instances
            .iter()
            .filter(|(phrase, _)| *phrase == 0)
            .any(|&(_, start)| {
                let mut offset = start;
                for phrase in 1..self.phrase_sizes.len() {
                    offset += self.phrase_sizes[phrase - 1];
                    if !at(phrase, offset) {
                        return false;
                    }
                }
                true
            })
    }
}

#[cfg(test)]
mod tests {
    use super::Features;

    fn doc(phrase_sizes: &[usize], instances: &[(usize, usize)], length: usize) -> f64 {
        Features {
            phrase_sizes: phrase_sizes.to_vec(),
            instances: instances.to_vec(),
            length,
        }
        .score()
    }

    #[test]
    fn the_whole_phrase_beats_scattered_words() {
        let phrase = doc(&[1, 1], &[(0, 3), (1, 4)], 12);
        let scattered = doc(&[1, 1], &[(0, 1), (1, 6)], 7);
        assert!(phrase > scattered);
    }

    #[test]
    fn stuffing_loses_to_a_natural_sentence() {
        // "deploy deploy deploy production production production deploy production"
        let stuffed = doc(
            &[1, 1],
            &[
                (0, 0),
                (0, 1),
                (0, 2),
                (1, 3),
                (1, 4),
                (1, 5),
                (0, 6),
                (1, 7),
            ],
            8,
        );
        // "Deploys to production happen on Fridays after the standup"
        let natural = doc(&[1, 1], &[(0, 0), (1, 2)], 9);
        assert!(natural > stuffed, "{natural} vs {stuffed}");
    }

    #[test]
    fn more_words_matched_always_rank_first() {
        let both = doc(&[1, 1, 1], &[(0, 40), (1, 80)], 100);
        let one = doc(&[1, 1, 1], &[(0, 0), (0, 1)], 2);
        assert!(both > one, "{both} vs {one}");
    }

    #[test]
    fn shorter_is_better_and_a_mention_repeated_once_is_not_stuffing() {
        assert!(doc(&[1], &[(0, 0)], 5) > doc(&[1], &[(0, 0)], 20));
        assert_eq!(doc(&[1], &[(0, 0), (0, 9)], 20), doc(&[1], &[(0, 0)], 20));
    }
}
