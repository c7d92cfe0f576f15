//! Text normalization (US English) with an offset map back to the original text.
//!
//! [`normalize`] rewrites the text the user wrote into words espeak-ng reads well: numbers,
//! currency, percentages, ranges, dates, times, ordinals, units, abbreviations, URLs, e-mail
//! addresses and a few symbols are spelled out; everything else is copied verbatim.
//!
//! The result, [`Normalized`], keeps a sorted list of [`Piece`]s that cover both the normalized
//! text and the original text contiguously and in order. A [`PieceKind::Verbatim`] piece is a
//! byte-for-byte copy, so its sub-ranges map to sub-ranges; a [`PieceKind::Expanded`] piece is the
//! spelled-out form of one original token, and any part of it maps to the whole token.
//! [`Normalized::original_range`] uses this to name, for every word the synthesizer speaks, the
//! span of the text the user wrote.
//!
//! Design rules:
//! - Expansions contain only words, spaces, hyphens ("forty-five") and apostrophes ("o'clock"):
//!   they never add punctuation that would create sentence or clause breaks downstream.
//! - The period of an abbreviation is consumed ("Dr. Smith" -> "Doctor Smith"), except where it
//!   also ends the sentence ("etc." at the end -> "et cetera.").
//! - "a.m."/"p.m." are written "A-M"/"P-M": espeak-ng reads "A M" as the article "a" plus "M", and
//!   "AM" as the verb "am" at the end of a sentence or in upper-case text, while the hyphenated
//!   letters are read as letter names everywhere. Other spelled-out letters use the same form
//!   ("U.S." -> "U-S").
//! - 24-hour times are read as such ("14:30" -> "fourteen thirty", "14:00" -> "fourteen hundred")
//!   unless [`NormalizeOptions::twelve_hour_clock`] is set ("two thirty P-M").
//! - Ambiguous numeric dates are read month first (US), unless the first field cannot be a month
//!   ("25/12/2024") or [`NormalizeOptions::day_first_dates`] is set.
//!
//! The scanner is a single left-to-right pass with bounded look-ahead, so normalization runs in
//! linear time.

mod scan;
mod tables;
mod words;

#[cfg(test)]
pub(crate) mod tests;

use std::ops::Range;

/// Options for [`normalize_with`].
///
/// The `Default` value has `enabled: false`, i.e. text passes through untouched (as with
/// [`Normalized::identity`]); [`NormalizeOptions::ENGLISH`] turns normalization on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NormalizeOptions {
    /// Normalize at all. When `false`, [`normalize_with`] returns [`Normalized::identity`].
    pub enabled: bool,
    /// Read ambiguous numeric dates day first, as in British usage: "3/4/2025" -> "April third
    /// twenty twenty-five". Off (US): "March fourth twenty twenty-five". Either way a first field
    /// above 12 is taken as the day ("25/12/2024"), and dotted dates ("4.3.2025") are day first.
    pub day_first_dates: bool,
    /// Read 24-hour clock times after noon on the twelve-hour clock ("14:30" -> "two thirty P-M").
    /// Off: "fourteen thirty".
    pub twelve_hour_clock: bool,
}

impl NormalizeOptions {
    /// US English normalization with the default choices (what [`normalize`] uses).
    pub const ENGLISH: Self = Self { enabled: true, day_first_dates: false, twelve_hour_clock: false };
}

/// Whether a [`Piece`] is copied from the original or spelled out from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PieceKind {
    /// The normalized bytes are an exact copy of the original bytes; offsets map one to one.
    Verbatim,
    /// The normalized text spells out the original token; any part maps to the whole token.
    Expanded,
}

/// One piece of the offset map: `norm` (byte range of the normalized text) came from `orig` (byte
/// range of the original text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    /// Byte range in the normalized text; never empty.
    pub norm: Range<usize>,
    /// Byte range in the original text; never empty.
    pub orig: Range<usize>,
    /// How `norm` was produced from `orig`.
    pub kind: PieceKind,
}

/// Normalized text plus the map from its bytes back to the original text.
///
/// The pieces cover the normalized text and the original text contiguously, in order, and all
/// their bounds are on `char` boundaries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Normalized {
    text: String,
    pieces: Vec<Piece>,
    original_len: usize,
}

