//! The wire shapes of the promotion API: builds, checks, promotions, approvals,
//! deployments, environments, users and DORA metrics. Times are RFC 3339 strings in
//! UTC; digests are `algorithm:hex`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Milliseconds since the Unix epoch as RFC 3339.
pub(crate) fn rfc3339(millis: i64) -> String {
    jiff::Timestamp::from_millisecond(millis)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// `POST /api/v1/builds`: provenance of an artifact, from CI.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BuildRequest {
    pub(crate) application: String,
    pub(crate) digest: String,
    /// The commit SHA; read from `org.opencontainers.image.revision` or `git.commit`
    /// when absent.
    pub(crate) commit: Option<String>,
    pub(crate) branch: Option<String>,
    /// The CI run id; read from `ci.run` when absent.
    pub(crate) run_id: Option<String>,
    pub(crate) run_url: Option<String>,
    /// The source repository URL; read from `org.opencontainers.image.source` when absent.
    pub(crate) source: Option<String>,
    /// Who started the CI run: may not approve the promotion of this build.
    pub(crate) triggered_by: Option<String>,
    /// Who wrote the commit: may not approve the promotion of this build.
    pub(crate) author: Option<String>,
    /// When the change was committed (RFC 3339), for lead time.
    pub(crate) committed_at: Option<String>,
    /// The tag the build was pushed under (`sha-abc1234`, `101`); by default the newest
    /// tag pointing at the digest in the application's repository. Deployments hand it
    /// to targets that want a tag (a gitops `tag` key, a registry copy's destination).
    pub(crate) tag: Option<String>,
}

/// The recorded provenance of one artifact.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct BuildView {
    pub(crate) application: String,
    pub(crate) digest: String,
    pub(crate) commit: Option<String>,
    pub(crate) branch: Option<String>,
    pub(crate) run_id: Option<String>,
    pub(crate) run_url: Option<String>,
    pub(crate) source: Option<String>,
    pub(crate) triggered_by: Option<String>,
    pub(crate) author: Option<String>,
    pub(crate) committed_at: Option<String>,
    /// The tag the build was pushed under, when known.
    pub(crate) tag: Option<String>,
    /// The identity that notified.
    pub(crate) builder: String,
    pub(crate) notified_at: String,
}

/// What a build notification did.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct NotifyResponse {
    pub(crate) build: BuildView,
    /// The promotion into the first stage, when that stage is `auto`.
    pub(crate) promotion: Option<PromotionView>,
    /// Set when the first stage is `auto` but held.
    pub(crate) held: Option<HoldView>,
}

/// `POST /api/v1/checks`: a piece of evidence about one digest.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CheckRequest {
    pub(crate) application: String,
    pub(crate) digest: String,
    pub(crate) name: String,
    /// `passed` or `failed`.
    pub(crate) status: String,
    pub(crate) url: Option<String>,
    /// A Trivy JSON or SARIF 2.1.0 report, as text: its findings are counted by
    /// severity for gate thresholds.
    pub(crate) report: Option<String>,
}

/// A stored check report.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct CheckView {
    pub(crate) id: i64,
    pub(crate) digest: String,
    pub(crate) name: String,
    /// `passed` or `failed`.
    pub(crate) status: String,
    pub(crate) url: Option<String>,
    /// `trivy` or `sarif` when a report was parsed.
    pub(crate) format: Option<String>,
    /// Findings by severity (`critical`, `high`, `medium`, `low`, `unknown`).
    pub(crate) findings: Option<BTreeMap<String, u64>>,
    pub(crate) reported_by: String,
    pub(crate) reported_at: String,
}

/// `POST /api/v1/promotions`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PromoteRequest {
    pub(crate) application: String,
    pub(crate) environment: String,
    pub(crate) digest: String,
    /// A release bundle: key/values deployed atomically with the digest. Approvals
    /// are bound to it.
    #[schema(value_type = Object)]
    pub(crate) config: Option<serde_json::Value>,
    /// Admin only: deploy even though the gate is shut. Loudly audited.
    pub(crate) override_reason: Option<String>,
    /// Deploy again even when the environment runs (or is deploying) this digest with
    /// this release bundle; without it such a request answers (200) with the
    /// promotion that put it there and deploys nothing. Audited.
    #[serde(default)]
    pub(crate) redeploy: bool,
}

/// One condition of a gate.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct ConditionView {
    /// `order`, `soak`, `freeze`, `check` or `approval`.
    pub(crate) kind: String,
    /// The check name or the role.
    pub(crate) subject: Option<String>,
    pub(crate) met: bool,
    /// Why it is met or not, in words.
    pub(crate) reason: String,
}

/// An approval or rejection.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct DecisionView {
    pub(crate) approver: String,
    /// `approve` or `reject`.
    pub(crate) decision: String,
    pub(crate) comment: Option<String>,
    pub(crate) at: String,
}

