//! Lookup tables: currencies, units, abbreviations, months, top-level domains.

/// A currency: its spoken unit and sub-unit names.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Currency {
    /// ISO-style code, used to compare currencies.
    pub code: &'static str,
    pub one: &'static str,
    pub many: &'static str,
    /// Sub-unit (hundredths), singular and plural; `None` for currencies read with decimals (yen).
    pub sub: Option<(&'static str, &'static str)>,
}

pub(super) const USD: Currency =
    Currency { code: "USD", one: "dollar", many: "dollars", sub: Some(("cent", "cents")) };
pub(super) const EUR: Currency =
    Currency { code: "EUR", one: "euro", many: "euros", sub: Some(("cent", "cents")) };
pub(super) const GBP: Currency =
    Currency { code: "GBP", one: "pound", many: "pounds", sub: Some(("penny", "pence")) };
pub(super) const JPY: Currency = Currency { code: "JPY", one: "yen", many: "yen", sub: None };
pub(super) const INR: Currency =
    Currency { code: "INR", one: "rupee", many: "rupees", sub: Some(("paisa", "paise")) };
pub(super) const KRW: Currency = Currency { code: "KRW", one: "won", many: "won", sub: None };
pub(super) const RUB: Currency =
    Currency { code: "RUB", one: "ruble", many: "rubles", sub: Some(("kopek", "kopeks")) };
pub(super) const BTC: Currency = Currency { code: "BTC", one: "bitcoin", many: "bitcoin", sub: None };
pub(super) const CENTS: Currency = Currency { code: "CENT", one: "cent", many: "cents", sub: None };
pub(super) const CAD: Currency =
    Currency { code: "CAD", one: "Canadian dollar", many: "Canadian dollars", sub: Some(("cent", "cents")) };
pub(super) const AUD: Currency = Currency {
    code: "AUD",
    one: "Australian dollar",
    many: "Australian dollars",
    sub: Some(("cent", "cents")),
};
pub(super) const CNY: Currency = Currency { code: "CNY", one: "yuan", many: "yuan", sub: None };

/// Currency symbols written before the amount ("$5").
pub(super) const PREFIX_SYMBOLS: &[(char, &Currency)] =
    &[('$', &USD), ('£', &GBP), ('€', &EUR), ('¥', &JPY), ('₹', &INR), ('₩', &KRW), ('₽', &RUB), ('₿', &BTC)];

/// Currency symbols accepted after the amount ("5€", "5¢").
pub(super) const POSTFIX_SYMBOLS: &[(char, &Currency)] =
    &[('€', &EUR), ('£', &GBP), ('$', &USD), ('¢', &CENTS), ('¥', &JPY), ('₹', &INR), ('₽', &RUB)];

/// Currency codes, before ("USD 5") or after ("5 USD") the amount.
pub(super) const CODES: &[(&str, &Currency)] = &[
    ("US$", &USD),
    ("USD", &USD),
    ("EUR", &EUR),
    ("GBP", &GBP),
    ("JPY", &JPY),
    ("INR", &INR),
    ("CAD", &CAD),
    ("AUD", &AUD),
    ("CNY", &CNY),
];

/// Magnitude words after a currency amount, written attached ("$2.5M", "$3bn").
pub(super) const MAGNITUDES_ATTACHED: &[(&str, &str)] = &[
    ("bn", "billion"),
    ("mn", "million"),
    ("tn", "trillion"),
    ("M", "million"),
    ("m", "million"),
    ("B", "billion"),
    ("b", "billion"),
    ("K", "thousand"),
    ("k", "thousand"),
    ("T", "trillion"),
];

/// Magnitude words after a currency amount and a space ("$5 million").
pub(super) const MAGNITUDES_SPACED: &[(&str, &str)] = &[
    ("thousand", "thousand"),
    ("million", "million"),
    ("billion", "billion"),
    ("trillion", "trillion"),
    ("bn", "billion"),
    ("mn", "million"),
];

/// A unit written after a number.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Unit {
    pub abbr: &'static str,
    pub one: &'static str,
    pub many: &'static str,
    /// Whether the unit may be separated from the number by a space ("5 km"); units that are also
    /// common words ("in") are only read when attached ("5in").
    pub spaced: bool,
}

