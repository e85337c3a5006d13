//! Content digests: `sha256:` followed by 64 lowercase hex digits.
//!
//! The digest is the key module loaders use; accepting near-misses (upper-case hex, a bare hash)
//! would create a second key for the same content, so parsing is strict.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};

const PREFIX: &str = "sha256:";
const HEX_LEN: usize = 64;

/// A validated `sha256:<64 lowercase hex>` digest.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest(String);

impl Digest {
    /// Parses and validates a digest string.
    pub fn parse(text: &str) -> Result<Digest> {
        let valid = text
            .strip_prefix(PREFIX)
            .is_some_and(|hex| hex.len() == HEX_LEN && hex.bytes().all(is_lower_hex));
        if valid {
            Ok(Digest(text.to_owned()))
        } else {
            Err(Error::Invalid(format!(
                "invalid digest {}: expected sha256: followed by 64 lowercase hex digits (sha256:0123…cdef)",
                shorten(text)
            )))
        }
    }

    /// The sha256 digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(format!("{PREFIX}{}", hex(&Sha256::digest(bytes))))
    }

    /// The digest as text: `sha256:` and 64 lowercase hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 64 hex digits without the `sha256:` prefix.
    pub fn hex(&self) -> &str {
        &self.0[PREFIX.len()..]
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Digest {
    type Err = Error;
    fn from_str(s: &str) -> Result<Digest> {
        Digest::parse(s)
    }
}

fn is_lower_hex(b: u8) -> bool {
    b.is_ascii_digit() || (b'a'..=b'f').contains(&b)
}

/// Lowercase hex of arbitrary bytes.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 0xf) as usize] as char);
    }
    out
}

/// Quotes user text for an error message, cut short so a huge argument cannot flood the terminal.
pub(crate) fn shorten(text: &str) -> String {
    const MAX: usize = 80;
    if text.chars().count() <= MAX {
        format!("{text:?}")
    } else {
        let head: String = text.chars().take(MAX).collect();
        format!("{head:?}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_canonical_and_rejects_near_misses() {
        let good = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(Digest::parse(&good).unwrap().as_str(), good);
        for bad in [
            String::new(),
            "sha256:".to_string(),
            format!("sha256:{}", "AB".repeat(32)),
            format!("sha256:{}", "ab".repeat(31)),
            format!("sha256:{}", "ab".repeat(33)),
            format!("md5:{}", "ab".repeat(32)),
            "ab".repeat(32),
            format!("sha256:{}g", "a".repeat(63)),
        ] {
            assert!(Digest::parse(&bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn computes_known_value() {
        assert_eq!(
            Digest::of(b"").as_str(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
