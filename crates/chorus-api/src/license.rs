//! The API server's side of the license proxy: entitlement, tenant keys with their limits, and usage metering.
//!
//! [`LicenseGate`] follows the proxy's [`LicenseState`] (pushed over the bus) and holds the per-key counters. Without
//! a proxy ([`LicenseGate::open`]) nothing changes: the static `api_keys` (or none) decide, and meters only record the
//! API's metrics.
//!
//! With a proxy configured but not heard from yet (the API started first, or the bus is down since start):
//! requests with a static key are served; a key that is not a static key cannot be checked yet and gets 503
//! `unserviceable` with `Retry-After: 1` (so is every request when no static key is configured: the tenant list is
//! unknown, and the API does not run open by accident). Once a state has arrived it keeps applying, including its
//! grace deadline (`refuse_after`), if the proxy goes quiet.
//!
//! Limits: per tenant key, `max_concurrent` requests in flight (each WebSocket context counts as one while it
//! runs; the socket itself as none) and `requests_per_minute` started in any 60-second window; beyond them 429 (`concurrency_limited` /
//! `rate_limited`) with `Retry-After`. The license's `max_concurrent_streams` bounds synthesis requests in flight.
//! The limits hold across API servers: each shares its counts over the link twice a second and adds the others'
//! latest counts to its own when it admits a request (see [`chorus_bus::LicenseLink::peer_limits`]), so servers can
//! exceed a limit together only by what they admit within one report interval of each other. Past the grace period every new request but `/` and `/status` gets 403 `license_inactive`;
//! responses already streaming are not cut.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chorus_bus::{LIMITS_INTERVAL, LicenseLink, UsageReporter};
use chorus_proto::ErrorCode;
use chorus_proto::license::{KeyUse, LicenseState, LimitsReport, TenantKey, UsageRecord, Verdict};
use chorus_proto::metrics as names;
use chorus_proto::secret::{constant_time_eq, hash_key};
use tokio::sync::watch;

use crate::error::ApiError;

/// Usage records that may wait for the proxy's acknowledgement before new ones are dropped.
pub const USAGE_QUEUE: usize = 100_000;

/// The usage status of a request whose client went away before it ended.
pub const CLIENT_CLOSED: &str = "client_closed";
/// The usage status of a WebSocket context the client cancelled.
pub const CANCELLED: &str = "cancelled";

/// The caller of a request, as authentication found it.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// The tenant key's name; `None` for a static key or open access.
    pub key_name: Option<String>,
    /// Released when the last clone is dropped (the request's end). WebSockets hold none: each of their contexts
    /// is admitted on its own ([`LicenseGate::admit_context`]).
    pub guard: Option<Arc<InFlight>>,
    /// The tenant key the request presented (its limits as they were at authentication; a WebSocket looks it up
    /// again for every context and follows its revocation).
    pub tenant: Option<TenantKey>,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(parts.extensions.get::<Caller>().cloned().unwrap_or_default())
    }
}

