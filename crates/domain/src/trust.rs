//! Trust policies: which CI job tokens (OIDC) Gantry exchanges for a token of its own,
//! and what that token may do. A policy names the issuer (exactly), the audience the
//! job token must be minted for, glob patterns over its claims, and the role it grants
//! for named applications (and, optionally, only some of their environments), for at
//! most an hour.

use std::time::Duration;

use serde_json::{Map, Value};

use crate::glob::glob_matches;
use crate::pipeline::{AppName, EnvName, Role};
use crate::principal::RoleGrant;

/// The longest a token exchanged for a job token may live.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
/// The shortest lifetime a policy may set.
pub const MIN_TOKEN_LIFETIME: Duration = Duration::from_secs(60);

/// Registered claims a policy may not pattern-match: the verifier checks them itself
/// (`aud` through the policy's `audience`).
const RESERVED_CLAIMS: [&str; 6] = ["iss", "aud", "exp", "nbf", "iat", "jti"];

/// The roles a policy may grant: CI builds and deploys, it never approves or administers.
pub const GRANTABLE_ROLES: [Role; 3] = [Role::Viewer, Role::Developer, Role::Platform];

/// One claim and the glob its value must match (`*` matches any run of characters).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ClaimPattern {
    pub claim: String,
    pub pattern: String,
}

/// A validated trust policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustPolicy {
    pub name: String,
    /// The `iss` a job token must carry, compared exactly.
    pub issuer: String,
    /// The audience the job token must be minted for (`aud`).
    pub audience: String,
    /// Every pattern must match; sorted by claim.
    pub claims: Vec<ClaimPattern>,
    pub role: Role,
    /// At least one.
    pub applications: Vec<AppName>,
    /// Empty: every environment of those applications.
    pub environments: Vec<EnvName>,
    pub max_token_lifetime: Duration,
}

/// Why a trust policy is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustPolicyError {
    #[error(
        "claims must pin whose jobs these are: an exact repository_owner, repository_id or \
         repository_owner_id, a repository whose owner is literal (`acme/*`), or a sub that \
         names its owner (`repo:acme/*`)"
    )]
    NoIdentityClaim,
    #[error("claim `{0}` is checked by the verifier itself and cannot be matched here")]
    ReservedClaim(String),
    #[error("a claim name must not be empty")]
    EmptyClaim,
    #[error("role `{0}` cannot be granted to CI: use viewer, developer or platform")]
    RoleNotGrantable(String),
    #[error("name at least one application")]
    NoApplication,
    #[error("the audience must not be empty")]
    NoAudience,
    #[error("the issuer must be an https URL (or http on a loopback address)")]
    Issuer,
    #[error("max_token_lifetime must be between 1m and 1h")]
    Lifetime,
}

impl TrustPolicy {
    /// Checks the rules every policy must keep.
    pub fn validate(&self) -> Result<(), TrustPolicyError> {
        if !valid_issuer(&self.issuer) {
            return Err(TrustPolicyError::Issuer);
        }
        if self.audience.trim().is_empty() {
            return Err(TrustPolicyError::NoAudience);
        }
        for pattern in &self.claims {
            if pattern.claim.is_empty() {
                return Err(TrustPolicyError::EmptyClaim);
            }
            if RESERVED_CLAIMS.contains(&pattern.claim.as_str()) {
                return Err(TrustPolicyError::ReservedClaim(pattern.claim.clone()));
            }
        }
        let pins_identity = self
            .claims
            .iter()
            .any(|pattern| pins_owner(&pattern.claim, &pattern.pattern));
        if !pins_identity {
            return Err(TrustPolicyError::NoIdentityClaim);
        }
        if !GRANTABLE_ROLES.contains(&self.role) {
            return Err(TrustPolicyError::RoleNotGrantable(
                self.role.as_str().to_owned(),
            ));
        }
        if self.applications.is_empty() {
            return Err(TrustPolicyError::NoApplication);
        }
        if self.max_token_lifetime < MIN_TOKEN_LIFETIME
            || self.max_token_lifetime > MAX_TOKEN_LIFETIME
        {
            return Err(TrustPolicyError::Lifetime);
        }
        Ok(())
    }

