//! Applying a resources file (`gantry apply`): parse it, check its references against
//! the pipelines and applications already stored and its repositories against the
//! applications that own them, diff each resource's canonical text against the stored
//! one, and — unless it is a dry run — hand every change to `store.resources().apply`
//! with the revision it diffed against, so a change made meanwhile by someone else is
//! refused instead of overwritten unseen.
//!
//! Who may apply is the caller's to decide (`resources:apply`, judged from the
//! caller's principal before this runs); `by` names them in the audit log.

use std::collections::{BTreeMap, BTreeSet};

use domain::pipeline::{AppName, Pipeline};
use domain::{RepoName, ResourceKind};
use resources::{DeclaredPipeline, Resource, ResourceErrors, ResourceSet};
use store::{
    ApplicationColumns, ApplyConflict, ApplyOutcome, ResourceChange, ResourceColumns,
    StoredResource,
};

use crate::{Engine, EngineError};

/// What an apply does, or would do, to one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlannedAction {
    Create,
    Update,
    Unchanged,
}

/// One resource of an applied file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourcePlan {
    pub kind: ResourceKind,
    pub name: String,
    pub action: PlannedAction,
    /// The revision stored after the apply; for a dry run, the one stored now (`None`
    /// for a resource that does not exist yet).
    pub revision: Option<i64>,
    /// The lines changed, each ending in a newline; empty when unchanged.
    pub diff: String,
}

/// What an apply did (or, for a dry run, would do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedFile {
    pub dry_run: bool,
    /// In the file's order.
    pub resources: Vec<ResourcePlan>,
    /// Repositories that did not exist and were created for applications.
    pub created_repositories: Vec<RepoName>,
}

/// Why an apply changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// Every problem of the file: syntax, fields, references, repositories.
    #[error("{0}")]
    Invalid(ResourceErrors),
    /// A resource changed since this apply read it.
    #[error("{} `{}` changed since this apply read it: review the new diff and apply again", .0.kind, .0.name)]
    Conflict(ApplyConflict),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl From<store::StoreError> for ApplyError {
    fn from(error: store::StoreError) -> Self {
        ApplyError::Engine(error.into())
    }
}

/// One resource of the file, diffed against what is stored.
struct Planned {
    kind: ResourceKind,
    name: String,
    columns: ResourceColumns,
    canonical: String,
    stored_revision: Option<i64>,
    action: PlannedAction,
    diff: String,
}

impl Planned {
    fn new(resource: &Resource, stored: Option<StoredResource>) -> Planned {
        let canonical = resource.canonical();
        let stored_text = stored
            .as_ref()
            .map_or("", |stored| stored.canonical.as_str());
        let lines = resources::diff_lines(stored_text, &canonical);
        let action = match &stored {
            None => PlannedAction::Create,
            Some(_) if resources::has_changes(&lines) => PlannedAction::Update,
            Some(_) => PlannedAction::Unchanged,
        };
        let diff = match action {
            PlannedAction::Unchanged => String::new(),
            PlannedAction::Create | PlannedAction::Update => {
                lines.iter().map(|line| format!("{line}\n")).collect()
            }
        };
        let columns = match resource {
            Resource::Pipeline(_) => ResourceColumns::Pipeline,
            Resource::TrustPolicy(_) => ResourceColumns::TrustPolicy,
            Resource::RetentionPolicy(_) => ResourceColumns::RetentionPolicy,
            Resource::Application(application) => {
                ResourceColumns::Application(ApplicationColumns {
                    repository: application.repository.clone(),
                    pipeline: application.pipeline.clone(),
                    app_type: application.app_type.as_str().to_owned(),
                })
            }
        };
        Planned {
            kind: resource.kind(),
            name: resource.name().to_owned(),
            columns,
            canonical,
            stored_revision: stored.map(|stored| stored.revision),
            action,
            diff,
        }
    }

    fn change(&self) -> ResourceChange {
        ResourceChange {
            columns: self.columns.clone(),
            name: self.name.clone(),
            canonical: self.canonical.clone(),
            expected_revision: self.stored_revision,
        }
    }

