//! Model threads: each owns one session and takes the most urgent chunk from the voice's scheduler queue. Any
//! thread's pass can be stopped for a chunk that is due now and finds no idle thread, when the stopped chunk's stream
//! has the slack to wait (see [`crate::scheduler::preemption_victim`]); a cancelled stream's pass is stopped at once.
//! The pool keeps the cost model the pipeline sizes chunks with ([`CostModel`]) and the capacity it declares
//! ([`CapacityControl`]).
//!
//! With a batch limit above one (a GPU), a thread takes the most urgent chunk plus the next most urgent ones that
//! share its scales (and, on shape buckets, its id bucket: see [`BatchPolicy`]), up to the limit, and runs them as
//! one forward pass: on a GPU a batch costs about as much as one chunk, so the chunks due together are computed
//! together. Batched passes are not preempted; instead, with an opening lane, one thread takes only new streams'
//! opening chunks, so that a first chunk never waits for a long pass.
//!
//! Models never run on an async runtime's workers. Sessions load in parallel, each is warmed up with one inference,
//! and [`ModelPool::start`] returns only when every thread is ready.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, bounded};

use crate::EngineError;
use crate::model::{Interrupt, Model, ModelOutput, Scales};
use crate::scheduler::{CapacityControl, ChunkQueue, PushError, RunningPass, preemption_victim};
use chorus_proto::metrics as names;

/// Chunks that may wait at once. Each stream keeps at most one queued, so this is above any capacity (plus the
/// warm-up's full batches).
const QUEUE_LIMIT: usize = 2 * crate::scheduler::MAX_CAPACITY as usize;

/// A chunk to synthesize.
pub(crate) struct Job {
    pub ids: Vec<i64>,
    pub scales: Scales,
    /// Set when the request is gone; the job is then skipped (or its pass stopped).
    pub cancelled: Arc<AtomicBool>,
    pub reply: Sender<JobResult>,
    /// Its place in the queue (see [`crate::scheduler::latest_start`]), kept to queue it again if preempted.
    pub priority: Instant,
    /// Its expected compute time.
    pub expected: Duration,
    /// An opening chunk: its stream has no audio buffered (a new stream, or one that ran dry).
    pub opening: bool,
}

/// What one model thread is running.
struct Slot {
    pass: RunningPass,
    cancelled: Arc<AtomicBool>,
    interrupter: Option<Arc<dyn Interrupt>>,
}

/// The passes in progress, one entry per model thread (`None`: idle or between passes). Preemption and
/// cancellation look here, under the lock, so they never stop a pass that already ended.
#[derive(Default)]
struct Running(Mutex<Vec<Option<Slot>>>);

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Running")
    }
}

impl Running {
    fn lock(&self) -> MutexGuard<'_, Vec<Option<Slot>>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set(&self, thread: usize, slot: Option<Slot>) {
        if let Some(entry) = self.lock().get_mut(thread) {
            *entry = slot;
        }
    }

    /// Stops the pass that [`preemption_victim`] picks, if any. Passes that cannot be interrupted (or are
    /// batched) are never picked.
    fn preempt(&self, now: Instant) {
        let slots = self.lock();
        let view: Vec<Option<RunningPass>> = slots
            .iter()
            .map(|s| s.as_ref().map(|s| RunningPass { stoppable: s.interrupter.is_some(), ..s.pass }))
            .collect();
        if let Some(victim) = preemption_victim(&view, now)
            && let Some(Some(slot)) = slots.get(victim)
            && let Some(i) = &slot.interrupter
        {
            i.interrupt();
        }
    }

    /// Whether every thread but `thread` is between passes.
    fn others_idle(&self, thread: usize) -> bool {
        self.lock().iter().enumerate().all(|(i, s)| i == thread || s.is_none())
    }

    /// Stops every pass of the stream whose cancel flag is `flag`.
    fn cancel(&self, flag: &Arc<AtomicBool>) {
        for slot in self.lock().iter().flatten() {
            if Arc::ptr_eq(&slot.cancelled, flag)
                && let Some(i) = &slot.interrupter
            {
                i.interrupt();
            }
        }
    }
}

/// What a pass costs on this pool: a fixed part per pass plus a part per input id. The fixed part is measured at
/// warm-up; the per-id part starts from the warm-up's concurrent passes and follows the passes served (an
/// exponential average), so that it tracks the speed the threads really get under load.
#[derive(Debug)]
pub struct CostModel {
    overhead: AtomicU64,
    per_id: AtomicU64,
}

impl CostModel {
    pub(crate) fn new(overhead: f64, per_id: f64) -> Self {
        let model = Self { overhead: AtomicU64::new(0), per_id: AtomicU64::new(0) };
        model.overhead_and_per_id(overhead, per_id);
        model
    }

    fn overhead_and_per_id(&self, overhead: f64, per_id: f64) {
        self.overhead.store(overhead.max(0.0).to_bits(), Ordering::Relaxed);
        self.per_id.store(per_id.max(1e-7).to_bits(), Ordering::Relaxed);
    }

    /// Seconds of compute per input id now.
    pub fn per_id(&self) -> f64 {
        f64::from_bits(self.per_id.load(Ordering::Relaxed))
    }

    /// Seconds of compute of every pass, whatever its length.
    pub fn overhead(&self) -> f64 {
        f64::from_bits(self.overhead.load(Ordering::Relaxed))
    }

    /// The expected compute of a pass over `ids` input ids.
    pub fn expected(&self, ids: usize) -> Duration {
        Duration::from_secs_f64((self.overhead() + self.per_id() * ids as f64).clamp(0.0, 60.0))
    }

    /// How many ids a pass of `compute` seconds holds.
    pub fn ids_within(&self, compute: Duration) -> usize {
        ((compute.as_secs_f64() - self.overhead()).max(0.0) / self.per_id()) as usize
    }

    /// A pass over `ids` ids took `seconds`.
    pub(crate) fn observe(&self, ids: usize, seconds: f64) {
        if ids == 0 || !seconds.is_finite() {
            return;
        }
        let sample = ((seconds - self.overhead()) / ids as f64).max(self.per_id() * 0.25);
        let _ = self.per_id.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
            Some((0.8 * f64::from_bits(bits) + 0.2 * sample).to_bits())
        });
    }
}

