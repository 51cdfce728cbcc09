//! What retention reads and does: each repository's manifests with their tags,
//! children and subjects; an application's promotion pins and where its digests were
//! deployed; and the expiry of one manifest, which checks again, in its own
//! transaction and under the locks promotion requests and rollbacks take, that the
//! manifest is still what was decided on and that nothing pins it.
//!
//! The decision itself is `domain::retention::decide`.

use std::collections::BTreeMap;

use domain::audit::AuditAction;
use domain::retention::Pin;
use sqlx::Row;

use crate::promotions::lock_environment;
use crate::repositories::Repository;
use crate::{Backend, NewAuditEntry, StoreError, with_pool};

/// The promotion states that still lead to a deployment.
const OPEN_PROMOTION_STATES: &str = "('requested', 'waiting', 'approved', 'deploying')";

/// One manifest of a repository as retention reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetainedManifest {
    pub digest: String,
    pub pushed_at: i64,
    /// Each tag with when it was last pointed here.
    pub tags: Vec<(String, i64)>,
    /// The manifests it lists.
    pub children: Vec<String>,
    pub subject: Option<String>,
}

/// Where one digest of an application was deployed successfully, and last when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployedDigest {
    pub digest: String,
    pub environment: String,
    pub last_deployed_at: i64,
}

/// The application a repository belongs to, as an expiry must lock and check it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinScope<'a> {
    pub application: &'a str,
    /// Every environment of the application (their row locks are taken first).
    pub environments: &'a [String],
    pub rollback_window: u32,
    /// The application's release tier repository (`release/…`).
    pub release_repository: &'a str,
}

/// One expiry to carry out.
#[derive(Debug, Clone)]
pub struct Expiry<'a> {
    pub repository: &'a Repository,
    pub digest: &'a str,
    /// The tags the decision saw, sorted.
    pub tags: &'a [String],
    pub scope: Option<PinScope<'a>>,
    pub actor: &'a str,
    /// Why, for the audit entry: the policy, the rule, the age, the tier.
    pub reason: serde_json::Value,
    pub now: i64,
}

/// What became of an expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpiryOutcome {
    Expired,
    /// The manifest was gone already.
    Gone,
    /// The manifest changed since the decision (a tag, an index listing it, its
    /// subject kept): left for the next pass to decide again.
    Changed(String),
    /// Pinned since the decision.
    Pinned(Vec<Pin>),
}

/// Retention's reads and its expiries.
pub struct Retention<'a> {
    pub(crate) backend: &'a Backend,
}

/// Every pin of `$application`'s digests, as `(digest, pin)` pairs, read in `$tx`.
macro_rules! application_pins {
    ($tx:ident, $application:expr, $window:expr, $release:expr) => {{
        let application: &str = $application;
        let mut pins: Vec<(String, Pin)> = Vec::new();
        let rows = sqlx::query(
            "SELECT e.name, d.digest FROM environments e JOIN deployments d ON d.id = e.current_deployment \
             WHERE e.application = $1",
        )
        .bind(application)
        .fetch_all(&mut *$tx)
        .await?;
        for row in rows {
            pins.push((row.get("digest"), Pin::Runs { environment: row.get("name") }));
        }
        let rows = sqlx::query(
            "SELECT environment, digest FROM deployments WHERE application = $1 AND state = 'deploying'",
        )
        .bind(application)
        .fetch_all(&mut *$tx)
        .await?;
        for row in rows {
            pins.push((row.get("digest"), Pin::Deploying { environment: row.get("environment") }));
        }
        let rows = sqlx::query(
            "SELECT id, environment, digest FROM (SELECT id, environment, digest, \
                 ROW_NUMBER() OVER (PARTITION BY environment ORDER BY id DESC) AS position \
                 FROM deployments WHERE application = $1 AND state = 'deployed') AS latest \
             WHERE position <= $2",
        )
        .bind(application)
        .bind(i64::from($window))
        .fetch_all(&mut *$tx)
        .await?;
        for row in rows {
            pins.push((
                row.get("digest"),
                Pin::RollbackWindow { environment: row.get("environment"), deployment: row.get("id") },
            ));
        }
        // Where a rollback without `to` would go, as `Deployments::rollback` picks it:
        // the latest qualifying deployment of each environment.
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT d.environment, d.digest FROM deployments d \
             JOIN environments e ON e.application = d.application AND e.name = d.environment \
             JOIN deployments c ON c.id = e.current_deployment \
             WHERE d.application = $1 AND d.state = 'deployed' AND d.digest <> c.digest \
             AND {} \
             AND NOT EXISTS (SELECT 1 FROM quarantines q WHERE q.application = d.application AND q.digest = d.digest) \
             ORDER BY d.id DESC",
            crate::deployments::NOT_LEFT_BY_A_ROLLBACK,
        )))
        .bind(application)
        .fetch_all(&mut *$tx)
        .await?;
        let mut targeted: Vec<String> = Vec::new();
        for row in rows {
            let environment: String = row.get("environment");
            if !targeted.contains(&environment) {
                targeted.push(environment.clone());
                pins.push((row.get("digest"), Pin::RollbackTarget { environment }));
            }
        }
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT id, environment, digest, config_revision FROM promotions \
             WHERE application = $1 AND state IN {OPEN_PROMOTION_STATES}"
        )))
        .bind(application)
        .fetch_all(&mut *$tx)
        .await?;
        for row in rows {
            pins.push((
                row.get("digest"),
                Pin::Promotion {
                    environment: row.get("environment"),
                    promotion: row.get("id"),
                    bundle: row.get::<Option<String>, _>("config_revision").is_some(),
                },
            ));
        }
        let rows = sqlx::query(
            "SELECT name, observed_digest FROM environments \
             WHERE application = $1 AND observed_digest IS NOT NULL",
        )
        .bind(application)
        .fetch_all(&mut *$tx)
        .await?;
        for row in rows {
            pins.push((row.get("observed_digest"), Pin::Observed { environment: row.get("name") }));
        }
        let release: &str = $release;
        let rows = sqlx::query(
            "SELECT m.digest FROM manifests m JOIN repositories r ON r.id = m.repository_id WHERE r.name = $1",
        )
        .bind(release)
        .fetch_all(&mut *$tx)
        .await?;
        for row in rows {
            pins.push((row.get("digest"), Pin::ReleaseTier { repository: release.to_owned() }));
        }
        pins
    }};
}

