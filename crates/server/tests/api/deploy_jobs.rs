//! Deployments as durable jobs: transient failures are retried with backoff until they
//! succeed or their attempts run out, permanent ones are not retried, an attempt past
//! the timeout fails, a job outliving its lease is kept alive by heartbeats (a second
//! replica never runs it too), and every step lands in the deployment's log. The
//! deployers here are test doubles of a target (the engine's contract is what is under
//! test); real targets have tests of their own.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use deploy::{DeployContext, DeployError, DeployFuture, Deployer};
use engine::{Deployers, JobSettings};
use http::{Method, StatusCode};
use serde_json::{Value, json};
use testkit::{Backend, TestApp};

use crate::support::{apply, assert_status, push_image};

/// Stands in for the `record` target: fails transiently `transient` times, then (if
/// `permanent`) for good, else succeeds after `pause`; counts its calls.
struct Scripted {
    transient: u32,
    permanent: bool,
    pause: Duration,
    calls: AtomicU32,
}

impl Scripted {
    fn new(transient: u32, permanent: bool, pause: Duration) -> Arc<Scripted> {
        Arc::new(Scripted {
            transient,
            permanent,
            pause,
            calls: AtomicU32::new(0),
        })
    }
}

impl Deployer for Scripted {
    fn kind(&self) -> &'static str {
        "record"
    }

    fn deploy<'a>(&'a self, job: &'a DeployContext<'a>) -> DeployFuture<'a> {
        Box::pin(async move {
            let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            job.log
                .line(format!("call {call}, attempt {}", job.attempt));
            tokio::time::sleep(self.pause).await;
            if call <= self.transient {
                return Err(DeployError::Transient(format!(
                    "connection refused ({call})"
                )));
            }
            if self.permanent {
                return Err(DeployError::Failed(
                    "the destination refused the artifact".to_owned(),
                ));
            }
            Ok(format!("deployed on call {call}"))
        })
    }
}

fn settings() -> JobSettings {
    JobSettings {
        // Long enough that a busy machine's late heartbeat does not lose it.
        lease: Duration::from_secs(2),
        max_attempts: 4,
        retry_base: Duration::from_millis(100),
        retry_max: Duration::from_millis(400),
        timeout: Duration::from_secs(10),
        wait: Duration::from_secs(20),
        poll: Duration::from_millis(100),
        ..JobSettings::default()
    }
}

async fn app_with(backend: Backend, deployer: Arc<Scripted>, settings: JobSettings) -> TestApp {
    TestApp::spawn_configured(
        backend,
        registry::RegistryConfig::default(),
        server::AccessConfig::default(),
        |state| state.with_deploy(settings, Deployers::default().with(deployer)),
    )
    .await
}

/// Declares `web` with one auto stage `dev`, pushes and notifies an image; the
/// deployment the notification started, as the API shows it once the request returns.
async fn deploy_once(app: &TestApp) -> Value {
    let yaml = "kind: Pipeline\nname: web\nstages:\n  - name: dev\n    auto: true\n---\n\
kind: Application\nname: web\ntype: container\nrepository: acme/web\npipeline: web\n\
environments:\n  dev:\n    target:\n      record: {}\n";
    apply(app, yaml).await;
    let image = push_image(app, "acme/web", "v1", "jobs").await;
    let response = app
        .admin(
            Method::POST,
            "/api/v1/builds",
            &[("content-type", "application/json")],
            json!({ "application": "web", "digest": image.manifest.digest }).to_string(),
        )
        .await;
    assert_status(&response, StatusCode::CREATED);
    let id = response.json()["promotion"]["deployment_id"]
        .as_i64()
        .unwrap_or_else(|| panic!("the build started a deployment: {}", response.json()));
    deployment(app, id).await
}

async fn deployment(app: &TestApp, id: i64) -> Value {
    let response = app
        .admin(
            Method::GET,
            &format!("/api/v1/deployments/{id}"),
            &[],
            axum::body::Body::empty(),
        )
        .await;
    assert_status(&response, StatusCode::OK);
    response.json()
}

