//! `kind: TrustPolicy`: which CI job tokens Gantry exchanges, read into the validated
//! `domain::trust::TrustPolicy`, refused at the field that breaks a rule, rendered
//! canonically and read back, and checked against the applications it names.

use std::time::Duration;

use domain::pipeline::{AppName, EnvName, Role};
use domain::trust::{ClaimPattern, MAX_TOKEN_LIFETIME, TrustPolicy};
use resources::{Resource, ResourceKey, ResourceKind};

use crate::{errors_of, parsed};

/// A policy with every field written.
const FULL: &str = r#"kind: TrustPolicy
name: web-ci
issuer: https://token.actions.githubusercontent.com
audience: gantry
claims:
  repository: acme/web
  ref: refs/heads/main
  sub: "repo:acme/web:*"
role: developer
applications: [web]
environments: [dev, staging]
max_token_lifetime: 30m
"#;

/// A policy with only the fields that have no default.
const MINIMAL: &str = r#"kind: TrustPolicy
name: web-ci
issuer: https://token.actions.githubusercontent.com
audience: gantry
claims: { repository: acme/web }
role: developer
applications: [web]
"#;

/// [`FULL`] with its line starting `field:` replaced by `line` (removed when empty).
fn full_with(field: &str, line: &str) -> String {
    let prefix = format!("{field}:");
    let mut replaced = false;
    let mut text = String::new();
    for original in FULL.lines() {
        if original.starts_with(&prefix) {
            replaced = true;
            if !line.is_empty() {
                text.push_str(line);
                text.push('\n');
            }
        } else if !(replaced && original.starts_with("  ") && field == "claims") {
            text.push_str(original);
            text.push('\n');
        }
    }
    assert!(replaced, "FULL has no field {field}");
    text
}

/// The only resource of `text`, which must be a trust policy.
fn policy_of(text: &str) -> TrustPolicy {
    let set = parsed(text);
    assert_eq!(set.len(), 1, "one resource expected");
    set.trust_policies().next().expect("a trust policy").clone()
}

/// `text` read as `resources.yaml` is refused with exactly `expected`, in order.
fn check_refused(text: &str, expected: &[&str]) {
    assert_eq!(errors_of(text), expected, "for:\n{text}");
}

fn app(name: &str) -> AppName {
    AppName::parse(name).expect("valid")
}

fn env(name: &str) -> EnvName {
    EnvName::parse(name).expect("valid")
}

fn pattern(claim: &str, pattern: &str) -> ClaimPattern {
    ClaimPattern {
        claim: claim.into(),
        pattern: pattern.into(),
    }
}

#[test]
fn a_full_policy_reads_into_the_domain_policy_with_its_claims_sorted() {
    let set = parsed(FULL);
    let resource = set.resources().next().expect("a resource");
    assert_eq!(
        resource.key(),
        ResourceKey {
            kind: ResourceKind::TrustPolicy,
            name: "web-ci".into()
        }
    );
    assert_eq!(
        policy_of(FULL),
        TrustPolicy {
            name: "web-ci".into(),
            issuer: "https://token.actions.githubusercontent.com".into(),
            audience: "gantry".into(),
            claims: vec![
                pattern("ref", "refs/heads/main"),
                pattern("repository", "acme/web"),
                pattern("sub", "repo:acme/web:*"),
            ],
            role: Role::Developer,
            applications: vec![app("web")],
            environments: vec![env("dev"), env("staging")],
            max_token_lifetime: Duration::from_secs(30 * 60),
        }
    );
    assert_eq!(set.trust_policy("web-ci"), Some(&policy_of(FULL)));
    assert!(set.pipelines().next().is_none() && set.applications().next().is_none());
}

#[test]
fn a_policy_without_environments_or_lifetime_covers_every_environment_for_an_hour() {
    let policy = policy_of(MINIMAL);
    assert!(policy.environments.is_empty());
    assert_eq!(policy.max_token_lifetime, MAX_TOKEN_LIFETIME);
    let grants: Vec<String> = policy.grants().iter().map(ToString::to_string).collect();
    assert_eq!(grants, ["developer@web"]);
}

#[test]
fn applications_and_environments_are_kept_sorted_so_their_order_means_nothing() {
    let policy = policy_of(
        &full_with("applications", "applications: [web, api]")
            .replace("[dev, staging]", "[staging, dev]"),
    );
    assert_eq!(policy.applications, [app("api"), app("web")]);
    assert_eq!(policy.environments, [env("dev"), env("staging")]);
}

