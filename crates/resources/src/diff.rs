//! A line-by-line diff of two canonical renderings, for `gantry apply --dry-run`.

use std::fmt;

use similar::{ChangeTag, TextDiff};

/// One line of a diff, without its line ending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiffLine {
    Unchanged(String),
    Removed(String),
    Added(String),
}

impl fmt::Display for DiffLine {
    /// `  line`, `- line` or `+ line`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiffLine::Unchanged(line) => write!(f, "  {line}"),
            DiffLine::Removed(line) => write!(f, "- {line}"),
            DiffLine::Added(line) => write!(f, "+ {line}"),
        }
    }
}

/// Every line of `old` and `new`, marked unchanged, removed or added, in order (a
/// minimal diff: Myers' algorithm). Pass `""` for a resource that does not exist yet.
pub fn diff_lines(old: &str, new: &str) -> Vec<DiffLine> {
    TextDiff::from_lines(old, new)
        .iter_all_changes()
        .map(|change| {
            let line = change.value().trim_end_matches(['\n', '\r']).to_owned();
            match change.tag() {
                ChangeTag::Equal => DiffLine::Unchanged(line),
                ChangeTag::Delete => DiffLine::Removed(line),
                ChangeTag::Insert => DiffLine::Added(line),
            }
        })
        .collect()
}

/// Whether the diff changes anything.
pub fn has_changes(lines: &[DiffLine]) -> bool {
    lines
        .iter()
        .any(|line| !matches!(line, DiffLine::Unchanged(_)))
}
