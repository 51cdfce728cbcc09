//! `/healthz`, `/readyz` and `/metrics`: what operators and Prometheus see.

use axum::body::Body;
use http::{Method, StatusCode};
use testkit::{Backend, TestApp, app_tests};

use crate::support::{Blob, assert_status, delete, get, push_blob, start_upload};

async fn metrics(app: &TestApp) -> String {
    let response = app.send(Method::GET, "/metrics", &[], Body::empty()).await;
    assert_status(&response, StatusCode::OK);
    response.text()
}

/// The value of a sample without labels, such as a plain counter.
fn sample(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| {
            line.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no sample {name} in:\n{metrics}"))
}

app_tests! {
    async fn healthz_answers_without_credentials(app) {
        let response = app.send(Method::GET, "/healthz", &[], Body::empty()).await;
        assert_status(&response, StatusCode::OK);
        assert_eq!(response.text().trim(), "ok");
    }

    async fn readyz_reports_a_ready_database_of_its_kind_and_blob_store(app) {
        let response = app.send(Method::GET, "/readyz", &[], Body::empty()).await;
        assert_status(&response, StatusCode::OK);
        let body = response.json();
        let kind = match app.backend {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        };
        assert_eq!(body["database_kind"], serde_json::json!(kind));
        assert_eq!(body["database"]["status"], serde_json::json!("ok"));
        assert_eq!(body["blob_store"]["status"], serde_json::json!("ok"));
    }

    async fn requests_are_counted_by_route_class_method_and_status(app) {
        assert_eq!(
            get(&app, "/v2/acme/app/manifests/v1").await.status,
            StatusCode::NOT_FOUND
        );
        let text = metrics(&app).await;
        let counted = text.lines().find(|line| {
            line.starts_with("gantry_http_requests_total{")
                && line.contains("route=\"registry_manifest\"")
                && line.contains("method=\"GET\"")
                && line.contains("status=\"404\"")
        });
        let counted = counted.unwrap_or_else(|| panic!("no registry_manifest sample in:\n{text}"));
        assert!(counted.ends_with(" 1"), "{counted}");
        assert!(!text.contains("acme/app"), "metrics never carry raw paths");
    }

    async fn received_bytes_grow_by_the_size_of_an_upload(app) {
        let before = sample(&metrics(&app).await, "gantry_http_received_bytes_total");
        let blob = Blob::new(vec![7u8; 4096]);
        push_blob(&app, "acme/app", &blob).await;
        let after = sample(&metrics(&app).await, "gantry_http_received_bytes_total");
        assert!(after - before >= 4096.0, "before {before}, after {after}");
    }

    async fn open_upload_sessions_are_reported(app) {
        assert_eq!(sample(&metrics(&app).await, "gantry_upload_sessions"), 0.0);
        let first = start_upload(&app, "acme/app").await;
        start_upload(&app, "acme/app").await;
        assert_eq!(sample(&metrics(&app).await, "gantry_upload_sessions"), 2.0);
        assert_status(&delete(&app, &first).await, StatusCode::NO_CONTENT);
        assert_eq!(sample(&metrics(&app).await, "gantry_upload_sessions"), 1.0);
    }

    async fn an_unknown_path_outside_v2_is_a_json_404(app) {
        let response = app
            .send(Method::GET, "/nothing/here", &[], Body::empty())
            .await;
        assert_eq!(response.status, StatusCode::NOT_FOUND);
        assert_eq!(response.json()["code"], serde_json::json!("not_found"));
    }
}