#[test]
fn numeric_and_boolean_claim_patterns_are_read_as_their_text() {
    let policy = policy_of(&full_with(
        "claims",
        "claims: { repository_id: 123456, runner_environment: github-hosted, workflow_ref_protected: true }",
    ));
    assert_eq!(
        policy.claims,
        [
            pattern("repository_id", "123456"),
            pattern("runner_environment", "github-hosted"),
            pattern("workflow_ref_protected", "true"),
        ]
    );
    check_refused(
        &full_with("claims", "claims: { repository_id: 1.5 }"),
        &[
            "resources.yaml:5:26: document 1 (TrustPolicy `web-ci`), field claims.repository_id: 1.5 is a decimal number: quote it (\"1.5\") so it is matched as written",
        ],
    );
}

#[test]
fn unknown_fields_are_refused_with_the_fields_that_exist() {
    check_refused(
        &format!("{FULL}audiences: [gantry]\n"),
        &[
            "resources.yaml:13:1: document 1 (TrustPolicy `web-ci`), field audiences: unknown field `audiences`, expected one of `kind`, `name`, `issuer`, `audience`, `claims`, `role`, `applications`, `environments`, `max_token_lifetime`",
        ],
    );
}

#[test]
fn fields_without_a_default_are_required() {
    check_refused(
        &full_with("audience", ""),
        &["resources.yaml:1:1: document 1 (TrustPolicy `web-ci`): missing field `audience`"],
    );
    check_refused(
        &full_with("applications", ""),
        &["resources.yaml:1:1: document 1 (TrustPolicy `web-ci`): missing field `applications`"],
    );
}

#[test]
fn the_name_follows_the_rules_of_every_resource_name() {
    check_refused(
        &FULL.replace("name: web-ci", "name: Web_CI"),
        &[
            "resources.yaml:2:7: document 1 (TrustPolicy `Web_CI`), field name: `Web_CI` is not a valid name: use 1–63 lowercase letters, digits and dashes, starting and ending with a letter or digit",
        ],
    );
}

#[test]
fn only_viewer_developer_and_platform_may_be_granted_to_ci() {
    for role in ["viewer", "developer", "platform"] {
        let policy = policy_of(&full_with("role", &format!("role: {role}")));
        assert_eq!(policy.role.as_str(), role);
    }
    for role in ["admin", "staff", "client"] {
        check_refused(
            &full_with("role", &format!("role: {role}")),
            &[&format!(
                "resources.yaml: document 1 (TrustPolicy `web-ci`), field role: role `{role}` cannot be granted to CI: use viewer, developer or platform"
            )],
        );
    }
    check_refused(
        &full_with("role", "role: owner"),
        &[
            "resources.yaml:9:7: document 1 (TrustPolicy `web-ci`), field role: unknown role `owner`: use viewer, developer, staff, client, platform or admin",
        ],
    );
}

#[test]
fn the_token_lifetime_is_between_one_minute_and_one_hour() {
    for (written, seconds) in [
        ("1m", 60),
        ("45m", 45 * 60),
        ("1h", 3600),
        ("60 minutes", 3600),
    ] {
        let policy = policy_of(&full_with(
            "max_token_lifetime",
            &format!("max_token_lifetime: {written}"),
        ));
        assert_eq!(
            policy.max_token_lifetime,
            Duration::from_secs(seconds),
            "{written}"
        );
    }
    for written in ["2h", "61m", "59s"] {
        check_refused(
            &full_with(
                "max_token_lifetime",
                &format!("max_token_lifetime: {written}"),
            ),
            &[
                "resources.yaml: document 1 (TrustPolicy `web-ci`), field max_token_lifetime: max_token_lifetime must be between 1m and 1h",
            ],
        );
    }
    check_refused(
        &full_with("max_token_lifetime", "max_token_lifetime: 30"),
        &[
            "resources.yaml:12:21: document 1 (TrustPolicy `web-ci`), field max_token_lifetime: `30` is not a duration: use e.g. 45s, 30m, 2h or 1h30m",
        ],
    );
}

#[test]
fn a_policy_must_pin_where_the_job_ran() {
    let refused = "resources.yaml: document 1 (TrustPolicy `web-ci`), field claims: claims must pin whose jobs these are: an exact repository_owner, repository_id or repository_owner_id, a repository whose owner is literal (`acme/*`), or a sub that names its owner (`repo:acme/*`)";
    for claims in [
        "claims: { ref: refs/heads/main }",
        "claims: { repository: \"*\", ref: refs/heads/main }",
        "claims: { repository: \"*/*\" }",
        "claims: { repository: \"acme*\" }",
        "claims: { sub: \"**\" }",
        "claims: { sub: \"repo:*\" }",
        "claims: { repository_owner: \"acme*\" }",
        "claims: {}",
    ] {
        check_refused(&full_with("claims", claims), &[refused]);
    }
    let owner_only = policy_of(&full_with("claims", "claims: { repository_owner: acme }"));
    assert_eq!(owner_only.claims, [pattern("repository_owner", "acme")]);
}

