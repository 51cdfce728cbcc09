//! Table tests for the DORA metrics: frequency, lead time, change failures, rollbacks
//! and time to restore over a one-week window, with histories kept apart by
//! application and environment and results independent of the input order.

use jiff::{SignedDuration, Timestamp};

use super::*;

/// The window every table uses: Monday 2 March to Monday 9 March 2026, seven days.
fn since() -> Timestamp {
    march(2, "00:00")
}

fn until() -> Timestamp {
    march(9, "00:00")
}

fn march(day: u8, time: &str) -> Timestamp {
    let text = format!("2026-03-{day:02}T{time}:00Z");
    text.parse()
        .unwrap_or_else(|e| panic!("timestamp {text}: {e}"))
}

fn hours(count: i64) -> SignedDuration {
    SignedDuration::from_hours(count)
}

fn minutes(count: i64) -> SignedDuration {
    SignedDuration::from_mins(count)
}

/// A record for `target`, written `application/environment`.
fn record(
    target: &str,
    reason: DeploymentReason,
    outcome: DeploymentOutcome,
    finished_at: Timestamp,
) -> DeploymentRecord {
    let (application, environment) = target
        .split_once('/')
        .unwrap_or_else(|| panic!("target {target} is not application/environment"));
    DeploymentRecord {
        application: application.to_owned(),
        environment: environment.to_owned(),
        digest: format!("sha256:{}", finished_at.as_second()),
        reason,
        outcome,
        finished_at,
        committed_at: None,
    }
}

fn promoted(target: &str, finished_at: Timestamp) -> DeploymentRecord {
    record(
        target,
        DeploymentReason::Promotion,
        DeploymentOutcome::Succeeded,
        finished_at,
    )
}

/// A successful promotion of a change committed at `committed_at`.
fn shipped(target: &str, committed_at: Timestamp, finished_at: Timestamp) -> DeploymentRecord {
    DeploymentRecord {
        committed_at: Some(committed_at),
        ..promoted(target, finished_at)
    }
}

fn failed(target: &str, finished_at: Timestamp) -> DeploymentRecord {
    record(
        target,
        DeploymentReason::Promotion,
        DeploymentOutcome::Failed,
        finished_at,
    )
}

fn rolled_back(target: &str, finished_at: Timestamp) -> DeploymentRecord {
    record(
        target,
        DeploymentReason::Rollback,
        DeploymentOutcome::Succeeded,
        finished_at,
    )
}

fn failed_rollback(target: &str, finished_at: Timestamp) -> DeploymentRecord {
    record(
        target,
        DeploymentReason::Rollback,
        DeploymentOutcome::Failed,
        finished_at,
    )
}

/// The metrics of a window in which nothing happened; tables override what they expect.
fn nothing() -> DoraMetrics {
    DoraMetrics {
        deployments: 0,
        deployments_per_day: 0.0,
        lead_time_median: None,
        lead_time_p90: None,
        change_failure_rate: None,
        time_to_restore_median: None,
        failures: 0,
        rollbacks: 0,
    }
}

/// Checks the metrics of `records` over the week, given forwards and backwards.
fn check(records: &[DeploymentRecord], expected: DoraMetrics) {
    assert_eq!(
        compute(records, since(), until()),
        expected,
        "records: {records:#?}"
    );
    let reversed: Vec<DeploymentRecord> = records.iter().rev().cloned().collect();
    assert_eq!(
        compute(&reversed, since(), until()),
        expected,
        "reversed records: {reversed:#?}"
    );
}

#[test]
fn empty_input_has_no_deployments_and_no_rates() {
    check(&[], nothing());
}

