//! `gantry apps`, `gantry status [APP]`, `gantry history APP` and `gantry artifact APP
//! DIGEST`: where each application's environments stand, what ran where, and
//! everything known about one artifact.

use std::process::ExitCode;

use clap::Args;
use client::{
    AppList, AppStatus, ArtifactView, Client, CustodyView, DeploymentList, DeploymentView,
};
use jiff::Timestamp;

use crate::check::findings_line;
use crate::remote::{ClientArgs, OutputFormat};
use crate::table::{Table, age, json, or_dash, short_commit, short_digest, shorten};

/// Applications per request while listing every page.
const PAGE_SIZE: u32 = 200;

#[derive(Args)]
pub(crate) struct AppsArgs {
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args)]
pub(crate) struct StatusArgs {
    /// One application, environment by environment [default: every application]
    application: Option<String>,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args)]
pub(crate) struct HistoryArgs {
    /// The application
    application: String,
    /// Only this environment's deployments
    #[arg(long = "env")]
    environment: Option<String>,
    /// At most this many, newest first [default: the server's, 50]
    #[arg(long)]
    limit: Option<u32>,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args)]
pub(crate) struct ArtifactArgs {
    /// The application (with --custody: optional, every application that knows the
    /// digest by default)
    application: String,
    /// The artifact's digest (`sha256:…`)
    digest: Option<String>,
    /// The chain of custody: built, checked, approved, deployed, attested (each
    /// signed attestation verified now)
    #[arg(long)]
    custody: bool,
    #[command(flatten)]
    client: ClientArgs,
}

