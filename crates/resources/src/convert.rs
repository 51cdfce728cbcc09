//! From the YAML shapes in `wire` to the validated model: the rules that relate one
//! field to another (a target names exactly one kind; a gitops target has `key` or
//! `keys`; stage names are distinct; a target suits the application's type; a trust
//! policy keeps `domain::trust::TrustPolicy::validate`; retention rules stay in
//! range and their glob lists match something).
//!
//! Nested shapes convert through [`IntoModel`] while they are read, so their refusals
//! carry a line; the document-level rules run after, naming their field paths.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use domain::pipeline::{EnvName, Gate, Pipeline, RequiredCheck, Severity, Stage};
use domain::trust::{ClaimPattern, MAX_TOKEN_LIFETIME, TrustPolicy, TrustPolicyError};

use crate::error::Problem;
use crate::pipeline::{DeclaredPipeline, ReleaseTier};
use crate::text::Text;
use crate::wire::{
    ApplicationDocument, ApplicationTypeWire, CheckWithLimitsWire, CommandWire, EnvironmentWire,
    GitopsWire, HealthCheckWire, InvalidateWire, PipelineDocument, RecordWire, RegistryCopyWire,
    RetentionPolicyDocument, RetentionRulesWire, StaticSiteWire, TargetWire, TierWire,
    TrustPolicyDocument, WebhookWire,
};
use domain::application::{
    Application, ApplicationError, ApplicationType, CommandTarget, EnvironmentSpec, GitopsTarget,
    HealthCheck, ImageKeys, InvalidationHook, RegistryCopyTarget, StaticSiteTarget, Target,
    WebhookTarget,
};
use domain::retention::{RetentionPolicy, RetentionRules, TierAges};

/// A wire shape that becomes a model value, or is refused with a reason.
pub(crate) trait IntoModel {
    type Model;

    fn into_model(self) -> Result<Self::Model, String>;
}

/// A problem found after a document was read, at a field path inside it.
#[derive(Debug)]
pub(crate) struct FieldProblem {
    pub(crate) field: Option<String>,
    pub(crate) problem: Problem,
}

impl FieldProblem {
    fn at(field: impl Into<String>, problem: Problem) -> FieldProblem {
        FieldProblem {
            field: Some(field.into()),
            problem,
        }
    }
}

