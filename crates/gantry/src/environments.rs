//! `gantry rollback`, `gantry hold` and `gantry unhold`: what a release manager does to
//! one environment of an application when something is wrong.

use std::process::ExitCode;

use clap::Args;
use client::{DeploymentView, HoldView};

use crate::remote::{ClientArgs, InvalidInput, OutputFormat, exit};
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
    /// Repeating a rollback with the same key answers with the deployment the first
    /// one started [default: a fresh key for this invocation]
    #[arg(long)]
    idempotency_key: Option<String>,
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

/// Reads what the environment runs, says what it is about to do (on stderr, so `-o
/// json` stays one document), and rolls back from exactly that digest: the server
/// refuses when the environment moved meanwhile, so running the command twice, or two
/// people running it at once, never rolls back the rollback.
pub(crate) fn rollback(args: RollbackArgs) -> anyhow::Result<ExitCode> {
    let client = args.client.client()?;
    let status = client.app_status(&args.application)?;
    let Some(environment) = status
        .environments
        .iter()
        .find(|environment| environment.name == args.environment)
    else {
        let known: Vec<&str> = status
            .environments
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        return Err(InvalidInput(format!(
            "{} has no environment {} (it has: {})",
            args.application,
            args.environment,
            known.join(", ")
        ))
        .into());
    };
    if let Some(deploying) = &environment.deploying {
        return Err(InvalidInput(format!(
            "deployment {} ({} of {}) to {}/{} is under way: roll back when it has finished",
            deploying.id, deploying.reason, deploying.digest, args.application, args.environment
        ))
        .into());
    }
    let Some(current) = &environment.current else {
        return Err(InvalidInput(format!(
            "{}/{} has never been deployed: there is nothing to roll back",
            args.application, args.environment
        ))
        .into());
    };
    eprintln!(
        "rolling back {}/{} from {} (deployment {}{}) to {}",
        args.application,
        args.environment,
        current.digest,
        current.id,
        current
            .tag
            .as_deref()
            .map(|tag| format!(", tag {tag}"))
            .unwrap_or_default(),
        args.to
            .as_deref()
            .unwrap_or("the digest it ran before that")
    );
    let key = match args.idempotency_key {
        Some(key) => key,
        None => {
            let random = auth::generate_token()
                .map_err(|e| anyhow::anyhow!("the random source failed: {e}"))?;
            // 128 random bits in hex; not shaped like a token.
            format!("rollback-{}", &random[random.len() - 32..])
        }
    };
    let deployment = client.rollback(
        &args.application,
        &args.environment,
        &client::Rollback {
            to: args.to.as_deref(),
            from: Some(&current.digest),
            reason: args.reason.as_deref(),
            idempotency_key: Some(&key),
        },
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
