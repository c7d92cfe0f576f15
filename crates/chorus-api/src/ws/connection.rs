//! One socket: a reader loop that owns every context of the connection, and a writer task that owns the sink.
//!
//! ```text
//!  client ──text──▶ reader loop ──Append/Flush/End/Cancel (try_send)──▶ worker (one per context)
//!                    ▲    │ spawns, aborts                                   │ JobEvent
//!      Started/Finished   ▼                                                  ▼
//!                    context task (one per context: bus.start, encode) ──Outgoing──▶ writer task ──▶ client
//! ```
//!
//! The reader loop is the only owner of the context map, so there is no lock. Context tasks report back on a
//! bounded internal channel, which the loop always polls first (`biased`): a context that has finished is
//! forgotten before any later client message is read, so a client reusing the id after `done` starts a new
//! context.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes};
use axum::http::StatusCode;
use chorus_proto::{ContextInput, ErrorCode};
use futures_util::{Sink, SinkExt as _, Stream, StreamExt as _};
use tokio::sync::{mpsc, watch};
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tracing::Instrument as _;

use chorus_proto::license::LicenseState;

use super::context::{ContextTask, inputs_for};
use super::frames::{self, BadMessage, ClientMessage, Generate};
use super::{WsConfig, close_code};
use crate::error::ApiError;
use crate::license::{CANCELLED, CLIENT_CLOSED, TenantCheck};
use crate::middleware::new_request_id;
use crate::request::TtsRequest;
use crate::state::{AppState, Prepared, Route};

/// Frames queued toward the writer. Small: the socket is the real buffer, and a full queue is what slows the
/// context tasks (and through them the workers) down to the client's pace.
const OUT_BUFFER: usize = 64;
/// Ids of recently ended contexts remembered per socket (see [`Recent`]).
const RECENT_CONTEXTS: usize = 256;
/// Longest `context_id` accepted, in bytes.
const MAX_CONTEXT_ID_BYTES: usize = 1024;

/// What the writer task sends.
#[derive(Debug)]
pub(crate) enum Outgoing {
    /// A text frame. Dropped unasked if `muted` is set by the time the writer gets to it (a cancelled context).
    /// `traffic`: it counts as activity of the socket (audio, a context's end; not an `error` about bad input).
    Frame { text: String, muted: Option<Arc<AtomicBool>>, traffic: bool },
    /// A close frame; the writer stops after it.
    Close { code: u16, reason: &'static str },
}

/// What context tasks tell the reader loop.
#[derive(Debug)]
pub(crate) enum Internal {
    /// The bus accepted the job: here is where its inputs go.
    Started { context_id: Arc<str>, generation: u64, inputs: crossbeam_channel::Sender<ContextInput> },
    /// The context ended (its `done` or, when `!ok`, `error` frame follows).
    Finished { context_id: Arc<str>, generation: u64, ok: bool },
}

/// Where a context's inputs go.
#[derive(Debug)]
enum Inputs {
    /// No text yet: the context is validated but nothing is started (it holds no worker slot and no admission).
    Deferred(Box<Deferred>),
    /// The job is still being started (the bus may queue it): inputs wait here, in order.
    Starting(Vec<ContextInput>),
    Running(crossbeam_channel::Sender<ContextInput>),
}

/// A context without text yet.
#[derive(Debug)]
struct Deferred {
    request: TtsRequest,
    prepared: Prepared,
    /// Flushes already answered (`flush_done` 1, 2, ...).
    flushes: u32,
}

#[derive(Debug)]
struct Context {
    generation: u64,
    inputs: Inputs,
    /// `continue: false` was seen: the context only awaits its `done`.
    ended: bool,
    muted: Arc<AtomicBool>,
    /// `None` while deferred.
    task: Option<AbortHandle>,
    request_id: String,
    /// Shared with the context's task: continuations add their characters.
    meter: Option<Arc<crate::license::UsageMeter>>,
    /// Client messages for the context and output of its job (the context idle timeout).
    activity: Arc<Activity>,
    /// The context's `max_buffer_delay_ms`: text the worker holds back may come out this long after the last input,
    /// so the idle time starts counting after it.
    buffer_delay: Duration,
}

/// How a context that is no longer running ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// It sent `done`. The id may be used again for a new context.
    Done,
    /// Its first message was refused (an `error` frame). The id may be used again, e.g. with a fixed request.
    Refused,
    /// The client cancelled it. Whatever the client sends after its cancel is meant for a new context.
    Cancelled,
    /// It failed while starting or running (an `error` frame). For [`FAILED_GRACE`] every message for the id is
    /// dropped silently: it is input the client sent before it learned of the error, and answering it would start
    /// a job on a fragment of text, or send frames for a context the SDK has forgotten (the sync Python SDK hands
    /// those to another context). After that, the id may be used again.
    Failed(Instant),
}

