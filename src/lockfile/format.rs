//! The `dagger.lock` file format, read and written exactly as Dagger's own lockfile package
//! does (Go, `encoding/json`):
//!
//! ```text
//! # an optional leading comment block, kept as it is (a dialect seen in the wild)
//! [["version","2"]]
//! ["","git-sha",["github.com/dagger/go","refs/heads/main"],"268add4d…"]
//! ```
//!
//! Written form (Dagger's `Marshal`): the header, then one `[namespace,operation,inputs,value]`
//! line per entry, sorted by namespace, operation, then the inputs' canonical JSON (byte
//! order); lines joined by `\n` with **no trailing newline**; no entries at all is an empty
//! (0-byte) file. JSON is spelled as Go's `json.Marshal` spells it (see [`super::json`]).
//!
//! Reading (Dagger's `Parse`): each line is trimmed of surrounding white space (so CRLF is
//! fine) and blank lines are skipped; the first remaining line is the header; a later entry
//! with the same key replaces an earlier one. Version 1 entries carry a fifth element, a
//! `pin`/`float` policy, which is dropped: they are written back as version 2 pins. Any other
//! version, an entry of the wrong length, an object anywhere in inputs or a line that is not
//! JSON is refused. Like Go, `null` reads as `""` for a namespace or operation and as `[]` for
//! inputs.
//!
//! Beyond Dagger: `#` lines above the header form a comment block that is kept byte for byte,
//! with exactly Dagger's bytes below it; what a rewrite collapses or drops silently is
//! reported as [`Notice`]s.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;

use super::json::{self, Json, Kind, SyntaxError};
use crate::error::{Error, Result};

/// The format version this binary writes.
pub const VERSION: &str = "2";
/// The header line, the first line of every file with entries (after any comment block).
pub const HEADER: &str = r#"[["version","2"]]"#;

/// One lookup: which namespace and operation, with which inputs.
///
/// Identity and order are Dagger's: the namespace, the operation, then the canonical JSON of
/// the inputs, each compared byte by byte.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Key {
    namespace: String,
    operation: String,
    inputs: Json,
}

impl Key {
    /// A key from its parts; `inputs` must be an array with no object anywhere inside.
    pub fn new(
        namespace: impl Into<String>,
        operation: impl Into<String>,
        inputs: impl Into<Json>,
    ) -> Result<Key> {
        let inputs = inputs.into();
        check_inputs(&inputs).map_err(|why| Error::Invalid(format!("inputs {inputs} {why}")))?;
        Ok(Key {
            namespace: namespace.into(),
            operation: operation.into(),
            inputs,
        })
    }

    /// The entry's namespace, e.g. `core`.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The entry's operation, e.g. `container.from`.
    pub fn operation(&self) -> &str {
        &self.operation
    }

    /// The entry's inputs: a JSON array, spelled as read.
    pub fn inputs(&self) -> &Json {
        &self.inputs
    }

    /// `"namespace","operation",inputs` as written in the file.
    pub fn text(&self) -> String {
        let mut out = String::new();
        json::quote(&self.namespace, &mut out);
        out.push(',');
        json::quote(&self.operation, &mut out);
        out.push(',');
        out.push_str(self.inputs.text());
        out
    }

    fn order(&self) -> (&str, &str, &str) {
        (&self.namespace, &self.operation, self.inputs.text())
    }
}

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

/// Something a rewrite changes that is not visible in the entries' values: Dagger does it
/// silently, modstate says so.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// One key appeared on several lines; only the last one is kept (as in Dagger).
    DuplicateEntry {
        /// `["namespace","operation",inputs]`.
        key: String,
        /// Every line it appeared on, in file order; the last is the one kept.
        lines: Vec<usize>,
    },
    /// A version 1 file: the `pin`/`float` policies of this many entries are dropped, and the
    /// entries become version 2 pins.
    PoliciesDropped {
        /// How many entries lost their policy.
        entries: usize,
        /// How many of those were `float`.
        floats: usize,
    },
}

impl fmt::Display for Notice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Notice::DuplicateEntry { key, lines } => {
                let (last, earlier) = lines.split_last().map_or((0, &[][..]), |(l, e)| (*l, e));
                let earlier: Vec<String> = earlier.iter().map(usize::to_string).collect();
                write!(
                    f,
                    "entry {key} appears on lines {} and {last}; kept line {last} (the last one wins, as in Dagger)",
                    earlier.join(", ")
                )
            }
            Notice::PoliciesDropped { entries, floats } => write!(
                f,
                "version 1 lockfile rewritten as version 2: dropped the pin/float policy of {entries} {} ({floats} \"float\"); {} now pins",
                if *entries == 1 { "entry" } else { "entries" },
                if *entries == 1 { "it is" } else { "they are" },
            ),
        }
    }
}

