//! `modstate_rank(memories_fts)`: the search ranking as an FTS5 auxiliary function. It reads
//! the row's [`Features`] through the FTS5 extension API and returns their score (the formula
//! and its reasons are in `memory/rank.rs`).
//!
//! The function is registered on each connection the first time a search finds it missing
//! (see `memories.rs`), through the `fts5_api` pointer SQLite hands out for `SELECT fts5(?1)`.

use std::ffi::{c_int, c_void};
use std::ptr;

use rusqlite::Connection;
use rusqlite::ffi;

use crate::error::{Error, Result};
use crate::memory::Features;

/// The SQL name of the ranking function.
pub const NAME: &str = "modstate_rank";

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
///
/// # Safety
/// Called by FTS5 only, with its extension API table and the context of the row being ranked.
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
