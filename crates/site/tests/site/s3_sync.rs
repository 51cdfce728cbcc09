//! Syncing to S3 against a real SeaweedFS: objects carry the right `Content-Type` and
//! `Cache-Control` (seen by plain HTTP HEAD requests), only changed files are
//! uploaded, stale ones are deleted, and objects outside the prefix are left alone.

use std::time::Duration;

use object_store::ObjectStoreExt;
use object_store::path::Path as ObjectPath;
use object_store::signer::Signer;
use site::{DEFAULT_CACHE_CONTROL, Destination, IMMUTABLE, REVALIDATE, SyncOptions, SyncReport};

use crate::support::{SECRET_KEY, Seaweed, s3_settings, staged_site};

const FIRST: &[(&str, &[u8])] = &[
    ("index.html", b"<h1>v1</h1>"),
    ("assets/app.3f2a9c.js", b"console.log(1)"),
    ("assets/style.css", b"body{}"),
    ("data.json", b"{}"),
    ("logo.png", b"\x89PNG"),
    ("blog/[slug].html", b"<h1>post</h1>"),
];

const SECOND: &[(&str, &[u8])] = &[
    ("index.html", b"<h1>v2</h1>"),
    ("assets/app.3f2a9c.js", b"console.log(1)"),
    ("assets/style.css", b"body{}"),
    ("data.json", b"{}"),
    ("blog/[slug].html", b"<h1>post</h1>"),
    ("fonts/inter.woff2", b"wOF2"),
];

