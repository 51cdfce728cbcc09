//! `gantry promote`, `approve`, `reject`, `cancel`, `promotion ID` and `promotions`:
//! request a promotion, decide on one, and see each with every condition of its gate,
//! met or not, and why.
//!
//! `promote` and `approve` exit by where the promotion ended up, so a script can tell
//! "deployed" (0) from "waiting for its gate" (6) from "ended without deploying" (7).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use client::{PromoteRequest, PromotionFilter, PromotionList, PromotionState, PromotionView};
use serde_json::{Map, Value};

use crate::deployments;
use crate::remote::{ClientArgs, InvalidInput, OutputFormat, exit};
use crate::table::{Table, json, mark, short_digest};

#[derive(Args)]
pub(crate) struct PromoteArgs {
    /// The application
    application: String,
    /// The environment to promote into
    #[arg(long = "env")]
    environment: String,
    /// The digest to promote (`sha256:…`), already in the application's repository
    #[arg(long)]
    digest: String,
    /// A release-bundle key, deployed with the digest: KEY=VALUE (a string); repeat for more
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_config_pair)]
    config: Vec<(String, String)>,
    /// Release-bundle keys from a JSON object; --config pairs are laid over it
    #[arg(long, value_name = "FILE.json")]
    config_file: Option<PathBuf>,
    /// Admins only: deploy even though the gate is shut (break-glass), for this reason; loudly audited
    #[arg(long = "override", value_name = "REASON")]
    override_reason: Option<String>,
    /// Repeating a promote with the same key returns the promotion the first one made
    #[arg(long)]
    idempotency_key: Option<String>,
    /// Deploy again even if the environment already runs (or is deploying) this
    /// digest; without it, such a promote answers with the promotion that put it there
    #[arg(long)]
    redeploy: bool,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args)]
pub(crate) struct ApproveArgs {
    /// The promotion's id
    id: i64,
    /// Why, for the record
    #[arg(long)]
    comment: Option<String>,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args)]
pub(crate) struct RejectArgs {
    /// The promotion's id
    id: i64,
    /// Why: the promotion ends with it
    #[arg(long)]
    reason: String,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args)]
pub(crate) struct CancelArgs {
    /// The promotion's id
    id: i64,
    /// Why, for the record
    #[arg(long)]
    reason: Option<String>,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args)]
pub(crate) struct ShowArgs {
    /// The promotion's id
    id: i64,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args)]
pub(crate) struct ListArgs {
    /// Only this application's
    #[arg(long = "app")]
    application: Option<String>,
    /// Only into this environment
    #[arg(long = "env")]
    environment: Option<String>,
    /// Only in this state (waiting, approved, deploying, deployed, failed, rejected, cancelled, superseded)
    #[arg(long)]
    state: Option<String>,
    /// At most this many, newest first [default: the server's, 50]
    #[arg(long)]
    limit: Option<u32>,
    #[command(flatten)]
    client: ClientArgs,
}

pub(crate) fn promote(args: PromoteArgs) -> anyhow::Result<ExitCode> {
    let file = match &args.config_file {
        Some(path) => Some(read_config_file(path)?),
        None => None,
    };
    let request = PromoteRequest {
        application: args.application,
        environment: args.environment,
        digest: args.digest,
        config: release_config(file, args.config)?.map(serde_json::Value::Object),
        override_reason: args.override_reason,
        redeploy: args.redeploy,
    };
    let client = args.client.client()?;
    let send = || client.promote(&request, args.idempotency_key.as_deref());
    let promoted = if shows_progress(args.client.output) {
        // The deployment this promotion starts is the one under way for its digest.
        let find = || {
            let status = client.app_status(&request.application).ok()?;
            let environment = status
                .environments
                .into_iter()
                .find(|environment| environment.name == request.environment)?;
            environment
                .deploying
                .filter(|deploying| deploying.digest == request.digest)
                .map(|deploying| deploying.id)
        };
        deployments::while_running(&client, send, find)?
    } else {
        send()?
    };
    match args.client.output {
        OutputFormat::Json => print!("{}", json(&promoted.promotion)?),
        OutputFormat::Table => {
            if !promoted.created {
                println!(
                    "(promotion {} already existed: the same idempotency key, an identical open request, or the digest the environment already runs; nothing new was deployed — add --redeploy to deploy it again)",
                    promoted.promotion.id
                );
            }
            print!("{}", render(&promoted.promotion));
        }
    }
    Ok(ExitCode::from(outcome(&promoted.promotion.state)))
}

