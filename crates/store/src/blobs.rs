//! Blob metadata: each blob is known once per digest (`blobs`) and linked to every
//! repository that may serve it (`repository_blobs`). The bytes live in the blob store.

use domain::audit::AuditAction;
use domain::{Digest, RepoName};
use sqlx::Row;

use crate::{
    Backend, InRepository, NewAuditEntry, Repository, StoreError, lock_repository, now_millis,
    record_blob, with_pool,
};

/// A blob as one repository sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkedBlob {
    pub digest: Digest,
    pub size: i64,
}

/// What happened to a request to remove a blob from a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnlinkOutcome {
    Unlinked,
    NotLinked,
    /// A manifest of the repository still needs the blob.
    StillReferenced {
        manifest: Digest,
    },
}

/// Access to blob metadata.
pub struct Blobs<'a> {
    pub(crate) backend: &'a Backend,
}

impl Blobs<'_> {
    /// Records that `digest` (of `size` bytes) is stored and belongs to the repository.
    /// Idempotent: recording the same blob again changes nothing.
    pub async fn record(
        &self,
        repository_id: i64,
        digest: &Digest,
        size: i64,
    ) -> Result<(), StoreError> {
        with_pool!(self.backend, write, |pool| {
            let now = now_millis();
            let mut tx = pool.begin().await?;
            record_blob!(tx, repository_id, digest, size, now);
            tx.commit().await?;
            Ok(())
        })
    }

    /// The blob if the repository called `repository` may serve it, in one query (the
    /// registry's hot read: no separate repository lookup).
    pub async fn linked_in(
        &self,
        repository: &RepoName,
        digest: &Digest,
    ) -> Result<InRepository<LinkedBlob>, StoreError> {
        with_pool!(self.backend, read, |pool| {
            let row = sqlx::query(
                "SELECT b.size FROM repositories r \
                 LEFT JOIN repository_blobs rb ON rb.repository_id = r.id AND rb.digest = $2 \
                 LEFT JOIN blobs b ON b.digest = rb.digest \
                 WHERE r.name = $1",
            )
            .bind(repository.as_str())
            .bind(digest.to_string())
            .fetch_optional(pool)
            .await?;
            Ok(match row {
                None => InRepository::NoRepository,
                Some(row) => match row.get::<Option<i64>, _>("size") {
                    None => InRepository::Missing,
                    Some(size) => InRepository::Found(LinkedBlob {
                        digest: digest.clone(),
                        size,
                    }),
                },
            })
        })
    }

    /// The blob if the repository may serve it.
    pub async fn linked(
        &self,
        repository_id: i64,
        digest: &Digest,
    ) -> Result<Option<LinkedBlob>, StoreError> {
        with_pool!(self.backend, read, |pool| {
            let row = sqlx::query(
                "SELECT b.size FROM repository_blobs rb JOIN blobs b ON b.digest = rb.digest \
                 WHERE rb.repository_id = $1 AND rb.digest = $2",
            )
            .bind(repository_id)
            .bind(digest.to_string())
            .fetch_optional(pool)
            .await?;
            Ok(row.map(|row| LinkedBlob {
                digest: digest.clone(),
                size: row.get("size"),
            }))
        })
    }

    /// The size of a stored blob, whichever repository holds it.
    pub async fn size(&self, digest: &Digest) -> Result<Option<i64>, StoreError> {
        with_pool!(self.backend, read, |pool| {
            let row = sqlx::query("SELECT size FROM blobs WHERE digest = $1")
                .bind(digest.to_string())
                .fetch_optional(pool)
                .await?;
            Ok(row.map(|row| row.get("size")))
        })
    }

    /// Links a blob already linked to `from` into `to` without copying bytes
    /// (cross-repository mount). Returns the blob, or `None` when `from` has no such blob.
    pub async fn mount(
        &self,
        from: i64,
        to: i64,
        digest: &Digest,
    ) -> Result<Option<LinkedBlob>, StoreError> {
        let Some(blob) = self.linked(from, digest).await? else {
            return Ok(None);
        };
        self.record(to, digest, blob.size).await?;
        Ok(Some(blob))
    }

    /// Removes the blob from the repository, unless a manifest there still needs it.
    pub async fn unlink(
        &self,
        repository: &Repository,
        digest: &Digest,
        actor: &str,
    ) -> Result<UnlinkOutcome, StoreError> {
        let repository_id = repository.id;
        with_pool!(self.backend, write, |pool| {
            let mut tx = pool.begin().await?;
            lock_repository!(tx, repository_id);
            let user = sqlx::query(
                "SELECT manifest_digest FROM manifest_references WHERE repository_id = $1 AND child_digest = $2 LIMIT 1",
            )
            .bind(repository_id)
            .bind(digest.to_string())
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(row) = user {
                let manifest: String = row.get("manifest_digest");
                let manifest = Digest::parse(&manifest)
                    .map_err(|e| StoreError::corrupt("manifest_references", e))?;
                return Ok(UnlinkOutcome::StillReferenced { manifest });
            }
            let deleted = sqlx::query(
                "DELETE FROM repository_blobs WHERE repository_id = $1 AND digest = $2",
            )
            .bind(repository_id)
            .bind(digest.to_string())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if deleted == 1 {
                let entry = NewAuditEntry {
                    at: now_millis(),
                    actor: actor.to_owned(),
                    action: AuditAction::DeleteBlob,
                    subject: repository.name.to_string(),
                    payload: serde_json::json!({ "repository": repository.name.as_str(), "digest": digest.to_string() }),
                };
                crate::append_audit!(tx, &entry);
            }
            tx.commit().await?;
            Ok(if deleted == 0 {
                UnlinkOutcome::NotLinked
            } else {
                UnlinkOutcome::Unlinked
            })
        })
    }
}
