//! Pronunciation dictionaries (spec 2.6): create, list, get, update, delete, under `/pronunciation-dicts/` with
//! and without the trailing slash.
//!
//! An item is `{text, alias, case_sensitive?}`: `text` is matched as whole words; `alias` is replacement text, or
//! IPA phonemes between slashes (`/təmˈɑːtoʊ/`). Both must be non-empty; a dictionary holds at most
//! [`crate::documents::MAX_ITEMS`] items. `PATCH` with `items` replaces the whole list.
//!
//! Dictionaries live in the artifact store: `GET` of one and every write answer its version in `ETag`; `PATCH`
//! and `DELETE` honour `If-Match`; a write racing another one gets 409 `conflict`.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chorus_proto::PronunciationItem;

use crate::documents::{OWNER_ID, PronunciationDict, check_items, rfc3339_now};
use crate::error::ApiError;
use crate::middleware::RequestId;
use crate::persistence::Doc as _;
use crate::request::ApiJson;
use crate::routes::pagination::{ListQuery, Page, paginate};
use crate::routes::validate::{check_description, check_name};
use crate::routes::{IdPath, if_match, patch, with_etag};
use crate::state::AppState;

/// The body of `POST /pronunciation-dicts/`.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct CreateDict {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub items: Option<Vec<PronunciationItem>>,
}

/// The body of `PATCH /pronunciation-dicts/{id}`.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct UpdateDict {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// Replaces every item.
    #[serde(default)]
    pub items: Option<Vec<PronunciationItem>>,
}

/// `POST /pronunciation-dicts/`.
pub async fn create(
    State(state): State<AppState>,
    request_id: RequestId,
    ApiJson(body): ApiJson<CreateDict>,
) -> Result<Response, ApiError> {
    let build = || -> Result<PronunciationDict, ApiError> {
        Ok(PronunciationDict {
            id: uuid::Uuid::new_v4().to_string(),
            name: check_name(&body.name)?,
            description: check_description(body.description.clone().unwrap_or_default())?,
            items: check_items(body.items.clone().unwrap_or_default())?,
            created_at: rfc3339_now(),
            owner_id: OWNER_ID.into(),
            pinned: false,
        })
    };
    let with_id = |e: ApiError| e.with_request_id(request_id.as_str());
    let dict = build().map_err(with_id)?;
    let (dict, etag) = state.artifacts.create(dict).await.map_err(with_id)?;
    tracing::info!(dict = %dict.id, items = dict.items.len(), "Pronunciation dictionary created.");
    Ok(with_etag(Json(dict), Some(&etag)))
}

/// `GET /pronunciation-dicts/`: paginated like the voices.
pub async fn list(State(state): State<AppState>, query: ListQuery) -> Json<Page<PronunciationDict>> {
    Json(paginate(state.dicts.list(), |d| d.id.as_str(), &query))
}

/// `GET /pronunciation-dicts/{id}`.
pub async fn get(
    State(state): State<AppState>,
    request_id: RequestId,
    IdPath(id): IdPath,
) -> Result<Response, ApiError> {
    let dict = state
        .dicts
        .get(&id)
        .ok_or_else(|| PronunciationDict::not_found(&id).with_request_id(request_id.as_str()))?;
    Ok(with_etag(Json(dict), state.dicts.etag(&id).as_deref()))
}

/// `PATCH /pronunciation-dicts/{id}`.
pub async fn update(
    State(state): State<AppState>,
    request_id: RequestId,
    IdPath(id): IdPath,
    headers: HeaderMap,
    ApiJson(body): ApiJson<UpdateDict>,
) -> Result<Response, ApiError> {
    let with_id = |e: ApiError| e.with_request_id(request_id.as_str());
    let name = body.name.as_deref().map(check_name).transpose().map_err(with_id)?;
    let description = body.description.map(check_description).transpose().map_err(with_id)?;
    let items = body.items.map(check_items).transpose().map_err(with_id)?;
    let (dict, etag) = state
        .artifacts
        .update::<PronunciationDict>(&id, if_match(&headers), |dict| {
            patch(&mut dict.name, name);
            patch(&mut dict.description, description);
            patch(&mut dict.items, items);
            Ok(())
        })
        .await
        .map_err(with_id)?;
    Ok(with_etag(Json(dict), Some(&etag)))
}

/// `DELETE /pronunciation-dicts/{id}`: 204.
pub async fn delete(
    State(state): State<AppState>,
    request_id: RequestId,
    IdPath(id): IdPath,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    state
        .artifacts
        .delete::<PronunciationDict>(&id, if_match(&headers))
        .await
        .map_err(|e| e.with_request_id(request_id.as_str()))?;
    tracing::info!(dict = %id, "Pronunciation dictionary deleted.");
    Ok(StatusCode::NO_CONTENT.into_response())
}
