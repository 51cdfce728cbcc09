//! Compact JWS (JWT) parsing and verification for the two algorithms Gantry accepts
//! from CI issuers: RS256 and ES256. Everything an attacker controls is checked
//! before it is used: the size, three segments of strict base64url, a header naming
//! an allowed algorithm and no critical extensions, a signature made by one of the
//! issuer's published keys (never a key the token carries in `jwk`, `jku`, `x5u` or
//! `x5c`, which are ignored), then the claims.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature;
use serde_json::{Map, Value};

/// The largest token accepted; CI job tokens are a few kilobytes.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// The signature algorithms a trusted issuer may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Rs256,
    Es256,
}

impl Algorithm {
    pub fn parse(text: &str) -> Option<Algorithm> {
        match text {
            "RS256" => Some(Algorithm::Rs256),
            "ES256" => Some(Algorithm::Es256),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Rs256 => "RS256",
            Algorithm::Es256 => "ES256",
        }
    }
}

/// A public key from an issuer's JWKS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    pub kid: Option<String>,
    pub key: KeyMaterial,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyMaterial {
    /// Big-endian modulus and exponent.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// The uncompressed P-256 point (`04 || x || y`).
    P256 { point: Vec<u8> },
}

impl PublicKey {
    fn algorithm(&self) -> Algorithm {
        match self.key {
            KeyMaterial::Rsa { .. } => Algorithm::Rs256,
            KeyMaterial::P256 { .. } => Algorithm::Es256,
        }
    }

    /// Reads one JWK; `None` for keys Gantry cannot use (other types or curves,
    /// encryption keys, or keys bound to another algorithm), which are skipped.
    pub fn from_jwk(jwk: &Map<String, Value>) -> Option<PublicKey> {
        let text = |name: &str| jwk.get(name).and_then(Value::as_str);
        let bytes = |name: &str| text(name).and_then(|v| URL_SAFE_NO_PAD.decode(v).ok());
        if text("use").is_some_and(|u| u != "sig") {
            return None;
        }
        let key = match (text("kty")?, text("alg")) {
            ("RSA", None | Some("RS256")) => {
                let n = bytes("n")?;
                let e = bytes("e")?;
                if n.is_empty() || e.is_empty() {
                    return None;
                }
                KeyMaterial::Rsa { n, e }
            }
            ("EC", None | Some("ES256")) if text("crv") == Some("P-256") => {
                let (x, y) = (bytes("x")?, bytes("y")?);
                if x.len() != 32 || y.len() != 32 {
                    return None;
                }
                let mut point = Vec::with_capacity(65);
                point.push(4);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                KeyMaterial::P256 { point }
            }
            _ => return None,
        };
        Some(PublicKey {
            kid: text("kid").map(str::to_owned),
            key,
        })
    }

    fn verifies(&self, message: &[u8], signature_bytes: &[u8]) -> bool {
        match &self.key {
            KeyMaterial::Rsa { n, e } => signature::RsaPublicKeyComponents { n, e }
                .verify(
                    &signature::RSA_PKCS1_2048_8192_SHA256,
                    message,
                    signature_bytes,
                )
                .is_ok(),
            KeyMaterial::P256 { point } => {
                signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, signature_bytes)
                    .is_ok()
            }
        }
    }
}

/// A token split and decoded, its signature not yet checked.
#[derive(Debug)]
pub struct Unverified {
    pub algorithm: Algorithm,
    pub kid: Option<String>,
    pub claims: Map<String, Value>,
    signing_input: String,
    signature: Vec<u8>,
}

/// Why a token was refused; the text is logged and returned to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(pub String);

pub(crate) fn refuse<T>(reason: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal(reason.into()))
}

