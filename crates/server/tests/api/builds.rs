//! `GET /builds/{app}/{sha}.zip`: the zip of the site build pushed with that commit,
//! streamed as stored; bad names, unknown builds and artifacts that are not sites get
//! clear errors; reading needs a pull of the application's repository.

use axum::body::Body;
use http::{Method, StatusCode};

use crate::support::{apply, assert_status, push_image, push_site, sha256};

async fn declare(app: &testkit::TestApp) {
    let yaml = "kind: Pipeline\nname: site\nstages:\n  - name: prod\n---\n\
kind: Application\nname: docs\ntype: static-site\nrepository: acme/docs\npipeline: site\n\
environments:\n  prod:\n    target:\n      record: {}\n";
    apply(app, yaml).await;
}

registry_tests! {
    async fn a_site_build_is_served_as_its_zip_by_commit(app) {
        declare(&app).await;
        let commit = "3f2a9c1d0e5b7a8c9d0e1f2a3b4c5d6e7f8a9b0c";
        let (_, zip) = push_site(&app, "acme/docs", commit, &[("index.html", b"<h1>docs</h1>"), ("assets/app.3f2a9c.js", b"console.log(1)")]).await;
        let response = app.admin(Method::GET, &format!("/builds/docs/{commit}.zip"), &[], Body::empty()).await;
        assert_status(&response, StatusCode::OK);
        assert_eq!(response.header("content-type"), Some("application/zip"));
        assert_eq!(response.header("content-length"), Some(zip.len().to_string().as_str()));
        assert_eq!(response.header("docker-content-digest"), Some(sha256(&zip).as_str()));
        assert_eq!(
            response.header("content-disposition"),
            Some(format!("attachment; filename=\"docs-{commit}.zip\"").as_str())
        );
        assert_eq!(response.body.as_ref(), zip.as_slice(), "the archive as pushed");
    }

    async fn unknown_builds_and_bad_names_are_refused(app) {
        declare(&app).await;
        push_image(&app, "acme/docs", "image", "not a site").await;
        for (uri, status, code) in [
            ("/builds/docs/abc123", StatusCode::BAD_REQUEST, "bad_request"),
            ("/builds/docs/..zip", StatusCode::BAD_REQUEST, "bad_request"),
            ("/builds/docs/abc123.zip", StatusCode::NOT_FOUND, "not_found"),
            ("/builds/docs/image.zip", StatusCode::NOT_FOUND, "not_found"),
            ("/builds/nope/abc123.zip", StatusCode::NOT_FOUND, "not_found"),
        ] {
            let response = app.admin(Method::GET, uri, &[], Body::empty()).await;
            assert_status(&response, status);
            assert_eq!(response.json()["code"], code, "{uri}: {}", response.text());
        }
        // Anonymous callers learn nothing, not even which applications exist.
        for uri in ["/builds/docs/abc123.zip", "/builds/nope/abc123.zip"] {
            let anonymous = app.send(Method::GET, uri, &[], Body::empty()).await;
            assert_status(&anonymous, StatusCode::UNAUTHORIZED);
        }
    }
}
