//! Full-text search on PostgreSQL: what is indexed, how a query's terms become a `tsquery`,
//! and the ranking.
//!
//! * **Indexed text.** [`indexed_text`]: the CJK bigrams (`grams`) of a memory that has any,
//!   else its body, with every character that is not a letter or digit replaced by a space.
//!   PostgreSQL's default parser keeps `foo.example.com`, `/usr/lib/x.so` or `v1.2.3` whole
//!   (and adds the parts of hyphenated words as extra tokens); SQLite's `unicode61` splits
//!   them into words. With only letters, digits and spaces left, both see the same words at
//!   the same positions. The `search` column is `to_tsvector('modstate_search', text)`,
//!   written with the row.
//! * **Query.** Each term is normalized the same way and sent to the server, which returns its
//!   lexemes (so stemming and accent folding are the server's, as for the rows). The
//!   `tsquery` is then written here from those lexemes, each one quoted: user text never
//!   reaches query syntax. A term is a phrase of its lexemes (`<->`); the last word is a
//!   prefix (`:*`), and so is a lone CJK character; phrases are joined by `|` (any of them).
//!   The GIN index on `search` finds the candidates.
//! * **Ranking.** [`crate::memory::Scorer`], the formula SQLite uses, from features computed
//!   here from each candidate's vector: the positions where each phrase occurs, and the length
//!   of the text; the statistics (memories, tokens, each term's document frequency) from
//!   `memory_search_totals`, kept by triggers, and counts through the GIN index, or from the
//!   cursor on later pages, so a cursor over (score, id) is exact, and both engines order the
//!   same data the same way.
//!
//! Known differences from SQLite, all in the stemmer: the schema stems with Snowball English
//! (Porter2), SQLite with the original Porter, so a few forms stem apart ("uses": "use" here,
//! "us" there; "days": "day" / "dai"; "tes": "tes" / "te"), which changes what some prefixes
//! and words find. Snowball's `porter` language would remove these but stems two-letter
//! words ("is" → "i", "os" → "o", which SQLite leaves alone), so a last word "is" would find
//! every word starting with "i": worse. And a phrase past the 16383rd word of a memory is not
//! found (the server caps positions); such a memory is ranked exactly when it is found.

use std::collections::HashMap;

use postgres::Transaction;
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::ToSql;

use super::errors::PgContext;
use super::memories::{Args, COLUMNS, FROM, memory_from_row, push_filter};
use crate::error::{Error, Result};
use crate::memory::{
    Cursor, Features, Hit, MemoryFilter, QueryPhrase, Ranking, SearchMode, Statistics, Term,
    run_bigrams,
};

/// The text whose vector is stored in `search`: the grams when the memory has CJK text (they
/// hold every word of the body, split apart), else the body; letters and digits only.
pub(crate) fn indexed_text(body: &str, grams: &str) -> String {
    normalize(if grams.is_empty() { body } else { grams })
}

/// Every character that is not a letter or digit replaced by a space, so the server's parser
/// sees words and numbers only, as SQLite's `unicode61` tokenizer does.
fn normalize(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_alphanumeric() { c } else { ' ' })
        .collect()
}

/// One entry of a `tsvector`'s text form: a lexeme and its positions (1-based; weights
/// dropped).
pub(crate) type Entry = (String, Vec<u32>);

/// Parses a `tsvector`'s text form, `'lex':1,5 'other':2A 'bare'`: quoted lexemes (`''` and
/// `\x` escapes), each with optional positions, each position with an optional weight
/// letter. Returns `None` on anything else.
pub(crate) fn parse_tsvector(text: &str) -> Option<Vec<Entry>> {
    let mut entries = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        let Some(first) = chars.next() else {
            return Some(entries);
        };
        if first != '\'' {
            return None;
        }
        let mut lexeme = String::new();
        loop {
            match chars.next()? {
                '\\' => lexeme.push(chars.next()?),
                '\'' if chars.peek() == Some(&'\'') => {
                    chars.next();
                    lexeme.push('\'');
                }
                '\'' => break,
                c => lexeme.push(c),
            }
        }
        let mut positions = Vec::new();
        if chars.peek() == Some(&':') {
            chars.next();
            loop {
                let mut digits = String::new();
                while let Some(c) = chars.peek().filter(|c| c.is_ascii_digit()) {
                    digits.push(*c);
                    chars.next();
                }
                positions.push(digits.parse().ok()?);
                if chars.peek().is_some_and(|c| matches!(c, 'A'..='D')) {
                    chars.next();
                }
                if chars.peek() == Some(&',') {
                    chars.next();
                } else {
                    break;
                }
            }
        }
        match chars.peek() {
            None | Some(' ') => entries.push((lexeme, positions)),
            Some(_) => return None,
        }
    }
}

