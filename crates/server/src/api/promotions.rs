//! The promotion API: build notifications, check reports, promotions and their
//! approvals, rollbacks, holds and drift reports, application status, history and
//! artifacts. Every handler that changes something authenticates the caller, turns
//! them into an [`engine::Actor`] and lets the engine decide; the reads (status,
//! history, an artifact) authorize `resources:read`, ask the engine's queries and
//! render their views as JSON.

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use domain::Digest;
use domain::promotion::PromotionState;
use engine::{CheckRequest as EngineCheck, EngineError, PromoteRequest as EnginePromote};
use http::{HeaderMap, StatusCode};
use store::{Build, CheckReport, Deployment, Hold, Promotion, Provenance};

use super::body::{JsonBody, OptionalJsonBody};
use super::error::ApiError;
use super::extract::{Authorized, Caller, ReadResources};
use super::promotion_types::*;
use super::types::ErrorBody;
use crate::AppState;

/// Promotions, applications and deployments per page.
const PAGE: super::page::Limits = super::page::Limits {
    default: 50,
    max: 500,
};

/// Largest check report accepted (a Trivy report of a big image runs to megabytes).
pub(crate) const MAX_CHECK_BYTES: usize = 32 << 20;

impl From<EngineError> for ApiError {
    fn from(error: EngineError) -> ApiError {
        let message = error.to_string();
        match error {
            EngineError::UnknownApplication(_)
            | EngineError::UnknownEnvironment { .. }
            | EngineError::NotFound(_) => ApiError::not_found(message),
            EngineError::NotAnArtifact(_) => ApiError::unprocessable("not_an_artifact", message),
            EngineError::IdempotencyKeyReused(id) => {
                ApiError::unprocessable("idempotency_key_reused", message)
                    .with_detail(serde_json::json!({ "promotion": id }))
            }
            EngineError::RollbackKeyReused(id) => {
                ApiError::unprocessable("idempotency_key_reused", message)
                    .with_detail(serde_json::json!({ "deployment": id }))
            }
            EngineError::Invalid(_) => ApiError::bad_request(message),
            EngineError::Forbidden(_) => ApiError::refused(message),
            EngineError::Conflict(_) | EngineError::Busy(_) => {
                ApiError::conflict(message, serde_json::Value::Null)
            }
            EngineError::Corrupt(_) => ApiError::internal("stored data is unreadable", &error),
            EngineError::Store(store) => store.into(),
        }
    }
}

/// The request's `Idempotency-Key`, if it sent one: 1 to 255 characters of text.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    match headers.get("idempotency-key") {
        None => Ok(None),
        Some(value) => {
            let key = value
                .to_str()
                .map_err(|_| ApiError::bad_request("the Idempotency-Key header is not text"))?;
            if key.is_empty() || key.len() > 255 {
                return Err(ApiError::bad_request(
                    "the Idempotency-Key header must be 1 to 255 characters",
                ));
            }
            Ok(Some(key.to_owned()))
        }
    }
}

pub(super) fn digest(text: &str) -> Result<Digest, ApiError> {
    Digest::parse(text).map_err(|e| ApiError::bad_request(format!("digest `{text}`: {e}")))
}

fn page(limit: Option<i64>) -> Result<i64, ApiError> {
    super::page::limit(limit, PAGE)
}

fn parse_config(text: Option<&str>) -> Option<serde_json::Value> {
    text.and_then(|text| serde_json::from_str(text).ok())
}

pub(crate) fn build_view(build: Build) -> BuildView {
    BuildView {
        application: build.application,
        digest: build.digest,
        commit: build.provenance.commit,
        branch: build.provenance.branch,
        run_id: build.provenance.run_id,
        run_url: build.provenance.run_url,
        source: build.provenance.source,
        triggered_by: build.provenance.triggered_by,
        author: build.provenance.author,
        committed_at: build.provenance.committed_at.map(rfc3339),
        tag: build.provenance.tag,
        builder: build.builder,
        notified_at: rfc3339(build.notified_at),
    }
}

pub(crate) fn check_view(check: CheckReport) -> CheckView {
    CheckView {
        id: check.id,
        digest: check.digest,
        name: check.name,
        status: if check.passed { "passed" } else { "failed" }.to_owned(),
        url: check.url,
        format: check.format,
        findings: check.findings.map(|findings| {
            findings
                .into_iter()
                .map(|(severity, count)| (severity.as_str().to_owned(), count))
                .collect()
        }),
        reported_by: check.reported_by,
        reported_at: rfc3339(check.reported_at),
    }
}

