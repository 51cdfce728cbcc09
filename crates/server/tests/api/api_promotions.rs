//! The promotion control plane over `/api/v1`: build notifications and auto-promotion,
//! checks with scanner reports, gates with approvals, promotions through their
//! states, rollbacks and holds, release bundles, idempotency, concurrency, users and
//! DORA metrics — each on SQLite and PostgreSQL.

use axum::body::Body;
use http::{Method, StatusCode};
use serde_json::{Value, json};
use testkit::{TestApp, TestResponse};

use crate::support::{
    assert_status, call, mutable_tags_config, push_image, user_with_roles as user,
};

/// The message of an API error.
fn error_message(response: &TestResponse) -> String {
    response.json()["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// dev (auto) → staging (1 staff) → prod (1 staff + 1 client + trivy clean), every
/// environment on the `record` target.
const PIPELINE: &str = r#"kind: Pipeline
name: standard
stages:
  - name: dev
    auto: true
  - name: staging
    gate:
      approvals: [{ role: staff, count: 1 }]
  - name: prod
    gate:
      checks: [{ name: trivy, max: { critical: 0, high: 0 } }]
      approvals: [{ role: staff, count: 1 }, { role: client, count: 1 }]
---
kind: Application
name: web-app
type: container
repository: acme/web-app
pipeline: standard
environments:
  dev: { target: { record: {} } }
  staging: { target: { record: {} } }
  prod: { target: { record: {} } }
"#;

const TRIVY_HIGH: &str = r#"{"SchemaVersion": 2, "ArtifactName": "acme/web-app", "Results": [
  {"Target": "alpine", "Class": "os-pkgs", "Type": "alpine", "Vulnerabilities": [
    {"VulnerabilityID": "CVE-2024-0001", "PkgName": "openssl", "InstalledVersion": "3.1.0", "Severity": "HIGH"},
    {"VulnerabilityID": "CVE-2024-0002", "PkgName": "zlib", "InstalledVersion": "1.2.13", "Severity": "LOW"}
  ]}]}"#;

const TRIVY_CLEAN: &str = r#"{"SchemaVersion": 2, "ArtifactName": "acme/web-app", "Results": [
  {"Target": "alpine", "Class": "os-pkgs", "Type": "alpine", "Vulnerabilities": null}]}"#;

/// As the admin (Basic auth).
async fn admin(app: &TestApp, method: Method, uri: &str, body: Value) -> TestResponse {
    app.admin(
        method,
        uri,
        &[("content-type", "application/json")],
        body.to_string(),
    )
    .await
}

async fn apply(app: &TestApp, text: &str) {
    let response = app
        .admin(
            Method::POST,
            "/api/v1/apply",
            &[("content-type", "application/yaml")],
            text.to_owned(),
        )
        .await;
    assert_status(&response, StatusCode::OK);
}

struct People {
    ci: String,
    dana: String,
    sam: String,
    cleo: String,
}

/// The pipeline applied, and a CI identity, a developer, a staff member and a client.
async fn setup(app: &TestApp) -> People {
    apply(app, PIPELINE).await;
    People {
        ci: user(app, "ci-bot", true, &["developer@web-app"]).await,
        dana: user(app, "dana", false, &["developer"]).await,
        sam: user(app, "sam", false, &["staff@web-app"]).await,
        cleo: user(app, "cleo", false, &["client"]).await,
    }
}

/// Pushes an image of `seed` and returns its digest.
async fn push(app: &TestApp, seed: &str) -> String {
    let image = push_image(app, "acme/web-app", seed, seed).await;
    image.manifest.digest.clone()
}

async fn notify(app: &TestApp, token: &str, digest: &str) -> TestResponse {
    call(
        app,
        Method::POST,
        "/api/v1/builds",
        token,
        json!({ "application": "web-app", "digest": digest, "commit": "abc1234",
                "triggered_by": "dana", "committed_at": "2026-11-20T10:00:00Z" }),
    )
    .await
}

async fn promote(app: &TestApp, token: &str, env: &str, digest: &str) -> TestResponse {
    call(
        app,
        Method::POST,
        "/api/v1/promotions",
        token,
        json!({ "application": "web-app", "environment": env, "digest": digest }),
    )
    .await
}

async fn approve(app: &TestApp, token: &str, id: i64) -> TestResponse {
    call(
        app,
        Method::POST,
        &format!("/api/v1/promotions/{id}/approve"),
        token,
        json!({ "comment": "looks good" }),
    )
    .await
}

async fn check(
    app: &TestApp,
    token: &str,
    digest: &str,
    name: &str,
    status: &str,
    report: Option<&str>,
) -> TestResponse {
    call(
        app,
        Method::POST,
        "/api/v1/checks",
        token,
        json!({ "application": "web-app", "digest": digest, "name": name, "status": status, "report": report }),
    )
    .await
}

async fn status(app: &TestApp, token: &str) -> Value {
    let response = call(app, Method::GET, "/api/v1/apps/web-app", token, Value::Null).await;
    assert_status(&response, StatusCode::OK);
    response.json()
}

/// The environment `env` of an application status.
fn environment<'a>(status: &'a Value, env: &str) -> &'a Value {
    status["environments"]
        .as_array()
        .expect("environments")
        .iter()
        .find(|e| e["name"] == env)
        .expect("the environment")
}

fn condition<'a>(promotion: &'a Value, kind: &str) -> &'a Value {
    promotion["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .find(|c| c["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} condition in {promotion}"))
}

fn id(response: &TestResponse) -> i64 {
    response.json()["id"].as_i64().expect("an id")
}

