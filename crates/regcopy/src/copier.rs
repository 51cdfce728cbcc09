//! The copy itself: read the whole manifest tree from the source first (so the size is
//! known and nothing is pushed for an artifact that cannot be read), then move each
//! blob the destination lacks — mounted when source and destination share a
//! registry, otherwise streamed and hashed on the way through — then push the
//! manifests children first, the tags last, and finally read back what the
//! destination serves by digest and under each tag.
//!
//! Architecture Invariant: blob bytes are never held in memory as a whole; a blob
//! passes through in the HTTP client's buffers. Memory does not grow with blob size.
//!
//! Architecture Invariant: a blob whose bytes do not hash to its digest is never
//! completed at the destination (the last chunk is withheld and the upload aborted),
//! and no manifest is pushed after any blob failed.

use std::collections::{HashSet, VecDeque};
use std::io::Read;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use domain::{Digest, DigestHasher, RepoName, Tag};

use crate::CopyError;
use crate::client::{RegistryClient, UploadStart};
use crate::manifest::{Descriptor, Manifest, References};
use crate::reference::ManifestReference;
use crate::source::Source;

/// How deep indexes may nest (an index of indexes of images is already unusual).
const MAX_INDEX_DEPTH: usize = 4;
/// Progress is reported at least this often while bytes stream.
const PROGRESS_STEP: u64 = 1 << 20;

/// Where a copy goes: a repository of a registry, and the tags pointed at the copy
/// there.
#[derive(Debug, Clone, Copy)]
pub struct Destination<'a> {
    pub client: &'a RegistryClient,
    pub repository: &'a RepoName,
    /// The tags pointed at the copied manifest, in order (none: pushed by digest
    /// only).
    pub tags: &'a [Tag],
}

/// What just happened, with the running totals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    pub event: ProgressEvent,
    /// Bytes transferred or found present so far (of `bytes_total`).
    pub bytes_done: u64,
    pub bytes_total: u64,
    /// Blobs finished (copied, mounted or found present) so far.
    pub blobs_done: usize,
    pub blobs_total: usize,
}

/// One step of a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProgressEvent {
    /// The source's manifests were read; the totals are known.
    Planned { manifests: usize },
    /// The destination already had the blob.
    BlobPresent(Digest),
    /// The destination mounted the blob from the source repository.
    BlobMounted(Digest),
    /// More bytes went through.
    Bytes,
    /// The blob was streamed and verified.
    BlobCopied { digest: Digest, size: u64 },
    /// A manifest was pushed under this reference.
    ManifestPushed(String),
    /// The destination serves the copied digest.
    Verified(Digest),
}

/// What a finished copy did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyReport {
    /// The copied manifest's digest (the same at source and destination).
    pub digest: Digest,
    pub media_type: String,
    /// `host/repository@digest` at the destination.
    pub destination: String,
    /// The tags pointed at it there.
    pub tags: Vec<Tag>,
    /// Manifests pushed (an index and its children, or one image).
    pub manifests: usize,
    pub blobs_total: usize,
    pub blobs_copied: usize,
    pub blobs_mounted: usize,
    pub blobs_present: usize,
    /// Bytes streamed from source to destination.
    pub bytes_copied: u64,
    /// Size of all blobs the artifact references.
    pub bytes_total: u64,
}

/// How a copy behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopySettings {
    /// Blobs moved at the same time.
    pub parallel_blobs: usize,
}

impl Default for CopySettings {
    fn default() -> Self {
        CopySettings { parallel_blobs: 4 }
    }
}

/// The manifests (children before parents, the root last) and distinct blobs.
struct Plan {
    manifests: Vec<Manifest>,
    blobs: Vec<Descriptor>,
}

fn plan(source: &dyn Source, reference: &ManifestReference) -> Result<Plan, CopyError> {
    let mut plan = Plan {
        manifests: Vec::new(),
        blobs: Vec::new(),
    };
    let mut seen_manifests = HashSet::new();
    let mut seen_blobs = HashSet::new();
    let root = source.manifest(reference)?;
    visit(
        source,
        root,
        0,
        &mut plan,
        &mut seen_manifests,
        &mut seen_blobs,
    )?;
    Ok(plan)
}