pub(crate) fn promotion_view(promotion: Promotion) -> PromotionView {
    PromotionView {
        id: promotion.id,
        application: promotion.application,
        environment: promotion.environment,
        digest: promotion.digest,
        config: parse_config(promotion.config.as_deref()),
        config_revision: promotion.config_revision,
        state: api_types::PromotionState::from(promotion.state.as_str().to_owned()),
        requested_by: promotion.requested_by,
        auto: promotion.auto,
        override_reason: promotion.override_reason,
        reason: promotion.reason,
        conditions: promotion
            .conditions
            .into_iter()
            .map(|c| ConditionView {
                kind: c.kind,
                subject: c.subject,
                met: c.met,
                reason: c.reason,
            })
            .collect(),
        version: promotion.version,
        deployment_id: promotion.deployment_id,
        decisions: promotion
            .decisions
            .into_iter()
            .map(|d| DecisionView {
                approver: d.approver,
                decision: d.decision,
                comment: d.comment,
                at: rfc3339(d.at),
            })
            .collect(),
        created_at: rfc3339(promotion.created_at),
        updated_at: rfc3339(promotion.updated_at),
    }
}

pub(crate) fn deployment_view(deployment: Deployment, commit: Option<String>) -> DeploymentView {
    DeploymentView {
        id: deployment.id,
        application: deployment.application,
        environment: deployment.environment,
        digest: deployment.digest,
        config: parse_config(deployment.config.as_deref()),
        config_revision: deployment.config_revision,
        promotion_id: deployment.promotion_id,
        reason: deployment.reason.as_str().to_owned(),
        state: deployment.state.as_str().to_owned(),
        target: deployment.target,
        message: deployment.message,
        requested_by: deployment.requested_by,
        started_at: rfc3339(deployment.started_at),
        finished_at: deployment.finished_at.map(rfc3339),
        commit,
        tag: deployment.tag,
    }
}

pub(crate) fn hold_view(hold: Hold) -> HoldView {
    HoldView {
        reason: hold.reason,
        by: hold.by,
        at: rfc3339(hold.at),
    }
}

/// Deployment views with each build's commit.
pub(crate) async fn deployment_views(
    state: &AppState,
    deployments: Vec<Deployment>,
) -> Result<Vec<DeploymentView>, ApiError> {
    Ok(state
        .engine
        .summarize(deployments)
        .await?
        .into_iter()
        .map(summary_view)
        .collect())
}

/// A deployment as the engine summarizes it, on the wire.
pub(crate) fn summary_view(summary: engine::DeploymentSummary) -> DeploymentView {
    deployment_view(summary.deployment, summary.commit)
}

/// Record the provenance of a build; auto-promotes into an `auto` first stage.
#[utoipa::path(
    post,
    path = "/api/v1/builds",
    request_body = BuildRequest,
    responses(
        (status = 201, description = "Recorded (and auto-promoted where the first stage is auto)", body = NotifyResponse),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 401, description = "No or invalid credentials", body = ErrorBody),
        (status = 403, description = "The caller may not notify builds of this application", body = ErrorBody),
        (status = 404, description = "No such application", body = ErrorBody),
        (status = 422, description = "`not_an_artifact`: the digest is not in the application's repository", body = ErrorBody),
    )
)]
pub(crate) async fn notify(
    State(state): State<AppState>,
    Caller(actor): Caller,
    body: Result<JsonBody<BuildRequest>, ApiError>,
) -> Result<Response, ApiError> {
    let JsonBody(request) = body?;
    let digest = digest(&request.digest)?;
    let committed_at = match request.committed_at.as_deref() {
        None => None,
        Some(text) => Some(
            text.parse::<jiff::Timestamp>()
                .map_err(|e| ApiError::bad_request(format!("committed_at `{text}`: {e}")))?
                .as_millisecond(),
        ),
    };
    if let Some(tag) = request.tag.as_deref() {
        domain::Tag::parse(tag).map_err(|e| ApiError::bad_request(format!("tag `{tag}`: {e}")))?;
    }
    let provenance = Provenance {
        tag: request.tag,
        commit: request.commit,
        branch: request.branch,
        run_id: request.run_id,
        run_url: request.run_url,
        source: request.source,
        triggered_by: request.triggered_by,
        author: request.author,
        committed_at,
    };
    let notified = state
        .engine
        .notify(&actor, &request.application, &digest, provenance)
        .await?;
    let response = NotifyResponse {
        build: build_view(notified.build),
        promotion: notified.promotion.map(promotion_view),
        held: notified.held.map(hold_view),
    };
    Ok((StatusCode::CREATED, Json(response)).into_response())
}

