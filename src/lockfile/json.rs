//! JSON exactly as Dagger's Go writer spells it.
//!
//! Dagger reads `dagger.lock` with Go's `encoding/json` (numbers as `json.Number`) and writes it
//! back with `json.Marshal`. For modstate and Dagger to share the file without churn, every
//! value modstate writes must be the bytes `json.Marshal` would write for what Go decoded. This
//! module reads JSON with Go's decoder rules and produces that canonical text directly:
//!
//! * numbers keep the spelling they were read with (`1.50`, `1E5`, `-0`);
//! * strings are decoded (escapes resolved; an invalid UTF-8 byte or a lone UTF-16 surrogate
//!   becomes U+FFFD, as Go does) and re-encoded like `json.Marshal`: `<`, `>`, `&`, U+2028 and
//!   U+2029 as `\u003c`, `\u003e`, `\u0026`, `\u2028`, `\u2029`; `"` and `\` escaped;
//!   `\b`, `\f`, `\n`, `\r`, `\t` short (Go 1.22 and later); other control characters as
//!   `\u00XX` in lower-case hex; `/` and all other characters raw;
//! * object keys are sorted by their bytes and, when a key repeats, the last one wins (Go
//!   decodes an object into a map);
//! * no whitespace anywhere.
//!
//! The parser is iterative (an explicit stack, no recursion), so a deeply nested line cannot
//! overflow the stack; like Go's scanner it refuses nesting deeper than [`MAX_DEPTH`].

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::OnceLock;

/// Deepest nesting Go's scanner accepts (`maxNestingDepth`).
pub const MAX_DEPTH: usize = 10_000;

/// A JSON value held as its canonical text (what Go's `json.Marshal` writes for it).
///
/// Equality and order are by that text, which is how Dagger tells two lookups apart: `"a"` and
/// `"\u0061"` are one value, `1` and `1.0` are two.
#[derive(Clone, Debug)]
pub struct Json {
    text: String,
    /// The serde_json view, made on first ask (most values are only ever written back).
    value: OnceLock<serde_json::Value>,
}

impl PartialEq for Json {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for Json {}

impl PartialOrd for Json {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Json {
    fn cmp(&self, other: &Self) -> Ordering {
        self.text.cmp(&other.text)
    }
}

impl Hash for Json {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.text.hash(state);
    }
}

/// What kind of JSON value a [`Json`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `null`
    Null,
    /// `true` or `false`
    Bool,
    /// A number, spelled as read.
    Number,
    /// A string.
    String,
    /// An array.
    Array,
    /// An object.
    Object,
}

/// A JSON syntax error: what is wrong, at which byte of the input (0-based).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyntaxError {
    /// Byte offset in the line where the error was found.
    pub offset: usize,
    /// What is wrong there.
    pub message: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.message, self.offset + 1)
    }
}

impl std::error::Error for SyntaxError {}

impl Json {
    /// Parses one JSON document (whitespace around it allowed, nothing else).
    pub fn parse(text: impl AsRef<[u8]>) -> Result<Json, SyntaxError> {
        let bytes = text.as_ref();
        let parsed = parse_value(bytes, skip_ws(bytes, 0), 0)?;
        let end = skip_ws(bytes, parsed.end);
        if end < bytes.len() {
            return Err(unexpected(
                bytes,
                end,
                "after the value (one JSON value expected)",
            ));
        }
        Ok(parsed.json)
    }

    /// `[]`: what Go writes for inputs it decoded from `null`.
    pub fn empty_array() -> Json {
        Json::canonical("[]".into())
    }

    /// Wraps text that is already canonical.
    fn canonical(text: String) -> Json {
        Json {
            text,
            value: OnceLock::new(),
        }
    }

    /// A JSON string holding `s`.
    pub fn string(s: &str) -> Json {
        let mut text = String::with_capacity(s.len() + 2);
        quote(s, &mut text);
        Json::canonical(text)
    }

    /// A value built in code: serialized by serde_json, then made canonical.
    pub fn from_value(value: serde_json::Value) -> Json {
        // serde_json's output is valid JSON, so this cannot fail.
        Json::parse(value.to_string()).unwrap_or_else(|_| Json::empty_array())
    }

    /// The canonical text, as written to the file.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// What kind of JSON value this is.
    pub fn kind(&self) -> Kind {
        match self.text.as_bytes().first() {
            Some(b'[') => Kind::Array,
            Some(b'{') => Kind::Object,
            Some(b'"') => Kind::String,
            Some(b't' | b'f') => Kind::Bool,
            Some(b'n') => Kind::Null,
            _ => Kind::Number,
        }
    }

