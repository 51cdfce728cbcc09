//! Garbage collection's state: which blobs no manifest references (marked deletable,
//! with the time a pass first found them so), which are condemned (links gone, object
//! being deleted), tombstones for orphan objects, and the record of each pass.
//!
//! The database decides what is referenced; the blob store is only ever listed to
//! find objects the database has no row for, and such an object is deleted only under
//! a tombstone row that makes a concurrent upload of the same digest wait.

use domain::audit::AuditAction;
use domain::{Digest, RepoName};
use sqlx::Row;

use crate::{Backend, NewAuditEntry, StoreError, with_pool};

/// How many blobs one condemning transaction takes.
const CONDEMN_BATCH: usize = 100;
/// Passes that changed nothing and failed nothing are kept only this many.
const QUIET_PASSES_KEPT: i64 = 100;

/// A blob no manifest references, marked since `deletable_since`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletableBlob {
    pub digest: Digest,
    pub size: i64,
    pub deletable_since: i64,
}

/// A blob whose links are gone and whose object is (being) deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CondemnedBlob {
    pub digest: Digest,
    pub size: i64,
}

/// A manifest whose `subject` is not in its repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrphanReferrer {
    pub repository_id: i64,
    pub repository: RepoName,
    pub digest: Digest,
    pub subject: Digest,
    pub created_at: i64,
}

/// One collection pass, as recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcPass {
    pub replica: String,
    pub started_at: i64,
    pub finished_at: i64,
    pub manifests_deleted: i64,
    pub blobs_marked: i64,
    pub blobs_deleted: i64,
    pub bytes_reclaimed: i64,
    pub orphans_deleted: i64,
    pub uploads_purged: i64,
    pub errors: i64,
    pub last_error: Option<String>,
}

/// What every recorded pass did together.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcTotals {
    pub manifests_deleted: i64,
    pub blobs_deleted: i64,
    pub bytes_reclaimed: i64,
    pub orphans_deleted: i64,
    pub errors: i64,
}

/// Access to garbage collection's state.
pub struct Collection<'a> {
    pub(crate) backend: &'a Backend,
}

fn parse_digest(table: &'static str, text: &str) -> Result<Digest, StoreError> {
    Digest::parse(text).map_err(|e| StoreError::corrupt(table, e))
}

/// No manifest, in any repository, references the blob of the row `blobs`.
const UNREFERENCED: &str = "NOT EXISTS (SELECT 1 FROM manifest_references mr \
     WHERE mr.child_kind = 'blob' AND mr.child_digest = blobs.digest)";

