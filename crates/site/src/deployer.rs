//! The `static-site` deploy target: fetch the site artifact from Gantry's own store,
//! verify and unpack it, sync it to the environment's destination, tell the CDN, and
//! record the digest at the destination.
//!
//! Every step is safe to repeat: the archive is fetched into a fresh work directory
//! per attempt, the sync uploads only what the destination does not already hold, the
//! CDN is told again only if something changed or the record is not yet written, and
//! `.gantry/deployed.json` is written only if it does not already name this
//! deployment.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use blobs::{BlobError, BlobStore};
use deploy::{
    DeployContext, DeployError, DeployFuture, Deployer, ObserveContext, ObserveFuture, Secrets,
};
use domain::application::{StaticSiteTarget, Target};
use domain::{Digest, DigestHasher, RepoName};
use futures_util::StreamExt;
use store::Store;
use tokio::io::AsyncWriteExt;

use crate::destination::{Destination, S3Settings, SyncError};
use crate::headers::DEFAULT_CACHE_CONTROL;
use crate::invalidate::{InvalidationRequest, invalidate};
use crate::sync::{DeployedRecord, SyncOptions};
use site_archive::extract_files;
use site_archive::{ArchiveLimits, CheckedFile, SiteLayer, check, read_site_manifest};

/// What the `static-site` target needs from the server's configuration
/// (`[deploy.static_site]`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StaticSiteSettings {
    /// Where archives are downloaded and unpacked while a deployment runs (one
    /// subdirectory per deployment, removed when it ends). The system's temporary
    /// directory when absent.
    pub work_dir: Option<PathBuf>,
    /// Bounds on what an archive may expand to.
    pub limits: ArchiveLimits,
    /// The largest archive a deployment downloads, in bytes.
    pub max_archive_bytes: u64,
    /// How `s3://` destinations are reached.
    pub s3: S3Settings,
    /// `Cache-Control` of files that are neither fingerprinted nor HTML/JSON, unless
    /// the target declares its own `default_cache_control`.
    pub default_cache_control: String,
    /// Uploads (and comparisons) in flight at once.
    pub concurrency: usize,
    /// How long the CDN-invalidation hook may take, in seconds.
    pub invalidation_timeout_secs: u64,
    /// What an invalidation program sees of the server's environment (set by the
    /// server, never read from the file).
    #[serde(skip)]
    pub programs: deploy::ChildEnvironment,
}

impl Default for StaticSiteSettings {
    fn default() -> Self {
        StaticSiteSettings {
            work_dir: None,
            limits: ArchiveLimits::default(),
            max_archive_bytes: 2 << 30,
            s3: S3Settings::default(),
            default_cache_control: DEFAULT_CACHE_CONTROL.to_owned(),
            concurrency: 16,
            invalidation_timeout_secs: 120,
            programs: deploy::ChildEnvironment::default(),
        }
    }
}

/// Deploys site artifacts to directories and S3 buckets.
pub struct StaticSiteDeployer {
    settings: StaticSiteSettings,
    store: Store,
    blobs: BlobStore,
    secrets: Secrets,
    outbound: Arc<outbound::Policy>,
}

impl StaticSiteDeployer {
    /// A deployer reading artifacts from `store` and `blobs`, S3 secrets through
    /// `secrets`, and calling HTTP invalidation hooks through the `outbound` guard.
    pub fn new(
        settings: StaticSiteSettings,
        store: Store,
        blobs: BlobStore,
        secrets: Secrets,
        outbound: Arc<outbound::Policy>,
    ) -> StaticSiteDeployer {
        StaticSiteDeployer {
            settings,
            store,
            blobs,
            secrets,
            outbound,
        }
    }

    fn work_dir(&self) -> PathBuf {
        self.settings
            .work_dir
            .clone()
            .unwrap_or_else(|| std::env::temp_dir().join("gantry-sites"))
    }

