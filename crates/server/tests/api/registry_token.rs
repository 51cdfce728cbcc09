//! The registry token protocol: a `401` challenges with `Bearer realm,service,scope`,
//! the token endpoint grants the intersection of the scopes asked for and what the
//! caller may do, and the registry honours a token's scopes and nothing more — while
//! still judging the caller by their current permissions.

use axum::body::Body;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{Method, StatusCode};
use serde_json::{Value, json};
use testkit::{TestApp, TestResponse};

use crate::support::{Blob, assert_error, assert_status, push_image, token_for, user_token};

/// `GET /token` with `authorization` and these scopes.
async fn request_token(
    app: &TestApp,
    authorization: Option<&str>,
    scopes: &[&str],
) -> TestResponse {
    let mut uri = "/token?service=localhost".to_owned();
    for scope in scopes {
        uri.push_str(&format!(
            "&scope={}",
            scope
                .replace(':', "%3A")
                .replace(',', "%2C")
                .replace(' ', "%20")
        ));
    }
    let headers: Vec<(&str, &str)> = authorization
        .map(|a| ("authorization", a))
        .into_iter()
        .collect();
    app.send(Method::GET, &uri, &headers, Body::empty()).await
}

async fn issued(app: &TestApp, authorization: Option<&str>, scopes: &[&str]) -> String {
    let response = request_token(app, authorization, scopes).await;
    assert_status(&response, StatusCode::OK);
    let body = response.json();
    assert_eq!(body["token"], body["access_token"]);
    assert_eq!(body["expires_in"], 300);
    assert!(body["issued_at"].as_str().is_some_and(|t| t.ends_with('Z')));
    assert_eq!(response.header("cache-control"), Some("no-store"));
    body["token"].as_str().expect("token").to_owned()
}

/// The access list a token grants (its signed payload, decoded).
fn access(token: &str) -> Value {
    let payload = token
        .strip_prefix("gnr.")
        .and_then(|rest| rest.split('.').next())
        .expect("a registry token");
    let claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64")).expect("json");
    claims["access"].clone()
}

async fn upload(app: &TestApp, repository: &str, authorization: &str, blob: &Blob) -> TestResponse {
    app.send(
        Method::POST,
        &format!("/v2/{repository}/blobs/uploads/?digest={}", blob.digest),
        &[("authorization", authorization)],
        blob.bytes.clone(),
    )
    .await
}

