//! What is known about an artifact: its build provenance (`gantry build notify`) and
//! the checks reported about it (`gantry check report`). Both are refused for a digest
//! the application's repository does not hold, and both are audited in the same
//! transaction as the write.

use std::collections::BTreeMap;

use domain::audit::AuditAction;
use domain::pipeline::Severity;
use domain::{Digest, RepoName};
use sqlx::Row;

use crate::{Backend, NewAuditEntry, StoreError, with_pool};

/// Provenance of one artifact, as notified (and completed from its annotations).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Provenance {
    pub commit: Option<String>,
    pub branch: Option<String>,
    pub run_id: Option<String>,
    pub run_url: Option<String>,
    /// The source repository URL.
    pub source: Option<String>,
    /// Who started the CI run (e.g. the pusher).
    pub triggered_by: Option<String>,
    /// Who wrote the commit.
    pub author: Option<String>,
    /// When the change was committed, in milliseconds since the Unix epoch.
    pub committed_at: Option<i64>,
    /// The tag the build was pushed under (`sha-abc1234`, `101`): named by the
    /// notification, else the newest tag pointing at the digest when it was notified.
    pub tag: Option<String>,
}

/// A stored build record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Build {
    pub application: String,
    pub digest: String,
    pub provenance: Provenance,
    /// The identity that notified.
    pub builder: String,
    pub notified_at: i64,
}

impl Build {
    /// Who notified, triggered or committed the build: none of them approves its
    /// promotion.
    pub fn actors(&self) -> Vec<String> {
        [
            Some(self.builder.clone()),
            self.provenance.triggered_by.clone(),
            self.provenance.author.clone(),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

/// One check report to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCheck<'a> {
    pub application: &'a str,
    pub repository: &'a RepoName,
    pub digest: &'a Digest,
    pub name: &'a str,
    pub passed: bool,
    pub url: Option<&'a str>,
    /// `trivy` or `sarif` when a scanner report was parsed.
    pub format: Option<&'a str>,
    /// Findings by severity, when a scanner report was parsed.
    pub findings: Option<&'a BTreeMap<Severity, u64>>,
    pub reported_by: &'a str,
    /// When it was reported, in milliseconds since the Unix epoch.
    pub at: i64,
}

/// A stored check report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    pub id: i64,
    pub digest: String,
    pub name: String,
    pub passed: bool,
    pub url: Option<String>,
    pub format: Option<String>,
    pub findings: Option<BTreeMap<Severity, u64>>,
    pub reported_by: String,
    pub reported_at: i64,
}

/// The outcome of recording provenance or a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvidenceOutcome<T> {
    Recorded(T),
    /// The application's repository holds no manifest with this digest.
    NotAnArtifact,
}

/// Access to builds and checks.
pub struct Evidence<'a> {
    pub(crate) backend: &'a Backend,
}

/// Whether repository `$repository` holds manifest `$digest`, inside transaction `$tx`.
macro_rules! holds_manifest {
    ($tx:ident, $repository:expr, $digest:expr) => {
        sqlx::query(
            "SELECT 1 AS one FROM manifests m JOIN repositories r ON r.id = m.repository_id \
             WHERE r.name = $1 AND m.digest = $2",
        )
        .bind($repository.as_str())
        .bind($digest.to_string())
        .fetch_optional(&mut *$tx)
        .await?
        .is_some()
    };
}
pub(crate) use holds_manifest;

pub(crate) fn findings_json(findings: &BTreeMap<Severity, u64>) -> String {
    let map: serde_json::Map<String, serde_json::Value> = findings
        .iter()
        .map(|(severity, count)| (severity.as_str().to_owned(), (*count).into()))
        .collect();
    serde_json::Value::Object(map).to_string()
}

pub(crate) fn parse_findings(text: &str) -> Result<BTreeMap<Severity, u64>, StoreError> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| StoreError::corrupt("checks", e))?;
    let object = value
        .as_object()
        .ok_or_else(|| StoreError::corrupt("checks", "findings are not an object"))?;
    object
        .iter()
        .map(|(severity, count)| {
            let severity =
                Severity::parse(severity).map_err(|e| StoreError::corrupt("checks", e))?;
            let count = count
                .as_u64()
                .ok_or_else(|| StoreError::corrupt("checks", "a finding count is not a number"))?;
            Ok((severity, count))
        })
        .collect()
}

/// A [`Build`] from a row selecting [`BUILD_COLUMNS`].
macro_rules! build_from_row {
    ($row:expr) => {{
        let row = $row;
        $crate::Build {
            application: row.get("application"),
            digest: row.get("digest"),
            provenance: $crate::Provenance {
                commit: row.get("commit_sha"),
                branch: row.get("branch"),
                run_id: row.get("run_id"),
                run_url: row.get("run_url"),
                source: row.get("source"),
                triggered_by: row.get("triggered_by"),
                author: row.get("author"),
                committed_at: row.get("committed_at"),
                tag: row.get("tag"),
            },
            builder: row.get("builder"),
            notified_at: row.get("notified_at"),
        }
    }};
}

