//! `GET|HEAD|DELETE /v2/<name>/blobs/<digest>`: exact bytes, byte ranges, and which
//! repository may serve or forget a blob.

use http::StatusCode;
use testkit::TestApp;

use crate::support::{
    Blob, assert_error, assert_status, delete, error_message, get, head, mutable_tags_config,
    push_blob, push_image, sha256,
};

/// A 100-byte blob whose bytes are easy to tell apart, pushed to `repository`.
async fn push_numbered(app: &TestApp, repository: &str) -> Blob {
    let blob = Blob::new((0u8..100).collect::<Vec<u8>>());
    push_blob(app, repository, &blob).await;
    blob
}

async fn get_range(app: &TestApp, uri: &str, range: &str) -> testkit::TestResponse {
    app.admin(
        http::Method::GET,
        uri,
        &[("range", range)],
        axum::body::Body::empty(),
    )
    .await
}

registry_tests! {
    async fn a_blob_is_served_with_its_exact_bytes_length_and_digest(app) {
        let blob = push_numbered(&app, "acme/app").await;
        let response = get(&app, &format!("/v2/acme/app/blobs/{}", blob.digest)).await;
        assert_status(&response, StatusCode::OK);
        assert_eq!(response.body.as_ref(), blob.bytes.as_slice());
        assert_eq!(response.header("content-length"), Some("100"));
        assert_eq!(
            response.header("docker-content-digest"),
            Some(blob.digest.as_str())
        );
    }

    async fn a_blob_larger_than_one_read_is_served_whole_and_by_ranges_across_reads(app) {
        // Past the size read at once when opened, in several read chunks.
        let bytes: Vec<u8> = (0..(3 << 20) + 12_345u32).map(|i| (i % 251) as u8).collect();
        let blob = Blob::new(bytes.clone());
        push_blob(&app, "acme/big", &blob).await;
        let uri = format!("/v2/acme/big/blobs/{}", blob.digest);
        let response = get(&app, &uri).await;
        assert_status(&response, StatusCode::OK);
        assert_eq!(response.body.len(), bytes.len());
        assert_eq!(sha256(&response.body), blob.digest);
        for (first, last) in [(0usize, 9usize), (524_280, 524_300), (1_000_000, 2_600_000), (bytes.len() - 5, bytes.len() - 1)] {
            let response = get_range(&app, &uri, &format!("bytes={first}-{last}")).await;
            assert_status(&response, StatusCode::PARTIAL_CONTENT);
            assert_eq!(response.body.as_ref(), &bytes[first..=last], "{first}-{last}");
        }
    }

    async fn head_on_a_blob_gives_its_length_and_digest_without_a_body(app) {
        let blob = push_numbered(&app, "acme/app").await;
        let response = head(&app, &format!("/v2/acme/app/blobs/{}", blob.digest)).await;
        assert_status(&response, StatusCode::OK);
        assert!(response.body.is_empty());
        assert_eq!(response.header("content-length"), Some("100"));
        assert_eq!(
            response.header("docker-content-digest"),
            Some(blob.digest.as_str())
        );
    }

    async fn a_byte_range_is_served_as_partial_content(app) {
        let blob = push_numbered(&app, "acme/app").await;
        let uri = format!("/v2/acme/app/blobs/{}", blob.digest);
        for (range, first, last) in [
            ("bytes=0-9", 0usize, 9usize),
            ("bytes=90-", 90, 99),
            ("bytes=40-49", 40, 49),
        ] {
            let response = get_range(&app, &uri, range).await;
            assert_status(&response, StatusCode::PARTIAL_CONTENT);
            assert_eq!(response.body.as_ref(), &blob.bytes[first..=last], "{range}");
            assert_eq!(
                response.header("content-range"),
                Some(format!("bytes {first}-{last}/100").as_str())
            );
            assert_eq!(
                response.header("content-length"),
                Some((last - first + 1).to_string().as_str())
            );
        }
    }

    async fn a_suffix_range_serves_the_last_bytes(app) {
        let blob = push_numbered(&app, "acme/app").await;
        let response = get_range(
            &app,
            &format!("/v2/acme/app/blobs/{}", blob.digest),
            "bytes=-5",
        )
        .await;
        assert_status(&response, StatusCode::PARTIAL_CONTENT);
        assert_eq!(response.body.as_ref(), &blob.bytes[95..]);
        assert_eq!(response.header("content-range"), Some("bytes 95-99/100"));
    }

    async fn an_unsatisfiable_range_is_refused_with_the_blobs_size(app) {
        let blob = push_numbered(&app, "acme/app").await;
        let uri = format!("/v2/acme/app/blobs/{}", blob.digest);
        for range in ["bytes=100-", "bytes=200-300", "bytes=9-2"] {
            let response = get_range(&app, &uri, range).await;
            assert_eq!(
                response.status,
                StatusCode::RANGE_NOT_SATISFIABLE,
                "{range}"
            );
            assert_eq!(
                response.header("content-range"),
                Some("bytes */100"),
                "{range}"
            );
        }
    }

    async fn an_unknown_blob_in_a_known_repository_is_blob_unknown(app) {
        push_numbered(&app, "acme/app").await;
        let missing = sha256(b"never pushed");
        assert_error(
            &get(&app, &format!("/v2/acme/app/blobs/{missing}")).await,
            StatusCode::NOT_FOUND,
            "BLOB_UNKNOWN",
        );
        assert_eq!(
            head(&app, &format!("/v2/acme/app/blobs/{missing}"))
                .await
                .status,
            StatusCode::NOT_FOUND
        );
    }

    async fn a_blob_in_an_unknown_repository_is_name_unknown(app) {
        let blob = push_numbered(&app, "acme/app").await;
        assert_error(
            &get(&app, &format!("/v2/acme/nothing/blobs/{}", blob.digest)).await,
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
        );
    }

    async fn a_blob_pushed_to_one_repository_is_not_served_by_another(app) {
        let blob = push_numbered(&app, "acme/a").await;
        push_blob(&app, "acme/b", &Blob::new("something else")).await;
        assert_error(
            &get(&app, &format!("/v2/acme/b/blobs/{}", blob.digest)).await,
            StatusCode::NOT_FOUND,
            "BLOB_UNKNOWN",
        );
        let mounted = app
            .admin(
                http::Method::POST,
                &format!(
                    "/v2/acme/b/blobs/uploads/?mount={}&from=acme/a",
                    blob.digest
                ),
                &[],
                axum::body::Body::empty(),
            )
            .await;
        assert_status(&mounted, StatusCode::CREATED);
        assert_eq!(
            get(&app, &format!("/v2/acme/b/blobs/{}", blob.digest))
                .await
                .body
                .as_ref(),
            blob.bytes.as_slice()
        );
    }

    async fn a_deleted_blob_is_no_longer_served_by_that_repository(app) {
        let blob = push_numbered(&app, "acme/a").await;
        push_blob(&app, "acme/b", &blob).await;
        let uri = format!("/v2/acme/a/blobs/{}", blob.digest);
        let response = delete(&app, &uri).await;
        assert_status(&response, StatusCode::ACCEPTED);
        assert_error(
            &get(&app, &uri).await,
            StatusCode::NOT_FOUND,
            "BLOB_UNKNOWN",
        );
        assert_error(
            &delete(&app, &uri).await,
            StatusCode::NOT_FOUND,
            "BLOB_UNKNOWN",
        );
        let other = get(&app, &format!("/v2/acme/b/blobs/{}", blob.digest)).await;
        assert_eq!(
            other.body.as_ref(),
            blob.bytes.as_slice(),
            "another repository's link is untouched"
        );
    }

    async fn a_blob_a_manifest_uses_cannot_be_deleted_until_the_manifest_is(app = mutable_tags_config()) {
        let image = push_image(&app, "acme/app", "v1", "in use").await;
        for blob in [&image.config, &image.layer] {
            let uri = format!("/v2/acme/app/blobs/{}", blob.digest);
            let response = delete(&app, &uri).await;
            assert_error(&response, StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED");
            assert!(
                error_message(&response).contains(&image.manifest.digest),
                "{}",
                response.text()
            );
            assert_eq!(get(&app, &uri).await.body.as_ref(), blob.bytes.as_slice());
        }
        assert_status(
            &delete(
                &app,
                &format!("/v2/acme/app/manifests/{}", image.manifest.digest),
            )
            .await,
            StatusCode::ACCEPTED,
        );
        let uri = format!("/v2/acme/app/blobs/{}", image.layer.digest);
        assert_status(&delete(&app, &uri).await, StatusCode::ACCEPTED);
        assert_error(
            &get(&app, &uri).await,
            StatusCode::NOT_FOUND,
            "BLOB_UNKNOWN",
        );
    }
}
