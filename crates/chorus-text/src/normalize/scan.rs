//! The scanner: one left-to-right pass over the original text that emits verbatim copies and
//! expansions. Every matcher starts at a token boundary and looks ahead a bounded distance (or over
//! what it then consumes), so the whole pass is linear.

use std::ops::Range;

use super::tables::{self, AbbrKind, Currency, Unit};
use super::words;
use super::{Builder, NormalizeOptions};

/// A segment of a match: verbatim copy or expansion of an original byte range.
#[derive(Debug)]
enum Seg {
    Verb(Range<usize>),
    Exp(Range<usize>, String),
}

type Segs = Vec<Seg>;

fn exp(range: Range<usize>, text: String) -> Option<Segs> {
    Some(vec![Seg::Exp(range, text)])
}

/// Word characters: a token boundary is a place between a word character and something else.
fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Longest URL consumed, in bytes.
const MAX_URL: usize = 2048;
/// Longest host name, in bytes.
const MAX_HOST: usize = 253;
/// Longest e-mail local part, in bytes.
const MAX_LOCAL: usize = 64;

/// Normalizes `s` into a [`Builder`].
pub(super) fn scan(s: &str, opts: NormalizeOptions) -> Builder {
    let sc = Scanner { s, b: s.as_bytes(), opts };
    let mut out = Builder::with_capacity(s.len() + s.len() / 4 + 16);
    let mut i = 0;
    while i < s.len() {
        let next = match sc.step(i) {
            Some(segs) => commit(&mut out, s, i, segs),
            None => i,
        };
        i = if next > i {
            next
        } else {
            let end = sc.plain_end(i);
            out.verbatim(s, i..end);
            end
        };
    }
    out
}

/// Emits `segs`, which must cover the text contiguously from `start`; returns where they end.
/// Segments that do not line up (a bug) are dropped, and the caller copies the rest verbatim.
fn commit(out: &mut Builder, s: &str, start: usize, segs: Segs) -> usize {
    let mut cur = start;
    for seg in segs {
        let r = match &seg {
            Seg::Verb(r) | Seg::Exp(r, _) => r.clone(),
        };
        if r.start != cur || r.end < r.start || s.get(r.clone()).is_none() {
            debug_assert!(false, "misaligned segment {seg:?} at {cur}");
            break;
        }
        match seg {
            Seg::Verb(r) => out.verbatim(s, r),
            Seg::Exp(r, text) => out.expanded(s, r, &text),
        }
        cur = r.end;
    }
    cur
}

/// A parsed number: `int` digits (thousands commas removed) and optional fraction digits.
#[derive(Debug, Clone)]
struct Amount<'a> {
    end: usize,
    int: String,
    frac: Option<&'a str>,
    commas: bool,
}

impl Amount<'_> {
    fn is_one(&self) -> bool {
        self.int == "1" && self.frac.is_none()
    }

    fn leading_zero(&self) -> bool {
        self.int.len() > 1 && self.int.starts_with('0')
    }

    fn words(&self) -> String {
        words::decimal(&self.int, self.frac)
    }

    fn as_f64(&self) -> Option<f64> {
        let int = if self.int.is_empty() { "0" } else { &self.int };
        match self.frac {
            Some(f) => format!("{int}.{f}").parse().ok(),
            None => int.parse().ok(),
        }
    }
}

/// What follows a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Suffix {
    None,
    Percent,
    Unit(&'static Unit),
    Ordinal,
}

/// A number with its sign, currency, magnitude and suffix: "-$2.5M", "40%", "5 km", "21st".
#[derive(Debug, Clone)]
struct Quant<'a> {
    start: usize,
    end: usize,
    neg: bool,
    amount: Amount<'a>,
    currency: Option<&'static Currency>,
    magnitude: Option<&'static str>,
    suffix: Suffix,
}

impl Quant<'_> {
    /// A bare 4-digit number 1100..=2099 without thousands comma, sign or suffix reads as a year.
    fn year(&self) -> Option<u64> {
        if self.neg
            || self.currency.is_some()
            || self.suffix != Suffix::None
            || self.amount.frac.is_some()
            || self.amount.commas
            || self.amount.int.len() != 4
        {
            return None;
        }
        words::value(&self.amount.int).filter(|y| (1100..=2099).contains(y))
    }
}

/// A clock time: "10:30", "7pm", "10:30:15 a.m.".
#[derive(Debug, Clone, Copy)]
struct Clock {
    end: usize,
    h: u64,
    m: Option<u64>,
    s: Option<u64>,
    pm: Option<bool>,
    /// Position of a final period of "a.m."/"p.m." that also ends the sentence (kept verbatim).
    keep_dot: Option<usize>,
}

struct Scanner<'a> {
    s: &'a str,
    b: &'a [u8],
    opts: NormalizeOptions,
}

impl<'a> Scanner<'a> {
    // ---- low-level helpers -------------------------------------------------------------------

    fn byte(&self, j: usize) -> u8 {
        self.b.get(j).copied().unwrap_or(0)
    }

    fn ch(&self, j: usize) -> Option<char> {
        self.s.get(j..)?.chars().next()
    }

    fn prev(&self, j: usize) -> Option<char> {
        self.s.get(..j)?.chars().next_back()
    }

    fn is_digit(&self, j: usize) -> bool {
        self.byte(j).is_ascii_digit()
    }

    fn starts(&self, j: usize, pat: &str) -> bool {
        self.s.get(j..).is_some_and(|t| t.starts_with(pat))
    }

    fn digits_end(&self, mut j: usize) -> usize {
        while self.is_digit(j) {
            j += 1;
        }
        j
    }

    fn ascii_letters_end(&self, mut j: usize) -> usize {
        while self.byte(j).is_ascii_alphabetic() {
            j += 1;
        }
        j
    }

    /// True when no word character starts at `j`.
    fn boundary(&self, j: usize) -> bool {
        !self.ch(j).is_some_and(is_word)
    }

    /// A boundary that is also not a numeric separator followed by a digit ("10:30" is not the
    /// end of "10", "2025-03-04" is not the end of "2025-03").
    fn clean_end(&self, j: usize) -> bool {
        self.boundary(j)
            && !(matches!(self.byte(j), b'.' | b',' | b':' | b'/' | b'-') && self.is_digit(j + 1))
    }

    /// Byte length of a single space-like character at `j` (space, no-break space, narrow no-break
    /// space).
    fn space_len(&self, j: usize) -> Option<usize> {
        match self.ch(j) {
            Some(c @ (' ' | '\u{a0}' | '\u{202f}')) => Some(c.len_utf8()),
            Some(_) | None => None,
        }
    }

    /// Where the fallback copy starting at `i` ends: a whole word, or one character.
    fn plain_end(&self, i: usize) -> usize {
        let Some(c) = self.ch(i) else {
            return self.s.len();
        };
        let mut j = i + c.len_utf8();
        if is_word(c) {
            while let Some(c) = self.ch(j).filter(|c| is_word(*c)) {
                j += c.len_utf8();
            }
        }
        j
    }

