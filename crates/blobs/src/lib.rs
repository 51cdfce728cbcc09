//! Content-addressed blob storage on [`object_store`]: the local filesystem by default,
//! an S3 bucket (AWS or S3-compatible) when several machines share the blobs, memory
//! for tests. Object paths exist only in this crate.
//!
//! Bytes arrive as upload *parts* (`uploads/{id}/{key}`), are hashed while they are
//! received, and only after the digest is verified are they committed to their final,
//! content-addressed place (`blobs/{algorithm}/{xx}/{hex}`) by an atomic rename (one
//! part; on S3 a server-side copy, up to the store's copy limit) or a staged
//! concatenation (several parts on a local directory, or one beyond that limit). On a
//! store with multipart uploads (S3), a chunked upload's whole parts go into one
//! multipart upload spanning its requests (see [`session`]), which its commit
//! completes. A reader can therefore never see a partial or unverified blob, and every
//! blob is stored once whatever the number of repositories that link it.

mod config;
mod read;
mod session;
mod write;

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use domain::{Digest, DigestAlgorithm, DigestHasher};
use futures_util::{Stream, StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};

pub use config::{BlobStoreConfig, S3Credentials, S3Location};
pub use read::BlobBody;
pub use session::{Chunk, Claim, Staged};

/// The size of every part but the last of a multipart write to an object store: S3
/// refuses parts under 5 MiB (but the last), and some S3-compatible stores (R2) want
/// every part but the last of one size.
const PART_SIZE: usize = 8 << 20;
/// How many parts may be in flight to the store per upload (bounds memory per upload).
const WRITE_CONCURRENCY: usize = 4;
/// The most memory all multipart writes together hold for parts in flight (each
/// holds `WRITE_CONCURRENCY + 1` parts: those in flight and the one filling); a
/// write beyond it waits for another to finish.
const MULTIPART_MEMORY: usize = 256 << 20;

/// What can go wrong storing or reading blobs.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The client's request body failed before it was complete (disconnect, bad framing).
    #[error("the request body ended with an error: {0}")]
    Body(String),
    /// More bytes arrived than the configured limit allows.
    #[error("the blob exceeds the maximum size of {limit} bytes")]
    TooLarge { limit: u64 },
    /// The blob is not in the store.
    #[error("blob not found")]
    NotFound,
    /// The blob store failed; the request may be retried.
    #[error("blob store error: {0}")]
    Storage(#[from] object_store::Error),
    /// The blob store URL is not one Gantry understands.
    #[error("unsupported blob store `{url}`: {why}")]
    UnsupportedUrl { url: String, why: String },
    /// The request writing to an upload session no longer holds it (its claim lapsed,
    /// or another request took the session): it wrote nothing more.
    #[error("another request took over this upload session")]
    ClaimLost,
    /// The upload session's record could not be updated.
    #[error("upload session: {0}")]
    Session(String),
    /// The committed bytes do not have the digest the client named.
    #[error("the uploaded content has digest {actual}")]
    DigestMismatch { actual: Digest },
    /// A local blob directory could not be created.
    #[error("cannot use blob directory {path}: {source}")]
    Directory {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One stored part of an upload: `size` bytes under a key unique to the attempt that
/// wrote them or, when `number` is set, that part of the upload's multipart upload
/// (the key then holds what the store answered for it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartRef {
    pub key: String,
    pub size: u64,
    pub number: Option<u32>,
}

impl PartRef {
    /// A part stored as an object of its own.
    pub fn object(key: String, size: u64) -> PartRef {
        PartRef {
            key,
            size,
            number: None,
        }
    }
}

/// A fresh key for a part about to be written.
pub fn new_part_key() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A blob object as a listing of the store shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    pub digest: Digest,
    pub size: u64,
    /// When the store says the object was written, in milliseconds since the epoch.
    pub written_at_millis: i64,
}

