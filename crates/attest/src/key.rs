//! The key file, the key id, PEM and JWK, signing and verifying.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P256_SHA256_FIXED, EcdsaKeyPair,
    KeyPair, UnparsedPublicKey,
};
use sha2::{Digest, Sha256};

/// The one signing algorithm, as `GET /api/v1/keys` names it.
pub const ALGORITHM: &str = "ecdsa-p256-sha256";

/// The DER of a P-256 SubjectPublicKeyInfo up to its 65-byte uncompressed point:
/// SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING (0 unused bits) }.
const SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];
const POINT_LEN: usize = 65;

/// Why a key could not be read, made or used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} may be read by other users (mode {mode:o}): a signing key must be readable by its owner only (chmod 600 {path})"
    )]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("{path} is not a PEM `PRIVATE KEY` holding an ECDSA P-256 key (PKCS#8): {reason}")]
    NotAKey { path: PathBuf, reason: String },
    #[error("not a PEM `PUBLIC KEY` holding an ECDSA P-256 key: {0}")]
    NotAPublicKey(String),
    #[error("making a key failed")]
    Generate,
    #[error("signing failed")]
    Sign,
}

/// The signing key: its key pair and where it is kept.
pub struct SigningKey {
    pair: EcdsaKeyPair,
    public: PublicKey,
    path: PathBuf,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("key_id", &self.public.key_id())
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Reads the key at `path`, or makes one there (mode 0600, its directory created
    /// 0700 when missing) when there is none.
    pub fn load_or_create(path: &Path) -> Result<SigningKey, KeyError> {
        match fs::metadata(path) {
            Ok(_) => SigningKey::load(path),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let pkcs8 = generate()?;
                write_new(path, &pkcs8, false)?;
                SigningKey::load(path)
            }
            Err(source) => Err(KeyError::Io {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// Reads the key at `path`, refusing a file others may read.
    pub fn load(path: &Path) -> Result<SigningKey, KeyError> {
        let io = |source| KeyError::Io {
            path: path.to_owned(),
            source,
        };
        let mode = fs::metadata(path).map_err(io)?.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(KeyError::TooOpen {
                path: path.to_owned(),
                mode: mode & 0o777,
            });
        }
        let text = fs::read_to_string(path).map_err(io)?;
        let not_a_key = |reason: &str| KeyError::NotAKey {
            path: path.to_owned(),
            reason: reason.to_owned(),
        };
        let der = pem_body(&text, "PRIVATE KEY").map_err(|reason| not_a_key(&reason))?;
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &der, &SystemRandom::new())
                .map_err(|error| not_a_key(&error.to_string()))?;
        let public = PublicKey::from_point(pair.public_key().as_ref())
            .map_err(|error| not_a_key(&error.to_string()))?;
        Ok(SigningKey {
            pair,
            public,
            path: path.to_owned(),
        })
    }

    /// Replaces the key file with a new key, atomically (a new file renamed over the
    /// old one), and returns it. The old private key is gone; its public key stays
    /// wherever it was published.
    pub fn rotate(&self) -> Result<SigningKey, KeyError> {
        let pkcs8 = generate()?;
        write_new(&self.path, &pkcs8, true)?;
        SigningKey::load(&self.path)
    }

    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    pub fn key_id(&self) -> String {
        self.public.key_id()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Signs `message` (ECDSA P-256 over its SHA-256): the signature in ASN.1 DER.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        self.pair
            .sign(&SystemRandom::new(), message)
            .map(|signature| signature.as_ref().to_vec())
            .map_err(|_| KeyError::Sign)
    }
}

/// A P-256 public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    /// The uncompressed point, `04 || X || Y`.
    point: Vec<u8>,
}

impl PublicKey {
    pub(crate) fn from_point(point: &[u8]) -> Result<PublicKey, KeyError> {
        if point.len() != POINT_LEN || point[0] != 0x04 {
            return Err(KeyError::NotAPublicKey(
                "not an uncompressed P-256 point".to_owned(),
            ));
        }
        Ok(PublicKey {
            point: point.to_vec(),
        })
    }

    /// Reads a PEM `PUBLIC KEY` (SubjectPublicKeyInfo) of a P-256 key.
    pub fn from_pem(text: &str) -> Result<PublicKey, KeyError> {
        let der = pem_body(text, "PUBLIC KEY").map_err(KeyError::NotAPublicKey)?;
        match der.strip_prefix(SPKI_PREFIX.as_slice()) {
            Some(point) => PublicKey::from_point(point),
            None => Err(KeyError::NotAPublicKey(
                "the key is not an ECDSA P-256 key".to_owned(),
            )),
        }
    }

