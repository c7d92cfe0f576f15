//! The settings in the config file's shape (`--config`, TOML): every key optional. The same shape carries each
//! layer (the defaults, the file, the flags and environment) and, once they are merged, what a role resolves.

use std::net::SocketAddr;
use std::path::PathBuf;

use chorus_api::ModelEntry;
use chorus_license::keys::StoredKey;
use serde::{Deserialize, Serialize};

use crate::Secret;

/// The whole file. Keys a role does not use are accepted and ignored, so that one file serves every role.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSettings {
    /// Address of the API (`serve`, `api`).
    pub listen: Option<SocketAddr>,
    /// Address of /metrics and /ready.
    pub metrics_listen: Option<SocketAddr>,
    /// NATS server URL (`api`, `worker`, `license-proxy`; empty for the proxy: HTTP only).
    pub nats: Option<String>,
    /// Static API keys clients must send.
    pub api_keys: Option<Vec<Secret>>,
    /// Serve without API keys on a non-loopback address.
    pub allow_open: Option<bool>,
    /// `serve`: run the in-process license proxy; `api`: follow the license proxy on the bus.
    pub license_proxy: Option<bool>,
    /// The model catalogue: ids and the aliases clients send.
    pub models: Option<Vec<ModelEntry>>,
    pub max_transcript_chars: Option<usize>,
    /// Requests that may wait for a free stream.
    pub max_queue: Option<usize>,
    /// Seconds a request may wait for a free stream (or for a worker of its model).
    pub queue_timeout_seconds: Option<u64>,
    /// Browser origins allowed to call the API (CORS).
    pub cors_origins: Option<Vec<String>>,
    // The engine (`serve`, `worker`).
    pub capacity: Option<u32>,
    pub sessions_per_voice: Option<usize>,
    pub intra_threads: Option<usize>,
    /// Where forward passes run: `cpu`, `cuda` or `cuda:N`.
    pub device: Option<String>,
    /// The most chunks one forward pass takes.
    pub max_batch: Option<usize>,
    /// On cuda: `fixed`, `heuristic` or `exhaustive`.
    pub cuda_conv_search: Option<String>,
    /// Intra-op threads of each voice's solo session (0 for none).
    pub solo_threads: Option<usize>,
    /// Shape buckets (see `--shape-buckets`).
    pub shape_buckets: Option<bool>,
    /// Id buckets (see `--bucket-ids`).
    pub bucket_ids: Option<Vec<usize>>,
    /// Frame buckets (see `--bucket-frames`).
    pub bucket_frames: Option<Vec<usize>>,
    /// The most frames x items of one decoder pass (see `--bucket-frame-rows`).
    pub bucket_frame_rows: Option<usize>,
    /// One session per bucket shape (see `--session-per-shape`).
    pub session_per_shape: Option<bool>,
    /// A model thread for opening chunks only (see `--opening-lane`).
    pub opening_lane: Option<bool>,
    // The worker.
    /// The model (voice) a worker serves.
    pub model: Option<String>,
    pub worker_id: Option<String>,
    /// Seconds streams in flight may take to finish after SIGTERM.
    pub drain_seconds: Option<u64>,
    // The artifact store.
    /// A directory, `s3://bucket/prefix` or `gs://bucket/prefix`.
    pub artifacts: Option<String>,
    /// Seconds between two listings of the artifact store.
    pub reload_interval_seconds: Option<f64>,
    /// Follow the artifact store's changes without a restart.
    pub enable_hot_reload: Option<bool>,
    /// Seconds between two listings of the artifact store's `models/` (workers).
    pub models_poll_seconds: Option<f64>,
    /// Where models of a bucket store are downloaded to.
    pub models_cache: Option<PathBuf>,
    /// Serve only the store's models whose id matches one of these patterns.
    pub store_models: Option<Vec<String>>,
    /// TLS on the API port.
    pub tls: Option<TlsSection>,
    /// The license proxy (`chorus license-proxy`, and the one inside `chorus serve`).
    pub license: Option<LicenseSection>,
    /// Connection limits and timeouts of the listening ports, and the WebSocket's rules.
    pub server: Option<ServerSection>,
}

/// `[tls]`.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub reload_interval_seconds: Option<f64>,
}

/// `[server]`.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    pub header_timeout_seconds: Option<f64>,
    pub body_timeout_seconds: Option<f64>,
    pub idle_timeout_seconds: Option<f64>,
    pub write_stall_timeout_seconds: Option<f64>,
    pub max_connections: Option<usize>,
    pub max_connections_per_ip: Option<usize>,
    pub ws_context_idle_seconds: Option<f64>,
    pub ws_idle_seconds: Option<f64>,
    pub ws_drain_seconds: Option<f64>,
    pub ws_close_seconds: Option<f64>,
    pub ws_write_seconds: Option<f64>,
    pub ws_max_message_bytes: Option<usize>,
    pub ws_max_contexts: Option<usize>,
}

/// `[license]` (its `Debug` leaves out the keys and the secrets).
#[derive(Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LicenseSection {
    /// Address of the proxy's /license, /audit, /healthz and /metrics (`license-proxy`).
    pub listen: Option<SocketAddr>,
    /// The data directory: licenses, tenant keys, the usage ledger, the deployment key.
    pub data: Option<PathBuf>,
    /// `open`, `connected` or `air-gapped`.
    pub mode: Option<String>,
    /// Grace period, e.g. `7d` or `36h`.
    pub grace: Option<String>,
    /// Base64 Ed25519 public keys trusted to sign licenses (the flags' keys are added to these).
    pub trusted_keys: Option<Vec<String>>,
    pub seed_license: Option<PathBuf>,
    /// Keys allowed to download GET /audit.
    pub admin_keys: Option<Vec<Secret>>,
    pub segment_bytes: Option<u64>,
    /// Connected mode: the upstream license server (`https://…`).
    pub upstream: Option<String>,
    /// Connected mode: a bearer token for it.
    pub upstream_token: Option<Secret>,
    /// Connected mode: how often to contact it, e.g. `1h`.
    pub refresh: Option<String>,
    /// Tenant keys (hashes), overridden by name by the data directory's keys.json.
    pub keys: Option<Vec<StoredKey>>,
}

impl std::fmt::Debug for LicenseSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LicenseSection")
            .field("listen", &self.listen)
            .field("data", &self.data)
            .field("mode", &self.mode)
            .field("grace", &self.grace)
            .field("upstream", &self.upstream)
            .finish_non_exhaustive()
    }
}
