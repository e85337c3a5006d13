//! The loader fast path: artifact file, then store, then compute — computing at most once
//! across processes.

use std::path::Path;

use serde::Serialize;

use super::{Envelope, Outcome, read_artifact_file};
use crate::digest::Digest;
use crate::error::Result;
use crate::lock::Mode;
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
    pub fn word(self) -> &'static str {
        match self {
            Served::File => "file",
            Served::Store => "store",
            Served::Computed => "computed",
        }
    }
}

impl Store {
    /// The envelope stored for `digest`, computing and storing it on a miss.
    ///
    /// On a miss the keyed lock for the digest is taken and the store checked again, so when
    /// many processes miss at once the computation runs once and the others read its result.
    /// A failing or panicking `compute` stores nothing; the lock is released either way.
    pub fn get_or_compute(
        &self,
        digest: &Digest,
        compute: impl FnOnce() -> Result<Envelope>,
    ) -> Result<(Envelope, Served)> {
        if let Some(envelope) = self.get(digest)? {
            return Ok((envelope, Served::Store));
        }
        let _guard = self.locks().keyed(&[digest.as_str()], Mode::Exclusive)?;
        if let Some(envelope) = self.get(digest)? {
            return Ok((envelope, Served::Store));
        }
        let envelope = compute()?;
        self.put(digest, &envelope)?;
        Ok((envelope, Served::Computed))
    }

    /// The artifact file at `file` if it is current for `digest`, else [`Store::get_or_compute`].
    /// A file that is missing, stale, malformed or unsupported just falls through; only a real
    /// I/O error reading it is an error.
    pub fn resolve(
        &self,
        digest: &Digest,
        file: Option<&Path>,
        compute: impl FnOnce() -> Result<Envelope>,
    ) -> Result<(Envelope, Served)> {
        if let Some(path) = file
            && let Outcome::Loaded(envelope) = read_artifact_file(path, digest)?
        {
            return Ok((envelope, Served::File));
        }
        self.get_or_compute(digest, compute)
    }
}
