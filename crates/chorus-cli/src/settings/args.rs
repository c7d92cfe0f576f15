//! The flags (and their environment variables), grouped as the config file groups its keys: each group's fields
//! are named after the file's keys, so that the flags given serialize into the file's shape and are merged over
//! it ([`chorus_settings::merge`]). Flags not given (and empty lists) are left out, never a default: defaults come
//! from the libraries ([`chorus_settings::roles::defaults`]).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Serialize;

use chorus_settings::{Layer, Secret};

fn no(b: &bool) -> bool {
    !*b
}

/// Connection limits and timeouts of every listening port of the process (`[server]`).
#[derive(Debug, Clone, Default, clap::Args, Serialize)]
pub struct ConnArgs {
    /// Seconds a request's head (a new connection's first request too) may take to arrive, from its first byte
    /// (default 10).
    #[arg(long = "header-timeout", env = "CHORUS_HEADER_TIMEOUT", value_name = "SECONDS")]
    pub header_timeout_seconds: Option<f64>,
    /// Seconds a request's body may take to arrive after its head; beyond it, 408 (default 30).
    #[arg(long = "body-timeout", env = "CHORUS_BODY_TIMEOUT", value_name = "SECONDS")]
    pub body_timeout_seconds: Option<f64>,
    /// Seconds a keep-alive connection may stay open between requests (default 60).
    #[arg(long = "idle-timeout", env = "CHORUS_IDLE_TIMEOUT", value_name = "SECONDS")]
    pub idle_timeout_seconds: Option<f64>,
    /// Seconds a write may make no progress (a client that stopped reading) before the connection, and the stream
    /// it carries, are dropped (default 30).
    #[arg(long = "write-stall-timeout", env = "CHORUS_WRITE_STALL_TIMEOUT", value_name = "SECONDS")]
    pub write_stall_timeout_seconds: Option<f64>,
    /// Connections open at once on a port, WebSockets included (default: below the file-descriptor limit, an
    /// eighth of it, at least 64, kept for the process).
    #[arg(long, env = "CHORUS_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Connections open at once from one client address (default: half of --max-connections, at most 1024).
    /// Behind a proxy or load balancer every connection comes from its addresses: raise it there.
    #[arg(long, env = "CHORUS_MAX_CONNECTIONS_PER_IP")]
    pub max_connections_per_ip: Option<usize>,
}

impl Layer for ConnArgs {
    const TABLE: Option<&'static str> = Some("server");
}

/// The TTS WebSocket's rules (`serve` and `api`; `[server]`).
#[derive(Debug, Clone, Default, clap::Args, Serialize)]
pub struct WsArgs {
    /// Seconds a WebSocket context may have nothing to do (no text from the client, nothing left to speak)
    /// before it is closed with a 408 `timeout` error frame (default 20).
    #[arg(long = "ws-context-idle-timeout", env = "CHORUS_WS_CONTEXT_IDLE_TIMEOUT", value_name = "SECONDS")]
    pub ws_context_idle_seconds: Option<f64>,
    /// Seconds a WebSocket may go without real traffic (text, flushes, audio) before it is closed with 1000
    /// (default 300, as Cartesia).
    #[arg(long = "ws-idle-timeout", env = "CHORUS_WS_IDLE_TIMEOUT", value_name = "SECONDS")]
    pub ws_idle_seconds: Option<f64>,
    /// Seconds WebSocket contexts may take to finish after SIGTERM; a context still running then ends with a 503
    /// `error` frame, and the socket closes with 1001 (default 30).
    #[arg(long = "ws-drain-timeout", env = "CHORUS_WS_DRAIN_TIMEOUT", value_name = "SECONDS")]
    pub ws_drain_seconds: Option<f64>,
    /// Seconds to wait for the client's close frame after ours before dropping the connection (default 5).
    #[arg(long = "ws-close-timeout", env = "CHORUS_WS_CLOSE_TIMEOUT", value_name = "SECONDS")]
    pub ws_close_seconds: Option<f64>,
    /// Seconds one WebSocket write may stall (a client that stopped reading) before the connection is dropped
    /// (default 60).
    #[arg(long = "ws-write-timeout", env = "CHORUS_WS_WRITE_TIMEOUT", value_name = "SECONDS")]
    pub ws_write_seconds: Option<f64>,
    /// The largest WebSocket message (and frame) a client may send, in bytes (default 1048576).
    #[arg(long, env = "CHORUS_WS_MAX_MESSAGE_BYTES", value_name = "BYTES")]
    pub ws_max_message_bytes: Option<usize>,
    /// Contexts in progress at once on one WebSocket (default 128).
    #[arg(long, env = "CHORUS_WS_MAX_CONTEXTS")]
    pub ws_max_contexts: Option<usize>,
}

