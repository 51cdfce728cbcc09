//! Administration (admins): people and CI identities with their roles and tokens —
//! create a user, issue and revoke tokens, set a password or make an invitation link
//! the person opens to choose their own — and the declared resources (pipelines,
//! applications, trust policies) read-only, with the dry-run diff of a file before it
//! is applied. Each action is the one the API takes, with the same checks and audit
//! entries; a token's secret and an invitation link are shown once, on the answer to
//! the form that made them.

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use domain::{Action, ResourceKind};
use engine::{ApplyError, PlannedAction};
use http::{HeaderMap, StatusCode};
use maud::{Markup, html};
use serde::Deserialize;
use store::{NewUser, RoleGrant};

use super::application::Done;
use super::board::require;
use super::layout::{notice, page, time};
use super::{PageError, Viewer, WebForm};
use crate::AppState;

/// Users a page lists.
const USERS_PAGE: i64 = 100;
/// Resources of one kind the page lists.
const RESOURCES_PAGE: i64 = 200;

#[derive(Debug, Default, Deserialize)]
pub(crate) struct After {
    after: Option<String>,
}

pub(crate) async fn users(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(params): Query<After>,
) -> Result<Markup, PageError> {
    require(&state, &viewer, Action::ManageUsers)?;
    let users = state
        .store
        .users()
        .list(params.after.as_deref(), USERS_PAGE + 1)
        .await?;
    let engine::Page { items, next } =
        engine::Page::from_one_more(users, USERS_PAGE, |user| user.name.clone());
    let csrf = &viewer.session.csrf_token;
    Ok(page(
        "Users",
        Some(&viewer),
        html! {
            h1 { "Users" }
            (admin_nav())
            table {
                caption { "People and CI identities, by name" }
                thead { tr { th scope="col" { "Name" } th scope="col" { "Kind" } th scope="col" { "Roles" } } }
                tbody { @for user in &items { tr {
                    th scope="row" { a href=(format!("/admin/users/{}", user.name)) { (user.name) } }
                    td { @if user.admin { "admin" } @else if user.ci { "CI identity" } @else { "person" } }
                    td { @if user.roles.is_empty() { "—" } @else {
                        @for (i, role) in user.roles.iter().enumerate() { @if i > 0 { ", " } code { (role.to_string()) } } } }
                } } }
            }
            @if let Some(after) = next { p.pager { a href=(format!("/admin/users?after={after}")) rel="next" { "Next page" } } }
            h2 { "Create a user" }
            form method="post" action="/admin/users" {
                input type="hidden" name="csrf" value=(csrf);
                label for="new-name" { "Name" }
                input type="text" id="new-name" name="name" required autocapitalize="none" spellcheck="false";
                label for="new-roles" { "Roles" }
                input type="text" id="new-roles" name="roles" aria-describedby="roles-help";
                p.muted id="roles-help" { "Separated by spaces or commas: " code { "staff" } " (everywhere), "
                    code { "client@web-app" } " (one application), " code { "developer@web-app/staging" } " (one environment)." }
                fieldset {
                    legend { "Kind" }
                    label.choice { input type="radio" name="kind" value="person" checked; " A person (signs in to this UI)" }
                    label.choice { input type="radio" name="kind" value="admin"; " An administrator" }
                    label.choice { input type="radio" name="kind" value="ci"; " A CI identity (API only, never signs in)" }
                }
                p { button type="submit" { "Create the user" } }
            }
        },
    ))
}

