use std::path::PathBuf;
use std::time::Duration;

use domain::pipeline::EnvName;
use resources::{
    ConfigValue, EnvironmentSpec, HealthCheck, ImageKeys, InvalidationHook, SiteDestination, Target,
};

use crate::parsed;

/// Reads `environment` (a YAML mapping, indented by four spaces) as the `dev`
/// environment of an application of `app_type`.
fn environment(app_type: &str, environment: &str) -> EnvironmentSpec {
    let text = format!(
        "kind: Application\nname: web\ntype: {app_type}\nrepository: acme/web\npipeline: standard\nenvironments:\n  dev:\n{environment}"
    );
    let set = parsed(&text);
    let application = set.applications().next().expect("an application");
    application.environments[&EnvName::parse("dev").expect("valid")].clone()
}

#[test]
fn every_target_kind_of_the_spec_can_be_declared() {
    let spec = environment("infra", "    target: { record: {} }\n");
    assert_eq!(spec.target, Target::Record);
    assert_eq!(
        environment("infra", "    target: { record: }\n").target,
        Target::Record
    );

    let spec = environment(
        "container",
        "    target:\n      gitops:\n        repo: https://git.example.com/acme/infra.git\n        branch: main\n        file: apps/web/values.yaml\n        keys: { repository: image.repository, tag: image.tag, digest: image.digest }\n",
    );
    let Target::Gitops(gitops) = spec.target else {
        panic!("gitops")
    };
    assert_eq!(
        gitops.branch.map(|b| b.to_string()).as_deref(),
        Some("main")
    );
    let ImageKeys::Split {
        repository,
        tag,
        digest,
    } = gitops.image
    else {
        panic!("split keys")
    };
    assert_eq!(
        (
            repository.map(|k| k.to_string()),
            tag.map(|k| k.to_string()),
            digest.to_string()
        ),
        (
            Some("image.repository".into()),
            Some("image.tag".into()),
            "image.digest".into()
        )
    );

    let spec = environment(
        "static-site",
        "    target:\n      static-site:\n        destination: s3://acme-sites/web\n        default_cache_control: public, max-age=600\n        invalidate: { url: \"https://cdn.example.com/purge\" }\n",
    );
    let Target::StaticSite(site) = spec.target else {
        panic!("static-site")
    };
    assert_eq!(
        site.destination,
        SiteDestination::S3 {
            bucket: "acme-sites".into(),
            prefix: "web".into()
        }
    );
    assert_eq!(
        site.default_cache_control.as_deref(),
        Some("public, max-age=600")
    );
    assert!(
        matches!(site.invalidate, Some(InvalidationHook::Http(url)) if url.as_str() == "https://cdn.example.com/purge")
    );

    let spec = environment(
        "static-site",
        "    target:\n      static-site:\n        destination: /srv/www/web\n        invalidate: { command: { program: aws, args: [cloudfront, create-invalidation] } }\n",
    );
    let Target::StaticSite(site) = spec.target else {
        panic!("static-site")
    };
    assert_eq!(
        site.destination,
        SiteDestination::Directory(PathBuf::from("/srv/www/web"))
    );
    assert!(
        matches!(site.invalidate, Some(InvalidationHook::Command { program, args }) if program == "aws" && args.len() == 2)
    );

    let spec = environment(
        "container",
        "    target: { webhook: { url: \"https://deploy.example.com/hook\", secret_ref: webhooks/prod, timeout: 5m } }\n",
    );
    let Target::Webhook(webhook) = spec.target else {
        panic!("webhook")
    };
    assert_eq!(webhook.url.as_str(), "https://deploy.example.com/hook");
    assert_eq!(
        webhook.secret_ref.map(|s| s.to_string()).as_deref(),
        Some("webhooks/prod")
    );
    assert_eq!(webhook.timeout, Duration::from_secs(300));

    let spec = environment(
        "container",
        "    target: { command: { program: helm, args: [upgrade, web, ./chart] } }\n",
    );
    let Target::Command(command) = spec.target else {
        panic!("command")
    };
    assert_eq!((command.program.as_str(), command.args.len()), ("helm", 3));
    assert_eq!(command.timeout, resources::CommandTarget::DEFAULT_TIMEOUT);
}

#[test]
fn health_checks_auto_rollback_and_config_belong_to_the_environment() {
    let spec = environment(
        "container",
        "    target: { record: {} }\n    health_check: { url: \"https://web.example.com/healthz\", expect_status: 204, timeout: 5s, retries: 2 }\n    auto_rollback: true\n    config: { replicas: 3, log_level: debug, debug: false, ratio: \"0.5\" }\n",
    );
    assert_eq!(
        spec.health_check.map(|check| (
            check.url.to_string(),
            check.expect_status,
            check.timeout,
            check.retries
        )),
        Some((
            "https://web.example.com/healthz".to_owned(),
            204,
            Duration::from_secs(5),
            2
        ))
    );
    assert!(spec.auto_rollback);
    let config: Vec<_> = spec
        .config
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    assert_eq!(
        config,
        [
            ("debug", ConfigValue::Boolean(false)),
            ("log_level", ConfigValue::String("debug".into())),
            ("ratio", ConfigValue::String("0.5".into())),
            ("replicas", ConfigValue::Integer(3)),
        ]
    );
}

#[test]
fn a_health_check_without_settings_uses_the_documented_defaults() {
    let spec = environment(
        "container",
        "    target: { record: {} }\n    health_check: { url: \"https://web.example.com/healthz\" }\n",
    );
    let check = spec.health_check.expect("declared");
    assert_eq!(check.expect_status, HealthCheck::DEFAULT_STATUS);
    assert_eq!(check.timeout, HealthCheck::DEFAULT_TIMEOUT);
    assert_eq!(check.retries, HealthCheck::DEFAULT_RETRIES);
}