/// Report a check (test results, a scan) about one digest.
#[utoipa::path(
    post,
    path = "/api/v1/checks",
    request_body = CheckRequest,
    responses(
        (status = 201, description = "Recorded; waiting promotions of the digest were re-evaluated", body = CheckView),
        (status = 400, description = "Malformed request or unreadable report", body = ErrorBody),
        (status = 401, description = "No or invalid credentials", body = ErrorBody),
        (status = 403, description = "The caller may not report checks on this application", body = ErrorBody),
        (status = 404, description = "No such application", body = ErrorBody),
        (status = 413, description = "The body is larger than 32 MiB", body = ErrorBody),
        (status = 422, description = "`not_an_artifact`", body = ErrorBody),
    )
)]
pub(crate) async fn report_check(
    State(state): State<AppState>,
    Caller(actor): Caller,
    body: Result<JsonBody<CheckRequest, MAX_CHECK_BYTES>, ApiError>,
) -> Result<Response, ApiError> {
    let JsonBody(request) = body?;
    let digest = digest(&request.digest)?;
    let passed = match request.status.as_str() {
        "passed" => true,
        "failed" => false,
        other => {
            return Err(ApiError::bad_request(format!(
                "status `{other}`: use passed or failed"
            )));
        }
    };
    let report = state
        .engine
        .report_check(
            &actor,
            &EngineCheck {
                application: &request.application,
                digest: &digest,
                name: &request.name,
                passed,
                url: request.url.as_deref(),
                report: request.report.as_deref().map(str::as_bytes),
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(check_view(report))).into_response())
}

/// Request a promotion of a digest into an environment.
///
/// The gate is evaluated at once: an open gate deploys before the answer (state
/// `deployed` or `failed`), a shut one leaves the promotion `waiting` with every
/// condition and why. A repeated `Idempotency-Key` with the same request returns
/// the promotion it made (200), and so does a promotion of what the environment runs
/// or is deploying already (200, nothing deployed) unless `redeploy` is set.
#[utoipa::path(
    post,
    path = "/api/v1/promotions",
    request_body = PromoteRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe")),
    responses(
        (status = 201, description = "Created", body = PromotionView),
        (status = 200, description = "An existing promotion answers the request: this key's, an identical open one, or the one that put the digest in the environment (nothing deployed; send `redeploy` to deploy again)", body = PromotionView),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 401, description = "No or invalid credentials", body = ErrorBody),
        (status = 403, description = "The caller may not promote this application", body = ErrorBody),
        (status = 404, description = "No such application or environment", body = ErrorBody),
        (status = 409, description = "Something is in the way", body = ErrorBody),
        (status = 422, description = "`not_an_artifact` or `idempotency_key_reused`", body = ErrorBody),
    )
)]
pub(crate) async fn promote(
    State(state): State<AppState>,
    Caller(actor): Caller,
    headers: HeaderMap,
    body: Result<JsonBody<PromoteRequest>, ApiError>,
) -> Result<Response, ApiError> {
    let JsonBody(request) = body?;
    let digest = digest(&request.digest)?;
    let key = idempotency_key(&headers)?;
    let requested = state
        .engine
        .promote(
            &actor,
            &EnginePromote {
                application: &request.application,
                environment: &request.environment,
                digest: &digest,
                config: request.config.as_ref(),
                override_reason: request.override_reason.as_deref(),
                idempotency_key: key.as_deref(),
                redeploy: request.redeploy,
            },
        )
        .await?;
    let status = if requested.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(promotion_view(requested.promotion))).into_response())
}

