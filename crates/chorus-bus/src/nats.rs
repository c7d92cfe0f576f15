//! The NATS bus: API servers and workers as separate processes.
//!
//! Subjects (versioned, so that API servers and workers one release apart coexist during a rolling upgrade):
//!
//! - `chorus.v1.status.<model>`: worker heartbeats ([`WorkerStatus`], JSON) every [`NatsBusConfig::heartbeat`].
//! - `chorus.v1.worker.<worker_id>.jobs`: request/reply, a [`JobRequest`] in, a [`JobReply`] out.
//! - `chorus.v1.ctx.<request_id>.<attempt>.in`: a job's inputs (JSON [`ContextInput`]).
//! - `chorus.v1.ctx.<request_id>.<attempt>.out`: a job's events, numbered (see `wire`).
//!
//! Each dispatch of a job is an *attempt* with its own subjects: when a worker is lost before the first audio, the
//! job is dispatched again to another worker, and a late message from the lost one cannot mix into the new stream.
//!
//! **Flow control and liveness** ([`wire::Flow`]): the worker publishes at most [`NatsBusConfig::stream_window`]
//! bytes of events beyond what the API has handed on to its client; the API grants credit as its client consumes
//! them, and at least every heartbeat. So a client that does not read slows its own job (the API holds a bounded
//! amount of audio per stream, whatever the worker could produce), and a worker that hears nothing from the API
//! for [`NatsBusConfig::stream_timeout`] (the API gave the stream up, is frozen, or the bus is down) stops the job:
//! a thawed worker or a returning bus never works on for clients that are gone. A `Cancel` (client gone) stops the
//! worker's job at its next chunk.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::Client;
use chorus_proto::{ContextInput, ErrorCode, JobError, JobEvent, PROTOCOL_VERSION, SynthesisJob};
use futures_util::StreamExt;
use tokio::sync::{Notify, mpsc, watch};

use crate::wire::{self, Flow, Inbound, JobReply, JobRequest};
use crate::{
    BoxFuture, Bus, BusError, INPUT_BUFFER, JobHandle, ModelInfo, Offer, Refusal, SlotGuard, Worker,
    WorkerStatus, served_models,
};

/// Subject names.
pub mod subjects {
    /// Every worker heartbeat.
    pub const STATUS_ALL: &str = "chorus.v1.status.>";

    /// A subject token: NATS separators and wildcards replaced.
    pub fn token(s: &str) -> String {
        s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
    }

    pub fn status(model: &str) -> String {
        format!("chorus.v1.status.{}", token(model))
    }

    pub fn jobs(worker_id: &str) -> String {
        format!("chorus.v1.worker.{}.jobs", token(worker_id))
    }

    pub fn ctx(request_id: &str, attempt: &str, dir: &str) -> String {
        format!("chorus.v1.ctx.{}.{}.{dir}", token(request_id), token(attempt))
    }
}

/// Queue and unserviceable counts for one model (the `api_queue_size` and `api_unserviceable_requests_size` gauges).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelLoad {
    pub model: String,
    /// Requests waiting for a free slot on a live worker of the model.
    pub queued: u64,
    /// Requests waiting because no live worker serves the model.
    pub unserviceable: u64,
}

/// Timing of the NATS bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NatsBusConfig {
    /// How often workers publish their status.
    pub heartbeat: Duration,
    /// A worker silent this long is considered gone.
    pub worker_timeout: Duration,
    /// How long a worker has to accept or refuse a job.
    pub accept_timeout: Duration,
    /// How long a request may wait for a free slot, or for a worker of its model to appear.
    pub queue_timeout: Duration,
    /// Requests that may wait at once (all models).
    pub max_queue: usize,
    /// Times a job is dispatched again when its worker is lost before the first audio.
    pub max_retries: u32,
    /// Event bytes a worker may publish for one job beyond what the API has consumed (the API's buffer per stream).
    pub stream_window: u64,
    /// A worker that hears nothing from the API about a job for this long stops it.
    pub stream_timeout: Duration,
}

impl Default for NatsBusConfig {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_millis(500),
            worker_timeout: Duration::from_millis(1500),
            accept_timeout: Duration::from_secs(2),
            queue_timeout: Duration::from_secs(30),
            max_queue: 256,
            max_retries: 2,
            stream_window: 256 * 1024,
            stream_timeout: Duration::from_secs(3),
        }
    }
}

