//! Table tests for gate evaluation: order, soak, freeze windows across time zones and
//! daylight saving, checks with thresholds, and approvals by distinct eligible people.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jiff::Timestamp;

use super::*;
use crate::pipeline::{ApprovalRule, CheckName, Gate, RequiredCheck, Role, Severity};

fn at(text: &str) -> Timestamp {
    text.parse()
        .unwrap_or_else(|e| panic!("timestamp {text}: {e}"))
}

fn window(text: &str) -> FreezeWindow {
    FreezeWindow::parse(text).unwrap_or_else(|e| panic!("{e}"))
}

fn check_freeze(window_text: &str, now: &str, frozen: bool) {
    assert_eq!(
        window(window_text).contains(at(now)),
        frozen,
        "{window_text} at {now}"
    );
}

#[test]
fn weekly_freeze_windows_follow_the_wall_clock_of_their_zone() {
    let weekend = "Fri 16:00 - Mon 08:00 Europe/London";
    // Winter: London is UTC+0.
    check_freeze(weekend, "2026-01-16T15:59:00Z", false); // Fri 15:59 GMT
    check_freeze(weekend, "2026-01-16T16:00:00Z", true); // Fri 16:00 GMT
    check_freeze(weekend, "2026-01-18T12:00:00Z", true); // Sun
    check_freeze(weekend, "2026-01-19T07:59:00Z", true); // Mon 07:59
    check_freeze(weekend, "2026-01-19T08:00:00Z", false); // Mon 08:00: end is exclusive
    check_freeze(weekend, "2026-01-21T12:00:00Z", false); // Wed
    // Summer: London is UTC+1, so the same instant is an hour later on the wall.
    check_freeze(weekend, "2026-07-17T15:30:00Z", true); // Fri 16:30 BST
    check_freeze(weekend, "2026-01-16T15:30:00Z", false); // Fri 15:30 GMT
    check_freeze(weekend, "2026-07-20T07:30:00Z", false); // Mon 08:30 BST
    // A window that does not wrap the week.
    check_freeze(
        "Wed 09:00 - Wed 17:00 America/New_York",
        "2026-01-21T14:00:00Z",
        true,
    ); // 09:00 EST
    check_freeze(
        "Wed 09:00 - Wed 17:00 America/New_York",
        "2026-01-21T13:59:00Z",
        false,
    );
    check_freeze(
        "Wed 09:00 - Wed 17:00 America/New_York",
        "2026-07-22T13:00:00Z",
        true,
    ); // 09:00 EDT
}

#[test]
fn freeze_windows_hold_across_daylight_saving_changes() {
    // London springs forward on 2026-03-29 at 01:00 UTC (01:00 GMT becomes 02:00 BST).
    let night = "Sun 00:30 - Sun 03:00 Europe/London";
    check_freeze(night, "2026-03-29T00:45:00Z", true); // 00:45 GMT
    check_freeze(night, "2026-03-29T01:30:00Z", true); // 02:30 BST
    check_freeze(night, "2026-03-29T02:00:00Z", false); // 03:00 BST
    // It falls back on 2026-10-25 at 01:00 UTC (02:00 BST becomes 01:00 GMT): the
    // repeated hour is inside the window both times.
    check_freeze(night, "2026-10-25T00:15:00Z", true); // 01:15 BST
    check_freeze(night, "2026-10-25T01:15:00Z", true); // 01:15 GMT
    check_freeze(night, "2026-10-25T02:59:00Z", true); // 02:59 GMT
    check_freeze(night, "2026-10-25T03:00:00Z", false); // 03:00 GMT
}

#[test]
fn one_off_freeze_windows_are_resolved_in_their_zone() {
    let holidays = "2026-12-24T00:00 - 2026-12-27T08:00 Europe/Berlin";
    check_freeze(holidays, "2026-12-23T22:59:00Z", false); // 23:59 CET
    check_freeze(holidays, "2026-12-23T23:00:00Z", true); // 00:00 CET
    check_freeze(holidays, "2026-12-27T06:59:00Z", true);
    check_freeze(holidays, "2026-12-27T07:00:00Z", false);
}

#[test]
fn malformed_freeze_windows_are_refused_with_the_reason() {
    for (text, reason) in [
        ("Fri 16:00 Mon 08:00 Europe/London", "FROM - TO"),
        ("Fri 16:00 - Mon 08:00 Mars/Olympus", "unknown time zone"),
        ("Fry 16:00 - Mon 08:00 UTC", "weekday"),
        ("Fri 25:00 - Mon 08:00 UTC", "HH:MM"),
        ("Fri 16:00 - Fri 16:00 UTC", "empty"),
        ("2026-12-27T00:00 - 2026-12-24T00:00 UTC", "ends before"),
        ("2026-13-01T00:00 - 2026-12-24T00:00 UTC", "YYYY-MM-DD"),
        ("Fri 16:00 - 2026-12-24T00:00 UTC", "expected"),
    ] {
        let error = FreezeWindow::parse(text).expect_err(text).to_string();
        assert!(error.contains(reason), "{text}: {error}");
    }
}

