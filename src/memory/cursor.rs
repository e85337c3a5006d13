//! Paging cursors: where the previous page ended, and what it was a page of.
//!
//! A cursor is opaque to callers (hex text); inside it holds:
//! * the kind (a search, or a listing);
//! * the store's stamp counter when the first page was read (the *snapshot*);
//! * a fingerprint of the query and filters, so a cursor cannot continue a different search;
//! * the last position shown: the score and id of the last result (search), or its id
//!   (listing);
//! * for a search, the collection statistics its scores were computed with (see `rank.rs`),
//!   so later pages score every memory exactly as the first did.
//!
//! What paging guarantees (see `table.rs` for how):
//! * A search orders by (score, id), both fixed for a memory that does not change (the score
//!   depends only on the memory, the query and the statistics the cursor carries, see
//!   `rank.rs`). Later pages hold what ranks
//!   strictly after the cursor among memories not written since the snapshot. So a memory
//!   that matched at the first page and is unchanged appears exactly once, in rank order;
//!   one added or updated after the first page is left out of the later pages (search again
//!   to see it), and a deleted one is gone.
//! * A listing orders by id, newest first; ids never change and new memories get larger ids,
//!   so every memory that existed at the first page and still exists appears exactly once
//!   (with its current text); memories added later are not listed (start over to see them).

use uuid::Uuid;

use super::fusion::{Fusion, Ranks};
use super::rank::Statistics;
use crate::embed::Quantized;
use crate::error::{Error, Result};

/// What a cursor pages through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Search,
    List,
}

impl Kind {
    fn tag(self) -> char {
        match self {
            Kind::Search => 's',
            Kind::List => 'l',
        }
    }
}

/// A decoded cursor.
#[derive(Clone, Debug, PartialEq)]
pub struct Cursor {
    pub kind: Kind,
    pub snapshot: u64,
    pub fingerprint: u64,
    /// The last result's score (0 for a listing).
    pub score: f64,
    /// The last result's id.
    pub id: String,
    /// A ranked search's statistics as of its first page.
    pub statistics: Option<Statistics>,
    /// A semantic or hybrid search's query vector, as computed for its first page (later
    /// pages compare with exactly these values, without asking the embedder again).
    pub query: Option<Quantized>,
    /// A hybrid search's rank scales, frozen at its first page (see `fusion.rs`).
    pub fusion: Option<Fusion>,
}

impl Cursor {
    /// The opaque token.
    pub fn encode(&self) -> String {
        let mut text = format!(
            "{}.{:x}.{:x}.{:x}.{}",
            self.kind.tag(),
            self.snapshot,
            self.fingerprint,
            self.score.to_bits(),
            self.id
        );
        if let Some(s) = &self.statistics {
            let frequencies: Vec<String> = s.frequencies.iter().map(|f| format!("{f:x}")).collect();
            text.push_str(&format!(
                ".{:x}.{:x}.{}",
                s.memories,
                s.tokens,
                frequencies.join(",")
            ));
        }
        // Tagged with letters that are not hex digits, so they never read as statistics.
        if let Some(q) = &self.query {
            let bytes: String = q
                .values
                .iter()
                .map(|&v| format!("{:02x}", v as u8))
                .collect();
            text.push_str(&format!(".q{:x}:{bytes}", q.scale.to_bits()));
        }
        if let Some(f) = &self.fusion {
            text.push_str(&format!(
                ".r{}.s{}",
                scores(&f.keyword),
                scores(&f.semantic)
            ));
        }
        text.bytes().map(|b| format!("{b:02x}")).collect()
    }

    /// Decodes `token`, which must be a cursor of `kind` for the query and filters whose
    /// fingerprint is one of `fingerprints`.
    pub fn decode(token: &str, kind: Kind, fingerprints: &[u64]) -> Result<Cursor> {
        let cursor = parse(token).ok_or_else(|| {
            Error::Invalid(format!(
                "cursor {:?} is malformed; pass next_cursor exactly as it was returned, or start again without a cursor",
                shorten(token)
            ))
        })?;
        if cursor.kind != kind || !fingerprints.contains(&cursor.fingerprint) {
            return Err(Error::Invalid(
                "the cursor belongs to a different search or listing (other query, namespace or category); repeat that one, or start again without a cursor".into(),
            ));
        }
        Ok(cursor)
    }
}

/// Checks that `token` is a well-formed cursor, of any search or listing: a front end can
/// refuse a malformed one as invalid input before anything runs.
pub fn check_cursor(token: &str) -> Result<()> {
    match parse(token) {
        Some(_) => Ok(()),
        None => Cursor::decode(token, Kind::List, &[]).map(|_| ()),
    }
}

