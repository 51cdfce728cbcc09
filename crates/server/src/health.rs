//! Liveness, readiness and the answer for paths that name nothing.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::AppState;

/// The process is up and serving.
pub(crate) async fn healthz() -> &'static str {
    "ok\n"
}

/// The database and the blob store both answer.
pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
    let database = state.store.ping().await;
    let blob_store = state.blobs.ping().await;
    let status = if database.is_ok() && blob_store.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let describe = |ok: bool, error: Option<String>| match (ok, error) {
        (true, _) => json!({ "status": "ok" }),
        (false, error) => json!({ "status": "unavailable", "error": error }),
    };
    let body = json!({
        "database": describe(database.is_ok(), database.as_ref().err().map(|e| e.to_string())),
        "database_kind": state.store.kind(),
        "blob_store": describe(blob_store.is_ok(), blob_store.as_ref().err().map(|e| e.to_string())),
    });
    (status, Json(body)).into_response()
}

pub(crate) async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({ "code": "not_found", "message": "no such endpoint", "detail": null })),
    )
        .into_response()
}
