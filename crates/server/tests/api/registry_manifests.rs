//! `GET|HEAD|PUT|DELETE /v2/<name>/manifests/<reference>`: manifests stored byte for
//! byte, what they must reference, immutable tags, deletion and subjects.

use http::{Method, StatusCode};
use registry::{
    DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, MutableTagRule, OCI_INDEX, OCI_MANIFEST, RegistryConfig,
};
use serde_json::json;
use testkit::TestApp;

use crate::support::{
    Blob, CONFIG_MEDIA_TYPE, EMPTY_JSON_MEDIA_TYPE, EMPTY_JSON_SHA256, Image, LAYER_MEDIA_TYPE,
    Manifest, assert_error, assert_status, delete, error_message, get, head, image_index,
    image_manifest, mutable_tags_config, push_blob, push_image, push_manifest, put_manifest,
    sha256, streamed,
};

/// Asserts that `repository` has no manifest with this digest and no tag `tag`.
async fn assert_not_stored(app: &TestApp, repository: &str, digest: &str, tag: &str) {
    assert_error(
        &get(app, &format!("/v2/{repository}/manifests/{digest}")).await,
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
    );
    assert_error(
        &get(app, &format!("/v2/{repository}/manifests/{tag}")).await,
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
    );
}

async fn tags_of(app: &TestApp, repository: &str) -> serde_json::Value {
    let response = get(app, &format!("/v2/{repository}/tags/list")).await;
    assert_status(&response, StatusCode::OK);
    response.json()["tags"].clone()
}

/// A Docker schema 2 image manifest of blobs pushed to `repository` from `seed`.
async fn push_docker_image(app: &TestApp, repository: &str, seed: &str) -> Manifest {
    let config = Blob::new(format!(r#"{{"os":"linux","seed":"{seed}"}}"#));
    let layer = Blob::new(format!("docker layer {seed}"));
    push_blob(app, repository, &config).await;
    push_blob(app, repository, &layer).await;
    let manifest = Manifest::from_json(&json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": config.descriptor("application/vnd.docker.container.image.v1+json"),
        "layers": [layer.descriptor("application/vnd.docker.image.rootfs.diff.tar.gzip")],
    }));
    push_manifest(app, repository, &manifest.digest, &manifest).await;
    manifest
}

fn mutable_latest_config() -> RegistryConfig {
    RegistryConfig {
        mutable_tags: vec![MutableTagRule {
            repository: "acme/*".into(),
            tags: vec!["latest".into()],
        }],
        ..RegistryConfig::default()
    }
}

const MANIFEST_LIMIT: usize = 1024;

fn small_manifest_limit_config() -> RegistryConfig {
    RegistryConfig {
        max_manifest_bytes: MANIFEST_LIMIT,
        ..RegistryConfig::default()
    }
}

/// An image manifest of `config` and `layer` padded with an annotation to exactly `size` bytes.
fn manifest_of_size(config: &Blob, layer: &Blob, size: usize) -> Manifest {
    let mut value = image_manifest(config, &[layer]);
    value["annotations"] = json!({ "padding": "" });
    let unpadded = serde_json::to_vec(&value).expect("JSON").len();
    value["annotations"]["padding"] = json!("x".repeat(size - unpadded));
    let manifest = Manifest::from_json(&value);
    assert_eq!(manifest.bytes.len(), size);
    manifest
}

