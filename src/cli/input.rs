//! Reading command input from a file or stdin, bounded so a huge input cannot exhaust memory.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use modstate::{Error, Result};

/// Reads `source` (`-` for stdin) up to `limit` bytes; more is an `Invalid` error.
pub fn read_limited(source: &str, limit: usize, what: &str) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let cap = limit as u64 + 1;
    if source == "-" {
        std::io::stdin()
            .lock()
            .take(cap)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::io("reading", "stdin", e))?;
    } else {
        let path = Path::new(source);
        let file = File::open(path).map_err(|e| Error::io("opening", path, e))?;
        file.take(cap)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::io("reading", path, e))?;
    }
    if bytes.len() > limit {
        return Err(Error::Invalid(format!(
            "{what} is larger than the {limit}-byte limit; shrink it (no option raises this limit)"
        )));
    }
    Ok(bytes)
}