    /// The decoded string, when this is a JSON string.
    pub fn as_string(&self) -> Option<String> {
        match self.kind() {
            Kind::String => serde_json::from_str(&self.text).ok(),
            _ => None,
        }
    }

    /// The value as serde_json sees it (numbers keep their spelling: arbitrary precision).
    pub fn value(&self) -> &serde_json::Value {
        self.value
            .get_or_init(|| serde_json::from_str(&self.text).unwrap_or(serde_json::Value::Null))
    }

    /// The value as `serde_json` sees it (number spellings kept).
    pub fn into_value(self) -> serde_json::Value {
        let Json { text, value } = self;
        value
            .into_inner()
            .unwrap_or_else(|| serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
    }

    /// Where the first object inside this value is, as `[i][j]` indices through arrays; `None`
    /// when there is none. Inputs must have none: an object has no order of its own.
    pub fn object_path(&self) -> Option<String> {
        let bytes = self.text.as_bytes();
        let mut indices: Vec<usize> = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'{' => {
                    return Some(indices.iter().map(|n| format!("[{n}]")).collect());
                }
                b'[' => indices.push(0),
                b']' => {
                    indices.pop();
                }
                b',' => {
                    if let Some(last) = indices.last_mut() {
                        *last += 1;
                    }
                }
                b'"' => {
                    // Canonical strings: skip to the closing quote, honouring escapes.
                    i += 1;
                    while i < bytes.len() && bytes[i] != b'"' {
                        i += if bytes[i] == b'\\' { 2 } else { 1 };
                    }
                }
                _ => {}
            }
            i += 1;
        }
        None
    }
}

impl fmt::Display for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl From<serde_json::Value> for Json {
    fn from(value: serde_json::Value) -> Json {
        Json::from_value(value)
    }
}

/// One value parsed from a larger input: the value and the byte just past it.
pub(crate) struct Parsed {
    pub json: Json,
    pub end: usize,
}

/// JSON whitespace (the only whitespace allowed between tokens).
fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

pub(crate) fn skip_ws(bytes: &[u8], mut at: usize) -> usize {
    while at < bytes.len() && is_ws(bytes[at]) {
        at += 1;
    }
    at
}

/// Names the byte at `at` for an error message.
fn describe(bytes: &[u8], at: usize) -> String {
    match bytes.get(at) {
        None => "end of input".into(),
        Some(&b) if b.is_ascii_graphic() => format!("character '{}'", b as char),
        Some(&b) => format!("byte 0x{b:02x}"),
    }
}

fn unexpected(bytes: &[u8], at: usize, context: &str) -> SyntaxError {
    SyntaxError {
        offset: at,
        message: format!("unexpected {} {context}", describe(bytes, at)),
    }
}

/// A container being read.
enum Frame {
    Array,
    /// Members read so far (last duplicate wins) and the key whose value is being read.
    Object {
        members: BTreeMap<String, String>,
        key: String,
    },
}