#[derive(Debug)]
struct Seen {
    status: WorkerStatus,
    at: Instant,
    /// Jobs this API server started on the worker since its last heartbeat.
    started_since: u32,
}

#[derive(Debug, Default)]
struct Waiting {
    queued: HashMap<String, u64>,
    unserviceable: HashMap<String, u64>,
    total: usize,
}

struct Inner {
    client: Client,
    config: NatsBusConfig,
    workers: Mutex<HashMap<String, Seen>>,
    /// Notified on every heartbeat (capacity may have freed, a worker may have joined).
    changed: Notify,
    /// The models live workers serve, sent on every change ([`Bus::announcements`]).
    announced: watch::Sender<Vec<ModelInfo>>,
    waiting: Mutex<Waiting>,
    warned_versions: Mutex<Vec<u32>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The API side of the NATS bus.
#[derive(Clone)]
pub struct NatsBus {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for NatsBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsBus").field("config", &self.inner.config).finish_non_exhaustive()
    }
}

/// What a dispatch produced: the worker that took the job and the subjects of this attempt.
struct Attempt {
    worker_id: String,
    events: async_nats::Subscriber,
    inputs_subject: String,
    /// The worker follows flow control (grant it credit, keep it alive).
    flow: bool,
}

/// Events a job may have queued toward its consumer on the API side: the stream window is the real buffer.
const API_EVENT_BUFFER: usize = 4;

enum WaitKind {
    Queued,
    Unserviceable,
}

impl NatsBus {
    /// Starts following worker heartbeats on `client`. Reconnection is the client's (async-nats reconnects and
    /// resubscribes by itself).
    pub async fn start(client: Client, config: NatsBusConfig) -> Result<Self, BusError> {
        let mut sub =
            client.subscribe(subjects::STATUS_ALL).await.map_err(|e| BusError::Nats(e.to_string()))?;
        let inner = Arc::new(Inner {
            client,
            config,
            workers: Mutex::new(HashMap::new()),
            changed: Notify::new(),
            announced: watch::Sender::new(Vec::new()),
            waiting: Mutex::new(Waiting::default()),
            warned_versions: Mutex::new(Vec::new()),
        });
        let weak = Arc::downgrade(&inner);
        // Workers that stop sending heartbeats leave the announcements within half their timeout.
        let mut sweep = tokio::time::interval(inner.config.worker_timeout / 2);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::spawn(async move {
            loop {
                let msg = tokio::select! {
                    msg = sub.next() => msg,
                    _ = sweep.tick() => {
                        let Some(inner) = weak.upgrade() else { break };
                        inner.announce();
                        continue;
                    }
                };
                let Some(msg) = msg else { break };
                let Some(inner) = weak.upgrade() else { break };
                match wire::from_json::<WorkerStatus>(&msg.payload) {
                    Ok(status) => inner.heartbeat(status),
                    Err(e) => {
                        tracing::warn!(subject = %msg.subject, error = %e, "Malformed worker heartbeat.")
                    }
                }
            }
        });
        Ok(Self { inner })
    }

    /// Queue and unserviceable counts per model.
    pub fn model_loads(&self) -> Vec<ModelLoad> {
        let w = lock(&self.inner.waiting);
        let mut models: Vec<String> = w.queued.keys().chain(w.unserviceable.keys()).cloned().collect();
        models.extend(self.models().into_iter().map(|m| m.id));
        models.sort();
        models.dedup();
        models
            .into_iter()
            .map(|m| ModelLoad {
                queued: w.queued.get(&m).copied().unwrap_or(0),
                unserviceable: w.unserviceable.get(&m).copied().unwrap_or(0),
                model: m,
            })
            .collect()
    }
}

impl Inner {
    fn heartbeat(&self, status: WorkerStatus) {
        if status.protocol_version != PROTOCOL_VERSION {
            let mut warned = lock(&self.warned_versions);
            if !warned.contains(&status.protocol_version) {
                warned.push(status.protocol_version);
                tracing::warn!(
                    worker_id = %status.worker_id,
                    worker_protocol = status.protocol_version,
                    our_protocol = PROTOCOL_VERSION,
                    "Ignoring a worker that speaks another bus protocol version."
                );
            }
            return;
        }
        lock(&self.workers)
            .insert(status.worker_id.clone(), Seen { status, at: Instant::now(), started_since: 0 });
        self.announce();
        self.changed.notify_waiters();
    }

