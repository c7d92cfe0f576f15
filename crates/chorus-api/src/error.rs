//! The one error type of the API: every failure becomes the Cartesia error JSON with the right status.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chorus_proto::ErrorCode;
use serde_json::json;

/// The longest `message` sent to a client, in characters: messages quote client input (ids, paths, parse
/// errors), and a client must not get its own megabyte back.
pub const MAX_MESSAGE_CHARS: usize = 1000;
/// The most characters of a client-supplied value (an id, a path) quoted in a message.
pub const MAX_ECHO_CHARS: usize = 100;

/// `value` for quoting in a message: cut to [`MAX_ECHO_CHARS`] characters, with `…` when cut.
pub fn echo(value: &str) -> std::borrow::Cow<'_, str> {
    cut(value, MAX_ECHO_CHARS)
}

/// `value`, at most `max` characters (the last one `…` when cut).
pub fn cut(value: &str, max: usize) -> std::borrow::Cow<'_, str> {
    match value.char_indices().nth(max.saturating_sub(1)) {
        Some((at, _)) if value[at..].chars().nth(1).is_some() => format!("{}…", &value[..at]).into(),
        _ => value.into(),
    }
}

/// The Cartesia error body (`error_code`, `title`, `message`, `request_id`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ErrorBody {
    pub error_code: Option<String>,
    pub title: String,
    pub message: String,
    pub request_id: String,
}

/// An API error: status, code and a message safe to show the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{title}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub title: String,
    pub message: String,
    pub request_id: String,
    /// Seconds a client should wait before retrying (429/503).
    pub retry_after: Option<u32>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        let row = code.row();
        let status = StatusCode::from_u16(row.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Self {
            status,
            code,
            title: row.title.to_owned(),
            message: message.into(),
            request_id: String::new(),
            retry_after: row.retry_after,
        }
    }

    /// 400 `invalid_request`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message)
    }

    /// 422 `invalid_request`: well-formed JSON that does not fit the schema.
    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self { status: StatusCode::UNPROCESSABLE_ENTITY, ..Self::new(ErrorCode::InvalidRequest, message) }
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    pub fn with_request_id(mut self, request_id: &str) -> Self {
        request_id.clone_into(&mut self.request_id);
        self
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error_code: Some(self.code.as_str().to_owned()),
            title: self.title.clone(),
            message: self.public_message().into_owned(),
            request_id: self.request_id.clone(),
        }
    }

    /// The message a client is shown: for a 500 (a failure inside the server) only the request id, under which
    /// the server logs the internal text ([`ApiError::log_internal`]); otherwise the message, cut to
    /// [`MAX_MESSAGE_CHARS`].
    pub fn public_message(&self) -> std::borrow::Cow<'_, str> {
        if self.status == StatusCode::INTERNAL_SERVER_ERROR {
            chorus_proto::internal_error_message(&self.request_id).into()
        } else {
            cut(&self.message, MAX_MESSAGE_CHARS)
        }
    }

    /// Logs the internal text of a 500 with its request id (what [`ApiError::public_message`] keeps from the
    /// client).
    pub fn log_internal(&self) {
        if self.status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(request_id = %self.request_id, code = self.code.as_str(), error = %self.message, "Request failed.");
        }
    }

    /// The same fields as an SSE/WebSocket `error` event.
    pub fn event_json(&self, context_id: Option<&str>) -> serde_json::Value {
        self.log_internal();
        let message = self.public_message();
        let mut v = serde_json::json!({
            "type": "error",
            "done": true,
            "status_code": self.status.as_u16(),
            "error_code": self.code.as_str(),
            "title": self.title,
            "message": message,
            "request_id": self.request_id,
            "error": format!("{}: {message}", self.title),
        });
        if let (Some(ctx), Some(obj)) = (context_id, v.as_object_mut()) {
            obj.insert("context_id".into(), cut(ctx, MAX_CONTEXT_ID_ECHO).into());
        }
        v
    }
}

/// The longest `context_id` an error event carries (longer ids are refused, and quoted cut).
const MAX_CONTEXT_ID_ECHO: usize = 1024;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.log_internal();
        let mut response = (self.status, axum::Json(self.body())).into_response();
        let headers = response.headers_mut();
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        // The official SDKs retry 408, 409, 429 and 5xx unless told not to: a bad request never improves.
        let retry = matches!(self.status.as_u16(), 408 | 429 | 503);
        headers.insert("x-should-retry", HeaderValue::from_static(if retry { "true" } else { "false" }));
        if !self.request_id.is_empty()
            && let Ok(v) = HeaderValue::from_str(&self.request_id)
        {
            headers.insert("x-request-id", v);
        }
        response
    }
}

/// An error response in the shape the path's clients expect: OpenAI's under `/v1/`, Cartesia's elsewhere.
pub fn error_response(path: &str, error: ApiError) -> Response {
    if is_openai_path(path) { OpenAiError::from(error).into_response() } else { error.into_response() }
}

