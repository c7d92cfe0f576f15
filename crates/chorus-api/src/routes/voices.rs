//! Voices (spec 2.5): list, get, update, delete, and create a preset of a model voice.
//!
//! Two kinds of voice:
//!
//! - **built-in**: one per model voice the workers serve (id = the model voice's id, e.g. `en_US-joe-medium`).
//!   `is_owner: false`, `access: "public"`. They cannot be changed or deleted: `PATCH` and `DELETE` answer
//!   **403** (`PermissionDeniedError` in the SDKs) with a message saying so.
//! - **presets**, created with `POST /voices`: a name and description over a model voice (`base_voice_id`, which
//!   may itself be a preset: the new preset then inherits its model voice and parameters) with synthesis
//!   parameters (`speed` 0.5-2.0, which multiplies the request's speed; `noise_scale` and `noise_w` 0-2). The id is
//!   a UUID. `is_owner: true`, `access: "private"`.
//!
//! Every voice carries our own `base_voice_id` (the model voice; `null` for built-ins) and `parameters`.
//! Presets live in the artifact store: `GET` of a preset and every write answer its version in `ETag`; `PATCH`
//! and `DELETE` honour `If-Match` (409 `conflict` if the voice changed since), and a write racing another one
//! (through this server or another sharing the store) gets 409 instead of overwriting it.
//! Voice cloning (`/voices/clone`), localization and embeddings are not supported.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chorus_proto::SynthesisParams;
use serde_json::Value;

use crate::documents::{Voice, VoiceParams, rfc3339_now};
use crate::error::ApiError;
use crate::middleware::RequestId;
use crate::persistence::Doc as _;
use crate::request::ApiJson;
use crate::routes::pagination::{ListQuery, Page, paginate};
use crate::routes::validate::{check_description, check_name};
use crate::routes::{IdPath, if_match, patch, with_etag};
use crate::state::AppState;

/// Gender presentations the API accepts (Cartesia's enum).
pub const GENDERS: [&str; 3] = ["masculine", "feminine", "gender_neutral"];

/// A voice as the API returns it (the Cartesia `Voice` plus `base_voice_id` and `parameters`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct VoiceJson {
    pub id: String,
    pub name: String,
    pub description: String,
    pub language: String,
    pub is_owner: bool,
    pub access: &'static str,
    pub visibility: &'static str,
    /// The pre-2026 name of `access == "public"`.
    pub is_public: bool,
    pub created_at: String,
    pub locales: Vec<LocaleJson>,
    pub tagline: String,
    pub gender: Option<String>,
    /// The model voice a preset speaks with; `null` for built-in voices.
    pub base_voice_id: Option<String>,
    pub parameters: VoiceParams,
}

/// One entry of `locales`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LocaleJson {
    pub locale: String,
    pub is_native: bool,
}

impl From<Voice> for VoiceJson {
    fn from(v: Voice) -> Self {
        let locale = locale_of(&v.model).unwrap_or_else(|| v.language.clone());
        let owned = !v.builtin;
        VoiceJson {
            locales: vec![LocaleJson { locale, is_native: true }],
            is_owner: owned,
            access: if owned { "private" } else { "public" },
            visibility: if owned { "owner" } else { "all" },
            is_public: !owned,
            tagline: String::new(),
            base_voice_id: owned.then(|| v.model.clone()),
            parameters: v.params,
            id: v.id,
            name: v.name,
            description: v.description,
            language: v.language,
            created_at: v.created_at,
            gender: v.gender,
        }
    }
}

/// `en_US-joe-medium` -> `en-US` (Piper's naming); `None` when the id does not start with a locale.
fn locale_of(model: &str) -> Option<String> {
    let prefix = model.split('-').next()?;
    let (lang, region) = prefix.split_once('_')?;
    let ok = (2..=3).contains(&lang.len())
        && lang.bytes().all(|b| b.is_ascii_lowercase())
        && (2..=3).contains(&region.len())
        && region.bytes().all(|b| b.is_ascii_alphanumeric());
    ok.then(|| format!("{lang}-{region}"))
}

