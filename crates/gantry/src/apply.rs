//! `gantry apply -f FILE [--dry-run]`: sends a resources file to the server and shows
//! what happened (or, on a dry run, what would happen) to each resource.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use client::{ApplyAction, ApplyResponse};

use crate::remote::{OutputFormat, RemoteArgs};

#[derive(Args)]
pub(crate) struct ApplyArgs {
    /// The resources file: multi-document YAML of Pipelines, Applications and TrustPolicies
    #[arg(short = 'f', long = "file")]
    file: PathBuf,
    /// Show what would change, with diffs, and change nothing
    #[arg(long)]
    dry_run: bool,
    /// Output format
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Table)]
    output: OutputFormat,
    #[command(flatten)]
    remote: RemoteArgs,
}

pub(crate) fn run(args: ApplyArgs) -> anyhow::Result<()> {
    let yaml = std::fs::read_to_string(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?;
    let label = args.file.display().to_string();
    let client = args.remote.client()?;
    let report = client.apply(&yaml, &label, args.dry_run)?;
    match args.output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        OutputFormat::Table => print!("{}", render(&report)),
    }
    Ok(())
}

/// One line per resource (`created  Pipeline/standard  (revision 1)`); on a dry run
/// each change is followed by its diff, indented.
fn render(report: &ApplyResponse) -> String {
    let mut out = String::new();
    for resource in &report.resources {
        let verb = match (report.dry_run, resource.action) {
            (false, ApplyAction::Create) => "created",
            (false, ApplyAction::Update) => "updated",
            (true, ApplyAction::Create) => "would create",
            (true, ApplyAction::Update) => "would update",
            (_, ApplyAction::Unchanged) => "unchanged",
        };
        let width = if report.dry_run { 12 } else { 9 };
        let line = format!("{verb:<width$}  {}/{}", resource.kind, resource.name);
        match resource.revision {
            Some(revision) => out.push_str(&format!("{line}  (revision {revision})\n")),
            None => out.push_str(&format!("{line}\n")),
        }
        if report.dry_run && resource.action != ApplyAction::Unchanged {
            for diff_line in resource.diff.lines() {
                out.push_str(&format!("    {diff_line}\n"));
            }
        }
    }
    for repository in &report.created_repositories {
        out.push_str(&format!("created repository {repository}\n"));
    }
    if report.dry_run {
        out.push_str("dry run: nothing was changed\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use client::ResourceOutcome;

    use super::*;

    fn outcome(kind: &str, action: ApplyAction, revision: Option<i64>) -> ResourceOutcome {
        ResourceOutcome {
            kind: kind.to_owned(),
            name: "standard".to_owned(),
            action,
            revision,
            diff: "  {\n+   \"a\": 1\n  }".to_owned(),
        }
    }

    fn check(dry_run: bool, resources: Vec<ResourceOutcome>, expected: &str) {
        let report = ApplyResponse {
            dry_run,
            resources,
            created_repositories: Vec::new(),
        };
        assert_eq!(render(&report), expected);
    }

    #[test]
    fn an_apply_shows_one_line_per_resource_with_its_revision() {
        check(
            false,
            vec![
                outcome("Pipeline", ApplyAction::Create, Some(1)),
                outcome("Pipeline", ApplyAction::Update, Some(2)),
                outcome("Pipeline", ApplyAction::Unchanged, Some(2)),
            ],
            "created    Pipeline/standard  (revision 1)\n\
             updated    Pipeline/standard  (revision 2)\n\
             unchanged  Pipeline/standard  (revision 2)\n",
        );
    }

    #[test]
    fn a_dry_run_shows_each_change_with_its_diff_indented() {
        check(
            true,
            vec![
                outcome("Pipeline", ApplyAction::Create, None),
                outcome("Pipeline", ApplyAction::Unchanged, Some(3)),
            ],
            "would create  Pipeline/standard\n      {\n    +   \"a\": 1\n      }\n\
             unchanged     Pipeline/standard  (revision 3)\n\
             dry run: nothing was changed\n",
        );
    }
}
