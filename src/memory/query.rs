//! Turning what a user typed into a safe search.
//!
//! User text is never interpreted as FTS5 syntax: every word becomes an FTS5 string
//! (double-quoted, inner quotes doubled), so `AND`, `NEAR`, `-`, `:`, `^`, `*`, parentheses and
//! quotes are just characters, and the tokenizer drops the punctuation. Words are AND-ed
//! (FTS5's implicit operator); the last one matches as a prefix, so a query typed so far finds
//! what the user is heading for. A run of CJK characters inside a word becomes the phrase of
//! its bigrams (see [`super::grams`]), which matches wherever the run occurs as a substring.
//!
//! A query with something to look for but no letter or digit (`🚀`, `✅`, `->`) cannot go
//! through the word index, which keeps only letters and digits; it is searched for literally,
//! as typed, instead of listing unrelated memories.

use super::grams::{is_cjk, run_bigrams};

/// What a search looks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SearchText {
    /// Nothing typed: every memory, newest first.
    Everything,
    /// FTS5 MATCH expressions built from the words: `all` holds every word; `any`, for a
    /// query of two words or more, holds at least one (the fallback when no memory holds
    /// them all).
    Words { all: String, any: Option<String> },
    /// No letter or digit: memories whose text contains this, exactly as typed.
    Literal(String),
}

impl SearchText {
    pub fn parse(text: &str) -> SearchText {
        let terms = terms(text);
        if !terms.is_empty() {
            let any = (terms.len() >= 2).then(|| terms.join(" OR "));
            return SearchText::Words {
                all: terms.join(" "),
                any,
            };
        }
        let literal = text.trim_matches(|c: char| c.is_whitespace() || c == '\0');
        if literal.is_empty() {
            SearchText::Everything
        } else {
            SearchText::Literal(literal.to_owned())
        }
    }
}

/// The FTS5 query for `text` (every word), or `None` when it holds no searchable word
/// (blank, or no letter or digit at all).
pub fn fts_query(text: &str) -> Option<String> {
    let terms = terms(text);
    (!terms.is_empty()).then(|| terms.join(" "))
}

/// The FTS5 expression of each word of `text`, in order.
fn terms(text: &str) -> Vec<String> {
    // NUL splits words too: SQLite reads the MATCH expression as a C string, so a NUL inside
    // a quoted word would cut it off and leave the string unterminated (found by fuzzing).
    let mut terms: Vec<Term> = Vec::new();
    for word in text.split(|c: char| c.is_whitespace() || c == '\0') {
        split_word(word, &mut terms);
    }
    let Some(last) = terms.len().checked_sub(1) else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(terms.len());
    for (i, term) in terms.iter().enumerate() {
        let mut query = String::new();
        match term {
            Term::Word(word) => {
                push_string(&mut query, word);
                if i == last {
                    query.push('*');
                }
            }
            Term::Cjk(run) => {
                let grams = run_bigrams(run);
                push_string(&mut query, &grams.join(" "));
                // One character is the start of a bigram, or a run's last character.
                if run.len() == 1 {
                    query.push('*');
                }
            }
        }
        out.push(query);
    }
    out
}

enum Term {
    /// Text the word tokenizer splits itself (it may hold punctuation).
    Word(String),
    /// A run of CJK characters.
    Cjk(Vec<char>),
}

/// Splits one whitespace-separated word into CJK runs and the text between them; text with no
/// letter or digit tokenizes to nothing and is left out (FTS5 would treat it as an empty
/// phrase that matches nothing on its own).
fn split_word(word: &str, terms: &mut Vec<Term>) {
    let mut other = String::new();
    let mut run: Vec<char> = Vec::new();
    let flush_other = |other: &mut String, terms: &mut Vec<Term>| {
        if other.chars().any(char::is_alphanumeric) {
            terms.push(Term::Word(std::mem::take(other)));
        }
        other.clear();
    };
    for c in word.chars() {
        if is_cjk(c) {
            flush_other(&mut other, terms);
            run.push(c);
        } else {
            if !run.is_empty() {
                terms.push(Term::Cjk(std::mem::take(&mut run)));
            }
            other.push(c);
        }
    }
    flush_other(&mut other, terms);
    if !run.is_empty() {
        terms.push(Term::Cjk(run));
    }
}

fn push_string(query: &mut String, word: &str) {
    query.push('"');
    query.push_str(&word.replace('"', "\"\""));
    query.push('"');
}

#[cfg(test)]
mod tests {
    use super::{SearchText, fts_query};

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
    fn cjk_runs_become_bigram_phrases() {
        assert_eq!(fts_query("日本語").unwrap(), r#""日本 本語""#);
        assert_eq!(fts_query("中").unwrap(), r#""中"*"#);
        assert_eq!(
            fts_query("Dagger的配置 guide").unwrap(),
            r#""Dagger" "的配 配置" "guide"*"#
        );
    }

    #[test]
    fn text_without_words_is_no_query() {
        assert_eq!(fts_query(""), None);
        assert_eq!(fts_query(" \t\n"), None);
        assert_eq!(fts_query(r#"* - " ( ) % _ ^ :"#), None);
        assert_eq!(fts_query("🚀"), None);
    }

    #[test]
    fn symbols_are_searched_literally_and_blank_lists() {
        assert_eq!(SearchText::parse(" 🚀 "), SearchText::Literal("🚀".into()));
        assert_eq!(SearchText::parse("  "), SearchText::Everything);
        assert_eq!(
            SearchText::parse("deploy"),
            SearchText::Words {
                all: r#""deploy"*"#.into(),
                any: None
            }
        );
        assert_eq!(
            SearchText::parse("who owns"),
            SearchText::Words {
                all: r#""who" "owns"*"#.into(),
                any: Some(r#""who" OR "owns"*"#.into())
            }
        );
    }
}
