//! `gantry metrics [--app A] [--days N]`: the four DORA metrics — deployment
//! frequency, lead time for changes, change failure rate, time to restore — overall
//! and per application, over a window of days.

use std::process::ExitCode;

use clap::Args;
use client::{DoraResponse, DoraView};

use crate::remote::{ClientArgs, OutputFormat};
use crate::table::{Table, duration, json};

#[derive(Args)]
pub(crate) struct MetricsArgs {
    /// Only this application
    #[arg(long = "app")]
    application: Option<String>,
    /// The window, in days back from now [default: the server's, 30]
    #[arg(long)]
    days: Option<u32>,
    #[command(flatten)]
    client: ClientArgs,
}

pub(crate) fn run(args: MetricsArgs) -> anyhow::Result<ExitCode> {
    let dora = args
        .client
        .client()?
        .dora(args.application.as_deref(), args.days)?;
    match args.client.output {
        OutputFormat::Json => print!("{}", json(&dora)?),
        OutputFormat::Table => print!("{}", render(&dora)),
    }
    Ok(ExitCode::SUCCESS)
}

/// The window, then one row overall and one per application.
fn render(dora: &DoraResponse) -> String {
    let mut table = Table::new(&[
        "APPLICATION",
        "DEPLOYMENTS",
        "PER DAY",
        "LEAD TIME (MEDIAN)",
        "LEAD TIME (P90)",
        "CHANGE FAILURE RATE",
        "TIME TO RESTORE",
        "FAILURES",
        "ROLLBACKS",
    ]);
    let rows = std::iter::once(("(all)", &dora.overall)).chain(
        dora.applications
            .iter()
            .map(|(name, view)| (name.as_str(), view)),
    );
    for (name, view) in rows {
        table.row(row(name, view));
    }
    format!(
        "DORA metrics from {} to {}\n\n{}",
        dora.since,
        dora.until,
        table.render()
    )
}

fn row(name: &str, view: &DoraView) -> Vec<String> {
    let time = |seconds: Option<i64>| seconds.map_or_else(|| "-".to_owned(), duration);
    vec![
        name.to_owned(),
        view.deployments.to_string(),
        format!("{:.2}", view.deployments_per_day),
        time(view.lead_time_median_seconds),
        time(view.lead_time_p90_seconds),
        view.change_failure_rate
            .map_or_else(|| "-".to_owned(), |rate| format!("{:.0}%", rate * 100.0)),
        time(view.time_to_restore_median_seconds),
        view.failures.to_string(),
        view.rollbacks.to_string(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dora_metrics_show_overall_then_each_application_with_readable_durations() {
        let web_app = DoraView {
            deployments: 3,
            deployments_per_day: 0.1,
            lead_time_median_seconds: Some(3_900),
            lead_time_p90_seconds: Some(90_000),
            change_failure_rate: Some(1.0 / 3.0),
            time_to_restore_median_seconds: Some(600),
            failures: 0,
            rollbacks: 1,
        };
        let idle = DoraView {
            deployments: 0,
            deployments_per_day: 0.0,
            lead_time_median_seconds: None,
            lead_time_p90_seconds: None,
            change_failure_rate: None,
            time_to_restore_median_seconds: None,
            failures: 0,
            rollbacks: 0,
        };
        let dora = DoraResponse {
            since: "2026-02-08T00:00:00Z".to_owned(),
            until: "2026-03-10T00:00:00Z".to_owned(),
            overall: web_app.clone(),
            applications: [("web-app".to_owned(), web_app), ("idle".to_owned(), idle)]
                .into_iter()
                .collect(),
        };
        assert_eq!(
            render(&dora),
            "DORA metrics from 2026-02-08T00:00:00Z to 2026-03-10T00:00:00Z\n\
             \n\
             APPLICATION  DEPLOYMENTS  PER DAY  LEAD TIME (MEDIAN)  LEAD TIME (P90)  CHANGE FAILURE RATE  TIME TO RESTORE  FAILURES  ROLLBACKS\n\
             (all)        3            0.10     1h 5m               1d 1h            33%                  10m              0         1\n\
             idle         0            0.00     -                   -                -                    -                0         0\n\
             web-app      3            0.10     1h 5m               1d 1h            33%                  10m              0         1\n"
        );
    }
}
