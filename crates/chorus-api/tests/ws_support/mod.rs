//! Shared by the `ws_*` tests: a deterministic worker, a server on 127.0.0.1:0 and a WebSocket client.
//!
//! Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Extension;
use axum::routing::get;
use base64::Engine as _;
use chorus_api::ws::WsConfig;
use chorus_api::{ApiConfig, AppState};
use chorus_bus::{LocalBus, LocalBusConfig, ModelInfo, Offer, Refusal, Worker, WorkerStatus};
use chorus_proto::{AudioEvent, ContextInput, JobEvent, SynthesisJob, WordTimestamps};
use crossbeam_channel::RecvTimeoutError;
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The engine voice the test worker serves; also its voice id.
pub const VOICE: &str = "test-voice";
pub const RATE: u32 = 22_050;
/// Samples the test worker speaks per character of text.
pub const SAMPLES_PER_CHAR: usize = 100;
/// How long a test waits for any one frame.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(5);

/// What the test worker did, per job, keyed by the job's first transcript (tests make them unique).
#[derive(Debug, Default)]
pub struct Journal {
    entries: Mutex<Vec<(String, String)>>,
}

impl Journal {
    fn add(&self, key: &str, what: &str) {
        self.entries.lock().unwrap().push((key.to_owned(), what.to_owned()));
    }

    pub fn of(&self, key: &str) -> Vec<String> {
        self.entries.lock().unwrap().iter().filter(|(k, _)| k == key).map(|(_, w)| w.clone()).collect()
    }

