//! Every way a file can be wrong, each error naming the file, the document and the field.

use crate::errors_of;

/// `text` read as `resources.yaml` is refused with exactly `expected`, in order.
fn check(text: &str, expected: &[&str]) {
    assert_eq!(errors_of(text), expected, "for:\n{text}");
}

/// A one-stage pipeline `s` whose stage `dev` has `stage` (indented by four spaces).
fn pipeline_with_stage(stage: &str) -> String {
    format!("kind: Pipeline\nname: s\nstages:\n  - name: dev\n{stage}")
}

/// Application `web` of type container whose `dev` environment is `environment`
/// (indented by four spaces).
fn application_with_dev(environment: &str) -> String {
    format!(
        "kind: Application\nname: web\ntype: container\nrepository: acme/web\npipeline: s\nenvironments:\n  dev:\n{environment}"
    )
}

#[test]
fn a_document_without_a_kind_is_refused_naming_the_document() {
    check(
        "name: x\n",
        &[
            "resources.yaml: document 1 (`x`): missing `kind`: use Pipeline, Application, TrustPolicy or RetentionPolicy",
        ],
    );
    check(
        "kind: ~\nstages: []\n",
        &[
            "resources.yaml: document 1: missing `kind`: use Pipeline, Application, TrustPolicy or RetentionPolicy",
        ],
    );
}

#[test]
fn an_unknown_kind_is_refused_at_the_kind_field() {
    check(
        "kind: pipeline\nname: x\n",
        &[
            "resources.yaml: document 1 (pipeline `x`), field kind: unknown kind `pipeline`: use Pipeline, Application, TrustPolicy or RetentionPolicy",
        ],
    );
    check(
        "kind: Deployment\nname: x\n",
        &[
            "resources.yaml: document 1 (Deployment `x`), field kind: unknown kind `Deployment`: use Pipeline, Application, TrustPolicy or RetentionPolicy",
        ],
    );
}

#[test]
fn a_document_that_is_not_a_mapping_is_refused() {
    check(
        "- kind: Pipeline\n",
        &[
            "resources.yaml: document 1: a resource is a mapping with `kind` and `name`, not a sequence",
        ],
    );
    check(
        "Pipeline\n",
        &[
            "resources.yaml: document 1: a resource is a mapping with `kind` and `name`, not a string",
        ],
    );
}

#[test]
fn invalid_yaml_is_reported_at_its_line() {
    check(
        "kind: Pipeline\nname: [standard\n",
        &[
            "resources.yaml:3:1: document 1: not valid YAML: did not find expected ',' or ']', while parsing a flow sequence at line 2 column 7",
        ],
    );
}

#[test]
fn unknown_fields_are_refused_with_the_fields_that_exist() {
    check(
        "kind: Pipeline\nname: s\nstagse: []\n",
        &[
            "resources.yaml:3:1: document 1 (Pipeline `s`), field stagse: unknown field `stagse`, expected one of `kind`, `name`, `stages`",
        ],
    );
    check(
        &pipeline_with_stage("    gate: { checks: [e2e], approval: [] }\n"),
        &[
            "resources.yaml:5:28: document 1 (Pipeline `s`), field stages[0].gate.approval: unknown field `approval`, expected one of `checks`, `approvals`, `soak`, `freeze`",
        ],
    );
    check(
        &application_with_dev(
            "    target: { record: {} }\n    healthcheck: { url: \"https://web/\" }\n",
        ),
        &[
            "resources.yaml:9:5: document 1 (Application `web`), field environments.dev.healthcheck: unknown field `healthcheck`, expected one of `target`, `health_check`, `auto_rollback`, `require_attestation`, `config`",
        ],
    );
}

#[test]
fn wrong_types_are_refused_at_their_field() {
    check(
        &pipeline_with_stage("    auto: maybe\n"),
        &[
            "resources.yaml:5:11: document 1 (Pipeline `s`), field stages[0].auto: invalid type: string \"maybe\", expected a boolean",
        ],
    );
    check(
        "kind: Pipeline\nname: s\nstages: dev\n",
        &[
            "resources.yaml:3:9: document 1 (Pipeline `s`), field stages: invalid type: string \"dev\", expected a sequence",
        ],
    );
    check(
        &pipeline_with_stage("    gate: { approvals: [{ role: staff, count: one }] }\n"),
        &[
            "resources.yaml:5:47: document 1 (Pipeline `s`), field stages[0].gate.approvals[0].count: invalid type: string \"one\", expected u32",
        ],
    );
    check(
        &pipeline_with_stage("    gate: { checks: [[e2e]] }\n"),
        &[
            "resources.yaml:5:22: document 1 (Pipeline `s`), field stages[0].gate.checks[0]: invalid type: sequence, expected a check name or `{ name, max }`",
        ],
    );
}

