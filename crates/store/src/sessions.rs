//! The web UI's sign-in: people's passwords (as argon2id hashes, never the password)
//! and their sessions. A session is a row: any replica serves it, and deleting the row
//! (signing out, a new password, revoking the token it was opened with) ends it on
//! every replica at the next request.

use domain::audit::AuditAction;
use sqlx::Row;

use crate::{Backend, NewAuditEntry, StoreError, with_pool};

/// A session to open: its public id, whose it is, the hash of the secret its cookie
/// carries, the token its forms carry, and when it ends at the latest.
#[derive(Debug, Clone)]
pub struct NewSession<'a> {
    pub id: &'a str,
    pub user_name: &'a str,
    pub secret_hash: &'a str,
    pub csrf_token: &'a str,
    pub expires_at: i64,
    /// The API token the person signed in with; `None`: a password.
    pub token_id: Option<&'a str>,
}

/// An invitation to make: its public id, who is invited, the hash of the link's
/// secret, who invites, and until when the link works.
#[derive(Debug, Clone)]
pub struct NewInvitation<'a> {
    pub id: &'a str,
    pub user_name: &'a str,
    pub secret_hash: &'a str,
    pub created_by: &'a str,
    pub expires_at: i64,
}

/// An invitation that still works.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvitationRecord {
    pub id: String,
    pub user_name: String,
    pub created_by: String,
    pub created_at: i64,
    pub expires_at: i64,
}

/// A session found by its secret, with what it takes to judge it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub id: String,
    pub user_name: String,
    pub admin: bool,
    pub ci: bool,
    pub csrf_token: String,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub expires_at: i64,
    /// The API token it was opened with, and when that token was revoked and expires.
    pub token_id: Option<String>,
    pub token_revoked_at: Option<i64>,
    pub token_expires_at: Option<i64>,
}

/// A user's stored password hash and whether the user is a CI identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordRecord {
    pub user_name: String,
    pub admin: bool,
    pub ci: bool,
    /// The argon2id PHC string; `None`: no password was ever set.
    pub password_hash: Option<String>,
}

/// Access to passwords and web sessions.
pub struct Sessions<'a> {
    pub(crate) backend: &'a Backend,
}

