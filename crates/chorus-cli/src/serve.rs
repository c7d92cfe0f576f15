//! `chorus serve`: the API server, the engine worker and the in-process bus in one process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use chorus_bus::{Bus, LocalBus, LocalBusConfig, ModelLoad};

use crate::common::{self, ApiArgs, ConfigFile, EngineArgs};
use crate::paths::PathArgs;

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    #[command(flatten)]
    pub engine: EngineArgs,
    #[command(flatten)]
    pub models: crate::models::ModelStoreArgs,
    /// Address of /metrics and /ready (keep it internal).
    #[arg(long, env = "CHORUS_METRICS_LISTEN", default_value = "127.0.0.1:8080")]
    pub metrics_listen: SocketAddr,
    /// A TOML config file (model catalogue, limits, engine settings); flags override it.
    #[arg(long, env = "CHORUS_CONFIG")]
    pub config: Option<PathBuf>,
}

pub fn run(paths: &PathArgs, args: ServeArgs) -> Result<()> {
    let file = ConfigFile::load(args.config.as_deref())?;
    let metrics = common::install_metrics()?;
    let runtime = common::runtime()?;
    let worker = common::engine_worker(paths, &args.engine, &file, "local-0".into(), None)?;
    let bus = LocalBus::new(LocalBusConfig {
        max_queue: file.max_queue.unwrap_or(256),
        queue_timeout: Duration::from_secs(file.queue_timeout_seconds.unwrap_or(30)),
    });
    bus.register(Arc::clone(&worker) as Arc<dyn chorus_bus::Worker>);
    let state = common::api_state(&args.api, &file, Arc::new(bus.clone()))?;
    let state = common::with_artifacts(
        state,
        &args.api.artifacts,
        &file,
        Some(chorus_artifacts::DEFAULT_LOCAL_STORE),
    )?;

    runtime.block_on(async move {
        let api = tokio::net::TcpListener::bind(args.api.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.api.listen))?;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        common::start_artifacts(&state, &args.api.artifacts, &file, stop_rx.clone()).await?;
        crate::models::spawn_watcher(
            &args.api.artifacts,
            &args.models,
            &file,
            Some(chorus_artifacts::DEFAULT_LOCAL_STORE),
            &worker,
            Duration::from_secs(30),
            stop_rx.clone(),
        )?;
        let refresh = {
            let (worker, bus) = (Arc::clone(&worker), bus.clone());
            Arc::new(move || {
                common::record_worker(&worker);
                let queued = bus.queued() as u64;
                let loads: Vec<ModelLoad> = bus
                    .models()
                    .into_iter()
                    .map(|m| ModelLoad { model: m.id, queued, unserviceable: 0 })
                    .collect();
                common::record_api(&loads);
            })
        };
        let ready = {
            let bus = bus.clone();
            Arc::new(move || bus.workers().iter().any(|w| !w.draining && w.capacity > 0))
        };
        common::serve_internal(
            args.metrics_listen,
            common::internal_router(metrics, refresh, ready),
            stop_rx.clone(),
        )
        .await?;
        tracing::info!(api = %args.api.listen, metrics = %args.metrics_listen, "Chorus is serving.");
        eprintln!(
            "chorus serve: API on http://{} , metrics on http://{}/metrics",
            args.api.listen, args.metrics_listen
        );

        let (server, ws_shutdown) = crate::api::spawn_api(api, state, stop_rx);
        common::shutdown_signal().await;
        tracing::info!("Shutting down: draining streams.");
        ws_shutdown.trigger();
        let _ = stop_tx.send(true);
        common::drain(&worker, Duration::from_secs(30)).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
        let _ = tokio::time::timeout(Duration::from_secs(15), ws_shutdown.wait_closed()).await;
        Ok::<(), anyhow::Error>(())
    })
}
