//! `GET|HEAD|DELETE /v2/{name}/blobs/{digest}`. With an S3 blob store configured to
//! redirect, a GET of a linked blob is a `307` to a presigned URL of the bucket.

use axum::body::Body;
use axum::response::Response;
use domain::{Digest, Principal, RepoName};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use store::{InRepository, UnlinkOutcome};

use super::{existing_repository, header_value};
use crate::Registry;
use crate::error::{ErrorCode, RegistryError};
use crate::headers::{ByteRange, byte_range};

fn blob_unknown(digest: &Digest, name: &RepoName) -> RegistryError {
    RegistryError::new(
        ErrorCode::BlobUnknown,
        StatusCode::NOT_FOUND,
        format!("blob {digest} is not in repository {name}"),
    )
}

pub(super) async fn get(
    registry: &Registry,
    name: &RepoName,
    digest: &Digest,
    head: bool,
    request_headers: &HeaderMap,
) -> Result<Response, RegistryError> {
    let blob = match registry.store.blobs().linked_in(name, digest).await? {
        InRepository::Found(blob) => blob,
        InRepository::Missing => return Err(blob_unknown(digest, name)),
        InRepository::NoRepository => return Err(RegistryError::name_unknown(name)),
    };
    // A client told the blob exists may skip uploading it and reference it: a blob a
    // collection marked deletable is needed again, and one condemned meanwhile is
    // reported missing (the client then uploads it).
    if blob.deletable && !registry.store.blobs().touch(digest).await? {
        return Err(blob_unknown(digest, name));
    }
    let size = u64::try_from(blob.size).unwrap_or(0);
    let (status, range) = match byte_range(request_headers, size) {
        ByteRange::Whole => (StatusCode::OK, None),
        ByteRange::Part { first, last } => (StatusCode::PARTIAL_CONTENT, Some((first, last))),
        ByteRange::Unsatisfiable => {
            return Err(RegistryError::new(
                ErrorCode::Unsupported,
                StatusCode::RANGE_NOT_SATISFIABLE,
                format!("the requested range is not within the blob's {size} bytes"),
            )
            .with_header(
                header::CONTENT_RANGE,
                header_value(&format!("bytes */{size}")),
            ));
        }
    };
    if !head
        && size > 0
        && let Some(url) = registry.blobs.download_url(digest).await?
    {
        // The store serves the bytes (and the range, which the client sends again).
        let mut response = crate::empty(StatusCode::TEMPORARY_REDIRECT);
        let headers = response.headers_mut();
        headers.insert(header::LOCATION, header_value(&url));
        headers.insert("docker-content-digest", header_value(&digest.to_string()));
        return Ok(response);
    }
    let length = range.map_or(size, |(first, last)| last - first + 1);
    let mut response = crate::empty(status);
    if !head && length > 0 {
        let body = registry.blobs.get(digest, range).await?;
        *response.body_mut() = Body::from_stream(body);
    }
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_LENGTH, header_value(&length.to_string()));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert("docker-content-digest", header_value(&digest.to_string()));
    headers.insert(header::ETAG, header_value(&format!("\"{digest}\"")));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=31536000"),
    );
    if let Some((first, last)) = range {
        headers.insert(
            header::CONTENT_RANGE,
            header_value(&format!("bytes {first}-{last}/{size}")),
        );
    }
    Ok(response)
}

pub(super) async fn delete(
    registry: &Registry,
    principal: &Principal,
    name: &RepoName,
    digest: &Digest,
) -> Result<Response, RegistryError> {
    let repository = existing_repository(registry, name).await?;
    match registry
        .store
        .blobs()
        .unlink(&repository, digest, principal.display_name())
        .await?
    {
        UnlinkOutcome::Unlinked => Ok(crate::empty(StatusCode::ACCEPTED)),
        UnlinkOutcome::NotLinked => Err(blob_unknown(digest, name)),
        // 405 is what the spec allows for a refused blob deletion.
        UnlinkOutcome::StillReferenced { manifest } => Err(RegistryError::new(
            ErrorCode::Unsupported,
            StatusCode::METHOD_NOT_ALLOWED,
            format!(
                "blob {digest} is used by manifest {manifest} of {name}; delete the manifest first"
            ),
        )),
    }
}
