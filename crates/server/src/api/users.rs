//! Users, their roles and tokens (admins), and the DORA metrics.

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use domain::dora::DoraMetrics;
use http::StatusCode;
use store::{NewUser, RoleGrant, TokenRecord, UserRecord};

use super::error::ApiError;
use super::extract::{Authorized, Caller, CallerToken, ManageUsers, ReadResources};
use super::promotion_types::{
    AppQuery, DoraQuery, DoraResponse, DoraView, TokenList, TokenRequest, TokenResponse, TokenView,
    UserList, UserRequest, UserView, rfc3339,
};
use super::types::ErrorBody;
use crate::AppState;
use api_types::PasswordRequest;

const MAX_USERS_PAGE: i64 = 500;

fn user_view(user: UserRecord) -> UserView {
    UserView {
        name: user.name,
        admin: user.admin,
        ci: user.ci,
        roles: user.roles.iter().map(RoleGrant::to_string).collect(),
    }
}

/// Create a user with roles (admins).
#[utoipa::path(
    post,
    path = "/api/v1/users",
    request_body = UserRequest,
    responses(
        (status = 201, description = "Created", body = UserView),
        (status = 400, description = "Bad name or role", body = ErrorBody),
        (status = 403, description = "Not an admin (`users:manage`)", body = ErrorBody),
        (status = 409, description = "The name is taken", body = ErrorBody),
    )
)]
pub(crate) async fn create_user(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<ManageUsers>,
    body: Result<super::body::JsonBody<UserRequest>, ApiError>,
) -> Result<Response, ApiError> {
    let super::body::JsonBody(request) = body?;
    domain::check_user_name(&request.name).map_err(ApiError::bad_request)?;
    let roles = RoleGrant::parse_all(request.roles.iter().map(String::as_str))
        .map_err(ApiError::bad_request)?;
    let created = state
        .store
        .users()
        .create_with_roles(
            &NewUser {
                name: &request.name,
                admin: request.admin,
                ci: request.ci,
                roles: &roles,
            },
            principal.display_name(),
        )
        .await?;
    if !created {
        return Err(ApiError::conflict(
            format!("a user named {} exists", request.name),
            serde_json::Value::Null,
        ));
    }
    let user = state
        .store
        .users()
        .get(&request.name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("user {}", request.name)))?;
    Ok((StatusCode::CREATED, Json(user_view(user))).into_response())
}

/// Set the password a user signs in to the web UI with (admins). At least 12
/// characters; every session the user had ends. CI identities have no password.
#[utoipa::path(
    put,
    path = "/api/v1/users/{name}/password",
    params(("name" = String, Path, description = "The user")),
    request_body = PasswordRequest,
    responses(
        (status = 200, description = "Set; the user", body = UserView),
        (status = 400, description = "Too short, too long, or a CI identity", body = ErrorBody),
        (status = 403, description = "Not an admin (`users:manage`)", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
    )
)]
pub(crate) async fn set_password(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<ManageUsers>,
    path: Result<Path<String>, PathRejection>,
    body: Result<super::body::JsonBody<PasswordRequest>, ApiError>,
) -> Result<Json<UserView>, ApiError> {
    let Path(name) = path.map_err(|r| ApiError::bad_request(r.body_text()))?;
    let super::body::JsonBody(request) = body?;
    auth::passwords::set_password(
        &state.store,
        &name,
        &request.password,
        principal.display_name(),
        store::now_millis(),
    )
    .await
    .map_err(|error| match error {
        auth::passwords::SetPasswordError::UnknownUser(_) => ApiError::not_found(error.to_string()),
        auth::passwords::SetPasswordError::Refused(auth::passwords::PasswordRefused::Hashing(
            _,
        )) => ApiError::internal("hashing the password failed", &error),
        auth::passwords::SetPasswordError::Refused(_)
        | auth::passwords::SetPasswordError::CiIdentity(_) => {
            ApiError::bad_request(error.to_string())
        }
        auth::passwords::SetPasswordError::Store(error) => error.into(),
    })?;
    let user = state
        .store
        .users()
        .get(&name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no user named {name}")))?;
    Ok(Json(user_view(user)))
}

/// List users (admins).
#[utoipa::path(
    get,
    path = "/api/v1/users",
    params(AppQuery),
    responses(
        (status = 200, description = "A page of users", body = UserList),
        (status = 403, description = "Not an admin", body = ErrorBody),
    )
)]
pub(crate) async fn list_users(
    State(state): State<AppState>,
    _: Authorized<ManageUsers>,
    query: Result<Query<AppQuery>, QueryRejection>,
) -> Result<Json<UserList>, ApiError> {
    let Query(query) = query.map_err(|r| ApiError::bad_request(r.body_text()))?;
    let limit = super::page::limit(
        query.limit,
        super::page::Limits {
            default: 100,
            max: MAX_USERS_PAGE,
        },
    )?;
    let users = state
        .store
        .users()
        .list(query.after.as_deref(), limit + 1)
        .await?;
    let engine::Page { items: users, next } =
        engine::Page::from_one_more(users, limit, |user| user.name.clone());
    Ok(Json(UserList {
        users: users.into_iter().map(user_view).collect(),
        next,
    }))
}

