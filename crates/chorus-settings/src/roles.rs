//! The defaults, and each role's typed settings: validated and converted into the libraries' configurations.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use chorus_api::ApiConfig;
use chorus_api::cors::CorsConfig;
use chorus_api::serve::ServeConfig;
use chorus_api::tls::TlsSettings;
use chorus_api::ws::WsConfig;
use chorus_license::ProxyConfig;
use chorus_proto::license::LicenseMode;

use crate::file::{FileSettings, LicenseSection, ServerSection, TlsSection};
use crate::{Context, Error, Result, bail};

/// A serving role: what differs between their defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Serve,
    Api,
    Worker,
    LicenseProxy,
}

/// Addresses, the NATS URL, the data directory and the worker's drain: the command line's own defaults.
const LISTEN: &str = "127.0.0.1:5000";
const METRICS_LISTEN: &str = "127.0.0.1:8080";
const LICENSE_LISTEN: &str = "127.0.0.1:8080";
const NATS: &str = "nats://127.0.0.1:4222";
const WORKER_DRAIN_SECONDS: u64 = 30;
/// Seconds between two listings of the store's `models/`, unless the reload interval is given.
const MODELS_POLL_SECONDS: f64 = 2.0;

fn addr(text: &str) -> Option<SocketAddr> {
    text.parse().ok()
}

/// The defaults of `role`, from the libraries wherever they have one.
pub fn defaults(role: Role) -> FileSettings {
    let serve = ServeConfig::default();
    let ws = WsConfig::default();
    let api = ApiConfig::default();
    let bus = chorus_bus::LocalBusConfig::default();
    let license = ProxyConfig::new(PathBuf::new(), LicenseMode::Open);
    let secs = |d: Duration| Some(d.as_secs_f64());
    FileSettings {
        listen: addr(LISTEN),
        metrics_listen: addr(METRICS_LISTEN),
        nats: Some(NATS.into()),
        allow_open: Some(false),
        license_proxy: Some(role == Role::Serve),
        models: Some(api.catalogue.models),
        max_transcript_chars: Some(api.max_transcript_chars),
        max_queue: Some(bus.max_queue),
        queue_timeout_seconds: Some(bus.queue_timeout.as_secs()),
        intra_threads: Some(1),
        device: Some(chorus_engine::Device::Cpu.to_string()),
        drain_seconds: Some(WORKER_DRAIN_SECONDS),
        reload_interval_seconds: secs(chorus_api::persistence::DEFAULT_RELOAD_INTERVAL),
        enable_hot_reload: Some(true),
        models_cache: Some(std::env::temp_dir().join("chorus-models")),
        tls: Some(TlsSection {
            reload_interval_seconds: secs(chorus_api::tls::DEFAULT_RELOAD_INTERVAL),
            ..TlsSection::default()
        }),
        server: Some(ServerSection {
            header_timeout_seconds: secs(serve.header_timeout),
            body_timeout_seconds: secs(serve.body_timeout),
            idle_timeout_seconds: secs(serve.idle_timeout),
            write_stall_timeout_seconds: secs(serve.write_stall_timeout),
            max_connections: Some(serve.max_connections),
            max_connections_per_ip: Some(serve.max_connections_per_ip),
            ws_context_idle_seconds: secs(ws.context_idle_timeout),
            ws_idle_seconds: secs(ws.idle_timeout),
            ws_drain_seconds: secs(ws.drain_timeout),
            ws_close_seconds: secs(ws.close_timeout),
            ws_write_seconds: secs(ws.write_timeout),
            ws_max_message_bytes: Some(ws.max_message_bytes),
            ws_max_contexts: Some(ws.max_contexts),
        }),
        license: Some(LicenseSection {
            listen: addr(LICENSE_LISTEN),
            data: Some(default_data_dir()),
            mode: Some(license.mode.as_str().into()),
            grace: Some(humantime::format_duration(chorus_license::proxy::DEFAULT_GRACE).to_string()),
            segment_bytes: Some(chorus_license::proxy::DEFAULT_SEGMENT_BYTES),
            refresh: Some(humantime::format_duration(license.refresh).to_string()),
            ..LicenseSection::default()
        }),
        ..FileSettings::default()
    }
}