impl Sessions<'_> {
    /// The stored password of `user` (matched without regard to ASCII case, as every
    /// user name is), or `None` if there is no such user.
    pub async fn password(&self, user: &str) -> Result<Option<PasswordRecord>, StoreError> {
        with_pool!(self.backend, read, |pool| {
            let row = sqlx::query(
                "SELECT name, admin, ci, password_hash FROM users WHERE LOWER(name) = LOWER($1)",
            )
            .bind(user)
            .fetch_optional(pool)
            .await?;
            Ok(row.map(|row| PasswordRecord {
                user_name: row.get("name"),
                admin: row.get("admin"),
                ci: row.get("ci"),
                password_hash: row.get("password_hash"),
            }))
        })
    }

    /// Sets the password hash of `user` as `actor` at `now`, audited (never the hash),
    /// and ends every session of that user: whoever knew the old password is signed
    /// out everywhere. False, changing nothing, if there is no such user.
    pub async fn set_password(
        &self,
        user: &str,
        password_hash: &str,
        actor: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        with_pool!(self.backend, write, |pool| {
            let mut tx = pool.begin().await?;
            let updated = sqlx::query("UPDATE users SET password_hash = $2 WHERE name = $1")
                .bind(user)
                .bind(password_hash)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if updated == 0 {
                return Ok(false);
            }
            let ended = sqlx::query("DELETE FROM web_sessions WHERE user_name = $1")
                .bind(user)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            // A password set by an admin voids an invitation not used yet: a link that
            // leaked cannot overwrite it.
            let voided =
                sqlx::query("DELETE FROM invitations WHERE user_name = $1 AND used_at IS NULL")
                    .bind(user)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
            let entry = NewAuditEntry {
                at: now,
                actor: actor.to_owned(),
                action: AuditAction::Password,
                subject: format!("user/{user}"),
                payload: serde_json::json!({
                    "user": user,
                    "sessions_ended": ended,
                    "invitations_voided": voided,
                }),
            };
            crate::append_audit!(tx, &entry);
            tx.commit().await?;
            Ok(true)
        })
    }

    /// Opens `session` at `now`, audited as the person's sign-in (with how they
    /// signed in and from where).
    pub async fn open(
        &self,
        session: &NewSession<'_>,
        client: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError> {
        with_pool!(self.backend, write, |pool| {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO web_sessions \
                 (id, user_name, secret_hash, csrf_token, created_at, last_seen_at, expires_at, token_id) \
                 VALUES ($1, $2, $3, $4, $5, $5, $6, $7)",
            )
            .bind(session.id)
            .bind(session.user_name)
            .bind(session.secret_hash)
            .bind(session.csrf_token)
            .bind(now)
            .bind(session.expires_at)
            .bind(session.token_id)
            .execute(&mut *tx)
            .await?;
            let entry = NewAuditEntry {
                at: now,
                actor: session.user_name.to_owned(),
                action: AuditAction::SignIn,
                subject: format!("user/{}", session.user_name),
                payload: serde_json::json!({
                    "session": session.id,
                    "with": if session.token_id.is_some() { "token" } else { "password" },
                    "token": session.token_id,
                    "client": client,
                    "expires_at": session.expires_at,
                }),
            };
            crate::append_audit!(tx, &entry);
            tx.commit().await?;
            Ok(())
        })
    }

    /// The session whose cookie secret hashes to `secret_hash`, with its user and the
    /// token it was opened with (the caller judges expiry and the token). One query.
    pub async fn find(&self, secret_hash: &str) -> Result<Option<SessionRecord>, StoreError> {
        with_pool!(self.backend, read, |pool| {
            let row = sqlx::query(
                "SELECT s.id, s.user_name, u.admin, u.ci, s.csrf_token, s.created_at, \
                        s.last_seen_at, s.expires_at, s.token_id, \
                        t.revoked_at AS token_revoked_at, t.expires_at AS token_expires_at \
                 FROM web_sessions s JOIN users u ON u.name = s.user_name \
                 LEFT JOIN api_tokens t ON t.id = s.token_id \
                 WHERE s.secret_hash = $1",
            )
            .bind(secret_hash)
            .fetch_optional(pool)
            .await?;
            Ok(row.map(|row| SessionRecord {
                id: row.get("id"),
                user_name: row.get("user_name"),
                admin: row.get("admin"),
                ci: row.get("ci"),
                csrf_token: row.get("csrf_token"),
                created_at: row.get("created_at"),
                last_seen_at: row.get("last_seen_at"),
                expires_at: row.get("expires_at"),
                token_id: row.get("token_id"),
                token_revoked_at: row.get("token_revoked_at"),
                token_expires_at: row.get("token_expires_at"),
            }))
        })
    }

    /// Records that session `id` was used at `now` (callers skip it while the stored
    /// time is recent: one write a minute, not one a page).
    pub async fn touch(&self, id: &str, now: i64) -> Result<(), StoreError> {
        with_pool!(self.backend, write, |pool| {
            sqlx::query("UPDATE web_sessions SET last_seen_at = $2 WHERE id = $1")
                .bind(id)
                .bind(now)
                .execute(pool)
                .await?;
            Ok(())
        })
    }

    /// Ends session `id` (signing out) at `now`, audited. False if it had ended already.
    pub async fn end(&self, id: &str, now: i64) -> Result<bool, StoreError> {
        with_pool!(self.backend, write, |pool| {
            let mut tx = pool.begin().await?;
            let ended = sqlx::query("DELETE FROM web_sessions WHERE id = $1 RETURNING user_name")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
            let Some(row) = ended else {
                return Ok(false);
            };
            let user: String = row.get("user_name");
            let entry = NewAuditEntry {
                at: now,
                actor: user.clone(),
                action: AuditAction::SignOut,
                subject: format!("user/{user}"),
                payload: serde_json::json!({ "session": id }),
            };
            crate::append_audit!(tx, &entry);
            tx.commit().await?;
            Ok(true)
        })
    }

    /// Forgets the sessions that ended by their absolute expiry before `now` (those
    /// ended by idleness are refused when presented and forgotten at their absolute
    /// expiry). How many.
    pub async fn purge_expired(&self, now: i64) -> Result<u64, StoreError> {
        with_pool!(self.backend, write, |pool| {
            let sessions = sqlx::query("DELETE FROM web_sessions WHERE expires_at <= $1")
                .bind(now)
                .execute(pool)
                .await?
                .rows_affected();
            let invitations = sqlx::query("DELETE FROM invitations WHERE expires_at <= $1")
                .bind(now)
                .execute(pool)
                .await?
                .rows_affected();
            Ok(sessions + invitations)
        })
    }

    /// Records `invitation` at `now`, voiding the person's earlier invitations that
    /// were not used, audited as `actor`'s. False if the person does not exist or is
    /// a CI identity (nobody invites those).
    pub async fn invite(
        &self,
        invitation: &NewInvitation<'_>,
        now: i64,
    ) -> Result<bool, StoreError> {
        with_pool!(self.backend, write, |pool| {
            let mut tx = pool.begin().await?;
            let person = sqlx::query("SELECT name FROM users WHERE name = $1 AND NOT ci")
                .bind(invitation.user_name)
                .fetch_optional(&mut *tx)
                .await?;
            if person.is_none() {
                return Ok(false);
            }
            let voided =
                sqlx::query("DELETE FROM invitations WHERE user_name = $1 AND used_at IS NULL")
                    .bind(invitation.user_name)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
            sqlx::query(
                "INSERT INTO invitations (id, user_name, secret_hash, created_by, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(invitation.id)
            .bind(invitation.user_name)
            .bind(invitation.secret_hash)
            .bind(invitation.created_by)
            .bind(now)
            .bind(invitation.expires_at)
            .execute(&mut *tx)
            .await?;
            let entry = NewAuditEntry {
                at: now,
                actor: invitation.created_by.to_owned(),
                action: AuditAction::Invite,
                subject: format!("user/{}", invitation.user_name),
                payload: serde_json::json!({
                    "user": invitation.user_name,
                    "invitation": invitation.id,
                    "expires_at": invitation.expires_at,
                    "voided": voided,
                }),
            };
            crate::append_audit!(tx, &entry);
            tx.commit().await?;
            Ok(true)
        })
    }

    /// The unused, unexpired invitation whose link secret hashes to `secret_hash`.
    pub async fn invitation(
        &self,
        secret_hash: &str,
        now: i64,
    ) -> Result<Option<InvitationRecord>, StoreError> {
        with_pool!(self.backend, read, |pool| {
            let row = sqlx::query(
                "SELECT id, user_name, created_by, created_at, expires_at FROM invitations \
                 WHERE secret_hash = $1 AND used_at IS NULL AND expires_at > $2",
            )
            .bind(secret_hash)
            .bind(now)
            .fetch_optional(pool)
            .await?;
            Ok(row.map(|row| InvitationRecord {
                id: row.get("id"),
                user_name: row.get("user_name"),
                created_by: row.get("created_by"),
                created_at: row.get("created_at"),
                expires_at: row.get("expires_at"),
            }))
        })
    }

    /// Uses the invitation whose secret hashes to `secret_hash` to set its person's
    /// password to `password_hash`, in one transaction: the link works once, the
    /// person's sessions end, and the change is audited as theirs. The person
    /// invited, or `None` if the link was used, expired or never existed.
    pub async fn accept_invitation(
        &self,
        secret_hash: &str,
        password_hash: &str,
        now: i64,
    ) -> Result<Option<String>, StoreError> {
        with_pool!(self.backend, write, |pool| {
            let mut tx = pool.begin().await?;
            let row = sqlx::query(
                "UPDATE invitations SET used_at = $2 \
                 WHERE secret_hash = $1 AND used_at IS NULL AND expires_at > $2 \
                 RETURNING id, user_name",
            )
            .bind(secret_hash)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = row else { return Ok(None) };
            let (id, user): (String, String) = (row.get("id"), row.get("user_name"));
            sqlx::query("UPDATE users SET password_hash = $2 WHERE name = $1")
                .bind(&user)
                .bind(password_hash)
                .execute(&mut *tx)
                .await?;
            let ended = sqlx::query("DELETE FROM web_sessions WHERE user_name = $1")
                .bind(&user)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            let entry = NewAuditEntry {
                at: now,
                actor: user.clone(),
                action: AuditAction::Password,
                subject: format!("user/{user}"),
                payload: serde_json::json!({
                    "user": user,
                    "invitation": id,
                    "sessions_ended": ended,
                }),
            };
            crate::append_audit!(tx, &entry);
            tx.commit().await?;
            Ok(Some(user))
        })
    }
}
