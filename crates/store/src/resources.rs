//! Declared resources (pipelines, applications, trust policies): the back end of
//! `gantry apply`.
//!
//! The store keeps each resource as the canonical text the caller rendered (it never
//! reads YAML; that is the `resources` crate's job) with a revision counting its
//! changes. An apply is optimistic: every change names the revision its diff was based
//! on, and if any stored revision differs the whole apply is refused and nothing is
//! written, so nobody overwrites a change they were not shown.

use domain::audit::AuditAction;
use domain::pipeline::PipelineName;
use domain::{RepoName, ResourceKind};
use sqlx::Row;

use crate::repositories::INSERT_REPOSITORY_IF_MISSING;
use crate::{Backend, NewAuditEntry, StoreError, now_millis, with_pool};

/// The lookup columns stored beside an application's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplicationColumns {
    /// The OCI repository its artifacts are pushed to; an apply creates it if missing.
    pub repository: RepoName,
    pub pipeline: PipelineName,
    /// The application type as written in YAML: `container`, `static-site`, `infra`.
    pub app_type: String,
}

/// A resource's kind together with the columns stored for that kind, so an
/// application cannot arrive without its repository, nor a pipeline with one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResourceColumns {
    Pipeline,
    Application(ApplicationColumns),
    /// Nothing beside the text: the token exchange reads every policy
    /// ([`Resources::all`]) and matches them itself.
    TrustPolicy,
    /// Nothing beside the text: garbage collection reads every policy and matches
    /// repositories itself.
    RetentionPolicy,
}

impl ResourceColumns {
    pub fn kind(&self) -> ResourceKind {
        match self {
            ResourceColumns::Pipeline => ResourceKind::Pipeline,
            ResourceColumns::Application(_) => ResourceKind::Application,
            ResourceColumns::TrustPolicy => ResourceKind::TrustPolicy,
            ResourceColumns::RetentionPolicy => ResourceKind::RetentionPolicy,
        }
    }
}

/// One resource as it should be after an apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceChange {
    pub columns: ResourceColumns,
    pub name: String,
    /// The canonical rendering (`resources::Resource::canonical`). Resources are
    /// compared by this text alone; the columns are derived from it.
    pub canonical: String,
    /// The revision the caller read and based its diff on; `None` when it saw no such
    /// resource (the apply then creates it and must not find one).
    pub expected_revision: Option<i64>,
}

impl ResourceChange {
    pub fn kind(&self) -> ResourceKind {
        self.columns.kind()
    }
}

/// A resource and the revision an apply left it at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedResource {
    pub kind: ResourceKind,
    pub name: String,
    pub revision: i64,
}

/// What a successful apply did, each list ordered by kind and name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppliedChanges {
    /// New resources, at revision 1.
    pub created: Vec<AppliedResource>,
    /// Resources whose text changed, at their new revision.
    pub updated: Vec<AppliedResource>,
    /// Resources whose stored text was already the one applied.
    pub unchanged: Vec<AppliedResource>,
    /// Repositories that did not exist and were created for applications.
    pub created_repositories: Vec<RepoName>,
}

/// A resource whose stored revision is not the one a change was based on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyConflict {
    pub kind: ResourceKind,
    pub name: String,
    pub expected_revision: Option<i64>,
    /// `None` when the resource does not exist.
    pub stored_revision: Option<i64>,
}

/// The result of [`Resources::apply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// Every change is in place, committed in one transaction.
    Applied(AppliedChanges),
    /// Someone changed a resource since the caller read it: nothing was written (not
    /// even the other changes); re-read, show the new diff, apply again.
    Conflict(ApplyConflict),
}

/// A stored resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResource {
    pub kind: ResourceKind,
    pub name: String,
    pub canonical: String,
    pub revision: i64,
    /// Milliseconds since the Unix epoch of the apply that last changed it.
    pub updated_at: i64,
}

/// Access to declared resources.
pub struct Resources<'a> {
    pub(crate) backend: &'a Backend,
}

/// The stored `(revision, canonical)` of a resource, read inside transaction `$tx`.
macro_rules! stored_revision_and_text {
    ($tx:ident, $kind:expr, $name:expr) => {
        sqlx::query("SELECT revision, canonical FROM resources WHERE kind = $1 AND name = $2")
            .bind($kind.as_str())
            .bind($name)
            .fetch_optional(&mut *$tx)
            .await?
            .map(|row| {
                (
                    row.get::<i64, _>("revision"),
                    row.get::<String, _>("canonical"),
                )
            })
    };
}