    fn outcome(self, revision: Option<i64>) -> ResourcePlan {
        ResourcePlan {
            kind: self.kind,
            name: self.name,
            action: self.action,
            revision,
            diff: self.diff,
        }
    }
}

impl Engine {
    /// Applies the resources file `text` (named `file` in problems) for `by`, or with
    /// `dry_run` only says what it would do.
    pub async fn apply(
        &self,
        by: &str,
        file: &str,
        text: &str,
        dry_run: bool,
    ) -> Result<AppliedFile, ApplyError> {
        let set = resources::parse_file(file, text).map_err(ApplyError::Invalid)?;
        let known_pipelines = self.stored_pipelines_referenced(&set).await?;
        let known_applications = self.stored_applications_referenced(&set).await?;
        set.check_references(&known_pipelines, &known_applications)
            .map_err(ApplyError::Invalid)?;
        let mut owners = Vec::new();
        for application in set.applications() {
            if let Some(owner) = self
                .store
                .resources()
                .application_of(&application.repository)
                .await?
            {
                owners.push((application.repository.clone(), owner));
            }
        }
        set.check_repositories(&owners)
            .map_err(ApplyError::Invalid)?;

        let mut planned = Vec::with_capacity(set.len());
        for resource in set.resources() {
            let stored = self
                .store
                .resources()
                .get(resource.kind(), resource.name())
                .await?;
            planned.push(Planned::new(resource, stored));
        }

        if dry_run {
            return Ok(AppliedFile {
                dry_run: true,
                resources: planned
                    .into_iter()
                    .map(|plan| {
                        let revision = plan.stored_revision;
                        plan.outcome(revision)
                    })
                    .collect(),
                created_repositories: Vec::new(),
            });
        }

        let changes: Vec<ResourceChange> = planned.iter().map(Planned::change).collect();
        let applied = match self.store.resources().apply(&changes, by).await? {
            ApplyOutcome::Applied(applied) => applied,
            ApplyOutcome::Conflict(conflict) => return Err(ApplyError::Conflict(conflict)),
        };
        let revisions: BTreeMap<(ResourceKind, &str), i64> = applied
            .created
            .iter()
            .chain(&applied.updated)
            .chain(&applied.unchanged)
            .map(|resource| ((resource.kind, resource.name.as_str()), resource.revision))
            .collect();
        let resources = planned
            .into_iter()
            .map(|plan| {
                let revision = revisions.get(&(plan.kind, plan.name.as_str())).copied();
                plan.outcome(revision)
            })
            .collect();
        Ok(AppliedFile {
            dry_run: false,
            resources,
            created_repositories: applied.created_repositories,
        })
    }

    /// The stored pipelines that applications of `set` name but `set` does not
    /// declare, read back from their canonical text.
    async fn stored_pipelines_referenced(
        &self,
        set: &ResourceSet,
    ) -> Result<Vec<Pipeline>, EngineError> {
        let names: BTreeSet<&str> = set
            .applications()
            .filter(|application| set.pipeline(&application.pipeline).is_none())
            .map(|application| application.pipeline.as_str())
            .collect();
        let mut pipelines = Vec::new();
        for name in names {
            let Some(stored) = self
                .store
                .resources()
                .get(ResourceKind::Pipeline, name)
                .await?
            else {
                continue;
            };
            let declared =
                DeclaredPipeline::from_canonical(&stored.canonical).map_err(|errors| {
                    EngineError::Corrupt(format!("the stored pipeline `{name}`: {errors}"))
                })?;
            pipelines.push(declared.pipeline().clone());
        }
        Ok(pipelines)
    }

    /// The stored applications that trust policies of `set` name but `set` does not
    /// declare.
    async fn stored_applications_referenced(
        &self,
        set: &ResourceSet,
    ) -> Result<Vec<AppName>, EngineError> {
        let names: BTreeSet<&AppName> = set
            .trust_policies()
            .flat_map(|policy| &policy.applications)
            .filter(|application| set.application(application).is_none())
            .collect();
        let mut known = Vec::new();
        for name in names {
            let stored = self
                .store
                .resources()
                .get(ResourceKind::Application, name.as_str())
                .await?;
            if stored.is_some() {
                known.push(name.clone());
            }
        }
        Ok(known)
    }
}
