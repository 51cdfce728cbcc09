//! `GET /builds/{app}/{sha}.zip`: a static site's build archive by its commit, for
//! tools that fetch zips rather than OCI artifacts. It is the zip layer of the site
//! artifact tagged with that commit in the application's repository, streamed as
//! stored (its digest in `Docker-Content-Digest`); reading it needs what pulling the
//! repository needs.

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use domain::{Action, RepoName, Tag};
use http::{HeaderValue, header};

use super::error::ApiError;
use super::extract::Authenticated;
use super::refusal;
use super::types::ErrorBody;
use crate::AppState;

/// A static site's build archive, by commit.
#[utoipa::path(
    get,
    path = "/builds/{app}/{file}",
    params(
        ("app" = String, Path, description = "A static-site application"),
        ("file" = String, Path, description = "`COMMIT.zip`: the commit the build was pushed with (`gantry push site`)")
    ),
    responses(
        (status = 200, description = "The zip archive", content_type = "application/zip"),
        (status = 400, description = "Not `COMMIT.zip`", body = ErrorBody),
        (status = 401, description = "No or invalid credentials", body = ErrorBody),
        (status = 403, description = "The caller may not pull the application's repository", body = ErrorBody),
        (status = 404, description = "No such application, or no site build for that commit", body = ErrorBody),
    )
)]
pub(crate) async fn site_zip(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let config = state.registry.config();
    // Who may pull nothing learns nothing, not even which applications exist or how
    // a build is asked for.
    if let Err(denied @ auth::Denied::Unauthenticated { .. }) =
        auth::authorize(&principal, Action::Pull, None, &config.access)
    {
        return Err(refusal(&config.realm, &denied));
    }
    let Path((application, file)) = path.map_err(|r| ApiError::bad_request(r.body_text()))?;
    let tag = file
        .strip_suffix(".zip")
        .and_then(|commit| Tag::parse(commit).ok())
        .ok_or_else(|| {
            ApiError::bad_request("ask for COMMIT.zip, e.g. /builds/web-app/3f2a9c1.zip")
        })?;
    let (declared, _) = state.engine.declared(&application).await?;
    let repository: &RepoName = &declared.repository;
    auth::authorize_repository(
        &state.store,
        &principal,
        Action::Pull,
        Some(repository),
        &config.access,
    )
    .await?
    .map_err(|denied| refusal(&config.realm, &denied))?;
    let missing = || {
        ApiError::not_found(format!(
            "{application} has no site build tagged {} in {repository}",
            tag.as_str()
        ))
    };
    let stored = state
        .store
        .repositories()
        .get(repository)
        .await?
        .ok_or_else(missing)?;
    let manifest = state
        .store
        .manifests()
        .by_tag(stored.id, &tag)
        .await?
        .ok_or_else(missing)?;
    let layer = site_archive::read_site_manifest(&manifest.content).map_err(|error| {
        ApiError::not_found(format!(
            "{repository}:{} is not a site build: {error}",
            tag.as_str()
        ))
    })?;
    let body = state
        .blobs
        .get(&layer.digest, None)
        .await
        .map_err(|error| ApiError::internal("reading a site archive", &error))?;
    let length = body.len();
    let mut response = Body::from_stream(body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/zip"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    if let Ok(value) = HeaderValue::from_str(&layer.digest.to_string()) {
        headers.insert("docker-content-digest", value);
    }
    if let Ok(value) = HeaderValue::from_str(&format!(
        "attachment; filename=\"{application}-{}.zip\"",
        tag.as_str()
    )) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}
