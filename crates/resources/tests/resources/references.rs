//! An application's pipeline must exist, and its environments must be that pipeline's stages.

use domain::pipeline::{EnvName, Gate, Pipeline, PipelineName, Stage};

use crate::parsed;

/// A pipeline Gantry already stores, with stages named `stages`.
fn known(name: &str, stages: &[&str]) -> Pipeline {
    let stages = stages
        .iter()
        .map(|stage| Stage {
            environment: EnvName::parse(stage).expect("valid"),
            auto: false,
            gate: Gate::default(),
        })
        .collect();
    Pipeline::new(PipelineName::parse(name).expect("valid"), stages).expect("valid")
}

/// Application `web` on `pipeline` with an environment (target `record`) per name.
fn application(pipeline: &str, environments: &[&str]) -> String {
    let environments: String = environments
        .iter()
        .map(|env| format!("  {env}: {{ target: {{ record: {{}} }} }}\n"))
        .collect();
    format!(
        "kind: Application\nname: web\ntype: container\nrepository: acme/web\npipeline: {pipeline}\nenvironments:\n{environments}"
    )
}

/// `text` read as `resources.yaml` and checked against `known` pipelines reports `expected`.
fn check(text: &str, known: &[Pipeline], expected: &[&str]) {
    let reported: Vec<String> = match parsed(text).check_references(known, &[]) {
        Ok(()) => Vec::new(),
        Err(errors) => errors.errors().iter().map(ToString::to_string).collect(),
    };
    assert_eq!(reported, expected, "for:\n{text}");
}

#[test]
fn an_application_may_use_a_pipeline_declared_in_the_same_file() {
    let text = format!(
        "kind: Pipeline\nname: standard\nstages: [{{ name: dev }}, {{ name: prod }}]\n---\n{}",
        application("standard", &["dev", "prod"])
    );
    check(&text, &[], &[]);
}

#[test]
fn an_application_may_use_a_pipeline_gantry_already_knows() {
    check(
        &application("standard", &["dev", "prod"]),
        &[known("standard", &["dev", "prod"])],
        &[],
    );
}

#[test]
fn an_application_whose_pipeline_exists_nowhere_is_refused_at_its_pipeline_field() {
    check(
        &application("standrad", &["dev"]),
        &[known("standard", &["dev"])],
        &[
            "resources.yaml: document 1 (Application `web`), field pipeline: pipeline `standrad` is neither declared in this file nor known to Gantry",
        ],
    );
}

#[test]
fn an_environment_that_is_not_a_stage_of_the_pipeline_is_refused() {
    check(
        &application("standard", &["dev", "qa", "prod"]),
        &[known("standard", &["dev", "prod"])],
        &[
            "resources.yaml: document 1 (Application `web`), field environments.qa: environment `qa` is not a stage of pipeline `standard` (its stages: dev, prod)",
        ],
    );
}

#[test]
fn a_stage_the_application_does_not_configure_is_refused() {
    check(
        &application("standard", &["dev"]),
        &[known("standard", &["dev", "staging", "prod"])],
        &[
            "resources.yaml: document 1 (Application `web`), field environments: stage `staging` of pipeline `standard` has no environment here: add `staging: { target: … }` (`record: {}` when Gantry only records what was promoted)",
            "resources.yaml: document 1 (Application `web`), field environments: stage `prod` of pipeline `standard` has no environment here: add `prod: { target: … }` (`record: {}` when Gantry only records what was promoted)",
        ],
    );
}

#[test]
fn a_pipeline_in_the_file_replaces_the_known_one_of_the_same_name() {
    // The stored pipeline has no qa stage, but the file adds one and is about to be applied.
    let text = format!(
        "kind: Pipeline\nname: standard\nstages: [{{ name: dev }}, {{ name: qa }}]\n---\n{}",
        application("standard", &["dev", "qa"])
    );
    check(&text, &[known("standard", &["dev", "prod"])], &[]);
}

#[test]
fn every_reference_problem_of_every_application_is_reported() {
    let text = format!(
        "{}---\n{}",
        application("standard", &["dev", "qa"]),
        application("missing", &["dev"]).replace("name: web", "name: api")
    );
    check(
        &text,
        &[known("standard", &["dev", "prod"])],
        &[
            "resources.yaml: document 1 (Application `web`), field environments.qa: environment `qa` is not a stage of pipeline `standard` (its stages: dev, prod)",
            "resources.yaml: document 1 (Application `web`), field environments: stage `prod` of pipeline `standard` has no environment here: add `prod: { target: … }` (`record: {}` when Gantry only records what was promoted)",
            "resources.yaml: document 2 (Application `api`), field pipeline: pipeline `missing` is neither declared in this file nor known to Gantry",
        ],
    );
}