#[test]
fn deployment_frequency_counts_successful_promotions_per_day_of_the_window() {
    let one_a_day: Vec<DeploymentRecord> = (2..9)
        .map(|day| promoted("shop/prod", march(day, "10:00")))
        .collect();
    check(
        &one_a_day,
        DoraMetrics {
            deployments: 7,
            deployments_per_day: 1.0,
            change_failure_rate: Some(0.0),
            ..nothing()
        },
    );
    check(
        &[
            promoted("shop/prod", march(2, "10:00")),
            promoted("shop/prod", march(4, "10:00")),
            promoted("shop/prod", march(6, "10:00")),
        ],
        DoraMetrics {
            deployments: 3,
            deployments_per_day: 3.0 / 7.0,
            change_failure_rate: Some(0.0),
            ..nothing()
        },
    );
}

#[test]
fn deployment_frequency_survives_an_empty_or_inverted_window() {
    let records = [promoted("shop/prod", since())];
    for (until, expected_per_day) in [
        (since(), 0.0),
        (march(1, "00:00"), 0.0),
        (since() + SignedDuration::from_secs(1), 86_400.0),
    ] {
        let metrics = compute(&records, since(), until);
        assert!(
            (metrics.deployments_per_day - expected_per_day).abs() < 1e-6,
            "until {until}: {metrics:?}"
        );
    }
}

/// Checks lead times: one successful deployment per entry, with a lead of that many
/// hours, or no known commit time for `None`.
fn check_lead_times(leads: &[Option<i64>], median: Option<i64>, p90: Option<i64>) {
    let records: Vec<DeploymentRecord> = leads
        .iter()
        .enumerate()
        .map(|(index, lead)| {
            let offset = i64::try_from(index).unwrap_or_else(|e| panic!("{e}"));
            let finished_at = march(3, "00:00") + hours(offset);
            match lead {
                Some(lead) => shipped("shop/prod", finished_at - hours(*lead), finished_at),
                None => promoted("shop/prod", finished_at),
            }
        })
        .collect();
    let metrics = compute(&records, since(), until());
    assert_eq!(
        (metrics.lead_time_median, metrics.lead_time_p90),
        (median.map(hours), p90.map(hours)),
        "leads {leads:?}"
    );
    assert_eq!(
        metrics.deployments,
        u64::try_from(leads.len()).unwrap_or_else(|e| panic!("{e}"))
    );
}

#[test]
fn lead_time_median_takes_the_lower_middle_and_p90_the_nearest_rank() {
    check_lead_times(&[], None, None);
    check_lead_times(&[Some(5)], Some(5), Some(5));
    check_lead_times(&[Some(9), Some(1)], Some(1), Some(9));
    check_lead_times(&[Some(4), Some(1), Some(3), Some(2)], Some(2), Some(4));
    check_lead_times(&[Some(3), Some(1), Some(2)], Some(2), Some(3));
    let one_to_ten: Vec<Option<i64>> = (1..=10).rev().map(Some).collect();
    check_lead_times(&one_to_ten, Some(5), Some(9));
    let one_to_eleven: Vec<Option<i64>> = (1..=11).map(Some).collect();
    check_lead_times(&one_to_eleven, Some(6), Some(10));
    let one_to_twenty: Vec<Option<i64>> = (1..=20).map(Some).collect();
    check_lead_times(&one_to_twenty, Some(10), Some(18));
}

#[test]
fn lead_time_ignores_deployments_without_a_known_commit_time() {
    check_lead_times(&[None, None], None, None);
    check_lead_times(&[Some(3), None, Some(1)], Some(1), Some(3));
    check_lead_times(&[None, Some(7), None], Some(7), Some(7));
}

#[test]
fn lead_time_counts_only_successful_promotions() {
    check(
        &[
            shipped("shop/prod", march(2, "08:00"), march(2, "10:00")),
            DeploymentRecord {
                committed_at: Some(march(2, "00:00")),
                ..failed("shop/prod", march(3, "10:00"))
            },
            DeploymentRecord {
                committed_at: Some(march(2, "00:00")),
                ..rolled_back("shop/prod", march(3, "11:00"))
            },
        ],
        DoraMetrics {
            deployments: 1,
            deployments_per_day: 1.0 / 7.0,
            lead_time_median: Some(hours(2)),
            lead_time_p90: Some(hours(2)),
            change_failure_rate: Some(0.5),
            time_to_restore_median: Some(hours(1)),
            failures: 1,
            rollbacks: 1,
        },
    );
}

