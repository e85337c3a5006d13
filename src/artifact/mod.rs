//! Module-state artifacts: the saved state envelope, its table in the store, and the
//! `dagger.moduletypes.json` file format.

pub mod cache;
pub mod file;
mod resolve;
mod store;

use serde_json::Value;

use crate::error::{Error, Result};

pub use file::{ARTIFACT_VERSION, Outcome, read_artifact_file, write_artifact_file};
pub use resolve::{Resolved, Served};

/// The one state envelope type modstate stores and loads: saved module state.
pub const STATE_TYPE: &str = "Module";
/// The one state envelope version modstate stores and loads.
pub const STATE_VERSION: i64 = 1;
pub use store::{ArtifactInfo, PutOutcome};

/// A validated saved state envelope `{"type": "Module", "version": 1, "state": {…}}`, kept as
/// the exact bytes it was given.
///
/// One rule at every entrance (put, put-many, import, resolve, the artifact file): only what
/// the artifact file format accepts is an envelope, so whatever is stored can be exported and
/// imported again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    bytes: Vec<u8>,
    state_type: String,
    state_version: i64,
}

impl Envelope {
    /// Validates `bytes` as an envelope of at most `max_bytes` bytes.
    pub fn parse(bytes: Vec<u8>, max_bytes: usize) -> Result<Envelope> {
        if bytes.len() > max_bytes {
            return Err(too_large(bytes.len(), max_bytes));
        }
        let value: Value = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Invalid(format!("state envelope is not valid JSON: {e}")))?;
        Envelope::check(value, bytes)
    }

    /// Builds an envelope from an already parsed value, serialized compactly.
    pub fn from_value(value: Value, max_bytes: usize) -> Result<Envelope> {
        let bytes = serde_json::to_vec(&value)
            .map_err(|e| Error::Invalid(format!("state envelope cannot be serialized: {e}")))?;
        if bytes.len() > max_bytes {
            return Err(too_large(bytes.len(), max_bytes));
        }
        Envelope::check(value, bytes)
    }

    fn check(value: Value, bytes: Vec<u8>) -> Result<Envelope> {
        let shape = |what: &str| {
            Error::Invalid(format!(
                "state envelope {what}; expected {{\"type\": string, \"version\": integer, \"state\": object}}"
            ))
        };
        let Value::Object(map) = value else {
            return Err(shape("is not a JSON object"));
        };
        let state_type = match map.get("type") {
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(shape("has a \"type\" that is not a string")),
            None => return Err(shape("has no \"type\"")),
        };
        let state_version = match map.get("version") {
            Some(Value::Number(n)) => n
                .as_i64()
                .ok_or_else(|| shape("has a \"version\" that is not an integer"))?,
            Some(_) => return Err(shape("has a \"version\" that is not an integer")),
            None => return Err(shape("has no \"version\"")),
        };
        match map.get("state") {
            Some(Value::Object(_)) => {}
            Some(_) => return Err(shape("has a \"state\" that is not an object")),
            None => return Err(shape("has no \"state\"")),
        }
        if state_type != STATE_TYPE {
            return Err(Error::Unsupported(format!(
                "state type {state_type:?} is not supported: modstate stores saved module state ({{\"type\": {STATE_TYPE:?}, \"version\": {STATE_VERSION}}})"
            )));
        }
        if state_version != STATE_VERSION {
            return Err(Error::Unsupported(format!(
                "state version {state_version} is not supported: this modstate stores version {STATE_VERSION} of {STATE_TYPE:?} state"
            )));
        }
        Ok(Envelope {
            bytes,
            state_type,
            state_version,
        })
    }

    /// Rebuilds an envelope read back from the store, whose bytes were validated on put and
    /// whose hash the caller has just checked: no second JSON parse on the read path.
    pub(crate) fn from_stored(bytes: Vec<u8>, state_type: String, state_version: i64) -> Envelope {
        Envelope {
            bytes,
            state_type,
            state_version,
        }
    }

    /// The exact bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The exact bytes, taking them.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// The envelope's `type` (e.g. `Module`).
    pub fn state_type(&self) -> &str {
        &self.state_type
    }

    /// The envelope's `version`.
    pub fn state_version(&self) -> i64 {
        self.state_version
    }

    /// The envelope as compact JSON on one line, the same whatever spacing it was stored
    /// with: what a loader is served, so the answer's bytes do not depend on whether the
    /// artifact file, the store or a computation served it. Key order and number spellings
    /// are kept.
    pub fn canonical_bytes(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(&self.to_value()?)
            .map_err(|e| Error::Invalid(format!("state envelope cannot be serialized: {e}")))
    }

    /// Whether two envelopes hold the same JSON, whatever their spacing or key order: an
    /// artifact file written from a stored envelope and imported again is the same artifact.
    pub fn same_json(&self, other_bytes: &[u8]) -> bool {
        match (
            self.to_value(),
            serde_json::from_slice::<Value>(other_bytes),
        ) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        }
    }

    /// The parsed JSON value.
    pub fn to_value(&self) -> Result<Value> {
        serde_json::from_slice(&self.bytes)
            .map_err(|e| Error::Invalid(format!("state envelope is not valid JSON: {e}")))
    }
}

fn too_large(len: usize, max: usize) -> Error {
    Error::Invalid(format!(
        "state envelope is {len} bytes, over the {max}-byte limit; shrink it (no option raises this limit)"
    ))
}
