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
    parse_tags_mapped(transcript).into_iter().map(|(segment, _)| segment).collect()
}

/// Where the text of a [`Segment::Text`] came from in the transcript: its bytes map back to the transcript's, so
/// that timestamps can name the words as written (a `<spell>` expansion maps to the tag's own position).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceMap {
    anchors: Vec<Anchor>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Anchor {
    /// From this byte of the segment's text on ...
    at: usize,
    /// ... the text is the transcript's from this byte (verbatim), or an expansion of the tag there.
    source: usize,
    verbatim: bool,
}

impl SourceMap {
    /// The transcript byte that segment byte `at` came from.
    pub fn source(&self, at: usize) -> usize {
        let i = self.anchors.partition_point(|a| a.at <= at);
        match i.checked_sub(1).and_then(|i| self.anchors.get(i)) {
            Some(a) if a.verbatim => a.source + (at - a.at),
            Some(a) => a.source,
            None => at,
        }
    }

    fn push(&mut self, at: usize, source: usize, verbatim: bool) {
        if self.anchors.last().is_some_and(|a| a.at == at) {
            self.anchors.pop();
        }
        self.anchors.push(Anchor { at, source, verbatim });
    }

    fn append(&mut self, other: &SourceMap, offset: usize) {
        for a in &other.anchors {
            self.push(a.at + offset, a.source, a.verbatim);
        }
    }
}

/// [`parse_tags`], with each segment's [`SourceMap`] (empty for breaks).
pub fn parse_tags_mapped(transcript: &str) -> Vec<(Segment, SourceMap)> {
    let mut out: Vec<(Segment, SourceMap)> = Vec::new();
    let (mut speed, mut volume) = (1.0f32, 1.0f32);
    let mut rest = transcript;
    let mut text = String::new();
    let mut map = SourceMap::default();
    let flush =
        |text: &mut String, map: &mut SourceMap, out: &mut Vec<(Segment, SourceMap)>, speed, volume| {
            if text.is_empty() {
                return;
            }
            if let Some((Segment::Text { text: prev, speed: s, volume: v }, prev_map)) = out.last_mut()
                && *s == speed
                && *v == volume
            {
                prev_map.append(map, prev.len());
                prev.push_str(text);
            } else {
                out.push((Segment::Text { text: std::mem::take(text), speed, volume }, std::mem::take(map)));
            }
            text.clear();
            *map = SourceMap::default();
        };
    // Byte offset of `rest` in the transcript.
    let at = |rest: &str| transcript.len() - rest.len();
    while let Some(lt) = rest.find('<') {
        map.push(text.len(), at(rest), true);
        text.push_str(&rest[..lt]);
        let after = &rest[lt..];
        let Some(tag) = read_tag(after) else {
            map.push(text.len(), at(after), true);
            text.push('<');
            rest = &after[1..];
            continue;
        };
        let tag_at = at(after);
        rest = &after[tag.len..];
        match tag.name.as_str() {
            "break" => {
                flush(&mut text, &mut map, &mut out, speed, volume);
                if let Some(secs) = tag.attr("time").and_then(parse_duration) {
                    out.push((Segment::Break { seconds: secs.min(MAX_BREAK_SECONDS) }, SourceMap::default()));
                }
            }
            "speed" => {
                flush(&mut text, &mut map, &mut out, speed, volume);
                if let Some(r) =
                    tag.attr("ratio").and_then(|v| v.parse::<f32>().ok()).filter(|r| r.is_finite())
                {
                    speed = r.clamp(0.5, 2.0);
                }
            }
            "volume" => {
                flush(&mut text, &mut map, &mut out, speed, volume);
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
                map.push(text.len(), tag_at, false);
                text.push_str(&spell(inner));
                rest = remaining;
            }
            // <emotion/>, a stray </spell>, unknown tags: dropped.
            _ => {}
        }
    }
    map.push(text.len(), at(rest), true);
    text.push_str(rest);
    flush(&mut text, &mut map, &mut out, speed, volume);
    out
}

/// Byte ranges of the transcript's whitespace-separated tokens as written, where a tag counts as part of the token
/// around it (the space in `<break time="1s"/>` does not split it).
pub fn written_tokens(transcript: &str) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    let mut i = 0;
    while let Some(c) = transcript[i..].chars().next() {
        if c == '<'
            && let Some(tag) = read_tag(&transcript[i..])
        {
            start.get_or_insert(i);
            i += tag.len;
            continue;
        }
        if c.is_whitespace() {
            if let Some(s) = start.take() {
                out.push(s..i);
            }
        } else {
            start.get_or_insert(i);
        }
        i += c.len_utf8();
    }
    if let Some(s) = start {
        out.push(s..transcript.len());
    }
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
    fn segments_map_back_to_the_transcript() {
        let t = r#"Say <spell>ab</spell>. Then <speed ratio="1.5"/>go"#;
        let mapped = parse_tags_mapped(t);
        let (Segment::Text { text, .. }, map) = &mapped[0] else { panic!("{mapped:?}") };
        assert_eq!(text, "Say  A B . Then ");
        assert_eq!(map.source(0), 0);
        // The spelled letters come from the tag; the text after it is verbatim again.
        assert_eq!(map.source(text.find('A').unwrap()), t.find("<spell>").unwrap());
        assert_eq!(map.source(text.find('B').unwrap()), t.find("<spell>").unwrap());
        assert_eq!(map.source(text.find('.').unwrap()), t.find('.').unwrap());
        assert_eq!(map.source(text.find("Then").unwrap()), t.find("Then").unwrap());
        let (Segment::Text { text, .. }, map) = &mapped[1] else { panic!("{mapped:?}") };
        assert_eq!(text, "go");
        assert_eq!(map.source(0), t.find("go").unwrap());
        // Merged segments keep their own maps.
        let t = r#"One <emotion value="x"/>two"#;
        let mapped = parse_tags_mapped(t);
        assert_eq!(mapped.len(), 1);
        let (Segment::Text { text, .. }, map) = &mapped[0] else { panic!("{mapped:?}") };
        assert_eq!(map.source(text.find("two").unwrap()), t.find("two").unwrap());
    }

    #[test]
    fn written_tokens_keep_tags_whole() {
        let t = r#"Wait <break time="1s"/> then <spell>12</spell>. ok"#;
        let tokens: Vec<&str> = written_tokens(t).into_iter().map(|r| &t[r]).collect();
        assert_eq!(tokens, ["Wait", r#"<break time="1s"/>"#, "then", "<spell>12</spell>.", "ok"]);
        assert_eq!(written_tokens("  a  b "), [2..3, 5..6]);
        assert_eq!(written_tokens("3 < 5"), [0..1, 2..3, 4..5]);
    }

    #[test]
    fn open_tags_are_detected() {
        assert!(ends_in_open_tag("Hello <brea"));
        assert!(ends_in_open_tag("Hello <spell>A</"));
        assert!(!ends_in_open_tag("Hello <break/> there"));
        assert!(!ends_in_open_tag("3 < 5"));
    }
}
