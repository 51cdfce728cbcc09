//! Blob uploads: `POST /v2/{name}/blobs/uploads/` (monolithic with `?digest=`, mount
//! with `?mount=&from=`, or a new session) and `GET|PATCH|PUT|DELETE` on a session.
//!
//! Every byte is hashed once, as it arrives; the hasher's state is saved with the
//! session after each chunk, so the next chunk may reach any replica.

use axum::extract::Request;
use axum::response::Response;
use blobs::{PartRef, new_part_key};
use domain::{Action, Digest, DigestAlgorithm, DigestHasher, Principal, RepoName};
use http::{HeaderMap, StatusCode, header};
use store::{StoreError, Upload};

use super::{check_push_target, header_value, repository_for_push};
use crate::endpoint::UploadId;
use crate::error::{ErrorCode, RegistryError};
use crate::{InFlight, Registry, headers};

fn blob_created(name: &RepoName, digest: &Digest) -> Response {
    let mut response = crate::empty(StatusCode::CREATED);
    let headers = response.headers_mut();
    headers.insert(
        header::LOCATION,
        header_value(&format!("/v2/{name}/blobs/{digest}")),
    );
    headers.insert("docker-content-digest", header_value(&digest.to_string()));
    response
}

fn session_response(status: StatusCode, name: &RepoName, id: &str, size: i64) -> Response {
    let mut response = crate::empty(status);
    let headers = response.headers_mut();
    headers.insert(
        header::LOCATION,
        header_value(&format!("/v2/{name}/blobs/uploads/{id}")),
    );
    headers.insert(
        header::RANGE,
        header_value(&format!("0-{}", (size - 1).max(0))),
    );
    headers.insert("docker-upload-uuid", header_value(id));
    response
}

fn parse_digest_param(value: &str) -> Result<Digest, RegistryError> {
    Digest::parse(value).map_err(RegistryError::digest_invalid)
}

pub(super) async fn start(
    registry: &Registry,
    principal: &Principal,
    name: &RepoName,
    request: Request,
) -> Result<Response, RegistryError> {
    let query = headers::query(request.uri())?;
    if let Some(mount) = query.get("mount") {
        let digest = parse_digest_param(mount)?;
        if let Some(response) =
            try_mount(registry, principal, name, &digest, query.get("from")).await?
        {
            return Ok(response);
        }
        // Not mountable: the spec says to fall back to a new upload session.
    }
    if let Some(digest) = query.get("digest") {
        let digest = parse_digest_param(digest)?;
        return monolithic(registry, principal, name, &digest, request).await;
    }
    let repository = repository_for_push(registry, principal, name).await?;
    let id = UploadId::new();
    registry
        .store
        .uploads()
        .create(id.as_str(), repository.id)
        .await?;
    Ok(session_response(StatusCode::ACCEPTED, name, id.as_str(), 0))
}

async fn try_mount(
    registry: &Registry,
    principal: &Principal,
    name: &RepoName,
    digest: &Digest,
    from: Option<&String>,
) -> Result<Option<Response>, RegistryError> {
    let Some(from) = from else {
        return Ok(None);
    };
    // An unusable `from` is simply not mountable: the spec asks for a new session then.
    let Ok(from) = RepoName::parse(from) else {
        return Ok(None);
    };
    // Mounting reads from `from`: the caller must be allowed to pull it, and a refusal
    // must not reveal whether the blob is there, so it is a plain fallback.
    if auth::authorize(
        principal,
        Action::Pull,
        Some(&from),
        &registry.config.access,
    )
    .is_err()
    {
        return Ok(None);
    }
    let Some(source) = registry.store.repositories().get(&from).await? else {
        return Ok(None);
    };
    // Check before creating the target, so a failed mount leaves no empty repository.
    if registry
        .store
        .blobs()
        .linked(source.id, digest)
        .await?
        .is_none()
    {
        return Ok(None);
    }
    let target = repository_for_push(registry, principal, name).await?;
    match registry
        .store
        .blobs()
        .mount(source.id, target.id, digest)
        .await?
    {
        Some(_) => Ok(Some(blob_created(name, digest))),
        None => Ok(None),
    }
}

async fn monolithic(
    registry: &Registry,
    principal: &Principal,
    name: &RepoName,
    digest: &Digest,
    request: Request,
) -> Result<Response, RegistryError> {
    // Refused before a byte of the body is read.
    refuse_oversized(registry, 0, headers::content_length(request.headers())?)?;
    check_push_target(registry, principal, name).await?;
    let _in_flight = InFlight::start(registry);
    let id = UploadId::new();
    let key = new_part_key();
    let mut hasher = DigestHasher::new(digest.algorithm());
    let body = request.into_body().into_data_stream();
    let size = registry
        .blobs
        .write_part(
            id.as_str(),
            &key,
            0,
            body,
            Some(&mut hasher),
            registry.config.max_blob_bytes,
        )
        .await?;
    let parts = [PartRef { key, size }];
    let actual = hasher.finish();
    if &actual != digest {
        registry.blobs.discard(id.as_str(), &parts).await;
        return Err(digest_mismatch(digest, &actual));
    }
    registry.blobs.commit(id.as_str(), &parts, digest).await?;
    // Created only now, so a refused upload leaves no empty repository behind.
    let repository = repository_for_push(registry, principal, name).await?;
    registry
        .store
        .blobs()
        .record(repository.id, digest, to_i64(size)?)
        .await?;
    Ok(blob_created(name, digest))
}

