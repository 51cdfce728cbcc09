//! Retention: which manifests of a repository a policy expires, and why every other
//! one is kept.
//!
//! A policy's [`RetentionRules`] keep the newest `keep_tagged` tagged artifacts, keep
//! the rest while they are younger than their tier's age limit (`dev` 7 days, `rc` 30
//! days, `release` forever by default), and expire untagged ones after
//! `expire_untagged_after` (or their tier's limit, whichever comes first). A tag filter
//! narrows the tagged rules to the tags it matches: an artifact carrying any other tag
//! is kept. Above every rule stand the **promotion pins** ([`Pin`]): a digest that an
//! environment runs or deploys, ran within its rollback window or is its rollback
//! target, that an open promotion (with its release bundle) references, that a cluster
//! was seen running, or that lives in the release tier is never expired, whatever its
//! age. An index's children and a manifest's referrers are decided with it: kept when
//! it is kept, expired only with it.
//!
//! [`decide`] is the whole decision, pure: the registry gathers each repository's
//! [`Artifact`]s and pins from the store, and the store checks every expiry again in
//! the transaction that carries it out.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use crate::glob_matches;

const DAY: u64 = 24 * 3600;

/// How far an artifact got: the tier whose age limit applies to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tier {
    /// Never deployed anywhere: a CI build and nothing more. Its age runs from its push.
    Dev,
    /// Deployed to an environment before the release stage: a release candidate. Its
    /// age runs from its last successful deployment.
    Rc,
    /// Deployed to the pipeline's last stage or one served from the release tier. Its
    /// age runs from its last successful deployment.
    Release,
}

impl Tier {
    pub const ALL: [Tier; 3] = [Tier::Dev, Tier::Rc, Tier::Release];

    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Dev => "dev",
            Tier::Rc => "rc",
            Tier::Release => "release",
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An age limit: a duration, or none at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxAge {
    After(Duration),
    Forever,
}

impl MaxAge {
    /// Reads `7d`, `36h`, `1h 30m`, `45s` or `forever`.
    pub fn parse(text: &str) -> Result<MaxAge, String> {
        let trimmed = text.trim();
        let refused = || {
            format!("`{text}` is not an age: use days (7d), a duration (36h, 1h30m) or `forever`")
        };
        if trimmed == "forever" {
            return Ok(MaxAge::Forever);
        }
        if let Some(days) = trimmed.strip_suffix('d') {
            let days: u64 = days.trim().parse().map_err(|_| refused())?;
            if days == 0 || days > 100 * 365 {
                return Err(refused());
            }
            return Ok(MaxAge::After(Duration::from_secs(days * DAY)));
        }
        let signed: jiff::SignedDuration = trimmed.parse().map_err(|_| refused())?;
        if signed.is_negative() || signed.is_zero() {
            return Err(refused());
        }
        Duration::try_from(signed)
            .map(MaxAge::After)
            .map_err(|_| refused())
    }

    /// The limit in milliseconds, `None` for forever.
    pub fn millis(self) -> Option<i64> {
        match self {
            MaxAge::After(duration) => {
                Some(i64::try_from(duration.as_millis()).unwrap_or(i64::MAX))
            }
            MaxAge::Forever => None,
        }
    }

    /// The shorter of two limits.
    pub fn min(self, other: MaxAge) -> MaxAge {
        match (self, other) {
            (MaxAge::Forever, other) | (other, MaxAge::Forever) => other,
            (MaxAge::After(a), MaxAge::After(b)) => MaxAge::After(a.min(b)),
        }
    }
}

impl fmt::Display for MaxAge {
    /// In the form [`MaxAge::parse`] reads: whole days as `7d`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MaxAge::Forever => f.write_str("forever"),
            MaxAge::After(duration)
                if duration.as_secs() % DAY == 0 && duration.subsec_nanos() == 0 =>
            {
                write!(f, "{}d", duration.as_secs() / DAY)
            }
            MaxAge::After(duration) => match jiff::SignedDuration::try_from(*duration) {
                Ok(signed) => write!(f, "{signed:#}"),
                Err(_) => write!(f, "{}s", duration.as_secs()),
            },
        }
    }
}

