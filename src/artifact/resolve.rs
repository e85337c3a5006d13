//! The loader fast path: artifact file, then store, then compute — computing at most once
//! across processes.

use std::path::Path;

use serde::Serialize;

use super::{Envelope, Outcome, read_artifact_file};
use crate::digest::Digest;
use crate::error::Result;
use crate::lock::{KeyedGuard, Mode};
use crate::store::Store;

/// Where a resolved envelope came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Served {
    /// A current artifact file.
    File,
    /// The store.
    Store,
    /// The compute function, whose result is now stored.
    Computed,
}

impl Served {
    /// `file`, `store` or `computed`, as the CLI prints it.
    pub fn word(self) -> &'static str {
        match self {
            Served::File => "file",
            Served::Store => "store",
            Served::Computed => "computed",
        }
    }
}

/// What [`Store::resolve`] found.
#[derive(Clone, Debug)]
pub struct Resolved {
    /// The envelope; serve [`Envelope::canonical_bytes`] so the answer does not depend on
    /// the source.
    pub envelope: Envelope,
    /// Where it came from.
    pub served: Served,
    /// The artifact file that was asked for but not used, and why (missing, stale, malformed
    /// or unsupported); `None` when no file was given or it served the answer.
    pub skipped_file: Option<Outcome>,
}

impl Store {
    /// The envelope stored for `digest`, computing and storing it on a miss.
    ///
    /// On a miss the keyed lock for the digest is taken and the store checked again, so when
    /// many processes miss at once the computation runs once and the others read its result.
    /// A failing or panicking `compute` stores nothing; the lock is released either way. A
    /// server lock lost while `compute` ran stores nothing either: [`crate::Error::LockLost`].
    pub fn get_or_compute(
        &self,
        digest: &Digest,
        compute: impl FnOnce() -> Result<Envelope>,
    ) -> Result<(Envelope, Served)> {
        self.get_or_compute_guarded(digest, |_| compute())
    }

    /// [`Self::get_or_compute`], with `compute` given the guard of the digest's lock: to stop
    /// its work when the lock is lost ([`KeyedGuard::on_lost`]).
    pub fn get_or_compute_guarded(
        &self,
        digest: &Digest,
        compute: impl FnOnce(&KeyedGuard) -> Result<Envelope>,
    ) -> Result<(Envelope, Served)> {
        if let Some(envelope) = self.get(digest)? {
            return Ok((envelope, Served::Store));
        }
        let guard = self.locks().keyed(&[digest.as_str()], Mode::Exclusive)?;
        if let Some(envelope) = self.get(digest)? {
            return Ok((envelope, Served::Store));
        }
        let envelope = compute(&guard)?;
        // A server lock lost while computing: another process may be computing too, so this
        // one stores nothing and says so (`LockLost`).
        guard.check()?;
        self.put(digest, &envelope)?;
        Ok((envelope, Served::Computed))
    }

    /// The loader fast path: the artifact file at `file` if it is current for `digest`, else
    /// the store, else `compute` (under the digest's keyed lock, once across processes).
    /// With no `compute` it only looks: `None` on a miss.
    ///
    /// A file that is missing, stale, malformed or unsupported falls through and is reported
    /// in [`Resolved::skipped_file`]; only a real I/O error reading it is an error.
    pub fn resolve(
        &self,
        digest: &Digest,
        file: Option<&Path>,
        compute: Option<impl FnOnce() -> Result<Envelope>>,
    ) -> Result<Option<Resolved>> {
        self.resolve_guarded(digest, file, compute.map(|c| move |_: &KeyedGuard| c()))
    }

    /// [`Self::resolve`], with `compute` given the guard of the digest's lock (see
    /// [`Self::get_or_compute_guarded`]).
    pub fn resolve_guarded(
        &self,
        digest: &Digest,
        file: Option<&Path>,
        compute: Option<impl FnOnce(&KeyedGuard) -> Result<Envelope>>,
    ) -> Result<Option<Resolved>> {
        let skipped_file = match file {
            Some(path) => match read_artifact_file(path, digest)? {
                Outcome::Loaded(envelope) => {
                    return Ok(Some(Resolved {
                        envelope,
                        served: Served::File,
                        skipped_file: None,
                    }));
                }
                other => Some(other),
            },
            None => None,
        };
        let found = match compute {
            Some(compute) => Some(self.get_or_compute_guarded(digest, compute)?),
            None => self.get(digest)?.map(|envelope| (envelope, Served::Store)),
        };
        Ok(found.map(|(envelope, served)| Resolved {
            envelope,
            served,
            skipped_file,
        }))
    }
}
