//! Syncing an unpacked site to its destination so that readers never see a broken
//! site: changed assets are uploaded first, then the HTML that references them, then
//! files the new site no longer has are deleted. What the destination then holds is
//! recorded in `.gantry/files.json` (path → SHA-256, size and headers); the next sync
//! compares against it and uploads only what differs. Files the record does not vouch
//! for (a sync that crashed before recording) are compared by content before being
//! uploaded again, so a re-run uploads nothing that is already in place.
//!
//! `.gantry/deployed.json`, naming the deployed digest, is written separately and last
//! ([`Destination::record_deployment`]), after the CDN has been told.

use std::collections::BTreeMap;
use std::path::Path;

use futures_util::{StreamExt, TryStreamExt, stream};

use crate::destination::{Destination, SyncError};
use crate::headers::{FileHeaders, is_html};
use site_archive::CheckedFile;

/// The record of what the destination holds.
pub const FILES_RECORD: &str = "files.json";
/// The record of the deployment the destination holds.
pub const DEPLOYED_RECORD: &str = "deployed.json";

/// One file as recorded in `.gantry/files.json`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RecordedFile {
    pub sha256: String,
    pub size: u64,
    #[serde(flatten)]
    pub headers: FileHeaders,
}

/// `.gantry/files.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FilesRecord {
    pub files: BTreeMap<String, RecordedFile>,
}

/// `.gantry/deployed.json`: which artifact the destination serves, for drift detection.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeployedRecord {
    pub application: String,
    pub environment: String,
    pub digest: String,
    pub deployment_id: i64,
    /// When it was recorded (RFC 3339).
    pub deployed_at: String,
}

/// How a sync runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncOptions {
    /// `Cache-Control` of files that are neither fingerprinted nor HTML/JSON.
    pub default_cache_control: String,
    /// Uploads, deletions and comparisons in flight at once.
    pub concurrency: usize,
}

/// What a sync did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub uploaded: usize,
    pub unchanged: usize,
    pub deleted: usize,
}

impl SyncReport {
    /// Whether the destination's content changed.
    pub fn changed(&self) -> bool {
        self.uploaded > 0 || self.deleted > 0
    }
}

/// One file of the new site with its headers.
struct Planned<'a> {
    file: &'a CheckedFile,
    headers: FileHeaders,
}

impl Destination {
    /// The destination's `.gantry/files.json`; empty when it has none or it cannot be
    /// read (then every file is compared by content).
    pub async fn files_record(&self) -> Result<FilesRecord, SyncError> {
        Ok(self
            .read_record(FILES_RECORD)
            .await?
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default())
    }

    /// The destination's `.gantry/deployed.json`, if it has a readable one.
    pub async fn deployed(&self) -> Result<Option<DeployedRecord>, SyncError> {
        Ok(self
            .read_record(DEPLOYED_RECORD)
            .await?
            .and_then(|bytes| serde_json::from_slice(&bytes).ok()))
    }

    /// Writes `.gantry/deployed.json` unless it already names this deployment of this
    /// digest; returns whether it wrote.
    pub async fn record_deployment(&self, record: &DeployedRecord) -> Result<bool, SyncError> {
        if let Some(current) = self.deployed().await?
            && current.deployment_id == record.deployment_id
            && current.digest == record.digest
        {
            return Ok(false);
        }
        let content = serde_json::to_vec_pretty(record).expect("strings and numbers serialize");
        self.write_record(DEPLOYED_RECORD, content).await?;
        Ok(true)
    }

    /// Makes the destination hold exactly `files`, whose content is under `staged`.
    pub async fn sync(
        &self,
        staged: &Path,
        files: &[CheckedFile],
        options: &SyncOptions,
    ) -> Result<SyncReport, SyncError> {
        self.sync_prepared(staged, files, options, |_| async { Ok(()) })
            .await
    }

