//! The engine, loaded from its settings and wrapped as a worker (`serve`, `worker`).

use std::sync::Arc;

use anyhow::{Context, Result};
use chorus_engine::{Engine, EngineWorker, WorkerConfig};

use crate::paths::PathArgs;
use crate::settings::roles::EngineSettings;

/// Loads the engine and wraps it as a worker.
pub fn engine_worker(
    paths: &PathArgs,
    settings: &EngineSettings,
    worker_id: String,
    only: Option<&str>,
) -> Result<Arc<EngineWorker>> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let mut config = paths.engine_config();
    let device = settings.device;
    // A GPU runs batches: two sessions overlap one's host-side work with the other's pass.
    let sessions = if device.is_gpu() { 2 } else { cores };
    config.sessions_per_voice = settings.sessions_per_voice.unwrap_or(sessions).max(1);
    config.intra_threads = settings.intra_threads;
    config.device = device;
    config.max_batch = settings.max_batch.unwrap_or(device.default_max_batch()).clamp(1, 256);
    let solo_default = if device.is_gpu() || config.sessions_per_voice < 2 { 0 } else { cores };
    config.solo_threads = settings.solo_threads.unwrap_or(solo_default).min(256);
    tracing::info!(
        ?device,
        sessions = config.sessions_per_voice,
        solo_threads = config.solo_threads,
        max_batch = config.max_batch,
        "Engine placement."
    );
    if let Some(model) = only {
        config.voices = vec![model.to_owned()];
    }
    let engine = Arc::new(Engine::load(&config).context("cannot load the engine")?);
    // Unless configured, the capacity is what this machine keeps gap-free, measured at warm-up under concurrent
    // load and lowered while serving when streams come close to running dry.
    let capacity = settings.capacity;
    match capacity {
        Some(c) => {
            tracing::info!(capacity = c, measured = engine.measured_capacity(), "Worker capacity (fixed).")
        }
        None => {
            tracing::info!(capacity = engine.measured_capacity(), "Worker capacity (measured, adaptive).")
        }
    }
    Ok(Arc::new(EngineWorker::new(engine, WorkerConfig { worker_id, capacity })))
}
