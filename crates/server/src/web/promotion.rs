//! A promotion's page (`/promotions/ID`): its gate conditions, the decisions with who
//! and when, the deployment it started with its job (attempts, lease, errors) and its
//! log; and the approve, reject and cancel forms. While the deployment runs, the page
//! says so with a link to reload it; the optional script (`gantry.js`) polls
//! `/promotions/ID/log` instead, appends the new lines and reloads the page when the
//! deployment ends.

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use domain::promotion::DeploymentState;
use maud::{Markup, html};
use serde::{Deserialize, Serialize};

use super::application::{Done, pending_promotion};
use super::board::require_read;
use super::layout::{external_link, notice, page, short_digest, time};
use super::{PageError, Viewer, WebForm};
use crate::AppState;

/// The most log lines the page shows (the API pages through the rest).
const LOG_LINES: i64 = 500;

pub(crate) async fn promotion(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Query(done): Query<Done>,
) -> Result<Markup, PageError> {
    require_read(&state, &viewer)?;
    let id: i64 = id
        .parse()
        .map_err(|_| PageError::bad_request(format!("`{id}` is not a promotion id")))?;
    let promotion = state.engine.promotion(id).await?;
    let build = state
        .store
        .evidence()
        .build(&promotion.application, &promotion.digest)
        .await?;
    let refusal = state
        .engine
        .approval_refusals(
            &viewer.actor,
            &promotion.application,
            std::slice::from_ref(&promotion),
        )
        .await?
        .pop()
        .flatten();
    let deployment = match promotion.deployment_id {
        Some(id) => state.store.deployments().deployment(id).await?,
        None => None,
    };
    let job = match &deployment {
        Some(deployment) => state.store.jobs().get(deployment.id).await?,
        None => None,
    };
    let log = match &deployment {
        Some(deployment) => state.store.jobs().log(deployment.id, 0, LOG_LINES).await?,
        None => Vec::new(),
    };
    let now = store::now_millis();
    let app = &promotion.application;
    Ok(page(
        &format!("Promotion {id}"),
        Some(&viewer),
        html! {
            h1 { "Promotion " (id) ": " a href=(format!("/apps/{app}")) { (app) } " into " (promotion.environment) }
            (notice(done.done.as_deref()))
            dl.facts {
                dt { "Digest" } dd { code { (promotion.digest) } }
                @if let Some(build) = &build {
                    @if let Some(commit) = &build.provenance.commit { dt { "Commit" } dd { code { (commit) } } }
                    @if let Some(run_url) = &build.provenance.run_url {
                        dt { "CI run" } dd { (external_link(run_url, build.provenance.run_id.as_deref().unwrap_or(run_url))) }
                    }
                    @if let Some(source) = &build.provenance.source { dt { "Source" } dd { (external_link(source, source)) } }
                    dt { "Built by" } dd { (build.builder) }
                }
                dt { "State" } dd { span class=(format!("state state-{}", promotion.state.as_str())) { (promotion.state.as_str()) }
                    @if let Some(reason) = &promotion.reason { " — " (reason) } }
                dt { "Requested" } dd { "by " (promotion.requested_by) " at " (time(promotion.created_at))
                    @if promotion.auto { " (automatic)" } }
                @if let Some(reason) = &promotion.override_reason { dt { "Gate overridden" } dd { (reason) } }
                @if let Some(config) = &promotion.config_revision { dt { "Config revision" } dd { code { (config) } } }
            }
            h2 { "Gate and decisions" }
            (pending_promotion(&viewer, &promotion, refusal.as_deref(), now))
            h2 { "Deployment" }
            @match &deployment {
                None => p { "No deployment yet." },
                Some(deployment) => {
                    dl.facts {
                        dt { "Deployment" } dd { (deployment.id) " through " (deployment.target) }
                        dt { "Outcome" } dd { span class=(format!("state state-{}", deployment.state.as_str())) { (deployment.state.as_str()) }
                            @if let Some(message) = &deployment.message { " — " (message) } }
                        dt { "Started" } dd { (time(deployment.started_at)) }
                        @if let Some(finished) = deployment.finished_at { dt { "Finished" } dd { (time(finished)) } }
                        dt { "Digest" } dd { (short_digest(&deployment.digest)) }
                        @if let Some(job) = &job {
                            dt { "Attempts" } dd { (job.attempts) }
                            @if let (Some(owner), Some(until)) = (&job.lease_owner, job.lease_until) {
                                @if job.finished_at.is_none() { dt { "Running on" } dd { (owner) " (lease until " (time(until)) ")" } }
                            }
                            @if let Some(error) = &job.last_error { dt { "Last error" } dd { (error) } }
                        }
                    }
                    h3 { "Log" }
                    @let running = deployment.state == DeploymentState::Deploying;
                    @let after = log.last().map_or(0, |line| line.seq);
                    section data-live=[running.then(|| format!("/promotions/{id}/log"))] data-after=(after) aria-label="Deployment log" {
                        @if running {
                            p.notice data-live-status role="status" { "This deployment is running. "
                                a href=(format!("/promotions/{id}")) { "Reload the page" } " to see how far it got." }
                        }
                        @if log.is_empty() && !running { p.muted { "No log lines." } } @else {
                            pre.log aria-label="Deployment log lines" tabindex="0" {
                                @for line in &log { (log_text(line)) "\n" }
                            }
                        }
                    }
                }
            }
        },
    ))
}

