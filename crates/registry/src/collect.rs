//! Online garbage collection: one pass applies the retention policies (see
//! [`crate::retention`]), removes referrers whose subject is gone, marks
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
//!
//! One pass runs at a time in the whole cluster: a pass holds the `gc-pass` lease in
//! the store (an id of its own, renewed at every page) and deletes objects only while
//! it still holds it, so the blobs a dead pass condemned are finished by exactly one
//! other, never while a client uploads the same digest again.

use std::time::{Duration, Instant};

use blobs::{BlobError, StoredObject};
use domain::Digest;
use futures_util::{Stream, StreamExt};
use store::{CondemnedBlob, DeletableBlob, GcPass, OrphanReferrer, Repository, now_millis};

use crate::retention::{RepositoryRetention, RetentionPlan};
use crate::{Registry, RegistryError};

/// The actor GC's audit entries name.
pub const GC_ACTOR: &str = "gc";
/// How many objects a pass deletes at once.
const DELETE_CONCURRENCY: usize = 16;
/// How many rows a pass reads at a time.
const PAGE: i64 = 500;
/// How many of each kind a report lists (it counts them all).
const LISTED: usize = 1000;
/// The lease a pass holds while it runs.
const PASS_LEASE: &str = "gc-pass";
/// The slot a pass takes when it sweeps the blob store for objects without a row.
const ORPHAN_SWEEP: &str = "gc-orphan-sweep";
/// How long the pass lease lasts unless renewed (it is renewed before every
/// deletion); a pass whose replica died is taken over after it, or at once when that
/// replica starts again.
const PASS_LEASE_FOR: Duration = Duration::from_secs(60);

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
    /// The retention policies to apply first (see [`crate::retention`]), or why they
    /// could not be read (the pass then expires nothing and reports it).
    pub retention: Result<RetentionPlan, String>,
}

/// What a pass did (or, dry, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CollectReport {
    pub dry_run: bool,
    pub started_at: i64,
    pub finished_at: i64,
    /// What retention expired (or, dry, would), repository by repository, with the
    /// manifests pins saved.
    pub retention: Vec<RepositoryRetention>,
    pub manifests_expired: u64,
    /// Referrers deleted because their subject is gone (the first 1000), and how many.
    pub referrers: Vec<Removed>,
    pub referrers_deleted: u64,
    /// Blobs newly marked deletable (their window starts now); dry: would be.
    pub blobs_marked: u64,
    /// Bytes of those.
    pub bytes_marked: u64,
    /// Marks cleared because a manifest references the blob again.
    pub marks_cleared: u64,
    /// Blobs deleted (or, dry, that would be), each with its size (the first 1000).
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
    pub(crate) fn failed(&mut self, what: &str, error: impl std::fmt::Display) {
        tracing::warn!(%error, "garbage collection: {what} failed");
        self.errors.push(format!("{what}: {error}"));
    }

    /// The record of a pass.
    pub fn as_pass(&self, replica: &str) -> GcPass {
        let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        GcPass {
            replica: replica.to_owned(),
            started_at: self.started_at,
            finished_at: self.finished_at,
            manifests_deleted: count(
                self.referrers_deleted
                    .saturating_add(self.manifests_expired),
            ),
            blobs_marked: count(self.blobs_marked),
            blobs_deleted: count(self.blobs_deleted),
            bytes_reclaimed: count(self.bytes_reclaimed),
            orphans_deleted: count(self.orphans_deleted),
            uploads_purged: count(self.uploads_purged),
            errors: count(self.errors.len() as u64),
            last_error: self.errors.last().cloned(),
        }
    }

    fn listed(list: &mut Vec<Removed>, removed: Removed) {
        if list.len() < LISTED {
            list.push(removed);
        }
    }
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// A pass's hold on the [`PASS_LEASE`].
pub(crate) struct PassLease<'a> {
    registry: &'a Registry,
    owner: String,
}

