//! Gate evaluation: the one place that decides whether an artifact may enter a stage,
//! and says for every condition whether it is met and why. Pure: the time, the
//! evidence and the people reach it as arguments, so every caller (API, CLI,
//! auto-promotion) gets the same answer and tests can pin the clock.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use jiff::Timestamp;
use jiff::civil::{DateTime, Weekday};
use jiff::tz::TimeZone;

use crate::pipeline::{CheckName, Gate, PipelineError, Role, Severity};

/// A period during which nothing may be promoted into a stage.
#[derive(Clone, PartialEq, Eq)]
pub enum FreezeWindow {
    /// Every week from `start` to `end` (wall-clock times in `zone`); may wrap the week.
    Weekly {
        text: String,
        start: WeekTime,
        end: WeekTime,
        zone: TimeZone,
    },
    /// Once, from `start` to `end`.
    Once {
        text: String,
        start: Timestamp,
        end: Timestamp,
    },
}

/// A wall-clock moment in the week: minutes since Monday 00:00.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct WeekTime(u32);

impl fmt::Debug for FreezeWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text())
    }
}

fn weekday(text: &str) -> Option<Weekday> {
    Some(match text.to_ascii_lowercase().as_str() {
        "mon" | "monday" => Weekday::Monday,
        "tue" | "tuesday" => Weekday::Tuesday,
        "wed" | "wednesday" => Weekday::Wednesday,
        "thu" | "thursday" => Weekday::Thursday,
        "fri" | "friday" => Weekday::Friday,
        "sat" | "saturday" => Weekday::Saturday,
        "sun" | "sunday" => Weekday::Sunday,
        _ => return None,
    })
}

fn week_time(day: Weekday, hour: i8, minute: i8) -> WeekTime {
    let day_index = u32::try_from(day.to_monday_zero_offset()).unwrap_or(0);
    let hour = u32::try_from(hour).unwrap_or(0);
    let minute = u32::try_from(minute).unwrap_or(0);
    WeekTime(day_index * 24 * 60 + hour * 60 + minute)
}

fn clock(text: &str) -> Option<(i8, i8)> {
    let (hour, minute) = text.split_once(':')?;
    let hour: i8 = hour.parse().ok()?;
    let minute: i8 = minute.parse().ok()?;
    ((0..24).contains(&hour) && (0..60).contains(&minute) && text.len() == 5)
        .then_some((hour, minute))
}

impl FreezeWindow {
    /// Parses `Fri 16:00 - Mon 08:00 Europe/London` (weekly) or
    /// `2026-12-24T00:00 - 2026-12-27T08:00 Europe/London` (once).
    pub fn parse(text: &str) -> Result<FreezeWindow, PipelineError> {
        let invalid = |reason: &str| PipelineError::InvalidFreeze {
            window: text.to_owned(),
            reason: reason.to_owned(),
        };
        let (from, rest) = text
            .split_once(" - ")
            .ok_or_else(|| invalid("expected `FROM - TO ZONE`"))?;
        let mut to_parts = rest.split_whitespace().collect::<Vec<_>>();
        let zone_name = to_parts.pop().ok_or_else(|| invalid("missing time zone"))?;
        let zone = TimeZone::get(zone_name)
            .map_err(|_| invalid(&format!("unknown time zone `{zone_name}`")))?;
        let from_parts: Vec<&str> = from.split_whitespace().collect();
        match (from_parts.as_slice(), to_parts.as_slice()) {
            ([from_day, from_clock], [to_day, to_clock]) => {
                let from_day = weekday(from_day).ok_or_else(|| invalid("unknown weekday"))?;
                let to_day = weekday(to_day).ok_or_else(|| invalid("unknown weekday"))?;
                let (fh, fm) = clock(from_clock).ok_or_else(|| invalid("times are HH:MM"))?;
                let (th, tm) = clock(to_clock).ok_or_else(|| invalid("times are HH:MM"))?;
                let start = week_time(from_day, fh, fm);
                let end = week_time(to_day, th, tm);
                if start == end {
                    return Err(invalid("the window is empty"));
                }
                Ok(FreezeWindow::Weekly {
                    text: text.to_owned(),
                    start,
                    end,
                    zone,
                })
            }
            ([from_datetime], [to_datetime]) => {
                let resolve = |s: &str| -> Result<Timestamp, PipelineError> {
                    let civil: DateTime = s
                        .parse()
                        .map_err(|_| invalid("dates are YYYY-MM-DDTHH:MM"))?;
                    civil
                        .to_zoned(zone.clone())
                        .map(|z| z.timestamp())
                        .map_err(|_| invalid("date out of range"))
                };
                let start = resolve(from_datetime)?;
                let end = resolve(to_datetime)?;
                if end <= start {
                    return Err(invalid("the window ends before it starts"));
                }
                Ok(FreezeWindow::Once {
                    text: text.to_owned(),
                    start,
                    end,
                })
            }
            _ => Err(invalid(
                "expected `DAY HH:MM - DAY HH:MM ZONE` or `DATE - DATE ZONE`",
            )),
        }
    }