pub(crate) fn apps(args: AppsArgs) -> anyhow::Result<ExitCode> {
    let list = list_all(&args.client.client()?)?;
    match args.client.output {
        OutputFormat::Json => print!("{}", json(&list)?),
        OutputFormat::Table => print!("{}", render_apps(&list, Timestamp::now())),
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let Some(application) = args.application else {
        return apps(AppsArgs {
            client: args.client,
        });
    };
    let status = args.client.client()?.app_status(&application)?;
    match args.client.output {
        OutputFormat::Json => print!("{}", json(&status)?),
        OutputFormat::Table => print!("{}", render_status(&status, Timestamp::now())),
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn history(args: HistoryArgs) -> anyhow::Result<ExitCode> {
    let list = args.client.client()?.history(
        &args.application,
        args.environment.as_deref(),
        None,
        args.limit,
    )?;
    match args.client.output {
        OutputFormat::Json => print!("{}", json(&list)?),
        OutputFormat::Table => print!("{}", render_history(&list)),
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn artifact(args: ArtifactArgs) -> anyhow::Result<ExitCode> {
    if args.custody {
        // `artifact DIGEST --custody`, or `artifact APP DIGEST --custody` for one.
        let (only, digest) = match &args.digest {
            Some(digest) => (Some(args.application.as_str()), digest.as_str()),
            None => (None, args.application.as_str()),
        };
        let mut custody = args.client.client()?.custody(digest)?;
        if let Some(only) = only {
            custody.applications.retain(|view| view.application == only);
            if custody.applications.is_empty() {
                return Err(crate::remote::InvalidInput(format!(
                    "{only} never built, promoted or deployed {digest}"
                ))
                .into());
            }
        }
        match args.client.output {
            OutputFormat::Json => print!("{}", json(&custody)?),
            OutputFormat::Table => print!("{}", render_custody(&custody)),
        }
        return Ok(ExitCode::SUCCESS);
    }
    let Some(digest) = &args.digest else {
        return Err(crate::remote::InvalidInput(
            "name the application and the digest: gantry artifact APP DIGEST (or DIGEST --custody)"
                .to_owned(),
        )
        .into());
    };
    let artifact = args.client.client()?.artifact(&args.application, digest)?;
    match args.client.output {
        OutputFormat::Json => print!("{}", json(&artifact)?),
        OutputFormat::Table => print!("{}", render_artifact(&artifact)),
    }
    Ok(ExitCode::SUCCESS)
}

/// Every page, as one list whose `next` is `None`.
fn list_all(client: &Client) -> Result<AppList, client::ClientError> {
    let mut all = client.list_apps(None, Some(PAGE_SIZE))?;
    while let Some(after) = all.next.take() {
        let page = client.list_apps(Some(&after), Some(PAGE_SIZE))?;
        // A server that does not move on would loop forever; stop at the first repeat.
        if page.applications.is_empty() || page.next.as_deref() == Some(after.as_str()) {
            all.applications.extend(page.applications);
            break;
        }
        all.applications.extend(page.applications);
        all.next = page.next;
    }
    Ok(all)
}

/// One line per application: its environments in pipeline order, each with what
/// runs there (short digest and age), held or not, and how many promotions wait.
fn render_apps(list: &AppList, now: Timestamp) -> String {
    if list.applications.is_empty() {
        return "no applications: declare one in a resources file and `gantry apply -f` it\n"
            .to_owned();
    }
    let mut table = Table::new(&["APPLICATION", "TYPE", "PIPELINE", "ENVIRONMENTS"]);
    for app in &list.applications {
        let environments = app
            .environments
            .iter()
            .map(|environment| {
                let mut cell = match &environment.current {
                    Some(current) => format!(
                        "{}={} ({})",
                        environment.name,
                        short_digest(&current.digest),
                        age(deployed_at(current), now)
                    ),
                    None => format!("{}=-", environment.name),
                };
                if environment.quarantined.is_some() {
                    cell.push_str(" QUARANTINED");
                }
                if environment.hold.is_some() {
                    cell.push_str(" held");
                }
                if !environment.pending.is_empty() {
                    cell.push_str(&format!(" +{} pending", environment.pending.len()));
                }
                cell
            })
            .collect::<Vec<_>>()
            .join("  ");
        table.row(vec![
            app.name.clone(),
            app.app_type.clone(),
            app.pipeline.clone(),
            environments,
        ]);
    }
    table.render()
}

/// The application, then each environment in pipeline order: what runs there, since
/// when, how it got there, its hold and its pending promotions.
fn render_status(app: &AppStatus, now: Timestamp) -> String {
    let mut out = format!(
        "{} ({}, pipeline {}, repository {})\n\n",
        app.name, app.app_type, app.pipeline, app.repository
    );
    let mut table = Table::new(&[
        "ENVIRONMENT",
        "DIGEST",
        "COMMIT",
        "AGE",
        "STATE",
        "DRIFT",
        "HOLD",
        "PENDING",
    ]);
    for environment in &app.environments {
        let current = environment.current.as_ref();
        let mut state = current.map_or_else(
            || "-".to_owned(),
            |deployment| match deployment.reason.as_str() {
                "promotion" => deployment.state.clone(),
                reason => format!("{} ({reason})", deployment.state),
            },
        );
        if let Some(deploying) = &environment.deploying {
            state = format!(
                "{} {} (#{}, {})",
                if deploying.reason == "rollback" {
                    "rolling back to"
                } else {
                    "deploying"
                },
                short_digest(&deploying.digest),
                deploying.id,
                age(&deploying.started_at, now)
            );
        }
        if let Some(quarantine) = &environment.quarantined {
            state = format!(
                "{state}, QUARANTINED by {}: {}",
                quarantine.by,
                shorten(&quarantine.reason, 40)
            );
        }
        let drift = match (&environment.drift_since, &environment.observed) {
            (Some(since), Some(observed)) => format!(
                "runs {} ({})",
                short_digest(&observed.digest),
                age(since, now)
            ),
            (Some(since), None) => format!("since {}", age(since, now)),
            (None, _) => "-".to_owned(),
        };
        let hold = environment.hold.as_ref().map_or_else(
            || "-".to_owned(),
            |hold| shorten(&format!("held by {}: {}", hold.by, hold.reason), 48),
        );
        let pending = if environment.pending.is_empty() {
            "-".to_owned()
        } else {
            environment
                .pending
                .iter()
                .map(|promotion| format!("#{} {}", promotion.id, promotion.state))
                .collect::<Vec<_>>()
                .join(", ")
        };
        table.row(vec![
            environment.name.clone(),
            or_dash(current.map(|d| short_digest(&d.digest)).as_deref()),
            or_dash(
                current
                    .and_then(|d| d.commit.as_deref())
                    .map(short_commit)
                    .as_deref(),
            ),
            or_dash(current.map(|d| age(deployed_at(d), now)).as_deref()),
            state,
            drift,
            hold,
            pending,
        ]);
    }
    out.push_str(&table.render());
    out
}

/// When a deployment took effect: when it finished, else when it started.
fn deployed_at(deployment: &DeploymentView) -> &str {
    deployment
        .finished_at
        .as_deref()
        .unwrap_or(&deployment.started_at)
}

fn deployments_table(deployments: &[DeploymentView]) -> String {
    let mut table = Table::new(&[
        "ID",
        "ENVIRONMENT",
        "DIGEST",
        "COMMIT",
        "REASON",
        "STATE",
        "BY",
        "STARTED",
        "PROMOTION",
        "WHY",
    ]);
    for deployment in deployments {
        // A failure says why, on one short line (`gantry deployment show ID` has it all).
        let why = match (deployment.state.as_str(), &deployment.message) {
            ("failed", Some(message)) => shorten(message.lines().next().unwrap_or_default(), 60),
            _ => "-".to_owned(),
        };
        table.row(vec![
            deployment.id.to_string(),
            deployment.environment.clone(),
            short_digest(&deployment.digest),
            or_dash(deployment.commit.as_deref().map(short_commit).as_deref()),
            deployment.reason.clone(),
            deployment.state.clone(),
            deployment.requested_by.clone(),
            deployment.started_at.clone(),
            or_dash(
                deployment
                    .promotion_id
                    .map(|id| format!("#{id}"))
                    .as_deref(),
            ),
            why,
        ]);
    }
    table.render()
}

fn render_history(list: &DeploymentList) -> String {
    if list.deployments.is_empty() {
        return "no deployments\n".to_owned();
    }
    let mut out = deployments_table(&list.deployments);
    if let Some(next) = list.next {
        out.push_str(&format!("(more: older than {next}; raise --limit)\n"));
    }
    out
}

/// Per application: built, checked, approved, deployed, attested.
fn render_custody(custody: &CustodyView) -> String {
    let mut out = String::new();
    for view in &custody.applications {
        out.push_str(&format!(
            "chain of custody of {} in {} ({})\n",
            custody.digest, view.application, view.repository
        ));
        match &view.built {
            Some(build) => out.push_str(&format!(
                "  built      commit {} run {} by {} at {}\n",
                or_dash(build.commit.as_deref()),
                or_dash(build.run_id.as_deref()),
                build.builder,
                build.notified_at
            )),
            None => out.push_str("  built      (no build was reported)\n"),
        }
        for check in &view.checks {
            let findings = check
                .findings
                .as_ref()
                .map(|findings| format!(" ({})", findings_line(findings)))
                .unwrap_or_default();
            out.push_str(&format!(
                "  checked    {} {}{findings} by {} at {}\n",
                check.name, check.status, check.reported_by, check.reported_at
            ));
        }
        for decision in &view.decisions {
            let roles = if decision.roles.is_empty() {
                "no role".to_owned()
            } else {
                decision.roles.join(", ")
            };
            out.push_str(&format!(
                "  {:<10} promotion {} into {} by {} ({roles}) at {}\n",
                if decision.decision == "approve" {
                    "approved"
                } else {
                    "rejected"
                },
                decision.promotion_id,
                decision.environment,
                decision.approver,
                decision.at
            ));
        }
        for deployment in view.deployments.iter().rev() {
            out.push_str(&format!(
                "  deployed   to {} by {} ({} target, {}) at {}\n",
                deployment.environment,
                deployment.reason,
                deployment.target,
                deployment.state,
                deployment.started_at
            ));
        }
        for attestation in view.attestations.iter().rev() {
            let kind = attestation
                .predicate_type
                .rsplit('/')
                .nth(1)
                .unwrap_or(&attestation.predicate_type);
            out.push_str(&format!(
                "  attested   {} of deployment {} to {}: {} {}{}\n",
                kind,
                attestation.deployment_id,
                attestation.environment,
                short_digest(&attestation.manifest_digest),
                if attestation.verified {
                    "verified"
                } else {
                    "DOES NOT VERIFY"
                },
                if attestation.stored {
                    String::new()
                } else {
                    " (not stored beside the image yet)".to_owned()
                },
            ));
            if !attestation.verified {
                out.push_str(&format!("             {}\n", attestation.verification));
            }
        }
        if view.attestations.is_empty() {
            out.push_str("  attested   (no attestation)\n");
        }
        out.push('\n');
    }
    out
}

/// Provenance, then every check, then every deployment.
fn render_artifact(artifact: &ArtifactView) -> String {
    let mut out = format!("artifact {} of {}\n", artifact.digest, artifact.application);
    match &artifact.build {
        Some(build) => {
            let facts = [
                ("commit", build.commit.clone()),
                ("branch", build.branch.clone()),
                ("run", build.run_id.clone()),
                ("run url", build.run_url.clone()),
                ("source", build.source.clone()),
                ("triggered by", build.triggered_by.clone()),
                ("author", build.author.clone()),
                ("committed at", build.committed_at.clone()),
                (
                    "notified",
                    Some(format!("by {} at {}", build.builder, build.notified_at)),
                ),
            ];
            for (name, value) in facts {
                if let Some(value) = value {
                    out.push_str(&format!("  {name:<13} {value}\n"));
                }
            }
        }
        None => out.push_str("  no build notified for it\n"),
    }
    out.push('\n');
    if artifact.checks.is_empty() {
        out.push_str("no checks reported\n");
    } else {
        let mut table = Table::new(&["CHECK", "STATUS", "FINDINGS", "BY", "AT"]);
        for check in &artifact.checks {
            table.row(vec![
                check.name.clone(),
                check.status.clone(),
                or_dash(check.findings.as_ref().map(findings_line).as_deref()),
                check.reported_by.clone(),
                check.reported_at.clone(),
            ]);
        }
        out.push_str(&table.render());
    }
    out.push('\n');
    if artifact.deployments.is_empty() {
        out.push_str("never deployed\n");
    } else {
        out.push_str(&deployments_table(&artifact.deployments));
    }
    out
}

#[cfg(test)]
mod tests {
    use client::{EnvironmentView, HoldView, PromotionState, PromotionView};

    use super::*;

    fn now() -> Timestamp {
        "2026-03-10T12:00:00Z".parse().expect("a time")
    }

    fn deployment(environment: &str, reason: &str) -> DeploymentView {
        DeploymentView {
            id: 3,
            application: "web-app".to_owned(),
            environment: environment.to_owned(),
            digest: "sha256:0123456789abcdef".to_owned(),
            config: None,
            config_revision: None,
            promotion_id: Some(2),
            reason: reason.to_owned(),
            state: "deployed".to_owned(),
            target: "record".to_owned(),
            message: None,
            requested_by: "dev-dana".to_owned(),
            started_at: "2026-03-10T11:40:00Z".to_owned(),
            finished_at: Some("2026-03-10T11:48:00Z".to_owned()),
            commit: Some("abc1234def5678abc1234def5678abc1234def56".to_owned()),
            tag: Some("sha-abc1234".to_owned()),
        }
    }

    fn pending(id: i64) -> PromotionView {
        PromotionView {
            id,
            application: "web-app".to_owned(),
            environment: "prod".to_owned(),
            digest: "sha256:aa".to_owned(),
            config: None,
            config_revision: None,
            state: PromotionState::Waiting,
            requested_by: "dev-dana".to_owned(),
            auto: false,
            override_reason: None,
            reason: None,
            conditions: Vec::new(),
            version: 1,
            deployment_id: None,
            decisions: Vec::new(),
            created_at: "2026-03-10T11:00:00Z".to_owned(),
            updated_at: "2026-03-10T11:00:00Z".to_owned(),
        }
    }

    fn web_app() -> AppStatus {
        AppStatus {
            name: "web-app".to_owned(),
            app_type: "container".to_owned(),
            repository: "acme/web-app".to_owned(),
            pipeline: "standard".to_owned(),
            environments: vec![
                EnvironmentView {
                    name: "dev".to_owned(),
                    auto: true,
                    target: "record".to_owned(),
                    current: Some(deployment("dev", "promotion")),
                    deploying: None,
                    hold: None,
                    observed: None,
                    drift_since: None,
                    pending: Vec::new(),
                    quarantined: None,
                },
                EnvironmentView {
                    name: "prod".to_owned(),
                    auto: false,
                    target: "record".to_owned(),
                    current: Some(deployment("prod", "rollback")),
                    deploying: None,
                    hold: Some(HoldView {
                        reason: "rolled back".to_owned(),
                        by: "staff-sam".to_owned(),
                        at: "2026-03-10T11:48:00Z".to_owned(),
                    }),
                    observed: None,
                    drift_since: None,
                    pending: vec![pending(7)],
                    quarantined: None,
                },
            ],
        }
    }

    #[test]
    fn the_status_of_an_application_shows_each_environment_in_pipeline_order() {
        assert_eq!(
            render_status(&web_app(), now()),
            "web-app (container, pipeline standard, repository acme/web-app)\n\
             \n\
             ENVIRONMENT  DIGEST        COMMIT   AGE  STATE                DRIFT  HOLD                            PENDING\n\
             dev          0123456789ab  abc1234  12m  deployed             -      -                               -\n\
             prod         0123456789ab  abc1234  12m  deployed (rollback)  -      held by staff-sam: rolled back  #7 waiting\n"
        );
    }

    #[test]
    fn the_status_shows_the_deployment_under_way_drift_and_a_short_hold() {
        let mut app = web_app();
        let prod = &mut app.environments[1];
        let mut deploying = deployment("prod", "rollback");
        deploying.id = 9;
        deploying.state = "deploying".to_owned();
        deploying.digest = format!("sha256:{}", "fe".repeat(32));
        deploying.started_at = "2026-03-10T11:59:20Z".to_owned();
        prod.deploying = Some(deploying);
        prod.observed = Some(client::ObservedView {
            digest: format!("sha256:{}", "7a".repeat(32)),
            at: "2026-03-10T11:55:00Z".to_owned(),
            by: "agent".to_owned(),
        });
        prod.drift_since = Some("2026-03-10T11:30:00Z".to_owned());
        prod.hold = Some(HoldView {
            reason: format!(
                "rolled back to sha256:{} by staff-sam: checkout errors after the release of the new payment page",
                "ab".repeat(32)
            ),
            by: "staff-sam".to_owned(),
            at: "2026-03-10T11:48:00Z".to_owned(),
        });

        let rendered = render_status(&app, now());
        let prod_row = rendered.lines().last().expect("a row");

        assert!(
            prod_row.contains("rolling back to fefefefefefe (#9, 40s)"),
            "{prod_row}"
        );
        assert!(prod_row.contains("runs 7a7a7a7a7a7a (30m)"), "{prod_row}");
        assert!(
            prod_row.contains("held by staff-sam: rolled back to abababababab …"),
            "{prod_row}"
        );
        assert!(!prod_row.contains("checkout errors"), "{prod_row}");
        assert!(
            rendered.lines().all(|line| line.chars().count() < 200),
            "{rendered}"
        );
    }

    #[test]
    fn the_list_of_applications_summarises_each_environment_on_one_line() {
        let list = AppList {
            applications: vec![web_app()],
            next: None,
        };
        assert_eq!(
            render_apps(&list, now()),
            "APPLICATION  TYPE       PIPELINE  ENVIRONMENTS\n\
             web-app      container  standard  dev=0123456789ab (12m)  prod=0123456789ab (12m) held +1 pending\n"
        );
    }
}
