//! What `gantry verify` and admission accept: among an image's attestations that
//! opened (signature and subject hold, see [`crate::referrer::open`]), a Verification
//! Summary for the environment asked about (of the application asked about, when one
//! is named) whose result is `PASSED` and whose verified levels say its gates passed
//! there, fresh enough, and, when roles are required, the promotion attestation the
//! summary names in its `inputAttestations` (the same deployment's) whose approvals
//! hold them.
//!
//! The levels a deployment's summary carries ([`levels`]): `GANTRY_APPLICATION_{app}`
//! and `GANTRY_DEPLOYED_{env}` always; `GANTRY_GATES_PASSED_{env}` when a promotion's
//! gate passed; `GANTRY_GATES_OVERRIDDEN_{env}` when an admin let it past a shut gate
//! (the result is then `FAILED`, accepted only when overrides are allowed);
//! `GANTRY_ROLLED_BACK_{env}` for a rollback onto an earlier deployment (not accepted
//! by itself: the digest's own gated summary for the environment is).

use serde_json::Value;

use crate::referrer::{OpenedAttestation, PROMOTION_PREDICATE_TYPE, VSA_PREDICATE_TYPE};

/// How a deployment reached its environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Passage {
    /// Through a promotion whose gate passed.
    Gated,
    /// Through a promotion an admin let past its gate (break-glass).
    Overridden,
    /// A rollback onto an earlier deployment.
    RolledBack,
}

/// The verified levels and the result a summary of a deployment of `application` to
/// `environment` carries.
pub fn levels(
    application: &str,
    environment: &str,
    passage: Passage,
) -> (Vec<String>, &'static str) {
    let mut levels = vec![
        format!("GANTRY_APPLICATION_{application}"),
        format!("GANTRY_DEPLOYED_{environment}"),
    ];
    let (level, result) = match passage {
        Passage::Gated => (format!("GANTRY_GATES_PASSED_{environment}"), "PASSED"),
        Passage::Overridden => (format!("GANTRY_GATES_OVERRIDDEN_{environment}"), "FAILED"),
        Passage::RolledBack => (format!("GANTRY_ROLLED_BACK_{environment}"), "PASSED"),
    };
    levels.push(level);
    (levels, result)
}

/// What a verification asks for.
#[derive(Debug, Clone, Default)]
pub struct Requirements {
    pub environment: String,
    /// The application the deployment must be of (environments are per application).
    pub application: Option<String>,
    /// The summary must be at most this old (milliseconds) at `now_millis`.
    pub max_age_millis: Option<i64>,
    pub now_millis: i64,
    /// Each role must be held by an approver of the promotion.
    pub roles: Vec<String>,
    /// Accept a deployment an admin let past its gate.
    pub allow_override: bool,
}

/// What was accepted: the summary, and the promotion attestation of the same
/// environment (the custody chain) when there is one.
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    pub summary: OpenedAttestation,
    pub promotion: Option<OpenedAttestation>,
}