    /// Whether the period at `dot` also ends a sentence: end of text, a line break, or (unless
    /// `strict`) whitespace followed by a capital letter. Closing quotes/brackets are skipped.
    fn ends_sentence(&self, dot: usize, strict: bool) -> bool {
        let mut j = dot + 1;
        while let Some(c) = self.ch(j) {
            if matches!(c, '"' | '\'' | ')' | ']' | '}' | '”' | '’' | '»') {
                j += c.len_utf8();
            } else {
                break;
            }
        }
        let Some(c) = self.ch(j) else {
            return true;
        };
        if !c.is_whitespace() {
            return false;
        }
        let mut steps = 0;
        while let Some(c) = self.ch(j) {
            if c == '\n' || c == '\r' || c == '\u{2029}' {
                return true;
            }
            if !c.is_whitespace() {
                return !strict && c.is_uppercase();
            }
            j += c.len_utf8();
            steps += 1;
            if steps > 256 {
                return true;
            }
        }
        true
    }

    /// Whether a capitalized word follows `j` after spaces (not a line break).
    fn next_is_name(&self, j: usize) -> bool {
        let mut k = j;
        let mut spaces = 0;
        while let Some(n) = self.space_len(k) {
            k += n;
            spaces += 1;
            if spaces > 3 {
                return false;
            }
        }
        spaces > 0 && self.ch(k).is_some_and(char::is_uppercase)
    }

    /// The word before `i` (separated by spaces), if it is capitalized or starts with a digit:
    /// returns `Some(true)` when that word is not the first word of a sentence.
    fn prev_capitalized(&self, i: usize) -> Option<bool> {
        let mut j = i;
        let mut spaces = 0;
        while j > 0 && matches!(self.byte(j - 1), b' ') {
            j -= 1;
            spaces += 1;
            if spaces > 3 {
                return None;
            }
        }
        if spaces == 0 {
            return None;
        }
        let end = j;
        let mut len = 0;
        while j > 0 && self.byte(j - 1).is_ascii_alphanumeric() {
            j -= 1;
            len += 1;
            if len > 40 {
                return None;
            }
        }
        if j == end {
            return None;
        }
        let first = self.byte(j);
        if !(first.is_ascii_uppercase() || first.is_ascii_digit()) {
            return None;
        }
        if j > 0 && self.prev(j).is_some_and(is_word) {
            return None;
        }
        // Sentence start: beginning of text, or after ". " / "! " / "? " / a line break.
        let mut k = j;
        while k > 0 && self.byte(k - 1) == b' ' {
            k -= 1;
        }
        let sentence_start = k == 0 || matches!(self.byte(k - 1), b'.' | b'!' | b'?' | b'\n' | b'\r');
        Some(!sentence_start)
    }

    // ---- dispatch ----------------------------------------------------------------------------

    fn step(&self, i: usize) -> Option<Segs> {
        let c = self.ch(i)?;
        let prev = self.prev(i);
        let after_word = prev.is_some_and(is_word);
        match c {
            '0'..='9' => {
                if after_word || self.glued_to_word(i) {
                    None
                } else {
                    self.at_digit(i)
                }
            }
            'a'..='z' | 'A'..='Z' => {
                if after_word {
                    None
                } else {
                    self.at_letter(i)
                }
            }
            '$' | '£' | '€' | '¥' | '₹' | '₩' | '₽' | '₿' => self.quantity(i, false),
            '-' | '\u{2212}' => {
                if sign_context(prev) {
                    self.quantity(i, true)
                } else {
                    None
                }
            }
            '.' => {
                if !after_word && prev != Some('.') && self.is_digit(i + 1) {
                    self.quantity(i, false)
                } else {
                    None
                }
            }
            '(' => self.phone(i),
            '\'' | '’' => {
                if after_word {
                    None
                } else {
                    self.decade(i)
                }
            }
            _ => self.symbol(i, c, prev, after_word),
        }
    }

    /// A digit right after "x." or "x," where x is a word character continues that token
    /// ("v1.2", "1,23"): not the start of a number.
    fn glued_to_word(&self, i: usize) -> bool {
        i >= 2 && matches!(self.byte(i - 1), b'.' | b',') && self.prev(i - 1).is_some_and(is_word)
    }

    fn at_digit(&self, i: usize) -> Option<Segs> {
        self.iso_date(i)
            .or_else(|| self.numeric_date(i))
            .or_else(|| self.phone(i))
            .or_else(|| self.dotted_number(i))
            .or_else(|| self.time(i))
            .or_else(|| self.decade(i))
            .or_else(|| self.fraction(i))
            .or_else(|| self.day_month(i))
            .or_else(|| self.quantity(i, false))
    }

    fn at_letter(&self, i: usize) -> Option<Segs> {
        let w_end = self.ascii_letters_end(i);
        let glued = !self.boundary(w_end);
        let word = self.s.get(i..w_end)?;
        // URLs, addresses and dotted acronyms are only looked for at the start of a token, not after
        // a '.' or '-' inside one ("a.b.c"): that keeps the scan linear on long dotted runs.
        let token_start = !self.prev(i).is_some_and(|p| matches!(p, '.' | '-' | '_' | '+' | '%' | '@' | '/'));
        if token_start && let Some(segs) = self.url(i).or_else(|| self.email(i)).or_else(|| self.domain(i)) {
            return Some(segs);
        }
        if tables::CODES.iter().any(|(code, _)| code.starts_with(word) && word.len() >= 2)
            && let Some(segs) = self.quantity(i, false)
        {
            return Some(segs);
        }
        if glued {
            return None;
        }
        token_start
            .then(|| self.dotted_acronym(i))
            .flatten()
            .or_else(|| self.month_date(i, w_end))
            .or_else(|| self.abbreviation(i, w_end))
    }

    // ---- numbers -----------------------------------------------------------------------------