/// See [`Ended::Failed`].
const FAILED_GRACE: Duration = Duration::from_secs(1);

/// Contexts that ended recently, by id (the last [`RECENT_CONTEXTS`]). The closing message
/// (`{"transcript": "", "continue": false}`) of any of them is dropped silently: the SDKs send it after an error
/// or a cancel too. `insert` keeps the latest ending.
#[derive(Debug, Default)]
struct Recent {
    order: VecDeque<Arc<str>>,
    ended: HashMap<Arc<str>, Ended>,
}

impl Recent {
    fn insert(&mut self, id: Arc<str>, how: Ended) {
        if self.ended.insert(Arc::clone(&id), how).is_none() {
            self.order.push_back(id);
            if self.order.len() > RECENT_CONTEXTS
                && let Some(old) = self.order.pop_front()
            {
                self.ended.remove(&old);
            }
        }
    }

    fn get(&self, id: &str) -> Option<Ended> {
        self.ended.get(id).copied()
    }

    /// True while messages for `id` are dropped (see [`Ended::Failed`]).
    fn in_grace(&self, id: &str) -> bool {
        matches!(self.get(id), Some(Ended::Failed(at)) if at.elapsed() < FAILED_GRACE)
    }
}

/// When a socket (shared with the writer) or a context (shared with its task) last saw real traffic, and
/// whether it is busy (a context's task waiting on the writer is not idle).
#[derive(Debug)]
pub(crate) struct Activity {
    origin: Instant,
    last_ms: AtomicU64,
    busy: AtomicBool,
}

impl Activity {
    pub(crate) fn new() -> Self {
        Self { origin: Instant::now(), last_ms: AtomicU64::new(0), busy: AtomicBool::new(false) }
    }

