//! Scanner findings: severity counts read from Trivy JSON and SARIF reports.
//!
//! A check may upload the report its scanner wrote, and a gate then compares the counts
//! with the check's per-severity maximums. Reading the report here, instead of trusting
//! numbers each CI job computes its own way, gives every pipeline one meaning of "two
//! criticals". The readings follow what people already see elsewhere: Trivy's own
//! severities, and for SARIF GitHub code scanning's use of `security-severity`.
//!
//! A report is untrusted input. Every field read is checked for its type and the error
//! names its JSON path, so whoever wired the scanner can fix it. The caller caps the
//! size, serde_json caps the nesting depth (128), and nothing here panics.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;

use serde_json::{Map, Value};

use crate::pipeline::Severity;

/// The report formats Gantry reads, told apart by their content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReportFormat {
    /// `trivy image -f json` (schema version 2, Trivy 0.20 and later).
    TrivyJson,
    /// SARIF 2.1.0: Trivy's `-f sarif`, CodeQL, Semgrep and most static analysers.
    Sarif,
}

impl ReportFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            ReportFormat::TrivyJson => "trivy",
            ReportFormat::Sarif => "sarif",
        }
    }
}

/// What one report found, counted per severity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Findings {
    pub format: ReportFormat,
    /// Every severity is a key, zero included: "none found" is an answer, not a gap.
    pub counts: BTreeMap<Severity, u64>,
}

impl Findings {
    fn empty(format: ReportFormat) -> Findings {
        Findings {
            format,
            counts: Severity::ALL.into_iter().map(|s| (s, 0)).collect(),
        }
    }

    fn add(&mut self, severity: Severity) {
        *self.counts.entry(severity).or_insert(0) += 1;
    }
}

/// Why a report could not be counted. Each variant tells the uploader what to fix.
#[derive(Debug, thiserror::Error)]
pub enum FindingsError {
    /// Not JSON at all, or nested deeper than serde_json's limit.
    #[error("the report could not be read as JSON: {0}")]
    NotJson(serde_json::Error),
    #[error(
        "the report is {found}, but a Trivy JSON report (`trivy image -f json`: an object \
         with `SchemaVersion` and `Results`) or a SARIF 2.1.0 log (an object with \
         `\"version\": \"2.1.0\"` and `runs`) was expected"
    )]
    UnrecognisedFormat { found: String },
    #[error("the SARIF log has version {found}; only SARIF 2.1.0 is supported")]
    UnsupportedSarifVersion { found: String },
    #[error(
        "the Trivy report has schema version {found}; only schema version 2 \
         (`trivy -f json` since Trivy 0.20) is supported"
    )]
    UnsupportedTrivySchema { found: String },
    #[error("`{path}` is required but missing")]
    MissingField { path: String },
    #[error("`{path}` should be {expected}, but is {found}")]
    WrongType {
        path: String,
        expected: &'static str,
        found: &'static str,
    },
    #[error("`{path}` is {value}, but should be {expected}")]
    InvalidValue {
        path: String,
        value: String,
        expected: &'static str,
    },
}

/// Detects the format from the content (SARIF has `"version": "2.1.0"` and `runs`;
/// Trivy has `SchemaVersion` and/or `Results`), then counts the findings.
///
/// Detection by content rather than by a declared type means an uploader cannot label
/// a report wrongly, and a file name or media type cannot make Gantry misread it.
pub fn parse_report(bytes: &[u8]) -> Result<Findings, FindingsError> {
    // Windows tools (PowerShell's Out-File among them) write a byte order mark.
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let document: Value = serde_json::from_slice(bytes).map_err(FindingsError::NotJson)?;
    let object = match &document {
        Value::Object(object) => object,
        Value::Array(items) if items.first().is_some_and(looks_like_trivy_v1_result) => {
            return Err(FindingsError::UnsupportedTrivySchema {
                found: "1 (a top-level array of results)".to_owned(),
            });
        }
        other => {
            return Err(FindingsError::UnrecognisedFormat {
                found: kind_of(other).to_owned(),
            });
        }
    };
    if object.contains_key("runs") {
        count_sarif(object)
    } else if object.contains_key("SchemaVersion") || object.contains_key("Results") {
        count_trivy(object)
    } else if object.get("version").and_then(Value::as_str) == Some("2.1.0") {
        // A SARIF log without `runs`: say what is missing rather than "unrecognised".
        count_sarif(object)
    } else {
        Err(FindingsError::UnrecognisedFormat {
            found: "an object without `SchemaVersion`, `Results`, `version` or `runs`".to_owned(),
        })
    }
}

