//! How `/v2` paths are read: repository names of any depth, and the errors for
//! invalid names, tags, digests, methods and paths.

use axum::body::Body;
use http::{Method, StatusCode};
use testkit::app_tests;

use crate::support::{assert_error, assert_status, get, push_image, sha256};

app_tests! {
    async fn repositories_of_one_two_and_five_components_are_pushed_and_pulled(app) {
        for repository in ["app", "acme/app", "acme/team/sub/group/app"] {
            let image = push_image(&app, repository, "v1", repository).await;
            let manifest = get(&app, &format!("/v2/{repository}/manifests/v1")).await;
            assert_eq!(
                manifest.body.as_ref(),
                image.manifest.bytes.as_slice(),
                "{repository}"
            );
            let layer = get(
                &app,
                &format!("/v2/{repository}/blobs/{}", image.layer.digest),
            )
            .await;
            assert_eq!(
                layer.body.as_ref(),
                image.layer.bytes.as_slice(),
                "{repository}"
            );
            let tags = get(&app, &format!("/v2/{repository}/tags/list")).await;
            assert_eq!(
                tags.json(),
                serde_json::json!({ "name": repository, "tags": ["v1"] })
            );
        }
        let catalog = get(&app, "/v2/_catalog").await;
        assert_eq!(
            catalog.json()["repositories"],
            serde_json::json!(["acme/app", "acme/team/sub/group/app", "app"])
        );
    }

    async fn an_invalid_repository_name_is_name_invalid(app) {
        let too_long = "a".repeat(256);
        let longest = "a".repeat(255);
        for name in [
            "UPPER",
            "acme/App",
            "a/../b",
            "a//b",
            "a/%2e%2e/b",
            "%2e%2e",
            "-a",
            "a_",
            "a/./b",
            too_long.as_str(),
        ] {
            for uri in [
                format!("/v2/{name}/manifests/latest"),
                format!("/v2/{name}/blobs/{}", sha256(b"x")),
                format!("/v2/{name}/tags/list"),
                format!("/v2/{name}/blobs/uploads/"),
            ] {
                let method = if uri.ends_with("/uploads/") {
                    Method::POST
                } else {
                    Method::GET
                };
                let response = app.admin(method, &uri, &[], Body::empty()).await;
                assert_eq!(
                    (response.status, response.error_code().as_str()),
                    (StatusCode::BAD_REQUEST, "NAME_INVALID"),
                    "{uri}: {}",
                    response.text()
                );
            }
        }
        let catalog = get(&app, "/v2/_catalog").await;
        assert_eq!(
            catalog.json()["repositories"],
            serde_json::json!([]),
            "no invalid name was created"
        );
        assert_error(
            &get(&app, &format!("/v2/{longest}/tags/list")).await,
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
        );
    }

    async fn reading_a_reference_that_is_no_valid_tag_is_manifest_unknown_and_writing_one_is_tag_invalid(app) {
        let image = push_image(&app, "acme/app", "v1", "tagged").await;
        let too_long = "t".repeat(129);
        for tag in [
            ".INVALID_MANIFEST_NAME",
            "-leading-dash",
            ".leading-dot",
            "has%20space",
            "semi;colon",
            too_long.as_str(),
        ] {
            let uri = format!("/v2/acme/app/manifests/{tag}");
            // A read names a manifest nobody can have pushed: unknown, like any tag.
            for method in [Method::GET, Method::HEAD] {
                let response = app.admin(method.clone(), &uri, &[], Body::empty()).await;
                assert_eq!(response.status, StatusCode::NOT_FOUND, "{method} {tag}");
                if method == Method::GET {
                    assert_error(&response, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN");
                }
            }
            // A write is told what is wrong with the tag, and nothing is stored.
            let response = app
                .admin(
                    Method::PUT,
                    &uri,
                    &[("content-type", image.manifest.media_type.as_str())],
                    Body::from(image.manifest.bytes.clone()),
                )
                .await;
            assert_error(&response, StatusCode::BAD_REQUEST, "TAG_INVALID");
            let response = app.admin(Method::DELETE, &uri, &[], Body::empty()).await;
            assert_error(&response, StatusCode::BAD_REQUEST, "TAG_INVALID");
        }
        let tags = get(&app, "/v2/acme/app/tags/list").await;
        assert_eq!(tags.json()["tags"], serde_json::json!(["v1"]));
        let longest = "t".repeat(128);
        assert_error(
            &get(&app, &format!("/v2/acme/app/manifests/{longest}")).await,
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
        );
    }

    async fn an_invalid_digest_in_the_path_is_digest_invalid(app) {
        push_image(&app, "acme/app", "v1", "digests").await;
        for digest in [
            "sha256:abc",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "md5:d41d8cd98f00b204e9800998ecf8427e",
            "sha256:",
        ] {
            for uri in [
                format!("/v2/acme/app/blobs/{digest}"),
                format!("/v2/acme/app/manifests/{digest}"),
                format!("/v2/acme/app/referrers/{digest}"),
            ] {
                let response = get(&app, &uri).await;
                assert_eq!(
                    (response.status, response.error_code().as_str()),
                    (StatusCode::BAD_REQUEST, "DIGEST_INVALID"),
                    "{uri}: {}",
                    response.text()
                );
            }
        }
        let response = get(&app, "/v2/acme/app/blobs/not-a-digest").await;
        assert_error(&response, StatusCode::BAD_REQUEST, "DIGEST_INVALID");
    }

    async fn an_unsupported_method_on_a_valid_path_is_refused(app) {
        let digest = sha256(b"x");
        for (method, uri) in [
            (Method::POST, "/v2/acme/app/manifests/latest".to_owned()),
            (Method::PATCH, "/v2/acme/app/manifests/latest".to_owned()),
            (Method::PUT, format!("/v2/acme/app/blobs/{digest}")),
            (Method::POST, format!("/v2/acme/app/blobs/{digest}")),
            (Method::DELETE, "/v2/acme/app/tags/list".to_owned()),
            (Method::GET, "/v2/acme/app/blobs/uploads/".to_owned()),
            (Method::DELETE, "/v2/_catalog".to_owned()),
            (Method::POST, "/v2/".to_owned()),
            (Method::PUT, format!("/v2/acme/app/referrers/{digest}")),
        ] {
            let response = app.admin(method.clone(), &uri, &[], Body::empty()).await;
            assert_eq!(
                (response.status, response.error_code().as_str()),
                (StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED"),
                "{method} {uri}: {}",
                response.text()
            );
        }
    }

    async fn an_unknown_path_under_v2_is_not_found(app) {
        for uri in [
            "/v2/acme/app/unknown",
            "/v2/acme",
            "/v2/acme/app/manifests",
            "/v2/acme/app/tags/all",
        ] {
            let response = get(&app, uri).await;
            assert_eq!(
                response.status,
                StatusCode::NOT_FOUND,
                "{uri}: {}",
                response.text()
            );
            assert_eq!(
                response.error_code(),
                "UNSUPPORTED",
                "{uri}: 4xx answers use only the spec's codes"
            );
        }
        assert_status(&get(&app, "/v2x").await, StatusCode::NOT_FOUND);
    }
}