const fn unit(abbr: &'static str, one: &'static str, many: &'static str, spaced: bool) -> Unit {
    Unit { abbr, one, many, spaced }
}

/// Units. Entries that are a prefix of another entry followed by a non-word character ("km" of
/// "km/h", "°" of "°C") come after it.
pub(super) const UNITS: &[Unit] = &[
    unit("km/h", "kilometer per hour", "kilometers per hour", true),
    unit("m/s", "meter per second", "meters per second", true),
    unit("°C", "degree Celsius", "degrees Celsius", true),
    unit("°F", "degree Fahrenheit", "degrees Fahrenheit", true),
    unit("℃", "degree Celsius", "degrees Celsius", true),
    unit("℉", "degree Fahrenheit", "degrees Fahrenheit", true),
    unit("°", "degree", "degrees", false),
    unit("mph", "mile per hour", "miles per hour", true),
    unit("kph", "kilometer per hour", "kilometers per hour", true),
    unit("kWh", "kilowatt hour", "kilowatt hours", true),
    unit("mAh", "milliamp hour", "milliamp hours", true),
    unit("kbps", "kilobit per second", "kilobits per second", true),
    unit("Mbps", "megabit per second", "megabits per second", true),
    unit("Gbps", "gigabit per second", "gigabits per second", true),
    unit("km", "kilometer", "kilometers", true),
    unit("cm", "centimeter", "centimeters", true),
    unit("mm", "millimeter", "millimeters", true),
    unit("nm", "nanometer", "nanometers", true),
    unit("µm", "micrometer", "micrometers", true),
    unit("m", "meter", "meters", true),
    unit("mi", "mile", "miles", true),
    unit("ft", "foot", "feet", true),
    unit("yd", "yard", "yards", true),
    unit("in", "inch", "inches", false),
    unit("kg", "kilogram", "kilograms", true),
    unit("mg", "milligram", "milligrams", true),
    unit("µg", "microgram", "micrograms", true),
    unit("mcg", "microgram", "micrograms", true),
    unit("g", "gram", "grams", true),
    unit("lbs", "pound", "pounds", true),
    unit("lb", "pound", "pounds", true),
    unit("oz", "ounce", "ounces", true),
    unit("ml", "milliliter", "milliliters", true),
    unit("mL", "milliliter", "milliliters", true),
    unit("L", "liter", "liters", true),
    unit("l", "liter", "liters", false),
    unit("gal", "gallon", "gallons", true),
    unit("KB", "kilobyte", "kilobytes", true),
    unit("kB", "kilobyte", "kilobytes", true),
    unit("MB", "megabyte", "megabytes", true),
    unit("GB", "gigabyte", "gigabytes", true),
    unit("TB", "terabyte", "terabytes", true),
    unit("PB", "petabyte", "petabytes", true),
    unit("Hz", "hertz", "hertz", true),
    unit("kHz", "kilohertz", "kilohertz", true),
    unit("MHz", "megahertz", "megahertz", true),
    unit("GHz", "gigahertz", "gigahertz", true),
    unit("kW", "kilowatt", "kilowatts", true),
    unit("MW", "megawatt", "megawatts", true),
    unit("W", "watt", "watts", false),
    unit("mV", "millivolt", "millivolts", true),
    unit("V", "volt", "volts", true),
    unit("ms", "millisecond", "milliseconds", true),
    unit("sec", "second", "seconds", true),
    unit("secs", "second", "seconds", true),
    unit("min", "minute", "minutes", true),
    unit("mins", "minute", "minutes", true),
    unit("hr", "hour", "hours", true),
    unit("hrs", "hour", "hours", true),
    unit("h", "hour", "hours", false),
    unit("px", "pixel", "pixels", true),
    unit("fps", "frame per second", "frames per second", true),
    unit("x", "times", "times", false),
];

