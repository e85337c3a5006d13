//! Generations and versions: one store-wide counter that never goes back.
//!
//! Every memory write takes the next value of `memory_counter` in its own transaction. That
//! value becomes the written memory's `version` and its namespace's `generation`. Since the
//! counter only grows, no value is handed out twice: an agent's `expect_generation` /
//! `expect_version` can be accepted only if nothing it has not seen happened in between (no
//! ABA), and writes in one namespace never move another namespace's generation.
//!
//! A restore copies an older database in, counter included. [`stamps_before_restore`] reads
//! the live counter (and namespaces) before the copy; [`advance_after_restore`], in the same
//! locked restore, sets the counter past both the live and the restored value and moves every
//! namespace's generation and every memory's version to it: whatever the snapshot holds,
//! nothing reads a value handed out before.

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use crate::error::Result;
use crate::store::sqlite::errors::SqlContext;

/// The store-wide counter: the last value handed out.
pub fn counter(conn: &Connection) -> Result<u64> {
    let value: i64 = conn
        .prepare_cached("SELECT value FROM memory_counter WHERE only = 0")
        .and_then(|mut stmt| stmt.query_row([], |r| r.get(0)))
        .context("reading the memory counter")?;
    Ok(u64::try_from(value).unwrap_or(0))
}

/// Takes the next value of the counter inside the writing transaction.
pub fn next_stamp(tx: &Transaction<'_>) -> Result<u64> {
    let value: i64 = tx
        .prepare_cached(
            "UPDATE memory_counter SET value = value + 1 WHERE only = 0 RETURNING value",
        )
        .and_then(|mut stmt| stmt.query_row([], |r| r.get(0)))
        .context("advancing the memory counter")?;
    Ok(u64::try_from(value).unwrap_or(0))
}

/// A namespace's generation: the stamp of its last write, 0 if it was never written.
pub fn namespace_generation(conn: &Connection, namespace: &str) -> Result<u64> {
    let value: Option<i64> = conn
        .prepare_cached("SELECT generation FROM memory_namespaces WHERE namespace = ?1")
        .and_then(|mut stmt| stmt.query_row([namespace], |r| r.get(0)).optional())
        .context("reading a namespace's generation")?;
    Ok(value.and_then(|v| u64::try_from(v).ok()).unwrap_or(0))
}

/// Records `stamp` as the namespace's generation, inside the writing transaction.
pub fn set_namespace_generation(tx: &Transaction<'_>, namespace: &str, stamp: u64) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO memory_namespaces (namespace, generation) VALUES (?1, ?2)
         ON CONFLICT (namespace) DO UPDATE SET generation = excluded.generation",
    )
    .and_then(|mut stmt| stmt.execute(params![namespace, stamp as i64]))
    .context("recording a namespace's generation")?;
    Ok(())
}

/// What the live database had handed out, read before a restore copies a snapshot in.
#[derive(Debug, Clone)]
pub struct LiveStamps {
    counter: u64,
    namespaces: Vec<String>,
}

/// Reads the live counter and namespaces; call it on the writer connection, under the write
/// lock, before the copy.
pub fn stamps_before_restore(conn: &Connection) -> Result<LiveStamps> {
    let counter = counter(conn)?;
    let mut stmt = conn
        .prepare("SELECT namespace FROM memory_namespaces")
        .context("reading namespaces before a restore")?;
    let namespaces = stmt
        .query_map([], |r| r.get(0))
        .and_then(|rows| rows.collect::<rusqlite::Result<Vec<String>>>())
        .context("reading namespaces before a restore")?;
    Ok(LiveStamps {
        counter,
        namespaces,
    })
}

/// After the copy (and its migration), in the same locked restore: moves the counter past
/// every value handed out by the live database or the snapshot, and every namespace's
/// generation and memory's version to that new value. Namespaces the live database knew but
/// the snapshot does not are recorded too, so their generation does not fall back to 0.
/// Returns the new counter.
pub fn advance_after_restore(conn: &mut Connection, live: LiveStamps) -> Result<u64> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .context("advancing generations after a restore")?;
    let restored = counter(&tx)?;
    let next = live.counter.max(restored) + 1;
    let next_value = i64::try_from(next).unwrap_or(i64::MAX);
    tx.execute(
        "UPDATE memory_counter SET value = ?1 WHERE only = 0",
        [next_value],
    )
    .context("advancing the memory counter after a restore")?;
    for namespace in &live.namespaces {
        tx.execute(
            "INSERT OR IGNORE INTO memory_namespaces (namespace, generation) VALUES (?1, 0)",
            [namespace],
        )
        .context("keeping a namespace's generation after a restore")?;
    }
    tx.execute(
        "INSERT OR IGNORE INTO memory_namespaces (namespace, generation)
         SELECT DISTINCT namespace, 0 FROM memories",
        [],
    )
    .context("keeping a namespace's generation after a restore")?;
    tx.execute("UPDATE memory_namespaces SET generation = ?1", [next_value])
        .context("advancing namespace generations after a restore")?;
    tx.execute("UPDATE memories SET version = ?1", [next_value])
        .context("advancing memory versions after a restore")?;
    tx.commit()
        .context("advancing generations after a restore")?;
    Ok(next)
}
