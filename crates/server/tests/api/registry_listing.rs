//! `GET /v2/<name>/tags/list` and `GET /v2/_catalog`: sorted, paginated with `n` and
//! `last`, linked to the next page.

use axum::body::Body;
use http::{Method, StatusCode};
use serde_json::json;
use testkit::TestApp;

use crate::support::{
    Image, anonymous_pull_config, assert_error, assert_status, delete, get, mutable_tags_config,
    next_link, push_image, push_manifest,
};

/// Tags in the order the registry must list them, whatever the push order: the spec's
/// lexical order, which ignores case, with ties between cases broken by bytes.
const SORTED_TAGS: [&str; 9] = [
    "1.0", "_x", "A", "a", "beta-1", "Latest", "latest", "v10", "v2",
];

/// Pushes one image to `acme/app` under every tag of [`SORTED_TAGS`], in a scrambled order.
async fn push_tags(app: &TestApp) {
    let image = Image::new("tagged");
    image.push_blobs(app, "acme/app").await;
    for tag in [
        "v2", "latest", "A", "v10", "_x", "1.0", "Latest", "beta-1", "a",
    ] {
        push_manifest(app, "acme/app", tag, &image.manifest).await;
    }
}

/// Follows `Link` headers from `uri`, returning every page's `field` entries and the
/// number of pages.
async fn walk(app: &TestApp, uri: &str, field: &str) -> (Vec<String>, usize) {
    let mut seen = Vec::new();
    let mut pages = 0;
    let mut next = Some(uri.to_owned());
    while let Some(uri) = next {
        pages += 1;
        assert!(pages <= 20, "pagination does not end");
        let response = get(app, &uri).await;
        assert_status(&response, StatusCode::OK);
        let entries = response.json()[field]
            .as_array()
            .cloned()
            .unwrap_or_default();
        seen.extend(
            entries
                .iter()
                .map(|e| e.as_str().unwrap_or_default().to_owned()),
        );
        next = next_link(&response);
    }
    (seen, pages)
}

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| (*v).to_owned()).collect()
}