/// Settings whose default follows another setting, filled in from what was given (before the defaults).
pub fn derived(mut given: FileSettings) -> FileSettings {
    // The models' poll follows the artifact store's reload interval when only that is given.
    given.models_poll_seconds = given.models_poll_seconds.or(given.reload_interval_seconds);
    // A lower connection limit lowers the per-address one with it.
    if let Some(server) = &mut given.server
        && let (Some(n), None) = (server.max_connections, server.max_connections_per_ip)
    {
        server.max_connections_per_ip = Some(ServeConfig::default().max_connections_per_ip.min(n));
    }
    given.models_poll_seconds = given.models_poll_seconds.or(Some(MODELS_POLL_SECONDS));
    given
}

/// `$XDG_DATA_HOME/chorus/license`, else `~/.local/share/chorus/license`, else `./chorus-license`.
pub fn default_data_dir() -> PathBuf {
    let nonempty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(xdg) = nonempty("XDG_DATA_HOME") {
        return xdg.join("chorus").join("license");
    }
    if let Some(home) = nonempty("HOME") {
        return home.join(".local").join("share").join("chorus").join("license");
    }
    PathBuf::from("chorus-license")
}

fn need<T: Clone>(value: &Option<T>, what: &str) -> Result<T> {
    value.clone().with_context(|| format!("internal: no default for {what}"))
}

/// A positive number of seconds.
fn positive_seconds(what: &str, value: Option<f64>) -> Result<Duration> {
    match value {
        Some(s) if s.is_finite() && s > 0.0 => Ok(Duration::from_secs_f64(s)),
        Some(s) => bail!("{what} must be a positive number of seconds, not {s}"),
        None => bail!("internal: no default for {what}"),
    }
}

/// A number of seconds above 0 and at most a day.
fn seconds(what: &str, value: Option<f64>) -> Result<Duration> {
    match value {
        Some(s) if s.is_finite() && s > 0.0 && s <= 86_400.0 => Ok(Duration::from_secs_f64(s)),
        Some(s) => bail!("{what} must be a number of seconds above 0 (and at most a day), not {s}"),
        None => bail!("internal: no default for {what}"),
    }
}

/// The listening ports' policies and the WebSocket's rules.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    server: ServerSection,
    pub ws: WsConfig,
}

impl ServerSettings {
    fn resolve(f: &FileSettings) -> Result<Self> {
        let s = f.server.clone().unwrap_or_default();
        let ws = WsConfig {
            context_idle_timeout: seconds("--ws-context-idle-timeout", s.ws_context_idle_seconds)?,
            idle_timeout: seconds("--ws-idle-timeout", s.ws_idle_seconds)?,
            drain_timeout: seconds("--ws-drain-timeout", s.ws_drain_seconds)?,
            close_timeout: seconds("--ws-close-timeout", s.ws_close_seconds)?,
            write_timeout: seconds("--ws-write-timeout", s.ws_write_seconds)?,
            max_message_bytes: need(&s.ws_max_message_bytes, "ws_max_message_bytes")?,
            max_contexts: need(&s.ws_max_contexts, "ws_max_contexts")?,
            ..WsConfig::default()
        };
        if ws.max_message_bytes == 0 || ws.max_contexts == 0 {
            bail!("--ws-max-message-bytes and --ws-max-contexts must be at least 1");
        }
        let settings = Self { server: s, ws };
        settings.port("api")?;
        Ok(settings)
    }

    /// The policy of the port named `name`.
    pub fn port(&self, name: &'static str) -> Result<ServeConfig> {
        let s = &self.server;
        let config = ServeConfig {
            header_timeout: seconds("--header-timeout", s.header_timeout_seconds)?,
            body_timeout: seconds("--body-timeout", s.body_timeout_seconds)?,
            idle_timeout: seconds("--idle-timeout", s.idle_timeout_seconds)?,
            write_stall_timeout: seconds("--write-stall-timeout", s.write_stall_timeout_seconds)?,
            max_connections: need(&s.max_connections, "max_connections")?,
            max_connections_per_ip: need(&s.max_connections_per_ip, "max_connections_per_ip")?,
            ..ServeConfig::named(name)
        };
        config.validate().map_err(|e| Error(format!("{name} port: {e}")))?;
        Ok(config)
    }
}

