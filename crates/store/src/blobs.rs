//! Blob metadata: each blob is known once per digest (`blobs`) and linked to every
//! repository that may serve it (`repository_blobs`). The bytes live in the blob store.
//!
//! A blob's row is *live*, live and *deletable* since some time (a collection pass
//! found no manifest referencing it; see [`crate::Collection`]), or *condemned* (its
//! links are gone and its object is being deleted). Everything that makes a blob
//! needed again clears the deletable mark in the statement that finds the blob, and
//! refuses a condemned one, so a collection never deletes bytes that a request has
//! just been told exist.

use domain::audit::AuditAction;
use domain::{Digest, RepoName};
use sqlx::Row;

use crate::{
    Backend, InRepository, NewAuditEntry, Repository, StoreError, link_blob, lock_repository,
    now_millis, record_blob, touch_reserved, with_pool,
};

/// A blob as one repository sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkedBlob {
    pub digest: Digest,
    pub size: i64,
    /// A collection pass found no manifest referencing it: a client that is told it
    /// exists must [`Blobs::touch`] it first.
    pub deletable: bool,
}

/// A blob's row made ready for an upload to place its bytes: see [`Blobs::reserve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// The row is live; the upload finishes by naming this generation.
    Reserved { generation: i64 },
    /// A collection pass is deleting the blob's object: place nothing until the row is
    /// gone.
    Condemned,
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
    /// Records that `digest` (of `size` bytes, already stored) belongs to the
    /// repository. Idempotent: recording the same blob again changes nothing but a
    /// deletable mark, which it clears. Returns false, changing nothing, when the blob
    /// is condemned.
    pub async fn record(
        &self,
        repository_id: i64,
        digest: &Digest,
        size: i64,
    ) -> Result<bool, StoreError> {
        with_pool!(self.backend, write, |pool| {
            let now = now_millis();
            let mut tx = pool.begin().await?;
            let live = record_blob!(tx, repository_id, digest, size, now);
            tx.commit().await?;
            Ok(live)
        })
    }

    /// Before an upload places the bytes of `digest`: makes sure the blob has a live
    /// row (created, or its deletable mark cleared), so that no collection deletes the
    /// object for a grace window from now. The upload then places the bytes and
    /// finishes with [`Blobs::link_reserved`] (or [`crate::Uploads::finish`]), naming
    /// the generation returned.
    pub async fn reserve(&self, digest: &Digest, size: i64) -> Result<Reservation, StoreError> {
        with_pool!(self.backend, write, |pool| {
            let row = sqlx::query(
                "INSERT INTO blobs (digest, size, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (digest) DO UPDATE SET deletable_since = NULL \
                 WHERE blobs.deleting_since IS NULL RETURNING created_at",
            )
            .bind(digest.to_string())
            .bind(size)
            .bind(now_millis())
            .fetch_optional(pool)
            .await?;
            Ok(match row {
                Some(row) => Reservation::Reserved {
                    generation: row.get("created_at"),
                },
                None => Reservation::Condemned,
            })
        })
    }

    /// [`Blobs::reserve`] for several blobs in one transaction (a server-side writer's
    /// few small blobs): their generations in order, or `None`, reserving nothing, when
    /// a collection pass is deleting one of them.
    pub async fn reserve_all(
        &self,
        blobs: &[(&Digest, i64)],
    ) -> Result<Option<Vec<i64>>, StoreError> {
        with_pool!(self.backend, write, |pool| {
            let now = now_millis();
            let mut tx = pool.begin().await?;
            let mut generations = Vec::with_capacity(blobs.len());
            for (digest, size) in blobs {
                let row = sqlx::query(
                    "INSERT INTO blobs (digest, size, created_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (digest) DO UPDATE SET deletable_since = NULL \
                     WHERE blobs.deleting_since IS NULL RETURNING created_at",
                )
                .bind(digest.to_string())
                .bind(size)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
                match row {
                    Some(row) => generations.push(row.get::<i64, _>("created_at")),
                    None => return Ok(None),
                }
            }
            tx.commit().await?;
            Ok(Some(generations))
        })
    }

    /// [`Blobs::link_reserved`] for several blobs in one transaction: false, linking
    /// nothing, when any reservation no longer holds.
    pub async fn link_all_reserved(
        &self,
        repository_id: i64,
        blobs: &[(&Digest, i64)],
    ) -> Result<bool, StoreError> {
        with_pool!(self.backend, write, |pool| {
            let now = now_millis();
            let mut tx = pool.begin().await?;
            for (digest, generation) in blobs {
                if !touch_reserved!(tx, digest, *generation) {
                    return Ok(false);
                }
                link_blob!(tx, repository_id, digest, now);
            }
            tx.commit().await?;
            Ok(true)
        })
    }

    /// Links a reserved blob, whose bytes the caller has placed, to the repository.
    /// Returns false, changing nothing, when the reservation no longer holds (the row
    /// was condemned, or collected and created anew, while the bytes were placed).
    pub async fn link_reserved(
        &self,
        repository_id: i64,
        digest: &Digest,
        generation: i64,
    ) -> Result<bool, StoreError> {
        with_pool!(self.backend, write, |pool| {
            let mut tx = pool.begin().await?;
            if !touch_reserved!(tx, digest, generation) {
                return Ok(false);
            }
            link_blob!(tx, repository_id, digest, now_millis());
            tx.commit().await?;
            Ok(true)
        })
    }

    /// Clears the blob's deletable mark, as a client is told it exists (an existence
    /// check before skipping an upload). Returns false when the blob is condemned or
    /// gone: the client must be told it is not there.
    pub async fn touch(&self, digest: &Digest) -> Result<bool, StoreError> {
        with_pool!(self.backend, write, |pool| {
            let touched = sqlx::query(
                "UPDATE blobs SET deletable_since = NULL WHERE digest = $1 AND deleting_since IS NULL",
            )
            .bind(digest.to_string())
            .execute(pool)
            .await?
            .rows_affected();
            Ok(touched == 1)
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
                "SELECT b.size, b.deletable_since FROM repositories r \
                 LEFT JOIN repository_blobs rb ON rb.repository_id = r.id AND rb.digest = $2 \
                 LEFT JOIN blobs b ON b.digest = rb.digest AND b.deleting_since IS NULL \
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
                        deletable: row.get::<Option<i64>, _>("deletable_since").is_some(),
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
                "SELECT b.size, b.deletable_since FROM repository_blobs rb \
                 JOIN blobs b ON b.digest = rb.digest AND b.deleting_since IS NULL \
                 WHERE rb.repository_id = $1 AND rb.digest = $2",
            )
            .bind(repository_id)
            .bind(digest.to_string())
            .fetch_optional(pool)
            .await?;
            Ok(row.map(|row| LinkedBlob {
                digest: digest.clone(),
                size: row.get("size"),
                deletable: row.get::<Option<i64>, _>("deletable_since").is_some(),
            }))
        })
    }

    /// The size of a stored blob, whichever repository holds it.
    pub async fn size(&self, digest: &Digest) -> Result<Option<i64>, StoreError> {
        with_pool!(self.backend, read, |pool| {
            let row =
                sqlx::query("SELECT size FROM blobs WHERE digest = $1 AND deleting_since IS NULL")
                    .bind(digest.to_string())
                    .fetch_optional(pool)
                    .await?;
            Ok(row.map(|row| row.get("size")))
        })
    }

    /// Links a blob already linked to `from` into `to` without copying bytes
    /// (cross-repository mount), clearing its deletable mark, in one transaction.
    /// Returns the blob, or `None` when `from` has no such blob (or it is condemned).
    pub async fn mount(
        &self,
        from: i64,
        to: i64,
        digest: &Digest,
    ) -> Result<Option<LinkedBlob>, StoreError> {
        with_pool!(self.backend, write, |pool| {
            let mut tx = pool.begin().await?;
            // The blob's row first: a collection condemning it waits for this
            // transaction, or this one finds it condemned.
            let Some(row) = sqlx::query(
                "UPDATE blobs SET deletable_since = NULL WHERE digest = $1 AND deleting_since IS NULL \
                 AND EXISTS (SELECT 1 FROM repository_blobs rb WHERE rb.repository_id = $2 AND rb.digest = $1) \
                 RETURNING size",
            )
            .bind(digest.to_string())
            .bind(from)
            .fetch_optional(&mut *tx)
            .await?
            else {
                return Ok(None);
            };
            link_blob!(tx, to, digest, now_millis());
            tx.commit().await?;
            Ok(Some(LinkedBlob {
                digest: digest.clone(),
                size: row.get("size"),
                deletable: false,
            }))
        })
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
