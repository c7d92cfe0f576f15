//! The engine: voices, their model threads, the text front end, and streaming synthesis.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use chorus_proto::{PhonemeTimestamps, PronunciationItem, SynthesisParams, WordTimestamps};
use chorus_text::{
    ChunkBudget, ChunkStream, EspeakConfig, Frontend, FrontendConfig, PhonemeChunk, Phonemizer, TextInput,
};
use crossbeam_channel::Receiver;

use crate::EngineError;
use crate::bucketed::BucketedPiper;
use crate::buckets::{OPENING_FRAMES, OPENING_IDS, ShapeBuckets};
use crate::model::{Model, Scales};
use crate::piper::{PiperModel, PiperVoice};
use crate::pool::{BatchPolicy, JobResult, ModelPool, StreamGuard, ThreadRole, Throughput};
use crate::runtime::Device;
use crate::scheduler::ChunkPolicy;
use crate::{runtime, scheduler};

/// How the engine is loaded.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Directory of voices (`<voice>/<voice>.onnx.json` + graph), as laid out by `scripts/setup`.
    pub models_dir: PathBuf,
    /// Directory of run-time libraries (`onnxruntime/`, `espeak-ng/`), as laid out by `scripts/setup`.
    pub runtime_dir: PathBuf,
    /// Load only these voices (all found when empty).
    pub voices: Vec<String>,
    /// Model threads (sessions) per voice: concurrent forward passes.
    pub sessions_per_voice: usize,
    /// ONNX Runtime intra-op threads per session.
    pub intra_threads: usize,
    /// Where forward passes run.
    pub device: Device,
    /// The most chunks one forward pass takes (1: no batching, the right choice on a CPU).
    pub max_batch: usize,
    pub frontend: FrontendConfig,
    /// How chunks are sized against each stream's slack.
    pub policy: ChunkPolicy,
    /// Intra-op threads of a voice's solo session (0: none): the first model thread runs a chunk on it when no
    /// other thread is computing, so a lone stream uses every core (see [`ModelPool::start`]).
    pub solo_threads: usize,
    /// Shape buckets (`None`: off): every pass padded to a few shapes over the voice's split graph (see
    /// [`crate::buckets`]); a voice without the split graph runs unbucketed, with a warning.
    pub shape_buckets: Option<ShapeBuckets>,
    /// With shape buckets: one ONNX Runtime session per shape, each run at warm-up (what a GPU needs); otherwise
    /// one session per part of the graph.
    pub session_per_shape: bool,
    /// Reserve a voice's first model thread for opening chunks (see [`BatchPolicy::opening_lane`]); only with
    /// batching and two threads or more.
    pub opening_lane: bool,
}

impl EngineConfig {
    /// Defaults for `models_dir` and `runtime_dir`: one session using every core (lowest single-stream latency).
    pub fn new(models_dir: PathBuf, runtime_dir: PathBuf) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Self {
            models_dir,
            runtime_dir,
            voices: Vec::new(),
            sessions_per_voice: 1,
            intra_threads: cores,
            device: Device::Cpu,
            max_batch: 1,
            frontend: FrontendConfig::default(),
            policy: ChunkPolicy::default(),
            solo_threads: 0,
            shape_buckets: None,
            session_per_shape: false,
            opening_lane: false,
        }
    }
}

struct LoadedVoice {
    voice: PiperVoice,
    pool: ModelPool,
    speed: SpeedCurve,
}

/// How a voice's duration responds to `length_scale`: `duration(ls) / duration(1) = fixed + (1 - fixed) * ls`.
///
/// VITS rounds every phoneme's duration up to whole frames, so part of the duration does not scale: with the
/// plain `length_scale = 1 / speed`, speed 1.5 gave 0.74 of the duration instead of 0.67 (joe voice, measured).
/// The curve is measured per voice at load time, and [`SpeedCurve::length_scale`] inverts it so that `speed`
/// means what it says.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpeedCurve {
    /// Fraction of the duration that does not scale with `length_scale`.
    pub fixed: f32,
}

