//! The reconcile loop's pass: what each deployed environment's target reports is
//! recorded as an observation, so a target changed by hand shows as drift (status,
//! `/metrics`, audit) and agreeing again clears it; environments with a deployment
//! under way, targets that cannot tell and targets that fail to answer are left alone;
//! one replica at a time holds the reconcile lease. The target here is a double whose
//! read-back the test sets (real targets' read-backs have tests of their own).

use std::sync::{Arc, Mutex};

use deploy::{DeployContext, DeployFuture, Deployer, ObserveContext, ObserveFuture};
use engine::{Deployers, JobSettings};
use http::{Method, StatusCode};
use serde_json::{Value, json};
use testkit::{Backend, TestApp};

use crate::support::{apply, assert_status, push_image};

/// Stands in for the `record` target; `observe` answers what `holds` says.
struct Readable {
    holds: Mutex<Result<Option<String>, String>>,
    asked: Mutex<Vec<(String, String, String)>>,
}

impl Deployer for Readable {
    fn kind(&self) -> &'static str {
        "record"
    }

    fn deploy<'a>(&'a self, job: &'a DeployContext<'a>) -> DeployFuture<'a> {
        Box::pin(async move {
            *self.holds.lock().expect("lock") = Ok(Some(job.order.digest.clone()));
            Ok("recorded".to_owned())
        })
    }

    fn observe<'a>(&'a self, target: &'a ObserveContext<'a>) -> ObserveFuture<'a> {
        Box::pin(async move {
            self.asked.lock().expect("lock").push((
                target.application.to_owned(),
                target.environment.to_owned(),
                target.repository.to_owned(),
            ));
            self.holds.lock().expect("lock").clone()
        })
    }
}

async fn app_with(backend: Backend, target: Arc<Readable>) -> TestApp {
    TestApp::spawn_configured(
        backend,
        registry::RegistryConfig::default(),
        server::AccessConfig::default(),
        |state| state.with_deploy(JobSettings::default(), Deployers::default().with(target)),
    )
    .await
}

async fn status_of_dev(app: &TestApp) -> Value {
    let status = app
        .admin(
            Method::GET,
            "/api/v1/apps/web",
            &[],
            axum::body::Body::empty(),
        )
        .await
        .json();
    status["environments"]
        .as_array()
        .and_then(|envs| envs.iter().find(|e| e["name"] == "dev").cloned())
        .expect("dev")
}

async fn drift_metric(app: &TestApp) -> Option<String> {
    let text = app
        .send(Method::GET, "/metrics", &[], axum::body::Body::empty())
        .await
        .text();
    text.lines()
        .find(|line| {
            line.starts_with("gantry_drift{")
                && line.contains("application=\"web\"")
                && line.contains("environment=\"dev\"")
        })
        .map(|line| line.rsplit(' ').next().unwrap_or_default().to_owned())
}

