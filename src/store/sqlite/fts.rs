//! The SQLite side of memory search: a ranking plan's phrases as FTS5 MATCH expressions.
//!
//! User text is never interpreted as FTS5 syntax: every phrase becomes an FTS5 string
//! (double-quoted, inner quotes doubled), so `AND`, `NEAR`, `-`, `:`, `^`, `*`, parentheses and
//! quotes are just characters, and the tokenizer drops the punctuation. A run of CJK
//! characters becomes the phrase of its bigrams, matched against the `grams` column. The
//! phrases are OR-ed: a memory holding any of them is a candidate, and the ranking decides
//! (`memory/rank.rs`).

use crate::memory::{QueryPhrase, Ranking, Term, open_end, run_bigrams, terms};

/// The FTS5 expression a search for `text` matches, or `None` when it holds no searchable
/// word (blank, or no letter or digit at all).
pub fn fts5_query(text: &str) -> Option<String> {
    let terms = terms(text);
    let plan = Ranking::plan(&terms, open_end(text));
    (!plan.phrases.is_empty()).then(|| any(&plan.phrases))
}

/// The MATCH expression for memories holding any of `phrases`.
pub(crate) fn any<'a>(phrases: impl IntoIterator<Item = &'a QueryPhrase>) -> String {
    phrases
        .into_iter()
        .map(phrase)
        .collect::<Vec<_>>()
        .join(" OR ")
}

/// One phrase as an FTS5 string, with `*` when it is a prefix.
fn phrase(phrase: &QueryPhrase) -> String {
    let mut query = String::new();
    match &phrase.term {
        Term::Word(word) => push_string(&mut query, word),
        Term::Cjk(run) => push_string(&mut query, &run_bigrams(run).join(" ")),
    }
    if phrase.prefix {
        query.push('*');
    }
    query
}

fn push_string(query: &mut String, word: &str) {
    query.push('"');
    query.push_str(&word.replace('"', "\"\""));
    query.push('"');
}

#[cfg(test)]
mod tests {
    use super::fts5_query;

    #[test]
    fn nul_bytes_split_words() {
        // The fuzzer's input: "8\u{fffd}\0\0" made FTS5 fail with "unterminated string".
        assert_eq!(
            fts5_query("8\u{fffd}\0\0").as_deref(),
            Some("\"8\u{fffd}\"*")
        );
        assert_eq!(fts5_query("x\0b").as_deref(), Some("\"x\" OR \"b\"*"));
    }

    #[test]
    fn words_are_quoted_and_the_last_is_a_prefix_until_a_sentence_ends() {
        assert_eq!(fts5_query("rust sqlite").unwrap(), r#""rust" OR "sqlite"*"#);
        assert_eq!(fts5_query("  single ").unwrap(), r#""single"*"#);
        assert_eq!(fts5_query("who owns").unwrap(), r#""owns"*"#);
        assert_eq!(
            fts5_query("Where did the children go?").unwrap(),
            r#""children" OR "child" OR "go" OR "goes" OR "went" OR "gone""#
        );
    }

    #[test]
    fn syntax_is_quoted_away() {
        assert_eq!(
            fts5_query(r#"x "b" NEAR(c) -dd"#).unwrap(),
            r#""x" OR "b" OR "NEAR(c)" OR "dd"*"#
        );
    }

    #[test]
    fn cjk_runs_become_bigram_phrases() {
        assert_eq!(fts5_query("日本語").unwrap(), r#""日本 本語""#);
        assert_eq!(fts5_query("中").unwrap(), r#""中"*"#);
        assert_eq!(
            fts5_query("Dagger的配置 guide").unwrap(),
            r#""dagger" OR "的配 配置" OR "guide"*"#
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
