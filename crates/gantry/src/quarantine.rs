//! `gantry quarantine APP DIGEST --reason …` marks a digest bad: promotions of it and
//! rollbacks onto it are refused, its open promotions cancelled, admission denies it
//! and (by default) the registry refuses to serve it. `--lift --reason …` lifts it;
//! `gantry quarantine APP` lists what is quarantined.

use std::process::ExitCode;

use anyhow::bail;
use clap::Args;
use client::QuarantineView;

use crate::remote::{ClientArgs, OutputFormat};
use crate::table::{Table, json};

#[derive(Args)]
pub(crate) struct QuarantineArgs {
    /// The application
    application: String,
    /// The digest (sha256:…); without it, list the application's quarantines
    digest: Option<String>,
    /// Why (required to quarantine or lift; audited)
    #[arg(long)]
    reason: Option<String>,
    /// Lift the digest's quarantine instead
    #[arg(long)]
    lift: bool,
    #[command(flatten)]
    client: ClientArgs,
}

pub(crate) fn run(args: QuarantineArgs) -> anyhow::Result<ExitCode> {
    let client = args.client.client()?;
    let Some(digest) = args.digest.as_deref() else {
        if args.lift || args.reason.is_some() {
            bail!("name the digest to quarantine or lift: gantry quarantine APP DIGEST --reason …");
        }
        let list = client.quarantines(&args.application)?;
        match args.client.output {
            OutputFormat::Json => print!("{}", json(&list)?),
            OutputFormat::Table => print!("{}", render(&args.application, &list.quarantines)),
        }
        return Ok(ExitCode::SUCCESS);
    };
    let Some(reason) = args.reason.as_deref() else {
        bail!("say why with --reason (it is audited)");
    };
    if args.lift {
        let lifted = client.lift_quarantine(&args.application, digest, reason)?;
        match args.client.output {
            OutputFormat::Json => print!("{}", json(&lifted)?),
            OutputFormat::Table => println!(
                "lifted the quarantine of {} in {} (quarantined by {} at {}: {})",
                lifted.digest, lifted.application, lifted.by, lifted.at, lifted.reason
            ),
        }
        return Ok(ExitCode::SUCCESS);
    }
    let done = client.quarantine(&args.application, digest, reason)?;
    match args.client.output {
        OutputFormat::Json => print!("{}", json(&done)?),
        OutputFormat::Table => {
            let q = &done.quarantine;
            if done.created {
                println!(
                    "quarantined {} in {}: {}",
                    q.digest, q.application, q.reason
                );
            } else {
                println!(
                    "{} was already quarantined in {} (by {} at {}: {})",
                    q.digest, q.application, q.by, q.at, q.reason
                );
            }
            if !done.cancelled_promotions.is_empty() {
                let ids: Vec<String> = done
                    .cancelled_promotions
                    .iter()
                    .map(|id| format!("#{id}"))
                    .collect();
                println!("cancelled its open promotions {}", ids.join(", "));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn render(application: &str, quarantines: &[QuarantineView]) -> String {
    if quarantines.is_empty() {
        return format!("nothing is quarantined in {application}\n");
    }
    let mut table = Table::new(&["DIGEST", "BY", "AT", "REASON"]);
    for q in quarantines {
        table.row(vec![
            q.digest.clone(),
            q.by.clone(),
            q.at.clone(),
            q.reason.clone(),
        ]);
    }
    table.render()
}
