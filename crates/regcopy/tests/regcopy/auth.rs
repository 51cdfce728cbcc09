use regcopy::{CopyError, CopyOptions, Credentials, copy_between};

use crate::support::{
    HTPASSWD_HASH, PeerRegistry, Proxy, Rules, TokenService, basic, client, loopback_policy,
    push_image, repo, skopeo_digest, tag,
};

fn plain_http_options() -> CopyOptions {
    let mut options = CopyOptions::new(loopback_policy());
    options.source.plain_http = true;
    options.destination.plain_http = true;
    options
}

#[test]
fn basic_credentials_open_a_registry_that_requires_them() {
    let source = PeerRegistry::start();
    let destination = PeerRegistry::start_with_htpasswd("deployer", HTPASSWD_HASH);
    let image = push_image(
        &client(&source.address(), None),
        &repo("acme/web"),
        Some(&tag("v1")),
        70,
        &[10_000],
    );
    let source_ref = format!("{}/acme/web:v1", source.address());
    let destination_ref = format!("{}/acme/web:v1", destination.address());

    let anonymous = copy_between(
        &source_ref,
        &destination_ref,
        &plain_http_options(),
        &|_| {},
    )
    .expect_err("anonymous push is refused");
    assert!(
        matches!(anonymous, CopyError::Unauthorized { .. }),
        "{anonymous:?}"
    );
    let mut wrong = plain_http_options();
    wrong.destination.credentials = Some(Credentials::new("deployer", "wrong"));
    let refused = copy_between(&source_ref, &destination_ref, &wrong, &|_| {})
        .expect_err("a wrong password is refused");
    assert!(
        matches!(refused, CopyError::Unauthorized { .. }),
        "{refused:?}"
    );
    assert!(!refused.is_transient());

    let mut options = plain_http_options();
    options.destination.credentials = Some(Credentials::new("deployer", "s3cret-pass"));
    let report = copy_between(&source_ref, &destination_ref, &options, &|_| {}).expect("copy");

    assert_eq!(report.digest, image.manifest.digest);
    assert_eq!(
        skopeo_digest(&destination_ref, Some("deployer:s3cret-pass")),
        image.manifest.digest.to_string()
    );
}

#[test]
fn the_bearer_token_flow_fetches_one_token_per_scope_with_the_credentials() {
    let registry = PeerRegistry::start();
    let destination = PeerRegistry::start();
    let image = push_image(
        &client(&registry.address(), None),
        &repo("acme/web"),
        Some(&tag("v1")),
        71,
        &[1000, 2000, 3000],
    );
    let credentials = Credentials::new("ci", "token-pass");
    let tokens = TokenService::start(credentials.clone(), "tok-123");
    let guarded = Proxy::start(
        registry.port,
        Rules {
            require_authorization: Some((
                "Bearer tok-123".to_owned(),
                format!(
                    r#"Bearer realm="http://127.0.0.1:{}/token",service="test-registry""#,
                    tokens.port
                ),
            )),
            ..Rules::default()
        },
    );
    let source_ref = format!("{}/acme/web:v1", guarded.address());
    let destination_ref = format!("{}/acme/web:v1", destination.address());

    let anonymous = copy_between(
        &source_ref,
        &destination_ref,
        &plain_http_options(),
        &|_| {},
    )
    .expect_err("no token without credentials");
    assert!(
        matches!(anonymous, CopyError::Unauthorized { .. }),
        "{anonymous:?}"
    );

    let mut options = plain_http_options();
    options.source.credentials = Some(credentials.clone());
    let before = tokens.seen().len();
    let report = copy_between(&source_ref, &destination_ref, &options, &|_| {}).expect("copy");

    assert_eq!(report.digest, image.manifest.digest);
    let requests: Vec<_> = tokens.seen().into_iter().skip(before).collect();
    assert_eq!(
        requests.len(),
        1,
        "one token for the one scope: {requests:?}"
    );
    assert!(
        requests[0]
            .target
            .contains("scope=repository%3Aacme%2Fweb%3Apull"),
        "{}",
        requests[0].target
    );
    assert!(requests[0].target.contains("service=test-registry"));
    assert_eq!(
        requests[0].authorization.as_deref(),
        Some(basic(&credentials).as_str())
    );
}

#[test]
fn credentials_stay_on_their_registry_host_when_uploads_and_downloads_go_elsewhere() {
    let source = PeerRegistry::start();
    let destination = PeerRegistry::start();
    let image = push_image(
        &client(&source.address(), None),
        &repo("acme/web"),
        Some(&tag("v1")),
        72,
        &[50_000],
    );
    let source_credentials = Credentials::new("reader", "read-pass");
    let destination_credentials = Credentials::new("writer", "write-pass");
    // Blob downloads are redirected to another host (as registries send them to
    // storage); upload sessions are placed on another host.
    let source_storage = Proxy::start(source.port, Rules::default());
    let source_front = Proxy::start(
        source.port,
        Rules {
            require_authorization: Some((
                basic(&source_credentials),
                r#"Basic realm="source""#.to_owned(),
            )),
            redirect_blobs_to: Some(format!("http://localhost:{}", source_storage.port)),
            ..Rules::default()
        },
    );
    let upload_host = Proxy::start(destination.port, Rules::default());
    let destination_with_elsewhere_uploads = Proxy::start(
        destination.port,
        Rules {
            require_authorization: Some((
                basic(&destination_credentials),
                r#"Basic realm="destination""#.to_owned(),
            )),
            relocate_to: Some(format!("localhost:{}", upload_host.port)),
            ..Rules::default()
        },
    );
    let mut options = plain_http_options();
    options.source.credentials = Some(source_credentials);
    options.destination.credentials = Some(destination_credentials);

    let report = copy_between(
        &format!("{}/acme/web:v1", source_front.address()),
        &format!(
            "{}/acme/web:v1",
            destination_with_elsewhere_uploads.address()
        ),
        &options,
        &|_| {},
    )
    .expect("copy");

    assert_eq!(report.digest, image.manifest.digest);
    assert_eq!(report.blobs_copied, 2);
    let downloads = source_storage.seen();
    assert_eq!(downloads.len(), 2, "both blobs were fetched from storage");
    assert!(
        downloads.iter().all(|seen| seen.authorization.is_none()),
        "credentials leaked to the storage host: {downloads:?}"
    );
    let uploads = upload_host.seen();
    assert!(
        uploads.iter().filter(|seen| seen.method == "PUT").count() == 2,
        "{uploads:?}"
    );
    assert!(
        uploads.iter().all(|seen| seen.authorization.is_none()),
        "credentials leaked to the upload host: {uploads:?}"
    );
    assert!(
        source_front
            .seen()
            .iter()
            .any(|seen| seen.authorization.is_some())
    );
}
