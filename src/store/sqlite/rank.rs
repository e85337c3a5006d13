//! The search ranking inside SQLite, as two FTS5 auxiliary functions:
//! * `modstate_rank(memories_fts, scorer[, floor])`: the row's [`Features`] through the FTS5
//!   extension API, scored by the [`Scorer`] whose text is the second argument (the formula
//!   and its reasons are in `memory/rank.rs`), or NULL when a [`RisingFloor`] is named and the
//!   row cannot reach it. The text is decoded once per query and kept as FTS5 auxiliary data,
//!   so each row costs only its features and the arithmetic.
//! * `modstate_totals(memories_fts)`: the index's row count and total tokens (body and grams
//!   columns), then each query phrase's document frequency, as `"N,T,df,…"`: the statistics
//!   a first page freezes.
//!
//! The functions are registered on each connection the first time a search finds them
//! missing (see `memories.rs`), through the `fts5_api` pointer SQLite hands out for
//! `SELECT fts5(?1)`.

use std::ffi::{c_int, c_void};
use std::ptr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use rusqlite::Connection;
use rusqlite::ffi;

use crate::error::{Error, Result};
use crate::memory::{Features, Scorer, Scratch};

/// The SQL name of the ranking function.
pub const NAME: &str = "modstate_rank";
/// The SQL name of the statistics function.
pub const TOTALS: &str = "modstate_totals";

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
        let rc = create(
            api,
            c"modstate_totals".as_ptr(),
            ptr::null_mut(),
            Some(totals),
            None,
        );
        if rc != ffi::SQLITE_OK {
            return Err(failed("xCreateFunction", rc));
        }
    }
    Ok(())
}

/// The ranking function: scores the current row's features with the query's scorer.
///
/// With a second argument, the id of a [`RisingFloor`], the row is read the cheap way
/// ([`pruned`], from the phrases' position lists) and a row that cannot reach the floor's
/// current value is NULL, unscored: first from which terms it holds (`Scorer::held_bound`,
/// what `Scorer::may_reach` compares, kept per set of terms), then from its matches at the
/// shortest length they allow (`Scorer::ceiling`); only a row past both has its length read,
/// and is scored from the same matches. Without one (a search with no limit, which prunes
/// nothing: the reference the pruned rounds are tested against) every row is scored from
/// FTS5's instance list, as before pruning existed.
///
/// SQLite calls the function twice for a row that passes a `score IS NOT NULL` condition
/// (once in the condition, once for the result): the last row's answer is kept and given
/// again (the floor does not move between the two: it is raised between rows).
///
/// # Safety
/// Called by FTS5 only, with its extension API table, the context of the row being ranked and
/// its arguments after the table (the scorer's text, and the floor's id).
unsafe extern "C" fn rank(
    api: *const ffi::Fts5ExtensionApi,
    fts: *mut ffi::Fts5Context,
    ctx: *mut ffi::sqlite3_context,
    argc: c_int,
    argv: *mut *mut ffi::sqlite3_value,
) {
    // SAFETY: FTS5 passes a valid API table, context and `argc` arguments.
    unsafe {
        let api = &*api;
        let query = match query(api, fts, argc, argv) {
            Ok(query) => &mut *query,
            Err(rc) => return ffi::sqlite3_result_error_code(ctx, rc),
        };
        let answer = if argc == 2 {
            let Some(row_id) = api.xRowid else {
                return ffi::sqlite3_result_error_code(ctx, ffi::SQLITE_ERROR);
            };
            let row = row_id(fts);
            match query.last {
                Some((last, answer)) if last == row => Ok(answer),
                _ => {
                    let floor = match &query.floor {
                        Some(floor) => f64::from_bits(floor.load(Ordering::Relaxed)),
                        None => return ffi::sqlite3_result_error_code(ctx, ffi::SQLITE_MISUSE),
                    };
                    let answer = pruned(api, fts, query, floor);
                    if let Ok(answer) = answer {
                        query.last = Some((row, answer));
                    }
                    answer
                }
            }
        } else {
            features(api, fts).map(|features| Some(query.scorer.score(&features)))
        };
        match answer {
            Ok(Some(score)) => ffi::sqlite3_result_double(ctx, score),
            Ok(None) => ffi::sqlite3_result_null(ctx),
            Err(rc) => ffi::sqlite3_result_error_code(ctx, rc),
        }
    }
}

