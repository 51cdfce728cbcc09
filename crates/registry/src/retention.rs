//! Retention, the first step of a garbage collection pass: for every repository a
//! policy governs, decide which manifests expire (`domain::retention::decide`) and
//! expire them, each in its own transaction that checks again that nothing pins it
//! (`store::Retention::expire`). Their blobs are then marked by the same pass and
//! deleted after the grace window like any other unreferenced blob.
//!
//! Which rules govern a repository: its application's own `retention` block, else the
//! `kind: RetentionPolicy` whose globs match it with the lowest priority (then the
//! first name); a repository nothing governs keeps everything. The release tier
//! (`release/…`) is never touched: everything in it is pinned.

use std::collections::BTreeMap;

use domain::retention::{
    Artifact, Decision, Keep, Pin, RetentionPolicy, RetentionRules, Tier, Verdict, decide,
    governing, render_age,
};
use domain::{RELEASE_NAMESPACE, RepoName};
use store::{Expiry, ExpiryOutcome, PinScope, Repository};

use crate::Registry;
use crate::collect::{CollectReport, GC_ACTOR, PassLease};

/// An application as retention needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplicationRetention {
    pub application: String,
    pub repository: RepoName,
    /// Its own `retention` block, which wins over any policy.
    pub rules: Option<RetentionRules>,
    /// Every environment of the application.
    pub environments: Vec<String>,
    /// The environments whose deployments make a digest `release`: the pipeline's
    /// last stage and every stage served from the release tier. Any other
    /// environment makes it `rc`.
    pub release_environments: Vec<String>,
}

/// Everything retention applies, read from the declared resources before a pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionPlan {
    pub policies: Vec<RetentionPolicy>,
    pub applications: Vec<ApplicationRetention>,
}

/// What retention did (or, dry, would do) in one repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositoryRetention {
    /// `RetentionPolicy/NAME` or `Application/NAME`.
    pub policy: String,
    pub repository: String,
    /// How many manifests it holds.
    pub manifests: u64,
    pub expired: Vec<ExpiredManifest>,
    /// Manifests the rules would expire that a pin saved.
    pub saved: Vec<SavedManifest>,
    /// Expiries refused when carried out: the manifest changed or became pinned.
    pub skipped: Vec<SkippedExpiry>,
}

/// One manifest retention expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiredManifest {
    pub digest: String,
    pub tags: Vec<String>,
    pub tier: Tier,
    /// Milliseconds in its tier.
    pub age: i64,
    pub rule: String,
}

/// One manifest a pin kept from expiring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedManifest {
    pub digest: String,
    pub tags: Vec<String>,
    pub tier: Tier,
    pub age: i64,
    /// The rule that would have expired it.
    pub rule: String,
    pub pins: Vec<String>,
}

/// An expiry refused when carried out, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedExpiry {
    pub digest: String,
    pub reason: String,
}

/// The rules governing one repository, and where they come from.
struct Governed<'a> {
    label: String,
    rules: &'a RetentionRules,
    owner: Option<&'a ApplicationRetention>,
}

impl RetentionPlan {
    fn governing(&self, repository: &RepoName) -> Option<Governed<'_>> {
        let owner = self
            .applications
            .iter()
            .find(|application| application.repository == *repository);
        if let Some(application) = owner
            && let Some(rules) = &application.rules
        {
            return Some(Governed {
                label: format!("Application/{}", application.application),
                rules,
                owner,
            });
        }
        governing(&self.policies, repository.as_str()).map(|policy| Governed {
            label: format!("RetentionPolicy/{}", policy.name),
            rules: &policy.rules,
            owner,
        })
    }

    /// Whether any repository could be governed at all.
    fn is_empty(&self) -> bool {
        self.policies.is_empty()
            && self
                .applications
                .iter()
                .all(|application| application.rules.is_none())
    }
}

fn release_repository(repository: &RepoName) -> String {
    format!("{RELEASE_NAMESPACE}/{}", repository.as_str())
}

impl Registry {
    /// Applies `plan` to every repository it governs: decides, and unless `dry_run`
    /// expires, each expiry after renewing the pass lease. Adds what it did to
    /// `report`.
    pub(crate) async fn apply_retention(
        &self,
        plan: &RetentionPlan,
        now: i64,
        lease: Option<&PassLease<'_>>,
        report: &mut CollectReport,
    ) {
        if plan.is_empty() {
            return;
        }
        let mut after: Option<String> = None;
        loop {
            let names = match self.store.repositories().list(after.as_deref(), 500).await {
                Ok(names) => names,
                Err(error) => return report.failed("listing repositories for retention", error),
            };
            let Some(last) = names.last() else {
                return;
            };
            after = Some(last.as_str().to_owned());
            for name in names {
                if name.as_str().starts_with(&format!("{RELEASE_NAMESPACE}/")) {
                    continue;
                }
                let Some(governed) = plan.governing(&name) else {
                    continue;
                };
                let mut stopped = false;
                let outcome = self
                    .retain_repository(&name, &governed, now, lease, report, &mut stopped)
                    .await;
                match outcome {
                    Ok(Some(done)) => report.retention.push(done),
                    Ok(None) => {}
                    Err(error) => report.failed(&format!("retention in {name}"), error),
                }
                if stopped {
                    return;
                }
            }
        }
    }