/// The artifact store.
#[derive(Debug, Clone)]
pub struct ArtifactSettings {
    /// Configured (flag, environment or file); `None`: the role's default, if any.
    pub location: Option<String>,
    pub interval: Duration,
    pub hot_reload: bool,
}

impl ArtifactSettings {
    fn resolve(f: &FileSettings) -> Result<Self> {
        let interval = positive_seconds("the reload interval", f.reload_interval_seconds)?;
        Ok(Self {
            location: f.artifacts.clone(),
            interval: interval.max(Duration::from_secs_f64(0.01)),
            hot_reload: need(&f.enable_hot_reload, "enable_hot_reload")?,
        })
    }
}

/// Voice models hot-added from the artifact store.
#[derive(Debug, Clone)]
pub struct ModelSettings {
    pub poll: Duration,
    pub cache: PathBuf,
    pub only: Vec<String>,
}

impl ModelSettings {
    fn resolve(f: &FileSettings) -> Result<Self> {
        Ok(Self {
            poll: positive_seconds("--models-poll-seconds", f.models_poll_seconds)?,
            cache: need(&f.models_cache, "models_cache")?,
            only: f
                .store_models
                .iter()
                .flatten()
                .map(|p| p.trim().to_owned())
                .filter(|p| !p.is_empty())
                .collect(),
        })
    }
}

/// The engine's placement; what is not given is chosen for the device and the machine at load.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    pub device: chorus_engine::Device,
    pub sessions_per_voice: Option<usize>,
    pub intra_threads: usize,
    pub max_batch: Option<usize>,
    pub solo_threads: Option<usize>,
    /// `None`: measured at warm-up, and adaptive.
    pub capacity: Option<u32>,
    /// Shape buckets on or off (`None`: on on a GPU only), and the bucket sizes given (the library's defaults for
    /// the others, see [`EngineSettings::shape_buckets`]).
    pub shape_buckets: Option<bool>,
    pub bucket_ids: Option<Vec<usize>>,
    pub bucket_frames: Option<Vec<usize>>,
    pub bucket_frame_rows: Option<usize>,
    /// `None`: on on a GPU only.
    pub session_per_shape: Option<bool>,
    /// `None`: on on a GPU only.
    pub opening_lane: Option<bool>,
}

impl EngineSettings {
    fn resolve(f: &FileSettings) -> Result<Self> {
        let mut device: chorus_engine::Device = need(&f.device, "device")?.parse().map_err(Error)?;
        // Checked whatever the device, so that a typo is an error and not silently ignored.
        if let Some(search) = f.cuda_conv_search.as_deref() {
            let search: chorus_engine::ConvSearch = search.parse().map_err(Error)?;
            if let chorus_engine::Device::Cuda { conv_search, .. } = &mut device {
                *conv_search = search;
            }
        }
        let settings = Self {
            device,
            sessions_per_voice: f.sessions_per_voice,
            intra_threads: need(&f.intra_threads, "intra_threads")?.max(1),
            max_batch: f.max_batch,
            solo_threads: f.solo_threads,
            capacity: f.capacity.map(|c| c.max(1)),
            shape_buckets: f.shape_buckets,
            bucket_ids: f.bucket_ids.clone(),
            bucket_frames: f.bucket_frames.clone(),
            bucket_frame_rows: f.bucket_frame_rows,
            session_per_shape: f.session_per_shape,
            opening_lane: f.opening_lane,
        };
        // Bad bucket sets are refused on load, not when the engine starts.
        let max_batch = settings.max_batch.unwrap_or(device.default_max_batch()).clamp(1, 256);
        settings.shape_buckets(device.is_gpu(), max_batch)?;
        Ok(settings)
    }

