//! The front end against the real espeak-ng (the Piper fork installed by `scripts/setup`) and the real voice's
//! phoneme map: ids must match what the reference Python Piper (`piper-tts` 1.8.0) gives for the same sentences.
#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

use std::path::PathBuf;
use std::sync::Arc;

use chorus_text::{EspeakConfig, Frontend, FrontendConfig, PhonemeIdMap, Phonemizer, TextError, TextInput};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn phonemizer() -> Phonemizer {
    let runtime = root().join("runtime");
    assert!(runtime.join("espeak-ng").is_dir(), "run scripts/setup first: {} is missing", runtime.display());
    Phonemizer::start(&EspeakConfig::discover(&runtime), "en-us").expect("espeak-ng starts")
}

fn id_map() -> Arc<PhonemeIdMap> {
    let path = root().join("models/en_US-joe-medium/en_US-joe-medium.onnx.json");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("voice config")).unwrap();
    Arc::new(PhonemeIdMap::from_json(&json["phoneme_id_map"]).unwrap())
}

/// Piper's own chunking: one chunk per sentence.
fn per_sentence() -> FrontendConfig {
    FrontendConfig {
        first_chunk_min_phonemes: usize::MAX,
        first_chunk_max_phonemes: 10_000,
        ..FrontendConfig::default()
    }
}

fn input(text: &str) -> TextInput<'_> {
    TextInput::new(text, false, "en-us")
}

#[test]
fn ids_match_the_reference_piper() {
    // (text, phonemes, ids) as printed by piper-tts 1.8.0: PiperVoice.phonemize + phonemes_to_ids.
    let cases: [(&str, &str, &[i64]); 4] = [
        (
            "Hello world.",
            "həlˈoʊ wˈɜːld.",
            &[
                1, 0, 20, 0, 59, 0, 24, 0, 120, 0, 27, 0, 100, 0, 3, 0, 35, 0, 120, 0, 62, 0, 122, 0, 24, 0,
                17, 0, 10, 0, 2,
            ],
        ),
        (
            "The quick brown fox jumps over the lazy dog!",
            "ðə kwˈɪk bɹˈaʊn fˈɑːks dʒˈʌmps ˌoʊvɚ ðə lˈeɪzi dˈɑːɡ!",
            &[
                1, 0, 41, 0, 59, 0, 3, 0, 23, 0, 35, 0, 120, 0, 74, 0, 23, 0, 3, 0, 15, 0, 88, 0, 120, 0, 14,
                0, 100, 0, 26, 0, 3, 0, 19, 0, 120, 0, 51, 0, 122, 0, 23, 0, 31, 0, 3, 0, 17, 0, 108, 0, 120,
                0, 102, 0, 25, 0, 28, 0, 31, 0, 3, 0, 121, 0, 27, 0, 100, 0, 34, 0, 60, 0, 3, 0, 41, 0, 59,
                0, 3, 0, 24, 0, 120, 0, 18, 0, 74, 0, 38, 0, 21, 0, 3, 0, 17, 0, 120, 0, 51, 0, 122, 0, 66,
                0, 4, 0, 2,
            ],
        ),
        (
            "Is it twenty-five past three, or not?",
            "ɪz ɪt twˈɛntifˈaɪv pˈæst θɹˈiː, ɔːɹ nˈɑːt?",
            &[
                1, 0, 74, 0, 38, 0, 3, 0, 74, 0, 32, 0, 3, 0, 32, 0, 35, 0, 120, 0, 61, 0, 26, 0, 32, 0, 21,
                0, 19, 0, 120, 0, 14, 0, 74, 0, 34, 0, 3, 0, 28, 0, 120, 0, 39, 0, 31, 0, 32, 0, 3, 0, 126,
                0, 88, 0, 120, 0, 21, 0, 122, 0, 8, 0, 3, 0, 54, 0, 122, 0, 88, 0, 3, 0, 26, 0, 120, 0, 51,
                0, 122, 0, 32, 0, 13, 0, 2,
            ],
        ),
        (
            "She said: yes; we'll see.",
            "ʃiː sˈɛd: jˈɛs; wiːl sˈiː.",
            &[
                1, 0, 96, 0, 21, 0, 122, 0, 3, 0, 31, 0, 120, 0, 61, 0, 17, 0, 11, 0, 3, 0, 22, 0, 120, 0,
                61, 0, 31, 0, 12, 0, 3, 0, 35, 0, 21, 0, 122, 0, 24, 0, 3, 0, 31, 0, 120, 0, 21, 0, 122, 0,
                10, 0, 2,
            ],
        ),
    ];
    let frontend = Frontend::new(phonemizer(), per_sentence());
    let ids = id_map();
    for (text, phonemes, expected) in cases {
        let chunks: Vec<_> =
            frontend.chunks(input(text), Arc::clone(&ids)).unwrap().collect::<Result<_, _>>().unwrap();
        assert_eq!(chunks.len(), 1, "{text}");
        assert_eq!(chunks[0].phoneme_string().trim_end(), phonemes, "{text}");
        assert_eq!(chunks[0].ids, expected, "{text}");
    }
}

