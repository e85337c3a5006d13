//! `modstate_rank(memories_fts)`: the search ranking, an FTS5 auxiliary function.
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
//! The function is registered on each connection the first time a search finds it missing
//! (see `table.rs`), through the `fts5_api` pointer SQLite hands out for `SELECT fts5(?1)`.

use std::ffi::{c_int, c_void};
use std::ptr;

use rusqlite::Connection;
use rusqlite::ffi;

use crate::error::{Error, Result};

/// The SQL name of the ranking function.
pub const NAME: &str = "modstate_rank";

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

/// Registers [`NAME`] on `conn`.
pub fn register(conn: &Connection) -> Result<()> {
    let failed = |what: &str, rc: c_int| {
        Error::Invalid(format!(
            "cannot register the search ranking function ({what}, SQLite code {rc}); this SQLite lacks FTS5"
        ))
    };
    // SAFETY: the handle is valid for the life of `conn`; the statement is finalized before
    // returning; the bound pointer outlives the step that writes through it.
    unsafe {
        let db = conn.handle();
        let mut stmt: *mut ffi::sqlite3_stmt = ptr::null_mut();
        let rc = ffi::sqlite3_prepare_v2(
            db,
            c"SELECT fts5(?1)".as_ptr(),
            -1,
            &mut stmt,
            ptr::null_mut(),
        );
        if rc != ffi::SQLITE_OK {
            return Err(failed("preparing SELECT fts5", rc));
        }
        let mut api: *mut ffi::fts5_api = ptr::null_mut();
        ffi::sqlite3_bind_pointer(
            stmt,
            1,
            (&mut api as *mut *mut ffi::fts5_api).cast::<c_void>(),
            c"fts5_api_ptr".as_ptr(),
            None,
        );
        ffi::sqlite3_step(stmt);
        ffi::sqlite3_finalize(stmt);
        if api.is_null() || (*api).iVersion < 2 {
            return Err(failed("no fts5_api", ffi::SQLITE_ERROR));
        }
        let Some(create) = (*api).xCreateFunction else {
            return Err(failed("no xCreateFunction", ffi::SQLITE_ERROR));
        };
        let rc = create(
            api,
            c"modstate_rank".as_ptr(),
            ptr::null_mut(),
            Some(rank),
            None,
        );
        if rc != ffi::SQLITE_OK {
            return Err(failed("xCreateFunction", rc));
        }
    }
    Ok(())
}

/// The auxiliary function: reads the features of the current row and returns its score.
unsafe extern "C" fn rank(
    api: *const ffi::Fts5ExtensionApi,
    fts: *mut ffi::Fts5Context,
    ctx: *mut ffi::sqlite3_context,
    _argc: c_int,
    _argv: *mut *mut ffi::sqlite3_value,
) {
    // SAFETY: FTS5 passes a valid API table and context for the row being ranked.
    match unsafe { features(&*api, fts) } {
        Ok(features) => unsafe { ffi::sqlite3_result_double(ctx, features.score()) },
        Err(rc) => unsafe { ffi::sqlite3_result_error_code(ctx, rc) },
    }
}

/// The row's features. For a memory with CJK text the `grams` column (1) is searched, as it
/// holds every word of the body split apart; otherwise the body (0).
unsafe fn features(
    api: &ffi::Fts5ExtensionApi,
    fts: *mut ffi::Fts5Context,
) -> std::result::Result<Features, c_int> {
    let missing = ffi::SQLITE_ERROR;
    let (Some(phrase_count), Some(phrase_size), Some(column_size), Some(inst_count), Some(inst)) = (
        api.xPhraseCount,
        api.xPhraseSize,
        api.xColumnSize,
        api.xInstCount,
        api.xInst,
    ) else {
        return Err(missing);
    };
    let check = |rc: c_int| {
        if rc == ffi::SQLITE_OK {
            Ok(())
        } else {
            Err(rc)
        }
    };
    // SAFETY (all calls): `fts` is the live context of the current row.
    unsafe {
        let phrases = phrase_count(fts).max(0);
        let phrase_sizes = (0..phrases)
            .map(|p| usize::try_from(phrase_size(fts, p)).unwrap_or(0))
            .collect();
        let mut grams_size: c_int = 0;
        check(column_size(fts, 1, &mut grams_size))?;
        let column = if grams_size > 0 { 1 } else { 0 };
        let mut length: c_int = grams_size;
        if column == 0 {
            check(column_size(fts, 0, &mut length))?;
        }
        let mut count: c_int = 0;
        check(inst_count(fts, &mut count))?;
        let mut instances = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
        for i in 0..count {
            let (mut phrase, mut col, mut offset) = (0, 0, 0);
            check(inst(fts, i, &mut phrase, &mut col, &mut offset))?;
            if col == column {
                instances.push((
                    usize::try_from(phrase).unwrap_or(0),
                    usize::try_from(offset).unwrap_or(0),
                ));
            }
        }
        Ok(Features {
            phrase_sizes,
            instances,
            length: usize::try_from(length).unwrap_or(0),
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