/// A log line as the page shows it: its time (UTC, to the second) and its text.
fn log_text(line: &store::LogLine) -> String {
    let at = jiff::Timestamp::from_millisecond(line.at)
        .map(|at| at.strftime("%H:%M:%S").to_string())
        .unwrap_or_default();
    format!("{at}  {}", line.line)
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct LogParams {
    #[serde(default)]
    after: i64,
}

/// What the optional script polls while a deployment runs: its log lines after
/// `after`, and whether it still runs (when it stops, the script reloads the page).
#[derive(Debug, Serialize)]
struct LiveLog {
    lines: Vec<LiveLine>,
    running: bool,
}

#[derive(Debug, Serialize)]
struct LiveLine {
    seq: i64,
    text: String,
}

pub(crate) async fn live_log(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    params: Result<Query<LogParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, PageError> {
    let Query(params) = params.map_err(|r| PageError::bad_request(r.body_text()))?;
    require_read(&state, &viewer)?;
    let id = promotion_id(&id)?;
    let promotion = state.engine.promotion(id).await?;
    let deployment = match promotion.deployment_id {
        Some(id) => state.store.deployments().deployment(id).await?,
        None => None,
    }
    .ok_or_else(|| PageError::not_found(format!("promotion {id} has no deployment")))?;
    let lines = state
        .store
        .jobs()
        .log(deployment.id, params.after, LOG_LINES)
        .await?;
    Ok(axum::Json(LiveLog {
        running: deployment.state == DeploymentState::Deploying,
        lines: lines
            .iter()
            .map(|line| LiveLine {
                seq: line.seq,
                text: log_text(line),
            })
            .collect(),
    })
    .into_response())
}

#[derive(Debug, Deserialize)]
pub(crate) struct DecisionForm {
    #[serde(default)]
    csrf: String,
    comment: Option<String>,
    reason: Option<String>,
}

fn promotion_id(id: &str) -> Result<i64, PageError> {
    id.parse()
        .map_err(|_| PageError::bad_request(format!("`{id}` is not a promotion id")))
}

fn filled(text: Option<&str>) -> Option<&str> {
    text.map(str::trim).filter(|text| !text.is_empty())
}

pub(crate) async fn approve(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    WebForm(form): WebForm<DecisionForm>,
) -> Result<Response, PageError> {
    viewer.check_csrf(&form.csrf)?;
    let id = promotion_id(&id)?;
    state
        .engine
        .approve(&viewer.actor, id, filled(form.comment.as_deref()))
        .await?;
    Ok(Redirect::to(&format!("/promotions/{id}?done=approved")).into_response())
}

pub(crate) async fn reject(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    WebForm(form): WebForm<DecisionForm>,
) -> Result<Response, PageError> {
    viewer.check_csrf(&form.csrf)?;
    let id = promotion_id(&id)?;
    state
        .engine
        .reject(
            &viewer.actor,
            id,
            form.reason.as_deref().unwrap_or("").trim(),
        )
        .await?;
    Ok(Redirect::to(&format!("/promotions/{id}?done=rejected")).into_response())
}

pub(crate) async fn cancel(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    WebForm(form): WebForm<DecisionForm>,
) -> Result<Response, PageError> {
    viewer.check_csrf(&form.csrf)?;
    let id = promotion_id(&id)?;
    state
        .engine
        .cancel(&viewer.actor, id, filled(form.reason.as_deref()))
        .await?;
    Ok(Redirect::to(&format!("/promotions/{id}?done=cancelled")).into_response())
}
