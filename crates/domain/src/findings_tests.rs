//! Reading scanner reports: real-shaped Trivy, CodeQL and Semgrep output counted per
//! severity, SARIF's rule lookup and suppression rules, errors that name the JSON path
//! of the offending field, and inputs that must fail without panicking.

use serde_json::{Value, json};

use super::*;

const TRIVY_ALPINE: &[u8] = include_bytes!("../tests/fixtures/trivy-alpine.json");
const TRIVY_CLEAN: &[u8] = include_bytes!("../tests/fixtures/trivy-clean.json");
const TRIVY_ALPINE_SARIF: &[u8] = include_bytes!("../tests/fixtures/trivy-alpine.sarif");
const CODEQL_SARIF: &[u8] = include_bytes!("../tests/fixtures/codeql-javascript.sarif");
const SEMGREP_SUPPRESSIONS_SARIF: &[u8] =
    include_bytes!("../tests/fixtures/semgrep-suppressions.sarif");

/// Counts in the order critical, high, medium, low, unknown.
fn counts(
    critical: u64,
    high: u64,
    medium: u64,
    low: u64,
    unknown: u64,
) -> BTreeMap<Severity, u64> {
    BTreeMap::from([
        (Severity::Critical, critical),
        (Severity::High, high),
        (Severity::Medium, medium),
        (Severity::Low, low),
        (Severity::Unknown, unknown),
    ])
}

fn parse(bytes: &[u8]) -> Findings {
    parse_report(bytes).unwrap_or_else(|e| panic!("report should parse: {e}"))
}

fn parse_json(document: &Value) -> Result<Findings, FindingsError> {
    parse_report(document.to_string().as_bytes())
}

fn error_of(document: &Value) -> String {
    match parse_json(document) {
        Ok(findings) => panic!("expected an error, counted {:?}", findings.counts),
        Err(error) => error.to_string(),
    }
}

fn check(bytes: &[u8], format: ReportFormat, expected: BTreeMap<Severity, u64>) {
    let findings = parse(bytes);
    assert_eq!(findings.format, format);
    assert_eq!(findings.counts, expected);
}

// ---------------------------------------------------------------------------------
// Trivy JSON

fn trivy(results: Value) -> Value {
    json!({ "SchemaVersion": 2, "ArtifactName": "registry.example.com/shop/api:1.4.2", "Results": results })
}

fn vulnerability(id: &str, package: &str, version: &str, severity: &str) -> Value {
    json!({ "VulnerabilityID": id, "PkgName": package, "InstalledVersion": version, "Severity": severity })
}

fn trivy_counts(results: Value) -> BTreeMap<Severity, u64> {
    parse_json(&trivy(results))
        .unwrap_or_else(|e| panic!("{e}"))
        .counts
}

#[test]
fn a_trivy_image_report_counts_vulnerabilities_misconfigurations_and_secrets_of_every_result() {
    // OS packages 2/2/5/1/1, Go binary 1/2/2/0/0, Dockerfile 0/1/0/1/0, secrets 1/0/1/0/0.
    check(TRIVY_ALPINE, ReportFormat::TrivyJson, counts(4, 5, 8, 2, 1));
}

#[test]
fn a_clean_image_without_results_has_every_severity_at_zero() {
    check(TRIVY_CLEAN, ReportFormat::TrivyJson, counts(0, 0, 0, 0, 0));
}

#[test]
fn null_or_absent_vulnerabilities_count_nothing() {
    let results = json!([
        { "Target": "usr/local/bin/migrate", "Class": "lang-pkgs", "Type": "gobinary", "Vulnerabilities": null },
        { "Target": "alpine 3.19.1", "Class": "os-pkgs", "Type": "alpine" },
    ]);
    assert_eq!(trivy_counts(results), counts(0, 0, 0, 0, 0));
}

#[test]
fn results_without_schema_version_are_still_read_as_trivy() {
    let report = json!({ "Results": [{ "Target": "x", "Vulnerabilities": [
        vulnerability("CVE-2024-24790", "stdlib", "v1.21.5", "CRITICAL"),
    ] }] });
    check(
        report.to_string().as_bytes(),
        ReportFormat::TrivyJson,
        counts(1, 0, 0, 0, 0),
    );
}

