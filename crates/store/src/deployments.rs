//! Deployments: finishing one (fenced by its job's lease, in one transaction with
//! the environment's current deployment and the next queued promotion), rolling an
//! environment back, and reading them back (one, an application's history, those of a
//! digest, those finished since a time, whether a digest ever deployed somewhere).

use domain::Digest;
use domain::audit::AuditAction;
use domain::promotion::{DeploymentReason, DeploymentState};
use sqlx::Row;

use crate::promotions::{
    PROMOTION_COLUMNS, StagePlan, StoreOutcome, append_all, lock_environment, plan_is_current,
    promotion_from_row, start_deployment,
};
use crate::{Backend, NewAuditEntry, StoreError, with_pool};

/// The condition on a successful deployment `d` that a rollback may return to its
/// digest: no rollback left that digest, unless a promotion deployed it again since
/// (rolling back twice goes further back, not onto the bytes the first rollback got
/// away from). The rollback's default target and the "previous" version environments
/// show both use it.
pub(crate) const NOT_LEFT_BY_A_ROLLBACK: &str = "NOT EXISTS (SELECT 1 FROM deployments r \
     WHERE r.application = d.application AND r.environment = d.environment \
     AND r.rolled_back_from = d.digest AND r.state = 'deployed' \
     AND NOT EXISTS (SELECT 1 FROM deployments p WHERE p.application = d.application \
         AND p.environment = d.environment AND p.digest = d.digest AND p.reason = 'promotion' \
         AND p.state = 'deployed' AND p.id > r.id))";

pub(crate) const DEPLOYMENT_COLUMNS: &str = "id, application, environment, digest, config, config_revision, \
     promotion_id, reason, state, target, message, requested_by, started_at, finished_at, tag";

macro_rules! deployment_from_row {
    ($row:expr) => {{
        let row = $row;
        let state: String = row.get("state");
        let reason: String = row.get("reason");
        match (
            domain::promotion::DeploymentState::parse(&state),
            domain::promotion::DeploymentReason::parse(&reason),
        ) {
            (Some(state), Some(reason)) => Ok($crate::Deployment {
                id: row.get("id"),
                application: row.get("application"),
                environment: row.get("environment"),
                digest: row.get("digest"),
                config: row.get("config"),
                config_revision: row.get("config_revision"),
                promotion_id: row.get("promotion_id"),
                reason,
                state,
                target: row.get("target"),
                message: row.get("message"),
                requested_by: row.get("requested_by"),
                started_at: row.get("started_at"),
                finished_at: row.get("finished_at"),
                tag: row.get("tag"),
            }),
            _ => Err($crate::StoreError::corrupt(
                "deployments",
                format!("state `{state}`, reason `{reason}`"),
            )),
        }
    }};
}

pub(crate) use deployment_from_row;

pub use domain::promotion::DeploymentOrder;

/// What finishing a deployment did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// The deployment as stored afterwards.
    pub deployment: Deployment,
    /// The queued promotion whose deployment starts now.
    pub next: Option<DeploymentOrder>,
    /// False when nothing changed: it had finished already, or the caller no longer
    /// held its job's lease.
    pub recorded: bool,
}

/// The order that carries out a stored deployment (again, after a crash or a retry).
impl From<Deployment> for DeploymentOrder {
    fn from(deployment: Deployment) -> Self {
        DeploymentOrder {
            deployment_id: deployment.id,
            application: deployment.application,
            environment: deployment.environment,
            digest: deployment.digest,
            config: deployment.config,
            target: deployment.target,
            reason: deployment.reason,
            promotion_id: deployment.promotion_id,
            requested_by: deployment.requested_by,
            tag: deployment.tag,
        }
    }
}

/// A stored deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    pub id: i64,
    pub application: String,
    pub environment: String,
    pub digest: String,
    pub config: Option<String>,
    pub config_revision: Option<String>,
    pub promotion_id: Option<i64>,
    pub reason: DeploymentReason,
    pub state: DeploymentState,
    pub target: String,
    pub message: Option<String>,
    pub requested_by: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    /// The tag it carried: the build's (named by its notification), else the newest
    /// tag pointing at the digest in the application's repository when it started.
    pub tag: Option<String>,
}

