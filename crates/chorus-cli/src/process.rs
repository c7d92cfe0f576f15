//! The serving process: its async runtime, NATS, shutdown signals and drains.

use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, Result};
use chorus_worker::EngineWorker;

/// Waits for SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// Waits (bounded) until the worker has no stream in flight.
pub async fn drain(worker: &EngineWorker, grace: Duration) {
    worker.drain();
    let deadline = tokio::time::Instant::now() + grace;
    while worker.counters().load.load(Ordering::Acquire) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Connects to NATS, retrying until it answers; the client reconnects by itself afterwards.
pub async fn connect_nats(url: &str, name: &str) -> Result<async_nats::Client> {
    async_nats::ConnectOptions::new()
        .name(name)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(2))
        .event_callback(|event| async move {
            tracing::info!(%event, "NATS connection event.");
        })
        .connect(url)
        .await
        .with_context(|| format!("cannot connect to NATS at {url}"))
}

/// A tokio runtime for the serving roles (model work stays on its own threads).
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("chorus-io")
        .build()
        .context("cannot start the async runtime")
}

/// Waits (bounded) until the usage records queued toward the license proxy are acknowledged.
pub async fn flush_usage(gate: &chorus_api::LicenseGate, limit: Duration) {
    let Some(reporter) = gate.reporter() else { return };
    let deadline = tokio::time::Instant::now() + limit;
    while reporter.counters().pending.load(Ordering::Acquire) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How long a role waits for usage records to be acknowledged at shutdown.
pub const USAGE_FLUSH: Duration = Duration::from_secs(5);
