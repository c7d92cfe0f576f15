//! What the serving roles share: the metrics recorder, the internal port (/metrics, /ready), shutdown signals,
//! the engine worker, and the API state.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, Result};
use chorus_api::{ApiConfig, ApiKeys, AppState, ModelEntry};
use chorus_bus::{Bus, ModelLoad};
use chorus_engine::Engine;
use chorus_proto::metrics as names;
use chorus_worker::{EngineWorker, WorkerConfig};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::paths::PathArgs;

/// The config file (`--config`, TOML). Every field is optional; flags override it.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// The model catalogue: ids and the aliases clients send.
    pub models: Option<Vec<ModelEntry>>,
    pub max_transcript_chars: Option<usize>,
    pub capacity: Option<u32>,
    pub sessions_per_voice: Option<usize>,
    pub intra_threads: Option<usize>,
    /// Where forward passes run: `cpu`, `cuda` or `cuda:N`.
    pub device: Option<String>,
    /// The most chunks one forward pass takes.
    pub max_batch: Option<usize>,
    /// On cuda: `fixed`, `heuristic` or `exhaustive` (see `--cuda-conv-search`).
    pub cuda_conv_search: Option<String>,
    /// Intra-op threads of each voice's solo session (see `--solo-threads`; 0 for none).
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
    /// Requests that may wait for a free stream.
    pub max_queue: Option<usize>,
    /// Seconds a request may wait for a free stream (or for a worker of its model).
    pub queue_timeout_seconds: Option<u64>,
    /// The artifact store: a directory, `s3://bucket/prefix` or `gs://bucket/prefix`.
    pub artifacts: Option<String>,
    /// Seconds between two listings of the artifact store.
    pub reload_interval_seconds: Option<f64>,
    /// Follow the artifact store's changes without a restart.
    pub enable_hot_reload: Option<bool>,
    /// Seconds between two listings of the artifact store's `models/` (workers).
    pub models_poll_seconds: Option<f64>,
    /// Browser origins allowed to call the API (CORS); `--cors-origin` overrides.
    pub cors_origins: Option<Vec<String>>,
    /// TLS on the API port (`cert`, `key`, `reload_interval_seconds`); `--tls-cert` / `--tls-key` override.
    pub tls: Option<crate::web::TlsSection>,
    /// The license proxy (`chorus license-proxy`, and the one inside `chorus serve`).
    pub license: Option<crate::license::LicenseSection>,
    /// Connection limits and timeouts of the listening ports, and the WebSocket's idle rules.
    pub server: Option<ServerSection>,
}

/// `[server]` in the config file (flags and environment variables win).
#[derive(Debug, Default, Clone, serde::Deserialize)]
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
}

/// Connection limits and timeouts of every listening port of the process (the API's and the internal one).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ConnArgs {
    /// Seconds a request's head (a new connection's first request too) may take to arrive, from its first byte
    /// (default 10).
    #[arg(long, env = "CHORUS_HEADER_TIMEOUT", value_name = "SECONDS")]
    pub header_timeout: Option<f64>,
    /// Seconds a request's body may take to arrive after its head; beyond it, 408 (default 30).
    #[arg(long, env = "CHORUS_BODY_TIMEOUT", value_name = "SECONDS")]
    pub body_timeout: Option<f64>,
    /// Seconds a keep-alive connection may stay open between requests (default 60).
    #[arg(long, env = "CHORUS_IDLE_TIMEOUT", value_name = "SECONDS")]
    pub idle_timeout: Option<f64>,
    /// Seconds a write may make no progress (a client that stopped reading) before the connection, and the stream
    /// it carries, are dropped (default 30).
    #[arg(long, env = "CHORUS_WRITE_STALL_TIMEOUT", value_name = "SECONDS")]
    pub write_stall_timeout: Option<f64>,
    /// Connections open at once on a port, WebSockets included (default: below the file-descriptor limit, an
    /// eighth of it, at least 64, kept for the process).
    #[arg(long, env = "CHORUS_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Connections open at once from one client address (default: half of --max-connections, at most 1024).
    /// Behind a proxy or load balancer every connection comes from its addresses: raise it there.
    #[arg(long, env = "CHORUS_MAX_CONNECTIONS_PER_IP")]
    pub max_connections_per_ip: Option<usize>,
}

fn seconds(what: &str, value: Option<f64>) -> Result<Option<Duration>> {
    match value {
        None => Ok(None),
        Some(s) if s.is_finite() && s > 0.0 && s <= 86_400.0 => Ok(Some(Duration::from_secs_f64(s))),
        Some(s) => anyhow::bail!("{what} must be a number of seconds above 0 (and at most a day), not {s}"),
    }
}