/// List promotions, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/promotions",
    params(PromotionQuery),
    responses(
        (status = 200, description = "A page of promotions", body = PromotionList),
        (status = 400, description = "Bad query", body = ErrorBody),
        (status = 401, description = "No or invalid credentials", body = ErrorBody),
    )
)]
pub(crate) async fn list_promotions(
    State(state): State<AppState>,
    _: Authorized<ReadResources>,
    query: Result<Query<PromotionQuery>, QueryRejection>,
) -> Result<Json<PromotionList>, ApiError> {
    let Query(query) = query.map_err(|r| ApiError::bad_request(r.body_text()))?;
    let limit = page(query.limit)?;
    let promotion_state = match query.state.as_deref() {
        None => None,
        Some(text) => Some(
            PromotionState::parse(text)
                .ok_or_else(|| ApiError::bad_request(format!("unknown state `{text}`")))?,
        ),
    };
    let promotions = state
        .store
        .promotions()
        .list(
            query.application.as_deref(),
            query.environment.as_deref(),
            promotion_state,
            query.before,
            limit + 1,
        )
        .await?;
    let engine::Page {
        items: promotions,
        next,
    } = engine::Page::from_one_more(promotions, limit, |promotion| promotion.id);
    Ok(Json(PromotionList {
        promotions: promotions.into_iter().map(promotion_view).collect(),
        next,
    }))
}

fn promotion_id(path: Result<Path<i64>, PathRejection>) -> Result<i64, ApiError> {
    path.map(|Path(id)| id)
        .map_err(|_| ApiError::bad_request("a promotion id is a number"))
}

/// One promotion, with every gate condition as last evaluated and every decision.
#[utoipa::path(
    get,
    path = "/api/v1/promotions/{id}",
    params(("id" = i64, Path, description = "Promotion id")),
    responses(
        (status = 200, description = "The promotion", body = PromotionView),
        (status = 401, description = "No or invalid credentials", body = ErrorBody),
        (status = 404, description = "No such promotion", body = ErrorBody),
    )
)]
pub(crate) async fn get_promotion(
    State(state): State<AppState>,
    _: Authorized<ReadResources>,
    path: Result<Path<i64>, PathRejection>,
) -> Result<Json<PromotionView>, ApiError> {
    let id = promotion_id(path)?;
    Ok(Json(promotion_view(state.engine.promotion(id).await?)))
}

/// Approve a promotion. Refused for its requester, the build's actors, CI
/// identities and people without a role its gate asks for.
#[utoipa::path(
    post,
    path = "/api/v1/promotions/{id}/approve",
    params(("id" = i64, Path, description = "Promotion id")),
    request_body = CommentRequest,
    responses(
        (status = 200, description = "Approved; deployed if that opened the gate", body = PromotionView),
        (status = 403, description = "This person may not approve it (the message says why)", body = ErrorBody),
        (status = 404, description = "No such promotion", body = ErrorBody),
        (status = 409, description = "Not waiting, or already decided by this person", body = ErrorBody),
    )
)]
pub(crate) async fn approve(
    State(state): State<AppState>,
    Caller(actor): Caller,
    path: Result<Path<i64>, PathRejection>,
    body: Result<OptionalJsonBody<CommentRequest>, ApiError>,
) -> Result<Json<PromotionView>, ApiError> {
    let id = promotion_id(path)?;
    let OptionalJsonBody(body) = body?;
    let comment = body.and_then(|body| body.comment);
    let promotion = state.engine.approve(&actor, id, comment.as_deref()).await?;
    Ok(Json(promotion_view(promotion)))
}

/// Reject a promotion, ending it with the reason.
#[utoipa::path(
    post,
    path = "/api/v1/promotions/{id}/reject",
    params(("id" = i64, Path, description = "Promotion id")),
    request_body = RejectRequest,
    responses(
        (status = 200, description = "Rejected", body = PromotionView),
        (status = 400, description = "No reason given", body = ErrorBody),
        (status = 403, description = "This person may not reject it", body = ErrorBody),
        (status = 404, description = "No such promotion", body = ErrorBody),
        (status = 409, description = "Not pending, or already decided by this person", body = ErrorBody),
    )
)]
pub(crate) async fn reject(
    State(state): State<AppState>,
    Caller(actor): Caller,
    path: Result<Path<i64>, PathRejection>,
    body: Result<JsonBody<RejectRequest>, ApiError>,
) -> Result<Json<PromotionView>, ApiError> {
    let id = promotion_id(path)?;
    let JsonBody(request) = body?;
    let promotion = state.engine.reject(&actor, id, &request.reason).await?;
    Ok(Json(promotion_view(promotion)))
}

