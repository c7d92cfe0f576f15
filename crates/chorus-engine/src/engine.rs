//! The engine: voices, their model threads, the text front end, and streaming synthesis.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use chorus_proto::{PhonemeTimestamps, PronunciationItem, SynthesisParams, WordTimestamps};
use chorus_text::{ChunkStream, EspeakConfig, Frontend, FrontendConfig, PhonemeChunk, Phonemizer, TextInput};
use crossbeam_channel::Receiver;

use crate::EngineError;
use crate::model::{Model, Scales};
use crate::piper::{PiperModel, PiperVoice};
use crate::pool::{JobResult, ModelPool};
use crate::runtime::Device;
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
        }
    }
}

struct LoadedVoice {
    voice: PiperVoice,
    pool: ModelPool,
    speed: SpeedCurve,
    /// Real-time factor of one model thread, measured at warm-up.
    rtf: f64,
    /// Seconds of audio per input id, measured at warm-up (to estimate a chunk's compute before running it).
    seconds_per_id: f64,
}

/// Share of the model threads' speed that admission plans to use, so that first chunks find a thread quickly.
const PLANNED_UTILIZATION: f64 = 0.7;

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
    /// That run, on a warm session, also gives the voice's real-time factor (returned second).
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
                std::thread::spawn(move || load_voice(&env, &frontend, voice, shape))
            })
            .collect();
        let mut loaded = BTreeMap::new();
        for h in handles {
            let v = h.join().map_err(|_| EngineError::Runtime("a voice loader panicked".into()))??;
            loaded.insert(v.voice.id.clone(), Arc::new(v));
        }
        let load_seconds = started.elapsed().as_secs_f64();
        tracing::info!(voices = loaded.len(), load_s = format!("{load_seconds:.2}"), "Engine ready.");
        Ok(Self { frontend, voices: RwLock::new(loaded), load_seconds, env, shape: PoolShape::of(config) })
    }

    /// Loads `voice` into fresh sessions and warms them up, then serves it (replacing a voice of the same id:
    /// syntheses already running on the old sessions finish there). Blocks for the load; call it off the async
    /// runtime. The model threads are the voice's own.
    pub fn add_voice(&self, voice: PiperVoice) -> Result<(), EngineError> {
        let loaded = load_voice(&self.env, &self.frontend, voice, self.shape)?;
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

    /// How many concurrent streams the engine keeps ahead of real time, from the voices' measured speed (the
    /// slowest voice decides): see [`scheduler::capacity`].
    pub fn measured_capacity(&self) -> u32 {
        read(&self.voices)
            .values()
            .map(|v| {
                // Batched passes serve more streams per thread than one chunk at a time: plan with the faster.
                let rtf = v.pool.batch_rtf().map_or(v.rtf, |batch| batch.min(v.rtf));
                // A GPU's sessions share one device: its speed is counted once, not per session.
                let threads = if self.shape.device.is_gpu() { 1 } else { v.pool.threads() };
                scheduler::capacity(threads, rtf, PLANNED_UTILIZATION)
            })
            .min()
            .unwrap_or(1)
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
            pool: loaded.pool.clone(),
            scales,
            volume: request.params.volume,
            cancelled: Arc::new(AtomicBool::new(false)),
            in_flight: None,
            samples_out: 0,
            first_audio_at: None,
            compute_per_id: if loaded.rtf.is_finite() {
                loaded.rtf * loaded.seconds_per_id / f64::from(request.params.speed)
            } else {
                0.0
            },
        };
        match synthesis.submit_next(0) {
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
#[derive(Debug, Clone, Copy)]
struct PoolShape {
    sessions: usize,
    intra_threads: usize,
    device: Device,
    max_batch: usize,
}

impl PoolShape {
    fn of(config: &EngineConfig) -> Self {
        Self {
            sessions: config.sessions_per_voice,
            intra_threads: config.intra_threads,
            device: config.device,
            max_batch: config.max_batch,
        }
    }
}

/// Starts a voice's model threads, warms them up and measures its speed curve and real-time factor.
fn load_voice(
    env: &ort::environment::Environment,
    frontend: &Frontend,
    voice: PiperVoice,
    shape: PoolShape,
) -> Result<LoadedVoice, EngineError> {
    let warmup = warmup_ids(frontend, &voice)?;
    let scales = SpeedCurve::warmup_scales(voice.default_scales);
    let v = voice.clone();
    let env = env.clone();
    let PoolShape { sessions, intra_threads, device, max_batch } = shape;
    let factory = move || -> Result<Box<dyn Model>, EngineError> {
        Ok(Box::new(PiperModel::load(&env, &v, intra_threads, device)?))
    };
    let pool = ModelPool::start(&voice.id, sessions, max_batch, factory, warmup.clone(), scales)?;
    let (speed, rtf) = SpeedCurve::measure(&pool, &warmup, voice.default_scales)?;
    tracing::info!(
        voice = %voice.id,
        %device,
        rtf = format!("{rtf:.3}"),
        batch_rtf = pool.batch_rtf().map(|r| format!("{r:.4}")),
        max_batch = pool.max_batch(),
        threads = pool.threads(),
        "Voice warm."
    );
    tracing::debug!(voice = %voice.id, fixed = speed.fixed, "Speed curve measured.");
    let audio = pool.warmup_frames() * pool.hop_length() as f64 / f64::from(pool.sample_rate());
    let seconds_per_id = audio / warmup.len().max(1) as f64;
    Ok(LoadedVoice { voice, pool, speed, rtf, seconds_per_id })
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
}

/// A request being synthesized: an iterator of [`AudioChunk`]s. The next chunk is computed while the caller
/// handles the current one. Dropping it cancels every chunk not yet started.
pub struct Synthesis {
    chunks: ChunkStream,
    pool: ModelPool,
    scales: Scales,
    volume: f32,
    cancelled: Arc<AtomicBool>,
    in_flight: Option<Result<InFlight, EngineError>>,
    samples_out: u64,
    /// When the first chunk's audio was ready: the listener's playback clock starts there.
    first_audio_at: Option<Instant>,
    /// Expected compute seconds per input id, for the scheduler's latest-start priority.
    compute_per_id: f64,
}

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

    /// Stops the request: queued chunks are skipped by the model threads.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Release);
    }

    /// Takes the next chunk from the front end and queues it, due when `audio_sent` samples have played.
    fn submit_next(&mut self, audio_sent: u64) -> Option<Result<InFlight, EngineError>> {
        let chunk = match self.chunks.next()? {
            Ok(c) => c,
            Err(e) => return Some(Err(e.into())),
        };
        let rate = f64::from(self.pool.sample_rate());
        let sent = Duration::from_secs_f64(audio_sent as f64 / rate);
        let due = scheduler::deadline(self.first_audio_at, sent, Instant::now());
        let compute =
            Duration::from_secs_f64((chunk.ids.len() as f64 * self.compute_per_id).clamp(0.0, 60.0));
        let priority = scheduler::latest_start(due, compute);
        Some(
            self.pool
                .submit(chunk.ids.clone(), self.scales, Arc::clone(&self.cancelled), priority, compute)
                .map(|reply| InFlight { chunk, reply }),
        )
    }
}

impl Iterator for Synthesis {
    type Item = Result<AudioChunk, EngineError>;

    fn next(&mut self) -> Option<Self::Item> {
        let sent = self.samples_out;
        let current = match self.in_flight.take().or_else(|| self.submit_next(sent))? {
            Ok(f) => f,
            Err(e) => return Some(Err(e)),
        };
        let result = current.reply.recv().unwrap_or(Err(EngineError::Shutdown));
        let (output, inference_seconds) = match result {
            Ok(r) => r,
            Err(e) => return Some(Err(e)),
        };
        // The listener starts playing now: later chunks are due as their audio would be reached.
        self.first_audio_at.get_or_insert_with(Instant::now);
        let rate = f64::from(self.pool.sample_rate());
        let start = self.samples_out as f64 / rate;
        // Queue the following chunk before handing this one over, so the model works while the caller encodes. It
        // is due when the audio sent so far, this chunk included, has played.
        self.in_flight = self.submit_next(self.samples_out + output.audio.len() as u64);

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