impl<'a> PassLease<'a> {
    fn new(registry: &'a Registry, replica: &str) -> PassLease<'a> {
        PassLease {
            registry,
            owner: format!("{replica}/{}", blobs::new_part_key()),
        }
    }

    /// Takes or renews the lease; whether this pass holds it.
    pub(crate) async fn hold(&self) -> Result<bool, store::StoreError> {
        let now = now_millis();
        self.registry
            .store
            .jobs()
            .lead(
                PASS_LEASE,
                &self.owner,
                now,
                now.saturating_add(millis(PASS_LEASE_FOR)),
            )
            .await
    }

    async fn release(&self) {
        if let Err(error) = self
            .registry
            .store
            .jobs()
            .release_lead(PASS_LEASE, &self.owner)
            .await
        {
            tracing::warn!(%error, "giving up the garbage collection lease failed");
        }
    }
}

impl Registry {
    /// Runs one garbage collection pass over the whole registry (see the module
    /// documentation); a real pass is recorded. Failures of single steps are reported
    /// in the result and the pass goes on. `Ok(None)`: another pass is running (a dry
    /// run changes nothing, so it never waits for one).
    pub async fn collect(
        &self,
        options: &CollectOptions,
    ) -> Result<Option<CollectReport>, RegistryError> {
        let lease = PassLease::new(self, &options.replica);
        if !options.dry_run && !lease.hold().await? {
            return Ok(None);
        }
        let report = self.run_pass(options, &lease).await;
        if !options.dry_run {
            lease.release().await;
        }
        Ok(Some(report))
    }

    /// At a replica's start: a pass its former run was making when it died is not
    /// running any more, so its lease is given up (the next pass finishes its work)
    /// instead of keeping passes out until it lapses. Replica names must be unique.
    pub async fn forget_dead_pass(&self, replica: &str) -> Result<bool, RegistryError> {
        Ok(self
            .store
            .jobs()
            .release_leads_of(PASS_LEASE, replica)
            .await?)
    }

    /// The pass running now, if any (its replica's name and its id).
    pub async fn collecting(&self) -> Result<Option<String>, RegistryError> {
        Ok(self.store.jobs().leader(PASS_LEASE, now_millis()).await?)
    }

    /// Sweeps `listing` for objects older than `cutoff` without a row, as a pass
    /// does, under the pass lease (`Ok(None)` when another pass holds it): how a
    /// stale or incomplete listing is shown to delete nothing that has a row.
    pub async fn sweep_listing<S>(
        &self,
        listing: S,
        cutoff: i64,
        replica: &str,
    ) -> Result<Option<CollectReport>, RegistryError>
    where
        S: Stream<Item = Result<StoredObject, BlobError>> + Unpin,
    {
        let lease = PassLease::new(self, replica);
        if !lease.hold().await? {
            return Ok(None);
        }
        let mut report = CollectReport::default();
        self.sweep_orphan_objects(listing, cutoff, Some(&lease), &mut report)
            .await;
        lease.release().await;
        Ok(Some(report))
    }

