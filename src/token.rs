//! Bearer tokens for `modstate serve`, and [`Guarded`]: a store handle that applies what a
//! token grants (its namespaces and its scope) to every memory call.
//!
//! A token is 32 random bytes from the operating system, shown once when it is created; the
//! store keeps only its SHA-256 (a token has 256 bits of entropy, so a fast hash is enough: no
//! guessing attack on the hash is cheaper than on the server). Tokens live in the database, so
//! every `serve` process on a shared database (PostgreSQL) sees the same ones, and a revoked
//! token is refused on its next request: each request looks its token up again.
//!
//! The guard lives here, in the library, rather than in the server: whatever a tool call
//! asks for, the store refuses what the grant does not allow, so a bug in a front end cannot
//! widen a token's reach.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::memory::{
    Expect, Hit, Memory, MemoryChange, MemoryEvent, MemoryFilter, MemoryPage, NewMemory,
    check_label,
};
use crate::store::Store;
use crate::time::now_rfc3339;

/// What a token may do in its namespaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Search, list, read history and module state.
    Read,
    /// Everything `Read` may, and add, update and delete memories.
    Write,
}

impl Scope {
    /// Reads `read` or `write`.
    pub fn parse(text: &str) -> Result<Scope> {
        match text {
            "read" => Ok(Scope::Read),
            "write" => Ok(Scope::Write),
            other => Err(Error::Invalid(format!(
                "scope {other:?} is not a token scope; use read or write"
            ))),
        }
    }

    /// `read` or `write`, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stored token, without the token itself (which is never stored).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TokenInfo {
    /// The name it was created under; recorded as the writer of what it writes.
    pub name: String,
    /// What it may do.
    pub scope: Scope,
    /// The namespaces it reaches (at least one).
    pub namespaces: Vec<String>,
    /// When it was created (RFC 3339 UTC).
    pub created_at: String,
    /// When it was last used, to the minute (RFC 3339 UTC); `None` if never.
    pub last_used_at: Option<String>,
}

/// A token as created: the record, and the secret to hand to the client once.
#[derive(Debug)]
pub struct NewToken {
    /// What was stored.
    pub info: TokenInfo,
    /// The token: shown once, never stored.
    pub secret: String,
}

/// What the store keeps for one token (the engines' side).
#[derive(Clone, Debug)]
pub(crate) struct TokenRow {
    pub info: TokenInfo,
    /// Hex SHA-256 of the token.
    pub hash: String,
}

/// The shortest token [`Store::import_token`] accepts: 32 bytes, as hex or base64 of 24.
pub const MIN_SECRET_BYTES: usize = 32;

/// The prefix of every token, so that secret scanners and people recognise one.
pub const TOKEN_PREFIX: &str = "mst_";

