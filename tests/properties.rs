//! Property tests (proptest) for the parsers that read what users and other tools wrote:
//!
//! * `dagger.lock`: a rewrite is exactly what Dagger's writer (Go `json.Marshal`) writes. Messy
//!   files (escapes of every kind, `<>&`, U+2028, non-ASCII, objects with unsorted and repeated
//!   keys, number spellings, duplicate and unsorted entries, blank lines, CRLF, version 1
//!   policies, comment blocks) rewrite to an independent oracle's bytes, pass the writer's
//!   rules checked on the bytes alone, and rewrite stably.
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
use modstate::lockfile::{Json, Key, Lockfile, Notice};

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
//
// Entries are generated as a model (what Go decodes), then spelled messily (escapes chosen per
// character, spaces, object keys out of order and repeated, entries unsorted and repeated,
// blank lines, CRLF, version 1 policies). The expected file is computed from the model by an
// independent oracle written from the rules of Dagger's writer; the rewrite must equal it, be
// stable, and pass the rule checks below on its own bytes.

/// What Go decodes a JSON value into.
#[derive(Clone, Debug)]
enum Model {
    Null,
    Bool(bool),
    /// A json.Number: its spelling.
    Number(String),
    Str(String),
    Array(Vec<Model>),
    /// Members in the order written, duplicates included.
    Object(Vec<(String, Model)>),
}

/// JSON number spellings that must survive: fractions with trailing zeros, exponents in
/// either case with or without a sign, `-0`, magnitudes past u64.
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

/// Text rich in what Go escapes or keeps: `<>&`, U+2028/9, quotes, backslashes, control
/// characters, `/`, accents, astral characters.
fn text() -> impl Strategy<Value = String> {
    let special = prop_oneof![
        Just('<'),
        Just('>'),
        Just('&'),
        Just('\u{2028}'),
        Just('\u{2029}'),
        Just('"'),
        Just('\\'),
        Just('/'),
        Just('\n'),
        Just('\r'),
        Just('\t'),
        Just('\u{8}'),
        Just('\u{c}'),
        Just('\u{0}'),
        Just('\u{1f}'),
        Just('\u{7f}'),
        Just('é'),
        Just('😀'),
        Just('\u{FFFD}'),
    ];
    prop::collection::vec(
        prop_oneof![3 => "[a-c .:]", 2 => special.prop_map(String::from)],
        0..6,
    )
    .prop_map(|parts| parts.concat())
}

fn scalar() -> impl Strategy<Value = Model> {
    prop_oneof![
        4 => text().prop_map(Model::Str),
        3 => number().prop_map(Model::Number),
        1 => any::<bool>().prop_map(Model::Bool),
        1 => Just(Model::Null),
    ]
}

/// Lookup inputs: arrays of scalars and nested arrays (option pairs), never an object.
fn inputs() -> impl Strategy<Value = Vec<Model>> {
    let nested = scalar().prop_recursive(3, 16, 3, |inner| {
        prop::collection::vec(inner, 0..3).prop_map(Model::Array)
    });
    prop::collection::vec(nested, 0..3)
}

/// Pinned values: any JSON, objects with unsorted and repeated keys included.
fn value() -> impl Strategy<Value = Model> {
    let key = prop_oneof![
        Just("a".to_owned()),
        Just("B".to_owned()),
        Just("é".to_owned()),
        text()
    ];
    scalar().prop_recursive(3, 16, 3, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Model::Array),
            prop::collection::vec((key.clone(), inner), 0..4).prop_map(Model::Object),
        ]
    })
}

type EntryModel = (String, String, Vec<Model>, Model);

/// Entries from a small pool of names, so keys repeat.
fn entries() -> impl Strategy<Value = Vec<EntryModel>> {
    let name = prop_oneof![Just(String::new()), Just("git-sha".to_owned()), text()];
    prop::collection::vec((name.clone(), name, inputs(), value()), 0..7)
}

