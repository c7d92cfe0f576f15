//! `chorus serve`: the API server, the engine worker and the in-process bus in one process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use chorus_api::{ApiConfig, ApiKeys, AppState, ModelEntry};
use chorus_bus::{Bus, LocalBus, LocalBusConfig};
use chorus_engine::{Engine, EngineWorker, WorkerConfig, WorkerCounters};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::paths::PathArgs;

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address of the API (the Cartesia-compatible port).
    #[arg(long, env = "CHORUS_LISTEN", default_value = "127.0.0.1:5000")]
    pub listen: SocketAddr,
    /// Address of /metrics and /ready (keep it internal).
    #[arg(long, env = "CHORUS_METRICS_LISTEN", default_value = "127.0.0.1:8080")]
    pub metrics_listen: SocketAddr,
    /// A TOML config file (model catalogue, limits, engine settings); flags override it.
    #[arg(long, env = "CHORUS_CONFIG")]
    pub config: Option<PathBuf>,
    /// An API key clients must send (Bearer, X-API-Key or ?api_key=); repeat for several.
    /// CHORUS_API_KEYS takes a comma-separated list.
    #[arg(long = "api-key", env = "CHORUS_API_KEYS", value_delimiter = ',', hide_env_values = true)]
    pub api_keys: Vec<String>,
    /// Serve without API keys on a non-loopback address (otherwise refused).
    #[arg(long, env = "CHORUS_ALLOW_OPEN")]
    pub allow_open: bool,
    /// Concurrent streams the worker accepts; more wait in the queue.
    #[arg(long, env = "CHORUS_CAPACITY")]
    pub capacity: Option<u32>,
    /// Model threads (ONNX Runtime sessions) per voice.
    #[arg(long, env = "CHORUS_SESSIONS")]
    pub sessions: Option<usize>,
    /// ONNX Runtime intra-op threads per session.
    #[arg(long, env = "CHORUS_THREADS")]
    pub threads: Option<usize>,
}

/// The config file (`--config`). Every field is optional.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// The model catalogue: ids and the aliases clients send.
    pub models: Option<Vec<ModelEntry>>,
    pub max_transcript_chars: Option<usize>,
    pub capacity: Option<u32>,
    pub sessions_per_voice: Option<usize>,
    pub intra_threads: Option<usize>,
    /// Requests that may wait for a free stream.
    pub max_queue: Option<usize>,
    /// Seconds a request may wait for a free stream.
    pub queue_timeout_seconds: Option<u64>,
}

impl ConfigFile {
    fn load(path: &std::path::Path) -> Result<Self> {
        let raw = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        toml::from_str(&raw).with_context(|| format!("invalid config {}", path.display()))
    }
}

