//! The search ranking inside SQLite, as two FTS5 auxiliary functions:
//! * `modstate_rank(memories_fts, scorer)`: the row's [`Features`] through the FTS5 extension
//!   API, scored by the [`Scorer`] whose text is the second argument (the formula and its
//!   reasons are in `memory/rank.rs`). The text is decoded once per query and kept as FTS5
//!   auxiliary data, so each row costs only its features and the arithmetic.
//! * `modstate_totals(memories_fts)`: the index's row count and total tokens (body and grams
//!   columns), as `"N,T"`: the statistics a first page freezes.
//!
//! The functions are registered on each connection the first time a search finds them
//! missing (see `memories.rs`), through the `fts5_api` pointer SQLite hands out for
//! `SELECT fts5(?1)`.

use std::cell::Cell;
use std::ffi::{c_int, c_void};
use std::ptr;

use rusqlite::Connection;
use rusqlite::ffi;

use crate::error::{Error, Result};
use crate::memory::{Features, Scorer};

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
/// With a second argument, a floor, the row is read the cheap way ([`Matches`], from the
/// phrases' position lists) and a row that cannot reach the floor is NULL, unscored: first
/// from which terms it holds (`Scorer::may_reach`), then from its matches at the shortest
/// length they allow (`Scorer::ceiling`); only a row past both has its length read, and is
/// scored from the same matches. Without one (a search with no limit, which prunes nothing:
/// the reference the pruned rounds are tested against) every row is scored from FTS5's
/// instance list, as before pruning existed.
///
/// SQLite calls the function twice for a row that passes a `score IS NOT NULL` condition
/// (once in the condition, once for the result): the last row's answer is kept and given
/// again.
///
/// # Safety
/// Called by FTS5 only, with its extension API table, the context of the row being ranked and
/// its arguments after the table (the scorer's text, and the floor).
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
            Ok(query) => &*query,
            Err(rc) => return ffi::sqlite3_result_error_code(ctx, rc),
        };
        let answer = if argc == 2 {
            let Some(row_id) = api.xRowid else {
                return ffi::sqlite3_result_error_code(ctx, ffi::SQLITE_ERROR);
            };
            let row = row_id(fts);
            match query.last.get() {
                Some((last, answer)) if last == row => Ok(answer),
                _ => {
                    let floor = ffi::sqlite3_value_double(*argv.add(1));
                    let answer = pruned(api, fts, &query.scorer, floor);
                    if let Ok(answer) = answer {
                        query.last.set(Some((row, answer)));
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
/// # Safety
/// `fts` must be the live FTS5 context of the current row, `api` its extension API table.
unsafe fn pruned(
    api: &ffi::Fts5ExtensionApi,
    fts: *mut ffi::Fts5Context,
    scorer: &Scorer,
    floor: f64,
) -> std::result::Result<Option<f64>, c_int> {
    // SAFETY (all calls): as the function's contract says.
    unsafe {
        let matches = matches(api, fts)?;
        let prune = floor > f64::NEG_INFINITY;
        let held = matches
            .phrase_held
            .iter()
            .enumerate()
            .filter(|(_, held)| **held)
            .map(|(phrase, _)| phrase);
        if prune && !scorer.may_reach(held, floor) {
            return Ok(None);
        }
        // A row with a match in the grams column is a CJK memory, searched there; any other
        // is searched in its body (or, with grams but no match in them, scores 0 whichever).
        let raw = matches.features;
        let column = if raw.instances.iter().any(|m| m.1 == 1) {
            1
        } else {
            0
        };
        let mut features = Features {
            instances: raw
                .instances
                .iter()
                .filter(|m| m.1 == column)
                .map(|&(phrase, _, offset)| (phrase, offset))
                .collect(),
            phrase_sizes: raw.phrase_sizes,
            length: 0,
        };
        if prune && !reaches(scorer.ceiling(&features), floor) {
            return Ok(None);
        }
        let Some(column_size) = api.xColumnSize else {
            return Err(ffi::SQLITE_ERROR);
        };
        let mut grams_size: c_int = 0;
        check(column_size(fts, 1, &mut grams_size))?;
        let mut length: c_int = grams_size;
        if grams_size == 0 {
            check(column_size(fts, 0, &mut length))?;
        } else if column == 0 {
            // A CJK memory none of whose grams match: no instance in its searched column.
            features.instances.clear();
        }
        features.length = usize::try_from(length).unwrap_or(0);
        Ok(Some(scorer.score(&features)))
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

/// A row's matches read from the phrases' position lists: which phrases it holds, and every
/// match as (phrase, column, offset) with the phrases' sizes; its length is not read.
struct Matches {
    phrase_held: Vec<bool>,
    features: RawFeatures,
}

/// [`Features`] with each match's column, before the searched column is chosen.
struct RawFeatures {
    phrase_sizes: Vec<usize>,
    instances: Vec<(usize, c_int, usize)>,
}

/// # Safety
/// `fts` must be the live FTS5 context of the current row, `api` its extension API table.
unsafe fn matches(
    api: &ffi::Fts5ExtensionApi,
    fts: *mut ffi::Fts5Context,
) -> std::result::Result<Matches, c_int> {
    let (Some(phrase_count), Some(phrase_size), Some(first), Some(next)) = (
        api.xPhraseCount,
        api.xPhraseSize,
        api.xPhraseFirst,
        api.xPhraseNext,
    ) else {
        return Err(ffi::SQLITE_ERROR);
    };
    // SAFETY (all calls): `fts` is the live context of the current row; `iter` lives for the
    // loop over one phrase.
    unsafe {
        let phrases = phrase_count(fts).max(0);
        let mut phrase_held = Vec::with_capacity(usize::try_from(phrases).unwrap_or(0));
        let mut phrase_sizes = Vec::with_capacity(phrase_held.capacity());
        let mut instances = Vec::new();
        for p in 0..phrases {
            let phrase = usize::try_from(p).unwrap_or(0);
            phrase_sizes.push(usize::try_from(phrase_size(fts, p)).unwrap_or(0));
            let mut iter = ffi::Fts5PhraseIter {
                a: ptr::null(),
                b: ptr::null(),
            };
            let (mut column, mut offset) = (0, 0);
            check(first(fts, p, &mut iter, &mut column, &mut offset))?;
            phrase_held.push(column >= 0);
            while column >= 0 {
                instances.push((phrase, column, usize::try_from(offset).unwrap_or(0)));
                next(fts, &mut iter, &mut column, &mut offset);
            }
        }
        Ok(Matches {
            phrase_held,
            features: RawFeatures {
                phrase_sizes,
                instances,
            },
        })
    }
}

/// What a query keeps between rows: its scorer, and the last row's answer.
struct Query {
    scorer: Scorer,
    last: Cell<Option<(i64, Option<f64>)>>,
}

/// The query's [`Query`]: decoded from the argument on the first row, then kept as the
/// query's auxiliary data (FTS5 frees it with the query).
///
/// # Safety
/// As for [`rank`]; the pointer returned lives as long as the query.
unsafe fn query(
    api: &ffi::Fts5ExtensionApi,
    fts: *mut ffi::Fts5Context,
    argc: c_int,
    argv: *mut *mut ffi::sqlite3_value,
) -> std::result::Result<*const Query, c_int> {
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
        let boxed = Box::into_raw(Box::new(Query {
            scorer,
            last: Cell::new(None),
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

/// The statistics function: `"N,T"`, the index's rows and tokens in both columns.
///
/// # Safety
/// Called by FTS5 only, with its extension API table and a row's context.
unsafe extern "C" fn totals(
    api: *const ffi::Fts5ExtensionApi,
    fts: *mut ffi::Fts5Context,
    ctx: *mut ffi::sqlite3_context,
    _argc: c_int,
    _argv: *mut *mut ffi::sqlite3_value,
) {
    // SAFETY: FTS5 passes a valid API table and context.
    unsafe {
        let api = &*api;
        let (Some(row_count), Some(total_size)) = (api.xRowCount, api.xColumnTotalSize) else {
            return ffi::sqlite3_result_error_code(ctx, ffi::SQLITE_ERROR);
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
        let text = format!("{rows},{}", body.saturating_add(grams));
        ffi::sqlite3_result_text(
            ctx,
            text.as_ptr().cast(),
            c_int::try_from(text.len()).unwrap_or(0),
            ffi::SQLITE_TRANSIENT(),
        );
    }
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
