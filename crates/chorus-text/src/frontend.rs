//! From text to model-ready chunks: normalization, clause phonemization, chunking (short first chunk), and the map
//! from every phoneme back to the word the user wrote.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;

use chorus_proto::{PhonemeTimestamps, PronunciationItem, WordTimestamps};
use crossbeam_channel::Receiver;

use crate::TextError;
use crate::espeak::{Clause, Phonemizer};
use crate::normalize::{Normalized, normalize};
use crate::phonemes::PhonemeIdMap;
use crate::pronounce::{Lexicon, PhonemeOverride};
use crate::words::{Token, tokenize};

/// Chunking and input limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrontendConfig {
    /// Longest accepted text, in characters.
    pub max_chars: usize,
    /// The opening chunk ends at the first clause boundary after this many phonemes (short first chunk, fast
    /// audio).
    pub first_chunk_min_phonemes: usize,
    /// The opening chunk is cut at the last word boundary within this many phonemes: a few words, whatever the
    /// first clause's length. Also the smallest budget of a later chunk.
    pub first_chunk_max_phonemes: usize,
    /// No chunk holds more than this many phonemes; sentences longer split at clause, then word, bounds.
    pub max_chunk_phonemes: usize,
}

impl FrontendConfig {
    /// Checks a text against the limits: not empty, not over `max_chars`, something to speak. Cheap: callers
    /// use it to reject bad input before anything loads.
    pub fn validate(&self, text: &str) -> Result<(), TextError> {
        if text.trim().is_empty() {
            return Err(TextError::Empty);
        }
        let len = text.chars().count();
        if len > self.max_chars {
            return Err(TextError::TooLong { len, max: self.max_chars });
        }
        if !text.chars().any(char::is_alphanumeric) {
            return Err(TextError::NothingToSpeak);
        }
        Ok(())
    }
}

impl Default for FrontendConfig {
    fn default() -> Self {
        Self {
            max_chars: 50_000,
            first_chunk_min_phonemes: 12,
            first_chunk_max_phonemes: 20,
            max_chunk_phonemes: 400,
        }
    }
}

/// How much text a chunk may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkBudget {
    /// The opening of a stream that has no audio buffered: a few words, for a fast first audio whatever the first
    /// clause's length. It ends at the first clause boundary after `first_chunk_min_phonemes`, or at the last word
    /// boundary within `first_chunk_max_phonemes`.
    Opening,
    /// Whole clauses up to this many phonemes (clamped to `first_chunk_max_phonemes..=max_chunk_phonemes`), ending
    /// at a sentence end; a clause longer than the budget is split at a word boundary.
    Phonemes(usize),
}

/// The text front end: cheap to clone, shared by every request.
#[derive(Debug, Clone)]
pub struct Frontend {
    phonemizer: Phonemizer,
    config: FrontendConfig,
}

/// One request's text and how to treat it.
#[derive(Debug, Clone, Copy)]
pub struct TextInput<'a> {
    pub text: &'a str,
    /// Expand numbers, dates, currency, abbreviations... before phonemization.
    pub normalize: bool,
    /// The espeak-ng voice (language) of the model voice, e.g. `en-us`.
    pub espeak_voice: &'a str,
    /// Pronunciation dictionary entries, applied to the text as written, before normalization.
    pub pronunciations: &'a [PronunciationItem],
    /// Timestamps name the normalized words ("twelve", "dollars") instead of the tokens as written ("$12").
    pub normalized_words: bool,
}

impl<'a> TextInput<'a> {
    /// Plain text: no dictionary.
    pub fn new(text: &'a str, normalize: bool, espeak_voice: &'a str) -> Self {
        Self { text, normalize, espeak_voice, pronunciations: &[], normalized_words: false }
    }
}

impl Frontend {
    pub fn new(phonemizer: Phonemizer, config: FrontendConfig) -> Self {
        Self { phonemizer, config }
    }

    pub fn config(&self) -> &FrontendConfig {
        &self.config
    }

    /// Checks a text against the limits without phonemizing it.
    pub fn validate(&self, text: &str) -> Result<(), TextError> {
        self.config.validate(text)
    }

