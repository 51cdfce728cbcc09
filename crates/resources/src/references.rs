//! References between resources: an application names a pipeline, and its environments
//! must be exactly that pipeline's stages; a trust policy names the applications it
//! grants a role on. What is named may be declared in the same file (which wins, since
//! it is about to be applied) or already known to Gantry.

use domain::RepoName;
use domain::pipeline::{AppName, Pipeline};
use domain::trust::TrustPolicy;

use crate::error::{Problem, ResourceError, ResourceErrors};
use crate::set::{Resource, ResourceSet};
use domain::application::Application;

impl ResourceSet {
    /// Checks every application against the pipelines of this file and `known_pipelines`,
    /// and every trust policy against the applications of this file and
    /// `known_applications` (what Gantry already stores; passing only those the file
    /// names but does not declare is enough). Reports, for each application: a pipeline
    /// found in neither; an environment that is not a stage of its pipeline; and a stage
    /// it does not configure, since a promotion into that stage would have nowhere to
    /// go. For each trust policy: an application found in neither, since the policy
    /// would grant a role on a name anyone could later declare.
    pub fn check_references(
        &self,
        known_pipelines: &[Pipeline],
        known_applications: &[AppName],
    ) -> Result<(), ResourceErrors> {
        let mut errors = Vec::new();
        for (label, resource) in self.documents() {
            let mut report = |field: String, problem: Problem| {
                errors.push(ResourceError {
                    file: self.file().to_owned(),
                    document: Some(label.clone()),
                    field: Some(field),
                    position: None,
                    problem,
                });
            };
            match resource {
                Resource::Application(application) => {
                    self.check_application(application, known_pipelines, &mut report);
                }
                Resource::TrustPolicy(policy) => {
                    self.check_trust_policy(policy, known_applications, &mut report);
                }
                Resource::Pipeline(_) | Resource::RetentionPolicy(_) => {}
            }
        }
        match ResourceErrors::from_vec(errors) {
            Some(errors) => Err(errors),
            None => Ok(()),
        }
    }

    /// Checks that no two applications share a repository: none in this file with
    /// an earlier one of the file, and none with an application Gantry stores that
    /// this file does not redeclare. `stored` names, for repositories this file's
    /// applications declare, the stored application that owns each.
    pub fn check_repositories(&self, stored: &[(RepoName, String)]) -> Result<(), ResourceErrors> {
        let mut errors = Vec::new();
        let mut seen: Vec<(&RepoName, &AppName)> = Vec::new();
        for (label, resource) in self.documents() {
            let Resource::Application(application) = resource else {
                continue;
            };
            let repository = &application.repository;
            let in_file = seen
                .iter()
                .find(|(taken, owner)| *taken == repository && *owner != &application.name)
                .map(|(_, owner)| owner.to_string());
            let owner = in_file.or_else(|| {
                stored
                    .iter()
                    .filter(|(taken, owner)| {
                        taken == repository
                            && owner.as_str() != application.name.as_str()
                            && self
                                .applications()
                                .all(|declared| declared.name.as_str() != owner.as_str())
                    })
                    .map(|(_, owner)| owner.clone())
                    .next()
            });
            if let Some(owner) = owner {
                errors.push(ResourceError {
                    file: self.file().to_owned(),
                    document: Some(label.clone()),
                    field: Some("repository".to_owned()),
                    position: None,
                    problem: Problem::RepositoryTaken {
                        repository: repository.to_string(),
                        application: owner,
                    },
                });
            }
            seen.push((repository, &application.name));
        }
        match ResourceErrors::from_vec(errors) {
            Some(errors) => Err(errors),
            None => Ok(()),
        }
    }

    fn check_application(
        &self,
        application: &Application,
        known_pipelines: &[Pipeline],
        report: &mut impl FnMut(String, Problem),
    ) {
        let pipeline = self
            .pipeline(&application.pipeline)
            .map(|declared| declared.pipeline())
            .or_else(|| {
                known_pipelines
                    .iter()
                    .find(|known| known.name() == &application.pipeline)
            });
        match pipeline {
            None => report(
                "pipeline".to_owned(),
                Problem::UnknownPipeline {
                    pipeline: application.pipeline.to_string(),
                },
            ),
            Some(pipeline) => check_environments(application, pipeline, report),
        }
    }

    fn check_trust_policy(
        &self,
        policy: &TrustPolicy,
        known_applications: &[AppName],
        report: &mut impl FnMut(String, Problem),
    ) {
        for application in &policy.applications {
            let known =
                self.application(application).is_some() || known_applications.contains(application);
            if !known {
                report(
                    "applications".to_owned(),
                    Problem::UnknownApplication {
                        application: application.to_string(),
                    },
                );
            }
        }
    }
}

fn check_environments(
    application: &Application,
    pipeline: &Pipeline,
    report: &mut impl FnMut(String, Problem),
) {
    let stage_names = pipeline
        .stages()
        .iter()
        .map(|stage| stage.environment.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    for environment in application.environments.keys() {
        if pipeline.stage(environment).is_none() {
            report(
                format!("environments.{environment}"),
                Problem::EnvironmentNotInPipeline {
                    environment: environment.to_string(),
                    pipeline: pipeline.name().to_string(),
                    stages: stage_names.clone(),
                },
            );
        }
    }
    for stage in pipeline.stages() {
        if !application.environments.contains_key(&stage.environment) {
            report(
                "environments".to_owned(),
                Problem::StageNotConfigured {
                    stage: stage.environment.to_string(),
                    pipeline: pipeline.name().to_string(),
                },
            );
        }
    }
}
