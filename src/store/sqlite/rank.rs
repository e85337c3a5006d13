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
/// # Safety
/// Called by FTS5 only, with its extension API table, the context of the row being ranked and
/// its arguments after the table (one: the scorer's text).
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
        let scorer = match scorer(api, fts, argc, argv) {
            Ok(scorer) => scorer,
            Err(rc) => return ffi::sqlite3_result_error_code(ctx, rc),
        };
        match features(api, fts) {
            Ok(features) => ffi::sqlite3_result_double(ctx, (*scorer).score(&features)),
            Err(rc) => ffi::sqlite3_result_error_code(ctx, rc),
        }
    }
}

/// The query's scorer: decoded from the argument on the first row, then kept as the query's
/// auxiliary data (FTS5 frees it with the query).
///
/// # Safety
/// As for [`rank`]; the pointer returned lives as long as the query.
unsafe fn scorer(
    api: &ffi::Fts5ExtensionApi,
    fts: *mut ffi::Fts5Context,
    argc: c_int,
    argv: *mut *mut ffi::sqlite3_value,
) -> std::result::Result<*const Scorer, c_int> {
    let (Some(get), Some(set)) = (api.xGetAuxdata, api.xSetAuxdata) else {
        return Err(ffi::SQLITE_ERROR);
    };
    // SAFETY: `fts` is live; the auxiliary data, when set, is a `Box<Scorer>` set below.
    unsafe {
        let kept = get(fts, 0);
        if !kept.is_null() {
            return Ok(kept.cast::<Scorer>());
        }
        if argc != 1 {
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
        let boxed = Box::into_raw(Box::new(scorer));
        let rc = set(fts, boxed.cast::<c_void>(), Some(drop_scorer));
        if rc != ffi::SQLITE_OK {
            // FTS5 calls the destructor itself when it cannot keep the data.
            return Err(rc);
        }
        Ok(boxed)
    }
}

/// Frees a scorer kept as auxiliary data.
///
/// # Safety
/// `data` is a pointer made by `Box::into_raw(Box<Scorer>)` in [`scorer`], freed once.
unsafe extern "C" fn drop_scorer(data: *mut c_void) {
    if !data.is_null() {
        // SAFETY: as the function's contract says.
        drop(unsafe { Box::from_raw(data.cast::<Scorer>()) });
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
