//! Extractors for what every API handler starts with: who is calling, and whether
//! they may do what the route does. Each runs in its argument's position, before the
//! handler's body; handlers take their path, query and body as `Result`s and judge
//! them afterwards, so credentials are refused before a malformed request is.

use std::marker::PhantomData;

use axum::extract::FromRequestParts;
use domain::{Action, Principal};
use engine::Actor;
use http::request::Parts;

use super::error::ApiError;
use crate::AppState;

/// The authenticated user as the engine judges them. Any valid user's token gets this
/// far; the engine decides from the caller's roles (or a scoped token's grants)
/// whether they may do what they ask.
pub(crate) struct Caller(pub(crate) Actor);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let CallerToken(actor, _) = CallerToken::from_request_parts(parts, state).await?;
        Ok(Caller(actor))
    }
}

/// [`Caller`], with the id of the token the request presented (a CI job's token may
/// list and revoke only itself).
pub(crate) struct CallerToken(pub(crate) Actor, pub(crate) Option<String>);

impl FromRequestParts<AppState> for CallerToken {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let (principal, token_id) = super::authenticate_token(state, &parts.headers).await?;
        let Principal::User { name, admin, scope } = principal else {
            return Err(ApiError::unauthorized(
                &state.registry.config().realm,
                "this needs a user's token",
            ));
        };
        let user = state.store.users().get(&name).await?;
        let actor = Actor {
            ci: scope.is_some() || user.as_ref().is_some_and(|user| user.ci),
            name,
            admin,
            user,
            scope,
        };
        Ok(CallerToken(actor, token_id))
    }
}

/// Whoever the credentials name, or the anonymous caller when there are none; `401`
/// for credentials that are invalid. For a route whose answer depends on what the
/// caller may see (a site build's repository).
pub(crate) struct Authenticated(pub(crate) Principal);

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let (principal, _) = super::authenticate_token(state, &parts.headers).await?;
        Ok(Authenticated(principal))
    }
}

/// The permission a route requires of every caller, named by a type so that a
/// handler's signature states it.
pub(crate) trait Permission {
    const ACTION: Action;
}

/// Reading applications, promotions, deployments and declared resources.
pub(crate) struct ReadResources;
impl Permission for ReadResources {
    const ACTION: Action = Action::ReadResources;
}

/// Reading and exporting the audit log.
pub(crate) struct ReadAudit;
impl Permission for ReadAudit {
    const ACTION: Action = Action::ReadAudit;
}

/// Applying declared resources.
pub(crate) struct ApplyResources;
impl Permission for ApplyResources {
    const ACTION: Action = Action::ApplyResources;
}

/// Managing users, their roles and their tokens.
pub(crate) struct ManageUsers;
impl Permission for ManageUsers {
    const ACTION: Action = Action::ManageUsers;
}

/// Running garbage collection and reading its record.
pub(crate) struct CollectGarbage;
impl Permission for CollectGarbage {
    const ACTION: Action = Action::CollectGarbage;
}

/// Rotating the signing key.
pub(crate) struct ManageKeys;
impl Permission for ManageKeys {
    const ACTION: Action = Action::ManageKeys;
}

/// A caller that may do `P::ACTION`: `401` with a challenge for who is not
/// authenticated, `403` naming the permission for who may not.
pub(crate) struct Authorized<P>(pub(crate) Principal, pub(crate) PhantomData<P>);

impl<P: Permission> FromRequestParts<AppState> for Authorized<P> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let principal = super::authorize(state, &parts.headers, P::ACTION).await?;
        Ok(Authorized(principal, PhantomData))
    }
}
