//! The JSON of the promotion API — builds, checks, promotions, approvals, deployments,
//! environments, users and DORA metrics — mirrored from the server's
//! `api/promotion_types.rs`. As in [`crate::types`], unknown fields are ignored and
//! each response type serializes back to the same JSON. Times are RFC 3339 strings in
//! UTC; digests are `algorithm:hex`.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// `POST /api/v1/builds`: the provenance of an artifact, from CI. What is left out is
/// read by the server from the image's annotations and labels.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BuildRequest {
    pub application: String,
    pub digest: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Who started the CI run: they may not approve this build's promotions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub triggered_by: Option<String>,
    /// Who wrote the commit: they may not approve this build's promotions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// When the change was committed (RFC 3339), for lead time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub committed_at: Option<String>,
    /// The tag the build was pushed under; by default the server takes the newest tag
    /// pointing at the digest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

/// The recorded provenance of one artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
pub struct NotifyResponse {
    pub build: BuildView,
    /// The promotion into the first stage, when that stage is `auto`.
    pub promotion: Option<PromotionView>,
    /// Set when the first stage is `auto` but held.
    pub held: Option<HoldView>,
}

/// Whether a check passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    Passed,
    Failed,
}

/// `POST /api/v1/checks`: a piece of evidence about one digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckRequest {
    pub application: String,
    pub digest: String,
    pub name: String,
    pub status: CheckStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The text of a Trivy JSON or SARIF 2.1.0 report; the server counts its findings
    /// by severity for gate thresholds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<String>,
}

/// A stored check report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PromoteRequest {
    pub application: String,
    pub environment: String,
    pub digest: String,
    /// A release bundle: key/values deployed atomically with the digest (a JSON
    /// object). Approvals are bound to it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<serde_json::Map<String, serde_json::Value>>,
    /// Admin only: deploy although the gate is shut. Loudly audited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub override_reason: Option<String>,
    /// Deploy again even when the environment runs (or is deploying) the digest.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub redeploy: bool,
}

/// A rollback to request.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rollback<'a> {
    /// The digest to return to; `None`: the one that ran before the current one.
    pub to: Option<&'a str>,
    /// The digest the caller saw the environment run: the server refuses (409) when
    /// it runs another by now.
    pub from: Option<&'a str>,
    pub reason: Option<&'a str>,
    /// Repeating the request with the same key answers with the deployment the first
    /// one started.
    pub idempotency_key: Option<&'a str>,
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

/// One condition of a gate, met or not, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionView {
    pub approver: String,
    /// `approve` or `reject`.
    pub decision: String,
    pub comment: Option<String>,
    pub at: String,
}

/// A promotion: a request to move one digest (and config) into one environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromotionView {
    pub id: i64,
    pub application: String,
    pub environment: String,
    pub digest: String,
    pub config: Option<serde_json::Value>,
    pub config_revision: Option<String>,
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

/// The answer of `POST /api/v1/promotions`.
#[derive(Debug, Clone, PartialEq)]
pub struct Promoted {
    /// False when the server returned an existing promotion (same `Idempotency-Key`).
    pub created: bool,
    pub promotion: PromotionView,
}

/// A page of promotions, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromotionList {
    pub promotions: Vec<PromotionView>,
    /// Pass as `before` for the next page; `None` on the last.
    pub next: Option<i64>,
}

/// Which promotions `GET /api/v1/promotions` lists; `None` leaves a filter out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PromotionFilter {
    pub application: Option<String>,
    pub environment: Option<String>,
    pub state: Option<String>,
    /// Only promotions with a smaller id (the `next` of the previous page).
    pub before: Option<i64>,
    pub limit: Option<u32>,
}

/// A hold on an environment: auto-promotion stays out until it is released.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldView {
    pub reason: String,
    pub by: String,
    pub at: String,
}

/// One deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentView {
    pub id: i64,
    pub application: String,
    pub environment: String,
    pub digest: String,
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

/// One deployment with its durable job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentDetail {
    #[serde(flatten)]
    pub deployment: DeploymentView,
    pub job: Option<JobView>,
}

/// The durable job of a deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobView {
    /// `waiting`, `running` or `finished`.
    pub state: String,
    pub attempts: u32,
    pub run_after: String,
    pub lease_owner: Option<String>,
    pub lease_until: Option<String>,
    pub last_error: Option<String>,
    pub finished_at: Option<String>,
}

