//! Who is acting, as every handler sees it: anonymous, or a user identified by a
//! token. A token exchanged for a CI job's OIDC token carries its own grants, which
//! replace the roles of the identity it was issued to.

use std::fmt;

use crate::pipeline::{AppName, EnvName, Role};

/// The authenticated caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// No credentials were presented.
    Anonymous,
    /// A user identified by a valid token.
    User {
        name: String,
        admin: bool,
        /// The grants of a token scoped at issue (an OIDC exchange): when present they
        /// are all the caller may use, whatever roles the user holds.
        scope: Option<Vec<RoleGrant>>,
    },
}

impl Principal {
    /// A user whose token carries no scope of its own.
    pub fn user(name: impl Into<String>, admin: bool) -> Principal {
        Principal::User {
            name: name.into(),
            admin,
            scope: None,
        }
    }

    /// The name used in logs and records.
    pub fn display_name(&self) -> &str {
        match self {
            Principal::Anonymous => "anonymous",
            Principal::User { name, .. } => name,
        }
    }
}

/// Whether two identities are the same person: user names and the build actors CI
/// reports (GitHub, GitLab and most forges treat logins case-insensitively) are
/// compared without regard to ASCII case, so `STAFF2` and `staff2` are one person.
pub fn same_identity(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// The one grammar of user names: 1 to 64 characters of ASCII letters, digits, `-`,
/// `_`, `.` and `@`, beginning with a letter or digit (so `.` and `..` are refused).
/// Names are unique without regard to case.
pub fn check_user_name(name: &str) -> Result<(), String> {
    let valid = (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "user name `{}`: a user name is 1 to 64 characters of letters, digits, `-`, `_`, `.` and `@`, beginning with a letter or digit",
            name.escape_debug()
        ))
    }
}

/// A role held globally or for one application, in every environment or in one.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RoleGrant {
    pub role: Role,
    /// `None`: every application.
    pub application: Option<String>,
    /// `None`: every environment.
    pub environment: Option<String>,
}

impl RoleGrant {
    /// Whether the grant covers `application` (any of its environments).
    pub fn covers_application(&self, application: &str) -> bool {
        self.application.as_deref().is_none_or(|a| a == application)
    }

    /// Whether the grant covers `environment` of `application`.
    pub fn covers_environment(&self, application: &str, environment: &str) -> bool {
        self.covers_application(application)
            && self.environment.as_deref().is_none_or(|e| e == environment)
    }

    /// Every grant of `texts`, sorted, each once; the first that does not parse is
    /// the error.
    pub fn parse_all<'a>(
        texts: impl IntoIterator<Item = &'a str>,
    ) -> Result<Vec<RoleGrant>, String> {
        let mut grants = texts
            .into_iter()
            .map(RoleGrant::parse)
            .collect::<Result<Vec<_>, _>>()?;
        grants.sort();
        grants.dedup();
        Ok(grants)
    }

    /// Parses `staff` (global), `staff@web` (one application), `developer@web/staging`
    /// (one environment of one application) or `developer@*/staging` (one environment
    /// of every application).
    pub fn parse(text: &str) -> Result<RoleGrant, String> {
        let (role, scope) = match text.split_once('@') {
            Some((role, scope)) => (role, Some(scope)),
            None => (text, None),
        };
        let role = Role::parse(role).map_err(|e| format!("role `{text}`: {e}"))?;
        let Some(scope) = scope else {
            return Ok(RoleGrant {
                role,
                application: None,
                environment: None,
            });
        };
        let (application, environment) = match scope.split_once('/') {
            Some((application, environment)) => (application, Some(environment)),
            None => (scope, None),
        };
        let application = match application {
            "*" if environment.is_some() => None,
            name => Some(
                AppName::parse(name)
                    .map_err(|e| format!("role `{text}`: {e}"))?
                    .to_string(),
            ),
        };
        let environment = environment
            .map(|name| {
                EnvName::parse(name)
                    .map(|name| name.to_string())
                    .map_err(|e| format!("role `{text}`: {e}"))
            })
            .transpose()?;
        Ok(RoleGrant {
            role,
            application,
            environment,
        })
    }
}

impl fmt::Display for RoleGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.role.as_str())?;
        match (&self.application, &self.environment) {
            (None, None) => Ok(()),
            (Some(application), None) => write!(f, "@{application}"),
            (Some(application), Some(environment)) => write!(f, "@{application}/{environment}"),
            (None, Some(environment)) => write!(f, "@*/{environment}"),
        }
    }
}

/// What a caller wants to do: to a repository, or to the declared resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Read manifests, blobs, tags and referrers.
    Pull,
    /// Upload blobs and manifests.
    Push,
    /// Delete manifests, tags and blobs.
    Delete,
    /// List all repositories.
    Catalog,
    /// Read declared pipelines and applications.
    ReadResources,
    /// Create or change declared pipelines and applications (`gantry apply`).
    ApplyResources,
    /// Read, verify and export the audit log.
    ReadAudit,
    /// Create users and issue tokens for them.
    ManageUsers,
    /// Run garbage collection and read its record.
    CollectGarbage,
    /// Rotate the key Gantry signs with.
    ManageKeys,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
            Action::Catalog => "catalog",
            Action::ReadResources => "read",
            Action::ApplyResources => "apply",
            Action::ReadAudit => "read",
            Action::ManageUsers => "manage",
            Action::CollectGarbage => "gc",
            Action::ManageKeys => "manage",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_read_back_as_written_and_cover_what_they_name() {
        for text in [
            "staff",
            "staff@web",
            "developer@web/staging",
            "developer@*/staging",
        ] {
            let grant = RoleGrant::parse(text).expect(text);
            assert_eq!(grant.to_string(), text);
        }
        let scoped = RoleGrant::parse("developer@web/staging").expect("valid");
        assert!(scoped.covers_application("web"));
        assert!(scoped.covers_environment("web", "staging"));
        assert!(!scoped.covers_environment("web", "prod"));
        assert!(!scoped.covers_application("api"));
        let everywhere = RoleGrant::parse("developer@*/staging").expect("valid");
        assert!(everywhere.covers_environment("api", "staging"));
        assert!(!everywhere.covers_environment("api", "prod"));
        for bad in [
            "",
            "owner",
            "staff@",
            "staff@*",
            "staff@web/",
            "staff@Web",
            "x@web/prod",
        ] {
            assert!(RoleGrant::parse(bad).is_err(), "{bad:?}");
        }
    }
}
