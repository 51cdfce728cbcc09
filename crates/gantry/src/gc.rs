//! `gantry gc [--dry-run]` runs a garbage collection pass on the server now (admins)
//! and prints what it deleted, or would delete; `gantry gc --history` shows the
//! settings and the recent passes.

use std::process::ExitCode;

use clap::Args;
use client::{GcItem, GcReport, GcStatus};

use crate::progress::human_bytes;
use crate::remote::{ClientArgs, OutputFormat};
use crate::table::{Table, json, short_digest};

#[derive(Args)]
pub(crate) struct GcArgs {
    /// Report what a pass would delete, changing nothing
    #[arg(long, conflicts_with = "history")]
    dry_run: bool,
    /// Show the settings and the recent passes instead of running one
    #[arg(long)]
    history: bool,
    #[command(flatten)]
    client: ClientArgs,
}

pub(crate) fn run(args: GcArgs) -> anyhow::Result<ExitCode> {
    let client = args.client.client()?;
    if args.history {
        let status = client.gc_status()?;
        match args.client.output {
            OutputFormat::Json => print!("{}", json(&status)?),
            OutputFormat::Table => print!("{}", render_status(&status)),
        }
        return Ok(ExitCode::SUCCESS);
    }
    let report = client.gc(args.dry_run)?;
    match args.client.output {
        OutputFormat::Json => print!("{}", json(&report)?),
        OutputFormat::Table => print!("{}", render_report(&report)),
    }
    Ok(if report.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn items(title: &str, items: &[GcItem], since: &str) -> String {
    if items.is_empty() {
        return String::new();
    }
    let mut table = Table::new(&["DIGEST", "SIZE", "REPOSITORY", since]);
    for item in items {
        table.row(vec![
            short_digest(&item.digest),
            human_bytes(item.size),
            item.repository.clone().unwrap_or_else(|| "-".to_owned()),
            item.since.clone(),
        ]);
    }
    format!("\n{title}\n{}", table.render())
}

fn render_report(report: &GcReport) -> String {
    let (verb, mark) = if report.dry_run {
        ("would delete", "would mark")
    } else {
        ("deleted", "marked")
    };
    let mut text = format!(
        "{}garbage collection {} in {} ms (grace window {} s)\n\
         {verb} {} blob(s) unreferenced past the window and {} object(s) without a record: {}\n\
         {verb} {} referrer(s) whose subject is gone\n\
         {mark} {} unreferenced blob(s) deletable ({}), deleted after the grace window unless referenced again\n",
        if report.dry_run { "DRY RUN: " } else { "" },
        report.started_at,
        report.duration_ms,
        report.grace_seconds,
        report.blobs_deleted,
        report.orphans_deleted,
        human_bytes(report.bytes_reclaimed),
        report.referrers_deleted,
        report.blobs_marked,
        human_bytes(report.bytes_marked),
    );
    if !report.dry_run {
        text.push_str(&format!(
            "purged {} expired upload session(s)\n",
            report.uploads_purged
        ));
    }
    text.push_str(&items("BLOBS", &report.blobs, "UNREFERENCED SINCE"));
    text.push_str(&items(
        "OBJECTS WITHOUT A RECORD",
        &report.orphans,
        "WRITTEN",
    ));
    text.push_str(&items("REFERRERS", &report.referrers, "PUSHED"));
    for error in &report.errors {
        text.push_str(&format!("error: {error}\n"));
    }
    text
}

fn render_status(status: &GcStatus) -> String {
    let mut text = format!(
        "{}; grace window {} s\nall passes together deleted {} blob(s), {} object(s) without a record and {} manifest(s): {}\n",
        status.interval_seconds.map_or_else(
            || "scheduled passes off (only `gantry gc`)".to_owned(),
            |every| format!("a pass every {every} s")
        ),
        status.grace_seconds,
        status.blobs_deleted,
        status.orphans_deleted,
        status.manifests_deleted,
        human_bytes(u64::try_from(status.bytes_reclaimed).unwrap_or(0)),
    );
    let mut table = Table::new(&[
        "STARTED",
        "REPLICA",
        "MS",
        "MARKED",
        "BLOBS",
        "OBJECTS",
        "MANIFESTS",
        "RECLAIMED",
        "UPLOADS",
        "ERRORS",
    ]);
    for pass in &status.passes {
        table.row(vec![
            pass.started_at.clone(),
            pass.replica.clone(),
            pass.duration_ms.to_string(),
            pass.blobs_marked.to_string(),
            pass.blobs_deleted.to_string(),
            pass.orphans_deleted.to_string(),
            pass.manifests_deleted.to_string(),
            human_bytes(u64::try_from(pass.bytes_reclaimed).unwrap_or(0)),
            pass.uploads_purged.to_string(),
            pass.errors.to_string(),
        ]);
    }
    text.push('\n');
    text.push_str(&table.render());
    text
}
