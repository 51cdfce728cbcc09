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

use crate::error::RegistryError;
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

/// The repository a push writes to, created on first push. The caller is authorized to
/// push; only principals who may create repositories get that far for a new name.
async fn repository_for_push(
    registry: &Registry,
    name: &RepoName,
) -> Result<Repository, RegistryError> {
    Ok(registry.store.repositories().get_or_create(name).await?)
}

fn header_value(text: &str) -> HeaderValue {
    // Every value passed here is built from validated names, digests and numbers.
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}
