//! English word lists the ranking needs and no stemmer provides: the function words a
//! question leaves out of its search, and the irregular forms that one word stands for.
//!
//! * **Function words.** An agent asks "What did Caroline research?"; "what" and "did" occur in
//!   half of all conversation turns, so a memory that repeats them would outrank the one about
//!   research. They are left out of the search whenever the query has any other word (a query
//!   of function words only, like "the", searches for them). The list is the common English
//!   one (NLTK's, with the contraction pieces a tokenizer leaves: "s", "t", "ll", …, and a few
//!   question words it lacks: the modals, "whose", and the "many" and "much" of "how many",
//!   which ask for a number and name nothing).
//! * **Irregular forms.** Porter (SQLite) and Snowball (PostgreSQL) stem regular inflections
//!   ("deploys" → "deploy") but not "went" → "go" or "children" → "child". Each group here is
//!   one word's forms; a query word in a group searches for every form of it, as one term.
//!   Forms that are also common unrelated words ("saw", "rose", "bore"…) are not listed:
//!   expanding them would find the wrong memories more often than the right ones.

/// Whether `word` (lower case, without surrounding punctuation) is a function word.
pub fn is_function_word(word: &str) -> bool {
    FUNCTION_WORDS.binary_search(&word).is_ok()
}

/// The irregular forms of `word` (lower case), itself included, or `None` for a word not in
/// any group.
pub fn irregular_forms(word: &str) -> Option<&'static [&'static str]> {
    IRREGULAR
        .iter()
        .copied()
        .find(|forms| forms.contains(&word))
}

/// Sorted, for binary search (a test checks it).
const FUNCTION_WORDS: &[&str] = &[
    "a",
    "about",
    "above",
    "after",
    "again",
    "against",
    "ain",
    "all",
    "am",
    "an",
    "and",
    "any",
    "are",
    "aren",
    "as",
    "at",
    "be",
    "because",
    "been",
    "before",
    "being",
    "below",
    "between",
    "both",
    "but",
    "by",
    "can",
    "could",
    "couldn",
    "d",
    "did",
    "didn",
    "do",
    "does",
    "doesn",
    "doing",
    "don",
    "down",
    "during",
    "each",
    "few",
    "for",
    "from",
    "further",
    "had",
    "hadn",
    "has",
    "hasn",
    "have",
    "haven",
    "having",
    "he",
    "her",
    "here",
    "hers",
    "herself",
    "him",
    "himself",
    "his",
    "how",
    "i",
    "if",
    "in",
    "into",
    "is",
    "isn",
    "it",
    "its",
    "itself",
    "just",
    "ll",
    "m",
    "ma",
    "many",
    "me",
    "might",
    "mightn",
    "more",
    "most",
    "much",
    "must",
    "mustn",
    "my",
    "myself",
    "needn",
    "no",
    "nor",
    "not",
    "now",
    "o",
    "of",
    "off",
    "on",
    "once",
    "only",
    "or",
    "other",
    "our",
    "ours",
    "ourselves",
    "out",
    "over",
    "own",
    "re",
    "s",
    "same",
    "shall",
    "shan",
    "she",
    "should",
    "shouldn",
    "so",
    "some",
    "such",
    "t",
    "than",
    "that",
    "the",
    "their",
    "theirs",
    "them",
    "themselves",
    "then",
    "there",
    "these",
    "they",
    "this",
    "those",
    "through",
    "to",
    "too",
    "under",
    "until",
    "up",
    "ve",
    "very",
    "was",
    "wasn",
    "we",
    "were",
    "weren",
    "what",
    "when",
    "where",
    "which",
    "while",
    "who",
    "whom",
    "whose",
    "why",
    "will",
    "with",
    "won't",
    "would",
    "wouldn",
    "y",
    "you",
    "your",
    "yours",
    "yourself",
    "yourselves",
];

