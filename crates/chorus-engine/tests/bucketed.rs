//! Shape buckets on the CPU with the bundled voice: a bucketed pass (ids padded to a bucket, the decoder run on a
//! bucketed frame count, items padded to a batch bucket) gives each item exactly the durations and the audio length
//! of its unbucketed pass, and audio within float rounding of it.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use chorus_engine::{
    BucketedPiper, Device, Model, ModelOutput, PiperModel, PiperVoice, Scales, ShapeBuckets,
    discover_library, environment,
};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn voice() -> PiperVoice {
    let models = root().join("models");
    assert!(models.is_dir(), "run scripts/setup first (models/ is missing)");
    let voice = PiperVoice::discover(&models).unwrap().into_iter().next().unwrap();
    assert!(voice.split.is_some(), "run scripts/setup first (the split graph is missing)");
    voice
}

fn env() -> ort::environment::Environment {
    environment(&discover_library(&root().join("runtime"))).unwrap()
}

/// Noise off: a pass is deterministic, so a bucketed item can be compared with its unbucketed pass.
const QUIET: Scales = Scales { noise_scale: 0.0, length_scale: 1.0, noise_w: 0.0 };

fn ids(phonemes: impl IntoIterator<Item = i64>) -> Vec<i64> {
    let mut ids = vec![1i64];
    for p in phonemes {
        ids.extend([p, 0]);
    }
    ids.push(2);
    ids
}