#[test]
fn failed_promotions_are_failures_but_not_deployments() {
    check(
        &[
            promoted("shop/prod", march(3, "10:00")),
            failed("shop/prod", march(4, "10:00")),
            promoted("shop/prod", march(4, "12:00")),
            failed("shop/prod", march(5, "10:00")),
        ],
        DoraMetrics {
            deployments: 2,
            deployments_per_day: 2.0 / 7.0,
            change_failure_rate: Some(0.5),
            time_to_restore_median: Some(hours(2)),
            failures: 2,
            ..nothing()
        },
    );
    check(
        &[failed("shop/prod", march(3, "10:00"))],
        DoraMetrics {
            change_failure_rate: Some(1.0),
            failures: 1,
            ..nothing()
        },
    );
}

#[test]
fn a_successful_rollback_marks_the_deployment_just_before_it_as_failed() {
    // The rollback undoes the deployment: a failure restored by the rollback itself.
    check(
        &[
            promoted("shop/prod", march(3, "10:00")),
            rolled_back("shop/prod", march(3, "10:30")),
        ],
        DoraMetrics {
            deployments: 1,
            deployments_per_day: 1.0 / 7.0,
            change_failure_rate: Some(1.0),
            time_to_restore_median: Some(minutes(30)),
            failures: 1,
            rollbacks: 1,
            ..nothing()
        },
    );
    // Only the last deployment before the rollback is rolled back.
    check(
        &[
            promoted("shop/prod", march(3, "10:00")),
            promoted("shop/prod", march(3, "11:00")),
            rolled_back("shop/prod", march(3, "11:15")),
        ],
        DoraMetrics {
            deployments: 2,
            deployments_per_day: 2.0 / 7.0,
            change_failure_rate: Some(0.5),
            time_to_restore_median: Some(minutes(15)),
            failures: 1,
            rollbacks: 1,
            ..nothing()
        },
    );
    // A failed rollback changes nothing: the next one still undoes the deployment, and
    // the outage lasts until that one succeeds.
    check(
        &[
            promoted("shop/prod", march(3, "10:00")),
            failed_rollback("shop/prod", march(3, "10:20")),
            rolled_back("shop/prod", march(3, "10:45")),
        ],
        DoraMetrics {
            deployments: 1,
            deployments_per_day: 1.0 / 7.0,
            change_failure_rate: Some(1.0),
            time_to_restore_median: Some(minutes(45)),
            failures: 1,
            rollbacks: 1,
            ..nothing()
        },
    );
    // A rollback after a failed promotion answers that failure, not the success before.
    check(
        &[
            promoted("shop/prod", march(3, "10:00")),
            failed("shop/prod", march(3, "11:00")),
            rolled_back("shop/prod", march(3, "11:30")),
        ],
        DoraMetrics {
            deployments: 1,
            deployments_per_day: 1.0 / 7.0,
            change_failure_rate: Some(0.5),
            time_to_restore_median: Some(minutes(30)),
            failures: 1,
            rollbacks: 1,
            ..nothing()
        },
    );
    // A rollback with no deployment before it is still a rollback, but no attempt.
    check(
        &[rolled_back("shop/prod", march(3, "10:00"))],
        DoraMetrics {
            rollbacks: 1,
            ..nothing()
        },
    );
    // A failed rollback counts nowhere.
    check(
        &[failed_rollback("shop/prod", march(3, "10:00"))],
        nothing(),
    );
}

