//! Repository names, tags and references, following the grammar of the OCI
//! Distribution Specification. A value of these types is always valid, so code that
//! holds one never re-checks it and never builds a storage path from unchecked input.

use std::fmt;

use crate::digest::{Digest, DigestError};

/// Why a name, tag or reference was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("repository name is empty")]
    EmptyName,
    #[error("repository name is {0} characters long; the limit is {max}", max = RepoName::MAX_LEN)]
    NameTooLong(usize),
    #[error(
        "repository name `{0}` is invalid: use path components of lowercase letters and digits, separated by `/`, \
         with single `.`, `_`, `__` or dashes between alphanumerics"
    )]
    InvalidName(String),
    #[error(
        "tag `{0}` is invalid: use up to 128 characters of letters, digits, `_`, `.` and `-`, not starting with `.` or `-`"
    )]
    InvalidTag(String),
    #[error(transparent)]
    InvalidDigest(#[from] DigestError),
}

/// A repository name such as `acme/web-app` or `team/sub/group/app`, any depth.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoName(String);

impl RepoName {
    /// The longest name accepted, as common clients limit `host/name` to 255 characters.
    pub const MAX_LEN: usize = 255;

    pub fn parse(text: &str) -> Result<RepoName, NameError> {
        if text.is_empty() {
            return Err(NameError::EmptyName);
        }
        if text.len() > Self::MAX_LEN {
            return Err(NameError::NameTooLong(text.len()));
        }
        if !text.split('/').all(path_component_is_valid) {
            return Err(NameError::InvalidName(shorten(text)));
        }
        Ok(RepoName(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn path_component_is_valid(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let mut i = 0;
    let mut expect_alnum = true;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            while i < bytes.len() && alnum(bytes[i]) {
                i += 1;
            }
            expect_alnum = false;
            continue;
        }
        if expect_alnum {
            return false;
        }
        // A separator: `.`, `_`, `__`, or one or more `-`.
        let separator_len = match bytes[i] {
            b'.' => 1,
            b'_' if bytes.get(i + 1) == Some(&b'_') => 2,
            b'_' => 1,
            b'-' => bytes[i..].iter().take_while(|&&b| b == b'-').count(),
            _ => return false,
        };
        i += separator_len;
        expect_alnum = true;
    }
    !bytes.is_empty() && !expect_alnum
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RepoName({})", self.0)
    }
}

/// A tag: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

impl Tag {
    pub const MAX_LEN: usize = 128;

    pub fn parse(text: &str) -> Result<Tag, NameError> {
        let bytes = text.as_bytes();
        let first_ok = bytes
            .first()
            .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_');
        let rest_ok = bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !first_ok || !rest_ok || bytes.len() > Self::MAX_LEN {
            return Err(NameError::InvalidTag(shorten(text)));
        }
        Ok(Tag(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tag({})", self.0)
    }
}

/// What a manifest URL names: a tag or a digest.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum Reference {
    Tag(Tag),
    Digest(Digest),
}

impl Reference {
    /// A reference containing `:` can only be a digest (tags cannot contain `:`).
    pub fn parse(text: &str) -> Result<Reference, NameError> {
        if text.contains(':') {
            Ok(Reference::Digest(Digest::parse(text)?))
        } else {
            Ok(Reference::Tag(Tag::parse(text)?))
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(tag) => tag.fmt(f),
            Reference::Digest(digest) => digest.fmt(f),
        }
    }
}

/// A user-supplied value cut to a length fit for an error message.
pub(crate) fn shorten(text: &str) -> String {
    let mut out: String = text.chars().take(80).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_name(input: &str, valid: bool) {
        assert_eq!(RepoName::parse(input).is_ok(), valid, "name {input:?}");
    }

    fn check_tag(input: &str, valid: bool) {
        assert_eq!(Tag::parse(input).is_ok(), valid, "tag {input:?}");
    }

    #[test]
    fn repository_names_follow_the_distribution_grammar() {
        for ok in [
            "a",
            "library/alpine",
            "acme/web-app",
            "a/b/c/d/e/f/g",
            "a.b",
            "a_b",
            "a__b",
            "a---b",
            "0/1",
            "foo/manifests/bar",
        ] {
            check_name(ok, true);
        }
        for bad in [
            "",
            "A",
            "acme/Web",
            "/abs",
            "trailing/",
            "a//b",
            "..",
            "a/../b",
            ".a",
            "a.",
            "a..b",
            "a___b",
            "a.-b",
            "a-",
            "-a",
            "a b",
            "a/b:c",
            "a%2fb",
            "ünïcode",
        ] {
            check_name(bad, false);
        }
        check_name(&"a".repeat(255), true);
        check_name(&"a".repeat(256), false);
    }

    #[test]
    fn tags_follow_the_distribution_grammar() {
        for ok in ["latest", "v1.2.3", "_x", "A-b_c.d", &"t".repeat(128)] {
            check_tag(ok, true);
        }
        for bad in ["", ".x", "-x", "a:b", "a/b", "a b", &"t".repeat(129), "ü"] {
            check_tag(bad, false);
        }
    }

    #[test]
    fn references_are_digests_exactly_when_they_contain_a_colon() {
        assert!(matches!(Reference::parse("v1"), Ok(Reference::Tag(_))));
        assert!(matches!(
            Reference::parse(
                "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
            ),
            Ok(Reference::Digest(_))
        ));
        assert!(matches!(
            Reference::parse("sha256:zz"),
            Err(NameError::InvalidDigest(_))
        ));
        assert!(Reference::parse("..").is_err());
    }
}