    /// The shape buckets asked for on a device (`gpu`) batching `max_batch` chunks (`None`: off; on by default on
    /// a GPU only); a bad set is an error.
    pub fn shape_buckets(&self, gpu: bool, max_batch: usize) -> Result<Option<chorus_engine::ShapeBuckets>> {
        if !self.shape_buckets.unwrap_or(gpu) {
            return Ok(None);
        }
        let defaults = chorus_engine::ShapeBuckets::defaults(max_batch);
        let ids = self.bucket_ids.clone().unwrap_or(defaults.ids);
        let frames = self.bucket_frames.clone().unwrap_or(defaults.frames);
        let rows = self.bucket_frame_rows.unwrap_or(defaults.max_frame_rows);
        chorus_engine::ShapeBuckets::new(ids, frames, max_batch, rows)
            .map(Some)
            .map_err(|e| Error(format!("invalid shape buckets: {e}")))
    }
}

/// The API (`serve` and `api`).
#[derive(Debug, Clone)]
pub struct ApiSettings {
    pub listen: SocketAddr,
    pub api_keys: Vec<String>,
    pub allow_open: bool,
    /// The catalogue, the transcript limit and CORS (the keys are checked against the address when the state is
    /// built).
    pub config: ApiConfig,
    pub tls: Option<TlsSettings>,
    pub artifacts: ArtifactSettings,
    pub max_queue: usize,
    pub queue_timeout: Duration,
    /// `serve`: run the in-process proxy; `api`: follow the one on the bus.
    pub license_proxy: bool,
}

impl ApiSettings {
    fn resolve(f: &FileSettings) -> Result<Self> {
        let origins = f.cors_origins.iter().flatten().map(|o| o.trim().to_owned()).filter(|o| !o.is_empty());
        let cors = CorsConfig { origins: origins.collect() };
        cors.validate().map_err(|e| Error(e.to_string()))?;
        let mut config = ApiConfig { cors, ..ApiConfig::default() };
        config.catalogue.models = need(&f.models, "models")?;
        config.max_transcript_chars = need(&f.max_transcript_chars, "max_transcript_chars")?;
        Ok(Self {
            listen: need(&f.listen, "listen")?,
            api_keys: f.api_keys.iter().flatten().map(|k| k.0.clone()).collect(),
            allow_open: need(&f.allow_open, "allow_open")?,
            config,
            tls: tls(f.tls.clone().unwrap_or_default())?,
            artifacts: ArtifactSettings::resolve(f)?,
            max_queue: need(&f.max_queue, "max_queue")?,
            queue_timeout: Duration::from_secs(need(&f.queue_timeout_seconds, "queue_timeout_seconds")?),
            license_proxy: need(&f.license_proxy, "license_proxy")?,
        })
    }
}

fn tls(section: TlsSection) -> Result<Option<TlsSettings>> {
    let reload_interval = positive_seconds("the TLS reload interval", section.reload_interval_seconds)?;
    match (section.cert, section.key) {
        (None, None) => Ok(None),
        (Some(cert), Some(key)) => Ok(Some(TlsSettings { cert, key, reload_interval })),
        (Some(_), None) => bail!("a TLS certificate needs its key (--tls-key, or key in [tls])"),
        (None, Some(_)) => bail!("a TLS key needs its certificate (--tls-cert, or cert in [tls])"),
    }
}

pub fn parse_mode(text: &str) -> Result<LicenseMode> {
    match text.trim().to_ascii_lowercase().as_str() {
        "open" => Ok(LicenseMode::Open),
        "connected" => Ok(LicenseMode::Connected),
        "air-gapped" | "airgapped" | "air_gapped" => Ok(LicenseMode::AirGapped),
        other => bail!("unknown license mode '{other}' (open, connected or air-gapped)"),
    }
}

