//! Gantry's signing key and what is signed with it.
//!
//! [`SigningKey`] is an ECDSA P-256 key with SHA-256 (`ecdsa-p256-sha256`): cosign,
//! Kyverno and Notation all accept it, where Ed25519 is refused by cosign's defaults.
//! The private key lives in a PEM file (PKCS#8, `-----BEGIN PRIVATE KEY-----`) outside
//! the database, so whoever can read or write the database can neither sign nor
//! rewrite what was signed; [`SigningKey::load_or_create`] creates it with mode 0600 on
//! first use and refuses one that others may read. [`SigningKey::rotate`] replaces the
//! file atomically with a new key. A key is named by its key id, the SHA-256 of its
//! public key (SubjectPublicKeyInfo DER), and published as PEM and as a JWK.
//! Signatures are ASN.1 DER, as DSSE envelopes and cosign carry them;
//! [`PublicKey::verify`] checks one. [`dsse`] is the envelope attestations travel in,
//! [`referrer`] the OCI referrer (cosign v3's layout) that carries them beside the
//! image, and [`verify`] what a verifier accepts of them; [`checkpoint`] signs the
//! audit log's head.

pub mod checkpoint;
pub mod dsse;
mod key;
pub mod referrer;
pub mod verify;

pub use key::{ALGORITHM, KeyError, PublicKey, SigningKey};