    /// Announces the models the live workers serve now.
    fn announce(&self) {
        crate::announce(&self.announced, served_models(self.live()));
    }

    fn live(&self) -> Vec<WorkerStatus> {
        let mut workers = lock(&self.workers);
        let timeout = self.config.worker_timeout;
        workers.retain(|_, s| s.at.elapsed() < timeout);
        workers
            .values()
            .map(|s| WorkerStatus { load: s.status.load + s.started_since, ..s.status.clone() })
            .collect()
    }

    fn is_alive(&self, worker_id: &str) -> bool {
        lock(&self.workers).get(worker_id).is_some_and(|s| s.at.elapsed() < self.config.worker_timeout)
    }

    fn forget(&self, worker_id: &str) {
        lock(&self.workers).remove(worker_id);
        self.announce();
    }

    /// Picks the least-loaded live worker of the model with a free slot, not in `tried`, and counts a job on it
    /// at once, so that concurrent dispatches spread instead of all choosing the same worker.
    fn reserve(&self, model: &str, tried: &[String]) -> Option<String> {
        let mut workers = lock(&self.workers);
        let timeout = self.config.worker_timeout;
        let best = workers
            .values_mut()
            .filter(|s| {
                s.at.elapsed() < timeout
                    && !s.status.draining
                    && !tried.contains(&s.status.worker_id)
                    && s.status.models.iter().any(|m| m.id == model)
                    && s.status.load + s.started_since < s.status.capacity
            })
            .min_by(|a, b| {
                let ra = f64::from(a.status.load + a.started_since) / f64::from(a.status.capacity.max(1));
                let rb = f64::from(b.status.load + b.started_since) / f64::from(b.status.capacity.max(1));
                ra.total_cmp(&rb)
            })?;
        best.started_since += 1;
        Some(best.status.worker_id.clone())
    }

    fn unreserve(&self, worker_id: &str) {
        if let Some(s) = lock(&self.workers).get_mut(worker_id) {
            s.started_since = s.started_since.saturating_sub(1);
        }
    }

    /// One pass over the live workers of the model, least loaded first.
    async fn try_dispatch(&self, job: &SynthesisJob) -> Result<Attempt, BusError> {
        let serving =
            self.live().into_iter().any(|s| !s.draining && s.models.iter().any(|m| m.id == job.model));
        if !serving {
            return Err(BusError::NoWorker(job.model.clone()));
        }
        let mut tried: Vec<String> = Vec::new();
        while let Some(worker_id) = self.reserve(&job.model, &tried) {
            tried.push(worker_id.clone());
            let attempt = new_attempt_id();
            let events_subject = subjects::ctx(&job.request_id, &attempt, "out");
            let inputs_subject = subjects::ctx(&job.request_id, &attempt, "in");
            let mut events = self
                .client
                .subscribe(events_subject.clone())
                .await
                .map_err(|e| BusError::Nats(e.to_string()))?;
            let flow = Flow {
                window_bytes: self.config.stream_window,
                keepalive_ms: u64::try_from(self.config.heartbeat.as_millis()).unwrap_or(500),
                timeout_ms: u64::try_from(self.config.stream_timeout.as_millis()).unwrap_or(3000),
            };
            let request = JobRequest {
                job: job.clone(),
                events_subject,
                inputs_subject: inputs_subject.clone(),
                flow: Some(flow),
            };
            let reply = tokio::time::timeout(
                self.config.accept_timeout,
                self.client.request(subjects::jobs(&worker_id), wire::to_json(&request)),
            )
            .await;
            match reply {
                Ok(Ok(msg)) => match wire::from_json::<JobReply>(&msg.payload) {
                    Ok(JobReply { accepted: true, flow, .. }) => {
                        tracing::debug!(request_id = %job.request_id, %worker_id, flow, "Job accepted.");
                        return Ok(Attempt { worker_id, events, inputs_subject, flow });
                    }
                    Ok(JobReply { refusal, detail, .. }) => {
                        tracing::debug!(%worker_id, ?refusal, ?detail, "Job refused.");
                        self.unreserve(&worker_id);
                    }
                    Err(e) => {
                        tracing::warn!(%worker_id, error = %e, "Malformed job reply.");
                        self.unreserve(&worker_id);
                    }
                },
                Ok(Err(e)) => {
                    tracing::warn!(%worker_id, error = %e, "Worker did not answer; skipping it.");
                    self.forget(&worker_id);
                }
                Err(_) => {
                    tracing::warn!(%worker_id, "Worker did not answer in time; skipping it.");
                    self.forget(&worker_id);
                }
            }
            let _ = events.unsubscribe_after(0).await;
        }
        Err(BusError::Busy(job.model.clone()))
    }

