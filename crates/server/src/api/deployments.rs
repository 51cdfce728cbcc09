//! One deployment, its durable job and its log (`GET /api/v1/deployments/{id}`,
//! `GET /api/v1/deployments/{id}/log`), and the callback through which a webhook's
//! receiver reports the outcome (`POST /api/v1/deployments/{id}/callback`).

use api_types::{
    CallbackRequest, CallbackResponse, DeploymentDetail, DeploymentLog, JobView, LogLineView,
};
use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use http::{HeaderMap, header};
use serde::Deserialize;
use utoipa::IntoParams;

use super::body::JsonBody;
use super::error::ApiError;
use super::extract::{Authorized, ReadResources};
use super::promotion_types::rfc3339;
use super::promotions::deployment_views;
use super::types::ErrorBody;
use crate::AppState;

/// Log lines returned at most per request.
const MAX_LOG_PAGE: i64 = 1_000;

/// Query of `GET /api/v1/deployments/{id}/log`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct LogQuery {
    /// Lines after this sequence number (default 0: from the start).
    pub(crate) after: Option<i64>,
    /// At most this many lines (1–1000, default 1000).
    pub(crate) limit: Option<i64>,
}

fn deployment_id(path: Result<Path<i64>, PathRejection>) -> Result<i64, ApiError> {
    path.map(|Path(id)| id)
        .map_err(|_| ApiError::bad_request("a deployment id is a number"))
}

/// One deployment, with its job: attempts, the replica holding it, the last error.
#[utoipa::path(
    get,
    path = "/api/v1/deployments/{id}",
    params(("id" = i64, Path, description = "Deployment id")),
    responses(
        (status = 200, description = "The deployment", body = DeploymentDetail),
        (status = 401, description = "No or invalid credentials", body = ErrorBody),
        (status = 404, description = "No such deployment", body = ErrorBody),
    )
)]
pub(crate) async fn get_deployment(
    State(state): State<AppState>,
    _: Authorized<ReadResources>,
    path: Result<Path<i64>, PathRejection>,
) -> Result<Json<DeploymentDetail>, ApiError> {
    let id = deployment_id(path)?;
    let deployment = state
        .store
        .deployments()
        .deployment(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no deployment {id}")))?;
    let job = state.store.jobs().get(id).await?;
    let now = store::now_millis();
    let deployment = deployment_views(&state, vec![deployment])
        .await?
        .pop()
        .ok_or_else(|| ApiError::not_found(format!("no deployment {id}")))?;
    Ok(Json(DeploymentDetail {
        deployment,
        job: job.map(|job| JobView {
            state: match (job.finished_at, job.lease_until) {
                (Some(_), _) => "finished",
                (None, Some(until)) if until >= now => "running",
                (None, _) => "waiting",
            }
            .to_owned(),
            attempts: job.attempts,
            run_after: rfc3339(job.run_after),
            lease_owner: job.lease_owner,
            lease_until: job.lease_until.map(rfc3339),
            last_error: job.last_error,
            finished_at: job.finished_at.map(rfc3339),
        }),
    }))
}

/// A deployment's log: each attempt, the target's steps, retries, a program's output.
#[utoipa::path(
    get,
    path = "/api/v1/deployments/{id}/log",
    params(("id" = i64, Path, description = "Deployment id"), LogQuery),
    responses(
        (status = 200, description = "A page of log lines, oldest first", body = DeploymentLog),
        (status = 400, description = "A bad `after` or `limit`", body = ErrorBody),
        (status = 401, description = "No or invalid credentials", body = ErrorBody),
        (status = 404, description = "No such deployment", body = ErrorBody),
    )
)]
pub(crate) async fn deployment_log(
    State(state): State<AppState>,
    _: Authorized<ReadResources>,
    path: Result<Path<i64>, PathRejection>,
    query: Result<Query<LogQuery>, QueryRejection>,
) -> Result<Json<DeploymentLog>, ApiError> {
    let id = deployment_id(path)?;
    let Query(query) = query.map_err(|r| ApiError::bad_request(r.body_text()))?;
    let after = query.after.unwrap_or(0);
    if after < 0 {
        return Err(ApiError::bad_request("after must not be negative"));
    }
    let limit = super::page::limit(
        query.limit,
        super::page::Limits {
            default: MAX_LOG_PAGE,
            max: MAX_LOG_PAGE,
        },
    )?;
    if state.store.deployments().deployment(id).await?.is_none() {
        return Err(ApiError::not_found(format!("no deployment {id}")));
    }
    let lines = state.store.jobs().log(id, after, limit + 1).await?;
    let engine::Page { items: lines, next } =
        engine::Page::from_one_more(lines, limit, |line| line.seq);
    Ok(Json(DeploymentLog {
        lines: lines
            .into_iter()
            .map(|line| LogLineView {
                seq: line.seq,
                at: rfc3339(line.at),
                line: line.line,
            })
            .collect(),
        next,
    }))
}

