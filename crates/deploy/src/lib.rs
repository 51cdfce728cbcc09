//! The contract between the engine and the deploy targets. A [`Deployer`] carries out
//! deployments for one kind of target, handed a [`DeployContext`] (the order, the
//! environment's declaration from `domain::application`, the image reference, a
//! [`DeployLog`]); [`Secrets`] reads what targets name by reference;
//! [`ChildEnvironment`] is the environment child programs get, passed in by the
//! binary; [`process`] is the one bounded runner of child programs (the command
//! target, CDN invalidation hooks, git).
//!
//! It sits below the engine so that the deployers (`gitops`, `site`, `regcopy`) depend
//! on this contract and on `domain`, not on the engine or the YAML reader of
//! declarations.

mod deployer;
mod environment;
pub mod process;
mod secrets;

pub use deployer::{
    AttachContext, AttachFuture, DeployContext, DeployError, DeployFuture, DeployLog, DeployResult,
    Deployer, ObserveContext, ObserveFuture, RecordDeployer,
};
pub use environment::ChildEnvironment;
pub use secrets::Secrets;