/// `GET /voices`: the voices, paginated, filtered by `q` (id, name or description, case-insensitive),
/// `gender`, `is_owner` and `language`.
pub async fn list(
    State(state): State<AppState>,
    request_id: RequestId,
    query: ListQuery,
) -> Result<Json<Page<VoiceJson>>, ApiError> {
    let with_id = |e: ApiError| e.with_request_id(request_id.as_str());
    let is_owner = query.bool_param("is_owner").map_err(with_id)?;
    let q = query.param("q").map(str::to_lowercase).filter(|q| !q.is_empty());
    let gender = query.param("gender");
    let language = query.param("language");
    let voices: Vec<Voice> = state
        .voices
        .list()
        .into_iter()
        .filter(|v| is_owner.is_none_or(|owner| owner != v.builtin))
        .filter(|v| gender.is_none_or(|g| v.gender.as_deref() == Some(g)))
        .filter(|v| language.is_none_or(|l| v.language.eq_ignore_ascii_case(l)))
        .filter(|v| {
            q.as_deref().is_none_or(|q| {
                [&v.id, &v.name, &v.description].iter().any(|field| field.to_lowercase().contains(q))
            })
        })
        .collect();
    Ok(Json(paginate(voices, |v| v.id.as_str(), &query).map(VoiceJson::from)))
}

/// `GET /voices/{id}`.
pub async fn get(
    State(state): State<AppState>,
    request_id: RequestId,
    IdPath(id): IdPath,
) -> Result<Response, ApiError> {
    let voice =
        state.voices.get(&id).ok_or_else(|| Voice::not_found(&id).with_request_id(request_id.as_str()))?;
    let etag = state.voices.etag(&id);
    Ok(with_etag(Json(VoiceJson::from(voice)), etag.as_deref()))
}

/// The body of `POST /voices`.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct CreateVoice {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// The voice this preset speaks with (R).
    #[serde(default)]
    pub base_voice_id: Option<String>,
    /// Must be the base voice's language when given.
    #[serde(default)]
    pub language: Option<String>,
    #[serde(default)]
    pub gender: Option<String>,
    /// `speed`, `noise_scale`, `noise_w`.
    #[serde(flatten)]
    pub params: VoiceParams,
    /// The legacy create-from-embedding form: refused.
    #[serde(default)]
    pub embedding: Option<Value>,
}

/// `POST /voices`: a named preset of a model voice.
pub async fn create(
    State(state): State<AppState>,
    request_id: RequestId,
    ApiJson(body): ApiJson<CreateVoice>,
) -> Result<Response, ApiError> {
    let with_id = |e: ApiError| e.with_request_id(request_id.as_str());
    let voice = new_voice(&state, body).map_err(with_id)?;
    let (voice, etag) = state.artifacts.create(voice).await.map_err(with_id)?;
    tracing::info!(voice = %voice.id, model = %voice.model, "Voice preset created.");
    Ok(with_etag(Json(VoiceJson::from(voice)), Some(&etag)))
}

fn new_voice(state: &AppState, body: CreateVoice) -> Result<Voice, ApiError> {
    if body.embedding.is_some() {
        return Err(ApiError::invalid(
            "voice embeddings are not supported: create a preset of a model voice with base_voice_id",
        ));
    }
    let base_id = body.base_voice_id.ok_or_else(|| ApiError::unprocessable("base_voice_id is required"))?;
    let base = state.voices.get(&base_id).ok_or_else(|| Voice::not_found(&base_id))?;
    if let Some(lang) = body.language.as_deref() {
        let code = lang.split(['-', '_']).next().unwrap_or(lang).to_ascii_lowercase();
        if code != base.language {
            return Err(ApiError::invalid(format!(
                "voice '{}' speaks '{}', not '{lang}'",
                base.id, base.language
            )));
        }
    }
    let params = params_over(body.params, base.params)?;
    let voice = Voice {
        id: uuid::Uuid::new_v4().to_string(),
        name: check_name(&body.name)?,
        description: check_description(body.description.unwrap_or_default())?,
        language: base.language.clone(),
        gender: body.gender.map(check_gender).transpose()?,
        model: base.model.clone(),
        params,
        created_at: rfc3339_now(),
        builtin: false,
    };
    Ok(voice)
}