#[test]
fn an_exact_duplicate_within_one_result_counts_once() {
    let duplicate = vulnerability("CVE-2023-42363", "busybox", "1.36.1-r15", "MEDIUM");
    let results = json!([{ "Target": "alpine", "Vulnerabilities": [
        duplicate,
        duplicate,
        // Same vulnerability in another package, or another version: distinct.
        vulnerability("CVE-2023-42363", "busybox-binsh", "1.36.1-r15", "MEDIUM"),
        vulnerability("CVE-2023-42363", "busybox", "1.36.1-r16", "MEDIUM"),
    ] }]);
    assert_eq!(trivy_counts(results), counts(0, 0, 3, 0, 0));
}

#[test]
fn the_same_vulnerability_in_two_results_counts_in_each() {
    let entry = vulnerability("CVE-2023-45288", "golang.org/x/net", "v0.17.0", "HIGH");
    let results = json!([
        { "Target": "usr/local/bin/api", "Vulnerabilities": [entry] },
        { "Target": "usr/local/bin/worker", "Vulnerabilities": [entry] },
    ]);
    assert_eq!(trivy_counts(results), counts(0, 2, 0, 0, 0));
}

#[test]
fn trivy_severities_are_read_case_insensitively_and_anything_else_is_unknown() {
    let results = json!([{ "Target": "x", "Vulnerabilities": [
        vulnerability("CVE-1", "a", "1", "critical"),
        vulnerability("CVE-2", "a", "1", "High"),
        vulnerability("CVE-3", "a", "1", "UNKNOWN"),
        vulnerability("CVE-4", "a", "1", "NEGLIGIBLE"),
        { "VulnerabilityID": "CVE-5", "PkgName": "a", "InstalledVersion": "1" },
    ] }]);
    assert_eq!(trivy_counts(results), counts(1, 1, 0, 0, 3));
}

#[test]
fn only_failed_misconfigurations_are_findings() {
    let results = json!([{ "Target": "Dockerfile", "Class": "config", "Misconfigurations": [
        { "ID": "DS002", "Severity": "HIGH", "Status": "FAIL" },
        { "ID": "DS026", "Severity": "LOW" },
        { "ID": "DS001", "Severity": "MEDIUM", "Status": "PASS" },
        { "ID": "DS005", "Severity": "LOW", "Status": "EXCEPTION" },
    ] }]);
    assert_eq!(trivy_counts(results), counts(0, 1, 0, 1, 0));
}

#[test]
fn every_secret_is_a_finding_even_when_the_same_rule_matches_twice() {
    let results = json!([{ "Target": "/app/config/.env", "Class": "secret", "Secrets": [
        { "RuleID": "aws-access-key-id", "Severity": "CRITICAL", "StartLine": 4 },
        { "RuleID": "aws-access-key-id", "Severity": "CRITICAL", "StartLine": 9 },
        { "RuleID": "slack-web-hook", "Severity": "MEDIUM", "StartLine": 7 },
    ] }]);
    assert_eq!(trivy_counts(results), counts(2, 0, 1, 0, 0));
}

// ---------------------------------------------------------------------------------
// SARIF

fn sarif(rules: Value, results: Value) -> Value {
    json!({
        "version": "2.1.0",
        "runs": [{ "tool": { "driver": { "name": "scanner", "rules": rules } }, "results": results }],
    })
}

fn sarif_counts(rules: Value, results: Value) -> BTreeMap<Severity, u64> {
    parse_json(&sarif(rules, results))
        .unwrap_or_else(|e| panic!("{e}"))
        .counts
}

/// The severity of one result whose rule carries `security-severity: score`.
fn severity_for_score(score: Value) -> Option<Severity> {
    let rules = json!([{ "id": "R1", "properties": { "security-severity": score.clone() } }]);
    let counted = sarif_counts(
        rules,
        json!([{ "ruleId": "R1", "ruleIndex": 0, "level": "note" }]),
    );
    let found: Vec<Severity> = counted
        .into_iter()
        .filter(|(_, count)| *count > 0)
        .map(|(severity, _)| severity)
        .collect();
    assert!(found.len() <= 1, "{score}: {found:?}");
    found.first().copied()
}

