//! The protocols `chorus bench --url` speaks: one request in, the audio's arrival times out.
//!
//! - `bytes`: `POST /tts/bytes`, raw pcm_s16le at 22050 Hz, streamed; every body frame is an arrival.
//! - `sse`: `POST /tts/sse`; every `chunk` event is an arrival of its decoded audio.
//! - `ws`: `GET /tts/websocket`; one context per request, many contexts on one socket (a reader task routes the
//!   frames by `context_id`).
//! - `piper`: `POST /synthesize` of Python Piper's HTTP server, which answers a whole WAV once the whole text is
//!   synthesized: time to first audio is the time to the first body byte.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use futures_util::stream::{SplitSink, StreamExt};
use futures_util::{SinkExt, Stream};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::stats::Arrival;
use crate::{BenchError, BoxError, Result};

/// Raw pcm_s16le at 22050 Hz: bytes per second of audio.
pub const PCM_BYTES_PER_S: f64 = 44100.0;
const SAMPLE_RATE: u32 = 22050;
/// The Cartesia API version sent (Cartesia requires one; Chorus echoes it).
pub const CARTESIA_VERSION: &str = "2025-04-16";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// Cartesia `GET /tts/websocket`, one context per request, one socket per client.
    Ws,
    /// Cartesia `POST /tts/bytes`, raw PCM streamed in the body.
    Bytes,
    /// Cartesia `POST /tts/sse`, base64 chunks in server-sent events.
    Sse,
    /// Python Piper's HTTP server, `POST /synthesize` (a whole WAV).
    Piper,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Self::Ws => "ws",
            Self::Bytes => "bytes",
            Self::Sse => "sse",
            Self::Piper => "piper",
        }
    }
}

/// Where and what to ask.
#[derive(Debug, Clone)]
pub struct Target {
    /// `http://host:port`, no trailing slash.
    pub base: String,
    pub api_key: Option<String>,
    pub voice: String,
    pub model_id: String,
    pub protocol: Protocol,
}

/// One finished request.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Send to the first audio byte.
    pub ttfa: Duration,
    /// Send to the end of the stream.
    pub total: Duration,
    /// Audio arrivals, in order, relative to the send.
    pub arrivals: Vec<Arrival>,
    /// Audio bytes per second of playback.
    pub bytes_per_s: f64,
}

impl Outcome {
    pub fn audio_s(&self) -> f64 {
        self.arrivals.iter().map(|a| a.bytes).sum::<usize>() as f64 / self.bytes_per_s
    }
}

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A client of one target: the HTTP connection pool, or one WebSocket (its contexts multiplexed).
#[derive(Debug, Clone)]
pub enum Connection {
    /// Boxed: hyper-util's client is large with the features other crates of the workspace enable.
    Http(Box<HttpClient>),
    Ws(Arc<WsConnection>),
}

impl Connection {
    /// An HTTP pool (shared by all the clients of a level), or a new socket.
    pub async fn open(target: &Target, http: &HttpClient) -> Result<Self> {
        match target.protocol {
            Protocol::Ws => Ok(Self::Ws(Arc::new(WsConnection::connect(target).await?))),
            Protocol::Bytes | Protocol::Sse | Protocol::Piper => Ok(Self::Http(Box::new(http.clone()))),
        }
    }

    /// Synthesizes `text` once.
    pub async fn request(&self, target: &Target, text: &str) -> Result<Outcome> {
        match (self, target.protocol) {
            (Self::Ws(ws), _) => ws.request(target, text).await,
            (Self::Http(client), Protocol::Bytes) => bytes_request(client, target, text).await,
            (Self::Http(client), Protocol::Sse) => sse_request(client, target, text).await,
            (Self::Http(client), Protocol::Piper) => piper_request(client, target, text).await,
            (Self::Http(_), Protocol::Ws) => {
                Err(BenchError::Usage("internal: an HTTP connection for the ws protocol".into()))
            }
        }
    }

    /// Closes a socket politely (HTTP connections stay in the pool).
    pub async fn close(&self) {
        if let Self::Ws(ws) = self {
            ws.close().await;
        }
    }
}

/// A pooled HTTP/1 client; requests go out without Nagle's delay (as curl's do).
pub fn http_client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build(connector)
}