/// Refuses, before reading it, a body whose announced `length` would take the blob
/// (`already` bytes so far) past the largest blob accepted. Bodies of unknown length
/// are bounded as they stream.
fn refuse_oversized(
    registry: &Registry,
    already: u64,
    length: Option<u64>,
) -> Result<(), RegistryError> {
    let limit = registry.config.max_blob_bytes;
    match length {
        Some(length) if already.saturating_add(length) > limit => Err(RegistryError::new(
            ErrorCode::SizeInvalid,
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the blob would reach {} bytes, more than the maximum blob size of {limit} bytes",
                already.saturating_add(length)
            ),
        )),
        _ => Ok(()),
    }
}

fn digest_mismatch(expected: &Digest, actual: &Digest) -> RegistryError {
    RegistryError::digest_invalid(format!(
        "the uploaded content has digest {actual}, not {expected}"
    ))
    .with_detail(
        serde_json::json!({ "expected": expected.to_string(), "actual": actual.to_string() }),
    )
}

fn to_i64(size: u64) -> Result<i64, RegistryError> {
    i64::try_from(size).map_err(|_| {
        RegistryError::new(
            ErrorCode::SizeInvalid,
            StatusCode::PAYLOAD_TOO_LARGE,
            "blob too large",
        )
    })
}

async fn session(
    registry: &Registry,
    name: &RepoName,
    id: &UploadId,
) -> Result<Upload, RegistryError> {
    // An unknown repository has no sessions; any other failure (the database) is
    // reported as itself, so clients do not restart uploads during an outage.
    registry
        .store
        .uploads()
        .get_in(name, id.as_str())
        .await?
        .ok_or_else(RegistryError::upload_unknown)
}

pub(super) async fn status(
    registry: &Registry,
    name: &RepoName,
    id: &UploadId,
) -> Result<Response, RegistryError> {
    let upload = session(registry, name, id).await?;
    Ok(session_response(
        StatusCode::NO_CONTENT,
        name,
        id.as_str(),
        upload.size,
    ))
}

/// The hasher to continue with: the saved sha256 state, or none if it cannot be
/// resumed (the final PUT then hashes the stored parts again).
fn resumed_hasher(upload: &Upload) -> Option<DigestHasher> {
    match &upload.hash_state {
        Some(state) => DigestHasher::restore_state(state),
        None if upload.size == 0 => Some(DigestHasher::new(DigestAlgorithm::Sha256)),
        None => None,
    }
}

/// Receives one chunk into the session. Returns the session's new size and the part
/// written, if the chunk had any bytes.
async fn receive_chunk(
    registry: &Registry,
    name: &RepoName,
    upload: &Upload,
    request_headers: &HeaderMap,
    body: axum::body::Body,
    hasher: &mut Option<DigestHasher>,
) -> Result<(i64, Option<PartRef>), RegistryError> {
    let range = headers::chunk_range(request_headers)?;
    let length = headers::content_length(request_headers)?;
    // chunk_range guarantees start <= end < u64::MAX, so the length cannot overflow.
    let announced = range.map(|(start, end)| end - start + 1);
    if let Some((start, _)) = range
        && i64::try_from(start).ok() != Some(upload.size)
    {
        return Err(RegistryError::new(
            ErrorCode::BlobUploadInvalid,
            StatusCode::RANGE_NOT_SATISFIABLE,
            format!(
                "chunk starts at {start} but the upload has {} bytes; send the chunk that starts there",
                upload.size
            ),
        )
        .with_header(header::LOCATION, header_value(&format!("/v2/{name}/blobs/uploads/{}", upload.id)))
        .with_header(header::RANGE, header_value(&format!("0-{}", (upload.size - 1).max(0)))));
    }
    if let (Some(announced), Some(length)) = (announced, length)
        && length != announced
    {
        return Err(RegistryError::new(
            ErrorCode::BlobUploadInvalid,
            StatusCode::BAD_REQUEST,
            format!("Content-Range covers {announced} bytes but Content-Length is {length}"),
        ));
    }
    if length == Some(0) {
        return Ok((upload.size, None));
    }
    refuse_oversized(
        registry,
        u64::try_from(upload.size).unwrap_or(0),
        length.or(announced),
    )?;
    let _in_flight = InFlight::start(registry);
    let key = new_part_key();
    let start = u64::try_from(upload.size).unwrap_or(0);
    let size = registry
        .blobs
        .write_part(
            &upload.id,
            &key,
            start,
            body.into_data_stream(),
            hasher.as_mut(),
            registry.config.max_blob_bytes,
        )
        .await?;
    let part = PartRef { key, size };
    if announced.is_some_and(|announced| announced != size) {
        registry
            .blobs
            .discard(&upload.id, std::slice::from_ref(&part))
            .await;
        return Err(RegistryError::new(
            ErrorCode::BlobUploadInvalid,
            StatusCode::BAD_REQUEST,
            format!(
                "Content-Range announced {} bytes but the body had {size}",
                announced.unwrap_or_default()
            ),
        ));
    }
    if size == 0 {
        registry
            .blobs
            .discard(&upload.id, std::slice::from_ref(&part))
            .await;
        return Ok((upload.size, None));
    }
    let state = hasher.as_ref().map(DigestHasher::save_state);
    let appended = registry
        .store
        .uploads()
        .append(
            &upload.id,
            upload.size,
            to_i64(size)?,
            &part.key,
            state.as_deref(),
        )
        .await;
    match appended {
        Ok(()) => Ok((upload.size + to_i64(size)?, Some(part))),
        Err(StoreError::Conflict(_)) => {
            registry
                .blobs
                .discard(&upload.id, std::slice::from_ref(&part))
                .await;
            Err(concurrent_change())
        }
        Err(other) => {
            registry
                .blobs
                .discard(&upload.id, std::slice::from_ref(&part))
                .await;
            Err(other.into())
        }
    }
}

