//! `GET /api/v1/apps/{app}/quarantines`, `PUT /api/v1/apps/{app}/quarantines/{digest}`
//! and `POST /api/v1/apps/{app}/quarantines/{digest}/lift`: marking a digest bad (an
//! admin, or the application's platform engineer), and lifting it.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;

use super::body::JsonBody;
use super::error::ApiError;
use super::extract::{Authorized, Caller, ReadResources};
use super::promotion_types::*;
use super::promotions::{app_env, digest};
use super::types::ErrorBody;
use crate::AppState;

/// A quarantine on the wire.
pub(crate) fn quarantine_view(quarantine: store::Quarantine) -> QuarantineView {
    QuarantineView {
        application: quarantine.application,
        digest: quarantine.digest.to_string(),
        reason: quarantine.reason,
        by: quarantine.by,
        at: rfc3339(quarantine.at),
    }
}

/// Quarantine a digest of an application: promotions of it and rollbacks onto it are
/// refused, its open promotions cancelled, admission denies it in every environment,
/// and pulls of it are refused (unless `[registry] quarantine = "deployments"`).
#[utoipa::path(
    put,
    path = "/api/v1/apps/{app}/quarantines/{digest}",
    params(("app" = String, Path), ("digest" = String, Path)),
    request_body = QuarantineRequest,
    responses(
        (status = 201, description = "Quarantined now", body = QuarantineResponse),
        (status = 200, description = "Already quarantined (nothing changed)", body = QuarantineResponse),
        (status = 400, description = "No reason, or not a digest", body = ErrorBody),
        (status = 403, description = "Not an admin or the application's platform engineer", body = ErrorBody),
        (status = 404, description = "No such application", body = ErrorBody),
    )
)]
pub(crate) async fn quarantine(
    State(state): State<AppState>,
    Caller(actor): Caller,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Result<JsonBody<QuarantineRequest>, ApiError>,
) -> Result<Response, ApiError> {
    let (application, digest_text) = app_env(path)?;
    let digest = digest(&digest_text)?;
    let JsonBody(request) = body?;
    let done = state
        .engine
        .quarantine(&actor, &application, &digest, &request.reason)
        .await?;
    let status = if done.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let response = QuarantineResponse {
        quarantine: quarantine_view(done.quarantine),
        created: done.created,
        cancelled_promotions: done.cancelled,
    };
    Ok((status, Json(response)).into_response())
}

/// Lift a digest's quarantine.
#[utoipa::path(
    post,
    path = "/api/v1/apps/{app}/quarantines/{digest}/lift",
    params(("app" = String, Path), ("digest" = String, Path)),
    request_body = QuarantineRequest,
    responses(
        (status = 200, description = "Lifted: the quarantine that held", body = QuarantineView),
        (status = 400, description = "No reason, or not a digest", body = ErrorBody),
        (status = 403, description = "Not an admin or the application's platform engineer", body = ErrorBody),
        (status = 404, description = "No such application, or the digest is not quarantined", body = ErrorBody),
    )
)]
pub(crate) async fn lift(
    State(state): State<AppState>,
    Caller(actor): Caller,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Result<JsonBody<QuarantineRequest>, ApiError>,
) -> Result<Json<QuarantineView>, ApiError> {
    let (application, digest_text) = app_env(path)?;
    let digest = digest(&digest_text)?;
    let JsonBody(request) = body?;
    let lifted = state
        .engine
        .lift_quarantine(&actor, &application, &digest, &request.reason)
        .await?;
    Ok(Json(quarantine_view(lifted)))
}

/// An application's quarantined digests, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/apps/{app}/quarantines",
    params(("app" = String, Path)),
    responses(
        (status = 200, description = "The quarantines", body = QuarantineList),
        (status = 401, description = "No valid credentials", body = ErrorBody),
        (status = 404, description = "No such application", body = ErrorBody),
    )
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    _: Authorized<ReadResources>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<QuarantineList>, ApiError> {
    let Path(application) = path.map_err(|r| ApiError::bad_request(r.body_text()))?;
    let quarantines = state.engine.quarantines(&application).await?;
    Ok(Json(QuarantineList {
        quarantines: quarantines.into_iter().map(quarantine_view).collect(),
    }))
}