impl SpeedCurve {
    /// The `length_scale` that makes speech `speed` times faster than the voice's default.
    pub fn length_scale(&self, default_length_scale: f32, speed: f32) -> f32 {
        let target = 1.0 / speed;
        let ls = (target - self.fixed) / (1.0 - self.fixed);
        ls.max(0.1) * default_length_scale
    }

    /// The warm-up's scales: the voice's defaults with duration noise off, so its length is deterministic.
    fn warmup_scales(default: Scales) -> Scales {
        Scales { noise_w: 0.0, ..default }
    }

    /// Measures the curve: the warm-up ran `ids` at `length_scale` 1 (`pool.warmup_frames()`); one more run at 0.5.
    /// That run, on a warm session, also gives one thread's real-time factor alone (returned second).
    fn measure(pool: &ModelPool, ids: &[i64], default: Scales) -> Result<(Self, f64), EngineError> {
        let scales = Scales { length_scale: default.length_scale * 0.5, ..Self::warmup_scales(default) };
        let rx = pool.submit(
            ids.to_vec(),
            scales,
            Arc::new(AtomicBool::new(false)),
            Instant::now(),
            Duration::ZERO,
        )?;
        let (out, seconds) = rx.recv().map_err(|_| EngineError::Shutdown)??;
        let half: f64 = out.durations.iter().map(|d| f64::from(*d)).sum();
        let full = pool.warmup_frames();
        let ratio = if full > 0.0 { half / full } else { 0.5 };
        let fixed = (2.0 * ratio - 1.0).clamp(0.0, 0.6) as f32;
        let audio = out.audio.len() as f64 / f64::from(pool.sample_rate());
        let rtf = if audio > 0.0 { seconds / audio } else { f64::INFINITY };
        Ok((Self { fixed }, rtf))
    }
}

/// Loaded voices ready to synthesize. Shared by reference (or `Arc`) between request handlers.
///
/// Voices can be added ([`Engine::add_voice`]) and removed ([`Engine::remove_voice`]) while the engine serves:
/// a synthesis in progress keeps the sessions it started on until it ends.
pub struct Engine {
    frontend: Frontend,
    voices: RwLock<BTreeMap<String, Arc<LoadedVoice>>>,
    load_seconds: f64,
    /// What [`Engine::add_voice`] builds new sessions with.
    env: ort::environment::Environment,
    shape: PoolShape,
    policy: ChunkPolicy,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("voices", &self.voice_ids()).finish_non_exhaustive()
    }
}

/// One synthesis request.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthesisRequest {
    pub text: String,
    pub voice: String,
    /// Word timestamps name the normalized words instead of the tokens as written (off by default).
    pub normalized_words: bool,
    pub params: SynthesisParams,
    /// Expand numbers, dates, currency... before phonemization (on by default).
    pub normalize: bool,
    /// Pronunciation dictionary entries (text or IPA aliases).
    pub pronunciations: Vec<PronunciationItem>,
    /// Where this request's audio falls in its listener's playback, when it continues a stream (a WebSocket
    /// context's next sentence, the text after a `<break>`): its chunks are then due when the audio before them
    /// has played, and sized against that slack. `None`: a new stream, whose first chunk is due now.
    pub playback: Option<Playback>,
}

/// A listener's playback clock: it started playing at `started` (resuming after any gap) and has `queued` of
/// audio to play from there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Playback {
    pub started: Instant,
    pub queued: Duration,
}

impl Playback {
    /// When the listener has played everything queued.
    pub fn runs_dry_at(&self) -> Instant {
        self.started + self.queued
    }

    /// Audio buffered ahead of the listener at `now` (zero once it ran dry).
    pub fn slack(&self, now: Instant) -> Duration {
        self.runs_dry_at().saturating_duration_since(now)
    }

    /// `audio` more was ready at `now`: queued, after a gap (the listener ran dry before `now`) from `now`.
    pub fn push(&mut self, audio: Duration, now: Instant) {
        let dry = self.runs_dry_at();
        if dry < now {
            *self = Self { started: now, queued: audio };
        } else {
            self.queued += audio;
        }
    }
}

