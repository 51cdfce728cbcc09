//! Carrying out deployments as durable jobs (see `store::Jobs`). A deployment
//! requested through the API is started at once in a task of its own, and the request
//! waits for it (and what it leads to) for a bounded time; the job itself lives in the
//! store, so nothing is lost if this replica dies: the background worker
//! ([`Engine::work`]) picks up jobs whose lease ran out, and retries transient
//! failures with jittered exponential backoff. While a deployer runs, the lease is
//! renewed by heartbeats; a replica that loses its lease stops and records nothing, so
//! a job is finished exactly once. Each step goes into the deployment's log.

use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::Duration;

use store::{ClaimedJob, DeploymentOrder};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;

use crate::Engine;
use deploy::{DeployError, DeployLog};

/// How deploy jobs are run. Every field has a default suited to one server.
#[derive(Debug, Clone)]
pub struct JobSettings {
    /// How long a claimed job stays this replica's without a heartbeat; after a crash,
    /// the job is picked up again once this has passed.
    pub lease: Duration,
    /// Attempts in all (the first included) before a transient failure is final.
    pub max_attempts: u32,
    /// The wait before the second attempt; it doubles for each further one, up to
    /// `retry_max`, and is jittered (between half and all of it).
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// How long one attempt may take (deploying and verifying) before it fails; targets
    /// with a timeout of their own (`command`, `webhook`) get at least that plus a minute.
    pub timeout: Duration,
    /// How long an API request that started a deployment waits for it to finish before
    /// answering with the promotion still `deploying`.
    pub wait: Duration,
    /// How often the worker looks for due jobs when nothing wakes it earlier.
    pub poll: Duration,
    /// Jobs the background worker runs at once.
    pub concurrency: usize,
    /// This replica's name in leases and logs (`gantry` by default; the server
    /// names it after the host).
    pub replica: String,
}

impl Default for JobSettings {
    fn default() -> Self {
        JobSettings {
            lease: Duration::from_secs(30),
            max_attempts: 5,
            retry_base: Duration::from_secs(2),
            retry_max: Duration::from_secs(300),
            timeout: Duration::from_secs(30 * 60),
            wait: Duration::from_secs(60),
            poll: Duration::from_secs(1),
            concurrency: 8,
            replica: "gantry".to_owned(),
        }
    }
}

/// This replica's job machinery, shared by the engine's clones.
pub(crate) struct JobRuntime {
    pub(crate) settings: JobSettings,
    /// `REPLICA/RANDOM`: unique per process, so a restarted server does not mistake
    /// its predecessor's leases for its own.
    pub(crate) owner: String,
    /// Wakes the background worker (a job was released for a retry).
    wake: Notify,
    slots: Arc<Semaphore>,
}

impl JobRuntime {
    pub(crate) fn new(settings: JobSettings) -> JobRuntime {
        let owner = format!("{}/{:016x}", settings.replica, random_u64());
        let slots = Arc::new(Semaphore::new(settings.concurrency.max(1)));
        JobRuntime {
            settings,
            owner,
            wake: Notify::new(),
            slots,
        }
    }
}

impl std::fmt::Debug for JobRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobRuntime")
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

/// How an attempt ended.
enum Attempt {
    Finished(Result<String, String>),
    Retry(String),
    /// The lease passed to another replica: it records the outcome, not this one.
    LeaseLost,
}

impl Engine {
    /// The name this replica holds leases under.
    pub fn job_owner(&self) -> &str {
        &self.jobs.owner
    }

    /// Starts deployment `id`'s job now, in a task of its own, if it is due (new, or
    /// its lease ran out). The task ends when the job and what it leads to (the queued
    /// promotion, auto-promotion, auto-rollback) are done, or the job was released for
    /// a retry.
    pub(crate) fn start(&self, id: i64) -> JoinHandle<()> {
        let engine = self.clone();
        tokio::spawn(async move {
            match engine.claim(Some(id)).await {
                Some(job) => engine.execute(job).await,
                None => tracing::debug!(deployment = id, "deploy job not due here"),
            }
        })
    }

    /// Starts deployment `id` and waits for it (retries included) as long as requests
    /// wait.
    pub(crate) async fn start_and_wait(&self, id: i64) {
        let deadline = tokio::time::Instant::now() + self.jobs.settings.wait;
        let handle = self.start(id);
        if tokio::time::timeout_at(deadline, handle).await.is_ok() {
            // Done here, unless it was released for a retry the worker will run.
            while tokio::time::Instant::now() < deadline {
                match self.store.jobs().get(id).await {
                    Ok(Some(job)) if job.finished_at.is_none() => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    _ => return,
                }
            }
        }
        tracing::info!(
            deployment = id,
            "deployment still running; answering before it finishes"
        );
    }

