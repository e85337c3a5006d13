//! Turning what a user typed into what a search looks for, whatever the engine.
//!
//! A query is split into words (at white space and NUL) and, inside words, into runs of CJK
//! characters, which have no spaces (see [`super::grams`]). Which of them are scored, and
//! how, is the ranking's business (`rank.rs`); the last word may match as a prefix, so a
//! query typed so far finds what the user is heading for. The storage backend turns these terms into its own query language and must never let
//! user text act as syntax (SQLite: every word becomes a quoted FTS5 string).
//!
//! A query with something to look for but no letter or digit (`🚀`, `✅`, `->`) cannot go
//! through a word index, which keeps only letters and digits; it is searched for literally,
//! as typed, instead of listing unrelated memories.

use super::grams::is_cjk;

/// What a search looks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SearchText {
    /// Nothing typed: every memory, newest first.
    Everything,
    /// The query's terms, in order, ranked as `rank.rs` says.
    Words(Vec<Term>),
    /// No letter or digit: memories whose text contains this, exactly as typed.
    Literal(String),
}

/// One term of a query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Term {
    /// Text the backend's word tokenizer splits itself (it may hold punctuation).
    Word(String),
    /// A run of CJK characters, matched as a substring through its bigrams.
    Cjk(Vec<char>),
}

impl SearchText {
    /// Reads what the user typed.
    pub fn parse(text: &str) -> SearchText {
        let terms = terms(text);
        if !terms.is_empty() {
            return SearchText::Words(terms);
        }
        let literal = text.trim_matches(|c: char| c.is_whitespace() || c == '\0');
        if literal.is_empty() {
            SearchText::Everything
        } else {
            SearchText::Literal(literal.to_owned())
        }
    }
}

/// Whether `query` may still be being typed: it does not end like a sentence ("?", "!", ".").
/// Then its last word also matches as a prefix; a finished question's last word does not
/// ("Where did I go?" must not find "good" and "Google").
pub fn open_end(query: &str) -> bool {
    !query
        .trim_end_matches(|c: char| c.is_whitespace() || c == '\0')
        .ends_with(['?', '!', '.', '？', '！', '。'])
}

/// The terms of `text`, in order.
pub fn terms(text: &str) -> Vec<Term> {
    // NUL splits words too: SQLite reads a MATCH expression as a C string, so a NUL inside a
    // word would cut it off (found by fuzzing), and no engine wants it.
    let mut terms: Vec<Term> = Vec::new();
    for word in text.split(|c: char| c.is_whitespace() || c == '\0') {
        split_word(word, &mut terms);
    }
    terms
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

#[cfg(test)]
mod tests {
    use super::{SearchText, Term};

    #[test]
    fn symbols_are_searched_literally_and_blank_lists() {
        assert_eq!(SearchText::parse(" 🚀 "), SearchText::Literal("🚀".into()));
        assert_eq!(SearchText::parse("  "), SearchText::Everything);
        assert_eq!(
            SearchText::parse("deploy"),
            SearchText::Words(vec![Term::Word("deploy".into())])
        );
        assert_eq!(
            SearchText::parse("Dagger的配置 a\0b"),
            SearchText::Words(vec![
                Term::Word("Dagger".into()),
                Term::Cjk("的配置".chars().collect()),
                Term::Word("a".into()),
                Term::Word("b".into()),
            ])
        );
    }

    #[test]
    fn text_without_words_has_no_terms() {
        assert_eq!(super::terms(r#"* - " ( ) % _ ^ :"#), vec![]);
        assert_eq!(super::terms("🚀"), vec![]);
    }
}