    pub fn text(&self) -> &str {
        match self {
            FreezeWindow::Weekly { text, .. } | FreezeWindow::Once { text, .. } => text,
        }
    }

    /// Whether `now` falls inside the window (start inclusive, end exclusive), judged by
    /// the wall clock of the window's zone, so daylight-saving changes move with it.
    pub fn contains(&self, now: Timestamp) -> bool {
        match self {
            FreezeWindow::Once { start, end, .. } => *start <= now && now < *end,
            FreezeWindow::Weekly {
                start, end, zone, ..
            } => {
                let local = now.to_zoned(zone.clone());
                let at = week_time(local.weekday(), local.hour(), local.minute());
                if start < end {
                    *start <= at && at < *end
                } else {
                    at >= *start || at < *end
                }
            }
        }
    }
}

/// Where the artifact stands in the previous stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreviousStage {
    /// The stage is the pipeline's first: there is no order to respect.
    None,
    /// The artifact was deployed successfully to the previous stage at this time.
    DeployedAt(Timestamp),
    /// The artifact never reached the previous stage successfully.
    NotDeployed,
}

/// The latest report of one check for the artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckEvidence {
    pub name: CheckName,
    pub passed: bool,
    pub findings: BTreeMap<Severity, u64>,
    /// The check flipped between passed and failed too often recently.
    pub flapping: bool,
}

/// One person's approval of this promotion (already bound to its digest, stage and
/// config revision by the caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalEvidence {
    pub approver: String,
    pub roles: BTreeSet<Role>,
    /// A CI identity: never counts as an approver.
    pub bot: bool,
}

/// Everything the gate looks at.
#[derive(Debug, Clone)]
pub struct Evidence<'a> {
    pub now: Timestamp,
    /// Who asked for the promotion.
    pub requester: &'a str,
    /// Who triggered or committed the build.
    pub build_actors: &'a [String],
    pub previous: PreviousStage,
    pub checks: &'a [CheckEvidence],
    pub approvals: &'a [ApprovalEvidence],
}

/// Which condition a [`Condition`] reports on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConditionKind {
    Order,
    Soak,
    Freeze,
    Check(CheckName),
    Approval(Role),
}

/// One condition of a gate, met or not, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub kind: ConditionKind,
    pub met: bool,
    pub reason: String,
}

/// Evaluates every condition of `gate` against `evidence`. The gate is open when all
/// conditions are met; nothing is short-circuited, so callers can show each one.
pub fn evaluate(gate: &Gate, evidence: &Evidence<'_>) -> Vec<Condition> {
    let mut conditions = Vec::new();
    conditions.push(order(evidence));
    if let Some(soak) = gate.soak {
        conditions.push(soak_condition(soak, evidence));
    }
    if !gate.freeze.is_empty() {
        conditions.push(freeze(&gate.freeze, evidence.now));
    }
    for required in &gate.checks {
        conditions.push(check(required, evidence.checks));
    }
    conditions.extend(approvals(gate, evidence));
    conditions
}

/// Whether every condition is met.
pub fn is_open(conditions: &[Condition]) -> bool {
    conditions.iter().all(|c| c.met)
}