    async fn run(
        &self,
        job: &DeployContext<'_>,
        target: &StaticSiteTarget,
        work: &Path,
    ) -> Result<String, DeployError> {
        let order = job.order;
        let digest = Digest::parse(&order.digest)
            .map_err(|e| DeployError::Failed(format!("invalid digest {}: {e}", order.digest)))?;
        // A destination that cannot be used fails before anything is downloaded.
        let destination = Destination::open(&target.destination, &self.settings.s3, &self.secrets)
            .map_err(sync_error)?;
        let archive = work.join("site.zip");
        let layer = self.fetch(job, &digest, &archive).await?;
        job.log.line(format!(
            "fetched the site archive {} ({} bytes) of {}",
            layer.digest, layer.size, job.image
        ));

        let staging = work.join("site");
        let limits = self.settings.limits;
        // The whole archive is checked before anything of it is written; then only
        // the files the destination lacks are extracted (see `sync_prepared`).
        let unpacked = {
            let archive = archive.clone();
            tokio::task::spawn_blocking(move || check(&archive, &limits))
                .await
                .map_err(|e| DeployError::Transient(format!("checking stopped: {e}")))?
                .map_err(|e| DeployError::Failed(format!("the site archive is refused: {e}")))?
        };
        job.log.line(format!(
            "checked {} files ({} bytes)",
            unpacked.files.len(),
            unpacked.expanded_bytes
        ));

        let options = SyncOptions {
            default_cache_control: target
                .default_cache_control
                .clone()
                .unwrap_or_else(|| self.settings.default_cache_control.clone()),
            concurrency: self.settings.concurrency,
        };
        job.log
            .line(format!("syncing to {}", destination.description()));
        let extract = |needed: Vec<CheckedFile>| {
            let (archive, staging) = (archive.clone(), staging.clone());
            job.log.line(format!(
                "extracting the {} files the destination lacks",
                needed.len()
            ));
            async move {
                tokio::task::spawn_blocking(move || extract_files(&archive, &staging, &needed))
                    .await
                    .map_err(|e| SyncError::Configuration(format!("extracting stopped: {e}")))?
                    .map_err(|e| {
                        SyncError::Configuration(format!("the site archive is refused: {e}"))
                    })
            }
        };
        let report = destination
            .sync_prepared(&staging, &unpacked.files, &options, extract)
            .await
            .map_err(sync_error)?;
        job.log.line(format!(
            "synced {}: {} uploaded, {} unchanged, {} deleted",
            destination.description(),
            report.uploaded,
            report.unchanged,
            report.deleted
        ));

        let recorded = destination.deployed().await.map_err(sync_error)?;
        let already_recorded = recorded.as_ref().is_some_and(|record| {
            record.deployment_id == order.deployment_id && record.digest == order.digest
        });
        let mut invalidated = false;
        if let Some(hook) = &target.invalidate
            && (report.changed() || !already_recorded)
        {
            let request = InvalidationRequest {
                application: order.application.clone(),
                environment: order.environment.clone(),
                digest: order.digest.clone(),
                deployment_id: order.deployment_id,
                destination: destination.description().to_owned(),
            };
            let timeout = Duration::from_secs(self.settings.invalidation_timeout_secs);
            let note = invalidate(
                hook,
                &request,
                &self.settings.programs,
                self.outbound.clone(),
                timeout,
            )
            .await
            .map_err(|e| {
                if e.transient {
                    DeployError::Transient(e.message)
                } else {
                    DeployError::Failed(e.message)
                }
            })?;
            job.log.line(format!(
                "invalidated {}: {note}",
                crate::invalidate::INVALIDATED_PATHS
            ));
            invalidated = true;
        }

        let record = DeployedRecord {
            application: order.application.clone(),
            environment: order.environment.clone(),
            digest: order.digest.clone(),
            deployment_id: order.deployment_id,
            deployed_at: jiff::Timestamp::now().to_string(),
        };
        let wrote = destination
            .record_deployment(&record)
            .await
            .map_err(sync_error)?;
        job.log.line(if wrote {
            format!("recorded {} in .gantry/deployed.json", order.digest)
        } else {
            ".gantry/deployed.json already names this deployment".to_owned()
        });
        Ok(format!(
            "synced {} files to {} ({} uploaded, {} unchanged, {} deleted){}",
            unpacked.files.len(),
            destination.description(),
            report.uploaded,
            report.unchanged,
            report.deleted,
            if invalidated { "; CDN invalidated" } else { "" }
        ))
    }

