//! The search ranking, in one place: which words of a query are scored, the statistics a score
//! depends on, and the formula.
//!
//! **The formula** ([`Scorer::score`]) is BM25+ (Okapi BM25 with Lv and Zhai's lower bound)
//! over the query's scored terms, with idf as Lucene and tantivy compute it, plus two things
//! BM25 lacks:
//! * `idf(f) = ln(1 + (N − df + 0.5) / (df + 0.5))` for each form `f` of a term: a word few
//!   memories hold weighs more (N memories, df of them hold `f`); always positive;
//! * `idf(f) · (tf·(k1 + 1) / (tf + k1·(1 − b + b·len/avglen)) + δ)` per form, k1 = 1.2,
//!   b = 0.5, δ = 1: repeating a word helps with diminishing returns, length is normalised
//!   against the average so neither the shortest nor the longest memory wins by length alone,
//!   and holding the word at all is worth δ however long the memory (plain BM25 scores a word
//!   in a long memory as if it were barely there);
//! * a term scores by its **best form** (a disjunction-max): the word typed at full weight, an
//!   irregular form ("buy" for "bought") at [`ALTERNATIVE_WEIGHT`], each with its own idf, so a
//!   common form's many matches never borrow a rare form's weight;
//! * a **proximity bonus** for each pair of neighbouring query terms found next to each other
//!   as in the query ("code review"): [`PAIR_BONUS`] × the smaller of their idfs. The whole
//!   query found as a phrase collects every pair;
//! * a **stuffing penalty**: when more than 20% of a memory's words are repeats of query terms,
//!   its score is divided by `1 + 8 × (share − 0.2)`. Natural text repeats a word now and then;
//!   "deploy deploy production deploy" is mostly repeats, and loses to a sentence.
//!
//! **Which words are scored** ([`Ranking::plan`]): every term of the query except function
//! words ("what", "did", "the", see `words.rs`) when it has any other; each term with its
//! irregular forms ("went" also finds "go"). Every memory holding any scored term is a
//! candidate, so memories holding all of them rank first by the sum, without a fallback.
//!
//! **Exact paging.** The statistics ([`Statistics`]: N, the total length, each form's df) are
//! read when the first page is read and carried in its cursor, so later pages score every
//! memory with the same numbers and a memory that did not change keeps its score while others
//! write. That is what makes a cursor over (score, id) exact with collection statistics.
//!
//! The engines report [`Features`] (where each query phrase occurs in a memory and its length):
//! SQLite from an FTS5 auxiliary function (`store/sqlite/rank.rs`), PostgreSQL from the
//! memory's `tsvector` (`store/postgres/search.rs`).

use super::query::Term;
use super::words::{irregular_forms, is_function_word};

/// BM25's term-frequency saturation.
const K1: f64 = 1.2;
/// BM25's length normalisation (0: none, 1: full). Lower than the textbook 0.75: a memory's
/// length says less about its topic than a web page's does (a long session that mentions a
/// question's words a few times is as likely the answer as a short turn), and on the recall
/// bench 0.5 finds more on LongMemEval's whole sessions with nothing lost on single turns or
/// LoCoMo (BENCHMARKS.md, "Recall").
const B: f64 = 0.5;
/// The bonus for two neighbouring query terms found side by side, in idf units.
pub const PAIR_BONUS: f64 = 1.0;
/// The share of a memory's words that may be repeated query terms without a penalty.
const STUFFING_FREE: f64 = 0.2;
/// BM25+'s lower bound (Lv and Zhai, 2011), in idf units: what holding a term at all is
/// worth, however long the memory, so a long memory that holds a word is not scored as if it
/// barely did.
const DELTA: f64 = 1.0;
/// How steeply the score falls past [`STUFFING_FREE`].
const STUFFING_SLOPE: f64 = 8.0;

/// What a match of an irregular form counts, against 1 for the word typed: "bought" also
/// finds "buy", but a memory saying "bought" says what was asked more surely than one saying
/// "buy" (query expansion weighs expanded terms below the query's own, as synonym boosts in
/// Lucene and Elasticsearch do).
pub const ALTERNATIVE_WEIGHT: f64 = 0.5;