/// A tiny deterministic generator for spelling choices (proptest shrinks the seed).
struct Choices(u64);

impl Choices {
    fn pick(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// One of the many ways to spell `s` as a JSON string.
fn spell_string(s: &str, c: &mut Choices) -> String {
    let mut out = String::from("\"");
    for ch in s.chars() {
        let escaped = |ch: char| -> String {
            let mut units = [0u16; 2];
            ch.encode_utf16(&mut units)
                .iter()
                .map(|u| format!("\\u{u:04X}"))
                .collect()
        };
        let short = match ch {
            '"' => Some("\\\""),
            '\\' => Some("\\\\"),
            '/' => Some("\\/"),
            '\n' => Some("\\n"),
            '\r' => Some("\\r"),
            '\t' => Some("\\t"),
            '\u{8}' => Some("\\b"),
            '\u{c}' => Some("\\f"),
            _ => None,
        };
        let raw_ok = !matches!(ch, '"' | '\\') && ch >= ' ';
        match (c.pick(3), short) {
            (0, Some(short)) => out.push_str(short),
            (1, _) if raw_ok => out.push(ch),
            (_, None) if raw_ok && c.pick(2) == 0 => out.push(ch),
            _ => {
                let e = escaped(ch);
                out.push_str(&if c.pick(2) == 0 {
                    e.to_lowercase().replace("\\U", "\\u")
                } else {
                    e
                });
            }
        }
    }
    out.push('"');
    out
}

fn space(c: &mut Choices) -> &'static str {
    [" ", "", "", "\t", "  "][c.pick(5) as usize]
}

/// One messy spelling of a value.
fn spell(m: &Model, c: &mut Choices) -> String {
    match m {
        Model::Null => "null".into(),
        Model::Bool(b) => b.to_string(),
        Model::Number(n) => n.clone(),
        Model::Str(s) => spell_string(s, c),
        Model::Array(items) => {
            let items: Vec<String> = items.iter().map(|i| spell(i, c)).collect();
            format!(
                "[{}{}]",
                space(c),
                items.join(&format!("{},{}", space(c), space(c)))
            )
        }
        Model::Object(members) => {
            let members: Vec<String> = members
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{}{}:{}{}",
                        spell_string(k, c),
                        space(c),
                        space(c),
                        spell(v, c)
                    )
                })
                .collect();
            format!("{{{}{}}}", space(c), members.join(", "))
        }
    }
}

/// The oracle: Go's `json.Marshal` of a string, written from its rules.
fn go_string(s: &str) -> String {
    let mut out = String::from("\"");
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", ch as u32))
            }
            ch if ch < ' ' => out.push_str(&format!("\\u{:04x}", ch as u32)),
            ch => out.push(ch),
        }
    }
    out.push('"');
    out
}

/// The oracle: Go's `json.Marshal` of what it decoded.
fn go_marshal(m: &Model) -> String {
    match m {
        Model::Null => "null".into(),
        Model::Bool(b) => b.to_string(),
        Model::Number(n) => n.clone(),
        Model::Str(s) => go_string(s),
        Model::Array(items) => format!(
            "[{}]",
            items.iter().map(go_marshal).collect::<Vec<_>>().join(",")
        ),
        Model::Object(members) => {
            // A map: the last duplicate wins; keys sorted by their bytes.
            let map: std::collections::BTreeMap<&String, &Model> =
                members.iter().map(|(k, v)| (k, v)).collect();
            let body: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{}:{}", go_string(k), go_marshal(v)))
                .collect();
            format!("{{{}}}", body.join(","))
        }
    }
}

