//! The `webhook` target: the payload (app, env, digest, image, config, deployment id,
//! callback URL and one-time token) is POSTed signed with HMAC-SHA256; the deployment
//! ends with the receiver's callback — success or failure — or at the timeout; the
//! callback is accepted once, only with its token; a receiver answering 5xx is retried.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::{Value, json};
use testkit::{Backend, TestApp};

use crate::support::{apply, assert_status, push_image};

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Delivery {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Delivery {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("the payload is JSON")
    }
}

/// A receiver on loopback answering each delivery with the next status of a script
/// (the last one repeats), keeping what it got.
struct Receiver {
    url: String,
    deliveries: Arc<Mutex<Vec<Delivery>>>,
}

impl Receiver {
    fn start(statuses: &[u16]) -> Receiver {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/deploy", listener.local_addr().expect("address"));
        let deliveries = Arc::new(Mutex::new(Vec::new()));
        let kept = deliveries.clone();
        let statuses = statuses.to_vec();
        std::thread::spawn(move || {
            use std::io::{BufRead, BufReader, Read, Write};
            for (n, stream) in listener.incoming().enumerate() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut headers = Vec::new();
                let mut line = String::new();
                let _ = reader.read_line(&mut line); // request line
                loop {
                    line.clear();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                        break;
                    }
                    if let Some((name, value)) = line.trim_end().split_once(':') {
                        headers.push((name.trim().to_owned(), value.trim().to_owned()));
                    }
                }
                let length = headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, v)| v.parse::<usize>().ok())
                    .unwrap_or(0);
                let mut body = vec![0u8; length];
                let _ = reader.read_exact(&mut body);
                kept.lock()
                    .expect("not poisoned")
                    .push(Delivery { headers, body });
                let status = statuses.get(n).or(statuses.last()).copied().unwrap_or(202);
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} Status\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
            }
        });
        Receiver { url, deliveries }
    }

    fn deliveries(&self) -> Vec<Delivery> {
        self.deliveries.lock().expect("not poisoned").clone()
    }

    /// Waits for the `n`th delivery.
    async fn wait_for(&self, n: usize) -> Delivery {
        for _ in 0..200 {
            if let Some(delivery) = self.deliveries().get(n - 1) {
                return delivery.clone();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no delivery {n} arrived");
    }
}

const SECRET: &str = "whsec-test-0123456789";

async fn app(backend: Backend, secrets: &std::path::Path) -> TestApp {
    let access = server::AccessConfig {
        outbound: Arc::new(outbound::Policy::parse(&["127.0.0.1".to_owned()]).expect("valid")),
        ..server::AccessConfig::default()
    };
    let jobs = engine::JobSettings {
        retry_base: Duration::from_millis(100),
        retry_max: Duration::from_millis(200),
        poll: Duration::from_millis(100),
        ..engine::JobSettings::default()
    };
    let secrets = engine::Secrets::new(Some(secrets.to_owned()));
    TestApp::spawn_configured(
        backend,
        registry::RegistryConfig::default(),
        access,
        |state| {
            state
                .with_deploy(jobs, engine::Deployers::default())
                .with_webhooks(secrets, "https://gantry.example.com/")
        },
    )
    .await
}

/// `hooked` with one auto stage `dev` delivering to `url`; an image pushed.
async fn declare(app: &TestApp, url: &str, timeout: &str) -> String {
    let yaml = format!(
        "kind: Pipeline\nname: hooked\nstages:\n  - name: dev\n    auto: true\n---\n\
kind: Application\nname: hooked\ntype: container\nrepository: acme/hooked\npipeline: hooked\n\
environments:\n  dev:\n    target:\n      webhook:\n        url: {url}\n        secret_ref: hooks/dev\n        timeout: {timeout}\n"
    );
    apply(app, yaml).await;
    push_image(app, "acme/hooked", "v1", "hooked")
        .await
        .manifest
        .digest
}

/// Notifies the build in a task of its own (the request waits for the deployment).
fn notify(app: &Arc<TestApp>, digest: &str) -> tokio::task::JoinHandle<Value> {
    let app = app.clone();
    let body = json!({ "application": "hooked", "digest": digest }).to_string();
    tokio::spawn(async move {
        let response = app
            .admin(
                Method::POST,
                "/api/v1/builds",
                &[("content-type", "application/json")],
                body,
            )
            .await;
        assert_status(&response, StatusCode::CREATED);
        response.json()
    })
}

async fn call_back(app: &TestApp, id: i64, token: &str, body: Value) -> testkit::TestResponse {
    let authorization = format!("Bearer {token}");
    app.send(
        Method::POST,
        &format!("/api/v1/deployments/{id}/callback"),
        &[
            ("content-type", "application/json"),
            ("authorization", &authorization),
        ],
        body.to_string(),
    )
    .await
}

async fn deployment(app: &TestApp, id: i64) -> Value {
    app.admin(
        Method::GET,
        &format!("/api/v1/deployments/{id}"),
        &[],
        axum::body::Body::empty(),
    )
    .await
    .json()
}

async fn a_signed_delivery_and_its_callback_deploy(backend: Backend) {
    let secrets = tempfile::tempdir().expect("dir");
    std::fs::create_dir_all(secrets.path().join("hooks")).expect("dir");
    std::fs::write(secrets.path().join("hooks/dev"), format!("{SECRET}\n")).expect("secret");
    let receiver = Receiver::start(&[202]);
    let app = Arc::new(app(backend, secrets.path()).await);
    let digest = declare(&app, &receiver.url, "30s").await;
    let notified = notify(&app, &digest);
    let delivery = receiver.wait_for(1).await;
    let payload = delivery.json();
    let id = payload["deployment_id"].as_i64().expect("deployment id");
    assert_eq!(payload["application"], "hooked");
    assert_eq!(payload["environment"], "dev");
    assert_eq!(payload["digest"], digest);
    assert_eq!(payload["image"], format!("localhost/acme/hooked@{digest}"));
    assert_eq!(payload["config"], json!({}));
    assert_eq!(payload["reason"], "promotion");
    assert_eq!(
        payload["callback_url"],
        format!("https://gantry.example.com/api/v1/deployments/{id}/callback")
    );
    let token = payload["callback_token"]
        .as_str()
        .expect("token")
        .to_owned();
    assert_eq!(token.len(), 64);
    // The signature covers the timestamp and the exact body, under the target's secret.
    let timestamp = delivery.header("x-gantry-timestamp").expect("timestamp");
    assert_eq!(
        delivery.header("x-gantry-signature"),
        Some(engine::webhook_signature(SECRET, timestamp, &delivery.body).as_str())
    );
    assert_ne!(
        delivery.header("x-gantry-signature"),
        Some(engine::webhook_signature("another secret", timestamp, &delivery.body).as_str())
    );
    assert_eq!(
        delivery.header("x-gantry-deployment"),
        Some(id.to_string().as_str())
    );
    assert_eq!(
        deployment(&app, id).await["state"],
        "deploying",
        "waiting for the callback"
    );
    // Wrong tokens and malformed reports change nothing.
    let other = call_back(&app, id, &"0".repeat(64), json!({"state": "succeeded"})).await;
    assert_status(&other, StatusCode::UNAUTHORIZED);
    let none = app
        .send(
            Method::POST,
            &format!("/api/v1/deployments/{id}/callback"),
            &[("content-type", "application/json")],
            json!({"state": "succeeded"}).to_string(),
        )
        .await;
    assert_status(&none, StatusCode::UNAUTHORIZED);
    let admin = app
        .admin(
            Method::POST,
            &format!("/api/v1/deployments/{id}/callback"),
            &[("content-type", "application/json")],
            json!({"state": "succeeded"}).to_string(),
        )
        .await;
    assert_status(&admin, StatusCode::UNAUTHORIZED);
    let bad = call_back(&app, id, &token, json!({"state": "done"})).await;
    assert_status(&bad, StatusCode::BAD_REQUEST);
    let long = call_back(
        &app,
        id,
        &token,
        json!({"state": "succeeded", "message": "x".repeat(5000)}),
    )
    .await;
    assert_status(&long, StatusCode::BAD_REQUEST);
    // A token is bound to its deployment; without one, nothing says whether a
    // deployment exists.
    let elsewhere = call_back(&app, id + 1000, &token, json!({"state": "succeeded"})).await;
    assert_status(&elsewhere, StatusCode::UNAUTHORIZED);
    assert_eq!(deployment(&app, id).await["state"], "deploying");
    let accepted = call_back(
        &app,
        id,
        &token,
        json!({"state": "succeeded", "message": "rolled out 3/3 pods"}),
    )
    .await;
    assert_status(&accepted, StatusCode::OK);
    assert_eq!(
        accepted.json(),
        json!({"deployment_id": id, "state": "succeeded"})
    );
    let again = call_back(&app, id, &token, json!({"state": "failed"})).await;
    assert_status(&again, StatusCode::CONFLICT);
    let notified = notified.await.expect("the notification returns");
    assert_eq!(notified["promotion"]["state"], "deployed", "{notified}");
    let finished = deployment(&app, id).await;
    assert_eq!(finished["state"], "deployed");
    assert_eq!(
        finished["message"],
        "the receiver reported success: rolled out 3/3 pods"
    );
    assert_eq!(receiver.deliveries().len(), 1, "delivered once");
    // The report is in the audit log, once: the refused ones are not.
    let export = app
        .admin(
            Method::GET,
            "/api/v1/audit/export",
            &[],
            axum::body::Body::empty(),
        )
        .await;
    let reports: Vec<serde_json::Value> = export
        .text()
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).expect("JSON"))
        .filter(|entry| entry["action"] == "callback")
        .collect();
    assert_eq!(reports.len(), 1, "{reports:#?}");
    assert_eq!(reports[0]["actor"], "webhook-receiver");
    assert_eq!(reports[0]["subject"], "hooked/dev");
    let payload: serde_json::Value = match &reports[0]["payload"] {
        serde_json::Value::String(text) => serde_json::from_str(text).expect("JSON payload"),
        other => other.clone(),
    };
    assert_eq!(payload["deployment"], id);
    assert_eq!(payload["state"], "succeeded");
}