pub(crate) fn pipeline(document: PipelineDocument) -> Result<DeclaredPipeline, Vec<FieldProblem>> {
    let mut problems = Vec::new();
    if document.stages.is_empty() {
        problems.push(FieldProblem::at("stages", Problem::NoStages));
    }
    let mut first_index: BTreeMap<&EnvName, usize> = BTreeMap::new();
    for (index, stage) in document.stages.iter().enumerate() {
        match first_index.entry(&stage.name.0) {
            Entry::Vacant(slot) => {
                slot.insert(index);
            }
            Entry::Occupied(slot) => problems.push(FieldProblem::at(
                format!("stages[{index}].name"),
                Problem::DuplicateStage {
                    stage: stage.name.0.to_string(),
                    first: *slot.get(),
                },
            )),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }

    let mut tiers = BTreeMap::new();
    let stages = document
        .stages
        .into_iter()
        .map(|stage| {
            let tier = match stage.tier {
                TierWire::Shared => ReleaseTier::Shared,
                TierWire::Release => ReleaseTier::Release,
            };
            tiers.insert(stage.name.0.clone(), tier);
            Stage {
                environment: stage.name.0,
                auto: stage.auto,
                gate: Gate {
                    checks: stage.gate.checks.into_iter().map(|check| check.0).collect(),
                    approvals: stage
                        .gate
                        .approvals
                        .into_iter()
                        .map(|rule| domain::pipeline::ApprovalRule {
                            role: rule.role.0,
                            count: rule.count.0,
                        })
                        .collect(),
                    soak: stage.gate.soak.map(|soak| soak.0),
                    freeze: stage.gate.freeze.into_iter().map(|w| w.0).collect(),
                },
            }
        })
        .collect();
    // Distinct stages and positive counts were checked above and while reading, so this
    // only fails if the domain grows a rule this crate does not know yet.
    let pipeline = Pipeline::new(document.name.0, stages).map_err(|error| {
        vec![FieldProblem {
            field: None,
            problem: Problem::InvalidField(error.to_string()),
        }]
    })?;
    Ok(DeclaredPipeline::new(pipeline, tiers))
}

pub(crate) fn application(document: ApplicationDocument) -> Result<Application, Vec<FieldProblem>> {
    let app_type = match document.app_type {
        ApplicationTypeWire::Container => ApplicationType::Container,
        ApplicationTypeWire::StaticSite => ApplicationType::StaticSite,
        ApplicationTypeWire::Infra => ApplicationType::Infra,
    };
    let mut problems = Vec::new();
    let mut environments = BTreeMap::new();
    for (name, environment) in document.environments.0 {
        let environment = environment.into_spec();
        if !target_fits(&environment.target, app_type) {
            problems.push(FieldProblem::at(
                format!("environments.{name}.target"),
                Problem::TargetNotForType {
                    target: environment.target.kind_name(),
                    app_type: app_type.as_str(),
                },
            ));
        }
        environments.insert(name.0, environment);
    }
    let retention = document
        .retention
        .map(|wire| retention_rules(wire, "retention.", &mut problems));
    let repository = document.repository.0;
    if repository.as_str() == domain::RELEASE_NAMESPACE
        || repository
            .as_str()
            .starts_with(&format!("{}/", domain::RELEASE_NAMESPACE))
    {
        problems.push(FieldProblem::at(
            "repository",
            Problem::ReleaseTierRepository(repository.to_string()),
        ));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Application {
        name: document.name.0,
        app_type,
        repository,
        pipeline: document.pipeline.0,
        tech_stack: document.tech_stack,
        module: document.module,
        environments,
        retention,
    })
}

pub(crate) fn trust_policy(
    document: TrustPolicyDocument,
) -> Result<TrustPolicy, Vec<FieldProblem>> {
    let mut problems = Vec::new();
    let applications = distinct_sorted("applications", document.applications, &mut problems);
    let environments = match document.environments {
        None => Vec::new(),
        Some(environments) if environments.is_empty() => {
            problems.push(FieldProblem::at("environments", Problem::NoEnvironments));
            Vec::new()
        }
        Some(environments) => distinct_sorted("environments", environments, &mut problems),
    };
    let policy = TrustPolicy {
        name: document.name.0.0,
        issuer: document.issuer,
        audience: document.audience,
        // Sorted by claim, as the map is.
        claims: document
            .claims
            .0
            .into_iter()
            .map(|(claim, pattern)| ClaimPattern {
                claim,
                pattern: pattern.0,
            })
            .collect(),
        role: document.role.0,
        applications,
        environments,
        // Unless the policy asks for less, the longest lifetime allowed.
        max_token_lifetime: document
            .max_token_lifetime
            .map_or(MAX_TOKEN_LIFETIME, |lifetime| lifetime.0),
    };
    if let Err(error) = policy.validate() {
        problems.push(FieldProblem::at(
            trust_policy_field(&error),
            Problem::TrustPolicy(error),
        ));
    }
    if problems.is_empty() {
        Ok(policy)
    } else {
        Err(problems)
    }
}

/// The field a broken trust-policy rule is about.
fn trust_policy_field(error: &TrustPolicyError) -> String {
    match error {
        TrustPolicyError::Issuer => "issuer".to_owned(),
        TrustPolicyError::NoAudience => "audience".to_owned(),
        TrustPolicyError::ReservedClaim(claim) => format!("claims.{claim}"),
        TrustPolicyError::EmptyClaim | TrustPolicyError::NoIdentityClaim => "claims".to_owned(),
        TrustPolicyError::RoleNotGrantable(_) => "role".to_owned(),
        TrustPolicyError::NoApplication => "applications".to_owned(),
        TrustPolicyError::Lifetime => "max_token_lifetime".to_owned(),
    }
}

/// The names of a list, sorted (their order means nothing, so equal policies render
/// alike); a repeated name is reported at its second position.
/// The most a policy may keep by count, and the longest rollback window.
const MAX_KEEP_TAGGED: u32 = 100_000;
const MAX_ROLLBACK_WINDOW: u32 = 1_000;

/// A policy's rules with the defaults filled in; `prefix` is the path of the fields
/// (`retention.` on an application, empty on a policy).
pub(crate) fn retention_rules(
    wire: RetentionRulesWire,
    prefix: &str,
    problems: &mut Vec<FieldProblem>,
) -> RetentionRules {
    let defaults = RetentionRules::default();
    let mut in_range = |field: &str, value: Option<u32>, min: u32, max: u32, default: u32| {
        let value = value.unwrap_or(default);
        if !(min..=max).contains(&value) {
            problems.push(FieldProblem::at(
                format!("{prefix}{field}"),
                Problem::OutOfRange {
                    value: u64::from(value),
                    min: u64::from(min),
                    max: u64::from(max),
                },
            ));
        }
        value
    };
    let keep_tagged = in_range(
        "keep_tagged",
        wire.keep_tagged,
        0,
        MAX_KEEP_TAGGED,
        defaults.keep_tagged,
    );
    let rollback_window = in_range(
        "rollback_window",
        wire.rollback_window,
        1,
        MAX_ROLLBACK_WINDOW,
        defaults.rollback_window,
    );
    let ages = wire.expire_after.unwrap_or_default();
    let expire_after = TierAges {
        dev: ages.dev.map_or(defaults.expire_after.dev, |age| age.0),
        rc: ages.rc.map_or(defaults.expire_after.rc, |age| age.0),
        release: ages
            .release
            .map_or(defaults.expire_after.release, |age| age.0),
    };
    let tags = match wire.tags {
        None => defaults.tags,
        Some(tags) => globs(
            &format!("{prefix}tags"),
            tags,
            "leave `tags` out to apply the rules to every tag",
            problems,
        ),
    };
    RetentionRules {
        keep_tagged,
        expire_untagged_after: wire
            .expire_untagged_after
            .map_or(defaults.expire_untagged_after, |age| age.0),
        expire_after,
        tags,
        rollback_window,
    }
}

/// A non-empty list of non-empty globs, in the order written, without repeats.
fn globs(
    field: &str,
    patterns: Vec<String>,
    hint: &'static str,
    problems: &mut Vec<FieldProblem>,
) -> Vec<String> {
    if patterns.is_empty() {
        problems.push(FieldProblem::at(field, Problem::EmptyList { hint }));
    }
    let mut kept: Vec<String> = Vec::new();
    for (index, pattern) in patterns.into_iter().enumerate() {
        if pattern.is_empty() {
            problems.push(FieldProblem::at(
                format!("{field}[{index}]"),
                Problem::EmptyPattern,
            ));
        } else if let Some(first) = kept.iter().position(|p| *p == pattern) {
            problems.push(FieldProblem::at(
                format!("{field}[{index}]"),
                Problem::DuplicateItem {
                    item: pattern,
                    list: "the list",
                    first,
                },
            ));
        } else {
            kept.push(pattern);
        }
    }
    kept
}

pub(crate) fn retention_policy(
    document: RetentionPolicyDocument,
) -> Result<RetentionPolicy, Vec<FieldProblem>> {
    let mut problems = Vec::new();
    let (name, repositories, priority, rules) = document.split();
    let repositories = globs(
        "repositories",
        repositories,
        "name the repositories the policy governs, e.g. `acme/*`",
        &mut problems,
    );
    let rules = retention_rules(rules, "", &mut problems);
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(RetentionPolicy {
        name,
        repositories,
        priority: priority.unwrap_or(domain::retention::DEFAULT_PRIORITY),
        rules,
    })
}

fn distinct_sorted<T: Ord + ToString>(
    list: &'static str,
    items: Vec<Text<T>>,
    problems: &mut Vec<FieldProblem>,
) -> Vec<T> {
    let mut first_index: BTreeMap<T, usize> = BTreeMap::new();
    for (index, Text(item)) in items.into_iter().enumerate() {
        match first_index.entry(item) {
            Entry::Vacant(slot) => {
                slot.insert(index);
            }
            Entry::Occupied(slot) => problems.push(FieldProblem::at(
                format!("{list}[{index}]"),
                Problem::DuplicateItem {
                    item: slot.key().to_string(),
                    list,
                    first: *slot.get(),
                },
            )),
        }
    }
    first_index.into_keys().collect()
}

/// A static site is only synced from a static-site artifact, and infra has no artifact
/// to copy; every other pairing is the team's call.
fn target_fits(target: &Target, app_type: ApplicationType) -> bool {
    match target {
        Target::StaticSite(_) => app_type == ApplicationType::StaticSite,
        Target::RegistryCopy(_) => app_type != ApplicationType::Infra,
        Target::Record | Target::Gitops(_) | Target::Webhook(_) | Target::Command(_) => true,
    }
}

impl EnvironmentWire {
    fn into_spec(self) -> EnvironmentSpec {
        EnvironmentSpec {
            target: self.target,
            health_check: self.health_check,
            auto_rollback: self.auto_rollback,
            require_attestation: self.require_attestation,
            config: self
                .config
                .0
                .into_iter()
                .map(|(key, value)| (key.0, value.0))
                .collect(),
        }
    }
}

impl IntoModel for CheckWithLimitsWire {
    type Model = RequiredCheck;

    fn into_model(self) -> Result<RequiredCheck, String> {
        let limits = [
            (Severity::Critical, self.max.critical),
            (Severity::High, self.max.high),
            (Severity::Medium, self.max.medium),
            (Severity::Low, self.max.low),
            (Severity::Unknown, self.max.unknown),
        ];
        Ok(RequiredCheck {
            name: self.name.0,
            max: limits
                .into_iter()
                .filter_map(|(severity, limit)| Some((severity, limit?)))
                .collect(),
        })
    }
}

impl IntoModel for TargetWire {
    type Model = Target;

    fn into_model(self) -> Result<Target, String> {
        let mut given: Vec<Target> = [
            self.record,
            self.gitops,
            self.static_site,
            self.registry_copy,
            self.webhook,
            self.command,
        ]
        .into_iter()
        .flatten()
        .collect();
        match given.len() {
            1 => Ok(given.remove(0)),
            0 => Err("a target names one of record, gitops, static-site, registry-copy, webhook or command".to_owned()),
            _ => Err(format!(
                "a target names exactly one kind, not {}",
                given
                    .iter()
                    .map(|target| format!("`{}`", target.kind_name()))
                    .collect::<Vec<_>>()
                    .join(" and ")
            )),
        }
    }
}

impl IntoModel for RecordWire {
    type Model = Target;

    fn into_model(self) -> Result<Target, String> {
        Ok(Target::Record)
    }
}

impl IntoModel for GitopsWire {
    type Model = Target;

    fn into_model(self) -> Result<Target, String> {
        let image = match (self.key, self.keys) {
            (Some(key), None) => ImageKeys::Reference(key.0),
            (None, Some(keys)) => ImageKeys::Split {
                repository: keys.repository.map(|key| key.0),
                tag: keys.tag.map(|key| key.0),
                digest: keys.digest.0,
            },
            (Some(_), Some(_)) => {
                return Err("give `key` (the full image reference) or `keys` (separate repository, tag and digest keys), not both".to_owned());
            }
            (None, None) => {
                return Err("missing `key` (where the full image reference is written) or `keys` (separate repository, tag and digest keys)".to_owned());
            }
        };
        Ok(Target::Gitops(GitopsTarget {
            repo: self.repo.0,
            branch: self.branch.map(|branch| branch.0),
            file: self.file.0,
            image,
        }))
    }
}

impl IntoModel for StaticSiteWire {
    type Model = Target;

    fn into_model(self) -> Result<Target, String> {
        if let Some(value) = &self.default_cache_control {
            let printable = value.bytes().all(|b| b == b' ' || b.is_ascii_graphic());
            if value.trim().is_empty() || !printable {
                return Err(format!(
                    "`{value}` is not a Cache-Control value: use printable ASCII, e.g. `public, max-age=3600`"
                ));
            }
        }
        Ok(Target::StaticSite(StaticSiteTarget {
            destination: self.destination.0,
            default_cache_control: self.default_cache_control,
            invalidate: self.invalidate,
        }))
    }
}

impl IntoModel for InvalidateWire {
    type Model = InvalidationHook;

    fn into_model(self) -> Result<InvalidationHook, String> {
        match (self.url, self.command) {
            (Some(url), None) => Ok(InvalidationHook::Http(url.0)),
            (None, Some(command)) => Ok(InvalidationHook::Command {
                program: non_empty_program(command.program)?,
                args: command.args,
            }),
            _ => Err("an invalidation hook is either `url` or `command`".to_owned()),
        }
    }
}

impl IntoModel for RegistryCopyWire {
    type Model = Target;

    fn into_model(self) -> Result<Target, String> {
        Ok(Target::RegistryCopy(RegistryCopyTarget {
            to: self.to.0,
            env_tag: self.env_tag.unwrap_or(true),
        }))
    }
}

impl IntoModel for WebhookWire {
    type Model = Target;

    fn into_model(self) -> Result<Target, String> {
        Ok(Target::Webhook(WebhookTarget {
            url: self.url.0,
            secret_ref: self.secret_ref.map(|secret| secret.0),
            timeout: self
                .timeout
                .map_or(WebhookTarget::DEFAULT_TIMEOUT, |timeout| timeout.0),
        }))
    }
}

impl IntoModel for CommandWire {
    type Model = Target;

    fn into_model(self) -> Result<Target, String> {
        Ok(Target::Command(CommandTarget {
            program: non_empty_program(self.program)?,
            args: self.args,
            timeout: self
                .timeout
                .map_or(CommandTarget::DEFAULT_TIMEOUT, |timeout| timeout.0),
        }))
    }
}

impl IntoModel for HealthCheckWire {
    type Model = HealthCheck;

    fn into_model(self) -> Result<HealthCheck, String> {
        Ok(HealthCheck {
            url: self.url.0,
            expect_status: self
                .expect_status
                .map_or(HealthCheck::DEFAULT_STATUS, |status| status.0),
            timeout: self
                .timeout
                .map_or(HealthCheck::DEFAULT_TIMEOUT, |timeout| timeout.0),
            retries: self.retries.unwrap_or(HealthCheck::DEFAULT_RETRIES),
        })
    }
}

fn non_empty_program(program: String) -> Result<String, String> {
    if program.trim().is_empty() {
        Err(ApplicationError::EmptyProgram.to_string())
    } else {
        Ok(program)
    }
}