impl ConnArgs {
    /// The policy of the port named `name`: flags and environment, then the config file's `[server]`, then the
    /// defaults.
    pub fn serve_config(
        &self,
        file: &ConfigFile,
        name: &'static str,
    ) -> Result<chorus_api::serve::ServeConfig> {
        let f = file.server.clone().unwrap_or_default();
        let mut config = chorus_api::serve::ServeConfig::named(name);
        if let Some(d) = seconds("--header-timeout", self.header_timeout.or(f.header_timeout_seconds))? {
            config.header_timeout = d;
        }
        if let Some(d) = seconds("--body-timeout", self.body_timeout.or(f.body_timeout_seconds))? {
            config.body_timeout = d;
        }
        if let Some(d) = seconds("--idle-timeout", self.idle_timeout.or(f.idle_timeout_seconds))? {
            config.idle_timeout = d;
        }
        if let Some(d) =
            seconds("--write-stall-timeout", self.write_stall_timeout.or(f.write_stall_timeout_seconds))?
        {
            config.write_stall_timeout = d;
        }
        if let Some(n) = self.max_connections.or(f.max_connections) {
            config.max_connections = n;
            config.max_connections_per_ip = config.max_connections_per_ip.min(n);
        }
        if let Some(n) = self.max_connections_per_ip.or(f.max_connections_per_ip) {
            config.max_connections_per_ip = n;
        }
        config.validate().map_err(|e| anyhow::anyhow!("{name} port: {e}"))?;
        Ok(config)
    }
}

/// The TTS WebSocket's idle rules (`serve` and `api`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct WsArgs {
    /// Seconds a WebSocket context may have nothing to do (no text from the client, nothing left to speak)
    /// before it is closed with a 408 `timeout` error frame (default 20).
    #[arg(long, env = "CHORUS_WS_CONTEXT_IDLE_TIMEOUT", value_name = "SECONDS")]
    pub ws_context_idle_timeout: Option<f64>,
    /// Seconds a WebSocket may go without real traffic (text, flushes, audio) before it is closed with 1000
    /// (default 300, as Cartesia).
    #[arg(long, env = "CHORUS_WS_IDLE_TIMEOUT", value_name = "SECONDS")]
    pub ws_idle_timeout: Option<f64>,
    /// Seconds WebSocket contexts may take to finish after SIGTERM; a context still running then ends with a 503
    /// `error` frame, and the socket closes with 1001 (default 30).
    #[arg(long, env = "CHORUS_WS_DRAIN_TIMEOUT", value_name = "SECONDS")]
    pub ws_drain_timeout: Option<f64>,
}

impl WsArgs {
    pub fn ws_config(&self, file: &ConfigFile) -> Result<chorus_api::ws::WsConfig> {
        let f = file.server.clone().unwrap_or_default();
        let mut config = chorus_api::ws::WsConfig::default();
        if let Some(d) =
            seconds("--ws-context-idle-timeout", self.ws_context_idle_timeout.or(f.ws_context_idle_seconds))?
        {
            config.context_idle_timeout = d;
        }
        if let Some(d) = seconds("--ws-idle-timeout", self.ws_idle_timeout.or(f.ws_idle_seconds))? {
            config.idle_timeout = d;
        }
        if let Some(d) = seconds("--ws-drain-timeout", self.ws_drain_timeout.or(f.ws_drain_seconds))? {
            config.drain_timeout = d;
        }
        Ok(config)
    }
}

/// Warns, loudly, when an internal port (`/metrics`, `/ready`) listens beyond loopback.
pub fn warn_public_metrics(addr: SocketAddr) {
    if !addr.ip().is_loopback() {
        tracing::warn!(metrics = %addr, "The internal port (/metrics, /ready) listens beyond loopback: keep it off public networks.");
        eprintln!(
            "WARNING: /metrics and /ready on {addr} are reachable beyond this host; keep that port internal (a \
             firewall, a cluster-internal Service)."
        );
    }
}

impl ConfigFile {
    pub fn load(path: Option<&Path>) -> Result<Self> {
        let Some(path) = path else { return Ok(Self::default()) };
        let raw = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        toml::from_str(&raw).with_context(|| format!("invalid config {}", path.display()))
    }
}

