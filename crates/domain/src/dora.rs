//! DORA metrics, computed from deployment records.
//!
//! The four metrics (deployment frequency, lead time for changes, change failure rate
//! and time to restore) are pure functions of the production deployments the store
//! recorded. The caller chooses the records (only the last stage of each
//! application's pipeline) and the window; nothing here reads a clock.
//!
//! # Definitions
//!
//! Records are read as one history per application *and* environment, in the order they
//! finished (ties are broken by a fixed order on the other fields, so the input order
//! never changes the result). Records finishing at or after `until` are ignored
//! entirely: a window's metrics never depend on what happened after it. Records
//! finishing before `since` are not counted, but may still be the history a counted
//! record follows.
//!
//! - A **deployment** is a successful [`Promotion`](DeploymentReason::Promotion),
//!   including one that is later rolled back.
//! - A successful promotion is **rolled back** when the next record of its history,
//!   skipping failed rollbacks, is a successful
//!   [`Rollback`](DeploymentReason::Rollback). A failed promotion in between means the
//!   rollback answers that failure instead.
//! - A **failure** is a failed promotion, or a successful promotion that was rolled
//!   back. It starts an outage at its `finished_at`.
//! - An outage is **restored** by the next successful record (promotion or rollback) of
//!   the same history. Outages are measured one per failure, so two failed promotions
//!   before one fix are two outages ending together.
//! - **Rollbacks** are successful rollback deployments. They are neither deployments nor
//!   attempts in the change failure rate. Failed rollbacks count nowhere and do not end
//!   an outage.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};

/// Whether a deployment reached its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeploymentOutcome {
    Succeeded,
    Failed,
}

pub use crate::promotion::DeploymentReason;

/// One finished deployment to a production environment (the caller selects only the
/// last stage of each application's pipeline).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentRecord {
    pub application: String,
    pub environment: String,
    pub digest: String,
    pub reason: DeploymentReason,
    pub outcome: DeploymentOutcome,
    pub finished_at: Timestamp,
    /// When the change was committed (from build provenance), if known.
    pub committed_at: Option<Timestamp>,
}

/// The four DORA metrics over one window, with the counts behind them. See the module
/// documentation for what each word means precisely.
#[derive(Debug, Clone, PartialEq)]
pub struct DoraMetrics {
    /// Successful promotions finished in the window, including those later rolled back.
    pub deployments: u64,
    /// `deployments` divided by the window's length in days (at least one second long).
    pub deployments_per_day: f64,
    /// Median of `finished_at - committed_at` over the window's deployments whose commit
    /// time is known; with an even count, the lower of the two middle values.
    pub lead_time_median: Option<SignedDuration>,
    /// 90th percentile of the same lead times, by nearest rank.
    pub lead_time_p90: Option<SignedDuration>,
    /// `failures` divided by the promotions attempted in the window (successful or
    /// failed); `None` when none were attempted.
    pub change_failure_rate: Option<f64>,
    /// Median time from a failure in the window to the next successful deployment of the
    /// same application and environment (lower middle for an even count). Outages not
    /// restored before `until` are left out; `None` when no outage was restored.
    pub time_to_restore_median: Option<SignedDuration>,
    /// Failed promotions plus successful promotions later rolled back, in the window.
    pub failures: u64,
    /// Successful rollback deployments finished in the window.
    pub rollbacks: u64,
}

/// Metrics over records whose `finished_at` is in `[since, until)`. `records` may be in
/// any order and may include records outside the window: those are not counted, but a
/// rollback just after a deployment inside the window still marks that deployment as
/// rolled back if it finished before `until`.
pub fn compute(records: &[DeploymentRecord], since: Timestamp, until: Timestamp) -> DoraMetrics {
    compute_over(records, since, until)
}

/// Groups by application and returns the overall metrics (`compute` over all records)
/// with one entry per application that has at least one record in the window. An
/// application's environments are kept apart as histories but summed into its entry.
pub fn compute_by_application(
    records: &[DeploymentRecord],
    since: Timestamp,
    until: Timestamp,
) -> (DoraMetrics, BTreeMap<String, DoraMetrics>) {
    let mut by_application: BTreeMap<&str, Vec<&DeploymentRecord>> = BTreeMap::new();
    for record in records {
        by_application
            .entry(record.application.as_str())
            .or_default()
            .push(record);
    }
    let per_application = by_application
        .into_iter()
        .filter(|(_, records)| {
            records
                .iter()
                .any(|record| since <= record.finished_at && record.finished_at < until)
        })
        .map(|(application, records)| (application.to_owned(), compute_over(records, since, until)))
        .collect();
    (compute(records, since, until), per_application)
}

fn compute_over<'a>(
    records: impl IntoIterator<Item = &'a DeploymentRecord>,
    since: Timestamp,
    until: Timestamp,
) -> DoraMetrics {
    let mut histories: BTreeMap<(&str, &str), Vec<&DeploymentRecord>> = BTreeMap::new();
    for record in records {
        if record.finished_at < until {
            histories
                .entry((record.application.as_str(), record.environment.as_str()))
                .or_default()
                .push(record);
        }
    }
    let mut tally = Tally::default();
    for history in histories.values_mut() {
        history.sort_by(|left, right| chronological(left, right));
        tally.add_history(history, since);
    }
    tally.into_metrics(since, until)
}