    pub(crate) fn touch(&self) {
        let ms = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    pub(crate) fn set_busy(&self, busy: bool) {
        self.busy.store(busy, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.origin + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }

    /// How long it has been idle (zero while busy).
    fn idle_for(&self) -> Duration {
        if self.busy.load(Ordering::Relaxed) { Duration::ZERO } else { self.last().elapsed() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Open,
    /// Shutting down: new contexts are refused; the socket closes with 1001 when the last context ends or at
    /// `deadline`.
    Draining {
        deadline: Instant,
    },
    /// Our close frame is out: waiting for the client's, until `deadline`.
    Closing {
        deadline: Instant,
    },
}

struct Connection {
    state: AppState,
    /// Who opened the socket (its tenant key); holds the key's in-flight slot while the socket is open.
    caller: crate::license::Caller,
    config: WsConfig,
    out: mpsc::Sender<Outgoing>,
    internal: mpsc::Sender<Internal>,
    contexts: HashMap<Arc<str>, Context>,
    recent: Recent,
    generation: u64,
    phase: Phase,
    /// Real traffic of the socket (its idle close).
    activity: Arc<Activity>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("contexts", &self.contexts.len())
            .field("phase", &self.phase)
            .finish_non_exhaustive()
    }
}

/// Serves one upgraded socket until it closes.
pub(crate) async fn serve<S>(
    socket: S,
    state: AppState,
    caller: crate::license::Caller,
    config: WsConfig,
    shutdown: Option<watch::Receiver<bool>>,
) where
    S: Stream<Item = Result<Message, axum::Error>> + Sink<Message, Error = axum::Error> + Send + 'static,
{
    let (sink, mut stream) = socket.split();
    let activity = Arc::new(Activity::new());
    let (out_tx, out_rx) = mpsc::channel(OUT_BUFFER);
    let writer = tokio::spawn(write_loop(sink, out_rx, Arc::clone(&activity), config.write_timeout));
    // Each context task sends at most two internal messages, and the loop drains them first: this never fills.
    let (internal_tx, mut internal_rx) =
        mpsc::channel(config.max_contexts.saturating_mul(2).saturating_add(16));
    let mut shutdown = shutdown;
    // A tenant key's socket follows the proxy's state: a revocation closes it.
    let mut license = if caller.tenant.is_some() { state.license.watch() } else { None };
    let idle_timeout = config.idle_timeout;
    let check_every =
        (config.context_idle_timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(1));
    let mut conn = Connection {
        state,
        caller,
        config,
        out: out_tx,
        internal: internal_tx,
        contexts: HashMap::new(),
        recent: Recent::default(),
        generation: 0,
        phase: Phase::Open,
        activity: Arc::clone(&activity),
    };
    tracing::debug!("WebSocket connection opened.");

    let idle = tokio::time::sleep(idle_timeout);
    tokio::pin!(idle);
    let mut context_check = tokio::time::interval(check_every);
    context_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let deadline = match conn.phase {
            Phase::Open => None,
            Phase::Draining { deadline } | Phase::Closing { deadline } => Some(deadline),
        };
        let closing = matches!(conn.phase, Phase::Closing { .. });
        tokio::select! {
            biased;
            Some(msg) = internal_rx.recv() => conn.on_internal(msg).await,
            // The writer is gone (the client stopped reading, or the socket broke). While closing, the writer
            // stops by design after the close frame: keep reading for the client's close then.
            () = conn.out.closed(), if !closing => break,
            msg = stream.next() => match msg {
                None => break,
                Some(Ok(msg)) => conn.on_message(msg).await,
                Some(Err(e)) => match close_code(&e) {
                    Some((code, reason)) if !closing => {
                        tracing::debug!(%e, code, "WebSocket read error: closing.");
                        conn.close(code, reason).await;
                    }
                    Some(_) | None => {
                        tracing::debug!(%e, "WebSocket read error.");
                        break;
                    }
                },
            },
            () = &mut idle => {
                let due = activity.last() + idle_timeout;
                if Instant::now() >= due {
                    conn.close(1000, "idle timeout").await;
                    // Checked again after the close timeout, which ends the loop first.
                    idle.as_mut().reset(Instant::now() + idle_timeout);
                } else {
                    idle.as_mut().reset(due);
                }
            }
            _ = context_check.tick(), if !conn.contexts.is_empty() && !closing => conn.close_idle_contexts().await,
            () = license_changed(&mut license), if !closing => {
                if conn.key_revoked() {
                    conn.revoke().await;
                }
            }
            () = wait_shutdown(&mut shutdown), if conn.phase == Phase::Open => conn.drain().await,
            () = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                match conn.phase {
                    Phase::Draining { .. } => conn.drain_deadline().await,
                    Phase::Closing { .. } | Phase::Open => break,
                }
            }
        }
    }
    // However the loop ended, contexts still running lost their client.
    conn.abort_all(CLIENT_CLOSED);
    let close_timeout = conn.config.close_timeout;
    drop(conn);
    // Let the writer finish what is queued (a close frame, typically): it ends once every sender is gone, or on
    // its first failed write if the client is gone.
    let abort = writer.abort_handle();
    if tokio::time::timeout(close_timeout, writer).await.is_err() {
        abort.abort();
    }
    tracing::debug!("WebSocket connection closed.");
}

/// Completes when the license proxy's state changes; never without a proxy (or once its sender is gone).
async fn license_changed(rx: &mut Option<watch::Receiver<Option<LicenseState>>>) {
    if let Some(rx) = rx
        && rx.changed().await.is_ok()
    {
        return;
    }
    std::future::pending::<()>().await;
}

/// Completes when the shutdown signal is raised; never if there is none (or its sender is gone).
async fn wait_shutdown(signal: &mut Option<watch::Receiver<bool>>) {
    if let Some(rx) = signal
        && rx.wait_for(|down| *down).await.is_ok()
    {
        return;
    }
    std::future::pending::<()>().await;
}

/// Writes queued frames until a close frame, an error, or a write that stalls past `write_timeout`. Frames are
/// fed as they come and flushed whenever the queue runs empty, so a burst costs one flush.
async fn write_loop<K>(
    mut sink: K,
    mut rx: mpsc::Receiver<Outgoing>,
    activity: Arc<Activity>,
    write_timeout: Duration,
) where
    K: Sink<Message, Error = axum::Error> + Unpin,
{
    let mut unflushed = false;
    loop {
        let next = match rx.try_recv() {
            Ok(out) => Some(out),
            Err(mpsc::error::TryRecvError::Empty) => {
                if unflushed {
                    if !timed_write(write_timeout, sink.flush()).await {
                        return;
                    }
                    unflushed = false;
                }
                rx.recv().await
            }
            Err(mpsc::error::TryRecvError::Disconnected) => None,
        };
        match next {
            Some(Outgoing::Frame { text, muted, traffic }) => {
                if muted.as_deref().is_some_and(|m| m.load(Ordering::Acquire)) {
                    continue;
                }
                if !timed_write(write_timeout, sink.feed(Message::Text(Utf8Bytes::from(text)))).await {
                    return;
                }
                unflushed = true;
                if traffic {
                    activity.touch();
                }
            }
            Some(Outgoing::Close { code, reason }) => {
                let frame = CloseFrame { code, reason: Utf8Bytes::from_static(reason) };
                timed_write(write_timeout, sink.send(Message::Close(Some(frame)))).await;
                return;
            }
            None => {
                if unflushed {
                    timed_write(write_timeout, sink.flush()).await;
                }
                return;
            }
        }
    }
}

/// Runs one write; false (logged) if it failed or stalled.
async fn timed_write(limit: Duration, write: impl Future<Output = Result<(), axum::Error>>) -> bool {
    match tokio::time::timeout(limit, write).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::debug!(%e, "WebSocket write failed.");
            false
        }
        Err(_) => {
            tracing::debug!(timeout_s = limit.as_secs_f64(), "WebSocket write stalled: giving up.");
            false
        }
    }
}

