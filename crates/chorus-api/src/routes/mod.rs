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
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::middleware::RequestId;

/// An error response in the shape the path's clients expect: OpenAI's under `/v1/`, Cartesia's elsewhere.
pub fn error_response(path: &str, error: ApiError) -> Response {
    if openai::is_openai_path(path) {
        openai::OpenAiError::from(error).into_response()
    } else {
        error.into_response()
    }
}

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