/// The order records of one history happened in. Equal finishing times fall back to a
/// fixed order (promotion before rollback, failure before success) so that shuffled
/// input gives the same answer.
fn chronological(left: &DeploymentRecord, right: &DeploymentRecord) -> Ordering {
    fn reason_rank(reason: DeploymentReason) -> u8 {
        match reason {
            DeploymentReason::Promotion => 0,
            DeploymentReason::Rollback => 1,
        }
    }
    fn outcome_rank(outcome: DeploymentOutcome) -> u8 {
        match outcome {
            DeploymentOutcome::Failed => 0,
            DeploymentOutcome::Succeeded => 1,
        }
    }
    left.finished_at
        .cmp(&right.finished_at)
        .then_with(|| reason_rank(left.reason).cmp(&reason_rank(right.reason)))
        .then_with(|| outcome_rank(left.outcome).cmp(&outcome_rank(right.outcome)))
        .then_with(|| left.digest.cmp(&right.digest))
        .then_with(|| left.committed_at.cmp(&right.committed_at))
}

/// Running counts over every history of one computation.
#[derive(Default)]
struct Tally {
    deployments: u64,
    promotions_attempted: u64,
    failures: u64,
    rollbacks: u64,
    lead_times: Vec<SignedDuration>,
    restore_times: Vec<SignedDuration>,
}

impl Tally {
    /// Counts the records of one chronologically sorted history that finished at or
    /// after `since`; the earlier ones are only context.
    fn add_history(&mut self, history: &[&DeploymentRecord], since: Timestamp) {
        for (index, record) in history.iter().enumerate() {
            if record.finished_at < since {
                continue;
            }
            let later = &history[index + 1..];
            let failed = match (record.reason, record.outcome) {
                (DeploymentReason::Promotion, DeploymentOutcome::Succeeded) => {
                    self.deployments += 1;
                    self.promotions_attempted += 1;
                    if let Some(committed_at) = record.committed_at {
                        self.lead_times
                            .push(record.finished_at.duration_since(committed_at));
                    }
                    is_rolled_back(later)
                }
                (DeploymentReason::Promotion, DeploymentOutcome::Failed) => {
                    self.promotions_attempted += 1;
                    true
                }
                (DeploymentReason::Rollback, DeploymentOutcome::Succeeded) => {
                    self.rollbacks += 1;
                    false
                }
                (DeploymentReason::Rollback, DeploymentOutcome::Failed) => false,
            };
            if failed {
                self.failures += 1;
                if let Some(restore) = later
                    .iter()
                    .find(|next| next.outcome == DeploymentOutcome::Succeeded)
                {
                    self.restore_times
                        .push(restore.finished_at.duration_since(record.finished_at));
                }
            }
        }
    }

    fn into_metrics(mut self, since: Timestamp, until: Timestamp) -> DoraMetrics {
        const SECONDS_PER_DAY: f64 = 24.0 * 60.0 * 60.0;
        let window_seconds = until.duration_since(since).as_secs_f64().max(1.0);
        self.lead_times.sort_unstable();
        self.restore_times.sort_unstable();
        DoraMetrics {
            deployments: self.deployments,
            deployments_per_day: self.deployments as f64 / (window_seconds / SECONDS_PER_DAY),
            lead_time_median: lower_median(&self.lead_times),
            lead_time_p90: nearest_rank(&self.lead_times, 90),
            change_failure_rate: (self.promotions_attempted > 0)
                .then(|| self.failures as f64 / self.promotions_attempted as f64),
            time_to_restore_median: lower_median(&self.restore_times),
            failures: self.failures,
            rollbacks: self.rollbacks,
        }
    }
}

/// Whether the deployment followed by `later` was undone: the next record, skipping
/// failed rollbacks (which change nothing), is a successful rollback.
fn is_rolled_back(later: &[&DeploymentRecord]) -> bool {
    later
        .iter()
        .find(|next| {
            !(next.reason == DeploymentReason::Rollback
                && next.outcome == DeploymentOutcome::Failed)
        })
        .is_some_and(|next| {
            next.reason == DeploymentReason::Rollback
                && next.outcome == DeploymentOutcome::Succeeded
        })
}

/// The middle of `sorted`, or the lower of the two middle values for an even count.
fn lower_median(sorted: &[SignedDuration]) -> Option<SignedDuration> {
    let last = sorted.len().checked_sub(1)?;
    sorted.get(last / 2).copied()
}

/// The nearest-rank percentile: the smallest value with at least `percent`% of the
/// values at or below it.
fn nearest_rank(sorted: &[SignedDuration], percent: usize) -> Option<SignedDuration> {
    let rank = (sorted.len() * percent).div_ceil(100);
    sorted.get(rank.checked_sub(1)?).copied()
}

#[cfg(test)]
#[path = "dora_tests.rs"]
mod tests;
