//! `gantry rollback`, `gantry hold` and `gantry unhold`: what a release manager does to
//! one environment of an application when something is wrong.

use std::process::ExitCode;

use clap::Args;
use client::{DeploymentView, HoldView};

use crate::remote::{ClientArgs, OutputFormat, exit};
use crate::table::json;

#[derive(Args)]
pub(crate) struct RollbackArgs {
    /// The application
    application: String,
    /// The environment to roll back
    #[arg(long = "env")]
    environment: String,
    /// The digest to return to [default: the one that ran before the current one]
    #[arg(long, value_name = "DIGEST")]
    to: Option<String>,
    /// Why, for the record
    #[arg(long)]
    reason: Option<String>,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args)]
pub(crate) struct HoldArgs {
    /// The application
    application: String,
    /// The environment to hold
    #[arg(long = "env")]
    environment: String,
    /// Why: shown wherever the hold is
    #[arg(long)]
    reason: String,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args)]
pub(crate) struct UnholdArgs {
    /// The application
    application: String,
    /// The environment to release
    #[arg(long = "env")]
    environment: String,
    #[command(flatten)]
    client: ClientArgs,
}

pub(crate) fn rollback(args: RollbackArgs) -> anyhow::Result<ExitCode> {
    let deployment = args.client.client()?.rollback(
        &args.application,
        &args.environment,
        args.to.as_deref(),
        args.reason.as_deref(),
    )?;
    match args.client.output {
        OutputFormat::Json => print!("{}", json(&deployment)?),
        OutputFormat::Table => print!("{}", render_rollback(&deployment)),
    }
    Ok(if deployment.state == "failed" {
        ExitCode::from(exit::NOT_DEPLOYED)
    } else {
        ExitCode::SUCCESS
    })
}

pub(crate) fn hold(args: HoldArgs) -> anyhow::Result<ExitCode> {
    let hold = args
        .client
        .client()?
        .hold(&args.application, &args.environment, &args.reason)?;
    match args.client.output {
        OutputFormat::Json => print!("{}", json(&hold)?),
        OutputFormat::Table => print!(
            "{}",
            render_hold(&args.application, &args.environment, &hold)
        ),
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn unhold(args: UnholdArgs) -> anyhow::Result<ExitCode> {
    args.client
        .client()?
        .release_hold(&args.application, &args.environment)?;
    // The server answers 204 with no body: in JSON there is nothing to print.
    if args.client.output == OutputFormat::Table {
        println!(
            "released the hold on {}/{}",
            args.application, args.environment
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn render_rollback(deployment: &DeploymentView) -> String {
    let mut out = format!(
        "rolled back {}/{} to {}: deployment {} {}\n",
        deployment.application,
        deployment.environment,
        deployment.digest,
        deployment.id,
        deployment.state
    );
    if let Some(message) = &deployment.message {
        out.push_str(&format!("  {message}\n"));
    }
    out
}

fn render_hold(application: &str, environment: &str, hold: &HoldView) -> String {
    format!(
        "held {application}/{environment} (by {} at {}): {}\n\
         auto-promotion stays out until `gantry unhold {application} --env {environment}`\n",
        hold.by, hold.at, hold.reason
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hold_says_how_to_release_it() {
        let hold = HoldView {
            reason: "incident 7".to_owned(),
            by: "staff-sam".to_owned(),
            at: "2026-01-01T00:00:00Z".to_owned(),
        };
        assert_eq!(
            render_hold("web-app", "prod", &hold),
            "held web-app/prod (by staff-sam at 2026-01-01T00:00:00Z): incident 7\n\
             auto-promotion stays out until `gantry unhold web-app --env prod`\n"
        );
    }
}
