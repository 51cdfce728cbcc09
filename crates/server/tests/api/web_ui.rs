//! The web UI through the router: signing in and out (passwords, tokens, the failure
//! limit, CI identities refused), the forms of a release (approve, reject with a
//! reason, roll back after seeing from → to, hold), CSRF and cross-site refusals that
//! change nothing, the security headers of every page, what a viewer may not use, and
//! hostile strings rendered inert — each on SQLite and PostgreSQL. A real browser
//! drives the same screens in the end-to-end tests.

use axum::body::Body;
use http::{Method, StatusCode};
use serde_json::{Value, json};
use testkit::{TestApp, TestResponse};

use crate::support::{assert_status, push_image, user_with_roles as user};

const PIPELINE: &str = r#"kind: Pipeline
name: standard
stages:
  - name: dev
    auto: true
  - name: staging
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
"#;

const PASSWORD: &str = "correct horse battery";

async fn api(app: &TestApp, method: Method, uri: &str, token: &str, body: Value) -> TestResponse {
    let auth = format!("Bearer {token}");
    let mut headers = vec![("authorization", auth.as_str())];
    let body = if body.is_null() {
        Body::empty()
    } else {
        headers.push(("content-type", "application/json"));
        Body::from(body.to_string())
    };
    app.send(method, uri, &headers, body).await
}

async fn admin_json(app: &TestApp, method: Method, uri: &str, body: Value) -> TestResponse {
    app.admin(
        method,
        uri,
        &[("content-type", "application/json")],
        body.to_string(),
    )
    .await
}

struct People {
    ci: String,
    dana: String,
    sam: String,
}

/// The pipeline applied; a CI identity, a developer (dana) and a staff member (sam)
/// with passwords, and a viewer (vic).
async fn setup(app: &TestApp) -> People {
    let response = app
        .admin(
            Method::POST,
            "/api/v1/apply",
            &[("content-type", "application/yaml")],
            PIPELINE.to_owned(),
        )
        .await;
    assert_status(&response, StatusCode::OK);
    let people = People {
        ci: user(app, "ci-bot", true, &["developer@web-app"]).await,
        dana: user(app, "dana", false, &["developer"]).await,
        sam: user(app, "sam", false, &["staff@web-app"]).await,
    };
    user(app, "vic", false, &["viewer"]).await;
    for name in ["dana", "sam", "vic"] {
        let response = admin_json(
            app,
            Method::PUT,
            &format!("/api/v1/users/{name}/password"),
            json!({ "password": PASSWORD }),
        )
        .await;
        assert_status(&response, StatusCode::OK);
    }
    people
}

/// Pushes and notifies a build (auto-deployed to dev) with `commit`, then asks for
/// it in staging as dana; the staging promotion's id and the digest.
async fn waiting_in_staging(
    app: &TestApp,
    people: &People,
    seed: &str,
    commit: &str,
) -> (i64, String) {
    let image = push_image(app, "acme/web-app", seed, seed).await;
    let digest = image.manifest.digest.clone();
    let response = api(
        app,
        Method::POST,
        "/api/v1/builds",
        &people.ci,
        json!({ "application": "web-app", "digest": digest, "commit": commit,
                "run_url": "javascript:alert(1)", "run_id": "<b>run</b>" }),
    )
    .await;
    assert_status(&response, StatusCode::CREATED);
    let response = api(
        app,
        Method::POST,
        "/api/v1/promotions",
        &people.dana,
        json!({ "application": "web-app", "environment": "staging", "digest": digest }),
    )
    .await;
    assert_status(&response, StatusCode::CREATED);
    assert_eq!(response.json()["state"], "waiting");
    (response.json()["id"].as_i64().expect("id"), digest)
}

/// Form-encodes `pairs`.
fn form(pairs: &[(&str, &str)]) -> String {
    let mut serializer = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in pairs {
        serializer.append_pair(name, value);
    }
    serializer.finish()
}

/// A signed-in browser: its session cookie and the CSRF token its pages carry.
struct Browser {
    cookie: String,
}

impl Browser {
    async fn get(&self, app: &TestApp, uri: &str) -> TestResponse {
        app.send(Method::GET, uri, &[("cookie", &self.cookie)], Body::empty())
            .await
    }

    async fn post(&self, app: &TestApp, uri: &str, pairs: &[(&str, &str)]) -> TestResponse {
        self.post_with(app, uri, pairs, &[]).await
    }

    async fn post_with(
        &self,
        app: &TestApp,
        uri: &str,
        pairs: &[(&str, &str)],
        extra: &[(&str, &str)],
    ) -> TestResponse {
        let mut headers = vec![
            ("cookie", self.cookie.as_str()),
            ("content-type", "application/x-www-form-urlencoded"),
        ];
        headers.extend_from_slice(extra);
        app.send(Method::POST, uri, &headers, form(pairs)).await
    }

    /// The CSRF token in the page at `uri`.
    async fn csrf(&self, app: &TestApp, uri: &str) -> String {
        let page = self.get(app, uri).await;
        assert_status(&page, StatusCode::OK);
        csrf_of(&page.text())
    }
}

fn csrf_of(html: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = html.find(marker).expect("a form with a CSRF token") + marker.len();
    html[start..].split('"').next().expect("token").to_owned()
}

