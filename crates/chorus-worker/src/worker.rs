//! The engine as a bus worker: jobs in, audio and timestamp events out.
//!
//! Each accepted job runs on its own OS thread (`chorus-job`), which drives the engine's synthesis (itself on the
//! model threads) and sends events to the API server. A job whose client is gone (its event channel closed) or
//! that is cancelled stops at once, and its queued chunks are skipped by the model threads.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use chorus_bus::{
    ModelInfo, ModelListeners, ModelsChanged, Offer, Refusal, SlotGuard, Worker, WorkerStatus, reserve_slot,
};
use chorus_proto::{
    AudioEvent, ContextInput, ErrorCode, JobError, JobEvent, PROTOCOL_VERSION, SynthesisJob, SynthesisParams,
};
use chorus_text::{
    Segment, WordLabeler, has_speech, join_message, parse_tags_mapped, sentence_cut, word_cut,
};
use crossbeam_channel::{Receiver, RecvTimeoutError};
use tokio::sync::mpsc::Sender;

use chorus_engine::{Engine, EngineError, PiperVoice, Playback, SynthesisRequest};
use chorus_proto::metrics as names;

/// How often a waiting job checks that its client is still there.
const LIVENESS_POLL: Duration = Duration::from_millis(250);

/// The most samples one audio event carries (about 0.37 s at 22.05 kHz, 32 KiB as f32): a model chunk or a break
/// is sent as several events, so that no bus message is large and flow control works in small steps.
pub const MAX_EVENT_SAMPLES: usize = 8192;

/// The most silence (`<break>` tags, each at most [`chorus_text::MAX_BREAK_SECONDS`]) one job may ask for in all:
/// silence costs nothing to make but is streamed and billed like speech, so a short text must not request hours.
pub const MAX_TOTAL_BREAK_SECONDS: f32 = 120.0;

/// A worker's identity and limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerConfig {
    pub worker_id: String,
    /// Concurrent jobs accepted: a fixed number, or `None` for the engine's own, measured at warm-up and lowered
    /// while streams come close to running dry ([`Engine::capacity`]).
    pub capacity: Option<u32>,
}

/// Milliseconds of audio produced by this process (the `chorus_audio_seconds_total` counter shows it in whole
/// seconds; the counter is process-wide too).
static AUDIO_MS: AtomicU64 = AtomicU64::new(0);

/// Counters a worker keeps (read by metrics and tests).
#[derive(Debug, Default)]
pub struct WorkerCounters {
    /// Jobs in flight. (Finished jobs are counted by outcome in the `chorus_worker_jobs_total` metric.)
    pub load: AtomicU32,
}

/// A model the worker serves, or is draining before unloading it.
#[derive(Debug)]
struct Served {
    info: ModelInfo,
    /// Jobs of this model in flight.
    jobs: Arc<AtomicU32>,
    /// No longer announced nor accepting jobs; unloaded once `jobs` reaches 0.
    retiring: bool,
}

/// Counts a job against its model while it runs.
struct ModelLease(Arc<AtomicU32>);

impl Drop for ModelLease {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The engine behind the [`Worker`] trait.
///
/// Models can be added and removed while it serves ([`EngineWorker::add_model`], [`EngineWorker::retire_model`],
/// [`EngineWorker::unload_model`]). Capacity is the worker's, shared by all its models: a job of any model takes
/// one of the `capacity` slots.
#[derive(Debug)]
pub struct EngineWorker {
    engine: Arc<Engine>,
    config: WorkerConfig,
    served: RwLock<BTreeMap<String, Served>>,
    counters: Arc<WorkerCounters>,
    draining: AtomicBool,
    /// Told when the announced models or the draining change (the in-process bus announces them).
    listeners: ModelListeners,
}

fn model_info(v: &PiperVoice) -> ModelInfo {
    ModelInfo { id: v.id.clone(), language: v.language.clone(), sample_rate: v.sample_rate }
}

impl EngineWorker {
    pub fn new(engine: Arc<Engine>, config: WorkerConfig) -> Self {
        let served = engine
            .voices()
            .iter()
            .map(|v| (v.id.clone(), Served { info: model_info(v), jobs: Arc::default(), retiring: false }))
            .collect();
        Self {
            engine,
            config,
            served: RwLock::new(served),
            counters: Arc::new(WorkerCounters::default()),
            draining: AtomicBool::new(false),
            listeners: ModelListeners::default(),
        }
    }

