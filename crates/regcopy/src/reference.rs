//! Image references as the copy command takes them: `HOST[:PORT]/REPO[:TAG|@DIGEST]`.

use std::fmt;

use domain::{Digest, RepoName, Tag};

use crate::CopyError;

/// What names a manifest in a repository: the registry's one reference type.
pub use domain::Reference as ManifestReference;

/// `HOST[:PORT]/REPO` with an optional tag or digest, parsed once at the edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageReference {
    registry: String,
    repository: RepoName,
    reference: Option<ManifestReference>,
}

impl ImageReference {
    /// Reads `HOST[:PORT]/REPO`, `…:TAG` or `…@sha256:…` (a leading `docker://` is
    /// ignored). The first path component must name a registry host: it contains a
    /// `.` or a `:port`, or is `localhost`, as container tools decide it.
    pub fn parse(text: &str) -> Result<ImageReference, CopyError> {
        let invalid = |why: &str| {
            CopyError::Invalid(format!(
                "`{text}` is not an image reference ({why}); write HOST[:PORT]/REPOSITORY[:TAG|@DIGEST]"
            ))
        };
        let rest = text.strip_prefix("docker://").unwrap_or(text);
        let (registry, path) = rest
            .split_once('/')
            .ok_or_else(|| invalid("no registry host"))?;
        if !domain::application::is_registry_host(registry) {
            return Err(invalid("the first component is not a registry host"));
        }
        let (name, reference) = match path.split_once('@') {
            Some((name, digest)) => {
                let digest = Digest::parse(digest).map_err(|e| invalid(&e.to_string()))?;
                (name, Some(ManifestReference::Digest(digest)))
            }
            None => {
                let last_slash = path.rfind('/').map_or(0, |i| i + 1);
                match path[last_slash..].rfind(':') {
                    Some(colon) => {
                        let colon = last_slash + colon;
                        let tag =
                            Tag::parse(&path[colon + 1..]).map_err(|e| invalid(&e.to_string()))?;
                        (&path[..colon], Some(ManifestReference::Tag(tag)))
                    }
                    None => (path, None),
                }
            }
        };
        let repository = RepoName::parse(name).map_err(|e| invalid(&e.to_string()))?;
        Ok(ImageReference {
            registry: registry.to_owned(),
            repository,
            reference,
        })
    }

    /// A reference from its parts.
    pub fn new(
        registry: &str,
        repository: RepoName,
        reference: Option<ManifestReference>,
    ) -> Result<ImageReference, CopyError> {
        if !domain::application::is_registry_host(registry) {
            return Err(CopyError::Invalid(format!(
                "`{registry}` is not a registry host (HOST[:PORT])"
            )));
        }
        Ok(ImageReference {
            registry: registry.to_owned(),
            repository,
            reference,
        })
    }

    /// `host[:port]`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    pub fn repository(&self) -> &RepoName {
        &self.repository
    }

    /// The tag or digest, if the reference names one.
    pub fn reference(&self) -> Option<&ManifestReference> {
        self.reference.as_ref()
    }
}

impl fmt::Display for ImageReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        match &self.reference {
            Some(ManifestReference::Tag(tag)) => write!(f, ":{tag}"),
            Some(ManifestReference::Digest(digest)) => write!(f, "@{digest}"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expected: Option<(&str, &str, Option<&str>)>) {
        let parsed = ImageReference::parse(text);
        match expected {
            None => assert!(parsed.is_err(), "{text:?} should be refused: {parsed:?}"),
            Some((registry, repository, reference)) => {
                let parsed = parsed.unwrap_or_else(|e| panic!("{text:?}: {e}"));
                assert_eq!(parsed.registry(), registry, "{text}");
                assert_eq!(parsed.repository().as_str(), repository, "{text}");
                assert_eq!(
                    parsed.reference().map(ToString::to_string).as_deref(),
                    reference,
                    "{text}"
                );
            }
        }
    }

    #[test]
    fn references_name_a_registry_host_a_repository_and_optionally_a_tag_or_digest() {
        let digest = format!("sha256:{}", "a".repeat(64));
        check(
            "registry.example.com/acme/web:v1",
            Some(("registry.example.com", "acme/web", Some("v1"))),
        );
        check(
            "127.0.0.1:5000/acme/web",
            Some(("127.0.0.1:5000", "acme/web", None)),
        );
        check(
            &format!("localhost:5000/web@{digest}"),
            Some(("localhost:5000", "web", Some(digest.as_str()))),
        );
        check(
            "docker://localhost/a/b/c:latest",
            Some(("localhost", "a/b/c", Some("latest"))),
        );
        check("acme/web:v1", None);
        check("web", None);
        check("registry.example.com/Acme/web", None);
        check("registry.example.com/acme/web:", None);
        check("registry.example.com/acme/web@sha256:abc", None);
        check("registry.example.com:0/web", None);
        check("-bad.example.com/web", None);
    }
}