impl Normalized {
    /// Normalization off: the text is passed through untouched and maps one to one.
    pub fn identity(original: &str) -> Normalized {
        let len = original.len();
        let pieces = if len == 0 {
            Vec::new()
        } else {
            vec![Piece { norm: 0..len, orig: 0..len, kind: PieceKind::Verbatim }]
        };
        Normalized { text: original.to_owned(), pieces, original_len: len }
    }

    /// The normalized text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The pieces of the offset map, sorted, covering the normalized text contiguously.
    pub fn pieces(&self) -> &[Piece] {
        &self.pieces
    }

    /// The length in bytes of the original text.
    pub fn original_len(&self) -> usize {
        self.original_len
    }

    /// The byte range of the ORIGINAL text that produced `norm_range` (byte range of the
    /// normalized text).
    ///
    /// Text copied verbatim maps exactly (sub-ranges map to sub-ranges); a span inside an
    /// expansion maps to the whole original token it came from (e.g. any part of "twelve dollars
    /// and fifty cents" -> the span of "$12.50"). Out-of-range bounds are clamped to the text and
    /// bounds inside a character are widened to the character, so the result is always a valid
    /// range of `char` boundaries of the original.
    ///
    /// An empty range maps to an empty range (a position): inside or at the end of verbatim text
    /// to the same position of the original, at the boundary between two pieces to the start of
    /// the later piece's source, inside an expansion to the start of its original token, and at
    /// the end of the text to the end of the original.
    ///
    /// Runs in O(log n) (binary search over the pieces).
    pub fn original_range(&self, norm_range: Range<usize>) -> Range<usize> {
        let len = self.text.len();
        let mut end = norm_range.end.min(len);
        let mut start = norm_range.start.min(end);
        while start > 0 && !self.text.is_char_boundary(start) {
            start -= 1;
        }
        while end < len && !self.text.is_char_boundary(end) {
            end += 1;
        }
        if start == end {
            let p = self.original_point(start);
            return p..p;
        }
        let first = self.pieces.partition_point(|p| p.norm.end <= start);
        let last = self.pieces.partition_point(|p| p.norm.end < end);
        let (Some(a), Some(z)) = (self.pieces.get(first), self.pieces.get(last)) else {
            return self.original_len..self.original_len;
        };
        let o_start = match a.kind {
            PieceKind::Verbatim => a.orig.start + (start - a.norm.start),
            PieceKind::Expanded => a.orig.start,
        };
        let o_end = match z.kind {
            PieceKind::Verbatim => z.orig.start + (end - z.norm.start),
            PieceKind::Expanded => z.orig.end,
        };
        o_start..o_end.max(o_start)
    }

    /// Builds the map of a two-step rewrite: `self` maps this text to an intermediate text, `inner` maps the
    /// intermediate text to the original; the result maps this text straight to the original. Verbatim pieces of
    /// `self` are split where `inner`'s pieces change, so verbatim-over-verbatim stays exact.
    pub fn compose(self, inner: &Normalized) -> Normalized {
        let mut pieces: Vec<Piece> = Vec::with_capacity(self.pieces.len());
        let mut push = |piece: Piece| {
            if let Some(last) = pieces.last_mut()
                && last.norm.end == piece.norm.start
                && ((last.kind == PieceKind::Expanded
                    && piece.kind == PieceKind::Expanded
                    && last.orig == piece.orig)
                    || (last.kind == PieceKind::Verbatim
                        && piece.kind == PieceKind::Verbatim
                        && last.orig.end == piece.orig.start))
            {
                last.norm.end = piece.norm.end;
                last.orig.end = last.orig.end.max(piece.orig.end);
                return;
            }
            pieces.push(piece);
        };
        for piece in self.pieces {
            match piece.kind {
                PieceKind::Expanded => {
                    push(Piece { orig: inner.original_range(piece.orig.clone()), ..piece });
                }
                PieceKind::Verbatim => {
                    let mut pos = piece.orig.start;
                    let first = inner.pieces.partition_point(|p| p.norm.end <= pos);
                    for ip in inner.pieces.iter().skip(first) {
                        if pos >= piece.orig.end {
                            break;
                        }
                        let end = ip.norm.end.min(piece.orig.end);
                        if end <= pos {
                            continue;
                        }
                        let norm_start = piece.norm.start + (pos - piece.orig.start);
                        let norm_end = piece.norm.start + (end - piece.orig.start);
                        push(Piece {
                            norm: norm_start..norm_end,
                            orig: inner.original_range(pos..end),
                            kind: ip.kind,
                        });
                        pos = end;
                    }
                }
            }
        }
        Normalized { text: self.text, pieces, original_len: inner.original_len }
    }