/// API role flags (`serve` and `api`).
#[derive(Debug, Clone, clap::Args)]
pub struct ApiArgs {
    /// Address of the API (the Cartesia-compatible port).
    #[arg(long, env = "CHORUS_LISTEN", default_value = "127.0.0.1:5000")]
    pub listen: SocketAddr,
    /// An API key clients must send (Bearer, X-API-Key or ?api_key=); repeat for several.
    /// CHORUS_API_KEYS takes a comma-separated list.
    #[arg(long = "api-key", env = "CHORUS_API_KEYS", value_delimiter = ',', hide_env_values = true)]
    pub api_keys: Vec<String>,
    /// Serve without API keys on a non-loopback address (otherwise refused).
    #[arg(long, env = "CHORUS_ALLOW_OPEN")]
    pub allow_open: bool,
    #[command(flatten)]
    pub artifacts: ArtifactArgs,
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(flatten)]
    pub ws: WsArgs,
    #[command(flatten)]
    pub web: Box<crate::web::WebArgs>,
}

/// Artifact store flags (`serve`, `api`, `artifacts`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ArtifactArgs {
    /// The artifact store: voices and pronunciation dictionaries (API) and voice models under `models/<id>/`
    /// (workers): a directory, `s3://bucket/prefix` or `gs://bucket/prefix` (credentials from the standard AWS /
    /// Google environment). Default for `serve`: ./data/artifacts; for `api`: none (kept in memory, lost on
    /// restart, not shared between replicas); for `worker`: none (only its --model).
    #[arg(long = "artifacts", env = "CHORUS_ARTIFACTS")]
    pub artifacts: Option<String>,
    /// Seconds between two listings of the artifact store (hot reload; a directory is also watched for
    /// file-system notifications). Default: 5.
    #[arg(long, env = "CHORUS_RELOAD_INTERVAL")]
    pub reload_interval: Option<f64>,
    /// Follow changes of the artifact store without a restart (`true`, the default, or `false`: load it once at
    /// start).
    #[arg(long, env = "CHORUS_ENABLE_HOT_RELOAD", action = clap::ArgAction::Set)]
    pub enable_hot_reload: Option<bool>,
}

impl ArtifactArgs {
    /// The store's location: flag or env, then the config file, then `default`.
    pub fn location(&self, file: &ConfigFile, default: Option<&str>) -> Option<String> {
        self.artifacts.clone().or_else(|| file.artifacts.clone()).or_else(|| default.map(str::to_owned))
    }

    /// The reload interval (at least 10 ms).
    pub fn interval(&self, file: &ConfigFile) -> Result<Duration> {
        let secs = self.reload_interval.or(file.reload_interval_seconds).unwrap_or(5.0);
        anyhow::ensure!(
            secs.is_finite() && secs > 0.0,
            "the reload interval must be a positive number of seconds"
        );
        Ok(Duration::from_secs_f64(secs.max(0.01)))
    }

    pub fn hot_reload(&self, file: &ConfigFile) -> bool {
        self.enable_hot_reload.or(file.enable_hot_reload).unwrap_or(true)
    }
}

/// Puts the API's voices and dictionaries in the configured artifact store. `default` is the location used
/// when none is configured (`serve`: ./data/artifacts); if that default cannot be created, the API keeps them in
/// memory (with a warning). A configured location that cannot be opened is an error.
pub fn with_artifacts(
    state: AppState,
    args: &ArtifactArgs,
    file: &ConfigFile,
    default: Option<&str>,
) -> Result<AppState> {
    let configured = args.location(file, None);
    let Some(location) = configured.clone().or_else(|| default.map(str::to_owned)) else {
        tracing::warn!("No artifact store (--artifacts): voices and dictionaries are kept in memory only.");
        return Ok(state);
    };
    match chorus_artifacts::ArtifactStore::open(&location) {
        Ok(store) => {
            tracing::info!(store = %store, "Artifact store.");
            Ok(state.with_artifact_store(store))
        }
        Err(e) if configured.is_none() => {
            tracing::warn!(error = %e, "Default artifact store unusable: voices and dictionaries are kept in memory.");
            Ok(state)
        }
        Err(e) => Err(anyhow::Error::new(e).context("cannot open the artifact store")),
    }
}

