use super::*;

fn n(s: &str) -> String {
    normalize(s).text().to_owned()
}

/// Asserts that each `(input, expected)` normalizes as expected (and keeps the map invariants).
fn check(cases: &[(&str, &str)]) {
    for (input, expected) in cases {
        let out = normalize(input);
        assert_eq!(out.text(), *expected, "input: {input:?}");
        check_invariants(input, &out);
    }
}

/// The byte range of the `nth` whole-word occurrence of `word` in `text`.
fn word_range(text: &str, word: &str, nth: usize) -> Range<usize> {
    let mut found = 0;
    let mut start = 0;
    while let Some(pos) = text.get(start..).and_then(|t| t.find(word)) {
        let s = start + pos;
        let e = s + word.len();
        let before_ok = text[..s].chars().next_back().is_none_or(|c| !c.is_alphanumeric());
        let after_ok = text[e..].chars().next().is_none_or(|c| !c.is_alphanumeric());
        if before_ok && after_ok {
            if found == nth {
                return s..e;
            }
            found += 1;
        }
        start = e;
    }
    panic!("word {word:?} #{nth} not in {text:?}");
}

/// The original text that `word` (its `nth` occurrence) of the normalized text maps back to.
pub(crate) fn source_of<'a>(original: &'a str, out: &Normalized, word: &str, nth: usize) -> &'a str {
    let r = out.original_range(word_range(out.text(), word, nth));
    &original[r]
}

/// Structural invariants of the offset map.
fn check_invariants(original: &str, out: &Normalized) {
    let text = out.text();
    assert_eq!(out.original_len(), original.len());
    let mut norm_pos = 0;
    let mut orig_pos = 0;
    for p in out.pieces() {
        assert_eq!(p.norm.start, norm_pos, "norm pieces not contiguous: {original:?}");
        assert_eq!(p.orig.start, orig_pos, "orig pieces not contiguous: {original:?}");
        assert!(p.norm.start < p.norm.end && p.orig.start < p.orig.end, "empty piece: {original:?}");
        assert!(text.is_char_boundary(p.norm.start) && text.is_char_boundary(p.norm.end));
        assert!(original.is_char_boundary(p.orig.start) && original.is_char_boundary(p.orig.end));
        match p.kind {
            PieceKind::Verbatim => assert_eq!(&text[p.norm.clone()], &original[p.orig.clone()]),
            PieceKind::Expanded => {}
        }
        norm_pos = p.norm.end;
        orig_pos = p.orig.end;
    }
    assert_eq!(norm_pos, text.len(), "pieces do not cover the normalized text: {original:?}");
    assert_eq!(orig_pos, original.len(), "pieces do not cover the original text: {original:?}");
    let whole = out.original_range(0..text.len());
    if text.is_empty() {
        assert!(whole.is_empty());
    } else {
        assert_eq!(whole, 0..original.len(), "{original:?}");
    }
    // Every word maps inside the original, on char boundaries, in order.
    let mut last_start = 0;
    let mut pos = 0;
    for w in text.split(char::is_whitespace) {
        let r = out.original_range(pos..pos + w.len());
        assert!(r.start <= r.end && r.end <= original.len(), "{original:?}: {w:?} -> {r:?}");
        assert!(original.is_char_boundary(r.start) && original.is_char_boundary(r.end));
        assert!(r.start >= last_start, "word ranges go backwards in {original:?}");
        last_start = r.start;
        pos += w.len() + text[pos + w.len()..].chars().next().map_or(0, char::len_utf8);
    }
}

