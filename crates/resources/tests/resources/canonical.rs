//! The canonical form: equal meaning renders equal text; a change shows as changed lines.

use resources::{DiffLine, ResourceKey, ResourceKind, diff_lines, has_changes};

use crate::{SPEC_EXAMPLE, parsed};

/// The canonical text of the only resource in `text`.
fn canonical(text: &str) -> String {
    let set = parsed(text);
    assert_eq!(set.len(), 1, "one resource expected");
    set.resources().map(|r| r.canonical()).collect()
}

/// `first` and `second` mean the same and render the same.
fn check_same(first: &str, second: &str) {
    assert_eq!(canonical(first), canonical(second));
}

#[test]
fn the_spec_pipeline_renders_every_field_in_a_fixed_order() {
    let set = parsed(SPEC_EXAMPLE);
    let rendered = set.resources().next().expect("a pipeline").canonical();
    let expected = r#"{
  "kind": "Pipeline",
  "name": "standard",
  "stages": [
    {
      "name": "dev",
      "auto": true,
      "tier": "shared",
      "gate": {
        "checks": [
          {
            "name": "unit-tests",
            "max": {}
          }
        ],
        "approvals": [],
        "soak": null,
        "freeze": []
      }
    },
    {
      "name": "staging",
      "auto": false,
      "tier": "shared",
      "gate": {
        "checks": [
          {
            "name": "integration-tests",
            "max": {}
          }
        ],
        "approvals": [
          {
            "role": "staff",
            "count": 1
          }
        ],
        "soak": "30m",
        "freeze": []
      }
    },
    {
      "name": "prod",
      "auto": false,
      "tier": "release",
      "gate": {
        "checks": [
          {
            "name": "e2e",
            "max": {}
          },
          {
            "name": "trivy",
            "max": {
              "critical": 0,
              "high": 0
            }
          }
        ],
        "approvals": [
          {
            "role": "staff",
            "count": 1
          },
          {
            "role": "client",
            "count": 1
          }
        ],
        "soak": null,
        "freeze": [
          "Fri 16:00 - Mon 08:00 Europe/London"
        ]
      }
    }
  ]
}
"#;
    assert_eq!(rendered, expected);
}

#[test]
fn the_spec_application_renders_its_environments_sorted_with_defaults_filled_in() {
    let set = parsed(SPEC_EXAMPLE);
    let rendered = set.resources().nth(1).expect("an application").canonical();
    let expected = r#"{
  "kind": "Application",
  "name": "web-app",
  "type": "container",
  "repository": "acme/web-app",
  "pipeline": "standard",
  "tech_stack": null,
  "module": null,
  "environments": {
    "dev": {
      "target": {
        "gitops": {
          "repo": "git@…:acme/infra-config.git",
          "branch": null,
          "file": "apps/web-app/dev/values.yaml",
          "key": "image.digest"
        }
      },
      "health_check": null,
      "auto_rollback": false,
      "config": {}
    },
    "prod": {
      "target": {
        "registry-copy": {
          "to": "prod-registry.example.com/acme/web-app"
        }
      },
      "health_check": null,
      "auto_rollback": false,
      "config": {}
    },
    "staging": {
      "target": {
        "gitops": {
          "repo": "…",
          "branch": null,
          "file": "apps/web-app/staging/values.yaml",
          "key": "image.digest"
        }
      },
      "health_check": null,
      "auto_rollback": false,
      "config": {}
    }
  }
}
"#;
    assert_eq!(rendered, expected);
}

#[test]
fn equivalent_spellings_render_identically() {
    // Defaults written out or left implicit.
    check_same(
        "kind: Pipeline\nname: s\nstages: [{ name: dev }]\n",
        "kind: Pipeline\nname: s\nstages:\n  - name: dev\n    auto: false\n    tier: shared\n    gate: { checks: [], approvals: [], freeze: [] }\n",
    );
    // One duration, three spellings; a check with an empty `max` is just its name.
    check_same(
        "kind: Pipeline\nname: s\nstages: [{ name: dev, gate: { soak: 90m, checks: [e2e] } }]\n",
        "kind: Pipeline\nname: s\nstages: [{ name: dev, gate: { soak: 1h30m, checks: [{ name: e2e, max: {} }] } }]\n",
    );
    check_same(
        "kind: Pipeline\nname: s\nstages: [{ name: dev, gate: { soak: 1h 30m } }]\n",
        "kind: Pipeline\nname: s\nstages: [{ name: dev, gate: { soak: 90 minutes } }]\n",
    );
    // Environment and config order, quoting, and default health-check settings.
    check_same(
        "kind: Application\nname: web\ntype: container\nrepository: acme/web\npipeline: s\nenvironments:\n  prod: { target: { record: } }\n  dev: { target: { record: {} }, config: { b: 1, a: x }, health_check: { url: \"https://web/\" } }\n",
        "kind: Application\nname: web\ntype: container\nrepository: \"acme/web\"\npipeline: s\nenvironments:\n  dev: { target: { record: {} }, config: { a: \"x\", b: 1 }, health_check: { url: \"https://web/\", expect_status: 200, timeout: 10s, retries: 3 } }\n  prod: { target: { record: {} } }\n",
    );
}

