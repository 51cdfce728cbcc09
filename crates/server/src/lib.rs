//! Gantry's HTTP server: one axum application on one port serving the OCI registry
//! (`/v2`), the JSON API (`/api/v1`, see `api`), the web UI (`/`, see `web`), liveness (`/healthz`), readiness (`/readyz`) and Prometheus metrics
//! (`/metrics`), wrapped in the middleware that measures and logs every request.
//!
//! The server keeps no state between requests outside the store and the blob store,
//! which is what lets several replicas serve the same data.

mod api;
mod checkpoints;
pub mod connections;
mod health;
pub mod limits;
mod metrics;
mod retention;
mod web;

pub use checkpoints::{CheckpointError, CheckpointSettings};

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{any, get};
use blobs::BlobStore;
use engine::{Deployers, Engine};
use registry::{Registry, RegistryConfig};
use store::{FlakyPolicy, Store};

pub use metrics::Metrics;
pub use web::WebSettings;

/// Everything the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub blobs: BlobStore,
    pub registry: Arc<Registry>,
    pub metrics: Arc<Metrics>,
    pub engine: Engine,
    /// The CI token issuers trusted for `POST /api/v1/auth/oidc`.
    pub federation: auth::oidc::Federation,
    /// The web UI's sessions.
    pub web: WebSettings,
    /// When and how garbage collection runs.
    pub gc: GcSettings,
    /// When the audit log's head is signed.
    pub checkpoints: CheckpointSettings,
    /// The key Gantry signs with; `None` until [`AppState::with_signing_key`].
    pub signing: Option<Arc<engine::KeyRing>>,
}

/// When garbage collection runs and how long it waits before deleting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GcSettings {
    /// Between scheduled passes; `None`: only passes run by hand (`gantry gc`).
    pub interval: Option<Duration>,
    /// How long a blob no manifest references stays before it is deleted (and how old
    /// an orphan referrer or an object without a row must be).
    pub grace: Duration,
}

impl Default for GcSettings {
    fn default() -> GcSettings {
        GcSettings {
            interval: Some(Duration::from_secs(3600)),
            grace: Duration::from_secs(3600),
        }
    }
}

/// Access settings beyond the registry's: trusted OIDC issuers and where outbound
/// requests may go. (The limits on failed credential checks are the registry's,
/// `RegistryConfig::credential_failures`, shared by the whole server.)
#[derive(Clone)]
pub struct AccessConfig {
    pub federation: auth::oidc::Federation,
    /// What requests to configured URLs (health checks) may reach; the federation has
    /// its own copy for issuers' keys.
    pub outbound: Arc<outbound::Policy>,
}

impl Default for AccessConfig {
    fn default() -> AccessConfig {
        AccessConfig {
            federation: auth::oidc::Federation::new(
                vec![auth::oidc::IssuerConfig::github_actions()],
                auth::oidc::KeyCaching::default(),
                Arc::new(outbound::Policy::default()),
            ),
            outbound: Arc::new(outbound::Policy::default()),
        }
    }
}

impl AppState {
    pub fn new(store: Store, blobs: BlobStore, registry_config: RegistryConfig) -> AppState {
        let registry_host = registry_config
            .public_host()
            .unwrap_or_else(|| engine::DEFAULT_REGISTRY_HOST.to_owned());
        let web = WebSettings {
            secure_cookies: registry_config
                .external_url
                .as_deref()
                .is_some_and(|url| url.starts_with("https://")),
            ..WebSettings::default()
        };
        let registry = Registry::new(store.clone(), blobs.clone(), registry_config);
        let engine = Engine::new(
            store.clone(),
            blobs.clone(),
            Deployers::default(),
            FlakyPolicy::default(),
        )
        .with_registry_host(registry_host);
        let access = AccessConfig::default();
        AppState {
            store,
            blobs,
            registry,
            metrics: Arc::new(Metrics::new()),
            engine: engine.with_outbound(access.outbound),
            federation: access.federation,
            web,
            gc: GcSettings::default(),
            checkpoints: CheckpointSettings::default(),
            signing: None,
        }
    }

    /// The same state signing with `key` (its public half already recorded as the
    /// current key, see [`engine::KeyRing::publish`]), and, when `attest`, signing an
    /// attestation of every successful deployment with it.
    pub fn with_signing_key(mut self, key: attest::SigningKey, attest: bool) -> AppState {
        let ring = Arc::new(engine::KeyRing::new(key));
        if attest {
            self.engine = self.engine.with_attestations(ring.clone());
        }
        self.signing = Some(ring);
        self
    }

    /// The same state signing audit checkpoints as `checkpoints` says.
    pub fn with_checkpoints(mut self, checkpoints: CheckpointSettings) -> AppState {
        self.checkpoints = checkpoints;
        self
    }