/// The severity one result gets from its rule and result fields (no security-severity).
fn severity_for(rule: Value, result: Value) -> Option<Severity> {
    let counted = sarif_counts(json!([rule]), json!([result]));
    let found: Vec<Severity> = counted
        .into_iter()
        .filter(|(_, count)| *count > 0)
        .map(|(severity, _)| severity)
        .collect();
    assert!(found.len() <= 1, "{found:?}");
    found.first().copied()
}

#[test]
fn trivy_sarif_output_is_counted_by_security_severity() {
    // 9.1×2 + 9.5 critical; 7.5×2 + 8.0 high; 5.5×3 medium; 3.7 low; 0.0 unknown.
    check(
        TRIVY_ALPINE_SARIF,
        ReportFormat::Sarif,
        counts(3, 3, 3, 1, 1),
    );
}

#[test]
fn codeql_results_find_their_rules_in_the_query_pack_extension() {
    // sql-injection 8.8×2, reflected-xss 6.1, hardcoded-credentials 9.8, and two unused
    // variables with no security-severity and no level: the rule's default, note.
    check(CODEQL_SARIF, ReportFormat::Sarif, counts(1, 2, 1, 2, 0));
}

#[test]
fn accepted_suppressions_and_absent_baseline_results_are_not_counted() {
    // Counted: an unsuppressed error, suppressions under review and rejected (errors),
    // an empty suppressions list (note), an unchanged baseline result (warning).
    check(
        SEMGREP_SUPPRESSIONS_SARIF,
        ReportFormat::Sarif,
        counts(0, 3, 1, 1, 0),
    );
}

#[test]
fn security_severity_follows_githubs_thresholds() {
    let table = [
        (json!("10.0"), Some(Severity::Critical)),
        (json!("9.0"), Some(Severity::Critical)),
        (json!(9), Some(Severity::Critical)),
        (json!("8.9"), Some(Severity::High)),
        (json!(7.0), Some(Severity::High)),
        (json!("6.99"), Some(Severity::Medium)),
        (json!(" 4.0 "), Some(Severity::Medium)),
        (json!("3.9"), Some(Severity::Low)),
        (json!(0.1), Some(Severity::Low)),
        (json!("0.0"), Some(Severity::Unknown)),
        (json!(0), Some(Severity::Unknown)),
        (json!(-1.5), Some(Severity::Unknown)),
    ];
    for (score, expected) in table {
        assert_eq!(severity_for_score(score.clone()), expected, "score {score}");
    }
}

#[test]
fn security_severity_outranks_the_level() {
    let rule = json!({ "id": "R1", "properties": { "security-severity": "9.8" } });
    assert_eq!(
        severity_for(rule, json!({ "ruleId": "R1", "level": "note" })),
        Some(Severity::Critical)
    );
}

#[test]
fn without_security_severity_the_level_decides() {
    let rule = json!({ "id": "R1" });
    let table = [
        ("error", Some(Severity::High)),
        ("warning", Some(Severity::Medium)),
        ("note", Some(Severity::Low)),
        ("none", None),
    ];
    for (level, expected) in table {
        let result = json!({ "ruleId": "R1", "level": level });
        assert_eq!(
            severity_for(rule.clone(), result),
            expected,
            "level {level}"
        );
    }
}

#[test]
fn a_result_without_level_takes_its_rules_default_then_warning() {
    let error_rule = json!({ "id": "R1", "defaultConfiguration": { "level": "error" } });
    assert_eq!(
        severity_for(error_rule, json!({ "ruleId": "R1" })),
        Some(Severity::High)
    );

    let plain_rule = json!({ "id": "R1" });
    assert_eq!(
        severity_for(plain_rule.clone(), json!({ "ruleId": "R1" })),
        Some(Severity::Medium)
    );
    // A rule nobody declared: still a finding, at the SARIF default.
    assert_eq!(
        severity_for(plain_rule, json!({ "ruleId": "R9" })),
        Some(Severity::Medium)
    );
}