/// Judges the opened attestations against `requirements`; the reasons each candidate
/// fell short when none is accepted.
pub fn judge(
    opened: &[OpenedAttestation],
    requirements: &Requirements,
) -> Result<Accepted, Vec<String>> {
    let environment = requirements.environment.as_str();
    let mut reasons = Vec::new();
    let promotions: Vec<&OpenedAttestation> = opened
        .iter()
        .filter(|attestation| {
            attestation.predicate_type == PROMOTION_PREDICATE_TYPE
                && attestation
                    .predicate
                    .get("environment")
                    .and_then(Value::as_str)
                    == Some(environment)
        })
        .collect();
    let mut summaries: Vec<&OpenedAttestation> = opened
        .iter()
        .filter(|attestation| attestation.predicate_type == VSA_PREDICATE_TYPE)
        .collect();
    summaries.sort_by_key(|attestation| std::cmp::Reverse(time_of(attestation, "timeVerified")));
    for summary in summaries {
        let predicate = &summary.predicate;
        let levels: Vec<&str> = predicate
            .get("verifiedLevels")
            .and_then(Value::as_array)
            .map(|levels| levels.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let result = predicate
            .get("verificationResult")
            .and_then(Value::as_str)
            .unwrap_or("");
        if let Some(application) = &requirements.application {
            let named = format!("GANTRY_APPLICATION_{application}");
            if !levels.contains(&named.as_str()) {
                let of = levels
                    .iter()
                    .find_map(|level| level.strip_prefix("GANTRY_APPLICATION_"))
                    .unwrap_or("no application");
                reasons.push(format!(
                    "{}: it attests a deployment of {of}, not of {application}",
                    summary.manifest_digest
                ));
                continue;
            }
        }
        let passed = format!("GANTRY_GATES_PASSED_{environment}");
        let overridden = format!("GANTRY_GATES_OVERRIDDEN_{environment}");
        let gated = result == "PASSED" && levels.contains(&passed.as_str());
        let let_past = requirements.allow_override && levels.contains(&overridden.as_str());
        if !gated && !let_past {
            if levels.contains(&overridden.as_str()) {
                reasons.push(format!(
                    "{}: an admin overrode the gate of {environment} (allow with --allow-override)",
                    summary.manifest_digest
                ));
            } else if levels
                .iter()
                .any(|level| level.starts_with("GANTRY_DEPLOYED_"))
                && !levels.contains(&format!("GANTRY_DEPLOYED_{environment}").as_str())
            {
                reasons.push(format!(
                    "{}: it attests {}, not {environment}",
                    summary.manifest_digest,
                    levels.join(", ")
                ));
            } else if !levels.contains(&passed.as_str()) {
                reasons.push(format!(
                    "{}: it does not say the gates of {environment} passed (levels {}, result {result})",
                    summary.manifest_digest,
                    levels.join(", ")
                ));
            } else {
                reasons.push(format!(
                    "{}: its result is {result}",
                    summary.manifest_digest
                ));
            }
            continue;
        }
        if let Some(max_age) = requirements.max_age_millis {
            match time_of(summary, "timeVerified") {
                Some(at) if requirements.now_millis - at <= max_age => {}
                Some(at) => {
                    reasons.push(format!(
                        "{}: it was made {} s ago, more than the {} s allowed",
                        summary.manifest_digest,
                        (requirements.now_millis - at) / 1000,
                        max_age / 1000
                    ));
                    continue;
                }
                None => {
                    reasons.push(format!(
                        "{}: it has no readable timeVerified",
                        summary.manifest_digest
                    ));
                    continue;
                }
            }
        }
        // The promotion attestation of the same deployment: the one the summary names.
        let named: Vec<&str> = predicate
            .get("inputAttestations")
            .and_then(Value::as_array)
            .map(|inputs| {
                inputs
                    .iter()
                    .filter_map(|input| input.get("digest")?.get("sha256")?.as_str())
                    .collect()
            })
            .unwrap_or_default();
        let promotion = promotions
            .iter()
            .copied()
            .find(|promotion| named.contains(&promotion.payload_digest.as_str()));
        if !requirements.roles.is_empty() {
            let held: Vec<String> = promotion
                .and_then(|promotion| promotion.predicate.get("approvals"))
                .and_then(Value::as_array)
                .map(|approvals| {
                    approvals
                        .iter()
                        .filter_map(|approval| approval.get("roles")?.as_array())
                        .flatten()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            let missing: Vec<&String> = requirements
                .roles
                .iter()
                .filter(|role| !held.contains(role))
                .collect();
            if !missing.is_empty() {
                reasons.push(format!(
                    "{}: no approver of its promotion holds {}",
                    summary.manifest_digest,
                    missing
                        .iter()
                        .map(|role| role.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
                continue;
            }
        }
        return Ok(Accepted {
            summary: summary.clone(),
            promotion: promotion.cloned(),
        });
    }
    if reasons.is_empty() {
        reasons.push(format!(
            "no signed verification summary for {environment} was found"
        ));
    }
    Err(reasons)
}

/// A predicate's RFC 3339 time field, in milliseconds since the epoch.
pub fn time_of(attestation: &OpenedAttestation, field: &str) -> Option<i64> {
    let text = attestation.predicate.get(field)?.as_str()?;
    let at: jiff::Timestamp = text.parse().ok()?;
    Some(at.as_millisecond())
}

#[cfg(test)]
#[path = "verify_tests.rs"]
mod tests;
