//! Quarantine: an admin or the application's platform engineer marks a digest bad.
//! From then on promotions of it and rollbacks onto it are refused, its open
//! promotions are cancelled, admission denies it in every environment, and (unless
//! configured otherwise) the registry refuses to serve it, until the quarantine is
//! lifted. Both are audited.

use domain::Digest;
use store::{Quarantine, QuarantineOutcome};

use crate::{Actor, Engine, EngineError, Permission};

/// What a quarantine request did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantined {
    pub quarantine: Quarantine,
    /// Whether this request quarantined it (false: it already was).
    pub created: bool,
    /// The open promotions of the digest it cancelled.
    pub cancelled: Vec<i64>,
}

impl Engine {
    /// Quarantines `digest` of `application` for `reason`.
    pub async fn quarantine(
        &self,
        actor: &Actor,
        application: &str,
        digest: &Digest,
        reason: &str,
    ) -> Result<Quarantined, EngineError> {
        actor.require(Permission::Quarantine { application })?;
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(EngineError::Invalid(
                "a quarantine needs a reason".to_owned(),
            ));
        }
        let loaded = self.load(application).await?;
        let environments: Vec<String> = loaded
            .pipeline
            .pipeline()
            .stages()
            .iter()
            .map(|stage| stage.environment.to_string())
            .collect();
        let now = self.clock.now_millis();
        match self
            .store
            .quarantines()
            .add(application, &environments, digest, reason, &actor.name, now)
            .await?
        {
            QuarantineOutcome::Quarantined { cancelled } => Ok(Quarantined {
                quarantine: Quarantine {
                    application: application.to_owned(),
                    digest: digest.clone(),
                    reason: reason.to_owned(),
                    by: actor.name.clone(),
                    at: now,
                },
                created: true,
                cancelled,
            }),
            QuarantineOutcome::Already(quarantine) => Ok(Quarantined {
                quarantine,
                created: false,
                cancelled: Vec::new(),
            }),
        }
    }

    /// Lifts the quarantine of `digest` of `application`, for `reason`.
    pub async fn lift_quarantine(
        &self,
        actor: &Actor,
        application: &str,
        digest: &Digest,
        reason: &str,
    ) -> Result<Quarantine, EngineError> {
        actor.require(Permission::Quarantine { application })?;
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(EngineError::Invalid(
                "lifting a quarantine needs a reason".to_owned(),
            ));
        }
        self.load(application).await?;
        self.store
            .quarantines()
            .lift(
                application,
                digest,
                reason,
                &actor.name,
                self.clock.now_millis(),
            )
            .await?
            .ok_or_else(|| {
                EngineError::NotFound(format!("a quarantine of {digest} in {application}"))
            })
    }

    /// The application's quarantines, newest first.
    pub async fn quarantines(&self, application: &str) -> Result<Vec<Quarantine>, EngineError> {
        self.load(application).await?;
        Ok(self.store.quarantines().list(application).await?)
    }
}