/// Counts how many times a sequence of pass/fail outcomes (oldest first) changes value.
///
/// A check whose outcome keeps changing for unchanged code is flaky, and a gate should
/// not read its latest pass as evidence; the caller compares this with a threshold.
pub fn flips(outcomes: impl IntoIterator<Item = bool>) -> u32 {
    let mut outcomes = outcomes.into_iter();
    let Some(mut previous) = outcomes.next() else {
        return 0;
    };
    let mut count = 0u32;
    for outcome in outcomes {
        if outcome != previous {
            count = count.saturating_add(1);
            previous = outcome;
        }
    }
    count
}

// ---------------------------------------------------------------------------------
// Trivy JSON

fn looks_like_trivy_v1_result(value: &Value) -> bool {
    value.as_object().is_some_and(|o| o.contains_key("Target"))
}

fn count_trivy(report: &Map<String, Value>) -> Result<Findings, FindingsError> {
    let root = JsonPath::ROOT;
    if let Some(version) = optional(report, "SchemaVersion") {
        match version {
            Value::Number(number) if number.as_u64() == Some(2) => {}
            Value::Number(number) => {
                return Err(FindingsError::UnsupportedTrivySchema {
                    found: number.to_string(),
                });
            }
            other => {
                return Err(wrong_type(&root.key("SchemaVersion"), "an integer", other));
            }
        }
    }
    let mut findings = Findings::empty(ReportFormat::TrivyJson);
    let results_path = root.key("Results");
    for (index, result) in optional_array(report, "Results", &root)?.iter().enumerate() {
        let result_path = results_path.index(index);
        let result = as_object(result, &result_path)?;
        count_trivy_vulnerabilities(result, &result_path, &mut findings)?;
        count_trivy_misconfigurations(result, &result_path, &mut findings)?;
        count_trivy_secrets(result, &result_path, &mut findings)?;
    }
    Ok(findings)
}

/// Each entry counts, except exact repeats within one result: the same vulnerability
/// in the same package version is one thing to fix, however often it is listed.
fn count_trivy_vulnerabilities(
    result: &Map<String, Value>,
    result_path: &JsonPath<'_>,
    findings: &mut Findings,
) -> Result<(), FindingsError> {
    let list_path = result_path.key("Vulnerabilities");
    let mut seen = HashSet::new();
    for (index, entry) in optional_array(result, "Vulnerabilities", result_path)?
        .iter()
        .enumerate()
    {
        let path = list_path.index(index);
        let entry = as_object(entry, &path)?;
        let identity = (
            optional_str(entry, "VulnerabilityID", &path)?,
            optional_str(entry, "PkgName", &path)?,
            optional_str(entry, "InstalledVersion", &path)?,
        );
        let severity = trivy_severity(entry, &path)?;
        if seen.insert(identity) {
            findings.add(severity);
        }
    }
    Ok(())
}

/// Only failed checks are findings: `--include-non-failures` also lists `PASS`, and
/// `EXCEPTION` marks a check the team excepted by policy.
fn count_trivy_misconfigurations(
    result: &Map<String, Value>,
    result_path: &JsonPath<'_>,
    findings: &mut Findings,
) -> Result<(), FindingsError> {
    let list_path = result_path.key("Misconfigurations");
    for (index, entry) in optional_array(result, "Misconfigurations", result_path)?
        .iter()
        .enumerate()
    {
        let path = list_path.index(index);
        let entry = as_object(entry, &path)?;
        let status = optional_str(entry, "Status", &path)?;
        let severity = trivy_severity(entry, &path)?;
        let not_a_failure = status.is_some_and(|status| {
            status.eq_ignore_ascii_case("PASS") || status.eq_ignore_ascii_case("EXCEPTION")
        });
        if !not_a_failure {
            findings.add(severity);
        }
    }
    Ok(())
}

