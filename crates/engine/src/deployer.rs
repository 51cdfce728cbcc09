//! How a deployment is carried out: one [`Deployer`] per target kind. The engine hands
//! each [`store::DeploymentOrder`] to the deployer of its environment's target and
//! records the outcome.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use resources::EnvironmentSpec;
use store::DeploymentOrder;

/// What a deployer reports: a short message for the deployment's record.
pub type DeployResult = Result<String, String>;

/// A boxed future, so deployers can be stored behind `dyn`.
pub type DeployFuture<'a> = Pin<Box<dyn Future<Output = DeployResult> + Send + 'a>>;

/// Carries out deployments for one kind of target. Implementations must be
/// idempotent: the same order may be handed over again after a crash.
pub trait Deployer: Send + Sync {
    /// The target kind it serves, as written in YAML (`record`, `gitops`, …).
    fn kind(&self) -> &'static str;

    /// Makes the environment run `order.digest` (with `order.config`), as the
    /// environment's declaration says; `image` is the reference to pull it by
    /// (`[HOST/]REPOSITORY@DIGEST`, through the repository the stage serves from). `Ok`
    /// carries a note for the record, `Err` the reason it failed.
    fn deploy<'a>(
        &'a self,
        order: &'a DeploymentOrder,
        environment: &'a EnvironmentSpec,
        image: &'a str,
    ) -> DeployFuture<'a>;
}

/// The `record` target: nothing to touch outside Gantry, so the deployment succeeds as
/// soon as it is recorded (infra applied by other means, or environments whose state
/// someone else reads from Gantry's parameters).
pub struct RecordDeployer;

impl Deployer for RecordDeployer {
    fn kind(&self) -> &'static str {
        "record"
    }

    fn deploy<'a>(
        &'a self,
        order: &'a DeploymentOrder,
        _environment: &'a EnvironmentSpec,
        _image: &'a str,
    ) -> DeployFuture<'a> {
        Box::pin(async move {
            Ok(format!(
                "recorded {} as running in {}/{}",
                order.digest, order.application, order.environment
            ))
        })
    }
}

/// The deployers a server offers, by target kind.
#[derive(Clone)]
pub struct Deployers {
    by_kind: BTreeMap<&'static str, Arc<dyn Deployer>>,
}

impl Default for Deployers {
    /// The built-in deployers.
    fn default() -> Self {
        let mut deployers = Deployers {
            by_kind: BTreeMap::new(),
        };
        deployers.register(Arc::new(RecordDeployer));
        deployers.register(Arc::new(crate::command::CommandDeployer));
        deployers
    }
}

impl Deployers {
    /// Adds (or replaces) the deployer for its kind.
    pub fn register(&mut self, deployer: Arc<dyn Deployer>) {
        self.by_kind.insert(deployer.kind(), deployer);
    }

    pub fn get(&self, kind: &str) -> Option<&Arc<dyn Deployer>> {
        self.by_kind.get(kind)
    }

    /// The kinds this server can deploy.
    pub fn kinds(&self) -> Vec<&'static str> {
        self.by_kind.keys().copied().collect()
    }
}
