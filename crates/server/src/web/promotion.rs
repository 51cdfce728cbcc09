//! A promotion's page (`/promotions/ID`): its gate conditions, the decisions with who
//! and when, the deployment it started with its job (attempts, lease, errors) and its
//! log; and the approve, reject and cancel forms.

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;

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
                    @if log.is_empty() { p.muted { "No log lines yet." } } @else {
                        pre.log aria-label="Deployment log" tabindex="0" {
                            @for line in &log { (time_text(line.at)) "  " (line.line) "\n" }
                        }
                    }
                }
            }
        },
    ))
}

fn time_text(millis: i64) -> String {
    jiff::Timestamp::from_millisecond(millis)
        .map(|at| at.strftime("%H:%M:%S").to_string())
        .unwrap_or_default()
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
