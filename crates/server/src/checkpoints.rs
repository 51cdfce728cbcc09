//! Signed checkpoints of the audit log (see `attest::checkpoint`): the chain's head
//! signed with the server's key once [`CheckpointSettings::entries`] entries were
//! appended since the last checkpoint, or [`CheckpointSettings::interval`] passed with
//! any appended; on demand by an admin (`POST /api/v1/audit/checkpoints`). Auditors
//! export them (`gantry audit checkpoints`) to keep them elsewhere, and `gantry audit
//! verify --key` checks the chain against them.

use std::time::Duration;

use crate::AppState;

/// When the maintenance loop signs a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointSettings {
    /// Entries appended since the last checkpoint that make a new one due; 0: never
    /// for that reason.
    pub entries: u64,
    /// Time since the last checkpoint that makes a new one due when any entry was
    /// appended; `None`: never for that reason.
    pub interval: Option<Duration>,
}

impl Default for CheckpointSettings {
    fn default() -> Self {
        CheckpointSettings {
            entries: 1000,
            interval: Some(Duration::from_secs(600)),
        }
    }
}

/// Why no checkpoint could be signed.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("this server holds no signing key")]
    NoKey,
    #[error(transparent)]
    Signing(#[from] engine::SigningError),
    #[error(transparent)]
    Key(#[from] attest::KeyError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
}

impl AppState {
    /// Signs a checkpoint of the audit log's head when one is due (always, with
    /// `force`, when entries were appended since the last). The checkpoint made, or
    /// `None` when none was due or the head is already checkpointed.
    pub async fn checkpoint_audit(
        &self,
        force: bool,
    ) -> Result<Option<store::Checkpoint>, CheckpointError> {
        let Some(ring) = &self.signing else {
            return Err(CheckpointError::NoKey);
        };
        let (sequence, hash) = self.store.audit().head().await?;
        let last = self.store.attestations().latest_checkpoint().await?;
        let now = store::now_millis();
        let due = match &last {
            _ if sequence == 0 => false,
            Some(last) if last.sequence >= sequence => false,
            _ if force => true,
            None => true,
            Some(last) => {
                let by_count = self.checkpoints.entries > 0
                    && u64::try_from(sequence - last.sequence).unwrap_or(0)
                        >= self.checkpoints.entries;
                let by_time = self.checkpoints.interval.is_some_and(|interval| {
                    now - last.at >= i64::try_from(interval.as_millis()).unwrap_or(i64::MAX)
                });
                by_count || by_time
            }
        };
        if !due {
            return Ok(None);
        }
        let (key_id, signature) = ring
            .with_key(&self.store, |key| {
                attest::checkpoint::sign(key, sequence, &hash, now).map(|s| (key.key_id(), s))
            })
            .await??;
        let checkpoint = store::Checkpoint {
            sequence,
            hash,
            at: now,
            key_id,
            signature,
        };
        let made = self.store.attestations().checkpoint(&checkpoint).await?;
        Ok(made.then_some(checkpoint))
    }
}
