//! Property tests (proptest) for the parsers that read what users and other tools wrote:
//!
//! * `dagger.lock`: writing is canonical and stable. For any lockfile built through the public
//!   API (keys with nested-array inputs, values whose numbers and strings keep odd spellings,
//!   comment lines), `parse(write(x)) == x` and `write(parse(write(x)))` is the same bytes;
//!   and any well-formed but messy text (extra whitespace, unsorted, duplicated keys) settles
//!   after one rewrite.
//! * the artifact file reader never panics and answers one of its outcomes consistently, on
//!   arbitrary bytes, on mutations of `fixtures/moduletypes/valid.json`, and on JSON that has
//!   the right keys with the wrong kinds of values.
//!
//! Case counts keep the file well under 30 s in a debug build; `PROPTEST_CASES` raises them.

use std::path::Path;
use std::sync::OnceLock;

use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::Value;

use modstate::Digest;
use modstate::artifact::file::{Outcome, parse_artifact_file};
use modstate::lockfile::{Json, Key, Lockfile};

fn config(cases: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(cases);
    Config {
        cases,
        ..Config::default()
    }
}

// ---------------------------------------------------------------------------------------------
// dagger.lock

/// JSON number spellings a tool may write and a rewrite must keep: leading minus, fractions
/// with trailing zeros, exponents in either case with or without a sign, huge magnitudes.
fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        "-?(0|[1-9][0-9]{0,20})(\\.[0-9]{1,6})?([eE][+-]?[0-9]{1,4})?",
        Just("-0".to_owned()),
        Just("1E5".to_owned()),
        Just("1.50".to_owned()),
        Just("0.0e-0".to_owned()),
        Just("18446744073709551616".to_owned()),
    ]
}

/// JSON string spellings, escapes included: `\u0061` and `a` are one value, two spellings.
fn string() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>().prop_map(|s| Value::String(s).to_string()),
        r#""([a-zA-Z0-9 .:/@_-]|\\u00[2-7][0-9a-f]|\\u00e9|\\[nrtbf"\\/])*""#,
    ]
}

fn scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => string(),
        3 => number(),
        1 => Just("true".to_owned()),
        1 => Just("false".to_owned()),
        1 => Just("null".to_owned()),
    ]
}

/// `[…]` of `items`, with optional spaces that a parse compacts away.
fn array_of(items: Vec<String>, spaced: bool) -> String {
    let sep = if spaced { " , " } else { "," };
    if spaced {
        format!("[ {} ]", items.join(sep))
    } else {
        format!("[{}]", items.join(sep))
    }
}

/// Lookup inputs: arrays of scalars and nested arrays, never an object.
fn inputs() -> impl Strategy<Value = String> {
    let leaf = scalar();
    let nested = leaf.prop_recursive(3, 24, 4, |inner| {
        (prop::collection::vec(inner, 0..4), any::<bool>())
            .prop_map(|(items, spaced)| array_of(items, spaced))
    });
    (prop::collection::vec(nested, 0..4), any::<bool>())
        .prop_map(|(items, spaced)| array_of(items, spaced))
}

/// Pinned values: any JSON, objects (even with repeated keys) included.
fn value() -> impl Strategy<Value = String> {
    scalar().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            (prop::collection::vec(inner.clone(), 0..4), any::<bool>())
                .prop_map(|(items, spaced)| array_of(items, spaced)),
            prop::collection::vec((string(), inner), 0..4).prop_map(|fields| {
                let body: Vec<String> = fields.iter().map(|(k, v)| format!("{k} : {v}")).collect();
                format!("{{{}}}", body.join(", "))
            }),
        ]
    })
}

/// Comment lines above the header: `#…` or blank.
fn comments() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(
        prop_oneof![
            4 => "#[^\r\n]{0,40}",
            1 => "[ \t]{0,3}",
        ],
        0..4,
    )
}

type EntrySpec = (String, String, String, String);

fn entries() -> impl Strategy<Value = Vec<EntrySpec>> {
    let name = prop_oneof![Just(String::new()), "[a-z-]{1,12}", any::<String>(),];
    prop::collection::vec((name.clone(), name, inputs(), value()), 0..8)
}

/// A lockfile built through the public API only.
fn build(comments: Vec<String>, entries: &[EntrySpec]) -> Lockfile {
    let mut lockfile = Lockfile::new();
    lockfile.set_comments(comments).unwrap();
    for (namespace, operation, inputs, value) in entries {
        let inputs = Json::parse(inputs).unwrap();
        let key = Key::new(namespace.clone(), operation.clone(), inputs).unwrap();
        lockfile.set(key, Json::parse(value).unwrap());
    }
    lockfile
}

