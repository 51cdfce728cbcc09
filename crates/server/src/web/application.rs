//! An application's page (`/apps/APP`): its pipeline's stages left to right with what
//! each environment runs, the pending promotions with every gate condition and the
//! decisions so far, the recent deployments, and the forms a person may use here:
//! promote what the previous stage runs, approve, reject, cancel, roll back (after a
//! page that shows from → to) and hold or release. A form the person may not use is
//! shown disabled with the permission it needs.

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use domain::Digest;
use engine::{Actor, EnvironmentStatus, Permission, PromoteRequest, RollbackRequest};
use maud::{Markup, html};
use serde::Deserialize;
use store::Promotion;

use super::board::{require_read, waiting_on};
use super::history::duration;
use super::layout::{age, notice, page, short_commit, short_digest, short_hex, time};
use super::{PageError, Viewer, WebForm};
use crate::AppState;

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Done {
    pub(crate) done: Option<String>,
}

/// How many recent deployments the page lists.
const RECENT_DEPLOYMENTS: i64 = 20;
/// How many recent builds a promote form offers.
const RECENT_BUILDS: i64 = 20;

/// What a stage's rendering needs beyond its environment.
struct Stage<'a> {
    /// The stage before it, whose version its quick promote button offers.
    previous: Option<&'a EnvironmentStatus>,
    /// The builds a person may pick from to promote.
    builds: &'a [store::Build],
    csrf: &'a str,
    now: i64,
}

pub(crate) async fn application(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(app): Path<String>,
    Query(done): Query<Done>,
) -> Result<Markup, PageError> {
    require_read(&state, &viewer)?;
    let status = state.engine.application_status(&app).await?;
    let history = state
        .engine
        .history(&app, None, None, RECENT_DEPLOYMENTS)
        .await?;
    let now = store::now_millis();
    let csrf = &viewer.session.csrf_token;
    let pending: Vec<Promotion> = status
        .environments
        .iter()
        .flat_map(|environment| environment.pending.iter().cloned())
        .collect();
    let refusals = state
        .engine
        .approval_refusals(&viewer.actor, &app, &pending)
        .await?;
    let pending_blocks: Vec<Markup> = pending
        .iter()
        .zip(&refusals)
        .map(|(promotion, refusal)| pending_promotion(&viewer, promotion, refusal.as_deref(), now))
        .collect();
    let builds = state.engine.recent_builds(&app, RECENT_BUILDS).await?;
    let mut previous: Option<&EnvironmentStatus> = None;
    let mut stages = Vec::new();
    for environment in &status.environments {
        stages.push(stage(
            &viewer.actor,
            &app,
            environment,
            Stage {
                previous,
                builds: &builds,
                csrf,
                now,
            },
        ));
        previous = Some(environment);
    }
    Ok(page(
        &app,
        Some(&viewer),
        html! {
            h1 { "Application " (app) }
            (notice(done.done.as_deref()))
            p.muted { (status.app_type) " · repository " code { (status.repository) } " · pipeline " (status.pipeline) }
            h2 { "Pipeline" }
            ol.stages aria-label="Stages in order" { @for stage in &stages { (stage) } }
            h2 { "Pending promotions" }
            @if pending_blocks.is_empty() { p { "None." } }
            @for block in &pending_blocks { (block) }
            h2 { "Recent deployments" }
            @if history.items.is_empty() { p { "None yet." } } @else {
                table {
                    caption { "The last " (RECENT_DEPLOYMENTS) " deployments, newest first" }
                    thead { tr {
                        th scope="col" { "Environment" } th scope="col" { "Digest" } th scope="col" { "Commit" }
                        th scope="col" { "Reason" } th scope="col" { "Outcome" } th scope="col" { "By" }
                        th scope="col" { "Started" } th scope="col" { "Duration" }
                    } }
                    tbody {
                        @for summary in &history.items {
                            @let deployment = &summary.deployment;
                            tr {
                                td { a href=(format!("/apps/{app}/environments/{}", deployment.environment)) { (deployment.environment) } }
                                td { a href=(format!("/artifacts/{}", deployment.digest)) { (short_digest(&deployment.digest)) } }
                                td { @if let Some(commit) = &summary.commit { code { (short_commit(commit)) } } }
                                td { (deployment.reason.as_str()) }
                                td { span class=(format!("state state-{}", deployment.state.as_str())) { (deployment.state.as_str()) }
                                     @if let Some(message) = &deployment.message { br; span.muted { (message) } } }
                                td { (deployment.requested_by) }
                                td { (time(deployment.started_at)) }
                                td { @if let Some(finished) = deployment.finished_at { (duration(finished - deployment.started_at)) } }
                            }
                        }
                    }
                }
            }
        },
    ))
}

