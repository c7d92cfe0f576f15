//! What API servers and the license proxy exchange: usage records (API -> proxy, acknowledged once durable) and the
//! entitlement and tenant state (proxy -> API servers, pushed on every change and every second).
//!
//! Usage records carry metadata only: never the transcript, never a key.

/// NATS subject of usage batches (request/reply: a [`UsageBatch`] in, a [`UsageAck`] out once the proxy has
/// written and fsync'd every record of the batch).
pub const SUBJECT_USAGE: &str = "chorus.v1.license.usage";
/// NATS subject on which the proxy publishes its [`LicenseState`] (every second, and at once on a change).
pub const SUBJECT_STATE: &str = "chorus.v1.license.state";

/// One finished request, as the API server accounts for it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct UsageRecord {
    /// A UUID chosen by the API server; the proxy stores each id once, so a batch sent again after a lost
    /// acknowledgement is not counted twice.
    pub id: String,
    /// When the request finished, in milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// The tenant key's name; `None` for open access or a static `api_keys` key.
    pub key_name: Option<String>,
    /// The model id the request named.
    pub model: String,
    pub voice_id: String,
    /// `bytes`, `sse`, `websocket` or `openai_speech`.
    pub route: String,
    /// Characters of transcript synthesized (counted, never stored).
    pub characters: u64,
    /// Seconds of audio sent.
    pub audio_seconds: f64,
    /// Milliseconds from the request to its first audio, if any audio was produced.
    pub ttfa_ms: Option<f64>,
    /// `completed`, `cancelled` or an error code (e.g. `worker_lost`).
    pub status: String,
}

/// Records sent together; acknowledged together.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct UsageBatch {
    pub records: Vec<UsageRecord>,
}

/// The proxy's answer to a [`UsageBatch`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UsageAck {
    /// True when every record of the batch is durably stored (or was already).
    pub ok: bool,
    /// Why not, when `ok` is false.
    pub error: Option<String>,
}

/// How the deployment is entitled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LicenseMode {
    /// No license needed (a self-hosted open deployment).
    Open,
    /// A license refreshed from an upstream endpoint.
    Connected,
    /// An offline license file; no contact with the outside.
    AirGapped,
}

impl LicenseMode {
    pub fn as_str(self) -> &'static str {
        match self {
            LicenseMode::Open => "open",
            LicenseMode::Connected => "connected",
            LicenseMode::AirGapped => "air-gapped",
        }
    }
}

/// Whether new requests are served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Entitled.
    Serving,
    /// Not entitled (expired, missing, unreachable), but within the grace period: still serving.
    Grace,
    /// Past the grace period: new requests are refused; requests in flight finish.
    Refusing,
}

/// A tenant API key, as API servers need it: the key itself is never sent, only its SHA-256.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TenantKey {
    pub name: String,
    /// Lowercase hex SHA-256 of the key.
    pub sha256: String,
    /// Requests in flight at once for this key; `None` is unlimited.
    pub max_concurrent: Option<u32>,
    /// Requests started per minute for this key; `None` is unlimited.
    pub requests_per_minute: Option<u32>,
    pub revoked: bool,
}

impl std::fmt::Debug for TenantKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantKey")
            .field("name", &self.name)
            .field("max_concurrent", &self.max_concurrent)
            .field("requests_per_minute", &self.requests_per_minute)
            .field("revoked", &self.revoked)
            .finish_non_exhaustive()
    }
}

/// The entitlement and tenants the proxy publishes.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LicenseState {
    /// Grows by one on every change (a restarted proxy starts from the time in milliseconds, so it still grows).
    pub generation: u64,
    pub mode: LicenseMode,
    pub verdict: Verdict,
    /// Why the verdict is not `serving` (shown to clients when refusing).
    pub message: Option<String>,
    /// The licensee of the active license.
    pub licensee: Option<String>,
    /// Expiry of the active license, seconds since the Unix epoch.
    pub expires_at: Option<u64>,
    /// When, in seconds since the Unix epoch, a `grace` verdict becomes `refusing` unless something changes. API
    /// servers apply it themselves, so a proxy that stops publishing cannot extend the grace.
    pub refuse_after: Option<u64>,
    /// The message clients get once refused (when `refuse_after` passes, or at once when refusing).
    pub refusal: Option<String>,
    /// Streams in flight at once across the deployment, per API server (the license's limit).
    pub max_concurrent_streams: Option<u32>,
    /// Model ids the license allows; `None` allows every model.
    pub models_allowed: Option<Vec<String>>,
    /// Tenant keys. Empty: only the API servers' own keys (or none: open) apply.
    pub keys: Vec<TenantKey>,
}

impl LicenseState {
    /// The verdict at `now` (seconds since the Unix epoch), with `refuse_after` applied.
    pub fn verdict_at(&self, now: u64) -> Verdict {
        match (self.verdict, self.refuse_after) {
            (Verdict::Grace, Some(t)) if now >= t => Verdict::Refusing,
            (verdict, _) => verdict,
        }
    }
}
