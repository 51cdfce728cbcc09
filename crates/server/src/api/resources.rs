//! Declared resources over HTTP: `POST /api/v1/apply` (the server side of
//! `gantry apply`), and reading what is stored.
//!
//! An apply is the engine's (`Engine::apply`: parse, check references, diff, store
//! with the revisions diffed against); this module checks the caller may apply, reads
//! the YAML body within its limit and renders the outcome: every problem of the file
//! a 400, a resource changed meanwhile by someone else a 409.

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use domain::ResourceKind;
use engine::{ApplyError, PlannedAction};
use http::{HeaderMap, header};
use resources::ResourceErrors;
use serde_json::json;

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
    let applied = state
        .engine
        .apply(principal.display_name(), file, &text, query.dry_run)
        .await
        .map_err(|error| match error {
            ApplyError::Invalid(errors) => invalid_resources(errors),
            ApplyError::Conflict(ref conflict) => ApiError::conflict(
                error.to_string(),
                json!({
                    "kind": conflict.kind.as_str(),
                    "name": conflict.name,
                    "expected_revision": conflict.expected_revision,
                    "stored_revision": conflict.stored_revision,
                }),
            ),
            ApplyError::Engine(error) => error.into(),
        })?;
    Ok(Json(ApplyResponse {
        dry_run: applied.dry_run,
        resources: applied
            .resources
            .into_iter()
            .map(|plan| ResourceOutcome {
                kind: plan.kind.as_str().to_owned(),
                name: plan.name,
                action: match plan.action {
                    PlannedAction::Create => ApplyAction::Create,
                    PlannedAction::Update => ApplyAction::Update,
                    PlannedAction::Unchanged => ApplyAction::Unchanged,
                },
                revision: plan.revision,
                diff: plan.diff,
            })
            .collect(),
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
        ("kind" = String, Path, description = "`pipelines`, `applications`, `trustpolicies` or `retentionpolicies`"),
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
        ("kind" = String, Path, description = "`pipelines`, `applications`, `trustpolicies` or `retentionpolicies`"),
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

/// `pipelines`, `applications`, `trustpolicies` or `retentionpolicies`, as the URL
/// names a kind.
fn parse_kind(plural: &str) -> Result<ResourceKind, ApiError> {
    match plural {
        "pipelines" => Ok(ResourceKind::Pipeline),
        "applications" => Ok(ResourceKind::Application),
        "trustpolicies" => Ok(ResourceKind::TrustPolicy),
        "retentionpolicies" => Ok(ResourceKind::RetentionPolicy),
        other => Err(ApiError::not_found(format!(
            "no resource kind `{other}`: use pipelines, applications, trustpolicies or retentionpolicies"
        ))),
    }
}

fn rfc3339(millis: i64) -> String {
    jiff::Timestamp::from_millisecond(millis)
        .map(|timestamp| timestamp.to_string())
        .unwrap_or_else(|_| millis.to_string())
}
