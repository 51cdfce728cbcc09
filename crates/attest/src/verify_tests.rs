use super::*;
use domain::Digest;
use serde_json::json;

fn attestation(predicate_type: &str, predicate: Value) -> OpenedAttestation {
    OpenedAttestation {
        manifest_digest: Digest::sha256_of(predicate.to_string().as_bytes()),
        key_id: "k".to_owned(),
        predicate_type: predicate_type.to_owned(),
        payload_digest: Digest::sha256_of(predicate.to_string().as_bytes())
            .hex()
            .to_owned(),
        predicate,
        created: None,
    }
}

/// A deployment's two attestations: its promotion predicate (approved by holders of
/// `roles`) and the summary naming it.
fn deployment(
    application: &str,
    environment: &str,
    passage: Passage,
    at: &str,
    roles: &[&str],
) -> [OpenedAttestation; 2] {
    let promotion = attestation(
        PROMOTION_PREDICATE_TYPE,
        json!({
            "application": application,
            "environment": environment,
            "attestedAt": at,
            "approvals": [{ "approver": "alice", "roles": roles }],
        }),
    );
    let (levels, result) = levels(application, environment, passage);
    let summary = attestation(
        VSA_PREDICATE_TYPE,
        json!({
            "verifiedLevels": levels,
            "verificationResult": result,
            "timeVerified": at,
            "inputAttestations": [{ "uri": "deployment", "digest": { "sha256": promotion.payload_digest } }],
        }),
    );
    [summary, promotion]
}

fn asking(environment: &str) -> Requirements {
    Requirements {
        environment: environment.to_owned(),
        now_millis: "2026-12-05T12:00:00Z"
            .parse::<jiff::Timestamp>()
            .expect("time")
            .as_millisecond(),
        ..Requirements::default()
    }
}

const AT: &str = "2026-12-05T10:00:00Z";

#[test]
fn a_summary_of_passed_gates_for_the_environment_is_accepted_with_its_own_promotion() {
    let opened = deployment("web", "prod", Passage::Gated, AT, &["sre"]);
    let accepted = judge(&opened, &asking("prod")).expect("accepted");
    assert_eq!(accepted.summary, opened[0]);
    assert_eq!(accepted.promotion.as_ref(), Some(&opened[1]));
}

#[test]
fn a_summary_for_another_environment_or_application_is_refused() {
    let opened = deployment("web", "staging", Passage::Gated, AT, &[]);
    let reasons = judge(&opened, &asking("prod")).expect_err("refused");
    assert!(reasons[0].contains("not prod"), "{reasons:?}");
    assert!(judge(&[], &asking("prod")).is_err());
    // Environments are per application: another application's prod does not count.
    let other = deployment("sandbox", "prod", Passage::Gated, AT, &[]);
    let for_web = Requirements {
        application: Some("web".to_owned()),
        ..asking("prod")
    };
    let reasons = judge(&other, &for_web).expect_err("refused");
    assert!(reasons[0].contains("of sandbox, not of web"), "{reasons:?}");
    let for_sandbox = Requirements {
        application: Some("sandbox".to_owned()),
        ..asking("prod")
    };
    assert!(judge(&other, &for_sandbox).is_ok());
}

#[test]
fn an_overridden_gate_is_refused_unless_overrides_are_allowed() {
    let opened = deployment("web", "prod", Passage::Overridden, AT, &[]);
    let reasons = judge(&opened, &asking("prod")).expect_err("refused");
    assert!(reasons[0].contains("overrode"), "{reasons:?}");
    let allowing = Requirements {
        allow_override: true,
        ..asking("prod")
    };
    assert!(judge(&opened, &allowing).is_ok());
    // A rollback's own summary does not say the gates passed.
    let rolled_back = deployment("web", "prod", Passage::RolledBack, AT, &[]);
    assert!(judge(&rolled_back, &asking("prod")).is_err());
}

#[test]
fn freshness_and_roles_are_checked_when_asked() {
    let opened = deployment("web", "prod", Passage::Gated, AT, &["sre"]);
    let fresh = Requirements {
        max_age_millis: Some(3 * 3_600_000),
        ..asking("prod")
    };
    assert!(judge(&opened, &fresh).is_ok());
    let stale = Requirements {
        max_age_millis: Some(3_600_000),
        ..asking("prod")
    };
    let reasons = judge(&opened, &stale).expect_err("too old");
    assert!(reasons[0].contains("7200 s ago"), "{reasons:?}");
    let roles = Requirements {
        roles: vec!["sre".to_owned(), "security".to_owned()],
        ..asking("prod")
    };
    let reasons = judge(&opened, &roles).expect_err("a role is missing");
    assert!(reasons[0].ends_with("holds security"), "{reasons:?}");
    let held = Requirements {
        roles: vec!["sre".to_owned()],
        ..asking("prod")
    };
    assert!(judge(&opened, &held).is_ok());
}

#[test]
fn roles_are_read_from_the_promotion_of_the_same_deployment_only() {
    // An older gated deployment nobody with `sre` approved, and a newer overridden one
    // an `sre` approved: the gated summary is judged by its own promotion.
    let gated = deployment(
        "web",
        "prod",
        Passage::Gated,
        "2026-12-05T09:00:00Z",
        &["staff"],
    );
    let overridden = deployment("web", "prod", Passage::Overridden, AT, &["sre"]);
    let opened = [
        gated[0].clone(),
        gated[1].clone(),
        overridden[0].clone(),
        overridden[1].clone(),
    ];
    let roles = Requirements {
        roles: vec!["sre".to_owned()],
        ..asking("prod")
    };
    let reasons = judge(&opened, &roles).expect_err("sre approved only the overridden one");
    assert!(
        reasons.iter().any(|r| r.ends_with("holds sre")),
        "{reasons:?}"
    );
    let accepted = judge(&opened, &asking("prod")).expect("the gated one");
    assert_eq!(accepted.promotion.as_ref(), Some(&gated[1]));
    // A summary naming no promotion attestation has no approvers to hold a role.
    let mut alone = gated[0].clone();
    alone.predicate["inputAttestations"] = json!([]);
    assert!(judge(&[alone.clone(), gated[1].clone()], &roles).is_err());
    assert_eq!(
        judge(&[alone, gated[1].clone()], &asking("prod"))
            .expect("accepted")
            .promotion,
        None
    );
}