    async fn run_pass(&self, options: &CollectOptions, lease: &PassLease<'_>) -> CollectReport {
        let started = Instant::now();
        let now = now_millis();
        let cutoff = now.saturating_sub(millis(options.grace));
        let dry_run = options.dry_run;
        let mut report = CollectReport {
            dry_run,
            started_at: now,
            ..CollectReport::default()
        };
        if !dry_run {
            // What a pass killed after condemning left behind.
            self.finish_condemned(lease, &mut report).await;
            match self.purge_expired_uploads(now).await {
                Ok(purged) => report.uploads_purged = purged as u64,
                Err(error) => report.failed("purging expired upload sessions", error.message()),
            }
        }
        // Retention first, so the blobs of what it expires are marked by this pass.
        match &options.retention {
            Ok(plan) => {
                self.apply_retention(plan, now, (!dry_run).then_some(lease), &mut report)
                    .await;
            }
            Err(error) => report.failed("reading the retention policies", error),
        }
        self.collect_referrers(cutoff, dry_run, &mut report).await;
        if dry_run {
            match self.store.collection().unmarked_unreferenced().await {
                Ok((count, bytes)) => {
                    report.blobs_marked = u64::try_from(count).unwrap_or(0);
                    report.bytes_marked = u64::try_from(bytes).unwrap_or(0);
                }
                Err(error) => report.failed("counting unreferenced blobs", error),
            }
        } else {
            match self.store.collection().mark(now).await {
                Ok((marked, cleared)) => {
                    report.blobs_marked = marked;
                    report.marks_cleared = cleared;
                }
                Err(error) => report.failed("marking unreferenced blobs", error),
            }
        }
        self.collect_blobs(cutoff, now, (!dry_run).then_some(lease), &mut report)
            .await;
        // Listing the whole store is the costly part of a pass, and only crashes leave
        // objects without a row: a real pass sweeps at most once a grace window (and
        // never more than once a minute); a dry run always looks.
        if dry_run || self.orphan_sweep_due(lease, now, options.grace).await {
            let listing = self.blobs.list();
            self.sweep_orphan_objects(listing, cutoff, (!dry_run).then_some(lease), &mut report)
                .await;
        }
        report.finished_at = report.started_at + millis(started.elapsed());
        if !dry_run
            && let Err(error) = self
                .store
                .collection()
                .record_pass(&report.as_pass(&options.replica))
                .await
        {
            report.failed("recording the pass", error);
        }
        report
    }

    /// Whether this pass sweeps the blob store for objects without a row: the
    /// [`ORPHAN_SWEEP`] slot, taken for a grace window (at least a minute), is free.
    async fn orphan_sweep_due(&self, lease: &PassLease<'_>, now: i64, grace: Duration) -> bool {
        let every = millis(grace.max(Duration::from_secs(60)));
        match self
            .store
            .jobs()
            .lead(ORPHAN_SWEEP, &lease.owner, now, now.saturating_add(every))
            .await
        {
            Ok(due) => due,
            Err(error) => {
                tracing::warn!(%error, "could not tell whether the blob store is due a sweep");
                false
            }
        }
    }

    /// Deletes the objects, then the rows, of blobs condemned by a pass that stopped
    /// before it was done (passes never overlap, so no other is deleting them). One
    /// that fails is left for the next pass; the others go on.
    async fn finish_condemned(&self, lease: &PassLease<'_>, report: &mut CollectReport) {
        let mut after: Option<Digest> = None;
        loop {
            let condemned = match self
                .store
                .collection()
                .condemned(after.as_ref(), PAGE)
                .await
            {
                Ok(condemned) => condemned,
                Err(error) => return report.failed("reading condemned blobs", error),
            };
            let Some(last) = condemned.last() else {
                return;
            };
            after = Some(last.digest.clone());
            // Counted here: the pass that condemned them stopped before it recorded
            // itself (their audit entries were written when they were condemned).
            for blob in self.delete_objects(condemned, lease, report).await {
                report.blobs_deleted += 1;
                report.bytes_reclaimed += u64::try_from(blob.size).unwrap_or(0);
            }
        }
    }