    /// Loads `voice` into fresh sessions, warms it up, and only then announces it (or, for a model already
    /// served, swaps its sessions: jobs already running finish on the old ones). Blocks for the load: call it off
    /// the async runtime.
    pub fn add_model(&self, voice: PiperVoice) -> Result<ModelInfo, EngineError> {
        let info = model_info(&voice);
        self.engine.add_voice(voice)?;
        {
            let mut served = write(&self.served);
            let jobs = served.get(&info.id).map(|s| Arc::clone(&s.jobs)).unwrap_or_default();
            served.insert(info.id.clone(), Served { info: info.clone(), jobs, retiring: false });
        }
        self.listeners.notify();
        Ok(info)
    }

    /// Stops announcing a model and refuses its new jobs; jobs in flight go on ([`EngineWorker::model_jobs`]
    /// counts them). `false` if the model is not served.
    pub fn retire_model(&self, id: &str) -> bool {
        let retired = write(&self.served).get_mut(id).map(|s| s.retiring = true).is_some();
        if retired {
            self.listeners.notify();
        }
        retired
    }

    /// Jobs of a model in flight (0 for a model not served).
    pub fn model_jobs(&self, id: &str) -> u32 {
        read(&self.served).get(id).map_or(0, |s| s.jobs.load(Ordering::Acquire))
    }

    /// Forgets a model and closes its sessions (once the syntheses still running on them end).
    pub fn unload_model(&self, id: &str) {
        write(&self.served).remove(id);
        self.listeners.notify();
        self.engine.remove_voice(id);
    }

    /// Ids of the models served (announced or draining).
    pub fn model_ids(&self) -> Vec<String> {
        read(&self.served).keys().cloned().collect()
    }

    pub fn counters(&self) -> Arc<WorkerCounters> {
        Arc::clone(&self.counters)
    }

    /// Concurrent jobs accepted now.
    pub fn capacity(&self) -> u32 {
        self.config.capacity.unwrap_or_else(|| self.engine.capacity()).max(1)
    }

    /// Stops taking new jobs; jobs in flight finish.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::Release);
        self.listeners.notify();
    }
}

impl Worker for EngineWorker {
    fn status(&self) -> WorkerStatus {
        let models = read(&self.served).values().filter(|s| !s.retiring).map(|s| s.info.clone()).collect();
        WorkerStatus {
            draining: self.draining.load(Ordering::Acquire),
            ..WorkerStatus::serving(
                &self.config.worker_id,
                models,
                self.capacity(),
                self.counters.load.load(Ordering::Acquire),
            )
        }
    }

    fn on_models_changed(&self, changed: ModelsChanged) {
        self.listeners.add(changed);
    }

