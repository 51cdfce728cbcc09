//! Signed attestations of deployments, stored beside the image as OCI referrers in
//! cosign v3's layout: made once per successful deployment (a follow-up run again
//! writes the same bytes, nothing more), readable by anyone pulling the image, signed
//! by the key `GET /api/v1/keys` publishes; and the audit log's signed checkpoints.

use std::time::Duration;

use attest::PublicKey;
use attest::referrer::{BUNDLE_MEDIA_TYPE, PROMOTION_PREDICATE_TYPE, VSA_PREDICATE_TYPE};
use axum::body::Body;
use domain::Digest;
use http::{Method, StatusCode};
use serde_json::{Value, json};
use testkit::{TestApp, app_tests};

use crate::support::{apply, assert_status, call, get, push_image, user_with_roles as user};

/// dev (auto) → prod (a release stage, one `staff` approval), on the `record` target.
const PIPELINE: &str = r#"kind: Pipeline
name: attested
stages:
  - name: dev
    auto: true
  - name: prod
    tier: release
    gate:
      checks: [unit]
      approvals: [{ role: staff, count: 1 }]
---
kind: Application
name: web
type: container
repository: acme/web
pipeline: attested
environments:
  dev: { target: { record: {} } }
  prod: { target: { record: {} } }
"#;

async fn public_key(app: &TestApp) -> PublicKey {
    let keys = get(app, "/api/v1/keys").await.json();
    PublicKey::from_pem(keys["keys"][0]["public_key"].as_str().expect("a key")).expect("PEM")
}

/// The Sigstore bundle referrers of `digest` in `repository`, opened with `key`.
async fn attestations(
    app: &TestApp,
    repository: &str,
    digest: &str,
    key: &PublicKey,
) -> Vec<attest::referrer::OpenedAttestation> {
    let index = get(app, &format!("/v2/{repository}/referrers/{digest}")).await;
    assert_status(&index, StatusCode::OK);
    let subject = Digest::parse(digest).expect("digest");
    let mut opened = Vec::new();
    for entry in index.json()["manifests"].as_array().expect("manifests") {
        if entry["artifactType"] != BUNDLE_MEDIA_TYPE {
            continue;
        }
        // The index carries the annotations cosign filters on.
        assert_eq!(
            entry["annotations"]["dev.sigstore.bundle.content"],
            "dsse-envelope"
        );
        let referrer = entry["digest"].as_str().expect("digest");
        let manifest = get(app, &format!("/v2/{repository}/manifests/{referrer}")).await;
        assert_status(&manifest, StatusCode::OK);
        let (layer, _) = attest::referrer::bundle_layer(&manifest.body).expect("a bundle referrer");
        let bundle = get(app, &format!("/v2/{repository}/blobs/{layer}")).await;
        assert_status(&bundle, StatusCode::OK);
        opened.push(
            attest::referrer::open(
                &manifest.body,
                &bundle.body,
                &subject,
                std::slice::from_ref(key),
            )
            .expect("the attestation verifies with the published key"),
        );
    }
    opened.sort_by(|a, b| a.predicate_type.cmp(&b.predicate_type));
    opened
}

async fn export(app: &TestApp) -> Vec<Value> {
    app.admin(Method::GET, "/api/v1/audit/export", &[], Body::empty())
        .await
        .text()
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON"))
        .collect()
}

/// dev → staging, both `auto`, on the `record` target.
const CHAIN: &str = r#"kind: Pipeline
name: chain
stages:
  - name: dev
    auto: true
  - name: staging
    auto: true
---
kind: Application
name: web
type: container
repository: acme/web
pipeline: chain
environments:
  dev: { target: { record: {} } }
  staging: { target: { record: {} } }
"#;

/// `PIPELINE` with prod requiring a signed attestation at admission.
fn requiring() -> String {
    PIPELINE.replace(
        "  prod: { target: { record: {} } }\n",
        "  prod: { target: { record: {} }, require_attestation: true }\n",
    )
}

async fn admission(app: &TestApp, image: &str) -> Value {
    let uri = format!(
        "/api/v1/admission?env=prod&image={}",
        image.replace(':', "%3A").replace('@', "%40")
    );
    let response = app.admin(Method::GET, &uri, &[], Body::empty()).await;
    assert_status(&response, StatusCode::OK);
    response.json()
}

