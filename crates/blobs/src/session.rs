//! Chunked uploads on a store with multipart uploads (S3, memory): the session's bytes
//! go into one multipart upload that spans requests, in whole parts of
//! [`PART_SIZE`](crate::PART_SIZE) numbered by their offset (so every part but the
//! last has the same size, as R2 requires), and only what does not fill a part yet
//! waits as *pieces*, small objects of their own, until a later chunk completes the
//! part. A commit then writes the last part and completes the upload: no byte is read
//! back but the pieces (less than one part), and the blob appears whole or not at all.
//!
//! Because part numbers follow offsets, two requests writing the same offset would
//! write the same part; the caller therefore holds a [`Claim`] on the session, and no
//! part is written once the claim may have lapsed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use domain::DigestHasher;
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesOrdered;
use futures_util::{Stream, StreamExt};
use object_store::aws::AmazonS3;
use object_store::memory::InMemory;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};

use crate::{BlobError, BlobStore, PART_SIZE, PartRef, WRITE_CONCURRENCY, new_part_key};

/// S3's highest part number.
const MAX_PARTS: u64 = 10_000;

/// What a request writing to an upload session holds: the session, for a while.
pub trait Claim: Send + Sync {
    /// How much longer the holder may write to the store; `None` once it may not
    /// (the claim lapsed, or another request took the session).
    fn remaining(&self) -> Option<Duration>;
    /// Records the multipart upload just begun for the session, before any part is
    /// written to it; `Ok(false)` if the holder lost the session.
    fn begin_multipart<'a>(&'a self, multipart: &'a str) -> BoxFuture<'a, Result<bool, BlobError>>;
}

/// What an upload session has stored: its id, its multipart upload if one began, and
/// its parts in order.
#[derive(Debug, Clone, Copy)]
pub struct Staged<'a> {
    pub upload_id: &'a str,
    pub multipart: Option<&'a str>,
    pub parts: &'a [PartRef],
}

/// What writing one chunk changed: the parts it added (in order, the first at
/// `start`), and the pieces it folded into a whole part, which leave the session when
/// the chunk is recorded (and are then deleted with [`BlobStore::discard`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// The bytes the request's body brought.
    pub size: u64,
    pub start: u64,
    pub added: Vec<PartRef>,
    pub removed: Vec<PartRef>,
}

/// Where a store keeps multipart uploads.
#[derive(Clone)]
pub(crate) enum Multipart {
    /// An S3 bucket, its keys under `prefix`.
    S3 {
        bucket: Arc<AmazonS3>,
        prefix: String,
    },
    /// The memory store: uploads kept beside its objects as S3 keeps them, each part
    /// under its number with a tag of its own, and a completion that assembles exactly
    /// the parts it lists (`object_store`'s own in-memory uploads join every part
    /// ever written, listed or not).
    Memory {
        objects: Arc<InMemory>,
        uploads: Arc<Mutex<MemoryUploads>>,
    },
}

impl Multipart {
    pub(crate) fn memory(objects: Arc<InMemory>) -> Multipart {
        Multipart::Memory {
            objects,
            uploads: Arc::default(),
        }
    }

    /// Where upload `upload_id`'s multipart upload assembles its object (inside the
    /// upload's own directory, so that a leftover is purged with it), as the bucket
    /// sees it.
    fn staging(&self, upload_id: &str) -> Path {
        match self {
            Multipart::S3 { prefix, .. } if !prefix.is_empty() => {
                Path::from(format!("{prefix}/uploads/{upload_id}/blob"))
            }
            _ => staged_object(upload_id),
        }
    }

    async fn create(&self, upload_id: &str) -> Result<String, BlobError> {
        match self {
            Multipart::S3 { bucket, .. } => {
                Ok(bucket.create_multipart(&self.staging(upload_id)).await?)
            }
            Multipart::Memory { uploads, .. } => {
                let id = uuid::Uuid::new_v4().simple().to_string();
                lock(uploads).insert(id.clone(), HashMap::new());
                Ok(id)
            }
        }
    }

