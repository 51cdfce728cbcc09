//! Signed attestations of deployments: the first step of a successful deployment's
//! follow-up (a durable step, run again by any replica until it is done) signs two
//! in-toto statements about the deployed digest, each in a DSSE envelope inside a
//! Sigstore bundle: Gantry's promotion predicate (provenance, checks with findings,
//! approvals with the roles held when approving, the requester, any override, the
//! deployment and its target's result, the audit entry's sequence and hash), and a
//! SLSA Verification Summary (VSA v1) saying which application's environment's gates
//! it passed and naming the promotion predicate's statement by digest. Both are
//! recorded in the store together first (so a follow-up run again writes the same
//! bytes), then stored as OCI referrers of the digest (cosign v3's layout, see
//! `attest::referrer`) in the application's repository and in the release tier it was
//! served from; its last step hands them to the target (`registry-copy` carries them
//! to the destination registry).

use attest::referrer::{
    BUNDLE_MEDIA_TYPE, EMPTY_CONFIG, PROMOTION_PREDICATE_TYPE, Subject, VSA_PREDICATE_TYPE,
};
use attest::verify::{Passage, levels};
use domain::promotion::DeploymentReason;
use domain::{Digest, RepoName, oci};
use serde_json::{Value, json};
use store::{AttestationRecord, DeploymentOrder, ManifestChild, NewAttestation, NewManifest};

use crate::{Engine, EngineError};

/// The actor attestations are signed and stored as.
pub const ATTEST_ACTOR: &str = "gantry";

impl Engine {
    /// Signs, records and stores beside the image deployment `order`'s attestations,
    /// unless this server signs none. Idempotent: what is recorded is reused, what is
    /// stored is not stored again. A failure that may pass (the store, the blob store)
    /// is returned, so the follow-up is tried again; one that will not (the deployed
    /// manifest or its application gone) is logged, and that step is done.
    pub(crate) async fn attest(&self, order: &DeploymentOrder) -> Result<(), EngineError> {
        settle(order, self.attest_once(order).await)
    }

    /// Hands deployment `order`'s stored attestations to its target, which carries them
    /// where it put the image. A destination that is down is tried again (the error
    /// is returned); one that refuses is logged, and that step is done.
    pub(crate) async fn carry_attestations(
        &self,
        order: &DeploymentOrder,
    ) -> Result<(), EngineError> {
        let carried = async {
            let records = self
                .store
                .attestations()
                .of_deployment(order.deployment_id)
                .await?;
            let ready =
                !records.is_empty() && records.iter().all(|record| record.published_at.is_some());
            if !ready || records.iter().all(|record| record.carried_at.is_some()) {
                return Ok(());
            }
            let (loaded, serves_from) = self.serving(order).await?;
            self.carry(order, &loaded, &serves_from, &records).await?;
            self.store
                .attestations()
                .carried(order.deployment_id, self.clock.now_millis())
                .await?;
            Ok(())
        };
        settle(order, carried.await)
    }

    async fn attest_once(&self, order: &DeploymentOrder) -> Result<(), EngineError> {
        let Some(ring) = self.signing.as_ref() else {
            return Ok(());
        };
        let mut records = self
            .store
            .attestations()
            .of_deployment(order.deployment_id)
            .await?;
        let (loaded, serves_from) = self.serving(order).await?;
        if records.is_empty() {
            let made = self.statements(order, &loaded, &serves_from).await?;
            let created = timestamp(made.now);
            // Both under one hold of the key: one look at the store for a rotation.
            let subject = &made.subject;
            let attestations = ring
                .with_key(&self.store, |key| {
                    made.statements
                        .into_iter()
                        .map(|(predicate_type, predicate)| {
                            attest::referrer::sign(
                                subject,
                                predicate_type,
                                predicate,
                                &created,
                                key,
                            )
                        })
                        .collect::<Result<Vec<_>, _>>()
                })
                .await
                .map_err(|e| EngineError::Busy(format!("signing an attestation: {e}")))?
                .map_err(|e| EngineError::Busy(format!("signing an attestation: {e}")))?;
            let signed: Vec<NewAttestation> = attestations
                .into_iter()
                .map(|attestation| NewAttestation {
                    deployment_id: order.deployment_id,
                    predicate_type: attestation.predicate_type,
                    application: order.application.clone(),
                    environment: order.environment.clone(),
                    digest: order.digest.clone(),
                    key_id: attestation.key_id,
                    bundle: String::from_utf8_lossy(&attestation.bundle).into_owned(),
                    manifest: String::from_utf8_lossy(&attestation.manifest).into_owned(),
                    manifest_digest: attestation.manifest_digest.to_string(),
                    created_at: made.now,
                })
                .collect();
            records = self
                .store
                .attestations()
                .record(&signed, ATTEST_ACTOR)
                .await?;
        }
        if records.iter().any(|record| record.published_at.is_none()) {
            let mut repositories = vec![loaded.application.repository.clone()];
            if !repositories.contains(&serves_from) {
                repositories.push(serves_from.clone());
            }
            for repository in &repositories {
                self.store_referrers(repository, &records).await?;
            }
            self.store
                .attestations()
                .published(order.deployment_id, self.clock.now_millis())
                .await?;
        }
        Ok(())
    }