/// The current row's score, or `None` if it cannot reach `floor`.
///
/// Most rows of a pruned round are rejected by the terms they hold alone, so that is read
/// first (each phrase's first match) and nothing else is read, copied or allocated for them;
/// the rest of the matches are read from where the first ones left off, into the query's
/// buffers.
///
/// # Safety
/// `fts` must be the live FTS5 context of the current row, `api` its extension API table.
unsafe fn pruned(
    api: &ffi::Fts5ExtensionApi,
    fts: *mut ffi::Fts5Context,
    query: &mut Query,
    floor: f64,
) -> std::result::Result<Option<f64>, c_int> {
    let (Some(first), Some(next), Some(column_size)) =
        (api.xPhraseFirst, api.xPhraseNext, api.xColumnSize)
    else {
        return Err(ffi::SQLITE_ERROR);
    };
    // SAFETY (all calls): as the function's contract says; each phrase iterator is used for
    // the current row only.
    unsafe {
        if query.firsts.is_empty() {
            phrase_sizes(api, fts, &mut query.features.phrase_sizes)?;
            query.bits = (0..query.features.phrase_sizes.len())
                .map(|p| query.scorer.held_terms([p]))
                .collect();
            if query.scorer.terms() <= MEMO_TERMS {
                query.bounds = vec![f64::NAN; 1 << query.scorer.terms()];
            }
            query.firsts = vec![
                (
                    ffi::Fts5PhraseIter {
                        a: ptr::null(),
                        b: ptr::null(),
                    },
                    -1,
                    0
                );
                query.features.phrase_sizes.len()
            ];
        }
        let prune = floor > f64::NEG_INFINITY;
        for (p, (iter, column, offset)) in query.firsts.iter_mut().enumerate() {
            let p = c_int::try_from(p).map_err(|_| ffi::SQLITE_ERROR)?;
            check(first(fts, p, iter, column, offset))?;
        }
        if prune {
            let mut held = Some(0u64);
            for ((_, column, _), bit) in query.firsts.iter().zip(&query.bits) {
                if *column >= 0 {
                    held = held.zip(*bit).map(|(held, bit)| held | bit);
                }
            }
            if let Some(held) = held {
                let bound = match query
                    .bounds
                    .get_mut(usize::try_from(held).unwrap_or(usize::MAX))
                {
                    Some(known) if !known.is_nan() => *known,
                    Some(unknown) => {
                        *unknown = query.scorer.held_bound(held);
                        *unknown
                    }
                    None => query.scorer.held_bound(held),
                };
                if !reaches(bound, floor) {
                    return Ok(None);
                }
            }
        }
        // A row with a match in the grams column is a CJK memory, searched there; any other
        // is searched in its body (or, with grams but no match in them, scores 0 whichever).
        let raw = &mut query.raw;
        raw.clear();
        for (phrase, (iter, column, offset)) in query.firsts.iter_mut().enumerate() {
            while *column >= 0 {
                raw.push((phrase, *column, usize::try_from(*offset).unwrap_or(0)));
                next(fts, iter, column, offset);
            }
        }
        let searched = if raw.iter().any(|m| m.1 == 1) { 1 } else { 0 };
        let features = &mut query.features;
        features.instances.clear();
        features.length = 0;
        features.instances.extend(
            raw.iter()
                .filter(|m| m.1 == searched)
                .map(|&(phrase, _, offset)| (phrase, offset)),
        );
        if prune && !reaches(query.scorer.ceiling_in(features, &mut query.scratch), floor) {
            return Ok(None);
        }
        let mut grams_size: c_int = 0;
        check(column_size(fts, 1, &mut grams_size))?;
        let mut length: c_int = grams_size;
        if grams_size == 0 {
            check(column_size(fts, 0, &mut length))?;
        } else if searched == 0 {
            // A CJK memory none of whose grams match: no instance in its searched column.
            features.instances.clear();
        }
        features.length = usize::try_from(length).unwrap_or(0);
        Ok(Some(query.scorer.score_in(features, &mut query.scratch)))
    }
}

/// A search's floor, raised while the ranking function reads its candidates: the search
/// raises it as rows that passed its filters come out of the statement (its page's last score
/// so far), and the function reads it on each row, so a row that can no longer reach the page
/// is skipped unscored, and never joined with its memory. (A floor fixed for a whole
/// statement, the page's last score of the previous round, left most rows of a round to be
/// scored: a round's own first rows set a higher one.)
///
/// SQL passes the floor to the function by id, looked up here once per statement; an id that
/// is not live is an error, never a pointer read.
pub struct RisingFloor {
    id: i64,
    value: Arc<AtomicU64>,
}