impl SynthesisRequest {
    pub fn new(text: impl Into<String>, voice: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            voice: voice.into(),
            normalized_words: false,
            params: SynthesisParams::default(),
            normalize: true,
            pronunciations: Vec::new(),
            playback: None,
        }
    }
}

/// A chunk of audio with its timestamps.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioChunk {
    /// 0 for the first chunk.
    pub index: usize,
    /// Mono samples at the voice's sample rate, volume applied.
    pub samples: Vec<f32>,
    /// Start of this chunk in the stream, in seconds.
    pub start: f64,
    /// Word timestamps, in seconds from the start of the stream.
    pub words: WordTimestamps,
    /// Phoneme timestamps, in seconds from the start of the stream.
    pub phonemes: PhonemeTimestamps,
    /// Time the forward pass took, in seconds.
    pub inference_seconds: f64,
}

impl Engine {
    /// Starts the phonemizer, loads every voice's sessions in parallel and warms them up.
    pub fn load(config: &EngineConfig) -> Result<Self, EngineError> {
        let started = Instant::now();
        let env = runtime::environment(&runtime::discover_library(&config.runtime_dir))?;
        let mut voices = PiperVoice::discover(&config.models_dir)?;
        if !config.voices.is_empty() {
            voices.retain(|v| config.voices.contains(&v.id));
            if let Some(missing) = config.voices.iter().find(|id| !voices.iter().any(|v| &v.id == *id)) {
                return Err(EngineError::UnknownVoice(missing.clone()));
            }
        }
        if voices.is_empty() {
            return Err(EngineError::VoiceLoad {
                voice: "*".into(),
                message: format!("no voices in {} (run scripts/setup)", config.models_dir.display()),
            });
        }
        let espeak_voice = voices.first().map_or("en-us", |v| v.espeak_voice.as_str());
        let phonemizer = Phonemizer::start(&EspeakConfig::discover(&config.runtime_dir), espeak_voice)?;
        let frontend = Frontend::new(phonemizer, config.frontend);

        // Load voices concurrently: each pool loads its sessions in parallel threads.
        let handles: Vec<_> = voices
            .into_iter()
            .map(|voice| {
                let env = env.clone();
                let frontend = frontend.clone();
                let shape = PoolShape::of(config);
                std::thread::spawn(move || load_voice(&env, &frontend, voice, &shape))
            })
            .collect();
        let mut loaded = BTreeMap::new();
        for h in handles {
            let v = h.join().map_err(|_| EngineError::Runtime("a voice loader panicked".into()))??;
            loaded.insert(v.voice.id.clone(), Arc::new(v));
        }
        let load_seconds = started.elapsed().as_secs_f64();
        tracing::info!(voices = loaded.len(), load_s = format!("{load_seconds:.2}"), "Engine ready.");
        Ok(Self {
            frontend,
            voices: RwLock::new(loaded),
            load_seconds,
            env,
            shape: PoolShape::of(config),
            policy: config.policy,
        })
    }

    /// Loads `voice` into fresh sessions and warms them up, then serves it (replacing a voice of the same id:
    /// syntheses already running on the old sessions finish there). Blocks for the load; call it off the async
    /// runtime. The model threads are the voice's own.
    pub fn add_voice(&self, voice: PiperVoice) -> Result<(), EngineError> {
        let loaded = load_voice(&self.env, &self.frontend, voice, &self.shape)?;
        let id = loaded.voice.id.clone();
        write(&self.voices).insert(id, Arc::new(loaded));
        Ok(())
    }

    /// Stops serving a voice: new syntheses of it fail with [`EngineError::UnknownVoice`]; one in progress
    /// finishes, and the sessions close when the last one ends. `false` if the voice was not loaded.
    pub fn remove_voice(&self, id: &str) -> bool {
        write(&self.voices).remove(id).is_some()
    }

    /// Ids of the loaded voices, sorted.
    pub fn voice_ids(&self) -> Vec<String> {
        read(&self.voices).keys().cloned().collect()
    }

    fn loaded(&self, id: &str) -> Option<Arc<LoadedVoice>> {
        read(&self.voices).get(id).cloned()
    }