impl Connection {
    async fn on_message(&mut self, msg: Message) {
        if !matches!(self.phase, Phase::Open | Phase::Draining { .. }) {
            return;
        }
        match msg {
            Message::Text(text) => match frames::parse(text.as_str()) {
                Ok(ClientMessage::Cancel { context_id }) => self.on_cancel(context_id).await,
                Ok(ClientMessage::Generate(g)) => self.on_generate(g).await,
                Err(BadMessage { context_id, error }) => {
                    // An error is terminal for its context: a live context it names ends with it.
                    match context_id {
                        Some(id) if self.contexts.contains_key(id.as_str()) => {
                            self.fail(&Arc::from(id), error).await;
                        }
                        Some(id) if self.recent.in_grace(&id) => {}
                        Some(id) => self.send_error(&error, Some(&id)).await,
                        None => self.send_error(&error, None).await,
                    }
                }
            },
            Message::Binary(_) => {
                let error =
                    ApiError::invalid("binary frames are not supported: send each message as JSON text");
                self.send_error(&error, None).await;
            }
            // Pings are answered by the protocol layer.
            Message::Ping(_) | Message::Pong(_) => {}
            // The client is leaving: stop every job now; the protocol layer answers the close on the next read.
            Message::Close(_) => self.abort_all(CLIENT_CLOSED),
        }
    }

    async fn on_cancel(&mut self, context_id: Option<String>) {
        let Some(id) = context_id else {
            self.send_error(&ApiError::unprocessable("a cancel needs the context_id to cancel"), None).await;
            return;
        };
        if let Some(ctx) = self.contexts.remove(id.as_str()) {
            tracing::debug!(request_id = %ctx.request_id, "WebSocket context cancelled.");
            self.activity.touch();
            stop(ctx, CANCELLED);
            self.recent.insert(Arc::from(id), Ended::Cancelled);
            self.maybe_drained().await;
        }
        // An unknown or finished context: nothing to do, and nothing may be sent for it.
    }