#[test]
fn level_none_is_not_a_finding_even_with_a_security_severity() {
    let rule = json!({ "id": "R1", "defaultConfiguration": { "level": "none" }, "properties": { "security-severity": "9.8" } });
    assert_eq!(severity_for(rule.clone(), json!({ "ruleId": "R1" })), None);
    assert_eq!(
        severity_for(rule.clone(), json!({ "ruleId": "R1", "level": "none" })),
        None
    );
    // An explicit level on the result overrides the rule's default.
    assert_eq!(
        severity_for(rule, json!({ "ruleId": "R1", "level": "warning" })),
        Some(Severity::Critical)
    );
}

#[test]
fn results_of_a_kind_other_than_fail_are_not_findings() {
    let rule = json!({ "id": "R1", "defaultConfiguration": { "level": "error" } });
    for kind in ["pass", "notApplicable", "informational", "review", "open"] {
        let result = json!({ "ruleId": "R1", "kind": kind });
        assert_eq!(severity_for(rule.clone(), result), None, "kind {kind}");
    }
    let failed = json!({ "ruleId": "R1", "kind": "fail" });
    assert_eq!(severity_for(rule, failed), Some(Severity::High));
}

#[test]
fn rules_are_found_by_index_first_then_by_id() {
    let rules = json!([
        { "id": "CRIT", "properties": { "security-severity": "9.5" } },
        { "id": "LOW", "properties": { "security-severity": "2.0" } },
    ]);
    let table = [
        (json!({ "ruleIndex": 0 }), Severity::Critical),
        (json!({ "ruleId": "LOW" }), Severity::Low),
        (json!({ "ruleId": "LOW", "ruleIndex": 1 }), Severity::Low),
        // The index wins when both are given.
        (
            json!({ "ruleId": "LOW", "ruleIndex": 0 }),
            Severity::Critical,
        ),
        // An index out of range or -1 ("not given") falls back to the id.
        (json!({ "ruleId": "LOW", "ruleIndex": 7 }), Severity::Low),
        (
            json!({ "ruleId": "CRIT", "ruleIndex": -1 }),
            Severity::Critical,
        ),
        // The reportingDescriptorReference form.
        (json!({ "rule": { "index": 1 } }), Severity::Low),
        (json!({ "rule": { "id": "CRIT" } }), Severity::Critical),
    ];
    for (result, expected) in table {
        let counted = sarif_counts(rules.clone(), json!([result]));
        let mut expected_counts = counts(0, 0, 0, 0, 0);
        expected_counts.insert(expected, 1);
        assert_eq!(counted, expected_counts, "{result}");
    }
}

#[test]
fn rule_tool_component_selects_an_extensions_rules() {
    let log = json!({ "version": "2.1.0", "runs": [{
        "tool": {
            "driver": { "name": "CodeQL", "rules": [{ "id": "driver-rule", "properties": { "security-severity": "2.0" } }] },
            "extensions": [
                { "name": "pack-a", "rules": [{ "id": "a", "properties": { "security-severity": "5.0" } }] },
                { "name": "pack-b", "rules": [{ "id": "b", "properties": { "security-severity": "9.9" } }] },
            ],
        },
        "results": [
            { "ruleIndex": 0, "rule": { "index": 0, "toolComponent": { "index": 1 } } },
            { "ruleIndex": 0, "rule": { "index": 0, "toolComponent": { "index": 0 } } },
            { "ruleIndex": 0 },
            // A component named only by name: the id is searched everywhere.
            { "ruleId": "b", "rule": { "id": "b", "toolComponent": { "name": "pack-b" } } },
        ],
    }] });
    let findings = parse_json(&log).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(findings.counts, counts(2, 0, 1, 1, 0));
}

