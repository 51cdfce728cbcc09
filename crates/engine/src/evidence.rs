//! What CI reports about an artifact: a build's provenance (`notify`, which
//! auto-promotes into an `auto` first stage) and check reports (which re-evaluate the
//! promotions of the digest waiting on evidence).

use domain::Digest;
use resources::Application;
use store::{Build, CheckReport, EvidenceOutcome, Hold, NewCheck, Promotion, Provenance};

use crate::promote::AutoOutcome;
use crate::{Actor, Engine, EngineError, Permission, provenance};

/// A check report as received.
#[derive(Debug, Clone)]
pub struct CheckRequest<'a> {
    pub application: &'a str,
    pub digest: &'a Digest,
    pub name: &'a str,
    pub passed: bool,
    pub url: Option<&'a str>,
    /// A Trivy JSON or SARIF report to count findings from.
    pub report: Option<&'a [u8]>,
}

/// What a build notification did.
#[derive(Debug, Clone)]
pub struct Notified {
    pub build: Build,
    /// The promotion into the first stage, when it is `auto`.
    pub promotion: Option<Promotion>,
    /// Why an auto stage was not promoted into (held).
    pub held: Option<Hold>,
}

fn not_an_artifact(application: &Application, digest: &Digest) -> EngineError {
    EngineError::NotAnArtifact(format!(
        "{digest} is not an artifact of {}: repository {} holds no manifest with that digest (push it first)",
        application.name, application.repository
    ))
}

impl Engine {
    /// Records the provenance of an artifact of `application` and, where the first
    /// stage of its pipeline is `auto`, promotes it there (unless the environment is
    /// held). Provenance the call leaves out is read from the manifest's annotations
    /// and the image config's labels.
    pub async fn notify(
        &self,
        actor: &Actor,
        application: &str,
        digest: &Digest,
        provenance: Provenance,
    ) -> Result<Notified, EngineError> {
        let loaded = self.load(application).await?;
        actor.require(Permission::NotifyBuilds { application })?;
        let provenance = provenance::complete(
            &self.store,
            &self.blobs,
            &loaded.application.repository,
            digest,
            provenance,
        )
        .await?;
        let build = match self
            .store
            .evidence()
            .notify(
                application,
                &loaded.application.repository,
                digest,
                &provenance,
                &actor.name,
                self.clock.now_millis(),
            )
            .await?
        {
            EvidenceOutcome::Recorded(build) => build,
            EvidenceOutcome::NotAnArtifact => {
                return Err(not_an_artifact(&loaded.application, digest));
            }
        };
        let Some(first) = loaded.pipeline.pipeline().stages().first() else {
            return Ok(Notified {
                build,
                promotion: None,
                held: None,
            });
        };
        if !first.auto {
            return Ok(Notified {
                build,
                promotion: None,
                held: None,
            });
        }
        let environment = first.environment.to_string();
        match self
            .auto_promote(application, &environment, digest, &actor.name)
            .await?
        {
            AutoOutcome::Promoted(promotion) => Ok(Notified {
                build,
                promotion: Some(*promotion),
                held: None,
            }),
            AutoOutcome::Held(hold) => Ok(Notified {
                build,
                promotion: None,
                held: Some(hold),
            }),
            AutoOutcome::Quarantined => Ok(Notified {
                build,
                promotion: None,
                held: None,
            }),
        }
    }

    /// Records a check report (counting findings from a Trivy or SARIF report) and
    /// re-evaluates the promotions of the digest that wait on evidence.
    pub async fn report_check(
        &self,
        actor: &Actor,
        check: &CheckRequest<'_>,
    ) -> Result<CheckReport, EngineError> {
        let loaded = self.load(check.application).await?;
        actor.require(Permission::ReportChecks {
            application: check.application,
        })?;
        domain::pipeline::CheckName::parse(check.name)
            .map_err(|e| EngineError::Invalid(e.to_string()))?;
        let findings = match check.report {
            Some(bytes) => Some(
                domain::findings::parse_report(bytes)
                    .map_err(|e| EngineError::Invalid(format!("the report: {e}")))?,
            ),
            None => None,
        };
        let report = match self
            .store
            .evidence()
            .report(&NewCheck {
                application: check.application,
                repository: &loaded.application.repository,
                digest: check.digest,
                name: check.name,
                passed: check.passed,
                url: check.url,
                format: findings.as_ref().map(|f| f.format.as_str()),
                findings: findings.as_ref().map(|f| &f.counts),
                reported_by: &actor.name,
                at: self.clock.now_millis(),
            })
            .await?
        {
            EvidenceOutcome::Recorded(report) => report,
            EvidenceOutcome::NotAnArtifact => {
                return Err(not_an_artifact(&loaded.application, check.digest));
            }
        };
        self.reevaluate_digest(check.application, &check.digest.to_string())
            .await?;
        Ok(report)
    }

    pub(crate) async fn reevaluate_digest(
        &self,
        application: &str,
        digest: &str,
    ) -> Result<(), EngineError> {
        let waiting = self
            .store
            .promotions()
            .waiting_for_digest(application, digest)
            .await?;
        for (id, environment) in waiting {
            self.reevaluate(application, &environment, id).await?;
        }
        Ok(())
    }
}
