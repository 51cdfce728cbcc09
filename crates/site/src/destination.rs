//! Where a site is synced to: a local directory or a prefix of an S3 bucket. Both hold
//! the site's files plus Gantry's records of them under `.gantry/` (`files.json`,
//! `deployed.json`). A directory cannot keep HTTP headers, so for a directory the
//! headers are only recorded in `files.json` (for the web server in front of it); an
//! S3 object carries its `Content-Type` and `Cache-Control` itself, and the SHA-256 of
//! its content as metadata, so a sync interrupted before it recorded `files.json`
//! can tell on its next run which uploads already landed.
//!
//! The destination is Gantry's: files in it that are not part of the deployed site are
//! deleted by the next sync.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use domain::application::{SecretRef, SiteDestination};
use futures_util::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{
    Attribute, AttributeValue, Attributes, GetOptions, ObjectStore, ObjectStoreExt,
    PutMultipartOptions, PutOptions, PutPayload, RetryConfig, WriteMultipart,
};
use sha2::{Digest as _, Sha256};

use crate::headers::FileHeaders;
use site_archive::RECORDS_DIRECTORY;

/// The object metadata key holding an object's SHA-256 (`x-amz-meta-gantry-sha256`).
const SHA256_METADATA: &str = "gantry-sha256";
/// Files up to this size are uploaded in one request; larger ones in parts.
const SINGLE_PUT_BYTES: u64 = 8 << 20;
/// The part size of multipart uploads.
const PART_BYTES: usize = 8 << 20;

/// How Gantry reaches S3 (or an S3-compatible store) for `s3://` destinations.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Settings {
    /// The endpoint URL (`http://127.0.0.1:8333` for SeaweedFS or MinIO); AWS's regional
    /// endpoint when absent.
    pub endpoint: Option<String>,
    /// The region requests are signed for.
    pub region: String,
    /// The access key id; without one, credentials come from the instance metadata
    /// service.
    pub access_key_id: Option<String>,
    /// The secret access key, by reference to a file in the secrets directory
    /// (`[deploy] secrets_dir`), never the key itself.
    pub secret_access_key_ref: Option<String>,
    /// Allow a plain-http endpoint (local object stores, tests).
    pub allow_http: bool,
    /// Address buckets as `BUCKET.endpoint` instead of `endpoint/BUCKET`.
    pub virtual_hosted_style: bool,
    /// How long one request, with its retries, may take, in seconds.
    pub request_timeout_secs: u64,
}

impl Default for S3Settings {
    fn default() -> Self {
        S3Settings {
            endpoint: None,
            region: "us-east-1".to_owned(),
            access_key_id: None,
            secret_access_key_ref: None,
            allow_http: false,
            virtual_hosted_style: false,
            request_timeout_secs: 60,
        }
    }
}

/// Why a sync (or reading a destination) failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("{operation}: {source}")]
    Storage {
        operation: String,
        source: object_store::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The destination cannot be used as configured (a missing secret, a bad key).
    #[error("{0}")]
    Configuration(String),
}

impl SyncError {
    /// Whether trying again later may succeed (network trouble, a 5xx, a full disk) as
    /// opposed to a refusal that will not change by itself (bad credentials, a
    /// read-only directory).
    pub fn is_transient(&self) -> bool {
        use std::io::ErrorKind;
        match self {
            SyncError::Storage { source, .. } => !matches!(
                source,
                object_store::Error::Unauthenticated { .. }
                    | object_store::Error::PermissionDenied { .. }
                    | object_store::Error::NotSupported { .. }
                    | object_store::Error::NotImplemented { .. }
                    | object_store::Error::InvalidPath { .. }
                    | object_store::Error::UnknownConfigurationKey { .. }
            ),
            SyncError::Io { source, .. } => !matches!(
                source.kind(),
                ErrorKind::PermissionDenied
                    | ErrorKind::ReadOnlyFilesystem
                    | ErrorKind::InvalidInput
                    | ErrorKind::NotADirectory
                    | ErrorKind::IsADirectory
            ),
            SyncError::Configuration(_) => false,
        }
    }
}