#[test]
fn a_suppression_under_review_or_rejected_keeps_the_result_counted() {
    let rule = json!({ "id": "R1", "defaultConfiguration": { "level": "error" } });
    let table = [
        (json!([{ "kind": "inSource" }]), None),
        (json!([{ "kind": "external", "status": "accepted" }]), None),
        (
            json!([{ "kind": "inSource" }, { "kind": "external", "status": "accepted" }]),
            None,
        ),
        (json!([]), Some(Severity::High)),
        (
            json!([{ "kind": "external", "status": "underReview" }]),
            Some(Severity::High),
        ),
        (
            json!([{ "kind": "external", "status": "rejected" }]),
            Some(Severity::High),
        ),
        (
            json!([{ "kind": "inSource" }, { "kind": "external", "status": "rejected" }]),
            Some(Severity::High),
        ),
    ];
    for (suppressions, expected) in table {
        let result = json!({ "ruleId": "R1", "suppressions": suppressions });
        assert_eq!(
            severity_for(rule.clone(), result),
            expected,
            "{suppressions}"
        );
    }
}

#[test]
fn only_absent_baseline_results_are_dropped() {
    let rule = json!({ "id": "R1", "defaultConfiguration": { "level": "warning" } });
    for (state, expected) in [
        ("absent", None),
        ("new", Some(Severity::Medium)),
        ("unchanged", Some(Severity::Medium)),
        ("updated", Some(Severity::Medium)),
    ] {
        let result = json!({ "ruleId": "R1", "baselineState": state });
        assert_eq!(
            severity_for(rule.clone(), result),
            expected,
            "baselineState {state}"
        );
    }
}

#[test]
fn a_sarif_log_without_results_or_runs_content_counts_nothing() {
    let empty_run =
        json!({ "version": "2.1.0", "runs": [{ "tool": { "driver": { "name": "x" } } }] });
    assert_eq!(
        parse_json(&empty_run).map(|f| f.counts).ok(),
        Some(counts(0, 0, 0, 0, 0))
    );
    let no_runs = json!({ "version": "2.1.0", "runs": [] });
    assert_eq!(
        parse_json(&no_runs).map(|f| f.counts).ok(),
        Some(counts(0, 0, 0, 0, 0))
    );
}

// ---------------------------------------------------------------------------------
// Errors

#[test]
fn bytes_that_are_not_json_are_refused_as_such() {
    for input in [
        &b""[..],
        b"not json",
        b"{\"SchemaVersion\": 2,",
        b"\xff\xfe{}",
        b"{} trailing",
    ] {
        let error = parse_report(input).err();
        assert!(
            matches!(error, Some(FindingsError::NotJson(_))),
            "{input:?}: {error:?}"
        );
    }
    let message = parse_report(b"<html>").err().map(|e| e.to_string());
    assert!(
        message
            .as_deref()
            .is_some_and(|m| m.starts_with("the report could not be read as JSON: ")),
        "{message:?}"
    );
}

#[test]
fn a_leading_byte_order_mark_is_ignored() {
    let mut bytes = b"\xEF\xBB\xBF".to_vec();
    bytes.extend_from_slice(TRIVY_CLEAN);
    check(&bytes, ReportFormat::TrivyJson, counts(0, 0, 0, 0, 0));
}

#[test]
fn json_of_another_shape_is_refused_saying_what_was_expected() {
    let expected = "but a Trivy JSON report (`trivy image -f json`: an object with `SchemaVersion` and `Results`) \
                    or a SARIF 2.1.0 log (an object with `\"version\": \"2.1.0\"` and `runs`) was expected";
    let table = [
        (json!([1, 2]), "the report is an array, "),
        (json!("report"), "the report is a string, "),
        (json!(null), "the report is null, "),
        (
            json!({ "name": "gantry", "version": "1.0.0" }),
            "the report is an object without `SchemaVersion`, `Results`, `version` or `runs`, ",
        ),
    ];
    for (document, start) in table {
        assert_eq!(
            error_of(&document),
            format!("{start}{expected}"),
            "{document}"
        );
    }
}