fn parse(token: &str) -> Option<Cursor> {
    if !token.len().is_multiple_of(2) || token.len() > MAX_TOKEN {
        return None;
    }
    let bytes = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(token.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    let text = String::from_utf8(bytes).ok()?;
    let mut fields = text.split('.');
    let kind = match fields.next()? {
        "s" => Kind::Search,
        "l" => Kind::List,
        _ => return None,
    };
    let snapshot = u64::from_str_radix(fields.next()?, 16).ok()?;
    let fingerprint = u64::from_str_radix(fields.next()?, 16).ok()?;
    let score = f64::from_bits(u64::from_str_radix(fields.next()?, 16).ok()?);
    let id = fields.next()?;
    let mut fields = fields.peekable();
    let tagged = |f: &&str| f.starts_with(['q', 'r', 's']);
    let statistics = match fields.next_if(|f| !tagged(f)) {
        None => None,
        Some(memories) => Some(Statistics {
            memories: u64::from_str_radix(memories, 16).ok()?,
            tokens: u64::from_str_radix(fields.next()?, 16).ok()?,
            frequencies: fields
                .next()?
                .split(',')
                .filter(|f| !f.is_empty())
                .map(|f| u64::from_str_radix(f, 16).ok())
                .collect::<Option<Vec<u64>>>()?,
        }),
    };
    let query = match fields.next_if(|f| f.starts_with('q')) {
        None => None,
        Some(field) => {
            let (scale, bytes) = field[1..].split_once(':')?;
            let scale = f32::from_bits(u32::from_str_radix(scale, 16).ok()?);
            if !scale.is_finite() || !bytes.len().is_multiple_of(2) {
                return None;
            }
            let values = (0..bytes.len())
                .step_by(2)
                .map(|i| {
                    u8::from_str_radix(bytes.get(i..i + 2)?, 16)
                        .ok()
                        .map(|b| b as i8)
                })
                .collect::<Option<Vec<i8>>>()?;
            Some(Quantized { scale, values })
        }
    };
    let fusion = match fields.next_if(|f| f.starts_with('r')) {
        None => None,
        Some(keyword) => {
            let semantic = fields.next()?.strip_prefix('s')?;
            Some(Fusion {
                keyword: parse_scores(&keyword[1..])?,
                semantic: parse_scores(semantic)?,
            })
        }
    };
    if fields.next().is_some() || !score.is_finite() {
        return None;
    }
    let id = Uuid::parse_str(id).ok()?.hyphenated().to_string();
    Some(Cursor {
        kind,
        snapshot,
        fingerprint,
        score,
        id,
        statistics,
        query,
        fusion,
    })
}

/// A rank scale as cursor text: each score's bits in hex, comma-separated.
fn scores(ranks: &Ranks) -> String {
    let scores: Vec<String> = ranks
        .scores
        .iter()
        .map(|s| format!("{:x}", s.to_bits()))
        .collect();
    format!(
        "{:x},{:x},{}",
        ranks.total,
        ranks.cut.to_bits(),
        scores.join(",")
    )
}

fn parse_scores(text: &str) -> Option<Ranks> {
    let mut parts = text.split(',').filter(|p| !p.is_empty());
    let total = u64::from_str_radix(parts.next()?, 16).ok()?;
    let cut = f64::from_bits(u64::from_str_radix(parts.next()?, 16).ok()?);
    if cut.is_nan() || cut == f64::INFINITY {
        return None;
    }
    let scores = parts
        .map(|p| u64::from_str_radix(p, 16).ok().map(f64::from_bits))
        .collect::<Option<Vec<f64>>>()?;
    scores
        .iter()
        .all(|s| s.is_finite())
        .then_some(Ranks { total, cut, scores })
}

/// The longest cursor accepted: a search of a few hundred words, or a hybrid search's query
/// vector of up to 4,096 dimensions with its rank scales.
const MAX_TOKEN: usize = 64 * 1024;

/// FNV-1a over the parts, each followed by a separator: stable across builds and versions
/// (std's hasher is not promised to be).
pub fn fingerprint(parts: &[Option<&str>]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |b: u8| {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    };
    for part in parts {
        match part {
            Some(text) => {
                eat(1);
                text.bytes().for_each(&mut eat);
            }
            None => eat(2),
        }
        eat(0);
    }
    hash
}

fn shorten(token: &str) -> String {
    match token.char_indices().nth(24) {
        Some((cut, _)) => format!("{}…", &token[..cut]),
        None => token.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips() {
        let cursor = Cursor {
            kind: Kind::Search,
            snapshot: 42,
            fingerprint: fingerprint(&[Some("deploy"), None]),
            score: -0.125,
            id: "0190a0b0-0000-7000-8000-000000000001".into(),
            statistics: Some(Statistics {
                memories: 12,
                tokens: 345,
                frequencies: vec![3, 0, 12],
            }),
            query: Some(Quantized {
                scale: 0.25,
                values: vec![-127, 0, 5, 127],
            }),
            fusion: Some(Fusion {
                keyword: Ranks {
                    total: 40,
                    cut: f64::NEG_INFINITY,
                    scores: vec![3.5, 2.0, -1.0],
                },
                semantic: Ranks {
                    total: 2,
                    cut: 0.25,
                    scores: vec![0.9, 0.8],
                },
            }),
        };
        let token = cursor.encode();
        assert_eq!(
            Cursor::decode(&token, Kind::Search, &[cursor.fingerprint]).unwrap(),
            cursor
        );
        assert!(Cursor::decode(&token, Kind::List, &[cursor.fingerprint]).is_err());
        assert!(Cursor::decode(&token, Kind::Search, &[7]).is_err());
        let semantic = Cursor {
            statistics: None,
            fusion: None,
            ..cursor.clone()
        };
        let token = semantic.encode();
        assert_eq!(
            Cursor::decode(&token, Kind::Search, &[cursor.fingerprint]).unwrap(),
            semantic
        );
        let listing = Cursor {
            kind: Kind::List,
            statistics: None,
            query: None,
            fusion: None,
            ..cursor
        };
        let token = listing.encode();
        assert_eq!(
            Cursor::decode(&token, Kind::List, &[listing.fingerprint]).unwrap(),
            listing
        );
    }

    #[test]
    fn malformed_cursors_are_invalid() {
        for token in ["", "nonsense", "zz", "73", "732e312e322e332e34"] {
            assert!(
                matches!(
                    Cursor::decode(token, Kind::Search, &[0]),
                    Err(Error::Invalid(_))
                ),
                "{token}"
            );
        }
    }

    #[test]
    fn fingerprints_tell_none_from_empty() {
        assert_ne!(fingerprint(&[None]), fingerprint(&[Some("")]));
        assert_ne!(
            fingerprint(&[Some("a"), Some("b")]),
            fingerprint(&[Some("ab"), Some("")])
        );
    }
}
