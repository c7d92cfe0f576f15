//! The API's state built from its settings: keys checked against the address, the license gate, the artifact
//! store, TLS.

use std::sync::Arc;

use anyhow::Result;
use chorus_api::{ApiKeys, AppState};
use chorus_bus::Bus;

use crate::settings::roles::{ApiSettings, ArtifactSettings};

/// Checks the keys against the listen address and builds the API state over `bus`. With `tenant_keys` (`chorus
/// api` following a license proxy on the bus), an API with no key of its own on a public address is allowed: it
/// takes tenant keys from the proxy and refuses every request while there is none (see [`license_gate`]).
pub fn api_state(api: &ApiSettings, bus: Arc<dyn Bus>, tenant_keys: bool) -> Result<AppState> {
    let keys = ApiKeys::new(api.api_keys.clone());
    if keys.is_open() && tenant_keys && !api.listen.ip().is_loopback() && !api.allow_open {
        tracing::info!(listen = %api.listen, "No static API key: requests need a tenant key from the license proxy.");
    } else if keys.is_open() {
        if !api.listen.ip().is_loopback() && !api.allow_open {
            anyhow::bail!(
                "refusing to serve without API keys on {} (not loopback): give --api-key, or --allow-open to run open",
                api.listen
            );
        }
        tracing::warn!(listen = %api.listen, "No API key configured: the API is OPEN to anyone who can reach it.");
        eprintln!("WARNING: no API key configured; the API on {} accepts every request.", api.listen);
    }
    Ok(AppState::new(bus, chorus_api::ApiConfig { api_keys: keys, ..api.config.clone() }))
}

/// The API's side of a license proxy reached through `link`: never open on a public address without keys.
pub fn license_gate(api: &ApiSettings, link: Arc<dyn chorus_bus::LicenseLink>) -> chorus_api::LicenseGate {
    let public_without_keys =
        api.api_keys.iter().all(|k| k.trim().is_empty()) && !api.listen.ip().is_loopback() && !api.allow_open;
    chorus_api::LicenseGate::with_proxy(link).require_keys(public_without_keys)
}

/// Starts TLS (inside the runtime) when configured: the certificate must load now.
pub fn tls_acceptor(api: &ApiSettings) -> Result<Option<chorus_api::tls::TlsAcceptor>> {
    let Some(settings) = api.tls.clone() else { return Ok(None) };
    let acceptor = chorus_api::tls::TlsAcceptor::start(settings.clone())
        .map_err(|e| anyhow::anyhow!("cannot serve TLS: {e}"))?;
    tracing::info!(cert = %settings.cert.display(), "TLS on the API port.");
    Ok(Some(acceptor))
}

/// Puts the API's voices and dictionaries in the configured artifact store. `default` is the location used
/// when none is configured (`serve`: ./data/artifacts); if that default cannot be created, the API keeps them in
/// memory (with a warning). A configured location that cannot be opened is an error.
pub fn with_artifacts(
    state: AppState,
    artifacts: &ArtifactSettings,
    default: Option<&str>,
) -> Result<AppState> {
    let configured = artifacts.location.clone();
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
    artifacts: &ArtifactSettings,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<()> {
    let (interval, hot) = (artifacts.interval, artifacts.hot_reload);
    if !state.artifacts.sync().await {
        tracing::warn!(store = %state.artifacts.store, "The artifact store could not be read fully at start.");
    }
    if !hot {
        tracing::info!("Hot reload is off: the artifact store is read at start only.");
    }
    chorus_api::persistence::spawn_reloader(std::sync::Arc::clone(&state.artifacts), interval, hot, stop);
    Ok(())
}
