//! Users and their API tokens. Tokens are stored only as hashes.

use std::collections::BTreeSet;

use domain::RoleGrant;
use domain::audit::AuditAction;
use domain::pipeline::{GrantScope, Role};
use sqlx::Row;

use crate::{Backend, NewAuditEntry, StoreError, now_millis, with_pool};

/// The audit entry of a token issued by `actor`: its id, never its secret.
fn token_issued(token: &NewToken<'_>, actor: &str, now: i64) -> NewAuditEntry {
    NewAuditEntry {
        at: now,
        actor: actor.to_owned(),
        action: AuditAction::Token,
        subject: format!("user/{}", token.user_name),
        payload: serde_json::json!({
            "token": token.id,
            "user": token.user_name,
            "description": token.description,
            "expires_at": token.expires_at,
        }),
    }
}

/// Who the audit log names for the admin user created on the very first start.
pub(crate) const BOOTSTRAP_ACTOR: &str = "gantry";

// The one piece of SQL shared by every path that issues a token, expanded inside each
// backend's arm.
macro_rules! insert_token_sql {
    ($executor:expr, $token:expr, $now:expr) => {
        sqlx::query(
            "INSERT INTO api_tokens (id, user_name, description, token_hash, created_at, expires_at, scope) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind($token.id)
        .bind($token.user_name)
        .bind($token.description)
        .bind($token.token_hash)
        .bind($now)
        .bind($token.expires_at)
        .bind($token.scope.map($crate::users::scope_json))
        .execute($executor)
        .await
    };
}

pub(crate) use insert_token_sql;

/// A token to store: its id, owner, description and the hash of its secret.
#[derive(Debug, Clone)]
pub struct NewToken<'a> {
    pub id: &'a str,
    pub user_name: &'a str,
    pub description: &'a str,
    pub token_hash: &'a str,
    pub expires_at: Option<i64>,
    /// The grants the token is limited to (an OIDC exchange); `None`: the user's roles.
    pub scope: Option<&'a [RoleGrant]>,
}

/// The stored form of a token's scope: a JSON array of grants.
pub(crate) fn scope_json(scope: &[RoleGrant]) -> String {
    serde_json::Value::from(scope.iter().map(ToString::to_string).collect::<Vec<_>>()).to_string()
}

/// A token's scope read back.
fn parse_scope(text: Option<String>) -> Result<Option<Vec<RoleGrant>>, StoreError> {
    let Some(text) = text else {
        return Ok(None);
    };
    let list: Vec<String> =
        serde_json::from_str(&text).map_err(|e| StoreError::corrupt("api_tokens.scope", e))?;
    list.iter()
        .map(|grant| {
            RoleGrant::parse(grant).map_err(|e| StoreError::corrupt("api_tokens.scope", e))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// A [`TokenOwner`] from its row.
fn token_owner<R: Row>(row: &R) -> Result<TokenOwner, StoreError>
where
    for<'r> &'r str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> bool: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<i64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(TokenOwner {
        token_id: row.get("id"),
        user_name: row.get("user_name"),
        admin: row.get("admin"),
        ci: row.get("ci"),
        expires_at: row.get("expires_at"),
        revoked_at: row.get("revoked_at"),
        last_used_at: row.get("last_used_at"),
        scope: parse_scope(row.get("scope"))?,
    })
}

/// Who a presented token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenOwner {
    pub token_id: String,
    pub user_name: String,
    pub admin: bool,
    /// The user is a CI identity.
    pub ci: bool,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub last_used_at: Option<i64>,
    /// The grants the token is limited to; `None`: the user's roles.
    pub scope: Option<Vec<RoleGrant>>,
}

/// A stored token, without its secret (which is never stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: String,
    pub user_name: String,
    pub description: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub last_used_at: Option<i64>,
}

/// The columns of a [`TokenRecord`].
macro_rules! token_record {
    ($row:expr) => {{
        let row = $row;
        TokenRecord {
            id: row.get("id"),
            user_name: row.get("user_name"),
            description: row.get("description"),
            created_at: row.get("created_at"),
            expires_at: row.get("expires_at"),
            revoked_at: row.get("revoked_at"),
            last_used_at: row.get("last_used_at"),
        }
    }};
}

/// Access to users and tokens.
pub struct Users<'a> {
    pub(crate) backend: &'a Backend,
}

