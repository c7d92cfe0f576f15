//! The license proxy: the active license, the entitlement verdict with its grace period, the tenant keys, and the
//! usage ledger, published to API servers as one [`LicenseState`].

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chorus_bus::{BoxFuture, LicenseService};
use chorus_proto::license::{LicenseMode, LicenseState, UsageRecord, Verdict};
use chorus_proto::metrics as names;
use chorus_proto::token::AccessClaims;
use tokio::sync::watch;

use chorus_proto::secret::{constant_time_eq, hash_key};

use crate::keys::{KeyStore, StoredKey, merge};
use crate::ledger::{Ledger, LedgerError};
use crate::license::{KeyPair, LicenseError, TrustedKeys, Verified, format_time, now_secs};
use crate::store::{AcceptError, GraceClock, LicenseStore, deployment_key};

/// Default grace period: 7 days.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(7 * 24 * 3600);
/// Default ledger segment size before rotation: 16 MiB.
pub const DEFAULT_SEGMENT_BYTES: u64 = 16 * 1024 * 1024;

/// Settings of the proxy.
#[derive(Clone)]
pub struct ProxyConfig {
    pub data_dir: PathBuf,
    pub mode: LicenseMode,
    /// How long an expired or missing entitlement still serves.
    pub grace: Duration,
    /// Base64 Ed25519 public keys trusted to sign licenses.
    pub trusted_keys: Vec<String>,
    /// A license used only when none is stored.
    pub seed_license: Option<PathBuf>,
    /// Tenant keys from the config file (the data directory's keys.json overrides them by name).
    pub config_keys: Vec<StoredKey>,
    /// Keys (raw) allowed to download the audit, besides tenant keys marked `admin`.
    pub admin_keys: Vec<String>,
    pub max_segment_bytes: u64,
    /// Connected mode: the upstream license server (`https://…`).
    pub upstream: Option<String>,
    /// Sent to the upstream server as `Authorization: Bearer`.
    pub upstream_token: Option<String>,
    /// How often connected mode contacts the upstream server.
    pub refresh: Duration,
}

impl std::fmt::Debug for ProxyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyConfig")
            .field("data_dir", &self.data_dir)
            .field("mode", &self.mode)
            .field("grace", &self.grace)
            .field("trusted_keys", &self.trusted_keys.len())
            .field("seed_license", &self.seed_license)
            .field("config_keys", &self.config_keys)
            .field("admin_keys", &format_args!("[{} redacted]", self.admin_keys.len()))
            .field("upstream", &self.upstream)
            .field("refresh", &self.refresh)
            .finish_non_exhaustive()
    }
}

impl ProxyConfig {
    pub fn new(data_dir: PathBuf, mode: LicenseMode) -> Self {
        Self {
            data_dir,
            mode,
            grace: DEFAULT_GRACE,
            trusted_keys: Vec::new(),
            seed_license: None,
            config_keys: Vec::new(),
            admin_keys: Vec::new(),
            max_segment_bytes: DEFAULT_SEGMENT_BYTES,
            upstream: None,
            upstream_token: None,
            refresh: DEFAULT_REFRESH,
        }
    }
}

/// Default interval of connected mode's upstream contact: 1 hour.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(3600);

