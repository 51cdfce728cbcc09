//! Web UI sessions: signing in (a password or an API token, within the limits on
//! failed credential checks), the session a cookie names, and signing out. A session
//! is a row in the store, found by the hash of the cookie's secret, so any replica
//! serves it and ending it ends it everywhere; it ends after a time without use and
//! at an absolute expiry, whichever comes first. CI identities never sign in.

use std::time::Duration;

use sha2::{Digest, Sha256};
use store::{NewSession, Store, StoreError};

use crate::{Attempt, TooManyFailures, passwords};

/// How long a session lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPolicy {
    /// Unused for this long, a session ends.
    pub idle: Duration,
    /// However busy, a session ends this long after it began.
    pub absolute: Duration,
}

impl Default for SessionPolicy {
    /// An hour idle, twelve hours at most: a working day without signing in twice,
    /// and an unattended browser signed out within the hour.
    fn default() -> SessionPolicy {
        SessionPolicy {
            idle: Duration::from_secs(60 * 60),
            absolute: Duration::from_secs(12 * 60 * 60),
        }
    }
}

/// How stale a session's recorded last use may get before a request updates it.
const LAST_SEEN_RESOLUTION_MILLIS: i64 = 60_000;

/// The prefix of a session cookie's secret.
const SECRET_PREFIX: &str = "gss_";

/// A signed-in person, as the session their cookie names tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSession {
    pub id: String,
    pub user_name: String,
    pub admin: bool,
    /// The token every form of this session must carry.
    pub csrf_token: String,
    pub expires_at: i64,
}

/// A session just opened: the cookie's value (its secret, given to the browser only)
/// and the session.
#[derive(Debug, Clone)]
pub struct OpenedSession {
    pub cookie_secret: String,
    pub session: WebSession,
}

