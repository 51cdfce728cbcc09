//! Who may create a repository by pushing: admins by default; nobody with
//! `repository_creation = never`, where repositories come from declared applications.

use axum::body::Body;
use http::{Method, StatusCode};
use registry::{NamespaceCreationRule, RegistryConfig, RepositoryCreation};
use testkit::{TestApp, TestResponse};

use crate::support::{Blob, assert_error, assert_status, error_message, get, push_image};

/// Two applications, `web` (acme/web) and `api` (acme/api).
const APPLICATIONS: &str = "kind: Pipeline\nname: p\nstages:\n  - name: dev\n---\n\
kind: Application\nname: web\ntype: container\nrepository: acme/web\npipeline: p\nenvironments:\n  dev: { target: { record: {} } }\n---\n\
kind: Application\nname: api\ntype: container\nrepository: acme/api\npipeline: p\nenvironments:\n  dev: { target: { record: {} } }\n";

/// Applies [`APPLICATIONS`] and creates `name` with `roles`; returns the Basic
/// credentials of a token of theirs, limited to `scope` when given (as an OIDC
/// exchange issues them).
async fn person(
    app: &TestApp,
    name: &str,
    ci: bool,
    roles: &[&str],
    scope: Option<&[&str]>,
) -> String {
    let applied = app
        .admin(
            Method::POST,
            "/api/v1/apply",
            &[("content-type", "application/yaml")],
            APPLICATIONS.to_owned(),
        )
        .await;
    assert_status(&applied, StatusCode::OK);
    let created = app
        .admin(
            Method::POST,
            "/api/v1/users",
            &[("content-type", "application/json")],
            serde_json::json!({ "name": name, "ci": ci, "roles": roles }).to_string(),
        )
        .await;
    assert_status(&created, StatusCode::CREATED);
    let secret = auth::generate_token().expect("random token");
    let grants: Option<Vec<domain::RoleGrant>> = scope.map(|scope| {
        scope
            .iter()
            .map(|g| domain::RoleGrant::parse(g).expect("a grant"))
            .collect()
    });
    app.store
        .users()
        .create_token(store::NewToken {
            id: &format!("tok_{name}"),
            user_name: name,
            description: "test token",
            token_hash: &auth::hash_token(&secret),
            expires_at: None,
            scope: grants.as_deref(),
        })
        .await
        .expect("create token");
    TestApp::basic(name, &secret)
}

async fn start_upload_as(app: &TestApp, authorization: &str, repository: &str) -> TestResponse {
    app.send(
        Method::POST,
        &format!("/v2/{repository}/blobs/uploads/"),
        &[("authorization", authorization)],
        Body::empty(),
    )
    .await
}

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
        app.store.repositories().get_or_create(&name, "tester").await.expect("declared repository");
        push_image(&app, "acme/declared", "v1", "declared").await;
        assert_status(&get(&app, "/v2/acme/declared/manifests/v1").await, StatusCode::OK);
    }

    async fn a_builder_pushing_to_a_repository_that_does_not_exist_is_told_how_to_declare_it(app) {
        let developer = person(&app, "dev-web", false, &["developer@web"], None).await;
        let refused = start_upload_as(&app, &developer, "acme/new").await;
        assert_error(&refused, StatusCode::FORBIDDEN, "DENIED");
        let message = error_message(&refused);
        assert!(message.contains("does not exist") && message.contains("repository: acme/new") && message.contains("gantry apply"), "{message}");
        assert_eq!(refused.json()["errors"][0]["detail"]["permission"], "repository:acme/new:push");
        // An existing repository of another application: the missing permission is the truth.
        let refused = start_upload_as(&app, &developer, "acme/api").await;
        assert_error(&refused, StatusCode::FORBIDDEN, "DENIED");
        assert!(!error_message(&refused).contains("does not exist"), "{}", refused.text());
        assert!(error_message(&refused).contains("repository:acme/api:push"), "{}", refused.text());
        // A CI identity's own token is told where it pushes, the same whether the
        // repository exists or not.
        let ci = person(&app, "ci-web", true, &["developer@web"], None).await;
        for repository in ["acme/new", "acme/api"] {
            let refused = start_upload_as(&app, &ci, repository).await;
            assert_error(&refused, StatusCode::FORBIDDEN, "DENIED");
            let message = error_message(&refused);
            assert!(message.contains("pushes only to the repositories of its applications (acme/web)"), "{message}");
            assert!(!message.contains("does not exist"), "{message}");
        }
        // Someone who may push nowhere learns only the missing permission.
        let viewer = person(&app, "viewer", false, &["viewer"], None).await;
        let refused = start_upload_as(&app, &viewer, "acme/new").await;
        assert_error(&refused, StatusCode::FORBIDDEN, "DENIED");
        assert!(!error_message(&refused).contains("gantry apply"), "{}", refused.text());
        assert_eq!(get(&app, "/v2/_catalog").await.json()["repositories"], serde_json::json!(["acme/api", "acme/web"]), "nothing was created");
    }

    async fn a_ci_token_is_told_where_it_may_push_without_learning_which_repositories_exist(app) {
        let ci = person(&app, "oidc-web", true, &[], Some(&["developer@web"])).await;
        let missing = start_upload_as(&app, &ci, "acme/new").await;
        let existing = start_upload_as(&app, &ci, "acme/api").await;
        assert_error(&missing, StatusCode::FORBIDDEN, "DENIED");
        assert_error(&existing, StatusCode::FORBIDDEN, "DENIED");
        let message = error_message(&missing);
        assert!(message.contains("acme/web") && message.contains("gantry apply") && !message.contains("does not exist"), "{message}");
        assert_eq!(
            message.replace("acme/new", "NAME"),
            error_message(&existing).replace("acme/api", "NAME"),
            "the same answer whether the repository exists or not"
        );
        assert_status(&start_upload_as(&app, &ci, "acme/web").await, StatusCode::ACCEPTED);
    }
}
