//! The deployers a server offers, by target kind: the built-in `record` and `command`
//! and whatever the server registers (`gitops`, `static-site`, `registry-copy`,
//! `webhook`). The contract they implement is the `deploy` crate's.

use std::collections::BTreeMap;
use std::sync::Arc;

use deploy::{Deployer, RecordDeployer};

/// The deployers a server offers, by target kind.
#[derive(Clone)]
pub struct Deployers {
    by_kind: BTreeMap<&'static str, Arc<dyn Deployer>>,
}

impl Default for Deployers {
    /// The built-in deployers, running programs with an empty environment.
    fn default() -> Self {
        Deployers::new(crate::ChildEnvironment::default())
    }
}

impl Deployers {
    /// The built-in deployers that need nothing from the server's configuration:
    /// `record`, and `command` running programs with `environment`.
    pub fn new(environment: crate::ChildEnvironment) -> Deployers {
        let mut deployers = Deployers {
            by_kind: BTreeMap::new(),
        };
        deployers.register(Arc::new(RecordDeployer));
        deployers.register(Arc::new(crate::command::CommandDeployer::new(environment)));
        deployers
    }

    /// Adds (or replaces) the deployer for its kind.
    pub fn register(&mut self, deployer: Arc<dyn Deployer>) {
        self.by_kind.insert(deployer.kind(), deployer);
    }

    /// The same set with `deployer` added (or replacing the one of its kind).
    pub fn with(mut self, deployer: Arc<dyn Deployer>) -> Deployers {
        self.register(deployer);
        self
    }

    pub fn get(&self, kind: &str) -> Option<&Arc<dyn Deployer>> {
        self.by_kind.get(kind)
    }

    /// The kinds this server can deploy.
    pub fn kinds(&self) -> Vec<&'static str> {
        self.by_kind.keys().copied().collect()
    }
}
