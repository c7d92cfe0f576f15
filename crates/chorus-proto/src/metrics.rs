//! Every Prometheus metric name Chorus exports, in one place. The `inferno_*` and `api_*` names are the ones
//! autoscalers and dashboards of the system we reproduce key on (cartesia-spec 1.3); ours follow
//! `chorus_<subsystem>_<name>_<unit>[_total]`. Labels never carry text, voice ids or request ids.

/// Gauge: streams the worker accepts at once.
pub const WORKER_CAPACITY: &str = "inferno_worker_capacity";
/// Gauge: streams in flight on the worker.
pub const WORKER_LOAD: &str = "inferno_worker_load";
/// Histogram (seconds): time from a job's acceptance to its first audio.
pub const WORKER_TTFA: &str = "inferno_worker_ttfa";
/// Histogram: compute time over audio duration, per job.
pub const WORKER_RTF: &str = "inferno_worker_rtf";
/// Gauge, label `model`: requests waiting for a free slot.
pub const API_QUEUE_SIZE: &str = "api_queue_size";
/// Gauge, label `model`: requests waiting because no worker serves their model.
pub const API_UNSERVICEABLE: &str = "api_unserviceable_requests_size";
/// Counter, label `outcome` (completed, cancelled, failed): jobs finished by the worker.
pub const JOBS_TOTAL: &str = "chorus_worker_jobs_total";
/// Counter, labels `route` (the route's path template, `other` for unknown paths) and `status` (the HTTP status
/// code): every response of an API server.
pub const REQUESTS_TOTAL: &str = "chorus_requests_total";
/// Histogram (seconds), label `route` (bytes, sse, websocket, openai_speech): from a synthesis request's
/// admission on the API server to its first audio.
pub const API_TTFA: &str = "chorus_time_to_first_audio_seconds";
/// Histogram (seconds), label `route`: from a synthesis request's admission to its end (completed, failed or
/// cancelled).
pub const REQUEST_DURATION: &str = "chorus_request_duration_seconds";
/// Buckets of the request duration histogram, in seconds.
pub const DURATION_BUCKETS: [f64; 12] = [0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0];
/// Histogram: chunks per forward pass (1 on a CPU; up to the batch limit on a GPU).
pub const ENGINE_BATCH_SIZE: &str = "chorus_engine_batch_size";
/// Buckets for [`ENGINE_BATCH_SIZE`].
pub const BATCH_BUCKETS: [f64; 8] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0];
/// Counter: forward passes stopped to run a chunk that was due (their chunk is queued again).
pub const ENGINE_PREEMPTIONS_TOTAL: &str = "chorus_engine_preemptions_total";
/// Counter: chunks whose audio was ready after their stream's listener had played everything sent before
/// (a gap the caller hears), as the worker sees it (streams that had audio buffered only).
pub const STREAM_UNDERRUNS_TOTAL: &str = "chorus_stream_underruns_total";
/// Counter: times a worker lowered its declared capacity because a stream came close to running dry.
pub const CAPACITY_DECREASES_TOTAL: &str = "chorus_worker_capacity_decreases_total";
/// Histogram (seconds): how long before its listener needed it a chunk's audio was ready (negative: an underrun),
/// for streams that had audio buffered.
pub const STREAM_MARGIN: &str = "chorus_stream_margin_seconds";
/// Buckets of the stream margin histogram, in seconds.
pub const MARGIN_BUCKETS: [f64; 10] = [-1.0, -0.1, 0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0];
/// Counter: seconds of audio produced.
pub const AUDIO_SECONDS_TOTAL: &str = "chorus_audio_seconds_total";
/// Counter: characters of text synthesized.
pub const CHARACTERS_TOTAL: &str = "chorus_characters_total";
/// Counter, labels `kind` (voice, dict, migration on API servers; model on workers) and `result` (loaded, removed,
/// invalid, error, applied; a model is `loaded` or replaced, rejected with `error`, or drained and unloaded,
/// `removed`): what the artifact store's reloads did.
pub const ARTIFACTS_RELOAD_TOTAL: &str = "chorus_artifacts_reload_total";
/// Gauge, label `kind` (voice, dict): documents from the artifact store loaded on this API server.
pub const ARTIFACTS_LOADED: &str = "chorus_artifacts_loaded";
/// Gauge (seconds since the epoch): when this API server last listed the artifact store successfully.
pub const ARTIFACTS_LAST_SYNC: &str = "chorus_artifacts_last_sync_timestamp_seconds";

