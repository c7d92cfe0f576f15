//! Voice models hot-added to running workers (issue 8): a second copy of the bundled voice, renamed as a new model
//! id and dropped under `models/` of the artifact store while the worker runs, becomes usable through the HTTP API
//! with no restart; a half-copied directory is not loaded; removing the directory stops its announcement at once
//! (its voice is no longer listed, new requests get 404 `voice_not_found`), lets a WebSocket stream in flight on it
//! finish, and only then unloads it. Shown for `chorus serve` (in-process bus) and for `chorus api` +
//! `chorus worker` over a real `nats-server`. Real processes, real ONNX model, real HTTP and WebSocket over TCP.
#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed
#![allow(clippy::print_stderr)] // timings, for whoever reads the test log

mod cluster_support;

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use cluster_support::{
    Cluster, MODEL, Proc, WorkerOpts, chorus, free_port, http_get, loopback, poll, request,
};
use serde_json::Value;
use tokio_tungstenite::tungstenite::{self, Message};

/// The new model: the bundled voice under another id.
const HOT: &str = "en_US-hot-medium";
/// Seconds between two listings of the store.
const POLL: &str = "0.3";

fn tts_body(voice: &str, transcript: &str) -> String {
    serde_json::json!({
        "model_id": "sonic-3",
        "transcript": transcript,
        "voice": {"mode": "id", "id": voice},
        "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 22050},
    })
    .to_string()
}

/// `POST /tts/bytes`: status and body.
fn tts(api: SocketAddr, voice: &str, transcript: &str) -> (u16, Vec<u8>) {
    let mut response = request(api, "POST", "/tts/bytes", Some(&tts_body(voice, transcript))).unwrap();
    let body = response.read_all().unwrap_or_else(|(e, _)| panic!("the body broke off: {e}"));
    (response.status, body)
}

/// Seconds of 16-bit PCM at 22050 Hz, and its RMS level (0..1).
fn pcm_stats(pcm: &[u8]) -> (f64, f64) {
    let samples: Vec<f64> =
        pcm.chunks_exact(2).map(|b| f64::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0).collect();
    let rms = (samples.iter().map(|s| s * s).sum::<f64>() / samples.len().max(1) as f64).sqrt();
    (samples.len() as f64 / 22050.0, rms)
}

fn voice_listed(api: SocketAddr, id: &str) -> bool {
    let (status, body) = http_get(api, "/voices?limit=100").unwrap();
    assert_eq!(status, 200, "GET /voices: {body}");
    let json: Value = serde_json::from_str(&body).unwrap();
    json["data"].as_array().unwrap().iter().any(|v| v["id"] == id)
}

/// A counter or gauge on a metrics port (0 when absent).
fn metric(metrics: SocketAddr, name: &str, labels: &[(&str, &str)]) -> f64 {
    cluster_support::scrape(metrics).unwrap().value(name, labels).unwrap_or(0.0)
}

fn reloads(metrics: SocketAddr, result: &str) -> f64 {
    metric(metrics, "chorus_artifacts_reload_total", &[("kind", "model"), ("result", result)])
}

/// Copies a file of the bundled voice to `dir/<HOT><suffix>`.
fn copy_part(dir: &Path, suffix: &str) {
    let bundled = cluster_support::root().join("models").join(MODEL);
    std::fs::copy(bundled.join(format!("{MODEL}{suffix}")), dir.join(format!("{HOT}{suffix}"))).unwrap();
}

/// A complete copy of the bundled voice as model `id` in the store.
fn drop_model(store: &Path, id: &str) {
    let dir = store.join("models").join(id);
    std::fs::create_dir_all(&dir).unwrap();
    copy_part(&dir, ".onnx.json");
    copy_part(&dir, ".dur.onnx");
}

/// `chorus serve` on free ports with `args`; returns once it is ready.
fn serve(dir: &Path, args: &[&str]) -> (Proc, SocketAddr, SocketAddr) {
    let api = loopback(free_port());
    let metrics = loopback(free_port());
    let mut cmd = chorus("info");
    cmd.args(["serve", "--listen", &api.to_string(), "--metrics-listen", &metrics.to_string()])
        .args(["--capacity", "4", "--sessions", "1", "--threads", "1"])
        // Its own license data: the default directory is locked by any `chorus serve` the user is running.
        .arg("--license-data")
        .arg(dir.join("license"))
        .args(args);
    let mut serve = Proc::spawn("chorus serve", cmd, dir.join("serve.log"));
    serve.wait_ready(metrics, Duration::from_secs(60));
    (serve, api, metrics)
}