    fn accept(&self, offer: Offer) -> Result<(), Refusal> {
        let Offer { job, inputs, events, slot } = offer;
        if self.draining.load(Ordering::Acquire) {
            return Err(Refusal::Draining);
        }
        if job.protocol_version != PROTOCOL_VERSION {
            return Err(Refusal::Version(job.protocol_version));
        }
        if read(&self.served).get(&job.model).is_none_or(|s| s.retiring) {
            return Err(Refusal::UnknownModel(job.model));
        }
        let load = &self.counters.load;
        reserve_slot(load, self.capacity())?;
        // Count the job against its model, under the lock a retirement takes: a model being drained is never
        // unloaded under a job it accepted.
        let lease = {
            let served = read(&self.served);
            match served.get(&job.model) {
                Some(s) if !s.retiring => {
                    s.jobs.fetch_add(1, Ordering::AcqRel);
                    ModelLease(Arc::clone(&s.jobs))
                }
                Some(_) | None => {
                    load.fetch_sub(1, Ordering::AcqRel);
                    return Err(Refusal::UnknownModel(job.model));
                }
            }
        };
        let engine = Arc::clone(&self.engine);
        let release = Arc::new(Release {
            counters: Arc::clone(&self.counters),
            slot: std::sync::Mutex::new(Some(slot)),
            done: AtomicBool::new(false),
        });
        // The slot is free as soon as the client is gone (its event channel closed), not when the job thread next
        // looks: that thread may be waiting for a chunk being computed, which it then drops unsent.
        let (ended_tx, ended_rx) = tokio::sync::oneshot::channel::<()>();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (watched, release) = (events.clone(), Arc::clone(&release));
            runtime.spawn(async move {
                tokio::select! {
                    () = watched.closed() => release.release(),
                    _ = ended_rx => {}
                }
            });
        }
        let thread_release = Arc::clone(&release);
        let spawned = std::thread::Builder::new().name("chorus-job".into()).spawn(move || {
            let request_id = job.request_id.clone();
            let mut run = Job::new(&engine, job, &events);
            let outcome = run.run(&inputs);
            let label = match outcome {
                Outcome::Completed => "completed",
                Outcome::Stopped => "cancelled",
                Outcome::Failed => "failed",
            };
            metrics::counter!(names::JOBS_TOTAL, "outcome" => label).increment(1);
            run.record_metrics();
            tracing::debug!(%request_id, ?outcome, "Job finished.");
            drop(lease);
            thread_release.release();
            drop(ended_tx);
        });
        if spawned.is_err() {
            release.release();
            return Err(Refusal::Full);
        }
        Ok(())
    }
}

/// A job's capacity slot, given back once: when its client is gone, or when its thread ends.
struct Release {
    counters: Arc<WorkerCounters>,
    slot: std::sync::Mutex<Option<SlotGuard>>,
    done: AtomicBool,
}

impl Release {
    fn release(&self) {
        if self.done.swap(true, Ordering::AcqRel) {
            return;
        }
        self.counters.load.fetch_sub(1, Ordering::AcqRel);
        // Wakes requests waiting for a slot (in-process bus).
        drop(self.slot.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take());
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Completed,
    /// Cancelled, or the client went away.
    Stopped,
    Failed,
}

/// Why speaking stopped early.
enum Stop {
    Gone,
    Failed(JobError),
}

struct Job<'a> {
    engine: &'a Engine,
    accepted: Instant,
    first_audio: Option<Instant>,
    /// Time spent in synthesis (model and front end), for the real-time factor.
    compute: Duration,
    chars: usize,
    /// Names the words of the text being spoken as the client wrote them (word timestamps, not normalized).
    labels: Option<WordLabeler>,
    job: SynthesisJob,
    events: &'a Sender<JobEvent>,
    seq: u64,
    flush_id: u32,
    /// Samples sent so far: the time origin of later timestamps.
    samples_out: u64,
    /// Seconds of `<break>` silence asked for so far.
    silence_s: f32,
    /// The listener's playback clock across the job's sentences and breaks, so that a later sentence is due when
    /// the audio before it has played (not as a new stream).
    playback: Option<Playback>,
}

impl<'a> Job<'a> {
    fn new(engine: &'a Engine, job: SynthesisJob, events: &'a Sender<JobEvent>) -> Self {
        Self {
            engine,
            accepted: Instant::now(),
            first_audio: None,
            compute: Duration::ZERO,
            chars: 0,
            labels: None,
            job,
            events,
            seq: 0,
            flush_id: 1,
            samples_out: 0,
            silence_s: 0.0,
            playback: None,
        }
    }

    /// TTFA, RTF, audio seconds and characters, once the job is over.
    fn record_metrics(&self) {
        if let Some(first) = self.first_audio {
            metrics::histogram!(names::WORKER_TTFA).record(first.duration_since(self.accepted).as_secs_f64());
        }
        let rate = self.engine.voice(&self.job.model).map_or(22050, |v| v.sample_rate);
        let audio = self.samples_out as f64 / f64::from(rate);
        if audio > 0.0 {
            metrics::histogram!(names::WORKER_RTF).record(self.compute.as_secs_f64() / audio);
            // Whole seconds of the exact total (a sum of rounded jobs would drop every job under half a second).
            let ms = (audio * 1000.0) as u64;
            let total_ms = AUDIO_MS.fetch_add(ms, Ordering::Relaxed) + ms;
            metrics::counter!(names::AUDIO_SECONDS_TOTAL).absolute(total_ms / 1000);
        }
        metrics::counter!(names::CHARACTERS_TOTAL).increment(self.chars as u64);
    }