#[test]
fn brief_sentence_and_offsets() {
    let original = "$12.50 on 3/4/2025 at 10:30am, 2nd place, Dr. Smith, 40-60%";
    let out = normalize(original);
    assert_eq!(
        out.text(),
        "twelve dollars and fifty cents on March fourth twenty twenty-five at ten thirty A-M, \
         second place, Doctor Smith, forty to sixty percent"
    );
    check_invariants(original, &out);
    for w in ["twelve", "dollars", "and", "fifty", "cents"] {
        assert_eq!(source_of(original, &out, w, 0), "$12.50", "{w}");
    }
    for w in ["March", "fourth", "twenty-five"] {
        assert_eq!(source_of(original, &out, w, 0), "3/4/2025", "{w}");
    }
    assert_eq!(source_of(original, &out, "ten", 0), "10:30am");
    assert_eq!(source_of(original, &out, "A-M", 0), "10:30am");
    assert_eq!(source_of(original, &out, "second", 0), "2nd");
    assert_eq!(source_of(original, &out, "place", 0), "place");
    assert_eq!(source_of(original, &out, "Doctor", 0), "Dr.");
    assert_eq!(source_of(original, &out, "Smith", 0), "Smith");
    assert_eq!(source_of(original, &out, "on", 0), "on");
    assert_eq!(source_of(original, &out, "at", 0), "at");
    for w in ["forty", "to", "sixty", "percent"] {
        assert_eq!(source_of(original, &out, w, 0), "40-60%", "{w}");
    }
    // A span across pieces maps to the union of their sources.
    let text = out.text();
    let from = word_range(text, "second", 0).start;
    let to = word_range(text, "Smith", 0).end;
    assert_eq!(&original[out.original_range(from..to)], "2nd place, Dr. Smith");
    // Sub-ranges of verbatim text map exactly; of an expansion, to the whole token.
    let place = word_range(text, "place", 0);
    assert_eq!(&original[out.original_range(place.start + 1..place.start + 3)], "la");
    let dollars = word_range(text, "dollars", 0);
    assert_eq!(&original[out.original_range(dollars.start + 1..dollars.start + 2)], "$12.50");
}

#[test]
fn identity_is_untouched() {
    for s in ["", "$12.50 on 3/4/2025", "héllo 😀 wörld", "Dr. Smith 40%"] {
        let id = Normalized::identity(s);
        assert_eq!(id.text(), s);
        check_invariants(s, &id);
        for a in 0..=s.len() {
            for b in a..=s.len() {
                if s.is_char_boundary(a) && s.is_char_boundary(b) {
                    assert_eq!(id.original_range(a..b), a..b);
                }
            }
        }
    }
    assert_eq!(normalize_with("$5", NormalizeOptions::default()), Normalized::identity("$5"));
    assert_eq!(normalize_with("$5", NormalizeOptions::ENGLISH).text(), "five dollars");
}

#[test]
fn original_range_edge_cases() {
    let original = "I paid $5 for é😀.";
    let out = normalize(original);
    let text = out.text();
    assert_eq!(text, "I paid five dollars for é😀.");
    // Clamping past the end.
    assert_eq!(out.original_range(0..10_000), 0..original.len());
    assert_eq!(out.original_range(10_000..20_000), original.len()..original.len());
    // Empty ranges map to empty ranges.
    let five = word_range(text, "five", 0);
    let r = out.original_range(five.start..five.start);
    assert!(r.is_empty());
    assert_eq!(out.original_range(0..0), 0..0);
    // A range inside a multi-byte character widens to the character.
    let emoji = text.find('😀').unwrap_or(0);
    let r = out.original_range(emoji + 1..emoji + 2);
    assert_eq!(&original[r], "😀");
    // Inverted ranges are treated as empty.
    #[allow(clippy::reversed_empty_ranges)]
    let r = out.original_range(5..2);
    assert!(r.is_empty());
    // Empty input.
    let empty = normalize("");
    assert_eq!(empty.text(), "");
    assert_eq!(empty.original_range(0..5), 0..0);
}

#[test]
fn cardinals() {
    check(&[
        ("0", "zero"),
        ("7", "seven"),
        ("13", "thirteen"),
        ("45", "forty-five"),
        ("100", "one hundred"),
        ("101", "one hundred one"),
        ("999", "nine hundred ninety-nine"),
        ("1000", "one thousand"),
        ("1,000", "one thousand"),
        ("2,025", "two thousand twenty-five"),
        ("1,234,567", "one million two hundred thirty-four thousand five hundred sixty-seven"),
        ("1000000000000000", "one quadrillion"),
        ("1,000,000,000,000,000", "one quadrillion"),
        (
            "999999999999999999",
            "nine hundred ninety-nine quadrillion nine hundred ninety-nine trillion nine hundred \
             ninety-nine billion nine hundred ninety-nine million nine hundred ninety-nine \
             thousand nine hundred ninety-nine",
        ),
        ("1500 people", "fifteen hundred people"),
        ("2100", "two thousand one hundred"),
        ("007", "zero zero seven"),
        ("00", "zero zero"),
        ("-5", "minus five"),
        ("\u{2212}5", "minus five"),
        ("It was -5 outside", "It was minus five outside"),
        ("(-3)", "(minus three)"),
        ("--5", "--five"),
        ("3.14", "three point one four"),
        ("1.0", "one point zero"),
        (".5", "point five"),
        ("0.5", "zero point five"),
        ("-0.25", "minus zero point two five"),
        ("1,234.56", "one thousand two hundred thirty-four point five six"),
        ("I have 3 cats.", "I have three cats."),
        ("1.2.3", "one point two point three"),
        ("192.168.0.1", "one hundred ninety-two dot one hundred sixty-eight dot zero dot one"),
        ("5-year-old", "five-year-old"),
        ("COVID-19", "COVID-nineteen"),
        ("4 + 5", "four plus five"),
        ("2+2=4", "two plus two equals four"),
    ]);
}