async fn sign_in(app: &TestApp, user: &str, password: &str) -> TestResponse {
    app.send(
        Method::POST,
        "/sign-in",
        &[("content-type", "application/x-www-form-urlencoded")],
        form(&[
            ("user", user),
            ("password", password),
            ("next", "/approvals"),
        ]),
    )
    .await
}

async fn signed_in(app: &TestApp, user: &str) -> Browser {
    let response = sign_in(app, user, PASSWORD).await;
    assert_status(&response, StatusCode::SEE_OTHER);
    let cookie = response.header("set-cookie").expect("a session cookie");
    Browser {
        cookie: cookie.split(';').next().expect("name=value").to_owned(),
    }
}

async fn promotion_state(app: &TestApp, people: &People, id: i64) -> Value {
    let response = api(
        app,
        Method::GET,
        &format!("/api/v1/promotions/{id}"),
        &people.dana,
        Value::Null,
    )
    .await;
    assert_status(&response, StatusCode::OK);
    response.json()["state"].clone()
}

/// Makes an invitation for cleo as `admin`; the secret of its link.
async fn invitation_secret(app: &TestApp, admin: &Browser, csrf: &str) -> String {
    let page = admin
        .post(app, "/admin/users/cleo/invitation", &[("csrf", csrf)])
        .await;
    assert_status(&page, StatusCode::OK);
    let html = page.text();
    let start = html.find("/invitations/").expect("the link") + "/invitations/".len();
    html[start..].split('<').next().expect("secret").to_owned()
}

