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

/// Retention, repository by repository: what each policy expires and why, and the
/// manifests a pin saved (the rule that would have expired each, and the pins).
fn render_retention(report: &GcReport) -> String {
    if report.retention.is_empty() {
        return String::new();
    }
    let verb = if report.dry_run {
        "would expire"
    } else {
        "expired"
    };
    let mut text = String::new();
    for done in &report.retention {
        text.push_str(&format!(
            "\nRETENTION {} ({}): {} of {} manifest(s) {verb}, {} saved by a pin\n",
            done.repository,
            done.policy,
            done.expired.len(),
            done.manifests,
            done.saved.len(),
        ));
        if !done.expired.is_empty() {
            let mut table = Table::new(&["EXPIRES", "TAGS", "TIER", "AGE", "RULE"]);
            for expired in &done.expired {
                table.row(vec![
                    short_digest(&expired.digest),
                    tags(&expired.tags),
                    expired.tier.clone(),
                    expired.age.clone(),
                    expired.rule.clone(),
                ]);
            }
            text.push_str(&table.render());
        }
        if !done.saved.is_empty() {
            let mut table =
                Table::new(&["PINNED", "TAGS", "TIER", "AGE", "WOULD EXPIRE AS", "PINS"]);
            for saved in &done.saved {
                table.row(vec![
                    short_digest(&saved.digest),
                    tags(&saved.tags),
                    saved.tier.clone(),
                    saved.age.clone(),
                    saved.rule.clone(),
                    saved.pins.join("; "),
                ]);
            }
            text.push_str(&table.render());
        }
        for skipped in &done.skipped {
            text.push_str(&format!(
                "kept {}: {}\n",
                short_digest(&skipped.digest),
                skipped.reason
            ));
        }
    }
    text
}

fn tags(tags: &[String]) -> String {
    if tags.is_empty() {
        "-".to_owned()
    } else {
        tags.join(",")
    }
}

fn render_report(report: &GcReport) -> String {
    let (verb, mark, expire) = if report.dry_run {
        ("would delete", "would mark", "would expire")
    } else {
        ("deleted", "marked", "expired")
    };
    let mut text = format!(
        "{}garbage collection {} in {} ms (grace window {} s)\n\
         {verb} {} blob(s) unreferenced past the window and {} object(s) without a record: {}\n\
         {expire} {} manifest(s) by retention\n\
         {verb} {} referrer(s) whose subject is gone\n\
         {mark} {} unreferenced blob(s) deletable ({}), deleted after the grace window unless referenced again\n",
        if report.dry_run { "DRY RUN: " } else { "" },
        report.started_at,
        report.duration_ms,
        report.grace_seconds,
        report.blobs_deleted,
        report.orphans_deleted,
        human_bytes(report.bytes_reclaimed),
        report.manifests_expired,
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
    text.push_str(&render_retention(report));
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

#[cfg(test)]
mod tests {
    use client::{GcReport, RetentionExpiry, RetentionSaved, RetentionView};

    use super::render_report;

    fn report(dry_run: bool) -> GcReport {
        GcReport {
            dry_run,
            started_at: "2026-12-05T10:00:00Z".into(),
            duration_ms: 12,
            grace_seconds: 3600,
            retention: vec![RetentionView {
                policy: "RetentionPolicy/team-builds".into(),
                repository: "team/api".into(),
                manifests: 7,
                expired: vec![RetentionExpiry {
                    digest: format!("sha256:{}", "a".repeat(64)),
                    tags: vec!["sha-1".into()],
                    tier: "dev".into(),
                    age: "9d 2h".into(),
                    rule: "not among the newest 2 tagged and older than 7d".into(),
                }],
                saved: vec![RetentionSaved {
                    digest: format!("sha256:{}", "b".repeat(64)),
                    tags: Vec::new(),
                    tier: "release".into(),
                    age: "400d 0h".into(),
                    rule: "untagged for longer than 30d".into(),
                    pins: vec![
                        "prod runs it".into(),
                        "it is in the release tier release/team/api".into(),
                    ],
                }],
                skipped: Vec::new(),
            }],
            manifests_expired: 1,
            referrers: Vec::new(),
            referrers_deleted: 0,
            blobs_marked: 0,
            bytes_marked: 0,
            marks_cleared: 0,
            blobs: Vec::new(),
            blobs_deleted: 0,
            orphans: Vec::new(),
            orphans_deleted: 0,
            bytes_reclaimed: 0,
            uploads_purged: 0,
            errors: Vec::new(),
        }
    }

    #[test]
    fn a_dry_run_shows_what_each_policy_would_expire_and_the_pin_that_saved_each_digest() {
        let text = render_report(&report(true));
        assert!(text.starts_with("DRY RUN: "), "{text}");
        assert!(
            text.contains("would expire 1 manifest(s) by retention"),
            "{text}"
        );
        assert!(
            text.contains("RETENTION team/api (RetentionPolicy/team-builds): 1 of 7 manifest(s) would expire, 1 saved by a pin"),
            "{text}"
        );
        let expired = text
            .lines()
            .find(|line| line.contains("sha-1"))
            .expect("the expired row");
        for part in [
            "dev",
            "9d 2h",
            "not among the newest 2 tagged and older than 7d",
        ] {
            assert!(expired.contains(part), "{expired}");
        }
        let saved = text
            .lines()
            .find(|line| line.contains("prod runs it"))
            .expect("the saved row");
        for part in [
            "release",
            "untagged for longer than 30d",
            "it is in the release tier release/team/api",
        ] {
            assert!(saved.contains(part), "{saved}");
        }
        let done = render_report(&report(false));
        assert!(
            done.contains("expired 1 manifest(s) by retention"),
            "{done}"
        );
        assert!(done.contains("1 of 7 manifest(s) expired"), "{done}");
    }
}
