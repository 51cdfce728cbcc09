//! Pipelines as Gantry understands them once parsed: ordered stages, each an
//! environment behind a gate. (Reading them from YAML happens at the edge; this is the
//! validated model the engine evaluates.)

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use crate::gate::FreezeWindow;

/// Why a pipeline name, application name, environment name, role or check name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PipelineError {
    #[error(
        "`{0}` is not a valid name: use 1–63 lowercase letters, digits and dashes, starting and ending with a letter or digit"
    )]
    InvalidName(String),
    #[error("`{0}` is not a valid check name: use 1–64 letters, digits, `.`, `_` and `-`")]
    InvalidCheckName(String),
    #[error("unknown role `{0}`: use viewer, developer, staff, client, platform or admin")]
    UnknownRole(String),
    #[error("unknown severity `{0}`: use critical, high, medium, low or unknown")]
    UnknownSeverity(String),
    #[error("a pipeline needs at least one stage")]
    NoStages,
    #[error("stage `{0}` appears twice")]
    DuplicateStage(String),
    #[error("an approval rule for role {0} needs a count of at least 1")]
    ZeroApprovals(String),
    #[error("invalid freeze window `{window}`: {reason}")]
    InvalidFreeze { window: String, reason: String },
}

fn dns_label_is_valid(text: &str) -> bool {
    let bytes = text.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

macro_rules! label_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub fn parse(text: &str) -> Result<$name, PipelineError> {
                if dns_label_is_valid(text) {
                    Ok($name(text.to_owned()))
                } else {
                    Err(PipelineError::InvalidName(text.chars().take(80).collect()))
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }
    };
}

label_newtype!(
    /// An application's name, e.g. `web-app`.
    AppName
);
label_newtype!(
    /// An environment (stage) name, e.g. `staging`.
    EnvName
);
label_newtype!(
    /// A pipeline's name, e.g. `standard`.
    PipelineName
);

/// The name of a check, e.g. `unit-tests` or `trivy`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct CheckName(String);

impl CheckName {
    pub fn parse(text: &str) -> Result<CheckName, PipelineError> {
        let ok = !text.is_empty()
            && text.len() <= 64
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if ok {
            Ok(CheckName(text.to_owned()))
        } else {
            Err(PipelineError::InvalidCheckName(
                text.chars().take(80).collect(),
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CheckName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which grants count for an action on an application.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantScope<'a> {
    /// Grants for the whole application (or global): what building needs — pushing,
    /// notifying builds, reporting checks — since a build feeds every environment.
    WholeApplication,
    /// Grants that cover this environment: promoting, approving, rolling back, holding.
    Environment(&'a str),
    /// Grants that cover this environment by naming it: what a CI identity needs to
    /// promote, so a build identity's application-wide grant never does.
    NamedEnvironment(&'a str),
    /// Any grant for the application, whole or for one environment: what reading its
    /// repository needs.
    AnyEnvironment,
}

/// The roles `grants` give for `application` in `scope`, with `admin` for an
/// administrator.
pub fn roles_granted(
    grants: &[crate::RoleGrant],
    admin: bool,
    application: &str,
    scope: GrantScope<'_>,
) -> std::collections::BTreeSet<Role> {
    let mut roles: std::collections::BTreeSet<Role> = grants
        .iter()
        .filter(|grant| match scope {
            GrantScope::WholeApplication => {
                grant.covers_application(application) && grant.environment.is_none()
            }
            GrantScope::Environment(environment) => {
                grant.covers_environment(application, environment)
            }
            GrantScope::NamedEnvironment(environment) => {
                grant.covers_application(application)
                    && grant.environment.as_deref() == Some(environment)
            }
            GrantScope::AnyEnvironment => grant.covers_application(application),
        })
        .map(|grant| grant.role)
        .collect();
    if admin {
        roles.insert(Role::Admin);
    }
    roles
}

/// What a person may do, per application or globally.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    Viewer,
    Developer,
    Staff,
    Client,
    Platform,
    Admin,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::Viewer,
        Role::Developer,
        Role::Staff,
        Role::Client,
        Role::Platform,
        Role::Admin,
    ];

    /// The roles that push to their application's repository, request promotions, roll
    /// back and hold environments.
    pub const DEPLOYING: [Role; 3] = [Role::Developer, Role::Platform, Role::Admin];

    pub fn parse(text: &str) -> Result<Role, PipelineError> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == text)
            .ok_or_else(|| PipelineError::UnknownRole(text.to_owned()))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Developer => "developer",
            Role::Staff => "staff",
            Role::Client => "client",
            Role::Platform => "platform",
            Role::Admin => "admin",
        }
    }
}

/// A vulnerability severity, as scanners report them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    Critical,
    High,
    Medium,
    Low,
    Unknown,
}

impl Severity {
    pub const ALL: [Severity; 5] = [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
        Severity::Unknown,
    ];