/// Cancel a pending promotion (its requester or an admin).
#[utoipa::path(
    post,
    path = "/api/v1/promotions/{id}/cancel",
    params(("id" = i64, Path, description = "Promotion id")),
    request_body = CommentRequest,
    responses(
        (status = 200, description = "Cancelled", body = PromotionView),
        (status = 403, description = "Neither its requester nor an admin", body = ErrorBody),
        (status = 404, description = "No such promotion", body = ErrorBody),
        (status = 409, description = "Not pending", body = ErrorBody),
    )
)]
pub(crate) async fn cancel(
    State(state): State<AppState>,
    Caller(actor): Caller,
    path: Result<Path<i64>, PathRejection>,
    body: Result<OptionalJsonBody<CommentRequest>, ApiError>,
) -> Result<Json<PromotionView>, ApiError> {
    let id = promotion_id(path)?;
    let OptionalJsonBody(body) = body?;
    let comment = body.and_then(|body| body.comment);
    let promotion = state.engine.cancel(&actor, id, comment.as_deref()).await?;
    Ok(Json(promotion_view(promotion)))
}

pub(super) fn app_env(
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<(String, String), ApiError> {
    path.map(|Path(pair)| pair)
        .map_err(|r| ApiError::bad_request(r.body_text()))
}

/// Roll an environment back to the digest it ran before (or `to`), and hold it. With
/// `from`, only while the environment still runs that digest. A repeated
/// `Idempotency-Key` with the same request returns the deployment it started (200).
#[utoipa::path(
    post,
    path = "/api/v1/apps/{app}/environments/{env}/rollback",
    params(
        ("app" = String, Path),
        ("env" = String, Path),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe"),
    ),
    request_body = RollbackRequest,
    responses(
        (status = 201, description = "Rolled back (see `state`)", body = DeploymentView),
        (status = 200, description = "The deployment this key already started", body = DeploymentView),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 403, description = "The caller may not deploy this application", body = ErrorBody),
        (status = 404, description = "No such application or environment", body = ErrorBody),
        (status = 409, description = "Nothing to roll back to, a deployment is in flight, or the environment no longer runs `from`", body = ErrorBody),
        (status = 422, description = "`idempotency_key_reused`", body = ErrorBody),
    )
)]
pub(crate) async fn rollback(
    State(state): State<AppState>,
    Caller(actor): Caller,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Result<OptionalJsonBody<RollbackRequest>, ApiError>,
) -> Result<Response, ApiError> {
    let (application, environment) = app_env(path)?;
    let OptionalJsonBody(request) = body?;
    let request = request.unwrap_or_default();
    let to = request.to.as_deref().map(digest).transpose()?;
    let from = request.from.as_deref().map(digest).transpose()?;
    let key = idempotency_key(&headers)?;
    let rolled_back = state
        .engine
        .rollback(
            &actor,
            &engine::RollbackRequest {
                application: &application,
                environment: &environment,
                to: to.as_ref(),
                from: from.as_ref(),
                reason: request.reason.as_deref(),
                idempotency_key: key.as_deref(),
            },
        )
        .await?;
    let status = if rolled_back.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let views = deployment_views(&state, vec![rolled_back.deployment]).await?;
    Ok((status, Json(views.into_iter().next())).into_response())
}

/// Report what an environment runs (an agent reading it back): drift is flagged when
/// that is not what Gantry deployed there, and cleared when it agrees again.
#[utoipa::path(
    post,
    path = "/api/v1/apps/{app}/environments/{env}/observed",
    params(("app" = String, Path), ("env" = String, Path)),
    request_body = ObservedRequest,
    responses(
        (status = 200, description = "Recorded, with whether it drifts", body = ObservationView),
        (status = 400, description = "Not a digest", body = ErrorBody),
        (status = 403, description = "The caller may not report on this environment", body = ErrorBody),
        (status = 404, description = "No such application or environment", body = ErrorBody),
    )
)]
pub(crate) async fn observed(
    State(state): State<AppState>,
    Caller(actor): Caller,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Result<JsonBody<ObservedRequest>, ApiError>,
) -> Result<Json<ObservationView>, ApiError> {
    let (application, environment) = app_env(path)?;
    let JsonBody(request) = body?;
    let digest = digest(&request.digest)?;
    let observation = state
        .engine
        .observe(&actor, &application, &environment, &digest)
        .await?;
    Ok(Json(ObservationView {
        application,
        environment,
        expected: observation.expected,
        observed: observation.observed,
        drift: observation.drift_since.is_some(),
        drift_since: observation.drift_since.map(rfc3339),
    }))
}

