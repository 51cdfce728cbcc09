//! The reads that are whole use cases, as plain views any front end renders (the JSON
//! API now, HTML pages next): where an application's environments stand, its
//! deployment history, everything known about one artifact. Authorization stays with
//! the caller (`resources:read`); the rules of what is shown live here once.

use std::collections::BTreeMap;

use domain::dora::{DeploymentOutcome, DeploymentRecord, DoraMetrics};
use domain::promotion::DeploymentState;
use domain::{Digest, ResourceKind};
use store::{Build, CheckReport, Deployment, Hold, Observed, Promotion, Referrer};

use crate::{Engine, EngineError};

/// A deployment with the commit of the build it deployed, when notified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentSummary {
    pub deployment: Deployment,
    pub commit: Option<String>,
}

/// Where one environment of an application stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvironmentStatus {
    pub name: String,
    /// Promoted into automatically.
    pub auto: bool,
    /// The target kind its deployments go through.
    pub target: String,
    /// What runs there now: the last successful deployment.
    pub current: Option<DeploymentSummary>,
    /// The deployment under way, if any.
    pub deploying: Option<DeploymentSummary>,
    /// What a rollback without a target returns to: the newest successful deployment
    /// of another digest that no rollback left.
    pub previous: Option<DeploymentSummary>,
    /// The latest finished deployment, when it failed.
    pub failed: Option<DeploymentSummary>,
    pub hold: Option<Hold>,
    /// What an agent last reported it running.
    pub observed: Option<Observed>,
    /// Since when that differs from what Gantry deployed.
    pub drift_since: Option<i64>,
    /// Promotions into it that are not final yet.
    pub pending: Vec<Promotion>,
    /// The quarantine of the digest it runs now, if that digest is quarantined.
    pub quarantined: Option<store::Quarantine>,
}

/// An application and each of its environments, in pipeline order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplicationStatus {
    pub name: String,
    /// `container`, `static-site` or `infra`.
    pub app_type: String,
    pub repository: String,
    pub pipeline: String,
    pub environments: Vec<EnvironmentStatus>,
}

/// Everything known about one artifact of an application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactRecord {
    pub application: String,
    pub digest: String,
    pub build: Option<Build>,
    /// Every check report, oldest first.
    pub checks: Vec<CheckReport>,
    /// Every deployment of it, newest first.
    pub deployments: Vec<DeploymentSummary>,
    /// Every promotion of it with its decisions, newest first.
    pub promotions: Vec<Promotion>,
    /// The application's repository, and the manifests in it that refer to the
    /// artifact (signatures, SBOMs, attestations).
    pub repository: String,
    pub referrers: Vec<Referrer>,
}

/// DORA metrics over a window: overall, per application, and per period of it.
#[derive(Debug, Clone, PartialEq)]
pub struct DoraReport {
    pub overall: DoraMetrics,
    pub by_application: BTreeMap<String, DoraMetrics>,
    /// Consecutive periods, oldest first, covering the window.
    pub periods: Vec<DoraPeriod>,
}

/// The overall metrics of one period, `[start, end)` in milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct DoraPeriod {
    pub start: i64,
    pub end: i64,
    pub metrics: DoraMetrics,
}

/// `deployment` with the commit of its build in `builds`, if notified.
pub(crate) fn summary_of(
    deployment: Deployment,
    builds: &BTreeMap<(String, String), Build>,
) -> DeploymentSummary {
    let commit = builds
        .get(&(deployment.application.clone(), deployment.digest.clone()))
        .and_then(|build| build.provenance.commit.clone());
    DeploymentSummary { deployment, commit }
}

/// A millisecond instant as a timestamp (the epoch if out of range).
fn instant(millis: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_millisecond(millis).unwrap_or_default()
}

/// One page of a listing and where the next begins (`None` on the last).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T, K> {
    pub items: Vec<T>,
    pub next: Option<K>,
}