/// One phrase an engine reports, as the scorer sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Form {
    /// Its index in the plan's phrases: the same form reported twice is one form.
    id: usize,
    /// The scored term it is a form of.
    term: usize,
    /// Whether it is an irregular form rather than the word typed.
    alternative: bool,
    /// Its idf, from its own document frequency.
    idf: f64,
}

impl Form {
    /// What one match of it is worth against a match of the word typed.
    fn weight(&self) -> f64 {
        if self.alternative {
            ALTERNATIVE_WEIGHT
        } else {
            1.0
        }
    }

    /// `id.term.idf-bits`, with `~` after the term for an alternative form.
    fn encode(&self) -> String {
        let mark = if self.alternative { "~" } else { "" };
        format!("{}.{}{mark}.{:x}", self.id, self.term, self.idf.to_bits())
    }

    fn decode(text: &str) -> Option<Form> {
        let mut parts = text.split('.');
        let id = parts.next()?.parse().ok()?;
        let term = parts.next()?;
        let (term, alternative) = match term.strip_suffix('~') {
            Some(term) => (term, true),
            None => (term, false),
        };
        let idf = f64::from_bits(u64::from_str_radix(parts.next()?, 16).ok()?);
        parts.next().is_none().then_some(Form {
            id,
            term: term.parse().ok()?,
            alternative,
            idf,
        })
    }
}

/// What the score is computed from, for one memory and one query.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Features {
    /// Tokens in each query phrase (a word is usually one token; a CJK run is its bigrams).
    pub phrase_sizes: Vec<usize>,
    /// Every match in the memory: (phrase index, token offset).
    pub instances: Vec<(usize, usize)>,
    /// Tokens in the memory's searched text.
    pub length: usize,
}

/// The collection statistics a score depends on, as they were when a search's first page was
/// read (the cursor carries them to the later pages).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Statistics {
    /// Memories in the store (N).
    pub memories: u64,
    /// Their searched tokens, all together (N × the average length).
    pub tokens: u64,
    /// For each phrase of the plan (each form of each scored term), how many memories hold it
    /// (df): a form is weighed by its own rarity.
    pub frequencies: Vec<u64>,
}

/// One phrase an engine matches: a form of a scored term.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryPhrase {
    /// The text to match (the engine tokenizes and stems it as it does memories).
    pub term: Term,
    /// Whether its last token matches as a prefix.
    pub prefix: bool,
    /// The scored term it is a form of (an index into the plan's terms).
    pub of: usize,
    /// Whether it is an irregular form of the word typed ("buy" for "bought"), which counts
    /// [`ALTERNATIVE_WEIGHT`] of a match of the word itself.
    pub alternative: bool,
}

/// How a query is ranked: the phrases an engine must find, grouped into scored terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ranking {
    /// Every phrase to match, in order: a memory holding any of them is a candidate.
    pub phrases: Vec<QueryPhrase>,
    /// For each scored term, the query tokens left out just before it (function words), so
    /// that neighbours in the query are recognised as neighbours in a memory.
    pub gaps: Vec<usize>,
}