fn approval(name: &str, roles: &[Role], bot: bool) -> ApprovalEvidence {
    ApprovalEvidence {
        approver: name.to_owned(),
        roles: roles.iter().copied().collect::<BTreeSet<_>>(),
        bot,
    }
}

fn report(name: &str, passed: bool, findings: &[(Severity, u64)], flapping: bool) -> CheckEvidence {
    CheckEvidence {
        name: CheckName::parse(name).expect("valid"),
        passed,
        findings: findings.iter().copied().collect(),
        flapping,
    }
}

fn gate(approvals: &[(Role, u32)]) -> Gate {
    Gate {
        approvals: approvals
            .iter()
            .map(|&(role, count)| ApprovalRule { role, count })
            .collect(),
        ..Gate::default()
    }
}

struct Case<'a> {
    approvals: Vec<ApprovalEvidence>,
    requester: &'a str,
    build_actors: Vec<String>,
}

/// Evaluates the approval conditions of `rules` and returns (met, reason) per rule.
fn approvals_of(rules: &[(Role, u32)], case: Case<'_>) -> Vec<(bool, String)> {
    let evidence = Evidence {
        now: at("2026-06-01T12:00:00Z"),
        requester: case.requester,
        build_actors: &case.build_actors,
        previous: PreviousStage::None,
        checks: &[],
        approvals: &case.approvals,
    };
    evaluate(&gate(rules), &evidence)
        .into_iter()
        .filter(|c| matches!(c.kind, ConditionKind::Approval(_)))
        .map(|c| (c.met, c.reason))
        .collect()
}

#[test]
fn approvals_need_distinct_eligible_people_per_role() {
    use Role::*;
    let none = Vec::new;
    // Two distinct staff approvals satisfy a rule of two.
    let got = approvals_of(
        &[(Staff, 2)],
        Case {
            approvals: vec![
                approval("ann", &[Staff], false),
                approval("bob", &[Staff], false),
            ],
            requester: "req",
            build_actors: none(),
        },
    );
    assert!(got[0].0, "{got:?}");
    // The same person twice counts once.
    let got = approvals_of(
        &[(Staff, 2)],
        Case {
            approvals: vec![
                approval("ann", &[Staff], false),
                approval("ann", &[Staff], false),
            ],
            requester: "req",
            build_actors: none(),
        },
    );
    assert!(!got[0].0 && got[0].1.starts_with("1 of 2"), "{got:?}");
    // A role the approver lacks does not count.
    let got = approvals_of(
        &[(Client, 1)],
        Case {
            approvals: vec![approval("ann", &[Staff], false)],
            requester: "req",
            build_actors: none(),
        },
    );
    assert!(!got[0].0, "{got:?}");
}

#[test]
fn nobody_approves_their_own_promotion_their_own_build_or_as_a_bot() {
    use Role::*;
    for (case, why) in [
        (
            Case {
                approvals: vec![approval("req", &[Staff], false)],
                requester: "req",
                build_actors: vec![],
            },
            "own promotion",
        ),
        (
            Case {
                approvals: vec![approval("dev", &[Staff], false)],
                requester: "req",
                build_actors: vec!["dev".into()],
            },
            "triggered or committed",
        ),
        (
            Case {
                approvals: vec![approval("ci-bot", &[Staff], true)],
                requester: "req",
                build_actors: vec![],
            },
            "CI identity",
        ),
    ] {
        let got = approvals_of(&[(Staff, 1)], case);
        assert!(!got[0].0, "{got:?}");
        assert!(got[0].1.contains(why), "{got:?}");
    }
}

#[test]
fn one_person_with_two_roles_fills_only_one_rule() {
    use Role::*;
    let rules = [(Staff, 1), (Client, 1)];
    let got = approvals_of(
        &rules,
        Case {
            approvals: vec![approval("both", &[Staff, Client], false)],
            requester: "req",
            build_actors: vec![],
        },
    );
    assert_eq!(got.iter().filter(|(met, _)| *met).count(), 1, "{got:?}");
    // With a second, staff-only approver the matching moves the dual-role person to
    // the client rule, whatever order the approvals arrived in.
    for approvals in [
        vec![
            approval("both", &[Staff, Client], false),
            approval("sam", &[Staff], false),
        ],
        vec![
            approval("sam", &[Staff], false),
            approval("both", &[Staff, Client], false),
        ],
    ] {
        let got = approvals_of(
            &rules,
            Case {
                approvals,
                requester: "req",
                build_actors: vec![],
            },
        );
        assert!(got.iter().all(|(met, _)| *met), "{got:?}");
    }
}