/// The content-addressed blob store. Cheap to clone.
#[derive(Clone)]
pub struct BlobStore {
    objects: Arc<dyn ObjectStore>,
    /// The same store when it is a local directory: writes then take a faster path.
    local: Option<Arc<LocalFileSystem>>,
    fsync: bool,
    description: String,
    /// Parts' worth of memory multipart writes may hold, all together.
    multipart_memory: Arc<tokio::sync::Semaphore>,
    /// Where downloads are redirected to presigned URLs: the bucket's signer and the
    /// key prefix its objects live under.
    redirects: Option<Redirects>,
    /// The largest part a commit moves by a server-side copy (S3's rename is a
    /// `CopyObject`); `None`: any (a local rename).
    copy_limit: Option<u64>,
    /// The store's multipart uploads, where chunked uploads keep their whole parts.
    multipart: Option<session::Multipart>,
}

/// Presigning downloads in an S3 bucket.
#[derive(Clone)]
struct Redirects {
    signer: Arc<object_store::aws::AmazonS3>,
    prefix: String,
}

/// How long a presigned download URL works (the reference registry's 20 minutes).
const REDIRECT_VALIDITY: std::time::Duration = std::time::Duration::from_secs(20 * 60);

impl BlobStore {
    /// Opens the store named by `url` (see [`BlobStoreConfig::parse`]); an S3 bucket
    /// is reached with the instance's own credentials.
    pub fn open(url: &str, fsync: bool) -> Result<BlobStore, BlobError> {
        BlobStore::open_config(&BlobStoreConfig::parse(url)?, fsync, None)
    }

    /// Opens the store `config` names; an S3 bucket with `credentials` when given,
    /// else with the instance's own (its metadata service).
    pub fn open_config(
        config: &BlobStoreConfig,
        fsync: bool,
        credentials: Option<&S3Credentials>,
    ) -> Result<BlobStore, BlobError> {
        match config {
            BlobStoreConfig::Memory => Ok(BlobStore::memory()),
            BlobStoreConfig::Local { dir } => BlobStore::local(dir, fsync),
            BlobStoreConfig::S3(location) => BlobStore::s3(location, credentials),
        }
    }

    fn local(dir: &std::path::Path, fsync: bool) -> Result<BlobStore, BlobError> {
        std::fs::create_dir_all(dir).map_err(|source| BlobError::Directory {
            path: dir.to_owned(),
            source,
        })?;
        let dir = dir.canonicalize().map_err(|source| BlobError::Directory {
            path: dir.to_owned(),
            source,
        })?;
        let local = Arc::new(
            LocalFileSystem::new_with_prefix(&dir)?
                .with_automatic_cleanup(true)
                .with_fsync(fsync),
        );
        Ok(BlobStore {
            objects: local.clone(),
            local: Some(local),
            fsync,
            description: format!("file://{}", dir.display()),
            multipart_memory: multipart_memory(),
            redirects: None,
            copy_limit: None,
            multipart: None,
        })
    }