impl<T, K> Page<T, K> {
    /// The page of `limit` items out of `fetched`, which holds one more when another
    /// page follows (fetch `limit + 1`): then `next` is the key of its last item. The
    /// one rule every listing pages by, so a full last page has no `next`.
    pub fn from_one_more(mut fetched: Vec<T>, limit: i64, key: impl Fn(&T) -> K) -> Page<T, K> {
        let limit = usize::try_from(limit).unwrap_or(0);
        let more = fetched.len() > limit;
        fetched.truncate(limit);
        let next = if more { fetched.last().map(key) } else { None };
        Page {
            items: fetched,
            next,
        }
    }
}

impl Engine {
    /// The quarantines of what environments run now, by (application, environment),
    /// in one query.
    pub(crate) async fn quarantined_runs(
        &self,
    ) -> Result<BTreeMap<(String, String), store::Quarantine>, EngineError> {
        Ok(self
            .store
            .quarantines()
            .running()
            .await?
            .into_iter()
            .map(|run| {
                (
                    (run.quarantine.application.clone(), run.environment),
                    run.quarantine,
                )
            })
            .collect())
    }

    /// Where application `name` stands: each environment of its pipeline, in order.
    pub async fn application_status(&self, name: &str) -> Result<ApplicationStatus, EngineError> {
        let (application, pipeline) = self.declared(name).await?;
        let mut stored: BTreeMap<String, store::EnvironmentState> = self
            .store
            .environments()
            .of(name)
            .await?
            .into_iter()
            .map(|state| (state.environment.clone(), state))
            .collect();
        let pending = self.store.promotions().pending(name).await?;
        let mut quarantined = self.quarantined_runs().await?;
        let builds = self
            .builds_by_artifact(stored.values().flat_map(|state| {
                [
                    &state.current,
                    &state.deploying,
                    &state.previous,
                    &state.failed,
                ]
                .into_iter()
                .flatten()
            }))
            .await?;
        let summary = |deployment: Option<Deployment>| {
            deployment.map(|deployment| summary_of(deployment, &builds))
        };
        let mut environments = Vec::new();
        for stage in pipeline.pipeline().stages() {
            let environment = stage.environment.as_str();
            let state = stored.remove(environment);
            let state = state.unwrap_or_else(|| store::EnvironmentState::empty(name, environment));
            let target = application
                .environments
                .get(&stage.environment)
                .map_or("record", |spec| spec.target.kind_name());
            environments.push(EnvironmentStatus {
                name: environment.to_owned(),
                auto: stage.auto,
                target: target.to_owned(),
                current: summary(state.current),
                deploying: summary(state.deploying),
                previous: summary(state.previous),
                failed: summary(state.failed),
                hold: state.hold,
                observed: state.observed,
                drift_since: state.drift_since,
                pending: pending
                    .iter()
                    .filter(|promotion| promotion.environment == environment)
                    .cloned()
                    .collect(),
                quarantined: quarantined.remove(&(name.to_owned(), environment.to_owned())),
            });
        }
        Ok(ApplicationStatus {
            name: application.name.to_string(),
            app_type: application.app_type.as_str().to_owned(),
            repository: application.repository.to_string(),
            pipeline: application.pipeline.to_string(),
            environments,
        })
    }