    /// Starts phonemizing `input` and returns the chunks as a lazy stream: the first chunk is ready as soon as its
    /// clauses are, whatever the length of the text.
    pub fn chunks(&self, input: TextInput<'_>, ids: Arc<PhonemeIdMap>) -> Result<ChunkStream, TextError> {
        self.validate(input.text)?;
        let lexicon = Lexicon::new(input.pronunciations);
        let (normalized, overrides) = if lexicon.is_empty() {
            let n = if input.normalize { normalize(input.text) } else { Normalized::identity(input.text) };
            (n, Vec::new())
        } else {
            let (dict, overrides) = lexicon.apply(input.text);
            // The limit bounds what is synthesized: a dictionary must not turn it into millions of characters.
            let len = dict.text().chars().count();
            if len > self.config.max_chars {
                return Err(TextError::TooLongExpanded { len, max: self.config.max_chars });
            }
            let n = if input.normalize { normalize(dict.text()).compose(&dict) } else { dict };
            (n, overrides)
        };
        let rx = self.phonemizer.stream(input.espeak_voice, normalized.text())?;
        Ok(ChunkStream {
            tokens: tokenize(input.text),
            original_len: input.text.len(),
            normalized,
            overrides,
            rx: Some(rx),
            pending: VecDeque::new(),
            ids,
            config: self.config,
            next_token: 0,
            index: 0,
            normalized_words: input.normalized_words,
        })
    }
}

/// One phoneme symbol of a chunk and where its ids sit in [`PhonemeChunk::ids`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhonemeSlot {
    pub symbol: char,
    /// Index of the symbol's first id; its ids are `ids[id_start..id_start + id_len]`, the last being the pad.
    pub id_start: usize,
    pub id_len: usize,
    /// The word (index into [`PhonemeChunk::words`]) this phoneme belongs to; `None` for spaces and punctuation.
    pub word: Option<usize>,
}

/// A word as the user wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkWord {
    pub text: String,
    /// Byte range in the original text.
    pub range: Range<usize>,
}

/// One unit of synthesis: model input ids plus the maps needed for timestamps.
#[derive(Debug, Clone, PartialEq)]
pub struct PhonemeChunk {
    /// 0 for the first chunk of a request.
    pub index: usize,
    /// Model input: `^ _ p1 _ ... pn _ $`.
    pub ids: Vec<i64>,
    pub slots: Vec<PhonemeSlot>,
    /// The user's words this chunk speaks, in order. Every word of the input is in exactly one chunk.
    pub words: Vec<ChunkWord>,
    /// Byte range of the normalized text this chunk covers.
    pub normalized_range: Range<usize>,
    /// True for the request's final chunk.
    pub is_last: bool,
}

impl PhonemeChunk {
    /// The id index where the last spoken phoneme (one that belongs to a word) ends, pad included.
    pub fn speech_end_id(&self) -> Option<usize> {
        self.slots.iter().rev().find(|s| s.word.is_some()).map(|s| s.id_start + s.id_len)
    }

    /// The phoneme string the model is given (without BOS/EOS/pads).
    pub fn phoneme_string(&self) -> String {
        self.slots.iter().map(|s| s.symbol).collect()
    }

    /// Word and phoneme timestamps from the model's per-id durations (in frames), shifted by `offset` seconds.
    ///
    /// A word runs from the start of its first phoneme to the end of its last (pad included). A word that produced
    /// no phoneme (rare: a token the phonemizer skipped) gets a zero-length span where it would have been, so every
    /// input word is reported, in order, with monotonic times.
    pub fn timestamps(
        &self,
        durations: &[f32],
        seconds_per_frame: f64,
        offset: f64,
    ) -> (WordTimestamps, PhonemeTimestamps) {
        let mut edges = Vec::with_capacity(durations.len() + 1);
        let mut acc = 0.0f64;
        edges.push(0.0);
        for d in durations {
            acc += f64::from(d.max(0.0)) * seconds_per_frame;
            edges.push(acc);
        }
        let at = |i: usize| edges.get(i).or(edges.last()).copied().unwrap_or(0.0);

        let mut spans: Vec<Option<(f64, f64)>> = vec![None; self.words.len()];
        let mut phonemes = PhonemeTimestamps::default();
        for slot in &self.slots {
            let (s, e) = (at(slot.id_start), at(slot.id_start + slot.id_len));
            if let Some(w) = slot.word
                && let Some(span) = spans.get_mut(w)
            {
                *span = Some(span.map_or((s, e), |(a, b)| (a.min(s), b.max(e))));
            }
            if !slot.symbol.is_whitespace() {
                phonemes.phonemes.push(slot.symbol.to_string());
                phonemes.start.push(s + offset);
                phonemes.end.push(e + offset);
            }
        }
        let mut words = WordTimestamps::default();
        let mut last_end = 0.0f64;
        for (word, span) in self.words.iter().zip(spans) {
            let (s, e) = match span {
                Some((s, e)) => (s.max(last_end), e.max(last_end)),
                None => (last_end, last_end),
            };
            last_end = e;
            words.words.push(word.text.clone());
            words.start.push(s + offset);
            words.end.push(e + offset);
        }
        (words, phonemes)
    }
}

