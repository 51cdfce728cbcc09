//! Invitation links: an admin invites a person (not a CI identity), who opens the
//! one-time link and chooses their own password, so no password travels between
//! people. The link carries a random secret; the store keeps only its SHA-256. A link
//! works once and until it expires; a new invitation voids the person's earlier unused
//! one.

use std::time::Duration;

use store::{InvitationRecord, NewInvitation, Store, StoreError};

use crate::passwords::{self, PasswordRefused};
use crate::sessions::{hash_secret, random_hex};

/// How long an invitation link works unless the admin says otherwise.
pub const DEFAULT_VALIDITY: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// The prefix of an invitation link's secret.
const SECRET_PREFIX: &str = "gsi_";

/// An invitation just made: the secret for the link (shown to the admin once) and when
/// it stops working.
#[derive(Debug, Clone)]
pub struct Invitation {
    pub id: String,
    pub secret: String,
    pub expires_at: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum InviteError {
    #[error("no user named {0}")]
    UnknownUser(String),
    #[error("{0} is a CI identity: CI identities never sign in, so nobody invites them")]
    CiIdentity(String),
    #[error("cannot make an invitation secret: {0}")]
    Random(#[from] getrandom::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    #[error(
        "this invitation link was used already, has expired, or never existed; ask an admin for a new one"
    )]
    NotValid,
    #[error(transparent)]
    Refused(#[from] PasswordRefused),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Invites `user`, as `actor`, for `validity`.
pub async fn invite(
    store: &Store,
    user: &str,
    actor: &str,
    validity: Duration,
    now: i64,
) -> Result<Invitation, InviteError> {
    match store.users().get(user).await? {
        None => return Err(InviteError::UnknownUser(user.to_owned())),
        Some(record) if record.ci => return Err(InviteError::CiIdentity(record.name)),
        Some(_) => {}
    }
    let secret = format!("{SECRET_PREFIX}{}", random_hex()?);
    let id = random_hex()?[..16].to_owned();
    let expires_at = now.saturating_add(i64::try_from(validity.as_millis()).unwrap_or(i64::MAX));
    let made = store
        .sessions()
        .invite(
            &NewInvitation {
                id: &id,
                user_name: user,
                secret_hash: &hash_secret(&secret),
                created_by: actor,
                expires_at,
            },
            now,
        )
        .await?;
    if !made {
        // Deleted (or made a CI identity) since it was read.
        return Err(InviteError::UnknownUser(user.to_owned()));
    }
    Ok(Invitation {
        id,
        secret,
        expires_at,
    })
}

/// The invitation `secret` opens, if it still works.
pub async fn pending(
    store: &Store,
    secret: &str,
    now: i64,
) -> Result<Option<InvitationRecord>, StoreError> {
    if !secret.starts_with(SECRET_PREFIX) {
        return Ok(None);
    }
    store.sessions().invitation(&hash_secret(secret), now).await
}

/// Sets the invited person's password to `password` through the invitation `secret`
/// (once). The person's name.
pub async fn accept(
    store: &Store,
    secret: &str,
    password: &str,
    now: i64,
) -> Result<String, AcceptError> {
    if pending(store, secret, now).await?.is_none() {
        return Err(AcceptError::NotValid);
    }
    passwords::check_new_password(password)?;
    let candidate = password.to_owned();
    let hash = tokio::task::spawn_blocking(move || passwords::hash_password(&candidate))
        .await
        .map_err(|error| PasswordRefused::Hashing(error.to_string()))??;
    store
        .sessions()
        .accept_invitation(&hash_secret(secret), &hash, now)
        .await?
        .ok_or(AcceptError::NotValid)
}
