//! The promotion API: builds, checks, promotions and decisions, deployments (with
//! their jobs, logs and webhook callbacks), environments and their observations,
//! applications, artifacts, admission and DORA metrics.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// `POST /api/v1/builds`: provenance of an artifact, from CI.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct BuildRequest {
    pub application: String,
    pub digest: String,
    /// The commit SHA; read from `org.opencontainers.image.revision` or `git.commit`
    /// when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// The CI run id; read from `ci.run` when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_url: Option<String>,
    /// The source repository URL; read from `org.opencontainers.image.source` when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Who started the CI run: may not approve the promotion of this build.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub triggered_by: Option<String>,
    /// Who wrote the commit: may not approve the promotion of this build.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// When the change was committed (RFC 3339), for lead time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub committed_at: Option<String>,
    /// The tag the build was pushed under (`sha-abc1234`, `101`); by default the newest
    /// tag pointing at the digest in the application's repository. Deployments hand it
    /// to targets that want a tag (a gitops `tag` key, a registry copy's destination).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

/// The recorded provenance of one artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BuildView {
    pub application: String,
    pub digest: String,
    pub commit: Option<String>,
    pub branch: Option<String>,
    pub run_id: Option<String>,
    pub run_url: Option<String>,
    pub source: Option<String>,
    pub triggered_by: Option<String>,
    pub author: Option<String>,
    pub committed_at: Option<String>,
    /// The tag the build was pushed under, when known.
    #[serde(default)]
    pub tag: Option<String>,
    /// The identity that notified.
    pub builder: String,
    pub notified_at: String,
}

/// What a build notification did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NotifyResponse {
    pub build: BuildView,
    /// The promotion into the first stage, when that stage is `auto`.
    pub promotion: Option<PromotionView>,
    /// Set when the first stage is `auto` but held.
    pub held: Option<HoldView>,
}

/// `POST /api/v1/checks`: a piece of evidence about one digest.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CheckRequest {
    pub application: String,
    pub digest: String,
    pub name: String,
    /// `passed` or `failed`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// A Trivy JSON or SARIF 2.1.0 report, as text: its findings are counted by
    /// severity for gate thresholds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<String>,
}

/// A stored check report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CheckView {
    pub id: i64,
    pub digest: String,
    pub name: String,
    /// `passed` or `failed`.
    pub status: String,
    pub url: Option<String>,
    /// `trivy` or `sarif` when a report was parsed.
    pub format: Option<String>,
    /// Findings by severity (`critical`, `high`, `medium`, `low`, `unknown`).
    pub findings: Option<BTreeMap<String, u64>>,
    pub reported_by: String,
    pub reported_at: String,
}

/// `POST /api/v1/promotions`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PromoteRequest {
    pub application: String,
    pub environment: String,
    pub digest: String,
    /// A release bundle: key/values deployed atomically with the digest. Approvals
    /// are bound to it.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<serde_json::Value>,
    /// Admin only: deploy even though the gate is shut. Loudly audited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub override_reason: Option<String>,
    /// Deploy again even when the environment runs (or is deploying) this digest with
    /// this release bundle; without it such a request answers (200) with the
    /// promotion that put it there and deploys nothing. Audited.
    #[serde(default)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub redeploy: bool,
}

/// One condition of a gate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConditionView {
    /// `order`, `soak`, `freeze`, `check` or `approval`.
    pub kind: String,
    /// The check name or the role.
    pub subject: Option<String>,
    pub met: bool,
    /// Why it is met or not, in words.
    pub reason: String,
}

/// An approval or rejection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DecisionView {
    pub approver: String,
    /// `approve` or `reject`.
    pub decision: String,
    pub comment: Option<String>,
    pub at: String,
}

/// Where a promotion stands. The set is closed on the server; a state this client does
/// not know yet (from a newer server) is kept as [`PromotionState::Other`] and printed
/// as it came.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum PromotionState {
    /// The gate is shut: approvals, checks, soak or a freeze window are missing.
    Waiting,
    /// The gate is open; the deployment has not started (e.g. queued behind another).
    Approved,
    Deploying,
    Deployed,
    Failed,
    Rejected,
    Cancelled,
    /// Another promotion into the same environment replaced it.
    Superseded,
    Other(String),
}

impl PromotionState {
    pub fn as_str(&self) -> &str {
        match self {
            PromotionState::Waiting => "waiting",
            PromotionState::Approved => "approved",
            PromotionState::Deploying => "deploying",
            PromotionState::Deployed => "deployed",
            PromotionState::Failed => "failed",
            PromotionState::Rejected => "rejected",
            PromotionState::Cancelled => "cancelled",
            PromotionState::Superseded => "superseded",
            PromotionState::Other(state) => state,
        }
    }
}