fn admin_nav() -> Markup {
    html! {
        nav aria-label="Administration" {
            ul.inline-list {
                li { a href="/admin/users" { "Users" } }
                li { a href="/admin/resources" { "Declared resources" } }
            }
        }
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct NewUserForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    roles: String,
    #[serde(default)]
    kind: String,
}

pub(crate) async fn create_user(
    State(state): State<AppState>,
    viewer: Viewer,
    WebForm(form): WebForm<NewUserForm>,
) -> Result<Response, PageError> {
    viewer.check_csrf(&form.csrf)?;
    require(&state, &viewer, Action::ManageUsers)?;
    let name = form.name.trim();
    domain::check_user_name(name).map_err(PageError::bad_request)?;
    let (admin, ci) = match form.kind.as_str() {
        "person" | "" => (false, false),
        "admin" => (true, false),
        "ci" => (false, true),
        other => {
            return Err(PageError::bad_request(format!(
                "kind must be person, admin or ci, not `{other}`"
            )));
        }
    };
    let roles = RoleGrant::parse_all(form.roles.split([',', ' ']).filter(|text| !text.is_empty()))
        .map_err(PageError::bad_request)?;
    let created = state
        .store
        .users()
        .create_with_roles(
            &NewUser {
                name,
                admin,
                ci,
                roles: &roles,
            },
            &viewer.actor.name,
        )
        .await?;
    if !created {
        return Err(PageError::new(
            StatusCode::CONFLICT,
            format!("a user named {name} exists"),
        ));
    }
    Ok(Redirect::to(&format!("/admin/users/{name}?done=created")).into_response())
}

pub(crate) async fn user(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(name): Path<String>,
    Query(done): Query<Done>,
) -> Result<Markup, PageError> {
    require(&state, &viewer, Action::ManageUsers)?;
    let user_page = user_page(&state, &viewer, &name, done.done.as_deref(), None).await?;
    Ok(user_page)
}

/// What a form on a user's page made and shows once: a token's secret or an
/// invitation link.
enum Made {
    Token { id: String, secret: String },
    Invitation { link: String, expires_at: i64 },
}

async fn user_page(
    state: &AppState,
    viewer: &Viewer,
    name: &str,
    done: Option<&str>,
    made: Option<Made>,
) -> Result<Markup, PageError> {
    let user = state
        .store
        .users()
        .get(name)
        .await?
        .ok_or_else(|| PageError::not_found(format!("no user named {name}")))?;
    let has_password = state
        .store
        .sessions()
        .password(name)
        .await?
        .is_some_and(|record| record.password_hash.is_some());
    let tokens = state.store.users().tokens(name).await?;
    let now = store::now_millis();
    let csrf = &viewer.session.csrf_token;
    let name = &user.name;
    Ok(page(
        &format!("User {name}"),
        Some(viewer),
        html! {
            h1 { "User " (name) }
            (admin_nav())
            (notice(done))
            @match &made {
                Some(Made::Token { id, secret }) => div.notice role="status" {
                    p { "Token " code { (id) } " issued. Copy it now: Gantry keeps only its hash and shows it this once." }
                    p { code.wrap { (secret) } }
                },
                Some(Made::Invitation { link, expires_at }) => div.notice role="status" {
                    p { "Invitation made. Send this link to " (name) " by a channel you trust; it works once, until " (time(*expires_at)) "." }
                    p { code.wrap { (link) } }
                    @if state.registry.config().external_url.is_none() {
                        p { "Gantry's " code { "external_url" } " is not set, so the link names the address your browser used. Set it to the address people reach Gantry at (with https:// behind TLS)." }
                    }
                },
                None => {}
            }
            dl.facts {
                dt { "Kind" } dd { @if user.admin { "administrator" } @else if user.ci { "CI identity" } @else { "person" } }
                dt { "Roles" } dd { @if user.roles.is_empty() { "none" } @else {
                    @for (i, role) in user.roles.iter().enumerate() { @if i > 0 { ", " } code { (role.to_string()) } } } }
                @if !user.ci { dt { "Password" } dd { @if has_password { "set" } @else { "not set: the person cannot sign in with a password yet" } } }
            }
            h2 { "Tokens" }
            @if tokens.is_empty() { p { "None." } } @else {
                table {
                    caption { "API tokens of " (name) ", without their secrets" }
                    thead { tr { th scope="col" { "Id" } th scope="col" { "Description" } th scope="col" { "Created" }
                        th scope="col" { "Expires" } th scope="col" { "Last used" } th scope="col" { "State" } } }
                    tbody { @for token in &tokens {
                        @let active = token.revoked_at.is_none() && token.expires_at.is_none_or(|at| at > now);
                        tr {
                            td { code { (token.id) } }
                            td { (token.description) }
                            td { (time(token.created_at)) }
                            td { @match token.expires_at { Some(at) => (time(at)), None => "never" } }
                            td { @match token.last_used_at { Some(at) => (time(at)), None => "never" } }
                            td {
                                @if let Some(at) = token.revoked_at { "revoked " (time(at)) }
                                @else if !active { "expired" }
                                @else {
                                    form method="post" action=(format!("/admin/tokens/{}/revoke", token.id)) {
                                        input type="hidden" name="csrf" value=(csrf);
                                        button.danger type="submit" { "Revoke token " (token.id) }
                                    }
                                }
                            }
                        }
                    } }
                }
            }
            h2 { "Issue a token" }
            form method="post" action=(format!("/admin/users/{name}/tokens")) {
                input type="hidden" name="csrf" value=(csrf);
                label for="token-description" { "Description" }
                input type="text" id="token-description" name="description";
                label for="token-days" { "Expires after (days, empty: never)" }
                input type="text" id="token-days" name="expires_in_days" inputmode="numeric";
                p { button type="submit" { "Issue a token" } }
            }
            @if !user.ci {
                h2 { "Password" }
                form method="post" action=(format!("/admin/users/{name}/invitation")) {
                    input type="hidden" name="csrf" value=(csrf);
                    p { "An invitation link lets " (name) " choose their own password; a new one voids the last." }
                    p { button type="submit" { "Make an invitation link" } }
                }
                form method="post" action=(format!("/admin/users/{name}/password")) {
                    input type="hidden" name="csrf" value=(csrf);
                    label for="new-password" { "Or set a new password (at least 12 characters; ends every session of " (name) ")" }
                    input type="password" id="new-password" name="password" autocomplete="new-password" required minlength="12";
                    p { button.secondary type="submit" { "Set the password" } }
                }
            }
        },
    ))
}

#[derive(Debug, Deserialize)]
pub(crate) struct TokenForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    expires_in_days: String,
}