#[test]
fn time_to_restore_is_the_lower_median_over_restored_outages() {
    check(
        &[
            // Failed, fixed by a promotion two hours later.
            failed("shop/prod", march(2, "10:00")),
            promoted("shop/prod", march(2, "12:00")),
            // Rolled back after ten minutes.
            promoted("shop/prod", march(3, "10:00")),
            rolled_back("shop/prod", march(3, "10:10")),
            // Two failures and a failed rollback before one fix: two outages, of four
            // hours and one hour.
            failed("shop/prod", march(4, "10:00")),
            failed_rollback("shop/prod", march(4, "10:30")),
            failed("shop/prod", march(4, "13:00")),
            promoted("shop/prod", march(4, "14:00")),
            // Not restored before the window ends: a failure, but no restore time.
            failed("shop/prod", march(8, "20:00")),
        ],
        DoraMetrics {
            deployments: 3,
            deployments_per_day: 3.0 / 7.0,
            change_failure_rate: Some(5.0 / 7.0),
            // Ten minutes, one hour, two hours, four hours: the lower middle.
            time_to_restore_median: Some(hours(1)),
            failures: 5,
            rollbacks: 1,
            ..nothing()
        },
    );
}

#[test]
fn an_outage_not_yet_restored_has_no_time_to_restore() {
    check(
        &[
            promoted("shop/prod", march(3, "10:00")),
            failed("shop/prod", march(4, "10:00")),
            failed_rollback("shop/prod", march(4, "10:30")),
        ],
        DoraMetrics {
            deployments: 1,
            deployments_per_day: 1.0 / 7.0,
            change_failure_rate: Some(0.5),
            failures: 1,
            ..nothing()
        },
    );
}

#[test]
fn records_outside_the_window_are_context_but_never_counted() {
    // The window includes `since` and excludes `until`.
    check(
        &[
            promoted("shop/prod", since()),
            promoted("shop/prod", until()),
        ],
        DoraMetrics {
            deployments: 1,
            deployments_per_day: 1.0 / 7.0,
            change_failure_rate: Some(0.0),
            ..nothing()
        },
    );
    // A rollback in the window of a deployment before it: a rollback, not a failure.
    check(
        &[
            promoted("shop/prod", march(1, "23:00")),
            rolled_back("shop/prod", march(2, "00:30")),
        ],
        DoraMetrics {
            rollbacks: 1,
            ..nothing()
        },
    );
    // A failure before the window, restored inside it: only the fix counts.
    check(
        &[
            failed("shop/prod", march(1, "23:00")),
            promoted("shop/prod", march(2, "01:00")),
        ],
        DoraMetrics {
            deployments: 1,
            deployments_per_day: 1.0 / 7.0,
            change_failure_rate: Some(0.0),
            ..nothing()
        },
    );
    // A rollback just after a deployment, both inside the window: rolled back.
    check(
        &[
            promoted("shop/prod", march(8, "23:00")),
            rolled_back("shop/prod", march(8, "23:59")),
        ],
        DoraMetrics {
            deployments: 1,
            deployments_per_day: 1.0 / 7.0,
            change_failure_rate: Some(1.0),
            time_to_restore_median: Some(minutes(59)),
            failures: 1,
            rollbacks: 1,
            ..nothing()
        },
    );
    // A rollback after the window does not reach back into it.
    check(
        &[
            promoted("shop/prod", march(8, "23:00")),
            rolled_back("shop/prod", march(9, "00:30")),
        ],
        DoraMetrics {
            deployments: 1,
            deployments_per_day: 1.0 / 7.0,
            change_failure_rate: Some(0.0),
            ..nothing()
        },
    );
    // A failure in the window fixed only after it is not restored within the window.
    check(
        &[
            failed("shop/prod", march(8, "22:00")),
            promoted("shop/prod", march(9, "01:00")),
        ],
        DoraMetrics {
            change_failure_rate: Some(1.0),
            failures: 1,
            ..nothing()
        },
    );
}

