//! Online garbage collection: one pass removes referrers whose subject is gone, marks
//! the blobs no manifest references, deletes those marked for longer than the grace
//! window, deletes objects the database has no row for, and purges expired upload
//! sessions, while pushes, mounts and pulls continue.
//!
//! Safety rests on the database (see `store::Collection`): a blob is condemned only
//! in a transaction that finds it still marked past the window and referenced by no
//! manifest, and everything that makes a blob needed again clears the mark in the
//! statement that finds it. A listing of the blob store never decides that a
//! referenced blob is gone: it only proposes objects without a row, and each is
//! deleted under a tombstone row. Every step is idempotent, so a pass that is killed
//! anywhere is finished by the next one (condemned rows are resumed first).

use std::time::{Duration, Instant};

use blobs::{BlobError, StoredObject};
use domain::Digest;
use futures_util::{Stream, StreamExt};
use store::{CondemnedBlob, DeletableBlob, GcPass, OrphanReferrer, Repository, now_millis};

use crate::{Registry, RegistryError};

/// The actor GC's audit entries name.
pub const GC_ACTOR: &str = "gc";
/// How many objects a pass deletes at once.
const DELETE_CONCURRENCY: usize = 16;
/// How many rows a pass reads at a time.
const PAGE: i64 = 500;
/// How many of each kind a dry run lists (it counts them all).
const LISTED: usize = 1000;

/// How one pass runs.
#[derive(Debug, Clone)]
pub struct CollectOptions {
    /// How long a blob stays unreferenced before it is deleted, and how old an orphan
    /// referrer or an object without a row must be.
    pub grace: Duration,
    /// Report what would be deleted, changing nothing (no row, no object, no lease).
    pub dry_run: bool,
    /// The replica running it, as recorded.
    pub replica: String,
}

/// What a pass did (or, dry, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CollectReport {
    pub dry_run: bool,
    pub started_at: i64,
    pub finished_at: i64,
    /// Referrers deleted because their subject is gone.
    pub referrers: Vec<Removed>,
    /// Blobs newly marked deletable (their window starts now); dry: would be.
    pub blobs_marked: u64,
    /// Bytes of those.
    pub bytes_marked: u64,
    /// Marks cleared because a manifest references the blob again.
    pub marks_cleared: u64,
    /// Blobs deleted (or, dry, that would be), each with its size.
    pub blobs: Vec<Removed>,
    pub blobs_deleted: u64,
    pub bytes_reclaimed: u64,
    /// Objects the database had no row for, deleted (or that would be).
    pub orphans: Vec<Removed>,
    pub orphans_deleted: u64,
    pub uploads_purged: u64,
    pub errors: Vec<String>,
}

/// One thing a pass removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed {
    pub digest: Digest,
    /// Bytes, for blobs and objects.
    pub size: u64,
    /// The repository, for referrers.
    pub repository: Option<String>,
    /// Since when it was unreferenced (blobs), or when it was written.
    pub since: i64,
}

impl CollectReport {
    fn failed(&mut self, what: &str, error: impl std::fmt::Display) {
        tracing::warn!(%error, "garbage collection: {what} failed");
        self.errors.push(format!("{what}: {error}"));
    }