async fn a_reported_failure_fails_the_deployment(backend: Backend) {
    let secrets = tempfile::tempdir().expect("dir");
    std::fs::create_dir_all(secrets.path().join("hooks")).expect("dir");
    std::fs::write(secrets.path().join("hooks/dev"), SECRET).expect("secret");
    let receiver = Receiver::start(&[200]);
    let app = Arc::new(app(backend, secrets.path()).await);
    let digest = declare(&app, &receiver.url, "30s").await;
    let notified = notify(&app, &digest);
    let payload = receiver.wait_for(1).await.json();
    let id = payload["deployment_id"].as_i64().expect("id");
    let token = payload["callback_token"].as_str().expect("token");
    let response = call_back(
        &app,
        id,
        token,
        json!({"state": "failed", "message": "image pull backoff"}),
    )
    .await;
    assert_status(&response, StatusCode::OK);
    let notified = notified.await.expect("returns");
    assert_eq!(notified["promotion"]["state"], "failed", "{notified}");
    assert_eq!(
        deployment(&app, id).await["message"],
        "the receiver reported failure: image pull backoff"
    );
    // A finished deployment takes no more reports.
    let late = call_back(&app, id, token, json!({"state": "succeeded"})).await;
    assert_status(&late, StatusCode::CONFLICT);
}