/// How an abbreviation is expanded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AbbrKind {
    /// A title before a name ("Mr." "Mrs." "Prof."): expanded with its period, or without one when a
    /// capitalized word follows ("Mr Smith"). The period is consumed.
    Title,
    /// A title only read before a capitalized word ("Sen." "Gov." "Mt."); needs its period.
    TitleBeforeName,
    /// A word-final abbreviation ("Jr." "Inc." "etc."): its period is kept when it ends the sentence.
    Suffix,
    /// An inline abbreviation ("vs." "approx."): its period is always consumed.
    Inline,
    /// Only before a number ("No. 5" -> "number five"); needs its period.
    BeforeNumber,
}

/// An abbreviation.
#[derive(Debug)]
pub(super) struct Abbr {
    /// The abbreviation without its period, in its canonical case. Lower-case entries also match
    /// with a capital first letter ("Etc."); `BeforeNumber` entries match in any case.
    pub word: &'static str,
    pub expansion: &'static str,
    pub kind: AbbrKind,
    /// Whether the abbreviation is also expanded without a period ("vs", "Jr").
    pub bare: bool,
}

const fn abbr(word: &'static str, expansion: &'static str, kind: AbbrKind, bare: bool) -> Abbr {
    Abbr { word, expansion, kind, bare }
}

/// Abbreviations ("Dr." and "St." are handled separately: Doctor/Drive, Saint/Street).
pub(super) const ABBREVIATIONS: &[Abbr] = &[
    abbr("Mr", "Mister", AbbrKind::Title, true),
    abbr("Mrs", "Missus", AbbrKind::Title, true),
    abbr("Ms", "Miz", AbbrKind::Title, true),
    abbr("Prof", "Professor", AbbrKind::Title, true),
    abbr("Capt", "Captain", AbbrKind::TitleBeforeName, false),
    abbr("Lt", "Lieutenant", AbbrKind::TitleBeforeName, false),
    abbr("Sgt", "Sergeant", AbbrKind::TitleBeforeName, false),
    abbr("Col", "Colonel", AbbrKind::TitleBeforeName, false),
    abbr("Gen", "General", AbbrKind::TitleBeforeName, false),
    abbr("Sen", "Senator", AbbrKind::TitleBeforeName, false),
    abbr("Rep", "Representative", AbbrKind::TitleBeforeName, false),
    abbr("Gov", "Governor", AbbrKind::TitleBeforeName, false),
    abbr("Pres", "President", AbbrKind::TitleBeforeName, false),
    abbr("Rev", "Reverend", AbbrKind::TitleBeforeName, false),
    abbr("Hon", "Honorable", AbbrKind::TitleBeforeName, false),
    abbr("Mt", "Mount", AbbrKind::TitleBeforeName, false),
    abbr("Ft", "Fort", AbbrKind::TitleBeforeName, false),
    abbr("Jr", "Junior", AbbrKind::Suffix, true),
    abbr("Sr", "Senior", AbbrKind::Suffix, true),
    abbr("Inc", "Incorporated", AbbrKind::Suffix, true),
    abbr("Ltd", "Limited", AbbrKind::Suffix, true),
    abbr("Co", "Company", AbbrKind::Suffix, false),
    abbr("Corp", "Corporation", AbbrKind::Suffix, true),
    abbr("Ave", "Avenue", AbbrKind::Suffix, false),
    abbr("Blvd", "Boulevard", AbbrKind::Suffix, true),
    abbr("Rd", "Road", AbbrKind::Suffix, true),
    abbr("Hwy", "Highway", AbbrKind::Suffix, true),
    abbr("Ln", "Lane", AbbrKind::Suffix, false),
    abbr("Bros", "Brothers", AbbrKind::Suffix, true),
    abbr("Dept", "Department", AbbrKind::Suffix, true),
    abbr("Univ", "University", AbbrKind::Suffix, false),
    abbr("Apt", "Apartment", AbbrKind::Suffix, false),
    abbr("etc", "et cetera", AbbrKind::Suffix, true),
    abbr("Mon", "Monday", AbbrKind::Suffix, false),
    abbr("Tue", "Tuesday", AbbrKind::Suffix, false),
    abbr("Tues", "Tuesday", AbbrKind::Suffix, false),
    abbr("Wed", "Wednesday", AbbrKind::Suffix, false),
    abbr("Thu", "Thursday", AbbrKind::Suffix, false),
    abbr("Thur", "Thursday", AbbrKind::Suffix, false),
    abbr("Thurs", "Thursday", AbbrKind::Suffix, false),
    abbr("Fri", "Friday", AbbrKind::Suffix, false),
    abbr("Sat", "Saturday", AbbrKind::Suffix, false),
    abbr("vs", "versus", AbbrKind::Inline, true),
    abbr("approx", "approximately", AbbrKind::Inline, true),
    abbr("incl", "including", AbbrKind::Inline, false),
    abbr("misc", "miscellaneous", AbbrKind::Inline, false),
    abbr("avg", "average", AbbrKind::Inline, false),
    abbr("cf", "compare", AbbrKind::Inline, false),
    abbr("no", "number", AbbrKind::BeforeNumber, false),
    abbr("nos", "numbers", AbbrKind::BeforeNumber, false),
    abbr("vol", "volume", AbbrKind::BeforeNumber, false),
    abbr("fig", "figure", AbbrKind::BeforeNumber, false),
    abbr("ch", "chapter", AbbrKind::BeforeNumber, false),
    abbr("sec", "section", AbbrKind::BeforeNumber, false),
    abbr("pg", "page", AbbrKind::BeforeNumber, false),
    abbr("pp", "pages", AbbrKind::BeforeNumber, false),
    abbr("p", "page", AbbrKind::BeforeNumber, false),
    abbr("ca", "circa", AbbrKind::BeforeNumber, false),
];