proptest! {
    #![proptest_config(config(256))]

    /// write∘parse is the identity on canonical text, and parse recovers the lockfile.
    #[test]
    fn lockfile_canonical_text_round_trips(comments in comments(), entries in entries()) {
        let lockfile = build(comments, &entries);
        let text = lockfile.to_text();
        let parsed = Lockfile::parse(text.as_bytes(), "prop.lock").unwrap();
        prop_assert_eq!(&parsed, &lockfile);
        prop_assert_eq!(parsed.to_text(), text);
    }

    /// Messy but well-formed text (spaces everywhere, any order, repeated keys, CRLF, a
    /// version 1 policy) settles after one rewrite: parse(write(parse(t))) writes the same.
    #[test]
    fn lockfile_rewrite_is_canonical(
        comments in comments(),
        entries in entries(),
        crlf in any::<bool>(),
        v1 in any::<bool>(),
        blank_lines in any::<bool>(),
    ) {
        let eol = if crlf { "\r\n" } else { "\n" };
        let mut text = String::new();
        for line in &comments {
            text.push_str(line);
            text.push_str(eol);
        }
        text.push_str(if v1 { r#"[ ["version", "1"] ]"# } else { r#"[["version","2"]]"# });
        text.push_str(eol);
        for (namespace, operation, inputs, value) in entries.iter().rev() {
            if blank_lines {
                text.push_str(eol);
            }
            let policy = if v1 { r#", "pin""# } else { "" };
            text.push_str(&format!(
                " [ {} , {} , {inputs} , {value}{policy} ] {eol}",
                Value::from(namespace.as_str()),
                Value::from(operation.as_str())
            ));
        }
        let first = Lockfile::parse(text.as_bytes(), "prop.lock").unwrap().to_text();
        let second = Lockfile::parse(first.as_bytes(), "prop.lock").unwrap();
        prop_assert_eq!(second.to_text(), first);
    }

    /// Arbitrary bytes never panic the lockfile parser, and whatever it accepts (here: raw
    /// lines above the header, any bytes after it) rewrites stably.
    #[test]
    fn lockfile_parse_never_panics(
        above in prop::collection::vec("#[^\n]{0,8}|[ \t\r]{0,3}", 0..4),
        bytes in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        let _ = Lockfile::parse(&bytes, "prop.lock");
        let mut text = Vec::new();
        for line in &above {
            text.extend(line.as_bytes());
            text.push(b'\n');
        }
        text.extend(br#"[["version","2"]]"#);
        text.push(b'\n');
        text.extend(&bytes);
        if let Ok(lockfile) = Lockfile::parse(&text, "prop.lock") {
            let canonical = lockfile.to_text();
            let again = Lockfile::parse(canonical.as_bytes(), "prop.lock").unwrap();
            prop_assert_eq!(again.to_text(), canonical);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The artifact file reader.

/// The digest `fixtures/moduletypes/valid.json` is for.
const VALID_DIGEST: &str =
    "sha256:721e3d1485011d4fe4bb939e608c6036d91442db94818655bd6ee65f29af63f6";

fn valid_fixture() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/moduletypes/valid.json"))
            .unwrap()
    })
}

fn expected_digest() -> impl Strategy<Value = Digest> {
    prop_oneof![
        3 => Just(Digest::parse(VALID_DIGEST).unwrap()),
        1 => any::<[u8; 8]>().prop_map(|seed| Digest::of(&seed)),
    ]
}

/// Classifies `bytes` and checks the answer against what the bytes say: `Missing` is only for
/// absent files; `Loaded` and `Stale` need a well-formed file naming a valid digest (equal to
/// the expected one, or not); anything that is not JSON is `Malformed`.
fn check_outcome(bytes: &[u8], expected: &Digest) -> Result<(), TestCaseError> {
    let outcome = parse_artifact_file(bytes, expected);
    let doc: Option<Value> = serde_json::from_slice(bytes).ok();
    let named = doc
        .as_ref()
        .and_then(|d| d.get("moduleSourceDigest"))
        .and_then(Value::as_str)
        .and_then(|s| Digest::parse(s).ok());
    match &outcome {
        Outcome::Missing => prop_assert!(false, "parse answered Missing for bytes"),
        Outcome::Loaded(envelope) => {
            prop_assert_eq!(named.as_ref(), Some(expected));
            let doc = doc.as_ref().unwrap();
            prop_assert_eq!(doc["artifactVersion"].as_u64(), Some(1));
            prop_assert_eq!(envelope.state_type(), "Module");
            prop_assert_eq!(envelope.state_version(), 1);
            let state: Value = serde_json::from_slice(envelope.as_bytes()).unwrap();
            prop_assert_eq!(&state, &doc["state"]);
        }
        Outcome::Stale { found } => {
            prop_assert!(named.is_some());
            prop_assert_ne!(named.as_ref(), Some(expected));
            prop_assert_eq!(Some(found.as_str()), named.as_ref().map(Digest::as_str));
        }
        Outcome::Malformed(reason) | Outcome::Unsupported(reason) => {
            prop_assert!(!reason.is_empty());
            if matches!(outcome, Outcome::Unsupported(_)) {
                prop_assert!(doc.is_some(), "Unsupported for bytes that are not JSON");
            }
        }
    }
    if doc.is_none() {
        prop_assert!(matches!(outcome, Outcome::Malformed(_)), "{outcome:?}");
    }
    Ok(())
}

/// One edit of a byte string: flip, overwrite, insert, delete, duplicate or cut.
#[derive(Clone, Debug)]
enum Mutation {
    Flip { at: usize, bit: u8 },
    Set { at: usize, byte: u8 },
    Insert { at: usize, bytes: Vec<u8> },
    Delete { at: usize, len: usize },
    Duplicate { at: usize, len: usize },
    Truncate { at: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let at = any::<usize>();
    prop_oneof![
        (at, 0..8u8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        (
            at,
            prop_oneof![
                any::<u8>(),
                prop::sample::select(b"{}[]\",:0123456789-+.eE \\ntfu".to_vec())
            ]
        )
            .prop_map(|(at, byte)| Mutation::Set { at, byte }),
        (
            at,
            prop_oneof![
                prop::collection::vec(any::<u8>(), 1..8),
                prop::sample::select(vec![
                    b"\"".to_vec(),
                    b",".to_vec(),
                    b"{".to_vec(),
                    b"]".to_vec(),
                    b"null".to_vec(),
                    b"1e999".to_vec(),
                    b"\\u0000".to_vec(),
                    b"\xff".to_vec(),
                    b"\0".to_vec(),
                    b"-0.0".to_vec(),
                    b"18446744073709551616".to_vec(),
                ]),
            ]
        )
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        (at, 1..64usize).prop_map(|(at, len)| Mutation::Delete { at, len }),
        (at, 1..64usize).prop_map(|(at, len)| Mutation::Duplicate { at, len }),
        at.prop_map(|at| Mutation::Truncate { at }),
    ]
}

fn apply(bytes: &mut Vec<u8>, mutation: &Mutation) {
    let pick = |at: usize, len: usize| if len == 0 { 0 } else { at % (len + 1) };
    match mutation {
        Mutation::Flip { at, bit } if !bytes.is_empty() => {
            let i = at % bytes.len();
            bytes[i] ^= 1 << bit;
        }
        Mutation::Set { at, byte } if !bytes.is_empty() => {
            let i = at % bytes.len();
            bytes[i] = *byte;
        }
        Mutation::Insert { at, bytes: new } => {
            let i = pick(*at, bytes.len());
            bytes.splice(i..i, new.iter().copied());
        }
        Mutation::Delete { at, len } => {
            let i = pick(*at, bytes.len());
            let end = (i + len).min(bytes.len());
            bytes.drain(i..end);
        }
        Mutation::Duplicate { at, len } => {
            let i = pick(*at, bytes.len());
            let end = (i + len).min(bytes.len());
            let copy = bytes[i..end].to_vec();
            bytes.splice(end..end, copy);
        }
        Mutation::Truncate { at } => {
            let i = pick(*at, bytes.len());
            bytes.truncate(i);
        }
        _ => {}
    }
}

/// JSON with the artifact file's keys but any kind of value in each, sometimes right.
fn shaped_json() -> impl Strategy<Value = Value> {
    let any_value = || {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            prop_oneof![
                Just("Module".to_owned()),
                Just(VALID_DIGEST.to_owned()),
                ".{0,12}"
            ]
            .prop_map(Value::from),
        ];
        leaf.prop_recursive(2, 12, 3, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
                prop::collection::btree_map(".{0,6}", inner, 0..3)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    };
    // Mostly right, often a near miss (another version, a float, a string), sometimes
    // anything, sometimes absent.
    let field = |right: Value, near: Vec<Value>| {
        prop_oneof![
            6 => Just(Some(right)),
            3 => prop::sample::select(near).prop_map(Some),
            1 => any_value().prop_map(Some),
            1 => Just(None),
        ]
    };
    let json = |text: &str| serde_json::from_str::<Value>(text).unwrap();
    let versions = || {
        [
            "0",
            "2",
            "1.0",
            "-1",
            "1e0",
            "\"1\"",
            "18446744073709551617",
        ]
        .map(json)
        .to_vec()
    };
    (
        field(json("1"), versions()),
        field(
            Value::from(VALID_DIGEST),
            vec![
                Value::from(Digest::of(b"other").as_str()),
                Value::from(VALID_DIGEST.to_uppercase()),
                Value::from(&VALID_DIGEST[..70]),
            ],
        ),
        field(
            Value::from("Module"),
            vec![
                Value::from("module"),
                Value::from("Object"),
                Value::from(""),
            ],
        ),
        field(json("1"), versions()),
        field(
            serde_json::json!({"name": "m", "objects": []}),
            vec![serde_json::json!({}), serde_json::json!([]), Value::Null],
        ),
    )
        .prop_map(|(artifact_version, digest, state_type, version, inner)| {
            let mut state = serde_json::Map::new();
            let mut file = serde_json::Map::new();
            let put = |map: &mut serde_json::Map<String, Value>, key: &str, v: Option<Value>| {
                if let Some(v) = v {
                    map.insert(key.to_owned(), v);
                }
            };
            put(&mut state, "type", state_type);
            put(&mut state, "version", version);
            put(&mut state, "state", inner);
            put(&mut file, "artifactVersion", artifact_version);
            put(&mut file, "moduleSourceDigest", digest);
            file.insert("state".to_owned(), Value::Object(state));
            Value::Object(file)
        })
}

#[test]
fn artifact_valid_fixture_loads() {
    let outcome = parse_artifact_file(valid_fixture(), &Digest::parse(VALID_DIGEST).unwrap());
    assert!(matches!(outcome, Outcome::Loaded(_)), "{outcome:?}");
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn artifact_reader_answers_on_any_bytes(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
        expected in expected_digest(),
    ) {
        check_outcome(&bytes, &expected)?;
    }

    #[test]
    fn artifact_reader_answers_on_mutated_fixture(
        mutations in prop::collection::vec(mutation(), 1..6),
        expected in expected_digest(),
    ) {
        let mut bytes = valid_fixture().to_vec();
        for m in &mutations {
            apply(&mut bytes, m);
        }
        check_outcome(&bytes, &expected)?;
    }

    #[test]
    fn artifact_reader_answers_on_wrongly_typed_fields(
        doc in shaped_json(),
        pretty in any::<bool>(),
        expected in expected_digest(),
    ) {
        let bytes = if pretty {
            serde_json::to_vec_pretty(&doc).unwrap()
        } else {
            serde_json::to_vec(&doc).unwrap()
        };
        check_outcome(&bytes, &expected)?;
    }
}

// ---------------------------------------------------------------------------------------------
// Memory search

/// One store shared by the cases: a few memories with words, punctuation and accents.
fn memory_store() -> &'static (tempfile::TempDir, modstate::Store) {
    static STORE: OnceLock<(tempfile::TempDir, modstate::Store)> = OnceLock::new();
    STORE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let store =
            modstate::Store::open(dir.path().join("state.db"), modstate::Options::default())
                .unwrap();
        for body in [
            "The user prefers Rust for CLI tools",
            "Deploys run on Fridays; never on holidays (see NEAR-miss report)",
            "café crème: \"quoted\" AND unquoted OR nothing * ^ - : %_",
        ] {
            store.add_memory("", body, "note").unwrap();
        }
        (dir, store)
    })
}

/// Text users type, biased toward FTS5 syntax characters and operator words.
fn query_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        prop::collection::vec(
            prop_oneof![
                Just("\"".to_owned()),
                Just("*".to_owned()),
                Just("-".to_owned()),
                Just(":".to_owned()),
                Just("^".to_owned()),
                Just("(".to_owned()),
                Just(")".to_owned()),
                Just("%".to_owned()),
                Just("_".to_owned()),
                Just("NEAR".to_owned()),
                Just("AND".to_owned()),
                Just("OR".to_owned()),
                Just("NOT".to_owned()),
                Just(" ".to_owned()),
                Just("\0".to_owned()),
                "[a-zA-Zé0-9]{1,8}",
            ],
            0..12,
        )
        .prop_map(|parts| parts.concat()),
    ]
}

proptest! {
    #![proptest_config(config(256))]

    /// Search never errors, whatever the query and category text.
    #[test]
    fn memory_search_never_errors(query in query_text(), category in prop::option::of(query_text())) {
        let (_, store) = memory_store();
        let filter = modstate::MemoryFilter { category, ..modstate::MemoryFilter::default() };
        let hits = store.search_memories(&query, &filter);
        prop_assert!(hits.is_ok(), "{query:?}: {:?}", hits.err());
    }
}
