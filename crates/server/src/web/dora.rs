//! DORA metrics (`/dora`): deployment frequency, lead time for changes, change failure
//! rate and time to restore over the last 30 or 90 days, overall or for one
//! application; each as a bar chart drawn on the server in SVG (a week a bar) with
//! the same figures in a table beside it, so the page reads without the picture; and
//! every application's figures over the whole window.

use axum::extract::{Query, State};
use domain::dora::DoraMetrics;
use engine::{DoraPeriod, DoraReport};
use maud::{Markup, html};
use serde::Deserialize;

use super::board::require_read;
use super::layout::page;
use super::{PageError, Viewer};
use crate::AppState;

const DAY: i64 = 86_400_000;
/// A bar of the charts.
const WEEK: i64 = 7 * DAY;

#[derive(Debug, Default, Deserialize)]
pub(crate) struct DoraParams {
    days: Option<i64>,
    app: Option<String>,
}

pub(crate) async fn dora(
    State(state): State<AppState>,
    viewer: Viewer,
    params: Result<Query<DoraParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Markup, PageError> {
    let Query(params) = params.map_err(|r| PageError::bad_request(r.body_text()))?;
    require_read(&state, &viewer)?;
    let days = params.days.unwrap_or(30);
    if days != 30 && days != 90 {
        return Err(PageError::bad_request("days must be 30 or 90"));
    }
    let app = params
        .app
        .as_deref()
        .map(str::trim)
        .filter(|app| !app.is_empty());
    let until = store::now_millis();
    let since = until - days * DAY;
    let report = state.engine.dora_report(app, since, until, WEEK).await?;
    let scope = app.map_or_else(|| "all applications".to_owned(), str::to_owned);
    let link = |days: i64| match app {
        Some(app) => format!(
            "/dora?days={days}&app={}",
            percent_encoding::utf8_percent_encode(app, percent_encoding::NON_ALPHANUMERIC)
        ),
        None => format!("/dora?days={days}"),
    };
    Ok(page(
        "DORA metrics",
        Some(&viewer),
        html! {
            h1 { "DORA metrics: " (scope) ", last " (days) " days" }
            p {
                @for choice in [30, 90] {
                    @if choice == days { strong aria-current="page" { (choice) " days" } } @else { a href=(link(choice)) { (choice) " days" } }
                    " "
                }
                @if app.is_some() { "· " a href=(format!("/dora?days={days}")) { "all applications" } }
            }
            form.filters method="get" action="/dora" role="search" aria-label="Choose an application" {
                input type="hidden" name="days" value=(days);
                div { label for="dora-app" { "Application" } input type="text" id="dora-app" name="app" value=[app]; }
                div { button type="submit" { "Show" } }
            }
            p.muted { "Production is the last stage of each application's pipeline; lead time runs from the build's commit time. A bar is a week, the last one ending now (the first may be shorter: its table row says from when to when)." }
            (overall(&report.overall))
            div.charts {
                (chart("Deployments", "deployments", &report.periods, |m| Some(m.deployments as f64), |v| format!("{v:.0}")))
                (chart("Lead time for changes (median)", "hours", &report.periods, |m| m.lead_time_median.map(|d| d.as_secs_f64() / 3600.0), |v| format!("{v:.1} h")))
                (chart("Change failure rate", "percent", &report.periods, |m| m.change_failure_rate.map(|r| r * 100.0), |v| format!("{v:.0} %")))
                (chart("Time to restore (median)", "hours", &report.periods, |m| m.time_to_restore_median.map(|d| d.as_secs_f64() / 3600.0), |v| format!("{v:.1} h")))
            }
            @if app.is_none() { (by_application(&report)) }
        },
    ))
}

fn hours(duration: Option<jiff::SignedDuration>) -> String {
    duration.map_or_else(
        || "—".to_owned(),
        |d| format!("{:.1} h", d.as_secs_f64() / 3600.0),
    )
}

fn percent(rate: Option<f64>) -> String {
    rate.map_or_else(|| "—".to_owned(), |r| format!("{:.0} %", r * 100.0))
}

fn overall(metrics: &DoraMetrics) -> Markup {
    html! {
        dl.facts {
            dt { "Deployments" } dd { (metrics.deployments) " (" (format!("{:.2}", metrics.deployments_per_day)) " a day)" }
            dt { "Lead time" } dd { "median " (hours(metrics.lead_time_median)) ", 90th percentile " (hours(metrics.lead_time_p90)) }
            dt { "Change failure rate" } dd { (percent(metrics.change_failure_rate)) " (" (metrics.failures) " failures)" }
            dt { "Time to restore" } dd { "median " (hours(metrics.time_to_restore_median)) }
            dt { "Rollbacks" } dd { (metrics.rollbacks) }
        }
    }
}

fn by_application(report: &DoraReport) -> Markup {
    html! {
        h2 { "By application" }
        @if report.by_application.is_empty() { p { "No deployment to production in the window." } } @else {
            table {
                caption { "Each application's metrics over the window" }
                thead { tr {
                    th scope="col" { "Application" } th scope="col" { "Deployments" } th scope="col" { "A day" }
                    th scope="col" { "Lead time (median)" } th scope="col" { "Change failure rate" } th scope="col" { "Time to restore (median)" }
                } }
                tbody { @for (name, metrics) in &report.by_application { tr {
                    th scope="row" { a href=(format!("/apps/{name}")) { (name) } }
                    td { (metrics.deployments) }
                    td { (format!("{:.2}", metrics.deployments_per_day)) }
                    td { (hours(metrics.lead_time_median)) }
                    td { (percent(metrics.change_failure_rate)) }
                    td { (hours(metrics.time_to_restore_median)) }
                } } }
            }
        }
    }
}

/// Chart geometry, in SVG user units.
const WIDTH: f64 = 360.0;
const HEIGHT: f64 = 150.0;
const LEFT: f64 = 44.0;
const BOTTOM: f64 = 22.0;
const TOP: f64 = 10.0;

/// A bar chart of one metric over the periods, with its table. A period without a
/// value (no deployment, no restored outage) has no bar and "—" in the table.
fn chart(
    title: &str,
    unit: &str,
    periods: &[DoraPeriod],
    value: impl Fn(&DoraMetrics) -> Option<f64>,
    format: impl Fn(f64) -> String,
) -> Markup {
    let values: Vec<Option<f64>> = periods.iter().map(|p| value(&p.metrics)).collect();
    let max = values.iter().flatten().copied().fold(0.0_f64, f64::max);
    let scale_top = if max > 0.0 { max } else { 1.0 };
    let slot = (WIDTH - LEFT) / values.len().max(1) as f64;
    let bar = (slot * 0.7).max(1.0);
    let plot = HEIGHT - BOTTOM - TOP;
    let id = title
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect::<String>()
        .to_lowercase();
    html! {
        figure.chart aria-labelledby=(format!("{id}-caption")) {
            figcaption id=(format!("{id}-caption")) { (title) }
            svg viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) width=(WIDTH) height=(HEIGHT) role="img"
                aria-label=(format!("{title}, {unit} a week; the same figures are in the table")) {
                line x1=(LEFT) y1=(TOP) x2=(LEFT) y2=(HEIGHT - BOTTOM) stroke="#4a5360" {}
                line x1=(LEFT) y1=(HEIGHT - BOTTOM) x2=(WIDTH) y2=(HEIGHT - BOTTOM) stroke="#4a5360" {}
                text x=(LEFT - 4.0) y=(TOP + 8.0) text-anchor="end" font-size="10" fill="#1b1f24" { (format(scale_top)) }
                text x=(LEFT - 4.0) y=(HEIGHT - BOTTOM) text-anchor="end" font-size="10" fill="#1b1f24" { "0" }
                @for (i, value) in values.iter().enumerate() {
                    @let x = LEFT + slot * i as f64 + (slot - bar) / 2.0;
                    @if let Some(value) = value {
                        @let height = (value / scale_top * plot).max(if *value > 0.0 { 1.0 } else { 0.0 });
                        rect x=(format!("{x:.1}")) y=(format!("{:.1}", HEIGHT - BOTTOM - height)) width=(format!("{bar:.1}")) height=(format!("{height:.1}")) fill="#0b5cad" {}
                    }
                    text x=(format!("{:.1}", x + bar / 2.0)) y=(HEIGHT - 6.0) text-anchor="middle" font-size="10" fill="#1b1f24" { (i + 1) }
                }
            }
            table {
                caption { (title) ", a week a row" }
                thead { tr { th scope="col" { "Week" } th scope="col" { "From" } th scope="col" { "To" } th scope="col" { "Value" } } }
                tbody { @for (i, (period, value)) in periods.iter().zip(&values).enumerate() { tr {
                    td { (i + 1) }
                    td { (day(period.start)) }
                    td { (day(period.end - 1)) }
                    td { (value.map_or_else(|| "—".to_owned(), &format)) }
                } } }
            }
        }
    }
}

/// The UTC day of `millis`.
fn day(millis: i64) -> String {
    jiff::Timestamp::from_millisecond(millis)
        .map(|t| t.strftime("%Y-%m-%d").to_string())
        .unwrap_or_default()
}