registry_tests! {
    async fn a_manifest_pushed_by_tag_is_created_under_the_digest_of_its_exact_bytes(app) {
        let config = Blob::new("{}-ish config");
        let layer = Blob::new("a layer");
        push_blob(&app, "acme/app", &config).await;
        push_blob(&app, "acme/app", &layer).await;
        let manifest = Manifest::from_json(&image_manifest(&config, &[&layer]));
        let response = put_manifest(&app, "acme/app", "v1", &manifest).await;
        assert_status(&response, StatusCode::CREATED);
        assert_eq!(
            response.header("docker-content-digest"),
            Some(sha256(&manifest.bytes).as_str())
        );
        assert_eq!(
            response.header("location"),
            Some(format!("/v2/acme/app/manifests/{}", manifest.digest).as_str())
        );
        assert_eq!(response.header("oci-subject"), None);
    }

    async fn a_manifest_is_served_byte_for_byte_by_tag_and_by_digest(app) {
        let config = Blob::new("config bytes");
        let layer = Blob::new("layer bytes");
        push_blob(&app, "acme/app", &config).await;
        push_blob(&app, "acme/app", &layer).await;
        // Key order, spacing and a trailing newline that any re-serialisation would change.
        let text = format!(
            r#"{{
  "layers" : [ {{"size": {layer_size}, "digest":"{layer}",
      "mediaType":"{LAYER_MEDIA_TYPE}"}} ],
    "config": {{ "digest": "{config}", "mediaType": "{CONFIG_MEDIA_TYPE}", "size": {config_size} }},
  "schemaVersion":   2,"mediaType": "{OCI_MANIFEST}" ,
  "annotations": {{"z": "1", "a": "2"}}
}}
"#,
            layer = layer.digest,
            layer_size = layer.bytes.len(),
            config = config.digest,
            config_size = config.bytes.len(),
        );
        let manifest = Manifest::from_bytes(OCI_MANIFEST, text);
        push_manifest(&app, "acme/app", "v1", &manifest).await;
        for reference in ["v1", manifest.digest.as_str()] {
            let response = get(&app, &format!("/v2/acme/app/manifests/{reference}")).await;
            assert_status(&response, StatusCode::OK);
            assert_eq!(
                response.body.as_ref(),
                manifest.bytes.as_slice(),
                "{reference}"
            );
            assert_eq!(response.header("content-type"), Some(OCI_MANIFEST));
            assert_eq!(
                response.header("docker-content-digest"),
                Some(manifest.digest.as_str())
            );
            assert_eq!(
                response.header("content-length"),
                Some(manifest.bytes.len().to_string().as_str())
            );
        }
    }

    async fn head_on_a_manifest_gives_its_type_length_and_digest_without_a_body(app) {
        let image = push_image(&app, "acme/app", "v1", "head").await;
        for reference in ["v1", image.manifest.digest.as_str()] {
            let response = head(&app, &format!("/v2/acme/app/manifests/{reference}")).await;
            assert_status(&response, StatusCode::OK);
            assert!(response.body.is_empty());
            assert_eq!(response.header("content-type"), Some(OCI_MANIFEST));
            assert_eq!(
                response.header("docker-content-digest"),
                Some(image.manifest.digest.as_str())
            );
            assert_eq!(
                response.header("content-length"),
                Some(image.manifest.bytes.len().to_string().as_str())
            );
        }
        let missing = head(&app, "/v2/acme/app/manifests/v2").await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
    }

    async fn a_manifest_without_content_type_takes_its_media_type_from_its_body(app) {
        let config = Blob::new("c");
        let layer = Blob::new("l");
        push_blob(&app, "acme/app", &config).await;
        push_blob(&app, "acme/app", &layer).await;
        let manifest = Manifest::from_json(&image_manifest(&config, &[&layer]));
        let response = app
            .admin(
                Method::PUT,
                "/v2/acme/app/manifests/v1",
                &[],
                manifest.bytes.clone(),
            )
            .await;
        assert_status(&response, StatusCode::CREATED);
        let with_parameters = app
            .admin(
                Method::PUT,
                "/v2/acme/app/manifests/v2",
                &[(
                    "content-type",
                    "application/vnd.oci.image.manifest.v1+json; charset=utf-8",
                )],
                manifest.bytes.clone(),
            )
            .await;
        assert_status(&with_parameters, StatusCode::CREATED);
        assert_eq!(
            get(&app, "/v2/acme/app/manifests/v1")
                .await
                .header("content-type"),
            Some(OCI_MANIFEST)
        );
    }

    async fn a_manifest_pushed_by_its_digest_is_stored_without_a_tag(app) {
        let config = Blob::new("c");
        let layer = Blob::new("l");
        push_blob(&app, "acme/app", &config).await;
        push_blob(&app, "acme/app", &layer).await;
        let manifest = Manifest::from_json(&image_manifest(&config, &[&layer]));
        let response = put_manifest(&app, "acme/app", &manifest.digest, &manifest).await;
        assert_status(&response, StatusCode::CREATED);
        assert_eq!(
            response.header("docker-content-digest"),
            Some(manifest.digest.as_str())
        );
        assert_eq!(
            get(&app, &format!("/v2/acme/app/manifests/{}", manifest.digest))
                .await
                .body
                .as_ref(),
            manifest.bytes.as_slice()
        );
        assert_eq!(tags_of(&app, "acme/app").await, json!([]));
    }

    async fn a_manifest_pushed_under_a_digest_that_is_not_its_own_is_refused(app) {
        let image = push_image(&app, "acme/app", "v1", "first").await;
        let mut value = image_manifest(&image.config, &[&image.layer]);
        value["annotations"] = json!({ "changed": "yes" });
        let manifest = Manifest::from_json(&value);
        let claimed = sha256(b"some other manifest");
        let response = put_manifest(&app, "acme/app", &claimed, &manifest).await;
        assert_error(&response, StatusCode::BAD_REQUEST, "DIGEST_INVALID");
        assert_error(
            &get(&app, &format!("/v2/acme/app/manifests/{claimed}")).await,
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
        );
        assert_error(
            &get(&app, &format!("/v2/acme/app/manifests/{}", manifest.digest)).await,
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
        );
    }

    async fn a_manifest_whose_blobs_were_not_pushed_is_refused_and_not_stored(app) {
        let config = Blob::new("pushed config");
        let layer = Blob::new("layer never pushed");
        push_blob(&app, "acme/app", &config).await;
        let manifest = Manifest::from_json(&image_manifest(&config, &[&layer]));
        let response = put_manifest(&app, "acme/app", "v1", &manifest).await;
        assert_error(&response, StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN");
        assert_eq!(
            response.json()["errors"][0]["detail"]["digest"],
            json!(layer.digest)
        );
        assert_not_stored(&app, "acme/app", &manifest.digest, "v1").await;
        let no_config = Manifest::from_json(&image_manifest(
            &Blob::new("config never pushed"),
            &[&config],
        ));
        let response = put_manifest(&app, "acme/app", "v2", &no_config).await;
        assert_error(&response, StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN");
        assert_not_stored(&app, "acme/app", &no_config.digest, "v2").await;
        assert_eq!(tags_of(&app, "acme/app").await, json!([]));
    }

    async fn a_descriptor_stating_another_size_than_the_stored_blob_is_refused_naming_it(app) {
        let image = Image::new("sizes");
        image.push_blobs(&app, "acme/app").await;
        for (field, pointer) in [("config", "/config/size"), ("layers[0]", "/layers/0/size")] {
            let mut value = image_manifest(&image.config, &[&image.layer]);
            let stated = value.pointer(pointer).and_then(|v| v.as_u64()).expect("a size");
            *value.pointer_mut(pointer).expect("a size") = json!(stated + 1);
            let manifest = Manifest::from_json(&value);
            let response = put_manifest(&app, "acme/app", "v1", &manifest).await;
            assert_error(&response, StatusCode::BAD_REQUEST, "MANIFEST_INVALID");
            assert!(error_message(&response).contains(field), "{field}: {}", response.text());
            let detail = &response.json()["errors"][0]["detail"];
            assert_eq!((&detail["descriptor"], &detail["size"], &detail["stored"]), (&json!(field), &json!(stated + 1), &json!(stated)));
            assert_not_stored(&app, "acme/app", &manifest.digest, "v1").await;
        }
        assert_eq!(tags_of(&app, "acme/app").await, json!([]));
        // The right sizes are accepted.
        push_manifest(&app, "acme/app", "v1", &image.manifest).await;
    }

    async fn an_index_child_stating_another_size_than_the_stored_manifest_is_refused(app) {
        let amd64 = push_image(&app, "acme/app", "amd64", "amd64").await;
        let arm64 = push_image(&app, "acme/app", "arm64", "arm64").await;
        let mut value = image_index(&[&amd64.manifest, &arm64.manifest]);
        value["manifests"][1]["size"] = json!(arm64.manifest.bytes.len() - 1);
        let index = Manifest::from_json(&value);
        let response = put_manifest(&app, "acme/app", "v1", &index).await;
        assert_error(&response, StatusCode::BAD_REQUEST, "MANIFEST_INVALID");
        assert!(error_message(&response).contains("manifests[1]"), "{}", response.text());
        assert!(error_message(&response).contains(&arm64.manifest.digest), "{}", response.text());
        assert_not_stored(&app, "acme/app", &index.digest, "v1").await;
    }

    async fn a_manifest_may_not_use_blobs_of_another_repository(app) {
        let image = push_image(&app, "acme/base", "v1", "base").await;
        push_blob(&app, "acme/app", &Blob::new("unrelated")).await;
        let response = put_manifest(&app, "acme/app", "v1", &image.manifest).await;
        assert_error(&response, StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN");
        assert_not_stored(&app, "acme/app", &image.manifest.digest, "v1").await;
    }

    async fn an_oci_image_index_of_pushed_manifests_is_accepted(app) {
        let amd64 = push_image(&app, "acme/app", "amd64", "amd64").await;
        let arm64 = push_image(&app, "acme/app", "arm64", "arm64").await;
        let index = Manifest::from_json(&image_index(&[&amd64.manifest, &arm64.manifest]));
        let response = put_manifest(&app, "acme/app", "v1", &index).await;
        assert_status(&response, StatusCode::CREATED);
        assert_eq!(
            response.header("docker-content-digest"),
            Some(index.digest.as_str())
        );
        let served = get(&app, "/v2/acme/app/manifests/v1").await;
        assert_eq!(served.body.as_ref(), index.bytes.as_slice());
        assert_eq!(served.header("content-type"), Some(OCI_INDEX));
    }

    async fn a_docker_manifest_list_of_pushed_manifests_is_accepted(app) {
        let first = push_docker_image(&app, "acme/app", "one").await;
        let second = push_docker_image(&app, "acme/app", "two").await;
        let entry = |manifest: &Manifest, architecture: &str| {
            let mut entry = manifest.descriptor();
            entry["platform"] = json!({ "architecture": architecture, "os": "linux" });
            entry
        };
        let list = Manifest::from_json(&json!({
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST_LIST,
            "manifests": [entry(&first, "amd64"), entry(&second, "arm64")],
        }));
        assert_status(
            &put_manifest(&app, "acme/app", "v1", &list).await,
            StatusCode::CREATED,
        );
        let served = get(&app, "/v2/acme/app/manifests/v1").await;
        assert_eq!(served.body.as_ref(), list.bytes.as_slice());
        assert_eq!(served.header("content-type"), Some(DOCKER_MANIFEST_LIST));
    }

    async fn an_index_that_lists_a_manifest_not_pushed_is_refused_and_not_stored(app) {
        let pushed = push_image(&app, "acme/app", "amd64", "amd64").await;
        let absent = Manifest::from_json(&image_manifest(&Blob::new("c"), &[&Blob::new("l")]));
        let index = Manifest::from_json(&image_index(&[&pushed.manifest, &absent]));
        let response = put_manifest(&app, "acme/app", "v1", &index).await;
        assert_error(&response, StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN");
        assert!(
            error_message(&response).contains(&absent.digest),
            "{}",
            response.text()
        );
        assert_not_stored(&app, "acme/app", &index.digest, "v1").await;
    }

    async fn a_docker_schema_2_manifest_is_served_with_its_media_type(app) {
        let manifest = push_docker_image(&app, "acme/app", "docker").await;
        let served = get(&app, &format!("/v2/acme/app/manifests/{}", manifest.digest)).await;
        assert_status(&served, StatusCode::OK);
        assert_eq!(served.body.as_ref(), manifest.bytes.as_slice());
        assert_eq!(served.header("content-type"), Some(DOCKER_MANIFEST));
    }

    async fn an_artifact_manifest_with_the_empty_config_is_accepted(app) {
        let empty = Blob::new("{}");
        assert_eq!(empty.digest, EMPTY_JSON_SHA256);
        let payload = Blob::new("an SBOM");
        push_blob(&app, "acme/app", &empty).await;
        push_blob(&app, "acme/app", &payload).await;
        let artifact = Manifest::from_json(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": "application/spdx+json",
            "config": empty.descriptor(EMPTY_JSON_MEDIA_TYPE),
            "layers": [payload.descriptor("application/spdx+json")],
        }));
        assert_status(
            &put_manifest(&app, "acme/app", "sbom", &artifact).await,
            StatusCode::CREATED,
        );
        let served = get(&app, "/v2/acme/app/manifests/sbom").await;
        assert_eq!(served.body.as_ref(), artifact.bytes.as_slice());
        assert_eq!(
            get(&app, &format!("/v2/acme/app/blobs/{EMPTY_JSON_SHA256}"))
                .await
                .body
                .as_ref(),
            b"{}"
        );
    }

    async fn an_invalid_manifest_is_refused_as_manifest_invalid_and_not_stored(app) {
        let image = push_image(&app, "acme/app", "v1", "valid").await;
        // Valid but for what each case changes, and other bytes than the pushed `v1`.
        let mut valid = image_manifest(&image.config, &[&image.layer]);
        valid["annotations"] = json!({ "variant": "to be broken" });
        let with = |field: &str, value: serde_json::Value| {
            let mut changed = valid.clone();
            changed[field] = value;
            serde_json::to_vec(&changed).expect("JSON")
        };
        let mut bad_layer_digest = valid.clone();
        bad_layer_digest["layers"][0]["digest"] = json!("sha256:not-hex");
        let cases: Vec<(&str, Option<&str>, Vec<u8>)> = vec![
            (
                "not JSON",
                Some(OCI_MANIFEST),
                b"{\"schemaVersion\": 2,".to_vec(),
            ),
            ("a JSON array", Some(OCI_MANIFEST), b"[]".to_vec()),
            (
                "schemaVersion 1",
                Some(OCI_MANIFEST),
                with("schemaVersion", json!(1)),
            ),
            (
                "schemaVersion as a string",
                Some(OCI_MANIFEST),
                with("schemaVersion", json!("2")),
            ),
            (
                "no schemaVersion",
                Some(OCI_MANIFEST),
                with("schemaVersion", serde_json::Value::Null),
            ),
            (
                "an unknown media type",
                Some("application/vnd.example.thing+json"),
                with("mediaType", json!("application/vnd.example.thing+json")),
            ),
            (
                "Docker schema 1",
                Some("application/vnd.docker.distribution.manifest.v1+json"),
                with(
                    "mediaType",
                    json!("application/vnd.docker.distribution.manifest.v1+json"),
                ),
            ),
            (
                "a Content-Type other than its mediaType",
                Some(DOCKER_MANIFEST),
                serde_json::to_vec(&valid).expect("JSON"),
            ),
            (
                "no media type at all",
                None,
                with("mediaType", serde_json::Value::Null),
            ),
            (
                "a bad digest in a descriptor",
                Some(OCI_MANIFEST),
                serde_json::to_vec(&bad_layer_digest).expect("JSON"),
            ),
            (
                "a config that is not a descriptor",
                Some(OCI_MANIFEST),
                with("config", json!("sha256")),
            ),
            (
                "no layers",
                Some(OCI_MANIFEST),
                with("layers", serde_json::Value::Null),
            ),
            (
                "an image listed as an index",
                Some(OCI_INDEX),
                with("mediaType", json!(OCI_INDEX)),
            ),
        ];
        for (what, content_type, body) in cases {
            let digest = sha256(&body);
            let headers: Vec<(&str, &str)> = content_type
                .map(|t| ("content-type", t))
                .into_iter()
                .collect();
            let response = app
                .admin(Method::PUT, "/v2/acme/app/manifests/v2", &headers, body)
                .await;
            assert_eq!(
                (response.status, response.error_code().as_str()),
                (StatusCode::BAD_REQUEST, "MANIFEST_INVALID"),
                "{what}: {}",
                response.text()
            );
            assert_not_stored(&app, "acme/app", &digest, "v2").await;
        }
        assert_eq!(tags_of(&app, "acme/app").await, json!(["v1"]));
    }

    async fn a_manifest_over_the_size_limit_is_refused_when_its_length_is_announced(app = small_manifest_limit_config()) {
        let config = Blob::new("c");
        let layer = Blob::new("l");
        push_blob(&app, "acme/app", &config).await;
        push_blob(&app, "acme/app", &layer).await;
        let at_limit = manifest_of_size(&config, &layer, MANIFEST_LIMIT);
        let response = app
            .admin(
                Method::PUT,
                "/v2/acme/app/manifests/fits",
                &[
                    ("content-type", OCI_MANIFEST),
                    ("content-length", &MANIFEST_LIMIT.to_string()),
                ],
                at_limit.bytes.clone(),
            )
            .await;
        assert_status(&response, StatusCode::CREATED);
        let over = manifest_of_size(&config, &layer, MANIFEST_LIMIT + 1);
        let response = app
            .admin(
                Method::PUT,
                "/v2/acme/app/manifests/big",
                &[
                    ("content-type", OCI_MANIFEST),
                    ("content-length", &(MANIFEST_LIMIT + 1).to_string()),
                ],
                over.bytes.clone(),
            )
            .await;
        assert_error(&response, StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID");
        assert_not_stored(&app, "acme/app", &over.digest, "big").await;
    }

    async fn a_manifest_over_the_size_limit_is_refused_when_it_is_streamed(app = small_manifest_limit_config()) {
        let config = Blob::new("c");
        let layer = Blob::new("l");
        push_blob(&app, "acme/app", &config).await;
        push_blob(&app, "acme/app", &layer).await;
        let at_limit = manifest_of_size(&config, &layer, MANIFEST_LIMIT);
        let (head_part, tail_part) = at_limit.bytes.split_at(100);
        let response = app
            .admin(
                Method::PUT,
                "/v2/acme/app/manifests/fits",
                &[("content-type", OCI_MANIFEST)],
                streamed(&[head_part, tail_part]),
            )
            .await;
        assert_status(&response, StatusCode::CREATED);
        let over = manifest_of_size(&config, &layer, MANIFEST_LIMIT + 1);
        let (head_part, tail_part) = over.bytes.split_at(600);
        let response = app
            .admin(
                Method::PUT,
                "/v2/acme/app/manifests/big",
                &[("content-type", OCI_MANIFEST)],
                streamed(&[head_part, tail_part]),
            )
            .await;
        assert_error(&response, StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID");
        assert_not_stored(&app, "acme/app", &over.digest, "big").await;
    }

    async fn an_immutable_tag_accepts_the_same_bytes_again(app) {
        let image = push_image(&app, "acme/app", "v1", "same").await;
        let again = put_manifest(&app, "acme/app", "v1", &image.manifest).await;
        assert_status(&again, StatusCode::CREATED);
        assert_eq!(
            again.header("docker-content-digest"),
            Some(image.manifest.digest.as_str())
        );
    }

    async fn an_immutable_tag_refuses_other_bytes_and_names_the_existing_digest(app) {
        let original = push_image(&app, "acme/app", "v1", "original").await;
        let mut value = image_manifest(&original.config, &[&original.layer]);
        value["annotations"] = json!({ "rebuilt": "true" });
        let other = Manifest::from_json(&value);
        let response = put_manifest(&app, "acme/app", "v1", &other).await;
        assert_error(&response, StatusCode::CONFLICT, "DENIED");
        assert!(
            error_message(&response).contains(&original.manifest.digest),
            "{}",
            response.text()
        );
        let served = get(&app, "/v2/acme/app/manifests/v1").await;
        assert_eq!(served.body.as_ref(), original.manifest.bytes.as_slice());
        assert_error(
            &get(&app, &format!("/v2/acme/app/manifests/{}", other.digest)).await,
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
        );
    }

    async fn a_tag_named_by_a_mutable_rule_moves_to_new_bytes(app = mutable_latest_config()) {
        let first = push_image(&app, "acme/app", "latest", "first").await;
        let second = push_image(&app, "acme/app", "latest", "second").await;
        assert_ne!(first.manifest.digest, second.manifest.digest);
        assert_eq!(
            get(&app, "/v2/acme/app/manifests/latest")
                .await
                .body
                .as_ref(),
            second.manifest.bytes.as_slice()
        );
        assert_eq!(
            get(
                &app,
                &format!("/v2/acme/app/manifests/{}", first.manifest.digest)
            )
            .await
            .status,
            StatusCode::OK,
            "the old manifest stays by digest"
        );
        for (repository, tag) in [("acme/app", "v1"), ("other/app", "latest")] {
            push_image(&app, repository, tag, "first").await;
            let moved = Image::new("second");
            moved.push_blobs(&app, repository).await;
            let response = put_manifest(&app, repository, tag, &moved.manifest).await;
            assert_error(&response, StatusCode::CONFLICT, "DENIED");
            assert_eq!(
                get(&app, &format!("/v2/{repository}/manifests/{tag}"))
                    .await
                    .body
                    .as_ref(),
                first.manifest.bytes.as_slice(),
                "{repository}:{tag}"
            );
        }
    }

    async fn deleting_a_manifest_by_digest_removes_it_and_its_tags(app = mutable_tags_config()) {
        let image = push_image(&app, "acme/app", "v1", "doomed").await;
        push_manifest(&app, "acme/app", "also", &image.manifest).await;
        let kept = push_image(&app, "acme/app", "v2", "kept").await;
        let response = delete(
            &app,
            &format!("/v2/acme/app/manifests/{}", image.manifest.digest),
        )
        .await;
        assert_status(&response, StatusCode::ACCEPTED);
        assert_not_stored(&app, "acme/app", &image.manifest.digest, "v1").await;
        assert_error(
            &get(&app, "/v2/acme/app/manifests/also").await,
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
        );
        assert_eq!(tags_of(&app, "acme/app").await, json!(["v2"]));
        assert_eq!(
            get(&app, "/v2/acme/app/manifests/v2").await.body.as_ref(),
            kept.manifest.bytes.as_slice()
        );
        assert_error(
            &delete(
                &app,
                &format!("/v2/acme/app/manifests/{}", image.manifest.digest),
            )
            .await,
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
        );
    }

    async fn deleting_a_tag_keeps_the_manifest_it_named(app = mutable_tags_config()) {
        let image = push_image(&app, "acme/app", "v1", "tagged").await;
        let response = delete(&app, "/v2/acme/app/manifests/v1").await;
        assert_status(&response, StatusCode::ACCEPTED);
        assert_error(
            &get(&app, "/v2/acme/app/manifests/v1").await,
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
        );
        assert_eq!(
            get(
                &app,
                &format!("/v2/acme/app/manifests/{}", image.manifest.digest)
            )
            .await
            .body
            .as_ref(),
            image.manifest.bytes.as_slice()
        );
        assert_eq!(tags_of(&app, "acme/app").await, json!([]));
        assert_error(
            &delete(&app, "/v2/acme/app/manifests/v1").await,
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
        );
    }

    async fn an_immutable_tag_cannot_be_deleted_so_it_cannot_be_pushed_again_with_other_bytes(app) {
        let image = push_image(&app, "acme/app", "v1", "immutable").await;
        let refused = delete(&app, "/v2/acme/app/manifests/v1").await;
        assert_error(&refused, StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED");
        assert!(refused.text().contains("immutable"), "{}", refused.text());
        let by_digest = delete(&app, &format!("/v2/acme/app/manifests/{}", image.manifest.digest)).await;
        assert_error(&by_digest, StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED");
        assert!(by_digest.text().contains("tag v1"), "the refusal names the tag: {}", by_digest.text());
        assert_eq!(
            get(&app, "/v2/acme/app/manifests/v1").await.body.as_ref(),
            image.manifest.bytes.as_slice(),
            "the tag still serves its bytes"
        );
    }

    async fn a_manifest_an_index_lists_cannot_be_deleted_until_the_index_is(app = mutable_tags_config()) {
        let child = push_image(&app, "acme/app", "amd64", "child").await;
        let index = Manifest::from_json(&image_index(&[&child.manifest]));
        push_manifest(&app, "acme/app", "v1", &index).await;
        let uri = format!("/v2/acme/app/manifests/{}", child.manifest.digest);
        let response = delete(&app, &uri).await;
        assert_error(&response, StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED");
        assert!(
            error_message(&response).contains(&index.digest),
            "{}",
            response.text()
        );
        assert_eq!(
            get(&app, &uri).await.body.as_ref(),
            child.manifest.bytes.as_slice()
        );
        assert_eq!(
            get(&app, "/v2/acme/app/manifests/amd64").await.status,
            StatusCode::OK
        );
        assert_status(
            &delete(&app, &format!("/v2/acme/app/manifests/{}", index.digest)).await,
            StatusCode::ACCEPTED,
        );
        assert_status(&delete(&app, &uri).await, StatusCode::ACCEPTED);
        assert_error(
            &get(&app, &uri).await,
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
        );
    }

    async fn an_unknown_manifest_is_manifest_unknown(app) {
        push_image(&app, "acme/app", "v1", "present").await;
        assert_error(
            &get(&app, "/v2/acme/app/manifests/v2").await,
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
        );
        assert_error(
            &get(
                &app,
                &format!("/v2/acme/app/manifests/{}", sha256(b"absent")),
            )
            .await,
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
        );
        assert_error(
            &get(&app, "/v2/acme/nothing/manifests/v1").await,
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
        );
    }

    async fn a_subject_may_use_a_digest_algorithm_gantry_cannot_verify(app) {
        let image = Image::new("blake3 subject");
        image.push_blobs(&app, "acme/app").await;
        let mut value = image_manifest(&image.config, &[&image.layer]);
        value["subject"] =
            json!({ "mediaType": OCI_MANIFEST, "digest": "blake3:0123abcd", "size": 9 });
        let manifest = Manifest::from_json(&value);
        let response = put_manifest(&app, "acme/app", &manifest.digest, &manifest).await;
        assert_status(&response, StatusCode::CREATED);
        assert_eq!(response.header("oci-subject"), Some("blake3:0123abcd"));
        value["subject"]["digest"] = json!("blake3:not/a/digest");
        let malformed = Manifest::from_json(&value);
        let response = put_manifest(&app, "acme/app", &malformed.digest, &malformed).await;
        assert_error(&response, StatusCode::BAD_REQUEST, "MANIFEST_INVALID");
        assert_not_stored(&app, "acme/app", &malformed.digest, "unused").await;
    }

    async fn a_manifest_with_a_subject_is_created_with_the_oci_subject_header(app) {
        let image = push_image(&app, "acme/app", "v1", "subject").await;
        let signature = Blob::new("a signature");
        let empty = Blob::new("{}");
        push_blob(&app, "acme/app", &signature).await;
        push_blob(&app, "acme/app", &empty).await;
        let absent_subject = sha256(b"a manifest nobody pushed");
        for subject in [
            image.manifest.descriptor(),
            json!({ "mediaType": OCI_MANIFEST, "digest": absent_subject, "size": 7 }),
        ] {
            let referrer = Manifest::from_json(&json!({
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "artifactType": "application/vnd.example.signature",
                "config": empty.descriptor(EMPTY_JSON_MEDIA_TYPE),
                "layers": [signature.descriptor("application/octet-stream")],
                "subject": subject,
            }));
            let response = put_manifest(&app, "acme/app", &referrer.digest, &referrer).await;
            assert_status(&response, StatusCode::CREATED);
            assert_eq!(response.header("oci-subject"), subject["digest"].as_str());
            assert_eq!(
                get(&app, &format!("/v2/acme/app/manifests/{}", referrer.digest))
                    .await
                    .body
                    .as_ref(),
                referrer.bytes.as_slice()
            );
        }
    }
}
