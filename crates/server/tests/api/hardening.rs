//! Request hygiene: oversized request heads are refused before any handler runs, JSON
//! bodies are bounded, and no cross-origin access is granted (CORS is off).

use axum::body::Body;
use http::{Method, StatusCode};

use crate::support::assert_status;

registry_tests! {
    async fn too_many_or_too_large_headers_are_refused_with_431(app) {
        let names: Vec<String> = (0..150).map(|i| format!("x-filler-{i}")).collect();
        let many: Vec<(&str, &str)> = names.iter().map(|name| (name.as_str(), "1")).collect();
        let response = app.send(Method::GET, "/healthz", &many, Body::empty()).await;
        assert_eq!(response.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        assert!(response.text().contains("header"), "{}", response.text());
        let big = "x".repeat(40 * 1024);
        let response = app
            .send(Method::GET, "/v2/", &[("x-big", big.as_str())], Body::empty())
            .await;
        assert_eq!(response.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        // The registry answers in the OCI envelope, the API in its own.
        assert_eq!(response.error_code(), "UNSUPPORTED", "{}", response.text());
        let response = app
            .send(Method::GET, "/api/v1/apps", &[("x-big", big.as_str())], Body::empty())
            .await;
        assert_eq!(response.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        assert_eq!(response.json()["code"], "headers_too_large", "{}", response.text());
        // Ordinary requests are untouched.
        let response = app.send(Method::GET, "/healthz", &[("x-small", "1")], Body::empty()).await;
        assert_status(&response, StatusCode::OK);
    }

    async fn json_bodies_are_bounded(app) {
        let huge = format!("{{\"application\": \"{}\"}}", "a".repeat(3 << 20));
        let response = app
            .admin(Method::POST, "/api/v1/promotions", &[("content-type", "application/json")], huge)
            .await;
        assert_eq!(response.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", response.text());
    }

    async fn no_cross_origin_access_is_granted(app) {
        let preflight = app
            .send(
                Method::OPTIONS,
                "/api/v1/apps",
                &[
                    ("origin", "https://evil.example"),
                    ("access-control-request-method", "POST"),
                    ("access-control-request-headers", "authorization"),
                ],
                Body::empty(),
            )
            .await;
        assert!(preflight.header("access-control-allow-origin").is_none());
        assert!(preflight.header("access-control-allow-credentials").is_none());
        assert!(preflight.status.is_client_error(), "{}", preflight.status);
        let admin = app.admin_basic();
        let response = app
            .send(
                Method::GET,
                "/api/v1/apps",
                &[("origin", "https://evil.example"), ("authorization", admin.as_str())],
                Body::empty(),
            )
            .await;
        assert_status(&response, StatusCode::OK);
        assert!(response.header("access-control-allow-origin").is_none());
    }
}
