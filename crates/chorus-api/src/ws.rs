//! `GET /tts/websocket`: the Cartesia TTS WebSocket (spec 2.4.4), wire-compatible with the official SDKs.
//!
//! # Protocol
//!
//! Every client frame is a JSON text frame: a generation request or `{"context_id", "cancel": true}`. Many
//! contexts share one socket; each is one job on the bus, and every server frame names its `context_id`.
//!
//! - **First message of a context** (an id not running on this socket): validated in full by
//!   [`AppState::prepare`] and started on the bus (`continue: true` makes it a continuation job).
//! - **Later messages**: only `transcript` (appended verbatim), `flush` and `continue` are read; every other field
//!   is ignored, not validated. So the Python SDK's `no_more_inputs()`, which sends `{"transcript": "",
//!   "continue": false}` with a placeholder voice (`6ccbfb76-…`) and `sonic-latest`, simply closes the context.
//!   A message becomes, in order: `Append` (non-empty transcript), `Flush` (`flush: true`), `End`
//!   (`continue` false or absent).
//! - **Frames out**: `chunk` (base64 audio in the requested raw encoding and rate, with `step_time` and
//!   `flush_id`), `timestamps` / `phoneme_timestamps` when asked for, `flush_done` (ids count from 1, sent once
//!   the flushed audio is out), then exactly one `done`, or an `error` instead. Non-error frames carry
//!   `status_code: 206`, as Cartesia's do.
//! - **Cancel**: the worker gets `Cancel`, the job handle is dropped, frames of the context still queued are
//!   discarded, and nothing more is sent for it, not even `done`. Cancelling an unknown or finished context does
//!   nothing.
//! - **Reuse**: a context id may be used again once its `done` was sent, or after the client cancelled it: it is
//!   a new context. The closing message of a context that already ended (the SDKs may send one after an error or
//!   a cancel) is dropped silently; the closing message of an id never seen is answered with `done` at once.
//!   After an `error` on a running context, every message for its id is dropped silently for one second: it can
//!   only be input sent before the client saw the error, and answering it would start a job on a fragment of
//!   text, or put frames on a context the SDK has forgotten.
//! - **Bad input** (not JSON, not an object, a binary frame, a request that fails validation, a flood of inputs
//!   beyond the bus's input queue, too many contexts): an `error` frame, with the `context_id` when one can be
//!   read; it ends that context only, and the socket stays open. Messages over
//!   [`WsConfig::max_message_bytes`] close the socket with 1009 (invalid UTF-8: 1007; protocol errors: 1002).
//! - **Slots**: a context takes a worker slot (a job on the bus) only once it has text to speak: a first message
//!   with an empty or whitespace-only transcript and `continue: true` opens the context (validated in full) but
//!   starts nothing; its flushes are answered at once, and its job starts with the first text. The context is
//!   admitted against its tenant key's limits (concurrency, requests per minute) and the license's stream limit
//!   when its job starts: every context counts as one request, the socket itself as none.
//! - **Idle contexts**: a context with no client message for it and no output from its job for
//!   [`WsConfig::context_idle_timeout`] (20 s; counted from the end of its `max_buffer_delay_ms`, the time the
//!   worker may hold text back) ends with a 408 `timeout` `error` frame, freeing its slot.
//! - **Idle sockets**: with no real traffic for [`WsConfig::idle_timeout`] (5 minutes, as Cartesia), the socket
//!   closes with 1000. Real traffic is text, flushes, ends and cancels from the client and audio and context ends
//!   to it: empty messages, bad input (and its `error` frames) and pings do not keep a socket open.
//! - **Revocation**: when the socket's tenant key is revoked (or removed), every running context gets a 401
//!   `error` frame and the socket closes with 1008, within about a second of the change on the license proxy.
//! - **Client gone**: every context's job handle is dropped at once, which stops its worker.
//! - **Shutdown**: see [`WsShutdown`]: new contexts are refused, running ones get up to
//!   [`WsConfig::drain_timeout`] (30 s) to finish (their `done`); a context still running then gets a 503
//!   `error` frame; then the socket closes with 1001 (going away), which the SDKs treat as recoverable.
//!
//! # permessage-deflate
//!
//! Negotiated when the client offers it (the Python SDK's `websockets`, Node's `ws`, browsers all do): the answer
//! is `permessage-deflate; server_no_context_takeover`. tungstenite implements no extension, so the handshake is
//! answered here and a frame-rewriting layer ([`deflate`]) sits between the connection and tungstenite: client
//! messages are inflated (bounded by [`WsConfig::max_message_bytes`], a deflate bomb closes the connection), server
//! messages deflated. Clients that offer nothing get axum's plain WebSocket, as before.
//!
//! # Tasks
//!
//! One reader loop per socket owns the context map; one writer task owns the sink, fed by a bounded channel; one
//! task per context starts its job and turns events into frames (one [`StreamEncoder`](chorus_audio::StreamEncoder)
//! per flush period, so resampler state carries across chunks). Every channel is bounded, so a client that
//! reads slowly slows its workers down instead of filling memory. See `ws/connection.rs`.

