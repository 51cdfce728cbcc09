use super::*;
use domain::Digest;
use serde_json::json;

fn attestation(predicate_type: &str, predicate: Value) -> OpenedAttestation {
    OpenedAttestation {
        manifest_digest: Digest::sha256_of(predicate.to_string().as_bytes()),
        key_id: "k".to_owned(),
        predicate_type: predicate_type.to_owned(),
        predicate,
        created: None,
    }
}

fn summary(environment: &str, passage: Passage, at: &str) -> OpenedAttestation {
    let (levels, result) = levels(environment, passage);
    attestation(
        VSA_PREDICATE_TYPE,
        json!({ "verifiedLevels": levels, "verificationResult": result, "timeVerified": at }),
    )
}

fn promotion(environment: &str, roles: &[&str]) -> OpenedAttestation {
    attestation(
        PROMOTION_PREDICATE_TYPE,
        json!({
            "environment": environment,
            "attestedAt": "2026-12-05T10:00:00Z",
            "approvals": [{ "approver": "alice", "roles": roles }],
        }),
    )
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

#[test]
fn a_summary_of_passed_gates_for_the_environment_is_accepted() {
    let opened = [
        summary("prod", Passage::Gated, "2026-12-05T10:00:00Z"),
        promotion("prod", &["sre"]),
    ];
    let accepted = judge(&opened, &asking("prod")).expect("accepted");
    assert_eq!(accepted.summary, opened[0]);
    assert_eq!(accepted.promotion.as_ref(), Some(&opened[1]));
}

#[test]
fn a_summary_for_another_environment_is_refused() {
    let opened = [summary("staging", Passage::Gated, "2026-12-05T10:00:00Z")];
    let reasons = judge(&opened, &asking("prod")).expect_err("refused");
    assert!(reasons[0].contains("not prod"), "{reasons:?}");
    assert!(judge(&[], &asking("prod")).is_err());
}

#[test]
fn an_overridden_gate_is_refused_unless_overrides_are_allowed() {
    let opened = [summary("prod", Passage::Overridden, "2026-12-05T10:00:00Z")];
    let reasons = judge(&opened, &asking("prod")).expect_err("refused");
    assert!(reasons[0].contains("overrode"), "{reasons:?}");
    let allowing = Requirements {
        allow_override: true,
        ..asking("prod")
    };
    assert!(judge(&opened, &allowing).is_ok());
    // A rollback's own summary does not say the gates passed.
    let rolled_back = [summary("prod", Passage::RolledBack, "2026-12-05T10:00:00Z")];
    assert!(judge(&rolled_back, &asking("prod")).is_err());
}

#[test]
fn freshness_and_roles_are_checked_when_asked() {
    let opened = [
        summary("prod", Passage::Gated, "2026-12-05T10:00:00Z"),
        promotion("prod", &["sre"]),
    ];
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
