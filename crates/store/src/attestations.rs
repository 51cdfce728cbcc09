//! Signed attestations of deployments and signed checkpoints of the audit log
//! (migration 0016).
//!
//! A deployment's attestations are recorded here together, bytes and all, before they
//! are written into the registry: the deployment's follow-up that signs them may die
//! and run again on another replica, and must then write the very same bytes (an ECDSA
//! signature differs each time it is made, and the summary names the promotion
//! attestation's digest), so the first set recorded for a deployment wins and later
//! attempts read it back.

use domain::audit::AuditAction;
use sqlx::Row;

use crate::{Backend, NewAuditEntry, StoreError, with_pool};

/// An attestation to record.
#[derive(Debug, Clone)]
pub struct NewAttestation {
    pub deployment_id: i64,
    pub predicate_type: String,
    pub application: String,
    pub environment: String,
    /// The attested image's digest.
    pub digest: String,
    pub key_id: String,
    /// The Sigstore bundle (the referrer's layer) and the referrer manifest, JSON.
    pub bundle: String,
    pub manifest: String,
    pub manifest_digest: String,
    pub created_at: i64,
}

/// A recorded attestation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestationRecord {
    pub deployment_id: i64,
    pub predicate_type: String,
    pub application: String,
    pub environment: String,
    pub digest: String,
    pub key_id: String,
    pub bundle: String,
    pub manifest: String,
    pub manifest_digest: String,
    pub created_at: i64,
    /// When it was written into the registry beside the image; `None` until then.
    pub published_at: Option<i64>,
    /// When it was handed to the deployment's target (which carries it where it put
    /// the image, or has nowhere to); `None` until then.
    pub carried_at: Option<i64>,
}

/// A signed checkpoint of the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub sequence: i64,
    pub hash: String,
    pub at: i64,
    pub key_id: String,
    /// Base64 ASN.1 DER ECDSA signature over the checkpoint's DSSE encoding.
    pub signature: String,
}

/// Access to attestations.
pub struct Attestations<'a> {
    pub(crate) backend: &'a Backend,
}

const COLUMNS: &str = "deployment_id, predicate_type, application, environment, digest, key_id, \
     bundle, manifest, manifest_digest, created_at, published_at, carried_at";

macro_rules! record_from {
    ($row:expr) => {{
        let row = $row;
        AttestationRecord {
            deployment_id: row.get("deployment_id"),
            predicate_type: row.get("predicate_type"),
            application: row.get("application"),
            environment: row.get("environment"),
            digest: row.get("digest"),
            key_id: row.get("key_id"),
            bundle: row.get("bundle"),
            manifest: row.get("manifest"),
            manifest_digest: row.get("manifest_digest"),
            created_at: row.get("created_at"),
            published_at: row.get("published_at"),
            carried_at: row.get("carried_at"),
        }
    }};
}

