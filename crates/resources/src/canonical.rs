//! The canonical rendering of a resource: pretty JSON in which every field is present
//! with its effective value (defaults filled in), fields appear in one fixed order, maps
//! are sorted by key, and durations are written one way (`1h 30m`). Two files that mean
//! the same thing render identically, so `gantry apply --dry-run` can compare what is
//! stored with what is about to be applied, line by line ([`crate::diff_lines`]).

use std::collections::BTreeMap;

use domain::pipeline::Stage;
use domain::retention::{RetentionPolicy, RetentionRules, Tier};
use domain::trust::TrustPolicy;
use serde::Serialize;

use crate::error::{Problem, ResourceError, ResourceErrors};
use crate::parse::parse_file;
use crate::pipeline::DeclaredPipeline;
use crate::set::{Resource, ResourceKey, ResourceSet};
use crate::text::render_duration;
use domain::application::{
    Application, ConfigValue, EnvironmentSpec, HealthCheck, ImageKeys, InvalidationHook, Target,
};

impl Resource {
    /// The canonical JSON of this resource, ending with a newline.
    pub fn canonical(&self) -> String {
        let rendered = match self {
            Resource::Pipeline(pipeline) => {
                serde_json::to_string_pretty(&CanonicalPipeline::from(pipeline))
            }
            Resource::Application(application) => {
                serde_json::to_string_pretty(&CanonicalApplication::from(application))
            }
            Resource::TrustPolicy(policy) => {
                serde_json::to_string_pretty(&CanonicalTrustPolicy::from(policy))
            }
            Resource::RetentionPolicy(policy) => {
                serde_json::to_string_pretty(&CanonicalRetentionPolicy::from(policy))
            }
        };
        // Serializing plain structs with string keys into a String cannot fail.
        let mut text = rendered.expect("canonical forms serialize to JSON");
        text.push('\n');
        text
    }
}

impl ResourceSet {
    /// The canonical rendering of every resource, by kind and name.
    pub fn canonical(&self) -> BTreeMap<ResourceKey, String> {
        self.resources()
            .map(|resource| (resource.key(), resource.canonical()))
            .collect()
    }
}

#[derive(Serialize)]
struct CanonicalPipeline<'a> {
    kind: &'static str,
    name: &'a str,
    stages: Vec<CanonicalStage<'a>>,
}

#[derive(Serialize)]
struct CanonicalStage<'a> {
    name: &'a str,
    auto: bool,
    tier: &'static str,
    gate: CanonicalGate<'a>,
}

#[derive(Serialize)]
struct CanonicalGate<'a> {
    checks: Vec<CanonicalCheck<'a>>,
    approvals: Vec<CanonicalApproval>,
    soak: Option<String>,
    freeze: Vec<&'a str>,
}

#[derive(Serialize)]
struct CanonicalCheck<'a> {
    name: &'a str,
    max: BTreeMap<&'static str, u64>,
}

#[derive(Serialize)]
struct CanonicalApproval {
    role: &'static str,
    count: u32,
}

impl<'a> From<&'a DeclaredPipeline> for CanonicalPipeline<'a> {
    fn from(declared: &'a DeclaredPipeline) -> Self {
        let stage = |stage: &'a Stage| CanonicalStage {
            name: stage.environment.as_str(),
            auto: stage.auto,
            tier: declared.release_tier(&stage.environment).as_str(),
            gate: CanonicalGate {
                checks: stage
                    .gate
                    .checks
                    .iter()
                    .map(|check| CanonicalCheck {
                        name: check.name.as_str(),
                        max: check
                            .max
                            .iter()
                            .map(|(severity, limit)| (severity.as_str(), *limit))
                            .collect(),
                    })
                    .collect(),
                approvals: stage
                    .gate
                    .approvals
                    .iter()
                    .map(|rule| CanonicalApproval {
                        role: rule.role.as_str(),
                        count: rule.count,
                    })
                    .collect(),
                soak: stage.gate.soak.map(render_duration),
                freeze: stage
                    .gate
                    .freeze
                    .iter()
                    .map(|window| window.text())
                    .collect(),
            },
        };
        CanonicalPipeline {
            kind: "Pipeline",
            name: declared.name().as_str(),
            stages: declared.pipeline().stages().iter().map(stage).collect(),
        }
    }
}