/// The contents of one `dagger.lock`: a leading comment block and the entries.
#[derive(Clone, Debug, Default)]
pub struct Lockfile {
    /// The bytes above the header, from the start of the file through the end of its last
    /// `#` line (empty when there is no `#` line there).
    comments: String,
    entries: BTreeMap<Key, Json>,
    /// What parsing collapsed or dropped (not part of the lockfile's identity).
    notices: Vec<Notice>,
}

impl PartialEq for Lockfile {
    fn eq(&self, other: &Self) -> bool {
        self.comments == other.comments && self.entries == other.entries
    }
}

impl Lockfile {
    /// An empty lockfile: no comments, no entries.
    pub fn new() -> Lockfile {
        Lockfile::default()
    }

    /// Parses a file's bytes. `origin` names the file in error messages.
    ///
    /// Malformed input is `Invalid`, naming the line; a version other than 1 or 2 is
    /// `Unsupported`.
    // A Key's order is its canonical text alone; the lazily made serde view inside its Json
    // never takes part in comparisons.
    #[allow(clippy::mutable_key_type)]
    pub fn parse(bytes: &[u8], origin: &str) -> Result<Lockfile> {
        let mut lockfile = Lockfile::new();
        let mut version: Option<&'static str> = None;
        let mut seen: BTreeMap<Key, (Json, Vec<usize>)> = BTreeMap::new();
        let (mut policies, mut floats) = (0, 0);
        let mut offset = 0;
        for (index, raw) in bytes.split(|&b| b == b'\n').enumerate() {
            let number = index + 1;
            let line_start = offset;
            offset += raw.len() + 1;
            let (lead, line) = trim_space(raw);
            if line.is_empty() {
                continue;
            }
            let Some(v) = version else {
                if line.first() == Some(&b'#') {
                    if std::str::from_utf8(raw).is_err() {
                        return Err(invalid(
                            origin,
                            number,
                            "is a comment that is not valid UTF-8".into(),
                        ));
                    }
                    // The block runs through this line and its line ending.
                    let end = (line_start + raw.len() + 1).min(bytes.len());
                    lockfile.comments = String::from_utf8_lossy(&bytes[..end]).into_owned();
                    continue;
                }
                version = Some(parse_header(line, lead, origin, number)?);
                continue;
            };
            if line.first() == Some(&b'#') {
                return Err(invalid(
                    origin,
                    number,
                    "is a comment below the header; Dagger refuses it, and modstate keeps comments only above the header — move it there or delete it".into(),
                ));
            }
            let (key, value, policy) = parse_entry(line, lead, v, origin, number)?;
            if let Some(policy) = policy {
                policies += 1;
                floats += usize::from(policy == "float");
            }
            match seen.get_mut(&key) {
                Some((old, lines)) => {
                    *old = value;
                    lines.push(number);
                }
                None => {
                    seen.insert(key, (value, vec![number]));
                }
            }
        }
        for (key, (value, lines)) in seen {
            if lines.len() > 1 {
                lockfile.notices.push(Notice::DuplicateEntry {
                    key: format!("[{}]", key.text()),
                    lines,
                });
            }
            lockfile.entries.insert(key, value);
        }
        if policies > 0 {
            lockfile.notices.push(Notice::PoliciesDropped {
                entries: policies,
                floats,
            });
        }
        Ok(lockfile)
    }

    /// The file exactly as Dagger's writer writes it, below the comment block kept as is.
    pub fn to_text(&self) -> String {
        let mut out = self.comments.clone();
        if self.entries.is_empty() {
            return out;
        }
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(HEADER);
        for (key, value) in &self.entries {
            out.push('\n');
            out.push_str(&entry_line(key, value));
        }
        out
    }

    /// The value pinned for `key`, if any.
    pub fn get(&self, key: &Key) -> Option<&Json> {
        self.entries.get(key)
    }

    /// Sets `key` to `value`; returns the previous value.
    pub fn set(&mut self, key: Key, value: Json) -> Option<Json> {
        self.entries.insert(key, value)
    }