impl From<String> for PromotionState {
    fn from(state: String) -> PromotionState {
        match state.as_str() {
            "waiting" => PromotionState::Waiting,
            "approved" => PromotionState::Approved,
            "deploying" => PromotionState::Deploying,
            "deployed" => PromotionState::Deployed,
            "failed" => PromotionState::Failed,
            "rejected" => PromotionState::Rejected,
            "cancelled" => PromotionState::Cancelled,
            "superseded" => PromotionState::Superseded,
            _ => PromotionState::Other(state),
        }
    }
}

impl From<PromotionState> for String {
    fn from(state: PromotionState) -> String {
        match state {
            PromotionState::Other(state) => state,
            known => known.as_str().to_owned(),
        }
    }
}

impl fmt::Display for PromotionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A promotion: a request to move one digest (and config) into one environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PromotionView {
    pub id: i64,
    pub application: String,
    pub environment: String,
    pub digest: String,
    #[cfg_attr(feature = "openapi", schema(value_type = Object, nullable = true))]
    pub config: Option<serde_json::Value>,
    pub config_revision: Option<String>,
    /// `waiting`, `approved`, `deploying`, `deployed`, `failed`, `rejected`,
    /// `cancelled` or `superseded`.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub state: PromotionState,
    pub requested_by: String,
    pub auto: bool,
    pub override_reason: Option<String>,
    /// Why it ended, when it ended other than deployed.
    pub reason: Option<String>,
    /// Every condition of the gate as last evaluated, met or not.
    pub conditions: Vec<ConditionView>,
    pub version: i64,
    pub deployment_id: Option<i64>,
    pub decisions: Vec<DecisionView>,
    pub created_at: String,
    pub updated_at: String,
}

/// A page of promotions, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PromotionList {
    pub promotions: Vec<PromotionView>,
    /// Pass as `before` for the next page; null on the last.
    pub next: Option<i64>,
}

/// `POST /api/v1/promotions/{id}/approve` and `/cancel`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CommentRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// `POST /api/v1/promotions/{id}/reject`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RejectRequest {
    /// Required: the promotion ends with it.
    pub reason: String,
}

/// `POST /api/v1/apps/{app}/environments/{env}/rollback`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    /// The digest to return to; by default the one that ran before the current one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// The digest the caller saw the environment run (what it rolls back from): the
    /// rollback is refused with 409 when the environment runs another by now, so a
    /// repeated or concurrent rollback never rolls back a rollback. `gantry rollback`
    /// always sends it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `PUT /api/v1/apps/{app}/environments/{env}/hold`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct HoldRequest {
    pub reason: String,
}

/// A hold on an environment: auto-promotion stays out until it is released.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HoldView {
    pub reason: String,
    pub by: String,
    pub at: String,
}

/// What an environment was last reported running.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ObservedView {
    pub digest: String,
    pub at: String,
    pub by: String,
}

/// `POST /api/v1/apps/{app}/environments/{env}/observed`: what an agent read back.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ObservedRequest {
    /// The digest the environment runs.
    pub digest: String,
}

/// The answer to a report: whether it agrees with what Gantry deployed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ObservationView {
    pub application: String,
    pub environment: String,
    /// What Gantry last deployed there; null before the first deployment.
    pub expected: Option<String>,
    pub observed: String,
    pub drift: bool,
    pub drift_since: Option<String>,
}

/// One deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeploymentView {
    pub id: i64,
    pub application: String,
    pub environment: String,
    pub digest: String,
    #[cfg_attr(feature = "openapi", schema(value_type = Object, nullable = true))]
    pub config: Option<serde_json::Value>,
    pub config_revision: Option<String>,
    pub promotion_id: Option<i64>,
    /// `promotion` or `rollback`.
    pub reason: String,
    /// `deploying`, `deployed` or `failed`.
    pub state: String,
    pub target: String,
    pub message: Option<String>,
    pub requested_by: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    /// The commit of the build, when notified.
    pub commit: Option<String>,
    /// The tag the build was pushed under, when known.
    #[serde(default)]
    pub tag: Option<String>,
}

/// A page of deployments, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeploymentList {
    pub deployments: Vec<DeploymentView>,
    pub next: Option<i64>,
}