/// One whole request: `GET` (no `json`) or `POST` a JSON body, with the API key as a bearer token; the status
/// and the whole body.
pub async fn call(
    client: &HttpClient,
    url: &str,
    api_key: Option<&str>,
    json: Option<&serde_json::Value>,
) -> Result<(u16, Bytes)> {
    let mut req = match json {
        Some(_) => hyper::Request::post(url).header("content-type", "application/json"),
        None => hyper::Request::get(url),
    };
    if let Some(key) = api_key {
        req = req.header("authorization", format!("Bearer {key}"));
    }
    let body = json
        .map(serde_json::to_vec)
        .transpose()
        .map_err(|e| BenchError::json("the request body", e))?
        .unwrap_or_default();
    let req = req
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| BenchError::transport(format!("cannot build the request to {url}"), e))?;
    let response =
        client.request(req).await.map_err(|e| BenchError::transport(format!("cannot reach {url}"), e))?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| BenchError::transport(format!("{url}: body failed"), e))?
        .to_bytes();
    Ok((status, body))
}

fn cartesia_body(target: &Target, text: &str) -> serde_json::Value {
    serde_json::json!({
        "model_id": target.model_id,
        "transcript": text,
        "voice": {"mode": "id", "id": target.voice},
        "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": SAMPLE_RATE},
    })
}

async fn post(
    client: &HttpClient,
    target: &Target,
    path: &str,
    body: &serde_json::Value,
) -> Result<(Instant, hyper::body::Incoming)> {
    let url = format!("{}{path}", target.base);
    let mut req = hyper::Request::post(&url)
        .header("content-type", "application/json")
        .header("cartesia-version", CARTESIA_VERSION);
    if let Some(key) = &target.api_key {
        req = req.header("authorization", format!("Bearer {key}")).header("x-api-key", key);
    }
    let body = serde_json::to_vec(body).map_err(|e| BenchError::json("the request body", e))?;
    let req = req
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| BenchError::transport(format!("cannot build the request to {url}"), e))?;
    let t0 = Instant::now();
    let response =
        client.request(req).await.map_err(|e| BenchError::transport(format!("cannot reach {url}"), e))?;
    let status = response.status();
    if !status.is_success() {
        let body = response.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let text = String::from_utf8_lossy(&body);
        let text: String = text.chars().take(200).collect();
        return Err(BenchError::Protocol(format!("{url} answered {status}: {text}")));
    }
    Ok((t0, response.into_body()))
}

/// The body's data frames with their arrival times (relative to `t0`).
async fn frames(
    body: &mut hyper::body::Incoming,
    t0: Instant,
    mut each: impl FnMut(f64, &Bytes) -> Result<()>,
) -> Result<()> {
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| BenchError::transport("the response body failed", e))?;
        if let Some(data) = frame.data_ref()
            && !data.is_empty()
        {
            each(t0.elapsed().as_secs_f64(), data)?;
        }
    }
    Ok(())
}

fn finish(t0: Instant, arrivals: Vec<Arrival>, bytes_per_s: f64) -> Result<Outcome> {
    let total = t0.elapsed();
    let first = arrivals.iter().find(|a| a.bytes > 0).ok_or_else(no_audio)?;
    Ok(Outcome { ttfa: Duration::from_secs_f64(first.at_s), total, arrivals, bytes_per_s })
}

fn no_audio() -> BenchError {
    BenchError::Protocol("no audio received".into())
}

async fn bytes_request(client: &HttpClient, target: &Target, text: &str) -> Result<Outcome> {
    let (t0, mut body) = post(client, target, "/tts/bytes", &cartesia_body(target, text)).await?;
    let mut arrivals = Vec::new();
    frames(&mut body, t0, |at_s, data| {
        arrivals.push(Arrival { at_s, bytes: data.len() });
        Ok(())
    })
    .await?;
    finish(t0, arrivals, PCM_BYTES_PER_S)
}

/// Server-sent events, parsed as they arrive (`chorus bench`, `chorus smoke` and the cluster tests).
#[derive(Debug, Default)]
pub struct SseParser {
    buffer: Vec<u8>,
}

/// One server-sent event: its `event:` name (`message` when it has none) and its `data:` lines, parsed as JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct SseMessage {
    pub event: String,
    pub data: serde_json::Value,
}

/// What one SSE event meant for the benchmark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseEvent {
    /// Decoded audio bytes.
    Audio(usize),
    Done,
    Error(String),
    /// Timestamps and anything else.
    Other,
}

