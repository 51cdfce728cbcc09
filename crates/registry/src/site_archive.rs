//! Static-site archives are checked at push: before a site artifact's manifest is
//! stored, its zip layer is streamed from the blob store into a temporary file and put
//! through [`site_archive::check`] (no escaping names, no links, bounded entry count, expanded
//! size and compression ratio, sizes and CRCs that hold). A refused archive leaves no
//! manifest and no tag behind.

use std::path::PathBuf;

use domain::{Digest, RepoName};
use futures_util::StreamExt;
use http::StatusCode;
use store::Repository;
use tokio::io::AsyncWriteExt;

use crate::Registry;
use crate::error::{ErrorCode, RegistryError};

/// How site archives are checked at push.
#[derive(Debug, Clone)]
pub struct SiteArchiveChecks {
    /// What an archive may expand to (the same rules a deployment applies).
    pub limits: site_archive::ArchiveLimits,
    /// Largest archive accepted, in bytes, as stored (compressed).
    pub max_archive_bytes: u64,
    /// Archives checked at the same time; further pushes wait their turn.
    pub concurrency: usize,
    /// Where archives are copied while they are checked; `None`: the system's
    /// temporary directory. Each copy is removed when its check ends.
    pub temp_dir: Option<PathBuf>,
}

impl Default for SiteArchiveChecks {
    fn default() -> Self {
        SiteArchiveChecks {
            limits: site_archive::ArchiveLimits::default(),
            max_archive_bytes: 2 << 30,
            concurrency: 2,
            temp_dir: None,
        }
    }
}

/// Checks the site archive `layer` that a manifest pushed to `repository` names.
pub(crate) async fn check(
    registry: &Registry,
    repository: &Repository,
    name: &RepoName,
    layer: &site_archive::SiteLayer,
) -> Result<(), RegistryError> {
    let settings = &registry.config.site_archives;
    let digest = &layer.digest;
    // Only a blob of this repository may be read, as for every other pull.
    let stored = registry
        .store
        .blobs()
        .linked(repository.id, digest)
        .await?
        .ok_or_else(|| {
            RegistryError::new(
                ErrorCode::ManifestBlobUnknown,
                StatusCode::BAD_REQUEST,
                format!("blob {digest} is not in repository {name}; push it before the manifest"),
            )
            .with_detail(serde_json::json!({ "digest": digest.to_string() }))
        })?;
    let stored_size = u64::try_from(stored.size).unwrap_or(0);
    if stored_size != layer.size {
        return Err(refused(
            digest,
            format!(
                "the manifest says it is {} bytes, but {stored_size} are stored",
                layer.size
            ),
        ));
    }
    if stored_size > settings.max_archive_bytes {
        return Err(refused(
            digest,
            format!(
                "it is {stored_size} bytes; at most {} are accepted",
                settings.max_archive_bytes
            ),
        ));
    }

    let _turn = registry
        .site_checks
        .acquire()
        .await
        .map_err(|error| RegistryError::internal("site archive check queue", error))?;
    let copy = copy_to_temp_file(registry, digest, stored_size).await?;
    let limits = settings.limits;
    let checked = tokio::task::spawn_blocking(move || {
        let checked = site_archive::check(copy.path(), &limits);
        // Removing the copy is file I/O too: it happens here, off the async workers.
        drop(copy);
        checked
    })
    .await
    .map_err(|error| RegistryError::internal("site archive check", error))?;
    match checked {
        Ok(archive) => {
            tracing::debug!(repository = %name, %digest, files = archive.files.len(),
                expanded_bytes = archive.expanded_bytes, "site archive checked");
            Ok(())
        }
        Err(site_archive::ArchiveError::Io(error)) if !is_archive_fault(&error) => Err(
            RegistryError::internal("reading the copy of a site archive", error),
        ),
        Err(error) => {
            tracing::info!(repository = %name, %digest, %error, "site archive refused");
            Err(refused(digest, error.to_string()))
        }
    }
}

/// Streams the blob into a new temporary file, never holding it in memory whole.
async fn copy_to_temp_file(
    registry: &Registry,
    digest: &Digest,
    size: u64,
) -> Result<tempfile::NamedTempFile, RegistryError> {
    let directory = registry
        .config
        .site_archives
        .temp_dir
        .clone()
        .unwrap_or_else(std::env::temp_dir);
    let io = |error: std::io::Error| RegistryError::internal("copying a site archive", error);
    let (copy, file) = tokio::task::spawn_blocking(move || {
        let copy = tempfile::Builder::new()
            .prefix(".gantry-site-check-")
            .suffix(".zip")
            .tempfile_in(directory)?;
        let file = copy.reopen()?;
        Ok((copy, file))
    })
    .await
    .map_err(|error| RegistryError::internal("creating a site archive copy", error))?
    .map_err(io)?;
    let mut file = tokio::fs::File::from_std(file);
    let mut body = registry.blobs.get(digest, None).await?;
    let mut received: u64 = 0;
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        received += chunk.len() as u64;
        if received > size {
            break;
        }
        file.write_all(&chunk).await.map_err(io)?;
    }
    if received != size {
        return Err(RegistryError::internal(
            "copying a site archive",
            format!("blob {digest} holds {received} bytes where {size} are recorded"),
        ));
    }
    file.flush().await.map_err(io)?;
    Ok(copy)
}

/// Whether an I/O error reading the copy comes from what the archive says (data that
/// ends early or cannot be decoded) rather than from the disk.
fn is_archive_fault(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::InvalidData
    )
}

fn refused(digest: &Digest, reason: String) -> RegistryError {
    RegistryError::manifest_invalid(format!("the site archive {digest} is refused: {reason}"))
}