mod connection;
mod context;
mod deflate;
mod frames;
mod upgrade;

use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::extract::{FromRequestParts as _, Request, State};
use axum::response::{IntoResponse, Response};
use chorus_proto::ErrorCode;
use futures_util::{Sink, Stream};
use tokio::sync::watch;
use tracing::Instrument as _;

use crate::error::ApiError;
use crate::middleware::RequestId;
use crate::state::AppState;

/// Cartesia closes sockets idle for 5 minutes.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Largest client message; beyond it the socket closes with 1009. A full-length transcript fits many times.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1 << 20;
/// Contexts in progress on one socket; beyond it new contexts get a 429 `error` frame.
pub const DEFAULT_MAX_CONTEXTS: usize = 128;
/// A context with nothing to do (no text to speak, no client message) for this long is closed with an `error`.
pub const DEFAULT_CONTEXT_IDLE_TIMEOUT: Duration = Duration::from_secs(20);
/// On shutdown, how long running contexts may take to finish.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Settings of the TTS WebSocket. Defaults apply when the router carries none; `chorus serve` adds one as an
/// [`Extension`] to connect the shutdown signal (see [`WsShutdown`]).
#[derive(Debug, Clone)]
pub struct WsConfig {
    /// Close with 1000 after this long without real traffic: text, flushes, ends and cancels in; audio and
    /// context ends out (empty messages, bad input and its `error` frames, pings do not count).
    pub idle_timeout: Duration,
    /// A context with nothing to do for this long (no client message for it and no output from its job) is ended
    /// with a 408 `timeout` `error` frame.
    pub context_idle_timeout: Duration,
    /// Largest client message (and frame), in bytes.
    pub max_message_bytes: usize,
    /// Contexts in progress per socket.
    pub max_contexts: usize,
    /// On shutdown, how long running contexts may take to finish before the socket closes with 1001.
    pub drain_timeout: Duration,
    /// After our close frame, how long to wait for the client's before dropping the connection.
    pub close_timeout: Duration,
    /// A single write that stalls this long (a client that stopped reading) drops the connection.
    pub write_timeout: Duration,
    /// Drain and close with 1001 when this is triggered.
    pub shutdown: Option<WsShutdown>,
}

impl Default for WsConfig {
    fn default() -> Self {
        Self {
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            context_idle_timeout: DEFAULT_CONTEXT_IDLE_TIMEOUT,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            max_contexts: DEFAULT_MAX_CONTEXTS,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            close_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(60),
            shutdown: None,
        }
    }
}

impl WsConfig {
    /// Sockets served with this config drain and close with 1001 when `shutdown` is triggered.
    pub fn with_shutdown(mut self, shutdown: &WsShutdown) -> Self {
        self.shutdown = Some(shutdown.clone());
        self
    }
}

/// The shutdown signal of the WebSocket sockets.
///
/// `axum::serve(..).with_graceful_shutdown(..)` stops accepting connections and waits for HTTP requests in flight,
/// but an upgraded socket is no longer an HTTP connection: it neither hears the signal nor delays the server's
/// return, and it is cut without a close frame when the runtime stops. So `chorus serve` should:
///
/// ```ignore
/// let ws_shutdown = WsShutdown::new();
/// let app = chorus_api::router(state).layer(axum::Extension(WsConfig::default().with_shutdown(&ws_shutdown)));
/// let signal = { let s = ws_shutdown.clone(); async move { shutdown_signal().await; s.trigger() } };
/// axum::serve(listener, app).with_graceful_shutdown(signal).await?;
/// // Sockets drain (up to `drain_timeout`) and close with 1001; bound the wait anyway.
/// let _ = tokio::time::timeout(Duration::from_secs(35), ws_shutdown.wait_closed()).await;
/// ```
///
/// After `trigger`, handshakes get a 503 and every socket refuses new contexts (a 503 `error` frame), lets its
/// running contexts finish for up to [`WsConfig::drain_timeout`], and closes with 1001 (going away); the SDKs
/// reconnect on 1001.
#[derive(Debug, Clone)]
pub struct WsShutdown {
    tx: Arc<watch::Sender<bool>>,
}

impl Default for WsShutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl WsShutdown {
    pub fn new() -> Self {
        Self { tx: Arc::new(watch::channel(false).0) }
    }

    /// Starts the shutdown of every socket served with a config made by [`WsConfig::with_shutdown`].
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    /// True once [`trigger`](Self::trigger) was called.
    pub fn is_triggered(&self) -> bool {
        *self.tx.borrow()
    }

    /// Completes when every socket served with this signal is closed (at once if there is none).
    pub async fn wait_closed(&self) {
        self.tx.closed().await;
    }

    /// A socket's receiver: it lives as long as the socket, which is what [`wait_closed`](Self::wait_closed)
    /// counts.
    fn subscribe(&self) -> watch::Receiver<bool> {
        self.tx.subscribe()
    }
}

