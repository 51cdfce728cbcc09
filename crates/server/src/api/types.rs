//! The query parameters of the declared-resources routes. The JSON bodies are
//! `api_types`' (re-exported here), shared with the client.

pub(crate) use api_types::resources::*;
use serde::Deserialize;
use utoipa::IntoParams;

/// Query of `POST /api/v1/apply`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ApplyQuery {
    /// Compute and return the changes without making them.
    #[serde(default)]
    pub(crate) dry_run: bool,
    /// The file's name as errors should show it.
    pub(crate) file: Option<String>,
}

/// Query of `GET /api/v1/resources/{kind}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// At most this many items (1 to 1000, default 100).
    pub(crate) limit: Option<i64>,
    /// Only names after this one: the `next` of the previous page.
    pub(crate) after: Option<String>,
}