/// The headers a plain HTTP HEAD of `key` answers with (through a presigned URL, as a
/// browser behind a CDN would see them).
async fn head(seaweed: &Seaweed, key: &str) -> (u16, Option<String>, Option<String>) {
    let url = seaweed
        .client()
        .signed_url(
            http::Method::HEAD,
            &ObjectPath::parse(key).expect("key"),
            Duration::from_secs(300),
        )
        .await
        .expect("presign");
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let response = agent.head(url.as_str()).call().expect("HEAD");
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned)
        };
        (
            response.status().as_u16(),
            header("content-type"),
            header("cache-control"),
        )
    })
    .await
    .expect("join")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_sync_sets_headers_uploads_only_changes_and_deletes_stale_objects() {
    let seaweed = Seaweed::start("sites").await;
    let work = tempfile::tempdir().expect("temp dir");
    let destination = Destination::s3(
        &s3_settings(&seaweed),
        Some(SECRET_KEY.to_owned()),
        &seaweed.bucket,
        "web/prod",
    )
    .expect("destination");
    assert_eq!(destination.description(), "s3://sites/web/prod");
    let options = SyncOptions {
        default_cache_control: "public, max-age=60".to_owned(),
        concurrency: 8,
    };
    // Something else in the bucket, outside the prefix, that must survive.
    let client = seaweed.client();
    client
        .put(
            &ObjectPath::from("other/keep.txt"),
            bytes::Bytes::from_static(b"keep").into(),
        )
        .await
        .expect("put");

    let (_packed, first) = staged_site(work.path(), "first", FIRST);
    let report = destination
        .sync(&first.root, &first.files, &options)
        .await
        .expect("first sync");
    assert_eq!(
        report,
        SyncReport {
            uploaded: 6,
            unchanged: 0,
            deleted: 0
        }
    );
    for (key, content_type, cache_control) in [
        (
            "web/prod/index.html",
            "text/html; charset=utf-8",
            REVALIDATE,
        ),
        (
            "web/prod/assets/app.3f2a9c.js",
            "text/javascript; charset=utf-8",
            IMMUTABLE,
        ),
        (
            "web/prod/assets/style.css",
            "text/css; charset=utf-8",
            "public, max-age=60",
        ),
        ("web/prod/data.json", "application/json", REVALIDATE),
        ("web/prod/logo.png", "image/png", "public, max-age=60"),
        (
            "web/prod/blog/[slug].html",
            "text/html; charset=utf-8",
            REVALIDATE,
        ),
    ] {
        let (status, actual_type, actual_cache) = head(&seaweed, key).await;
        assert_eq!(status, 200, "{key}");
        assert_eq!(actual_type.as_deref(), Some(content_type), "{key}");
        assert_eq!(actual_cache.as_deref(), Some(cache_control), "{key}");
    }
    let body = client
        .get(&ObjectPath::parse("web/prod/blog/[slug].html").expect("key"))
        .await
        .expect("get")
        .bytes()
        .await
        .expect("body");
    assert_eq!(body.as_ref(), b"<h1>post</h1>");

    let unchanged_before = client
        .head(&ObjectPath::from("web/prod/assets/app.3f2a9c.js"))
        .await
        .expect("head");

    let (_packed, second) = staged_site(work.path(), "second", SECOND);
    let report = destination
        .sync(&second.root, &second.files, &options)
        .await
        .expect("second sync");
    assert_eq!(
        report,
        SyncReport {
            uploaded: 2,
            unchanged: 4,
            deleted: 1
        }
    );
    let unchanged_after = client
        .head(&ObjectPath::from("web/prod/assets/app.3f2a9c.js"))
        .await
        .expect("head");
    assert_eq!(
        unchanged_after.last_modified,
        unchanged_before.last_modified
    );
    assert_eq!(head(&seaweed, "web/prod/logo.png").await.0, 404);
    let (_, woff_type, woff_cache) = head(&seaweed, "web/prod/fonts/inter.woff2").await;
    assert_eq!(woff_type.as_deref(), Some("font/woff2"));
    assert_eq!(woff_cache.as_deref(), Some("public, max-age=60"));
    assert_eq!(head(&seaweed, "other/keep.txt").await.0, 200);

    // A re-run uploads nothing; one that lost its record compares content (by the
    // objects' SHA-256 metadata) and uploads nothing either.
    let report = destination
        .sync(&second.root, &second.files, &options)
        .await
        .expect("re-run");
    assert_eq!((report.uploaded, report.deleted), (0, 0));
    client
        .delete(&ObjectPath::from("web/prod/.gantry/files.json"))
        .await
        .expect("lose the record");
    let report = destination
        .sync(&second.root, &second.files, &options)
        .await
        .expect("re-run without a record");
    assert_eq!(
        (report.uploaded, report.unchanged, report.deleted),
        (0, 6, 0)
    );

    // The default cache control changing is a change of headers: re-uploaded.
    let options = SyncOptions {
        default_cache_control: DEFAULT_CACHE_CONTROL.to_owned(),
        ..options
    };
    let report = destination
        .sync(&second.root, &second.files, &options)
        .await
        .expect("new default");
    assert_eq!(
        report.uploaded, 2,
        "style.css and inter.woff2 take the new default"
    );
    assert_eq!(
        head(&seaweed, "web/prod/assets/style.css")
            .await
            .2
            .as_deref(),
        Some(DEFAULT_CACHE_CONTROL)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_s3_endpoint_is_a_transient_error() {
    let settings = site::S3Settings {
        endpoint: Some("http://127.0.0.1:9".to_owned()),
        access_key_id: Some("k".to_owned()),
        allow_http: true,
        request_timeout_secs: 2,
        ..site::S3Settings::default()
    };
    let destination =
        Destination::s3(&settings, Some("s".to_owned()), "sites", "").expect("destination");
    let error = destination
        .list()
        .await
        .expect_err("nothing listens on port 9");
    assert!(error.is_transient(), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_file_is_uploaded_in_parts_with_its_headers() {
    let seaweed = Seaweed::start("large").await;
    let work = tempfile::tempdir().expect("temp dir");
    // Incompressible and over the single-request size, so it goes up in parts.
    let mut state: u64 = 7;
    let video: Vec<u8> = (0..(9 << 20))
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 56) as u8
        })
        .collect();
    let (_packed, site) = staged_site(
        work.path(),
        "site",
        &[
            ("index.html", b"<video src=intro.mp4>"),
            ("intro.mp4", &video),
        ],
    );
    let destination = Destination::s3(
        &s3_settings(&seaweed),
        Some(SECRET_KEY.to_owned()),
        &seaweed.bucket,
        "",
    )
    .expect("destination");
    let options = SyncOptions {
        default_cache_control: DEFAULT_CACHE_CONTROL.to_owned(),
        concurrency: 4,
    };
    let report = destination
        .sync(&site.root, &site.files, &options)
        .await
        .expect("sync");
    assert_eq!(report.uploaded, 2);
    let (status, content_type, cache_control) = head(&seaweed, "intro.mp4").await;
    assert_eq!(status, 200);
    assert_eq!(content_type.as_deref(), Some("video/mp4"));
    assert_eq!(cache_control.as_deref(), Some(DEFAULT_CACHE_CONTROL));
    let stored = seaweed
        .client()
        .get(&ObjectPath::from("intro.mp4"))
        .await
        .expect("get")
        .bytes()
        .await
        .expect("body");
    assert!(
        stored.as_ref() == video.as_slice(),
        "the large file came back different"
    );
    let report = destination
        .sync(&site.root, &site.files, &options)
        .await
        .expect("re-run");
    assert_eq!((report.uploaded, report.unchanged), (0, 2));
}