    /// How many concurrent streams the engine keeps gap-free, measured at warm-up with every model thread busy
    /// at once (the slowest voice decides): see [`ModelPool::measure`].
    pub fn measured_capacity(&self) -> u32 {
        read(&self.voices).values().map(|v| v.pool.measured_capacity()).min().unwrap_or(1)
    }

    /// The capacity now: the measured one, lowered while streams come close to running dry and raised again
    /// when they have slack (see [`crate::scheduler::CapacityControl`]; the slowest voice decides).
    pub fn capacity(&self) -> u32 {
        read(&self.voices).values().map(|v| v.pool.capacity()).min().unwrap_or(1)
    }

    /// The pool of a voice (its cost model, streams and capacity), for benchmarks and tests.
    pub fn pool(&self, voice: &str) -> Option<ModelPool> {
        self.loaded(voice).map(|v| v.pool.clone())
    }

    /// Seconds the last [`Engine::load`] took (libraries, sessions, warm-up).
    pub fn load_seconds(&self) -> f64 {
        self.load_seconds
    }

    /// The loaded voices, sorted by id.
    pub fn voices(&self) -> Vec<PiperVoice> {
        read(&self.voices).values().map(|v| v.voice.clone()).collect()
    }

    pub fn voice(&self, id: &str) -> Option<PiperVoice> {
        self.loaded(id).map(|v| v.voice.clone())
    }

    pub fn frontend(&self) -> &Frontend {
        &self.frontend
    }

