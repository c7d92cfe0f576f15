//! Batched forward passes (what a GPU runs) give each chunk the audio its own pass gives, and a GPU that cannot be
//! used is an error, never a silent fallback to the CPU. These run on the CPU with the bundled voice.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use chorus_engine::{
    Device, Engine, EngineConfig, Model, PiperModel, PiperVoice, Scales, SynthesisRequest, discover_library,
    environment,
};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn voice() -> PiperVoice {
    let models = root().join("models");
    assert!(models.is_dir(), "run scripts/setup first (models/ is missing)");
    PiperVoice::discover(&models).unwrap().into_iter().next().unwrap()
}

/// Noise off: a pass is deterministic, so a batched item can be compared with its single run.
const QUIET: Scales = Scales { noise_scale: 0.0, length_scale: 1.0, noise_w: 0.0 };

fn ids(phonemes: &[i64]) -> Vec<i64> {
    let mut ids = vec![1i64];
    for p in phonemes {
        ids.extend([*p, 0]);
    }
    ids.push(2);
    ids
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn each_item_of_a_batch_matches_its_single_pass_and_is_cut_to_its_own_length() {
    let env = environment(&discover_library(&root().join("runtime"))).unwrap();
    let mut model = PiperModel::load(&env, &voice(), 1, Device::Cpu).unwrap();
    let items: Vec<Vec<i64>> = vec![
        ids(&(14..40).collect::<Vec<_>>()),
        ids(&[20, 21, 22, 23]),
        ids(&(14..30).chain(30..44).chain(14..24).collect::<Vec<_>>()),
    ];
    let refs: Vec<&[i64]> = items.iter().map(Vec::as_slice).collect();
    let batch = model.infer_batch(&refs, QUIET).unwrap();
    assert_eq!(batch.len(), items.len());
    let lengths: Vec<usize> = batch.iter().map(|o| o.audio.len()).collect();
    for (i, item) in items.iter().enumerate() {
        let single = model.infer(item, QUIET).unwrap();
        assert_eq!(batch[i].durations.len(), item.len(), "item {i}: one duration per id");
        assert_eq!(batch[i].audio.len(), single.audio.len(), "item {i}: cut to its own length");
        let diff = max_diff(&batch[i].audio, &single.audio);
        assert!(diff < 1e-3, "item {i}: batched audio differs from its single pass by {diff}");
    }
    // The short item is not padded to the long one's length.
    assert!(lengths[1] * 3 < lengths[2], "lengths {lengths:?}");
}

#[test]
fn a_gpu_that_cannot_be_used_is_an_error_not_a_cpu_fallback() {
    // Here there is no GPU and the library is the CPU build: with or without the `cuda` feature, loading on CUDA
    // must fail and say so.
    let env = environment(&discover_library(&root().join("runtime"))).unwrap();
    let err = PiperModel::load(&env, &voice(), 1, Device::Cuda { id: 0, conv_search: Default::default() })
        .unwrap_err()
        .to_string();
    assert!(err.contains("CUDA"), "{err}");
}

#[test]
fn concurrent_streams_batched_together_get_the_audio_they_get_alone() {
    let mut config = EngineConfig::new(root().join("models"), root().join("runtime"));
    config.sessions_per_voice = 1;
    config.intra_threads = 2;
    config.max_batch = 4;
    let engine = Engine::load(&config).unwrap();
    let voice = engine.voice_ids().into_iter().next().unwrap();
    let texts = [
        "Batching runs the chunks that are due together in one pass.",
        "Short one.",
        "Each stream still gets its own audio, cut to its own length, and nobody else's.",
        "The fourth stream asks a question, does it not?",
    ];
    let request = |text: &str| {
        let mut r = SynthesisRequest::new(text, voice.clone());
        r.params.noise_scale = Some(0.0);
        r.params.noise_w = Some(0.0);
        r
    };
    // Each stream's audio, and its first chunk's pass time (the whole pass's, shared by a batch's chunks).
    let collect = |engine: &Engine, text: &str| -> (Vec<f32>, f64) {
        let chunks: Vec<_> = engine.synthesize(&request(text)).unwrap().map(Result::unwrap).collect();
        (chunks.iter().flat_map(|c| c.samples.clone()).collect(), chunks[0].inference_seconds)
    };
    let together: Vec<(Vec<f32>, f64)> = std::thread::scope(|s| {
        let handles: Vec<_> = texts.iter().map(|t| s.spawn(|| collect(&engine, t))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // One thread, four streams at once: first chunks queued behind the first pass share the next one.
    let mut passes: Vec<f64> = together.iter().map(|(_, seconds)| *seconds).collect();
    passes.sort_by(f64::total_cmp);
    passes.dedup();
    assert!(passes.len() < texts.len(), "no two first chunks shared a pass: {passes:?}");
    for (text, (audio, _)) in texts.iter().zip(&together) {
        let (alone, _) = collect(&engine, text);
        assert_eq!(audio.len(), alone.len(), "{text:?}: length");
        let diff = max_diff(audio, &alone);
        assert!(diff < 1e-3, "{text:?}: differs by {diff} from its run alone");
    }
}