fn order(evidence: &Evidence<'_>) -> Condition {
    let (met, reason) = match evidence.previous {
        PreviousStage::None => (true, "first stage of the pipeline".to_owned()),
        PreviousStage::DeployedAt(at) => (true, format!("deployed to the previous stage at {at}")),
        PreviousStage::NotDeployed => (
            false,
            "not yet deployed successfully to the previous stage".to_owned(),
        ),
    };
    Condition {
        kind: ConditionKind::Order,
        met,
        reason,
    }
}

fn soak_condition(soak: std::time::Duration, evidence: &Evidence<'_>) -> Condition {
    let required = jiff::SignedDuration::try_from(soak).unwrap_or(jiff::SignedDuration::MAX);
    let (met, reason) = match evidence.previous {
        PreviousStage::None => (true, "first stage: nothing to soak in".to_owned()),
        PreviousStage::NotDeployed => (
            false,
            format!("must run {} in the previous stage first", human(required)),
        ),
        PreviousStage::DeployedAt(at) => {
            // A deployment time ahead of `now` (clock skew between replicas) counts as zero.
            let ran = evidence
                .now
                .duration_since(at)
                .max(jiff::SignedDuration::ZERO);
            if ran >= required {
                (
                    true,
                    format!(
                        "ran {} in the previous stage (needs {})",
                        human(ran),
                        human(required)
                    ),
                )
            } else {
                (
                    false,
                    format!(
                        "ran {} of the {} required in the previous stage",
                        human(ran),
                        human(required)
                    ),
                )
            }
        }
    };
    Condition {
        kind: ConditionKind::Soak,
        met,
        reason,
    }
}

/// `1h30m`, `45m`, `2s`: hours, minutes and seconds, leaving out zero parts (seconds
/// too once the duration reaches an hour).
fn human(duration: jiff::SignedDuration) -> String {
    let total = duration.as_secs().max(0);
    let (hours, minutes, seconds) = (total / 3600, total % 3600 / 60, total % 60);
    let mut text = String::new();
    if hours > 0 {
        text.push_str(&format!("{hours}h"));
    }
    if minutes > 0 {
        text.push_str(&format!("{minutes}m"));
    }
    if seconds > 0 && hours == 0 {
        text.push_str(&format!("{seconds}s"));
    }
    if text.is_empty() {
        text.push_str("0s");
    }
    text
}

fn freeze(windows: &[crate::gate::FreezeWindow], now: Timestamp) -> Condition {
    match windows.iter().find(|w| w.contains(now)) {
        Some(window) => Condition {
            kind: ConditionKind::Freeze,
            met: false,
            reason: format!("inside the freeze window `{}`", window.text()),
        },
        None => Condition {
            kind: ConditionKind::Freeze,
            met: true,
            reason: "outside every freeze window".to_owned(),
        },
    }
}

fn check(required: &crate::pipeline::RequiredCheck, reports: &[CheckEvidence]) -> Condition {
    let kind = ConditionKind::Check(required.name.clone());
    let Some(report) = reports.iter().find(|r| r.name == required.name) else {
        return Condition {
            kind,
            met: false,
            reason: format!("no report of {} for this digest yet", required.name),
        };
    };
    if report.flapping {
        return Condition {
            kind,
            met: false,
            reason: format!(
                "{} flips between passed and failed on this digest: fix the flaky check",
                required.name
            ),
        };
    }
    if !report.passed {
        return Condition {
            kind,
            met: false,
            reason: format!("the latest {} report failed", required.name),
        };
    }
    let over: Vec<String> = required
        .max
        .iter()
        .filter_map(|(severity, max)| {
            let found = report.findings.get(severity).copied().unwrap_or(0);
            (found > *max).then(|| format!("{found} {} (max {max})", severity.as_str()))
        })
        .collect();
    if over.is_empty() {
        Condition {
            kind,
            met: true,
            reason: format!("{} passed", required.name),
        }
    } else {
        Condition {
            kind,
            met: false,
            reason: format!("{} passed but found {}", required.name, over.join(", ")),
        }
    }
}