    /// Writes part `index` (0-based); what the store answered for it.
    async fn put_part(
        &self,
        upload_id: &str,
        id: &str,
        index: usize,
        payload: PutPayload,
    ) -> Result<String, BlobError> {
        match self {
            Multipart::S3 { bucket, .. } => Ok(bucket
                .put_part(&self.staging(upload_id), &id.to_owned(), index, payload)
                .await?
                .content_id),
            Multipart::Memory { uploads, .. } => {
                let mut uploads = lock(uploads);
                let parts = uploads.get_mut(id).ok_or_else(|| no_such_upload(id))?;
                let tag = uuid::Uuid::new_v4().simple().to_string();
                let bytes: Bytes = payload.into();
                parts.insert(index, (tag.clone(), bytes));
                Ok(tag)
            }
        }
    }

    /// Completes the upload from exactly `parts` (what the store answered for parts
    /// 0, 1, …), into its staged object.
    async fn complete(
        &self,
        upload_id: &str,
        id: &str,
        parts: Vec<String>,
    ) -> Result<(), BlobError> {
        match self {
            Multipart::S3 { bucket, .. } => {
                let parts = parts
                    .into_iter()
                    .map(|content_id| PartId { content_id })
                    .collect();
                bucket
                    .complete_multipart(&self.staging(upload_id), &id.to_owned(), parts)
                    .await?;
                Ok(())
            }
            Multipart::Memory { objects, uploads } => {
                let assembled = {
                    let mut uploads = lock(uploads);
                    let stored = uploads.get(id).ok_or_else(|| no_such_upload(id))?;
                    let mut assembled = Vec::new();
                    for (index, tag) in parts.iter().enumerate() {
                        match stored.get(&index) {
                            Some((stored_tag, bytes)) if stored_tag == tag => {
                                assembled.extend_from_slice(bytes);
                            }
                            _ => {
                                return Err(invalid_part(index));
                            }
                        }
                    }
                    uploads.remove(id);
                    assembled
                };
                objects
                    .put(&self.staging(upload_id), PutPayload::from(assembled))
                    .await?;
                Ok(())
            }
        }
    }

    async fn abort(&self, upload_id: &str, id: &str) -> Result<(), BlobError> {
        match self {
            Multipart::S3 { bucket, .. } => {
                match bucket
                    .abort_multipart(&self.staging(upload_id), &id.to_owned())
                    .await
                {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                    Err(error) => Err(error.into()),
                }
            }
            Multipart::Memory { uploads, .. } => {
                lock(uploads).remove(id);
                Ok(())
            }
        }
    }
}

type MemoryUploads = HashMap<String, HashMap<usize, (String, Bytes)>>;

fn lock(uploads: &Mutex<MemoryUploads>) -> std::sync::MutexGuard<'_, MemoryUploads> {
    // A panic while holding the lock cannot leave the map half-changed.
    uploads
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn no_such_upload(id: &str) -> BlobError {
    BlobError::Storage(object_store::Error::NotFound {
        path: id.to_owned(),
        source: "no such multipart upload".into(),
    })
}

fn invalid_part(index: usize) -> BlobError {
    BlobError::Storage(object_store::Error::Generic {
        store: "InMemory",
        source: format!("part {} is not the one listed (InvalidPart)", index + 1).into(),
    })
}

/// The staged object a completed multipart upload leaves, as the prefixed store sees it.
pub(crate) fn staged_object(upload_id: &str) -> Path {
    Path::from(format!("uploads/{upload_id}/blob"))
}

/// The parts that are pieces (objects of their own), in order.
pub(crate) fn pieces(parts: &[PartRef]) -> Vec<PartRef> {
    parts
        .iter()
        .filter(|part| part.number.is_none())
        .cloned()
        .collect()
}

/// Takes one received chunk of a body (`written` bytes so far, after `start` stored
/// ones): refuses it past `max_total`, and hashes it.
pub(crate) fn take_in<E: std::fmt::Display>(
    chunk: Result<Bytes, E>,
    written: &mut u64,
    start: u64,
    max_total: u64,
    hasher: Option<&mut DigestHasher>,
) -> Result<Bytes, BlobError> {
    let chunk = chunk.map_err(|e| BlobError::Body(e.to_string()))?;
    *written += chunk.len() as u64;
    if start + *written > max_total {
        return Err(BlobError::TooLarge { limit: max_total });
    }
    if let Some(hasher) = hasher {
        hasher.update(&chunk);
    }
    Ok(chunk)
}