/// Loads the artifact store (migrations, voices, dictionaries) and, unless hot reload is off, follows it until
/// `stop` changes.
pub async fn start_artifacts(
    state: &AppState,
    args: &ArtifactArgs,
    file: &ConfigFile,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<()> {
    let interval = args.interval(file)?;
    let hot = args.hot_reload(file);
    if !state.artifacts.sync().await {
        tracing::warn!(store = %state.artifacts.store, "The artifact store could not be read fully at start.");
    }
    if !hot {
        tracing::info!("Hot reload is off: the artifact store is read at start only.");
    }
    chorus_api::persistence::spawn_reloader(std::sync::Arc::clone(&state.artifacts), interval, hot, stop);
    Ok(())
}

/// Engine flags (`serve` and `worker`).
#[derive(Debug, Clone, clap::Args)]
pub struct EngineArgs {
    /// Concurrent streams the worker accepts; more wait in the API's queue (default: measured at warm-up, the
    /// streams this machine keeps ahead of real time).
    #[arg(long, env = "CHORUS_CAPACITY")]
    pub capacity: Option<u32>,
    /// Model threads (ONNX Runtime sessions) per voice (default: one per core; 2 on cuda).
    #[arg(long, env = "CHORUS_SESSIONS")]
    pub sessions: Option<usize>,
    /// ONNX Runtime intra-op threads per session.
    #[arg(long, env = "CHORUS_THREADS")]
    pub threads: Option<usize>,
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

/// A bucket size: a positive number.
fn positive(s: &str) -> Result<usize, String> {
    s.trim().parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| format!("{s:?} is not a positive number"))
}

/// Checks the keys against the listen address and builds the API state over `bus`.
pub fn api_state(args: &ApiArgs, file: &ConfigFile, bus: Arc<dyn Bus>) -> Result<AppState> {
    api_state_opts(args, file, bus, false)
}

/// [`api_state`]; with `license_proxy`, an API with no key of its own on a public address is allowed: it takes
/// tenant keys from the proxy and refuses every request while there is none (see [`license_gate`]).
pub fn api_state_opts(
    args: &ApiArgs,
    file: &ConfigFile,
    bus: Arc<dyn Bus>,
    license_proxy: bool,
) -> Result<AppState> {
    let keys = ApiKeys::new(args.api_keys.clone());
    if keys.is_open() && license_proxy && !args.listen.ip().is_loopback() && !args.allow_open {
        tracing::info!(listen = %args.listen, "No static API key: requests need a tenant key from the license proxy.");
    } else if keys.is_open() {
        if !args.listen.ip().is_loopback() && !args.allow_open {
            anyhow::bail!(
                "refusing to serve without API keys on {} (not loopback): give --api-key, or --allow-open to run open",
                args.listen
            );
        }
        tracing::warn!(listen = %args.listen, "No API key configured: the API is OPEN to anyone who can reach it.");
        eprintln!("WARNING: no API key configured; the API on {} accepts every request.", args.listen);
    }
    let mut config = ApiConfig { api_keys: keys, cors: args.web.cors(file)?, ..ApiConfig::default() };
    if let Some(models) = &file.models {
        config.catalogue.models.clone_from(models);
    }
    if let Some(max) = file.max_transcript_chars {
        config.max_transcript_chars = max;
    }
    Ok(AppState::new(bus, config))
}

/// The API's side of a license proxy reached through `link`: never open on a public address without keys.
pub fn license_gate(args: &ApiArgs, link: Arc<dyn chorus_bus::LicenseLink>) -> chorus_api::LicenseGate {
    let public_without_keys = args.api_keys.iter().all(|k| k.trim().is_empty())
        && !args.listen.ip().is_loopback()
        && !args.allow_open;
    chorus_api::LicenseGate::with_proxy(link).require_keys(public_without_keys)
}

/// Loads the engine and wraps it as a worker.
pub fn engine_worker(
    paths: &PathArgs,
    args: &EngineArgs,
    file: &ConfigFile,
    worker_id: String,
    only: Option<&str>,
) -> Result<Arc<EngineWorker>> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let mut config = paths.engine_config();
    let mut device: chorus_engine::Device = match args.device.as_deref().or(file.device.as_deref()) {
        Some(d) => d.parse().map_err(|e: String| anyhow::anyhow!(e))?,
        None => chorus_engine::Device::Cpu,
    };
    // Checked whatever the device, so that a typo is an error and not silently ignored.
    if let Some(search) = args.cuda_conv_search.as_deref().or(file.cuda_conv_search.as_deref()) {
        let search: chorus_engine::ConvSearch = search.parse().map_err(|e: String| anyhow::anyhow!(e))?;
        if let chorus_engine::Device::Cuda { conv_search, .. } = &mut device {
            *conv_search = search;
        }
    }
    config.max_batch = args.max_batch.or(file.max_batch).unwrap_or(device.default_max_batch()).clamp(1, 256);
    let gpu = device.is_gpu();
    config.opening_lane = args.opening_lane.or(file.opening_lane).unwrap_or(gpu);
    // A GPU runs batches: two sessions overlap one's host-side work with the other's pass, and an opening lane is
    // a third.
    let lane = config.opening_lane && config.max_batch > 1;
    let sessions = if gpu { 2 + usize::from(lane) } else { cores };
    config.sessions_per_voice = args.sessions.or(file.sessions_per_voice).unwrap_or(sessions).max(1);
    config.intra_threads = args.threads.or(file.intra_threads).unwrap_or(1).max(1);
    config.device = device;
    config.shape_buckets = shape_buckets(args, file, gpu, config.max_batch)?;
    config.session_per_shape = args.session_per_shape.or(file.session_per_shape).unwrap_or(gpu);
    let solo_default = if device.is_gpu() || config.sessions_per_voice < 2 { 0 } else { cores };
    config.solo_threads = args.solo_threads.or(file.solo_threads).unwrap_or(solo_default).min(256);
    tracing::info!(
        ?device,
        sessions = config.sessions_per_voice,
        solo_threads = config.solo_threads,
        max_batch = config.max_batch,
        opening_lane = config.opening_lane,
        shape_buckets = %config.shape_buckets.as_ref().map_or_else(|| "off".to_owned(), ToString::to_string),
        session_per_shape = config.session_per_shape,
        "Engine placement."
    );
    if let Some(model) = only {
        config.voices = vec![model.to_owned()];
    }
    let engine = Arc::new(Engine::load(&config).context("cannot load the engine")?);
    // Unless configured, the capacity is what this machine keeps gap-free, measured at warm-up under concurrent
    // load and lowered while serving when streams come close to running dry.
    let capacity = args.capacity.or(file.capacity).map(|c| c.max(1));
    match capacity {
        Some(c) => {
            tracing::info!(capacity = c, measured = engine.measured_capacity(), "Worker capacity (fixed).")
        }
        None => {
            tracing::info!(capacity = engine.measured_capacity(), "Worker capacity (measured, adaptive).")
        }
    }
    Ok(Arc::new(EngineWorker::new(engine, WorkerConfig { worker_id, capacity })))
}

