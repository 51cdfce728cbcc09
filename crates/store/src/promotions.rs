//! Promotions and approvals: the promotion state machine, with every decision taken
//! inside one transaction; and the transaction macros it shares with
//! [`crate::Deployments`] and [`crate::Environments`].
//!
//! Every operation on an environment begins by bumping that environment's `version`
//! row, which serializes the deciders of one environment on both databases (on
//! PostgreSQL the row lock is held to commit; SQLite has one writer). Inside that
//! transaction it re-reads what it decides on, checks that the pipeline and
//! application it was handed are still the stored revisions ([`StagePlan`]), evaluates
//! the gate with `domain::gate::evaluate` against the evidence read in the same
//! transaction, writes the new state and appends the audit entries. So two concurrent
//! promoters or approvers never decide on a state the other has changed, and a decision
//! and its record commit or fail together.
//!
//! Deployments are carried out outside the store: a decision that starts one returns a
//! [`DeploymentOrder`], and [`crate::Deployments::finish_deployment`] records its
//! outcome (and starts the next approved promotion queued behind it).

use std::collections::BTreeMap;

use domain::audit::AuditAction;
use domain::gate::{
    ApprovalEvidence, CheckEvidence, Condition, ConditionKind, Evidence, PreviousStage, evaluate,
    is_open,
};
use domain::pipeline::{CheckName, Gate, Role};
pub use domain::promotion::Decider;
use domain::promotion::{DecidedOn, DeploymentReason, PromotionState, decision_refusal};
use domain::{Digest, RepoName};
use sqlx::Row;

use crate::deployments::DeploymentOrder;
use crate::environments::Hold;
use crate::evidence::{holds_manifest, parse_findings};
use crate::{Backend, NewAuditEntry, StoreError, with_pool};

/// How check flapping is judged: more than `max_flips` changes between passed and
/// failed among one check's reports on one digest within `window_millis` blocks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlakyPolicy {
    pub max_flips: u32,
    pub window_millis: i64,
}

impl Default for FlakyPolicy {
    fn default() -> Self {
        FlakyPolicy {
            max_flips: 3,
            window_millis: 24 * 60 * 60 * 1000,
        }
    }
}

/// Everything the store needs to decide about one environment, read by the caller
/// from the declared application and pipeline at the revisions it names. A decision
/// refuses to use a plan whose revisions are no longer the stored ones
/// ([`StoreOutcome::Stale`]), so a gate is never judged by a pipeline that changed.
#[derive(Debug, Clone)]
pub struct StagePlan {
    pub application: String,
    pub application_revision: i64,
    pub pipeline: String,
    pub pipeline_revision: i64,
    pub repository: RepoName,
    pub environment: String,
    /// The stage before this one, if any.
    pub previous: Option<String>,
    pub gate: Gate,
    /// The environment's target kind (`record`, `gitops`, …), stored on deployments.
    pub target: String,
    pub flaky: FlakyPolicy,
    /// When the decision is made, in milliseconds since the Unix epoch: the time
    /// soak and freeze windows are judged at and the decision is recorded with.
    pub now: i64,
}

/// A config revision carried by a promotion (a release bundle): canonical JSON of its
/// key/values and a short hash that approvals are bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigRevision {
    pub text: String,
    pub revision: String,
}

impl ConfigRevision {
    pub fn new(values: &serde_json::Value) -> ConfigRevision {
        let text = crate::canonical_json(values);
        let digest = Digest::sha256_of(text.as_bytes());
        ConfigRevision {
            revision: digest.hex()[..12].to_owned(),
            text,
        }
    }
}

/// One condition of a gate as last evaluated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCondition {
    /// `order`, `soak`, `freeze`, `check` or `approval`.
    pub kind: String,
    /// The check name or role, for `check` and `approval`.
    pub subject: Option<String>,
    pub met: bool,
    pub reason: String,
}

impl From<&Condition> for StoredCondition {
    fn from(condition: &Condition) -> Self {
        let (kind, subject) = match &condition.kind {
            ConditionKind::Order => ("order", None),
            ConditionKind::Soak => ("soak", None),
            ConditionKind::Freeze => ("freeze", None),
            ConditionKind::Check(name) => ("check", Some(name.as_str().to_owned())),
            ConditionKind::Approval(role) => ("approval", Some(role.as_str().to_owned())),
        };
        StoredCondition {
            kind: kind.to_owned(),
            subject,
            met: condition.met,
            reason: condition.reason.clone(),
        }
    }
}

fn conditions_json(conditions: &[StoredCondition]) -> String {
    serde_json::Value::Array(
        conditions
            .iter()
            .map(|c| {
                serde_json::json!({
                    "kind": c.kind, "subject": c.subject, "met": c.met, "reason": c.reason,
                })
            })
            .collect(),
    )
    .to_string()
}

pub(crate) fn parse_conditions(text: &str) -> Result<Vec<StoredCondition>, StoreError> {
    let corrupt = |detail: &str| StoreError::corrupt("promotions", detail);
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|_| corrupt("conditions are not JSON"))?;
    value
        .as_array()
        .ok_or_else(|| corrupt("conditions are not a list"))?
        .iter()
        .map(|c| {
            Ok(StoredCondition {
                kind: c["kind"]
                    .as_str()
                    .ok_or_else(|| corrupt("condition kind"))?
                    .to_owned(),
                subject: c["subject"].as_str().map(str::to_owned),
                met: c["met"].as_bool().ok_or_else(|| corrupt("condition met"))?,
                reason: c["reason"].as_str().unwrap_or_default().to_owned(),
            })
        })
        .collect()
}

/// A person's decision on a promotion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub approver: String,
    /// `approve` or `reject`.
    pub decision: String,
    pub comment: Option<String>,
    pub at: i64,
    /// The roles the approver held for the promotion's application and environment
    /// when deciding; `None` for decisions recorded before they were kept.
    pub roles: Option<Vec<String>>,
}