#[test]
fn too_large_numbers_are_read_digit_by_digit() {
    check(&[
        (
            "1234567890123456789",
            "one two three four five six seven eight nine zero one two three four five six seven eight nine",
        ),
        ("99999999999999999999999", "nine ".repeat(23).trim_end()),
        ("$99999999999999999999", &format!("{} dollars", "nine ".repeat(20).trim_end())),
        ("99999999999999999999th", &format!("{} ninth", "nine ".repeat(19).trim_end())),
    ]);
    // Very long digit strings don't panic.
    let long = "9".repeat(5000);
    let out = normalize(&long);
    check_invariants(&long, &out);
    assert!(out.text().starts_with("nine nine"));
}

#[test]
fn words_are_left_alone() {
    check(&[
        ("mp3", "mp3"),
        ("x5", "x5"),
        ("A4 paper", "A4 paper"),
        ("v1.2", "v1.2"),
        ("3D", "3D"),
        ("5G network", "5G network"),
        ("1920x1080", "1920x1080"),
        ("Hello, world!", "Hello, world!"),
        ("5 in the morning", "five in the morning"),
        ("I am 5", "I am five"),
        ("May I help?", "May I help?"),
    ]);
}

#[test]
fn years() {
    check(&[
        ("1999", "nineteen ninety-nine"),
        ("2025", "twenty twenty-five"),
        ("2000", "two thousand"),
        ("2005", "two thousand five"),
        ("1905", "nineteen oh five"),
        ("1900", "nineteen hundred"),
        ("1100", "eleven hundred"),
        ("2010", "twenty ten"),
        ("2099", "twenty ninety-nine"),
        ("In 1999, prices rose.", "In nineteen ninety-nine, prices rose."),
        ("1099", "one thousand ninety-nine"),
        ("2,000", "two thousand"),
        ("1990s", "nineteen nineties"),
        ("1990's", "nineteen nineties"),
        ("the '90s", "the nineties"),
        ("the ’80s", "the eighties"),
        ("in her 20s", "in her twenties"),
        ("1900s", "nineteen hundreds"),
        ("2000s", "two thousands"),
        ("1990-1995", "nineteen ninety to nineteen ninety-five"),
        ("2010-11", "twenty ten to eleven"),
    ]);
}

#[test]
fn currency() {
    check(&[
        ("$12.50", "twelve dollars and fifty cents"),
        ("$1", "one dollar"),
        ("$0.99", "ninety-nine cents"),
        ("$0.01", "one cent"),
        ("$1.01", "one dollar and one cent"),
        ("$12.00", "twelve dollars"),
        ("$12.5", "twelve dollars and fifty cents"),
        ("$.50", "fifty cents"),
        ("$12.505", "twelve point five zero five dollars"),
        ("$1,000,000", "one million dollars"),
        ("$2025", "two thousand twenty-five dollars"),
        ("$5 million", "five million dollars"),
        ("$1 billion", "one billion dollars"),
        ("$2.5M", "two point five million dollars"),
        ("$3B", "three billion dollars"),
        ("$3bn", "three billion dollars"),
        ("$100k", "one hundred thousand dollars"),
        ("-$5", "minus five dollars"),
        ("£5", "five pounds"),
        ("£1.50", "one pound and fifty pence"),
        ("£0.01", "one penny"),
        ("€10", "ten euros"),
        ("€1", "one euro"),
        ("€5.50", "five euros and fifty cents"),
        ("5€", "five euros"),
        ("¥1000", "one thousand yen"),
        ("¥1.5", "one point five yen"),
        ("₹100", "one hundred rupees"),
        ("5¢", "five cents"),
        ("1¢", "one cent"),
        ("USD 5", "five dollars"),
        ("5 USD", "five dollars"),
        ("US$20", "twenty dollars"),
        ("It costs $5.", "It costs five dollars."),
        ("It costs $5.00.", "It costs five dollars."),
        ("($5)", "(five dollars)"),
        ("$", "$"),
        ("$ and €", "$ and €"),
    ]);
}