/// Why the proxy cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("trusted keys: {0}")]
    Trust(#[from] LicenseError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("seed license: {0}")]
    Seed(#[from] AcceptError),
    #[error("data directory: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Keys(#[from] crate::keys::KeyError),
    #[error("the data directory {0} is in use by another license proxy (one process per data directory)")]
    Locked(PathBuf),
    #[error(transparent)]
    Upstream(#[from] crate::upstream::UpstreamError),
}

struct Inner {
    /// Connected mode: the last successful contact with the upstream server.
    last_contact: Option<u64>,
    active: Option<Verified>,
    keys: Vec<StoredKey>,
    keys_raw: Option<Vec<u8>>,
}

/// The running proxy. Its state is recomputed every second (expiry, grace, keys file) and on every change.
pub struct LicenseProxy {
    /// Holds the data directory's lock for the proxy's lifetime.
    _lock: std::fs::File,
    config: ProxyConfig,
    store: LicenseStore,
    key_store: KeyStore,
    grace_clock: GraceClock,
    /// Connected mode: first start (the grace of a server never reached counts from it), last contact, and the
    /// last ledger entry reported.
    first_start: GraceClock,
    contact: GraceClock,
    reported: GraceClock,
    upstream: Option<crate::upstream::Upstream>,
    ledger: Ledger,
    deployment: KeyPair,
    admin_hashes: Vec<String>,
    inner: Mutex<Inner>,
    state: watch::Sender<LicenseState>,
}

impl std::fmt::Debug for LicenseProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LicenseProxy").field("config", &self.config).finish_non_exhaustive()
    }
}