/// The chunks of one request, produced lazily. Dropping it stops the phonemizer's work for this request.
#[derive(Debug)]
pub struct ChunkStream {
    normalized: Normalized,
    overrides: Vec<PhonemeOverride>,
    tokens: Vec<Token>,
    original_len: usize,
    rx: Option<Receiver<Result<Clause, TextError>>>,
    pending: VecDeque<Prepared>,
    ids: Arc<PhonemeIdMap>,
    config: FrontendConfig,
    next_token: usize,
    index: usize,
    /// Report the normalized words (see [`TextInput::normalized_words`]).
    normalized_words: bool,
}

/// A clause whose espeak words are aligned to normalized words.
#[derive(Debug, Clone)]
struct Prepared {
    range: Range<usize>,
    groups: Vec<Group>,
    terminator: Option<char>,
    sentence_end: bool,
}

#[derive(Debug, Clone)]
struct Group {
    phonemes: String,
    /// The normalized word (byte range in the normalized text) these phonemes speak.
    word: Option<Range<usize>>,
    /// False for the second and later parts of a group espeak glued together: no space between them.
    space_before: bool,
    /// Whether a chunk may end before this group: at a space, and not inside the expansion of one written token
    /// ("$12.50" -> "twelve dollars and fifty cents"), whose timestamp must cover all of it.
    cut_before: bool,
}

impl Prepared {
    fn phoneme_count(&self) -> usize {
        self.groups.iter().map(|g| g.phonemes.chars().count() + 1).sum()
    }

    /// Splits after as many groups as fit in `max` phonemes (at least one word); the head has no terminator. The
    /// whole clause and no tail when it has no place to cut (one written token's expansion).
    fn split_at_word(mut self, max: usize) -> (Prepared, Option<Prepared>) {
        let mut count = 0;
        let mut cut = 0;
        for (i, g) in self.groups.iter().enumerate() {
            count += g.phonemes.chars().count() + 1;
            if i > 0 && count > max && cut > 0 {
                break;
            }
            // Cut only where espeak put a space, never inside a glued group.
            if self.groups.get(i + 1).is_none_or(|next| next.cut_before) {
                cut = i + 1;
            }
        }
        if cut >= self.groups.len() {
            return (self, None);
        }
        let tail_groups = self.groups.split_off(cut.max(1));
        let boundary = tail_groups
            .iter()
            .find_map(|g| g.word.as_ref().map(|w| w.start))
            .unwrap_or(self.range.end)
            .clamp(self.range.start, self.range.end);
        let tail = Prepared {
            range: boundary..self.range.end,
            groups: tail_groups,
            terminator: self.terminator,
            sentence_end: self.sentence_end,
        };
        let head = Prepared {
            range: self.range.start..boundary,
            groups: self.groups,
            terminator: None,
            sentence_end: false,
        };
        (head, Some(tail))
    }
}

impl ChunkStream {
    /// Receives the next clause from the phonemizer, aligned. `Ok(None)` at the end of the text.
    fn receive(&mut self) -> Result<Option<Prepared>, TextError> {
        loop {
            let Some(rx) = &self.rx else { return Ok(None) };
            match rx.recv() {
                Ok(Ok(clause)) => {
                    let mut prepared = align(&self.normalized, clause);
                    if !self.overrides.is_empty() {
                        apply_overrides(&mut prepared, &self.normalized, &self.overrides);
                    }
                    if prepared.groups.is_empty() && prepared.terminator.is_none() {
                        continue;
                    }
                    return Ok(Some(prepared));
                }
                Ok(Err(e)) => {
                    self.rx = None;
                    return Err(e);
                }
                Err(_) => {
                    self.rx = None;
                    return Ok(None);
                }
            }
        }
    }