    /// Deletes the objects of condemned blobs, then their rows; returns those whose
    /// objects and rows are gone. Only the pass holding the lease deletes: one that
    /// lost it (it stalled for longer than the lease) deletes nothing more, and the
    /// pass that took over finishes its condemned rows.
    async fn delete_objects(
        &self,
        condemned: Vec<CondemnedBlob>,
        lease: &PassLease<'_>,
        report: &mut CollectReport,
    ) -> Vec<CondemnedBlob> {
        match lease.hold().await {
            Ok(true) => {}
            Ok(false) => {
                report.failed("deleting objects", "another pass took over the lease");
                return Vec::new();
            }
            Err(error) => {
                report.failed("renewing the pass lease", error);
                return Vec::new();
            }
        }
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

    /// Deletes (dry: lists) the referrers whose subject is not in their repository.
    async fn collect_referrers(&self, cutoff: i64, dry_run: bool, report: &mut CollectReport) {
        let mut after: Option<(i64, Digest)> = None;
        loop {
            let orphans = match self
                .store
                .collection()
                .orphan_referrers(cutoff, after.as_ref().map(|(r, d)| (*r, d)), PAGE)
                .await
            {
                Ok(orphans) => orphans,
                Err(error) => return report.failed("reading orphan referrers", error),
            };
            let Some(last) = orphans.last() else {
                return;
            };
            after = Some((last.repository_id, last.digest.clone()));
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
                let deleted = dry_run || {
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
                        Ok(deleted) => deleted,
                        Err(error) => {
                            report.failed(&format!("deleting referrer {digest}"), error);
                            false
                        }
                    }
                };
                if deleted {
                    report.referrers_deleted += 1;
                    CollectReport::listed(&mut report.referrers, removed);
                }
            }
        }
    }

    /// Condemns and deletes (without a lease, dry: lists) the blobs marked at or
    /// before `cutoff` that no manifest references.
    async fn collect_blobs(
        &self,
        cutoff: i64,
        now: i64,
        lease: Option<&PassLease<'_>>,
        report: &mut CollectReport,
    ) {
        let mut after: Option<Digest> = None;
        loop {
            let page = match self
                .store
                .collection()
                .deletable(cutoff, after.as_ref(), PAGE)
                .await
            {
                Ok(page) => page,
                Err(error) => return report.failed("reading deletable blobs", error),
            };
            let Some(last) = page.last() else {
                return;
            };
            after = Some(last.digest.clone());
            let Some(lease) = lease else {
                for DeletableBlob {
                    digest,
                    size,
                    deletable_since,
                } in page
                {
                    let size = u64::try_from(size).unwrap_or(0);
                    report.blobs_deleted += 1;
                    report.bytes_reclaimed += size;
                    let removed = Removed {
                        digest,
                        size,
                        repository: None,
                        since: deletable_since,
                    };
                    CollectReport::listed(&mut report.blobs, removed);
                }
                continue;
            };
            let since: std::collections::HashMap<Digest, i64> = page
                .iter()
                .map(|blob| (blob.digest.clone(), blob.deletable_since))
                .collect();
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
                    continue;
                }
            };
            for blob in self.delete_objects(condemned, lease, report).await {
                let size = u64::try_from(blob.size).unwrap_or(0);
                report.blobs_deleted += 1;
                report.bytes_reclaimed += size;
                let removed = Removed {
                    since: since.get(&blob.digest).copied().unwrap_or(0),
                    digest: blob.digest,
                    size,
                    repository: None,
                };
                CollectReport::listed(&mut report.blobs, removed);
            }
        }
    }

    /// Deletes (without a lease, dry: lists) the objects of `listing` older than
    /// `cutoff` that the database has no row for, each under a tombstone row (an
    /// upload of the same digest waits for it). The listing only proposes: an
    /// incomplete one misses orphans until a later pass, and a stale one proposes
    /// objects whose rows exist, which are kept.
    async fn sweep_orphan_objects<S>(
        &self,
        listing: S,
        cutoff: i64,
        lease: Option<&PassLease<'_>>,
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
                let Some(lease) = lease else {
                    report.orphans_deleted += 1;
                    CollectReport::listed(&mut report.orphans, removed);
                    continue;
                };
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
                    .delete_objects(vec![tombstone], lease, report)
                    .await
                    .is_empty()
                {
                    report.orphans_deleted += 1;
                    report.bytes_reclaimed += object.size;
                    CollectReport::listed(&mut report.orphans, removed);
                }
            }
        }
    }
}