    /// Dispatches the job, waiting (bounded) for a free slot or for a worker of its model to join.
    async fn dispatch(&self, job: &SynthesisJob) -> Result<Attempt, BusError> {
        let deadline = tokio::time::Instant::now() + self.config.queue_timeout;
        let mut waiting: Option<WaitKind> = None;
        let result = loop {
            let changed = self.changed.notified();
            let error = match self.try_dispatch(job).await {
                Ok(a) => break Ok(a),
                Err(e @ (BusError::NoWorker(_) | BusError::Busy(_))) => e,
                Err(other) => break Err(other),
            };
            let kind = if matches!(error, BusError::NoWorker(_)) {
                WaitKind::Unserviceable
            } else {
                WaitKind::Queued
            };
            if !self.set_waiting(&job.model, waiting.as_ref(), Some(&kind)) {
                break Err(BusError::Busy(job.model.clone()));
            }
            waiting = Some(kind);
            // Wake on the next heartbeat, or poll: a refused dispatch leaves no heartbeat behind.
            let wait = tokio::time::sleep(Duration::from_millis(100));
            if tokio::time::timeout_at(deadline, async {
                tokio::select! {
                    () = changed => {},
                    () = wait => {},
                }
            })
            .await
            .is_err()
            {
                break Err(if let BusError::Busy(model) = error {
                    BusError::QueueTimeout { model, waited: self.config.queue_timeout }
                } else {
                    error
                });
            }
        };
        self.set_waiting(&job.model, waiting.as_ref(), None);
        result
    }

    /// Moves a request between the queued/unserviceable counts; `false` if the queue is full.
    fn set_waiting(&self, model: &str, from: Option<&WaitKind>, to: Option<&WaitKind>) -> bool {
        let mut w = lock(&self.waiting);
        if from.is_none() && to.is_some() {
            if w.total >= self.config.max_queue {
                return false;
            }
            w.total += 1;
        }
        if from.is_some() && to.is_none() {
            w.total = w.total.saturating_sub(1);
        }
        for (kind, delta) in [(from, -1i64), (to, 1)] {
            let map = match kind {
                Some(WaitKind::Queued) => &mut w.queued,
                Some(WaitKind::Unserviceable) => &mut w.unserviceable,
                None => continue,
            };
            let entry = map.entry(model.to_owned()).or_insert(0);
            *entry = entry.saturating_add_signed(delta);
        }
        true
    }
}

fn new_attempt_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{:x}{:x}{n:x}", std::process::id(), t & 0xffff_ffff)
}

impl Bus for NatsBus {
    fn start(&self, job: SynthesisJob) -> BoxFuture<'_, Result<JobHandle, BusError>> {
        Box::pin(async move {
            let attempt = self.inner.dispatch(&job).await?;
            let (input_tx, input_rx) = crossbeam_channel::bounded(INPUT_BUFFER);
            let (event_tx, event_rx) = mpsc::channel(API_EVENT_BUFFER);
            let inner = Arc::clone(&self.inner);
            tokio::spawn(forward(inner, job, attempt, input_rx, event_tx));
            Ok(JobHandle { inputs: input_tx, events: event_rx })
        })
    }

    fn models(&self) -> Vec<ModelInfo> {
        served_models(self.inner.live())
    }

    fn announcements(&self) -> watch::Receiver<Vec<ModelInfo>> {
        self.inner.announced.subscribe()
    }

    fn workers(&self) -> Vec<WorkerStatus> {
        self.inner.live()
    }
}