/// Renders an age in milliseconds for people: `12d 3h`, `5h 20m`, `40s`.
pub fn render_age(millis: i64) -> String {
    let seconds = millis.max(0) / 1000;
    let (days, hours, minutes) = (
        seconds / 86_400,
        seconds % 86_400 / 3600,
        seconds % 3600 / 60,
    );
    match (days, hours, minutes) {
        (0, 0, 0) => format!("{seconds}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

/// The age limit of each tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TierAges {
    pub dev: MaxAge,
    pub rc: MaxAge,
    pub release: MaxAge,
}

impl TierAges {
    pub fn of(&self, tier: Tier) -> MaxAge {
        match tier {
            Tier::Dev => self.dev,
            Tier::Rc => self.rc,
            Tier::Release => self.release,
        }
    }
}

impl Default for TierAges {
    /// dev 7 days, rc 30 days, release forever.
    fn default() -> TierAges {
        TierAges {
            dev: MaxAge::After(Duration::from_secs(7 * DAY)),
            rc: MaxAge::After(Duration::from_secs(30 * DAY)),
            release: MaxAge::Forever,
        }
    }
}

/// What a policy keeps and expires in the repositories it governs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionRules {
    /// The newest this many tagged artifacts are kept whatever their age.
    pub keep_tagged: u32,
    /// Untagged artifacts expire this long after their push (or sooner, by their tier).
    pub expire_untagged_after: MaxAge,
    /// Tagged artifacts beyond the newest `keep_tagged` expire once older than this.
    pub expire_after: TierAges,
    /// Globs: the tagged rules apply to artifacts all of whose tags match one.
    pub tags: Vec<String>,
    /// How many of each environment's latest successful deployments are pinned.
    pub rollback_window: u32,
}

pub const DEFAULT_KEEP_TAGGED: u32 = 30;
pub const DEFAULT_ROLLBACK_WINDOW: u32 = 5;
pub const DEFAULT_EXPIRE_UNTAGGED_AFTER: MaxAge = MaxAge::After(Duration::from_secs(30 * DAY));

impl Default for RetentionRules {
    fn default() -> RetentionRules {
        RetentionRules {
            keep_tagged: DEFAULT_KEEP_TAGGED,
            expire_untagged_after: DEFAULT_EXPIRE_UNTAGGED_AFTER,
            expire_after: TierAges::default(),
            tags: vec!["*".to_owned()],
            rollback_window: DEFAULT_ROLLBACK_WINDOW,
        }
    }
}

impl RetentionRules {
    fn tag_in_filter(&self, tag: &str) -> bool {
        self.tags.iter().any(|pattern| glob_matches(pattern, tag))
    }
}

/// A `kind: RetentionPolicy`: rules for the repositories its globs match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionPolicy {
    pub name: String,
    /// Globs over repository names (`*` matches `/` too).
    pub repositories: Vec<String>,
    /// When several policies match a repository, the lowest priority wins (then the name).
    pub priority: u32,
    pub rules: RetentionRules,
}

pub const DEFAULT_PRIORITY: u32 = 100;

impl RetentionPolicy {
    pub fn matches(&self, repository: &str) -> bool {
        self.repositories
            .iter()
            .any(|pattern| glob_matches(pattern, repository))
    }
}

/// The policy governing `repository` among `policies`: the matching one with the
/// lowest priority, then the first name.
pub fn governing<'a>(
    policies: &'a [RetentionPolicy],
    repository: &str,
) -> Option<&'a RetentionPolicy> {
    policies
        .iter()
        .filter(|policy| policy.matches(repository))
        .min_by(|a, b| (a.priority, &a.name).cmp(&(b.priority, &b.name)))
}

/// Why a digest may not be expired, whatever the rules say.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Pin {
    /// The environment's current deployment.
    Runs { environment: String },
    /// A deployment of it is under way.
    Deploying { environment: String },
    /// One of the environment's latest successful deployments.
    RollbackWindow {
        environment: String,
        deployment: i64,
    },
    /// Where a rollback of the environment without `to` would go.
    RollbackTarget { environment: String },
    /// An open promotion references it (`bundle`: with a release bundle).
    Promotion {
        environment: String,
        promotion: i64,
        bundle: bool,
    },
    /// A cluster reported running it.
    Observed { environment: String },
    /// It lives in the application's release tier repository.
    ReleaseTier { repository: String },
}

impl fmt::Display for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pin::Runs { environment } => write!(f, "{environment} runs it"),
            Pin::Deploying { environment } => write!(f, "it is being deployed to {environment}"),
            Pin::RollbackWindow {
                environment,
                deployment,
            } => write!(
                f,
                "deployment {deployment} to {environment} is within its rollback window"
            ),
            Pin::RollbackTarget { environment } => {
                write!(f, "a rollback of {environment} would return to it")
            }
            Pin::Promotion {
                environment,
                promotion,
                bundle,
            } => {
                write!(f, "promotion {promotion} into {environment} is pending")?;
                if *bundle {
                    f.write_str(" with a release bundle")?;
                }
                Ok(())
            }
            Pin::Observed { environment } => write!(f, "{environment} was seen running it"),
            Pin::ReleaseTier { repository } => write!(f, "it is in the release tier {repository}"),
        }
    }
}

