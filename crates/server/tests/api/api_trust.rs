//! `/api/v1`: trust policies as declared resources — applied beside (or after) the
//! applications they name, listed and fetched under `trustpolicies`, diffed on a dry
//! run, and refused at the field that breaks a rule without changing anything.

use axum::body::Body;
use domain::ResourceKind;
use domain::pipeline::Role;
use http::{Method, StatusCode};
use serde_json::Value;
use testkit::TestApp;

use crate::api_apply::{SPEC_EXAMPLE, actions, apply, assert_api_error, triple};
use crate::support::{assert_status, user_token};

/// A policy for CI of `acme/web-app` on main, deploying `web-app` to dev and staging.
const POLICY: &str = r#"kind: TrustPolicy
name: web-ci
issuer: https://token.actions.githubusercontent.com
audience: gantry
claims:
  repository: acme/web-app
  ref: refs/heads/main
role: developer
applications: [web-app]
environments: [dev, staging]
max_token_lifetime: 30m
"#;

/// `GET {uri}` as the admin.
async fn admin_get(app: &TestApp, uri: &str) -> Value {
    let response = app.admin(Method::GET, uri, &[], Body::empty()).await;
    assert_status(&response, StatusCode::OK);
    response.json()
}

/// The stored `web-ci` policy's `(revision, canonical text)`, if any.
async fn stored_policy(app: &TestApp) -> Option<(i64, String)> {
    app.store
        .resources()
        .get(ResourceKind::TrustPolicy, "web-ci")
        .await
        .expect("store answers")
        .map(|stored| (stored.revision, stored.canonical))
}

