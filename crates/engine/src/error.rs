//! What the engine refuses, by what the caller can do about it.

use store::{StoreError, StoreOutcome};

/// A refused or failed engine operation. Each variant maps to one HTTP status in the
/// API and one exit code in the CLI.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("no application named `{0}` is applied")]
    UnknownApplication(String),
    #[error("application {application} has no environment `{environment}` (its pipeline has: {})", known.join(", "))]
    UnknownEnvironment {
        application: String,
        environment: String,
        known: Vec<String>,
    },
    #[error("{0} not found")]
    NotFound(String),
    /// The digest is not in the application's repository.
    #[error("{0}")]
    NotAnArtifact(String),
    /// The request is malformed.
    #[error("{0}")]
    Invalid(String),
    /// The caller lacks the role or identity for this.
    #[error("{0}")]
    Forbidden(String),
    /// The promotion is not in a state that allows this.
    #[error("{0}")]
    Conflict(String),
    /// The idempotency key was used for another request.
    #[error("idempotency key already used for promotion {0} with a different request")]
    IdempotencyKeyReused(i64),
    /// The idempotency key was used for another rollback.
    #[error("idempotency key already used for deployment {0} with a different request")]
    RollbackKeyReused(i64),
    /// Something else is in the way right now; retrying later may succeed.
    #[error("{0}")]
    Busy(String),
    /// A stored resource could not be read back.
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The value of a `Done` outcome, or the error that the other outcomes mean.
pub(crate) fn from_outcome<T>(outcome: StoreOutcome<T>) -> Result<T, EngineError> {
    match outcome {
        StoreOutcome::Done(value) => Ok(value),
        other => Err(outcome_error(other)),
    }
}

/// Passes `Stale` on (for a retry) and turns other non-`Done` outcomes into errors.
pub(crate) fn map_outcome<T, U>(outcome: StoreOutcome<T>) -> Result<StoreOutcome<U>, EngineError> {
    match outcome {
        StoreOutcome::Stale => Ok(StoreOutcome::Stale),
        other => Err(outcome_error(other)),
    }
}

fn outcome_error<T>(outcome: StoreOutcome<T>) -> EngineError {
    match outcome {
        StoreOutcome::Done(_) | StoreOutcome::Stale => {
            EngineError::Busy("the application or pipeline changed meanwhile; try again".to_owned())
        }
        StoreOutcome::NotFound => EngineError::NotFound("the promotion or deployment".to_owned()),
        StoreOutcome::NotAnArtifact => EngineError::NotAnArtifact(
            "the digest is not in the application's repository".to_owned(),
        ),
        StoreOutcome::IdempotencyKeyReused { promotion_id } => {
            EngineError::IdempotencyKeyReused(promotion_id)
        }
        StoreOutcome::Held(hold) => EngineError::Conflict(format!(
            "the environment is held by {}: {}",
            hold.by, hold.reason
        )),
        StoreOutcome::WrongState(state) => {
            EngineError::Conflict(format!("the promotion is {state}: nothing to decide"))
        }
        StoreOutcome::Refused(why) => EngineError::Forbidden(why),
        StoreOutcome::AlreadyDecided => {
            EngineError::Conflict("you already approved or rejected this promotion".to_owned())
        }
        StoreOutcome::NoRollbackTarget(why) => EngineError::Conflict(why),
        StoreOutcome::Quarantined(quarantine) => EngineError::Conflict(format!(
            "{} is quarantined in {} (by {}: {}); lift the quarantine first (gantry quarantine {} {} --lift --reason …)",
            quarantine.digest,
            quarantine.application,
            quarantine.by,
            quarantine.reason,
            quarantine.application,
            quarantine.digest
        )),
        StoreOutcome::Moved(why) => EngineError::Conflict(why),
        StoreOutcome::RollbackKeyReused { deployment_id } => {
            EngineError::RollbackKeyReused(deployment_id)
        }
        StoreOutcome::Busy { deployment_id } => EngineError::Busy(format!(
            "deployment {deployment_id} to this environment is still in progress; try again when it finishes"
        )),
    }
}
