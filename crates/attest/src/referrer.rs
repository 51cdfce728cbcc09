//! Attestations as OCI referrers, in the layout cosign v3 writes (its `BUNDLE_SPEC`):
//! an in-toto Statement v1 in a DSSE envelope, inside a Sigstore bundle v0.3 with a
//! public-key hint, stored as the one layer of an image manifest whose `artifactType`
//! is the bundle's media type, whose config is the empty descriptor, whose `subject` is
//! the attested image, and whose annotations name the content (`dsse-envelope`), the
//! predicate type and the time it was made.
//!
//! [`sign`] makes the three pieces (the empty config, the bundle, the manifest); the
//! caller stores them. [`open`] reads them back and checks everything that can be
//! checked of one attestation without a policy: the manifest's shape, the layer's
//! digest, the bundle, the envelope's signature under one of the trusted keys, the
//! statement's type and that its subject is the image asked about. What the
//! statement then says is judged by [`crate::verify`].

use domain::{Digest, oci};
use serde_json::{Value, json};

use crate::dsse::Envelope;
use crate::key::{KeyError, PublicKey, SigningKey};

/// DSSE's payload type for in-toto statements.
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// The in-toto Statement v1 `_type`.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// SLSA Verification Summary Attestation v1.
pub const VSA_PREDICATE_TYPE: &str = "https://slsa.dev/verification_summary/v1";
/// Gantry's promotion predicate: who built, checked, approved and deployed the bytes.
pub const PROMOTION_PREDICATE_TYPE: &str = "https://gantry.dev/attestations/promotion/v1";
/// The Sigstore bundle the layer holds, also the manifest's `artifactType`.
pub const BUNDLE_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
/// What the bundle holds (`dsse-envelope` or `message-signature`).
pub const CONTENT_ANNOTATION: &str = "dev.sigstore.bundle.content";
/// The statement's predicate type, for picking attestations out of a referrers list.
pub const PREDICATE_TYPE_ANNOTATION: &str = "dev.sigstore.bundle.predicateType";
/// When the attestation was made (RFC 3339).
pub const CREATED_ANNOTATION: &str = "org.opencontainers.image.created";
/// The layer's suggested file name (`sha256-HEX.sigstore.json`).
pub const TITLE_ANNOTATION: &str = "org.opencontainers.image.title";
/// The empty descriptor's content, the manifest's config.
pub const EMPTY_CONFIG: &[u8] = b"{}";
/// The largest bundle [`open`] reads.
pub const MAX_BUNDLE_BYTES: u64 = 4 << 20;

/// The image an attestation is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    /// `HOST/REPOSITORY`, the statement's subject name.
    pub name: String,
    pub digest: Digest,
    /// The image manifest's media type and size, for the referrer's `subject`.
    pub media_type: String,
    pub size: u64,
}

/// A signed attestation, ready to store: three pieces of content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedAttestation {
    pub predicate_type: String,
    pub key_id: String,
    /// The Sigstore bundle: the layer.
    pub bundle: Vec<u8>,
    /// The referrer manifest.
    pub manifest: Vec<u8>,
    pub manifest_digest: Digest,
}

/// The in-toto Statement v1 about `subject`.
pub fn statement(subject: &Subject, predicate_type: &str, predicate: Value) -> Value {
    let mut digest = serde_json::Map::new();
    digest.insert(
        subject.digest.algorithm().as_str().to_owned(),
        json!(subject.digest.hex()),
    );
    json!({
        "_type": STATEMENT_TYPE,
        "subject": [{ "name": subject.name, "digest": digest }],
        "predicateType": predicate_type,
        "predicate": predicate,
    })
}

/// The bytes a statement of `predicate` about `subject` is signed as (the DSSE
/// payload): what [`sign`] signs, so another statement can name it by digest.
pub fn payload(subject: &Subject, predicate_type: &str, predicate: Value) -> Vec<u8> {
    // A JSON value always serializes.
    serde_json::to_vec(&statement(subject, predicate_type, predicate)).unwrap_or_default()
}