/// True for the paths whose errors take OpenAI's shape.
pub fn is_openai_path(path: &str) -> bool {
    path == "/v1" || path.starts_with("/v1/")
}

/// An error in OpenAI's shape. `param` names the offending request field when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenAiError {
    pub error: ApiError,
    pub param: Option<&'static str>,
}

impl From<ApiError> for OpenAiError {
    fn from(error: ApiError) -> Self {
        let param = error.code.row().openai_param;
        Self { error, param }
    }
}

impl OpenAiError {
    pub fn with_param(error: ApiError, param: &'static str) -> Self {
        Self { error, param: Some(param) }
    }
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        let code = self.error.code.as_str();
        let (kind, code) = match self.error.status.as_u16() {
            401 => ("invalid_request_error", "invalid_api_key"),
            429 => ("rate_limit_error", code),
            500..=599 => ("server_error", code),
            _ => ("invalid_request_error", code),
        };
        let body = json!({
            "error": { "message": self.error.public_message(), "type": kind, "param": self.param, "code": code }
        });
        // The Cartesia response carries the status and headers (x-request-id, retry-after, x-should-retry).
        let mut response = self.error.into_response();
        *response.body_mut() = Body::from(body.to_string());
        response
    }
}

impl From<chorus_bus::BusError> for ApiError {
    fn from(e: chorus_bus::BusError) -> Self {
        match e {
            chorus_bus::BusError::NoWorker(m) => ApiError::new(
                ErrorCode::Unserviceable,
                format!("no worker is serving model '{}' right now", echo(&m)),
            ),
            chorus_bus::BusError::Busy(m) => ApiError::new(
                ErrorCode::ConcurrencyLimited,
                format!("every worker for '{}' is busy and the queue is full; retry shortly", echo(&m)),
            ),
            chorus_bus::BusError::QueueTimeout { model, waited } => ApiError {
                // Nothing freed up while this request waited: asking again at once only queues it again.
                retry_after: Some(u32::try_from((waited.as_secs() / 6).clamp(1, 10)).unwrap_or(5)),
                ..ApiError::new(
                    ErrorCode::ConcurrencyLimited,
                    format!(
                        "every worker for '{}' stayed busy: no stream became free within the {} s queue timeout",
                        echo(&model),
                        waited.as_secs_f64().round()
                    ),
                )
            },
            chorus_bus::BusError::Refused(why) => ApiError::new(ErrorCode::Unserviceable, why),
            chorus_bus::BusError::Closed => {
                ApiError::new(ErrorCode::Unserviceable, "the server is shutting down")
            }
            chorus_bus::BusError::Nats(e) => {
                ApiError::new(ErrorCode::Unserviceable, format!("the bus to the workers is unavailable: {e}"))
            }
        }
    }
}

impl From<chorus_proto::JobError> for ApiError {
    fn from(e: chorus_proto::JobError) -> Self {
        ApiError::new(e.code, e.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoes_are_cut() {
        assert_eq!(echo("short"), "short");
        let long = "x".repeat(100_000);
        let e = echo(&long);
        assert_eq!(e.chars().count(), MAX_ECHO_CHARS);
        assert!(e.ends_with('…'));
        assert_eq!(cut(&"é".repeat(5), 5), "ééééé");
        assert_eq!(cut(&"é".repeat(6), 5), "éééé…");
        let error = ApiError::invalid(format!("bad '{long}'"));
        assert!(error.body().message.chars().count() <= MAX_MESSAGE_CHARS);
        let event = error.event_json(Some(&long));
        assert!(event.to_string().len() < 4 * 1024, "{}", event.to_string().len());
    }

    #[test]
    fn a_500_shows_its_request_id_never_the_internal_text() {
        let internal = "ort error: /srv/models/en.onnx: bad tensor shape".to_owned();
        for code in [ErrorCode::Internal, ErrorCode::InferenceFailed, ErrorCode::WorkerLost] {
            let error = ApiError::new(code, internal.clone()).with_request_id("req-1");
            let body = error.body();
            assert!(body.message.contains("req-1") && !body.message.contains("ort error"), "{body:?}");
            assert_eq!(
                (body.error_code.as_deref(), body.request_id.as_str()),
                (Some(code.as_str()), "req-1")
            );
            let event = error.event_json(None).to_string();
            assert!(event.contains("req-1") && !event.contains("ort error"), "{event}");
            let openai = OpenAiError::from(error);
            assert!(!openai.error.public_message().contains("ort error"));
        }
        // A client's error keeps its message: it tells the client what to fix.
        let error =
            ApiError::new(ErrorCode::VoiceNotFound, "voice 'x' does not exist").with_request_id("req-2");
        assert_eq!(error.body().message, "voice 'x' does not exist");
    }
}
