//! The router and the server loop.
//!
//! Layers, outermost first: CORS (when origins are configured) -> request counter (`chorus_requests_total`) -> request id (header, extension, tracing
//! span) -> `cartesia-version` echo -> body limit -> API key check -> the routes. Unknown paths answer 404 and wrong methods 405, both in the Cartesia error JSON
//! (OpenAI's under `/v1/`).

use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, OriginalUri};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use chorus_proto::ErrorCode;

use crate::auth::require_api_key;
use crate::error::ApiError;
use crate::error::error_response;
use crate::middleware::MAX_BODY_BYTES;
use crate::middleware::{RequestId, cartesia_version, count_requests, refuse_large_bodies, request_id};
use crate::routes::{dicts, openai, status, tts, voices};
use crate::state::AppState;

/// How long [`serve`] waits, once shutdown is signalled, for open responses (streams) to finish.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// The whole HTTP API, ready to serve.
///
/// With CORS origins configured ([`crate::ApiConfig::cors`]), the CORS layer is outermost: preflights are answered
/// before authentication, and every response carries the CORS headers. An invalid origin is refused earlier, when
/// the configuration is read ([`crate::cors::CorsConfig::validate`]); here it is logged and CORS stays off.
pub fn router(state: AppState) -> Router {
    let cors = match state.config.cors.layer() {
        Ok(layer) => layer,
        Err(e) => {
            tracing::error!(error = %e, "CORS is off.");
            None
        }
    };
    let router = routes()
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), require_api_key))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(refuse_large_bodies))
        .layer(axum::middleware::from_fn(cartesia_version))
        .layer(axum::middleware::from_fn(request_id))
        .layer(axum::middleware::from_fn(count_requests))
        .with_state(state);
    match cors {
        Some(layer) => router.layer(layer),
        None => router,
    }
}

/// Every route. Routes must be added here, before [`router`] applies the fallbacks and layers: a route added
/// after `.layer()` would bypass authentication.
fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(status::status))
        .route("/status", get(status::status))
        .route("/tts/bytes", post(tts::bytes))
        .route("/tts/sse", post(tts::sse))
        // ---- WebSocket -------------------------------------------------------------------------------------
        // The WebSocket route goes here (authentication and the request id apply to its handshake):
        .route("/tts/websocket", get(crate::ws::handler))
        // -----------------------------------------------------------------------------------------------------
        .route("/voices", get(voices::list).post(voices::create))
        .route("/voices/", get(voices::list).post(voices::create))
        .route("/voices/{id}", get(voices::get).patch(voices::update).delete(voices::delete))
        .route("/pronunciation-dicts", get(dicts::list).post(dicts::create))
        .route("/pronunciation-dicts/", get(dicts::list).post(dicts::create))
        .route("/pronunciation-dicts/{id}", get(dicts::get).patch(dicts::update).delete(dicts::delete))
        .route("/access-token", post(crate::token::mint))
        .route("/v1/audio/speech", post(openai::speech))
        .route("/v1/models", get(openai::models))
}

async fn not_found(request_id: RequestId, method: Method, OriginalUri(uri): OriginalUri) -> Response {
    let error = ApiError::new(
        ErrorCode::NotFound,
        format!("no route for {method} {}", crate::error::echo(uri.path())),
    );
    error_response(uri.path(), error.with_request_id(request_id.as_str()))
}

async fn method_not_allowed(
    request_id: RequestId,
    method: Method,
    OriginalUri(uri): OriginalUri,
) -> Response {
    let error = ApiError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        title: "Method not allowed".into(),
        ..ApiError::invalid(format!("{method} is not allowed on {}", crate::error::echo(uri.path())))
    };
    error_response(uri.path(), error.with_request_id(request_id.as_str()))
}

/// Serves `router` on `listener` with the default connection policy ([`crate::serve::ServeConfig`]) until
/// `shutdown` completes, then stops accepting connections and lets open responses finish, for at most
/// [`DRAIN_TIMEOUT`].
///
/// Upgraded connections (WebSockets) are not waited for: their handler closes them on shutdown.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    crate::serve::serve(listener, router, draining_config(), shutdown).await
}

/// [`serve`] over TLS: each accepted connection goes through [`TlsAcceptor`](crate::tls::TlsAcceptor) (HTTP/2 or
/// HTTP/1.1 by ALPN; WebSockets over either).
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    tls: crate::tls::TlsAcceptor,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    crate::serve::serve_with(listener, router, draining_config(), tls, shutdown).await
}

/// The default connection policy, draining open responses for at most [`DRAIN_TIMEOUT`].
fn draining_config() -> crate::serve::ServeConfig {
    crate::serve::ServeConfig { drain_timeout: DRAIN_TIMEOUT, ..crate::serve::ServeConfig::default() }
}
/// The API server running on its listener, with the WebSockets' own shutdown switch: WebSockets outlive the HTTP
/// server's graceful shutdown, so they are drained and closed (1001) through it.
#[derive(Debug)]
pub struct RunningApi {
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    ws_shutdown: crate::ws::WsShutdown,
    /// How long shutdown waits for WebSockets: their drain, their close handshake, and a margin.
    ws_wait: Duration,
}

impl RunningApi {
    /// Serves `state` on `listener` (over `tls` when given) with the connection policy `serve` and the WebSocket
    /// settings `ws`, until `stop` turns true.
    pub fn start(
        listener: tokio::net::TcpListener,
        state: AppState,
        serve: crate::serve::ServeConfig,
        ws: crate::ws::WsConfig,
        tls: Option<crate::tls::TlsAcceptor>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        let ws_shutdown = crate::ws::WsShutdown::new();
        let ws_wait = ws.drain_timeout + ws.close_timeout + Duration::from_secs(2);
        let app = router(state).layer(axum::Extension(ws.with_shutdown(&ws_shutdown)));
        let shutdown = async move {
            let _ = stop.changed().await;
        };
        let server = match tls {
            Some(tls) => tokio::spawn(crate::serve::serve_with(listener, app, serve, tls, shutdown)),
            None => tokio::spawn(crate::serve::serve(listener, app, serve, shutdown)),
        };
        Self { server, ws_shutdown, ws_wait }
    }

    /// Shuts down: WebSockets drain and close, `stop` is sent (the HTTP server and whatever else follows it stop
    /// accepting), `meanwhile` runs (a worker's drain), then the open responses and WebSockets are waited for, at
    /// most the WebSockets' drain and close time in all.
    pub async fn shut_down(
        self,
        stop: &tokio::sync::watch::Sender<bool>,
        meanwhile: impl Future<Output = ()>,
    ) {
        let deadline = tokio::time::Instant::now() + self.ws_wait;
        self.ws_shutdown.trigger();
        let _ = stop.send(true);
        meanwhile.await;
        let _ = tokio::time::timeout_at(deadline, self.server).await;
        let _ = tokio::time::timeout_at(deadline, self.ws_shutdown.wait_closed()).await;
    }
}
