//! Blob uploads: `POST /v2/{name}/blobs/uploads/` (monolithic with `?digest=`, mount
//! with `?mount=&from=`, or a new session) and `GET|PATCH|PUT|DELETE` on a session.
//!
//! Every byte is hashed once, as it arrives; the hasher's state is saved with the
//! session after each chunk, so the next chunk may reach any replica.
//!
//! A request writing to a session (a `PATCH`, or the `PUT` that finishes it) claims
//! it first: one writer at a time, renewed every [`RENEW_EVERY`] while it writes, and
//! lapsing [`CLAIM_FOR`] after the last renewal if its replica died. A second request
//! meanwhile is told to check the session's status and resume.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use axum::extract::Request;
use axum::response::Response;
use blobs::{BlobError, Chunk, PartRef, Staged, new_part_key};
use domain::{Action, Digest, DigestAlgorithm, DigestHasher, Principal, RepoName};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use store::{
    Append, FinishOutcome, Reservation, Store, StoreError, Upload, UploadPart, now_millis,
};

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
    let parts = [PartRef::object(key, size)];
    let actual = hasher.finish();
    if &actual != digest {
        registry.blobs.discard(id.as_str(), &parts).await;
        return Err(digest_mismatch(digest, &actual));
    }
    let staged = Staged {
        upload_id: id.as_str(),
        multipart: None,
        parts: &parts,
    };
    let generation = match reserve(registry, digest, to_i64(size)?).await {
        Ok(generation) => generation,
        Err(error) => {
            registry.blobs.discard(id.as_str(), &parts).await;
            return Err(error);
        }
    };
    registry.blobs.commit(&staged, digest, false, None).await?;
    // Created only now, so a refused upload leaves no empty repository behind.
    let repository = repository_for_push(registry, principal, name).await?;
    if !registry
        .store
        .blobs()
        .link_reserved(repository.id, digest, generation)
        .await?
    {
        return Err(reservation_lapsed(digest));
    }
    Ok(blob_created(name, digest))
}

/// How long an upload waits for a collection pass to finish deleting the object of a
/// blob it is uploading again, before asking the client to retry.
const CONDEMNED_WAIT: Duration = Duration::from_secs(10);

/// Reserves the blob's row before its bytes are placed (see `store::Blobs::reserve`),
/// so no collection deletes them before the upload links them. A blob a collection is
/// deleting right now is waited for: its row goes as soon as its object has.
async fn reserve(registry: &Registry, digest: &Digest, size: i64) -> Result<i64, RegistryError> {
    let deadline = tokio::time::Instant::now() + CONDEMNED_WAIT;
    loop {
        match registry.store.blobs().reserve(digest, size).await? {
            Reservation::Reserved { generation } => return Ok(generation),
            Reservation::Condemned if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Reservation::Condemned => {
                return Err(RegistryError::new(
                    ErrorCode::Unavailable,
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "garbage collection is deleting an earlier copy of blob {digest}; retry the upload"
                    ),
                )
                .with_header(header::RETRY_AFTER, HeaderValue::from_static("10")));
            }
        }
    }
}