impl SseParser {
    /// Feeds received bytes; returns the events completed by them (events without data are skipped).
    pub fn push_messages(&mut self, data: &[u8]) -> Result<Vec<SseMessage>> {
        self.buffer.extend_from_slice(data);
        let mut events = Vec::new();
        while let Some(end) = find_event_end(&self.buffer) {
            let event: Vec<u8> = self.buffer.drain(..end.0 + end.1).collect();
            let text = std::str::from_utf8(&event[..end.0])
                .map_err(|e| BenchError::malformed("an SSE event is not UTF-8", e))?;
            let mut name = String::from("message");
            let mut lines = Vec::new();
            for line in text.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    v.trim().clone_into(&mut name);
                } else if let Some(d) = line.strip_prefix("data:") {
                    lines.push(d.strip_prefix(' ').unwrap_or(d));
                }
            }
            let data = lines.join("\n");
            if data.is_empty() {
                continue;
            }
            let data: serde_json::Value = serde_json::from_str(&data)
                .map_err(|e| BenchError::json(format!("an SSE event's data is not JSON: {data}"), e))?;
            events.push(SseMessage { event: name, data });
        }
        Ok(events)
    }

    /// [`Self::push_messages`], each event classified by its `type`.
    pub fn push(&mut self, data: &[u8]) -> Result<Vec<SseEvent>> {
        self.push_messages(data)?.iter().map(|m| classify_event(&m.data)).collect()
    }
}

