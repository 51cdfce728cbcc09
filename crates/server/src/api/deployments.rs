//! One deployment, its durable job and its log: `GET /api/v1/deployments/{id}` and
//! `GET /api/v1/deployments/{id}/log`.

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use domain::Action;
use http::HeaderMap;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::authorize;
use super::error::ApiError;
use super::promotion_types::{DeploymentView, rfc3339};
use super::promotions::deployment_views;
use super::types::ErrorBody;
use crate::AppState;

/// Log lines returned at most per request.
const MAX_LOG_PAGE: i64 = 1_000;

/// A deployment with the job that carries it out.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct DeploymentDetail {
    #[serde(flatten)]
    pub(crate) deployment: DeploymentView,
    pub(crate) job: Option<JobView>,
}

/// The durable job of a deployment.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct JobView {
    /// `waiting` (new, retrying, or its replica died), `running` or `finished`.
    pub(crate) state: String,
    /// Attempts started so far.
    pub(crate) attempts: u32,
    /// Not retried before this time.
    pub(crate) run_after: String,
    /// The replica holding it, while one does.
    pub(crate) lease_owner: Option<String>,
    pub(crate) lease_until: Option<String>,
    /// Why the last attempt failed, when it was retried.
    pub(crate) last_error: Option<String>,
    pub(crate) finished_at: Option<String>,
}

/// A page of a deployment's log.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct DeploymentLog {
    pub(crate) lines: Vec<LogLineView>,
    /// Pass as `after` for the next page; absent at the end of the log so far.
    pub(crate) next: Option<i64>,
}

/// One line of a deployment's log.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct LogLineView {
    pub(crate) seq: i64,
    pub(crate) at: String,
    pub(crate) line: String,
}

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
    headers: HeaderMap,
    path: Result<Path<i64>, PathRejection>,
) -> Result<Json<DeploymentDetail>, ApiError> {
    authorize(&state, &headers, Action::ReadResources).await?;
    let id = deployment_id(path)?;
    let deployment = state
        .store
        .promotions()
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
    headers: HeaderMap,
    path: Result<Path<i64>, PathRejection>,
    query: Result<Query<LogQuery>, QueryRejection>,
) -> Result<Json<DeploymentLog>, ApiError> {
    authorize(&state, &headers, Action::ReadResources).await?;
    let id = deployment_id(path)?;
    let Query(query) = query.map_err(|r| ApiError::bad_request(r.body_text()))?;
    let after = query.after.unwrap_or(0);
    if after < 0 {
        return Err(ApiError::bad_request("after must not be negative"));
    }
    let limit = query.limit.unwrap_or(MAX_LOG_PAGE);
    if !(1..=MAX_LOG_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit {limit} is out of range 1..={MAX_LOG_PAGE}"
        )));
    }
    if state.store.promotions().deployment(id).await?.is_none() {
        return Err(ApiError::not_found(format!("no deployment {id}")));
    }
    let lines = state.store.jobs().log(id, after, limit).await?;
    let next = (lines.len() as i64 == limit)
        .then(|| lines.last().map(|line| line.seq))
        .flatten();
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
