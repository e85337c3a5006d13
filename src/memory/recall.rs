//! Search modes: keyword (the full-text ranking of `rank.rs`), semantic (nearest vectors of
//! the embedder's model) and hybrid (both, fused per memory, see `fusion.rs`), each with
//! exact paging: the query's vector is computed once, on the first page, and carried in the
//! cursor with whatever else the first page froze (keyword statistics, rank scales).

use std::collections::HashMap;

use serde::Serialize;

use super::cursor::{Cursor, Kind, fingerprint};
use super::fusion::{DEPTH, Fusion, Ranks};
use super::page::{Hit, MemoryPage, Page};
use super::query::SearchText;
use super::store::{SearchMode, category_key, keyword_mode, where_key};
use super::{Memory, MemoryFilter};
use crate::embed::{Embedder, Kind as TextKind, Quantized, vectors_of};
use crate::error::{Error, Result};
use crate::store::Store;

/// How a search finds memories.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// By the words they share with the query (full-text ranking).
    Keyword,
    /// By meaning: the vectors of the embedding model nearest the query's.
    Semantic,
    /// Both, fused: weighted reciprocal-rank fusion with ranks frozen at the first page.
    Hybrid,
}

impl Mode {
    /// The mode named `text`: `keyword`, `semantic` or `hybrid`.
    pub fn parse(text: &str) -> Result<Mode> {
        match text.trim().to_ascii_lowercase().as_str() {
            "keyword" => Ok(Mode::Keyword),
            "semantic" => Ok(Mode::Semantic),
            "hybrid" => Ok(Mode::Hybrid),
            other => Err(Error::Invalid(format!(
                "search mode {other:?} is not one of keyword, semantic, hybrid"
            ))),
        }
    }

    /// The mode's name.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Keyword => "keyword",
            Mode::Semantic => "semantic",
            Mode::Hybrid => "hybrid",
        }
    }
}

/// Why a memory is where it is in a search's results (`--explain`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Why {
    /// Its keyword score (`None`: it holds none of the query's words, or not asked).
    pub keyword_score: Option<f64>,
    /// Its rank in the keyword results as of the first page (hybrid; interpolated past 32).
    pub keyword_rank: Option<f64>,
    /// Its cosine similarity to the query (`None`: it has no vector, or not asked).
    pub similarity: Option<f64>,
    /// Its rank by similarity as of the first page (hybrid; interpolated past 32).
    pub similarity_rank: Option<f64>,
    /// Its fused score (hybrid).
    pub fused: Option<f64>,
}

/// A hit with the reasons for its place.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Explained {
    /// The hit.
    #[serde(flatten)]
    pub hit: Hit,
    /// Its scores and ranks.
    pub why: Why,
}

/// A page of a search in some mode, with the reasons for each hit.
pub struct Recalled {
    /// The page, as [`Store::search_page`] answers it.
    pub page: MemoryPage<Hit>,
    /// For each hit, in order, its scores and ranks.
    pub why: Vec<Why>,
}

impl Recalled {
    /// The page with each hit's reasons beside it.
    pub fn explained(self) -> MemoryPage<Explained> {
        let items = self
            .page
            .page
            .items
            .into_iter()
            .zip(self.why)
            .map(|(hit, why)| Explained { hit, why })
            .collect();
        MemoryPage {
            page: Page {
                items,
                next_cursor: self.page.page.next_cursor,
            },
            generation: self.page.generation,
            note: self.page.note,
        }
    }
}

