//! `chorus worker`: one model's worker, serving jobs from NATS.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use chorus_bus::{NatsBusConfig, NatsWorkerHost, Worker};

use crate::common::{self, ConfigFile, EngineArgs};
use crate::paths::PathArgs;

#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// NATS server URL.
    #[arg(long = "nats", env = "CHORUS_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats: String,
    /// The model (voice) this worker serves, e.g. en_US-joe-medium.
    #[arg(long, env = "CHORUS_MODEL")]
    pub model: String,
    /// This worker's id on the bus (default: host name and process id).
    #[arg(long, env = "CHORUS_WORKER_ID")]
    pub worker_id: Option<String>,
    #[command(flatten)]
    pub engine: EngineArgs,
    #[command(flatten)]
    pub models: crate::models::ModelStoreArgs,
    #[command(flatten)]
    pub artifacts: crate::common::ArtifactArgs,
    /// Address of /metrics and /ready (the startup probe: ready once the model is loaded and warm).
    #[arg(long, env = "CHORUS_METRICS_LISTEN", default_value = "127.0.0.1:8080")]
    pub metrics_listen: SocketAddr,
    /// Seconds streams in flight may take to finish after SIGTERM.
    #[arg(long, env = "CHORUS_DRAIN_SECONDS", default_value_t = 30)]
    pub drain_seconds: u64,
    /// A TOML config file (engine settings); flags override it.
    #[arg(long, env = "CHORUS_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub conn: crate::common::ConnArgs,
}

pub fn run(paths: &PathArgs, args: WorkerArgs) -> Result<()> {
    let file = ConfigFile::load(args.config.as_deref())?;
    let internal_serve = args.conn.serve_config(&file, "internal")?;
    common::warn_public_metrics(args.metrics_listen);
    let metrics = common::install_metrics()?;
    common::register_worker_metrics();
    let runtime = common::runtime()?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let worker_id = args.worker_id.clone().unwrap_or_else(common::default_worker_id);

    // /metrics and /ready answer while the model loads (capacity 0, not ready), like the system we reproduce.
    let slot: Arc<std::sync::OnceLock<Arc<chorus_worker::EngineWorker>>> =
        Arc::new(std::sync::OnceLock::new());
    let refresh = {
        let slot = Arc::clone(&slot);
        Arc::new(move || match slot.get() {
            Some(w) => common::record_worker(w),
            None => {
                metrics::gauge!(chorus_proto::metrics::WORKER_CAPACITY).set(0.0);
                metrics::gauge!(chorus_proto::metrics::WORKER_LOAD).set(0.0);
            }
        })
    };
    let ready = {
        let slot = Arc::clone(&slot);
        Arc::new(move || {
            slot.get().is_some_and(|w| {
                let s = w.status();
                !s.draining && s.capacity > 0
            })
        })
    };
    runtime.block_on(common::serve_internal(
        args.metrics_listen,
        common::internal_router(metrics, refresh, ready),
        internal_serve,
        stop_rx.clone(),
    ))?;

    let worker = common::engine_worker(paths, &args.engine, &file, worker_id.clone(), Some(&args.model))?;
    let _ = slot.set(Arc::clone(&worker));
    runtime.block_on(async move {
        let drain = Duration::from_secs(args.drain_seconds);
        crate::models::spawn_watcher(
            &args.artifacts,
            &args.models,
            &file,
            None,
            &worker,
            drain,
            stop_rx.clone(),
        )?;
        let client = common::connect_nats(&args.nats, &format!("chorus-worker-{worker_id}")).await?;
        let host =
            NatsWorkerHost::new(client, Arc::clone(&worker) as Arc<dyn Worker>, NatsBusConfig::default());
        tracing::info!(%worker_id, model = %args.model, nats = %args.nats, "Chorus worker is serving.");
        let mut stop = stop_rx.clone();
        let serving = tokio::spawn(host.run(async move {
            let _ = stop.changed().await;
        }));
        common::shutdown_signal().await;
        tracing::info!("SIGTERM: draining (no new work; streams in flight finish).");
        // Draining is announced by the heartbeats; stop taking jobs, then wait for streams to end.
        common::drain(&worker, Duration::from_secs(args.drain_seconds)).await;
        let _ = stop_tx.send(true);
        let _ =
            tokio::time::timeout(Duration::from_secs(5), serving).await.context("bus host did not stop")?;
        Ok(())
    })
}