fn visit(
    source: &dyn Source,
    manifest: Manifest,
    depth: usize,
    plan: &mut Plan,
    seen_manifests: &mut HashSet<Digest>,
    seen_blobs: &mut HashSet<Digest>,
) -> Result<(), CopyError> {
    seen_manifests.insert(manifest.digest.clone());
    match manifest.references()? {
        References::Manifests(children) => {
            if depth >= MAX_INDEX_DEPTH {
                return Err(CopyError::InvalidManifest(format!(
                    "index {} nests more than {MAX_INDEX_DEPTH} levels deep",
                    manifest.digest
                )));
            }
            for child in children {
                if seen_manifests.contains(&child.digest) {
                    continue;
                }
                let fetched = source.manifest(&ManifestReference::Digest(child.digest.clone()))?;
                if fetched.content.len() as u64 != child.size {
                    return Err(CopyError::SizeMismatch {
                        what: format!("manifest {} listed by {}", child.digest, manifest.digest),
                        expected: child.size,
                        actual: fetched.content.len() as u64,
                    });
                }
                visit(source, fetched, depth + 1, plan, seen_manifests, seen_blobs)?;
            }
        }
        References::Blobs(blobs) => {
            for blob in blobs {
                if seen_blobs.insert(blob.digest.clone()) {
                    plan.blobs.push(blob);
                }
            }
        }
    }
    plan.manifests.push(manifest);
    Ok(())
}

/// Running totals shared by the blob workers.
struct Totals<'a> {
    bytes_done: AtomicU64,
    bytes_total: u64,
    blobs_done: AtomicUsize,
    blobs_total: usize,
    copied: AtomicUsize,
    mounted: AtomicUsize,
    present: AtomicUsize,
    bytes_copied: AtomicU64,
    progress: &'a (dyn Fn(&Progress) + Sync),
}

impl Totals<'_> {
    fn report(&self, event: ProgressEvent) {
        (self.progress)(&Progress {
            event,
            bytes_done: self.bytes_done.load(Ordering::Relaxed),
            bytes_total: self.bytes_total,
            blobs_done: self.blobs_done.load(Ordering::Relaxed),
            blobs_total: self.blobs_total,
        });
    }

    fn blob_finished(&self, size: u64, streamed: u64, event: ProgressEvent) {
        // Bytes streamed were counted as they went; count the rest of the blob now.
        self.bytes_done
            .fetch_add(size.saturating_sub(streamed), Ordering::Relaxed);
        self.blobs_done.fetch_add(1, Ordering::Relaxed);
        self.report(event);
    }
}

/// Copies the artifact `reference` names at `source` to `destination`, then checks
/// that the destination serves it under the same digest. Blocking: call it from a
/// blocking thread (`tokio::task::spawn_blocking` in async code).
///
/// Re-running a finished copy moves no blob (every one is found present) and pushes
/// the same manifest bytes again, which changes nothing.
pub fn copy(
    source: &dyn Source,
    reference: &ManifestReference,
    destination: Destination<'_>,
    settings: CopySettings,
    progress: &(dyn Fn(&Progress) + Sync),
) -> Result<CopyReport, CopyError> {
    let plan = plan(source, reference)?;
    let Some(root) = plan.manifests.last().cloned() else {
        return Err(CopyError::InvalidManifest(format!(
            "{} names no manifest",
            source.describe()
        )));
    };
    let totals = Totals {
        bytes_done: AtomicU64::new(0),
        bytes_total: plan.blobs.iter().map(|blob| blob.size).sum(),
        blobs_done: AtomicUsize::new(0),
        blobs_total: plan.blobs.len(),
        copied: AtomicUsize::new(0),
        mounted: AtomicUsize::new(0),
        present: AtomicUsize::new(0),
        bytes_copied: AtomicU64::new(0),
        progress,
    };
    totals.report(ProgressEvent::Planned {
        manifests: plan.manifests.len(),
    });

    copy_blobs(source, destination, settings, &plan.blobs, &totals)?;

    for manifest in &plan.manifests {
        let by_digest = ManifestReference::Digest(manifest.digest.clone());
        destination
            .client
            .put_manifest(destination.repository, &by_digest, manifest)?;
        totals.report(ProgressEvent::ManifestPushed(by_digest.to_string()));
    }
    for tag in destination.tags {
        let by_tag = ManifestReference::Tag(tag.clone());
        if let Err(error) = destination
            .client
            .put_manifest(destination.repository, &by_tag, &root)
        {
            return Err(tag_refusal(destination, tag, &root.digest, error));
        }
        totals.report(ProgressEvent::ManifestPushed(by_tag.to_string()));
    }

    verify(
        destination,
        &ManifestReference::Digest(root.digest.clone()),
        &root.digest,
    )?;
    for tag in destination.tags {
        verify(
            destination,
            &ManifestReference::Tag(tag.clone()),
            &root.digest,
        )?;
    }
    totals.report(ProgressEvent::Verified(root.digest.clone()));

    Ok(CopyReport {
        destination: format!(
            "{}/{}@{}",
            destination.client.registry(),
            destination.repository,
            root.digest
        ),
        digest: root.digest,
        media_type: root.media_type,
        tags: destination.tags.to_vec(),
        manifests: plan.manifests.len(),
        blobs_total: plan.blobs.len(),
        blobs_copied: totals.copied.load(Ordering::Relaxed),
        blobs_mounted: totals.mounted.load(Ordering::Relaxed),
        blobs_present: totals.present.load(Ordering::Relaxed),
        bytes_copied: totals.bytes_copied.load(Ordering::Relaxed),
        bytes_total: totals.bytes_total,
    })
}

