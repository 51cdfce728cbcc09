//! Manifests (stored byte-for-byte), what they reference, and the tags that name them.

use domain::audit::AuditAction;
use domain::{Digest, RepoName, Tag};
use sqlx::Row;

use crate::{
    Backend, InRepository, NewAuditEntry, Repository, StoreError, lock_repository, now_millis,
    with_pool,
};

/// The most children checked or recorded by one statement (bound parameters stay far
/// below either database's limit).
const CHILDREN_PER_QUERY: usize = 200;

/// What a manifest points at, with the size its descriptor states: checked to exist in
/// the same repository, with that size, when the manifest is pushed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestChild {
    /// A config or layer blob.
    Blob { digest: Digest, size: u64 },
    /// A manifest listed by an image index.
    Manifest { digest: Digest, size: u64 },
}

impl ManifestChild {
    fn digest(&self) -> &Digest {
        match self {
            ManifestChild::Blob { digest, .. } | ManifestChild::Manifest { digest, .. } => digest,
        }
    }

    /// The size the descriptor states.
    pub fn size(&self) -> u64 {
        match self {
            ManifestChild::Blob { size, .. } | ManifestChild::Manifest { size, .. } => *size,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            ManifestChild::Blob { .. } => "blob",
            ManifestChild::Manifest { .. } => "manifest",
        }
    }
}

/// A validated manifest ready to be stored.
#[derive(Debug, Clone)]
pub struct NewManifest {
    pub digest: Digest,
    pub media_type: String,
    /// The manifest's `artifactType`, or for images its config media type.
    pub artifact_type: Option<String>,
    pub subject: Option<Digest>,
    /// The manifest's `annotations` object as JSON text, for the referrers API.
    pub annotations: Option<String>,
    pub content: Vec<u8>,
    pub children: Vec<ManifestChild>,
}

/// Whether a tag may be moved to other bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagPolicy {
    Immutable,
    Mutable,
}

/// The result of storing a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutManifestOutcome {
    /// Stored (or already present with the same bytes); the tag, if any, points at it.
    Stored,
    /// A blob the manifest references is not in the repository; nothing was stored.
    MissingBlob(Digest),
    /// A manifest the index references is not in the repository; nothing was stored.
    MissingManifest(Digest),
    /// The tag is immutable and names other bytes; nothing was stored.
    TagImmutable { existing: Digest },
    /// A descriptor states another size than the stored content it names (clients
    /// would fail to pull it); nothing was stored.
    SizeMismatch { child: ManifestChild, stored: u64 },
}

/// A stored manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestRecord {
    pub digest: Digest,
    pub media_type: String,
    pub content: Vec<u8>,
}

/// A manifest whose `subject` is a given digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Referrer {
    pub digest: Digest,
    pub media_type: String,
    pub size: i64,
    pub artifact_type: Option<String>,
    pub annotations: Option<String>,
}

/// The result of deleting a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteManifestOutcome {
    Deleted,
    NotFound,
    /// An index in the repository still lists it.
    StillReferenced {
        by: Digest,
    },
    /// An immutable tag names it.
    ProtectedTag {
        tag: String,
    },
    /// A promotion or deployment of an application references it; `by` says which.
    InUse {
        by: String,
    },
}

/// The result of deleting a tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteTagOutcome {
    Deleted,
    NotFound,
    /// The tag names a digest a promotion or deployment references; `by` says which.
    InUse {
        by: String,
    },
}