    async fn on_generate(&mut self, g: Generate) {
        let id: Arc<str> = match g.context_id.as_deref() {
            Some(id) => Arc::from(id),
            // The SDKs always send one; a hand-written client may not. Its frames still carry this one.
            None => Arc::from(new_request_id()),
        };
        if id.len() > MAX_CONTEXT_ID_BYTES {
            let e =
                ApiError::unprocessable(format!("context_id is longer than {MAX_CONTEXT_ID_BYTES} bytes"));
            self.send_error(&e, Some(&id)).await;
            return;
        }
        if self.contexts.contains_key(&id) {
            self.continue_context(id, g).await;
            return;
        }
        let closing = g.transcript.is_empty() && !g.continue_;
        if self.recent.in_grace(&id) {
            tracing::debug!(context_id = ?id, "Message for a context that just failed dropped.");
            return;
        }
        if closing && self.recent.get(&id).is_some() {
            return;
        }
        // The closing message of a context that never had any text: done at once. Its voice, model and format
        // are not checked: the Python SDK fills them with placeholders.
        if closing {
            self.recent.insert(Arc::clone(&id), Ended::Done);
            self.send(frames::done(&id), None, true).await;
            return;
        }
        if let Err(e) = self.open_context(Arc::clone(&id), &g).await {
            self.contexts.remove(&id);
            self.recent.insert(Arc::clone(&id), Ended::Refused);
            self.send_error(&e, Some(&id)).await;
        }
    }

    /// Validates the first message of a context; starts its job if it has text (else it waits, deferred).
    async fn open_context(&mut self, id: Arc<str>, g: &Generate) -> Result<(), ApiError> {
        let request_id = new_request_id();
        if let Phase::Draining { .. } = self.phase {
            return Err(ApiError::new(
                ErrorCode::Unserviceable,
                "the server is shutting down: reconnect to send new contexts",
            )
            .with_request_id(&request_id));
        }
        if self.contexts.len() >= self.config.max_contexts {
            return Err(ApiError::new(
                ErrorCode::ConcurrencyLimited,
                format!(
                    "this connection already has {} contexts in progress; wait for one to finish or open \
                     another connection",
                    self.contexts.len()
                ),
            )
            .with_request_id(&request_id));
        }
        // A context is a new request: refused once the license lapsed past its grace (running ones go on).
        self.state.license.check_entitlement().map_err(|e| e.with_request_id(&request_id))?;
        let request = g.request().map_err(|e| e.with_request_id(&request_id))?;
        let prepared = self.state.prepare(&request, &request_id, Route::WebSocket)?;
        let continuation = prepared.job.continuation;
        let has_text = has_text(&prepared.job.transcript);
        let buffer_delay = Duration::from_millis(u64::from(prepared.job.max_buffer_delay_ms));
        let ctx = Context {
            generation: 0,
            inputs: Inputs::Deferred(Box::new(Deferred { request, prepared, flushes: 0 })),
            ended: !continuation,
            muted: Arc::new(AtomicBool::new(false)),
            task: None,
            request_id: request_id.clone(),
            meter: None,
            activity: Arc::new(Activity::new()),
            buffer_delay,
        };
        self.activity.touch();
        self.contexts.insert(Arc::clone(&id), ctx);
        if continuation && !has_text {
            tracing::debug!(%request_id, "WebSocket context opened, waiting for text (no job yet).");
            if g.flush {
                self.feed(&id, ContextInput::Flush).await?;
            }
            return Ok(());
        }
        let pending = if continuation && g.flush { vec![ContextInput::Flush] } else { Vec::new() };
        self.start(&id, pending)
    }

