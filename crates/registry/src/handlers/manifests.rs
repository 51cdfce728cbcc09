//! `GET|HEAD|PUT|DELETE /v2/{name}/manifests/{reference}`.

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use domain::{Digest, Principal, Reference, RepoName, Tag};
use http::{StatusCode, header};
use store::{
    DeleteManifestOutcome, DeleteTagOutcome, InRepository, NewManifest, PutManifestOutcome,
    TagPolicy,
};

use super::{existing_repository, header_value, repository_for_push};
use crate::error::{ErrorCode, RegistryError};
use crate::{Registry, headers, manifest, policy};

fn manifest_unknown(reference: &Reference) -> RegistryError {
    RegistryError::manifest_unknown(reference)
}

pub(super) async fn get(
    registry: &Registry,
    name: &RepoName,
    reference: &Reference,
    head: bool,
) -> Result<Response, RegistryError> {
    let record = match registry
        .store
        .manifests()
        .in_repository(name, reference)
        .await?
    {
        InRepository::Found(record) => record,
        InRepository::Missing => return Err(manifest_unknown(reference)),
        InRepository::NoRepository => return Err(RegistryError::name_unknown(name)),
    };
    if registry.config.quarantine_denies_pulls
        && let Some(quarantine) = registry
            .store
            .quarantines()
            .in_repository(name, &record.digest)
            .await?
    {
        return Err(RegistryError::new(
            ErrorCode::Denied,
            StatusCode::FORBIDDEN,
            format!(
                "{} is quarantined in {} (by {}: {}); it is not served until the quarantine is lifted",
                record.digest, quarantine.application, quarantine.by, quarantine.reason
            ),
        )
        .with_detail(serde_json::json!({
            "digest": record.digest.to_string(),
            "application": quarantine.application,
            "quarantined_by": quarantine.by,
            "reason": quarantine.reason,
        })));
    }
    let length = record.content.len();
    let mut response = crate::empty(StatusCode::OK);
    if !head {
        *response.body_mut() = Body::from(record.content);
    }
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_LENGTH, header_value(&length.to_string()));
    headers.insert(header::CONTENT_TYPE, header_value(&record.media_type));
    headers.insert(
        "docker-content-digest",
        header_value(&record.digest.to_string()),
    );
    headers.insert(
        header::ETAG,
        header_value(&format!("\"{}\"", record.digest)),
    );
    Ok(response)
}

pub(super) async fn put(
    registry: &Registry,
    principal: &Principal,
    name: &RepoName,
    reference: &Reference,
    request: Request,
) -> Result<Response, RegistryError> {
    let limit = registry.config.max_manifest_bytes;
    let too_large = || {
        RegistryError::new(
            ErrorCode::SizeInvalid,
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the manifest exceeds the limit of {limit} bytes"),
        )
    };
    if headers::content_length(request.headers())?.is_some_and(|length| length > limit as u64) {
        return Err(too_large());
    }
    let content_type = headers::content_type(request.headers())?;
    let body = axum::body::to_bytes(request.into_body(), limit)
        .await
        .map_err(|error| {
            let is_limit = std::error::Error::source(&error)
                .is_some_and(|source| source.is::<http_body_util::LengthLimitError>());
            if is_limit {
                too_large()
            } else {
                RegistryError::manifest_invalid(format!(
                    "the manifest body could not be read: {error}"
                ))
            }
        })?;
    let parsed = manifest::parse(content_type.as_deref(), &body)?;
    let digest = match reference {
        Reference::Digest(expected) => {
            let actual = Digest::of(expected.algorithm(), &body);
            if &actual != expected {
                return Err(RegistryError::digest_invalid(format!(
                    "the manifest's digest is {actual}, not {expected} as the URL says"
                )));
            }
            actual
        }
        Reference::Tag(_) => Digest::sha256_of(&body),
    };
    let repository = repository_for_push(registry, principal, name).await?;
    if let Some(layer) = &parsed.site_archive {
        crate::site_archive::check(registry, &repository, name, layer).await?;
    }
    let tag = match reference {
        Reference::Tag(tag) => Some((
            tag,
            policy::tag_policy(&registry.config.mutable_tags, name, tag),
        )),
        Reference::Digest(_) => None,
    };
    let subject = parsed.subject_text.clone();
    let fields = parsed.fields;
    let new = NewManifest {
        digest: digest.clone(),
        media_type: parsed.media_type,
        artifact_type: parsed.artifact_type,
        subject: parsed.subject,
        annotations: parsed.annotations,
        content: body.to_vec(),
        children: parsed.children,
    };
    match registry
        .store
        .manifests()
        .put(&repository, &new, tag, principal.display_name())
        .await?
    {
        PutManifestOutcome::Stored => {}
        PutManifestOutcome::MissingBlob(missing) => {
            return Err(RegistryError::new(
                ErrorCode::ManifestBlobUnknown,
                StatusCode::BAD_REQUEST,
                format!("blob {missing} is not in repository {name}; push it before the manifest"),
            )
            .with_detail(serde_json::json!({ "digest": missing.to_string() })));
        }
        PutManifestOutcome::MissingManifest(missing) => {
            return Err(RegistryError::new(
                ErrorCode::ManifestBlobUnknown,
                StatusCode::BAD_REQUEST,
                format!("manifest {missing} listed by the index is not in repository {name}; push it first"),
            )
            .with_detail(serde_json::json!({ "digest": missing.to_string() })));
        }
        PutManifestOutcome::SizeMismatch { child, stored } => {
            let field = fields
                .iter()
                .find(|(_, declared)| declared == &child)
                .map_or("a descriptor", |(field, _)| field.as_str());
            let (kind, digest, size) = match &child {
                store::ManifestChild::Blob { digest, size } => ("blob", digest, size),
                store::ManifestChild::Manifest { digest, size } => ("manifest", digest, size),
            };
            return Err(RegistryError::manifest_invalid(format!(
                "{field} states size {size} for {digest}, but the stored {kind} is {stored} bytes; \
                 clients could not pull this manifest"
            ))
            .with_detail(serde_json::json!({
                "descriptor": field,
                "digest": digest.to_string(),
                "size": size,
                "stored": stored,
            })));
        }
        PutManifestOutcome::TagImmutable { existing } => {
            let tag = tag.map(|(t, _)| t.to_string()).unwrap_or_default();
            return Err(RegistryError::new(
                ErrorCode::Denied,
                StatusCode::CONFLICT,
                format!(
                    "tag {tag} of {name} is immutable and already points at {existing}; push under a new tag, \
                     or allow mutable tags for this repository in the configuration"
                ),
            )
            .with_detail(serde_json::json!({ "tag": tag, "existing": existing.to_string(), "pushed": digest.to_string() })));
        }
    }
    tracing::info!(repository = %name, %reference, %digest, principal = principal.display_name(), "manifest pushed");
    let mut response = crate::empty(StatusCode::CREATED);
    let headers = response.headers_mut();
    headers.insert(
        header::LOCATION,
        header_value(&format!("/v2/{name}/manifests/{digest}")),
    );
    headers.insert("docker-content-digest", header_value(&digest.to_string()));
    if let Some(subject) = subject {
        headers.insert("oci-subject", header_value(&subject));
    }
    Ok(response)
}

