//! The promotion API's calls: builds and checks from CI, promotions and their
//! decisions, rollbacks and holds, where applications stand, DORA metrics, users and
//! tokens. One method per route; each answers the server's JSON as the types of
//! [`crate::promotion_types`].

use serde::Serialize;

use crate::promotion_types::{
    AppList, AppStatus, ArtifactView, BuildRequest, CheckRequest, CheckView, CommentRequest,
    CustodyView, DeploymentDetail, DeploymentList, DeploymentLog, DeploymentView, DoraResponse,
    HoldRequest, HoldView, NotifyResponse, OidcExchangeRequest, OidcExchangeResponse,
    PasswordRequest, PromoteRequest, Promoted, PromotionFilter, PromotionList, PromotionView,
    QuarantineList, QuarantineRequest, QuarantineResponse, QuarantineView, RejectRequest, Rollback,
    RollbackRequest, TokenList, TokenRequest, TokenResponse, TokenView, UserList, UserRequest,
    UserView,
};
use crate::{Client, ClientError};

impl Client {
    /// Records a build's provenance (`POST /api/v1/builds`); where the application's
    /// first stage is `auto`, the server promotes the digest there at once.
    pub fn notify_build(&self, build: &BuildRequest) -> Result<NotifyResponse, ClientError> {
        let url = self.endpoint(&["builds"])?;
        let request = self.authorized(self.agent.post(url.as_str()));
        self.answer(&url, request.send_json(build))
    }

    /// Reports a check on a digest (`POST /api/v1/checks`); promotions of that digest
    /// waiting on evidence are evaluated again.
    pub fn report_check(&self, check: &CheckRequest) -> Result<CheckView, ClientError> {
        let url = self.endpoint(&["checks"])?;
        let request = self.authorized(self.agent.post(url.as_str()));
        self.answer(&url, request.send_json(check))
    }

    /// One page of applications with where each environment stands, names after
    /// `after`, at most `limit` (the server's default when `None`).
    pub fn list_apps(
        &self,
        after: Option<&str>,
        limit: Option<u32>,
    ) -> Result<AppList, ClientError> {
        let url = self.endpoint(&["apps"])?;
        let mut request = self.authorized(self.agent.get(url.as_str()));
        if let Some(after) = after {
            request = request.query("after", after);
        }
        if let Some(limit) = limit {
            request = request.query("limit", limit.to_string());
        }
        self.answer(&url, request.call())
    }

    /// One application and each of its environments, in pipeline order.
    pub fn app_status(&self, application: &str) -> Result<AppStatus, ClientError> {
        let url = self.endpoint(&["apps", application])?;
        let request = self.authorized(self.agent.get(url.as_str()));
        self.answer(&url, request.call())
    }

    /// Everything known about one artifact: provenance, checks, deployments.
    pub fn artifact(&self, application: &str, digest: &str) -> Result<ArtifactView, ClientError> {
        let url = self.endpoint(&["apps", application, "artifacts", digest])?;
        let request = self.authorized(self.agent.get(url.as_str()));
        self.answer(&url, request.call())
    }

    /// An artifact's chain of custody in every application that knows it.
    pub fn custody(&self, digest: &str) -> Result<CustodyView, ClientError> {
        let url = self.endpoint(&["artifacts", digest, "custody"])?;
        let request = self.authorized(self.agent.get(url.as_str()));
        self.answer(&url, request.call())
    }

    /// One page of an application's deployments, newest first, optionally of one
    /// environment, with ids below `before`.
    pub fn history(
        &self,
        application: &str,
        environment: Option<&str>,
        before: Option<i64>,
        limit: Option<u32>,
    ) -> Result<DeploymentList, ClientError> {
        let url = self.endpoint(&["apps", application, "history"])?;
        let mut request = self.authorized(self.agent.get(url.as_str()));
        if let Some(environment) = environment {
            request = request.query("environment", environment);
        }
        if let Some(before) = before {
            request = request.query("before", before.to_string());
        }
        if let Some(limit) = limit {
            request = request.query("limit", limit.to_string());
        }
        self.answer(&url, request.call())
    }

    /// One deployment with its durable job (`GET /api/v1/deployments/{id}`).
    pub fn deployment(&self, id: i64) -> Result<DeploymentDetail, ClientError> {
        let url = self.endpoint(&["deployments", &id.to_string()])?;
        let request = self.authorized(self.agent.get(url.as_str()));
        self.answer(&url, request.call())
    }

