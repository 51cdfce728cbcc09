//! One function per endpoint, chosen by an exhaustive match on [`Endpoint`].

mod blobs;
mod listing;
mod manifests;
mod uploads;

use axum::extract::Request;
use axum::response::Response;
use domain::{Principal, RepoName};
use http::{HeaderValue, Method, StatusCode};
use store::Repository;

use crate::RepositoryCreation;
use crate::error::{ErrorCode, RegistryError};
use crate::{Endpoint, Registry};

pub(crate) async fn handle(
    registry: &Registry,
    principal: &Principal,
    endpoint: Endpoint,
    request: Request,
) -> Result<Response, RegistryError> {
    let head = request.method() == Method::HEAD;
    match endpoint {
        Endpoint::Base => {
            let mut response = crate::empty(StatusCode::OK);
            if !head {
                *response.body_mut() = axum::body::Body::from("{}");
                response
                    .headers_mut()
                    .insert(http::header::CONTENT_LENGTH, HeaderValue::from_static("2"));
            }
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            Ok(response)
        }
        Endpoint::Catalog => listing::catalog(registry, request).await,
        Endpoint::GetManifest { name, reference } => {
            manifests::get(registry, &name, &reference, head).await
        }
        Endpoint::PutManifest { name, reference } => {
            manifests::put(registry, principal, &name, &reference, request).await
        }
        Endpoint::DeleteManifest { name, reference } => {
            manifests::delete(registry, principal, &name, &reference).await
        }
        Endpoint::GetBlob { name, digest } => {
            blobs::get(registry, &name, &digest, head, request.headers()).await
        }
        Endpoint::DeleteBlob { name, digest } => {
            blobs::delete(registry, principal, &name, &digest).await
        }
        Endpoint::StartUpload { name } => uploads::start(registry, principal, &name, request).await,
        Endpoint::UploadStatus { name, id } => uploads::status(registry, &name, &id).await,
        Endpoint::PatchUpload { name, id } => uploads::patch(registry, &name, &id, request).await,
        Endpoint::FinishUpload { name, id } => uploads::finish(registry, &name, &id, request).await,
        Endpoint::CancelUpload { name, id } => uploads::cancel(registry, &name, &id).await,
        Endpoint::ListTags { name } => listing::tags(registry, &name, request).await,
        Endpoint::Referrers { name, digest } => {
            listing::referrers(registry, &name, &digest, request).await
        }
    }
}

/// The repository, which must exist.
async fn existing_repository(
    registry: &Registry,
    name: &RepoName,
) -> Result<Repository, RegistryError> {
    registry
        .store
        .repositories()
        .get(name)
        .await?
        .ok_or_else(|| RegistryError::name_unknown(name))
}

/// Refuses a push to a repository that does not exist unless the creation policy lets
/// `principal` create it, with a message that says how repositories are made.
async fn check_push_target(
    registry: &Registry,
    principal: &Principal,
    name: &RepoName,
) -> Result<(), RegistryError> {
    if registry.store.repositories().get(name).await?.is_some() {
        return Ok(());
    }
    creation_allowed(registry, principal, name)
}

/// The repository a push writes to, created on first push where the creation policy
/// allows it. An existing repository costs one lookup.
async fn repository_for_push(
    registry: &Registry,
    principal: &Principal,
    name: &RepoName,
) -> Result<Repository, RegistryError> {
    if let Some(existing) = registry.store.repositories().get(name).await? {
        return Ok(existing);
    }
    creation_allowed(registry, principal, name)?;
    Ok(registry
        .store
        .repositories()
        .get_or_create(name, principal.display_name())
        .await?)
}

fn creation_allowed(
    registry: &Registry,
    principal: &Principal,
    name: &RepoName,
) -> Result<(), RegistryError> {
    let policy = crate::policy::creation_policy(
        &registry.config.namespace_creation,
        registry.config.repository_creation,
        name,
    );
    let allowed = match policy {
        RepositoryCreation::Never => false,
        RepositoryCreation::Admins => matches!(principal, Principal::User { admin: true, .. }),
    };
    if allowed {
        return Ok(());
    }
    Err(RegistryError::new(
        ErrorCode::Denied,
        StatusCode::FORBIDDEN,
        format!(
            "repository {name} does not exist and pushing does not create it here; declare an Application \
             with `repository: {name}` and run `gantry apply`"
        ),
    ))
}

fn header_value(text: &str) -> HeaderValue {
    // Every value passed here is built from validated names, digests and numbers.
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}