async fn no_callback_within_the_timeout_fails_and_5xx_is_retried(backend: Backend) {
    let secrets = tempfile::tempdir().expect("dir");
    std::fs::create_dir_all(secrets.path().join("hooks")).expect("dir");
    std::fs::write(secrets.path().join("hooks/dev"), SECRET).expect("secret");
    let receiver = Receiver::start(&[503, 202]);
    let app = Arc::new(app(backend, secrets.path()).await);
    let digest = declare(&app, &receiver.url, "1s").await;
    let notified = notify(&app, &digest).await.expect("returns");
    assert_eq!(notified["promotion"]["state"], "failed", "{notified}");
    let id = notified["promotion"]["deployment_id"].as_i64().expect("id");
    let finished = deployment(&app, id).await;
    assert_eq!(
        finished["job"]["attempts"], 2,
        "the 503 was retried: {finished}"
    );
    let message = finished["message"].as_str().unwrap_or_default();
    assert!(message.contains("no callback came within 1 s"), "{message}");
    let deliveries = receiver.deliveries();
    assert_eq!(deliveries.len(), 2);
    assert_eq!(
        deliveries[0].json()["callback_token"],
        deliveries[1].json()["callback_token"],
        "one token per deployment"
    );
    assert_eq!(deliveries[1].json()["attempt"], 2);
}

async fn a_missing_secret_or_a_refusal_fails_at_once(backend: Backend) {
    let secrets = tempfile::tempdir().expect("dir");
    let receiver = Receiver::start(&[202]);
    let app = Arc::new(app(backend, secrets.path()).await);
    let digest = declare(&app, &receiver.url, "30s").await;
    let notified = notify(&app, &digest).await.expect("returns");
    assert_eq!(notified["promotion"]["state"], "failed", "{notified}");
    let id = notified["promotion"]["deployment_id"].as_i64().expect("id");
    let message = deployment(&app, id).await["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        message.contains("cannot read secret `hooks/dev`"),
        "{message}"
    );
    assert!(
        receiver.deliveries().is_empty(),
        "nothing unsigned was sent"
    );
    // A receiver refusing with 4xx fails the deployment without retries.
    std::fs::create_dir_all(secrets.path().join("hooks")).expect("dir");
    std::fs::write(secrets.path().join("hooks/dev"), SECRET).expect("secret");
    let refusing = Receiver::start(&[403]);
    let digest = declare(&app, &refusing.url, "30s").await;
    let _ = digest;
    let image = push_image(&app, "acme/hooked", "v2", "hooked-2")
        .await
        .manifest
        .digest;
    let notified = notify(&app, &image).await.expect("returns");
    assert_eq!(notified["promotion"]["state"], "failed", "{notified}");
    let id = notified["promotion"]["deployment_id"].as_i64().expect("id");
    let finished = deployment(&app, id).await;
    assert_eq!(finished["job"]["attempts"], 1);
    assert!(
        finished["message"]
            .as_str()
            .unwrap_or_default()
            .contains("refused the deployment with 403"),
        "{finished}"
    );
}

both_backends!(
    a_signed_delivery_and_its_callback_deploy,
    a_reported_failure_fails_the_deployment,
    no_callback_within_the_timeout_fails_and_5xx_is_retried,
    a_missing_secret_or_a_refusal_fails_at_once
);