#[test]
fn percentages() {
    check(&[
        ("40%", "forty percent"),
        ("2.5%", "two point five percent"),
        ("100%", "one hundred percent"),
        ("0%", "zero percent"),
        ("-3%", "minus three percent"),
        ("+5%", "plus five percent"),
        ("50 %", "fifty percent"),
        ("%", "%"),
        ("up 40%.", "up forty percent."),
    ]);
}

#[test]
fn ranges() {
    check(&[
        ("40-60", "forty to sixty"),
        ("40–60", "forty to sixty"),
        ("40 – 60", "forty to sixty"),
        ("40-60%", "forty to sixty percent"),
        ("40%-60%", "forty to sixty percent"),
        ("$10-$20", "ten to twenty dollars"),
        ("$10-20", "ten to twenty dollars"),
        ("$10.50-$20", "ten dollars and fifty cents to twenty dollars"),
        ("$5-10 million", "five to ten million dollars"),
        ("$5M-$10M", "five to ten million dollars"),
        ("5-10 km", "five to ten kilometers"),
        ("5km-10km", "five to ten kilometers"),
        ("1st-3rd", "first to third"),
        ("1.5-2.5", "one point five to two point five"),
        ("1-5", "one to five"),
        ("pages 10-12", "pages ten to twelve"),
        ("3-4-year-olds", "three to four-year-olds"),
        // Not ranges: phone numbers, scores, dates, digit chains.
        ("555-1234", "five five five one two three four"),
        ("555-123-4567", "five five five one two three four five six seven"),
        ("(555) 123-4567", "five five five one two three four five six seven"),
        ("555.123.4567", "five five five one two three four five six seven"),
        ("1-800-555-1234", "one eight zero zero five five five one two three four"),
        ("123-45-6789", "one two three four five six seven eight nine"),
        ("a 3-2 win", "a three-two win"),
        ("2025-03-04", "March fourth twenty twenty-five"),
        ("07-10", "zero seven-ten"),
    ]);
}

#[test]
fn dates() {
    check(&[
        ("3/4/2025", "March fourth twenty twenty-five"),
        ("03/04/2025", "March fourth twenty twenty-five"),
        ("12/25/2024", "December twenty-fifth twenty twenty-four"),
        ("25/12/2024", "December twenty-fifth twenty twenty-four"),
        ("3/4/25", "March fourth twenty-five"),
        ("3/4/05", "March fourth oh five"),
        ("3-4-2025", "March fourth twenty twenty-five"),
        ("4.3.2025", "March fourth twenty twenty-five"),
        ("2025-03-04", "March fourth twenty twenty-five"),
        ("2025/03/04", "March fourth twenty twenty-five"),
        ("On 2025-12-31.", "On December thirty-first twenty twenty-five."),
        ("March 4, 2025", "March fourth, twenty twenty-five"),
        ("March 4 2025", "March fourth twenty twenty-five"),
        ("March 4", "March fourth"),
        ("March 4th", "March fourth"),
        ("on March 21st.", "on March twenty-first."),
        ("March 4-6, 2025", "March fourth to sixth, twenty twenty-five"),
        ("Jan. 5", "January fifth"),
        ("Jan 5, 1999", "January fifth, nineteen ninety-nine"),
        ("Sept. 3", "September third"),
        ("Dec 25", "December twenty-fifth"),
        ("in Jan. we", "in January we"),
        ("until Jan.", "until January."),
        ("4 March 2025", "the fourth of March twenty twenty-five"),
        ("4th March", "the fourth of March"),
        ("4-6 March", "the fourth to sixth of March"),
        ("4 Mar. 2025", "the fourth of March twenty twenty-five"),
        ("the 4th of July", "the fourth of July"),
        ("March 2025", "March twenty twenty-five"),
        ("March 10,000 people", "March ten thousand people"),
        ("May I", "May I"),
        ("13/13/2025", "thirteen/thirteen/twenty twenty-five"),
        ("1/0/0000", "one/zero/zero zero zero zero"),
    ]);
    let opts = NormalizeOptions { day_first_dates: true, ..NormalizeOptions::ENGLISH };
    assert_eq!(normalize_with("3/4/2025", opts).text(), "April third twenty twenty-five");
    assert_eq!(normalize_with("12/25/2024", opts).text(), "December twenty-fifth twenty twenty-four");
}

