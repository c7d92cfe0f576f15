//! The user's words as timestamps report them: each whitespace-separated token exactly as written, punctuation,
//! quotes and inline tags attached (`"Hello,"`, `today?`, `<spell>1234</spell>.`), as the service Chorus reproduces
//! reports them and as voice-agent frameworks rebuild their transcripts from them.
//!
//! The front end speaks tag-free text ([`crate::parse_tags`]), so the words it times are the tokens of that text
//! ([`tokenize`]). [`WordLabeler`] maps them back to the transcript's own tokens: the pieces of one written token
//! (the spelled letters of a `<spell>`, the two halves of a word with a `<speed>` tag inside) become one word, and a
//! token that speaks nothing (a lone `<break .../>`, a dash) is reported too, spanning the gap where it stands.

use std::collections::VecDeque;
use std::ops::Range;

use chorus_proto::WordTimestamps;

use crate::Segment;
use crate::tags::{SourceMap, written_tokens};

/// One whitespace-separated token of a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// Byte range in the text.
    pub range: Range<usize>,
    /// The token as written.
    pub text: String,
}

/// Splits `text` into its whitespace-separated tokens, as written.
pub fn tokenize(text: &str) -> Vec<Token> {
    text.split_whitespace()
        .map(|t| {
            // split_whitespace yields sub-slices of `text`, so the pointer difference is the byte offset.
            let start = t.as_ptr() as usize - text.as_ptr() as usize;
            Token { range: start..start + t.len(), text: t.to_owned() }
        })
        .collect()
}

/// Relabels the words of a transcript's segments (as the front end times them) with the transcript's own tokens.
///
/// Built from the transcript's segments ([`crate::parse_tags_mapped`]), of which the caller speaks, in order,
/// exactly the text segments that hold a letter or digit. Call [`WordLabeler::label`] with each chunk's word
/// timestamps (in order; they are those segments' [`tokenize`] tokens, in order) and [`WordLabeler::finish`] at
/// the end. Every written token is reported exactly once, in order, with monotonic times.
#[derive(Debug, Clone)]
pub struct WordLabeler {
    transcript: String,
    tokens: Vec<Range<usize>>,
    /// Spoken pieces still expected per written token.
    remaining: Vec<u32>,
    /// The written token of each spoken word still to come.
    queue: VecDeque<usize>,
    /// The first written token not reported yet.
    next: usize,
    /// A written token being assembled from its pieces: (index, start, end).
    current: Option<(usize, f64, f64)>,
    last_end: f64,
}

impl WordLabeler {
    /// A labeler for `transcript` (inline tags included) and its `segments`, whose audio starts at `start` seconds.
    pub fn new(transcript: &str, segments: &[(Segment, SourceMap)], start: f64) -> Self {
        let tokens = written_tokens(transcript);
        let mut labeler = Self {
            transcript: transcript.to_owned(),
            remaining: vec![0; tokens.len()],
            tokens,
            queue: VecDeque::new(),
            next: 0,
            current: None,
            last_end: start,
        };
        for (segment, map) in segments {
            if let Segment::Text { text, .. } = segment
                && text.chars().any(char::is_alphanumeric)
            {
                labeler.segment(text, map);
            }
        }
        labeler
    }

    /// A text segment to be spoken: `text` as the front end gets it, `map` where it came from.
    fn segment(&mut self, text: &str, map: &SourceMap) {
        let mut floor = self.queue.back().copied().unwrap_or(self.next);
        for t in tokenize(text) {
            let source = map.source(t.range.start);
            // The written token holding that byte (or the nearest before it: a byte between tokens).
            let k = self.tokens.partition_point(|r| r.start <= source).saturating_sub(1).max(floor);
            floor = k;
            if let Some(n) = self.remaining.get_mut(k) {
                *n += 1;
            }
            self.queue.push_back(k);
        }
    }

    /// The written words of `words` (the front end's, in seconds of the stream): pieces of one written token are
    /// merged; a token whose last piece has not been spoken yet is held back for a later call.
    pub fn label(&mut self, words: &WordTimestamps) -> WordTimestamps {
        let mut out = WordTimestamps::default();
        for ((word, &start), &end) in words.words.iter().zip(&words.start).zip(&words.end) {
            let Some(k) = self.queue.pop_front().filter(|&k| k >= self.next && k < self.tokens.len()) else {
                // More words than the segments' tokens (never expected): pass the front end's word through.
                self.emit_text(&mut out, word.clone(), start, end);
                continue;
            };
            if let Some((j, s, e)) = self.current
                && j != k
            {
                self.current = None;
                self.emit(&mut out, j, s, e);
            }
            self.unspoken_until(&mut out, k, start);
            self.current = Some(match self.current {
                Some((_, s, e)) => (k, s.min(start), e.max(end)),
                None => (k, start, end),
            });
            let left = self.remaining.get_mut(k).map_or(0, |n| {
                *n = n.saturating_sub(1);
                *n
            });
            if left == 0
                && let Some((j, s, e)) = self.current.take()
            {
                self.emit(&mut out, j, s, e);
            }
        }
        out
    }

