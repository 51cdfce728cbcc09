//! One attempt at a deployment: link a release tier's artifact, hand the order to
//! the target's deployer with a pullable image reference, then run the environment's
//! health check through the outbound guard.

use domain::Digest;
use domain::pipeline::EnvName;
use store::DeploymentOrder;

use deploy::{DeployContext, DeployError, DeployLog, DeployResult};

use crate::{Engine, EngineError, Loaded};

impl Engine {
    /// Checks an environment answers its health check: `retries` more attempts a second
    /// apart after a failed one, each within the check's timeout, through the outbound
    /// guard.
    pub(crate) async fn health(&self, check: &resources::HealthCheck) -> Result<String, String> {
        let agent = outbound::agent(self.outbound.clone(), check.timeout);
        let url = check.url.as_str().to_owned();
        let mut last = String::new();
        for attempt in 0..=check.retries {
            if attempt > 0 {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            let agent = agent.clone();
            let target = url.clone();
            let answer = tokio::task::spawn_blocking(move || agent.get(&target).call())
                .await
                .map_err(|e| e.to_string())?;
            match answer {
                Ok(response) if response.status().as_u16() == check.expect_status => {
                    return Ok(format!("{url} answered {}", check.expect_status));
                }
                Ok(response) => {
                    last = format!(
                        "{url} answered {}, not {}",
                        response.status().as_u16(),
                        check.expect_status
                    );
                }
                Err(error) => last = format!("{url}: {error}"),
            }
        }
        Err(last)
    }

    /// One attempt at a deployment: links a release tier's artifact, hands the order to
    /// the target's deployer, then runs the environment's health check.
    pub(crate) async fn deploy(
        &self,
        order: &DeploymentOrder,
        loaded: Result<Loaded, EngineError>,
        attempt: u32,
        log: &DeployLog,
    ) -> DeployResult {
        let loaded = loaded.map_err(|e| DeployError::Transient(e.to_string()))?;
        let environment = EnvName::parse(&order.environment).map_err(|e| e.to_string())?;
        let Some(spec) = loaded.application.environments.get(&environment) else {
            return Err(DeployError::Failed(format!(
                "{} declares no environment {}",
                order.application, order.environment
            )));
        };
        // A release-tier stage serves its artifacts from the tier repository: the
        // manifest (with its children and blobs) is linked there before deploying.
        let tier = loaded.pipeline.release_tier(&environment);
        let shared = &loaded.application.repository;
        let serves_from = tier.repository(shared).map_err(|e| e.to_string())?;
        if tier != resources::ReleaseTier::Shared {
            let digest = Digest::parse(&order.digest).map_err(|e| e.to_string())?;
            let linked = self
                .store
                .manifests()
                .link_into(shared, &digest, &serves_from, &order.requested_by)
                .await
                .map_err(|e| {
                    DeployError::Transient(format!("linking {digest} into {serves_from}: {e}"))
                })?;
            if !linked {
                return Err(DeployError::Failed(format!(
                    "{digest} is no longer in {shared}"
                )));
            }
        }
        let Some(deployer) = self.deployers.get(spec.target.kind_name()) else {
            return Err(DeployError::Failed(format!(
                "this server has no deployer for `{}` targets (it has: {})",
                spec.target.kind_name(),
                self.deployers.kinds().join(", ")
            )));
        };
        let image = format!("{}/{serves_from}@{}", self.registry_host, order.digest);
        let approvers = match order.promotion_id {
            None => Vec::new(),
            Some(id) => self
                .store
                .promotions()
                .get(id)
                .await
                .map_err(|e| DeployError::Transient(e.to_string()))?
                .map(|promotion| {
                    promotion
                        .decisions
                        .into_iter()
                        .filter(|decision| decision.decision == "approve")
                        .map(|decision| decision.approver)
                        .collect()
                })
                .unwrap_or_default(),
        };
        let repository = serves_from.to_string();
        let job = DeployContext {
            order,
            environment: spec,
            image: &image,
            repository: &repository,
            approvers: &approvers,
            attempt,
            log,
        };
        log.line(format!(
            "{} target: deploying {image}",
            spec.target.kind_name()
        ));
        let note = deployer.deploy(&job).await?;
        match &spec.health_check {
            None => Ok(note),
            Some(check) => {
                log.line(format!("health check: {}", check.url.as_str()));
                match self.health(check).await {
                    Ok(healthy) => Ok(format!("{note}; healthy: {healthy}")),
                    Err(reason) => Err(DeployError::Failed(format!(
                        "{note}; health check failed: {reason}"
                    ))),
                }
            }
        }
    }
}
