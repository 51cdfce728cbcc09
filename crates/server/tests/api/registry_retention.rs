//! Retention policies, applied by a garbage collection pass: a promotion pin overrides
//! every age and count rule (what an environment runs, its rollback window and
//! rollback target, pending promotions, the release tier), index children and
//! referrers go with their root, a dry run changes nothing and says why, and every
//! expiry is checked again, and audited, when it is carried out.

use std::time::Duration;

use axum::body::Body;
use http::{Method, StatusCode};
use serde_json::{Value, json};
use store::{Expiry, ExpiryOutcome, PinScope};
use testkit::{TestApp, app_tests};

use crate::support::{
    Blob, EMPTY_JSON_MEDIA_TYPE, Image, Manifest, apply, assert_status, call, get, image_index,
    push_blob, push_image, push_manifest, user_with_roles as user,
};

/// dev (auto) → staging → prod (1 staff), on the `record` target, with retention that
/// would expire everything older than a second but the pins, and a rollback window
/// of two deployments.
const PINNED: &str = r#"kind: Pipeline
name: standard
stages:
  - name: dev
    auto: true
  - name: staging
  - name: prod
    gate:
      approvals: [{ role: staff, count: 1 }]
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
retention:
  keep_tagged: 0
  expire_untagged_after: 1s
  expire_after: { dev: 1s, rc: 1s, release: 1s }
  rollback_window: 2
"#;

/// Runs a pass through the API (as `gantry gc` does) and returns its report.
async fn gc(app: &TestApp, dry_run: bool) -> Value {
    let response = app
        .admin(
            Method::POST,
            "/api/v1/gc",
            &[("content-type", "application/json")],
            json!({ "dry_run": dry_run }).to_string(),
        )
        .await;
    assert_status(&response, StatusCode::OK);
    let report = response.json();
    assert_eq!(report["errors"], json!([]), "{report}");
    report
}

/// The retention of `repository` in a report.
fn retention<'a>(report: &'a Value, repository: &str) -> &'a Value {
    report["retention"]
        .as_array()
        .and_then(|all| all.iter().find(|r| r["repository"] == repository))
        .unwrap_or_else(|| panic!("no retention of {repository} in {report}"))
}

fn digests(list: &Value) -> Vec<String> {
    let mut digests: Vec<String> = list
        .as_array()
        .into_iter()
        .flatten()
        .map(|item| item["digest"].as_str().unwrap_or_default().to_owned())
        .collect();
    digests.sort();
    digests
}

fn sorted(items: &[&str]) -> Vec<String> {
    let mut items: Vec<String> = items.iter().map(|s| (*s).to_owned()).collect();
    items.sort();
    items
}

async fn pulls(app: &TestApp, repository: &str, reference: &str) -> bool {
    get(app, &format!("/v2/{repository}/manifests/{reference}"))
        .await
        .status
        == StatusCode::OK
}

/// A signature-like referrer of `subject`, pushed untagged.
async fn push_referrer(
    app: &TestApp,
    repository: &str,
    subject: &Manifest,
    text: &str,
) -> Manifest {
    let empty = Blob::new("{}");
    push_blob(app, repository, &empty).await;
    let payload = Blob::new(text);
    push_blob(app, repository, &payload).await;
    let referrer = Manifest::from_json(&json!({
        "schemaVersion": 2,
        "mediaType": registry::OCI_MANIFEST,
        "artifactType": "application/vnd.example.signature",
        "config": empty.descriptor(EMPTY_JSON_MEDIA_TYPE),
        "layers": [payload.descriptor("application/octet-stream")],
        "subject": subject.descriptor(),
    }));
    push_manifest(app, repository, &referrer.digest, &referrer).await;
    referrer
}

async fn deploy(app: &TestApp, token: &str, environment: &str, digest: &str) -> Value {
    let response = call(
        app,
        Method::POST,
        "/api/v1/promotions",
        token,
        json!({ "application": "web-app", "environment": environment, "digest": digest }),
    )
    .await;
    assert!(response.status.is_success(), "{}", response.text());
    response.json()
}

