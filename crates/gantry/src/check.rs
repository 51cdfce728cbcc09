//! `gantry check report`: what CI or a scanner runs to record evidence about a digest.
//! A Trivy JSON or SARIF file is sent as it is; the server counts its findings by
//! severity (one meaning of "two criticals" for every pipeline) and the counts are
//! printed. Promotions of the digest waiting on the check are evaluated again.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use client::{CheckRequest, CheckStatus, CheckView};

use crate::remote::{ClientArgs, OutputFormat};
use crate::table::json;

#[derive(Args)]
pub(crate) struct CheckArgs {
    #[command(subcommand)]
    command: CheckCommand,
}

#[derive(Subcommand)]
enum CheckCommand {
    /// Report a check on a digest, optionally with a Trivy JSON or SARIF report.
    ///
    /// Exit codes: 0 recorded (whether the check passed or failed), 2 invalid input
    /// (e.g. a report that is neither Trivy JSON nor SARIF 2.1.0, or a digest not in the
    /// application's repository), 4 unauthorized or forbidden, 1 anything else.
    Report(ReportArgs),
}

#[derive(Args)]
pub(crate) struct ReportArgs {
    /// The application
    #[arg(long = "app")]
    application: String,
    /// The digest checked (`sha256:…`)
    #[arg(long)]
    digest: String,
    /// The check's name, as gates list it (e.g. unit-tests, trivy)
    #[arg(long)]
    name: String,
    /// Whether it passed
    #[arg(long, value_enum)]
    status: StatusArg,
    /// Where the details are (e.g. the CI job's page); `--url` is the server's
    #[arg(long, value_name = "URL")]
    details_url: Option<String>,
    /// A report to count findings from: `trivy image -f json` output or a SARIF 2.1.0 log
    #[arg(long, value_name = "trivy.json|report.sarif")]
    file: Option<PathBuf>,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum StatusArg {
    Passed,
    Failed,
}

impl From<StatusArg> for CheckStatus {
    fn from(status: StatusArg) -> CheckStatus {
        match status {
            StatusArg::Passed => CheckStatus::Passed,
            StatusArg::Failed => CheckStatus::Failed,
        }
    }
}

pub(crate) fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let CheckCommand::Report(args) = args.command;
    let report = match &args.file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading the report {}", path.display()))?,
        ),
        None => None,
    };
    let request = CheckRequest {
        application: args.application,
        digest: args.digest,
        name: args.name,
        status: CheckStatus::from(args.status).as_str().to_owned(),
        url: args.details_url,
        report,
    };
    let check = args.client.client()?.report_check(&request)?;
    match args.client.output {
        OutputFormat::Json => print!("{}", json(&check)?),
        OutputFormat::Table => print!("{}", render(&check)),
    }
    Ok(ExitCode::SUCCESS)
}

/// The check's verdict, then its findings by severity, most severe first.
pub(crate) fn render(check: &CheckView) -> String {
    let mut out = format!(
        "check {} on {}: {} (report {}, by {})\n",
        check.name, check.digest, check.status, check.id, check.reported_by
    );
    if let Some(findings) = &check.findings {
        out.push_str(&format!(
            "  {} findings: {}\n",
            check.format.as_deref().unwrap_or("report"),
            findings_line(findings)
        ));
    }
    out
}

/// `critical 0, high 1, medium 0, low 2, unknown 0`: known severities most severe
/// first, then any others the server added, by name.
pub(crate) fn findings_line(findings: &std::collections::BTreeMap<String, u64>) -> String {
    const ORDER: [&str; 5] = ["critical", "high", "medium", "low", "unknown"];
    let known = ORDER
        .iter()
        .filter_map(|severity| findings.get(*severity).map(|count| (*severity, count)));
    let others = findings
        .iter()
        .filter(|(severity, _)| !ORDER.contains(&severity.as_str()))
        .map(|(severity, count)| (severity.as_str(), count));
    known
        .chain(others)
        .map(|(severity, count)| format!("{severity} {count}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_check_shows_its_findings_most_severe_first() {
        let check = CheckView {
            id: 5,
            digest: "sha256:aa".to_owned(),
            name: "trivy".to_owned(),
            status: "passed".to_owned(),
            url: None,
            format: Some("trivy".to_owned()),
            findings: Some(
                [("low", 2), ("high", 1), ("critical", 0), ("exotic", 4)]
                    .into_iter()
                    .map(|(severity, count)| (severity.to_owned(), count))
                    .collect(),
            ),
            reported_by: "ci-bot".to_owned(),
            reported_at: "2026-01-01T00:00:00Z".to_owned(),
        };
        assert_eq!(
            render(&check),
            "check trivy on sha256:aa: passed (report 5, by ci-bot)\n  \
             trivy findings: critical 0, high 1, low 2, exotic 4\n"
        );
    }
}