/// A request counted in flight (per key and/or against the license's stream limit) until dropped.
#[derive(Debug)]
pub struct InFlight {
    counters: Vec<Arc<AtomicU32>>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        for c in &self.counters {
            c.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

#[derive(Debug, Default)]
struct KeyCounters {
    in_flight: Arc<AtomicU32>,
    started: VecDeque<Instant>,
}

/// The rate window of `requests_per_minute`.
const RATE_WINDOW: Duration = Duration::from_secs(60);

impl KeyCounters {
    /// Forgets starts older than the window.
    fn prune(&mut self, now: Instant) {
        while self.started.front().is_some_and(|t| now.duration_since(*t) >= RATE_WINDOW) {
            self.started.pop_front();
        }
    }

    /// How long until the oldest start leaves the window.
    fn frees_in(&self, now: Instant) -> Option<Duration> {
        self.started.front().map(|t| RATE_WINDOW.saturating_sub(now.duration_since(*t)))
    }
}

type KeyMap = Arc<Mutex<HashMap<String, KeyCounters>>>;

/// What authentication concluded about a presented key that is not a static key.
#[derive(Debug)]
pub enum TenantCheck {
    /// A live tenant key.
    Known(TenantKey),
    /// A tenant key that was revoked.
    Revoked,
    /// Not a key of this deployment.
    Unknown,
    /// The proxy has not been heard from: keys cannot be checked yet.
    NotYetKnown,
}

/// Entitlement, tenants and metering of one API server.
pub struct LicenseGate {
    state: Option<watch::Receiver<Option<LicenseState>>>,
    reporter: Option<UsageReporter>,
    keys: KeyMap,
    streams: Arc<AtomicU32>,
    /// The other API servers' use of the limits, when there are others (a cluster).
    peers: Option<watch::Receiver<LimitsReport>>,
    /// Shares this server's use with them.
    sharing: Option<tokio::task::JoinHandle<()>>,
    /// Never run open: with no static key and no tenant key, every request is refused.
    require_keys: bool,
    /// The link to the proxy, which signs access tokens.
    link: Option<Arc<dyn LicenseLink>>,
}

impl std::fmt::Debug for LicenseGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LicenseGate").field("proxy", &self.state.is_some()).finish_non_exhaustive()
    }
}

impl Default for LicenseGate {
    fn default() -> Self {
        Self::open()
    }
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Why an access token could not be minted ([`LicenseGate::mint_token`]).
#[derive(Debug)]
pub enum MintError {
    /// No license proxy: nothing can sign.
    NoProxy,
    Failed(String),
}

impl LicenseGate {
    /// No license proxy: open mode, no tenants, no metering.
    pub fn open() -> Self {
        Self {
            state: None,
            reporter: None,
            keys: KeyMap::default(),
            streams: Arc::default(),
            peers: None,
            sharing: None,
            require_keys: false,
            link: None,
        }
    }