/// The live floors by id.
static FLOORS: Mutex<Vec<(i64, Weak<AtomicU64>)>> = Mutex::new(Vec::new());
/// The next floor's id.
static NEXT_FLOOR: AtomicI64 = AtomicI64::new(1);

impl RisingFloor {
    /// A floor starting at `floor` (minus infinity: none yet).
    pub fn new(floor: f64) -> RisingFloor {
        let value = Arc::new(AtomicU64::new(floor.to_bits()));
        let id = NEXT_FLOOR.fetch_add(1, Ordering::Relaxed);
        let mut live = FLOORS
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        live.retain(|(_, floor)| floor.strong_count() > 0);
        live.push((id, Arc::downgrade(&value)));
        RisingFloor { id, value }
    }

    /// The id SQL passes to the ranking function.
    pub fn id(&self) -> i64 {
        self.id
    }

    /// The floor now.
    pub fn get(&self) -> f64 {
        f64::from_bits(self.value.load(Ordering::Relaxed))
    }

    /// Raises the floor to `floor` (a lower value leaves it where it is).
    pub fn raise(&self, floor: f64) {
        if floor > self.get() {
            self.value.store(floor.to_bits(), Ordering::Relaxed);
        }
    }

    /// The live floor with this id.
    fn find(id: i64) -> Option<Arc<AtomicU64>> {
        let live = FLOORS
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        live.iter()
            .find(|(live, _)| *live == id)
            .and_then(|(_, floor)| floor.upgrade())
    }
}

impl Drop for RisingFloor {
    fn drop(&mut self) {
        let mut live = FLOORS
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        live.retain(|(id, _)| *id != self.id);
    }
}

/// Whether a ceiling reaches a floor, with the margin `Scorer::may_reach` leaves.
fn reaches(ceiling: f64, floor: f64) -> bool {
    ceiling >= floor - 1e-9 * floor.abs().max(1.0)
}

fn check(rc: c_int) -> std::result::Result<(), c_int> {
    if rc == ffi::SQLITE_OK {
        Ok(())
    } else {
        Err(rc)
    }
}

/// Each phrase's size in tokens, into `sizes`.
///
/// # Safety
/// `fts` must be the live FTS5 context of a row, `api` its extension API table.
unsafe fn phrase_sizes(
    api: &ffi::Fts5ExtensionApi,
    fts: *mut ffi::Fts5Context,
    sizes: &mut Vec<usize>,
) -> std::result::Result<(), c_int> {
    let (Some(phrase_count), Some(phrase_size)) = (api.xPhraseCount, api.xPhraseSize) else {
        return Err(ffi::SQLITE_ERROR);
    };
    // SAFETY: as the function's contract says.
    unsafe {
        sizes.clear();
        for p in 0..phrase_count(fts).max(0) {
            sizes.push(usize::try_from(phrase_size(fts, p)).unwrap_or(0));
        }
    }
    Ok(())
}

/// What a query keeps between rows: its scorer, the last row's answer, and buffers the
/// pruned path reuses from row to row (a query's phrases and their sizes are the same on
/// every row).
struct Query {
    scorer: Scorer,
    /// The floor rows are pruned against, when the call names one.
    floor: Option<Arc<AtomicU64>>,
    last: Option<(i64, Option<f64>)>,
    /// Each phrase's iterator after its first match in the current row, with that match's
    /// column (negative: none) and offset. Empty until the first row is read.
    firsts: Vec<(ffi::Fts5PhraseIter, c_int, c_int)>,
    /// The current row's matches as (phrase, column, offset), before the searched column is
    /// chosen.
    raw: Vec<(usize, c_int, usize)>,
    /// The current row's features; `phrase_sizes` set on the first row.
    features: Features,
    /// The scorer's buffers.
    scratch: Scratch,
    /// Each phrase's term as a bit (`Scorer::held_terms`), set on the first row.
    bits: Vec<Option<u64>>,
    /// `Scorer::held_bound` of each set of terms met so far (NaN: not yet), indexed by the
    /// set's bits, when there are at most [`MEMO_TERMS`] terms.
    bounds: Vec<f64>,
}

/// The most terms whose bounds a query keeps, one per subset: 4,096 of them.
const MEMO_TERMS: usize = 12;