/// Carries one job between the API's handle and the worker: events in order (a gap or a lost worker is an error),
/// inputs out, credit and keepalives out (flow control), a dropped handle as a cancel, and a new dispatch when the
/// worker is lost before the first audio.
async fn forward(
    inner: Arc<Inner>,
    job: SynthesisJob,
    mut attempt: Attempt,
    inputs: crossbeam_channel::Receiver<ContextInput>,
    events: mpsc::Sender<JobEvent>,
) {
    let request_id = job.request_id.clone();
    // Inputs arrive on a blocking channel (the in-process bus's type); a blocking task carries them over.
    let (bridge_tx, mut bridge_rx) = mpsc::channel::<ContextInput>(INPUT_BUFFER);
    if job.continuation {
        tokio::task::spawn_blocking(move || {
            while let Ok(input) = inputs.recv() {
                if bridge_tx.blocking_send(input).is_err() {
                    break;
                }
            }
        });
    } else {
        drop(bridge_tx);
    }
    let mut inputs_open = job.continuation;
    let mut sent_inputs: Vec<ContextInput> = Vec::new();
    let mut expected = 0u64;
    let mut got_audio = false;
    let mut retries = 0u32;
    // Event bytes of this attempt handed on to the consumer, and the total last granted as credit.
    let mut consumed = 0u64;
    let mut credited = 0u64;
    let batch = (inner.config.stream_window / 4).max(1);
    // An event read from the worker, waiting for room toward the consumer.
    let mut pending: Option<(JobEvent, u64)> = None;
    let mut tick = tokio::time::interval(inner.config.heartbeat / 2);
    let mut keepalive = tokio::time::interval(inner.config.heartbeat);
    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let lost = |why: &str| JobEvent::Error(JobError { code: ErrorCode::WorkerLost, message: why.to_owned() });
    loop {
        tokio::select! {
            msg = attempt.events.next(), if pending.is_none() => {
                let Some(msg) = msg else {
                    let _ = events.send(lost("the bus connection to the worker was lost")).await;
                    break;
                };
                let size = msg.payload.len() as u64;
                let event = match wire::decode_event(&msg.payload) {
                    Ok((seq, _)) if seq != expected => lost(&format!("event {seq} arrived where {expected} was expected")),
                    Ok((_, event)) => event,
                    Err(e) => lost(&format!("malformed event from the worker: {e}")),
                };
                expected += 1;
                got_audio |= matches!(event, JobEvent::Audio(_));
                pending = Some((event, size));
            }
            // Waits while the consumer is behind: that is what holds the worker back (no credit meanwhile), while
            // the keepalives still go out.
            permit = events.reserve(), if pending.is_some() => {
                let Some((event, size)) = pending.take() else { continue };
                let Ok(permit) = permit else {
                    publish_input(&inner, &attempt, &ContextInput::Cancel).await;
                    break;
                };
                let terminal = matches!(event, JobEvent::Done | JobEvent::Error(_));
                permit.send(event);
                if terminal {
                    break;
                }
                consumed += size;
                if attempt.flow && consumed - credited >= batch {
                    credited = consumed;
                    publish(&inner, &attempt, &Inbound::Credit { credit: consumed }).await;
                }
            }
            input = bridge_rx.recv(), if inputs_open => {
                match input {
                    Some(input) => {
                        publish_input(&inner, &attempt, &input).await;
                        if !got_audio {
                            sent_inputs.push(input);
                        }
                    }
                    None => inputs_open = false,
                }
            }
            () = events.closed() => {
                publish_input(&inner, &attempt, &ContextInput::Cancel).await;
                break;
            }
            _ = keepalive.tick(), if attempt.flow => {
                // Liveness as much as credit: a worker that stops hearing this stops the job.
                credited = consumed;
                publish(&inner, &attempt, &Inbound::Credit { credit: consumed }).await;
            }
            _ = tick.tick() => {
                if inner.is_alive(&attempt.worker_id) {
                    continue;
                }
                if got_audio || retries >= inner.config.max_retries {
                    tracing::warn!(%request_id, worker_id = %attempt.worker_id, "Worker lost mid-stream.");
                    let _ = events.send(lost("the worker serving this stream stopped responding")).await;
                    // If it comes back (a frozen process, a bus outage), it must not go on for nobody.
                    publish_input(&inner, &attempt, &ContextInput::Cancel).await;
                    break;
                }
                retries += 1;
                tracing::warn!(%request_id, worker_id = %attempt.worker_id, retries, "Worker lost before the first audio; dispatching again.");
                publish_input(&inner, &attempt, &ContextInput::Cancel).await;
                let _ = attempt.events.unsubscribe().await;
                match inner.dispatch(&job).await {
                    Ok(next) => {
                        attempt = next;
                        pending = None;
                        expected = 0;
                        consumed = 0;
                        credited = 0;
                        for input in &sent_inputs {
                            publish_input(&inner, &attempt, input).await;
                        }
                    }
                    Err(e) => {
                        let _ = events.send(lost(&format!("the worker was lost and no other could take the job: {e}"))).await;
                        break;
                    }
                }
            }
        }
    }
    let _ = attempt.events.unsubscribe().await;
}