    /// Removes the entry for `key`, returning its value.
    pub fn remove(&mut self, key: &Key) -> Option<Json> {
        self.entries.remove(key)
    }

    /// Entries in file order.
    pub fn iter(&self) -> impl Iterator<Item = (&Key, &Json)> {
        self.entries.iter()
    }

    /// How many entries the lockfile holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the lockfile holds no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The comment block above the header, byte for byte (line endings included).
    pub fn comments(&self) -> &str {
        &self.comments
    }

    /// Replaces the comment block. It must be empty, or lines that are blank or start with
    /// `#` (after leading white space), ending with a `#` line and its `\n`: that is the
    /// block a parse of the written file finds again.
    pub fn set_comments(&mut self, block: impl Into<String>) -> Result<()> {
        let block = block.into();
        if !block.is_empty() {
            let body = block.strip_suffix('\n').ok_or_else(|| {
                Error::Invalid("a comment block must end with a line break".into())
            })?;
            let lines: Vec<&str> = body.split('\n').collect();
            let comment = |l: &str| l.trim().starts_with('#');
            if !lines.iter().all(|l| l.trim().is_empty() || comment(l))
                || !lines.last().is_some_and(|l| comment(l))
            {
                return Err(Error::Invalid(format!(
                    "comment block {block:?} must be lines starting with '#' (blank lines between them are fine), ending with one"
                )));
            }
        }
        self.comments = block;
        Ok(())
    }

    /// What parsing collapsed or dropped, which the next rewrite makes permanent.
    pub fn notices(&self) -> &[Notice] {
        &self.notices
    }
}

/// One entry as Dagger writes it: `[namespace,operation,inputs,value]`.
pub fn entry_line(key: &Key, value: &Json) -> String {
    format!("[{},{value}]", key.text())
}

fn invalid(origin: &str, line: usize, what: String) -> Error {
    Error::Invalid(format!("{origin}:{line}: {what}"))
}

fn syntax(origin: &str, line: usize, lead: usize, what: &str, e: &SyntaxError) -> Error {
    invalid(
        origin,
        line,
        format!("{what}: {} at column {}", e.message, lead + e.offset + 1),
    )
}

/// Trims what Go's `strings.TrimSpace` trims (Unicode white space); returns how many bytes
/// came off the front and the rest. An invalid UTF-8 byte is not space.
fn trim_space(line: &[u8]) -> (usize, &[u8]) {
    let mut start = 0;
    while let Some((c, len)) = json::decode_char(&line[start..]) {
        if !c.is_whitespace() {
            break;
        }
        start += len;
    }
    let mut end = line.len();
    'back: while end > start {
        for width in 1..=4.min(end - start) {
            if let Some((c, len)) = json::decode_char(&line[end - width..end])
                && len == width
            {
                if c.is_whitespace() {
                    end -= width;
                    continue 'back;
                }
                break 'back;
            }
        }
        break;
    }
    (start, &line[start..end])
}

/// The elements of a line that must be one JSON array (`null` reads as no elements, as in Go).
fn elements(line: &[u8]) -> std::result::Result<Option<Vec<Json>>, SyntaxError> {
    let start = json::skip_ws(line, 0);
    if line.get(start) != Some(&b'[') {
        let value = Json::parse(line)?;
        return Ok((value.kind() == Kind::Null).then(Vec::new));
    }
    let mut items = Vec::new();
    let mut at = json::skip_ws(line, start + 1);
    if line.get(at) == Some(&b']') {
        at += 1;
    } else {
        loop {
            let parsed = json::parse_value(line, at, 1)?;
            items.push(parsed.json);
            at = json::skip_ws(line, parsed.end);
            match line.get(at) {
                Some(b',') => at = json::skip_ws(line, at + 1),
                Some(b']') => {
                    at += 1;
                    break;
                }
                _ => {
                    return Err(SyntaxError {
                        offset: at,
                        message: "expected ',' or ']' after an array element".into(),
                    });
                }
            }
        }
    }
    let end = json::skip_ws(line, at);
    if end < line.len() {
        return Err(SyntaxError {
            offset: end,
            message: "unexpected content after the closing ']'".into(),
        });
    }
    Ok(Some(items))
}

