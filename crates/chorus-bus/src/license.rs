//! The link between API servers and the license proxy.
//!
//! API servers see a [`LicenseLink`]: report usage (acknowledged only once the proxy has made it durable) and watch
//! the latest [`LicenseState`]. The proxy implements [`LicenseService`]. In one process ([`LocalLicenseLink`]) the
//! link calls the service directly; in a cluster, [`NatsLicenseLink`] and [`NatsLicenseHost`] carry the same calls
//! over NATS: usage batches as request/reply on [`SUBJECT_USAGE`], the state published on [`SUBJECT_STATE`] every
//! second and at once on a change.
//!
//! API servers also share their use of the limits: each publishes a [`LimitsReport`] on [`SUBJECT_LIMITS`] twice a
//! second, and each adds the others' latest reports (those heard from in the last [`PEER_LIMITS_TTL`]) to its own
//! counts when it admits a request. A limit can thus be exceeded across servers only by what they admit within one
//! report interval of each other.
//!
//! [`UsageReporter`] is the API side's bounded queue: records wait there, and are sent again until acknowledged.
//! Each record has a unique id and the proxy stores an id once, so a batch sent twice (the acknowledgement was lost)
//! is not counted twice.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chorus_proto::license::{
    LicenseState, LimitsReport, SUBJECT_LIMITS, SUBJECT_STATE, SUBJECT_USAGE, UsageAck, UsageBatch,
    UsageRecord,
};
use chorus_proto::token::{AccessClaims, SUBJECT_TOKEN, TokenReply};
use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};

use crate::{BoxFuture, BusError};

/// Records sent in one batch at most.
pub const USAGE_BATCH: usize = 500;
/// How long an API server waits for the proxy's acknowledgement of a batch.
pub const USAGE_ACK_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the proxy publishes its state even when nothing changed.
pub const STATE_INTERVAL: Duration = Duration::from_secs(1);
/// How often an API server shares its use of the limits.
pub const LIMITS_INTERVAL: Duration = Duration::from_millis(500);
/// An API server not heard from for this long no longer counts (it stopped, or lost the bus).
pub const PEER_LIMITS_TTL: Duration = Duration::from_secs(3);

/// What the license proxy offers (implemented by the proxy).
pub trait LicenseService: Send + Sync + 'static {
    /// Stores `records` durably (each id once); resolves after the fsync.
    fn record(&self, records: Vec<UsageRecord>) -> BoxFuture<'_, Result<(), String>>;
    /// The current state, updated on every change.
    fn subscribe(&self) -> watch::Receiver<LicenseState>;
    /// Signs an access token with the deployment key (after checking its claims).
    fn mint_token(&self, _claims: AccessClaims) -> BoxFuture<'_, Result<String, String>> {
        Box::pin(async { Err("this license service does not mint access tokens".to_owned()) })
    }
}

/// What an API server needs from the license proxy.
pub trait LicenseLink: Send + Sync + 'static {
    /// Sends `records`; `Ok` means the proxy has stored them durably.
    fn report(&self, records: Vec<UsageRecord>) -> BoxFuture<'_, Result<(), BusError>>;
    /// The latest state; `None` until the proxy has been heard from.
    fn state(&self) -> watch::Receiver<Option<LicenseState>>;
    /// Shares this API server's use of the limits with the other API servers (none in one process).
    fn share_limits(&self, _report: LimitsReport) -> BoxFuture<'_, Result<(), BusError>> {
        Box::pin(async { Ok(()) })
    }
    /// The other API servers' use of the limits, summed; `None` where there are none (one process).
    fn peer_limits(&self) -> Option<watch::Receiver<LimitsReport>> {
        None
    }
    /// Has the proxy sign an access token with the deployment key.
    fn mint_token(&self, _claims: AccessClaims) -> BoxFuture<'_, Result<String, BusError>> {
        Box::pin(async { Err(BusError::Refused("no license proxy to sign access tokens".into())) })
    }
}

/// The proxy in the same process (`chorus serve`).
pub struct LocalLicenseLink {
    service: Arc<dyn LicenseService>,
    state: watch::Receiver<Option<LicenseState>>,
}

impl std::fmt::Debug for LocalLicenseLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalLicenseLink").finish_non_exhaustive()
    }
}