/// What the concurrent warm-up measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Throughput {
    /// Audio seconds produced per second with every model thread busy at once (the median round).
    pub audio_seconds_per_second: f64,
    /// Seconds per pass of one thread alone, over the warm-up utterance.
    pub single_pass_seconds: f64,
    /// Audio seconds of the warm-up utterance.
    pub audio_seconds: f64,
}

/// Builds the solo model of a pool (see [`ModelPool::start`]).
pub type SoloFactory = Box<dyn FnOnce() -> Result<Box<dyn Model>, EngineError> + Send>;

/// A pool's solo model, shared by its threads: whichever thread is alone takes it (one solo pass at a time).
#[derive(Default)]
struct Solo(Mutex<Option<SoloModel>>);

/// The solo model and its interrupt handle.
type SoloModel = (Box<dyn Model>, Option<Arc<dyn Interrupt>>);

/// The model's output plus the time the forward pass took.
pub(crate) type JobResult = Result<(ModelOutput, f64), EngineError>;

/// Closes the queue when the last [`ModelPool`] handle goes, so that the model threads end.
#[derive(Debug)]
struct Closer(Arc<ChunkQueue<Job>>);

impl Drop for Closer {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// How a batched pool groups chunks into passes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchPolicy {
    /// The id buckets of the pool's model (empty: none). A pass takes chunks of one id bucket only, so that a
    /// short chunk (a new stream's first) never rides in a pass padded to long ones.
    pub id_buckets: Vec<usize>,
    /// Reserve the first model thread for opening chunks (new streams, streams that ran dry), batched together: on
    /// a GPU the threads share one device, so the reserved thread idles no hardware while it waits, and a first
    /// chunk never waits behind a long pass. Needs at least two threads and batching.
    pub opening_lane: bool,
}

impl BatchPolicy {
    /// The bucket of a chunk of `ids` ids (`usize::MAX` beyond the last: those share passes with each other).
    fn bucket(&self, ids: usize) -> usize {
        self.id_buckets.iter().copied().find(|&b| b >= ids).unwrap_or(usize::MAX)
    }

    /// Whether `b` may share `a`'s pass.
    fn compatible(&self, a: &Job, b: &Job) -> bool {
        a.scales == b.scales
            && (self.id_buckets.is_empty() || self.bucket(a.ids.len()) == self.bucket(b.ids.len()))
    }
}

/// What a model thread is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadRole {
    /// Any chunk, the most urgent first.
    General,
    /// Opening chunks only (see [`BatchPolicy::opening_lane`]): its model needs only their shapes.
    Opening,
}

/// A handle to a voice's model threads. Cloning is cheap; the threads stop when every handle is dropped.
#[derive(Debug, Clone)]
pub struct ModelPool {
    queue: Arc<ChunkQueue<Job>>,
    running: Arc<Running>,
    cost: Arc<CostModel>,
    control: Arc<Mutex<CapacityControl>>,
    /// Streams synthesizing on this pool now.
    streams: Arc<AtomicUsize>,
    /// The warm-up utterance's ids and audio seconds: the pass the capacity estimate is made of.
    reference: Arc<Mutex<(usize, f64)>>,
    _closer: Arc<Closer>,
    sample_rate: u32,
    hop_length: usize,
    threads: usize,
    /// Threads that take any chunk (all of them but an opening lane's).
    general: usize,
    max_batch: usize,
    warmup_frames: f64,
    /// Real-time factor of a full batch (compute over the batch's total audio), measured at warm-up.
    batch_rtf: Option<f64>,
}

/// What a model thread reports once warm.
struct Ready {
    sample_rate: u32,
    hop_length: usize,
    warmup_frames: f64,
    batch_rtf: Option<f64>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job").field("ids", &self.ids.len()).finish_non_exhaustive()
    }
}

impl ModelPool {
    /// Starts `threads` model threads named `chorus-model-<name>-<i>`, each building its model with `factory` and
    /// warming it up on `warmup_ids` (and on a full batch of them when `max_batch` > 1, which is then timed).
    /// Fails if any model fails to load.
    ///
    /// With `solo`, the first thread also builds a second model with it (a session using every core), and any
    /// thread runs a chunk on it when no other thread is computing and nothing else waits: a lone stream gets the
    /// whole machine, streams under load one core each. Solo passes are not counted in the cost model (it plans with the loaded
    /// speed).
    pub fn start<F>(
        name: &str,
        threads: usize,
        max_batch: usize,
        factory: F,
        solo: Option<SoloFactory>,
        warmup_ids: Vec<i64>,
        warmup_scales: Scales,
    ) -> Result<Self, EngineError>
    where
        F: Fn() -> Result<Box<dyn Model>, EngineError> + Send + Sync + 'static,
    {
        let policy = BatchPolicy::default();
        Self::start_with(
            name,
            threads,
            max_batch,
            policy,
            move |_| factory(),
            solo,
            warmup_ids,
            warmup_scales,
        )
    }