/// Reads one value starting exactly at `start` (no leading whitespace), with `depth`
/// containers already open around it. Iterative: `sinks` holds the text being built for the
/// value itself and for each object member value under way.
pub(crate) fn parse_value(bytes: &[u8], start: usize, depth: usize) -> Result<Parsed, SyntaxError> {
    let mut at = start;
    let mut stack: Vec<Frame> = Vec::new();
    let mut sinks: Vec<String> = vec![String::new()];
    'value: loop {
        at = skip_ws(bytes, at);
        let sink = sinks.last_mut().expect("a sink per open value");
        match bytes.get(at) {
            Some(b'[') => {
                if depth + stack.len() >= MAX_DEPTH {
                    return Err(SyntaxError {
                        offset: at,
                        message: format!("nesting deeper than {MAX_DEPTH} levels"),
                    });
                }
                at += 1;
                sink.push('[');
                stack.push(Frame::Array);
                let next = skip_ws(bytes, at);
                if bytes.get(next) == Some(&b']') {
                    at = next + 1;
                    sink.push(']');
                    stack.pop();
                } else {
                    continue 'value;
                }
            }
            Some(b'{') => {
                if depth + stack.len() >= MAX_DEPTH {
                    return Err(SyntaxError {
                        offset: at,
                        message: format!("nesting deeper than {MAX_DEPTH} levels"),
                    });
                }
                at += 1;
                let next = skip_ws(bytes, at);
                if bytes.get(next) == Some(&b'}') {
                    at = next + 1;
                    sink.push_str("{}");
                } else {
                    let (key, after) = object_key(bytes, next)?;
                    at = after;
                    stack.push(Frame::Object {
                        members: BTreeMap::new(),
                        key,
                    });
                    sinks.push(String::new());
                    continue 'value;
                }
            }
            Some(b'"') => {
                let (s, after) = string(bytes, at)?;
                quote(&s, sink);
                at = after;
            }
            Some(b'-' | b'0'..=b'9') => {
                let after = number(bytes, at)?;
                // A number is ASCII: its exact spelling is kept (Go's json.Number).
                sink.push_str(std::str::from_utf8(&bytes[at..after]).unwrap_or("0"));
                at = after;
            }
            Some(b't') => at = literal(bytes, at, "true", sink)?,
            Some(b'f') => at = literal(bytes, at, "false", sink)?,
            Some(b'n') => at = literal(bytes, at, "null", sink)?,
            _ => return Err(unexpected(bytes, at, "where a value should start")),
        }
        // A value is complete: close every container it completes.
        loop {
            at = skip_ws(bytes, at);
            match stack.last_mut() {
                None => {
                    let text = sinks.pop().unwrap_or_default();
                    return Ok(Parsed {
                        json: Json::canonical(text),
                        end: at,
                    });
                }
                Some(Frame::Array) => match bytes.get(at) {
                    Some(b',') => {
                        at += 1;
                        sinks.last_mut().expect("sink").push(',');
                        continue 'value;
                    }
                    Some(b']') => {
                        at += 1;
                        sinks.last_mut().expect("sink").push(']');
                        stack.pop();
                    }
                    _ => {
                        return Err(unexpected(
                            bytes,
                            at,
                            "after an array element (expected ',' or ']')",
                        ));
                    }
                },
                Some(Frame::Object { members, key }) => {
                    let value = sinks.pop().unwrap_or_default();
                    members.insert(std::mem::take(key), value);
                    match bytes.get(at) {
                        Some(b',') => {
                            let (next_key, after) = object_key(bytes, skip_ws(bytes, at + 1))?;
                            *key = next_key;
                            at = after;
                            sinks.push(String::new());
                            continue 'value;
                        }
                        Some(b'}') => {
                            at += 1;
                            let Some(Frame::Object { members, .. }) = stack.pop() else {
                                unreachable!("the top frame is this object");
                            };
                            let sink = sinks.last_mut().expect("sink");
                            sink.push('{');
                            for (i, (k, v)) in members.iter().enumerate() {
                                if i > 0 {
                                    sink.push(',');
                                }
                                quote(k, sink);
                                sink.push(':');
                                sink.push_str(v);
                            }
                            sink.push('}');
                        }
                        _ => {
                            return Err(unexpected(
                                bytes,
                                at,
                                "after an object value (expected ',' or '}')",
                            ));
                        }
                    }
                }
            }
        }
    }
}

/// Reads `"key"` and the `:` after it; returns the key and where its value starts.
fn object_key(bytes: &[u8], at: usize) -> Result<(String, usize), SyntaxError> {
    if bytes.get(at) != Some(&b'"') {
        return Err(unexpected(bytes, at, "where an object key should start"));
    }
    let (key, after) = string(bytes, at)?;
    let colon = skip_ws(bytes, after);
    if bytes.get(colon) != Some(&b':') {
        return Err(unexpected(
            bytes,
            colon,
            "after an object key (expected ':')",
        ));
    }
    Ok((key, colon + 1))
}

fn literal(bytes: &[u8], at: usize, word: &str, sink: &mut String) -> Result<usize, SyntaxError> {
    let end = at + word.len();
    if bytes.get(at..end) != Some(word.as_bytes()) {
        let bad = (at..end)
            .find(|&i| bytes.get(i) != word.as_bytes().get(i - at))
            .unwrap_or(at);
        return Err(unexpected(bytes, bad, &format!("in literal {word}")));
    }
    sink.push_str(word);
    Ok(end)
}

/// Checks a number's grammar; returns the byte after it.
fn number(bytes: &[u8], start: usize) -> Result<usize, SyntaxError> {
    let digits = |mut i: usize| {
        while bytes.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        i
    };
    let mut at = start;
    if bytes.get(at) == Some(&b'-') {
        at += 1;
    }
    match bytes.get(at) {
        Some(b'0') => at += 1,
        Some(b'1'..=b'9') => at = digits(at),
        _ => return Err(unexpected(bytes, at, "in a number (expected a digit)")),
    }
    if bytes.get(at) == Some(&b'.') {
        if !bytes.get(at + 1).is_some_and(u8::is_ascii_digit) {
            return Err(unexpected(
                bytes,
                at + 1,
                "after a decimal point (expected a digit)",
            ));
        }
        at = digits(at + 1);
    }
    if matches!(bytes.get(at), Some(b'e' | b'E')) {
        at += 1;
        if matches!(bytes.get(at), Some(b'+' | b'-')) {
            at += 1;
        }
        if !bytes.get(at).is_some_and(u8::is_ascii_digit) {
            return Err(unexpected(bytes, at, "in an exponent (expected a digit)"));
        }
        at = digits(at);
    }
    Ok(at)
}

