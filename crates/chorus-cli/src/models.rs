//! Voice models hot-added from the artifact store (`chorus serve`, `chorus worker`): the flags and the watcher's
//! start. The watcher itself is `chorus_engine::model_store`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use chorus_engine::EngineWorker;
use chorus_engine::model_store::{ModelStoreConfig, ModelWatcher};
use object_store::ObjectStore;

use crate::common::ConfigFile;

/// Where `chorus serve` keeps its artifacts unless told otherwise.
pub const SERVE_DEFAULT_ARTIFACTS: &str = "./data/artifacts";

/// Default seconds between two listings of the store's `models/`.
const DEFAULT_POLL_SECONDS: f64 = 2.0;

/// Artifact store flags of the roles that run models.
#[derive(Debug, Clone, clap::Args)]
pub struct ModelStoreArgs {
    /// The artifact store: a directory (created if missing). Voice models dropped in its `models/<model-id>/`
    /// are loaded and served without a restart; removing the directory drains and unloads them.
    /// Default: ./data/artifacts for `serve`, none for `worker`.
    #[arg(long, env = "CHORUS_ARTIFACTS")]
    pub artifacts: Option<PathBuf>,
    /// Seconds between two listings of the store's `models/` (default 2).
    #[arg(long, env = "CHORUS_MODELS_POLL_SECONDS")]
    pub models_poll_seconds: Option<f64>,
    /// Where models of a bucket store are downloaded to (default: a `chorus-models` directory in the system's
    /// temporary directory). A directory store's files are used in place.
    #[arg(long, env = "CHORUS_MODELS_CACHE")]
    pub models_cache: Option<PathBuf>,
    /// Watch the store for changes (true), or only load the models present at start (false).
    #[arg(long, env = "CHORUS_ENABLE_HOT_RELOAD")]
    pub enable_hot_reload: Option<bool>,
}

/// INTEGRATION POINT (issue 8): the artifact store's constructor. `chorus-artifacts` replaces this with its URL
/// constructor (a directory, `s3://`, `gs://`). Returns the store and, for a directory, its root on this machine
/// (model files are then used in place instead of downloaded).
fn open_store(dir: &Path) -> Result<(Arc<dyn ObjectStore>, Option<PathBuf>)> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the artifact store {}", dir.display()))?;
    let store = object_store::local::LocalFileSystem::new_with_prefix(dir)
        .with_context(|| format!("cannot open the artifact store {}", dir.display()))?;
    let root = std::fs::canonicalize(dir).with_context(|| format!("cannot resolve {}", dir.display()))?;
    Ok((Arc::new(store), Some(root)))
}

/// Starts watching the store's models for `worker`, if a store is configured (`default_store` applies when no
/// flag, variable or config names one). Stops when `stop` changes.
pub fn spawn_watcher(
    args: &ModelStoreArgs,
    file: &ConfigFile,
    default_store: Option<&Path>,
    worker: &Arc<EngineWorker>,
    drain_timeout: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<()> {
    let Some(dir) = args.artifacts.as_deref().or(default_store) else {
        return Ok(());
    };
    let seconds = args.models_poll_seconds.or(file.models_poll_seconds).unwrap_or(DEFAULT_POLL_SECONDS);
    if !(seconds.is_finite() && seconds > 0.0) {
        anyhow::bail!("--models-poll-seconds must be a positive number of seconds, not {seconds}");
    }
    let (store, local_root) = open_store(dir)?;
    let config = ModelStoreConfig {
        interval: Duration::from_secs_f64(seconds),
        hot_reload: args.enable_hot_reload.or(file.enable_hot_reload).unwrap_or(true),
        local_root,
        cache_dir: args.models_cache.clone().unwrap_or_else(|| std::env::temp_dir().join("chorus-models")),
        drain_timeout,
    };
    let watcher = ModelWatcher::new(store, Arc::clone(worker), config);
    tokio::spawn(watcher.run(async move {
        let _ = stop.changed().await;
    }));
    Ok(())
}