impl Ranking {
    /// The plan for a query's terms. `open_end`: the query may still be being typed (it does
    /// not end a sentence), so its last word also matches as a prefix.
    pub fn plan(terms: &[Term], open_end: bool) -> Ranking {
        let words: Vec<Option<(String, usize)>> = terms.iter().map(word_of).collect();
        let all_function = words
            .iter()
            .all(|w| w.as_ref().is_some_and(|(core, _)| is_function_word(core)));
        let mut phrases = Vec::new();
        let mut gaps = Vec::new();
        let mut gap = 0;
        let last = terms.len().saturating_sub(1);
        for (i, (term, word)) in terms.iter().zip(&words).enumerate() {
            let of = gaps.len();
            match (term, word) {
                (Term::Word(_), Some((core, extra))) => {
                    if !all_function && is_function_word(core) {
                        gap += tokens_in(core) + extra;
                        continue;
                    }
                    gaps.push(gap);
                    gap = *extra;
                    phrases.push(QueryPhrase {
                        term: Term::Word(core.clone()),
                        prefix: open_end && i == last && *extra == 0,
                        of,
                        alternative: false,
                    });
                    for form in irregular_forms(core).unwrap_or(&[]) {
                        if form != core {
                            phrases.push(QueryPhrase {
                                term: Term::Word((*form).to_owned()),
                                prefix: false,
                                of,
                                alternative: true,
                            });
                        }
                    }
                }
                (Term::Word(word), None) => {
                    gaps.push(gap);
                    gap = 0;
                    phrases.push(QueryPhrase {
                        term: Term::Word(word.clone()),
                        prefix: open_end && i == last,
                        of,
                        alternative: false,
                    });
                }
                (Term::Cjk(run), _) => {
                    gaps.push(gap);
                    gap = 0;
                    // One character is the start of a bigram, or a run's last character.
                    phrases.push(QueryPhrase {
                        term: Term::Cjk(run.clone()),
                        prefix: run.len() == 1,
                        of,
                        alternative: false,
                    });
                }
            }
        }
        Ranking { phrases, gaps }
    }

    /// How many terms are scored.
    pub fn terms(&self) -> usize {
        self.gaps.len()
    }

    /// The phrases that are forms of scored term `term`.
    pub fn forms_of(&self, term: usize) -> impl Iterator<Item = &QueryPhrase> {
        self.phrases.iter().filter(move |p| p.of == term)
    }

    /// The scorer of this plan under `statistics` (which must have one frequency per
    /// phrase), for an engine that reports matches by the plan's phrase indices.
    pub fn scorer(&self, statistics: &Statistics) -> Scorer {
        self.scorer_for(statistics, &self.phrases)
    }

    /// The same for an engine that reports the phrases in another order, or some twice:
    /// `reported` are phrases of this plan, in the order the engine reports them.
    pub fn scorer_for<'a>(
        &self,
        statistics: &Statistics,
        reported: impl IntoIterator<Item = &'a QueryPhrase>,
    ) -> Scorer {
        let n = statistics.memories as f64;
        let forms = reported
            .into_iter()
            .map(|phrase| {
                let id = self
                    .phrases
                    .iter()
                    .position(|p| std::ptr::eq(p, phrase))
                    .or_else(|| self.phrases.iter().position(|p| p == phrase))
                    .unwrap_or(0);
                let df = statistics.frequencies.get(id).copied().unwrap_or(0) as f64;
                Form {
                    id,
                    term: phrase.of,
                    alternative: phrase.alternative,
                    idf: idf(n, df),
                }
            })
            .collect();
        let average_length = if statistics.memories == 0 {
            1.0
        } else {
            (statistics.tokens as f64 / n).max(1.0)
        };
        Scorer::new(forms, self.gaps.clone(), average_length)
    }
}

/// A form's inverse document frequency among `n` memories, `df` of which hold it: Lucene's
/// `ln(1 + (n − df + 0.5) / (df + 0.5))`, always positive, so a common word still counts a
/// little and a score only grows with matches.
fn idf(n: f64, df: f64) -> f64 {
    (1.0 + (n - df + 0.5) / (df + 0.5)).ln().max(0.0)
}

/// A query word as the function-word list and the forms table see it: lower case, surrounding
/// punctuation and a possessive "'s" removed, and how many tokens the removed "'s" was. `None`
/// for a word with more inside it than letters (a host name, a version): searched as typed.
fn word_of(term: &Term) -> Option<(String, usize)> {
    let Term::Word(word) = term else {
        return None;
    };
    let trimmed = word.trim_matches(|c: char| !c.is_alphanumeric());
    let lower = trimmed.to_lowercase().replace('’', "'");
    let (core, extra) = match lower.strip_suffix("'s") {
        Some(core) if !core.is_empty() => (core.to_owned(), 1),
        _ => (lower, 0),
    };
    core.chars()
        .all(|c| c.is_alphabetic() || c == '\'')
        .then_some((core, extra))
}

/// Tokens a word splits into at apostrophes ("don't" is "don" and "t").
fn tokens_in(word: &str) -> usize {
    word.split('\'')
        .filter(|part| !part.is_empty())
        .count()
        .max(1)
}