#[test]
fn dates_do_not_add_punctuation() {
    for s in ["3/4/2025", "2025-03-04", "March 4 2025", "4 March 2025", "Jan. 5 2025"] {
        let t = n(s);
        assert!(!t.contains([',', '.', ';', ':']), "{s:?} -> {t:?}");
    }
}

#[test]
fn times() {
    check(&[
        ("10:30am", "ten thirty A-M"),
        ("10:30 am", "ten thirty A-M"),
        ("10:30 a.m. today", "ten thirty A-M today"),
        ("10:30AM", "ten thirty A-M"),
        ("10:30 PM", "ten thirty P-M"),
        ("7pm", "seven P-M"),
        ("7 p.m.", "seven P-M."),
        ("at 7 p.m. Then we ate.", "at seven P-M. Then we ate."),
        ("at 7 p.m. and then", "at seven P-M and then"),
        ("10:00", "ten o'clock"),
        ("10:00am", "ten A-M"),
        ("10:05", "ten oh five"),
        ("12:00pm", "twelve P-M"),
        ("14:30", "fourteen thirty"),
        ("14:00", "fourteen hundred"),
        ("23:59", "twenty-three fifty-nine"),
        ("00:30", "twelve thirty A-M"),
        ("0:00", "twelve A-M"),
        ("1:30:15", "one thirty and fifteen seconds"),
        ("9am-5pm", "nine A-M to five P-M"),
        ("9am-11am", "nine to eleven A-M"),
        ("10-11am", "ten to eleven A-M"),
        ("10:30-11:30", "ten thirty to eleven thirty"),
        ("John 3:16", "John three sixteen"),
        ("25:00", "twenty-five:zero zero"),
        ("10:75", "ten:seventy-five"),
    ]);
    let opts = NormalizeOptions { twelve_hour_clock: true, ..NormalizeOptions::ENGLISH };
    assert_eq!(normalize_with("14:30", opts).text(), "two thirty P-M");
    assert_eq!(normalize_with("10:30", opts).text(), "ten thirty");
}

#[test]
fn ordinals() {
    check(&[
        ("1st", "first"),
        ("2nd", "second"),
        ("3rd", "third"),
        ("4th", "fourth"),
        ("5th", "fifth"),
        ("8th", "eighth"),
        ("9th", "ninth"),
        ("11th", "eleventh"),
        ("12th", "twelfth"),
        ("20th", "twentieth"),
        ("21st", "twenty-first"),
        ("22nd", "twenty-second"),
        ("101st", "one hundred first"),
        ("1,000th", "one thousandth"),
        ("1000000th", "one millionth"),
        ("2ND", "second"),
        ("0th", "zeroth"),
        ("the 2nd place", "the second place"),
    ]);
}

