//! Signing keys: `GET /api/v1/keys` lists the public keys Gantry signs and signed with
//! (anyone may read them: verifying needs no credentials), `POST /api/v1/keys/rotate`
//! makes a new one (admins).

use serde::{Deserialize, Serialize};

/// One signing key's public half.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SigningKeyView {
    /// The lowercase hex SHA-256 of the public key's SubjectPublicKeyInfo DER.
    pub key_id: String,
    /// `ecdsa-p256-sha256`.
    pub algorithm: String,
    /// The PEM `PUBLIC KEY`, as `cosign verify-attestation --key` and
    /// `gantry verify --key` read it.
    pub public_key: String,
    /// The same key as a JWK (`kty` EC, `crv` P-256, `x`, `y`, `kid`).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub jwk: serde_json::Value,
    /// Whether Gantry signs with it now.
    pub current: bool,
    /// When it became the current key.
    pub signed_from: String,
    /// When a rotation retired it (absent for the current key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_until: Option<String>,
}

/// `GET /api/v1/keys`: the current key first, then the retired ones, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SigningKeyList {
    pub keys: Vec<SigningKeyView>,
}

/// A signed checkpoint of the audit log: entry `sequence` had hash `hash` at `at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CheckpointView {
    pub sequence: i64,
    pub hash: String,
    /// RFC 3339.
    pub at: String,
    /// Milliseconds since the Unix epoch, as signed.
    pub at_millis: i64,
    pub key_id: String,
    /// Base64 ASN.1 DER ECDSA P-256 signature over the DSSE pre-authentication
    /// encoding of `{"at":AT_MILLIS,"hash":…,"key_id":…,"sequence":…}` with payload
    /// type `application/vnd.gantry.audit-checkpoint.v1+json`.
    pub signature: String,
}

/// `GET /api/v1/audit/checkpoints`: every checkpoint, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CheckpointList {
    pub checkpoints: Vec<CheckpointView>,
}