/// A WebSocket context on `/tts/websocket`.
struct Context {
    socket: tungstenite::WebSocket<TcpStream>,
    audio_bytes: usize,
}

impl Context {
    fn open(api: SocketAddr) -> Self {
        let stream = TcpStream::connect(api).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let url = format!("ws://{api}/tts/websocket?cartesia_version=2025-04-16");
        let (socket, _) = tungstenite::client(url.as_str(), stream).unwrap();
        Self { socket, audio_bytes: 0 }
    }

    fn send(&mut self, transcript: &str, more: bool) {
        let mut body: Value = serde_json::from_str(&tts_body(HOT, transcript)).unwrap();
        body["context_id"] = "drain".into();
        body["continue"] = more.into();
        self.socket.send(Message::text(body.to_string())).unwrap();
    }

    /// Reads frames until `until` says stop; panics on an error frame.
    fn read_until(&mut self, mut until: impl FnMut(&Value, usize) -> bool) {
        loop {
            let text = match self.socket.read().unwrap() {
                Message::Text(t) => t.to_string(),
                Message::Close(frame) => panic!("the server closed the WebSocket: {frame:?}"),
                Message::Binary(_) | Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
            };
            let v: Value = serde_json::from_str(&text).unwrap();
            assert_ne!(v["type"], "error", "error frame: {v}");
            if v["type"] == "chunk" {
                let data =
                    base64::engine::general_purpose::STANDARD.decode(v["data"].as_str().unwrap()).unwrap();
                self.audio_bytes += data.len();
            }
            if until(&v, self.audio_bytes) {
                return;
            }
        }
    }
}

/// The whole story against one API (`api`) and the worker's metrics port (`worker_metrics`), with the store at
/// `store`.
fn hot_add_then_drain_and_remove(
    api: SocketAddr,
    worker_metrics: SocketAddr,
    store: &Path,
    logs: &dyn Fn() -> String,
) {
    assert!(!voice_listed(api, HOT), "the new model is listed before it exists");
    let (status, body) = tts(api, HOT, "Not yet.");
    assert_eq!(status, 404, "a model not yet dropped: {}", String::from_utf8_lossy(&body));
    assert_eq!(metric(worker_metrics, "chorus_artifacts_models_loaded", &[]), 1.0);

    // A copy in progress: the config is there, the graph not yet. Nothing is loaded for a while.
    let dir = store.join("models").join(HOT);
    std::fs::create_dir_all(&dir).unwrap();
    copy_part(&dir, ".onnx.json");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!voice_listed(api, HOT), "a directory without its graph was loaded");
    assert_eq!(reloads(worker_metrics, "loaded") + reloads(worker_metrics, "error"), 0.0);

    // The graph (durations exposed) arrives: loaded, warmed and announced without any restart.
    let dropped = Instant::now();
    copy_part(&dir, ".dur.onnx");
    let listed = poll(Duration::from_secs(60), || voice_listed(api, HOT).then_some(()));
    assert!(listed.is_some(), "the new model was never listed:\n{}", logs());
    eprintln!("hot-added model listed {:.1} s after its graph was copied", dropped.elapsed().as_secs_f64());
    let (status, pcm) = tts(api, HOT, "Hello from a voice model added while the server was running.");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&pcm));
    let (seconds, rms) = pcm_stats(&pcm);
    assert!(seconds > 2.0, "only {seconds:.2} s of audio from the new model");
    assert!(rms > 0.01, "the new model's audio is silent (RMS {rms:.4})");
    assert_eq!(metric(worker_metrics, "chorus_artifacts_models_loaded", &[]), 2.0);
    assert_eq!(reloads(worker_metrics, "loaded"), 1.0);
    // The bundled voice is untouched.
    let (status, _) = tts(api, MODEL, "Still here.");
    assert_eq!(status, 200);

    // A stream in flight on the new model: a WebSocket context kept open (continue: true).
    let mut ctx = Context::open(api);
    ctx.send("This stream started before the model was removed. It", true);
    ctx.read_until(|_, audio| audio > 0);

    // The directory is removed: the model is no longer announced nor listed, and new requests get a clear 404 ...
    std::fs::remove_dir_all(&dir).unwrap();
    let gone = poll(Duration::from_secs(15), || (!voice_listed(api, HOT)).then_some(()));
    assert!(gone.is_some(), "the removed model is still listed:\n{}", logs());
    let (status, body) = tts(api, HOT, "Too late.");
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((status, body["error_code"].as_str()), (404, Some("voice_not_found")), "{body}");
    // ... but it is not unloaded under the stream still open on it.
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(reloads(worker_metrics, "removed"), 0.0, "the model was unloaded under a stream in flight");

    // The stream goes on and completes on the draining model.
    let before = ctx.audio_bytes;
    ctx.send(" goes on and ends after the removal.", false);
    let mut done = false;
    ctx.read_until(|v, _| {
        done = v["type"] == "done";
        done
    });
    assert!(done);
    assert!(ctx.audio_bytes > before + 22050, "the stream's end brought under 0.5 s of audio");
    eprintln!("drained stream: {:.1} s of audio in all", ctx.audio_bytes as f64 / 2.0 / 22050.0);

    // Then the model is unloaded.
    let unloaded =
        poll(Duration::from_secs(15), || (reloads(worker_metrics, "removed") == 1.0).then_some(()));
    assert!(unloaded.is_some(), "the drained model was never unloaded:\n{}", logs());
    assert_eq!(metric(worker_metrics, "chorus_artifacts_models_loaded", &[]), 1.0);
    assert!(!voice_listed(api, HOT));
    let (status, _) = tts(api, MODEL, "The bundled voice still speaks.");
    assert_eq!(status, 200);
}