/// Issue a token for a user (admins). The secret is in this answer only.
#[utoipa::path(
    post,
    path = "/api/v1/users/{name}/tokens",
    params(("name" = String, Path)),
    request_body = TokenRequest,
    responses(
        (status = 201, description = "Issued", body = TokenResponse),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
    )
)]
pub(crate) async fn create_token(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<ManageUsers>,
    path: Result<Path<String>, PathRejection>,
    body: Result<super::body::OptionalJsonBody<TokenRequest>, ApiError>,
) -> Result<Response, ApiError> {
    let Path(name) = path.map_err(|r| ApiError::bad_request(r.body_text()))?;
    let super::body::OptionalJsonBody(request) = body?;
    let request = request.unwrap_or_default();
    let issued = auth::issue_token(
        &state.store,
        &name,
        request.description.as_deref().unwrap_or(""),
        request.expires_in_days,
        principal.display_name(),
        store::now_millis(),
    )
    .await
    .map_err(|error| match error {
        auth::IssueError::UnknownUser(_) => ApiError::not_found(error.to_string()),
        auth::IssueError::Random(_) => ApiError::internal("the random source failed", &error),
        auth::IssueError::Store(error) => error.into(),
    })?;
    let response = TokenResponse {
        id: issued.id,
        user: issued.user,
        token: issued.secret,
        expires_at: issued.expires_at.map(rfc3339),
    };
    Ok((StatusCode::CREATED, Json(response)).into_response())
}

fn token_view(token: TokenRecord, now: i64) -> TokenView {
    TokenView {
        active: token.revoked_at.is_none() && token.expires_at.is_none_or(|at| at > now),
        id: token.id,
        user: token.user_name,
        description: token.description,
        created_at: rfc3339(token.created_at),
        expires_at: token.expires_at.map(rfc3339),
        revoked_at: token.revoked_at.map(rfc3339),
        last_used_at: token.last_used_at.map(rfc3339),
    }
}

async fn token_list(
    state: &AppState,
    user: &str,
    only: Option<&str>,
) -> Result<Json<TokenList>, ApiError> {
    let now = store::now_millis();
    let mut tokens = state.store.users().tokens(user).await?;
    if let Some(only) = only {
        tokens.retain(|token| token.id == only);
    }
    Ok(Json(TokenList {
        tokens: tokens.into_iter().map(|t| token_view(t, now)).collect(),
    }))
}

/// The caller's own tokens.
#[utoipa::path(
    get,
    path = "/api/v1/tokens",
    responses(
        (status = 200, description = "The caller's tokens, without secrets", body = TokenList),
        (status = 401, description = "No or invalid credentials", body = ErrorBody),
    )
)]
pub(crate) async fn own_tokens(
    State(state): State<AppState>,
    CallerToken(caller, token_id): CallerToken,
) -> Result<Json<TokenList>, ApiError> {
    // A CI identity is shared by every job its trust policy matches, so a scoped
    // token sees and revokes only itself.
    let only = token_id.filter(|_| caller.scope.is_some());
    token_list(&state, &caller.name, only.as_deref()).await
}

