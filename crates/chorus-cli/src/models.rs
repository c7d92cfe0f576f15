//! Voice models hot-added from the artifact store (`chorus serve`, `chorus worker`): the flags and the watcher's
//! start. The watcher itself is `chorus_worker::model_store`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use chorus_worker::EngineWorker;
use chorus_worker::model_store::{ModelStoreConfig, ModelWatcher};
use object_store::ObjectStore;

use crate::common::{ArtifactArgs, ConfigFile};

/// Default seconds between two listings of the store's `models/`.
const DEFAULT_POLL_SECONDS: f64 = 2.0;

/// Voice-model flags of the roles that run models (the store itself is `--artifacts`, [`ArtifactArgs`]).
#[derive(Debug, Clone, clap::Args)]
pub struct ModelStoreArgs {
    /// Seconds between two listings of the artifact store's `models/`: voice models dropped in
    /// `models/<model-id>/` are loaded and served without a restart; removing the directory drains and unloads
    /// them (default: `--reload-interval` if given, else 2).
    #[arg(long, env = "CHORUS_MODELS_POLL_SECONDS")]
    pub models_poll_seconds: Option<f64>,
    /// Where models of a bucket store are downloaded to (default: a `chorus-models` directory in the system's
    /// temporary directory). A directory store's files are used in place.
    #[arg(long, env = "CHORUS_MODELS_CACHE")]
    pub models_cache: Option<PathBuf>,
    /// Serve only the store's models whose id matches one of these patterns, comma-separated (`*` matches any
    /// run of characters; default: every model in the store).
    #[arg(long, env = "CHORUS_STORE_MODELS", value_delimiter = ',')]
    pub store_models: Vec<String>,
}

/// Opens the artifact store for the model watcher: the store rooted at its prefix and, for a directory, its root
/// on this machine (model files are then used in place instead of downloaded).
fn open_store(location: &str) -> Result<(Arc<dyn ObjectStore>, Option<PathBuf>)> {
    let opened = chorus_artifacts::open(location).context("cannot open the artifact store")?;
    let store: Arc<dyn ObjectStore> = if opened.prefix.as_ref().is_empty() {
        opened.store
    } else {
        Arc::new(object_store::prefix::PrefixStore::new(opened.store, opened.prefix))
    };
    let root = match opened.local_dir {
        Some(dir) => {
            Some(std::fs::canonicalize(&dir).with_context(|| format!("cannot resolve {}", dir.display()))?)
        }
        None => None,
    };
    Ok((store, root))
}

/// Starts watching the store's models for `worker`, if a store is configured (`default_store` applies when no
/// flag, variable or config names one). Stops when `stop` changes.
pub fn spawn_watcher(
    store: &ArtifactArgs,
    args: &ModelStoreArgs,
    file: &ConfigFile,
    default_store: Option<&str>,
    worker: &Arc<EngineWorker>,
    drain_timeout: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<()> {
    let Some(location) = store.location(file, default_store) else {
        return Ok(());
    };
    let seconds = args
        .models_poll_seconds
        .or(file.models_poll_seconds)
        .or(store.reload_interval)
        .or(file.reload_interval_seconds)
        .unwrap_or(DEFAULT_POLL_SECONDS);
    if !(seconds.is_finite() && seconds > 0.0) {
        anyhow::bail!("--models-poll-seconds must be a positive number of seconds, not {seconds}");
    }
    let (object_store, local_root) = open_store(&location)?;
    let config = ModelStoreConfig {
        interval: Duration::from_secs_f64(seconds),
        hot_reload: store.hot_reload(file),
        local_root,
        cache_dir: args.models_cache.clone().unwrap_or_else(|| std::env::temp_dir().join("chorus-models")),
        drain_timeout,
        only: args.store_models.iter().map(|p| p.trim().to_owned()).filter(|p| !p.is_empty()).collect(),
    };
    let watcher = ModelWatcher::new(object_store, Arc::clone(worker), config);
    tokio::spawn(watcher.run(async move {
        let _ = stop.changed().await;
    }));
    Ok(())
}
