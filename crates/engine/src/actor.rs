//! Who may do what: the caller as the engine judges them ([`Actor`]) and the one place
//! a refusal is worded ([`Actor::require`]), each naming the permission it lacked.
//! The store adds the rules that need a promotion's state (no self-approval, no
//! approval by the build's actors, the gate's roles).

use std::collections::BTreeSet;

use domain::RoleGrant;
use domain::pipeline::{GrantScope, Role, roles_granted};
use store::UserRecord;

use crate::EngineError;

/// The caller, as the engine judges them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub name: String,
    pub admin: bool,
    /// A CI identity.
    pub ci: bool,
    pub user: Option<UserRecord>,
    /// The grants of a scoped token (an OIDC exchange, or a CI identity's own token),
    /// which replace the user's.
    pub scope: Option<Vec<RoleGrant>>,
}

/// What an actor asks to do, for [`Actor::require`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission<'a> {
    /// `builds:notify`: building feeds every environment, so the whole application.
    NotifyBuilds { application: &'a str },
    /// `checks:report`, for the whole application.
    ReportChecks { application: &'a str },
    /// `promote:APP/ENV`: a deploying role for the environment; for a CI identity,
    /// through a grant naming it.
    Promote {
        application: &'a str,
        environment: &'a str,
    },
    /// Deploying past a shut gate: admins only.
    Override,
    /// `rollback:APP/ENV`: a deploying role for the environment, never CI.
    Rollback {
        application: &'a str,
        environment: &'a str,
    },
    /// `hold:APP/ENV` (holding and releasing): as rolling back.
    Hold {
        application: &'a str,
        environment: &'a str,
    },
    /// `observe:APP/ENV`: what promoting there needs.
    Observe {
        application: &'a str,
        environment: &'a str,
    },
    /// Withdrawing promotion `id`, requested by `requester`: them or an admin.
    Cancel { id: i64, requester: &'a str },
    /// `quarantine:APP` (quarantining a digest and lifting it): an admin, or a person
    /// (never CI) with the platform role for the whole application.
    Quarantine { application: &'a str },
}

impl Actor {
    fn grants(&self) -> &[RoleGrant] {
        match (&self.scope, &self.user) {
            (Some(scope), _) => scope,
            (None, Some(user)) => &user.roles,
            (None, None) => &[],
        }
    }

    /// The roles that apply to `application` in `scope`.
    pub fn roles_for(&self, application: &str, scope: GrantScope<'_>) -> BTreeSet<Role> {
        roles_granted(self.grants(), self.admin, application, scope)
    }

    /// Whether the actor holds a deploying role covering `environment` — for a CI
    /// identity, through a grant naming it (a deploy job's trust policy), so a build
    /// identity's application-wide grant never does.
    fn may_deploy_to(&self, application: &str, environment: &str) -> bool {
        let scope = if self.ci {
            GrantScope::NamedEnvironment(environment)
        } else {
            GrantScope::Environment(environment)
        };
        self.has_any(application, scope, &Role::DEPLOYING)
    }

    fn has_any(&self, application: &str, scope: GrantScope<'_>, wanted: &[Role]) -> bool {
        self.admin
            || self
                .roles_for(application, scope)
                .iter()
                .any(|role| wanted.contains(role))
    }

    /// A person (never CI) with a deploying role for the environment.
    fn may_operate(&self, application: &str, environment: &str) -> bool {
        !self.ci
            && self.has_any(
                application,
                GrantScope::Environment(environment),
                &Role::DEPLOYING,
            )
    }

    /// `Ok` when the actor may do `permission`, else `Forbidden` saying who lacks what
    /// (and the permission's name): the one place refusals are worded.
    pub fn require(&self, permission: Permission<'_>) -> Result<(), EngineError> {
        let name = &self.name;
        let refusal = match permission {
            Permission::NotifyBuilds { application } => (!self.has_any(
                application,
                GrantScope::WholeApplication,
                &Role::DEPLOYING,
            ))
            .then(|| {
                format!(
                    "{name} may not notify builds of {application}: it needs the developer, platform or admin role for the whole application (permission builds:notify)"
                )
            }),
            Permission::ReportChecks { application } => (!self.has_any(
                application,
                GrantScope::WholeApplication,
                &Role::DEPLOYING,
            ))
            .then(|| {
                format!(
                    "{name} may not report checks on {application}: it needs the developer, platform or admin role for the whole application (permission checks:report)"
                )
            }),
            Permission::Promote {
                application,
                environment,
            } => (!self.may_deploy_to(application, environment)).then(|| {
                if self.ci {
                    format!(
                        "{name} is a CI identity: it promotes into {application}/{environment} only with a grant naming that environment (permission promote:{application}/{environment})"
                    )
                } else {
                    format!(
                        "{name} may not promote {application} into {environment}: it needs the developer, platform or admin role for that environment (permission promote:{application}/{environment})"
                    )
                }
            }),
            Permission::Override => (!self.admin)
                .then(|| "only an admin may override a gate (break-glass)".to_owned()),
            Permission::Rollback {
                application,
                environment,
            } => (!self.may_operate(application, environment)).then(|| {
                format!(
                    "{name} may not roll back {application}/{environment}: it needs the developer, platform or admin role for that environment (permission rollback:{application}/{environment})"
                )
            }),
            Permission::Hold {
                application,
                environment,
            } => (!self.may_operate(application, environment)).then(|| {
                format!(
                    "{name} may not hold or release {application}/{environment}: it needs the developer, platform or admin role for that environment (permission hold:{application}/{environment})"
                )
            }),
            Permission::Observe {
                application,
                environment,
            } => (!self.may_deploy_to(application, environment)).then(|| {
                format!(
                    "{name} may not report what {application}/{environment} runs: it needs the developer, platform or admin role for that environment (permission observe:{application}/{environment})"
                )
            }),
            Permission::Quarantine { application } => (self.ci
                || !self.has_any(application, GrantScope::WholeApplication, &[Role::Platform]))
            .then(|| {
                format!(
                    "{name} may not quarantine digests of {application} or lift a quarantine: it needs the platform or admin role for the whole application (permission quarantine:{application})"
                )
            }),
            Permission::Cancel { id, requester } => (requester != self.name && !self.admin)
                .then(|| {
                    format!("only {requester} (who requested it) or an admin may cancel promotion {id}")
                }),
        };
        match refusal {
            None => Ok(()),
            Some(message) => Err(EngineError::Forbidden(message)),
        }
    }
}