/// The hex SHA-256 the store keeps of `secret`.
pub fn hash_token(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Store {
    /// Creates a token named `name` for `namespaces` with `scope`; the secret in the result is
    /// the only copy. A name in use is refused (revoke it first).
    pub fn create_token(
        &self,
        name: &str,
        scope: Scope,
        namespaces: &[String],
    ) -> Result<NewToken> {
        let mut random = [0u8; 32];
        getrandom::fill(&mut random).map_err(|e| {
            Error::Invalid(format!("the operating system gave no random bytes: {e}"))
        })?;
        let secret = format!("{TOKEN_PREFIX}{}", hex(&random));
        let info = self.store_token(name, scope, namespaces, &secret)?;
        Ok(NewToken { info, secret })
    }

    /// Registers a token made elsewhere (a deployment's secret manager): only its hash is
    /// stored. It must be at least [`MIN_SECRET_BYTES`] long, printable, without spaces.
    pub fn import_token(
        &self,
        name: &str,
        scope: Scope,
        namespaces: &[String],
        secret: &str,
    ) -> Result<TokenInfo> {
        if secret.len() < MIN_SECRET_BYTES || !secret.chars().all(|c| c.is_ascii_graphic()) {
            return Err(Error::Invalid(format!(
                "a token must be at least {MIN_SECRET_BYTES} printable ASCII characters without spaces; generate one with `openssl rand -hex 32`"
            )));
        }
        self.store_token(name, scope, namespaces, secret)
    }

    fn store_token(
        &self,
        name: &str,
        scope: Scope,
        namespaces: &[String],
        secret: &str,
    ) -> Result<TokenInfo> {
        check_label("token name", name)?;
        if name.is_empty() {
            return Err(Error::Invalid(
                "a token needs a name (who uses it: a person, a host, an agent)".into(),
            ));
        }
        if namespaces.is_empty() {
            return Err(Error::Invalid(
                "a token needs at least one namespace; give --namespace NS".into(),
            ));
        }
        for namespace in namespaces {
            check_label("namespace", namespace)?;
        }
        let mut unique = namespaces.to_vec();
        unique.sort();
        unique.dedup();
        let row = TokenRow {
            info: TokenInfo {
                name: name.to_owned(),
                scope,
                namespaces: unique,
                created_at: now_rfc3339(),
                last_used_at: None,
            },
            hash: hash_token(secret),
        };
        self.backend().create_token(&row)?;
        Ok(row.info)
    }

    /// Every token, by name.
    pub fn tokens(&self) -> Result<Vec<TokenInfo>> {
        self.backend().tokens()
    }

    /// Removes the token `name`: the next request made with it is refused.
    pub fn revoke_token(&self, name: &str) -> Result<()> {
        if self.backend().revoke_token(name)? {
            Ok(())
        } else {
            Err(Error::NotFound(format!(
                "no token named {name:?}; `modstate token ls` lists them"
            )))
        }
    }

    /// The token whose secret is `secret`, if one is stored.
    pub fn authenticate(&self, secret: &str) -> Result<Option<TokenInfo>> {
        if secret.is_empty() {
            return Ok(None);
        }
        self.backend().token_by_hash(&hash_token(secret))
    }

    /// Records that `name` was used now.
    pub fn touch_token(&self, name: &str) -> Result<()> {
        self.backend().touch_token(name, &now_rfc3339())
    }

    /// This handle, limited to what `grant` allows.
    pub fn guarded(&self, grant: Grant) -> Guarded {
        Guarded {
            store: self.clone(),
            grant: Arc::new(grant),
        }
    }
}

/// What a caller may reach: some namespaces (or all), reading only or writing too.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The namespaces reachable; `None`: every namespace.
    pub namespaces: Option<Vec<String>>,
    /// Read only, or read and write.
    pub scope: Scope,
}

impl Grant {
    /// Everything: for the local CLI, and `serve` without tokens on loopback.
    pub fn all() -> Grant {
        Grant {
            namespaces: None,
            scope: Scope::Write,
        }
    }

    /// What a token allows.
    pub fn of(token: &TokenInfo) -> Grant {
        Grant {
            namespaces: Some(token.namespaces.clone()),
            scope: token.scope,
        }
    }

    /// Whether `namespace` is reachable.
    pub fn reaches(&self, namespace: &str) -> bool {
        self.namespaces
            .as_ref()
            .is_none_or(|list| list.iter().any(|n| n == namespace))
    }

    fn check_namespace(&self, namespace: &str) -> Result<()> {
        if self.reaches(namespace) {
            Ok(())
        } else {
            Err(Error::Denied(format!(
                "namespace {namespace:?} is not one this token reaches; use a token for it"
            )))
        }
    }

    fn check_write(&self) -> Result<()> {
        match self.scope {
            Scope::Write => Ok(()),
            Scope::Read => Err(Error::Denied(
                "this token has scope read; writing needs a token with scope write".into(),
            )),
        }
    }
}

/// A store handle limited by a [`Grant`]: every memory call checks the namespaces it touches
/// and, for writes, the scope. A memory of a namespace out of reach is reported absent, as
/// if it did not exist, so a token learns nothing about other namespaces.
#[derive(Clone)]
pub struct Guarded {
    store: Store,
    grant: Arc<Grant>,
}

impl Guarded {
    /// What this handle may do.
    pub fn grant(&self) -> &Grant {
        &self.grant
    }

    /// Who writes through this handle (see [`Store::with_writer`]).
    pub fn writer(&self) -> &str {
        self.store.writer()
    }

    /// [`Store::add_memories`], if the scope is write and every namespace (and every memory
    /// superseded) is in reach.
    pub fn add_memories(
        &self,
        memories: impl IntoIterator<Item = NewMemory>,
    ) -> Result<Vec<Memory>> {
        let memories: Vec<NewMemory> = memories.into_iter().collect();
        self.grant.check_write()?;
        for memory in &memories {
            self.grant.check_namespace(&memory.namespace)?;
            for id in &memory.supersedes {
                self.visible(id)?;
            }
        }
        self.store.add_memories(memories)
    }

    /// [`Store::get_memory`]; a memory out of reach is `None`.
    pub fn get_memory(&self, id: &str) -> Result<Option<Memory>> {
        Ok(self
            .store
            .get_memory(id)?
            .filter(|memory| self.grant.reaches(&memory.namespace)))
    }