/// Audit actions in order.
async fn audit_actions(app: &TestApp) -> Vec<(String, String)> {
    let response = app
        .admin(Method::GET, "/api/v1/audit/export", &[], Body::empty())
        .await;
    assert_status(&response, StatusCode::OK);
    response
        .text()
        .lines()
        .map(|line| {
            let entry: Value = serde_json::from_str(line).expect("JSON line");
            (
                entry["action"].as_str().unwrap_or_default().to_owned(),
                entry["actor"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

registry_tests! {
    async fn a_digest_moves_from_dev_to_prod_behind_its_gates_and_rolls_back(app) {
        let people = setup(&app).await;
        let first = push(&app, "v1").await;

        // Notify: provenance recorded, auto-promoted into dev and deployed there.
        let response = notify(&app, &people.ci, &first).await;
        assert_status(&response, StatusCode::CREATED);
        let body = response.json();
        assert_eq!(body["build"]["commit"], "abc1234");
        assert_eq!(body["build"]["builder"], "ci-bot");
        assert_eq!(body["promotion"]["environment"], "dev");
        assert_eq!(body["promotion"]["state"], "deployed", "{body}");
        let now = status(&app, &people.dana).await;
        assert_eq!(environment(&now, "dev")["current"]["digest"], first.as_str());
        assert_eq!(environment(&now, "dev")["current"]["commit"], "abc1234");
        // A repeated notify updates provenance and does not deploy again.
        let dev_promotion = body["promotion"]["id"].clone();
        let response = notify(&app, &people.ci, &first).await;
        assert_eq!(response.json()["promotion"]["id"], dev_promotion);
        let history = call(&app, Method::GET, "/api/v1/apps/web-app/history?environment=dev", &people.dana, Value::Null).await;
        assert_eq!(history.json()["deployments"].as_array().map(Vec::len), Some(1));

        // Staging waits for a staff approval.
        let response = promote(&app, &people.dana, "staging", &first).await;
        assert_status(&response, StatusCode::CREATED);
        let staging = response.json();
        assert_eq!(staging["state"], "waiting", "{staging}");
        assert_eq!(condition(&staging, "order")["met"], true);
        assert_eq!(condition(&staging, "approval")["met"], false);
        let staging_id = staging["id"].as_i64().expect("id");

        // The requester, the build's triggerer and CI identities cannot approve.
        let response = approve(&app, &people.dana, staging_id).await;
        assert_status(&response, StatusCode::FORBIDDEN);
        assert!(error_message(&response).contains("own promotion"), "{}", error_message(&response));
        let response = approve(&app, &people.ci, staging_id).await;
        assert_status(&response, StatusCode::FORBIDDEN);
        assert!(error_message(&response).contains("CI identit"), "{}", error_message(&response));
        // A client holds no role that approves staging.
        let response = approve(&app, &people.cleo, staging_id).await;
        assert_status(&response, StatusCode::FORBIDDEN);
        assert!(error_message(&response).contains("staff"), "{}", error_message(&response));
        // A staff member's approval opens the gate: deployed in the same request.
        let response = approve(&app, &people.sam, staging_id).await;
        assert_status(&response, StatusCode::OK);
        let staging = response.json();
        assert_eq!(staging["state"], "deployed", "{staging}");
        assert_eq!(staging["decisions"][0]["approver"], "sam");
        // A second approval of a finished promotion is a conflict.
        assert_status(&approve(&app, &people.sam, staging_id).await, StatusCode::CONFLICT);

        // Prod: a high finding keeps the gate shut even with both approvals.
        let response = check(&app, &people.ci, &first, "trivy", "passed", Some(TRIVY_HIGH)).await;
        assert_status(&response, StatusCode::CREATED);
        assert_eq!(response.json()["findings"]["high"], 1);
        assert_eq!(response.json()["format"], "trivy");
        let response = promote(&app, &people.dana, "prod", &first).await;
        let prod_id = id(&response);
        assert_eq!(response.json()["state"], "waiting");
        let trivy = condition(&response.json(), "check").clone();
        assert_eq!(trivy["met"], false);
        assert!(trivy["reason"].as_str().unwrap_or_default().contains("1 high"), "{trivy}");
        assert_status(&approve(&app, &people.sam, prod_id).await, StatusCode::OK);
        let response = approve(&app, &people.cleo, prod_id).await;
        assert_status(&response, StatusCode::OK);
        assert_eq!(response.json()["state"], "waiting", "{}", response.json());
        // A clean report re-evaluates the waiting promotion: deployed.
        let response = check(&app, &people.ci, &first, "trivy", "passed", Some(TRIVY_CLEAN)).await;
        assert_status(&response, StatusCode::CREATED);
        let response = call(&app, Method::GET, &format!("/api/v1/promotions/{prod_id}"), &people.dana, Value::Null).await;
        assert_eq!(response.json()["state"], "deployed", "{}", response.json());

        // Nothing ran in prod before: a rollback has nowhere to go.
        let rollback_uri = "/api/v1/apps/web-app/environments/prod/rollback";
        let response = call(&app, Method::POST, rollback_uri, &people.dana, json!({})).await;
        assert_status(&response, StatusCode::CONFLICT);

        // A second build through to prod, then roll back to the first.
        let second = push(&app, "v2").await;
        assert_eq!(notify(&app, &people.ci, &second).await.json()["promotion"]["state"], "deployed");
        let staging2 = id(&promote(&app, &people.dana, "staging", &second).await);
        assert_eq!(approve(&app, &people.sam, staging2).await.json()["state"], "deployed");
        check(&app, &people.ci, &second, "trivy", "passed", Some(TRIVY_CLEAN)).await;
        let prod2 = id(&promote(&app, &people.dana, "prod", &second).await);
        approve(&app, &people.sam, prod2).await;
        assert_eq!(approve(&app, &people.cleo, prod2).await.json()["state"], "deployed");
        assert_eq!(environment(&status(&app, &people.dana).await, "prod")["current"]["digest"], second.as_str());

        // The CI identity may not roll back.
        let response = call(&app, Method::POST, rollback_uri, &people.ci, json!({})).await;
        assert_status(&response, StatusCode::FORBIDDEN);
        let response = call(&app, Method::POST, rollback_uri, &people.dana, json!({ "reason": "errors up" })).await;
        assert_status(&response, StatusCode::CREATED);
        let rollback = response.json();
        assert_eq!(rollback["reason"], "rollback");
        assert_eq!(rollback["state"], "deployed");
        assert_eq!(rollback["digest"], first.as_str());
        let now = status(&app, &people.dana).await;
        let prod = environment(&now, "prod");
        assert_eq!(prod["current"]["digest"], first.as_str());
        assert!(prod["hold"]["reason"].as_str().unwrap_or_default().contains("rolled back"), "{prod}");

        // History shows both promotions and the rollback, newest first.
        let response = call(&app, Method::GET, "/api/v1/apps/web-app/history?environment=prod", &people.dana, Value::Null).await;
        let reasons: Vec<String> = response.json()["deployments"].as_array().expect("list").iter()
            .map(|d| d["reason"].as_str().unwrap_or_default().to_owned()).collect();
        assert_eq!(reasons, ["rollback", "promotion", "promotion"]);

        // The audit log holds every step, by who did it, and verifies.
        let actions = audit_actions(&app).await;
        for (action, actor) in [("notify", "ci-bot"), ("check", "ci-bot"), ("promote", "dana"),
                                ("approve", "sam"), ("approve", "cleo"), ("deploy", "dana"),
                                ("rollback", "dana"), ("hold", "dana"), ("user", "admin"), ("token", "admin")] {
            assert!(actions.contains(&(action.to_owned(), actor.to_owned())), "{action} by {actor} in {actions:?}");
        }
        let response = app.admin(Method::GET, "/api/v1/audit/verify", &[], Body::empty()).await;
        assert_eq!(response.json()["intact"], true, "{}", response.json());
    }

    async fn auto_promotion_stays_out_of_a_held_environment_until_released(app) {
        let people = setup(&app).await;
        let first = push(&app, "held-1").await;
        notify(&app, &people.ci, &first).await;
        let hold_uri = "/api/v1/apps/web-app/environments/dev/hold";
        let response = call(&app, Method::PUT, hold_uri, &people.dana, json!({ "reason": "investigating" })).await;
        assert_status(&response, StatusCode::OK);
        assert_eq!(response.json()["by"], "dana");
        let second = push(&app, "held-2").await;
        let response = notify(&app, &people.ci, &second).await;
        assert_status(&response, StatusCode::CREATED);
        assert!(response.json()["promotion"].is_null(), "{}", response.json());
        assert_eq!(response.json()["held"]["reason"], "investigating");
        assert_eq!(environment(&status(&app, &people.dana).await, "dev")["current"]["digest"], first.as_str());
        // Released: the next notify promotes again.
        let response = call(&app, Method::DELETE, hold_uri, &people.dana, Value::Null).await;
        assert_status(&response, StatusCode::NO_CONTENT);
        let response = notify(&app, &people.ci, &second).await;
        assert_eq!(response.json()["promotion"]["state"], "deployed", "{}", response.json());
        let actions: Vec<String> = audit_actions(&app).await.into_iter().map(|(a, _)| a).collect();
        assert!(actions.contains(&"hold".to_owned()) && actions.contains(&"release".to_owned()));
    }

    async fn refused_requests_say_why_and_change_nothing(app) {
        let people = setup(&app).await;
        let digest = push(&app, "r").await;
        let before = audit_actions(&app).await.len();
        // A digest the repository does not hold.
        let absent = format!("sha256:{}", "0".repeat(64));
        let response = notify(&app, &people.ci, &absent).await;
        assert_status(&response, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(response.json()["code"], "not_an_artifact");
        let response = check(&app, &people.ci, &absent, "trivy", "passed", None).await;
        assert_eq!(response.json()["code"], "not_an_artifact");
        // Malformed digests, statuses, reports, bodies.
        let response = notify(&app, &people.ci, "sha256:nothex").await;
        assert_status(&response, StatusCode::BAD_REQUEST);
        let response = check(&app, &people.ci, &digest, "trivy", "green", None).await;
        assert_status(&response, StatusCode::BAD_REQUEST);
        let response = check(&app, &people.ci, &digest, "trivy", "passed", Some("{\"not\": \"a report\"}")).await;
        assert_status(&response, StatusCode::BAD_REQUEST);
        assert!(error_message(&response).contains("report"), "{}", error_message(&response));
        let response = call(&app, Method::POST, "/api/v1/builds", &people.ci, json!({ "application": "web-app", "digest": digest, "colour": "red" })).await;
        assert_status(&response, StatusCode::BAD_REQUEST);
        let response = app.send(Method::POST, "/api/v1/builds", &[("authorization", &format!("Bearer {}", people.ci))], "{}").await;
        assert_status(&response, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        // Unknown application and environment.
        let response = call(&app, Method::POST, "/api/v1/builds", &people.ci, json!({ "application": "nope", "digest": digest })).await;
        assert_status(&response, StatusCode::NOT_FOUND);
        let response = promote(&app, &people.dana, "qa", &digest).await;
        assert_status(&response, StatusCode::NOT_FOUND);
        assert!(error_message(&response).contains("dev, staging, prod"), "{}", error_message(&response));
        // Order: staging before dev is refused by the gate, not skipped.
        let response = promote(&app, &people.dana, "staging", &digest).await;
        assert_eq!(response.json()["state"], "waiting");
        assert_eq!(condition(&response.json(), "order")["met"], false);
        let waiting = id(&response);
        // Who may not: a CI identity promoting, a client promoting, anonymous, an override by a non-admin.
        assert_status(&promote(&app, &people.ci, "dev", &digest).await, StatusCode::FORBIDDEN);
        assert_status(&promote(&app, &people.cleo, "dev", &digest).await, StatusCode::FORBIDDEN);
        let response = app.send(Method::GET, "/api/v1/apps", &[], Body::empty()).await;
        assert_status(&response, StatusCode::UNAUTHORIZED);
        let response = call(&app, Method::POST, "/api/v1/promotions", &people.dana,
            json!({ "application": "web-app", "environment": "prod", "digest": digest, "override_reason": "hotfix" })).await;
        assert_status(&response, StatusCode::FORBIDDEN);
        // Rejection needs a reason; cancel is for the requester.
        let response = call(&app, Method::POST, &format!("/api/v1/promotions/{waiting}/reject"), &people.sam, json!({ "reason": " " })).await;
        assert_status(&response, StatusCode::BAD_REQUEST);
        let response = call(&app, Method::POST, &format!("/api/v1/promotions/{waiting}/cancel"), &people.sam, json!({})).await;
        assert_status(&response, StatusCode::FORBIDDEN);
        let response = call(&app, Method::GET, "/api/v1/promotions/999999", &people.sam, Value::Null).await;
        assert_status(&response, StatusCode::NOT_FOUND);
        // Users: admins only, names unique, roles known.
        let response = call(&app, Method::POST, "/api/v1/users", &people.dana, json!({ "name": "eve" })).await;
        assert_status(&response, StatusCode::FORBIDDEN);
        let response = admin(&app, Method::POST, "/api/v1/users", json!({ "name": "dana" })).await;
        assert_status(&response, StatusCode::CONFLICT);
        let response = admin(&app, Method::POST, "/api/v1/users", json!({ "name": "eve", "roles": ["overlord"] })).await;
        assert_status(&response, StatusCode::BAD_REQUEST);
        // Only the waiting promotion was recorded (one promote entry).
        let after = audit_actions(&app).await;
        assert_eq!(after.len(), before + 1, "{:?}", &after[before..]);
        // The requester withdraws it.
        let response = call(&app, Method::POST, &format!("/api/v1/promotions/{waiting}/cancel"), &people.dana, json!({})).await;
        assert_eq!(response.json()["state"], "cancelled");
    }

    async fn rejections_end_promotions_and_newer_approved_ones_supersede_older(app) {
        let people = setup(&app).await;
        let one = push(&app, "s1").await;
        let two = push(&app, "s2").await;
        let three = push(&app, "s3").await;
        for digest in [&one, &two, &three] {
            notify(&app, &people.ci, digest).await;
        }
        let first = id(&promote(&app, &people.dana, "staging", &one).await);
        let second = id(&promote(&app, &people.dana, "staging", &two).await);
        let third = id(&promote(&app, &people.dana, "staging", &three).await);
        let response = call(&app, Method::POST, &format!("/api/v1/promotions/{first}/reject"), &people.sam, json!({ "reason": "wrong branch" })).await;
        assert_status(&response, StatusCode::OK);
        assert_eq!(response.json()["state"], "rejected");
        assert!(response.json()["reason"].as_str().unwrap_or_default().contains("wrong branch"));
        // Approving the newest supersedes the older pending one.
        assert_eq!(approve(&app, &people.sam, third).await.json()["state"], "deployed");
        let response = call(&app, Method::GET, &format!("/api/v1/promotions/{second}"), &people.sam, Value::Null).await;
        assert_eq!(response.json()["state"], "superseded", "{}", response.json());
        assert_status(&approve(&app, &people.sam, second).await, StatusCode::CONFLICT);
        // Asking again for what the environment runs answers with the promotion that
        // put it there, and deploys nothing.
        let again = promote(&app, &people.dana, "staging", &three).await;
        assert_status(&again, StatusCode::OK);
        assert_eq!(id(&again), third, "the environment runs it: no new promotion");
        // An open promotion of the same digest answers too.
        let open = promote(&app, &people.dana, "staging", &two).await;
        assert_status(&open, StatusCode::CREATED);
        let repeat = promote(&app, &people.dana, "staging", &two).await;
        assert_status(&repeat, StatusCode::OK);
        assert_eq!(id(&repeat), id(&open));
        // Listing filters by state.
        let response = call(&app, Method::GET, "/api/v1/promotions?application=web-app&state=superseded", &people.sam, Value::Null).await;
        let ids: Vec<i64> = response.json()["promotions"].as_array().expect("list").iter().filter_map(|p| p["id"].as_i64()).collect();
        assert_eq!(ids, [second]);
    }

    async fn release_bundles_bind_approvals_to_the_config_and_idempotency_keys_make_retries_safe(app) {
        let people = setup(&app).await;
        let digest = push(&app, "bundle").await;
        notify(&app, &people.ci, &digest).await;
        let request = json!({ "application": "web-app", "environment": "staging", "digest": digest,
                              "config": { "replicas": 3, "feature.flag": true } });
        let auth = format!("Bearer {}", people.dana);
        let send = |key: &'static str, body: Value| {
            let auth = auth.clone();
            let app = &app;
            async move {
                app.send(Method::POST, "/api/v1/promotions",
                    &[("authorization", auth.as_str()), ("content-type", "application/json"), ("idempotency-key", key)],
                    body.to_string()).await
            }
        };
        let created = send("k-1", request.clone()).await;
        assert_status(&created, StatusCode::CREATED);
        let replay = send("k-1", request.clone()).await;
        assert_status(&replay, StatusCode::OK);
        assert_eq!(id(&replay), id(&created));
        let mut other = request.clone();
        other["config"]["replicas"] = json!(4);
        let reused = send("k-1", other.clone()).await;
        assert_status(&reused, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(reused.json()["code"], "idempotency_key_reused");
        // Another config is another promotion with its own approvals.
        let second = send("k-2", other).await;
        assert_status(&second, StatusCode::CREATED);
        assert_ne!(id(&second), id(&created));
        assert_ne!(second.json()["config_revision"], created.json()["config_revision"]);
        let response = approve(&app, &people.sam, id(&second)).await;
        assert_eq!(response.json()["state"], "deployed");
        // The older one was superseded; its config never ran.
        let response = call(&app, Method::GET, &format!("/api/v1/promotions/{}", id(&created)), &people.sam, Value::Null).await;
        assert_eq!(response.json()["state"], "superseded");
        let history = call(&app, Method::GET, "/api/v1/apps/web-app/history?environment=staging", &people.sam, Value::Null).await;
        assert_eq!(history.json()["deployments"][0]["config"]["replicas"], 4);
        assert_eq!(history.json()["deployments"][0]["config_revision"], second.json()["config_revision"]);
    }

    async fn a_flapping_check_blocks_with_a_clear_status_and_an_admin_override_is_audited(app) {
        let people = setup(&app).await;
        let digest = push(&app, "flaky").await;
        notify(&app, &people.ci, &digest).await;
        let staging = id(&promote(&app, &people.dana, "staging", &digest).await);
        approve(&app, &people.sam, staging).await;
        for status in ["passed", "failed", "passed", "failed", "passed"] {
            assert_status(&check(&app, &people.ci, &digest, "trivy", status, Some(TRIVY_CLEAN)).await, StatusCode::CREATED);
        }
        let response = promote(&app, &people.dana, "prod", &digest).await;
        let trivy = condition(&response.json(), "check").clone();
        assert_eq!(trivy["met"], false);
        assert!(trivy["reason"].as_str().unwrap_or_default().contains("fix the flaky check"), "{trivy}");
        // Break-glass: an admin deploys anyway, with a reason, loudly audited.
        let response = admin(&app, Method::POST, "/api/v1/promotions",
            json!({ "application": "web-app", "environment": "prod", "digest": digest, "override_reason": "incident 42" })).await;
        assert_eq!(response.json()["state"], "deployed", "{}", response.json());
        assert_eq!(response.json()["override_reason"], "incident 42");
        let actions = audit_actions(&app).await;
        assert!(actions.contains(&("override".to_owned(), "admin".to_owned())), "{actions:?}");
        // An override needs a reason.
        let response = admin(&app, Method::POST, "/api/v1/promotions",
            json!({ "application": "web-app", "environment": "prod", "digest": digest, "override_reason": "" })).await;
        assert_status(&response, StatusCode::BAD_REQUEST);
    }

    async fn drift_is_flagged_when_what_runs_differs_and_cleared_when_it_agrees(app) {
        let people = setup(&app).await;
        let deployed = push(&app, "expected").await;
        let other = push(&app, "hand-deployed").await;
        assert_status(&notify(&app, &people.ci, &deployed).await, StatusCode::CREATED);
        let observe = |token: String, digest: String| {
            let app = &app;
            async move {
                call(app, Method::POST, "/api/v1/apps/web-app/environments/dev/observed", &token, json!({ "digest": digest })).await
            }
        };
        let drift_metric = || {
            let app = &app;
            async move {
                let text = app.send(Method::GET, "/metrics", &[], Body::empty()).await.text();
                text.lines()
                    .find(|line| line.starts_with("gantry_drift{") && line.contains("application=\"web-app\"") && line.contains("environment=\"dev\""))
                    .map(|line| line.rsplit(' ').next().unwrap_or_default().to_owned())
            }
        };
        // An agent reads back what Gantry deployed: no drift.
        let response = observe(people.dana.clone(), deployed.clone()).await;
        assert_status(&response, StatusCode::OK);
        assert_eq!(response.json()["drift"], false);
        assert_eq!(response.json()["expected"], deployed.as_str());
        assert_eq!(drift_metric().await.as_deref(), Some("0"));
        // Someone changed it by hand: drift, in the status, the metrics and the audit log.
        let response = observe(people.dana.clone(), other.clone()).await;
        assert_eq!(response.json()["drift"], true, "{}", response.json());
        let since = response.json()["drift_since"].clone();
        assert!(since.is_string());
        let status = admin(&app, Method::GET, "/api/v1/apps/web-app", Value::Null).await.json();
        let dev = status["environments"].as_array().expect("environments").iter().find(|e| e["name"] == "dev").expect("dev").clone();
        assert_eq!(dev["observed"]["digest"], other.as_str());
        assert_eq!(dev["observed"]["by"], "dana");
        assert_eq!(dev["drift_since"], since);
        assert_eq!(drift_metric().await.as_deref(), Some("1"));
        // Reported again, drift keeps its start; agreeing again clears it.
        let response = observe(people.dana.clone(), other.clone()).await;
        assert_eq!(response.json()["drift_since"], since);
        let response = observe(people.dana.clone(), deployed.clone()).await;
        assert_eq!(response.json()["drift"], false);
        assert_eq!(drift_metric().await.as_deref(), Some("0"));
        let entries = app.store.audit().entries(0, 1000).await.expect("audit");
        let drift: Vec<String> = entries.iter().filter(|e| e.action == "drift").map(|e| e.payload.clone()).collect();
        assert_eq!(drift.len(), 2, "one entry when it starts, one when it ends: {drift:?}");
        assert!(drift[0].contains("\"drift\":true") && drift[1].contains("\"drift\":false"), "{drift:?}");
        // Who may report: a deploying role there; not a build identity, not a bad digest.
        let response = observe(people.ci.clone(), deployed.clone()).await;
        assert_eq!(response.status, StatusCode::FORBIDDEN, "{}", response.text());
        assert_eq!(observe(people.sam.clone(), deployed.clone()).await.status, StatusCode::FORBIDDEN);
        assert_eq!(observe(people.dana.clone(), "sha256:nope".to_owned()).await.status, StatusCode::BAD_REQUEST);
        let response = call(&app, Method::POST, "/api/v1/apps/web-app/environments/qa/observed", &people.dana, json!({ "digest": deployed })).await;
        assert_eq!(response.status, StatusCode::NOT_FOUND);
    }

    async fn roles_scoped_to_an_environment_act_in_that_environment_only(app) {
        let people = setup(&app).await;
        let stan = user(&app, "stan", false, &["staff@web-app/staging"]).await;
        let pat = user(&app, "pat", false, &["developer@web-app/staging"]).await;
        let digest = push(&app, "scoped").await;
        assert_status(&notify(&app, &people.ci, &digest).await, StatusCode::CREATED);
        // pat promotes into staging; stan's staff role there approves it.
        let response = promote(&app, &pat, "staging", &digest).await;
        assert_status(&response, StatusCode::CREATED);
        let staging = response.json()["id"].as_i64().expect("id");
        let response = approve(&app, &stan, staging).await;
        assert_status(&response, StatusCode::OK);
        assert_eq!(response.json()["state"], "deployed", "{}", response.json());
        // In prod neither counts: pat may not promote, stan's approval is refused.
        let response = promote(&app, &pat, "prod", &digest).await;
        assert_eq!(response.status, StatusCode::FORBIDDEN, "{}", response.text());
        assert!(response.text().contains("promote:web-app/prod"), "{}", response.text());
        let response = promote(&app, &people.dana, "prod", &digest).await;
        assert_status(&response, StatusCode::CREATED);
        let prod = response.json()["id"].as_i64().expect("id");
        let response = approve(&app, &stan, prod).await;
        assert_eq!(response.status, StatusCode::FORBIDDEN, "{}", response.text());
        let response = admin(&app, Method::GET, &format!("/api/v1/promotions/{prod}"), Value::Null).await;
        assert_eq!(response.json()["decisions"], json!([]), "a refused approval is not recorded");
        // Nor may pat roll back or hold prod, while staging is theirs.
        let hold = call(&app, Method::PUT, "/api/v1/apps/web-app/environments/prod/hold", &pat, json!({ "reason": "x" })).await;
        assert_eq!(hold.status, StatusCode::FORBIDDEN);
        let hold = call(&app, Method::PUT, "/api/v1/apps/web-app/environments/staging/hold", &pat, json!({ "reason": "freeze" })).await;
        assert_status(&hold, StatusCode::OK);
    }

    async fn a_release_stage_serves_from_its_tier_repository_and_admission_demands_it(app) {
        apply(&app, r#"kind: Pipeline
name: tiered
stages:
  - name: dev
    auto: true
  - name: prod
    auto: true
    tier: release
---
kind: Application
name: tiered
type: container
repository: acme/tiered
pipeline: tiered
environments:
  dev: { target: { record: {} } }
  prod: { target: { record: {} } }
"#).await;
        // Before the first deployment there is nothing to run.
        let params = admin(&app, Method::GET, "/api/v1/apps/tiered/environments/prod", Value::Null).await;
        assert_status(&params, StatusCode::OK);
        assert_eq!(params.json()["image"], Value::Null);
        let line = app.admin(Method::GET, "/params/tiered/prod/image", &[], Body::empty()).await;
        assert_eq!(line.status, StatusCode::NOT_FOUND);
        let image = crate::support::push_image(&app, "acme/tiered", "v1", "tiered").await;
        let digest = image.manifest.digest.clone();
        let response = admin(&app, Method::POST, "/api/v1/builds", json!({ "application": "tiered", "digest": digest })).await;
        assert_status(&response, StatusCode::CREATED);
        // dev then prod (both auto): prod's deployment linked the image into the tier.
        let status = admin(&app, Method::GET, "/api/v1/apps/tiered", Value::Null).await.json();
        let prod = status["environments"].as_array().expect("environments").iter()
            .find(|e| e["name"] == "prod").expect("prod").clone();
        assert_eq!(prod["current"]["digest"], digest.as_str(), "{status}");
        let served = app.admin(Method::GET, &format!("/v2/release/acme/tiered/manifests/{digest}"), &[], Body::empty()).await;
        assert_status(&served, StatusCode::OK);
        assert_eq!(served.body.as_ref(), image.manifest.bytes.as_slice(), "the same bytes, not a copy");
        // The link, and the tier repository it created, are in the audit log.
        let entries = app.store.audit().entries(0, 1000).await.expect("audit");
        let links: Vec<&store::AuditEntry> = entries.iter().filter(|e| e.action == "link").collect();
        assert_eq!(links.len(), 1, "{entries:?}");
        assert_eq!(links[0].subject, "release/acme/tiered");
        let payload: Value = serde_json::from_str(&links[0].payload).expect("json");
        assert_eq!((&payload["digest"], &payload["source"], &payload["created_repository"]), (&json!(digest), &json!("acme/tiered"), &json!(true)));
        for blob in [&image.config, &image.layer] {
            let pulled = app.admin(Method::GET, &format!("/v2/release/acme/tiered/blobs/{}", blob.digest), &[], Body::empty()).await;
            assert_status(&pulled, StatusCode::OK);
            assert_eq!(pulled.body.as_ref(), blob.bytes.as_slice());
        }
        // Admission for prod takes the tier's reference only; dev the shared one only.
        let ask = |env: &str, image: String| {
            let uri = format!("/api/v1/admission?env={env}&image={}", image.replace(':', "%3A").replace('@', "%40").replace('/', "%2F"));
            let app = &app;
            async move { admin(app, Method::GET, &uri, Value::Null).await.json() }
        };
        let answer = ask("prod", format!("gantry.example.com/release/acme/tiered@{digest}")).await;
        assert_eq!(answer["allowed"], true, "{answer}");
        let answer = ask("prod", format!("acme/tiered@{digest}")).await;
        assert_eq!(answer["allowed"], false, "{answer}");
        assert!(answer["reason"].as_str().unwrap_or_default().contains("runs images from release/acme/tiered"), "{answer}");
        assert_eq!(ask("dev", format!("acme/tiered@{digest}")).await["allowed"], true);
        assert_eq!(ask("dev", format!("release/acme/tiered@{digest}")).await["allowed"], false);
        // The parameters of each environment name the image through that repository.
        let params = admin(&app, Method::GET, "/api/v1/apps/tiered/environments/prod", Value::Null).await;
        assert_status(&params, StatusCode::OK);
        let params = params.json();
        assert_eq!(params["repository"], "release/acme/tiered");
        assert_eq!(params["image"], format!("localhost/release/acme/tiered@{digest}"), "{params}");
        assert_eq!(params["deployment"]["state"], "deployed");
        let line = app.admin(Method::GET, "/params/tiered/dev/image", &[("host", "gantry.example.com")], Body::empty()).await;
        assert_status(&line, StatusCode::OK);
        assert_eq!(line.text(), format!("gantry.example.com/acme/tiered@{digest}\n"));
        assert!(line.header("content-type").unwrap_or_default().starts_with("text/plain"));
        let missing = admin(&app, Method::GET, "/api/v1/apps/tiered/environments/qa", Value::Null).await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
        // Nobody writes to a tier repository, not even an admin.
        let blob = crate::support::Blob::new("sneaked in");
        let pushed = app
            .admin(Method::POST, &format!("/v2/release/acme/tiered/blobs/uploads/?digest={}", blob.digest), &[], blob.bytes.clone())
            .await;
        assert_eq!(pushed.status, StatusCode::FORBIDDEN);
        assert!(pushed.text().contains("written by promotions only"), "{}", pushed.text());
        let deleted = app.admin(Method::DELETE, &format!("/v2/release/acme/tiered/manifests/{digest}"), &[], Body::empty()).await;
        assert_eq!(deleted.status, StatusCode::FORBIDDEN);
    }

    async fn admission_allows_only_digests_promoted_to_the_environment(app = mutable_tags_config()) {
        let people = setup(&app).await;
        let promoted = push(&app, "admitted").await;
        let unpromoted = push(&app, "stranger").await;
        notify(&app, &people.ci, &promoted).await;
        let ask = |env: &str, image: String| {
            let uri = format!("/api/v1/admission?env={env}&image={}", image.replace(':', "%3A").replace('@', "%40").replace('/', "%2F"));
            let token = people.dana.clone();
            let app = &app;
            async move { call(app, Method::GET, &uri, &token, Value::Null).await }
        };
        // By digest, by tag (resolved), with a registry host in front.
        let response = ask("dev", format!("acme/web-app@{promoted}")).await;
        assert_status(&response, StatusCode::OK);
        assert_eq!(response.json()["allowed"], true, "{}", response.json());
        let response = ask("dev", "127.0.0.1:5000/acme/web-app:admitted".to_owned()).await;
        assert_eq!(response.json()["allowed"], true, "{}", response.json());
        assert_eq!(response.json()["digest"], promoted.as_str());
        // Pushed but never promoted; promoted elsewhere only; unknown things.
        let response = ask("dev", format!("acme/web-app@{unpromoted}")).await;
        assert_eq!(response.json()["allowed"], false);
        assert!(response.json()["reason"].as_str().unwrap_or_default().contains("never promoted"), "{}", response.json());
        assert_eq!(ask("prod", format!("acme/web-app@{promoted}")).await.json()["allowed"], false);
        assert_eq!(ask("dev", "acme/other:v1".to_owned()).await.json()["allowed"], false);
        assert_eq!(ask("dev", "acme/web-app:nosuchtag".to_owned()).await.json()["allowed"], false);
        assert_eq!(ask("dev", "acme/web-app".to_owned()).await.json()["allowed"], false);
        // Moving the tag to unpromoted bytes moves the answer with it.
        crate::support::push_manifest(&app, "acme/web-app", "admitted", &crate::support::Image::new("stranger").manifest).await;
        assert_eq!(ask("dev", "acme/web-app:admitted".to_owned()).await.json()["allowed"], false);

        // A Kubernetes AdmissionReview: every container image must pass.
        let review = |images: Vec<String>| json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": { "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
                         "object": { "kind": "Pod", "spec": {
                             "initContainers": [{ "name": "init", "image": images[0] }],
                             "containers": images[1..].iter().map(|i| json!({ "name": "c", "image": i })).collect::<Vec<_>>() } } }
        });
        let good = format!("acme/web-app@{promoted}");
        let bad = format!("acme/web-app@{unpromoted}");
        let response = call(&app, Method::POST, "/api/v1/admission/review?env=dev", &people.dana, review(vec![good.clone(), good.clone()])).await;
        assert_status(&response, StatusCode::OK);
        let body = response.json();
        assert_eq!(body["kind"], "AdmissionReview");
        assert_eq!(body["response"]["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
        assert_eq!(body["response"]["allowed"], true, "{body}");
        let response = call(&app, Method::POST, "/api/v1/admission/review?env=dev", &people.dana, review(vec![good.clone(), bad])).await;
        let body = response.json();
        assert_eq!(body["response"]["allowed"], false, "{body}");
        assert_eq!(body["response"]["status"]["code"], 403);
        assert!(body["response"]["status"]["message"].as_str().unwrap_or_default().contains("never promoted"), "{body}");
        // Not a review, no credentials: refused.
        let response = call(&app, Method::POST, "/api/v1/admission/review?env=dev", &people.dana, json!({ "kind": "Pod" })).await;
        assert_status(&response, StatusCode::BAD_REQUEST);
        let response = app.send(Method::GET, &format!("/api/v1/admission?env=dev&image=acme%2Fweb-app%40{promoted}"), &[], Body::empty()).await;
        assert_status(&response, StatusCode::UNAUTHORIZED);
    }

    async fn a_quarantined_digest_is_refused_everywhere_until_lifted_and_where_it_runs_is_flagged(app) {
        let people = setup(&app).await;
        let pat = user(&app, "pat", false, &["platform@web-app"]).await;
        let good = push(&app, "good").await;
        let bad = push(&app, "bad").await;
        // Both reach dev by themselves; dev runs the bad one now.
        assert_eq!(notify(&app, &people.ci, &good).await.json()["promotion"]["state"], "deployed");
        assert_eq!(notify(&app, &people.ci, &bad).await.json()["promotion"]["state"], "deployed");
        let waiting = id(&promote(&app, &people.dana, "staging", &bad).await);

        let uri = format!("/api/v1/apps/web-app/quarantines/{bad}");
        let reason = json!({ "reason": "CVE-2026-1234 in the base image" });
        // Only an admin or the application's platform engineer, never CI, and with a reason.
        for token in [&people.dana, &people.ci, &people.sam] {
            let response = call(&app, Method::PUT, &uri, token, reason.clone()).await;
            assert_status(&response, StatusCode::FORBIDDEN);
        }
        let response = call(&app, Method::PUT, &uri, &pat, json!({ "reason": "  " })).await;
        assert_status(&response, StatusCode::BAD_REQUEST);
        let response = call(&app, Method::PUT, "/api/v1/apps/web-app/quarantines/sha256:nope", &pat, reason.clone()).await;
        assert_status(&response, StatusCode::BAD_REQUEST);
        let response = call(&app, Method::PUT, &uri, &pat, reason.clone()).await;
        assert_status(&response, StatusCode::CREATED);
        let body = response.json();
        assert_eq!(body["created"], true);
        assert_eq!(body["cancelled_promotions"], json!([waiting]), "its open promotion is cancelled: {body}");
        assert_eq!(body["quarantine"]["by"], "pat");
        let again = call(&app, Method::PUT, &uri, &pat, json!({ "reason": "again" })).await;
        assert_status(&again, StatusCode::OK);
        assert_eq!(again.json()["created"], false);
        assert_eq!(again.json()["quarantine"]["reason"], "CVE-2026-1234 in the base image", "the first reason stays");

        // Promotions of it are refused; its cancelled promotion cannot be approved.
        let response = promote(&app, &people.dana, "staging", &bad).await;
        assert_status(&response, StatusCode::CONFLICT);
        assert!(error_message(&response).contains("quarantined"), "{}", response.text());
        let response = approve(&app, &people.sam, waiting).await;
        assert_status(&response, StatusCode::CONFLICT);
        // Admission denies it, whichever environment.
        let ask = |env: &'static str| {
            let uri = format!("/api/v1/admission?env={env}&image=acme%2Fweb-app%40{}", bad.replace(':', "%3A"));
            let token = people.dana.clone();
            let app = &app;
            async move { call(app, Method::GET, &uri, &token, Value::Null).await.json() }
        };
        let answer = ask("dev").await;
        assert_eq!(answer["allowed"], false, "{answer}");
        assert!(answer["reason"].as_str().unwrap_or_default().contains("quarantined"), "{answer}");
        // Pulls of it are refused, by digest and by tag, with a clear error; others are served.
        for reference in [bad.as_str(), "bad"] {
            let response = crate::support::get(&app, &format!("/v2/acme/web-app/manifests/{reference}")).await;
            crate::support::assert_error(&response, StatusCode::FORBIDDEN, "DENIED");
            assert!(crate::support::error_message(&response).contains("quarantined"), "{}", response.text());
        }
        let response = crate::support::get(&app, &format!("/v2/acme/web-app/manifests/{good}")).await;
        assert_status(&response, StatusCode::OK);
        // Where it runs is flagged: status and /metrics.
        let now = status(&app, &people.dana).await;
        assert_eq!(environment(&now, "dev")["quarantined"]["reason"], "CVE-2026-1234 in the base image", "{now}");
        assert!(environment(&now, "staging")["quarantined"].is_null());
        let metrics = app.send(Method::GET, "/metrics", &[], Body::empty()).await.text();
        assert!(metrics.contains(r#"gantry_environment_quarantined{application="web-app",environment="dev"} 1"#), "{metrics}");
        // A rollback never goes onto it, and takes dev off it.
        let rollback_uri = "/api/v1/apps/web-app/environments/dev/rollback";
        let response = call(&app, Method::POST, rollback_uri, &people.dana, json!({ "to": bad })).await;
        assert_status(&response, StatusCode::CONFLICT);
        let response = call(&app, Method::POST, rollback_uri, &people.dana, json!({ "reason": "quarantined" })).await;
        assert_status(&response, StatusCode::CREATED);
        assert_eq!(response.json()["digest"], good.as_str());
        let response = call(&app, Method::POST, rollback_uri, &people.dana, json!({ "to": bad })).await;
        assert_status(&response, StatusCode::CONFLICT);
        assert!(environment(&status(&app, &people.dana).await, "dev")["quarantined"].is_null());

        let listed = call(&app, Method::GET, "/api/v1/apps/web-app/quarantines", &people.dana, Value::Null).await;
        assert_status(&listed, StatusCode::OK);
        assert_eq!(listed.json()["quarantines"][0]["digest"], bad.as_str());

        // Lifting: the same people, with a reason; then everything works again.
        let lift = format!("{uri}/lift");
        let response = call(&app, Method::POST, &lift, &people.dana, json!({ "reason": "fixed" })).await;
        assert_status(&response, StatusCode::FORBIDDEN);
        let response = call(&app, Method::POST, &lift, &pat, json!({ "reason": "" })).await;
        assert_status(&response, StatusCode::BAD_REQUEST);
        let response = call(&app, Method::POST, &lift, &pat, json!({ "reason": "false positive" })).await;
        assert_status(&response, StatusCode::OK);
        assert_eq!(response.json()["reason"], "CVE-2026-1234 in the base image");
        let response = call(&app, Method::POST, &lift, &pat, json!({ "reason": "twice" })).await;
        assert_status(&response, StatusCode::NOT_FOUND);
        let response = crate::support::get(&app, &format!("/v2/acme/web-app/manifests/{bad}")).await;
        assert_status(&response, StatusCode::OK);
        let response = promote(&app, &people.dana, "staging", &bad).await;
        assert_status(&response, StatusCode::CREATED);
        assert_eq!(response.json()["state"], "waiting", "promoted again, waiting on its approval");

        let actions = audit_actions(&app).await;
        for (action, actor) in [("quarantine", "pat"), ("cancel", "pat"), ("lift-quarantine", "pat")] {
            assert!(actions.contains(&(action.to_owned(), actor.to_owned())), "{action} by {actor} in {actions:?}");
        }
    }

    async fn quarantine_may_keep_serving_pulls_and_still_refuse_deployments(app = registry::RegistryConfig { quarantine_denies_pulls: false, ..registry::RegistryConfig::default() }) {
        let people = setup(&app).await;
        let bad = push(&app, "bad").await;
        let response = admin(&app, Method::PUT, &format!("/api/v1/apps/web-app/quarantines/{bad}"), json!({ "reason": "investigating" })).await;
        assert_status(&response, StatusCode::CREATED);
        let response = crate::support::get(&app, &format!("/v2/acme/web-app/manifests/{bad}")).await;
        assert_status(&response, StatusCode::OK);
        // A build of it is recorded but not promoted anywhere.
        let notified = notify(&app, &people.ci, &bad).await;
        assert_status(&notified, StatusCode::CREATED);
        assert!(notified.json()["promotion"].is_null(), "{}", notified.json());
        let response = promote(&app, &people.dana, "dev", &bad).await;
        assert_status(&response, StatusCode::CONFLICT);
    }

    async fn promoted_artifacts_and_their_tags_cannot_be_deleted(app = mutable_tags_config()) {
        let people = setup(&app).await;
        let promoted = push(&app, "keep").await;
        let unpromoted = push(&app, "drop").await;
        notify(&app, &people.ci, &promoted).await;
        for uri in [format!("/v2/acme/web-app/manifests/{promoted}"), "/v2/acme/web-app/manifests/keep".to_owned()] {
            let response = app.admin(Method::DELETE, &uri, &[], Body::empty()).await;
            assert_status(&response, StatusCode::METHOD_NOT_ALLOWED);
            assert_eq!(response.json()["errors"][0]["code"], "DENIED");
            let message = response.json()["errors"][0]["message"].as_str().unwrap_or_default().to_owned();
            assert!(message.contains("promotion") && message.contains("web-app/dev"), "{message}");
        }
        let response = app.admin(Method::GET, &format!("/v2/acme/web-app/manifests/{promoted}"), &[], Body::empty()).await;
        assert_status(&response, StatusCode::OK);
        // An artifact nothing promoted can go.
        let response = app.admin(Method::DELETE, &format!("/v2/acme/web-app/manifests/{unpromoted}"), &[], Body::empty()).await;
        assert_status(&response, StatusCode::ACCEPTED);
    }

    async fn soak_time_opens_the_gate_on_the_periodic_re_evaluation(app) {
        apply(&app, r#"kind: Pipeline
name: soaked
stages:
  - name: dev
    auto: true
  - name: staging
    auto: true
    gate: { soak: 6s }
---
kind: Application
name: web-app
type: container
repository: acme/web-app
pipeline: soaked
environments:
  dev: { target: { record: {} } }
  staging: { target: { record: {} } }
"#).await;
        let ci = user(&app, "ci-bot", true, &["developer"]).await;
        // CI reads no promotions: a person looks.
        let reader = user(&app, "rita", false, &["viewer"]).await;
        let digest = push(&app, "soak").await;
        // Deployed to dev, then auto-promoted into staging, where it must soak first.
        let response = notify(&app, &ci, &digest).await;
        assert_eq!(response.json()["promotion"]["state"], "deployed");
        // From here the engine's clock stands still until the test moves it.
        let clock = engine::Clock::manual(store::now_millis());
        let engine = app.state.engine.clone().with_clock(clock.clone());
        let listed = call(&app, Method::GET, "/api/v1/promotions?environment=staging", &reader, Value::Null).await;
        let staging = listed.json()["promotions"][0].clone();
        assert_eq!(staging["state"], "waiting", "{staging}");
        assert_eq!(staging["auto"], true);
        assert_eq!(condition(&staging, "soak")["met"], false);
        assert!(condition(&staging, "soak")["reason"].as_str().unwrap_or_default().contains("of the 6s"), "{staging}");
        // Nothing opens it before its time.
        assert_eq!(engine.tick().await.expect("tick"), 0);
        clock.advance(std::time::Duration::from_millis(6200));
        assert_eq!(engine.tick().await.expect("tick"), 1);
        let id = staging["id"].as_i64().expect("id");
        let response = call(&app, Method::GET, &format!("/api/v1/promotions/{id}"), &reader, Value::Null).await;
        assert_eq!(response.json()["state"], "deployed", "{}", response.json());
        assert_eq!(engine.tick().await.expect("tick"), 0);
    }

    async fn builds_checks_holds_and_deployments_are_recorded_at_the_engines_clock(app) {
        apply(&app, PIPELINE).await;
        let digest = push(&app, "clocked").await;
        let parsed: domain::Digest = digest.parse().expect("digest");
        // A fixed instant long before the test ran: every record made through this
        // engine carries it, not the machine's time.
        let instant = 1_700_000_000_000;
        let engine = app.state.engine.clone().with_clock(engine::Clock::manual(instant));
        let admin = engine::Actor { name: "admin".into(), admin: true, ci: false, user: None, scope: None };
        let notified = engine
            .notify(&admin, "web-app", &parsed, store::Provenance::default())
            .await
            .expect("notify");
        assert_eq!(notified.build.notified_at, instant);
        let dev = notified.promotion.expect("dev is auto");
        let deployment = app
            .store
            .deployments()
            .deployment(dev.deployment_id.expect("deployed"))
            .await
            .expect("store answers")
            .expect("the deployment");
        assert_eq!(deployment.started_at, instant);
        assert_eq!(deployment.finished_at, Some(instant));
        let check = engine
            .report_check(&admin, &engine::CheckRequest { application: "web-app", digest: &parsed, name: "unit", passed: true, url: None, report: None })
            .await
            .expect("report");
        assert_eq!(check.reported_at, instant);
        let hold = engine.hold(&admin, "web-app", "staging", "release freeze").await.expect("hold");
        assert_eq!(hold.at, instant);
        engine.release(&admin, "web-app", "staging").await.expect("release");
        let audit = app.store.audit().entries(0, 1000).await.expect("audit log");
        let stamped: Vec<&str> = audit.iter().filter(|entry| entry.at == instant).map(|entry| entry.action.as_str()).collect();
        for action in ["notify", "check", "hold", "release", "promote", "deploy"] {
            assert!(stamped.contains(&action), "{action} not at the engine's time: {stamped:?}");
        }
    }

    async fn the_engine_refuses_an_idempotency_key_out_of_bounds_whoever_calls(app) {
        apply(&app, PIPELINE).await;
        let digest: domain::Digest = push(&app, "keyed").await.parse().expect("digest");
        let admin = engine::Actor { name: "admin".into(), admin: true, ci: false, user: None, scope: None };
        for key in [String::new(), "k".repeat(256)] {
            let request = engine::PromoteRequest {
                application: "web-app",
                environment: "dev",
                digest: &digest,
                config: None,
                override_reason: None,
                idempotency_key: Some(&key),
                redeploy: false,
            };
            match app.state.engine.promote(&admin, &request).await {
                Err(engine::EngineError::Invalid(message)) => assert!(message.contains("1 to 255"), "{message}"),
                other => panic!("a key of {} bytes was not refused: {other:?}", key.len()),
            }
        }
        let listed = app.store.promotions().list(None, None, None, None, 10).await.expect("store answers");
        assert!(listed.is_empty(), "a refused promotion was recorded: {listed:?}");
    }

    async fn dora_metrics_and_the_openapi_document_cover_promotions(app) {
        let people = setup(&app).await;
        let digest = push(&app, "dora").await;
        notify(&app, &people.ci, &digest).await;
        let staging = id(&promote(&app, &people.dana, "staging", &digest).await);
        approve(&app, &people.sam, staging).await;
        check(&app, &people.ci, &digest, "trivy", "passed", Some(TRIVY_CLEAN)).await;
        let prod = id(&promote(&app, &people.dana, "prod", &digest).await);
        approve(&app, &people.sam, prod).await;
        approve(&app, &people.cleo, prod).await;
        let response = call(&app, Method::GET, "/api/v1/metrics/dora?days=7", &people.dana, Value::Null).await;
        assert_status(&response, StatusCode::OK);
        let body = response.json();
        assert_eq!(body["overall"]["deployments"], 1, "{body}");
        assert_eq!(body["applications"]["web-app"]["deployments"], 1);
        // Committed 2026-11-20T10:00Z: the lead time is at least the time since then.
        assert!(body["overall"]["lead_time_median_seconds"].as_i64().unwrap_or(0) > 0, "{body}");
        assert_eq!(body["overall"]["change_failure_rate"], 0.0);
        let response = app.send(Method::GET, "/metrics", &[], Body::empty()).await;
        let text = response.text();
        assert!(text.contains(r#"gantry_deployments{application="web-app",environment="prod",reason="promotion",state="deployed"} 1"#), "{text}");
        assert!(text.contains(r#"gantry_promotions{state="deployed"} 3"#), "{text}");
        let response = call(&app, Method::GET, "/api/v1/metrics/dora?days=0", &people.dana, Value::Null).await;
        assert_status(&response, StatusCode::BAD_REQUEST);
        let response = app.send(Method::GET, "/api/v1/openapi.json", &[], Body::empty()).await;
        let paths = response.json()["paths"].clone();
        for path in ["/api/v1/builds", "/api/v1/checks", "/api/v1/promotions", "/api/v1/promotions/{id}/approve",
                     "/api/v1/apps/{app}/environments/{env}/rollback", "/api/v1/metrics/dora", "/api/v1/users"] {
            assert!(paths.get(path).is_some(), "{path} missing from the OpenAPI document");
        }
    }

    async fn fifty_concurrent_promoters_and_approvers_lose_nothing_and_apply_nothing_twice(app) {
        let app = std::sync::Arc::new(app);
        apply(&app, PIPELINE).await;
        let dana = user(&app, "dana", false, &["developer"]).await;
        let ci = user(&app, "ci-bot", true, &["developer"]).await;
        let mut digests = Vec::new();
        for n in 0..5 {
            let digest = push(&app, &format!("c{n}")).await;
            notify(&app, &ci, &digest).await;
            digests.push(digest);
        }
        let mut staff = Vec::new();
        for n in 0..25 {
            staff.push(user(&app, &format!("staff-{n}"), false, &["staff"]).await);
        }
        let first = id(&promote(&app, &dana, "staging", &digests[0]).await);
        let before = audit_actions(&app).await.len();
        // 25 promotions of the five digests and 25 approvals of the first, all at once.
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..50usize {
            let app = app.clone();
            let dana = dana.clone();
            let digest = digests[n % 5].clone();
            let approver = staff[n / 2].clone();
            tasks.spawn(async move {
                if n % 2 == 0 {
                    ("promote", promote(&app, &dana, "staging", &digest).await)
                } else {
                    ("approve", approve(&app, &approver, first).await)
                }
            });
        }
        let mut acknowledged_approvals = 0;
        let mut promotion_ids = std::collections::BTreeSet::new();
        while let Some(joined) = tasks.join_next().await {
            let (kind, response) = joined.expect("task");
            match (kind, response.status) {
                ("promote", StatusCode::CREATED | StatusCode::OK) => {
                    promotion_ids.insert(id(&response));
                }
                ("approve", StatusCode::OK) => acknowledged_approvals += 1,
                // Approving after the gate opened (deployed or superseded) is a conflict.
                ("approve", StatusCode::CONFLICT) => {}
                (kind, status) => panic!("{kind}: {status} {}", response.text()),
            }
        }
        // Every acknowledged approval is recorded exactly once, on the promotion and in the audit log.
        let response = call(&app, Method::GET, &format!("/api/v1/promotions/{first}"), &dana, Value::Null).await;
        let decisions = response.json()["decisions"].as_array().expect("decisions").len();
        assert_eq!(decisions, acknowledged_approvals);
        assert!(acknowledged_approvals >= 1);
        let actions = audit_actions(&app).await;
        let new = &actions[before..];
        assert_eq!(new.iter().filter(|(a, _)| a == "approve").count(), acknowledged_approvals);
        // Every acknowledged promotion exists; each was requested once.
        let response = call(&app, Method::GET, "/api/v1/promotions?application=web-app&environment=staging&limit=500", &dana, Value::Null).await;
        let listed: Vec<Value> = response.json()["promotions"].as_array().expect("list").clone();
        for id in &promotion_ids {
            assert!(listed.iter().any(|p| p["id"] == *id), "promotion {id} was acknowledged but is missing");
        }
        let requested = new.iter().filter(|(a, _)| a == "promote").count();
        assert_eq!(requested, listed.len() - 1, "one promote entry per new promotion");
        // Queued promotions deploy in tasks of their own: wait for the last to finish.
        let mut deployments = Vec::new();
        for _ in 0..100 {
            let history = call(&app, Method::GET, "/api/v1/apps/web-app/history?environment=staging&limit=500", &dana, Value::Null).await;
            deployments = history.json()["deployments"].as_array().expect("list").clone();
            if deployments.iter().all(|d| d["state"] != "deploying") {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let response = call(&app, Method::GET, "/api/v1/promotions?application=web-app&environment=staging&limit=500", &dana, Value::Null).await;
        let listed: Vec<Value> = response.json()["promotions"].as_array().expect("list").clone();
        // No deployment ran twice: one deployment per deployed promotion, none in flight.
        let deployed = listed.iter().filter(|p| p["state"] == "deployed").count();
        assert_eq!(deployments.len(), deployed);
        let mut by_promotion: Vec<i64> = deployments.iter().filter_map(|d| d["promotion_id"].as_i64()).collect();
        by_promotion.sort();
        by_promotion.dedup();
        assert_eq!(by_promotion.len(), deployments.len(), "a promotion deployed twice");
        assert!(deployments.iter().all(|d| d["state"] == "deployed"));
        // At most one open promotion per digest remains.
        let open: Vec<&Value> = listed.iter().filter(|p| p["state"] == "waiting").collect();
        let mut open_digests: Vec<&str> = open.iter().filter_map(|p| p["digest"].as_str()).collect();
        let count = open_digests.len();
        open_digests.sort();
        open_digests.dedup();
        assert_eq!(open_digests.len(), count, "two open promotions of one digest");
        let response = app.admin(Method::GET, "/api/v1/audit/verify", &[], Body::empty()).await;
        assert_eq!(response.json()["intact"], true);
    }
}