registry_tests! {
    async fn a_staff_member_signs_in_with_a_password_and_approves_staging_through_the_forms(app) {
        let people = setup(&app).await;
        let (id, _) = waiting_in_staging(&app, &people, "v1", "abc1234").await;

        // Without a session a page sends the browser to sign in, and back afterwards.
        let response = app.send(Method::GET, "/apps/web-app", &[], Body::empty()).await;
        assert_status(&response, StatusCode::SEE_OTHER);
        assert_eq!(response.header("location"), Some("/sign-in?next=%2Fapps%2Fweb%2Dapp"));

        // A wrong password is refused with one message for every reason.
        let response = sign_in(&app, "sam", "wrong horse battery").await;
        assert_status(&response, StatusCode::UNAUTHORIZED);
        assert!(response.text().contains("the user name or password is wrong"), "{}", response.text());
        assert!(response.header("set-cookie").is_none());
        let response = sign_in(&app, "nobody", PASSWORD).await;
        assert_status(&response, StatusCode::UNAUTHORIZED);

        let response = sign_in(&app, "SAM", PASSWORD).await;
        assert_status(&response, StatusCode::SEE_OTHER);
        assert_eq!(response.header("location"), Some("/approvals"));
        let cookie = response.header("set-cookie").expect("cookie");
        for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
            assert!(cookie.contains(attribute), "{cookie}");
        }
        assert!(!cookie.contains("Secure"), "plain HTTP without an https external URL: {cookie}");
        let sam = Browser { cookie: cookie.split(';').next().expect("pair").to_owned() };

        // The board marks what waits on sam; "my approvals" lists it.
        let board = sam.get(&app, "/").await;
        assert_status(&board, StatusCode::OK);
        let html = board.text();
        assert!(html.contains("web-app") && html.contains("waiting on you"), "{html}");
        let approvals = sam.get(&app, "/approvals").await;
        assert!(approvals.text().contains(&format!("Approve promotion {id}")), "{}", approvals.text());

        // Without the CSRF token nothing happens.
        let response = sam.post(&app, &format!("/promotions/{id}/approve"), &[("comment", "ok")]).await;
        assert_status(&response, StatusCode::FORBIDDEN);
        assert_eq!(promotion_state(&app, &people, id).await, "waiting");

        let csrf = sam.csrf(&app, &format!("/promotions/{id}")).await;
        let response = sam
            .post(&app, &format!("/promotions/{id}/approve"), &[("csrf", &csrf), ("comment", "ship it")])
            .await;
        assert_status(&response, StatusCode::SEE_OTHER);
        assert_eq!(response.header("location"), Some(format!("/promotions/{id}?done=approved").as_str()));
        assert_eq!(promotion_state(&app, &people, id).await, "deployed");
        let page = sam.get(&app, &format!("/promotions/{id}?done=approved")).await;
        let html = page.text();
        assert!(html.contains("Approved.") && html.contains("sam approved"), "{html}");

        // The approval is the engine's, audited as sam's like the API's.
        let audit = app.admin(Method::GET, "/api/v1/audit/export", &[], Body::empty()).await;
        let approvals: Vec<Value> = audit.text().lines()
            .map(|line| serde_json::from_str(line).expect("JSON line"))
            .filter(|entry: &Value| entry["action"] == "approve")
            .collect();
        assert_eq!(approvals.len(), 1);
        assert_eq!(approvals[0]["actor"], "sam");
        let sign_ins = audit.text().lines().filter(|line| line.contains("\"sign-in\"")).count();
        assert_eq!(sign_ins, 1, "one successful sign-in");
    }

    async fn a_form_without_its_token_or_from_another_site_changes_nothing(app) {
        let people = setup(&app).await;
        let (id, _) = waiting_in_staging(&app, &people, "v1", "abc1234").await;
        let sam = signed_in(&app, "sam").await;
        let csrf = sam.csrf(&app, "/approvals").await;
        let uri = format!("/promotions/{id}/approve");
        for extra in [
            vec![("origin", "http://evil.example")],
            vec![("sec-fetch-site", "cross-site")],
            vec![("origin", "null")],
        ] {
            let response = sam.post_with(&app, &uri, &[("csrf", &csrf)], &extra).await;
            assert_status(&response, StatusCode::FORBIDDEN);
            assert!(response.text().contains("another site"), "{}", response.text());
        }
        let response = sam.post(&app, &uri, &[("csrf", "0".repeat(64).as_str())]).await;
        assert_status(&response, StatusCode::FORBIDDEN);
        // Another session's token is not this one's.
        let dana = signed_in(&app, "dana").await;
        let dana_csrf = dana.csrf(&app, "/approvals").await;
        assert_ne!(dana_csrf, csrf);
        let response = sam.post(&app, &uri, &[("csrf", &dana_csrf)]).await;
        assert_status(&response, StatusCode::FORBIDDEN);
        assert_eq!(promotion_state(&app, &people, id).await, "waiting");
        // The same origin passes.
        let response = sam.post_with(&app, &uri, &[("csrf", &csrf)], &[("origin", "http://gantry.test"), ("host", "gantry.test"), ("sec-fetch-site", "same-origin")]).await;
        assert_status(&response, StatusCode::SEE_OTHER);
        assert_eq!(promotion_state(&app, &people, id).await, "deployed");
    }

    async fn every_page_carries_a_policy_that_allows_no_script_and_no_framing(app) {
        let people = setup(&app).await;
        let (id, digest) = waiting_in_staging(&app, &people, "v1", "abc1234").await;
        let sam = signed_in(&app, "sam").await;
        for uri in [
            "/".to_owned(), "/approvals".to_owned(), "/audit".to_owned(), "/apps/web-app".to_owned(),
            format!("/promotions/{id}"), "/apps/web-app/environments/dev/rollback".to_owned(),
            "/apps/web-app/environments/staging".to_owned(), "/dora".to_owned(), "/dora?days=90".to_owned(),
            format!("/artifacts/{digest}"),
        ] {
            let page = sam.get(&app, &uri).await;
            let csp = page.header("content-security-policy").unwrap_or_default().to_owned();
            assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"), "{uri}: {csp}");
            assert!(!csp.contains("unsafe-inline"), "{uri}: {csp}");
            assert_eq!(page.header("x-content-type-options"), Some("nosniff"), "{uri}");
            assert_eq!(page.header("referrer-policy"), Some("same-origin"), "{uri}");
            let html = page.text();
            assert_eq!(html.matches("<script").count(), html.matches("<script src=\"/static/gantry.js\" defer>").count(),
                "{uri}: only Gantry's own script");
            assert!(!html.contains(" style=") && !html.contains(" onclick="), "{uri}: inline style or handler");
            assert!(csp.contains("script-src 'self'"), "{uri}: {csp}");
            assert!(html.starts_with("<!DOCTYPE html><html lang=\"en\">"), "{uri}");
            assert!(html.len() < 100_000, "{uri}: {} bytes", html.len());
        }
        let page = app.send(Method::GET, "/sign-in", &[], Body::empty()).await;
        assert_status(&page, StatusCode::OK);
        assert!(page.header("content-security-policy").is_some());
    }

    async fn hostile_strings_from_builds_and_holds_render_inert(app) {
        let people = setup(&app).await;
        let (id, digest) = waiting_in_staging(&app, &people, "v1", "<script>alert(1)</script>").await;
        let response = api(&app, Method::PUT, "/api/v1/apps/web-app/environments/staging/hold", &people.dana,
            json!({ "reason": "<img src=x onerror=alert(2)>" })).await;
        assert_status(&response, StatusCode::OK);
        let sam = signed_in(&app, "sam").await;
        for uri in ["/".to_owned(), "/apps/web-app".to_owned(), format!("/promotions/{id}"), "/audit".to_owned(),
                    format!("/artifacts/{digest}"), "/apps/web-app/environments/dev".to_owned()] {
            let html = sam.get(&app, &uri).await.text();
            assert!(!html.contains("<script>alert") && !html.contains("<img src=x"), "{uri}: {html}");
            assert!(!html.contains("href=\"javascript:"), "{uri}: a javascript: link");
        }
        let html = sam.get(&app, &format!("/promotions/{id}")).await.text();
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{html}");
        assert!(html.contains("&lt;b&gt;run&lt;/b&gt;"), "the run id shown as text: {html}");
    }

    async fn a_viewer_sees_the_board_but_no_action_they_may_not_take(app) {
        let people = setup(&app).await;
        let (id, _) = waiting_in_staging(&app, &people, "v1", "abc1234").await;
        let vic = signed_in(&app, "vic").await;
        let board = vic.get(&app, "/").await;
        assert_status(&board, StatusCode::OK);
        assert!(!board.text().contains("waiting on you"));
        let page = vic.get(&app, "/apps/web-app").await.text();
        assert!(!page.contains(&format!("Approve promotion {id}")), "{page}");
        assert!(page.contains("You cannot decide on this promotion"), "{page}");
        assert!(page.contains("disabled"), "the hold and rollback buttons are disabled: {page}");
        assert!(page.contains("hold:web-app/dev"), "the permission is named: {page}");
        let csrf = csrf_of(&page);
        let response = vic.post(&app, &format!("/promotions/{id}/approve"), &[("csrf", &csrf)]).await;
        assert_status(&response, StatusCode::FORBIDDEN);
        assert_eq!(promotion_state(&app, &people, id).await, "waiting");
        let response = vic.post(&app, "/apps/web-app/environments/dev/hold", &[("csrf", &csrf), ("reason", "no")]).await;
        assert_status(&response, StatusCode::FORBIDDEN);
        assert!(response.text().contains("hold:web-app/dev"), "{}", response.text());
        // A viewer may not read the audit log.
        let response = vic.get(&app, "/audit").await;
        assert_status(&response, StatusCode::FORBIDDEN);
    }

    async fn a_rejection_needs_a_reason_and_a_rollback_shows_from_and_to_first(app) {
        let people = setup(&app).await;
        let (id, first) = waiting_in_staging(&app, &people, "v1", "abc1234").await;
        let sam = signed_in(&app, "sam").await;
        let csrf = sam.csrf(&app, "/approvals").await;
        let response = sam.post(&app, &format!("/promotions/{id}/reject"), &[("csrf", &csrf), ("reason", "  ")]).await;
        assert_status(&response, StatusCode::BAD_REQUEST);
        assert!(response.text().contains("reason"), "{}", response.text());
        assert_eq!(promotion_state(&app, &people, id).await, "waiting");
        let response = sam.post(&app, &format!("/promotions/{id}/approve"), &[("csrf", &csrf)]).await;
        assert_status(&response, StatusCode::SEE_OTHER);
        let (second_id, second) = waiting_in_staging(&app, &people, "v2", "def5678").await;
        let response = sam.post(&app, &format!("/promotions/{second_id}/approve"), &[("csrf", &csrf)]).await;
        assert_status(&response, StatusCode::SEE_OTHER);

        // The confirmation names both sides before anything happens (rolling back is
        // a deploying role's: dana's, not sam's).
        let dana = signed_in(&app, "dana").await;
        let dana_csrf = dana.csrf(&app, "/").await;
        let page = sam.get(&app, "/apps/web-app").await.text();
        assert!(page.contains("rollback:web-app/staging"), "sam sees why not: {page}");
        let page = dana.get(&app, "/apps/web-app/environments/staging/rollback").await;
        assert_status(&page, StatusCode::OK);
        let html = page.text();
        let from_at = html.find(&second).expect("from: what runs now");
        let to_at = html.find(&first).expect("to: what ran before");
        assert!(from_at < to_at, "from, then to");
        assert!(html.contains("def5678") && html.contains("abc1234"), "both commits: {html}");
        let status = api(&app, Method::GET, "/api/v1/apps/web-app", &people.dana, Value::Null).await.json();
        let staging = status["environments"].as_array().expect("environments").iter()
            .find(|e| e["name"] == "staging").expect("staging").clone();
        assert_eq!(staging["current"]["digest"], second.as_str(), "nothing happened yet");

        let response = dana.post(&app, "/apps/web-app/environments/staging/rollback",
            &[("csrf", &dana_csrf), ("from", &second), ("to", &first), ("reason", "bad release")]).await;
        assert_status(&response, StatusCode::SEE_OTHER);
        let status = api(&app, Method::GET, "/api/v1/apps/web-app", &people.dana, Value::Null).await.json();
        let staging = status["environments"].as_array().expect("environments").iter()
            .find(|e| e["name"] == "staging").expect("staging").clone();
        assert_eq!(staging["current"]["digest"], first.as_str());
        // What staging ran before is what a rollback would return to: not the digest
        // this rollback left (dev, rolled back by nobody, shows its first build).
        let page = dana.get(&app, "/apps/web-app").await.text();
        let stage = |env: &str| {
            let start = page.find(&format!("href=\"/apps/web-app/environments/{env}\">{env}</a>")).expect("the stage");
            page[start..].split("</li>").next().expect("its end").to_owned()
        };
        assert!(!stage("staging").contains("before:"), "{}", stage("staging"));
        assert!(stage("dev").contains("before: ") && stage("dev").contains(&first[..19]), "{}", stage("dev"));
        // The same form again is refused: staging no longer runs `from`.
        let response = dana.post(&app, "/apps/web-app/environments/staging/rollback",
            &[("csrf", &dana_csrf), ("from", &second), ("to", &first)]).await;
        assert_status(&response, StatusCode::CONFLICT);
    }

    async fn signing_out_or_a_new_password_ends_the_session_and_ci_identities_never_sign_in(app) {
        let people = setup(&app).await;
        let sam = signed_in(&app, "sam").await;
        let csrf = sam.csrf(&app, "/").await;
        let response = sam.post(&app, "/sign-out", &[("csrf", &csrf)]).await;
        assert_status(&response, StatusCode::SEE_OTHER);
        assert!(response.header("set-cookie").is_some_and(|c| c.contains("Max-Age=0")));
        let response = sam.get(&app, "/").await;
        assert_status(&response, StatusCode::SEE_OTHER);

        let dana = signed_in(&app, "dana").await;
        assert_status(&dana.get(&app, "/").await, StatusCode::OK);
        let response = admin_json(&app, Method::PUT, "/api/v1/users/dana/password",
            json!({ "password": "another long password" })).await;
        assert_status(&response, StatusCode::OK);
        assert_status(&dana.get(&app, "/").await, StatusCode::SEE_OTHER);
        assert_status(&sign_in(&app, "dana", PASSWORD).await, StatusCode::UNAUTHORIZED);
        assert_status(&sign_in(&app, "dana", "another long password").await, StatusCode::SEE_OTHER);

        // Short passwords and CI identities are refused when a password is set.
        let response = admin_json(&app, Method::PUT, "/api/v1/users/dana/password", json!({ "password": "short" })).await;
        assert_status(&response, StatusCode::BAD_REQUEST);
        let response = admin_json(&app, Method::PUT, "/api/v1/users/ci-bot/password", json!({ "password": PASSWORD })).await;
        assert_status(&response, StatusCode::BAD_REQUEST);
        assert!(response.text().contains("CI identit"), "{}", response.text());
        let response = api(&app, Method::PUT, "/api/v1/users/sam/password", &people.dana, json!({ "password": PASSWORD })).await;
        assert_status(&response, StatusCode::FORBIDDEN);
        // A CI identity's token does not sign in; a person's token does, and revoking
        // the token ends that session.
        let response = app.send(Method::POST, "/sign-in", &[("content-type", "application/x-www-form-urlencoded")],
            form(&[("with", "token"), ("token", &people.ci)])).await;
        assert_status(&response, StatusCode::FORBIDDEN);
        let response = app.send(Method::POST, "/sign-in", &[("content-type", "application/x-www-form-urlencoded")],
            form(&[("with", "token"), ("token", &people.sam)])).await;
        assert_status(&response, StatusCode::SEE_OTHER);
        let by_token = Browser { cookie: response.header("set-cookie").expect("cookie").split(';').next().expect("pair").to_owned() };
        assert_status(&by_token.get(&app, "/").await, StatusCode::OK);
        let tokens = app.admin(Method::GET, "/api/v1/users/sam/tokens", &[], Body::empty()).await.json();
        let token_id = tokens["tokens"][0]["id"].as_str().expect("token id").to_owned();
        let response = app.admin(Method::DELETE, &format!("/api/v1/tokens/{token_id}"), &[], Body::empty()).await;
        assert_status(&response, StatusCode::OK);
        assert_status(&by_token.get(&app, "/").await, StatusCode::SEE_OTHER);
    }

    async fn a_password_guessing_loop_is_stopped_by_the_failure_limit(app) {
        setup(&app).await;
        let mut statuses = Vec::new();
        for guess in 0..40 {
            let response = sign_in(&app, "sam", &format!("guess number {guess:04}")).await;
            statuses.push(response.status);
        }
        assert!(statuses[..10].iter().all(|s| *s == StatusCode::UNAUTHORIZED), "{statuses:?}");
        assert_eq!(statuses.last(), Some(&StatusCode::TOO_MANY_REQUESTS), "{statuses:?}");
        // Refused unchecked while spent, even the right password.
        assert_status(&sign_in(&app, "sam", PASSWORD).await, StatusCode::TOO_MANY_REQUESTS);
    }
    async fn an_environment_history_and_an_artifact_page_show_where_each_digest_ran_and_offer_rolling_back_to_it(app) {
        let people = setup(&app).await;
        let (first_id, first) = waiting_in_staging(&app, &people, "v1", "abc1234").await;
        let sam = signed_in(&app, "sam").await;
        let csrf = sam.csrf(&app, "/approvals").await;
        let approve = |id: i64| format!("/promotions/{id}/approve");
        assert_status(&sam.post(&app, &approve(first_id), &[("csrf", &csrf), ("comment", "first <ok>")]).await, StatusCode::SEE_OTHER);
        let (second_id, second) = waiting_in_staging(&app, &people, "v2", "def5678").await;
        assert_status(&sam.post(&app, &approve(second_id), &[("csrf", &csrf)]).await, StatusCode::SEE_OTHER);
        let short = |digest: &str| digest[..19].to_owned();

        // The board names what ran before what runs now, in each cell.
        let board = sam.get(&app, "/").await.text();
        assert!(board.contains("before: ") && board.contains(&short(&first)), "{board}");
        // Filtered by state on the server: nothing waits, so nothing shows.
        let board = sam.get(&app, "/?state=waiting").await.text();
        assert!(board.contains("No applications match"), "{board}");
        for state in ["deploying", "failed", "held", "drift"] {
            let page = sam.get(&app, &format!("/?state={state}")).await;
            assert_status(&page, StatusCode::OK);
            assert!(page.text().contains("No applications match"), "{state}: {}", page.text());
        }
        let (third_id, _) = waiting_in_staging(&app, &people, "v3", "0123abc").await;
        let board = sam.get(&app, "/?state=waiting").await.text();
        assert!(board.contains("/apps/web-app") && board.contains(&format!("promotion {third_id}")), "{board}");
        let response = sam.get(&app, "/?state=sleeping").await;
        assert_status(&response, StatusCode::BAD_REQUEST);
        assert!(response.text().contains("state must be one of"), "{}", response.text());

        // A promote form offers the recent builds, newest first, to pick from.
        let dana = signed_in(&app, "dana").await;
        let page = dana.get(&app, "/apps/web-app").await.text();
        let (newer, older) = (
            page.find(&format!("<option value=\"{second}\">")).expect("the second build"),
            page.find(&format!("<option value=\"{first}\">")).expect("the first build"),
        );
        assert!(newer < older, "newest first");
        assert!(page.contains("label for=\"pick-staging\""), "{page}");
        let response = dana.post(&app, "/apps/web-app/promote", &[("csrf", &csrf_of(&page)), ("environment", "staging"), ("digest", &first)]).await;
        assert_status(&response, StatusCode::SEE_OTHER);
        assert!(response.header("location").is_some_and(|l| l.ends_with("?done=promoted")), "{:?}", response.header("location"));
        let vic = signed_in(&app, "vic").await;
        let page = vic.get(&app, "/apps/web-app").await.text();
        assert!(page.contains("<select id=\"pick-staging\" name=\"digest\" disabled>"), "{page}");

        // The history offers "roll back to this" on the earlier success to whoever may
        // roll back (dana), never on what runs now, and names why not to others.
        let history = dana.get(&app, "/apps/web-app/environments/staging").await;
        assert_status(&history, StatusCode::OK);
        let html = history.text();
        assert!(html.contains(&format!("rollback?to={first}")), "{html}");
        assert!(!html.contains(&format!("rollback?to={second}")), "{html}");
        assert!(html.contains("abc1234") && html.contains("def5678"), "commits: {html}");
        assert!(html.contains(&format!("/promotions/{first_id}")), "the promotion behind it: {html}");
        let confirm = dana.get(&app, &format!("/apps/web-app/environments/staging/rollback?to={first}")).await;
        assert_status(&confirm, StatusCode::OK);
        assert!(confirm.text().contains(&format!("name=\"to\" value=\"{first}\"")), "{}", confirm.text());
        let html = sam.get(&app, "/apps/web-app/environments/staging").await.text();
        assert!(!html.contains("Roll back to this") && html.contains("rollback:web-app/staging"), "{html}");
        assert_status(&sam.get(&app, "/apps/web-app/environments/qa").await, StatusCode::NOT_FOUND);
        assert_status(&sam.get(&app, "/apps/web-app/environments/staging?before=x").await, StatusCode::BAD_REQUEST);

        // The artifact: provenance, where it runs and ran, approvals, the pull command.
        let page = sam.get(&app, &format!("/artifacts/{second}")).await;
        assert_status(&page, StatusCode::OK);
        let html = page.text();
        for expected in [
            "def5678", "ci-bot", "docker pull ", &format!("/acme/web-app@{second}"),
            "Runs now in", "/apps/web-app/environments/staging", "sam approved",
            &format!("/promotions/{second_id}"), "No check was reported.",
            // Its deployments' signed attestations, verified as the page is drawn.
            "Attestations", "https://slsa.dev/verification_summary/v1", ">verified<", "gantry verify ",
        ] {
            assert!(html.contains(expected), "{expected}: {html}");
        }
        assert!(!html.contains("href=\"javascript:"), "the hostile run URL is not a link: {html}");
        let html = sam.get(&app, &format!("/artifacts/{first}")).await.text();
        assert!(html.contains("It runs in no environment now.") && html.contains("“first &lt;ok&gt;”"), "{html}");
        let unknown = format!("sha256:{}", "0".repeat(64));
        assert_status(&sam.get(&app, &format!("/artifacts/{unknown}")).await, StatusCode::NOT_FOUND);
        assert_status(&sam.get(&app, "/artifacts/sha256:nothex").await, StatusCode::BAD_REQUEST);
    }

    async fn a_deployments_log_is_served_to_the_page_script_after_the_lines_it_has(app) {
        let people = setup(&app).await;
        let (id, _) = waiting_in_staging(&app, &people, "v1", "abc1234").await;
        let sam = signed_in(&app, "sam").await;
        let response = sam.get(&app, &format!("/promotions/{id}/log")).await;
        assert_status(&response, StatusCode::NOT_FOUND);
        let csrf = sam.csrf(&app, "/approvals").await;
        assert_status(&sam.post(&app, &format!("/promotions/{id}/approve"), &[("csrf", &csrf)]).await, StatusCode::SEE_OTHER);
        let response = sam.get(&app, &format!("/promotions/{id}/log")).await;
        assert_status(&response, StatusCode::OK);
        let log = response.json();
        assert_eq!(log["running"], false, "{log}");
        let lines = log["lines"].as_array().expect("lines").clone();
        assert!(!lines.is_empty() && lines[0]["text"].as_str().unwrap_or_default().contains("attempt 1"), "{log}");
        let last = lines.last().expect("a line")["seq"].as_i64().expect("seq");
        let response = sam.get(&app, &format!("/promotions/{id}/log?after={last}")).await;
        assert_eq!(response.json()["lines"], json!([]), "nothing after the last line");
        assert_status(&sam.get(&app, &format!("/promotions/{id}/log?after=x")).await, StatusCode::BAD_REQUEST);
        // A finished deployment's page is not live; the script is a file of Gantry's.
        let page = sam.get(&app, &format!("/promotions/{id}")).await.text();
        assert!(!page.contains("data-live=") && page.contains("data-after="), "{page}");
        let script = sam.get(&app, "/static/gantry.js").await;
        assert_status(&script, StatusCode::OK);
        assert_eq!(script.header("content-type"), Some("text/javascript; charset=utf-8"));
        assert!(script.text().contains("createTextNode") && !script.text().contains("innerHTML"));
        // Without a session the log is not served.
        let response = app.send(Method::GET, &format!("/promotions/{id}/log"), &[], Body::empty()).await;
        assert_status(&response, StatusCode::SEE_OTHER);
    }

    async fn the_dora_page_draws_each_metric_beside_a_table_of_its_figures(app) {
        let people = setup(&app).await;
        let (id, _) = waiting_in_staging(&app, &people, "v1", "abc1234").await;
        let sam = signed_in(&app, "sam").await;
        let csrf = sam.csrf(&app, "/approvals").await;
        assert_status(&sam.post(&app, &format!("/promotions/{id}/approve"), &[("csrf", &csrf)]).await, StatusCode::SEE_OTHER);
        let page = sam.get(&app, "/dora").await;
        assert_status(&page, StatusCode::OK);
        let html = page.text();
        assert_eq!(html.matches("<svg").count(), 4, "four charts: {html}");
        assert_eq!(html.matches("<figure").count(), 4, "{html}");
        assert!(html.contains("role=\"img\"") && html.contains("<rect"), "a drawn bar: {html}");
        assert!(html.contains("By application") && html.contains("/apps/web-app"), "{html}");
        assert!(html.contains("<dd>1 (0.03 a day)</dd>"), "one deployment to production (staging) in 30 days: {html}");
        let html = sam.get(&app, "/dora?days=90&app=web-app").await.text();
        assert!(html.contains("web-app, last 90 days") && !html.contains("By application"), "{html}");
        assert_eq!(html.matches("<svg").count(), 4);
        assert_status(&sam.get(&app, "/dora?days=7").await, StatusCode::BAD_REQUEST);
        assert_status(&sam.get(&app, "/dora?app=nothing").await, StatusCode::NOT_FOUND);
    }

    async fn an_admin_invites_a_person_who_chooses_a_password_through_a_link_that_works_once(app) {
        let people = setup(&app).await;
        let response = app.send(Method::POST, "/sign-in", &[("content-type", "application/x-www-form-urlencoded")],
            form(&[("with", "token"), ("token", &app.admin_token)])).await;
        assert_status(&response, StatusCode::SEE_OTHER);
        let admin = Browser { cookie: response.header("set-cookie").expect("cookie").split(';').next().expect("pair").to_owned() };
        let csrf = admin.csrf(&app, "/admin/users").await;

        let response = admin.post(&app, "/admin/users", &[("csrf", &csrf), ("name", "cleo"), ("roles", "client@web-app, viewer"), ("kind", "person")]).await;
        assert_status(&response, StatusCode::SEE_OTHER);
        assert_eq!(response.header("location"), Some("/admin/users/cleo?done=created"));
        let response = admin.post(&app, "/admin/users", &[("csrf", &csrf), ("name", "cleo"), ("kind", "person")]).await;
        assert_status(&response, StatusCode::CONFLICT);
        let response = admin.post(&app, "/admin/users", &[("csrf", &csrf), ("name", "eve"), ("roles", "emperor@web-app")]).await;
        assert_status(&response, StatusCode::BAD_REQUEST);
        let page = admin.get(&app, "/admin/users/cleo").await.text();
        assert!(page.contains("client@web-app") && page.contains("not set"), "{page}");

        let voided = invitation_secret(&app, &admin, &csrf).await;
        let secret = invitation_secret(&app, &admin, &csrf).await;
        assert_ne!(voided, secret);
        let open = |secret: &str| {
            let (app, uri) = (&app, format!("/invitations/{secret}"));
            async move { app.send(Method::GET, &uri, &[], Body::empty()).await }
        };
        assert_status(&open(&voided).await, StatusCode::NOT_FOUND);
        let page = open(&secret).await;
        assert_status(&page, StatusCode::OK);
        assert!(page.text().contains("Welcome to Gantry, cleo"), "{}", page.text());
        let choose = |password: &str, repeat: &str| {
            let (app, uri) = (&app, format!("/invitations/{secret}"));
            let body = form(&[("password", password), ("repeat", repeat)]);
            async move { app.send(Method::POST, &uri, &[("content-type", "application/x-www-form-urlencoded")], body).await }
        };
        assert_status(&choose(PASSWORD, "another long password").await, StatusCode::BAD_REQUEST);
        let response = choose("short", "short").await;
        assert_status(&response, StatusCode::BAD_REQUEST);
        assert!(response.text().contains("at least 12 characters"), "{}", response.text());
        let response = choose(PASSWORD, PASSWORD).await;
        assert_status(&response, StatusCode::SEE_OTHER);
        assert_eq!(response.header("location"), Some("/sign-in?done=invited"));
        assert_status(&choose(PASSWORD, PASSWORD).await, StatusCode::NOT_FOUND);
        assert_status(&open(&secret).await, StatusCode::NOT_FOUND);
        assert_status(&sign_in(&app, "cleo", PASSWORD).await, StatusCode::SEE_OTHER);
        // Nobody invites a CI identity, and only admins invite.
        let response = admin.post(&app, "/admin/users/ci-bot/invitation", &[("csrf", &csrf)]).await;
        assert_status(&response, StatusCode::BAD_REQUEST);
        let sam = signed_in(&app, "sam").await;
        let sam_csrf = sam.csrf(&app, "/").await;
        assert_status(&sam.get(&app, "/admin/users").await, StatusCode::FORBIDDEN);
        let response = sam.post(&app, "/admin/users/sam/invitation", &[("csrf", &sam_csrf)]).await;
        assert_status(&response, StatusCode::FORBIDDEN);
        assert!(!sam.get(&app, "/").await.text().contains("/admin/users"), "no Administration link");

        // A token is shown once, then listed without its secret, and revoked by a form.
        let page = admin.post(&app, "/admin/users/cleo/tokens", &[("csrf", &csrf), ("description", "laptop"), ("expires_in_days", "30")]).await;
        assert_status(&page, StatusCode::OK);
        let html = page.text();
        let start = html.find("<p><code class=\"wrap\">").expect("the secret") + "<p><code class=\"wrap\">".len();
        let token = html[start..].split('<').next().expect("token").to_owned();
        let response = api(&app, Method::GET, "/api/v1/tokens", &token, Value::Null).await;
        assert_status(&response, StatusCode::OK);
        let id = response.json()["tokens"][0]["id"].as_str().expect("id").to_owned();
        assert!(!admin.get(&app, "/admin/users/cleo").await.text().contains(&token));
        let response = admin.post(&app, &format!("/admin/tokens/{id}/revoke"), &[("csrf", &csrf)]).await;
        assert_status(&response, StatusCode::SEE_OTHER);
        assert_status(&api(&app, Method::GET, "/api/v1/tokens", &token, Value::Null).await, StatusCode::UNAUTHORIZED);
        assert_status(&admin.post(&app, "/admin/users/cleo/tokens", &[("csrf", &csrf), ("expires_in_days", "-1")]).await, StatusCode::BAD_REQUEST);
        // A password an admin sets voids an invitation not used yet.
        let pending = invitation_secret(&app, &admin, &csrf).await;
        assert_status(&admin.post(&app, "/admin/users/cleo/password", &[("csrf", &csrf), ("password", "an admin's choice here")]).await, StatusCode::SEE_OTHER);
        assert_status(&open(&pending).await, StatusCode::NOT_FOUND);
        assert_status(&admin.post(&app, "/admin/users/nobody/invitation", &[("csrf", &csrf)]).await, StatusCode::NOT_FOUND);
        // Setting a password through the form is the API's rule.
        assert_status(&admin.post(&app, "/admin/users/cleo/password", &[("csrf", &csrf), ("password", "short")]).await, StatusCode::BAD_REQUEST);
        assert_status(&admin.post(&app, "/admin/users/nobody/password", &[("csrf", &csrf), ("password", PASSWORD)]).await, StatusCode::NOT_FOUND);

        let audit = admin.get(&app, "/audit/export").await;
        assert_status(&audit, StatusCode::OK);
        assert_eq!(audit.header("content-disposition"), Some("attachment; filename=\"gantry-audit.ndjson\""));
        let entries: Vec<Value> = audit.text().lines().map(|line| serde_json::from_str(line).expect("JSON line")).collect();
        let invites = entries.iter().filter(|e| e["action"] == "invite").count();
        assert_eq!(invites, 3, "every invitation is audited");
        assert!(entries.iter().any(|e| e["action"] == "password" && e["actor"] == "cleo"), "cleo chose her own password");
        let _ = people;
    }

    async fn an_admin_sees_what_a_file_would_change_before_applying_it(app) {
        setup(&app).await;
        let response = app.send(Method::POST, "/sign-in", &[("content-type", "application/x-www-form-urlencoded")],
            form(&[("with", "token"), ("token", &app.admin_token)])).await;
        let admin = Browser { cookie: response.header("set-cookie").expect("cookie").split(';').next().expect("pair").to_owned() };
        let page = admin.get(&app, "/admin/resources").await;
        assert_status(&page, StatusCode::OK);
        assert!(page.text().contains("/admin/resources/pipelines/standard"), "{}", page.text());
        let page = admin.get(&app, "/admin/resources/applications/web-app").await;
        assert_status(&page, StatusCode::OK);
        assert!(page.text().contains("acme/web-app"), "{}", page.text());
        assert_status(&admin.get(&app, "/admin/resources/widgets/x").await, StatusCode::NOT_FOUND);
        let csrf = csrf_of(&page.text());
        let changed = PIPELINE.replace("{ role: staff, count: 1 }", "{ role: staff, count: 2 }");
        let revision = || async {
            app.admin(Method::GET, "/api/v1/resources/pipelines/standard", &[], Body::empty()).await.json()["revision"].clone()
        };
        let before = revision().await;
        let page = admin.post(&app, "/admin/resources/dry-run", &[("csrf", &csrf), ("yaml", &changed)]).await;
        assert_status(&page, StatusCode::OK);
        let html = page.text();
        assert!(html.contains("What the file would change") && html.contains("update"), "{html}");
        assert!(html.contains("count: 2") || html.contains("\"count\": 2") || html.contains("count"), "the diff: {html}");
        assert_eq!(revision().await, before, "a dry run changes nothing");
        let response = admin.post(&app, "/admin/resources/dry-run", &[("csrf", &csrf), ("yaml", "kind: Pipeline\nname: [")]).await;
        assert_status(&response, StatusCode::BAD_REQUEST);
        assert!(response.text().contains("nothing was applied"), "{}", response.text());
        let page = admin.post(&app, "/admin/resources/apply", &[("csrf", &csrf), ("yaml", &changed)]).await;
        assert_status(&page, StatusCode::OK);
        assert!(page.text().contains("Applied: 1 resources changed."), "{}", page.text());
        assert_ne!(revision().await, before);
        // Applying needs resources:apply, as in the API.
        let sam = signed_in(&app, "sam").await;
        let sam_csrf = sam.csrf(&app, "/").await;
        assert_status(&sam.post(&app, "/admin/resources/apply", &[("csrf", &sam_csrf), ("yaml", PIPELINE)]).await, StatusCode::FORBIDDEN);
    }
}
