//! An environment's history (`/apps/APP/environments/ENV`): its deployments, newest
//! first and a page at a time, with outcome, reason, who, duration and commit; an
//! earlier successful one of another digest offers "roll back to this", which opens
//! the rollback's from → to confirmation.

use axum::extract::{Path, Query, State};
use domain::promotion::DeploymentState;
use engine::Permission;
use maud::{Markup, html};
use serde::Deserialize;

use super::board::require_read;
use super::layout::{page, short_commit, short_digest, time};
use super::{PageError, Viewer};
use crate::AppState;

/// Deployments a page shows.
const PAGE: i64 = 50;

#[derive(Debug, Default, Deserialize)]
pub(crate) struct HistoryParams {
    before: Option<i64>,
}

pub(crate) async fn environment(
    State(state): State<AppState>,
    viewer: Viewer,
    Path((app, env)): Path<(String, String)>,
    params: Result<Query<HistoryParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Markup, PageError> {
    let Query(params) = params.map_err(|r| PageError::bad_request(r.body_text()))?;
    require_read(&state, &viewer)?;
    let status = state.engine.application_status(&app).await?;
    let environment = status
        .environments
        .iter()
        .find(|e| e.name == env)
        .ok_or_else(|| PageError::not_found(format!("{app} has no environment {env}")))?;
    let history = state
        .engine
        .history(&app, Some(&env), params.before, PAGE)
        .await?;
    let current = environment
        .current
        .as_ref()
        .map(|current| current.deployment.digest.as_str());
    let may_rollback = viewer
        .actor
        .require(Permission::Rollback {
            application: &app,
            environment: &env,
        })
        .err();
    Ok(page(
        &format!("{env} of {app}"),
        Some(&viewer),
        html! {
            h1 { "History of " a href=(format!("/apps/{app}")) { (app) } " in " (env) }
            p {
                @match &environment.current {
                    Some(current) => { "Runs " a href=(format!("/artifacts/{}", current.deployment.digest)) { (short_digest(&current.deployment.digest)) } " since " (time(current.deployment.finished_at.unwrap_or(current.deployment.started_at))) "." }
                    None => "Nothing deployed yet.",
                }
                @if let Some(refusal) = &may_rollback { " " span.muted { "You cannot roll back here: " (refusal.to_string()) } }
            }
            @if history.items.is_empty() { p { "No deployments." } } @else {
                table {
                    caption { "Deployments to " (env) ", newest first" }
                    thead { tr {
                        th scope="col" { "#" } th scope="col" { "Digest" } th scope="col" { "Commit" }
                        th scope="col" { "Reason" } th scope="col" { "Outcome" } th scope="col" { "By" }
                        th scope="col" { "Started" } th scope="col" { "Duration" } th scope="col" { "Action" }
                    } }
                    tbody {
                        @for summary in &history.items {
                            @let deployment = &summary.deployment;
                            tr {
                                td { (deployment.id) }
                                td { a href=(format!("/artifacts/{}", deployment.digest)) { (short_digest(&deployment.digest)) }
                                     @if let Some(tag) = &deployment.tag { " " code { (tag) } } }
                                td { @if let Some(commit) = &summary.commit { code { (short_commit(commit)) } } }
                                td { (deployment.reason.as_str())
                                     @if let Some(id) = deployment.promotion_id { " (" a href=(format!("/promotions/{id}")) { "promotion " (id) } ")" } }
                                td { span class=(format!("state state-{}", deployment.state.as_str())) { (deployment.state.as_str()) }
                                     @if let Some(message) = &deployment.message { br; span.muted { (message) } } }
                                td { (deployment.requested_by) }
                                td { (time(deployment.started_at)) }
                                td { @if let Some(finished) = deployment.finished_at { (duration(finished - deployment.started_at)) } }
                                td {
                                    @if may_rollback.is_none() && deployment.state == DeploymentState::Deployed && Some(deployment.digest.as_str()) != current {
                                        a href=(format!("/apps/{app}/environments/{env}/rollback?to={}", deployment.digest)) {
                                            "Roll back to this" span.visually-hidden { " (deployment " (deployment.id) ")" } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if let Some(before) = history.next {
                p.pager { a href=(format!("/apps/{app}/environments/{env}?before={before}")) rel="next" { "Older deployments" } }
            }
        },
    ))
}

/// A duration in milliseconds, in seconds below ten minutes, else in minutes.
pub(crate) fn duration(millis: i64) -> String {
    let seconds = millis.max(0) / 1000;
    if seconds < 600 {
        format!("{seconds} s")
    } else {
        format!("{} min", seconds / 60)
    }
}