fn count_trivy_secrets(
    result: &Map<String, Value>,
    result_path: &JsonPath<'_>,
    findings: &mut Findings,
) -> Result<(), FindingsError> {
    let list_path = result_path.key("Secrets");
    for (index, entry) in optional_array(result, "Secrets", result_path)?
        .iter()
        .enumerate()
    {
        let path = list_path.index(index);
        let entry = as_object(entry, &path)?;
        findings.add(trivy_severity(entry, &path)?);
    }
    Ok(())
}

/// A severity Trivy did not know (or did not write) still counts, as Unknown: dropping
/// it would let an unusual report pass a gate that a usual one fails.
fn trivy_severity(
    entry: &Map<String, Value>,
    path: &JsonPath<'_>,
) -> Result<Severity, FindingsError> {
    Ok(optional_str(entry, "Severity", path)?
        .and_then(|text| Severity::parse(text).ok())
        .unwrap_or(Severity::Unknown))
}

// ---------------------------------------------------------------------------------
// SARIF 2.1.0

/// `result.level` and `reportingDescriptor.defaultConfiguration.level` (SARIF §3.27.10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    None,
    Note,
    Warning,
    Error,
}

impl Level {
    fn severity(self) -> Option<Severity> {
        match self {
            Level::None => None,
            Level::Note => Some(Severity::Low),
            Level::Warning => Some(Severity::Medium),
            Level::Error => Some(Severity::High),
        }
    }
}

/// What a result may inherit from its rule.
#[derive(Debug, Clone, Copy)]
struct Rule {
    security_severity: Option<f64>,
    default_level: Option<Level>,
}

/// The rules of one tool component (the driver or an extension), addressable by
/// position and by id.
#[derive(Debug, Default)]
struct RuleSet<'v> {
    rules: Vec<Rule>,
    by_id: HashMap<&'v str, usize>,
}

impl RuleSet<'_> {
    fn by_id(&self, id: &str) -> Option<&Rule> {
        self.by_id.get(id).and_then(|&index| self.rules.get(index))
    }
}

fn count_sarif(log: &Map<String, Value>) -> Result<Findings, FindingsError> {
    let root = JsonPath::ROOT;
    match optional(log, "version") {
        Some(Value::String(version)) if version == "2.1.0" => {}
        Some(Value::String(version)) => {
            return Err(FindingsError::UnsupportedSarifVersion {
                found: shown(&Value::String(version.clone())),
            });
        }
        Some(other) => return Err(wrong_type(&root.key("version"), "a string", other)),
        None => return Err(missing(&root.key("version"))),
    }
    let runs_path = root.key("runs");
    let runs = match optional(log, "runs") {
        Some(Value::Array(runs)) => runs,
        Some(other) => return Err(wrong_type(&runs_path, "an array", other)),
        None => return Err(missing(&runs_path)),
    };
    let mut findings = Findings::empty(ReportFormat::Sarif);
    for (index, run) in runs.iter().enumerate() {
        let run_path = runs_path.index(index);
        let run = as_object(run, &run_path)?;
        let rule_sets = read_rule_sets(run, &run_path)?;
        let results_path = run_path.key("results");
        for (index, result) in optional_array(run, "results", &run_path)?
            .iter()
            .enumerate()
        {
            let path = results_path.index(index);
            let result = as_object(result, &path)?;
            if let Some(severity) = sarif_result_severity(result, &path, &rule_sets)? {
                findings.add(severity);
            }
        }
    }
    Ok(findings)
}

