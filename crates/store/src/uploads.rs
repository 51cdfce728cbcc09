//! Upload sessions. A session lives in the database, not in a server's memory, so any
//! replica can take the next chunk; its bytes are parts in the blob store.

use domain::Digest;
use sqlx::Row;

use crate::{Backend, StoreError, now_millis, record_blob, with_pool};

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
    pub created_at: i64,
    pub updated_at: i64,
}

/// One received chunk, stored as its own object. The key is unique per attempt, so
/// two racing requests for the same offset never write the same object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadPart {
    pub start: i64,
    pub size: i64,
    pub key: String,
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
                "SELECT u.repository_id, u.size, u.hash_state, u.created_at, u.updated_at, \
                        p.start AS part_start, p.size AS part_size, p.part_key \
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
                    })
                })
                .collect();
            Ok(Some(Upload {
                id: id.to_owned(),
                repository_id: first.get("repository_id"),
                size: first.get("size"),
                hash_state: first.get("hash_state"),
                parts,
                created_at: first.get("created_at"),
                updated_at: first.get("updated_at"),
            }))
        })
    }

    /// Records a received part (stored under `part_key`) that starts at `expected_size`.
    /// Fails with [`StoreError::Conflict`] if another request appended first.
    pub async fn append(
        &self,
        id: &str,
        expected_size: i64,
        part_size: i64,
        part_key: &str,
        hash_state: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        with_pool!(self.backend, write, |pool| {
            let now = now_millis();
            let mut tx = pool.begin().await?;
            let updated = sqlx::query(
                "UPDATE uploads SET size = $3, hash_state = $4, updated_at = $5 WHERE id = $1 AND size = $2",
            )
            .bind(id)
            .bind(expected_size)
            .bind(expected_size + part_size)
            .bind(hash_state)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if updated != 1 {
                return Err(StoreError::Conflict("upload session"));
            }
            if part_size > 0 {
                sqlx::query("INSERT INTO upload_parts (upload_id, start, size, part_key) VALUES ($1, $2, $3, $4)")
                    .bind(id)
                    .bind(expected_size)
                    .bind(part_size)
                    .bind(part_key)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// Finishes the session: if it still holds exactly `size` bytes, deletes it and
    /// records blob `digest` in its repository, in one transaction, so that exactly one
    /// request finishes a session. Returns whether this call did.
    pub async fn finish(&self, id: &str, size: i64, digest: &Digest) -> Result<bool, StoreError> {
        with_pool!(self.backend, write, |pool| {
            let now = now_millis();
            let mut tx = pool.begin().await?;
            let Some(row) = sqlx::query(
                "DELETE FROM uploads WHERE id = $1 AND size = $2 RETURNING repository_id",
            )
            .bind(id)
            .bind(size)
            .fetch_optional(&mut *tx)
            .await?
            else {
                return Ok(false);
            };
            let repository_id: i64 = row.get("repository_id");
            record_blob!(tx, repository_id, digest, size, now);
            tx.commit().await?;
            Ok(true)
        })
    }

    /// Forgets the session if it is still idle since before `cutoff` (a chunk that
    /// arrived meanwhile keeps it alive). Returns whether it was removed.
    pub async fn delete_if_idle(&self, id: &str, cutoff: i64) -> Result<bool, StoreError> {
        with_pool!(self.backend, write, |pool| {
            let deleted = sqlx::query("DELETE FROM uploads WHERE id = $1 AND updated_at < $2")
                .bind(id)
                .bind(cutoff)
                .execute(pool)
                .await?
                .rows_affected();
            Ok(deleted > 0)
        })
    }

    /// Forgets the session. Returns whether it existed.
    pub async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        with_pool!(self.backend, write, |pool| {
            let deleted = sqlx::query("DELETE FROM uploads WHERE id = $1")
                .bind(id)
                .execute(pool)
                .await?
                .rows_affected();
            Ok(deleted > 0)
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
