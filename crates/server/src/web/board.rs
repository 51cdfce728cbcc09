//! The board (`/`): applications × environments, a page at a time, filtered on the
//! server. Each cell names what runs there (tag or commit, short digest, age), what is
//! under way or waiting and on what, holds and drift, and marks what the person
//! looking may approve.

use axum::extract::{Query, State};
use domain::Action;
use engine::{BoardQuery, BoardRow, EnvironmentStatus};
use maud::{Markup, html};
use serde::Deserialize;
use store::{ApplicationFilter, EnvironmentCondition};

use super::layout::{age, digest_link, page, short_commit, shortened};
use super::{PageError, Viewer};
use crate::AppState;

/// Applications per page unless the link asks for fewer.
const DEFAULT_PAGE: i64 = 50;
/// The most applications one page shows, whatever the link asks: a page of four
/// environments each stays under 100 KB (see BENCHMARKS.md, "Web UI").
const MAX_PAGE: i64 = 50;

#[derive(Debug, Default, Deserialize)]
pub(crate) struct BoardParams {
    name: Option<String>,
    namespace: Option<String>,
    state: Option<String>,
    after: Option<String>,
    limit: Option<i64>,
}

pub(crate) async fn board(
    State(state): State<AppState>,
    viewer: Viewer,
    params: Result<Query<BoardParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Markup, PageError> {
    let Query(params) = params.map_err(|r| PageError::bad_request(r.body_text()))?;
    require_read(&state, &viewer)?;
    let limit = params.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(PageError::bad_request(format!(
            "limit must be 1 to {MAX_PAGE}"
        )));
    }
    let filled = |text: &Option<String>| {
        text.as_deref()
            .map(str::trim)
            .filter(|text| !text.is_empty())
            .map(str::to_owned)
    };
    let condition = match filled(&params.state) {
        None => None,
        Some(text) => Some(EnvironmentCondition::parse(&text).ok_or_else(|| {
            PageError::bad_request(format!(
                "state must be one of {}",
                EnvironmentCondition::ALL
                    .map(EnvironmentCondition::as_str)
                    .join(", ")
            ))
        })?),
    };
    let query = BoardQuery {
        filter: ApplicationFilter {
            name_contains: filled(&params.name),
            namespace: filled(&params.namespace),
            state: condition,
        },
        after: filled(&params.after),
        limit,
    };
    let page_of = state.engine.board(&viewer.actor, &query).await?;
    let now = store::now_millis();
    // The columns: every environment the page's pipelines name, in pipeline order.
    let mut columns: Vec<String> = Vec::new();
    for row in &page_of.items {
        for environment in &row.status.environments {
            if !columns.contains(&environment.name) {
                columns.push(environment.name.clone());
            }
        }
    }
    let next_link = page_of.next.as_ref().map(|after| {
        let mut pairs = url::form_urlencoded::Serializer::new(String::new());
        let filter = &query.filter;
        if let Some(name) = &filter.name_contains {
            pairs.append_pair("name", name);
        }
        if let Some(namespace) = &filter.namespace {
            pairs.append_pair("namespace", namespace);
        }
        if let Some(state) = filter.state {
            pairs.append_pair("state", state.as_str());
        }
        pairs.append_pair("after", after);
        if limit != DEFAULT_PAGE {
            pairs.append_pair("limit", &limit.to_string());
        }
        format!("/?{}", pairs.finish())
    });
    Ok(page(
        "Board",
        Some(&viewer),
        html! {
            h1 { "Board" }
            form.filters method="get" action="/" role="search" aria-label="Filter applications" {
                div {
                    label for="filter-name" { "Application name contains" }
                    input type="search" id="filter-name" name="name" value=[query.filter.name_contains.as_deref()];
                }
                div {
                    label for="filter-namespace" { "Namespace" }
                    input type="text" id="filter-namespace" name="namespace" value=[query.filter.namespace.as_deref()];
                }
                div {
                    label for="filter-state" { "An environment is" }
                    select id="filter-state" name="state" {
                        option value="" selected[query.filter.state.is_none()] { "in any state" }
                        @for state in EnvironmentCondition::ALL {
                            option value=(state.as_str()) selected[query.filter.state == Some(state)] { (state.as_str()) }
                        }
                    }
                }
                div { button type="submit" { "Filter" } }
            }
            @if page_of.items.is_empty() {
                p { "No applications match. Applications are declared as code and applied with "
                    code { "gantry apply" } "." }
            } @else {
                table {
                    caption { "Applications and what each environment runs" }
                    thead {
                        tr {
                            th scope="col" { "Application" }
                            @for column in &columns { th scope="col" { (column) } }
                        }
                    }
                    tbody {
                        @for row in &page_of.items {
                            (board_row(row, &columns, now))
                        }
                    }
                }
            }
            @if let Some(link) = next_link {
                p.pager { a href=(link) rel="next" { "Next page" } }
            }
        },
    ))
}