/// The driver's rules first, then each extension's: CodeQL keeps its rules in the
/// query packs it lists as extensions and points at them with `rule.toolComponent`.
fn read_rule_sets<'v>(
    run: &'v Map<String, Value>,
    run_path: &JsonPath<'_>,
) -> Result<Vec<RuleSet<'v>>, FindingsError> {
    let tool_path = run_path.key("tool");
    let Some(tool) = optional_object(run, "tool", run_path)? else {
        return Ok(vec![RuleSet::default()]);
    };
    let driver_path = tool_path.key("driver");
    let mut rule_sets = vec![match optional_object(tool, "driver", &tool_path)? {
        Some(driver) => read_rule_set(driver, &driver_path)?,
        None => RuleSet::default(),
    }];
    let extensions_path = tool_path.key("extensions");
    for (index, extension) in optional_array(tool, "extensions", &tool_path)?
        .iter()
        .enumerate()
    {
        let path = extensions_path.index(index);
        rule_sets.push(read_rule_set(as_object(extension, &path)?, &path)?);
    }
    Ok(rule_sets)
}

fn read_rule_set<'v>(
    component: &'v Map<String, Value>,
    component_path: &JsonPath<'_>,
) -> Result<RuleSet<'v>, FindingsError> {
    let rules_path = component_path.key("rules");
    let mut rule_set = RuleSet::default();
    for (index, rule) in optional_array(component, "rules", component_path)?
        .iter()
        .enumerate()
    {
        let path = rules_path.index(index);
        let rule = as_object(rule, &path)?;
        if let Some(id) = optional_str(rule, "id", &path)? {
            rule_set.by_id.entry(id).or_insert(index);
        }
        let properties_path = path.key("properties");
        let security_severity = match optional_object(rule, "properties", &path)? {
            Some(properties) => security_severity(properties, &properties_path)?,
            None => None,
        };
        let configuration_path = path.key("defaultConfiguration");
        let default_level = match optional_object(rule, "defaultConfiguration", &path)? {
            Some(configuration) => read_level(configuration, &configuration_path)?,
            None => None,
        };
        rule_set.rules.push(Rule {
            security_severity,
            default_level,
        });
    }
    Ok(rule_set)
}

/// GitHub's convention: a CVSS-like score as a string ("8.8") or a number.
fn security_severity(
    properties: &Map<String, Value>,
    properties_path: &JsonPath<'_>,
) -> Result<Option<f64>, FindingsError> {
    const KEY: &str = "security-severity";
    let Some(value) = optional(properties, KEY) else {
        return Ok(None);
    };
    let score = match value {
        Value::Number(number) => number.as_f64(),
        Value::String(text) => text.trim().parse::<f64>().ok(),
        other => {
            return Err(wrong_type(
                &properties_path.key(KEY),
                "a score (a number or a numeric string)",
                other,
            ));
        }
    };
    match score {
        Some(score) if score.is_finite() => Ok(Some(score)),
        _ => Err(FindingsError::InvalidValue {
            path: properties_path.key(KEY).render(),
            value: shown(value),
            expected: "a CVSS score such as \"7.5\"",
        }),
    }
}

/// The thresholds GitHub code scanning uses to name a `security-severity` score.
fn severity_from_score(score: f64) -> Severity {
    if score >= 9.0 {
        Severity::Critical
    } else if score >= 7.0 {
        Severity::High
    } else if score >= 4.0 {
        Severity::Medium
    } else if score > 0.0 {
        Severity::Low
    } else {
        Severity::Unknown
    }
}