#[test]
fn missing_fields_are_refused_naming_the_field() {
    check(
        "kind: Pipeline\nname: s\n",
        &["resources.yaml:1:1: document 1 (Pipeline `s`): missing field `stages`"],
    );
    check(
        &application_with_dev("    auto_rollback: true\n"),
        &[
            "resources.yaml:8:5: document 1 (Application `web`), field environments.dev: missing field `target`",
        ],
    );
}

#[test]
fn names_are_checked_by_the_domain_rules() {
    check(
        "kind: Pipeline\nname: Standard\nstages: [{ name: dev }]\n",
        &[
            "resources.yaml:2:7: document 1 (Pipeline `Standard`), field name: `Standard` is not a valid name: use 1–63 lowercase letters, digits and dashes, starting and ending with a letter or digit",
        ],
    );
    check(
        &pipeline_with_stage("  - name: Prod\n"),
        &[
            "resources.yaml:5:11: document 1 (Pipeline `s`), field stages[1].name: `Prod` is not a valid name: use 1–63 lowercase letters, digits and dashes, starting and ending with a letter or digit",
        ],
    );
    check(
        &pipeline_with_stage("    gate: { checks: [unit tests] }\n"),
        &[
            "resources.yaml:5:22: document 1 (Pipeline `s`), field stages[0].gate.checks[0]: `unit tests` is not a valid check name: use 1–64 letters, digits, `.`, `_` and `-`",
        ],
    );
    check(
        &pipeline_with_stage("    gate: { approvals: [{ role: root, count: 1 }] }\n"),
        &[
            "resources.yaml:5:33: document 1 (Pipeline `s`), field stages[0].gate.approvals[0].role: unknown role `root`: use viewer, developer, staff, client, platform or admin",
        ],
    );
    check(
        "kind: Application\nname: web\ntype: container\nrepository: Acme/Web\npipeline: s\nenvironments: {}\n",
        &[
            "resources.yaml:4:13: document 1 (Application `web`), field repository: repository name `Acme/Web` is invalid: use path components of lowercase letters and digits, separated by `/`, with single `.`, `_`, `__` or dashes between alphanumerics",
        ],
    );
    check(
        "kind: Application\nname: web\ntype: container\nrepository: acme/web\npipeline: s\nenvironments:\n  Dev: { target: { record: {} } }\n",
        &[
            "resources.yaml:7:3: document 1 (Application `web`), field environments.Dev: `Dev` is not a valid name: use 1–63 lowercase letters, digits and dashes, starting and ending with a letter or digit",
        ],
    );
}

#[test]
fn severities_and_tiers_and_types_are_closed_sets() {
    check(
        &pipeline_with_stage("    gate: { checks: [{ name: trivy, max: { severe: 0 } }] }\n"),
        &[
            "resources.yaml:5:44: document 1 (Pipeline `s`), field stages[0].gate.checks[0].max.severe: unknown field `severe`, expected one of `critical`, `high`, `medium`, `low`, `unknown`",
        ],
    );
    check(
        &pipeline_with_stage("    tier: gold\n"),
        &[
            "resources.yaml:5:11: document 1 (Pipeline `s`), field stages[0].tier: unknown variant `gold`, expected `shared` or `release`",
        ],
    );
    check(
        "kind: Application\nname: web\ntype: lambda\nrepository: acme/web\npipeline: s\nenvironments: {}\n",
        &[
            "resources.yaml:3:7: document 1 (Application `web`), field type: unknown variant `lambda`, expected one of `container`, `static-site`, `infra`",
        ],
    );
}

#[test]
fn durations_need_a_unit_and_must_be_positive() {
    check(
        &pipeline_with_stage("    gate: { soak: 30 }\n"),
        &[
            "resources.yaml:5:19: document 1 (Pipeline `s`), field stages[0].gate.soak: `30` is not a duration: use e.g. 45s, 30m, 2h or 1h30m",
        ],
    );
    check(
        &pipeline_with_stage("    gate: { soak: a while }\n"),
        &[
            "resources.yaml:5:19: document 1 (Pipeline `s`), field stages[0].gate.soak: `a while` is not a duration: use e.g. 45s, 30m, 2h or 1h30m",
        ],
    );
    check(
        &application_with_dev("    target: { command: { program: deploy.sh, timeout: -5m } }\n"),
        &[
            "resources.yaml:8:55: document 1 (Application `web`), field environments.dev.target.command.timeout: `-5m` is not a duration: use e.g. 45s, 30m, 2h or 1h30m",
        ],
    );
}