/// Items of 11 to 183 ids: every one pads to a bucket of its own.
fn items() -> Vec<Vec<i64>> {
    vec![
        ids([20, 21, 22, 23]),
        ids((14..40).chain(14..20)),
        ids((14..30).chain(30..44).chain(14..24)),
        ids((14..44).chain(14..44).chain(14..44)),
    ]
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Checks every bucketed output against the item's unbucketed pass: the same durations and length exactly, and
/// audio within `1e-3` of full scale (measured: at most about 1.3e-4). Returns the largest difference.
fn assert_matches(unbucketed: &mut PiperModel, items: &[Vec<i64>], bucketed: &[ModelOutput]) -> f32 {
    assert_eq!(bucketed.len(), items.len());
    let mut worst = 0.0f32;
    for (i, (item, out)) in items.iter().zip(bucketed).enumerate() {
        let single = unbucketed.infer(item, QUIET).unwrap();
        assert_eq!(out.durations, single.durations, "item {i}: durations (so timestamps) differ");
        assert_eq!(out.audio.len(), single.audio.len(), "item {i}: audio length differs");
        let diff = max_diff(&out.audio, &single.audio);
        assert!(diff < 1e-3, "item {i}: bucketed audio differs from its unbucketed pass by {diff}");
        worst = worst.max(diff);
    }
    worst
}

#[test]
fn a_bucketed_item_has_its_unbucketed_durations_and_length_and_nearly_its_audio() {
    let env = env();
    let mut plain = PiperModel::load(&env, &voice(), 1, Device::Cpu).unwrap();
    let mut model =
        BucketedPiper::load(&env, &voice(), 1, Device::Cpu, ShapeBuckets::defaults(4), false, 1).unwrap();
    let items = items();
    // One at a time: every item padded to its own id and frame buckets.
    let singles: Vec<ModelOutput> = items.iter().map(|ids| model.infer(ids, QUIET).unwrap()).collect();
    let alone = assert_matches(&mut plain, &items, &singles);
    // Together: padded to the longest item's id bucket and to a batch of 4, the decoder on each frame bucket.
    let refs: Vec<&[i64]> = items.iter().map(Vec::as_slice).collect();
    let together = assert_matches(&mut plain, &items, &model.infer_batch(&refs, QUIET).unwrap());
    // Three items in a batch of four: the fourth row is a copy, its audio is dropped.
    let three = assert_matches(&mut plain, &items[..3], &model.infer_batch(&refs[..3], QUIET).unwrap());
    println!(
        "largest difference from the unbucketed pass: alone {alone:.2e}, batched {together:.2e}, {three:.2e}"
    );
}

#[test]
fn decoder_passes_split_at_the_frame_rows_limit_and_overlong_items_run_at_their_own_shape() {
    let env = env();
    let mut plain = PiperModel::load(&env, &voice(), 1, Device::Cpu).unwrap();
    // At most 512 frames x items per decoder pass: the longest item (about 440 frames) goes alone, the others in
    // passes of their own; ids above 64 and frames above 256 are beyond the lists.
    let buckets = ShapeBuckets::new(vec![32, 64], vec![128, 256], 4, 512).unwrap();
    let mut model = BucketedPiper::load(&env, &voice(), 1, Device::Cpu, buckets, false, 1).unwrap();
    let items = items();
    let refs: Vec<&[i64]> = items.iter().map(Vec::as_slice).collect();
    assert_matches(&mut plain, &items, &model.infer_batch(&refs, QUIET).unwrap());
}

#[test]
fn pinned_sessions_run_every_shape_at_warm_up_and_give_the_same_audio() {
    let env = env();
    let mut plain = PiperModel::load(&env, &voice(), 1, Device::Cpu).unwrap();
    let buckets = ShapeBuckets::new(vec![64], vec![256], 2, 4096).unwrap();
    let mut model = BucketedPiper::load(&env, &voice(), 1, Device::Cpu, buckets, true, 2).unwrap();
    let warm = ids(14..40);
    // Encoder (1 or 2 items x 64 ids) and decoder (1 or 2 items x 256 frames).
    assert_eq!(model.warm_shapes(&warm, QUIET).unwrap(), 4);
    let items = vec![ids([20, 21, 22, 23]), ids(14..30)];
    let refs: Vec<&[i64]> = items.iter().map(Vec::as_slice).collect();
    assert_matches(&mut plain, &items, &model.infer_batch(&refs, QUIET).unwrap());
    assert_matches(&mut plain, &items[..1], &[model.infer(&items[0], QUIET).unwrap()]);
}

#[test]
fn a_voice_without_the_split_graph_cannot_be_bucketed() {
    let mut voice = voice();
    voice.split = None;
    let err = BucketedPiper::load(&env(), &voice, 1, Device::Cpu, ShapeBuckets::defaults(1), false, 1)
        .unwrap_err()
        .to_string();
    assert!(err.contains("split_piper.py"), "{err}");
}

#[test]
fn an_engine_on_shape_buckets_gives_the_same_timestamps_and_lengths() {
    use chorus_engine::{Engine, EngineConfig, SynthesisRequest};
    let load = |buckets: bool| {
        let mut config = EngineConfig::new(root().join("models"), root().join("runtime"));
        config.sessions_per_voice = 1;
        config.intra_threads = 1;
        config.shape_buckets = buckets.then(|| ShapeBuckets::defaults(1));
        // Chunks are sized against each stream's slack, which depends on the clock: with no slack share every chunk
        // after the opening takes the least (about 20 phonemes), so both engines cut the text alike.
        config.policy =
            chorus_engine::scheduler::ChunkPolicy { max_pass: std::time::Duration::ZERO, slack_share: 0.0 };
        Engine::load(&config).unwrap()
    };
    let (plain, bucketed) = (load(false), load(true));
    let text = "Shape buckets pad every pass to a few shapes. The timestamps, like the audio's length, stay exactly \
                those of the unbucketed pass, chunk after chunk, until the very last word.";
    let run = |engine: &Engine| {
        let voice = engine.voice_ids().into_iter().next().unwrap();
        let mut r = SynthesisRequest::new(text, voice);
        r.params.noise_scale = Some(0.0);
        r.params.noise_w = Some(0.0);
        engine.synthesize(&r).unwrap().map(Result::unwrap).collect::<Vec<_>>()
    };
    let (a, b) = (run(&plain), run(&bucketed));
    assert!(a.len() > 2, "several chunks: {}", a.len());
    assert_eq!(a.len(), b.len(), "chunk count");
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert_eq!(x.samples.len(), y.samples.len(), "chunk {i}: length");
        assert_eq!(x.start, y.start, "chunk {i}: start");
        assert_eq!(x.words, y.words, "chunk {i}: word timestamps");
        assert_eq!(x.phonemes, y.phonemes, "chunk {i}: phoneme timestamps");
        let diff = max_diff(&x.samples, &y.samples);
        assert!(diff < 1e-3, "chunk {i}: audio differs by {diff}");
    }
}