/// Decodes the string starting at the `"` at `start` the way Go's decoder does; returns it
/// and the byte after the closing quote.
fn string(bytes: &[u8], start: usize) -> Result<(String, usize), SyntaxError> {
    let mut out = String::new();
    let mut at = start + 1;
    loop {
        match bytes.get(at) {
            None => return Err(unexpected(bytes, at, "in a string (no closing quote)")),
            Some(b'"') => return Ok((out, at + 1)),
            Some(b'\\') => {
                let short = match bytes.get(at + 1) {
                    Some(b'"') => Some('"'),
                    Some(b'\\') => Some('\\'),
                    Some(b'/') => Some('/'),
                    Some(b'b') => Some('\u{8}'),
                    Some(b'f') => Some('\u{c}'),
                    Some(b'n') => Some('\n'),
                    Some(b'r') => Some('\r'),
                    Some(b't') => Some('\t'),
                    Some(b'u') => None,
                    _ => return Err(unexpected(bytes, at + 1, "in a string escape")),
                };
                if let Some(c) = short {
                    out.push(c);
                    at += 2;
                    continue;
                }
                let unit = hex4(bytes, at + 2)?;
                at += 6;
                if (0xD800..0xE000).contains(&unit) {
                    // A valid pair is a high surrogate then an escaped low one; anything else
                    // is U+FFFD for this unit, and whatever follows is read on its own.
                    let low = if bytes.get(at) == Some(&b'\\') && bytes.get(at + 1) == Some(&b'u') {
                        hex4(bytes, at + 2).ok()
                    } else {
                        None
                    };
                    match low {
                        Some(low)
                            if (0xD800..0xDC00).contains(&unit)
                                && (0xDC00..0xE000).contains(&low) =>
                        {
                            let c = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
                            out.push(char::from_u32(c).unwrap_or('\u{FFFD}'));
                            at += 6;
                        }
                        _ => out.push('\u{FFFD}'),
                    }
                } else {
                    out.push(char::from_u32(unit).unwrap_or('\u{FFFD}'));
                }
            }
            Some(&b) if b < 0x20 => {
                return Err(SyntaxError {
                    offset: at,
                    message: format!(
                        "unescaped control character 0x{b:02x} in a string (write it as \\u{:04x})",
                        b
                    ),
                });
            }
            Some(&b) if b < 0x80 => {
                out.push(b as char);
                at += 1;
            }
            Some(_) => match decode_char(&bytes[at..]) {
                Some((c, len)) => {
                    out.push(c);
                    at += len;
                }
                None => {
                    // Go replaces each invalid byte on its own.
                    out.push('\u{FFFD}');
                    at += 1;
                }
            },
        }
    }
}

fn hex4(bytes: &[u8], at: usize) -> Result<u32, SyntaxError> {
    let mut value = 0;
    for i in at..at + 4 {
        let digit = bytes
            .get(i)
            .and_then(|&b| (b as char).to_digit(16))
            .ok_or_else(|| unexpected(bytes, i, "in a \\u escape (expected 4 hex digits)"))?;
        value = value * 16 + digit;
    }
    Ok(value)
}

/// The UTF-8 character at the start of `bytes` and its length, if it is valid there.
pub(crate) fn decode_char(bytes: &[u8]) -> Option<(char, usize)> {
    let width = match bytes.first()? {
        0x00..=0x7F => 1,
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => return None,
    };
    let s = std::str::from_utf8(bytes.get(..width)?).ok()?;
    s.chars().next().map(|c| (c, width))
}

