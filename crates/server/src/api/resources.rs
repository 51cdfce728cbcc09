//! Declared resources over HTTP: `POST /api/v1/apply` (the server side of
//! `gantry apply`), and reading what is stored.
//!
//! An apply parses the file, checks its references against the pipelines and
//! applications already stored, diffs each resource's canonical text against the stored one, and — unless it
//! is a dry run — hands every change to `store.resources().apply` with the revision
//! it diffed against, so a change made meanwhile by someone else is refused (409)
//! instead of overwritten unseen.

use std::collections::{BTreeMap, BTreeSet};

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use domain::ResourceKind;
use domain::pipeline::{AppName, Pipeline};
use http::{HeaderMap, header};
use resources::{DeclaredPipeline, Resource, ResourceErrors, ResourceSet};
use serde_json::json;
use store::{ApplicationColumns, ApplyOutcome, ResourceChange, ResourceColumns, StoredResource};

use super::error::ApiError;
use super::extract::{ApplyResources, Authorized, ReadResources};
use super::types::{
    ApplyAction, ApplyQuery, ApplyResponse, DocumentRef, ErrorBody, ListQuery, ResourceDetail,
    ResourceList, ResourceOutcome, ResourceProblem, ResourceSummary,
};
use crate::AppState;

/// Largest resources file accepted, in bytes.
const MAX_APPLY_BYTES: usize = 1 << 20;

/// The media types a resources file may be sent as.
const YAML_MEDIA_TYPES: [&str; 3] = ["application/yaml", "text/yaml", "application/x-yaml"];

/// Resources per page.
const PAGE: super::page::Limits = super::page::Limits {
    default: 100,
    max: 1000,
};