#[test]
fn abbreviations() {
    check(&[
        ("Dr. Smith", "Doctor Smith"),
        ("Dr Smith", "Doctor Smith"),
        ("I saw Dr. Smith today.", "I saw Doctor Smith today."),
        ("He lives on Elm Dr.", "He lives on Elm Drive."),
        ("Elm Dr. is closed", "Elm Drive is closed"),
        ("Mr. Jones", "Mister Jones"),
        ("Mr. and Mrs. Smith", "Mister and Missus Smith"),
        ("Ms. Lee", "Miz Lee"),
        ("Prof. Xavier", "Professor Xavier"),
        ("St. Louis", "Saint Louis"),
        ("Visit St. Louis", "Visit Saint Louis"),
        ("on Main St.", "on Main Street."),
        ("on Main St. Then", "on Main Street. Then"),
        ("5th St. is", "fifth Street is"),
        ("Martin Luther King Jr. said", "Martin Luther King Junior said"),
        ("John Smith Sr.", "John Smith Senior."),
        ("apples, pears, etc.", "apples, pears, et cetera."),
        ("apples, etc. and more", "apples, et cetera and more"),
        ("apples etc. The end.", "apples et cetera. The end."),
        ("cats vs. dogs", "cats versus dogs"),
        ("cats vs dogs", "cats versus dogs"),
        ("e.g. this", "for example this"),
        ("E.g., this", "For example, this"),
        ("i.e. that", "that is that"),
        ("a.k.a. Bob", "also known as Bob"),
        ("approx. 5 kg", "approximately five kilograms"),
        ("No. 5", "number five"),
        ("no. 7", "number seven"),
        ("Say no. Then leave.", "Say no. Then leave."),
        ("Acme Inc. makes", "Acme Incorporated makes"),
        ("Acme Inc.", "Acme Incorporated."),
        ("Acme Ltd. The", "Acme Limited. The"),
        ("Acme Co. is", "Acme Company is"),
        ("Fifth Ave.", "Fifth Avenue."),
        ("Mt. Everest", "Mount Everest"),
        ("Ft. Worth", "Fort Worth"),
        ("Sen. Warren", "Senator Warren"),
        ("the U.S. Army", "the U-S Army"),
        ("in the U.S.", "in the U-S."),
        ("a Ph.D. student", "a P-H-D student"),
        ("Mrs", "Mrs"),
        ("Drive", "Drive"),
    ]);
}

#[test]
fn abbreviation_period_is_consumed() {
    // The expansion must not leave a sentence-ending period behind.
    for s in ["Dr. Smith is here", "Mr. Smith is here", "St. Louis is here", "e.g. here", "No. 5 is here"] {
        let t = n(s);
        assert!(!t.contains('.'), "{s:?} -> {t:?}");
    }
}

#[test]
fn units() {
    check(&[
        ("5 km", "five kilometers"),
        ("5km", "five kilometers"),
        ("1 km", "one kilometer"),
        ("1.0 km", "one point zero kilometers"),
        ("0 km", "zero kilometers"),
        ("2 kg", "two kilograms"),
        ("500 g", "five hundred grams"),
        ("5 mg", "five milligrams"),
        ("1 lb", "one pound"),
        ("3 lbs", "three pounds"),
        ("12 oz", "twelve ounces"),
        ("100 m", "one hundred meters"),
        ("5 cm", "five centimeters"),
        ("3 mm", "three millimeters"),
        ("10 mi", "ten miles"),
        ("6 ft", "six feet"),
        ("1 ft", "one foot"),
        ("5in", "five inches"),
        ("60 mph", "sixty miles per hour"),
        ("100 km/h", "one hundred kilometers per hour"),
        ("100 kph", "one hundred kilometers per hour"),
        ("20°C", "twenty degrees Celsius"),
        ("20 °C", "twenty degrees Celsius"),
        ("-5°F", "minus five degrees Fahrenheit"),
        ("90°", "ninety degrees"),
        ("1°", "one degree"),
        ("16 GB", "sixteen gigabytes"),
        ("512MB", "five hundred twelve megabytes"),
        ("1 TB", "one terabyte"),
        ("100 ms", "one hundred milliseconds"),
        ("2.4 GHz", "two point four gigahertz"),
        ("50 Hz", "fifty hertz"),
        ("500 ml", "five hundred milliliters"),
        ("2 L", "two liters"),
        ("60W", "sixty watts"),
        ("2 kW", "two kilowatts"),
        ("12V", "twelve volts"),
        ("3x faster", "three times faster"),
        ("5 min", "five minutes"),
        ("2 hrs", "two hours"),
        ("5 kgs", "five kgs"),
    ]);
}

#[test]
fn urls_and_email() {
    check(&[
        ("https://example.com/docs", "example dot com slash docs"),
        ("See https://example.com/docs.", "See example dot com slash docs."),
        ("http://www.example.com/", "example dot com"),
        ("www.google.com", "google dot com"),
        (
            "https://my-site.org/a_b?x=1",
            "my dash site dot org slash a underscore b question mark x equals one",
        ),
        (
            "(see https://en.wikipedia.org/wiki/Foo_(bar))",
            "(see en dot wikipedia dot org slash wiki slash Foo underscore bar)",
        ),
        ("Visit example.com today.", "Visit example dot com today."),
        ("Visit example.io.", "Visit example dot I-O."),
        ("john.doe@example.com", "john dot doe at example dot com"),
        (
            "Email me at a.b+tag@mail.example.co.uk.",
            "Email me at a dot b plus tag at mail dot example dot co dot U-K.",
        ),
        ("a@b", "a at b"),
        ("@ home", "at home"),
        ("file.txt", "file.txt"),
        ("Node.js", "Node.js"),
    ]);
}