/// Roles as the `approvals.roles` column keeps them: comma-separated.
fn roles_from(text: Option<String>) -> Option<Vec<String>> {
    text.map(|text| {
        text.split(',')
            .filter(|role| !role.is_empty())
            .map(str::to_owned)
            .collect()
    })
}

/// A stored promotion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Promotion {
    pub id: i64,
    pub application: String,
    pub environment: String,
    pub digest: String,
    pub config: Option<String>,
    pub config_revision: Option<String>,
    pub state: PromotionState,
    pub requested_by: String,
    pub auto: bool,
    pub override_reason: Option<String>,
    /// Why it ended (rejection reason, failure, what superseded it).
    pub reason: Option<String>,
    pub conditions: Vec<StoredCondition>,
    /// Counts the promotion's changes.
    pub version: i64,
    pub deployment_id: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub decisions: Vec<Decision>,
}

/// The number of deployments of one kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentCount {
    pub application: String,
    pub environment: String,
    /// `promotion` or `rollback`.
    pub reason: String,
    /// `deploying`, `deployed` or `failed`.
    pub state: String,
    pub count: i64,
}

/// Record counts for `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordCounts {
    pub deployments: Vec<DeploymentCount>,
    /// Promotions by state.
    pub promotions: Vec<(String, i64)>,
}

/// A request for a new promotion.
#[derive(Debug, Clone)]
pub struct PromotionRequest<'a> {
    pub digest: &'a Digest,
    pub config: Option<&'a ConfigRevision>,
    pub requested_by: &'a str,
    /// Requested by auto-promotion: refused while the environment is held.
    pub auto: bool,
    /// An admin's break-glass reason: the gate is evaluated and shown but not obeyed.
    pub override_reason: Option<&'a str>,
    pub idempotency_key: Option<&'a str>,
    /// A hash of the request, so a reused idempotency key with another request is
    /// told apart from a retry.
    pub request_hash: &'a str,
    /// Deploy even if the environment runs (or is deploying) this digest already;
    /// without it such a request answers with the promotion that put it there.
    pub redeploy: bool,
}

/// The outcome of a decision that may start a deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided {
    pub promotion: Promotion,
    /// Whether this request created the promotion (false: an existing one answered:
    /// the same idempotency key, an identical open request, or what the environment
    /// runs already).
    pub created: bool,
    /// The deployment to carry out now, if the decision started one.
    pub start: Option<DeploymentOrder>,
}

/// Outcomes of the promotion operations, beside success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreOutcome<T> {
    Done(T),
    /// The promotion (or deployment) does not exist.
    NotFound,
    /// The plan's application or pipeline revision is no longer the stored one, or the
    /// promotion is not of the plan's environment: reload and retry.
    Stale,
    /// The application's repository holds no manifest with this digest.
    NotAnArtifact,
    /// The idempotency key was used before for another request.
    IdempotencyKeyReused {
        promotion_id: i64,
    },
    /// The environment is held and the request was an automatic one.
    Held(Hold),
    /// The promotion is not in a state that allows this (e.g. approving a rejected one).
    WrongState(PromotionState),
    /// The decider may not make this decision; the text says why.
    Refused(String),
    /// This person already decided on this promotion.
    AlreadyDecided,
    /// Nothing to roll back to; the text says why.
    NoRollbackTarget(String),
    /// The digest is quarantined in the application.
    Quarantined(crate::Quarantine),
    /// Another deployment to the environment is in flight.
    Busy {
        deployment_id: i64,
    },
    /// The environment no longer runs what the caller saw; the text says what it runs.
    Moved(String),
    /// The idempotency key was used before for another rollback.
    RollbackKeyReused {
        deployment_id: i64,
    },
}

/// Access to promotions, deployments and environments.
pub struct Promotions<'a> {
    pub(crate) backend: &'a Backend,
}

pub(crate) const PROMOTION_COLUMNS: &str = "id, application, environment, digest, config, config_revision, state, \
     requested_by, auto, override_reason, reason, conditions, version, deployment_id, created_at, updated_at";

macro_rules! promotion_from_row {
    ($row:expr) => {{
        let row = $row;
        let state: String = row.get("state");
        let conditions: String = row.get("conditions");
        match (
            domain::promotion::PromotionState::parse(&state),
            $crate::promotions::parse_conditions(&conditions),
        ) {
            (Some(state), Ok(conditions)) => Ok($crate::Promotion {
                id: row.get("id"),
                application: row.get("application"),
                environment: row.get("environment"),
                digest: row.get("digest"),
                config: row.get("config"),
                config_revision: row.get("config_revision"),
                state,
                requested_by: row.get("requested_by"),
                auto: row.get("auto"),
                override_reason: row.get("override_reason"),
                reason: row.get("reason"),
                conditions,
                version: row.get("version"),
                deployment_id: row.get("deployment_id"),
                created_at: row.get("created_at"),
                updated_at: row.get("updated_at"),
                decisions: Vec::new(),
            }),
            (None, _) => Err($crate::StoreError::corrupt(
                "promotions",
                format!("state `{state}`"),
            )),
            (_, Err(error)) => Err(error),
        }
    }};
}

pub(crate) use promotion_from_row;

/// Takes environment `($app, $env)`'s row lock (creating the row on first use) and
/// returns its hold, inside transaction `$tx`.
macro_rules! lock_environment {
    ($tx:ident, $app:expr, $env:expr, $now:expr) => {{
        sqlx::query(
            "INSERT INTO environments (application, name, version) VALUES ($1, $2, 0) \
             ON CONFLICT (application, name) DO NOTHING",
        )
        .bind($app)
        .bind($env)
        .execute(&mut *$tx)
        .await?;
        let row = sqlx::query(
            "UPDATE environments SET version = version + 1 WHERE application = $1 AND name = $2 \
             RETURNING hold_reason, hold_by, hold_at",
        )
        .bind($app)
        .bind($env)
        .fetch_one(&mut *$tx)
        .await?;
        let reason: Option<String> = row.get("hold_reason");
        reason.map(|reason| $crate::Hold {
            reason,
            by: row.get::<Option<String>, _>("hold_by").unwrap_or_default(),
            at: row.get::<Option<i64>, _>("hold_at").unwrap_or($now),
        })
    }};
}