registry_tests! {
    async fn a_client_follows_the_challenge_to_a_token_and_pushes_with_it(app) {
        // The challenge names the realm, the service and the scope the request needed.
        let blob = Blob::new("bearer flow");
        let refused = app
            .send(Method::POST, &format!("/v2/acme/app/blobs/uploads/?digest={}", blob.digest), &[], blob.bytes.clone())
            .await;
        assert_error(&refused, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
        assert_eq!(
            refused.header("www-authenticate"),
            Some("Bearer realm=\"http://localhost/token\",service=\"localhost\",scope=\"repository:acme/app:pull,push\"")
        );
        // Basic credentials at the realm buy a token for exactly the scope asked.
        let admin = app.admin_basic();
        let token = issued(&app, Some(&admin), &["repository:acme/app:pull,push"]).await;
        assert_eq!(access(&token), json!([{"type": "repository", "name": "acme/app", "actions": ["pull", "push"]}]));
        let bearer = format!("Bearer {token}");
        assert_status(&upload(&app, "acme/app", &bearer, &blob).await, StatusCode::CREATED);
        let pulled = app
            .send(Method::GET, &format!("/v2/acme/app/blobs/{}", blob.digest), &[("authorization", &bearer)], Body::empty())
            .await;
        assert_status(&pulled, StatusCode::OK);
        assert_eq!(pulled.body.as_ref(), blob.bytes.as_slice());
        // Not beyond it: another repository, or deleting.
        let elsewhere = upload(&app, "acme/other", &bearer, &blob).await;
        assert_error(&elsewhere, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
        assert!(elsewhere.header("www-authenticate").expect("challenge").contains("error=\"insufficient_scope\""));
        let delete = app
            .send(Method::DELETE, &format!("/v2/acme/app/blobs/{}", blob.digest), &[("authorization", &bearer)], Body::empty())
            .await;
        assert_eq!(delete.status, StatusCode::UNAUTHORIZED);
        // A Gantry token as the password of a POST password grant works too.
        let form = format!("grant_type=password&username=admin&password={}&service=localhost&scope=repository%3Aacme%2Fapp%3Apull", app.admin_token);
        let response = app
            .send(Method::POST, "/token", &[("content-type", "application/x-www-form-urlencoded")], form)
            .await;
        assert_status(&response, StatusCode::OK);
        let token = response.json()["access_token"].as_str().expect("token").to_owned();
        assert_eq!(access(&token), json!([{"type": "repository", "name": "acme/app", "actions": ["pull"]}]));
        // The catalog is a scope of its own.
        let catalog = token_for_catalog(&app).await;
        let listed = app.send(Method::GET, "/v2/_catalog", &[("authorization", &catalog)], Body::empty()).await;
        assert_status(&listed, StatusCode::OK);
    }

    async fn a_token_grants_the_intersection_of_what_is_asked_and_what_is_allowed(app) {
        push_image(&app, "acme/app", "v1", "visible").await;
        let dev = user_token(&app, "dev").await;
        let basic = TestApp::basic("dev", &dev);
        // A user without roles may pull, not push or delete: the token says so.
        let token = issued(&app, Some(&basic), &["repository:acme/app:pull,push,delete", "registry:catalog:*"]).await;
        assert_eq!(access(&token), json!([
            {"type": "repository", "name": "acme/app", "actions": ["pull"]},
            {"type": "registry", "name": "catalog", "actions": ["*"]},
        ]));
        let bearer = format!("Bearer {token}");
        let pushed = upload(&app, "acme/app", &bearer, &Blob::new("not allowed")).await;
        assert_error(&pushed, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
        let tags = app.send(Method::GET, "/v2/acme/app/tags/list", &[("authorization", &bearer)], Body::empty()).await;
        assert_status(&tags, StatusCode::OK);
        // Anonymous callers get a token, empty unless anonymous pull is on.
        let anonymous = issued(&app, None, &["repository:acme/app:pull"]).await;
        assert_eq!(access(&anonymous), json!([]));
        let refused = app
            .send(Method::GET, "/v2/acme/app/tags/list", &[("authorization", &format!("Bearer {anonymous}"))], Body::empty())
            .await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
        // Unknown scope types are left out; malformed scopes are refused.
        let odd = issued(&app, Some(&basic), &["plugin:x:pull"]).await;
        assert_eq!(access(&odd), json!([]));
        let malformed = request_token(&app, Some(&basic), &["repository"]).await;
        assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
        // At most 32 scopes, however they are packed into parameters.
        let many: Vec<String> = (0..33).map(|i| format!("repository:acme/r{i}:pull")).collect();
        let packed = many.join(" ");
        let response = request_token(&app, Some(&basic), &[packed.as_str()]).await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST, "{}", response.text());
        let response = request_token(&app, Some(&basic), &[many[..32].join(" ").as_str()]).await;
        assert_status(&response, StatusCode::OK);
    }

    async fn a_client_asking_for_a_token_before_every_request_is_never_limited(app) {
        // A client that caches no token (the conformance suite's, or a CI fleet behind
        // one NAT address) asks for one per request: successful checks spend nothing.
        let admin = app.admin_basic();
        let secret = token_for(&app, "builder", true, None).await;
        let builder = TestApp::basic("builder", &secret);
        for i in 0..1_000 {
            let authorization = if i % 2 == 0 { &admin } else { &builder };
            let response = request_token(&app, Some(authorization), &["repository:acme/app:pull"]).await;
            assert_eq!(response.status, StatusCode::OK, "grant {i}: {}", response.text());
        }
        // A few failures in between do not change that.
        for i in 0..5 {
            let wrong = TestApp::basic("admin", &format!("gnt_wrong{i}"));
            let response = request_token(&app, Some(&wrong), &["repository:acme/app:pull"]).await;
            assert_eq!(response.status, StatusCode::UNAUTHORIZED);
            assert_status(&request_token(&app, Some(&admin), &["repository:acme/app:pull"]).await, StatusCode::OK);
        }
    }

    async fn a_credential_guessing_loop_is_stopped_and_then_nothing_it_sends_is_checked(app) {
        let burst = auth::FailureLimits::default().burst;
        for guess in 0..burst {
            let wrong = TestApp::basic("admin", &format!("gnt_guess{guess}"));
            let response = request_token(&app, Some(&wrong), &["repository:acme/app:pull"]).await;
            assert_error(&response, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
        }
        let wrong = TestApp::basic("admin", "gnt_one_more");
        let response = request_token(&app, Some(&wrong), &["repository:acme/app:pull"]).await;
        assert_error(&response, StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS");
        let wait: u64 = response.header("retry-after").and_then(|s| s.parse().ok()).expect("Retry-After in seconds");
        assert!((1..=60).contains(&wait), "{wait}");
        // The right credentials are not even looked at now: a guess that happens to be
        // right teaches nothing. The registry's own endpoints share the limit.
        let admin = app.admin_basic();
        let response = request_token(&app, Some(&admin), &["repository:acme/app:pull"]).await;
        assert_error(&response, StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS");
        let response = app.send(Method::GET, "/v2/", &[("authorization", admin.as_str())], Body::empty()).await;
        assert_error(&response, StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS");
        // Without credentials nothing is checked: the usual challenge.
        let response = app.send(Method::GET, "/v2/", &[], Body::empty()).await;
        assert_error(&response, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    }

    async fn bad_credentials_forged_tokens_and_revoked_parents_are_refused(app) {
        let wrong = TestApp::basic("admin", "gnt_wrong");
        let response = request_token(&app, Some(&wrong), &["repository:acme/app:pull"]).await;
        assert_error(&response, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
        // A token issued against a Gantry token dies with it.
        let secret = token_for(&app, "builder", true, None).await;
        let basic = TestApp::basic("builder", &secret);
        let registry_token = issued(&app, Some(&basic), &["repository:acme/app:pull,push"]).await;
        let bearer = format!("Bearer {registry_token}");
        assert_status(&upload(&app, "acme/app", &bearer, &Blob::new("before")).await, StatusCode::CREATED);
        let revoked = app.admin(Method::DELETE, "/api/v1/tokens/tok_builder", &[], Body::empty()).await;
        assert_status(&revoked, StatusCode::OK);
        let after = upload(&app, "acme/app", &bearer, &Blob::new("after")).await;
        assert_error(&after, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
        assert!(after.text().contains("revoked"), "{}", after.text());
        // A tampered token (its scope widened) fails its signature.
        let admin = app.admin_basic();
        let narrow = issued(&app, Some(&admin), &["repository:acme/app:pull"]).await;
        let (signed, tag) = narrow.rsplit_once('.').expect("two parts");
        let payload = signed.strip_prefix("gnr.").expect("prefix");
        let mut claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("b64")).expect("json");
        claims["access"][0]["actions"] = json!(["pull", "push", "delete"]);
        let forged = format!("gnr.{}.{tag}", URL_SAFE_NO_PAD.encode(claims.to_string()));
        let response = upload(&app, "acme/app", &format!("Bearer {forged}"), &Blob::new("forged")).await;
        assert_error(&response, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
        assert!(response.text().contains("signature"), "{}", response.text());
        // Registry tokens are not API credentials, nor credentials for more tokens.
        let api = app.send(Method::GET, "/api/v1/tokens", &[("authorization", &format!("Bearer {narrow}"))], Body::empty()).await;
        assert_eq!(api.status, StatusCode::UNAUTHORIZED);
        let again = request_token(&app, Some(&format!("Bearer {narrow}")), &["repository:acme/app:pull"]).await;
        assert_eq!(again.status, StatusCode::UNAUTHORIZED);
        // Only GET and POST.
        let put = app.send(Method::PUT, "/token", &[], Body::empty()).await;
        assert_eq!(put.status, StatusCode::METHOD_NOT_ALLOWED);
    }
}

async fn token_for_catalog(app: &TestApp) -> String {
    let admin = app.admin_basic();
    format!(
        "Bearer {}",
        issued(app, Some(&admin), &["registry:catalog:*"]).await
    )
}
