//! Environments: what each runs (its last successful deployment), the deployment under
//! way, its hold, what an agent last reported it running and since when that drifts.

use domain::audit::AuditAction;
use sqlx::Row;

use crate::deployments::{
    DEPLOYMENT_COLUMNS, Deployment, NOT_LEFT_BY_A_ROLLBACK, deployment_from_row,
};
use crate::promotions::lock_environment;
use crate::{Backend, NewAuditEntry, StoreError, with_pool};

/// A hold on an environment: auto-promotion stays out until it is released.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub reason: String,
    pub by: String,
    pub at: i64,
}

/// What an environment runs and whether it is held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvironmentState {
    pub application: String,
    pub environment: String,
    /// The last successful deployment: what it runs.
    pub current: Option<Deployment>,
    /// The deployment under way, if any: what it should run once that finishes.
    pub deploying: Option<Deployment>,
    pub hold: Option<Hold>,
    /// What it was last reported running.
    pub observed: Option<Observed>,
    /// Since when what it runs differs from what Gantry deployed; `None`: no drift.
    pub drift_since: Option<i64>,
    /// What a rollback without a target would return to: the newest successful
    /// deployment of another digest that no rollback left.
    pub previous: Option<Deployment>,
    /// The latest finished deployment, when it failed (it is newer than `current`).
    pub failed: Option<Deployment>,
}

impl EnvironmentState {
    /// An environment nothing has happened in yet.
    pub fn empty(application: &str, environment: &str) -> EnvironmentState {
        EnvironmentState {
            application: application.to_owned(),
            environment: environment.to_owned(),
            current: None,
            deploying: None,
            hold: None,
            observed: None,
            drift_since: None,
            previous: None,
            failed: None,
        }
    }

    /// What the environment should run: the deployment under way, else the last
    /// successful one. Deploy scripts read this, so that during a rollback they get
    /// the digest being rolled back to, not the one being rolled back from.
    pub fn desired(&self) -> Option<&Deployment> {
        self.deploying.as_ref().or(self.current.as_ref())
    }
}

/// What an agent reported an environment running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub digest: String,
    pub at: i64,
    pub by: String,
}

/// The outcome of a report of what an environment runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// The digest Gantry last deployed there successfully.
    pub expected: Option<String>,
    pub observed: String,
    pub drift_since: Option<i64>,
}

/// Access to environments.
pub struct Environments<'a> {
    pub(crate) backend: &'a Backend,
}

