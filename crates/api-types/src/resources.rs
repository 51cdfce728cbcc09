//! Declared resources (`POST /api/v1/apply`, `GET /api/v1/resources/…`), the audit
//! log's verification and export, and the error envelope every refusal is answered in.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Every API error: a stable machine-readable `code`, a sentence for people, and
/// details whose shape depends on the code.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// `bad_request`, `invalid_resources`, `unauthorized`, `forbidden`, `not_found`,
    /// `conflict`, `payload_too_large`, `unsupported_media_type` or `internal`.
    pub code: String,
    pub message: String,
    /// `invalid_resources`: a list of `ResourceProblem`; `forbidden`: `{permission}`;
    /// `conflict`: `{kind, name, expected_revision, stored_revision}`; otherwise null.
    #[cfg_attr(feature = "openapi", schema(value_type = Object, nullable = true))]
    #[serde(default)]
    pub detail: serde_json::Value,
}

/// One problem in a resources file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ResourceProblem {
    /// The label the file was sent under (`?file=`, default `request`).
    pub file: String,
    /// The document it is in; null when it is not inside one.
    pub document: Option<DocumentRef>,
    /// The field path inside the document, e.g. `stages[2].gate.approvals[0].count`.
    pub field: Option<String>,
    /// 1-based, when the YAML parser knows it.
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// What is wrong, in words that say what to change.
    pub message: String,
}

/// A document of a multi-document file, as far as it could be identified.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DocumentRef {
    /// 1-based, counting `---` separators.
    pub index: usize,
    pub kind: Option<String>,
    pub name: Option<String>,
}

/// What an apply did (or, on a dry run, would do) to one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ApplyAction {
    Create,
    Update,
    Unchanged,
}

/// One resource of an apply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ResourceOutcome {
    /// `Pipeline`, `Application`, `TrustPolicy` or `RetentionPolicy`.
    pub kind: String,
    pub name: String,
    pub action: ApplyAction,
    /// After an apply, the resource's revision; on a dry run, the stored revision the
    /// diff was computed against (null for a resource to be created).
    pub revision: Option<i64>,
    /// Every line of the canonical text, prefixed `  `, `- ` or `+ `; empty when
    /// unchanged.
    pub diff: String,
}

/// The answer of `POST /api/v1/apply`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApplyResponse {
    pub dry_run: bool,
    /// In the order of the file.
    pub resources: Vec<ResourceOutcome>,
    /// Repositories created for applications; always empty on a dry run.
    pub created_repositories: Vec<String>,
}

/// A stored resource, without its text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ResourceSummary {
    pub kind: String,
    pub name: String,
    pub revision: i64,
    /// RFC 3339, UTC.
    pub updated_at: String,
}

/// One page of resources of a kind, in byte order of their names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ResourceList {
    pub items: Vec<ResourceSummary>,
    /// The `after` of the next page; null on the last page.
    pub next: Option<String>,
}

/// A stored resource and its canonical text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ResourceDetail {
    pub kind: String,
    pub name: String,
    pub revision: i64,
    /// RFC 3339, UTC.
    pub updated_at: String,
    /// The canonical JSON rendering the diff of an apply compares.
    pub canonical: String,
}

/// The outcome of recomputing the audit chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditVerification {
    /// Whether every entry verified and the log ends where its head says.
    pub intact: bool,
    /// How many entries verified (all of them when intact).
    pub entries: i64,
    /// The hash of the last entry, when intact.
    pub head: Option<String>,
    /// The first entry that does not verify.
    pub broken_at: Option<i64>,
    /// Why it does not verify.
    pub reason: Option<String>,
}

/// One audit entry as exported (a JSON Lines record).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEntryView {
    pub sequence: i64,
    /// RFC 3339.
    pub at: String,
    /// Milliseconds since the Unix epoch, as hashed.
    pub at_millis: i64,
    pub actor: String,
    pub action: String,
    pub subject: String,
    /// Canonical JSON text, exactly as hashed.
    pub payload: String,
    pub previous_hash: String,
    pub hash: String,
}

/// `file:line:column: document N (Kind `name`), field F: message`, the way the
/// server's own resource errors read, so an editor can jump to the line.
impl fmt::Display for ResourceProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        match (self.line, self.column) {
            (Some(line), Some(column)) => write!(f, ":{line}:{column}")?,
            (Some(line), None) => write!(f, ":{line}")?,
            _ => {}
        }
        let mut place = Vec::new();
        if let Some(document) = &self.document {
            place.push(document.to_string());
        }
        if let Some(field) = &self.field {
            place.push(format!("field {field}"));
        }
        if !place.is_empty() {
            write!(f, ": {}", place.join(", "))?;
        }
        write!(f, ": {}", self.message)
    }
}

impl fmt::Display for DocumentRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "document {}", self.index)?;
        match (&self.kind, &self.name) {
            (Some(kind), Some(name)) => write!(f, " ({kind} `{name}`)"),
            (Some(kind), None) => write!(f, " ({kind})"),
            (None, Some(name)) => write!(f, " (`{name}`)"),
            (None, None) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(problem: ResourceProblem, expected: &str) {
        assert_eq!(problem.to_string(), expected);
    }

    #[test]
    fn a_problem_reads_like_the_servers_resource_errors() {
        let document = DocumentRef {
            index: 1,
            kind: Some("Pipeline".to_owned()),
            name: Some("standard".to_owned()),
        };
        check(
            ResourceProblem {
                file: "gantry.yaml".to_owned(),
                document: Some(document.clone()),
                field: Some("stages[0]".to_owned()),
                line: Some(5),
                column: Some(5),
                message: "unknown field `colour`".to_owned(),
            },
            "gantry.yaml:5:5: document 1 (Pipeline `standard`), field stages[0]: unknown field `colour`",
        );
        check(
            ResourceProblem {
                file: "gantry.yaml".to_owned(),
                document: Some(document),
                field: None,
                line: None,
                column: None,
                message: "a pipeline needs at least one stage".to_owned(),
            },
            "gantry.yaml: document 1 (Pipeline `standard`): a pipeline needs at least one stage",
        );
        check(
            ResourceProblem {
                file: "request".to_owned(),
                document: None,
                field: None,
                line: Some(3),
                column: None,
                message: "not valid YAML".to_owned(),
            },
            "request:3: not valid YAML",
        );
    }
}