async fn a_target_changed_by_hand_drifts_until_it_agrees_again(backend: Backend) {
    let target = Arc::new(Readable {
        holds: Mutex::new(Ok(None)),
        asked: Mutex::new(Vec::new()),
    });
    let app = app_with(backend, target.clone()).await;
    let yaml = "kind: Pipeline\nname: web\nstages:\n  - name: dev\n    auto: true\n  - name: prod\n---\n\
kind: Application\nname: web\ntype: container\nrepository: acme/web\npipeline: web\n\
environments:\n  dev:\n    target:\n      record: {}\n  prod:\n    target:\n      record: {}\n";
    apply(&app, yaml).await;
    // Nothing deployed yet: nothing to read back.
    assert_eq!(
        app.state.engine.reconcile().await.expect("pass"),
        engine::ReconcileReport::default()
    );
    assert!(target.asked.lock().expect("lock").is_empty());
    let digest = push_image(&app, "acme/web", "v1", "web")
        .await
        .manifest
        .digest;
    let notified = app
        .admin(
            Method::POST,
            "/api/v1/builds",
            &[("content-type", "application/json")],
            json!({"application": "web", "digest": digest}).to_string(),
        )
        .await;
    assert_status(&notified, StatusCode::CREATED);
    // The target holds what Gantry deployed: observed, no drift.
    let report = app.state.engine.reconcile().await.expect("pass");
    assert_eq!(
        report,
        engine::ReconcileReport {
            observed: 1,
            drifting: 0,
            failed: 0
        }
    );
    assert_eq!(
        target.asked.lock().expect("lock").as_slice(),
        [("web".to_owned(), "dev".to_owned(), "acme/web".to_owned())],
        "only the deployed environment is read back, through its repository"
    );
    let dev = status_of_dev(&app).await;
    assert_eq!(dev["observed"]["digest"], digest.as_str());
    assert_eq!(dev["observed"]["by"], "gantry-reconcile (record)");
    assert_eq!(dev["drift_since"], Value::Null);
    // Someone changed it by hand.
    let by_hand = format!("sha256:{}", "ab".repeat(32));
    *target.holds.lock().expect("lock") = Ok(Some(by_hand.clone()));
    let report = app.state.engine.reconcile().await.expect("pass");
    assert_eq!(
        report,
        engine::ReconcileReport {
            observed: 1,
            drifting: 1,
            failed: 0
        }
    );
    let dev = status_of_dev(&app).await;
    assert_eq!(dev["observed"]["digest"], by_hand.as_str());
    assert!(dev["drift_since"].is_string(), "{dev}");
    assert_eq!(drift_metric(&app).await.as_deref(), Some("1"));
    // A target that fails to answer or cannot tell changes nothing.
    *target.holds.lock().expect("lock") = Err("connection refused".to_owned());
    assert_eq!(app.state.engine.reconcile().await.expect("pass").failed, 1);
    *target.holds.lock().expect("lock") = Ok(None);
    assert_eq!(
        app.state.engine.reconcile().await.expect("pass").observed,
        0
    );
    assert!(
        status_of_dev(&app).await["drift_since"].is_string(),
        "still drifting"
    );
    // Put back (a re-promotion, here: the target holds the deployed digest again).
    *target.holds.lock().expect("lock") = Ok(Some(digest.clone()));
    app.state.engine.reconcile().await.expect("pass");
    assert_eq!(status_of_dev(&app).await["drift_since"], Value::Null);
    assert_eq!(drift_metric(&app).await.as_deref(), Some("0"));
    let entries = app.store.audit().entries(0, 1000).await.expect("audit");
    let drift: Vec<&str> = entries
        .iter()
        .filter(|e| e.action == "drift")
        .map(|e| e.actor.as_str())
        .collect();
    assert_eq!(
        drift,
        ["gantry-reconcile (record)", "gantry-reconcile (record)"],
        "one entry when it starts, one when it ends"
    );
}

async fn one_replica_at_a_time_holds_the_reconcile_lease(backend: Backend) {
    let app = app_with(
        backend,
        Arc::new(Readable {
            holds: Mutex::new(Ok(None)),
            asked: Mutex::new(Vec::new()),
        }),
    )
    .await;
    let jobs = app.store.jobs();
    let now = store::now_millis();
    assert!(
        jobs.lead("reconcile", "a", now, now + 1_000)
            .await
            .expect("lead")
    );
    assert!(
        !jobs
            .lead("reconcile", "b", now + 10, now + 1_010)
            .await
            .expect("lead"),
        "a holds it"
    );
    assert!(
        jobs.lead("reconcile", "a", now + 500, now + 1_500)
            .await
            .expect("lead"),
        "a renews it"
    );
    assert!(
        !jobs
            .lead("reconcile", "b", now + 1_400, now + 2_400)
            .await
            .expect("lead")
    );
    assert!(
        jobs.lead("reconcile", "b", now + 1_501, now + 2_501)
            .await
            .expect("lead"),
        "b after a's lease ran out"
    );
    assert!(
        !jobs
            .lead("reconcile", "a", now + 1_600, now + 2_600)
            .await
            .expect("lead")
    );
}

both_backends!(
    a_target_changed_by_hand_drifts_until_it_agrees_again,
    one_replica_at_a_time_holds_the_reconcile_lease
);
