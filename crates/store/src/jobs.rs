//! Durable deploy jobs. Every deployment row is created with a job (in the same
//! transaction, see `start_deployment!`); a replica claims a due job by taking its
//! lease (`lease_owner`, `lease_until`), renews the lease with heartbeats while it
//! works, and either finishes the job together with the deployment
//! ([`crate::Promotions::finish_deployment`], which checks the lease) or releases it
//! for a retry after `run_after`. A job whose lease ran out — its replica crashed or
//! was killed — is due again, so another replica, or the same one after a restart,
//! picks it up. Claiming is one statement: on PostgreSQL the candidate row is locked
//! with `FOR UPDATE SKIP LOCKED`, so concurrent replicas never wait on or take the
//! same job; SQLite has a single writer, which serializes claims by itself.

use sqlx::Row;

use domain::promotion::DeploymentState;

use crate::deployments::{DEPLOYMENT_COLUMNS, deployment_from_row};
use crate::{Backend, Deployment, DeploymentOrder, StoreError, with_pool};

/// Who the audit log names for a webhook receiver's report (it authenticates with the
/// deployment's one-time callback token, not as a user).
pub(crate) const CALLBACK_ACTOR: &str = "webhook-receiver";

/// How long after a deployment finished its follow-up (auto-rollback, auto-promotion)
/// is left to the replica that finished it before any replica may take it over.
pub const FOLLOW_UP_GRACE_MILLIS: i64 = 30_000;

/// A finished deployment whose follow-up this replica now holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedFollowUp {
    pub order: DeploymentOrder,
    pub succeeded: bool,
    pub message: Option<String>,
    /// The lease held, for [`Jobs::follow_up_done`].
    pub lease: String,
}

/// What [`Jobs::take_lease`] claims: SQL fragments over `$1` (the owner) and `$3` (now).
struct LeaseQuery {
    /// What `lease_owner` is set to.
    lease_name: &'static str,
    /// Further assignments (`, attempts = attempts + 1`).
    extra: &'static str,
    /// Which jobs may be taken.
    due: &'static str,
    /// Which goes first.
    order: &'static str,
}

/// At most this many lines are kept per deployment; later ones are dropped.
pub const MAX_LOG_LINES: i64 = 5_000;
/// Lines are cut to this many bytes.
pub const MAX_LOG_LINE_BYTES: usize = 4_096;

/// A job this replica now holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedJob {
    pub order: DeploymentOrder,
    /// Which attempt this is, from 1.
    pub attempt: u32,
    /// The lease this claim holds: `OWNER#ATTEMPT`, so that each claim — even two of
    /// one process — fences the others. Heartbeats, releases and the finish name it.
    pub lease: String,
}

/// A deploy job as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobState {
    pub deployment_id: i64,
    pub attempts: u32,
    pub run_after: i64,
    pub lease_owner: Option<String>,
    pub lease_until: Option<i64>,
    pub last_error: Option<String>,
    pub finished_at: Option<i64>,
    /// From when what the outcome leads to (an auto-rollback, an auto-promotion) may
    /// be started by any replica; `None` once it was.
    pub followup_due: Option<i64>,
}

/// One line of a deployment's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub seq: i64,
    pub at: i64,
    pub line: String,
}

/// Counts of unfinished jobs, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobCounts {
    /// Held by a replica right now.
    pub running: i64,
    /// Waiting for a replica (new, retrying, or whose lease ran out).
    pub waiting: i64,
}

/// Access to deploy jobs and deployment logs.
pub struct Jobs<'a> {
    pub(crate) backend: &'a Backend,
}