registry_tests! {
    async fn tags_are_listed_in_lexical_order_ignoring_case(app) {
        push_tags(&app).await;
        let response = get(&app, "/v2/acme/app/tags/list").await;
        assert_status(&response, StatusCode::OK);
        assert_eq!(response.header("content-type"), Some("application/json"));
        assert_eq!(
            response.json(),
            json!({ "name": "acme/app", "tags": SORTED_TAGS })
        );
        assert_eq!(response.header("link"), None);
    }

    async fn a_page_of_tags_links_to_the_next_and_the_links_walk_every_tag_once(app) {
        push_tags(&app).await;
        let first = get(&app, "/v2/acme/app/tags/list?n=2").await;
        assert_eq!(first.json()["tags"], json!(["1.0", "_x"]));
        assert_eq!(
            first.header("link"),
            Some("</v2/acme/app/tags/list?n=2&last=_x>; rel=\"next\"")
        );
        // Pages end between `A` and `a` and between `Latest` and `latest`: ties in case
        // must neither repeat nor skip a tag.
        let (seen, pages) = walk(&app, "/v2/acme/app/tags/list?n=2", "tags").await;
        assert_eq!(seen, strings(&SORTED_TAGS));
        assert_eq!(pages, 5);
        let (seen, pages) = walk(&app, "/v2/acme/app/tags/list?n=3", "tags").await;
        assert_eq!((seen, pages), (strings(&SORTED_TAGS), 3));
        let (seen, pages) = walk(&app, "/v2/acme/app/tags/list?n=9", "tags").await;
        assert_eq!(
            (seen, pages),
            (strings(&SORTED_TAGS), 1),
            "a page that holds everything has no next link"
        );
    }

    async fn asking_for_zero_tags_gives_an_empty_list(app) {
        push_tags(&app).await;
        let response = get(&app, "/v2/acme/app/tags/list?n=0").await;
        assert_status(&response, StatusCode::OK);
        assert_eq!(response.json(), json!({ "name": "acme/app", "tags": [] }));
        assert_eq!(response.header("link"), None);
    }

    async fn last_alone_lists_the_tags_after_it(app) {
        push_tags(&app).await;
        let response = get(&app, "/v2/acme/app/tags/list?last=beta-1").await;
        assert_eq!(
            response.json()["tags"],
            json!(["Latest", "latest", "v10", "v2"])
        );
        let response = get(&app, "/v2/acme/app/tags/list?last=Latest").await;
        assert_eq!(response.json()["tags"], json!(["latest", "v10", "v2"]));
        let response = get(&app, "/v2/acme/app/tags/list?last=b").await;
        assert_eq!(
            response.json()["tags"],
            json!(["beta-1", "Latest", "latest", "v10", "v2"]),
            "last need not be a tag"
        );
        let response = get(&app, "/v2/acme/app/tags/list?last=v2").await;
        assert_eq!(response.json()["tags"], json!([]));
    }

    async fn a_repository_whose_tags_were_deleted_lists_no_tags(app = mutable_tags_config()) {
        push_image(&app, "acme/app", "v1", "untagged").await;
        assert_status(
            &delete(&app, "/v2/acme/app/manifests/v1").await,
            StatusCode::ACCEPTED,
        );
        assert_eq!(
            get(&app, "/v2/acme/app/tags/list").await.json(),
            json!({ "name": "acme/app", "tags": [] })
        );
    }

    async fn the_tags_of_an_unknown_repository_are_name_unknown(app) {
        push_tags(&app).await;
        assert_error(
            &get(&app, "/v2/acme/other/tags/list").await,
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
        );
    }

    async fn a_page_size_that_is_not_a_number_is_refused(app) {
        push_tags(&app).await;
        for n in ["-1", "abc", "1.5", ""] {
            let response = get(&app, &format!("/v2/acme/app/tags/list?n={n}")).await;
            assert_eq!(
                response.status,
                StatusCode::BAD_REQUEST,
                "n={n}: {}",
                response.text()
            );
            let response = get(&app, &format!("/v2/_catalog?n={n}")).await;
            assert_eq!(
                response.status,
                StatusCode::BAD_REQUEST,
                "catalog n={n}: {}",
                response.text()
            );
        }
    }

    async fn the_catalog_lists_repositories_in_byte_order(app) {
        for repository in ["b", "acme/web", "a-b", "a/b", "a0"] {
            push_image(&app, repository, "v1", repository).await;
        }
        let response = get(&app, "/v2/_catalog").await;
        assert_status(&response, StatusCode::OK);
        assert_eq!(
            response.json(),
            json!({ "repositories": ["a-b", "a/b", "a0", "acme/web", "b"] })
        );
        assert_eq!(response.header("link"), None);
    }

    async fn a_page_of_the_catalog_links_to_the_next_and_the_links_walk_every_repository_once(app) {
        for repository in ["b", "acme/web", "a-b", "a/b", "a0"] {
            push_image(&app, repository, "v1", repository).await;
        }
        let first = get(&app, "/v2/_catalog?n=2").await;
        assert_eq!(first.json()["repositories"], json!(["a-b", "a/b"]));
        assert_eq!(
            first.header("link"),
            Some("</v2/_catalog?n=2&last=a/b>; rel=\"next\"")
        );
        let (seen, pages) = walk(&app, "/v2/_catalog?n=2", "repositories").await;
        assert_eq!(seen, strings(&["a-b", "a/b", "a0", "acme/web", "b"]));
        assert_eq!(pages, 3);
        let after = get(&app, "/v2/_catalog?last=a0").await;
        assert_eq!(after.json()["repositories"], json!(["acme/web", "b"]));
        let none = get(&app, "/v2/_catalog?n=0").await;
        assert_eq!(none.json(), json!({ "repositories": [] }));
    }

    async fn the_catalog_refuses_an_anonymous_client(app) {
        push_image(&app, "acme/app", "v1", "hidden").await;
        let response = app
            .send(Method::GET, "/v2/_catalog", &[], Body::empty())
            .await;
        assert_error(&response, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
        assert_eq!(
            response.header("www-authenticate"),
            Some("Bearer realm=\"http://localhost/token\",service=\"localhost\",scope=\"registry:catalog:*\"")
        );
        assert!(!response.text().contains("acme/app"));
    }

    async fn the_catalog_serves_an_anonymous_client_when_anonymous_pull_is_on(app = anonymous_pull_config()) {
        push_image(&app, "acme/app", "v1", "public").await;
        let response = app
            .send(Method::GET, "/v2/_catalog", &[], Body::empty())
            .await;
        assert_status(&response, StatusCode::OK);
        assert_eq!(response.json(), json!({ "repositories": ["acme/app"] }));
    }
}
