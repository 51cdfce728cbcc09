//! What the API tests share: digests of test content, pushing blobs and manifests the
//! way a client does, short request helpers, and `registry_tests!` for tests that need
//! a registry configuration of their own.

use axum::body::Body;
use domain::{Digest, DigestAlgorithm};
use http::{Method, StatusCode};
use serde_json::{Value, json};
use testkit::{TestApp, TestResponse};

/// The digest of zero bytes.
pub(crate) const EMPTY_BLOB_SHA256: &str =
    "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/// The digest of `{}`, the OCI empty descriptor's content.
pub(crate) const EMPTY_JSON_SHA256: &str =
    "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
pub(crate) const EMPTY_JSON_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
pub(crate) const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
pub(crate) const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// Generates a `sqlite` and a `postgres` test for each named `async fn NAME(backend:
/// testkit::Backend)` of the file, for tests that set up their app themselves.
macro_rules! both_backends {
    ($($name:ident),*) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() { super::$name(testkit::Backend::Sqlite).await }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() { super::$name(testkit::Backend::Postgres).await }
            )*
        }
    };
}

/// Like `testkit::app_tests!`, but a test may name the registry configuration it runs
/// with: `async fn name(app) {…}` gets the default, `async fn name(app = config) {…}`
/// gets `config`. Each test is generated in a `sqlite` and a `postgres` module.
macro_rules! registry_tests {
    ($(async fn $name:ident($app:ident $(= $config:expr)?) $body:block)*) => {
        mod sqlite {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let $app = testkit::TestApp::spawn_with(
                        testkit::Backend::Sqlite,
                        registry_tests!(@config $($config)?),
                    )
                    .await;
                    $body
                }
            )*
        }
        mod postgres {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let $app = testkit::TestApp::spawn_with(
                        testkit::Backend::Postgres,
                        registry_tests!(@config $($config)?),
                    )
                    .await;
                    $body
                }
            )*
        }
    };
    (@config) => { registry::RegistryConfig::default() };
    (@config $config:expr) => { $config };
}

/// Every tag of every repository mutable: for tests that delete tags or the manifests
/// tags name, which immutable tags forbid.
pub(crate) fn mutable_tags_config() -> registry::RegistryConfig {
    registry::RegistryConfig {
        mutable_tags: vec![registry::MutableTagRule {
            repository: "*".into(),
            tags: vec!["*".into()],
        }],
        ..registry::RegistryConfig::default()
    }
}

pub(crate) fn sha256(bytes: &[u8]) -> String {
    Digest::sha256_of(bytes).to_string()
}

pub(crate) fn sha512(bytes: &[u8]) -> String {
    Digest::of(DigestAlgorithm::Sha512, bytes).to_string()
}

/// Asserts the status and OCI error code of an error response, showing the body if not.
#[track_caller]
pub(crate) fn assert_error(response: &TestResponse, status: StatusCode, code: &str) {
    assert_eq!(
        (response.status, response.error_code().as_str()),
        (status, code),
        "body: {}",
        response.text()
    );
}