#[test]
fn first_chunk_is_short_and_chunks_tile_the_text() {
    let frontend = Frontend::new(phonemizer(), FrontendConfig::default());
    let text = "Well, that was a surprisingly long meeting about the quarterly budget and the roadmap for next \
                year. Anyway, let's go. We have three more items on the agenda before lunch, and one after it.";
    let chunks: Vec<_> = frontend.chunks(input(text), id_map()).unwrap().collect::<Result<_, _>>().unwrap();
    assert!(chunks.len() >= 3, "{} chunks", chunks.len());
    // The first chunk stops at the first clause ("Well,") instead of waiting for the whole sentence.
    assert!(chunks[0].slots.len() < 20, "first chunk: {}", chunks[0].phoneme_string());
    assert_eq!(chunks[0].words.iter().map(|w| w.text.as_str()).collect::<Vec<_>>(), ["Well,"]);
    // Every word of the text appears exactly once, in order, across the chunks.
    let words: Vec<String> = chunks.iter().flat_map(|c| c.words.iter().map(|w| w.text.clone())).collect();
    let expected: Vec<String> = chorus_text::tokenize(text).into_iter().map(|t| t.text).collect();
    assert_eq!(words, expected);
    for (i, c) in chunks.iter().enumerate() {
        assert_eq!(c.index, i);
        assert!(c.slots.len() <= FrontendConfig::default().max_chunk_phonemes + 2);
        // Each phoneme of a word points at a word of its own chunk.
        assert!(c.slots.iter().all(|s| s.word.is_none_or(|w| w < c.words.len())));
    }
}

#[test]
fn a_long_first_clause_is_split_at_a_word() {
    let frontend = Frontend::new(phonemizer(), FrontendConfig::default());
    let text = "This sentence has no commas at all and keeps on going for quite a while before it finally ends \
                somewhere around here";
    let chunks: Vec<_> = frontend.chunks(input(text), id_map()).unwrap().collect::<Result<_, _>>().unwrap();
    assert!(chunks.len() >= 2);
    assert!(chunks[0].slots.len() <= FrontendConfig::default().first_chunk_max_phonemes + 1);
    let words: Vec<String> = chunks.iter().flat_map(|c| c.words.iter().map(|w| w.text.clone())).collect();
    assert_eq!(words.len(), text.split_whitespace().count());
}

#[test]
fn bad_text_is_rejected_before_phonemization() {
    let frontend = Frontend::new(phonemizer(), FrontendConfig::default());
    let ids = id_map();
    let err = |t: &str| frontend.chunks(input(t), Arc::clone(&ids)).err();
    assert_eq!(err(""), Some(TextError::Empty));
    assert_eq!(err(" \n\t "), Some(TextError::Empty));
    assert_eq!(err("?!... ,;"), Some(TextError::NothingToSpeak));
    let long = "a ".repeat(600_000);
    assert!(matches!(err(&long), Some(TextError::TooLong { max: 50_000, .. })));
}

