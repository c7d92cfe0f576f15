//! The in-process bus: workers registered in the same process, reached by function call.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chorus_proto::SynthesisJob;
use tokio::sync::{Notify, watch};

use crate::{
    BoxFuture, Bus, BusError, JobHandle, ModelInfo, Offer, Refusal, Worker, WorkerStatus, announce,
    served_models,
};

/// How often a queued request looks again for a free slot when none was freed.
const CAPACITY_POLL: Duration = Duration::from_millis(100);

/// Queueing when every worker is busy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalBusConfig {
    /// Requests that may wait for a slot at once; beyond it, `Busy` at once.
    pub max_queue: usize,
    /// How long a request waits for a slot before `Busy`.
    pub queue_timeout: Duration,
}

impl Default for LocalBusConfig {
    fn default() -> Self {
        Self { max_queue: 256, queue_timeout: Duration::from_secs(30) }
    }
}

/// Held by a worker for the length of a job; dropping it wakes requests waiting for a slot.
#[derive(Debug)]
pub struct SlotGuard {
    freed: Arc<Notify>,
}

impl SlotGuard {
    /// A guard that notifies nobody (for workers driven outside a bus, e.g. in tests).
    pub fn detached() -> Self {
        Self { freed: Arc::new(Notify::new()) }
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.freed.notify_waiters();
    }
}

/// The registered workers now (the lock is not held while they are asked anything).
fn snapshot(workers: &RwLock<Vec<Arc<dyn Worker>>>) -> Vec<Arc<dyn Worker>> {
    workers.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
}

/// Announces the models `workers` serve now.
fn announce_workers(workers: &RwLock<Vec<Arc<dyn Worker>>>, to: &watch::Sender<Vec<ModelInfo>>) {
    announce(to, served_models(snapshot(workers).iter().map(|w| w.status())));
}

/// The bus `chorus serve` uses: API and workers in one process.
#[derive(Clone)]
pub struct LocalBus {
    workers: Arc<RwLock<Vec<Arc<dyn Worker>>>>,
    /// The models the workers serve, sent on every change ([`Bus::announcements`]).
    announced: Arc<watch::Sender<Vec<ModelInfo>>>,
    freed: Arc<Notify>,
    queued: Arc<AtomicUsize>,
    config: LocalBusConfig,
}

impl std::fmt::Debug for LocalBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalBus")
            .field("queued", &self.queued.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl LocalBus {
    pub fn new(config: LocalBusConfig) -> Self {
        Self {
            workers: Arc::new(RwLock::new(Vec::new())),
            announced: Arc::new(watch::Sender::new(Vec::new())),
            freed: Arc::new(Notify::new()),
            queued: Arc::new(AtomicUsize::new(0)),
            config,
        }
    }

    pub fn register(&self, worker: Arc<dyn Worker>) {
        // The callback holds the bus weakly: a worker and its bus do not keep each other alive.
        let (workers, announced) = (Arc::downgrade(&self.workers), Arc::downgrade(&self.announced));
        worker.on_models_changed(Box::new(move || {
            if let (Some(workers), Some(announced)) = (workers.upgrade(), announced.upgrade()) {
                announce_workers(&workers, &announced);
            }
        }));
        self.workers.write().unwrap_or_else(std::sync::PoisonError::into_inner).push(worker);
        announce_workers(&self.workers, &self.announced);
        self.freed.notify_waiters();
    }

    /// Requests waiting for a free slot now.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    fn snapshot(&self) -> Vec<Arc<dyn Worker>> {
        snapshot(&self.workers)
    }

    /// One attempt: the least-loaded worker of the model with a free slot takes the job.
    fn try_start(&self, job: &SynthesisJob) -> Result<JobHandle, BusError> {
        let mut candidates: Vec<(Arc<dyn Worker>, WorkerStatus)> = self
            .snapshot()
            .into_iter()
            .map(|w| {
                let s = w.status();
                (w, s)
            })
            .filter(|(_, s)| !s.draining && s.models.iter().any(|m| m.id == job.model))
            .collect();
        if candidates.is_empty() {
            return Err(BusError::NoWorker(job.model.clone()));
        }
        candidates.sort_by(|(_, a), (_, b)| {
            let ra = f64::from(a.load) / f64::from(a.capacity.max(1));
            let rb = f64::from(b.load) / f64::from(b.capacity.max(1));
            ra.total_cmp(&rb)
        });
        for (worker, status) in candidates {
            if status.load >= status.capacity {
                continue;
            }
            let (offer, handle) = Offer::new(job.clone(), SlotGuard { freed: Arc::clone(&self.freed) });
            match worker.accept(offer) {
                Ok(()) => return Ok(handle),
                Err(Refusal::Full | Refusal::Draining) => continue,
                Err(e @ (Refusal::UnknownModel(_) | Refusal::Version(_))) => {
                    return Err(BusError::Refused(e.to_string()));
                }
            }
        }
        Err(BusError::Busy(job.model.clone()))
    }
}

impl Bus for LocalBus {
    fn start(&self, job: SynthesisJob) -> BoxFuture<'_, Result<JobHandle, BusError>> {
        Box::pin(async move {
            // Register interest before trying, so a slot freed in between is not missed.
            let mut freed = std::pin::pin!(self.freed.notified());
            freed.as_mut().enable();
            match self.try_start(&job) {
                Err(BusError::Busy(_)) => {}
                other => return other,
            }
            if self.queued.fetch_add(1, Ordering::AcqRel) >= self.config.max_queue {
                self.queued.fetch_sub(1, Ordering::AcqRel);
                return Err(BusError::Busy(job.model.clone()));
            }
            let deadline = tokio::time::Instant::now() + self.config.queue_timeout;
            let result = loop {
                // Woken by a freed slot, or every poll interval: a worker's capacity can also rise while nothing
                // ends (it lowers and raises it with the slack of its streams).
                let wake = deadline.min(tokio::time::Instant::now() + CAPACITY_POLL);
                if tokio::time::timeout_at(wake, freed.as_mut()).await.is_err()
                    && tokio::time::Instant::now() >= deadline
                {
                    let waited = self.config.queue_timeout;
                    break Err(BusError::QueueTimeout { model: job.model.clone(), waited });
                }
                freed.set(self.freed.notified());
                freed.as_mut().enable();
                match self.try_start(&job) {
                    Err(BusError::Busy(_)) => continue,
                    other => break other,
                }
            };
            self.queued.fetch_sub(1, Ordering::AcqRel);
            tracing::debug!(request_id = %job.request_id, ok = result.is_ok(), "Queued request resolved.");
            result
        })
    }

    fn announcements(&self) -> watch::Receiver<Vec<ModelInfo>> {
        self.announced.subscribe()
    }

    fn workers(&self) -> Vec<WorkerStatus> {
        self.snapshot().iter().map(|w| w.status()).collect()
    }
}
