//! The promotion engine: the one path every caller (API, CLI through the API,
//! auto-promotion, the UI later) takes to record builds and checks, promote, approve,
//! reject, roll back and hold.
//!
//! The engine reads the declared application and pipeline (at their stored revisions)
//! into a [`store::StagePlan`] and asks the store to decide: the store evaluates the
//! gate with `domain::gate::evaluate` inside the transaction that records the
//! decision. A decision that starts a deployment returns an order, which the engine
//! hands to the [`Deployer`] of the environment's target, then records the outcome —
//! which may start the next approved promotion queued behind it, or auto-promote the
//! digest into the next stage. A plan that went stale between reading and deciding (a
//! concurrent apply) is read again and the decision retried.
//!
//! Who may do what is decided here too, from the caller's roles for the application
//! ([`Actor`]); the store adds the rules that need the promotion's state (no
//! self-approval, no approval by the build's actors, the gate's roles).

mod actor;
mod admission;
mod command;
mod deployer;
mod environment;
mod error;
mod jobs;
pub mod process;
mod provenance;
mod reconcile;
mod secrets;
mod webhook;

use domain::pipeline::{AppName, EnvName, GrantScope};
use domain::{Digest, ResourceKind};
use resources::{Application, DeclaredPipeline};
use store::{
    Build, CheckReport, ConfigRevision, Decided, Decider, Deployment, DeploymentOrder,
    EvidenceOutcome, FlakyPolicy, Hold, NewCheck, Promotion, PromotionRequest, Provenance,
    StagePlan, Store, StoreOutcome,
};

pub use actor::{Actor, Permission};
pub use admission::{Admission, parse_image};
pub use command::CommandDeployer;
pub use deployer::{
    DeployContext, DeployError, DeployFuture, DeployLog, DeployResult, Deployer, Deployers,
    ObserveContext, ObserveFuture, RecordDeployer,
};
pub use environment::ChildEnvironment;
pub use error::EngineError;
pub use jobs::JobSettings;
pub use reconcile::{RECONCILE_ACTOR, ReconcileReport};
pub use secrets::Secrets;
pub use webhook::{Callbacks, WebhookDeployer, signature as webhook_signature};

/// How many times a decision is retried when a concurrent apply changed the plan.
const STALE_RETRIES: usize = 5;

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

/// A rollback as requested through the API or CLI.
#[derive(Debug, Clone)]
pub struct RollbackRequest<'a> {
    pub application: &'a str,
    pub environment: &'a str,
    /// Where to; `None`: the digest the environment ran before the current one.
    pub to: Option<&'a Digest>,
    /// The digest the caller saw the environment run: refused with a conflict when it
    /// runs another by now.
    pub from: Option<&'a Digest>,
    pub reason: Option<&'a str>,
    pub idempotency_key: Option<&'a str>,
}

/// What a promotion request led to.
#[derive(Debug, Clone)]
pub struct Requested {
    /// The promotion as it stands now.
    pub promotion: Promotion,
    /// Whether this request created it.
    pub created: bool,
}

/// What a rollback request led to.
#[derive(Debug, Clone)]
pub struct RolledBack {
    /// The rollback's deployment as it stands now.
    pub deployment: Deployment,
    /// False when an earlier request with the same idempotency key started it.
    pub created: bool,
}

/// A check report as received.
#[derive(Debug, Clone)]
pub struct CheckRequest<'a> {
    pub application: &'a str,
    pub digest: &'a Digest,
    pub name: &'a str,
    pub passed: bool,
    pub url: Option<&'a str>,
    /// A Trivy JSON or SARIF report to count findings from.
    pub report: Option<&'a [u8]>,
}

/// What a build notification did.
#[derive(Debug, Clone)]
pub struct Notified {
    pub build: Build,
    /// The promotion into the first stage, when it is `auto`.
    pub promotion: Option<Promotion>,
    /// Why an auto stage was not promoted into (held).
    pub held: Option<Hold>,
}

/// The application and pipeline a plan was read from.
struct Loaded {
    application: Application,
    pipeline: DeclaredPipeline,
    application_revision: i64,
    pipeline_revision: i64,
}