fn conflict(change: &ResourceChange, stored_revision: Option<i64>) -> ApplyOutcome {
    ApplyOutcome::Conflict(ApplyConflict {
        kind: change.kind(),
        name: change.name.clone(),
        expected_revision: change.expected_revision,
        stored_revision,
    })
}

fn audit_entry(
    at: i64,
    actor: &str,
    change: &ResourceChange,
    revision: i64,
    previous_revision: Option<i64>,
) -> NewAuditEntry {
    NewAuditEntry {
        at,
        actor: actor.to_owned(),
        action: AuditAction::Apply,
        // `Application/web-app`: the capitalized kind keeps these apart from
        // repository names, which are lowercase.
        subject: format!("{}/{}", change.kind(), change.name),
        payload: serde_json::json!({
            "kind": change.kind().as_str(),
            "name": change.name,
            "revision": revision,
            "previous_revision": previous_revision,
        }),
    }
}

impl Resources<'_> {
    /// Applies every change in one transaction, as done by `actor`: a new resource is
    /// created at revision 1, a changed one moves to the next revision, an identical one
    /// is left alone; every application's repository is created if missing. Each created
    /// or changed resource appends one audit entry in the same transaction.
    ///
    /// If any resource's stored revision is not the change's `expected_revision` —
    /// checked before writing and again by the write itself, so a concurrent apply
    /// cannot slip in between — the outcome is [`ApplyOutcome::Conflict`] and nothing is
    /// written. Each resource should appear once (a parsed `ResourceSet` guarantees it):
    /// a repeat is checked against what its first occurrence wrote.
    ///
    /// Rows are written in kind-and-name order and the audit log is appended last, so
    /// concurrent applies on PostgreSQL wait for each other instead of deadlocking.
    pub async fn apply(
        &self,
        changes: &[ResourceChange],
        actor: &str,
    ) -> Result<ApplyOutcome, StoreError> {
        let mut ordered: Vec<&ResourceChange> = changes.iter().collect();
        ordered.sort_by(|a, b| (a.kind(), &a.name).cmp(&(b.kind(), &b.name)));
        let mut repositories: Vec<&RepoName> = ordered
            .iter()
            .filter_map(|change| match &change.columns {
                ResourceColumns::Application(application) => Some(&application.repository),
                ResourceColumns::Pipeline
                | ResourceColumns::TrustPolicy
                | ResourceColumns::RetentionPolicy => None,
            })
            .collect();
        repositories.sort();
        repositories.dedup();
        with_pool!(self.backend, write, |pool| {
            let now = now_millis();
            let mut tx = pool.begin().await?;
            let mut applied = AppliedChanges::default();
            let mut audit_entries = Vec::new();
            for change in &ordered {
                let kind = change.kind();
                let stored = stored_revision_and_text!(tx, kind, &change.name);
                let stored_revision = stored.as_ref().map(|(revision, _)| *revision);
                if stored_revision != change.expected_revision {
                    return Ok(conflict(change, stored_revision));
                }
                let (repository, pipeline, app_type) = match &change.columns {
                    ResourceColumns::Application(application) => (
                        Some(application.repository.as_str()),
                        Some(application.pipeline.as_str()),
                        Some(application.app_type.as_str()),
                    ),
                    ResourceColumns::Pipeline
                    | ResourceColumns::TrustPolicy
                    | ResourceColumns::RetentionPolicy => (None, None, None),
                };
                let applied_resource = |revision| AppliedResource {
                    kind,
                    name: change.name.clone(),
                    revision,
                };
                match stored {
                    None => {
                        let inserted = sqlx::query(
                            "INSERT INTO resources (kind, name, canonical, revision, repository, pipeline, app_type, created_at, updated_at) \
                             VALUES ($1, $2, $3, 1, $4, $5, $6, $7, $7) ON CONFLICT (kind, name) DO NOTHING",
                        )
                        .bind(kind.as_str())
                        .bind(&change.name)
                        .bind(&change.canonical)
                        .bind(repository)
                        .bind(pipeline)
                        .bind(app_type)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                        if inserted == 0 {
                            // Created by a concurrent apply after we looked.
                            let stored = stored_revision_and_text!(tx, kind, &change.name);
                            return Ok(conflict(change, stored.map(|(revision, _)| revision)));
                        }
                        audit_entries.push(audit_entry(now, actor, change, 1, None));
                        applied.created.push(applied_resource(1));
                    }
                    Some((revision, canonical)) if canonical == change.canonical => {
                        applied.unchanged.push(applied_resource(revision));
                    }
                    Some((revision, _)) => {
                        let updated = sqlx::query(
                            "UPDATE resources SET canonical = $3, revision = revision + 1, repository = $4, \
                             pipeline = $5, app_type = $6, updated_at = $7 \
                             WHERE kind = $1 AND name = $2 AND revision = $8",
                        )
                        .bind(kind.as_str())
                        .bind(&change.name)
                        .bind(&change.canonical)
                        .bind(repository)
                        .bind(pipeline)
                        .bind(app_type)
                        .bind(now)
                        .bind(revision)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                        if updated == 0 {
                            // Changed by a concurrent apply after we looked.
                            let stored = stored_revision_and_text!(tx, kind, &change.name);
                            return Ok(conflict(change, stored.map(|(revision, _)| revision)));
                        }
                        audit_entries.push(audit_entry(
                            now,
                            actor,
                            change,
                            revision + 1,
                            Some(revision),
                        ));
                        applied.updated.push(applied_resource(revision + 1));
                    }
                }
            }
            for repository in repositories {
                let created = sqlx::query(INSERT_REPOSITORY_IF_MISSING)
                    .bind(repository.as_str())
                    .bind(now)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if created == 1 {
                    applied.created_repositories.push(repository.clone());
                }
            }
            for entry in &audit_entries {
                crate::append_audit!(tx, entry);
            }
            tx.commit().await?;
            Ok(ApplyOutcome::Applied(applied))
        })
    }

    /// The application whose repository is `repository`, if one declares it.
    pub async fn application_of(
        &self,
        repository: &RepoName,
    ) -> Result<Option<String>, StoreError> {
        with_pool!(self.backend, read, |pool| {
            let row = sqlx::query(
                "SELECT name FROM resources WHERE kind = 'Application' AND repository = $1 ORDER BY name LIMIT 1",
            )
            .bind(repository.as_str())
            .fetch_optional(pool)
            .await?;
            Ok(row.map(|row| row.get("name")))
        })
    }

    /// The repository application `application` declares, if it is declared.
    pub async fn repository_of(&self, application: &str) -> Result<Option<String>, StoreError> {
        with_pool!(self.backend, read, |pool| {
            let row = sqlx::query(
                "SELECT repository FROM resources WHERE kind = 'Application' AND name = $1",
            )
            .bind(application)
            .fetch_optional(pool)
            .await?;
            Ok(row.and_then(|row| row.get::<Option<String>, _>("repository")))
        })
    }

    /// The stored resource of this kind and name.
    pub async fn get(
        &self,
        kind: ResourceKind,
        name: &str,
    ) -> Result<Option<StoredResource>, StoreError> {
        with_pool!(self.backend, read, |pool| {
            let row = sqlx::query(
                "SELECT canonical, revision, updated_at FROM resources WHERE kind = $1 AND name = $2",
            )
            .bind(kind.as_str())
            .bind(name)
            .fetch_optional(pool)
            .await?;
            Ok(row.map(|row| StoredResource {
                kind,
                name: name.to_owned(),
                canonical: row.get("canonical"),
                revision: row.get("revision"),
                updated_at: row.get("updated_at"),
            }))
        })
    }

    /// Every resource of one kind, in byte order of their names: for kinds read whole,
    /// such as the trust policies a token exchange matches against, of which there are
    /// few. Pages of a kind that may be long come from [`Resources::list`].
    pub async fn all(&self, kind: ResourceKind) -> Result<Vec<StoredResource>, StoreError> {
        self.list(kind, None, i64::MAX).await
    }

    /// Resources of one kind in byte order of their names, strictly after `after`, at
    /// most `limit`.
    pub async fn list(
        &self,
        kind: ResourceKind,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<StoredResource>, StoreError> {
        with_pool!(self.backend, read, |pool| {
            let rows = sqlx::query(
                "SELECT name, canonical, revision, updated_at FROM resources \
                 WHERE kind = $1 AND name > $2 ORDER BY name LIMIT $3",
            )
            .bind(kind.as_str())
            .bind(after.unwrap_or(""))
            .bind(limit)
            .fetch_all(pool)
            .await?;
            Ok(rows
                .iter()
                .map(|row| StoredResource {
                    kind,
                    name: row.get("name"),
                    canonical: row.get("canonical"),
                    revision: row.get("revision"),
                    updated_at: row.get("updated_at"),
                })
                .collect())
        })
    }

    /// A page of declared applications by name after `after`, those `filter` lets
    /// through. One query.
    pub async fn applications_matching(
        &self,
        after: Option<&str>,
        limit: i64,
        filter: &ApplicationFilter,
    ) -> Result<Vec<StoredResource>, StoreError> {
        let contains = filter
            .name_contains
            .as_deref()
            .map(|text| format!("%{}%", like_escaped(&text.to_lowercase())))
            .unwrap_or_else(|| "%".to_owned());
        let namespace = filter
            .namespace
            .as_deref()
            .map(|text| format!("{}/%", like_escaped(text)))
            .unwrap_or_else(|| "%".to_owned());
        let state = filter.state.map_or("", |state| state.condition());
        with_pool!(self.backend, read, |pool| {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT name, canonical, revision, updated_at FROM resources \
                 WHERE kind = $1 AND name > $2 AND LOWER(name) LIKE $3 ESCAPE '\\' \
                 AND repository LIKE $4 ESCAPE '\\' {state} ORDER BY name LIMIT $5",
            )))
            .bind(ResourceKind::Application.as_str())
            .bind(after.unwrap_or(""))
            .bind(contains)
            .bind(namespace)
            .bind(limit)
            .fetch_all(pool)
            .await?;
            Ok(rows
                .iter()
                .map(|row| StoredResource {
                    kind: ResourceKind::Application,
                    name: row.get("name"),
                    canonical: row.get("canonical"),
                    revision: row.get("revision"),
                    updated_at: row.get("updated_at"),
                })
                .collect())
        })
    }
}

