//! Users and their API tokens. Tokens are stored only as hashes.

use sqlx::Row;

use crate::{Backend, StoreError, now_millis, with_pool};

// The one piece of SQL shared by two write paths, expanded inside each backend's arm.
macro_rules! insert_token_sql {
    ($executor:expr, $token:expr, $now:expr) => {
        sqlx::query(
            "INSERT INTO api_tokens (id, user_name, description, token_hash, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind($token.id)
        .bind($token.user_name)
        .bind($token.description)
        .bind($token.token_hash)
        .bind($now)
        .bind($token.expires_at)
        .execute($executor)
        .await
    };
}

/// A token to store: its id, owner, description and the hash of its secret.
#[derive(Debug, Clone)]
pub struct NewToken<'a> {
    pub id: &'a str,
    pub user_name: &'a str,
    pub description: &'a str,
    pub token_hash: &'a str,
    pub expires_at: Option<i64>,
}

/// Who a presented token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenOwner {
    pub token_id: String,
    pub user_name: String,
    pub admin: bool,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// Access to users and tokens.
pub struct Users<'a> {
    pub(crate) backend: &'a Backend,
}

impl Users<'_> {
    /// Creates the `admin` user with `token` if no user exists yet. Returns whether it
    /// did, so exactly one starting server (of several replicas) prints the token.
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
                "INSERT INTO users (name, admin, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
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
            tx.commit().await?;
            Ok(true)
        })
    }

    /// Creates a user (or leaves an existing one as it is).
    pub async fn create(&self, name: &str, admin: bool) -> Result<(), StoreError> {
        with_pool!(self.backend, write, |pool| {
            sqlx::query("INSERT INTO users (name, admin, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING")
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
        with_pool!(self.backend, read, |pool| {
            let row = sqlx::query(
                "SELECT t.id, t.user_name, u.admin, t.expires_at, t.revoked_at FROM api_tokens t \
                 JOIN users u ON u.name = t.user_name WHERE t.token_hash = $1",
            )
            .bind(token_hash)
            .fetch_optional(pool)
            .await?;
            Ok(row.map(|row| TokenOwner {
                token_id: row.get("id"),
                user_name: row.get("user_name"),
                admin: row.get("admin"),
                expires_at: row.get("expires_at"),
                revoked_at: row.get("revoked_at"),
            }))
        })
    }
}
