//! The tokens table on PostgreSQL (see `migrations/postgres/0008_tokens.sql` and
//! `crate::token`).

use super::PgBackend;
use super::errors::PgContext;
use crate::error::{Error, Result};
use crate::store::sqlite::tokens::{info, minute, taken};
use crate::token::{TokenInfo, TokenRow};

const COLUMNS: &str = "name, scope, namespaces::text, created_at, last_used_at";

impl PgBackend {
    pub(crate) fn create_token_pg(&self, token: &TokenRow) -> Result<()> {
        let namespaces = serde_json::to_string(&token.info.namespaces)
            .map_err(|e| Error::Invalid(format!("cannot encode the namespaces: {e}")))?;
        let added = self.write("creating a token", |tx| {
            tx.execute(
                "INSERT INTO tokens (name, hash, scope, namespaces, created_at)
                 VALUES ($1, $2, $3, $4::text::jsonb, $5) ON CONFLICT DO NOTHING",
                &[
                    &token.info.name,
                    &token.hash,
                    &token.info.scope.as_str(),
                    &namespaces,
                    &token.info.created_at,
                ],
            )
            .context("creating a token")
        })?;
        if added == 0 {
            return Err(taken(&token.info.name));
        }
        Ok(())
    }

    pub(crate) fn tokens_pg(&self) -> Result<Vec<TokenInfo>> {
        self.read("listing tokens", |tx| {
            let rows = tx
                .query(&format!("SELECT {COLUMNS} FROM tokens ORDER BY name"), &[])
                .context("listing tokens")?;
            rows.iter()
                .map(|r| info((r.get(0), r.get(1), r.get(2), r.get(3), r.get(4))))
                .collect()
        })
    }

    pub(crate) fn token_by_hash_pg(&self, hash: &str) -> Result<Option<TokenInfo>> {
        self.read("looking up a token", |tx| {
            let row = tx
                .query_opt(
                    &format!("SELECT {COLUMNS} FROM tokens WHERE hash = $1"),
                    &[&hash],
                )
                .context("looking up a token")?;
            row.map(|r| info((r.get(0), r.get(1), r.get(2), r.get(3), r.get(4))))
                .transpose()
        })
    }

    pub(crate) fn revoke_token_pg(&self, name: &str) -> Result<bool> {
        self.write("revoking a token", |tx| {
            tx.execute("DELETE FROM tokens WHERE name = $1", &[&name])
                .context("revoking a token")
                .map(|n| n > 0)
        })
    }

    pub(crate) fn touch_token_pg(&self, name: &str, at: &str) -> Result<()> {
        let minute = minute(at);
        self.write("recording a token's use", |tx| {
            tx.execute(
                "UPDATE tokens SET last_used_at = $2
                 WHERE name = $1 AND (last_used_at IS NULL OR last_used_at < $2)",
                &[&name, &minute],
            )
            .context("recording a token's use")?;
            Ok(())
        })
    }
}