/// The oracle: the whole file Dagger writes for these entries under `comments`.
fn expected_file(comments: &str, entries: &[EntryModel]) -> String {
    let mut map = std::collections::BTreeMap::new();
    for (ns, op, inputs, value) in entries {
        let inputs = go_marshal(&Model::Array(inputs.clone()));
        map.insert((ns.clone(), op.clone(), inputs), go_marshal(value));
    }
    let mut out = comments.to_owned();
    if !map.is_empty() {
        out.push_str("[[\"version\",\"2\"]]");
        for ((ns, op, inputs), value) in map {
            out.push_str(&format!(
                "\n[{},{},{inputs},{value}]",
                go_string(&ns),
                go_string(&op)
            ));
        }
    }
    out
}

/// Rules checked on the written bytes alone (no oracle): a header then entries, sorted,
/// unique, four elements each, nothing Go would have escaped left raw, no trailing newline.
fn check_rules(written: &str, comments: &str) -> Result<(), TestCaseError> {
    let body = written
        .strip_prefix(comments)
        .ok_or_else(|| TestCaseError::fail("comment block lost"))?;
    if body.is_empty() {
        return Ok(());
    }
    prop_assert!(!body.ends_with('\n'), "trailing newline");
    let mut lines = body.split('\n');
    prop_assert_eq!(lines.next(), Some(r#"[["version","2"]]"#));
    let mut previous: Option<(String, String, String)> = None;
    for line in lines {
        for forbidden in ['<', '>', '&', '\u{2028}', '\u{2029}', '\r', '\t'] {
            prop_assert!(!line.contains(forbidden), "raw {forbidden:?} in {line}");
        }
        prop_assert!(
            !line.chars().any(|c| c < ' '),
            "raw control character in {line:?}"
        );
        // Escapes are only Go's: no `\/`, and `\u` only where Go writes it.
        let chars: Vec<char> = line.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            if chars[i] == '\\' {
                let next = chars.get(i + 1).copied().unwrap_or(' ');
                prop_assert!("\"\\bfnrtu".contains(next), "escape \\{next} in {line}");
                if next == 'u' {
                    let hex: String = chars[i + 2..i + 6].iter().collect();
                    let code = u32::from_str_radix(&hex, 16).unwrap();
                    let allowed = matches!(code, 0x3c | 0x3e | 0x26 | 0x2028 | 0x2029)
                        || (code < 0x20 && ![0x8, 0x9, 0xa, 0xc, 0xd].contains(&code));
                    prop_assert!(allowed && hex == hex.to_lowercase(), "\\u{hex} in {line}");
                    i += 4;
                }
                i += 2;
            } else {
                i += 1;
            }
        }
        let parts: Vec<Value> =
            serde_json::from_str(line).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(parts.len(), 4);
        let inputs_text = {
            let raw: Vec<&serde_json::value::RawValue> = serde_json::from_str(line).unwrap();
            raw[2].get().to_owned()
        };
        let key = (
            parts[0].as_str().unwrap_or_default().to_owned(),
            parts[1].as_str().unwrap_or_default().to_owned(),
            inputs_text,
        );
        if let Some(previous) = &previous {
            prop_assert!(
                previous < &key,
                "not sorted or not unique: {previous:?} then {key:?}"
            );
        }
        previous = Some(key);
    }
    Ok(())
}

/// Comment blocks above the header: `#` lines, blank lines between them.
fn comments() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(
        prop_oneof![4 => "#[^\r\n]{0,20}", 1 => Just(String::new())],
        0..4,
    )
}

