//! Shared by the `http_*` tests: a deterministic sine worker on a [`LocalBus`], and request helpers that drive
//! `router(state).oneshot(req)`.
//!
//! Each test binary uses a different subset of these helpers.
#![allow(dead_code, clippy::unwrap_used)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Request, StatusCode, header};
use axum::response::Response;
use chorus_api::{ApiConfig, ApiKeys, AppState, router};
use chorus_bus::{LocalBus, LocalBusConfig, ModelInfo, Offer, Refusal, Worker, WorkerStatus, reserve_slot};
use chorus_proto::{
    AudioEvent, ErrorCode, JobError, JobEvent, PhonemeTimestamps, SynthesisJob, WordTimestamps,
};
use serde_json::Value;
use tower::ServiceExt as _;

/// The English test voice (22050 Hz) and the German one (16000 Hz).
pub const EN_VOICE: &str = "en_US-test-medium";
pub const DE_VOICE: &str = "de_DE-test-low";
pub const EN_RATE: u32 = 22_050;
pub const DE_RATE: u32 = 16_000;
/// Seconds of audio per sentence.
pub const SENTENCE_SECONDS: f64 = 0.25;
/// A key for the authenticated servers.
pub const KEY: &str = "sk-test-key";

/// Transcript markers that change the worker's behaviour.
pub const FAIL_EARLY: &str = "FAIL_EARLY";
pub const FAIL_LATE: &str = "FAIL_LATE";
pub const VANISH: &str = "VANISH";
pub const SLOW: &str = "SLOW";

/// What the worker saw.
#[derive(Debug, Default)]
pub struct Record {
    /// Every job accepted, in order.
    pub jobs: Mutex<Vec<SynthesisJob>>,
    /// Request ids of the jobs whose events channel was found closed (the client went away).
    pub closed: Mutex<Vec<String>>,
    /// Request ids of the jobs that finished by themselves.
    pub finished: Mutex<Vec<String>>,
}

impl Record {
    pub fn last_job(&self) -> SynthesisJob {
        self.jobs.lock().unwrap().last().cloned().expect("the worker got a job")
    }

    /// Waits up to `timeout` for the job `request_id` to see its channel closed.
    pub async fn wait_closed(&self, request_id: &str, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if self.closed.lock().unwrap().iter().any(|id| id == request_id) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }
}

/// A worker that speaks a 440 Hz sine for each sentence (split at `.`, `!`, `?`), with word timestamps spread
/// evenly over it and one "phoneme" per letter.
#[derive(Debug)]
pub struct SineWorker {
    pub record: Arc<Record>,
    load: Arc<AtomicU32>,
    capacity: u32,
}

impl SineWorker {
    pub fn new(capacity: u32) -> Self {
        Self { record: Arc::new(Record::default()), load: Arc::new(AtomicU32::new(0)), capacity }
    }
}

fn models() -> Vec<ModelInfo> {
    vec![
        ModelInfo { id: EN_VOICE.into(), language: "en".into(), sample_rate: EN_RATE },
        ModelInfo { id: DE_VOICE.into(), language: "de".into(), sample_rate: DE_RATE },
    ]
}

impl Worker for SineWorker {
    fn status(&self) -> WorkerStatus {
        WorkerStatus::serving("sine", models(), self.capacity, self.load.load(Ordering::SeqCst))
    }

    fn accept(&self, offer: Offer) -> Result<(), Refusal> {
        let Offer { job, events, slot, .. } = offer;
        let Some(model) = models().into_iter().find(|m| m.id == job.model) else {
            return Err(Refusal::UnknownModel(job.model));
        };
        reserve_slot(&self.load, self.capacity)?;
        self.record.jobs.lock().unwrap().push(job.clone());
        let record = Arc::clone(&self.record);
        let load = Arc::clone(&self.load);
        std::thread::spawn(move || {
            let id = job.request_id.clone();
            match run(&job, model.sample_rate, &events) {
                Ok(()) => record.finished.lock().unwrap().push(id),
                Err(Closed) => record.closed.lock().unwrap().push(id),
            }
            load.fetch_sub(1, Ordering::SeqCst);
            drop(slot);
        });
        Ok(())
    }
}