impl LocalLicenseLink {
    /// Must be called inside a Tokio runtime (it forwards the service's state).
    pub fn new(service: Arc<dyn LicenseService>) -> Self {
        let mut source = service.subscribe();
        let (tx, rx) = watch::channel(Some(source.borrow_and_update().clone()));
        tokio::spawn(async move {
            while source.changed().await.is_ok() {
                let next = source.borrow_and_update().clone();
                if tx.send(Some(next)).is_err() {
                    break;
                }
            }
        });
        Self { service, state: rx }
    }
}

impl LicenseLink for LocalLicenseLink {
    fn report(&self, records: Vec<UsageRecord>) -> BoxFuture<'_, Result<(), BusError>> {
        Box::pin(async move { self.service.record(records).await.map_err(BusError::Refused) })
    }

    fn state(&self) -> watch::Receiver<Option<LicenseState>> {
        self.state.clone()
    }

    fn mint_token(&self, claims: AccessClaims) -> BoxFuture<'_, Result<String, BusError>> {
        Box::pin(async move { self.service.mint_token(claims).await.map_err(BusError::Refused) })
    }
}

/// How long an API server waits for the proxy to sign an access token.
pub const TOKEN_TIMEOUT: Duration = Duration::from_secs(5);

/// The API side of the link over NATS.
#[derive(Debug)]
pub struct NatsLicenseLink {
    client: async_nats::Client,
    state: watch::Receiver<Option<LicenseState>>,
    /// This API server's id in its [`LimitsReport`]s.
    id: String,
    peers: watch::Receiver<LimitsReport>,
}

impl NatsLicenseLink {
    /// Subscribes to the proxy's state.
    pub async fn start(client: async_nats::Client) -> Result<Self, BusError> {
        let mut sub = client.subscribe(SUBJECT_STATE).await.map_err(|e| BusError::Nats(e.to_string()))?;
        let (tx, rx) = watch::channel(None);
        tokio::spawn(async move {
            while let Some(msg) = sub.next().await {
                match serde_json::from_slice::<LicenseState>(&msg.payload) {
                    Ok(state) => {
                        tx.send_if_modified(|current| {
                            let changed = current.as_ref() != Some(&state);
                            if changed {
                                *current = Some(state);
                            }
                            changed
                        });
                    }
                    Err(e) => tracing::warn!(error = %e, "Unreadable license state on the bus; ignored."),
                }
            }
        });
        let id = format!(
            "{:x}-{:x}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
        );
        let peers = follow_peers(&client, id.clone()).await?;
        Ok(Self { client, state: rx, id, peers })
    }
}

/// Keeps the latest report of every other API server and publishes their sum, dropping servers not heard from
/// within [`PEER_LIMITS_TTL`].
async fn follow_peers(
    client: &async_nats::Client,
    own: String,
) -> Result<watch::Receiver<LimitsReport>, BusError> {
    let mut sub = client.subscribe(SUBJECT_LIMITS).await.map_err(|e| BusError::Nats(e.to_string()))?;
    let (tx, rx) = watch::channel(LimitsReport::default());
    tokio::spawn(async move {
        let mut latest: HashMap<String, (Instant, LimitsReport)> = HashMap::new();
        let mut tick = tokio::time::interval(LIMITS_INTERVAL);
        loop {
            tokio::select! {
                msg = sub.next() => {
                    let Some(msg) = msg else {
                        // No more reports will come: the others' counts must not stay in force.
                        tx.send_replace(LimitsReport::default());
                        break;
                    };
                    match serde_json::from_slice::<LimitsReport>(&msg.payload) {
                        Ok(report) if report.api_id != own => {
                            latest.insert(report.api_id.clone(), (Instant::now(), report));
                        }
                        Ok(_) => continue,
                        Err(e) => {
                            tracing::warn!(error = %e, "Unreadable limits report on the bus; ignored.");
                            continue;
                        }
                    }
                }
                _ = tick.tick() => {}
            }
            latest.retain(|_, (heard, _)| heard.elapsed() < PEER_LIMITS_TTL);
            let mut sum = LimitsReport::default();
            for (_, report) in latest.values() {
                sum.add(report);
            }
            tx.send_if_modified(|current| {
                let changed = *current != sum;
                if changed {
                    *current = sum;
                }
                changed
            });
            if tx.is_closed() {
                break;
            }
        }
    });
    Ok(rx)
}