    /// Follows `link`'s state, reports usage through it, and shares the limits' counts with the other API servers
    /// it reaches (starts tasks: call inside a Tokio runtime).
    pub fn with_proxy(link: Arc<dyn LicenseLink>) -> Self {
        let state = link.state();
        let peers = link.peer_limits();
        let keys = KeyMap::default();
        let streams = Arc::<AtomicU32>::default();
        let sharing = peers.is_some().then(|| {
            let (link, keys, streams) = (Arc::clone(&link), Arc::clone(&keys), Arc::clone(&streams));
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(LIMITS_INTERVAL);
                loop {
                    tick.tick().await;
                    let report = own_use(&keys, &streams);
                    if let Err(e) = link.share_limits(report).await {
                        tracing::debug!(error = %e, "Cannot share the limits' counts.");
                    }
                }
            })
        });
        let reporter = UsageReporter::spawn(Arc::clone(&link), USAGE_QUEUE);
        Self {
            state: Some(state),
            reporter: Some(reporter),
            keys,
            streams,
            peers,
            sharing,
            require_keys: false,
            link: Some(link),
        }
    }

    /// The public key that signs access tokens (the deployment's), once the proxy has been heard from.
    pub fn token_key(&self) -> Option<String> {
        self.state.as_ref().and_then(|s| s.borrow().as_ref().and_then(|st| st.token_key.clone()))
    }

    /// The tenant key with this SHA-256, revoked or not.
    pub fn tenant_by_hash(&self, sha256: &str) -> Option<TenantKey> {
        let guard = self.state.as_ref()?.borrow();
        guard.as_ref()?.keys.iter().find(|k| constant_time_eq(&k.sha256, sha256)).cloned()
    }

    /// Has the proxy sign an access token.
    pub async fn mint_token(&self, claims: chorus_proto::token::AccessClaims) -> Result<String, MintError> {
        let Some(link) = &self.link else { return Err(MintError::NoProxy) };
        link.mint_token(claims).await.map_err(|e| MintError::Failed(e.to_string()))
    }

    /// The other API servers' use of `key` and of the license's streams.
    fn peer_use(&self, key: Option<&str>) -> (KeyUse, u32) {
        let Some(peers) = &self.peers else { return (KeyUse::default(), 0) };
        let peers = peers.borrow();
        (key.and_then(|k| peers.keys.get(k).copied()).unwrap_or_default(), peers.streams)
    }

    /// Refuse to run open: without static keys, requests need a tenant key even while the proxy has none (an API
    /// on a public address with no key of its own).
    pub fn require_keys(mut self, require: bool) -> Self {
        self.require_keys = require;
        self
    }

    /// See [`LicenseGate::require_keys`].
    pub fn requires_keys(&self) -> bool {
        self.require_keys
    }

    /// The usage reporter (for its counters), when a proxy is configured.
    pub fn reporter(&self) -> Option<&UsageReporter> {
        self.reporter.as_ref()
    }

    /// The latest state, when a proxy is configured and has been heard from.
    pub fn current(&self) -> Option<LicenseState> {
        self.state.as_ref().and_then(|s| s.borrow().clone())
    }

    /// True when a proxy is configured but no state has arrived yet.
    pub fn awaiting(&self) -> bool {
        self.state.as_ref().is_some_and(|s| s.borrow().is_none())
    }

    /// True when tenant keys exist (so keys are required even without static keys).
    pub fn has_tenants(&self) -> bool {
        self.state.as_ref().is_some_and(|s| s.borrow().as_ref().is_some_and(|st| !st.keys.is_empty()))
    }

    /// Looks a presented key up among the tenant keys.
    pub fn check_key(&self, key: &str) -> TenantCheck {
        self.check_hash(&hash_key(key))
    }

    /// Looks a tenant key up by its SHA-256 (hex), as [`LicenseGate::check_key`].
    pub fn check_hash(&self, hash: &str) -> TenantCheck {
        let Some(rx) = &self.state else { return TenantCheck::Unknown };
        let guard = rx.borrow();
        let Some(state) = guard.as_ref() else { return TenantCheck::NotYetKnown };
        match state.keys.iter().find(|k| constant_time_eq(&k.sha256, hash)) {
            Some(k) if k.revoked => TenantCheck::Revoked,
            Some(k) => TenantCheck::Known(k.clone()),
            None => TenantCheck::Unknown,
        }
    }

    /// The proxy's state as it changes (`None` without a proxy): WebSockets follow it to close a revoked key's
    /// sockets.
    pub fn watch(&self) -> Option<watch::Receiver<Option<LicenseState>>> {
        self.state.clone()
    }

    /// Admits one WebSocket context of `caller`: the key is looked up again (its limits may have changed, it may
    /// have been revoked), then counted like a request ([`LicenseGate::admit`]), with the license's stream limit.
    pub fn admit_context(&self, caller: &Caller) -> Result<Option<Arc<InFlight>>, ApiError> {
        let Some(tenant) = &caller.tenant else { return self.admit(None, true) };
        match self.check_hash(&tenant.sha256) {
            TenantCheck::Known(current) => self.admit(Some(&current), true),
            // The proxy went quiet since the handshake: its last word on the key stands.
            TenantCheck::NotYetKnown => self.admit(Some(tenant), true),
            TenantCheck::Revoked | TenantCheck::Unknown => {
                Err(ApiError::new(ErrorCode::Unauthorized, "this API key has been revoked"))
            }
        }
    }

    /// Refuses new requests past the grace period.
    pub fn check_entitlement(&self) -> Result<(), ApiError> {
        let Some(state) = self.current() else { return Ok(()) };
        match state.verdict_at(now_secs()) {
            Verdict::Serving | Verdict::Grace => Ok(()),
            Verdict::Refusing => Err(ApiError::new(
                ErrorCode::LicenseInactive,
                state
                    .refusal
                    .or(state.message)
                    .unwrap_or_else(|| "this deployment's license is not active".into()),
            )),
        }
    }

    /// Refuses a model the license does not allow (`requested` as the client named it, `resolved` our id).
    pub fn check_model(&self, requested: &str, resolved: &str) -> Result<(), ApiError> {
        let Some(allowed) = self.current().and_then(|s| s.models_allowed) else { return Ok(()) };
        if allowed.iter().any(|m| m == requested || m == resolved) {
            return Ok(());
        }
        Err(ApiError::new(
            ErrorCode::LicenseInactive,
            format!("the license of this deployment does not include model '{requested}'"),
        ))
    }

    /// Counts a request against its key's limits and (for synthesis) the license's stream limit; 429 beyond
    /// them. The returned guard releases the slots when dropped.
    pub fn admit(
        &self,
        tenant: Option<&TenantKey>,
        synthesis: bool,
    ) -> Result<Option<Arc<InFlight>>, ApiError> {
        let mut counters = Vec::new();
        let (peer, peer_streams) = self.peer_use(tenant.map(|k| k.name.as_str()));
        if let Some(key) = tenant {
            let mut keys =
                self.keys.lock().map_err(|_| ApiError::new(ErrorCode::Internal, "limiter poisoned"))?;
            let entry = keys.entry(key.name.clone()).or_default();
            let now = Instant::now();
            if let Some(rpm) = key.requests_per_minute {
                entry.prune(now);
                if entry.started.len() as u64 + u64::from(peer.started_last_minute) >= u64::from(rpm) {
                    // Room again when the oldest start here or on another server leaves the window.
                    let peer_frees = peer.frees_in_ms.map(Duration::from_millis);
                    let wait = match (entry.frees_in(now), peer_frees) {
                        (Some(a), Some(b)) => a.min(b),
                        (a, b) => a.or(b).unwrap_or(RATE_WINDOW),
                    };
                    let secs =
                        u32::try_from(wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).unwrap_or(60);
                    return Err(ApiError {
                        retry_after: Some(secs.max(1)),
                        ..ApiError::new(
                            ErrorCode::RateLimited,
                            format!("key '{}' is limited to {rpm} requests per minute", key.name),
                        )
                    });
                }
            }
            if let Some(max) = key.max_concurrent {
                if !try_acquire(&entry.in_flight, max.saturating_sub(peer.in_flight)) {
                    return Err(ApiError::new(
                        ErrorCode::ConcurrencyLimited,
                        format!("key '{}' is limited to {max} requests at once", key.name),
                    ));
                }
                counters.push(Arc::clone(&entry.in_flight));
            }
            // Counted as started only once admitted: a request refused for concurrency costs no rate.
            if key.requests_per_minute.is_some() {
                entry.started.push_back(now);
            }
        }
        if synthesis && let Some(max) = self.current().and_then(|s| s.max_concurrent_streams) {
            if !try_acquire(&self.streams, max.saturating_sub(peer_streams)) {
                drop(InFlight { counters });
                return Err(ApiError::new(
                    ErrorCode::ConcurrencyLimited,
                    format!("the license allows {max} streams at once"),
                ));
            }
            counters.push(Arc::clone(&self.streams));
        }
        Ok((!counters.is_empty()).then(|| Arc::new(InFlight { counters })))
    }

    /// A meter for one synthesis request: it records the API's time-to-first-audio and duration metrics, and
    /// reports the usage record to the license proxy when there is one.
    pub fn meter(&self, caller: &Caller, route: &str, model: &str, voice_id: &str, chars: u64) -> UsageMeter {
        UsageMeter {
            reporter: self.reporter.clone(),
            started: Instant::now(),
            state: Mutex::new(MeterState {
                record: UsageRecord {
                    id: uuid::Uuid::new_v4().to_string(),
                    time_ms: 0,
                    key_name: caller.key_name.clone(),
                    model: model.to_owned(),
                    voice_id: voice_id.to_owned(),
                    route: route.to_owned(),
                    characters: chars,
                    audio_seconds: 0.0,
                    ttfa_ms: None,
                    status: CLIENT_CLOSED.into(),
                },
                done: false,
            }),
        }
    }
}

