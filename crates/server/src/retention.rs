//! The retention plan a garbage collection pass applies, read from the declared
//! resources just before it: every `kind: RetentionPolicy`, and every application
//! with its environments, the ones that make a digest `release` (the pipeline's last
//! stage and stages served from the release tier), and its own `retention` block.
//!
//! A stored resource that cannot be read stops retention for the whole pass: without
//! an application's environments its pins are unknown, and nothing may expire then.

use std::collections::BTreeMap;

use domain::ResourceKind;
use registry::{ApplicationRetention, RetentionPlan};
use resources::{DeclaredPipeline, ReleaseTier};
use store::Store;

pub(crate) async fn plan(store: &Store) -> Result<RetentionPlan, String> {
    let resources = store.resources();
    let read = |kind| resources.all(kind);
    let policies = read(ResourceKind::RetentionPolicy)
        .await
        .map_err(|error| error.to_string())?
        .iter()
        .map(|record| {
            resources::retention_policy_from_canonical(&record.canonical)
                .map_err(|error| format!("retention policy `{}`: {error}", record.name))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let pipelines: BTreeMap<String, DeclaredPipeline> = read(ResourceKind::Pipeline)
        .await
        .map_err(|error| error.to_string())?
        .iter()
        .map(|record| {
            DeclaredPipeline::from_canonical(&record.canonical)
                .map(|pipeline| (record.name.clone(), pipeline))
                .map_err(|error| format!("pipeline `{}`: {error}", record.name))
        })
        .collect::<Result<_, _>>()?;
    let mut applications = Vec::new();
    for record in read(ResourceKind::Application)
        .await
        .map_err(|error| error.to_string())?
    {
        let application = resources::application_from_canonical(&record.canonical)
            .map_err(|error| format!("application `{}`: {error}", record.name))?;
        let pipeline = pipelines
            .get(application.pipeline.as_str())
            .ok_or_else(|| {
                format!(
                    "application `{}` names pipeline `{}`, which is not stored",
                    application.name, application.pipeline
                )
            })?;
        let stages = pipeline.pipeline().stages();
        let release_environments = stages
            .iter()
            .enumerate()
            .filter(|(index, stage)| {
                index + 1 == stages.len()
                    || pipeline.release_tier(&stage.environment) == ReleaseTier::Release
            })
            .map(|(_, stage)| stage.environment.to_string())
            .collect();
        applications.push(ApplicationRetention {
            application: application.name.to_string(),
            repository: application.repository.clone(),
            rules: application.retention.clone(),
            environments: application
                .environments
                .keys()
                .map(ToString::to_string)
                .collect(),
            release_environments,
        });
    }
    Ok(RetentionPlan {
        policies,
        applications,
    })
}
