//! A real OIDC issuer for tests: its discovery document and JWKS served over HTTP on a
//! loopback port, and tokens signed with its own RS256 and ES256 keys (RSA keys are
//! generated with the `openssl` command, which every Debian machine has; P-256 keys
//! with `ring`). Nothing of the verifier is mocked: Gantry fetches these keys the way
//! it fetches GitHub's.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, RSA_PKCS1_SHA256, RsaKeyPair,
};
use serde_json::{Map, Value, json};

/// A signing key of the issuer.
pub enum SigningKey {
    Rsa(RsaKeyPair),
    P256(EcdsaKeyPair),
}

impl SigningKey {
    /// A fresh 2048-bit RSA key (made by `openssl genpkey`).
    pub fn rsa() -> SigningKey {
        let output = std::process::Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-outform",
                "DER",
            ])
            .output()
            .expect("the openssl command runs");
        assert!(output.status.success(), "openssl genpkey failed");
        SigningKey::Rsa(
            RsaKeyPair::from_der(&output.stdout).expect("an RSA private key (PKCS#1 DER)"),
        )
    }

    /// A fresh P-256 key.
    pub fn p256() -> SigningKey {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("key generation");
        SigningKey::P256(
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
                .expect("a P-256 key"),
        )
    }

    pub fn alg(&self) -> &'static str {
        match self {
            SigningKey::Rsa(_) => "RS256",
            SigningKey::P256(_) => "ES256",
        }
    }

    /// The public JWK of this key under `kid`.
    pub fn jwk(&self, kid: &str) -> Value {
        match self {
            SigningKey::Rsa(key) => {
                let public = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(key.public());
                json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
                       "n": URL_SAFE_NO_PAD.encode(&public.n), "e": URL_SAFE_NO_PAD.encode(&public.e)})
            }
            SigningKey::P256(key) => {
                let point = key.public_key().as_ref();
                json!({"kty": "EC", "kid": kid, "use": "sig", "alg": "ES256", "crv": "P-256",
                       "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..65])})
            }
        }
    }

    /// The RSA public key in DER (`RSAPublicKey`), what an attacker would use as an
    /// HMAC secret in the algorithm-confusion attack.
    pub fn public_der(&self) -> Vec<u8> {
        match self {
            SigningKey::Rsa(key) => key.public().as_ref().to_vec(),
            SigningKey::P256(key) => key.public_key().as_ref().to_vec(),
        }
    }

    /// Signs `input` (`header.payload`).
    pub fn sign(&self, input: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match self {
            SigningKey::Rsa(key) => {
                let mut signature = vec![0; key.public().modulus_len()];
                key.sign(&RSA_PKCS1_SHA256, &rng, input, &mut signature)
                    .expect("signing");
                signature
            }
            SigningKey::P256(key) => key.sign(&rng, input).expect("signing").as_ref().to_vec(),
        }
    }
}

/// Encodes a JSON value as a JWT segment.
pub fn segment(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).expect("json"))
}

#[derive(Default)]
struct Published {
    keys: Vec<Value>,
}

/// An issuer serving its discovery document and JWKS on a loopback port.
pub struct TestIssuer {
    /// `http://127.0.0.1:PORT`, the `iss` of its tokens.
    pub url: String,
    published: Arc<Mutex<Published>>,
    fetches: Arc<AtomicU64>,
    _server: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct Shared {
    url: String,
    published: Arc<Mutex<Published>>,
    fetches: Arc<AtomicU64>,
}

async fn discovery(State(shared): State<Shared>) -> Json<Value> {
    Json(json!({
        "issuer": shared.url,
        "jwks_uri": format!("{}/.well-known/jwks", shared.url),
        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
    }))
}

async fn jwks(State(shared): State<Shared>) -> Json<Value> {
    shared.fetches.fetch_add(1, Ordering::SeqCst);
    let keys = shared.published.lock().expect("not poisoned").keys.clone();
    Json(json!({ "keys": keys }))
}

impl TestIssuer {
    /// Starts an issuer publishing no keys yet.
    pub async fn start() -> TestIssuer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let url = format!("http://{}", listener.local_addr().expect("local address"));
        let published = Arc::new(Mutex::new(Published::default()));
        let fetches = Arc::new(AtomicU64::new(0));
        let shared = Shared {
            url: url.clone(),
            published: published.clone(),
            fetches: fetches.clone(),
        };
        let app = axum::Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/.well-known/jwks", get(jwks))
            .with_state(shared);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        TestIssuer {
            url,
            published,
            fetches,
            _server: server,
        }
    }

    /// Publishes `key`'s public half under `kid`.
    pub fn publish(&self, kid: &str, key: &SigningKey) {
        self.publish_jwk(key.jwk(kid));
    }

    /// Publishes a JWK as given.
    pub fn publish_jwk(&self, jwk: Value) {
        self.published.lock().expect("not poisoned").keys.push(jwk);
    }

    /// How many times the JWKS was fetched.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::SeqCst)
    }

    /// Claims of a valid job token for `audience`, issued now, valid 5 minutes, with a
    /// fresh `jti`.
    pub fn claims(&self, audience: &str) -> Map<String, Value> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs() as i64;
        let claims = json!({
            "iss": self.url,
            "aud": audience,
            "sub": "repo:acme/web:ref:refs/heads/main",
            "repository": "acme/web",
            "repository_owner": "acme",
            "ref": "refs/heads/main",
            "sha": "0123456789abcdef0123456789abcdef01234567",
            "workflow": "build",
            "event_name": "push",
            "iat": now,
            "nbf": now,
            "exp": now + 300,
            "jti": uuid::Uuid::new_v4().to_string(),
        });
        claims.as_object().expect("object").clone()
    }

    /// A token with `claims`, signed by `key` under `kid`.
    pub fn sign(&self, key: &SigningKey, kid: &str, claims: &Map<String, Value>) -> String {
        let header = json!({"alg": key.alg(), "typ": "JWT", "kid": kid});
        sign_with_header(key, &header, claims)
    }
}

/// A token with an explicit header, signed by `key` (whatever the header says).
pub fn sign_with_header(key: &SigningKey, header: &Value, claims: &Map<String, Value>) -> String {
    let input = format!(
        "{}.{}",
        segment(header),
        segment(&Value::Object(claims.clone()))
    );
    let signature = key.sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
}
