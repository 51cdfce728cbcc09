//! `gantry build notify`: what CI runs after pushing an artifact. It records the
//! build's provenance and, where the application's first stage is `auto`, the server
//! promotes the digest there at once; both are printed.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use client::{BuildRequest, NotifyResponse, PromotionState};

use crate::remote::{ClientArgs, OutputFormat, exit};
use crate::table::{json, short_commit};

#[derive(Args)]
pub(crate) struct BuildArgs {
    #[command(subcommand)]
    command: BuildCommand,
}

#[derive(Subcommand)]
enum BuildCommand {
    /// Record a build's provenance; an `auto` first stage is promoted into at once.
    ///
    /// What is left out is read from the image: the commit from the
    /// `org.opencontainers.image.revision` or `git.commit` annotation or label, the
    /// run from `ci.run`, the source from `org.opencontainers.image.source`.
    ///
    /// Exit codes: 0 recorded (the auto-promotion deployed, waits on its gate, or there
    /// is none), 7 the auto-promotion failed, 2 invalid input (e.g. the digest is not in
    /// the application's repository), 4 unauthorized or forbidden, 1 anything else.
    Notify(NotifyArgs),
}

#[derive(Args)]
pub(crate) struct NotifyArgs {
    /// The application built
    #[arg(long = "app")]
    application: String,
    /// The artifact's digest (`sha256:…`), already pushed to the application's repository
    #[arg(long)]
    digest: String,
    /// The commit SHA built
    #[arg(long)]
    commit: Option<String>,
    /// The branch built
    #[arg(long)]
    branch: Option<String>,
    /// The CI run's id
    #[arg(long = "run")]
    run_id: Option<String>,
    /// The CI run's URL
    #[arg(long)]
    run_url: Option<String>,
    /// The source repository's URL
    #[arg(long)]
    source: Option<String>,
    /// Who started the CI run (may not approve this build's promotions)
    #[arg(long)]
    triggered_by: Option<String>,
    /// Who wrote the commit (may not approve this build's promotions)
    #[arg(long)]
    author: Option<String>,
    /// When the change was committed (RFC 3339), for lead time
    #[arg(long)]
    committed_at: Option<String>,
    /// The tag the build was pushed under (`sha-abc1234`, `101`), handed to targets
    /// that want one (a gitops `tag` key, a registry copy's destination) [default: the
    /// newest tag pointing at the digest]
    #[arg(long)]
    tag: Option<String>,
    #[command(flatten)]
    client: ClientArgs,
}

pub(crate) fn run(args: BuildArgs) -> anyhow::Result<ExitCode> {
    let BuildCommand::Notify(args) = args.command;
    let request = BuildRequest {
        application: args.application,
        digest: args.digest,
        commit: args.commit,
        branch: args.branch,
        run_id: args.run_id,
        run_url: args.run_url,
        source: args.source,
        triggered_by: args.triggered_by,
        author: args.author,
        committed_at: args.committed_at,
        tag: args.tag,
    };
    let notified = args.client.client()?.notify_build(&request)?;
    match args.client.output {
        OutputFormat::Json => print!("{}", json(&notified)?),
        OutputFormat::Table => print!("{}", render(&notified)),
    }
    let failed = notified.promotion.as_ref().is_some_and(|promotion| {
        matches!(
            promotion.state,
            PromotionState::Failed | PromotionState::Rejected
        )
    });
    Ok(if failed {
        ExitCode::from(exit::NOT_DEPLOYED)
    } else {
        ExitCode::SUCCESS
    })
}

/// The build on one line, then what happened to its auto stage.
fn render(notified: &NotifyResponse) -> String {
    let build = &notified.build;
    let mut about = Vec::new();
    if let Some(tag) = &build.tag {
        about.push(format!("tag {tag}"));
    }
    if let Some(commit) = &build.commit {
        about.push(format!("commit {}", short_commit(commit)));
    }
    if let Some(branch) = &build.branch {
        about.push(format!("branch {branch}"));
    }
    if let Some(run) = &build.run_id {
        about.push(format!("run {run}"));
    }
    if let Some(who) = &build.triggered_by {
        about.push(format!("triggered by {who}"));
    }
    about.push(format!("notified by {}", build.builder));
    let mut out = format!(
        "build of {} {}\n  {}\n",
        build.application,
        build.digest,
        about.join(", ")
    );
    match (&notified.promotion, &notified.held) {
        (Some(promotion), _) => out.push_str(&format!(
            "promotion {} into {}: {}{}\n",
            promotion.id,
            promotion.environment,
            promotion.state,
            promotion
                .reason
                .as_deref()
                .map(|reason| format!(" ({reason})"))
                .unwrap_or_default()
        )),
        (None, Some(hold)) => out.push_str(&format!(
            "not promoted: the first stage is held by {} since {}: {}\n",
            hold.by, hold.at, hold.reason
        )),
        (None, None) => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use client::{BuildView, HoldView};

    use super::*;

    fn build() -> BuildView {
        BuildView {
            application: "web-app".to_owned(),
            digest: "sha256:aa".to_owned(),
            commit: Some("abc1234def5678abc1234def5678abc1234def56".to_owned()),
            branch: Some("main".to_owned()),
            run_id: Some("42".to_owned()),
            run_url: None,
            source: None,
            triggered_by: Some("dev-dana".to_owned()),
            author: None,
            committed_at: None,
            tag: None,
            builder: "ci-bot".to_owned(),
            notified_at: "2026-01-01T00:00:00Z".to_owned(),
        }
    }

    #[test]
    fn a_notified_build_shows_its_provenance_and_why_it_was_not_promoted() {
        let notified = NotifyResponse {
            build: build(),
            promotion: None,
            held: Some(HoldView {
                reason: "incident 7".to_owned(),
                by: "staff-sam".to_owned(),
                at: "2026-01-01T00:00:00Z".to_owned(),
            }),
        };
        assert_eq!(
            render(&notified),
            "build of web-app sha256:aa\n  \
             commit abc1234, branch main, run 42, triggered by dev-dana, notified by ci-bot\n\
             not promoted: the first stage is held by staff-sam since 2026-01-01T00:00:00Z: incident 7\n"
        );
    }
}