    /// Starts the job of a deferred context: admission (tenant key, license), its meter, its task.
    fn start(&mut self, id: &Arc<str>, pending: Vec<ContextInput>) -> Result<(), ApiError> {
        let Some(ctx) = self.contexts.get_mut(id) else { return Ok(()) };
        let request_id = ctx.request_id.clone();
        let admission = self.state.license.admit_context(&self.caller).map_err(|e| {
            tracing::info!(error = %e, "WebSocket context refused: over a limit.");
            e.with_request_id(&request_id)
        })?;
        let Inputs::Deferred(deferred) = std::mem::replace(&mut ctx.inputs, Inputs::Starting(pending)) else {
            return Ok(());
        };
        let Deferred { request, prepared, flushes } = *deferred;
        let meter = Arc::new(self.state.meter(&self.caller, "websocket", &request, &prepared.job));
        self.generation += 1;
        ctx.generation = self.generation;
        ctx.meter = Some(Arc::clone(&meter));
        let task = ContextTask {
            context_id: Arc::clone(id),
            generation: self.generation,
            job: prepared.job,
            format: prepared.format,
            bus: Arc::clone(&self.state.bus),
            out: self.out.clone(),
            internal: self.internal.clone(),
            muted: Arc::clone(&ctx.muted),
            meter: Some(meter),
            flush_offset: flushes,
            activity: Arc::clone(&ctx.activity),
            _admission: admission,
        };
        let span = tracing::debug_span!("ws_context", %request_id, context_id = ?id);
        let handle = tokio::spawn(task.run().instrument(span));
        ctx.task = Some(handle.abort_handle());
        tracing::debug!(%request_id, contexts = self.contexts.len(), "WebSocket context started.");
        Ok(())
    }

    /// A later message on a context: its transcript, flush and end become inputs, in order.
    async fn continue_context(&mut self, id: Arc<str>, g: Generate) {
        let max_chars = self.state.config.max_transcript_chars;
        let Some(ctx) = self.contexts.get_mut(&id) else { return };
        if ctx.ended {
            if !g.transcript.is_empty() {
                let e = ApiError::invalid(
                    "this context was closed with continue=false: no more text is accepted",
                );
                self.fail(&id, e).await;
            }
            return;
        }
        let chars = g.transcript.chars().count();
        if chars > max_chars {
            let e = ApiError::new(
                ErrorCode::TextTooLong,
                format!("the transcript is {chars} characters; the limit is {max_chars}"),
            );
            self.fail(&id, e).await;
            return;
        }
        // Only work counts as activity: an empty `continue` message keeps neither the context nor the socket.
        if has_text(&g.transcript) || g.flush || !g.continue_ {
            ctx.activity.touch();
            self.activity.touch();
        }
        ctx.ended = !g.continue_;
        for input in inputs_for(g.transcript, g.flush, g.continue_) {
            if let Err(e) = self.feed(&id, input).await {
                self.fail(&id, e).await;
                return;
            }
        }
    }

    /// One input for a context: a deferred one accumulates text (and starts once it has some), answers its
    /// flushes and ends at once; a started one queues it for its job.
    async fn feed(&mut self, id: &Arc<str>, input: ContextInput) -> Result<(), ApiError> {
        let Some(ctx) = self.contexts.get_mut(id) else { return Ok(()) };
        if let Inputs::Deferred(deferred) = &mut ctx.inputs {
            match input {
                ContextInput::Append { text } => {
                    deferred.prepared.job.transcript.push_str(&text);
                    if has_text(&deferred.prepared.job.transcript) {
                        self.start(id, Vec::new())?;
                    }
                }
                ContextInput::Flush => {
                    deferred.flushes += 1;
                    let flush = frames::flush_done(id, deferred.flushes);
                    self.send(flush, None, true).await;
                }
                ContextInput::End => {
                    self.contexts.remove(id);
                    self.recent.insert(Arc::clone(id), Ended::Done);
                    self.send(frames::done(id), None, true).await;
                    self.maybe_drained().await;
                }
                ContextInput::Cancel => {}
            }
            return Ok(());
        }
        if let (ContextInput::Append { text }, Some(m)) = (&input, &ctx.meter) {
            m.add_chars(text.chars().count() as u64);
        }
        push(ctx, input)
    }