pub(crate) use lock_environment;

/// Whether `$plan`'s application and pipeline revisions are the stored ones.
macro_rules! plan_is_current {
    ($tx:ident, $plan:expr) => {{
        let plan: &StagePlan = $plan;
        let rows = sqlx::query(
            "SELECT kind, name, revision FROM resources WHERE (kind = 'Application' AND name = $1) \
             OR (kind = 'Pipeline' AND name = $2)",
        )
        .bind(&plan.application)
        .bind(&plan.pipeline)
        .fetch_all(&mut *$tx)
        .await?;
        let revision = |kind: &str| {
            rows.iter()
                .find(|row| row.get::<String, _>("kind") == kind)
                .map(|row| row.get::<i64, _>("revision"))
        };
        revision("Application") == Some(plan.application_revision)
            && revision("Pipeline") == Some(plan.pipeline_revision)
    }};
}

pub(crate) use plan_is_current;

macro_rules! promotion_by_id {
    ($tx:ident, $id:expr) => {{
        match sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {PROMOTION_COLUMNS} FROM promotions WHERE id = $1"
        )))
        .bind($id)
        .fetch_optional(&mut *$tx)
        .await?
        {
            Some(row) => Some(promotion_from_row!(&row)?),
            None => None,
        }
    }};
}

/// Who notified, triggered or committed the build of `$digest` (none may approve its
/// promotion), read inside transaction `$tx`.
macro_rules! build_actors {
    ($tx:ident, $app:expr, $digest:expr) => {{
        match sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {} FROM builds WHERE application = $1 AND digest = $2",
            crate::evidence::BUILD_COLUMNS
        )))
        .bind($app)
        .bind($digest)
        .fetch_optional(&mut *$tx)
        .await?
        {
            Some(row) => crate::evidence::build_from_row!(&row).actors(),
            None => Vec::new(),
        }
    }};
}

