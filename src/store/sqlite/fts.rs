//! The SQLite side of memory search: a query's terms as an FTS5 MATCH expression.
//!
//! User text is never interpreted as FTS5 syntax: every word becomes an FTS5 string
//! (double-quoted, inner quotes doubled), so `AND`, `NEAR`, `-`, `:`, `^`, `*`, parentheses and
//! quotes are just characters, and the tokenizer drops the punctuation. Words are AND-ed
//! (FTS5's implicit operator); the last one matches as a prefix. A run of CJK characters
//! becomes the phrase of its bigrams, matched against the `grams` column.

use crate::memory::{Term, run_bigrams, terms};

/// The FTS5 expression requiring every term of `text`, or `None` when it holds no searchable
/// word (blank, or no letter or digit at all).
pub fn fts5_query(text: &str) -> Option<String> {
    let terms = terms(text);
    (!terms.is_empty()).then(|| all(&terms))
}

/// The MATCH expression requiring every term.
pub(crate) fn all(terms: &[Term]) -> String {
    phrases(terms).join(" ")
}

/// The MATCH expression requiring any term (the fallback when nothing holds them all).
pub(crate) fn any(terms: &[Term]) -> String {
    phrases(terms).join(" OR ")
}

/// The FTS5 phrase of each term, in order; the last one a prefix.
fn phrases(terms: &[Term]) -> Vec<String> {
    let last = terms.len().saturating_sub(1);
    terms
        .iter()
        .enumerate()
        .map(|(i, term)| {
            let mut query = String::new();
            match term {
                Term::Word(word) => {
                    push_string(&mut query, word);
                    if i == last {
                        query.push('*');
                    }
                }
                Term::Cjk(run) => {
                    push_string(&mut query, &run_bigrams(run).join(" "));
                    // One character is the start of a bigram, or a run's last character.
                    if run.len() == 1 {
                        query.push('*');
                    }
                }
            }
            query
        })
        .collect()
}

fn push_string(query: &mut String, word: &str) {
    query.push('"');
    query.push_str(&word.replace('"', "\"\""));
    query.push('"');
}

#[cfg(test)]
mod tests {
    use super::{any, fts5_query};
    use crate::memory::terms;

    #[test]
    fn nul_bytes_split_words() {
        // The fuzzer's input: "8\u{fffd}\0\0" made FTS5 fail with "unterminated string".
        assert_eq!(
            fts5_query("8\u{fffd}\0\0").as_deref(),
            Some("\"8\u{fffd}\"*")
        );
        assert_eq!(fts5_query("a\0b").as_deref(), Some("\"a\" \"b\"*"));
    }

    #[test]
    fn words_are_quoted_and_the_last_is_a_prefix() {
        assert_eq!(fts5_query("rust sqlite").unwrap(), r#""rust" "sqlite"*"#);
        assert_eq!(fts5_query("  single ").unwrap(), r#""single"*"#);
        assert_eq!(any(&terms("who owns")), r#""who" OR "owns"*"#);
    }

    #[test]
    fn syntax_is_quoted_away() {
        assert_eq!(
            fts5_query(r#"a "b" NEAR(c) -d"#).unwrap(),
            r#""a" """b""" "NEAR(c)" "-d"*"#
        );
    }

    #[test]
    fn cjk_runs_become_bigram_phrases() {
        assert_eq!(fts5_query("日本語").unwrap(), r#""日本 本語""#);
        assert_eq!(fts5_query("中").unwrap(), r#""中"*"#);
        assert_eq!(
            fts5_query("Dagger的配置 guide").unwrap(),
            r#""Dagger" "的配 配置" "guide"*"#
        );
    }

    #[test]
    fn text_without_words_is_no_query() {
        assert_eq!(fts5_query(""), None);
        assert_eq!(fts5_query(" \t\n"), None);
        assert_eq!(fts5_query(r#"* - " ( ) % _ ^ :"#), None);
        assert_eq!(fts5_query("🚀"), None);
    }
}