/// Hold an environment: auto-promotion stays out until released.
#[utoipa::path(
    put,
    path = "/api/v1/apps/{app}/environments/{env}/hold",
    params(("app" = String, Path), ("env" = String, Path)),
    request_body = HoldRequest,
    responses(
        (status = 200, description = "Held", body = HoldView),
        (status = 400, description = "No reason", body = ErrorBody),
        (status = 403, description = "The caller may not deploy this application", body = ErrorBody),
        (status = 404, description = "No such application or environment", body = ErrorBody),
    )
)]
pub(crate) async fn hold(
    State(state): State<AppState>,
    Caller(actor): Caller,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Result<JsonBody<HoldRequest>, ApiError>,
) -> Result<Json<HoldView>, ApiError> {
    let (application, environment) = app_env(path)?;
    let JsonBody(request) = body?;
    let hold = state
        .engine
        .hold(&actor, &application, &environment, &request.reason)
        .await?;
    Ok(Json(hold_view(hold)))
}

/// Release an environment's hold.
#[utoipa::path(
    delete,
    path = "/api/v1/apps/{app}/environments/{env}/hold",
    params(("app" = String, Path), ("env" = String, Path)),
    responses(
        (status = 204, description = "Released (or was not held)"),
        (status = 403, description = "The caller may not deploy this application", body = ErrorBody),
        (status = 404, description = "No such application or environment", body = ErrorBody),
    )
)]
pub(crate) async fn release(
    State(state): State<AppState>,
    Caller(actor): Caller,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let (application, environment) = app_env(path)?;
    state
        .engine
        .release(&actor, &application, &environment)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Where one application's environments stand, on the wire.
fn app_status_view(status: engine::ApplicationStatus) -> AppStatus {
    AppStatus {
        name: status.name,
        app_type: status.app_type,
        repository: status.repository,
        pipeline: status.pipeline,
        environments: status
            .environments
            .into_iter()
            .map(|environment| EnvironmentView {
                name: environment.name,
                auto: environment.auto,
                target: environment.target,
                current: environment.current.map(summary_view),
                deploying: environment.deploying.map(summary_view),
                observed: environment.observed.map(|observed| ObservedView {
                    digest: observed.digest,
                    at: rfc3339(observed.at),
                    by: observed.by,
                }),
                drift_since: environment.drift_since.map(rfc3339),
                hold: environment.hold.map(hold_view),
                pending: environment
                    .pending
                    .into_iter()
                    .map(promotion_view)
                    .collect(),
                quarantined: environment
                    .quarantined
                    .map(super::quarantine::quarantine_view),
            })
            .collect(),
    }
}

/// List applications with where each environment stands.
#[utoipa::path(
    get,
    path = "/api/v1/apps",
    params(AppQuery),
    responses(
        (status = 200, description = "A page of applications", body = AppList),
        (status = 401, description = "No or invalid credentials", body = ErrorBody),
    )
)]
pub(crate) async fn list_apps(
    State(state): State<AppState>,
    _: Authorized<ReadResources>,
    query: Result<Query<AppQuery>, QueryRejection>,
) -> Result<Json<AppList>, ApiError> {
    let Query(query) = query.map_err(|r| ApiError::bad_request(r.body_text()))?;
    let limit = page(query.limit)?;
    let listed = state
        .engine
        .applications(query.after.as_deref(), limit)
        .await?;
    Ok(Json(AppList {
        applications: listed.items.into_iter().map(app_status_view).collect(),
        next: listed.next,
    }))
}