pub(crate) async fn issue_token(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(name): Path<String>,
    WebForm(form): WebForm<TokenForm>,
) -> Result<Markup, PageError> {
    viewer.check_csrf(&form.csrf)?;
    require(&state, &viewer, Action::ManageUsers)?;
    let days = match form.expires_in_days.trim() {
        "" => None,
        text => Some(
            text.parse::<u32>()
                .ok()
                .filter(|days| *days > 0)
                .ok_or_else(|| {
                    PageError::bad_request(format!(
                        "expires after must be a whole number of days, not `{text}`"
                    ))
                })?,
        ),
    };
    let issued = auth::issue_token(
        &state.store,
        &name,
        form.description.trim(),
        days,
        &viewer.actor.name,
        store::now_millis(),
    )
    .await
    .map_err(|error| match error {
        auth::IssueError::UnknownUser(_) => PageError::not_found(error.to_string()),
        auth::IssueError::Random(_) => {
            PageError::new(StatusCode::INTERNAL_SERVER_ERROR, error.to_string())
        }
        auth::IssueError::Store(error) => error.into(),
    })?;
    let made = Made::Token {
        id: issued.id,
        secret: issued.secret,
    };
    user_page(&state, &viewer, &name, None, Some(made)).await
}

#[derive(Debug, Deserialize)]
pub(crate) struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

pub(crate) async fn revoke_token(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    WebForm(form): WebForm<CsrfForm>,
) -> Result<Response, PageError> {
    viewer.check_csrf(&form.csrf)?;
    require(&state, &viewer, Action::ManageUsers)?;
    let token = state
        .store
        .users()
        .revoke_token(&id, &viewer.actor.name)
        .await?
        .ok_or_else(|| PageError::not_found(format!("no token {id}")))?;
    Ok(Redirect::to(&format!("/admin/users/{}?done=revoked", token.user_name)).into_response())
}

#[derive(Debug, Deserialize)]
pub(crate) struct PasswordForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    password: String,
}

pub(crate) async fn set_password(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(name): Path<String>,
    WebForm(form): WebForm<PasswordForm>,
) -> Result<Response, PageError> {
    viewer.check_csrf(&form.csrf)?;
    require(&state, &viewer, Action::ManageUsers)?;
    auth::passwords::set_password(
        &state.store,
        &name,
        &form.password,
        &viewer.actor.name,
        store::now_millis(),
    )
    .await
    .map_err(|error| match error {
        auth::passwords::SetPasswordError::UnknownUser(_) => {
            PageError::not_found(error.to_string())
        }
        auth::passwords::SetPasswordError::Store(error) => error.into(),
        auth::passwords::SetPasswordError::Refused(auth::passwords::PasswordRefused::Hashing(
            _,
        )) => PageError::new(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()),
        auth::passwords::SetPasswordError::Refused(_)
        | auth::passwords::SetPasswordError::CiIdentity(_) => {
            PageError::bad_request(error.to_string())
        }
    })?;
    Ok(Redirect::to(&format!("/admin/users/{name}?done=password")).into_response())
}