/// The body of `PATCH /voices/{id}`: every field optional; `gender: null` clears the gender.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct UpdateVoice {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub gender: Option<Option<String>>,
    /// `speed`, `noise_scale`, `noise_w`.
    #[serde(flatten)]
    pub params: VoiceParams,
}

/// Tells an explicit `null` (`Some(None)`) from an absent field (`None`, the default).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    <Option<String> as serde::Deserialize>::deserialize(d).map(Some)
}

/// `PATCH /voices/{id}`: name, description, gender, and a preset's parameters.
pub async fn update(
    State(state): State<AppState>,
    request_id: RequestId,
    IdPath(id): IdPath,
    headers: HeaderMap,
    ApiJson(body): ApiJson<UpdateVoice>,
) -> Result<Response, ApiError> {
    let with_id = |e: ApiError| e.with_request_id(request_id.as_str());
    if state.voices.is_builtin(&id) {
        return Err(with_id(builtin_is_read_only(&id, "changed")));
    }
    let name = body.name.as_deref().map(check_name).transpose().map_err(with_id)?;
    let description = body.description.map(check_description).transpose().map_err(with_id)?;
    let gender = body.gender.map(|g| g.map(check_gender).transpose()).transpose().map_err(with_id)?;
    let asked = body.params;
    let (voice, etag) = state
        .artifacts
        .update::<Voice>(&id, if_match(&headers), |voice| {
            voice.params = params_over(asked, voice.params)?;
            patch(&mut voice.name, name);
            patch(&mut voice.description, description);
            patch(&mut voice.gender, gender);
            Ok(())
        })
        .await
        .map_err(with_id)?;
    Ok(with_etag(Json(VoiceJson::from(voice)), Some(&etag)))
}

/// `DELETE /voices/{id}`: 204; built-in voices answer 403.
pub async fn delete(
    State(state): State<AppState>,
    request_id: RequestId,
    IdPath(id): IdPath,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let with_id = |e: ApiError| e.with_request_id(request_id.as_str());
    if state.voices.is_builtin(&id) {
        return Err(with_id(builtin_is_read_only(&id, "deleted")));
    }
    state.artifacts.delete::<Voice>(&id, if_match(&headers)).await.map_err(with_id)?;
    tracing::info!(voice = %id, "Voice preset deleted.");
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn builtin_is_read_only(id: &str, what: &str) -> ApiError {
    ApiError {
        status: StatusCode::FORBIDDEN,
        title: "Forbidden".into(),
        ..ApiError::invalid(format!(
            "voice '{id}' is built in (a model voice) and cannot be {what}; create a preset with POST /voices instead"
        ))
    }
}

fn check_gender(gender: String) -> Result<String, ApiError> {
    if GENDERS.contains(&gender.as_str()) {
        Ok(gender)
    } else {
        Err(ApiError::invalid(format!(
            "gender must be one of masculine, feminine, gender_neutral; got '{gender}'"
        )))
    }
}

/// The parameters a request `asked` for, each one it left out taken from `base` (the voice it starts from),
/// checked: speed 0.5-2.0, noise_scale and noise_w 0-2.
fn params_over(asked: VoiceParams, base: VoiceParams) -> Result<VoiceParams, ApiError> {
    let params = VoiceParams {
        speed: asked.speed.or(base.speed),
        noise_scale: asked.noise_scale.or(base.noise_scale),
        noise_w: asked.noise_w.or(base.noise_w),
    };
    let synthesis = SynthesisParams {
        speed: params.speed.unwrap_or(1.0),
        volume: 1.0,
        noise_scale: params.noise_scale,
        noise_w: params.noise_w,
    };
    synthesis.validate().map_err(|e| ApiError::invalid(e.to_string()))?;
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locales_from_piper_ids() {
        assert_eq!(locale_of("en_US-joe-medium").as_deref(), Some("en-US"));
        assert_eq!(locale_of("de_DE-thorsten-high").as_deref(), Some("de-DE"));
        assert_eq!(locale_of("custom"), None);
        assert_eq!(locale_of("EN_us-x"), None);
    }
}