/// A site destination, opened.
#[derive(Debug, Clone)]
pub struct Destination {
    backend: Backend,
    description: String,
}

#[derive(Debug, Clone)]
enum Backend {
    Directory(PathBuf),
    S3 {
        store: Arc<AmazonS3>,
        /// The key prefix without a trailing `/`; empty for the bucket's root.
        prefix: String,
    },
}

impl Destination {
    /// A local directory (created on first write).
    pub fn directory(root: impl Into<PathBuf>) -> Destination {
        let root = root.into();
        Destination {
            description: root.display().to_string(),
            backend: Backend::Directory(root),
        }
    }

    /// A prefix of an S3 bucket, reached with `settings`; `secret_access_key` is the
    /// value of the secret `settings.secret_access_key_ref` names.
    pub fn s3(
        settings: &S3Settings,
        secret_access_key: Option<String>,
        bucket: &str,
        prefix: &str,
    ) -> Result<Destination, SyncError> {
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_region(&settings.region)
            .with_allow_http(settings.allow_http)
            .with_virtual_hosted_style_request(settings.virtual_hosted_style)
            .with_retry(RetryConfig {
                max_retries: 4,
                retry_timeout: Duration::from_secs(settings.request_timeout_secs),
                ..RetryConfig::default()
            });
        if let Some(endpoint) = &settings.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(key_id) = &settings.access_key_id {
            builder = builder.with_access_key_id(key_id);
        }
        if let Some(secret) = secret_access_key {
            builder = builder.with_secret_access_key(secret);
        }
        let store = builder.build().map_err(|error| {
            SyncError::Configuration(format!("cannot use S3 bucket {bucket}: {error}"))
        })?;
        let prefix = prefix.trim_matches('/').to_owned();
        Ok(Destination {
            description: if prefix.is_empty() {
                format!("s3://{bucket}")
            } else {
                format!("s3://{bucket}/{prefix}")
            },
            backend: Backend::S3 {
                store: Arc::new(store),
                prefix,
            },
        })
    }

    /// The destination a target declares, reading the S3 secret through `secrets`.
    pub fn open(
        target: &SiteDestination,
        settings: &S3Settings,
        secrets: &deploy::Secrets,
    ) -> Result<Destination, SyncError> {
        match target {
            SiteDestination::Directory(path) => Ok(Destination::directory(path)),
            SiteDestination::S3 { bucket, prefix } => {
                let secret = match &settings.secret_access_key_ref {
                    None => None,
                    Some(reference) => {
                        let reference = SecretRef::parse(reference).map_err(|error| {
                            SyncError::Configuration(format!(
                                "the S3 secret_access_key_ref is invalid: {error}"
                            ))
                        })?;
                        Some(secrets.read(&reference).map_err(SyncError::Configuration)?)
                    }
                };
                Destination::s3(settings, secret, bucket, prefix)
            }
        }
    }

    /// `/srv/www/site` or `s3://bucket/prefix`, for logs.
    pub fn description(&self) -> &str {
        &self.description
    }