/// One manifest of a repository as retention sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    pub digest: String,
    /// When the manifest was pushed to this repository (ms since the epoch).
    pub pushed_at: i64,
    /// Its tags, each with when it was last pointed here.
    pub tags: Vec<(String, i64)>,
    /// The manifests it lists (an index's children), in this repository or not.
    pub children: Vec<String>,
    /// The manifest it refers to, if it is a referrer.
    pub subject: Option<String>,
    pub tier: Tier,
    /// When its age in its tier starts: its push for `dev`, its last successful
    /// deployment otherwise.
    pub tier_since: i64,
    pub pins: Vec<Pin>,
}

impl Artifact {
    fn last_activity(&self) -> i64 {
        self.tags
            .iter()
            .map(|(_, at)| *at)
            .fold(self.pushed_at, i64::max)
    }
}

/// What the rules say about a manifest on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keep {
    Pinned(Vec<Pin>),
    /// Among the newest `of` tagged artifacts (1-based rank).
    NewestTagged {
        rank: usize,
        of: u32,
    },
    /// Younger than its limit.
    Young {
        tier: Tier,
        age: i64,
        limit: MaxAge,
    },
    /// A tag outside the policy's tag filter.
    TagOutsideFilter(String),
    /// Listed by a kept index.
    WithIndex(String),
    /// A referrer of a kept manifest.
    WithSubject(String),
    /// A referrer whose subject is not in the repository: garbage collection removes
    /// it once it is older than the grace window.
    SubjectAbsent(String),
}

impl fmt::Display for Keep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Keep::Pinned(pins) => {
                let texts: Vec<String> = pins.iter().map(ToString::to_string).collect();
                write!(f, "pinned: {}", texts.join("; "))
            }
            Keep::NewestTagged { rank, of } => {
                write!(f, "tagged, newest {rank} of the {of} kept")
            }
            Keep::Young { tier, age, limit } => write!(
                f,
                "{tier}, {} old, younger than its limit of {limit}",
                render_age(*age)
            ),
            Keep::TagOutsideFilter(tag) => {
                write!(f, "tag `{tag}` is outside the policy's tag filter")
            }
            Keep::WithIndex(index) => write!(f, "listed by the kept index {index}"),
            Keep::WithSubject(subject) => write!(f, "a referrer of the kept {subject}"),
            Keep::SubjectAbsent(subject) => write!(
                f,
                "a referrer of {subject}, which is not in the repository (garbage collection removes it after the grace window)"
            ),
        }
    }
}

/// Why a manifest expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// Untagged and older than its limit.
    Untagged { limit: MaxAge },
    /// Tagged, not among the newest `keep_tagged`, older than its tier's limit.
    Tagged { keep_tagged: u32, limit: MaxAge },
    /// Listed only by indexes that expire.
    WithIndex(String),
    /// A referrer of a manifest that expires.
    WithSubject(String),
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::Untagged { limit } => write!(f, "untagged for longer than {limit}"),
            Rule::Tagged { keep_tagged, limit } => write!(
                f,
                "not among the newest {keep_tagged} tagged and older than {limit}"
            ),
            Rule::WithIndex(index) => write!(f, "listed only by the expiring index {index}"),
            Rule::WithSubject(subject) => write!(f, "a referrer of the expiring {subject}"),
        }
    }
}

/// The verdict on one manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Keep(Keep),
    Expire(Rule),
}

/// One manifest's verdict, with what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub digest: String,
    pub tags: Vec<String>,
    pub tier: Tier,
    /// How old it is in its tier, in milliseconds.
    pub age: i64,
    pub verdict: Verdict,
    /// For a pinned manifest: the rule that would have expired it without its pins.
    pub saved_from: Option<Rule>,
}