/// Appends `s` as Go's `json.Marshal` writes a string (HTML-safe escaping on).
pub fn quote(s: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c if (c as u32) < 0x20 => {
                let b = c as usize;
                out.push_str("\\u00");
                out.push(HEX[b >> 4] as char);
                out.push(HEX[b & 0xF] as char);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(text: &str) -> String {
        Json::parse(text).unwrap().text().to_owned()
    }

    #[test]
    fn strings_are_escaped_as_go_marshal_does() {
        assert_eq!(canon(r#""<a>&b""#), r#""\u003ca\u003e\u0026b""#);
        assert_eq!(canon(r#""\u003c\u0026""#), r#""\u003c\u0026""#);
        assert_eq!(canon("\"\u{2028}\u{2029}\""), r#""\u2028\u2029""#);
        assert_eq!(canon(r#""q\"b\\s""#), r#""q\"b\\s""#);
        assert_eq!(canon(r#""\n\r\t""#), r#""\n\r\t""#);
        // Go 1.22+: \b and \f short; other control characters \u00XX in lower case.
        assert_eq!(canon(r#""\u0008\u000C""#), r#""\b\f""#);
        assert_eq!(canon(r#""\u0001\u001F\u000b""#), r#""\u0001\u001f\u000b""#);
        assert_eq!(canon(r#""\u007f""#), "\"\u{7f}\"");
        // `/` and non-ASCII are raw, however they were spelled.
        assert_eq!(canon(r#""\/a\u00e9\u00E9é""#), "\"/aééé\"");
        assert_eq!(canon(r#""\ud83d\ude00""#), "\"😀\"");
        assert_eq!(canon(r#""\u0061""#), r#""a""#);
    }

    #[test]
    fn bad_text_becomes_the_replacement_character_as_in_go() {
        assert_eq!(canon(r#""\ud800""#), "\"\u{FFFD}\"");
        assert_eq!(canon(r#""\udc00x""#), "\"\u{FFFD}x\"");
        // A high surrogate followed by a non-low escape: both read on their own.
        assert_eq!(canon(r#""\ud800\u0041""#), "\"\u{FFFD}A\"");
        assert_eq!(canon(r#""\ud800\ud800\udc00""#), "\"\u{FFFD}\u{10000}\"");
        // Invalid UTF-8: one U+FFFD per bad byte (a truncated 3-byte sequence is two).
        let parsed = Json::parse(b"\"a\xe2\x82b\xff\"").unwrap();
        assert_eq!(parsed.text(), "\"a\u{FFFD}\u{FFFD}b\u{FFFD}\"");
    }

    #[test]
    fn numbers_keep_their_spelling() {
        assert_eq!(
            canon("[ 1.50 , 1E5, -0, 2.5e-10, 123456789012345678901234567890 ]"),
            "[1.50,1E5,-0,2.5e-10,123456789012345678901234567890]"
        );
        for bad in ["01", "1.", ".5", "-", "1e", "+1", "0x10", "NaN", "1e+"] {
            assert!(Json::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn objects_sort_keys_and_last_duplicate_wins() {
        assert_eq!(
            canon(r#"{"z":1,"a":{"y":[],"b":null},"a":{"d":true,"c":false}}"#),
            r#"{"a":{"c":false,"d":true},"z":1}"#
        );
        // Byte order: "B" < "a" < "é"; escapes are decoded before comparing.
        assert_eq!(
            canon(r#"{"é":1,"a":2,"B":3,"\u0061":4}"#),
            r#"{"B":3,"a":4,"é":1}"#
        );
        assert_eq!(canon("{ }"), "{}");
    }

    #[test]
    fn syntax_errors_are_refused_with_their_offset() {
        for bad in [
            "",
            "[",
            "[1,]",
            "[1 2]",
            "{\"a\"}",
            "{\"a\":1,}",
            "{1:2}",
            "tru",
            "nul",
            "\"a",
            "\"\\x\"",
            "\"\\u12\"",
            "\"a\u{1}\"",
            "[1] x",
            "[1][2]",
        ] {
            assert!(Json::parse(bad).is_err(), "{bad:?}");
        }
        let err = Json::parse("[1, x]").unwrap_err();
        assert_eq!(err.offset, 4);
    }

    #[test]
    fn nesting_is_limited_like_go_and_never_recurses() {
        let deep = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert_eq!(Json::parse(&deep).unwrap().text(), deep);
        let too_deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert!(Json::parse(&too_deep).is_err());
    }

    #[test]
    fn object_path_names_the_first_object_through_arrays() {
        let json = Json::parse(r#"["x",[["y",{"a":"[{"}]]]"#).unwrap();
        assert_eq!(json.object_path().as_deref(), Some("[1][0][1]"));
        let json = Json::parse(r#"["{",["[",",{"]]"#).unwrap();
        assert_eq!(json.object_path(), None);
    }

    #[test]
    fn equality_is_by_canonical_text() {
        assert_eq!(Json::parse(r#""\u0061""#), Json::parse(r#""a""#));
        assert_ne!(Json::parse("1.0").unwrap(), Json::parse("1").unwrap());
        assert_ne!(Json::parse("1E5").unwrap(), Json::parse("100000").unwrap());
    }
}