pub(crate) use build_from_row;

pub(crate) const BUILD_COLUMNS: &str = "application, digest, commit_sha, branch, run_id, run_url, source, \
     triggered_by, author, committed_at, tag, builder, notified_at";

/// A [`CheckReport`] from a row, or a corrupt-row error.
macro_rules! check_from_row {
    ($row:expr) => {{
        let row = $row;
        let findings: Option<String> = row.get("findings");
        match findings.as_deref().map(parse_findings).transpose() {
            Ok(findings) => Ok(CheckReport {
                id: row.get("id"),
                digest: row.get("digest"),
                name: row.get("name"),
                passed: row.get("passed"),
                url: row.get("url"),
                format: row.get("format"),
                findings,
                reported_by: row.get("reported_by"),
                reported_at: row.get("reported_at"),
            }),
            Err(error) => Err(error),
        }
    }};
}

impl Evidence<'_> {
    /// Records (or replaces) at `now` the provenance of `digest`, an artifact of `application`
    /// in `repository`, as notified by `builder`.
    pub async fn notify(
        &self,
        application: &str,
        repository: &RepoName,
        digest: &Digest,
        provenance: &Provenance,
        builder: &str,
        now: i64,
    ) -> Result<EvidenceOutcome<Build>, StoreError> {
        with_pool!(self.backend, write, |pool| {
            let mut tx = pool.begin().await?;
            if !holds_manifest!(tx, repository, digest) {
                return Ok(EvidenceOutcome::NotAnArtifact);
            }
            let mut provenance = provenance.clone();
            if provenance.tag.is_none() {
                provenance.tag = sqlx::query(
                    "SELECT t.name FROM tags t JOIN repositories r ON r.id = t.repository_id \
                     WHERE r.name = $1 AND t.digest = $2 ORDER BY t.updated_at DESC, t.name LIMIT 1",
                )
                .bind(repository.as_str())
                .bind(digest.to_string())
                .fetch_optional(&mut *tx)
                .await?
                .map(|row| row.get("name"));
            }
            sqlx::query(
                "INSERT INTO builds (application, digest, commit_sha, branch, run_id, run_url, source, \
                 triggered_by, author, committed_at, builder, notified_at, tag) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
                 ON CONFLICT (application, digest) DO UPDATE SET commit_sha = $3, branch = $4, \
                 run_id = $5, run_url = $6, source = $7, triggered_by = $8, author = $9, \
                 committed_at = $10, builder = $11, notified_at = $12, tag = $13",
            )
            .bind(application)
            .bind(digest.to_string())
            .bind(&provenance.commit)
            .bind(&provenance.branch)
            .bind(&provenance.run_id)
            .bind(&provenance.run_url)
            .bind(&provenance.source)
            .bind(&provenance.triggered_by)
            .bind(&provenance.author)
            .bind(provenance.committed_at)
            .bind(builder)
            .bind(now)
            .bind(&provenance.tag)
            .execute(&mut *tx)
            .await?;
            let entry = NewAuditEntry {
                at: now,
                actor: builder.to_owned(),
                action: AuditAction::Notify,
                subject: format!("{application}@{digest}"),
                payload: serde_json::json!({
                    "application": application,
                    "digest": digest.to_string(),
                    "commit": provenance.commit,
                    "branch": provenance.branch,
                    "run_id": provenance.run_id,
                    "run_url": provenance.run_url,
                    "source": provenance.source,
                    "triggered_by": provenance.triggered_by,
                    "author": provenance.author,
                    "committed_at": provenance.committed_at,
                    "tag": provenance.tag,
                }),
            };
            crate::append_audit!(tx, &entry);
            tx.commit().await?;
            Ok(EvidenceOutcome::Recorded(Build {
                application: application.to_owned(),
                digest: digest.to_string(),
                provenance: provenance.clone(),
                builder: builder.to_owned(),
                notified_at: now,
            }))
        })
    }

    /// The provenance of `digest`, if it was notified.
    pub async fn build(
        &self,
        application: &str,
        digest: &str,
    ) -> Result<Option<Build>, StoreError> {
        with_pool!(self.backend, read, |pool| {
            let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {BUILD_COLUMNS} FROM builds WHERE application = $1 AND digest = $2"
            )))
            .bind(application)
            .bind(digest)
            .fetch_optional(pool)
            .await?;
            Ok(row.map(|row| build_from_row!(&row)))
        })
    }

    /// The newest `limit` builds notified for `application`, newest first.
    pub async fn recent_builds(
        &self,
        application: &str,
        limit: i64,
    ) -> Result<Vec<Build>, StoreError> {
        with_pool!(self.backend, read, |pool| {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {BUILD_COLUMNS} FROM builds WHERE application = $1 \
                 ORDER BY notified_at DESC, digest LIMIT $2"
            )))
            .bind(application)
            .bind(limit)
            .fetch_all(pool)
            .await?;
            Ok(rows.iter().map(|row| build_from_row!(row)).collect())
        })
    }

    /// The applications that know `digest`: notified a build of it, or promoted or
    /// deployed it. By name.
    pub async fn applications_knowing(&self, digest: &str) -> Result<Vec<String>, StoreError> {
        with_pool!(self.backend, read, |pool| {
            let rows = sqlx::query(
                "SELECT application FROM builds WHERE digest = $1 \
                 UNION SELECT application FROM promotions WHERE digest = $1 \
                 UNION SELECT application FROM deployments WHERE digest = $1 \
                 ORDER BY application",
            )
            .bind(digest)
            .fetch_all(pool)
            .await?;
            Ok(rows.iter().map(|row| row.get("application")).collect())
        })
    }

    /// The builds of every `(application, digest)` in `artifacts`, in one query
    /// whatever their number; an artifact without a build is absent.
    pub async fn builds_of(
        &self,
        artifacts: &[(String, String)],
    ) -> Result<Vec<Build>, StoreError> {
        if artifacts.is_empty() {
            return Ok(Vec::new());
        }
        let pairs = (0..artifacts.len())
            .map(|i| format!("(application = ${} AND digest = ${})", 2 * i + 1, 2 * i + 2))
            .collect::<Vec<_>>()
            .join(" OR ");
        with_pool!(self.backend, read, |pool| {
            let mut query = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {BUILD_COLUMNS} FROM builds WHERE {pairs}"
            )));
            for (application, digest) in artifacts {
                query = query.bind(application).bind(digest);
            }
            let rows = query.fetch_all(pool).await?;
            Ok(rows.iter().map(|row| build_from_row!(row)).collect())
        })
    }

    /// Records a check report. Reports accumulate: the latest per (digest, name) is
    /// the one gates look at, and the history shows flapping.
    pub async fn report(
        &self,
        check: &NewCheck<'_>,
    ) -> Result<EvidenceOutcome<CheckReport>, StoreError> {
        with_pool!(self.backend, write, |pool| {
            let now = check.at;
            let mut tx = pool.begin().await?;
            if !holds_manifest!(tx, check.repository, check.digest) {
                return Ok(EvidenceOutcome::NotAnArtifact);
            }
            let findings = check.findings.map(findings_json);
            let id: i64 = sqlx::query(
                "INSERT INTO checks (application, digest, name, passed, url, format, findings, reported_by, reported_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
            )
            .bind(check.application)
            .bind(check.digest.to_string())
            .bind(check.name)
            .bind(check.passed)
            .bind(check.url)
            .bind(check.format)
            .bind(&findings)
            .bind(check.reported_by)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?
            .get("id");
            let entry = NewAuditEntry {
                at: now,
                actor: check.reported_by.to_owned(),
                action: AuditAction::Check,
                subject: format!("{}@{}", check.application, check.digest),
                payload: serde_json::json!({
                    "id": id,
                    "application": check.application,
                    "digest": check.digest.to_string(),
                    "name": check.name,
                    "status": if check.passed { "passed" } else { "failed" },
                    "url": check.url,
                    "format": check.format,
                    "findings": findings.as_deref().map(serde_json::from_str::<serde_json::Value>).transpose().ok().flatten(),
                }),
            };
            crate::append_audit!(tx, &entry);
            tx.commit().await?;
            Ok(EvidenceOutcome::Recorded(CheckReport {
                id,
                digest: check.digest.to_string(),
                name: check.name.to_owned(),
                passed: check.passed,
                url: check.url.map(str::to_owned),
                format: check.format.map(str::to_owned),
                findings: check.findings.cloned(),
                reported_by: check.reported_by.to_owned(),
                reported_at: now,
            }))
        })
    }

    /// Every check report about `digest`, oldest first.
    pub async fn checks(
        &self,
        application: &str,
        digest: &str,
    ) -> Result<Vec<CheckReport>, StoreError> {
        with_pool!(self.backend, read, |pool| {
            let rows = sqlx::query(
                "SELECT id, digest, name, passed, url, format, findings, reported_by, reported_at \
                 FROM checks WHERE application = $1 AND digest = $2 ORDER BY id",
            )
            .bind(application)
            .bind(digest)
            .fetch_all(pool)
            .await?;
            rows.iter().map(|row| check_from_row!(row)).collect()
        })
    }
}
