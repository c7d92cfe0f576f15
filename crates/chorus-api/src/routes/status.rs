//! `GET /` and `GET /status` (spec 2.3): open to all, `{"ok": true, "version": ...}`.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::state::AppState;

/// The status body: `ok` and the API version this server speaks by default.
pub async fn status(State(state): State<AppState>) -> Json<Value> {
    Json(json!({ "ok": true, "version": state.config.version }))
}