/// Buffers [`Scorer::score_in`] and [`Scorer::ceiling_in`] reuse from memory to memory, so
/// that an engine scoring thousands of rows allocates for the first few only.
#[derive(Debug, Default)]
pub struct Scratch {
    /// (term, offset, alternative, size, form) of each match.
    at: Vec<(usize, usize, bool, usize, usize)>,
    /// (form, term frequency).
    frequency: Vec<(usize, usize)>,
    /// Distinct match offsets.
    offsets: Vec<usize>,
    /// Each term's best part.
    best: Vec<f64>,
}

/// A plan's scoring under fixed statistics: computed once per search, used for every memory.
#[derive(Clone, Debug, PartialEq)]
pub struct Scorer {
    /// Each phrase the engine reports, in the order it reports them.
    forms: Vec<Form>,
    /// The query tokens left out before each term.
    gaps: Vec<usize>,
    /// Each term's weight: the largest weighted idf of its forms (bounds, proximity, order).
    term_idf: Vec<f64>,
    /// The average searched length of a memory.
    average_length: f64,
}

impl Scorer {
    fn new(forms: Vec<Form>, gaps: Vec<usize>, average_length: f64) -> Scorer {
        let mut term_idf = vec![0.0f64; gaps.len()];
        for form in &forms {
            if let Some(best) = term_idf.get_mut(form.term) {
                *best = best.max(form.weight() * form.idf);
            }
        }
        Scorer {
            forms,
            gaps,
            term_idf,
            average_length,
        }
    }

    /// The score of a memory with `features`: higher is better (see the module's docs).
    pub fn score(&self, features: &Features) -> f64 {
        self.rate(features, false, &mut Scratch::default())
    }

    /// [`Scorer::score`] computed in `scratch`'s buffers: the same number, without allocating
    /// once the buffers have grown (an engine scoring many rows keeps one [`Scratch`]).
    pub fn score_in(&self, features: &Features, scratch: &mut Scratch) -> f64 {
        self.rate(features, false, scratch)
    }

    /// The highest score a memory with these matches can have whatever its length, given that
    /// it is at least `features.length` and covers every match: BM25 at the shortest such
    /// length (a term's part only falls as the length grows), the proximity bonus as scored
    /// (it depends on positions only), and no stuffing penalty (it only divides). An engine
    /// that reads a memory's matches cheaply but its length dearly skips the length of a
    /// memory whose ceiling is below a floor.
    pub fn ceiling(&self, features: &Features) -> f64 {
        self.rate(features, true, &mut Scratch::default())
    }

    /// [`Scorer::ceiling`] computed in `scratch`'s buffers, as [`Scorer::score_in`].
    pub fn ceiling_in(&self, features: &Features, scratch: &mut Scratch) -> f64 {
        self.rate(features, true, scratch)
    }

