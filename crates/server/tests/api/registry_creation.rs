//! Who may create a repository by pushing: admins by default; nobody with
//! `repository_creation = never`, where repositories come from declared applications.

use http::{Method, StatusCode};
use registry::{NamespaceCreationRule, RegistryConfig, RepositoryCreation};

use crate::support::{Blob, assert_error, assert_status, get, push_image};

fn never_config() -> RegistryConfig {
    RegistryConfig {
        repository_creation: RepositoryCreation::Never,
        ..RegistryConfig::default()
    }
}

/// Creation off in `platform`, on for admins elsewhere.
fn platform_closed_config() -> RegistryConfig {
    RegistryConfig {
        namespace_creation: vec![NamespaceCreationRule {
            namespace: "platform".to_owned(),
            policy: RepositoryCreation::Never,
        }],
        ..RegistryConfig::default()
    }
}

registry_tests! {
    async fn a_namespace_rule_overrides_the_default_creation_policy(app = platform_closed_config()) {
        let blob = Blob::new(b"layer".to_vec());
        let refused = app
            .admin(Method::POST, &format!("/v2/platform/api/blobs/uploads/?digest={}", blob.digest), &[], blob.bytes.clone())
            .await;
        assert_error(&refused, StatusCode::FORBIDDEN, "DENIED");
        assert!(refused.text().contains("gantry apply"), "{}", refused.text());
        push_image(&app, "acme/api", "v1", "elsewhere").await;
        assert_status(&get(&app, "/v2/acme/api/tags/list").await, StatusCode::OK);
        assert_status(&get(&app, "/v2/platform/api/tags/list").await, StatusCode::NOT_FOUND);
    }

    async fn an_admin_creates_a_repository_by_pushing_by_default(app) {
        push_image(&app, "acme/new", "v1", "fresh").await;
        assert_status(&get(&app, "/v2/acme/new/tags/list").await, StatusCode::OK);
    }

    async fn with_creation_off_a_push_to_an_unknown_repository_is_refused_with_how_to_create_it(app = never_config()) {
        let blob = Blob::new(b"layer".to_vec());
        let monolithic = app
            .admin(Method::POST, &format!("/v2/acme/new/blobs/uploads/?digest={}", blob.digest), &[], blob.bytes.clone())
            .await;
        assert_error(&monolithic, StatusCode::FORBIDDEN, "DENIED");
        assert!(monolithic.text().contains("gantry apply"), "{}", monolithic.text());
        let session = app.admin(Method::POST, "/v2/acme/new/blobs/uploads/", &[], axum::body::Body::empty()).await;
        assert_error(&session, StatusCode::FORBIDDEN, "DENIED");
        let manifest = app
            .admin(
                Method::PUT,
                "/v2/acme/new/manifests/v1",
                &[("content-type", "application/vnd.oci.image.index.v1+json")],
                r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#,
            )
            .await;
        assert_error(&manifest, StatusCode::FORBIDDEN, "DENIED");
        let catalog = get(&app, "/v2/_catalog").await.json();
        assert_eq!(catalog["repositories"], serde_json::json!([]), "nothing was created");
    }

    async fn with_creation_off_pushes_to_a_declared_repository_work(app = never_config()) {
        let name = domain::RepoName::parse("acme/declared").expect("valid");
        app.store.repositories().get_or_create(&name).await.expect("declared repository");
        push_image(&app, "acme/declared", "v1", "declared").await;
        assert_status(&get(&app, "/v2/acme/declared/manifests/v1").await, StatusCode::OK);
    }
}
