//! `GET /v2/<name>/referrers/<digest>`: the manifests whose `subject` is a digest, as an
//! image index, optionally filtered by artifact type; never a 404.

use http::StatusCode;
use serde_json::{Value, json};
use testkit::{TestApp, app_tests};

use crate::support::{
    Blob, CONFIG_MEDIA_TYPE, EMPTY_JSON_MEDIA_TYPE, Manifest, assert_error, assert_status, delete,
    get, push_blob, push_image, push_manifest, sha256,
};

const SIGNATURE_TYPE: &str = "application/vnd.example.signature.v1";
const SBOM_TYPE: &str = "application/spdx+json";

/// Pushes an artifact of `artifact_type` whose subject is `subject`, by digest.
async fn push_referrer(
    app: &TestApp,
    repository: &str,
    subject: &Value,
    artifact_type: &str,
    annotations: Option<Value>,
) -> Manifest {
    let empty = Blob::new("{}");
    let payload = Blob::new(format!("{artifact_type} payload for {}", subject["digest"]));
    push_blob(app, repository, &empty).await;
    push_blob(app, repository, &payload).await;
    let mut value = json!({
        "schemaVersion": 2,
        "mediaType": registry::OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": empty.descriptor(EMPTY_JSON_MEDIA_TYPE),
        "layers": [payload.descriptor("application/octet-stream")],
        "subject": subject,
    });
    if let Some(annotations) = annotations {
        value["annotations"] = annotations;
    }
    let manifest = Manifest::from_json(&value);
    push_manifest(app, repository, &manifest.digest, &manifest).await;
    manifest
}

/// The descriptor the referrers API must give for `manifest`.
fn referrer_descriptor(
    manifest: &Manifest,
    artifact_type: &str,
    annotations: Option<Value>,
) -> Value {
    let mut descriptor = manifest.descriptor();
    descriptor["artifactType"] = json!(artifact_type);
    if let Some(annotations) = annotations {
        descriptor["annotations"] = annotations;
    }
    descriptor
}

/// `descriptors` in the order the registry lists them: by digest.
fn by_digest(mut descriptors: Vec<Value>) -> Value {
    descriptors.sort_by(|a, b| a["digest"].as_str().cmp(&b["digest"].as_str()));
    Value::Array(descriptors)
}

async fn referrers(app: &TestApp, uri: &str) -> Value {
    let response = get(app, uri).await;
    assert_status(&response, StatusCode::OK);
    assert_eq!(response.header("content-type"), Some(registry::OCI_INDEX));
    let index = response.json();
    assert_eq!(index["schemaVersion"], json!(2));
    assert_eq!(index["mediaType"], json!(registry::OCI_INDEX));
    index["manifests"].clone()
}