/// The error for a refused tag push: when the tag exists there naming another digest,
/// the destination refused to move it (immutable tags), which is said plainly.
fn tag_refusal(
    destination: Destination<'_>,
    tag: &Tag,
    digest: &Digest,
    error: CopyError,
) -> CopyError {
    if error.is_transient() {
        return error;
    }
    match destination
        .client
        .manifest_digest(destination.repository, &ManifestReference::Tag(tag.clone()))
    {
        Ok(Some(existing)) if existing != digest.to_string() => CopyError::TagNotMoved {
            location: format!(
                "{}/{}:{tag}",
                destination.client.registry(),
                destination.repository
            ),
            tag: tag.clone(),
            existing,
            message: error.to_string(),
        },
        _ => error,
    }
}

/// Reads back the digest the destination serves under `reference`; anything but
/// `expected` fails the copy.
pub fn verify(
    destination: Destination<'_>,
    reference: &ManifestReference,
    expected: &Digest,
) -> Result<(), CopyError> {
    let location = format!(
        "{}/{}:{reference}",
        destination.client.registry(),
        destination.repository
    );
    let served = destination
        .client
        .manifest_digest(destination.repository, reference)?;
    match served {
        Some(served) if served == expected.to_string() => Ok(()),
        Some(served) => Err(CopyError::VerificationFailed {
            reference: location,
            expected: expected.clone(),
            served,
        }),
        None => Err(CopyError::VerificationFailed {
            reference: location,
            expected: expected.clone(),
            served: "nothing (not found)".to_owned(),
        }),
    }
}