    /// Digits with optional thousands commas ("1,234,567") and an optional fraction (".5").
    fn parse_amount(&self, i: usize) -> Option<Amount<'a>> {
        let first_end = self.digits_end(i);
        let mut int = self.s.get(i..first_end)?.to_owned();
        let mut j = first_end;
        let mut commas = false;
        if (1..=3).contains(&(first_end - i)) {
            while self.byte(j) == b',' && self.digits_end(j + 1) == j + 4 {
                int.push_str(self.s.get(j + 1..j + 4)?);
                commas = true;
                j += 4;
            }
        }
        let mut frac = None;
        if self.byte(j) == b'.' && self.is_digit(j + 1) {
            let f_end = self.digits_end(j + 1);
            frac = Some(self.s.get(j + 1..f_end)?);
            j = f_end;
        }
        if int.is_empty() && frac.is_none() {
            return None;
        }
        Some(Amount { end: j, int, frac, commas })
    }

    fn currency_prefix(&self, j: usize) -> Option<(&'static Currency, usize)> {
        let c = self.ch(j)?;
        if let Some((_, cur)) = tables::PREFIX_SYMBOLS.iter().find(|(sym, _)| *sym == c) {
            return Some((cur, c.len_utf8()));
        }
        for (code, cur) in tables::CODES {
            if self.starts(j, code) {
                let k = j + code.len();
                if self.is_digit(k) {
                    return Some((cur, code.len()));
                }
                if let Some(n) = self.space_len(k)
                    && self.is_digit(k + n)
                {
                    return Some((cur, code.len() + n));
                }
            }
        }
        None
    }

    fn currency_postfix(&self, j: usize) -> Option<(&'static Currency, usize)> {
        let k = j + self.space_len(j).unwrap_or(0);
        let c = self.ch(k)?;
        if let Some((_, cur)) = tables::POSTFIX_SYMBOLS.iter().find(|(sym, _)| *sym == c) {
            return Some((cur, k + c.len_utf8()));
        }
        for (code, cur) in tables::CODES {
            if self.starts(k, code) && self.boundary(k + code.len()) {
                return Some((cur, k + code.len()));
            }
        }
        None
    }

    fn magnitude(&self, j: usize) -> Option<(&'static str, usize)> {
        for (abbr, word) in tables::MAGNITUDES_ATTACHED {
            if self.starts(j, abbr) && self.boundary(j + abbr.len()) {
                return Some((word, j + abbr.len()));
            }
        }
        let k = j + self.space_len(j)?;
        for (abbr, word) in tables::MAGNITUDES_SPACED {
            if self.starts(k, abbr) && self.boundary(k + abbr.len()) {
                return Some((word, k + abbr.len()));
            }
        }
        None
    }

    fn suffix(&self, j: usize, amount: &Amount<'_>) -> Option<(Suffix, usize)> {
        if self.byte(j) == b'%' {
            return Some((Suffix::Percent, j + 1));
        }
        if self.byte(j) == b' ' && self.byte(j + 1) == b'%' {
            return Some((Suffix::Percent, j + 2));
        }
        if amount.frac.is_none() && !amount.int.is_empty() {
            let two = [self.byte(j).to_ascii_lowercase(), self.byte(j + 1).to_ascii_lowercase()];
            if matches!(&two, b"st" | b"nd" | b"rd" | b"th") && self.boundary(j + 2) {
                return Some((Suffix::Ordinal, j + 2));
            }
        }
        let spaced = self.space_len(j).map(|n| j + n);
        for u in tables::UNITS {
            if self.starts(j, u.abbr) && self.boundary(j + u.abbr.len()) {
                return Some((Suffix::Unit(u), j + u.abbr.len()));
            }
            if u.spaced
                && let Some(k) = spaced
                && self.starts(k, u.abbr)
                && self.boundary(k + u.abbr.len())
            {
                return Some((Suffix::Unit(u), k + u.abbr.len()));
            }
        }
        None
    }

    /// `[-][currency]amount[magnitude|postfix currency|suffix]`, ending at a token boundary.
    /// `money`: the second amount of a currency range ("$5-10 million"), which may carry a magnitude.
    fn parse_quant(&self, i: usize, allow_sign: bool, money: bool) -> Option<Quant<'a>> {
        let mut j = i;
        let mut neg = false;
        if allow_sign {
            if self.byte(j) == b'-' {
                neg = true;
                j += 1;
            } else if self.starts(j, "\u{2212}") {
                neg = true;
                j += '\u{2212}'.len_utf8();
            }
        }
        let mut currency = None;
        if let Some((cur, len)) = self.currency_prefix(j) {
            currency = Some(cur);
            j += len;
        }
        let amount = self.parse_amount(j)?;
        j = amount.end;
        if self.byte(j) == b'.' && self.is_digit(j + 1) {
            // "1.2.3": a dotted number, handled elsewhere.
            return None;
        }
        let mut magnitude = None;
        let mut suffix = Suffix::None;
        if currency.is_some() || money {
            if let Some((m, end)) = self.magnitude(j) {
                magnitude = Some(m);
                j = end;
            }
        } else if let Some((cur, end)) = self.currency_postfix(j) {
            currency = Some(cur);
            j = end;
        } else if let Some((suf, end)) = self.suffix(j, &amount) {
            suffix = suf;
            j = end;
        }
        if !self.boundary(j) {
            return None;
        }
        Some(Quant { start: i, end: j, neg, amount, currency, magnitude, suffix })
    }

    fn quant_words(&self, q: &Quant<'_>) -> String {
        let mut out = String::new();
        if q.neg {
            out.push_str("minus ");
        }
        if let Some(cur) = q.currency {
            out.push_str(&money(cur, &q.amount, q.magnitude));
            return out;
        }
        match q.suffix {
            Suffix::None => match q.year() {
                Some(y) => out.push_str(&words::year(y)),
                None => out.push_str(&q.amount.words()),
            },
            Suffix::Percent => {
                out.push_str(&q.amount.words());
                out.push_str(" percent");
            }
            Suffix::Unit(u) => {
                out.push_str(&q.amount.words());
                out.push(' ');
                out.push_str(if q.amount.is_one() { u.one } else { u.many });
            }
            Suffix::Ordinal => out.push_str(&words::ordinal_str(&q.amount.int)),
        }
        out
    }

    /// Position after a range dash ("-", "–", " – ") at `j`.
    fn range_dash(&self, j: usize) -> Option<usize> {
        if self.byte(j) == b'-' {
            return Some(j + 1);
        }
        if self.starts(j, "–") {
            let k = j + '–'.len_utf8();
            return Some(if self.byte(k) == b' ' { k + 1 } else { k });
        }
        if self.byte(j) == b' ' && self.starts(j + 1, "–") && self.byte(j + 4) == b' ' {
            return Some(j + 5);
        }
        None
    }

    /// Whether another "-digit" follows `j` (a chain like a phone number, not a range).
    fn chain_continues(&self, j: usize) -> bool {
        self.range_dash(j).is_some_and(|k| self.is_digit(k) || self.byte(k) == b'$')
    }

    fn quantity(&self, i: usize, allow_sign: bool) -> Option<Segs> {
        let a = self.parse_quant(i, allow_sign, false)?;
        if let Some(k) = self.range_dash(a.end)
            && let Some(b) = self.parse_quant(k, false, a.currency.is_some())
            && !self.chain_continues(b.end)
            && let Some(text) = self.range_words(&a, &b)
        {
            return exp(a.start..b.end, text);
        }
        exp(a.start..a.end, self.quant_words(&a))
    }

    fn range_words(&self, a: &Quant<'_>, b: &Quant<'_>) -> Option<String> {
        let minus = if a.neg { "minus " } else { "" };
        let currency = match (a.currency, b.currency) {
            (Some(ca), Some(cb)) if ca.code == cb.code => Some(ca),
            (Some(_), Some(_)) => return None,
            (Some(ca), None) => Some(ca),
            (None, Some(cb)) if a.suffix == Suffix::None => Some(cb),
            (None, Some(_)) => return None,
            (None, None) => None,
        };
        if let Some(cur) = currency {
            if b.suffix != Suffix::None || (a.magnitude.is_some() && b.magnitude.is_none()) {
                return None;
            }
            if a.amount.frac.is_some() || b.amount.frac.is_some() {
                return Some(format!(
                    "{minus}{} to {}",
                    money(cur, &a.amount, a.magnitude),
                    money(cur, &b.amount, b.magnitude)
                ));
            }
            let mut out = format!("{minus}{}", a.amount.words());
            if let Some(m) = a.magnitude
                && Some(m) != b.magnitude
            {
                out.push(' ');
                out.push_str(m);
            }
            out.push_str(" to ");
            out.push_str(&b.amount.words());
            if let Some(m) = b.magnitude {
                out.push(' ');
                out.push_str(m);
            }
            out.push(' ');
            out.push_str(if b.amount.is_one() && b.magnitude.is_none() { cur.one } else { cur.many });
            return Some(out);
        }
        match (a.suffix, b.suffix) {
            (Suffix::None, Suffix::None) => self.plain_range(a, b),
            (Suffix::None | Suffix::Percent, Suffix::Percent) => {
                Some(format!("{minus}{} to {} percent", a.amount.words(), b.amount.words()))
            }
            (Suffix::None, Suffix::Unit(u)) => Some(unit_range(minus, a, b, u)),
            (Suffix::Unit(ua), Suffix::Unit(ub)) if ua.many == ub.many => Some(unit_range(minus, a, b, ub)),
            (Suffix::Ordinal, Suffix::Ordinal) => Some(format!(
                "{} to {}",
                words::ordinal_str(&a.amount.int),
                words::ordinal_str(&b.amount.int)
            )),
            (Suffix::Percent | Suffix::Unit(_) | Suffix::Ordinal, Suffix::None)
            | (Suffix::Percent | Suffix::Unit(_) | Suffix::Ordinal, Suffix::Percent | Suffix::Unit(_))
            | (Suffix::None | Suffix::Percent | Suffix::Unit(_), Suffix::Ordinal) => None,
        }
    }

    /// "40-60" -> "forty to sixty", "1990-1995" -> years; phone-like ("555-1234"), leading-zero and
    /// descending ("3-2", a score) pairs are not ranges.
    fn plain_range(&self, a: &Quant<'_>, b: &Quant<'_>) -> Option<String> {
        if a.amount.leading_zero() || b.amount.leading_zero() {
            return None;
        }
        let (al, bl) = (a.amount.int.len(), b.amount.int.len());
        if a.amount.frac.is_none() && b.amount.frac.is_none() && al == 3 && bl == 4 {
            return None;
        }
        let minus = if a.neg { "minus " } else { "" };
        if let (Some(ya), Some(yb)) = (a.year(), b.year()) {
            return (ya < yb).then(|| format!("{} to {}", words::year(ya), words::year(yb)));
        }
        if let Some(ya) = a.year()
            && bl == 2
            && b.amount.frac.is_none()
        {
            return Some(format!("{} to {}", words::year(ya), b.amount.words()));
        }
        let mut av = a.amount.as_f64()?;
        if a.neg {
            av = -av;
        }
        let bv = b.amount.as_f64()?;
        (av < bv).then(|| format!("{minus}{} to {}", a.amount.words(), b.amount.words()))
    }

    // ---- dates -------------------------------------------------------------------------------

    /// "2025-03-04" or "2025/03/04".
    fn iso_date(&self, i: usize) -> Option<Segs> {
        let y_end = self.digits_end(i);
        if y_end - i != 4 {
            return None;
        }
        let sep = self.byte(y_end);
        if sep != b'-' && sep != b'/' {
            return None;
        }
        let m_start = y_end + 1;
        if self.digits_end(m_start) != m_start + 2 || self.byte(m_start + 2) != sep {
            return None;
        }
        let d_start = m_start + 3;
        let end = d_start + 2;
        if self.digits_end(d_start) != end || !self.clean_end(end) {
            return None;
        }
        let y = words::value(self.s.get(i..y_end)?)?;
        let m = words::value(self.s.get(m_start..m_start + 2)?)?;
        let d = words::value(self.s.get(d_start..end)?)?;
        if !(1000..=2999).contains(&y) || !(1..=31).contains(&d) {
            return None;
        }
        let month = words::month_name(m)?;
        exp(i..end, format!("{month} {} {}", words::ordinal(d), words::year(y)))
    }

    /// "3/4/2025", "03/04/25", "3-4-2025", "4.3.2025" (dots: day first).
    fn numeric_date(&self, i: usize) -> Option<Segs> {
        let a_end = self.digits_end(i);
        if !(1..=2).contains(&(a_end - i)) {
            return None;
        }
        let sep = self.byte(a_end);
        if !matches!(sep, b'/' | b'-' | b'.') {
            return None;
        }
        let b_start = a_end + 1;
        let b_end = self.digits_end(b_start);
        if !(1..=2).contains(&(b_end - b_start)) || self.byte(b_end) != sep {
            return None;
        }
        let y_start = b_end + 1;
        let y_end = self.digits_end(y_start);
        let y_len = y_end - y_start;
        if !(y_len == 4 || (y_len == 2 && sep == b'/')) || !self.clean_end(y_end) {
            return None;
        }
        let a = words::value(self.s.get(i..a_end)?)?;
        let b = words::value(self.s.get(b_start..b_end)?)?;
        let y = words::value(self.s.get(y_start..y_end)?)?;
        let day_first = sep == b'.' || self.opts.day_first_dates;
        let (m, d) = if day_first {
            if b > 12 && a <= 12 { (a, b) } else { (b, a) }
        } else if a > 12 && b <= 12 {
            (b, a)
        } else {
            (a, b)
        };
        if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
            return None;
        }
        let year = if y_len == 4 {
            if !(1000..=2999).contains(&y) {
                return None;
            }
            words::year(y)
        } else {
            words::two_digit_year(y)
        };
        let month = words::month_name(m)?;
        exp(i..y_end, format!("{month} {} {year}", words::ordinal(d)))
    }

    /// A day number 1..=31 with an optional ordinal suffix at `j`: (day, end).
    fn day_number(&self, j: usize) -> Option<(u64, usize)> {
        let d_end = self.digits_end(j);
        if !(1..=2).contains(&(d_end - j)) {
            return None;
        }
        let d = words::value(self.s.get(j..d_end)?)?;
        if !(1..=31).contains(&d) {
            return None;
        }
        let two = [self.byte(d_end).to_ascii_lowercase(), self.byte(d_end + 1).to_ascii_lowercase()];
        let end = if matches!(&two, b"st" | b"nd" | b"rd" | b"th") { d_end + 2 } else { d_end };
        let separator = matches!(self.byte(end), b'.' | b',' | b':' | b'/') && self.is_digit(end + 1);
        (self.boundary(end) && !separator && self.byte(end) != b'%').then_some((d, end))
    }

    /// A month name (full, or abbreviated with an optional period) at `i`: (month, end of word,
    /// end including the period, whether it is abbreviated).
    fn month_word(&self, i: usize, w_end: usize) -> Option<(u64, usize, bool)> {
        let w = self.s.get(i..w_end)?;
        if let Some(idx) = words::MONTHS.iter().position(|m| *m == w) {
            return Some((idx as u64 + 1, w_end, false));
        }
        let (_, m) = tables::MONTH_ABBREVIATIONS.iter().find(|(a, _)| *a == w)?;
        Some((*m, w_end, true))
    }

    /// "March 4", "March 4th, 2025", "Jan. 5 2025", "March 4-6", and "Jan." alone.
    fn month_date(&self, i: usize, w_end: usize) -> Option<Segs> {
        let (m, _, abbr) = self.month_word(i, w_end)?;
        let month = words::month_name(m)?;
        let has_dot = abbr && self.byte(w_end) == b'.';
        let after = w_end + usize::from(has_dot);
        let mut segs = Vec::new();
        // Day: one or two spaces, then 1..=31.
        let mut ds = after;
        while self.byte(ds) == b' ' && ds - after < 2 {
            ds += 1;
        }
        let day = if ds > after { self.day_number(ds) } else { None };
        let Some((d, mut d_end)) = day else {
            if !has_dot {
                return None;
            }
            // "Jan." alone: the month, keeping a sentence-final period.
            return Some(if self.ends_sentence(w_end, false) {
                vec![Seg::Exp(i..w_end, month.to_owned()), Seg::Verb(w_end..after)]
            } else {
                vec![Seg::Exp(i..after, month.to_owned())]
            });
        };
        if abbr {
            segs.push(Seg::Exp(i..after, month.to_owned()));
        } else {
            segs.push(Seg::Verb(i..w_end));
        }
        segs.push(Seg::Verb(after..ds));
        let mut day_words = words::ordinal(d);
        if let Some(k) = self.range_dash(d_end)
            && let Some((d2, e2)) = self.day_number(k)
            && d2 > d
        {
            day_words.push_str(" to ");
            day_words.push_str(&words::ordinal(d2));
            d_end = e2;
        }
        segs.push(Seg::Exp(ds..d_end, day_words));
        // Year: ", 2025" or " 2025".
        let mut ys = d_end;
        if self.byte(ys) == b',' {
            ys += 1;
        }
        if self.byte(ys) == b' ' {
            ys += 1;
        }
        let y_end = self.digits_end(ys);
        if ys > d_end
            && self.byte(ys - 1) == b' '
            && y_end - ys == 4
            && self.clean_end(y_end)
            && let Some(y) = words::value(self.s.get(ys..y_end)?)
            && (1000..=2999).contains(&y)
        {
            segs.push(Seg::Verb(d_end..ys));
            segs.push(Seg::Exp(ys..y_end, words::year(y)));
        }
        Some(segs)
    }

    /// "4 March", "4th March 2025" -> "the fourth of March ...".
    fn day_month(&self, i: usize) -> Option<Segs> {
        let (d, mut d_end) = self.day_number(i)?;
        let mut day_words = words::ordinal(d);
        if let Some(k) = self.range_dash(d_end)
            && let Some((d2, e2)) = self.day_number(k)
            && d2 > d
        {
            day_words = format!("{day_words} to {}", words::ordinal(d2));
            d_end = e2;
        }
        if self.byte(d_end) != b' ' {
            return None;
        }
        let ms = d_end + 1;
        let w_end = self.ascii_letters_end(ms);
        if !self.boundary(w_end) {
            return None;
        }
        let (m, _, abbr) = self.month_word(ms, w_end)?;
        let month = words::month_name(m)?;
        let mut segs = vec![Seg::Exp(i..d_end, format!("the {day_words} of")), Seg::Verb(d_end..ms)];
        if abbr {
            let has_dot = self.byte(w_end) == b'.';
            if has_dot && !self.ends_sentence(w_end, false) {
                segs.push(Seg::Exp(ms..w_end + 1, month.to_owned()));
            } else {
                segs.push(Seg::Exp(ms..w_end, month.to_owned()));
            }
        } else {
            segs.push(Seg::Verb(ms..w_end));
        }
        Some(segs)
    }

    // ---- times -------------------------------------------------------------------------------

    /// "am", "pm", "a.m.", "P.M", "AM" at `j`: (pm, end, final period that ends the sentence).
    fn ampm(&self, j: usize) -> Option<(bool, usize, Option<usize>)> {
        let pm = match self.byte(j) {
            b'a' | b'A' => false,
            b'p' | b'P' => true,
            _ => return None,
        };
        let mut k = j + 1;
        let dot1 = self.byte(k) == b'.';
        if dot1 {
            k += 1;
        }
        if !matches!(self.byte(k), b'm' | b'M') {
            return None;
        }
        k += 1;
        let mut keep = None;
        if dot1 && self.byte(k) == b'.' {
            if self.ends_sentence(k, false) {
                keep = Some(k);
            }
            k += 1;
        }
        self.boundary(k).then_some((pm, k, keep))
    }

    /// `H[:MM[:SS]][ ]am/pm` at `i`; a bare hour needs am/pm.
    fn clock(&self, i: usize) -> Option<Clock> {
        let h_end = self.digits_end(i);
        if !(1..=2).contains(&(h_end - i)) {
            return None;
        }
        let h = words::value(self.s.get(i..h_end)?)?;
        let mut j = h_end;
        let (mut m, mut s) = (None, None);
        if self.byte(j) == b':' && self.digits_end(j + 1) == j + 3 {
            m = words::value(self.s.get(j + 1..j + 3)?);
            j += 3;
            if self.byte(j) == b':' && self.digits_end(j + 1) == j + 3 {
                s = words::value(self.s.get(j + 1..j + 3)?);
                j += 3;
            }
        }
        let am = self.ampm(j).or_else(|| self.space_len(j).and_then(|n| self.ampm(j + n)));
        let (pm, end, keep_dot) = match am {
            Some((pm, end, keep)) => (Some(pm), end, keep),
            None => (None, j, None),
        };
        if m.is_none() && pm.is_none() {
            return None;
        }
        if m.is_some_and(|m| m > 59) || s.is_some_and(|s| s > 59) {
            return None;
        }
        if pm.is_some() && h > 12 || h > 23 {
            return None;
        }
        if !self.boundary(end) || (matches!(self.byte(end), b':' | b'.') && self.is_digit(end + 1)) {
            return None;
        }
        Some(Clock { end, h, m, s, pm, keep_dot })
    }

    fn clock_words(&self, c: &Clock, with_suffix: bool) -> String {
        let (hour, pm) = match c.pm {
            Some(pm) => (if c.h == 0 { 12 } else { c.h }, Some(pm)),
            None if c.h == 0 => (12, Some(false)),
            None if c.h >= 13 && self.opts.twelve_hour_clock => (c.h - 12, Some(true)),
            None => (c.h, None),
        };
        let mut out = words::cardinal(hour);
        match c.m {
            None | Some(0) => {
                if pm.is_none() {
                    out.push_str(if hour >= 13 { " hundred" } else { " o'clock" });
                }
            }
            Some(m) if m < 10 => {
                out.push_str(" oh ");
                out.push_str(&words::cardinal(m));
            }
            Some(m) => {
                out.push(' ');
                out.push_str(&words::cardinal(m));
            }
        }
        if let Some(s) = c.s.filter(|s| *s > 0) {
            out.push_str(" and ");
            out.push_str(&words::cardinal(s));
            out.push_str(if s == 1 { " second" } else { " seconds" });
        }
        if with_suffix && let Some(pm) = pm {
            out.push_str(if pm { " P-M" } else { " A-M" });
        }
        out
    }

    fn clock_segs(&self, start: usize, c: &Clock, text: String) -> Segs {
        match c.keep_dot {
            Some(dot) => vec![Seg::Exp(start..dot, text), Seg::Verb(dot..c.end)],
            None => vec![Seg::Exp(start..c.end, text)],
        }
    }

    /// Times and time ranges: "10:30am", "7 p.m.", "9am-5pm", "10-11am", "10:30-11:30".
    fn time(&self, i: usize) -> Option<Segs> {
        if let Some(a) = self.clock(i) {
            if a.keep_dot.is_none()
                && let Some(k) = self.range_dash(a.end)
                && let Some(b) = self.clock(k)
                && (a.pm.is_some() == b.pm.is_some() || a.pm.is_none())
            {
                let same = a.pm.is_some() && a.pm == b.pm;
                let text = format!("{} to {}", self.clock_words(&a, !same), self.clock_words(&b, true));
                return Some(self.clock_segs(i, &b, text));
            }
            let text = self.clock_words(&a, true);
            return Some(self.clock_segs(i, &a, text));
        }
        // "10-11am": a bare hour, a dash, a time with am/pm.
        let h_end = self.digits_end(i);
        if !(1..=2).contains(&(h_end - i)) {
            return None;
        }
        let h = words::value(self.s.get(i..h_end)?)?;
        let k = self.range_dash(h_end)?;
        let b = self.clock(k)?;
        if b.pm.is_none() || !(1..=12).contains(&h) {
            return None;
        }
        let text = format!("{} to {}", words::cardinal(h), self.clock_words(&b, true));
        Some(self.clock_segs(i, &b, text))
    }

    // ---- other number shapes -----------------------------------------------------------------

    /// Phone numbers and other digit chains: "555-123-4567", "(555) 123-4567", "555-1234",
    /// "555.123.4567", "123-45-6789": read digit by digit, groups separated by spaces.
    fn phone(&self, i: usize) -> Option<Segs> {
        let mut groups: Vec<&str> = Vec::new();
        let mut j;
        if self.byte(i) == b'(' {
            let a_end = self.digits_end(i + 1);
            if a_end - (i + 1) != 3 || self.byte(a_end) != b')' {
                return None;
            }
            groups.push(self.s.get(i + 1..a_end)?);
            j = a_end + 1;
            if self.byte(j) == b' ' {
                j += 1;
            }
            let b_end = self.digits_end(j);
            if b_end - j != 3 || !matches!(self.byte(b_end), b'-' | b'.' | b' ') {
                return None;
            }
            let c_end = self.digits_end(b_end + 1);
            if c_end - (b_end + 1) != 4 || !self.clean_end(c_end) {
                return None;
            }
            groups.push(self.s.get(j..b_end)?);
            groups.push(self.s.get(b_end + 1..c_end)?);
            j = c_end;
        } else {
            let first_end = self.digits_end(i);
            let sep = self.byte(first_end);
            if !matches!(sep, b'-' | b'.') || !self.is_digit(first_end + 1) {
                return None;
            }
            groups.push(self.s.get(i..first_end)?);
            j = first_end;
            while self.byte(j) == sep && self.is_digit(j + 1) {
                let e = self.digits_end(j + 1);
                groups.push(self.s.get(j + 1..e)?);
                j = e;
            }
            if !self.clean_end(j) {
                return None;
            }
            let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
            let phone_like = match sep {
                b'-' => groups.len() >= 3 || lens == [3, 4],
                _ => lens == [3, 3, 4] || lens == [1, 3, 3, 4],
            };
            if !phone_like {
                return None;
            }
        }
        let text = groups.iter().map(|g| words::digits(g)).collect::<Vec<_>>().join(" ");
        exp(i..j, text)
    }

    /// "1.2.3" (versions: "one point two point three"), "192.168.0.1" (addresses: "dot").
    fn dotted_number(&self, i: usize) -> Option<Segs> {
        let mut parts: Vec<&str> = Vec::new();
        let mut j = i;
        loop {
            let e = self.digits_end(j);
            if e == j {
                return None;
            }
            parts.push(self.s.get(j..e)?);
            j = e;
            if self.byte(j) == b'.' && self.is_digit(j + 1) {
                j += 1;
            } else {
                break;
            }
        }
        if parts.len() < 3 || !self.clean_end(j) {
            return None;
        }
        let address = parts.len() == 4
            && parts.iter().all(|p| p.len() <= 3 && words::value(p).is_some_and(|v| v <= 255));
        let sep = if address { " dot " } else { " point " };
        let text = parts.iter().map(|p| words::number(p)).collect::<Vec<_>>().join(sep);
        exp(i..j, text)
    }

    /// Decades: "1990s" "1990's" "'90s" "90s" -> "nineteen nineties", "nineties".
    fn decade(&self, i: usize) -> Option<Segs> {
        let apostrophe = match self.ch(i)? {
            c @ ('\'' | '’') => c.len_utf8(),
            _ => 0,
        };
        let ds = i + apostrophe;
        let d_end = self.digits_end(ds);
        let len = d_end - ds;
        let digits = self.s.get(ds..d_end)?;
        if !(len == 2 || (len == 4 && apostrophe == 0)) || !digits.ends_with('0') {
            return None;
        }
        let mut j = d_end;
        if let Some(c @ ('\'' | '’')) = self.ch(j) {
            j += c.len_utf8();
        }
        if self.byte(j) != b's' || !self.boundary(j + 1) {
            return None;
        }
        let v = words::value(digits)?;
        let base = if len == 4 {
            if (1100..=2099).contains(&v) { words::year(v) } else { words::cardinal(v) }
        } else {
            if v < 10 {
                return None;
            }
            words::cardinal(v)
        };
        exp(i..j + 1, words::pluralize(&base))
    }

    /// Fractions: "3/4" -> "three quarters"; mixed numbers "2 1/2", "2½" -> "two and a half";
    /// "24/7" -> "twenty-four seven".
    fn fraction(&self, i: usize) -> Option<Segs> {
        if i > 0 && self.byte(i - 1) == b'/' {
            return None;
        }
        let a_end = self.digits_end(i);
        if a_end - i > 3 || (a_end - i > 1 && self.byte(i) == b'0') {
            return None;
        }
        let a = words::value(self.s.get(i..a_end)?)?;
        if let Some((n, d, end)) = self.simple_fraction(i) {
            return exp(i..end, words::fraction(n, d, false));
        }
        if self.starts(i, "24/7") && self.clean_end(i + 4) && self.byte(i + 4) != b'/' {
            return exp(i..i + 4, "twenty-four seven".to_owned());
        }
        // Mixed numbers.
        let c = self.ch(a_end)?;
        if let Some((_, n, d)) = tables::VULGAR_FRACTIONS.iter().find(|(v, _, _)| *v == c) {
            let end = a_end + c.len_utf8();
            if self.boundary(end) {
                return exp(i..end, format!("{} and {}", words::cardinal(a), words::fraction(*n, *d, true)));
            }
        }
        if c == ' '
            && let Some((n, d, end)) = self.simple_fraction(a_end + 1)
        {
            return exp(i..end, format!("{} and {}", words::cardinal(a), words::fraction(n, d, true)));
        }
        None
    }

    /// `n/d` at `j` with 1 <= n < d <= 10: (n, d, end).
    fn simple_fraction(&self, j: usize) -> Option<(u64, u64, usize)> {
        let n_end = self.digits_end(j);
        if n_end - j != 1 || self.byte(n_end) != b'/' {
            return None;
        }
        let d_end = self.digits_end(n_end + 1);
        if !(1..=2).contains(&(d_end - n_end - 1)) || !self.clean_end(d_end) || self.byte(d_end) == b'/' {
            return None;
        }
        let n = words::value(self.s.get(j..n_end)?)?;
        let d = words::value(self.s.get(n_end + 1..d_end)?)?;
        (n >= 1 && n < d && d <= 10).then_some((n, d, d_end))
    }

    // ---- words -------------------------------------------------------------------------------

    /// "e.g." "i.e." "a.k.a." "a.m." and upper-case dotted acronyms ("U.S." -> "U-S").
    fn dotted_acronym(&self, i: usize) -> Option<Segs> {
        if self.starts(i, "Ph.D.") && self.boundary(i + 5) {
            return Some(self.period_segs(i, i + 4, "P-H-D".to_owned(), self.ends_sentence(i + 4, true)));
        }
        let mut letters = String::new();
        let mut j = i;
        while self.byte(j).is_ascii_alphabetic() && self.byte(j + 1) == b'.' {
            letters.push(char::from(self.byte(j)));
            j += 2;
            if letters.len() > 10 {
                return None;
            }
        }
        if letters.len() < 2 || !self.boundary(j) {
            return None;
        }
        let dot = j - 1;
        let capital = self.byte(i).is_ascii_uppercase();
        let (text, keep) = match letters.to_ascii_lowercase().as_str() {
            "eg" => (capitalize("for example", capital), false),
            "ie" => (capitalize("that is", capital), false),
            "aka" => (capitalize("also known as", capital), false),
            "am" => ("A-M".to_owned(), self.ends_sentence(dot, false)),
            "pm" => ("P-M".to_owned(), self.ends_sentence(dot, false)),
            _ if letters.bytes().all(|b| b.is_ascii_uppercase()) => {
                let spelled = letters.chars().map(String::from).collect::<Vec<_>>().join("-");
                (spelled, self.ends_sentence(dot, true))
            }
            _ => return None,
        };
        Some(self.period_segs(i, dot, text, keep))
    }

    /// An expansion of `i..dot` plus the period at `dot`: kept verbatim when `keep`, else consumed.
    fn period_segs(&self, i: usize, dot: usize, text: String, keep: bool) -> Segs {
        if keep {
            vec![Seg::Exp(i..dot, text), Seg::Verb(dot..dot + 1)]
        } else {
            vec![Seg::Exp(i..dot + 1, text)]
        }
    }

    fn abbreviation(&self, i: usize, w_end: usize) -> Option<Segs> {
        let w = self.s.get(i..w_end)?;
        if w.len() > 8 {
            return None;
        }
        let has_dot = self.byte(w_end) == b'.';
        let after = w_end + usize::from(has_dot);
        let capital = self.byte(i).is_ascii_uppercase();
        let emit = |text: &str, keep: bool| -> Segs {
            let text = capitalize(text, capital);
            if has_dot { self.period_segs(i, w_end, text, keep) } else { vec![Seg::Exp(i..w_end, text)] }
        };
        if w == "Dr" || w == "St" {
            let name_follows = self.next_is_name(after);
            let prev = self.prev_capitalized(i);
            let (person, place) = if w == "Dr" { ("Doctor", "Drive") } else { ("Saint", "Street") };
            if name_follows && prev != Some(true) {
                return Some(emit(person, has_dot && self.ends_sentence(w_end, true)));
            }
            if prev.is_some() {
                return Some(emit(place, has_dot && self.ends_sentence(w_end, false)));
            }
            if !has_dot {
                return None;
            }
            let default = if w == "Dr" { person } else { place };
            return Some(emit(default, self.ends_sentence(w_end, default == person)));
        }
        let entry = tables::ABBREVIATIONS.iter().find(|a| case_match(w, a))?;
        match entry.kind {
            AbbrKind::Title => {
                if has_dot || self.next_is_name(after) {
                    let keep = has_dot && !self.next_is_name(after) && self.ends_sentence(w_end, true);
                    return Some(emit(entry.expansion, keep));
                }
                None
            }
            AbbrKind::TitleBeforeName => {
                (has_dot && self.next_is_name(after)).then(|| emit(entry.expansion, false))
            }
            AbbrKind::Suffix => (has_dot || entry.bare)
                .then(|| emit(entry.expansion, has_dot && self.ends_sentence(w_end, false))),
            AbbrKind::Inline => (has_dot || entry.bare).then(|| emit(entry.expansion, false)),
            AbbrKind::BeforeNumber => {
                // Lower case: "No. 5" reads "number five" mid-sentence.
                let k = after + self.space_len(after).unwrap_or(0);
                (has_dot && self.is_digit(k)).then(|| vec![Seg::Exp(i..after, entry.expansion.to_owned())])
            }
        }
    }

    // ---- URLs and e-mail ---------------------------------------------------------------------

    /// End of a URL starting at `start`: up to whitespace or quotes, minus trailing punctuation.
    fn url_end(&self, start: usize) -> usize {
        let mut j = start;
        while let Some(c) = self.ch(j) {
            if c.is_whitespace()
                || matches!(c, '"' | '<' | '>' | '`' | '“' | '”' | '‘' | '’' | '«' | '»')
                || j + c.len_utf8() - start > MAX_URL
            {
                break;
            }
            j += c.len_utf8();
        }
        while j > start {
            let Some(c) = self.prev(j) else { break };
            let trim = match c {
                '.' | ',' | ';' | ':' | '!' | '?' | '\'' | ']' | '}' => true,
                ')' => {
                    let body = self.s.get(start..j).unwrap_or("");
                    body.matches(')').count() > body.matches('(').count()
                }
                _ => false,
            };
            if !trim {
                break;
            }
            j -= c.len_utf8();
        }
        j
    }

    /// `http://`, `https://`, `ftp://` or `www.` URLs.
    fn url(&self, i: usize) -> Option<Segs> {
        let rest = self.s.get(i..)?;
        let lower: String = rest.chars().take(8).collect::<String>().to_ascii_lowercase();
        let scheme =
            ["https://", "http://", "ftp://"].iter().find(|p| lower.starts_with(**p)).map(|p| p.len());
        let www = lower.starts_with("www.");
        if scheme.is_none() && !www {
            return None;
        }
        let end = self.url_end(i);
        let mut body = self.s.get(i + scheme.unwrap_or(0)..end)?;
        if body.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("www.")) {
            body = body.get(4..)?;
        }
        let text = verbalize_url(body);
        if text.is_empty() {
            return None;
        }
        exp(i..end, text)
    }

    /// A host name at `j`: labels of `[A-Za-z0-9-]` separated by dots. Returns (end, labels).
    fn host(&self, j: usize) -> Option<(usize, Vec<&'a str>)> {
        let mut k = j;
        while k - j < MAX_HOST
            && (self.byte(k).is_ascii_alphanumeric() || matches!(self.byte(k), b'-' | b'.'))
        {
            k += 1;
        }
        while k > j && matches!(self.byte(k - 1), b'.' | b'-') {
            k -= 1;
        }
        let host = self.s.get(j..k)?;
        let labels: Vec<&str> = host.split('.').collect();
        if labels.len() < 2 || labels.iter().any(|l| l.is_empty() || l.starts_with('-')) {
            return None;
        }
        Some((k, labels))
    }

    /// "john.doe@example.com".
    fn email(&self, i: usize) -> Option<Segs> {
        let mut j = i;
        while j - i < MAX_LOCAL
            && (self.byte(j).is_ascii_alphanumeric()
                || matches!(self.byte(j), b'.' | b'_' | b'%' | b'+' | b'-'))
        {
            j += 1;
        }
        if self.byte(j) != b'@' || j == i || self.byte(j - 1) == b'.' {
            return None;
        }
        let (end, labels) = self.host(j + 1)?;
        let tld = labels.last()?;
        if tld.len() < 2 || !tld.bytes().all(|b| b.is_ascii_alphabetic()) || !self.boundary(end) {
            return None;
        }
        let local = self.s.get(i..j)?;
        let host = self.s.get(j + 1..end)?;
        let text = format!("{} at {}", verbalize_part(local), verbalize_host(host));
        exp(i..end, text)
    }

    /// Bare domains with a known TLD: "example.com", "docs.rs"-style names are not matched unless
    /// their TLD is listed; an optional path follows ("example.com/docs").
    fn domain(&self, i: usize) -> Option<Segs> {
        let (host_end, labels) = self.host(i)?;
        let tld = labels.last()?;
        if !tables::BARE_DOMAIN_TLDS.contains(tld) || self.byte(host_end) == b'@' || !self.boundary(host_end)
        {
            return None;
        }
        let end = if matches!(self.byte(host_end), b'/' | b':')
            && !self.ch(host_end + 1).is_none_or(char::is_whitespace)
        {
            self.url_end(i).max(host_end)
        } else {
            host_end
        };
        let text = verbalize_url(self.s.get(i..end)?);
        if text.is_empty() {
            return None;
        }
        exp(i..end, text)
    }

    // ---- symbols -----------------------------------------------------------------------------

    /// Whether the nearest non-space characters around `i..j` are digits ("2 + 2", "3<4").
    fn between_numbers(&self, i: usize, j: usize) -> bool {
        let mut a = i;
        while a > 0 && self.byte(a - 1) == b' ' && i - a < 3 {
            a -= 1;
        }
        let mut z = j;
        while self.byte(z) == b' ' && z - j < 3 {
            z += 1;
        }
        a > 0 && self.is_digit(a - 1) && self.is_digit(z)
    }

    fn symbol(&self, i: usize, c: char, prev: Option<char>, after_word: bool) -> Option<Segs> {
        let len = c.len_utf8();
        let j = i + len;
        let next = self.ch(j);
        let word = |w: &str| exp(i..j, w.to_owned());
        match c {
            '&' => {
                let caps = prev.is_some_and(|p| p.is_ascii_uppercase())
                    && next.is_some_and(|n| n.is_ascii_uppercase());
                if caps { None } else { word("and") }
            }
            '@' => word("at"),
            '=' => {
                let op = |c: Option<char>| c.is_some_and(|c| matches!(c, '=' | '<' | '>' | '!' | '~' | ':'));
                if op(prev) || op(next) { None } else { word("equals") }
            }
            '+' => {
                let signed = (prev.is_none_or(|p| p.is_whitespace() || p == '(')) && self.is_digit(j);
                if signed || self.between_numbers(i, j) { word("plus") } else { None }
            }
            '#' => (!after_word && self.is_digit(j)).then(|| vec![Seg::Exp(i..j, "number".to_owned())]),
            '~' => {
                let money = next.is_some_and(|n| tables::PREFIX_SYMBOLS.iter().any(|(s, _)| *s == n));
                (self.is_digit(j) || money).then(|| vec![Seg::Exp(i..j, "about".to_owned())])
            }
            '×' => word("times"),
            '÷' => word("divided by"),
            '±' => word("plus or minus"),
            '≈' => word("approximately"),
            '≠' => word("is not equal to"),
            '≤' => word("less than or equal to"),
            '≥' => word("greater than or equal to"),
            '<' => {
                if self.between_numbers(i, j) {
                    word("less than")
                } else {
                    None
                }
            }
            '>' => {
                if self.between_numbers(i, j) {
                    word("greater than")
                } else {
                    None
                }
            }
            '*' => {
                let spaced = prev == Some(' ') && next == Some(' ');
                if spaced && self.between_numbers(i, j) { word("times") } else { None }
            }
            _ => {
                let (_, n, d) = tables::VULGAR_FRACTIONS.iter().find(|(v, _, _)| *v == c)?;
                word(&words::fraction(*n, *d, false))
            }
        }
    }
}