/// Deleting an immutable tag (or the manifest it names) would let it be pushed again
/// with other bytes, so it is refused like any other move of the tag.
fn immutable_tag(name: &RepoName, tag: &str) -> RegistryError {
    RegistryError::new(
        ErrorCode::Unsupported,
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "tag {tag} of {name} is immutable and cannot be deleted; \
             allow mutable tags for this repository in the configuration to remove it"
        ),
    )
}

/// A reference that a promotion or deployment depends on cannot be deleted.
fn in_use(name: &RepoName, reference: &str, by: &str) -> RegistryError {
    RegistryError::new(
        ErrorCode::Denied,
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "{name}:{reference} cannot be deleted: {by} references it, and rollbacks and the \
             audit log need those bytes"
        ),
    )
}

pub(super) async fn delete(
    registry: &Registry,
    principal: &Principal,
    name: &RepoName,
    reference: &Reference,
) -> Result<Response, RegistryError> {
    let repository = existing_repository(registry, name).await?;
    match reference {
        Reference::Tag(tag) => {
            if policy::tag_policy(&registry.config.mutable_tags, name, tag) == TagPolicy::Immutable
            {
                return Err(immutable_tag(name, tag.as_str()));
            }
            match registry
                .store
                .manifests()
                .delete_tag(&repository, tag, principal.display_name())
                .await?
            {
                DeleteTagOutcome::Deleted => {}
                DeleteTagOutcome::NotFound => return Err(manifest_unknown(reference)),
                DeleteTagOutcome::InUse { by } => return Err(in_use(name, tag.as_str(), &by)),
            }
        }
        Reference::Digest(digest) => match registry
            .store
            .manifests()
            .delete(&repository, digest, principal.display_name(), |tag| {
                Tag::parse(tag).is_ok_and(|tag| {
                    policy::tag_policy(&registry.config.mutable_tags, name, &tag)
                        == TagPolicy::Immutable
                })
            })
            .await?
        {
            DeleteManifestOutcome::Deleted => {}
            DeleteManifestOutcome::NotFound => return Err(manifest_unknown(reference)),
            DeleteManifestOutcome::StillReferenced { by } => {
                return Err(RegistryError::new(
                    ErrorCode::Unsupported,
                    StatusCode::METHOD_NOT_ALLOWED,
                    format!("manifest {digest} is listed by index {by}; delete the index first"),
                ));
            }
            DeleteManifestOutcome::ProtectedTag { tag } => return Err(immutable_tag(name, &tag)),
            DeleteManifestOutcome::InUse { by } => {
                return Err(in_use(name, &digest.to_string(), &by));
            }
        },
    }
    Ok(crate::empty(StatusCode::ACCEPTED))
}
