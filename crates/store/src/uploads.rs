//! Upload sessions. A session lives in the database, not in a server's memory, so any
//! replica can take the next chunk; its bytes are parts in the blob store.
//!
//! One request at a time writes to a session: it *claims* the session (a writer token
//! held until a deadline it renews while it writes), and its chunk is recorded only
//! while it still holds it. A claim left by a request that died lapses at its deadline.

use domain::Digest;
use sqlx::Row;

use crate::{Backend, StoreError, link_blob, now_millis, touch_reserved, with_pool};

/// What finishing an upload session did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishOutcome {
    /// The session is gone and the blob linked into its repository.
    Finished,
    /// The caller no longer holds the session, or it holds other bytes.
    NotHeld,
    /// The blob's reservation lapsed while its bytes were placed (a collection
    /// condemned it): the bytes may be gone, so the session stays and nothing is linked.
    Collected,
}

/// A stored upload session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    pub id: String,
    pub repository_id: i64,
    /// Bytes received so far: the offset the next chunk must start at.
    pub size: i64,
    /// The serialized hasher state after the bytes received so far, when available.
    pub hash_state: Option<Vec<u8>>,
    pub parts: Vec<UploadPart>,
    /// The store's multipart upload holding the session's whole parts, once one began.
    pub multipart: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A stored run of the session's bytes: an object of its own under `key` (unique per
/// attempt), or, when `number` is set, that part of the session's multipart upload,
/// `key` then holding what the store answered for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadPart {
    pub start: i64,
    pub size: i64,
    pub key: String,
    pub number: Option<i64>,
}

/// What one chunk changed in a session: the parts it replaced (by their start) and
/// those it added.
#[derive(Debug, Clone, Copy)]
pub struct Append<'a> {
    pub id: &'a str,
    /// The writer's token: the chunk is recorded only while it holds the session.
    pub writer: &'a str,
    /// The session's size the chunk starts at.
    pub expected_size: i64,
    /// The bytes the chunk added.
    pub added_size: i64,
    /// Starts of the parts the chunk replaced (pieces folded into a whole part).
    pub removed: &'a [i64],
    pub added: &'a [UploadPart],
    pub hash_state: Option<&'a [u8]>,
    /// Whether the writer lets the session go (else it keeps it, to finish it).
    pub release: bool,
}

/// Access to upload sessions.
pub struct Uploads<'a> {
    pub(crate) backend: &'a Backend,
}

