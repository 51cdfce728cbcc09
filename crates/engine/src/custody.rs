//! An artifact's chain of custody: built (provenance), scanned and tested (checks with
//! findings), approved (who, when, with which roles), deployed (where, when, by which
//! target), and attested (each signed attestation, verified now with the public keys
//! Gantry signs and signed with, and whether it is stored beside the image).

use domain::Digest;

use crate::{ArtifactRecord, Engine, EngineError};

/// One application's custody of an artifact.
#[derive(Debug, Clone, PartialEq)]
pub struct Custody {
    /// Provenance, checks, promotions with their decisions, deployments.
    pub record: ArtifactRecord,
    /// Every approval or rejection of a promotion of it, oldest first.
    pub decisions: Vec<CustodyDecision>,
    /// Every attestation of a deployment of it, newest first.
    pub attestations: Vec<AttestationCheck>,
}

/// A decision on a promotion, with the roles its giver held for the environment when
/// deciding (for decisions recorded before those were kept, the roles held now).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustodyDecision {
    pub promotion_id: i64,
    pub environment: String,
    pub approver: String,
    /// `approve` or `reject`.
    pub decision: String,
    pub roles: Vec<String>,
    pub at: i64,
    pub comment: Option<String>,
}

/// A recorded attestation and what verifying it now says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestationCheck {
    pub deployment_id: i64,
    pub environment: String,
    pub predicate_type: String,
    /// The referrer manifest's digest.
    pub manifest_digest: String,
    pub key_id: String,
    pub created_at: i64,
    /// Written into the registry beside the image (and handed to the target).
    pub stored: bool,
    /// Whether its signature (under a key Gantry lists) and its subject hold.
    pub verified: bool,
    /// What was checked, or why it does not verify.
    pub verification: String,
}

impl Engine {
    /// The roles `user` holds now for `application`'s `environment` (none for a user
    /// no longer known): what a decision recorded before its roles were kept is read
    /// with.
    pub(crate) async fn roles_held(
        &self,
        application: &str,
        environment: &str,
        user: &str,
    ) -> Result<Vec<String>, EngineError> {
        Ok(match self.store.users().get(user).await? {
            Some(record) => record
                .roles_for(
                    application,
                    domain::pipeline::GrantScope::Environment(environment),
                )
                .into_iter()
                .map(|role| role.as_str().to_owned())
                .collect(),
            None => Vec::new(),
        })
    }

    /// `digest`'s chain of custody in `application`.
    pub async fn custody(
        &self,
        application: &str,
        digest: &Digest,
    ) -> Result<Custody, EngineError> {
        let record = self.artifact(application, digest).await?;
        let mut decisions = Vec::new();
        for promotion in &record.promotions {
            for decision in &promotion.decisions {
                let roles = match &decision.roles {
                    Some(roles) => roles.clone(),
                    None => {
                        self.roles_held(application, &promotion.environment, &decision.approver)
                            .await?
                    }
                };
                decisions.push(CustodyDecision {
                    promotion_id: promotion.id,
                    environment: promotion.environment.clone(),
                    approver: decision.approver.clone(),
                    decision: decision.decision.clone(),
                    roles,
                    at: decision.at,
                    comment: decision.comment.clone(),
                });
            }
        }
        decisions.sort_by_key(|decision| decision.at);
        let keys: Vec<attest::PublicKey> = self
            .store
            .signing_keys()
            .list()
            .await?
            .iter()
            .filter_map(|key| attest::PublicKey::from_pem(&key.public_key).ok())
            .collect();
        let attestations = self
            .store
            .attestations()
            .of_digest(application, &digest.to_string())
            .await?
            .into_iter()
            .map(|record| {
                let opened = attest::referrer::open(
                    record.manifest.as_bytes(),
                    record.bundle.as_bytes(),
                    digest,
                    &keys,
                );
                let (verified, verification) = match opened {
                    Ok(attestation) => (
                        true,
                        format!(
                            "signature by key {} and subject verified",
                            attestation.key_id
                        ),
                    ),
                    Err(refusal) => (false, refusal.to_string()),
                };
                AttestationCheck {
                    deployment_id: record.deployment_id,
                    environment: record.environment,
                    predicate_type: record.predicate_type,
                    manifest_digest: record.manifest_digest,
                    key_id: record.key_id,
                    created_at: record.created_at,
                    stored: record.published_at.is_some(),
                    verified,
                    verification,
                }
            })
            .collect();
        Ok(Custody {
            record,
            decisions,
            attestations,
        })
    }
}
