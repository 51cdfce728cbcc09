//! Promotions: requesting one (carried as far as its gate lets it go at once),
//! approving and rejecting, cancelling, re-evaluating waiting ones as evidence arrives
//! and time passes, and auto-promotion into the next `auto` stage after a deployment.

use domain::Digest;
use domain::pipeline::GrantScope;
use store::{
    ConfigRevision, Decided, Decider, DeploymentOrder, Hold, Promotion, PromotionRequest,
    StoreOutcome,
};

use crate::{Actor, Engine, EngineError, Permission, error};

/// A promotion as requested through the API or CLI.
#[derive(Debug, Clone)]
pub struct PromoteRequest<'a> {
    pub application: &'a str,
    pub environment: &'a str,
    pub digest: &'a Digest,
    /// A release bundle's key/values (a JSON object), promoted with the digest.
    pub config: Option<&'a serde_json::Value>,
    pub override_reason: Option<&'a str>,
    pub idempotency_key: Option<&'a str>,
    /// Deploy again even when the environment runs (or is deploying) the digest.
    pub redeploy: bool,
}

/// What a promotion request led to.
#[derive(Debug, Clone)]
pub struct Requested {
    /// The promotion as it stands now.
    pub promotion: Promotion,
    /// Whether this request created it.
    pub created: bool,
}

