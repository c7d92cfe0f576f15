//! Number words: cardinals, ordinals, years, digit strings, fractions (US English).

const ONES: [&str; 20] = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
];

const TENS: [&str; 10] =
    ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"];

/// Scale words for groups of three digits; `u64::MAX` has seven groups.
const SCALES: [&str; 7] = ["", "thousand", "million", "billion", "trillion", "quadrillion", "quintillion"];

/// The longest digit string read as a number; longer ones are read digit by digit.
pub(super) const MAX_CARDINAL_DIGITS: usize = 18;

fn small(n: u64) -> &'static str {
    // Callers pass n < 20.
    ONES.get(n as usize).copied().unwrap_or("")
}

fn push_below_thousand(out: &mut String, n: u64) {
    let hundreds = n / 100;
    let rest = n % 100;
    if hundreds > 0 {
        out.push_str(small(hundreds));
        out.push_str(" hundred");
        if rest > 0 {
            out.push(' ');
        }
    }
    if rest == 0 {
        return;
    }
    if rest < 20 {
        out.push_str(small(rest));
    } else {
        out.push_str(TENS.get((rest / 10) as usize).copied().unwrap_or(""));
        if !rest.is_multiple_of(10) {
            out.push('-');
            out.push_str(small(rest % 10));
        }
    }
}

/// "one million two hundred thirty-four thousand five hundred sixty-seven" (no "and", US style).
pub(super) fn cardinal(n: u64) -> String {
    if n == 0 {
        return "zero".to_owned();
    }
    let mut groups = [0u64; 7];
    let mut m = n;
    let mut count = 0;
    while m > 0 && count < groups.len() {
        groups[count] = m % 1000;
        m /= 1000;
        count += 1;
    }
    let mut out = String::new();
    for idx in (0..count).rev() {
        let g = groups[idx];
        if g == 0 {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        push_below_thousand(&mut out, g);
        if idx > 0 {
            out.push(' ');
            out.push_str(SCALES[idx]);
        }
    }
    out
}

/// Reads each ASCII digit of `s` as a word: "007" -> "zero zero seven". Other characters are skipped.
pub(super) fn digits(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 5);
    for b in s.bytes().filter(u8::is_ascii_digit) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(small(u64::from(b - b'0')));
    }
    out
}

/// The value of a digit string, when it is short enough to read as a number.
pub(super) fn value(int: &str) -> Option<u64> {
    if int.is_empty() || int.len() > MAX_CARDINAL_DIGITS || !int.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    int.parse().ok()
}

/// Reads an integer digit string: as a cardinal when it can, digit by digit when it has a leading zero
/// ("007") or is too long to read as a number. An empty string reads "zero".
pub(super) fn number(int: &str) -> String {
    if int.is_empty() {
        return "zero".to_owned();
    }
    if int.len() > 1 && int.starts_with('0') {
        return digits(int);
    }
    match value(int) {
        Some(v) => cardinal(v),
        None => digits(int),
    }
}

/// Reads a decimal: "3" "14" -> "three point one four"; "" "5" -> "point five".
pub(super) fn decimal(int: &str, frac: Option<&str>) -> String {
    let mut out = if int.is_empty() && frac.is_some() { String::new() } else { number(int) };
    if let Some(f) = frac {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str("point ");
        out.push_str(&digits(f));
    }
    out
}

/// Turns the last word of a cardinal into its ordinal: "twenty-one" -> "twenty-first".
pub(super) fn ordinalize(words: &str) -> String {
    let cut = words.rfind([' ', '-']).map_or(0, |p| p + 1);
    let (head, last) = words.split_at(cut);
    let last = match last {
        "one" => "first".to_owned(),
        "two" => "second".to_owned(),
        "three" => "third".to_owned(),
        "five" => "fifth".to_owned(),
        "eight" => "eighth".to_owned(),
        "nine" => "ninth".to_owned(),
        "twelve" => "twelfth".to_owned(),
        other => match other.strip_suffix('y') {
            Some(stem) => format!("{stem}ieth"),
            None => format!("{other}th"),
        },
    };
    format!("{head}{last}")
}

/// The ordinal of `n`: 101 -> "one hundred first".
pub(super) fn ordinal(n: u64) -> String {
    ordinalize(&cardinal(n))
}

/// The ordinal of a digit string; strings too long to read are read digit by digit with "th".
pub(super) fn ordinal_str(int: &str) -> String {
    match value(int) {
        Some(v) if !(int.len() > 1 && int.starts_with('0')) => ordinal(v),
        Some(_) | None => ordinalize(&digits(int)),
    }
}

/// Plural of the last word of a number phrase: "nineteen ninety" -> "nineteen nineties".
pub(super) fn pluralize(words: &str) -> String {
    if let Some(stem) = words.strip_suffix('y') {
        format!("{stem}ies")
    } else if words.ends_with('x') {
        format!("{words}es")
    } else {
        format!("{words}s")
    }
}

/// A four-digit year read the way years are spoken: 1999 "nineteen ninety-nine", 2025 "twenty
/// twenty-five", 2000 "two thousand", 2005 "two thousand five", 1905 "nineteen oh five", 1900
/// "nineteen hundred". Values outside 1000..=9999 are read as cardinals.
pub(super) fn year(y: u64) -> String {
    if !(1000..=9999).contains(&y) {
        return cardinal(y);
    }
    let hi = y / 100;
    let lo = y % 100;
    if y.is_multiple_of(1000) || (hi.is_multiple_of(10) && lo < 10) {
        // 2000, 2005, 1000, 1009, 3000
        cardinal(y)
    } else if lo == 0 {
        format!("{} hundred", cardinal(hi))
    } else if lo < 10 {
        format!("{} oh {}", cardinal(hi), small(lo))
    } else {
        format!("{} {}", cardinal(hi), cardinal(lo))
    }
}

/// A two-digit year from a short date ("3/4/25"): "twenty-five", "oh five", "two thousand" for 00.
pub(super) fn two_digit_year(yy: u64) -> String {
    match yy {
        0 => "two thousand".to_owned(),
        1..=9 => format!("oh {}", small(yy)),
        _ => cardinal(yy),
    }
}

/// A fraction: 3/4 "three quarters", 1/2 "one half", 5/8 "five eighths". With `article`, a
/// numerator of one reads "a": "a half" (for mixed numbers: "two and a half").
pub(super) fn fraction(num: u64, den: u64, article: bool) -> String {
    let plural = num != 1;
    let den_word = match (den, plural) {
        (2, false) => "half".to_owned(),
        (2, true) => "halves".to_owned(),
        (4, false) => "quarter".to_owned(),
        (4, true) => "quarters".to_owned(),
        (_, false) => ordinal(den),
        (_, true) => format!("{}s", ordinal(den)),
    };
    if article && num == 1 { format!("a {den_word}") } else { format!("{} {den_word}", cardinal(num)) }
}

/// English month names, January first.
pub(super) const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// The month name for 1..=12.
pub(super) fn month_name(m: u64) -> Option<&'static str> {
    let idx = usize::try_from(m).ok()?.checked_sub(1)?;
    MONTHS.get(idx).copied()
}