app_tests! {
    async fn the_referrers_of_a_manifest_are_listed_as_an_image_index(app) {
        let image = push_image(&app, "acme/app", "v1", "signed").await;
        let subject = image.manifest.descriptor();
        let annotations =
            json!({ "org.opencontainers.image.created": "2024-05-01T00:00:00Z", "tool": "syft" });
        let signature = push_referrer(&app, "acme/app", &subject, SIGNATURE_TYPE, None).await;
        let sbom = push_referrer(
            &app,
            "acme/app",
            &subject,
            SBOM_TYPE,
            Some(annotations.clone()),
        )
        .await;
        let other = push_image(&app, "acme/app", "v2", "unrelated").await;
        push_referrer(
            &app,
            "acme/app",
            &other.manifest.descriptor(),
            SIGNATURE_TYPE,
            None,
        )
        .await;

        let listed = referrers(
            &app,
            &format!("/v2/acme/app/referrers/{}", image.manifest.digest),
        )
        .await;
        assert_eq!(
            listed,
            by_digest(vec![
                referrer_descriptor(&signature, SIGNATURE_TYPE, None),
                referrer_descriptor(&sbom, SBOM_TYPE, Some(annotations)),
            ])
        );
    }

    async fn an_image_referrer_without_an_artifact_type_is_listed_with_its_config_media_type(app) {
        let image = push_image(&app, "acme/app", "v1", "subject").await;
        let config = Blob::new("attached config");
        let layer = Blob::new("attached layer");
        push_blob(&app, "acme/app", &config).await;
        push_blob(&app, "acme/app", &layer).await;
        let mut value = crate::support::image_manifest(&config, &[&layer]);
        value["subject"] = image.manifest.descriptor();
        let attached = Manifest::from_json(&value);
        push_manifest(&app, "acme/app", &attached.digest, &attached).await;
        let listed = referrers(
            &app,
            &format!("/v2/acme/app/referrers/{}", image.manifest.digest),
        )
        .await;
        assert_eq!(
            listed,
            json!([referrer_descriptor(&attached, CONFIG_MEDIA_TYPE, None)])
        );
    }

    async fn the_artifact_type_filter_narrows_the_list_and_says_it_was_applied(app) {
        let image = push_image(&app, "acme/app", "v1", "filtered").await;
        let subject = image.manifest.descriptor();
        let signature = push_referrer(&app, "acme/app", &subject, SIGNATURE_TYPE, None).await;
        let sbom = push_referrer(&app, "acme/app", &subject, SBOM_TYPE, None).await;
        let uri = format!(
            "/v2/acme/app/referrers/{}?artifactType={SIGNATURE_TYPE}",
            image.manifest.digest
        );
        let response = get(&app, &uri).await;
        assert_status(&response, StatusCode::OK);
        assert_eq!(response.header("oci-filters-applied"), Some("artifactType"));
        assert_eq!(
            response.json()["manifests"],
            json!([referrer_descriptor(&signature, SIGNATURE_TYPE, None)])
        );
        let unfiltered = get(
            &app,
            &format!("/v2/acme/app/referrers/{}", image.manifest.digest),
        )
        .await;
        assert_eq!(unfiltered.header("oci-filters-applied"), None);
        assert_eq!(
            unfiltered.json()["manifests"].as_array().map(Vec::len),
            Some(2)
        );
        let encoded = get(
            &app,
            &format!(
                "/v2/acme/app/referrers/{}?artifactType=application%2Fspdx%2Bjson",
                image.manifest.digest
            ),
        )
        .await;
        assert_eq!(
            encoded.json()["manifests"],
            json!([referrer_descriptor(&sbom, SBOM_TYPE, None)]),
            "a percent-encoded artifactType is decoded"
        );
        let nothing = get(
            &app,
            &format!(
                "/v2/acme/app/referrers/{}?artifactType=application/vnd.none",
                image.manifest.digest
            ),
        )
        .await;
        assert_eq!(nothing.json()["manifests"], json!([]));
        assert_eq!(nothing.header("oci-filters-applied"), Some("artifactType"));
    }

    async fn a_referrer_pushed_before_its_subject_is_listed_for_it(app) {
        push_image(&app, "acme/app", "v1", "present").await;
        let absent = sha256(b"a subject that will come later");
        let subject = json!({ "mediaType": registry::OCI_MANIFEST, "digest": absent, "size": 42 });
        let signature = push_referrer(&app, "acme/app", &subject, SIGNATURE_TYPE, None).await;
        let listed = referrers(&app, &format!("/v2/acme/app/referrers/{absent}")).await;
        assert_eq!(
            listed,
            json!([referrer_descriptor(&signature, SIGNATURE_TYPE, None)])
        );
    }

    async fn an_unknown_subject_or_repository_has_no_referrers_rather_than_a_404(app) {
        push_image(&app, "acme/app", "v1", "alone").await;
        let unknown = sha256(b"nothing refers to this");
        assert_eq!(
            referrers(&app, &format!("/v2/acme/app/referrers/{unknown}")).await,
            json!([])
        );
        assert_eq!(
            referrers(&app, &format!("/v2/acme/nothing/referrers/{unknown}")).await,
            json!([])
        );
    }

    async fn a_deleted_referrer_is_no_longer_listed(app) {
        let image = push_image(&app, "acme/app", "v1", "unsigned").await;
        let signature = push_referrer(
            &app,
            "acme/app",
            &image.manifest.descriptor(),
            SIGNATURE_TYPE,
            None,
        )
        .await;
        assert_status(
            &delete(
                &app,
                &format!("/v2/acme/app/manifests/{}", signature.digest),
            )
            .await,
            StatusCode::ACCEPTED,
        );
        assert_eq!(
            referrers(
                &app,
                &format!("/v2/acme/app/referrers/{}", image.manifest.digest)
            )
            .await,
            json!([])
        );
    }

    async fn referrers_are_listed_only_in_their_own_repository(app) {
        let image = push_image(&app, "acme/app", "v1", "shared").await;
        push_image(&app, "acme/mirror", "v1", "shared").await;
        push_referrer(
            &app,
            "acme/app",
            &image.manifest.descriptor(),
            SIGNATURE_TYPE,
            None,
        )
        .await;
        assert_eq!(
            referrers(
                &app,
                &format!("/v2/acme/mirror/referrers/{}", image.manifest.digest)
            )
            .await,
            json!([])
        );
    }

    async fn a_malformed_digest_for_referrers_is_refused(app) {
        push_image(&app, "acme/app", "v1", "x").await;
        assert_error(
            &get(&app, "/v2/acme/app/referrers/sha256:123").await,
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
        );
        assert_error(
            &get(&app, "/v2/acme/app/referrers/v1").await,
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
        );
    }
}