/// One application: each environment in pipeline order with what runs there, its
/// hold and its pending promotions.
#[utoipa::path(
    get,
    path = "/api/v1/apps/{app}",
    params(("app" = String, Path)),
    responses(
        (status = 200, description = "The application's status", body = AppStatus),
        (status = 404, description = "No such application", body = ErrorBody),
    )
)]
pub(crate) async fn get_app(
    State(state): State<AppState>,
    _: Authorized<ReadResources>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<AppStatus>, ApiError> {
    let Path(name) = path.map_err(|r| ApiError::bad_request(r.body_text()))?;
    Ok(Json(app_status_view(
        state.engine.application_status(&name).await?,
    )))
}

/// Deployments of an application, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/apps/{app}/history",
    params(("app" = String, Path), HistoryQuery),
    responses(
        (status = 200, description = "A page of deployments", body = DeploymentList),
        (status = 404, description = "No such application", body = ErrorBody),
    )
)]
pub(crate) async fn history(
    State(state): State<AppState>,
    _: Authorized<ReadResources>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Json<DeploymentList>, ApiError> {
    let Path(name) = path.map_err(|r| ApiError::bad_request(r.body_text()))?;
    let Query(query) = query.map_err(|r| ApiError::bad_request(r.body_text()))?;
    let limit = page(query.limit)?;
    let listed = state
        .engine
        .history(&name, query.environment.as_deref(), query.before, limit)
        .await?;
    Ok(Json(DeploymentList {
        deployments: listed.items.into_iter().map(summary_view).collect(),
        next: listed.next,
    }))
}

/// An artifact's chain of custody in every application that knows it: built
/// (provenance), scanned and tested (checks with findings), approved (who, when, with
/// which roles), deployed (where, when, by which target), and attested (each signed
/// attestation of a deployment, verified now).
#[utoipa::path(
    get,
    path = "/api/v1/artifacts/{digest}/custody",
    params(("digest" = String, Path)),
    responses(
        (status = 200, description = "The chain of custody", body = CustodyView),
        (status = 400, description = "Not a digest", body = ErrorBody),
        (status = 404, description = "No application built, promoted or deployed it", body = ErrorBody),
    )
)]
pub(crate) async fn custody(
    State(state): State<AppState>,
    _: Authorized<ReadResources>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<CustodyView>, ApiError> {
    let Path(text) = path.map_err(|r| ApiError::bad_request(r.body_text()))?;
    let digest = digest(&text)?;
    let applications = state.engine.applications_knowing(&digest).await?;
    if applications.is_empty() {
        return Err(ApiError::not_found(format!(
            "no application built, promoted or deployed {digest}"
        )));
    }
    let mut views = Vec::with_capacity(applications.len());
    for application in applications {
        let custody = state.engine.custody(&application, &digest).await?;
        let record = custody.record;
        views.push(ApplicationCustodyView {
            application: record.application,
            repository: record.repository,
            built: record.build.map(build_view),
            checks: record.checks.into_iter().map(check_view).collect(),
            decisions: custody
                .decisions
                .into_iter()
                .map(|decision| CustodyDecisionView {
                    promotion_id: decision.promotion_id,
                    environment: decision.environment,
                    approver: decision.approver,
                    decision: decision.decision,
                    roles: decision.roles,
                    at: rfc3339(decision.at),
                    comment: decision.comment,
                })
                .collect(),
            deployments: record.deployments.into_iter().map(summary_view).collect(),
            attestations: custody
                .attestations
                .into_iter()
                .map(|attestation| AttestationView {
                    deployment_id: attestation.deployment_id,
                    environment: attestation.environment,
                    predicate_type: attestation.predicate_type,
                    manifest_digest: attestation.manifest_digest,
                    key_id: attestation.key_id,
                    created_at: rfc3339(attestation.created_at),
                    stored: attestation.stored,
                    verified: attestation.verified,
                    verification: attestation.verification,
                })
                .collect(),
        });
    }
    Ok(Json(CustodyView {
        digest: digest.to_string(),
        applications: views,
    }))
}

/// Everything known about one artifact: provenance, checks, deployments.
#[utoipa::path(
    get,
    path = "/api/v1/apps/{app}/artifacts/{digest}",
    params(("app" = String, Path), ("digest" = String, Path)),
    responses(
        (status = 200, description = "The artifact", body = ArtifactView),
        (status = 404, description = "No such application", body = ErrorBody),
    )
)]
pub(crate) async fn artifact(
    State(state): State<AppState>,
    _: Authorized<ReadResources>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<ArtifactView>, ApiError> {
    let (name, digest_text) = app_env(path)?;
    let digest = digest(&digest_text)?;
    let record = state.engine.artifact(&name, &digest).await?;
    Ok(Json(ArtifactView {
        application: record.application,
        digest: record.digest,
        build: record.build.map(build_view),
        checks: record.checks.into_iter().map(check_view).collect(),
        deployments: record.deployments.into_iter().map(summary_view).collect(),
    }))
}