    fn peek_pending(&mut self) -> Result<bool, TextError> {
        if self.pending.is_empty()
            && let Some(p) = self.receive()?
        {
            self.pending.push_back(p);
        }
        Ok(!self.pending.is_empty())
    }

    /// The next chunk within `budget`; `Ok(None)` at the end of the text. The synthesis pipeline sizes each chunk
    /// against its stream's slack (see `chorus_engine::scheduler`); [`Iterator::next`] uses a fixed ramp.
    pub fn next_within(&mut self, budget: ChunkBudget) -> Result<Option<PhonemeChunk>, TextError> {
        let (max, stop_after) = match budget {
            ChunkBudget::Opening => {
                (self.config.first_chunk_max_phonemes, Some(self.config.first_chunk_min_phonemes))
            }
            ChunkBudget::Phonemes(n) => {
                let hi = self.config.max_chunk_phonemes.max(1);
                (n.clamp(self.config.first_chunk_max_phonemes.clamp(1, hi), hi), None)
            }
        };
        let mut taken: Vec<Prepared> = Vec::new();
        let mut count = 0usize;
        while self.peek_pending()? {
            let Some(next) = self.pending.pop_front() else {
                break;
            };
            let n = next.phoneme_count();
            if taken.is_empty() {
                if n > max && next.groups.len() > 1 {
                    let (head, tail) = next.split_at_word(max);
                    taken.push(head);
                    if let Some(tail) = tail {
                        self.pending.push_front(tail);
                    }
                    break;
                }
            } else if count + n > max {
                self.pending.push_front(next);
                break;
            }
            count += n;
            let ends_sentence = next.sentence_end;
            taken.push(next);
            if ends_sentence || stop_after.is_some_and(|min| count >= min) {
                break;
            }
        }
        if taken.is_empty() {
            // Any words not yet reported (none normally) are dropped with the end of the text.
            return Ok(None);
        }
        let is_last = !self.peek_pending()?;
        Ok(Some(self.build(taken, is_last)))
    }

    /// The fixed ramp of [`Iterator::next`]: the opening chunk, then twice its limit per chunk (by default 20, 40,
    /// 80, 160, 320, then 400 phonemes).
    fn ramp(&self) -> ChunkBudget {
        if self.index == 0 {
            ChunkBudget::Opening
        } else {
            ChunkBudget::Phonemes(self.config.first_chunk_max_phonemes.saturating_mul(1 << self.index.min(8)))
        }
    }

    /// Chunks produced so far.
    pub fn produced(&self) -> usize {
        self.index
    }

    fn build(&mut self, clauses: Vec<Prepared>, is_last: bool) -> PhonemeChunk {
        let norm_start = clauses.first().map_or(0, |c| c.range.start);
        let norm_end = clauses.last().map_or(norm_start, |c| c.range.end);
        // The user's words this chunk owns: those starting before the original position of the chunk's end.
        let orig_end =
            if is_last { self.original_len } else { self.normalized.original_range(norm_end..norm_end).end };
        let first_token = self.next_token;
        while self.next_token < self.tokens.len()
            && self.tokens.get(self.next_token).is_some_and(|t| t.range.start < orig_end)
        {
            self.next_token += 1;
        }
        let chunk_tokens = &self.tokens[first_token..self.next_token];

        // Map each group to one of the chunk's tokens (or, for normalized timestamps, to its normalized word).
        let groups: Vec<&Group> = clauses.iter().flat_map(|c| c.groups.iter()).collect();
        let (owners, words) = if self.normalized_words {
            normalized_owners(&self.normalized, &groups)
        } else {
            let words = chunk_tokens
                .iter()
                .map(|t| ChunkWord { text: t.text.clone(), range: t.range.clone() })
                .collect();
            (assign_tokens(&self.normalized, &groups, chunk_tokens), words)
        };

        let mut ids = vec![self.ids.bos(), self.ids.pad()];
        let mut slots = Vec::new();
        let mut push = |symbol: char, word: Option<usize>, ids: &mut Vec<i64>| {
            if let Some(p) = self.ids.ids(symbol) {
                slots.push(PhonemeSlot { symbol, id_start: ids.len(), id_len: p.len() + 1, word });
                ids.extend_from_slice(p);
                ids.push(self.ids.pad());
            }
        };
        let mut g = 0usize;
        for clause in &clauses {
            for (i, group) in clause.groups.iter().enumerate() {
                if i > 0 && group.space_before {
                    push(' ', None, &mut ids);
                }
                let owner = owners.get(g).copied().flatten();
                for c in group.phonemes.chars() {
                    push(c, owner, &mut ids);
                }
                g += 1;
            }
            if let Some(p) = clause.terminator {
                push(p, None, &mut ids);
                if matches!(p, ',' | ':' | ';') {
                    push(' ', None, &mut ids);
                }
            }
        }
        ids.push(self.ids.eos());
        let index = self.index;
        self.index += 1;
        PhonemeChunk { index, ids, slots, words, normalized_range: norm_start..norm_end, is_last }
    }
}