/// The promotion engine. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    store: Store,
    blobs: blobs::BlobStore,
    deployers: Deployers,
    flaky: FlakyPolicy,
    /// The host (and port) clients pull from (`gantry.example.com`,
    /// `10.0.0.5:8080`), named in every image reference deployers receive, so the
    /// reference is pullable as it is.
    registry_host: String,
    /// What health checks may reach.
    outbound: std::sync::Arc<outbound::Policy>,
    /// Deploy jobs: settings and this replica's lease owner name.
    jobs: std::sync::Arc<jobs::JobRuntime>,
    /// Webhook receivers' one-time callbacks.
    callbacks: Callbacks,
}

/// The registry host image references name until the server sets the one clients
/// pull from.
pub const DEFAULT_REGISTRY_HOST: &str = "localhost";

/// Who automatic rollbacks are recorded as.
const AUTO_ROLLBACK_ACTOR: &str = "gantry";

impl Engine {
    pub fn new(
        store: Store,
        blobs: blobs::BlobStore,
        deployers: Deployers,
        flaky: FlakyPolicy,
    ) -> Engine {
        Engine {
            blobs,
            deployers,
            flaky,
            registry_host: DEFAULT_REGISTRY_HOST.to_owned(),
            outbound: std::sync::Arc::new(outbound::Policy::default()),
            jobs: std::sync::Arc::new(jobs::JobRuntime::new(JobSettings::default())),
            callbacks: Callbacks::new(store.clone()),
            store,
        }
    }

    /// The same engine with the `webhook` target: payloads signed with secrets from
    /// `secrets`, callback URLs under `base_url` (where receivers reach this server),
    /// receivers reached through the engine's outbound guard.
    pub fn with_webhooks(mut self, secrets: Secrets, base_url: &str) -> Engine {
        let webhooks = WebhookDeployer::new(
            self.callbacks.clone(),
            secrets,
            self.outbound.clone(),
            base_url,
        );
        self.deployers.register(std::sync::Arc::new(webhooks));
        self
    }

    /// Webhook callbacks: their tokens and reports.
    pub fn callbacks(&self) -> &Callbacks {
        &self.callbacks
    }

    /// The same engine, running deploy jobs with `settings`.
    pub fn with_jobs(mut self, settings: JobSettings) -> Engine {
        self.jobs = std::sync::Arc::new(jobs::JobRuntime::new(settings));
        self
    }

    /// The same engine, deploying through `deployers`.
    pub fn with_deployers(mut self, deployers: Deployers) -> Engine {
        self.deployers = deployers;
        self
    }

    /// The deployers this engine has.
    pub fn deployers(&self) -> &Deployers {
        &self.deployers
    }

    /// The same engine, health-checking through `policy`.
    pub fn with_outbound(mut self, policy: std::sync::Arc<outbound::Policy>) -> Engine {
        self.outbound = policy;
        self
    }