    /// A page of applications by name, after `after`, each with where it stands.
    pub async fn applications(
        &self,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Page<ApplicationStatus, String>, EngineError> {
        let stored = self
            .store
            .resources()
            .list(ResourceKind::Application, after, limit + 1)
            .await?;
        let page = Page::from_one_more(stored, limit, |resource| resource.name.clone());
        let mut items = Vec::with_capacity(page.items.len());
        for resource in page.items {
            items.push(self.application_status(&resource.name).await?);
        }
        Ok(Page {
            items,
            next: page.next,
        })
    }

    /// A page of an application's deployments, newest first, optionally of one
    /// environment, with ids below `before`.
    pub async fn history(
        &self,
        application: &str,
        environment: Option<&str>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Page<DeploymentSummary, i64>, EngineError> {
        self.require_application(application).await?;
        let deployments = self
            .store
            .deployments()
            .history(application, environment, before, limit + 1)
            .await?;
        let page = Page::from_one_more(deployments, limit, |deployment| deployment.id);
        Ok(Page {
            items: self.summarize(page.items).await?,
            next: page.next,
        })
    }

    /// Everything known about artifact `digest` of `application`: its build, its
    /// checks, its promotions with their decisions, its deployments and its
    /// referrers.
    pub async fn artifact(
        &self,
        application: &str,
        digest: &Digest,
    ) -> Result<ArtifactRecord, EngineError> {
        let (declared, _) = self.declared(application).await?;
        let text = digest.to_string();
        let evidence = self.store.evidence();
        let build = evidence.build(application, &text).await?;
        let checks = evidence.checks(application, &text).await?;
        let deployments = self
            .store
            .deployments()
            .deployments_of(application, &text)
            .await?;
        let promotions = self
            .store
            .promotions()
            .of_digest(application, &text)
            .await?;
        let referrers = match self.store.repositories().get(&declared.repository).await? {
            Some(repository) => {
                self.store
                    .manifests()
                    .referrers(repository.id, digest, None)
                    .await?
            }
            None => Vec::new(),
        };
        Ok(ArtifactRecord {
            application: application.to_owned(),
            deployments: self.summarize(deployments).await?,
            digest: text,
            build,
            checks,
            promotions,
            repository: declared.repository.to_string(),
            referrers,
        })
    }

    /// The newest `limit` builds notified for `application`, newest first: what a
    /// person picks from to promote.
    pub async fn recent_builds(
        &self,
        application: &str,
        limit: i64,
    ) -> Result<Vec<Build>, EngineError> {
        self.require_application(application).await?;
        Ok(self
            .store
            .evidence()
            .recent_builds(application, limit)
            .await?)
    }

    /// The applications that know artifact `digest` (built, promoted or deployed it),
    /// by name.
    pub async fn applications_knowing(&self, digest: &Digest) -> Result<Vec<String>, EngineError> {
        Ok(self
            .store
            .evidence()
            .applications_knowing(&digest.to_string())
            .await?)
    }

    /// The four DORA metrics over deployments to production finished between
    /// `since` and `until` (milliseconds since the Unix epoch), overall and per
    /// application, for one application or all. An application's production is the
    /// last stage of its pipeline.
    pub async fn dora(
        &self,
        only: Option<&str>,
        since: i64,
        until: i64,
    ) -> Result<(DoraMetrics, BTreeMap<String, DoraMetrics>), EngineError> {
        let records = self.production_records(only, since).await?;
        Ok(domain::dora::compute_by_application(
            &records,
            instant(since),
            instant(until + 1),
        ))
    }

    /// [`Engine::dora`] with the window also cut into consecutive periods of
    /// `period` milliseconds (the last one ends at `until`), each period's overall
    /// metrics computed alone: the series a chart draws. One read of the records.
    pub async fn dora_report(
        &self,
        only: Option<&str>,
        since: i64,
        until: i64,
        period: i64,
    ) -> Result<DoraReport, EngineError> {
        let records = self.production_records(only, since).await?;
        let (overall, by_application) =
            domain::dora::compute_by_application(&records, instant(since), instant(until + 1));
        let mut periods = Vec::new();
        let mut end = until + 1;
        while end > since && period > 0 {
            let start = (end - period).max(since);
            periods.push(DoraPeriod {
                start,
                end,
                metrics: domain::dora::compute(&records, instant(start), instant(end)),
            });
            end = start;
        }
        periods.reverse();
        Ok(DoraReport {
            overall,
            by_application,
            periods,
        })
    }

    /// The finished deployments to production (of one application or all) since
    /// `since`, each with the commit time of its build.
    async fn production_records(
        &self,
        only: Option<&str>,
        since: i64,
    ) -> Result<Vec<DeploymentRecord>, EngineError> {
        let productions = self.production_environments(only).await?;
        let deployments = self
            .store
            .deployments()
            .finished_since(&productions, since)
            .await?;
        let builds = self.builds_by_artifact(deployments.iter()).await?;
        let mut records = Vec::with_capacity(deployments.len());
        for deployment in deployments {
            let outcome = match deployment.state {
                DeploymentState::Deployed => DeploymentOutcome::Succeeded,
                DeploymentState::Failed => DeploymentOutcome::Failed,
                DeploymentState::Deploying => continue,
            };
            let Some(finished_at) = deployment
                .finished_at
                .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
            else {
                continue;
            };
            let committed_at = builds
                .get(&(deployment.application.clone(), deployment.digest.clone()))
                .and_then(|build| build.provenance.committed_at)
                .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok());
            records.push(DeploymentRecord {
                application: deployment.application,
                environment: deployment.environment,
                digest: deployment.digest,
                reason: deployment.reason,
                outcome,
                finished_at,
                committed_at,
            });
        }
        Ok(records)
    }

    /// (application, last stage) of one application or of all.
    async fn production_environments(
        &self,
        only: Option<&str>,
    ) -> Result<Vec<(String, String)>, EngineError> {
        let names: Vec<String> = match only {
            Some(name) => vec![name.to_owned()],
            None => {
                let mut names = Vec::new();
                let mut after: Option<String> = None;
                loop {
                    let page = self
                        .store
                        .resources()
                        .list(ResourceKind::Application, after.as_deref(), 500)
                        .await?;
                    let done = page.len() < 500;
                    after = page.last().map(|resource| resource.name.clone());
                    names.extend(page.into_iter().map(|resource| resource.name));
                    if done {
                        break;
                    }
                }
                names
            }
        };
        let mut environments = Vec::with_capacity(names.len());
        for name in names {
            // An application whose stored texts no longer read back has no production.
            let pipeline = match self.declared(&name).await {
                Ok((_, pipeline)) => pipeline,
                Err(EngineError::Corrupt(_)) => continue,
                Err(error) => return Err(error),
            };
            if let Some(last) = pipeline.pipeline().stages().last() {
                environments.push((name, last.environment.to_string()));
            }
        }
        Ok(environments)
    }

    /// Each deployment with the commit of its build (the builds read in one query per
    /// 200 artifacts).
    pub async fn summarize(
        &self,
        deployments: Vec<Deployment>,
    ) -> Result<Vec<DeploymentSummary>, EngineError> {
        let builds = self.builds_by_artifact(deployments.iter()).await?;
        Ok(deployments
            .into_iter()
            .map(|deployment| summary_of(deployment, &builds))
            .collect())
    }

    /// The builds of the artifacts `deployments` deployed, by (application, digest),
    /// read in one query per 200 distinct artifacts.
    async fn builds_by_artifact(
        &self,
        deployments: impl Iterator<Item = &Deployment>,
    ) -> Result<BTreeMap<(String, String), Build>, EngineError> {
        let artifacts: std::collections::BTreeSet<(String, String)> = deployments
            .map(|d| (d.application.clone(), d.digest.clone()))
            .collect();
        let artifacts: Vec<(String, String)> = artifacts.into_iter().collect();
        let mut builds = BTreeMap::new();
        for chunk in artifacts.chunks(200) {
            for build in self.store.evidence().builds_of(chunk).await? {
                builds.insert((build.application.clone(), build.digest.clone()), build);
            }
        }
        Ok(builds)
    }

    /// `UnknownApplication` unless `application` is declared.
    async fn require_application(&self, application: &str) -> Result<(), EngineError> {
        match self
            .store
            .resources()
            .get(ResourceKind::Application, application)
            .await?
        {
            Some(_) => Ok(()),
            None => Err(EngineError::UnknownApplication(application.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_has_a_next_only_when_another_follows() {
        let full = Page::from_one_more(vec![1, 2, 3], 3, |n| *n);
        assert_eq!((full.items, full.next), (vec![1, 2, 3], None));
        let more = Page::from_one_more(vec![1, 2, 3, 4], 3, |n| *n);
        assert_eq!((more.items, more.next), (vec![1, 2, 3], Some(3)));
        let short = Page::from_one_more(vec![1], 3, |n| *n);
        assert_eq!((short.items, short.next), (vec![1], None));
    }
}
