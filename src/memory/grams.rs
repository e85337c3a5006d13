//! The `grams` column: how words inside CJK text become findable.
//!
//! Chinese and Japanese write no spaces between words, so the word tokenizer sees a whole
//! sentence as one token and only its first word can be found. For a memory with any CJK
//! character, `grams` is the body with every CJK character `c` replaced by `" cd "` when the
//! next character `d` is CJK too (an overlapping bigram), else by `" c "` (the last character
//! of a run). A query's CJK run becomes the phrase of its bigrams, which matches exactly where
//! the run occurs as a substring; a single CJK character matches as a prefix. Text glued to
//! CJK ("Dagger的配置") comes out as separate words. Memories without CJK store `''`.
//!
//! Migration 0003 computes the same column in SQL for memories written before it; the
//! character classes there and in [`is_cjk`] must stay the same (a test compares them).

/// Han ideographs, kana and Hangul: the scripts written without spaces between words (Korean
/// uses spaces, but glues particles to words: "데이터베이스를").
pub fn is_cjk(c: char) -> bool {
    matches!(u32::from(c),
        0x1100..=0x11FF     // Hangul Jamo
        | 0x3040..=0x30FF   // Hiragana, Katakana
        | 0x3130..=0x318F   // Hangul compatibility Jamo
        | 0x31F0..=0x31FF   // Katakana phonetic extensions
        | 0x3400..=0x4DBF   // CJK extension A
        | 0x4E00..=0x9FFF   // CJK unified ideographs
        | 0xAC00..=0xD7AF   // Hangul syllables
        | 0xF900..=0xFAFF   // CJK compatibility ideographs
        | 0xFF66..=0xFF9F   // Halfwidth Katakana
        | 0x20000..=0x3134F // CJK extensions B to G
    )
}

/// The `grams` column for `body`: empty when it has no CJK character.
pub fn grams(body: &str) -> String {
    if !body.chars().any(is_cjk) {
        return String::new();
    }
    let chars: Vec<char> = body.chars().collect();
    let mut out = String::with_capacity(body.len() * 3);
    for (i, &c) in chars.iter().enumerate() {
        if !is_cjk(c) {
            out.push(c);
            continue;
        }
        out.push(' ');
        out.push(c);
        if let Some(&next) = chars.get(i + 1).filter(|n| is_cjk(**n)) {
            out.push(next);
        }
        out.push(' ');
    }
    out
}

/// The bigrams of one CJK run, as the tokens `grams` holds for it (a one-character run is
/// that character).
pub fn run_bigrams(run: &[char]) -> Vec<String> {
    if run.len() < 2 {
        return run.iter().map(|c| c.to_string()).collect();
    }
    run.windows(2).map(|w| w.iter().collect()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_without_cjk_has_no_grams() {
        assert_eq!(grams("Deploys happen on Fridays"), "");
        assert_eq!(grams("café déjà vu 🚀"), "");
    }

    #[test]
    fn cjk_runs_become_bigrams_and_glued_words_come_apart() {
        assert_eq!(grams("中文"), " 中文  文 ");
        assert_eq!(grams("Dagger的配置 ok"), "Dagger 的配  配置  置  ok");
        assert_eq!(grams("中"), " 中 ");
    }

    #[test]
    fn bigrams_of_a_run() {
        let run: Vec<char> = "日本語".chars().collect();
        assert_eq!(run_bigrams(&run), ["日本", "本語"]);
        assert_eq!(run_bigrams(&['中']), ["中"]);
    }
}