impl Layer for WsArgs {
    const TABLE: Option<&'static str> = Some("server");
}

/// TLS on the API port (`[tls]`).
#[derive(Debug, Clone, Default, clap::Args, Serialize)]
pub struct TlsArgs {
    /// Serve the API over TLS with this PEM certificate chain (leaf first); needs --tls-key. Reloaded when the file
    /// changes, without a restart. HTTP/2 and HTTP/1.1 (ALPN); WebSockets over TLS (wss://).
    #[arg(id = "tls_cert", long = "tls-cert", env = "CHORUS_TLS_CERT", requires = "tls_key")]
    pub cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert (PKCS#8, PKCS#1 or SEC1).
    #[arg(id = "tls_key", long = "tls-key", env = "CHORUS_TLS_KEY", requires = "tls_cert")]
    pub key: Option<PathBuf>,
    /// Seconds between two checks of the certificate files for a change (default 5).
    #[arg(id = "tls_reload_interval", long = "tls-reload-interval", env = "CHORUS_TLS_RELOAD_INTERVAL")]
    pub reload_interval_seconds: Option<f64>,
}

impl Layer for TlsArgs {
    const TABLE: Option<&'static str> = Some("tls");
}

/// API flags (`serve` and `api`).
#[derive(Debug, Clone, clap::Args, Serialize)]
pub struct ApiArgs {
    /// Address of the API (the Cartesia-compatible port; default 127.0.0.1:5000).
    #[arg(long, env = "CHORUS_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// An API key clients must send (Bearer, X-API-Key or ?api_key=); repeat for several.
    /// CHORUS_API_KEYS takes a comma-separated list.
    #[arg(long = "api-key", env = "CHORUS_API_KEYS", value_delimiter = ',', hide_env_values = true)]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub api_keys: Vec<Secret>,
    /// Serve without API keys on a non-loopback address (otherwise refused).
    #[arg(long, env = "CHORUS_ALLOW_OPEN")]
    #[serde(skip_serializing_if = "no")]
    pub allow_open: bool,
    /// A browser origin allowed to call the API (CORS), e.g. https://app.example.com; `*` allows any; repeat for
    /// several. CHORUS_CORS_ORIGINS takes a comma-separated list. Default: none (no CORS headers).
    #[arg(long = "cors-origin", env = "CHORUS_CORS_ORIGINS", value_delimiter = ',')]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cors_origins: Vec<String>,
    /// The longest transcript a request may carry, in characters (default 50000).
    #[arg(long, env = "CHORUS_MAX_TRANSCRIPT_CHARS")]
    pub max_transcript_chars: Option<usize>,
    /// Requests that may wait for a free stream; beyond it, 429 at once (default 256).
    #[arg(long, env = "CHORUS_MAX_QUEUE")]
    pub max_queue: Option<usize>,
    /// Seconds a request may wait for a free stream, or for a worker of its model (default 30).
    #[arg(long = "queue-timeout", env = "CHORUS_QUEUE_TIMEOUT", value_name = "SECONDS")]
    pub queue_timeout_seconds: Option<u64>,
    #[command(flatten)]
    #[serde(skip)]
    pub artifacts: ArtifactArgs,
    #[command(flatten)]
    #[serde(skip)]
    pub conn: ConnArgs,
    #[command(flatten)]
    #[serde(skip)]
    pub ws: WsArgs,
    #[command(flatten)]
    #[serde(skip)]
    pub tls: TlsArgs,
}

impl Layer for ApiArgs {}

impl ApiArgs {
    /// These flags, and the groups inside them, over `layers`.
    pub fn over(&self, layers: chorus_settings::Layers) -> chorus_settings::Result<chorus_settings::Layers> {
        layers.flags(self)?.flags(&self.artifacts)?.flags(&self.conn)?.flags(&self.ws)?.flags(&self.tls)
    }
}

/// Artifact store flags (`serve`, `api`, `worker`).
#[derive(Debug, Clone, Default, clap::Args, Serialize)]
pub struct ArtifactArgs {
    /// The artifact store: voices and pronunciation dictionaries (API) and voice models under `models/<id>/`
    /// (workers): a directory, `s3://bucket/prefix` or `gs://bucket/prefix` (credentials from the standard AWS /
    /// Google environment). Default for `serve`: ./data/artifacts; for `api`: none (kept in memory, lost on
    /// restart, not shared between replicas); for `worker`: none (only its --model).
    #[arg(long = "artifacts", env = "CHORUS_ARTIFACTS")]
    pub artifacts: Option<String>,
    /// Seconds between two listings of the artifact store (hot reload; a directory is also watched for
    /// file-system notifications). Default: 5.
    #[arg(long = "reload-interval", env = "CHORUS_RELOAD_INTERVAL")]
    pub reload_interval_seconds: Option<f64>,
    /// Follow changes of the artifact store without a restart (`true`, the default, or `false`: load it once at
    /// start).
    #[arg(long, env = "CHORUS_ENABLE_HOT_RELOAD", action = clap::ArgAction::Set)]
    pub enable_hot_reload: Option<bool>,
}

impl Layer for ArtifactArgs {}

/// Voice-model flags of the roles that run models (the store itself is `--artifacts`).
#[derive(Debug, Clone, Default, clap::Args, Serialize)]
pub struct ModelStoreArgs {
    /// Seconds between two listings of the artifact store's `models/`: voice models dropped in
    /// `models/<model-id>/` are loaded and served without a restart; removing the directory drains and unloads
    /// them (default: `--reload-interval` if given, else 2).
    #[arg(long, env = "CHORUS_MODELS_POLL_SECONDS")]
    pub models_poll_seconds: Option<f64>,
    /// Where models of a bucket store are downloaded to (default: a `chorus-models` directory in the system's
    /// temporary directory). A directory store's files are used in place.
    #[arg(long, env = "CHORUS_MODELS_CACHE")]
    pub models_cache: Option<PathBuf>,
    /// Serve only the store's models whose id matches one of these patterns, comma-separated (`*` matches any
    /// run of characters; default: every model in the store).
    #[arg(long, env = "CHORUS_STORE_MODELS", value_delimiter = ',')]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub store_models: Vec<String>,
}

impl Layer for ModelStoreArgs {}

/// Engine flags (`serve` and `worker`).
#[derive(Debug, Clone, Default, clap::Args, Serialize)]
pub struct EngineArgs {
    /// Concurrent streams the worker accepts; more wait in the API's queue (default: measured at warm-up, the
    /// streams this machine keeps ahead of real time).
    #[arg(long, env = "CHORUS_CAPACITY")]
    pub capacity: Option<u32>,
    /// Model threads (ONNX Runtime sessions) per voice (default: one per core; 2 on cuda).
    #[arg(long = "sessions", env = "CHORUS_SESSIONS")]
    pub sessions_per_voice: Option<usize>,
    /// ONNX Runtime intra-op threads per session (default 1).
    #[arg(long = "threads", env = "CHORUS_THREADS")]
    pub intra_threads: Option<usize>,
    /// Where forward passes run: cpu, cuda (GPU 0) or cuda:N. CUDA needs the `cuda` cargo feature (on by default)
    /// and the GPU build of ONNX Runtime (`scripts/setup --gpu`); a missing GPU is an error, never a CPU fallback.
    #[arg(long, env = "CHORUS_DEVICE")]
    pub device: Option<String>,
    /// The most chunks batched into one forward pass (default: 1 on cpu, 16 on cuda).
    #[arg(long, env = "CHORUS_MAX_BATCH")]
    pub max_batch: Option<usize>,
    /// On cuda: how cuDNN picks convolution algorithms for a new input shape: fixed (the default, no search),
    /// heuristic or exhaustive.
    #[arg(long, env = "CHORUS_CUDA_CONV_SEARCH")]
    pub cuda_conv_search: Option<String>,
    /// Intra-op threads of each voice's solo session, which runs a chunk when no other model thread is computing
    /// (a lone stream gets every core); 0 for none (default on cpu: every core, when the sessions use fewer).
    #[arg(long, env = "CHORUS_SOLO_THREADS")]
    pub solo_threads: Option<usize>,
    /// Shape buckets: every forward pass padded to one of a few shapes (ids, frames, items), over the voice's graph
    /// split by scripts/setup; the audio is cut to each chunk's own length. true or false, on or off (default: on
    /// on cuda, where a new shape costs far more than a repeated one; off on cpu).
    #[arg(long, env = "CHORUS_SHAPE_BUCKETS", value_parser = clap::builder::BoolishValueParser::new())]
    pub shape_buckets: Option<bool>,
    /// Id buckets, comma-separated (default 32,64,128,256,512,1024).
    #[arg(long, env = "CHORUS_BUCKET_IDS", value_delimiter = ',', value_parser = positive)]
    pub bucket_ids: Option<Vec<usize>>,
    /// Frame buckets, comma-separated (default 128,256,512,1024,2048,4096; 86 frames are a second of audio).
    #[arg(long, env = "CHORUS_BUCKET_FRAMES", value_delimiter = ',', value_parser = positive)]
    pub bucket_frames: Option<Vec<usize>>,
    /// The most frames x items of one decoder pass (about 200 KB of activations each; default 8192); a pass with
    /// more runs as several.
    #[arg(long, env = "CHORUS_BUCKET_FRAME_ROWS")]
    pub bucket_frame_rows: Option<usize>,
    /// With shape buckets: one ONNX Runtime session per shape, each run at warm-up, so that no pass rebuilds its
    /// convolution plans (default: on on cuda, off on cpu).
    #[arg(long, env = "CHORUS_SESSION_PER_SHAPE", value_parser = clap::builder::BoolishValueParser::new())]
    pub session_per_shape: Option<bool>,
    /// With batching and two sessions or more: the first model thread takes only new streams' opening chunks, so
    /// that a first chunk never waits for a long pass (default: on on cuda, where that thread shares the device and
    /// idles no hardware; off on cpu).
    #[arg(long, env = "CHORUS_OPENING_LANE", value_parser = clap::builder::BoolishValueParser::new())]
    pub opening_lane: Option<bool>,
}

impl Layer for EngineArgs {}

/// A bucket size: a positive number.
fn positive(s: &str) -> Result<usize, String> {
    s.trim().parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| format!("{s:?} is not a positive number"))
}