    /// A deployment's log lines after sequence number `after` (`GET
    /// /api/v1/deployments/{id}/log`).
    pub fn deployment_log(
        &self,
        id: i64,
        after: Option<i64>,
    ) -> Result<DeploymentLog, ClientError> {
        let url = self.endpoint(&["deployments", &id.to_string(), "log"])?;
        let mut request = self.authorized(self.agent.get(url.as_str()));
        if let Some(after) = after {
            request = request.query("after", after.to_string());
        }
        self.answer(&url, request.call())
    }

    /// Redeploys the digest that ran before the current one (or `to`) through the same
    /// target, without new approvals.
    pub fn rollback(
        &self,
        application: &str,
        environment: &str,
        rollback: &Rollback<'_>,
    ) -> Result<DeploymentView, ClientError> {
        let url = self.endpoint(&["apps", application, "environments", environment, "rollback"])?;
        let mut request = self.authorized(self.agent.post(url.as_str()));
        if let Some(key) = rollback.idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        let body = RollbackRequest {
            to: rollback.to.map(str::to_owned),
            from: rollback.from.map(str::to_owned),
            reason: rollback.reason.map(str::to_owned),
        };
        self.answer(&url, request.send_json(&body))
    }

    /// Holds an environment: auto-promotion stays out until [`Client::release_hold`].
    pub fn hold(
        &self,
        application: &str,
        environment: &str,
        reason: &str,
    ) -> Result<HoldView, ClientError> {
        let url = self.endpoint(&["apps", application, "environments", environment, "hold"])?;
        let request = self.authorized(self.agent.put(url.as_str()));
        let body = HoldRequest {
            reason: reason.to_owned(),
        };
        self.answer(&url, request.send_json(&body))
    }

    /// Quarantines `digest` of `application` (admins, or its platform engineers).
    pub fn quarantine(
        &self,
        application: &str,
        digest: &str,
        reason: &str,
    ) -> Result<QuarantineResponse, ClientError> {
        let url = self.endpoint(&["apps", application, "quarantines", digest])?;
        let request = self.authorized(self.agent.put(url.as_str()));
        let body = QuarantineRequest {
            reason: reason.to_owned(),
        };
        self.answer(&url, request.send_json(&body))
    }

    /// Lifts the quarantine of `digest` of `application`.
    pub fn lift_quarantine(
        &self,
        application: &str,
        digest: &str,
        reason: &str,
    ) -> Result<QuarantineView, ClientError> {
        let url = self.endpoint(&["apps", application, "quarantines", digest, "lift"])?;
        let request = self.authorized(self.agent.post(url.as_str()));
        let body = QuarantineRequest {
            reason: reason.to_owned(),
        };
        self.answer(&url, request.send_json(&body))
    }

    /// The application's quarantined digests, newest first.
    pub fn quarantines(&self, application: &str) -> Result<QuarantineList, ClientError> {
        let url = self.endpoint(&["apps", application, "quarantines"])?;
        let request = self.authorized(self.agent.get(url.as_str()));
        self.answer(&url, request.call())
    }

    /// Releases an environment's hold.
    pub fn release_hold(&self, application: &str, environment: &str) -> Result<(), ClientError> {
        let url = self.endpoint(&["apps", application, "environments", environment, "hold"])?;
        let request = self.authorized(self.agent.delete(url.as_str()));
        self.successful(&url, request.call()).map(|_| ())
    }

    /// Requests a promotion; the server carries it as far as it goes now (waiting on
    /// its gate, or deployed). With an `idempotency_key`, repeating the same request
    /// returns the promotion the first one created (`created` is then false).
    pub fn promote(
        &self,
        promotion: &PromoteRequest,
        idempotency_key: Option<&str>,
    ) -> Result<Promoted, ClientError> {
        let url = self.endpoint(&["promotions"])?;
        let mut request = self.authorized(self.agent.post(url.as_str()));
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        let (status, promotion) = self.answer_with_status(&url, request.send_json(promotion))?;
        Ok(Promoted {
            created: status == 201,
            promotion,
        })
    }

    /// One page of promotions, newest first.
    pub fn list_promotions(&self, filter: &PromotionFilter) -> Result<PromotionList, ClientError> {
        let url = self.endpoint(&["promotions"])?;
        let mut request = self.authorized(self.agent.get(url.as_str()));
        for (key, value) in [
            ("application", &filter.application),
            ("environment", &filter.environment),
            ("state", &filter.state),
        ] {
            if let Some(value) = value {
                request = request.query(key, value);
            }
        }
        if let Some(before) = filter.before {
            request = request.query("before", before.to_string());
        }
        if let Some(limit) = filter.limit {
            request = request.query("limit", limit.to_string());
        }
        self.answer(&url, request.call())
    }

