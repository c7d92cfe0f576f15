//! The accept loop and the connection policy of every HTTP port (the API, the internal metrics port, the license
//! proxy's port): what a client may hold, and for how long.
//!
//! ```text
//! TcpListener::accept ─ limits (total, per address) ─ Wrap::wrap (plain TCP; TLS goes here) ─ Guarded (timeouts)
//!        ─ hyper HTTP/1 (upgrades on) ─ the router
//! ```
//!
//! - **Limits at accept**: at most [`ServeConfig::max_connections`] connections at once (by default below the
//!   process's file-descriptor limit, so the process always keeps descriptors for its own files and the bus), and
//!   [`ServeConfig::max_connections_per_ip`] from one address. A connection beyond them gets a one-line `503` and is
//!   closed at once, so that it holds no descriptor. Accept errors (`EMFILE`...) are logged at most every 5 s and
//!   never spin.
//! - **Timeouts** (enforced on the stream itself, [`Guarded`], whatever hyper does): a request's head must arrive
//!   within [`ServeConfig::header_timeout`] of its first byte (a new connection's first byte too), its body within
//!   [`ServeConfig::body_timeout`] of the head (a `408`), and a keep-alive connection may sit idle between requests for
//!   [`ServeConfig::idle_timeout`]. A write that makes no progress for [`ServeConfig::write_stall_timeout`] (a client
//!   that stopped reading) drops the connection: its stream, and the job behind it, stop. Upgraded connections
//!   (WebSockets) keep the write stall timeout; their reads are the WebSocket's business (its own idle rules).
//! - **Shutdown**: stop accepting, let open requests finish for at most [`ServeConfig::drain_timeout`]. Upgraded
//!   connections are not waited for here: their handlers close them (see [`crate::ws::WsShutdown`]).
//!
//! To serve over TLS, implement [`Wrap`] (the handshake runs in the connection's task, bounded by the header
//! timeout) and call [`serve_with`]; everything else stays the same. [`crate::tls::TlsAcceptor`] is that `Wrap`;
//! a stream that negotiated `h2` is served as HTTP/2 ([`MAX_HTTP2_STREAMS`] at once, WebSockets over extended
//! CONNECT), where the header and body timeouts give way to the idle timeout of the connection as a whole.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use bytes::Bytes;
use chorus_proto::metrics as names;
use http_body::{Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};

use chorus_bus::BoxFuture;

/// What a port allows its clients. [`ServeConfig::default`] fits the process's file-descriptor limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeConfig {
    /// Names the port in metrics and logs (`api`, `internal`, `license`).
    pub name: &'static str,
    /// A request's head (and a new connection's first request) must arrive within this long of its first byte.
    pub header_timeout: Duration,
    /// A request's body must arrive within this long of its head.
    pub body_timeout: Duration,
    /// A keep-alive connection is closed after this long without a request.
    pub idle_timeout: Duration,
    /// A write that makes no progress for this long drops the connection.
    pub write_stall_timeout: Duration,
    /// Connections open at once, in all.
    pub max_connections: usize,
    /// Connections open at once from one address.
    pub max_connections_per_ip: usize,
    /// On shutdown, how long open responses may take to finish.
    pub drain_timeout: Duration,
}

/// Descriptors kept for the process itself (files, the bus, artifact store clients, model files), at least.
const FD_RESERVE: u64 = 64;
/// The largest default for [`ServeConfig::max_connections`], whatever the descriptor limit.
const MAX_CONNECTIONS_CAP: u64 = 65_536;

impl Default for ServeConfig {
    fn default() -> Self {
        let (max_connections, max_connections_per_ip) = default_connection_limits(fd_limit());
        Self {
            name: "api",
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            write_stall_timeout: Duration::from_secs(30),
            max_connections,
            max_connections_per_ip,
            drain_timeout: Duration::from_secs(30),
        }
    }
}

impl ServeConfig {
    /// The defaults, named `name`.
    pub fn named(name: &'static str) -> Self {
        Self { name, ..Self::default() }
    }