/// Evaluates the gate of `$promotion` (state requested or waiting) against the
/// evidence in transaction `$tx` and moves it on: to `waiting` if the gate is shut,
/// else supersedes older pending promotions of the environment and either starts a
/// deployment (returned) or, behind one in flight, queues as `approved`. Pushes the
/// audit entries to `$audit`. Evaluates to `Option<DeploymentOrder>`.
macro_rules! advance {
    ($tx:ident, $plan:expr, $promotion:expr, $now:expr, $audit:expr) => {{
        let plan: &StagePlan = $plan;
        let promotion: &Promotion = $promotion;
        let now: i64 = $now;
        let audit: &mut Vec<NewAuditEntry> = $audit;
        // Order and soak: when this digest last deployed successfully to the previous stage.
        let previous = match &plan.previous {
            None => PreviousStage::None,
            Some(previous) => {
                let at: Option<i64> = sqlx::query(
                    "SELECT MAX(finished_at) AS at FROM deployments WHERE application = $1 \
                     AND environment = $2 AND digest = $3 AND state = 'deployed'",
                )
                .bind(&plan.application)
                .bind(previous)
                .bind(&promotion.digest)
                .fetch_one(&mut *$tx)
                .await?
                .get("at");
                match at.and_then(|at| jiff::Timestamp::from_millisecond(at).ok()) {
                    Some(at) => PreviousStage::DeployedAt(at),
                    None => PreviousStage::NotDeployed,
                }
            }
        };
        // Checks: the latest report of each name, and whether it flaps.
        let rows = sqlx::query(
            "SELECT name, passed, findings, reported_at FROM checks \
             WHERE application = $1 AND digest = $2 ORDER BY id",
        )
        .bind(&plan.application)
        .bind(&promotion.digest)
        .fetch_all(&mut *$tx)
        .await?;
        let mut by_name: BTreeMap<String, Vec<(bool, Option<String>, i64)>> = BTreeMap::new();
        for row in &rows {
            by_name.entry(row.get("name")).or_default().push((
                row.get("passed"),
                row.get("findings"),
                row.get("reported_at"),
            ));
        }
        let mut checks = Vec::new();
        for (name, reports) in &by_name {
            let Ok(check_name) = CheckName::parse(name) else {
                continue;
            };
            let Some((passed, findings, _)) = reports.last() else {
                continue;
            };
            let since = now - plan.flaky.window_millis;
            let recent = reports
                .iter()
                .filter(|(_, _, at)| *at >= since)
                .map(|(passed, _, _)| *passed);
            checks.push(CheckEvidence {
                name: check_name,
                passed: *passed,
                findings: findings.as_deref().map(parse_findings).transpose()?.unwrap_or_default(),
                flapping: domain::findings::flips(recent) > plan.flaky.max_flips,
            });
        }
        // Approvals bound to this digest, environment and config revision, judged by
        // the roles their givers hold now for this environment (`roles_granted`, the
        // one rule the engine applies to callers too).
        let rows = sqlx::query(
            "SELECT a.approver, COALESCE(u.ci, FALSE) AS ci, COALESCE(u.admin, FALSE) AS admin, \
             r.role, r.application AS grant_application, r.environment AS grant_environment \
             FROM approvals a LEFT JOIN users u ON u.name = a.approver \
             LEFT JOIN user_roles r ON r.user_name = a.approver AND r.application IN ($2, '') \
             WHERE a.promotion_id = $1 AND a.decision = 'approve' AND a.digest = $3 \
             AND a.environment = $4 AND COALESCE(a.config_revision, '') = $5",
        )
        .bind(promotion.id)
        .bind(&plan.application)
        .bind(&promotion.digest)
        .bind(&plan.environment)
        .bind(promotion.config_revision.as_deref().unwrap_or(""))
        .fetch_all(&mut *$tx)
        .await?;
        // Per approver: whether a bot, whether an admin, and their grants.
        let mut givers: Vec<(String, bool, bool, Vec<domain::RoleGrant>)> = Vec::new();
        for row in &rows {
            let approver: String = row.get("approver");
            let index = match givers.iter().position(|g| g.0 == approver) {
                Some(index) => index,
                None => {
                    givers.push((approver, row.get("ci"), row.get("admin"), Vec::new()));
                    givers.len() - 1
                }
            };
            let role: Option<String> = row.get("role");
            if let Some(role) = role.as_deref().and_then(|r| Role::parse(r).ok()) {
                let application: Option<String> = row.get("grant_application");
                let environment: Option<String> = row.get("grant_environment");
                givers[index].3.push(domain::RoleGrant {
                    role,
                    application: application.filter(|a| !a.is_empty()),
                    environment: environment.filter(|e| !e.is_empty()),
                });
            }
        }
        let approvals: Vec<ApprovalEvidence> = givers
            .into_iter()
            .map(|(approver, bot, admin, grants)| ApprovalEvidence {
                roles: domain::pipeline::roles_granted(
                    &grants,
                    admin,
                    &plan.application,
                    domain::pipeline::GrantScope::Environment(&plan.environment),
                ),
                approver,
                bot,
            })
            .collect();
        let build_actors = build_actors!($tx, &plan.application, &promotion.digest);
        let now_ts = jiff::Timestamp::from_millisecond(now).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        let evidence = Evidence {
            now: now_ts,
            requester: &promotion.requested_by,
            build_actors: &build_actors,
            previous,
            checks: &checks,
            approvals: &approvals,
        };
        let conditions = evaluate(&plan.gate, &evidence);
        let open = is_open(&conditions);
        let stored: Vec<StoredCondition> = conditions.iter().map(StoredCondition::from).collect();
        let conditions_text = conditions_json(&stored);
        let subject = format!("{}/{}", plan.application, plan.environment);
        if !open && promotion.override_reason.is_none() {
            // Unchanged conditions of a waiting promotion need no write (the periodic
            // re-evaluation would otherwise rewrite every waiting row).
            if promotion.state != PromotionState::Waiting || stored != promotion.conditions {
                sqlx::query(
                    "UPDATE promotions SET state = 'waiting', conditions = $2, version = version + 1, \
                     updated_at = $3 WHERE id = $1",
                )
                .bind(promotion.id)
                .bind(&conditions_text)
                .bind(now)
                .execute(&mut *$tx)
                .await?;
            }
            None
        } else {
            if !open {
                audit.push(NewAuditEntry {
                    at: now,
                    actor: promotion.requested_by.clone(),
                    action: AuditAction::Override,
                    subject: subject.clone(),
                    payload: serde_json::json!({
                        "promotion": promotion.id,
                        "digest": promotion.digest,
                        "reason": promotion.override_reason,
                        "unmet": stored.iter().filter(|c| !c.met).map(|c| c.reason.clone()).collect::<Vec<_>>(),
                    }),
                });
            }
            // A newer approved promotion supersedes older pending ones.
            let superseded = sqlx::query(
                "UPDATE promotions SET state = 'superseded', reason = $4, version = version + 1, updated_at = $5 \
                 WHERE application = $1 AND environment = $2 AND id < $3 \
                 AND state IN ('requested', 'waiting', 'approved') RETURNING id",
            )
            .bind(&plan.application)
            .bind(&plan.environment)
            .bind(promotion.id)
            .bind(format!("superseded by promotion {}", promotion.id))
            .bind(now)
            .fetch_all(&mut *$tx)
            .await?;
            for row in &superseded {
                let id: i64 = row.get("id");
                audit.push(NewAuditEntry {
                    at: now,
                    actor: promotion.requested_by.clone(),
                    action: AuditAction::Supersede,
                    subject: subject.clone(),
                    payload: serde_json::json!({ "promotion": id, "by": promotion.id }),
                });
            }
            let in_flight: Option<i64> = sqlx::query(
                "SELECT id FROM deployments WHERE application = $1 AND environment = $2 \
                 AND state = 'deploying' LIMIT 1",
            )
            .bind(&plan.application)
            .bind(&plan.environment)
            .fetch_optional(&mut *$tx)
            .await?
            .map(|row| row.get("id"));
            if in_flight.is_some() {
                sqlx::query(
                    "UPDATE promotions SET state = 'approved', conditions = $2, version = version + 1, \
                     updated_at = $3 WHERE id = $1",
                )
                .bind(promotion.id)
                .bind(&conditions_text)
                .bind(now)
                .execute(&mut *$tx)
                .await?;
                None
            } else {
                let order = start_deployment!(
                    $tx,
                    &plan.application,
                    &plan.environment,
                    &promotion.digest,
                    promotion.config.as_deref(),
                    promotion.config_revision.as_deref(),
                    Some(promotion.id),
                    DeploymentReason::Promotion,
                    &plan.target,
                    &promotion.requested_by,
                    now,
                    audit
                );
                sqlx::query(
                    "UPDATE promotions SET state = 'deploying', conditions = $2, deployment_id = $3, \
                     version = version + 1, updated_at = $4 WHERE id = $1",
                )
                .bind(promotion.id)
                .bind(&conditions_text)
                .bind(order.deployment_id)
                .bind(now)
                .execute(&mut *$tx)
                .await?;
                Some(order)
            }
        }
    }};
}