/// The events channel was closed.
struct Closed;

fn send(events: &tokio::sync::mpsc::Sender<JobEvent>, event: JobEvent) -> Result<(), Closed> {
    events.blocking_send(event).map_err(|_| Closed)
}

pub fn sine(rate: u32, seconds: f64) -> Vec<f32> {
    let n = (f64::from(rate) * seconds).round() as usize;
    (0..n)
        .map(|i| (0.5 * (2.0 * std::f64::consts::PI * 440.0 * i as f64 / f64::from(rate)).sin()) as f32)
        .collect()
}

/// The sentences the worker speaks for a transcript.
pub fn sentences(text: &str) -> Vec<String> {
    text.split_inclusive(['.', '!', '?'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn run(job: &SynthesisJob, rate: u32, events: &tokio::sync::mpsc::Sender<JobEvent>) -> Result<(), Closed> {
    let text = job.transcript.as_str();
    let audio = |seq: u64| {
        JobEvent::Audio(AudioEvent {
            seq,
            sample_rate: rate,
            samples: sine(rate, SENTENCE_SECONDS),
            step_time_ms: 5.0,
            flush_id: 1,
        })
    };
    if text.contains(FAIL_EARLY) {
        let error = JobError { code: ErrorCode::InferenceFailed, message: "the model failed".into() };
        return send(events, JobEvent::Error(error));
    }
    if text.contains(FAIL_LATE) {
        send(events, audio(0))?;
        let error = JobError { code: ErrorCode::InferenceFailed, message: "the model failed late".into() };
        return send(events, JobEvent::Error(error));
    }
    if text.contains(VANISH) {
        return send(events, audio(0));
    }
    if text.contains(SLOW) {
        for seq in 0..500 {
            send(events, audio(seq))?;
            std::thread::sleep(Duration::from_millis(10));
        }
        return send(events, JobEvent::Done);
    }
    let mut t = 0.0;
    for (seq, sentence) in sentences(text).iter().enumerate() {
        send(events, audio(seq as u64))?;
        let words: Vec<&str> = sentence.split_whitespace().collect();
        let step = SENTENCE_SECONDS / words.len().max(1) as f64;
        if job.word_timestamps {
            let ts = WordTimestamps {
                words: words.iter().map(|w| (*w).to_owned()).collect(),
                start: (0..words.len()).map(|i| t + i as f64 * step).collect(),
                end: (0..words.len()).map(|i| t + (i + 1) as f64 * step).collect(),
            };
            send(events, JobEvent::Words { flush_id: 1, words: ts })?;
        }
        if job.phoneme_timestamps {
            let letters: Vec<char> = sentence.chars().filter(|c| c.is_alphabetic()).collect();
            let pstep = SENTENCE_SECONDS / letters.len().max(1) as f64;
            let ts = PhonemeTimestamps {
                phonemes: letters.iter().map(|c| c.to_string()).collect(),
                start: (0..letters.len()).map(|i| t + i as f64 * pstep).collect(),
                end: (0..letters.len()).map(|i| t + (i + 1) as f64 * pstep).collect(),
            };
            send(events, JobEvent::Phonemes { flush_id: 1, phonemes: ts })?;
        }
        t += SENTENCE_SECONDS;
    }
    send(events, JobEvent::Done)
}

/// A test server: its state and the worker's record.
pub struct TestServer {
    pub state: AppState,
    pub record: Arc<Record>,
}

impl TestServer {
    /// An open server (no keys) with a worker of capacity 8.
    pub fn open() -> Self {
        Self::build(ApiConfig::default(), 8, LocalBusConfig::default())
    }

    /// A server that requires [`KEY`].
    pub fn with_key() -> Self {
        Self::build(
            ApiConfig { api_keys: ApiKeys::new(vec![KEY.into()]), ..ApiConfig::default() },
            8,
            LocalBusConfig::default(),
        )
    }

    pub fn build(config: ApiConfig, capacity: u32, bus_config: LocalBusConfig) -> Self {
        let bus = LocalBus::new(bus_config);
        let worker = SineWorker::new(capacity);
        let record = Arc::clone(&worker.record);
        bus.register(Arc::new(worker));
        Self { state: AppState::new(Arc::new(bus), config), record }
    }

    /// Sends one request through a fresh router.
    pub async fn call(&self, req: Request<Body>) -> Response {
        router(self.state.clone()).oneshot(req).await.unwrap()
    }

    /// Sends one request and reads the whole body.
    pub async fn fetch(&self, req: Request<Body>) -> Reply {
        let response = self.call(req).await;
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX).await;
        Reply { status, headers, body }
    }
}

/// A whole response.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// `Err` when the body stream failed.
    pub body: Result<Bytes, axum::Error>,
}

impl Reply {
    pub fn bytes(&self) -> &Bytes {
        self.body.as_ref().expect("the body completed")
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(self.bytes())
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(self.bytes())))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts a Cartesia error: status, `error_code`, the other fields, and the request id in body and header.
    pub fn assert_error(&self, status: u16, code: &str) -> Value {
        let body = self.json();
        assert_eq!(self.status.as_u16(), status, "body: {body}");
        assert_eq!(body["error_code"], code, "body: {body}");
        assert!(body["title"].as_str().is_some_and(|t| !t.is_empty()), "body: {body}");
        assert!(body["message"].as_str().is_some_and(|t| !t.is_empty()), "body: {body}");
        let request_id = body["request_id"].as_str().expect("request_id");
        assert!(!request_id.is_empty());
        assert_eq!(self.header("x-request-id"), Some(request_id));
        assert!(self.header("content-type").is_some_and(|c| c.starts_with("application/json")));
        body
    }

    /// Asserts an OpenAI-shaped error; returns its `error` object.
    pub fn assert_openai_error(&self, status: u16, param: Option<&str>) -> Value {
        let body = self.json();
        assert_eq!(self.status.as_u16(), status, "body: {body}");
        let error = body["error"].clone();
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()), "body: {body}");
        assert!(error["type"].is_string(), "body: {body}");
        assert!(error.get("code").is_some() && error.get("param").is_some(), "body: {body}");
        assert_eq!(error["param"].as_str(), param, "body: {body}");
        assert!(self.header("x-request-id").is_some());
        error
    }
}

