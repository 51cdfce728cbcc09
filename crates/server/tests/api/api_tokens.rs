//! API tokens over `/api/v1`: listed without secrets with their last use, revoked by
//! their owner or an admin (at once, audited), and never by anyone else.

use axum::body::Body;
use http::{Method, StatusCode};
use serde_json::{Value, json};
use testkit::{TestApp, TestResponse};

use crate::support::assert_status;

async fn call(app: &TestApp, method: Method, uri: &str, token: &str) -> TestResponse {
    let auth = format!("Bearer {token}");
    app.send(
        method,
        uri,
        &[("authorization", auth.as_str())],
        Body::empty(),
    )
    .await
}

async fn admin_json(app: &TestApp, uri: &str, body: Value) -> TestResponse {
    app.admin(
        Method::POST,
        uri,
        &[("content-type", "application/json")],
        body.to_string(),
    )
    .await
}

/// Creates `name` and returns two tokens: (id, secret) each.
async fn user_with_tokens(app: &TestApp, name: &str) -> [(String, String); 2] {
    assert_status(
        &admin_json(
            app,
            "/api/v1/users",
            json!({ "name": name, "roles": ["developer"] }),
        )
        .await,
        StatusCode::CREATED,
    );
    let mut tokens = Vec::new();
    for description in ["laptop", "ci"] {
        let response = admin_json(
            app,
            &format!("/api/v1/users/{name}/tokens"),
            json!({ "description": description, "expires_in_days": 30 }),
        )
        .await;
        assert_status(&response, StatusCode::CREATED);
        let body = response.json();
        tokens.push((
            body["id"].as_str().expect("id").to_owned(),
            body["token"].as_str().expect("secret").to_owned(),
        ));
    }
    [tokens[0].clone(), tokens[1].clone()]
}

registry_tests! {
    async fn tokens_are_listed_without_secrets_and_with_their_last_use(app) {
        let [(laptop_id, laptop), (ci_id, ci)] = user_with_tokens(&app, "dana").await;
        let response = call(&app, Method::GET, "/api/v1/tokens", &laptop).await;
        assert_status(&response, StatusCode::OK);
        let text = response.text();
        assert!(!text.contains(&laptop) && !text.contains(&ci), "a secret was listed: {text}");
        let tokens = response.json()["tokens"].as_array().expect("list").clone();
        assert_eq!(tokens.len(), 2);
        let laptop_view = tokens.iter().find(|t| t["id"] == laptop_id.as_str()).expect("laptop");
        let ci_view = tokens.iter().find(|t| t["id"] == ci_id.as_str()).expect("ci");
        assert_eq!(laptop_view["description"], "laptop");
        assert_eq!(laptop_view["active"], true);
        assert!(laptop_view["expires_at"].is_string());
        // The token this request came with was just used; the other never was.
        assert!(laptop_view["last_used_at"].is_string(), "{laptop_view}");
        assert!(ci_view["last_used_at"].is_null(), "{ci_view}");
        // Someone else may not list them; an admin may.
        let [(_, eve), _] = user_with_tokens(&app, "eve").await;
        assert_status(&call(&app, Method::GET, "/api/v1/users/dana/tokens", &eve).await, StatusCode::FORBIDDEN);
        let response = app.admin(Method::GET, "/api/v1/users/dana/tokens", &[], Body::empty()).await;
        assert_eq!(response.json()["tokens"].as_array().map(Vec::len), Some(2));
        let response = app.admin(Method::GET, "/api/v1/users/nobody/tokens", &[], Body::empty()).await;
        assert_status(&response, StatusCode::NOT_FOUND);
    }

    async fn a_revoked_token_stops_working_at_once_and_only_its_owner_or_an_admin_revokes(app) {
        let [(laptop_id, laptop), (ci_id, ci)] = user_with_tokens(&app, "dana").await;
        let [(_, eve), _] = user_with_tokens(&app, "eve").await;
        let uri = format!("/api/v1/tokens/{ci_id}");
        assert_status(&call(&app, Method::DELETE, &uri, &eve).await, StatusCode::FORBIDDEN);
        assert_status(&call(&app, Method::GET, "/api/v1/apps", &ci).await, StatusCode::OK);
        let response = call(&app, Method::DELETE, &uri, &laptop).await;
        assert_status(&response, StatusCode::OK);
        let revoked_at = response.json()["revoked_at"].clone();
        assert!(revoked_at.is_string());
        assert_eq!(response.json()["active"], false);
        let refused = call(&app, Method::GET, "/api/v1/apps", &ci).await;
        assert_status(&refused, StatusCode::UNAUTHORIZED);
        assert!(refused.json()["message"].as_str().unwrap_or_default().contains("revoked"), "{}", refused.text());
        // The registry refuses it too.
        assert_status(&call(&app, Method::GET, "/v2/", &ci).await, StatusCode::UNAUTHORIZED);
        // Revoking again changes nothing; an unknown id is 404.
        let again = call(&app, Method::DELETE, &uri, &laptop).await;
        assert_eq!(again.json()["revoked_at"], revoked_at);
        assert_status(&call(&app, Method::DELETE, "/api/v1/tokens/tok_nope", &laptop).await, StatusCode::NOT_FOUND);
        // An admin revokes anyone's; the other token still works until then.
        assert_status(&call(&app, Method::GET, "/api/v1/tokens", &laptop).await, StatusCode::OK);
        let response = app.admin(Method::DELETE, &format!("/api/v1/tokens/{laptop_id}"), &[], Body::empty()).await;
        assert_status(&response, StatusCode::OK);
        assert_status(&call(&app, Method::GET, "/api/v1/tokens", &laptop).await, StatusCode::UNAUTHORIZED);
        // Each revocation is audited once, by who did it.
        let export = app.admin(Method::GET, "/api/v1/audit/export", &[], Body::empty()).await.text();
        let revocations: Vec<(String, String)> = export
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|entry| entry["action"] == "token" && entry["payload"].as_str().unwrap_or_default().contains("\"revoked\":true"))
            .map(|entry| (entry["actor"].as_str().unwrap_or_default().to_owned(), entry["subject"].as_str().unwrap_or_default().to_owned()))
            .collect();
        assert_eq!(revocations, [("dana".to_owned(), "user/dana".to_owned()), ("admin".to_owned(), "user/dana".to_owned())]);
    }
}
