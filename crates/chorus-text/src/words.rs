//! The user's words: whitespace-separated tokens that contain a letter or digit, as timestamps report them.

use std::ops::Range;

/// One word of the original text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// Byte range in the original text (the whole whitespace-separated token).
    pub range: Range<usize>,
    /// The word as reported in timestamps: the token without surrounding quotes, brackets and clause punctuation.
    pub text: String,
}

/// Splits `text` into the words that timestamps report.
pub fn tokenize(text: &str) -> Vec<Token> {
    text.split_whitespace()
        .filter(|t| t.chars().any(char::is_alphanumeric))
        .map(|t| {
            // split_whitespace yields sub-slices of `text`, so the pointer difference is the byte offset.
            let start = t.as_ptr() as usize - text.as_ptr() as usize;
            Token { range: start..start + t.len(), text: display_word(t).to_owned() }
        })
        .collect()
}

fn display_word(token: &str) -> &str {
    let opening = |c: char| matches!(c, '"' | '\'' | '(' | '[' | '{' | '“' | '‘' | '«' | '¿' | '¡');
    let closing =
        |c: char| matches!(c, '"' | '\'' | ')' | ']' | '}' | '”' | '’' | '»' | ',' | ';' | ':' | '!' | '?');
    let mut w = token.trim_start_matches(opening).trim_end_matches(closing);
    // A final period is punctuation unless the word is an abbreviation with inner periods ("U.S.").
    if let Some(stripped) = w.strip_suffix('.')
        && !stripped.contains('.')
    {
        w = stripped.trim_end_matches(closing);
    }
    if w.is_empty() { token } else { w }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_as_written() {
        let text = "\"Hello,\" she said — it's 40-60% (approx.) of U.S. sales… ok?!";
        let words: Vec<String> = tokenize(text).into_iter().map(|t| t.text).collect();
        assert_eq!(words, ["Hello", "she", "said", "it's", "40-60%", "approx", "of", "U.S.", "sales…", "ok"]);
        for t in tokenize(text) {
            assert!(text[t.range.clone()].contains(&t.text));
        }
    }
}
