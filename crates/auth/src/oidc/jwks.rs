//! An issuer's signing keys, fetched from its JWKS (found through its discovery
//! document unless configured) and cached. A token naming a key id the cache does not
//! hold triggers one refetch — rotation works without a restart — but at most one per
//! interval, so a flood of made-up key ids cannot turn Gantry into a request amplifier.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::{Mutex, RwLock};

use super::jwt::{PublicKey, Refusal};

/// The largest discovery document or JWKS read.
const MAX_DOCUMENT_BYTES: u64 = 1 << 20;
/// How long a fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// The cached keys of one issuer.
pub struct KeySet {
    issuer: String,
    /// Fetches through the outbound guard.
    agent: ureq::Agent,
    /// Configured; otherwise read from the discovery document on first fetch.
    jwks_uri: Option<String>,
    /// Keys are refetched when older than this even if every kid is known.
    max_age: Duration,
    /// The least time between two fetches triggered by unknown key ids.
    min_refetch: Duration,
    keys: RwLock<Option<Cached>>,
    /// Serializes fetches and remembers when the last one started.
    fetching: Mutex<Option<Instant>>,
    fetches: AtomicU64,
}

struct Cached {
    keys: Arc<Vec<PublicKey>>,
    at: Instant,
}

impl KeySet {
    pub fn new(
        issuer: String,
        jwks_uri: Option<String>,
        max_age: Duration,
        min_refetch: Duration,
        outbound: Arc<outbound::Policy>,
    ) -> KeySet {
        KeySet {
            agent: outbound::agent(outbound, FETCH_TIMEOUT),
            issuer,
            jwks_uri,
            max_age,
            min_refetch,
            keys: RwLock::new(None),
            fetching: Mutex::new(None),
            fetches: AtomicU64::new(0),
        }
    }

    /// How many times the keys were fetched (discovery and JWKS count as one).
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// The current keys, fetching them if none are cached or they are stale.
    pub async fn keys(&self) -> Result<Arc<Vec<PublicKey>>, Refusal> {
        if let Some(cached) = &*self.keys.read().await
            && cached.at.elapsed() < self.max_age
        {
            return Ok(cached.keys.clone());
        }
        self.refresh(false).await
    }

    /// Fetches the keys again because a token named an unknown key id — unless a fetch
    /// started less than the minimum interval ago, in which case the cached keys (which
    /// that fetch produced) are the answer.
    pub async fn refresh_for_unknown_kid(&self) -> Result<Arc<Vec<PublicKey>>, Refusal> {
        self.refresh(true).await
    }

    async fn refresh(&self, unknown_kid: bool) -> Result<Arc<Vec<PublicKey>>, Refusal> {
        let mut last = self.fetching.lock().await;
        let recent = last.is_some_and(|at| at.elapsed() < self.min_refetch);
        if let Some(cached) = &*self.keys.read().await {
            // Another caller fetched while this one waited, or the interval is not up.
            let fresh = cached.at.elapsed() < self.max_age;
            if recent || (!unknown_kid && fresh) {
                return Ok(cached.keys.clone());
            }
        } else if recent {
            return Err(Refusal(format!(
                "the keys of {} could not be fetched recently; try again shortly",
                self.issuer
            )));
        }
        *last = Some(Instant::now());
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let issuer = self.issuer.clone();
        let jwks_uri = self.jwks_uri.clone();
        let agent = self.agent.clone();
        let fetched =
            tokio::task::spawn_blocking(move || fetch_keys(&agent, &issuer, jwks_uri.as_deref()))
                .await
                .map_err(|_| Refusal("fetching the issuer's keys failed".to_owned()))?;
        let keys = match fetched {
            Ok(keys) => Arc::new(keys),
            Err(reason) => {
                tracing::warn!(issuer = self.issuer, %reason, "fetching OIDC signing keys failed");
                // Keys that went stale still verify what they verified: an issuer that
                // is briefly unreachable does not stop CI.
                if let Some(cached) = &*self.keys.read().await {
                    return Ok(cached.keys.clone());
                }
                return Err(Refusal(format!(
                    "the keys of {} could not be fetched; the server log says why",
                    self.issuer
                )));
            }
        };
        *self.keys.write().await = Some(Cached {
            keys: keys.clone(),
            at: Instant::now(),
        });
        tracing::info!(
            issuer = self.issuer,
            keys = keys.len(),
            "OIDC signing keys fetched"
        );
        Ok(keys)
    }
}

/// Whether `url` may be fetched for keys: https, or http on a loopback address.
fn fetchable(url: &str) -> bool {
    domain::trust::valid_issuer(url)
}

fn get_json(agent: &ureq::Agent, url: &str) -> Result<Value, String> {
    if !fetchable(url) {
        return Err(format!("{url} is neither https nor a loopback address"));
    }
    let mut response = agent.get(url).call().map_err(|e| format!("{url}: {e}"))?;
    if response.status() != 200 {
        return Err(format!("{url} answered {}", response.status()));
    }
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_DOCUMENT_BYTES)
        .read_to_vec()
        .map_err(|e| format!("{url}: {e}"))?;
    serde_json::from_slice(&body).map_err(|_| format!("{url} did not answer JSON"))
}

/// Reads the discovery document (unless the JWKS URL is configured) and the JWKS.
fn fetch_keys(
    agent: &ureq::Agent,
    issuer: &str,
    jwks_uri: Option<&str>,
) -> Result<Vec<PublicKey>, String> {
    let jwks_uri = match jwks_uri {
        Some(uri) => uri.to_owned(),
        None => {
            let url = format!(
                "{}/.well-known/openid-configuration",
                issuer.trim_end_matches('/')
            );
            let discovery = get_json(agent, &url)?;
            if discovery.get("issuer").and_then(Value::as_str) != Some(issuer) {
                return Err(format!(
                    "the discovery document at {url} names another issuer"
                ));
            }
            discovery
                .get("jwks_uri")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("the discovery document at {url} has no jwks_uri"))?
                .to_owned()
        }
    };
    let jwks = get_json(agent, &jwks_uri)?;
    let keys = jwks
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| format!("{jwks_uri} is not a JWKS"))?;
    Ok(keys
        .iter()
        .filter_map(Value::as_object)
        .filter_map(PublicKey::from_jwk)
        .collect())
}
