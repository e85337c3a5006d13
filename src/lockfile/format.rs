//! The `dagger.lock` file format (JSON Lines):
//!
//! ```text
//! # optional comment lines, kept as they are
//! [["version","2"]]
//! ["","git-sha",["github.com/dagger/go","refs/heads/main"],"268add4d…"]
//! ```
//!
//! Each entry is `[namespace, operation, inputs, value]`: two strings, an array of inputs
//! (scalars and nested arrays; an object anywhere inside is refused, because its key order
//! would make the same lookup spell two ways) and any JSON value. Version 1 entries may carry
//! a fifth element, a policy string, which is dropped when the file is rewritten as version 2.
//! Blank lines after the header are skipped; comments there are refused, since they could not
//! be kept in place once entries are sorted.
//!
//! Written form: comments, header, then entries sorted by namespace, operation and the compact
//! JSON of the inputs, one compact line each with `\n` endings. Values and inputs keep their
//! spelling (see [`Json`]), so a file another tool wrote in this form rewrites byte for byte.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde_json::Value;
use serde_json::value::RawValue;

use super::json::Json;
use crate::error::{Error, Result};

/// The format version this binary writes.
pub const VERSION: &str = "2";
/// The versions this binary reads.
const READABLE: &[&str] = &["1", "2"];
/// The header line written at the top of every file (after any comments).
pub const HEADER: &str = r#"[["version","2"]]"#;

/// One lookup: which namespace and operation, with which inputs.
///
/// Identity and order are the namespace, the operation and the *canonical* compact JSON of
/// the inputs, so `["a"]` and `["\u0061"]` are one key; the spelling last written wins.
#[derive(Clone, Debug)]
pub struct Key {
    namespace: String,
    operation: String,
    inputs: Json,
    canonical_inputs: String,
    /// `"namespace","operation",inputs` as written: the front of the entry's line.
    text: String,
}

impl Key {
    /// A key from its parts; `inputs` must be an array with no object anywhere inside.
    pub fn new(
        namespace: impl Into<String>,
        operation: impl Into<String>,
        inputs: impl Into<Json>,
    ) -> Result<Key> {
        let (namespace, operation, inputs) = (namespace.into(), operation.into(), inputs.into());
        check_inputs(inputs.value())
            .map_err(|why| Error::Invalid(format!("inputs {inputs} {why}")))?;
        let text = format!(
            "{},{},{inputs}",
            Value::from(namespace.as_str()),
            Value::from(operation.as_str())
        );
        Ok(Key::assemble(namespace, operation, inputs, text))
    }

    fn assemble(namespace: String, operation: String, inputs: Json, text: String) -> Key {
        let canonical_inputs = inputs.value().to_string();
        Key {
            namespace,
            operation,
            inputs,
            canonical_inputs,
            text,
        }
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn operation(&self) -> &str {
        &self.operation
    }

    pub fn inputs(&self) -> &Json {
        &self.inputs
    }

    /// `"namespace","operation",inputs` as written in the file.
    pub fn text(&self) -> &str {
        &self.text
    }

    fn order(&self) -> (&str, &str, &str) {
        (&self.namespace, &self.operation, &self.canonical_inputs)
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.order() == other.order()
    }
}

impl Eq for Key {}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Key {
    fn cmp(&self, other: &Self) -> Ordering {
        self.order().cmp(&other.order())
    }
}

/// The contents of one `dagger.lock`: leading comment lines and the entries.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Lockfile {
    comments: Vec<String>,
    entries: BTreeMap<Key, Json>,
}

impl Lockfile {
    /// An empty lockfile: no comments, no entries.
    pub fn new() -> Lockfile {
        Lockfile::default()
    }

    /// Parses a file's bytes. `origin` names the file in error messages.
    ///
    /// An empty (or all-whitespace) input is an empty lockfile. Malformed input is `Invalid` naming the line; a
    /// version other than 1 or 2 is `Unsupported`.
    pub fn parse(bytes: &[u8], origin: &str) -> Result<Lockfile> {
        let mut lockfile = Lockfile::new();
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(lockfile);
        }
        let text = std::str::from_utf8(bytes).map_err(|e| {
            let line = 1 + bytes[..e.valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            invalid(origin, line, "is not valid UTF-8".into())
        })?;
        let text = text.strip_suffix('\n').unwrap_or(text);
        let mut version = None;
        for (index, line) in text.split('\n').enumerate() {
            let number = index + 1;
            // Every trailing CR is line ending, not content: a comment kept with one would be
            // written back as a CRLF line and read the next time without it.
            let line = line.trim_end_matches('\r');
            let blank = line.trim().is_empty();
            match version {
                None if blank || line.starts_with('#') => lockfile.comments.push(line.to_owned()),
                None => version = Some(parse_header(line, origin, number)?),
                Some(_) if blank => {}
                Some(_) if line.starts_with('#') => {
                    return Err(invalid(
                        origin,
                        number,
                        "is a comment after the header; comments are only kept at the top of the file — move it there".into(),
                    ));
                }
                Some(v) => {
                    let (key, value) = parse_entry(line, v, origin, number)?;
                    lockfile.set(key, value);
                }
            }
        }
        if version.is_none() {
            let line = text.split('\n').count();
            return Err(invalid(
                origin,
                line,
                format!("ends without the header line {HEADER}; add it after the comments"),
            ));
        }
        Ok(lockfile)
    }

