//! The engine, loaded from its settings and wrapped as a worker (`serve`, `worker`).

use std::sync::Arc;

use anyhow::{Context, Result};
use chorus_engine::Engine;
use chorus_worker::{EngineWorker, WorkerConfig};

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
    config.max_batch = settings.max_batch.unwrap_or(device.default_max_batch()).clamp(1, 256);
    let gpu = device.is_gpu();
    config.opening_lane = settings.opening_lane.unwrap_or(gpu);
    // A GPU runs batches: two sessions overlap one's host-side work with the other's pass, and an opening lane is
    // a third.
    let lane = config.opening_lane && config.max_batch > 1;
    let sessions = if gpu { 2 + usize::from(lane) } else { cores };
    config.sessions_per_voice = settings.sessions_per_voice.unwrap_or(sessions).max(1);
    config.intra_threads = settings.intra_threads;
    config.device = device;
    config.shape_buckets = settings.shape_buckets(gpu, config.max_batch)?;
    config.session_per_shape = settings.session_per_shape.unwrap_or(gpu);
    let solo_default = if device.is_gpu() || config.sessions_per_voice < 2 { 0 } else { cores };
    config.solo_threads = settings.solo_threads.unwrap_or(solo_default).min(256);
    tracing::info!(
        ?device,
        sessions = config.sessions_per_voice,
        solo_threads = config.solo_threads,
        max_batch = config.max_batch,
        opening_lane = config.opening_lane,
        shape_buckets = %config.shape_buckets.as_ref().map_or_else(|| "off".to_owned(), ToString::to_string),
        session_per_shape = config.session_per_shape,
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