/// Decides every manifest of one repository at `now`. Expiries come first in the
/// result, each after every index and subject that expires with it, so carrying them
/// out in order never leaves a child whose index is still there.
pub fn decide(artifacts: &[Artifact], rules: &RetentionRules, now: i64) -> Vec<Decision> {
    let by_digest: BTreeMap<&str, &Artifact> = artifacts
        .iter()
        .map(|artifact| (artifact.digest.as_str(), artifact))
        .collect();
    let mut parents: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for artifact in artifacts {
        for child in &artifact.children {
            if by_digest.contains_key(child.as_str()) {
                parents
                    .entry(child.as_str())
                    .or_default()
                    .push(artifact.digest.as_str());
            }
        }
    }
    let mut referrers: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for artifact in artifacts {
        if let Some(subject) = &artifact.subject
            && by_digest.contains_key(subject.as_str())
        {
            referrers
                .entry(subject.as_str())
                .or_default()
                .push(artifact.digest.as_str());
        }
    }

    // The newest tagged artifacts within the filter, by their last push or tag move.
    let mut tagged: Vec<&Artifact> = artifacts
        .iter()
        .filter(|a| !a.tags.is_empty() && a.tags.iter().all(|(t, _)| rules.tag_in_filter(t)))
        .collect();
    tagged.sort_by(|a, b| {
        b.last_activity()
            .cmp(&a.last_activity())
            .then_with(|| a.digest.cmp(&b.digest))
    });
    let rank: BTreeMap<&str, usize> = tagged
        .iter()
        .enumerate()
        .map(|(index, artifact)| (artifact.digest.as_str(), index + 1))
        .collect();

    // Each manifest's own verdict; `None` for those decided with an index or subject.
    let age_of = |artifact: &Artifact| now.saturating_sub(artifact.tier_since).max(0);
    let mut own: BTreeMap<&str, Option<Verdict>> = BTreeMap::new();
    let mut saved_from: BTreeMap<&str, Rule> = BTreeMap::new();
    for artifact in artifacts {
        let digest = artifact.digest.as_str();
        let follows = artifact.tags.is_empty()
            && (parents.contains_key(digest) || artifact.subject.is_some());
        let by_rules = if follows {
            None
        } else {
            Some(rule_verdict(
                artifact,
                rules,
                rank.get(digest).copied(),
                age_of(artifact),
            ))
        };
        let verdict = if artifact.pins.is_empty() {
            by_rules
        } else {
            if let Some(Verdict::Expire(rule)) = by_rules {
                saved_from.insert(digest, rule);
            }
            Some(Verdict::Keep(Keep::Pinned(artifact.pins.clone())))
        };
        own.insert(digest, verdict);
    }

    // Keep, with every manifest kept, its children and referrers, transitively.
    let mut kept: BTreeMap<&str, Keep> = BTreeMap::new();
    let mut queue: Vec<&str> = Vec::new();
    for (digest, verdict) in &own {
        if let Some(Verdict::Keep(reason)) = verdict {
            kept.insert(digest, reason.clone());
            queue.push(digest);
        }
    }
    while let Some(digest) = queue.pop() {
        let Some(artifact) = by_digest.get(digest) else {
            continue;
        };
        let children = artifact
            .children
            .iter()
            .map(|child| (child.as_str(), Keep::WithIndex(digest.to_owned())));
        let referring = referrers
            .get(digest)
            .into_iter()
            .flatten()
            .map(|referrer| (*referrer, Keep::WithSubject(digest.to_owned())));
        for (next, reason) in children.chain(referring).collect::<Vec<_>>() {
            if by_digest.contains_key(next) && !kept.contains_key(next) {
                kept.insert(next, reason);
                queue.push(next);
            }
        }
    }
    // A referrer whose subject is not here is left to garbage collection.
    for artifact in artifacts {
        if let Some(subject) = &artifact.subject
            && !by_digest.contains_key(subject.as_str())
            && !kept.contains_key(artifact.digest.as_str())
            && own.get(artifact.digest.as_str()) == Some(&None)
        {
            kept.insert(
                artifact.digest.as_str(),
                Keep::SubjectAbsent(subject.clone()),
            );
        }
    }

    // Everything else expires: by its own rule, or with its index or subject. Order
    // parents before children: a breadth-first walk from the manifests that expire on
    // their own.
    let mut expired: Vec<(&str, Rule)> = Vec::new();
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    for (digest, verdict) in &own {
        if let Some(Verdict::Expire(rule)) = verdict
            && !kept.contains_key(digest)
        {
            expired.push((digest, rule.clone()));
            seen.insert(digest);
        }
    }
    let mut next = 0;
    while next < expired.len() {
        let digest = expired[next].0;
        next += 1;
        let Some(artifact) = by_digest.get(digest) else {
            continue;
        };
        let children = artifact
            .children
            .iter()
            .map(|child| (child.as_str(), Rule::WithIndex(digest.to_owned())));
        let referring = referrers
            .get(digest)
            .into_iter()
            .flatten()
            .map(|referrer| (*referrer, Rule::WithSubject(digest.to_owned())));
        for (candidate, rule) in children.chain(referring).collect::<Vec<_>>() {
            if by_digest.contains_key(candidate)
                && !kept.contains_key(candidate)
                && !seen.contains(candidate)
                && parents
                    .get(candidate)
                    .into_iter()
                    .flatten()
                    .all(|parent| seen.contains(parent))
            {
                seen.insert(candidate);
                expired.push((candidate, rule));
            }
        }
    }

    // Every index and subject before what it lists or refers to: a manifest that
    // expires on its own may still be listed by another expiring one.
    // A referrer may also list (through an index) its own subject; then only the
    // listing order, which content addressing keeps acyclic, is honoured.
    let mut ordered: Vec<(&str, Rule)> = Vec::with_capacity(expired.len());
    let mut placed: BTreeSet<&str> = BTreeSet::new();
    let mut subjects_first = true;
    while ordered.len() < expired.len() {
        let before = ordered.len();
        for (digest, rule) in &expired {
            if placed.contains(digest) {
                continue;
            }
            let waits_on_parent = parents
                .get(digest)
                .into_iter()
                .flatten()
                .any(|parent| seen.contains(parent) && !placed.contains(parent));
            let waits_on_subject = subjects_first
                && by_digest
                    .get(digest)
                    .and_then(|a| a.subject.as_deref())
                    .is_some_and(|subject| seen.contains(subject) && !placed.contains(subject));
            if !waits_on_parent && !waits_on_subject {
                placed.insert(digest);
                ordered.push((digest, rule.clone()));
            }
        }
        if ordered.len() == before {
            if !subjects_first {
                // Unreachable: listings cannot form a cycle.
                for (digest, rule) in &expired {
                    if placed.insert(digest) {
                        ordered.push((digest, rule.clone()));
                    }
                }
            }
            subjects_first = false;
        }
    }
    let expired = ordered;

    let decision = |artifact: &Artifact, verdict: Verdict| Decision {
        digest: artifact.digest.clone(),
        tags: artifact.tags.iter().map(|(tag, _)| tag.clone()).collect(),
        tier: artifact.tier,
        age: age_of(artifact),
        saved_from: saved_from.get(artifact.digest.as_str()).cloned(),
        verdict,
    };
    let mut decisions: Vec<Decision> = expired
        .iter()
        .filter_map(|(digest, rule)| {
            by_digest
                .get(digest)
                .map(|artifact| decision(artifact, Verdict::Expire(rule.clone())))
        })
        .collect();
    for artifact in artifacts {
        let digest = artifact.digest.as_str();
        if seen.contains(digest) {
            continue;
        }
        // A manifest neither kept nor reached from an expiry is listed by an index
        // that is itself only partly expiring: keep it with that index.
        let reason = kept.get(digest).cloned().unwrap_or_else(|| {
            Keep::WithIndex(
                parents
                    .get(digest)
                    .and_then(|list| list.iter().find(|parent| !seen.contains(**parent)))
                    .map_or_else(String::new, |parent| (*parent).to_owned()),
            )
        });
        decisions.push(decision(artifact, Verdict::Keep(reason)));
    }
    decisions
}

