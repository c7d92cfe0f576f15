//! Voice models hot-added from the artifact store (`chorus serve`, `chorus worker`): the flags and the watcher's
//! start. The watcher itself is `chorus_worker::model_store`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use chorus_worker::EngineWorker;
use chorus_worker::model_store::{ModelStoreConfig, ModelWatcher};
use object_store::ObjectStore;

use crate::settings::roles::{ArtifactSettings, ModelSettings};

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
    store: &ArtifactSettings,
    models: &ModelSettings,
    default_store: Option<&str>,
    worker: &Arc<EngineWorker>,
    drain_timeout: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<()> {
    let Some(location) = store.location.clone().or_else(|| default_store.map(str::to_owned)) else {
        return Ok(());
    };
    let (object_store, local_root) = open_store(&location)?;
    let config = ModelStoreConfig {
        interval: models.poll,
        hot_reload: store.hot_reload,
        local_root,
        cache_dir: models.cache.clone(),
        drain_timeout,
        only: models.only.clone(),
    };
    let watcher = ModelWatcher::new(object_store, Arc::clone(worker), config);
    tokio::spawn(watcher.run(async move {
        let _ = stop.changed().await;
    }));
    Ok(())
}