impl LicenseProxy {
    /// Opens the data directory, seeds the license if none is stored, opens the ledger and starts the refresh
    /// ticker (inside a Tokio runtime).
    pub fn start(config: ProxyConfig) -> Result<Arc<Self>, ProxyError> {
        std::fs::create_dir_all(&config.data_dir)?;
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(config.data_dir.join("lock"))?;
        // A previous owner in this process may be letting go right now: wait a little before giving up.
        let mut tries = 0;
        loop {
            match lock.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) if tries < 20 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(ProxyError::Locked(config.data_dir.clone()));
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(ProxyError::Io(e)),
            }
        }
        let trusted = TrustedKeys::parse(&config.trusted_keys)?;
        if trusted.is_empty() && config.mode != LicenseMode::Open {
            tracing::warn!("No trusted license key configured: no license can be accepted.");
        }
        let store = LicenseStore::new(&config.data_dir, trusted);
        let now = now_secs();
        if let Some(seed) = &config.seed_license {
            if seed.exists() {
                store.seed(seed, now)?;
            } else {
                tracing::info!(seed = %seed.display(), "No seed license file.");
            }
        }
        let deployment = deployment_key(&config.data_dir)?;
        let ledger = Ledger::open(&config.data_dir.join("ledger"), config.max_segment_bytes)?;
        let key_store = KeyStore::new(&config.data_dir);
        let admin_hashes = config.admin_keys.iter().map(|k| hash_key(k)).collect();
        let upstream = match (&config.upstream, config.mode) {
            (Some(url), LicenseMode::Connected) => {
                Some(crate::upstream::Upstream::new(url, config.upstream_token.clone())?)
            }
            (Some(_), LicenseMode::Open | LicenseMode::AirGapped) => {
                tracing::warn!(
                    "An upstream license server is configured but the mode is not connected: unused."
                );
                None
            }
            (None, LicenseMode::Connected) => {
                tracing::warn!(
                    "Connected mode without an upstream server: the stored license decides, as air-gapped."
                );
                None
            }
            (None, LicenseMode::Open | LicenseMode::AirGapped) => None,
        };
        let contact = GraceClock::named(&config.data_dir, "upstream-contact");
        let first_start = GraceClock::named(&config.data_dir, "first-start");
        first_start.start(now);
        let inner =
            Inner { last_contact: contact.get(), active: store.active()?, keys: Vec::new(), keys_raw: None };
        let generation = u64::try_from(
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis()),
        )
        .unwrap_or(0);
        let (state, _) = watch::channel(LicenseState {
            generation,
            mode: config.mode,
            verdict: Verdict::Serving,
            message: None,
            licensee: None,
            expires_at: None,
            refuse_after: None,
            refusal: None,
            max_concurrent_streams: None,
            models_allowed: None,
            keys: Vec::new(),
            token_key: None,
        });
        let proxy = Arc::new(Self {
            _lock: lock,
            grace_clock: GraceClock::new(&config.data_dir),
            first_start,
            contact,
            reported: GraceClock::named(&config.data_dir, "upstream-reported"),
            upstream,
            config,
            store,
            key_store,
            ledger,
            deployment,
            admin_hashes,
            inner: Mutex::new(inner),
            state,
        });
        proxy.reload_keys()?;
        proxy.refresh();
        if let Some(up) = proxy.upstream.clone() {
            let weak = Arc::downgrade(&proxy);
            let every = proxy.config.refresh.max(Duration::from_millis(100));
            tokio::spawn(async move {
                loop {
                    let Some(proxy) = weak.upgrade() else { break };
                    proxy.sync_upstream(&up).await;
                    drop(proxy);
                    tokio::time::sleep(every).await;
                }
            });
        }
        let weak = Arc::downgrade(&proxy);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let Some(proxy) = weak.upgrade() else { break };
                if let Err(e) = proxy.reload_keys() {
                    tracing::warn!(error = %e, "Keys file not reloaded.");
                }
                proxy.refresh();
            }
        });
        Ok(proxy)
    }

    pub fn config(&self) -> &ProxyConfig {
        &self.config
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    pub fn deployment_key(&self) -> &KeyPair {
        &self.deployment
    }

    /// The active license, if any.
    pub fn active(&self) -> Option<Verified> {
        self.inner.lock().ok().and_then(|i| i.active.clone())
    }

    /// Follows the state (every change).
    pub fn subscribe_state(&self) -> watch::Receiver<LicenseState> {
        self.state.subscribe()
    }

    pub fn current(&self) -> LicenseState {
        self.state.borrow().clone()
    }

    /// Verifies and stores a posted license; the state is republished at once.
    pub fn post_license(&self, document: &[u8]) -> Result<Verified, AcceptError> {
        let verified = self.store.accept(document, now_secs())?;
        let active = self.store.active()?;
        if let Ok(mut inner) = self.inner.lock() {
            inner.active = active;
        }
        self.refresh();
        Ok(verified)
    }

    /// Connected mode: fetches the license from the upstream server, then reports the usage not reported yet.
    pub async fn sync_upstream(self: &Arc<Self>, up: &crate::upstream::Upstream) {
        let key: String = self
            .deployment
            .public_base64()
            .bytes()
            .map(|b| match b {
                b'+' => "%2B".to_owned(),
                b'/' => "%2F".to_owned(),
                b'=' => "%3D".to_owned(),
                other => char::from(other).to_string(),
            })
            .collect();
        let reached = match up.call("GET", &format!("/license?deployment={key}"), None).await {
            Ok((200, body)) => {
                let proxy = Arc::clone(self);
                match tokio::task::spawn_blocking(move || proxy.store.accept(&body, now_secs())).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "The upstream server's license was not accepted.")
                    }
                    Err(e) => tracing::warn!(error = %e, "Upstream license check failed."),
                }
                true
            }
            Ok((204, _)) => true,
            Ok((status, _)) => {
                tracing::warn!(status, upstream = %up.url(), "The upstream license server refused the license check.");
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, upstream = %up.url(), "The upstream license server was not reached.");
                false
            }
        };
        if reached {
            let now = now_secs();
            self.contact.set(now);
            let active = self.store.active().ok().flatten();
            if let Ok(mut inner) = self.inner.lock() {
                inner.last_contact = Some(now);
                inner.active = active;
            }
            self.report_usage(up).await;
        }
        self.refresh();
    }

    async fn report_usage(&self, up: &crate::upstream::Upstream) {
        loop {
            let after = self.reported.get().unwrap_or(0);
            let Ok(snapshot) = self.ledger.snapshot().await else { return };
            let read = tokio::task::spawn_blocking(move || {
                crate::ledger::read_since(&snapshot, after, crate::upstream::REPORT_BATCH)
            })
            .await;
            let entries = match read {
                Ok(Ok(entries)) if !entries.is_empty() => entries,
                Ok(Ok(_)) => return,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "Cannot read the ledger for the usage report.");
                    return;
                }
                Err(_) => return,
            };
            let last = entries.last().map_or(after, |e| e.seq);
            let body = serde_json::json!({
                "deployment": self.deployment.public_base64(),
                "records": entries.iter().map(|e| serde_json::json!({"seq": e.seq, "record": e.record})).collect::<Vec<_>>(),
            });
            let Ok(bytes) = serde_json::to_vec(&body) else { return };
            match up.call("POST", "/usage", Some(bytes)).await {
                Ok((status, _)) if (200..300).contains(&status) => self.reported.set(last),
                Ok((status, _)) => {
                    tracing::warn!(
                        status,
                        "The upstream server refused the usage report; retried at the next contact."
                    );
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "Usage report not delivered; retried at the next contact.");
                    return;
                }
            }
        }
    }

    /// True when `key` may download the audit.
    pub fn is_admin(&self, key: &str) -> bool {
        let hash = hash_key(key);
        if self.admin_hashes.iter().any(|h| constant_time_eq(h, &hash)) {
            return true;
        }
        self.inner
            .lock()
            .map(|i| i.keys.iter().any(|k| k.admin && !k.revoked && constant_time_eq(&k.sha256, &hash)))
            .unwrap_or(false)
    }

    /// Re-reads keys.json when its contents changed.
    fn reload_keys(&self) -> Result<(), crate::keys::KeyError> {
        let raw = std::fs::read(self.key_store.path()).ok();
        let changed = self.inner.lock().map(|i| i.keys_raw != raw).unwrap_or(false);
        if !changed {
            return Ok(());
        }
        let stored = self.key_store.load()?;
        let merged = merge(&self.config.config_keys, &stored);
        if let Ok(mut inner) = self.inner.lock() {
            inner.keys = merged;
            inner.keys_raw = raw;
        }
        self.refresh();
        Ok(())
    }

    /// Recomputes the state; publishes it (with a new generation) when it changed.
    pub fn refresh(&self) {
        let now = now_secs();
        let Ok(inner) = self.inner.lock() else { return };
        let grace = self.config.grace.as_secs();
        let active = inner.active.as_ref();
        let (verdict, message, refuse_after, refusal) = match self.config.mode {
            LicenseMode::Open => (Verdict::Serving, None, None, None),
            LicenseMode::AirGapped | LicenseMode::Connected => match active {
                Some(l) if !l.is_expired(now) => {
                    self.grace_clock.clear();
                    (Verdict::Serving, None, None, None)
                }
                Some(l) => {
                    let end = l.expires_at.saturating_add(grace);
                    let what = format!("the license expired at {}", l.license.expires_at);
                    grace_verdict(now, end, &what)
                }
                None => {
                    let end = self.grace_clock.start(now).saturating_add(grace);
                    grace_verdict(now, end, "no license is installed")
                }
            },
        };
        let (verdict, message, refuse_after, refusal) = match (&self.upstream, inner.last_contact) {
            (Some(up), last) => {
                // Two missed contacts (and a little slack) make the entitlement stale; the grace counts from the
                // last contact.
                let fresh = (self.config.refresh.as_secs().saturating_mul(2) + 5).min(grace);
                match last {
                    Some(t) if now.saturating_sub(t) <= fresh => (verdict, message, refuse_after, refusal),
                    _ => {
                        let since = last.unwrap_or_else(|| self.first_start.get().unwrap_or(now));
                        let what = match last {
                            Some(t) => format!(
                                "the license server {} has not been reached since {}",
                                up.url(),
                                format_time(t)
                            ),
                            None => format!("the license server {} has not been reached yet", up.url()),
                        };
                        let contact = grace_verdict(now, since.saturating_add(grace), &what);
                        combine((verdict, message, refuse_after, refusal), contact)
                    }
                }
            }
            (None, _) => (verdict, message, refuse_after, refusal),
        };
        let licensed = active.filter(|l| self.config.mode != LicenseMode::Open || !l.is_expired(now));
        let next = LicenseState {
            generation: 0,
            mode: self.config.mode,
            verdict,
            message,
            licensee: active.map(|l| l.license.licensee.clone()),
            expires_at: active.map(|l| l.expires_at),
            refuse_after,
            refusal,
            max_concurrent_streams: licensed.and_then(|l| l.license.max_concurrent_streams),
            models_allowed: licensed.and_then(|l| l.license.models.clone()),
            keys: inner.keys.iter().map(StoredKey::to_tenant).collect(),
            token_key: Some(self.deployment.public_base64()),
        };
        drop(inner);
        record_metrics(&next, now);
        self.state.send_if_modified(|current| {
            let same = LicenseState { generation: current.generation, ..next.clone() } == *current;
            if !same {
                *current = LicenseState { generation: current.generation + 1, ..next };
                tracing::info!(
                    generation = current.generation,
                    verdict = ?current.verdict,
                    keys = current.keys.len(),
                    "License state changed."
                );
            }
            !same
        });
    }
}

