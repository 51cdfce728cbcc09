//! DSSE, the Dead Simple Signing Envelope (secure-systems-lab/dsse v1.0): the
//! pre-authentication encoding a signature covers, and the JSON envelope that carries
//! the payload, its type and the signatures.
//!
//! `PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`, lengths in
//! ASCII decimal bytes. Envelopes are written with standard base64; both standard and
//! URL-safe base64 are read, as the specification requires of verifiers. Gantry signs
//! with ECDSA P-256 in ASN.1 DER (what cosign writes); a 64-byte `r || s` signature,
//! as the specification's own test vector has, is verified too.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

use crate::key::{KeyError, PublicKey, SigningKey};

/// The pre-authentication encoding of `payload` of type `payload_type`.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut encoded = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    encoded.extend_from_slice(payload);
    encoded
}

/// One signature of an envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvelopeSignature {
    /// The key id the signer named (unauthenticated: a hint, never trusted).
    pub keyid: Option<String>,
    pub sig: Vec<u8>,
}

/// A DSSE envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub payload_type: String,
    pub payload: Vec<u8>,
    pub signatures: Vec<EnvelopeSignature>,
}

/// Why an envelope was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("not a DSSE envelope: {0}")]
    Malformed(String),
    #[error("no signature of the envelope verifies with the key {0}")]
    NotSigned(String),
}

impl Envelope {
    /// Signs `payload` of type `payload_type` with `key`, naming its key id.
    pub fn sign(
        payload_type: &str,
        payload: &[u8],
        key: &SigningKey,
    ) -> Result<Envelope, KeyError> {
        let sig = key.sign(&pae(payload_type, payload))?;
        Ok(Envelope {
            payload_type: payload_type.to_owned(),
            payload: payload.to_vec(),
            signatures: vec![EnvelopeSignature {
                keyid: Some(key.key_id()),
                sig,
            }],
        })
    }

    /// The envelope's JSON: `payload`, `payloadType`, `signatures` of `{keyid, sig}`.
    pub fn to_json(&self) -> Value {
        json!({
            "payload": STANDARD.encode(&self.payload),
            "payloadType": self.payload_type,
            "signatures": self.signatures.iter().map(|signature| {
                let mut entry = json!({ "sig": STANDARD.encode(&signature.sig) });
                if let Some(keyid) = &signature.keyid {
                    entry["keyid"] = json!(keyid);
                }
                entry
            }).collect::<Vec<_>>(),
        })
    }

    /// Reads an envelope's JSON.
    pub fn from_json(value: &Value) -> Result<Envelope, EnvelopeError> {
        let malformed = |what: &str| EnvelopeError::Malformed(what.to_owned());
        let text = |field: &str| {
            value
                .get(field)
                .and_then(Value::as_str)
                .ok_or_else(|| malformed(&format!("`{field}` is not a string")))
        };
        let payload =
            decode(text("payload")?).ok_or_else(|| malformed("`payload` is not base64"))?;
        let payload_type = text("payloadType")?.to_owned();
        let signatures = value
            .get("signatures")
            .and_then(Value::as_array)
            .ok_or_else(|| malformed("`signatures` is not a list"))?
            .iter()
            .map(|entry| {
                let sig = entry
                    .get("sig")
                    .and_then(Value::as_str)
                    .and_then(decode)
                    .ok_or_else(|| malformed("a signature's `sig` is not base64"))?;
                let keyid = match entry.get("keyid") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(id)) => Some(id.clone()),
                    Some(_) => return Err(malformed("a signature's `keyid` is not a string")),
                };
                Ok(EnvelopeSignature { keyid, sig })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if signatures.is_empty() {
            return Err(malformed("it has no signature"));
        }
        Ok(Envelope {
            payload_type,
            payload,
            signatures,
        })
    }

    /// The payload, if a signature of the envelope verifies with `key` over its PAE
    /// (whatever key id the signature names).
    pub fn verify(&self, key: &PublicKey) -> Result<&[u8], EnvelopeError> {
        let encoded = pae(&self.payload_type, &self.payload);
        if self
            .signatures
            .iter()
            .any(|signature| key.verify(&encoded, &signature.sig))
        {
            Ok(&self.payload)
        } else {
            Err(EnvelopeError::NotSigned(key.key_id()))
        }
    }
}

fn decode(text: &str) -> Option<Vec<u8>> {
    STANDARD
        .decode(text)
        .or_else(|_| URL_SAFE.decode(text))
        .or_else(|_| URL_SAFE_NO_PAD.decode(text))
        .ok()
}

#[cfg(test)]
#[path = "dsse_tests.rs"]
mod tests;
