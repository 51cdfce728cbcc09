//! The OCI Distribution Specification v1.1 over Gantry's [`store`] and [`blobs`].
//!
//! A request to `/v2/…` is parsed once into an [`Endpoint`], the caller is resolved to
//! a [`Principal`] and authorized for the endpoint's action, and then exactly one
//! handler runs, chosen by an exhaustive `match`. OCI wire JSON exists only in this
//! crate; errors leave only as the spec's error envelope.

mod bearer;
mod collect;
mod endpoint;
mod error;
mod handlers;
mod headers;
mod manifest;
mod policy;
mod retention;
mod site_archive;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use auth::{AccessPolicy, Denied};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use blobs::BlobStore;
use domain::{Action, Principal};
use http::{HeaderValue, StatusCode, header};
use store::Store;

pub use bearer::token;
pub use collect::{CollectOptions, CollectReport, GC_ACTOR, Removed};
pub use endpoint::{Endpoint, RouteClass};
pub use error::{ErrorCode, RegistryError};
pub use manifest::{DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST};
pub use policy::{MutableTagRule, NamespaceCreationRule, RepositoryCreation};
pub use retention::{
    ApplicationRetention, ExpiredManifest, RepositoryRetention, RetentionPlan, SavedManifest,
    SkippedExpiry,
};
pub use site_archive::SiteArchiveChecks;

/// Registry settings, from the server's configuration.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Largest manifest accepted, in bytes (the spec's common limit is 4 MiB).
    pub max_manifest_bytes: usize,
    /// Largest blob accepted, in bytes.
    pub max_blob_bytes: u64,
    /// How long an untouched upload session lives.
    pub upload_ttl: Duration,
    /// Where tags may be moved to other bytes; everywhere else they are immutable.
    pub mutable_tags: Vec<MutableTagRule>,
    /// Who may create a repository by pushing to a new name, unless a namespace rule
    /// says otherwise.
    pub repository_creation: RepositoryCreation,
    /// Creation policies per namespace; the first match wins.
    pub namespace_creation: Vec<NamespaceCreationRule>,
    pub access: AccessPolicy,
    /// How many failed credential checks a client address or an account may make
    /// (registry requests, `/token`, and the JSON API, which shares this limiter).
    pub credential_failures: auth::FailureLimits,
    /// The realm named in the JSON API's `WWW-Authenticate` challenges.
    pub realm: String,
    /// The base URL clients reach Gantry at (`https://registry.example.com`), for the
    /// token endpoint named in challenges; `None`: taken from each request's `Host`.
    pub external_url: Option<String>,
    /// The `service` of the token protocol; `None`: the host clients reach Gantry at.
    pub service: Option<String>,
    /// How static-site archives are checked when a site artifact is pushed.
    pub site_archives: SiteArchiveChecks,
    /// Whether a quarantined digest is refused to pulls too (else only its promotions,
    /// rollbacks onto it and admission are refused).
    pub quarantine_denies_pulls: bool,
}

impl RegistryConfig {
    /// The host of `external_url` (what image references name), if it is configured.
    pub fn public_host(&self) -> Option<String> {
        self.external_url.as_deref().map(|url| {
            url.trim_start_matches("https://")
                .trim_start_matches("http://")
                .trim_end_matches('/')
                .to_owned()
        })
    }
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            max_manifest_bytes: 4 << 20,
            max_blob_bytes: 1 << 40,
            upload_ttl: Duration::from_secs(24 * 3600),
            mutable_tags: Vec::new(),
            repository_creation: RepositoryCreation::Admins,
            namespace_creation: Vec::new(),
            access: AccessPolicy::default(),
            credential_failures: auth::FailureLimits::default(),
            realm: "gantry".to_owned(),
            external_url: None,
            service: None,
            site_archives: SiteArchiveChecks::default(),
            quarantine_denies_pulls: true,
        }
    }
}

/// The registry: its configuration and the stores it serves from.
pub struct Registry {
    pub(crate) store: Store,
    pub(crate) blobs: BlobStore,
    pub(crate) config: RegistryConfig,
    uploads_in_flight: AtomicI64,
    /// Turns for checking site archives, so that concurrent pushes of large sites do
    /// not all decompress (and fill the temporary directory) at once.
    pub(crate) site_checks: tokio::sync::Semaphore,
    /// The key registry bearer tokens are signed with, read from the store on first use.
    token_key: tokio::sync::OnceCell<auth::registry_token::RegistryTokenKey>,
    /// This replica's limits on failed credential checks.
    failures: auth::FailureLimiter,
}

impl Registry {
    pub fn new(store: Store, blobs: BlobStore, config: RegistryConfig) -> Arc<Registry> {
        let site_checks = tokio::sync::Semaphore::new(config.site_archives.concurrency.max(1));
        let failures = auth::FailureLimiter::new(config.credential_failures);
        Arc::new(Registry {
            failures,
            store,
            blobs,
            config,
            uploads_in_flight: AtomicI64::new(0),
            site_checks,
            token_key: tokio::sync::OnceCell::new(),
        })
    }

    /// The settings it was created with; the JSON API shares its realm and access policy.
    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    /// The limits on failed credential checks, shared with the JSON API.
    pub fn failures(&self) -> &auth::FailureLimiter {
        &self.failures
    }

    /// Upload requests whose bodies are being received right now.
    pub fn uploads_in_flight(&self) -> i64 {
        self.uploads_in_flight.load(Ordering::Relaxed)
    }

