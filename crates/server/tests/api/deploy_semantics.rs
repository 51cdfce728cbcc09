//! What an environment should run and how often it is deployed: identical promotions
//! make one deployment, a rollback names what it rolls back from and never lands on
//! the digest a rollback left, the parameters deploy scripts read answer the
//! deployment under way, approvals count only through roles held for the
//! environment, identities compare without case, and a CI token reads only its own.

use axum::body::Body;
use http::{Method, StatusCode};
use serde_json::{Value, json};
use testkit::{TestApp, TestResponse};

use crate::support::{apply, assert_status, push_image, user_with_roles as user};

/// `dev` takes any promotion without a gate; `prod` wants one staff and one client
/// approval. `web-app` deploys to dev with `sh -c SCRIPT FILE`, which appends a line
/// per run to FILE (waiting first while `FILE.hold` exists) and records prod.
fn resources(runs: &std::path::Path) -> String {
    format!(
        r#"kind: Pipeline
name: two-step
stages:
  - name: dev
  - name: prod
    gate:
      approvals: [{{ role: staff, count: 1 }}, {{ role: client, count: 1 }}]
---
kind: Application
name: web-app
type: container
repository: acme/web-app
pipeline: two-step
environments:
  dev:
    target:
      command:
        program: sh
        args: ["-c", "while [ -f \"$0.hold\" ]; do sleep 0.02; done; echo \"$GANTRY_ENV $GANTRY_DIGEST $GANTRY_REASON\" >> \"$0\"", "{runs}"]
        timeout: 30s
  prod: {{ target: {{ record: {{}} }} }}
"#,
        runs = runs.display()
    )
}

/// `METHOD URI` with `token` as Bearer and `body` as JSON (none when null), plus
/// `extra` headers.
async fn call(
    app: &TestApp,
    method: Method,
    uri: &str,
    token: &str,
    body: Value,
    extra: &[(&str, &str)],
) -> TestResponse {
    let auth = format!("Bearer {token}");
    let mut headers = vec![("authorization", auth.as_str())];
    headers.extend_from_slice(extra);
    let body = if body.is_null() {
        Body::empty()
    } else {
        headers.push(("content-type", "application/json"));
        Body::from(body.to_string())
    };
    app.send(method, uri, &headers, body).await
}

async fn promote(
    app: &TestApp,
    token: &str,
    env: &str,
    digest: &str,
    redeploy: bool,
) -> TestResponse {
    call(
        app,
        Method::POST,
        "/api/v1/promotions",
        token,
        json!({ "application": "web-app", "environment": env, "digest": digest, "redeploy": redeploy }),
        &[],
    )
    .await
}

async fn rollback(app: &TestApp, token: &str, body: Value, key: Option<&str>) -> TestResponse {
    let headers: Vec<(&str, &str)> = key
        .map(|key| ("idempotency-key", key))
        .into_iter()
        .collect();
    call(
        app,
        Method::POST,
        "/api/v1/apps/web-app/environments/dev/rollback",
        token,
        body,
        &headers,
    )
    .await
}

/// Every deployment of `env`, oldest first.
async fn deployments(app: &TestApp, env: &str) -> Vec<Value> {
    let response = app
        .admin(
            Method::GET,
            &format!("/api/v1/apps/web-app/history?environment={env}&limit=500"),
            &[],
            Body::empty(),
        )
        .await;
    assert_status(&response, StatusCode::OK);
    let mut list = response.json()["deployments"]
        .as_array()
        .expect("deployments")
        .clone();
    list.reverse();
    list
}

/// The audit log's entries as (action, payload).
async fn audit(app: &TestApp) -> Vec<(String, Value)> {
    let response = app
        .admin(Method::GET, "/api/v1/audit/export", &[], Body::empty())
        .await;
    assert_status(&response, StatusCode::OK);
    response
        .text()
        .lines()
        .map(|line| {
            let entry: Value = serde_json::from_str(line).expect("a JSON line");
            // The payload is exported as the canonical JSON text the chain hashes.
            let payload = match &entry["payload"] {
                Value::String(text) => serde_json::from_str(text).expect("a JSON payload"),
                other => other.clone(),
            };
            (
                entry["action"].as_str().unwrap_or_default().to_owned(),
                payload,
            )
        })
        .collect()
}

