//! What is wrong with a resource file, and where: the file, the document (its 1-based
//! index and, when known, its kind and name), the field path inside it
//! (`stages[2].gate.approvals[0].count`) and, when the YAML parser knows it, the line.
//!
//! Every problem found is reported, not only the first: each document is read on its
//! own, so one bad document does not hide the others' mistakes.

use std::fmt;

use domain::trust::TrustPolicyError;

/// A document of a multi-document file, as far as it could be identified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentLabel {
    /// 1-based; empty documents count, so the number matches the `---` separators.
    pub index: usize,
    /// The `kind` as written, when it is a string.
    pub kind: Option<String>,
    /// The `name` as written, when it is a scalar.
    pub name: Option<String>,
}

impl fmt::Display for DocumentLabel {
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

/// A 1-based line and column in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

/// What is wrong, in words that say what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("not valid YAML: {0}")]
    Syntax(String),
    #[error("a resource is a mapping with `kind` and `name`, not {0}")]
    NotAMapping(&'static str),
    #[error("missing `kind`: use Pipeline, Application, TrustPolicy or RetentionPolicy")]
    MissingKind,
    #[error("unknown kind `{0}`: use Pipeline, Application, TrustPolicy or RetentionPolicy")]
    UnknownKind(String),
    /// A field has the wrong type, an invalid value, or is not a field of this kind.
    #[error("{0}")]
    InvalidField(String),
    #[error("a pipeline needs at least one stage")]
    NoStages,
    #[error("stage `{stage}` appears twice (first as stages[{first}])")]
    DuplicateStage { stage: String, first: usize },
    #[error("{kind} `{name}` is already declared in document {first}")]
    DuplicateResource {
        kind: String,
        name: String,
        first: usize,
    },
    #[error("a {target} target cannot deploy an application of type {app_type}")]
    TargetNotForType {
        target: &'static str,
        app_type: &'static str,
    },
    #[error("pipeline `{pipeline}` is neither declared in this file nor known to Gantry")]
    UnknownPipeline { pipeline: String },
    #[error(
        "environment `{environment}` is not a stage of pipeline `{pipeline}` (its stages: {stages})"
    )]
    EnvironmentNotInPipeline {
        environment: String,
        pipeline: String,
        stages: String,
    },
    #[error(
        "stage `{stage}` of pipeline `{pipeline}` has no environment here: add `{stage}: {{ target: … }}` (`record: {{}}` when Gantry only records what was promoted)"
    )]
    StageNotConfigured { stage: String, pipeline: String },
    /// An application's repository inside the release tier's namespace, which Gantry
    /// fills by linking promoted artifacts.
    #[error(
        "`{0}` is inside `release/`, where Gantry links what release stages promote: name the application's own repository (e.g. `acme/web`); a `tier: release` stage serves it from `release/acme/web`"
    )]
    ReleaseTierRepository(String),
    /// Two applications declaring one repository: promotions, retention and access of
    /// one would act on the other's artifacts.
    #[error(
        "repository `{repository}` is already the repository of application `{application}`: every application has a repository of its own"
    )]
    RepositoryTaken {
        repository: String,
        application: String,
    },
    /// A trust policy names an application that does not exist.
    #[error("application `{application}` is neither declared in this file nor known to Gantry")]
    UnknownApplication { application: String },
    /// A name listed twice in a trust policy's `applications` or `environments`.
    #[error("`{item}` appears twice (first as {list}[{first}])")]
    DuplicateItem {
        item: String,
        list: &'static str,
        first: usize,
    },
    #[error(
        "an empty list covers no environment: leave `environments` out to cover every environment of the applications"
    )]
    NoEnvironments,
    /// Text holding a control character other than a tab or line break (NUL cannot
    /// even be stored by PostgreSQL).
    #[error("holds the control character U+{0:04X}; only tabs and line breaks are allowed in text")]
    ControlCharacter(u32),
    /// A list of globs that would match nothing.
    #[error("an empty list matches nothing: {hint}")]
    EmptyList { hint: &'static str },
    /// An empty glob in a list of them.
    #[error("an empty pattern matches nothing: use `*` to match anything")]
    EmptyPattern,
    /// A number outside the range a field allows.
    #[error("{value} is out of range: use {min}–{max}")]
    OutOfRange { value: u64, min: u64, max: u64 },
    /// A rule every trust policy keeps (`domain::trust::TrustPolicy::validate`).
    #[error("{0}")]
    TrustPolicy(TrustPolicyError),
}

/// One problem and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceError {
    /// The label the caller gave the file, usually its path.
    pub file: String,
    /// `None` only when the problem is not inside one document.
    pub document: Option<DocumentLabel>,
    /// The path of the field inside the document; `None` for the document as a whole.
    pub field: Option<String>,
    pub position: Option<Position>,
    pub problem: Problem,
}

impl fmt::Display for ResourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(Position { line, column }) = self.position {
            write!(f, ":{line}:{column}")?;
        }
        match (&self.document, &self.field) {
            (Some(document), Some(field)) => write!(f, ": {document}, field {field}")?,
            (Some(document), None) => write!(f, ": {document}")?,
            (None, Some(field)) => write!(f, ": field {field}")?,
            (None, None) => {}
        }
        write!(f, ": {}", self.problem)
    }
}

impl std::error::Error for ResourceError {}

/// Every problem found in a file, in the order of the file. Never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceErrors(Vec<ResourceError>);

impl ResourceErrors {
    /// `None` when there is nothing to report.
    pub(crate) fn from_vec(errors: Vec<ResourceError>) -> Option<ResourceErrors> {
        (!errors.is_empty()).then_some(ResourceErrors(errors))
    }

    pub(crate) fn one(error: ResourceError) -> ResourceErrors {
        ResourceErrors(vec![error])
    }

    pub fn errors(&self) -> &[ResourceError] {
        &self.0
    }

    pub fn into_vec(self) -> Vec<ResourceError> {
        self.0
    }
}

impl fmt::Display for ResourceErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ResourceErrors {}

impl IntoIterator for ResourceErrors {
    type Item = ResourceError;
    type IntoIter = std::vec::IntoIter<ResourceError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}
