//! What access needs beyond users and tokens: the server's signing secrets (shared by
//! every replica through the database) and the exchange of CI job tokens (OIDC) for
//! scoped Gantry tokens, each job token at most once.

use domain::RoleGrant;
use domain::audit::AuditAction;
use sqlx::Row;

use crate::{Backend, NewAuditEntry, NewToken, StoreError, now_millis, with_pool};

/// A verified job token to exchange, and the token to issue for it.
#[derive(Debug, Clone)]
pub struct OidcExchange<'a> {
    pub issuer: &'a str,
    pub jti: &'a str,
    /// Until when the job token's id is remembered (after its expiry, with a margin).
    pub job_token_expires_at: i64,
    /// The CI identity the token is issued to (created on first use).
    pub user_name: &'a str,
    pub token: NewToken<'a>,
    /// What the audit entry records about the job: the claims that identify it and
    /// the policies that matched.
    pub evidence: serde_json::Value,
}

/// What an exchange did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeOutcome {
    Issued,
    /// The job token's id was exchanged before; nothing was issued.
    Replayed,
    /// A user of that name exists and is not a CI identity; nothing was issued.
    NameTaken,
}

/// Access to secrets and OIDC exchanges.
pub struct Access<'a> {
    pub(crate) backend: &'a Backend,
}

impl Access<'_> {
    /// The secret named `name`. The first caller's `fresh` value is stored; every
    /// later caller, on any replica, reads that one.
    pub async fn secret(&self, name: &str, fresh: &str) -> Result<String, StoreError> {
        with_pool!(self.backend, write, |pool| {
            sqlx::query(
                "INSERT INTO server_secrets (name, secret, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(name)
            .bind(fresh)
            .bind(now_millis())
            .execute(pool)
            .await?;
            let row = sqlx::query("SELECT secret FROM server_secrets WHERE name = $1")
                .bind(name)
                .fetch_one(pool)
                .await?;
            Ok(row.get("secret"))
        })
    }

    /// Records the job token's id, creates the CI identity if it is new, and issues the
    /// scoped token — all or nothing, audited.
    pub async fn exchange(
        &self,
        exchange: &OidcExchange<'_>,
    ) -> Result<ExchangeOutcome, StoreError> {
        with_pool!(self.backend, write, |pool| {
            let now = now_millis();
            let mut tx = pool.begin().await?;
            let first = sqlx::query(
                "INSERT INTO oidc_exchanges (issuer, jti, expires_at, exchanged_at, token_id) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (issuer, jti) DO NOTHING",
            )
            .bind(exchange.issuer)
            .bind(exchange.jti)
            .bind(exchange.job_token_expires_at)
            .bind(now)
            .bind(exchange.token.id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if first == 0 {
                return Ok(ExchangeOutcome::Replayed);
            }
            sqlx::query(
                "INSERT INTO users (name, admin, ci, created_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(exchange.user_name)
            .bind(false)
            .bind(true)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            // Absent: a user whose name differs only in case holds the name.
            let Some(user) = sqlx::query("SELECT admin, ci FROM users WHERE name = $1")
                .bind(exchange.user_name)
                .fetch_optional(&mut *tx)
                .await?
            else {
                return Ok(ExchangeOutcome::NameTaken);
            };
            let (admin, ci): (bool, bool) = (user.get("admin"), user.get("ci"));
            if admin || !ci {
                return Ok(ExchangeOutcome::NameTaken);
            }
            let token = &exchange.token;
            crate::users::insert_token_sql!(&mut *tx, token, now)?;
            let entry = NewAuditEntry {
                at: now,
                actor: exchange.user_name.to_owned(),
                action: AuditAction::Token,
                subject: format!("user/{}", exchange.user_name),
                payload: serde_json::json!({
                    "token": token.id,
                    "user": token.user_name,
                    "expires_at": token.expires_at,
                    "scope": token.scope.unwrap_or_default().iter().map(RoleGrant::to_string).collect::<Vec<_>>(),
                    "oidc": {
                        "issuer": exchange.issuer,
                        "jti": exchange.jti,
                        "job": exchange.evidence,
                    },
                }),
            };
            crate::append_audit!(tx, &entry);
            tx.commit().await?;
            Ok(ExchangeOutcome::Issued)
        })
    }

    /// Forgets exchanged job token ids whose tokens expired before `before` (they can
    /// no longer be presented); returns how many.
    pub async fn purge_exchanges(&self, before: i64) -> Result<u64, StoreError> {
        with_pool!(self.backend, write, |pool| {
            Ok(
                sqlx::query("DELETE FROM oidc_exchanges WHERE expires_at < $1")
                    .bind(before)
                    .execute(pool)
                    .await?
                    .rows_affected(),
            )
        })
    }
}