    /// The declared application and the repository `order`'s environment serves from.
    async fn serving(
        &self,
        order: &DeploymentOrder,
    ) -> Result<(crate::Loaded, RepoName), EngineError> {
        let loaded = self.load(&order.application).await?;
        let environment = domain::pipeline::EnvName::parse(&order.environment)
            .map_err(|e| EngineError::Corrupt(e.to_string()))?;
        let serves_from = loaded
            .pipeline
            .release_tier(&environment)
            .repository(&loaded.application.repository)
            .map_err(|e| EngineError::Corrupt(e.to_string()))?;
        Ok((loaded, serves_from))
    }

    /// Hands the attestations to the environment's target, which carries them where it
    /// put the image. A refusal is final (logged); a transient failure is retried.
    async fn carry(
        &self,
        order: &DeploymentOrder,
        loaded: &crate::Loaded,
        serves_from: &RepoName,
        records: &[AttestationRecord],
    ) -> Result<(), EngineError> {
        let Ok(environment) = domain::pipeline::EnvName::parse(&order.environment) else {
            return Ok(());
        };
        let Some(spec) = loaded.application.environments.get(&environment) else {
            return Ok(());
        };
        let Some(deployer) = self.deployers.get(spec.target.kind_name()) else {
            return Ok(());
        };
        let referrers: Vec<String> = records
            .iter()
            .map(|record| record.manifest_digest.clone())
            .collect();
        let repository = serves_from.to_string();
        let context = deploy::AttachContext {
            environment: &order.environment,
            spec,
            repository: &repository,
            digest: &order.digest,
            referrers: &referrers,
        };
        match deployer.attach(&context).await {
            Ok(note) => {
                if !note.is_empty() {
                    tracing::info!(
                        deployment = order.deployment_id,
                        note,
                        "attestations carried"
                    );
                }
                Ok(())
            }
            Err(deploy::DeployError::Transient(error)) => Err(EngineError::Busy(format!(
                "carrying the attestations: {error}"
            ))),
            Err(deploy::DeployError::Failed(error)) => {
                tracing::warn!(
                    deployment = order.deployment_id,
                    %error,
                    "the target refused the attestations; they stay beside the image in Gantry"
                );
                Ok(())
            }
        }
    }