impl Drop for LicenseGate {
    fn drop(&mut self) {
        if let Some(task) = &self.sharing {
            task.abort();
        }
    }
}

/// This server's use of the limits, for the other servers.
fn own_use(keys: &KeyMap, streams: &AtomicU32) -> LimitsReport {
    let now = Instant::now();
    let mut report = LimitsReport { streams: streams.load(Ordering::Acquire), ..LimitsReport::default() };
    if let Ok(mut keys) = keys.lock() {
        keys.retain(|name, counters| {
            counters.prune(now);
            let used = KeyUse {
                in_flight: counters.in_flight.load(Ordering::Acquire),
                started_last_minute: u32::try_from(counters.started.len()).unwrap_or(u32::MAX),
                frees_in_ms: counters.frees_in(now).map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            };
            let in_use = used.in_flight > 0 || used.started_last_minute > 0;
            if in_use {
                report.keys.insert(name.clone(), used);
            }
            // Idle keys are forgotten (their counters are recreated on the next request).
            in_use
        });
    }
    report
}

fn try_acquire(counter: &AtomicU32, max: u32) -> bool {
    counter.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1)).is_ok()
}

#[derive(Debug)]
struct MeterState {
    record: UsageRecord,
    done: bool,
}

/// Accounts one synthesis request; sends its [`UsageRecord`] when finished (or, as [`CLIENT_CLOSED`], when
/// dropped unfinished). Its `audio_seconds` are the audio the worker produced for it (silence of `<break>` tags
/// included): what the request cost, as opposed to its characters.
/// The transcript is counted, never kept.
#[derive(Debug)]
pub struct UsageMeter {
    reporter: Option<UsageReporter>,
    started: Instant,
    state: Mutex<MeterState>,
}