    /// [`Store::list_page`] within reach; see [`Guarded::scope_filter`].
    pub fn list_page(&self, filter: &MemoryFilter) -> Result<MemoryPage<Memory>> {
        let filter = self.scope_filter(filter)?;
        self.store.list_page(&filter)
    }

    /// [`Store::search_page`] within reach; see [`Guarded::scope_filter`].
    pub fn search_page(&self, query: &str, filter: &MemoryFilter) -> Result<MemoryPage<Hit>> {
        let filter = self.scope_filter(filter)?;
        self.store.search_page(query, &filter)
    }

    /// [`Store::recall_page`] within reach; see [`Guarded::scope_filter`].
    pub fn recall_page(
        &self,
        query: &str,
        filter: &MemoryFilter,
        mode: crate::memory::Mode,
        embedder: Option<&dyn crate::embed::Embedder>,
    ) -> Result<crate::memory::Recalled> {
        let filter = self.scope_filter(filter)?;
        self.store.recall_page(query, &filter, mode, embedder)
    }

    /// [`Store::embed_memories`] of memories this handle just wrote, if the scope is write.
    pub fn embed_memories(
        &self,
        embedder: &dyn crate::embed::Embedder,
        memories: &[Memory],
    ) -> Result<usize> {
        self.grant.check_write()?;
        self.store.embed_memories(embedder, memories)
    }

    /// [`Store::change_memory`], if the scope is write and the memory is in reach.
    pub fn change_memory(&self, id: &str, change: MemoryChange, expect: Expect) -> Result<Memory> {
        self.grant.check_write()?;
        self.visible(id)?;
        self.store.change_memory(id, change, expect)
    }

    /// [`Store::delete_memory`], if the scope is write and the memory is in reach.
    pub fn delete_memory(&self, id: &str, expect: Expect) -> Result<u64> {
        self.grant.check_write()?;
        self.visible(id)?;
        self.store.delete_memory(id, expect)
    }

    /// [`Store::memory_history`] of a memory in reach (also a deleted one).
    pub fn memory_history(&self, id: &str) -> Result<Vec<MemoryEvent>> {
        let events = self.store.memory_history(id)?;
        if events.iter().any(|e| !self.grant.reaches(&e.namespace)) {
            return Err(not_found(id));
        }
        Ok(events)
    }

    /// [`Store::memory_generation`] of a namespace in reach.
    pub fn memory_generation(&self, namespace: &str) -> Result<u64> {
        self.grant.check_namespace(namespace)?;
        self.store.memory_generation(namespace)
    }

    /// [`Store::get`]: module state is keyed by source digest, not by namespace, and any
    /// grant may read it (a token cannot write it).
    pub fn get_artifact(&self, digest: &Digest) -> Result<Option<crate::Envelope>> {
        self.store.get(digest)
    }

    /// The filter narrowed to reach: a namespace out of reach is refused; no namespace (all)
    /// means the one namespace of a one-namespace grant, and is refused for a grant of
    /// several (name one).
    fn scope_filter(&self, filter: &MemoryFilter) -> Result<MemoryFilter> {
        let mut filter = filter.clone();
        match (&filter.namespace, &self.grant.namespaces) {
            (_, None) => {}
            (Some(namespace), Some(_)) => self.grant.check_namespace(namespace)?,
            (None, Some(list)) if list.len() == 1 => filter.namespace = Some(list[0].clone()),
            (None, Some(_)) => {
                return Err(Error::Denied(
                    "this token reaches several namespaces; name one to read".into(),
                ));
            }
        }
        Ok(filter)
    }

    /// The memory `id` if it is in reach, else `NotFound`.
    fn visible(&self, id: &str) -> Result<Memory> {
        self.get_memory(id)?.ok_or_else(|| not_found(id))
    }
}