impl Collection<'_> {
    /// Marks deletable every live blob no manifest references, and clears the mark of
    /// every blob one references again. Returns (marked, cleared).
    ///
    /// The marks are stamped `now` plus the time the marking statement took (a time
    /// after it committed, when `now` is the clock): a request that saw a blob unmarked
    /// (and told a client it exists) did so before that, so the blob's grace window
    /// starts after the client was told.
    pub async fn mark(&self, now: i64) -> Result<(u64, u64), StoreError> {
        with_pool!(self.backend, write, |pool| {
            let started = std::time::Instant::now();
            let marked = sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE blobs SET deletable_since = $1 \
                 WHERE deletable_since IS NULL AND deleting_since IS NULL AND {UNREFERENCED}"
            )))
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected();
            // `now` plus the time the statement took (and a millisecond more).
            let took = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
            let committed = now.saturating_add(took).saturating_add(1);
            if marked > 0 {
                sqlx::query(
                    "UPDATE blobs SET deletable_since = $2 WHERE deletable_since = $1 AND deleting_since IS NULL",
                )
                .bind(now)
                .bind(committed)
                .execute(pool)
                .await?;
            }
            let cleared = sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE blobs SET deletable_since = NULL \
                 WHERE deletable_since IS NOT NULL AND NOT {UNREFERENCED}"
            )))
            .execute(pool)
            .await?
            .rows_affected();
            Ok((marked, cleared))
        })
    }

    /// Live blobs no manifest references that are not marked yet: what a pass would
    /// mark now (a dry run's view). Returns (count, bytes).
    pub async fn unmarked_unreferenced(&self) -> Result<(i64, i64), StoreError> {
        with_pool!(self.backend, read, |pool| {
            let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT COUNT(*) AS n, CAST(COALESCE(SUM(size), 0) AS BIGINT) AS bytes FROM blobs \
                 WHERE deletable_since IS NULL AND deleting_since IS NULL AND {UNREFERENCED}"
            )))
            .fetch_one(pool)
            .await?;
            Ok((row.get("n"), row.get("bytes")))
        })
    }

    /// Blobs marked deletable at or before `cutoff` that no manifest references now, in
    /// digest order after `after`, at most `limit`.
    pub async fn deletable(
        &self,
        cutoff: i64,
        after: Option<&Digest>,
        limit: i64,
    ) -> Result<Vec<DeletableBlob>, StoreError> {
        with_pool!(self.backend, read, |pool| {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT digest, size, deletable_since FROM blobs \
                 WHERE deletable_since IS NOT NULL AND deletable_since <= $1 \
                 AND deleting_since IS NULL AND digest > $2 AND {UNREFERENCED} \
                 ORDER BY digest LIMIT $3"
            )))
            .bind(cutoff)
            .bind(after.map(Digest::to_string).unwrap_or_default())
            .bind(limit)
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|row| {
                    Ok(DeletableBlob {
                        digest: parse_digest("blobs", row.get("digest"))?,
                        size: row.get("size"),
                        deletable_since: row.get("deletable_since"),
                    })
                })
                .collect()
        })
    }

    /// Condemns those of `digests` that are still marked deletable at or before
    /// `cutoff` and referenced by no manifest: each row is taken (a request touching
    /// the blob meanwhile either waited for this and finds it condemned, or won and
    /// cleared the mark), its repository links deleted, and an audit entry written by
    /// `actor`, in transactions of at most [`CONDEMN_BATCH`]. Returns those condemned;
    /// their objects may then be deleted, and then their rows ([`Collection::forget`]).
    pub async fn condemn(
        &self,
        digests: &[Digest],
        cutoff: i64,
        now: i64,
        actor: &str,
    ) -> Result<Vec<CondemnedBlob>, StoreError> {
        let mut condemned = Vec::new();
        for batch in digests.chunks(CONDEMN_BATCH) {
            with_pool!(self.backend, write, |pool| {
                let mut tx = pool.begin().await?;
                let placeholders = crate::backend::placeholders(3, batch.len());
                let sql = format!(
                    "UPDATE blobs SET deleting_since = $1 \
                     WHERE deletable_since IS NOT NULL AND deletable_since <= $2 \
                     AND deleting_since IS NULL AND digest IN ({placeholders}) AND {UNREFERENCED} \
                     RETURNING digest, size, deletable_since"
                );
                // Only placeholders are formatted in: the digests are bound.
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                    .bind(now)
                    .bind(cutoff);
                for digest in batch {
                    query = query.bind(digest.to_string());
                }
                let rows = query.fetch_all(&mut *tx).await?;
                for row in &rows {
                    let digest: String = row.get("digest");
                    let size: i64 = row.get("size");
                    let since: i64 = row.get("deletable_since");
                    let repositories: Vec<String> = sqlx::query(
                        "SELECT r.name FROM repository_blobs rb \
                         JOIN repositories r ON r.id = rb.repository_id \
                         WHERE rb.digest = $1 ORDER BY r.name",
                    )
                    .bind(&digest)
                    .fetch_all(&mut *tx)
                    .await?
                    .iter()
                    .map(|row| row.get("name"))
                    .collect();
                    sqlx::query("DELETE FROM repository_blobs WHERE digest = $1")
                        .bind(&digest)
                        .execute(&mut *tx)
                        .await?;
                    let entry = NewAuditEntry {
                        at: now,
                        actor: actor.to_owned(),
                        action: AuditAction::Collect,
                        subject: digest.clone(),
                        payload: serde_json::json!({
                            "digest": digest,
                            "size": size,
                            "deletable_since": since,
                            "unlinked_from": repositories,
                        }),
                    };
                    crate::append_audit!(tx, &entry);
                    condemned.push(CondemnedBlob {
                        digest: parse_digest("blobs", &digest)?,
                        size,
                    });
                }
                tx.commit().await?;
                Ok::<(), StoreError>(())
            })?;
        }
        Ok(condemned)
    }

    /// Condemned blobs (a pass that stopped before deleting them leaves them) in
    /// digest order after `after`, at most `limit`.
    pub async fn condemned(
        &self,
        after: Option<&Digest>,
        limit: i64,
    ) -> Result<Vec<CondemnedBlob>, StoreError> {
        with_pool!(self.backend, read, |pool| {
            let rows = sqlx::query(
                "SELECT digest, size FROM blobs WHERE deleting_since IS NOT NULL AND digest > $1 \
                 ORDER BY digest LIMIT $2",
            )
            .bind(after.map(Digest::to_string).unwrap_or_default())
            .bind(limit)
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|row| {
                    Ok(CondemnedBlob {
                        digest: parse_digest("blobs", row.get("digest"))?,
                        size: row.get("size"),
                    })
                })
                .collect()
        })
    }

    /// Deletes the rows of condemned blobs whose objects are gone. Returns how many.
    pub async fn forget(&self, digests: &[Digest]) -> Result<u64, StoreError> {
        let mut forgotten = 0;
        for batch in digests.chunks(CONDEMN_BATCH) {
            forgotten += with_pool!(self.backend, write, |pool| {
                let placeholders = crate::backend::placeholders(1, batch.len());
                let sql = format!(
                    "DELETE FROM blobs WHERE deleting_since IS NOT NULL AND digest IN ({placeholders})"
                );
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
                for digest in batch {
                    query = query.bind(digest.to_string());
                }
                Ok::<u64, StoreError>(query.execute(pool).await?.rows_affected())
            })?;
        }
        Ok(forgotten)
    }

    /// Creates a condemned row for an object the database had no row for (an orphan a
    /// listing found), so that an upload of the same digest waits while the object is
    /// deleted, and audits the deletion as done by `actor`. Returns false, changing
    /// nothing, when a row exists: the object is not an orphan.
    pub async fn tombstone(
        &self,
        digest: &Digest,
        size: i64,
        now: i64,
        actor: &str,
    ) -> Result<bool, StoreError> {
        with_pool!(self.backend, write, |pool| {
            let mut tx = pool.begin().await?;
            let inserted = sqlx::query(
                "INSERT INTO blobs (digest, size, created_at, deleting_since) VALUES ($1, $2, $3, $3) \
                 ON CONFLICT (digest) DO NOTHING",
            )
            .bind(digest.to_string())
            .bind(size)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if inserted == 0 {
                return Ok(false);
            }
            let entry = NewAuditEntry {
                at: now,
                actor: actor.to_owned(),
                action: AuditAction::Collect,
                subject: digest.to_string(),
                payload: serde_json::json!({
                    "digest": digest.to_string(),
                    "size": size,
                    "orphan_object": true,
                }),
            };
            crate::append_audit!(tx, &entry);
            tx.commit().await?;
            Ok(true)
        })
    }

    /// Those of `digests` the database has no row for (live or condemned).
    pub async fn unknown(&self, digests: &[Digest]) -> Result<Vec<Digest>, StoreError> {
        let mut unknown = Vec::new();
        for batch in digests.chunks(CONDEMN_BATCH) {
            let known: std::collections::HashSet<String> =
                with_pool!(self.backend, read, |pool| {
                    let placeholders = crate::backend::placeholders(1, batch.len());
                    let sql = format!("SELECT digest FROM blobs WHERE digest IN ({placeholders})");
                    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
                    for digest in batch {
                        query = query.bind(digest.to_string());
                    }
                    Ok::<_, StoreError>(
                        query
                            .fetch_all(pool)
                            .await?
                            .iter()
                            .map(|row| row.get::<String, _>("digest"))
                            .collect(),
                    )
                })?;
            unknown.extend(
                batch
                    .iter()
                    .filter(|digest| !known.contains(&digest.to_string()))
                    .cloned(),
            );
        }
        Ok(unknown)
    }

    /// Manifests pushed at or before `cutoff` whose `subject` is not in their
    /// repository, that no tag names and no index lists, at most `limit`.
    /// In (repository, digest) order after `after`.
    pub async fn orphan_referrers(
        &self,
        cutoff: i64,
        after: Option<(i64, &Digest)>,
        limit: i64,
    ) -> Result<Vec<OrphanReferrer>, StoreError> {
        let (after_repository, after_digest) = after
            .map(|(repository, digest)| (repository, digest.to_string()))
            .unwrap_or((0, String::new()));
        with_pool!(self.backend, read, |pool| {
            let rows = sqlx::query(
                "SELECT r.id, r.name, m.digest, m.subject, m.created_at FROM manifests m \
                 JOIN repositories r ON r.id = m.repository_id \
                 WHERE m.subject IS NOT NULL AND m.created_at <= $1 \
                 AND NOT EXISTS (SELECT 1 FROM manifests s WHERE s.repository_id = m.repository_id AND s.digest = m.subject) \
                 AND NOT EXISTS (SELECT 1 FROM tags t WHERE t.repository_id = m.repository_id AND t.digest = m.digest) \
                 AND NOT EXISTS (SELECT 1 FROM manifest_references mr WHERE mr.repository_id = m.repository_id \
                     AND mr.child_digest = m.digest AND mr.child_kind = 'manifest') \
                 AND (r.id > $3 OR (r.id = $3 AND m.digest > $4)) \
                 ORDER BY r.id, m.digest LIMIT $2",
            )
            .bind(cutoff)
            .bind(limit)
            .bind(after_repository)
            .bind(after_digest)
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|row| {
                    let name: String = row.get("name");
                    Ok(OrphanReferrer {
                        repository_id: row.get("id"),
                        repository: RepoName::parse(&name)
                            .map_err(|e| StoreError::corrupt("repositories", e))?,
                        digest: parse_digest("manifests", row.get("digest"))?,
                        subject: parse_digest("manifests", row.get("subject"))?,
                        created_at: row.get("created_at"),
                    })
                })
                .collect()
        })
    }

    /// Records a pass, and forgets quiet passes beyond the most recent
    /// [`QUIET_PASSES_KEPT`] (they count nothing, so totals are unchanged).
    pub async fn record_pass(&self, pass: &GcPass) -> Result<(), StoreError> {
        with_pool!(self.backend, write, |pool| {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO gc_passes (replica, started_at, finished_at, manifests_deleted, blobs_marked, \
                 blobs_deleted, bytes_reclaimed, orphans_deleted, uploads_purged, errors, last_error) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .bind(&pass.replica)
            .bind(pass.started_at)
            .bind(pass.finished_at)
            .bind(pass.manifests_deleted)
            .bind(pass.blobs_marked)
            .bind(pass.blobs_deleted)
            .bind(pass.bytes_reclaimed)
            .bind(pass.orphans_deleted)
            .bind(pass.uploads_purged)
            .bind(pass.errors)
            .bind(pass.last_error.as_deref())
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "DELETE FROM gc_passes WHERE manifests_deleted = 0 AND blobs_marked = 0 \
                 AND blobs_deleted = 0 AND orphans_deleted = 0 AND uploads_purged = 0 AND errors = 0 \
                 AND id <= (SELECT MAX(id) FROM gc_passes) - $1",
            )
            .bind(QUIET_PASSES_KEPT)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// The most recent passes, newest first.
    pub async fn passes(&self, limit: i64) -> Result<Vec<GcPass>, StoreError> {
        with_pool!(self.backend, read, |pool| {
            let rows = sqlx::query(
                "SELECT replica, started_at, finished_at, manifests_deleted, blobs_marked, blobs_deleted, \
                 bytes_reclaimed, orphans_deleted, uploads_purged, errors, last_error \
                 FROM gc_passes ORDER BY id DESC LIMIT $1",
            )
            .bind(limit)
            .fetch_all(pool)
            .await?;
            Ok(rows
                .iter()
                .map(|row| GcPass {
                    replica: row.get("replica"),
                    started_at: row.get("started_at"),
                    finished_at: row.get("finished_at"),
                    manifests_deleted: row.get("manifests_deleted"),
                    blobs_marked: row.get("blobs_marked"),
                    blobs_deleted: row.get("blobs_deleted"),
                    bytes_reclaimed: row.get("bytes_reclaimed"),
                    orphans_deleted: row.get("orphans_deleted"),
                    uploads_purged: row.get("uploads_purged"),
                    errors: row.get("errors"),
                    last_error: row.get("last_error"),
                })
                .collect())
        })
    }

    /// What every recorded pass did together.
    pub async fn totals(&self) -> Result<GcTotals, StoreError> {
        with_pool!(self.backend, read, |pool| {
            let row = sqlx::query(
                "SELECT CAST(COALESCE(SUM(manifests_deleted), 0) AS BIGINT) AS manifests_deleted, \
                 CAST(COALESCE(SUM(blobs_deleted), 0) AS BIGINT) AS blobs_deleted, \
                 CAST(COALESCE(SUM(bytes_reclaimed), 0) AS BIGINT) AS bytes_reclaimed, \
                 CAST(COALESCE(SUM(orphans_deleted), 0) AS BIGINT) AS orphans_deleted, \
                 CAST(COALESCE(SUM(errors), 0) AS BIGINT) AS errors FROM gc_passes",
            )
            .fetch_one(pool)
            .await?;
            Ok(GcTotals {
                manifests_deleted: row.get("manifests_deleted"),
                blobs_deleted: row.get("blobs_deleted"),
                bytes_reclaimed: row.get("bytes_reclaimed"),
                orphans_deleted: row.get("orphans_deleted"),
                errors: row.get("errors"),
            })
        })
    }
}