/// A page of a deployment's log, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentLog {
    pub lines: Vec<LogLine>,
    /// Pass as `after` for the next page; `None` at the end of the log so far.
    pub next: Option<i64>,
}

/// One line of a deployment's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    pub seq: i64,
    /// RFC 3339.
    pub at: String,
    pub line: String,
}

/// A page of deployments, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentList {
    pub deployments: Vec<DeploymentView>,
    /// Pass as `before` for the next page; `None` on the last.
    pub next: Option<i64>,
}

/// One environment of an application, in pipeline order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvironmentView {
    pub name: String,
    pub auto: bool,
    pub target: String,
    /// What runs there now: the last successful deployment.
    pub current: Option<DeploymentView>,
    /// The deployment under way, if any: what it should run once that finishes.
    #[serde(default)]
    pub deploying: Option<DeploymentView>,
    pub hold: Option<HoldView>,
    /// What an agent last reported it running.
    #[serde(default)]
    pub observed: Option<ObservedView>,
    /// Since when that differs from what Gantry deployed (RFC 3339); `None`: no drift.
    #[serde(default)]
    pub drift_since: Option<String>,
    /// Promotions into it that are not final yet.
    pub pending: Vec<PromotionView>,
}

/// What an agent last reported an environment running.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedView {
    pub digest: String,
    /// RFC 3339.
    pub at: String,
    pub by: String,
}

/// An application and where each of its environments stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppStatus {
    pub name: String,
    /// `container`, `static-site` or `infra`.
    #[serde(rename = "type")]
    pub app_type: String,
    pub repository: String,
    pub pipeline: String,
    pub environments: Vec<EnvironmentView>,
}

/// A page of applications, by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppList {
    pub applications: Vec<AppStatus>,
    /// Pass as `after` for the next page; `None` on the last.
    pub next: Option<String>,
}

/// Everything known about one artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
pub struct DoraResponse {
    pub since: String,
    pub until: String,
    pub overall: DoraView,
    pub applications: BTreeMap<String, DoraView>,
}

/// `POST /api/v1/users`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UserRequest {
    pub name: String,
    pub admin: bool,
    /// A CI identity: may push, notify builds and report checks; never approves.
    pub ci: bool,
    /// Each global (`staff`) or for one application (`staff@web-app`).
    pub roles: Vec<String>,
}

/// A user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserView {
    pub name: String,
    pub admin: bool,
    pub ci: bool,
    pub roles: Vec<String>,
}

/// A page of users, by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserList {
    pub users: Vec<UserView>,
    /// Pass as `after` for the next page; `None` on the last.
    pub next: Option<String>,
}

/// `POST /api/v1/users/{name}/tokens`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TokenRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Lifetime in days; no expiry when `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_in_days: Option<u32>,
}

/// A token as listed: never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenView {
    pub id: String,
    pub user: String,
    pub description: String,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    /// To the minute.
    pub last_used_at: Option<String>,
    /// Neither revoked nor expired.
    pub active: bool,
}

/// A user's tokens, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenList {
    pub tokens: Vec<TokenView>,
}

/// A new token. The secret is shown this once; the server keeps only its hash.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenResponse {
    pub id: String,
    pub user: String,
    pub token: String,
    pub expires_at: Option<String>,
}

/// A Gantry token issued for a CI job's OIDC token; the secret is in this answer only.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OidcExchange {
    pub id: String,
    /// The CI identity it acts as (`oidc/POLICY`).
    pub user: String,
    pub token: String,
    pub expires_at: String,
    pub expires_in: i64,
    /// `role@application[/environment]` grants.
    pub scope: Vec<String>,
    pub policies: Vec<String>,
}

/// Shows everything but the secret.
impl fmt::Debug for OidcExchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OidcExchange")
            .field("id", &self.id)
            .field("user", &self.user)
            .field("token", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .field("scope", &self.scope)
            .field("policies", &self.policies)
            .finish()
    }
}

/// Shows everything but the secret.
impl fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenResponse")
            .field("id", &self.id)
            .field("user", &self.user)
            .field("token", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
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

    #[test]
    fn a_new_tokens_debug_output_hides_the_secret() {
        let token = TokenResponse {
            id: "t1".to_owned(),
            user: "ci-bot".to_owned(),
            token: "gnt_secret".to_owned(),
            expires_at: None,
        };
        assert!(!format!("{token:?}").contains("gnt_secret"));
    }
}