/// The query's [`Query`]: decoded from the argument on the first row, then kept as the
/// query's auxiliary data (FTS5 frees it with the query).
///
/// # Safety
/// As for [`rank`]; the pointer returned lives as long as the query, and FTS5 calls the
/// ranking function for one row at a time, so one `&mut` to it is live at once.
unsafe fn query(
    api: &ffi::Fts5ExtensionApi,
    fts: *mut ffi::Fts5Context,
    argc: c_int,
    argv: *mut *mut ffi::sqlite3_value,
) -> std::result::Result<*mut Query, c_int> {
    let (Some(get), Some(set)) = (api.xGetAuxdata, api.xSetAuxdata) else {
        return Err(ffi::SQLITE_ERROR);
    };
    // SAFETY: `fts` is live; the auxiliary data, when set, is a `Box<Query>` set below.
    unsafe {
        let kept = get(fts, 0);
        if !kept.is_null() {
            return Ok(kept.cast::<Query>());
        }
        if !(1..=2).contains(&argc) {
            return Err(ffi::SQLITE_MISUSE);
        }
        let value = *argv;
        let text = ffi::sqlite3_value_text(value);
        let len = usize::try_from(ffi::sqlite3_value_bytes(value)).unwrap_or(0);
        if text.is_null() {
            return Err(ffi::SQLITE_MISUSE);
        }
        let bytes = std::slice::from_raw_parts(text, len);
        let scorer = std::str::from_utf8(bytes)
            .ok()
            .and_then(Scorer::decode)
            .ok_or(ffi::SQLITE_MISUSE)?;
        let floor = match argc {
            2 => Some(
                RisingFloor::find(ffi::sqlite3_value_int64(*argv.add(1)))
                    .ok_or(ffi::SQLITE_MISUSE)?,
            ),
            _ => None,
        };
        let boxed = Box::into_raw(Box::new(Query {
            scorer,
            floor,
            last: None,
            firsts: Vec::new(),
            raw: Vec::new(),
            features: Features::default(),
            scratch: Scratch::default(),
            bits: Vec::new(),
            bounds: Vec::new(),
        }));
        let rc = set(fts, boxed.cast::<c_void>(), Some(drop_query));
        if rc != ffi::SQLITE_OK {
            // FTS5 calls the destructor itself when it cannot keep the data.
            return Err(rc);
        }
        Ok(boxed)
    }
}

/// Frees a [`Query`] kept as auxiliary data.
///
/// # Safety
/// `data` is a pointer made by `Box::into_raw(Box<Query>)` in [`query`], freed once.
unsafe extern "C" fn drop_query(data: *mut c_void) {
    if !data.is_null() {
        // SAFETY: as the function's contract says.
        drop(unsafe { Box::from_raw(data.cast::<Query>()) });
    }
}

/// The statistics function: `"N,T,df,df,…"`, the index's rows and tokens in both columns,
/// then for each phrase of the query how many rows hold it, leaving out the rows named by the
/// optional second argument (a blob of sorted seqs, 8 bytes little-endian each: the memories
/// no read shows).
///
/// Each phrase's rows are counted by FTS5 itself (`xQueryPhrase`, as its bm25() counts them),
/// walking the phrase's list inside FTS5: the same rows as a `count(*)` of a MATCH of that
/// phrase alone, at half the cost or less, in one statement for all of them. A hidden row is
/// found by a binary search of the list as the walk passes it, so memories no read shows cost
/// no walk of their own (counting them by a MATCH with `rowid IN (…)` made FTS5 evaluate the
/// phrase afresh per hidden memory: 3.6 s for a prefix with 5,000 of them).
///
/// # Safety
/// Called by FTS5 only, with its extension API table and a row's context.
unsafe extern "C" fn totals(
    api: *const ffi::Fts5ExtensionApi,
    fts: *mut ffi::Fts5Context,
    ctx: *mut ffi::sqlite3_context,
    argc: c_int,
    argv: *mut *mut ffi::sqlite3_value,
) {
    // SAFETY: FTS5 passes a valid API table, context and `argc` arguments; `count_row` is
    // given a live `Tally` for the length of each `xQueryPhrase` call.
    unsafe {
        let api = &*api;
        let (Some(row_count), Some(total_size), Some(phrase_count), Some(query_phrase)) = (
            api.xRowCount,
            api.xColumnTotalSize,
            api.xPhraseCount,
            api.xQueryPhrase,
        ) else {
            return ffi::sqlite3_result_error_code(ctx, ffi::SQLITE_ERROR);
        };
        let hidden: Vec<i64> = if argc >= 1 {
            let value = *argv;
            let bytes = usize::try_from(ffi::sqlite3_value_bytes(value)).unwrap_or(0);
            let blob = ffi::sqlite3_value_blob(value).cast::<u8>();
            if bytes % 8 != 0 || (bytes > 0 && blob.is_null()) {
                return ffi::sqlite3_result_error_code(ctx, ffi::SQLITE_MISUSE);
            }
            if bytes == 0 {
                Vec::new()
            } else {
                std::slice::from_raw_parts(blob, bytes)
                    .chunks_exact(8)
                    .map(|seq| i64::from_le_bytes(seq.try_into().unwrap_or([0; 8])))
                    .collect()
            }
        } else {
            Vec::new()
        };
        let (mut rows, mut body, mut grams) = (0i64, 0i64, 0i64);
        for rc in [
            row_count(fts, &mut rows),
            total_size(fts, 0, &mut body),
            total_size(fts, 1, &mut grams),
        ] {
            if rc != ffi::SQLITE_OK {
                return ffi::sqlite3_result_error_code(ctx, rc);
            }
        }
        let mut text = format!("{rows},{}", body.saturating_add(grams));
        for phrase in 0..phrase_count(fts).max(0) {
            let mut tally = Tally {
                rows: 0,
                hidden: &hidden,
            };
            let rc = query_phrase(
                fts,
                phrase,
                (&mut tally as *mut Tally).cast::<c_void>(),
                Some(count_row),
            );
            if rc != ffi::SQLITE_OK {
                return ffi::sqlite3_result_error_code(ctx, rc);
            }
            text.push_str(&format!(",{}", tally.rows));
        }
        ffi::sqlite3_result_text(
            ctx,
            text.as_ptr().cast(),
            c_int::try_from(text.len()).unwrap_or(0),
            ffi::SQLITE_TRANSIENT(),
        );
    }
}