/// A user's tokens (admins, or the user themself).
#[utoipa::path(
    get,
    path = "/api/v1/users/{name}/tokens",
    params(("name" = String, Path)),
    responses(
        (status = 200, description = "The user's tokens, without secrets", body = TokenList),
        (status = 403, description = "Neither an admin nor that user", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
    )
)]
pub(crate) async fn list_tokens(
    State(state): State<AppState>,
    Caller(caller): Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<TokenList>, ApiError> {
    let Path(name) = path.map_err(|r| ApiError::bad_request(r.body_text()))?;
    if !caller.admin && (caller.name != name || caller.scope.is_some()) {
        return Err(ApiError::forbidden(
            format!("{} may list only their own tokens", caller.name),
            "users:manage",
        ));
    }
    if state.store.users().get(&name).await?.is_none() {
        return Err(ApiError::not_found(format!("no user named {name}")));
    }
    token_list(&state, &name, None).await
}

/// Revoke a token (admins, or its owner). It stops working at once; revoking it again
/// changes nothing.
#[utoipa::path(
    delete,
    path = "/api/v1/tokens/{id}",
    params(("id" = String, Path)),
    responses(
        (status = 200, description = "Revoked", body = TokenView),
        (status = 403, description = "Neither an admin nor the token's owner", body = ErrorBody),
        (status = 404, description = "No such token", body = ErrorBody),
    )
)]
pub(crate) async fn revoke_token(
    State(state): State<AppState>,
    CallerToken(caller, presented): CallerToken,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<TokenView>, ApiError> {
    let Path(id) = path.map_err(|r| ApiError::bad_request(r.body_text()))?;
    let Some(token) = state.store.users().token(&id).await? else {
        return Err(ApiError::not_found(format!("no token {id}")));
    };
    let own = caller.name == token.user_name
        && (caller.scope.is_none() || presented.as_deref() == Some(id.as_str()));
    if !caller.admin && !own {
        return Err(ApiError::forbidden(
            format!("{} may revoke only their own tokens", caller.name),
            "users:manage",
        ));
    }
    let token = state
        .store
        .users()
        .revoke_token(&id, &caller.name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no token {id}")))?;
    Ok(Json(token_view(token, store::now_millis())))
}

fn dora_view(metrics: &DoraMetrics) -> DoraView {
    DoraView {
        deployments: metrics.deployments,
        deployments_per_day: metrics.deployments_per_day,
        lead_time_median_seconds: metrics.lead_time_median.map(|d| d.as_secs()),
        lead_time_p90_seconds: metrics.lead_time_p90.map(|d| d.as_secs()),
        change_failure_rate: metrics.change_failure_rate,
        time_to_restore_median_seconds: metrics.time_to_restore_median.map(|d| d.as_secs()),
        failures: metrics.failures,
        rollbacks: metrics.rollbacks,
    }
}

/// DORA metrics from the deployment records: production is each application's last
/// pipeline stage; lead time runs from the build's commit time.
#[utoipa::path(
    get,
    path = "/api/v1/metrics/dora",
    params(DoraQuery),
    responses(
        (status = 200, description = "Metrics overall and per application", body = DoraResponse),
        (status = 400, description = "Bad query", body = ErrorBody),
        (status = 404, description = "No such application", body = ErrorBody),
    )
)]
pub(crate) async fn dora(
    State(state): State<AppState>,
    _: Authorized<ReadResources>,
    query: Result<Query<DoraQuery>, QueryRejection>,
) -> Result<Json<DoraResponse>, ApiError> {
    let Query(query) = query.map_err(|r| ApiError::bad_request(r.body_text()))?;
    let days = query.days.unwrap_or(30);
    if !(1..=366).contains(&days) {
        return Err(ApiError::bad_request(format!(
            "days {days} is out of range 1..=366"
        )));
    }
    let until_ms = store::now_millis();
    let since_ms = until_ms - i64::from(days) * 24 * 60 * 60 * 1000;
    let (overall, by_application) = state
        .engine
        .dora(query.application.as_deref(), since_ms, until_ms)
        .await?;
    Ok(Json(DoraResponse {
        since: rfc3339(since_ms),
        until: rfc3339(until_ms),
        overall: dora_view(&overall),
        applications: by_application
            .iter()
            .map(|(name, metrics)| (name.clone(), dora_view(metrics)))
            .collect(),
    }))
}