#[test]
fn unsupported_versions_of_either_format_are_named() {
    let table = [
        (
            json!({ "version": "2.0.0", "runs": [] }),
            "the SARIF log has version \"2.0.0\"; only SARIF 2.1.0 is supported",
        ),
        (
            json!({ "SchemaVersion": 3, "Results": [] }),
            "the Trivy report has schema version 3; only schema version 2 (`trivy -f json` since Trivy 0.20) is supported",
        ),
        (
            json!([{ "Target": "alpine:3.10", "Vulnerabilities": [] }]),
            "the Trivy report has schema version 1 (a top-level array of results); only schema version 2 (`trivy -f json` since Trivy 0.20) is supported",
        ),
        (json!({ "runs": [] }), "`version` is required but missing"),
        (
            json!({ "version": "2.1.0" }),
            "`runs` is required but missing",
        ),
    ];
    for (document, expected) in table {
        assert_eq!(error_of(&document), expected, "{document}");
    }
}

#[test]
fn a_field_of_the_wrong_type_is_refused_naming_its_json_path() {
    let table = [
        (
            trivy(json!([{ "Target": "x", "Vulnerabilities": [
                vulnerability("CVE-1", "a", "1", "LOW"),
                { "VulnerabilityID": "CVE-2", "Severity": 4 },
            ] }])),
            "`Results[0].Vulnerabilities[1].Severity` should be a string, but is a number",
        ),
        (
            trivy(json!({ "Target": "x" })),
            "`Results` should be an array, but is an object",
        ),
        (
            trivy(json!(["alpine"])),
            "`Results[0]` should be an object, but is a string",
        ),
        (
            trivy(json!([{ "Target": "x" }, { "Target": "y", "Vulnerabilities": "none" }])),
            "`Results[1].Vulnerabilities` should be an array, but is a string",
        ),
        (
            trivy(
                json!([{ "Target": "x", "Secrets": [{ "RuleID": "jwt", "Severity": ["HIGH"] }] }]),
            ),
            "`Results[0].Secrets[0].Severity` should be a string, but is an array",
        ),
        (
            trivy(
                json!([{ "Target": "x", "Misconfigurations": [{ "ID": "DS002", "Status": false }] }]),
            ),
            "`Results[0].Misconfigurations[0].Status` should be a string, but is a boolean",
        ),
        (
            json!({ "SchemaVersion": "2", "Results": [] }),
            "`SchemaVersion` should be an integer, but is a string",
        ),
        (
            json!({ "version": "2.1.0", "runs": { "tool": {} } }),
            "`runs` should be an array, but is an object",
        ),
        (
            sarif(
                json!([{ "id": "R1", "properties": { "security-severity": { "score": 9 } } }]),
                json!([]),
            ),
            "`runs[0].tool.driver.rules[0].properties[\"security-severity\"]` should be a score (a number or a numeric string), but is an object",
        ),
        (
            sarif(json!([]), json!([{ "ruleId": "R1", "ruleIndex": "0" }])),
            "`runs[0].results[0].ruleIndex` should be an integer, but is a string",
        ),
        (
            sarif(
                json!([]),
                json!([{ "ruleId": "R1", "suppressions": [{ "kind": "inSource", "status": 1 }] }]),
            ),
            "`runs[0].results[0].suppressions[0].status` should be a string, but is a number",
        ),
        (
            sarif(
                json!([]),
                json!([{ "rule": { "id": "R1", "toolComponent": { "index": 1.5 } } }]),
            ),
            "`runs[0].results[0].rule.toolComponent.index` should be an integer, but is a number",
        ),
    ];
    for (document, expected) in table {
        assert_eq!(error_of(&document), expected, "{document}");
    }
}

