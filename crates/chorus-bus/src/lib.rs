//! The bus between API servers and workers.
//!
//! An API server calls [`Bus::start`] with a [`SynthesisJob`] and gets a [`JobHandle`]: a sender for the inputs that
//! follow (WebSocket continuations, flush, cancel) and a receiver of the job's [`JobEvent`]s. Workers implement
//! [`Worker`] and are reached through a bus implementation: [`LocalBus`] in one process (`chorus serve`); NATS
//! for a cluster (the cluster-mode work; same trait).
//!
//! Dropping a [`JobHandle`] cancels the job: the worker sees its event channel closed and stops.

mod license;
mod local;
mod nats;
mod wire;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};

use chorus_proto::{ContextInput, JobEvent, SynthesisJob};

pub use license::{
    LIMITS_INTERVAL, LicenseLink, LicenseService, LocalLicenseLink, NatsLicenseHost, NatsLicenseLink,
    PEER_LIMITS_TTL, UsageCounters, UsageReporter,
};
pub use local::{LocalBus, LocalBusConfig, SlotGuard};
pub use nats::{ModelLoad, NatsBus, NatsBusConfig, NatsWorkerHost, subjects};
pub use wire::WireError;

/// A boxed future, so that [`Bus`] can be used as a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Events a job may have in flight toward the API server before the worker waits (backpressure).
pub const EVENT_BUFFER: usize = 64;
/// Inputs a context may have queued toward its worker before the API server refuses more.
pub const INPUT_BUFFER: usize = 256;

/// Errors of the bus.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BusError {
    /// No worker serves this model.
    #[error("no worker serves model '{0}'")]
    NoWorker(String),
    /// Every worker of the model is at capacity and the queue is full or the wait timed out.
    #[error("all workers for model '{0}' are busy")]
    Busy(String),
    /// The request waited the whole queue timeout and no slot became free.
    #[error("no worker for model '{model}' became free within {waited:?}")]
    QueueTimeout { model: String, waited: std::time::Duration },
    /// A worker refused the job for a reason other than capacity.
    #[error("the worker refused the job: {0}")]
    Refused(String),
    /// The bus is shutting down.
    #[error("the bus is closed")]
    Closed,
    /// A NATS operation failed.
    #[error("NATS: {0}")]
    Nats(String),
}

impl BusError {
    /// A stable, low-cardinality name for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            BusError::NoWorker(_) => "no_worker",
            BusError::Busy(_) => "busy",
            BusError::QueueTimeout { .. } => "queue_timeout",
            BusError::Refused(_) => "refused",
            BusError::Closed => "closed",
            BusError::Nats(_) => "nats",
        }
    }
}

/// A model that some worker serves.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ModelInfo {
    /// The engine voice id, e.g. `en_US-joe-medium`.
    pub id: String,
    /// ISO language code, e.g. `en`.
    pub language: String,
    pub sample_rate: u32,
}

/// A worker's state, as its heartbeats report it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WorkerStatus {
    pub worker_id: String,
    pub models: Vec<ModelInfo>,
    /// Concurrent jobs it accepts.
    pub capacity: u32,
    /// Jobs in flight.
    pub load: u32,
    pub draining: bool,
    pub version: String,
    /// The bus protocol version the worker speaks.
    #[serde(default = "default_protocol")]
    pub protocol_version: u32,
}

fn default_protocol() -> u32 {
    chorus_proto::PROTOCOL_VERSION
}

impl WorkerStatus {
    /// The state of a worker that serves (not draining) and speaks this release's bus protocol.
    pub fn serving(worker_id: impl Into<String>, models: Vec<ModelInfo>, capacity: u32, load: u32) -> Self {
        Self {
            worker_id: worker_id.into(),
            models,
            capacity,
            load,
            draining: false,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            protocol_version: chorus_proto::PROTOCOL_VERSION,
        }
    }
}

/// Takes one of `capacity` slots counted by `load`, which never goes over it even for a moment; `Full` when none
/// is free. The worker gives the slot back by decrementing `load` when the job ends.
pub fn reserve_slot(load: &AtomicU32, capacity: u32) -> Result<(), Refusal> {
    load.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < capacity).then_some(n + 1))
        .map(drop)
        .map_err(|_| Refusal::Full)
}

/// The API side of a running job.
#[derive(Debug)]
pub struct JobHandle {
    /// Continuations, flush, cancel. `try_send`: a full queue means the client sends faster than it can be served.
    pub inputs: crossbeam_channel::Sender<ContextInput>,
    /// The job's events, ending with `Done` or `Error` (or the channel closing if the worker died).
    pub events: tokio::sync::mpsc::Receiver<JobEvent>,
}