    fn s3(
        location: &S3Location,
        credentials: Option<&S3Credentials>,
    ) -> Result<BlobStore, BlobError> {
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&location.bucket)
            .with_region(&location.region)
            .with_allow_http(location.allows_http())
            .with_virtual_hosted_style_request(location.virtual_hosted_style);
        if let Some(endpoint) = &location.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(credentials) = credentials {
            builder = builder
                .with_access_key_id(&credentials.access_key_id)
                .with_secret_access_key(&credentials.secret_access_key);
            if let Some(token) = &credentials.session_token {
                builder = builder.with_token(token);
            }
        }
        let bucket = Arc::new(builder.build()?);
        let objects: Arc<dyn ObjectStore> = if location.prefix.is_empty() {
            bucket.clone()
        } else {
            Arc::new(PrefixStore::new(bucket.clone(), location.prefix.as_str()))
        };
        let multipart = session::Multipart::S3 {
            bucket: bucket.clone(),
            prefix: location.prefix.clone(),
        };
        let redirects = location.redirect.then(|| Redirects {
            signer: bucket,
            prefix: location.prefix.clone(),
        });
        let endpoint = location.endpoint.as_deref().unwrap_or("AWS");
        Ok(BlobStore {
            objects,
            local: None,
            fsync: false,
            description: format!("s3://{}/{} at {endpoint}", location.bucket, location.prefix),
            multipart_memory: multipart_memory(),
            redirects,
            copy_limit: Some(location.copy_limit),
            multipart: Some(multipart),
        })
    }

    /// A store that keeps everything in memory, for tests.
    pub fn memory() -> BlobStore {
        let objects = Arc::new(InMemory::new());
        BlobStore {
            objects: objects.clone(),
            local: None,
            fsync: false,
            description: "memory://".to_owned(),
            multipart_memory: multipart_memory(),
            redirects: None,
            copy_limit: None,
            multipart: Some(session::Multipart::memory(objects)),
        }
    }

    /// Holds memory for one multipart write (its parts in flight and the one filling)
    /// until the returned permit is dropped.
    async fn hold_multipart_memory(&self) -> tokio::sync::OwnedSemaphorePermit {
        let parts = u32::try_from(WRITE_CONCURRENCY + 1).unwrap_or(u32::MAX);
        // The semaphore is never closed.
        self.multipart_memory
            .clone()
            .acquire_many_owned(parts)
            .await
            .expect("the multipart memory semaphore is never closed")
    }

    /// Where the blobs live, for logs.
    pub fn description(&self) -> &str {
        &self.description
    }

    fn blob_path(digest: &Digest) -> Path {
        let hex = digest.hex();
        Path::from(format!(
            "blobs/{}/{}/{}",
            digest.algorithm().as_str(),
            &hex[..2],
            hex
        ))
    }

    fn part_path(upload_id: &str, key: &str) -> Path {
        Path::from(format!("uploads/{upload_id}/{key}"))
    }

    /// Streams `body` into part `key` of upload `upload_id`, whose earlier parts hold
    /// `start` bytes, feeding every byte to `hasher` (if any). Refuses to store more than
    /// `max_total` bytes for the whole upload. Returns the part's size. On any error
    /// nothing is kept.
    pub async fn write_part<S, E>(
        &self,
        upload_id: &str,
        key: &str,
        start: u64,
        body: S,
        mut hasher: Option<&mut DigestHasher>,
        max_total: u64,
    ) -> Result<u64, BlobError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        let location = Self::part_path(upload_id, key);
        if let Some(local) = &self.local {
            let destination = local.path_to_filesystem(&location)?;
            return write::write_local(destination, body, hasher, start, max_total, self.fsync)
                .await;
        }
        let _memory = self.hold_multipart_memory().await;
        let upload = self.objects.put_multipart(&location).await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        let mut written: u64 = 0;
        let mut body = std::pin::pin!(body);
        let outcome: Result<(), BlobError> = async {
            while let Some(chunk) = body.next().await {
                let chunk =
                    session::take_in(chunk, &mut written, start, max_total, hasher.as_deref_mut())?;
                writer.wait_for_capacity(WRITE_CONCURRENCY).await?;
                writer.put(chunk);
            }
            Ok(())
        }
        .await;
        match outcome {
            Ok(()) => {
                writer.finish().await?;
                Ok(written)
            }
            Err(error) => {
                // Best effort: the staged data is discarded; a failed abort only leaves
                // a file the upload purge removes.
                if let Err(abort_error) = writer.abort().await {
                    tracing::warn!(%abort_error, upload_id, "could not discard a failed upload part");
                }
                Err(error)
            }
        }
    }

    /// Hashes the stored parts again under `algorithm`. Used only when the client
    /// names a digest in another algorithm than the one hashed while receiving.
    pub async fn hash_parts(
        &self,
        upload_id: &str,
        parts: &[PartRef],
        algorithm: DigestAlgorithm,
    ) -> Result<Digest, BlobError> {
        let mut hasher = DigestHasher::new(algorithm);
        for part in parts {
            let mut stream = self
                .read_object(&Self::part_path(upload_id, &part.key), None)
                .await?;
            while let Some(chunk) = stream.next().await {
                hasher.update(&chunk?);
            }
        }
        Ok(hasher.finish())
    }

    /// Makes the stored parts of upload session `staged` the blob `digest`. With
    /// `verify`, the bytes are hashed first and refused
    /// ([`BlobError::DigestMismatch`]) unless they have that digest; without, the caller
    /// has checked it (hashing while receiving). A session with whole parts in a
    /// multipart upload completes it, under `claim`. If the blob is already stored,
    /// the parts are simply discarded.
    pub async fn commit(
        &self,
        staged: &Staged<'_>,
        digest: &Digest,
        verify: bool,
        claim: Option<&dyn Claim>,
    ) -> Result<(), BlobError> {
        let upload_id = staged.upload_id;
        let pieces = session::pieces(staged.parts);
        if let Some(multipart_id) = staged.multipart {
            if pieces.len() == staged.parts.len() {
                // Begun, but no whole part was ever recorded in it.
                self.abort_multipart(upload_id, multipart_id).await;
            } else {
                let claim = claim.ok_or_else(|| {
                    BlobError::Session("completing a multipart upload needs a claim".to_owned())
                })?;
                let size: u64 = staged.parts.iter().map(|part| part.size).sum();
                let object = session::staged_object(upload_id);
                // A commit retried after its multipart upload completed finds the
                // object it left.
                let completed = match self.objects.head(&object).await {
                    Ok(meta) => meta.size == size,
                    Err(object_store::Error::NotFound { .. }) => false,
                    Err(error) => return Err(error.into()),
                };
                if !completed {
                    self.complete_session(staged, multipart_id, claim).await?;
                    // The store assembled what it holds: anything but the recorded
                    // bytes' length means a part is not the one recorded.
                    let stored = self.objects.head(&object).await?.size;
                    if stored != size {
                        let _ = self.objects.delete(&object).await;
                        return Err(BlobError::Session(format!(
                            "the completed upload holds {stored} bytes, not the {size} recorded"
                        )));
                    }
                }
                match self.settle(&object, size, digest, verify).await {
                    Ok(()) => {
                        self.discard(upload_id, &pieces).await;
                        return Ok(());
                    }
                    Err(error @ BlobError::DigestMismatch { .. }) => {
                        let _ = self.objects.delete(&object).await;
                        return Err(error);
                    }
                    // Kept for a retry: the session still names its bytes.
                    Err(error) => return Err(error),
                }
            }
        }
        let parts = staged.parts;
        if verify {
            let actual = self
                .hash_parts(upload_id, parts, digest.algorithm())
                .await?;
            if &actual != digest {
                self.discard(upload_id, parts).await;
                return Err(BlobError::DigestMismatch { actual });
            }
        }
        let destination = Self::blob_path(digest);
        if self.exists(digest).await? {
            self.discard(upload_id, parts).await;
            return Ok(());
        }
        match parts {
            [] => {
                self.objects.put(&destination, Bytes::new().into()).await?;
            }
            [single] if self.copy_limit.is_none_or(|limit| single.size <= limit) => {
                match self
                    .objects
                    .rename(&Self::part_path(upload_id, &single.key), &destination)
                    .await
                {
                    Ok(()) => {}
                    Err(object_store::Error::NotFound { .. }) => return Err(BlobError::NotFound),
                    Err(error) => return Err(error.into()),
                }
            }
            // Several parts, or one too large for the store's server-side copy.
            parts => {
                let sources: Vec<Path> = parts
                    .iter()
                    .map(|part| Self::part_path(upload_id, &part.key))
                    .collect();
                self.concatenate(&sources, &destination).await?;
                self.discard(upload_id, parts).await;
            }
        }
        Ok(())
    }

    /// Makes the complete object `object` (`size` bytes) the blob `digest`, hashing it
    /// first with `verify`: by a rename (a server-side copy up to the copy limit), or a
    /// streamed rewrite beyond it.
    async fn settle(
        &self,
        object: &Path,
        size: u64,
        digest: &Digest,
        verify: bool,
    ) -> Result<(), BlobError> {
        if verify {
            let mut hasher = DigestHasher::new(digest.algorithm());
            let mut stream = self.read_object(object, None).await?;
            while let Some(chunk) = stream.next().await {
                hasher.update(&chunk?);
            }
            let actual = hasher.finish();
            if &actual != digest {
                return Err(BlobError::DigestMismatch { actual });
            }
        }
        if self.exists(digest).await? {
            let _ = self.objects.delete(object).await;
            return Ok(());
        }
        let destination = Self::blob_path(digest);
        if self.copy_limit.is_none_or(|limit| size <= limit) {
            self.objects.rename(object, &destination).await?;
        } else {
            self.concatenate(std::slice::from_ref(object), &destination)
                .await?;
            let _ = self.objects.delete(object).await;
        }
        Ok(())
    }

    /// Writes the objects `sources`, in order, as the object `destination`, by one
    /// multipart write (the object appears whole when it completes, or not at all).
    async fn concatenate(&self, sources: &[Path], destination: &Path) -> Result<(), BlobError> {
        let _memory = self.hold_multipart_memory().await;
        let upload = self.objects.put_multipart(destination).await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        let copied: Result<(), BlobError> = async {
            for source in sources {
                let mut stream = self.read_object(source, None).await?;
                while let Some(chunk) = stream.next().await {
                    writer.wait_for_capacity(WRITE_CONCURRENCY).await?;
                    writer.put(chunk?);
                }
            }
            Ok(())
        }
        .await;
        match copied {
            Ok(()) => {
                writer.finish().await?;
                Ok(())
            }
            Err(error) => {
                let _ = writer.abort().await;
                Err(error)
            }
        }
    }

    /// Deletes an upload's parts. Failures are logged, not returned: leftovers are
    /// harmless and removed by the next purge.
    pub async fn discard(&self, upload_id: &str, parts: &[PartRef]) {
        for part in parts {
            match self
                .objects
                .delete(&Self::part_path(upload_id, &part.key))
                .await
            {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(error) => tracing::warn!(%error, upload_id, "could not delete an upload part"),
            }
        }
    }

    /// Upload ids that have objects older than `cutoff` (milliseconds since the epoch).
    pub async fn stale_uploads(&self, cutoff_millis: i64) -> Result<Vec<String>, BlobError> {
        let prefix = Path::from("uploads");
        let mut stale = std::collections::BTreeSet::new();
        let mut listing = self.objects.list(Some(&prefix));
        while let Some(meta) = listing.next().await {
            let meta = match meta {
                Ok(meta) => meta,
                Err(object_store::Error::NotFound { .. }) => continue,
                Err(error) => return Err(error.into()),
            };
            if meta.last_modified.timestamp_millis() < cutoff_millis
                && let Some(id) = meta.location.parts().nth(1)
            {
                stale.insert(id.as_ref().to_owned());
            }
        }
        Ok(stale.into_iter().collect())
    }

    /// Deletes whatever is stored for an upload, parts the database knows of or not,
    /// and abandons its multipart upload, if it began one.
    pub async fn discard_all(
        &self,
        upload_id: &str,
        multipart: Option<&str>,
    ) -> Result<(), BlobError> {
        if let Some(multipart_id) = multipart {
            self.abort_multipart(upload_id, multipart_id).await;
        }
        let prefix = Path::from(format!("uploads/{upload_id}"));
        let locations = self
            .objects
            .list(Some(&prefix))
            .map_ok(|meta| meta.location)
            .boxed();
        self.objects
            .delete_stream(locations)
            .try_collect::<Vec<_>>()
            .await?;
        Ok(())
    }

    /// Whether the blob is stored.
    pub async fn exists(&self, digest: &Digest) -> Result<bool, BlobError> {
        match self.objects.head(&Self::blob_path(digest)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(error) => Err(error.into()),
        }
    }

    /// Deletes the blob's object; one already gone is not an error.
    pub async fn delete(&self, digest: &Digest) -> Result<(), BlobError> {
        match self.objects.delete(&Self::blob_path(digest)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// Every blob object the store lists, with its size and when it was written. A
    /// listing may be incomplete or stale (an S3-compatible store's may be): it is
    /// only ever used to find objects the database has no row for. Objects under the
    /// blob prefix whose path names no digest are skipped.
    pub fn list(&self) -> futures_util::stream::BoxStream<'_, Result<StoredObject, BlobError>> {
        let prefix = Path::from("blobs");
        self.objects
            .list(Some(&prefix))
            .filter_map(|meta| async move {
                match meta {
                    Ok(meta) => {
                        let mut parts = meta.location.parts();
                        let _blobs = parts.next();
                        let algorithm = parts.next()?;
                        let _fanout = parts.next();
                        let hex = parts.next()?;
                        let digest =
                            Digest::parse(&format!("{}:{}", algorithm.as_ref(), hex.as_ref()))
                                .ok()?;
                        Some(Ok(StoredObject {
                            digest,
                            size: meta.size,
                            written_at_millis: meta.last_modified.timestamp_millis(),
                        }))
                    }
                    Err(object_store::Error::NotFound { .. }) => None,
                    Err(error) => Some(Err(error.into())),
                }
            })
            .boxed()
    }

    /// Streams the blob, or the byte range `first..=last` of it.
    pub async fn get(
        &self,
        digest: &Digest,
        range: Option<(u64, u64)>,
    ) -> Result<BlobBody, BlobError> {
        self.read_object(&Self::blob_path(digest), range).await
    }

    /// A presigned URL the client may download the blob from directly, when the store
    /// is an S3 bucket configured to redirect (`redirect=true`); else `None`, and the
    /// blob is streamed through [`BlobStore::get`]. The URL works for 20 minutes.
    pub async fn download_url(&self, digest: &Digest) -> Result<Option<String>, BlobError> {
        let Some(redirects) = &self.redirects else {
            return Ok(None);
        };
        let path = Self::blob_path(digest);
        let path = if redirects.prefix.is_empty() {
            path
        } else {
            Path::from(format!("{}/{path}", redirects.prefix))
        };
        let url = object_store::signer::Signer::signed_url(
            &*redirects.signer,
            object_store::signer::Method::GET,
            &path,
            REDIRECT_VALIDITY,
        )
        .await?;
        Ok(Some(url.to_string()))
    }

    /// Stores small content in one call (an already-verified digest).
    pub async fn put_small(&self, digest: &Digest, content: Bytes) -> Result<(), BlobError> {
        if !self.exists(digest).await? {
            self.objects
                .put(&Self::blob_path(digest), content.into())
                .await?;
        }
        Ok(())
    }

    /// Checks that the store answers, for `/readyz`.
    pub async fn ping(&self) -> Result<(), BlobError> {
        match self.objects.head(&Path::from("readyz-probe")).await {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    async fn read_object(
        &self,
        location: &Path,
        range: Option<(u64, u64)>,
    ) -> Result<BlobBody, BlobError> {
        if let Some(local) = &self.local {
            let path = local.path_to_filesystem(location)?;
            return BlobBody::open_local(path, range).await;
        }
        let mut options = object_store::GetOptions::default();
        if let Some((first, last)) = range {
            options.range = Some((first..last + 1).into());
        }
        match self.objects.get_opts(location, options).await {
            Ok(result) => Ok(BlobBody::from_result(result)),
            Err(object_store::Error::NotFound { .. }) => Err(BlobError::NotFound),
            Err(error) => Err(error.into()),
        }
    }
}

/// The semaphore of [`MULTIPART_MEMORY`], counted in parts.
fn multipart_memory() -> Arc<tokio::sync::Semaphore> {
    Arc::new(tokio::sync::Semaphore::new(MULTIPART_MEMORY / PART_SIZE))
}
