use std::collections::BTreeMap;
use std::time::Duration;

use domain::pipeline::{ApprovalRule, EnvName, PipelineName, RequiredCheck, Role, Severity};
use resources::{ApplicationType, ImageKeys, ReleaseTier, ResourceKind, Target};

use crate::{SPEC_EXAMPLE, parsed};

fn env(name: &str) -> EnvName {
    EnvName::parse(name).expect("valid")
}

fn required_check(name: &str, max: &[(Severity, u64)]) -> RequiredCheck {
    RequiredCheck {
        name: domain::pipeline::CheckName::parse(name).expect("valid"),
        max: max.iter().copied().collect(),
    }
}

#[test]
fn the_spec_example_declares_a_pipeline_then_an_application() {
    let set = parsed(SPEC_EXAMPLE);
    let keys: Vec<_> = set
        .resources()
        .map(|resource| (resource.kind(), resource.name().to_owned()))
        .collect();
    assert_eq!(
        keys,
        [
            (ResourceKind::Pipeline, "standard".to_owned()),
            (ResourceKind::Application, "web-app".to_owned()),
        ]
    );
    let labels: Vec<_> = set
        .documents()
        .map(|(label, _)| label.to_string())
        .collect();
    assert_eq!(
        labels,
        [
            "document 1 (Pipeline `standard`)",
            "document 2 (Application `web-app`)"
        ]
    );
}

#[test]
fn the_spec_pipeline_deploys_dev_automatically_and_guards_staging_and_prod() {
    let set = parsed(SPEC_EXAMPLE);
    let declared = set
        .pipeline(&PipelineName::parse("standard").expect("valid"))
        .expect("declared");
    let stages = declared.pipeline().stages();
    let names: Vec<_> = stages.iter().map(|s| s.environment.as_str()).collect();
    assert_eq!(names, ["dev", "staging", "prod"]);

    let (dev, staging, prod) = (&stages[0], &stages[1], &stages[2]);
    assert!(dev.auto);
    assert_eq!(dev.gate.checks, [required_check("unit-tests", &[])]);
    assert!(dev.gate.approvals.is_empty() && dev.gate.soak.is_none());
    assert_eq!(declared.release_tier(&env("dev")), ReleaseTier::Shared);

    assert!(!staging.auto);
    assert_eq!(
        staging.gate.checks,
        [required_check("integration-tests", &[])]
    );
    assert_eq!(
        staging.gate.approvals,
        [ApprovalRule {
            role: Role::Staff,
            count: 1
        }]
    );
    assert_eq!(staging.gate.soak, Some(Duration::from_secs(30 * 60)));
    assert!(staging.gate.freeze.is_empty());

    assert_eq!(
        prod.gate.checks,
        [
            required_check("e2e", &[]),
            required_check("trivy", &[(Severity::Critical, 0), (Severity::High, 0)])
        ]
    );
    assert_eq!(
        prod.gate.approvals,
        [
            ApprovalRule {
                role: Role::Staff,
                count: 1
            },
            ApprovalRule {
                role: Role::Client,
                count: 1
            }
        ]
    );
    let freeze: Vec<_> = prod.gate.freeze.iter().map(|w| w.text()).collect();
    assert_eq!(freeze, ["Fri 16:00 - Mon 08:00 Europe/London"]);
    assert_eq!(declared.release_tier(&env("prod")), ReleaseTier::Release);
}

#[test]
fn the_spec_freeze_window_holds_on_a_friday_evening_in_london() {
    let set = parsed(SPEC_EXAMPLE);
    let declared = set.pipelines().next().expect("a pipeline");
    let window = &declared.pipeline().stages()[2].gate.freeze[0];
    // Friday 2026-03-06 17:00 UTC is 17:00 in London (GMT); Monday 09:00 is outside.
    let friday_evening: jiff::Timestamp = "2026-03-06T17:00:00Z".parse().expect("valid");
    let monday_morning: jiff::Timestamp = "2026-03-09T09:00:00Z".parse().expect("valid");
    assert!(window.contains(friday_evening));
    assert!(!window.contains(monday_morning));
}

#[test]
fn the_spec_application_deploys_dev_and_staging_by_gitops_and_copies_prod() {
    let set = parsed(SPEC_EXAMPLE);
    let application = set.applications().next().expect("an application");
    assert_eq!(application.name.as_str(), "web-app");
    assert_eq!(application.app_type, ApplicationType::Container);
    assert_eq!(application.repository.as_str(), "acme/web-app");
    assert_eq!(application.pipeline.as_str(), "standard");
    assert_eq!(application.tech_stack, None);

    let environments: Vec<_> = application
        .environments
        .keys()
        .map(EnvName::as_str)
        .collect();
    assert_eq!(environments, ["dev", "prod", "staging"]);

    let Target::Gitops(dev) = &application.environments[&env("dev")].target else {
        panic!("dev deploys by gitops");
    };
    assert_eq!(dev.repo.as_str(), "git@…:acme/infra-config.git");
    assert_eq!(dev.file.as_str(), "apps/web-app/dev/values.yaml");
    assert_eq!(dev.branch, None);
    assert!(matches!(&dev.image, ImageKeys::Reference(key) if key.as_str() == "image.digest"));

    let Target::Gitops(staging) = &application.environments[&env("staging")].target else {
        panic!("staging deploys by gitops");
    };
    assert_eq!(staging.file.as_str(), "apps/web-app/staging/values.yaml");

    let prod = &application.environments[&env("prod")];
    let Target::RegistryCopy(copy) = &prod.target else {
        panic!("prod deploys by registry copy");
    };
    assert_eq!(copy.to.registry(), "prod-registry.example.com");
    assert_eq!(copy.to.repository().as_str(), "acme/web-app");
    assert_eq!(prod.health_check, None);
    assert!(!prod.auto_rollback);
    assert_eq!(prod.config, BTreeMap::new());
}

#[test]
fn the_spec_example_references_are_complete() {
    assert_eq!(parsed(SPEC_EXAMPLE).check_references(&[], &[]), Ok(()));
}