app_tests! {
    async fn retention_never_selects_a_promoted_digest_or_a_rollback_target_however_old(app) {
        apply(&app, PINNED).await;
        let dana = user(&app, "dana", false, &["developer"]).await;
        let sam = user(&app, "sam", false, &["staff@web-app"]).await;
        let repository = "acme/web-app";
        let mut images: Vec<Image> = Vec::new();
        for n in 1..=6 {
            images.push(push_image(&app, repository, &format!("v{n}"), &format!("image {n}")).await);
        }
        let digest = |n: usize| images[n - 1].manifest.digest.clone();
        // A multi-platform index of two untagged images, tagged itself.
        let amd = Image::new("index child amd64");
        let arm = Image::new("index child arm64");
        for child in [&amd, &arm] {
            child.push_blobs(&app, repository).await;
            push_manifest(&app, repository, &child.manifest.digest, &child.manifest).await;
        }
        let index = Manifest::from_json(&image_index(&[&amd.manifest, &arm.manifest]));
        push_manifest(&app, repository, "multi", &index).await;
        // Signatures of what prod will run and of what nothing will.
        let kept_signature = push_referrer(&app, repository, &images[0].manifest, "signature of v1").await;
        let doomed_signature = push_referrer(&app, repository, &images[5].manifest, "signature of v6").await;

        // dev ran v1, v2, the index, v3 and v4 (its window of two: v4, which it runs,
        // and v3, where a rollback goes); staging ran v1 and runs the index; prod runs
        // v1 and has v5 pending.
        for target in [digest(1), digest(2), index.digest.clone(), digest(3), digest(4)] {
            deploy(&app, &dana, "dev", &target).await;
        }
        deploy(&app, &dana, "staging", &digest(1)).await;
        let prod = deploy(&app, &dana, "prod", &digest(1)).await;
        let prod_id = prod["id"].as_i64().expect("id");
        let response = call(&app, Method::POST, &format!("/api/v1/promotions/{prod_id}/approve"), &sam, json!({})).await;
        assert!(response.status.is_success(), "{}", response.text());
        assert_eq!(response.json()["state"], "deployed", "{}", response.text());
        deploy(&app, &dana, "staging", &index.digest).await;
        let pending = deploy(&app, &dana, "prod", &digest(5)).await;
        assert_eq!(pending["state"], "waiting", "{pending}");

        // Older than every limit now.
        tokio::time::sleep(Duration::from_millis(1300)).await;
        let before = app.database().snapshot().await;
        let dry = gc(&app, true).await;
        assert_eq!(app.database().snapshot().await, before, "a dry run changes nothing");
        let planned = retention(&dry, repository);
        assert_eq!(planned["policy"], "Application/web-app");
        // v2's deployment to dev was attested: its attestations (referrers) go with it;
        // those of what stays pinned stay.
        let v2_attestations = digests(&get(&app, &format!("/v2/{repository}/referrers/{}", digest(2))).await.json()["manifests"]);
        assert_eq!(v2_attestations.len(), 2, "v2's deployment is attested");
        let v1_attestations = digests(&get(&app, &format!("/v2/{repository}/referrers/{}", digest(1))).await.json()["manifests"]);
        let mut doomed = sorted(&[&digest(2), &digest(6), &doomed_signature.digest]);
        doomed.extend(v2_attestations.iter().cloned());
        doomed.sort();
        assert_eq!(digests(&planned["expired"]), doomed, "{planned}");
        // Each pinned digest is listed with the pin that saved it and the rule it escaped.
        let saved = planned["saved"].as_array().expect("saved");
        let pins_of = |d: &str| -> String {
            saved
                .iter()
                .find(|s| s["digest"] == d)
                .map(|s| s["pins"].to_string())
                .unwrap_or_else(|| panic!("{d} is not among the saved: {planned}"))
        };
        assert!(pins_of(&digest(1)).contains("prod runs it"), "{planned}");
        assert!(pins_of(&digest(3)).contains("a rollback of dev would return to it"), "{planned}");
        assert!(pins_of(&digest(3)).contains("within its rollback window"), "{planned}");
        assert!(pins_of(&digest(4)).contains("dev runs it"), "{planned}");
        assert!(pins_of(&digest(5)).contains("is pending"), "{planned}");
        assert!(pins_of(&index.digest).contains("staging runs it"), "{planned}");
        for entry in saved {
            assert!(entry["rule"].as_str().is_some_and(|rule| rule.contains("older than 1s")), "{entry}");
        }
        let v2 = planned["expired"].as_array().expect("expired").iter().find(|e| e["digest"] == digest(2).as_str()).expect("v2").clone();
        assert_eq!(v2["tier"], "rc", "v2 was deployed to dev: {v2}");
        assert_eq!(v2["tags"], json!(["v2"]));

        let report = gc(&app, false).await;
        assert_eq!(report["manifests_expired"], 5, "{report}");
        assert_eq!(digests(&retention(&report, repository)["expired"]), doomed);
        for gone in &doomed {
            assert!(!pulls(&app, repository, gone).await, "{gone} expired");
        }
        assert!(!pulls(&app, repository, "v2").await, "its tag went with it");
        for kept in [digest(1), digest(3), digest(4), digest(5), index.digest.clone(),
                     amd.manifest.digest.clone(), arm.manifest.digest.clone(), kept_signature.digest.clone()]
            .into_iter()
            .chain(v1_attestations.iter().cloned())
        {
            assert!(pulls(&app, repository, &kept).await, "{kept} is pinned or goes with a pinned root");
        }
        // Each expiry is audited, by gc, with the rule.
        let export = app.admin(Method::GET, "/api/v1/audit/export", &[], Body::empty()).await.text();
        let expiries: Vec<Value> = export
            .lines()
            .map(|line| serde_json::from_str::<Value>(line).expect("JSON"))
            .filter(|entry| entry["action"] == "expire")
            .collect();
        assert_eq!(expiries.len(), 5, "{export}");
        for entry in &expiries {
            assert_eq!(entry["actor"], "gc");
            let payload: Value = serde_json::from_str(entry["payload"].as_str().expect("payload")).expect("JSON");
            assert_eq!(payload["policy"], "Application/web-app", "{entry}");
            assert!(payload["rule"].as_str().is_some_and(|rule| !rule.is_empty()), "{entry}");
            assert!(payload["tier"].as_str().is_some(), "{entry}");
        }

        // A rollback to what retention expired is refused clearly; the default one
        // goes to the pinned target.
        let rollback = "/api/v1/apps/web-app/environments/dev/rollback";
        let response = call(&app, Method::POST, rollback, &dana, json!({ "to": digest(2) })).await;
        assert_status(&response, StatusCode::CONFLICT);
        assert!(response.text().contains("retention expired it"), "{}", response.text());
        let response = call(&app, Method::POST, rollback, &dana, json!({ "reason": "bad release" })).await;
        assert_status(&response, StatusCode::CREATED);
        assert_eq!(response.json()["digest"], digest(3).as_str());

        // The blobs of what expired are collected; everything kept still pulls whole.
        let third = gc(&app, false).await;
        assert_eq!(third["manifests_expired"], 0, "{third}");
        for kept in [&images[0], &images[2], &images[3], &images[4], &amd, &arm] {
            let layer = get(&app, &format!("/v2/{repository}/blobs/{}", kept.layer.digest)).await;
            assert_status(&layer, StatusCode::OK);
        }
    }

    async fn an_expiry_checks_its_pins_and_the_manifest_again_when_it_is_carried_out(app) {
        apply(&app, PINNED).await;
        let dana = user(&app, "dana", false, &["developer"]).await;
        let repository_name = "acme/web-app";
        let pending = push_image(&app, repository_name, "pending", "pending image").await;
        let running = push_image(&app, repository_name, "running", "running image").await;
        let retagged = push_image(&app, repository_name, "retagged", "retagged image").await;
        let free = push_image(&app, repository_name, "free", "free image").await;
        deploy(&app, &dana, "dev", &running.manifest.digest).await;
        let waiting = deploy(&app, &dana, "prod", &pending.manifest.digest).await;
        assert_eq!(waiting["state"], "waiting");
        // Another tag for one of them after "the decision".
        push_manifest(&app, repository_name, "retagged-too", &retagged.manifest).await;

        let store = &app.store;
        let repository = store
            .repositories()
            .get(&domain::RepoName::parse(repository_name).expect("name"))
            .await
            .expect("read")
            .expect("the repository");
        let environments = vec!["dev".to_owned(), "staging".to_owned(), "prod".to_owned()];
        let scope = PinScope {
            application: "web-app",
            environments: &environments,
            rollback_window: 2,
            release_repository: "release/acme/web-app",
        };
        let expire = |digest: &str, tags: Vec<String>| {
            let digest = digest.to_owned();
            let scope = scope.clone();
            let repository = repository.clone();
            async move {
                store
                    .retention()
                    .expire(&Expiry {
                        repository: &repository,
                        digest: &digest,
                        tags: &tags,
                        scope: Some(scope),
                        actor: "gc",
                        reason: json!({ "policy": "test" }),
                        now: store::now_millis(),
                    })
                    .await
                    .expect("the expiry runs")
            }
        };
        match expire(&pending.manifest.digest, vec!["pending".into()]).await {
            ExpiryOutcome::Pinned(pins) => assert!(
                pins.iter().any(|pin| pin.to_string().contains("promotion")),
                "{pins:?}"
            ),
            other => panic!("a pending promotion pins it: {other:?}"),
        }
        match expire(&running.manifest.digest, vec!["running".into()]).await {
            ExpiryOutcome::Pinned(pins) => assert!(
                pins.iter().any(|pin| pin.to_string() == "dev runs it"),
                "{pins:?}"
            ),
            other => panic!("what dev runs is pinned: {other:?}"),
        }
        match expire(&retagged.manifest.digest, vec!["retagged".into()]).await {
            ExpiryOutcome::Changed(reason) => assert!(reason.contains("tags changed"), "{reason}"),
            other => panic!("a manifest tagged since is left alone: {other:?}"),
        }
        for digest in [&pending.manifest.digest, &running.manifest.digest, &retagged.manifest.digest] {
            assert!(pulls(&app, repository_name, digest).await);
        }
        assert_eq!(expire(&free.manifest.digest, vec!["free".into()]).await, ExpiryOutcome::Expired);
        assert!(!pulls(&app, repository_name, &free.manifest.digest).await);
        assert_eq!(expire(&free.manifest.digest, vec!["free".into()]).await, ExpiryOutcome::Gone);
    }

    async fn a_retention_policy_matched_by_glob_expires_by_count_and_age_and_keeps_tags_outside_its_filter(app) {
        apply(&app, r#"kind: RetentionPolicy
name: team-builds
repositories: ["team/*"]
keep_tagged: 2
tags: ["sha-*"]
expire_untagged_after: 1s
expire_after: { dev: 1s }
---
kind: RetentionPolicy
name: catch-all
repositories: ["*"]
priority: 200
keep_tagged: 1000
"#).await;
        let mut builds = Vec::new();
        for n in 1..=4 {
            builds.push(push_image(&app, "team/api", &format!("sha-{n}"), &format!("build {n}")).await);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let release = push_image(&app, "team/api", "v1.0", "release build").await;
        push_manifest(&app, "team/api", "sha-5", &release.manifest).await;
        let untagged = Image::new("pushed by digest");
        untagged.push_blobs(&app, "team/api").await;
        push_manifest(&app, "team/api", &untagged.manifest.digest, &untagged.manifest).await;
        let elsewhere = push_image(&app, "other/api", "sha-1", "another repository").await;
        tokio::time::sleep(Duration::from_millis(1300)).await;

        let report = gc(&app, false).await;
        let team = retention(&report, "team/api");
        assert_eq!(team["policy"], "RetentionPolicy/team-builds");
        // The two newest sha-* builds stay; the older ones and the untagged one go;
        // the release carries a tag outside the filter and stays.
        assert_eq!(
            digests(&team["expired"]),
            sorted(&[&builds[0].manifest.digest, &builds[1].manifest.digest, &untagged.manifest.digest]),
            "{team}"
        );
        assert_eq!(retention(&report, "other/api")["policy"], "RetentionPolicy/catch-all");
        assert_eq!(retention(&report, "other/api")["expired"], json!([]));
        for (reference, kept) in [("sha-1", false), ("sha-2", false), ("sha-3", true), ("sha-4", true), ("v1.0", true), ("sha-5", true)] {
            assert_eq!(pulls(&app, "team/api", reference).await, kept, "{reference}");
        }
        assert!(pulls(&app, "other/api", &elsewhere.manifest.digest).await);
        // Their blobs are collected once the grace window has passed.
        let response = app.admin(Method::GET, "/api/v1/gc", &[], Body::empty()).await;
        assert_status(&response, StatusCode::OK);
        assert!(response.json()["manifests_deleted"].as_i64().is_some_and(|n| n >= 3), "{}", response.text());
    }
}