#[test]
fn a_value_outside_its_allowed_set_is_refused_naming_its_json_path() {
    let table = [
        (
            sarif(
                json!([{ "id": "R1", "properties": { "security-severity": "high" } }]),
                json!([]),
            ),
            "`runs[0].tool.driver.rules[0].properties[\"security-severity\"]` is \"high\", but should be a CVSS score such as \"7.5\"",
        ),
        (
            sarif(
                json!([{ "id": "R1", "defaultConfiguration": { "level": "fatal" } }]),
                json!([]),
            ),
            "`runs[0].tool.driver.rules[0].defaultConfiguration.level` is \"fatal\", but should be one of \"none\", \"note\", \"warning\" or \"error\"",
        ),
        (
            sarif(json!([]), json!([{ "ruleId": "R1", "level": "Error" }])),
            "`runs[0].results[0].level` is \"Error\", but should be one of \"none\", \"note\", \"warning\" or \"error\"",
        ),
    ];
    for (document, expected) in table {
        assert_eq!(error_of(&document), expected, "{document}");
    }
}

#[test]
fn a_long_offending_value_is_cut_short_in_the_message() {
    let long = "9".repeat(500) + "x";
    let document = sarif(
        json!([{ "id": "R1", "properties": { "security-severity": long } }]),
        json!([]),
    );
    let message = error_of(&document);
    assert!(message.len() < 250, "{message}");
    assert!(message.contains('…'), "{message}");
}

#[test]
fn nesting_beyond_serde_jsons_limit_is_an_error_not_a_stack_overflow() {
    let depth = 100_000;
    let deep = "[".repeat(depth) + &"]".repeat(depth);
    assert!(matches!(
        parse_report(deep.as_bytes()),
        Err(FindingsError::NotJson(_))
    ));

    let deep_in_a_report = format!(
        "{{\"SchemaVersion\":2,\"Results\":[{{\"Target\":{}{}}}]}}",
        "{\"a\":".repeat(depth),
        "}".repeat(depth)
    );
    assert!(matches!(
        parse_report(deep_in_a_report.as_bytes()),
        Err(FindingsError::NotJson(_))
    ));
}

#[test]
fn every_truncation_of_a_report_fails_cleanly_until_it_is_whole() {
    // Every prefix of the small report; every eleventh of a larger one, to stay quick.
    for (fixture, step) in [(TRIVY_CLEAN, 1), (SEMGREP_SUPPRESSIONS_SARIF, 11)] {
        let whole = fixture.trim_ascii_end();
        for end in (0..=fixture.len()).step_by(step).chain([fixture.len()]) {
            let prefix = &fixture[..end];
            let complete = prefix.trim_ascii_end() == whole;
            assert_eq!(
                parse_report(prefix).is_ok(),
                complete,
                "prefix of {end} bytes"
            );
        }
    }
}

#[test]
fn corrupted_reports_never_panic_and_valid_corruptions_still_count() {
    // Replace bytes at many positions with characters that change JSON structure or
    // types; whatever comes out must be an answer, never a panic.
    let replacements = [b'0', b'"', b'{', b'}', 0xff];
    for fixture in [TRIVY_ALPINE, CODEQL_SARIF] {
        let mut outcomes = [0usize; 2];
        for position in (0..fixture.len()).step_by(97) {
            for replacement in replacements {
                let mut corrupted = fixture.to_vec();
                corrupted[position] = replacement;
                outcomes[usize::from(parse_report(&corrupted).is_ok())] += 1;
            }
        }
        // Most single-byte changes inside strings still leave a countable report.
        assert!(outcomes[0] > 0 && outcomes[1] > 0, "{outcomes:?}");
    }
}

// ---------------------------------------------------------------------------------
// Names and flips

#[test]
fn report_formats_have_stable_names() {
    assert_eq!(ReportFormat::TrivyJson.as_str(), "trivy");
    assert_eq!(ReportFormat::Sarif.as_str(), "sarif");
}

#[test]
fn flips_counts_changes_between_consecutive_outcomes() {
    let table: [(&[bool], u32); 8] = [
        (&[], 0),
        (&[true], 0),
        (&[false], 0),
        (&[true, true, true, true], 0),
        (&[false, false, false], 0),
        (&[true, false], 1),
        (&[true, false, true, false, true], 4),
        (&[false, false, true, true, true, false], 2),
    ];
    for (outcomes, expected) in table {
        assert_eq!(flips(outcomes.iter().copied()), expected, "{outcomes:?}");
    }
}