impl Attestations<'_> {
    /// Records a deployment's attestations, all of them in one transaction, unless the
    /// deployment has some already (recorded by an earlier run of its follow-up); each
    /// new one is audited as signed by `actor`. Returns the deployment's attestations as
    /// recorded (these, or the earlier ones that won), by predicate type.
    pub async fn record(
        &self,
        attestations: &[NewAttestation],
        actor: &str,
    ) -> Result<Vec<AttestationRecord>, StoreError> {
        let Some(deployment_id) = attestations.first().map(|a| a.deployment_id) else {
            return Ok(Vec::new());
        };
        with_pool!(self.backend, write, |pool| {
            let mut tx = pool.begin().await?;
            // The deployment's job row orders two runs of its follow-up: the second
            // waits here, then finds the first one's records.
            sqlx::query(
                "UPDATE deploy_jobs SET deployment_id = deployment_id WHERE deployment_id = $1",
            )
            .bind(deployment_id)
            .execute(&mut *tx)
            .await?;
            let recorded: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM attestations WHERE deployment_id = $1")
                    .bind(deployment_id)
                    .fetch_one(&mut *tx)
                    .await?;
            if recorded == 0 {
                for attestation in attestations {
                    sqlx::query(
                        "INSERT INTO attestations (deployment_id, predicate_type, application, environment, \
                         digest, key_id, bundle, manifest, manifest_digest, created_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                    )
                    .bind(attestation.deployment_id)
                    .bind(&attestation.predicate_type)
                    .bind(&attestation.application)
                    .bind(&attestation.environment)
                    .bind(&attestation.digest)
                    .bind(&attestation.key_id)
                    .bind(&attestation.bundle)
                    .bind(&attestation.manifest)
                    .bind(&attestation.manifest_digest)
                    .bind(attestation.created_at)
                    .execute(&mut *tx)
                    .await?;
                    let entry = NewAuditEntry {
                        at: attestation.created_at,
                        actor: actor.to_owned(),
                        action: AuditAction::Attest,
                        subject: format!("{}/{}", attestation.application, attestation.environment),
                        payload: serde_json::json!({
                            "deployment": attestation.deployment_id,
                            "digest": attestation.digest,
                            "predicate_type": attestation.predicate_type,
                            "attestation": attestation.manifest_digest,
                            "key_id": attestation.key_id,
                        }),
                    };
                    crate::append_audit!(tx, &entry);
                }
            }
            let sql = format!(
                "SELECT {COLUMNS} FROM attestations WHERE deployment_id = $1 ORDER BY predicate_type"
            );
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                .bind(deployment_id)
                .fetch_all(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(rows.iter().map(|row| record_from!(row)).collect())
        })
    }

    /// The attestations of deployment `deployment_id`, by predicate type.
    pub async fn of_deployment(
        &self,
        deployment_id: i64,
    ) -> Result<Vec<AttestationRecord>, StoreError> {
        with_pool!(self.backend, read, |pool| {
            let sql = format!(
                "SELECT {COLUMNS} FROM attestations WHERE deployment_id = $1 ORDER BY predicate_type"
            );
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                .bind(deployment_id)
                .fetch_all(pool)
                .await?;
            Ok(rows.iter().map(|row| record_from!(row)).collect())
        })
    }

    /// The attestations of `application`'s artifact `digest`, newest first.
    pub async fn of_digest(
        &self,
        application: &str,
        digest: &str,
    ) -> Result<Vec<AttestationRecord>, StoreError> {
        with_pool!(self.backend, read, |pool| {
            let sql = format!(
                "SELECT {COLUMNS} FROM attestations WHERE application = $1 AND digest = $2 \
                 ORDER BY deployment_id DESC, predicate_type"
            );
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                .bind(application)
                .bind(digest)
                .fetch_all(pool)
                .await?;
            Ok(rows.iter().map(|row| record_from!(row)).collect())
        })
    }

    /// Marks deployment `deployment_id`'s attestations handed to its target.
    pub async fn carried(&self, deployment_id: i64, now: i64) -> Result<(), StoreError> {
        with_pool!(self.backend, write, |pool| {
            sqlx::query(
                "UPDATE attestations SET carried_at = $2 WHERE deployment_id = $1 AND carried_at IS NULL",
            )
            .bind(deployment_id)
            .bind(now)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// Marks deployment `deployment_id`'s attestations written into the registry.
    pub async fn published(&self, deployment_id: i64, now: i64) -> Result<(), StoreError> {
        with_pool!(self.backend, write, |pool| {
            sqlx::query(
                "UPDATE attestations SET published_at = $2 WHERE deployment_id = $1 AND published_at IS NULL",
            )
            .bind(deployment_id)
            .bind(now)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// Records a signed checkpoint (one per sequence: a second of the same sequence
    /// changes nothing). Returns whether it was new.
    pub async fn checkpoint(&self, checkpoint: &Checkpoint) -> Result<bool, StoreError> {
        with_pool!(self.backend, write, |pool| {
            Ok(sqlx::query(
                "INSERT INTO audit_checkpoints (sequence, hash, at, key_id, signature) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (sequence) DO NOTHING",
            )
            .bind(checkpoint.sequence)
            .bind(&checkpoint.hash)
            .bind(checkpoint.at)
            .bind(&checkpoint.key_id)
            .bind(&checkpoint.signature)
            .execute(pool)
            .await?
            .rows_affected()
                == 1)
        })
    }

    /// The newest checkpoint.
    pub async fn latest_checkpoint(&self) -> Result<Option<Checkpoint>, StoreError> {
        with_pool!(self.backend, read, |pool| {
            let row = sqlx::query(
                "SELECT sequence, hash, at, key_id, signature FROM audit_checkpoints \
                 ORDER BY sequence DESC LIMIT 1",
            )
            .fetch_optional(pool)
            .await?;
            Ok(row.map(|row| Checkpoint {
                sequence: row.get("sequence"),
                hash: row.get("hash"),
                at: row.get("at"),
                key_id: row.get("key_id"),
                signature: row.get("signature"),
            }))
        })
    }

    /// Every checkpoint, oldest first.
    pub async fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        with_pool!(self.backend, read, |pool| {
            let rows = sqlx::query(
                "SELECT sequence, hash, at, key_id, signature FROM audit_checkpoints ORDER BY sequence",
            )
            .fetch_all(pool)
            .await?;
            Ok(rows
                .iter()
                .map(|row| Checkpoint {
                    sequence: row.get("sequence"),
                    hash: row.get("hash"),
                    at: row.get("at"),
                    key_id: row.get("key_id"),
                    signature: row.get("signature"),
                })
                .collect())
        })
    }
}
