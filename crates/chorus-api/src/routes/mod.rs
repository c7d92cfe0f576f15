//! The HTTP handlers, one module per route group, and the extractors they share.

pub mod dicts;
pub mod openai;
pub mod pagination;
pub mod status;
pub mod tts;
mod validate;
pub mod voices;

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::middleware::RequestId;

/// The `{id}` segment of a path, with a Cartesia error (not axum's plain text) if it cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdPath(pub String);

impl<S: Send + Sync> FromRequestParts<S> for IdPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(id)) => Ok(IdPath(id)),
            Err(e) => Err(ApiError::invalid(format!("bad path parameter: {e}"))
                .with_request_id(RequestId::from_extensions(&parts.extensions).as_str())),
        }
    }
}

/// A PATCH body's field applied: the stored value is replaced only when the field was given.
pub fn patch<T>(field: &mut T, given: Option<T>) {
    if let Some(value) = given {
        *field = value;
    }
}

/// `body` with an `ETag` header naming the stored version (when there is one).
pub fn with_etag(body: impl IntoResponse, etag: Option<&str>) -> Response {
    let mut response = body.into_response();
    if let Some(v) = etag.and_then(|e| HeaderValue::from_str(&crate::persistence::http_etag(e)).ok()) {
        response.headers_mut().insert(header::ETAG, v);
    }
    response
}

/// The request's `If-Match` header, if any.
pub fn if_match(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok())
}