impl LicenseLink for NatsLicenseLink {
    fn report(&self, records: Vec<UsageRecord>) -> BoxFuture<'_, Result<(), BusError>> {
        Box::pin(async move {
            let batch = UsageBatch { records };
            let unanswered = "no acknowledgement from the license proxy";
            let ack: UsageAck =
                request(&self.client, SUBJECT_USAGE, &batch, USAGE_ACK_TIMEOUT, unanswered).await?;
            if ack.ok { Ok(()) } else { Err(BusError::Refused(ack.error.unwrap_or_default())) }
        })
    }

    fn state(&self) -> watch::Receiver<Option<LicenseState>> {
        self.state.clone()
    }

    fn share_limits(&self, report: LimitsReport) -> BoxFuture<'_, Result<(), BusError>> {
        Box::pin(async move {
            let report = LimitsReport { api_id: self.id.clone(), ..report };
            let payload = serde_json::to_vec(&report).map_err(|e| BusError::Nats(e.to_string()))?;
            self.client
                .publish(SUBJECT_LIMITS, payload.into())
                .await
                .map_err(|e| BusError::Nats(e.to_string()))
        })
    }

    fn peer_limits(&self) -> Option<watch::Receiver<LimitsReport>> {
        Some(self.peers.clone())
    }

    fn mint_token(&self, claims: AccessClaims) -> BoxFuture<'_, Result<String, BusError>> {
        Box::pin(async move {
            let unanswered = "the license proxy did not answer the token request";
            let reply: TokenReply =
                request(&self.client, SUBJECT_TOKEN, &claims, TOKEN_TIMEOUT, unanswered).await?;
            match reply.token {
                Some(token) => Ok(token),
                None => Err(BusError::Refused(reply.error.unwrap_or_default())),
            }
        })
    }
}

/// Sends `body` as JSON on `subject` and reads the JSON answer; no answer within `timeout` is an error saying
/// `unanswered`.
async fn request<Q: serde::Serialize, A: serde::de::DeserializeOwned>(
    client: &async_nats::Client,
    subject: &'static str,
    body: &Q,
    timeout: Duration,
    unanswered: &str,
) -> Result<A, BusError> {
    let payload = serde_json::to_vec(body).map_err(|e| BusError::Nats(e.to_string()))?;
    let reply = tokio::time::timeout(timeout, client.request(subject, payload.into()))
        .await
        .map_err(|_| BusError::Nats(unanswered.into()))?
        .map_err(|e| BusError::Nats(e.to_string()))?;
    serde_json::from_slice(&reply.payload).map_err(|e| BusError::Nats(e.to_string()))
}

/// The proxy side of the link over NATS: answers usage batches and publishes the state.
#[derive(Debug)]
pub struct NatsLicenseHost {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl NatsLicenseHost {
    pub async fn start(
        client: async_nats::Client,
        service: Arc<dyn LicenseService>,
    ) -> Result<Self, BusError> {
        let mut sub = client.subscribe(SUBJECT_USAGE).await.map_err(|e| BusError::Nats(e.to_string()))?;
        let usage = {
            let (client, service) = (client.clone(), Arc::clone(&service));
            tokio::spawn(async move {
                while let Some(msg) = sub.next().await {
                    let (client, service) = (client.clone(), Arc::clone(&service));
                    // Batches are handled concurrently: the ledger writes them with one fsync.
                    tokio::spawn(async move {
                        let Some(reply) = msg.reply else { return };
                        let ack = match serde_json::from_slice::<UsageBatch>(&msg.payload) {
                            Ok(batch) => match service.record(batch.records).await {
                                Ok(()) => UsageAck { ok: true, error: None },
                                Err(e) => UsageAck { ok: false, error: Some(e) },
                            },
                            Err(e) => UsageAck { ok: false, error: Some(format!("unreadable batch: {e}")) },
                        };
                        if let Ok(payload) = serde_json::to_vec(&ack)
                            && let Err(e) = client.publish(reply, payload.into()).await
                        {
                            tracing::warn!(error = %e, "Cannot acknowledge a usage batch.");
                        }
                    });
                }
            })
        };
        let mut token_sub =
            client.subscribe(SUBJECT_TOKEN).await.map_err(|e| BusError::Nats(e.to_string()))?;
        let tokens = {
            let (client, service) = (client.clone(), Arc::clone(&service));
            tokio::spawn(async move {
                while let Some(msg) = token_sub.next().await {
                    let Some(reply) = msg.reply else { continue };
                    let answer = match serde_json::from_slice::<AccessClaims>(&msg.payload) {
                        Ok(claims) => match service.mint_token(claims).await {
                            Ok(token) => TokenReply { token: Some(token), error: None },
                            Err(e) => TokenReply { token: None, error: Some(e) },
                        },
                        Err(e) => TokenReply { token: None, error: Some(format!("unreadable claims: {e}")) },
                    };
                    if let Ok(payload) = serde_json::to_vec(&answer)
                        && let Err(e) = client.publish(reply, payload.into()).await
                    {
                        tracing::warn!(error = %e, "Cannot answer a token request.");
                    }
                }
            })
        };
        let publish = tokio::spawn(async move {
            let mut state = service.subscribe();
            let mut tick = tokio::time::interval(STATE_INTERVAL);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    changed = state.changed() => if changed.is_err() { break },
                }
                let payload = match serde_json::to_vec(&*state.borrow_and_update()) {
                    Ok(p) => p,
                    Err(_) => continue,
                };
                if let Err(e) = client.publish(SUBJECT_STATE, payload.into()).await {
                    tracing::warn!(error = %e, "Cannot publish the license state.");
                }
            }
        });
        Ok(Self { tasks: vec![usage, tokens, publish] })
    }
}