/// Gauge: voice models a worker serves (announced in its heartbeat), the bundled ones and those hot-added from the
/// artifact store.
pub const ARTIFACTS_MODELS_LOADED: &str = "chorus_artifacts_models_loaded";

/// Gauge: days until the active license expires (negative once expired; absent without a license).
pub const LICENSE_DAYS_TO_EXPIRY: &str = "chorus_license_days_to_expiry";
/// Gauge, label `mode` (open, connected, air-gapped): 1 for the proxy's mode.
pub const LICENSE_MODE: &str = "chorus_license_mode";
/// Gauge: 0 serving, 1 in grace, 2 refusing new requests.
pub const LICENSE_GRACE_STATE: &str = "chorus_license_grace_state";
/// Counter, label `model`: usage records written to the ledger.
pub const LICENSE_USAGE_RECORDS_TOTAL: &str = "chorus_license_usage_records_total";
/// Counter, label `model`: characters accounted in the ledger.
pub const LICENSE_USAGE_CHARACTERS_TOTAL: &str = "chorus_license_usage_characters_total";
/// Counter, label `model`: seconds of audio accounted in the ledger.
pub const LICENSE_USAGE_AUDIO_SECONDS_TOTAL: &str = "chorus_license_usage_audio_seconds_total";
/// Counter: usage records received again (already in the ledger) and not stored twice.
pub const LICENSE_USAGE_DUPLICATES_TOTAL: &str = "chorus_license_usage_duplicates_total";
/// Gauge (API server): usage records waiting for the proxy's acknowledgement.
pub const LICENSE_USAGE_PENDING: &str = "chorus_license_usage_pending";
/// Counter (API server): usage records dropped because the queue toward the proxy was full.
pub const LICENSE_USAGE_DROPPED_TOTAL: &str = "chorus_license_usage_dropped_total";

/// Buckets of the TTFA histogram, in seconds.
pub const TTFA_BUCKETS: [f64; 12] = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0];
/// Buckets of the RTF histogram.
pub const RTF_BUCKETS: [f64; 10] = [0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0];

/// Gauge, label `server` (api, internal, license): connections open on a listening port (WebSockets included).
pub const CONNECTIONS_OPEN: &str = "chorus_connections_open";
/// Counter, labels `server` and `reason` (`per_ip`, `total`): connections refused at accept because a limit was
/// reached.
pub const CONNECTIONS_REFUSED_TOTAL: &str = "chorus_connections_refused_total";
/// Counter, labels `server` and `kind` (`header`, `body`, `idle`, `write_stall`): connections closed by a timeout.
pub const CONNECTION_TIMEOUTS_TOTAL: &str = "chorus_connection_timeouts_total";
/// Counter, label `reason` (`idle`, `revoked`, `limit`): WebSocket contexts ended by the server for a reason of
/// its own (not an input error).
pub const WS_CONTEXTS_CLOSED_TOTAL: &str = "chorus_websocket_contexts_closed_total";