    /// The same state collecting garbage as `gc` says.
    pub fn with_gc(mut self, gc: GcSettings) -> AppState {
        self.gc = gc;
        self
    }

    /// Runs one garbage collection pass now with these settings (see
    /// [`registry::Registry::collect`]); `None`: another pass is running.
    pub async fn collect_garbage(
        &self,
        dry_run: bool,
    ) -> Result<Option<registry::CollectReport>, registry::RegistryError> {
        let options = registry::CollectOptions {
            grace: self.gc.grace,
            dry_run,
            replica: self.engine.job_owner().to_owned(),
            retention: retention::plan(&self.store).await,
        };
        self.registry.collect(&options).await
    }

    /// The same state with the web UI's session settings.
    pub fn with_web(mut self, web: WebSettings) -> AppState {
        self.web = web;
        self
    }

    /// The same state deciding at the times `clock` tells (tests move a manual clock
    /// instead of sleeping).
    pub fn with_clock(mut self, clock: engine::Clock) -> AppState {
        self.engine = self.engine.with_clock(clock);
        self
    }

    /// The same state deploying through `deployers`.
    pub fn with_deployers(mut self, deployers: Deployers) -> AppState {
        self.engine = self.engine.with_deployers(deployers);
        self
    }

    /// The same state deploying through `deployers`, running deploy jobs with `jobs`.
    pub fn with_deploy(mut self, jobs: engine::JobSettings, deployers: Deployers) -> AppState {
        self.engine = self.engine.with_jobs(jobs).with_deployers(deployers);
        self
    }

    /// The same state with the `webhook` target: payloads signed with secrets from
    /// `secrets`, callbacks under `base_url`. After [`AppState::with_access`], whose
    /// outbound guard it uses.
    pub fn with_webhooks(mut self, secrets: engine::Secrets, base_url: &str) -> AppState {
        self.engine = self.engine.with_webhooks(secrets, base_url);
        self
    }

    /// The same state naming `host` (`HOST[:PORT]`) in the image references deploy
    /// targets receive.
    pub fn with_registry_host(mut self, host: String) -> AppState {
        self.engine = self.engine.with_registry_host(host);
        self
    }

    /// The same state with `access` settings.
    pub fn with_access(mut self, access: AccessConfig) -> AppState {
        self.engine = self.engine.with_outbound(access.outbound);
        self.federation = access.federation;
        self
    }
}

/// The complete application router.
pub fn router(state: AppState) -> Router {
    let registry_routes = Router::new()
        .route("/v2", any(registry::serve))
        .route("/v2/", any(registry::serve))
        .route("/v2/{*path}", any(registry::serve))
        .route("/token", any(registry::token))
        .with_state(state.registry.clone());
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::render))
        .with_state(state.clone())
        .merge(registry_routes)
        .merge(api::router(state.clone()))
        .merge(web::router(state.clone()))
        .fallback(health::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state,
            metrics::measure,
        ))
        .layer(axum::middleware::from_fn(limits::bound_headers))
}

/// How often waiting promotions are re-evaluated, so soak times and freeze windows
/// open gates without anyone asking.
const GATE_INTERVAL: Duration = Duration::from_secs(15);

/// Runs the periodic maintenance of one server: re-evaluating waiting promotions
/// every [`GATE_INTERVAL`], and every `interval` a [`maintain`] pass. Each is claimed
/// by one replica at a time under a lease in the store (three periods long, renewed by
/// its holder), so replicas do not repeat each other's work, and another replica takes
/// it over when the holder dies; so is signing an audit checkpoint when one is due,
/// looked at every [`CHECKPOINT_PERIOD`]. And every [`AUDIT_CHAIN_INTERVAL`], on every replica,
/// chaining the audit entries committed since ([`store::Audit::chain_pending`]).
pub async fn run_maintenance(
    state: AppState,
    interval: Duration,
    shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut shutdown = shutdown;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let gate_period = GATE_INTERVAL.min(interval);
    let mut gates = tokio::time::interval(gate_period);
    gates.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut checkpoints = tokio::time::interval(CHECKPOINT_PERIOD);
    checkpoints.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // In a task of its own, so a long maintenance pass never delays the chain.
    let chainer = tokio::spawn(chain_audit(state.store.clone(), shutdown.clone()));
    // And garbage collection in one of its own, so a long pass delays neither.
    let collector = state
        .gc
        .interval
        .map(|every| tokio::spawn(collect_garbage(state.clone(), every, shutdown.clone())));
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                maintain(&state, interval).await;
            }
            _ = checkpoints.tick() => {
                if state.signing.is_some() && state.engine.leads(CHECKPOINT_LEASE, CHECKPOINT_PERIOD).await {
                    match state.checkpoint_audit(false).await {
                        Ok(Some(checkpoint)) => tracing::info!(sequence = checkpoint.sequence, "audit checkpoint signed"),
                        Ok(None) => {}
                        Err(error) => tracing::warn!(%error, "signing an audit checkpoint failed"),
                    }
                }
            }
            _ = gates.tick() => {
                if state.engine.leads(GATES_LEASE, gate_period).await {
                    match state.engine.tick().await {
                        Ok(0) => {}
                        Ok(started) => tracing::info!(started, "waiting promotions opened"),
                        Err(error) => tracing::warn!(%error, "re-evaluating waiting promotions failed"),
                    }
                }
            }
            _ = shutdown.changed() => break,
        }
    }
    let _ = chainer.await;
    if let Some(collector) = collector {
        let _ = collector.await;
    }
}