impl Retention<'_> {
    /// Every manifest of `repository`, with its tags, the manifests it lists and its
    /// subject, in one read transaction.
    pub async fn inventory(
        &self,
        repository: &Repository,
    ) -> Result<Vec<RetainedManifest>, StoreError> {
        with_pool!(self.backend, read, |pool| {
            let mut tx = pool.begin().await?;
            let mut manifests: BTreeMap<String, RetainedManifest> = BTreeMap::new();
            let rows = sqlx::query(
                "SELECT digest, subject, created_at FROM manifests WHERE repository_id = $1",
            )
            .bind(repository.id)
            .fetch_all(&mut *tx)
            .await?;
            for row in rows {
                let digest: String = row.get("digest");
                manifests.insert(
                    digest.clone(),
                    RetainedManifest {
                        digest,
                        pushed_at: row.get("created_at"),
                        tags: Vec::new(),
                        children: Vec::new(),
                        subject: row.get("subject"),
                    },
                );
            }
            let rows = sqlx::query(
                "SELECT name, digest, updated_at FROM tags WHERE repository_id = $1 ORDER BY name",
            )
            .bind(repository.id)
            .fetch_all(&mut *tx)
            .await?;
            for row in rows {
                if let Some(manifest) = manifests.get_mut(&row.get::<String, _>("digest")) {
                    manifest.tags.push((row.get("name"), row.get("updated_at")));
                }
            }
            let rows = sqlx::query(
                "SELECT manifest_digest, child_digest FROM manifest_references \
                 WHERE repository_id = $1 AND child_kind = 'manifest'",
            )
            .bind(repository.id)
            .fetch_all(&mut *tx)
            .await?;
            for row in rows {
                if let Some(manifest) = manifests.get_mut(&row.get::<String, _>("manifest_digest"))
                {
                    manifest.children.push(row.get("child_digest"));
                }
            }
            tx.commit().await?;
            Ok(manifests.into_values().collect())
        })
    }

    /// Every pin of `application`'s digests: what its environments run, deploy, ran
    /// within their last `rollback_window` successful deployments or would roll back
    /// to, what open promotions reference, what clusters were seen running, and what
    /// its release tier repository holds.
    pub async fn pins(
        &self,
        application: &str,
        rollback_window: u32,
        release_repository: &str,
    ) -> Result<BTreeMap<String, Vec<Pin>>, StoreError> {
        with_pool!(self.backend, read, |pool| {
            let mut tx = pool.begin().await?;
            let pins = application_pins!(tx, application, rollback_window, release_repository);
            tx.commit().await?;
            let mut by_digest: BTreeMap<String, Vec<Pin>> = BTreeMap::new();
            for (digest, pin) in pins {
                let list = by_digest.entry(digest).or_default();
                if !list.contains(&pin) {
                    list.push(pin);
                }
            }
            for list in by_digest.values_mut() {
                list.sort();
            }
            Ok(by_digest)
        })
    }

    /// Where each digest of `application` was deployed successfully, and last when.
    pub async fn deployed(&self, application: &str) -> Result<Vec<DeployedDigest>, StoreError> {
        with_pool!(self.backend, read, |pool| {
            let rows = sqlx::query(
                "SELECT digest, environment, MAX(COALESCE(finished_at, started_at)) AS last_at \
                 FROM deployments WHERE application = $1 AND state = 'deployed' \
                 GROUP BY digest, environment",
            )
            .bind(application)
            .fetch_all(pool)
            .await?;
            Ok(rows
                .iter()
                .map(|row| DeployedDigest {
                    digest: row.get("digest"),
                    environment: row.get("environment"),
                    last_deployed_at: row.get("last_at"),
                })
                .collect())
        })
    }

    /// Expires one manifest: deletes its tags and the manifest, audited, if it is
    /// still there with the tags decided on, no manifest lists it, its subject (if
    /// any) is gone, and nothing pins it — all checked after taking the row locks of
    /// the application's environments (which promotion requests and rollbacks take
    /// first) and of the repository (which pushes take).
    pub async fn expire(&self, expiry: &Expiry<'_>) -> Result<ExpiryOutcome, StoreError> {
        let repository = expiry.repository;
        let digest = expiry.digest.to_owned();
        with_pool!(self.backend, write, |pool| {
            let mut tx = pool.begin().await?;
            if let Some(scope) = &expiry.scope {
                let mut environments: Vec<&String> = scope.environments.iter().collect();
                environments.sort();
                for environment in environments {
                    lock_environment!(tx, scope.application, environment, expiry.now);
                }
            }
            crate::lock_repository!(tx, repository.id);
            let Some(row) = sqlx::query(
                "SELECT subject FROM manifests WHERE repository_id = $1 AND digest = $2",
            )
            .bind(repository.id)
            .bind(&digest)
            .fetch_optional(&mut *tx)
            .await?
            else {
                return Ok(ExpiryOutcome::Gone);
            };
            let subject: Option<String> = row.get("subject");
            let tags: Vec<String> = sqlx::query(
                "SELECT name FROM tags WHERE repository_id = $1 AND digest = $2 ORDER BY name",
            )
            .bind(repository.id)
            .bind(&digest)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|row| row.get("name"))
            .collect();
            if tags != expiry.tags {
                return Ok(ExpiryOutcome::Changed(format!(
                    "its tags changed (now {})",
                    if tags.is_empty() {
                        "none".to_owned()
                    } else {
                        tags.join(", ")
                    }
                )));
            }
            if let Some(row) = sqlx::query(
                "SELECT manifest_digest FROM manifest_references \
                 WHERE repository_id = $1 AND child_digest = $2 AND child_kind = 'manifest' LIMIT 1",
            )
            .bind(repository.id)
            .bind(&digest)
            .fetch_optional(&mut *tx)
            .await?
            {
                return Ok(ExpiryOutcome::Changed(format!(
                    "the index {} lists it",
                    row.get::<String, _>("manifest_digest")
                )));
            }
            if let Some(subject) = &subject
                && sqlx::query("SELECT 1 FROM manifests WHERE repository_id = $1 AND digest = $2")
                    .bind(repository.id)
                    .bind(subject)
                    .fetch_optional(&mut *tx)
                    .await?
                    .is_some()
            {
                return Ok(ExpiryOutcome::Changed(format!(
                    "its subject {subject} is kept"
                )));
            }
            if let Some(scope) = &expiry.scope {
                let mut pins: Vec<Pin> = application_pins!(
                    tx,
                    scope.application,
                    scope.rollback_window,
                    scope.release_repository
                )
                .into_iter()
                .filter(|(pinned, _)| *pinned == digest)
                .map(|(_, pin)| pin)
                .collect();
                if !pins.is_empty() {
                    pins.sort();
                    pins.dedup();
                    return Ok(ExpiryOutcome::Pinned(pins));
                }
            }
            sqlx::query("DELETE FROM tags WHERE repository_id = $1 AND digest = $2")
                .bind(repository.id)
                .bind(&digest)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM manifests WHERE repository_id = $1 AND digest = $2")
                .bind(repository.id)
                .bind(&digest)
                .execute(&mut *tx)
                .await?;
            let mut payload = serde_json::json!({
                "repository": repository.name.as_str(),
                "digest": digest,
                "removed_tags": tags,
            });
            if let (Some(fields), serde_json::Value::Object(reason)) =
                (payload.as_object_mut(), expiry.reason.clone())
            {
                fields.extend(reason);
            }
            let entry = NewAuditEntry {
                at: expiry.now,
                actor: expiry.actor.to_owned(),
                action: AuditAction::Expire,
                subject: repository.name.to_string(),
                payload,
            };
            crate::append_audit!(tx, &entry);
            tx.commit().await?;
            Ok(ExpiryOutcome::Expired)
        })
    }
}
