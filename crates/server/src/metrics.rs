//! Prometheus metrics: requests by route class, method and status; latency by route
//! class; bytes received and sent; uploads in flight, open upload sessions and audit
//! entries not chained yet; and,
//! counted from the records at each scrape, deployments and promotions.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body::Frame;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry as PromRegistry;
use registry::RouteClass;

use crate::AppState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    method: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeploymentLabels {
    application: String,
    environment: String,
    reason: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EnvironmentLabels {
    application: String,
    environment: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

/// The server's metrics, shared by all requests.
pub struct Metrics {
    prometheus: PromRegistry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram>,
    bytes_in: Counter,
    bytes_out: Counter,
    uploads_in_flight: Gauge,
    upload_sessions: Gauge,
    audit_pending: Gauge,
    deployments: Family<DeploymentLabels, Gauge>,
    promotions: Family<StateLabels, Gauge>,
    drift: Family<EnvironmentLabels, Gauge>,
    quarantined: Family<EnvironmentLabels, Gauge>,
    deploy_jobs: Family<StateLabels, Gauge>,
    gc: GcMetrics,
}

/// Garbage collection's figures, read from the store's record of passes (so every
/// replica reports the cluster's).
#[derive(Default)]
struct GcMetrics {
    manifests_deleted: Counter,
    blobs_deleted: Counter,
    bytes_reclaimed: Counter,
    orphans_deleted: Counter,
    last_duration: Gauge<f64, std::sync::atomic::AtomicU64>,
    last_errors: Gauge,
    last_finished: Gauge,
}

impl GcMetrics {
    fn register(&self, prometheus: &mut PromRegistry) {
        prometheus.register(
            "gc_deleted_manifests",
            "Manifests garbage collection deleted (referrers whose subject was gone)",
            self.manifests_deleted.clone(),
        );
        prometheus.register(
            "gc_deleted_blobs",
            "Blobs garbage collection deleted after no manifest referenced them for the grace window",
            self.blobs_deleted.clone(),
        );
        prometheus.register(
            "gc_reclaimed_bytes",
            "Bytes garbage collection deleted (blobs and objects without a row)",
            self.bytes_reclaimed.clone(),
        );
        prometheus.register(
            "gc_deleted_orphan_objects",
            "Objects in the blob store without a database row that garbage collection deleted",
            self.orphans_deleted.clone(),
        );
        prometheus.register(
            "gc_last_pass_duration_seconds",
            "How long the most recent garbage collection pass took",
            self.last_duration.clone(),
        );
        prometheus.register(
            "gc_last_pass_errors",
            "Steps of the most recent garbage collection pass that failed (the next pass retries them)",
            self.last_errors.clone(),
        );
        prometheus.register(
            "gc_last_pass_finished_timestamp_seconds",
            "When the most recent garbage collection pass finished (Unix time)",
            self.last_finished.clone(),
        );
    }

    /// Brings the figures up to the store's record.
    async fn refresh(&self, store: &store::Store) -> Result<(), store::StoreError> {
        let totals = store.collection().totals().await?;
        for (counter, total) in [
            (&self.manifests_deleted, totals.manifests_deleted),
            (&self.blobs_deleted, totals.blobs_deleted),
            (&self.bytes_reclaimed, totals.bytes_reclaimed),
            (&self.orphans_deleted, totals.orphans_deleted),
        ] {
            let total = u64::try_from(total).unwrap_or(0);
            let current = counter.get();
            if total > current {
                counter.inc_by(total - current);
            }
        }
        if let Some(last) = store.collection().passes(1).await?.into_iter().next() {
            let millis = last.finished_at.saturating_sub(last.started_at);
            self.last_duration.set(millis as f64 / 1000.0);
            self.last_errors.set(last.errors);
            self.last_finished.set(last.finished_at / 1000);
        }
        Ok(())
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut prometheus = PromRegistry::with_prefix("gantry");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0, 60.0,
            ])
        });
        let bytes_in = Counter::default();
        let bytes_out = Counter::default();
        let uploads_in_flight = Gauge::default();
        let upload_sessions = Gauge::default();
        let audit_pending = Gauge::default();
        let deployments = Family::<DeploymentLabels, Gauge>::default();
        let promotions = Family::<StateLabels, Gauge>::default();
        let drift = Family::<EnvironmentLabels, Gauge>::default();
        let quarantined = Family::<EnvironmentLabels, Gauge>::default();
        prometheus.register(
            "environment_quarantined",
            "1 for each environment whose current deployment runs a quarantined digest (environments running nothing quarantined are absent)",
            quarantined.clone(),
        );
        let deploy_jobs = Family::<StateLabels, Gauge>::default();
        prometheus.register(
            "deploy_jobs",
            "Unfinished deploy jobs: running (a replica holds the lease) or waiting (new, retrying, or left by a replica that died)",
            deploy_jobs.clone(),
        );
        prometheus.register(
            "drift",
            "1 where what an environment was last observed running differs from what Gantry deployed there, 0 where it agrees",
            drift.clone(),
        );
        prometheus.register(
            "deployments",
            "Deployments on record by application, environment, reason (promotion, rollback) and state; DORA frequency and failure rate derive from it",
            deployments.clone(),
        );
        prometheus.register(
            "promotions",
            "Promotions on record by state",
            promotions.clone(),
        );
        prometheus.register(
            "http_requests",
            "HTTP requests by route class, method and status",
            requests.clone(),
        );
        prometheus.register(
            "http_request_duration_seconds",
            "Time to the response head, by route class",
            latency.clone(),
        );
        prometheus.register(
            "http_received_bytes",
            "Request body bytes received",
            bytes_in.clone(),
        );
        prometheus.register(
            "http_sent_bytes",
            "Response body bytes sent",
            bytes_out.clone(),
        );
        prometheus.register(
            "uploads_in_flight",
            "Upload requests whose bodies are being received",
            uploads_in_flight.clone(),
        );
        prometheus.register(
            "upload_sessions",
            "Open blob upload sessions",
            upload_sessions.clone(),
        );
        prometheus.register(
            "audit_pending_entries",
            "Audit entries committed but not chained yet (PostgreSQL; chained within a fraction of a second by any replica, and before any read of the log)",
            audit_pending.clone(),
        );
        let gc = GcMetrics::default();
        gc.register(&mut prometheus);
        Metrics {
            gc,
            prometheus,
            requests,
            latency,
            bytes_in,
            bytes_out,
            uploads_in_flight,
            upload_sessions,
            audit_pending,
            deployments,
            promotions,
            drift,
            quarantined,
            deploy_jobs,
        }
    }
}