/// A metric's type (its `# TYPE` line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Every metric a process describes (`# HELP`): its name, its type, whether it is in seconds, and its help.
pub const DESCRIPTIONS: [(&str, Kind, bool, &str); 33] = [
    (WORKER_CAPACITY, Kind::Gauge, false, "Streams the worker accepts at once."),
    (WORKER_LOAD, Kind::Gauge, false, "Streams in flight on the worker."),
    (WORKER_TTFA, Kind::Histogram, true, "Time from acceptance to first audio."),
    (WORKER_RTF, Kind::Histogram, false, "Compute time over audio duration, per job."),
    (ENGINE_BATCH_SIZE, Kind::Histogram, false, "Chunks per forward pass."),
    (
        STREAM_MARGIN,
        Kind::Histogram,
        true,
        "How long before its listener needed it a chunk's audio was ready (negative: a gap).",
    ),
    (
        STREAM_UNDERRUNS_TOTAL,
        Kind::Counter,
        false,
        "Chunks ready after their stream's listener ran dry (gaps the caller hears).",
    ),
    (
        CAPACITY_DECREASES_TOTAL,
        Kind::Counter,
        false,
        "Times the worker lowered its capacity because a stream came close to running dry.",
    ),
    (API_QUEUE_SIZE, Kind::Gauge, false, "Requests waiting for a free stream, per model."),
    (API_UNSERVICEABLE, Kind::Gauge, false, "Requests waiting because no worker serves their model."),
    (REQUESTS_TOTAL, Kind::Counter, false, "API responses, by route and HTTP status."),
    (
        API_TTFA,
        Kind::Histogram,
        true,
        "Synthesis requests: from admission on the API server to the first audio, by route.",
    ),
    (REQUEST_DURATION, Kind::Histogram, true, "Synthesis requests: from admission to the end, by route."),
    (JOBS_TOTAL, Kind::Counter, false, "Jobs finished by the worker, by outcome."),
    (CONNECTIONS_OPEN, Kind::Gauge, false, "Connections open on a listening port, by server."),
    (
        CONNECTIONS_REFUSED_TOTAL,
        Kind::Counter,
        false,
        "Connections refused at accept because a connection limit was reached, by server and reason.",
    ),
    (
        CONNECTION_TIMEOUTS_TOTAL,
        Kind::Counter,
        false,
        "Connections closed by a timeout (header, body, idle, write_stall), by server.",
    ),
    (
        WS_CONTEXTS_CLOSED_TOTAL,
        Kind::Counter,
        false,
        "WebSocket contexts ended by the server (idle, revoked), by reason.",
    ),
    (AUDIO_SECONDS_TOTAL, Kind::Counter, true, "Audio produced."),
    (CHARACTERS_TOTAL, Kind::Counter, false, "Characters synthesized."),
    (ARTIFACTS_RELOAD_TOTAL, Kind::Counter, false, "Artifact store reloads, by kind and result."),
    (ARTIFACTS_LOADED, Kind::Gauge, false, "Documents loaded from the artifact store, by kind."),
    (
        ARTIFACTS_LAST_SYNC,
        Kind::Gauge,
        true,
        "When the artifact store was last listed successfully (seconds since the epoch).",
    ),
    (ARTIFACTS_MODELS_LOADED, Kind::Gauge, false, "Voice models the worker serves (announces)."),
    (LICENSE_DAYS_TO_EXPIRY, Kind::Gauge, false, "Days until the active license expires."),
    (LICENSE_MODE, Kind::Gauge, false, "1 for the license proxy's mode."),
    (LICENSE_GRACE_STATE, Kind::Gauge, false, "0 serving, 1 in grace, 2 refusing new requests."),
    (LICENSE_USAGE_RECORDS_TOTAL, Kind::Counter, false, "Usage records written to the ledger."),
    (LICENSE_USAGE_CHARACTERS_TOTAL, Kind::Counter, false, "Characters accounted in the ledger."),
    (
        LICENSE_USAGE_AUDIO_SECONDS_TOTAL,
        Kind::Counter,
        true,
        "Audio accounted in the ledger (whole seconds per record, rounded).",
    ),
    (LICENSE_USAGE_DUPLICATES_TOTAL, Kind::Counter, false, "Usage records received twice, stored once."),
    (LICENSE_USAGE_PENDING, Kind::Gauge, false, "Usage records not yet acknowledged by the proxy."),
    (LICENSE_USAGE_DROPPED_TOTAL, Kind::Counter, false, "Usage records dropped: the queue was full."),
];