/// The message of an OCI error response.
pub(crate) fn error_message(response: &TestResponse) -> String {
    response.json()["errors"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Asserts the status of a response, showing the body if it is another.
#[track_caller]
pub(crate) fn assert_status(response: &TestResponse, status: StatusCode) {
    assert_eq!(response.status, status, "body: {}", response.text());
}

/// Content to push as a blob, and its sha256 digest.
pub(crate) struct Blob {
    pub(crate) bytes: Vec<u8>,
    pub(crate) digest: String,
}

impl Blob {
    pub(crate) fn new(bytes: impl Into<Vec<u8>>) -> Blob {
        let bytes = bytes.into();
        let digest = sha256(&bytes);
        Blob { bytes, digest }
    }

    pub(crate) fn descriptor(&self, media_type: &str) -> Value {
        json!({ "mediaType": media_type, "digest": self.digest, "size": self.bytes.len() })
    }
}

/// A manifest exactly as pushed: its bytes, their sha256 digest and its media type.
pub(crate) struct Manifest {
    pub(crate) bytes: Vec<u8>,
    pub(crate) digest: String,
    pub(crate) media_type: String,
}

impl Manifest {
    /// The manifest serialized from `value`, whose `mediaType` it is sent as.
    pub(crate) fn from_json(value: &Value) -> Manifest {
        let media_type = value["mediaType"]
            .as_str()
            .expect("the test manifest has a mediaType")
            .to_owned();
        Manifest::from_bytes(
            &media_type,
            serde_json::to_vec(value).expect("JSON serializes"),
        )
    }

    pub(crate) fn from_bytes(media_type: &str, bytes: impl Into<Vec<u8>>) -> Manifest {
        let bytes = bytes.into();
        Manifest {
            digest: sha256(&bytes),
            bytes,
            media_type: media_type.to_owned(),
        }
    }

    /// A descriptor of this manifest, as an index or a `subject` lists it.
    pub(crate) fn descriptor(&self) -> Value {
        json!({ "mediaType": self.media_type, "digest": self.digest, "size": self.bytes.len() })
    }
}

/// An OCI image manifest of `config` and `layers`.
pub(crate) fn image_manifest(config: &Blob, layers: &[&Blob]) -> Value {
    json!({
        "schemaVersion": 2,
        "mediaType": registry::OCI_MANIFEST,
        "config": config.descriptor(CONFIG_MEDIA_TYPE),
        "layers": layers.iter().map(|layer| layer.descriptor(LAYER_MEDIA_TYPE)).collect::<Vec<_>>(),
    })
}

/// An OCI image index listing `manifests`.
pub(crate) fn image_index(manifests: &[&Manifest]) -> Value {
    json!({
        "schemaVersion": 2,
        "mediaType": registry::OCI_INDEX,
        "manifests": manifests.iter().map(|m| m.descriptor()).collect::<Vec<_>>(),
    })
}

/// An image as pushed by [`push_image`].
pub(crate) struct Image {
    pub(crate) config: Blob,
    pub(crate) layer: Blob,
    pub(crate) manifest: Manifest,
}

/// Uploads a blob in one `POST …/blobs/uploads/?digest=` as the admin.
pub(crate) async fn push_blob(app: &TestApp, repository: &str, blob: &Blob) {
    let response = app
        .admin(
            Method::POST,
            &format!("/v2/{repository}/blobs/uploads/?digest={}", blob.digest),
            &[
                ("content-type", "application/octet-stream"),
                ("content-length", &blob.bytes.len().to_string()),
            ],
            blob.bytes.clone(),
        )
        .await;
    assert_status(&response, StatusCode::CREATED);
}

/// `PUT /v2/<repository>/manifests/<reference>` with the manifest's media type.
pub(crate) async fn put_manifest(
    app: &TestApp,
    repository: &str,
    reference: &str,
    manifest: &Manifest,
) -> TestResponse {
    app.admin(
        Method::PUT,
        &format!("/v2/{repository}/manifests/{reference}"),
        &[("content-type", &manifest.media_type)],
        manifest.bytes.clone(),
    )
    .await
}

/// Like [`put_manifest`], asserting that the registry accepted it.
pub(crate) async fn push_manifest(
    app: &TestApp,
    repository: &str,
    reference: &str,
    manifest: &Manifest,
) {
    let response = put_manifest(app, repository, reference, manifest).await;
    assert_status(&response, StatusCode::CREATED);
}

impl Image {
    /// An image of a config and a layer made from `seed`: different seeds, different bytes.
    pub(crate) fn new(seed: &str) -> Image {
        let config = Blob::new(format!(
            r#"{{"architecture":"amd64","os":"linux","seed":"{seed}"}}"#
        ));
        let layer = Blob::new(format!("layer bytes of {seed}"));
        let manifest = Manifest::from_json(&image_manifest(&config, &[&layer]));
        Image {
            config,
            layer,
            manifest,
        }
    }

    /// Pushes the image's config and layer to `repository`.
    pub(crate) async fn push_blobs(&self, app: &TestApp, repository: &str) {
        push_blob(app, repository, &self.config).await;
        push_blob(app, repository, &self.layer).await;
    }
}

/// Pushes [`Image::new`]`(seed)`, blobs and manifest, as `reference`.
pub(crate) async fn push_image(
    app: &TestApp,
    repository: &str,
    reference: &str,
    seed: &str,
) -> Image {
    let image = Image::new(seed);
    image.push_blobs(app, repository).await;
    push_manifest(app, repository, reference, &image.manifest).await;
    image
}

/// Starts an upload session as the admin and returns its `Location`.
pub(crate) async fn start_upload(app: &TestApp, repository: &str) -> String {
    let response = app
        .admin(
            Method::POST,
            &format!("/v2/{repository}/blobs/uploads/"),
            &[],
            Body::empty(),
        )
        .await;
    assert_status(&response, StatusCode::ACCEPTED);
    response
        .header("location")
        .expect("a new session has a Location")
        .to_owned()
}

/// `GET` as the admin.
pub(crate) async fn get(app: &TestApp, uri: &str) -> TestResponse {
    app.admin(Method::GET, uri, &[], Body::empty()).await
}

/// `HEAD` as the admin.
pub(crate) async fn head(app: &TestApp, uri: &str) -> TestResponse {
    app.admin(Method::HEAD, uri, &[], Body::empty()).await
}

/// `DELETE` as the admin.
pub(crate) async fn delete(app: &TestApp, uri: &str) -> TestResponse {
    app.admin(Method::DELETE, uri, &[], Body::empty()).await
}

/// A body delivered in several frames with no length known up front, like a chunked
/// transfer from a client.
pub(crate) fn streamed(chunks: &[&[u8]]) -> Body {
    let frames: Vec<Result<bytes::Bytes, std::io::Error>> = chunks
        .iter()
        .map(|chunk| Ok(bytes::Bytes::copy_from_slice(chunk)))
        .collect();
    Body::from_stream(futures_util::stream::iter(frames))
}

/// The default registry configuration, with anonymous pulls allowed.
pub(crate) fn anonymous_pull_config() -> registry::RegistryConfig {
    registry::RegistryConfig {
        access: auth::AccessPolicy {
            anonymous_pull: true,
        },
        ..registry::RegistryConfig::default()
    }
}

/// The target of a `Link: <…>; rel="next"` header, if the response has one.
pub(crate) fn next_link(response: &TestResponse) -> Option<String> {
    let link = response.header("link")?;
    assert!(link.ends_with("; rel=\"next\""), "unexpected Link: {link}");
    let target = link.strip_prefix('<')?.split_once('>')?.0;
    Some(target.to_owned())
}

/// Creates `user` with a token (expiring at `expires_at`, in epoch milliseconds) and
/// returns the token's secret.
pub(crate) async fn token_for(
    app: &TestApp,
    user: &str,
    admin: bool,
    expires_at: Option<i64>,
) -> String {
    app.store
        .users()
        .create(user, admin)
        .await
        .expect("create user");
    let secret = auth::generate_token().expect("random token");
    app.store
        .users()
        .create_token(store::NewToken {
            id: &format!("tok_{user}"),
            user_name: user,
            description: "test token",
            token_hash: &auth::hash_token(&secret),
            expires_at,
            scope: None,
        })
        .await
        .expect("create token");
    secret
}

/// Creates `name` (a person, or a CI identity) with `roles`; a token for them.
pub(crate) async fn user_with_roles(app: &TestApp, name: &str, ci: bool, roles: &[&str]) -> String {
    let response = app
        .admin(
            Method::POST,
            "/api/v1/users",
            &[("content-type", "application/json")],
            json!({ "name": name, "ci": ci, "roles": roles }).to_string(),
        )
        .await;
    assert_status(&response, StatusCode::CREATED);
    let response = app
        .admin(
            Method::POST,
            &format!("/api/v1/users/{name}/tokens"),
            &[("content-type", "application/json")],
            "{}",
        )
        .await;
    assert_status(&response, StatusCode::CREATED);
    response.json()["token"]
        .as_str()
        .expect("a token")
        .to_owned()
}

/// A user without admin rights, and a token for them.
pub(crate) async fn user_token(app: &TestApp, user: &str) -> String {
    token_for(app, user, false, None).await
}

/// A static-site build as `gantry push site` pushes it: `files` packed into a zip,
/// pushed with the empty config and a site manifest tagged `tag`. The manifest and
/// the zip's bytes.
pub(crate) async fn push_site(
    app: &TestApp,
    repository: &str,
    tag: &str,
    files: &[(&str, &[u8])],
) -> (Manifest, Vec<u8>) {
    let directory = tempfile::tempdir().expect("temporary directory");
    for (name, content) in files {
        let path = directory.path().join(name);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("directories");
        std::fs::write(path, content).expect("a file");
    }
    let packed = site_archive::pack(
        directory.path(),
        &site_archive::ArchiveLimits::default(),
        &mut |_| {},
    )
    .expect("the build packs");
    let zip = std::fs::read(packed.path()).expect("the packed archive");
    push_blob(
        app,
        repository,
        &Blob::new(site_archive::EMPTY_CONFIG.to_vec()),
    )
    .await;
    push_blob(app, repository, &Blob::new(zip.clone())).await;
    let manifest = Manifest::from_bytes(
        site_archive::OCI_IMAGE_MANIFEST,
        site_archive::site_manifest(&packed.digest, packed.size, &Default::default()),
    );
    push_manifest(app, repository, tag, &manifest).await;
    (manifest, zip)
}

/// Applies a resources file as the admin, which must succeed.
pub(crate) async fn apply(app: &TestApp, yaml: impl Into<Body>) {
    let response = app
        .admin(
            Method::POST,
            "/api/v1/apply",
            &[("content-type", "application/yaml")],
            yaml,
        )
        .await;
    assert_status(&response, StatusCode::OK);
}

/// Sends `body` as JSON with `token` as Bearer (no body when `body` is null).
pub(crate) async fn call(
    app: &TestApp,
    method: Method,
    uri: &str,
    token: &str,
    body: Value,
) -> TestResponse {
    let auth = format!("Bearer {token}");
    let mut headers = vec![("authorization", auth.as_str())];
    let body = if body.is_null() {
        Body::empty()
    } else {
        headers.push(("content-type", "application/json"));
        Body::from(body.to_string())
    };
    app.send(method, uri, &headers, body).await
}