    fn run(&mut self, inputs: &Receiver<ContextInput>) -> Outcome {
        let result = if self.job.continuation { self.run_context(inputs) } else { self.speak_all() };
        match result {
            Ok(Outcome::Completed) => {
                if self.send(JobEvent::Done).is_err() {
                    return Outcome::Stopped;
                }
                Outcome::Completed
            }
            Ok(other) => other,
            Err(Stop::Gone) => Outcome::Stopped,
            Err(Stop::Failed(e)) => {
                tracing::warn!(request_id = %self.job.request_id, code = e.code.as_str(), error = %e.message, "Job failed.");
                let _ = self.send(JobEvent::Error(e));
                Outcome::Failed
            }
        }
    }

    fn speak_all(&mut self) -> Result<Outcome, Stop> {
        let text = std::mem::take(&mut self.job.transcript);
        self.speak(&text)?;
        Ok(Outcome::Completed)
    }

    /// A WebSocket context: text arrives in messages, joined as sent except at a seam ([`chorus_text::join_message`]).
    ///
    /// With `max_buffer_delay_ms` 0 each message is spoken as it arrives (with any others already waiting, as one
    /// text), continuing the context: its audio and timestamps follow the audio before it, on the same playback
    /// clock. Otherwise complete sentences are spoken as soon as they are in, and the rest waits up to the delay
    /// for more context, a flush, or the end.
    fn run_context(&mut self, inputs: &Receiver<ContextInput>) -> Result<Outcome, Stop> {
        let delay = Duration::from_millis(u64::from(self.job.max_buffer_delay_ms));
        let immediate = delay.is_zero();
        let mut buffer = String::new();
        // The end of the context's text so far (spoken or not), for the seams.
        let mut tail = String::new();
        join_message(&mut buffer, &mut tail, &std::mem::take(&mut self.job.transcript));
        let mut since: Option<Instant> = has_speech(&buffer).then(Instant::now);
        // An input read while gathering messages, handled next.
        let mut lookahead: Option<ContextInput> = None;
        loop {
            if immediate {
                while lookahead.is_none() {
                    match inputs.try_recv() {
                        Ok(ContextInput::Append { text }) => join_message(&mut buffer, &mut tail, &text),
                        Ok(other) => lookahead = Some(other),
                        Err(_) => break,
                    }
                }
                let all = std::mem::take(&mut buffer);
                self.speak(&all)?;
                since = None;
            } else if let Some(cut) = sentence_cut(&buffer) {
                let head: String = buffer.drain(..cut).collect();
                self.speak(&head)?;
                since = has_speech(&buffer).then(Instant::now);
            }
            let wait = since.map_or(LIVENESS_POLL, |t| delay.saturating_sub(t.elapsed()).min(LIVENESS_POLL));
            let next = match lookahead.take() {
                Some(input) => Ok(input),
                None => inputs.recv_timeout(wait),
            };
            match next {
                Ok(ContextInput::Append { text }) => {
                    join_message(&mut buffer, &mut tail, &text);
                    if since.is_none() && has_speech(&buffer) {
                        since = Some(Instant::now());
                    }
                }
                Ok(ContextInput::Flush) => {
                    let all = std::mem::take(&mut buffer);
                    self.speak(&all)?;
                    self.send(JobEvent::FlushDone { flush_id: self.flush_id })?;
                    self.flush_id += 1;
                    since = None;
                }
                Ok(ContextInput::End) => {
                    let all = std::mem::take(&mut buffer);
                    self.speak(&all)?;
                    return Ok(Outcome::Completed);
                }
                Ok(ContextInput::Cancel) | Err(RecvTimeoutError::Disconnected) => {
                    return Ok(Outcome::Stopped);
                }
                Err(RecvTimeoutError::Timeout) => {
                    if self.events.is_closed() {
                        return Err(Stop::Gone);
                    }
                    if since.is_some_and(|t| t.elapsed() >= delay) {
                        // Waited long enough: speak up to the last complete word (a word may still be arriving).
                        let cut = word_cut(&buffer);
                        let head: String = buffer.drain(..cut).collect();
                        self.speak(&head)?;
                        since = has_speech(&buffer).then(Instant::now);
                    }
                }
            }
        }
    }

