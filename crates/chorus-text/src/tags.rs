//! Inline tags in a transcript (Cartesia's SSML-like tags): `<break time="1s"/>`, `<speed ratio="1.2"/>`,
//! `<volume ratio="0.8"/>`, `<spell>ABC</spell>`, and `<emotion value="..."/>` (accepted and ignored: the Piper
//! voices have no emotion control).
//!
//! Speed and volume tags apply from where they stand to the end of the transcript (or the next tag of the same
//! kind); their ratios multiply the request's own settings. Anything that looks like a tag but is not one of these is
//! dropped (it would otherwise be read aloud as "less than..."); a `<` that does not open a tag is text.

/// A piece of a transcript after tag parsing.
#[derive(Debug, Clone, PartialEq)]
pub enum Segment {
    /// Text to speak with these multipliers of the request's speed and volume.
    Text { text: String, speed: f32, volume: f32 },
    /// Silence.
    Break { seconds: f32 },
}

/// The longest break honoured, in seconds.
pub const MAX_BREAK_SECONDS: f32 = 10.0;

/// Splits a transcript into text and breaks. Adjacent text with the same settings is merged.
pub fn parse_tags(transcript: &str) -> Vec<Segment> {
    let mut out: Vec<Segment> = Vec::new();
    let (mut speed, mut volume) = (1.0f32, 1.0f32);
    let mut rest = transcript;
    let mut text = String::new();
    let flush = |text: &mut String, out: &mut Vec<Segment>, speed: f32, volume: f32| {
        if text.is_empty() {
            return;
        }
        if let Some(Segment::Text { text: prev, speed: s, volume: v }) = out.last_mut()
            && *s == speed
            && *v == volume
        {
            prev.push_str(text);
        } else {
            out.push(Segment::Text { text: std::mem::take(text), speed, volume });
        }
        text.clear();
    };
    while let Some(lt) = rest.find('<') {
        text.push_str(&rest[..lt]);
        let after = &rest[lt..];
        let Some(tag) = read_tag(after) else {
            text.push('<');
            rest = &after[1..];
            continue;
        };
        rest = &after[tag.len..];
        match tag.name.as_str() {
            "break" => {
                flush(&mut text, &mut out, speed, volume);
                if let Some(secs) = tag.attr("time").and_then(parse_duration) {
                    out.push(Segment::Break { seconds: secs.min(MAX_BREAK_SECONDS) });
                }
            }
            "speed" => {
                flush(&mut text, &mut out, speed, volume);
                if let Some(r) =
                    tag.attr("ratio").and_then(|v| v.parse::<f32>().ok()).filter(|r| r.is_finite())
                {
                    speed = r.clamp(0.5, 2.0);
                }
            }
            "volume" => {
                flush(&mut text, &mut out, speed, volume);
                if let Some(r) = tag
                    .attr("ratio")
                    .or_else(|| tag.attr("level"))
                    .and_then(|v| v.parse::<f32>().ok())
                    .filter(|r| r.is_finite())
                {
                    volume = r.clamp(0.0, 4.0);
                }
            }
            "spell" if !tag.closing => {
                let (inner, remaining) = match rest.find("</spell>") {
                    Some(end) => (&rest[..end], &rest[end + "</spell>".len()..]),
                    None => (rest, ""),
                };
                text.push_str(&spell(inner));
                rest = remaining;
            }
            // <emotion/>, a stray </spell>, unknown tags: dropped.
            _ => {}
        }
    }
    text.push_str(rest);
    flush(&mut text, &mut out, speed, volume);
    out
}

/// True when `text` ends inside an unfinished tag (a continuation must wait for the rest).
pub fn ends_in_open_tag(text: &str) -> bool {
    match text.rfind('<') {
        Some(i) => {
            !text[i..].contains('>')
                && text[i + 1..].starts_with(|c: char| c.is_ascii_alphabetic() || c == '/')
        }
        None => false,
    }
}

/// "ABC-12" -> "A B C 1 2": letters and digits one by one.
fn spell(inner: &str) -> String {
    let chars: Vec<String> =
        inner.chars().filter(|c| c.is_alphanumeric()).map(|c| c.to_uppercase().to_string()).collect();
    format!(" {} ", chars.join(" "))
}