/// Inserts a `deploying` deployment and its audit entry; evaluates to the order.
macro_rules! start_deployment {
    ($tx:ident, $app:expr, $env:expr, $digest:expr, $config:expr, $config_revision:expr,
     $promotion:expr, $reason:expr, $target:expr, $by:expr, $now:expr, $audit:expr) => {{
        let reason: domain::promotion::DeploymentReason = $reason;
        // The tag: the build's, else the newest one pointing at the digest in the
        // application's repository.
        let row = sqlx::query(
            "INSERT INTO deployments (application, environment, digest, config, config_revision, promotion_id, \
             reason, state, target, requested_by, started_at, tag) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'deploying', $8, $9, $10, COALESCE( \
                 (SELECT b.tag FROM builds b WHERE b.application = $1 AND b.digest = $3), \
                 (SELECT t.name FROM tags t JOIN repositories r ON r.id = t.repository_id \
                  JOIN resources a ON a.kind = 'Application' AND a.name = $1 AND a.repository = r.name \
                  WHERE t.digest = $3 ORDER BY t.updated_at DESC, t.name LIMIT 1))) \
             RETURNING id, tag",
        )
        .bind($app)
        .bind($env)
        .bind($digest)
        .bind($config)
        .bind($config_revision)
        .bind($promotion)
        .bind(reason.as_str())
        .bind($target)
        .bind($by)
        .bind($now)
        .fetch_one(&mut *$tx)
        .await?;
        let id: i64 = row.get("id");
        let tag: Option<String> = row.get("tag");
        // The durable job that carries it out (see `crate::jobs`).
        // Due at once: job times are the job machinery's (the system clock), not the
        // decision's, which a test may have moved.
        sqlx::query("INSERT INTO deploy_jobs (deployment_id, run_after) VALUES ($1, 0)")
            .bind(id)
            .execute(&mut *$tx)
            .await?;
        $audit.push($crate::NewAuditEntry {
            at: $now,
            actor: ($by).to_owned(),
            action: domain::audit::AuditAction::Deploy,
            subject: format!("{}/{}", $app, $env),
            payload: serde_json::json!({
                "deployment": id,
                "state": "deploying",
                "digest": $digest,
                "config_revision": $config_revision,
                "promotion": $promotion,
                "reason": reason.as_str(),
                "target": $target,
            }),
        });
        $crate::DeploymentOrder {
            deployment_id: id,
            application: ($app).to_owned(),
            environment: ($env).to_owned(),
            digest: ($digest).to_owned(),
            config: ($config).map(str::to_owned),
            target: ($target).to_owned(),
            reason,
            promotion_id: $promotion,
            requested_by: ($by).to_owned(),
            tag,
        }
    }};
}

pub(crate) use start_deployment;

macro_rules! append_all {
    ($tx:ident, $entries:expr) => {
        for entry in $entries.iter() {
            crate::append_audit!($tx, entry);
        }
    };
}

pub(crate) use append_all;

macro_rules! decisions_of {
    ($executor:expr, $id:expr) => {{
        sqlx::query(
            "SELECT approver, decision, comment, at, roles FROM approvals WHERE promotion_id = $1 ORDER BY at, approver",
        )
        .bind($id)
        .fetch_all($executor)
        .await?
        .iter()
        .map(|row| Decision {
            approver: row.get("approver"),
            decision: row.get("decision"),
            comment: row.get("comment"),
            at: row.get("at"),
            roles: roles_from(row.get("roles")),
        })
        .collect::<Vec<_>>()
    }};
}

/// Reads the decisions of every promotion in `$promotions` (a `Vec<Promotion>`) in
/// one query and attaches them, ordered as [`decisions_of!`] orders them.
macro_rules! attach_decisions {
    ($executor:expr, $promotions:expr) => {{
        let promotions: &mut Vec<Promotion> = $promotions;
        if !promotions.is_empty() {
            let ids = crate::backend::placeholders(1, promotions.len());
            let mut query = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT promotion_id, approver, decision, comment, at, roles FROM approvals \
                 WHERE promotion_id IN ({ids}) ORDER BY at, approver"
            )));
            for promotion in promotions.iter() {
                query = query.bind(promotion.id);
            }
            let mut decisions: std::collections::HashMap<i64, Vec<Decision>> =
                std::collections::HashMap::new();
            for row in query.fetch_all($executor).await? {
                decisions
                    .entry(row.get("promotion_id"))
                    .or_default()
                    .push(Decision {
                        approver: row.get("approver"),
                        decision: row.get("decision"),
                        comment: row.get("comment"),
                        at: row.get("at"),
                        roles: roles_from(row.get("roles")),
                    });
            }
            for promotion in promotions.iter_mut() {
                promotion.decisions = decisions.remove(&promotion.id).unwrap_or_default();
            }
        }
    }};
}

/// Promotion `$id` as it stands in the transaction, with its decisions; a promotion
/// that vanished mid-transaction is a conflict.
macro_rules! promotion_with_decisions {
    ($tx:ident, $id:expr) => {{
        let mut promotion = promotion_by_id!($tx, $id).ok_or(StoreError::Conflict("promotions"))?;
        promotion.decisions = decisions_of!(&mut *$tx, $id);
        promotion
    }};
}

