//! The `command` target: the declared program runs for each deployment with what to
//! deploy in `GANTRY_*` variables and none of the server's environment beyond `PATH`,
//! `HOME` and the locale; its exit status decides; the tail of its output is recorded;
//! past the timeout its whole process group is killed.

use http::{Method, StatusCode};
use serde_json::{Value, json};
use testkit::TestApp;

use crate::support::{apply, assert_status, push_image};

/// A pipeline of one auto stage and an application deploying there with `sh -c SCRIPT
/// ARG` (`$0` in the script is `ARG`), within `timeout`.
async fn scripted(app: &TestApp, name: &str, script: &str, arg: &str, timeout: &str) {
    let yaml = format!(
        r#"kind: Pipeline
name: {name}
stages:
  - name: dev
    auto: true
---
kind: Application
name: {name}
type: container
repository: acme/{name}
pipeline: {name}
environments:
  dev:
    target:
      command:
        program: sh
        args: ["-c", {script}, "{arg}"]
        timeout: {timeout}
"#,
        script = serde_json::to_string(script).expect("a JSON string is a YAML string")
    );
    apply(app, yaml).await;
}

/// Pushes an image to the application's repository and notifies it (dev is auto);
/// the digest and the newest deployment of dev.
async fn build(app: &TestApp, name: &str) -> (String, Value) {
    let image = push_image(app, &format!("acme/{name}"), "v1", name).await;
    let digest = image.manifest.digest.clone();
    let response = app
        .admin(
            Method::POST,
            "/api/v1/builds",
            &[("content-type", "application/json")],
            json!({ "application": name, "digest": digest }).to_string(),
        )
        .await;
    assert_status(&response, StatusCode::CREATED);
    let history = app
        .admin(
            Method::GET,
            &format!("/api/v1/apps/{name}/history"),
            &[],
            axum::body::Body::empty(),
        )
        .await;
    assert_status(&history, StatusCode::OK);
    let deployment = history.json()["deployments"][0].clone();
    (digest, deployment)
}

registry_tests! {
    async fn a_command_deploys_with_gantry_variables_and_only_those(app) {
        let directory = tempfile::tempdir().expect("temporary directory");
        let env_file = directory.path().join("env");
        scripted(&app, "scripted", "env > \"$0\"; echo deployed $GANTRY_DIGEST to $GANTRY_ENV", &env_file.display().to_string(), "10s").await;
        let (digest, deployment) = build(&app, "scripted").await;
        assert_eq!(deployment["state"], "deployed", "{deployment}");
        let message = deployment["message"].as_str().unwrap_or_default();
        assert!(message.contains("exited 0"), "{message}");
        assert!(message.contains(&format!("deployed {digest} to dev")), "{message}");
        let env = std::fs::read_to_string(&env_file).expect("the command ran");
        let variables: std::collections::BTreeMap<&str, &str> =
            env.lines().filter_map(|line| line.split_once('=')).collect();
        assert_eq!(variables.get("GANTRY_APP"), Some(&"scripted"));
        assert_eq!(variables.get("GANTRY_ENV"), Some(&"dev"));
        assert_eq!(variables.get("GANTRY_DIGEST"), Some(&digest.as_str()));
        assert_eq!(variables.get("GANTRY_IMAGE").copied(), Some(format!("localhost/acme/scripted@{digest}").as_str()));
        assert_eq!(variables.get("GANTRY_REASON"), Some(&"promotion"));
        assert_eq!(variables.get("GANTRY_CONFIG"), Some(&"{}"));
        assert_eq!(variables.get("GANTRY_DEPLOYMENT_ID").copied(), deployment["id"].as_i64().map(|id| id.to_string()).as_deref());
        assert!(variables.contains_key("GANTRY_PROMOTION_ID"), "{env}");
        // Nothing else of the server's environment: only what the shell adds itself.
        for name in variables.keys() {
            assert!(
                name.starts_with("GANTRY_") || ["PATH", "HOME", "LANG", "TZ", "PWD", "SHLVL", "_", "OLDPWD"].contains(name),
                "{name} leaked into the command's environment:\n{env}"
            );
        }
    }

    async fn a_failing_command_fails_the_deployment_with_its_output(app) {
        scripted(&app, "broken", "echo starting; echo cannot reach the cluster >&2; exit 3", "unused", "10s").await;
        let (_, deployment) = build(&app, "broken").await;
        assert_eq!(deployment["state"], "failed", "{deployment}");
        let message = deployment["message"].as_str().unwrap_or_default();
        assert!(message.contains("exit status: 3"), "{message}");
        assert!(message.contains("stdout:\nstarting"), "{message}");
        assert!(message.contains("stderr:\ncannot reach the cluster"), "{message}");
        let status = app.admin(Method::GET, "/api/v1/apps/broken", &[], axum::body::Body::empty()).await.json();
        assert_eq!(status["environments"][0]["current"], Value::Null, "nothing runs there: {status}");
    }

    async fn a_command_past_its_timeout_is_killed_with_everything_it_started(app) {
        let directory = tempfile::tempdir().expect("temporary directory");
        let pid_file = directory.path().join("pid");
        scripted(&app, "stuck", "sleep 60 & echo $! > \"$0\"; wait", &pid_file.display().to_string(), "1s").await;
        let started = std::time::Instant::now();
        let (_, deployment) = build(&app, "stuck").await;
        assert!(started.elapsed() < std::time::Duration::from_secs(30), "{:?}", started.elapsed());
        assert_eq!(deployment["state"], "failed", "{deployment}");
        let message = deployment["message"].as_str().unwrap_or_default();
        assert!(message.contains("did not finish within 1 s"), "{message}");
        // The background `sleep` went with its group (at most a zombie awaiting its reaper).
        let pid = std::fs::read_to_string(&pid_file).expect("the script wrote its child's pid");
        let status = std::fs::read_to_string(format!("/proc/{}/status", pid.trim()));
        if let Ok(status) = status {
            assert!(status.lines().any(|line| line.starts_with("State:") && line.contains('Z')), "still running:\n{status}");
        }
    }

    async fn a_missing_program_fails_the_deployment_saying_so(app) {
        let yaml = r#"kind: Pipeline
name: nowhere
stages:
  - name: dev
    auto: true
---
kind: Application
name: nowhere
type: container
repository: acme/nowhere
pipeline: nowhere
environments:
  dev: { target: { command: { program: /nonexistent/deploy.sh } } }
"#;
        let response = app.admin(Method::POST, "/api/v1/apply", &[("content-type", "application/yaml")], yaml).await;
        assert_status(&response, StatusCode::OK);
        let (_, deployment) = build(&app, "nowhere").await;
        assert_eq!(deployment["state"], "failed", "{deployment}");
        assert!(deployment["message"].as_str().unwrap_or_default().contains("cannot run /nonexistent/deploy.sh"), "{deployment}");
    }
}
