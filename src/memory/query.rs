//! Turning what a user typed into a safe FTS5 query.
//!
//! User text is never interpreted as FTS5 syntax: every whitespace-separated word becomes an
//! FTS5 string (double-quoted, inner quotes doubled), so `AND`, `NEAR`, `-`, `:`, `^`, `*`,
//! parentheses and quotes are just characters, and the tokenizer drops the punctuation. Words
//! are AND-ed (FTS5's implicit operator) and the last one matches as a prefix, so a query
//! typed so far finds what the user is heading for.

/// The FTS5 query for `text`, or `None` when it holds no searchable word (blank, or
/// punctuation only) — callers then list instead of searching.
pub fn fts_query(text: &str) -> Option<String> {
    // A word with no letter or digit tokenizes to nothing; FTS5 would treat it as an empty
    // phrase that matches nothing on its own, so it is left out.
    // NUL splits words too: SQLite reads the MATCH expression as a C string, so a NUL inside
    // a quoted word would cut it off and leave the string unterminated (found by fuzzing).
    let words: Vec<&str> = text
        .split(|c: char| c.is_whitespace() || c == '\0')
        .filter(|word| word.chars().any(char::is_alphanumeric))
        .collect();
    let (last, rest) = words.split_last()?;
    let mut query = String::new();
    for word in rest {
        push_string(&mut query, word);
        query.push(' ');
    }
    push_string(&mut query, last);
    query.push('*');
    Some(query)
}

fn push_string(query: &mut String, word: &str) {
    query.push('"');
    query.push_str(&word.replace('"', "\"\""));
    query.push('"');
}

#[cfg(test)]
mod tests {
    use super::fts_query;

    #[test]
    fn nul_bytes_split_words() {
        // The fuzzer's input: "8\u{fffd}\0\0" made FTS5 fail with "unterminated string".
        assert_eq!(
            fts_query("8\u{fffd}\0\0").as_deref(),
            Some("\"8\u{fffd}\"*")
        );
        assert_eq!(fts_query("a\0b").as_deref(), Some("\"a\" \"b\"*"));
    }

    #[test]
    fn words_are_quoted_and_the_last_is_a_prefix() {
        assert_eq!(fts_query("rust sqlite").unwrap(), r#""rust" "sqlite"*"#);
        assert_eq!(fts_query("  single ").unwrap(), r#""single"*"#);
    }

    #[test]
    fn syntax_is_quoted_away() {
        assert_eq!(
            fts_query(r#"a "b" NEAR(c) -d"#).unwrap(),
            r#""a" """b""" "NEAR(c)" "-d"*"#
        );
    }

    #[test]
    fn text_without_words_is_no_query() {
        assert_eq!(fts_query(""), None);
        assert_eq!(fts_query(" \t\n"), None);
        assert_eq!(fts_query(r#"* - " ( ) % _ ^ :"#), None);
    }
}
