//! `chorus worker`: one model's worker, serving jobs from NATS.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use chorus_bus::{NatsBusConfig, NatsWorkerHost, Worker};

use crate::paths::PathArgs;
use crate::settings::args::{ArtifactArgs, ConfigArgs, ConnArgs, EngineArgs, ModelStoreArgs};
use crate::settings::roles::{Role, WorkerSettings, defaults};
use crate::settings::{self, Layers};
use crate::{engine, metrics, process};

#[derive(Debug, clap::Args, serde::Serialize)]
pub struct WorkerArgs {
    /// NATS server URL (default nats://127.0.0.1:4222).
    #[arg(long = "nats", env = "CHORUS_NATS_URL")]
    pub nats: Option<String>,
    /// The model (voice) this worker serves, e.g. en_US-joe-medium (required: here, or `model` in the config).
    #[arg(long, env = "CHORUS_MODEL")]
    pub model: Option<String>,
    /// This worker's id on the bus (default: host name and process id).
    #[arg(long, env = "CHORUS_WORKER_ID")]
    pub worker_id: Option<String>,
    /// Address of /metrics and /ready (the startup probe: ready once the model is loaded and warm; default
    /// 127.0.0.1:8080).
    #[arg(long, env = "CHORUS_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Seconds streams in flight may take to finish after SIGTERM (default 30).
    #[arg(long = "drain-seconds", env = "CHORUS_DRAIN_SECONDS")]
    pub drain_seconds: Option<u64>,
    #[command(flatten)]
    #[serde(skip)]
    pub engine: EngineArgs,
    #[command(flatten)]
    #[serde(skip)]
    pub models: ModelStoreArgs,
    #[command(flatten)]
    #[serde(skip)]
    pub artifacts: ArtifactArgs,
    #[command(flatten)]
    #[serde(skip)]
    pub config: ConfigArgs,
    #[command(flatten)]
    #[serde(skip)]
    pub conn: ConnArgs,
}

impl settings::Layer for WorkerArgs {}

/// The settings of `chorus worker`: defaults, the config file, the environment and the flags.
pub fn settings(args: &WorkerArgs) -> Result<settings::file::FileSettings> {
    let layers = Layers::file(args.config.config.as_deref())?
        .flags(args)?
        .flags(&args.engine)?
        .flags(&args.models)?
        .flags(&args.artifacts)?
        .flags(&args.conn)?;
    Ok(layers.resolve(&defaults(Role::Worker))?)
}

pub fn run(paths: &PathArgs, args: WorkerArgs) -> Result<()> {
    let Some(s) = settings::load(&args.config, &settings(&args)?, WorkerSettings::resolve)? else {
        return Ok(());
    };
    let internal_serve = s.server.port("internal")?;
    metrics::warn_public_metrics(s.metrics_listen);
    let handle = metrics::install_metrics()?;
    metrics::register_worker_metrics();
    let runtime = process::runtime()?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let worker_id = s.worker_id.clone();

    // /metrics and /ready answer while the model loads (capacity 0, not ready), like the system we reproduce.
    let slot = Arc::new(std::sync::OnceLock::<Arc<chorus_worker::EngineWorker>>::new());
    let refresh = {
        let slot = Arc::clone(&slot);
        Arc::new(move || match slot.get() {
            Some(w) => metrics::record_worker(w),
            None => {
                ::metrics::gauge!(chorus_proto::metrics::WORKER_CAPACITY).set(0.0);
                ::metrics::gauge!(chorus_proto::metrics::WORKER_LOAD).set(0.0);
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
    runtime.block_on(metrics::serve_internal(
        s.metrics_listen,
        metrics::internal_router(handle, refresh, ready),
        internal_serve,
        stop_rx.clone(),
    ))?;

    let worker = engine::engine_worker(paths, &s.engine, worker_id.clone(), Some(&s.model))?;
    let _ = slot.set(Arc::clone(&worker));
    runtime.block_on(async move {
        let drain = s.drain;
        crate::models::spawn_watcher(&s.artifacts, &s.models, None, &worker, drain, stop_rx.clone())?;
        let client = process::connect_nats(&s.nats, &format!("chorus-worker-{worker_id}")).await?;
        let host =
            NatsWorkerHost::new(client, Arc::clone(&worker) as Arc<dyn Worker>, NatsBusConfig::default());
        tracing::info!(%worker_id, model = %s.model, nats = %s.nats, "Chorus worker is serving.");
        let mut stop = stop_rx.clone();
        let serving = tokio::spawn(host.run(async move {
            let _ = stop.changed().await;
        }));
        process::shutdown_signal().await;
        tracing::info!("SIGTERM: draining (no new work; streams in flight finish).");
        // Draining is announced by the heartbeats; stop taking jobs, then wait for streams to end.
        process::drain(&worker, drain).await;
        let _ = stop_tx.send(true);
        let _ =
            tokio::time::timeout(Duration::from_secs(5), serving).await.context("bus host did not stop")?;
        Ok(())
    })
}