#[test]
fn symbols() {
    check(&[
        ("Tom & Jerry", "Tom and Jerry"),
        ("a&b", "a and b"),
        ("AT&T", "AT&T"),
        ("2 + 2 = 4", "two plus two equals four"),
        ("x = 5", "x equals five"),
        ("a == b", "a == b"),
        ("#5", "number five"),
        ("#1 fan", "number one fan"),
        ("#hashtag", "#hashtag"),
        ("~5 minutes", "about five minutes"),
        ("~$5", "about five dollars"),
        ("3 × 4", "three times four"),
        ("3 * 4", "three times four"),
        ("10 ÷ 2", "ten divided by two"),
        ("5 ± 1", "five plus or minus one"),
        ("3 < 4", "three less than four"),
        ("<b>", "<b>"),
        ("C++", "C++"),
        ("½ cup", "one half cup"),
        ("2½ cups", "two and a half cups"),
        ("2 1/2 cups", "two and a half cups"),
        ("3/4", "three quarters"),
        ("1/2", "one half"),
        ("2/3", "two thirds"),
        ("24/7", "twenty-four seven"),
        ("9/11", "nine/eleven"),
        ("and/or", "and/or"),
    ]);
}

#[test]
fn unicode_is_preserved() {
    check(&[
        ("😀 5 km 😀", "😀 five kilometers 😀"),
        ("日本語 5", "日本語 five"),
        ("第5章", "第5章"),
        ("é5", "é5"),
        ("café 10:30", "café ten thirty"),
        ("naïve", "naïve"),
        ("e\u{301} 5", "e\u{301} five"),
        ("שלום 3", "שלום three"),
        ("👩‍👩‍👧 $5", "👩‍👩‍👧 five dollars"),
        ("5\u{a0}km", "five kilometers"),
    ]);
}

#[test]
fn tricky_strings_keep_invariants() {
    let tricky = [
        "",
        " ",
        "$",
        "%",
        "$$5",
        "$-5",
        "-$",
        "5$",
        "1/0/0000",
        "99999999999999999999999",
        "--5",
        "3..4",
        "1.2.3.4",
        "a@b",
        "::",
        ":5",
        "5:",
        "5:5",
        "1:2:3:4:5",
        "1-2-3-4-5",
        "1.",
        ".1.",
        "..",
        "...5",
        "5..",
        "1,",
        ",1",
        "1,,000",
        "1,0000",
        "12,345,67",
        "$1,",
        "$.",
        "$.5.",
        "1e10",
        "0x1F",
        "#",
        "#-1",
        "&",
        "&&",
        "@@",
        "==",
        "+",
        "++1",
        "+-1",
        "-",
        "−",
        "–",
        "5–",
        "–5",
        "5-",
        "5--6",
        "5-–6",
        "(",
        "()",
        "(555)",
        "(555) 123-",
        "'",
        "'9",
        "'90",
        "'90s'",
        "’",
        "10:",
        "10:3",
        "10:300",
        "10am-",
        "-10am",
        "am",
        "a.m.",
        "p.m",
        "Dr.",
        "Dr",
        "St.",
        ".Dr",
        "e.g",
        "e.g.",
        "i.e.,",
        "U.S",
        "A.B.C.D.E.F.G.H.I.J.K.L.",
        "http://",
        "https://",
        "www.",
        "www..com",
        "a@.com",
        "@example.com",
        "x@y.z",
        "mailto:a@b.co",
        "https://例子.com/路径",
        "Jan.",
        "Jan",
        "March",
        "March 32",
        "March 0",
        "32 March",
        "0 March",
        "5 °",
        "°C",
        "5°C°F",
        "½",
        "5½½",
        "1/2/",
        "/1/2",
        "24/7/365",
        "¢",
        "5¢¢",
        "😀5😀",
        "5😀",
        "\u{301}5",
        "5\u{301}",
        "\u{200d}5",
        "٣",
        "٣٤",
        "１２３",
        "5\u{a0}",
        "\u{a0}5",
        "\n5\n",
        "\t$5\t",
        "\r\n",
        "5 %%",
        "%5",
        "5%5",
        "$5%",
        "5km/h/h",
        "5 m/s²",
        "1st2nd",
        "21stcentury",
        "1990ss",
        "1990'",
        "'s",
        "0000",
        "0,000",
        "0.000",
        "-0",
        "-.",
        "-.5",
        "−.5",
        "−$5",
        "USD",
        "USD$5",
        "5 USDX",
        "9am-5pmx",
        "Mr.",
        "Mr. ",
        "Mr.Smith",
        "No.",
        "No. ",
        "No.5",
        "etc",
        "etc.",
        "vs.",
        "Ph.D",
        "Ph.D.",
        "3 < ",
        " > 4",
        "3 * ",
        "* 4",
        "~",
        "~~5",
        "#5#",
        "&5&",
    ];
    for s in tricky {
        let out = normalize(s);
        check_invariants(s, &out);
    }
}