    /// Reads the site manifest of `digest` from the job's repository and streams its
    /// archive into `archive`, verifying the archive's digest and size.
    async fn fetch(
        &self,
        job: &DeployContext<'_>,
        digest: &Digest,
        archive: &Path,
    ) -> Result<SiteLayer, DeployError> {
        let store_error =
            |e: store::StoreError| DeployError::Transient(format!("reading the store: {e}"));
        let name = RepoName::parse(job.repository).map_err(|e| {
            DeployError::Failed(format!("invalid repository {}: {e}", job.repository))
        })?;
        let repository = self
            .store
            .repositories()
            .get(&name)
            .await
            .map_err(store_error)?
            .ok_or_else(|| DeployError::Failed(format!("no repository {}", job.repository)))?;
        let manifest = self
            .store
            .manifests()
            .by_digest(repository.id, digest)
            .await
            .map_err(store_error)?
            .ok_or_else(|| {
                DeployError::Failed(format!(
                    "{}@{digest} is not in the registry",
                    job.repository
                ))
            })?;
        let layer = read_site_manifest(&manifest.content).map_err(|e| {
            DeployError::Failed(format!(
                "{}@{digest} is not a site artifact: {e}",
                job.repository
            ))
        })?;
        if layer.size > self.settings.max_archive_bytes {
            return Err(DeployError::Failed(format!(
                "the site archive is {} bytes; at most {} are allowed",
                layer.size, self.settings.max_archive_bytes
            )));
        }
        let blob_error = |e: BlobError| match e {
            BlobError::NotFound => {
                DeployError::Failed(format!("the site archive {} is not stored", layer.digest))
            }
            other => DeployError::Transient(format!("reading the site archive: {other}")),
        };
        let mut body = self
            .blobs
            .get(&layer.digest, None)
            .await
            .map_err(blob_error)?;
        let io = |e: std::io::Error| {
            DeployError::Transient(format!("writing {}: {e}", archive.display()))
        };
        let mut file = tokio::fs::File::create_new(archive).await.map_err(io)?;
        let mut hasher = DigestHasher::new(layer.digest.algorithm());
        let mut received: u64 = 0;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(blob_error)?;
            received += chunk.len() as u64;
            if received > layer.size {
                return Err(DeployError::Failed(format!(
                    "the site archive {} is larger than its manifest says",
                    layer.digest
                )));
            }
            hasher.update(&chunk);
            file.write_all(&chunk).await.map_err(io)?;
        }
        file.flush().await.map_err(io)?;
        let actual = hasher.finish();
        if actual != layer.digest || received != layer.size {
            return Err(DeployError::Failed(format!(
                "the stored site archive does not match its digest {} (read {actual}, {received} bytes)",
                layer.digest
            )));
        }
        Ok(layer)
    }
}

fn sync_error(error: SyncError) -> DeployError {
    if error.is_transient() {
        DeployError::Transient(error.to_string())
    } else {
        DeployError::Failed(error.to_string())
    }
}

impl Deployer for StaticSiteDeployer {
    fn kind(&self) -> &'static str {
        "static-site"
    }

    fn deploy<'a>(&'a self, job: &'a DeployContext<'a>) -> DeployFuture<'a> {
        Box::pin(async move {
            let Target::StaticSite(target) = &job.environment.target else {
                return Err(DeployError::Failed(
                    "the environment's target is not a static site".to_owned(),
                ));
            };
            // One work directory per deployment; what an earlier attempt left is stale.
            let work = self
                .work_dir()
                .join(format!("deployment-{}", job.order.deployment_id));
            let prepared = async {
                match tokio::fs::remove_dir_all(&work).await {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
                tokio::fs::create_dir_all(&work).await
            }
            .await;
            prepared.map_err(|e| {
                DeployError::Transient(format!("preparing {}: {e}", work.display()))
            })?;
            let outcome = self.run(job, target, &work).await;
            if let Err(e) = tokio::fs::remove_dir_all(&work).await {
                tracing::warn!(error = %e, work = %work.display(), "could not remove a site work directory");
            }
            if let Err(error) = &outcome {
                job.log.line(format!("failed: {error}"));
            }
            outcome
        })
    }

    fn observe<'a>(&'a self, target: &'a ObserveContext<'a>) -> ObserveFuture<'a> {
        Box::pin(async move {
            let Target::StaticSite(site) = &target.spec.target else {
                return Ok(None);
            };
            let destination =
                Destination::open(&site.destination, &self.settings.s3, &self.secrets)
                    .map_err(|e| e.to_string())?;
            let record = destination.deployed().await.map_err(|e| e.to_string())?;
            Ok(record.map(|record| record.digest))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_read_from_configuration_take_defaults_for_what_is_left_out() {
        let settings: StaticSiteSettings = serde_json::from_str(
            r#"{"work_dir": "/var/lib/gantry/sites",
                "limits": {"max_entries": 5000},
                "s3": {"endpoint": "http://127.0.0.1:8333", "allow_http": true,
                       "access_key_id": "gantry", "secret_access_key_ref": "s3/sites"}}"#,
        )
        .expect("settings");
        assert_eq!(settings.limits.max_entries, 5000);
        assert_eq!(settings.limits.max_ratio, 200);
        assert_eq!(settings.s3.region, "us-east-1");
        assert_eq!(settings.default_cache_control, DEFAULT_CACHE_CONTROL);
        assert!(
            serde_json::from_str::<StaticSiteSettings>(r#"{"s3": {"secret_access_key": "x"}}"#)
                .is_err(),
            "a secret written inline instead of by reference is refused"
        );
    }
}