/// What promotes or runs `$digest` of repository `$repository` (a name), if anything,
/// inside transaction `$tx`: an artifact that was promoted stays, so rollbacks, history
/// and the audit log keep pointing at bytes that exist.
macro_rules! promoted_use {
    ($tx:ident, $repository:expr, $digest:expr) => {{
        let row = sqlx::query(
            "SELECT p.id, p.application, p.environment FROM promotions p \
             JOIN resources r ON r.kind = 'Application' AND r.name = p.application \
             WHERE r.repository = $1 AND p.digest = $2 ORDER BY p.id DESC LIMIT 1",
        )
        .bind($repository)
        .bind($digest)
        .fetch_optional(&mut *$tx)
        .await?;
        match row {
            Some(row) => Some(format!(
                "promotion {} of it into {}/{}",
                row.get::<i64, _>("id"),
                row.get::<String, _>("application"),
                row.get::<String, _>("environment")
            )),
            None => sqlx::query(
                "SELECT d.id, d.application, d.environment FROM deployments d \
                 JOIN resources r ON r.kind = 'Application' AND r.name = d.application \
                 WHERE r.repository = $1 AND d.digest = $2 ORDER BY d.id DESC LIMIT 1",
            )
            .bind($repository)
            .bind($digest)
            .fetch_optional(&mut *$tx)
            .await?
            .map(|row| {
                format!(
                    "deployment {} of it to {}/{}",
                    row.get::<i64, _>("id"),
                    row.get::<String, _>("application"),
                    row.get::<String, _>("environment")
                )
            }),
        }
    }};
}

/// Access to manifests and tags.
pub struct Manifests<'a> {
    pub(crate) backend: &'a Backend,
}

fn parse_digest(table: &'static str, text: &str) -> Result<Digest, StoreError> {
    Digest::parse(text).map_err(|e| StoreError::corrupt(table, e))
}