    async fn claim(&self, only: Option<i64>) -> Option<ClaimedJob> {
        let lease = millis(self.jobs.settings.lease);
        match self
            .store
            .jobs()
            .claim(only, &self.jobs.owner, store::now_millis(), lease)
            .await
        {
            Ok(job) => job,
            Err(error) => {
                tracing::warn!(%error, "claiming a deploy job failed");
                None
            }
        }
    }

    /// Runs due deploy jobs until `shutdown` turns true: those released for a retry
    /// and those whose replica died. Every replica runs one; leases keep them apart.
    pub async fn work(&self, shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut shutdown = shutdown;
        tracing::info!(owner = %self.jobs.owner, "deploy worker started");
        loop {
            while let Ok(slot) = self.jobs.slots.clone().try_acquire_owned() {
                let Some(job) = self.claim(None).await else {
                    break;
                };
                tracing::info!(
                    deployment = job.order.deployment_id,
                    attempt = job.attempt,
                    "picked up a deploy job"
                );
                let engine = self.clone();
                tokio::spawn(async move {
                    engine.execute(job).await;
                    drop(slot);
                });
            }
            self.take_over_follow_ups().await;
            let pause = self.until_next_due().await;
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = self.jobs.wake.notified() => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// How long the worker may sleep: until the next job is due, at most `poll`.
    async fn until_next_due(&self) -> Duration {
        let poll = self.jobs.settings.poll;
        match self.store.jobs().next_due().await {
            Ok(Some(due)) => {
                let wait = due - store::now_millis();
                if wait <= 0 {
                    // Due, but every slot is taken (or it was just claimed).
                    poll.min(Duration::from_millis(200))
                } else {
                    poll.min(Duration::from_millis(wait.unsigned_abs()))
                }
            }
            Ok(None) => poll,
            Err(error) => {
                tracing::warn!(%error, "reading deploy jobs failed");
                poll
            }
        }
    }

    /// One attempt at a claimed job, then what its outcome leads to.
    async fn execute(&self, job: ClaimedJob) {
        let order = job.order;
        let id = order.deployment_id;
        let (log, mut lines) = DeployLog::channel();
        let store = self.store.clone();
        let writer = tokio::spawn(async move {
            while let Some(line) = lines.recv().await {
                let mut batch = vec![line];
                while let Ok(more) = lines.try_recv() {
                    batch.push(more);
                }
                if let Err(error) = store
                    .jobs()
                    .append_log(id, store::now_millis(), &batch)
                    .await
                {
                    tracing::warn!(deployment = id, %error, "writing the deployment log failed");
                }
            }
        });
        log.line(format!(
            "attempt {} of {} by {}: deploying {} to {}/{}",
            job.attempt,
            self.jobs.settings.max_attempts,
            job.lease,
            order.digest,
            order.application,
            order.environment
        ));
        // Attempts are counted as they are claimed, so a deployment that kills its
        // replica every time (and never reports a transient failure) ends too.
        let attempt = if job.attempt > self.jobs.settings.max_attempts {
            Attempt::Finished(Err(format!(
                "gave up after {} attempts: the replicas running it stopped before it finished",
                job.attempt - 1
            )))
        } else {
            self.attempt(&order, job.attempt, &job.lease, &log).await
        };
        let outcome = match attempt {
            Attempt::LeaseLost => {
                log.line("the job's lease passed to another replica; this attempt records nothing");
                None
            }
            Attempt::Retry(error) => {
                let delay = backoff(&self.jobs.settings, job.attempt);
                log.line(format!(
                    "transient failure: {error}; retrying in {:.1} s",
                    delay.as_secs_f64()
                ));
                let run_after = store::now_millis() + millis(delay);
                match self
                    .store
                    .jobs()
                    .release(id, &job.lease, run_after, &error)
                    .await
                {
                    Ok(true) => self.jobs.wake.notify_one(),
                    Ok(false) => log.line("the job's lease passed to another replica"),
                    Err(error) => {
                        // The lease runs out by itself and the job is retried then.
                        tracing::warn!(deployment = id, %error, "releasing a deploy job failed");
                    }
                }
                None
            }
            Attempt::Finished(result) => {
                match &result {
                    Ok(note) => log.line(format!("deployed: {note}")),
                    Err(reason) => log.line(format!("failed: {reason}")),
                }
                Some(result)
            }
        };
        drop(log);
        // The log's last lines before the outcome, so a finished deployment shows its
        // whole log. Deployers may have handed the log to tasks of their own: wait no
        // longer than a heartbeat interval, so the lease is still fresh at the finish.
        let _ = tokio::time::timeout(self.jobs.settings.lease / 3, writer).await;
        if let Some(result) = outcome
            && let Err(error) = self.finished(&order, &job.lease, result).await
        {
            tracing::warn!(deployment = id, %error, "recording a finished deployment failed");
        }
    }

    /// Deploys (and verifies) under the job's timeout while renewing its lease.
    async fn attempt(
        &self,
        order: &DeploymentOrder,
        attempt: u32,
        lease: &str,
        log: &DeployLog,
    ) -> Attempt {
        let settings = &self.jobs.settings;
        // Read once: the timeout and the deployment both follow the declaration.
        let loaded = self.load(&order.application).await;
        let limit = self.job_timeout(order, loaded.as_ref().ok());
        let work = tokio::time::timeout(limit, self.deploy(order, loaded, attempt, log));
        tokio::pin!(work);
        let mut beat = tokio::time::interval(settings.lease / 3);
        beat.tick().await;
        loop {
            tokio::select! {
                outcome = &mut work => {
                    return match outcome {
                        Ok(Ok(note)) => Attempt::Finished(Ok(note)),
                        Ok(Err(DeployError::Transient(error))) if attempt < settings.max_attempts => {
                            Attempt::Retry(error)
                        }
                        Ok(Err(DeployError::Transient(error))) => Attempt::Finished(Err(format!(
                            "{error} (gave up after {attempt} attempts)"
                        ))),
                        Ok(Err(DeployError::Failed(error))) => Attempt::Finished(Err(error)),
                        Err(_) => Attempt::Finished(Err(format!(
                            "the deployment did not finish within {} s",
                            limit.as_secs()
                        ))),
                    };
                }
                _ = beat.tick() => {
                    let until = store::now_millis() + millis(settings.lease);
                    match self.store.jobs().heartbeat(order.deployment_id, lease, until).await {
                        Ok(true) => {}
                        Ok(false) => return Attempt::LeaseLost,
                        Err(error) => {
                            tracing::warn!(deployment = order.deployment_id, %error, "renewing a deploy job's lease failed");
                        }
                    }
                }
            }
        }
    }

    /// The time one attempt may take: the settings', or a target's own timeout plus a
    /// minute when that is longer.
    fn job_timeout(&self, order: &DeploymentOrder, loaded: Option<&crate::Loaded>) -> Duration {
        let default = self.jobs.settings.timeout;
        let Some(loaded) = loaded else {
            return default;
        };
        let own = loaded
            .application
            .environments
            .iter()
            .find(|(name, _)| name.as_str() == order.environment)
            .and_then(|(_, spec)| match &spec.target {
                resources::Target::Command(command) => Some(command.timeout),
                resources::Target::Webhook(webhook) => Some(webhook.timeout),
                _ => None,
            });
        match own {
            Some(own) => default.max(own + Duration::from_secs(60)),
            None => default,
        }
    }

    /// Records the outcome and starts what it leads to.
    async fn finished(
        &self,
        order: &DeploymentOrder,
        lease: &str,
        result: Result<String, String>,
    ) -> Result<(), crate::EngineError> {
        let (succeeded, message) = match &result {
            Ok(message) => (true, message.as_str()),
            Err(message) => (false, message.as_str()),
        };
        // One log record per line: a program's output spans several.
        let mut lines = message.lines();
        tracing::info!(
            deployment = order.deployment_id,
            application = %order.application,
            environment = %order.environment,
            digest = %order.digest,
            succeeded,
            message = lines.next().unwrap_or_default(),
            "deployment finished"
        );
        for line in lines.filter(|line| !line.trim().is_empty()) {
            tracing::info!(deployment = order.deployment_id, line, "deployment message");
        }
        let finished = crate::error::from_outcome(
            self.store
                .deployments()
                .finish_deployment(
                    order.deployment_id,
                    lease,
                    succeeded,
                    Some(message),
                    self.clock.now_millis(),
                )
                .await?,
        )?;
        if !finished.recorded {
            tracing::info!(
                deployment = order.deployment_id,
                "the deployment was finished elsewhere; nothing recorded"
            );
            return Ok(());
        }
        if let Some(next) = finished.next {
            // Runs on its own: this chain does not wait for promotions queued behind it.
            drop(self.start(next.deployment_id));
        }
        self.follow_up(order, succeeded, message, None).await;
        Ok(())
    }

    /// What a finished deployment leads to: after a success, its signed attestations,
    /// stored beside the image (see the `attestation` module); after a failure, the
    /// auto-rollback (unless something newer was deployed there since, such as the
    /// promotion queued behind it); after a successful promotion, the auto-promotion
    /// into the next stage (unless that happened already); last, the attestations
    /// handed to the target. Each is idempotent, so the follow-up can be run again by
    /// another replica when the one that finished the deployment died before it was
    /// done; it is marked done only when every step succeeded.
    async fn follow_up(
        &self,
        order: &DeploymentOrder,
        succeeded: bool,
        message: &str,
        lease: Option<&str>,
    ) {
        let id = order.deployment_id;
        use domain::promotion::DeploymentReason;
        // Every step runs, each whatever became of the others (each is idempotent when
        // the follow-up is run again); the first failure leaves the follow-up due.
        let mut outcome: Result<(), crate::EngineError> = Ok(());
        let mut keep = |result: Result<(), crate::EngineError>| {
            if outcome.is_ok() {
                outcome = result;
            }
        };
        // The attestations signed and stored beside the image first: admission with
        // `require_attestation` waits for them, not for the next stage's deployment.
        if succeeded {
            keep(self.attest(order).await);
        }
        if !succeeded && order.reason != DeploymentReason::Rollback {
            let rollback = async {
                if !self
                    .store
                    .jobs()
                    .newer_deployment(&order.application, &order.environment, id)
                    .await?
                {
                    self.auto_rollback(order, message).await?;
                }
                Ok(())
            };
            keep(rollback.await);
        }
        if succeeded && order.reason == DeploymentReason::Promotion {
            keep(self.auto_next(order).await);
        }
        // Carried to where the target put the image last: a destination that is down
        // holds nothing else up.
        if succeeded {
            keep(self.carry_attestations(order).await);
        }
        match outcome {
            Ok(()) => {
                if let Err(error) = self.store.jobs().follow_up_done(id, lease).await {
                    tracing::warn!(deployment = id, %error, "marking a follow-up done failed");
                }
            }
            // Left due: a worker tries again once the grace period has passed.
            Err(error) => {
                tracing::warn!(deployment = id, %error, "what the deployment leads to did not happen; it will be retried")
            }
        }
    }

    /// Runs the follow-ups that replicas which died after finishing a deployment left.
    async fn take_over_follow_ups(&self) {
        let lease = millis(self.jobs.settings.lease);
        loop {
            match self
                .store
                .jobs()
                .claim_follow_up(&self.jobs.owner, store::now_millis(), lease)
                .await
            {
                Ok(Some(claimed)) => {
                    tracing::info!(
                        deployment = claimed.order.deployment_id,
                        "taking over what a finished deployment leads to"
                    );
                    let message = claimed.message.unwrap_or_default();
                    self.follow_up(
                        &claimed.order,
                        claimed.succeeded,
                        &message,
                        Some(&claimed.lease),
                    )
                    .await;
                }
                Ok(None) => return,
                Err(error) => {
                    tracing::warn!(%error, "claiming a follow-up failed");
                    return;
                }
            }
        }
    }
}

/// The wait before attempt `attempt + 1`: `retry_base · 2^(attempt-1)`, at most
/// `retry_max`, jittered down to between half and all of it so replicas that failed
/// together do not retry together.
pub(crate) fn backoff(settings: &JobSettings, attempt: u32) -> Duration {
    let exponent = attempt.saturating_sub(1).min(20);
    let full = settings
        .retry_base
        .saturating_mul(1u32 << exponent)
        .min(settings.retry_max);
    let fraction = 0.5 + (random_u64() % 1_000) as f64 / 2_000.0;
    full.mul_f64(fraction)
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// A random number from the standard library's per-process hash keys (enough for
/// jitter and lease owner names; nothing secret depends on it).
fn random_u64() -> u64 {
    std::collections::hash_map::RandomState::new().hash_one(std::time::SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter() {
        let settings = JobSettings {
            retry_base: Duration::from_secs(2),
            retry_max: Duration::from_secs(20),
            ..JobSettings::default()
        };
        for (attempt, full) in [
            (1, 2.0),
            (2, 4.0),
            (3, 8.0),
            (4, 16.0),
            (5, 20.0),
            (40, 20.0),
        ] {
            for _ in 0..50 {
                let wait = backoff(&settings, attempt).as_secs_f64();
                assert!(
                    wait >= full / 2.0 - 1e-9 && wait <= full + 1e-9,
                    "attempt {attempt}: {wait} not within [{}, {full}]",
                    full / 2.0
                );
            }
        }
        let spread: std::collections::BTreeSet<u128> =
            (0..50).map(|_| backoff(&settings, 3).as_millis()).collect();
        assert!(spread.len() > 5, "jitter varies the wait: {spread:?}");
    }
}
