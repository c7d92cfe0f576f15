//! The proxy's HTTP server (port 8080 by default): `POST /license`, `GET /license`, `GET /audit` (admin key),
//! `GET /healthz`, `GET /metrics`.
//!
//! Errors are JSON: `{"error_code": …, "title": …, "message": …, "request_id": …}`, with the status and title of
//! the error table ([`ErrorCode::row`]); a 500 carries its request id, under which the internal text is logged.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chorus_proto::ErrorCode;

use crate::license::{LicenseError, format_time};
use crate::proxy::LicenseProxy;
use crate::store::AcceptError;

/// Largest license document accepted.
pub const MAX_LICENSE_BYTES: usize = 64 * 1024;

/// Renders the Prometheus text of `/metrics`.
pub type MetricsRender = Arc<dyn Fn() -> String + Send + Sync>;

#[derive(Clone)]
struct AppState {
    proxy: Arc<LicenseProxy>,
    metrics: Option<MetricsRender>,
}

/// The proxy's routes; `/metrics` only when `metrics` is given (inside `chorus serve` the metrics port has its own),
/// and then a JSON 404 for other paths.
pub fn router(proxy: Arc<LicenseProxy>, metrics: Option<MetricsRender>) -> Router {
    let standalone = metrics.is_some();
    let mut router = Router::new()
        .route("/license", get(get_license).post(post_license))
        .route("/audit", get(audit))
        .route("/healthz", get(|| async { "ok" }));
    if standalone {
        router = router
            .route("/metrics", get(render_metrics))
            .fallback(|| async { error(ErrorCode::NotFound, "no such route".into()) });
    }
    router.layer(DefaultBodyLimit::max(MAX_LICENSE_BYTES)).with_state(AppState { proxy, metrics })
}

/// An error of the error table's row for `code`.
fn error(code: ErrorCode, message: String) -> Response {
    let row = code.row();
    let status = StatusCode::from_u16(row.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    error_body(status, row.name, row.title, message, new_request_id())
}

/// A 500: the client gets a request id, the log gets the internal text under it.
fn internal(what: &str, e: &dyn std::fmt::Display) -> Response {
    let request_id = new_request_id();
    tracing::error!(%request_id, error = %e, "{what}");
    let row = ErrorCode::Internal.row();
    let message = chorus_proto::internal_error_message(&request_id);
    error_body(StatusCode::INTERNAL_SERVER_ERROR, row.name, row.title, message, request_id)
}

fn error_body(status: StatusCode, code: &str, title: &str, message: String, request_id: String) -> Response {
    let body = serde_json::json!({ "error_code": code, "title": title, "message": message, "request_id": request_id });
    (status, axum::Json(body)).into_response()
}

fn new_request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

async fn post_license(State(app): State<AppState>, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(rejection) => {
            let status = rejection.status();
            let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
                format!("a license document is at most {MAX_LICENSE_BYTES} bytes")
            } else {
                rejection.body_text()
            };
            let row = ErrorCode::InvalidRequest.row();
            return error_body(status, row.name, row.title, message, new_request_id());
        }
    };
    let proxy = Arc::clone(&app.proxy);
    let result = tokio::task::spawn_blocking(move || proxy.post_license(&body)).await;
    match result {
        Ok(Ok(v)) => {
            let active = app.proxy.active();
            let is_active = active.as_ref().is_some_and(|a| a.document == v.document);
            let body = serde_json::json!({
                "accepted": true,
                "active": is_active,
                "license": public_view(&v),
            });
            (StatusCode::OK, axum::Json(body)).into_response()
        }
        Ok(Err(AcceptError::License(e))) => {
            let status = match &e {
                LicenseError::Malformed(_) | LicenseError::Invalid(_) | LicenseError::BadSignature => {
                    StatusCode::BAD_REQUEST
                }
                LicenseError::UnknownSigner => StatusCode::FORBIDDEN,
                LicenseError::Expired(_) => StatusCode::UNPROCESSABLE_ENTITY,
            };
            tracing::info!(code = e.code(), "License refused.");
            error_body(status, e.code(), "License refused", e.to_string(), new_request_id())
        }
        Ok(Err(AcceptError::Io(e))) => internal("Cannot store a license.", &e),
        Err(e) => internal("The license check did not finish.", &e),
    }
}

fn public_view(v: &crate::license::Verified) -> serde_json::Value {
    serde_json::json!({
        "id": v.license.id,
        "licensee": v.license.licensee,
        "issued_at": v.license.issued_at,
        "expires_at": v.license.expires_at,
        "max_concurrent_streams": v.license.max_concurrent_streams,
        "models": v.license.models,
        "signer": v.signer,
    })
}

async fn get_license(State(app): State<AppState>) -> Response {
    let state = app.proxy.current();
    let now = crate::license::now_secs();
    let body = serde_json::json!({
        "mode": state.mode.as_str(),
        "verdict": state.verdict_at(now),
        "message": state.message,
        "refuse_after": state.refuse_after.map(format_time),
        "license": app.proxy.active().as_ref().map(public_view),
        "tenant_keys": state.keys.len(),
        "deployment_public_key": app.proxy.deployment_key().public_base64(),
    });
    (StatusCode::OK, axum::Json(body)).into_response()
}

fn presented_key(headers: &HeaderMap) -> Option<String> {
    let bearer = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| {
        let (scheme, token) = v.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_owned())
    });
    bearer
        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()).map(|v| v.trim().to_owned()))
        .filter(|k| !k.is_empty())
}

async fn audit(State(app): State<AppState>, headers: HeaderMap) -> Response {
    match presented_key(&headers) {
        Some(key) if app.proxy.is_admin(&key) => {}
        Some(_) | None => {
            let mut r = error(
                ErrorCode::Unauthorized,
                "GET /audit needs an admin key ('Authorization: Bearer <key>')".into(),
            );
            r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return r;
        }
    }
    let snapshot = match app.proxy.ledger().snapshot().await {
        Ok(s) => s,
        Err(e) => return internal("Cannot read the ledger for an audit export.", &e),
    };
    let key = app.proxy.deployment_key().clone();
    let licensee = app.proxy.active().map(|v| v.license.licensee);
    let built = tokio::task::spawn_blocking(move || crate::audit::export(&snapshot, &key, licensee)).await;
    match built {
        Ok(Ok(tar)) => {
            let mut r = (StatusCode::OK, tar).into_response();
            let h = r.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-tar"));
            h.insert(
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static("attachment; filename=\"audit.tar\""),
            );
            r
        }
        Ok(Err(e)) => internal("Cannot build an audit export.", &e),
        Err(e) => internal("The audit export did not finish.", &e),
    }
}

async fn render_metrics(State(app): State<AppState>) -> Response {
    app.proxy.refresh();
    match &app.metrics {
        Some(render) => render().into_response(),
        None => String::new().into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_500_carries_a_request_id_not_the_internal_text() {
        use http_body_util::BodyExt as _;
        let response = internal("Cannot store a license.", &"/var/lib/chorus/licenses: permission denied");
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let bytes = response.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        assert_eq!(body["error_code"], "internal_error");
        assert_eq!(body["title"], ErrorCode::Internal.title());
        let request_id = body["request_id"].as_str().unwrap_or_default();
        assert!(!request_id.is_empty(), "{body}");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(message.contains(request_id) && !message.contains("permission denied"), "{body}");
    }
}
