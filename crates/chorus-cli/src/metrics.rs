//! The process's metrics: the Prometheus recorder with every metric described, the series registered before the
//! first request, the gauges read at scrape time, and the internal port (`/metrics`, `/ready`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::{Context, Result};
use chorus_bus::ModelLoad;
use chorus_proto::metrics as names;
use chorus_worker::EngineWorker;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// The histograms with their own buckets, and what each is called in an error.
const BUCKETS: [(&str, &[f64], &str); 6] = [
    (names::WORKER_TTFA, &names::TTFA_BUCKETS, "TTFA buckets"),
    (names::WORKER_RTF, &names::RTF_BUCKETS, "RTF buckets"),
    (names::API_TTFA, &names::TTFA_BUCKETS, "API TTFA buckets"),
    (names::REQUEST_DURATION, &names::DURATION_BUCKETS, "request duration buckets"),
    (names::ENGINE_BATCH_SIZE, &names::BATCH_BUCKETS, "batch size buckets"),
    (names::STREAM_MARGIN, &names::MARGIN_BUCKETS, "stream margin buckets"),
];

/// Installs the Prometheus recorder with the TTFA and RTF buckets and every metric described.
pub fn install_metrics() -> Result<PrometheusHandle> {
    let mut builder = PrometheusBuilder::new();
    for (name, buckets, what) in BUCKETS {
        builder = builder.set_buckets_for_metric(Matcher::Full(name.into()), buckets).context(what)?;
    }
    let handle = builder.install_recorder().context("cannot install the metrics recorder")?;
    for (name, kind, seconds, help) in names::DESCRIPTIONS {
        let unit = seconds.then_some(metrics::Unit::Seconds);
        metrics::with_recorder(|r| match kind {
            names::Kind::Counter => r.describe_counter(name.into(), unit, help.into()),
            names::Kind::Gauge => r.describe_gauge(name.into(), unit, help.into()),
            names::Kind::Histogram => r.describe_histogram(name.into(), unit, help.into()),
        });
    }
    Ok(handle)
}

/// Outcomes of `chorus_worker_jobs_total` (the engine's labels).
const JOB_OUTCOMES: [&str; 3] = ["completed", "cancelled", "failed"];
/// Routes of the API's synthesis histograms (the meters' `route` labels).
const SYNTHESIS_ROUTES: [&str; 4] = ["bytes", "sse", "websocket", "openai_speech"];

/// Registers every worker metric the runbook and the dashboards name, so that a fresh worker exports each series
/// (empty histograms, zero counters) before its first request: a new pool's panels show 0, not "no data".
pub fn register_worker_metrics() {
    metrics::gauge!(names::WORKER_CAPACITY).set(0.0);
    metrics::gauge!(names::WORKER_LOAD).set(0.0);
    // A histogram handle registers the series; the exporter renders it with zero counts until a sample arrives.
    for histogram in [names::WORKER_TTFA, names::WORKER_RTF, names::ENGINE_BATCH_SIZE, names::STREAM_MARGIN] {
        let _ = metrics::histogram!(histogram);
    }
    for outcome in JOB_OUTCOMES {
        metrics::counter!(names::JOBS_TOTAL, "outcome" => outcome).increment(0);
    }
    metrics::counter!(names::AUDIO_SECONDS_TOTAL).increment(0);
    metrics::counter!(names::CHARACTERS_TOTAL).increment(0);
    metrics::counter!(names::ENGINE_PREEMPTIONS_TOTAL).increment(0);
    metrics::counter!(names::STREAM_UNDERRUNS_TOTAL).increment(0);
    metrics::counter!(names::CAPACITY_DECREASES_TOTAL).increment(0);
}

/// Registers the API's synthesis histograms (TTFA, duration) for every route, so that a fresh API server exports
/// them before its first request. The queue gauges (`api_queue_size`, `api_unserviceable_requests_size`) appear per
/// model once a worker announces it or a request waits for it (`record_api`).
pub fn register_api_metrics() {
    for route in SYNTHESIS_ROUTES {
        let _ = metrics::histogram!(names::API_TTFA, "route" => route);
        let _ = metrics::histogram!(names::REQUEST_DURATION, "route" => route);
    }
}

/// Sets the worker gauges (read at scrape time).
pub fn record_worker(worker: &EngineWorker) {
    use chorus_bus::Worker;
    let s = worker.status();
    metrics::gauge!(names::WORKER_CAPACITY).set(if s.draining { 0.0 } else { f64::from(s.capacity) });
    metrics::gauge!(names::WORKER_LOAD).set(f64::from(s.load));
    metrics::gauge!(names::ARTIFACTS_MODELS_LOADED).set(s.models.len() as f64);
}

/// Sets the usage-queue metrics of an API server with a license proxy (read at scrape time).
pub fn record_usage(gate: &chorus_api::LicenseGate) {
    if let Some(reporter) = gate.reporter() {
        let c = reporter.counters();
        metrics::gauge!(names::LICENSE_USAGE_PENDING).set(c.pending.load(Ordering::Acquire) as f64);
        metrics::counter!(names::LICENSE_USAGE_DROPPED_TOTAL).absolute(c.dropped.load(Ordering::Acquire));
    }
}

/// Sets the API gauges (read at scrape time).
pub fn record_api(loads: &[ModelLoad]) {
    for l in loads {
        metrics::gauge!(names::API_QUEUE_SIZE, "model" => l.model.clone()).set(l.queued as f64);
        metrics::gauge!(names::API_UNSERVICEABLE, "model" => l.model.clone()).set(l.unserviceable as f64);
    }
}

/// `/metrics` (after `refresh`) and `/ready` (200 when `ready`) on the internal port.
pub fn internal_router(
    metrics: PrometheusHandle,
    refresh: Arc<dyn Fn() + Send + Sync>,
    ready: Arc<dyn Fn() -> bool + Send + Sync>,
) -> axum::Router {
    use axum::routing::get;
    axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let (metrics, refresh) = (metrics.clone(), Arc::clone(&refresh));
                async move {
                    refresh();
                    metrics.render()
                }
            }),
        )
        .route(
            "/ready",
            get(move || {
                let ready = Arc::clone(&ready);
                async move {
                    if ready() {
                        (axum::http::StatusCode::OK, "ready")
                    } else {
                        (axum::http::StatusCode::SERVICE_UNAVAILABLE, "not ready")
                    }
                }
            }),
        )
}

/// Serves the internal router until `stop` changes, with the connection policy `config`.
pub async fn serve_internal(
    addr: SocketAddr,
    router: axum::Router,
    config: chorus_api::serve::ServeConfig,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<()> {
    let listener =
        tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = stop.changed().await;
        };
        if let Err(e) = chorus_api::serve::serve(listener, router, config, shutdown).await {
            tracing::warn!(error = %e, "The internal port stopped.");
        }
    });
    Ok(())
}

/// Warns, loudly, when an internal port (`/metrics`, `/ready`) listens beyond loopback.
pub fn warn_public_metrics(addr: SocketAddr) {
    if !addr.ip().is_loopback() {
        tracing::warn!(metrics = %addr, "The internal port (/metrics, /ready) listens beyond loopback: keep it off public networks.");
        eprintln!(
            "WARNING: /metrics and /ready on {addr} are reachable beyond this host; keep that port internal (a \
             firewall, a cluster-internal Service)."
        );
    }
}