/// Bytes waiting to become a part.
#[derive(Default)]
struct Pending {
    chunks: std::collections::VecDeque<Bytes>,
    len: usize,
}

impl Pending {
    fn push(&mut self, chunk: Bytes) {
        self.len += chunk.len();
        self.chunks.push_back(chunk);
    }

    /// Takes the first `n` bytes (`n <= self.len`).
    fn take(&mut self, n: usize) -> Vec<Bytes> {
        let mut taken = Vec::new();
        let mut wanted = n;
        while wanted > 0 {
            let Some(first) = self.chunks.front_mut() else {
                break;
            };
            if first.len() <= wanted {
                wanted -= first.len();
                taken.extend(self.chunks.pop_front());
            } else {
                taken.push(first.split_to(wanted));
                wanted = 0;
            }
        }
        self.len -= n;
        taken
    }
}

type PartUpload = BoxFuture<'static, Result<(u32, String), BlobError>>;

impl BlobStore {
    /// Whether chunked uploads keep whole parts in a multipart upload spanning
    /// requests (S3, memory) rather than one object per chunk (a local directory).
    pub fn multipart_sessions(&self) -> bool {
        self.multipart.is_some()
    }

    /// Writes one chunk of upload session `staged`, whose stored parts hold `start`
    /// bytes, feeding every byte to `hasher`; refuses to hold more than `max_total`
    /// bytes in all. On a local directory the chunk is one object of its own; on a
    /// multipart store whole parts go to the session's multipart upload and the rest
    /// waits as a piece. On error, nothing the chunk wrote stays but parts of the
    /// multipart upload, which the next writer of those offsets overwrites or the
    /// session's end discards.
    pub async fn write_chunk<S, E>(
        &self,
        staged: &Staged<'_>,
        start: u64,
        body: S,
        hasher: Option<&mut DigestHasher>,
        max_total: u64,
        claim: &dyn Claim,
    ) -> Result<Chunk, BlobError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        let pieces = pieces(staged.parts);
        let whole = staged.parts.len() - pieces.len();
        let pieces_size: u64 = pieces.iter().map(|piece| piece.size).sum();
        let aligned = (whole as u64) * PART_SIZE as u64 + pieces_size == start
            && staged.parts[..whole]
                .iter()
                .all(|part| part.number.is_some());
        let Some(multipart) = self.multipart.clone().filter(|_| {
            // A session begun as objects of their own (by an older server) goes on so.
            aligned && pieces_size < PART_SIZE as u64
        }) else {
            let key = new_part_key();
            let size = self
                .write_part(staged.upload_id, &key, start, body, hasher, max_total)
                .await?;
            return Ok(Chunk {
                size,
                start,
                added: vec![PartRef::object(key, size)],
                removed: Vec::new(),
            });
        };
        let _memory = self.hold_multipart_memory().await;
        let mut writing = ChunkWriter {
            store: self,
            multipart,
            upload_id: staged.upload_id,
            id: staged.multipart.map(str::to_owned),
            claim,
            next_number: whole as u64 + 1,
            in_flight: FuturesOrdered::new(),
            done: Vec::new(),
        };
        let outcome = writing
            .receive(&pieces, start, body, hasher, max_total)
            .await;
        match outcome {
            Ok((size, piece)) => {
                let finished = writing.finish().await;
                match finished {
                    Ok(whole_parts) => {
                        let folded = !whole_parts.is_empty() && !pieces.is_empty();
                        let first = if folded { start - pieces_size } else { start };
                        let mut added = whole_parts;
                        added.extend(piece);
                        Ok(Chunk {
                            size,
                            start: first,
                            added,
                            removed: if folded { pieces } else { Vec::new() },
                        })
                    }
                    Err(error) => {
                        if let Some(piece) = piece {
                            self.discard(staged.upload_id, &[piece]).await;
                        }
                        Err(error)
                    }
                }
            }
            Err(error) => {
                // Let the parts in flight end (each within the claim) before the
                // caller lets the session go, so none lands after another writer's.
                let _ = writing.finish().await;
                Err(error)
            }
        }
    }

    /// Deletes what a chunk that was not recorded added as objects (its pieces).
    pub async fn discard_chunk(&self, upload_id: &str, chunk: &Chunk) {
        self.discard(upload_id, &pieces(&chunk.added)).await;
    }

    /// Completes the session's multipart upload into its staged object: the pieces
    /// after the whole parts (less than one part) become the last part.
    pub(crate) async fn complete_session(
        &self,
        staged: &Staged<'_>,
        multipart_id: &str,
        claim: &dyn Claim,
    ) -> Result<(), BlobError> {
        let Some(multipart) = self.multipart.clone() else {
            return Err(BlobError::Session(
                "the store has no multipart uploads".to_owned(),
            ));
        };
        let mut parts = Vec::new();
        let mut pieces = Vec::new();
        for part in staged.parts {
            match part.number {
                Some(_) => parts.push(part.key.clone()),
                None => pieces.push(part.clone()),
            }
        }
        if !pieces.is_empty() {
            let _memory = self.hold_multipart_memory().await;
            let bytes = self.read_pieces(staged.upload_id, &pieces).await?;
            let number = parts.len() as u64 + 1;
            let (_, id) = put_part(
                &multipart,
                staged.upload_id,
                multipart_id,
                number,
                bytes,
                claim,
            )?
            .await?;
            parts.push(id);
        }
        multipart
            .complete(staged.upload_id, multipart_id, parts)
            .await
    }

    /// The bytes of an upload's pieces, in order (less than one part in all).
    async fn read_pieces(
        &self,
        upload_id: &str,
        pieces: &[PartRef],
    ) -> Result<Vec<Bytes>, BlobError> {
        let mut bytes = Vec::new();
        for piece in pieces {
            let mut stream = self
                .read_object(&Self::part_path(upload_id, &piece.key), None)
                .await?;
            while let Some(chunk) = stream.next().await {
                bytes.push(chunk?);
            }
        }
        Ok(bytes)
    }

    /// Abandons a session's multipart upload (its parts are dropped by the store).
    pub async fn abort_multipart(&self, upload_id: &str, multipart_id: &str) {
        let Some(multipart) = &self.multipart else {
            return;
        };
        if let Err(error) = multipart.abort(upload_id, multipart_id).await {
            tracing::warn!(%error, upload_id, "could not abort an upload's multipart upload");
        }
    }
}