    async fn retain_repository(
        &self,
        name: &RepoName,
        governed: &Governed<'_>,
        now: i64,
        lease: Option<&PassLease<'_>>,
        report: &mut CollectReport,
        stopped: &mut bool,
    ) -> Result<Option<RepositoryRetention>, store::StoreError> {
        let Some(repository) = self.store.repositories().get(name).await? else {
            return Ok(None);
        };
        let manifests = self.store.retention().inventory(&repository).await?;
        let release = release_repository(name);
        let (pins, tiers) = match governed.owner {
            Some(owner) => (
                self.store
                    .retention()
                    .pins(&owner.application, governed.rules.rollback_window, &release)
                    .await?,
                tiers(
                    &self.store.retention().deployed(&owner.application).await?,
                    owner,
                ),
            ),
            None => (BTreeMap::new(), BTreeMap::new()),
        };
        let artifacts: Vec<Artifact> = manifests
            .into_iter()
            .map(|manifest| {
                let (tier, since) = tiers
                    .get(&manifest.digest)
                    .copied()
                    .unwrap_or((Tier::Dev, manifest.pushed_at));
                Artifact {
                    tier_since: since.max(manifest.pushed_at),
                    pins: pins.get(&manifest.digest).cloned().unwrap_or_default(),
                    digest: manifest.digest,
                    pushed_at: manifest.pushed_at,
                    tags: manifest.tags,
                    children: manifest.children,
                    subject: manifest.subject,
                    tier,
                }
            })
            .collect();
        let decisions = decide(&artifacts, governed.rules, now);
        let mut done = RepositoryRetention {
            policy: governed.label.clone(),
            repository: name.to_string(),
            manifests: artifacts.len() as u64,
            expired: Vec::new(),
            saved: Vec::new(),
            skipped: Vec::new(),
        };
        for decision in &decisions {
            if let (Verdict::Keep(Keep::Pinned(pins)), Some(rule)) =
                (&decision.verdict, &decision.saved_from)
            {
                done.saved.push(SavedManifest {
                    digest: decision.digest.clone(),
                    tags: decision.tags.clone(),
                    tier: decision.tier,
                    age: decision.age,
                    rule: rule.to_string(),
                    pins: pins.iter().map(Pin::to_string).collect(),
                });
            }
        }
        let scope = governed.owner.map(|owner| PinScope {
            application: &owner.application,
            environments: &owner.environments,
            rollback_window: governed.rules.rollback_window,
            release_repository: &release,
        });
        for decision in &decisions {
            let Verdict::Expire(rule) = &decision.verdict else {
                continue;
            };
            let expired = ExpiredManifest {
                digest: decision.digest.clone(),
                tags: decision.tags.clone(),
                tier: decision.tier,
                age: decision.age,
                rule: rule.to_string(),
            };
            let Some(lease) = lease else {
                report.manifests_expired += 1;
                done.expired.push(expired);
                continue;
            };
            match lease.hold().await {
                Ok(true) => {}
                Ok(false) => {
                    *stopped = true;
                    report.failed(
                        "retention",
                        "the pass lost its lease; another pass carries on",
                    );
                    break;
                }
                Err(error) => {
                    *stopped = true;
                    report.failed("renewing the pass lease", error);
                    break;
                }
            }
            match self
                .expire(
                    &repository,
                    decision,
                    &expired,
                    &governed.label,
                    scope.clone(),
                    now,
                )
                .await
            {
                Ok(ExpiryOutcome::Expired) => {
                    report.manifests_expired += 1;
                    done.expired.push(expired);
                }
                Ok(ExpiryOutcome::Gone) => {}
                Ok(ExpiryOutcome::Changed(reason)) => done.skipped.push(SkippedExpiry {
                    digest: decision.digest.clone(),
                    reason,
                }),
                Ok(ExpiryOutcome::Pinned(pins)) => done.skipped.push(SkippedExpiry {
                    digest: decision.digest.clone(),
                    reason: format!(
                        "pinned since it was decided: {}",
                        pins.iter()
                            .map(Pin::to_string)
                            .collect::<Vec<_>>()
                            .join("; ")
                    ),
                }),
                Err(error) => report.failed(&format!("expiring {}", decision.digest), error),
            }
        }
        Ok(Some(done))
    }

    async fn expire(
        &self,
        repository: &Repository,
        decision: &Decision,
        expired: &ExpiredManifest,
        policy: &str,
        scope: Option<PinScope<'_>>,
        now: i64,
    ) -> Result<ExpiryOutcome, store::StoreError> {
        let mut tags = decision.tags.clone();
        tags.sort();
        let reason = serde_json::json!({
            "policy": policy,
            "rule": expired.rule,
            "tier": expired.tier.as_str(),
            "age": render_age(expired.age),
        });
        self.store
            .retention()
            .expire(&Expiry {
                repository,
                digest: &decision.digest,
                tags: &tags,
                scope,
                actor: GC_ACTOR,
                reason,
                now,
            })
            .await
    }
}

/// Each deployed digest's tier and when its age in it starts: `release` or `rc` from
/// its last successful deployment to such an environment. A digest not in the map is
/// `dev`, its age counted from its push.
fn tiers(
    deployed: &[store::DeployedDigest],
    owner: &ApplicationRetention,
) -> BTreeMap<String, (Tier, i64)> {
    let mut tiers: BTreeMap<String, (Tier, i64)> = BTreeMap::new();
    for deployment in deployed {
        let tier = if owner.release_environments.contains(&deployment.environment) {
            Tier::Release
        } else {
            Tier::Rc
        };
        let at = deployment.last_deployed_at;
        tiers
            .entry(deployment.digest.clone())
            .and_modify(|(held, since)| {
                if tier > *held {
                    (*held, *since) = (tier, at);
                } else if tier == *held {
                    *since = (*since).max(at);
                }
            })
            .or_insert((tier, at));
    }
    tiers
}