    /// Stores the attestations in `repository`: their blobs (the empty config and each
    /// bundle) reserved, placed and linked as an upload does, then each manifest.
    async fn store_referrers(
        &self,
        repository: &RepoName,
        records: &[AttestationRecord],
    ) -> Result<(), EngineError> {
        let stored = self
            .store
            .repositories()
            .get_or_create(repository, ATTEST_ACTOR)
            .await?;
        let config = Digest::sha256_of(EMPTY_CONFIG);
        let layers: Vec<(Digest, &[u8])> = records
            .iter()
            .map(|record| {
                (
                    Digest::sha256_of(record.bundle.as_bytes()),
                    record.bundle.as_bytes(),
                )
            })
            .collect();
        let mut blobs: Vec<(&Digest, &[u8])> = vec![(&config, EMPTY_CONFIG)];
        blobs.extend(layers.iter().map(|(digest, content)| (digest, *content)));
        let sizes: Vec<(&Digest, i64)> = blobs
            .iter()
            .map(|(digest, content)| (*digest, i64::try_from(content.len()).unwrap_or(i64::MAX)))
            .collect();
        let Some(generations) = self.store.blobs().reserve_all(&sizes).await? else {
            return Err(EngineError::Busy(
                "garbage collection is deleting a blob of the attestations; they are stored later"
                    .to_owned(),
            ));
        };
        for (digest, content) in &blobs {
            self.blobs
                .put_small(digest, bytes::Bytes::copy_from_slice(content))
                .await
                .map_err(|e| EngineError::Busy(format!("storing blob {digest}: {e}")))?;
        }
        let reserved: Vec<(&Digest, i64)> = blobs
            .iter()
            .map(|(digest, _)| *digest)
            .zip(generations)
            .collect();
        if !self
            .store
            .blobs()
            .link_all_reserved(stored.id, &reserved)
            .await?
        {
            return Err(EngineError::Busy(
                "a blob of the attestations was collected while it was stored; they are stored later"
                    .to_owned(),
            ));
        }
        for (record, (layer, bundle)) in records.iter().zip(&layers) {
            let manifest: Value = serde_json::from_str(&record.manifest)
                .map_err(|e| EngineError::Corrupt(format!("a recorded attestation: {e}")))?;
            let digest = Digest::parse(&record.manifest_digest)
                .map_err(|e| EngineError::Corrupt(e.to_string()))?;
            let subject =
                Digest::parse(&record.digest).map_err(|e| EngineError::Corrupt(e.to_string()))?;
            let new = NewManifest {
                digest,
                media_type: oci::IMAGE_MANIFEST.to_owned(),
                artifact_type: Some(BUNDLE_MEDIA_TYPE.to_owned()),
                subject: Some(subject),
                annotations: manifest.get("annotations").map(Value::to_string),
                content: record.manifest.as_bytes().to_vec(),
                children: vec![
                    ManifestChild::Blob {
                        digest: config.clone(),
                        size: EMPTY_CONFIG.len() as u64,
                    },
                    ManifestChild::Blob {
                        digest: layer.clone(),
                        size: bundle.len() as u64,
                    },
                ],
            };
            match self
                .store
                .manifests()
                .put(&stored, &new, None, ATTEST_ACTOR)
                .await?
            {
                store::PutManifestOutcome::Stored => {}
                other => {
                    return Err(EngineError::Busy(format!(
                        "storing attestation {} in {repository}: {other:?}",
                        record.manifest_digest
                    )));
                }
            }
        }
        Ok(())
    }

