//! An in-process Gantry application: the real router over a real store and blob
//! store, driven with `tower::ServiceExt::oneshot` — no sockets, no sleeps.

use axum::Router;
use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use registry::RegistryConfig;
use server::AppState;
use store::{NewToken, Store};
use tower::ServiceExt;

use crate::{Backend, TestDatabase};

/// A running application and the admin token that may do anything.
pub struct TestApp {
    pub router: Router,
    pub state: AppState,
    pub store: Store,
    pub admin_token: String,
    pub backend: Backend,
    _database: TestDatabase,
    _blob_directory: tempfile::TempDir,
    /// Holds the signing key's file, as `gantry serve` keeps one outside the database.
    key_directory: tempfile::TempDir,
    /// Dropping it stops the deploy worker.
    _stop_worker: tokio::sync::watch::Sender<bool>,
}

/// A response with its body read.
#[derive(Debug)]
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl TestResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The OCI error code of an error response.
    pub fn error_code(&self) -> String {
        self.json()["errors"][0]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// What programs started by a test's deployments (command targets) see of this
/// process's environment, as `gantry serve` hands it down.
pub fn programs() -> engine::ChildEnvironment {
    engine::ChildEnvironment::inherited(|name| std::env::var_os(name))
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

impl TestApp {
    /// A fresh application on `backend` with the default registry configuration.
    pub async fn spawn(backend: Backend) -> TestApp {
        TestApp::spawn_with(backend, RegistryConfig::default()).await
    }

    pub async fn spawn_with(backend: Backend, config: RegistryConfig) -> TestApp {
        TestApp::spawn_with_access(backend, config, server::AccessConfig::default()).await
    }

    /// A fresh application with registry and access settings of its own (trusted OIDC
    /// issuers, credential rate limits).
    pub async fn spawn_with_access(
        backend: Backend,
        config: RegistryConfig,
        access: server::AccessConfig,
    ) -> TestApp {
        TestApp::spawn_configured(backend, config, access, |state| state).await
    }

    /// A fresh application whose state `configure` adjusts first (deployers, deploy
    /// job settings).
    pub async fn spawn_configured(
        backend: Backend,
        config: RegistryConfig,
        access: server::AccessConfig,
        configure: impl FnOnce(AppState) -> AppState,
    ) -> TestApp {
        let database = TestDatabase::create(backend).await;
        let store = database.store().await;
        let blob_directory = tempfile::tempdir().expect("temporary directory");
        let blobs = blobs::BlobStore::open(&blob_directory.path().display().to_string(), false)
            .expect("blob store");
        let admin_token = auth::generate_token().expect("random token");
        let created = store
            .users()
            .bootstrap_admin(NewToken {
                id: "tok_admin",
                user_name: "admin",
                description: "test admin",
                token_hash: &auth::hash_token(&admin_token),
                expires_at: None,
                scope: None,
            })
            .await
            .expect("bootstrap admin");
        assert!(created, "a fresh database has no users");
        // A signing key, made and published as `gantry serve` does at its start.
        let key_directory = tempfile::tempdir().expect("temporary directory");
        let key = attest::SigningKey::load_or_create(&key_directory.path().join("signing.pem"))
            .expect("signing key");
        // Programs the test's deployments start see what a server would hand them.
        let state = configure(
            AppState::new(store.clone(), blobs, config)
                .with_access(access)
                .with_deployers(engine::Deployers::new(programs()))
                .with_signing_key(key, true),
        );
        if let Some(ring) = &state.signing {
            ring.publish(&store, "gantry")
                .await
                .expect("publish the signing key");
        }
        TestApp::assemble(
            state,
            store,
            admin_token,
            backend,
            database,
            blob_directory,
            key_directory,
        )
    }

    /// Starts the deploy worker of `state` (stopped when the app is dropped) and
    /// wraps it all.
    fn assemble(
        state: AppState,
        store: Store,
        admin_token: String,
        backend: Backend,
        database: TestDatabase,
        blob_directory: tempfile::TempDir,
        key_directory: tempfile::TempDir,
    ) -> TestApp {
        let (stop_worker, stopped) = tokio::sync::watch::channel(false);
        let engine = state.engine.clone();
        tokio::spawn(async move { engine.work(stopped).await });
        TestApp {
            _stop_worker: stop_worker,
            router: server::router(state.clone()),
            state,
            store,
            admin_token,
            backend,
            _database: database,
            _blob_directory: blob_directory,
            key_directory,
        }
    }

    /// The file holding the app's signing key.
    pub fn signing_key_file(&self) -> std::path::PathBuf {
        self.key_directory.path().join("signing.pem")
    }

    /// The database behind the app.
    pub fn database(&self) -> &TestDatabase {
        &self._database
    }

    /// Every file under the blob store's directory, by path, with the SHA-256 of its
    /// bytes: two snapshots are equal when nothing in the blob store changed.
    pub fn blob_files(&self) -> std::collections::BTreeMap<String, String> {
        fn walk(dir: &std::path::Path, files: &mut std::collections::BTreeMap<String, String>) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, files);
                } else {
                    let bytes = std::fs::read(&path).expect("read a blob file");
                    files.insert(
                        path.display().to_string(),
                        domain::Digest::sha256_of(&bytes).to_string(),
                    );
                }
            }
        }
        let mut files = std::collections::BTreeMap::new();
        walk(self._blob_directory.path(), &mut files);
        files
    }

    /// `Authorization` value for the admin user.
    pub fn admin_basic(&self) -> String {
        basic("admin", &self.admin_token)
    }

    /// Encodes Basic credentials.
    pub fn basic(user: &str, password: &str) -> String {
        basic(user, password)
    }

    /// Sends a request with the given headers and body.
    pub async fn send(
        &self,
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> TestResponse {
        send_to(&self.router, method, uri, headers, body).await
    }

    /// Sends a request as the admin to another replica's `router` (one on this app's
    /// database).
    pub async fn admin_via(
        &self,
        router: &axum::Router,
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> TestResponse {
        let auth = self.admin_basic();
        let mut all: Vec<(&str, &str)> = vec![("authorization", auth.as_str())];
        all.extend_from_slice(headers);
        send_to(router, method, uri, &all, body).await
    }

    /// Sends a request as the admin.
    pub async fn admin(
        &self,
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> TestResponse {
        self.admin_via(&self.router, method, uri, headers, body)
            .await
    }
}

/// Sends a request through `router`.
async fn send_to(
    router: &axum::Router,
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
    body: impl Into<Body>,
) -> TestResponse {
    let mut request = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(body.into()).expect("valid request");
    let response = router
        .clone()
        .oneshot(request)
        .await
        .expect("router is infallible");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("body reads").to_bytes();
    TestResponse {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}