/// `text` with its first letter upper-cased when `capital` (the source word was capitalized).
fn capitalize(text: &str, capital: bool) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) if capital => first.to_uppercase().chain(chars).collect(),
        Some(_) | None => text.to_owned(),
    }
}

/// Whether a '-' after `prev` can be a minus sign.
fn sign_context(prev: Option<char>) -> bool {
    match prev {
        None => true,
        Some(p) => {
            p.is_whitespace()
                || matches!(
                    p,
                    '(' | '[' | '{' | '"' | '\'' | '“' | '‘' | '=' | ':' | '<' | '>' | '/' | ',' | ';'
                )
        }
    }
}

/// Case rules for abbreviations: exact; lower-case entries also capitalized ("Etc."); numbers'
/// abbreviations ("No.") in any case.
fn case_match(w: &str, a: &tables::Abbr) -> bool {
    if w == a.word {
        return true;
    }
    if a.kind == AbbrKind::BeforeNumber {
        return w.eq_ignore_ascii_case(a.word) && a.word != "p";
    }
    let mut wc = w.chars();
    let mut ac = a.word.chars();
    match (wc.next(), ac.next()) {
        (Some(x), Some(y)) => {
            y.is_ascii_lowercase() && x == y.to_ascii_uppercase() && wc.as_str() == ac.as_str()
        }
        _ => false,
    }
}

