//! An artifact's page (`/artifacts/DIGEST`): for each application that knows the
//! digest, its provenance (commit with a link to the source, branch, CI run,
//! builder), its checks with their findings, where it runs now and a timeline of where
//! it ran, the promotions with every approval and rejection, its deployments, its
//! signed attestations (each verified when the page is drawn), the manifests that
//! refer to it, and the command that pulls it by digest: its chain of custody.

use axum::extract::{Path, Query, State};
use domain::Digest;
use domain::pipeline::Severity;
use engine::{ApplicationStatus, Custody};
use maud::{Markup, html};
use serde::Deserialize;

use super::board::require_read;
use super::history::duration;
use super::layout::{external_link, page, short_digest, shortened, time};
use super::{PageError, Viewer};
use crate::AppState;

#[derive(Debug, Default, Deserialize)]
pub(crate) struct ArtifactParams {
    /// Only this application's record of the digest.
    app: Option<String>,
}

pub(crate) async fn artifact(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(digest): Path<String>,
    params: Result<Query<ArtifactParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Markup, PageError> {
    let Query(params) = params.map_err(|r| PageError::bad_request(r.body_text()))?;
    require_read(&state, &viewer)?;
    let digest = Digest::parse(&digest)
        .map_err(|e| PageError::bad_request(format!("digest `{digest}`: {e}")))?;
    let applications = match params.app {
        Some(app) => vec![app],
        None => state.engine.applications_knowing(&digest).await?,
    };
    if applications.is_empty() {
        return Err(PageError::not_found(format!(
            "No application built, promoted or deployed {digest}."
        )));
    }
    let mut sections = Vec::with_capacity(applications.len());
    for app in &applications {
        let custody = state.engine.custody(app, &digest).await?;
        let status = state.engine.application_status(app).await?;
        sections.push(section(state.engine.registry_host(), &custody, &status));
    }
    Ok(page(
        &format!("Artifact {}", shortened(&digest.to_string())),
        Some(&viewer),
        html! {
            h1 { "Artifact " (short_digest(&digest.to_string())) }
            p { code.wrap { (digest) } }
            @for section in &sections { (section) }
        },
    ))
}

/// One application's record of the artifact.
fn section(host: &str, custody: &Custody, status: &ApplicationStatus) -> Markup {
    let record = &custody.record;
    let app = &record.application;
    let runs_in: Vec<&str> = status
        .environments
        .iter()
        .filter(|e| {
            e.current
                .as_ref()
                .is_some_and(|c| c.deployment.digest == record.digest)
        })
        .map(|e| e.name.as_str())
        .collect();
    let mut timeline: Vec<_> = record.deployments.iter().collect();
    timeline.reverse();
    let pull = format!("docker pull {host}/{}@{}", record.repository, record.digest);
    let id = format!("app-{app}");
    html! {
        section aria-labelledby=(id) {
            h2 id=(id) { "In " a href=(format!("/apps/{app}")) { (app) } }
            h3 { "Pull it by digest" }
            pre.log aria-label="Pull command" tabindex="0" { code { (pull) } }
            h3 { "Provenance" }
            @match &record.build {
                None => p { "No build was reported for it." },
                Some(build) => {
                    @let provenance = &build.provenance;
                    dl.facts {
                        @if let Some(commit) = &provenance.commit {
                            dt { "Commit" }
                            dd { @match &provenance.source {
                                Some(source) => (external_link(&format!("{}/commit/{commit}", source.trim_end_matches('/')), commit)),
                                None => code { (commit) },
                            } }
                        }
                        @if let Some(source) = &provenance.source { dt { "Source" } dd { (external_link(source, source)) } }
                        @if let Some(branch) = &provenance.branch { dt { "Branch" } dd { code { (branch) } } }
                        @if let Some(tag) = &provenance.tag { dt { "Tag" } dd { code { (tag) } } }
                        @if provenance.run_url.is_some() || provenance.run_id.is_some() {
                            dt { "CI run" }
                            dd { @let text = provenance.run_id.as_deref().or(provenance.run_url.as_deref()).unwrap_or("");
                                 @match &provenance.run_url { Some(url) => (external_link(url, text)), None => (text) } }
                        }
                        dt { "Built by" } dd { (build.builder) }
                        @if let Some(by) = &provenance.triggered_by { dt { "Triggered by" } dd { (by) } }
                        @if let Some(author) = &provenance.author { dt { "Author" } dd { (author) } }
                        @if let Some(at) = provenance.committed_at { dt { "Committed" } dd { (time(at)) } }
                        dt { "Reported" } dd { (time(build.notified_at)) }
                    }
                }
            }
            h3 { "Checks" }
            @if record.checks.is_empty() { p { "No check was reported." } } @else {
                table {
                    caption { "Check reports, oldest first" }
                    thead { tr { th scope="col" { "Check" } th scope="col" { "Result" } th scope="col" { "Findings" }
                                 th scope="col" { "Reported by" } th scope="col" { "When" } } }
                    tbody { @for check in &record.checks { tr {
                        td { @match &check.url { Some(url) => (external_link(url, &check.name)), None => (check.name) } }
                        td { @if check.passed { span.met { "passed" } } @else { span.unmet { "failed" } } }
                        td { @match &check.findings {
                            None => "—",
                            Some(findings) => {
                                @for (i, severity) in Severity::ALL.iter().enumerate() {
                                    @if i > 0 { ", " }
                                    (findings.get(severity).copied().unwrap_or(0)) " " (severity.as_str())
                                }
                            }
                        } }
                        td { (check.reported_by) }
                        td { (time(check.reported_at)) }
                    } } }
                }
            }
            h3 { "Where it runs" }
            @if runs_in.is_empty() { p { "It runs in no environment now." } } @else {
                p { "Runs now in " @for (i, env) in runs_in.iter().enumerate() { @if i > 0 { ", " } a href=(format!("/apps/{app}/environments/{env}")) { (env) } } "." }
            }
            @if !timeline.is_empty() {
                ol.timeline aria-label="Deployments of this artifact, oldest first" {
                    @for summary in &timeline {
                        @let deployment = &summary.deployment;
                        li {
                            (time(deployment.started_at)) ": "
                            strong { (deployment.environment) } " — " (deployment.reason.as_str()) " by " (deployment.requested_by) ", "
                            span class=(format!("state state-{}", deployment.state.as_str())) { (deployment.state.as_str()) }
                            @if let Some(finished) = deployment.finished_at { " in " (duration(finished - deployment.started_at)) }
                            @if let Some(message) = &deployment.message { " (" (message) ")" }
                        }
                    }
                }
            }
            h3 { "Promotions and approvals" }
            @if record.promotions.is_empty() { p { "It was never promoted." } } @else {
                table {
                    caption { "Promotions of this artifact, newest first" }
                    thead { tr { th scope="col" { "Promotion" } th scope="col" { "Into" } th scope="col" { "State" }
                                 th scope="col" { "Requested" } th scope="col" { "Decisions" } } }
                    tbody { @for promotion in &record.promotions { tr {
                        td { a href=(format!("/promotions/{}", promotion.id)) { (promotion.id) } }
                        td { (promotion.environment) }
                        td { span class=(format!("state state-{}", promotion.state.as_str())) { (promotion.state.as_str()) }
                             @if let Some(reason) = &promotion.override_reason { br; "gate overridden: " (reason) } }
                        td { (promotion.requested_by) @if promotion.auto { " (automatic)" } br; (time(promotion.created_at)) }
                        td { @if promotion.decisions.is_empty() { "—" }
                             @for decision in &promotion.decisions {
                                 (decision.approver) " " (decision.decision) "d " (time(decision.at))
                                 @if let Some(comment) = &decision.comment { " (“" (comment) "”)" } br;
                             } }
                    } } }
                }
            }
            h3 { "Attestations" }
            @if custody.attestations.is_empty() { p { "No deployment of it was attested." } } @else {
                table {
                    caption { "Signed attestations of its deployments, newest first, verified now with the keys Gantry lists" }
                    thead { tr { th scope="col" { "Environment" } th scope="col" { "Deployment" } th scope="col" { "Predicate" }
                                 th scope="col" { "Attestation" } th scope="col" { "Verification" } th scope="col" { "Signed" } } }
                    tbody { @for attestation in &custody.attestations { tr {
                        td { (attestation.environment) }
                        td { (attestation.deployment_id) }
                        td { code.wrap { (attestation.predicate_type) } }
                        td { (short_digest(&attestation.manifest_digest))
                             @if !attestation.stored { br; "not stored beside the image yet" } }
                        td { @if attestation.verified { span.met { "verified" } } @else { span.unmet { "does not verify" } }
                             br; (attestation.verification) }
                        td { (time(attestation.created_at)) }
                    } } }
                }
                p { "Check them anywhere the image was copied, without Gantry: "
                    code { "gantry verify " (host) "/" (record.repository) "@" (record.digest) " --env ENV --key gantry.pub" }
                    " (" code { "gantry keys export" } " writes the keys)." }
            }
            h3 { "Referrers" }
            @if record.referrers.is_empty() { p { "No manifest in " code { (record.repository) } " refers to it." } } @else {
                table {
                    caption { "Manifests whose subject is this artifact" }
                    thead { tr { th scope="col" { "Digest" } th scope="col" { "Artifact type" } th scope="col" { "Size" } } }
                    tbody { @for referrer in &record.referrers { tr {
                        td { (short_digest(&referrer.digest.to_string())) }
                        td { (referrer.artifact_type.as_deref().unwrap_or(&referrer.media_type)) }
                        td { (referrer.size) " bytes" }
                    } } }
                }
            }
        }
    }
}
