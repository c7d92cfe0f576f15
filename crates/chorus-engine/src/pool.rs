//! Model threads: each owns one session and takes the most urgent chunk from the voice's scheduler queue. The last
//! thread's chunk can be preempted for a chunk that is due now (see [`crate::scheduler`]).
//!
//! With a batch limit above one (a GPU), a thread takes the most urgent chunk plus the next most urgent ones that
//! share its scales, up to the limit, and runs them as one forward pass: on a GPU a batch costs about as much as
//! one chunk, so the chunks due together are computed together. Batched passes are not preempted.
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
    pub fn start<F>(
        name: &str,
        threads: usize,
        max_batch: usize,
        factory: F,
        warmup_ids: Vec<i64>,
        warmup_scales: Scales,
    ) -> Result<Self, EngineError>
    where
        F: Fn() -> Result<Box<dyn Model>, EngineError> + Send + Sync + 'static,
    {
        let threads = threads.max(1);
        let max_batch = max_batch.max(1);
        let queue = Arc::new(ChunkQueue::<Job>::new(QUEUE_LIMIT));
        let (ready_tx, ready_rx) = bounded::<Result<Ready, EngineError>>(threads);
        let factory = Arc::new(factory);
        let preemptible = Arc::new(Preemptible::default());
        for i in 0..threads {
            // The last thread's chunks may be preempted (see `scheduler`), unless passes are batched.
            let preempt = (i == threads - 1 && max_batch == 1).then(|| Arc::clone(&preemptible));
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
                    let warm = warm_up(model.as_mut(), &warmup_ids, warmup_scales, max_batch);
                    let ready = match warm {
                        Ok(ready) => ready,
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
                    let _ = ready_tx.send(Ok(ready));
                    drop(ready_tx);
                    serve(model.as_mut(), &queue, preempt.as_deref(), max_batch);
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
            preemptible,
            _closer: closer,
            sample_rate,
            hop_length,
            threads,
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

/// Loads the session's kernels and memory with one inference, and with full batches when passes are batched: the
/// second batch is timed (the first pays one-time costs such as a GPU's memory arena growing). The two batches'
/// items have lengths of their own, as real chunks do: on a GPU a repeated shape runs many times faster than a new
/// one (per-shape setup is cached), so timing a repeated batch would overstate the capacity.
fn warm_up(
    model: &mut dyn Model,
    ids: &[i64],
    scales: Scales,
    max_batch: usize,
) -> Result<Ready, EngineError> {
    let out = model.infer(ids, scales)?;
    let warmup_frames = out.durations.iter().map(|d| f64::from(*d)).sum::<f64>();
    let batch_rtf = if max_batch > 1 {
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

fn serve(
    model: &mut dyn Model,
    queue: &ChunkQueue<Job>,
    preemptible: Option<&Preemptible>,
    max_batch: usize,
) {
    if max_batch > 1 {
        return serve_batches(model, queue, max_batch);
    }
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
        metrics::histogram!(names::ENGINE_BATCH_SIZE).record(1.0);
        let _ = job.reply.send(result.map(|out| (out, started.elapsed().as_secs_f64())));
    }
}

/// The batched loop: the most urgent chunk and the next most urgent ones with the same scales (one forward pass
/// takes one set of scales), up to `max_batch`.
fn serve_batches(model: &mut dyn Model, queue: &ChunkQueue<Job>, max_batch: usize) {
    while let Some(batch) = queue.pop_batch(max_batch, |a, b| a.scales == b.scales) {
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

    /// A test double for the pool only: each pass takes 100 ms and records how many chunks it took.
    struct Recorder(Arc<Mutex<Vec<usize>>>);

    impl Model for Recorder {
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
            self.0.lock().unwrap().push(items.len());
            thread::sleep(Duration::from_millis(100));
            Ok(items
                .iter()
                .map(|ids| ModelOutput { audio: vec![0.0; 100], durations: vec![1.0; ids.len()] })
                .collect())
        }
    }

    const A: Scales = Scales { noise_scale: 0.5, length_scale: 1.0, noise_w: 0.5 };
    const B: Scales = Scales { noise_scale: 0.5, length_scale: 2.0, noise_w: 0.5 };

    /// A pool of one thread over a [`Recorder`] with batches of up to `max_batch`, and the passes it records
    /// (cleared after the warm-up).
    fn recorded_pool(max_batch: usize) -> (ModelPool, Arc<Mutex<Vec<usize>>>) {
        let passes = Arc::new(Mutex::new(Vec::new()));
        let recorder = Arc::clone(&passes);
        let factory = move || Ok(Box::new(Recorder(Arc::clone(&recorder))) as Box<dyn Model>);
        let pool = ModelPool::start("t", 1, max_batch, factory, vec![1, 2], A).unwrap();
        passes.lock().unwrap().clear();
        (pool, passes)
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
        assert_eq!(*passes.lock().unwrap(), [1, 3, 1, 2]);
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
        assert_eq!(*passes.lock().unwrap(), [1, 1, 1]);
    }
}