    /// Refuses settings that cannot work (zero timeouts or limits, a limit above what the descriptors allow).
    pub fn validate(&self) -> Result<(), String> {
        for (what, d) in [
            ("header timeout", self.header_timeout),
            ("body timeout", self.body_timeout),
            ("idle timeout", self.idle_timeout),
            ("write stall timeout", self.write_stall_timeout),
        ] {
            if d.is_zero() {
                return Err(format!("the {what} must be above 0"));
            }
        }
        if self.max_connections == 0 || self.max_connections_per_ip == 0 {
            return Err("connection limits must be at least 1".into());
        }
        if let Some(limit) = fd_limit() {
            let usable = limit.saturating_sub(FD_RESERVE.min(limit / 4));
            if self.max_connections as u64 > usable {
                return Err(format!(
                    "max connections {} is above what the file-descriptor limit ({limit}, `ulimit -n`) allows \
                     with room for the process itself ({usable}); lower it or raise the limit",
                    self.max_connections
                ));
            }
        }
        Ok(())
    }
}

/// The process's soft limit on open files, where it can be read.
pub fn fd_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        rustix::process::getrlimit(rustix::process::Resource::Nofile).current
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// `(total, per address)` for a descriptor limit: the total leaves an eighth (at least 64) to the process, the
/// per-address limit is half of it (at most 1024).
pub fn default_connection_limits(fd_limit: Option<u64>) -> (usize, usize) {
    let total = match fd_limit {
        Some(limit) => limit.saturating_sub((limit / 8).max(FD_RESERVE)).clamp(16, MAX_CONNECTIONS_CAP),
        None => 1024,
    };
    let per_ip = (total / 2).clamp(1, 1024);
    (usize::try_from(total).unwrap_or(1024), usize::try_from(per_ip).unwrap_or(512))
}

/// Turns an accepted TCP connection into the stream HTTP is spoken on: plain TCP ([`Plain`]), or a TLS session.
/// `wrap` runs in the connection's own task, bounded by [`ServeConfig::header_timeout`].
pub trait Wrap: Send + Sync + 'static {
    type Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static;
    fn wrap(&self, tcp: TcpStream, peer: SocketAddr) -> BoxFuture<'static, io::Result<Self::Stream>>;
    /// True when the stream speaks HTTP/2 (TLS with ALPN `h2`); HTTP/1.1 otherwise.
    fn http2(_stream: &Self::Stream) -> bool {
        false
    }
}

/// Plain TCP.
#[derive(Debug, Clone, Copy, Default)]
pub struct Plain;

impl Wrap for Plain {
    type Stream = TcpStream;
    fn wrap(&self, tcp: TcpStream, _peer: SocketAddr) -> BoxFuture<'static, io::Result<TcpStream>> {
        Box::pin(async move { Ok(tcp) })
    }
}

/// Serves `router` on `listener` over plain TCP until `shutdown` completes; see the module documentation.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    config: ServeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    serve_with(listener, router, config, Plain, shutdown).await
}

