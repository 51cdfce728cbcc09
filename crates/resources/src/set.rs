//! The resources read from one file, in the file's order, each remembering the
//! document it came from so that later checks can point back at it.

use std::fmt;

pub use domain::ResourceKind;
use domain::pipeline::{AppName, PipelineName};
use domain::retention::RetentionPolicy;
use domain::trust::TrustPolicy;

use crate::error::DocumentLabel;
use crate::pipeline::DeclaredPipeline;
use domain::application::Application;

/// What identifies a resource: at most one per kind and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceKey {
    pub kind: ResourceKind,
    pub name: String,
}

impl fmt::Display for ResourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} `{}`", self.kind, self.name)
    }
}

/// One declared resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    Pipeline(DeclaredPipeline),
    Application(Application),
    TrustPolicy(TrustPolicy),
    RetentionPolicy(RetentionPolicy),
}

impl Resource {
    pub fn kind(&self) -> ResourceKind {
        match self {
            Resource::Pipeline(_) => ResourceKind::Pipeline,
            Resource::Application(_) => ResourceKind::Application,
            Resource::TrustPolicy(_) => ResourceKind::TrustPolicy,
            Resource::RetentionPolicy(_) => ResourceKind::RetentionPolicy,
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Resource::Pipeline(pipeline) => pipeline.name().as_str(),
            Resource::Application(application) => application.name.as_str(),
            Resource::TrustPolicy(policy) => policy.name.as_str(),
            Resource::RetentionPolicy(policy) => policy.name.as_str(),
        }
    }

    pub fn key(&self) -> ResourceKey {
        ResourceKey {
            kind: self.kind(),
            name: self.name().to_owned(),
        }
    }
}

/// Every resource of one file, valid one by one and distinct by kind and name.
/// References between them (and to what Gantry already knows) are checked by
/// [`ResourceSet::check_references`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceSet {
    file: String,
    entries: Vec<(DocumentLabel, Resource)>,
}

impl ResourceSet {
    pub(crate) fn new(file: String, entries: Vec<(DocumentLabel, Resource)>) -> ResourceSet {
        ResourceSet { file, entries }
    }

    /// The label the file was read under.
    pub fn file(&self) -> &str {
        &self.file
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// In the order of the file.
    pub fn resources(&self) -> impl Iterator<Item = &Resource> {
        self.entries.iter().map(|(_, resource)| resource)
    }

    /// Each resource with the document it was read from, in the order of the file.
    pub fn documents(&self) -> impl Iterator<Item = (&DocumentLabel, &Resource)> {
        self.entries
            .iter()
            .map(|(label, resource)| (label, resource))
    }

    pub fn pipelines(&self) -> impl Iterator<Item = &DeclaredPipeline> {
        self.resources().filter_map(|resource| match resource {
            Resource::Pipeline(pipeline) => Some(pipeline),
            _ => None,
        })
    }

    pub fn applications(&self) -> impl Iterator<Item = &Application> {
        self.resources().filter_map(|resource| match resource {
            Resource::Application(application) => Some(application),
            _ => None,
        })
    }

    pub fn trust_policies(&self) -> impl Iterator<Item = &TrustPolicy> {
        self.resources().filter_map(|resource| match resource {
            Resource::TrustPolicy(policy) => Some(policy),
            _ => None,
        })
    }

    pub fn retention_policies(&self) -> impl Iterator<Item = &RetentionPolicy> {
        self.resources().filter_map(|resource| match resource {
            Resource::RetentionPolicy(policy) => Some(policy),
            _ => None,
        })
    }

    pub fn pipeline(&self, name: &PipelineName) -> Option<&DeclaredPipeline> {
        self.pipelines().find(|pipeline| pipeline.name() == name)
    }

    pub fn application(&self, name: &AppName) -> Option<&Application> {
        self.applications()
            .find(|application| &application.name == name)
    }

    pub fn trust_policy(&self, name: &str) -> Option<&TrustPolicy> {
        self.trust_policies().find(|policy| policy.name == name)
    }
}