    /// The two statements about deployment `order` (its promotion predicate, then the
    /// summary naming it), from what the store holds.
    async fn statements(
        &self,
        order: &DeploymentOrder,
        loaded: &crate::Loaded,
        serves_from: &RepoName,
    ) -> Result<Statements, EngineError> {
        let now = self.clock.now_millis();
        let environment = domain::pipeline::EnvName::parse(&order.environment)
            .map_err(|e| EngineError::Corrupt(e.to_string()))?;
        let shared = loaded.application.repository.clone();
        let digest =
            Digest::parse(&order.digest).map_err(|e| EngineError::Corrupt(e.to_string()))?;
        // Where the environment serves it from, else the application's repository.
        let mut manifest = None;
        for name in [serves_from, &shared] {
            if let Some(repository) = self.store.repositories().get(name).await?
                && let Some(found) = self
                    .store
                    .manifests()
                    .by_digest(repository.id, &digest)
                    .await?
            {
                manifest = Some(found);
                break;
            }
        }
        let Some(manifest) = manifest else {
            return Err(EngineError::NotAnArtifact(format!(
                "{digest} is no longer in {serves_from} nor {shared}: nothing to attest"
            )));
        };
        let subject = Subject {
            name: format!("{}/{serves_from}", self.registry_host),
            digest: digest.clone(),
            media_type: manifest.media_type.clone(),
            size: manifest.content.len() as u64,
        };
        let deployment = self
            .store
            .deployments()
            .deployment(order.deployment_id)
            .await?
            .ok_or_else(|| {
                EngineError::Corrupt(format!("deployment {} is gone", order.deployment_id))
            })?;
        let promotion = match order.promotion_id {
            Some(id) => Some(self.store.promotions().get(id).await?.ok_or_else(|| {
                EngineError::Corrupt(format!("promotion {id} of the deployment is gone"))
            })?),
            None => None,
        };
        let evidence = self.store.evidence();
        let build = evidence.build(&order.application, &order.digest).await?;
        let checks = evidence.checks(&order.application, &order.digest).await?;
        let previous = self
            .store
            .deployments()
            .history(
                &order.application,
                Some(&order.environment),
                Some(order.deployment_id),
                50,
            )
            .await?
            .into_iter()
            .find(|earlier| earlier.state == domain::promotion::DeploymentState::Deployed)
            .map(|earlier| earlier.digest);
        let audit = self.deploy_entry(order).await?;
        // The gate: the pipeline as stored, named by its revision and digest.
        let pipeline_name = loaded.pipeline.name().as_str().to_owned();
        let pipeline = self
            .store
            .resources()
            .get(domain::ResourceKind::Pipeline, &pipeline_name)
            .await?
            .ok_or_else(|| EngineError::Corrupt(format!("pipeline {pipeline_name} is gone")))?;
        let policy = json!({
            "uri": format!(
                "https://{}/api/v1/resources/pipelines/{pipeline_name}?revision={}",
                self.registry_host, pipeline.revision
            ),
            "digest": { "sha256": Digest::sha256_of(pipeline.canonical.as_bytes()).hex() },
        });
        let previous_environment = loaded
            .pipeline
            .pipeline()
            .stage(&environment)
            .and_then(|(_, before)| before)
            .map(|stage| stage.environment.as_str().to_owned());
        // Overridden only when the override let it past a condition that was not met
        // (an override of an open gate changes nothing).
        let passage = match (order.reason, &promotion) {
            (DeploymentReason::Rollback, _) => Passage::RolledBack,
            (_, Some(promotion))
                if promotion.override_reason.is_some()
                    && promotion.conditions.iter().any(|condition| !condition.met) =>
            {
                Passage::Overridden
            }
            (_, Some(_)) => Passage::Gated,
            (_, None) => {
                return Err(EngineError::Corrupt(format!(
                    "deployment {} is a promotion with no promotion",
                    order.deployment_id
                )));
            }
        };
        let (verified_levels, result) = levels(&order.application, &order.environment, passage);
        let resource_uri = format!("oci://{}/{serves_from}@{digest}", self.registry_host);
        let mut vsa = json!({
            "verifier": {
                "id": format!("https://{}/", self.registry_host),
                "version": { "gantry": env!("CARGO_PKG_VERSION") },
            },
            "timeVerified": timestamp(now),
            "resourceUri": resource_uri,
            "policy": policy,
            "inputAttestations": [],
            "verificationResult": result,
            "verifiedLevels": verified_levels,
            "slsaVersion": "1.0",
        });
        let mut approvals = Vec::new();
        if let Some(promotion) = &promotion {
            for decision in promotion
                .decisions
                .iter()
                .filter(|decision| decision.decision == "approve")
            {
                // The roles held when approving; for approvals recorded before those were
                // kept, the roles held now.
                let roles = match &decision.roles {
                    Some(roles) => roles.clone(),
                    None => {
                        self.roles_held(&order.application, &order.environment, &decision.approver)
                            .await?
                    }
                };
                approvals.push(json!({
                    "approver": decision.approver,
                    "roles": roles,
                    "at": timestamp(decision.at),
                    "comment": decision.comment,
                }));
            }
        }
        let promotion_predicate = json!({
            "application": order.application,
            "environment": order.environment,
            "previousEnvironment": previous_environment,
            "digest": order.digest,
            "previousDigest": previous,
            "repository": shared.as_str(),
            "servedFrom": serves_from.as_str(),
            "attestedAt": timestamp(now),
            "provenance": build.as_ref().map(|build| json!({
                "commit": build.provenance.commit,
                "branch": build.provenance.branch,
                "source": build.provenance.source,
                "runId": build.provenance.run_id,
                "runUrl": build.provenance.run_url,
                "tag": build.provenance.tag,
                "builder": build.builder,
                "triggeredBy": build.provenance.triggered_by,
                "author": build.provenance.author,
                "committedAt": build.provenance.committed_at.map(timestamp),
                "notifiedAt": timestamp(build.notified_at),
            })),
            "checks": checks.iter().map(|check| json!({
                "name": check.name,
                "passed": check.passed,
                "url": check.url,
                "format": check.format,
                "findings": check.findings.as_ref().map(|findings| findings
                    .iter()
                    .map(|(severity, count)| (severity.as_str().to_owned(), json!(count)))
                    .collect::<serde_json::Map<String, Value>>()),
                "reportedBy": check.reported_by,
                "reportedAt": timestamp(check.reported_at),
            })).collect::<Vec<_>>(),
            "gate": {
                "policy": policy,
                "conditions": promotion.as_ref().map(|promotion| promotion.conditions.iter().map(|condition| json!({
                    "kind": condition.kind,
                    "subject": condition.subject,
                    "met": condition.met,
                    "reason": condition.reason,
                })).collect::<Vec<_>>()).unwrap_or_default(),
            },
            "approvals": approvals,
            "requestedBy": order.requested_by,
            "requestedAt": promotion.as_ref().map(|promotion| timestamp(promotion.created_at)),
            "override": promotion.as_ref().and_then(|promotion| promotion.override_reason.as_ref().map(|reason| json!({
                "by": promotion.requested_by,
                "reason": reason,
            }))),
            "deployment": {
                "id": order.deployment_id,
                "reason": order.reason.as_str(),
                "promotion": order.promotion_id,
                "target": deployment.target,
                "result": deployment.message,
                "startedAt": timestamp(deployment.started_at),
                "finishedAt": deployment.finished_at.map(timestamp),
            },
            "audit": audit,
        });
        // The summary names the promotion attestation of the same deployment by the
        // digest of its signed statement.
        let signed_promotion = attest::referrer::payload(
            &subject,
            PROMOTION_PREDICATE_TYPE,
            promotion_predicate.clone(),
        );
        vsa["inputAttestations"] = json!([{
            "uri": format!("https://{}/api/v1/deployments/{}", self.registry_host, order.deployment_id),
            "digest": { "sha256": Digest::sha256_of(&signed_promotion).hex() },
        }]);
        Ok(Statements {
            now,
            subject,
            statements: vec![
                (PROMOTION_PREDICATE_TYPE, promotion_predicate),
                (VSA_PREDICATE_TYPE, vsa),
            ],
        })
    }