fn not_found(id: &str) -> Error {
    Error::NotFound(format!(
        "no memory with id {id:?} in this namespace; the get_memories tool lists its memories"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Options;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("s.db"), Options::default()).unwrap();
        (dir, store)
    }

    fn memory(namespace: &str, body: &str) -> NewMemory {
        NewMemory {
            namespace: namespace.into(),
            body: body.into(),
            ..NewMemory::default()
        }
    }

    fn denied<T: fmt::Debug>(result: Result<T>) -> bool {
        matches!(result, Err(Error::Denied(_)))
    }

    fn absent<T: fmt::Debug>(result: Result<T>) -> bool {
        matches!(result, Err(Error::NotFound(_)))
    }

    #[test]
    fn a_grant_limits_every_call_of_the_guarded_store() {
        let (_dir, store) = store();
        let b = store
            .add_memories([memory("b", "b's plan")])
            .unwrap()
            .remove(0);
        let a = store
            .add_memories([memory("a", "a's plan")])
            .unwrap()
            .remove(0);
        let only_a = store.guarded(Grant {
            namespaces: Some(vec!["a".into()]),
            scope: Scope::Write,
        });
        // Out of reach: absent, or refused — never read, never written.
        assert_eq!(only_a.get_memory(&b.id).unwrap(), None);
        assert!(absent(only_a.memory_history(&b.id)));
        assert!(absent(only_a.change_memory(
            &b.id,
            MemoryChange::default(),
            Expect::default()
        )));
        assert!(absent(only_a.delete_memory(&b.id, Expect::default())));
        assert!(denied(only_a.add_memories([memory("b", "x")])));
        let mut replaces_b = memory("a", "x");
        replaces_b.supersedes = vec![b.id.clone()];
        assert!(absent(only_a.add_memories([replaces_b])));
        assert!(denied(only_a.memory_generation("b")));
        let in_b = MemoryFilter {
            namespace: Some("b".into()),
            ..MemoryFilter::default()
        };
        assert!(denied(only_a.list_page(&in_b)));
        assert!(denied(only_a.search_page("plan", &in_b)));
        // "No namespace" means a's only, not all.
        let all = MemoryFilter::default();
        let listed = only_a.list_page(&all).unwrap();
        assert_eq!(listed.page.items.len(), 1);
        assert_eq!(listed.page.items[0].id, a.id);
        let found = only_a.search_page("plan", &all).unwrap();
        assert!(
            found
                .page
                .items
                .iter()
                .all(|hit| hit.memory.namespace == "a")
        );
        // In reach, it works.
        assert!(only_a.get_memory(&a.id).unwrap().is_some());
        assert_eq!(only_a.memory_history(&a.id).unwrap().len(), 1);

        // Several namespaces: a listing must name one.
        let a_and_b = store.guarded(Grant {
            namespaces: Some(vec!["a".into(), "b".into()]),
            scope: Scope::Read,
        });
        assert!(denied(a_and_b.list_page(&all)));
        assert_eq!(a_and_b.list_page(&in_b).unwrap().page.items.len(), 1);
        // Scope read: every write refused, nothing written.
        assert!(denied(a_and_b.add_memories([memory("a", "x")])));
        assert!(denied(a_and_b.change_memory(
            &a.id,
            MemoryChange::default(),
            Expect::default()
        )));
        assert!(denied(a_and_b.delete_memory(&a.id, Expect::default())));
        assert_eq!(store.get_memory(&a.id).unwrap().unwrap().version, a.version);
        assert_eq!(store.list_memories(&all).unwrap().len(), 2);
    }

    #[test]
    fn tokens_are_found_by_their_secret_until_revoked() {
        let (_dir, store) = store();
        let token = store
            .create_token("ci", Scope::Read, &["b".into(), "a".into(), "a".into()])
            .unwrap();
        assert_eq!(token.info.namespaces, ["a", "b"]);
        let found = store.authenticate(&token.secret).unwrap().unwrap();
        assert_eq!(found.name, "ci");
        assert_eq!(store.authenticate("mst_nope").unwrap(), None);
        assert_eq!(store.authenticate(&token.secret[1..]).unwrap(), None);
        store.touch_token("ci").unwrap();
        assert!(store.tokens().unwrap()[0].last_used_at.is_some());
        assert!(matches!(
            store.create_token("ci", Scope::Write, &["a".into()]),
            Err(Error::Invalid(_))
        ));
        assert!(matches!(
            store.create_token("x", Scope::Write, &[]),
            Err(Error::Invalid(_))
        ));
        let made_elsewhere = "f".repeat(64);
        store
            .import_token("vault", Scope::Write, &["a".into()], &made_elsewhere)
            .unwrap();
        assert_eq!(
            store.authenticate(&made_elsewhere).unwrap().unwrap().name,
            "vault"
        );
        assert!(matches!(
            store.import_token("short", Scope::Write, &["a".into()], "abc"),
            Err(Error::Invalid(_))
        ));
        store.revoke_token("ci").unwrap();
        assert_eq!(store.authenticate(&token.secret).unwrap(), None);
        assert!(matches!(store.revoke_token("ci"), Err(Error::NotFound(_))));
    }
}
