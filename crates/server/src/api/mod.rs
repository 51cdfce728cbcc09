//! The JSON API under `/api/v1` (and `/params`, `/builds`): declared resources
//! (`apply`, list, get), builds, checks, promotions and their decisions, deployments
//! with their jobs, logs and webhook callbacks, rollbacks and holds, application
//! status, history and artifacts, environment parameters, users and tokens, DORA
//! metrics, admission, the OIDC exchange, the audit log (verify, export), and the
//! OpenAPI document that describes it, generated from these handlers and the wire
//! types in `types` and `promotion_types` by `utoipa`.
//!
//! Callers authenticate with the registry's tokens (`Authorization: Bearer …` or
//! Basic) and every handler asks `auth::authorize` before it acts. Errors leave only as
//! `error::ApiError`, the API's one envelope.

mod admission;
mod audit;
mod body;
mod builds;
mod deployments;
mod error;
mod extract;
mod gc;
mod keys;
mod oidc;
mod page;
mod params;
mod promotion_types;
mod promotions;
mod quarantine;
mod resources;
mod types;
mod users;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use domain::{Action, Principal};
use http::{HeaderMap, header};
use utoipa::OpenApi;

use crate::AppState;
pub(crate) use audit::export_response as audit_export;
pub(crate) use error::ApiError;

/// The OpenAPI 3 description of `/api/v1`.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Gantry API",
        description = "Declared pipelines and applications, builds, checks, promotions, approvals, deployments, rollbacks, users, DORA metrics, quarantines, garbage collection and the audit log. Errors are `{code, message, detail}`."
    ),
    paths(
        resources::apply,
        resources::list,
        resources::get,
        audit::verify,
        audit::export,
        promotions::notify,
        promotions::report_check,
        promotions::promote,
        promotions::list_promotions,
        promotions::get_promotion,
        promotions::approve,
        promotions::reject,
        promotions::cancel,
        promotions::rollback,
        promotions::hold,
        promotions::release,
        promotions::observed,
        promotions::list_apps,
        promotions::get_app,
        promotions::history,
        promotions::artifact,
        promotions::custody,
        deployments::get_deployment,
        builds::site_zip,
        deployments::deployment_log,
        deployments::callback,
        users::create_user,
        users::list_users,
        users::set_password,
        users::create_token,
        users::own_tokens,
        users::list_tokens,
        users::revoke_token,
        users::dora,
        gc::run,
        gc::status,
        keys::list,
        keys::rotate,
        keys::checkpoints,
        keys::checkpoint,
        quarantine::quarantine,
        quarantine::lift,
        quarantine::list,
        admission::admission,
        admission::review,
        oidc::exchange,
        params::environment,
        params::image,
        openapi_json
    ),
    components(schemas(
        types::ErrorBody,
        types::ResourceProblem,
        types::DocumentRef,
        types::ApplyAction,
        types::ResourceOutcome,
        types::ApplyResponse,
        types::ResourceSummary,
        types::ResourceList,
        types::ResourceDetail,
        types::AuditVerification,
        types::AuditEntryView,
        promotion_types::BuildRequest,
        promotion_types::BuildView,
        promotion_types::NotifyResponse,
        promotion_types::CheckRequest,
        promotion_types::CheckView,
        promotion_types::PromoteRequest,
        promotion_types::ConditionView,
        promotion_types::DecisionView,
        promotion_types::PromotionView,
        promotion_types::PromotionList,
        promotion_types::CommentRequest,
        promotion_types::RejectRequest,
        promotion_types::RollbackRequest,
        promotion_types::HoldRequest,
        promotion_types::HoldView,
        promotion_types::ObservedView,
        promotion_types::ObservedRequest,
        promotion_types::ObservationView,
        promotion_types::DeploymentView,
        promotion_types::DeploymentList,
        promotion_types::EnvironmentView,
        promotion_types::AppStatus,
        promotion_types::AppList,
        promotion_types::ArtifactView,
        promotion_types::CustodyView,
        promotion_types::ApplicationCustodyView,
        promotion_types::CustodyDecisionView,
        promotion_types::AttestationView,
        promotion_types::DoraView,
        promotion_types::DoraResponse,
        promotion_types::UserRequest,
        promotion_types::UserView,
        api_types::PasswordRequest,
        promotion_types::UserList,
        promotion_types::TokenRequest,
        promotion_types::TokenResponse,
        promotion_types::TokenView,
        promotion_types::TokenList,
        promotion_types::AdmissionView,
        api_types::OidcExchangeRequest,
        api_types::OidcExchangeResponse,
        api_types::EnvironmentParams,
        api_types::DeploymentDetail,
        api_types::JobView,
        api_types::DeploymentLog,
        api_types::LogLineView,
        api_types::CallbackRequest,
        api_types::CallbackResponse,
        promotion_types::QuarantineRequest,
        promotion_types::QuarantineView,
        promotion_types::QuarantineResponse,
        promotion_types::QuarantineList,
        api_types::GcRequest,
        api_types::GcItem,
        api_types::RetentionExpiry,
        api_types::RetentionSaved,
        api_types::RetentionSkipped,
        api_types::RetentionView,
        api_types::GcReport,
        api_types::GcPassView,
        api_types::GcStatus,
        api_types::SigningKeyView,
        api_types::SigningKeyList,
        api_types::CheckpointList,
        api_types::CheckpointView,
    ))
)]
struct ApiDoc;

