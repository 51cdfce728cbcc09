//! The promotion engine: the one path every change to promotions, approvals,
//! deployments, rollbacks and holds takes (the API's handlers, auto-promotion, the
//! deploy worker), one module per use case: `evidence` (builds and checks), `promote`
//! (requesting, deciding, cancelling and re-evaluating promotions, auto-promotion),
//! `environments` (rollback, hold and release, drift reports), `deployment` (one
//! attempt at a deployment), `jobs` (deployments as durable jobs), `reconcile` (reading
//! back what targets hold), `admission` (may this image run here?), `actor` (who may
//! do what), and `queries`, the reads that are whole use cases (application status,
//! history, an artifact's record, DORA) as plain views, and `board`, the release
//! board's page read in a fixed number of queries.
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
//! ([`Actor::require`]); the store adds the rules that need the promotion's state (no
//! self-approval, no approval by the build's actors, the gate's roles).

mod actor;
mod admission;
mod apply;
mod attestation;
mod board;
mod clock;
mod command;
mod custody;
mod deployer;
mod deployment;
mod environments;
mod error;
mod evidence;
mod jobs;
mod promote;
mod provenance;
mod quarantine;
mod queries;
mod reconcile;
mod signing;
mod webhook;

use domain::ResourceKind;
use domain::pipeline::{AppName, EnvName};
use resources::{Application, DeclaredPipeline};
use store::{FlakyPolicy, StagePlan, Store, StoreOutcome};

pub use actor::{Actor, Permission};
pub use admission::{Admission, parse_image};
pub use apply::{AppliedFile, ApplyError, PlannedAction, ResourcePlan};
pub use board::{BoardQuery, BoardRow};
pub use clock::Clock;
pub use command::CommandDeployer;
pub use custody::{AttestationCheck, Custody, CustodyDecision};
// What the engine's own API takes: the deployers it is built with and what they are
// built from. Deployers implement the `deploy` crate's contract directly.
pub use attestation::ATTEST_ACTOR;
pub use deploy::{ChildEnvironment, Deployer, Secrets};
pub use deployer::Deployers;
pub use environments::{RollbackRequest, RolledBack};
pub use error::EngineError;
pub use evidence::{CheckRequest, Notified};
pub use jobs::JobSettings;
pub use promote::{PromoteRequest, Requested};
pub use quarantine::Quarantined;
pub use queries::{
    ApplicationStatus, ArtifactRecord, DeploymentSummary, DoraPeriod, DoraReport,
    EnvironmentStatus, Page,
};
pub use reconcile::{RECONCILE_ACTOR, ReconcileReport};
pub use signing::{KeyRing, SigningError};
pub use webhook::{Callbacks, WebhookDeployer, signature as webhook_signature};

/// An idempotency key, when a request carries one, is 1 to 255 bytes: the same rule
/// for promotions and rollbacks, whoever calls.
fn check_idempotency_key(key: Option<&str>) -> Result<(), EngineError> {
    match key {
        Some(key) if key.is_empty() || key.len() > 255 => Err(EngineError::Invalid(
            "an idempotency key is 1 to 255 characters".to_owned(),
        )),
        _ => Ok(()),
    }
}

/// How many times a decision is retried when a concurrent apply changed the plan.
const STALE_RETRIES: usize = 5;

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
    /// The time decisions are made at (deploy jobs' leases keep the system's).
    clock: Clock,
    /// The key deployments' attestations are signed with; `None` signs none.
    signing: Option<std::sync::Arc<KeyRing>>,
}

/// The registry host image references name until the server sets the one clients
/// pull from.
pub const DEFAULT_REGISTRY_HOST: &str = "localhost";

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
            clock: Clock::system(),
            signing: None,
            store,
        }
    }

    /// The same engine, signing an attestation of every successful deployment with
    /// `ring`'s key (see the `attestation` module).
    pub fn with_attestations(mut self, ring: std::sync::Arc<KeyRing>) -> Engine {
        self.signing = Some(ring);
        self
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

    /// The registry host image references name (`HOST/REPOSITORY@DIGEST`).
    pub fn registry_host(&self) -> &str {
        &self.registry_host
    }

    /// The same engine, deciding at the times `clock` tells.
    pub fn with_clock(mut self, clock: Clock) -> Engine {
        self.clock = clock;
        self
    }

    /// The clock decisions are made at.
    pub fn clock(&self) -> &Clock {
        &self.clock
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
        let parsed = resources::application_from_canonical(&stored.canonical)
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
            now: self.clock.now_millis(),
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

    /// May `image` run in `environment`? Only digests deployed there successfully pass.
    pub async fn admit(&self, environment: &str, image: &str) -> Result<Admission, EngineError> {
        let environment = EnvName::parse(environment)
            .map_err(|e| EngineError::Invalid(format!("environment `{environment}`: {e}")))?;
        admission::admit(self, &environment, image).await
    }
}

/// Parses an application name, for callers holding user input.
pub fn parse_application(text: &str) -> Result<AppName, EngineError> {
    AppName::parse(text).map_err(|e| EngineError::Invalid(e.to_string()))
}