    async fn on_internal(&mut self, msg: Internal) {
        match msg {
            Internal::Started { context_id, generation, inputs } => {
                let Some(ctx) = self.contexts.get_mut(&context_id).filter(|c| c.generation == generation)
                else {
                    // Cancelled while starting: dropping `inputs` ends the job.
                    return;
                };
                let Inputs::Starting(pending) = std::mem::replace(&mut ctx.inputs, Inputs::Running(inputs))
                else {
                    return;
                };
                for input in pending {
                    if let Err(e) = push(ctx, input) {
                        self.fail(&context_id, e).await;
                        return;
                    }
                }
            }
            Internal::Finished { context_id, generation, ok } => {
                if self
                    .contexts
                    .get(&context_id)
                    .is_some_and(|c| c.generation == generation && c.task.is_some())
                {
                    self.contexts.remove(&context_id);
                    let how = if ok { Ended::Done } else { Ended::Failed(Instant::now()) };
                    self.recent.insert(context_id, how);
                    self.maybe_drained().await;
                }
            }
        }
    }

    /// Ends every context that has had nothing to do for the context idle timeout (deferred ones without text,
    /// running ones whose job has spoken everything and waits for text). Contexts waiting for a worker slot, and
    /// ended ones finishing their audio, are not idle.
    async fn close_idle_contexts(&mut self) {
        let limit = self.config.context_idle_timeout;
        let idle: Vec<Arc<str>> = self
            .contexts
            .iter()
            .filter(|(_, c)| {
                !c.ended
                    && matches!(c.inputs, Inputs::Deferred(_) | Inputs::Running(_))
                    && c.activity.idle_for() >= limit + c.buffer_delay
            })
            .map(|(id, _)| Arc::clone(id))
            .collect();
        for id in idle {
            metrics::counter!(chorus_proto::metrics::WS_CONTEXTS_CLOSED_TOTAL, "reason" => "idle")
                .increment(1);
            let e = ApiError::new(
                ErrorCode::Timeout,
                format!(
                    "context idle for {} s (no text and nothing left to speak): closed; send text sooner, or end \
                     contexts with continue=false",
                    limit.as_secs_f64()
                ),
            );
            self.fail(&id, e).await;
        }
    }

    /// True when the socket's tenant key is no longer valid (revoked or removed).
    fn key_revoked(&self) -> bool {
        let Some(tenant) = &self.caller.tenant else { return false };
        matches!(self.state.license.check_hash(&tenant.sha256), TenantCheck::Revoked | TenantCheck::Unknown)
    }

    /// The socket's key was revoked: every context ends with a 401 `error`, and the socket closes (1008).
    async fn revoke(&mut self) {
        tracing::info!(contexts = self.contexts.len(), "API key revoked: closing its WebSocket.");
        let e =
            ApiError::new(ErrorCode::Unauthorized, "this API key has been revoked: the connection is closed");
        let ids: Vec<Arc<str>> = self.contexts.keys().cloned().collect();
        metrics::counter!(chorus_proto::metrics::WS_CONTEXTS_CLOSED_TOTAL, "reason" => "revoked")
            .increment(ids.len() as u64);
        if ids.is_empty() {
            self.send_error(&e, None).await;
        }
        for id in ids {
            self.fail(&id, e.clone()).await;
        }
        self.close(1008, "api key revoked").await;
    }

    /// Ends a context with an error event: the job stops and nothing else is sent for it.
    async fn fail(&mut self, id: &Arc<str>, error: ApiError) {
        let mut error = error;
        if let Some(ctx) = self.contexts.remove(id) {
            error = error.with_request_id(&ctx.request_id);
            stop(ctx, error.code.as_str());
        }
        if error.request_id.is_empty() {
            error = error.with_request_id(&new_request_id());
        }
        self.recent.insert(Arc::clone(id), Ended::Failed(Instant::now()));
        self.send_error(&error, Some(id)).await;
        self.maybe_drained().await;
    }

    async fn send_error(&self, error: &ApiError, context_id: Option<&str>) {
        let error = if error.request_id.is_empty() {
            error.clone().with_request_id(&new_request_id())
        } else {
            error.clone()
        };
        tracing::debug!(request_id = %error.request_id, error = %error, "WebSocket error event.");
        self.send(frames::error(&error, context_id), None, false).await;
    }

    async fn send(&self, text: String, muted: Option<Arc<AtomicBool>>, traffic: bool) {
        // Fails only when the writer is gone; the loop notices that on its own.
        let _ = self.out.send(Outgoing::Frame { text, muted, traffic }).await;
    }