#[derive(Serialize)]
struct CanonicalApplication<'a> {
    kind: &'static str,
    name: &'a str,
    #[serde(rename = "type")]
    app_type: &'static str,
    repository: &'a str,
    pipeline: &'a str,
    tech_stack: Option<&'a str>,
    module: Option<&'a str>,
    environments: BTreeMap<&'a str, CanonicalEnvironment<'a>>,
    /// Left out when absent, so applications stored before retention existed render
    /// as they did.
    #[serde(skip_serializing_if = "Option::is_none")]
    retention: Option<CanonicalRetentionRules<'a>>,
}

#[derive(Serialize)]
struct CanonicalRetentionRules<'a> {
    keep_tagged: u32,
    expire_untagged_after: String,
    expire_after: BTreeMap<&'static str, String>,
    tags: Vec<&'a str>,
    rollback_window: u32,
}

impl<'a> From<&'a RetentionRules> for CanonicalRetentionRules<'a> {
    fn from(rules: &'a RetentionRules) -> Self {
        CanonicalRetentionRules {
            keep_tagged: rules.keep_tagged,
            expire_untagged_after: rules.expire_untagged_after.to_string(),
            expire_after: Tier::ALL
                .into_iter()
                .map(|tier| (tier.as_str(), rules.expire_after.of(tier).to_string()))
                .collect(),
            tags: rules.tags.iter().map(String::as_str).collect(),
            rollback_window: rules.rollback_window,
        }
    }
}

#[derive(Serialize)]
struct CanonicalRetentionPolicy<'a> {
    kind: &'static str,
    name: &'a str,
    repositories: Vec<&'a str>,
    priority: u32,
    #[serde(flatten)]
    rules: CanonicalRetentionRules<'a>,
}

impl<'a> From<&'a RetentionPolicy> for CanonicalRetentionPolicy<'a> {
    fn from(policy: &'a RetentionPolicy) -> Self {
        CanonicalRetentionPolicy {
            kind: "RetentionPolicy",
            name: &policy.name,
            repositories: policy.repositories.iter().map(String::as_str).collect(),
            priority: policy.priority,
            rules: CanonicalRetentionRules::from(&policy.rules),
        }
    }
}

#[derive(Serialize)]
struct CanonicalEnvironment<'a> {
    target: CanonicalTarget<'a>,
    health_check: Option<CanonicalHealthCheck<'a>>,
    auto_rollback: bool,
    #[serde(skip_serializing_if = "is_false")]
    require_attestation: bool,
    config: BTreeMap<&'a str, CanonicalConfigValue<'a>>,
}

fn is_false(value: &bool) -> bool {
    !*value
}

fn is_true(value: &bool) -> bool {
    *value
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
enum CanonicalTarget<'a> {
    Record {},
    Gitops {
        repo: &'a str,
        branch: Option<&'a str>,
        file: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        key: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        keys: Option<CanonicalImageKeys<'a>>,
    },
    StaticSite {
        destination: String,
        default_cache_control: Option<&'a str>,
        invalidate: Option<CanonicalInvalidate<'a>>,
    },
    RegistryCopy {
        to: String,
        /// Written only when off, so applications declared before it existed keep
        /// their canonical text.
        #[serde(skip_serializing_if = "is_true")]
        env_tag: bool,
    },
    Webhook {
        url: &'a str,
        secret_ref: Option<&'a str>,
        timeout: String,
    },
    Command {
        program: &'a str,
        args: &'a [String],
        timeout: String,
    },
}

#[derive(Serialize)]
struct CanonicalImageKeys<'a> {
    repository: Option<&'a str>,
    tag: Option<&'a str>,
    digest: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
enum CanonicalInvalidate<'a> {
    Url(&'a str),
    Command {
        program: &'a str,
        args: &'a [String],
    },
}

#[derive(Serialize)]
struct CanonicalHealthCheck<'a> {
    url: &'a str,
    expect_status: u16,
    timeout: String,
    retries: u32,
}

#[derive(Serialize)]
#[serde(untagged)]
enum CanonicalConfigValue<'a> {
    String(&'a str),
    Integer(i64),
    Boolean(bool),
}