/// Starts writing part `number` of the multipart upload at once, if the claim leaves
/// time, in a task of its own bounded by that time: the deadline is fixed now, so a
/// part is never sent, nor still being sent, once the claim could have lapsed. The
/// returned future waits for it; dropping it (the request went away) stops the task.
fn put_part(
    multipart: &Multipart,
    upload_id: &str,
    multipart_id: &str,
    number: u64,
    bytes: Vec<Bytes>,
    claim: &dyn Claim,
) -> Result<PartUpload, BlobError> {
    if number > MAX_PARTS {
        return Err(BlobError::TooLarge {
            limit: MAX_PARTS * PART_SIZE as u64,
        });
    }
    let Some(remaining) = claim.remaining() else {
        return Err(BlobError::ClaimLost);
    };
    let deadline = tokio::time::Instant::now() + remaining;
    let multipart = multipart.clone();
    let (upload_id, id) = (upload_id.to_owned(), multipart_id.to_owned());
    let payload: PutPayload = bytes.into_iter().collect();
    let number = u32::try_from(number).unwrap_or(u32::MAX);
    let index = (number - 1) as usize;
    let task = tokio::spawn(async move {
        match tokio::time::timeout_at(
            deadline,
            multipart.put_part(&upload_id, &id, index, payload),
        )
        .await
        {
            Ok(Ok(tag)) => Ok((number, tag)),
            Ok(Err(error)) => Err(error),
            Err(_) => Err(BlobError::ClaimLost),
        }
    });
    let mut task = AbortOnDrop(task);
    Ok(Box::pin(async move {
        match (&mut task.0).await {
            Ok(outcome) => outcome,
            Err(error) => Err(BlobError::Session(format!("a part upload failed: {error}"))),
        }
    }))
}