#[test]
fn freeze_windows_are_parsed_with_their_time_zone() {
    check(
        &pipeline_with_stage("    gate: { freeze: [\"Fri 16:00 - Mon 08:00 Mars/Olympus\"] }\n"),
        &[
            "resources.yaml:5:22: document 1 (Pipeline `s`), field stages[0].gate.freeze[0]: invalid freeze window `Fri 16:00 - Mon 08:00 Mars/Olympus`: unknown time zone `Mars/Olympus`",
        ],
    );
    check(
        &pipeline_with_stage(
            "    gate: { freeze: [\"Fri 16:00 - Mon 08:00 Europe/London\", \"Friday 4pm to Monday\"] }\n",
        ),
        &[
            "resources.yaml:5:61: document 1 (Pipeline `s`), field stages[0].gate.freeze[1]: invalid freeze window `Friday 4pm to Monday`: expected `FROM - TO ZONE`",
        ],
    );
}

#[test]
fn approval_counts_must_be_at_least_one() {
    check(
        "kind: Pipeline\nname: standard\nstages:\n  - name: dev\n  - name: staging\n  - name: prod\n    gate:\n      approvals: [{ role: staff, count: 1 }, { role: client, count: 0 }]\n",
        &[
            "resources.yaml:8:46: document 1 (Pipeline `standard`), field stages[2].gate.approvals[1].count: an approval rule needs a count of at least 1 (leave the rule out for none)",
        ],
    );
}

#[test]
fn a_pipeline_needs_stages_with_distinct_names() {
    check(
        "kind: Pipeline\nname: s\nstages:\n  - name: dev\n  - name: qa\n  - name: dev\n  - name: qa\n",
        &[
            "resources.yaml: document 1 (Pipeline `s`), field stages[2].name: stage `dev` appears twice (first as stages[0])",
            "resources.yaml: document 1 (Pipeline `s`), field stages[3].name: stage `qa` appears twice (first as stages[1])",
        ],
    );
    check(
        "kind: Pipeline\nname: s\nstages: []\n",
        &[
            "resources.yaml: document 1 (Pipeline `s`), field stages: a pipeline needs at least one stage",
        ],
    );
}

#[test]
fn a_resource_declared_twice_in_one_file_is_refused_at_its_second_name() {
    let pipeline = "kind: Pipeline\nname: s\nstages: [{ name: dev }]\n";
    let application = "kind: Application\nname: s\ntype: infra\nrepository: acme/s\npipeline: s\nenvironments: { dev: { target: { record: {} } } }\n";
    check(
        &format!("{pipeline}---\n{application}---\n{pipeline}---\n{application}"),
        &[
            "resources.yaml: document 3 (Pipeline `s`), field name: Pipeline `s` is already declared in document 1",
            "resources.yaml: document 4 (Application `s`), field name: Application `s` is already declared in document 2",
        ],
    );
}

#[test]
fn a_field_written_twice_is_refused() {
    check(
        "kind: Pipeline\nname: s\nname: t\nstages: [{ name: dev }]\n",
        &["resources.yaml:1:1: document 1 (Pipeline `s`): duplicate field `name`"],
    );
}

#[test]
fn environments_and_config_keys_are_distinct() {
    check(
        "kind: Application\nname: web\ntype: container\nrepository: acme/web\npipeline: s\nenvironments:\n  dev: { target: { record: {} } }\n  dev: { target: { record: {} } }\n",
        &[
            "resources.yaml:7:3: document 1 (Application `web`), field environments: `dev` appears twice",
        ],
    );
    check(
        &application_with_dev(
            "    target: { record: {} }\n    config: { replicas: 2, replicas: 3 }\n",
        ),
        &[
            "resources.yaml:9:13: document 1 (Application `web`), field environments.dev.config: `replicas` appears twice",
        ],
    );
}

#[test]
fn a_target_names_exactly_one_known_kind() {
    check(
        &application_with_dev("    target: { gitop: { repo: r, file: f, key: k } }\n"),
        &[
            "resources.yaml:8:15: document 1 (Application `web`), field environments.dev.target.gitop: unknown field `gitop`, expected one of `record`, `gitops`, `static-site`, `registry-copy`, `webhook`, `command`",
        ],
    );
    check(
        &application_with_dev("    target: { gitops: { repo: r, file: f, key: k }, record: {} }\n"),
        &[
            "resources.yaml:8:5: document 1 (Application `web`), field environments.dev.target: a target names exactly one kind, not `record` and `gitops`",
        ],
    );
    check(
        &application_with_dev("    target: {}\n"),
        &[
            "resources.yaml:8:5: document 1 (Application `web`), field environments.dev.target: a target names one of record, gitops, static-site, registry-copy, webhook or command",
        ],
    );
    check(
        &application_with_dev("    target: { record: { note: manual } }\n"),
        &[
            "resources.yaml:8:23: document 1 (Application `web`), field environments.dev.target.record: unknown field `note`: a record target takes no settings",
        ],
    );
}