    fn key(prefix: &str, name: &str) -> Result<ObjectPath, SyncError> {
        let key = if prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{prefix}/{name}")
        };
        ObjectPath::parse(&key)
            .map_err(|error| SyncError::Configuration(format!("cannot store {key:?}: {error}")))
    }

    /// The site's files at the destination and their sizes (Gantry's records aside).
    pub async fn list(&self) -> Result<BTreeMap<String, u64>, SyncError> {
        match &self.backend {
            Backend::Directory(root) => {
                let root = root.clone();
                blocking(move || {
                    let mut files = BTreeMap::new();
                    list_directory(&root, &root, &mut files)?;
                    Ok(files)
                })
                .await
            }
            Backend::S3 { store, prefix } => {
                let location = (!prefix.is_empty())
                    .then(|| Self::key("", prefix))
                    .transpose()?;
                let mut listing = store.list(location.as_ref());
                let mut files = BTreeMap::new();
                let strip = if prefix.is_empty() {
                    String::new()
                } else {
                    format!("{prefix}/")
                };
                while let Some(meta) = listing.next().await {
                    let meta = meta.map_err(|source| SyncError::Storage {
                        operation: format!("listing {}", self.description),
                        source,
                    })?;
                    let key = meta.location.as_ref();
                    let Some(name) = key.strip_prefix(&strip) else {
                        continue;
                    };
                    if !is_record(name) {
                        files.insert(name.to_owned(), meta.size);
                    }
                }
                Ok(files)
            }
        }
    }

    /// The record `.gantry/NAME`, if there is one.
    pub async fn read_record(&self, name: &str) -> Result<Option<Vec<u8>>, SyncError> {
        let record = format!("{RECORDS_DIRECTORY}/{name}");
        match &self.backend {
            Backend::Directory(root) => {
                let path = root.join(&record);
                blocking(move || match std::fs::read(&path) {
                    Ok(bytes) => Ok(Some(bytes)),
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(source) => Err(SyncError::Io { path, source }),
                })
                .await
            }
            Backend::S3 { store, prefix } => {
                let key = Self::key(prefix, &record)?;
                let storage = |source| SyncError::Storage {
                    operation: format!("reading {}/{record}", self.description),
                    source,
                };
                match store.get(&key).await {
                    Ok(result) => Ok(Some(result.bytes().await.map_err(storage)?.to_vec())),
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(error) => Err(storage(error)),
                }
            }
        }
    }

    /// Writes the record `.gantry/NAME` in one atomic step.
    pub async fn write_record(&self, name: &str, content: Vec<u8>) -> Result<(), SyncError> {
        let record = format!("{RECORDS_DIRECTORY}/{name}");
        match &self.backend {
            Backend::Directory(root) => {
                let root = root.clone();
                blocking(move || {
                    let temporary =
                        write_temporary(&root, |file| std::io::Write::write_all(file, &content))?;
                    let path = root.join(&record);
                    std::fs::rename(&temporary, &path).map_err(|source| SyncError::Io {
                        path: path.clone(),
                        source,
                    })
                })
                .await
            }
            Backend::S3 { store, prefix } => {
                let key = Self::key(prefix, &record)?;
                let mut attributes = Attributes::new();
                attributes.insert(Attribute::ContentType, "application/json".into());
                attributes.insert(Attribute::CacheControl, "no-store".into());
                let options = PutOptions {
                    attributes,
                    ..PutOptions::default()
                };
                store
                    .put_opts(&key, PutPayload::from(content), options)
                    .await
                    .map_err(|source| SyncError::Storage {
                        operation: format!("writing {}/{record}", self.description),
                        source,
                    })?;
                Ok(())
            }
        }
    }

    /// Puts the file at `source` as `name`, atomically (readers see the old file or the
    /// new one, never part of one), with `headers`.
    pub async fn put_file(
        &self,
        name: &str,
        source: &Path,
        size: u64,
        sha256: &str,
        headers: &FileHeaders,
    ) -> Result<(), SyncError> {
        match &self.backend {
            Backend::Directory(root) => {
                let (root, name, source) = (root.clone(), name.to_owned(), source.to_owned());
                blocking(move || put_directory_file(&root, &name, &source)).await
            }
            Backend::S3 { store, prefix } => {
                let key = Self::key(prefix, name)?;
                let mut attributes = Attributes::new();
                attributes.insert(
                    Attribute::ContentType,
                    AttributeValue::from(headers.content_type.clone()),
                );
                attributes.insert(
                    Attribute::CacheControl,
                    AttributeValue::from(headers.cache_control.clone()),
                );
                attributes.insert(
                    Attribute::Metadata(SHA256_METADATA.into()),
                    AttributeValue::from(sha256.to_owned()),
                );
                let storage = |source| SyncError::Storage {
                    operation: format!("uploading {name} to {}", self.description),
                    source,
                };
                let io = |error| SyncError::Io {
                    path: source.to_owned(),
                    source: error,
                };
                if size <= SINGLE_PUT_BYTES {
                    let content = tokio::fs::read(source).await.map_err(io)?;
                    let options = PutOptions {
                        attributes,
                        ..PutOptions::default()
                    };
                    store
                        .put_opts(&key, PutPayload::from(content), options)
                        .await
                        .map_err(storage)?;
                } else {
                    let options = PutMultipartOptions {
                        attributes,
                        ..PutMultipartOptions::default()
                    };
                    let upload = store
                        .put_multipart_opts(&key, options)
                        .await
                        .map_err(storage)?;
                    let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
                    let mut file = tokio::fs::File::open(source).await.map_err(io)?;
                    let mut buffer = vec![0u8; PART_BYTES];
                    loop {
                        let read = tokio::io::AsyncReadExt::read(&mut file, &mut buffer).await;
                        match read {
                            Ok(0) => break,
                            Ok(read) => {
                                writer.wait_for_capacity(2).await.map_err(storage)?;
                                writer.put(Bytes::copy_from_slice(&buffer[..read]));
                            }
                            Err(error) => {
                                let _ = writer.abort().await;
                                return Err(io(error));
                            }
                        }
                    }
                    writer.finish().await.map_err(storage)?;
                }
                Ok(())
            }
        }
    }

    /// Whether `name` already holds exactly this content with these headers (used for
    /// files the last recorded sync does not vouch for).
    pub async fn holds(
        &self,
        name: &str,
        size: u64,
        sha256: &str,
        headers: &FileHeaders,
    ) -> Result<bool, SyncError> {
        match &self.backend {
            Backend::Directory(root) => {
                let path = root.join(name);
                let sha256 = sha256.to_owned();
                blocking(move || {
                    match std::fs::symlink_metadata(&path) {
                        Ok(meta) if meta.is_file() && meta.len() == size => {}
                        Ok(_) => return Ok(false),
                        Err(_) => return Ok(false),
                    }
                    let actual =
                        sha256_of_file(&path).map_err(|source| SyncError::Io { path, source })?;
                    Ok(actual == sha256)
                })
                .await
            }
            Backend::S3 { store, prefix } => {
                let key = Self::key(prefix, name)?;
                let options = GetOptions {
                    head: true,
                    ..GetOptions::default()
                };
                match store.get_opts(&key, options).await {
                    Ok(result) => {
                        let value = |attribute: &Attribute| {
                            result.attributes.get(attribute).map(|value| value.as_ref())
                        };
                        Ok(result.meta.size == size
                            && value(&Attribute::Metadata(SHA256_METADATA.into())) == Some(sha256)
                            && value(&Attribute::ContentType)
                                == Some(headers.content_type.as_str())
                            && value(&Attribute::CacheControl)
                                == Some(headers.cache_control.as_str()))
                    }
                    Err(object_store::Error::NotFound { .. }) => Ok(false),
                    Err(source) => Err(SyncError::Storage {
                        operation: format!("reading {name} at {}", self.description),
                        source,
                    }),
                }
            }
        }
    }

    /// Deletes `name` (nothing if it is gone already). In a directory, parents left
    /// empty are removed too.
    pub async fn delete(&self, name: &str) -> Result<(), SyncError> {
        match &self.backend {
            Backend::Directory(root) => {
                let (root, name) = (root.clone(), name.to_owned());
                blocking(move || delete_directory_file(&root, &name)).await
            }
            Backend::S3 { store, prefix } => {
                let key = Self::key(prefix, name)?;
                match store.delete(&key).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                    Err(source) => Err(SyncError::Storage {
                        operation: format!("deleting {name} at {}", self.description),
                        source,
                    }),
                }
            }
        }
    }
}