/// A spawned part upload, stopped if nobody waits for it any more.
struct AbortOnDrop(tokio::task::JoinHandle<Result<(u32, String), BlobError>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One chunk being written into a session's multipart upload.
struct ChunkWriter<'a> {
    store: &'a BlobStore,
    multipart: Multipart,
    upload_id: &'a str,
    /// The session's multipart upload, once there is one.
    id: Option<String>,
    claim: &'a dyn Claim,
    next_number: u64,
    in_flight: FuturesOrdered<PartUpload>,
    /// Parts written, in order.
    done: Vec<PartRef>,
}

impl ChunkWriter<'_> {
    /// Receives the body: every whole part it completes (the first one with the
    /// session's `pieces` ahead of it) goes to the multipart upload, the rest becomes
    /// a new piece. Returns the body's size and that piece.
    async fn receive<S, E>(
        &mut self,
        pieces: &[PartRef],
        start: u64,
        body: S,
        mut hasher: Option<&mut DigestHasher>,
        max_total: u64,
    ) -> Result<(u64, Option<PartRef>), BlobError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        let pieces_size: u64 = pieces.iter().map(|piece| piece.size).sum();
        // The first part needs only what the pieces lack.
        let mut wanted = PART_SIZE - usize::try_from(pieces_size).unwrap_or(PART_SIZE);
        let mut first = true;
        let mut pending = Pending::default();
        let mut written: u64 = 0;
        let mut body = std::pin::pin!(body);
        while let Some(chunk) = body.next().await {
            let chunk = take_in(chunk, &mut written, start, max_total, hasher.as_deref_mut())?;
            pending.push(chunk);
            while pending.len >= wanted {
                let mut bytes = if first && !pieces.is_empty() {
                    self.store.read_pieces(self.upload_id, pieces).await?
                } else {
                    Vec::new()
                };
                bytes.extend(pending.take(wanted));
                self.write(bytes).await?;
                first = false;
                wanted = PART_SIZE;
            }
        }
        let piece = if pending.len > 0 {
            let key = new_part_key();
            let size = pending.len as u64;
            let payload: PutPayload = pending.chunks.into_iter().collect();
            self.store
                .objects
                .put(&BlobStore::part_path(self.upload_id, &key), payload)
                .await?;
            Some(PartRef::object(key, size))
        } else {
            None
        };
        Ok((written, piece))
    }

    /// Sends one whole part, waiting first for room among the parts in flight.
    async fn write(&mut self, bytes: Vec<Bytes>) -> Result<(), BlobError> {
        let id = match &self.id {
            Some(id) => id.clone(),
            None => {
                if self.claim.remaining().is_none() {
                    return Err(BlobError::ClaimLost);
                }
                let id = self.multipart.create(self.upload_id).await?;
                match self.claim.begin_multipart(&id).await {
                    Ok(true) => {}
                    recorded => {
                        let _ = self.multipart.abort(self.upload_id, &id).await;
                        recorded?;
                        return Err(BlobError::ClaimLost);
                    }
                }
                self.id = Some(id.clone());
                id
            }
        };
        while self.in_flight.len() >= WRITE_CONCURRENCY {
            self.collect_one().await?;
        }
        let upload = put_part(
            &self.multipart,
            self.upload_id,
            &id,
            self.next_number,
            bytes,
            self.claim,
        )?;
        self.in_flight.push_back(upload);
        self.next_number += 1;
        Ok(())
    }

    async fn collect_one(&mut self) -> Result<(), BlobError> {
        if let Some(outcome) = self.in_flight.next().await {
            let (number, tag) = outcome?;
            self.done.push(PartRef {
                key: tag,
                size: PART_SIZE as u64,
                number: Some(number),
            });
        }
        Ok(())
    }

    /// Waits for every part in flight; the parts written, in order.
    async fn finish(&mut self) -> Result<Vec<PartRef>, BlobError> {
        let mut failed = None;
        while !self.in_flight.is_empty() {
            if let Err(error) = self.collect_one().await {
                failed.get_or_insert(error);
            }
        }
        match failed {
            Some(error) => Err(error),
            None => Ok(std::mem::take(&mut self.done)),
        }
    }
}
