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
    #[command(flatten)]
    pub license: ServeLicenseArgs,
}

/// The license proxy inside `chorus serve` (its /license, /audit and /healthz are on the metrics port).
#[derive(Debug, clap::Args)]
pub struct ServeLicenseArgs {
    /// Run without the in-process license proxy (no entitlement, no tenant keys, no usage ledger).
    #[arg(long, env = "CHORUS_NO_LICENSE_PROXY")]
    pub no_license_proxy: bool,
    /// The license proxy's data directory: licenses, tenant keys, the usage ledger (default:
    /// $XDG_DATA_HOME/chorus/license, or ~/.local/share/chorus/license). One process at a time.
    #[arg(long, env = "CHORUS_LICENSE_DATA")]
    pub license_data: Option<PathBuf>,
    /// open (default), connected or air-gapped.
    #[arg(long, env = "CHORUS_LICENSE_MODE")]
    pub license_mode: Option<String>,
    /// Grace period of an expired or missing license, e.g. 7d.
    #[arg(long, env = "CHORUS_LICENSE_GRACE")]
    pub license_grace: Option<String>,
    /// A base64 Ed25519 public key trusted to sign licenses; repeat for several.
    #[arg(long = "trust-key", env = "CHORUS_LICENSE_TRUSTED_KEYS", value_delimiter = ',')]
    pub trust_keys: Vec<String>,
    /// A license file used only when none is stored yet.
    #[arg(long, env = "CHORUS_SEED_LICENSE")]
    pub seed_license: Option<PathBuf>,
    /// A key allowed to download GET /audit.
    #[arg(long = "admin-key", env = "CHORUS_ADMIN_KEYS", value_delimiter = ',', hide_env_values = true)]
    pub admin_keys: Vec<crate::license::Secret>,
}

pub fn run(paths: &PathArgs, args: ServeArgs) -> Result<()> {
    let file = ConfigFile::load(args.config.as_deref())?;
    let api_serve = args.api.conn.serve_config(&file, "api")?;
    let internal_serve = args.api.conn.serve_config(&file, "internal")?;
    let ws = args.api.ws.ws_config(&file)?;
    if !args.metrics_listen.ip().is_loopback() {
        if !args.license.no_license_proxy && !args.api.allow_open {
            anyhow::bail!(
                "refusing to put the metrics port on {} (not loopback): besides /metrics it serves the license \
                 proxy's POST /license and GET /audit; keep it on loopback, or give --allow-open",
                args.metrics_listen
            );
        }
        common::warn_public_metrics(args.metrics_listen);
    }
    let metrics = common::install_metrics()?;
    common::register_worker_metrics();
    let runtime = common::runtime()?;
    let worker = common::engine_worker(paths, &args.engine, &file, "local-0".into(), None)?;
    let bus = LocalBus::new(LocalBusConfig {
        max_queue: file.max_queue.unwrap_or(256),
        queue_timeout: Duration::from_secs(file.queue_timeout_seconds.unwrap_or(30)),
    });
    bus.register(Arc::clone(&worker) as Arc<dyn chorus_bus::Worker>);
    common::register_api_metrics();
    let state = common::api_state(&args.api, &file, Arc::new(bus.clone()))?;
    let mut state = common::with_artifacts(
        state,
        &args.api.artifacts,
        &file,
        Some(chorus_artifacts::DEFAULT_LOCAL_STORE),
    )?;
    let proxy_config = if args.license.no_license_proxy {
        None
    } else {
        let l = &args.license;
        let opts = crate::license::ProxyOptions {
            data_dir: l.license_data.clone().unwrap_or_else(crate::license::default_data_dir),
            mode: l.license_mode.clone(),
            air_gapped: false,
            grace: l.license_grace.clone(),
            trust_keys: l.trust_keys.clone(),
            seed_license: l.seed_license.clone(),
            admin_keys: l.admin_keys.iter().map(|k| k.0.clone()).collect(),
            upstream: None,
            upstream_token: None,
            refresh: None,
        };
        Some(crate::license::proxy_config(opts, &file)?)
    };

    runtime.block_on(async move {
        let proxy = match proxy_config {
            None => None,
            Some(config) => {
                let proxy = chorus_license::LicenseProxy::start(config)
                    .context("cannot start the license proxy (--license-data, or --no-license-proxy)")?;
                let link = chorus_bus::LocalLicenseLink::new(Arc::clone(&proxy) as _);
                state = state.with_license(common::license_gate(&args.api, Arc::new(link)));
                Some(proxy)
            }
        };
        let gate = Arc::clone(&state.license);
        let api = tokio::net::TcpListener::bind(args.api.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.api.listen))?;
        let tls = args.api.web.tls_acceptor(&file)?;
        let scheme = if tls.is_some() { "https" } else { "http" };
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
            let (worker, bus, gate) = (Arc::clone(&worker), bus.clone(), Arc::clone(&gate));
            Arc::new(move || {
                common::record_worker(&worker);
                common::record_usage(&gate);
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
        let mut internal = common::internal_router(metrics, refresh, ready);
        if let Some(proxy) = &proxy {
            // /license, /audit and /healthz beside /metrics and /ready (the proxy's port, 8080, in a cluster).
            internal = internal.merge(chorus_license::http::router(Arc::clone(proxy), None));
        }
        common::serve_internal(args.metrics_listen, internal, internal_serve, stop_rx.clone()).await?;
        tracing::info!(api = %args.api.listen, metrics = %args.metrics_listen, "Chorus is serving.");
        eprintln!(
            "chorus serve: API on {scheme}://{} , metrics on http://{}/metrics",
            args.api.listen, args.metrics_listen
        );

        let ws_wait = crate::api::ws_shutdown_wait(&ws);
        let (server, ws_shutdown) = crate::api::spawn_api(api, state, api_serve, ws, tls, stop_rx);
        common::shutdown_signal().await;
        tracing::info!("Shutting down: draining streams.");
        let deadline = tokio::time::Instant::now() + ws_wait;
        ws_shutdown.trigger();
        let _ = stop_tx.send(true);
        common::drain(&worker, Duration::from_secs(30)).await;
        let _ = tokio::time::timeout_at(deadline, server).await;
        let _ = tokio::time::timeout_at(deadline, ws_shutdown.wait_closed()).await;
        common::flush_usage(&gate, crate::license::USAGE_FLUSH).await;
        Ok::<(), anyhow::Error>(())
    })
}