testkit::app_tests! {
    async fn a_trust_policy_applies_beside_its_application_and_is_listed_and_fetched(app) {
        let response = apply(&app, "", &format!("{SPEC_EXAMPLE}---\n{POLICY}")).await;
        assert_status(&response, StatusCode::OK);
        let body = response.json();
        assert_eq!(
            actions(&body),
            vec![
                triple("Pipeline", "standard", "create"),
                triple("Application", "web-app", "create"),
                triple("TrustPolicy", "web-ci", "create"),
            ]
        );
        assert_eq!(body["resources"][2]["revision"], 1);
        assert_eq!(body["created_repositories"], serde_json::json!(["acme/web-app"]));

        let listed = admin_get(&app, "/api/v1/resources/trustpolicies").await;
        assert_eq!(listed["items"].as_array().map(Vec::len), Some(1), "{listed}");
        assert_eq!(listed["items"][0]["kind"], "TrustPolicy");
        assert_eq!(listed["items"][0]["name"], "web-ci");
        assert_eq!(listed["items"][0]["revision"], 1);
        assert_eq!(listed["next"], Value::Null);

        let fetched = admin_get(&app, "/api/v1/resources/trustpolicies/web-ci").await;
        assert_eq!(fetched["kind"], "TrustPolicy");
        let canonical = fetched["canonical"].as_str().expect("canonical text");
        let policy = resources::trust_policy_from_canonical(canonical)
            .unwrap_or_else(|errors| panic!("{errors}\n{canonical}"));
        assert_eq!((policy.name.as_str(), policy.role), ("web-ci", Role::Developer));
        let grants: Vec<String> = policy.grants().iter().map(ToString::to_string).collect();
        assert_eq!(grants, ["developer@web-app/dev", "developer@web-app/staging"]);
        let all = app.store.resources().all(ResourceKind::TrustPolicy).await.expect("store answers");
        assert_eq!(all.iter().map(|stored| stored.canonical.as_str()).collect::<Vec<_>>(), [canonical]);

        let missing = app
            .admin(Method::GET, "/api/v1/resources/trustpolicies/web-app", &[], Body::empty())
            .await;
        assert_api_error(&missing, StatusCode::NOT_FOUND, "not_found");
        let audit = app.store.audit().entries(0, 100).await.expect("audit log");
        assert!(
            audit.iter().any(|entry| entry.actor == "admin" && entry.subject == "TrustPolicy/web-ci"),
            "{audit:?}"
        );
    }

    async fn a_user_who_is_not_an_admin_may_read_trust_policies_but_not_apply_them(app) {
        assert_status(&apply(&app, "", &format!("{SPEC_EXAMPLE}---\n{POLICY}")).await, StatusCode::OK);
        let authorization = format!("Bearer {}", user_token(&app, "dev").await);
        let changed = POLICY.replace("role: developer", "role: platform");
        let response = app
            .send(
                Method::POST,
                "/api/v1/apply",
                &[("authorization", &authorization), crate::api_apply::YAML],
                changed,
            )
            .await;
        assert_api_error(&response, StatusCode::FORBIDDEN, "forbidden");
        let listed = app
            .send(
                Method::GET,
                "/api/v1/resources/trustpolicies",
                &[("authorization", &authorization)],
                Body::empty(),
            )
            .await;
        assert_status(&listed, StatusCode::OK);
        assert_eq!(listed.json()["items"][0]["name"], "web-ci");
        assert_eq!(stored_policy(&app).await.map(|(revision, _)| revision), Some(1));
    }

    async fn a_policy_may_name_an_application_applied_earlier_and_its_change_shows_in_a_dry_run(app) {
        assert_status(&apply(&app, "", SPEC_EXAMPLE).await, StatusCode::OK);
        let created = apply(&app, "", POLICY).await;
        assert_status(&created, StatusCode::OK);
        assert_eq!(actions(&created.json()), vec![triple("TrustPolicy", "web-ci", "create")]);
        let (_, before) = stored_policy(&app).await.expect("stored");

        let shorter = POLICY.replace("max_token_lifetime: 30m", "max_token_lifetime: 15m");
        let dry_run = apply(&app, "dry_run=true", &shorter).await;
        assert_status(&dry_run, StatusCode::OK);
        let body = dry_run.json();
        assert_eq!(body["dry_run"], true);
        assert_eq!(actions(&body), vec![triple("TrustPolicy", "web-ci", "update")]);
        assert_eq!(body["resources"][0]["revision"], 1);
        let changed: Vec<&str> = body["resources"][0]["diff"]
            .as_str()
            .expect("a diff")
            .lines()
            .filter(|line| !line.starts_with("  "))
            .collect();
        assert_eq!(
            changed,
            ["-   \"max_token_lifetime\": \"30m\"", "+   \"max_token_lifetime\": \"15m\""]
        );
        assert_eq!(stored_policy(&app).await, Some((1, before)), "a dry run changes nothing");

        let applied = apply(&app, "", &shorter).await;
        assert_status(&applied, StatusCode::OK);
        assert_eq!(applied.json()["resources"][0]["revision"], 2);
        let fetched = admin_get(&app, "/api/v1/resources/trustpolicies/web-ci").await;
        assert_eq!(fetched["revision"], 2);
        assert!(fetched["canonical"].as_str().unwrap_or_default().contains("\"15m\""), "{fetched}");
        let again = apply(&app, "", &shorter).await;
        assert_eq!(actions(&again.json()), vec![triple("TrustPolicy", "web-ci", "unchanged")]);
    }

    async fn an_invalid_policy_is_refused_at_its_field_and_changes_nothing(app) {
        assert_status(&apply(&app, "", &format!("{SPEC_EXAMPLE}---\n{POLICY}")).await, StatusCode::OK);
        let stored_before = stored_policy(&app).await.expect("stored");
        let audit_before = app.store.audit().entries(0, 1000).await.expect("audit log").len();
        let cases = [
            (POLICY.replace("role: developer", "role: admin"), "role", "cannot be granted to CI"),
            (POLICY.replace("max_token_lifetime: 30m", "max_token_lifetime: 2h"), "max_token_lifetime", "between 1m and 1h"),
            (POLICY.replace("  repository: acme/web-app\n", ""), "claims", "must pin whose jobs these are"),
            (POLICY.replace("  ref: refs/heads/main\n", "  ref: refs/heads/main\n  aud: gantry\n"), "claims.aud", "checked by the verifier itself"),
            (POLICY.replace("https://token", "http://token"), "issuer", "https URL"),
            (POLICY.replace("[web-app]", "[web-app, billing]"), "applications", "application `billing` is neither declared in this file nor known to Gantry"),
            (POLICY.replace("applications: [web-app]", "applications: []"), "applications", "at least one application"),
            (format!("{POLICY}subject: anything\n"), "subject", "unknown field `subject`"),
        ];
        for (text, field, message) in cases {
            let response = apply(&app, "file=trust.yaml", &text).await;
            let body = assert_api_error(&response, StatusCode::BAD_REQUEST, "invalid_resources");
            let problems = body["detail"].as_array().expect("a list of problems");
            assert_eq!(problems.len(), 1, "{body}");
            assert_eq!(problems[0]["file"], "trust.yaml", "{body}");
            assert_eq!(problems[0]["document"]["index"], 1, "{body}");
            assert_eq!(problems[0]["document"]["kind"], "TrustPolicy", "{body}");
            assert_eq!(problems[0]["document"]["name"], "web-ci", "{body}");
            assert_eq!(problems[0]["field"], field, "{body}");
            assert!(problems[0]["message"].as_str().unwrap_or_default().contains(message), "{body}");
            let dry_run = apply(&app, "dry_run=true", &text).await;
            assert_api_error(&dry_run, StatusCode::BAD_REQUEST, "invalid_resources");
        }
        let renamed = POLICY.replace("name: web-ci", "name: api-ci").replace("role: developer", "role: staff");
        assert_api_error(&apply(&app, "", &renamed).await, StatusCode::BAD_REQUEST, "invalid_resources");
        assert_eq!(stored_policy(&app).await, Some(stored_before));
        let listed = admin_get(&app, "/api/v1/resources/trustpolicies").await;
        assert_eq!(listed["items"].as_array().map(Vec::len), Some(1), "api-ci was not created: {listed}");
        assert_eq!(app.store.audit().entries(0, 1000).await.expect("audit log").len(), audit_before);
    }
}