/// One environment of an application, in pipeline order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EnvironmentView {
    pub name: String,
    pub auto: bool,
    pub target: String,
    /// What runs there now: the last successful deployment.
    pub current: Option<DeploymentView>,
    /// The deployment under way, if any (a promotion's or a rollback's): what the
    /// environment should run once it finishes.
    #[serde(default)]
    pub deploying: Option<DeploymentView>,
    pub hold: Option<HoldView>,
    /// What an agent last reported it running.
    #[serde(default)]
    pub observed: Option<ObservedView>,
    /// Since when that differs from what Gantry deployed; null: no drift (or no report).
    #[serde(default)]
    pub drift_since: Option<String>,
    /// Promotions into it that are not final yet.
    pub pending: Vec<PromotionView>,
    /// The quarantine of the digest it runs now, if that digest is quarantined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantined: Option<QuarantineView>,
}

/// `PUT /api/v1/apps/{app}/quarantines/{digest}` and its `…/lift`: why.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct QuarantineRequest {
    pub reason: String,
}

/// A quarantined digest: promotions of it and rollbacks onto it are refused,
/// admission denies it, and the registry refuses to serve it (unless configured to
/// refuse only deployments).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QuarantineView {
    pub application: String,
    pub digest: String,
    pub reason: String,
    pub by: String,
    pub at: String,
}

/// What quarantining did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QuarantineResponse {
    pub quarantine: QuarantineView,
    /// False when the digest already was quarantined (nothing changed).
    pub created: bool,
    /// Open promotions of the digest that were cancelled.
    #[serde(default)]
    pub cancelled_promotions: Vec<i64>,
}

/// An application's quarantines, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QuarantineList {
    pub quarantines: Vec<QuarantineView>,
}

/// An application and where each of its environments stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AppStatus {
    pub name: String,
    #[serde(rename = "type")]
    pub app_type: String,
    pub repository: String,
    pub pipeline: String,
    pub environments: Vec<EnvironmentView>,
}

/// A page of applications, by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AppList {
    pub applications: Vec<AppStatus>,
    /// Pass as `after` for the next page; null on the last.
    pub next: Option<String>,
}

/// Everything known about one artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ArtifactView {
    pub application: String,
    pub digest: String,
    pub build: Option<BuildView>,
    /// Every check report, oldest first.
    pub checks: Vec<CheckView>,
    /// Every deployment of it, newest first.
    pub deployments: Vec<DeploymentView>,
}

/// The four DORA metrics over one window. Durations are in seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DoraView {
    /// Successful production deployments from promotions.
    pub deployments: u64,
    pub deployments_per_day: f64,
    /// Commit → production, median and 90th percentile.
    pub lead_time_median_seconds: Option<i64>,
    pub lead_time_p90_seconds: Option<i64>,
    /// Failed or rolled-back deployments over all deployments.
    pub change_failure_rate: Option<f64>,
    pub time_to_restore_median_seconds: Option<i64>,
    pub failures: u64,
    pub rollbacks: u64,
}

/// DORA metrics overall and per application.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DoraResponse {
    pub since: String,
    pub until: String,
    pub overall: DoraView,
    pub applications: BTreeMap<String, DoraView>,
}

/// An admission decision for one image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdmissionView {
    pub image: String,
    pub allowed: bool,
    pub reason: String,
    /// The digest the image was judged by.
    pub digest: Option<String>,
}

/// A deployment with the job that carries it out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeploymentDetail {
    #[serde(flatten)]
    pub deployment: DeploymentView,
    pub job: Option<JobView>,
}

/// The durable job of a deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobView {
    /// `waiting` (new, retrying, or its replica died), `running` or `finished`.
    pub state: String,
    /// Attempts started so far.
    pub attempts: u32,
    /// Not retried before this time.
    pub run_after: String,
    /// The replica holding it, while one does.
    pub lease_owner: Option<String>,
    pub lease_until: Option<String>,
    /// Why the last attempt failed, when it was retried.
    pub last_error: Option<String>,
    pub finished_at: Option<String>,
}

/// A page of a deployment's log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeploymentLog {
    pub lines: Vec<LogLineView>,
    /// Pass as `after` for the next page; absent at the end of the log so far.
    pub next: Option<i64>,
}

/// One line of a deployment's log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LogLineView {
    pub seq: i64,
    pub at: String,
    pub line: String,
}

/// What a webhook's receiver reports.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CallbackRequest {
    /// `succeeded` or `failed`.
    pub state: String,
    /// Shown in the deployment's record (at most 4 KiB).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// What Gantry made of a report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CallbackResponse {
    pub deployment_id: i64,
    /// The state reported.
    pub state: String,
}