    /// Whether a verified job token's claims satisfy every pattern and its audience is
    /// this policy's. Strings are matched as they are, numbers and booleans by their
    /// JSON text; a missing claim, or an object or array, never matches.
    pub fn matches(&self, claims: &Map<String, Value>) -> bool {
        let audience_ok = match claims.get("aud") {
            Some(Value::String(aud)) => *aud == self.audience,
            Some(Value::Array(list)) => {
                list.len() == 1 && list[0].as_str() == Some(self.audience.as_str())
            }
            _ => false,
        };
        audience_ok
            && self.claims.iter().all(|pattern| {
                let text = match claims.get(&pattern.claim) {
                    Some(Value::String(text)) => text.clone(),
                    Some(value @ (Value::Number(_) | Value::Bool(_))) => value.to_string(),
                    _ => return false,
                };
                glob_matches(&pattern.pattern, &text)
            })
    }

    /// The grants a token exchanged under this policy carries.
    pub fn grants(&self) -> Vec<RoleGrant> {
        let mut grants = Vec::new();
        for application in &self.applications {
            if self.environments.is_empty() {
                grants.push(RoleGrant {
                    role: self.role,
                    application: Some(application.to_string()),
                    environment: None,
                });
            }
            for environment in &self.environments {
                grants.push(RoleGrant {
                    role: self.role,
                    application: Some(application.to_string()),
                    environment: Some(environment.to_string()),
                });
            }
        }
        grants
    }
}

/// Whether `pattern` on identity claim `claim` matches the jobs of one owner only: on a
/// shared issuer such as GitHub Actions, `repository: "*/*"`, `sub: "repo:*"` or
/// `repository_owner: "acme*"` (which matches `acme-evil`) would trust strangers.
fn pins_owner(claim: &str, pattern: &str) -> bool {
    let exact = !pattern.is_empty() && !pattern.contains('*');
    let literal = pattern.split('*').next().unwrap_or_default();
    match claim {
        "repository_id" | "repository_owner_id" | "repository_owner" => exact,
        // `owner/name`: the owner and its slash are literal.
        "repository" => exact || (literal.contains('/') && !literal.starts_with('/')),
        // `repo:owner/name:…` (GitHub), `project_path:group/project:…` (GitLab),
        // `system:serviceaccount:namespace:name` (Kubernetes): the owner is literal when
        // two separators are.
        "sub" => exact || literal.matches([':', '/']).count() >= 2,
        _ => false,
    }
}

