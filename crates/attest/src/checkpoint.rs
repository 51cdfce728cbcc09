//! Signed checkpoints of the audit log: the chain's head (sequence and hash) at a
//! time, signed with the server's key over its DSSE pre-authentication encoding. The
//! hash chain alone catches an edited entry, but not a rewrite that recomputes every
//! later hash; such a rewrite no longer matches a checkpoint, and making a new one
//! needs the key, which is not in the database.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::dsse::pae;
use crate::key::{KeyError, PublicKey, SigningKey};

/// The DSSE payload type a checkpoint is signed under.
pub const PAYLOAD_TYPE: &str = "application/vnd.gantry.audit-checkpoint.v1+json";

/// The signed statement: `{"at":…,"hash":"…","key_id":"…","sequence":…}` (keys sorted,
/// no spaces).
pub fn payload(sequence: i64, hash: &str, at: i64, key_id: &str) -> Vec<u8> {
    serde_json::json!({
        "at": at,
        "hash": hash,
        "key_id": key_id,
        "sequence": sequence,
    })
    .to_string()
    .into_bytes()
}

/// Signs the checkpoint of entry `sequence` with hash `hash` at `at`; the signature,
/// base64.
pub fn sign(key: &SigningKey, sequence: i64, hash: &str, at: i64) -> Result<String, KeyError> {
    let message = pae(PAYLOAD_TYPE, &payload(sequence, hash, at, &key.key_id()));
    Ok(STANDARD.encode(key.sign(&message)?))
}

/// Whether `signature` (base64) is `key`'s over the checkpoint.
pub fn verify(key: &PublicKey, sequence: i64, hash: &str, at: i64, signature: &str) -> bool {
    let Ok(signature) = STANDARD.decode(signature) else {
        return false;
    };
    let message = pae(PAYLOAD_TYPE, &payload(sequence, hash, at, &key.key_id()));
    key.verify(&message, &signature)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_verifies_with_its_key_and_not_once_any_field_changes() {
        let directory = tempfile::tempdir().expect("temporary directory");
        let key = SigningKey::load_or_create(&directory.path().join("k.pem")).expect("a key");
        let signature = sign(&key, 42, "abc", 1_000).expect("signed");
        assert!(verify(key.public(), 42, "abc", 1_000, &signature));
        assert!(!verify(key.public(), 43, "abc", 1_000, &signature));
        assert!(!verify(key.public(), 42, "abd", 1_000, &signature));
        assert!(!verify(key.public(), 42, "abc", 1_001, &signature));
        let other = key.rotate().expect("another key");
        assert!(!verify(other.public(), 42, "abc", 1_000, &signature));
        assert!(!verify(key.public(), 42, "abc", 1_000, "not base64!"));
    }
}