/// A request to roll an environment back.
#[derive(Debug, Clone)]
pub struct RollbackRequest<'a> {
    /// Where to: a digest the environment ran successfully; `None`: the latest one it
    /// ran before the current one.
    pub to: Option<&'a Digest>,
    /// What the caller saw the environment run: refused (`Moved`) when it runs
    /// something else by now, so a repeated or concurrent rollback never rolls back a
    /// rollback.
    pub from: Option<&'a Digest>,
    pub actor: &'a str,
    pub reason: Option<&'a str>,
    pub idempotency_key: Option<&'a str>,
    /// A hash of the request, telling a retry from another request under one key.
    pub request_hash: &'a str,
}

/// The deployment a rollback started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollbackStarted {
    pub order: DeploymentOrder,
    /// False when an earlier request with the same idempotency key started it.
    pub created: bool,
}

/// Access to deployments.
pub struct Deployments<'a> {
    pub(crate) backend: &'a Backend,
}

impl Deployments<'_> {
    /// Records at `now` the outcome of a deployment, and finishes its job, if `owner` (the
    /// claim's lease, `store::ClaimedJob::lease`) still holds the job; on success the environment runs its digest. Then starts
    /// the newest approved promotion queued behind it, if any (returned). A deployment
    /// that already finished, or whose lease passed to another replica, is left alone
    /// (`recorded` is false), so a late or retried finish is harmless.
    pub async fn finish_deployment(
        &self,
        deployment_id: i64,
        owner: &str,
        succeeded: bool,
        message: Option<&str>,
        now: i64,
    ) -> Result<StoreOutcome<Finished>, StoreError> {
        with_pool!(self.backend, write, |pool| {
            let mut tx = pool.begin().await?;
            let select = format!("SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE id = $1");
            let Some(row) = sqlx::query(sqlx::AssertSqlSafe(select.as_str()))
                .bind(deployment_id)
                .fetch_optional(&mut *tx)
                .await?
            else {
                return Ok(StoreOutcome::NotFound);
            };
            let found = deployment_from_row!(&row)?;
            lock_environment!(tx, &found.application, &found.environment, now);
            let row = sqlx::query(sqlx::AssertSqlSafe(select.as_str()))
                .bind(deployment_id)
                .fetch_one(&mut *tx)
                .await?;
            let deployment = deployment_from_row!(&row)?;
            // The fence: one statement that finishes the job only for the claim holding
            // it (the row lock it takes keeps a concurrent claim out until commit).
            let fenced = sqlx::query(
                "UPDATE deploy_jobs SET finished_at = $2, lease_owner = NULL, lease_until = NULL, \
                 followup_due = $4 WHERE deployment_id = $1 AND lease_owner = $3 AND finished_at IS NULL",
            )
            .bind(deployment_id)
            .bind(now)
            .bind(owner)
            .bind(now + crate::jobs::FOLLOW_UP_GRACE_MILLIS)
            .execute(&mut *tx)
            .await?;
            if deployment.state != DeploymentState::Deploying || fenced.rows_affected() != 1 {
                // Dropping the transaction undoes the fence's update, if any.
                return Ok(StoreOutcome::Done(Finished {
                    deployment,
                    next: None,
                    recorded: false,
                }));
            }
            let state = if succeeded {
                DeploymentState::Deployed
            } else {
                DeploymentState::Failed
            };
            sqlx::query(
                "UPDATE deployments SET state = $2, message = $3, finished_at = $4 WHERE id = $1",
            )
            .bind(deployment_id)
            .bind(state.as_str())
            .bind(message)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if succeeded {
                sqlx::query("UPDATE environments SET current_deployment = $3 WHERE application = $1 AND name = $2")
                    .bind(&deployment.application)
                    .bind(&deployment.environment)
                    .bind(deployment_id)
                    .execute(&mut *tx)
                    .await?;
            }
            if let Some(promotion) = deployment.promotion_id {
                sqlx::query(
                    "UPDATE promotions SET state = $2, reason = $3, version = version + 1, updated_at = $4 \
                     WHERE id = $1 AND state = 'deploying'",
                )
                .bind(promotion)
                .bind(if succeeded { "deployed" } else { "failed" })
                .bind(if succeeded { None } else { message })
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            let mut audit = vec![NewAuditEntry {
                at: now,
                actor: deployment.requested_by.clone(),
                action: AuditAction::Deploy,
                subject: format!("{}/{}", deployment.application, deployment.environment),
                payload: serde_json::json!({
                    "deployment": deployment_id,
                    "state": state.as_str(),
                    "digest": deployment.digest,
                    "promotion": deployment.promotion_id,
                    "reason": deployment.reason.as_str(),
                    "message": message,
                }),
            }];
            // The newest approved promotion queued behind this deployment goes next.
            let queued = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {PROMOTION_COLUMNS} FROM promotions WHERE application = $1 AND environment = $2 \
                 AND state = 'approved' ORDER BY id DESC LIMIT 1"
            )))
            .bind(&deployment.application)
            .bind(&deployment.environment)
            .fetch_optional(&mut *tx)
            .await?;
            let next = match queued {
                None => None,
                Some(row) => {
                    let promotion = promotion_from_row!(&row)?;
                    sqlx::query(
                        "UPDATE promotions SET state = 'superseded', reason = $4, version = version + 1, updated_at = $5 \
                         WHERE application = $1 AND environment = $2 AND id < $3 AND state = 'approved'",
                    )
                    .bind(&deployment.application)
                    .bind(&deployment.environment)
                    .bind(promotion.id)
                    .bind(format!("superseded by promotion {}", promotion.id))
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    let order = start_deployment!(
                        tx,
                        &promotion.application,
                        &promotion.environment,
                        &promotion.digest,
                        promotion.config.as_deref(),
                        promotion.config_revision.as_deref(),
                        Some(promotion.id),
                        DeploymentReason::Promotion,
                        &deployment.target,
                        &promotion.requested_by,
                        now,
                        audit
                    );
                    sqlx::query(
                        "UPDATE promotions SET state = 'deploying', deployment_id = $2, version = version + 1, \
                         updated_at = $3 WHERE id = $1",
                    )
                    .bind(promotion.id)
                    .bind(order.deployment_id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    Some(order)
                }
            };
            append_all!(tx, audit);
            let row = sqlx::query(sqlx::AssertSqlSafe(select.as_str()))
                .bind(deployment_id)
                .fetch_one(&mut *tx)
                .await?;
            let deployment = deployment_from_row!(&row)?;
            tx.commit().await?;
            Ok(StoreOutcome::Done(Finished {
                deployment,
                next,
                recorded: true,
            }))
        })
    }

    /// Rolls the plan's environment back to `to`, or to the latest digest it ran
    /// successfully before the current one that no rollback left (unless a promotion
    /// deployed it again since), as a deployment with reason `rollback`, and holds the
    /// environment so auto-promotion does not undo it. Pending promotions of the
    /// environment are superseded. Needs no approvals. With `from`, refused (`Moved`)
    /// unless the environment still runs that digest; with an idempotency key, a retry
    /// answers with the deployment the first request started.
    pub async fn rollback(
        &self,
        plan: &StagePlan,
        request: &RollbackRequest<'_>,
    ) -> Result<StoreOutcome<RollbackStarted>, StoreError> {
        let RollbackRequest {
            to, actor, reason, ..
        } = *request;
        with_pool!(self.backend, write, |pool| {
            let now = plan.now;
            let mut tx = pool.begin().await?;
            lock_environment!(tx, &plan.application, &plan.environment, now);
            if !plan_is_current!(tx, plan) {
                return Ok(StoreOutcome::Stale);
            }
            if let Some(key) = request.idempotency_key {
                let select = format!(
                    "SELECT {DEPLOYMENT_COLUMNS}, request_hash FROM deployments \
                     WHERE requested_by = $1 AND idempotency_key = $2"
                );
                if let Some(row) = sqlx::query(sqlx::AssertSqlSafe(select))
                    .bind(actor)
                    .bind(key)
                    .fetch_optional(&mut *tx)
                    .await?
                {
                    let hash: Option<String> = row.get("request_hash");
                    let deployment = deployment_from_row!(&row)?;
                    if hash.as_deref() != Some(request.request_hash) {
                        return Ok(StoreOutcome::RollbackKeyReused {
                            deployment_id: deployment.id,
                        });
                    }
                    return Ok(StoreOutcome::Done(RollbackStarted {
                        order: DeploymentOrder::from(deployment),
                        created: false,
                    }));
                }
            }
            if let Some(row) = sqlx::query(
                "SELECT id FROM deployments WHERE application = $1 AND environment = $2 AND state = 'deploying' LIMIT 1",
            )
            .bind(&plan.application)
            .bind(&plan.environment)
            .fetch_optional(&mut *tx)
            .await?
            {
                return Ok(StoreOutcome::Busy { deployment_id: row.get("id") });
            }
            let current = sqlx::query(
                "SELECT d.digest, d.config FROM environments e JOIN deployments d ON d.id = e.current_deployment \
                 WHERE e.application = $1 AND e.name = $2",
            )
            .bind(&plan.application)
            .bind(&plan.environment)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(current) = current else {
                return Ok(StoreOutcome::NoRollbackTarget(format!(
                    "{}/{} has never been deployed",
                    plan.application, plan.environment
                )));
            };
            let current_digest: String = current.get("digest");
            if let Some(from) = request.from
                && from.to_string() != current_digest
            {
                return Ok(StoreOutcome::Moved(format!(
                    "{}/{} runs {current_digest} now, not {from}: it moved since you looked (another rollback or promotion); look again and roll back from what it runs",
                    plan.application, plan.environment
                )));
            }
            let target = match to {
                Some(digest) => sqlx::query(
                    "SELECT digest, config, config_revision FROM deployments WHERE application = $1 AND environment = $2 \
                     AND state = 'deployed' AND digest = $3 ORDER BY id DESC LIMIT 1",
                )
                .bind(&plan.application)
                .bind(&plan.environment)
                .bind(digest.to_string())
                .fetch_optional(&mut *tx)
                .await?,
                // Never back onto a digest a rollback left, unless a promotion has
                // deployed it again since: rolling back twice goes further back, not
                // onto the bytes the first rollback got away from.
                // Nor onto a quarantined digest.
                None => sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT d.digest, d.config, d.config_revision FROM deployments d \
                     WHERE d.application = $1 AND d.environment = $2 AND d.state = 'deployed' AND d.digest <> $3 \
                     AND {NOT_LEFT_BY_A_ROLLBACK} \
                     AND NOT EXISTS (SELECT 1 FROM quarantines q WHERE q.application = d.application AND q.digest = d.digest) \
                     ORDER BY d.id DESC LIMIT 1"
                )))
                .bind(&plan.application)
                .bind(&plan.environment)
                .bind(&current_digest)
                .fetch_optional(&mut *tx)
                .await?,
            };
            let Some(target) = target else {
                return Ok(StoreOutcome::NoRollbackTarget(match to {
                    Some(digest) => format!(
                        "{digest} never ran successfully in {}/{}: a rollback only returns to a digest the environment ran",
                        plan.application, plan.environment
                    ),
                    None => format!(
                        "{}/{} ran no other digest before {current_digest} that a rollback did not leave; name one with `to` (`gantry rollback --to DIGEST`) to return to it anyway",
                        plan.application, plan.environment
                    ),
                }));
            };
            let digest: String = target.get("digest");
            // Retention may have expired a digest beyond the rollback window.
            if !crate::evidence::holds_manifest!(tx, &plan.repository, &digest) {
                return Ok(StoreOutcome::NoRollbackTarget(format!(
                    "{digest} is no longer in {}: retention expired it (it was outside {}/{}'s rollback window); promote a digest the repository holds",
                    plan.repository, plan.application, plan.environment
                )));
            }
            if let Some(quarantine) =
                crate::quarantines::quarantine_of!(tx, &plan.application, &digest)
            {
                return Ok(StoreOutcome::Quarantined(quarantine));
            }
            let config: Option<String> = target.get("config");
            let config_revision: Option<String> = target.get("config_revision");
            let mut audit = Vec::new();
            let superseded = sqlx::query(
                "UPDATE promotions SET state = 'superseded', reason = $3, version = version + 1, updated_at = $4 \
                 WHERE application = $1 AND environment = $2 AND state IN ('requested', 'waiting', 'approved') RETURNING id",
            )
            .bind(&plan.application)
            .bind(&plan.environment)
            .bind(format!("superseded by a rollback by {actor}"))
            .bind(now)
            .fetch_all(&mut *tx)
            .await?;
            for row in &superseded {
                audit.push(NewAuditEntry {
                    at: now,
                    actor: actor.to_owned(),
                    action: AuditAction::Supersede,
                    subject: format!("{}/{}", plan.application, plan.environment),
                    payload: serde_json::json!({ "promotion": row.get::<i64, _>("id"), "by": "rollback" }),
                });
            }
            audit.push(NewAuditEntry {
                at: now,
                actor: actor.to_owned(),
                action: AuditAction::Rollback,
                subject: format!("{}/{}", plan.application, plan.environment),
                payload: serde_json::json!({
                    "from": current_digest,
                    "to": digest,
                    "idempotency_key": request.idempotency_key,
                    "config_revision": config_revision,
                    "reason": reason,
                }),
            });
            let order = start_deployment!(
                tx,
                &plan.application,
                &plan.environment,
                &digest,
                config.as_deref(),
                config_revision.as_deref(),
                None::<i64>,
                DeploymentReason::Rollback,
                &plan.target,
                actor,
                now,
                audit
            );
            sqlx::query(
                "UPDATE deployments SET idempotency_key = $2, request_hash = $3, rolled_back_from = $4 \
                 WHERE id = $1",
            )
            .bind(order.deployment_id)
            .bind(request.idempotency_key)
            .bind(request.idempotency_key.map(|_| request.request_hash))
            .bind(&current_digest)
            .execute(&mut *tx)
            .await?;
            let hold_reason = format!(
                "rolled back to {digest} by {actor}{}",
                reason.map(|r| format!(": {r}")).unwrap_or_default()
            );
            sqlx::query(
                "UPDATE environments SET hold_reason = $3, hold_by = $4, hold_at = $5 WHERE application = $1 AND name = $2",
            )
            .bind(&plan.application)
            .bind(&plan.environment)
            .bind(&hold_reason)
            .bind(actor)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            audit.push(NewAuditEntry {
                at: now,
                actor: actor.to_owned(),
                action: AuditAction::Hold,
                subject: format!("{}/{}", plan.application, plan.environment),
                payload: serde_json::json!({ "reason": hold_reason }),
            });
            append_all!(tx, audit);
            tx.commit().await?;
            Ok(StoreOutcome::Done(RollbackStarted {
                order,
                created: true,
            }))
        })
    }

    /// Whether `digest` was ever deployed successfully to this environment.
    pub async fn was_deployed(
        &self,
        application: &str,
        environment: &str,
        digest: &str,
    ) -> Result<bool, StoreError> {
        with_pool!(self.backend, read, |pool| {
            Ok(sqlx::query(
                "SELECT 1 AS one FROM deployments WHERE application = $1 AND environment = $2 \
                 AND digest = $3 AND state = 'deployed' LIMIT 1",
            )
            .bind(application)
            .bind(environment)
            .bind(digest)
            .fetch_optional(pool)
            .await?
            .is_some())
        })
    }

    /// One deployment.
    pub async fn deployment(&self, id: i64) -> Result<Option<Deployment>, StoreError> {
        with_pool!(self.backend, read, |pool| {
            let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE id = $1"
            )))
            .bind(id)
            .fetch_optional(pool)
            .await?;
            match row {
                Some(row) => Ok(Some(deployment_from_row!(&row)?)),
                None => Ok(None),
            }
        })
    }

    /// Deployments, newest first, of an application (and environment), with ids below
    /// `before`, at most `limit`.
    pub async fn history(
        &self,
        application: &str,
        environment: Option<&str>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<Deployment>, StoreError> {
        with_pool!(self.backend, read, |pool| {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE application = $1 \
                 AND ($2 IS NULL OR environment = $2) AND id < $3 ORDER BY id DESC LIMIT $4"
            )))
            .bind(application)
            .bind(environment)
            .bind(before.unwrap_or(i64::MAX))
            .bind(limit)
            .fetch_all(pool)
            .await?;
            rows.iter().map(|row| deployment_from_row!(row)).collect()
        })
    }

    /// Every deployment of `digest` in `application`, newest first.
    pub async fn deployments_of(
        &self,
        application: &str,
        digest: &str,
    ) -> Result<Vec<Deployment>, StoreError> {
        with_pool!(self.backend, read, |pool| {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE application = $1 AND digest = $2 \
                 ORDER BY id DESC"
            )))
            .bind(application)
            .bind(digest)
            .fetch_all(pool)
            .await?;
            rows.iter().map(|row| deployment_from_row!(row)).collect()
        })
    }

    /// Every finished deployment of these (application, environment) pairs, finished
    /// at or after `since`: the input of the DORA metrics.
    pub async fn finished_since(
        &self,
        environments: &[(String, String)],
        since: i64,
    ) -> Result<Vec<Deployment>, StoreError> {
        let mut all = Vec::new();
        for (application, environment) in environments {
            let rows = with_pool!(self.backend, read, |pool| {
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE application = $1 AND environment = $2 \
                     AND finished_at >= $3 ORDER BY id"
                )))
                .bind(application)
                .bind(environment)
                .bind(since)
                .fetch_all(pool)
                .await?;
                rows.iter()
                    .map(|row| deployment_from_row!(row))
                    .collect::<Result<Vec<_>, StoreError>>()
            })?;
            all.extend(rows);
        }
        Ok(all)
    }
}
