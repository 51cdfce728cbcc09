//! The `webhook` target: POSTs a signed JSON description of the deployment to the
//! declared URL, then waits for the receiver to report the outcome through its
//! one-time callback, `POST /api/v1/deployments/{id}/callback`, or for the target's
//! timeout.
//!
//! The payload is signed with HMAC-SHA256 under the target's secret
//! (`X-Gantry-Signature: sha256=HEX` over `TIMESTAMP.BODY`, the timestamp in
//! `X-Gantry-Timestamp`), so receivers can tell Gantry's requests from forgeries and
//! refuse replays. The callback token is an HMAC of the deployment id under a key the
//! replicas share through the store: every attempt (and every replica) hands out the
//! same token, nothing secret is stored, and the store accepts one report per
//! deployment. A report that arrived before a crash is found again by the next attempt,
//! which then does not POST again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use resources::Target;
use ring::hmac;
use store::Store;
use tokio::sync::{Notify, OnceCell};

use deploy::Secrets;
use deploy::{DeployContext, DeployError, DeployFuture, Deployer};

/// The name of the key callback tokens are derived from, in the store's secrets.
const CALLBACK_KEY: &str = "deployment-callback-key";
/// How long one delivery of the payload may take.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the store is read for a report that arrived at another replica.
const CALLBACK_POLL: Duration = Duration::from_millis(500);

/// Derives and checks callback tokens. Cheap to clone; one per server.
#[derive(Clone)]
pub struct Callbacks {
    store: Store,
    key: Arc<OnceCell<hmac::Key>>,
    /// Wakes deployers waiting on this replica when a report arrives here.
    arrived: Arc<Notify>,
}

impl std::fmt::Debug for Callbacks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Callbacks").finish_non_exhaustive()
    }
}

impl Callbacks {
    pub fn new(store: Store) -> Callbacks {
        Callbacks {
            store,
            key: Arc::new(OnceCell::new()),
            arrived: Arc::new(Notify::new()),
        }
    }

    async fn key(&self) -> Result<&hmac::Key, String> {
        self.key
            .get_or_try_init(|| async {
                let mut fresh = [0u8; 32];
                getrandom::fill(&mut fresh).map_err(|e| format!("generating a key: {e}"))?;
                let secret = self
                    .store
                    .access()
                    .secret(CALLBACK_KEY, &hex::encode(fresh))
                    .await
                    .map_err(|e| format!("reading the callback key: {e}"))?;
                Ok(hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes()))
            })
            .await
    }

    /// The one-time token of deployment `id`'s callback.
    pub async fn token(&self, id: i64) -> Result<String, String> {
        let key = self.key().await?;
        Ok(hex::encode(
            hmac::sign(key, format!("deployment-callback:{id}").as_bytes()).as_ref(),
        ))
    }

    /// Whether `presented` is deployment `id`'s token (compared in constant time).
    pub async fn verify(&self, id: i64, presented: &str) -> Result<bool, String> {
        let key = self.key().await?;
        let Ok(presented) = hex::decode(presented) else {
            return Ok(false);
        };
        Ok(hmac::verify(
            key,
            format!("deployment-callback:{id}").as_bytes(),
            &presented,
        )
        .is_ok())
    }

    /// The report on deployment `id`, if one arrived: whether it succeeded, its message.
    async fn report(&self, id: i64) -> Result<Option<(bool, Option<String>)>, DeployError> {
        self.store
            .jobs()
            .callback(id)
            .await
            .map_err(|e| DeployError::Transient(e.to_string()))
    }

    /// Records a report and wakes the deployers waiting here; false if one was
    /// recorded before.
    pub async fn record(
        &self,
        id: i64,
        succeeded: bool,
        message: Option<&str>,
    ) -> Result<bool, String> {
        let recorded = self
            .store
            .jobs()
            .record_callback(id, succeeded, message, store::now_millis())
            .await
            .map_err(|e| e.to_string())?;
        if recorded {
            self.arrived.notify_waiters();
        }
        Ok(recorded)
    }
}

/// Delivers deployments to receivers and waits for their reports.
pub struct WebhookDeployer {
    callbacks: Callbacks,
    secrets: Secrets,
    outbound: Arc<outbound::Policy>,
    /// Where receivers reach this server (`https://gantry.example.com`).
    base_url: String,
}

impl WebhookDeployer {
    /// Signs with secrets from `secrets`, reaches receivers through `outbound`, and
    /// names callback URLs under `base_url`.
    pub fn new(
        callbacks: Callbacks,
        secrets: Secrets,
        outbound: Arc<outbound::Policy>,
        base_url: &str,
    ) -> WebhookDeployer {
        WebhookDeployer {
            callbacks,
            secrets,
            outbound,
            base_url: base_url.trim_end_matches('/').to_owned(),
        }
    }

    /// The outcome of a report.
    fn outcome(succeeded: bool, message: Option<String>) -> Result<String, DeployError> {
        let message = message.unwrap_or_default();
        if succeeded {
            Ok(format!("the receiver reported success{}", suffix(&message)))
        } else {
            Err(DeployError::Failed(format!(
                "the receiver reported failure{}",
                suffix(&message)
            )))
        }
    }

