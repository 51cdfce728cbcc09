//! Paging the API's listings: one rule for the `limit` a caller may ask for (each
//! listing has its default and its maximum) and, through [`engine::Page`], one rule
//! for `next`.

use super::error::ApiError;

/// A listing's default and largest page.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) default: i64,
    pub(crate) max: i64,
}

/// The page size to use: the caller's, when within 1 to `limits.max`, else a 400.
pub(crate) fn limit(requested: Option<i64>, limits: Limits) -> Result<i64, ApiError> {
    match requested {
        None => Ok(limits.default),
        Some(limit) if (1..=limits.max).contains(&limit) => Ok(limit),
        Some(limit) => Err(ApiError::bad_request(format!(
            "limit {limit} is out of range 1..={}",
            limits.max
        ))),
    }
}