    /// The file's canonical text: comments, header, sorted entries, `\n` endings.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for line in &self.comments {
            out.push_str(line);
            out.push('\n');
        }
        out.push_str(HEADER);
        out.push('\n');
        for (key, value) in &self.entries {
            out.push_str(&entry_line(key, value));
            out.push('\n');
        }
        out
    }

    pub fn get(&self, key: &Key) -> Option<&Json> {
        self.entries.get(key)
    }

    /// Sets `key` to `value` (the key's spelling too); returns the previous value.
    pub fn set(&mut self, key: Key, value: Json) -> Option<Json> {
        let previous = self.entries.remove(&key);
        self.entries.insert(key, value);
        previous
    }

    pub fn remove(&mut self, key: &Key) -> Option<Json> {
        self.entries.remove(key)
    }

    /// Entries in file order.
    pub fn iter(&self) -> impl Iterator<Item = (&Key, &Json)> {
        self.entries.iter()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The lines above the header (comments and blank lines), without line endings.
    pub fn comments(&self) -> &[String] {
        &self.comments
    }

    /// Replaces the lines above the header. Each must start with `#` or be blank, and none
    /// may contain a line break.
    pub fn set_comments(&mut self, comments: Vec<String>) -> Result<()> {
        for line in &comments {
            if line.contains(['\n', '\r']) || !(line.trim().is_empty() || line.starts_with('#')) {
                return Err(Error::Invalid(format!(
                    "comment line {line:?} must start with '#' and be one line"
                )));
            }
        }
        self.comments = comments;
        Ok(())
    }
}

/// One entry as it is written: `[namespace,operation,inputs,value]`.
pub fn entry_line(key: &Key, value: &Json) -> String {
    format!("[{},{value}]", key.text)
}

fn invalid(origin: &str, line: usize, what: String) -> Error {
    Error::Invalid(format!("{origin}:{line}: {what}"))
}

/// serde_json's message without its " at line 1 column N" tail (every line is line 1 to it).
fn json_error(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let what = text
        .rsplit_once(" at line ")
        .map_or(text.as_str(), |(w, _)| w);
    format!("{what} at column {}", e.column())
}

/// Reads the header line and returns the version it names, if this binary reads it.
///
/// The version is looked at first: a newer writer may shape the rest of its header
/// differently, and that must read as "unsupported", not "malformed".
fn parse_header(line: &str, origin: &str, number: usize) -> Result<&'static str> {
    let expected = || format!("expected the header {HEADER} before any entry");
    let value: Value = serde_json::from_str(line).map_err(|e| {
        invalid(
            origin,
            number,
            format!("{} ({})", expected(), json_error(&e)),
        )
    })?;
    let pairs = value
        .as_array()
        .filter(|items| !items.is_empty() && items.iter().all(Value::is_array))
        .ok_or_else(|| invalid(origin, number, expected()))?;
    let field = |pair: &Value| match pair.as_array().map(Vec::as_slice) {
        Some([Value::String(name), Value::String(val)]) => Some((name.clone(), val.clone())),
        _ => None,
    };
    let versions: Vec<String> = pairs
        .iter()
        .filter_map(field)
        .filter(|(name, _)| name == "version")
        .map(|(_, val)| val)
        .collect();
    if let Some(version) = versions.iter().find(|v| !READABLE.contains(&v.as_str())) {
        return Err(Error::Unsupported(format!(
            "{origin} is lockfile version {version:?}; this modstate reads versions 1 and 2 — upgrade modstate (the file was left untouched)"
        )));
    }
    let mut unknown = Vec::new();
    for pair in pairs {
        match field(pair) {
            None => {
                return Err(invalid(
                    origin,
                    number,
                    format!("header field {pair} is not a [\"name\",\"value\"] pair of strings"),
                ));
            }
            Some((name, _)) if name != "version" => unknown.push(name),
            Some(_) => {}
        }
    }
    let version = match versions.as_slice() {
        [version] => READABLE
            .iter()
            .copied()
            .find(|v| v == version)
            .ok_or_else(|| invalid(origin, number, expected()))?,
        [] => {
            return Err(invalid(
                origin,
                number,
                "header has no version field".into(),
            ));
        }
        _ => {
            return Err(invalid(
                origin,
                number,
                "header names the version twice".into(),
            ));
        }
    };
    if !unknown.is_empty() {
        return Err(Error::Unsupported(format!(
            "{origin}:{number}: header field(s) {} unknown to this modstate; upgrade modstate (the file was left untouched)",
            unknown.join(", ")
        )));
    }
    Ok(version)
}