proptest! {
    #![proptest_config(config(256))]

    /// A messy file rewrites to exactly the oracle's bytes, follows the rules on its own,
    /// rewrites stably, and reads back as the same lockfile; the notices say what collapsed.
    #[test]
    fn lockfile_rewrite_is_daggers_bytes_and_stable(
        comment_lines in comments(),
        entries in entries(),
        repeat in prop::collection::vec(any::<prop::sample::Index>(), 0..3),
        crlf in any::<bool>(),
        v1 in any::<bool>(),
        blank_lines in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let mut c = Choices(seed);
        let eol = if crlf { "\r\n" } else { "\n" };
        // Repeat some entries (respelled, another value), and write them in an order that is
        // not sorted. The oracle reads them in written order: the last one wins.
        let mut written_entries = entries.clone();
        for index in &repeat {
            if !entries.is_empty() {
                let (ns, op, inputs, _) = index.get(&entries).clone();
                written_entries.push((ns, op, inputs, Model::Number(c.pick(1000).to_string())));
            }
        }
        if c.pick(2) == 0 {
            written_entries.reverse();
        }
        let mut text = String::new();
        let mut block = String::new();
        let last_comment = comment_lines.iter().rposition(|l| l.starts_with('#'));
        for (i, line) in comment_lines.iter().enumerate() {
            text.push_str(line);
            text.push_str(eol);
            if last_comment.is_some_and(|last| i <= last) {
                block.push_str(line);
                block.push_str(eol);
            }
        }
        text.push_str(if v1 { " [ [\"version\", \"1\"] ] " } else { "[[\"version\",\"2\"]]" });
        text.push_str(eol);
        for (ns, op, inputs, value) in &written_entries {
            if blank_lines {
                text.push_str(eol);
            }
            let policy = if v1 { [", \"pin\"", ",\"float\""][c.pick(2) as usize] } else { "" };
            text.push_str(&format!(
                "{}[{},{}{}, {} ,{}{policy}]{}{eol}",
                space(&mut c),
                spell_string(ns, &mut c),
                space(&mut c),
                spell_string(op, &mut c),
                spell(&Model::Array(inputs.clone()), &mut c),
                spell(value, &mut c),
                space(&mut c),
            ));
        }
        let parsed = Lockfile::parse(text.as_bytes(), "prop.lock").unwrap();
        let first = parsed.to_text();
        prop_assert_eq!(&first, &expected_file(&block, &written_entries));
        check_rules(&first, &block)?;
        let again = Lockfile::parse(first.as_bytes(), "prop.lock").unwrap();
        prop_assert_eq!(again.to_text(), first.clone());
        prop_assert_eq!(&again, &parsed);
        prop_assert!(again.notices().is_empty());
        // Notices: a duplicate named for each repeated key; the policies counted.
        let duplicates = parsed.notices().iter().filter(|n| matches!(n, Notice::DuplicateEntry { .. })).count();
        prop_assert_eq!(duplicates > 0, written_entries.len() > parsed.len());
        let policies = parsed.notices().iter().find_map(|n| match n {
            Notice::PoliciesDropped { entries, .. } => Some(*entries),
            _ => None,
        });
        prop_assert_eq!(policies, (v1 && !written_entries.is_empty()).then_some(written_entries.len()));
    }

    /// Lockfiles built through the public API write the oracle's bytes and read back equal.
    #[test]
    fn lockfile_built_through_the_api_round_trips(entries in entries()) {
        let mut lockfile = Lockfile::new();
        for (ns, op, inputs, value) in &entries {
            let inputs = Json::parse(spell(&Model::Array(inputs.clone()), &mut Choices(7))).unwrap();
            let key = Key::new(ns.clone(), op.clone(), inputs).unwrap();
            lockfile.set(key, Json::parse(go_marshal(value)).unwrap());
        }
        let text = lockfile.to_text();
        prop_assert_eq!(&text, &expected_file("", &entries));
        let parsed = Lockfile::parse(text.as_bytes(), "prop.lock").unwrap();
        prop_assert_eq!(&parsed, &lockfile);
        prop_assert_eq!(parsed.to_text(), text);
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
            prop_assert_eq!(again.to_text(), canonical.clone());
            prop_assert_eq!(&again, &lockfile);
            prop_assert!(again.notices().is_empty());
            // A trailing newline only ever comes from a comment block with no entries below.
            prop_assert!(!canonical.ends_with('\n') || lockfile.is_empty());
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
