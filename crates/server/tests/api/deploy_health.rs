//! Verification after deploy: a declared health check decides whether a deployment
//! succeeded (with retries), reaches only what the outbound guard allows, and with
//! `auto_rollback: true` a failed deployment is followed by a rollback to what ran
//! before — never by a rollback of a rollback.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use http::{Method, StatusCode};
use serde_json::{Value, json};
use testkit::{Backend, TestApp};

use crate::support::{apply, assert_status, push_image};

/// An HTTP endpoint on loopback answering each request with the next status of a
/// script (the last one repeats).
struct HealthEndpoint {
    url: String,
    requests: Arc<AtomicUsize>,
}

impl HealthEndpoint {
    fn start(statuses: &[u16]) -> HealthEndpoint {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/health", listener.local_addr().expect("address"));
        let script = Arc::new(Mutex::new(
            statuses.iter().copied().collect::<VecDeque<u16>>(),
        ));
        let requests = Arc::new(AtomicUsize::new(0));
        let counted = requests.clone();
        std::thread::spawn(move || {
            use std::io::{Read, Write};
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut buffer = [0u8; 2048];
                let _ = stream.read(&mut buffer);
                counted.fetch_add(1, Ordering::SeqCst);
                let status = {
                    let mut script = script.lock().expect("not poisoned");
                    if script.len() > 1 {
                        script.pop_front()
                    } else {
                        script.front().copied()
                    }
                }
                .unwrap_or(200);
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} Status\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
            }
        });
        HealthEndpoint { url, requests }
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// An app whose outbound requests may reach loopback (where the endpoint listens).
async fn app_reaching_loopback(backend: Backend) -> TestApp {
    let access = server::AccessConfig {
        outbound: Arc::new(outbound::Policy::parse(&["127.0.0.1".to_owned()]).expect("valid")),
        ..server::AccessConfig::default()
    };
    TestApp::spawn_with_access(backend, registry::RegistryConfig::default(), access).await
}

async fn declare(app: &TestApp, url: &str, retries: u32) {
    let yaml = format!(
        r#"kind: Pipeline
name: checked
stages:
  - name: dev
    auto: true
---
kind: Application
name: checked
type: container
repository: acme/checked
pipeline: checked
environments:
  dev:
    target: {{ record: {{}} }}
    health_check: {{ url: "{url}", expect_status: 200, timeout: 2s, retries: {retries} }}
    auto_rollback: true
"#
    );
    apply(app, yaml).await;
}

/// Pushes and notifies a build of `seed` (dev is auto); its digest.
async fn build(app: &TestApp, seed: &str) -> String {
    let image = push_image(app, "acme/checked", seed, seed).await;
    let digest = image.manifest.digest.clone();
    let response = app
        .admin(
            Method::POST,
            "/api/v1/builds",
            &[("content-type", "application/json")],
            json!({ "application": "checked", "digest": digest }).to_string(),
        )
        .await;
    assert_status(&response, StatusCode::CREATED);
    digest
}

/// Dev's deployments, oldest first, and what runs there now.
async fn dev(app: &TestApp) -> (Vec<Value>, Value) {
    let history = app
        .admin(
            Method::GET,
            "/api/v1/apps/checked/history",
            &[],
            Body::empty(),
        )
        .await;
    let mut deployments = history.json()["deployments"]
        .as_array()
        .expect("deployments")
        .clone();
    deployments.reverse();
    let status = app
        .admin(Method::GET, "/api/v1/apps/checked", &[], Body::empty())
        .await
        .json();
    (deployments, status["environments"][0].clone())
}

async fn a_failed_health_check_rolls_back_to_what_ran_before(backend: Backend) {
    let endpoint = HealthEndpoint::start(&[200, 500, 200]);
    let app = app_reaching_loopback(backend).await;
    declare(&app, &endpoint.url, 0).await;
    let good = build(&app, "good").await;
    let bad = build(&app, "bad").await;
    let (deployments, dev) = dev(&app).await;
    assert_eq!(deployments.len(), 3, "{deployments:#?}");
    assert_eq!(
        (
            deployments[0]["digest"].as_str(),
            deployments[0]["state"].as_str()
        ),
        (Some(good.as_str()), Some("deployed"))
    );
    assert!(
        deployments[0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("healthy"),
        "{}",
        deployments[0]
    );
    assert_eq!(
        (
            deployments[1]["digest"].as_str(),
            deployments[1]["state"].as_str()
        ),
        (Some(bad.as_str()), Some("failed"))
    );
    let failure = deployments[1]["message"].as_str().unwrap_or_default();
    assert!(
        failure.contains("health check failed") && failure.contains("answered 500, not 200"),
        "{failure}"
    );
    // The rollback: the good digest again, by Gantry, and the environment held.
    assert_eq!(deployments[2]["digest"], good.as_str());
    assert_eq!(deployments[2]["reason"], "rollback");
    assert_eq!(deployments[2]["requested_by"], "gantry");
    assert_eq!(deployments[2]["state"], "deployed");
    assert_eq!(dev["current"]["digest"], good.as_str());
    assert!(
        dev["hold"]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("auto-rollback"),
        "{dev}"
    );
    assert_eq!(endpoint.requests(), 3);
}

async fn a_failed_rollback_is_not_rolled_back(backend: Backend) {
    let endpoint = HealthEndpoint::start(&[200, 500]);
    let app = app_reaching_loopback(backend).await;
    declare(&app, &endpoint.url, 0).await;
    let good = build(&app, "good").await;
    build(&app, "bad").await;
    let (deployments, dev) = dev(&app).await;
    let states: Vec<(&str, &str)> = deployments
        .iter()
        .map(|d| {
            (
                d["reason"].as_str().unwrap_or_default(),
                d["state"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            ("promotion", "deployed"),
            ("promotion", "failed"),
            ("rollback", "failed")
        ]
    );
    // What ran last successfully is still on record as running.
    assert_eq!(dev["current"]["digest"], good.as_str());
}

async fn a_health_check_retries_before_it_gives_up(backend: Backend) {
    let endpoint = HealthEndpoint::start(&[503, 503, 200]);
    let app = app_reaching_loopback(backend).await;
    declare(&app, &endpoint.url, 2).await;
    build(&app, "slow-start").await;
    let (deployments, _) = dev(&app).await;
    assert_eq!(deployments[0]["state"], "deployed", "{}", deployments[0]);
    assert_eq!(endpoint.requests(), 3);
}

async fn a_health_check_reaches_no_restricted_address_unless_allowed(backend: Backend) {
    let endpoint = HealthEndpoint::start(&[200]);
    let app = TestApp::spawn(backend).await;
    declare(&app, &endpoint.url, 0).await;
    build(&app, "first").await;
    let (deployments, dev) = dev(&app).await;
    assert_eq!(
        deployments.len(),
        1,
        "nothing earlier to roll back to: {deployments:#?}"
    );
    assert_eq!(deployments[0]["state"], "failed");
    let message = deployments[0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("loopback") && message.contains("outbound.allow"),
        "{message}"
    );
    assert_eq!(dev["current"], Value::Null);
    assert_eq!(
        endpoint.requests(),
        0,
        "the guard refused before connecting"
    );
}

both_backends!(
    a_failed_health_check_rolls_back_to_what_ran_before,
    a_failed_rollback_is_not_rolled_back,
    a_health_check_retries_before_it_gives_up,
    a_health_check_reaches_no_restricted_address_unless_allowed
);
