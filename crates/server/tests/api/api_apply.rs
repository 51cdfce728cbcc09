//! `/api/v1`: applying declared resources (dry run and for real), reading them back,
//! who may do which, the one error envelope, and the OpenAPI document.
//!
//! An apply answers 200 whether it created, changed or left everything alone: it is an
//! idempotent upsert of a whole file, and each resource's `action` says what happened.

use axum::body::Body;
use http::{Method, StatusCode};
use serde_json::Value;
use testkit::{TestApp, TestResponse};

use crate::support::{assert_status, push_image, user_token};

/// The example of SPEC §5.
pub(crate) const SPEC_EXAMPLE: &str = r#"kind: Pipeline
name: standard
stages:
  - name: dev
    auto: true
    gate: { checks: [unit-tests] }
  - name: staging
    gate:
      checks: [integration-tests]
      approvals: [{ role: staff, count: 1 }]
      soak: 30m
  - name: prod
    tier: release
    gate:
      checks: [e2e, { name: trivy, max: { critical: 0, high: 0 } }]
      approvals: [{ role: staff, count: 1 }, { role: client, count: 1 }]
      freeze: ["Fri 16:00 - Mon 08:00 Europe/London"]
---
kind: Application
name: web-app
type: container
repository: acme/web-app
pipeline: standard
environments:
  dev:     { target: { gitops: { repo: "git@…:acme/infra-config.git", file: apps/web-app/dev/values.yaml, key: image.digest } } }
  staging: { target: { gitops: { repo: "…", file: apps/web-app/staging/values.yaml, key: image.digest } } }
  prod:    { target: { registry-copy: { to: "prod-registry.example.com/acme/web-app" } } }
"#;

/// An application of its own that uses the stored pipeline `standard`.
const SECOND_APPLICATION: &str = r#"kind: Application
name: api
type: container
repository: acme/api
pipeline: standard
environments:
  dev: { target: { record: {} } }
  staging: { target: { record: {} } }
  prod: { target: { record: {} } }
"#;

pub(crate) const YAML: (&str, &str) = ("content-type", "application/yaml");

/// `POST /api/v1/apply?{query}` with `text`, as the admin.
pub(crate) async fn apply(app: &TestApp, query: &str, text: &str) -> TestResponse {
    app.admin(
        Method::POST,
        &format!("/api/v1/apply?{query}"),
        &[YAML],
        text.to_owned(),
    )
    .await
}

/// Asserts status and envelope `code`, showing the body if not.
#[track_caller]
pub(crate) fn assert_api_error(response: &TestResponse, status: StatusCode, code: &str) -> Value {
    let body = response.json();
    assert_eq!(
        (response.status, body["code"].as_str()),
        (status, Some(code)),
        "body: {}",
        response.text()
    );
    assert!(body["message"].is_string(), "{body}");
    body
}

/// `(kind, name, action)` of every resource of an apply answer.
pub(crate) fn actions(body: &Value) -> Vec<(String, String, String)> {
    body["resources"]
        .as_array()
        .expect("resources is a list")
        .iter()
        .map(|resource| {
            let field = |name: &str| resource[name].as_str().unwrap_or_default().to_owned();
            (field("kind"), field("name"), field("action"))
        })
        .collect()
}

pub(crate) fn triple(kind: &str, name: &str, action: &str) -> (String, String, String) {
    (kind.to_owned(), name.to_owned(), action.to_owned())
}

