//! What API servers and the license proxy exchange: usage records (API -> proxy, acknowledged once durable) and the
//! entitlement and tenant state (proxy -> API servers, pushed on every change and every second).
//!
//! Usage records carry metadata only: never the transcript, never a key.

/// NATS subject of usage batches (request/reply: a [`UsageBatch`] in, a [`UsageAck`] out once the proxy has
/// written and fsync'd every record of the batch).
pub const SUBJECT_USAGE: &str = "chorus.v1.license.usage";
/// NATS subject on which the proxy publishes its [`LicenseState`] (every second, and at once on a change).
pub const SUBJECT_STATE: &str = "chorus.v1.license.state";
/// NATS subject on which every API server publishes its [`LimitsReport`] (twice a second), so that the tenant
/// keys' limits and the license's stream limit hold across API servers, not per server.
pub const SUBJECT_LIMITS: &str = "chorus.v1.license.limits";

/// One API server's use of the limits at one instant (or, summed, the other API servers').
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LimitsReport {
    /// The publishing API server (a random id per process).
    pub api_id: String,
    /// Per tenant key name, the keys in use.
    #[serde(default)]
    pub keys: std::collections::BTreeMap<String, KeyUse>,
    /// Synthesis requests in flight (the license's `max_concurrent_streams`).
    #[serde(default)]
    pub streams: u32,
}

/// One tenant key's use on one API server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KeyUse {
    /// Requests in flight.
    pub in_flight: u32,
    /// Requests started in the last 60 seconds.
    pub started_last_minute: u32,
    /// Milliseconds until the oldest of those leaves the 60-second window.
    #[serde(default)]
    pub frees_in_ms: Option<u64>,
}

impl LimitsReport {
    /// Adds `other`'s use to this one.
    pub fn add(&mut self, other: &LimitsReport) {
        self.streams = self.streams.saturating_add(other.streams);
        for (name, used) in &other.keys {
            let sum = self.keys.entry(name.clone()).or_default();
            sum.in_flight = sum.in_flight.saturating_add(used.in_flight);
            sum.started_last_minute = sum.started_last_minute.saturating_add(used.started_last_minute);
            sum.frees_in_ms = match (sum.frees_in_ms, used.frees_in_ms) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
    }
}

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
    /// The deployment's public key (base64 Ed25519), which signs access tokens: API servers verify tokens with it.
    #[serde(default)]
    pub token_key: Option<String>,
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

#[cfg(test)]
mod tests {
    use super::{KeyUse, LimitsReport};

    #[test]
    fn reports_add_up_per_key_and_the_earliest_expiry_wins() {
        let report = |streams, keys: &[(&str, u32, u32, Option<u64>)]| LimitsReport {
            api_id: "x".into(),
            streams,
            keys: keys
                .iter()
                .map(|(k, f, s, e)| {
                    ((*k).to_owned(), KeyUse { in_flight: *f, started_last_minute: *s, frees_in_ms: *e })
                })
                .collect(),
        };
        let mut sum = LimitsReport::default();
        sum.add(&report(2, &[("a", 1, 3, Some(5000)), ("b", 0, 1, Some(100))]));
        sum.add(&report(1, &[("a", 2, 4, Some(2000))]));
        assert_eq!(sum.streams, 3);
        assert_eq!(sum.keys["a"], KeyUse { in_flight: 3, started_last_minute: 7, frees_in_ms: Some(2000) });
        assert_eq!(sum.keys["b"], KeyUse { in_flight: 0, started_last_minute: 1, frees_in_ms: Some(100) });
    }
}