fn parse_entry(line: &str, version: &str, origin: &str, number: usize) -> Result<(Key, Json)> {
    let shape = if version == "1" {
        "[namespace, operation, inputs, value, policy]"
    } else {
        "[namespace, operation, inputs, value]"
    };
    let parts: Vec<&RawValue> = serde_json::from_str(line).map_err(|e| {
        invalid(
            origin,
            number,
            format!("expected an entry {shape}: {}", json_error(&e)),
        )
    })?;
    let arity_ok = match version {
        "1" => parts.len() == 4 || parts.len() == 5,
        _ => parts.len() == 4,
    };
    if !arity_ok {
        return Err(invalid(
            origin,
            number,
            format!("entry has {} elements; expected {shape}", parts.len()),
        ));
    }
    let string_at = |index: usize, what: &str| -> Result<String> {
        match serde_json::from_str::<Value>(parts[index].get()) {
            Ok(Value::String(s)) => Ok(s),
            _ => Err(invalid(
                origin,
                number,
                format!("{what} {} is not a string", parts[index].get()),
            )),
        }
    };
    let namespace = string_at(0, "namespace")?;
    let operation = string_at(1, "operation")?;
    if parts.len() == 5 {
        string_at(4, "policy")?;
    }
    let parse = |raw: &RawValue| {
        Json::parse(raw.get()).map_err(|e| invalid(origin, number, json_error(&e)))
    };
    let inputs = parse(parts[2])?;
    check_inputs(inputs.value())
        .map_err(|why| invalid(origin, number, format!("inputs {inputs} {why}")))?;
    let value = parse(parts[3])?;
    let text = format!(
        "{},{},{inputs}",
        Json::parse(parts[0].get()).map_err(|e| invalid(origin, number, json_error(&e)))?,
        Json::parse(parts[1].get()).map_err(|e| invalid(origin, number, json_error(&e)))?,
    );
    Ok((Key::assemble(namespace, operation, inputs, text), value))
}

