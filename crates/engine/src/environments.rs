//! What is done to an environment as a whole: rolling it back (by a person, or
//! automatically after a failed deployment of an `auto_rollback` environment), holding
//! and releasing it, and recording what an agent reports it runs.

use domain::Digest;
use domain::pipeline::EnvName;
use store::{Deployment, DeploymentOrder, Hold};

use crate::{Actor, Engine, EngineError, Permission};

/// A rollback as requested through the API or CLI.
#[derive(Debug, Clone)]
pub struct RollbackRequest<'a> {
    pub application: &'a str,
    pub environment: &'a str,
    /// Where to; `None`: the digest the environment ran before the current one.
    pub to: Option<&'a Digest>,
    /// The digest the caller saw the environment run: refused with a conflict when it
    /// runs another by now.
    pub from: Option<&'a Digest>,
    pub reason: Option<&'a str>,
    pub idempotency_key: Option<&'a str>,
}

/// What a rollback request led to.
#[derive(Debug, Clone)]
pub struct RolledBack {
    /// The rollback's deployment as it stands now.
    pub deployment: Deployment,
    /// False when an earlier request with the same idempotency key started it.
    pub created: bool,
}

/// Who automatic rollbacks are recorded as.
const AUTO_ROLLBACK_ACTOR: &str = "gantry";

impl Engine {
    /// Rolls an environment back to `to` or to the digest it ran before, and holds it.
    /// With `from`, only while the environment still runs that digest; with an
    /// idempotency key, a retry answers with the deployment the first request started.
    pub async fn rollback(
        &self,
        actor: &Actor,
        request: &RollbackRequest<'_>,
    ) -> Result<RolledBack, EngineError> {
        let (application, environment) = (request.application, request.environment);
        actor.require(Permission::Rollback {
            application,
            environment,
        })?;
        crate::check_idempotency_key(request.idempotency_key)?;
        let hash = Digest::sha256_of(
            format!(
                "rollback\n{application}\n{environment}\n{}\n{}\n{}",
                request.to.map(Digest::to_string).unwrap_or_default(),
                request.from.map(Digest::to_string).unwrap_or_default(),
                request.reason.unwrap_or("")
            )
            .as_bytes(),
        )
        .hex()
        .to_owned();
        let stored = store::RollbackRequest {
            to: request.to,
            from: request.from,
            actor: &actor.name,
            reason: request.reason,
            idempotency_key: request.idempotency_key,
            request_hash: &hash,
        };
        let stored = &stored;
        let started = self
            .with_plan(application, environment, |plan| async move {
                Ok(self.store.deployments().rollback(&plan, stored).await?)
            })
            .await?;
        let id = started.order.deployment_id;
        self.start_and_wait(id).await;
        let deployment = self
            .store
            .deployments()
            .deployment(id)
            .await?
            .ok_or_else(|| EngineError::NotFound(format!("deployment {id}")))?;
        Ok(RolledBack {
            deployment,
            created: started.created,
        })
    }

    /// Records what an agent reads back from an environment (the digest it runs) and
    /// flags drift when that is not what Gantry deployed there. Reporting needs what
    /// promoting there needs: a deploying role for that environment, or for a CI
    /// identity a grant naming it.
    pub async fn observe(
        &self,
        actor: &Actor,
        application: &str,
        environment: &str,
        digest: &Digest,
    ) -> Result<store::Observation, EngineError> {
        let loaded = self.load(application).await?;
        self.plan(&loaded, environment)?;
        actor.require(Permission::Observe {
            application,
            environment,
        })?;
        Ok(self
            .store
            .environments()
            .observe(
                application,
                environment,
                &digest.to_string(),
                &actor.name,
                self.clock.now_millis(),
            )
            .await?)
    }

    /// Holds an environment: auto-promotion stays out until it is released. A hold
    /// needs a reason.
    pub async fn hold(
        &self,
        actor: &Actor,
        application: &str,
        environment: &str,
        reason: &str,
    ) -> Result<Hold, EngineError> {
        self.may_hold(actor, application, environment).await?;
        if reason.trim().is_empty() {
            return Err(EngineError::Invalid("a hold needs a reason".to_owned()));
        }
        Ok(self
            .store
            .environments()
            .hold(
                application,
                environment,
                &actor.name,
                reason,
                self.clock.now_millis(),
            )
            .await?)
    }

    /// Releases an environment's hold (nothing changes when it is not held).
    pub async fn release(
        &self,
        actor: &Actor,
        application: &str,
        environment: &str,
    ) -> Result<(), EngineError> {
        self.may_hold(actor, application, environment).await?;
        Ok(self
            .store
            .environments()
            .release(
                application,
                environment,
                &actor.name,
                self.clock.now_millis(),
            )
            .await?)
    }

    /// Whether `actor` may hold or release `application/environment`, which exists.
    pub(crate) async fn may_hold(
        &self,
        actor: &Actor,
        application: &str,
        environment: &str,
    ) -> Result<(), EngineError> {
        let loaded = self.load(application).await?;
        self.plan(&loaded, environment)?;
        actor.require(Permission::Hold {
            application,
            environment,
        })
    }

    /// After a failed deployment into an environment declared `auto_rollback: true`,
    /// deploys again what ran there before (and holds the environment, as every
    /// rollback does). A failed rollback is never rolled back.
    pub(crate) async fn auto_rollback(
        &self,
        failed: &DeploymentOrder,
        message: &str,
    ) -> Result<(), EngineError> {
        {
            let loaded = self.load(&failed.application).await?;
            let environment = EnvName::parse(&failed.environment)
                .map_err(|e| EngineError::Invalid(e.to_string()))?;
            let wanted = loaded
                .application
                .environments
                .get(&environment)
                .is_some_and(|spec| spec.auto_rollback);
            if !wanted {
                return Ok(());
            }
            let current = self
                .store
                .environments()
                .of(&failed.application)
                .await?
                .into_iter()
                .find(|state| state.environment == failed.environment)
                .and_then(|state| state.current);
            let Some(current) = current else {
                tracing::info!(
                    application = %failed.application,
                    environment = %failed.environment,
                    "no earlier deployment to roll back to"
                );
                return Ok(());
            };
            let digest =
                Digest::parse(&current.digest).map_err(|e| EngineError::Corrupt(e.to_string()))?;
            let reason = format!(
                "auto-rollback: deployment {} of {} failed: {}",
                failed.deployment_id,
                failed.digest,
                message.lines().next().unwrap_or_default()
            );
            let digest = &digest;
            let reason = reason.as_str();
            let request = store::RollbackRequest {
                to: Some(digest),
                from: None,
                actor: AUTO_ROLLBACK_ACTOR,
                reason: Some(reason),
                idempotency_key: None,
                request_hash: "",
            };
            let request = &request;
            let started = self
                .with_plan(
                    &failed.application,
                    &failed.environment,
                    |plan| async move { Ok(self.store.deployments().rollback(&plan, request).await?) },
                )
                .await?;
            self.start_and_wait(started.order.deployment_id).await;
            Ok(())
        }
    }
}
