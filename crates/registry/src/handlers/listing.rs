//! Listings: `GET /v2/{name}/tags/list`, `GET /v2/_catalog` (both paginated with `n`,
//! `last` and a `Link` header) and `GET /v2/{name}/referrers/{digest}`.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use domain::{Digest, RepoName};
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;

use super::{existing_repository, header_value};
use crate::error::{ErrorCode, RegistryError};
use crate::{Registry, headers, manifest};

/// The most entries one page holds, whatever `n` asks for.
const MAX_PAGE: u32 = 10_000;

struct Page {
    limit: u32,
    last: Option<String>,
}

fn page(query: &HashMap<String, String>) -> Result<Page, RegistryError> {
    let limit = match query.get("n") {
        None => MAX_PAGE,
        Some(n) => n.parse::<u32>().map_err(|_| {
            RegistryError::new(
                ErrorCode::Unsupported,
                StatusCode::BAD_REQUEST,
                format!("n must be a non-negative integer, not `{n}`"),
            )
        })?,
    }
    .min(MAX_PAGE);
    Ok(Page {
        limit,
        last: query.get("last").cloned(),
    })
}

fn json_response<T: Serialize>(
    value: &T,
    content_type: &'static str,
) -> Result<Response, RegistryError> {
    let body = serde_json::to_vec(value).map_err(|e| RegistryError::internal("listing", e))?;
    let mut response = crate::empty(StatusCode::OK);
    response.headers_mut().insert(
        header::CONTENT_LENGTH,
        header_value(&body.len().to_string()),
    );
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    *response.body_mut() = Body::from(body);
    Ok(response)
}

fn add_next_link(response: &mut Response, path: &str, limit: u32, last: &str) {
    response.headers_mut().insert(
        header::LINK,
        header_value(&format!("<{path}?n={limit}&last={last}>; rel=\"next\"")),
    );
}

#[derive(Serialize)]
struct TagList<'a> {
    name: &'a str,
    tags: Vec<String>,
}

pub(super) async fn tags(
    registry: &Registry,
    name: &RepoName,
    request: Request,
) -> Result<Response, RegistryError> {
    let page = page(&headers::query(request.uri())?)?;
    let repository = existing_repository(registry, name).await?;
    let mut tags = if page.limit == 0 {
        Vec::new()
    } else {
        registry
            .store
            .manifests()
            .tags(
                repository.id,
                page.last.as_deref(),
                i64::from(page.limit) + 1,
            )
            .await?
    };
    let more = tags.len() > page.limit as usize;
    tags.truncate(page.limit as usize);
    let names: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
    let mut response = json_response(
        &TagList {
            name: name.as_str(),
            tags: names.clone(),
        },
        "application/json",
    )?;
    if let (true, Some(last)) = (more, names.last()) {
        add_next_link(
            &mut response,
            &format!("/v2/{name}/tags/list"),
            page.limit,
            last,
        );
    }
    Ok(response)
}

#[derive(Serialize)]
struct Catalog {
    repositories: Vec<String>,
}

pub(super) async fn catalog(
    registry: &Registry,
    request: Request,
) -> Result<Response, RegistryError> {
    let page = page(&headers::query(request.uri())?)?;
    let mut names = if page.limit == 0 {
        Vec::new()
    } else {
        registry
            .store
            .repositories()
            .list(page.last.as_deref(), i64::from(page.limit) + 1)
            .await?
    };
    let more = names.len() > page.limit as usize;
    names.truncate(page.limit as usize);
    let repositories: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut response = json_response(
        &Catalog {
            repositories: repositories.clone(),
        },
        "application/json",
    )?;
    if let (true, Some(last)) = (more, repositories.last()) {
        add_next_link(&mut response, "/v2/_catalog", page.limit, last);
    }
    Ok(response)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReferrersIndex {
    schema_version: u32,
    media_type: &'static str,
    manifests: Vec<ReferrerDescriptor>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReferrerDescriptor {
    media_type: String,
    digest: String,
    size: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    artifact_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    annotations: Option<serde_json::Value>,
}

pub(super) async fn referrers(
    registry: &Registry,
    name: &RepoName,
    digest: &Digest,
    request: Request,
) -> Result<Response, RegistryError> {
    let query = headers::query(request.uri())?;
    let artifact_type = query.get("artifactType").filter(|t| !t.is_empty());
    // The spec forbids a 404 here: an unknown repository simply has no referrers.
    let referrers = match registry.store.repositories().get(name).await? {
        Some(repository) => {
            registry
                .store
                .manifests()
                .referrers(repository.id, digest, artifact_type.map(String::as_str))
                .await?
        }
        None => Vec::new(),
    };
    let manifests = referrers
        .into_iter()
        .map(|r| ReferrerDescriptor {
            media_type: r.media_type,
            digest: r.digest.to_string(),
            size: r.size,
            artifact_type: r.artifact_type,
            annotations: r
                .annotations
                .and_then(|text| serde_json::from_str(&text).ok()),
        })
        .collect();
    let index = ReferrersIndex {
        schema_version: 2,
        media_type: manifest::OCI_INDEX,
        manifests,
    };
    let mut response = json_response(&index, manifest::OCI_INDEX)?;
    if artifact_type.is_some() {
        response.headers_mut().insert(
            "oci-filters-applied",
            HeaderValue::from_static("artifactType"),
        );
    }
    Ok(response)
}