/// Why an approval does not count, if it does not.
fn disqualified(approval: &ApprovalEvidence, evidence: &Evidence<'_>) -> Option<&'static str> {
    if approval.bot {
        Some("a CI identity cannot approve")
    } else if crate::same_identity(&approval.approver, evidence.requester) {
        Some("nobody approves their own promotion")
    } else if evidence
        .build_actors
        .iter()
        .any(|actor| crate::same_identity(actor, &approval.approver))
    {
        Some("nobody approves a build they triggered or committed")
    } else {
        None
    }
}

/// Assigns eligible approvers to rule slots so that each person fills at most one slot
/// (someone holding two roles cannot satisfy two rules), maximising filled slots.
fn approvals(gate: &Gate, evidence: &Evidence<'_>) -> Vec<Condition> {
    let mut excluded: BTreeMap<&str, &'static str> = BTreeMap::new();
    let mut eligible: Vec<&ApprovalEvidence> = Vec::new();
    for approval in evidence.approvals {
        match disqualified(approval, evidence) {
            Some(reason) => {
                excluded.insert(&approval.approver, reason);
            }
            None if !eligible.iter().any(|e| e.approver == approval.approver) => {
                eligible.push(approval)
            }
            None => {}
        }
    }
    // Slots: one per required approval, labelled by the rule's index.
    let slots: Vec<usize> = gate
        .approvals
        .iter()
        .enumerate()
        // More slots than eligible people could never be filled; capping them keeps a
        // huge count from allocating without bound.
        .flat_map(|(rule, r)| {
            std::iter::repeat_n(
                rule,
                usize::try_from(r.count).unwrap_or(0).min(eligible.len()),
            )
        })
        .collect();
    let mut slot_holder: Vec<Option<usize>> = vec![None; slots.len()];
    for person in 0..eligible.len() {
        let mut visited = vec![false; slots.len()];
        assign(
            person,
            &eligible,
            &slots,
            gate,
            &mut slot_holder,
            &mut visited,
        );
    }
    gate.approvals
        .iter()
        .enumerate()
        .map(|(rule_index, rule)| {
            let holders: Vec<&str> = slots
                .iter()
                .zip(&slot_holder)
                .filter(|(rule_of_slot, _)| **rule_of_slot == rule_index)
                .filter_map(|(_, holder)| holder.map(|p| eligible[p].approver.as_str()))
                .collect();
            let needed = usize::try_from(rule.count).unwrap_or(usize::MAX);
            let met = holders.len() >= needed;
            let mut reason = format!(
                "{} of {} {} approval{}",
                holders.len(),
                rule.count,
                rule.role.as_str(),
                if rule.count == 1 { "" } else { "s" }
            );
            if !holders.is_empty() {
                reason.push_str(&format!(" (by {})", holders.join(", ")));
            }
            let refused: Vec<String> = evidence
                .approvals
                .iter()
                .filter(|a| a.roles.contains(&rule.role))
                .filter_map(|a| {
                    excluded
                        .get(a.approver.as_str())
                        .map(|why| format!("{}: {why}", a.approver))
                })
                .collect();
            if !refused.is_empty() {
                reason.push_str(&format!("; not counted: {}", refused.join("; ")));
            }
            Condition {
                kind: ConditionKind::Approval(rule.role),
                met,
                reason,
            }
        })
        .collect()
}

/// Kuhn's augmenting path: tries to give `person` a slot, moving earlier holders.
fn assign(
    person: usize,
    eligible: &[&ApprovalEvidence],
    slots: &[usize],
    gate: &Gate,
    slot_holder: &mut [Option<usize>],
    visited: &mut [bool],
) -> bool {
    for slot in 0..slots.len() {
        if visited[slot]
            || !eligible[person]
                .roles
                .contains(&gate.approvals[slots[slot]].role)
        {
            continue;
        }
        visited[slot] = true;
        let free = match slot_holder[slot] {
            None => true,
            Some(holder) => assign(holder, eligible, slots, gate, slot_holder, visited),
        };
        if free {
            slot_holder[slot] = Some(person);
            return true;
        }
    }
    false
}

#[cfg(test)]
#[path = "gate_tests.rs"]
mod tests;
