//! The JSON the API answers with, mirrored here so the client needs nothing from the
//! server. Unknown fields are ignored, so a newer server can add some without breaking
//! an older command line; each type serializes back to the same JSON for `-o json`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The kinds of declared resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceKind {
    Pipeline,
    Application,
    TrustPolicy,
}

impl ResourceKind {
    /// The path segment of `/api/v1/resources/{kind}`.
    pub fn plural(self) -> &'static str {
        match self {
            ResourceKind::Pipeline => "pipelines",
            ResourceKind::Application => "applications",
            ResourceKind::TrustPolicy => "trustpolicies",
        }
    }
}

/// What an apply did (or, on a dry run, would do) to one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApplyAction {
    Create,
    Update,
    Unchanged,
}

/// One resource of an apply.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResourceOutcome {
    /// `Pipeline`, `Application` or `TrustPolicy`.
    pub kind: String,
    pub name: String,
    pub action: ApplyAction,
    /// After an apply, the resource's revision; on a dry run, the stored revision the
    /// diff was computed against (`None` for a resource to be created).
    pub revision: Option<i64>,
    /// Every line of the canonical text, prefixed `  `, `- ` or `+ `; empty when
    /// unchanged.
    pub diff: String,
}

/// The answer of `POST /api/v1/apply`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApplyReport {
    pub dry_run: bool,
    /// In the order of the file.
    pub resources: Vec<ResourceOutcome>,
    /// Repositories created for applications; always empty on a dry run.
    pub created_repositories: Vec<String>,
}

/// A stored resource, without its text.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResourceSummary {
    pub kind: String,
    pub name: String,
    pub revision: i64,
    /// RFC 3339, UTC.
    pub updated_at: String,
}

/// One page of resources of a kind, in byte order of their names.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResourceList {
    pub items: Vec<ResourceSummary>,
    /// The `after` of the next page; `None` on the last page.
    pub next: Option<String>,
}

/// A stored resource and its canonical text.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResourceDetail {
    pub kind: String,
    pub name: String,
    pub revision: i64,
    /// RFC 3339, UTC.
    pub updated_at: String,
    /// The canonical rendering an apply's diff compares.
    pub canonical: String,
}

/// The verdict of `GET /api/v1/audit/verify`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditVerification {
    /// Whether every entry verified and the log ends where its head says.
    pub intact: bool,
    /// How many entries verified.
    pub entries: i64,
    /// The hash of the last entry, when intact.
    pub head: Option<String>,
    /// The first entry that does not verify.
    pub broken_at: Option<i64>,
    /// Why it does not verify.
    pub reason: Option<String>,
}

/// The API's error envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiErrorBody {
    /// `bad_request`, `invalid_resources`, `unauthorized`, `forbidden`, `not_found`,
    /// `conflict`, …
    pub code: String,
    pub message: String,
    /// Shaped by `code`: the problems of `invalid_resources`, `{permission}` of
    /// `forbidden`, `{kind, name, expected_revision, stored_revision}` of `conflict`.
    #[serde(default)]
    pub detail: serde_json::Value,
}

/// One problem in a resources file, as the server found it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceProblem {
    /// The label the file was sent under.
    pub file: String,
    pub document: Option<DocumentRef>,
    /// The field path inside the document, e.g. `stages[2].gate.approvals[0].count`.
    pub field: Option<String>,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

/// A document of a multi-document file, as far as the server could identify it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentRef {
    /// 1-based, counting `---` separators.
    pub index: usize,
    pub kind: Option<String>,
    pub name: Option<String>,
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
