//! `GET|HEAD /v2/`: the version check every client starts with.

use axum::body::Body;
use http::{Method, StatusCode};

use crate::support::{anonymous_pull_config, assert_error, assert_status, get};

registry_tests! {
    async fn the_base_endpoint_answers_an_authenticated_client_with_an_empty_object(app) {
        for uri in ["/v2/", "/v2"] {
            let response = get(&app, uri).await;
            assert_status(&response, StatusCode::OK);
            assert_eq!(response.json(), serde_json::json!({}), "{uri}");
            assert_eq!(
                response.header("docker-distribution-api-version"),
                Some("registry/2.0")
            );
            assert_eq!(response.header("content-type"), Some("application/json"));
        }
    }

    async fn head_on_the_base_endpoint_answers_without_a_body(app) {
        let response = app.admin(Method::HEAD, "/v2/", &[], Body::empty()).await;
        assert_status(&response, StatusCode::OK);
        assert!(response.body.is_empty());
        assert_eq!(
            response.header("docker-distribution-api-version"),
            Some("registry/2.0")
        );
    }

    async fn an_anonymous_client_is_challenged_for_a_bearer_token(app) {
        for method in [Method::GET, Method::HEAD] {
            let response = app.send(method.clone(), "/v2/", &[], Body::empty()).await;
            assert_eq!(response.status, StatusCode::UNAUTHORIZED, "{method}");
            assert_eq!(
                response.header("www-authenticate"),
                Some("Bearer realm=\"http://localhost/token\",service=\"localhost\"")
            );
            assert_eq!(
                response.header("docker-distribution-api-version"),
                Some("registry/2.0")
            );
            if method == Method::GET {
                assert_eq!(response.error_code(), "UNAUTHORIZED");
            }
        }
    }

    async fn an_anonymous_client_is_challenged_at_the_version_check_even_when_anonymous_pull_is_on(app = anonymous_pull_config()) {
        // The challenge is how clients learn to authenticate before they push; they
        // pull with an anonymous token (see registry_auth).
        let response = app.send(Method::GET, "/v2/", &[], Body::empty()).await;
        assert_error(&response, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
        assert!(response.header("www-authenticate").is_some_and(|c| c.starts_with("Bearer realm=")));
    }

    async fn wrong_credentials_are_refused_at_the_base_endpoint_even_with_anonymous_pull(app = anonymous_pull_config()) {
        let response = app
            .send(
                Method::GET,
                "/v2/",
                &[("authorization", "Bearer gnt_not_a_token")],
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