/// Why nobody was signed in.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    /// The user name and password, or the token, do not match (one message for
    /// every reason, so the answer does not tell which user names exist).
    #[error("the user name or password is wrong")]
    WrongPassword,
    #[error("the token is not valid: {0}")]
    InvalidToken(&'static str),
    /// CI identities and tokens exchanged for a CI job's OIDC token act through the
    /// API only.
    #[error("CI identities cannot sign in to the web UI")]
    CiIdentity,
    #[error("{0}")]
    TooManyFailures(TooManyFailures),
    #[error("cannot make a session secret: {0}")]
    Random(#[from] getrandom::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Signs `user` in with `password`: checked (off the async threads) within the limits
/// on failed checks of `attempt`, the same limits every credential check spends.
pub async fn sign_in_with_password(
    store: &Store,
    attempt: Attempt<'_>,
    user: &str,
    password: &str,
    policy: SessionPolicy,
    client: Option<&str>,
    now: i64,
) -> Result<OpenedSession, SignInError> {
    let fingerprint = format!("password {user} {password}");
    let check = async {
        let record = store.sessions().password(user).await?;
        let stored = record.as_ref().and_then(|r| r.password_hash.clone());
        let candidate = password.to_owned();
        let matches = tokio::task::spawn_blocking(move || {
            passwords::verify_password(&candidate, stored.as_deref())
        })
        .await
        .unwrap_or(false);
        match record {
            Some(record) if matches => Ok(record),
            _ => Err(SignInError::WrongPassword),
        }
    };
    let record = attempt
        .limit(
            &fingerprint,
            || Some(user.to_ascii_lowercase()),
            check,
            |error| matches!(error, SignInError::WrongPassword),
        )
        .await
        .map_err(SignInError::TooManyFailures)??;
    if record.ci {
        return Err(SignInError::CiIdentity);
    }
    open(
        store,
        &record.user_name,
        record.admin,
        None,
        policy,
        client,
        now,
    )
    .await
}

/// Signs in with an API token (`gnt_…`) within the limits on failed checks. Tokens
/// exchanged for a CI job's identity and CI identities' tokens are refused.
pub async fn sign_in_with_token(
    store: &Store,
    attempt: Attempt<'_>,
    token: &str,
    policy: SessionPolicy,
    client: Option<&str>,
    now: i64,
) -> Result<OpenedSession, SignInError> {
    let token = token.trim();
    let check = async {
        let owner = store
            .users()
            .token_owner(&crate::tokens::hash_token(token))
            .await?
            .ok_or(SignInError::InvalidToken("unknown token"))?;
        match crate::token_refusal(owner.revoked_at, owner.expires_at, now) {
            Some(refusal) => Err(SignInError::InvalidToken(refusal)),
            None => Ok(owner),
        }
    };
    let owner = attempt
        .limit(
            token,
            || None,
            check,
            |error| matches!(error, SignInError::InvalidToken(_)),
        )
        .await
        .map_err(SignInError::TooManyFailures)??;
    if owner.ci || owner.scope.is_some() {
        return Err(SignInError::CiIdentity);
    }
    open(
        store,
        &owner.user_name,
        owner.admin,
        Some(&owner.token_id),
        policy,
        client,
        now,
    )
    .await
}

/// Opens a session for `user`, audited as their sign-in.
async fn open(
    store: &Store,
    user: &str,
    admin: bool,
    token_id: Option<&str>,
    policy: SessionPolicy,
    client: Option<&str>,
    now: i64,
) -> Result<OpenedSession, SignInError> {
    let cookie_secret = format!("{SECRET_PREFIX}{}", random_hex()?);
    let secret_hash = hash_secret(&cookie_secret);
    let id = format!("ses_{}", &secret_hash[..16]);
    let csrf_token = random_hex()?;
    let expires_at = now.saturating_add(millis(policy.absolute));
    store
        .sessions()
        .open(
            &NewSession {
                id: &id,
                user_name: user,
                secret_hash: &secret_hash,
                csrf_token: &csrf_token,
                expires_at,
                token_id,
            },
            client,
            now,
        )
        .await?;
    Ok(OpenedSession {
        cookie_secret,
        session: WebSession {
            id,
            user_name: user.to_owned(),
            admin,
            csrf_token,
            expires_at,
        },
    })
}

/// The session `cookie_secret` names, if it is still valid at `now` under `policy`:
/// not idle too long, not past its absolute expiry, its token (if it was opened with
/// one) neither revoked nor expired, its user no CI identity. One query, and one write
/// a minute to record its use.
pub async fn session(
    store: &Store,
    cookie_secret: &str,
    policy: SessionPolicy,
    now: i64,
) -> Result<Option<WebSession>, StoreError> {
    if !cookie_secret.starts_with(SECRET_PREFIX) {
        return Ok(None);
    }
    let Some(record) = store.sessions().find(&hash_secret(cookie_secret)).await? else {
        return Ok(None);
    };
    let idle_until = record.last_seen_at.saturating_add(millis(policy.idle));
    let absolute_until = record
        .expires_at
        .min(record.created_at.saturating_add(millis(policy.absolute)));
    let token_refused = record.token_id.is_some()
        && crate::token_refusal(record.token_revoked_at, record.token_expires_at, now).is_some();
    if now >= idle_until || now >= absolute_until || token_refused || record.ci {
        return Ok(None);
    }
    if now - record.last_seen_at >= LAST_SEEN_RESOLUTION_MILLIS {
        store.sessions().touch(&record.id, now).await?;
    }
    Ok(Some(WebSession {
        id: record.id,
        user_name: record.user_name,
        admin: record.admin,
        csrf_token: record.csrf_token,
        expires_at: absolute_until,
    }))
}

/// Ends session `id` (signing out), audited. False if it had ended already.
pub async fn sign_out(store: &Store, id: &str, now: i64) -> Result<bool, StoreError> {
    store.sessions().end(id, now).await
}

/// Whether `presented` is the session's CSRF token, compared in constant time.
pub fn csrf_matches(session: &WebSession, presented: &str) -> bool {
    let expected = session.csrf_token.as_bytes();
    let presented = presented.as_bytes();
    expected.len() == presented.len()
        && expected
            .iter()
            .zip(presented)
            .fold(0u8, |difference, (a, b)| difference | (a ^ b))
            == 0
}

pub(crate) fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

pub(crate) fn random_hex() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(hex::encode(bytes))
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}
