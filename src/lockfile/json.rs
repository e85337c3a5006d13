//! A JSON value that remembers how it was spelled.
//!
//! `dagger.lock` is checked into git and written by other tools too, so rewriting it must not
//! respell what it holds: `1.50`, `1E5` or `"\u0026"` stay exactly as written. Only
//! insignificant whitespace is dropped, which is what makes an entry "compact".

use std::fmt;

use serde_json::Value;

/// A parsed JSON value plus its exact compact text.
///
/// Equality is by value, so two spellings of the same document are equal; the text is what
/// gets written back.
#[derive(Clone, Debug)]
pub struct Json {
    value: Value,
    text: String,
}

impl Json {
    /// Parses one JSON document, keeping its spelling minus insignificant whitespace.
    pub fn parse(text: &str) -> Result<Json, serde_json::Error> {
        let value: Value = serde_json::from_str(text)?;
        Ok(Json {
            value,
            text: compact(text),
        })
    }

    /// A value built in code, spelled the way serde_json writes it.
    pub fn from_value(value: Value) -> Json {
        let text = value.to_string();
        Json { value, text }
    }

    pub fn value(&self) -> &Value {
        &self.value
    }

    /// The compact text, as it is written to the file.
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn into_value(self) -> Value {
        self.value
    }
}

impl PartialEq for Json {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

impl fmt::Display for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl From<Value> for Json {
    fn from(value: Value) -> Json {
        Json::from_value(value)
    }
}

/// Drops JSON whitespace outside strings. `text` must already be valid JSON.
fn compact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in text.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_spelling_and_drops_only_whitespace() {
        let json =
            Json::parse(" [ 1.50 , 1E5, -0, \"a \\\" b\\u0026\", {\"k\" : [ ] } ] ").unwrap();
        assert_eq!(json.text(), r#"[1.50,1E5,-0,"a \" b\u0026",{"k":[]}]"#);
    }

    #[test]
    fn equality_is_by_value() {
        assert_eq!(
            Json::parse(r#""\u0061""#).unwrap(),
            Json::parse(r#""a""#).unwrap()
        );
        assert_ne!(Json::parse("1.0").unwrap(), Json::parse("1").unwrap());
    }
}