/// The shape buckets the flags and the config file ask for (`None`: off; default on on a GPU only).
pub fn shape_buckets(
    args: &EngineArgs,
    file: &ConfigFile,
    gpu: bool,
    max_batch: usize,
) -> Result<Option<chorus_engine::ShapeBuckets>> {
    if !args.shape_buckets.or(file.shape_buckets).unwrap_or(gpu) {
        return Ok(None);
    }
    let defaults = chorus_engine::ShapeBuckets::defaults(max_batch);
    let ids = args.bucket_ids.clone().or_else(|| file.bucket_ids.clone()).unwrap_or(defaults.ids);
    let frames = args.bucket_frames.clone().or_else(|| file.bucket_frames.clone()).unwrap_or(defaults.frames);
    let rows = args.bucket_frame_rows.or(file.bucket_frame_rows).unwrap_or(defaults.max_frame_rows);
    chorus_engine::ShapeBuckets::new(ids, frames, max_batch, rows)
        .map(Some)
        .map_err(|e| anyhow::anyhow!("invalid shape buckets: {e}"))
}

/// Installs the Prometheus recorder with the TTFA and RTF buckets and every metric described.
pub fn install_metrics() -> Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(names::WORKER_TTFA.into()), &names::TTFA_BUCKETS)
        .context("TTFA buckets")?
        .set_buckets_for_metric(Matcher::Full(names::WORKER_RTF.into()), &names::RTF_BUCKETS)
        .context("RTF buckets")?
        .set_buckets_for_metric(Matcher::Full(names::API_TTFA.into()), &names::TTFA_BUCKETS)
        .context("API TTFA buckets")?
        .set_buckets_for_metric(Matcher::Full(names::REQUEST_DURATION.into()), &names::DURATION_BUCKETS)
        .context("request duration buckets")?
        .set_buckets_for_metric(Matcher::Full(names::ENGINE_BATCH_SIZE.into()), &names::BATCH_BUCKETS)
        .context("batch size buckets")?
        .set_buckets_for_metric(Matcher::Full(names::STREAM_MARGIN.into()), &names::MARGIN_BUCKETS)
        .context("stream margin buckets")?
        .install_recorder()
        .context("cannot install the metrics recorder")?;
    metrics::describe_gauge!(names::WORKER_CAPACITY, "Streams the worker accepts at once.");
    metrics::describe_gauge!(names::WORKER_LOAD, "Streams in flight on the worker.");
    metrics::describe_histogram!(
        names::WORKER_TTFA,
        metrics::Unit::Seconds,
        "Time from acceptance to first audio."
    );
    metrics::describe_histogram!(names::WORKER_RTF, "Compute time over audio duration, per job.");
    metrics::describe_histogram!(names::ENGINE_BATCH_SIZE, "Chunks per forward pass.");
    metrics::describe_histogram!(
        names::STREAM_MARGIN,
        metrics::Unit::Seconds,
        "How long before its listener needed it a chunk's audio was ready (negative: a gap)."
    );
    metrics::describe_counter!(
        names::STREAM_UNDERRUNS_TOTAL,
        "Chunks ready after their stream's listener ran dry (gaps the caller hears)."
    );
    metrics::describe_counter!(
        names::CAPACITY_DECREASES_TOTAL,
        "Times the worker lowered its capacity because a stream came close to running dry."
    );
    metrics::describe_gauge!(names::API_QUEUE_SIZE, "Requests waiting for a free stream, per model.");
    metrics::describe_gauge!(
        names::API_UNSERVICEABLE,
        "Requests waiting because no worker serves their model."
    );
    metrics::describe_counter!(names::REQUESTS_TOTAL, "API responses, by route and HTTP status.");
    metrics::describe_histogram!(
        names::API_TTFA,
        metrics::Unit::Seconds,
        "Synthesis requests: from admission on the API server to the first audio, by route."
    );
    metrics::describe_histogram!(
        names::REQUEST_DURATION,
        metrics::Unit::Seconds,
        "Synthesis requests: from admission to the end, by route."
    );
    metrics::describe_counter!(names::JOBS_TOTAL, "Jobs finished by the worker, by outcome.");
    metrics::describe_gauge!(names::CONNECTIONS_OPEN, "Connections open on a listening port, by server.");
    metrics::describe_counter!(
        names::CONNECTIONS_REFUSED_TOTAL,
        "Connections refused at accept because a connection limit was reached, by server and reason."
    );
    metrics::describe_counter!(
        names::CONNECTION_TIMEOUTS_TOTAL,
        "Connections closed by a timeout (header, body, idle, write_stall), by server."
    );
    metrics::describe_counter!(
        names::WS_CONTEXTS_CLOSED_TOTAL,
        "WebSocket contexts ended by the server (idle, revoked), by reason."
    );
    metrics::describe_counter!(names::AUDIO_SECONDS_TOTAL, metrics::Unit::Seconds, "Audio produced.");
    metrics::describe_counter!(names::CHARACTERS_TOTAL, "Characters synthesized.");
    metrics::describe_counter!(names::ARTIFACTS_RELOAD_TOTAL, "Artifact store reloads, by kind and result.");
    metrics::describe_gauge!(names::ARTIFACTS_LOADED, "Documents loaded from the artifact store, by kind.");
    metrics::describe_gauge!(
        names::ARTIFACTS_LAST_SYNC,
        metrics::Unit::Seconds,
        "When the artifact store was last listed successfully (seconds since the epoch)."
    );
    metrics::describe_gauge!(names::ARTIFACTS_MODELS_LOADED, "Voice models the worker serves (announces).");
    metrics::describe_gauge!(names::LICENSE_DAYS_TO_EXPIRY, "Days until the active license expires.");
    metrics::describe_gauge!(names::LICENSE_MODE, "1 for the license proxy's mode.");
    metrics::describe_gauge!(names::LICENSE_GRACE_STATE, "0 serving, 1 in grace, 2 refusing new requests.");
    metrics::describe_counter!(names::LICENSE_USAGE_RECORDS_TOTAL, "Usage records written to the ledger.");
    metrics::describe_counter!(names::LICENSE_USAGE_CHARACTERS_TOTAL, "Characters accounted in the ledger.");
    metrics::describe_counter!(
        names::LICENSE_USAGE_AUDIO_SECONDS_TOTAL,
        metrics::Unit::Seconds,
        "Audio accounted in the ledger (whole seconds per record, rounded)."
    );
    metrics::describe_counter!(
        names::LICENSE_USAGE_DUPLICATES_TOTAL,
        "Usage records received twice, stored once."
    );
    metrics::describe_gauge!(
        names::LICENSE_USAGE_PENDING,
        "Usage records not yet acknowledged by the proxy."
    );
    metrics::describe_counter!(
        names::LICENSE_USAGE_DROPPED_TOTAL,
        "Usage records dropped: the queue was full."
    );
    Ok(handle)
}