impl Uploads<'_> {
    pub async fn create(&self, id: &str, repository_id: i64) -> Result<(), StoreError> {
        with_pool!(self.backend, write, |pool| {
            let now = now_millis();
            sqlx::query(
                "INSERT INTO uploads (id, repository_id, size, hash_state, created_at, updated_at) VALUES ($1, $2, 0, NULL, $3, $3)",
            )
            .bind(id)
            .bind(repository_id)
            .bind(now)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// The session `id` of the repository called `repository`, if it exists and
    /// belongs to that repository, in one query (no separate repository lookup). The
    /// row and its parts are read by one statement, so they always describe the same
    /// moment.
    pub async fn get_in(
        &self,
        repository: &domain::RepoName,
        id: &str,
    ) -> Result<Option<Upload>, StoreError> {
        with_pool!(self.backend, write, |pool| {
            // Read through the writer: a chunk just acknowledged must be visible to the next request.
            let rows = sqlx::query(
                "SELECT u.repository_id, u.size, u.hash_state, u.multipart_id, u.created_at, u.updated_at, \
                        p.start AS part_start, p.size AS part_size, p.part_key, p.part_number \
                 FROM uploads u JOIN repositories r ON r.id = u.repository_id \
                 LEFT JOIN upload_parts p ON p.upload_id = u.id \
                 WHERE u.id = $1 AND r.name = $2 ORDER BY p.start",
            )
            .bind(id)
            .bind(repository.as_str())
            .fetch_all(pool)
            .await?;
            let Some(first) = rows.first() else {
                return Ok(None);
            };
            let parts = rows
                .iter()
                .filter_map(|row| {
                    let start: Option<i64> = row.get("part_start");
                    let size: Option<i64> = row.get("part_size");
                    let key: Option<String> = row.get("part_key");
                    Some(UploadPart {
                        start: start?,
                        size: size?,
                        key: key?,
                        number: row.get("part_number"),
                    })
                })
                .collect();
            Ok(Some(Upload {
                id: id.to_owned(),
                repository_id: first.get("repository_id"),
                size: first.get("size"),
                hash_state: first.get("hash_state"),
                parts,
                multipart: first.get("multipart_id"),
                created_at: first.get("created_at"),
                updated_at: first.get("updated_at"),
            }))
        })
    }

    /// Claims the session for `writer` until `until` (milliseconds since the epoch),
    /// if it still holds `expected_size` bytes and no other writer holds it. Returns
    /// whether it did.
    pub async fn claim(
        &self,
        id: &str,
        expected_size: i64,
        writer: &str,
        until: i64,
    ) -> Result<bool, StoreError> {
        with_pool!(self.backend, write, |pool| {
            let now = now_millis();
            let claimed = sqlx::query(
                "UPDATE uploads SET writer = $3, writer_until = $4, updated_at = $5 \
                 WHERE id = $1 AND size = $2 AND (writer IS NULL OR writer_until < $5)",
            )
            .bind(id)
            .bind(expected_size)
            .bind(writer)
            .bind(until)
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected();
            Ok(claimed == 1)
        })
    }

    /// Moves `writer`'s deadline on the session to `until`. Returns whether it still
    /// held the session.
    pub async fn renew(&self, id: &str, writer: &str, until: i64) -> Result<bool, StoreError> {
        with_pool!(self.backend, write, |pool| {
            let renewed = sqlx::query(
                "UPDATE uploads SET writer_until = $3, updated_at = $4 WHERE id = $1 AND writer = $2",
            )
            .bind(id)
            .bind(writer)
            .bind(until)
            .bind(now_millis())
            .execute(pool)
            .await?
            .rows_affected();
            Ok(renewed == 1)
        })
    }

    /// Records the multipart upload `writer` began for the session, before any part is
    /// written to it (so that it is found and aborted whatever happens next). Returns
    /// whether it was recorded: `writer` still holds the session, and none was before.
    pub async fn begin_multipart(
        &self,
        id: &str,
        writer: &str,
        multipart: &str,
    ) -> Result<bool, StoreError> {
        with_pool!(self.backend, write, |pool| {
            let recorded = sqlx::query(
                "UPDATE uploads SET multipart_id = $3 WHERE id = $1 AND writer = $2 AND multipart_id IS NULL",
            )
            .bind(id)
            .bind(writer)
            .bind(multipart)
            .execute(pool)
            .await?
            .rows_affected();
            Ok(recorded == 1)
        })
    }

    /// Lets the session go, if `writer` holds it.
    pub async fn release(&self, id: &str, writer: &str) -> Result<(), StoreError> {
        with_pool!(self.backend, write, |pool| {
            sqlx::query(
                "UPDATE uploads SET writer = NULL, writer_until = NULL WHERE id = $1 AND writer = $2",
            )
            .bind(id)
            .bind(writer)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// Records a chunk (see [`Append`]). Fails with [`StoreError::Conflict`] unless
    /// its writer still holds the session and the session still holds the bytes the
    /// chunk starts after.
    pub async fn append(&self, append: Append<'_>) -> Result<(), StoreError> {
        with_pool!(self.backend, write, |pool| {
            let now = now_millis();
            let mut tx = pool.begin().await?;
            let updated = sqlx::query(
                "UPDATE uploads SET size = $3, hash_state = $4, updated_at = $5, \
                        writer = CASE WHEN $6 THEN NULL ELSE writer END, \
                        writer_until = CASE WHEN $6 THEN NULL ELSE writer_until END \
                 WHERE id = $1 AND size = $2 AND writer = $7",
            )
            .bind(append.id)
            .bind(append.expected_size)
            .bind(append.expected_size + append.added_size)
            .bind(append.hash_state)
            .bind(now)
            .bind(append.release)
            .bind(append.writer)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if updated != 1 {
                return Err(StoreError::Conflict("upload session"));
            }
            for start in append.removed {
                sqlx::query("DELETE FROM upload_parts WHERE upload_id = $1 AND start = $2")
                    .bind(append.id)
                    .bind(start)
                    .execute(&mut *tx)
                    .await?;
            }
            for part in append.added {
                sqlx::query(
                    "INSERT INTO upload_parts (upload_id, start, size, part_key, part_number) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(append.id)
                .bind(part.start)
                .bind(part.size)
                .bind(&part.key)
                .bind(part.number)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// Finishes the session: if `writer` still holds it and it holds exactly `size`
    /// bytes, deletes it and links blob `digest` (reserved with `generation`, see
    /// [`crate::Blobs::reserve`]) into its repository, in one transaction, so that
    /// exactly one request finishes a session. Anything but
    /// [`FinishOutcome::Finished`] changes nothing.
    pub async fn finish(
        &self,
        id: &str,
        writer: &str,
        size: i64,
        digest: &Digest,
        generation: i64,
    ) -> Result<FinishOutcome, StoreError> {
        with_pool!(self.backend, write, |pool| {
            let now = now_millis();
            let mut tx = pool.begin().await?;
            let Some(row) = sqlx::query(
                "DELETE FROM uploads WHERE id = $1 AND size = $2 AND writer = $3 RETURNING repository_id",
            )
            .bind(id)
            .bind(size)
            .bind(writer)
            .fetch_optional(&mut *tx)
            .await?
            else {
                return Ok(FinishOutcome::NotHeld);
            };
            let repository_id: i64 = row.get("repository_id");
            if !touch_reserved!(tx, digest, generation) {
                return Ok(FinishOutcome::Collected);
            }
            link_blob!(tx, repository_id, digest, now);
            tx.commit().await?;
            Ok(FinishOutcome::Finished)
        })
    }

    /// Forgets the session if it is still idle since before `cutoff` (a chunk that
    /// arrived meanwhile, or a writer still renewing its claim, keeps it alive).
    /// Returns `None` if it was kept, else the multipart upload it had begun, if any.
    pub async fn delete_if_idle(
        &self,
        id: &str,
        cutoff: i64,
    ) -> Result<Option<Option<String>>, StoreError> {
        with_pool!(self.backend, write, |pool| {
            let row = sqlx::query(
                "DELETE FROM uploads WHERE id = $1 AND updated_at < $2 RETURNING multipart_id",
            )
            .bind(id)
            .bind(cutoff)
            .fetch_optional(pool)
            .await?;
            Ok(row.map(|row| row.get("multipart_id")))
        })
    }

    /// Forgets the session. Returns `None` if it did not exist, else the multipart
    /// upload it had begun, if any.
    pub async fn delete(&self, id: &str) -> Result<Option<Option<String>>, StoreError> {
        with_pool!(self.backend, write, |pool| {
            let row = sqlx::query("DELETE FROM uploads WHERE id = $1 RETURNING multipart_id")
                .bind(id)
                .fetch_optional(pool)
                .await?;
            Ok(row.map(|row| row.get("multipart_id")))
        })
    }

    /// Sessions untouched since before `cutoff` (milliseconds since the epoch).
    pub async fn idle_since(&self, cutoff: i64, limit: i64) -> Result<Vec<String>, StoreError> {
        with_pool!(self.backend, read, |pool| {
            let rows = sqlx::query(
                "SELECT id FROM uploads WHERE updated_at < $1 ORDER BY updated_at LIMIT $2",
            )
            .bind(cutoff)
            .bind(limit)
            .fetch_all(pool)
            .await?;
            Ok(rows.iter().map(|row| row.get("id")).collect())
        })
    }

    /// Whether a session with this id exists (in any repository).
    pub async fn exists(&self, id: &str) -> Result<bool, StoreError> {
        with_pool!(self.backend, write, |pool| {
            let row = sqlx::query("SELECT 1 AS found FROM uploads WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?;
            Ok(row.is_some())
        })
    }

    /// How many sessions are open.
    pub async fn count(&self) -> Result<i64, StoreError> {
        with_pool!(self.backend, read, |pool| {
            let row = sqlx::query("SELECT COUNT(*) AS n FROM uploads")
                .fetch_one(pool)
                .await?;
            Ok(row.get("n"))
        })
    }
}