impl<'a> From<&'a Application> for CanonicalApplication<'a> {
    fn from(application: &'a Application) -> Self {
        CanonicalApplication {
            kind: "Application",
            name: application.name.as_str(),
            app_type: application.app_type.as_str(),
            repository: application.repository.as_str(),
            pipeline: application.pipeline.as_str(),
            tech_stack: application.tech_stack.as_deref(),
            module: application.module.as_deref(),
            environments: application
                .environments
                .iter()
                .map(|(name, environment)| (name.as_str(), CanonicalEnvironment::from(environment)))
                .collect(),
            retention: application
                .retention
                .as_ref()
                .map(CanonicalRetentionRules::from),
        }
    }
}

impl<'a> From<&'a EnvironmentSpec> for CanonicalEnvironment<'a> {
    fn from(environment: &'a EnvironmentSpec) -> Self {
        CanonicalEnvironment {
            target: CanonicalTarget::from(&environment.target),
            health_check: environment
                .health_check
                .as_ref()
                .map(CanonicalHealthCheck::from),
            auto_rollback: environment.auto_rollback,
            require_attestation: environment.require_attestation,
            config: environment
                .config
                .iter()
                .map(|(key, value)| {
                    let value = match value {
                        ConfigValue::String(text) => CanonicalConfigValue::String(text),
                        ConfigValue::Integer(number) => CanonicalConfigValue::Integer(*number),
                        ConfigValue::Boolean(flag) => CanonicalConfigValue::Boolean(*flag),
                    };
                    (key.as_str(), value)
                })
                .collect(),
        }
    }
}

impl<'a> From<&'a Target> for CanonicalTarget<'a> {
    fn from(target: &'a Target) -> Self {
        match target {
            Target::Record => CanonicalTarget::Record {},
            Target::Gitops(gitops) => {
                let (key, keys) = match &gitops.image {
                    ImageKeys::Reference(key) => (Some(key.as_str()), None),
                    ImageKeys::Split {
                        repository,
                        tag,
                        digest,
                    } => (
                        None,
                        Some(CanonicalImageKeys {
                            repository: repository.as_ref().map(|key| key.as_str()),
                            tag: tag.as_ref().map(|key| key.as_str()),
                            digest: digest.as_str(),
                        }),
                    ),
                };
                CanonicalTarget::Gitops {
                    repo: gitops.repo.as_str(),
                    branch: gitops.branch.as_ref().map(|branch| branch.as_str()),
                    file: gitops.file.as_str(),
                    key,
                    keys,
                }
            }
            Target::StaticSite(site) => CanonicalTarget::StaticSite {
                destination: site.destination.to_string(),
                default_cache_control: site.default_cache_control.as_deref(),
                invalidate: site.invalidate.as_ref().map(|hook| match hook {
                    InvalidationHook::Http(url) => CanonicalInvalidate::Url(url.as_str()),
                    InvalidationHook::Command { program, args } => {
                        CanonicalInvalidate::Command { program, args }
                    }
                }),
            },
            Target::RegistryCopy(copy) => CanonicalTarget::RegistryCopy {
                to: copy.to.to_string(),
                env_tag: copy.env_tag,
            },
            Target::Webhook(webhook) => CanonicalTarget::Webhook {
                url: webhook.url.as_str(),
                secret_ref: webhook.secret_ref.as_ref().map(|secret| secret.as_str()),
                timeout: render_duration(webhook.timeout),
            },
            Target::Command(command) => CanonicalTarget::Command {
                program: &command.program,
                args: &command.args,
                timeout: render_duration(command.timeout),
            },
        }
    }
}

impl<'a> From<&'a HealthCheck> for CanonicalHealthCheck<'a> {
    fn from(check: &'a HealthCheck) -> Self {
        CanonicalHealthCheck {
            url: check.url.as_str(),
            expect_status: check.expect_status,
            timeout: render_duration(check.timeout),
            retries: check.retries,
        }
    }
}

#[derive(Serialize)]
struct CanonicalTrustPolicy<'a> {
    kind: &'static str,
    name: &'a str,
    issuer: &'a str,
    audience: &'a str,
    claims: BTreeMap<&'a str, &'a str>,
    role: &'static str,
    applications: Vec<&'a str>,
    /// `null` for every environment of the applications.
    environments: Option<Vec<&'a str>>,
    max_token_lifetime: String,
}