/// Whether a name (relative to the destination's root) is one of Gantry's records.
fn is_record(name: &str) -> bool {
    name.split('/').next() == Some(RECORDS_DIRECTORY)
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, SyncError> + Send + 'static,
) -> Result<T, SyncError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| SyncError::Io {
            path: PathBuf::new(),
            source: std::io::Error::other(error.to_string()),
        })?
}

fn list_directory(
    root: &Path,
    dir: &Path,
    files: &mut BTreeMap<String, u64>,
) -> Result<(), SyncError> {
    let io = |source| SyncError::Io {
        path: dir.to_owned(),
        source,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound && dir == root => {
            return Ok(());
        }
        Err(error) => return Err(io(error)),
    };
    for entry in entries {
        let entry = entry.map_err(io)?;
        let path = entry.path();
        let Ok(relative) = path.strip_prefix(root) else {
            continue;
        };
        let name = relative.to_string_lossy().into_owned();
        if dir == root && is_record(&name) {
            continue;
        }
        let kind = entry.file_type().map_err(io)?;
        if kind.is_dir() {
            list_directory(root, &path, files)?;
        } else {
            // Links and the like are listed with an impossible size so they are
            // replaced or deleted, never taken for a site file.
            let size = if kind.is_file() {
                entry.metadata().map_err(io)?.len()
            } else {
                u64::MAX
            };
            files.insert(name, size);
        }
    }
    Ok(())
}