    /// Waits until the job `key` logged one of `whats`; returns it.
    pub async fn wait_for(&self, key: &str, whats: &[&str], timeout: Duration) -> String {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(w) = self.of(key).into_iter().find(|w| whats.contains(&w.as_str())) {
                return w;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "job {key:?} never logged {whats:?}: {:?}",
                self.of(key)
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// A worker that speaks a 440 Hz sine, [`SAMPLES_PER_CHAR`] samples per character, and follows the context
/// protocol (flush counter from 1, `End` -> `Done`, `Cancel` -> silence). Special first transcripts:
/// - `endless…`: a 10 ms chunk every 10 ms until cancelled or the events channel closes;
/// - `stall…`: reads no input, sends nothing, until the events channel closes.
#[derive(Debug, Default)]
pub struct TestWorker {
    pub journal: Arc<Journal>,
}

impl Worker for TestWorker {
    fn status(&self) -> WorkerStatus {
        let models = vec![ModelInfo { id: VOICE.into(), language: "en".into(), sample_rate: RATE }];
        WorkerStatus::serving("test", models, 1000, 0)
    }

    fn accept(&self, offer: Offer) -> Result<(), Refusal> {
        let Offer { job, inputs, events, slot } = offer;
        let journal = Arc::clone(&self.journal);
        std::thread::spawn(move || {
            let _slot = slot;
            let key = job.transcript.clone();
            journal.add(&key, "started");
            let end = run_job(&job, &inputs, &events);
            journal.add(&key, end);
        });
        Ok(())
    }
}

fn sine(n: usize, offset: usize) -> Vec<f32> {
    (0..n)
        .map(|i| 0.5 * (2.0 * std::f32::consts::PI * 440.0 * (offset + i) as f32 / RATE as f32).sin())
        .collect()
}

/// Runs one job; returns how it ended.
fn run_job(
    job: &SynthesisJob,
    inputs: &crossbeam_channel::Receiver<ContextInput>,
    events: &tokio::sync::mpsc::Sender<JobEvent>,
) -> &'static str {
    let mut seq = 0;
    let mut flush_id = 1;
    let mut offset = 0;
    let mut speak = |text: &str, flush_id: u32| -> bool {
        let samples = sine(text.chars().count() * SAMPLES_PER_CHAR, offset);
        offset += samples.len();
        let audio = AudioEvent { seq, sample_rate: RATE, samples, step_time_ms: 1.0, flush_id };
        seq += 1;
        if events.blocking_send(JobEvent::Audio(audio)).is_err() {
            return false;
        }
        if job.word_timestamps {
            let words: Vec<String> = text.split_whitespace().map(str::to_owned).collect();
            let n = words.len();
            let words = WordTimestamps {
                words,
                start: (0..n).map(|i| i as f64 * 0.1).collect(),
                end: (0..n).map(|i| i as f64 * 0.1 + 0.1).collect(),
            };
            return events.blocking_send(JobEvent::Words { flush_id, words }).is_ok();
        }
        true
    };

    if job.transcript.starts_with("endless") {
        loop {
            match inputs.try_recv() {
                Ok(ContextInput::Cancel) => return "cancel",
                Ok(ContextInput::Append { .. } | ContextInput::Flush | ContextInput::End) => {}
                Err(crossbeam_channel::TryRecvError::Disconnected) => return "inputs disconnected",
                Err(crossbeam_channel::TryRecvError::Empty) => {}
            }
            if !speak("0", flush_id) {
                return "events closed";
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    if job.transcript.starts_with("stall") {
        while !events.is_closed() {
            std::thread::sleep(Duration::from_millis(10));
        }
        return "events closed";
    }

    if !job.transcript.is_empty() && !speak(&job.transcript, flush_id) {
        return "events closed";
    }
    if !job.continuation {
        return if events.blocking_send(JobEvent::Done).is_ok() { "done" } else { "events closed" };
    }
    loop {
        match inputs.recv_timeout(Duration::from_millis(10)) {
            Ok(ContextInput::Append { text }) => {
                if !speak(&text, flush_id) {
                    return "events closed";
                }
            }
            Ok(ContextInput::Flush) => {
                if events.blocking_send(JobEvent::FlushDone { flush_id }).is_err() {
                    return "events closed";
                }
                flush_id += 1;
            }
            Ok(ContextInput::End) => {
                return if events.blocking_send(JobEvent::Done).is_ok() { "done" } else { "events closed" };
            }
            Ok(ContextInput::Cancel) => return "cancel",
            Err(RecvTimeoutError::Timeout) => {
                if events.is_closed() {
                    return "events closed";
                }
            }
            Err(RecvTimeoutError::Disconnected) => return "inputs disconnected",
        }
    }
}

/// A running server.
#[derive(Debug)]
pub struct Server {
    pub addr: SocketAddr,
    pub journal: Arc<Journal>,
    pub state: AppState,
}

/// The state every test serves: a local bus with one [`TestWorker`].
pub fn test_state() -> (AppState, Arc<Journal>) {
    test_state_with(ApiConfig::default())
}

/// [`test_state`] with another API config.
pub fn test_state_with(config: ApiConfig) -> (AppState, Arc<Journal>) {
    let bus = LocalBus::new(LocalBusConfig::default());
    let worker = Arc::new(TestWorker::default());
    let journal = Arc::clone(&worker.journal);
    bus.register(worker);
    (AppState::new(Arc::new(bus), config), journal)
}

/// Serves `app` on 127.0.0.1:0 until the test ends.
pub async fn serve(app: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// The WebSocket route alone, with `config`.
pub fn ws_router(state: AppState, config: WsConfig) -> axum::Router {
    axum::Router::new()
        .route("/tts/websocket", get(chorus_api::ws::handler))
        .layer(Extension(config))
        .with_state(state)
}

/// Serves [`ws_router`] on 127.0.0.1:0 until the test ends.
pub async fn start(config: WsConfig) -> Server {
    let (state, journal) = test_state();
    let addr = serve(ws_router(state.clone(), config)).await;
    Server { addr, journal, state }
}

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A test client.
#[derive(Debug)]
pub struct Client {
    pub ws: Socket,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Self {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/tts/websocket")).await.unwrap();
        Self { ws }
    }

    pub async fn send(&mut self, v: Value) {
        self.ws.send(Message::text(v.to_string())).await.unwrap();
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text.to_owned())).await.unwrap();
    }

    /// The next text frame as JSON; panics on anything else or after [`FRAME_TIMEOUT`].
    pub async fn recv(&mut self) -> Value {
        loop {
            let msg = tokio::time::timeout(FRAME_TIMEOUT, self.ws.next())
                .await
                .expect("no frame in time")
                .expect("socket ended")
                .expect("socket error");
            match msg {
                Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
                Message::Ping(_) | Message::Pong(_) => {}
                Message::Binary(_) | Message::Close(_) | Message::Frame(_) => panic!("unexpected {msg:?}"),
            }
        }
    }

    /// Frames until `context_id`'s `done` or `error` (inclusive), every context's frames included.
    pub async fn recv_until_end(&mut self, context_id: &str) -> Vec<Value> {
        let mut frames = Vec::new();
        loop {
            let v = self.recv().await;
            let end = v["context_id"] == context_id && (v["type"] == "done" || v["type"] == "error");
            frames.push(v);
            if end {
                return frames;
            }
        }
    }

    /// Waits for the server's close frame, answers it and checks that the server then ends the connection;
    /// `None` if the socket ended without a close frame.
    pub async fn expect_close(&mut self, timeout: Duration) -> Option<CloseFrame> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.ws.next()).await.expect("no close in time");
            match msg {
                Some(Ok(Message::Close(frame))) => {
                    // Reading on sends our answering close frame; the server then ends the connection.
                    let end = tokio::time::timeout(Duration::from_secs(2), self.ws.next()).await;
                    assert!(matches!(end, Ok(None)), "the server did not end the connection: {end:?}");
                    return frame;
                }
                Some(Ok(Message::Text(t))) => panic!("unexpected frame before close: {t}"),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return None,
            }
        }
    }
}

/// A generation request with the defaults the SDK would send.
pub fn request(context_id: &str, transcript: &str, continue_: bool) -> Value {
    json!({
        "context_id": context_id,
        "model_id": "sonic-3",
        "transcript": transcript,
        "voice": {"mode": "id", "id": VOICE},
        "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": RATE},
        "continue": continue_,
    })
}

/// Decoded audio bytes of a `chunk` frame.
pub fn chunk_bytes(v: &Value) -> usize {
    base64::engine::general_purpose::STANDARD.decode(v["data"].as_str().unwrap()).unwrap().len()
}

/// Frames of one context.
pub fn of<'a>(frames: &'a [Value], context_id: &str) -> Vec<&'a Value> {
    frames.iter().filter(|v| v["context_id"] == context_id).collect()
}

/// Types of a list of frames, in order.
pub fn types(frames: &[&Value]) -> Vec<String> {
    frames.iter().map(|v| v["type"].as_str().unwrap_or("?").to_owned()).collect()
}
