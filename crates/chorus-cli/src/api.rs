//! `chorus api`: the API server alone, reaching workers over NATS.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use chorus_api::AppState;
use chorus_bus::{Bus, ModelInfo, NatsBus, NatsBusConfig};
use tokio::task::JoinHandle;

use crate::common::{self, ApiArgs, ConfigFile};
use crate::paths::PathArgs;

#[derive(Debug, clap::Args)]
pub struct ApiRoleArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    /// NATS server URL.
    #[arg(long = "nats", env = "CHORUS_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats: String,
    /// Address of /metrics and /ready (keep it internal).
    #[arg(long, env = "CHORUS_METRICS_LISTEN", default_value = "127.0.0.1:8080")]
    pub metrics_listen: SocketAddr,
    /// A TOML config file (model catalogue, limits); flags override it.
    #[arg(long, env = "CHORUS_CONFIG")]
    pub config: Option<PathBuf>,
    /// A license proxy (`chorus license-proxy`) is on the bus: apply its entitlement and tenant keys, and report
    /// usage to it. Without it the API runs as an open deployment (static --api-key keys only).
    #[arg(long, env = "CHORUS_LICENSE_PROXY")]
    pub license_proxy: bool,
}

/// Starts the API on `listener` with the connection policy `serve` and the WebSocket settings `ws`; returns the
/// server task and the WebSocket shutdown switch.
pub fn spawn_api(
    listener: tokio::net::TcpListener,
    state: AppState,
    serve: chorus_api::serve::ServeConfig,
    ws: chorus_api::ws::WsConfig,
    tls: Option<chorus_api::tls::TlsAcceptor>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> (JoinHandle<std::io::Result<()>>, chorus_api::ws::WsShutdown) {
    // WebSockets outlive the HTTP server's graceful shutdown: they are drained and closed (1001) through their own
    // switch.
    let ws_shutdown = chorus_api::ws::WsShutdown::new();
    let app = chorus_api::app::router(state).layer(axum::Extension(ws.with_shutdown(&ws_shutdown)));
    let shutdown = async move {
        let _ = stop.changed().await;
    };
    let server = match tls {
        Some(tls) => tokio::spawn(chorus_api::serve::serve_with(listener, app, serve, tls, shutdown)),
        None => tokio::spawn(chorus_api::serve::serve(listener, app, serve, shutdown)),
    };
    (server, ws_shutdown)
}

/// How long shutdown waits for WebSockets: their drain, their close handshake, and a margin.
pub fn ws_shutdown_wait(ws: &chorus_api::ws::WsConfig) -> Duration {
    ws.drain_timeout + ws.close_timeout + Duration::from_secs(2)
}

/// The voices installed beside the API (the image ships them in `CHORUS_MODELS_DIR`), read from their configs
/// only: no model is loaded here.
fn installed_models(dir: &Path) -> Vec<ModelInfo> {
    match chorus_engine::PiperVoice::discover(dir) {
        Ok(voices) => voices
            .into_iter()
            .map(|v| ModelInfo { id: v.id, language: v.language, sample_rate: v.sample_rate })
            .collect(),
        Err(e) => {
            tracing::info!(error = %e, "No installed voices: voices are learned from the workers' heartbeats.");
            Vec::new()
        }
    }
}

pub fn run(paths: &PathArgs, args: ApiRoleArgs) -> Result<()> {
    let installed = installed_models(&paths.models_dir());
    let file = ConfigFile::load(args.config.as_deref())?;
    let api_serve = args.api.conn.serve_config(&file, "api")?;
    let internal_serve = args.api.conn.serve_config(&file, "internal")?;
    let ws = args.api.ws.ws_config(&file)?;
    common::warn_public_metrics(args.metrics_listen);
    let metrics = common::install_metrics()?;
    common::register_api_metrics();
    let runtime = common::runtime()?;
    runtime.block_on(async move {
        let client = common::connect_nats(&args.nats, "chorus-api").await?;
        let config = NatsBusConfig {
            max_queue: file.max_queue.unwrap_or(256),
            queue_timeout: Duration::from_secs(file.queue_timeout_seconds.unwrap_or(30)),
            ..NatsBusConfig::default()
        };
        let bus =
            NatsBus::start(client.clone(), config).await.context("cannot follow the workers on NATS")?;
        let bus_dyn = Arc::new(bus.clone()) as Arc<dyn Bus>;
        let mut state = common::api_state_opts(&args.api, &file, bus_dyn, args.license_proxy)?;
        if args.license_proxy {
            let link = chorus_bus::NatsLicenseLink::start(client.clone())
                .await
                .context("cannot follow the license proxy on NATS")?;
            state = state.with_license(common::license_gate(&args.api, Arc::new(link)));
            tracing::info!("Following the license proxy on the bus.");
        }
        let state = common::with_artifacts(state, &args.api.artifacts, &file, None)?;
        // Installed voices are known before any worker of theirs joins (a fresh API, a pool scaled to zero):
        // their requests wait as unserviceable, which wakes the pool, instead of failing as unknown voices.
        state.voices.pin_builtin(&installed);
        let listener = tokio::net::TcpListener::bind(args.api.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.api.listen))?;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        common::start_artifacts(&state, &args.api.artifacts, &file, stop_rx.clone()).await?;
        let refresh = {
            let (bus, gate) = (bus.clone(), Arc::clone(&state.license));
            Arc::new(move || {
                common::record_api(&bus.model_loads());
                common::record_usage(&gate);
            })
        };
        // The API is ready as soon as it listens: requests for models no worker serves yet wait (unserviceable).
        let ready = Arc::new(|| true);
        common::serve_internal(
            args.metrics_listen,
            common::internal_router(metrics, refresh, ready),
            internal_serve,
            stop_rx.clone(),
        )
        .await?;
        tracing::info!(api = %args.api.listen, nats = %args.nats, "Chorus API is serving.");
        let gate = Arc::clone(&state.license);
        let tls = args.api.web.tls_acceptor(&file)?;
        let ws_wait = ws_shutdown_wait(&ws);
        let (server, ws_shutdown) = spawn_api(listener, state, api_serve, ws, tls, stop_rx);
        common::shutdown_signal().await;
        tracing::info!("Shutting down the API.");
        let deadline = tokio::time::Instant::now() + ws_wait;
        ws_shutdown.trigger();
        let _ = stop_tx.send(true);
        let _ = tokio::time::timeout_at(deadline, server).await;
        let _ = tokio::time::timeout_at(deadline, ws_shutdown.wait_closed()).await;
        common::flush_usage(&gate, crate::license::USAGE_FLUSH).await;
        Ok(())
    })
}
