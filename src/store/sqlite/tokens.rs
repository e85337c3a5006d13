//! The tokens table in SQLite (see `migrations/0008_tokens.sql` and `crate::token`).

use rusqlite::{OptionalExtension, Row, params};

use super::SqliteBackend;
use crate::error::{Error, Result};
use crate::store::sqlite::errors::SqlContext;
use crate::token::{Scope, TokenInfo, TokenRow};

const COLUMNS: &str = "name, scope, namespaces, created_at, last_used_at";

impl SqliteBackend {
    pub(crate) fn create_token_sql(&self, token: &TokenRow) -> Result<()> {
        let namespaces = serde_json::to_string(&token.info.namespaces)
            .map_err(|e| Error::Invalid(format!("cannot encode the namespaces: {e}")))?;
        let added = self.write("creating a token", |tx| {
            tx.execute(
                "INSERT INTO tokens (name, hash, scope, namespaces, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
                params![
                    token.info.name,
                    token.hash,
                    token.info.scope.as_str(),
                    namespaces,
                    token.info.created_at
                ],
            )
            .context("creating a token")
        })?;
        if added == 0 {
            return Err(taken(&token.info.name));
        }
        Ok(())
    }

    pub(crate) fn tokens_sql(&self) -> Result<Vec<TokenInfo>> {
        self.read(|conn| {
            let mut statement = conn
                .prepare_cached(&format!("SELECT {COLUMNS} FROM tokens ORDER BY name"))
                .context("listing tokens")?;
            let rows = statement
                .query_map([], read_row)
                .context("listing tokens")?
                .collect::<rusqlite::Result<Vec<_>>>()
                .context("listing tokens")?;
            rows.into_iter().map(info).collect()
        })
    }

    pub(crate) fn token_by_hash_sql(&self, hash: &str) -> Result<Option<TokenInfo>> {
        self.read(|conn| {
            conn.prepare_cached(&format!("SELECT {COLUMNS} FROM tokens WHERE hash = ?1"))
                .context("looking up a token")?
                .query_row([hash], read_row)
                .optional()
                .context("looking up a token")?
                .map(info)
                .transpose()
        })
    }

    pub(crate) fn revoke_token_sql(&self, name: &str) -> Result<bool> {
        self.write("revoking a token", |tx| {
            tx.execute("DELETE FROM tokens WHERE name = ?1", [name])
                .context("revoking a token")
                .map(|n| n > 0)
        })
    }

    pub(crate) fn touch_token_sql(&self, name: &str, at: &str) -> Result<()> {
        let minute = minute(at);
        self.write("recording a token's use", |tx| {
            tx.execute(
                "UPDATE tokens SET last_used_at = ?2
                 WHERE name = ?1 AND (last_used_at IS NULL OR last_used_at < ?2)",
                params![name, minute],
            )
            .context("recording a token's use")?;
            Ok(())
        })
    }
}

/// `2026-12-06T19:30:12.345Z` → `2026-12-06T19:30:00Z`.
pub(crate) fn minute(at: &str) -> String {
    match at.get(..16) {
        Some(head) => format!("{head}:00Z"),
        None => at.to_owned(),
    }
}

/// A name in use.
pub(crate) fn taken(name: &str) -> Error {
    Error::Invalid(format!(
        "a token named {name:?} exists; revoke it first (`modstate token revoke {name}`) or choose another name"
    ))
}

type Raw = (String, String, String, String, Option<String>);

fn read_row(row: &Row<'_>) -> rusqlite::Result<Raw> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
    ))
}

/// A row as read, checked.
pub(crate) fn info((name, scope, namespaces, created_at, last_used_at): Raw) -> Result<TokenInfo> {
    let namespaces: Vec<String> = serde_json::from_str(&namespaces)
        .map_err(|e| Error::Integrity(format!("token {name:?} has unreadable namespaces: {e}")))?;
    let scope = Scope::parse(&scope)
        .map_err(|_| Error::Integrity(format!("token {name:?} has an unknown scope {scope:?}")))?;
    Ok(TokenInfo {
        name,
        scope,
        namespaces,
        created_at,
        last_used_at,
    })
}