testkit::app_tests! {
    async fn the_spec_example_applies_and_creates_the_pipeline_the_application_and_its_repository(app) {
        let response = apply(&app, "dry_run=false", SPEC_EXAMPLE).await;
        assert_status(&response, StatusCode::OK);
        let body = response.json();
        assert_eq!(body["dry_run"], false);
        assert_eq!(
            actions(&body),
            vec![
                triple("Pipeline", "standard", "create"),
                triple("Application", "web-app", "create"),
            ]
        );
        assert_eq!(body["resources"][0]["revision"], 1);
        assert_eq!(body["created_repositories"], serde_json::json!(["acme/web-app"]));
        let stored = app
            .store
            .resources()
            .get(domain::ResourceKind::Application, "web-app")
            .await
            .expect("store answers");
        assert_eq!(stored.map(|resource| resource.revision), Some(1));
        push_image(&app, "acme/web-app", "v1", "first build").await;
        let audit = app.store.audit().entries(0, 100).await.expect("audit log");
        assert!(
            audit.iter().any(|entry| entry.actor == "admin" && entry.subject == "Application/web-app"),
            "{audit:?}"
        );
    }

    async fn the_engine_applies_a_file_for_any_caller_with_the_same_rules_as_the_api(app) {
        // The web UI and the API share the engine's apply: a bad file changes nothing,
        // a good one is stored and audited under the caller's name, a dry run stores
        // nothing.
        let engine = &app.state.engine;
        let broken = SPEC_EXAMPLE.replace("pipeline: standard", "pipeline: nowhere");
        match engine.apply("ops", "broken.yaml", &broken, false).await {
            Err(engine::ApplyError::Invalid(errors)) => {
                assert!(errors.to_string().contains("nowhere"), "{errors}");
            }
            other => panic!("a reference to no pipeline was not refused: {other:?}"),
        }
        let dry = engine.apply("ops", "spec.yaml", SPEC_EXAMPLE, true).await.expect("dry run");
        assert!(dry.dry_run);
        assert!(dry.resources.iter().all(|plan| plan.action == engine::PlannedAction::Create && plan.revision.is_none()));
        let stored = app.store.resources().get(domain::ResourceKind::Pipeline, "standard").await.expect("store answers");
        assert!(stored.is_none(), "a dry run or a refused file stored something");

        let applied = engine.apply("ops", "spec.yaml", SPEC_EXAMPLE, false).await.expect("apply");
        assert_eq!(applied.resources.len(), 2);
        assert!(applied.resources.iter().all(|plan| plan.revision == Some(1)));
        assert_eq!(applied.created_repositories.len(), 1);
        let audit = app.store.audit().entries(0, 100).await.expect("audit log");
        assert!(audit.iter().any(|entry| entry.actor == "ops" && entry.subject == "Pipeline/standard"), "{audit:?}");
    }

    async fn applying_the_same_file_again_reports_everything_unchanged(app) {
        assert_status(&apply(&app, "", SPEC_EXAMPLE).await, StatusCode::OK);
        let again = apply(&app, "", SPEC_EXAMPLE).await;
        assert_status(&again, StatusCode::OK);
        let body = again.json();
        assert_eq!(
            actions(&body),
            vec![
                triple("Pipeline", "standard", "unchanged"),
                triple("Application", "web-app", "unchanged"),
            ]
        );
        assert_eq!(body["resources"][1]["revision"], 1);
        assert_eq!(body["resources"][1]["diff"], "");
        assert_eq!(body["created_repositories"], serde_json::json!([]));
    }

    async fn a_changed_pipeline_shows_its_diff_in_a_dry_run_and_changes_only_when_applied(app) {
        assert_status(&apply(&app, "", SPEC_EXAMPLE).await, StatusCode::OK);
        let changed = SPEC_EXAMPLE.replace("soak: 30m", "soak: 1h");

        let dry_run = apply(&app, "dry_run=true", &changed).await;
        assert_status(&dry_run, StatusCode::OK);
        let body = dry_run.json();
        assert_eq!(body["dry_run"], true);
        assert_eq!(
            actions(&body),
            vec![
                triple("Pipeline", "standard", "update"),
                triple("Application", "web-app", "unchanged"),
            ]
        );
        let diff = body["resources"][0]["diff"].as_str().expect("a diff");
        assert!(diff.contains("-         \"soak\": \"30m\","), "{diff}");
        assert!(diff.contains("+         \"soak\": \"1h\","), "{diff}");
        let stored = app
            .store
            .resources()
            .get(domain::ResourceKind::Pipeline, "standard")
            .await
            .expect("store answers")
            .expect("stored");
        assert_eq!(stored.revision, 1, "a dry run changes nothing");
        assert!(stored.canonical.contains("30m"));

        let applied = apply(&app, "dry_run=false", &changed).await;
        assert_status(&applied, StatusCode::OK);
        let body = applied.json();
        assert_eq!(body["resources"][0]["action"], "update");
        assert_eq!(body["resources"][0]["revision"], 2);
        let fetched = app
            .admin(Method::GET, "/api/v1/resources/pipelines/standard", &[], Body::empty())
            .await;
        assert_status(&fetched, StatusCode::OK);
        assert_eq!(fetched.json()["revision"], 2);
        assert!(fetched.json()["canonical"].as_str().unwrap_or_default().contains("1h"));
    }

    async fn an_application_may_use_a_pipeline_applied_earlier(app) {
        assert_status(&apply(&app, "", SPEC_EXAMPLE).await, StatusCode::OK);
        let response = apply(&app, "", SECOND_APPLICATION).await;
        assert_status(&response, StatusCode::OK);
        assert_eq!(actions(&response.json()), vec![triple("Application", "api", "create")]);
    }

    async fn invalid_yaml_is_refused_naming_the_file_document_and_line(app) {
        let response = apply(&app, "file=gantry.yaml", "kind: Pipeline\nname: [unclosed\n").await;
        let body = assert_api_error(&response, StatusCode::BAD_REQUEST, "invalid_resources");
        let problem = &body["detail"][0];
        assert_eq!(problem["file"], "gantry.yaml", "{body}");
        assert_eq!(problem["document"]["index"], 1, "{body}");
        assert!(problem["line"].is_number(), "{body}");
        assert!(problem["message"].as_str().unwrap_or_default().contains("YAML"), "{body}");
    }

    async fn an_unknown_field_is_refused_naming_the_file_document_and_field(app) {
        let text = SPEC_EXAMPLE.replace("    auto: true", "    auto: true\n    colour: blue");
        let response = apply(&app, "file=gantry.yaml", &text).await;
        let body = assert_api_error(&response, StatusCode::BAD_REQUEST, "invalid_resources");
        let problems = body["detail"].as_array().expect("a list of problems");
        assert_eq!(problems.len(), 1, "{body}");
        assert_eq!(problems[0]["file"], "gantry.yaml");
        assert_eq!(problems[0]["document"]["index"], 1);
        assert_eq!(problems[0]["document"]["kind"], "Pipeline");
        assert_eq!(problems[0]["document"]["name"], "standard");
        assert!(
            problems[0]["field"].as_str().unwrap_or_default().starts_with("stages[0]"),
            "{body}"
        );
        assert!(problems[0]["message"].as_str().unwrap_or_default().contains("colour"), "{body}");
    }

    async fn an_application_naming_an_unknown_pipeline_is_refused_and_nothing_is_stored(app) {
        let response = apply(&app, "", SECOND_APPLICATION).await;
        let body = assert_api_error(&response, StatusCode::BAD_REQUEST, "invalid_resources");
        let problem = &body["detail"][0];
        assert_eq!(problem["file"], "request", "{body}");
        assert_eq!(problem["document"]["name"], "api");
        assert_eq!(problem["field"], "pipeline");
        assert!(problem["message"].as_str().unwrap_or_default().contains("standard"), "{body}");
        let listed = app
            .admin(Method::GET, "/api/v1/resources/applications", &[], Body::empty())
            .await;
        assert_eq!(listed.json()["items"], serde_json::json!([]));
    }

    async fn an_anonymous_apply_is_challenged_for_a_bearer_token(app) {
        let response = app
            .send(Method::POST, "/api/v1/apply", &[YAML], SPEC_EXAMPLE.to_owned())
            .await;
        assert_api_error(&response, StatusCode::UNAUTHORIZED, "unauthorized");
        assert_eq!(response.header("www-authenticate"), Some("Bearer realm=\"gantry\""));
        let wrong = app
            .send(
                Method::GET,
                "/api/v1/resources/pipelines",
                &[("authorization", "Bearer gnt_wrong")],
                Body::empty(),
            )
            .await;
        assert_api_error(&wrong, StatusCode::UNAUTHORIZED, "unauthorized");
        assert_eq!(wrong.header("www-authenticate"), Some("Bearer realm=\"gantry\""));
    }

    async fn a_user_who_is_not_an_admin_may_read_but_not_apply(app) {
        let token = user_token(&app, "dev").await;
        let authorization = format!("Bearer {token}");
        let response = app
            .send(
                Method::POST,
                "/api/v1/apply",
                &[("authorization", &authorization), YAML],
                SPEC_EXAMPLE.to_owned(),
            )
            .await;
        let body = assert_api_error(&response, StatusCode::FORBIDDEN, "forbidden");
        assert!(body["message"].as_str().unwrap_or_default().contains("resources:apply"), "{body}");
        assert_eq!(body["detail"]["permission"], "resources:apply");
        let listed = app
            .send(
                Method::GET,
                "/api/v1/resources/pipelines",
                &[("authorization", &authorization)],
                Body::empty(),
            )
            .await;
        assert_status(&listed, StatusCode::OK);
    }

    async fn a_body_that_is_not_yaml_is_refused_as_an_unsupported_media_type(app) {
        for content_type in ["application/json", "text/plain"] {
            let response = app
                .admin(
                    Method::POST,
                    "/api/v1/apply",
                    &[("content-type", content_type)],
                    SPEC_EXAMPLE.to_owned(),
                )
                .await;
            assert_api_error(&response, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
        }
        let missing = app
            .admin(Method::POST, "/api/v1/apply", &[], SPEC_EXAMPLE.to_owned())
            .await;
        assert_api_error(&missing, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
        for content_type in ["text/yaml", "application/x-yaml; charset=utf-8"] {
            let response = app
                .admin(
                    Method::POST,
                    "/api/v1/apply?dry_run=true",
                    &[("content-type", content_type)],
                    SPEC_EXAMPLE.to_owned(),
                )
                .await;
            assert_status(&response, StatusCode::OK);
        }
    }

    async fn a_body_over_one_mebibyte_is_refused_as_too_large(app) {
        let text = format!("# {}\n{SPEC_EXAMPLE}", "x".repeat(1 << 20));
        let response = apply(&app, "", &text).await;
        assert_api_error(&response, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    }

    async fn resources_are_listed_by_kind_in_pages_and_fetched_by_name(app) {
        assert_status(&apply(&app, "", SPEC_EXAMPLE).await, StatusCode::OK);
        assert_status(&apply(&app, "", SECOND_APPLICATION).await, StatusCode::OK);

        let first = app
            .admin(Method::GET, "/api/v1/resources/applications?limit=1", &[], Body::empty())
            .await;
        assert_status(&first, StatusCode::OK);
        let body = first.json();
        assert_eq!(body["items"][0]["name"], "api", "{body}");
        assert_eq!(body["items"][0]["kind"], "Application");
        assert_eq!(body["items"][0]["revision"], 1);
        assert!(body["items"][0]["updated_at"].as_str().unwrap_or_default().ends_with('Z'));
        assert_eq!(body["next"], "api");

        let second = app
            .admin(Method::GET, "/api/v1/resources/applications?limit=1&after=api", &[], Body::empty())
            .await;
        let body = second.json();
        assert_eq!(body["items"][0]["name"], "web-app", "{body}");
        assert_eq!(body["next"], Value::Null);

        let fetched = app
            .admin(Method::GET, "/api/v1/resources/applications/web-app", &[], Body::empty())
            .await;
        assert_status(&fetched, StatusCode::OK);
        let body = fetched.json();
        assert_eq!(body["kind"], "Application");
        assert!(body["canonical"].as_str().unwrap_or_default().contains("\"repository\": \"acme/web-app\""));

        let missing = app
            .admin(Method::GET, "/api/v1/resources/applications/nope", &[], Body::empty())
            .await;
        assert_api_error(&missing, StatusCode::NOT_FOUND, "not_found");
        let unknown_kind = app
            .admin(Method::GET, "/api/v1/resources/widgets", &[], Body::empty())
            .await;
        assert_api_error(&unknown_kind, StatusCode::NOT_FOUND, "not_found");
        let bad_limit = app
            .admin(Method::GET, "/api/v1/resources/pipelines?limit=0", &[], Body::empty())
            .await;
        assert_api_error(&bad_limit, StatusCode::BAD_REQUEST, "bad_request");
    }

    async fn the_openapi_document_describes_the_apply_endpoint(app) {
        let response = app
            .send(Method::GET, "/api/v1/openapi.json", &[], Body::empty())
            .await;
        assert_status(&response, StatusCode::OK);
        let document = response.json();
        assert!(document["openapi"].as_str().unwrap_or_default().starts_with("3."), "{document}");
        for path in ["/api/v1/apply", "/api/v1/resources/{kind}", "/api/v1/resources/{kind}/{name}"] {
            assert!(document["paths"][path].is_object(), "{path} missing: {document}");
        }
        assert!(document["components"]["schemas"]["ErrorBody"].is_object(), "{document}");
    }
}