/// The `/api/v1` routes.
pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/apply", post(resources::apply))
        .route("/api/v1/resources/{kind}", get(resources::list))
        .route("/api/v1/resources/{kind}/{name}", get(resources::get))
        .route("/api/v1/audit/verify", get(audit::verify))
        .route("/api/v1/audit/export", get(audit::export))
        .route(
            "/api/v1/audit/checkpoints",
            get(keys::checkpoints).post(keys::checkpoint),
        )
        .route("/api/v1/builds", post(promotions::notify))
        .route(
            "/api/v1/checks",
            post(promotions::report_check)
                .layer(DefaultBodyLimit::max(promotions::MAX_CHECK_BYTES)),
        )
        .route(
            "/api/v1/promotions",
            post(promotions::promote).get(promotions::list_promotions),
        )
        .route("/api/v1/promotions/{id}", get(promotions::get_promotion))
        .route("/api/v1/deployments/{id}", get(deployments::get_deployment))
        .route(
            "/api/v1/deployments/{id}/log",
            get(deployments::deployment_log),
        )
        .route(
            "/api/v1/deployments/{id}/callback",
            post(deployments::callback),
        )
        .route("/api/v1/promotions/{id}/approve", post(promotions::approve))
        .route("/api/v1/promotions/{id}/reject", post(promotions::reject))
        .route("/api/v1/promotions/{id}/cancel", post(promotions::cancel))
        .route("/api/v1/apps", get(promotions::list_apps))
        .route("/api/v1/apps/{app}", get(promotions::get_app))
        .route("/api/v1/apps/{app}/history", get(promotions::history))
        .route(
            "/api/v1/apps/{app}/artifacts/{digest}",
            get(promotions::artifact),
        )
        .route(
            "/api/v1/artifacts/{digest}/custody",
            get(promotions::custody),
        )
        .route(
            "/api/v1/apps/{app}/environments/{env}",
            get(params::environment),
        )
        .route("/params/{app}/{env}/image", get(params::image))
        .route("/builds/{app}/{file}", get(builds::site_zip))
        .route(
            "/api/v1/apps/{app}/environments/{env}/observed",
            post(promotions::observed),
        )
        .route(
            "/api/v1/apps/{app}/environments/{env}/rollback",
            post(promotions::rollback),
        )
        .route(
            "/api/v1/apps/{app}/environments/{env}/hold",
            put(promotions::hold).delete(promotions::release),
        )
        .route(
            "/api/v1/users",
            post(users::create_user).get(users::list_users),
        )
        .route("/api/v1/users/{name}/password", put(users::set_password))
        .route(
            "/api/v1/users/{name}/tokens",
            post(users::create_token).get(users::list_tokens),
        )
        .route("/api/v1/tokens", get(users::own_tokens))
        .route(
            "/api/v1/tokens/{id}",
            axum::routing::delete(users::revoke_token),
        )
        .route("/api/v1/metrics/dora", get(users::dora))
        .route("/api/v1/gc", get(gc::status).post(gc::run))
        .route("/api/v1/keys", get(keys::list))
        .route("/api/v1/keys/rotate", post(keys::rotate))
        .route("/api/v1/apps/{app}/quarantines", get(quarantine::list))
        .route(
            "/api/v1/apps/{app}/quarantines/{digest}",
            put(quarantine::quarantine),
        )
        .route(
            "/api/v1/apps/{app}/quarantines/{digest}/lift",
            post(quarantine::lift),
        )
        .route("/api/v1/admission", get(admission::admission))
        .route("/api/v1/admission/review", post(admission::review))
        .route("/api/v1/auth/oidc", post(oidc::exchange))
        .route("/api/v1/openapi.json", get(openapi_json))
        .route_layer(axum::middleware::from_fn(
            crate::limits::refuse_control_characters,
        ))
        .layer(DefaultBodyLimit::max(error::JSON_BODY_LIMIT))
        .layer(axum::middleware::from_fn(remember_client))
        .with_state(state)
}

tokio::task_local! {
    /// The peer address of the request being handled, for the limits on failed
    /// credential checks (handlers see only headers; the address is the connection's).
    static CLIENT: Option<std::net::IpAddr>;
}

