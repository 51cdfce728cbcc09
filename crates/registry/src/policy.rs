//! Tag mutability: tags are immutable unless a rule names the repository and the tag.

use domain::{RepoName, Tag, glob_matches};
use store::TagPolicy;

/// Who may create a repository by pushing to a name that does not exist yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RepositoryCreation {
    /// Admins may (the default); everyone else pushes to repositories that exist.
    #[default]
    Admins,
    /// Nobody: repositories come only from declared applications (`gantry apply`).
    Never,
}

/// The creation policy of the namespaces matching `namespace`, a glob over a
/// repository name without its last component (`acme` for `acme/web-app`, `acme/team`
/// for `acme/team/api`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceCreationRule {
    pub namespace: String,
    pub policy: RepositoryCreation,
}

/// The policy that decides whether a push may create `repository`: the first rule
/// whose glob matches its namespace, else `default`.
pub(crate) fn creation_policy(
    rules: &[NamespaceCreationRule],
    default: RepositoryCreation,
    repository: &RepoName,
) -> RepositoryCreation {
    let name = repository.as_str();
    let namespace = name.rsplit_once('/').map_or("", |(namespace, _)| namespace);
    rules
        .iter()
        .find(|rule| glob_matches(&rule.namespace, namespace))
        .map_or(default, |rule| rule.policy)
}

/// Allows tags matching `tags` in repositories matching `repository` to move.
/// Both are glob patterns where `*` matches any run of characters (including `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MutableTagRule {
    pub repository: String,
    pub tags: Vec<String>,
}

pub(crate) fn tag_policy(rules: &[MutableTagRule], repository: &RepoName, tag: &Tag) -> TagPolicy {
    let mutable = rules.iter().any(|rule| {
        glob_matches(&rule.repository, repository.as_str())
            && rule.tags.iter().any(|t| glob_matches(t, tag.as_str()))
    });
    if mutable {
        TagPolicy::Mutable
    } else {
        TagPolicy::Immutable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_rule_matching_the_namespace_decides_creation() {
        let rules = [
            NamespaceCreationRule {
                namespace: "platform".to_owned(),
                policy: RepositoryCreation::Never,
            },
            NamespaceCreationRule {
                namespace: "team-*".to_owned(),
                policy: RepositoryCreation::Admins,
            },
        ];
        let policy = |name: &str, default| {
            creation_policy(&rules, default, &RepoName::parse(name).expect("valid"))
        };
        assert_eq!(
            policy("platform/api", RepositoryCreation::Admins),
            RepositoryCreation::Never
        );
        // The namespace is everything before the last component, matched whole.
        assert_eq!(
            policy("platform/x/api", RepositoryCreation::Admins),
            RepositoryCreation::Admins
        );
        assert_eq!(
            policy("team-a/api", RepositoryCreation::Never),
            RepositoryCreation::Admins
        );
        assert_eq!(
            policy("acme/api", RepositoryCreation::Never),
            RepositoryCreation::Never
        );
        assert_eq!(
            policy("single", RepositoryCreation::Admins),
            RepositoryCreation::Admins
        );
    }

    #[test]
    fn tags_are_immutable_unless_a_rule_names_them() {
        let rules = vec![MutableTagRule {
            repository: "acme/*".into(),
            tags: vec!["latest".into(), "dev-*".into()],
        }];
        let repo = |s: &str| RepoName::parse(s).expect("valid");
        let tag = |s: &str| Tag::parse(s).expect("valid");
        assert_eq!(
            tag_policy(&rules, &repo("acme/web"), &tag("latest")),
            TagPolicy::Mutable
        );
        assert_eq!(
            tag_policy(&rules, &repo("acme/web"), &tag("dev-7")),
            TagPolicy::Mutable
        );
        assert_eq!(
            tag_policy(&rules, &repo("acme/web"), &tag("v1")),
            TagPolicy::Immutable
        );
        assert_eq!(
            tag_policy(&rules, &repo("other/web"), &tag("latest")),
            TagPolicy::Immutable
        );
        assert_eq!(
            tag_policy(&[], &repo("acme/web"), &tag("latest")),
            TagPolicy::Immutable
        );
    }
}