app_tests! {
    async fn a_deployment_is_attested_beside_the_image_with_its_custody_chain(app) {
        apply(&app, PIPELINE).await;
        let ci = user(&app, "ci", true, &["developer"]).await;
        let dana = user(&app, "dana", false, &["developer"]).await;
        let sam = user(&app, "sam", false, &["staff@web"]).await;
        let image = push_image(&app, "acme/web", "v1", "attested image").await;
        let digest = image.manifest.digest.clone();
        let response = call(&app, Method::POST, "/api/v1/builds", &ci,
            json!({ "application": "web", "digest": digest, "commit": "abc1234def", "run_id": "77" })).await;
        assert_status(&response, StatusCode::CREATED);
        assert_eq!(response.json()["promotion"]["state"], "deployed", "{}", response.text());
        let response = call(&app, Method::POST, "/api/v1/checks", &ci,
            json!({ "application": "web", "digest": digest, "name": "unit", "status": "passed" })).await;
        assert_status(&response, StatusCode::CREATED);
        let response = call(&app, Method::POST, "/api/v1/promotions", &dana,
            json!({ "application": "web", "environment": "prod", "digest": digest })).await;
        let id = response.json()["id"].as_i64().expect("id");
        let response = call(&app, Method::POST, &format!("/api/v1/promotions/{id}/approve"), &sam, json!({})).await;
        assert_eq!(response.json()["state"], "deployed", "{}", response.text());
        let key = public_key(&app).await;

        // dev's deployment: two attestations in the application's repository.
        let in_shared = attestations(&app, "acme/web", &digest, &key).await;
        let types: Vec<&str> = in_shared.iter().map(|a| a.predicate_type.as_str()).collect();
        assert_eq!(types, [PROMOTION_PREDICATE_TYPE, PROMOTION_PREDICATE_TYPE, VSA_PREDICATE_TYPE, VSA_PREDICATE_TYPE]);
        // prod's: in the release tier too, where prod serves from.
        let in_release = attestations(&app, "release/acme/web", &digest, &key).await;
        assert_eq!(in_release.len(), 2, "{in_release:#?}");
        let summary = &in_release[1].predicate;
        assert_eq!(summary["verificationResult"], "PASSED");
        assert_eq!(
            summary["verifiedLevels"],
            json!(["GANTRY_APPLICATION_web", "GANTRY_DEPLOYED_prod", "GANTRY_GATES_PASSED_prod"])
        );
        // It names the promotion attestation of the same deployment by its digest.
        assert_eq!(
            summary["inputAttestations"][0]["digest"]["sha256"],
            in_release[0].payload_digest.as_str()
        );
        assert_eq!(summary["resourceUri"], format!("oci://localhost/release/acme/web@{digest}"));
        assert!(summary["policy"]["digest"]["sha256"].as_str().is_some_and(|d| d.len() == 64), "{summary}");
        let asking = |application: &str| attest::verify::Requirements {
            environment: "prod".to_owned(),
            application: Some(application.to_owned()),
            roles: vec!["staff".to_owned()],
            now_millis: jiff::Timestamp::now().as_millisecond(),
            ..attest::verify::Requirements::default()
        };
        let accepted = attest::verify::judge(&in_release, &asking("web")).expect("accepted");
        assert_eq!(accepted.promotion.as_ref(), Some(&in_release[0]));
        assert!(attest::verify::judge(&in_release, &asking("other")).is_err());
        // The custody chain: provenance, checks, approvals with roles, the deployment,
        // the audit entry that recorded it.
        let custody = &in_release[0].predicate;
        assert_eq!(custody["application"], "web");
        assert_eq!(custody["environment"], "prod");
        assert_eq!(custody["previousEnvironment"], "dev");
        assert_eq!(custody["provenance"]["commit"], "abc1234def");
        assert_eq!(custody["provenance"]["runId"], "77");
        assert_eq!(custody["provenance"]["builder"], "ci");
        assert_eq!(custody["checks"][0]["name"], "unit");
        assert_eq!(custody["checks"][0]["passed"], true);
        assert_eq!(custody["approvals"][0]["approver"], "sam");
        assert_eq!(custody["approvals"][0]["roles"], json!(["staff"]));
        assert_eq!(custody["requestedBy"], "dana");
        assert_eq!(custody["override"], Value::Null);
        assert_eq!(custody["deployment"]["reason"], "promotion");
        assert_eq!(custody["deployment"]["target"], "record");
        let entries = export(&app).await;
        let deployed = entries
            .iter()
            .find(|entry| entry["sequence"] == custody["audit"]["sequence"])
            .expect("the audit entry it names");
        assert_eq!(deployed["action"], "deploy");
        assert_eq!(deployed["hash"], custody["audit"]["hash"]);
        assert!(deployed["payload"].as_str().is_some_and(|p| p.contains("\"state\":\"deployed\"")), "{deployed}");
        // Each signing audited once per attestation.
        let attests = entries.iter().filter(|entry| entry["action"] == "attest").count();
        assert_eq!(attests, 4);

        // The custody view says the same, and verifies each attestation now.
        let response = call(&app, Method::GET, &format!("/api/v1/artifacts/{digest}/custody"), &dana, Value::Null).await;
        assert_status(&response, StatusCode::OK);
        let view = response.json();
        let web = &view["applications"][0];
        assert_eq!(web["application"], "web");
        assert_eq!(web["built"]["commit"], "abc1234def");
        assert_eq!(web["checks"][0]["name"], "unit");
        assert_eq!(web["decisions"][0]["approver"], "sam");
        assert_eq!(web["decisions"][0]["decision"], "approve");
        assert_eq!(web["decisions"][0]["roles"], json!(["staff"]));
        // The roles held when approving, kept with the approval: taking them away
        // later changes neither the attestation nor the view.
        app.database().execute_raw("DELETE FROM user_roles WHERE user_name = 'sam'").await;
        let later = call(&app, Method::GET, &format!("/api/v1/artifacts/{digest}/custody"), &dana, Value::Null).await.json();
        assert_eq!(later["applications"][0]["decisions"][0]["roles"], json!(["staff"]), "{later}");
        assert_eq!(web["deployments"].as_array().map(Vec::len), Some(2), "{view}");
        let attested = web["attestations"].as_array().expect("attestations");
        assert_eq!(attested.len(), 4, "{view}");
        assert!(attested.iter().all(|a| a["verified"] == true && a["stored"] == true), "{view}");
        assert_eq!(attested[0]["environment"], "prod", "newest first: {view}");
        // An attestation altered in the database shows as not verifying.
        app.database()
            .execute_raw("UPDATE attestations SET bundle = REPLACE(bundle, '\"payloadType\"', '\"payloadType\" ') WHERE environment = 'prod'")
            .await;
        let view = call(&app, Method::GET, &format!("/api/v1/artifacts/{digest}/custody"), &dana, Value::Null).await.json();
        let attested = view["applications"][0]["attestations"].as_array().expect("attestations").clone();
        assert!(attested.iter().filter(|a| a["environment"] == "prod").all(|a| a["verified"] == false), "{view}");
        assert!(attested.iter().filter(|a| a["environment"] == "dev").all(|a| a["verified"] == true), "{view}");
        // Asking about bytes nobody knows, or not a digest.
        let unknown = format!("sha256:{}", "0".repeat(64));
        let response = call(&app, Method::GET, &format!("/api/v1/artifacts/{unknown}/custody"), &dana, Value::Null).await;
        assert_status(&response, StatusCode::NOT_FOUND);
        let response = call(&app, Method::GET, "/api/v1/artifacts/latest/custody", &dana, Value::Null).await;
        assert_status(&response, StatusCode::BAD_REQUEST);
    }

    async fn a_follow_up_run_again_writes_the_same_attestations_once(app) {
        apply(&app, PIPELINE).await;
        let ci = user(&app, "ci", true, &["developer"]).await;
        let image = push_image(&app, "acme/web", "v1", "once").await;
        let digest = image.manifest.digest.clone();
        let response = call(&app, Method::POST, "/api/v1/builds", &ci,
            json!({ "application": "web", "digest": digest })).await;
        assert_eq!(response.json()["promotion"]["state"], "deployed", "{}", response.text());
        let key = public_key(&app).await;
        let before = attestations(&app, "acme/web", &digest, &key).await;
        assert_eq!(before.len(), 2);
        // As if the replica died after signing, before the referrers were stored: the
        // referrers gone, nothing published, the follow-up due again.
        for attestation in &before {
            let response = app.admin(Method::DELETE, &format!("/v2/acme/web/manifests/{}", attestation.manifest_digest), &[], Body::empty()).await;
            assert_status(&response, StatusCode::ACCEPTED);
        }
        assert!(attestations(&app, "acme/web", &digest, &key).await.is_empty());
        app.database().execute_raw("UPDATE attestations SET published_at = NULL").await;
        app.database()
            .execute_raw("UPDATE deploy_jobs SET followup_due = 0, lease_owner = NULL, lease_until = NULL WHERE finished_at IS NOT NULL")
            .await;
        // A worker takes the follow-up over and publishes the recorded bytes.
        let mut after = Vec::new();
        for _ in 0..100 {
            after = attestations(&app, "acme/web", &digest, &key).await;
            if after.len() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let digests = |list: &[attest::referrer::OpenedAttestation]| -> Vec<String> {
            list.iter().map(|a| a.manifest_digest.to_string()).collect()
        };
        assert_eq!(digests(&after), digests(&before), "the same bytes, stored again");
        let attests = export(&app).await.iter().filter(|entry| entry["action"] == "attest").count();
        assert_eq!(attests, 2, "signed once");
        let recorded = app.store.attestations().of_deployment(1).await.expect("store answers");
        assert_eq!(recorded.len(), 2);
        assert!(recorded.iter().all(|record| record.published_at.is_some()), "{recorded:?}");
    }

    async fn a_rotated_key_signs_new_attestations_and_old_ones_still_verify_with_the_old_key(app) {
        apply(&app, PIPELINE).await;
        let ci = user(&app, "ci", true, &["developer"]).await;
        let first = push_image(&app, "acme/web", "v1", "before rotation").await.manifest.digest;
        call(&app, Method::POST, "/api/v1/builds", &ci, json!({ "application": "web", "digest": first })).await;
        let old = public_key(&app).await;
        let response = app.admin(Method::POST, "/api/v1/keys/rotate", &[], Body::empty()).await;
        assert_status(&response, StatusCode::CREATED);
        let new = public_key(&app).await;
        assert_ne!(old, new);
        let second = push_image(&app, "acme/web", "v2", "after rotation").await.manifest.digest;
        call(&app, Method::POST, "/api/v1/builds", &ci, json!({ "application": "web", "digest": second })).await;
        assert_eq!(attestations(&app, "acme/web", &first, &old).await[0].key_id, old.key_id());
        assert_eq!(attestations(&app, "acme/web", &second, &new).await[0].key_id, new.key_id());
        // Each verifies only with its own key.
        let index = get(&app, &format!("/v2/acme/web/referrers/{first}")).await.json();
        let referrer = index["manifests"][0]["digest"].as_str().expect("digest").to_owned();
        let manifest = get(&app, &format!("/v2/acme/web/manifests/{referrer}")).await;
        let (layer, _) = attest::referrer::bundle_layer(&manifest.body).expect("bundle");
        let bundle = get(&app, &format!("/v2/acme/web/blobs/{layer}")).await;
        let subject = Digest::parse(&first).expect("digest");
        assert!(attest::referrer::open(&manifest.body, &bundle.body, &subject, &[new]).is_err());
    }

    async fn audit_checkpoints_are_signed_listed_and_verify_with_the_public_key(app) {
        let response = app.admin(Method::POST, "/api/v1/audit/checkpoints", &[], Body::empty()).await;
        assert_status(&response, StatusCode::CREATED);
        let made = response.json();
        // The head is checkpointed already: the same checkpoint, not a new one.
        let again = app.admin(Method::POST, "/api/v1/audit/checkpoints", &[], Body::empty()).await;
        assert_status(&again, StatusCode::OK);
        assert_eq!(again.json(), made);
        let list = app.admin(Method::GET, "/api/v1/audit/checkpoints", &[], Body::empty()).await;
        assert_status(&list, StatusCode::OK);
        let checkpoints = list.json()["checkpoints"].as_array().expect("checkpoints").clone();
        assert_eq!(checkpoints, vec![made.clone()]);
        let key = public_key(&app).await;
        assert_eq!(made["key_id"], key.key_id());
        let entries = export(&app).await;
        let head = entries.last().expect("an entry");
        assert_eq!(made["sequence"], head["sequence"]);
        assert_eq!(made["hash"], head["hash"]);
        assert!(attest::checkpoint::verify(
            &key,
            made["sequence"].as_i64().expect("sequence"),
            made["hash"].as_str().expect("hash"),
            made["at_millis"].as_i64().expect("at"),
            made["signature"].as_str().expect("signature"),
        ));
    }

    async fn admission_requiring_an_attestation_admits_only_what_a_valid_one_covers(app) {
        apply(&app, requiring()).await;
        let ci = user(&app, "ci", true, &["developer"]).await;
        let dana = user(&app, "dana", false, &["developer"]).await;
        let sam = user(&app, "sam", false, &["staff@web"]).await;
        let digest = push_image(&app, "acme/web", "v1", "admitted").await.manifest.digest;
        call(&app, Method::POST, "/api/v1/builds", &ci, json!({ "application": "web", "digest": digest })).await;
        call(&app, Method::POST, "/api/v1/checks", &ci,
            json!({ "application": "web", "digest": digest, "name": "unit", "status": "passed" })).await;
        let response = call(&app, Method::POST, "/api/v1/promotions", &dana,
            json!({ "application": "web", "environment": "prod", "digest": digest })).await;
        let id = response.json()["id"].as_i64().expect("id");
        let response = call(&app, Method::POST, &format!("/api/v1/promotions/{id}/approve"), &sam, json!({})).await;
        assert_eq!(response.json()["state"], "deployed", "{}", response.text());
        let image = format!("localhost/release/acme/web@{digest}");
        let admitted = admission(&app, &image).await;
        assert_eq!(admitted["allowed"], true, "{admitted}");
        assert!(admitted["reason"].as_str().is_some_and(|r| r.contains("attested by sha256:")), "{admitted}");

        // A break-glass deployment past the shut gate (no check, no approval) is
        // admitted: its signed summary says an admin overrode the gate.
        let hotfix = push_image(&app, "acme/web", "v2", "hotfix").await.manifest.digest;
        call(&app, Method::POST, "/api/v1/builds", &ci, json!({ "application": "web", "digest": hotfix })).await;
        let response = app.admin(Method::POST, "/api/v1/promotions", &[("content-type", "application/json")],
            json!({ "application": "web", "environment": "prod", "digest": hotfix, "override_reason": "incident 7" }).to_string()).await;
        assert_eq!(response.json()["state"], "deployed", "{}", response.text());
        let overridden = admission(&app, &format!("localhost/release/acme/web@{hotfix}")).await;
        assert_eq!(overridden["allowed"], true, "{overridden}");
        let key = public_key(&app).await;
        let summary = attestations(&app, "release/acme/web", &hotfix, &key).await;
        assert_eq!(summary[1].predicate["verificationResult"], "FAILED");
        assert!(summary[1].predicate["verifiedLevels"].to_string().contains("GANTRY_GATES_OVERRIDDEN_prod"));
        assert_eq!(summary[0].predicate["override"]["reason"], "incident 7");

        // An attestation altered in the database no longer verifies.
        app.database()
            .execute_raw("UPDATE attestations SET bundle = REPLACE(bundle, '\"sig\":\"M', '\"sig\":\"N')")
            .await;
        app.database()
            .execute_raw("UPDATE attestations SET bundle = REPLACE(bundle, '\"payloadType\"', '\"payloadType\" ')")
            .await;
        let denied = admission(&app, &image).await;
        assert_eq!(denied["allowed"], false, "{denied}");
        assert!(denied["reason"].as_str().is_some_and(|r| r.contains("requires a signed attestation")), "{denied}");

        // None at all: denied, though the digest was promoted there.
        app.database().execute_raw("DELETE FROM attestations").await;
        let denied = admission(&app, &image).await;
        assert_eq!(denied["allowed"], false, "{denied}");
        assert!(denied["reason"].as_str().is_some_and(|r| r.contains("no signed verification summary for prod")), "{denied}");
    }

    async fn a_deployments_attestations_are_stored_before_the_next_stage_deploys(app) {
        apply(&app, CHAIN).await;
        let ci = user(&app, "ci", true, &["developer"]).await;
        let digest = push_image(&app, "acme/web", "v1", "chained").await.manifest.digest;
        let response = call(&app, Method::POST, "/api/v1/builds", &ci, json!({ "application": "web", "digest": digest })).await;
        assert_status(&response, StatusCode::CREATED);
        // Both stages deployed and attested; dev's attestations were stored before the
        // auto-promotion into staging began, not after its deployment.
        let entries = export(&app).await;
        let position = |action: &str, subject: &str| {
            entries
                .iter()
                .position(|entry| entry["action"] == action && entry["subject"] == subject)
                .unwrap_or_else(|| panic!("no {action} of {subject}: {entries:?}"))
        };
        assert!(position("attest", "web/dev") < position("promote", "web/staging"), "{entries:?}");
        assert!(position("attest", "web/staging") > position("deploy", "web/staging"));
        let key = public_key(&app).await;
        assert_eq!(attestations(&app, "acme/web", &digest, &key).await.len(), 4);
    }
}