/// `https://…`, or `http://` on a loopback host (a test or in-cluster issuer).
pub fn valid_issuer(issuer: &str) -> bool {
    if let Some(rest) = issuer.strip_prefix("https://") {
        return !rest.is_empty() && !rest.starts_with('/');
    }
    issuer.strip_prefix("http://").is_some_and(|rest| {
        let host = rest.split(['/', ':']).next().unwrap_or_default();
        rest.starts_with("[::1]") || host == "127.0.0.1" || host == "localhost"
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> TrustPolicy {
        TrustPolicy {
            name: "web-ci".into(),
            issuer: "https://token.actions.githubusercontent.com".into(),
            audience: "gantry".into(),
            claims: vec![
                ClaimPattern {
                    claim: "ref".into(),
                    pattern: "refs/heads/main".into(),
                },
                ClaimPattern {
                    claim: "repository".into(),
                    pattern: "acme/web".into(),
                },
            ],
            role: Role::Developer,
            applications: vec![AppName::parse("web").expect("valid")],
            environments: vec![EnvName::parse("dev").expect("valid")],
            max_token_lifetime: Duration::from_secs(1800),
        }
    }

    fn claims(value: Value) -> Map<String, Value> {
        value.as_object().expect("object").clone()
    }

    #[test]
    fn a_policy_matches_its_audience_and_every_pattern() {
        let policy = policy();
        policy.validate().expect("valid");
        let good = serde_json::json!({"aud": "gantry", "repository": "acme/web", "ref": "refs/heads/main"});
        assert!(policy.matches(&claims(good.clone())));
        let mut other = good.clone();
        other["ref"] = "refs/heads/feature".into();
        assert!(!policy.matches(&claims(other)));
        let mut missing = good.clone();
        missing.as_object_mut().expect("object").remove("ref");
        assert!(!policy.matches(&claims(missing)));
        let mut foreign = good.clone();
        foreign["aud"] = "sts.amazonaws.com".into();
        assert!(!policy.matches(&claims(foreign)));
        let mut array = good.clone();
        array["aud"] = serde_json::json!(["gantry"]);
        assert!(policy.matches(&claims(array)));
        let mut several = good.clone();
        several["aud"] = serde_json::json!(["gantry", "other"]);
        assert!(!policy.matches(&claims(several)));
        let mut nested = good;
        nested["repository"] = serde_json::json!(["acme/web"]);
        assert!(!policy.matches(&claims(nested)));
    }

    #[test]
    fn grants_cover_each_application_in_each_environment() {
        let grants: Vec<String> = policy().grants().iter().map(ToString::to_string).collect();
        assert_eq!(grants, ["developer@web/dev"]);
        let mut everywhere = policy();
        everywhere.environments.clear();
        let grants: Vec<String> = everywhere
            .grants()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(grants, ["developer@web"]);
    }

    #[test]
    fn policies_that_trust_too_much_are_invalid() {
        let mut open = policy();
        open.claims.retain(|pattern| pattern.claim != "repository");
        assert_eq!(open.validate(), Err(TrustPolicyError::NoIdentityClaim));
        for (claim, pattern, pins) in [
            ("repository", "**", false),
            ("repository", "*/*", false),
            ("repository", "acme*", false),
            ("repository", "/*", false),
            ("repository", "acme/*", true),
            ("repository", "acme/web", true),
            ("sub", "repo:*", false),
            ("sub", "repo:acme*", false),
            ("sub", "repo:acme/*", true),
            ("sub", "system:serviceaccount:ci:*", true),
            ("repository_owner", "acme*", false),
            ("repository_owner", "acme", true),
            ("repository_id", "*", false),
            ("repository_owner_id", "123", true),
            ("ref", "refs/heads/main", false),
        ] {
            let mut policy = policy();
            policy.claims = vec![ClaimPattern {
                claim: claim.into(),
                pattern: pattern.into(),
            }];
            assert_eq!(
                policy.validate().is_ok(),
                pins,
                "{claim}: {pattern} {:?}",
                policy.validate()
            );
        }
        let mut admin = policy();
        admin.role = Role::Admin;
        assert!(matches!(
            admin.validate(),
            Err(TrustPolicyError::RoleNotGrantable(_))
        ));
        let mut approver = policy();
        approver.role = Role::Staff;
        assert!(approver.validate().is_err());
        let mut long = policy();
        long.max_token_lifetime = Duration::from_secs(3601);
        assert_eq!(long.validate(), Err(TrustPolicyError::Lifetime));
        let mut reserved = policy();
        reserved.claims.push(ClaimPattern {
            claim: "aud".into(),
            pattern: "*".into(),
        });
        assert!(matches!(
            reserved.validate(),
            Err(TrustPolicyError::ReservedClaim(_))
        ));
        let mut plain = policy();
        plain.issuer = "http://issuer.example".into();
        assert_eq!(plain.validate(), Err(TrustPolicyError::Issuer));
        plain.issuer = "http://127.0.0.1:8080".into();
        plain.validate().expect("loopback http is allowed");
    }
}
