//! The artifact file `dagger.moduletypes.json`, format version 1:
//!
//! ```json
//! {
//!   "artifactVersion": 1,
//!   "moduleSourceDigest": "sha256:…",
//!   "state": {"type": "Module", "version": 1, "state": {…}}
//! }
//! ```
//!
//! A loader reading it gets one of five answers — loaded, missing, stale, malformed,
//! unsupported — none of which is an error: a bad file just means "regenerate". Only a real
//! I/O failure (permission denied, a directory in the file's place) is an error.

use std::fs::File;
use std::io::{self, ErrorKind, Read};
use std::path::Path;

use serde_json::{Map, Value};

use super::{Envelope, STATE_TYPE, STATE_VERSION};
use crate::atomic::write_atomically;
use crate::digest::Digest;
use crate::error::{Error, Result};

/// The artifact file format this binary reads and writes.
pub const ARTIFACT_VERSION: u64 = 1;
/// Largest artifact file read. Pretty-printing makes a file larger than the compact envelope
/// it holds, so this sits well above the default 16 MiB envelope limit; it is there so that a
/// device, a runaway file or a wrong path (`/dev/zero`) cannot exhaust memory.
pub const MAX_ARTIFACT_FILE_BYTES: u64 = 128 << 20;

/// What reading an artifact file for a digest found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A current file: here is its state envelope.
    Loaded(Envelope),
    /// No file at the path.
    Missing,
    /// A well-formed file for another module source.
    Stale {
        /// The module source digest the file names.
        found: String,
    },
    /// Not JSON, or not the shape of an artifact file.
    Malformed(String),
    /// An artifactVersion, state type or state version this binary does not know.
    Unsupported(String),
}

impl Outcome {
    /// `loaded`, `missing`, `stale`, `malformed` or `unsupported`.
    pub fn word(&self) -> &'static str {
        match self {
            Outcome::Loaded(_) => "loaded",
            Outcome::Missing => "missing",
            Outcome::Stale { .. } => "stale",
            Outcome::Malformed(_) => "malformed",
            Outcome::Unsupported(_) => "unsupported",
        }
    }

    /// Why the file is not usable, when it is not.
    pub fn reason(&self) -> Option<String> {
        match self {
            Outcome::Loaded(_) => None,
            Outcome::Missing => Some("no artifact file at this path".to_owned()),
            Outcome::Stale { found } => Some(format!("file is for module source {found}")),
            Outcome::Malformed(r) | Outcome::Unsupported(r) => Some(r.clone()),
        }
    }
}

/// Reads the artifact file at `path` for a module whose source digest is `expected`.
pub fn read_artifact_file(path: &Path, expected: &Digest) -> Result<Outcome> {
    let bytes = match read_bounded(path) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return Ok(Outcome::Malformed(too_large())),
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Outcome::Missing),
        Err(e) => return Err(Error::io("reading artifact file", path, e)),
    };
    Ok(parse_artifact_file(&bytes, expected))
}

/// Classifies the bytes of an artifact file. Never fails and never panics: every input is
/// one of the five outcomes.
pub fn parse_artifact_file(bytes: &[u8], expected: &Digest) -> Outcome {
    match inspect(bytes) {
        Ok((found, _)) if &found != expected => Outcome::Stale {
            found: found.to_string(),
        },
        Ok((_, envelope)) => Outcome::Loaded(envelope),
        Err(outcome) => outcome,
    }
}

/// Reads an artifact file for import: the digest it names and its envelope, or why it cannot
/// be imported (`Invalid` when malformed, `Unsupported` for versions this binary does not know).
pub fn read_artifact_file_any(path: &Path, max_bytes: usize) -> Result<(Digest, Envelope)> {
    let bytes = read_bounded(path)
        .map_err(|e| Error::io("reading artifact file", path, e))?
        .ok_or_else(|| {
            Error::Invalid(format!(
                "artifact file {} is malformed: {}",
                path.display(),
                too_large()
            ))
        })?;
    let (digest, envelope) = inspect(&bytes).map_err(|outcome| {
        let reason = outcome.reason().unwrap_or_default();
        match outcome {
            Outcome::Unsupported(_) => Error::Unsupported(format!(
                "artifact file {} is not supported: {reason}",
                path.display()
            )),
            _ => Error::Invalid(format!(
                "artifact file {} is malformed: {reason}",
                path.display()
            )),
        }
    })?;
    Ok((digest, Envelope::parse(envelope.into_bytes(), max_bytes)?))
}

/// The file's bytes, or `None` when it holds more than `MAX_ARTIFACT_FILE_BYTES`.
fn read_bounded(path: &Path) -> io::Result<Option<Vec<u8>>> {
    let mut bytes = Vec::new();
    File::open(path)?
        .take(MAX_ARTIFACT_FILE_BYTES + 1)
        .read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= MAX_ARTIFACT_FILE_BYTES).then_some(bytes))
}

fn too_large() -> String {
    format!("larger than {MAX_ARTIFACT_FILE_BYTES} bytes, more than any artifact file holds")
}

/// Checks everything but the digest match: the digest the file names and its usable envelope,
/// or the `Malformed`/`Unsupported` outcome that says why not.
fn inspect(bytes: &[u8]) -> std::result::Result<(Digest, Envelope), Outcome> {
    let malformed = |reason: &str| Outcome::Malformed(reason.to_owned());
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| Outcome::Malformed(format!("not valid JSON: {e}")))?;
    let Value::Object(mut file) = value else {
        return Err(malformed("not a JSON object"));
    };
    match file.get("artifactVersion") {
        Some(Value::Number(n)) if n.as_u64() == Some(ARTIFACT_VERSION) => {}
        Some(Value::Number(n)) => {
            return Err(Outcome::Unsupported(format!(
                "artifactVersion {n} is not supported (this modstate reads version {ARTIFACT_VERSION})"
            )));
        }
        Some(_) => return Err(malformed("artifactVersion is not a number")),
        None => return Err(malformed("no artifactVersion")),
    }
    let found = match file.get("moduleSourceDigest") {
        Some(Value::String(s)) => {
            Digest::parse(s).map_err(|e| Outcome::Malformed(format!("moduleSourceDigest: {e}")))?
        }
        Some(_) => return Err(malformed("moduleSourceDigest is not a string")),
        None => return Err(malformed("no moduleSourceDigest")),
    };
    let state = file.remove("state").ok_or_else(|| malformed("no state"))?;
    let envelope = Envelope::from_value(state, usize::MAX).map_err(|e| match e {
        Error::Unsupported(reason) => Outcome::Unsupported(reason),
        other => Outcome::Malformed(other.to_string()),
    })?;
    debug_assert!(
        envelope.state_type() == STATE_TYPE && envelope.state_version() == STATE_VERSION,
        "Envelope enforces the one supported type and version"
    );
    Ok((found, envelope))
}

/// Writes the artifact file atomically: a temp file beside it, fsync, rename, directory fsync.
/// Readers see the old file or the new one, never a mix.
pub fn write_artifact_file(path: &Path, digest: &Digest, envelope: &Envelope) -> Result<()> {
    let mut doc = Map::new();
    doc.insert("artifactVersion".to_owned(), Value::from(ARTIFACT_VERSION));
    doc.insert(
        "moduleSourceDigest".to_owned(),
        Value::String(digest.to_string()),
    );
    doc.insert("state".to_owned(), envelope.to_value()?);
    let mut text = serde_json::to_vec_pretty(&Value::Object(doc))
        .map_err(|e| Error::Invalid(format!("cannot serialize the artifact file: {e}")))?;
    text.push(b'\n');
    write_atomically(path, &text)
}