/// Which applications [`Resources::applications_matching`] lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplicationFilter {
    /// Only those whose name holds this (without regard to case).
    pub name_contains: Option<String>,
    /// Only those whose repository is in this namespace (its first path segment).
    pub namespace: Option<String>,
    /// Only those with an environment in this state.
    pub state: Option<EnvironmentCondition>,
}

/// A state some environment of an application is in, to filter the board by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvironmentCondition {
    /// A promotion into it waits on its gate.
    Waiting,
    /// A deployment to it is under way.
    Deploying,
    /// Its latest finished deployment failed.
    Failed,
    /// It is held.
    Held,
    /// What it runs differs from what Gantry deployed.
    Drift,
}

impl EnvironmentCondition {
    pub const ALL: [EnvironmentCondition; 5] = [
        EnvironmentCondition::Waiting,
        EnvironmentCondition::Deploying,
        EnvironmentCondition::Failed,
        EnvironmentCondition::Held,
        EnvironmentCondition::Drift,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EnvironmentCondition::Waiting => "waiting",
            EnvironmentCondition::Deploying => "deploying",
            EnvironmentCondition::Failed => "failed",
            EnvironmentCondition::Held => "held",
            EnvironmentCondition::Drift => "drift",
        }
    }

    pub fn parse(text: &str) -> Option<EnvironmentCondition> {
        EnvironmentCondition::ALL
            .into_iter()
            .find(|state| state.as_str() == text)
    }

    /// The SQL condition on a `resources` row (fixed text, no input in it).
    fn condition(self) -> &'static str {
        match self {
            EnvironmentCondition::Waiting => {
                "AND EXISTS (SELECT 1 FROM promotions p WHERE p.application = resources.name \
                 AND p.state = 'waiting')"
            }
            EnvironmentCondition::Deploying => {
                "AND EXISTS (SELECT 1 FROM deployments d WHERE d.application = resources.name \
                 AND d.state = 'deploying')"
            }
            EnvironmentCondition::Failed => {
                "AND EXISTS (SELECT 1 FROM deployments d WHERE d.application = resources.name \
                 AND d.state = 'failed' AND d.id = (SELECT MAX(l.id) FROM deployments l \
                 WHERE l.application = d.application AND l.environment = d.environment \
                 AND l.state <> 'deploying'))"
            }
            EnvironmentCondition::Held => {
                "AND EXISTS (SELECT 1 FROM environments e WHERE e.application = resources.name \
                 AND e.hold_reason IS NOT NULL)"
            }
            EnvironmentCondition::Drift => {
                "AND EXISTS (SELECT 1 FROM environments e WHERE e.application = resources.name \
                 AND e.drift_since IS NOT NULL)"
            }
        }
    }
}

/// `text` with LIKE's wildcards and the escape character escaped by a backslash.
fn like_escaped(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}