impl Users<'_> {
    /// Creates the `admin` user with `token` if no user exists yet, audited as done by
    /// `gantry`. Returns whether it did, so exactly one starting server (of
    /// several replicas) prints the token.
    pub async fn bootstrap_admin(&self, token: NewToken<'_>) -> Result<bool, StoreError> {
        with_pool!(self.backend, write, |pool| {
            let now = now_millis();
            let mut tx = pool.begin().await?;
            let any = sqlx::query("SELECT name FROM users LIMIT 1")
                .fetch_optional(&mut *tx)
                .await?;
            if any.is_some() {
                return Ok(false);
            }
            let created = sqlx::query(
                "INSERT INTO users (name, admin, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            )
            .bind(token.user_name)
            .bind(true)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if created == 0 {
                return Ok(false);
            }
            insert_token_sql!(&mut *tx, token, now)?;
            let entries = [
                NewAuditEntry {
                    at: now,
                    actor: BOOTSTRAP_ACTOR.to_owned(),
                    action: AuditAction::User,
                    subject: format!("user/{}", token.user_name),
                    payload: serde_json::json!({ "admin": true, "ci": false, "roles": [], "bootstrap": true }),
                },
                token_issued(&token, BOOTSTRAP_ACTOR, now),
            ];
            for entry in &entries {
                crate::append_audit!(tx, entry);
            }
            tx.commit().await?;
            Ok(true)
        })
    }

    /// Creates a user (or leaves an existing one as it is).
    pub async fn create(&self, name: &str, admin: bool) -> Result<(), StoreError> {
        with_pool!(self.backend, write, |pool| {
            sqlx::query("INSERT INTO users (name, admin, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
                .bind(name)
                .bind(admin)
                .bind(now_millis())
                .execute(pool)
                .await?;
            Ok(())
        })
    }

    /// Stores a new token for an existing user.
    pub async fn create_token(&self, token: NewToken<'_>) -> Result<(), StoreError> {
        with_pool!(self.backend, write, |pool| {
            let mut tx = pool.begin().await?;
            insert_token_sql!(&mut *tx, token, now_millis())?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// The owner of the token with this hash, whether or not it is still valid.
    pub async fn token_owner(&self, token_hash: &str) -> Result<Option<TokenOwner>, StoreError> {
        self.token_owner_where("token_hash", token_hash).await
    }

    /// The owner of the token with this id, whether or not it is still valid.
    pub async fn token_owner_by_id(&self, id: &str) -> Result<Option<TokenOwner>, StoreError> {
        self.token_owner_where("id", id).await
    }

    /// The owner of the token whose `column` (`id` or `token_hash`, both unique) is `value`.
    async fn token_owner_where(
        &self,
        column: &'static str,
        value: &str,
    ) -> Result<Option<TokenOwner>, StoreError> {
        with_pool!(self.backend, read, |pool| {
            let sql = format!(
                "SELECT t.id, t.user_name, u.admin, u.ci, t.expires_at, t.revoked_at, t.last_used_at, t.scope \
                 FROM api_tokens t JOIN users u ON u.name = t.user_name WHERE t.{column} = $1"
            );
            let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(value)
                .fetch_optional(pool)
                .await?;
            row.map(|row| token_owner(&row)).transpose()
        })
    }

    /// Creates a user with roles (each global, or for one application) as done by
    /// `actor`, audited. Returns false, changing nothing, if the name is taken.
    pub async fn create_with_roles(
        &self,
        user: &NewUser<'_>,
        actor: &str,
    ) -> Result<bool, StoreError> {
        with_pool!(self.backend, write, |pool| {
            let now = now_millis();
            let mut tx = pool.begin().await?;
            let created = sqlx::query(
                "INSERT INTO users (name, admin, ci, created_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(user.name)
            .bind(user.admin)
            .bind(user.ci)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if created == 0 {
                return Ok(false);
            }
            for grant in user.roles {
                sqlx::query(
                    "INSERT INTO user_roles (user_name, role, application, environment, granted_at) \
                     VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (user_name, application, environment, role) DO NOTHING",
                )
                .bind(user.name)
                .bind(grant.role.as_str())
                .bind(grant.application.as_deref().unwrap_or(""))
                .bind(grant.environment.as_deref().unwrap_or(""))
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            let entry = NewAuditEntry {
                at: now,
                actor: actor.to_owned(),
                action: AuditAction::User,
                subject: format!("user/{}", user.name),
                payload: serde_json::json!({
                    "name": user.name,
                    "admin": user.admin,
                    "ci": user.ci,
                    "roles": user.roles.iter().map(RoleGrant::to_string).collect::<Vec<_>>(),
                }),
            };
            crate::append_audit!(tx, &entry);
            tx.commit().await?;
            Ok(true)
        })
    }

    /// Stores a new token for an existing user as issued by `actor`, audited (the
    /// token's id, never its secret).
    pub async fn issue_token(&self, token: NewToken<'_>, actor: &str) -> Result<(), StoreError> {
        with_pool!(self.backend, write, |pool| {
            let now = now_millis();
            let mut tx = pool.begin().await?;
            insert_token_sql!(&mut *tx, token, now)?;
            let entry = token_issued(&token, actor, now);
            crate::append_audit!(tx, &entry);
            tx.commit().await?;
            Ok(())
        })
    }

    /// Records that token `id` was used at `now`. Callers skip it while the stored
    /// time is recent, so a busy token costs one write a minute, not one a request.
    pub async fn touch_token(&self, id: &str, now: i64) -> Result<(), StoreError> {
        with_pool!(self.backend, write, |pool| {
            sqlx::query("UPDATE api_tokens SET last_used_at = $2 WHERE id = $1")
                .bind(id)
                .bind(now)
                .execute(pool)
                .await?;
            Ok(())
        })
    }

    /// The tokens of `user`, oldest first.
    pub async fn tokens(&self, user: &str) -> Result<Vec<TokenRecord>, StoreError> {
        with_pool!(self.backend, read, |pool| {
            let rows = sqlx::query(
                "SELECT id, user_name, description, created_at, expires_at, revoked_at, last_used_at \
                 FROM api_tokens WHERE user_name = $1 ORDER BY created_at, id",
            )
            .bind(user)
            .fetch_all(pool)
            .await?;
            Ok(rows.iter().map(|row| token_record!(row)).collect())
        })
    }

    /// One token by id.
    pub async fn token(&self, id: &str) -> Result<Option<TokenRecord>, StoreError> {
        with_pool!(self.backend, read, |pool| {
            let row = sqlx::query(
                "SELECT id, user_name, description, created_at, expires_at, revoked_at, last_used_at \
                 FROM api_tokens WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(pool)
            .await?;
            Ok(row.map(|row| token_record!(&row)))
        })
    }

    /// Revokes token `id` as `actor`, audited; revoking a revoked token changes nothing.
    /// The token as it is now, or `None` if there is no such token.
    pub async fn revoke_token(
        &self,
        id: &str,
        actor: &str,
    ) -> Result<Option<TokenRecord>, StoreError> {
        with_pool!(self.backend, write, |pool| {
            let now = now_millis();
            let mut tx = pool.begin().await?;
            let revoked = sqlx::query(
                "UPDATE api_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL RETURNING user_name",
            )
            .bind(id)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(row) = revoked {
                let user: String = row.get("user_name");
                let entry = NewAuditEntry {
                    at: now,
                    actor: actor.to_owned(),
                    action: AuditAction::Token,
                    subject: format!("user/{user}"),
                    payload: serde_json::json!({ "token": id, "user": user, "revoked": true }),
                };
                crate::append_audit!(tx, &entry);
            }
            let row = sqlx::query(
                "SELECT id, user_name, description, created_at, expires_at, revoked_at, last_used_at \
                 FROM api_tokens WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(row.map(|row| token_record!(&row)))
        })
    }

    /// A user with all their role grants.
    pub async fn get(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        with_pool!(self.backend, read, |pool| {
            let Some(row) = sqlx::query("SELECT name, admin, ci FROM users WHERE name = $1")
                .bind(name)
                .fetch_optional(pool)
                .await?
            else {
                return Ok(None);
            };
            let grants = sqlx::query(
                "SELECT role, application, environment FROM user_roles WHERE user_name = $1 \
                 ORDER BY application, environment, role",
            )
            .bind(name)
            .fetch_all(pool)
            .await?;
            let mut roles = Vec::with_capacity(grants.len());
            for grant in &grants {
                let role: String = grant.get("role");
                let application: String = grant.get("application");
                let environment: String = grant.get("environment");
                roles.push(RoleGrant {
                    role: Role::parse(&role).map_err(|e| StoreError::corrupt("user_roles", e))?,
                    application: (!application.is_empty()).then_some(application),
                    environment: (!environment.is_empty()).then_some(environment),
                });
            }
            Ok(Some(UserRecord {
                name: row.get("name"),
                admin: row.get("admin"),
                ci: row.get("ci"),
                roles,
            }))
        })
    }

    /// Users in name order after `after`, at most `limit`, with their grants.
    pub async fn list(
        &self,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<UserRecord>, StoreError> {
        let names: Vec<String> = with_pool!(self.backend, read, |pool| {
            sqlx::query("SELECT name FROM users WHERE name > $1 ORDER BY name LIMIT $2")
                .bind(after.unwrap_or(""))
                .bind(limit)
                .fetch_all(pool)
                .await?
                .iter()
                .map(|row| row.get("name"))
                .collect()
        });
        let mut users = Vec::with_capacity(names.len());
        for name in names {
            if let Some(user) = self.get(&name).await? {
                users.push(user);
            }
        }
        Ok(users)
    }
}

/// A user to create.
#[derive(Debug, Clone)]
pub struct NewUser<'a> {
    pub name: &'a str,
    pub admin: bool,
    /// A CI identity: may push, notify and report checks; never approves.
    pub ci: bool,
    pub roles: &'a [RoleGrant],
}

/// A stored user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub name: String,
    pub admin: bool,
    pub ci: bool,
    pub roles: Vec<RoleGrant>,
}

impl UserRecord {
    /// The roles that apply to `application` in `scope`, and `admin` for an
    /// administrator.
    pub fn roles_for(&self, application: &str, scope: GrantScope<'_>) -> BTreeSet<Role> {
        domain::pipeline::roles_granted(&self.roles, self.admin, application, scope)
    }
}