/// The lexemes of a vector in text order (the vector of a query term).
fn in_order(entries: &[Entry]) -> Vec<String> {
    let mut at: Vec<(u32, &str)> = entries
        .iter()
        .flat_map(|(lexeme, positions)| positions.iter().map(move |p| (*p, lexeme.as_str())))
        .collect();
    at.sort();
    at.into_iter()
        .map(|(_, lexeme)| lexeme.to_owned())
        .collect()
}

/// A query term as the server's lexemes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Phrase {
    /// Its lexemes, in order; empty when the server found no word in it.
    pub lexemes: Vec<String>,
    /// Whether its last lexeme matches as a prefix.
    pub prefix: bool,
}

/// The text of each phrase of the plan to send to the server, and whether it is a prefix.
fn phrase_texts(phrases: &[QueryPhrase]) -> Vec<(String, bool)> {
    phrases
        .iter()
        .map(|phrase| match &phrase.term {
            Term::Word(word) => (normalize(word), phrase.prefix),
            Term::Cjk(run) => (normalize(&run_bigrams(run).join(" ")), phrase.prefix),
        })
        .collect()
}

/// The plan's phrases, their lexemes from the server in one round trip.
fn phrases(tx: &mut Transaction<'_>, plan: &[QueryPhrase]) -> Result<Vec<Phrase>> {
    let texts = phrase_texts(plan);
    let input: Vec<&str> = texts.iter().map(|(t, _)| t.as_str()).collect();
    let rows = tx
        .query(
            "SELECT to_tsvector('modstate_search', t)::text
             FROM unnest($1::text[]) WITH ORDINALITY AS u(t, i) ORDER BY i",
            &[&input],
        )
        .context("reading the query's words")?;
    if rows.len() != texts.len() {
        return Err(Error::Invalid(
            "the server returned the wrong number of query terms".to_owned(),
        ));
    }
    rows.iter()
        .zip(&texts)
        .map(|(row, (_, prefix))| {
            let vector: String = row.try_get(0).context("reading the query's words")?;
            let entries = parse_tsvector(&vector).ok_or_else(|| bad_vector(&vector))?;
            Ok(Phrase {
                lexemes: in_order(&entries),
                prefix: *prefix,
            })
        })
        .collect()
}

fn bad_vector(text: &str) -> Error {
    let mut shown: String = text.chars().take(60).collect();
    if shown.len() < text.len() {
        shown.push('…');
    }
    Error::Integrity(format!(
        "the server returned a text search vector this build cannot read: {shown:?}"
    ))
}