#[test]
fn a_gitops_target_writes_the_image_under_key_or_keys() {
    check(
        &application_with_dev("    target: { gitops: { repo: r, file: values.yaml } }\n"),
        &[
            "resources.yaml:8:13: document 1 (Application `web`), field environments.dev.target.gitops: missing `key` (where the full image reference is written) or `keys` (separate repository, tag and digest keys)",
        ],
    );
    check(
        &application_with_dev(
            "    target: { gitops: { repo: r, file: values.yaml, key: image, keys: { digest: image.digest } } }\n",
        ),
        &[
            "resources.yaml:8:13: document 1 (Application `web`), field environments.dev.target.gitops: give `key` (the full image reference) or `keys` (separate repository, tag and digest keys), not both",
        ],
    );
    check(
        &application_with_dev(
            "    target: { gitops: { repo: r, file: ../values.yaml, key: image.digest } }\n",
        ),
        &[
            "resources.yaml:8:40: document 1 (Application `web`), field environments.dev.target.gitops.file: `../values.yaml` is not a file path inside the repository: use a relative path without `.` or `..` components",
        ],
    );
}

#[test]
fn target_settings_are_checked_where_they_are_written() {
    check(
        &application_with_dev("    target: { registry-copy: { to: acme/web-app } }\n"),
        &[
            "resources.yaml:8:36: document 1 (Application `web`), field environments.dev.target.registry-copy.to: `acme/web-app` is not a registry destination: use `HOST[:PORT]/REPOSITORY`, e.g. `prod-registry.example.com/acme/web-app`",
        ],
    );
    check(
        &application_with_dev("    target: { webhook: { url: \"ftp://deploy.example.com/\" } }\n"),
        &[
            "resources.yaml:8:31: document 1 (Application `web`), field environments.dev.target.webhook.url: `ftp://deploy.example.com/` is not an http(s) URL: the scheme is `ftp`, not http or https",
        ],
    );
    check(
        &application_with_dev("    target: { command: { program: \"\" } }\n"),
        &[
            "resources.yaml:8:13: document 1 (Application `web`), field environments.dev.target.command: the program to run is empty",
        ],
    );
    check(
        &application_with_dev(
            "    target: { record: {} }\n    health_check: { url: \"https://web/\", expect_status: 700 }\n",
        ),
        &[
            "resources.yaml:9:19: document 1 (Application `web`), field environments.dev.health_check.expect_status: 700 is not an HTTP status code (100–599)",
        ],
    );
    check(
        &application_with_dev("    target: { record: {} }\n    config: { ratio: 0.5 }\n"),
        &[
            "resources.yaml:9:22: document 1 (Application `web`), field environments.dev.config.ratio: 0.5 is a decimal number: quote it (\"0.5\") so it is kept exactly",
        ],
    );
}

#[test]
fn a_target_must_suit_the_application_type() {
    check(
        &application_with_dev("    target: { static-site: { destination: /srv/www } }\n"),
        &[
            "resources.yaml: document 1 (Application `web`), field environments.dev.target: a static-site target cannot deploy an application of type container",
        ],
    );
    check(
        "kind: Application\nname: net\ntype: infra\nrepository: acme/net\npipeline: s\nenvironments:\n  dev: { target: { registry-copy: { to: \"registry.example.com/acme/net\" } } }\n",
        &[
            "resources.yaml: document 1 (Application `net`), field environments.dev.target: a registry-copy target cannot deploy an application of type infra",
        ],
    );
}

#[test]
fn text_holding_a_control_character_is_refused_naming_the_field() {
    let file = |note: &str| {
        format!(
            "kind: Pipeline\nname: s\nstages:\n  - name: dev\n---\n{}    target: {{ record: {{}} }}\n    config: {{ note: \"{note}\" }}\n",
            application_with_dev("")
        )
    };
    check(
        &file("a\\0b"),
        &[
            "resources.yaml: document 2 (Application `web`), field environments.dev.config.note: holds the control character U+0000; only tabs and line breaks are allowed in text",
        ],
    );
    check(
        &file("a\\eb"),
        &[
            "resources.yaml: document 2 (Application `web`), field environments.dev.config.note: holds the control character U+001B; only tabs and line breaks are allowed in text",
        ],
    );
    // Line breaks and tabs in text are fine.
    assert!(resources::parse_file("resources.yaml", &file("a\\n\\tb")).is_ok());
}