    pub fn parse(text: &str) -> Result<Severity, PipelineError> {
        let lower = text.to_ascii_lowercase();
        Severity::ALL
            .into_iter()
            .find(|s| s.as_str() == lower)
            .ok_or_else(|| PipelineError::UnknownSeverity(text.to_owned()))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::High => "high",
            Severity::Medium => "medium",
            Severity::Low => "low",
            Severity::Unknown => "unknown",
        }
    }
}

/// A check that must have passed, optionally with at most so many findings per severity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequiredCheck {
    pub name: CheckName,
    pub max: BTreeMap<Severity, u64>,
}

/// `count` distinct people holding `role` must approve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApprovalRule {
    pub role: Role,
    pub count: u32,
}

/// What must hold before an artifact enters a stage.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Gate {
    pub checks: Vec<RequiredCheck>,
    pub approvals: Vec<ApprovalRule>,
    /// How long the artifact must have run in the previous stage.
    pub soak: Option<Duration>,
    pub freeze: Vec<FreezeWindow>,
}

/// One stage of a pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    pub environment: EnvName,
    /// New builds enter this stage by themselves (only meaningful for the first stage).
    pub auto: bool,
    pub gate: Gate,
}

/// An ordered list of stages with distinct environments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pipeline {
    name: PipelineName,
    stages: Vec<Stage>,
}

impl Pipeline {
    pub fn new(name: PipelineName, stages: Vec<Stage>) -> Result<Pipeline, PipelineError> {
        if stages.is_empty() {
            return Err(PipelineError::NoStages);
        }
        let mut seen = BTreeSet::new();
        for stage in &stages {
            if !seen.insert(stage.environment.clone()) {
                return Err(PipelineError::DuplicateStage(stage.environment.to_string()));
            }
            if let Some(rule) = stage.gate.approvals.iter().find(|rule| rule.count == 0) {
                return Err(PipelineError::ZeroApprovals(rule.role.as_str().to_owned()));
            }
        }
        Ok(Pipeline { name, stages })
    }

    pub fn name(&self) -> &PipelineName {
        &self.name
    }

    pub fn stages(&self) -> &[Stage] {
        &self.stages
    }

    /// The stage for `environment` and the one before it (`None` for the first stage).
    pub fn stage(&self, environment: &EnvName) -> Option<(&Stage, Option<&Stage>)> {
        let index = self
            .stages
            .iter()
            .position(|s| &s.environment == environment)?;
        Some((
            &self.stages[index],
            index.checked_sub(1).map(|i| &self.stages[i]),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> EnvName {
        EnvName::parse(name).expect("valid")
    }

    fn stage(name: &str) -> Stage {
        Stage {
            environment: env(name),
            auto: false,
            gate: Gate::default(),
        }
    }

    #[test]
    fn names_are_dns_labels() {
        for ok in ["dev", "web-app", "a", "prod2", &"a".repeat(63)] {
            assert!(AppName::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Dev",
            "-dev",
            "dev-",
            "de v",
            "dev_1",
            "a/b",
            &"a".repeat(64),
        ] {
            assert!(EnvName::parse(bad).is_err(), "{bad}");
        }
        assert!(CheckName::parse("unit-tests").is_ok());
        assert!(CheckName::parse("e2e.Chrome_1").is_ok());
        assert!(CheckName::parse("bad name").is_err());
    }

    #[test]
    fn roles_and_severities_parse_from_their_names() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Ok(role));
        }
        assert!(Role::parse("root").is_err());
        assert_eq!(Severity::parse("HIGH"), Ok(Severity::High));
        assert!(Severity::parse("severe").is_err());
    }

    #[test]
    fn pipelines_need_distinct_stages_and_positive_approval_counts() {
        let name = PipelineName::parse("standard").expect("valid");
        assert_eq!(
            Pipeline::new(name.clone(), vec![]),
            Err(PipelineError::NoStages)
        );
        assert_eq!(
            Pipeline::new(name.clone(), vec![stage("dev"), stage("dev")]),
            Err(PipelineError::DuplicateStage("dev".into()))
        );
        let mut zero = stage("prod");
        zero.gate.approvals.push(ApprovalRule {
            role: Role::Staff,
            count: 0,
        });
        assert!(matches!(
            Pipeline::new(name.clone(), vec![zero]),
            Err(PipelineError::ZeroApprovals(_))
        ));
        let pipeline = Pipeline::new(name, vec![stage("dev"), stage("staging"), stage("prod")])
            .expect("valid");
        let (prod, before) = pipeline.stage(&env("prod")).expect("prod exists");
        assert_eq!(prod.environment, env("prod"));
        assert_eq!(before.map(|s| s.environment.clone()), Some(env("staging")));
        assert_eq!(
            pipeline
                .stage(&env("dev"))
                .map(|(_, before)| before.is_none()),
            Some(true)
        );
        assert!(pipeline.stage(&env("qa")).is_none());
    }
}