pub(crate) async fn invite(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Path(name): Path<String>,
    WebForm(form): WebForm<CsrfForm>,
) -> Result<Markup, PageError> {
    viewer.check_csrf(&form.csrf)?;
    require(&state, &viewer, Action::ManageUsers)?;
    let invitation = auth::invitations::invite(
        &state.store,
        &name,
        &viewer.actor.name,
        auth::invitations::DEFAULT_VALIDITY,
        store::now_millis(),
    )
    .await
    .map_err(|error| match error {
        auth::invitations::InviteError::UnknownUser(_) => PageError::not_found(error.to_string()),
        auth::invitations::InviteError::CiIdentity(_) => PageError::bad_request(error.to_string()),
        auth::invitations::InviteError::Random(_) => {
            PageError::new(StatusCode::INTERNAL_SERVER_ERROR, error.to_string())
        }
        auth::invitations::InviteError::Store(error) => error.into(),
    })?;
    let link = format!(
        "{}/invitations/{}",
        state.registry.base_url(&headers),
        invitation.secret
    );
    let made = Made::Invitation {
        link,
        expires_at: invitation.expires_at,
    };
    user_page(&state, &viewer, &name, None, Some(made)).await
}

/// The kinds of declared resources, as the page names them and as their URLs do.
const KINDS: [(ResourceKind, &str, &str); 4] = [
    (ResourceKind::Pipeline, "pipelines", "Pipelines"),
    (ResourceKind::Application, "applications", "Applications"),
    (ResourceKind::TrustPolicy, "trustpolicies", "Trust policies"),
    (
        ResourceKind::RetentionPolicy,
        "retentionpolicies",
        "Retention policies",
    ),
];

pub(crate) async fn resources(
    State(state): State<AppState>,
    viewer: Viewer,
) -> Result<Markup, PageError> {
    require(&state, &viewer, Action::ReadResources)?;
    let mut listed = Vec::new();
    for (kind, plural, title) in KINDS {
        let stored = state
            .store
            .resources()
            .list(kind, None, RESOURCES_PAGE + 1)
            .await?;
        listed.push((plural, title, stored));
    }
    let may_apply = require(&state, &viewer, Action::ApplyResources).is_ok();
    Ok(page(
        "Declared resources",
        Some(&viewer),
        html! {
            h1 { "Declared resources" }
            (admin_nav())
            p.muted { "Resources are declared as code and applied with " code { "gantry apply" } "; they are read-only here." }
            @for (plural, title, stored) in &listed {
                h2 { (title) }
                @if stored.is_empty() { p { "None." } } @else {
                    ul {
                        @for resource in stored.iter().take(RESOURCES_PAGE as usize) {
                            li { a href=(format!("/admin/resources/{plural}/{}", resource.name)) { (resource.name) }
                                 " " span.muted { "revision " (resource.revision) ", " (time(resource.updated_at)) } }
                        }
                    }
                    @if stored.len() > RESOURCES_PAGE as usize { p.muted { "The first " (RESOURCES_PAGE) " are listed; " code { "gantry get" } " lists them all." } }
                }
            }
            @if may_apply {
                h2 { "Check a file before applying it" }
                (apply_form("dry-run", "", "Show what it would change", false, &viewer.session.csrf_token))
            }
        },
    ))
}

/// The form that sends a resources file: to `dry-run` (a textarea to fill) or to
/// `apply` (the file already checked, carried unchanged).
fn apply_form(to: &str, text: &str, label: &str, hidden: bool, csrf: &str) -> Markup {
    html! {
        form method="post" action=(format!("/admin/resources/{to}")) {
            input type="hidden" name="csrf" value=(csrf);
            @if hidden {
                input type="hidden" name="yaml" value=(text);
            } @else {
                label for="yaml" { "Resources file (YAML)" }
                textarea id="yaml" name="yaml" rows="16" cols="80" spellcheck="false" required { (text) }
            }
            p { button type="submit" { (label) } }
        }
    }
}

