//! API token secrets: generated from the OS's random source, stored only as a hash.
//! Tokens carry 256 bits of entropy, so a plain SHA-256 is a sound verifier; lookup by
//! hash also means no secret is ever compared byte by byte in a timing-visible way.

use sha2::{Digest, Sha256};

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
}