impl UsageMeter {
    /// More characters (a WebSocket continuation).
    pub fn add_chars(&self, chars: u64) {
        if let Ok(mut s) = self.state.lock() {
            s.record.characters += chars;
        }
    }

    /// Audio sent: `samples` at `sample_rate`.
    pub fn audio(&self, samples: usize, sample_rate: u32) {
        if let Ok(mut s) = self.state.lock() {
            if s.record.ttfa_ms.is_none() {
                s.record.ttfa_ms = Some(self.started.elapsed().as_secs_f64() * 1000.0);
            }
            if sample_rate > 0 {
                s.record.audio_seconds += samples as f64 / f64::from(sample_rate);
            }
        }
    }

    /// Ends the request with `status` (`completed` or an error code) and sends the record.
    pub fn finish(&self, status: &str) {
        if let Ok(mut s) = self.state.lock()
            && !s.done
        {
            s.done = true;
            status.clone_into(&mut s.record.status);
            s.record.time_ms =
                u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis()))
                    .unwrap_or(0);
            let route = s.record.route.clone();
            if let Some(ms) = s.record.ttfa_ms {
                metrics::histogram!(names::API_TTFA, "route" => route.clone()).record(ms / 1000.0);
            }
            metrics::histogram!(names::REQUEST_DURATION, "route" => route)
                .record(self.started.elapsed().as_secs_f64());
            if let Some(reporter) = &self.reporter {
                reporter.push(s.record.clone());
            }
        }
    }
}

impl Drop for UsageMeter {
    /// A meter dropped unfinished is a request whose client went away (hung up, reset, or stopped reading).
    fn drop(&mut self) {
        self.finish(CLIENT_CLOSED);
    }
}
