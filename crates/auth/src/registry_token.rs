//! Bearer tokens of the registry token protocol (the flow Docker, podman, skopeo and
//! oras follow after a `WWW-Authenticate: Bearer realm=…,service=…,scope=…`
//! challenge). The token endpoint grants the intersection of the scopes asked for and
//! those the caller holds, and signs them with a secret every replica shares (kept in
//! the database), so any replica verifies a token another issued without a lookup.
//!
//! A token names the Gantry token it was issued against, so revoking that token ends
//! its registry tokens too; and every request is still authorized against the caller's
//! current permissions — the signed scopes only ever narrow them.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;
use serde::{Deserialize, Serialize};

/// Marks registry tokens apart from API tokens.
pub const PREFIX: &str = "gnr.";

/// How long a registry token lives; clients ask again when it runs out.
pub const LIFETIME_SECONDS: i64 = 300;

/// The signing key.
#[derive(Clone)]
pub struct RegistryTokenKey(hmac::Key);

impl std::fmt::Debug for RegistryTokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RegistryTokenKey(***)")
    }
}

impl RegistryTokenKey {
    /// A key from the shared secret (hex or any text; at least 32 bytes).
    pub fn new(secret: &[u8]) -> RegistryTokenKey {
        RegistryTokenKey(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }
}

/// One granted scope: a repository and the actions allowed on it, or the catalog
/// (`type: registry`, `name: catalog`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

/// What a registry token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryClaims {
    /// The Gantry token it was issued against; `None` for an anonymous token.
    #[serde(rename = "tok", default, skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
    /// The service it was issued for.
    #[serde(rename = "aud")]
    pub service: String,
    pub access: Vec<Access>,
    /// Seconds since the epoch.
    pub iat: i64,
    pub exp: i64,
}

impl RegistryClaims {
    /// Whether the token grants `action` on `kind`/`name`.
    pub fn allows(&self, kind: &str, name: &str, action: &str) -> bool {
        self.access.iter().any(|access| {
            access.kind == kind
                && access.name == name
                && access.actions.iter().any(|a| a == action || a == "*")
        })
    }
}

/// Signs `claims` into a token.
pub fn sign(key: &RegistryTokenKey, claims: &RegistryClaims) -> String {
    let payload =
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("registry claims serialize"));
    let signed = format!("{PREFIX}{payload}");
    let tag = hmac::sign(&key.0, signed.as_bytes());
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

/// Checks a token's signature (in constant time) and expiry.
pub fn verify(
    key: &RegistryTokenKey,
    token: &str,
    now_seconds: i64,
) -> Result<RegistryClaims, &'static str> {
    let Some((signed, tag)) = token.rsplit_once('.') else {
        return Err("malformed registry token");
    };
    let Some(payload) = signed.strip_prefix(PREFIX) else {
        return Err("malformed registry token");
    };
    let tag = URL_SAFE_NO_PAD
        .decode(tag)
        .map_err(|_| "malformed registry token")?;
    hmac::verify(&key.0, signed.as_bytes(), &tag)
        .map_err(|_| "the registry token's signature is invalid")?;
    let payload = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| "malformed registry token")?;
    let claims: RegistryClaims =
        serde_json::from_slice(&payload).map_err(|_| "malformed registry token")?;
    if claims.exp <= now_seconds {
        return Err("the registry token has expired");
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: i64) -> RegistryClaims {
        RegistryClaims {
            token_id: Some("tok_1".into()),
            service: "gantry".into(),
            access: vec![Access {
                kind: "repository".into(),
                name: "acme/web".into(),
                actions: vec!["pull".into(), "push".into()],
            }],
            iat: 100,
            exp,
        }
    }

    #[test]
    fn tokens_verify_with_their_key_only_until_they_expire() {
        let key = RegistryTokenKey::new(b"0123456789abcdef0123456789abcdef");
        let token = sign(&key, &claims(200));
        assert_eq!(verify(&key, &token, 150), Ok(claims(200)));
        assert_eq!(
            verify(&key, &token, 200),
            Err("the registry token has expired")
        );
        let other = RegistryTokenKey::new(b"another secret of thirty-two bytes");
        assert!(verify(&other, &token, 150).is_err());
        let granted = verify(&key, &token, 150).expect("valid");
        assert!(granted.allows("repository", "acme/web", "push"));
        assert!(!granted.allows("repository", "acme/web", "delete"));
        assert!(!granted.allows("repository", "acme/api", "pull"));
        // Any change to the payload breaks the signature.
        let (signed, tag) = token.rsplit_once('.').expect("two parts");
        let mut forged = claims(200);
        forged.access[0].actions.push("delete".into());
        let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).expect("json"));
        let forged_token = format!("{PREFIX}{forged_payload}.{tag}");
        assert_ne!(signed, format!("{PREFIX}{forged_payload}"));
        assert_eq!(
            verify(&key, &forged_token, 150),
            Err("the registry token's signature is invalid")
        );
        for bad in ["", "gnr.", "gnr.x.y", "abc.def", "gnt_abc"] {
            assert!(verify(&key, bad, 150).is_err(), "{bad:?}");
        }
    }
}
