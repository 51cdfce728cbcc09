//! Blob uploads: monolithic, in one `PUT`, in chunks (ordered by `Content-Range` or
//! streamed), their sessions' status, cancellation, expiry, limits and digests, and
//! cross-repository mounts.

use std::time::Duration;

use axum::body::Body;
use http::{Method, StatusCode};
use testkit::{TestApp, TestResponse};

use crate::support::{
    Blob, EMPTY_BLOB_SHA256, assert_error, assert_status, delete, get, push_blob, sha256, sha512,
    start_upload, streamed,
};

/// `PATCH`es `chunk` into the session at `location`, announcing `content_range` if given.
async fn patch(
    app: &TestApp,
    location: &str,
    content_range: Option<&str>,
    chunk: &[u8],
) -> TestResponse {
    let length = chunk.len().to_string();
    let mut headers = vec![
        ("content-type", "application/octet-stream"),
        ("content-length", length.as_str()),
    ];
    if let Some(range) = content_range {
        headers.push(("content-range", range));
    }
    app.admin(Method::PATCH, location, &headers, chunk.to_vec())
        .await
}

/// Finishes the session at `location` with `digest` and a last chunk (maybe empty).
async fn finish(app: &TestApp, location: &str, digest: &str, last_chunk: &[u8]) -> TestResponse {
    app.admin(
        Method::PUT,
        &format!("{location}?digest={digest}"),
        &[
            ("content-type", "application/octet-stream"),
            ("content-length", &last_chunk.len().to_string()),
        ],
        last_chunk.to_vec(),
    )
    .await
}

/// The blob's bytes as `repository` serves them, asserting that it does.
async fn stored_bytes(app: &TestApp, repository: &str, digest: &str) -> Vec<u8> {
    let response = get(app, &format!("/v2/{repository}/blobs/{digest}")).await;
    assert_status(&response, StatusCode::OK);
    response.body.to_vec()
}

/// Asserts that the session at `location` holds exactly `size` bytes.
async fn assert_session_size(app: &TestApp, location: &str, size: usize) {
    let response = get(app, location).await;
    assert_status(&response, StatusCode::NO_CONTENT);
    let expected = format!("0-{}", size.saturating_sub(1));
    assert_eq!(response.header("range"), Some(expected.as_str()));
}

fn small_blob_limit_config() -> registry::RegistryConfig {
    registry::RegistryConfig {
        max_blob_bytes: 16,
        ..registry::RegistryConfig::default()
    }
}

fn one_minute_upload_lifetime_config() -> registry::RegistryConfig {
    registry::RegistryConfig {
        upload_ttl: Duration::from_secs(60),
        ..registry::RegistryConfig::default()
    }
}