/// What the age and count rules say about a manifest decided on its own.
fn rule_verdict(
    artifact: &Artifact,
    rules: &RetentionRules,
    rank: Option<usize>,
    age: i64,
) -> Verdict {
    let tier_limit = rules.expire_after.of(artifact.tier);
    if artifact.tags.is_empty() {
        let limit = rules.expire_untagged_after.min(tier_limit);
        return match limit.millis() {
            Some(millis) if age >= millis => Verdict::Expire(Rule::Untagged { limit }),
            _ => Verdict::Keep(Keep::Young {
                tier: artifact.tier,
                age,
                limit,
            }),
        };
    }
    if let Some((tag, _)) = artifact
        .tags
        .iter()
        .find(|(tag, _)| !rules.tag_in_filter(tag))
    {
        return Verdict::Keep(Keep::TagOutsideFilter(tag.clone()));
    }
    if let Some(rank) = rank
        && rank <= rules.keep_tagged as usize
    {
        return Verdict::Keep(Keep::NewestTagged {
            rank,
            of: rules.keep_tagged,
        });
    }
    match tier_limit.millis() {
        Some(millis) if age >= millis => Verdict::Expire(Rule::Tagged {
            keep_tagged: rules.keep_tagged,
            limit: tier_limit,
        }),
        _ => Verdict::Keep(Keep::Young {
            tier: artifact.tier,
            age,
            limit: tier_limit,
        }),
    }
}

#[cfg(test)]
#[path = "retention_tests.rs"]
mod tests;