fn grace_verdict(now: u64, end: u64, what: &str) -> (Verdict, Option<String>, Option<u64>, Option<String>) {
    let refusal = format!(
        "{what} and the grace period ended at {}: new requests are refused until a valid license is posted",
        format_time(end)
    );
    if now < end {
        let msg = format!("{what}; serving in the grace period until {}", format_time(end));
        (Verdict::Grace, Some(msg), Some(end), Some(refusal))
    } else {
        (Verdict::Refusing, Some(refusal.clone()), Some(end), Some(refusal))
    }
}

type Outcome = (Verdict, Option<String>, Option<u64>, Option<String>);

/// The stricter of two verdicts (refusing over grace over serving; the earlier deadline).
fn combine(a: Outcome, b: Outcome) -> Outcome {
    let rank = |v: Verdict| match v {
        Verdict::Serving => 0,
        Verdict::Grace => 1,
        Verdict::Refusing => 2,
    };
    let (first, second) = if rank(a.0) >= rank(b.0) { (a, b) } else { (b, a) };
    let refuse_after = match (first.2, second.2) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    };
    if second.0 == Verdict::Serving {
        return first;
    }
    let message = match (first.1, second.1) {
        (Some(x), Some(y)) => Some(format!("{x}; {y}")),
        (x, y) => x.or(y),
    };
    (first.0, message, refuse_after, first.3.or(second.3))
}