impl Environments<'_> {
    /// Holds an environment: auto-promotion stays out until it is released.
    pub async fn hold(
        &self,
        application: &str,
        environment: &str,
        actor: &str,
        reason: &str,
        now: i64,
    ) -> Result<Hold, StoreError> {
        let at = self
            .set_hold(application, environment, actor, Some(reason), now)
            .await?;
        Ok(Hold {
            reason: reason.to_owned(),
            by: actor.to_owned(),
            at,
        })
    }

    /// Releases an environment's hold (audited only when there was one).
    pub async fn release(
        &self,
        application: &str,
        environment: &str,
        actor: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        self.set_hold(application, environment, actor, None, now)
            .await?;
        Ok(())
    }

    /// Holds an environment (`Some(reason)`) or releases its hold (`None`) at `now`,
    /// in one audited transaction. Returns when it did.
    async fn set_hold(
        &self,
        application: &str,
        environment: &str,
        actor: &str,
        reason: Option<&str>,
        now: i64,
    ) -> Result<i64, StoreError> {
        with_pool!(self.backend, write, |pool| {
            let mut tx = pool.begin().await?;
            let before = lock_environment!(tx, application, environment, now);
            sqlx::query(
                "UPDATE environments SET hold_reason = $3, hold_by = $4, hold_at = $5 WHERE application = $1 AND name = $2",
            )
            .bind(application)
            .bind(environment)
            .bind(reason)
            .bind(reason.map(|_| actor))
            .bind(reason.map(|_| now))
            .execute(&mut *tx)
            .await?;
            if before.is_some() || reason.is_some() {
                let entry = NewAuditEntry {
                    at: now,
                    actor: actor.to_owned(),
                    action: if reason.is_some() {
                        AuditAction::Hold
                    } else {
                        AuditAction::Release
                    },
                    subject: format!("{application}/{environment}"),
                    payload: serde_json::json!({ "reason": reason }),
                };
                crate::append_audit!(tx, &entry);
            }
            tx.commit().await?;
            Ok(now)
        })
    }

    /// Records that `environment` of `application` was observed running `digest`
    /// (reported by `by`), and whether that is what Gantry deployed there: drift starts
    /// when it differs and ends when it agrees again, each change audited.
    pub async fn observe(
        &self,
        application: &str,
        environment: &str,
        digest: &str,
        by: &str,
        now: i64,
    ) -> Result<Observation, StoreError> {
        with_pool!(self.backend, write, |pool| {
            let mut tx = pool.begin().await?;
            lock_environment!(tx, application, environment, now);
            let row = sqlx::query(
                "SELECT d.digest AS expected, e.drift_since FROM environments e \
                 LEFT JOIN deployments d ON d.id = e.current_deployment \
                 WHERE e.application = $1 AND e.name = $2",
            )
            .bind(application)
            .bind(environment)
            .fetch_one(&mut *tx)
            .await?;
            let expected: Option<String> = row.get("expected");
            let was: Option<i64> = row.get("drift_since");
            let drifting = expected.as_deref() != Some(digest);
            let drift_since = match (drifting, was) {
                (false, _) => None,
                (true, Some(since)) => Some(since),
                (true, None) => Some(now),
            };
            sqlx::query(
                "UPDATE environments SET observed_digest = $3, observed_at = $4, observed_by = $5, \
                 drift_since = $6 WHERE application = $1 AND name = $2",
            )
            .bind(application)
            .bind(environment)
            .bind(digest)
            .bind(now)
            .bind(by)
            .bind(drift_since)
            .execute(&mut *tx)
            .await?;
            if drifting != was.is_some() {
                let entry = NewAuditEntry {
                    at: now,
                    actor: by.to_owned(),
                    action: AuditAction::Drift,
                    subject: format!("{application}/{environment}"),
                    payload: serde_json::json!({
                        "drift": drifting,
                        "expected": expected,
                        "observed": digest,
                    }),
                };
                crate::append_audit!(tx, &entry);
            }
            tx.commit().await?;
            Ok(Observation {
                expected,
                observed: digest.to_owned(),
                drift_since,
            })
        })
    }

    /// Every environment something was observed in, and whether it drifts.
    pub async fn drift(&self) -> Result<Vec<(String, String, bool)>, StoreError> {
        with_pool!(self.backend, read, |pool| {
            let rows = sqlx::query(
                "SELECT application, name, drift_since FROM environments \
                 WHERE observed_digest IS NOT NULL ORDER BY application, name",
            )
            .fetch_all(pool)
            .await?;
            Ok(rows
                .iter()
                .map(|row| {
                    (
                        row.get("application"),
                        row.get("name"),
                        row.get::<Option<i64>, _>("drift_since").is_some(),
                    )
                })
                .collect())
        })
    }

    /// Where each environment of `application` stands: what it runs, what it is
    /// deploying, its hold, what it was observed running and since when that drifts.
    pub async fn of(&self, application: &str) -> Result<Vec<EnvironmentState>, StoreError> {
        self.of_many(&[application.to_owned()]).await
    }

    /// [`Environments::of`] for every application in `applications` at once, in four
    /// queries whatever their number (a page of the board is never one query per
    /// cell): the environments; the deployments they run or are running; the
    /// previous successful deployment of each; the latest finished one of each when
    /// it failed.
    pub async fn of_many(
        &self,
        applications: &[String],
    ) -> Result<Vec<EnvironmentState>, StoreError> {
        if applications.is_empty() {
            return Ok(Vec::new());
        }
        let list = crate::backend::placeholders(1, applications.len());
        with_pool!(self.backend, read, |pool| {
            let mut query = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT application, name, current_deployment, hold_reason, hold_by, hold_at, \
                 observed_digest, observed_at, observed_by, drift_since FROM environments \
                 WHERE application IN ({list}) ORDER BY application, name"
            )));
            for application in applications {
                query = query.bind(application);
            }
            let rows = query.fetch_all(pool).await?;
            let mut query = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE \
                 id IN (SELECT current_deployment FROM environments WHERE application IN ({list})) \
                 OR (state = 'deploying' AND application IN ({list})) ORDER BY id"
            )));
            for application in applications {
                query = query.bind(application);
            }
            let mut current = std::collections::HashMap::new();
            let mut deploying = std::collections::HashMap::new();
            for row in query.fetch_all(pool).await? {
                let deployment = deployment_from_row!(&row)?;
                if deployment.state == domain::promotion::DeploymentState::Deploying {
                    // Ordered by id: the newest under way wins, as in `of`.
                    deploying.insert(
                        (
                            deployment.application.clone(),
                            deployment.environment.clone(),
                        ),
                        deployment.clone(),
                    );
                }
                current.insert(deployment.id, deployment);
            }
            // Per environment, what a rollback returns to: the newest successful
            // deployment of another digest that no rollback left.
            let mut query = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE id IN (\
                 SELECT MAX(d.id) FROM deployments d \
                 JOIN environments e ON e.application = d.application AND e.name = d.environment \
                 JOIN deployments c ON c.id = e.current_deployment \
                 WHERE e.application IN ({list}) AND d.state = 'deployed' AND d.digest <> c.digest \
                 AND {NOT_LEFT_BY_A_ROLLBACK} GROUP BY d.application, d.environment)"
            )));
            for application in applications {
                query = query.bind(application);
            }
            let mut previous = std::collections::HashMap::new();
            for row in query.fetch_all(pool).await? {
                let deployment: Deployment = deployment_from_row!(&row)?;
                previous.insert(
                    (
                        deployment.application.clone(),
                        deployment.environment.clone(),
                    ),
                    deployment,
                );
            }
            // Per environment, the newest finished deployment, kept when it failed.
            let mut query = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE state = 'failed' AND id IN (\
                 SELECT MAX(id) FROM deployments WHERE application IN ({list}) \
                 AND state <> 'deploying' GROUP BY application, environment)"
            )));
            for application in applications {
                query = query.bind(application);
            }
            let mut failed = std::collections::HashMap::new();
            for row in query.fetch_all(pool).await? {
                let deployment: Deployment = deployment_from_row!(&row)?;
                failed.insert(
                    (
                        deployment.application.clone(),
                        deployment.environment.clone(),
                    ),
                    deployment,
                );
            }
            let mut states = Vec::with_capacity(rows.len());
            for row in &rows {
                let application: String = row.get("application");
                let name: String = row.get("name");
                let current_id: Option<i64> = row.get("current_deployment");
                let reason: Option<String> = row.get("hold_reason");
                let key = (application.clone(), name.clone());
                states.push(EnvironmentState {
                    current: current_id.and_then(|id| current.get(&id).cloned()),
                    deploying: deploying.remove(&key),
                    previous: previous.remove(&key),
                    failed: failed.remove(&key),
                    application,
                    environment: name,
                    hold: reason.map(|reason| Hold {
                        reason,
                        by: row.get::<Option<String>, _>("hold_by").unwrap_or_default(),
                        at: row.get::<Option<i64>, _>("hold_at").unwrap_or_default(),
                    }),
                    observed: row
                        .get::<Option<String>, _>("observed_digest")
                        .map(|digest| Observed {
                            digest,
                            at: row.get::<Option<i64>, _>("observed_at").unwrap_or_default(),
                            by: row
                                .get::<Option<String>, _>("observed_by")
                                .unwrap_or_default(),
                        }),
                    drift_since: row.get("drift_since"),
                });
            }
            Ok(states)
        })
    }
}