pub(crate) fn approve(args: ApproveArgs) -> anyhow::Result<ExitCode> {
    let client = args.client.client()?;
    let send = || client.approve(args.id, args.comment.as_deref());
    let promotion = if shows_progress(args.client.output) {
        let find = || client.promotion(args.id).ok()?.deployment_id;
        deployments::while_running(&client, send, find)?
    } else {
        send()?
    };
    show(&promotion, args.client.output)?;
    Ok(ExitCode::from(outcome(&promotion.state)))
}

/// Whether to show a deployment's progress while waiting for it: for people at a
/// terminal, never in `-o json` or when stderr is a file or a pipe.
fn shows_progress(output: OutputFormat) -> bool {
    use std::io::IsTerminal;
    output == OutputFormat::Table && std::io::stderr().is_terminal()
}

pub(crate) fn reject(args: RejectArgs) -> anyhow::Result<ExitCode> {
    let promotion = args.client.client()?.reject(args.id, &args.reason)?;
    show(&promotion, args.client.output)?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn cancel(args: CancelArgs) -> anyhow::Result<ExitCode> {
    let promotion = args
        .client
        .client()?
        .cancel(args.id, args.reason.as_deref())?;
    show(&promotion, args.client.output)?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn promotion(args: ShowArgs) -> anyhow::Result<ExitCode> {
    let promotion = args.client.client()?.promotion(args.id)?;
    show(&promotion, args.client.output)?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn promotions(args: ListArgs) -> anyhow::Result<ExitCode> {
    let filter = PromotionFilter {
        application: args.application,
        environment: args.environment,
        state: args.state,
        before: None,
        limit: args.limit,
    };
    let list = args.client.client()?.list_promotions(&filter)?;
    match args.client.output {
        OutputFormat::Json => print!("{}", json(&list)?),
        OutputFormat::Table => print!("{}", render_list(&list)),
    }
    Ok(ExitCode::SUCCESS)
}

fn show(promotion: &PromotionView, output: OutputFormat) -> anyhow::Result<()> {
    match output {
        OutputFormat::Json => print!("{}", json(promotion)?),
        OutputFormat::Table => print!("{}", render(promotion)),
    }
    Ok(())
}

/// The exit code of `promote` and `approve` for where the promotion stands after them.
pub(crate) fn outcome(state: &PromotionState) -> u8 {
    match state {
        // The gate is open: deployed, or on its way (queued behind another deployment).
        PromotionState::Deployed | PromotionState::Approved | PromotionState::Deploying => 0,
        PromotionState::Waiting => exit::WAITING,
        PromotionState::Rejected
        | PromotionState::Failed
        | PromotionState::Cancelled
        | PromotionState::Superseded => exit::NOT_DEPLOYED,
        // A state from a newer server: not known to be a success.
        PromotionState::Other(_) => 1,
    }
}

/// `KEY=VALUE` of `--config`; the value may hold `=` and may be empty.
fn parse_config_pair(pair: &str) -> Result<(String, String), String> {
    let Some((key, value)) = pair.split_once('=') else {
        return Err(format!("`{pair}` is not KEY=VALUE"));
    };
    let key = key.trim();
    if key.is_empty() {
        return Err(format!("`{pair}` has no key before the `=`"));
    }
    Ok((key.to_owned(), value.to_owned()))
}

/// A `--config-file`: one JSON object.
fn read_config_file(path: &Path) -> anyhow::Result<Map<String, Value>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(InvalidInput(format!(
            "{} is not a JSON object of keys and values",
            path.display()
        ))
        .into()),
        Err(error) => Err(InvalidInput(format!("{} is not JSON: {error}", path.display())).into()),
    }
}

/// The release bundle: the file's keys, then each `--config` pair over them. A key
/// given twice with `--config` is a mistake, not an override; no keys at all is no
/// bundle.
fn release_config(
    file: Option<Map<String, Value>>,
    pairs: Vec<(String, String)>,
) -> Result<Option<Map<String, Value>>, InvalidInput> {
    let mut config = file.unwrap_or_default();
    let mut given = std::collections::BTreeSet::new();
    for (key, value) in pairs {
        if !given.insert(key.clone()) {
            return Err(InvalidInput(format!(
                "--config {key}=… is given more than once"
            )));
        }
        config.insert(key, Value::String(value));
    }
    Ok((!config.is_empty()).then_some(config))
}

/// A promotion for people: what, where and who; every gate condition, met or not,
/// and why; every decision; and, while it waits, how many conditions are still shut.
pub(crate) fn render(promotion: &PromotionView) -> String {
    let mut out = format!(
        "promotion {}  {} → {}  {}\n",
        promotion.id, promotion.application, promotion.environment, promotion.state
    );
    let mut facts = vec![
        ("digest", promotion.digest.clone()),
        (
            "requested",
            format!(
                "by {}{} at {}",
                promotion.requested_by,
                if promotion.auto { " (auto)" } else { "" },
                promotion.created_at
            ),
        ),
    ];
    if let Some(config) = &promotion.config {
        let revision = promotion
            .config_revision
            .as_deref()
            .map(|revision| format!(" (revision {revision})"))
            .unwrap_or_default();
        facts.push(("config", format!("{config}{revision}")));
    }
    if let Some(reason) = &promotion.override_reason {
        facts.push(("OVERRIDE", format!("gate overridden: {reason}")));
    }
    if let Some(reason) = &promotion.reason {
        facts.push(("reason", reason.clone()));
    }
    if let Some(deployment) = promotion.deployment_id {
        facts.push(("deployment", deployment.to_string()));
    }
    for (name, value) in facts {
        out.push_str(&format!("  {name:<11} {value}\n"));
    }
    if !promotion.conditions.is_empty() {
        let mut table = Table::new(&["CONDITION", "MET", "WHY"]);
        for condition in &promotion.conditions {
            let label = match &condition.subject {
                Some(subject) => format!("{} {subject}", condition.kind),
                None => condition.kind.clone(),
            };
            table.row(vec![
                label,
                mark(condition.met).to_owned(),
                condition.reason.clone(),
            ]);
        }
        out.push('\n');
        out.push_str(&table.render());
    }
    if !promotion.decisions.is_empty() {
        let mut table = Table::new(&["DECISION", "BY", "AT", "COMMENT"]);
        for decision in &promotion.decisions {
            table.row(vec![
                decision.decision.clone(),
                decision.approver.clone(),
                decision.at.clone(),
                decision.comment.clone().unwrap_or_default(),
            ]);
        }
        out.push('\n');
        out.push_str(&table.render());
    }
    if promotion.state == PromotionState::Waiting {
        let shut = promotion.conditions.iter().filter(|c| !c.met).count();
        out.push_str(&format!(
            "\nwaiting: {shut} of {} conditions not met yet\n",
            promotion.conditions.len()
        ));
    }
    out
}

/// One line per promotion, newest first; a sentence when there is none.
fn render_list(list: &PromotionList) -> String {
    if list.promotions.is_empty() {
        return "no promotions\n".to_owned();
    }
    let mut table = Table::new(&[
        "ID",
        "APPLICATION",
        "ENVIRONMENT",
        "DIGEST",
        "STATE",
        "REQUESTED BY",
        "UNMET",
        "UPDATED",
    ]);
    for promotion in &list.promotions {
        let unmet = promotion.conditions.iter().filter(|c| !c.met).count();
        table.row(vec![
            promotion.id.to_string(),
            promotion.application.clone(),
            promotion.environment.clone(),
            short_digest(&promotion.digest),
            promotion.state.to_string(),
            promotion.requested_by.clone(),
            unmet.to_string(),
            promotion.updated_at.clone(),
        ]);
    }
    let mut out = table.render();
    if let Some(next) = list.next {
        out.push_str(&format!("(more: older than {next}; raise --limit)\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use client::{ConditionView, DecisionView};

    use super::*;

    fn check_pair(pair: &str, expected: Result<(&str, &str), &str>) {
        let parsed = parse_config_pair(pair);
        match expected {
            Ok((key, value)) => assert_eq!(parsed, Ok((key.to_owned(), value.to_owned()))),
            Err(fragment) => {
                let error = parsed.expect_err(pair);
                assert!(error.contains(fragment), "{pair}: {error}");
            }
        }
    }

    #[test]
    fn a_config_pair_splits_at_its_first_equals_sign() {
        check_pair("replicas=3", Ok(("replicas", "3")));
        check_pair("image.tag=v1=final", Ok(("image.tag", "v1=final")));
        check_pair("feature.flag=", Ok(("feature.flag", "")));
        check_pair(" region =eu", Ok(("region", "eu")));
        check_pair("replicas", Err("is not KEY=VALUE"));
        check_pair("=3", Err("has no key"));
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect()
    }

    #[test]
    fn config_pairs_are_laid_over_the_file_and_none_at_all_is_no_bundle() {
        let file = serde_json::json!({ "replicas": 2, "region": "eu" });
        let file = file.as_object().cloned();
        let merged = release_config(file, pairs(&[("replicas", "3"), ("debug", "on")]))
            .expect("valid")
            .expect("a bundle");
        assert_eq!(
            Value::Object(merged),
            serde_json::json!({ "replicas": "3", "region": "eu", "debug": "on" })
        );
        assert_eq!(release_config(None, Vec::new()).expect("valid"), None);
    }

    #[test]
    fn a_config_key_given_twice_is_refused() {
        let error = release_config(None, pairs(&[("replicas", "3"), ("replicas", "4")]))
            .expect_err("a repeated key");
        assert!(error.0.contains("replicas"), "{error}");
    }

    fn check_outcome(state: &str, expected: u8) {
        assert_eq!(
            outcome(&PromotionState::from(state.to_owned())),
            expected,
            "{state}"
        );
    }

    #[test]
    fn promote_and_approve_exit_by_where_the_promotion_ended_up() {
        check_outcome("deployed", 0);
        check_outcome("approved", 0);
        check_outcome("deploying", 0);
        check_outcome("waiting", 6);
        check_outcome("rejected", 7);
        check_outcome("failed", 7);
        check_outcome("cancelled", 7);
        check_outcome("superseded", 7);
        check_outcome("paused", 1);
    }

    fn waiting_promotion() -> PromotionView {
        PromotionView {
            id: 12,
            application: "web-app".to_owned(),
            environment: "prod".to_owned(),
            digest: "sha256:0123456789abcdef".to_owned(),
            config: None,
            config_revision: None,
            state: PromotionState::Waiting,
            requested_by: "dev-dana".to_owned(),
            auto: false,
            override_reason: None,
            reason: None,
            conditions: vec![
                ConditionView {
                    kind: "order".to_owned(),
                    subject: None,
                    met: true,
                    reason: "deployed to staging".to_owned(),
                },
                ConditionView {
                    kind: "check".to_owned(),
                    subject: Some("trivy".to_owned()),
                    met: false,
                    reason: "1 high finding, at most 0 allowed".to_owned(),
                },
            ],
            version: 3,
            deployment_id: None,
            decisions: vec![DecisionView {
                approver: "staff-sam".to_owned(),
                decision: "approve".to_owned(),
                comment: Some("fine by me".to_owned()),
                at: "2026-01-01T10:00:00Z".to_owned(),
            }],
            created_at: "2026-01-01T09:00:00Z".to_owned(),
            updated_at: "2026-01-01T10:00:00Z".to_owned(),
        }
    }

    #[test]
    fn a_promotion_shows_every_condition_met_or_not_with_why() {
        assert_eq!(
            render(&waiting_promotion()),
            "promotion 12  web-app → prod  waiting\n\
             \x20 digest      sha256:0123456789abcdef\n\
             \x20 requested   by dev-dana at 2026-01-01T09:00:00Z\n\
             \n\
             CONDITION    MET  WHY\n\
             order        ✓    deployed to staging\n\
             check trivy  ✗    1 high finding, at most 0 allowed\n\
             \n\
             DECISION  BY         AT                    COMMENT\n\
             approve   staff-sam  2026-01-01T10:00:00Z  fine by me\n\
             \n\
             waiting: 1 of 2 conditions not met yet\n"
        );
    }

    #[test]
    fn a_list_of_promotions_counts_the_unmet_conditions_of_each() {
        let list = PromotionList {
            promotions: vec![waiting_promotion()],
            next: Some(12),
        };
        assert_eq!(
            render_list(&list),
            "ID  APPLICATION  ENVIRONMENT  DIGEST        STATE    REQUESTED BY  UNMET  UPDATED\n\
             12  web-app      prod         0123456789ab  waiting  dev-dana      1      2026-01-01T10:00:00Z\n\
             (more: older than 12; raise --limit)\n"
        );
        assert_eq!(
            render_list(&PromotionList {
                promotions: Vec::new(),
                next: None
            }),
            "no promotions\n"
        );
    }
}
