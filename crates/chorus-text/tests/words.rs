//! Word timestamps against the real espeak-ng: the tokens as written by default, the normalized words on request.
#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

use std::path::PathBuf;
use std::sync::Arc;

use chorus_text::{EspeakConfig, Frontend, FrontendConfig, PhonemeIdMap, Phonemizer, TextInput};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn frontend() -> (Frontend, Arc<PhonemeIdMap>) {
    let runtime = root().join("runtime");
    assert!(runtime.join("espeak-ng").is_dir(), "run scripts/setup first: {} is missing", runtime.display());
    let phonemizer = Phonemizer::start(&EspeakConfig::discover(&runtime), "en-us").expect("espeak-ng starts");
    let path = root().join("models/en_US-joe-medium/en_US-joe-medium.onnx.json");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("voice")).unwrap();
    let ids = Arc::new(PhonemeIdMap::from_json(&json["phoneme_id_map"]).unwrap());
    (Frontend::new(phonemizer, FrontendConfig::default()), ids)
}

fn words(frontend: &Frontend, ids: &Arc<PhonemeIdMap>, input: TextInput<'_>) -> Vec<String> {
    let chunks: Vec<_> = frontend.chunks(input, Arc::clone(ids)).unwrap().collect::<Result<_, _>>().unwrap();
    let mut out = Vec::new();
    for c in &chunks {
        // Every phoneme of a word points at a word of its chunk, and every word is timed.
        assert!(c.slots.iter().all(|s| s.word.is_none_or(|w| w < c.words.len())));
        let durations = vec![1.0f32; c.ids.len()];
        let (w, _) = c.timestamps(&durations, 0.01, 0.0);
        assert_eq!(w.words.len(), c.words.len());
        out.extend(w.words);
    }
    out
}

#[test]
fn tokens_as_written_or_normalized_words() {
    let (frontend, ids) = frontend();
    let text = "It costs $12.50, doesn't it? \"Yes\" — Dr. Smith said so.";
    let written = words(&frontend, &ids, TextInput::new(text, true, "en-us"));
    assert_eq!(written, text.split_whitespace().collect::<Vec<_>>());

    let normalized =
        words(&frontend, &ids, TextInput { normalized_words: true, ..TextInput::new(text, true, "en-us") });
    let joined = normalized.join(" ").to_lowercase();
    for expected in ["twelve", "dollars", "fifty", "cents", "doctor"] {
        assert!(joined.contains(expected), "{expected} missing from {normalized:?}");
    }
    assert!(!joined.contains('$') && !joined.contains("dr."), "{normalized:?}");
}
