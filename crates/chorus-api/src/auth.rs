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
//!
//! With a license proxy ([`crate::license`]), tenant keys from the proxy are accepted too (compared by SHA-256),
//! a revoked one is refused, entitlement is checked (403 `license_inactive` past the grace period), and the key's
//! limits are applied (429 with `Retry-After`). The request then carries a [`Caller`] (its tenant name and the
//! in-flight guard, held until the response body ends) and its [`Credential`].
//!
//! A presented credential shaped like a JWT is an access token ([`crate::token`]): verified with the deployment's
//! public key, valid on the synthesis routes only, standing for the key that minted it (a tenant key's limits and
//! revocation apply to it).

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::Response;
use chorus_proto::ErrorCode;

use crate::error::{ApiError, error_response};
use crate::license::{Caller, TenantCheck};
use crate::middleware::{RequestId, query_param};
use crate::state::AppState;
use crate::token::Credential;
use chorus_proto::token::looks_like_token;

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Paths that never need a key (with `GET` or `HEAD`).
const OPEN_PATHS: [&str; 2] = ["/", "/status"];

/// The TTS WebSocket.
const WEBSOCKET_PATH: &str = "/tts/websocket";

/// Paths that start a synthesis (counted against the license's stream limit).
const SYNTHESIS_PATHS: [&str; 4] = ["/tts/bytes", "/tts/sse", "/tts/websocket", "/v1/audio/speech"];

/// The authentication middleware (install with `axum::middleware::from_fn_with_state`).
pub async fn require_api_key(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let keys = &state.config.api_keys;
    let gate = &state.license;
    let open_route =
        matches!(*req.method(), Method::GET | Method::HEAD) && OPEN_PATHS.contains(&req.uri().path());
    if open_route {
        return next.run(req).await;
    }
    let path = req.uri().path().to_owned();
    let request_id = RequestId::from_extensions(req.extensions());
    let refuse = |error: ApiError| error_response(&path, error.with_request_id(request_id.as_str()));
    let unauthorized = |message: &'static str| {
        tracing::info!(reason = message, "Request refused: not authenticated.");
        let mut response = refuse(ApiError::new(ErrorCode::Unauthorized, message));
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        response
    };
    let not_yet = || {
        refuse(ApiError::new(
            ErrorCode::Unserviceable,
            "the license proxy has not been reached yet, so this key cannot be checked; retry shortly",
        ))
    };

    let mut tenant = None;
    let synthesis = SYNTHESIS_PATHS.contains(&path.as_str());
    let mut credential = Credential::Open;
    if !keys.is_open() || gate.has_tenants() || gate.awaiting() || gate.requires_keys() {
        match presented_key(req.headers(), req.uri()) {
            Some(key) if looks_like_token(&key) => match crate::token::verify(gate, keys, &key, unix_now()) {
                Ok(_) if !synthesis => {
                    return unauthorized(
                        "an access token grants text to speech only (/tts/bytes, /tts/sse, /tts/websocket, \
                             /v1/audio/speech): use an API key here",
                    );
                }
                Ok(verified) => {
                    tenant = verified.tenant;
                    credential = Credential::Token(Box::new(verified.claims));
                }
                Err(why) => return unauthorized(why),
            },
            Some(key) if !keys.is_open() && keys.accepts(&key) => {
                credential = Credential::Static { sha256: chorus_proto::secret::hash_key(&key) };
            }
            None if keys.is_open() && gate.awaiting() => return not_yet(),
            None => {
                return unauthorized(
                    "missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
                );
            }
            Some(key) => match gate.check_key(&key) {
                TenantCheck::Known(t) => {
                    credential = Credential::Tenant(t.clone());
                    tenant = Some(t);
                }
                TenantCheck::Revoked => return unauthorized("this API key has been revoked"),
                TenantCheck::Unknown => return unauthorized("invalid API key"),
                TenantCheck::NotYetKnown => return not_yet(),
            },
        }
    }
    if let Err(e) = gate.check_entitlement() {
        tracing::warn!(error = %e, "Request refused: the license is not active.");
        return refuse(e);
    }
    // A WebSocket is not one request but a series of contexts: each is admitted (limits, the license's streams)
    // when it starts, and the socket itself holds nothing.
    let guard = if path == WEBSOCKET_PATH {
        None
    } else {
        match gate.admit(tenant.as_ref(), synthesis) {
            Ok(guard) => guard,
            Err(e) => {
                tracing::info!(error = %e, "Request refused: over a limit.");
                return refuse(e);
            }
        }
    };
    let caller = Caller { key_name: tenant.as_ref().map(|t| t.name.clone()), guard, tenant };
    let hold = caller.guard.is_some();
    req.extensions_mut().insert(caller.clone());
    req.extensions_mut().insert(credential);
    let response = next.run(req).await;
    if !hold {
        return response;
    }
    // The in-flight slot is released when the body ends (or the client goes away), not when the headers leave.
    response.map(|body| {
        let stream = futures_util::StreamExt::map(body.into_data_stream(), move |chunk| {
            let _held = &caller;
            chunk
        });
        Body::from_stream(stream)
    })
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