struct Tag {
    name: String,
    closing: bool,
    attrs: Vec<(String, String)>,
    /// Bytes the tag spans, `<` to `>` included.
    len: usize,
}

impl Tag {
    fn attr(&self, key: &str) -> Option<&str> {
        self.attrs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// Reads `<name attr="v" .../>`, `<name>` or `</name>` at the start of `s`; `None` if it is not a tag.
fn read_tag(s: &str) -> Option<Tag> {
    let end = s.find('>')?;
    let inner = &s[1..end];
    if inner.len() > 200 || inner.contains('<') {
        return None;
    }
    let (closing, inner) = match inner.strip_prefix('/') {
        Some(rest) => (true, rest),
        None => (false, inner),
    };
    let inner = inner.strip_suffix('/').unwrap_or(inner).trim();
    let name_end = inner.find(|c: char| c.is_whitespace()).unwrap_or(inner.len());
    let name = inner[..name_end].to_ascii_lowercase();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphabetic() || c == '_' || c == '-') {
        return None;
    }
    let mut attrs = Vec::new();
    let mut rest = inner[name_end..].trim_start();
    while let Some(eq) = rest.find('=') {
        let key = rest[..eq].trim().to_ascii_lowercase();
        let value_part = rest[eq + 1..].trim_start();
        let (value, remaining) = match value_part.chars().next() {
            Some(q @ ('"' | '\'')) => {
                let close = value_part[1..].find(q)? + 1;
                (&value_part[1..close], &value_part[close + 1..])
            }
            _ => {
                let stop = value_part.find(char::is_whitespace).unwrap_or(value_part.len());
                (&value_part[..stop], &value_part[stop..])
            }
        };
        attrs.push((key, value.trim().to_owned()));
        rest = remaining.trim_start();
    }
    Some(Tag { name, closing, attrs, len: end + 1 })
}

/// "1s", "1.5s", "500ms", "2" (seconds) -> seconds.
fn parse_duration(v: &str) -> Option<f32> {
    let v = v.trim().to_ascii_lowercase();
    let (num, scale) = if let Some(n) = v.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1.0)
    } else {
        (v.as_str(), 1.0)
    };
    let x: f32 = num.trim().parse().ok()?;
    (x.is_finite() && x >= 0.0).then_some(x * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(t: &str, speed: f32, volume: f32) -> Segment {
        Segment::Text { text: t.into(), speed, volume }
    }

    #[test]
    fn tags_split_and_set() {
        let s = parse_tags(
            r#"Hello.<break time="500ms"/> Now <speed ratio="1.5"/>faster <volume level='0.5'/>and quieter."#,
        );
        assert_eq!(
            s,
            vec![
                text("Hello.", 1.0, 1.0),
                Segment::Break { seconds: 0.5 },
                text(" Now ", 1.0, 1.0),
                text("faster ", 1.5, 1.0),
                text("and quieter.", 1.5, 0.5),
            ]
        );
    }

    #[test]
    fn spell_emotion_and_plain_less_than() {
        assert_eq!(parse_tags("Code <spell>ab-12</spell> ok"), vec![text("Code  A B 1 2  ok", 1.0, 1.0)]);
        assert_eq!(parse_tags(r#"<emotion value="happy"/>Yes"#), vec![text("Yes", 1.0, 1.0)]);
        assert_eq!(parse_tags("3 < 5 and 7 > 2"), vec![text("3 < 5 and 7 > 2", 1.0, 1.0)]);
        assert_eq!(parse_tags("a <b"), vec![text("a <b", 1.0, 1.0)]);
        assert_eq!(parse_tags(r#"<break time="99s"/>"#), vec![Segment::Break { seconds: MAX_BREAK_SECONDS }]);
        assert!(parse_tags("").is_empty());
    }

    #[test]
    fn open_tags_are_detected() {
        assert!(ends_in_open_tag("Hello <brea"));
        assert!(ends_in_open_tag("Hello <spell>A</"));
        assert!(!ends_in_open_tag("Hello <break/> there"));
        assert!(!ends_in_open_tag("3 < 5"));
    }
}