/// Outcomes of `chorus_worker_jobs_total` (the engine's labels).
const JOB_OUTCOMES: [&str; 3] = ["completed", "cancelled", "failed"];
/// Routes of the API's synthesis histograms (the meters' `route` labels).
const SYNTHESIS_ROUTES: [&str; 4] = ["bytes", "sse", "websocket", "openai_speech"];

/// Registers every worker metric the runbook and the dashboards name, so that a fresh worker exports each series
/// (empty histograms, zero counters) before its first request: a new pool's panels show 0, not "no data".
pub fn register_worker_metrics() {
    metrics::gauge!(names::WORKER_CAPACITY).set(0.0);
    metrics::gauge!(names::WORKER_LOAD).set(0.0);
    // A histogram handle registers the series; the exporter renders it with zero counts until a sample arrives.
    let _ = metrics::histogram!(names::WORKER_TTFA);
    let _ = metrics::histogram!(names::WORKER_RTF);
    let _ = metrics::histogram!(names::ENGINE_BATCH_SIZE);
    for outcome in JOB_OUTCOMES {
        metrics::counter!(names::JOBS_TOTAL, "outcome" => outcome).increment(0);
    }
    metrics::counter!(names::AUDIO_SECONDS_TOTAL).increment(0);
    metrics::counter!(names::CHARACTERS_TOTAL).increment(0);
    metrics::counter!(names::ENGINE_PREEMPTIONS_TOTAL).increment(0);
    metrics::counter!(names::STREAM_UNDERRUNS_TOTAL).increment(0);
    metrics::counter!(names::CAPACITY_DECREASES_TOTAL).increment(0);
    let _ = metrics::histogram!(names::STREAM_MARGIN);
}

