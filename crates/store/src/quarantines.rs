//! Quarantined digests: one row per (application, digest) while the quarantine holds.
//! Quarantining takes the row lock of every environment of the application (the lock
//! a promotion request and a rollback take first), so no promotion of the digest can
//! start once it commits; it cancels the open promotions of the digest in the same
//! transaction. Both it and lifting it are audited.

use domain::audit::AuditAction;
use domain::promotion::PromotionState;
use domain::{Digest, RepoName};
use sqlx::Row;

use crate::promotions::lock_environment;
use crate::{Backend, NewAuditEntry, StoreError, with_pool};

/// A quarantine that holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantine {
    pub application: String,
    pub digest: Digest,
    pub reason: String,
    pub by: String,
    pub at: i64,
}

/// What quarantining did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuarantineOutcome {
    /// Quarantined now; the open promotions of the digest it cancelled.
    Quarantined { cancelled: Vec<i64> },
    /// It already was (nothing changed).
    Already(Quarantine),
}

/// An environment whose current deployment runs a quarantined digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantinedRun {
    pub environment: String,
    pub quarantine: Quarantine,
}

/// Access to quarantines.
pub struct Quarantines<'a> {
    pub(crate) backend: &'a Backend,
}

const COLUMNS: &str = "q.application, q.digest, q.reason, q.created_by, q.created_at";

macro_rules! quarantine_from_row {
    ($row:expr) => {{
        let row = $row;
        let digest: String = sqlx::Row::get(row, "digest");
        $crate::Quarantine {
            application: sqlx::Row::get(row, "application"),
            digest: domain::Digest::parse(&digest)
                .map_err(|e| $crate::StoreError::corrupt("quarantines", e))?,
            reason: sqlx::Row::get(row, "reason"),
            by: sqlx::Row::get(row, "created_by"),
            at: sqlx::Row::get(row, "created_at"),
        }
    }};
}

pub(crate) use quarantine_from_row;

/// The quarantine of `$digest` (text) in application `$app`, inside transaction `$tx`.
macro_rules! quarantine_of {
    ($tx:ident, $app:expr, $digest:expr) => {{
        let row = sqlx::query(
            "SELECT q.application, q.digest, q.reason, q.created_by, q.created_at FROM quarantines q \
             WHERE q.application = $1 AND q.digest = $2",
        )
        .bind($app)
        .bind($digest)
        .fetch_optional(&mut *$tx)
        .await?;
        match row {
            Some(row) => Some($crate::quarantines::quarantine_from_row!(&row)),
            None => None,
        }
    }};
}

pub(crate) use quarantine_of;