impl<'a> From<&'a TrustPolicy> for CanonicalTrustPolicy<'a> {
    fn from(policy: &'a TrustPolicy) -> Self {
        CanonicalTrustPolicy {
            kind: "TrustPolicy",
            name: &policy.name,
            issuer: &policy.issuer,
            audience: &policy.audience,
            claims: policy
                .claims
                .iter()
                .map(|pattern| (pattern.claim.as_str(), pattern.pattern.as_str()))
                .collect(),
            role: policy.role.as_str(),
            applications: policy
                .applications
                .iter()
                .map(|application| application.as_str())
                .collect(),
            environments: (!policy.environments.is_empty()).then(|| {
                policy
                    .environments
                    .iter()
                    .map(|environment| environment.as_str())
                    .collect()
            }),
            max_token_lifetime: render_duration(policy.max_token_lifetime),
        }
    }
}

impl DeclaredPipeline {
    /// Reads a pipeline back from its canonical text (as stored by an apply), so that
    /// an application can be checked against a pipeline applied earlier and the engine
    /// can evaluate its gates.
    ///
    /// The canonical form of a pipeline is JSON, hence YAML, spelling every field the
    /// way the YAML reader accepts it; the tests hold it to reading back as the same
    /// pipeline.
    pub fn from_canonical(text: &str) -> Result<DeclaredPipeline, ResourceErrors> {
        match read_back("stored pipeline", text)? {
            Resource::Pipeline(pipeline) => Ok(pipeline),
            _ => Err(not_one("stored pipeline", "Pipeline")),
        }
    }
}

/// Reads an application back from its canonical text, for the engine to find each
/// environment's target and config. Absent options render as `null`, which the YAML
/// reader does not take for "absent", so they are dropped before reading.
///
/// A free function because `Application` belongs to `domain`.
pub fn application_from_canonical(text: &str) -> Result<Application, ResourceErrors> {
    match read_back("stored application", text)? {
        Resource::Application(application) => Ok(application),
        _ => Err(not_one("stored application", "Application")),
    }
}

/// Reads a trust policy back from its canonical text (as stored by an apply), for the
/// token exchange to match job tokens against it. The policy is validated again on the
/// way, so what comes back keeps every rule of `TrustPolicy::validate`.
///
/// A free function because `TrustPolicy` belongs to `domain`; it is the counterpart of
/// [`DeclaredPipeline::from_canonical`] and [`application_from_canonical`].
pub fn trust_policy_from_canonical(text: &str) -> Result<TrustPolicy, ResourceErrors> {
    match read_back("stored trust policy", text)? {
        Resource::TrustPolicy(policy) => Ok(policy),
        _ => Err(not_one("stored trust policy", "TrustPolicy")),
    }
}

/// Reads a retention policy back from its canonical text, for garbage collection to
/// apply it.
pub fn retention_policy_from_canonical(text: &str) -> Result<RetentionPolicy, ResourceErrors> {
    match read_back("stored retention policy", text)? {
        Resource::RetentionPolicy(policy) => Ok(policy),
        _ => Err(not_one("stored retention policy", "RetentionPolicy")),
    }
}

/// Parses a stored canonical text (JSON) holding exactly one resource, with `null`
/// members removed.
fn read_back(file: &str, text: &str) -> Result<Resource, ResourceErrors> {
    let mut value: serde_json::Value = serde_json::from_str(text).map_err(|error| {
        ResourceErrors::one(ResourceError {
            file: file.to_owned(),
            document: None,
            field: None,
            position: None,
            problem: Problem::InvalidField(format!("not canonical JSON: {error}")),
        })
    })?;
    drop_nulls(&mut value);
    let set = parse_file(file, &value.to_string())?;
    let mut resources = set.documents();
    match (resources.next(), resources.next()) {
        (Some((_, resource)), None) => Ok(resource.clone()),
        _ => Err(not_one(file, "resource")),
    }
}

fn drop_nulls(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(members) => {
            members.retain(|_, member| !member.is_null());
            members.values_mut().for_each(drop_nulls);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

fn not_one(file: &str, kind: &str) -> ResourceErrors {
    ResourceErrors::one(ResourceError {
        file: file.to_owned(),
        document: None,
        field: None,
        position: None,
        problem: Problem::InvalidField(format!("a {file}'s text holds exactly one {kind}")),
    })
}