/// One stage: what runs there, what is under way, its hold and drift, and its forms.
fn stage(actor: &Actor, app: &str, environment: &EnvironmentStatus, context: Stage<'_>) -> Markup {
    let Stage {
        previous,
        builds,
        csrf,
        now,
    } = context;
    let env = &environment.name;
    let may_promote = actor.require(Permission::Promote {
        application: app,
        environment: env,
    });
    let may_rollback = actor.require(Permission::Rollback {
        application: app,
        environment: env,
    });
    let may_hold = actor.require(Permission::Hold {
        application: app,
        environment: env,
    });
    let candidate = previous
        .and_then(|previous| previous.current.as_ref())
        .filter(|candidate| {
            environment
                .current
                .as_ref()
                .is_none_or(|current| current.deployment.digest != candidate.deployment.digest)
        });
    html! {
        li {
            h3 { a href=(format!("/apps/{app}/environments/{env}")) { (env) } @if environment.auto { " " span.muted { "(automatic)" } } }
            p.muted { "deploys through " (environment.target) }
            @match &environment.current {
                Some(current) => p {
                    span.state.state-deployed { "runs" } " " a href=(format!("/artifacts/{}", current.deployment.digest)) { (short_digest(&current.deployment.digest)) }
                    @if let Some(commit) = &current.commit { " commit " code { (short_commit(commit)) } }
                    br; span.muted { "since " (age(current.deployment.finished_at.unwrap_or(current.deployment.started_at), now)) }
                },
                None => p.muted { "nothing deployed yet" },
            }
            @if let Some(failed) = &environment.failed {
                p { span.state.state-failed { "failed" } " " (short_digest(&failed.deployment.digest)) " "
                    span.muted { (age(failed.deployment.finished_at.unwrap_or(failed.deployment.started_at), now)) }
                    @if let Some(message) = &failed.deployment.message { br; span.muted { (message) } } }
            }
            @if let Some(previous) = &environment.previous {
                p.muted { "before: " (short_digest(&previous.deployment.digest))
                    @if let Some(commit) = &previous.commit { " commit " code { (short_commit(commit)) } } }
            }
            @if let Some(deploying) = &environment.deploying {
                p { span.state.state-deploying { "deploying" } " " (short_digest(&deploying.deployment.digest)) }
            }
            @if let Some(quarantine) = &environment.quarantined {
                p { span.badge.badge-quarantined { "quarantined" } " by " (quarantine.by) ": " (quarantine.reason) " — what runs here may no longer be promoted, rolled back onto or admitted" }
            }
            @if let Some(hold) = &environment.hold {
                p { span.badge.badge-hold { "held" } " by " (hold.by) ": " (hold.reason) }
            }
            @if let Some(since) = environment.drift_since {
                p { span.badge.badge-drift { "drift" } " since " (time(since))
                    @if let Some(observed) = &environment.observed { ": runs " (short_digest(&observed.digest)) } }
            }
            @if let Some(candidate) = candidate {
                form method="post" action=(format!("/apps/{app}/promote")) {
                    input type="hidden" name="csrf" value=(csrf);
                    input type="hidden" name="environment" value=(env);
                    input type="hidden" name="digest" value=(candidate.deployment.digest);
                    (button("Promote " , &candidate.deployment.digest, may_promote.as_ref().err(), ""))
                }
            }
            @if !builds.is_empty() {
                form method="post" action=(format!("/apps/{app}/promote")) {
                    input type="hidden" name="csrf" value=(csrf);
                    input type="hidden" name="environment" value=(env);
                    label for=(format!("pick-{env}")) { "A recent build to promote into " (env) }
                    select id=(format!("pick-{env}")) name="digest" disabled[may_promote.is_err()] {
                        @for build in builds {
                            option value=(build.digest) { (build_label(build, now)) }
                        }
                    }
                    " "
                    (button("Promote the build", "", may_promote.as_ref().err(), "secondary"))
                }
            }
            @if environment.current.is_some() {
                form method="get" action=(format!("/apps/{app}/environments/{env}/rollback")) {
                    (button("Roll back…", "", may_rollback.as_ref().err(), "secondary"))
                }
            }
            @if environment.hold.is_some() {
                form method="post" action=(format!("/apps/{app}/environments/{env}/release")) {
                    input type="hidden" name="csrf" value=(csrf);
                    (button("Release the hold", "", may_hold.as_ref().err(), "secondary"))
                }
            } @else {
                form method="post" action=(format!("/apps/{app}/environments/{env}/hold")) {
                    input type="hidden" name="csrf" value=(csrf);
                    label for=(format!("hold-{env}")) { "Reason to hold " (env) }
                    input type="text" id=(format!("hold-{env}")) name="reason" required disabled[may_hold.is_err()];
                    " "
                    (button("Hold", "", may_hold.as_ref().err(), "secondary"))
                }
            }
        }
    }
}

