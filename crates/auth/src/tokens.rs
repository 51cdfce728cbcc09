//! API token secrets: generated from the OS's random source, stored only as a hash.
//! Tokens carry 256 bits of entropy, so a plain SHA-256 is a sound verifier; lookup by
//! hash also means no secret is ever compared byte by byte in a timing-visible way.

use sha2::{Digest, Sha256};
use store::{NewToken, Store, StoreError};

/// The prefix that makes Gantry tokens recognisable (e.g. by secret scanners).
pub(crate) const PREFIX: &str = "gnt_";

/// A new random token secret, shown once to its owner.
pub fn generate_token() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(format!("{PREFIX}{}", hex::encode(bytes)))
}

/// A token's public id, derived from the hash of its secret.
pub fn token_id(hash: &str) -> String {
    format!("tok_{}", &hash[..16.min(hash.len())])
}

/// The stored form of a token secret.
pub fn hash_token(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A new token: the secret (shown once to its owner), the hash that is stored, and
/// the public id derived from it. Every token Gantry issues is made here.
#[derive(Debug, Clone)]
pub struct FreshToken {
    pub secret: String,
    pub hash: String,
    pub id: String,
}

impl FreshToken {
    pub fn generate() -> Result<FreshToken, getrandom::Error> {
        let secret = generate_token()?;
        let hash = hash_token(&secret);
        let id = token_id(&hash);
        Ok(FreshToken { secret, hash, id })
    }
}

/// A token issued to a user: its secret is in this value only.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub id: String,
    pub user: String,
    pub secret: String,
    /// Milliseconds since the Unix epoch; `None`: it never expires.
    pub expires_at: Option<i64>,
}

/// Why no token was issued.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("no user named {0}")]
    UnknownUser(String),
    #[error("the random source failed: {0}")]
    Random(getrandom::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One day, in milliseconds.
const DAY_MILLIS: i64 = 24 * 60 * 60 * 1000;

/// Issues a token for the existing user `user`, valid for `expires_in_days` from `now`
/// (milliseconds) or without expiry, audited as issued by `by`. Who may issue tokens
/// (`users:manage`) is the caller's to judge.
pub async fn issue_token(
    store: &Store,
    user: &str,
    description: &str,
    expires_in_days: Option<u32>,
    by: &str,
    now: i64,
) -> Result<IssuedToken, IssueError> {
    if store.users().get(user).await?.is_none() {
        return Err(IssueError::UnknownUser(user.to_owned()));
    }
    let fresh = FreshToken::generate().map_err(IssueError::Random)?;
    let expires_at = expires_in_days.map(|days| now + i64::from(days) * DAY_MILLIS);
    store
        .users()
        .issue_token(
            NewToken {
                id: &fresh.id,
                user_name: user,
                description,
                token_hash: &fresh.hash,
                expires_at,
                scope: None,
            },
            by,
        )
        .await?;
    Ok(IssuedToken {
        id: fresh.id,
        user: user.to_owned(),
        secret: fresh.secret,
        expires_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_prefixed_and_hash_stably() {
        let a = generate_token().expect("random source");
        let b = generate_token().expect("random source");
        assert_ne!(a, b);
        assert!(a.starts_with("gnt_") && a.len() == 4 + 64);
        assert_eq!(hash_token(&a), hash_token(&a));
        assert_ne!(hash_token(&a), hash_token(&b));
    }

    #[test]
    fn a_fresh_token_is_found_by_the_hash_of_its_secret() {
        let fresh = FreshToken::generate().expect("random source");
        assert_eq!(fresh.hash, hash_token(&fresh.secret));
        assert_eq!(fresh.id, token_id(&fresh.hash));
        assert!(fresh.id.starts_with("tok_"));
    }
}