impl Jobs<'_> {
    /// Takes the lease of a due job for `owner` until `now + lease_millis`: the job of
    /// deployment `only` if given (and due), else the oldest due one. A job is due when
    /// it is unfinished, its `run_after` has passed and nobody holds a live lease. The
    /// lease is named `OWNER#ATTEMPT` ([`ClaimedJob::lease`]).
    pub async fn claim(
        &self,
        only: Option<i64>,
        owner: &str,
        now: i64,
        lease_millis: i64,
    ) -> Result<Option<ClaimedJob>, StoreError> {
        let claimed = self
            .take_lease(
                &LeaseQuery {
                    lease_name: "$1 || '#' || CAST(attempts + 1 AS TEXT)",
                    extra: ", attempts = attempts + 1",
                    due: "finished_at IS NULL AND run_after <= $3",
                    order: "run_after",
                },
                only,
                owner,
                now,
                lease_millis,
            )
            .await?;
        Ok(claimed.map(|(deployment, attempts, lease)| ClaimedJob {
            order: DeploymentOrder::from(deployment),
            attempt: u32::try_from(attempts).unwrap_or(u32::MAX),
            lease,
        }))
    }

    /// Sets the lease of the first job by `query.order` matching `query.due` that no
    /// live lease holds — deployment `only`'s if given — in one statement: on
    /// PostgreSQL the candidate row is locked `FOR UPDATE SKIP LOCKED`, SQLite's single
    /// writer serializes it. The job's deployment, attempts and lease.
    async fn take_lease(
        &self,
        query: &LeaseQuery,
        only: Option<i64>,
        owner: &str,
        now: i64,
        lease_millis: i64,
    ) -> Result<Option<(Deployment, i64, String)>, StoreError> {
        let lock = match self.backend {
            Backend::Postgres(_) => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite { .. } => "",
        };
        let LeaseQuery {
            lease_name,
            extra,
            due,
            order,
        } = query;
        let claim = format!(
            "UPDATE deploy_jobs SET lease_owner = {lease_name}, lease_until = $2{extra} \
             WHERE deployment_id = (SELECT deployment_id FROM deploy_jobs \
               WHERE {due} AND (lease_until IS NULL OR lease_until < $3) \
               AND ($4 IS NULL OR deployment_id = $4) \
               ORDER BY {order}, deployment_id LIMIT 1{lock}) \
             RETURNING deployment_id, attempts, lease_owner"
        );
        let select = format!("SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE id = $1");
        with_pool!(self.backend, write, |pool| {
            let mut tx = pool.begin().await?;
            let Some(row) = sqlx::query(sqlx::AssertSqlSafe(claim.as_str()))
                .bind(owner)
                .bind(now + lease_millis)
                .bind(now)
                .bind(only)
                .fetch_optional(&mut *tx)
                .await?
            else {
                return Ok(None);
            };
            let id: i64 = row.get("deployment_id");
            let Some(deployment) = sqlx::query(sqlx::AssertSqlSafe(select.as_str()))
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
            else {
                return Err(StoreError::Corrupt {
                    table: "deploy_jobs",
                    detail: format!("job {id} has no deployment"),
                });
            };
            let deployment = deployment_from_row!(&deployment)?;
            tx.commit().await?;
            Ok(Some((
                deployment,
                row.get("attempts"),
                row.get("lease_owner"),
            )))
        })
    }

    /// Extends `lease` (a [`ClaimedJob::lease`]) to `until`; false when the job is no
    /// longer held by it (the lease ran out and another claim took the job, or the job
    /// finished).
    pub async fn heartbeat(
        &self,
        deployment_id: i64,
        owner: &str,
        until: i64,
    ) -> Result<bool, StoreError> {
        with_pool!(self.backend, write, |pool| {
            let done = sqlx::query(
                "UPDATE deploy_jobs SET lease_until = $3 \
                 WHERE deployment_id = $1 AND lease_owner = $2 AND finished_at IS NULL",
            )
            .bind(deployment_id)
            .bind(owner)
            .bind(until)
            .execute(pool)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Gives the job back for another attempt not before `run_after`, recording why
    /// this one failed; false when `lease` no longer held it.
    pub async fn release(
        &self,
        deployment_id: i64,
        owner: &str,
        run_after: i64,
        error: &str,
    ) -> Result<bool, StoreError> {
        with_pool!(self.backend, write, |pool| {
            let done = sqlx::query(
                "UPDATE deploy_jobs SET lease_owner = NULL, lease_until = NULL, run_after = $3, \
                 last_error = $4 WHERE deployment_id = $1 AND lease_owner = $2 AND finished_at IS NULL",
            )
            .bind(deployment_id)
            .bind(owner)
            .bind(run_after)
            .bind(error)
            .execute(pool)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// The job of a deployment.
    pub async fn get(&self, deployment_id: i64) -> Result<Option<JobState>, StoreError> {
        with_pool!(self.backend, read, |pool| {
            let row = sqlx::query(
                "SELECT deployment_id, attempts, run_after, lease_owner, lease_until, last_error, \
                 finished_at, followup_due FROM deploy_jobs WHERE deployment_id = $1",
            )
            .bind(deployment_id)
            .fetch_optional(pool)
            .await?;
            Ok(row.map(|row| JobState {
                deployment_id: row.get("deployment_id"),
                attempts: u32::try_from(row.get::<i64, _>("attempts")).unwrap_or(u32::MAX),
                run_after: row.get("run_after"),
                lease_owner: row.get("lease_owner"),
                lease_until: row.get("lease_until"),
                last_error: row.get("last_error"),
                finished_at: row.get("finished_at"),
                followup_due: row.get("followup_due"),
            }))
        })
    }

    /// When the next unfinished job becomes due (its `run_after`, or the end of the
    /// lease held on it), for the worker's sleep; `None` when there is none.
    pub async fn next_due(&self) -> Result<Option<i64>, StoreError> {
        with_pool!(self.backend, read, |pool| {
            let row = sqlx::query(
                "SELECT MIN(CASE WHEN lease_until IS NOT NULL AND lease_until > run_after \
                 THEN lease_until ELSE run_after END) AS due FROM deploy_jobs WHERE finished_at IS NULL",
            )
            .fetch_one(pool)
            .await?;
            Ok(row.get("due"))
        })
    }

    /// How many unfinished jobs are held and waiting at `now`.
    pub async fn counts(&self, now: i64) -> Result<JobCounts, StoreError> {
        with_pool!(self.backend, read, |pool| {
            let row = sqlx::query(
                "SELECT \
                 COALESCE(SUM(CASE WHEN lease_until IS NOT NULL AND lease_until >= $1 THEN 1 ELSE 0 END), 0) AS running, \
                 COALESCE(SUM(CASE WHEN lease_until IS NULL OR lease_until < $1 THEN 1 ELSE 0 END), 0) AS waiting \
                 FROM deploy_jobs WHERE finished_at IS NULL",
            )
            .bind(now)
            .fetch_one(pool)
            .await?;
            Ok(JobCounts {
                running: row.get("running"),
                waiting: row.get("waiting"),
            })
        })
    }

    /// Appends lines to a deployment's log (each cut to [`MAX_LOG_LINE_BYTES`]; beyond
    /// [`MAX_LOG_LINES`] they are dropped, the last kept line saying so).
    pub async fn append_log(
        &self,
        deployment_id: i64,
        at: i64,
        lines: &[String],
    ) -> Result<(), StoreError> {
        if lines.is_empty() {
            return Ok(());
        }
        with_pool!(self.backend, write, |pool| {
            let mut tx = pool.begin().await?;
            let last: Option<i64> =
                sqlx::query("SELECT MAX(seq) AS last FROM deployment_log WHERE deployment_id = $1")
                    .bind(deployment_id)
                    .fetch_one(&mut *tx)
                    .await?
                    .get("last");
            let mut seq = last.unwrap_or(0);
            for line in lines {
                if seq >= MAX_LOG_LINES {
                    break;
                }
                seq += 1;
                let text = if seq == MAX_LOG_LINES {
                    "(log truncated: later lines were dropped)".to_owned()
                } else {
                    cut(line)
                };
                sqlx::query(
                    "INSERT INTO deployment_log (deployment_id, seq, at, line) VALUES ($1, $2, $3, $4)",
                )
                .bind(deployment_id)
                .bind(seq)
                .bind(at)
                .bind(text)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// A deployment's log, in order, from line `after + 1`, at most `limit` lines.
    pub async fn log(
        &self,
        deployment_id: i64,
        after: i64,
        limit: i64,
    ) -> Result<Vec<LogLine>, StoreError> {
        with_pool!(self.backend, read, |pool| {
            let rows = sqlx::query(
                "SELECT seq, at, line FROM deployment_log WHERE deployment_id = $1 AND seq > $2 \
                 ORDER BY seq LIMIT $3",
            )
            .bind(deployment_id)
            .bind(after)
            .bind(limit)
            .fetch_all(pool)
            .await?;
            Ok(rows
                .iter()
                .map(|row| LogLine {
                    seq: row.get("seq"),
                    at: row.get("at"),
                    line: row.get("line"),
                })
                .collect())
        })
    }
}

impl Jobs<'_> {
    /// Records what a webhook's receiver reported for a deployment still under way;
    /// false when a report was recorded before (a callback is accepted once) or the
    /// deployment has finished.
    pub async fn record_callback(
        &self,
        deployment_id: i64,
        succeeded: bool,
        message: Option<&str>,
        now: i64,
    ) -> Result<bool, StoreError> {
        with_pool!(self.backend, write, |pool| {
            let mut tx = pool.begin().await?;
            // Only while the deployment is still under way, in the same statement.
            let done = sqlx::query(
                "INSERT INTO deployment_callbacks (deployment_id, state, message, reported_at) \
                 SELECT $1, $2, $3, $4 WHERE EXISTS \
                 (SELECT 1 FROM deployments WHERE id = $1 AND state = 'deploying') \
                 ON CONFLICT (deployment_id) DO NOTHING",
            )
            .bind(deployment_id)
            .bind(if succeeded { "succeeded" } else { "failed" })
            .bind(message)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() != 1 {
                return Ok(false);
            }
            let row = sqlx::query(
                "SELECT application, environment, digest FROM deployments WHERE id = $1",
            )
            .bind(deployment_id)
            .fetch_one(&mut *tx)
            .await?;
            let entry = crate::NewAuditEntry {
                at: now,
                actor: CALLBACK_ACTOR.to_owned(),
                action: domain::audit::AuditAction::Callback,
                subject: format!(
                    "{}/{}",
                    row.get::<String, _>("application"),
                    row.get::<String, _>("environment")
                ),
                payload: serde_json::json!({
                    "deployment": deployment_id,
                    "digest": row.get::<String, _>("digest"),
                    "state": if succeeded { "succeeded" } else { "failed" },
                    "message": message,
                }),
            };
            crate::append_audit!(tx, &entry);
            tx.commit().await?;
            Ok(true)
        })
    }

    /// What the receiver reported for a deployment, if it has: whether it succeeded,
    /// and its message.
    pub async fn callback(
        &self,
        deployment_id: i64,
    ) -> Result<Option<(bool, Option<String>)>, StoreError> {
        with_pool!(self.backend, read, |pool| {
            let row = sqlx::query(
                "SELECT state, message FROM deployment_callbacks WHERE deployment_id = $1",
            )
            .bind(deployment_id)
            .fetch_optional(pool)
            .await?;
            Ok(row.map(|row| {
                let state: String = row.get("state");
                (state == "succeeded", row.get("message"))
            }))
        })
    }
}

impl Jobs<'_> {
    /// Takes the lease on the follow-up of a finished deployment whose finishing
    /// replica did not get to it (it is due and no live lease holds it).
    pub async fn claim_follow_up(
        &self,
        owner: &str,
        now: i64,
        lease_millis: i64,
    ) -> Result<Option<ClaimedFollowUp>, StoreError> {
        let claimed = self
            .take_lease(
                &LeaseQuery {
                    lease_name: "$1 || '#follow-up'",
                    extra: "",
                    due: "finished_at IS NOT NULL AND followup_due IS NOT NULL AND followup_due <= $3",
                    order: "followup_due",
                },
                None,
                owner,
                now,
                lease_millis,
            )
            .await?;
        Ok(claimed.map(|(deployment, _, lease)| ClaimedFollowUp {
            succeeded: deployment.state == DeploymentState::Deployed,
            message: deployment.message.clone(),
            order: DeploymentOrder::from(deployment),
            lease,
        }))
    }

    /// Marks the follow-up of deployment `id` done (by whoever holds `lease`, or by
    /// the finishing replica, which holds none: `None`).
    pub async fn follow_up_done(&self, id: i64, lease: Option<&str>) -> Result<(), StoreError> {
        with_pool!(self.backend, write, |pool| {
            sqlx::query(
                "UPDATE deploy_jobs SET followup_due = NULL, lease_owner = NULL, lease_until = NULL \
                 WHERE deployment_id = $1 AND finished_at IS NOT NULL \
                 AND (lease_owner = $2 OR ($2 IS NULL AND lease_owner IS NULL))",
            )
            .bind(id)
            .bind(lease)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// Whether the environment had a deployment after deployment `id`.
    pub async fn newer_deployment(
        &self,
        application: &str,
        environment: &str,
        id: i64,
    ) -> Result<bool, StoreError> {
        with_pool!(self.backend, read, |pool| {
            let row = sqlx::query(
                "SELECT 1 AS one FROM deployments WHERE application = $1 AND environment = $2 \
                 AND id > $3 LIMIT 1",
            )
            .bind(application)
            .bind(environment)
            .bind(id)
            .fetch_optional(pool)
            .await?;
            Ok(row.is_some())
        })
    }

    /// Whether `digest` was requested into the environment at or after `since`.
    pub async fn promoted_since(
        &self,
        application: &str,
        environment: &str,
        digest: &str,
        since: i64,
    ) -> Result<bool, StoreError> {
        with_pool!(self.backend, read, |pool| {
            let row = sqlx::query(
                "SELECT 1 AS one FROM promotions WHERE application = $1 AND environment = $2 \
                 AND digest = $3 AND created_at >= $4 LIMIT 1",
            )
            .bind(application)
            .bind(environment)
            .bind(digest)
            .bind(since)
            .fetch_optional(pool)
            .await?;
            Ok(row.is_some())
        })
    }

    /// Takes or renews the lease on the work called `name` for `owner` until `until`,
    /// unless another owner holds it unexpired at `now`; whether `owner` holds it now.
    pub async fn lead(
        &self,
        name: &str,
        owner: &str,
        now: i64,
        until: i64,
    ) -> Result<bool, StoreError> {
        with_pool!(self.backend, write, |pool| {
            let done = sqlx::query(
                "INSERT INTO singleton_leases (name, owner, lease_until) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, lease_until = excluded.lease_until \
                 WHERE singleton_leases.owner = excluded.owner OR singleton_leases.lease_until < $4",
            )
            .bind(name)
            .bind(owner)
            .bind(until)
            .bind(now)
            .execute(pool)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Gives up the lease on the work called `name`, if `owner` holds it.
    pub async fn release_lead(&self, name: &str, owner: &str) -> Result<(), StoreError> {
        with_pool!(self.backend, write, |pool| {
            sqlx::query(
                "UPDATE singleton_leases SET lease_until = 0 WHERE name = $1 AND owner = $2",
            )
            .bind(name)
            .bind(owner)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// Gives up the lease on the work called `name` if a former run of replica
    /// `replica` holds it (its owner is `REPLICA/…`): a replica starting knows that
    /// whatever it held before it died is not being worked on. Returns whether one was.
    pub async fn release_leads_of(&self, name: &str, replica: &str) -> Result<bool, StoreError> {
        with_pool!(self.backend, write, |pool| {
            let released = sqlx::query(
                "UPDATE singleton_leases SET lease_until = 0 \
                 WHERE name = $1 AND lease_until > 0 AND substr(owner, 1, length($2) + 1) = $2 || '/'",
            )
            .bind(name)
            .bind(replica)
            .execute(pool)
            .await?
            .rows_affected();
            Ok(released > 0)
        })
    }

    /// Who holds the lease on the work called `name` at `now`, if anyone.
    pub async fn leader(&self, name: &str, now: i64) -> Result<Option<String>, StoreError> {
        with_pool!(self.backend, read, |pool| {
            let row = sqlx::query(
                "SELECT owner FROM singleton_leases WHERE name = $1 AND lease_until >= $2",
            )
            .bind(name)
            .bind(now)
            .fetch_optional(pool)
            .await?;
            Ok(row.map(|row| row.get("owner")))
        })
    }

    /// Whether a deployment into the environment is under way.
    pub async fn deploying(
        &self,
        application: &str,
        environment: &str,
    ) -> Result<bool, StoreError> {
        with_pool!(self.backend, read, |pool| {
            let row = sqlx::query(
                "SELECT 1 AS one FROM deployments WHERE application = $1 AND environment = $2 \
                 AND state = 'deploying' LIMIT 1",
            )
            .bind(application)
            .bind(environment)
            .fetch_optional(pool)
            .await?;
            Ok(row.is_some())
        })
    }
}

/// `line` cut to at most [`MAX_LOG_LINE_BYTES`] on a character boundary.
fn cut(line: &str) -> String {
    if line.len() <= MAX_LOG_LINE_BYTES {
        return line.to_owned();
    }
    let mut end = MAX_LOG_LINE_BYTES;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &line[..end])
}