/// `chorus serve` (API and worker in one process, in-process bus) with a directory artifact store.
#[test]
fn serve_hot_adds_drains_and_unloads_a_voice_model() {
    let _serial = cluster_support::serial();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let (serve, api, metrics) =
        serve(dir.path(), &["--artifacts", store.to_str().unwrap(), "--models-poll-seconds", POLL]);
    assert!(store.join("models").parent().unwrap().is_dir(), "the store directory was not created");

    let log = serve.log.clone();
    let logs = move || std::fs::read_to_string(&log).unwrap_or_default();
    hot_add_then_drain_and_remove(api, metrics, &store, &logs);
    let text = serve.log_text();
    assert!(text.contains("Model drained and unloaded"), "{text}");
}

/// `--enable-hot-reload=false`: the models in the store at start are loaded, later changes are not applied. With
/// `--store-models`, only the store's models whose id matches are loaded (a pool serves its own models).
#[test]
fn without_hot_reload_only_the_matching_models_present_at_start_are_loaded() {
    let _serial = cluster_support::serial();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    drop_model(&store, HOT);
    drop_model(&store, "de_DE-other-pool-medium");
    let (serve, api, metrics) = serve(
        dir.path(),
        &[
            "--artifacts",
            store.to_str().unwrap(),
            "--models-poll-seconds",
            POLL,
            "--enable-hot-reload=false",
            "--store-models",
            "en_US-*,fr_*",
        ],
    );
    let listed = poll(Duration::from_secs(60), || voice_listed(api, HOT).then_some(()));
    assert!(listed.is_some(), "the model present at start was not loaded:\n{}", serve.log_text());
    let (status, pcm) = tts(api, HOT, "Loaded at start.");
    assert_eq!(status, 200);
    assert!(pcm_stats(&pcm).1 > 0.01, "silent audio");

    // Changes after the start are not applied: a new model is not loaded, a removed one keeps serving.
    drop_model(&store, "en_US-late-medium");
    std::fs::remove_dir_all(store.join("models").join(HOT)).unwrap();
    std::thread::sleep(Duration::from_millis(2000));
    assert!(!voice_listed(api, "en_US-late-medium"), "a model dropped after the start was loaded");
    assert!(voice_listed(api, HOT), "a model was unloaded with hot reload off");
    assert!(
        !voice_listed(api, "de_DE-other-pool-medium"),
        "a model --store-models does not match was loaded"
    );
    assert_eq!(reloads(metrics, "loaded"), 1.0, "only the matching model was loaded");
    assert_eq!(reloads(metrics, "removed"), 0.0);
}

/// `chorus api` + `chorus worker` over a real `nats-server`: the API learns the new model from the worker's
/// heartbeats, and forgets it when they stop announcing it.
#[test]
fn cluster_worker_hot_adds_drains_and_unloads_a_voice_model() {
    let _serial = cluster_support::serial();
    let mut c = Cluster::new();
    let store = c.dir().join("store");
    let store_arg = store.to_str().unwrap().to_owned();
    let w = c.spawn_worker_args(
        "hot",
        WorkerOpts::default(),
        &["--artifacts", &store_arg, "--models-poll-seconds", POLL],
    );
    let a = c.start_api();
    c.wait_worker(w);
    c.wait_apis_see_workers();
    let (api, worker_metrics) = (c.apis[a].addr, c.workers[w].metrics);
    let log = c.workers[w].proc.log.clone();
    let logs = move || std::fs::read_to_string(&log).unwrap_or_default();
    hot_add_then_drain_and_remove(api, worker_metrics, &store, &logs);
}