/// A build as a promote form offers it: its tag or commit, short digest and age.
fn build_label(build: &store::Build, now: i64) -> String {
    let short = short_hex(&build.digest);
    let name = build
        .provenance
        .tag
        .clone()
        .or_else(|| build.provenance.commit.as_deref().map(short_commit))
        .unwrap_or_else(|| "untagged".to_owned());
    format!("{name} ({short}), {}", age(build.notified_at, now))
}

/// A submit button, disabled with the refusal (naming the permission) when the
/// person may not use it.
pub(crate) fn button(
    label: &str,
    digest: &str,
    refusal: Option<&engine::EngineError>,
    class: &str,
) -> Markup {
    let text = if digest.is_empty() {
        label.to_owned()
    } else {
        format!("{label}{}", short_hex(digest))
    };
    html! {
        @match refusal {
            None => button type="submit" class=(class) { (text) },
            Some(refusal) => {
                button type="submit" class=(class) disabled { (text) }
                " " span.muted { (refusal.to_string()) }
            }
        }
    }
}

/// A pending promotion: its conditions, its decisions, and the decision forms.
pub(crate) fn pending_promotion(
    viewer: &Viewer,
    promotion: &Promotion,
    approval_refusal: Option<&str>,
    now: i64,
) -> Markup {
    let csrf = &viewer.session.csrf_token;
    let may_cancel = viewer.actor.require(Permission::Cancel {
        id: promotion.id,
        requester: &promotion.requested_by,
    });
    html! {
        section aria-labelledby=(format!("promotion-{}", promotion.id)) {
            h3 id=(format!("promotion-{}", promotion.id)) {
                a href=(format!("/promotions/{}", promotion.id)) { "Promotion " (promotion.id) }
                " into " (promotion.environment) ": " (short_digest(&promotion.digest))
            }
            p {
                span class=(format!("state state-{}", promotion.state.as_str())) { (promotion.state.as_str()) }
                @if promotion.state == domain::promotion::PromotionState::Waiting { " on " (waiting_on(promotion)) }
                " · requested by " (promotion.requested_by) " " (age(promotion.created_at, now))
            }
            (conditions(promotion))
            @if !promotion.decisions.is_empty() {
                p { "Decisions: "
                    @for (i, decision) in promotion.decisions.iter().enumerate() {
                        @if i > 0 { "; " }
                        (decision.approver) " " (decision.decision) "d " (time(decision.at))
                        @if let Some(comment) = &decision.comment { " (“" (comment) "”)" }
                    }
                }
            }
            @if promotion.state == domain::promotion::PromotionState::Waiting {
                @match approval_refusal {
                    None => {
                        form method="post" action=(format!("/promotions/{}/approve", promotion.id)) {
                            input type="hidden" name="csrf" value=(csrf);
                            label for=(format!("approve-comment-{}", promotion.id)) { "Comment (optional)" }
                            input type="text" id=(format!("approve-comment-{}", promotion.id)) name="comment";
                            " " button type="submit" { "Approve promotion " (promotion.id) }
                        }
                        form method="post" action=(format!("/promotions/{}/reject", promotion.id)) {
                            input type="hidden" name="csrf" value=(csrf);
                            label for=(format!("reject-reason-{}", promotion.id)) { "Reason to reject (required)" }
                            input type="text" id=(format!("reject-reason-{}", promotion.id)) name="reason" required;
                            " " button.danger type="submit" { "Reject promotion " (promotion.id) }
                        }
                    }
                    Some(why) => p.muted { "You cannot decide on this promotion: " (why) },
                }
            }
            @if may_cancel.is_ok() {
                form method="post" action=(format!("/promotions/{}/cancel", promotion.id)) {
                    input type="hidden" name="csrf" value=(csrf);
                    button.secondary type="submit" { "Cancel promotion " (promotion.id) }
                }
            }
        }
    }
}