    /// Speaks `text` (inline tags honoured), sending audio and timestamps as they are produced. Word timestamps
    /// name the tokens of `text` as written (or the normalized words, when asked for). The silence its breaks ask
    /// for counts against [`MAX_TOTAL_BREAK_SECONDS`] before anything is spoken.
    fn speak(&mut self, text: &str) -> Result<(), Stop> {
        if !has_speech(text) && !text.contains("<break") {
            return Ok(());
        }
        let segments = parse_tags_mapped(text);
        let breaks: f32 = segments
            .iter()
            .map(|(s, _)| if let Segment::Break { seconds } = s { *seconds } else { 0.0 })
            .sum();
        if self.silence_s + breaks > MAX_TOTAL_BREAK_SECONDS {
            return Err(Stop::Failed(JobError {
                code: ErrorCode::InvalidRequest,
                message: format!(
                    "the transcript asks for {:.0} s of silence in <break> tags; at most {MAX_TOTAL_BREAK_SECONDS:.0} s \
                     per request (or WebSocket context)",
                    self.silence_s + breaks
                ),
            }));
        }
        self.silence_s += breaks;
        let rate = self.engine.voice(&self.job.model).map_or(22050, |v| v.sample_rate);
        let seconds = |samples: u64| samples as f64 / f64::from(rate);
        // The labeler expects exactly the text segments with speech to be spoken, in order (as below).
        self.labels = (self.job.word_timestamps && !self.job.normalized_timestamps)
            .then(|| WordLabeler::new(text, &segments, seconds(self.samples_out)));
        for (segment, _) in segments {
            match segment {
                Segment::Break { seconds } => self.silence(seconds)?,
                Segment::Text { text, speed, volume } => {
                    if has_speech(&text) {
                        self.speak_segment(text, speed, volume)?;
                    }
                }
            }
        }
        if let Some(mut labels) = self.labels.take() {
            let words = labels.finish(seconds(self.samples_out));
            if !words.is_empty() {
                self.send(JobEvent::Words { flush_id: self.flush_id, words })?;
            }
        }
        Ok(())
    }

    fn speak_segment(&mut self, text: String, speed: f32, volume: f32) -> Result<(), Stop> {
        let base = self.job.params;
        let params = SynthesisParams {
            speed: (base.speed * speed).clamp(chorus_proto::SPEED_RANGE.0, chorus_proto::SPEED_RANGE.1),
            volume: (base.volume * volume).clamp(chorus_proto::VOLUME_RANGE.0, chorus_proto::VOLUME_RANGE.1),
            ..base
        };
        self.chars += text.chars().count();
        let request = SynthesisRequest {
            normalized_words: self.job.normalized_timestamps,
            params,
            normalize: self.job.normalize,
            pronunciations: self.job.pronunciations.clone(),
            playback: self.playback,
            ..SynthesisRequest::new(text, &self.job.model)
        };
        let started = Instant::now();
        let mut synthesis = self.engine.synthesize(&request).map_err(|e| Stop::Failed(job_error(&e)))?;
        // A client that leaves while a chunk computes stops it at once (barge-in frees the model thread).
        let events = self.events.clone();
        synthesis.abort_when(move || events.is_closed());
        let rate = synthesis.sample_rate();
        let offset = self.samples_out as f64 / f64::from(rate);
        let mut last = started;
        while let Some(chunk) = synthesis.next() {
            if self.events.is_closed() {
                return Err(Stop::Gone);
            }
            let chunk = match chunk {
                Ok(c) => c,
                Err(EngineError::Cancelled) => return Err(Stop::Gone),
                Err(e) => return Err(Stop::Failed(job_error(&e))),
            };
            self.playback = synthesis.playback();
            let step = last.elapsed();
            self.compute += step;
            let step_time_ms = step.as_secs_f64() * 1000.0;
            self.first_audio.get_or_insert_with(Instant::now);
            self.samples_out += chunk.samples.len() as u64;
            self.send_audio(chunk.samples, rate, step_time_ms)?;
            if self.job.word_timestamps && !chunk.words.is_empty() {
                let mut words = chorus_proto::WordTimestamps::default();
                words.extend_shifted(&chunk.words, offset);
                if let Some(labels) = &mut self.labels {
                    words = labels.label(&words);
                }
                if !words.is_empty() {
                    self.send(JobEvent::Words { flush_id: self.flush_id, words })?;
                }
            }
            if self.job.phoneme_timestamps && !chunk.phonemes.phonemes.is_empty() {
                let mut phonemes = chorus_proto::PhonemeTimestamps::default();
                phonemes.extend_shifted(&chunk.phonemes, offset);
                self.send(JobEvent::Phonemes { flush_id: self.flush_id, phonemes })?;
            }
            // The next step counts from here: time spent waiting on a slow client is not compute.
            last = Instant::now();
        }
        Ok(())
    }

