//! API key authentication.
//!
//! With no key configured ([`ApiKeys::is_open`](crate::ApiKeys::is_open)) every request passes. Otherwise a
//! request must carry a configured key in one of the forms the Cartesia clients use:
//!
//! - `Authorization: Bearer <key>` (the 4.x SDKs),
//! - `X-API-Key: <key>` (older docs, self-hosted smoke tests),
//! - the query parameter `api_key=<key>` or `access_token=<key>` (browsers, which cannot set headers on a
//!   WebSocket handshake).
//!
//! `GET /` and `GET /status` are always open: the status probe cannot carry keys. A missing or wrong key is a
//! 401 in the Cartesia error JSON (the OpenAI error shape under `/v1/`), with `WWW-Authenticate: Bearer`.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::Response;
use chorus_proto::ErrorCode;

use crate::error::ApiError;
use crate::middleware::{RequestId, query_param};
use crate::routes::error_response;
use crate::state::AppState;

/// Paths that never need a key (with `GET` or `HEAD`).
const OPEN_PATHS: [&str; 2] = ["/", "/status"];

/// The authentication middleware (install with `axum::middleware::from_fn_with_state`).
pub async fn require_api_key(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let keys = &state.config.api_keys;
    let open_route =
        matches!(*req.method(), Method::GET | Method::HEAD) && OPEN_PATHS.contains(&req.uri().path());
    if keys.is_open() || open_route {
        return next.run(req).await;
    }
    let verdict = match presented_key(req.headers(), req.uri()) {
        None => Err("missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"),
        Some(key) if keys.accepts(&key) => Ok(()),
        Some(_) => Err("invalid API key"),
    };
    match verdict {
        Ok(()) => next.run(req).await,
        Err(message) => {
            let request_id = RequestId::from_extensions(req.extensions());
            tracing::info!(reason = message, "Request refused: not authenticated.");
            let error = ApiError::new(ErrorCode::Unauthorized, message).with_request_id(request_id.as_str());
            let mut response = error_response(req.uri().path(), error);
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
    }
}

/// The key the request presents, in order of precedence: `Authorization: Bearer`, `X-API-Key`, query
/// `api_key`, query `access_token`. Empty values count as absent.
fn presented_key(headers: &HeaderMap, uri: &axum::http::Uri) -> Option<String> {
    let bearer = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| {
        let (scheme, token) = v.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_owned())
    });
    let x_api_key = || headers.get("x-api-key").and_then(|v| v.to_str().ok()).map(|v| v.trim().to_owned());
    bearer
        .filter(|k| !k.is_empty())
        .or_else(|| x_api_key().filter(|k| !k.is_empty()))
        .or_else(|| query_param(uri, "api_key").filter(|k| !k.is_empty()))
        .or_else(|| query_param(uri, "access_token").filter(|k| !k.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(headers: &[(&'static str, &'static str)], uri: &str) -> Option<String> {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(*name, HeaderValue::from_static(value));
        }
        presented_key(&map, &uri.parse().unwrap())
    }

    #[test]
    fn every_form_is_read() {
        assert_eq!(key(&[("authorization", "Bearer k1")], "/x").as_deref(), Some("k1"));
        assert_eq!(key(&[("authorization", "bearer  k1 ")], "/x").as_deref(), Some("k1"));
        assert_eq!(key(&[("x-api-key", "k2")], "/x").as_deref(), Some("k2"));
        assert_eq!(key(&[], "/x?api_key=k3").as_deref(), Some("k3"));
        assert_eq!(key(&[], "/x?access_token=k4").as_deref(), Some("k4"));
        assert_eq!(key(&[("authorization", "Basic abc")], "/x"), None);
        assert_eq!(key(&[("authorization", "Bearer ")], "/x?api_key=k3").as_deref(), Some("k3"));
        assert_eq!(key(&[], "/x"), None);
    }
}
