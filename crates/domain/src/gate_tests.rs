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

/// A small deterministic generator (xorshift64*), so the property tests below need no
/// dependency and every failure reproduces from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const PEOPLE: [&str; 6] = ["ann", "bob", "cat", "dan", "eve", "fay"];
const APPROVING: [Role; 3] = [Role::Staff, Role::Client, Role::Platform];

/// Rules, approvals, the requester and the build's actors.
type RandomCase = (Vec<(Role, u32)>, Vec<ApprovalEvidence>, String, Vec<String>);

fn random_case(rng: &mut Rng) -> RandomCase {
    let mut rules = Vec::new();
    for role in APPROVING {
        if rng.below(2) == 0 {
            rules.push((role, 1 + rng.below(3) as u32));
        }
    }
    let mut approvals = Vec::new();
    for name in PEOPLE {
        if rng.below(3) > 0 {
            let mut roles = Vec::new();
            for role in APPROVING {
                if rng.below(2) == 0 {
                    roles.push(role);
                }
            }
            approvals.push(approval(name, &roles, rng.below(8) == 0));
        }
    }
    let requester = PEOPLE[rng.below(PEOPLE.len() as u64) as usize].to_owned();
    let mut build_actors = Vec::new();
    for name in PEOPLE {
        if rng.below(5) == 0 {
            build_actors.push(name.to_owned());
        }
    }
    (rules, approvals, requester, build_actors)
}

fn met_by_rule(
    rules: &[(Role, u32)],
    approvals: &[ApprovalEvidence],
    requester: &str,
    actors: &[String],
) -> Vec<bool> {
    approvals_of(
        rules,
        Case {
            approvals: approvals.to_vec(),
            requester,
            build_actors: actors.to_vec(),
        },
    )
    .into_iter()
    .map(|(met, _)| met)
    .collect()
}

#[test]
fn approvals_by_the_ineligible_never_count_and_the_eligible_never_hurt() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..3000 {
        let (rules, approvals, requester, actors) = random_case(&mut rng);
        let met = met_by_rule(&rules, &approvals, &requester, &actors);
        // Dropping every approval by the requester, a build actor or a bot changes nothing.
        let eligible: Vec<ApprovalEvidence> = approvals
            .iter()
            .filter(|a| !a.bot && a.approver != requester && !actors.contains(&a.approver))
            .cloned()
            .collect();
        assert_eq!(
            met,
            met_by_rule(&rules, &eligible, &requester, &actors),
            "{rules:?} {approvals:?} {requester} {actors:?}"
        );
        // A rule is met only if enough distinct eligible people hold its role, and all
        // rules together never use one person twice.
        let filled: usize = rules
            .iter()
            .zip(&met)
            .filter(|(_, m)| **m)
            .map(|((_, count), _)| *count as usize)
            .sum();
        assert!(filled <= eligible.len(), "{rules:?} {eligible:?}");
        for ((role, count), met) in rules.iter().zip(&met) {
            let holders = eligible.iter().filter(|a| a.roles.contains(role)).count();
            if *met {
                assert!(
                    holders >= *count as usize,
                    "{role:?} met by {holders} < {count}"
                );
            }
        }
        // One more eligible approval never turns a met rule unmet.
        if let Some(newcomer) = ["gus", "hal"].get(rng.below(2) as usize) {
            let mut more = approvals.clone();
            more.push(approval(
                newcomer,
                &[APPROVING[rng.below(3) as usize]],
                false,
            ));
            let after = met_by_rule(&rules, &more, &requester, &actors);
            for (before, after) in met.iter().zip(&after) {
                assert!(!before || *after, "{rules:?} {more:?}");
            }
        }
        // Whether the gate opens does not depend on the order approvals arrived in (which
        // rule shows a slot filled may, when not all can be).
        let mut shuffled = approvals.clone();
        for i in (1..shuffled.len()).rev() {
            shuffled.swap(i, rng.below(i as u64 + 1) as usize);
        }
        let reordered = met_by_rule(&rules, &shuffled, &requester, &actors);
        assert_eq!(
            met.iter().all(|m| *m),
            reordered.iter().all(|m| *m),
            "order of approvals decides the gate: {rules:?} {approvals:?}"
        );
    }
}

#[test]
fn weekly_freeze_windows_agree_with_the_local_wall_clock_at_random_instants() {
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    let days = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    let zones = [
        "Europe/London",
        "America/New_York",
        "Australia/Sydney",
        "Asia/Kolkata",
        "UTC",
    ];
    for _ in 0..2000 {
        let (from_day, to_day) = (rng.below(7) as usize, rng.below(7) as usize);
        let (from_minute, to_minute) = (rng.below(24 * 60), rng.below(24 * 60));
        let zone = zones[rng.below(zones.len() as u64) as usize];
        let text = format!(
            "{} {:02}:{:02} - {} {:02}:{:02} {zone}",
            days[from_day],
            from_minute / 60,
            from_minute % 60,
            days[to_day],
            to_minute / 60,
            to_minute % 60
        );
        let start = from_day as u64 * 1440 + from_minute;
        let end = to_day as u64 * 1440 + to_minute;
        if start == end {
            continue;
        }
        let parsed = FreezeWindow::parse(&text).expect("valid window");
        // Any instant in 2024–2027, DST changes included.
        let now = Timestamp::from_second(1_704_067_200 + rng.below(4 * 365 * 86_400) as i64)
            .expect("in range");
        let local = now.to_zoned(jiff::tz::TimeZone::get(zone).expect("zone"));
        let minute = local.weekday().to_monday_zero_offset() as u64 * 1440
            + local.hour() as u64 * 60
            + local.minute() as u64;
        let inside = if start < end {
            start <= minute && minute < end
        } else {
            minute >= start || minute < end
        };
        assert_eq!(parsed.contains(now), inside, "{text} at {local}");
    }
}