    /// Validates the request, phonemizes its first chunk and queues it: every input error surfaces here, before
    /// any audio. The returned stream yields chunks as they are synthesized; dropping it cancels the rest.
    pub fn synthesize(&self, request: &SynthesisRequest) -> Result<Synthesis, EngineError> {
        let loaded =
            self.loaded(&request.voice).ok_or_else(|| EngineError::UnknownVoice(request.voice.clone()))?;
        request.params.validate()?;
        let voice = &loaded.voice;
        let input = TextInput {
            text: &request.text,
            normalize: request.normalize,
            espeak_voice: &voice.espeak_voice,
            pronunciations: &request.pronunciations,
            normalized_words: request.normalized_words,
        };
        let chunks = self.frontend.chunks(input, Arc::clone(&voice.ids))?;
        let d = voice.default_scales;
        let scales = Scales {
            noise_scale: request.params.noise_scale.unwrap_or(d.noise_scale),
            length_scale: loaded.speed.length_scale(d.length_scale, request.params.speed),
            noise_w: request.params.noise_w.unwrap_or(d.noise_w),
        };
        let mut synthesis = Synthesis {
            chunks,
            _stream: loaded.pool.enter(),
            pool: loaded.pool.clone(),
            scales,
            volume: request.params.volume,
            speed: f64::from(request.params.speed).max(0.1),
            cancelled: Arc::new(AtomicBool::new(false)),
            in_flight: None,
            samples_out: 0,
            playback: request.playback,
            policy: self.policy,
            abort: None,
        };
        match synthesis.submit_next() {
            Some(Ok(first)) => synthesis.in_flight = Some(Ok(first)),
            Some(Err(e)) => return Err(e),
            None => return Err(chorus_text::TextError::NothingToSpeak.into()),
        }
        Ok(synthesis)
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// How a voice's model threads are built.
#[derive(Debug, Clone)]
struct PoolShape {
    sessions: usize,
    intra_threads: usize,
    device: Device,
    max_batch: usize,
    solo_threads: usize,
    buckets: Option<ShapeBuckets>,
    session_per_shape: bool,
    opening_lane: bool,
}

impl PoolShape {
    fn of(config: &EngineConfig) -> Self {
        Self {
            sessions: config.sessions_per_voice,
            intra_threads: config.intra_threads,
            device: config.device,
            max_batch: config.max_batch,
            solo_threads: if config.device.is_gpu() { 0 } else { config.solo_threads },
            buckets: config.shape_buckets.clone(),
            session_per_shape: config.session_per_shape,
            opening_lane: config.opening_lane,
        }
    }
}

/// Starts a voice's model threads, warms them up and measures its speed curve and real-time factor.
fn load_voice(
    env: &ort::environment::Environment,
    frontend: &Frontend,
    voice: PiperVoice,
    shape: &PoolShape,
) -> Result<LoadedVoice, EngineError> {
    let warmup = warmup_ids(frontend, &voice)?;
    let scales = SpeedCurve::warmup_scales(voice.default_scales);
    let v = voice.clone();
    let solo_env = env.clone();
    let env = env.clone();
    let PoolShape { sessions, intra_threads, device, max_batch, solo_threads, .. } = *shape;
    let buckets = match &shape.buckets {
        Some(_) if voice.split.is_none() => {
            tracing::warn!(
                voice = %voice.id,
                "No split graph ({0}.enc.onnx, {0}.dec.onnx): this voice runs without shape buckets \
                 (scripts/split_piper.py makes them).",
                voice.id
            );
            None
        }
        other => other.clone(),
    };
    let pinned = shape.session_per_shape;
    // Sessions of a pinned model are built on this many threads at once (every model thread builds its own).
    let builders = (std::thread::available_parallelism().map_or(1, usize::from) / sessions.max(1)).max(1);
    // Rounds of concurrent passes (one per thread, or a full batch per thread) that measure the throughput.
    const THROUGHPUT_ROUNDS: usize = 4;
    let model_buckets = buckets.clone();
    let factory = move |role: ThreadRole| -> Result<Box<dyn Model>, EngineError> {
        Ok(match &model_buckets {
            None => Box::new(PiperModel::load(&env, &v, intra_threads, device)?),
            Some(b) => {
                // An opening lane only ever runs opening chunks: their shapes are enough.
                let b = match role {
                    ThreadRole::Opening => b.up_to(OPENING_IDS, OPENING_FRAMES),
                    ThreadRole::General => b.clone(),
                };
                Box::new(BucketedPiper::load(&env, &v, intra_threads, device, b, pinned, builders)?)
            }
        })
    };
    let solo_buckets = buckets.clone();
    let solo = (solo_threads > intra_threads).then(|| {
        let (env, v) = (solo_env, voice.clone());
        Box::new(move || -> Result<Box<dyn Model>, EngineError> {
            // Its threads do not spin between passes: the other sessions need the cores then.
            Ok(match solo_buckets {
                None => Box::new(PiperModel::load_with(&env, &v, solo_threads, device, false)?),
                Some(b) => Box::new(BucketedPiper::load(&env, &v, solo_threads, device, b, pinned, 1)?),
            })
        }) as crate::pool::SoloFactory
    });
    let policy = BatchPolicy {
        id_buckets: buckets.as_ref().map(|b| b.ids.clone()).unwrap_or_default(),
        opening_lane: shape.opening_lane,
    };
    let pool =
        ModelPool::start_with(&voice.id, sessions, max_batch, policy, factory, solo, warmup.clone(), scales)?;
    let (speed, rtf) = SpeedCurve::measure(&pool, &warmup, voice.default_scales)?;
    let Throughput { audio_seconds_per_second, .. } = pool.measure(&warmup, scales, THROUGHPUT_ROUNDS)?;
    tracing::info!(
        voice = %voice.id,
        %device,
        rtf_alone = format!("{rtf:.3}"),
        audio_s_per_s = format!("{audio_seconds_per_second:.1}"),
        capacity = pool.measured_capacity(),
        pass_overhead_ms = format!("{:.1}", pool.cost().overhead() * 1e3),
        per_id_ms = format!("{:.3}", pool.cost().per_id() * 1e3),
        max_batch = pool.max_batch(),
        threads = pool.threads(),
        opening_lane = pool.has_opening_lane(),
        shape_buckets = %buckets.as_ref().map_or_else(|| "off".to_owned(), |b| format!("{b} (a session per shape: {pinned})")),
        "Voice warm."
    );
    tracing::debug!(voice = %voice.id, fixed = speed.fixed, "Speed curve measured.");
    Ok(LoadedVoice { voice, pool, speed })
}

/// Phoneme ids of an ordinary clause (about 50 phonemes), for warm-up and the speed curve.
fn warmup_ids(frontend: &Frontend, voice: &PiperVoice) -> Result<Vec<i64>, EngineError> {
    let text = "Warming up the voice with a sentence of ordinary length, so that its timing can be measured.";
    let input = TextInput::new(text, false, &voice.espeak_voice);
    let mut chunks = frontend.chunks(input, Arc::clone(&voice.ids))?;
    Ok(chunks.next().transpose()?.map(|c| c.ids).unwrap_or_else(|| vec![voice.ids.bos(), voice.ids.eos()]))
}

struct InFlight {
    chunk: PhonemeChunk,
    reply: Receiver<JobResult>,
    /// When the listener needs this chunk's audio, if it had audio buffered when the chunk was queued.
    due: Option<Instant>,
}

/// A request being synthesized: an iterator of [`AudioChunk`]s. The next chunk is computed while the caller
/// handles the current one, and sized against the audio its listener has buffered (see
/// [`ChunkPolicy::compute_budget`]). Dropping it cancels every chunk not yet done, the one computing included.
pub struct Synthesis {
    chunks: ChunkStream,
    pool: ModelPool,
    /// Counts this stream among the pool's while it lives.
    _stream: StreamGuard,
    scales: Scales,
    volume: f32,
    speed: f64,
    cancelled: Arc<AtomicBool>,
    in_flight: Option<Result<InFlight, EngineError>>,
    samples_out: u64,
    /// The listener's clock: set by the request when it continues a stream, else from the first audio on.
    playback: Option<Playback>,
    policy: ChunkPolicy,
    /// Whether the consumer is gone, polled while a chunk computes (see [`Synthesis::abort_when`]).
    abort: Option<Box<dyn Fn() -> bool + Send>>,
}

/// How often a synthesis waiting for its chunk checks [`Synthesis::abort_when`].
const ABORT_POLL: Duration = Duration::from_millis(20);

impl std::fmt::Debug for Synthesis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Synthesis").field("samples_out", &self.samples_out).finish_non_exhaustive()
    }
}

