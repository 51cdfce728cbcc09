//! Declarative resources: the pipelines, applications and trust policies platform
//! engineers write as Kubernetes-style YAML documents and apply with
//! `gantry apply -f FILE`.
//!
//! [`parse_file`] reads a multi-document file into a [`ResourceSet`] of validated
//! values — a [`DeclaredPipeline`] wraps `domain::pipeline::Pipeline`, an
//! [`Application`] names its repository, pipeline and each environment's [`Target`], a
//! trust policy is a `domain::trust::TrustPolicy` that keeps its `validate` rules — or
//! returns every problem found, each naming the file, the document (index, kind and
//! name) and the field path (`stages[2].gate.approvals[0].count`), with the line when
//! the parser knows it. [`ResourceSet::check_references`] then checks what one resource
//! says about another, and [`Resource::canonical`] with [`diff_lines`] gives the
//! comparison `--dry-run` prints; the `from_canonical` readers (and
//! [`application_from_canonical`], [`trust_policy_from_canonical`]) turn stored text
//! back into values.
//!
//! Layout: `wire` holds the YAML shapes (the only serde types; the model derives
//! nothing), `text` the scalars parsed by their own types, `convert` the rules that
//! relate fields, `parse` the document loop, `references` the checks across
//! resources, `canonical` and `diff` the dry-run support. No I/O: the caller reads the
//! file and passes its text.
//!
//! The application model these documents are read into is `domain::application`
//! (re-exported here), so the deployers read it without depending on a YAML crate. The
//! release tier sits beside the domain pipeline in `pipeline` until the engine acts on
//! it and it joins `domain::pipeline::Stage`.

mod canonical;
mod convert;
mod diff;
mod error;
mod parse;
mod pipeline;
mod references;
mod set;
mod text;
mod wire;

pub use canonical::{
    application_from_canonical, retention_policy_from_canonical, trust_policy_from_canonical,
};
pub use diff::{DiffLine, diff_lines, has_changes};
pub use domain::application::{
    Application, ApplicationError, ApplicationType, CommandTarget, ConfigValue, EnvironmentSpec,
    GitBranch, GitRepository, GitopsTarget, HealthCheck, HttpUrl, ImageKeys, InvalidationHook,
    KeyPath, RegistryCopyTarget, RegistryDestination, RepoFilePath, SecretRef, SiteDestination,
    StaticSiteTarget, Target, WebhookTarget, is_registry_host,
};
pub use error::{DocumentLabel, Position, Problem, ResourceError, ResourceErrors};
pub use parse::parse_file;
pub use pipeline::{DeclaredPipeline, ReleaseTier};
pub use set::{Resource, ResourceKey, ResourceKind, ResourceSet};