/// The license proxy's data directory (the proxy, `chorus serve`'s proxy, `chorus keys`).
#[derive(Debug, Clone, Default, clap::Args, Serialize)]
pub struct DataArgs {
    /// The license proxy's data directory: licenses, tenant keys, the usage ledger, the deployment key (default:
    /// $XDG_DATA_HOME/chorus/license, or ~/.local/share/chorus/license). One process at a time.
    #[arg(long = "license-data", visible_alias = "data", alias = "data-dir", env = "CHORUS_LICENSE_DATA")]
    pub data: Option<PathBuf>,
}

impl Layer for DataArgs {
    const TABLE: Option<&'static str> = Some("license");
}

/// The license proxy (`chorus license-proxy`, and the one inside `chorus serve`; `[license]`).
#[derive(Debug, Clone, Default, clap::Args, Serialize)]
pub struct LicenseArgs {
    #[command(flatten)]
    #[serde(skip)]
    pub data: DataArgs,
    /// open (no license needed; the default), connected, or air-gapped (a valid license needed).
    #[arg(long = "license-mode", visible_alias = "mode", env = "CHORUS_LICENSE_MODE")]
    pub mode: Option<String>,
    /// Shorthand for --license-mode air-gapped (the Helm chart sets it from infra.authenticate).
    #[arg(long, env = "CHORUS_AIR_GAPPED")]
    #[serde(skip)]
    pub air_gapped: bool,
    /// How long an expired or missing license still serves, e.g. 7d or 36h (default 7d).
    #[arg(long = "license-grace", visible_alias = "grace", env = "CHORUS_LICENSE_GRACE")]
    pub grace: Option<String>,
    /// A base64 Ed25519 public key trusted to sign licenses (besides the config file's); repeat for several.
    #[arg(long = "trust-key", env = "CHORUS_LICENSE_TRUSTED_KEYS", value_delimiter = ',')]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub trusted_keys: Vec<String>,
    /// A license file used only when no license is stored yet.
    #[arg(long, env = "CHORUS_SEED_LICENSE")]
    pub seed_license: Option<PathBuf>,
    /// A key allowed to download GET /audit (besides tenant keys added with --admin); comma-separated in the env.
    #[arg(long = "admin-key", env = "CHORUS_ADMIN_KEYS", value_delimiter = ',', hide_env_values = true)]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub admin_keys: Vec<Secret>,
    /// Bytes of a usage-ledger segment before the next one starts (default 16 MiB).
    #[arg(long = "license-segment-bytes", env = "CHORUS_LICENSE_SEGMENT_BYTES")]
    pub segment_bytes: Option<u64>,
    /// Connected mode: the upstream license server (https://…) the license is refreshed from and usage reported to.
    #[arg(long = "license-upstream", visible_alias = "upstream", env = "CHORUS_LICENSE_UPSTREAM")]
    pub upstream: Option<String>,
    /// Connected mode: a bearer token for the upstream server.
    #[arg(
        long = "license-upstream-token",
        visible_alias = "upstream-token",
        env = "CHORUS_LICENSE_UPSTREAM_TOKEN",
        hide_env_values = true
    )]
    pub upstream_token: Option<Secret>,
    /// Connected mode: how often to contact the upstream server, e.g. 1h (default) or 10m.
    #[arg(long = "license-refresh", visible_alias = "refresh", env = "CHORUS_LICENSE_REFRESH")]
    pub refresh: Option<String>,
}

impl Layer for LicenseArgs {
    const TABLE: Option<&'static str> = Some("license");
}

/// The config file flag and `--print-config`, on every serving role.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ConfigArgs {
    /// A TOML config file; flags and environment variables override it (`--print-config` shows the result).
    #[arg(long, env = "CHORUS_CONFIG")]
    pub config: Option<PathBuf>,
    /// Print the resolved settings (defaults, the config file, the environment and the flags, merged) as TOML,
    /// secrets redacted, and exit.
    #[arg(long)]
    pub print_config: bool,
}
