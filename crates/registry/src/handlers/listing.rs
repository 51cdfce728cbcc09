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

impl Page {
    /// How many entries to fetch: one more than the page, to learn whether another follows.
    fn fetch(&self) -> i64 {
        i64::from(self.limit) + 1
    }

    /// Cuts the fetched entries to the page; returns them and, when more follow, the
    /// `last` value of the next page.
    fn cut<T: ToString>(&self, mut entries: Vec<T>) -> (Vec<String>, Option<String>) {
        let more = entries.len() > self.limit as usize;
        entries.truncate(self.limit as usize);
        let entries: Vec<String> = entries.iter().map(ToString::to_string).collect();
        let next = if more { entries.last().cloned() } else { None };
        (entries, next)
    }

    /// Adds `Link: <path?n=…&last=…>; rel="next"` when another page follows.
    fn link_next(&self, response: &mut Response, path: &str, next: Option<String>) {
        if let Some(last) = next {
            let link = format!("<{path}?n={}&last={last}>; rel=\"next\"", self.limit);
            response
                .headers_mut()
                .insert(header::LINK, header_value(&link));
        }
    }
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
    let tags = match page.limit {
        0 => Vec::new(),
        _ => {
            registry
                .store
                .manifests()
                .tags(repository.id, page.last.as_deref(), page.fetch())
                .await?
        }
    };
    let (tags, next) = page.cut(tags);
    let mut response = json_response(
        &TagList {
            name: name.as_str(),
            tags,
        },
        "application/json",
    )?;
    page.link_next(&mut response, &format!("/v2/{name}/tags/list"), next);
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
    let names = match page.limit {
        0 => Vec::new(),
        _ => {
            registry
                .store
                .repositories()
                .list(page.last.as_deref(), page.fetch())
                .await?
        }
    };
    let (repositories, next) = page.cut(names);
    let mut response = json_response(&Catalog { repositories }, "application/json")?;
    page.link_next(&mut response, "/v2/_catalog", next);
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