    /// [`Scorer::score`], or with `ceiling` [`Scorer::ceiling`].
    fn rate(&self, features: &Features, ceiling: bool, scratch: &mut Scratch) -> f64 {
        // (term, offset, alternative, size, form) of each match; a token matched by two forms
        // of one term (which can stem alike) counts once, as the word typed if either is.
        let at = &mut scratch.at;
        at.clear();
        at.extend(features.instances.iter().filter_map(|&(phrase, offset)| {
            let form = self.forms.get(phrase)?;
            let size = features.phrase_sizes.get(phrase).copied().unwrap_or(1);
            Some((form.term, offset, form.alternative, size.max(1), form.id))
        }));
        at.sort_unstable();
        at.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
        let at = &scratch.at;

        // Term frequency per form; each term scores by its best form (a disjunction-max, so
        // a common form cannot lend its many matches the weight of a rare one).
        let frequency = &mut scratch.frequency;
        frequency.clear();
        frequency.extend(at.iter().map(|m| (m.4, 0)));
        frequency.sort_unstable();
        frequency.dedup();
        for m in at {
            if let Ok(i) = frequency.binary_search_by(|(id, _)| id.cmp(&m.4)) {
                frequency[i].1 += 1;
            }
        }
        let mut length = features.length.max(1) as f64;
        if ceiling {
            // The memory holds every matched token: at least as many as distinct offsets,
            // and through the last one's end.
            let offsets = &mut scratch.offsets;
            offsets.clear();
            offsets.extend(at.iter().map(|m| m.1));
            offsets.sort_unstable();
            offsets.dedup();
            let end = at.iter().map(|m| m.1 + m.3).max().unwrap_or(0);
            length = length.max(offsets.len().max(end) as f64);
        }
        let norm = K1 * (1.0 - B + B * length / self.average_length);
        let best = &mut scratch.best;
        best.clear();
        best.resize(self.term_idf.len(), 0.0);
        for &(id, tf) in frequency.iter() {
            let Some(form) = self.forms.iter().find(|f| f.id == id) else {
                continue;
            };
            let tf = tf as f64;
            let part = form.weight() * form.idf * (tf * (K1 + 1.0) / (tf + norm) + DELTA);
            if let Some(b) = best.get_mut(form.term) {
                *b = b.max(part);
            }
        }
        let bm25: f64 = best.iter().sum();

        let found = |term: usize, offset: usize| {
            at.binary_search_by(|m| (m.0, m.1).cmp(&(term, offset)))
                .is_ok()
        };
        let terms = self.term_idf.len();
        let proximity: f64 = (1..terms)
            .filter(|&term| {
                at.iter()
                    .filter(|m| m.0 == term - 1)
                    .any(|m| found(term, m.1 + m.3 + self.gaps[term]))
            })
            .map(|term| PAIR_BONUS * self.term_idf[term - 1].min(self.term_idf[term]))
            .sum();

        // Matches beyond the first of each term (`at` is sorted by term).
        let matched = at
            .iter()
            .enumerate()
            .filter(|(i, m)| *i == 0 || at[i - 1].0 != m.0)
            .count();
        let repeats = at.len().saturating_sub(matched);
        if ceiling {
            return bm25 + proximity;
        }
        let stuffing = (repeats as f64 / length - STUFFING_FREE).max(0.0);
        (bm25 + proximity) / (1.0 + STUFFING_SLOPE * stuffing)
    }

    /// The highest score a memory can have that holds only `terms` (indices of scored
    /// terms): each term at most its weighted idf × (k1 + 1 + δ), plus the proximity bonus of
    /// neighbouring pairs among them. An engine that has found enough memories scoring above
    /// the bound of the terms it has not searched by can stop (MaxScore, as Lucene and tantivy
    /// prune).
    pub fn bound(&self, terms: &[usize]) -> f64 {
        let holds = |t: usize| terms.contains(&t);
        let words: f64 = terms
            .iter()
            .filter_map(|&t| self.term_idf.get(t))
            .map(|idf| idf * (K1 + 1.0 + DELTA))
            .sum();
        let pairs: f64 = (1..self.term_idf.len())
            .filter(|&t| holds(t - 1) && holds(t))
            .map(|t| PAIR_BONUS * self.term_idf[t - 1].min(self.term_idf[t]))
            .sum();
        words + pairs
    }

    /// Whether a memory whose matches are all forms among `phrases` (indices in the order the
    /// engine reports them) could score `floor` or more: false only when [`Scorer::bound`] of
    /// their terms is below it. An engine that knows `floor` is reached by enough memories
    /// (a page's last score among some of the candidates) skips scoring the others, whose
    /// features cost far more to read than which phrases they hold.
    ///
    /// The comparison leaves a margin of a billionth, so a sum rounded the other way than
    /// [`Scorer::bound`]'s can never prune a memory that belongs on the page.
    pub fn may_reach(&self, phrases: impl IntoIterator<Item = usize>, floor: f64) -> bool {
        match self.held_terms(phrases) {
            Some(held) => self.held_bound(held) >= floor - 1e-9 * floor.abs().max(1.0),
            None => true,
        }
    }

