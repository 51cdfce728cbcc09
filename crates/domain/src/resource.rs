//! The kinds of declarative resource (`kind: Pipeline`, `kind: Application`,
//! `kind: TrustPolicy`, `kind: RetentionPolicy`). Their YAML is read by the `resources` crate; the kind is
//! vocabulary here because the store keys stored resources by it too.

use std::fmt;

/// The kinds of resource a file may declare and Gantry stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceKind {
    Pipeline,
    Application,
    /// Which CI job tokens Gantry exchanges for its own ([`crate::trust::TrustPolicy`]).
    TrustPolicy,
    /// What retention keeps in the repositories it matches
    /// ([`crate::retention::RetentionPolicy`]).
    RetentionPolicy,
}

impl ResourceKind {
    pub const ALL: [ResourceKind; 4] = [
        ResourceKind::Pipeline,
        ResourceKind::Application,
        ResourceKind::TrustPolicy,
        ResourceKind::RetentionPolicy,
    ];

    /// The `kind:` text, matched exactly (`Pipeline`, not `pipeline`).
    pub fn parse(text: &str) -> Option<ResourceKind> {
        ResourceKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Pipeline => "Pipeline",
            ResourceKind::Application => "Application",
            ResourceKind::TrustPolicy => "TrustPolicy",
            ResourceKind::RetentionPolicy => "RetentionPolicy",
        }
    }
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::ResourceKind;

    fn check(text: &str, expected: Option<ResourceKind>) {
        assert_eq!(ResourceKind::parse(text), expected, "{text:?}");
    }

    #[test]
    fn kinds_parse_from_their_exact_names_only() {
        check("Pipeline", Some(ResourceKind::Pipeline));
        check("Application", Some(ResourceKind::Application));
        check("TrustPolicy", Some(ResourceKind::TrustPolicy));
        check("RetentionPolicy", Some(ResourceKind::RetentionPolicy));
        check("pipeline", None);
        check("trustpolicy", None);
        check("Trust-Policy", None);
        check("Applications", None);
        check("", None);
        for kind in ResourceKind::ALL {
            check(kind.as_str(), Some(kind));
        }
    }
}