fn board_row(row: &BoardRow, columns: &[String], now: i64) -> Markup {
    let status = &row.status;
    html! {
        tr {
            th scope="row" {
                a href=(format!("/apps/{}", status.name)) { (status.name) }
                br;
                span.muted { (status.repository) }
                @if !row.awaiting_viewer.is_empty() {
                    br;
                    span.badge.badge-you { "waiting on you" }
                }
            }
            @for column in columns {
                @match status.environments.iter().find(|e| &e.name == column) {
                    Some(environment) => td { (cell(environment, &status.name, row, now)) },
                    None => td.muted { "not in its pipeline" },
                }
            }
        }
    }
}

/// One environment's cell.
fn cell(environment: &EnvironmentStatus, app: &str, row: &BoardRow, now: i64) -> Markup {
    let waiting = environment
        .pending
        .iter()
        .find(|p| p.state == domain::promotion::PromotionState::Waiting);
    let drift = environment.drift_since.is_some();
    html! {
        @match (&environment.deploying, &environment.current) {
            (Some(deploying), _) => {
                span.state.state-deploying { "deploying" } " "
                (digest_link(&deploying.deployment.digest))
                br;
            }
            _ => {}
        }
        @match &environment.current {
            Some(current) => {
                a.state.state-deployed href=(format!("/apps/{app}/environments/{}", environment.name)) { "deployed" } " "
                @if let Some(tag) = &current.deployment.tag { code { (tag) } " " }
                @else if let Some(commit) = &current.commit { code { (short_commit(commit)) } " " }
                (digest_link(&current.deployment.digest))
                br;
                span.muted { (age(current.deployment.finished_at.unwrap_or(current.deployment.started_at), now)) }
            }
            None => {
                @if environment.deploying.is_none() { span.muted { "nothing deployed yet" } }
            }
        }
        @if let Some(failed) = &environment.failed {
            br;
            span.state.state-failed { "failed" } " "
            (digest_link(&failed.deployment.digest)) " "
            span.muted { (age(failed.deployment.finished_at.unwrap_or(failed.deployment.started_at), now)) }
        }
        @if let Some(previous) = &environment.previous {
            br;
            span.muted { "before: "
                @if let Some(tag) = &previous.deployment.tag { code { (tag) } " " }
                @else if let Some(commit) = &previous.commit { code { (short_commit(commit)) } " " }
                code { (shortened(&previous.deployment.digest)) } }
        }
        @if let Some(promotion) = waiting {
            br;
            span.state.state-waiting { "waiting" } " on "
            (waiting_on(promotion))
            " "
            a href=(format!("/promotions/{}", promotion.id)) { "promotion " (promotion.id) }
            @if row.awaiting_viewer.contains(&promotion.id) {
                " " span.badge.badge-you { "your approval" }
            }
        }
        @if let Some(quarantine) = &environment.quarantined {
            br;
            span.badge.badge-quarantined title=(format!("quarantined by {}: {}", quarantine.by, quarantine.reason)) { "quarantined" }
        }
        @if let Some(hold) = &environment.hold {
            br;
            span.badge.badge-hold title=(hold.reason) { "held" }
        }
        @if drift {
            br;
            span.badge.badge-drift { "drift" }
        }
    }
}

/// What a waiting promotion waits on, in words: its unmet conditions' kinds.
pub(crate) fn waiting_on(promotion: &store::Promotion) -> String {
    let unmet: Vec<&str> = promotion
        .conditions
        .iter()
        .filter(|condition| !condition.met)
        .map(|condition| match condition.kind.as_str() {
            "approval" => "approval",
            "check" => "checks",
            "soak" => "soak time",
            "freeze" => "a freeze window",
            "order" => "the previous stage",
            other => other,
        })
        .collect();
    let mut unique: Vec<&str> = Vec::new();
    for kind in unmet {
        if !unique.contains(&kind) {
            unique.push(kind);
        }
    }
    if unique.is_empty() {
        "its gate".to_owned()
    } else {
        unique.join(", ")
    }
}

/// Reading the board and applications needs `resources:read`, as in the API.
pub(crate) fn require_read(state: &AppState, viewer: &Viewer) -> Result<(), PageError> {
    require(state, viewer, Action::ReadResources)
}

pub(crate) fn require(state: &AppState, viewer: &Viewer, action: Action) -> Result<(), PageError> {
    let principal = domain::Principal::User {
        name: viewer.actor.name.clone(),
        admin: viewer.actor.admin,
        scope: None,
    };
    auth::authorize(&principal, action, None, &state.registry.config().access)
        .map_err(|denied| PageError::new(http::StatusCode::FORBIDDEN, denied.to_string()))
}