    /// The scored terms a memory holds whose matches are all forms among `phrases` (indices
    /// in the order the engine reports them), a bit per term; `None` if one is a term past
    /// the 64th, which [`Scorer::may_reach`] never prunes. An engine checking many memories
    /// keeps each phrase's bit and [`Scorer::held_bound`] of each set it meets.
    pub fn held_terms(&self, phrases: impl IntoIterator<Item = usize>) -> Option<u64> {
        let mut held = 0u64;
        for phrase in phrases {
            match self.forms.get(phrase).map(|f| f.term) {
                Some(term) if term < 64 => held |= 1 << term,
                Some(_) => return None,
                None => {}
            }
        }
        Some(held)
    }

    /// The bound [`Scorer::may_reach`] compares with its floor, for the terms in `held` (a
    /// bit per term, as [`Scorer::held_terms`] gives): [`Scorer::bound`] of those terms.
    pub fn held_bound(&self, held: u64) -> f64 {
        let has = |t: usize| held & (1 << t) != 0;
        let terms = self.term_idf.len().min(64);
        let words: f64 = (0..terms)
            .filter(|&t| has(t))
            .map(|t| self.term_idf[t] * (K1 + 1.0 + DELTA))
            .sum();
        let pairs: f64 = (1..terms)
            .filter(|&t| has(t - 1) && has(t))
            .map(|t| PAIR_BONUS * self.term_idf[t - 1].min(self.term_idf[t]))
            .sum();
        words + pairs
    }

    /// How many terms are scored.
    pub fn terms(&self) -> usize {
        self.term_idf.len()
    }

    /// The scored terms, the weightiest (rarest) first: the order in which an engine adds
    /// terms to the set a search must find candidates by.
    pub fn terms_by_weight(&self) -> Vec<usize> {
        let mut terms: Vec<usize> = (0..self.term_idf.len()).collect();
        terms.sort_by(|&a, &b| {
            self.term_idf[b]
                .total_cmp(&self.term_idf[a])
                .then(a.cmp(&b))
        });
        terms
    }

    /// The scorer as text, for an engine that scores inside the database (SQLite's auxiliary
    /// function reads it back with [`Scorer::decode`]): every number exact, so both ends
    /// compute the same scores.
    pub fn encode(&self) -> String {
        let forms: Vec<String> = self.forms.iter().map(Form::encode).collect();
        let gaps: Vec<String> = self.gaps.iter().map(usize::to_string).collect();
        format!(
            "{}|{}|{:x}",
            forms.join(","),
            gaps.join(","),
            self.average_length.to_bits()
        )
    }

    /// Reads [`Scorer::encode`]'s text; `None` if it is not one.
    pub fn decode(text: &str) -> Option<Scorer> {
        let mut parts = text.split('|');
        let forms = parts
            .next()?
            .split(',')
            .filter(|s| !s.is_empty())
            .map(Form::decode)
            .collect::<Option<Vec<Form>>>()?;
        let gaps = parts
            .next()?
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().ok())
            .collect::<Option<Vec<usize>>>()?;
        let average_length = f64::from_bits(u64::from_str_radix(parts.next()?, 16).ok()?);
        let valid = parts.next().is_none() && forms.iter().all(|f| f.term < gaps.len());
        valid.then(|| Scorer::new(forms, gaps, average_length))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::terms;

    fn words(plan: &Ranking) -> Vec<(String, bool, usize)> {
        plan.phrases
            .iter()
            .map(|p| match &p.term {
                Term::Word(w) => (w.clone(), p.prefix, p.of),
                Term::Cjk(run) => (run.iter().collect(), p.prefix, p.of),
            })
            .collect()
    }

    #[test]
    fn a_question_is_searched_by_its_content_words_and_their_forms() {
        let plan = Ranking::plan(&terms("What did Caroline's children buy?"), false);
        assert_eq!(
            words(&plan),
            [
                ("caroline".into(), false, 0),
                ("children".into(), false, 1),
                ("child".into(), false, 1),
                ("buy".into(), false, 2),
                ("bought".into(), false, 2),
            ]
        );
        // "what did" before Caroline; the "'s" between Caroline and children.
        assert_eq!(plan.gaps, [2, 1, 0]);
        // Function words alone are searched for; a query being typed ends in a prefix.
        let plan = Ranking::plan(&terms("the"), true);
        assert_eq!(words(&plan), [("the".into(), true, 0)]);
        let plan = Ranking::plan(&terms("foo.example.com v1.2"), true);
        assert_eq!(
            words(&plan),
            [
                ("foo.example.com".into(), false, 0),
                ("v1.2".into(), true, 1)
            ]
        );
    }