    /// One promotion, with its gate's conditions and its decisions.
    pub fn promotion(&self, id: i64) -> Result<PromotionView, ClientError> {
        let url = self.endpoint(&["promotions", &id.to_string()])?;
        let request = self.authorized(self.agent.get(url.as_str()));
        self.answer(&url, request.call())
    }

    /// Approves a promotion; when that opens its gate, it is deployed before the
    /// answer comes.
    pub fn approve(&self, id: i64, comment: Option<&str>) -> Result<PromotionView, ClientError> {
        let comment = comment.map(str::to_owned);
        self.decide(id, "approve", &CommentRequest { comment })
    }

    /// Rejects a promotion, which ends it with `reason`.
    pub fn reject(&self, id: i64, reason: &str) -> Result<PromotionView, ClientError> {
        let reason = reason.to_owned();
        self.decide(id, "reject", &RejectRequest { reason })
    }

    /// Cancels a promotion that is not final yet.
    pub fn cancel(&self, id: i64, comment: Option<&str>) -> Result<PromotionView, ClientError> {
        let comment = comment.map(str::to_owned);
        self.decide(id, "cancel", &CommentRequest { comment })
    }

    fn decide(
        &self,
        id: i64,
        decision: &str,
        body: &impl Serialize,
    ) -> Result<PromotionView, ClientError> {
        let url = self.endpoint(&["promotions", &id.to_string(), decision])?;
        let request = self.authorized(self.agent.post(url.as_str()));
        self.answer(&url, request.send_json(body))
    }

    /// DORA metrics over the last `days` (the server's default when `None`), for one
    /// application or all.
    pub fn dora(
        &self,
        application: Option<&str>,
        days: Option<u32>,
    ) -> Result<DoraResponse, ClientError> {
        let url = self.endpoint(&["metrics", "dora"])?;
        let mut request = self.authorized(self.agent.get(url.as_str()));
        if let Some(application) = application {
            request = request.query("application", application);
        }
        if let Some(days) = days {
            request = request.query("days", days.to_string());
        }
        self.answer(&url, request.call())
    }

    /// Creates a user (admins).
    pub fn create_user(&self, user: &UserRequest) -> Result<UserView, ClientError> {
        let url = self.endpoint(&["users"])?;
        let request = self.authorized(self.agent.post(url.as_str()));
        self.answer(&url, request.send_json(user))
    }

    /// Sets the password `name` signs in to the web UI with (admins).
    pub fn set_password(&self, name: &str, password: &str) -> Result<UserView, ClientError> {
        let url = self.endpoint(&["users", name, "password"])?;
        let request = self.authorized(self.agent.put(url.as_str()));
        self.answer(
            &url,
            request.send_json(&PasswordRequest {
                password: password.to_owned(),
            }),
        )
    }

    /// One page of users, names after `after`.
    pub fn list_users(&self, after: Option<&str>) -> Result<UserList, ClientError> {
        let url = self.endpoint(&["users"])?;
        let mut request = self.authorized(self.agent.get(url.as_str()));
        if let Some(after) = after {
            request = request.query("after", after);
        }
        self.answer(&url, request.call())
    }

    /// Creates an API token for `user`; its secret is in this answer only.
    pub fn create_token(
        &self,
        user: &str,
        token: &TokenRequest,
    ) -> Result<TokenResponse, ClientError> {
        let url = self.endpoint(&["users", user, "tokens"])?;
        let request = self.authorized(self.agent.post(url.as_str()));
        self.answer(&url, request.send_json(token))
    }

    /// The tokens of `user`, or the caller's own with `None`; never their secrets.
    pub fn list_tokens(&self, user: Option<&str>) -> Result<TokenList, ClientError> {
        let url = match user {
            Some(user) => self.endpoint(&["users", user, "tokens"])?,
            None => self.endpoint(&["tokens"])?,
        };
        let request = self.authorized(self.agent.get(url.as_str()));
        self.answer(&url, request.call())
    }

    /// Exchanges a CI job's OIDC token for a short-lived Gantry token (no credentials
    /// needed: the job token is the credential).
    pub fn exchange_oidc(&self, job_token: &str) -> Result<OidcExchangeResponse, ClientError> {
        let url = self.endpoint(&["auth", "oidc"])?;
        let request = self.agent.post(url.as_str());
        let body = OidcExchangeRequest {
            token: job_token.to_owned(),
        };
        self.answer(&url, request.send_json(&body))
    }

    /// Revokes a token (the caller's own, or anyone's as an admin).
    pub fn revoke_token(&self, id: &str) -> Result<TokenView, ClientError> {
        let url = self.endpoint(&["tokens", id])?;
        let request = self.authorized(self.agent.delete(url.as_str()));
        self.answer(&url, request.call())
    }
}