/// Splits and decodes `token`, refusing anything malformed or using an algorithm
/// outside `allowed`.
pub fn parse(token: &str, allowed: &[Algorithm]) -> Result<Unverified, Refusal> {
    if token.len() > MAX_TOKEN_BYTES {
        return refuse(format!("the token is larger than {MAX_TOKEN_BYTES} bytes"));
    }
    let segments: Vec<&str> = token.split('.').collect();
    if segments.len() != 3 {
        return refuse(format!(
            "a JWT has 3 dot-separated segments, this has {}",
            segments.len()
        ));
    }
    let decode = |segment: &str, what: &str| {
        URL_SAFE_NO_PAD
            .decode(segment)
            .map_err(|_| Refusal(format!("the {what} is not base64url")))
    };
    let header: Map<String, Value> = serde_json::from_slice(&decode(segments[0], "header")?)
        .map_err(|_| Refusal("the header is not a JSON object".to_owned()))?;
    let algorithm = match header.get("alg") {
        Some(Value::String(alg)) => match Algorithm::parse(alg) {
            Some(algorithm) if allowed.contains(&algorithm) => algorithm,
            _ => {
                return refuse(format!(
                    "algorithm `{}` is not allowed (allowed: {})",
                    shown(alg),
                    allowed
                        .iter()
                        .map(|a| a.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        },
        _ => return refuse("the header names no algorithm"),
    };
    if header.contains_key("crit") {
        return refuse(
            "the header lists critical extensions (`crit`), none of which are supported",
        );
    }
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return refuse("the key id (`kid`) is not a string"),
    };
    let claims: Map<String, Value> = serde_json::from_slice(&decode(segments[1], "payload")?)
        .map_err(|_| Refusal("the payload is not a JSON object".to_owned()))?;
    let signature = decode(segments[2], "signature")?;
    if signature.is_empty() {
        return refuse("the token is not signed");
    }
    Ok(Unverified {
        algorithm,
        kid,
        claims,
        signing_input: format!("{}.{}", segments[0], segments[1]),
        signature,
    })
}

impl Unverified {
    /// Whether `key` is of the token's algorithm and made its signature.
    pub fn signed_by(&self, key: &PublicKey) -> bool {
        key.algorithm() == self.algorithm
            && key.verifies(self.signing_input.as_bytes(), &self.signature)
    }

    /// Whether `key` can verify this token's algorithm (and has its kid, if it names one).
    pub fn could_be_signed_by(&self, key: &PublicKey) -> bool {
        key.algorithm() == self.algorithm
            && self
                .kid
                .as_deref()
                .is_none_or(|kid| key.kid.as_deref() == Some(kid))
    }
}

/// A value from the token, shortened and escaped for a message: the token is the
/// caller's, and its text is echoed back and logged.
pub(crate) fn shown(text: &str) -> String {
    const MAX: usize = 64;
    let mut shown: String = text
        .chars()
        .take(MAX)
        .collect::<String>()
        .escape_debug()
        .to_string();
    if text.chars().count() > MAX {
        shown.push('…');
    }
    shown
}

/// What the registered claims must satisfy.
#[derive(Debug, Clone)]
pub struct ClaimRules<'a> {
    pub issuer: &'a str,
    /// Seconds since the epoch.
    pub now: i64,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
    pub leeway: i64,
}

/// The registered claims of a verified token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    pub jti: String,
    pub subject: String,
    pub audience: String,
    /// Seconds since the epoch.
    pub expires_at: i64,
}

/// Checks `iss` (exactly), `aud` (present, one audience), `sub` and `jti` (present),
/// `exp` (present, not past beyond the leeway), `nbf` and `iat` (not in the future
/// beyond the leeway).
pub fn check_claims(
    claims: &Map<String, Value>,
    rules: &ClaimRules<'_>,
) -> Result<Registered, Refusal> {
    match claims.get("iss") {
        Some(Value::String(iss)) if iss == rules.issuer => {}
        Some(Value::String(iss)) => {
            return refuse(format!("issuer `{}` is not `{}`", shown(iss), rules.issuer));
        }
        _ => return refuse("the token names no issuer (`iss`)"),
    }
    let audience = match claims.get("aud") {
        Some(Value::String(aud)) if !aud.is_empty() => aud.clone(),
        Some(Value::Array(list)) if list.len() == 1 => match list[0].as_str() {
            Some(aud) if !aud.is_empty() => aud.to_owned(),
            _ => return refuse("the audience (`aud`) is not a string"),
        },
        Some(Value::Array(list)) if list.len() > 1 => {
            return refuse(
                "the token names several audiences (`aud`); it must be minted for Gantry alone",
            );
        }
        _ => return refuse("the token names no audience (`aud`)"),
    };
    let time = |name: &str| -> Result<Option<i64>, Refusal> {
        match claims.get(name) {
            None => Ok(None),
            Some(Value::Number(number)) => match number.as_i64().or_else(|| {
                number
                    .as_f64()
                    .filter(|f| f.is_finite())
                    .map(|f| f.floor() as i64)
            }) {
                Some(seconds) => Ok(Some(seconds)),
                None => refuse(format!("`{name}` is not a time")),
            },
            Some(_) => refuse(format!("`{name}` is not a number of seconds")),
        }
    };
    let Some(expires_at) = time("exp")? else {
        return refuse("the token has no expiry (`exp`)");
    };
    if expires_at.saturating_add(rules.leeway) <= rules.now {
        return refuse(format!(
            "the token expired {} s ago",
            rules.now.saturating_sub(expires_at)
        ));
    }
    if let Some(not_before) = time("nbf")?
        && not_before > rules.now.saturating_add(rules.leeway)
    {
        return refuse(format!(
            "the token is not valid for another {} s (`nbf`)",
            not_before.saturating_sub(rules.now)
        ));
    }
    if let Some(issued_at) = time("iat")?
        && issued_at > rules.now.saturating_add(rules.leeway)
    {
        return refuse("the token was issued in the future (`iat`)");
    }
    let subject = match claims.get("sub") {
        Some(Value::String(sub)) if !sub.is_empty() => sub.clone(),
        _ => return refuse("the token names no subject (`sub`)"),
    };
    let jti = match claims.get("jti") {
        Some(Value::String(jti)) if !jti.is_empty() && jti.len() <= 256 => jti.clone(),
        _ => return refuse("the token has no id (`jti`), so it could be replayed"),
    };
    Ok(Registered {
        jti,
        subject,
        audience,
        expires_at,
    })
}