/// A person's decision on a promotion.
#[derive(Debug, Clone, Copy)]
enum Verdict<'a> {
    /// With an optional comment.
    Approve(Option<&'a str>),
    /// With the reason, which ends the promotion.
    Reject(&'a str),
}

pub(crate) enum AutoOutcome {
    Promoted(Box<Promotion>),
    Held(Hold),
    /// The digest is quarantined: nothing was requested.
    Quarantined,
}

/// What makes two promotion requests the same request, for idempotency keys.
fn request_hash(request: &PromoteRequest<'_>, config: Option<&ConfigRevision>) -> String {
    let text = format!(
        "{}\n{}\n{}\n{}\n{}{}",
        request.application,
        request.environment,
        request.digest,
        config.map(|c| c.revision.as_str()).unwrap_or(""),
        request.override_reason.unwrap_or(""),
        if request.redeploy { "\nredeploy" } else { "" }
    );
    Digest::sha256_of(text.as_bytes()).hex().to_owned()
}

impl Engine {
    /// Requests a promotion and carries it as far as it goes now: waiting on its gate,
    /// or deployed (or failed) when the gate is open. A promotion that already answers
    /// the request (the same idempotency key, an identical open request, or the digest
    /// the environment runs or is deploying, unless `redeploy`) is returned instead of
    /// a new one (`created` false).
    pub async fn promote(
        &self,
        actor: &Actor,
        request: &PromoteRequest<'_>,
    ) -> Result<Requested, EngineError> {
        actor.require(Permission::Promote {
            application: request.application,
            environment: request.environment,
        })?;
        if request.override_reason.is_some() {
            actor.require(Permission::Override)?;
        }
        crate::check_idempotency_key(request.idempotency_key)?;
        if let Some(reason) = request.override_reason
            && reason.trim().is_empty()
        {
            return Err(EngineError::Invalid(
                "a break-glass override needs a reason".to_owned(),
            ));
        }
        let config = match request.config {
            None => None,
            Some(value @ serde_json::Value::Object(_)) => Some(ConfigRevision::new(value)),
            Some(_) => {
                return Err(EngineError::Invalid(
                    "config must be an object of keys and values".to_owned(),
                ));
            }
        };
        let request_hash = request_hash(request, config.as_ref());
        let decided = self
            .with_plan(request.application, request.environment, |plan| {
                let config = config.clone();
                let request_hash = request_hash.clone();
                async move {
                    let outcome = self
                        .store
                        .promotions()
                        .request(
                            &plan,
                            &PromotionRequest {
                                digest: request.digest,
                                config: config.as_ref(),
                                requested_by: &actor.name,
                                auto: false,
                                override_reason: request.override_reason,
                                idempotency_key: request.idempotency_key,
                                request_hash: &request_hash,
                                redeploy: request.redeploy,
                            },
                        )
                        .await?;
                    if outcome == StoreOutcome::NotAnArtifact {
                        return Err(EngineError::NotAnArtifact(format!(
                            "{} is not in repository {}: push it first",
                            request.digest, plan.repository
                        )));
                    }
                    Ok(outcome)
                }
            })
            .await?;
        let created = decided.created;
        Ok(Requested {
            promotion: self.carry_out(decided).await?,
            created,
        })
    }

    /// Approves a promotion as `actor`, with an optional comment; deploys it when that
    /// opens its gate.
    pub async fn approve(
        &self,
        actor: &Actor,
        id: i64,
        comment: Option<&str>,
    ) -> Result<Promotion, EngineError> {
        self.decide(
            actor,
            id,
            comment.map_or(Verdict::Approve(None), |c| Verdict::Approve(Some(c))),
        )
        .await
    }

    /// Rejects a promotion as `actor`, ending it with `reason` (which it needs).
    pub async fn reject(
        &self,
        actor: &Actor,
        id: i64,
        reason: &str,
    ) -> Result<Promotion, EngineError> {
        if reason.trim().is_empty() {
            return Err(EngineError::Invalid(
                "a rejection needs a reason".to_owned(),
            ));
        }
        self.decide(actor, id, Verdict::Reject(reason)).await
    }

    async fn decide(
        &self,
        actor: &Actor,
        id: i64,
        verdict: Verdict<'_>,
    ) -> Result<Promotion, EngineError> {
        let promotion = self.promotion(id).await?;
        let roles = actor.roles_for(
            &promotion.application,
            GrantScope::Environment(&promotion.environment),
        );
        let decider = Decider {
            name: &actor.name,
            roles: &roles,
            ci: actor.ci,
            admin: actor.admin,
        };
        let decider = &decider;
        let decided = self
            .with_plan(
                &promotion.application,
                &promotion.environment,
                |plan| async move {
                    let promotions = self.store.promotions();
                    Ok(match verdict {
                        Verdict::Approve(comment) => {
                            promotions.approve(&plan, id, decider, comment).await?
                        }
                        Verdict::Reject(reason) => {
                            promotions.reject(&plan, id, decider, reason).await?
                        }
                    })
                },
            )
            .await?;
        self.carry_out(decided).await
    }

    /// Withdraws a pending promotion: its requester or an admin.
    pub async fn cancel(
        &self,
        actor: &Actor,
        id: i64,
        reason: Option<&str>,
    ) -> Result<Promotion, EngineError> {
        let promotion = self.promotion(id).await?;
        actor.require(Permission::Cancel {
            id,
            requester: &promotion.requested_by,
        })?;
        error::from_outcome(
            self.store
                .promotions()
                .cancel(id, &actor.name, reason, self.clock.now_millis())
                .await?,
        )
    }

    /// One promotion.
    pub async fn promotion(&self, id: i64) -> Result<Promotion, EngineError> {
        self.store
            .promotions()
            .get(id)
            .await?
            .ok_or_else(|| EngineError::NotFound(format!("promotion {id}")))
    }

    /// Re-evaluates every waiting promotion, oldest first (soak time passing, a
    /// freeze window ending): called periodically. Returns how many deployed.
    pub async fn tick(&self) -> Result<usize, EngineError> {
        let waiting = self.store.promotions().waiting(500).await?;
        let mut started = 0;
        for (id, application, environment) in waiting {
            match self.reevaluate(&application, &environment, id).await {
                Ok(true) => started += 1,
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(promotion = id, %error, "re-evaluating a waiting promotion failed")
                }
            }
        }
        Ok(started)
    }

    /// Re-evaluates one waiting promotion; true if it started a deployment.
    pub(crate) async fn reevaluate(
        &self,
        application: &str,
        environment: &str,
        id: i64,
    ) -> Result<bool, EngineError> {
        let outcome = self
            .with_plan(application, environment, |plan| async move {
                Ok(match self.store.promotions().reevaluate(&plan, id).await? {
                    // Decided elsewhere meanwhile: nothing to do.
                    StoreOutcome::WrongState(_) | StoreOutcome::NotFound => {
                        StoreOutcome::Done(None)
                    }
                    StoreOutcome::Done(decided) => StoreOutcome::Done(Some(decided)),
                    other => error::map_outcome(other)?,
                })
            })
            .await?;
        match outcome {
            Some(decided) => {
                let started = decided.start.is_some();
                self.carry_out(decided).await?;
                Ok(started)
            }
            None => Ok(false),
        }
    }

    /// Runs the deployment a decision started, if any, and returns the promotion as it
    /// stands afterwards.
    pub(crate) async fn carry_out(&self, decided: Decided) -> Result<Promotion, EngineError> {
        let id = decided.promotion.id;
        match decided.start {
            None => Ok(decided.promotion),
            Some(order) => {
                self.start_and_wait(order.deployment_id).await;
                self.promotion(id).await
            }
        }
    }

    /// After a successful deployment, promotes the digest into the next stage if that
    /// stage is `auto`.
    pub(crate) async fn auto_next(&self, order: &DeploymentOrder) -> Result<(), EngineError> {
        let loaded = self.load(&order.application).await?;
        let stages = loaded.pipeline.pipeline().stages();
        let Some(index) = stages
            .iter()
            .position(|stage| stage.environment.as_str() == order.environment)
        else {
            return Ok(());
        };
        let Some(next) = stages.get(index + 1).filter(|stage| stage.auto) else {
            return Ok(());
        };
        // Done already (this follow-up ran before a crash), or someone promoted it.
        let finished_at = self
            .store
            .deployments()
            .deployment(order.deployment_id)
            .await?
            .and_then(|deployment| deployment.finished_at)
            .unwrap_or(0);
        if self
            .store
            .jobs()
            .promoted_since(
                &order.application,
                next.environment.as_str(),
                &order.digest,
                finished_at,
            )
            .await?
        {
            return Ok(());
        }
        let digest = Digest::parse(&order.digest)
            .map_err(|e| EngineError::Corrupt(format!("deployment digest: {e}")))?;
        let environment = next.environment.to_string();
        // Boxed: auto-promotion runs deployments, which may auto-promote again.
        Box::pin(self.auto_promote(
            &order.application,
            &environment,
            &digest,
            &order.requested_by,
        ))
        .await?;
        Ok(())
    }

    pub(crate) async fn auto_promote(
        &self,
        application: &str,
        environment: &str,
        digest: &Digest,
        requested_by: &str,
    ) -> Result<AutoOutcome, EngineError> {
        let request_hash = format!("auto:{application}:{environment}:{digest}");
        let decided = self
            .with_plan(application, environment, |plan| {
                let request_hash = request_hash.clone();
                async move {
                    Ok(
                        match self
                            .store
                            .promotions()
                            .request(
                                &plan,
                                &PromotionRequest {
                                    digest,
                                    config: None,
                                    requested_by,
                                    auto: true,
                                    override_reason: None,
                                    idempotency_key: None,
                                    request_hash: &request_hash,
                                    redeploy: false,
                                },
                            )
                            .await?
                        {
                            StoreOutcome::Held(hold) => StoreOutcome::Done(Err(Ok(hold))),
                            StoreOutcome::Quarantined(quarantine) => {
                                StoreOutcome::Done(Err(Err(quarantine)))
                            }
                            StoreOutcome::Done(decided) => StoreOutcome::Done(Ok(decided)),
                            other => error::map_outcome(other)?,
                        },
                    )
                }
            })
            .await?;
        match decided {
            Ok(decided) => Ok(AutoOutcome::Promoted(Box::new(
                Box::pin(self.carry_out(decided)).await?,
            ))),
            Err(Ok(hold)) => {
                tracing::info!(application, environment, %digest, hold = %hold.reason, "auto-promotion skipped: the environment is held");
                Ok(AutoOutcome::Held(hold))
            }
            Err(Err(quarantine)) => {
                tracing::info!(application, environment, %digest, reason = %quarantine.reason, "auto-promotion skipped: the digest is quarantined");
                Ok(AutoOutcome::Quarantined)
            }
        }
    }
}