    /// Deletes upload sessions idle for longer than the configured lifetime, and their
    /// parts. Returns how many were purged.
    pub async fn purge_expired_uploads(&self, now_millis: i64) -> Result<usize, RegistryError> {
        let ttl = i64::try_from(self.config.upload_ttl.as_millis()).unwrap_or(i64::MAX);
        let cutoff = now_millis.saturating_sub(ttl);
        let mut purged = 0;
        loop {
            let ids = self.store.uploads().idle_since(cutoff, 100).await?;
            if ids.is_empty() {
                break;
            }
            for id in ids {
                // The row goes first and only if still idle, so a chunk acknowledged in
                // the meantime is never discarded under a live session.
                if let Some(multipart) = self.store.uploads().delete_if_idle(&id, cutoff).await? {
                    self.blobs.discard_all(&id, multipart.as_deref()).await?;
                    purged += 1;
                }
            }
        }
        // Parts with no session: a monolithic upload cut off before it finished.
        for id in self.blobs.stale_uploads(cutoff).await? {
            if !self.store.uploads().exists(&id).await? {
                self.blobs.discard_all(&id, None).await?;
                purged += 1;
            }
        }
        Ok(purged)
    }
}

/// Counts a request as an upload in flight for as long as it lives.
pub(crate) struct InFlight<'a>(&'a AtomicI64);

impl<'a> InFlight<'a> {
    pub(crate) fn start(registry: &'a Registry) -> InFlight<'a> {
        registry.uploads_in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(&registry.uploads_in_flight)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The axum handler for every `/v2` path.
pub async fn serve(State(registry): State<Arc<Registry>>, request: Request) -> Response {
    let (class, result) = dispatch(&registry, request).await;
    let mut response = match result {
        Ok(response) => response,
        Err(error) => error.into_response(),
    };
    let headers = response.headers_mut();
    headers.insert(
        "docker-distribution-api-version",
        HeaderValue::from_static("registry/2.0"),
    );
    response.extensions_mut().insert(class);
    response
}

async fn dispatch(
    registry: &Registry,
    request: Request,
) -> (RouteClass, Result<Response, RegistryError>) {
    let endpoint = match Endpoint::parse(request.method(), request.uri().path()) {
        Ok(endpoint) => endpoint,
        Err(error) => return (RouteClass::Unknown, Err(error)),
    };
    let class = endpoint.class();
    let action = endpoint.action();
    let repository = endpoint.repository();
    let client = client_address(request.extensions());
    let caller =
        match bearer::authenticate(registry, request.headers(), client, action, repository).await {
            Ok(caller) => caller,
            Err(error) => return (class, Err(error)),
        };
    // A registry bearer token only ever narrows what the caller may do now: the
    // request must be within its scopes, and within the caller's current permissions.
    if let Some(token) = &caller.token {
        let needed = match (action, repository) {
            (Action::Catalog, _) => Some(("registry", "catalog", "*")),
            (_, Some(name)) => Some(("repository", name.as_str(), action.as_str())),
            // The base endpoint needs a valid token, nothing more.
            (_, None) => None,
        };
        if let Some((kind, name, wanted)) = needed
            && !token.allows(kind, name, wanted)
        {
            return (
                class,
                Err(bearer::challenge(
                    registry,
                    request.headers(),
                    action,
                    repository,
                    &format!("the token does not grant {kind}:{name}:{wanted}"),
                    true,
                )),
            );
        }
    }
    // The version check is how clients learn how to authenticate: a caller with no
    // credentials at all is always challenged there, even where anonymous pulls are
    // allowed (it then fetches an anonymous token, which pulls). Answering 200 would
    // tell clients no credentials are ever needed, and their pushes would fail.
    if endpoint == Endpoint::Base
        && matches!(caller.principal, Principal::Anonymous)
        && caller.token.is_none()
    {
        return (
            class,
            Err(bearer::challenge(
                registry,
                request.headers(),
                action,
                repository,
                "authentication required: send credentials, or a token from the token endpoint \
                 (an anonymous one where anonymous pulls are allowed)",
                false,
            )),
        );
    }
    let principal = caller.principal;
    match auth::authorize_repository(
        &registry.store,
        &principal,
        action,
        repository,
        &registry.config.access,
    )
    .await
    {
        Ok(Ok(())) => {}
        Ok(Err(denied)) => {
            let error = match &denied {
                Denied::Unauthenticated { .. } => bearer::challenge(
                    registry,
                    request.headers(),
                    action,
                    repository,
                    &denied.to_string(),
                    false,
                ),
                Denied::Forbidden { permission, .. } => {
                    let hint = match (action, repository) {
                        (Action::Push, Some(name)) => {
                            match auth::push_refusal_hint(&registry.store, &principal, name).await {
                                Ok(hint) => hint,
                                Err(error) => return (class, Err(error.into())),
                            }
                        }
                        _ => None,
                    };
                    let message = match hint {
                        Some(hint) => format!("{denied}: {hint}"),
                        None => denied.to_string(),
                    };
                    RegistryError::new(ErrorCode::Denied, StatusCode::FORBIDDEN, message)
                        .with_detail(serde_json::json!({ "permission": permission }))
                }
                Denied::Reserved { .. } => {
                    RegistryError::new(ErrorCode::Denied, StatusCode::FORBIDDEN, denied.to_string())
                }
            };
            return (class, Err(error));
        }
        Err(error) => return (class, Err(error.into())),
    }
    (
        class,
        handlers::handle(registry, &principal, endpoint, request).await,
    )
}

/// The peer address of the connection a request came on, if the server recorded it.
pub(crate) fn client_address(extensions: &http::Extensions) -> Option<std::net::IpAddr> {
    extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0.ip())
}

/// An empty response with a status, for the many bodiless answers of the spec.
pub(crate) fn empty(status: StatusCode) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    response
}