impl Promotions<'_> {
    /// Requests a promotion of `request.digest` into the plan's environment, evaluates
    /// its gate and, if open, starts its deployment — all in one transaction.
    ///
    /// A retry with the same idempotency key and request returns the promotion it
    /// created; an open promotion of the same digest and config to the same
    /// environment is returned instead of a second one, so concurrent identical
    /// requests make one deployment order.
    pub async fn request(
        &self,
        plan: &StagePlan,
        request: &PromotionRequest<'_>,
    ) -> Result<StoreOutcome<Decided>, StoreError> {
        with_pool!(self.backend, write, |pool| {
            let now = plan.now;
            let mut tx = pool.begin().await?;
            let hold = lock_environment!(tx, &plan.application, &plan.environment, now);
            if !plan_is_current!(tx, plan) {
                return Ok(StoreOutcome::Stale);
            }
            if let Some(key) = request.idempotency_key {
                let existing = sqlx::query(
                    "SELECT id, request_hash FROM promotions WHERE requested_by = $1 AND idempotency_key = $2",
                )
                .bind(request.requested_by)
                .bind(key)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some(row) = existing {
                    let id: i64 = row.get("id");
                    let hash: Option<String> = row.get("request_hash");
                    if hash.as_deref() != Some(request.request_hash) {
                        return Ok(StoreOutcome::IdempotencyKeyReused { promotion_id: id });
                    }
                    let promotion = promotion_with_decisions!(tx, id);
                    return Ok(StoreOutcome::Done(Decided {
                        promotion,
                        start: None,
                        created: false,
                    }));
                }
            }
            if !holds_manifest!(tx, &plan.repository, request.digest) {
                return Ok(StoreOutcome::NotAnArtifact);
            }
            if let Some(quarantine) = crate::quarantines::quarantine_of!(
                tx,
                &plan.application,
                request.digest.to_string()
            ) {
                return Ok(StoreOutcome::Quarantined(quarantine));
            }
            if let (true, Some(hold)) = (request.auto, hold) {
                return Ok(StoreOutcome::Held(hold));
            }
            let config_revision = request.config.map(|c| c.revision.as_str());
            // A promotion of what the environment should run already — the digest of
            // the deployment under way, else of the last successful one, unless the
            // environment drifted from it — answers with the promotion that put it
            // there: repeated or concurrent identical requests make one deployment.
            // Only an explicit redeploy deploys again.
            if !request.redeploy {
                let desired = sqlx::query(
                    "SELECT d.digest, d.config_revision, d.promotion_id FROM deployments d \
                     WHERE d.application = $1 AND d.environment = $2 AND (d.state = 'deploying' \
                     OR d.id = (SELECT current_deployment FROM environments WHERE application = $1 AND name = $2 \
                                AND drift_since IS NULL)) \
                     ORDER BY CASE WHEN d.state = 'deploying' THEN 0 ELSE 1 END, d.id DESC LIMIT 1",
                )
                .bind(&plan.application)
                .bind(&plan.environment)
                .fetch_optional(&mut *tx)
                .await?;
                let wanted_digest = request.digest.to_string();
                let same = desired.filter(|row| {
                    row.get::<String, _>("digest") == wanted_digest
                        && row.get::<Option<String>, _>("config_revision").as_deref()
                            == config_revision
                });
                if let Some(row) = same {
                    // A rollback's deployment has no promotion: the latest promotion
                    // that deployed the digest there answers.
                    let id: Option<i64> = match row.get::<Option<i64>, _>("promotion_id") {
                        Some(id) => Some(id),
                        None => sqlx::query(
                            "SELECT MAX(promotion_id) AS id FROM deployments WHERE application = $1 \
                             AND environment = $2 AND digest = $3 AND state = 'deployed'",
                        )
                        .bind(&plan.application)
                        .bind(&plan.environment)
                        .bind(&wanted_digest)
                        .fetch_one(&mut *tx)
                        .await?
                        .get("id"),
                    };
                    if let Some(id) = id {
                        let promotion = promotion_with_decisions!(tx, id);
                        tx.commit().await?;
                        return Ok(StoreOutcome::Done(Decided {
                            promotion,
                            start: None,
                            created: false,
                        }));
                    }
                }
            }
            let open = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {PROMOTION_COLUMNS} FROM promotions WHERE application = $1 AND environment = $2 \
                 AND digest = $3 AND COALESCE(config_revision, '') = $4 \
                 AND state IN ('requested', 'waiting', 'approved', 'deploying') ORDER BY id DESC LIMIT 1"
            )))
            .bind(&plan.application)
            .bind(&plan.environment)
            .bind(request.digest.to_string())
            .bind(config_revision.unwrap_or(""))
            .fetch_optional(&mut *tx)
            .await?;
            // An identical open request is answered with the promotion it made; a
            // break-glass override is a request of its own.
            if let (Some(row), None) = (open, request.override_reason) {
                let mut promotion = promotion_from_row!(&row)?;
                promotion.decisions = decisions_of!(&mut *tx, promotion.id);
                tx.commit().await?;
                return Ok(StoreOutcome::Done(Decided {
                    promotion,
                    start: None,
                    created: false,
                }));
            }
            let id: i64 = sqlx::query(
                "INSERT INTO promotions (application, environment, digest, config, config_revision, state, \
                 requested_by, auto, override_reason, conditions, version, idempotency_key, request_hash, \
                 created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, 'requested', $6, $7, $8, '[]', 1, $9, $10, $11, $11) RETURNING id",
            )
            .bind(&plan.application)
            .bind(&plan.environment)
            .bind(request.digest.to_string())
            .bind(request.config.map(|c| c.text.as_str()))
            .bind(config_revision)
            .bind(request.requested_by)
            .bind(request.auto)
            .bind(request.override_reason)
            .bind(request.idempotency_key)
            .bind(request.request_hash)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?
            .get("id");
            let mut audit = vec![NewAuditEntry {
                at: now,
                actor: request.requested_by.to_owned(),
                action: AuditAction::Promote,
                subject: format!("{}/{}", plan.application, plan.environment),
                payload: serde_json::json!({
                    "promotion": id,
                    "digest": request.digest.to_string(),
                    "config_revision": config_revision,
                    "config": request.config.map(|c| c.text.clone()),
                    "auto": request.auto,
                    "override_reason": request.override_reason,
                    "redeploy": request.redeploy,
                }),
            }];
            let promotion = promotion_by_id!(tx, id).ok_or(StoreError::Conflict("promotions"))?;
            let start = advance!(tx, plan, &promotion, now, &mut audit);
            append_all!(tx, audit);
            let promotion = promotion_by_id!(tx, id).ok_or(StoreError::Conflict("promotions"))?;
            tx.commit().await?;
            Ok(StoreOutcome::Done(Decided {
                promotion,
                start,
                created: true,
            }))
        })
    }

    /// Re-evaluates a waiting promotion's gate (after new evidence, or as time passes
    /// for soak and freeze windows) and starts its deployment if it opened.
    pub async fn reevaluate(
        &self,
        plan: &StagePlan,
        id: i64,
    ) -> Result<StoreOutcome<Decided>, StoreError> {
        with_pool!(self.backend, write, |pool| {
            let now = plan.now;
            let mut tx = pool.begin().await?;
            lock_environment!(tx, &plan.application, &plan.environment, now);
            if !plan_is_current!(tx, plan) {
                return Ok(StoreOutcome::Stale);
            }
            let Some(promotion) = promotion_by_id!(tx, id) else {
                return Ok(StoreOutcome::NotFound);
            };
            if promotion.application != plan.application
                || promotion.environment != plan.environment
            {
                return Ok(StoreOutcome::Stale);
            }
            if promotion.state != PromotionState::Waiting {
                return Ok(StoreOutcome::WrongState(promotion.state));
            }
            let mut audit = Vec::new();
            let start = advance!(tx, plan, &promotion, now, &mut audit);
            append_all!(tx, audit);
            let promotion = promotion_with_decisions!(tx, id);
            tx.commit().await?;
            Ok(StoreOutcome::Done(Decided {
                promotion,
                start,
                created: false,
            }))
        })
    }

    /// Records `decider`'s approval, bound to the promotion's digest, environment and
    /// config revision, and evaluates the gate again.
    pub async fn approve(
        &self,
        plan: &StagePlan,
        id: i64,
        decider: &Decider<'_>,
        comment: Option<&str>,
    ) -> Result<StoreOutcome<Decided>, StoreError> {
        self.decide(plan, id, decider, true, comment).await
    }

    /// Records `decider`'s rejection, which ends the promotion with `reason`.
    pub async fn reject(
        &self,
        plan: &StagePlan,
        id: i64,
        decider: &Decider<'_>,
        reason: &str,
    ) -> Result<StoreOutcome<Decided>, StoreError> {
        self.decide(plan, id, decider, false, Some(reason)).await
    }

    /// An approval (`approve`) or a rejection, in one transaction.
    async fn decide(
        &self,
        plan: &StagePlan,
        id: i64,
        decider: &Decider<'_>,
        approve: bool,
        comment: Option<&str>,
    ) -> Result<StoreOutcome<Decided>, StoreError> {
        with_pool!(self.backend, write, |pool| {
            let now = plan.now;
            let mut tx = pool.begin().await?;
            lock_environment!(tx, &plan.application, &plan.environment, now);
            if !plan_is_current!(tx, plan) {
                return Ok(StoreOutcome::Stale);
            }
            let Some(promotion) = promotion_by_id!(tx, id) else {
                return Ok(StoreOutcome::NotFound);
            };
            if promotion.application != plan.application
                || promotion.environment != plan.environment
            {
                return Ok(StoreOutcome::Stale);
            }
            let decidable = if approve {
                promotion.state == PromotionState::Waiting
            } else {
                matches!(
                    promotion.state,
                    PromotionState::Waiting | PromotionState::Approved
                )
            };
            if !decidable {
                return Ok(StoreOutcome::WrongState(promotion.state));
            }
            let build_actors = build_actors!(tx, &plan.application, &promotion.digest);
            let decided_on = DecidedOn {
                id: promotion.id,
                application: &promotion.application,
                environment: &promotion.environment,
                digest: &promotion.digest,
                requested_by: &promotion.requested_by,
                build_actors: &build_actors,
            };
            if let Some(why) = decision_refusal(decider, &decided_on, &plan.gate, approve) {
                return Ok(StoreOutcome::Refused(why));
            }
            let decision = if approve { "approve" } else { "reject" };
            let inserted = sqlx::query(
                "INSERT INTO approvals (promotion_id, approver, decision, digest, environment, config_revision, comment, at, roles) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (promotion_id, approver) DO NOTHING",
            )
            .bind(id)
            .bind(decider.name)
            .bind(decision)
            .bind(&promotion.digest)
            .bind(&promotion.environment)
            .bind(&promotion.config_revision)
            .bind(comment)
            .bind(now)
            .bind(
                decider
                    .roles
                    .iter()
                    .map(|role| role.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
            )
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if inserted == 0 {
                return Ok(StoreOutcome::AlreadyDecided);
            }
            let mut audit = vec![NewAuditEntry {
                at: now,
                actor: decider.name.to_owned(),
                action: if approve {
                    AuditAction::Approve
                } else {
                    AuditAction::Reject
                },
                subject: format!("{}/{}", plan.application, plan.environment),
                payload: serde_json::json!({
                    "promotion": id,
                    "digest": promotion.digest,
                    "config_revision": promotion.config_revision,
                    "comment": comment,
                }),
            }];
            let start = if approve {
                advance!(tx, plan, &promotion, now, &mut audit)
            } else {
                sqlx::query(
                    "UPDATE promotions SET state = 'rejected', reason = $2, version = version + 1, updated_at = $3 \
                     WHERE id = $1",
                )
                .bind(id)
                .bind(format!(
                    "rejected by {}{}",
                    decider.name,
                    comment.map(|c| format!(": {c}")).unwrap_or_default()
                ))
                .bind(now)
                .execute(&mut *tx)
                .await?;
                None
            };
            append_all!(tx, audit);
            let promotion = promotion_with_decisions!(tx, id);
            tx.commit().await?;
            Ok(StoreOutcome::Done(Decided {
                promotion,
                start,
                created: false,
            }))
        })
    }

    /// Withdraws a pending promotion, at `now`.
    pub async fn cancel(
        &self,
        id: i64,
        actor: &str,
        reason: Option<&str>,
        now: i64,
    ) -> Result<StoreOutcome<Promotion>, StoreError> {
        with_pool!(self.backend, write, |pool| {
            let mut tx = pool.begin().await?;
            let Some(found) = promotion_by_id!(tx, id) else {
                return Ok(StoreOutcome::NotFound);
            };
            lock_environment!(tx, &found.application, &found.environment, now);
            let promotion = promotion_by_id!(tx, id).ok_or(StoreError::Conflict("promotions"))?;
            if !promotion.state.is_pending() {
                return Ok(StoreOutcome::WrongState(promotion.state));
            }
            let text = format!(
                "cancelled by {actor}{}",
                reason.map(|r| format!(": {r}")).unwrap_or_default()
            );
            sqlx::query(
                "UPDATE promotions SET state = 'cancelled', reason = $2, version = version + 1, updated_at = $3 WHERE id = $1",
            )
            .bind(id)
            .bind(&text)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            let entry = NewAuditEntry {
                at: now,
                actor: actor.to_owned(),
                action: AuditAction::Cancel,
                subject: format!("{}/{}", promotion.application, promotion.environment),
                payload: serde_json::json!({ "promotion": id, "reason": reason }),
            };
            crate::append_audit!(tx, &entry);
            let promotion = promotion_with_decisions!(tx, id);
            tx.commit().await?;
            Ok(StoreOutcome::Done(promotion))
        })
    }

    /// One promotion with its decisions.
    pub async fn get(&self, id: i64) -> Result<Option<Promotion>, StoreError> {
        with_pool!(self.backend, read, |pool| {
            let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {PROMOTION_COLUMNS} FROM promotions WHERE id = $1"
            )))
            .bind(id)
            .fetch_optional(pool)
            .await?;
            let Some(row) = row else { return Ok(None) };
            let mut promotion = promotion_from_row!(&row)?;
            promotion.decisions = decisions_of!(pool, id);
            Ok(Some(promotion))
        })
    }

    /// Promotions, newest first, filtered by application, environment and state,
    /// with ids below `before` (for paging), at most `limit`.
    pub async fn list(
        &self,
        application: Option<&str>,
        environment: Option<&str>,
        state: Option<PromotionState>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<Promotion>, StoreError> {
        with_pool!(self.backend, read, |pool| {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {PROMOTION_COLUMNS} FROM promotions WHERE ($1 IS NULL OR application = $1) \
                 AND ($2 IS NULL OR environment = $2) AND ($3 IS NULL OR state = $3) AND id < $4 \
                 ORDER BY id DESC LIMIT $5"
            )))
            .bind(application)
            .bind(environment)
            .bind(state.map(|s| s.as_str()))
            .bind(before.unwrap_or(i64::MAX))
            .bind(limit)
            .fetch_all(pool)
            .await?;
            let mut promotions = Vec::with_capacity(rows.len());
            for row in &rows {
                promotions.push(promotion_from_row!(row)?);
            }
            attach_decisions!(pool, &mut promotions);
            Ok(promotions)
        })
    }

    /// Every promotion of `digest` of `application`, newest first, with their
    /// decisions.
    pub async fn of_digest(
        &self,
        application: &str,
        digest: &str,
    ) -> Result<Vec<Promotion>, StoreError> {
        with_pool!(self.backend, read, |pool| {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {PROMOTION_COLUMNS} FROM promotions WHERE application = $1 AND digest = $2 \
                 ORDER BY id DESC"
            )))
            .bind(application)
            .bind(digest)
            .fetch_all(pool)
            .await?;
            let mut promotions = Vec::with_capacity(rows.len());
            for row in &rows {
                promotions.push(promotion_from_row!(row)?);
            }
            attach_decisions!(pool, &mut promotions);
            Ok(promotions)
        })
    }

    /// The promotions of `application` that are not final yet, newest first, with
    /// their decisions.
    pub async fn pending(&self, application: &str) -> Result<Vec<Promotion>, StoreError> {
        self.pending_of_many(&[application.to_owned()]).await
    }

    /// The promotions not final yet of every application in `applications`, newest
    /// first, with their decisions: two queries whatever their number.
    pub async fn pending_of_many(
        &self,
        applications: &[String],
    ) -> Result<Vec<Promotion>, StoreError> {
        if applications.is_empty() {
            return Ok(Vec::new());
        }
        let list = crate::backend::placeholders(1, applications.len());
        with_pool!(self.backend, read, |pool| {
            let mut query = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {PROMOTION_COLUMNS} FROM promotions WHERE application IN ({list}) \
                 AND state IN ('requested', 'waiting', 'approved', 'deploying') ORDER BY id DESC"
            )));
            for application in applications {
                query = query.bind(application);
            }
            let mut promotions = Vec::new();
            for row in &query.fetch_all(pool).await? {
                promotions.push(promotion_from_row!(row)?);
            }
            attach_decisions!(pool, &mut promotions);
            Ok(promotions)
        })
    }

    /// Ids of waiting promotions, oldest first: the ones time (soak, freeze) can open.
    pub async fn waiting(&self, limit: i64) -> Result<Vec<(i64, String, String)>, StoreError> {
        with_pool!(self.backend, read, |pool| {
            let rows = sqlx::query(
                "SELECT id, application, environment FROM promotions WHERE state = 'waiting' ORDER BY id LIMIT $1",
            )
            .bind(limit)
            .fetch_all(pool)
            .await?;
            Ok(rows
                .iter()
                .map(|row| {
                    (
                        row.get("id"),
                        row.get("application"),
                        row.get("environment"),
                    )
                })
                .collect())
        })
    }

    /// Waiting promotions of one digest (to re-evaluate when evidence about it arrives).
    pub async fn waiting_for_digest(
        &self,
        application: &str,
        digest: &str,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        with_pool!(self.backend, read, |pool| {
            let rows = sqlx::query(
                "SELECT id, environment FROM promotions WHERE application = $1 AND digest = $2 AND state = 'waiting' ORDER BY id",
            )
            .bind(application)
            .bind(digest)
            .fetch_all(pool)
            .await?;
            Ok(rows
                .iter()
                .map(|row| (row.get("id"), row.get("environment")))
                .collect())
        })
    }

    /// Deployments counted by (application, environment, reason, state), and
    /// promotions by state: what `/metrics` reports, from the records themselves so
    /// every replica reports the same.
    pub async fn counts(&self) -> Result<RecordCounts, StoreError> {
        with_pool!(self.backend, read, |pool| {
            let deployments = sqlx::query(
                "SELECT application, environment, reason, state, COUNT(*) AS n FROM deployments \
                 GROUP BY application, environment, reason, state",
            )
            .fetch_all(pool)
            .await?
            .iter()
            .map(|row| DeploymentCount {
                application: row.get("application"),
                environment: row.get("environment"),
                reason: row.get("reason"),
                state: row.get("state"),
                count: row.get("n"),
            })
            .collect();
            let promotions =
                sqlx::query("SELECT state, COUNT(*) AS n FROM promotions GROUP BY state")
                    .fetch_all(pool)
                    .await?
                    .iter()
                    .map(|row| (row.get("state"), row.get("n")))
                    .collect();
            Ok(RecordCounts {
                deployments,
                promotions,
            })
        })
    }
}