impl Iterator for ChunkStream {
    type Item = Result<PhonemeChunk, TextError>;

    fn next(&mut self) -> Option<Self::Item> {
        let budget = self.ramp();
        self.next_within(budget).transpose()
    }
}

/// Aligns espeak's words (space-separated phoneme groups) with the normalized words of the clause.
///
/// espeak does not always keep one group per word: it glues unstressed function words to their neighbour
/// ("and a pen" -> `ænd ɐpˈɛn`) and may read one token as several words. The alignment is a monotonic dynamic
/// programme over segment lengths: each step pairs one group with up to [`MAX_SPAN`] words (a glued group, then
/// split between them by letter count) or up to [`MAX_SPAN`] groups with one word, minimising the squared log
/// ratio of phoneme count to expected count. Every word gets at least one phoneme whenever the clause has as many
/// phonemes as words.
fn align(normalized: &Normalized, clause: Clause) -> Prepared {
    let text = normalized.text();
    let range = clause.range.start.min(text.len())..clause.range.end.min(text.len());
    let words: Vec<Range<usize>> = tokenize_ranges(text, range.clone());
    let espeak_groups: Vec<&str> = clause.phonemes.split(' ').filter(|g| !g.is_empty()).collect();
    let mut groups = Vec::with_capacity(espeak_groups.len().max(words.len()));
    if words.is_empty() {
        groups.extend(espeak_groups.iter().map(|g| Group {
            phonemes: (*g).to_owned(),
            word: None,
            space_before: true,
            cut_before: true,
        }));
    } else if words.len() == espeak_groups.len() {
        groups.extend(espeak_groups.iter().zip(&words).map(|(g, w)| Group {
            phonemes: (*g).to_owned(),
            word: Some(w.clone()),
            space_before: true,
            cut_before: true,
        }));
    } else {
        let letters: Vec<usize> = words.iter().map(|w| spoken_letters(&text[w.clone()])).collect();
        let phones: Vec<usize> = espeak_groups.iter().map(|g| g.chars().count()).collect();
        for (gs, ws) in align_segments(&phones, &letters) {
            if gs.len() == 1 && ws.len() > 1 {
                // One glued group: split its phonemes between the words in proportion to their letters.
                let chars: Vec<char> = espeak_groups[gs.start].chars().collect();
                let total: usize = letters[ws.clone()].iter().sum();
                let mut from = 0usize;
                let mut acc = 0usize;
                for (k, w) in ws.clone().enumerate() {
                    acc += letters[w];
                    let remaining_words = ws.end - w - 1;
                    let to = if remaining_words == 0 {
                        chars.len()
                    } else {
                        (chars.len() * acc / total)
                            .clamp(from + 1, chars.len().saturating_sub(remaining_words))
                    };
                    let to = to.max(from);
                    groups.push(Group {
                        phonemes: chars[from..to].iter().collect(),
                        word: words.get(w).cloned(),
                        space_before: k == 0,
                        cut_before: k == 0,
                    });
                    from = to;
                }
            } else {
                let word = words.get(ws.start).cloned();
                groups.extend(gs.map(|g| Group {
                    phonemes: espeak_groups[g].to_owned(),
                    word: word.clone(),
                    space_before: true,
                    cut_before: true,
                }));
            }
        }
    }
    groups.retain(|g| !g.phonemes.is_empty());
    // Never cut between two groups of one written token's expansion (or of one word spoken as several groups).
    let mut previous: Option<Range<usize>> = None;
    for g in &mut groups {
        let original = g.word.as_ref().map(|w| normalized.original_range(w.clone()));
        if let (Some(a), Some(b)) = (&previous, &original)
            && a.start < b.end
            && b.start < a.end
        {
            g.cut_before = false;
        }
        if original.is_some() {
            previous = original;
        }
    }
    Prepared { range, groups, terminator: clause.terminator, sentence_end: clause.sentence_end }
}