/// Moves the blobs with a few workers; the first failure stops the others from
/// starting more and is returned.
fn copy_blobs(
    source: &dyn Source,
    destination: Destination<'_>,
    settings: CopySettings,
    blobs: &[Descriptor],
    totals: &Totals<'_>,
) -> Result<(), CopyError> {
    let queue = Mutex::new(blobs.iter().collect::<VecDeque<_>>());
    let failed = AtomicBool::new(false);
    let first_error: Mutex<Option<CopyError>> = Mutex::new(None);
    let workers = settings.parallel_blobs.clamp(1, 16).min(blobs.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    if failed.load(Ordering::Relaxed) {
                        return;
                    }
                    let next = queue
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .pop_front();
                    let Some(blob) = next else { return };
                    if let Err(error) = copy_blob(source, destination, blob, totals) {
                        failed.store(true, Ordering::Relaxed);
                        first_error
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .get_or_insert(error);
                        return;
                    }
                }
            });
        }
    });
    match first_error
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
    {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

fn copy_blob(
    source: &dyn Source,
    destination: Destination<'_>,
    blob: &Descriptor,
    totals: &Totals<'_>,
) -> Result<(), CopyError> {
    let client = destination.client;
    let repository = destination.repository;
    if client.blob_exists(repository, &blob.digest)? {
        totals.present.fetch_add(1, Ordering::Relaxed);
        totals.blob_finished(
            blob.size,
            0,
            ProgressEvent::BlobPresent(blob.digest.clone()),
        );
        return Ok(());
    }
    let mount = source
        .mount_origin()
        .filter(|(registry, from)| *registry == client.registry() && *from != repository)
        .map(|(_, from)| (&blob.digest, from));
    let session = match client.start_upload(repository, mount)? {
        UploadStart::Mounted => {
            totals.mounted.fetch_add(1, Ordering::Relaxed);
            totals.blob_finished(
                blob.size,
                0,
                ProgressEvent::BlobMounted(blob.digest.clone()),
            );
            return Ok(());
        }
        UploadStart::Session(session) => session,
    };
    let what = format!("blob {} from {}", blob.digest, source.describe());
    let inner = source.open_blob(blob)?;
    let mut reader = VerifyingReader::new(inner, blob, what, totals);
    let sent = client.finish_upload(repository, &session, &blob.digest, blob.size, &mut reader);
    // A refusal by the reader (wrong bytes) explains the failed upload better than the
    // aborted request does.
    if let Some(failure) = reader.failure.take() {
        client.cancel_upload(repository, &session);
        return Err(failure);
    }
    if let Err(error) = sent {
        client.cancel_upload(repository, &session);
        return Err(error);
    }
    if !reader.verified {
        return Err(CopyError::SizeMismatch {
            what: reader.what,
            expected: blob.size,
            actual: reader.count,
        });
    }
    totals.copied.fetch_add(1, Ordering::Relaxed);
    totals
        .bytes_copied
        .fetch_add(reader.count, Ordering::Relaxed);
    totals.blob_finished(
        blob.size,
        reader.count,
        ProgressEvent::BlobCopied {
            digest: blob.digest.clone(),
            size: blob.size,
        },
    );
    Ok(())
}

/// Passes a blob's bytes through while hashing them. It reads exactly the declared
/// size and checks the digest in the same call that would hand over the last bytes:
/// on a mismatch those bytes are withheld and an error returned, so an upload with a
/// declared length can never complete with wrong content.
struct VerifyingReader<'a> {
    inner: Box<dyn Read + Send + 'a>,
    expected: Digest,
    size: u64,
    count: u64,
    hasher: Option<DigestHasher>,
    verified: bool,
    failure: Option<CopyError>,
    what: String,
    unreported: u64,
    totals: &'a Totals<'a>,
}

impl<'a> VerifyingReader<'a> {
    fn new(
        inner: Box<dyn Read + Send + 'a>,
        blob: &Descriptor,
        what: String,
        totals: &'a Totals<'a>,
    ) -> VerifyingReader<'a> {
        let mut reader = VerifyingReader {
            inner,
            expected: blob.digest.clone(),
            size: blob.size,
            count: 0,
            hasher: Some(DigestHasher::new(blob.digest.algorithm())),
            verified: false,
            failure: None,
            what,
            unreported: 0,
            totals,
        };
        if blob.size == 0 {
            // Nothing will be read: judge the empty content now.
            reader.finish_hash();
        }
        reader
    }

    fn finish_hash(&mut self) {
        let Some(hasher) = self.hasher.take() else {
            return;
        };
        let actual = hasher.finish();
        if actual == self.expected {
            self.verified = true;
        } else {
            self.failure = Some(CopyError::DigestMismatch {
                what: self.what.clone(),
                expected: self.expected.clone(),
                actual,
            });
        }
    }

    fn refuse(&self) -> std::io::Error {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            self.failure
                .as_ref()
                .map_or_else(|| "refused".to_owned(), ToString::to_string),
        )
    }
}

impl Read for VerifyingReader<'_> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        if self.failure.is_some() {
            return Err(self.refuse());
        }
        let remaining = self.size - self.count;
        if remaining == 0 || buffer.is_empty() {
            return Ok(0);
        }
        let want = usize::try_from(remaining)
            .unwrap_or(usize::MAX)
            .min(buffer.len());
        let n = self.inner.read(&mut buffer[..want])?;
        if n == 0 {
            self.failure = Some(CopyError::SizeMismatch {
                what: self.what.clone(),
                expected: self.size,
                actual: self.count,
            });
            return Err(self.refuse());
        }
        if let Some(hasher) = self.hasher.as_mut() {
            hasher.update(&buffer[..n]);
        }
        self.count += n as u64;
        if self.count == self.size {
            self.finish_hash();
            if self.failure.is_some() {
                return Err(self.refuse());
            }
        }
        self.totals
            .bytes_done
            .fetch_add(n as u64, Ordering::Relaxed);
        self.unreported += n as u64;
        if self.unreported >= PROGRESS_STEP || self.count == self.size {
            self.unreported = 0;
            self.totals.report(ProgressEvent::Bytes);
        }
        Ok(n)
    }
}