/// `POST uri` with a JSON body.
pub fn post_json(uri: &str, body: &Value) -> Request<Body> {
    post_raw(uri, body.to_string())
}

/// `POST uri` with any body, as JSON.
pub fn post_raw(uri: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(uri).header(header::CONTENT_TYPE, "application/json").body(body.into()).unwrap()
}

/// A bodiless request.
pub fn request(method: &str, uri: &str) -> Request<Body> {
    Request::builder().method(method).uri(uri).body(Body::empty()).unwrap()
}

/// `PATCH uri` with a JSON body.
pub fn patch_json(uri: &str, body: &Value) -> Request<Body> {
    Request::patch(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

/// A `/tts/bytes` body for `transcript` with `output_format`.
pub fn tts_body(transcript: &str, output_format: Value) -> Value {
    serde_json::json!({
        "model_id": "sonic-3",
        "transcript": transcript,
        "voice": {"mode": "id", "id": EN_VOICE},
        "output_format": output_format,
    })
}

/// Output samples for `input` samples resampled from `from` to `to` Hz (±2).
pub fn resampled_len(input: usize, from: u32, to: u32) -> usize {
    (input as f64 * f64::from(to) / f64::from(from)).round() as usize
}

/// Samples of one sentence at `rate`.
pub fn sentence_samples(rate: u32) -> usize {
    sine(rate, SENTENCE_SECONDS).len()
}

/// The SSE events of a body: `(event name, data JSON)`.
pub fn sse_events(body: &[u8]) -> Vec<(String, Value)> {
    let text = std::str::from_utf8(body).unwrap();
    assert!(text.ends_with("\n\n"), "the stream ends with a complete event");
    text.split("\n\n")
        .filter(|block| !block.is_empty())
        .map(|block| {
            let mut name = String::new();
            let mut data = None;
            for line in block.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = n.to_owned();
                } else if let Some(d) = line.strip_prefix("data: ") {
                    assert!(data.is_none(), "one data line per event");
                    data = Some(serde_json::from_str::<Value>(d).unwrap());
                }
            }
            (name, data.expect("every event has data"))
        })
        .collect()
}
