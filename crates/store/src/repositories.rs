//! Repositories: one row per OCI repository name.

use domain::RepoName;
use domain::audit::AuditAction;
use sqlx::Row;

use crate::{Backend, NewAuditEntry, StoreError, now_millis, with_pool};

/// A stored repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repository {
    pub id: i64,
    pub name: RepoName,
    pub created_at: i64,
}

/// What a read by repository name found, in one query: the thing, or which of the two
/// is missing (the registry answers `NAME_UNKNOWN` and `*_UNKNOWN` apart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InRepository<T> {
    Found(T),
    /// The repository exists but does not hold it.
    Missing,
    /// There is no repository of that name.
    NoRepository,
}

/// Creates a repository unless one of that name exists (`$1` name, `$2` created_at);
/// shared by [`Repositories::get_or_create`] and applying an application.
pub(crate) const INSERT_REPOSITORY_IF_MISSING: &str =
    "INSERT INTO repositories (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING";

/// Access to the `repositories` table.
pub struct Repositories<'a> {
    pub(crate) backend: &'a Backend,
}

impl Repositories<'_> {
    pub async fn get(&self, name: &RepoName) -> Result<Option<Repository>, StoreError> {
        with_pool!(self.backend, read, |pool| {
            let row = sqlx::query("SELECT id, created_at FROM repositories WHERE name = $1")
                .bind(name.as_str())
                .fetch_optional(pool)
                .await?;
            Ok(row.map(|row| Repository {
                id: row.get("id"),
                name: name.clone(),
                created_at: row.get("created_at"),
            }))
        })
    }

    /// Returns the repository, creating it first if it does not exist; a creation is
    /// recorded in the audit log in the same transaction, as done by `actor`.
    pub async fn get_or_create(
        &self,
        name: &RepoName,
        actor: &str,
    ) -> Result<Repository, StoreError> {
        if let Some(existing) = self.get(name).await? {
            return Ok(existing);
        }
        with_pool!(self.backend, write, |pool| {
            let now = now_millis();
            let mut tx = pool.begin().await?;
            let created = sqlx::query(INSERT_REPOSITORY_IF_MISSING)
                .bind(name.as_str())
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if created == 1 {
                let entry = NewAuditEntry {
                    at: now,
                    actor: actor.to_owned(),
                    action: AuditAction::CreateRepository,
                    subject: name.to_string(),
                    payload: serde_json::json!({ "repository": name.as_str() }),
                };
                crate::append_audit!(tx, &entry);
            }
            let row = sqlx::query("SELECT id, created_at FROM repositories WHERE name = $1")
                .bind(name.as_str())
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(Repository {
                id: row.get("id"),
                name: name.clone(),
                created_at: row.get("created_at"),
            })
        })
    }

    /// Repository names in lexical order, strictly after `after`, at most `limit`.
    pub async fn list(&self, after: Option<&str>, limit: i64) -> Result<Vec<RepoName>, StoreError> {
        with_pool!(self.backend, read, |pool| {
            let rows =
                sqlx::query("SELECT name FROM repositories WHERE name > $1 ORDER BY name LIMIT $2")
                    .bind(after.unwrap_or(""))
                    .bind(limit)
                    .fetch_all(pool)
                    .await?;
            rows.iter()
                .map(|row| {
                    let name: String = row.get("name");
                    RepoName::parse(&name).map_err(|e| StoreError::corrupt("repositories", e))
                })
                .collect()
        })
    }
}