/// Registers the API's synthesis histograms (TTFA, duration) for every route, so that a fresh API server exports
/// them before its first request. The queue gauges (`api_queue_size`, `api_unserviceable_requests_size`) appear per
/// model once a worker announces it or a request waits for it (`record_api`).
pub fn register_api_metrics() {
    for route in SYNTHESIS_ROUTES {
        let _ = metrics::histogram!(names::API_TTFA, "route" => route);
        let _ = metrics::histogram!(names::REQUEST_DURATION, "route" => route);
    }
}

/// Sets the worker gauges (read at scrape time).
pub fn record_worker(worker: &EngineWorker) {
    use chorus_bus::Worker;
    let s = worker.status();
    metrics::gauge!(names::WORKER_CAPACITY).set(if s.draining { 0.0 } else { f64::from(s.capacity) });
    metrics::gauge!(names::WORKER_LOAD).set(f64::from(s.load));
    metrics::gauge!(names::ARTIFACTS_MODELS_LOADED).set(s.models.len() as f64);
}

/// Sets the usage-queue metrics of an API server with a license proxy (read at scrape time).
pub fn record_usage(gate: &chorus_api::LicenseGate) {
    if let Some(reporter) = gate.reporter() {
        let c = reporter.counters();
        metrics::gauge!(names::LICENSE_USAGE_PENDING).set(c.pending.load(Ordering::Acquire) as f64);
        metrics::counter!(names::LICENSE_USAGE_DROPPED_TOTAL).absolute(c.dropped.load(Ordering::Acquire));
    }
}

/// Waits (bounded) until the usage records queued toward the license proxy are acknowledged.
pub async fn flush_usage(gate: &chorus_api::LicenseGate, limit: Duration) {
    let Some(reporter) = gate.reporter() else { return };
    let deadline = tokio::time::Instant::now() + limit;
    while reporter.counters().pending.load(Ordering::Acquire) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sets the API gauges (read at scrape time).
pub fn record_api(loads: &[ModelLoad]) {
    for l in loads {
        metrics::gauge!(names::API_QUEUE_SIZE, "model" => l.model.clone()).set(l.queued as f64);
        metrics::gauge!(names::API_UNSERVICEABLE, "model" => l.model.clone()).set(l.unserviceable as f64);
    }
}

/// `/metrics` (after `refresh`) and `/ready` (200 when `ready`) on the internal port.
pub fn internal_router(
    metrics: PrometheusHandle,
    refresh: Arc<dyn Fn() + Send + Sync>,
    ready: Arc<dyn Fn() -> bool + Send + Sync>,
) -> axum::Router {
    use axum::routing::get;
    axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let (metrics, refresh) = (metrics.clone(), Arc::clone(&refresh));
                async move {
                    refresh();
                    metrics.render()
                }
            }),
        )
        .route(
            "/ready",
            get(move || {
                let ready = Arc::clone(&ready);
                async move {
                    if ready() {
                        (axum::http::StatusCode::OK, "ready")
                    } else {
                        (axum::http::StatusCode::SERVICE_UNAVAILABLE, "not ready")
                    }
                }
            }),
        )
}