pub(crate) async fn resource(
    State(state): State<AppState>,
    viewer: Viewer,
    Path((plural, name)): Path<(String, String)>,
) -> Result<Markup, PageError> {
    require(&state, &viewer, Action::ReadResources)?;
    let (kind, _, title) = KINDS
        .into_iter()
        .find(|(_, p, _)| *p == plural)
        .ok_or_else(|| PageError::not_found(format!("no resource kind `{plural}`")))?;
    let resource = state
        .store
        .resources()
        .get(kind, &name)
        .await?
        .ok_or_else(|| PageError::not_found(format!("no {kind} named `{name}`")))?;
    Ok(page(
        &format!("{kind} {name}"),
        Some(&viewer),
        html! {
            h1 { (kind) " " (name) }
            (admin_nav())
            p.muted { (title) " · revision " (resource.revision) " · applied " (time(resource.updated_at)) }
            pre.log aria-label=(format!("{kind} {name} as stored")) tabindex="0" { code { (resource.canonical) } }
        },
    ))
}

#[derive(Debug, Deserialize)]
pub(crate) struct ApplyForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    yaml: String,
}

pub(crate) async fn dry_run(
    state: State<AppState>,
    viewer: Viewer,
    form: WebForm<ApplyForm>,
) -> Result<Response, PageError> {
    apply_file(state, viewer, form, true).await
}

pub(crate) async fn apply(
    state: State<AppState>,
    viewer: Viewer,
    form: WebForm<ApplyForm>,
) -> Result<Response, PageError> {
    apply_file(state, viewer, form, false).await
}

async fn apply_file(
    State(state): State<AppState>,
    viewer: Viewer,
    WebForm(form): WebForm<ApplyForm>,
    dry_run: bool,
) -> Result<Response, PageError> {
    viewer.check_csrf(&form.csrf)?;
    require(&state, &viewer, Action::ApplyResources)?;
    let applied = state
        .engine
        .apply(&viewer.actor.name, "uploaded.yaml", &form.yaml, dry_run)
        .await;
    let csrf = &viewer.session.csrf_token;
    let applied = match applied {
        Ok(applied) => applied,
        Err(ApplyError::Invalid(errors)) => {
            let shown = page(
                "The file has problems",
                Some(&viewer),
                html! {
                    h1 { "The file has problems; nothing was applied" }
                    (admin_nav())
                    ul.error role="alert" { @for error in errors.errors() { li { (error.to_string()) } } }
                    (apply_form("dry-run", &form.yaml, "Check again", false, csrf))
                },
            );
            return Ok((StatusCode::BAD_REQUEST, shown).into_response());
        }
        Err(ApplyError::Conflict(conflict)) => {
            return Err(PageError::new(
                StatusCode::CONFLICT,
                ApplyError::Conflict(conflict).to_string(),
            ));
        }
        Err(ApplyError::Engine(error)) => return Err(error.into()),
    };
    let changes = applied
        .resources
        .iter()
        .filter(|plan| plan.action != PlannedAction::Unchanged)
        .count();
    Ok(page(
        if dry_run {
            "What the file would change"
        } else {
            "Applied"
        },
        Some(&viewer),
        html! {
            h1 { @if dry_run { "What the file would change" } @else { "Applied" } }
            (admin_nav())
            @if !dry_run { p.notice role="status" { "Applied: " (changes) " resources changed." } }
            table {
                caption { "Each resource of the file" }
                thead { tr { th scope="col" { "Kind" } th scope="col" { "Name" } th scope="col" { "Change" } th scope="col" { "Diff" } } }
                tbody { @for plan in &applied.resources { tr {
                    td { (plan.kind) }
                    td { (plan.name) }
                    td { (match plan.action { PlannedAction::Create => "create", PlannedAction::Update => "update", PlannedAction::Unchanged => "unchanged" }) }
                    td { @if plan.diff.is_empty() { "—" } @else { pre.log aria-label=(format!("Diff of {} {}", plan.kind, plan.name)) tabindex="0" { code { (plan.diff) } } } }
                } } }
            }
            @if !applied.created_repositories.is_empty() {
                p { @if dry_run { "Repositories it would create: " } @else { "Repositories created: " }
                    @for (i, repository) in applied.created_repositories.iter().enumerate() { @if i > 0 { ", " } code { (repository.to_string()) } } }
            }
            @if dry_run {
                @if changes == 0 { p { "Nothing to apply: every resource is unchanged." } } @else {
                    (apply_form("apply", &form.yaml, "Apply these changes", true, csrf))
                    p { a href="/admin/resources" { "Cancel" } }
                }
            }
        },
    )
    .into_response())
}
