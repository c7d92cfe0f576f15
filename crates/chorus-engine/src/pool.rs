//! Model threads: each owns one session and takes the most urgent chunk from the voice's scheduler queue. The last
//! thread's chunk can be preempted for a chunk that is due now (see [`crate::scheduler`]).
//!
//! Models never run on an async runtime's workers. Sessions load in parallel, each is warmed up with one inference,
//! and [`ModelPool::start`] returns only when every thread is ready.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, bounded};

use crate::EngineError;
use crate::model::{Interrupt, Model, ModelOutput, Scales};
use crate::scheduler::{ChunkQueue, PREEMPTIBLE_SLACK, PushError};
use chorus_proto::metrics as names;

/// Chunks that may wait at once. Each stream keeps at most one queued, so this is above any capacity.
const QUEUE_LIMIT: usize = 1024;

/// A chunk to synthesize.
pub(crate) struct Job {
    pub ids: Vec<i64>,
    pub scales: Scales,
    /// Set when the request is gone; the job is then skipped.
    pub cancelled: Arc<AtomicBool>,
    pub reply: Sender<JobResult>,
    /// Its place in the queue (see [`crate::scheduler::latest_start`]), kept to queue it again if preempted.
    pub priority: Instant,
    /// Its expected compute time.
    pub expected: Duration,
}

/// A preemptible forward pass in progress.
struct Running {
    interrupter: Arc<dyn Interrupt>,
    started: Instant,
    expected: Duration,
}

/// The forward pass that may be stopped for an urgent chunk: the preemptible thread's, while it runs a chunk
/// with enough slack.
#[derive(Default)]
struct Preemptible(Mutex<Option<Running>>);

impl std::fmt::Debug for Preemptible {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Preemptible")
    }
}

impl Preemptible {
    fn set(&self, running: Option<Running>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = running;
    }

    /// Stops the preemptible pass in progress, if any (under the lock, so never one that already ended), unless it
    /// is past half its expected compute: then waiting for it loses less than stopping it.
    fn fire(&self) {
        if let Some(running) = self.0.lock().unwrap_or_else(PoisonError::into_inner).as_ref()
            && running.started.elapsed() < running.expected / 2
        {
            running.interrupter.interrupt();
        }
    }
}

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

/// A handle to a voice's model threads. Cloning is cheap; the threads stop when every handle is dropped.
#[derive(Debug, Clone)]
pub struct ModelPool {
    queue: Arc<ChunkQueue<Job>>,
    preemptible: Arc<Preemptible>,
    _closer: Arc<Closer>,
    sample_rate: u32,
    hop_length: usize,
    threads: usize,
    warmup_frames: f64,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job").field("ids", &self.ids.len()).finish_non_exhaustive()
    }
}

impl ModelPool {
    /// Starts `threads` model threads named `chorus-model-<name>-<i>`, each building its model with `factory` and
    /// warming it up on `warmup_ids`. Fails if any model fails to load.
    pub fn start<F>(
        name: &str,
        threads: usize,
        factory: F,
        warmup_ids: Vec<i64>,
        warmup_scales: Scales,
    ) -> Result<Self, EngineError>
    where
        F: Fn() -> Result<Box<dyn Model>, EngineError> + Send + Sync + 'static,
    {
        let threads = threads.max(1);
        let queue = Arc::new(ChunkQueue::<Job>::new(QUEUE_LIMIT));
        let (ready_tx, ready_rx) = bounded::<Result<(u32, usize, f64), EngineError>>(threads);
        let factory = Arc::new(factory);
        let preemptible = Arc::new(Preemptible::default());
        for i in 0..threads {
            // The last thread's chunks may be preempted (see `scheduler`).
            let preempt = (i == threads - 1).then(|| Arc::clone(&preemptible));
            let queue = Arc::clone(&queue);
            let ready_tx = ready_tx.clone();
            let factory = Arc::clone(&factory);
            let warmup_ids = warmup_ids.clone();
            thread::Builder::new()
                .name(format!("chorus-model-{name}-{i}"))
                .spawn(move || {
                    let started = Instant::now();
                    let mut model = match factory() {
                        Ok(m) => m,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let loaded = started.elapsed();
                    let frames = match model.infer(&warmup_ids, warmup_scales) {
                        Ok(out) => out.durations.iter().map(|d| f64::from(*d)).sum::<f64>(),
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    tracing::debug!(
                        thread = i,
                        preemptible = preempt.is_some(),
                        load_ms = loaded.as_millis(),
                        warm_ms = (started.elapsed() - loaded).as_millis(),
                        "Model thread ready."
                    );
                    let _ = ready_tx.send(Ok((model.sample_rate(), model.hop_length(), frames)));
                    drop(ready_tx);
                    serve(model.as_mut(), &queue, preempt.as_deref());
                })
                .map_err(|e| EngineError::Runtime(format!("cannot start a model thread: {e}")))?;
        }
        drop(ready_tx);
        let mut shape = None;
        for _ in 0..threads {
            shape = Some(ready_rx.recv().map_err(|_| EngineError::Shutdown)??);
        }
        let (sample_rate, hop_length, warmup_frames) = shape.ok_or(EngineError::Shutdown)?;
        let closer = Arc::new(Closer(Arc::clone(&queue)));
        Ok(Self { queue, preemptible, _closer: closer, sample_rate, hop_length, threads, warmup_frames })
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
        let (reply, rx) = bounded(1);
        let job = Job { ids, scales, cancelled, reply, priority: deadline, expected };
        let idle = self.queue.push_idle(job, deadline).map_err(|e| match e {
            PushError::Closed => EngineError::Shutdown,
            PushError::Full => {
                EngineError::Runtime("the chunk queue is full (more streams than capacity)".into())
            }
        })?;
        // Due now and every thread busy: stop the preemptible thread's chunk if it is not due soon.
        if idle == 0 && deadline <= Instant::now() {
            self.preemptible.fire();
        }
        Ok(rx)
    }

    /// Chunks waiting for a model thread.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }
}

fn serve(model: &mut dyn Model, queue: &ChunkQueue<Job>, preemptible: Option<&Preemptible>) {
    let interrupter = preemptible.and_then(|_| model.interrupter());
    while let Some(job) = queue.pop() {
        if job.cancelled.load(Ordering::Acquire) {
            let _ = job.reply.send(Err(EngineError::Cancelled));
            continue;
        }
        let started = Instant::now();
        // Registered as preemptible only with enough slack: stopping it cannot make its stream underrun.
        let stoppable = match (preemptible, &interrupter) {
            (Some(slot), Some(i)) if job.priority > started + PREEMPTIBLE_SLACK => Some((slot, i)),
            (Some(_) | None, Some(_) | None) => None,
        };
        if let Some((slot, i)) = stoppable {
            slot.set(Some(Running { interrupter: Arc::clone(i), started, expected: job.expected }));
        }
        let result = model.infer(&job.ids, job.scales);
        if let Some((slot, i)) = stoppable {
            slot.set(None);
            let stopped = i.interrupted();
            i.reset();
            if stopped && result.is_err() {
                metrics::counter!(names::ENGINE_PREEMPTIONS_TOTAL).increment(1);
                tracing::debug!(
                    lost_ms = started.elapsed().as_millis(),
                    "Chunk preempted for an urgent one."
                );
                let priority = job.priority;
                // Queued again with its priority; if the pool is closing, dropping it ends its stream.
                let _ = queue.push(job, priority);
                continue;
            }
        }
        let _ = job.reply.send(result.map(|out| (out, started.elapsed().as_secs_f64())));
    }
}