/// One lexeme as a `tsquery` operand: quoted, with `'` doubled and `\` escaped, so that no
/// character of it is query syntax.
fn quote(lexeme: &str) -> String {
    let mut out = String::with_capacity(lexeme.len() + 2);
    out.push('\'');
    for c in lexeme.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// A phrase as a parenthesized `tsquery`, or `None` when it has no lexeme.
fn phrase_query(phrase: &Phrase) -> Option<String> {
    if phrase.lexemes.is_empty() {
        return None;
    }
    let last = phrase.lexemes.len() - 1;
    let parts: Vec<String> = phrase
        .lexemes
        .iter()
        .enumerate()
        .map(|(i, lexeme)| {
            let mut operand = quote(lexeme);
            if phrase.prefix && i == last {
                operand.push_str(":*");
            }
            operand
        })
        .collect();
    Some(format!("({})", parts.join(" <-> ")))
}

/// The `tsquery` text requiring every phrase (`all`) or any of them; `None` when it can match
/// nothing (every phrase required and one without a word, or no phrase with a word).
pub(crate) fn tsquery(phrases: &[Phrase], all: bool) -> Option<String> {
    let parts: Vec<Option<String>> = phrases.iter().map(phrase_query).collect();
    if all && parts.iter().any(Option::is_none) {
        return None;
    }
    let parts: Vec<String> = parts.into_iter().flatten().collect();
    if parts.is_empty() {
        return None;
    }
    Some(parts.join(if all { " & " } else { " | " }))
}

/// The ranking features of a memory whose vector is `entries`, for `phrases`: each place a
/// phrase's lexemes occur at consecutive positions (a prefix lexeme matching any lexeme it
/// starts), and the number of words in the indexed text.
pub(crate) fn features(entries: &[Entry], phrases: &[Phrase]) -> Features {
    let count: usize = entries.iter().map(|(_, positions)| positions.len()).sum();
    let last = entries
        .iter()
        .filter_map(|(_, positions)| positions.iter().max())
        .max()
        .copied()
        .unwrap_or(0);
    let matches = |lexeme: &str, wanted: &str, prefix: bool| {
        if prefix {
            lexeme.starts_with(wanted)
        } else {
            lexeme == wanted
        }
    };
    // Every (position, lexeme), by position: only needed for phrases of several lexemes.
    let mut by_position: Option<Vec<(u32, &str)>> = None;
    let mut instances = Vec::new();
    for (index, phrase) in phrases.iter().enumerate() {
        let Some((first, rest)) = phrase.lexemes.split_first() else {
            continue;
        };
        let final_lexeme = phrase.lexemes.len() - 1;
        let starts = entries
            .iter()
            .filter(|(lexeme, _)| matches(lexeme, first, phrase.prefix && final_lexeme == 0))
            .flat_map(|(_, positions)| positions.iter().copied());
        if rest.is_empty() {
            instances.extend(starts.map(|start| (index, start as usize)));
            continue;
        }
        let tokens = by_position.get_or_insert_with(|| {
            let mut tokens: Vec<(u32, &str)> = entries
                .iter()
                .flat_map(|(lexeme, positions)| {
                    positions.iter().map(move |p| (*p, lexeme.as_str()))
                })
                .collect();
            tokens.sort_unstable();
            tokens
        });
        let at = |position: u32, wanted: &str, prefix: bool| {
            let from = tokens.partition_point(|(p, _)| *p < position);
            tokens[from..]
                .iter()
                .take_while(|(p, _)| *p == position)
                .any(|(_, lexeme)| matches(lexeme, wanted, prefix))
        };
        for start in starts {
            let found = rest.iter().enumerate().all(|(j, wanted)| {
                u32::try_from(j + 1)
                    .ok()
                    .and_then(|j| start.checked_add(j))
                    .is_some_and(|p| at(p, wanted, phrase.prefix && j + 1 == final_lexeme))
            });
            if found {
                instances.push((index, start as usize));
            }
        }
    }
    instances.sort_unstable_by_key(|&(phrase, offset)| (offset, phrase));
    Features {
        phrase_sizes: phrases.iter().map(|p| p.lexemes.len()).collect(),
        instances,
        // No stop words: positions run 1..=n, so the last is the number of words. The count
        // covers a vector whose positions the server capped (16383, 255 per lexeme).
        length: (last as usize).max(count),
    }
}

/// Whether the server capped the vector's positions: it keeps at most 255 positions of one
/// lexeme, and none past 16383. Only a very long or very repetitive memory is capped.
fn is_capped(entries: &[Entry]) -> bool {
    entries.iter().any(|(_, positions)| {
        positions.len() >= MAX_POSITIONS || positions.iter().any(|p| *p >= MAX_POSITION)
    })
}

/// Positions the server keeps per lexeme, and the largest position it stores.
const MAX_POSITIONS: usize = 255;
const MAX_POSITION: u32 = 16383;

/// The vectors of memories `ids` without the server's caps: every word of each one's indexed
/// text with its lexemes, in order (`ts_debug`), so a capped memory ranks as SQLite ranks it.
/// A token the configuration maps (not a space) takes the next position, as in
/// `to_tsvector`. Two round trips for all of them.
fn exact_entries(tx: &mut Transaction<'_>, ids: &[String]) -> Result<Vec<(String, Vec<Entry>)>> {
    let what = "ranking long memories";
    let rows = tx
        .query(
            "SELECT id, body, grams FROM memories WHERE id = ANY($1)",
            &[&ids],
        )
        .context(what)?;
    let mut found = Vec::with_capacity(rows.len());
    let mut texts = Vec::with_capacity(rows.len());
    for row in &rows {
        let id: String = row.try_get(0).context(what)?;
        let body: &str = row.try_get(1).context(what)?;
        let grams: &str = row.try_get(2).context(what)?;
        texts.push(indexed_text(body, grams));
        found.push((id, HashMap::<String, Vec<u32>>::new(), 0u32));
    }
    let rows = tx
        .query(
            "SELECT t.n, d.lexemes
             FROM unnest($1::text[]) WITH ORDINALITY AS t(text, n),
                  ts_debug('modstate_search', t.text) WITH ORDINALITY
                      AS d(alias, description, token, dictionaries, dictionary, lexemes, i)
             ORDER BY t.n, d.i",
            &[&texts],
        )
        .context(what)?;
    for row in &rows {
        let n: i64 = row.try_get(0).context(what)?;
        let lexemes: Option<Vec<String>> = row.try_get(1).context(what)?;
        let (Some(lexemes), Some((_, positions, position))) = (
            lexemes,
            usize::try_from(n - 1).ok().and_then(|i| found.get_mut(i)),
        ) else {
            continue;
        };
        *position = position.saturating_add(1);
        for lexeme in lexemes {
            positions.entry(lexeme).or_default().push(*position);
        }
    }
    Ok(found
        .into_iter()
        .map(|(id, positions, _)| (id, positions.into_iter().collect()))
        .collect())
}

/// One page (plus one row) of a search in `mode`, inside the caller's read transaction, and
/// the statistics a ranked one was scored with (the cursor's, else read now).
pub(crate) fn search_rows(
    tx: &mut Transaction<'_>,
    mode: &SearchMode,
    filter: &MemoryFilter,
    cursor: Option<&Cursor>,
) -> Result<(Vec<Hit>, Option<Statistics>)> {
    match mode {
        SearchMode::Ranked(plan) => ranked(tx, plan, filter, cursor),
        SearchMode::Literal(literal) => Ok((newest(tx, Some(literal), filter, cursor)?, None)),
        SearchMode::Everything => Ok((newest(tx, None, filter, cursor)?, None)),
    }
}

/// The statistics of a ranked search as of the caller's transaction: the totals the schema
/// keeps (`memory_search_totals`, maintained by triggers in every memory write) and each
/// scored term's document frequency, counted through the GIN index in one round trip.
///
/// Expired and superseded memories, which no read shows, are left out: the totals of the rows
/// they have (few, found through their partial indexes) are taken off the kept totals, and
/// each term counts only the memories a search can return.
fn statistics(tx: &mut Transaction<'_>, phrases: &[Phrase]) -> Result<Statistics> {
    let what = "reading the search statistics";
    let now = crate::time::now_rfc3339();
    let row = tx
        .query_one(
            "SELECT t.memories - h.n, t.tokens - h.tokens
             FROM memory_search_totals t,
                  (SELECT count(*) AS n,
                          coalesce(sum(modstate_search_length(search, body, grams)), 0)::bigint AS tokens
                   FROM memories
                   WHERE (expires_at IS NOT NULL AND expires_at <= $1::text)
                      OR superseded_by IS NOT NULL) h
             WHERE t.singleton = 0",
            &[&now],
        )
        .context(what)?;
    let memories: i64 = row.try_get(0).context(what)?;
    let tokens: i64 = row.try_get(1).context(what)?;
    // One query per phrase; a phrase that holds no word matches nothing.
    let queries: Vec<Option<String>> = phrases
        .iter()
        .map(|phrase| tsquery(std::slice::from_ref(phrase), false))
        .collect();
    let rows = tx
        .query(
            "SELECT CASE WHEN q IS NULL THEN 0
                    ELSE (SELECT count(*) FROM memories WHERE search @@ q::tsquery
                            AND (expires_at IS NULL OR expires_at > $2::text)
                            AND superseded_by IS NULL) END
             FROM unnest($1::text[]) WITH ORDINALITY AS u(q, i) ORDER BY i",
            &[&queries, &now],
        )
        .context(what)?;
    let frequencies = rows
        .iter()
        .map(|r| {
            r.try_get::<_, i64>(0)
                .map(|n| u64::try_from(n).unwrap_or(0))
        })
        .collect::<std::result::Result<Vec<u64>, _>>()
        .context(what)?;
    Ok(Statistics {
        memories: u64::try_from(memories).unwrap_or(0),
        tokens: u64::try_from(tokens).unwrap_or(0),
        frequencies,
    })
}

/// Unranked modes: every memory, or those whose body holds `literal` as typed; newest first.
fn newest(
    tx: &mut Transaction<'_>,
    literal: Option<&str>,
    filter: &MemoryFilter,
    cursor: Option<&Cursor>,
) -> Result<Vec<Hit>> {
    if literal.is_some_and(|l| l.contains('\0')) {
        // No body holds a NUL (it is refused on writes), and the server takes none.
        return Ok(Vec::new());
    }
    let mut args = Args::new(format!("SELECT {COLUMNS} FROM {FROM} WHERE true"));
    if let Some(literal) = literal {
        let p = args.push(literal.to_owned());
        args.sql.push_str(&format!(" AND strpos(m.body, {p}) > 0"));
    }
    push_filter(&mut args, filter);
    if let Some(cursor) = cursor {
        push_snapshot(&mut args, cursor);
        let p = args.push(cursor.id.clone());
        args.sql.push_str(&format!(" AND m.id < {p}"));
    }
    let p = args.push(probe_limit(filter.limit));
    args.sql.push_str(&format!(" ORDER BY m.id DESC LIMIT {p}"));
    let rows = tx
        .query(&args.sql, &args.params())
        .context("searching memories")?;
    rows.iter()
        .map(|r| {
            Ok(Hit {
                memory: memory_from_row(r, 0)?,
                score: 0.0,
            })
        })
        .collect()
}

/// Later pages see only what was there, unchanged, at the first page.
pub(super) fn push_snapshot(args: &mut Args, cursor: &Cursor) {
    let p = args.push(i64::try_from(cursor.snapshot).unwrap_or(i64::MAX));
    args.sql.push_str(&format!(" AND m.version <= {p}"));
}

/// The LIMIT for one row more than a page (to know whether more exist); NULL: no limit.
pub(crate) fn probe_limit(limit: Option<usize>) -> Option<i64> {
    limit.map(|n| i64::try_from(n.saturating_add(1)).unwrap_or(i64::MAX))
}

/// A ranked search: the candidates from the index, scored here, the winners' rows fetched.
fn ranked(
    tx: &mut Transaction<'_>,
    plan: &Ranking,
    filter: &MemoryFilter,
    cursor: Option<&Cursor>,
) -> Result<(Vec<Hit>, Option<Statistics>)> {
    let phrases = phrases(tx, &plan.phrases)?;
    let statistics = match cursor.and_then(|c| c.statistics.clone()) {
        Some(statistics) => statistics,
        None => statistics(tx, &phrases)?,
    };
    let scorer = plan.scorer(&statistics);
    let Some(text) = tsquery(&phrases, false) else {
        return Ok((Vec::new(), Some(statistics)));
    };
    let mut args = Args::new("SELECT m.id, m.search::text FROM memories m WHERE".to_owned());
    let p = args.push(text);
    args.sql
        .push_str(&format!(" m.search @@ {p}::text::tsquery"));
    push_filter(&mut args, filter);
    if let Some(cursor) = cursor {
        push_snapshot(&mut args, cursor);
    }
    let mut scored: Vec<(f64, String)> = Vec::new();
    let mut capped: Vec<String> = Vec::new();
    {
        let params = args.params();
        let mut rows = tx
            .query_raw(&args.sql, params.iter().copied())
            .context("searching memories")?;
        while let Some(row) = rows.next().context("searching memories")? {
            let id: String = row.try_get(0).context("searching memories")?;
            let vector: &str = row.try_get(1).context("searching memories")?;
            let entries = parse_tsvector(vector).ok_or_else(|| bad_vector(vector))?;
            if is_capped(&entries) {
                capped.push(id);
            } else {
                scored.push((scorer.score(&features(&entries, &phrases)), id));
            }
        }
    }
    if !capped.is_empty() {
        for (id, entries) in exact_entries(tx, &capped)? {
            scored.push((scorer.score(&features(&entries, &phrases)), id));
        }
    }
    if let Some(c) = cursor {
        scored.retain(|(score, id)| *score < c.score || (*score == c.score && *id < c.id));
    }
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| b.1.cmp(&a.1)));
    if let Some(limit) = probe_limit(filter.limit) {
        scored.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    }
    if scored.is_empty() {
        return Ok((Vec::new(), Some(statistics)));
    }
    let ids: Vec<&str> = scored.iter().map(|(_, id)| id.as_str()).collect();
    let rows = tx
        .query(
            &format!("SELECT {COLUMNS} FROM {FROM} WHERE m.id = ANY($1)"),
            &[&ids as &(dyn ToSql + Sync)],
        )
        .context("searching memories")?;
    let mut found: HashMap<String, crate::memory::Memory> = HashMap::with_capacity(rows.len());
    for row in &rows {
        let memory = memory_from_row(row, 0)?;
        found.insert(memory.id.clone(), memory);
    }
    let hits = scored
        .into_iter()
        .filter_map(|(score, id)| found.remove(&id).map(|memory| Hit { memory, score }))
        .collect();
    Ok((hits, Some(statistics)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::terms;

    fn phrase(lexemes: &[&str], prefix: bool) -> Phrase {
        Phrase {
            lexemes: lexemes.iter().map(|l| (*l).to_owned()).collect(),
            prefix,
        }
    }

    #[test]
    fn indexed_text_keeps_letters_and_digits_only() {
        assert_eq!(
            indexed_text("see foo.example.com /usr/lib/x.so v1.2.3", ""),
            "see foo example com  usr lib x so v1 2 3"
        );
        assert_eq!(
            indexed_text("Dagger的配置", " Dagger 的配 "),
            " Dagger 的配 "
        );
        assert_eq!(indexed_text("café-au-lait", ""), "café au lait");
        assert_eq!(indexed_text("a'b\\c:*&|!", ""), "a b c     ");
    }

    #[test]
    fn tsvector_text_parses_with_positions_weights_and_escapes() {
        assert_eq!(
            parse_tsvector("'deploy':1,6 'x':3A,12B 'bare'"),
            Some(vec![
                ("deploy".to_owned(), vec![1, 6]),
                ("x".to_owned(), vec![3, 12]),
                ("bare".to_owned(), vec![]),
            ])
        );
        assert_eq!(
            parse_tsvector(r"'a''b\\c':2 'd':1"),
            Some(vec![
                ("a'b\\c".to_owned(), vec![2]),
                ("d".to_owned(), vec![1])
            ])
        );
        assert_eq!(parse_tsvector(""), Some(vec![]));
        assert_eq!(
            parse_tsvector("'日本':1 '本語':2"),
            Some(vec![
                ("日本".to_owned(), vec![1]),
                ("本語".to_owned(), vec![2])
            ])
        );
        for bad in ["deploy:1", "'open", "'a':x", "'a':1,", "'a'b"] {
            assert_eq!(parse_tsvector(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_term_vector_gives_its_lexemes_in_text_order() {
        let entries = parse_tsvector("'com':3 'exampl':2 'foo':1,4").unwrap();
        assert_eq!(in_order(&entries), ["foo", "exampl", "com", "foo"]);
    }

    #[test]
    fn terms_are_sent_normalized_and_the_last_word_is_a_prefix() {
        let texts = |query: &str| phrase_texts(&Ranking::plan(&terms(query), true).phrases);
        assert_eq!(
            texts("foo.example.com deploy"),
            [
                ("foo example com".to_owned(), false),
                ("deploy".to_owned(), true)
            ]
        );
        assert_eq!(
            texts("Dagger的配置"),
            [
                ("dagger".to_owned(), false),
                ("的配 配置".to_owned(), false)
            ]
        );
        assert_eq!(texts("中"), [("中".to_owned(), true)]);
    }

    #[test]
    fn lexemes_stay_literal_in_the_tsquery() {
        assert_eq!(quote("a'b\\c"), r"'a''b\\c'");
        let q = tsquery(
            &[phrase(&["a'b\\c"], false), phrase(&["foo:*", "&|!"], true)],
            true,
        );
        assert_eq!(q.as_deref(), Some(r"('a''b\\c') & ('foo:*' <-> '&|!':*)"));
        let q = tsquery(&[phrase(&["who"], false), phrase(&["own"], true)], false);
        assert_eq!(q.as_deref(), Some("('who') | ('own':*)"));
    }

    #[test]
    fn a_phrase_without_words_matches_nothing_when_required() {
        let empty = phrase(&[], false);
        assert_eq!(tsquery(&[empty.clone(), phrase(&["a"], true)], true), None);
        assert_eq!(
            tsquery(&[empty.clone(), phrase(&["a"], true)], false).as_deref(),
            Some("('a':*)")
        );
        assert_eq!(tsquery(&[empty], false), None);
        assert_eq!(tsquery(&[], true), None);
    }

    #[test]
    fn features_find_phrases_at_consecutive_positions() {
        // "Deploys to production happen on Fridays after the standup", query "deploy prod".
        let doc = parse_tsvector(
            "'after':7 'deploy':1 'friday':6 'happen':4 'on':5 'product':3 'standup':9 'the':8 'to':2",
        )
        .unwrap();
        let f = features(&doc, &[phrase(&["deploy"], false), phrase(&["prod"], true)]);
        assert_eq!(f.phrase_sizes, [1, 1]);
        assert_eq!(f.instances, [(0, 1), (1, 3)]);
        assert_eq!(f.length, 9);

        // A phrase of several lexemes, found once; a prefix only at the phrase's end.
        let doc = parse_tsvector("'com':3,6 'exampl':2,5 'foo':1 'bar':4").unwrap();
        let f = features(&doc, &[phrase(&["exampl", "co"], true)]);
        assert_eq!(f.instances, [(0, 2), (0, 5)]);
        let f = features(&doc, &[phrase(&["foo", "exampl", "com"], false)]);
        assert_eq!(f.instances, [(0, 1)]);
        let f = features(&doc, &[phrase(&["exa", "com"], true)]);
        assert_eq!(f.instances, []);
        assert_eq!(f.length, 6);
    }

    #[test]
    fn features_score_the_whole_phrase_above_scattered_words() {
        let together = parse_tsvector("'deploy':1 'product':2 'friday':3").unwrap();
        let apart = parse_tsvector("'deploy':1 'on':2 'product':3").unwrap();
        let q = [phrase(&["deploy"], false), phrase(&["product"], true)];
        let scorer = Ranking::plan(&terms("deploy product"), false).scorer(&Statistics {
            memories: 2,
            tokens: 6,
            frequencies: vec![2, 2],
        });
        assert!(scorer.score(&features(&together, &q)) > scorer.score(&features(&apart, &q)));
    }

    #[test]
    fn length_survives_capped_positions() {
        // The server keeps at most 255 positions of one lexeme and caps them at 16383.
        let doc = vec![
            ("x".to_owned(), vec![16383]),
            ("y".to_owned(), (1..=300).collect()),
        ];
        assert_eq!(features(&doc, &[]).length, 16383);
        let doc = vec![("x".to_owned(), (1..=256).collect::<Vec<u32>>())];
        assert_eq!(features(&doc, &[]).length, 256);
    }
}
