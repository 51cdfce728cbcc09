//! People's passwords for the web UI: argon2id (the crate's defaults: 19 MiB, two
//! passes, one lane, as OWASP recommends), stored as PHC strings that carry their own
//! parameters, so raising them later leaves old hashes verifiable. Hashing costs tens
//! of milliseconds of one core on purpose: it runs off the async threads.

use argon2::password_hash::{PasswordHasher, PasswordVerifier};

/// The shortest password accepted, in characters.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// The longest password accepted, in bytes (hashing time grows with it).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Why a password cannot be set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordRefused {
    #[error("a password needs at least {MIN_PASSWORD_CHARS} characters")]
    TooShort,
    #[error("a password may have at most {MAX_PASSWORD_BYTES} bytes")]
    TooLong,
    #[error("a password may not hold control characters")]
    ControlCharacter,
    #[error("hashing the password failed: {0}")]
    Hashing(String),
}

/// The rules a new password must meet (length; no control characters, which no
/// keyboard types and which would not survive every form).
pub fn check_new_password(password: &str) -> Result<(), PasswordRefused> {
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(PasswordRefused::TooLong);
    }
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(PasswordRefused::TooShort);
    }
    if password.chars().any(char::is_control) {
        return Err(PasswordRefused::ControlCharacter);
    }
    Ok(())
}

/// The argon2id PHC string of a new `password` with a fresh random salt, after
/// [`check_new_password`]. Blocking: call it from a blocking thread.
pub fn hash_password(password: &str) -> Result<String, PasswordRefused> {
    check_new_password(password)?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|error| PasswordRefused::Hashing(error.to_string()))
}

/// Whether `password` matches the stored `hash`. A stored value that is no PHC string
/// matches nothing. With no stored hash (no such user, or none set) a fixed hash is
/// checked instead, so the time taken does not tell whether the user exists.
/// Blocking: call it from a blocking thread.
pub fn verify_password(password: &str, hash: Option<&str>) -> bool {
    if password.len() > MAX_PASSWORD_BYTES {
        return false;
    }
    let argon2 = argon2::Argon2::default();
    match hash {
        Some(hash) => argon2.verify_password(password.as_bytes(), hash).is_ok(),
        None => {
            let _ = argon2.verify_password(password.as_bytes(), DECOY_HASH);
            false
        }
    }
}

/// Why a password was not set.
#[derive(Debug, thiserror::Error)]
pub enum SetPasswordError {
    #[error(transparent)]
    Refused(#[from] PasswordRefused),
    #[error("no user named {0}")]
    UnknownUser(String),
    #[error("{0} is a CI identity: CI identities never sign in, so they have no password")]
    CiIdentity(String),
    #[error(transparent)]
    Store(#[from] store::StoreError),
}

/// Sets `user`'s password as `actor` at `now` (hashed off the async threads), audited
/// without the hash, ending every session the user had. CI identities have none.
pub async fn set_password(
    store: &store::Store,
    user: &str,
    password: &str,
    actor: &str,
    now: i64,
) -> Result<(), SetPasswordError> {
    check_new_password(password)?;
    let record = store
        .sessions()
        .password(user)
        .await?
        .ok_or_else(|| SetPasswordError::UnknownUser(user.to_owned()))?;
    if record.ci {
        return Err(SetPasswordError::CiIdentity(record.user_name));
    }
    let candidate = password.to_owned();
    let hash = tokio::task::spawn_blocking(move || hash_password(&candidate))
        .await
        .map_err(|error| PasswordRefused::Hashing(error.to_string()))??;
    if !store
        .sessions()
        .set_password(&record.user_name, &hash, actor, now)
        .await?
    {
        return Err(SetPasswordError::UnknownUser(user.to_owned()));
    }
    Ok(())
}

/// The argon2id hash of a random password nobody knows, with the default parameters:
/// what an unknown user's sign-in is checked against.
const DECOY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$3m7Q0cJkq0M1kz3Ey2d6WA$Y1m7mCqvSgk5q0xw8m3Fv8c7rVZx8zqkq2m8b1dC2yA";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_verifies_against_its_own_hash_only() {
        let hash = hash_password("correct horse battery").expect("hash");
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(verify_password("correct horse battery", Some(&hash)));
        assert!(!verify_password("correct horse batterY", Some(&hash)));
        assert!(!verify_password(
            "correct horse battery",
            Some("not a hash")
        ));
        assert!(!verify_password("correct horse battery", None));
        let again = hash_password("correct horse battery").expect("hash");
        assert_ne!(hash, again, "every hash has its own salt");
    }

    #[test]
    fn new_passwords_are_refused_when_short_long_or_holding_control_characters() {
        let check = |password: &str, expected: Result<(), PasswordRefused>| {
            assert_eq!(check_new_password(password), expected, "{password:?}");
        };
        check("elevenchars", Err(PasswordRefused::TooShort));
        check("twelve chars", Ok(()));
        check("ünïcødé-pässwörd", Ok(()));
        check(
            "tab\tinside-password",
            Err(PasswordRefused::ControlCharacter),
        );
        check(
            "nul\0inside-password",
            Err(PasswordRefused::ControlCharacter),
        );
        check(
            &"x".repeat(MAX_PASSWORD_BYTES + 1),
            Err(PasswordRefused::TooLong),
        );
        check(&"x".repeat(MAX_PASSWORD_BYTES), Ok(()));
    }

    #[test]
    fn the_decoy_hash_is_a_valid_hash_with_the_default_parameters() {
        // An invalid decoy would return at once and tell that a user does not exist.
        let parsed = argon2::password_hash::phc::PasswordHash::new(DECOY_HASH).expect("PHC");
        assert_eq!(parsed.algorithm.as_str(), "argon2id");
        let fresh = hash_password("another password").expect("hash");
        let prefix = |hash: &str| hash.rsplitn(3, '$').nth(2).map(str::to_owned);
        assert_eq!(prefix(DECOY_HASH), prefix(&fresh));
    }
}