    async fn run(&self, job: &DeployContext<'_>) -> Result<String, DeployError> {
        let Target::Webhook(target) = &job.environment.target else {
            return Err(DeployError::Failed(
                "the environment's target is not a webhook".to_owned(),
            ));
        };
        let id = job.order.deployment_id;
        if let Some((succeeded, message)) = self.callbacks.report(id).await? {
            job.log
                .line("the receiver had reported already; not delivering again");
            return WebhookDeployer::outcome(succeeded, message);
        }
        let token = self
            .callbacks
            .token(id)
            .await
            .map_err(DeployError::Transient)?;
        let callback_url = format!("{}/api/v1/deployments/{id}/callback", self.base_url);
        let config = job
            .order
            .config
            .as_deref()
            .and_then(|text| serde_json::from_str::<serde_json::Value>(text).ok())
            .unwrap_or_else(|| serde_json::json!({}));
        let body = serde_json::to_vec(&serde_json::json!({
            "application": job.order.application,
            "environment": job.order.environment,
            "digest": job.order.digest,
            "image": job.image,
            "config": config,
            "deployment_id": id,
            "promotion_id": job.order.promotion_id,
            "reason": job.order.reason.as_str(),
            "requested_by": job.order.requested_by,
            "approvers": job.approvers,
            "attempt": job.attempt,
            "callback_url": callback_url,
            "callback_token": token,
        }))
        .map_err(|e| DeployError::Failed(format!("encoding the payload: {e}")))?;
        let signature = match &target.secret_ref {
            Some(reference) => {
                let secret = self.secrets.read(reference).map_err(DeployError::Failed)?;
                Some(secret)
            }
            None => None,
        };
        let url = target.url.as_str().to_owned();
        job.log.line(format!("delivering deployment {id} to {url}"));
        let agent = outbound::agent(self.outbound.clone(), DELIVERY_TIMEOUT);
        let delivery = tokio::task::spawn_blocking({
            let url = url.clone();
            move || deliver(&agent, &url, &body, signature.as_deref(), id)
        })
        .await
        .map_err(|e| DeployError::Transient(format!("delivering: {e}")))??;
        job.log.line(format!(
            "{url} answered {delivery}; waiting up to {} s for the callback",
            target.timeout.as_secs()
        ));
        let deadline = Instant::now() + target.timeout;
        loop {
            let arrived = self.callbacks.arrived.notified();
            if let Some((succeeded, message)) = self.callbacks.report(id).await? {
                job.log.line(format!(
                    "callback: {}{}",
                    if succeeded { "succeeded" } else { "failed" },
                    suffix(message.as_deref().unwrap_or_default())
                ));
                return WebhookDeployer::outcome(succeeded, message);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(DeployError::Failed(format!(
                    "{url} accepted the deployment but no callback came within {} s",
                    target.timeout.as_secs()
                )));
            }
            let _ = tokio::time::timeout((deadline - now).min(CALLBACK_POLL), arrived).await;
        }
    }
}

impl Deployer for WebhookDeployer {
    fn kind(&self) -> &'static str {
        "webhook"
    }

    fn deploy<'a>(&'a self, job: &'a DeployContext<'a>) -> DeployFuture<'a> {
        Box::pin(self.run(job))
    }
}

/// POSTs `body` (signed when there is a secret); the status on a 2xx answer.
fn deliver(
    agent: &ureq::Agent,
    url: &str,
    body: &[u8],
    secret: Option<&str>,
    id: i64,
) -> Result<u16, DeployError> {
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
        .to_string();
    let mut request = agent
        .post(url)
        .header("Content-Type", "application/json")
        .header("User-Agent", "gantry-webhook")
        .header("X-Gantry-Deployment", id.to_string())
        .header("X-Gantry-Timestamp", &timestamp);
    if let Some(secret) = secret {
        request = request.header("X-Gantry-Signature", signature(secret, &timestamp, body));
    }
    match request.send(body) {
        Ok(response) => match response.status().as_u16() {
            status @ 200..=299 => Ok(status),
            status @ (429 | 500..=599) => {
                Err(DeployError::Transient(format!("{url} answered {status}")))
            }
            status @ 300..=399 => Err(DeployError::Failed(format!(
                "{url} answered {status}: redirects are not followed; declare the final URL"
            ))),
            status => Err(DeployError::Failed(format!(
                "{url} refused the deployment with {status}"
            ))),
        },
        Err(error @ ureq::Error::ConnectionFailed)
        | Err(error @ ureq::Error::Timeout(_))
        | Err(error @ ureq::Error::HostNotFound)
        | Err(error @ ureq::Error::Io(_)) => Err(DeployError::Transient(format!("{url}: {error}"))),
        Err(error) => Err(DeployError::Failed(format!("{url}: {error}"))),
    }
}

/// `sha256=HEX`: HMAC-SHA256 under `secret` of `TIMESTAMP.BODY`.
pub fn signature(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let mut context = hmac::Context::with_key(&key);
    context.update(timestamp.as_bytes());
    context.update(b".");
    context.update(body);
    format!("sha256={}", hex::encode(context.sign().as_ref()))
}

fn suffix(message: &str) -> String {
    if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    }
}

#[cfg(test)]
mod tests {
    use super::signature;

    #[test]
    fn signatures_cover_the_timestamp_and_the_body() {
        let one = signature("s3cret", "1700000000", b"{\"a\":1}");
        assert!(one.starts_with("sha256=") && one.len() == 7 + 64, "{one}");
        assert_eq!(one, signature("s3cret", "1700000000", b"{\"a\":1}"));
        assert_ne!(one, signature("s3cret", "1700000001", b"{\"a\":1}"));
        assert_ne!(one, signature("s3cret", "1700000000", b"{\"a\":2}"));
        assert_ne!(one, signature("other", "1700000000", b"{\"a\":1}"));
    }
}