/// Reads the header line and returns the version it names, if this binary reads it.
fn parse_header(line: &[u8], lead: usize, origin: &str, number: usize) -> Result<&'static str> {
    let expected = format!("expected the header {HEADER} (or version \"1\") before any entry");
    let fields = elements(line)
        .map_err(|e| syntax(origin, number, lead, &expected, &e))?
        .ok_or_else(|| invalid(origin, number, expected.clone()))?;
    let pair = match fields.as_slice() {
        [pair] if pair.kind() == Kind::Array => elements(pair.text().as_bytes())
            .ok()
            .flatten()
            .unwrap_or_default(),
        _ => return Err(invalid(origin, number, expected)),
    };
    let strings: Option<Vec<String>> = pair
        .iter()
        .map(|item| match item.kind() {
            Kind::Null => Some(String::new()),
            _ => item.as_string(),
        })
        .collect();
    match strings.as_deref() {
        Some([name, version]) if name == "version" => match version.as_str() {
            "1" => Ok("1"),
            "2" => Ok("2"),
            other => Err(Error::Unsupported(format!(
                "{origin} is lockfile version {other:?}; this modstate reads versions 1 and 2 — upgrade modstate (the file was left untouched)"
            ))),
        },
        _ => Err(invalid(origin, number, expected)),
    }
}

/// One entry line: its key, its value and (version 1) its policy.
fn parse_entry(
    line: &[u8],
    lead: usize,
    version: &str,
    origin: &str,
    number: usize,
) -> Result<(Key, Json, Option<String>)> {
    let (shape, arity) = if version == "1" {
        (
            "[namespace, operation, inputs, value, policy] (version 1)",
            5,
        )
    } else {
        ("[namespace, operation, inputs, value]", 4)
    };
    let what = format!("expected an entry {shape}");
    let parts = elements(line)
        .map_err(|e| syntax(origin, number, lead, &what, &e))?
        .ok_or_else(|| {
            invalid(
                origin,
                number,
                format!("{what}, not a JSON {}", kind_name(line)),
            )
        })?;
    if parts.len() != arity {
        return Err(invalid(
            origin,
            number,
            format!("entry has {} elements; expected {shape}", parts.len()),
        ));
    }
    let string_at = |index: usize, what: &str| -> Result<String> {
        let part = &parts[index];
        match part.kind() {
            Kind::Null => Ok(String::new()),
            Kind::String => Ok(part.as_string().unwrap_or_default()),
            _ => Err(invalid(
                origin,
                number,
                format!("{what} {part} is not a string"),
            )),
        }
    };
    let namespace = string_at(0, "namespace")?;
    let operation = string_at(1, "operation")?;
    let inputs = match parts[2].kind() {
        Kind::Null => Json::empty_array(),
        _ => parts[2].clone(),
    };
    check_inputs(&inputs)
        .map_err(|why| invalid(origin, number, format!("inputs {inputs} {why}")))?;
    let policy = if arity == 5 {
        Some(string_at(4, "policy")?)
    } else {
        None
    };
    let key = Key {
        namespace,
        operation,
        inputs,
    };
    Ok((key, parts[3].clone(), policy))
}

fn kind_name(line: &[u8]) -> &'static str {
    match Json::parse(line).map(|j| j.kind()) {
        Ok(Kind::Object) => "object",
        Ok(Kind::String) => "string",
        Ok(Kind::Number) => "number",
        Ok(Kind::Bool) => "boolean",
        _ => "value",
    }
}