/// `GET /tts/websocket`. Authentication happens before, in the API's middleware; the handshake's request id
/// names the connection in logs. A client that offers permessage-deflate gets it ([`deflate`]); others get axum's
/// plain WebSocket.
pub async fn handler(
    State(state): State<AppState>,
    request_id: RequestId,
    caller: crate::license::Caller,
    config: Option<Extension<WsConfig>>,
    req: Request,
) -> Response {
    let config = config.map(|Extension(c)| c).unwrap_or_default();
    let (mut parts, _body) = req.into_parts();
    let refuse = |e: ApiError| e.with_request_id(request_id.as_str()).into_response();
    // Validate the handshake before anything else (same errors either way).
    // Over HTTP/2 (extended CONNECT, RFC 8441) axum answers the handshake; permessage-deflate is for HTTP/1.1.
    let offer =
        if parts.version == axum::http::Version::HTTP_11 { deflate::negotiate(&parts.headers) } else { None };
    let upgrade = match offer {
        Some(negotiated) => match upgrade::accept_key(&parts.headers) {
            Ok(accept) => Upgrade::Deflate { accept, negotiated },
            Err(e) => return refuse(ApiError { status: e.status, ..ApiError::invalid(e.message) }),
        },
        None => match WebSocketUpgrade::from_request_parts(&mut parts, &state).await {
            Ok(upgrade) => Upgrade::Plain(upgrade),
            // Same error schema as every other route, not axum's plain text.
            Err(rejection) => {
                return refuse(ApiError {
                    status: rejection.status(),
                    ..ApiError::invalid(rejection.body_text())
                });
            }
        },
    };
    if config.shutdown.as_ref().is_some_and(WsShutdown::is_triggered) {
        return refuse(ApiError::new(ErrorCode::Unserviceable, "the server is shutting down"));
    }
    // Subscribed now, not when the socket starts, so that `wait_closed` cannot miss a socket being upgraded.
    let signal = config.shutdown.as_ref().map(WsShutdown::subscribe);
    let span = tracing::info_span!("tts_websocket", connection_id = %request_id.as_str());
    match upgrade {
        Upgrade::Deflate { accept, negotiated } => {
            let Some(on_upgrade) = parts.extensions.remove::<hyper::upgrade::OnUpgrade>() else {
                return refuse(ApiError {
                    status: axum::http::StatusCode::UPGRADE_REQUIRED,
                    ..ApiError::invalid(
                        "WebSocket request couldn't be upgraded since no upgrade state was present",
                    )
                });
            };
            let response = upgrade::switching(&accept, &negotiated);
            let max = config.max_message_bytes;
            tokio::spawn(
                async move {
                    match on_upgrade.await {
                        Ok(upgraded) => {
                            tracing::debug!(extension = %negotiated.response, "WebSocket with permessage-deflate.");
                            let io = hyper_util::rt::TokioIo::new(upgraded);
                            let socket = upgrade::socket(io, &negotiated, max).await;
                            connection::serve(socket, state, caller, config, signal).await;
                        }
                        Err(e) => tracing::debug!(%e, "WebSocket upgrade failed."),
                    }
                }
                .instrument(span),
            );
            response
        }
        Upgrade::Plain(upgrade) => upgrade
            .max_message_size(config.max_message_bytes)
            .max_frame_size(config.max_message_bytes)
            .on_failed_upgrade(|e| tracing::debug!(%e, "WebSocket upgrade failed."))
            .on_upgrade(move |socket| {
                connection::serve(socket, state, caller, config, signal).instrument(span)
            }),
    }
}

/// The handshake, validated: axum's, or ours with the deflate extension.
enum Upgrade {
    Plain(WebSocketUpgrade),
    Deflate { accept: String, negotiated: deflate::Negotiated },
}

/// Serves one socket until it closes: the whole protocol, for any stream and sink of WebSocket messages (the
/// handler passes axum's [`WebSocket`](axum::extract::ws::WebSocket)). The socket's own limits (message size)
/// are the caller's to set.
pub async fn serve_socket<S>(socket: S, state: AppState, config: WsConfig)
where
    S: Stream<Item = Result<Message, axum::Error>> + Sink<Message, Error = axum::Error> + Send + 'static,
{
    let signal = config.shutdown.as_ref().map(WsShutdown::subscribe);
    connection::serve(socket, state, crate::license::Caller::default(), config, signal).await;
}

/// The close code a read error calls for, or `None` when the connection is simply gone.
fn close_code(error: &axum::Error) -> Option<(u16, &'static str)> {
    use tungstenite::error::{Error, ProtocolError};
    let inner = std::error::Error::source(error)?.downcast_ref::<Error>()?;
    if let Error::Capacity(_) = inner {
        return Some((1009, "message too big"));
    }
    if let Error::Utf8(_) = inner {
        return Some((1007, "invalid UTF-8"));
    }
    if let Error::Protocol(ProtocolError::ResetWithoutClosingHandshake) = inner {
        return None;
    }
    if let Error::Protocol(_) = inner {
        return Some((1002, "protocol error"));
    }
    None
}