/// Serves the internal router until `stop` changes, with the connection policy `config`.
pub async fn serve_internal(
    addr: SocketAddr,
    router: axum::Router,
    config: chorus_api::serve::ServeConfig,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<()> {
    let listener =
        tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = stop.changed().await;
        };
        if let Err(e) = chorus_api::serve::serve(listener, router, config, shutdown).await {
            tracing::warn!(error = %e, "The internal port stopped.");
        }
    });
    Ok(())
}

/// Waits for SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// Waits (bounded) until the worker has no stream in flight.
pub async fn drain(worker: &EngineWorker, grace: Duration) {
    worker.drain();
    let deadline = tokio::time::Instant::now() + grace;
    while worker.counters().load.load(Ordering::Acquire) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Connects to NATS, retrying until it answers; the client reconnects by itself afterwards.
pub async fn connect_nats(url: &str, name: &str) -> Result<async_nats::Client> {
    async_nats::ConnectOptions::new()
        .name(name)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(2))
        .event_callback(|event| async move {
            tracing::info!(%event, "NATS connection event.");
        })
        .connect(url)
        .await
        .with_context(|| format!("cannot connect to NATS at {url}"))
}

/// A tokio runtime for the serving roles (model work stays on its own threads).
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("chorus-io")
        .build()
        .context("cannot start the async runtime")
}

/// The default worker id: host name and process id.
pub fn default_worker_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "worker".into());
    format!("{host}-{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Flags {
        #[command(flatten)]
        engine: EngineArgs,
    }

    fn args(flags: &[&str]) -> EngineArgs {
        Flags::try_parse_from(std::iter::once("chorus").chain(flags.iter().copied())).unwrap().engine
    }

    #[test]
    fn shape_buckets_are_on_by_default_on_a_gpu_only_and_follow_flags_then_the_config_file() {
        let file = ConfigFile::default();
        let on_gpu = shape_buckets(&args(&[]), &file, true, 16).unwrap().unwrap();
        assert_eq!(on_gpu, chorus_engine::ShapeBuckets::defaults(16));
        assert_eq!(shape_buckets(&args(&[]), &file, false, 1).unwrap(), None, "off on a CPU");
        assert_eq!(shape_buckets(&args(&["--shape-buckets", "off"]), &file, true, 16).unwrap(), None);
        let cpu_on =
            shape_buckets(&args(&["--shape-buckets", "on", "--bucket-ids", "64,32"]), &file, false, 1)
                .unwrap()
                .unwrap();
        assert_eq!((cpu_on.ids.as_slice(), cpu_on.batches.as_slice()), ([32, 64].as_slice(), [1].as_slice()));
        let file: ConfigFile =
            toml::from_str("shape_buckets = true\nbucket_frames = [256, 512]\nbucket_frame_rows = 1024")
                .unwrap();
        let from_file = shape_buckets(&args(&[]), &file, false, 4).unwrap().unwrap();
        assert_eq!((from_file.frames.as_slice(), from_file.max_frame_rows), ([256, 512].as_slice(), 1024));
        // A flag wins over the file.
        let flag = shape_buckets(&args(&["--bucket-frames", "128"]), &file, false, 4).unwrap().unwrap();
        assert_eq!(flag.frames, [128]);
    }

    #[test]
    fn bad_bucket_settings_are_refused_with_a_clear_message() {
        let bad = Flags::try_parse_from(["chorus", "--bucket-ids", "32,abc"]).unwrap_err().to_string();
        assert!(bad.contains("not a positive number"), "{bad}");
        assert!(Flags::try_parse_from(["chorus", "--shape-buckets", "maybe"]).is_err());
        let file: ConfigFile = toml::from_str("bucket_frame_rows = 0").unwrap();
        let err = shape_buckets(&args(&["--shape-buckets", "on"]), &file, false, 1).unwrap_err().to_string();
        assert!(err.contains("invalid shape buckets"), "{err}");
        assert!(toml::from_str::<ConfigFile>("shape_bucket = true").is_err(), "unknown keys are refused");
    }
}