impl Quarantines<'_> {
    /// Quarantines `digest` of `application`, whose environments are `environments`
    /// (their row locks are taken first), cancelling its open promotions, as done by
    /// `actor` at `now`.
    pub async fn add(
        &self,
        application: &str,
        environments: &[String],
        digest: &Digest,
        reason: &str,
        actor: &str,
        now: i64,
    ) -> Result<QuarantineOutcome, StoreError> {
        with_pool!(self.backend, write, |pool| {
            let mut tx = pool.begin().await?;
            for environment in environments {
                lock_environment!(tx, application, environment, now);
            }
            let inserted = sqlx::query(
                "INSERT INTO quarantines (application, digest, reason, created_by, created_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (application, digest) DO NOTHING",
            )
            .bind(application)
            .bind(digest.to_string())
            .bind(reason)
            .bind(actor)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if inserted == 0 {
                let existing = quarantine_of!(tx, application, digest.to_string())
                    .ok_or(StoreError::Conflict("quarantines"))?;
                return Ok(QuarantineOutcome::Already(existing));
            }
            let cancelled = sqlx::query(
                "UPDATE promotions SET state = $3, reason = $4, version = version + 1, updated_at = $5 \
                 WHERE application = $1 AND digest = $2 AND state IN ('requested', 'waiting', 'approved') \
                 RETURNING id, environment",
            )
            .bind(application)
            .bind(digest.to_string())
            .bind(PromotionState::Cancelled.as_str())
            .bind(format!("{digest} was quarantined by {actor}: {reason}"))
            .bind(now)
            .fetch_all(&mut *tx)
            .await?;
            let mut ids = Vec::new();
            for row in &cancelled {
                let id: i64 = row.get("id");
                let environment: String = row.get("environment");
                ids.push(id);
                let entry = NewAuditEntry {
                    at: now,
                    actor: actor.to_owned(),
                    action: AuditAction::Cancel,
                    subject: format!("{application}/{environment}"),
                    payload: serde_json::json!({ "promotion": id, "reason": "quarantined" }),
                };
                crate::append_audit!(tx, &entry);
            }
            let entry = NewAuditEntry {
                at: now,
                actor: actor.to_owned(),
                action: AuditAction::Quarantine,
                subject: application.to_owned(),
                payload: serde_json::json!({
                    "digest": digest.to_string(),
                    "reason": reason,
                    "cancelled_promotions": ids,
                }),
            };
            crate::append_audit!(tx, &entry);
            tx.commit().await?;
            Ok(QuarantineOutcome::Quarantined { cancelled: ids })
        })
    }

    /// Lifts the quarantine of `digest` of `application`, as done by `actor` at `now`
    /// for `reason`. Returns the quarantine lifted, or `None` when there was none.
    pub async fn lift(
        &self,
        application: &str,
        digest: &Digest,
        reason: &str,
        actor: &str,
        now: i64,
    ) -> Result<Option<Quarantine>, StoreError> {
        with_pool!(self.backend, write, |pool| {
            let mut tx = pool.begin().await?;
            let Some(row) = sqlx::query(
                "DELETE FROM quarantines WHERE application = $1 AND digest = $2 \
                 RETURNING application, digest, reason, created_by, created_at",
            )
            .bind(application)
            .bind(digest.to_string())
            .fetch_optional(&mut *tx)
            .await?
            else {
                return Ok(None);
            };
            let lifted = quarantine_from_row!(&row);
            let entry = NewAuditEntry {
                at: now,
                actor: actor.to_owned(),
                action: AuditAction::LiftQuarantine,
                subject: application.to_owned(),
                payload: serde_json::json!({
                    "digest": digest.to_string(),
                    "reason": reason,
                    "quarantined_by": lifted.by,
                    "quarantine_reason": lifted.reason,
                }),
            };
            crate::append_audit!(tx, &entry);
            tx.commit().await?;
            Ok(Some(lifted))
        })
    }

    /// The quarantine of `digest` of `application`, if it holds.
    pub async fn get(
        &self,
        application: &str,
        digest: &Digest,
    ) -> Result<Option<Quarantine>, StoreError> {
        with_pool!(self.backend, read, |pool| {
            let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM quarantines q WHERE q.application = $1 AND q.digest = $2"
            )))
            .bind(application)
            .bind(digest.to_string())
            .fetch_optional(pool)
            .await?;
            Ok(match row {
                Some(row) => Some(quarantine_from_row!(&row)),
                None => None,
            })
        })
    }

    /// The application's quarantines, newest first.
    pub async fn list(&self, application: &str) -> Result<Vec<Quarantine>, StoreError> {
        with_pool!(self.backend, read, |pool| {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM quarantines q WHERE q.application = $1 \
                 ORDER BY q.created_at DESC, q.digest"
            )))
            .bind(application)
            .fetch_all(pool)
            .await?;
            let mut quarantines = Vec::with_capacity(rows.len());
            for row in &rows {
                quarantines.push(quarantine_from_row!(row));
            }
            Ok(quarantines)
        })
    }

    /// The quarantine of `digest` in repository `repository`: of the application
    /// whose repository it is, or whose release tier (`release/REPOSITORY`) it is.
    pub async fn in_repository(
        &self,
        repository: &RepoName,
        digest: &Digest,
    ) -> Result<Option<Quarantine>, StoreError> {
        let shared = repository
            .as_str()
            .strip_prefix(domain::RELEASE_NAMESPACE)
            .and_then(|rest| rest.strip_prefix('/'))
            .unwrap_or(repository.as_str());
        with_pool!(self.backend, read, |pool| {
            let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM quarantines q \
                 JOIN resources r ON r.kind = 'Application' AND r.name = q.application \
                 WHERE r.repository = $1 AND q.digest = $2 LIMIT 1"
            )))
            .bind(shared)
            .bind(digest.to_string())
            .fetch_optional(pool)
            .await?;
            Ok(match row {
                Some(row) => Some(quarantine_from_row!(&row)),
                None => None,
            })
        })
    }

    /// Every environment whose current deployment runs a quarantined digest, by
    /// application and environment.
    pub async fn running(&self) -> Result<Vec<QuarantinedRun>, StoreError> {
        with_pool!(self.backend, read, |pool| {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT e.name AS environment, {COLUMNS} FROM environments e \
                 JOIN deployments d ON d.id = e.current_deployment \
                 JOIN quarantines q ON q.application = e.application AND q.digest = d.digest \
                 ORDER BY q.application, e.name"
            )))
            .fetch_all(pool)
            .await?;
            let mut runs = Vec::with_capacity(rows.len());
            for row in &rows {
                runs.push(QuarantinedRun {
                    environment: row.get("environment"),
                    quarantine: quarantine_from_row!(row),
                });
            }
            Ok(runs)
        })
    }
}