pub fn run(paths: &PathArgs, args: ServeArgs) -> Result<()> {
    let file = match &args.config {
        Some(p) => ConfigFile::load(p)?,
        None => ConfigFile::default(),
    };
    let keys = ApiKeys::new(args.api_keys.clone());
    if keys.is_open() {
        if !args.listen.ip().is_loopback() && !args.allow_open {
            bail!(
                "refusing to serve without API keys on {} (not loopback): give --api-key, or --allow-open to run open",
                args.listen
            );
        }
        tracing::warn!(listen = %args.listen, "No API key configured: the API is OPEN to anyone who can reach it.");
        eprintln!("WARNING: no API key configured; the API on {} accepts every request.", args.listen);
    }

    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let mut engine_config = paths.engine_config();
    engine_config.sessions_per_voice = args.sessions.or(file.sessions_per_voice).unwrap_or(cores).max(1);
    engine_config.intra_threads = args.threads.or(file.intra_threads).unwrap_or(1).max(1);
    let capacity = args.capacity.or(file.capacity).unwrap_or(32).max(1);

    let metrics =
        PrometheusBuilder::new().install_recorder().context("cannot install the metrics recorder")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("chorus-io")
        .build()
        .context("cannot start the async runtime")?;

    let engine = Arc::new(Engine::load(&engine_config).context("cannot load the engine")?);
    let worker = Arc::new(EngineWorker::new(
        Arc::clone(&engine),
        WorkerConfig { worker_id: "local-0".into(), capacity },
    ));
    let counters = worker.counters();
    let bus_config = LocalBusConfig {
        max_queue: file.max_queue.unwrap_or(256),
        queue_timeout: Duration::from_secs(file.queue_timeout_seconds.unwrap_or(30)),
    };
    let bus = LocalBus::new(bus_config);
    bus.register(Arc::clone(&worker) as Arc<dyn chorus_bus::Worker>);

    let mut api_config = ApiConfig { api_keys: keys, ..ApiConfig::default() };
    if let Some(models) = file.models {
        api_config.catalogue.models = models;
    }
    if let Some(max) = file.max_transcript_chars {
        api_config.max_transcript_chars = max;
    }
    let state = AppState::new(Arc::new(bus.clone()), api_config);

    runtime.block_on(async move {
        let api = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let internal = tokio::net::TcpListener::bind(args.metrics_listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.metrics_listen))?;
        tracing::info!(api = %args.listen, metrics = %args.metrics_listen, capacity, "Chorus is serving.");
        eprintln!(
            "chorus serve: API on http://{} , metrics on http://{}/metrics",
            args.listen, args.metrics_listen
        );

        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let internal_app = internal_router(metrics, bus.clone(), counters);
        let mut internal_stop = stop_rx.clone();
        tokio::spawn(async move {
            let _ = axum::serve(internal, internal_app)
                .with_graceful_shutdown(async move {
                    let _ = internal_stop.changed().await;
                })
                .await;
        });
        let mut api_stop = stop_rx.clone();
        // WebSockets outlive axum's graceful shutdown: they are closed (1001) through their own signal.
        let ws_shutdown = chorus_api::ws::WsShutdown::new();
        let app = chorus_api::app::router(state)
            .layer(axum::Extension(chorus_api::ws::WsConfig::default().with_shutdown(&ws_shutdown)));
        let server = tokio::spawn(chorus_api::app::serve(api, app, async move {
            let _ = api_stop.changed().await;
        }));

        shutdown_signal().await;
        tracing::info!("Shutting down: draining streams.");
        worker.drain();
        ws_shutdown.trigger();
        let _ = stop_tx.send(true);
        // Streams in flight finish, within a grace period.
        let grace = tokio::time::Instant::now() + Duration::from_secs(30);
        while worker.counters().load.load(Ordering::Acquire) > 0 && tokio::time::Instant::now() < grace {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
        let _ = tokio::time::timeout(Duration::from_secs(15), ws_shutdown.wait_closed()).await;
        Ok::<(), anyhow::Error>(())
    })?;
    Ok(())
}

/// `/metrics` and `/ready` on the internal port.
fn internal_router(metrics: PrometheusHandle, bus: LocalBus, counters: Arc<WorkerCounters>) -> axum::Router {
    use axum::routing::get;
    let ready_bus = bus.clone();
    axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let (metrics, bus, counters) = (metrics.clone(), bus.clone(), Arc::clone(&counters));
                async move {
                    record_gauges(&bus, &counters);
                    metrics.render()
                }
            }),
        )
        .route(
            "/ready",
            get(move || {
                let bus = ready_bus.clone();
                async move {
                    let capacity: u32 =
                        bus.workers().iter().filter(|w| !w.draining).map(|w| w.capacity).sum();
                    if capacity > 0 {
                        (axum::http::StatusCode::OK, "ready")
                    } else {
                        (axum::http::StatusCode::SERVICE_UNAVAILABLE, "not ready")
                    }
                }
            }),
        )
}

/// Gauges read at scrape time (names that autoscalers key on, see cartesia-spec 1.3).
fn record_gauges(bus: &LocalBus, counters: &WorkerCounters) {
    let workers = bus.workers();
    metrics::gauge!("inferno_worker_capacity")
        .set(f64::from(workers.iter().map(|w| w.capacity).sum::<u32>()));
    metrics::gauge!("inferno_worker_load").set(f64::from(workers.iter().map(|w| w.load).sum::<u32>()));
    metrics::gauge!("api_queue_size").set(bus.queued() as f64);
    metrics::gauge!("chorus_jobs_cancelled").set(f64::from(counters.cancelled.load(Ordering::Relaxed)));
    metrics::gauge!("chorus_jobs_completed").set(f64::from(counters.completed.load(Ordering::Relaxed)));
    metrics::gauge!("chorus_jobs_failed").set(f64::from(counters.failed.load(Ordering::Relaxed)));
}

async fn shutdown_signal() {
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