/// The license proxy's configuration (`[license]`, its flags and variables).
fn license(f: &FileSettings) -> Result<ProxyConfig> {
    let s = f.license.clone().unwrap_or_default();
    let mode = parse_mode(&need(&s.mode, "the license mode")?)?;
    let grace = need(&s.grace, "the grace period")?;
    let refresh = need(&s.refresh, "the refresh interval")?;
    let nonempty = |keys: Vec<String>| keys.into_iter().filter(|k| !k.trim().is_empty()).collect::<Vec<_>>();
    let mut config = ProxyConfig::new(need(&s.data, "the data directory")?, mode);
    config.grace =
        humantime::parse_duration(&grace).with_context(|| format!("invalid grace period '{grace}'"))?;
    config.trusted_keys = nonempty(s.trusted_keys.unwrap_or_default());
    config.seed_license = s.seed_license;
    config.config_keys = s.keys.unwrap_or_default();
    config.admin_keys = nonempty(s.admin_keys.unwrap_or_default().into_iter().map(|k| k.0).collect());
    config.max_segment_bytes = need(&s.segment_bytes, "the segment size")?;
    config.upstream = s.upstream.filter(|u| !u.trim().is_empty());
    config.upstream_token = s.upstream_token.map(|t| t.0).filter(|t| !t.trim().is_empty());
    config.refresh = humantime::parse_duration(&refresh)
        .with_context(|| format!("invalid refresh interval '{refresh}'"))?;
    Ok(config)
}

/// `chorus serve`.
#[derive(Debug)]
pub struct ServeSettings {
    pub api: ApiSettings,
    pub engine: EngineSettings,
    pub models: ModelSettings,
    pub metrics_listen: SocketAddr,
    pub server: ServerSettings,
    /// The in-process license proxy, unless `--no-license-proxy`.
    pub license: Option<ProxyConfig>,
}

impl ServeSettings {
    pub fn resolve(f: &FileSettings) -> Result<Self> {
        let api = ApiSettings::resolve(f)?;
        let license = if api.license_proxy { Some(license(f)?) } else { None };
        Ok(Self {
            engine: EngineSettings::resolve(f)?,
            models: ModelSettings::resolve(f)?,
            metrics_listen: need(&f.metrics_listen, "metrics_listen")?,
            server: ServerSettings::resolve(f)?,
            license,
            api,
        })
    }
}

/// `chorus api`.
#[derive(Debug)]
pub struct ApiRoleSettings {
    pub api: ApiSettings,
    pub nats: String,
    pub metrics_listen: SocketAddr,
    pub server: ServerSettings,
}

impl ApiRoleSettings {
    pub fn resolve(f: &FileSettings) -> Result<Self> {
        Ok(Self {
            api: ApiSettings::resolve(f)?,
            nats: need(&f.nats, "nats")?,
            metrics_listen: need(&f.metrics_listen, "metrics_listen")?,
            server: ServerSettings::resolve(f)?,
        })
    }
}

/// `chorus worker`.
#[derive(Debug)]
pub struct WorkerSettings {
    pub nats: String,
    pub model: String,
    pub worker_id: String,
    pub engine: EngineSettings,
    pub artifacts: ArtifactSettings,
    pub models: ModelSettings,
    pub metrics_listen: SocketAddr,
    pub drain: Duration,
    pub server: ServerSettings,
}

impl WorkerSettings {
    pub fn resolve(f: &FileSettings) -> Result<Self> {
        Ok(Self {
            nats: need(&f.nats, "nats")?,
            model: f
                .model
                .clone()
                .context("the worker needs its model: --model, CHORUS_MODEL or model = …")?,
            worker_id: f.worker_id.clone().unwrap_or_else(default_worker_id),
            engine: EngineSettings::resolve(f)?,
            artifacts: ArtifactSettings::resolve(f)?,
            models: ModelSettings::resolve(f)?,
            metrics_listen: need(&f.metrics_listen, "metrics_listen")?,
            drain: Duration::from_secs(need(&f.drain_seconds, "drain_seconds")?),
            server: ServerSettings::resolve(f)?,
        })
    }
}

/// The default worker id: host name and process id.
fn default_worker_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "worker".into());
    format!("{host}-{}", std::process::id())
}

/// `chorus license-proxy`.
#[derive(Debug)]
pub struct ProxySettings {
    pub listen: SocketAddr,
    /// Empty: HTTP only.
    pub nats: String,
    pub proxy: ProxyConfig,
    pub server: ServerSettings,
}

impl ProxySettings {
    pub fn resolve(f: &FileSettings) -> Result<Self> {
        Ok(Self {
            listen: need(&f.license.as_ref().and_then(|l| l.listen), "the proxy's listen address")?,
            nats: need(&f.nats, "nats")?,
            proxy: license(f)?,
            server: ServerSettings::resolve(f)?,
        })
    }
}