    /// Two terms, df 2 and 50 of 100 memories of 10 words on average.
    fn scorer() -> Scorer {
        Ranking::plan(&terms("pottery class"), false).scorer(&Statistics {
            memories: 100,
            tokens: 1000,
            frequencies: vec![2, 50],
        })
    }

    fn doc(instances: &[(usize, usize)], length: usize) -> Features {
        Features {
            phrase_sizes: vec![1, 1],
            instances: instances.to_vec(),
            length,
        }
    }

    #[test]
    fn a_rare_word_outweighs_a_common_one() {
        let s = scorer();
        assert!(s.score(&doc(&[(0, 3)], 10)) > s.score(&doc(&[(1, 3)], 10)));
        assert!(s.score(&doc(&[(0, 3), (1, 7)], 10)) > s.score(&doc(&[(0, 3)], 10)));
    }

    #[test]
    fn repetition_saturates_and_length_is_normalised() {
        let s = scorer();
        let once = s.score(&doc(&[(0, 1)], 10));
        let twice = s.score(&doc(&[(0, 1), (0, 6)], 10));
        let thrice = s.score(&doc(&[(0, 1), (0, 6), (0, 9)], 10));
        assert!(twice > once && thrice - twice < twice - once);
        assert!(s.score(&doc(&[(0, 1)], 5)) > s.score(&doc(&[(0, 1)], 40)));
    }

    #[test]
    fn neighbours_as_in_the_query_beat_scattered_words() {
        let s = scorer();
        assert!(s.score(&doc(&[(0, 3), (1, 4)], 10)) > s.score(&doc(&[(0, 1), (1, 6)], 10)));
    }

    #[test]
    fn stuffing_loses_to_a_natural_sentence() {
        let s = Ranking::plan(&terms("deploy production"), false).scorer(&Statistics {
            memories: 3,
            tokens: 24,
            frequencies: vec![3, 3],
        });
        // "deploy deploy deploy production production production deploy production deploy"
        let stuffed = doc(
            &[
                (0, 0),
                (0, 1),
                (0, 2),
                (1, 3),
                (1, 4),
                (1, 5),
                (0, 6),
                (1, 7),
                (0, 8),
            ],
            9,
        );
        // "Deploys to production happen on Fridays after the standup"
        let natural = doc(&[(0, 0), (1, 2)], 9);
        assert!(s.score(&natural) > s.score(&stuffed));
    }

    #[test]
    fn two_forms_on_one_token_count_once() {
        let plan = Ranking::plan(&terms("went"), false);
        let s = plan.scorer(&Statistics {
            memories: 10,
            tokens: 100,
            frequencies: vec![3; plan.phrases.len()],
        });
        let one = Features {
            phrase_sizes: vec![1; plan.phrases.len()],
            instances: vec![(0, 4)],
            length: 10,
        };
        let both = Features {
            instances: vec![(0, 4), (1, 4)],
            ..one.clone()
        };
        assert_eq!(s.score(&one), s.score(&both));
    }

    #[test]
    fn the_bound_is_never_below_a_score() {
        let s = scorer();
        let best_of_first = s.score(&doc(&[(0, 0), (0, 1), (0, 2), (0, 3), (0, 4)], 5));
        assert!(s.bound(&[0]) > best_of_first);
        let both = s.score(&doc(&[(0, 0), (1, 1), (0, 2), (1, 3)], 4));
        assert!(s.bound(&[0, 1]) > both && both > s.bound(&[1]));
        assert_eq!(s.terms_by_weight(), [0, 1]);
    }