fn money(cur: &Currency, amount: &Amount<'_>, magnitude: Option<&str>) -> String {
    if let Some(m) = magnitude {
        return format!("{} {m} {}", amount.words(), cur.many);
    }
    let int_zero = amount.int.bytes().all(|b| b == b'0');
    let unit = |one: bool| if one { cur.one } else { cur.many };
    let int_words = words::number(&amount.int);
    match (amount.frac, cur.sub) {
        (None, _) => format!("{int_words} {}", unit(amount.int == "1")),
        (Some(f), Some((sub_one, sub_many))) if f.len() <= 2 => {
            let cents = words::value(f).map_or(0, |v| if f.len() == 1 { v * 10 } else { v });
            if cents == 0 {
                format!("{int_words} {}", unit(amount.int == "1"))
            } else {
                let sub =
                    format!("{} {}", words::cardinal(cents), if cents == 1 { sub_one } else { sub_many });
                if int_zero { sub } else { format!("{int_words} {} and {sub}", unit(amount.int == "1")) }
            }
        }
        (Some(_), _) => format!("{} {}", amount.words(), cur.many),
    }
}

fn unit_range(minus: &str, a: &Quant<'_>, b: &Quant<'_>, u: &Unit) -> String {
    format!(
        "{minus}{} to {} {}",
        a.amount.words(),
        b.amount.words(),
        if b.amount.is_one() { u.one } else { u.many }
    )
}