fn single(gate: &Gate, evidence: &Evidence<'_>, kind: &ConditionKind) -> Condition {
    evaluate(gate, evidence)
        .into_iter()
        .find(|c| &c.kind == kind)
        .unwrap_or_else(|| panic!("no {kind:?} condition"))
}

#[test]
fn order_and_soak_look_at_the_previous_stage() {
    let soaking = Gate {
        soak: Some(Duration::from_secs(30 * 60)),
        ..Gate::default()
    };
    let now = at("2026-06-01T12:00:00Z");
    let evidence = |previous| Evidence {
        now,
        requester: "req",
        build_actors: &[],
        previous,
        checks: &[],
        approvals: &[],
    };
    for (previous, order_met, soak_met) in [
        (PreviousStage::None, true, true),
        (PreviousStage::NotDeployed, false, false),
        (
            PreviousStage::DeployedAt(at("2026-06-01T11:31:00Z")),
            true,
            false,
        ),
        (
            PreviousStage::DeployedAt(at("2026-06-01T11:30:00Z")),
            true,
            true,
        ),
    ] {
        let e = evidence(previous);
        assert_eq!(
            single(&soaking, &e, &ConditionKind::Order).met,
            order_met,
            "{previous:?}"
        );
        let soak = single(&soaking, &e, &ConditionKind::Soak);
        assert_eq!(soak.met, soak_met, "{previous:?}: {}", soak.reason);
    }
}

#[test]
fn checks_must_have_passed_within_their_thresholds_and_not_flap() {
    let trivy = CheckName::parse("trivy").expect("valid");
    let gate = Gate {
        checks: vec![RequiredCheck {
            name: trivy.clone(),
            max: BTreeMap::from([(Severity::Critical, 0), (Severity::High, 0)]),
        }],
        ..Gate::default()
    };
    let kind = ConditionKind::Check(trivy);
    for (reports, met, reason) in [
        (vec![], false, "no report"),
        (vec![report("trivy", false, &[], false)], false, "failed"),
        (
            vec![report("trivy", true, &[(Severity::High, 1)], false)],
            false,
            "1 high (max 0)",
        ),
        (
            vec![report("trivy", true, &[(Severity::Medium, 9)], false)],
            true,
            "passed",
        ),
        (vec![report("trivy", true, &[], true)], false, "flaky"),
        (vec![report("other", true, &[], false)], false, "no report"),
    ] {
        let evidence = Evidence {
            now: at("2026-06-01T12:00:00Z"),
            requester: "r",
            build_actors: &[],
            previous: PreviousStage::None,
            checks: &reports,
            approvals: &[],
        };
        let condition = single(&gate, &evidence, &kind);
        assert_eq!(condition.met, met, "{reports:?}: {}", condition.reason);
        assert!(
            condition.reason.contains(reason),
            "{reports:?}: {}",
            condition.reason
        );
    }
}

#[test]
fn every_condition_is_reported_and_the_gate_opens_only_when_all_are_met() {
    let gate = Gate {
        checks: vec![RequiredCheck {
            name: CheckName::parse("e2e").expect("valid"),
            max: BTreeMap::new(),
        }],
        approvals: vec![ApprovalRule {
            role: Role::Staff,
            count: 1,
        }],
        soak: Some(Duration::from_secs(60)),
        freeze: vec![window("Sat 00:00 - Mon 00:00 UTC")],
    };
    let reports = [report("e2e", true, &[], false)];
    let approvals = [approval("ann", &[Role::Staff], false)];
    let monday = Evidence {
        now: at("2026-06-01T12:00:00Z"),
        requester: "req",
        build_actors: &[],
        previous: PreviousStage::DeployedAt(at("2026-06-01T11:00:00Z")),
        checks: &reports,
        approvals: &approvals,
    };
    let conditions = evaluate(&gate, &monday);
    assert_eq!(
        conditions.len(),
        5,
        "order, soak, freeze, one check, one approval rule"
    );
    assert!(is_open(&conditions), "{conditions:?}");
    let saturday = Evidence {
        now: at("2026-06-06T12:00:00Z"),
        ..monday.clone()
    };
    let conditions = evaluate(&gate, &saturday);
    assert!(!is_open(&conditions));
    assert_eq!(
        conditions.iter().filter(|c| !c.met).count(),
        1,
        "only the freeze fails: {conditions:?}"
    );
}