/// `None` when the result is not a finding: absent from this run compared with the
/// baseline, suppressed, or of level `none` (which includes results whose `kind` is
/// `pass`, `informational` and the like, SARIF §3.27.9).
fn sarif_result_severity(
    result: &Map<String, Value>,
    path: &JsonPath<'_>,
    rule_sets: &[RuleSet<'_>],
) -> Result<Option<Severity>, FindingsError> {
    if optional_str(result, "baselineState", path)? == Some("absent") {
        return Ok(None);
    }
    if is_suppressed(result, path)? {
        return Ok(None);
    }
    let rule = find_rule(result, path, rule_sets)?;
    let level = match read_level(result, path)? {
        Some(level) => level,
        None => match optional_str(result, "kind", path)? {
            Some(kind) if kind != "fail" => Level::None,
            _ => rule
                .and_then(|rule| rule.default_level)
                .unwrap_or(Level::Warning),
        },
    };
    let Some(level_severity) = level.severity() else {
        return Ok(None);
    };
    Ok(Some(match rule.and_then(|rule| rule.security_severity) {
        Some(score) => severity_from_score(score),
        None => level_severity,
    }))
}

/// Suppressed when every suppression is accepted (explicitly, or by having no status,
/// which is how Semgrep and CodeQL write in-source suppressions). One under review or
/// rejected keeps the result counted: a gate must not pass on a pending argument.
fn is_suppressed(result: &Map<String, Value>, path: &JsonPath<'_>) -> Result<bool, FindingsError> {
    let suppressions = optional_array(result, "suppressions", path)?;
    if suppressions.is_empty() {
        return Ok(false);
    }
    let list_path = path.key("suppressions");
    for (index, suppression) in suppressions.iter().enumerate() {
        let path = list_path.index(index);
        let suppression = as_object(suppression, &path)?;
        match optional_str(suppression, "status", &path)? {
            None | Some("accepted") => {}
            Some(_) => return Ok(false),
        }
    }
    Ok(true)
}

/// The rule a result refers to: by index (`ruleIndex` or `rule.index`) in the tool
/// component `rule.toolComponent` names (the driver by default), else by id
/// (`ruleId` or `rule.id`) there, else by id in any component. A result whose rule
/// cannot be found still counts, by its level.
fn find_rule<'r>(
    result: &Map<String, Value>,
    path: &JsonPath<'_>,
    rule_sets: &'r [RuleSet<'_>],
) -> Result<Option<&'r Rule>, FindingsError> {
    let reference_path = path.key("rule");
    let reference = optional_object(result, "rule", path)?;
    let mut index = optional_index(result, "ruleIndex", path)?;
    let mut id = optional_str(result, "ruleId", path)?;
    let mut component = Some(0);
    if let Some(reference) = reference {
        if index.is_none() {
            index = optional_index(reference, "index", &reference_path)?;
        }
        if id.is_none() {
            id = optional_str(reference, "id", &reference_path)?;
        }
        let tool_component_path = reference_path.key("toolComponent");
        if let Some(tool_component) = optional_object(reference, "toolComponent", &reference_path)?
        {
            // Extensions follow the driver in `rule_sets`; a component named only by
            // guid or name is left to the search by id below.
            component = optional_index(tool_component, "index", &tool_component_path)?
                .and_then(|index| index.checked_add(1));
        }
    }
    if let Some(rule_set) = component.and_then(|component| rule_sets.get(component)) {
        if let Some(rule) = index.and_then(|index| rule_set.rules.get(index)) {
            return Ok(Some(rule));
        }
        if let Some(rule) = id.and_then(|id| rule_set.by_id(id)) {
            return Ok(Some(rule));
        }
    }
    Ok(id.and_then(|id| rule_sets.iter().find_map(|rule_set| rule_set.by_id(id))))
}

fn read_level(
    object: &Map<String, Value>,
    path: &JsonPath<'_>,
) -> Result<Option<Level>, FindingsError> {
    let Some(text) = optional_str(object, "level", path)? else {
        return Ok(None);
    };
    Ok(Some(match text {
        "none" => Level::None,
        "note" => Level::Note,
        "warning" => Level::Warning,
        "error" => Level::Error,
        other => {
            return Err(FindingsError::InvalidValue {
                path: path.key("level").render(),
                value: shown(&Value::String(other.to_owned())),
                expected: "one of \"none\", \"note\", \"warning\" or \"error\"",
            });
        }
    }))
}

// ---------------------------------------------------------------------------------
// Typed access to untrusted JSON, with the path kept for the error message.

/// Where a value sits in the document, as a chain of borrowed steps: building it costs
/// nothing, and it is rendered only when an error needs it.
#[derive(Debug, Clone, Copy)]
struct JsonPath<'a> {
    parent: Option<&'a JsonPath<'a>>,
    step: Step<'a>,
}

#[derive(Debug, Clone, Copy)]
enum Step<'a> {
    Root,
    Key(&'a str),
    Index(usize),
}