async fn log_lines(app: &TestApp, id: i64) -> Vec<String> {
    let response = app
        .admin(
            Method::GET,
            &format!("/api/v1/deployments/{id}/log"),
            &[],
            axum::body::Body::empty(),
        )
        .await;
    assert_status(&response, StatusCode::OK);
    response.json()["lines"]
        .as_array()
        .map(|lines| {
            lines
                .iter()
                .filter_map(|l| l["line"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

async fn transient_failures_are_retried_until_the_deployment_succeeds(backend: Backend) {
    let deployer = Scripted::new(2, false, Duration::ZERO);
    let app = app_with(backend, deployer.clone(), settings()).await;
    let deployment = deploy_once(&app).await;
    let id = deployment["id"].as_i64().expect("id");
    assert_eq!(
        deployment["state"], "deployed",
        "the request waits across retries: {deployment}"
    );
    assert_eq!(deployment["message"], "deployed on call 3");
    assert_eq!(deployment["job"]["state"], "finished");
    assert_eq!(deployment["job"]["attempts"], 3);
    assert_eq!(deployment["job"]["last_error"], "connection refused (2)");
    assert_eq!(deployer.calls.load(Ordering::SeqCst), 3);
    let log = log_lines(&app, id).await;
    let attempts: Vec<&String> = log.iter().filter(|l| l.starts_with("attempt ")).collect();
    assert_eq!(attempts.len(), 3, "one line per attempt: {log:#?}");
    assert!(attempts[0].starts_with("attempt 1 of 4 by "), "{log:#?}");
    assert_eq!(
        log.iter()
            .filter(|l| l.starts_with("transient failure: connection refused"))
            .count(),
        2,
        "{log:#?}"
    );
    assert!(
        log.iter().any(|l| l == "call 3, attempt 3"),
        "the deployer's own lines: {log:#?}"
    );
    assert_eq!(
        log.last().map(String::as_str),
        Some("deployed: deployed on call 3"),
        "{log:#?}"
    );
    // Exactly one outcome was recorded: one `deployed` audit entry for the deployment.
    let audit = app
        .admin(
            Method::GET,
            "/api/v1/audit/export",
            &[],
            axum::body::Body::empty(),
        )
        .await;
    let finished = audit
        .text()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|entry| entry["action"] == "deploy")
        .filter_map(|entry| serde_json::from_str::<Value>(entry["payload"].as_str()?).ok())
        .filter(|payload| payload["deployment"] == id && payload["state"] == "deployed")
        .count();
    assert_eq!(finished, 1, "{}", audit.text());
}

async fn a_job_gives_up_when_its_attempts_run_out(backend: Backend) {
    let deployer = Scripted::new(u32::MAX, false, Duration::ZERO);
    let app = app_with(backend, deployer.clone(), settings()).await;
    let deployment = deploy_once(&app).await;
    assert_eq!(deployment["state"], "failed", "{deployment}");
    let message = deployment["message"].as_str().unwrap_or_default();
    assert_eq!(message, "connection refused (4) (gave up after 4 attempts)");
    assert_eq!(deployment["job"]["attempts"], 4);
    assert_eq!(deployer.calls.load(Ordering::SeqCst), 4);
    // Nothing is left running or waiting.
    let metrics = app
        .send(Method::GET, "/metrics", &[], axum::body::Body::empty())
        .await
        .text();
    for state in ["running", "waiting"] {
        let line = format!("gantry_deploy_jobs{{state=\"{state}\"}} 0");
        assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    }
}

async fn a_permanent_failure_is_not_retried(backend: Backend) {
    let deployer = Scripted::new(0, true, Duration::ZERO);
    let app = app_with(backend, deployer.clone(), settings()).await;
    let deployment = deploy_once(&app).await;
    assert_eq!(deployment["state"], "failed", "{deployment}");
    assert_eq!(
        deployment["message"],
        "the destination refused the artifact"
    );
    assert_eq!(deployment["job"]["attempts"], 1);
    assert_eq!(deployment["job"]["state"], "finished");
    // Nothing is scheduled to run again: no worker will ever pick it up.
    assert_eq!(
        app.store.jobs().next_due().await.expect("store answers"),
        None,
        "no retry later either"
    );
    assert_eq!(deployer.calls.load(Ordering::SeqCst), 1);
}

async fn an_attempt_past_the_timeout_fails(backend: Backend) {
    let deployer = Scripted::new(0, false, Duration::from_secs(30));
    let app = app_with(
        backend,
        deployer.clone(),
        JobSettings {
            timeout: Duration::from_millis(500),
            ..settings()
        },
    )
    .await;
    let started = std::time::Instant::now();
    let deployment = deploy_once(&app).await;
    assert_eq!(deployment["state"], "failed", "{deployment}");
    assert_eq!(
        deployment["message"],
        "the deployment did not finish within 0 s"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "it did not wait for the deployer"
    );
}

async fn a_job_longer_than_its_lease_is_kept_by_heartbeats_and_run_once(backend: Backend) {
    // A deployment three times as long as the lease, with a second replica's worker
    // watching the same store for jobs whose lease ran out.
    let deployer = Scripted::new(0, false, Duration::from_millis(3_000));
    let lease = JobSettings {
        lease: Duration::from_secs(1),
        ..settings()
    };
    let app = app_with(backend, deployer.clone(), lease.clone()).await;
    let second = Scripted::new(0, false, Duration::ZERO);
    let replica = app.state.clone().with_deploy(
        JobSettings {
            replica: "second".to_owned(),
            ..lease
        },
        Deployers::default().with(second.clone()),
    );
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let worker = tokio::spawn(async move { replica.engine.work(stopped).await });
    let deployment = deploy_once(&app).await;
    assert_eq!(deployment["state"], "deployed", "{deployment}");
    assert_eq!(deployment["job"]["attempts"], 1);
    assert_eq!(deployer.calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        second.calls.load(Ordering::SeqCst),
        0,
        "the second replica never took it"
    );
    let _ = stop.send(true);
    worker.await.expect("the worker stops");
}

async fn the_log_of_an_unknown_deployment_is_not_found_and_bad_pages_are_refused(backend: Backend) {
    let app = app_with(backend, Scripted::new(0, false, Duration::ZERO), settings()).await;
    for (uri, status) in [
        ("/api/v1/deployments/999", StatusCode::NOT_FOUND),
        ("/api/v1/deployments/999/log", StatusCode::NOT_FOUND),
        ("/api/v1/deployments/x/log", StatusCode::BAD_REQUEST),
    ] {
        let response = app
            .admin(Method::GET, uri, &[], axum::body::Body::empty())
            .await;
        assert_status(&response, status);
    }
    let deployment = deploy_once(&app).await;
    let id = deployment["id"].as_i64().expect("id");
    for query in ["limit=0", "limit=1001", "after=-1", "limit=x"] {
        let response = app
            .admin(
                Method::GET,
                &format!("/api/v1/deployments/{id}/log?{query}"),
                &[],
                axum::body::Body::empty(),
            )
            .await;
        assert_status(&response, StatusCode::BAD_REQUEST);
    }
    let page = app
        .admin(
            Method::GET,
            &format!("/api/v1/deployments/{id}/log?limit=1"),
            &[],
            axum::body::Body::empty(),
        )
        .await
        .json();
    assert_eq!(page["lines"].as_array().map(Vec::len), Some(1));
    assert_eq!(page["next"], 1);
    let rest = app
        .admin(
            Method::GET,
            &format!("/api/v1/deployments/{id}/log?after=1"),
            &[],
            axum::body::Body::empty(),
        )
        .await
        .json();
    assert_eq!(rest["lines"][0]["seq"], 2, "{rest}");
    assert_eq!(rest["next"], Value::Null);
}

async fn a_job_whose_replicas_keep_dying_gives_up(backend: Backend) {
    // The deployment hangs; meanwhile its job looks as if its fourth claim died.
    let deployer = Scripted::new(0, false, Duration::from_secs(60));
    let app = app_with(
        backend,
        deployer.clone(),
        JobSettings {
            wait: Duration::from_millis(300),
            ..settings()
        },
    )
    .await;
    let deployment = deploy_once(&app).await;
    let id = deployment["id"].as_i64().expect("id");
    assert_eq!(deployment["state"], "deploying");
    // Its first attempt is under way (on a busy machine the claim may come late).
    for _ in 0..100 {
        if deployer.calls.load(Ordering::SeqCst) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        deployer.calls.load(Ordering::SeqCst),
        1,
        "the first attempt started"
    );
    app.database()
        .execute_raw("UPDATE deploy_jobs SET attempts = 4, lease_owner = 'gone#4', lease_until = 0 WHERE finished_at IS NULL")
        .await;
    let mut finished = Value::Null;
    for _ in 0..100 {
        finished = self::deployment(&app, id).await;
        if finished["state"] != "deploying" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(finished["state"], "failed", "{finished}");
    assert_eq!(
        finished["message"],
        "gave up after 4 attempts: the replicas running it stopped before it finished"
    );
    assert_eq!(finished["job"]["attempts"], 5);
    assert_eq!(
        deployer.calls.load(Ordering::SeqCst),
        1,
        "the fifth claim did not deploy"
    );
    // The last lines are written just after the outcome.
    let wanted = |log: &[String]| {
        log.iter()
            .any(|l| l == "the job's lease passed to another replica; this attempt records nothing")
            && log
                .iter()
                .any(|l| l.starts_with("failed: gave up after 4 attempts"))
    };
    let mut log = log_lines(&app, id).await;
    for _ in 0..50 {
        if wanted(&log) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        log = log_lines(&app, id).await;
    }
    assert!(
        wanted(&log),
        "the hung attempt noticed it lost the job, the fifth gave up: {log:#?}"
    );
}

async fn staging_deployments(app: &TestApp) -> Vec<Value> {
    app.admin(
        Method::GET,
        "/api/v1/apps/web/history?environment=staging",
        &[],
        axum::body::Body::empty(),
    )
    .await
    .json()["deployments"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

async fn what_a_dead_replica_left_after_finishing_is_taken_over_once(backend: Backend) {
    let app = app_with(backend, Scripted::new(0, false, Duration::ZERO), settings()).await;
    let yaml = "kind: Pipeline\nname: web\nstages:\n  - name: dev\n  - name: staging\n    auto: true\n---\n\
kind: Application\nname: web\ntype: container\nrepository: acme/web\npipeline: web\n\
environments:\n  dev:\n    target:\n      record: {}\n  staging:\n    target:\n      record: {}\n";
    apply(&app, yaml).await;
    let digest = push_image(&app, "acme/web", "v1", "follow-up")
        .await
        .manifest
        .digest;
    // A replica finished deploying the digest to dev and died before promoting it into
    // the auto stage after it: the job is finished, its follow-up due.
    let finished: &'static str = Box::leak(
        format!(
            "INSERT INTO deployments (application, environment, digest, reason, state, target, requested_by, started_at, finished_at) \
             VALUES ('web', 'dev', '{digest}', 'promotion', 'deployed', 'record', 'admin', 1, 1)"
        )
        .into_boxed_str(),
    );
    app.database().execute_raw(finished).await;
    app.database()
        .execute_raw("INSERT INTO deploy_jobs (deployment_id, run_after, attempts, finished_at, followup_due) SELECT id, 0, 1, 1, 0 FROM deployments")
        .await;
    let mut staging = Vec::new();
    for _ in 0..100 {
        staging = staging_deployments(&app).await;
        if staging.iter().any(|d| d["state"] == "deployed") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        staging.len(),
        1,
        "auto-promoted into staging once: {staging:?}"
    );
    assert_eq!(staging[0]["digest"], digest.as_str());
    assert_eq!(staging[0]["state"], "deployed");
    // Taken over again (as if the taking replica died before marking it done): the
    // auto-promotion happened already, so nothing more happens.
    app.database().execute_raw("UPDATE deploy_jobs SET followup_due = 0, lease_owner = NULL, lease_until = NULL WHERE finished_at IS NOT NULL").await;
    // Wait until a worker has taken both follow-ups over and finished them.
    let last = staging[0]["id"].as_i64().expect("id");
    let mut pending: Vec<i64> = (1..=last).collect();
    for _ in 0..200 {
        let mut still = Vec::new();
        for id in pending {
            let job = app.store.jobs().get(id).await.expect("store answers");
            if job.is_some_and(|job| job.followup_due.is_some()) {
                still.push(id);
            }
        }
        pending = still;
        if pending.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        pending.is_empty(),
        "follow-ups never taken over: {pending:?}"
    );
    assert_eq!(
        staging_deployments(&app).await.len(),
        1,
        "not promoted twice"
    );
}

both_backends!(
    transient_failures_are_retried_until_the_deployment_succeeds,
    a_job_gives_up_when_its_attempts_run_out,
    a_permanent_failure_is_not_retried,
    an_attempt_past_the_timeout_fails,
    a_job_longer_than_its_lease_is_kept_by_heartbeats_and_run_once,
    the_log_of_an_unknown_deployment_is_not_found_and_bad_pages_are_refused,
    a_job_whose_replicas_keep_dying_gives_up,
    what_a_dead_replica_left_after_finishing_is_taken_over_once
);
