//! The engine as a bus worker, and the voice models it hot-adds from an artifact store.
//!
//! ```text
//! bus (NATS or in-process) -> EngineWorker (a thread per job) -> chorus_engine::Engine (model threads)
//! artifact store (directory or bucket) -> model_store::ModelWatcher -> EngineWorker::add_model / retire_model
//! ```
//!
//! The transport and the store clients (async-nats, object_store, Tokio) are linked here, so that the model
//! runtime crate (`chorus-engine`) knows no transport.

pub mod model_store;
mod worker;

pub use worker::{EngineWorker, MAX_EVENT_SAMPLES, MAX_TOTAL_BREAK_SECONDS, WorkerConfig, WorkerCounters};
