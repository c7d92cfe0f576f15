//! Middleware every request passes through: the request id (header, extension, tracing span) and the
//! `cartesia-version` echo.

use std::convert::Infallible;
use std::time::Instant;

use axum::extract::{FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Uri};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

/// Largest request body accepted (1 MiB): far above the 50,000-character transcript limit (at most 200 kB of
/// UTF-8), so an over-long transcript gets its own `text_too_long` error, not a 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// A fresh request id (UUID v4).
pub fn new_request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The header carrying the request id, both ways.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// The Cartesia API version header, echoed back when the client sends it.
pub const CARTESIA_VERSION_HEADER: &str = "cartesia-version";

/// The id of the current request: the client's `x-request-id` when it is sane, else a fresh UUID.
///
/// [`request_id`] puts it in the request's extensions; as an extractor it never fails (a request that did not go
/// through the middleware gets a fresh id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

impl RequestId {
    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id the middleware stored in `extensions`, or a fresh one.
    pub fn from_extensions(extensions: &axum::http::Extensions) -> Self {
        extensions.get::<RequestId>().cloned().unwrap_or_else(|| RequestId(new_request_id()))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self::from_extensions(&parts.extensions))
    }
}

/// A client-supplied id is kept when it is 1-128 characters of `[A-Za-z0-9._:-]` (enough for UUIDs, ULIDs and
/// trace ids; nothing that could forge a log line or a header).
fn is_sane_request_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// Gives the request its id, runs it inside a `request` tracing span, and returns the id in the response's
/// `x-request-id` header.
pub async fn request_id(mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| is_sane_request_id(v))
        .map_or_else(new_request_id, str::to_owned);
    req.extensions_mut().insert(RequestId(id.clone()));
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %req.method(),
        path = %req.uri().path(),
    );
    let started = Instant::now();
    let mut response = next.run(req).instrument(span.clone()).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    span.in_scope(|| {
        tracing::debug!(
            status = response.status().as_u16(),
            elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
            "Response headers ready."
        );
    });
    response
}

/// Echoes the client's Cartesia API version (query `cartesia_version`, which wins, or the `cartesia-version`
/// header) in the response. Any value is accepted: an unknown version gets the newest behaviour.
pub async fn cartesia_version(req: Request, next: Next) -> Response {
    let version = query_param(req.uri(), "cartesia_version")
        .and_then(|v| HeaderValue::from_str(&v).ok())
        .or_else(|| req.headers().get(CARTESIA_VERSION_HEADER).cloned());
    let mut response = next.run(req).await;
    if let Some(version) = version {
        response.headers_mut().insert(CARTESIA_VERSION_HEADER, version);
    }
    response
}

/// Answers 413 at once to a request whose `Content-Length` is over [`MAX_BODY_BYTES`], without
/// reading (or waiting for) its body.
pub async fn refuse_large_bodies(req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(len) = declared
        && len > MAX_BODY_BYTES as u64
    {
        let request_id = RequestId::from_extensions(req.extensions());
        let error = crate::ApiError {
            status: axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            title: "Request body too large".into(),
            ..crate::ApiError::invalid(format!(
                "the request body is {len} bytes; the limit is {} bytes",
                MAX_BODY_BYTES
            ))
        };
        let mut response =
            crate::error::error_response(req.uri().path(), error.with_request_id(request_id.as_str()));
        // The body was not read: the connection cannot be reused.
        response.headers_mut().insert(axum::http::header::CONNECTION, HeaderValue::from_static("close"));
        return response;
    }
    next.run(req).await
}

/// Counts every response in `chorus_requests_total{route,status}` (authentication failures, limits and unknown
/// paths included).
pub async fn count_requests(req: Request, next: Next) -> Response {
    let route = route_label(req.uri().path());
    let response = next.run(req).await;
    metrics::counter!(
        chorus_proto::metrics::REQUESTS_TOTAL,
        "route" => route,
        "status" => response.status().as_str().to_owned()
    )
    .increment(1);
    response
}

/// The route template a path belongs to: a bounded label (ids are not labels).
fn route_label(path: &str) -> &'static str {
    match path {
        "/" => "/",
        "/status" => "/status",
        "/tts/bytes" => "/tts/bytes",
        "/tts/sse" => "/tts/sse",
        "/tts/websocket" => "/tts/websocket",
        "/voices" | "/voices/" => "/voices",
        "/pronunciation-dicts" | "/pronunciation-dicts/" => "/pronunciation-dicts",
        "/v1/audio/speech" => "/v1/audio/speech",
        "/v1/models" => "/v1/models",
        "/access-token" => "/access-token",
        p if p.starts_with("/voices/") => "/voices/{id}",
        p if p.starts_with("/pronunciation-dicts/") => "/pronunciation-dicts/{id}",
        _ => "other",
    }
}

/// The first value of query parameter `name`, percent-decoded; `None` when absent or the query is malformed.
pub(crate) fn query_param(uri: &Uri, name: &str) -> Option<String> {
    uri.query()?;
    let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(uri).ok()?;
    pairs.into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_id_sanity() {
        assert!(is_sane_request_id("3f0c1a4e-8b9d-4c1e-9f2a-0123456789ab"));
        assert!(is_sane_request_id("trace:abc.def_1"));
        assert!(!is_sane_request_id(""));
        assert!(!is_sane_request_id("has space"));
        assert!(!is_sane_request_id("new\nline"));
        assert!(!is_sane_request_id(&"a".repeat(129)));
    }

    #[test]
    fn route_labels_are_templates() {
        assert_eq!(route_label("/voices/abc-123"), "/voices/{id}");
        assert_eq!(route_label("/voices/"), "/voices");
        assert_eq!(route_label("/pronunciation-dicts/x"), "/pronunciation-dicts/{id}");
        assert_eq!(route_label("/tts/bytes"), "/tts/bytes");
        assert_eq!(route_label("/etc/passwd"), "other");
    }

    #[test]
    fn query_params_decode() {
        let uri: Uri = "/tts/websocket?api_key=a%20b&cartesia_version=2026-08-14".parse().unwrap();
        assert_eq!(query_param(&uri, "api_key").as_deref(), Some("a b"));
        assert_eq!(query_param(&uri, "cartesia_version").as_deref(), Some("2026-08-14"));
        assert_eq!(query_param(&uri, "access_token"), None);
        let bare: Uri = "/voices".parse().unwrap();
        assert_eq!(query_param(&bare, "api_key"), None);
    }
}