    #[test]
    fn the_ceiling_is_never_below_a_score_at_any_length() {
        let s = scorer();
        let mut state = 7u64;
        let mut next = |n: usize| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
            ((state >> 33) % n as u64) as usize
        };
        for _ in 0..2000 {
            let matches: Vec<(usize, usize)> =
                (0..1 + next(8)).map(|_| (next(2), next(30))).collect();
            let ceiling = s.ceiling(&doc(&matches, 0));
            let end = matches.iter().map(|m| m.1 + 1).max().unwrap_or(1);
            for length in [end, end + 1, end + 7, end * 3, 500] {
                let score = s.score(&doc(&matches, length));
                assert!(
                    score <= ceiling,
                    "{matches:?} at {length}: {score} > {ceiling}"
                );
            }
        }
    }

    #[test]
    fn a_scorer_round_trips_exactly() {
        let s = scorer();
        assert_eq!(Scorer::decode(&s.encode()), Some(s));
        let went = Ranking::plan(&terms("went home"), false).scorer(&Statistics {
            memories: 10,
            tokens: 100,
            frequencies: vec![1, 2, 3],
        });
        assert!(went.encode().contains('~'), "{}", went.encode());
        assert_eq!(Scorer::decode(&went.encode()), Some(went));
        for bad in [
            "",
            "0|0",
            "0.0.x|0|1",
            "0.5.3ff0000000000000|0|1",
            "0.0.3ff0000000000000.1|0|1",
            "0.0.3ff0000000000000|0|1|",
        ] {
            assert_eq!(Scorer::decode(bad), None, "{bad}");
        }
    }

    /// "bought" (in 1 of 100 memories) also finds "buy" (in 60).
    fn bought() -> (Ranking, Scorer) {
        let plan = Ranking::plan(&terms("bought"), false);
        assert_eq!(
            words(&plan),
            [("bought".into(), false, 0), ("buy".into(), false, 0)]
        );
        let scorer = plan.scorer(&Statistics {
            memories: 100,
            tokens: 1000,
            frequencies: vec![1, 60],
        });
        (plan, scorer)
    }

    fn forms(instances: &[(usize, usize)], length: usize) -> Features {
        Features {
            phrase_sizes: vec![1, 1],
            instances: instances.to_vec(),
            length,
        }
    }

    #[test]
    fn an_irregular_form_counts_less_than_the_word_typed() {
        let (plan, s) = bought();
        assert!(plan.phrases[1].alternative && !plan.phrases[0].alternative);
        // Were "buy" as rare as "bought", it would still count half.
        let even = plan.scorer(&Statistics {
            memories: 100,
            tokens: 1000,
            frequencies: vec![1, 1],
        });
        let typed = even.score(&forms(&[(0, 3)], 10));
        let alternative = even.score(&forms(&[(1, 3)], 10));
        assert!(alternative > 0.0 && (alternative - typed * ALTERNATIVE_WEIGHT).abs() < 1e-9);
        assert!(s.score(&forms(&[(0, 3)], 10)) > s.score(&forms(&[(1, 3)], 10)));
    }

    #[test]
    fn a_common_form_does_not_borrow_a_rare_forms_weight() {
        let (_, s) = bought();
        // Ten "buy"s score by buy's idf: less than one "bought", and no more with "bought"
        // beside them than "bought" alone would (each term scores by its best form).
        let buys: Vec<(usize, usize)> = (0..10).map(|i| (1, i * 3)).collect();
        let many_buys = s.score(&forms(&buys, 40));
        let one_bought = s.score(&forms(&[(0, 5)], 40));
        assert!(one_bought > many_buys, "{one_bought} > {many_buys}");
        let mut both = buys.clone();
        both.push((0, 31));
        let with_bought = s.score(&forms(&both, 40));
        assert!((with_bought - one_bought).abs() < 1e-9 || with_bought < one_bought);
    }

    #[test]
    fn holding_a_word_counts_however_long_the_memory() {
        let s = scorer();
        // BM25+: a rare word once in a memory twenty times the average length still scores
        // at least its idf, well above a common word in a short memory.
        let long = s.score(&doc(&[(0, 100)], 200));
        let common_short = s.score(&doc(&[(1, 2)], 5));
        assert!(long > common_short, "{long} > {common_short}");
        assert!(long >= s.bound(&[0]) / (K1 + 1.0 + DELTA) * DELTA);
    }
}