/// Signs a statement of `predicate` about `subject` with `key`, made at `created`
/// (RFC 3339), and lays it out as a referrer of the subject.
pub fn sign(
    subject: &Subject,
    predicate_type: &str,
    predicate: Value,
    created: &str,
    key: &SigningKey,
) -> Result<SignedAttestation, KeyError> {
    let payload = payload(subject, predicate_type, predicate);
    let envelope = Envelope::sign(IN_TOTO_PAYLOAD_TYPE, &payload, key)?;
    let bundle = serde_json::to_vec(&json!({
        "mediaType": BUNDLE_MEDIA_TYPE,
        "verificationMaterial": {
            "publicKey": { "hint": key.key_id() },
            "tlogEntries": [],
        },
        "dsseEnvelope": envelope.to_json(),
    }))
    .map_err(|_| KeyError::Sign)?;
    let manifest = manifest(subject, predicate_type, &bundle, created);
    Ok(SignedAttestation {
        predicate_type: predicate_type.to_owned(),
        key_id: key.key_id(),
        manifest_digest: Digest::sha256_of(&manifest),
        bundle,
        manifest,
    })
}

/// The referrer manifest holding `bundle`.
fn manifest(subject: &Subject, predicate_type: &str, bundle: &[u8], created: &str) -> Vec<u8> {
    let layer = Digest::sha256_of(bundle);
    let value = json!({
        "schemaVersion": 2,
        "mediaType": oci::IMAGE_MANIFEST,
        "artifactType": BUNDLE_MEDIA_TYPE,
        "config": {
            "mediaType": oci::EMPTY,
            "digest": Digest::sha256_of(EMPTY_CONFIG).to_string(),
            "size": EMPTY_CONFIG.len(),
        },
        "layers": [{
            "mediaType": BUNDLE_MEDIA_TYPE,
            "digest": layer.to_string(),
            "size": bundle.len(),
            "annotations": {
                TITLE_ANNOTATION: format!("{}-{}.sigstore.json", layer.algorithm().as_str(), layer.hex()),
            },
        }],
        "subject": {
            "mediaType": subject.media_type,
            "digest": subject.digest.to_string(),
            "size": subject.size,
        },
        "annotations": {
            CONTENT_ANNOTATION: "dsse-envelope",
            PREDICATE_TYPE_ANNOTATION: predicate_type,
            CREATED_ANNOTATION: created,
        },
    });
    // A JSON value always serializes.
    serde_json::to_vec(&value).unwrap_or_default()
}

/// The bundle layer a referrer manifest names: its digest and size. `None` when the
/// manifest is not a Sigstore bundle referrer.
pub fn bundle_layer(manifest: &[u8]) -> Option<(Digest, u64)> {
    let value: Value = serde_json::from_slice(manifest).ok()?;
    if value.get("artifactType").and_then(Value::as_str) != Some(BUNDLE_MEDIA_TYPE) {
        return None;
    }
    let layers = value.get("layers")?.as_array()?;
    let [layer] = layers.as_slice() else {
        return None;
    };
    if layer.get("mediaType").and_then(Value::as_str) != Some(BUNDLE_MEDIA_TYPE) {
        return None;
    }
    let digest = Digest::parse(layer.get("digest")?.as_str()?).ok()?;
    Some((digest, layer.get("size")?.as_u64()?))
}

/// One attestation whose signature and subject hold.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenedAttestation {
    pub manifest_digest: Digest,
    /// The key (of those trusted) whose signature verified.
    pub key_id: String,
    pub predicate_type: String,
    pub predicate: Value,
    /// The lowercase hex SHA-256 of the signed statement (how another statement, such
    /// as a summary's `inputAttestations`, names it).
    pub payload_digest: String,
    /// The manifest's `org.opencontainers.image.created`.
    pub created: Option<String>,
}

/// Why one attestation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("not a Sigstore bundle attestation: {0}")]
    Malformed(String),
    #[error("the bundle's bytes are not the layer the manifest names ({0})")]
    LayerMismatch(String),
    #[error("no trusted key verifies its signature (it names key {0})")]
    Signature(String),
    #[error("it is about {found}, not {expected}")]
    Subject { expected: String, found: String },
}