#[test]
fn a_change_of_meaning_shows_as_the_changed_lines() {
    let before =
        canonical("kind: Pipeline\nname: s\nstages: [{ name: dev, gate: { soak: 30m } }]\n");
    let after = canonical("kind: Pipeline\nname: s\nstages: [{ name: dev, gate: { soak: 1h } }]\n");
    let changed: Vec<String> = diff_lines(&before, &after)
        .into_iter()
        .filter(|line| !matches!(line, DiffLine::Unchanged(_)))
        .map(|line| line.to_string())
        .collect();
    assert_eq!(
        changed,
        [
            "-         \"soak\": \"30m\",",
            "+         \"soak\": \"1h\","
        ]
    );
    assert!(!has_changes(&diff_lines(&before, &before)));
}

#[test]
fn a_new_resource_diffs_as_all_additions() {
    let text = canonical("kind: Pipeline\nname: s\nstages: [{ name: dev }]\n");
    let lines = diff_lines("", &text);
    assert_eq!(lines.len(), text.lines().count());
    assert!(lines.iter().all(|line| matches!(line, DiffLine::Added(_))));
    assert_eq!(lines[0].to_string(), "+ {");
}

#[test]
fn the_canonical_forms_of_a_file_are_keyed_by_kind_and_name() {
    let keys: Vec<ResourceKey> = parsed(SPEC_EXAMPLE).canonical().into_keys().collect();
    assert_eq!(
        keys,
        [
            ResourceKey {
                kind: ResourceKind::Pipeline,
                name: "standard".into()
            },
            ResourceKey {
                kind: ResourceKind::Application,
                name: "web-app".into()
            },
        ]
    );
}

#[test]
fn a_pipeline_reads_back_from_its_canonical_text() {
    for pipeline in parsed(SPEC_EXAMPLE).pipelines() {
        let text = resources::Resource::Pipeline(pipeline.clone()).canonical();
        let reread = resources::DeclaredPipeline::from_canonical(&text)
            .unwrap_or_else(|errors| panic!("{errors}\n{text}"));
        assert_eq!(&reread, pipeline, "{text}");
    }
}

#[test]
fn canonical_text_of_another_kind_is_not_a_pipeline() {
    let set = parsed(SPEC_EXAMPLE);
    let application = set.resources().nth(1).expect("the application");
    let errors = resources::DeclaredPipeline::from_canonical(&application.canonical())
        .expect_err("an application is not a pipeline");
    assert_eq!(errors.errors().len(), 1, "{errors}");
}

#[test]
fn an_application_reads_back_from_its_canonical_text() {
    for application in parsed(SPEC_EXAMPLE).applications() {
        let text = resources::Resource::Application(application.clone()).canonical();
        let reread = resources::application_from_canonical(&text)
            .unwrap_or_else(|errors| panic!("{errors}\n{text}"));
        assert_eq!(&reread, application, "{text}");
    }
    let every_target = r#"
kind: Pipeline
name: p
stages: [{ name: a }, { name: b }, { name: c }, { name: d }, { name: e }, { name: f }]
---
kind: Application
name: all
type: container
repository: acme/all
pipeline: p
tech_stack: rust
environments:
  a: { target: { record: {} }, config: { replicas: 2, debug: true, name: x } }
  b: { target: { gitops: { repo: "https://git.example.com/x.git", branch: main, file: a/b.yaml, keys: { repository: image.repo, digest: image.digest } } } }
  c: { target: { gitops: { repo: "https://git.example.com/x.git", file: c.yaml, key: image } } }
  d: { target: { registry-copy: { to: "prod.example.com/acme/all" } }, health_check: { url: "https://x.example.com/health" }, auto_rollback: true, require_attestation: true }
  e: { target: { webhook: { url: "https://hooks.example.com/deploy", secret_ref: hook, timeout: 5m } } }
  f: { target: { command: { program: deploy.sh, args: [a, b], timeout: 10m } } }
"#;
    let set = parsed(every_target);
    let application = set.applications().next().expect("one application");
    let text = resources::Resource::Application(application.clone()).canonical();
    let reread = resources::application_from_canonical(&text)
        .unwrap_or_else(|errors| panic!("{errors}\n{text}"));
    assert_eq!(&reread, application, "{text}");
    let pipeline = set.pipelines().next().expect("one pipeline");
    let text = resources::Resource::Pipeline(pipeline.clone()).canonical();
    assert!(resources::application_from_canonical(&text).is_err());
}

#[test]
fn require_attestation_renders_only_when_set_so_older_applications_render_as_before() {
    let text = |extra: &str| {
        let set = parsed(&format!(
            "kind: Pipeline\nname: p\nstages: [{{ name: prod }}]\n---\nkind: Application\nname: a\ntype: container\nrepository: acme/a\npipeline: p\nenvironments:\n  prod: {{ target: {{ record: {{}} }}{extra} }}\n"
        ));
        let application = set.applications().next().expect("one application").clone();
        assert_eq!(
            application
                .environments
                .values()
                .next()
                .expect("prod")
                .require_attestation,
            !extra.is_empty()
        );
        resources::Resource::Application(application).canonical()
    };
    assert!(!text("").contains("require_attestation"), "{}", text(""));
    let required = text(", require_attestation: true");
    assert!(required.contains("require_attestation"), "{required}");
    let reread = resources::application_from_canonical(&required).expect("reads back");
    assert!(
        reread
            .environments
            .values()
            .all(|spec| spec.require_attestation)
    );
}
