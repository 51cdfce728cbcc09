//! `gantry deployment show ID` and `gantry deployment log ID [--follow]`: one
//! deployment with its durable job, and what it did line by line — the same record the
//! API keeps (`/api/v1/deployments/{id}` and its `/log`).

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use client::{Client, ClientError, DeploymentDetail, LogLineView};

use crate::remote::{ClientArgs, OutputFormat, exit};
use crate::table::{json, or_dash, short_commit};

/// How often `--follow` asks for new lines.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(500);

#[derive(Args)]
pub(crate) struct DeploymentArgs {
    #[command(subcommand)]
    command: DeploymentCommand,
}

#[derive(Subcommand)]
enum DeploymentCommand {
    /// One deployment: what, where, why, by whom, its state and message, and its job
    /// (attempts, lease, last error).
    ///
    /// Exit codes: 0 deployed or under way, 7 failed, 4 unauthorized or forbidden, 1
    /// anything else (e.g. no such deployment).
    Show(ShowArgs),
    /// A deployment's log, one line per step, retry and line of a program's output;
    /// with --follow, new lines as they come until the deployment finishes.
    ///
    /// Exit codes: as `show`, for the deployment's state when the log was printed.
    Log(LogArgs),
}

#[derive(Args)]
struct ShowArgs {
    /// The deployment's id (`gantry history` lists them)
    id: i64,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args)]
struct LogArgs {
    /// The deployment's id
    id: i64,
    /// Keep printing new lines until the deployment finishes
    #[arg(long, short = 'f')]
    follow: bool,
    #[command(flatten)]
    client: ClientArgs,
}

pub(crate) fn run(args: DeploymentArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        DeploymentCommand::Show(args) => {
            let detail = args.client.client()?.deployment(args.id)?;
            match args.client.output {
                OutputFormat::Json => print!("{}", json(&detail)?),
                OutputFormat::Table => print!("{}", render(&detail)),
            }
            Ok(outcome(&detail.deployment.state))
        }
        DeploymentCommand::Log(args) => {
            let client = args.client.client()?;
            let mut printed = Vec::new();
            let state = follow(
                &client,
                args.id,
                args.follow,
                &mut |line| match args.client.output {
                    OutputFormat::Json => {
                        printed.push(line.clone());
                    }
                    OutputFormat::Table => println!("{}  {}", line.at, line.line),
                },
            )?;
            if args.client.output == OutputFormat::Json {
                print!("{}", json(&printed)?);
            }
            Ok(outcome(&state))
        }
    }
}

/// Hands every log line of deployment `id` to `each`, oldest first; with `follow`,
/// keeps asking until the deployment is no longer `deploying`. The deployment's state
/// at the end.
pub(crate) fn follow(
    client: &Client,
    id: i64,
    follow: bool,
    each: &mut dyn FnMut(&LogLineView),
) -> Result<String, ClientError> {
    let mut after = None;
    loop {
        // The state is read before the lines: a deployment seen finished has all its
        // lines written, so the last read misses none.
        let state = client.deployment(id)?.deployment.state;
        loop {
            let page = client.deployment_log(id, after)?;
            for line in &page.lines {
                each(line);
                after = Some(line.seq);
            }
            if page.next.is_none() || page.lines.is_empty() {
                break;
            }
        }
        if !follow || state != "deploying" {
            return Ok(state);
        }
        std::thread::sleep(FOLLOW_INTERVAL);
    }
}

/// Runs `request` (a promote or an approve, which the server answers when the
/// deployment it starts has finished) while showing on stderr what that deployment
/// does: its state changes and log lines as they come. `find` names the deployment
/// once it exists. Reading the progress never fails the command.
pub(crate) fn while_running<T: Send>(
    client: &Client,
    request: impl FnOnce() -> T + Send,
    find: impl Fn() -> Option<i64>,
) -> T {
    std::thread::scope(|scope| {
        let running = scope.spawn(request);
        let mut shown = Shown::default();
        while !running.is_finished() {
            std::thread::sleep(FOLLOW_INTERVAL);
            if shown.id.is_none() {
                shown.id = find();
            }
            shown.show(client);
        }
        shown.show(client);
        match running.join() {
            Ok(answer) => answer,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// What of a deployment's progress was shown already.
#[derive(Default)]
struct Shown {
    id: Option<i64>,
    after: Option<i64>,
    state: String,
}

impl Shown {
    fn show(&mut self, client: &Client) {
        let Some(id) = self.id else { return };
        if let Ok(detail) = client.deployment(id)
            && detail.deployment.state != self.state
        {
            self.state = detail.deployment.state;
            eprintln!("deployment {id}: {}", self.state);
        }
        if let Ok(page) = client.deployment_log(id, self.after) {
            for line in &page.lines {
                eprintln!("  {}", line.line);
                self.after = Some(line.seq);
            }
        }
    }
}

fn outcome(state: &str) -> ExitCode {
    if state == "failed" {
        ExitCode::from(exit::NOT_DEPLOYED)
    } else {
        ExitCode::SUCCESS
    }
}

fn render(detail: &DeploymentDetail) -> String {
    let d = &detail.deployment;
    let mut out = format!(
        "deployment {} of {} to {}/{}: {} ({})\n",
        d.id, d.digest, d.application, d.environment, d.state, d.reason
    );
    let rows = [
        ("tag", or_dash(d.tag.as_deref())),
        (
            "commit",
            or_dash(d.commit.as_deref().map(short_commit).as_deref()),
        ),
        ("target", d.target.clone()),
        ("requested by", d.requested_by.clone()),
        (
            "promotion",
            or_dash(d.promotion_id.map(|id| format!("#{id}")).as_deref()),
        ),
        ("started", d.started_at.clone()),
        ("finished", or_dash(d.finished_at.as_deref())),
    ];
    for (name, value) in rows {
        out.push_str(&format!("  {name:<13} {value}\n"));
    }
    if let Some(job) = &detail.job {
        out.push_str(&format!(
            "  {:<13} {}, {} attempt(s){}{}\n",
            "job",
            job.state,
            job.attempts,
            job.lease_owner
                .as_deref()
                .map(|owner| format!(", held by {owner}"))
                .unwrap_or_default(),
            job.last_error
                .as_deref()
                .map(|error| format!(", last error: {error}"))
                .unwrap_or_default()
        ));
    }
    if let Some(message) = &d.message {
        out.push_str("  message:\n");
        for line in message.lines() {
            out.push_str(&format!("    {line}\n"));
        }
    }
    out
}
