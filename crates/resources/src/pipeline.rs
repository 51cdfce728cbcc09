//! A pipeline as declared: the domain [`Pipeline`] plus where each stage's promoted
//! bytes live (its release tier).
//!
//! A `release` stage's deployments link the promoted manifest into the tier
//! repository (`release/{repository}`), and admission for that environment accepts
//! only references through it.

use std::collections::BTreeMap;

use domain::RepoName;
use domain::pipeline::{EnvName, Pipeline, PipelineName};

/// Where an artifact promoted into a stage is served from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum ReleaseTier {
    /// The application's own repository (`{namespace}/{app}`): nothing is copied.
    #[default]
    Shared,
    /// The tier repository `release/{namespace}/{app}` inside Gantry, linked without copying.
    Release,
}

impl ReleaseTier {
    /// The repository an environment of this tier serves `shared`'s artifacts from.
    pub fn repository(self, shared: &RepoName) -> Result<RepoName, domain::NameError> {
        match self {
            ReleaseTier::Shared => Ok(shared.clone()),
            ReleaseTier::Release => {
                RepoName::parse(&format!("{}/{shared}", domain::RELEASE_NAMESPACE))
            }
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseTier::Shared => "shared",
            ReleaseTier::Release => "release",
        }
    }
}

/// A validated pipeline and the release tier of each of its stages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredPipeline {
    pipeline: Pipeline,
    /// Only stages whose tier is not [`ReleaseTier::Shared`]; every key is a stage.
    tiers: BTreeMap<EnvName, ReleaseTier>,
}

impl DeclaredPipeline {
    /// `tiers` for environments that are not stages of `pipeline` are dropped.
    pub fn new(pipeline: Pipeline, tiers: BTreeMap<EnvName, ReleaseTier>) -> DeclaredPipeline {
        let tiers = tiers
            .into_iter()
            .filter(|(environment, tier)| {
                *tier != ReleaseTier::Shared && pipeline.stage(environment).is_some()
            })
            .collect();
        DeclaredPipeline { pipeline, tiers }
    }

    pub fn name(&self) -> &PipelineName {
        self.pipeline.name()
    }

    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    pub fn release_tier(&self, environment: &EnvName) -> ReleaseTier {
        self.tiers.get(environment).copied().unwrap_or_default()
    }
}