/// The end of the first complete event in `buf`: (length of the event, length of the blank-line separator).
fn find_event_end(buf: &[u8]) -> Option<(usize, usize)> {
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2));
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| (i, 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

/// A Cartesia event (SSE data or WebSocket frame), by its `type`.
fn classify_event(v: &serde_json::Value) -> Result<SseEvent> {
    let kind = v.get("type").and_then(|t| t.as_str()).unwrap_or("");
    Ok(match kind {
        "chunk" => {
            let data = v.get("data").and_then(|d| d.as_str()).unwrap_or("");
            let audio =
                BASE64.decode(data).map_err(|e| BenchError::malformed("a chunk's audio is not base64", e))?;
            SseEvent::Audio(audio.len())
        }
        "done" => SseEvent::Done,
        "error" => {
            let msg = v
                .get("message")
                .or_else(|| v.get("error"))
                .or_else(|| v.get("title"))
                .map_or_else(|| v.to_string(), |m| m.as_str().map_or_else(|| m.to_string(), str::to_owned));
            SseEvent::Error(format!("error event: {msg}"))
        }
        _ => SseEvent::Other,
    })
}

async fn sse_request(client: &HttpClient, target: &Target, text: &str) -> Result<Outcome> {
    let (t0, mut body) = post(client, target, "/tts/sse", &cartesia_body(target, text)).await?;
    let mut parser = SseParser::default();
    let mut arrivals = Vec::new();
    let mut done = false;
    frames(&mut body, t0, |at_s, data| {
        for event in parser.push(data)? {
            match event {
                SseEvent::Audio(bytes) => arrivals.push(Arrival { at_s, bytes }),
                SseEvent::Done => done = true,
                SseEvent::Error(e) => return Err(BenchError::Protocol(e)),
                SseEvent::Other => {}
            }
        }
        Ok(())
    })
    .await?;
    if !done {
        return Err(BenchError::Protocol("the event stream ended without a done event".into()));
    }
    finish(t0, arrivals, PCM_BYTES_PER_S)
}

/// Where the samples of a WAV file are: (data offset, data length, bytes per second).
pub fn wav_layout(wav: &[u8]) -> Result<(usize, usize, f64)> {
    if wav.len() < 12 || &wav[..4] != b"RIFF" || &wav[8..12] != b"WAVE" {
        return Err(BenchError::Protocol("not a WAV file".into()));
    }
    let u16_at = |i: usize| u16::from_le_bytes([wav[i], wav[i + 1]]);
    let u32_at = |i: usize| u32::from_le_bytes([wav[i], wav[i + 1], wav[i + 2], wav[i + 3]]);
    let mut pos = 12;
    let mut bytes_per_s = None;
    while pos + 8 <= wav.len() {
        let id = &wav[pos..pos + 4];
        let size = u32_at(pos + 4) as usize;
        let body = pos + 8;
        if id == b"fmt " && body + 16 <= wav.len() {
            let channels = f64::from(u16_at(body + 2));
            let rate = f64::from(u32_at(body + 4));
            let bits = f64::from(u16_at(body + 14));
            bytes_per_s = Some(rate * channels * bits / 8.0);
        } else if id == b"data" {
            let rate = bytes_per_s
                .ok_or_else(|| BenchError::Protocol("a WAV data chunk before its fmt chunk".into()))?;
            return Ok((body, size.min(wav.len() - body), rate));
        }
        pos = body + size + (size & 1);
    }
    Err(BenchError::Protocol("a WAV file without audio data".into()))
}

async fn piper_request(client: &HttpClient, target: &Target, text: &str) -> Result<Outcome> {
    let (t0, mut body) = post(client, target, "/synthesize", &serde_json::json!({"text": text})).await?;
    let mut raw = Vec::new();
    let mut arrivals = Vec::new();
    frames(&mut body, t0, |at_s, data| {
        raw.extend_from_slice(data);
        arrivals.push(Arrival { at_s, bytes: data.len() });
        Ok(())
    })
    .await?;
    let total = t0.elapsed();
    let (offset, len, bytes_per_s) = wav_layout(&raw)?;
    // Time to first audio is the first body byte (the header comes with the audio: Piper sends nothing before the
    // whole text is synthesized); the arrivals count the samples only.
    let ttfa = Duration::from_secs_f64(arrivals.first().ok_or_else(no_audio)?.at_s);
    let mut skip = offset;
    let mut left = len;
    for a in &mut arrivals {
        let cut = skip.min(a.bytes);
        skip -= cut;
        a.bytes = (a.bytes - cut).min(left);
        left -= a.bytes;
    }
    if len == 0 {
        return Err(no_audio());
    }
    Ok(Outcome { ttfa, total, arrivals, bytes_per_s })
}

/// What the WebSocket reader passes to a context.
#[derive(Debug)]
enum WsEvent {
    Audio(Instant, usize),
    Done,
    Error(String),
}

type Routes = Arc<Mutex<HashMap<String, mpsc::UnboundedSender<WsEvent>>>>;
type WsSink = SplitSink<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    Message,
>;

/// One socket to `/tts/websocket`; requests on it are contexts, routed by id.
#[derive(Debug)]
pub struct WsConnection {
    sink: tokio::sync::Mutex<WsSink>,
    routes: Routes,
    reader: tokio::task::JoinHandle<()>,
}

static NEXT_CONTEXT: AtomicU64 = AtomicU64::new(0);

impl Drop for WsConnection {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl WsConnection {
    pub async fn connect(target: &Target) -> Result<Self> {
        let ws_base = if let Some(rest) = target.base.strip_prefix("https://") {
            format!("wss://{rest}")
        } else if let Some(rest) = target.base.strip_prefix("http://") {
            format!("ws://{rest}")
        } else {
            target.base.clone()
        };
        let url = format!("{ws_base}/tts/websocket?cartesia_version={CARTESIA_VERSION}");
        let unbuildable =
            |e: BoxError| BenchError::transport(format!("cannot build the request to {url}"), e);
        let mut request = url.as_str().into_client_request().map_err(|e| unbuildable(e.into()))?;
        if let Some(key) = &target.api_key {
            let headers = request.headers_mut();
            let bearer = format!("Bearer {key}").parse().map_err(|e| unbuildable(Box::new(e)))?;
            headers.insert("authorization", bearer);
            headers.insert("x-api-key", key.parse().map_err(|e| unbuildable(Box::new(e)))?);
        }
        let (socket, _) = tokio_tungstenite::connect_async(request)
            .await
            .map_err(|e| BenchError::transport(format!("cannot connect to {url}"), e))?;
        let (sink, stream) = socket.split();
        let routes: Routes = Arc::default();
        let reader = tokio::spawn(read_frames(stream, Arc::clone(&routes)));
        Ok(Self { sink: tokio::sync::Mutex::new(sink), routes, reader })
    }

    /// Sends a close frame (the reader ends when the server answers it, or when this is dropped).
    pub async fn close(&self) {
        let _ = self.sink.lock().await.send(Message::Close(None)).await;
    }

    async fn request(&self, target: &Target, text: &str) -> Result<Outcome> {
        let id = format!("bench-{}", NEXT_CONTEXT.fetch_add(1, Ordering::Relaxed));
        let (tx, mut rx) = mpsc::unbounded_channel();
        self.routes.lock().unwrap_or_else(PoisonError::into_inner).insert(id.clone(), tx);
        let result = async {
            let mut body = cartesia_body(target, text);
            if let Some(obj) = body.as_object_mut() {
                obj.insert("context_id".into(), id.clone().into());
                obj.insert("continue".into(), false.into());
            }
            let message = Message::text(body.to_string());
            let t0 = Instant::now();
            self.sink
                .lock()
                .await
                .send(message)
                .await
                .map_err(|e| BenchError::transport("cannot send on the WebSocket", e))?;
            let mut arrivals = Vec::new();
            loop {
                match rx.recv().await {
                    Some(WsEvent::Audio(at, bytes)) => {
                        arrivals
                            .push(Arrival { at_s: at.saturating_duration_since(t0).as_secs_f64(), bytes });
                    }
                    Some(WsEvent::Done) => break,
                    Some(WsEvent::Error(e)) => return Err(BenchError::Protocol(e)),
                    None => return Err(BenchError::Protocol("the WebSocket closed".into())),
                }
            }
            finish(t0, arrivals, PCM_BYTES_PER_S)
        }
        .await;
        self.routes.lock().unwrap_or_else(PoisonError::into_inner).remove(&id);
        result
    }
}

async fn read_frames(
    mut stream: impl Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
    routes: Routes,
) {
    let reason = loop {
        let message = match stream.next().await {
            Some(Ok(m)) => m,
            Some(Err(e)) => break format!("the WebSocket failed: {e}"),
            None => break "the WebSocket closed".to_owned(),
        };
        let at = Instant::now();
        let text = match &message {
            Message::Text(t) => t.as_str(),
            Message::Close(frame) => break format!("the server closed the WebSocket: {frame:?}"),
            Message::Binary(_) | Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
        };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
            break "the server sent a frame that is not JSON".to_owned();
        };
        let event = match classify_event(&v) {
            Ok(SseEvent::Audio(bytes)) => WsEvent::Audio(at, bytes),
            Ok(SseEvent::Done) => WsEvent::Done,
            Ok(SseEvent::Error(e)) => WsEvent::Error(e),
            Ok(SseEvent::Other) => continue,
            Err(e) => WsEvent::Error(e.chain()),
        };
        let routes = routes.lock().unwrap_or_else(PoisonError::into_inner);
        match v.get("context_id").and_then(|c| c.as_str()) {
            Some(id) => {
                if let Some(tx) = routes.get(id) {
                    let _ = tx.send(event);
                }
            }
            // An error without a context: every context on the socket has failed.
            None => {
                if let WsEvent::Error(e) = event {
                    for tx in routes.values() {
                        let _ = tx.send(WsEvent::Error(e.clone()));
                    }
                }
            }
        }
    };
    let routes = routes.lock().unwrap_or_else(PoisonError::into_inner);
    for tx in routes.values() {
        let _ = tx.send(WsEvent::Error(reason.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_events_are_parsed_across_reads() {
        let mut p = SseParser::default();
        let chunk = format!(
            "event: chunk\ndata: {{\"type\":\"chunk\",\"data\":\"{}\"}}\n\n",
            BASE64.encode([0u8; 6])
        );
        let (a, b) = chunk.split_at(20);
        assert_eq!(p.push(a.as_bytes()).unwrap(), vec![]);
        assert_eq!(p.push(b.as_bytes()).unwrap(), vec![SseEvent::Audio(6)]);
        let more = "event: timestamps\r\ndata: {\"type\":\"timestamps\"}\r\n\r\nevent: done\ndata: {\"type\":\"done\"}\n\n";
        assert_eq!(p.push(more.as_bytes()).unwrap(), vec![SseEvent::Other, SseEvent::Done]);
        let err = "event: error\ndata: {\"type\":\"error\",\"message\":\"boom\"}\n\n";
        assert_eq!(p.push(err.as_bytes()).unwrap(), vec![SseEvent::Error("error event: boom".into())]);
    }

    #[test]
    fn wav_layout_finds_the_samples() {
        let mut wav = Vec::new();
        wav.extend_from_slice(b"RIFF");
        wav.extend_from_slice(&(36u32 + 8).to_le_bytes());
        wav.extend_from_slice(b"WAVEfmt ");
        wav.extend_from_slice(&16u32.to_le_bytes());
        wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
        wav.extend_from_slice(&1u16.to_le_bytes()); // mono
        wav.extend_from_slice(&22050u32.to_le_bytes());
        wav.extend_from_slice(&44100u32.to_le_bytes());
        wav.extend_from_slice(&2u16.to_le_bytes());
        wav.extend_from_slice(&16u16.to_le_bytes());
        wav.extend_from_slice(b"data");
        wav.extend_from_slice(&8u32.to_le_bytes());
        wav.extend_from_slice(&[0u8; 8]);
        assert_eq!(wav_layout(&wav).unwrap(), (44, 8, 44100.0));
        assert!(wav_layout(b"not a wav file at all").is_err());
    }
}