async fn publish(inner: &Inner, attempt: &Attempt, message: &Inbound) {
    if let Err(e) = inner.client.publish(attempt.inputs_subject.clone(), wire::to_json(message)).await {
        tracing::debug!(error = %e, "Cannot publish flow credit.");
    }
}

async fn publish_input(inner: &Inner, attempt: &Attempt, input: &ContextInput) {
    if let Err(e) = inner.client.publish(attempt.inputs_subject.clone(), wire::to_json(input)).await {
        tracing::warn!(error = %e, "Cannot publish a job input.");
    }
}

/// The worker side: serves a [`Worker`] on the bus, announces it, and carries its jobs' inputs and events.
pub struct NatsWorkerHost {
    client: Client,
    worker: Arc<dyn Worker>,
    config: NatsBusConfig,
}

impl std::fmt::Debug for NatsWorkerHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsWorkerHost")
            .field("worker", &self.worker.status().worker_id)
            .finish_non_exhaustive()
    }
}

impl NatsWorkerHost {
    pub fn new(client: Client, worker: Arc<dyn Worker>, config: NatsBusConfig) -> Self {
        Self { client, worker, config }
    }

    /// Serves until `stop` resolves: heartbeats, job requests, and the jobs' traffic. Jobs in flight keep running
    /// after `stop` (their forwarding tasks are detached); the caller waits for the worker's load to reach 0.
    pub async fn run(self, stop: impl std::future::Future<Output = ()> + Send) -> Result<(), BusError> {
        let status = self.worker.status();
        let mut jobs = self
            .client
            .subscribe(subjects::jobs(&status.worker_id))
            .await
            .map_err(|e| BusError::Nats(e.to_string()))?;
        let heartbeat =
            tokio::spawn(heartbeats(self.client.clone(), Arc::clone(&self.worker), self.config.heartbeat));
        tracing::info!(worker_id = %status.worker_id, "Worker serving on the bus.");
        tokio::pin!(stop);
        loop {
            tokio::select! {
                msg = jobs.next() => {
                    let Some(msg) = msg else { break };
                    self.on_job(msg).await;
                }
                () = &mut stop => break,
            }
        }
        // Keep announcing (draining) while jobs finish: the caller aborts us when done.
        let _ = jobs.unsubscribe().await;
        let _ = heartbeat.await;
        Ok(())
    }

    async fn on_job(&self, msg: async_nats::Message) {
        let Some(reply_to) = msg.reply.clone() else { return };
        let reply = |r: JobReply| {
            let client = self.client.clone();
            let reply_to = reply_to.clone();
            async move {
                if let Err(e) = client.publish(reply_to, wire::to_json(&r)).await {
                    tracing::warn!(error = %e, "Cannot reply to a job request.");
                }
            }
        };
        let request: JobRequest = match wire::from_json(&msg.payload) {
            Ok(r) => r,
            Err(e) => {
                reply(JobReply::refused("malformed", e)).await;
                return;
            }
        };
        // Subscribe to the inputs before accepting, so that none is missed.
        let inputs_sub = match self.client.subscribe(request.inputs_subject.clone()).await {
            Ok(s) => s,
            Err(e) => {
                reply(JobReply::refused("internal", e)).await;
                return;
            }
        };
        let request_id = request.job.request_id.clone();
        let (offer, JobHandle { inputs: input_tx, events: event_rx }) =
            Offer::new(request.job, SlotGuard::detached());
        match self.worker.accept(offer) {
            Ok(()) => {
                reply(JobReply { accepted: true, refusal: None, detail: None, flow: request.flow.is_some() })
                    .await;
                tokio::spawn(carry_job(
                    self.client.clone(),
                    request_id,
                    request.events_subject,
                    request.flow,
                    inputs_sub,
                    input_tx,
                    event_rx,
                ));
            }
            Err(refusal) => {
                let kind = match &refusal {
                    Refusal::Full => "full",
                    Refusal::Draining => "draining",
                    Refusal::UnknownModel(_) => "unknown_model",
                    Refusal::Version(_) => "version",
                };
                if matches!(refusal, Refusal::Version(_)) {
                    tracing::warn!(%request_id, %refusal, "Refusing a job from an API server of another protocol version.");
                }
                reply(JobReply::refused(kind, refusal)).await;
            }
        }
    }
}