/// The blob's reservation lapsed while its bytes were placed (slower than the
/// collection's grace window): they may be gone, so the upload is not acknowledged.
fn reservation_lapsed(digest: &Digest) -> RegistryError {
    RegistryError::new(
        ErrorCode::Unavailable,
        StatusCode::SERVICE_UNAVAILABLE,
        format!("blob {digest} was collected while it was being stored; upload it again"),
    )
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

/// How long a claim on a session lasts unless renewed.
const CLAIM_FOR: Duration = Duration::from_secs(60);
/// How often a writer renews its claim.
const RENEW_EVERY: Duration = Duration::from_secs(20);
/// How long before its claim could lapse a writer stops writing (room for the
/// replicas' clocks to differ).
const CLAIM_MARGIN: Duration = Duration::from_secs(10);

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// A request's claim on an upload session: the right to write its parts while it
/// lasts. Renewed in the background until released or dropped.
struct SessionClaim {
    store: Store,
    upload_id: String,
    token: String,
    /// Until when (milliseconds since the epoch, this machine's clock) the holder may
    /// write; 0 once it lost the session.
    valid_until: Arc<AtomicI64>,
    renewer: tokio::task::JoinHandle<()>,
    /// Whether the claim was let go (released, or given up with the session).
    ended: bool,
}

impl SessionClaim {
    /// Claims `upload` if it is still as this request read it and no one else holds it.
    async fn take(registry: &Registry, upload: &Upload) -> Result<SessionClaim, RegistryError> {
        let token = uuid::Uuid::new_v4().simple().to_string();
        let now = now_millis();
        if !registry
            .store
            .uploads()
            .claim(&upload.id, upload.size, &token, now + millis(CLAIM_FOR))
            .await?
        {
            return Err(concurrent_change());
        }
        let valid_until = Arc::new(AtomicI64::new(now + millis(CLAIM_FOR - CLAIM_MARGIN)));
        let renewer = tokio::spawn({
            let (store, upload_id, token) =
                (registry.store.clone(), upload.id.clone(), token.clone());
            let valid_until = valid_until.clone();
            async move {
                loop {
                    tokio::time::sleep(RENEW_EVERY).await;
                    let at = now_millis();
                    match store
                        .uploads()
                        .renew(&upload_id, &token, at + millis(CLAIM_FOR))
                        .await
                    {
                        Ok(true) => {
                            valid_until
                                .store(at + millis(CLAIM_FOR - CLAIM_MARGIN), Ordering::SeqCst);
                        }
                        Ok(false) => {
                            valid_until.store(0, Ordering::SeqCst);
                            return;
                        }
                        // The claim runs out by itself unless a later renewal succeeds.
                        Err(error) => {
                            tracing::warn!(%error, upload_id, "could not renew an upload session's claim");
                        }
                    }
                }
            }
        });
        Ok(SessionClaim {
            store: registry.store.clone(),
            upload_id: upload.id.clone(),
            token,
            valid_until,
            renewer,
            ended: false,
        })
    }

    /// Marks the claim let go by the statement that recorded the chunk or finished
    /// the session.
    fn ended(mut self) {
        self.ended = true;
    }

    /// Lets the session go (best effort: an unreleased claim lapses by itself).
    async fn release(mut self) {
        self.ended = true;
        self.renewer.abort();
        if let Err(error) = self
            .store
            .uploads()
            .release(&self.upload_id, &self.token)
            .await
        {
            tracing::warn!(%error, upload_id = self.upload_id, "could not release an upload session");
        }
    }
}

impl Drop for SessionClaim {
    fn drop(&mut self) {
        self.renewer.abort();
        if self.ended {
            return;
        }
        // The request went away mid-chunk (the client disconnected): its part uploads
        // were stopped; let the session go once any of them the store was still
        // taking in is surely done, rather than at the claim's lapse.
        let (store, upload_id, token) = (
            self.store.clone(),
            self.upload_id.clone(),
            self.token.clone(),
        );
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                tokio::time::sleep(CLAIM_MARGIN).await;
                if let Err(error) = store.uploads().release(&upload_id, &token).await {
                    tracing::warn!(%error, upload_id, "could not release an upload session");
                }
            });
        }
    }
}

impl blobs::Claim for SessionClaim {
    fn remaining(&self) -> Option<Duration> {
        let left = self.valid_until.load(Ordering::SeqCst) - now_millis();
        (left > 0).then(|| Duration::from_millis(u64::try_from(left).unwrap_or(0)))
    }

    fn begin_multipart<'a>(&'a self, multipart: &'a str) -> BoxFuture<'a, Result<bool, BlobError>> {
        async move {
            self.store
                .uploads()
                .begin_multipart(&self.upload_id, &self.token, multipart)
                .await
                .map_err(|error| BlobError::Session(error.to_string()))
        }
        .boxed()
    }
}