    /// Starts draining for a server shutdown.
    async fn drain(&mut self) {
        tracing::debug!(contexts = self.contexts.len(), "Shutdown: draining the WebSocket connection.");
        self.phase = Phase::Draining { deadline: Instant::now() + self.config.drain_timeout };
        self.maybe_drained().await;
    }

    /// The drain time is over: every context still open ends with a 503 `error`, then the socket closes (1001).
    async fn drain_deadline(&mut self) {
        let ids: Vec<Arc<str>> = self.contexts.keys().cloned().collect();
        let e = ApiError::new(
            ErrorCode::Unserviceable,
            format!(
                "the server is shutting down and this context did not end within {} s; reconnect and send it again",
                self.config.drain_timeout.as_secs_f64()
            ),
        );
        for id in ids {
            self.fail(&id, e.clone()).await;
        }
        self.close(1001, "server shutting down").await;
    }

    async fn maybe_drained(&mut self) {
        if matches!(self.phase, Phase::Draining { .. }) && self.contexts.is_empty() {
            self.close(1001, "server shutting down").await;
        }
    }

    /// Stops every context, sends a close frame after what is queued, and waits (bounded) for the client's.
    async fn close(&mut self, code: u16, reason: &'static str) {
        if matches!(self.phase, Phase::Closing { .. }) {
            return;
        }
        tracing::debug!(code, reason, "Closing the WebSocket connection.");
        self.abort_all(CLIENT_CLOSED);
        let timeout = self.config.close_timeout;
        let queued = tokio::time::timeout(timeout, self.out.send(Outgoing::Close { code, reason })).await;
        let deadline = match queued {
            Ok(Ok(())) => Instant::now() + timeout,
            // The writer is stuck or gone: no close handshake is possible.
            Ok(Err(_)) | Err(_) => Instant::now(),
        };
        self.phase = Phase::Closing { deadline };
    }

    /// Stops every job (socket closing or gone), recording `status`. Nothing more is sent for any context.
    fn abort_all(&mut self, status: &str) {
        for (_, ctx) in self.contexts.drain() {
            stop(ctx, status);
        }
    }
}

/// True when `text` has something besides whitespace (what makes a context start its job).
fn has_text(text: &str) -> bool {
    text.chars().any(|c| !c.is_whitespace())
}

/// Stops a context's job and silences it: its usage recorded with `status`, Cancel to the worker, the task aborted
/// (dropping the job handle), and its frames still queued dropped by the writer.
fn stop(ctx: Context, status: &str) {
    ctx.muted.store(true, Ordering::Release);
    if let Some(meter) = &ctx.meter {
        meter.finish(status);
    }
    if let Inputs::Running(inputs) = &ctx.inputs {
        // Full or disconnected: the dropped handle stops the worker anyway.
        let _ = inputs.try_send(ContextInput::Cancel);
    }
    if let Some(task) = &ctx.task {
        task.abort();
    }
}

/// Queues one input for a context's worker. A full queue means the client sends faster than it can be served.
fn push(ctx: &mut Context, input: ContextInput) -> Result<(), ApiError> {
    let flooded = || ApiError {
        status: StatusCode::TOO_MANY_REQUESTS,
        title: "Too many inputs".into(),
        ..ApiError::invalid(format!(
            "more than {} inputs are waiting on this context; send text in fewer, larger messages",
            chorus_bus::INPUT_BUFFER
        ))
    };
    match &mut ctx.inputs {
        // Deferred contexts take their inputs in `Connection::feed`.
        Inputs::Deferred(_) => Ok(()),
        Inputs::Starting(pending) => {
            if pending.len() >= chorus_bus::INPUT_BUFFER {
                return Err(flooded());
            }
            pending.push(input);
            Ok(())
        }
        Inputs::Running(inputs) => match inputs.try_send(input) {
            Ok(()) => Ok(()),
            Err(crossbeam_channel::TrySendError::Full(_)) => Err(flooded()),
            // The job already ended; its task reports how (done or error).
            Err(crossbeam_channel::TrySendError::Disconnected(_)) => Ok(()),
        },
    }
}