    /// The record of a pass that changed something.
    pub fn as_pass(&self, replica: &str) -> GcPass {
        let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        GcPass {
            replica: replica.to_owned(),
            started_at: self.started_at,
            finished_at: self.finished_at,
            manifests_deleted: count(self.referrers.len() as u64),
            blobs_marked: count(self.blobs_marked),
            blobs_deleted: count(self.blobs_deleted),
            bytes_reclaimed: count(self.bytes_reclaimed),
            orphans_deleted: count(self.orphans_deleted),
            uploads_purged: count(self.uploads_purged),
            errors: count(self.errors.len() as u64),
            last_error: self.errors.last().cloned(),
        }
    }
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

impl Registry {
    /// Runs one garbage collection pass over the whole registry (see the module
    /// documentation); a real pass is recorded. Failures of single steps are reported
    /// in the result and the pass goes on; only a failure to read the database at all
    /// ends it early.
    pub async fn collect(&self, options: &CollectOptions) -> Result<CollectReport, RegistryError> {
        let started = Instant::now();
        let now = now_millis();
        let cutoff = now.saturating_sub(millis(options.grace));
        let mut report = CollectReport {
            dry_run: options.dry_run,
            started_at: now,
            ..CollectReport::default()
        };
        if !options.dry_run {
            // What a pass killed after condemning left behind.
            self.finish_condemned(&mut report).await;
            match self.purge_expired_uploads(now).await {
                Ok(purged) => report.uploads_purged = purged as u64,
                Err(error) => report.failed("purging expired upload sessions", error.message()),
            }
        }
        self.collect_referrers(cutoff, options.dry_run, &mut report)
            .await?;
        if options.dry_run {
            let (count, bytes) = self.store.collection().unmarked_unreferenced().await?;
            report.blobs_marked = u64::try_from(count).unwrap_or(0);
            report.bytes_marked = u64::try_from(bytes).unwrap_or(0);
        } else {
            let (marked, cleared) = self.store.collection().mark(now).await?;
            report.blobs_marked = marked;
            report.marks_cleared = cleared;
        }
        self.collect_blobs(cutoff, now, options.dry_run, &mut report)
            .await?;
        let listing = self.blobs.list();
        self.collect_orphan_objects(listing, cutoff, options.dry_run, &mut report)
            .await;
        report.finished_at = report.started_at + millis(started.elapsed());
        if !options.dry_run
            && let Err(error) = self
                .store
                .collection()
                .record_pass(&report.as_pass(&options.replica))
                .await
        {
            report.failed("recording the pass", error);
        }
        Ok(report)
    }

    /// Deletes the objects, then the rows, of blobs condemned by a pass that stopped
    /// before it was done.
    async fn finish_condemned(&self, report: &mut CollectReport) {
        loop {
            let condemned = match self.store.collection().condemned(PAGE).await {
                Ok(condemned) => condemned,
                Err(error) => return report.failed("reading condemned blobs", error),
            };
            if condemned.is_empty() {
                return;
            }
            let count = condemned.len();
            let deleted = self.delete_objects(condemned, report).await;
            // Counted here: the pass that condemned them stopped before it recorded
            // itself (their audit entries were written when they were condemned).
            for blob in &deleted {
                report.blobs_deleted += 1;
                report.bytes_reclaimed += u64::try_from(blob.size).unwrap_or(0);
            }
            if deleted.len() < count {
                // Left for the next pass: the store refused some deletions.
                return;
            }
        }
    }

    /// Deletes the objects of condemned blobs, then their rows; returns those whose
    /// objects and rows are gone.
    async fn delete_objects(
        &self,
        condemned: Vec<CondemnedBlob>,
        report: &mut CollectReport,
    ) -> Vec<CondemnedBlob> {
        let results: Vec<(CondemnedBlob, Result<(), BlobError>)> =
            futures_util::stream::iter(condemned)
                .map(|blob| async move {
                    let result = self.blobs.delete(&blob.digest).await;
                    (blob, result)
                })
                .buffer_unordered(DELETE_CONCURRENCY)
                .collect()
                .await;
        let mut deleted = Vec::new();
        for (blob, result) in results {
            match result {
                Ok(()) => deleted.push(blob),
                Err(error) => report.failed(&format!("deleting blob {}", blob.digest), error),
            }
        }
        let digests: Vec<Digest> = deleted.iter().map(|blob| blob.digest.clone()).collect();
        if let Err(error) = self.store.collection().forget(&digests).await {
            report.failed("forgetting deleted blobs", error);
            return Vec::new();
        }
        deleted
    }

    async fn collect_referrers(
        &self,
        cutoff: i64,
        dry_run: bool,
        report: &mut CollectReport,
    ) -> Result<(), RegistryError> {
        let orphans = self
            .store
            .collection()
            .orphan_referrers(cutoff, PAGE)
            .await?;
        for OrphanReferrer {
            repository_id,
            repository,
            digest,
            created_at,
            ..
        } in orphans
        {
            let removed = Removed {
                digest: digest.clone(),
                size: 0,
                repository: Some(repository.to_string()),
                since: created_at,
            };
            if dry_run {
                report.referrers.push(removed);
                continue;
            }
            let repository = Repository {
                id: repository_id,
                name: repository,
                created_at: 0,
            };
            match self
                .store
                .manifests()
                .delete_orphan_referrer(&repository, &digest, cutoff, GC_ACTOR)
                .await
            {
                Ok(true) => report.referrers.push(removed),
                Ok(false) => {}
                Err(error) => report.failed(&format!("deleting referrer {digest}"), error),
            }
        }
        Ok(())
    }

