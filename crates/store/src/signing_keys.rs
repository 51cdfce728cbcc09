//! The public keys Gantry signs with: the current one, and every one a rotation
//! retired, with when each was current (migration 0015). The private key is never
//! here; it lives in a file the server reads.

use domain::audit::AuditAction;
use sqlx::Row;

use crate::{Backend, NewAuditEntry, StoreError, with_pool};

/// A key Gantry signs or signed with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKeyRecord {
    pub key_id: String,
    pub algorithm: String,
    /// The PEM `PUBLIC KEY`.
    pub public_key: String,
    /// When it became the current key (ms since the epoch).
    pub created_at: i64,
    /// When a rotation retired it; `None` for the current key.
    pub retired_at: Option<i64>,
}

/// Access to the signing keys' public halves.
pub struct SigningKeys<'a> {
    pub(crate) backend: &'a Backend,
}

impl SigningKeys<'_> {
    /// Makes `key_id` the current key: recorded if new, and every other current key
    /// retired at `now`, in one transaction, audited as done by `actor` when anything
    /// changed. Returns whether anything did (a replica starting with the key already
    /// current changes nothing).
    pub async fn make_current(
        &self,
        key_id: &str,
        algorithm: &str,
        public_key: &str,
        actor: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        with_pool!(self.backend, write, |pool| {
            let mut tx = pool.begin().await?;
            // Serializes replicas starting at once: the first makes the change.
            sqlx::query("UPDATE signing_keys SET key_id = key_id WHERE retired_at IS NULL")
                .execute(&mut *tx)
                .await?;
            let current: Option<String> =
                sqlx::query("SELECT key_id FROM signing_keys WHERE retired_at IS NULL")
                    .fetch_optional(&mut *tx)
                    .await?
                    .map(|row| row.get("key_id"));
            if current.as_deref() == Some(key_id) {
                return Ok(false);
            }
            let retired: Vec<String> = sqlx::query(
                "UPDATE signing_keys SET retired_at = $1 WHERE retired_at IS NULL AND key_id <> $2 \
                 RETURNING key_id",
            )
            .bind(now)
            .bind(key_id)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|row| row.get("key_id"))
            .collect();
            sqlx::query(
                "INSERT INTO signing_keys (key_id, algorithm, public_key, created_at) \
                 VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (key_id) DO UPDATE SET retired_at = NULL",
            )
            .bind(key_id)
            .bind(algorithm)
            .bind(public_key)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            let entry = NewAuditEntry {
                at: now,
                actor: actor.to_owned(),
                action: AuditAction::SigningKey,
                subject: key_id.to_owned(),
                payload: serde_json::json!({
                    "key_id": key_id,
                    "algorithm": algorithm,
                    "retired": retired,
                }),
            };
            crate::append_audit!(tx, &entry);
            tx.commit().await?;
            Ok(true)
        })
    }

    /// Every key, the current one first, then the retired ones, newest first.
    pub async fn list(&self) -> Result<Vec<SigningKeyRecord>, StoreError> {
        with_pool!(self.backend, read, |pool| {
            let rows = sqlx::query(
                "SELECT key_id, algorithm, public_key, created_at, retired_at FROM signing_keys \
                 ORDER BY CASE WHEN retired_at IS NULL THEN 0 ELSE 1 END, created_at DESC, key_id",
            )
            .fetch_all(pool)
            .await?;
            Ok(rows
                .iter()
                .map(|row| SigningKeyRecord {
                    key_id: row.get("key_id"),
                    algorithm: row.get("algorithm"),
                    public_key: row.get("public_key"),
                    created_at: row.get("created_at"),
                    retired_at: row.get("retired_at"),
                })
                .collect())
        })
    }
}