impl Manifests<'_> {
    /// Stores the manifest and points `tag` at it, in one transaction: either all of it
    /// happens or, for every outcome but [`PutManifestOutcome::Stored`], none of it.
    ///
    /// A push that changes something (a new manifest, a new or moved tag) is recorded
    /// in the audit log in the same transaction, as done by `actor`.
    pub async fn put(
        &self,
        repository: &Repository,
        manifest: &NewManifest,
        tag: Option<(&Tag, TagPolicy)>,
        actor: &str,
    ) -> Result<PutManifestOutcome, StoreError> {
        let repository_id = repository.id;
        with_pool!(self.backend, write, |pool| {
            let now = now_millis();
            let digest = manifest.digest.to_string();
            let mut tx = pool.begin().await?;
            lock_repository!(tx, repository_id);
            // Blobs a collection pass marked deletable are needed again: the mark goes
            // first, taking their rows, so a collection condemning one either waits
            // for this transaction (and then finds it unmarked) or has already taken
            // its links (and this push finds the blob missing).
            let blobs: Vec<String> = manifest
                .children
                .iter()
                .filter(|child| child.kind() == "blob")
                .map(|child| child.digest().to_string())
                .collect();
            for batch in blobs.chunks(CHILDREN_PER_QUERY) {
                let placeholders = crate::backend::placeholders(1, batch.len());
                let sql = format!(
                    "UPDATE blobs SET deletable_since = NULL \
                     WHERE deletable_since IS NOT NULL AND deleting_since IS NULL AND digest IN ({placeholders})"
                );
                // Only placeholders are formatted in: the digests are bound.
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
                for digest in batch {
                    query = query.bind(digest);
                }
                query.execute(&mut *tx).await?;
            }
            // What the repository holds of the children, in two queries (blobs and
            // manifests) however many there are, then judged in declaration order.
            let mut stored: std::collections::HashMap<(&'static str, String), u64> =
                std::collections::HashMap::new();
            for kind in ["blob", "manifest"] {
                let digests: Vec<String> = manifest
                    .children
                    .iter()
                    .filter(|child| child.kind() == kind)
                    .map(|child| child.digest().to_string())
                    .collect();
                for batch in digests.chunks(CHILDREN_PER_QUERY) {
                    let placeholders = crate::backend::placeholders(2, batch.len());
                    let sql = if kind == "blob" {
                        format!(
                            "SELECT rb.digest, b.size FROM repository_blobs rb \
                             JOIN blobs b ON b.digest = rb.digest AND b.deleting_since IS NULL \
                             WHERE rb.repository_id = $1 AND rb.digest IN ({placeholders})"
                        )
                    } else {
                        format!(
                            "SELECT digest, size FROM manifests WHERE repository_id = $1 AND digest IN ({placeholders})"
                        )
                    };
                    // Only placeholders are formatted in: the digests are bound.
                    let mut query =
                        sqlx::query(sqlx::AssertSqlSafe(sql.as_str())).bind(repository_id);
                    for digest in batch {
                        query = query.bind(digest);
                    }
                    for row in query.fetch_all(&mut *tx).await? {
                        let size = u64::try_from(row.get::<i64, _>("size")).unwrap_or(0);
                        stored.insert((kind, row.get("digest")), size);
                    }
                }
            }
            for child in &manifest.children {
                let Some(&size) = stored.get(&(child.kind(), child.digest().to_string())) else {
                    return Ok(match child {
                        ManifestChild::Blob { digest, .. } => {
                            PutManifestOutcome::MissingBlob(digest.clone())
                        }
                        ManifestChild::Manifest { digest, .. } => {
                            PutManifestOutcome::MissingManifest(digest.clone())
                        }
                    });
                };
                if size != child.size() {
                    return Ok(PutManifestOutcome::SizeMismatch {
                        child: child.clone(),
                        stored: size,
                    });
                }
            }
            let inserted = sqlx::query(
                "INSERT INTO manifests (repository_id, digest, media_type, artifact_type, subject, annotations, size, content, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (repository_id, digest) DO NOTHING",
            )
            .bind(repository_id)
            .bind(&digest)
            .bind(&manifest.media_type)
            .bind(manifest.artifact_type.as_deref())
            .bind(manifest.subject.as_ref().map(|d| d.to_string()))
            .bind(manifest.annotations.as_deref())
            .bind(i64::try_from(manifest.content.len()).unwrap_or(i64::MAX))
            .bind(&manifest.content)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            let mut changed = inserted == 1;
            let mut moved_from: Option<String> = None;
            if inserted == 1 {
                for batch in manifest.children.chunks(CHILDREN_PER_QUERY) {
                    let rows: Vec<String> = (0..batch.len())
                        .map(|i| format!("($1, $2, ${}, ${})", 2 * i + 3, 2 * i + 4))
                        .collect();
                    let sql = format!(
                        "INSERT INTO manifest_references (repository_id, manifest_digest, child_digest, child_kind) \
                         VALUES {} ON CONFLICT DO NOTHING",
                        rows.join(", ")
                    );
                    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                        .bind(repository_id)
                        .bind(&digest);
                    for child in batch {
                        query = query.bind(child.digest().to_string()).bind(child.kind());
                    }
                    query.execute(&mut *tx).await?;
                }
            }
            if let Some((tag, policy)) = tag {
                let tagged = sqlx::query(
                    "INSERT INTO tags (repository_id, name, digest, updated_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (repository_id, name) DO NOTHING",
                )
                .bind(repository_id)
                .bind(tag.as_str())
                .bind(&digest)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                changed |= tagged == 1;
                if tagged == 0 {
                    let row = sqlx::query(
                        "SELECT digest FROM tags WHERE repository_id = $1 AND name = $2",
                    )
                    .bind(repository_id)
                    .bind(tag.as_str())
                    .fetch_one(&mut *tx)
                    .await?;
                    let existing: String = row.get("digest");
                    if existing != digest {
                        if policy == TagPolicy::Immutable {
                            return Ok(PutManifestOutcome::TagImmutable {
                                existing: parse_digest("tags", &existing)?,
                            });
                        }
                        sqlx::query("UPDATE tags SET digest = $3, updated_at = $4 WHERE repository_id = $1 AND name = $2")
                            .bind(repository_id)
                            .bind(tag.as_str())
                            .bind(&digest)
                            .bind(now)
                            .execute(&mut *tx)
                            .await?;
                        changed = true;
                        moved_from = Some(existing);
                    }
                }
            }
            if changed {
                let entry = NewAuditEntry {
                    at: now,
                    actor: actor.to_owned(),
                    action: AuditAction::Push,
                    subject: repository.name.to_string(),
                    payload: serde_json::json!({
                        "repository": repository.name.as_str(),
                        "digest": digest,
                        "tag": tag.map(|(t, _)| t.as_str()),
                        "previous_digest": moved_from,
                        "media_type": manifest.media_type,
                        "size": manifest.content.len(),
                    }),
                };
                crate::append_audit!(tx, &entry);
            }
            tx.commit().await?;
            Ok(PutManifestOutcome::Stored)
        })
    }

    /// Links the manifest `digest` of repository `source` — with every manifest it
    /// lists and every blob they reference — into repository `target` (created if
    /// missing), in one transaction. Nothing is copied: the rows point at the same
    /// content-addressed bytes. Returns false, changing nothing, when `source` does not
    /// hold the manifest. A link that changes something (the manifest new to
    /// `target`, or `target` itself new) is audited in the same transaction, as done
    /// by `actor`.
    pub async fn link_into(
        &self,
        source: &RepoName,
        digest: &Digest,
        target: &RepoName,
        actor: &str,
    ) -> Result<bool, StoreError> {
        with_pool!(self.backend, write, |pool| {
            let now = now_millis();
            let mut tx = pool.begin().await?;
            let Some(source_row) = sqlx::query("SELECT id FROM repositories WHERE name = $1")
                .bind(source.as_str())
                .fetch_optional(&mut *tx)
                .await?
            else {
                return Ok(false);
            };
            let source_id: i64 = source_row.get("id");
            let created = sqlx::query(crate::repositories::INSERT_REPOSITORY_IF_MISSING)
                .bind(target.as_str())
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                == 1;
            let mut root_linked = false;
            let target_id: i64 = sqlx::query("SELECT id FROM repositories WHERE name = $1")
                .bind(target.as_str())
                .fetch_one(&mut *tx)
                .await?
                .get("id");
            let mut pending = vec![digest.to_string()];
            let mut seen = std::collections::BTreeSet::new();
            while let Some(manifest) = pending.pop() {
                if !seen.insert(manifest.clone()) {
                    continue;
                }
                let linked = sqlx::query(
                    "INSERT INTO manifests (repository_id, digest, media_type, artifact_type, subject, annotations, size, content, created_at) \
                     SELECT $1, digest, media_type, artifact_type, subject, annotations, size, content, $2 \
                     FROM manifests WHERE repository_id = $3 AND digest = $4 \
                     ON CONFLICT (repository_id, digest) DO NOTHING",
                )
                .bind(target_id)
                .bind(now)
                .bind(source_id)
                .bind(&manifest)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if seen.len() == 1 {
                    root_linked = linked == 1;
                }
                let present = linked == 1
                    || sqlx::query(
                        "SELECT 1 AS one FROM manifests WHERE repository_id = $1 AND digest = $2",
                    )
                    .bind(source_id)
                    .bind(&manifest)
                    .fetch_optional(&mut *tx)
                    .await?
                    .is_some();
                if !present {
                    // The root is missing: nothing to link. A missing child cannot
                    // happen (a manifest is stored only with its children present).
                    return Ok(false);
                }
                sqlx::query(
                    "INSERT INTO manifest_references (repository_id, manifest_digest, child_digest, child_kind) \
                     SELECT $1, manifest_digest, child_digest, child_kind FROM manifest_references \
                     WHERE repository_id = $2 AND manifest_digest = $3 \
                     ON CONFLICT (repository_id, manifest_digest, child_digest) DO NOTHING",
                )
                .bind(target_id)
                .bind(source_id)
                .bind(&manifest)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO repository_blobs (repository_id, digest, created_at) \
                     SELECT $1, child_digest, $2 FROM manifest_references \
                     WHERE repository_id = $3 AND manifest_digest = $4 AND child_kind = 'blob' \
                     ON CONFLICT (repository_id, digest) DO NOTHING",
                )
                .bind(target_id)
                .bind(now)
                .bind(source_id)
                .bind(&manifest)
                .execute(&mut *tx)
                .await?;
                let children = sqlx::query(
                    "SELECT child_digest FROM manifest_references \
                     WHERE repository_id = $1 AND manifest_digest = $2 AND child_kind = 'manifest'",
                )
                .bind(source_id)
                .bind(&manifest)
                .fetch_all(&mut *tx)
                .await?;
                pending.extend(
                    children
                        .iter()
                        .map(|row| row.get::<String, _>("child_digest")),
                );
            }
            if created || root_linked {
                let entry = NewAuditEntry {
                    at: now,
                    actor: actor.to_owned(),
                    action: AuditAction::Link,
                    subject: target.to_string(),
                    payload: serde_json::json!({
                        "source": source.as_str(),
                        "repository": target.as_str(),
                        "digest": digest.to_string(),
                        "created_repository": created,
                    }),
                };
                crate::append_audit!(tx, &entry);
            }
            tx.commit().await?;
            Ok(true)
        })
    }

    /// The manifest with this digest in the repository.
    pub async fn by_digest(
        &self,
        repository_id: i64,
        digest: &Digest,
    ) -> Result<Option<ManifestRecord>, StoreError> {
        with_pool!(self.backend, read, |pool| {
            let row = sqlx::query("SELECT media_type, content FROM manifests WHERE repository_id = $1 AND digest = $2")
                .bind(repository_id)
                .bind(digest.to_string())
                .fetch_optional(pool)
                .await?;
            Ok(row.map(|row| ManifestRecord {
                digest: digest.clone(),
                media_type: row.get("media_type"),
                content: row.get("content"),
            }))
        })
    }

    /// The manifest `reference` names in the repository called `repository`, in one
    /// query (the registry's hot read: no separate repository lookup).
    pub async fn in_repository(
        &self,
        repository: &RepoName,
        reference: &domain::Reference,
    ) -> Result<InRepository<ManifestRecord>, StoreError> {
        with_pool!(self.backend, read, |pool| {
            let row = match reference {
                domain::Reference::Tag(tag) => sqlx::query(
                    "SELECT m.digest, m.media_type, m.content FROM repositories r \
                     LEFT JOIN tags t ON t.repository_id = r.id AND t.name = $2 \
                     LEFT JOIN manifests m ON m.repository_id = r.id AND m.digest = t.digest \
                     WHERE r.name = $1",
                )
                .bind(repository.as_str())
                .bind(tag.as_str()),
                domain::Reference::Digest(digest) => sqlx::query(
                    "SELECT m.digest, m.media_type, m.content FROM repositories r \
                     LEFT JOIN manifests m ON m.repository_id = r.id AND m.digest = $2 \
                     WHERE r.name = $1",
                )
                .bind(repository.as_str())
                .bind(digest.to_string()),
            }
            .fetch_optional(pool)
            .await?;
            let Some(row) = row else {
                return Ok(InRepository::NoRepository);
            };
            let Some(digest) = row.get::<Option<String>, _>("digest") else {
                return Ok(InRepository::Missing);
            };
            Ok(InRepository::Found(ManifestRecord {
                digest: parse_digest("manifests", &digest)?,
                media_type: row.get("media_type"),
                content: row.get("content"),
            }))
        })
    }

    /// The manifest a tag points at.
    pub async fn by_tag(
        &self,
        repository_id: i64,
        tag: &Tag,
    ) -> Result<Option<ManifestRecord>, StoreError> {
        with_pool!(self.backend, read, |pool| {
            let row = sqlx::query(
                "SELECT m.digest, m.media_type, m.content FROM tags t \
                 JOIN manifests m ON m.repository_id = t.repository_id AND m.digest = t.digest \
                 WHERE t.repository_id = $1 AND t.name = $2",
            )
            .bind(repository_id)
            .bind(tag.as_str())
            .fetch_optional(pool)
            .await?;
            row.map(|row| {
                let digest: String = row.get("digest");
                Ok(ManifestRecord {
                    digest: parse_digest("tags", &digest)?,
                    media_type: row.get("media_type"),
                    content: row.get("content"),
                })
            })
            .transpose()
        })
    }

    /// Tag names of the repository in the spec's lexical order (case-insensitive, ties
    /// broken by bytes), strictly after `after`, at most `limit`.
    pub async fn tags(
        &self,
        repository_id: i64,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Tag>, StoreError> {
        with_pool!(self.backend, read, |pool| {
            let rows = sqlx::query(
                "SELECT name FROM tags WHERE repository_id = $1 \
                 AND (lower(name) > lower($2) OR (lower(name) = lower($2) AND name > $2)) \
                 ORDER BY lower(name), name LIMIT $3",
            )
            .bind(repository_id)
            .bind(after.unwrap_or(""))
            .bind(limit)
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|row| {
                    let name: String = row.get("name");
                    Tag::parse(&name).map_err(|e| StoreError::corrupt("tags", e))
                })
                .collect()
        })
    }

    /// Manifests of the repository whose `subject` is `subject`, optionally only those
    /// of one artifact type, ordered by digest.
    pub async fn referrers(
        &self,
        repository_id: i64,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Referrer>, StoreError> {
        with_pool!(self.backend, read, |pool| {
            let rows = match artifact_type {
                None => {
                    sqlx::query(
                        "SELECT digest, media_type, size, artifact_type, annotations FROM manifests \
                         WHERE repository_id = $1 AND subject = $2 ORDER BY digest",
                    )
                    .bind(repository_id)
                    .bind(subject.to_string())
                    .fetch_all(pool)
                    .await?
                }
                Some(artifact_type) => {
                    sqlx::query(
                        "SELECT digest, media_type, size, artifact_type, annotations FROM manifests \
                         WHERE repository_id = $1 AND subject = $2 AND artifact_type = $3 ORDER BY digest",
                    )
                    .bind(repository_id)
                    .bind(subject.to_string())
                    .bind(artifact_type)
                    .fetch_all(pool)
                    .await?
                }
            };
            rows.iter()
                .map(|row| {
                    let digest: String = row.get("digest");
                    Ok(Referrer {
                        digest: parse_digest("manifests", &digest)?,
                        media_type: row.get("media_type"),
                        size: row.get("size"),
                        artifact_type: row.get("artifact_type"),
                        annotations: row.get("annotations"),
                    })
                })
                .collect()
        })
    }

    /// Deletes the manifest and every tag pointing at it, unless an index still lists it.
    ///
    /// `is_protected` says which tags may not disappear (immutable ones); a manifest
    /// one of them names is not deleted.
    pub async fn delete(
        &self,
        repository: &Repository,
        digest: &Digest,
        actor: &str,
        is_protected: impl Fn(&str) -> bool,
    ) -> Result<DeleteManifestOutcome, StoreError> {
        let repository_id = repository.id;
        with_pool!(self.backend, write, |pool| {
            let mut tx = pool.begin().await?;
            lock_repository!(tx, repository_id);
            let parent = sqlx::query(
                "SELECT manifest_digest FROM manifest_references \
                 WHERE repository_id = $1 AND child_digest = $2 AND child_kind = 'manifest' LIMIT 1",
            )
            .bind(repository_id)
            .bind(digest.to_string())
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(row) = parent {
                let by: String = row.get("manifest_digest");
                return Ok(DeleteManifestOutcome::StillReferenced {
                    by: parse_digest("manifest_references", &by)?,
                });
            }
            if let Some(by) = promoted_use!(tx, repository.name.as_str(), digest.to_string()) {
                return Ok(DeleteManifestOutcome::InUse { by });
            }
            let names = sqlx::query(
                "SELECT name FROM tags WHERE repository_id = $1 AND digest = $2 ORDER BY name",
            )
            .bind(repository_id)
            .bind(digest.to_string())
            .fetch_all(&mut *tx)
            .await?;
            if let Some(tag) = names
                .iter()
                .map(|row| row.get::<String, _>("name"))
                .find(|name| is_protected(name))
            {
                return Ok(DeleteManifestOutcome::ProtectedTag { tag });
            }
            let removed_tags: Vec<String> = sqlx::query(
                "DELETE FROM tags WHERE repository_id = $1 AND digest = $2 RETURNING name",
            )
            .bind(repository_id)
            .bind(digest.to_string())
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|row| row.get("name"))
            .collect();
            let deleted =
                sqlx::query("DELETE FROM manifests WHERE repository_id = $1 AND digest = $2")
                    .bind(repository_id)
                    .bind(digest.to_string())
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
            if deleted == 1 {
                let entry = NewAuditEntry {
                    at: now_millis(),
                    actor: actor.to_owned(),
                    action: AuditAction::DeleteManifest,
                    subject: repository.name.to_string(),
                    payload: serde_json::json!({ "repository": repository.name.as_str(), "digest": digest.to_string(), "removed_tags": removed_tags }),
                };
                crate::append_audit!(tx, &entry);
            }
            tx.commit().await?;
            Ok(if deleted == 0 {
                DeleteManifestOutcome::NotFound
            } else {
                DeleteManifestOutcome::Deleted
            })
        })
    }

    /// Deletes a referrer whose subject is not in its repository, if it still is one:
    /// pushed at or before `cutoff`, its subject still absent, no tag naming it, no
    /// index listing it, and no promotion or deployment using it, all checked in the
    /// deleting transaction. Audited as done by `actor`. Returns whether it was deleted.
    pub async fn delete_orphan_referrer(
        &self,
        repository: &Repository,
        digest: &Digest,
        cutoff: i64,
        actor: &str,
    ) -> Result<bool, StoreError> {
        with_pool!(self.backend, write, |pool| {
            let mut tx = pool.begin().await?;
            lock_repository!(tx, repository.id);
            let Some(row) = sqlx::query(
                "SELECT m.subject FROM manifests m WHERE m.repository_id = $1 AND m.digest = $2 \
                 AND m.subject IS NOT NULL AND m.created_at <= $3 \
                 AND NOT EXISTS (SELECT 1 FROM manifests s WHERE s.repository_id = m.repository_id AND s.digest = m.subject) \
                 AND NOT EXISTS (SELECT 1 FROM tags t WHERE t.repository_id = m.repository_id AND t.digest = m.digest) \
                 AND NOT EXISTS (SELECT 1 FROM manifest_references mr WHERE mr.repository_id = m.repository_id \
                     AND mr.child_digest = m.digest AND mr.child_kind = 'manifest')",
            )
            .bind(repository.id)
            .bind(digest.to_string())
            .bind(cutoff)
            .fetch_optional(&mut *tx)
            .await?
            else {
                return Ok(false);
            };
            let subject: String = row.get("subject");
            if promoted_use!(tx, repository.name.as_str(), digest.to_string()).is_some() {
                return Ok(false);
            }
            sqlx::query("DELETE FROM manifests WHERE repository_id = $1 AND digest = $2")
                .bind(repository.id)
                .bind(digest.to_string())
                .execute(&mut *tx)
                .await?;
            let entry = NewAuditEntry {
                at: now_millis(),
                actor: actor.to_owned(),
                action: AuditAction::DeleteManifest,
                subject: repository.name.to_string(),
                payload: serde_json::json!({
                    "repository": repository.name.as_str(),
                    "digest": digest.to_string(),
                    "removed_tags": Vec::<String>::new(),
                    "reason": "referrer of a subject that is not in the repository",
                    "subject": subject,
                }),
            };
            crate::append_audit!(tx, &entry);
            tx.commit().await?;
            Ok(true)
        })
    }

    /// Removes a tag (the manifest stays), unless it names a digest that a promotion or
    /// deployment references.
    pub async fn delete_tag(
        &self,
        repository: &Repository,
        tag: &Tag,
        actor: &str,
    ) -> Result<DeleteTagOutcome, StoreError> {
        with_pool!(self.backend, write, |pool| {
            let mut tx = pool.begin().await?;
            lock_repository!(tx, repository.id);
            let named: Option<String> =
                sqlx::query("SELECT digest FROM tags WHERE repository_id = $1 AND name = $2")
                    .bind(repository.id)
                    .bind(tag.as_str())
                    .fetch_optional(&mut *tx)
                    .await?
                    .map(|row| row.get("digest"));
            let Some(named) = named else {
                return Ok(DeleteTagOutcome::NotFound);
            };
            if let Some(by) = promoted_use!(tx, repository.name.as_str(), &named) {
                return Ok(DeleteTagOutcome::InUse { by });
            }
            let deleted = sqlx::query(
                "DELETE FROM tags WHERE repository_id = $1 AND name = $2 RETURNING digest",
            )
            .bind(repository.id)
            .bind(tag.as_str())
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = deleted else {
                return Ok(DeleteTagOutcome::NotFound);
            };
            let digest: String = row.get("digest");
            let entry = NewAuditEntry {
                at: now_millis(),
                actor: actor.to_owned(),
                action: AuditAction::DeleteTag,
                subject: repository.name.to_string(),
                payload: serde_json::json!({ "repository": repository.name.as_str(), "tag": tag.as_str(), "digest": digest }),
            };
            crate::append_audit!(tx, &entry);
            tx.commit().await?;
            Ok(DeleteTagOutcome::Deleted)
        })
    }
}
