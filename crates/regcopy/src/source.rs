//! Where copied artifacts come from: another registry ([`RegistrySource`], for `gantry
//! copy`) or Gantry's own store ([`StoreSource`], for the `registry-copy` target). Both
//! hand out manifests checked against their digests and blobs as streams.

use std::io::Read;
use std::sync::Arc;

use blobs::{BlobBody, BlobError, BlobStore};
use bytes::{Buf, Bytes};
use domain::{Digest, RepoName};
use futures_util::StreamExt;
use store::Store;

use crate::CopyError;
use crate::client::{RegistryClient, digest_of};
use crate::manifest::{Descriptor, Manifest};
use crate::reference::ManifestReference;

/// A place manifests and blobs are read from.
pub trait Source: Send + Sync {
    /// Names the source for logs and errors (`registry.example.com/acme/web`).
    fn describe(&self) -> String;

    /// The manifest `reference` names, its bytes checked against its digest.
    fn manifest(&self, reference: &ManifestReference) -> Result<Manifest, CopyError>;

    /// The blob's bytes as a stream. The copier checks them against the digest.
    fn open_blob(&self, descriptor: &Descriptor) -> Result<Box<dyn Read + Send + '_>, CopyError>;

    /// The registry host and repository blobs could be mounted from, when the source
    /// is a registry.
    fn mount_origin(&self) -> Option<(&str, &RepoName)> {
        None
    }

    /// The manifests whose `subject` is `digest` (signatures, SBOMs, attestations),
    /// where the source can list them.
    fn referrers(&self, digest: &Digest) -> Result<Vec<Digest>, CopyError> {
        let _ = digest;
        Ok(Vec::new())
    }
}

/// A repository in another registry.
#[derive(Debug, Clone)]
pub struct RegistrySource {
    client: Arc<RegistryClient>,
    repository: RepoName,
}

impl RegistrySource {
    pub fn new(client: Arc<RegistryClient>, repository: RepoName) -> RegistrySource {
        RegistrySource { client, repository }
    }
}

impl Source for RegistrySource {
    fn describe(&self) -> String {
        format!("{}/{}", self.client.registry(), self.repository)
    }

    fn manifest(&self, reference: &ManifestReference) -> Result<Manifest, CopyError> {
        self.client.manifest(&self.repository, reference)
    }

    fn open_blob(&self, descriptor: &Descriptor) -> Result<Box<dyn Read + Send + '_>, CopyError> {
        self.client.open_blob(&self.repository, &descriptor.digest)
    }

    fn mount_origin(&self) -> Option<(&str, &RepoName)> {
        Some((self.client.registry(), &self.repository))
    }
}

/// A repository in Gantry's own store. Its methods block: call them off the async
/// threads (the copier runs in `spawn_blocking`).
#[derive(Clone)]
pub struct StoreSource {
    store: Store,
    blobs: BlobStore,
    repository: RepoName,
    repository_id: i64,
    runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for StoreSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreSource")
            .field("repository", &self.repository)
            .finish_non_exhaustive()
    }
}

impl StoreSource {
    /// The repository `repository` of the store; fails when it does not exist.
    pub async fn open(
        store: Store,
        blobs: BlobStore,
        repository: RepoName,
    ) -> Result<StoreSource, CopyError> {
        let found = store
            .repositories()
            .get(&repository)
            .await
            .map_err(|e| CopyError::Store(e.to_string()))?
            .ok_or_else(|| CopyError::NotFound(format!("repository {repository} in Gantry")))?;
        Ok(StoreSource {
            store,
            blobs,
            repository,
            repository_id: found.id,
            runtime: tokio::runtime::Handle::current(),
        })
    }
}

impl Source for StoreSource {
    fn describe(&self) -> String {
        format!("Gantry repository {}", self.repository)
    }

    fn manifest(&self, reference: &ManifestReference) -> Result<Manifest, CopyError> {
        let manifests = self.store.manifests();
        let record = self
            .runtime
            .block_on(async {
                match reference {
                    ManifestReference::Digest(digest) => {
                        manifests.by_digest(self.repository_id, digest).await
                    }
                    ManifestReference::Tag(tag) => manifests.by_tag(self.repository_id, tag).await,
                }
            })
            .map_err(|e| CopyError::Store(e.to_string()))?
            .ok_or_else(|| {
                CopyError::NotFound(format!(
                    "manifest {}:{reference} in Gantry",
                    self.repository
                ))
            })?;
        let actual = digest_of(record.digest.algorithm(), &record.content);
        if actual != record.digest {
            return Err(CopyError::DigestMismatch {
                what: format!(
                    "manifest {}@{} in Gantry's store",
                    self.repository, record.digest
                ),
                expected: record.digest,
                actual,
            });
        }
        if let ManifestReference::Digest(digest) = reference
            && *digest != record.digest
        {
            return Err(CopyError::DigestMismatch {
                what: format!("manifest {}@{digest} in Gantry's store", self.repository),
                expected: digest.clone(),
                actual: record.digest,
            });
        }
        Ok(Manifest {
            digest: record.digest,
            media_type: record.media_type,
            content: record.content,
        })
    }

    fn referrers(&self, digest: &Digest) -> Result<Vec<Digest>, CopyError> {
        let referrers = self
            .runtime
            .block_on(
                self.store
                    .manifests()
                    .referrers(self.repository_id, digest, None),
            )
            .map_err(|e| CopyError::Store(e.to_string()))?;
        Ok(referrers
            .into_iter()
            .map(|referrer| referrer.digest)
            .collect())
    }

    fn open_blob(&self, descriptor: &Descriptor) -> Result<Box<dyn Read + Send + '_>, CopyError> {
        let digest = &descriptor.digest;
        let body = self.runtime.block_on(async {
            let linked = self
                .store
                .blobs()
                .linked(self.repository_id, digest)
                .await
                .map_err(|e| CopyError::Store(e.to_string()))?;
            if linked.is_none() {
                return Err(CopyError::NotFound(format!(
                    "blob {digest} in Gantry repository {}",
                    self.repository
                )));
            }
            self.blobs.get(digest, None).await.map_err(|e| match e {
                BlobError::NotFound => {
                    CopyError::NotFound(format!("blob {digest} in Gantry's blob store"))
                }
                other => CopyError::Store(other.to_string()),
            })
        })?;
        Ok(Box::new(BodyReader {
            runtime: self.runtime.clone(),
            body,
            chunk: Bytes::new(),
        }))
    }
}

/// A blocking [`Read`] over a blob stream: one chunk in hand at a time.
struct BodyReader {
    runtime: tokio::runtime::Handle,
    body: BlobBody,
    chunk: Bytes,
}

impl Read for BodyReader {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk.is_empty() {
            match self.runtime.block_on(self.body.next()) {
                None => return Ok(0),
                Some(Ok(chunk)) => self.chunk = chunk,
                Some(Err(error)) => return Err(std::io::Error::other(error.to_string())),
            }
        }
        let n = buffer.len().min(self.chunk.len());
        buffer[..n].copy_from_slice(&self.chunk[..n]);
        self.chunk.advance(n);
        Ok(n)
    }
}