async fn heartbeats(client: Client, worker: Arc<dyn Worker>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let status = worker.status();
        let payload = wire::to_json(&status);
        for model in &status.models {
            if let Err(e) = client.publish(subjects::status(&model.id), payload.clone()).await {
                tracing::debug!(error = %e, "Heartbeat not sent (reconnecting?).");
            }
        }
        // Stop once draining is done: nothing left to announce.
        if status.draining && status.load == 0 {
            let _ = client.flush().await;
            break;
        }
    }
}

/// The worker side of one job: its events out (within the flow window, when the API offered one), its inputs in,
/// credit and keepalives in. A `Cancel`, or silence from the API past the flow's timeout, stops the job: the
/// events channel is dropped, which the job sees at its next chunk.
async fn carry_job(
    client: Client,
    request_id: String,
    events_subject: String,
    flow: Option<Flow>,
    mut inputs_sub: async_nats::Subscriber,
    inputs: crossbeam_channel::Sender<ContextInput>,
    mut events: mpsc::Receiver<JobEvent>,
) {
    let mut seq = 0u64;
    let mut inputs_open = true;
    // Bytes published, and the total the API allows (its consumption plus the window).
    let mut sent = 0u64;
    let mut allowed = flow.map_or(u64::MAX, |f| f.window_bytes);
    let timeout = flow.map(|f| Duration::from_millis(f.timeout_ms.max(1)));
    let mut heard = Instant::now();
    let mut check = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            event = events.recv(), if sent < allowed => {
                let (event, last) = match event {
                    Some(e) => {
                        let last = matches!(e, JobEvent::Done | JobEvent::Error(_));
                        (e, last)
                    }
                    // The job ended without a terminal event: it was cancelled (nothing more to send).
                    None => break,
                };
                let payload = wire::encode_event(seq, &event);
                sent += payload.len() as u64;
                if let Err(e) = client.publish(events_subject.clone(), payload).await {
                    tracing::warn!(error = %e, "Cannot publish a job event.");
                }
                seq += 1;
                if last {
                    break;
                }
            }
            msg = inputs_sub.next(), if inputs_open => {
                let Some(msg) = msg else {
                    inputs_open = false;
                    continue;
                };
                heard = Instant::now();
                match wire::from_json::<Inbound>(&msg.payload) {
                    Ok(Inbound::Credit { credit }) => {
                        let window = flow.map_or(0, |f| f.window_bytes);
                        allowed = allowed.max(credit.saturating_add(window));
                    }
                    Ok(Inbound::Input(ContextInput::Cancel)) => {
                        let _ = inputs.try_send(ContextInput::Cancel);
                        tracing::debug!(%request_id, "Job cancelled by the API.");
                        break;
                    }
                    Ok(Inbound::Input(input)) => {
                        if inputs.try_send(input).is_err() {
                            tracing::warn!("A job's input queue is full; input dropped.");
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "Malformed job input."),
                }
            }
            _ = check.tick(), if timeout.is_some() => {
                if timeout.is_some_and(|t| heard.elapsed() > t) {
                    tracing::warn!(
                        %request_id,
                        silent_s = heard.elapsed().as_secs_f64(),
                        "Nothing heard from the API server about this job: its client is gone; stopping it."
                    );
                    break;
                }
            }
        }
    }
    // Dropping the events receiver stops the job at its next send or chunk.
    events.close();
    drop(events);
    let _ = inputs_sub.unsubscribe().await;
    let _ = client.flush().await;
}