/// Runs the request with its peer address remembered for [`attempt`].
async fn remember_client(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let address = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0.ip());
    CLIENT.scope(address, next.run(request)).await
}

/// A credential check by the client of the request being handled, within the limits
/// on failed checks (shared with the registry).
fn attempt(state: &AppState) -> auth::Attempt<'_> {
    auth::Attempt {
        limiter: state.registry.failures(),
        address: CLIENT.try_with(|address| *address).ok().flatten(),
    }
}

/// The 429 for a client or account whose failed checks are spent.
fn too_many_failures(refusal: auth::TooManyFailures) -> ApiError {
    tracing::info!(%refusal, "credential check refused: too many failures");
    ApiError::too_many_requests(refusal.to_string(), refusal.retry_after)
}

/// The OpenAPI document of this API.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    responses((status = 200, description = "The OpenAPI 3 document", content_type = "application/json"))
)]
async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// Resolves the caller from the `Authorization` header and checks it may do `action`.
async fn authorize(
    state: &AppState,
    headers: &HeaderMap,
    action: Action,
) -> Result<Principal, ApiError> {
    let config = state.registry.config();
    let principal = authenticate(state, headers).await?;
    auth::authorize(&principal, action, None, &config.access)
        .map_err(|denied| refusal(&config.realm, &denied))?;
    Ok(principal)
}

/// The answer to a refused authorization: `401` with a challenge for who is not
/// authenticated, `403` naming the permission for who is.
fn refusal(realm: &str, denied: &auth::Denied) -> ApiError {
    match denied {
        auth::Denied::Unauthenticated { .. } => ApiError::unauthorized(realm, denied.to_string()),
        auth::Denied::Forbidden { permission, .. } | auth::Denied::Reserved { permission } => {
            ApiError::forbidden(denied.to_string(), permission)
        }
    }
}

/// Resolves the caller from the `Authorization` header: anonymous without one, `401`
/// for invalid credentials.
async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Principal, ApiError> {
    Ok(authenticate_token(state, headers).await?.0)
}

/// [`authenticate`], with the id of the token presented.
async fn authenticate_token(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<(Principal, Option<String>), ApiError> {
    let config = state.registry.config();
    let authorization = match headers.get(header::AUTHORIZATION) {
        None => None,
        Some(value) => Some(value.to_str().map_err(|_| {
            ApiError::unauthorized(&config.realm, "the Authorization header is not text")
        })?),
    };
    match auth::authenticate_limited(
        &state.store,
        attempt(state),
        authorization,
        store::now_millis(),
    )
    .await
    {
        Ok(authenticated) => Ok(authenticated),
        Err(auth::AuthError::TooManyFailures(refusal)) => Err(too_many_failures(refusal)),
        Err(auth::AuthError::InvalidCredentials(reason)) => {
            tracing::info!(reason, "API credentials refused");
            Err(ApiError::unauthorized(
                &config.realm,
                format!("invalid credentials: {reason}"),
            ))
        }
        Err(auth::AuthError::Store(error)) => Err(error.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The wire's `PromotionState` is its own type (the client keeps a state it does
    /// not know instead of failing, and depends on no `domain`): every state the
    /// engine shows has a name there, spelled the same. `requested` never leaves the
    /// transaction that creates a promotion.
    #[test]
    fn every_promotion_state_a_caller_can_see_has_its_name_on_the_wire() {
        use domain::promotion::PromotionState as Stored;
        for state in Stored::ALL {
            let wire = api_types::PromotionState::from(state.as_str().to_owned());
            assert_eq!(wire.as_str(), state.as_str());
            let named = !matches!(wire, api_types::PromotionState::Other(_));
            assert_eq!(named, state != Stored::Requested, "{state:?}");
        }
    }

    /// Every route this module serves is in the OpenAPI document, so the authorization
    /// matrix (generated from the document) cannot miss one.
    #[test]
    fn every_api_route_is_in_the_openapi_document() {
        let source = include_str!("mod.rs");
        let router = &source[source.find("pub(crate) fn router").expect("router")..];
        let router = &router[..router.find("\n}\n").expect("end of router")];
        let documented = ApiDoc::openapi();
        let mut routes = 0;
        for piece in router.split(".route(").skip(1) {
            let path = piece
                .trim_start()
                .strip_prefix('"')
                .and_then(|rest| rest.split('"').next())
                .expect("a route path literal");
            routes += 1;
            assert!(
                documented.paths.paths.contains_key(path),
                "route {path} is served but not in the OpenAPI document"
            );
        }
        assert_eq!(
            routes,
            documented.paths.paths.len(),
            "the OpenAPI document lists a path the router does not serve"
        );
    }
}
