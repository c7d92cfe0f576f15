//! `chorus api`: the API server alone, reaching workers over NATS.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use chorus_api::app::RunningApi;
use chorus_bus::{Bus, ModelInfo, NatsBus, NatsBusConfig};

use crate::paths::PathArgs;
use crate::settings::args::{ApiArgs, ConfigArgs};
use crate::settings::roles::{ApiRoleSettings, Role, defaults};
use crate::settings::{self, Layers};
use crate::{metrics, process, state};

#[derive(Debug, clap::Args)]
pub struct ApiRoleArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    /// NATS server URL (default nats://127.0.0.1:4222).
    #[arg(long = "nats", env = "CHORUS_NATS_URL")]
    pub nats: Option<String>,
    /// Address of /metrics and /ready (keep it internal; default 127.0.0.1:8080).
    #[arg(long, env = "CHORUS_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    #[command(flatten)]
    pub config: ConfigArgs,
    /// A license proxy (`chorus license-proxy`) is on the bus: apply its entitlement and tenant keys, and report
    /// usage to it. Without it the API runs as an open deployment (static --api-key keys only).
    #[arg(long, env = "CHORUS_LICENSE_PROXY")]
    pub license_proxy: bool,
}

/// The settings of `chorus api`: defaults, the config file, the environment and the flags.
pub fn settings(args: &ApiRoleArgs) -> Result<settings::file::FileSettings> {
    let mut layers = args.api.over(Layers::file(args.config.config.as_deref())?)?;
    if let Some(nats) = &args.nats {
        layers = layers.set(None, "nats", nats.as_str());
    }
    if let Some(addr) = args.metrics_listen {
        layers = layers.set(None, "metrics_listen", addr.to_string());
    }
    if args.license_proxy {
        layers = layers.set(None, "license_proxy", true);
    }
    Ok(layers.resolve(&defaults(Role::Api))?)
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
    let merged = settings(&args)?;
    let s = ApiRoleSettings::resolve(&merged)?;
    if settings::printed(&args.config, &merged)? {
        return Ok(());
    }
    let installed = installed_models(&paths.models_dir());
    let api_serve = s.server.port("api")?;
    let internal_serve = s.server.port("internal")?;
    let ws = s.server.ws.clone();
    metrics::warn_public_metrics(s.metrics_listen);
    let handle = metrics::install_metrics()?;
    metrics::register_api_metrics();
    let runtime = process::runtime()?;
    runtime.block_on(async move {
        let client = process::connect_nats(&s.nats, "chorus-api").await?;
        let config = NatsBusConfig {
            max_queue: s.api.max_queue,
            queue_timeout: s.api.queue_timeout,
            ..NatsBusConfig::default()
        };
        let bus =
            NatsBus::start(client.clone(), config).await.context("cannot follow the workers on NATS")?;
        let bus_dyn = Arc::new(bus.clone()) as Arc<dyn Bus>;
        let mut state = state::api_state(&s.api, bus_dyn, s.api.license_proxy)?;
        if s.api.license_proxy {
            let link = chorus_bus::NatsLicenseLink::start(client.clone())
                .await
                .context("cannot follow the license proxy on NATS")?;
            state = state.with_license(state::license_gate(&s.api, Arc::new(link)));
            tracing::info!("Following the license proxy on the bus.");
        }
        let state = state::with_artifacts(state, &s.api.artifacts, None)?;
        // Installed voices are known before any worker of theirs joins (a fresh API, a pool scaled to zero):
        // their requests wait as unserviceable, which wakes the pool, instead of failing as unknown voices.
        state.voices.pin_builtin(&installed);
        let listener = tokio::net::TcpListener::bind(s.api.listen)
            .await
            .with_context(|| format!("cannot listen on {}", s.api.listen))?;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        state::start_artifacts(&state, &s.api.artifacts, stop_rx.clone()).await?;
        let refresh = {
            let (bus, gate) = (bus.clone(), Arc::clone(&state.license));
            Arc::new(move || {
                metrics::record_api(&bus.model_loads());
                metrics::record_usage(&gate);
            })
        };
        // The API is ready as soon as it listens: requests for models no worker serves yet wait (unserviceable).
        let ready = Arc::new(|| true);
        metrics::serve_internal(
            s.metrics_listen,
            metrics::internal_router(handle, refresh, ready),
            internal_serve,
            stop_rx.clone(),
        )
        .await?;
        tracing::info!(api = %s.api.listen, nats = %s.nats, "Chorus API is serving.");
        let gate = Arc::clone(&state.license);
        let tls = state::tls_acceptor(&s.api)?;
        let api = RunningApi::start(listener, state, api_serve, ws, tls, stop_rx);
        process::shutdown_signal().await;
        tracing::info!("Shutting down the API.");
        api.shut_down(&stop_tx, async {}).await;
        process::flush_usage(&gate, process::USAGE_FLUSH).await;
        Ok(())
    })
}
