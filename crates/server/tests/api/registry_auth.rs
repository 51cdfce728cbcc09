//! Who may use the registry: admin tokens over Basic and Bearer, non-admin users who
//! pull and push only where a role for the declaring application allows it, anonymous
//! pulls when configured, and every way credentials fail.

use axum::body::Body;
use http::{Method, StatusCode};
use testkit::TestApp;

use crate::support::{
    Blob, anonymous_pull_config, assert_error, assert_status, error_message, get, push_image,
    token_for,
};

fn bearer(secret: &str) -> String {
    format!("Bearer {secret}")
}

registry_tests! {
    async fn the_admin_token_works_as_basic_and_as_bearer_credentials(app) {
        let blob = Blob::new("pushed with a bearer token");
        let pushed = app
            .send(
                Method::POST,
                &format!("/v2/acme/app/blobs/uploads/?digest={}", blob.digest),
                &[("authorization", &bearer(&app.admin_token))],
                blob.bytes.clone(),
            )
            .await;
        assert_status(&pushed, StatusCode::CREATED);
        let pulled = app
            .send(
                Method::GET,
                &format!("/v2/acme/app/blobs/{}", blob.digest),
                &[("authorization", &app.admin_basic())],
                Body::empty(),
            )
            .await;
        assert_status(&pulled, StatusCode::OK);
        assert_eq!(pulled.body.as_ref(), blob.bytes.as_slice());
    }

    async fn an_unknown_token_is_refused_with_a_challenge(app) {
        for authorization in [
            TestApp::basic("admin", "gnt_wrong"),
            bearer("gnt_wrong"),
            TestApp::basic("admin", &format!("{}x", app.admin_token)),
        ] {
            let response = app
                .send(
                    Method::GET,
                    "/v2/",
                    &[("authorization", &authorization)],
                    Body::empty(),
                )
                .await;
            assert_error(&response, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
            assert_eq!(
                response.header("www-authenticate"),
                Some("Bearer realm=\"http://localhost/token\",service=\"localhost\"")
            );
        }
    }

    async fn a_valid_token_presented_under_another_user_name_is_refused(app) {
        let response = app
            .send(
                Method::GET,
                "/v2/",
                &[(
                    "authorization",
                    &TestApp::basic("mallory", &app.admin_token),
                )],
                Body::empty(),
            )
            .await;
        assert_error(&response, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    }

    async fn a_malformed_authorization_header_is_refused(app) {
        for authorization in [
            "Basic",
            "Basic !!!not-base64",
            &TestApp::basic("admin", ""),
            "Bearer",
            "Bearer two words",
            "Digest username=\"admin\"",
            &app.admin_token,
        ] {
            let response = app
                .send(
                    Method::GET,
                    "/v2/",
                    &[("authorization", authorization)],
                    Body::empty(),
                )
                .await;
            assert_eq!(
                response.status,
                StatusCode::UNAUTHORIZED,
                "{authorization:?}"
            );
            assert_eq!(response.error_code(), "UNAUTHORIZED", "{authorization:?}");
        }
    }

    async fn an_anonymous_pull_is_refused_unless_anonymous_pull_is_on(app) {
        let image = push_image(&app, "acme/app", "v1", "private").await;
        for uri in [
            "/v2/acme/app/manifests/v1".to_owned(),
            format!("/v2/acme/app/blobs/{}", image.layer.digest),
            "/v2/acme/app/tags/list".to_owned(),
        ] {
            let response = app.send(Method::GET, &uri, &[], Body::empty()).await;
            assert_error(&response, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
            assert!(
                error_message(&response).contains("repository:acme/app:pull"),
                "{}",
                response.text()
            );
        }
    }

    async fn an_anonymous_pull_is_served_when_anonymous_pull_is_on(app = anonymous_pull_config()) {
        let image = push_image(&app, "acme/app", "v1", "public").await;
        let manifest = app
            .send(Method::GET, "/v2/acme/app/manifests/v1", &[], Body::empty())
            .await;
        assert_status(&manifest, StatusCode::OK);
        assert_eq!(manifest.body.as_ref(), image.manifest.bytes.as_slice());
        let layer = app
            .send(
                Method::GET,
                &format!("/v2/acme/app/blobs/{}", image.layer.digest),
                &[],
                Body::empty(),
            )
            .await;
        assert_status(&layer, StatusCode::OK);
        assert_eq!(layer.body.as_ref(), image.layer.bytes.as_slice());
    }

    async fn with_anonymous_pulls_the_version_check_still_challenges_so_clients_learn_how_to_push(app = anonymous_pull_config()) {
        let image = push_image(&app, "acme/app", "v1", "public").await;
        // Without credentials the version check challenges, so a client that pushes
        // knows to authenticate.
        let ping = app.send(Method::GET, "/v2/", &[], Body::empty()).await;
        assert_error(&ping, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
        assert!(ping.header("www-authenticate").is_some_and(|c| c.starts_with("Bearer realm=")));
        // An anonymous token passes the version check and pulls, and pushes nothing.
        let token = app
            .send(Method::GET, "/token?service=localhost&scope=repository:acme/app:pull,push", &[], Body::empty())
            .await;
        assert_status(&token, StatusCode::OK);
        let bearer = format!("Bearer {}", token.json()["token"].as_str().expect("a token"));
        let ping = app.send(Method::GET, "/v2/", &[("authorization", bearer.as_str())], Body::empty()).await;
        assert_status(&ping, StatusCode::OK);
        let manifest = app
            .send(Method::GET, "/v2/acme/app/manifests/v1", &[("authorization", bearer.as_str())], Body::empty())
            .await;
        assert_status(&manifest, StatusCode::OK);
        assert_eq!(manifest.body.as_ref(), image.manifest.bytes.as_slice());
        let blob = Blob::new("anonymous bytes");
        let upload = app
            .send(
                Method::POST,
                &format!("/v2/acme/app/blobs/uploads/?digest={}", blob.digest),
                &[("authorization", bearer.as_str())],
                blob.bytes.clone(),
            )
            .await;
        assert_error(&upload, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
        // Credentials pass the version check as always.
        let admin = app.admin_basic();
        let ping = app.send(Method::GET, "/v2/", &[("authorization", admin.as_str())], Body::empty()).await;
        assert_status(&ping, StatusCode::OK);
    }

    async fn an_anonymous_push_is_refused_even_when_anonymous_pull_is_on(app = anonymous_pull_config()) {
        let blob = Blob::new("anonymous bytes");
        let upload = app
            .send(
                Method::POST,
                &format!("/v2/acme/app/blobs/uploads/?digest={}", blob.digest),
                &[],
                blob.bytes.clone(),
            )
            .await;
        assert_error(&upload, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
        assert_eq!(
            upload.header("www-authenticate"),
            Some("Bearer realm=\"http://localhost/token\",service=\"localhost\",scope=\"repository:acme/app:pull,push\"")
        );
        let manifest = app
            .send(
                Method::PUT,
                "/v2/acme/app/manifests/v1",
                &[("content-type", registry::OCI_MANIFEST)],
                "{}",
            )
            .await;
        assert_error(&manifest, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
        let stored = get(&app, &format!("/v2/acme/app/blobs/{}", blob.digest)).await;
        assert_error(&stored, StatusCode::NOT_FOUND, "NAME_UNKNOWN");
    }

    async fn an_anonymous_delete_is_refused_even_when_anonymous_pull_is_on(app = anonymous_pull_config()) {
        let image = push_image(&app, "acme/app", "v1", "kept").await;
        let response = app
            .send(
                Method::DELETE,
                &format!("/v2/acme/app/manifests/{}", image.manifest.digest),
                &[],
                Body::empty(),
            )
            .await;
        assert_error(&response, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
        assert_status(
            &get(&app, "/v2/acme/app/manifests/v1").await,
            StatusCode::OK,
        );
    }

    async fn a_user_without_admin_rights_may_pull(app) {
        let image = push_image(&app, "acme/app", "v1", "shared").await;
        let secret = token_for(&app, "dev", false, None).await;
        for authorization in [TestApp::basic("dev", &secret), bearer(&secret)] {
            let response = app
                .send(
                    Method::GET,
                    "/v2/acme/app/manifests/v1",
                    &[("authorization", &authorization)],
                    Body::empty(),
                )
                .await;
            assert_status(&response, StatusCode::OK);
            assert_eq!(response.body.as_ref(), image.manifest.bytes.as_slice());
        }
    }

    async fn a_user_without_admin_rights_may_list_the_catalog(app) {
        push_image(&app, "acme/app", "v1", "listed").await;
        let secret = token_for(&app, "dev", false, None).await;
        let response = app
            .send(
                Method::GET,
                "/v2/_catalog",
                &[("authorization", &bearer(&secret))],
                Body::empty(),
            )
            .await;
        assert_status(&response, StatusCode::OK);
        assert_eq!(
            response.json(),
            serde_json::json!({ "repositories": ["acme/app"] })
        );
    }

    async fn a_user_without_admin_rights_is_denied_push_with_the_missing_permission_named(app) {
        let secret = token_for(&app, "dev", false, None).await;
        let authorization = TestApp::basic("dev", &secret);
        let blob = Blob::new("dev bytes");
        let response = app
            .send(
                Method::POST,
                &format!("/v2/acme/app/blobs/uploads/?digest={}", blob.digest),
                &[("authorization", &authorization)],
                blob.bytes.clone(),
            )
            .await;
        assert_error(&response, StatusCode::FORBIDDEN, "DENIED");
        let message = error_message(&response);
        assert!(message.contains("repository:acme/app:push"), "{message}");
        assert_eq!(response.header("www-authenticate"), None);
        let stored = get(&app, &format!("/v2/acme/app/blobs/{}", blob.digest)).await;
        assert_error(&stored, StatusCode::NOT_FOUND, "NAME_UNKNOWN");
    }

    async fn developers_and_ci_identities_push_to_their_applications_repositories_only(app) {
        let resources = "kind: Pipeline\nname: p\nstages: [{ name: dev }]\n---\n\
            kind: Application\nname: web\ntype: container\nrepository: acme/web\npipeline: p\n\
            environments: { dev: { target: { record: {} } } }\n---\n\
            kind: Application\nname: api\ntype: container\nrepository: acme/api\npipeline: p\n\
            environments: { dev: { target: { record: {} } } }\n";
        let applied = app
            .admin(Method::POST, "/api/v1/apply", &[("content-type", "application/yaml")], resources)
            .await;
        assert_status(&applied, StatusCode::OK);
        let mut tokens = std::collections::BTreeMap::new();
        for (name, ci, roles) in [
            ("ci-web", true, vec!["developer@web"]),
            ("dev-all", false, vec!["developer"]),
            ("staff", false, vec!["staff"]),
        ] {
            let created = app
                .admin(Method::POST, "/api/v1/users", &[("content-type", "application/json")],
                    serde_json::json!({ "name": name, "ci": ci, "roles": roles }).to_string())
                .await;
            assert_status(&created, StatusCode::CREATED);
            let token = app
                .admin(Method::POST, &format!("/api/v1/users/{name}/tokens"), &[("content-type", "application/json")], "{}")
                .await
                .json()["token"].as_str().expect("token").to_owned();
            tokens.insert(name, token);
        }
        let push = |user: &'static str, repository: &'static str| {
            let authorization = bearer(&tokens[user]);
            let app = &app;
            async move {
                let blob = Blob::new(format!("{user} pushes to {repository}"));
                app.send(
                    Method::POST,
                    &format!("/v2/{repository}/blobs/uploads/?digest={}", blob.digest),
                    &[("authorization", &authorization)],
                    blob.bytes.clone(),
                )
                .await
            }
        };
        // The CI identity of `web` pushes to web's repository, not to api's.
        assert_status(&push("ci-web", "acme/web").await, StatusCode::CREATED);
        let refused = push("ci-web", "acme/api").await;
        assert_error(&refused, StatusCode::FORBIDDEN, "DENIED");
        assert!(error_message(&refused).contains("repository:acme/api:push"), "{}", error_message(&refused));
        // A global developer pushes to every declared application's repository.
        assert_status(&push("dev-all", "acme/web").await, StatusCode::CREATED);
        assert_status(&push("dev-all", "acme/api").await, StatusCode::CREATED);
        // No role that pushes, or no application declaring the repository: refused.
        assert_error(&push("staff", "acme/web").await, StatusCode::FORBIDDEN, "DENIED");
        assert_error(&push("dev-all", "acme/undeclared").await, StatusCode::FORBIDDEN, "DENIED");
        let catalog = app.admin(Method::GET, "/v2/_catalog", &[], Body::empty()).await.json();
        assert_eq!(catalog, serde_json::json!({ "repositories": ["acme/api", "acme/web"] }));
        // Deleting stays with admins.
        let blob = Blob::new("ci-web pushes to acme/web");
        let response = app
            .send(Method::DELETE, &format!("/v2/acme/web/blobs/{}", blob.digest), &[("authorization", &bearer(&tokens["ci-web"]))], Body::empty())
            .await;
        assert_error(&response, StatusCode::FORBIDDEN, "DENIED");
    }

    async fn a_user_without_admin_rights_is_denied_delete_with_the_missing_permission_named(app) {
        let image = push_image(&app, "acme/app", "v1", "protected").await;
        let secret = token_for(&app, "dev", false, None).await;
        for uri in [
            format!("/v2/acme/app/manifests/{}", image.manifest.digest),
            "/v2/acme/app/manifests/v1".to_owned(),
            format!("/v2/acme/app/blobs/{}", image.layer.digest),
        ] {
            let response = app
                .send(
                    Method::DELETE,
                    &uri,
                    &[("authorization", &bearer(&secret))],
                    Body::empty(),
                )
                .await;
            assert_error(&response, StatusCode::FORBIDDEN, "DENIED");
            let message = error_message(&response);
            assert!(
                message.contains("repository:acme/app:delete"),
                "{uri}: {message}"
            );
        }
        assert_status(
            &get(&app, "/v2/acme/app/manifests/v1").await,
            StatusCode::OK,
        );
        assert_status(
            &get(&app, &format!("/v2/acme/app/blobs/{}", image.layer.digest)).await,
            StatusCode::OK,
        );
    }

    async fn an_expired_token_is_refused_and_an_unexpired_one_is_not(app) {
        let now = store::now_millis();
        let expired = token_for(&app, "former", false, Some(now - 1_000)).await;
        let response = app
            .send(
                Method::GET,
                "/v2/",
                &[("authorization", &TestApp::basic("former", &expired))],
                Body::empty(),
            )
            .await;
        assert_error(&response, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
        let current = token_for(&app, "current", false, Some(now + 3_600_000)).await;
        let response = app
            .send(
                Method::GET,
                "/v2/",
                &[("authorization", &TestApp::basic("current", &current))],
                Body::empty(),
            )
            .await;
        assert_status(&response, StatusCode::OK);
    }
}