/// Apply a resources file (multi-document YAML of Pipelines, Applications and
/// TrustPolicies).
///
/// Answers 200 whether or not anything changed: an apply is idempotent, and each
/// resource's `action` says what happened to it.
#[utoipa::path(
    post,
    path = "/api/v1/apply",
    params(ApplyQuery),
    request_body(content = String, content_type = "application/yaml", description = "The resources file"),
    responses(
        (status = 200, description = "Applied, or on a dry run what would change", body = ApplyResponse),
        (status = 400, description = "`invalid_resources`: every problem of the file", body = ErrorBody),
        (status = 401, description = "No or invalid credentials", body = ErrorBody),
        (status = 403, description = "The caller lacks `resources:apply`", body = ErrorBody),
        (status = 409, description = "A resource changed since it was diffed", body = ErrorBody),
        (status = 413, description = "The file is larger than 1 MiB", body = ErrorBody),
        (status = 415, description = "The body is not YAML", body = ErrorBody),
    )
)]
pub(crate) async fn apply(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<ApplyResources>,
    headers: HeaderMap,
    query: Result<Query<ApplyQuery>, QueryRejection>,
    body: Body,
) -> Result<Json<ApplyResponse>, ApiError> {
    let Query(query) = query.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    require_yaml(&headers)?;
    let text = read_text(body).await?;
    let file = query.file.as_deref().unwrap_or("request");

    let set = resources::parse_file(file, &text).map_err(invalid_resources)?;
    let known_pipelines = stored_pipelines_referenced(&state, &set).await?;
    let known_applications = stored_applications_referenced(&state, &set).await?;
    set.check_references(&known_pipelines, &known_applications)
        .map_err(invalid_resources)?;
    let mut owners = Vec::new();
    for application in set.applications() {
        if let Some(owner) = state
            .store
            .resources()
            .application_of(&application.repository)
            .await?
        {
            owners.push((application.repository.clone(), owner));
        }
    }
    set.check_repositories(&owners).map_err(invalid_resources)?;

    let mut planned = Vec::with_capacity(set.len());
    for resource in set.resources() {
        let stored = state
            .store
            .resources()
            .get(resource.kind(), resource.name())
            .await?;
        planned.push(Planned::new(resource, stored));
    }

    if query.dry_run {
        return Ok(Json(ApplyResponse {
            dry_run: true,
            resources: planned
                .into_iter()
                .map(|plan| {
                    let revision = plan.stored_revision;
                    plan.outcome(revision)
                })
                .collect(),
            created_repositories: Vec::new(),
        }));
    }

    let changes: Vec<ResourceChange> = planned.iter().map(Planned::change).collect();
    let applied = match state
        .store
        .resources()
        .apply(&changes, principal.display_name())
        .await?
    {
        ApplyOutcome::Applied(applied) => applied,
        ApplyOutcome::Conflict(conflict) => {
            return Err(ApiError::conflict(
                format!(
                    "{} `{}` changed since this apply read it: review the new diff and apply again",
                    conflict.kind, conflict.name
                ),
                json!({
                    "kind": conflict.kind.as_str(),
                    "name": conflict.name,
                    "expected_revision": conflict.expected_revision,
                    "stored_revision": conflict.stored_revision,
                }),
            ));
        }
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
    Ok(Json(ApplyResponse {
        dry_run: false,
        resources,
        created_repositories: applied
            .created_repositories
            .iter()
            .map(|repository| repository.to_string())
            .collect(),
    }))
}

/// List the stored resources of one kind.
#[utoipa::path(
    get,
    path = "/api/v1/resources/{kind}",
    params(
        ("kind" = String, Path, description = "`pipelines`, `applications` or `trustpolicies`"),
        ListQuery,
    ),
    responses(
        (status = 200, description = "One page, in byte order of names", body = ResourceList),
        (status = 400, description = "A bad `limit`", body = ErrorBody),
        (status = 401, description = "No or invalid credentials", body = ErrorBody),
        (status = 404, description = "No such kind", body = ErrorBody),
    )
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    _: Authorized<ReadResources>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<ResourceList>, ApiError> {
    let Path(kind) = path.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    let Query(query) = query.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    let kind = parse_kind(&kind)?;
    let limit = super::page::limit(query.limit, PAGE)?;
    // One more than asked tells whether another page follows.
    let stored = state
        .store
        .resources()
        .list(kind, query.after.as_deref(), limit + 1)
        .await?;
    let engine::Page {
        items: stored,
        next,
    } = engine::Page::from_one_more(stored, limit, |resource| resource.name.clone());
    Ok(Json(ResourceList {
        items: stored
            .into_iter()
            .map(|resource| ResourceSummary {
                kind: resource.kind.as_str().to_owned(),
                updated_at: rfc3339(resource.updated_at),
                name: resource.name,
                revision: resource.revision,
            })
            .collect(),
        next,
    }))
}

/// One stored resource with its canonical text.
#[utoipa::path(
    get,
    path = "/api/v1/resources/{kind}/{name}",
    params(
        ("kind" = String, Path, description = "`pipelines`, `applications` or `trustpolicies`"),
        ("name" = String, Path, description = "The resource's name"),
    ),
    responses(
        (status = 200, description = "The resource", body = ResourceDetail),
        (status = 401, description = "No or invalid credentials", body = ErrorBody),
        (status = 404, description = "No such kind or resource", body = ErrorBody),
    )
)]
pub(crate) async fn get(
    State(state): State<AppState>,
    _: Authorized<ReadResources>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<ResourceDetail>, ApiError> {
    let Path((kind, name)) =
        path.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    let kind = parse_kind(&kind)?;
    let resource = state
        .store
        .resources()
        .get(kind, &name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no {kind} named `{name}`")))?;
    Ok(Json(ResourceDetail {
        kind: resource.kind.as_str().to_owned(),
        updated_at: rfc3339(resource.updated_at),
        name: resource.name,
        revision: resource.revision,
        canonical: resource.canonical,
    }))
}

/// One resource of the file, diffed against what is stored.
struct Planned {
    kind: ResourceKind,
    name: String,
    columns: ResourceColumns,
    canonical: String,
    stored_revision: Option<i64>,
    action: ApplyAction,
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
            None => ApplyAction::Create,
            Some(_) if resources::has_changes(&lines) => ApplyAction::Update,
            Some(_) => ApplyAction::Unchanged,
        };
        let diff = match action {
            ApplyAction::Unchanged => String::new(),
            ApplyAction::Create | ApplyAction::Update => {
                lines.iter().map(|line| format!("{line}\n")).collect()
            }
        };
        let columns = match resource {
            Resource::Pipeline(_) => ResourceColumns::Pipeline,
            Resource::TrustPolicy(_) => ResourceColumns::TrustPolicy,
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

    fn outcome(self, revision: Option<i64>) -> ResourceOutcome {
        ResourceOutcome {
            kind: self.kind.as_str().to_owned(),
            name: self.name,
            action: self.action,
            revision,
            diff: self.diff,
        }
    }
}

/// The stored pipelines that applications of `set` name but `set` does not declare.
///
/// A stored pipeline is read back from its canonical text
/// ([`DeclaredPipeline::from_canonical`]); one that no longer reads is a server fault.
async fn stored_pipelines_referenced(
    state: &AppState,
    set: &ResourceSet,
) -> Result<Vec<Pipeline>, ApiError> {
    let names: BTreeSet<&str> = set
        .applications()
        .filter(|application| set.pipeline(&application.pipeline).is_none())
        .map(|application| application.pipeline.as_str())
        .collect();
    let mut pipelines = Vec::new();
    for name in names {
        let Some(stored) = state
            .store
            .resources()
            .get(ResourceKind::Pipeline, name)
            .await?
        else {
            continue;
        };
        let declared = DeclaredPipeline::from_canonical(&stored.canonical).map_err(|errors| {
            ApiError::internal(
                &format!("the stored pipeline `{name}` cannot be read"),
                &errors,
            )
        })?;
        pipelines.push(declared.pipeline().clone());
    }
    Ok(pipelines)
}

/// The stored applications that trust policies of `set` name but `set` does not declare.
async fn stored_applications_referenced(
    state: &AppState,
    set: &ResourceSet,
) -> Result<Vec<AppName>, ApiError> {
    let names: BTreeSet<&AppName> = set
        .trust_policies()
        .flat_map(|policy| &policy.applications)
        .filter(|application| set.application(application).is_none())
        .collect();
    let mut known = Vec::new();
    for name in names {
        let stored = state
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

fn invalid_resources(errors: ResourceErrors) -> ApiError {
    ApiError::invalid_resources(
        errors
            .into_iter()
            .map(|error| ResourceProblem {
                message: error.problem.to_string(),
                file: error.file,
                document: error.document.map(|document| DocumentRef {
                    index: document.index,
                    kind: document.kind,
                    name: document.name,
                }),
                field: error.field,
                line: error.position.map(|position| position.line),
                column: error.position.map(|position| position.column),
            })
            .collect(),
    )
}

/// Refuses a body that is not declared as YAML.
fn require_yaml(headers: &HeaderMap) -> Result<(), ApiError> {
    let declared = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok());
    let essence = declared
        .and_then(|text| text.split(';').next())
        .map(|essence| essence.trim().to_ascii_lowercase());
    match essence {
        Some(essence) if YAML_MEDIA_TYPES.contains(&essence.as_str()) => Ok(()),
        Some(essence) => Err(ApiError::unsupported_media_type(
            format!("a resources file is sent as application/yaml, not {essence}"),
            &YAML_MEDIA_TYPES,
        )),
        None => Err(ApiError::unsupported_media_type(
            "a resources file is sent with Content-Type: application/yaml",
            &YAML_MEDIA_TYPES,
        )),
    }
}

/// The body as text, refused beyond [`MAX_APPLY_BYTES`].
async fn read_text(body: Body) -> Result<String, ApiError> {
    let bytes = axum::body::to_bytes(body, MAX_APPLY_BYTES)
        .await
        .map_err(|error| {
            let too_large = std::error::Error::source(&error)
                .is_some_and(|source| source.is::<http_body_util::LengthLimitError>());
            if too_large {
                ApiError::payload_too_large(MAX_APPLY_BYTES)
            } else {
                ApiError::bad_request(format!("the body could not be read: {error}"))
            }
        })?;
    String::from_utf8(bytes.to_vec())
        .map_err(|_| ApiError::bad_request("a resources file is UTF-8 text"))
}

/// `pipelines`, `applications` or `trustpolicies`, as the URL names a kind.
fn parse_kind(plural: &str) -> Result<ResourceKind, ApiError> {
    match plural {
        "pipelines" => Ok(ResourceKind::Pipeline),
        "applications" => Ok(ResourceKind::Application),
        "trustpolicies" => Ok(ResourceKind::TrustPolicy),
        other => Err(ApiError::not_found(format!(
            "no resource kind `{other}`: use pipelines, applications or trustpolicies"
        ))),
    }
}

fn rfc3339(millis: i64) -> String {
    jiff::Timestamp::from_millisecond(millis)
        .map(|timestamp| timestamp.to_string())
        .unwrap_or_else(|_| millis.to_string())
}