#[test]
fn applications_are_kept_apart() {
    let records = [
        promoted("shop/prod", march(3, "10:00")),
        // Billing's rollback does not undo the shop's deployment...
        rolled_back("billing/prod", march(3, "10:30")),
        failed("billing/prod", march(3, "11:00")),
        // ...and the shop's deployment does not restore billing.
        promoted("shop/prod", march(3, "12:00")),
    ];
    check(
        &records,
        DoraMetrics {
            deployments: 2,
            deployments_per_day: 2.0 / 7.0,
            change_failure_rate: Some(1.0 / 3.0),
            failures: 1,
            rollbacks: 1,
            ..nothing()
        },
    );
    let (overall, by_application) = compute_by_application(&records, since(), until());
    assert_eq!(overall, compute(&records, since(), until()));
    let expected = BTreeMap::from([
        (
            "billing".to_owned(),
            DoraMetrics {
                change_failure_rate: Some(1.0),
                failures: 1,
                rollbacks: 1,
                ..nothing()
            },
        ),
        (
            "shop".to_owned(),
            DoraMetrics {
                deployments: 2,
                deployments_per_day: 2.0 / 7.0,
                change_failure_rate: Some(0.0),
                ..nothing()
            },
        ),
    ]);
    assert_eq!(by_application, expected);
}

#[test]
fn environments_are_kept_apart() {
    let records = [
        promoted("shop/prod-eu", march(3, "10:00")),
        // A rollback in one region does not undo the other region's deployment...
        rolled_back("shop/prod-us", march(3, "10:30")),
        failed("shop/prod-us", march(3, "11:00")),
        // ...and a deployment in one region does not restore the other.
        promoted("shop/prod-eu", march(3, "12:00")),
        promoted("shop/prod-us", march(3, "15:00")),
    ];
    let expected = DoraMetrics {
        deployments: 3,
        deployments_per_day: 3.0 / 7.0,
        change_failure_rate: Some(0.25),
        time_to_restore_median: Some(hours(4)),
        failures: 1,
        rollbacks: 1,
        ..nothing()
    };
    check(&records, expected.clone());
    // One application's entry sums its environments.
    let (overall, by_application) = compute_by_application(&records, since(), until());
    assert_eq!(overall, expected);
    assert_eq!(
        by_application,
        BTreeMap::from([("shop".to_owned(), expected)])
    );
}

#[test]
fn applications_without_records_in_the_window_get_no_entry() {
    let records = [
        promoted("legacy/prod", march(1, "10:00")),
        promoted("future/prod", march(9, "10:00")),
        promoted("shop/prod", march(3, "10:00")),
    ];
    let (_, by_application) = compute_by_application(&records, since(), until());
    let applications: Vec<&str> = by_application.keys().map(String::as_str).collect();
    assert_eq!(applications, ["shop"]);
}

#[test]
fn input_order_does_not_change_the_result() {
    let records = vec![
        failed("shop/prod", march(2, "10:00")),
        shipped("shop/prod", march(2, "09:00"), march(2, "12:00")),
        shipped("shop/prod", march(3, "07:00"), march(3, "10:00")),
        // Finished in the same second as the deployment it undoes.
        rolled_back("shop/prod", march(3, "10:00")),
        failed("shop/prod-us", march(4, "10:00")),
        failed_rollback("shop/prod-us", march(4, "10:30")),
        shipped("shop/prod-us", march(4, "08:00"), march(4, "14:00")),
        promoted("billing/prod", march(1, "10:00")),
        rolled_back("billing/prod", march(5, "10:00")),
        shipped("billing/prod", march(5, "11:00"), march(5, "12:00")),
        failed("billing/prod", march(8, "20:00")),
    ];
    let expected = compute(&records, since(), until());
    assert_eq!(
        expected,
        DoraMetrics {
            deployments: 4,
            deployments_per_day: 4.0 / 7.0,
            // One, three, three and six hours.
            lead_time_median: Some(hours(3)),
            lead_time_p90: Some(hours(6)),
            change_failure_rate: Some(4.0 / 7.0),
            // Two hours, zero and four hours; billing's last failure is not restored.
            time_to_restore_median: Some(hours(2)),
            failures: 4,
            rollbacks: 2,
        }
    );
    let mut shuffled = records.clone();
    for step in [1, 3, 4, 7] {
        for _ in 0..records.len() {
            shuffled.rotate_left(step);
            shuffled.swap(0, records.len() - 1);
            assert_eq!(
                compute(&shuffled, since(), until()),
                expected,
                "records: {shuffled:#?}"
            );
        }
    }
}
