//! `chorus serve`: the API server, the engine worker and the in-process bus in one process.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use chorus_bus::{Bus, LocalBus, LocalBusConfig, ModelLoad};

use crate::paths::PathArgs;
use crate::settings::args::{ApiArgs, ConfigArgs, EngineArgs, LicenseArgs, ModelStoreArgs};
use crate::settings::roles::{Role, ServeSettings, defaults};
use crate::settings::{self, Layers};
use crate::{engine, metrics, process, state};

/// Seconds the engine's streams may take to finish on shutdown, or a removed model's before it is unloaded.
const DRAIN: Duration = Duration::from_secs(30);

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    #[command(flatten)]
    pub engine: EngineArgs,
    #[command(flatten)]
    pub models: ModelStoreArgs,
    /// Address of /metrics and /ready (keep it internal; default 127.0.0.1:8080).
    #[arg(long, env = "CHORUS_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Run without the in-process license proxy (no entitlement, no tenant keys, no usage ledger).
    #[arg(long, env = "CHORUS_NO_LICENSE_PROXY")]
    pub no_license_proxy: bool,
    /// The license proxy inside `chorus serve` (its /license, /audit and /healthz are on the metrics port).
    #[command(flatten)]
    pub license: LicenseArgs,
}

/// The settings of `chorus serve`: defaults, the config file, the environment and the flags.
pub fn settings(args: &ServeArgs) -> Result<settings::file::FileSettings> {
    let mut layers = args
        .api
        .over(Layers::file(args.config.config.as_deref())?)?
        .flags(&args.engine)?
        .flags(&args.models)?
        .flags(&args.license.data)?
        .flags(&args.license)?;
    if let Some(addr) = args.metrics_listen {
        layers = layers.set(None, "metrics_listen", addr.to_string());
    }
    if args.license.air_gapped {
        layers = layers.set(Some("license"), "mode", "air-gapped");
    }
    if args.no_license_proxy {
        layers = layers.set(None, "license_proxy", false);
    }
    Ok(layers.resolve(&defaults(Role::Serve))?)
}

pub fn run(paths: &PathArgs, args: ServeArgs) -> Result<()> {
    let Some(s) = settings::load(&args.config, &settings(&args)?, ServeSettings::resolve)? else {
        return Ok(());
    };
    let api_serve = s.server.port("api")?;
    let internal_serve = s.server.port("internal")?;
    let ws = s.server.ws.clone();
    if !s.metrics_listen.ip().is_loopback() {
        if s.license.is_some() && !s.api.allow_open {
            anyhow::bail!(
                "refusing to put the metrics port on {} (not loopback): besides /metrics it serves the license \
                 proxy's POST /license and GET /audit; keep it on loopback, or give --allow-open",
                s.metrics_listen
            );
        }
        metrics::warn_public_metrics(s.metrics_listen);
    }
    let handle = metrics::install_metrics()?;
    metrics::register_worker_metrics();
    let runtime = process::runtime()?;
    // The API state starts tasks (following the workers' announcements) on this runtime.
    let _in_runtime = runtime.enter();
    let worker = engine::engine_worker(paths, &s.engine, "local-0".into(), None)?;
    let bus =
        LocalBus::new(LocalBusConfig { max_queue: s.api.max_queue, queue_timeout: s.api.queue_timeout });
    bus.register(Arc::clone(&worker) as Arc<dyn chorus_bus::Worker>);
    metrics::register_api_metrics();
    let state = state::api_state(&s.api, Arc::new(bus.clone()), false)?;
    let store = Some(chorus_artifacts::DEFAULT_LOCAL_STORE);
    let mut state = state::with_artifacts(state, &s.api.artifacts, store)?;

    runtime.block_on(async move {
        let proxy = match s.license.clone() {
            None => None,
            Some(config) => {
                let proxy = chorus_license::LicenseProxy::start(config)
                    .context("cannot start the license proxy (--license-data, or --no-license-proxy)")?;
                let link = chorus_bus::LocalLicenseLink::new(Arc::clone(&proxy) as _);
                state = state.with_license(state::license_gate(&s.api, Arc::new(link)));
                Some(proxy)
            }
        };
        let gate = Arc::clone(&state.license);
        let api = tokio::net::TcpListener::bind(s.api.listen)
            .await
            .with_context(|| format!("cannot listen on {}", s.api.listen))?;
        let tls = state::tls_acceptor(&s.api)?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        state::start_artifacts(&state, &s.api.artifacts, stop_rx.clone()).await?;
        crate::models::spawn_watcher(&s.api.artifacts, &s.models, store, &worker, DRAIN, stop_rx.clone())?;
        let refresh = {
            let (worker, bus, gate) = (Arc::clone(&worker), bus.clone(), Arc::clone(&gate));
            Arc::new(move || {
                metrics::record_worker(&worker);
                metrics::record_usage(&gate);
                let queued = bus.queued() as u64;
                let loads: Vec<ModelLoad> = bus
                    .models()
                    .into_iter()
                    .map(|m| ModelLoad { model: m.id, queued, unserviceable: 0 })
                    .collect();
                metrics::record_api(&loads);
            })
        };
        let ready = {
            let bus = bus.clone();
            Arc::new(move || bus.workers().iter().any(|w| !w.draining && w.capacity > 0))
        };
        let mut internal = metrics::internal_router(handle, refresh, ready);
        if let Some(proxy) = &proxy {
            // /license, /audit and /healthz beside /metrics and /ready (the proxy's port, 8080, in a cluster).
            internal = internal.merge(chorus_license::http::router(Arc::clone(proxy), None));
        }
        metrics::serve_internal(s.metrics_listen, internal, internal_serve, stop_rx.clone()).await?;
        tracing::info!(api = %s.api.listen, metrics = %s.metrics_listen, "Chorus is serving.");
        eprintln!(
            "chorus serve: API on {scheme}://{} , metrics on http://{}/metrics",
            s.api.listen, s.metrics_listen
        );

        let api = chorus_api::app::RunningApi::start(api, state, api_serve, ws, tls, stop_rx);
        process::shutdown_signal().await;
        tracing::info!("Shutting down: draining streams.");
        api.shut_down(&stop_tx, process::drain(&worker, DRAIN)).await;
        process::flush_usage(&gate, process::USAGE_FLUSH).await;
        Ok::<(), anyhow::Error>(())
    })
}