/// Creates a file under `.gantry/tmp/` of `root` filled by `fill` and flushed to disk;
/// returns its path. Temporary files live beside the site (same filesystem, so a
/// rename moves them into place atomically) but outside it.
fn write_temporary(
    root: &Path,
    fill: impl FnOnce(&mut File) -> std::io::Result<()>,
) -> Result<PathBuf, SyncError> {
    let directory = root.join(RECORDS_DIRECTORY).join("tmp");
    std::fs::create_dir_all(&directory).map_err(|source| SyncError::Io {
        path: directory.clone(),
        source,
    })?;
    let path = directory.join(uuid::Uuid::new_v4().simple().to_string());
    let io = |source| SyncError::Io {
        path: path.clone(),
        source,
    };
    let mut file = File::create_new(&path).map_err(io)?;
    let filled = fill(&mut file).and_then(|()| file.sync_all());
    if let Err(error) = filled {
        let _ = std::fs::remove_file(&path);
        return Err(io(error));
    }
    Ok(path)
}

fn put_directory_file(root: &Path, name: &str, source: &Path) -> Result<(), SyncError> {
    let temporary = write_temporary(root, |file| {
        let mut input = File::open(source)?;
        std::io::copy(&mut input, file).map(|_| ())
    })?;
    let destination = root.join(name);
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| SyncError::Io { path, source }
    };
    // The previous site may have had a file where this one has a directory, or the
    // reverse; what is in the way is stale, so it goes.
    let mut ancestor = root.to_owned();
    let components: Vec<&str> = name.split('/').collect();
    for component in &components[..components.len() - 1] {
        ancestor.push(component);
        match std::fs::symlink_metadata(&ancestor) {
            Ok(meta) if !meta.is_dir() => {
                std::fs::remove_file(&ancestor).map_err(io(&ancestor))?;
            }
            _ => {}
        }
    }
    if let Some(parent) = destination.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    if let Ok(meta) = std::fs::symlink_metadata(&destination)
        && meta.is_dir()
    {
        std::fs::remove_dir_all(&destination).map_err(io(&destination))?;
    }
    std::fs::rename(&temporary, &destination).map_err(io(&destination))
}

fn delete_directory_file(root: &Path, name: &str) -> Result<(), SyncError> {
    let path = root.join(name);
    match std::fs::symlink_metadata(&path) {
        // Now a directory of the new site: not stale.
        Ok(meta) if meta.is_dir() => return Ok(()),
        Ok(_) => {}
        Err(_) => return Ok(()),
    }
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(error)
            if matches!(
                error.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) => {}
        Err(source) => return Err(SyncError::Io { path, source }),
    }
    // Prune directories the deletion left empty; one that is not empty stops it.
    let mut parent = path.parent();
    while let Some(dir) = parent {
        if dir == root || std::fs::remove_dir(dir).is_err() {
            break;
        }
        parent = dir.parent();
    }
    Ok(())
}

pub(crate) fn sha256_of_file(path: &Path) -> std::io::Result<String> {
    let mut file = File::open(path)?;
    let mut sha = Sha256::new();
    let mut buffer = vec![0u8; 256 << 10];
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        sha.update(&buffer[..read]);
    }
    Ok(hex::encode(sha.finalize()))
}