impl Store {
    /// Memories matching `query` in `mode`, best first, one page of them. Semantic and hybrid
    /// need `embedder`; the query's vector is computed on the first page only (later pages
    /// use the cursor's), so paging is exact in every mode (see `cursor.rs`). An empty query
    /// lists newest first in every mode.
    pub fn recall_page(
        &self,
        query: &str,
        filter: &MemoryFilter,
        mode: Mode,
        embedder: Option<&dyn Embedder>,
    ) -> Result<Recalled> {
        let (text, keyword, key) = keyword_mode(query);
        let embedder = match (mode, embedder) {
            (Mode::Keyword, _) => None,
            _ if matches!(text, SearchText::Everything) => None,
            (_, Some(embedder)) => Some(embedder),
            (_, None) => {
                return Err(Error::Invalid(format!(
                    "{} search needs an embedding model, and none is configured; configure one or search by keyword",
                    mode.name()
                )));
            }
        };
        let Some(embedder) = embedder else {
            let page = self.search_page(query, filter)?;
            let why = page
                .page
                .items
                .iter()
                .map(|h| Why {
                    keyword_score: Some(h.score),
                    ..Why::default()
                })
                .collect();
            return Ok(Recalled { page, why });
        };
        // The first page embeds the query (which tells a remote embedder its model id); later
        // pages carry the vector and only need the id.
        let fresh = match filter.cursor {
            None => {
                let (model, mut vectors) = vectors_of(embedder, &[query], TextKind::Query)?;
                Some((model, Quantized::of(&vectors.pop().unwrap_or_default())?))
            }
            Some(_) => None,
        };
        let model = match &fresh {
            Some((model, _)) => model.clone(),
            None => embedder.model_id()?,
        };
        let category = category_key(filter);
        let where_text = where_key(filter);
        let print = fingerprint(&[
            Some(mode.name()),
            Some(&model),
            Some(&key),
            Some(query.trim()),
            filter.namespace.as_deref(),
            category.as_deref(),
            Some(&where_text),
        ]);
        let cursor = filter
            .cursor
            .as_deref()
            .map(|token| Cursor::decode(token, Kind::Search, &[print]))
            .transpose()?;
        let vector = match (fresh, cursor.as_ref().map(|c| c.query.clone())) {
            (Some((_, vector)), _) => vector,
            (None, Some(Some(vector))) => vector,
            (None, _) => return Err(not_this_search()),
        };
        let values = vector.to_f32();
        let (mut hits, snapshot, generation, fusion, why) = match mode {
            Mode::Hybrid => {
                let hybrid = self.hybrid(&keyword, &model, &values, filter, cursor.as_ref())?;
                let carried = (hybrid.fusion, hybrid.statistics);
                (
                    hybrid.hits,
                    hybrid.snapshot,
                    hybrid.generation,
                    Some(carried),
                    hybrid.why,
                )
            }
            _ => {
                let found =
                    self.backend()
                        .nearest_memories(&model, &values, filter, cursor.as_ref())?;
                let why = found
                    .rows
                    .iter()
                    .map(|h| Why {
                        similarity: Some(h.score),
                        ..Why::default()
                    })
                    .collect();
                (found.rows, found.snapshot, found.generation, None, why)
            }
        };
        self.refresh_hits(&mut hits);
        let mut why: Vec<Why> = why;
        why.truncate(filter.limit.unwrap_or(usize::MAX));
        let page = Page::cut(hits, filter.limit, |hit: &Hit| {
            Cursor {
                kind: Kind::Search,
                snapshot,
                fingerprint: print,
                score: hit.score,
                id: hit.memory.id.clone(),
                statistics: fusion.as_ref().and_then(|(_, s)| s.clone()),
                query: Some(vector.clone()),
                fusion: fusion.as_ref().map(|(f, _)| f.clone()),
            }
            .encode()
        });
        Ok(Recalled {
            page: MemoryPage {
                page,
                generation,
                note: None,
            },
            why,
        })
    }

