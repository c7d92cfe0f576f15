//! Where a stream of text may be cut for speaking: messages of a WebSocket context joined at their seams, the end
//! of the last complete sentence, the end of the last whole word.

use crate::ends_in_open_tag;

/// Appends a message of a context to `buffer`. Messages are joined as sent (the client adds the spaces), except at
/// a seam: where neither side has whitespace, the text so far ends a sentence or clause and the message starts a
/// new word (`"today?"` then `"I would like..."`, as voice-agent frameworks send trimmed sentences), a space goes
/// between them, so that two words are never merged across messages. `tail` keeps the end of the context's text.
pub fn join_message(buffer: &mut String, tail: &mut String, text: &str) {
    if text.is_empty() {
        return;
    }
    if needs_seam(tail, text) {
        buffer.push(' ');
    }
    buffer.push_str(text);
    tail.push_str(text);
    // Keep the last few characters only.
    let keep = tail.char_indices().rev().nth(7).map_or(0, |(i, _)| i);
    tail.drain(..keep);
}

/// Whether a message that starts with `next` after text ending with `before` needs a space between them.
fn needs_seam(before: &str, next: &str) -> bool {
    let (Some(first), Some(last)) = (next.chars().next(), before.chars().next_back()) else {
        return false;
    };
    if first.is_whitespace() || last.is_whitespace() {
        return false;
    }
    let starts_word =
        first.is_alphanumeric() || matches!(first, '"' | '\'' | '(' | '[' | '“' | '‘' | '«' | '¿' | '¡');
    if !starts_word {
        return false;
    }
    // The last punctuation of `before`, behind any closing quotes and brackets.
    let core = before.trim_end_matches(['"', '\'', ')', ']', '}', '”', '’', '»']);
    let mut back = core.chars().rev();
    let (Some(mark), previous) = (back.next(), back.next()) else {
        return false;
    };
    // A number or a dotted name continues across the messages: "3." "5", "1," "000", "12:" "30", "example." "com".
    let number_goes_on = first.is_ascii_digit() && previous.is_some_and(|c| c.is_ascii_digit());
    match mark {
        '?' | '!' | ';' | '…' => true,
        ',' | ':' => !number_goes_on,
        '.' => !number_goes_on && !first.is_lowercase(),
        // A closing bracket or quote ends a parenthesis or a quotation (a `"` after a word closes one; `'` may be
        // an apostrophe, and is left alone).
        _ => {
            matches!(last, ')' | ']' | '}' | '”' | '»')
                || (last == '"' && before.trim_end_matches('"').ends_with(|c: char| !c.is_whitespace()))
        }
    }
}

/// Whether `text` has anything to speak (a letter or a digit).
pub fn has_speech(text: &str) -> bool {
    text.chars().any(char::is_alphanumeric)
}

/// Words whose period does not end a sentence.
const ABBREVIATIONS: [&str; 16] = [
    "dr", "mr", "mrs", "ms", "st", "prof", "jr", "sr", "vs", "etc", "e.g", "i.e", "no", "mt", "ft", "approx",
];

/// End (exclusive) of the last complete sentence in `buffer`: a `.`, `!` or `?`, whitespace, and the start of the
/// next sentence already in (a character that is not lower-case), outside an unfinished tag and not after an
/// abbreviation such as "Dr.". `None` if there is none yet.
pub fn sentence_cut(buffer: &str) -> Option<usize> {
    let mut cut = None;
    let chars: Vec<(usize, char)> = buffer.char_indices().collect();
    for (k, &(i, c)) in chars.iter().enumerate() {
        let ends = matches!(c, '.' | '!' | '?');
        if !ends {
            continue;
        }
        let mut j = k + 1;
        if chars.get(j).is_none_or(|(_, w)| !w.is_whitespace()) {
            continue;
        }
        while chars.get(j).is_some_and(|(_, w)| w.is_whitespace()) {
            j += 1;
        }
        let Some(&(next_at, next)) = chars.get(j) else { continue };
        if next.is_lowercase() {
            continue;
        }
        if c == '.' {
            let word_start = buffer[..i].rfind(|w: char| w.is_whitespace()).map_or(0, |p| p + 1);
            let word =
                buffer[word_start..i].trim_start_matches(|w: char| !w.is_alphanumeric()).to_lowercase();
            if ABBREVIATIONS.contains(&word.as_str()) {
                continue;
            }
        }
        cut = Some(next_at);
    }
    let cut = cut?;
    (!ends_in_open_tag(&buffer[..cut]) && has_speech(&buffer[..cut])).then_some(cut)
}

/// End of the last whole word of `buffer` (the last whitespace), or the whole buffer when it ends in whitespace
/// or punctuation; never inside an unfinished tag.
pub fn word_cut(buffer: &str) -> usize {
    if ends_in_open_tag(buffer) {
        // Everything before the unfinished tag is complete.
        return buffer.rfind('<').unwrap_or(0);
    }
    if buffer.ends_with(|c: char| c.is_whitespace() || c.is_ascii_punctuation()) {
        buffer.len()
    } else {
        buffer.rfind(char::is_whitespace).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts() {
        assert_eq!(sentence_cut("Hello there. How are"), Some(13));
        assert_eq!(sentence_cut("Hello there. "), None, "the next sentence has not started");
        assert_eq!(sentence_cut("Hello there"), None);
        assert_eq!(sentence_cut("Ask Dr. Smith. Then go"), Some(15));
        assert_eq!(sentence_cut("It costs 5 p. m. per"), None);
        assert_eq!(sentence_cut("Wow! Really? Yes"), Some(13));
        assert_eq!(word_cut("Hello wor"), 5);
        assert_eq!(word_cut("Hello world, "), 13);
        assert_eq!(word_cut("Hello <brea"), 6);
        assert_eq!(word_cut("Hello<brea"), 5);
    }

    fn joined(messages: &[&str]) -> String {
        let (mut buffer, mut tail) = (String::new(), String::new());
        for m in messages {
            join_message(&mut buffer, &mut tail, m);
        }
        buffer
    }

    #[test]
    fn seams_between_messages() {
        // Trimmed sentences (Pipecat) get a space; words split across messages stay one word.
        assert_eq!(
            joined(&["Hello there, how are you today?", "I would like a table."]),
            "Hello there, how are you today? I would like a table."
        );
        assert_eq!(joined(&["Hel", "lo ", "there,", "friend"]), "Hello there, friend");
        assert_eq!(joined(&["Done.", "Next one!", "\"Quoted\"", "ok"]), "Done. Next one! \"Quoted\" ok");
        assert_eq!(joined(&["He said \"no!\"", "Then"]), "He said \"no!\" Then");
        assert_eq!(joined(&["(see below)", "Next"]), "(see below) Next");
        assert_eq!(joined(&["He said \"", "Hello\""]), "He said \"Hello\"");
        assert_eq!(joined(&["don'", "t go"]), "don't go");
        // Numbers and dotted names go on; punctuation that starts a message attaches.
        assert_eq!(joined(&["It is 3.", "5 meters"]), "It is 3.5 meters");
        assert_eq!(joined(&["About 1,", "000 people"]), "About 1,000 people");
        assert_eq!(joined(&["At 12:", "30 today"]), "At 12:30 today");
        assert_eq!(joined(&["Visit example.", "com today"]), "Visit example.com today");
        assert_eq!(joined(&["Hello", ", world", "."]), "Hello, world.");
        // Whitespace on either side is left as sent.
        assert_eq!(joined(&["One. ", "Two.", " Three"]), "One. Two. Three");
        assert_eq!(joined(&["", "First.", "Second"]), "First. Second");
    }
}