/// Inputs are an array of scalars and nested arrays; says what is wrong otherwise.
fn check_inputs(inputs: &Json) -> std::result::Result<(), String> {
    if inputs.kind() != Kind::Array {
        return Err("are not a JSON array; write them as one, e.g. [\"alpine:3.20\"]".into());
    }
    if let Some(path) = inputs.object_path() {
        return Err(format!(
            "hold a JSON object at {path}; Dagger refuses objects in inputs (they have no order) — use nested [name, value] arrays"
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

    fn rewrite(text: &str) -> String {
        parse(text).unwrap().to_text()
    }

    fn message(text: &str) -> String {
        match parse(text) {
            Err(Error::Invalid(m)) => m,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    const H: &str = r#"[["version","2"]]"#;

    #[test]
    fn writes_header_sorted_lines_and_no_trailing_newline() {
        let text = format!(
            "{H}\n[\"b\",\"x\",[\"1\"],1]\n[\"\",\"z\",[\"2\"],2]\n[\"\",\"a\",[\"3\"],3]\n"
        );
        assert_eq!(
            rewrite(&text),
            format!("{H}\n[\"\",\"a\",[\"3\"],3]\n[\"\",\"z\",[\"2\"],2]\n[\"b\",\"x\",[\"1\"],1]")
        );
    }

    #[test]
    fn sorts_by_inputs_as_go_marshals_them() {
        // ',' (0x2c) < ']' (0x5d): the longer inputs sort first.
        let text = format!("{H}\n[\"\",\"g\",[\"a\"],1]\n[\"\",\"g\",[\"a\", [\"v\",\"1\"]],2]");
        assert_eq!(
            rewrite(&text),
            format!("{H}\n[\"\",\"g\",[\"a\",[\"v\",\"1\"]],2]\n[\"\",\"g\",[\"a\"],1]")
        );
        // Sorted by the escaped form: "\u003c" starts with '\\' (0x5c): after "Z", before "a".
        let text =
            format!("{H}\n[\"\",\"g\",[\"a\"],1]\n[\"\",\"g\",[\"<\"],2]\n[\"\",\"g\",[\"Z\"],3]");
        assert_eq!(
            rewrite(&text),
            format!(
                "{H}\n[\"\",\"g\",[\"Z\"],3]\n[\"\",\"g\",[\"\\u003c\"],2]\n[\"\",\"g\",[\"a\"],1]"
            )
        );
    }

    #[test]
    fn empty_lockfile_is_zero_bytes() {
        assert_eq!(rewrite(""), "");
        assert_eq!(rewrite(H), "");
        assert_eq!(rewrite(&format!("\n \r\n{H}\r\n\n")), "");
        assert_eq!(rewrite("[[\"version\",\"1\"]]"), "");
    }

    #[test]
    fn values_are_canonical_and_numbers_keep_spelling() {
        let text = format!(
            "{H}\n[\"<n>\",\"&op\",[\"\\u0061\", 1.0, 1E5, [\"k\", -0]], {{\"z\": 1.50, \"a\": \"\\/é\\u2028\", \"a\": \"last\"}}]"
        );
        assert_eq!(
            rewrite(&text),
            format!(
                "{H}\n[\"\\u003cn\\u003e\",\"\\u0026op\",[\"a\",1.0,1E5,[\"k\",-0]],{{\"a\":\"last\",\"z\":1.50}}]"
            )
        );
    }

    #[test]
    fn reading_trims_lines_skips_blanks_and_last_duplicate_wins() {
        let text = format!(
            "\r\n  {H}  \r\n\r\n\t[\"\",\"g\",[\"a\"],\"first\"]\r\n\u{a0}\n[\"\",\"g\",[\"\\u0061\"],\"second\"]\u{2003}\r\n"
        );
        let lockfile = parse(&text).unwrap();
        assert_eq!(
            lockfile.to_text(),
            format!("{H}\n[\"\",\"g\",[\"a\"],\"second\"]")
        );
        assert_eq!(
            lockfile.notices(),
            [Notice::DuplicateEntry {
                key: r#"["","g",["a"]]"#.into(),
                lines: vec![4, 6],
            }]
        );
        assert_eq!(
            lockfile.notices()[0].to_string(),
            r#"entry ["","g",["a"]] appears on lines 4 and 6; kept line 6 (the last one wins, as in Dagger)"#
        );
    }

    #[test]
    fn version_1_drops_policies_and_says_so() {
        let text = "[[\"version\",\"1\"]]\n[\"\",\"g\",[\"b\"],2,\"float\"]\n[\"\",\"g\",[\"a\"],1,\"pin\"]";
        let lockfile = parse(text).unwrap();
        assert_eq!(
            lockfile.to_text(),
            format!("{H}\n[\"\",\"g\",[\"a\"],1]\n[\"\",\"g\",[\"b\"],2]")
        );
        assert_eq!(
            lockfile.notices(),
            [Notice::PoliciesDropped {
                entries: 2,
                floats: 1
            }]
        );
        assert_eq!(
            lockfile.notices()[0].to_string(),
            "version 1 lockfile rewritten as version 2: dropped the pin/float policy of 2 entries (1 \"float\"); they are now pins"
        );
        // Version 1 entries have exactly five elements; version 2 exactly four.
        assert!(message("[[\"version\",\"1\"]]\n[\"\",\"g\",[\"a\"],1]").contains("4 elements"));
        assert!(message(&format!("{H}\n[\"\",\"g\",[\"a\"],1,\"pin\"]")).contains("5 elements"));
    }

    #[test]
    fn nulls_read_as_go_reads_them() {
        let text = format!("{H}\n[null,null,null,null]");
        assert_eq!(rewrite(&text), format!("{H}\n[\"\",\"\",[],null]"));
        assert!(message(&format!("{H}\nnull")).contains("0 elements"));
    }

    #[test]
    fn comment_block_is_kept_byte_for_byte_above_daggers_bytes() {
        let text = format!("# a\r\n\n  # b \r\n\n{H}\n[\"\",\"g\",[\"a\"],1]\n");
        assert_eq!(
            rewrite(&text),
            format!("# a\r\n\n  # b \r\n{H}\n[\"\",\"g\",[\"a\"],1]")
        );
        // No entries: the comment block alone.
        assert_eq!(rewrite(&format!("# a\n{H}\n")), "# a\n");
        assert_eq!(rewrite("# a\n"), "# a\n");
        assert_eq!(rewrite("# a"), "# a");
        // Blank lines with no comment after them are not part of the block.
        assert_eq!(
            rewrite(&format!("\n\n{H}\n[\"\",\"g\",[],1]")),
            format!("{H}\n[\"\",\"g\",[],1]")
        );
    }

    #[test]
    fn unknown_version_is_unsupported() {
        let err = parse("[[\"version\",\"3\"]]\n[1]\n").unwrap_err();
        assert!(matches!(err, Error::Unsupported(_)), "{err:?}");
        assert!(err.to_string().contains("version \"3\""), "{err}");
    }

    #[test]
    fn what_dagger_refuses_is_refused_naming_the_line() {
        assert!(
            message(&format!("#c\n{H}\n[\"\",\"g\",[\"a\"],1\n")).starts_with("dagger.lock:3:")
        );
        assert!(message(&format!("{H}\n[\"\",\"g\",[\"a\"]]\n")).starts_with("dagger.lock:2:"));
        assert!(message(&format!("{H}\n[\"\",\"g\",[\"a\"],1] x\n")).starts_with("dagger.lock:2:"));
        assert!(message(&format!("{H}\n[1,\"g\",[\"a\"],1]\n")).contains("namespace"));
        assert!(message(&format!("{H}\n[\"\",\"g\",\"a\",1]\n")).contains("not a JSON array"));
        assert!(
            message(&format!("{H}\n[\"\",\"g\",[[{{\"a\":1}}]],1]\n")).contains("object at [0][0]")
        );
        assert!(message(&format!("{H}\n# late\n")).starts_with("dagger.lock:2:"));
        assert!(message("[\"\",\"g\",[\"a\"],1]\n").starts_with("dagger.lock:1:"));
        assert!(message("[[\"version\",2]]\n").contains("expected the header"));
        assert!(
            message("[[\"version\",\"2\"],[\"hash\",\"x\"]]\n").contains("expected the header")
        );
        assert!(message(&format!("{H}\n{{\"a\":1}}\n")).contains("not a JSON object"));
        assert!(message("# a\n\u{0}\n").starts_with("dagger.lock:2:"));
        let bad_utf8 = Lockfile::parse(b"# a\n# \xff\n", "f").unwrap_err();
        assert!(bad_utf8.to_string().starts_with("f:2:"), "{bad_utf8}");
        let column = message(&format!("{H}\n  [\"\",\"g\",[\"a\"] x]"));
        assert!(column.contains("column 17"), "{column}");
    }

    #[test]
    fn invalid_utf8_inside_strings_reads_as_go_reads_it() {
        let bytes = [H.as_bytes(), b"\n[\"\",\"g\",[\"\xff\"],\"a\xe2\x82\"]"].concat();
        let lockfile = Lockfile::parse(&bytes, "f").unwrap();
        assert_eq!(
            lockfile.to_text(),
            format!("{H}\n[\"\",\"g\",[\"\u{FFFD}\"],\"a\u{FFFD}\u{FFFD}\"]")
        );
        assert!(Lockfile::parse(&[H.as_bytes(), b"\n\xff"].concat(), "f").is_err());
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

    #[test]
    fn comment_blocks_set_through_the_api_must_reparse_the_same() {
        let mut lockfile = Lockfile::new();
        assert!(lockfile.set_comments("# a\n\n# b\n").is_ok());
        for bad in ["# a", "# a\n\n", "x\n", "# a\nx\n"] {
            assert!(lockfile.set_comments(bad).is_err(), "{bad:?}");
        }
    }
}