#[test]
fn claims_the_verifier_checks_itself_cannot_be_matched() {
    for claim in ["aud", "iss", "exp"] {
        check_refused(
            &full_with(
                "claims",
                &format!("claims: {{ repository: acme/web, {claim}: x }}"),
            ),
            &[&format!(
                "resources.yaml: document 1 (TrustPolicy `web-ci`), field claims.{claim}: claim `{claim}` is checked by the verifier itself and cannot be matched here"
            )],
        );
    }
    check_refused(
        &full_with("claims", "claims: { repository: acme/web, \"\": x }"),
        &[
            "resources.yaml: document 1 (TrustPolicy `web-ci`), field claims: a claim name must not be empty",
        ],
    );
    check_refused(
        &full_with(
            "claims",
            "claims: { repository: acme/web, repository: acme/api }",
        ),
        &[
            "resources.yaml:5:9: document 1 (TrustPolicy `web-ci`), field claims: `repository` appears twice",
        ],
    );
}

#[test]
fn the_issuer_is_https_or_http_on_a_loopback_address() {
    for issuer in [
        "http://token.actions.githubusercontent.com",
        "token.actions.githubusercontent.com",
        "https://",
        "\"\"",
    ] {
        check_refused(
            &full_with("issuer", &format!("issuer: {issuer}")),
            &[
                "resources.yaml: document 1 (TrustPolicy `web-ci`), field issuer: the issuer must be an https URL (or http on a loopback address)",
            ],
        );
    }
    for issuer in ["http://127.0.0.1:8080", "http://localhost/issuer"] {
        let policy = policy_of(&full_with("issuer", &format!("issuer: {issuer}")));
        assert_eq!(policy.issuer, issuer);
    }
}

#[test]
fn the_audience_must_not_be_empty() {
    check_refused(
        &full_with("audience", "audience: \" \""),
        &[
            "resources.yaml: document 1 (TrustPolicy `web-ci`), field audience: the audience must not be empty",
        ],
    );
}

#[test]
fn a_policy_names_at_least_one_application_each_once() {
    check_refused(
        &full_with("applications", "applications: []"),
        &[
            "resources.yaml: document 1 (TrustPolicy `web-ci`), field applications: name at least one application",
        ],
    );
    check_refused(
        &full_with("applications", "applications: [web, api, web]"),
        &[
            "resources.yaml: document 1 (TrustPolicy `web-ci`), field applications[2]: `web` appears twice (first as applications[0])",
        ],
    );
    check_refused(
        &full_with("applications", "applications: [Web]"),
        &[
            "resources.yaml:10:16: document 1 (TrustPolicy `web-ci`), field applications[0]: `Web` is not a valid name: use 1–63 lowercase letters, digits and dashes, starting and ending with a letter or digit",
        ],
    );
}

#[test]
fn an_empty_environment_list_is_refused_rather_than_read_as_every_environment() {
    check_refused(
        &full_with("environments", "environments: []"),
        &[
            "resources.yaml: document 1 (TrustPolicy `web-ci`), field environments: an empty list covers no environment: leave `environments` out to cover every environment of the applications",
        ],
    );
    check_refused(
        &full_with("environments", "environments: [dev, dev]"),
        &[
            "resources.yaml: document 1 (TrustPolicy `web-ci`), field environments[1]: `dev` appears twice (first as environments[0])",
        ],
    );
}

#[test]
fn list_problems_and_a_broken_rule_are_reported_together() {
    let text = full_with("applications", "applications: [web, web]")
        .replace("role: developer", "role: admin");
    check_refused(
        &text,
        &[
            "resources.yaml: document 1 (TrustPolicy `web-ci`), field applications[1]: `web` appears twice (first as applications[0])",
            "resources.yaml: document 1 (TrustPolicy `web-ci`), field role: role `admin` cannot be granted to CI: use viewer, developer or platform",
        ],
    );
}

#[test]
fn a_policy_renders_every_field_in_a_fixed_order() {
    let rendered = Resource::TrustPolicy(policy_of(FULL)).canonical();
    let expected = r#"{
  "kind": "TrustPolicy",
  "name": "web-ci",
  "issuer": "https://token.actions.githubusercontent.com",
  "audience": "gantry",
  "claims": {
    "ref": "refs/heads/main",
    "repository": "acme/web",
    "sub": "repo:acme/web:*"
  },
  "role": "developer",
  "applications": [
    "web"
  ],
  "environments": [
    "dev",
    "staging"
  ],
  "max_token_lifetime": "30m"
}
"#;
    assert_eq!(rendered, expected);
    let defaults = Resource::TrustPolicy(policy_of(MINIMAL)).canonical();
    assert!(defaults.contains("\"environments\": null,\n"), "{defaults}");
    assert!(
        defaults.contains("\"max_token_lifetime\": \"1h\"\n"),
        "{defaults}"
    );
}