/// Inputs are an array of scalars and nested arrays; says what is wrong otherwise.
fn check_inputs(inputs: &Value) -> std::result::Result<(), String> {
    fn find_object(value: &Value, path: &mut String) -> bool {
        match value {
            Value::Object(_) => true,
            Value::Array(items) => items.iter().enumerate().any(|(i, item)| {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                let found = find_object(item, path);
                if !found {
                    path.truncate(len);
                }
                found
            }),
            _ => false,
        }
    }
    if !inputs.is_array() {
        return Err("are not a JSON array; write them as one, e.g. [\"alpine:3.20\"]".into());
    }
    let mut path = String::new();
    if find_object(inputs, &mut path) {
        return Err(format!(
            "hold a JSON object at {path}; objects are refused in inputs (their key order is not canonical) — use nested [name, value] arrays"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Lockfile> {
        Lockfile::parse(text.as_bytes(), "dagger.lock")
    }

    fn message(text: &str) -> String {
        match parse(text) {
            Err(Error::Invalid(m)) => m,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn round_trips_canonical_text() {
        let text =
            "# c\n\n[[\"version\",\"2\"]]\n[\"\",\"a\",[\"x\",[\"k\",1.50]],{\"z\":1,\"a\":1E5}]\n";
        assert_eq!(parse(text).unwrap().to_text(), text);
    }

    #[test]
    fn sorts_by_compact_inputs() {
        let text = "[[\"version\",\"2\"]]\n[\"\",\"g\",[\"a\"],1]\n[\"\",\"g\",[\"a\", [\"v\",\"1\"]],2]\n";
        assert_eq!(
            parse(text).unwrap().to_text(),
            "[[\"version\",\"2\"]]\n[\"\",\"g\",[\"a\",[\"v\",\"1\"]],2]\n[\"\",\"g\",[\"a\"],1]\n"
        );
    }

    #[test]
    fn duplicate_keys_last_wins() {
        let text = "[[\"version\",\"2\"]]\n[\"\",\"g\",[\"a\"],1]\n[\"\",\"g\",[\"\\u0061\"],2]\n";
        let lockfile = parse(text).unwrap();
        assert_eq!(lockfile.len(), 1);
        assert_eq!(
            lockfile.to_text(),
            "[[\"version\",\"2\"]]\n[\"\",\"g\",[\"\\u0061\"],2]\n"
        );
    }

    #[test]
    fn version_1_drops_policies() {
        let text = "[[\"version\",\"1\"]]\n[\"\",\"g\",[\"a\"],1,\"pin\"]\n[\"\",\"g\",[\"b\"],2,\"float\"]\n";
        assert_eq!(
            parse(text).unwrap().to_text(),
            "[[\"version\",\"2\"]]\n[\"\",\"g\",[\"a\"],1]\n[\"\",\"g\",[\"b\"],2]\n"
        );
    }

    #[test]
    fn unknown_version_is_unsupported() {
        let err = parse("[[\"version\",\"3\"]]\n[1]\n").unwrap_err();
        assert!(matches!(err, Error::Unsupported(_)), "{err:?}");
        let err = parse("[[\"version\",\"2\"],[\"hash\",\"x\"]]\n").unwrap_err();
        assert!(matches!(err, Error::Unsupported(_)), "{err:?}");
    }

    #[test]
    fn malformed_lines_name_their_line() {
        let h = "[[\"version\",\"2\"]]\n";
        assert!(message(&format!("#c\n{h}[\"\",\"g\",[\"a\"],1\n")).starts_with("dagger.lock:3:"));
        assert!(message(&format!("{h}[\"\",\"g\",[\"a\"]]\n")).starts_with("dagger.lock:2:"));
        assert!(message(&format!("{h}[\"\",\"g\",[\"a\"],1] x\n")).starts_with("dagger.lock:2:"));
        assert!(message(&format!("{h}[1,\"g\",[\"a\"],1]\n")).contains("namespace"));
        assert!(message(&format!("{h}[\"\",\"g\",\"a\",1]\n")).contains("not a JSON array"));
        assert!(
            message(&format!("{h}[\"\",\"g\",[[{{\"a\":1}}]],1]\n")).contains("object at [0][0]")
        );
        assert!(message(&format!("{h}# late\n")).starts_with("dagger.lock:2:"));
        assert!(message("[\"\",\"g\",[\"a\"],1]\n").starts_with("dagger.lock:1:"));
        assert!(message("# only a comment\n").contains("header"));
        assert!(message("[[\"version\",2]]\n").contains("pair of strings"));
        assert!(message("# a\n\u{0}\n").starts_with("dagger.lock:2:"));
        let bad_utf8 = Lockfile::parse(b"# a\n# \xff\n", "f").unwrap_err();
        assert!(bad_utf8.to_string().starts_with("f:2:"), "{bad_utf8}");
    }

    #[test]
    fn trailing_carriage_returns_are_line_endings() {
        // Found by the lockfile fuzz target: "#c\r\r\n" kept "#c\r", which rewrote as
        // "#c\r\n" and read back as "#c" — a rewrite that was not stable.
        let text = "## c[\r\r\n\r\r\n[[\"version\",\"1\"]]\r\r\n";
        let canonical = parse(text).unwrap().to_text();
        assert_eq!(canonical, "## c[\n\n[[\"version\",\"2\"]]\n");
        assert_eq!(parse(&canonical).unwrap().to_text(), canonical);
        // A CR inside a comment is content and survives.
        let inner = "#a\rb\n[[\"version\",\"2\"]]\n";
        assert_eq!(parse(inner).unwrap().to_text(), inner);
    }

    #[test]
    fn empty_input_is_empty_lockfile() {
        let lockfile = parse("").unwrap();
        assert!(lockfile.is_empty());
        assert!(parse("\n \n").unwrap().is_empty());
        assert_eq!(lockfile.to_text(), format!("{HEADER}\n"));
    }

    #[test]
    fn keys_refuse_objects_and_non_arrays() {
        assert!(Key::new("", "g", serde_json::json!(["a", ["b", 1]])).is_ok());
        assert!(matches!(
            Key::new("", "g", serde_json::json!(["a", {"b": 1}])),
            Err(Error::Invalid(_))
        ));
        assert!(matches!(
            Key::new("", "g", serde_json::json!("a")),
            Err(Error::Invalid(_))
        ));
    }
}