    /// [`ModelPool::start`] with a batch policy; `factory` builds each thread's model for its role (an opening
    /// lane's thread, the first, when the policy asks for one and the pool has two threads or more and batches).
    #[allow(clippy::too_many_arguments)]
    pub fn start_with<F>(
        name: &str,
        threads: usize,
        max_batch: usize,
        policy: BatchPolicy,
        factory: F,
        solo: Option<SoloFactory>,
        warmup_ids: Vec<i64>,
        warmup_scales: Scales,
    ) -> Result<Self, EngineError>
    where
        F: Fn(ThreadRole) -> Result<Box<dyn Model>, EngineError> + Send + Sync + 'static,
    {
        let threads = threads.max(1);
        let max_batch = max_batch.max(1);
        let lane = policy.opening_lane && threads >= 2 && max_batch > 1;
        let policy = Arc::new(BatchPolicy { opening_lane: lane, ..policy });
        let queue = Arc::new(ChunkQueue::<Job>::new(QUEUE_LIMIT));
        let (ready_tx, ready_rx) = bounded::<Result<Ready, EngineError>>(threads);
        let factory = Arc::new(factory);
        let running = Arc::new(Running(Mutex::new((0..threads).map(|_| None).collect())));
        let cost = Arc::new(CostModel::new(0.0, 1e-3));
        let mut solo_factory = if max_batch == 1 { solo } else { None };
        let solo = Arc::new(Solo::default());
        for i in 0..threads {
            let solo_factory = solo_factory.take();
            let solo = Arc::clone(&solo);
            let running = Arc::clone(&running);
            let cost = Arc::clone(&cost);
            let queue = Arc::clone(&queue);
            let ready_tx = ready_tx.clone();
            let factory = Arc::clone(&factory);
            let warmup_ids = warmup_ids.clone();
            let policy = Arc::clone(&policy);
            let role = if lane && i == 0 { ThreadRole::Opening } else { ThreadRole::General };
            thread::Builder::new()
                .name(format!("chorus-model-{name}-{i}"))
                .spawn(move || {
                    let started = Instant::now();
                    let mut model = match factory(role) {
                        Ok(m) => m,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let solo_model = match solo_factory.map(|f| f()).transpose() {
                        Ok(m) => m,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    if let Some(mut m) = solo_model {
                        if let Err(e) = m.infer(&warmup_ids, warmup_scales) {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                        let interrupter = m.interrupter();
                        *solo.0.lock().unwrap_or_else(PoisonError::into_inner) = Some((m, interrupter));
                    }
                    let loaded = started.elapsed();
                    let warm = warm_up(model.as_mut(), &warmup_ids, warmup_scales, max_batch, role);
                    let ready = match warm {
                        Ok(ready) => ready,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    tracing::debug!(
                        thread = i,
                        load_ms = loaded.as_millis(),
                        warm_ms = (started.elapsed() - loaded).as_millis(),
                        "Model thread ready."
                    );
                    let _ = ready_tx.send(Ok(ready));
                    drop(ready_tx);
                    let seat = Seat { thread: i, queue: &queue, running: &running, cost: &cost };
                    serve(model.as_mut(), &solo, &seat, max_batch, &policy, role);
                })
                .map_err(|e| EngineError::Runtime(format!("cannot start a model thread: {e}")))?;
        }
        drop(ready_tx);
        let mut shape: Option<Ready> = None;
        for _ in 0..threads {
            let ready = ready_rx.recv().map_err(|_| EngineError::Shutdown)??;
            // The slowest thread's batch speed is the one to plan with.
            let batch_rtf = match (shape.as_ref().and_then(|s| s.batch_rtf), ready.batch_rtf) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            shape = Some(Ready { batch_rtf, ..ready });
        }
        let Ready { sample_rate, hop_length, warmup_frames, batch_rtf } =
            shape.ok_or(EngineError::Shutdown)?;
        let closer = Arc::new(Closer(Arc::clone(&queue)));
        Ok(Self {
            queue,
            running,
            cost,
            control: Arc::new(Mutex::new(CapacityControl::new(1, Instant::now()))),
            streams: Arc::new(AtomicUsize::new(0)),
            reference: Arc::new(Mutex::new((0, 0.0))),
            _closer: closer,
            sample_rate,
            hop_length,
            threads,
            general: threads - usize::from(lane),
            max_batch,
            warmup_frames,
            batch_rtf,
        })
    }

    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    pub fn hop_length(&self) -> usize {
        self.hop_length
    }

    /// Total duration, in frames, of the warm-up utterance (deterministic when the warm-up's `noise_w` is 0).
    pub fn warmup_frames(&self) -> f64 {
        self.warmup_frames
    }

    /// Number of model threads (concurrent forward passes).
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Model threads that take any chunk: all of them but an opening lane's. Chunks are sized, and capacity
    /// measured, against these.
    pub fn general_threads(&self) -> usize {
        self.general
    }

    /// The chunks the general threads compute at once: one per thread, a full batch per thread when batched (a
    /// batched pass costs about one chunk's: the cost model is per pass). Chunks are sized against these: a chunk
    /// waits for the others' passes spread over these slots.
    pub fn pass_slots(&self) -> usize {
        self.general * self.max_batch
    }

    /// Whether the first thread serves opening chunks only (see [`BatchPolicy::opening_lane`]).
    pub fn has_opening_lane(&self) -> bool {
        self.general < self.threads
    }

    /// The most chunks one forward pass takes.
    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// Real-time factor of a full batch (compute seconds over the batch's total audio), measured at warm-up;
    /// `None` when passes are not batched.
    pub fn batch_rtf(&self) -> Option<f64> {
        self.batch_rtf
    }

    /// Queues a chunk due at `deadline` (see [`crate::scheduler`]) that should take `expected` to compute; the
    /// result arrives on the returned channel.
    pub(crate) fn submit(
        &self,
        ids: Vec<i64>,
        scales: Scales,
        cancelled: Arc<AtomicBool>,
        deadline: Instant,
        expected: Duration,
    ) -> Result<crossbeam_channel::Receiver<JobResult>, EngineError> {
        self.submit_chunk(ids, scales, cancelled, deadline, expected, false)
    }

    /// [`ModelPool::submit`]; `opening`: the chunk's stream has no audio buffered (an opening lane takes it).
    pub(crate) fn submit_chunk(
        &self,
        ids: Vec<i64>,
        scales: Scales,
        cancelled: Arc<AtomicBool>,
        deadline: Instant,
        expected: Duration,
        opening: bool,
    ) -> Result<crossbeam_channel::Receiver<JobResult>, EngineError> {
        let (reply, rx) = bounded(1);
        let job = Job { ids, scales, cancelled, reply, priority: deadline, expected, opening };
        let idle = self.queue.push_idle(job, deadline).map_err(|e| match e {
            PushError::Closed => EngineError::Shutdown,
            PushError::Full => {
                EngineError::Runtime("the chunk queue is full (more streams than capacity)".into())
            }
        })?;
        // Due now and every thread busy: stop a pass whose stream can wait, unless a thread frees up soon anyway.
        let now = Instant::now();
        if idle == 0 && deadline <= now {
            self.running.preempt(now);
        }
        Ok(rx)
    }

    /// Stops the passes in progress of the stream whose cancel flag is `flag` (its queued chunks are skipped).
    pub(crate) fn cancel(&self, flag: &Arc<AtomicBool>) {
        self.running.cancel(flag);
    }

    /// The pool's cost model (expected compute of a pass).
    pub fn cost(&self) -> &CostModel {
        &self.cost
    }

    /// Streams synthesizing on this pool now (the competitors a chunk is sized against).
    pub fn streams(&self) -> usize {
        self.streams.load(Ordering::Acquire)
    }

    /// Counts a stream while the returned guard lives.
    pub(crate) fn enter(&self) -> StreamGuard {
        self.streams.fetch_add(1, Ordering::AcqRel);
        StreamGuard(Arc::clone(&self.streams))
    }

    /// The capacity this pool declares now (see [`CapacityControl`]): at most what the threads' current speed
    /// sustains (the cost model over the warm-up utterance, every thread busy).
    pub fn capacity(&self) -> u32 {
        let (ids, audio) = *self.reference.lock().unwrap_or_else(PoisonError::into_inner);
        let pass = self.cost.expected(ids).as_secs_f64().max(1e-9);
        let estimate =
            crate::scheduler::tracking_capacity((self.general * self.max_batch) as f64 * audio / pass);
        self.control().current(Instant::now(), estimate)
    }

    /// The capacity measured at warm-up (the ceiling of [`ModelPool::capacity`]).
    pub fn measured_capacity(&self) -> u32 {
        self.control().max()
    }

    /// A chunk of a stream with audio buffered was ready `margin` seconds before its listener needed it.
    pub(crate) fn record_margin(&self, margin: f64) {
        metrics::histogram!(names::STREAM_MARGIN).record(margin);
        if margin < 0.0 {
            metrics::counter!(names::STREAM_UNDERRUNS_TOTAL).increment(1);
        }
        let load = u32::try_from(self.streams()).unwrap_or(u32::MAX);
        if self.control().record(margin, load, Instant::now()) {
            tracing::info!(
                margin_ms = (margin * 1e3).round(),
                streams = load,
                "A stream came close to running dry: capacity lowered."
            );
            metrics::counter!(names::CAPACITY_DECREASES_TOTAL).increment(1);
        }
    }

    fn control(&self) -> MutexGuard<'_, CapacityControl> {
        self.control.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Measures the pool at warm-up: one pass over a few ids and one over `ids` alone (the cost model's fixed and
    /// per-id parts), then `rounds` rounds of one pass per thread (a full batch per thread when batched) all at
    /// once, whose median gives the throughput under concurrent load and the starting per-id cost. Sets the
    /// capacity to [`crate::scheduler::capacity_from_throughput`] of it.
    pub fn measure(&self, ids: &[i64], scales: Scales, rounds: usize) -> Result<Throughput, EngineError> {
        let run = |items: Vec<Vec<i64>>| -> Result<(f64, f64, Vec<f64>), EngineError> {
            let started = Instant::now();
            // Queued at once, so that every thread finds a full batch when it wakes (queued one by one, the first
            // thread would start on the first chunk alone).
            let mut replies = Vec::with_capacity(items.len());
            let jobs: Vec<(Job, Instant)> = items
                .into_iter()
                .map(|ids| {
                    let (reply, rx) = bounded(1);
                    replies.push(rx);
                    let cancelled = Arc::new(AtomicBool::new(false));
                    let job = Job {
                        ids,
                        scales,
                        cancelled,
                        reply,
                        priority: started,
                        expected: Duration::ZERO,
                        opening: false,
                    };
                    (job, started)
                })
                .collect();
            self.queue.push_all(jobs).map_err(|_| EngineError::Shutdown)?;
            let mut audio = 0usize;
            let mut passes = Vec::with_capacity(replies.len());
            for rx in replies {
                let (out, seconds) = rx.recv().map_err(|_| EngineError::Shutdown)??;
                audio += out.audio.len();
                passes.push(seconds);
            }
            Ok((started.elapsed().as_secs_f64(), audio as f64 / f64::from(self.sample_rate), passes))
        };
        let short: Vec<i64> = ids.iter().take(9).copied().chain(ids.last().copied()).collect();
        let (_, _, t_short) = run(vec![short.clone()])?;
        let (_, audio_seconds, t_long) = run(vec![ids.to_vec()])?;
        let (t_short, t_long) = (t_short[0], t_long[0]);
        let span = ids.len().saturating_sub(short.len()).max(1) as f64;
        let alone_per_id = ((t_long - t_short) / span).max(1e-7);
        let overhead = (t_short - alone_per_id * short.len() as f64).clamp(0.0, t_short);
        let per_thread = self.max_batch;
        let mut rates = Vec::new();
        let mut loaded_per_id = Vec::new();
        for _ in 0..rounds.max(1) {
            // An opening lane takes none of these: the general threads' throughput is what streams get.
            let items = vec![ids.to_vec(); self.general * per_thread];
            let (wall, audio, passes) = run(items)?;
            rates.push(audio / wall.max(1e-9));
            let mean_pass = passes.iter().sum::<f64>() / passes.len().max(1) as f64;
            loaded_per_id.push(((mean_pass - overhead) / (ids.len() * per_thread) as f64).max(alone_per_id));
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let rate = median(&mut rates);
        let per_id = median(&mut loaded_per_id);
        // Batched passes cost about one pass per batch: the cost model stays per pass over the longest item.
        self.cost.overhead_and_per_id(
            overhead,
            if self.max_batch > 1 { per_id * per_thread as f64 } else { per_id },
        );
        let capacity = crate::scheduler::capacity_from_throughput(rate);
        *self.control() = CapacityControl::new(capacity, Instant::now());
        *self.reference.lock().unwrap_or_else(PoisonError::into_inner) = (ids.len(), audio_seconds);
        Ok(Throughput { audio_seconds_per_second: rate, single_pass_seconds: t_long, audio_seconds })
    }

    /// Sets the cost model and the measured capacity directly (tests and benchmarks of a known cost).
    pub fn set_plan(&self, overhead: f64, per_id: f64, capacity: u32) {
        self.cost.overhead_and_per_id(overhead, per_id);
        *self.control() = CapacityControl::new(capacity, Instant::now());
        *self.reference.lock().unwrap_or_else(PoisonError::into_inner) = (0, f64::INFINITY);
    }

    /// Chunks waiting for a model thread.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Forward passes computing now.
    pub fn busy(&self) -> usize {
        self.running.lock().iter().filter(|s| s.is_some()).count()
    }
}

/// Loads the session's kernels and memory with one inference, and with full batches when passes are batched: the
/// second batch is timed (the first pays one-time costs such as a GPU's memory arena growing). The two batches'
/// items have lengths of their own, as real chunks do: on a GPU a repeated shape runs many times faster than a new
/// one (per-shape setup is cached), so timing a repeated batch would overstate the capacity.
fn warm_up(
    model: &mut dyn Model,
    ids: &[i64],
    scales: Scales,
    max_batch: usize,
    role: ThreadRole,
) -> Result<Ready, EngineError> {
    // Every shape of a bucketed model first, so that the passes below and every request find theirs warm.
    let shapes = model.warm_shapes(ids, scales)?;
    if shapes > 0 {
        tracing::debug!(shapes, ?role, "Shapes warmed.");
    }
    let out = model.infer(ids, scales)?;
    let warmup_frames = out.durations.iter().map(|d| f64::from(*d)).sum::<f64>();
    // An opening lane never runs full batches of long chunks: its speed is not the pool's.
    let batch_rtf = if max_batch > 1 && role == ThreadRole::General {
        // Its longest item is one id shorter than the timed batch's, so the padded shapes differ.
        let first = varied(ids, max_batch, 1);
        model.infer_batch(&first.iter().map(Vec::as_slice).collect::<Vec<_>>(), scales)?;
        let timed = varied(ids, max_batch, 0);
        let started = Instant::now();
        let outputs = model.infer_batch(&timed.iter().map(Vec::as_slice).collect::<Vec<_>>(), scales)?;
        let seconds = started.elapsed().as_secs_f64();
        let audio: usize = outputs.iter().map(|o| o.audio.len()).sum();
        let audio = audio as f64 / f64::from(model.sample_rate());
        (audio > 0.0).then(|| seconds / audio)
    } else {
        None
    };
    Ok(Ready { sample_rate: model.sample_rate(), hop_length: model.hop_length(), warmup_frames, batch_rtf })
}

/// `count` prefixes of `ids`, the i-th `skip + i` ids shorter than the whole (cycling within its first half), each
/// ending with the last id.
fn varied(ids: &[i64], count: usize, skip: usize) -> Vec<Vec<i64>> {
    let Some((&last, body)) = ids.split_last() else { return vec![ids.to_vec(); count] };
    let room = (body.len() / 2).max(1);
    (0..count)
        .map(|i| {
            let mut item = body[..body.len() - (skip + i) % room].to_vec();
            item.push(last);
            item
        })
        .collect()
}

/// One model thread's view of its pool.
struct Seat<'a> {
    thread: usize,
    queue: &'a ChunkQueue<Job>,
    running: &'a Running,
    cost: &'a CostModel,
}

fn serve(
    own: &mut dyn Model,
    solo: &Solo,
    seat: &Seat<'_>,
    max_batch: usize,
    policy: &BatchPolicy,
    role: ThreadRole,
) {
    if max_batch > 1 {
        return serve_batches(own, seat.queue, max_batch, policy, role);
    }
    let own_interrupter = own.interrupter();
    while let Some(job) = seat.queue.pop() {
        if job.cancelled.load(Ordering::Acquire) {
            let _ = job.reply.send(Err(EngineError::Cancelled));
            continue;
        }
        // Alone on the machine: the pass may use every core, on the solo model if there is one and it is free.
        let mut solo_guard = if seat.queue.is_empty() && seat.running.others_idle(seat.thread) {
            solo.0.try_lock().ok().filter(|g| g.is_some())
        } else {
            None
        };
        let alone = solo_guard.is_some();
        let (model, interrupter): (&mut dyn Model, &Option<Arc<dyn Interrupt>>) =
            match solo_guard.as_deref_mut().and_then(Option::as_mut) {
                Some((m, i)) => (m.as_mut(), &*i),
                None => (&mut *own, &own_interrupter),
            };
        let started = Instant::now();
        let pass = RunningPass { started, expected: job.expected, priority: job.priority, stoppable: true };
        seat.running.set(
            seat.thread,
            Some(Slot { pass, cancelled: Arc::clone(&job.cancelled), interrupter: interrupter.clone() }),
        );
        // A cancel that came between the check above and the slot being set is seen here.
        let result = if job.cancelled.load(Ordering::Acquire) {
            Err(EngineError::Cancelled)
        } else {
            model.infer(&job.ids, job.scales)
        };
        seat.running.set(seat.thread, None);
        let stopped = interrupter.as_ref().is_some_and(|i| {
            let stopped = i.interrupted();
            i.reset();
            stopped
        });
        if result.is_err() && (stopped || job.cancelled.load(Ordering::Acquire)) {
            if job.cancelled.load(Ordering::Acquire) {
                let _ = job.reply.send(Err(EngineError::Cancelled));
                continue;
            }
            metrics::counter!(names::ENGINE_PREEMPTIONS_TOTAL).increment(1);
            tracing::debug!(lost_ms = started.elapsed().as_millis(), "Chunk preempted for an urgent one.");
            let priority = job.priority;
            // Queued again with its priority; if the pool is closing, dropping it ends its stream.
            let _ = seat.queue.push(job, priority);
            continue;
        }
        let seconds = started.elapsed().as_secs_f64();
        if result.is_ok() && !alone {
            seat.cost.observe(job.ids.len(), seconds);
        }
        metrics::histogram!(names::ENGINE_BATCH_SIZE).record(1.0);
        let _ = job.reply.send(result.map(|out| (out, seconds)));
    }
}

/// Decrements a pool's stream count when dropped.
#[derive(Debug)]
pub(crate) struct StreamGuard(Arc<AtomicUsize>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The batched loop: the most urgent chunk and the next most urgent ones that may share its pass (the same scales,
/// since one forward pass takes one set; the same id bucket on shape buckets), up to `max_batch`. An opening lane
/// takes opening chunks only.
fn serve_batches(
    model: &mut dyn Model,
    queue: &ChunkQueue<Job>,
    max_batch: usize,
    policy: &BatchPolicy,
    role: ThreadRole,
) {
    let next = || match role {
        ThreadRole::General => queue.pop_batch(max_batch, |a, b| policy.compatible(a, b)),
        ThreadRole::Opening => {
            queue.pop_batch_where(|j| j.opening, max_batch, |a, b| policy.compatible(a, b))
        }
    };
    while let Some(batch) = next() {
        let (jobs, cancelled): (Vec<Job>, Vec<Job>) =
            batch.into_iter().partition(|job| !job.cancelled.load(Ordering::Acquire));
        for job in cancelled {
            let _ = job.reply.send(Err(EngineError::Cancelled));
        }
        let Some(scales) = jobs.first().map(|job| job.scales) else { continue };
        let started = Instant::now();
        let items: Vec<&[i64]> = jobs.iter().map(|job| job.ids.as_slice()).collect();
        let result = model.infer_batch(&items, scales);
        let seconds = started.elapsed().as_secs_f64();
        metrics::histogram!(names::ENGINE_BATCH_SIZE).record(jobs.len() as f64);
        let result = result.and_then(|outputs| {
            if outputs.len() == jobs.len() {
                Ok(outputs)
            } else {
                Err(EngineError::Inference(format!("{} outputs for {} chunks", outputs.len(), jobs.len())))
            }
        });
        match result {
            Ok(outputs) => {
                for (job, out) in jobs.into_iter().zip(outputs) {
                    let _ = job.reply.send(Ok((out, seconds)));
                }
            }
            Err(e) => {
                for job in jobs {
                    let _ = job.reply.send(Err(e.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const A: Scales = Scales { noise_scale: 0.5, length_scale: 1.0, noise_w: 0.5 };
    const B: Scales = Scales { noise_scale: 0.5, length_scale: 2.0, noise_w: 0.5 };

    /// What the passes of a [`Batched`] model record: each one's thread role and its items' lengths.
    type Passes = Arc<Mutex<Vec<(ThreadRole, Vec<usize>)>>>;

    /// A batched test double for the pool: each pass records its thread's role and its items' lengths, then takes
    /// as long as its [`Cost`] says.
    struct Batched {
        role: ThreadRole,
        passes: Passes,
        cost: Cost,
    }

    #[derive(Clone, Copy)]
    enum Cost {
        /// 100 ms a pass, whatever it holds; 100 samples an item.
        Fixed,
        /// As many milliseconds as the pass's longest item has ids (every item is padded to it); 10 samples an id.
        Padded,
    }

    impl Model for Batched {
        fn sample_rate(&self) -> u32 {
            1000
        }

        fn hop_length(&self) -> usize {
            1
        }

        fn infer(&mut self, ids: &[i64], scales: Scales) -> Result<ModelOutput, EngineError> {
            self.infer_batch(&[ids], scales).map(|mut v| v.remove(0))
        }

        fn infer_batch(&mut self, items: &[&[i64]], _: Scales) -> Result<Vec<ModelOutput>, EngineError> {
            let lengths: Vec<usize> = items.iter().map(|i| i.len()).collect();
            let longest = lengths.iter().copied().max().unwrap_or(0);
            self.passes.lock().unwrap().push((self.role, lengths));
            let pass_ms = match self.cost {
                Cost::Fixed => 100,
                Cost::Padded => longest as u64,
            };
            thread::sleep(Duration::from_millis(pass_ms));
            let output = |n: usize| match self.cost {
                Cost::Fixed => ModelOutput { audio: vec![0.0; 100], durations: vec![1.0; n] },
                Cost::Padded => ModelOutput { audio: vec![0.0; n * 10], durations: vec![10.0; n] },
            };
            Ok(items.iter().map(|ids| output(ids.len())).collect())
        }
    }

    /// A pool over [`Batched`] models of `cost`, and the passes they record (cleared after the warm-up).
    fn batched_pool(
        name: &str,
        threads: usize,
        max_batch: usize,
        policy: BatchPolicy,
        cost: Cost,
        warmup_ids: Vec<i64>,
    ) -> (ModelPool, Passes) {
        let passes: Passes = Arc::default();
        let recorder = Arc::clone(&passes);
        let factory =
            move |role| Ok(Box::new(Batched { role, passes: Arc::clone(&recorder), cost }) as Box<dyn Model>);
        let pool =
            ModelPool::start_with(name, threads, max_batch, policy, factory, None, warmup_ids, A).unwrap();
        passes.lock().unwrap().clear();
        (pool, passes)
    }

    /// How many chunks each recorded pass took.
    fn pass_sizes(passes: &Passes) -> Vec<usize> {
        passes.lock().unwrap().iter().map(|(_, lengths)| lengths.len()).collect()
    }

    /// A pool of one thread over a [`Batched`] model of fixed cost with batches of up to `max_batch`, and the
    /// passes it records (cleared after the warm-up).
    fn recorded_pool(max_batch: usize) -> (ModelPool, Passes) {
        batched_pool("t", 1, max_batch, BatchPolicy::default(), Cost::Fixed, vec![1, 2])
    }

    #[test]
    fn chunks_waiting_together_with_the_same_scales_share_a_pass_up_to_the_limit() {
        let (pool, passes) = recorded_pool(4);
        assert!(pool.batch_rtf().is_some(), "a batched pool times a full batch at warm-up");
        let t0 = Instant::now();
        let submit = |id: i64, scales: Scales, after_ms: u64, cancelled: bool| {
            let flag = Arc::new(AtomicBool::new(cancelled));
            pool.submit(vec![id], scales, flag, t0 + Duration::from_millis(after_ms), Duration::ZERO).unwrap()
        };
        let first = submit(0, A, 0, false);
        // Once the first pass has started (alone), the others queue behind it.
        let started = Instant::now();
        while passes.lock().unwrap().is_empty() && started.elapsed() < Duration::from_secs(10) {
            thread::sleep(Duration::from_millis(2));
        }
        // While the first pass runs: six chunks with scales A (one of them cancelled) and one with scales B,
        // which is due between them.
        let waiting: Vec<_> = [(1, A, 10, false), (2, A, 20, true), (3, A, 30, false), (4, B, 35, false)]
            .into_iter()
            .chain([(5, A, 40, false), (6, A, 50, false), (7, A, 60, false)])
            .map(|(id, s, at, c)| (id, submit(id, s, at, c)))
            .collect();
        first.recv().unwrap().unwrap();
        for (id, rx) in waiting {
            let result = rx.recv().unwrap();
            if id == 2 {
                assert_eq!(result.unwrap_err(), EngineError::Cancelled);
            } else {
                assert_eq!(result.unwrap().0.durations.len(), 1, "chunk {id} got its own output");
            }
        }
        // 1, then the four most urgent A chunks (one cancelled, so three run), then the B chunk alone (the most
        // urgent left), then the two last A chunks.
        assert_eq!(pass_sizes(&passes), [1, 3, 1, 2]);
    }

    #[test]
    fn warm_up_batches_have_lengths_of_their_own() {
        let ids: Vec<i64> = (0..20).collect();
        let timed = varied(&ids, 4, 0);
        let lengths = |v: &[Vec<i64>]| v.iter().map(Vec::len).collect::<Vec<_>>();
        assert_eq!(lengths(&timed), [20, 19, 18, 17]);
        let first = varied(&ids, 4, 1);
        assert_eq!(lengths(&first), [19, 18, 17, 16]);
        assert!(timed.iter().chain(&first).all(|item| item.last() == Some(&19) && item[0] == 0));
        // Short inputs and large batches stay valid (at least the last id).
        assert!(varied(&[7], 300, 0).iter().all(|item| item == &[7]));
        assert!(varied(&ids, 300, 300).iter().all(|item| item.len() >= 11));
    }

    /// A model of known cost for the pool: a pass over `n` ids takes `n` milliseconds (slept in 2 ms steps) and
    /// stops early, with an error, when interrupted, like an ONNX Runtime session with its terminate flag.
    struct Timed {
        stop: Arc<Flag>,
        /// The value of every sample it outputs (tells which model ran a pass).
        tag: f32,
    }

    #[derive(Default)]
    struct Flag(AtomicBool);

    impl Interrupt for Flag {
        fn interrupt(&self) {
            self.0.store(true, Ordering::Release);
        }
        fn interrupted(&self) -> bool {
            self.0.load(Ordering::Acquire)
        }
        fn reset(&self) {
            self.0.store(false, Ordering::Release);
        }
    }

    impl Model for Timed {
        fn sample_rate(&self) -> u32 {
            1000
        }

        fn hop_length(&self) -> usize {
            1
        }

        fn infer(&mut self, ids: &[i64], _: Scales) -> Result<ModelOutput, EngineError> {
            let end = Instant::now() + Duration::from_millis(ids.len() as u64);
            while Instant::now() < end {
                if self.stop.interrupted() {
                    return Err(EngineError::Inference("terminated".into()));
                }
                thread::sleep(Duration::from_millis(2));
            }
            Ok(ModelOutput { audio: vec![self.tag; ids.len() * 10], durations: vec![10.0; ids.len()] })
        }

        fn interrupter(&self) -> Option<Arc<dyn Interrupt>> {
            Some(Arc::clone(&self.stop) as Arc<dyn Interrupt>)
        }
    }

    fn timed_pool(threads: usize) -> ModelPool {
        let factory = || Ok(Box::new(Timed { stop: Arc::default(), tag: 0.1 }) as Box<dyn Model>);
        ModelPool::start("timed", threads, 1, factory, None, vec![1, 2], A).unwrap()
    }

    #[test]
    fn a_lone_chunk_runs_on_the_solo_model_and_chunks_under_load_on_the_shared_ones() {
        let factory = || Ok(Box::new(Timed { stop: Arc::default(), tag: 0.1 }) as Box<dyn Model>);
        let solo: SoloFactory =
            Box::new(|| Ok(Box::new(Timed { stop: Arc::default(), tag: 0.9 }) as Box<dyn Model>));
        let pool = ModelPool::start("solo", 2, 1, factory, Some(solo), vec![1, 2], A).unwrap();
        let submit = |n: usize| {
            pool.submit(vec![0; n], A, Arc::new(AtomicBool::new(false)), Instant::now(), Duration::ZERO)
                .unwrap()
        };
        let tag = |rx: crossbeam_channel::Receiver<JobResult>| rx.recv().unwrap().unwrap().0.audio[0];
        // Alone: the solo model (every core).
        assert_eq!(tag(submit(30)), 0.9);
        // While another thread computes, a chunk runs on a shared session (one core each). The long chunk is seen
        // started before the next is submitted, so that no scheduling delay of a loaded machine decides the result.
        let long = submit(600);
        wait_until("the long chunk to start", || pool.busy() >= 1);
        assert_eq!(tag(submit(50)), 0.1, "a chunk beside a running one took the solo session");
        assert_eq!(tag(long), 0.9, "the long chunk started alone");
    }

    fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
        let t0 = Instant::now();
        while !done() {
            assert!(t0.elapsed() < Duration::from_secs(10), "timed out waiting for {what}");
            thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn a_cancelled_stream_frees_its_thread_at_once_and_its_queued_chunk_is_skipped() {
        let pool = timed_pool(1);
        let flag = Arc::new(AtomicBool::new(false));
        // A 2 s pass, and behind it a chunk of the same stream and one of another stream.
        let long =
            pool.submit(vec![0; 2000], A, Arc::clone(&flag), Instant::now(), Duration::from_secs(2)).unwrap();
        wait_until("the pass to start", || pool.queued() == 0);
        let queued = pool.submit(vec![0; 500], A, Arc::clone(&flag), Instant::now(), Duration::ZERO).unwrap();
        let other_flag = Arc::new(AtomicBool::new(false));
        let other = pool.submit(vec![0; 20], A, other_flag, Instant::now(), Duration::ZERO).unwrap();
        thread::sleep(Duration::from_millis(50));
        let cancelled_at = Instant::now();
        flag.store(true, Ordering::Release);
        pool.cancel(&flag);
        assert_eq!(long.recv().unwrap().unwrap_err(), EngineError::Cancelled);
        assert_eq!(queued.recv().unwrap().unwrap_err(), EngineError::Cancelled);
        let (out, _) = other.recv().unwrap().unwrap();
        // The other stream's 20 ms chunk ran right after: the thread was freed within a few milliseconds of the
        // cancel, not after the 2 s pass.
        let freed = cancelled_at.elapsed();
        assert_eq!(out.durations.len(), 20);
        assert!(freed < Duration::from_millis(500), "the thread was busy {freed:?} after the cancel");
        assert_eq!(pool.queued(), 0, "the queue still holds the cancelled stream's work");
    }

    #[test]
    fn an_urgent_chunk_stops_a_pass_whose_stream_can_wait_on_any_thread() {
        let pool = timed_pool(2);
        let now = Instant::now();
        // Two 1.5 s passes of streams with different slack (due in 20 s and 10 s).
        let long_pass = |due_in_s: u64| {
            let flag = Arc::new(AtomicBool::new(false));
            let due = now + Duration::from_secs(due_in_s);
            pool.submit(vec![0; 1500], A, flag, due, Duration::from_millis(1500)).unwrap()
        };
        let relaxed = long_pass(20);
        thread::sleep(Duration::from_millis(30));
        let busy = long_pass(10);
        wait_until("both passes to start", || pool.queued() == 0);
        thread::sleep(Duration::from_millis(50));
        // A new stream's first chunk: due now, every thread busy.
        let urgent_at = Instant::now();
        let urgent = pool
            .submit(
                vec![0; 30],
                A,
                Arc::new(AtomicBool::new(false)),
                Instant::now(),
                Duration::from_millis(30),
            )
            .unwrap();
        urgent.recv().unwrap().unwrap();
        let waited = urgent_at.elapsed();
        assert!(
            waited < Duration::from_millis(400),
            "the urgent chunk waited {waited:?} behind 1.5 s passes"
        );
        // Both stopped-or-not chunks still complete: nothing is lost, only recomputed.
        relaxed.recv().unwrap().unwrap();
        busy.recv().unwrap().unwrap();
    }

    /// A pool of `threads` over [`Batched`] models of padded cost with batches of up to 4, and their passes.
    fn padded_pool(threads: usize, policy: BatchPolicy) -> (ModelPool, Passes) {
        batched_pool("padded", threads, 4, policy, Cost::Padded, vec![1; 20])
    }

    #[test]
    fn passes_take_chunks_of_one_id_bucket() {
        let policy = BatchPolicy { id_buckets: vec![16, 128, 1024], opening_lane: false };
        let (pool, passes) = padded_pool(1, policy);
        let t0 = Instant::now();
        let submit = |len: usize, after_ms: u64| {
            let flag = Arc::new(AtomicBool::new(false));
            pool.submit(vec![0; len], A, flag, t0 + Duration::from_millis(after_ms), Duration::ZERO).unwrap()
        };
        let first = submit(5, 0);
        wait_until("the first pass to start", || !passes.lock().unwrap().is_empty());
        // While it runs: short chunks and long ones, due in turn.
        let waiting: Vec<_> = [(10, 10), (100, 20), (12, 30), (90, 40), (14, 50), (500, 60)]
            .map(|(len, at)| submit(len, at))
            .into();
        first.recv().unwrap().unwrap();
        for rx in waiting {
            rx.recv().unwrap().unwrap();
        }
        let lengths: Vec<Vec<usize>> = passes.lock().unwrap().iter().map(|(_, l)| l.clone()).collect();
        // The short chunks together (not padded to 100 or 500 ids), then the two of 90-100, then the long one.
        assert_eq!(lengths, [vec![5], vec![10, 12, 14], vec![100, 90], vec![500]]);
    }

    #[test]
    fn with_an_opening_lane_a_first_chunk_never_waits_for_a_long_pass() {
        let policy = BatchPolicy { id_buckets: vec![64, 1024], opening_lane: true };
        let (pool, passes) = padded_pool(2, policy);
        assert_eq!((pool.threads(), pool.general_threads()), (2, 1));
        // Long chunks of streams with seconds buffered keep the general thread busy (600 ms passes).
        let later = Instant::now() + Duration::from_secs(5);
        let long: Vec<_> = (0..4)
            .map(|_| {
                pool.submit(vec![0; 600], A, Arc::new(AtomicBool::new(false)), later, Duration::ZERO).unwrap()
            })
            .collect();
        wait_until("the long pass to start", || !passes.lock().unwrap().is_empty());
        thread::sleep(Duration::from_millis(20));
        // A new stream's first chunk (30 ids, a 30 ms pass).
        let asked = Instant::now();
        let flag = Arc::new(AtomicBool::new(false));
        let opening = pool.submit_chunk(vec![0; 30], A, flag, Instant::now(), Duration::ZERO, true).unwrap();
        opening.recv().unwrap().unwrap();
        let waited = asked.elapsed();
        assert!(waited < Duration::from_millis(300), "the opening chunk waited {waited:?} (a 30 ms pass)");
        for rx in long {
            rx.recv().unwrap().unwrap();
        }
        // The lane ran the opening chunk alone, the general thread every long chunk.
        let passes = passes.lock().unwrap().clone();
        assert!(passes.contains(&(ThreadRole::Opening, vec![30])), "{passes:?}");
        for (role, lengths) in &passes {
            assert!(*role == ThreadRole::General || lengths == &[30], "{passes:?}");
            assert!(
                !(lengths.contains(&30) && lengths.contains(&600)),
                "a first chunk rode in a long pass: {passes:?}"
            );
        }
    }

    #[test]
    fn without_a_free_thread_a_first_chunk_waits_for_the_long_pass() {
        // One thread, no lane: the opening chunk waits for the 600 ms batch (what the lane prevents).
        let policy = BatchPolicy { id_buckets: vec![64, 1024], opening_lane: true };
        let (pool, passes) = padded_pool(1, policy);
        assert!(!pool.has_opening_lane(), "a lane needs two threads");
        let later = Instant::now() + Duration::from_secs(5);
        let long =
            pool.submit(vec![0; 600], A, Arc::new(AtomicBool::new(false)), later, Duration::ZERO).unwrap();
        wait_until("the long pass to start", || !passes.lock().unwrap().is_empty());
        let asked = Instant::now();
        let flag = Arc::new(AtomicBool::new(false));
        let opening = pool.submit_chunk(vec![0; 30], A, flag, Instant::now(), Duration::ZERO, true).unwrap();
        opening.recv().unwrap().unwrap();
        assert!(asked.elapsed() > Duration::from_millis(400), "waited only {:?}", asked.elapsed());
        long.recv().unwrap().unwrap();
    }

    #[test]
    fn an_opening_lane_takes_no_part_in_the_throughput_measure() {
        let policy = BatchPolicy { id_buckets: vec![64, 1024], opening_lane: true };
        let (pool, passes) = padded_pool(3, policy);
        assert_eq!((pool.threads(), pool.general_threads()), (3, 2));
        let throughput = pool.measure(&[1; 40], A, 1).unwrap();
        assert!(throughput.audio_seconds_per_second > 0.0);
        let passes = passes.lock().unwrap().clone();
        assert!(passes.iter().all(|(role, _)| *role == ThreadRole::General), "{passes:?}");
        // One round: a full batch on each of the two general threads at once.
        assert_eq!(passes.iter().filter(|(_, l)| l.len() == 4).count(), 2, "{passes:?}");
    }

    #[test]
    fn unbatched_pools_take_one_chunk_per_pass() {
        let (pool, passes) = recorded_pool(1);
        assert!(pool.batch_rtf().is_none());
        let rxs: Vec<_> = (0..3)
            .map(|i| {
                pool.submit(vec![i], A, Arc::new(AtomicBool::new(false)), Instant::now(), Duration::ZERO)
                    .unwrap()
            })
            .collect();
        for rx in rxs {
            rx.recv().unwrap().unwrap();
        }
        assert_eq!(pass_sizes(&passes), [1, 1, 1]);
    }
}