/// Spoken form of a URL without its scheme: "example.com/docs" -> "example dot com slash docs".
fn verbalize_url(body: &str) -> String {
    let host_end = body.find(['/', '?', '#', ':']).unwrap_or(body.len());
    let (host, rest) = body.split_at(host_end);
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let mut out = verbalize_host(host);
    let path = verbalize_part(rest);
    if !path.is_empty() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&path);
    }
    out
}

/// A host name: labels joined by "dot"; a two-letter TLD like "io" is spelled ("I-O").
fn verbalize_host(host: &str) -> String {
    let labels: Vec<&str> = host.split('.').collect();
    let last = labels.len().saturating_sub(1);
    let mut parts = Vec::with_capacity(labels.len());
    for (idx, label) in labels.iter().enumerate() {
        if idx == last && idx > 0 && tables::SPELLED_TLDS.contains(&label.to_ascii_lowercase().as_str()) {
            parts.push(label.to_ascii_uppercase().chars().map(String::from).collect::<Vec<_>>().join("-"));
        } else {
            parts.push(verbalize_part(label));
        }
    }
    parts.retain(|p| !p.is_empty());
    parts.join(" dot ")
}

/// Letters kept as words, digit runs read as numbers (or digit by digit when long), symbols named.
fn verbalize_part(part: &str) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut chars = part.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        if c.is_ascii_digit() {
            let mut end = start + 1;
            while let Some((k, d)) = chars.peek().copied() {
                if !d.is_ascii_digit() {
                    break;
                }
                end = k + 1;
                chars.next();
            }
            let digits = part.get(start..end).unwrap_or("");
            out.push(if digits.len() <= 2 { words::number(digits) } else { words::digits(digits) });
        } else if c.is_alphanumeric() {
            let mut end = start + c.len_utf8();
            while let Some((k, d)) = chars.peek().copied() {
                if !d.is_alphanumeric() || d.is_ascii_digit() {
                    break;
                }
                end = k + d.len_utf8();
                chars.next();
            }
            out.push(part.get(start..end).unwrap_or("").to_owned());
        } else if let Some(name) = tables::url_symbol(c) {
            out.push(name.to_owned());
        }
    }
    out.join(" ")
}