#[test]
fn equivalent_policies_render_identically() {
    let canonical = |text: &str| Resource::TrustPolicy(policy_of(text)).canonical();
    assert_eq!(
        canonical(MINIMAL),
        canonical(&format!("{MINIMAL}max_token_lifetime: 60m\n"))
    );
    assert_eq!(
        canonical(FULL),
        canonical(
            &FULL
                .replace("[dev, staging]", "[staging, dev]")
                .replace("max_token_lifetime: 30m", "max_token_lifetime: 1800s")
        )
    );
}

#[test]
fn a_policy_reads_back_from_its_canonical_text() {
    for text in [FULL, MINIMAL] {
        let policy = policy_of(text);
        let canonical = Resource::TrustPolicy(policy.clone()).canonical();
        let reread = resources::trust_policy_from_canonical(&canonical)
            .unwrap_or_else(|errors| panic!("{errors}\n{canonical}"));
        assert_eq!(reread, policy, "{canonical}");
    }
}

#[test]
fn canonical_text_of_another_kind_is_not_a_trust_policy() {
    let pipeline = parsed("kind: Pipeline\nname: s\nstages: [{ name: dev }]\n");
    let text = pipeline.resources().next().expect("a pipeline").canonical();
    let errors = resources::trust_policy_from_canonical(&text).expect_err("not a policy");
    assert_eq!(
        errors.to_string(),
        "stored trust policy: a stored trust policy's text holds exactly one TrustPolicy"
    );
    let policy = Resource::TrustPolicy(policy_of(FULL)).canonical();
    assert!(resources::DeclaredPipeline::from_canonical(&policy).is_err());
    assert!(resources::application_from_canonical(&policy).is_err());
}

/// Application `name` on pipeline `p` (declared before it) with one environment.
fn declared_application(name: &str) -> String {
    format!(
        "kind: Pipeline\nname: p\nstages: [{{ name: dev }}]\n---\nkind: Application\nname: {name}\ntype: container\nrepository: acme/{name}\npipeline: p\nenvironments: {{ dev: {{ target: {{ record: {{}} }} }} }}\n"
    )
}

/// `text` checked against `known` applications reports `expected`.
fn check_references(text: &str, known: &[&str], expected: &[&str]) {
    let known: Vec<AppName> = known.iter().map(|name| app(name)).collect();
    let reported: Vec<String> = match parsed(text).check_references(&[], &known) {
        Ok(()) => Vec::new(),
        Err(errors) => errors.errors().iter().map(ToString::to_string).collect(),
    };
    assert_eq!(reported, expected, "for:\n{text}");
}

#[test]
fn a_policy_may_name_applications_declared_in_the_same_file_or_already_known() {
    check_references(
        &format!("{}---\n{FULL}", declared_application("web")),
        &[],
        &[],
    );
    check_references(FULL, &["web"], &[]);
    let both = full_with("applications", "applications: [web, api]");
    check_references(
        &format!("{}---\n{both}", declared_application("api")),
        &["web"],
        &[],
    );
}

#[test]
fn a_policy_naming_an_application_that_exists_nowhere_is_refused_at_its_applications() {
    check_references(
        &full_with("applications", "applications: [web, api, docs]"),
        &["api", "website"],
        &[
            "resources.yaml: document 1 (TrustPolicy `web-ci`), field applications: application `docs` is neither declared in this file nor known to Gantry",
            "resources.yaml: document 1 (TrustPolicy `web-ci`), field applications: application `web` is neither declared in this file nor known to Gantry",
        ],
    );
}

#[test]
fn a_policy_and_an_application_of_the_same_name_are_different_resources() {
    let text = format!(
        "{}---\n{}",
        declared_application("web-ci"),
        FULL.replace("[web]", "[web-ci]")
    );
    let keys: Vec<ResourceKey> = parsed(&text).canonical().into_keys().collect();
    let kinds: Vec<ResourceKind> = keys.iter().map(|key| key.kind).collect();
    assert_eq!(
        kinds,
        [
            ResourceKind::Pipeline,
            ResourceKind::Application,
            ResourceKind::TrustPolicy
        ]
    );
    check_refused(
        &format!("{FULL}---\n{FULL}"),
        &[
            "resources.yaml: document 2 (TrustPolicy `web-ci`), field name: TrustPolicy `web-ci` is already declared in document 1",
        ],
    );
}