/// What an environment should run and how to pull it: the deployment under way, if
/// any, else the last successful one (which is shown beside it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EnvironmentParams {
    pub application: String,
    pub environment: String,
    /// The repository the environment's stage serves from (its release tier's, for a
    /// `tier: release` stage).
    pub repository: String,
    /// `HOST/REPOSITORY@DIGEST` of what the environment should run, or null when
    /// nothing was deployed or is deploying there yet.
    pub image: Option<String>,
    pub digest: Option<String>,
    /// The tag the build was pushed under, when known.
    pub tag: Option<String>,
    pub commit: Option<String>,
    /// The release bundle deployed with the digest.
    #[cfg_attr(feature = "openapi", schema(value_type = Object, nullable = true))]
    pub config: Option<serde_json::Value>,
    /// The deployment that decided it: under way (`state` `deploying`, from the moment
    /// a promotion or rollback starts) or the last successful one.
    pub deployment: Option<DeploymentView>,
    /// The last successful deployment (the same as `deployment` unless one is under
    /// way).
    pub last_successful: Option<DeploymentView>,
    pub hold: Option<HoldView>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(state: &str, expected: PromotionState) {
        let parsed: PromotionState =
            serde_json::from_value(serde_json::Value::String(state.to_owned()))
                .expect("a state is any string");
        assert_eq!(parsed, expected);
        assert_eq!(
            serde_json::to_value(&parsed).expect("serializes"),
            serde_json::Value::String(state.to_owned()),
            "serializes back to what came"
        );
    }

    #[test]
    fn every_state_reads_and_writes_back_as_it_came_unknown_ones_included() {
        check("waiting", PromotionState::Waiting);
        check("approved", PromotionState::Approved);
        check("deploying", PromotionState::Deploying);
        check("deployed", PromotionState::Deployed);
        check("failed", PromotionState::Failed);
        check("rejected", PromotionState::Rejected);
        check("cancelled", PromotionState::Cancelled);
        check("superseded", PromotionState::Superseded);
        check("paused", PromotionState::Other("paused".to_owned()));
    }

    #[test]
    fn a_promotion_from_a_newer_server_reads_and_writes_back_without_its_new_fields() {
        let sent = serde_json::json!({
            "id": 7, "application": "web-app", "environment": "prod",
            "digest": "sha256:aa", "config": {"replicas": "3"}, "config_revision": "r1",
            "state": "waiting", "requested_by": "dev-dana", "auto": false,
            "override_reason": null, "reason": null,
            "conditions": [{"kind": "check", "subject": "trivy", "met": false,
                            "reason": "1 high finding", "severity": "high"}],
            "version": 2, "deployment_id": null,
            "decisions": [{"approver": "staff-sam", "decision": "approve",
                           "comment": null, "at": "2026-01-01T00:00:00Z"}],
            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:01Z",
            "added_later": true
        });
        let promotion: PromotionView =
            serde_json::from_value(sent.clone()).expect("unknown fields are ignored");
        assert_eq!(promotion.state, PromotionState::Waiting);
        let mut expected = sent;
        let object = expected.as_object_mut().expect("object");
        object.remove("added_later");
        object["conditions"][0]
            .as_object_mut()
            .expect("condition")
            .remove("severity");
        assert_eq!(
            serde_json::to_value(&promotion).expect("serializes"),
            expected
        );
    }
}

/// `GET /api/v1/artifacts/{digest}/custody`: the artifact's chain of custody in each
/// application that knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CustodyView {
    pub digest: String,
    pub applications: Vec<ApplicationCustodyView>,
}

/// Built, scanned and tested, approved, deployed, attested: one application's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApplicationCustodyView {
    pub application: String,
    pub repository: String,
    /// Provenance (absent when no build was reported).
    pub built: Option<BuildView>,
    /// Every check report with its findings, oldest first.
    pub checks: Vec<CheckView>,
    /// Every approval and rejection of its promotions, oldest first.
    pub decisions: Vec<CustodyDecisionView>,
    /// Every deployment of it, newest first, with its target.
    pub deployments: Vec<DeploymentView>,
    /// Every signed attestation of its deployments, newest first, verified now.
    pub attestations: Vec<AttestationView>,
}

/// A decision on a promotion of the artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CustodyDecisionView {
    pub promotion_id: i64,
    pub environment: String,
    pub approver: String,
    /// `approve` or `reject`.
    pub decision: String,
    /// The roles the approver held for the environment when deciding.
    pub roles: Vec<String>,
    pub at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// A signed attestation of a deployment of the artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AttestationView {
    pub deployment_id: i64,
    pub environment: String,
    /// `https://slsa.dev/verification_summary/v1` or Gantry's promotion predicate.
    pub predicate_type: String,
    /// The referrer manifest holding it (pull it by this digest).
    pub manifest_digest: String,
    pub key_id: String,
    pub created_at: String,
    /// Stored beside the image in the registry (and carried by the target).
    pub stored: bool,
    /// Its signature (under a key `GET /api/v1/keys` lists) and subject verify now.
    pub verified: bool,
    /// What was checked, or why it does not verify.
    pub verification: String,
}