impl Synthesis {
    /// The voice's sample rate.
    pub fn sample_rate(&self) -> u32 {
        self.pool.sample_rate()
    }

    /// The listener's playback clock after the audio produced so far (`None` before the first audio of a new
    /// stream): what the stream's next request continues from.
    pub fn playback(&self) -> Option<Playback> {
        self.playback
    }

    /// Makes the synthesis stop by itself (cancelled, the pass in progress stopped, [`EngineError::Cancelled`])
    /// as soon as `gone` says its consumer has left, checked every 20 ms while it waits for a chunk: a client that
    /// hangs up frees its model thread at once, not after the chunk computing for it.
    pub fn abort_when(&mut self, gone: impl Fn() -> bool + Send + 'static) {
        self.abort = Some(Box::new(gone));
    }

    /// Waits for a chunk's pass, giving up when the consumer is gone.
    fn wait(&self, reply: &Receiver<JobResult>) -> JobResult {
        let Some(gone) = &self.abort else {
            return reply.recv().unwrap_or(Err(EngineError::Shutdown));
        };
        loop {
            match reply.recv_timeout(ABORT_POLL) {
                Ok(result) => return result,
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return Err(EngineError::Shutdown),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                    if gone() {
                        self.cancel();
                        return Err(EngineError::Cancelled);
                    }
                }
            }
        }
    }

    /// Stops the request: queued chunks are skipped by the model threads, and a pass computing one of them is
    /// stopped.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Release);
        self.pool.cancel(&self.cancelled);
    }

    /// Takes the next chunk from the front end, sized against the listener's slack, and queues it.
    fn submit_next(&mut self) -> Option<Result<InFlight, EngineError>> {
        let now = Instant::now();
        let slack = self.playback.map(|p| p.slack(now)).filter(|s| !s.is_zero());
        let cost = self.pool.cost();
        let budget = match slack {
            Some(slack) => {
                let compute = self.policy.compute_budget(slack, self.pool.streams(), self.pool.pass_slots());
                // Ids are about two per phoneme (each is followed by a pad); faster speech costs less per id.
                let ids = cost.ids_within(compute.mul_f64(self.speed));
                ChunkBudget::Phonemes(ids / 2)
            }
            None => ChunkBudget::Opening,
        };
        let chunk = match self.chunks.next_within(budget).transpose()? {
            Ok(c) => c,
            Err(e) => return Some(Err(e.into())),
        };
        let due = slack.and(self.playback.map(|p| p.runs_dry_at()));
        let compute = cost.expected(chunk.ids.len()).div_f64(self.speed);
        let priority = scheduler::latest_start(due.unwrap_or(now), compute);
        Some(
            self.pool
                .submit_chunk(
                    chunk.ids.clone(),
                    self.scales,
                    Arc::clone(&self.cancelled),
                    priority,
                    compute,
                    slack.is_none(),
                )
                .map(|reply| InFlight { chunk, reply, due }),
        )
    }
}