    /// A map built piece by piece by another rewriting pass (the pronunciation dictionary).
    pub(crate) fn from_parts(text: String, pieces: Vec<Piece>, original_len: usize) -> Normalized {
        Normalized { text, pieces, original_len }
    }

    /// Maps one normalized offset to an original offset (start of the piece for expansions).
    fn original_point(&self, pos: usize) -> usize {
        let idx = self.pieces.partition_point(|p| p.norm.end <= pos);
        match self.pieces.get(idx) {
            None => self.original_len,
            Some(p) => match p.kind {
                PieceKind::Verbatim => p.orig.start + (pos - p.norm.start),
                PieceKind::Expanded => p.orig.start,
            },
        }
    }
}

/// Normalizes US English text with [`NormalizeOptions::ENGLISH`].
pub fn normalize(original: &str) -> Normalized {
    normalize_with(original, NormalizeOptions::ENGLISH)
}

/// Normalizes US English text with the given options; returns [`Normalized::identity`] when
/// `options.enabled` is false.
pub fn normalize_with(original: &str, options: NormalizeOptions) -> Normalized {
    if !options.enabled {
        return Normalized::identity(original);
    }
    let builder = scan::scan(original, options);
    Normalized { text: builder.text, pieces: builder.pieces, original_len: original.len() }
}

/// Accumulates the normalized text and its pieces.
#[derive(Debug, Default)]
struct Builder {
    text: String,
    pieces: Vec<Piece>,
}

impl Builder {
    fn with_capacity(bytes: usize) -> Self {
        Builder { text: String::with_capacity(bytes), pieces: Vec::new() }
    }

    fn ends_alphanumeric(&self) -> bool {
        self.text.chars().next_back().is_some_and(char::is_alphanumeric)
    }

    /// Copies `src[range]`. `range` must be on char boundaries of `src`.
    fn verbatim(&mut self, src: &str, range: Range<usize>) {
        let Some(chunk) = src.get(range.clone()) else {
            return;
        };
        if chunk.is_empty() {
            return;
        }
        // An expansion directly followed by a word gets a separating space ("a&b" -> "a and b");
        // the space belongs to the expansion.
        if let Some(last) = self.pieces.last_mut()
            && last.kind == PieceKind::Expanded
            && chunk.starts_with(char::is_alphanumeric)
            && self.text.ends_with(char::is_alphanumeric)
        {
            self.text.push(' ');
            last.norm.end = self.text.len();
        }
        let start = self.text.len();
        self.text.push_str(chunk);
        let end = self.text.len();
        if let Some(last) = self.pieces.last_mut()
            && last.kind == PieceKind::Verbatim
            && last.orig.end == range.start
            && last.norm.end == start
        {
            last.norm.end = end;
            last.orig.end = range.end;
            return;
        }
        self.pieces.push(Piece { norm: start..end, orig: range, kind: PieceKind::Verbatim });
    }

    /// Appends `words` as the spelled-out form of `src[range]`.
    fn expanded(&mut self, src: &str, range: Range<usize>, words: &str) {
        if words.is_empty() {
            self.verbatim(src, range);
            return;
        }
        if range.is_empty() {
            return;
        }
        let start = self.text.len();
        if words.starts_with(char::is_alphanumeric) && self.ends_alphanumeric() {
            self.text.push(' ');
        }
        self.text.push_str(words);
        self.pieces.push(Piece { norm: start..self.text.len(), orig: range, kind: PieceKind::Expanded });
    }
}