/// One group per word: its forms.
const IRREGULAR: &[&[&str]] = &[
    // Verbs: base, past, past participle (and other forms a stemmer leaves apart).
    &["become", "became"],
    &["begin", "began", "begun"],
    &["bend", "bent"],
    &["bleed", "bled"],
    &["blow", "blew", "blown"],
    &["break", "broke", "broken"],
    &["breed", "bred"],
    &["bring", "brought"],
    &["build", "built"],
    &["burn", "burnt"],
    &["buy", "bought"],
    &["catch", "caught"],
    &["choose", "chose", "chosen"],
    &["come", "came"],
    &["creep", "crept"],
    &["deal", "dealt"],
    &["dig", "dug"],
    &["draw", "drew", "drawn"],
    &["dream", "dreamt"],
    &["drink", "drank", "drunk"],
    &["drive", "drove", "driven"],
    &["eat", "ate", "eaten"],
    &["fall", "fell", "fallen"],
    &["feed", "fed"],
    &["feel", "felt"],
    &["fight", "fought"],
    &["find", "found"],
    &["flee", "fled"],
    &["fly", "flew", "flown"],
    &["forbid", "forbade", "forbidden"],
    &["forget", "forgot", "forgotten"],
    &["forgive", "forgave", "forgiven"],
    &["freeze", "froze", "frozen"],
    &["get", "got", "gotten"],
    &["give", "gave", "given"],
    &["go", "goes", "went", "gone"],
    &["grind", "ground"],
    &["grow", "grew", "grown"],
    &["hang", "hung"],
    &["hear", "heard"],
    &["hide", "hid", "hidden"],
    &["hold", "held"],
    &["keep", "kept"],
    &["kneel", "knelt"],
    &["know", "knew", "known"],
    &["leave", "left"],
    &["lend", "lent"],
    &["lose", "lost"],
    &["make", "made"],
    &["mean", "meant"],
    &["meet", "met"],
    &["pay", "paid"],
    &["ride", "rode", "ridden"],
    &["ring", "rang", "rung"],
    &["rise", "risen"],
    &["run", "ran"],
    &["say", "said", "says"],
    &["see", "seen"],
    &["seek", "sought"],
    &["sell", "sold"],
    &["send", "sent"],
    &["shake", "shook", "shaken"],
    &["shine", "shone"],
    &["shoot", "shot"],
    &["shrink", "shrank", "shrunk"],
    &["sing", "sang", "sung"],
    &["sink", "sank", "sunk"],
    &["sit", "sat"],
    &["sleep", "slept"],
    &["slide", "slid"],
    &["speak", "spoke", "spoken"],
    &["spend", "spent"],
    &["spin", "spun"],
    &["stand", "stood"],
    &["steal", "stole", "stolen"],
    &["stick", "stuck"],
    &["sting", "stung"],
    &["strike", "struck"],
    &["swear", "swore", "sworn"],
    &["sweep", "swept"],
    &["swim", "swam", "swum"],
    &["swing", "swung"],
    &["take", "took", "taken"],
    &["teach", "taught"],
    &["tell", "told"],
    &["think", "thought"],
    &["throw", "threw", "thrown"],
    &["understand", "understood"],
    &["wake", "woke", "woken"],
    &["wear", "wore", "worn"],
    &["weep", "wept"],
    &["win", "won"],
    &["write", "wrote", "written"],
    // Nouns: singular, plural.
    &["child", "children"],
    &["foot", "feet"],
    &["goose", "geese"],
    &["half", "halves"],
    &["knife", "knives"],
    &["leaf", "leaves"],
    &["life", "lives"],
    &["loaf", "loaves"],
    &["man", "men"],
    &["mouse", "mice"],
    &["person", "people"],
    &["shelf", "shelves"],
    &["thief", "thieves"],
    &["tooth", "teeth"],
    &["wife", "wives"],
    &["wolf", "wolves"],
    &["woman", "women"],
    // Adjectives: positive, comparative, superlative.
    &["bad", "worse", "worst"],
    &["good", "better", "best"],
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_words_are_sorted_and_unique() {
        assert!(FUNCTION_WORDS.windows(2).all(|w| w[0] < w[1]));
        assert!(is_function_word("what") && is_function_word("did"));
        assert!(!is_function_word("pottery") && !is_function_word("caroline"));
    }

    #[test]
    fn every_form_is_in_one_group_and_none_is_a_function_word() {
        let mut seen = std::collections::BTreeSet::new();
        for forms in IRREGULAR {
            for form in *forms {
                assert!(seen.insert(*form), "{form} is in two groups");
                assert!(!is_function_word(form), "{form} is a function word");
            }
        }
        assert_eq!(
            irregular_forms("went"),
            Some(&["go", "goes", "went", "gone"][..])
        );
        assert_eq!(
            irregular_forms("children"),
            Some(&["child", "children"][..])
        );
        assert_eq!(irregular_forms("deploy"), None);
    }
}