#[test]
fn concurrent_requests_get_their_own_phonemes() {
    // libespeak-ng is not thread-safe: the phonemizer thread must keep requests from many threads apart.
    let frontend = Frontend::new(phonemizer(), per_sentence());
    let ids = id_map();
    let texts = ["Hello world.", "The quick brown fox jumps over the lazy dog!", "She said: yes; we'll see."];
    let expected: Vec<String> = texts
        .iter()
        .map(|t| {
            frontend.chunks(input(t), Arc::clone(&ids)).unwrap().next().unwrap().unwrap().phoneme_string()
        })
        .collect();
    std::thread::scope(|s| {
        for worker in 0..4 {
            let (frontend, ids, expected) = (&frontend, &ids, &expected);
            s.spawn(move || {
                for i in 0..60 {
                    let k = (i + worker) % texts.len();
                    let chunk =
                        frontend.chunks(input(texts[k]), Arc::clone(ids)).unwrap().next().unwrap().unwrap();
                    assert_eq!(chunk.phoneme_string(), expected[k]);
                }
            });
        }
    });
}

#[test]
fn unknown_espeak_voice_is_an_error() {
    let p = phonemizer();
    assert_eq!(
        p.phonemize("xx-nonexistent", "hello").err(),
        Some(TextError::UnknownEspeakVoice("xx-nonexistent".into()))
    );
    // The thread survives and serves the next request.
    assert!(!p.phonemize("en-us", "hello").unwrap().is_empty());
}

#[test]
fn the_opening_chunk_is_a_few_words_whatever_the_first_clause_and_later_chunks_follow_their_budget() {
    use chorus_text::ChunkBudget;
    let frontend = Frontend::new(phonemizer(), FrontendConfig::default());
    let max = FrontendConfig::default().first_chunk_max_phonemes;
    let long = "The quarterly planning meeting that everyone in the department had been dreading for weeks finally \
                began at nine. It went on until noon, and nobody was happy about that.";
    let short = "Your table for two is ready at seven.";
    let mut opening_lengths = Vec::new();
    for text in [long, short] {
        let mut chunks = frontend.chunks(input(text), id_map()).unwrap();
        let first = chunks.next_within(ChunkBudget::Opening).unwrap().unwrap();
        assert!(first.slots.len() <= max + 1, "{text}: opening {}", first.phoneme_string());
        assert!(first.words.len() >= 2, "{text}: a few words, not one: {}", first.phoneme_string());
        opening_lengths.push(first.slots.len());
        // The rest with a budget of 60 phonemes: no chunk over it (but the one word a chunk always takes), each
        // ending at a sentence end or inside a sentence too long for the budget, and every word once, in order.
        let mut words: Vec<String> = first.words.iter().map(|w| w.text.clone()).collect();
        while let Some(chunk) = chunks.next_within(ChunkBudget::Phonemes(60)).unwrap() {
            assert!(chunk.slots.len() <= 60 + 2, "{}", chunk.phoneme_string());
            words.extend(chunk.words.iter().map(|w| w.text.clone()));
        }
        let expected: Vec<String> = chorus_text::tokenize(text).into_iter().map(|t| t.text).collect();
        assert_eq!(words, expected);
    }
    // The long first clause's opening is no longer than the short sentence's: first audio does not grow with it.
    assert!(opening_lengths[0] <= opening_lengths[1] + 4, "openings {opening_lengths:?}");
    // A large budget takes a whole sentence.
    let mut chunks = frontend.chunks(input(long), id_map()).unwrap();
    chunks.next_within(ChunkBudget::Opening).unwrap();
    let rest = chunks.next_within(ChunkBudget::Phonemes(400)).unwrap().unwrap();
    assert!(rest.words.last().is_some_and(|w| w.text.starts_with("nine")), "{:?}", rest.words.last());
}