    /// The same engine, naming `host` in the image references deployers receive.
    pub fn with_registry_host(mut self, host: String) -> Engine {
        self.registry_host = host;
        self
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The declared application and its pipeline, as stored.
    async fn load(&self, application: &str) -> Result<Loaded, EngineError> {
        let stored = self
            .store
            .resources()
            .get(ResourceKind::Application, application)
            .await?
            .ok_or_else(|| EngineError::UnknownApplication(application.to_owned()))?;
        let parsed = Application::from_canonical(&stored.canonical)
            .map_err(|errors| EngineError::Corrupt(errors.to_string()))?;
        let pipeline = self
            .store
            .resources()
            .get(ResourceKind::Pipeline, parsed.pipeline.as_str())
            .await?
            .ok_or_else(|| {
                EngineError::Corrupt(format!(
                    "application {application} names pipeline {} which is not applied",
                    parsed.pipeline
                ))
            })?;
        let declared = DeclaredPipeline::from_canonical(&pipeline.canonical)
            .map_err(|errors| EngineError::Corrupt(errors.to_string()))?;
        Ok(Loaded {
            application: parsed,
            pipeline: declared,
            application_revision: stored.revision,
            pipeline_revision: pipeline.revision,
        })
    }

    /// The declared application and its pipeline, as stored, for callers that show
    /// them (status, metrics).
    pub async fn declared(
        &self,
        application: &str,
    ) -> Result<(Application, DeclaredPipeline), EngineError> {
        let loaded = self.load(application).await?;
        Ok((loaded.application, loaded.pipeline))
    }

    fn plan(&self, loaded: &Loaded, environment: &str) -> Result<StagePlan, EngineError> {
        let unknown = || EngineError::UnknownEnvironment {
            application: loaded.application.name.to_string(),
            environment: environment.to_owned(),
            known: loaded
                .pipeline
                .pipeline()
                .stages()
                .iter()
                .map(|stage| stage.environment.to_string())
                .collect(),
        };
        let name = EnvName::parse(environment).map_err(|_| unknown())?;
        let (stage, previous) = loaded
            .pipeline
            .pipeline()
            .stage(&name)
            .ok_or_else(unknown)?;
        let spec = loaded.application.environments.get(&name);
        Ok(StagePlan {
            application: loaded.application.name.to_string(),
            application_revision: loaded.application_revision,
            pipeline: loaded.pipeline.name().to_string(),
            pipeline_revision: loaded.pipeline_revision,
            repository: loaded.application.repository.clone(),
            environment: environment.to_owned(),
            previous: previous.map(|stage| stage.environment.to_string()),
            gate: stage.gate.clone(),
            target: spec
                .map_or("record", |spec| spec.target.kind_name())
                .to_owned(),
            flaky: self.flaky,
        })
    }

    /// Runs `decide` against a fresh plan, reading it again while the store reports
    /// it stale (a concurrent apply changed the application or pipeline).
    async fn with_plan<T, F, Fut>(
        &self,
        application: &str,
        environment: &str,
        mut decide: F,
    ) -> Result<T, EngineError>
    where
        F: FnMut(StagePlan) -> Fut,
        Fut: std::future::Future<Output = Result<StoreOutcome<T>, EngineError>>,
    {
        for _ in 0..STALE_RETRIES {
            let loaded = self.load(application).await?;
            let plan = self.plan(&loaded, environment)?;
            match decide(plan).await? {
                StoreOutcome::Stale => continue,
                outcome => return error::from_outcome(outcome),
            }
        }
        Err(EngineError::Busy(
            "the application or pipeline keeps changing; try again".to_owned(),
        ))
    }

    /// Records the provenance of an artifact of `application` and, where the first
    /// stage of its pipeline is `auto`, promotes it there (unless the environment is
    /// held). Provenance the call leaves out is read from the manifest's annotations
    /// and the image config's labels.
    pub async fn notify(
        &self,
        actor: &Actor,
        application: &str,
        digest: &Digest,
        provenance: Provenance,
    ) -> Result<Notified, EngineError> {
        let loaded = self.load(application).await?;
        actor.require(Permission::NotifyBuilds { application })?;
        let provenance = provenance::complete(
            &self.store,
            &self.blobs,
            &loaded.application.repository,
            digest,
            provenance,
        )
        .await?;
        let build = match self
            .store
            .evidence()
            .notify(
                application,
                &loaded.application.repository,
                digest,
                &provenance,
                &actor.name,
            )
            .await?
        {
            EvidenceOutcome::Recorded(build) => build,
            EvidenceOutcome::NotAnArtifact => {
                return Err(not_an_artifact(&loaded.application, digest));
            }
        };
        let Some(first) = loaded.pipeline.pipeline().stages().first() else {
            return Ok(Notified {
                build,
                promotion: None,
                held: None,
            });
        };
        if !first.auto {
            return Ok(Notified {
                build,
                promotion: None,
                held: None,
            });
        }
        let environment = first.environment.to_string();
        match self
            .auto_promote(application, &environment, digest, &actor.name)
            .await?
        {
            AutoOutcome::Promoted(promotion) => Ok(Notified {
                build,
                promotion: Some(*promotion),
                held: None,
            }),
            AutoOutcome::Held(hold) => Ok(Notified {
                build,
                promotion: None,
                held: Some(hold),
            }),
        }
    }

    /// Records a check report (counting findings from a Trivy or SARIF report) and
    /// re-evaluates the promotions of the digest that wait on evidence.
    pub async fn report_check(
        &self,
        actor: &Actor,
        check: &CheckRequest<'_>,
    ) -> Result<CheckReport, EngineError> {
        let loaded = self.load(check.application).await?;
        actor.require(Permission::ReportChecks {
            application: check.application,
        })?;
        domain::pipeline::CheckName::parse(check.name)
            .map_err(|e| EngineError::Invalid(e.to_string()))?;
        let findings = match check.report {
            Some(bytes) => Some(
                domain::findings::parse_report(bytes)
                    .map_err(|e| EngineError::Invalid(format!("the report: {e}")))?,
            ),
            None => None,
        };
        let report = match self
            .store
            .evidence()
            .report(&NewCheck {
                application: check.application,
                repository: &loaded.application.repository,
                digest: check.digest,
                name: check.name,
                passed: check.passed,
                url: check.url,
                format: findings.as_ref().map(|f| f.format.as_str()),
                findings: findings.as_ref().map(|f| &f.counts),
                reported_by: &actor.name,
            })
            .await?
        {
            EvidenceOutcome::Recorded(report) => report,
            EvidenceOutcome::NotAnArtifact => {
                return Err(not_an_artifact(&loaded.application, check.digest));
            }
        };
        self.reevaluate_digest(check.application, &check.digest.to_string())
            .await?;
        Ok(report)
    }

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
                .cancel(id, &actor.name, reason)
                .await?,
        )
    }

    /// Rolls an environment back to `to` or to the digest it ran before, and holds it.
    /// With `from`, only while the environment still runs that digest; with an
    /// idempotency key, a retry answers with the deployment the first request started.
    pub async fn rollback(
        &self,
        actor: &Actor,
        request: &RollbackRequest<'_>,
    ) -> Result<RolledBack, EngineError> {
        let (application, environment) = (request.application, request.environment);
        actor.require(Permission::Rollback {
            application,
            environment,
        })?;
        if let Some(key) = request.idempotency_key
            && (key.is_empty() || key.len() > 255)
        {
            return Err(EngineError::Invalid(
                "an idempotency key is 1 to 255 characters".to_owned(),
            ));
        }
        let hash = Digest::sha256_of(
            format!(
                "rollback\n{application}\n{environment}\n{}\n{}\n{}",
                request.to.map(Digest::to_string).unwrap_or_default(),
                request.from.map(Digest::to_string).unwrap_or_default(),
                request.reason.unwrap_or("")
            )
            .as_bytes(),
        )
        .hex()
        .to_owned();
        let stored = store::RollbackRequest {
            to: request.to,
            from: request.from,
            actor: &actor.name,
            reason: request.reason,
            idempotency_key: request.idempotency_key,
            request_hash: &hash,
        };
        let stored = &stored;
        let started = self
            .with_plan(application, environment, |plan| async move {
                Ok(self.store.promotions().rollback(&plan, stored).await?)
            })
            .await?;
        let id = started.order.deployment_id;
        self.start_and_wait(id).await;
        let deployment = self
            .store
            .promotions()
            .deployment(id)
            .await?
            .ok_or_else(|| EngineError::NotFound(format!("deployment {id}")))?;
        Ok(RolledBack {
            deployment,
            created: started.created,
        })
    }

    /// Records what an agent reads back from an environment (the digest it runs) and
    /// flags drift when that is not what Gantry deployed there. Reporting needs what
    /// promoting there needs: a deploying role for that environment, or for a CI
    /// identity a grant naming it.
    pub async fn observe(
        &self,
        actor: &Actor,
        application: &str,
        environment: &str,
        digest: &Digest,
    ) -> Result<store::Observation, EngineError> {
        let loaded = self.load(application).await?;
        self.plan(&loaded, environment)?;
        actor.require(Permission::Observe {
            application,
            environment,
        })?;
        Ok(self
            .store
            .promotions()
            .observe(application, environment, &digest.to_string(), &actor.name)
            .await?)
    }

    /// Holds an environment: auto-promotion stays out until it is released. A hold
    /// needs a reason.
    pub async fn hold(
        &self,
        actor: &Actor,
        application: &str,
        environment: &str,
        reason: &str,
    ) -> Result<Hold, EngineError> {
        self.may_hold(actor, application, environment).await?;
        if reason.trim().is_empty() {
            return Err(EngineError::Invalid("a hold needs a reason".to_owned()));
        }
        Ok(self
            .store
            .promotions()
            .hold(application, environment, &actor.name, reason)
            .await?)
    }

    /// Releases an environment's hold (nothing changes when it is not held).
    pub async fn release(
        &self,
        actor: &Actor,
        application: &str,
        environment: &str,
    ) -> Result<(), EngineError> {
        self.may_hold(actor, application, environment).await?;
        Ok(self
            .store
            .promotions()
            .release(application, environment, &actor.name)
            .await?)
    }

    /// Whether `actor` may hold or release `application/environment`, which exists.
    async fn may_hold(
        &self,
        actor: &Actor,
        application: &str,
        environment: &str,
    ) -> Result<(), EngineError> {
        let loaded = self.load(application).await?;
        self.plan(&loaded, environment)?;
        actor.require(Permission::Hold {
            application,
            environment,
        })
    }

    /// May `image` run in `environment`? Only digests deployed there successfully pass.
    pub async fn admit(&self, environment: &str, image: &str) -> Result<Admission, EngineError> {
        let environment = EnvName::parse(environment)
            .map_err(|e| EngineError::Invalid(format!("environment `{environment}`: {e}")))?;
        admission::admit(self, &environment, image).await
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

    async fn reevaluate_digest(&self, application: &str, digest: &str) -> Result<(), EngineError> {
        let waiting = self
            .store
            .promotions()
            .waiting_for_digest(application, digest)
            .await?;
        for (id, environment) in waiting {
            self.reevaluate(application, &environment, id).await?;
        }
        Ok(())
    }

    /// Re-evaluates one waiting promotion; true if it started a deployment.
    async fn reevaluate(
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
    async fn carry_out(&self, decided: Decided) -> Result<Promotion, EngineError> {
        let id = decided.promotion.id;
        match decided.start {
            None => Ok(decided.promotion),
            Some(order) => {
                self.start_and_wait(order.deployment_id).await;
                self.promotion(id).await
            }
        }
    }

    /// After a failed deployment into an environment declared `auto_rollback: true`,
    /// deploys again what ran there before (and holds the environment, as every
    /// rollback does). A failed rollback is never rolled back.
    async fn auto_rollback(
        &self,
        failed: &DeploymentOrder,
        message: &str,
    ) -> Result<(), EngineError> {
        {
            let loaded = self.load(&failed.application).await?;
            let environment = EnvName::parse(&failed.environment)
                .map_err(|e| EngineError::Invalid(e.to_string()))?;
            let wanted = loaded
                .application
                .environments
                .get(&environment)
                .is_some_and(|spec| spec.auto_rollback);
            if !wanted {
                return Ok(());
            }
            let current = self
                .store
                .promotions()
                .environments(&failed.application)
                .await?
                .into_iter()
                .find(|state| state.environment == failed.environment)
                .and_then(|state| state.current);
            let Some(current) = current else {
                tracing::info!(
                    application = %failed.application,
                    environment = %failed.environment,
                    "no earlier deployment to roll back to"
                );
                return Ok(());
            };
            let digest =
                Digest::parse(&current.digest).map_err(|e| EngineError::Corrupt(e.to_string()))?;
            let reason = format!(
                "auto-rollback: deployment {} of {} failed: {}",
                failed.deployment_id,
                failed.digest,
                message.lines().next().unwrap_or_default()
            );
            let digest = &digest;
            let reason = reason.as_str();
            let request = store::RollbackRequest {
                to: Some(digest),
                from: None,
                actor: AUTO_ROLLBACK_ACTOR,
                reason: Some(reason),
                idempotency_key: None,
                request_hash: "",
            };
            let request = &request;
            let started = self
                .with_plan(
                    &failed.application,
                    &failed.environment,
                    |plan| async move { Ok(self.store.promotions().rollback(&plan, request).await?) },
                )
                .await?;
            self.start_and_wait(started.order.deployment_id).await;
            Ok(())
        }
    }

    /// Checks an environment answers its health check: `retries` more attempts a second
    /// apart after a failed one, each within the check's timeout, through the outbound
    /// guard.
    async fn health(&self, check: &resources::HealthCheck) -> Result<String, String> {
        let agent = outbound::agent(self.outbound.clone(), check.timeout);
        let url = check.url.as_str().to_owned();
        let mut last = String::new();
        for attempt in 0..=check.retries {
            if attempt > 0 {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            let agent = agent.clone();
            let target = url.clone();
            let answer = tokio::task::spawn_blocking(move || agent.get(&target).call())
                .await
                .map_err(|e| e.to_string())?;
            match answer {
                Ok(response) if response.status().as_u16() == check.expect_status => {
                    return Ok(format!("{url} answered {}", check.expect_status));
                }
                Ok(response) => {
                    last = format!(
                        "{url} answered {}, not {}",
                        response.status().as_u16(),
                        check.expect_status
                    );
                }
                Err(error) => last = format!("{url}: {error}"),
            }
        }
        Err(last)
    }

    /// One attempt at a deployment: links a release tier's artifact, hands the order to
    /// the target's deployer, then runs the environment's health check.
    async fn deploy(
        &self,
        order: &DeploymentOrder,
        loaded: Result<Loaded, EngineError>,
        attempt: u32,
        log: &DeployLog,
    ) -> DeployResult {
        let loaded = loaded.map_err(|e| DeployError::Transient(e.to_string()))?;
        let environment = EnvName::parse(&order.environment).map_err(|e| e.to_string())?;
        let Some(spec) = loaded.application.environments.get(&environment) else {
            return Err(DeployError::Failed(format!(
                "{} declares no environment {}",
                order.application, order.environment
            )));
        };
        // A release-tier stage serves its artifacts from the tier repository: the
        // manifest (with its children and blobs) is linked there before deploying.
        let tier = loaded.pipeline.release_tier(&environment);
        let shared = &loaded.application.repository;
        let serves_from = tier.repository(shared).map_err(|e| e.to_string())?;
        if tier != resources::ReleaseTier::Shared {
            let digest = Digest::parse(&order.digest).map_err(|e| e.to_string())?;
            let linked = self
                .store
                .manifests()
                .link_into(shared, &digest, &serves_from, &order.requested_by)
                .await
                .map_err(|e| {
                    DeployError::Transient(format!("linking {digest} into {serves_from}: {e}"))
                })?;
            if !linked {
                return Err(DeployError::Failed(format!(
                    "{digest} is no longer in {shared}"
                )));
            }
        }
        let Some(deployer) = self.deployers.get(spec.target.kind_name()) else {
            return Err(DeployError::Failed(format!(
                "this server has no deployer for `{}` targets (it has: {})",
                spec.target.kind_name(),
                self.deployers.kinds().join(", ")
            )));
        };
        let image = format!("{}/{serves_from}@{}", self.registry_host, order.digest);
        let approvers = match order.promotion_id {
            None => Vec::new(),
            Some(id) => self
                .store
                .promotions()
                .get(id)
                .await
                .map_err(|e| DeployError::Transient(e.to_string()))?
                .map(|promotion| {
                    promotion
                        .decisions
                        .into_iter()
                        .filter(|decision| decision.decision == "approve")
                        .map(|decision| decision.approver)
                        .collect()
                })
                .unwrap_or_default(),
        };
        let repository = serves_from.to_string();
        let job = DeployContext {
            order,
            environment: spec,
            image: &image,
            repository: &repository,
            approvers: &approvers,
            attempt,
            log,
        };
        log.line(format!(
            "{} target: deploying {image}",
            spec.target.kind_name()
        ));
        let note = deployer.deploy(&job).await?;
        match &spec.health_check {
            None => Ok(note),
            Some(check) => {
                log.line(format!("health check: {}", check.url.as_str()));
                match self.health(check).await {
                    Ok(healthy) => Ok(format!("{note}; healthy: {healthy}")),
                    Err(reason) => Err(DeployError::Failed(format!(
                        "{note}; health check failed: {reason}"
                    ))),
                }
            }
        }
    }

    /// After a successful deployment, promotes the digest into the next stage if that
    /// stage is `auto`.
    async fn auto_next(&self, order: &DeploymentOrder) -> Result<(), EngineError> {
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
            .promotions()
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

    async fn auto_promote(
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
                            StoreOutcome::Held(hold) => StoreOutcome::Done(Err(hold)),
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
            Err(hold) => {
                tracing::info!(application, environment, %digest, hold = %hold.reason, "auto-promotion skipped: the environment is held");
                Ok(AutoOutcome::Held(hold))
            }
        }
    }
}

/// A person's decision on a promotion.
#[derive(Debug, Clone, Copy)]
enum Verdict<'a> {
    /// With an optional comment.
    Approve(Option<&'a str>),
    /// With the reason, which ends the promotion.
    Reject(&'a str),
}

enum AutoOutcome {
    Promoted(Box<Promotion>),
    Held(Hold),
}

fn not_an_artifact(application: &Application, digest: &Digest) -> EngineError {
    EngineError::NotAnArtifact(format!(
        "{digest} is not an artifact of {}: repository {} holds no manifest with that digest (push it first)",
        application.name, application.repository
    ))
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

/// Parses an application name, for callers holding user input.
pub fn parse_application(text: &str) -> Result<AppName, EngineError> {
    AppName::parse(text).map_err(|e| EngineError::Invalid(e.to_string()))
}
