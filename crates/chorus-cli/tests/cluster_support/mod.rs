//! What the cluster tests share: a real `nats-server`, `chorus worker` and `chorus api` processes that are killed
//! (SIGKILL) when the test ends however it ends, a small HTTP/1.1 client that tells a clean end of a streamed body
//! from an aborted one, SSE parsing, and Prometheus scrapes parsed with `prometheus-parse`.
#![allow(dead_code)] // each test binary uses its own part of this module

use std::collections::VecDeque;
use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chorus_bench::blocking::Timeouts;
use serde_json::Value;

/// The voice every worker serves.
pub const MODEL: &str = "en_US-joe-medium";

/// Every scenario starts its own processes; they run one at a time (a 2-core machine, and timing assertions).
static SERIAL: Mutex<()> = Mutex::new(());

pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A loopback port free right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Polls `f` every 50 ms until it returns `Some`, or `None` once `timeout` has passed.
pub fn poll<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Processes

/// A child process, SIGKILLed and reaped when dropped (also when the test panics).
#[derive(Debug)]
pub struct Proc {
    pub name: String,
    child: Child,
    pub log: PathBuf,
    exited: Option<ExitStatus>,
}

impl Proc {
    pub fn spawn(name: &str, mut cmd: Command, log: PathBuf) -> Self {
        let out = File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!("cannot start {name}: {e} (nats-server comes with `scripts/setup --dev`)")
        });
        Self { name: name.to_owned(), child, log, exited: None }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`TERM`, `STOP`, `CONT`, `KILL`).
    pub fn signal(&self, sig: &str) {
        let status =
            Command::new("kill").arg(format!("-{sig}")).arg(self.pid().to_string()).status().unwrap();
        assert!(status.success(), "kill -{sig} {} ({}) failed", self.pid(), self.name);
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self) {
        if self.exited.is_none() {
            let _ = self.child.kill();
            self.exited = self.child.wait().ok();
        }
    }

    /// The exit status if the process has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().unwrap();
        }
        self.exited
    }

    /// Waits up to `timeout` for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        poll(timeout, || self.try_wait())
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits up to `timeout` until `/ready` on `metrics` answers 200; panics if the process exits first, or is
    /// still not ready then.
    pub fn wait_ready(&mut self, metrics: SocketAddr, timeout: Duration) {
        let ready = poll(timeout, || {
            if let Some(status) = self.try_wait() {
                panic!("{} exited while starting ({status}):\n{}", self.name, self.log_text());
            }
            http_get(metrics, "/ready").is_ok_and(|(s, _)| s == 200).then_some(())
        });
        assert!(ready.is_some(), "{} not ready after {timeout:?}:\n{}", self.name, self.log_text());
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A `nats-server` on a free loopback port (and a monitoring port for `/healthz`).
#[derive(Debug)]
pub struct Nats {
    pub port: u16,
    pub monitor: u16,
    proc: Option<Proc>,
    dir: PathBuf,
    starts: u32,
}

impl Nats {
    fn start(dir: &Path) -> Self {
        let mut nats =
            Self { port: free_port(), monitor: free_port(), proc: None, dir: dir.to_owned(), starts: 0 };
        nats.spawn();
        nats
    }

    fn spawn(&mut self) {
        self.starts += 1;
        let mut cmd = Command::new("nats-server");
        cmd.args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-m", &self.monitor.to_string()]);
        let log = self.dir.join(format!("nats-{}.log", self.starts));
        self.proc = Some(Proc::spawn("nats-server", cmd, log));
        let healthy = poll(Duration::from_secs(10), || {
            (http_get(loopback(self.monitor), "/healthz").ok()?.0 == 200).then_some(())
        });
        assert!(healthy.is_some(), "nats-server did not become healthy on port {}", self.port);
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// SIGKILLs the server (every connection drops at once).
    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    /// Starts the server again on the same ports.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

/// How a worker is started.
#[derive(Debug, Clone, Copy)]
pub struct WorkerOpts {
    pub capacity: u32,
    /// Model threads (ONNX Runtime sessions).
    pub sessions: u32,
    pub drain_seconds: u32,
}

impl Default for WorkerOpts {
    fn default() -> Self {
        Self { capacity: 4, sessions: 1, drain_seconds: 30 }
    }
}

impl WorkerOpts {
    /// One model thread, `capacity` streams.
    pub fn with_capacity(capacity: u32) -> Self {
        Self { capacity, ..Self::default() }
    }
}

#[derive(Debug)]
pub struct Worker {
    pub id: String,
    pub metrics: SocketAddr,
    pub proc: Proc,
}

impl Worker {
    pub fn scrape(&self) -> Metrics {
        scrape(self.metrics).unwrap_or_else(|e| panic!("cannot scrape worker {}: {e}", self.id))
    }

    pub fn ready(&self) -> bool {
        http_get(self.metrics, "/ready").is_ok_and(|(status, _)| status == 200)
    }

    pub fn completed(&self) -> f64 {
        self.scrape().value("chorus_worker_jobs_total", &[("outcome", "completed")]).unwrap_or(0.0)
    }

    pub fn load(&self) -> f64 {
        self.scrape().value("inferno_worker_load", &[]).unwrap()
    }
}

#[derive(Debug)]
pub struct Api {
    pub addr: SocketAddr,
    pub metrics: SocketAddr,
    pub proc: Proc,
}

impl Api {
    pub fn scrape(&self) -> Metrics {
        scrape(self.metrics).unwrap_or_else(|e| panic!("cannot scrape the API {}: {e}", self.addr))
    }

    pub fn queued(&self) -> f64 {
        self.scrape().value("api_queue_size", &[("model", MODEL)]).unwrap_or(0.0)
    }

    pub fn unserviceable(&self) -> f64 {
        self.scrape().value("api_unserviceable_requests_size", &[("model", MODEL)]).unwrap_or(0.0)
    }
}

/// NATS, workers and API servers of one test. Dropping it kills every process; after a panic it prints the tail of
/// every log first.
#[derive(Debug)]
pub struct Cluster {
    pub workers: Vec<Worker>,
    pub apis: Vec<Api>,
    pub nats: Nats,
    dir: tempfile::TempDir,
}

/// The `chorus` binary, run from the checkout with the test-relevant environment cleared.
pub fn chorus(log_filter: &str) -> Command {
    assert!(
        root().join("models").join(MODEL).is_dir(),
        "run scripts/setup first (models/{MODEL} is missing)"
    );
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_chorus"));
    cmd.current_dir(root())
        .env("CHORUS_LOG", log_filter)
        .env("NO_COLOR", "1")
        .env_remove("CHORUS_NATS_URL")
        .env_remove("CHORUS_CONFIG")
        .env_remove("CHORUS_API_KEYS")
        .env_remove("CHORUS_CAPACITY")
        .env_remove("CHORUS_SESSIONS")
        .env_remove("CHORUS_THREADS")
        .env_remove("CHORUS_MODELS_DIR")
        .env_remove("CHORUS_RUNTIME_DIR")
        .env_remove("CHORUS_ARTIFACTS");
    cmd
}

/// The `chorus` binary for one command (`say`, `bench`, a lone `serve`), run from the checkout at `warn`, without
/// the environment's voice and threads.
pub fn cli() -> Command {
    assert!(root().join("models").is_dir(), "run scripts/setup first");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_chorus"));
    cmd.current_dir(root()).env("CHORUS_LOG", "warn").env_remove("CHORUS_VOICE").env_remove("CHORUS_THREADS");
    cmd
}

impl Cluster {
    /// A running `nats-server`; no worker, no API yet.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let nats = Nats::start(dir.path());
        Self { workers: Vec::new(), apis: Vec::new(), nats, dir }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts `chorus license-proxy` on this cluster's NATS with `args` (not waiting for it); logs beside the
    /// others as `<name>.log`.
    pub fn spawn_license_proxy(&self, name: &str, listen: SocketAddr, data: &Path, args: &[&str]) -> Proc {
        let mut cmd = chorus("info");
        cmd.args(["license-proxy", "--nats", &self.nats.url(), "--listen", &listen.to_string()])
            .arg("--data")
            .arg(data)
            .args(args);
        let proc = Proc::spawn(name, cmd, self.dir.path().join(format!("{name}.log")));
        let up = poll(Duration::from_secs(10), || {
            http_get(listen, "/healthz").is_ok_and(|(s, _)| s == 200).then_some(())
        });
        assert!(up.is_some(), "{name} not up after 10 s:\n{}", proc.log_text());
        proc
    }

    /// Starts a worker (not waiting for it); returns its index.
    pub fn spawn_worker(&mut self, id: &str, opts: WorkerOpts) -> usize {
        self.spawn_worker_args(id, opts, &[])
    }

    /// Starts a worker with more flags (not waiting for it); returns its index.
    pub fn spawn_worker_args(&mut self, id: &str, opts: WorkerOpts, extra: &[&str]) -> usize {
        let metrics = loopback(free_port());
        let mut cmd = chorus("info");
        cmd.args(["worker", "--nats", &self.nats.url(), "--model", MODEL, "--worker-id", id])
            .args(["--metrics-listen", &metrics.to_string()])
            .args(["--capacity", &opts.capacity.to_string()])
            .args(["--sessions", &opts.sessions.to_string(), "--threads", "1"])
            .args(["--drain-seconds", &opts.drain_seconds.to_string()])
            .args(extra);
        let proc =
            Proc::spawn(&format!("worker {id}"), cmd, self.dir.path().join(format!("worker-{id}.log")));
        self.workers.push(Worker { id: id.to_owned(), metrics, proc });
        self.workers.len() - 1
    }

    /// Waits until the worker's /ready answers 200 (model loaded and warm).
    pub fn wait_worker(&mut self, i: usize) {
        let w = &mut self.workers[i];
        w.proc.wait_ready(w.metrics, Duration::from_secs(30));
    }

    /// Starts a worker and waits until it is ready.
    pub fn start_worker(&mut self, id: &str, opts: WorkerOpts) -> usize {
        let i = self.spawn_worker(id, opts);
        self.wait_worker(i);
        i
    }

    /// Starts an API server and waits until it answers; returns its index.
    pub fn start_api(&mut self) -> usize {
        self.start_api_with(&[])
    }

    /// Starts an API server with extra arguments and waits until it answers; returns its index.
    pub fn start_api_with(&mut self, extra: &[&str]) -> usize {
        self.start_api_env(extra, &[])
    }

    /// Starts an API server with extra arguments and environment variables; returns its index.
    pub fn start_api_env(&mut self, extra: &[&str], env: &[(&str, &str)]) -> usize {
        let n = self.apis.len() + 1;
        let addr = loopback(free_port());
        let metrics = loopback(free_port());
        let mut cmd = chorus("info,chorus_bus=debug");
        cmd.args(["api", "--nats", &self.nats.url(), "--listen", &addr.to_string()])
            .args(["--metrics-listen", &metrics.to_string()])
            .args(extra)
            .envs(env.iter().copied());
        let mut proc = Proc::spawn(&format!("API {n}"), cmd, self.dir.path().join(format!("api-{n}.log")));
        proc.wait_ready(metrics, Duration::from_secs(15));
        self.apis.push(Api { addr, metrics, proc });
        self.apis.len() - 1
    }

    /// Waits until every API knows a live worker of the model (its queue gauge for the model exists), then one
    /// heartbeat period more, so that it knows all of them.
    pub fn wait_apis_see_workers(&self) {
        for (i, api) in self.apis.iter().enumerate() {
            let seen = poll(Duration::from_secs(10), || {
                let m = scrape(api.metrics).ok()?;
                m.value("api_queue_size", &[("model", MODEL)]).map(|_| ())
            });
            assert!(seen.is_some(), "API {} never saw a worker:\n{}", i + 1, api.proc.log_text());
        }
        // Every worker heartbeats every 500 ms: after a bit more than one period every API knows all of them.
        std::thread::sleep(Duration::from_millis(700));
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for w in &mut self.workers {
            w.proc.kill();
        }
        for a in &mut self.apis {
            a.proc.kill();
        }
        self.nats.kill();
        // After a failure, or always with CHORUS_TEST_LOGS=1: the tail of every process's log.
        if std::thread::panicking() || std::env::var_os("CHORUS_TEST_LOGS").is_some() {
            let mut logs: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .collect();
            logs.sort();
            for log in logs {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = &lines[lines.len().saturating_sub(60)..];
                eprintln!("----- {} (last {} lines) -----\n{}", log.display(), tail.len(), tail.join("\n"));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Metrics

/// One scrape, parsed with `prometheus-parse`.
#[derive(Debug)]
pub struct Metrics {
    pub scrape: prometheus_parse::Scrape,
}

pub fn scrape(addr: SocketAddr) -> Result<Metrics, String> {
    let (status, body) = http_get(addr, "/metrics").map_err(|e| e.to_string())?;
    if status != 200 {
        return Err(format!("/metrics answered {status}"));
    }
    let lines = body.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).map_err(|e| e.to_string())?;
    Ok(Metrics { scrape })
}

impl Metrics {
    fn sample(&self, name: &str, labels: &[(&str, &str)]) -> Option<&prometheus_parse::Sample> {
        self.scrape
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
    }

    /// A counter, gauge or untyped sample's value.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        match &self.sample(name, labels)?.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => Some(*v),
            prometheus_parse::Value::Histogram(_) | prometheus_parse::Value::Summary(_) => None,
        }
    }

    /// The type the exposition declares for a sample (`gauge`, `counter`, `histogram`).
    pub fn kind(&self, name: &str) -> Option<&'static str> {
        Some(match &self.sample(name, &[])?.value {
            prometheus_parse::Value::Counter(_) => "counter",
            prometheus_parse::Value::Gauge(_) => "gauge",
            prometheus_parse::Value::Untyped(_) => "untyped",
            prometheus_parse::Value::Histogram(_) => "histogram",
            prometheus_parse::Value::Summary(_) => "summary",
        })
    }

    /// A histogram's observation count (its `+Inf` bucket) for the series with these labels.
    pub fn histogram_count(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        match &self.sample(name, labels)?.value {
            prometheus_parse::Value::Histogram(buckets) => {
                buckets.iter().find(|b| b.less_than.is_infinite()).map(|b| b.count)
            }
            prometheus_parse::Value::Counter(_)
            | prometheus_parse::Value::Gauge(_)
            | prometheus_parse::Value::Untyped(_)
            | prometheus_parse::Value::Summary(_) => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// HTTP

pub use chorus_bench::blocking::Response;

/// Connect within 5 s; each read or write within a minute.
const TIMEOUTS: Timeouts = Timeouts { connect: Duration::from_secs(5), io: Duration::from_secs(60) };

/// A license proxy's `GET /audit` at `addr` with the admin key `admin`: the response's head and body, if it
/// answers.
pub fn audit(addr: SocketAddr, admin: &str) -> Option<(String, Vec<u8>)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    write!(
        stream,
        "GET /audit HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {admin}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let body = raw.split_off(split + 4);
    Some((String::from_utf8_lossy(&raw[..split]).into_owned(), body))
}

/// The usage records of a license proxy's `GET /audit` at `addr` (with the admin key `admin`), if it answers.
pub fn audit_records(addr: SocketAddr, admin: &str) -> Option<Vec<chorus_proto::license::UsageRecord>> {
    chorus_license::audit::records(&audit(addr, admin)?.1).ok()
}

/// Creates an object with `POST path` (a voice, a dictionary), asserting a 200, and answers its id.
pub fn create(api: SocketAddr, path: &str, body: Value) -> String {
    let (status, created, _) = json_call(api, "POST", path, &[], Some(body));
    assert_eq!(status, 200, "{created}");
    created["id"].as_str().unwrap().to_owned()
}

/// Sends one request (`Connection: close`) and reads the status line and headers.
pub fn request(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> std::io::Result<Response> {
    request_with(addr, method, path, &[], body)
}

/// A JSON call: the status, the body parsed (`Null` if it is not JSON) and the `ETag` header.
pub fn json_call(
    api: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (u16, Value, Option<String>) {
    let body = body.map(|b| b.to_string());
    let mut response = request_with(api, method, path, headers, body.as_deref()).unwrap();
    let etag = response.header("etag").map(str::to_owned);
    let bytes = response.read_all().map_err(|(e, _)| e).unwrap();
    (response.status, serde_json::from_slice(&bytes).unwrap_or(Value::Null), etag)
}

/// [`request`] with extra headers.
pub fn request_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> std::io::Result<Response> {
    chorus_bench::blocking::request(addr, method, path, headers, body, TIMEOUTS)
}

/// `GET path`: status and body.
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut response = request(addr, "GET", path, None)?;
    let body = response.read_all().map_err(|(e, _)| std::io::Error::other(e))?;
    Ok((response.status, String::from_utf8_lossy(&body).into_owned()))
}

// ---------------------------------------------------------------------------------------------------------------
// TTS

/// A Cartesia TTS request body: raw 16-bit PCM at 22050 Hz.
pub fn tts_body(transcript: &str, timestamps: bool) -> String {
    serde_json::json!({
        "model_id": "sonic-3",
        "transcript": transcript,
        "voice": {"mode": "id", "id": MODEL},
        "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 22050},
        "add_timestamps": timestamps,
    })
    .to_string()
}

/// What a `/tts/bytes` request produced.
#[derive(Debug, Clone)]
pub struct BytesOutcome {
    pub status: u16,
    /// Body bytes received (audio when the status is 200).
    pub bytes: usize,
    /// The body ended cleanly (chunked terminator or full length); otherwise why it broke off.
    pub broken: Option<String>,
    pub first_byte: Option<Duration>,
    pub elapsed: Duration,
    /// The body when it is not audio (an error).
    pub text: String,
}

impl BytesOutcome {
    pub fn audio_seconds(&self) -> f64 {
        self.bytes as f64 / 2.0 / 22050.0
    }

    /// 200, a clean end, and at least `min_seconds` of audio.
    pub fn assert_complete(&self, min_seconds: f64, what: &str) {
        assert_eq!(self.status, 200, "{what}: status {} ({})", self.status, self.text);
        assert!(self.broken.is_none(), "{what}: the audio broke off: {:?}", self.broken);
        assert!(
            self.audio_seconds() >= min_seconds,
            "{what}: {:.2} s of audio, expected at least {min_seconds:.2} s",
            self.audio_seconds()
        );
        assert_eq!(self.bytes % 2, 0, "{what}: a partial sample");
    }
}

/// `POST /tts/bytes`, read to the end.
pub fn tts_bytes(api: SocketAddr, transcript: &str) -> BytesOutcome {
    let started = Instant::now();
    let mut response = request(api, "POST", "/tts/bytes", Some(&tts_body(transcript, false)))
        .unwrap_or_else(|e| panic!("POST /tts/bytes to {api}: {e}"));
    let mut out = BytesOutcome {
        status: response.status,
        bytes: 0,
        broken: None,
        first_byte: None,
        elapsed: Duration::ZERO,
        text: String::new(),
    };
    let mut body = Vec::new();
    loop {
        match response.next_piece() {
            Ok(Some(piece)) => {
                if out.first_byte.is_none() && !piece.is_empty() {
                    out.first_byte = Some(started.elapsed());
                }
                out.bytes += piece.len();
                if response.status != 200 {
                    body.extend_from_slice(&piece);
                }
            }
            Ok(None) => break,
            Err(e) => {
                out.broken = Some(e);
                break;
            }
        }
    }
    out.text = String::from_utf8_lossy(&body).into_owned();
    out.elapsed = started.elapsed();
    out
}

/// One server-sent event.
pub use chorus_bench::client::SseMessage as SseEvent;

/// A `/tts/sse` stream, event by event.
#[derive(Debug)]
pub struct Sse {
    pub response: Response,
    parser: chorus_bench::client::SseParser,
    pending: VecDeque<SseEvent>,
}

/// `POST /tts/sse` with word timestamps.
pub fn tts_sse(api: SocketAddr, transcript: &str) -> Sse {
    let response = request(api, "POST", "/tts/sse", Some(&tts_body(transcript, true)))
        .unwrap_or_else(|e| panic!("POST /tts/sse to {api}: {e}"));
    Sse { response, parser: chorus_bench::client::SseParser::default(), pending: VecDeque::new() }
}

impl Sse {
    /// The next event: `Ok(None)` at a clean end of the body, `Err` when the transfer broke off.
    pub fn next_event(&mut self) -> Result<Option<SseEvent>, String> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Ok(Some(e));
            }
            match self.response.next_piece()? {
                Some(piece) => {
                    let events = self.parser.push_messages(&piece).map_err(|e| e.chain())?;
                    self.pending.extend(events);
                }
                None => return Ok(None),
            }
        }
    }
}

/// What a whole SSE stream produced.
#[derive(Debug, Clone, Default)]
pub struct SseOutcome {
    pub status: u16,
    pub audio_bytes: usize,
    pub chunks: usize,
    /// Every word of the `timestamps` events, in order.
    pub words: Vec<String>,
    pub done: bool,
    /// The `error` event, if any.
    pub error: Option<Value>,
    /// Why the transfer broke off, if it did.
    pub broken: Option<String>,
    /// Events after the terminal one (there must be none).
    pub after_end: usize,
    pub text: String,
}

impl SseOutcome {
    /// 200, every word of `transcript` in the timestamps, `done` and nothing after it, no error.
    pub fn assert_complete(&self, transcript: &str, what: &str) {
        assert_eq!(self.status, 200, "{what}: status {} ({})", self.status, self.text);
        assert!(self.error.is_none(), "{what}: error event {:?}", self.error);
        assert!(self.broken.is_none(), "{what}: the stream broke off: {:?}", self.broken);
        assert!(self.done, "{what}: no done event");
        assert_eq!(self.after_end, 0, "{what}: events after done");
        assert!(self.chunks > 0 && self.audio_bytes > 0, "{what}: no audio");
        assert_eq!(normalize_words(&self.words), normalize_words(&[transcript.to_owned()]), "{what}: words");
    }
}

/// Lower-case words without punctuation.
pub fn normalize_words(texts: &[String]) -> Vec<String> {
    texts
        .iter()
        .flat_map(|t| t.split_whitespace())
        .map(|w| w.chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_lowercase).collect::<String>())
        .filter(|w| !w.is_empty())
        .collect()
}

/// Decoded length of a base64 string.
fn base64_len(s: &str) -> usize {
    let pad = s.bytes().rev().take_while(|&b| b == b'=').count();
    s.len() / 4 * 3 - pad
}

impl Sse {
    /// Reads the stream to its end; `on_event` sees every event as it arrives.
    pub fn collect(mut self, mut on_event: impl FnMut(&SseEvent)) -> SseOutcome {
        let mut out = SseOutcome { status: self.response.status, ..SseOutcome::default() };
        if out.status != 200 {
            out.text = match self.response.read_all() {
                Ok(b) => String::from_utf8_lossy(&b).into_owned(),
                Err((e, _)) => e,
            };
            return out;
        }
        loop {
            match self.next_event() {
                Ok(Some(e)) => {
                    on_event(&e);
                    if out.done || out.error.is_some() {
                        out.after_end += 1;
                        continue;
                    }
                    match e.event.as_str() {
                        "chunk" => {
                            out.chunks += 1;
                            out.audio_bytes += e.data["data"].as_str().map_or(0, base64_len);
                        }
                        "timestamps" => {
                            let words =
                                e.data["word_timestamps"]["words"].as_array().cloned().unwrap_or_default();
                            out.words.extend(words.iter().filter_map(|w| w.as_str().map(str::to_owned)));
                        }
                        "done" => out.done = true,
                        "error" => out.error = Some(e.data.clone()),
                        other => panic!("unexpected SSE event {other:?}: {}", e.data),
                    }
                }
                Ok(None) => break,
                Err(err) => {
                    out.broken = Some(err);
                    break;
                }
            }
        }
        out
    }
}

/// A text of about `chars` characters, of varied plain sentences (no digits: words stay as written).
pub fn long_text(chars: usize) -> String {
    const SENTENCES: [&str; 10] = [
        "The harbor was quiet before the fishing boats came back with the morning tide.",
        "A small bakery on the corner sold warm bread to everyone who passed by.",
        "Clouds gathered over the hills while the farmers hurried to bring in the hay.",
        "She opened the old letter slowly and read it twice before she smiled.",
        "The train to the coast left late, but nobody on board seemed to mind.",
        "Children played in the park until the street lamps flickered on.",
        "He tuned the piano carefully, listening to every string in turn.",
        "The library kept its rarest maps in a cool room behind a heavy door.",
        "Wind moved through the tall grass like a slow wave across the field.",
        "At the end of the day the market stalls folded up one by one.",
    ];
    let mut text = String::new();
    for s in SENTENCES.iter().cycle() {
        if text.len() >= chars {
            break;
        }
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str(s);
    }
    text
}
