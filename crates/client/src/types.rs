//! The JSON of the declared-resources and audit routes, and the error envelope, are
//! `api_types`' (re-exported here): the same definitions the server answers with.
//! Unknown fields are ignored, so a newer server can add some without breaking an older
//! command line; each type serializes back to the same JSON for `-o json`.

pub use api_types::resources::*;

/// The kinds of declared resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceKind {
    Pipeline,
    Application,
    TrustPolicy,
    RetentionPolicy,
}

impl ResourceKind {
    /// The path segment of `/api/v1/resources/{kind}`.
    pub fn plural(self) -> &'static str {
        match self {
            ResourceKind::Pipeline => "pipelines",
            ResourceKind::Application => "applications",
            ResourceKind::TrustPolicy => "trustpolicies",
            ResourceKind::RetentionPolicy => "retentionpolicies",
        }
    }
}
