//! OIDC federation: a CI job presents the token its platform minted for it (GitHub
//! Actions, GitLab, a Kubernetes service account…) and receives a short-lived Gantry
//! token scoped by the trust policies that match its claims. No secret is stored in CI.
//!
//! [`Federation::verify`] checks a job token against the trusted issuers
//! ([`jwt`] for the token itself, [`jwks`] for the keys); [`exchange`] matches the
//! verified claims against the declared trust policies and issues the token through
//! the store, which also remembers the job token's id so it is exchanged at most once.

pub mod jwks;
pub mod jwt;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use domain::RoleGrant;
use domain::trust::{MAX_TOKEN_LIFETIME, TrustPolicy};
use serde_json::{Map, Value};
use store::{ExchangeOutcome, NewToken, OidcExchange, Store};

use jwks::KeySet;
pub use jwt::{Algorithm, Refusal};

/// The GitHub Actions issuer, trusted unless configuration says otherwise.
pub const GITHUB_ACTIONS_ISSUER: &str = "https://token.actions.githubusercontent.com";

/// How much clock skew is tolerated on `exp`, `nbf` and `iat`.
pub const LEEWAY_SECONDS: i64 = 60;

/// How long past a job token's expiry (and the leeway) its id is remembered: replicas
/// whose clocks lag behind the one that purges still find it.
const REPLAY_MARGIN_SECONDS: i64 = 3600;

/// A trusted issuer, from configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerConfig {
    /// The exact `iss` its tokens carry.
    pub issuer: String,
    /// Where its keys are; `None`: read from its discovery document.
    pub jwks_uri: Option<String>,
    /// The algorithms accepted from it.
    pub algorithms: Vec<Algorithm>,
}

impl IssuerConfig {
    /// The GitHub Actions preset: keys from its discovery document, RS256.
    pub fn github_actions() -> IssuerConfig {
        IssuerConfig {
            issuer: GITHUB_ACTIONS_ISSUER.to_owned(),
            jwks_uri: None,
            algorithms: vec![Algorithm::Rs256],
        }
    }
}

/// How keys are cached.
#[derive(Debug, Clone, Copy)]
pub struct KeyCaching {
    /// Keys are refetched when older than this.
    pub max_age: Duration,
    /// The least time between fetches triggered by unknown key ids.
    pub min_refetch: Duration,
}

impl Default for KeyCaching {
    fn default() -> KeyCaching {
        KeyCaching {
            max_age: Duration::from_secs(3600),
            min_refetch: Duration::from_secs(60),
        }
    }
}

struct Trusted {
    config: IssuerConfig,
    keys: KeySet,
}

/// The trusted issuers and their cached keys. Cheap to clone.
#[derive(Clone, Default)]
pub struct Federation {
    issuers: Arc<Vec<Trusted>>,
    /// Every algorithm some trusted issuer signs with: what a token may name at all.
    algorithms: Arc<Vec<Algorithm>>,
}

/// A job token whose signature and registered claims checked out.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    pub issuer: String,
    pub registered: jwt::Registered,
    pub claims: Map<String, Value>,
}

impl Federation {
    /// Trusts `issuers`, fetching their keys through the outbound guard `outbound`.
    pub fn new(
        issuers: Vec<IssuerConfig>,
        caching: KeyCaching,
        outbound: Arc<outbound::Policy>,
    ) -> Federation {
        let issuers = issuers
            .into_iter()
            .map(|config| Trusted {
                keys: KeySet::new(
                    config.issuer.clone(),
                    config.jwks_uri.clone(),
                    caching.max_age,
                    caching.min_refetch,
                    outbound.clone(),
                ),
                config,
            })
            .collect::<Vec<Trusted>>();
        let mut algorithms: Vec<Algorithm> = Vec::new();
        for algorithm in issuers
            .iter()
            .flat_map(|trusted| &trusted.config.algorithms)
        {
            if !algorithms.contains(algorithm) {
                algorithms.push(*algorithm);
            }
        }
        Federation {
            issuers: Arc::new(issuers),
            algorithms: Arc::new(algorithms),
        }
    }

    /// The issuers trusted, in configuration order.
    pub fn issuers(&self) -> impl Iterator<Item = &IssuerConfig> {
        self.issuers.iter().map(|trusted| &trusted.config)
    }

    /// How many times `issuer`'s keys were fetched.
    pub fn key_fetches(&self, issuer: &str) -> u64 {
        self.issuers
            .iter()
            .find(|trusted| trusted.config.issuer == issuer)
            .map_or(0, |trusted| trusted.keys.fetches())
    }

