//! What an environment should run, for deploy scripts and controllers that pull their
//! parameters: `GET /api/v1/apps/{app}/environments/{env}` (JSON: the image by digest,
//! through the repository the stage serves from, the commit, the release bundle) and
//! `GET /params/{app}/{env}/image` (just the image reference, as text).

use api_types::EnvironmentParams;
use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use domain::pipeline::EnvName;
use http::{HeaderMap, HeaderValue, header};

use super::error::ApiError;
use super::extract::{Authorized, ReadResources};
use super::promotions::{deployment_views, hold_view};
use super::types::ErrorBody;
use crate::AppState;

async fn params(
    state: &AppState,
    headers: &HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<EnvironmentParams, ApiError> {
    let Path((app, env)) = path.map_err(|r| ApiError::bad_request(r.body_text()))?;
    let (application, pipeline) = state.engine.declared(&app).await?;
    let environment = EnvName::parse(&env)
        .map_err(|e| ApiError::bad_request(format!("environment `{env}`: {e}")))?;
    if pipeline.pipeline().stage(&environment).is_none() {
        return Err(ApiError::not_found(format!(
            "{app} has no environment {env}"
        )));
    }
    let repository = pipeline
        .release_tier(&environment)
        .repository(&application.repository)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let stored = state
        .store
        .environments()
        .of(&app)
        .await?
        .into_iter()
        .find(|s| s.environment == env);
    let (desired, current, hold) = match stored {
        Some(stored) => (stored.desired().cloned(), stored.current, stored.hold),
        None => (None, None, None),
    };
    let deployment = deployment_views(state, desired.into_iter().collect())
        .await?
        .pop();
    let last_successful = deployment_views(state, current.into_iter().collect())
        .await?
        .pop();
    let host = state.registry.public_host(headers);
    Ok(EnvironmentParams {
        application: app,
        environment: env,
        image: deployment
            .as_ref()
            .map(|d| format!("{host}/{repository}@{}", d.digest)),
        digest: deployment.as_ref().map(|d| d.digest.clone()),
        tag: deployment.as_ref().and_then(|d| d.tag.clone()),
        commit: deployment.as_ref().and_then(|d| d.commit.clone()),
        config: deployment.as_ref().and_then(|d| d.config.clone()),
        repository: repository.to_string(),
        deployment,
        last_successful,
        hold: hold.map(hold_view),
    })
}

/// What an environment should run: the image by digest (of the deployment under way,
/// else of the last successful one), its tag, the commit, the release bundle.
#[utoipa::path(
    get,
    path = "/api/v1/apps/{app}/environments/{env}",
    params(("app" = String, Path), ("env" = String, Path)),
    responses(
        (status = 200, description = "The environment's parameters (image null before the first deployment)", body = EnvironmentParams),
        (status = 401, description = "No or invalid credentials", body = ErrorBody),
        (status = 404, description = "No such application or environment", body = ErrorBody),
    )
)]
pub(crate) async fn environment(
    State(state): State<AppState>,
    _: Authorized<ReadResources>,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<EnvironmentParams>, ApiError> {
    Ok(Json(params(&state, &headers, path).await?))
}

/// The image an environment should run, as one line of text
/// (`HOST/REPOSITORY@DIGEST`): the deployment under way, else the last successful one.
#[utoipa::path(
    get,
    path = "/params/{app}/{env}/image",
    params(("app" = String, Path), ("env" = String, Path)),
    responses(
        (status = 200, description = "The image reference", content_type = "text/plain"),
        (status = 401, description = "No or invalid credentials", body = ErrorBody),
        (status = 404, description = "No such application or environment, or nothing deployed there yet", body = ErrorBody),
    )
)]
pub(crate) async fn image(
    State(state): State<AppState>,
    _: Authorized<ReadResources>,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let params = params(&state, &headers, path).await?;
    let Some(image) = params.image else {
        return Err(ApiError::not_found(format!(
            "nothing was deployed to {}/{} yet",
            params.application, params.environment
        )));
    };
    let mut response = format!("{image}\n").into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Ok(response)
}