/// A promotion: a request to move one digest (and config) into one environment.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct PromotionView {
    pub(crate) id: i64,
    pub(crate) application: String,
    pub(crate) environment: String,
    pub(crate) digest: String,
    #[schema(value_type = Object, nullable = true)]
    pub(crate) config: Option<serde_json::Value>,
    pub(crate) config_revision: Option<String>,
    /// `waiting`, `approved`, `deploying`, `deployed`, `failed`, `rejected`,
    /// `cancelled` or `superseded`.
    pub(crate) state: String,
    pub(crate) requested_by: String,
    pub(crate) auto: bool,
    pub(crate) override_reason: Option<String>,
    /// Why it ended, when it ended other than deployed.
    pub(crate) reason: Option<String>,
    /// Every condition of the gate as last evaluated, met or not.
    pub(crate) conditions: Vec<ConditionView>,
    pub(crate) version: i64,
    pub(crate) deployment_id: Option<i64>,
    pub(crate) decisions: Vec<DecisionView>,
    pub(crate) created_at: String,
    pub(crate) updated_at: String,
}

/// A page of promotions, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct PromotionList {
    pub(crate) promotions: Vec<PromotionView>,
    /// Pass as `before` for the next page; null on the last.
    pub(crate) next: Option<i64>,
}

/// Query of `GET /api/v1/promotions`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct PromotionQuery {
    pub(crate) application: Option<String>,
    pub(crate) environment: Option<String>,
    pub(crate) state: Option<String>,
    /// Only promotions with a smaller id (the `next` of the previous page).
    pub(crate) before: Option<i64>,
    /// At most this many (default 50, at most 500).
    pub(crate) limit: Option<i64>,
}

/// `POST /api/v1/promotions/{id}/approve` and `/cancel`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CommentRequest {
    pub(crate) comment: Option<String>,
}

/// `POST /api/v1/promotions/{id}/reject`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RejectRequest {
    /// Required: the promotion ends with it.
    pub(crate) reason: String,
}

/// `POST /api/v1/apps/{app}/environments/{env}/rollback`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RollbackRequest {
    /// The digest to return to; by default the one that ran before the current one.
    pub(crate) to: Option<String>,
    /// The digest the caller saw the environment run (what it rolls back from): the
    /// rollback is refused with 409 when the environment runs another by now, so a
    /// repeated or concurrent rollback never rolls back a rollback. `gantry rollback`
    /// always sends it.
    pub(crate) from: Option<String>,
    pub(crate) reason: Option<String>,
}

/// `PUT /api/v1/apps/{app}/environments/{env}/hold`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct HoldRequest {
    pub(crate) reason: String,
}

/// A hold on an environment: auto-promotion stays out until it is released.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct HoldView {
    pub(crate) reason: String,
    pub(crate) by: String,
    pub(crate) at: String,
}

/// What an environment was last reported running.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct ObservedView {
    pub(crate) digest: String,
    pub(crate) at: String,
    pub(crate) by: String,
}

/// `POST /api/v1/apps/{app}/environments/{env}/observed`: what an agent read back.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ObservedRequest {
    /// The digest the environment runs.
    pub(crate) digest: String,
}

/// The answer to a report: whether it agrees with what Gantry deployed.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct ObservationView {
    pub(crate) application: String,
    pub(crate) environment: String,
    /// What Gantry last deployed there; null before the first deployment.
    pub(crate) expected: Option<String>,
    pub(crate) observed: String,
    pub(crate) drift: bool,
    pub(crate) drift_since: Option<String>,
}

/// One deployment.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub(crate) struct DeploymentView {
    pub(crate) id: i64,
    pub(crate) application: String,
    pub(crate) environment: String,
    pub(crate) digest: String,
    #[schema(value_type = Object, nullable = true)]
    pub(crate) config: Option<serde_json::Value>,
    pub(crate) config_revision: Option<String>,
    pub(crate) promotion_id: Option<i64>,
    /// `promotion` or `rollback`.
    pub(crate) reason: String,
    /// `deploying`, `deployed` or `failed`.
    pub(crate) state: String,
    pub(crate) target: String,
    pub(crate) message: Option<String>,
    pub(crate) requested_by: String,
    pub(crate) started_at: String,
    pub(crate) finished_at: Option<String>,
    /// The commit of the build, when notified.
    pub(crate) commit: Option<String>,
    /// The tag the build was pushed under, when known.
    pub(crate) tag: Option<String>,
}

/// A page of deployments, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct DeploymentList {
    pub(crate) deployments: Vec<DeploymentView>,
    pub(crate) next: Option<i64>,
}

/// Query of `GET /api/v1/apps/{app}/history`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct HistoryQuery {
    pub(crate) environment: Option<String>,
    pub(crate) before: Option<i64>,
    pub(crate) limit: Option<i64>,
}