    /// Every PEM `PUBLIC KEY` in `text` (a file of several keys, such as `gantry keys
    /// export` writes: the current one and those rotated out), in order.
    pub fn all_from_pem(text: &str) -> Result<Vec<PublicKey>, KeyError> {
        const END: &str = "-----END PUBLIC KEY-----";
        let mut keys = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("-----BEGIN PUBLIC KEY-----") {
            let Some(stop) = rest[start..].find(END) else {
                return Err(KeyError::NotAPublicKey(format!("no `{END}` line")));
            };
            let end = start + stop + END.len();
            keys.push(PublicKey::from_pem(&rest[start..end])?);
            rest = &rest[end..];
        }
        if keys.is_empty() {
            return Err(KeyError::NotAPublicKey(
                "no `-----BEGIN PUBLIC KEY-----` line".to_owned(),
            ));
        }
        Ok(keys)
    }

    /// SubjectPublicKeyInfo DER.
    pub fn spki_der(&self) -> Vec<u8> {
        let mut der = SPKI_PREFIX.to_vec();
        der.extend_from_slice(&self.point);
        der
    }

    /// The key id: the lowercase hex SHA-256 of [`PublicKey::spki_der`].
    pub fn key_id(&self) -> String {
        hex::encode(Sha256::digest(self.spki_der()))
    }

    /// The PEM `PUBLIC KEY`, as `cosign verify --key` reads it.
    pub fn pem(&self) -> String {
        pem("PUBLIC KEY", &self.spki_der())
    }

    /// The JWK (RFC 7517/7518): `kty` EC, `crv` P-256, `x`, `y`, `kid`, `alg` ES256.
    pub fn jwk(&self) -> serde_json::Value {
        serde_json::json!({
            "kty": "EC",
            "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(&self.point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&self.point[33..]),
            "kid": self.key_id(),
            "alg": "ES256",
            "use": "sig",
        })
    }

    /// Whether `signature` is this key's over `message`: ASN.1 DER, or the 64-byte
    /// `r || s` some signers write.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        let algorithm = if signature.len() == 64 {
            &ECDSA_P256_SHA256_FIXED
        } else {
            &ECDSA_P256_SHA256_ASN1
        };
        UnparsedPublicKey::new(algorithm, &self.point)
            .verify(message, signature)
            .is_ok()
    }
}

fn generate() -> Result<Vec<u8>, KeyError> {
    EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &SystemRandom::new())
        .map(|document| document.as_ref().to_vec())
        .map_err(|_| KeyError::Generate)
}

/// Writes a new key file at `path` (mode 0600): to a temporary file beside it, synced,
/// then renamed into place. Without `replace`, an existing file is an error.
fn write_new(path: &Path, pkcs8: &[u8], replace: bool) -> Result<(), KeyError> {
    let io = |source| KeyError::Io {
        path: path.to_owned(),
        source,
    };
    let directory = path.parent().unwrap_or(Path::new("."));
    if !directory.as_os_str().is_empty() && !directory.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(directory)
            .map_err(io)?;
    }
    let name = path
        .file_name()
        .map_or_else(|| "key".into(), |name| name.to_string_lossy().into_owned());
    let temporary = directory.join(format!(".{name}.{}.new", std::process::id()));
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temporary)
        .map_err(io)?;
    let written = file
        .write_all(pem("PRIVATE KEY", pkcs8).as_bytes())
        .and_then(|()| file.sync_all());
    if let Err(source) = written {
        let _ = fs::remove_file(&temporary);
        return Err(io(source));
    }
    let placed = if replace {
        fs::rename(&temporary, path)
    } else {
        // Never over a key another process made meanwhile.
        fs::hard_link(&temporary, path)
    };
    let _ = fs::remove_file(&temporary);
    placed.map_err(io)?;
    if let Ok(directory) = fs::File::open(directory) {
        let _ = directory.sync_all();
    }
    Ok(())
}

fn pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut text = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        text.push_str(&String::from_utf8_lossy(line));
        text.push('\n');
    }
    text.push_str(&format!("-----END {label}-----\n"));
    text
}

/// The DER inside the one PEM block labelled `label`.
fn pem_body(text: &str, label: &str) -> Result<Vec<u8>, String> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text
        .find(&begin)
        .ok_or_else(|| format!("no `{begin}` line"))?;
    let rest = &text[start + begin.len()..];
    let stop = rest.find(&end).ok_or_else(|| format!("no `{end}` line"))?;
    let body: String = rest[..stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    STANDARD
        .decode(body)
        .map_err(|error| format!("its body is not base64: {error}"))
}

#[cfg(test)]
#[path = "key_tests.rs"]
mod tests;