impl Drop for NatsLicenseHost {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Counters of a [`UsageReporter`].
#[derive(Debug, Default)]
pub struct UsageCounters {
    /// Records queued or in flight, not yet acknowledged.
    pub pending: AtomicU64,
    /// Records acknowledged by the proxy.
    pub acked: AtomicU64,
    /// Records dropped because the queue was full.
    pub dropped: AtomicU64,
}

/// The API server's queue of usage records toward the proxy: bounded, sent in batches, retried until acknowledged.
#[derive(Debug, Clone)]
pub struct UsageReporter {
    tx: mpsc::Sender<UsageRecord>,
    counters: Arc<UsageCounters>,
}

impl UsageReporter {
    /// Starts the sender task (inside a Tokio runtime). At most `capacity` records wait; more are dropped (and
    /// counted) rather than holding requests up.
    pub fn spawn(link: Arc<dyn LicenseLink>, capacity: usize) -> Self {
        let (tx, mut rx) = mpsc::channel::<UsageRecord>(capacity.max(1));
        let counters = Arc::new(UsageCounters::default());
        let c = Arc::clone(&counters);
        tokio::spawn(async move {
            let mut batch: VecDeque<UsageRecord> = VecDeque::new();
            let mut backoff = Duration::from_millis(100);
            loop {
                if batch.is_empty() {
                    match rx.recv().await {
                        Some(r) => batch.push_back(r),
                        None => break,
                    }
                }
                while batch.len() < USAGE_BATCH {
                    match rx.try_recv() {
                        Ok(r) => batch.push_back(r),
                        Err(_) => break,
                    }
                }
                let records: Vec<UsageRecord> = batch.iter().cloned().collect();
                let n = records.len() as u64;
                match link.report(records).await {
                    Ok(()) => {
                        batch.clear();
                        c.pending.fetch_sub(n, Ordering::AcqRel);
                        c.acked.fetch_add(n, Ordering::AcqRel);
                        backoff = Duration::from_millis(100);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, records = n, "Usage not acknowledged by the license proxy; retrying.");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
        });
        Self { tx, counters }
    }

    /// Queues a record; false (and counted as dropped) when the queue is full.
    pub fn push(&self, record: UsageRecord) -> bool {
        self.counters.pending.fetch_add(1, Ordering::AcqRel);
        match self.tx.try_send(record) {
            Ok(()) => true,
            Err(_) => {
                self.counters.pending.fetch_sub(1, Ordering::AcqRel);
                self.counters.dropped.fetch_add(1, Ordering::AcqRel);
                tracing::warn!("Usage queue toward the license proxy is full: a record is dropped.");
                false
            }
        }
    }

    pub fn counters(&self) -> &UsageCounters {
        &self.counters
    }
}
