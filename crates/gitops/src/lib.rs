//! The `gitops` deploy target: a deployment becomes one commit in a git repository
//! that something else (Argo CD, Flux, a CI job) applies. The promoted image, and
//! the environment's config keys with the promotion's release bundle over them, are
//! written into one YAML file, preserving its comments and formatting; the commit
//! names the application, environment, digest, deployment, promotion and approvers;
//! the push never forces, and a push that races another writer is re-applied on
//! the new head. The same file read back at the branch head tells the reconcile
//! loop what the environment really runs ([`deploy::Deployer::observe`]).
//!
//! The pieces: [`GitopsDeployer`] runs the job (`deployer`); `git` runs the git
//! command line in a controlled environment; `remote` says how a repository is
//! reached (local, https behind the outbound guard, ssh with a deploy key); `edit`
//! changes YAML losslessly and verifies the result; `paths` decides which files may
//! be edited; `message` writes the commit message.

mod deployer;
mod edit;
mod git;
mod message;
mod paths;
mod remote;
mod settings;

pub use deployer::{GitopsDeployer, GitopsSetupError};
pub use settings::{GitCredential, GitopsSettings};