/// Longest message a receiver may report.
const MAX_CALLBACK_MESSAGE: usize = 4 * 1024;

/// A webhook receiver reports how the deployment it was sent went. Authenticated by
/// the deployment's one-time callback token (`Authorization: Bearer TOKEN`, the
/// `callback_token` of the payload), not by a user's token; accepted once.
#[utoipa::path(
    post,
    path = "/api/v1/deployments/{id}/callback",
    params(("id" = i64, Path, description = "Deployment id")),
    request_body = CallbackRequest,
    responses(
        (status = 200, description = "Recorded; the deployment finishes with it", body = CallbackResponse),
        (status = 400, description = "A malformed report", body = ErrorBody),
        (status = 401, description = "No callback token, or not this deployment's", body = ErrorBody),
        (status = 404, description = "No such deployment, or not one of a webhook target", body = ErrorBody),
        (status = 409, description = "Reported before, or the deployment already finished", body = ErrorBody),
    )
)]
pub(crate) async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<i64>, PathRejection>,
    body: Result<JsonBody<CallbackRequest>, ApiError>,
) -> Result<Json<CallbackResponse>, ApiError> {
    let id = deployment_id(path)?;
    let realm = state.registry.config().realm.clone();
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            let (scheme, token) = value.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim().to_owned())
        })
        .ok_or_else(|| {
            ApiError::unauthorized(
                &realm,
                "send the deployment's callback token as `Authorization: Bearer TOKEN`",
            )
        })?;
    // The token first: nobody without it learns whether the deployment exists.
    let valid = state
        .engine
        .callbacks()
        .verify(id, &token)
        .await
        .map_err(|error| {
            ApiError::internal("checking a callback token", &std::io::Error::other(error))
        })?;
    if !valid {
        return Err(ApiError::unauthorized(
            &realm,
            format!("not the callback token of deployment {id}"),
        ));
    }
    let deployment = state
        .store
        .deployments()
        .deployment(id)
        .await?
        .filter(|deployment| deployment.target == "webhook")
        .ok_or_else(|| ApiError::not_found(format!("no webhook deployment {id}")))?;
    let JsonBody(report) = body?;
    let succeeded = match report.state.as_str() {
        "succeeded" => true,
        "failed" => false,
        other => {
            return Err(ApiError::bad_request(format!(
                "state `{other}` is neither `succeeded` nor `failed`"
            )));
        }
    };
    if report
        .message
        .as_ref()
        .is_some_and(|m| m.len() > MAX_CALLBACK_MESSAGE)
    {
        return Err(ApiError::bad_request(format!(
            "the message is longer than {MAX_CALLBACK_MESSAGE} bytes"
        )));
    }
    if deployment.state != domain::promotion::DeploymentState::Deploying {
        return Err(ApiError::conflict(
            format!(
                "deployment {id} finished already ({})",
                deployment.state.as_str()
            ),
            serde_json::json!({ "state": deployment.state.as_str() }),
        ));
    }
    let recorded = state
        .engine
        .callbacks()
        .record(id, succeeded, report.message.as_deref())
        .await
        .map_err(|error| {
            ApiError::internal("recording a callback", &std::io::Error::other(error))
        })?;
    if !recorded {
        return Err(ApiError::conflict(
            format!("deployment {id} was reported before; a callback is accepted once"),
            serde_json::Value::Null,
        ));
    }
    tracing::info!(deployment = id, state = %report.state, "webhook callback recorded");
    Ok(Json(CallbackResponse {
        deployment_id: id,
        state: report.state,
    }))
}