/// Runs a garbage collection pass every `every`, on the replica holding the
/// [`GC_LEASE`], until shutdown. (A pass itself holds a lease of its own, so one
/// started by hand meanwhile waits for the next turn: two never overlap.)
async fn collect_garbage(
    state: AppState,
    every: Duration,
    shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut shutdown = shutdown;
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                if !state.engine.leads(GC_LEASE, every).await {
                    continue;
                }
                match state.collect_garbage(false).await {
                    Ok(None) => tracing::debug!("another garbage collection pass is running"),
                    Ok(Some(report)) if report.blobs_deleted + report.orphans_deleted + report.referrers_deleted > 0 || !report.errors.is_empty() => {
                        tracing::info!(
                            blobs = report.blobs_deleted,
                            orphans = report.orphans_deleted,
                            referrers = report.referrers_deleted,
                            bytes = report.bytes_reclaimed,
                            errors = report.errors.len(),
                            "garbage collected"
                        );
                    }
                    Ok(_) => {}
                    Err(error) => tracing::warn!(error = error.message(), "garbage collection failed"),
                }
            }
            _ = shutdown.changed() => return,
        }
    }
}

/// Chains the audit entries committed since, every [`AUDIT_CHAIN_INTERVAL`], until
/// shutdown.
async fn chain_audit(store: store::Store, shutdown: tokio::sync::watch::Receiver<bool>) {
    let mut shutdown = shutdown;
    let mut ticker = tokio::time::interval(AUDIT_CHAIN_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                if let Err(error) = store.audit().chain_pending().await {
                    tracing::warn!(%error, "chaining pending audit entries failed");
                }
            }
            _ = shutdown.changed() => return,
        }
    }
}

/// How often each replica chains the audit entries committed since (PostgreSQL; the
/// replicas take turns on the head row, and one that finds it taken moves on).
const AUDIT_CHAIN_INTERVAL: Duration = Duration::from_millis(200);
/// How often a replica looks whether an audit checkpoint is due.
const CHECKPOINT_PERIOD: Duration = Duration::from_secs(5);
/// The lease signing audit checkpoints is claimed under.
const CHECKPOINT_LEASE: &str = "audit-checkpoints";
/// The lease re-evaluating waiting promotions is claimed under.
const GATES_LEASE: &str = "gates";
/// The lease scheduled garbage collection passes are claimed under.
const GC_LEASE: &str = "gc";
/// The lease the purges of [`maintain`] are claimed under.
const MAINTENANCE_LEASE: &str = "maintenance";

/// What one maintenance pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MaintenanceReport {
    pub uploads: u64,
    pub job_token_ids: u64,
    pub web_sessions: u64,
}

/// One maintenance pass, if this replica holds (or takes) the maintenance lease for
/// `period`: purges expired upload sessions with their parts, the ids of expired OIDC
/// job tokens, and web sessions and invitation links past their expiry. `None`:
/// another replica holds the lease. A purge that fails is logged and the others run.
pub async fn maintain(state: &AppState, period: Duration) -> Option<MaintenanceReport> {
    if !state.engine.leads(MAINTENANCE_LEASE, period).await {
        return None;
    }
    let mut report = MaintenanceReport::default();
    let now = store::now_millis();
    match state.registry.purge_expired_uploads(now).await {
        Ok(0) => {}
        Ok(purged) => {
            report.uploads = purged as u64;
            tracing::info!(purged, "expired upload sessions purged");
        }
        Err(error) => tracing::warn!(error = error.message(), "purging expired uploads failed"),
    }
    // Job token ids are kept only while the job tokens could still be presented.
    match state.store.access().purge_exchanges(now).await {
        Ok(0) => {}
        Ok(purged) => {
            report.job_token_ids = purged;
            tracing::info!(purged, "expired OIDC token ids forgotten");
        }
        Err(error) => tracing::warn!(%error, "purging exchanged OIDC token ids failed"),
    }
    match state.store.sessions().purge_expired(now).await {
        Ok(0) => {}
        Ok(purged) => {
            report.web_sessions = purged;
            tracing::info!(purged, "expired web sessions and invitations forgotten");
        }
        Err(error) => tracing::warn!(%error, "purging expired web sessions failed"),
    }
    Some(report)
}