fn concurrent_change() -> RegistryError {
    RegistryError::new(
        ErrorCode::BlobUploadInvalid,
        StatusCode::RANGE_NOT_SATISFIABLE,
        "another request changed this upload at the same time; check the upload's status and resume",
    )
}

pub(super) async fn patch(
    registry: &Registry,
    name: &RepoName,
    id: &UploadId,
    request: Request,
) -> Result<Response, RegistryError> {
    let upload = session(registry, name, id).await?;
    let mut hasher = resumed_hasher(&upload);
    let (parts, body) = request.into_parts();
    let (size, _) =
        receive_chunk(registry, name, &upload, &parts.headers, body, &mut hasher).await?;
    Ok(session_response(
        StatusCode::ACCEPTED,
        name,
        id.as_str(),
        size,
    ))
}

pub(super) async fn finish(
    registry: &Registry,
    name: &RepoName,
    id: &UploadId,
    request: Request,
) -> Result<Response, RegistryError> {
    let query = headers::query(request.uri())?;
    let digest = query
        .get("digest")
        .ok_or_else(|| {
            RegistryError::digest_invalid(
                "finishing an upload needs ?digest=<digest> of the whole blob",
            )
        })
        .and_then(|d| parse_digest_param(d))?;
    let upload = session(registry, name, id).await?;
    let mut hasher = resumed_hasher(&upload);
    let (request_parts, body) = request.into_parts();
    let (size, last_part) = receive_chunk(
        registry,
        name,
        &upload,
        &request_parts.headers,
        body,
        &mut hasher,
    )
    .await?;
    // The blob is exactly the parts this request saw, plus its own final chunk;
    // finishing below fails if any other request touched the session meanwhile.
    let mut parts: Vec<PartRef> = upload
        .parts
        .iter()
        .map(|p| PartRef {
            key: p.key.clone(),
            size: u64::try_from(p.size).unwrap_or(0),
        })
        .collect();
    parts.extend(last_part);
    // The parts must tile the blob exactly: anything else means the session changed
    // under this request, and committing would store bytes nobody hashed.
    let covered: u64 = parts.iter().map(|p| p.size).sum();
    let contiguous = upload.parts.iter().try_fold(0i64, |offset, part| {
        (part.start == offset).then_some(offset + part.size)
    });
    if contiguous.is_none() || i64::try_from(covered).ok() != Some(size) {
        return Err(concurrent_change());
    }
    let actual = match hasher {
        Some(hasher) if hasher.algorithm() == digest.algorithm() => hasher.finish(),
        _ => {
            registry
                .blobs
                .hash_parts(&upload.id, &parts, digest.algorithm())
                .await?
        }
    };
    if actual != digest {
        registry.blobs.discard(&upload.id, &parts).await;
        registry.store.uploads().delete(&upload.id).await?;
        return Err(digest_mismatch(&digest, &actual));
    }
    // The committed bytes are exactly the verified parts, so committing before the
    // session is finished is safe; finishing then lets exactly one request succeed.
    registry.blobs.commit(&upload.id, &parts, &digest).await?;
    if !registry
        .store
        .uploads()
        .finish(&upload.id, size, &digest)
        .await?
    {
        return Err(concurrent_change());
    }
    Ok(blob_created(name, &digest))
}

pub(super) async fn cancel(
    registry: &Registry,
    name: &RepoName,
    id: &UploadId,
) -> Result<Response, RegistryError> {
    let upload = session(registry, name, id).await?;
    registry.blobs.discard_all(&upload.id).await?;
    registry.store.uploads().delete(&upload.id).await?;
    Ok(crate::empty(StatusCode::NO_CONTENT))
}
