//! Multi-document files: separators, empty documents, and errors gathered from all of them.

use crate::{errors_of, parsed};

const PIPELINE: &str = "kind: Pipeline\nname: standard\nstages: [{ name: dev }]\n";

#[test]
fn documents_separated_by_dashes_are_read_in_order() {
    let text = format!(
        "---\n{PIPELINE}---\nkind: Pipeline\nname: hotfix\nstages: [{{ name: prod }}]\n...\n"
    );
    let names: Vec<_> = parsed(&text)
        .resources()
        .map(|r| r.name().to_owned())
        .collect();
    assert_eq!(names, ["standard", "hotfix"]);
}

#[test]
fn empty_documents_and_comment_only_files_declare_nothing() {
    assert!(parsed("").is_empty());
    assert!(parsed("# nothing yet\n").is_empty());
    assert!(parsed("---\n---\n").is_empty());
    assert_eq!(parsed(&format!("{PIPELINE}---\n")).len(), 1);
}

#[test]
fn documents_are_numbered_from_one_counting_empty_ones() {
    let text = format!("{PIPELINE}---\n# reserved\n---\nkind: Pipelin\nname: x\n");
    assert_eq!(
        errors_of(&text),
        [
            "resources.yaml: document 3 (Pipelin `x`), field kind: unknown kind `Pipelin`: use Pipeline, Application, TrustPolicy or RetentionPolicy"
        ]
    );
}

#[test]
fn every_bad_document_is_reported_not_only_the_first() {
    let text = format!(
        "kind: Pipeline\nname: a\nstages: [{{ name: dev, auto: yes please }}]\n---\n{PIPELINE}---\nname: orphan\n---\nkind: Application\nname: web\ntype: container\nrepository: acme/web\npipeline: standard\nenvironments: {{ dev: {{ target: {{ record: {{}} }} }} }}\nowner: me\n"
    );
    assert_eq!(
        errors_of(&text),
        [
            "resources.yaml:3:29: document 1 (Pipeline `a`), field stages[0].auto: invalid type: string \"yes please\", expected a boolean",
            "resources.yaml: document 3 (`orphan`): missing `kind`: use Pipeline, Application, TrustPolicy or RetentionPolicy",
            "resources.yaml:17:1: document 4 (Application `web`), field owner: unknown field `owner`, expected one of `kind`, `name`, `type`, `repository`, `pipeline`, `tech_stack`, `module`, `environments`, `retention`",
        ]
    );
}

#[test]
fn a_syntax_error_stops_reading_but_keeps_the_errors_before_it() {
    let text = "kind: Pipeline\nname: a\nstages: 1\n---\nkind: Pipeline\nname: b\nstages: [{ name: dev }\n---\nkind: Nope\n";
    assert_eq!(
        errors_of(text),
        [
            "resources.yaml:3:9: document 1 (Pipeline `a`), field stages: invalid type: integer `1`, expected a sequence",
            "resources.yaml:8:1: document 2: not valid YAML: did not find expected ',' or ']', while parsing a flow sequence at line 7 column 9",
        ]
    );
}

#[test]
fn errors_render_one_per_line_for_the_cli() {
    let errors =
        resources::parse_file("ops/apps.yaml", "name: a\n---\nname: b\n").expect_err("no kinds");
    assert_eq!(
        errors.to_string(),
        "ops/apps.yaml: document 1 (`a`): missing `kind`: use Pipeline, Application, TrustPolicy or RetentionPolicy\n\
         ops/apps.yaml: document 2 (`b`): missing `kind`: use Pipeline, Application, TrustPolicy or RetentionPolicy"
    );
    let first = &errors.errors()[0];
    assert_eq!(first.file, "ops/apps.yaml");
    assert_eq!(first.document.as_ref().map(|d| d.index), Some(1));
    assert_eq!(first.problem, resources::Problem::MissingKind);
}
