//! The wire shapes of the JSON API: the only types here that serialize, each described
//! for the OpenAPI document by `utoipa`. Handlers convert store and resource values into
//! these at the edge.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Every API error: a stable machine-readable `code`, a sentence for people, and
/// details whose shape depends on the code.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct ErrorBody {
    /// `bad_request`, `invalid_resources`, `unauthorized`, `forbidden`, `not_found`,
    /// `conflict`, `payload_too_large`, `unsupported_media_type` or `internal`.
    pub(crate) code: String,
    pub(crate) message: String,
    /// `invalid_resources`: a list of `ResourceProblem`; `forbidden`: `{permission}`;
    /// `conflict`: `{kind, name, expected_revision, stored_revision}`; otherwise null.
    #[schema(value_type = Object, nullable = true)]
    pub(crate) detail: serde_json::Value,
}

/// One problem in a resources file.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct ResourceProblem {
    /// The label the file was sent under (`?file=`, default `request`).
    pub(crate) file: String,
    /// The document it is in; null when it is not inside one.
    pub(crate) document: Option<DocumentRef>,
    /// The field path inside the document, e.g. `stages[2].gate.approvals[0].count`.
    pub(crate) field: Option<String>,
    /// 1-based, when the YAML parser knows it.
    pub(crate) line: Option<usize>,
    pub(crate) column: Option<usize>,
    /// What is wrong, in words that say what to change.
    pub(crate) message: String,
}

/// A document of a multi-document file, as far as it could be identified.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct DocumentRef {
    /// 1-based, counting `---` separators.
    pub(crate) index: usize,
    pub(crate) kind: Option<String>,
    pub(crate) name: Option<String>,
}

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

/// What an apply did (or, on a dry run, would do) to one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ApplyAction {
    Create,
    Update,
    Unchanged,
}

/// One resource of an apply.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct ResourceOutcome {
    /// `Pipeline`, `Application` or `TrustPolicy`.
    pub(crate) kind: String,
    pub(crate) name: String,
    pub(crate) action: ApplyAction,
    /// After an apply, the resource's revision; on a dry run, the stored revision the
    /// diff was computed against (null for a resource to be created).
    pub(crate) revision: Option<i64>,
    /// Every line of the canonical text, prefixed `  `, `- ` or `+ `; empty when
    /// unchanged.
    pub(crate) diff: String,
}

/// The answer of `POST /api/v1/apply`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct ApplyResponse {
    pub(crate) dry_run: bool,
    /// In the order of the file.
    pub(crate) resources: Vec<ResourceOutcome>,
    /// Repositories created for applications; always empty on a dry run.
    pub(crate) created_repositories: Vec<String>,
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

/// A stored resource, without its text.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct ResourceSummary {
    pub(crate) kind: String,
    pub(crate) name: String,
    pub(crate) revision: i64,
    /// RFC 3339, UTC.
    pub(crate) updated_at: String,
}

/// One page of resources of a kind, in byte order of their names.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct ResourceList {
    pub(crate) items: Vec<ResourceSummary>,
    /// The `after` of the next page; null on the last page.
    pub(crate) next: Option<String>,
}

/// A stored resource and its canonical text.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct ResourceDetail {
    pub(crate) kind: String,
    pub(crate) name: String,
    pub(crate) revision: i64,
    /// RFC 3339, UTC.
    pub(crate) updated_at: String,
    /// The canonical JSON rendering the diff of an apply compares.
    pub(crate) canonical: String,
}

/// The outcome of recomputing the audit chain.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct AuditVerification {
    /// Whether every entry verified and the log ends where its head says.
    pub(crate) intact: bool,
    /// How many entries verified (all of them when intact).
    pub(crate) entries: i64,
    /// The hash of the last entry, when intact.
    pub(crate) head: Option<String>,
    /// The first entry that does not verify.
    pub(crate) broken_at: Option<i64>,
    /// Why it does not verify.
    pub(crate) reason: Option<String>,
}

/// One audit entry as exported (a JSON Lines record).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct AuditEntryView {
    pub(crate) sequence: i64,
    /// RFC 3339.
    pub(crate) at: String,
    /// Milliseconds since the Unix epoch, as hashed.
    pub(crate) at_millis: i64,
    pub(crate) actor: String,
    pub(crate) action: String,
    pub(crate) subject: String,
    /// Canonical JSON text, exactly as hashed.
    pub(crate) payload: String,
    pub(crate) previous_hash: String,
    pub(crate) hash: String,
}