/// A closed set of method labels: a client inventing methods must not be able to
/// create new time series.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        Method::POST => "POST",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

fn class_of_path(path: &str) -> &'static str {
    match path {
        "/healthz" => "healthz",
        "/readyz" => "readyz",
        "/metrics" => "metrics",
        _ if path.starts_with("/api/") => "api",
        _ => "other",
    }
}

/// Middleware: counts bytes both ways, then records the request once its head is ready.
pub(crate) async fn measure(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path_class = class_of_path(request.uri().path());
    let request = request.map(|body| {
        Body::new(Counting {
            inner: body,
            counter: state.metrics.bytes_in.clone(),
        })
    });
    let response = next.run(request).await;
    let route = response
        .extensions()
        .get::<RouteClass>()
        .map_or(path_class, |class| class.as_str());
    let status = response.status();
    let elapsed = started.elapsed();
    let metrics = &state.metrics;
    metrics
        .requests
        .get_or_create(&RequestLabels {
            route,
            method: method_label(&method),
            status: status.as_u16(),
        })
        .inc();
    metrics
        .latency
        .get_or_create(&RouteLabels { route })
        .observe(elapsed.as_secs_f64());
    if status.is_server_error() {
        tracing::warn!(%method, route, status = status.as_u16(), elapsed_ms = elapsed.as_millis() as u64, "request failed");
    } else {
        tracing::debug!(%method, route, status = status.as_u16(), elapsed_ms = elapsed.as_millis() as u64, "request");
    }
    let counter = metrics.bytes_out.clone();
    response.map(|body| {
        Body::new(Counting {
            inner: body,
            counter,
        })
    })
}

/// `GET /metrics`.
pub(crate) async fn render(State(state): State<AppState>) -> Response {
    let metrics = &state.metrics;
    metrics
        .uploads_in_flight
        .set(state.registry.uploads_in_flight());
    match state.store.uploads().count().await {
        Ok(count) => {
            metrics.upload_sessions.set(count);
        }
        Err(error) => tracing::warn!(%error, "counting upload sessions for /metrics failed"),
    }
    match state.store.audit().pending().await {
        Ok(count) => {
            metrics.audit_pending.set(count);
        }
        Err(error) => tracing::warn!(%error, "counting pending audit entries for /metrics failed"),
    }
    match state.store.promotions().counts().await {
        Ok(counts) => {
            metrics.deployments.clear();
            for count in counts.deployments {
                metrics
                    .deployments
                    .get_or_create(&DeploymentLabels {
                        application: count.application,
                        environment: count.environment,
                        reason: count.reason,
                        state: count.state,
                    })
                    .set(count.count);
            }
            metrics.promotions.clear();
            for (state, count) in counts.promotions {
                metrics
                    .promotions
                    .get_or_create(&StateLabels { state })
                    .set(count);
            }
        }
        Err(error) => tracing::warn!(%error, "counting deployments for /metrics failed"),
    }
    match state.store.environments().drift().await {
        Ok(environments) => {
            metrics.drift.clear();
            for (application, environment, drifting) in environments {
                metrics
                    .drift
                    .get_or_create(&EnvironmentLabels {
                        application,
                        environment,
                    })
                    .set(i64::from(drifting));
            }
        }
        Err(error) => tracing::warn!(%error, "reading drift for /metrics failed"),
    }
    match state.store.quarantines().running().await {
        Ok(runs) => {
            metrics.quarantined.clear();
            for run in runs {
                metrics
                    .quarantined
                    .get_or_create(&EnvironmentLabels {
                        application: run.quarantine.application,
                        environment: run.environment,
                    })
                    .set(1);
            }
        }
        Err(error) => {
            tracing::warn!(%error, "reading quarantined environments for /metrics failed")
        }
    }
    match state.store.jobs().counts(store::now_millis()).await {
        Ok(counts) => {
            for (label, count) in [("running", counts.running), ("waiting", counts.waiting)] {
                metrics
                    .deploy_jobs
                    .get_or_create(&StateLabels {
                        state: label.to_owned(),
                    })
                    .set(count);
            }
        }
        Err(error) => tracing::warn!(%error, "counting deploy jobs for /metrics failed"),
    }
    if let Err(error) = metrics.gc.refresh(&state.store).await {
        tracing::warn!(%error, "reading garbage collection's record for /metrics failed");
    }
    let mut text = String::new();
    if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &metrics.prometheus) {
        tracing::error!(%error, "encoding metrics failed");
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}

/// A body that adds the size of every data frame passing through to a counter.
struct Counting {
    inner: Body,
    counter: Counter,
}

impl http_body::Body for Counting {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.counter.inc_by(data.len() as u64);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