impl Iterator for Synthesis {
    type Item = Result<AudioChunk, EngineError>;

    fn next(&mut self) -> Option<Self::Item> {
        let current = match self.in_flight.take().or_else(|| self.submit_next())? {
            Ok(f) => f,
            Err(e) => return Some(Err(e)),
        };
        let result = self.wait(&current.reply);
        let (output, inference_seconds) = match result {
            Ok(r) => r,
            Err(e) => return Some(Err(e)),
        };
        let now = Instant::now();
        if let Some(due) = current.due {
            let margin = if now <= due {
                due.duration_since(now).as_secs_f64()
            } else {
                -now.duration_since(due).as_secs_f64()
            };
            self.pool.record_margin(margin);
        }
        let rate = f64::from(self.pool.sample_rate());
        let start = self.samples_out as f64 / rate;

        let seconds_per_frame = self.pool.hop_length() as f64 / rate;
        let (words, mut phonemes) = current.chunk.timestamps(&output.durations, seconds_per_frame, start);
        let mut samples = output.audio;
        if current.chunk.is_last {
            trim_tail(&mut samples, &current.chunk, &output.durations, self.pool.hop_length(), rate);
            let end = start + samples.len() as f64 / rate;
            for t in phonemes.start.iter_mut().chain(phonemes.end.iter_mut()) {
                *t = t.min(end);
            }
        }
        // The listener plays this chunk from now (or from when its buffer ends): later chunks are due as their
        // audio would be reached.
        let audio = Duration::from_secs_f64(samples.len() as f64 / rate);
        match &mut self.playback {
            Some(p) => p.push(audio, now),
            None => self.playback = Some(Playback { started: now, queued: audio }),
        }
        // Queue the following chunk before handing this one over, so the model works while the caller encodes.
        self.in_flight = self.submit_next();

        if (self.volume - 1.0).abs() > f32::EPSILON {
            chorus_audio::apply_gain(&mut samples, self.volume);
        }
        self.samples_out += samples.len() as u64;
        Some(Ok(AudioChunk {
            index: current.chunk.index,
            samples,
            start,
            words,
            phonemes,
            inference_seconds,
        }))
    }
}

/// Silence kept after the last spoken phoneme of a request.
const TAIL_SECONDS: f64 = 0.1;
/// Fade-out applied where the tail is cut, so the cut is not a click.
const FADE_SECONDS: f64 = 0.01;

/// Cuts the final chunk's trailing pause (the closing punctuation's silence and the end-of-utterance frames) to
/// [`TAIL_SECONDS`] after the last spoken phoneme: the stream ends when the speech does.
fn trim_tail(samples: &mut Vec<f32>, chunk: &PhonemeChunk, durations: &[f32], hop: usize, rate: f64) {
    let Some(end_id) = chunk.speech_end_id() else {
        return;
    };
    let frames: f64 = durations.iter().take(end_id).map(|d| f64::from(d.max(0.0))).sum();
    let keep = (frames * hop as f64 + TAIL_SECONDS * rate).round() as usize;
    if keep >= samples.len() {
        return;
    }
    samples.truncate(keep);
    let fade = ((FADE_SECONDS * rate) as usize).min(samples.len());
    let n = samples.len();
    for (i, s) in samples[n - fade..].iter_mut().enumerate() {
        *s *= 1.0 - (i + 1) as f32 / fade as f32;
    }
}

impl Drop for Synthesis {
    fn drop(&mut self) {
        self.cancel();
    }
}
