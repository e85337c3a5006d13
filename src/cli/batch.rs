//! Reading a batch of artifacts for `artifact put-many`: every item is validated before
//! anything is written, and a bad item is named by its index.

use std::fs;
use std::io::{BufRead, Read};
use std::path::Path;

use serde::Deserialize;
use serde_json::value::RawValue;

use modstate::artifact::file::read_artifact_file_any;
use modstate::{Digest, Envelope, Error, Result};

/// Slack for the `digest` field and framing around an envelope on one line.
const LINE_OVERHEAD: usize = 4096;

#[derive(Deserialize)]
struct Line<'a> {
    digest: String,
    #[serde(borrow)]
    state: &'a RawValue,
}

/// JSON Lines of `{"digest": …, "state": {…}}`; blank lines are skipped. The envelope is kept
/// byte for byte as it appears on its line.
pub fn from_json_lines(mut input: impl BufRead, limit: usize) -> Result<Vec<(Digest, Envelope)>> {
    let line_limit = limit.saturating_add(LINE_OVERHEAD);
    let mut items = Vec::new();
    let mut line = Vec::new();
    for number in 1.. {
        line.clear();
        let read = input
            .by_ref()
            .take(line_limit as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(|e| Error::io("reading", "stdin", e))?;
        if read == 0 {
            break;
        }
        if line.len() > line_limit {
            return Err(item_error(
                &format!("line {number}"),
                &format!("longer than {line_limit} bytes"),
            ));
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let parsed: Line<'_> = serde_json::from_slice(&line).map_err(|e| {
            item_error(
                &format!("line {number}"),
                &format!("not a {{\"digest\", \"state\"}} object: {e}"),
            )
        })?;
        let digest = Digest::parse(&parsed.digest)
            .map_err(|e| item_error(&format!("line {number}"), &e.to_string()))?;
        let envelope = Envelope::parse(parsed.state.get().as_bytes().to_vec(), limit)
            .map_err(|e| item_error(&format!("line {number}"), &e.to_string()))?;
        items.push((digest, envelope));
    }
    Ok(items)
}

/// Every `*.json` artifact file directly inside `dir`, in name order.
pub fn from_directory(dir: &Path, limit: usize) -> Result<Vec<(Digest, Envelope)>> {
    let mut paths: Vec<_> = fs::read_dir(dir)
        .map_err(|e| Error::io("listing", dir, e))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<std::io::Result<_>>()
        .map_err(|e| Error::io("listing", dir, e))?;
    paths.retain(|p| p.extension().is_some_and(|ext| ext == "json") && p.is_file());
    paths.sort();
    paths
        .iter()
        .enumerate()
        .map(|(i, path)| {
            read_artifact_file_any(path, limit).map_err(|e| match e {
                Error::Invalid(m) | Error::Unsupported(m) => {
                    item_error(&format!("item {} ({})", i + 1, path.display()), &m)
                }
                other => other,
            })
        })
        .collect()
}

/// `where_` names the bad item: `line 4` of the input, or `item 2 (path)` of a directory.
fn item_error(where_: &str, why: &str) -> Error {
    Error::Invalid(format!(
        "batch {where_} is invalid: {why}; fix it and rerun — nothing was stored"
    ))
}
