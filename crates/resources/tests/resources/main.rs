//! Declarative resources as `gantry apply` reads them: the SPEC §5 example, every way a
//! file can be wrong (each error naming file, document and field), references between
//! resources, and the canonical form `--dry-run` compares.

mod canonical;
mod documents;
mod errors;
mod example;
mod references;
mod retention_policies;
mod targets;
mod trust_policies;

/// The example of SPEC §5, as a platform engineer would write it.
pub const SPEC_EXAMPLE: &str = r#"kind: Pipeline
name: standard
stages:
  - name: dev
    auto: true                       # every new build of main deploys here
    gate: { checks: [unit-tests] }
  - name: staging
    gate:
      checks: [integration-tests]
      approvals: [{ role: staff, count: 1 }]
      soak: 30m                      # must have run in dev this long, healthy
  - name: prod
    tier: release                    # copy into release/{repo} (zero-copy) first
    gate:
      checks: [e2e, { name: trivy, max: { critical: 0, high: 0 } }]
      approvals: [{ role: staff, count: 1 }, { role: client, count: 1 }]
      freeze: ["Fri 16:00 - Mon 08:00 Europe/London"]
---
kind: Application
name: web-app
type: container
repository: acme/web-app
pipeline: standard
environments:
  dev:     { target: { gitops: { repo: "git@…:acme/infra-config.git", file: apps/web-app/dev/values.yaml, key: image.digest } } }
  staging: { target: { gitops: { repo: "…", file: apps/web-app/staging/values.yaml, key: image.digest } } }
  prod:    { target: { registry-copy: { to: "prod-registry.example.com/acme/web-app" } } }
"#;

/// The rendered errors of `text` read as `resources.yaml`, one line each.
pub fn errors_of(text: &str) -> Vec<String> {
    match resources::parse_file("resources.yaml", text) {
        Ok(set) => panic!("expected errors, parsed {} resources", set.len()),
        Err(errors) => errors.errors().iter().map(ToString::to_string).collect(),
    }
}

/// `text` read as `resources.yaml`, which must be valid.
pub fn parsed(text: &str) -> resources::ResourceSet {
    resources::parse_file("resources.yaml", text).unwrap_or_else(|errors| panic!("{errors}"))
}