    /// Verifies a job token: a trusted issuer, one of its keys, its registered claims.
    pub async fn verify(&self, token: &str, now_seconds: i64) -> Result<VerifiedToken, Refusal> {
        if token.starts_with(crate::tokens::PREFIX) {
            return jwt::refuse("this is a Gantry token, not a CI job's OIDC token");
        }
        // The algorithms of every trusted issuer bound what is parsed at all; the
        // issuer's own list is applied once it is known.
        let unverified = jwt::parse(token, &self.algorithms)?;
        let Some(Value::String(iss)) = unverified.claims.get("iss") else {
            return jwt::refuse("the token names no issuer (`iss`)");
        };
        let Some(trusted) = self
            .issuers
            .iter()
            .find(|trusted| trusted.config.issuer == *iss)
        else {
            return jwt::refuse(format!("issuer `{}` is not trusted", jwt::shown(iss)));
        };
        if !trusted.config.algorithms.contains(&unverified.algorithm) {
            return jwt::refuse(format!(
                "issuer `{iss}` does not sign with {}",
                unverified.algorithm.as_str()
            ));
        }
        let mut keys = trusted.keys.keys().await?;
        let known =
            |keys: &[jwt::PublicKey]| keys.iter().any(|key| unverified.could_be_signed_by(key));
        if !known(&keys) {
            keys = trusted.keys.refresh_for_unknown_kid().await?;
            if !known(&keys) {
                return jwt::refuse(match &unverified.kid {
                    Some(kid) => format!(
                        "no {} key with id `{}` is published by {iss}",
                        unverified.algorithm.as_str(),
                        jwt::shown(kid)
                    ),
                    None => format!(
                        "no {} key is published by {iss}",
                        unverified.algorithm.as_str()
                    ),
                });
            }
        }
        let signed = keys
            .iter()
            .filter(|key| unverified.could_be_signed_by(key))
            .any(|key| unverified.signed_by(key));
        if !signed {
            return jwt::refuse("the signature does not verify with the issuer's keys");
        }
        let registered = jwt::check_claims(
            &unverified.claims,
            &jwt::ClaimRules {
                issuer: &trusted.config.issuer,
                now: now_seconds,
                leeway: LEEWAY_SECONDS,
            },
        )?;
        Ok(VerifiedToken {
            issuer: trusted.config.issuer.clone(),
            registered,
            claims: unverified.claims,
        })
    }
}

/// A Gantry token issued for a job token.
#[derive(Debug, Clone)]
pub struct Exchanged {
    /// Shown once.
    pub secret: String,
    pub token_id: String,
    /// The CI identity it belongs to (`oidc/POLICY`).
    pub user: String,
    pub grants: Vec<RoleGrant>,
    /// Milliseconds since the epoch.
    pub expires_at: i64,
    /// The policies that matched, by name.
    pub policies: Vec<String>,
}

/// Why an exchange did not issue a token.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// The job token is not acceptable; the reason is logged and returned.
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("the random source failed: {0}")]
    Random(String),
}

/// The claims recorded in the audit log about the job that exchanged a token.
const EVIDENCE_CLAIMS: [&str; 11] = [
    "sub",
    "repository",
    "repository_owner",
    "ref",
    "sha",
    "environment",
    "workflow",
    "job_workflow_ref",
    "event_name",
    "run_id",
    "actor",
];

/// Exchanges a job token for a Gantry token: verified by `federation`, matched by the
/// `policies` (all that match contribute their grants; the shortest lifetime wins),
/// issued through the store, which refuses a job token id seen before.
pub async fn exchange(
    store: &Store,
    federation: &Federation,
    policies: &[TrustPolicy],
    token: &str,
    now_millis: i64,
) -> Result<Exchanged, ExchangeError> {
    let verified = federation
        .verify(token, now_millis.div_euclid(1000))
        .await
        .map_err(|refusal| ExchangeError::Refused(refusal.0))?;
    let mut matched: Vec<&TrustPolicy> = policies
        .iter()
        .filter(|policy| policy.issuer == verified.issuer && policy.matches(&verified.claims))
        .collect();
    matched.sort_by(|a, b| a.name.cmp(&b.name));
    let Some(first) = matched.first() else {
        return Err(ExchangeError::Refused(format!(
            "no trust policy matches this token (issuer {}, audience {}, subject {})",
            verified.issuer, verified.registered.audience, verified.registered.subject
        )));
    };
    let lifetime = matched
        .iter()
        .map(|policy| policy.max_token_lifetime)
        .min()
        .unwrap_or(MAX_TOKEN_LIFETIME)
        .min(MAX_TOKEN_LIFETIME);
    let grants: Vec<RoleGrant> = matched
        .iter()
        .flat_map(|policy| policy.grants())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let user = format!("oidc/{}", first.name);
    let crate::FreshToken {
        secret,
        hash,
        id: token_id,
    } = crate::FreshToken::generate().map_err(|e| ExchangeError::Random(e.to_string()))?;
    let expires_at = now_millis + i64::try_from(lifetime.as_millis()).unwrap_or(3_600_000);
    let policies: Vec<String> = matched.iter().map(|policy| policy.name.clone()).collect();
    let mut evidence = Map::new();
    for claim in EVIDENCE_CLAIMS {
        if let Some(value) = verified.claims.get(claim) {
            evidence.insert(claim.to_owned(), value.clone());
        }
    }
    evidence.insert("policies".to_owned(), Value::from(policies.clone()));
    let description = format!(
        "OIDC {} ({})",
        verified.registered.subject,
        policies.join(", ")
    );
    let outcome = store
        .access()
        .exchange(&OidcExchange {
            issuer: &verified.issuer,
            jti: &verified.registered.jti,
            job_token_expires_at: verified
                .registered
                .expires_at
                .saturating_add(LEEWAY_SECONDS + REPLAY_MARGIN_SECONDS)
                .saturating_mul(1000),
            user_name: &user,
            token: NewToken {
                id: &token_id,
                user_name: &user,
                description: &description,
                token_hash: &hash,
                expires_at: Some(expires_at),
                scope: Some(&grants),
            },
            evidence: Value::Object(evidence),
        })
        .await?;
    match outcome {
        ExchangeOutcome::Issued => Ok(Exchanged {
            secret,
            token_id,
            user,
            grants,
            expires_at,
            policies,
        }),
        ExchangeOutcome::Replayed => Err(ExchangeError::Refused(format!(
            "this job token (jti {}) was already exchanged",
            jwt::shown(&verified.registered.jti)
        ))),
        ExchangeOutcome::NameTaken => Err(ExchangeError::Refused(format!(
            "the identity {user} exists and is not a CI identity"
        ))),
    }
}