    /// Everything not reported yet, the audio having ended at `end` seconds: a token held back, then the tokens
    /// that spoke nothing (spanning what is left up to `end`).
    pub fn finish(&mut self, end: f64) -> WordTimestamps {
        let mut out = WordTimestamps::default();
        if let Some((j, s, e)) = self.current.take() {
            self.emit(&mut out, j, s, e);
        }
        self.unspoken_until(&mut out, self.tokens.len(), end);
        self.queue.clear();
        out
    }

    /// Reports the written tokens before `k` that were not spoken, spanning the gap up to `until`.
    fn unspoken_until(&mut self, out: &mut WordTimestamps, k: usize, until: f64) {
        while self.next < k.min(self.tokens.len()) {
            let (s, e) = (self.last_end, until.max(self.last_end));
            self.emit(out, self.next, s, e);
        }
    }

    fn emit(&mut self, out: &mut WordTimestamps, k: usize, start: f64, end: f64) {
        let text =
            self.tokens.get(k).and_then(|r| self.transcript.get(r.clone())).unwrap_or_default().to_owned();
        self.next = self.next.max(k + 1);
        self.emit_text(out, text, start, end);
    }

    fn emit_text(&mut self, out: &mut WordTimestamps, text: String, start: f64, end: f64) {
        let start = start.max(self.last_end);
        let end = end.max(start);
        self.last_end = end;
        out.words.push(text);
        out.start.push(start);
        out.end.push(end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tags::parse_tags_mapped;

    #[test]
    fn tokens_as_written() {
        let text = "\"Hello,\" she said — it's 40-60% (approx.) of U.S. sales… ok?!";
        let words: Vec<String> = tokenize(text).into_iter().map(|t| t.text).collect();
        assert_eq!(
            words,
            ["\"Hello,\"", "she", "said", "—", "it's", "40-60%", "(approx.)", "of", "U.S.", "sales…", "ok?!"]
        );
        for t in tokenize(text) {
            assert_eq!(text[t.range.clone()], t.text);
        }
    }

    /// Speaks `transcript` as the worker does: each text segment's tokens, one word per token, 0.5 s each, breaks
    /// as silence.
    fn speak(transcript: &str, chunk_words: usize) -> WordTimestamps {
        let segments = parse_tags_mapped(transcript);
        let mut labeler = WordLabeler::new(transcript, &segments, 10.0);
        let mut t = 10.0;
        let mut out = WordTimestamps::default();
        for (segment, _) in segments {
            match segment {
                Segment::Break { seconds } => t += f64::from(seconds),
                Segment::Text { text, .. } => {
                    let tokens = tokenize(&text);
                    for chunk in tokens.chunks(chunk_words) {
                        let mut words = WordTimestamps::default();
                        for token in chunk {
                            words.words.push(token.text.clone());
                            words.start.push(t);
                            words.end.push(t + 0.5);
                            t += 0.5;
                        }
                        let labeled = labeler.label(&words);
                        out.extend_shifted(&labeled, 0.0);
                    }
                }
            }
        }
        out.extend_shifted(&labeler.finish(t), 0.0);
        out
    }

    #[test]
    fn written_tokens_are_reported_whole_and_in_order() {
        let t = r#"Hello, I love to <spell>1234</spell>. Wait <break time="1s"/> then Hel<speed ratio="1.5"/>lo!"#;
        for chunk_words in [1, 2, 3, 100] {
            let w = speak(t, chunk_words);
            assert_eq!(
                w.words,
                [
                    "Hello,",
                    "I",
                    "love",
                    "to",
                    "<spell>1234</spell>.",
                    "Wait",
                    r#"<break time="1s"/>"#,
                    "then",
                    r#"Hel<speed ratio="1.5"/>lo!"#
                ],
                "chunks of {chunk_words}"
            );
            assert!(w.start.iter().zip(&w.end).all(|(s, e)| s <= e));
            assert!(w.end.windows(2).all(|p| p[0] <= p[1]));
            assert!(w.start.windows(2).all(|p| p[0] <= p[1]));
            // The spelled token spans its four letters and the period (5 pieces of 0.5 s).
            let spelled = w.words.iter().position(|x| x.starts_with("<spell>")).unwrap();
            assert!((w.end[spelled] - w.start[spelled] - 2.5).abs() < 1e-9, "{w:?}");
            // The break spans its silence: from "Wait"'s end to "then"'s start.
            let brk = w.words.iter().position(|x| x.starts_with("<break")).unwrap();
            assert!((w.end[brk] - w.start[brk] - 1.0).abs() < 1e-9, "{w:?}");
        }
    }

    #[test]
    fn trailing_unspoken_tokens_are_reported_at_the_end() {
        let w = speak(r#"Done. <break time="2s"/>"#, 5);
        assert_eq!(w.words, ["Done.", r#"<break time="2s"/>"#]);
        assert!((w.end[1] - w.start[1] - 2.0).abs() < 1e-9, "{w:?}");
    }
}