    async fn collect_blobs(
        &self,
        cutoff: i64,
        now: i64,
        dry_run: bool,
        report: &mut CollectReport,
    ) -> Result<(), RegistryError> {
        let mut after: Option<Digest> = None;
        loop {
            let page = self
                .store
                .collection()
                .deletable(cutoff, after.as_ref(), PAGE)
                .await?;
            let Some(last) = page.last() else {
                return Ok(());
            };
            after = Some(last.digest.clone());
            let since: std::collections::HashMap<Digest, i64> = page
                .iter()
                .map(|blob| (blob.digest.clone(), blob.deletable_since))
                .collect();
            if dry_run {
                for DeletableBlob {
                    digest,
                    size,
                    deletable_since,
                } in page
                {
                    let size = u64::try_from(size).unwrap_or(0);
                    report.blobs_deleted += 1;
                    report.bytes_reclaimed += size;
                    if report.blobs.len() < LISTED {
                        report.blobs.push(Removed {
                            digest,
                            size,
                            repository: None,
                            since: deletable_since,
                        });
                    }
                }
                continue;
            }
            let digests: Vec<Digest> = page.into_iter().map(|blob| blob.digest).collect();
            let condemned = match self
                .store
                .collection()
                .condemn(&digests, cutoff, now, GC_ACTOR)
                .await
            {
                Ok(condemned) => condemned,
                Err(error) => {
                    report.failed("condemning blobs", error);
                    return Ok(());
                }
            };
            for blob in self.delete_objects(condemned, report).await {
                let size = u64::try_from(blob.size).unwrap_or(0);
                report.blobs_deleted += 1;
                report.bytes_reclaimed += size;
                if report.blobs.len() < LISTED {
                    report.blobs.push(Removed {
                        since: since.get(&blob.digest).copied().unwrap_or(0),
                        digest: blob.digest,
                        size,
                        repository: None,
                    });
                }
            }
        }
    }

    /// Deletes the objects of `listing` older than `cutoff` that the database has no
    /// row for, each under a tombstone row (an upload of the same digest waits for
    /// it). The listing only proposes: an incomplete one misses orphans until a later
    /// pass, and a stale one proposes objects whose rows exist, which are kept.
    pub async fn collect_orphan_objects<S>(
        &self,
        listing: S,
        cutoff: i64,
        dry_run: bool,
        report: &mut CollectReport,
    ) where
        S: Stream<Item = Result<StoredObject, BlobError>> + Unpin,
    {
        let mut listing = listing.chunks(PAGE as usize);
        while let Some(page) = listing.next().await {
            let mut old = Vec::new();
            for object in page {
                match object {
                    Ok(object) if object.written_at_millis <= cutoff => old.push(object),
                    Ok(_) => {}
                    Err(error) => return report.failed("listing the blob store", error),
                }
            }
            let digests: Vec<Digest> = old.iter().map(|object| object.digest.clone()).collect();
            let unknown = match self.store.collection().unknown(&digests).await {
                Ok(unknown) => unknown,
                Err(error) => return report.failed("looking up listed objects", error),
            };
            for object in old.into_iter().filter(|o| unknown.contains(&o.digest)) {
                let removed = Removed {
                    digest: object.digest.clone(),
                    size: object.size,
                    repository: None,
                    since: object.written_at_millis,
                };
                if dry_run {
                    report.orphans_deleted += 1;
                    if report.orphans.len() < LISTED {
                        report.orphans.push(removed);
                    }
                    continue;
                }
                let size = i64::try_from(object.size).unwrap_or(i64::MAX);
                match self
                    .store
                    .collection()
                    .tombstone(&object.digest, size, now_millis(), GC_ACTOR)
                    .await
                {
                    // A row appeared since the lookup: not an orphan.
                    Ok(false) => continue,
                    Ok(true) => {}
                    Err(error) => {
                        report.failed(&format!("tombstoning object {}", object.digest), error);
                        continue;
                    }
                }
                let tombstone = CondemnedBlob {
                    digest: object.digest.clone(),
                    size,
                };
                if !self
                    .delete_objects(vec![tombstone], report)
                    .await
                    .is_empty()
                {
                    report.orphans_deleted += 1;
                    report.bytes_reclaimed += object.size;
                    if report.orphans.len() < LISTED {
                        report.orphans.push(removed);
                    }
                }
            }
        }
    }
}