/// [`serve`] with the accepted connections turned into streams by `wrap` (TLS).
pub async fn serve_with<W: Wrap>(
    listener: TcpListener,
    router: Router,
    config: ServeConfig,
    wrap: W,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let config = Arc::new(config);
    let wrap = Arc::new(wrap);
    let limits = Arc::new(Limits::new(&config));
    let (stop_tx, stop_rx) = watch::channel(false);
    let accept_errors = Throttle::default();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (tcp, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                if accept_errors.ready(Duration::from_secs(5)) {
                    tracing::warn!(server = config.name, error = %e, "Cannot accept a connection (file descriptors?).");
                }
                // EMFILE and friends: give open connections a moment to close instead of spinning.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let permit = match limits.admit(peer.ip()) {
            Ok(permit) => permit,
            Err(reason) => {
                refuse(&tcp);
                metrics::counter!(names::CONNECTIONS_REFUSED_TOTAL, "server" => config.name, "reason" => reason)
                    .increment(1);
                if limits.refusals.ready(Duration::from_secs(5)) {
                    tracing::warn!(server = config.name, %peer, reason, "Connection refused: over the connection limit.");
                }
                continue;
            }
        };
        // Audio chunks must leave at once: without TCP_NODELAY, Nagle's algorithm and the client's delayed ACK can
        // hold the first chunk for tens of milliseconds.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "Cannot set TCP_NODELAY.");
        }
        let (config, wrap, router, stop) =
            (Arc::clone(&config), Arc::clone(&wrap), router.clone(), stop_rx.clone());
        tokio::spawn(async move { connection(tcp, peer, permit, config, wrap, router, stop).await });
    }
    drop(listener);
    tracing::info!(server = config.name, "Shutdown requested: no new connections; draining open responses.");
    stop_tx.send_replace(true);
    drop(stop_rx);
    if tokio::time::timeout(config.drain_timeout, stop_tx.closed()).await.is_err() {
        tracing::warn!(
            server = config.name,
            timeout_s = config.drain_timeout.as_secs(),
            "Responses still open after the drain timeout; stopping."
        );
    }
    Ok(())
}

/// The answer to a connection over the limits.
fn busy_response() -> &'static [u8] {
    static BUSY: std::sync::LazyLock<Vec<u8>> = std::sync::LazyLock::new(|| {
        let body = r#"{"error_code":"unserviceable","title":"Too many connections","message":"connection limit reached; retry shortly","request_id":""}"#;
        format!(
            "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    });
    &BUSY
}

/// A one-line answer to a connection over the limits, written only if the socket takes it at once.
fn refuse(tcp: &TcpStream) {
    let _ = tcp.try_write(busy_response());
}

async fn connection<W: Wrap>(
    tcp: TcpStream,
    peer: SocketAddr,
    permit: Permit,
    config: Arc<ServeConfig>,
    wrap: Arc<W>,
    router: Router,
    stop: watch::Receiver<bool>,
) {
    let stream = match tokio::time::timeout(config.header_timeout, wrap.wrap(tcp, peer)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            tracing::debug!(server = config.name, %peer, error = %e, "Connection set-up failed.");
            return;
        }
        Err(_) => {
            timed_out(config.name, "header");
            return;
        }
    };
    let http2 = W::http2(&stream);
    let shared = Arc::new(Shared::new(&config, http2));
    let io = hyper_util::rt::TokioIo::new(Guarded::new(stream, Arc::clone(&shared), permit));
    let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
        let (mut router, shared) = (router.clone(), Arc::clone(&shared));
        async move {
            // An HTTP/2 CONNECT is a WebSocket (RFC 8441): its stream stays busy for the connection's life.
            let tunnel = req.method() == axum::http::Method::CONNECT;
            shared.request_started(!http_body::Body::is_end_stream(req.body()));
            let req = req.map(|inner| Body::new(Watched::new(inner, Arc::clone(&shared), Shared::body_read)));
            let response = match tower::Service::call(&mut router, req).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            if response.status() == StatusCode::SWITCHING_PROTOCOLS {
                shared.set(Phase::Upgraded);
                return Ok::<_, std::convert::Infallible>(response);
            }
            if tunnel && response.status().is_success() {
                return Ok(response);
            }
            Ok(response.map(|inner| Body::new(Watched::new(inner, shared, Shared::response_done))))
        }
    });
    if http2 {
        // HTTP/2 (TLS, ALPN h2): requests are streams of one connection. Guarded's read deadlines then apply to the
        // connection as a whole: the idle timeout once no stream is open, none while one is (see `Shared`).
        let conn = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .timer(hyper_util::rt::TokioTimer::new())
            .max_concurrent_streams(MAX_HTTP2_STREAMS)
            .enable_connect_protocol()
            .serve_connection(io, service);
        return until_stopped(conn, |c| c.graceful_shutdown(), stop, config.name, peer).await;
    }
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        // Our own timeouts (Guarded) tell a request's head from an idle keep-alive; hyper's is one timer for both.
        .header_read_timeout(None)
        .serve_connection(io, service)
        .with_upgrades();
    until_stopped(conn, |c| c.graceful_shutdown(), stop, config.name, peer).await;
}