/// Expected spoken length of a word in letters: a digit left in the text is read as a whole word ("9" ->
/// "nine"), so it counts as four.
fn spoken_letters(word: &str) -> usize {
    let n: usize =
        word.chars().map(|c| if c.is_ascii_digit() { 4 } else { usize::from(c.is_alphanumeric()) }).sum();
    n.max(1)
}

/// Replaces espeak's phonemes for dictionary words with IPA aliases: the first group of such a word takes the
/// alias, the word's other groups are dropped.
fn apply_overrides(prepared: &mut Prepared, normalized: &Normalized, overrides: &[PhonemeOverride]) {
    let mut last: Option<usize> = None;
    prepared.groups.retain_mut(|g| {
        let hit = g.word.as_ref().and_then(|w| {
            // The token may carry punctuation ("tomato,"): compare its letters only.
            let text = normalized.text();
            let word = &text[w.clone()];
            let lead = word.len() - word.trim_start_matches(|c: char| !c.is_alphanumeric()).len();
            let trail = word.len() - word.trim_end_matches(|c: char| !c.is_alphanumeric()).len();
            let core = (w.start + lead)..(w.end - trail).max(w.start + lead);
            let orig = normalized.original_range(core);
            overrides.iter().position(|o| o.original.start <= orig.start && orig.end <= o.original.end)
        });
        match hit {
            Some(i) if last == Some(i) => false,
            Some(i) => {
                last = Some(i);
                g.phonemes.clone_from(&overrides[i].phonemes);
                true
            }
            None => {
                last = None;
                true
            }
        }
    });
}

/// Longest run of words glued into one group, or of groups spoken for one word, that the alignment considers.
const MAX_SPAN: usize = 4;

/// Monotonic alignment of `phones` (phoneme counts of espeak's groups) with `letters` (letter counts of the words):
/// a list of (groups, words) steps covering both, each step one group with 1..=MAX_SPAN words or 2..=MAX_SPAN groups
/// with one word. When no such path exists (very uneven counts) the leftovers go to the last step.
fn align_segments(phones: &[usize], letters: &[usize]) -> Vec<(Range<usize>, Range<usize>)> {
    let (m, n) = (phones.len(), letters.len());
    if m == 0 || n == 0 {
        return vec![(0..m, 0..n)];
    }
    let ratio = phones.iter().sum::<usize>() as f64 / letters.iter().sum::<usize>() as f64;
    let cost = |g: Range<usize>, w: Range<usize>| {
        let p: usize = phones[g].iter().sum();
        let l: usize = letters[w].iter().sum();
        let d = (p as f64).ln() - (ratio * l as f64).ln();
        d * d + 0.05 // a small price per step favours one-to-one pairs when lengths agree
    };
    let inf = f64::INFINITY;
    let mut best = vec![vec![inf; n + 1]; m + 1];
    let mut back = vec![vec![(0usize, 0usize); n + 1]; m + 1];
    best[0][0] = 0.0;
    for i in 0..=m {
        for j in 0..=n {
            let here = best[i][j];
            if !here.is_finite() {
                continue;
            }
            let mut relax = |gi: usize, wj: usize| {
                if gi <= m && wj <= n {
                    let c = here + cost(i..gi, j..wj);
                    if c < best[gi][wj] {
                        best[gi][wj] = c;
                        back[gi][wj] = (i, j);
                    }
                }
            };
            for k in 1..=MAX_SPAN {
                relax(i + 1, j + k);
            }
            for k in 2..=MAX_SPAN {
                relax(i + k, j + 1);
            }
        }
    }
    if !best[m][n].is_finite() {
        // Fall back: one-to-one as far as both go, the rest to the last pair.
        let k = m.min(n);
        let mut steps: Vec<_> = (0..k - 1).map(|i| (i..i + 1, i..i + 1)).collect();
        steps.push((k - 1..m, k - 1..n));
        return steps;
    }
    let mut steps = Vec::new();
    let (mut i, mut j) = (m, n);
    while i > 0 || j > 0 {
        let (pi, pj) = back[i][j];
        steps.push((pi..i, pj..j));
        (i, j) = (pi, pj);
    }
    steps.reverse();
    steps
}