/// A tiny deterministic generator (no external crates).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
}

#[test]
fn random_strings_keep_invariants() {
    const POOL: &[&str] = &[
        "0",
        "1",
        "2",
        "5",
        "9",
        "00",
        "12",
        "1999",
        "2025",
        "a",
        "m",
        "p",
        "s",
        "t",
        "h",
        "x",
        "e",
        "g",
        "A",
        "M",
        "P",
        "D",
        "r",
        "S",
        "U",
        "Dr",
        "St",
        "Jan",
        "March",
        "km",
        "am",
        "pm",
        "st",
        "nd",
        "th",
        "com",
        "www",
        "http",
        "://",
        ".",
        ",",
        ":",
        ";",
        "/",
        "-",
        "–",
        "—",
        "−",
        "+",
        "=",
        "&",
        "@",
        "#",
        "~",
        "%",
        "$",
        "£",
        "€",
        "¥",
        "¢",
        "°",
        "½",
        "'",
        "’",
        "\"",
        "(",
        ")",
        "[",
        "<",
        ">",
        "*",
        "×",
        " ",
        " ",
        " ",
        "\n",
        "\t",
        "\u{a0}",
        "😀",
        "👩‍👩‍👧",
        "日",
        "本",
        "é",
        "e\u{301}",
        "\u{301}",
        "ש",
        "\u{200d}",
        "\u{feff}",
        "١",
        "Ⅻ",
    ];
    let mut rng = Lcg(0x5eed);
    for _ in 0..4000 {
        let len = (rng.next() % 24) as usize;
        let mut s = String::new();
        for _ in 0..len {
            s.push_str(POOL[(rng.next() % POOL.len() as u64) as usize]);
        }
        let out = normalize(&s);
        check_invariants(&s, &out);
        // Arbitrary (even misaligned) ranges never panic and stay within the original.
        for _ in 0..8 {
            let a = (rng.next() % (out.text().len() as u64 + 3)) as usize;
            let b = (rng.next() % (out.text().len() as u64 + 3)) as usize;
            let r = out.original_range(a.min(b)..a.max(b));
            assert!(r.start <= r.end && r.end <= s.len(), "{s:?}");
            assert!(s.is_char_boundary(r.start) && s.is_char_boundary(r.end), "{s:?}");
        }
    }
}

#[test]
fn verbatim_text_maps_exactly() {
    let original = "Hello, wörld! Meet me at 10:30am. 😀 Bye.";
    let out = normalize(original);
    check_invariants(original, &out);
    assert_eq!(source_of(original, &out, "Hello", 0), "Hello");
    assert_eq!(source_of(original, &out, "wörld", 0), "wörld");
    assert_eq!(source_of(original, &out, "Bye", 0), "Bye");
    assert_eq!(source_of(original, &out, "thirty", 0), "10:30am");
    let bye = word_range(out.text(), "Bye", 0);
    assert_eq!(&original[out.original_range(bye.start..bye.end + 1)], "Bye.");
}

#[test]
fn large_input_is_handled() {
    let chunk = "On 3/4/2025 at 10:30am Dr. Smith paid $12.50 (40-60% off) at https://example.com/x, \
                 i.e. 1,234 km in 2025. 😀 日本語 ";
    let text = chunk.repeat(1000);
    let out = normalize(&text);
    check_invariants(&text, &out);
    assert!(out.text().len() > text.len());
}