    /// One page (plus one) of a hybrid search: the best [`DEPTH`] keyword matches and the
    /// [`DEPTH`] memories nearest the query, each scored by [`Fusion::score`] under the first
    /// page's rank scales (which also fix, by score, who is in each list), after the cursor,
    /// among memories not written since the first page.
    fn hybrid(
        &self,
        keyword: &SearchMode,
        model: &str,
        query: &[f32],
        filter: &MemoryFilter,
        cursor: Option<&Cursor>,
    ) -> Result<Hybrid> {
        // The best DEPTH of each list (one more, to see where it was cut).
        let all = MemoryFilter {
            limit: Some(DEPTH),
            cursor: None,
            ..filter.clone()
        };
        // Every candidate, none cut by position: a cursor that only carries the snapshot
        // (and the keyword statistics) of the first page, positioned before everything.
        let whole = |snapshot: u64, statistics| Cursor {
            kind: Kind::Search,
            snapshot,
            fingerprint: 0,
            score: f64::INFINITY,
            id: "~".into(),
            statistics,
            query: None,
            fusion: None,
        };
        let keyword_rows = match cursor {
            Some(c) => {
                let start = whole(c.snapshot, c.statistics.clone());
                self.backend()
                    .search_memories(keyword, &all, Some(&start))?
            }
            None => self.backend().search_memories(keyword, &all, None)?,
        };
        let snapshot = keyword_rows.snapshot;
        let statistics = keyword_rows.statistics.clone();
        let start = whole(snapshot, None);
        let vector_rows = self
            .backend()
            .nearest_memories(model, query, &all, Some(&start))?;
        let fusion = match cursor {
            Some(c) => c.fusion.clone().ok_or_else(not_this_search)?,
            None => {
                let scores = |hits: &[Hit]| hits.iter().map(|h| h.score).collect::<Vec<_>>();
                Fusion {
                    keyword: Ranks::cut(&scores(&keyword_rows.rows), DEPTH),
                    semantic: Ranks::cut(&scores(&vector_rows.rows), DEPTH),
                }
            }
        };
        let mut found: HashMap<String, (Memory, Option<f64>, Option<f64>)> = HashMap::new();
        for hit in keyword_rows.rows {
            found.insert(hit.memory.id.clone(), (hit.memory, Some(hit.score), None));
        }
        for hit in vector_rows.rows {
            found
                .entry(hit.memory.id.clone())
                .or_insert((hit.memory, None, None))
                .2 = Some(hit.score);
        }
        let mut scored: Vec<(Hit, Why)> = found
            .into_values()
            .map(|(memory, keyword, similarity)| {
                let fused = fusion.score(keyword, similarity);
                let why = Why {
                    keyword_score: keyword,
                    keyword_rank: keyword
                        .filter(|&s| fusion.keyword.holds(s))
                        .and_then(|s| fusion.keyword.rank(s)),
                    similarity,
                    similarity_rank: similarity
                        .filter(|&s| fusion.semantic.holds(s))
                        .and_then(|s| fusion.semantic.rank(s)),
                    fused: Some(fused),
                };
                (
                    Hit {
                        memory,
                        score: fused,
                    },
                    why,
                )
            })
            // Below the depth of both lists: not a result.
            .filter(|(_, why)| why.keyword_rank.is_some() || why.similarity_rank.is_some())
            .filter(|(hit, _)| match cursor {
                Some(c) => hit.score < c.score || (hit.score == c.score && hit.memory.id < c.id),
                None => true,
            })
            .collect();
        scored.sort_by(|(a, _), (b, _)| {
            b.score
                .total_cmp(&a.score)
                .then_with(|| b.memory.id.cmp(&a.memory.id))
        });
        scored.truncate(filter.limit.map_or(usize::MAX, |n| n.saturating_add(1)));
        let (hits, why) = scored.into_iter().unzip();
        Ok(Hybrid {
            hits,
            why,
            snapshot,
            generation: keyword_rows.generation,
            fusion,
            statistics,
        })
    }
}

/// A hybrid page before it is cut.
struct Hybrid {
    hits: Vec<Hit>,
    why: Vec<Why>,
    snapshot: u64,
    generation: Option<u64>,
    fusion: Fusion,
    /// The keyword statistics the scores were computed with (carried to later pages).
    statistics: Option<super::Statistics>,
}

/// A search in the default mode (hybrid, when an embedder is configured) that falls back to
/// keyword search when hybrid cannot be had — the embedding server down, slow or wrong, or an
/// engine without vector search — because an agent that never asked for meaning must not
/// lose search with the server; an explicit mode is kept to and fails instead. The first
/// page says why in its note. A later page follows its cursor: one a keyword page handed out
/// continues by keyword (under hybrid it is refused as another search's).
pub fn hybrid_or_keyword(
    first_page: bool,
    hybrid: impl FnOnce() -> Result<Recalled>,
    keyword: impl FnOnce() -> Result<Recalled>,
) -> Result<Recalled> {
    let why = match hybrid() {
        Ok(found) => return Ok(found),
        Err(e @ (Error::Embedder(_) | Error::Unsupported(_))) => e,
        Err(e @ Error::Invalid(_)) if !first_page => e,
        Err(e) => return Err(e),
    };
    match keyword() {
        Ok(mut found) => {
            if first_page {
                found.page.note =
                    Some(format!("keyword results only, hybrid search failed: {why}"));
            }
            Ok(found)
        }
        Err(_) => Err(why),
    }
}

fn not_this_search() -> Error {
    Error::Invalid(
        "the cursor does not carry this search's query vector; start again without a cursor".into(),
    )
}