/// Serves a connection to its end, or until the server stops: then `shutdown` starts a graceful close (requests
/// in flight finish) and the connection is served until that is done.
async fn until_stopped<C: Future<Output = Result<(), hyper::Error>>>(
    conn: C,
    shutdown: impl FnOnce(Pin<&mut C>),
    mut stop: watch::Receiver<bool>,
    server: &'static str,
    peer: SocketAddr,
) {
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(server, %peer, error = %e, "Connection ended with an error.");
            }
        }
        () = stopping(&mut stop) => {
            shutdown(conn.as_mut());
            let _ = conn.await;
        }
    }
}

/// Streams (requests) one HTTP/2 connection may have open at once.
pub const MAX_HTTP2_STREAMS: u32 = 100;

/// Completes once shutdown starts (or the server is gone).
async fn stopping(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopping| *stopping).await;
}

fn timed_out(server: &'static str, kind: &'static str) {
    metrics::counter!(names::CONNECTION_TIMEOUTS_TOTAL, "server" => server, "kind" => kind).increment(1);
    tracing::debug!(server, kind, "Connection closed: timeout.");
}

// ---- limits ---------------------------------------------------------------------------------------------------

/// Logs at most once per interval.
#[derive(Debug, Default)]
struct Throttle(Mutex<Option<Instant>>);

impl Throttle {
    fn ready(&self, every: Duration) -> bool {
        let mut last = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < every) {
            return false;
        }
        *last = Some(now);
        true
    }
}

#[derive(Debug)]
struct Limits {
    name: &'static str,
    total: AtomicUsize,
    max_total: usize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    max_per_ip: usize,
    refusals: Throttle,
}

impl Limits {
    fn new(config: &ServeConfig) -> Self {
        Self {
            name: config.name,
            total: AtomicUsize::new(0),
            max_total: config.max_connections,
            per_ip: Mutex::new(HashMap::new()),
            max_per_ip: config.max_connections_per_ip,
            refusals: Throttle::default(),
        }
    }

    fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Permit, &'static str> {
        let ip = ip.to_canonical();
        let admitted = self
            .total
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < self.max_total).then_some(n + 1));
        if admitted.is_err() {
            return Err("total");
        }
        let mut per_ip = self.per_ip.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = per_ip.entry(ip).or_insert(0);
        if *count >= self.max_per_ip {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err("per_ip");
        }
        *count += 1;
        let open = self.total.load(Ordering::Acquire);
        metrics::gauge!(names::CONNECTIONS_OPEN, "server" => self.name).set(open as f64);
        Ok(Permit { limits: Arc::clone(self), ip })
    }
}

/// One admitted connection; released when the connection's stream is dropped (after an upgrade too).
#[derive(Debug)]
struct Permit {
    limits: Arc<Limits>,
    ip: IpAddr,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut per_ip = self.limits.per_ip.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = per_ip.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                per_ip.remove(&self.ip);
            }
        }
        drop(per_ip);
        let open = self.limits.total.fetch_sub(1, Ordering::AcqRel).saturating_sub(1);
        metrics::gauge!(names::CONNECTIONS_OPEN, "server" => self.limits.name).set(open as f64);
    }
}

// ---- the phase of a connection and its read deadline ------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for a request's first byte (the first request of a connection: `first`).
    Idle { since: Instant, first: bool },
    /// A request's head is arriving.
    Head { deadline: Instant },
    /// Its body is arriving.
    Body { deadline: Instant },
    /// The request is being answered: no read deadline.
    Busy,
    /// Upgraded (WebSocket): no read deadline.
    Upgraded,
}

#[derive(Debug)]
struct Shared {
    name: &'static str,
    phase: Mutex<Phase>,
    /// HTTP/2: requests overlap, so the phase follows the number of open streams instead (Busy while any is open,
    /// Idle once none is); a request's own head and body timeouts do not apply.
    multiplexed: bool,
    streams: AtomicUsize,
    header_timeout: Duration,
    body_timeout: Duration,
    idle_timeout: Duration,
    write_stall_timeout: Duration,
}