    /// The audit entry that recorded the deployment's success: its sequence and hash.
    async fn deploy_entry(&self, order: &DeploymentOrder) -> Result<Value, EngineError> {
        let subject = format!("{}/{}", order.application, order.environment);
        let filter = store::AuditFilter {
            action: Some(domain::audit::AuditAction::Deploy.as_str()),
            subject: Some(&subject),
            ..store::AuditFilter::default()
        };
        let entries = self.store.audit().search(&filter, None, 200).await?;
        let entry = entries.iter().find(|entry| {
            serde_json::from_str::<Value>(&entry.payload).is_ok_and(|payload| {
                payload["deployment"] == json!(order.deployment_id)
                    && payload["state"] == json!("deployed")
            })
        });
        Ok(match entry {
            Some(entry) => json!({ "sequence": entry.sequence, "hash": entry.hash }),
            None => Value::Null,
        })
    }
}

/// A step's failure as the follow-up sees it: one that may pass is returned (the
/// follow-up is tried again); one that will not is logged and the step counts as done.
fn settle(order: &DeploymentOrder, result: Result<(), EngineError>) -> Result<(), EngineError> {
    match result {
        Ok(()) => Ok(()),
        Err(error @ (EngineError::Busy(_) | EngineError::Store(_))) => Err(error),
        Err(error) => {
            tracing::warn!(
                deployment = order.deployment_id,
                digest = %order.digest,
                %error,
                "the deployment's attestations cannot be made or carried; not retried"
            );
            Ok(())
        }
    }
}

/// The statements of one deployment, made at `now`.
struct Statements {
    now: i64,
    subject: Subject,
    statements: Vec<(&'static str, Value)>,
}

/// Milliseconds since the epoch as RFC 3339 (UTC, milliseconds).
fn timestamp(millis: i64) -> String {
    jiff::Timestamp::from_millisecond(millis)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}