/// One environment of an application, in pipeline order.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct EnvironmentView {
    pub(crate) name: String,
    pub(crate) auto: bool,
    pub(crate) target: String,
    /// What runs there now: the last successful deployment.
    pub(crate) current: Option<DeploymentView>,
    /// The deployment under way, if any (a promotion's or a rollback's): what the
    /// environment should run once it finishes.
    pub(crate) deploying: Option<DeploymentView>,
    pub(crate) hold: Option<HoldView>,
    /// What an agent last reported it running.
    pub(crate) observed: Option<ObservedView>,
    /// Since when that differs from what Gantry deployed; null: no drift (or no report).
    pub(crate) drift_since: Option<String>,
    /// Promotions into it that are not final yet.
    pub(crate) pending: Vec<PromotionView>,
}

/// An application and where each of its environments stands.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct AppStatus {
    pub(crate) name: String,
    #[serde(rename = "type")]
    pub(crate) app_type: String,
    pub(crate) repository: String,
    pub(crate) pipeline: String,
    pub(crate) environments: Vec<EnvironmentView>,
}

/// A page of applications, by name.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct AppList {
    pub(crate) applications: Vec<AppStatus>,
    /// Pass as `after` for the next page; null on the last.
    pub(crate) next: Option<String>,
}

/// Query of `GET /api/v1/apps`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AppQuery {
    pub(crate) after: Option<String>,
    pub(crate) limit: Option<i64>,
}

/// Everything known about one artifact.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct ArtifactView {
    pub(crate) application: String,
    pub(crate) digest: String,
    pub(crate) build: Option<BuildView>,
    /// Every check report, oldest first.
    pub(crate) checks: Vec<CheckView>,
    /// Every deployment of it, newest first.
    pub(crate) deployments: Vec<DeploymentView>,
}

/// Query of `GET /api/v1/metrics/dora`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct DoraQuery {
    /// One application; all by default.
    pub(crate) application: Option<String>,
    /// The window, in days back from now (default 30, at most 366).
    pub(crate) days: Option<u32>,
}

/// The four DORA metrics over one window. Durations are in seconds.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct DoraView {
    /// Successful production deployments from promotions.
    pub(crate) deployments: u64,
    pub(crate) deployments_per_day: f64,
    /// Commit → production, median and 90th percentile.
    pub(crate) lead_time_median_seconds: Option<i64>,
    pub(crate) lead_time_p90_seconds: Option<i64>,
    /// Failed or rolled-back deployments over all deployments.
    pub(crate) change_failure_rate: Option<f64>,
    pub(crate) time_to_restore_median_seconds: Option<i64>,
    pub(crate) failures: u64,
    pub(crate) rollbacks: u64,
}

/// DORA metrics overall and per application.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct DoraResponse {
    pub(crate) since: String,
    pub(crate) until: String,
    pub(crate) overall: DoraView,
    pub(crate) applications: BTreeMap<String, DoraView>,
}

/// `POST /api/v1/users`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UserRequest {
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) admin: bool,
    /// A CI identity: may push, notify builds and report checks; never approves.
    #[serde(default)]
    pub(crate) ci: bool,
    /// Roles, each global (`staff`) or for one application (`staff@web-app`): `viewer`,
    /// `developer`, `staff`, `client`, `platform`, `admin`.
    #[serde(default)]
    pub(crate) roles: Vec<String>,
}

/// A user.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct UserView {
    pub(crate) name: String,
    pub(crate) admin: bool,
    pub(crate) ci: bool,
    pub(crate) roles: Vec<String>,
}

/// A page of users, by name.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct UserList {
    pub(crate) users: Vec<UserView>,
    pub(crate) next: Option<String>,
}

/// `POST /api/v1/users/{name}/tokens`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokenRequest {
    pub(crate) description: Option<String>,
    /// Lifetime in days; no expiry when absent.
    pub(crate) expires_in_days: Option<u32>,
}

/// A token as listed: never its secret.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct TokenView {
    pub(crate) id: String,
    pub(crate) user: String,
    pub(crate) description: String,
    pub(crate) created_at: String,
    pub(crate) expires_at: Option<String>,
    pub(crate) revoked_at: Option<String>,
    /// To the minute.
    pub(crate) last_used_at: Option<String>,
    /// Neither revoked nor expired.
    pub(crate) active: bool,
}

/// A user's tokens, oldest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct TokenList {
    pub(crate) tokens: Vec<TokenView>,
}

/// A new token: the secret is shown this once and stored only as a hash.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct TokenResponse {
    pub(crate) id: String,
    pub(crate) user: String,
    pub(crate) token: String,
    pub(crate) expires_at: Option<String>,
}

/// Query of `GET /api/v1/admission`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AdmissionQuery {
    /// The environment the image would run in.
    pub(crate) env: String,
    /// An image reference: `[host/]repository:tag` or `[host/]repository@digest`.
    pub(crate) image: String,
}

/// Query of `POST /api/v1/admission/review`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ReviewQuery {
    /// The environment the cluster runs.
    pub(crate) env: String,
}

/// An admission decision for one image.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct AdmissionView {
    pub(crate) image: String,
    pub(crate) allowed: bool,
    pub(crate) reason: String,
    /// The digest the image was judged by.
    pub(crate) digest: Option<String>,
}