/// Byte ranges of the whitespace-separated tokens of `text[range]` that contain a letter or digit.
fn tokenize_ranges(text: &str, range: Range<usize>) -> Vec<Range<usize>> {
    let Some(slice) = text.get(range.clone()) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    for (i, c) in slice.char_indices().chain(std::iter::once((slice.len(), ' '))) {
        if c.is_whitespace() {
            if let Some(s) = start.take()
                && slice[s..i].chars().any(char::is_alphanumeric)
            {
                out.push(range.start + s..range.start + i);
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    out
}

/// For each group, the index (into `tokens`) of the user's word it speaks. Groups of one expansion that spans
/// several of the user's words ("March 4, 2025") are spread over those words in order.
fn assign_tokens(normalized: &Normalized, groups: &[&Group], tokens: &[Token]) -> Vec<Option<usize>> {
    if tokens.is_empty() {
        return vec![None; groups.len()];
    }
    let spans: Vec<Option<(usize, usize)>> = groups
        .iter()
        .map(|g| {
            let w = g.word.as_ref()?;
            let orig = normalized.original_range(w.clone());
            let overlapping =
                |t: &Token| t.range.start < orig.end.max(orig.start + 1) && orig.start < t.range.end;
            match (tokens.iter().position(overlapping), tokens.iter().rposition(overlapping)) {
                (Some(a), Some(b)) => Some((a, b)),
                _ => {
                    // No overlap (the word came from a symbol the tokenizer skips): the nearest preceding word.
                    let before = tokens.iter().rposition(|t| t.range.start <= orig.start).unwrap_or(0);
                    Some((before, before))
                }
            }
        })
        .collect();
    let mut out = vec![None; groups.len()];
    let mut i = 0;
    while i < groups.len() {
        let Some((a, b)) = spans[i] else {
            i += 1;
            continue;
        };
        let run = spans[i..].iter().take_while(|s| **s == Some((a, b))).count();
        for k in 0..run {
            out[i + k] = Some(a + k * (b - a + 1) / run);
        }
        i += run;
    }
    out
}

/// For normalized timestamps: the chunk's normalized words (each group's, in order; a word spoken by several groups
/// once) and each group's index among them. Their ranges are in the original text, as [`ChunkWord`]'s are.
fn normalized_owners(normalized: &Normalized, groups: &[&Group]) -> (Vec<Option<usize>>, Vec<ChunkWord>) {
    let mut words: Vec<ChunkWord> = Vec::new();
    let mut last: Option<&Range<usize>> = None;
    let owners = groups
        .iter()
        .map(|g| {
            let w = g.word.as_ref()?;
            if last != Some(w) {
                let text = normalized.text().get(w.clone()).unwrap_or_default().to_owned();
                words.push(ChunkWord { text, range: normalized.original_range(w.clone()) });
                last = Some(w);
            }
            Some(words.len() - 1)
        })
        .collect();
    (owners, words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glued_function_words_are_split_out() {
        // "and a pen" -> espeak `ænd ɐpˈɛn`: the second group speaks two words.
        assert_eq!(align_segments(&[3, 5], &[3, 1, 3]), vec![(0..1, 0..1), (1..2, 1..3)]);
        // One to one when lengths agree.
        assert_eq!(align_segments(&[2, 6, 3], &[2, 7, 3]), vec![(0..1, 0..1), (1..2, 1..2), (2..3, 2..3)]);
        // One token read as several words: "in 1999 okay" -> `ɪn nˈaɪntiːn nˈaɪnti nˈaɪn oʊkˈeɪ`.
        let letters: Vec<usize> = ["in", "1999", "okay"].iter().map(|w| spoken_letters(w)).collect();
        assert_eq!(
            align_segments(&[2, 9, 7, 5, 6], &letters),
            vec![(0..1, 0..1), (1..4, 1..2), (4..5, 2..3)]
        );
    }

    #[test]
    fn uneven_counts_still_cover_everything() {
        let steps = align_segments(&[40], &[1, 1, 1, 1, 1, 1, 1]);
        assert_eq!(steps.first().map(|s| s.0.start), Some(0));
        assert_eq!(steps.last().map(|s| (s.0.end, s.1.end)), Some((1, 7)));
    }
}
