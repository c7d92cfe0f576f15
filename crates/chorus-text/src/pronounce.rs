//! Pronunciation dictionaries: whole-word replacements applied to the user's text before normalization.
//!
//! An alias is either plain text ("SQL" -> "sequel"), spoken instead of the word, or IPA phonemes between slashes
//! (`/ˈsiːkwəl/`), which replace whatever espeak-ng would have said for the word. Timestamps still name the word as
//! written.

use std::ops::Range;

use chorus_proto::PronunciationItem;
use unicode_normalization::UnicodeNormalization;

use crate::normalize::{Normalized, Piece, PieceKind};

/// A prepared dictionary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lexicon {
    entries: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    text: String,
    lower: String,
    alias: Alias,
    case_sensitive: bool,
}

/// What a matched word becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Alias {
    /// Spoken instead of the word.
    Text(String),
    /// IPA phonemes (NFD) used instead of espeak-ng's for the word.
    Ipa(String),
}

impl Alias {
    /// `/.../` is IPA; anything else is text.
    pub fn parse(alias: &str) -> Alias {
        let t = alias.trim();
        match t.strip_prefix('/').and_then(|s| s.strip_suffix('/')) {
            Some(ipa) if !ipa.trim().is_empty() => Alias::Ipa(ipa.trim().nfd().collect()),
            _ => Alias::Text(t.to_owned()),
        }
    }
}

/// An IPA override: the original-text range of a matched word and the phonemes to speak for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhonemeOverride {
    pub original: Range<usize>,
    pub phonemes: String,
}