    /// [`Destination::sync`], where `staged` holds only what `prepare` puts there:
    /// once the files to upload are known (those not already in place), `prepare` is
    /// given them and must make each available under `staged` before uploads start —
    /// so a deployment that changes one file of thousands extracts one file.
    pub async fn sync_prepared<F, Fut>(
        &self,
        staged: &Path,
        files: &[CheckedFile],
        options: &SyncOptions,
        prepare: F,
    ) -> Result<SyncReport, SyncError>
    where
        F: FnOnce(Vec<CheckedFile>) -> Fut,
        Fut: std::future::Future<Output = Result<(), SyncError>>,
    {
        let concurrency = options.concurrency.max(1);
        let previous_bytes = self.read_record(FILES_RECORD).await?;
        let previous: FilesRecord = previous_bytes
            .as_deref()
            .and_then(|bytes| serde_json::from_slice(bytes).ok())
            .unwrap_or_default();
        let existing = self.list().await?;

        let planned: Vec<Planned<'_>> = files
            .iter()
            .map(|file| Planned {
                file,
                headers: FileHeaders::for_path(&file.name, &options.default_cache_control),
            })
            .collect();

        // Which files are already in place: vouched for by the record (and present
        // with the recorded size), or found to hold the same content. (Streams run over
        // indices, not references, so the futures stay `Send` for any lifetime.)
        let planned = &planned;
        let in_place: Vec<bool> = stream::iter(0..planned.len())
            .map(|index| {
                let plan = &planned[index];
                let existing_size = existing.get(&plan.file.name).copied();
                let recorded = previous.files.get(&plan.file.name);
                async move {
                    if existing_size != Some(plan.file.size) {
                        return Ok(false);
                    }
                    let vouched = recorded.is_some_and(|recorded| {
                        recorded.sha256 == plan.file.sha256
                            && recorded.size == plan.file.size
                            && recorded.headers == plan.headers
                    });
                    if vouched {
                        return Ok(true);
                    }
                    self.holds(
                        &plan.file.name,
                        plan.file.size,
                        &plan.file.sha256,
                        &plan.headers,
                    )
                    .await
                }
            })
            .buffered(concurrency)
            .try_collect()
            .await?;

        let mut report = SyncReport::default();
        let mut assets = Vec::new();
        let mut pages = Vec::new();
        for (index, in_place) in in_place.into_iter().enumerate() {
            if in_place {
                report.unchanged += 1;
            } else if is_html(&planned[index].file.name) {
                pages.push(index);
            } else {
                assets.push(index);
            }
        }
        prepare(
            assets
                .iter()
                .chain(&pages)
                .map(|&index| planned[index].file.clone())
                .collect(),
        )
        .await?;
        // Assets before the pages that reference them.
        for phase in [assets, pages] {
            report.uploaded += phase.len();
            stream::iter(phase)
                .map(|index| {
                    let plan = &planned[index];
                    let source = staged.join(&plan.file.name);
                    async move {
                        self.put_file(
                            &plan.file.name,
                            &source,
                            plan.file.size,
                            &plan.file.sha256,
                            &plan.headers,
                        )
                        .await
                    }
                })
                .buffer_unordered(concurrency)
                .try_collect::<Vec<()>>()
                .await?;
        }

        let wanted: std::collections::BTreeSet<&str> =
            files.iter().map(|f| f.name.as_str()).collect();
        let stale: Vec<String> = existing
            .into_keys()
            .filter(|name| !wanted.contains(name.as_str()))
            .collect();
        report.deleted = stale.len();
        stream::iter(stale)
            .map(|name| async move { self.delete(&name).await })
            .buffer_unordered(concurrency)
            .try_collect::<Vec<()>>()
            .await?;

        let record = FilesRecord {
            files: planned
                .iter()
                .map(|plan| {
                    (
                        plan.file.name.clone(),
                        RecordedFile {
                            sha256: plan.file.sha256.clone(),
                            size: plan.file.size,
                            headers: plan.headers.clone(),
                        },
                    )
                })
                .collect(),
        };
        let content = serde_json::to_vec_pretty(&record).expect("strings and numbers serialize");
        if previous_bytes.as_deref() != Some(content.as_slice()) {
            self.write_record(FILES_RECORD, content).await?;
        }
        Ok(report)
    }
}