    fn silence(&mut self, seconds: f32) -> Result<(), Stop> {
        let rate = self.engine.voice(&self.job.model).map_or(22050, |v| v.sample_rate);
        let samples = vec![0.0f32; (f64::from(seconds) * f64::from(rate)).round() as usize];
        if samples.is_empty() {
            return Ok(());
        }
        let audio = Duration::from_secs_f64(samples.len() as f64 / f64::from(rate));
        let now = Instant::now();
        match &mut self.playback {
            Some(p) => p.push(audio, now),
            None => self.playback = Some(Playback { started: now, queued: audio }),
        }
        self.samples_out += samples.len() as u64;
        self.send_audio(samples, rate, 0.0)
    }

    /// Sends `samples` as audio events of at most [`MAX_EVENT_SAMPLES`] each (the step time on the first).
    fn send_audio(&mut self, samples: Vec<f32>, sample_rate: u32, step_time_ms: f64) -> Result<(), Stop> {
        let mut step_time_ms = step_time_ms;
        let pieces: Vec<Vec<f32>> = if samples.len() <= MAX_EVENT_SAMPLES {
            vec![samples]
        } else {
            samples.chunks(MAX_EVENT_SAMPLES).map(<[f32]>::to_vec).collect()
        };
        for samples in pieces {
            let audio =
                AudioEvent { seq: self.seq, sample_rate, samples, step_time_ms, flush_id: self.flush_id };
            self.seq += 1;
            step_time_ms = 0.0;
            self.send(JobEvent::Audio(audio))?;
        }
        Ok(())
    }

    /// Sends an event, waiting while the client is slow; `Gone` if the client has left.
    fn send(&self, event: JobEvent) -> Result<(), Stop> {
        self.events.blocking_send(event).map_err(|_| Stop::Gone)
    }
}

fn job_error(e: &EngineError) -> JobError {
    let code = match e {
        EngineError::Text(t) => match t {
            chorus_text::TextError::TooLong { .. } | chorus_text::TextError::TooLongExpanded { .. } => {
                ErrorCode::TextTooLong
            }
            chorus_text::TextError::Empty | chorus_text::TextError::NothingToSpeak => {
                ErrorCode::EmptyTranscript
            }
            chorus_text::TextError::Espeak(_)
            | chorus_text::TextError::UnknownEspeakVoice(_)
            | chorus_text::TextError::PhonemizerGone
            | chorus_text::TextError::PhonemeMap(_) => ErrorCode::Internal,
        },
        EngineError::UnknownVoice(_) => ErrorCode::VoiceNotFound,
        EngineError::InvalidParams(_) => ErrorCode::InvalidRequest,
        EngineError::Inference(_) => ErrorCode::InferenceFailed,
        EngineError::Runtime(_)
        | EngineError::VoiceLoad { .. }
        | EngineError::Shutdown
        | EngineError::Cancelled => ErrorCode::Internal,
    };
    JobError { code, message: e.to_string() }
}