/// The lines the command target appended, one per run.
fn runs(file: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

async fn push(app: &TestApp, tag: &str) -> String {
    push_image(app, "acme/web-app", tag, tag)
        .await
        .manifest
        .digest
}

registry_tests! {
    async fn fifty_identical_promotions_deploy_once_and_only_an_explicit_redeploy_deploys_again(app) {
        let dir = tempfile::tempdir().expect("temporary directory");
        let file = dir.path().join("runs");
        apply(&app, resources(&file)).await;
        let dana = user(&app, "dana", false, &["developer@web-app"]).await;
        let digest = push(&app, "sha-abc1234").await;
        let before = audit(&app).await.len();
        let app = std::sync::Arc::new(app);
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..50 {
            let (app, dana, digest) = (app.clone(), dana.clone(), digest.clone());
            tasks.spawn(async move { promote(&app, &dana, "dev", &digest, false).await });
        }
        let mut ids = std::collections::BTreeSet::new();
        let mut created = 0;
        while let Some(joined) = tasks.join_next().await {
            let response = joined.expect("task");
            match response.status {
                StatusCode::CREATED => created += 1,
                StatusCode::OK => {}
                status => panic!("{status}: {}", response.text()),
            }
            ids.insert(response.json()["id"].as_i64().expect("an id"));
        }
        // One promotion answered all fifty; one deployment; the program ran once.
        assert_eq!(created, 1);
        assert_eq!(ids.len(), 1, "{ids:?}");
        let deployed = deployments(&app, "dev").await;
        assert_eq!(deployed.len(), 1, "{deployed:#?}");
        assert_eq!(deployed[0]["state"], "deployed");
        assert_eq!(runs(&file), vec![format!("dev {digest} promotion")]);
        // The audit log has exactly what was acknowledged: one promote, one deployment
        // started and finished, and its two attestations signed and stored beside it.
        let new = audit(&app).await.split_off(before);
        let actions: Vec<&str> = new.iter().map(|(action, _)| action.as_str()).collect();
        assert_eq!(
            actions,
            ["promote", "deploy", "deploy", "attest", "attest", "push", "push"],
            "{new:#?}"
        );

        // One arriving after the deployment finished gets the same answer: the
        // environment runs the digest.
        let late = promote(&app, &dana, "dev", &digest, false).await;
        assert_status(&late, StatusCode::OK);
        assert_eq!(late.json()["id"].as_i64(), ids.first().copied());
        assert_eq!(deployments(&app, "dev").await.len(), 1);
        assert_eq!(runs(&file).len(), 1);

        // Asking for a redeploy deploys again, audited as one.
        let again = promote(&app, &dana, "dev", &digest, true).await;
        assert_status(&again, StatusCode::CREATED);
        assert_ne!(again.json()["id"].as_i64(), ids.first().copied());
        assert_eq!(again.json()["state"], "deployed");
        assert_eq!(runs(&file).len(), 2);
        let promote_entry = audit(&app).await.into_iter().rev().find(|(action, _)| action == "promote").expect("a promote entry");
        assert_eq!(promote_entry.1["redeploy"], true, "{promote_entry:?}");
    }

    async fn rollbacks_name_what_they_leave_run_once_when_concurrent_and_never_return_to_it(app) {
        let dir = tempfile::tempdir().expect("temporary directory");
        let file = dir.path().join("runs");
        apply(&app, resources(&file)).await;
        let dana = user(&app, "dana", false, &["developer@web-app"]).await;
        let good = push(&app, "101").await;
        let bad = push(&app, "102").await;
        assert_status(&promote(&app, &dana, "dev", &good, false).await, StatusCode::CREATED);
        assert_status(&promote(&app, &dana, "dev", &bad, false).await, StatusCode::CREATED);
        assert_eq!(runs(&file).len(), 2);

        // Twenty people roll back from the bad digest at once: one rollback happens.
        let app = std::sync::Arc::new(app);
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..20 {
            let (app, dana, bad) = (app.clone(), dana.clone(), bad.clone());
            tasks.spawn(async move { rollback(&app, &dana, json!({ "from": bad, "reason": "errors" }), None).await });
        }
        let mut statuses = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            let response = joined.expect("task");
            assert!(
                matches!(response.status, StatusCode::CREATED | StatusCode::CONFLICT),
                "{}: {}",
                response.status,
                response.text()
            );
            statuses.push(response.status);
        }
        assert_eq!(statuses.iter().filter(|s| **s == StatusCode::CREATED).count(), 1, "{statuses:?}");
        let history = deployments(&app, "dev").await;
        assert_eq!(history.len(), 3, "{history:#?}");
        assert_eq!(history[2]["reason"], "rollback");
        assert_eq!(history[2]["digest"], good);
        assert_eq!(runs(&file).last().map(String::as_str), Some(format!("dev {good} rollback").as_str()));
        let rollbacks = audit(&app).await.into_iter().filter(|(action, _)| action == "rollback").count();
        assert_eq!(rollbacks, 1);

        // From what it no longer runs: refused, nothing changes.
        let moved = rollback(&app, &dana, json!({ "from": bad }), None).await;
        assert_status(&moved, StatusCode::CONFLICT);
        assert!(moved.text().contains("moved"), "{}", moved.text());
        // From what it runs, without a target: the only other digest is the one a
        // rollback left, which is never returned to by default.
        let refused = rollback(&app, &dana, json!({ "from": good }), None).await;
        assert_status(&refused, StatusCode::CONFLICT);
        assert!(refused.text().contains("rollback did not leave"), "{}", refused.text());
        assert_eq!(deployments(&app, "dev").await.len(), 3);
        assert_eq!(runs(&file).len(), 3);

        // Naming it explicitly, with an idempotency key: a retry answers the same
        // deployment, the key with another request is refused.
        let body = json!({ "from": good, "to": bad, "reason": "the fix was in the config" });
        let first = rollback(&app, &dana, body.clone(), Some("rb-1")).await;
        assert_status(&first, StatusCode::CREATED);
        let retried = rollback(&app, &dana, body, Some("rb-1")).await;
        assert_status(&retried, StatusCode::OK);
        assert_eq!(retried.json()["id"], first.json()["id"]);
        let reused = rollback(&app, &dana, json!({ "from": bad, "reason": "other" }), Some("rb-1")).await;
        assert_status(&reused, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(reused.json()["code"], "idempotency_key_reused");
        assert_eq!(deployments(&app, "dev").await.len(), 4);
        assert_eq!(runs(&file).len(), 4);
    }

    async fn the_parameters_answer_the_deployment_under_way_and_keep_the_last_successful_beside_it(app) {
        let dir = tempfile::tempdir().expect("temporary directory");
        let file = dir.path().join("runs");
        let hold = dir.path().join("runs.hold");
        apply(&app, resources(&file)).await;
        let dana = user(&app, "dana", false, &["developer@web-app"]).await;
        let app = std::sync::Arc::new(app);
        let params = |app: std::sync::Arc<TestApp>| async move {
            let response = app
                .admin(Method::GET, "/api/v1/apps/web-app/environments/dev", &[], Body::empty())
                .await;
            assert_status(&response, StatusCode::OK);
            response.json()
        };
        let image = |app: std::sync::Arc<TestApp>| async move {
            let response = app.admin(Method::GET, "/params/web-app/dev/image", &[], Body::empty()).await;
            (response.status, response.text().trim_end().to_owned())
        };
        // Waits (bounded) until dev has a deployment under way; the parameters then.
        let under_way = |app: std::sync::Arc<TestApp>| async move {
            for _ in 0..400 {
                let now = params(app.clone()).await;
                if now["deployment"]["state"] == "deploying" {
                    return now;
                }
                tokio::time::sleep(std::time::Duration::from_millis(25)).await;
            }
            panic!("no deployment got under way");
        };

        // The first deployment, held open: the parameters name it at once.
        let first = push(&app, "sha-1111111").await;
        std::fs::write(&hold, "").expect("hold the program");
        let running = {
            let (app, dana, first) = (app.clone(), dana.clone(), first.clone());
            tokio::spawn(async move { promote(&app, &dana, "dev", &first, false).await })
        };
        let during = under_way(app.clone()).await;
        assert_eq!(during["digest"], first, "{during:#}");
        assert_eq!(during["tag"], "sha-1111111");
        assert_eq!(during["last_successful"], Value::Null);
        assert_eq!(image(app.clone()).await, (StatusCode::OK, format!("localhost/acme/web-app@{first}")));
        std::fs::remove_file(&hold).expect("release the program");
        assert_eq!(running.await.expect("task").json()["state"], "deployed");

        let second = push(&app, "sha-2222222").await;
        assert_status(&promote(&app, &dana, "dev", &second, false).await, StatusCode::CREATED);
        let settled = params(app.clone()).await;
        assert_eq!(settled["digest"], second);
        assert_eq!(settled["deployment"]["state"], "deployed");
        assert_eq!(settled["last_successful"]["digest"], second);

        // A rollback, held open: the parameters name what it rolls back to, and the
        // status shows it under way beside what still runs.
        std::fs::write(&hold, "").expect("hold the program");
        let rolling = {
            let (app, dana, second) = (app.clone(), dana.clone(), second.clone());
            tokio::spawn(async move { rollback(&app, &dana, json!({ "from": second }), None).await })
        };
        let during = under_way(app.clone()).await;
        assert_eq!(during["digest"], first, "{during:#}");
        assert_eq!(during["deployment"]["reason"], "rollback");
        assert_eq!(during["last_successful"]["digest"], second);
        assert_eq!(image(app.clone()).await.1, format!("localhost/acme/web-app@{first}"));
        let status = call(&app, Method::GET, "/api/v1/apps/web-app", &dana, Value::Null, &[]).await;
        let dev = &status.json()["environments"][0];
        assert_eq!(dev["deploying"]["digest"], first, "{dev:#}");
        assert_eq!(dev["current"]["digest"], second);
        std::fs::remove_file(&hold).expect("release the program");
        assert_eq!(rolling.await.expect("task").json()["state"], "deployed");
        assert_eq!(params(app.clone()).await["digest"], first);
    }

    async fn approvals_count_only_through_a_role_held_for_the_environment(app) {
        let dir = tempfile::tempdir().expect("temporary directory");
        apply(&app, resources(&dir.path().join("runs"))).await;
        let dana = user(&app, "dana", false, &["developer@web-app"]).await;
        let sam = user(&app, "sam", false, &["staff@web-app"]).await;
        // Every way to hold `client`, beside `staff` for prod (so each may approve
        // prod): only those covering prod fill prod's client slot.
        let cases = [
            ("client@web-app/dev", false),
            ("client@*/dev", false),
            ("client@web-app/prod", true),
            ("client@*/prod", true),
            ("client@web-app", true),
            ("client", true),
        ];
        for (n, (grant, counts)) in cases.into_iter().enumerate() {
            let name = format!("pat-{n}");
            let pat = user(&app, &name, false, &["staff@web-app/prod", grant]).await;
            let digest = push(&app, &format!("case-{n}")).await;
            assert_status(&promote(&app, &dana, "dev", &digest, false).await, StatusCode::CREATED);
            let response = promote(&app, &dana, "prod", &digest, false).await;
            assert_status(&response, StatusCode::CREATED);
            let id = response.json()["id"].as_i64().expect("an id");
            let approve = |token: String| {
                let app = &app;
                async move {
                    call(app, Method::POST, &format!("/api/v1/promotions/{id}/approve"), &token, json!({}), &[]).await
                }
            };
            assert_status(&approve(pat.clone()).await, StatusCode::OK);
            let after = approve(sam.clone()).await;
            assert_status(&after, StatusCode::OK);
            let state = after.json()["state"].clone();
            assert_eq!(state == "deployed", counts, "{grant}: {}", after.text());
        }
    }

    async fn identities_compare_without_case_and_user_names_have_one_grammar(app) {
        let dir = tempfile::tempdir().expect("temporary directory");
        apply(&app, resources(&dir.path().join("runs"))).await;
        let ci = user(&app, "ci-bot", true, &["developer@web-app"]).await;
        let dana = user(&app, "dana", false, &["developer@web-app"]).await;
        let staff2 = user(&app, "staff2", false, &["staff@web-app"]).await;
        let digest = push(&app, "sha-0c0ffee").await;
        let notified = call(
            &app,
            Method::POST,
            "/api/v1/builds",
            &ci,
            json!({ "application": "web-app", "digest": digest, "triggered_by": "STAFF2" }),
            &[],
        )
        .await;
        assert_status(&notified, StatusCode::CREATED);
        assert_status(&promote(&app, &dana, "dev", &digest, false).await, StatusCode::CREATED);
        let id = promote(&app, &dana, "prod", &digest, false).await.json()["id"].as_i64().expect("an id");
        let refused = call(&app, Method::POST, &format!("/api/v1/promotions/{id}/approve"), &staff2, json!({}), &[]).await;
        assert_status(&refused, StatusCode::FORBIDDEN);
        assert!(refused.text().contains("own build"), "{}", refused.text());

        for (name, status) in [("Staff2", StatusCode::CONFLICT), (".", StatusCode::BAD_REQUEST), ("..", StatusCode::BAD_REQUEST), ("-x", StatusCode::BAD_REQUEST)] {
            let response = app
                .admin(Method::POST, "/api/v1/users", &[("content-type", "application/json")], json!({ "name": name }).to_string())
                .await;
            assert_status(&response, status);
        }
    }

    async fn a_static_ci_token_reads_only_its_own_applications(app) {
        let dir = tempfile::tempdir().expect("temporary directory");
        apply(&app, resources(&dir.path().join("runs"))).await;
        apply(&app, "kind: Application\nname: other\ntype: container\nrepository: acme/other\npipeline: two-step\nenvironments:\n  dev: { target: { record: {} } }\n  prod: { target: { record: {} } }\n").await;
        let ci = user(&app, "ci-bot", true, &["developer@web-app"]).await;
        let own = push(&app, "v1").await;
        let other = push_image(&app, "acme/other", "v1", "other").await.manifest.digest;
        for uri in ["/api/v1/apps", "/api/v1/apps/other", "/api/v1/promotions", "/api/v1/apps/web-app/environments/dev", "/params/other/dev/image"] {
            let response = call(&app, Method::GET, uri, &ci, Value::Null, &[]).await;
            assert_status(&response, StatusCode::FORBIDDEN);
        }
        let mine = call(&app, Method::GET, &format!("/v2/acme/web-app/manifests/{own}"), &ci, Value::Null, &[]).await;
        assert_status(&mine, StatusCode::OK);
        let theirs = call(&app, Method::GET, &format!("/v2/acme/other/manifests/{other}"), &ci, Value::Null, &[]).await;
        assert_status(&theirs, StatusCode::FORBIDDEN);
    }

    async fn apply_refuses_a_release_tier_repository_and_a_repository_another_application_declares(app) {
        let dir = tempfile::tempdir().expect("temporary directory");
        apply(&app, resources(&dir.path().join("runs"))).await;
        let before = audit(&app).await.len();
        for (yaml, expected) in [
            ("kind: Application\nname: sneaky\ntype: container\nrepository: release/acme/web-app\npipeline: two-step\nenvironments:\n  dev: { target: { record: {} } }\n  prod: { target: { record: {} } }\n", "inside `release/`"),
            ("kind: Application\nname: twin\ntype: container\nrepository: acme/web-app\npipeline: two-step\nenvironments:\n  dev: { target: { record: {} } }\n  prod: { target: { record: {} } }\n", "already the repository of application `web-app`"),
            ("kind: Application\nname: one\ntype: container\nrepository: acme/shared\npipeline: two-step\nenvironments:\n  dev: { target: { record: {} } }\n  prod: { target: { record: {} } }\n---\nkind: Application\nname: two\ntype: container\nrepository: acme/shared\npipeline: two-step\nenvironments:\n  dev: { target: { record: {} } }\n  prod: { target: { record: {} } }\n", "already the repository of application `one`"),
        ] {
            let response = app
                .admin(Method::POST, "/api/v1/apply", &[("content-type", "application/yaml")], yaml)
                .await;
            assert_status(&response, StatusCode::BAD_REQUEST);
            assert!(response.text().contains(expected), "{}", response.text());
        }
        assert_eq!(audit(&app).await.len(), before, "a refused apply changes nothing");
    }
}