/// The session's parts as the blob store knows them.
fn stored_parts(upload: &Upload) -> Vec<PartRef> {
    upload
        .parts
        .iter()
        .map(|part| PartRef {
            key: part.key.clone(),
            size: u64::try_from(part.size).unwrap_or(0),
            number: part.number.and_then(|n| u32::try_from(n).ok()),
        })
        .collect()
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

/// What a chunk's headers say of its body.
#[derive(Debug, Clone, Copy)]
struct ChunkHeaders {
    /// The length its `Content-Range` announces.
    announced: Option<u64>,
    /// Whether `Content-Length` says it is empty.
    empty: bool,
}

/// Checks a chunk's headers against the session before anything is claimed or read.
fn check_chunk(
    registry: &Registry,
    name: &RepoName,
    upload: &Upload,
    request_headers: &HeaderMap,
) -> Result<ChunkHeaders, RegistryError> {
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
    if length != Some(0) {
        refuse_oversized(
            registry,
            u64::try_from(upload.size).unwrap_or(0),
            length.or(announced),
        )?;
    }
    Ok(ChunkHeaders {
        announced,
        empty: length == Some(0),
    })
}

/// Receives one chunk into the session, which `claim` holds; `release` lets the
/// session go when the chunk is recorded. Returns the session's new size, and whether
/// a chunk was recorded (an empty body records nothing).
async fn receive_chunk(
    registry: &Registry,
    upload: &Upload,
    chunk_headers: ChunkHeaders,
    body: axum::body::Body,
    hasher: &mut Option<DigestHasher>,
    claim: &SessionClaim,
    release: bool,
) -> Result<(i64, bool), RegistryError> {
    if chunk_headers.empty {
        return Ok((upload.size, false));
    }
    let announced = chunk_headers.announced;
    let _in_flight = InFlight::start(registry);
    let start = u64::try_from(upload.size).unwrap_or(0);
    let parts = stored_parts(upload);
    let staged = Staged {
        upload_id: &upload.id,
        multipart: upload.multipart.as_deref(),
        parts: &parts,
    };
    let chunk = registry
        .blobs
        .write_chunk(
            &staged,
            start,
            body.into_data_stream(),
            hasher.as_mut(),
            registry.config.max_blob_bytes,
            claim,
        )
        .await
        .map_err(|error| match error {
            BlobError::ClaimLost => concurrent_change(),
            other => other.into(),
        })?;
    if announced.is_some_and(|announced| announced != chunk.size) {
        registry.blobs.discard_chunk(&upload.id, &chunk).await;
        return Err(RegistryError::new(
            ErrorCode::BlobUploadInvalid,
            StatusCode::BAD_REQUEST,
            format!(
                "Content-Range announced {} bytes but the body had {}",
                announced.unwrap_or_default(),
                chunk.size
            ),
        ));
    }
    if chunk.size == 0 {
        registry.blobs.discard_chunk(&upload.id, &chunk).await;
        return Ok((upload.size, false));
    }
    let state = hasher.as_ref().map(DigestHasher::save_state);
    match record_chunk(registry, upload, &chunk, claim, state.as_deref(), release).await {
        Ok(()) => {
            registry.blobs.discard(&upload.id, &chunk.removed).await;
            Ok((upload.size + to_i64(chunk.size)?, true))
        }
        Err(StoreError::Conflict(_)) => {
            registry.blobs.discard_chunk(&upload.id, &chunk).await;
            Err(concurrent_change())
        }
        Err(other) => {
            registry.blobs.discard_chunk(&upload.id, &chunk).await;
            Err(other.into())
        }
    }
}

async fn record_chunk(
    registry: &Registry,
    upload: &Upload,
    chunk: &Chunk,
    claim: &SessionClaim,
    hash_state: Option<&[u8]>,
    release: bool,
) -> Result<(), StoreError> {
    let mut start = i64::try_from(chunk.start).unwrap_or(i64::MAX);
    let added: Vec<UploadPart> = chunk
        .added
        .iter()
        .map(|part| {
            let size = i64::try_from(part.size).unwrap_or(i64::MAX);
            let row = UploadPart {
                start,
                size,
                key: part.key.clone(),
                number: part.number.map(i64::from),
            };
            start += size;
            row
        })
        .collect();
    let removed: Vec<i64> = upload
        .parts
        .iter()
        .filter(|part| chunk.removed.iter().any(|gone| gone.key == part.key))
        .map(|part| part.start)
        .collect();
    registry
        .store
        .uploads()
        .append(Append {
            id: &upload.id,
            writer: &claim.token,
            expected_size: upload.size,
            added_size: i64::try_from(chunk.size).unwrap_or(i64::MAX),
            removed: &removed,
            added: &added,
            hash_state,
            release,
        })
        .await
}

fn concurrent_change() -> RegistryError {
    RegistryError::new(
        ErrorCode::BlobUploadInvalid,
        StatusCode::RANGE_NOT_SATISFIABLE,
        "another request changed or is writing to this upload at the same time; check the upload's status and resume",
    )
}

pub(super) async fn patch(
    registry: &Registry,
    name: &RepoName,
    id: &UploadId,
    request: Request,
) -> Result<Response, RegistryError> {
    let upload = session(registry, name, id).await?;
    let (parts, body) = request.into_parts();
    let chunk_headers = check_chunk(registry, name, &upload, &parts.headers)?;
    if chunk_headers.empty {
        return Ok(session_response(
            StatusCode::ACCEPTED,
            name,
            id.as_str(),
            upload.size,
        ));
    }
    let mut hasher = resumed_hasher(&upload);
    let claim = SessionClaim::take(registry, &upload).await?;
    let received = receive_chunk(
        registry,
        &upload,
        chunk_headers,
        body,
        &mut hasher,
        &claim,
        true,
    )
    .await;
    let size = match received {
        // Recording the chunk let the session go.
        Ok((size, true)) => {
            claim.ended();
            size
        }
        Ok((size, false)) => {
            claim.release().await;
            size
        }
        Err(error) => {
            claim.release().await;
            return Err(error);
        }
    };
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
    let (request_parts, body) = request.into_parts();
    let chunk_headers = check_chunk(registry, name, &upload, &request_parts.headers)?;
    let claim = SessionClaim::take(registry, &upload).await?;
    let finished = finish_claimed(
        registry,
        name,
        &upload,
        chunk_headers,
        body,
        &digest,
        &claim,
    )
    .await;
    match finished {
        // The session is gone, and the claim with it.
        Ok(response) => {
            claim.ended();
            Ok(response)
        }
        Err(error) => {
            claim.release().await;
            Err(error)
        }
    }
}

async fn finish_claimed(
    registry: &Registry,
    name: &RepoName,
    upload: &Upload,
    chunk_headers: ChunkHeaders,
    body: axum::body::Body,
    digest: &Digest,
    claim: &SessionClaim,
) -> Result<Response, RegistryError> {
    let mut hasher = resumed_hasher(upload);
    let (size, _) = receive_chunk(
        registry,
        upload,
        chunk_headers,
        body,
        &mut hasher,
        claim,
        false,
    )
    .await?;
    // The session as the claim holds it now: the parts this request saw, plus its own
    // final chunk; nobody else can change it while the claim holds.
    let upload = registry
        .store
        .uploads()
        .get_in(name, &upload.id)
        .await?
        .ok_or_else(concurrent_change)?;
    let parts = stored_parts(&upload);
    // The parts must tile the blob exactly: anything else means the session changed
    // under this request, and committing would store bytes nobody hashed.
    let covered: u64 = parts.iter().map(|p| p.size).sum();
    let contiguous = upload.parts.iter().try_fold(0i64, |offset, part| {
        (part.start == offset).then_some(offset + part.size)
    });
    if upload.size != size || contiguous.is_none() || i64::try_from(covered).ok() != Some(size) {
        return Err(concurrent_change());
    }
    let staged = Staged {
        upload_id: &upload.id,
        multipart: upload.multipart.as_deref(),
        parts: &parts,
    };
    let verified = match hasher {
        Some(hasher) if hasher.algorithm() == digest.algorithm() => {
            let actual = hasher.finish();
            if &actual != digest {
                return Err(refuse_mismatch(registry, &staged, digest, &actual).await);
            }
            true
        }
        _ => false,
    };
    // Verified bytes reserve the blob's row before they are placed, so no collection
    // can delete them between; unverified ones (a digest the session could not hash
    // as it went) are checked by the commit first, so a refused upload leaves no row
    // of a size it never had, and then reserve it and check their object is there (a
    // collection may have deleted an orphan object of that digest the commit found).
    let reserved = if verified {
        Some(reserve(registry, digest, size).await?)
    } else {
        None
    };
    // The committed bytes are exactly the verified parts, so committing before the
    // session is finished is safe; finishing then lets exactly one request succeed.
    match registry
        .blobs
        .commit(&staged, digest, !verified, Some(claim))
        .await
    {
        Ok(()) => {}
        Err(BlobError::DigestMismatch { actual }) => {
            return Err(refuse_mismatch(registry, &staged, digest, &actual).await);
        }
        Err(BlobError::ClaimLost) => return Err(concurrent_change()),
        Err(other) => return Err(other.into()),
    }
    let generation = match reserved {
        Some(generation) => generation,
        None => {
            let generation = reserve(registry, digest, size).await?;
            if !registry.blobs.exists(digest).await? {
                forget_session(registry, &upload.id).await;
                return Err(reservation_lapsed(digest));
            }
            generation
        }
    };
    match registry
        .store
        .uploads()
        .finish(&upload.id, &claim.token, size, digest, generation)
        .await?
    {
        FinishOutcome::Finished => Ok(blob_created(name, digest)),
        FinishOutcome::NotHeld => Err(concurrent_change()),
        FinishOutcome::Collected => {
            // The commit used up the session's parts: it cannot be finished again.
            forget_session(registry, &upload.id).await;
            Err(reservation_lapsed(digest))
        }
    }
}

/// Forgets a session whose parts a commit used up but whose blob was not linked.
async fn forget_session(registry: &Registry, id: &str) {
    if let Err(error) = registry.store.uploads().delete(id).await {
        tracing::warn!(%error, upload_id = id, "could not forget an upload session");
    }
}

/// Ends a session whose bytes do not have the digest the client named.
async fn refuse_mismatch(
    registry: &Registry,
    staged: &Staged<'_>,
    expected: &Digest,
    actual: &Digest,
) -> RegistryError {
    if let Err(error) = registry
        .blobs
        .discard_all(staged.upload_id, staged.multipart)
        .await
    {
        tracing::warn!(%error, upload_id = staged.upload_id, "could not discard a refused upload");
    }
    if let Err(error) = registry.store.uploads().delete(staged.upload_id).await {
        return error.into();
    }
    digest_mismatch(expected, actual)
}

pub(super) async fn cancel(
    registry: &Registry,
    name: &RepoName,
    id: &UploadId,
) -> Result<Response, RegistryError> {
    let upload = session(registry, name, id).await?;
    // The row goes first: a writer still sending a chunk then fails to record it.
    if let Some(multipart) = registry.store.uploads().delete(&upload.id).await? {
        registry
            .blobs
            .discard_all(&upload.id, multipart.as_deref())
            .await?;
    }
    Ok(crate::empty(StatusCode::NO_CONTENT))
}