/// One phrase's walk in [`totals`]: the rows counted so far, and the sorted seqs not to count.
struct Tally<'a> {
    rows: i64,
    hidden: &'a [i64],
}

/// Counts one row of an `xQueryPhrase` walk into the [`Tally`] behind `data`, unless it is
/// hidden.
///
/// # Safety
/// `data` points to a live `Tally` that nothing else uses during the walk; `api` and `fts`
/// are the walk's.
unsafe extern "C" fn count_row(
    api: *const ffi::Fts5ExtensionApi,
    fts: *mut ffi::Fts5Context,
    data: *mut c_void,
) -> c_int {
    // SAFETY: as the function's contract says.
    unsafe {
        let tally = &mut *data.cast::<Tally>();
        if !tally.hidden.is_empty() {
            let Some(row_id) = (*api).xRowid else {
                return ffi::SQLITE_ERROR;
            };
            if tally.hidden.binary_search(&row_id(fts)).is_ok() {
                return ffi::SQLITE_OK;
            }
        }
        tally.rows += 1;
    }
    ffi::SQLITE_OK
}

/// The row's features. For a memory with CJK text the `grams` column (1) is searched, as it
/// holds every word of the body split apart; otherwise the body (0).
///
/// # Safety
/// `fts` must be the live FTS5 context of the current row, `api` its extension API table.
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
    use super::*;
    use crate::memory::{Ranking, Statistics, terms};

    /// The ranking function finds its floor by a live id: it prunes by the floor's value at
    /// each row, and an id that is not live (never made, or dropped) is an error, never a
    /// read of memory.
    #[test]
    fn a_floor_is_found_by_a_live_id_only() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = crate::store::sqlite::store_with(
            dir.path(),
            &["deploy the billing cache", "deploy deploy on Friday"],
        );
        let plan = Ranking::plan(&terms("deploy"), false);
        let statistics = Statistics {
            memories: 2,
            tokens: 8,
            frequencies: vec![2],
        };
        let scorer = plan.scorer(&statistics).encode();
        let scores = |id: i64| -> rusqlite::Result<Vec<Option<f64>>> {
            store
                .read(|conn| {
                    register(conn)?;
                    Ok(conn
                        .prepare(
                            "SELECT modstate_rank(memories_fts, ?1, ?2) FROM memories_fts
                             WHERE memories_fts MATCH 'deploy' ORDER BY rowid",
                        )
                        .and_then(|mut stmt| {
                            stmt.query_map(rusqlite::params![scorer, id], |r| r.get(0))?
                                .collect()
                        }))
                })
                .unwrap()
        };
        let floor = RisingFloor::new(f64::NEG_INFINITY);
        let all = scores(floor.id()).unwrap();
        assert!(all.iter().all(Option::is_some), "{all:?}");
        floor.raise(1e9);
        assert_eq!(scores(floor.id()).unwrap(), vec![None, None]);
        assert!(scores(floor.id() + 1_000_000).is_err(), "an id never made");
        let gone = floor.id();
        drop(floor);
        assert!(scores(gone).is_err(), "a dropped floor's id");
    }
}