/// A promotion's gate conditions, met or not, each with its reason.
pub(crate) fn conditions(promotion: &Promotion) -> Markup {
    html! {
        @if !promotion.conditions.is_empty() {
            ul.conditions aria-label="Gate conditions" {
                @for condition in &promotion.conditions {
                    li {
                        @if condition.met { span.met { "met" } } @else { span.unmet { "not met" } }
                        ": " strong { (condition.kind) @if let Some(subject) = &condition.subject { " " (subject) } }
                        " — " (condition.reason)
                    }
                }
            }
        }
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct PromoteForm {
    #[serde(default)]
    csrf: String,
    environment: String,
    digest: String,
}

pub(crate) async fn promote(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(app): Path<String>,
    WebForm(form): WebForm<PromoteForm>,
) -> Result<Response, PageError> {
    viewer.check_csrf(&form.csrf)?;
    let digest = Digest::parse(&form.digest)
        .map_err(|e| PageError::bad_request(format!("digest `{}`: {e}", form.digest)))?;
    let requested = state
        .engine
        .promote(
            &viewer.actor,
            &PromoteRequest {
                application: &app,
                environment: &form.environment,
                digest: &digest,
                config: None,
                override_reason: None,
                idempotency_key: None,
                redeploy: false,
            },
        )
        .await?;
    Ok(Redirect::to(&format!(
        "/promotions/{}?done=promoted",
        requested.promotion.id
    ))
    .into_response())
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RollbackParams {
    to: Option<String>,
}

/// The confirmation before a rollback: from what the environment runs to the digest
/// it ran before (or the one chosen), with each side's commit and config.
pub(crate) async fn rollback_confirm(
    State(state): State<AppState>,
    viewer: Viewer,
    Path((app, env)): Path<(String, String)>,
    Query(params): Query<RollbackParams>,
) -> Result<Markup, PageError> {
    require_read(&state, &viewer)?;
    viewer.actor.require(Permission::Rollback {
        application: &app,
        environment: &env,
    })?;
    let status = state.engine.application_status(&app).await?;
    let environment = status
        .environments
        .iter()
        .find(|e| e.name == env)
        .ok_or_else(|| PageError::not_found(format!("{app} has no environment {env}")))?;
    let current = environment.current.as_ref().ok_or_else(|| {
        PageError::new(
            http::StatusCode::CONFLICT,
            format!("{env} runs nothing to roll back from"),
        )
    })?;
    let history = state.engine.history(&app, Some(&env), None, 50).await?;
    let candidates: Vec<_> = history
        .items
        .iter()
        .filter(|summary| {
            summary.deployment.state == domain::promotion::DeploymentState::Deployed
                && summary.deployment.digest != current.deployment.digest
        })
        .collect();
    let chosen = match &params.to {
        Some(to) => candidates
            .iter()
            .find(|c| &c.deployment.digest == to)
            .copied(),
        None => candidates.first().copied(),
    };
    let csrf = &viewer.session.csrf_token;
    Ok(page(
        &format!("Roll back {env}"),
        Some(&viewer),
        html! {
            h1 { "Roll back " (app) " in " (env) }
            @match chosen {
                None => p role="alert" { "There is no earlier successful deployment of " (env) " to roll back to." },
                Some(to) => {
                    table {
                        caption { "What the rollback changes" }
                        thead { tr { th scope="col" { "" } th scope="col" { "Digest" } th scope="col" { "Commit" } th scope="col" { "Config" } th scope="col" { "Deployed" } } }
                        tbody {
                            tr { th scope="row" { "From (runs now)" }
                                td { code { (current.deployment.digest) } }
                                td { @if let Some(c) = &current.commit { code { (c) } } }
                                td { @if let Some(c) = &current.deployment.config_revision { code { (c) } } @else { "—" } }
                                td { (time(current.deployment.started_at)) } }
                            tr { th scope="row" { "To" }
                                td { code { (to.deployment.digest) } }
                                td { @if let Some(c) = &to.commit { code { (c) } } }
                                td { @if let Some(c) = &to.deployment.config_revision { code { (c) } } @else { "—" } }
                                td { (time(to.deployment.started_at)) } }
                        }
                    }
                    form method="post" action=(format!("/apps/{app}/environments/{env}/rollback")) {
                        input type="hidden" name="csrf" value=(csrf);
                        input type="hidden" name="from" value=(current.deployment.digest);
                        input type="hidden" name="to" value=(to.deployment.digest);
                        label for="rollback-reason" { "Reason (optional)" }
                        input type="text" id="rollback-reason" name="reason";
                        p { button.danger type="submit" { "Roll back " (env) " now" } " " a href=(format!("/apps/{app}")) { "Cancel" } }
                    }
                    @if candidates.len() > 1 {
                        h2 { "Or choose another earlier deployment" }
                        ul {
                            @for candidate in &candidates {
                                li { a href=(format!("/apps/{app}/environments/{env}/rollback?to={}", candidate.deployment.digest)) {
                                    (short_digest(&candidate.deployment.digest)) } " deployed " (time(candidate.deployment.started_at)) }
                            }
                        }
                    }
                }
            }
        },
    ))
}

#[derive(Debug, Deserialize)]
pub(crate) struct RollbackForm {
    #[serde(default)]
    csrf: String,
    from: String,
    to: String,
    reason: Option<String>,
}

pub(crate) async fn rollback(
    State(state): State<AppState>,
    viewer: Viewer,
    Path((app, env)): Path<(String, String)>,
    WebForm(form): WebForm<RollbackForm>,
) -> Result<Response, PageError> {
    viewer.check_csrf(&form.csrf)?;
    let parse = |text: &str| {
        Digest::parse(text).map_err(|e| PageError::bad_request(format!("digest `{text}`: {e}")))
    };
    let (from, to) = (parse(&form.from)?, parse(&form.to)?);
    let reason = form
        .reason
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty());
    state
        .engine
        .rollback(
            &viewer.actor,
            &RollbackRequest {
                application: &app,
                environment: &env,
                to: Some(&to),
                from: Some(&from),
                reason,
                idempotency_key: None,
            },
        )
        .await?;
    Ok(Redirect::to(&format!("/apps/{app}?done=rolled-back")).into_response())
}

#[derive(Debug, Deserialize)]
pub(crate) struct HoldForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
}

pub(crate) async fn hold(
    State(state): State<AppState>,
    viewer: Viewer,
    Path((app, env)): Path<(String, String)>,
    WebForm(form): WebForm<HoldForm>,
) -> Result<Response, PageError> {
    viewer.check_csrf(&form.csrf)?;
    state
        .engine
        .hold(&viewer.actor, &app, &env, form.reason.trim())
        .await?;
    Ok(Redirect::to(&format!("/apps/{app}?done=held")).into_response())
}

pub(crate) async fn release(
    State(state): State<AppState>,
    viewer: Viewer,
    Path((app, env)): Path<(String, String)>,
    WebForm(form): WebForm<HoldForm>,
) -> Result<Response, PageError> {
    viewer.check_csrf(&form.csrf)?;
    state.engine.release(&viewer.actor, &app, &env).await?;
    Ok(Redirect::to(&format!("/apps/{app}?done=released")).into_response())
}
