//! The query parameters of the promotion API, and the one rendering of a time. The
//! JSON bodies are `api_types`' (re-exported here), shared with the client: builds,
//! checks, promotions, approvals, deployments, environments, users and DORA metrics.

pub(crate) use api_types::access::*;
pub(crate) use api_types::promotion::*;
use serde::Deserialize;
use utoipa::IntoParams;

/// Milliseconds since the Unix epoch as RFC 3339.
pub(crate) fn rfc3339(millis: i64) -> String {
    jiff::Timestamp::from_millisecond(millis)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// Query of `GET /api/v1/promotions`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct PromotionQuery {
    pub(crate) application: Option<String>,
    pub(crate) environment: Option<String>,
    pub(crate) state: Option<String>,
    /// Only promotions with a smaller id (the `next` of the previous page).
    pub(crate) before: Option<i64>,
    /// At most this many (default 50, at most 500).
    pub(crate) limit: Option<i64>,
}

/// Query of `GET /api/v1/apps/{app}/history`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct HistoryQuery {
    pub(crate) environment: Option<String>,
    pub(crate) before: Option<i64>,
    pub(crate) limit: Option<i64>,
}

/// Query of `GET /api/v1/apps`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AppQuery {
    pub(crate) after: Option<String>,
    pub(crate) limit: Option<i64>,
}

/// Query of `GET /api/v1/metrics/dora`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct DoraQuery {
    /// One application; all by default.
    pub(crate) application: Option<String>,
    /// The window, in days back from now (default 30, at most 366).
    pub(crate) days: Option<u32>,
}

/// Query of `GET /api/v1/admission`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AdmissionQuery {
    /// The environment the image would run in.
    pub(crate) env: String,
    /// An image reference: `[host/]repository:tag` or `[host/]repository@digest`.
    pub(crate) image: String,
}

/// Query of `POST /api/v1/admission/review`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ReviewQuery {
    /// The environment the cluster runs.
    pub(crate) env: String,
}