/// Reads and checks one attestation: `manifest` (the referrer manifest) and `bundle`
/// (its layer's bytes), about `subject`, signed by one of `keys`.
pub fn open(
    manifest: &[u8],
    bundle: &[u8],
    subject: &Digest,
    keys: &[PublicKey],
) -> Result<OpenedAttestation, Refusal> {
    let malformed = |what: &str| Refusal::Malformed(what.to_owned());
    let manifest_digest = Digest::sha256_of(manifest);
    let value: Value =
        serde_json::from_slice(manifest).map_err(|_| malformed("the manifest is not JSON"))?;
    let (layer, size) = bundle_layer(manifest)
        .ok_or_else(|| malformed("the manifest is not a Sigstore bundle referrer"))?;
    let actual = Digest::of(layer.algorithm(), bundle);
    if actual != layer || size != bundle.len() as u64 {
        return Err(Refusal::LayerMismatch(format!(
            "{actual} of {} bytes, not {layer} of {size}",
            bundle.len()
        )));
    }
    let bundle: Value =
        serde_json::from_slice(bundle).map_err(|_| malformed("the bundle is not JSON"))?;
    if bundle.get("mediaType").and_then(Value::as_str) != Some(BUNDLE_MEDIA_TYPE) {
        return Err(malformed("the bundle is not a v0.3 Sigstore bundle"));
    }
    let envelope = bundle
        .get("dsseEnvelope")
        .ok_or_else(|| malformed("the bundle holds no DSSE envelope"))?;
    let envelope = Envelope::from_json(envelope).map_err(|e| Refusal::Malformed(e.to_string()))?;
    if envelope.payload_type != IN_TOTO_PAYLOAD_TYPE {
        return Err(Refusal::Malformed(format!(
            "the envelope's payload type is {}, not {IN_TOTO_PAYLOAD_TYPE}",
            envelope.payload_type
        )));
    }
    let Some(key) = keys.iter().find(|key| envelope.verify(key).is_ok()) else {
        let named = envelope
            .signatures
            .iter()
            .filter_map(|signature| signature.keyid.clone())
            .next()
            .unwrap_or_else(|| "none".to_owned());
        return Err(Refusal::Signature(named));
    };
    let statement: Value = serde_json::from_slice(&envelope.payload)
        .map_err(|_| malformed("the signed payload is not JSON"))?;
    if statement.get("_type").and_then(Value::as_str) != Some(STATEMENT_TYPE) {
        return Err(malformed("the payload is not an in-toto Statement v1"));
    }
    let algorithm = subject.algorithm().as_str();
    let subjects: Vec<String> = statement
        .get("subject")
        .and_then(Value::as_array)
        .map(|subjects| {
            subjects
                .iter()
                .filter_map(|entry| entry.get("digest")?.get(algorithm)?.as_str())
                .map(|hex| format!("{algorithm}:{hex}"))
                .collect()
        })
        .unwrap_or_default();
    if !subjects.iter().any(|found| found == &subject.to_string()) {
        return Err(Refusal::Subject {
            expected: subject.to_string(),
            found: if subjects.is_empty() {
                "no digest".to_owned()
            } else {
                subjects.join(", ")
            },
        });
    }
    let predicate_type = statement
        .get("predicateType")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed("the statement names no predicate type"))?
        .to_owned();
    Ok(OpenedAttestation {
        payload_digest: Digest::sha256_of(&envelope.payload).hex().to_owned(),
        manifest_digest,
        key_id: key.key_id(),
        predicate_type,
        predicate: statement.get("predicate").cloned().unwrap_or(Value::Null),
        created: value
            .get("annotations")
            .and_then(|annotations| annotations.get(CREATED_ANNOTATION))
            .and_then(Value::as_str)
            .map(str::to_owned),
    })
}

#[cfg(test)]
#[path = "referrer_tests.rs"]
mod tests;
