//! The reconcile loop: reads back what each environment's target actually holds — the
//! value at the git head, the destination registry's tag, the bucket's
//! `deployed.json` — and records it as an observation, which flags drift (in the API,
//! `/metrics` and the audit log) when it differs from what Gantry deployed and clears
//! it when they agree again. One replica at a time runs it, whoever holds the
//! `reconcile` lease in the store. Environments with a deployment under way are left
//! alone until it finishes (the target holds the new digest before Gantry records it),
//! and a read-back is dropped when a deployment started or finished while it was taken.

use std::time::Duration;

use domain::ResourceKind;

use crate::Engine;
use deploy::ObserveContext;

/// Who reconcile observations are recorded as.
pub const RECONCILE_ACTOR: &str = "gantry-reconcile";

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Environments whose target reported a digest.
    pub observed: usize,
    /// Of those, how many differ from what Gantry deployed.
    pub drifting: usize,
    /// Environments whose target could not be read (logged).
    pub failed: usize,
}

impl Engine {
    /// Runs a reconcile pass every `interval` while this replica holds the lease, until
    /// `shutdown` turns true.
    pub async fn reconcile_loop(
        &self,
        interval: Duration,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut shutdown = shutdown;
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.changed() => return,
            }
            if self.leads("reconcile", interval).await {
                match self.reconcile().await {
                    Ok(report) => tracing::debug!(?report, "reconciled"),
                    Err(error) => tracing::warn!(%error, "a reconcile pass failed"),
                }
            }
        }
    }

    /// Whether this replica holds, or has just taken, the lease on the background work
    /// `name` done every `period`: three periods long, renewed by its holder, so a
    /// holder that misses a beat keeps it and another replica takes it over when the
    /// holder dies. A failure to reach the store is logged and counts as not leading.
    pub async fn leads(&self, name: &str, period: std::time::Duration) -> bool {
        let now = store::now_millis();
        let lease = i64::try_from(period.as_millis().saturating_mul(3)).unwrap_or(i64::MAX);
        match self
            .store
            .jobs()
            .lead(name, self.job_owner(), now, now.saturating_add(lease))
            .await
        {
            Ok(true) => true,
            Ok(false) => {
                tracing::debug!(work = name, "another replica holds the lease");
                false
            }
            Err(error) => {
                tracing::warn!(%error, work = name, "taking the lease failed");
                false
            }
        }
    }

    /// One pass over every environment Gantry has deployed to.
    pub async fn reconcile(&self) -> Result<ReconcileReport, crate::EngineError> {
        let mut report = ReconcileReport::default();
        let mut after: Option<String> = None;
        loop {
            let page = self
                .store
                .resources()
                .list(ResourceKind::Application, after.as_deref(), 100)
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.name.clone());
            for application in &page {
                if let Err(error) = self
                    .reconcile_application(&application.name, &mut report)
                    .await
                {
                    report.failed += 1;
                    tracing::warn!(application = %application.name, %error, "reconciling an application failed");
                }
            }
            if page.len() < 100 {
                break;
            }
        }
        Ok(report)
    }

    async fn reconcile_application(
        &self,
        application: &str,
        report: &mut ReconcileReport,
    ) -> Result<(), crate::EngineError> {
        let loaded = self.load(application).await?;
        let states = self.store.environments().of(application).await?;
        for state in states {
            let Some(current) = &state.current else {
                continue;
            };
            let Some((name, spec)) = loaded
                .application
                .environments
                .iter()
                .find(|(name, _)| name.as_str() == state.environment)
            else {
                continue;
            };
            let Some(deployer) = self.deployers.get(spec.target.kind_name()) else {
                continue;
            };
            if self
                .store
                .jobs()
                .deploying(application, &state.environment)
                .await?
            {
                continue;
            }
            let repository = loaded
                .pipeline
                .release_tier(name)
                .repository(&loaded.application.repository)
                .map_err(|e| crate::EngineError::Corrupt(e.to_string()))?
                .to_string();
            let target = ObserveContext {
                application,
                environment: &state.environment,
                spec,
                repository: &repository,
            };
            match deployer.observe(&target).await {
                Ok(Some(_))
                    if self
                        .changed_meanwhile(application, &state.environment, current.id)
                        .await? =>
                {
                    // A deployment started or finished while the target was read: what
                    // was read may predate it. The next pass reads again.
                }
                Ok(Some(digest)) => {
                    report.observed += 1;
                    if digest != current.digest {
                        report.drifting += 1;
                    }
                    let by = format!("{RECONCILE_ACTOR} ({})", spec.target.kind_name());
                    self.store
                        .environments()
                        .observe(
                            application,
                            &state.environment,
                            &digest,
                            &by,
                            self.clock.now_millis(),
                        )
                        .await?;
                }
                Ok(None) => {}
                Err(error) => {
                    report.failed += 1;
                    tracing::warn!(application, environment = %state.environment, %error, "reading back what the target holds failed");
                }
            }
        }
        Ok(())
    }

    /// Whether the environment's current deployment is no longer `current`, or a
    /// deployment into it is under way.
    async fn changed_meanwhile(
        &self,
        application: &str,
        environment: &str,
        current: i64,
    ) -> Result<bool, crate::EngineError> {
        if self
            .store
            .jobs()
            .deploying(application, environment)
            .await?
        {
            return Ok(true);
        }
        let now = self
            .store
            .environments()
            .of(application)
            .await?
            .into_iter()
            .find(|state| state.environment == environment)
            .and_then(|state| state.current)
            .map(|deployment| deployment.id);
        Ok(now != Some(current))
    }
}