impl<'a> JsonPath<'a> {
    const ROOT: JsonPath<'static> = JsonPath {
        parent: None,
        step: Step::Root,
    };

    fn key(&'a self, key: &'a str) -> JsonPath<'a> {
        JsonPath {
            parent: Some(self),
            step: Step::Key(key),
        }
    }

    fn index(&'a self, index: usize) -> JsonPath<'a> {
        JsonPath {
            parent: Some(self),
            step: Step::Index(index),
        }
    }

    /// `Results[0].Vulnerabilities[3].Severity`, `rules[2].properties["security-severity"]`.
    fn render(&self) -> String {
        let mut steps = Vec::new();
        let mut at = Some(self);
        while let Some(path) = at {
            steps.push(path.step);
            at = path.parent;
        }
        let mut out = String::new();
        for step in steps.into_iter().rev() {
            // Writing to a String cannot fail.
            let _ = match step {
                Step::Root => Ok(()),
                Step::Key(key) if is_identifier(key) && out.is_empty() => write!(out, "{key}"),
                Step::Key(key) if is_identifier(key) => write!(out, ".{key}"),
                Step::Key(key) => write!(out, "[{}]", Value::String(key.to_owned())),
                Step::Index(index) => write!(out, "[{index}]"),
            };
        }
        if out.is_empty() { "$".to_owned() } else { out }
    }
}

fn is_identifier(key: &str) -> bool {
    let mut chars = key.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '$')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A value as JSON, cut short: it goes into an error message.
fn shown(value: &Value) -> String {
    const LIMIT: usize = 80;
    let text = value.to_string();
    if text.chars().count() <= LIMIT {
        text
    } else {
        text.chars().take(LIMIT).chain("…".chars()).collect()
    }
}

fn wrong_type(path: &JsonPath<'_>, expected: &'static str, found: &Value) -> FindingsError {
    FindingsError::WrongType {
        path: path.render(),
        expected,
        found: kind_of(found),
    }
}

fn missing(path: &JsonPath<'_>) -> FindingsError {
    FindingsError::MissingField {
        path: path.render(),
    }
}

/// Absent and `null` read the same: scanners write either for "nothing here".
fn optional<'v>(object: &'v Map<String, Value>, key: &str) -> Option<&'v Value> {
    object.get(key).filter(|value| !value.is_null())
}

fn as_object<'v>(
    value: &'v Value,
    path: &JsonPath<'_>,
) -> Result<&'v Map<String, Value>, FindingsError> {
    value
        .as_object()
        .ok_or_else(|| wrong_type(path, "an object", value))
}

fn optional_array<'v>(
    object: &'v Map<String, Value>,
    key: &str,
    object_path: &JsonPath<'_>,
) -> Result<&'v [Value], FindingsError> {
    match optional(object, key) {
        None => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(other) => Err(wrong_type(&object_path.key(key), "an array", other)),
    }
}

fn optional_object<'v>(
    object: &'v Map<String, Value>,
    key: &str,
    object_path: &JsonPath<'_>,
) -> Result<Option<&'v Map<String, Value>>, FindingsError> {
    match optional(object, key) {
        None => Ok(None),
        Some(Value::Object(inner)) => Ok(Some(inner)),
        Some(other) => Err(wrong_type(&object_path.key(key), "an object", other)),
    }
}

fn optional_str<'v>(
    object: &'v Map<String, Value>,
    key: &str,
    object_path: &JsonPath<'_>,
) -> Result<Option<&'v str>, FindingsError> {
    match optional(object, key) {
        None => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(other) => Err(wrong_type(&object_path.key(key), "a string", other)),
    }
}

/// An array index; negative means "not given" (SARIF's default for `ruleIndex` is -1).
fn optional_index(
    object: &Map<String, Value>,
    key: &str,
    object_path: &JsonPath<'_>,
) -> Result<Option<usize>, FindingsError> {
    match optional(object, key) {
        None => Ok(None),
        Some(Value::Number(number)) if number.as_i64().is_some_and(|n| n < 0) => Ok(None),
        Some(Value::Number(number)) if number.as_u64().is_some() => {
            Ok(number.as_u64().and_then(|n| usize::try_from(n).ok()))
        }
        Some(other) => Err(wrong_type(&object_path.key(key), "an integer", other)),
    }
}

#[cfg(test)]
#[path = "findings_tests.rs"]
mod tests;
