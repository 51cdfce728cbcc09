//! `/api/v1/audit`: verifying the hash chain and exporting it, for admins only.

use axum::body::Body;
use http::{Method, StatusCode};
use testkit::TestApp;

use crate::support::{assert_status, push_image, user_token};

async fn verify(app: &TestApp) -> serde_json::Value {
    let response = app
        .admin(Method::GET, "/api/v1/audit/verify", &[], Body::empty())
        .await;
    assert_status(&response, StatusCode::OK);
    response.json()
}

testkit::app_tests! {
    async fn the_chain_of_pushes_verifies_and_exports_as_json_lines_in_order(app) {
        for (n, tag) in ["v1", "v2", "v3"].iter().enumerate() {
            push_image(&app, "acme/app", tag, &format!("image-{n}")).await;
        }
        let verdict = verify(&app).await;
        assert_eq!(verdict["intact"], true, "{verdict}");
        // The bootstrap admin's creation and its token, the signing key, then one push
        // entry per image and the repository's creation.
        assert_eq!(verdict["entries"], 7);
        let export = app.admin(Method::GET, "/api/v1/audit/export", &[], Body::empty()).await;
        assert_status(&export, StatusCode::OK);
        assert_eq!(export.header("content-type"), Some("application/x-ndjson"));
        let lines: Vec<serde_json::Value> =
            export.text().lines().map(|line| serde_json::from_str(line).expect("each line is JSON")).collect();
        assert_eq!(lines.len(), 7);
        assert_eq!(lines[0]["sequence"], 1);
        // The first start created the admin and its token and published the signing
        // key, recorded as done by Gantry.
        assert_eq!((&lines[0]["actor"], &lines[0]["action"], &lines[0]["subject"]), (&serde_json::json!("gantry"), &serde_json::json!("user"), &serde_json::json!("user/admin")));
        assert_eq!((&lines[1]["action"], &lines[1]["subject"]), (&serde_json::json!("token"), &serde_json::json!("user/admin")));
        assert_eq!((&lines[2]["actor"], &lines[2]["action"]), (&serde_json::json!("gantry"), &serde_json::json!("signing-key")));
        assert_eq!(lines[3]["actor"], "admin");
        // The first push created the repository, and said so.
        assert_eq!((&lines[3]["action"], &lines[3]["subject"]), (&serde_json::json!("create-repository"), &serde_json::json!("acme/app")));
        assert_eq!(lines[4]["action"], "push");
        assert_eq!(lines[4]["previous_hash"], lines[3]["hash"], "the export shows the chain");
        assert_eq!(verdict["head"], lines[6]["hash"]);
    }

    async fn an_entry_edited_in_the_database_is_named_by_verify(app) {
        for (n, tag) in ["v1", "v2", "v3"].iter().enumerate() {
            push_image(&app, "acme/app", tag, &format!("image-{n}")).await;
        }
        // The edit goes straight to the table, where the entries must be chained first.
        app.store.audit().flush().await.expect("flush");
        app.database().execute_raw("UPDATE audit_log SET actor = 'mallory' WHERE sequence = 2").await;
        let verdict = verify(&app).await;
        assert_eq!(verdict["intact"], false, "{verdict}");
        assert_eq!(verdict["broken_at"], 2);
        assert!(verdict["reason"].as_str().unwrap_or_default().contains("altered"), "{verdict}");
    }

    async fn only_admins_read_the_audit_log(app) {
        let anonymous = app.send(Method::GET, "/api/v1/audit/verify", &[], Body::empty()).await;
        assert_status(&anonymous, StatusCode::UNAUTHORIZED);
        let token = user_token(&app, "dev").await;
        let bearer = format!("Bearer {token}");
        for path in ["/api/v1/audit/verify", "/api/v1/audit/export"] {
            let refused = app.send(Method::GET, path, &[("authorization", bearer.as_str())], Body::empty()).await;
            assert_status(&refused, StatusCode::FORBIDDEN);
            assert!(refused.text().contains("audit:read"), "{}", refused.text());
        }
    }

    async fn the_audit_endpoints_are_in_the_openapi_document(app) {
        let document = app.send(Method::GET, "/api/v1/openapi.json", &[], Body::empty()).await.json();
        assert!(document["paths"]["/api/v1/audit/verify"].is_object(), "{document}");
        assert!(document["paths"]["/api/v1/audit/export"].is_object(), "{document}");
    }
}