impl Lexicon {
    pub fn new(items: &[PronunciationItem]) -> Self {
        let mut entries: Vec<Entry> = items
            .iter()
            .filter(|i| !i.text.trim().is_empty() && !i.alias.trim().is_empty())
            .map(|i| Entry {
                text: i.text.trim().to_owned(),
                lower: i.text.trim().to_lowercase(),
                alias: Alias::parse(&i.alias),
                case_sensitive: i.case_sensitive,
            })
            .collect();
        // Longest first, so "New York City" wins over "New York".
        entries.sort_by_key(|e| std::cmp::Reverse(e.text.len()));
        Self { entries }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Rewrites `original`: text aliases replace their words; IPA aliases leave the word in place and are returned
    /// as overrides (in original-text coordinates).
    pub fn apply(&self, original: &str) -> (Normalized, Vec<PhonemeOverride>) {
        if self.entries.is_empty() {
            return (Normalized::identity(original), Vec::new());
        }
        let mut text = String::with_capacity(original.len());
        let mut pieces = Vec::new();
        let mut overrides = Vec::new();
        let mut copied = 0usize;
        let mut i = 0usize;
        let lower_matches = |pos: usize, e: &Entry| -> Option<usize> {
            let rest = original.get(pos..)?;
            let end = pos + prefix_len(rest, &e.text, e.case_sensitive, &e.lower)?;
            let before_ok = original[..pos].chars().next_back().is_none_or(|c| !c.is_alphanumeric());
            let after_ok = original[end..].chars().next().is_none_or(|c| !c.is_alphanumeric());
            (before_ok && after_ok).then_some(end)
        };
        while i < original.len() {
            let at_word_start = original[..i].chars().next_back().is_none_or(|c| !c.is_alphanumeric());
            let hit = if at_word_start {
                self.entries.iter().find_map(|e| lower_matches(i, e).map(|end| (e, end)))
            } else {
                None
            };
            match hit {
                Some((entry, end)) => {
                    push_verbatim(&mut text, &mut pieces, original, copied..i);
                    match &entry.alias {
                        Alias::Text(alias) => {
                            let start = text.len();
                            text.push_str(alias);
                            pieces.push(Piece {
                                norm: start..text.len(),
                                orig: i..end,
                                kind: PieceKind::Expanded,
                            });
                        }
                        Alias::Ipa(ipa) => {
                            push_verbatim(&mut text, &mut pieces, original, i..end);
                            overrides.push(PhonemeOverride { original: i..end, phonemes: ipa.clone() });
                        }
                    }
                    copied = end;
                    i = end;
                }
                None => i += original[i..].chars().next().map_or(1, char::len_utf8),
            }
        }
        push_verbatim(&mut text, &mut pieces, original, copied..original.len());
        (Normalized::from_parts(text, pieces, original.len()), overrides)
    }
}

/// Byte length of the prefix of `rest` that matches `key` (exactly, or ignoring case); `None` if none.
fn prefix_len(rest: &str, key: &str, case_sensitive: bool, lower_key: &str) -> Option<usize> {
    if case_sensitive {
        if rest.starts_with(key) {
            return Some(key.len());
        }
        // The older matching: a lowercase key also matches a sentence-initial capital.
        let mut k = key.chars();
        let first = k.next()?;
        if first.is_lowercase() {
            let mut r = rest.chars();
            let rf = r.next()?;
            if rf.to_lowercase().eq(std::iter::once(first))
                && rf.is_uppercase()
                && r.as_str().starts_with(k.as_str())
            {
                return Some(rf.len_utf8() + k.as_str().len());
            }
        }
        return None;
    }
    // Case-insensitive: walk both, char by char.
    let mut consumed = 0usize;
    let mut key_chars = lower_key.chars().peekable();
    for c in rest.chars() {
        if key_chars.peek().is_none() {
            break;
        }
        for lc in c.to_lowercase() {
            if key_chars.next() != Some(lc) {
                return None;
            }
        }
        consumed += c.len_utf8();
    }
    key_chars.peek().is_none().then_some(consumed)
}

fn push_verbatim(text: &mut String, pieces: &mut Vec<Piece>, original: &str, range: Range<usize>) {
    if range.is_empty() {
        return;
    }
    let start = text.len();
    text.push_str(&original[range.clone()]);
    if let Some(last) = pieces.last_mut()
        && last.kind == PieceKind::Verbatim
        && last.orig.end == range.start
    {
        last.norm.end = text.len();
        last.orig.end = range.end;
        return;
    }
    pieces.push(Piece { norm: start..text.len(), orig: range, kind: PieceKind::Verbatim });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::tests::source_of;

    fn item(text: &str, alias: &str, case_sensitive: bool) -> PronunciationItem {
        PronunciationItem { text: text.into(), alias: alias.into(), case_sensitive }
    }

    #[test]
    fn text_aliases_replace_whole_words_and_map_back() {
        let lex = Lexicon::new(&[item("SQL", "sequel", false), item("New York", "the big apple", false)]);
        let original = "I use sql in New York, not SQLite.";
        let (n, ov) = lex.apply(original);
        assert_eq!(n.text(), "I use sequel in the big apple, not SQLite.");
        assert!(ov.is_empty());
        assert_eq!(source_of(original, &n, "sequel", 0), "sql");
        assert_eq!(source_of(original, &n, "apple", 0), "New York");
        assert_eq!(source_of(original, &n, "SQLite", 0), "SQLite");
    }

    #[test]
    fn case_sensitive_entries() {
        let lex = Lexicon::new(&[item("Nice", "niece", true), item("read", "red", true)]);
        let (n, _) = lex.apply("Nice is nice. Read it, read it.");
        assert_eq!(n.text(), "niece is nice. red it, red it.");
    }

    #[test]
    fn ipa_aliases_leave_the_word_and_override() {
        let lex = Lexicon::new(&[item("tomato", "/təmˈɑːtoʊ/", false)]);
        let original = "A Tomato, please.";
        let (n, ov) = lex.apply(original);
        assert_eq!(n.text(), original);
        assert_eq!(ov, vec![PhonemeOverride { original: 2..8, phonemes: "təmˈɑːtoʊ".nfd().collect() }]);
    }

    #[test]
    fn composed_with_normalization() {
        let lex = Lexicon::new(&[item("ACME", "ack me", false)]);
        let original = "ACME made $5 today";
        let (d, _) = lex.apply(original);
        let n = crate::normalize::normalize(d.text()).compose(&d);
        assert_eq!(n.text(), "ack me made five dollars today");
        assert_eq!(source_of(original, &n, "dollars", 0), "$5");
        assert_eq!(source_of(original, &n, "me", 0), "ACME");
        assert_eq!(source_of(original, &n, "today", 0), "today");
    }
}
