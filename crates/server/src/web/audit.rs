//! The audit log (`/audit`): newest first, a page at a time, filtered on the server by
//! actor, action, application and day; the chain's verification on request (it reads
//! the whole log, so it is a button, not a part of every page).

use axum::extract::{Query, State};
use domain::Action;
use maud::{Markup, html};
use serde::Deserialize;
use store::{AuditFilter, ChainVerdict};

use super::board::require;
use super::layout::{page, time};
use super::{PageError, Viewer};
use crate::AppState;

const PAGE: i64 = 100;

#[derive(Debug, Default, Deserialize)]
pub(crate) struct AuditParams {
    actor: Option<String>,
    action: Option<String>,
    application: Option<String>,
    /// `YYYY-MM-DD`, inclusive (UTC).
    since: Option<String>,
    /// `YYYY-MM-DD`, inclusive (UTC).
    until: Option<String>,
    before: Option<i64>,
    verify: Option<String>,
}

/// Midnight UTC starting `day` (`YYYY-MM-DD`), in milliseconds.
fn day_start(field: &str, day: &str) -> Result<i64, PageError> {
    let date: jiff::civil::Date = day.parse().map_err(|_| {
        PageError::bad_request(format!(
            "{field} must be a date like 2026-12-04, not `{day}`"
        ))
    })?;
    date.to_zoned(jiff::tz::TimeZone::UTC)
        .map(|zoned| zoned.timestamp().as_millisecond())
        .map_err(|e| PageError::bad_request(format!("{field}: {e}")))
}

pub(crate) async fn audit(
    State(state): State<AppState>,
    viewer: Viewer,
    params: Result<Query<AuditParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Markup, PageError> {
    let Query(params) = params.map_err(|r| PageError::bad_request(r.body_text()))?;
    require(&state, &viewer, Action::ReadAudit)?;
    let filled = |text: &Option<String>| {
        text.as_deref()
            .map(str::trim)
            .filter(|text| !text.is_empty())
            .map(str::to_owned)
    };
    let (actor, action, application) = (
        filled(&params.actor),
        filled(&params.action),
        filled(&params.application),
    );
    let (since_text, until_text) = (filled(&params.since), filled(&params.until));
    let since = since_text
        .as_deref()
        .map(|day| day_start("since", day))
        .transpose()?;
    let until = until_text
        .as_deref()
        .map(|day| day_start("until", day).map(|start| start + 86_400_000))
        .transpose()?;
    let filter = AuditFilter {
        actor: actor.as_deref(),
        action: action.as_deref(),
        subject: application.as_deref(),
        since,
        until,
    };
    let mut entries = state
        .store
        .audit()
        .search(&filter, params.before, PAGE + 1)
        .await?;
    let more = entries.len() > usize::try_from(PAGE).unwrap_or(0);
    entries.truncate(usize::try_from(PAGE).unwrap_or(0));
    let verdict = if params.verify.is_some() {
        Some(state.store.audit().verify().await?)
    } else {
        None
    };
    let next_link = match (more, entries.last()) {
        (true, Some(last)) => {
            let mut pairs = url::form_urlencoded::Serializer::new(String::new());
            for (name, value) in [
                ("actor", &actor),
                ("action", &action),
                ("application", &application),
                ("since", &since_text),
                ("until", &until_text),
            ] {
                if let Some(value) = value {
                    pairs.append_pair(name, value);
                }
            }
            pairs.append_pair("before", &last.sequence.to_string());
            Some(format!("/audit?{}", pairs.finish()))
        }
        _ => None,
    };
    Ok(page(
        "Audit log",
        Some(&viewer),
        html! {
            h1 { "Audit log" }
            p { a href="/audit/export" download="gantry-audit.ndjson" { "Download the whole log" } " (JSON lines, oldest first, each entry with its hash and the one before it, as "
                code { "gantry audit export" } " writes it)." }
            form method="get" action="/audit" {
                input type="hidden" name="verify" value="1";
                button.secondary type="submit" { "Verify the hash chain" }
            }
            @match &verdict {
                Some(ChainVerdict::Intact { entries, head }) => p.notice role="status" {
                    "The chain is intact: " (entries) " entries, head " code { (head) } "." },
                Some(ChainVerdict::Broken { sequence, reason }) => p.error role="alert" {
                    "The chain breaks at entry " (sequence) ": " (reason) },
                None => {}
            }
            form.filters method="get" action="/audit" role="search" aria-label="Filter the audit log" {
                div { label for="f-actor" { "Actor" } input type="text" id="f-actor" name="actor" value=[actor.as_deref()]; }
                div { label for="f-action" { "Action" } input type="text" id="f-action" name="action" value=[action.as_deref()]; }
                div { label for="f-application" { "Application" } input type="text" id="f-application" name="application" value=[application.as_deref()]; }
                div { label for="f-since" { "From (day)" } input type="text" id="f-since" name="since" placeholder="2026-12-01" value=[since_text.as_deref()]; }
                div { label for="f-until" { "To (day)" } input type="text" id="f-until" name="until" placeholder="2026-12-04" value=[until_text.as_deref()]; }
                div { button type="submit" { "Filter" } }
            }
            @if entries.is_empty() { p { "No entries match." } } @else {
                table {
                    caption { "Entries, newest first" }
                    thead { tr { th scope="col" { "#" } th scope="col" { "When" } th scope="col" { "Actor" }
                        th scope="col" { "Action" } th scope="col" { "Subject" } th scope="col" { "Details" } } }
                    tbody {
                        @for entry in &entries {
                            tr {
                                td { (entry.sequence) }
                                td { (time(entry.at)) }
                                td { (entry.actor) }
                                td { (entry.action) }
                                td { (entry.subject) }
                                td { code { (entry.payload) } }
                            }
                        }
                    }
                }
            }
            @if let Some(link) = next_link { p.pager { a href=(link) rel="next" { "Older entries" } } }
        },
    ))
}

/// The whole log as JSON lines, as the API's export gives it, to save and verify.
pub(crate) async fn export(
    State(state): State<AppState>,
    viewer: Viewer,
) -> Result<axum::response::Response, PageError> {
    require(&state, &viewer, Action::ReadAudit)?;
    let mut response = crate::api::audit_export(state.store.clone());
    response.headers_mut().insert(
        http::header::CONTENT_DISPOSITION,
        http::HeaderValue::from_static("attachment; filename=\"gantry-audit.ndjson\""),
    );
    Ok(response)
}