/// Month abbreviations (capitalized), with the month number.
pub(super) const MONTH_ABBREVIATIONS: &[(&str, u64)] = &[
    ("Jan", 1),
    ("Feb", 2),
    ("Mar", 3),
    ("Apr", 4),
    ("Jun", 6),
    ("Jul", 7),
    ("Aug", 8),
    ("Sep", 9),
    ("Sept", 9),
    ("Oct", 10),
    ("Nov", 11),
    ("Dec", 12),
];

/// Top-level domains that make a bare word like "example.com" a domain name. Lower case only;
/// TLDs that are common English words or file extensions ("in", "it", "me", "md", "rs") are left out.
pub(super) const BARE_DOMAIN_TLDS: &[&str] = &[
    "com", "org", "net", "edu", "gov", "mil", "io", "ai", "co", "dev", "app", "xyz", "info", "biz", "tech",
    "cloud", "us", "uk", "ca", "de", "fr", "eu", "jp", "tv", "fm", "ly", "gg", "nz", "au",
];

/// Two-letter top-level domains that are spelled out ("example.io" -> "example dot I-O").
pub(super) const SPELLED_TLDS: &[&str] =
    &["io", "ai", "uk", "us", "tv", "fm", "ly", "gg", "de", "fr", "eu", "jp", "ca", "nz", "au"];

/// Vulgar fraction characters.
pub(super) const VULGAR_FRACTIONS: &[(char, u64, u64)] = &[
    ('½', 1, 2),
    ('⅓', 1, 3),
    ('⅔', 2, 3),
    ('¼', 1, 4),
    ('¾', 3, 4),
    ('⅕', 1, 5),
    ('⅖', 2, 5),
    ('⅗', 3, 5),
    ('⅘', 4, 5),
    ('⅙', 1, 6),
    ('⅚', 5, 6),
    ('⅛', 1, 8),
    ('⅜', 3, 8),
    ('⅝', 5, 8),
    ('⅞', 7, 8),
];

/// Spoken names of symbols inside URLs and e-mail addresses.
pub(super) fn url_symbol(c: char) -> Option<&'static str> {
    Some(match c {
        '.' => "dot",
        '/' => "slash",
        '-' => "dash",
        '_' => "underscore",
        '@' => "at",
        ':' => "colon",
        '?' => "question mark",
        '=' => "equals",
        '&' => "and",
        '#' => "hash",
        '~' => "tilde",
        '%' => "percent",
        '+' => "plus",
        _ => return None,
    })
}