fn record_metrics(state: &LicenseState, now: u64) {
    if let Some(exp) = state.expires_at {
        let days = (exp as f64 - now as f64) / 86_400.0;
        metrics::gauge!(names::LICENSE_DAYS_TO_EXPIRY).set(days);
    }
    for mode in [LicenseMode::Open, LicenseMode::Connected, LicenseMode::AirGapped] {
        let v = if mode == state.mode { 1.0 } else { 0.0 };
        metrics::gauge!(names::LICENSE_MODE, "mode" => mode.as_str()).set(v);
    }
    let grace = match state.verdict_at(now) {
        Verdict::Serving => 0.0,
        Verdict::Grace => 1.0,
        Verdict::Refusing => 2.0,
    };
    metrics::gauge!(names::LICENSE_GRACE_STATE).set(grace);
}

impl LicenseProxy {
    /// Signs an access token with the deployment key, after checking its claims ([`AccessClaims::check_mintable`]).
    pub fn mint_token(&self, claims: &AccessClaims) -> Result<String, String> {
        claims.check_mintable(now_secs())?;
        let input = claims.signing_input();
        let signature = self.deployment.sign_raw(input.as_bytes());
        Ok(chorus_proto::token::assemble(&input, &signature))
    }
}

impl LicenseService for LicenseProxy {
    fn record(&self, records: Vec<UsageRecord>) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(self.ledger.append(records))
    }

    fn mint_token(&self, claims: AccessClaims) -> BoxFuture<'_, Result<String, String>> {
        let result = LicenseProxy::mint_token(self, &claims);
        Box::pin(async move { result })
    }

    fn subscribe(&self) -> watch::Receiver<LicenseState> {
        self.state.subscribe()
    }
}