/// A `PATCH` of the session at `location` sent to `replica`, whose body is `first`
/// and then whatever the returned sender sends; returns once the replica holds the
/// session and receives the body. The task answers the response's status.
async fn start_slow_patch(
    app: &TestApp,
    replica: &server::AppState,
    location: &str,
    first: &[u8],
) -> (
    tokio::sync::mpsc::Sender<Result<bytes::Bytes, std::io::Error>>,
    tokio::task::JoinHandle<StatusCode>,
) {
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    let body = Body::from_stream(futures_util::stream::unfold(
        receiver,
        |mut receiver| async move { receiver.recv().await.map(|item| (item, receiver)) },
    ));
    let in_flight = replica.registry.uploads_in_flight();
    let request = http::Request::builder()
        .method(Method::PATCH)
        .uri(location)
        .header("authorization", app.admin_basic())
        .header("content-type", "application/octet-stream")
        .body(body)
        .expect("a request");
    let router = server::router(replica.clone());
    let task = tokio::spawn(async move {
        tower::ServiceExt::oneshot(router, request)
            .await
            .expect("an answer")
            .status()
    });
    sender
        .send(Ok(bytes::Bytes::copy_from_slice(first)))
        .await
        .expect("sent");
    // The writer receives its body only once it holds the session.
    let waited = tokio::time::Instant::now();
    while replica.registry.uploads_in_flight() == in_flight {
        assert!(
            waited.elapsed() < Duration::from_secs(10),
            "the chunk never claimed the session"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (sender, task)
}

fn numbered_bytes(count: usize) -> Vec<u8> {
    (0..count).map(|i| (i % 251) as u8).collect()
}

registry_tests! {
    async fn a_monolithic_post_stores_the_blob_and_says_where_it_is(app) {
        let blob = Blob::new("monolithic content");
        let response = app
            .admin(
                Method::POST,
                &format!("/v2/acme/app/blobs/uploads/?digest={}", blob.digest),
                &[("content-length", &blob.bytes.len().to_string())],
                blob.bytes.clone(),
            )
            .await;
        assert_status(&response, StatusCode::CREATED);
        let location = format!("/v2/acme/app/blobs/{}", blob.digest);
        assert_eq!(response.header("location"), Some(location.as_str()));
        assert_eq!(
            response.header("docker-content-digest"),
            Some(blob.digest.as_str())
        );
        assert_eq!(
            get(&app, &location).await.body.as_ref(),
            blob.bytes.as_slice()
        );
    }

    async fn a_session_finished_by_one_put_with_the_whole_body_stores_the_blob(app) {
        let blob = Blob::new("all of it in the PUT");
        let response = app
            .admin(
                Method::POST,
                "/v2/acme/app/blobs/uploads/",
                &[],
                Body::empty(),
            )
            .await;
        assert_status(&response, StatusCode::ACCEPTED);
        let location = response.header("location").expect("Location").to_owned();
        let id = response
            .header("docker-upload-uuid")
            .expect("Docker-Upload-UUID")
            .to_owned();
        assert_eq!(location, format!("/v2/acme/app/blobs/uploads/{id}"));
        assert_eq!(response.header("range"), Some("0-0"));
        let finished = finish(&app, &location, &blob.digest, &blob.bytes).await;
        assert_status(&finished, StatusCode::CREATED);
        assert_eq!(
            finished.header("location"),
            Some(format!("/v2/acme/app/blobs/{}", blob.digest).as_str())
        );
        assert_eq!(
            finished.header("docker-content-digest"),
            Some(blob.digest.as_str())
        );
        assert_eq!(
            stored_bytes(&app, "acme/app", &blob.digest).await,
            blob.bytes
        );
    }

    async fn chunks_sent_with_content_range_are_assembled_in_order(app) {
        let content = numbered_bytes(25);
        let location = start_upload(&app, "acme/app").await;
        for (start, end) in [(0usize, 9usize), (10, 19), (20, 24)] {
            let response = patch(
                &app,
                &location,
                Some(&format!("{start}-{end}")),
                &content[start..=end],
            )
            .await;
            assert_status(&response, StatusCode::ACCEPTED);
            assert_eq!(response.header("range"), Some(format!("0-{end}").as_str()));
            assert_eq!(response.header("location"), Some(location.as_str()));
            assert!(
                location.ends_with(
                    response
                        .header("docker-upload-uuid")
                        .expect("Docker-Upload-UUID")
                )
            );
        }
        let digest = sha256(&content);
        let finished = finish(&app, &location, &digest, b"").await;
        assert_status(&finished, StatusCode::CREATED);
        assert_eq!(
            finished.header("docker-content-digest"),
            Some(digest.as_str())
        );
        assert_eq!(stored_bytes(&app, "acme/app", &digest).await, content);
    }

    async fn streamed_chunks_without_content_range_are_appended(app) {
        let location = start_upload(&app, "acme/app").await;
        let first = app
            .admin(
                Method::PATCH,
                &location,
                &[],
                streamed(&[b"stream", b"ed "]),
            )
            .await;
        assert_status(&first, StatusCode::ACCEPTED);
        assert_eq!(first.header("range"), Some("0-8"));
        let second = app
            .admin(Method::PATCH, &location, &[], streamed(&[b"chunk", b"s"]))
            .await;
        assert_status(&second, StatusCode::ACCEPTED);
        assert_eq!(second.header("range"), Some("0-14"));
        let digest = sha256(b"streamed chunks");
        assert_status(
            &finish(&app, &location, &digest, b"").await,
            StatusCode::CREATED,
        );
        assert_eq!(
            stored_bytes(&app, "acme/app", &digest).await,
            b"streamed chunks"
        );
    }

    async fn the_last_chunk_may_come_with_the_finishing_put(app) {
        let location = start_upload(&app, "acme/app").await;
        assert_status(
            &patch(&app, &location, Some("0-4"), b"first").await,
            StatusCode::ACCEPTED,
        );
        let digest = sha256(b"first and last");
        let finished = app
            .admin(
                Method::PUT,
                &format!("{location}?digest={digest}"),
                &[("content-range", "5-13"), ("content-length", "9")],
                " and last",
            )
            .await;
        assert_status(&finished, StatusCode::CREATED);
        assert_eq!(
            stored_bytes(&app, "acme/app", &digest).await,
            b"first and last"
        );
    }

    async fn an_upload_resumes_after_asking_for_its_status(app) {
        let content = numbered_bytes(30);
        let location = start_upload(&app, "acme/app").await;
        assert_status(
            &patch(&app, &location, Some("0-11"), &content[..12]).await,
            StatusCode::ACCEPTED,
        );
        let status = get(&app, &location).await;
        assert_status(&status, StatusCode::NO_CONTENT);
        assert_eq!(status.header("range"), Some("0-11"));
        assert_eq!(status.header("location"), Some(location.as_str()));
        assert!(
            location.ends_with(
                status
                    .header("docker-upload-uuid")
                    .expect("Docker-Upload-UUID")
            )
        );
        assert!(status.body.is_empty());
        let next: usize = status
            .header("range")
            .and_then(|r| r.strip_prefix("0-"))
            .and_then(|end| end.parse::<usize>().ok())
            .expect("a 0-<end> range")
            + 1;
        let resumed = patch(
            &app,
            &location,
            Some(&format!("{next}-29")),
            &content[next..],
        )
        .await;
        assert_status(&resumed, StatusCode::ACCEPTED);
        let digest = sha256(&content);
        assert_status(
            &finish(&app, &location, &digest, b"").await,
            StatusCode::CREATED,
        );
        assert_eq!(stored_bytes(&app, "acme/app", &digest).await, content);
    }

    async fn a_chunk_that_does_not_start_where_the_upload_ends_is_refused_with_the_current_range(app) {
        let content = numbered_bytes(20);
        let location = start_upload(&app, "acme/app").await;
        assert_status(
            &patch(&app, &location, Some("0-9"), &content[..10]).await,
            StatusCode::ACCEPTED,
        );
        for range in ["5-14", "11-20", "0-9"] {
            let response = patch(&app, &location, Some(range), &content[..10]).await;
            assert_error(
                &response,
                StatusCode::RANGE_NOT_SATISFIABLE,
                "BLOB_UPLOAD_INVALID",
            );
            assert_eq!(response.header("range"), Some("0-9"), "{range}");
            assert_eq!(
                response.header("location"),
                Some(location.as_str()),
                "{range}"
            );
        }
        assert_session_size(&app, &location, 10).await;
        assert_status(
            &patch(&app, &location, Some("10-19"), &content[10..]).await,
            StatusCode::ACCEPTED,
        );
        let digest = sha256(&content);
        assert_status(
            &finish(&app, &location, &digest, b"").await,
            StatusCode::CREATED,
        );
        assert_eq!(stored_bytes(&app, "acme/app", &digest).await, content);
    }

    async fn a_content_range_that_disagrees_with_the_body_is_refused(app) {
        let location = start_upload(&app, "acme/app").await;
        assert_status(
            &patch(&app, &location, Some("0-4"), b"01234").await,
            StatusCode::ACCEPTED,
        );
        let by_header = app
            .admin(
                Method::PATCH,
                &location,
                &[("content-range", "5-14"), ("content-length", "5")],
                "56789",
            )
            .await;
        assert_error(&by_header, StatusCode::BAD_REQUEST, "BLOB_UPLOAD_INVALID");
        let by_body = app
            .admin(
                Method::PATCH,
                &location,
                &[("content-range", "5-14")],
                streamed(&[b"567", b"89"]),
            )
            .await;
        assert_error(&by_body, StatusCode::BAD_REQUEST, "BLOB_UPLOAD_INVALID");
        assert_session_size(&app, &location, 5).await;
    }

    async fn a_cancelled_session_can_no_longer_be_used(app) {
        let location = start_upload(&app, "acme/app").await;
        assert_status(
            &patch(&app, &location, Some("0-2"), b"abc").await,
            StatusCode::ACCEPTED,
        );
        let cancelled = delete(&app, &location).await;
        assert_status(&cancelled, StatusCode::NO_CONTENT);
        assert_error(
            &get(&app, &location).await,
            StatusCode::NOT_FOUND,
            "BLOB_UPLOAD_UNKNOWN",
        );
        assert_error(
            &patch(&app, &location, None, b"def").await,
            StatusCode::NOT_FOUND,
            "BLOB_UPLOAD_UNKNOWN",
        );
        assert_error(
            &finish(&app, &location, &sha256(b"abc"), b"").await,
            StatusCode::NOT_FOUND,
            "BLOB_UPLOAD_UNKNOWN",
        );
        assert_error(
            &delete(&app, &location).await,
            StatusCode::NOT_FOUND,
            "BLOB_UPLOAD_UNKNOWN",
        );
        assert_error(
            &get(&app, &format!("/v2/acme/app/blobs/{}", sha256(b"abc"))).await,
            StatusCode::NOT_FOUND,
            "BLOB_UNKNOWN",
        );
    }

    async fn an_unknown_or_malformed_upload_id_is_an_unknown_upload(app) {
        start_upload(&app, "acme/app").await;
        for id in [
            "3f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f",
            "3F1C2D4E-5A6B-4C7D-8E9F-0A1B2C3D4E5F",
            "garbage",
            "..",
        ] {
            let location = format!("/v2/acme/app/blobs/uploads/{id}");
            assert_error(
                &get(&app, &location).await,
                StatusCode::NOT_FOUND,
                "BLOB_UPLOAD_UNKNOWN",
            );
            assert_error(
                &patch(&app, &location, None, b"x").await,
                StatusCode::NOT_FOUND,
                "BLOB_UPLOAD_UNKNOWN",
            );
            assert_error(
                &delete(&app, &location).await,
                StatusCode::NOT_FOUND,
                "BLOB_UPLOAD_UNKNOWN",
            );
        }
    }

    async fn a_session_is_unknown_under_another_repositorys_url(app) {
        push_blob(&app, "acme/other", &Blob::new("makes acme/other exist")).await;
        let location = start_upload(&app, "acme/app").await;
        let id = location.rsplit('/').next().expect("an id").to_owned();
        for repository in ["acme/other", "acme/missing"] {
            let foreign = format!("/v2/{repository}/blobs/uploads/{id}");
            assert_error(
                &get(&app, &foreign).await,
                StatusCode::NOT_FOUND,
                "BLOB_UPLOAD_UNKNOWN",
            );
            assert_error(
                &patch(&app, &foreign, None, b"x").await,
                StatusCode::NOT_FOUND,
                "BLOB_UPLOAD_UNKNOWN",
            );
            assert_error(
                &finish(&app, &foreign, &sha256(b""), b"").await,
                StatusCode::NOT_FOUND,
                "BLOB_UPLOAD_UNKNOWN",
            );
            assert_error(
                &delete(&app, &foreign).await,
                StatusCode::NOT_FOUND,
                "BLOB_UPLOAD_UNKNOWN",
            );
        }
        assert_session_size(&app, &location, 0).await;
    }

    async fn a_finishing_put_whose_digest_does_not_match_stores_nothing(app) {
        let location = start_upload(&app, "acme/app").await;
        assert_status(
            &patch(&app, &location, Some("0-6"), b"content").await,
            StatusCode::ACCEPTED,
        );
        let claimed = sha256(b"other content");
        let response = finish(&app, &location, &claimed, b"").await;
        assert_error(&response, StatusCode::BAD_REQUEST, "DIGEST_INVALID");
        assert_error(
            &get(&app, &format!("/v2/acme/app/blobs/{claimed}")).await,
            StatusCode::NOT_FOUND,
            "BLOB_UNKNOWN",
        );
        assert_error(
            &get(&app, &format!("/v2/acme/app/blobs/{}", sha256(b"content"))).await,
            StatusCode::NOT_FOUND,
            "BLOB_UNKNOWN",
        );
    }

    async fn a_monolithic_post_whose_digest_does_not_match_stores_nothing(app) {
        let claimed = sha256(b"what the client meant");
        let response = app
            .admin(
                Method::POST,
                &format!("/v2/acme/app/blobs/uploads/?digest={claimed}"),
                &[],
                "what the client sent",
            )
            .await;
        assert_error(&response, StatusCode::BAD_REQUEST, "DIGEST_INVALID");
        // Not even the repository was created by the refused upload.
        assert_error(
            &get(&app, &format!("/v2/acme/app/blobs/{claimed}")).await,
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
        );
        assert_error(
            &get(
                &app,
                &format!("/v2/acme/app/blobs/{}", sha256(b"what the client sent")),
            )
            .await,
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
        );
    }

    async fn finishing_without_a_digest_is_refused_and_the_session_survives(app) {
        let location = start_upload(&app, "acme/app").await;
        assert_status(
            &patch(&app, &location, Some("0-3"), b"four").await,
            StatusCode::ACCEPTED,
        );
        let response = app.admin(Method::PUT, &location, &[], Body::empty()).await;
        assert_error(&response, StatusCode::BAD_REQUEST, "DIGEST_INVALID");
        assert_session_size(&app, &location, 4).await;
        assert_status(
            &finish(&app, &location, &sha256(b"four"), b"").await,
            StatusCode::CREATED,
        );
    }

    async fn a_malformed_digest_parameter_is_refused(app) {
        for digest in [
            "sha256:abc",
            "md5:d41d8cd98f00b204e9800998ecf8427e",
            "nonsense",
            "SHA256:E3B0",
        ] {
            let response = app
                .admin(
                    Method::POST,
                    &format!("/v2/acme/app/blobs/uploads/?digest={digest}"),
                    &[],
                    "x",
                )
                .await;
            assert_error(&response, StatusCode::BAD_REQUEST, "DIGEST_INVALID");
        }
        let location = start_upload(&app, "acme/app").await;
        let response = finish(&app, &location, "sha256:abc", b"x").await;
        assert_error(&response, StatusCode::BAD_REQUEST, "DIGEST_INVALID");
        assert_session_size(&app, &location, 0).await;
    }

    async fn a_sha512_digest_works_for_a_monolithic_upload(app) {
        let content = b"hashed with sha512".to_vec();
        let digest = sha512(&content);
        let response = app
            .admin(
                Method::POST,
                &format!("/v2/acme/app/blobs/uploads/?digest={digest}"),
                &[],
                content.clone(),
            )
            .await;
        assert_status(&response, StatusCode::CREATED);
        assert_eq!(
            response.header("docker-content-digest"),
            Some(digest.as_str())
        );
        assert_eq!(stored_bytes(&app, "acme/app", &digest).await, content);
    }

    async fn a_sha512_digest_works_for_a_chunked_upload(app) {
        let content = numbered_bytes(40);
        let location = start_upload(&app, "acme/app").await;
        assert_status(
            &patch(&app, &location, Some("0-19"), &content[..20]).await,
            StatusCode::ACCEPTED,
        );
        assert_status(
            &patch(&app, &location, Some("20-39"), &content[20..]).await,
            StatusCode::ACCEPTED,
        );
        let digest = sha512(&content);
        let response = finish(&app, &location, &digest, b"").await;
        assert_status(&response, StatusCode::CREATED);
        assert_eq!(
            response.header("docker-content-digest"),
            Some(digest.as_str())
        );
        assert_eq!(stored_bytes(&app, "acme/app", &digest).await, content);
        let wrong = start_upload(&app, "acme/app").await;
        assert_status(
            &patch(&app, &wrong, Some("0-19"), &content[..20]).await,
            StatusCode::ACCEPTED,
        );
        assert_error(
            &finish(&app, &wrong, &sha512(&content[..19]), b"").await,
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
        );
    }

    async fn the_empty_blob_uploads_and_downloads(app) {
        let response = app
            .admin(
                Method::POST,
                &format!("/v2/acme/app/blobs/uploads/?digest={EMPTY_BLOB_SHA256}"),
                &[("content-length", "0")],
                Body::empty(),
            )
            .await;
        assert_status(&response, StatusCode::CREATED);
        let location = start_upload(&app, "acme/other").await;
        assert_status(
            &finish(&app, &location, EMPTY_BLOB_SHA256, b"").await,
            StatusCode::CREATED,
        );
        for repository in ["acme/app", "acme/other"] {
            let downloaded =
                get(&app, &format!("/v2/{repository}/blobs/{EMPTY_BLOB_SHA256}")).await;
            assert_status(&downloaded, StatusCode::OK);
            assert!(downloaded.body.is_empty());
            assert_eq!(downloaded.header("content-length"), Some("0"));
            assert_eq!(
                downloaded.header("docker-content-digest"),
                Some(EMPTY_BLOB_SHA256)
            );
        }
    }

    async fn a_monolithic_upload_over_the_blob_size_limit_is_refused_and_stores_nothing(app = small_blob_limit_config()) {
        let at_limit = Blob::new(numbered_bytes(16));
        push_blob(&app, "acme/app", &at_limit).await;
        let over = Blob::new(numbered_bytes(17));
        let response = app
            .admin(
                Method::POST,
                &format!("/v2/acme/app/blobs/uploads/?digest={}", over.digest),
                &[],
                over.bytes.clone(),
            )
            .await;
        assert_error(&response, StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID");
        assert_error(
            &get(&app, &format!("/v2/acme/app/blobs/{}", over.digest)).await,
            StatusCode::NOT_FOUND,
            "BLOB_UNKNOWN",
        );
    }

    async fn an_announced_length_over_the_blob_size_limit_is_refused_before_the_body_is_read(app = small_blob_limit_config()) {
        // The body never comes: the answer must not wait for it.
        let never = || axum::body::Body::from_stream(futures_util::stream::pending::<Result<bytes::Bytes, std::io::Error>>());
        let digest = Blob::new(numbered_bytes(17)).digest;
        let monolithic = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            app.admin(Method::POST, &format!("/v2/acme/app/blobs/uploads/?digest={digest}"), &[("content-length", "17")], never()),
        )
        .await
        .expect("answered without reading the body");
        assert_error(&monolithic, StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID");
        let location = start_upload(&app, "acme/app").await;
        assert_status(&patch(&app, &location, Some("0-9"), &numbered_bytes(10)).await, StatusCode::ACCEPTED);
        let chunk = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            app.admin(Method::PATCH, &location, &[("content-length", "7"), ("content-range", "10-16")], never()),
        )
        .await
        .expect("answered without reading the body");
        assert_error(&chunk, StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID");
        assert_session_size(&app, &location, 10).await;
    }

    async fn a_chunk_that_takes_an_upload_over_the_blob_size_limit_is_refused(app = small_blob_limit_config()) {
        let content = numbered_bytes(20);
        let location = start_upload(&app, "acme/app").await;
        assert_status(
            &patch(&app, &location, Some("0-9"), &content[..10]).await,
            StatusCode::ACCEPTED,
        );
        let response = patch(&app, &location, Some("10-19"), &content[10..]).await;
        assert_error(&response, StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID");
        assert_session_size(&app, &location, 10).await;
        let streamed_over = app
            .admin(
                Method::PATCH,
                &location,
                &[],
                streamed(&[&content[10..14], &content[14..]]),
            )
            .await;
        assert_error(
            &streamed_over,
            StatusCode::PAYLOAD_TOO_LARGE,
            "SIZE_INVALID",
        );
        assert_session_size(&app, &location, 10).await;
    }

    async fn purging_removes_sessions_idle_for_longer_than_the_upload_lifetime(app = one_minute_upload_lifetime_config()) {
        let idle = start_upload(&app, "acme/app").await;
        assert_status(
            &patch(&app, &idle, Some("0-4"), b"parts").await,
            StatusCode::ACCEPTED,
        );
        let empty = start_upload(&app, "acme/app").await;
        let purged = app
            .state
            .registry
            .purge_expired_uploads(store::now_millis())
            .await
            .expect("purge");
        assert_eq!(purged, 0, "sessions younger than the lifetime are kept");
        assert_session_size(&app, &idle, 5).await;
        let purged = app
            .state
            .registry
            .purge_expired_uploads(store::now_millis() + 3_600_000)
            .await
            .expect("purge");
        assert!(purged >= 2, "purged {purged}");
        for location in [&idle, &empty] {
            assert_error(
                &get(&app, location).await,
                StatusCode::NOT_FOUND,
                "BLOB_UPLOAD_UNKNOWN",
            );
            assert_error(
                &finish(&app, location, &sha256(b"parts"), b"").await,
                StatusCode::NOT_FOUND,
                "BLOB_UPLOAD_UNKNOWN",
            );
        }
        assert_eq!(app.store.uploads().count().await.expect("count"), 0);
    }

    async fn maintenance_is_claimed_by_one_replica_at_a_time(app) {
        // A second replica on the same database (a deploy worker's owner of its own).
        let other = server::AppState::new(
            app.store.clone(),
            blobs::BlobStore::memory(),
            registry::RegistryConfig::default(),
        );
        assert_ne!(other.engine.job_owner(), app.state.engine.job_owner());
        let period = Duration::from_secs(60);
        let first = server::maintain(&app.state, period).await;
        assert_eq!(first, Some(server::MaintenanceReport::default()), "nothing to purge yet");
        assert_eq!(server::maintain(&other, period).await, None, "the other replica leaves it");
        assert!(server::maintain(&app.state, period).await.is_some(), "the holder renews its lease");
        assert_eq!(server::maintain(&other, period).await, None);
    }

    async fn a_blob_is_mounted_from_another_repository_without_uploading_it(app) {
        let blob = Blob::new("shared layer");
        push_blob(&app, "acme/base", &blob).await;
        assert_error(
            &get(&app, &format!("/v2/acme/app/blobs/{}", blob.digest)).await,
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
        );
        let response = app
            .admin(
                Method::POST,
                &format!(
                    "/v2/acme/app/blobs/uploads/?mount={}&from=acme/base",
                    blob.digest
                ),
                &[],
                Body::empty(),
            )
            .await;
        assert_status(&response, StatusCode::CREATED);
        let location = format!("/v2/acme/app/blobs/{}", blob.digest);
        assert_eq!(response.header("location"), Some(location.as_str()));
        assert_eq!(
            response.header("docker-content-digest"),
            Some(blob.digest.as_str())
        );
        assert_eq!(
            get(&app, &location).await.body.as_ref(),
            blob.bytes.as_slice()
        );
    }

    async fn a_mount_that_cannot_be_served_starts_an_upload_session_instead(app) {
        let blob = Blob::new("only in acme/base");
        push_blob(&app, "acme/base", &blob).await;
        push_blob(&app, "acme/empty", &Blob::new("something else")).await;
        for query in [
            format!("mount={}&from=acme/empty", blob.digest),
            format!("mount={}", blob.digest),
            format!("mount={}&from=acme/nowhere", blob.digest),
            format!("mount={}&from=Not..A/Name", blob.digest),
        ] {
            let response = app
                .admin(
                    Method::POST,
                    &format!("/v2/acme/app/blobs/uploads/?{query}"),
                    &[],
                    Body::empty(),
                )
                .await;
            assert_eq!(
                response.status,
                StatusCode::ACCEPTED,
                "{query}: {}",
                response.text()
            );
            let location = response
                .header("location")
                .expect("a session Location")
                .to_owned();
            assert!(
                location.starts_with("/v2/acme/app/blobs/uploads/"),
                "{query}: {location}"
            );
            assert_session_size(&app, &location, 0).await;
            assert_error(
                &get(&app, &format!("/v2/acme/app/blobs/{}", blob.digest)).await,
                StatusCode::NOT_FOUND,
                "BLOB_UNKNOWN",
            );
        }
        let response = app
            .admin(
                Method::POST,
                &format!(
                    "/v2/acme/app/blobs/uploads/?mount={}&from=acme/nowhere",
                    blob.digest
                ),
                &[],
                Body::empty(),
            )
            .await;
        let location = response
            .header("location")
            .expect("a session Location")
            .to_owned();
        assert_status(
            &finish(&app, &location, &blob.digest, &blob.bytes).await,
            StatusCode::CREATED,
        );
        assert_eq!(
            stored_bytes(&app, "acme/app", &blob.digest).await,
            blob.bytes
        );
    }

    async fn a_chunked_upload_on_a_multipart_store_continues_across_replicas_one_writer_at_a_time(app) {
        // Two replicas on this app's database sharing one store with multipart uploads
        // (as S3 is): whole 8 MiB parts go into one multipart upload across requests.
        let shared = blobs::BlobStore::memory();
        let replica = || server::AppState::new(app.store.clone(), shared.clone(), registry::RegistryConfig::default());
        let first = replica();
        let (one, two) = (server::router(first.clone()), server::router(replica()));
        let content = numbered_bytes((8 << 20) * 2 + 100);
        let started = app.admin_via(&one, Method::POST, "/v2/acme/app/blobs/uploads/", &[], Body::empty()).await;
        assert_status(&started, StatusCode::ACCEPTED);
        let location = started.header("location").expect("a location").to_owned();
        let chunk = |range: std::ops::Range<usize>| {
            let header = format!("{}-{}", range.start, range.end - 1);
            (header, content[range].to_vec())
        };
        let send = |router: &axum::Router, (range, bytes): (String, Vec<u8>)| {
            let router = router.clone();
            let location = location.clone();
            let app = &app;
            async move {
                app.admin_via(&router, Method::PATCH, &location, &[("content-type", "application/octet-stream"), ("content-range", &range)], bytes).await
            }
        };
        assert_status(&send(&one, chunk(0..6 << 20)).await, StatusCode::ACCEPTED);

        // A chunk whose body is still arriving holds the session: another request
        // for the same offset, on the other replica, is told to check and resume.
        let (sender, slow) = start_slow_patch(&app, &first, &location, &content[6 << 20..7 << 20]).await;
        let refused = send(&two, chunk(6 << 20..7 << 20)).await;
        assert_error(&refused, StatusCode::RANGE_NOT_SATISFIABLE, "BLOB_UPLOAD_INVALID");
        assert!(refused.text().contains("is writing to this upload"), "{}", refused.text());
        // The slow chunk is cut off: it records nothing and lets the session go at once.
        sender.send(Err(std::io::Error::other("the client went away"))).await.expect("sent");
        drop(sender);
        assert_eq!(slow.await.expect("the request"), StatusCode::BAD_REQUEST);
        assert_session_size(&app, &location, 6 << 20).await;
        assert_status(&send(&two, (format!("{}-{}", 6 << 20, (6 << 20) + 9), content[6 << 20..(6 << 20) + 10].to_vec())).await, StatusCode::ACCEPTED);
        let resumed = (6 << 20) + 10;

        // A request dropped mid-body (its client disconnected) lets the session go
        // too, a moment later, long before its claim would lapse.
        let waited = tokio::time::Instant::now();
        let (_sender, dropped) = start_slow_patch(&app, &first, &location, &content[resumed..resumed + 1000]).await;
        dropped.abort();
        let taken = loop {
            let answer = send(&two, chunk(resumed..6 << 20 | 1 << 20)).await;
            if answer.status == StatusCode::ACCEPTED { break waited.elapsed(); }
            assert_error(&answer, StatusCode::RANGE_NOT_SATISFIABLE, "BLOB_UPLOAD_INVALID");
            assert!(waited.elapsed() < Duration::from_secs(40), "the dropped request kept the session");
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        assert!(taken >= Duration::from_secs(5), "released only after its parts could land ({taken:?})");
        let resumed = (6 << 20) | (1 << 20);

        // The next chunks go to the other replica and back; the second completes the
        // first part from the first chunk's piece.
        assert_status(&send(&two, chunk(resumed..12 << 20)).await, StatusCode::ACCEPTED);
        assert_status(&send(&one, chunk(12 << 20..content.len())).await, StatusCode::ACCEPTED);
        let id = location.rsplit('/').next().expect("an id");
        let upload = app.store.uploads().get_in(&domain::RepoName::parse("acme/app").expect("a name"), id).await.expect("the session").expect("it exists");
        assert!(upload.multipart.is_some(), "whole parts went into a multipart upload");
        let numbers: Vec<Option<i64>> = upload.parts.iter().map(|part| part.number).collect();
        assert_eq!(numbers, [Some(1), Some(2), None]);
        let digest = sha256(&content);
        let finished = app.admin_via(&two, Method::PUT, &format!("{location}?digest={digest}"), &[], Body::empty()).await;
        assert_status(&finished, StatusCode::CREATED);
        let served = app.admin_via(&one, Method::GET, &format!("/v2/acme/app/blobs/{digest}"), &[], Body::empty()).await;
        assert_status(&served, StatusCode::OK);
        assert!(served.body == content, "the blob is the chunks in order");
    }
}
