//! Every metric the runbook and the dashboards name is exported from the start (issue 15): a fresh worker, before
//! its first request, already exports `inferno_worker_ttfa` and `inferno_worker_rtf` (empty histograms), the job,
//! audio and character counters at 0, and its gauges; a fresh API server its TTFA and duration histograms for every
//! synthesis route. After one request the same series count it (the registered series are the ones recorded).
//! Real processes: `nats-server`, `chorus worker`, `chorus api` on loopback ports.
#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed
#![allow(clippy::print_stderr)] // the cluster support prints the logs of a failed test

mod cluster_support;

use cluster_support::{Cluster, WorkerOpts, serial, tts_bytes};

const WORKER_HISTOGRAMS: [&str; 3] =
    ["inferno_worker_ttfa", "inferno_worker_rtf", "chorus_stream_margin_seconds"];
const ROUTES: [&str; 4] = ["bytes", "sse", "websocket", "openai_speech"];

#[test]
fn a_fresh_worker_and_api_export_every_named_metric_before_the_first_request() {
    let _serial = serial();
    let mut c = Cluster::new();
    c.spawn_worker("fresh", WorkerOpts::with_capacity(2));
    c.start_api();
    c.wait_worker(0);
    c.wait_apis_see_workers();

    let w = c.workers[0].scrape();
    for name in WORKER_HISTOGRAMS {
        assert_eq!(w.kind(name), Some("histogram"), "{name} missing from a fresh worker");
        assert_eq!(w.histogram_count(name, &[]), Some(0.0), "{name}: no request yet");
    }
    assert_eq!(w.value("inferno_worker_capacity", &[]), Some(2.0));
    assert_eq!(w.value("inferno_worker_load", &[]), Some(0.0));
    for outcome in ["completed", "cancelled", "failed"] {
        assert_eq!(w.value("chorus_worker_jobs_total", &[("outcome", outcome)]), Some(0.0), "{outcome}");
    }
    for name in [
        "chorus_audio_seconds_total",
        "chorus_characters_total",
        "chorus_engine_preemptions_total",
        "chorus_stream_underruns_total",
        "chorus_worker_capacity_decreases_total",
    ] {
        assert_eq!(w.value(name, &[]), Some(0.0), "{name}");
    }
    let a = c.apis[0].scrape();
    for name in ["chorus_time_to_first_audio_seconds", "chorus_request_duration_seconds"] {
        for route in ROUTES {
            assert_eq!(a.histogram_count(name, &[("route", route)]), Some(0.0), "{name}{{route={route}}}");
        }
    }
    assert_eq!(a.value("api_queue_size", &[("model", cluster_support::MODEL)]), Some(0.0));
    assert_eq!(a.value("api_unserviceable_requests_size", &[("model", cluster_support::MODEL)]), Some(0.0));

    // One request: the very same series count it.
    let out = tts_bytes(c.apis[0].addr, "Metrics from the start.");
    out.assert_complete(0.5, "one request");
    let done = cluster_support::poll(std::time::Duration::from_secs(10), || {
        let w = c.workers[0].scrape();
        (w.value("chorus_worker_jobs_total", &[("outcome", "completed")]) == Some(1.0)).then_some(w)
    })
    .expect("the job is counted");
    for name in WORKER_HISTOGRAMS {
        assert_eq!(done.histogram_count(name, &[]), Some(1.0), "{name} after one request");
    }
    let a = c.apis[0].scrape();
    assert_eq!(a.histogram_count("chorus_request_duration_seconds", &[("route", "bytes")]), Some(1.0));
    assert_eq!(a.histogram_count("chorus_request_duration_seconds", &[("route", "sse")]), Some(0.0));
}
