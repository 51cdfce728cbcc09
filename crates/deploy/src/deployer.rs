//! How a deployment is carried out: one [`Deployer`] per target kind. The engine's
//! deploy worker hands each claimed job to the deployer of its environment's target,
//! as a [`DeployContext`], and records the outcome.

use std::future::Future;
use std::pin::Pin;

use domain::application::EnvironmentSpec;
use domain::promotion::DeploymentOrder;
use tokio::sync::mpsc;

/// Why a deployment did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeployError {
    /// It cannot succeed as declared (a refused path, a bad digest, a program that
    /// exited non-zero): the deployment fails at once.
    Failed(String),
    /// It may succeed if tried again (a connection refused, a 503, a lost push race):
    /// the job is retried with backoff until its attempts run out.
    Transient(String),
}

impl DeployError {
    pub fn message(&self) -> &str {
        match self {
            DeployError::Failed(message) | DeployError::Transient(message) => message,
        }
    }

    pub fn is_transient(&self) -> bool {
        matches!(self, DeployError::Transient(_))
    }
}

impl From<String> for DeployError {
    fn from(message: String) -> Self {
        DeployError::Failed(message)
    }
}

impl std::fmt::Display for DeployError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

/// What a deployer reports: a short note for the deployment's record, or why it failed.
pub type DeployResult = Result<String, DeployError>;

/// A boxed future, so deployers can be stored behind `dyn`.
pub type DeployFuture<'a> = Pin<Box<dyn Future<Output = DeployResult> + Send + 'a>>;

/// Lines for a deployment's log, kept in the store as the deployment runs (`gantry
/// history`, `GET /api/v1/deployments/{id}/log`). Cheap to clone; writing never blocks.
#[derive(Clone, Debug)]
pub struct DeployLog {
    lines: mpsc::UnboundedSender<String>,
}

impl DeployLog {
    /// A log whose lines arrive on the returned receiver.
    pub fn channel() -> (DeployLog, mpsc::UnboundedReceiver<String>) {
        let (lines, receiver) = mpsc::unbounded_channel();
        (DeployLog { lines }, receiver)
    }

    /// A log that keeps nothing (for callers outside a deploy job).
    pub fn discard() -> DeployLog {
        DeployLog::channel().0
    }

    /// Appends one line (a step started or finished, a retry, output of a program).
    pub fn line(&self, line: impl Into<String>) {
        // The receiver is gone only when the job is over; late lines are dropped.
        let _ = self.lines.send(line.into());
    }
}

/// Everything a deployer is told about one deployment.
#[derive(Debug)]
pub struct DeployContext<'a> {
    pub order: &'a DeploymentOrder,
    /// The environment's declaration (its target, health check, config keys).
    pub environment: &'a EnvironmentSpec,
    /// The reference to pull the artifact by: `HOST[:PORT]/REPOSITORY@DIGEST`, through
    /// the repository the stage serves from.
    pub image: &'a str,
    /// That repository, inside Gantry's registry (`acme/web` or `release/acme/web`).
    pub repository: &'a str,
    /// Who approved the promotion (empty for rollbacks and ungated stages).
    pub approvers: &'a [String],
    /// Which attempt this is, from 1; a later attempt may find earlier work done.
    pub attempt: u32,
    pub log: &'a DeployLog,
}

/// Carries out deployments for one kind of target. Implementations must be
/// idempotent: the same order may be handed over again after a crash or a transient
/// failure, and a re-run of a step that finished must change nothing.
pub trait Deployer: Send + Sync {
    /// The target kind it serves, as written in YAML (`record`, `gitops`, …).
    fn kind(&self) -> &'static str;

    /// Makes the environment run `job.order.digest` (with `job.order.config`), as the
    /// environment's declaration says. `Ok` carries a note for the record.
    fn deploy<'a>(&'a self, job: &'a DeployContext<'a>) -> DeployFuture<'a>;

    /// Reads back what the environment actually runs, for drift detection: the digest
    /// at the git head, the destination registry's tag, the bucket's `deployed.json`.
    /// `Ok(None)` when the target cannot tell (the default) or holds nothing yet.
    fn observe<'a>(&'a self, target: &'a ObserveContext<'a>) -> ObserveFuture<'a> {
        let _ = target;
        Box::pin(async { Ok(None) })
    }

    /// Carries what was attached to a deployed artifact after it was deployed (the
    /// deployment's signed attestations, OCI referrers of `context.digest` in
    /// `context.repository`) to where the target put the artifact, for targets that put
    /// it somewhere a verifier reads (another registry). The default has nowhere to.
    fn attach<'a>(&'a self, context: &'a AttachContext<'a>) -> AttachFuture<'a> {
        let _ = context;
        Box::pin(async { Ok(String::new()) })
    }
}

/// What a deployer is handed to carry a deployed artifact's referrers.
#[derive(Debug)]
pub struct AttachContext<'a> {
    pub environment: &'a str,
    pub spec: &'a EnvironmentSpec,
    /// The repository inside Gantry's registry holding the artifact and its referrers.
    pub repository: &'a str,
    pub digest: &'a str,
    /// The referrers to carry, by digest.
    pub referrers: &'a [String],
}

/// A note on what was carried, or why it failed (transient failures are retried).
pub type AttachFuture<'a> = Pin<Box<dyn Future<Output = Result<String, DeployError>> + Send + 'a>>;

/// What a deployer is told when asked what an environment runs.
#[derive(Debug)]
pub struct ObserveContext<'a> {
    pub application: &'a str,
    pub environment: &'a str,
    pub spec: &'a EnvironmentSpec,
    /// The repository inside Gantry's registry the environment's artifacts come from.
    pub repository: &'a str,
}

/// The digest a target reports (`sha256:…`), `None` when it cannot tell, or why reading
/// it back failed.
pub type ObserveFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Option<String>, String>> + Send + 'a>>;

/// The `record` target: nothing to touch outside Gantry, so the deployment succeeds as
/// soon as it is recorded (infra applied by other means, or environments whose state
/// someone else reads from Gantry's parameters).
pub struct RecordDeployer;

impl Deployer for RecordDeployer {
    fn kind(&self) -> &'static str {
        "record"
    }

    fn deploy<'a>(&'a self, job: &'a DeployContext<'a>) -> DeployFuture<'a> {
        Box::pin(async move {
            Ok(format!(
                "recorded {} as running in {}/{}",
                job.order.digest, job.order.application, job.order.environment
            ))
        })
    }
}