/// What an API server needs from the bus.
pub trait Bus: Send + Sync + 'static {
    /// Sends the job to a worker of `job.model` with a free slot, waiting (bounded) for one if all are busy.
    fn start(&self, job: SynthesisJob) -> BoxFuture<'_, Result<JobHandle, BusError>>;
    /// Every model some live worker serves.
    fn models(&self) -> Vec<ModelInfo> {
        self.announcements().borrow().clone()
    }
    /// [`Bus::models`], sent again whenever it changes: a worker joins, leaves or drains, or starts or stops
    /// serving a model. The API's voice catalogue follows it.
    fn announcements(&self) -> tokio::sync::watch::Receiver<Vec<ModelInfo>>;
    /// Every live worker.
    fn workers(&self) -> Vec<WorkerStatus>;
}

/// The models that serving (not draining) workers announce, by id, once each.
pub fn served_models(workers: impl IntoIterator<Item = WorkerStatus>) -> Vec<ModelInfo> {
    let mut models: Vec<ModelInfo> =
        workers.into_iter().filter(|s| !s.draining).flat_map(|s| s.models).collect();
    models.sort_by(|a, b| a.id.cmp(&b.id));
    models.dedup_by(|a, b| a.id == b.id);
    models
}

/// Sends `models` to the followers of a bus's announcements if they differ from the last sent.
pub(crate) fn announce(to: &tokio::sync::watch::Sender<Vec<ModelInfo>>, models: Vec<ModelInfo>) {
    to.send_if_modified(|current| {
        let changed = *current != models;
        if changed {
            *current = models;
        }
        changed
    });
}

/// Why a worker did not take a job.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("at capacity")]
    Full,
    #[error("draining")]
    Draining,
    #[error("model '{0}' not served here")]
    UnknownModel(String),
    #[error("protocol version {0} not supported")]
    Version(u32),
}

/// A worker reachable in-process.
pub trait Worker: Send + Sync + 'static {
    fn status(&self) -> WorkerStatus;
    /// Takes the job or refuses it at once. On acceptance the worker owns the offer's `slot` until the job is over
    /// (dropping it tells the bus a slot is free), reads `inputs`, and sends events until `Done`/`Error`; if
    /// `events` is closed (the client went away) it stops work at once.
    fn accept(&self, offer: Offer) -> Result<(), Refusal>;
    /// Registers `changed`, to be called whenever the models this worker serves, or its draining, change (never
    /// while the worker holds a lock [`Worker::status`] takes). A worker whose models never change may ignore it.
    fn on_models_changed(&self, changed: ModelsChanged) {
        drop(changed);
    }
}

/// A callback for [`Worker::on_models_changed`].
pub type ModelsChanged = Box<dyn Fn() + Send + Sync>;

/// The [`ModelsChanged`] callbacks a worker keeps, called together.
#[derive(Default)]
pub struct ModelListeners(std::sync::Mutex<Vec<ModelsChanged>>);

impl ModelListeners {
    pub fn add(&self, changed: ModelsChanged) {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(changed);
    }

    /// Calls every callback (outside any lock of the worker's own).
    pub fn notify(&self) {
        for changed in self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter() {
            changed();
        }
    }
}

impl std::fmt::Debug for ModelListeners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len();
        f.debug_tuple("ModelListeners").field(&n).finish()
    }
}

/// A job offered to a worker, with what it runs on once accepted.
#[derive(Debug)]
pub struct Offer {
    pub job: SynthesisJob,
    /// Continuations, flushes and cancel, in order.
    pub inputs: crossbeam_channel::Receiver<ContextInput>,
    /// Where the job's events go.
    pub events: tokio::sync::mpsc::Sender<JobEvent>,
    /// Held until the job is over.
    pub slot: SlotGuard,
}

impl Offer {
    /// An offer of `job` on fresh bounded channels, and the handle of their other ends.
    pub fn new(job: SynthesisJob, slot: SlotGuard) -> (Self, JobHandle) {
        let (input_tx, inputs) = crossbeam_channel::bounded(INPUT_BUFFER);
        let (event_tx, events) = tokio::sync::mpsc::channel(EVENT_BUFFER);
        (Self { job, inputs, events: event_tx, slot }, JobHandle { inputs: input_tx, events })
    }
}