impl Shared {
    fn new(config: &ServeConfig, multiplexed: bool) -> Self {
        Self {
            name: config.name,
            phase: Mutex::new(Phase::Idle { since: Instant::now(), first: true }),
            multiplexed,
            streams: AtomicUsize::new(0),
            header_timeout: config.header_timeout,
            body_timeout: config.body_timeout,
            idle_timeout: config.idle_timeout,
            write_stall_timeout: config.write_stall_timeout,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Phase> {
        self.phase.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn set(&self, phase: Phase) {
        *self.lock() = phase;
    }

    fn request_started(&self, has_body: bool) {
        let mut phase = self.lock();
        if self.multiplexed {
            self.streams.fetch_add(1, Ordering::AcqRel);
            *phase = Phase::Busy;
            return;
        }
        if *phase != Phase::Upgraded {
            *phase = if has_body {
                Phase::Body { deadline: Instant::now() + self.body_timeout }
            } else {
                Phase::Busy
            };
        }
    }

    fn body_read(&self) {
        let mut phase = self.lock();
        if matches!(*phase, Phase::Body { .. }) {
            *phase = Phase::Busy;
        }
    }

    fn response_done(&self) {
        let mut phase = self.lock();
        if self.multiplexed {
            if self.streams.fetch_sub(1, Ordering::AcqRel) == 1 {
                *phase = Phase::Idle { since: Instant::now(), first: false };
            }
            return;
        }
        if *phase != Phase::Upgraded {
            *phase = Phase::Idle { since: Instant::now(), first: false };
        }
    }

    /// Bytes arrived: a request's head starts if the connection was idle (HTTP/1; an HTTP/2 connection also carries
    /// control frames, and stays idle until a stream opens).
    fn bytes_read(&self) {
        if self.multiplexed {
            return;
        }
        let mut phase = self.lock();
        if let Phase::Idle { .. } = *phase {
            *phase = Phase::Head { deadline: Instant::now() + self.header_timeout };
        }
    }

    /// When a pending read must have completed, and which timeout that is.
    fn read_deadline(&self) -> Option<(Instant, &'static str)> {
        match *self.lock() {
            Phase::Idle { since, first: true } => Some((since + self.header_timeout, "header")),
            Phase::Idle { since, first: false } => Some((since + self.idle_timeout, "idle")),
            Phase::Head { deadline } => Some((deadline, "header")),
            Phase::Body { deadline } => Some((deadline, "body")),
            Phase::Busy | Phase::Upgraded => None,
        }
    }
}

/// A request or response body that tells the connection, once, when it has ended: read or sent to the end, or
/// dropped. For a request that ends the body timeout; for a response the idle time starts then.
struct Watched<B> {
    inner: B,
    /// Taken when the body ends.
    shared: Option<Arc<Shared>>,
    on_end: fn(&Shared),
}

impl<B> Watched<B> {
    fn new(inner: B, shared: Arc<Shared>, on_end: fn(&Shared)) -> Self {
        Self { inner, shared: Some(shared), on_end }
    }

    fn end(&mut self) {
        if let Some(shared) = self.shared.take() {
            (self.on_end)(&shared);
        }
    }
}

impl<B: http_body::Body<Data = Bytes> + Unpin> http_body::Body for Watched<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if frame.is_none() || self.inner.is_end_stream() {
            self.end();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for Watched<B> {
    fn drop(&mut self) {
        self.end();
    }
}

/// An accepted stream with the connection's read deadlines and write stall timeout, holding its [`Permit`].
pub struct Guarded<S> {
    inner: S,
    shared: Arc<Shared>,
    read_timer: Option<Pin<Box<Sleep>>>,
    write_timer: Option<Pin<Box<Sleep>>>,
    _permit: Permit,
}

impl<S> std::fmt::Debug for Guarded<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guarded").field("phase", &*self.shared.lock()).finish_non_exhaustive()
    }
}

impl<S> Guarded<S> {
    fn new(inner: S, shared: Arc<Shared>, permit: Permit) -> Self {
        Self { inner, shared, read_timer: None, write_timer: None, _permit: permit }
    }

    /// A pending read: error once its deadline has passed (the timer wakes the task for that).
    fn read_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some((deadline, kind)) = self.shared.read_deadline() else {
            self.read_timer = None;
            return Poll::Pending;
        };
        let timer = self.read_timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        if Instant::now() >= deadline || timer.as_mut().poll(cx).is_ready() {
            timed_out(self.shared.name, kind);
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, format!("{kind} timeout"))));
        }
        Poll::Pending
    }

    /// A write's outcome: progress disarms the stall timer; a pending write arms it, and errors once it fires.
    fn write_outcome<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if poll.is_ready() {
            self.write_timer = None;
            return poll;
        }
        let stall = self.shared.write_stall_timeout;
        let timer = self.write_timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(stall)));
        if timer.as_mut().poll(cx).is_ready() {
            timed_out(self.shared.name, "write_stall");
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "write stalled")));
        }
        Poll::Pending
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.shared.bytes_read();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => self.read_pending(cx),
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, data);
        self.write_outcome(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.write_outcome(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.write_outcome(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// True when `error` (or a cause of it) is one of this module's read timeouts: a request body that did not arrive
/// in time (answered 408).
pub fn is_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if e.downcast_ref::<io::Error>().is_some_and(|io| io.kind() == io::ErrorKind::TimedOut) {
            return true;
        }
        cause = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_limits_stay_below_the_descriptor_limit() {
        assert_eq!(default_connection_limits(Some(1024)), (896, 448));
        assert_eq!(default_connection_limits(Some(256)), (192, 96));
        let (total, per_ip) = default_connection_limits(Some(1 << 20));
        assert_eq!((total, per_ip), (65_536, 1024));
        assert_eq!(default_connection_limits(Some(40)), (16, 8));
        assert_eq!(default_connection_limits(None), (1024, 512));
    }

    #[test]
    fn zero_settings_are_refused() {
        let ok = ServeConfig { max_connections: 8, ..ServeConfig::default() };
        assert!(ok.validate().is_ok(), "{:?}", ok.validate());
        assert!(ServeConfig { header_timeout: Duration::ZERO, ..ok.clone() }.validate().is_err());
        assert!(ServeConfig { max_connections_per_ip: 0, ..ok.clone() }.validate().is_err());
        if let Some(limit) = fd_limit() {
            let huge = usize::try_from(limit).unwrap_or(usize::MAX);
            assert!(ServeConfig { max_connections: huge, ..ok }.validate().is_err());
        }
    }

    #[test]
    fn the_busy_answer_is_well_formed() {
        let text = std::str::from_utf8(busy_response()).unwrap_or_default();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or_default();
        assert!(head.starts_with("HTTP/1.1 503"));
        assert!(head.contains(&format!("Content-Length: {}", body.len())), "{head}");
        let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        assert_eq!(v["error_code"], "unserviceable");
    }

    #[test]
    fn per_address_and_total_limits() {
        let config = ServeConfig { max_connections: 3, max_connections_per_ip: 2, ..ServeConfig::default() };
        let limits = Arc::new(Limits::new(&config));
        let a = IpAddr::from([127, 0, 0, 2]);
        let b: IpAddr = IpAddr::from([127, 0, 0, 3]);
        let p1 = limits.admit(a);
        let p2 = limits.admit(a);
        assert!(p1.is_ok() && p2.is_ok());
        assert_eq!(limits.admit(a).err(), Some("per_ip"));
        let p3 = limits.admit(b);
        assert!(p3.is_ok());
        assert_eq!(limits.admit(b).err(), Some("total"));
        drop(p1);
        assert!(limits.admit(b).is_ok(), "a freed slot is usable again");
    }
}
