//! What the issue-14 tests share: `chorus serve` as a process (with a lowered descriptor limit when asked), a
//! blocking WebSocket client that reads frames with a deadline, and raw TCP helpers for clients that misbehave.
#![allow(dead_code)] // each test binary uses its own part of this module

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{self, Message};

use crate::cluster_support::{MODEL, Proc, chorus, free_port, loopback};

/// `chorus serve` on free loopback ports.
#[derive(Debug)]
pub struct Serve {
    pub api: SocketAddr,
    pub metrics: SocketAddr,
    pub proc: Proc,
}

/// Starts `chorus serve` with `args` and `env` (the license proxy's data in `dir`) and waits until it is ready.
/// With `nofile`, the process runs under `ulimit -n nofile`.
pub fn start_serve(dir: &Path, args: &[&str], env: &[(&str, &str)], nofile: Option<u32>) -> Serve {
    let api = loopback(free_port());
    let metrics = loopback(free_port());
    let mut cmd = chorus("info");
    let serve_args: Vec<String> = [
        "serve",
        "--listen",
        &api.to_string(),
        "--metrics-listen",
        &metrics.to_string(),
        "--sessions",
        "1",
        "--threads",
        "1",
        "--artifacts",
        &dir.join("artifacts").display().to_string(),
        "--license-data",
        &dir.join("license").display().to_string(),
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .chain(args.iter().map(|s| (*s).to_owned()))
    .collect();
    if let Some(n) = nofile {
        // The shell lowers the limit, then becomes the server (exec): the limit is the server's.
        let program = cmd.get_program().to_owned();
        let mut shell = Command::new("sh");
        shell.current_dir(crate::cluster_support::root());
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => shell.env(k, v),
                None => shell.env_remove(k),
            };
        }
        shell.arg("-c").arg(format!("ulimit -n {n} && exec \"$0\" \"$@\"")).arg(program).args(&serve_args);
        cmd = shell;
    } else {
        cmd.args(&serve_args);
    }
    cmd.envs(env.iter().copied());
    let mut proc = Proc::spawn("chorus serve", cmd, dir.join("serve.log"));
    proc.wait_ready(metrics, Duration::from_secs(60));
    Serve { api, metrics, proc }
}

impl Serve {
    pub fn scrape(&self) -> crate::cluster_support::Metrics {
        crate::cluster_support::scrape(self.metrics).unwrap()
    }

    pub fn load(&self) -> f64 {
        self.scrape().value("inferno_worker_load", &[]).unwrap_or(-1.0)
    }

    pub fn jobs(&self, outcome: &str) -> f64 {
        self.scrape().value("chorus_worker_jobs_total", &[("outcome", outcome)]).unwrap_or(0.0)
    }
}

/// A blocking WebSocket client.
pub struct Ws {
    pub socket: tungstenite::WebSocket<TcpStream>,
}

impl std::fmt::Debug for Ws {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ws")
    }
}

/// How a wait for a frame ended.
#[derive(Debug)]
pub enum Next {
    Frame(Value),
    Closed(Option<u16>),
    /// Nothing within the deadline.
    Nothing,
}

impl Ws {
    /// Opens `/tts/websocket` on `addr`, with `?api_key=` when `key` is given.
    pub fn connect(addr: SocketAddr, key: Option<&str>) -> Self {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_nodelay(true).unwrap();
        let mut url = format!("ws://{addr}/tts/websocket?cartesia_version=2025-04-16");
        if let Some(k) = key {
            url.push_str(&format!("&api_key={k}"));
        }
        let (socket, _) = tungstenite::client(url.as_str(), stream).unwrap();
        Self { socket }
    }

    pub fn send(&mut self, v: &Value) {
        self.socket.send(Message::text(v.to_string())).unwrap();
    }

    /// The next text frame or the close, waiting at most `timeout`.
    pub fn next(&mut self, timeout: Duration) -> Next {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Next::Nothing;
            }
            self.socket.get_ref().set_read_timeout(Some(left.min(Duration::from_millis(500)))).unwrap();
            match self.socket.read() {
                Ok(Message::Text(t)) => return Next::Frame(serde_json::from_str(t.as_str()).unwrap()),
                Ok(Message::Close(frame)) => return Next::Closed(frame.map(|f| u16::from(f.code))),
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                // Closed, reset, or broken: the socket is over either way.
                Err(_) => return Next::Closed(None),
            }
        }
    }

    /// Frames until `context_id`'s `done` or `error` (inclusive), within `timeout`; panics otherwise.
    pub fn until_end(&mut self, context_id: &str, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        let mut frames = Vec::new();
        loop {
            match self.next(deadline.saturating_duration_since(Instant::now())) {
                Next::Frame(v) => {
                    let end = v["context_id"] == context_id && (v["type"] == "done" || v["type"] == "error");
                    frames.push(v);
                    if end {
                        return frames;
                    }
                }
                other @ (Next::Closed(_) | Next::Nothing) => {
                    panic!("context {context_id}: {other:?} before its end, after {} frames", frames.len())
                }
            }
        }
    }

    /// Waits for the first `chunk` of `context_id`.
    pub fn first_chunk(&mut self, context_id: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            match self.next(deadline.saturating_duration_since(Instant::now())) {
                Next::Frame(v) if v["context_id"] == context_id && v["type"] == "chunk" => return,
                Next::Frame(v) if v["type"] == "error" => panic!("error instead of audio: {v}"),
                Next::Frame(_) => {}
                other @ (Next::Closed(_) | Next::Nothing) => panic!("no audio for {context_id}: {other:?}"),
            }
        }
    }

    /// Drops the TCP connection with a reset (SO_LINGER 0), as a crashed client would.
    pub fn reset(self) {
        reset(self.socket.into_inner());
    }
}

/// Closes `stream` with a TCP reset.
pub fn reset(stream: TcpStream) {
    stream.set_nonblocking(true).unwrap();
    // Registering the socket with tokio (for its `set_linger`) needs a runtime; a tiny one is enough.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_io().build().unwrap();
    runtime.block_on(async move {
        let stream = tokio::net::TcpStream::from_std(stream).unwrap();
        stream.set_zero_linger().unwrap();
        drop(stream);
    });
}

/// A WebSocket generation request for the bundled voice.
pub fn generation(context_id: &str, transcript: &str, continue_: bool) -> Value {
    json!({
        "context_id": context_id,
        "model_id": "sonic-3",
        "transcript": transcript,
        "voice": {"mode": "id", "id": MODEL},
        "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 22050},
        "continue": continue_,
    })
}

/// A `/tts/bytes` body with `output_format` given.
pub fn bytes_body(transcript: &str, format: Value) -> String {
    json!({"model_id": "sonic-3", "transcript": transcript, "voice": {"mode": "id", "id": MODEL},
           "output_format": format})
    .to_string()
}

/// Sends a POST with `body` and reads the status line and headers only; the connection stays for the caller.
pub fn post_head(addr: SocketAddr, path: &str, body: &str, headers: &[(&str, &str)]) -> (u16, TcpStream) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let extra: String = headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\n{extra}\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).unwrap_or(0) == 0 {
            break;
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head);
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, s)
}

/// Resident memory of a process, in bytes (Linux).
pub fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Waits until `stream` is closed by the peer (a read returns 0 or fails), within `timeout`; how long it took.
pub fn closed_within(stream: &mut TcpStream, timeout: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        let left = timeout.saturating_sub(started.elapsed());
        if left.is_zero() {
            return None;
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return Some(started.elapsed()),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return None;
            }
            Err(_) => return Some(started.elapsed()),
        }
    }
}
