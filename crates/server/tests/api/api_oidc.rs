//! OIDC federation: CI job tokens exchanged for scoped Gantry tokens through
//! `POST /api/v1/auth/oidc`, against a real issuer serving its own JWKS on loopback
//! and signing with its own RS256 and ES256 keys. The forged-token suite: every
//! malformed, mis-signed, mis-addressed, expired or replayed token is refused with 401
//! and the reason; the valid controls are accepted. Key rotation and the refetch rate
//! limit. What an exchanged token may do: push to its application, notify and report —
//! and nothing else.

use std::time::Duration;

use axum::body::Body;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{Method, StatusCode};
use serde_json::{Map, Value, json};
use testkit::issuer::{SigningKey, TestIssuer, segment, sign_with_header};
use testkit::{Backend, TestApp, TestResponse};

use crate::support::{Image, assert_status, push_blob, push_image};

const AUDIENCE: &str = "gantry";

fn resources(issuer: &str) -> String {
    format!(
        r#"kind: Pipeline
name: standard
stages:
  - name: dev
    auto: true
  - name: staging
    gate:
      approvals: [{{ role: staff, count: 1 }}]
---
kind: Application
name: web
type: container
repository: acme/web
pipeline: standard
environments:
  dev: {{ target: {{ record: {{}} }} }}
  staging: {{ target: {{ record: {{}} }} }}
---
kind: Application
name: api
type: container
repository: acme/api
pipeline: standard
environments:
  dev: {{ target: {{ record: {{}} }} }}
  staging: {{ target: {{ record: {{}} }} }}
---
kind: TrustPolicy
name: web-ci
issuer: {issuer}
audience: {AUDIENCE}
claims:
  repository: acme/web
  ref: refs/heads/main
role: developer
applications: [web]
max_token_lifetime: 15m
---
kind: TrustPolicy
name: web-deploy
issuer: {issuer}
audience: {AUDIENCE}
claims:
  repository: acme/web
  environment: staging
role: developer
applications: [web]
environments: [staging]
"#
    )
}

/// An app trusting `issuer` (keys refetched on unknown kids at most every
/// `min_refetch`), with the resources above applied.
async fn app_trusting(backend: Backend, issuer: &TestIssuer, min_refetch: Duration) -> TestApp {
    let access = server::AccessConfig {
        federation: auth::oidc::Federation::new(
            vec![auth::oidc::IssuerConfig {
                issuer: issuer.url.clone(),
                jwks_uri: None,
                algorithms: vec![auth::oidc::Algorithm::Rs256, auth::oidc::Algorithm::Es256],
            }],
            auth::oidc::KeyCaching {
                max_age: Duration::from_secs(3600),
                min_refetch,
            },
            // The issuer listens on loopback, which outbound requests reach only when
            // allow-listed.
            std::sync::Arc::new(outbound::Policy::parse(&["127.0.0.1".to_owned()]).expect("valid")),
        ),
        outbound: std::sync::Arc::new(outbound::Policy::default()),
    };
    let app = TestApp::spawn_with_access(backend, many_failures_allowed(), access).await;
    let response = app
        .admin(
            Method::POST,
            "/api/v1/apply",
            &[("content-type", "application/yaml")],
            resources(&issuer.url),
        )
        .await;
    assert_status(&response, StatusCode::OK);
    app
}

async fn exchange(app: &TestApp, token: &str) -> TestResponse {
    app.send(
        Method::POST,
        "/api/v1/auth/oidc",
        &[("content-type", "application/json")],
        json!({ "token": token }).to_string(),
    )
    .await
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

fn with(claims: &Map<String, Value>, changes: Value) -> Map<String, Value> {
    let mut claims = claims.clone();
    for (name, value) in changes.as_object().expect("object") {
        if value.is_null() {
            claims.remove(name);
        } else {
            claims.insert(name.clone(), value.clone());
        }
    }
    claims
}

/// A token signed with an HMAC over `header.payload` keyed by `secret`: the
/// algorithm-confusion attack's forgery.
fn hmac_token(header: &Value, claims: &Map<String, Value>, secret: &[u8]) -> String {
    let input = format!(
        "{}.{}",
        segment(header),
        segment(&Value::Object(claims.clone()))
    );
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let tag = ring::hmac::sign(&key, input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

fn unsigned(header: &Value, claims: &Map<String, Value>, signature: &str) -> String {
    format!(
        "{}.{}.{signature}",
        segment(header),
        segment(&Value::Object(claims.clone()))
    )
}

async fn forged_tokens_are_refused_and_valid_ones_accepted(backend: Backend) {
    let issuer = TestIssuer::start().await;
    let rsa = SigningKey::rsa();
    let ec = SigningKey::p256();
    issuer.publish("rsa-1", &rsa);
    issuer.publish("ec-1", &ec);
    let app = app_trusting(backend, &issuer, Duration::from_secs(3600)).await;
    let attacker = SigningKey::rsa();
    let attacker_ec = SigningKey::p256();
    let base = issuer.claims(AUDIENCE);
    let rsa_header = |extra: Value| {
        let mut header = json!({"alg": "RS256", "typ": "JWT", "kid": "rsa-1"});
        for (k, v) in extra.as_object().expect("object") {
            header[k] = v.clone();
        }
        header
    };
    let fresh = || issuer.claims(AUDIENCE);
    let valid = issuer.sign(&rsa, "rsa-1", &fresh());
    let (head, rest) = valid.split_once('.').expect("segments");
    let (payload, signature) = rest.split_once('.').expect("segments");
    let other_payload = segment(&Value::Object(with(
        &fresh(),
        json!({"repository": "acme/api"}),
    )));
    let gantry_token = app.admin_token.clone();
    let attacker_jwk = attacker.jwk("rsa-1");

    let cases: Vec<(&str, String, &str)> = vec![
        (
            "alg none",
            unsigned(&json!({"alg": "none", "typ": "JWT"}), &fresh(), ""),
            "algorithm `none` is not allowed",
        ),
        (
            "alg None",
            unsigned(&json!({"alg": "None", "typ": "JWT"}), &fresh(), ""),
            "algorithm `None` is not allowed",
        ),
        (
            "alg none with a signature",
            unsigned(&json!({"alg": "none"}), &fresh(), "c2ln"),
            "algorithm `none` is not allowed",
        ),
        (
            "no alg",
            sign_with_header(&rsa, &json!({"kid": "rsa-1"}), &fresh()),
            "names no algorithm",
        ),
        (
            "HS256 keyed with the RSA public key",
            hmac_token(
                &json!({"alg": "HS256", "kid": "rsa-1"}),
                &fresh(),
                &rsa.public_der(),
            ),
            "algorithm `HS256` is not allowed",
        ),
        (
            "HS256 keyed with the JWK's n",
            hmac_token(
                &json!({"alg": "HS256", "kid": "rsa-1"}),
                &fresh(),
                rsa.jwk("rsa-1")["n"].as_str().expect("n").as_bytes(),
            ),
            "algorithm `HS256` is not allowed",
        ),
        (
            "RS512",
            sign_with_header(&rsa, &json!({"alg": "RS512", "kid": "rsa-1"}), &fresh()),
            "algorithm `RS512` is not allowed",
        ),
        (
            "PS256",
            sign_with_header(&rsa, &json!({"alg": "PS256", "kid": "rsa-1"}), &fresh()),
            "algorithm `PS256` is not allowed",
        ),
        (
            "unknown kid",
            issuer.sign(&rsa, "rsa-9", &fresh()),
            "no RS256 key with id `rsa-9`",
        ),
        (
            "kid path traversal",
            issuer.sign(&rsa, "../../../../etc/passwd", &fresh()),
            "no RS256 key with id `../../../../etc/passwd`",
        ),
        (
            "kid URL",
            issuer.sign(&rsa, "http://127.0.0.1:1/jwks", &fresh()),
            "no RS256 key with id",
        ),
        (
            "kid injection",
            issuer.sign(&rsa, "' OR '1'='1", &fresh()),
            "no RS256 key with id",
        ),
        (
            "kid not a string",
            sign_with_header(&rsa, &json!({"alg": "RS256", "kid": 1}), &fresh()),
            "`kid`) is not a string",
        ),
        (
            "ES256 alg with the RSA key's kid",
            sign_with_header(&ec, &json!({"alg": "ES256", "kid": "rsa-1"}), &fresh()),
            "no ES256 key with id `rsa-1`",
        ),
        (
            "signed by another key under a known kid",
            issuer.sign(&attacker, "rsa-1", &fresh()),
            "signature does not verify",
        ),
        (
            "ES256 by another key under a known kid",
            issuer.sign(&attacker_ec, "ec-1", &fresh()),
            "signature does not verify",
        ),
        (
            "embedded jwk of the signer",
            sign_with_header(
                &attacker,
                &rsa_header(json!({"jwk": attacker_jwk})),
                &fresh(),
            ),
            "signature does not verify",
        ),
        (
            "jku pointing at the attacker's keys",
            sign_with_header(
                &attacker,
                &rsa_header(json!({"jku": "http://127.0.0.1:1/jwks"})),
                &fresh(),
            ),
            "signature does not verify",
        ),
        (
            "x5u pointing at the attacker's certificate",
            sign_with_header(
                &attacker,
                &rsa_header(json!({"x5u": "http://127.0.0.1:1/cert.pem"})),
                &fresh(),
            ),
            "signature does not verify",
        ),
        (
            "embedded x5c",
            sign_with_header(&attacker, &rsa_header(json!({"x5c": ["MIIB"]})), &fresh()),
            "signature does not verify",
        ),
        (
            "payload swapped after signing",
            format!("{head}.{other_payload}.{signature}"),
            "signature does not verify",
        ),
        (
            "truncated signature",
            format!("{head}.{payload}.{}", &signature[..signature.len() - 8]),
            "signature",
        ),
        (
            "empty signature",
            format!("{head}.{payload}."),
            "not signed",
        ),
        (
            "two segments",
            format!("{head}.{payload}"),
            "3 dot-separated segments, this has 2",
        ),
        (
            "four segments",
            format!("{valid}.{signature}"),
            "3 dot-separated segments, this has 4",
        ),
        (
            "padded base64",
            format!("{head}=.{payload}.{signature}"),
            "header is not base64url",
        ),
        (
            "header not JSON",
            format!(
                "{}.{payload}.{signature}",
                URL_SAFE_NO_PAD.encode("not json")
            ),
            "header is not a JSON object",
        ),
        (
            "payload an array",
            sign_with_header(&rsa, &rsa_header(json!({})), &Map::new())
                .replace(&segment(&Value::Object(Map::new())), &segment(&json!([1]))),
            "payload is not a JSON object",
        ),
        (
            "crit extension",
            sign_with_header(&rsa, &rsa_header(json!({"crit": ["exp"]})), &fresh()),
            "critical extensions",
        ),
        (
            "unencoded payload (b64 false)",
            sign_with_header(
                &rsa,
                &rsa_header(json!({"b64": false, "crit": ["b64"]})),
                &fresh(),
            ),
            "critical extensions",
        ),
        (
            "missing aud",
            issuer.sign(&rsa, "rsa-1", &with(&fresh(), json!({"aud": null}))),
            "names no audience",
        ),
        (
            "foreign aud",
            issuer.sign(
                &rsa,
                "rsa-1",
                &with(&fresh(), json!({"aud": "sts.amazonaws.com"})),
            ),
            "no trust policy matches",
        ),
        (
            "array aud with several audiences",
            issuer.sign(
                &rsa,
                "rsa-1",
                &with(&fresh(), json!({"aud": [AUDIENCE, "other"]})),
            ),
            "several audiences",
        ),
        (
            "array aud of a foreign audience",
            issuer.sign(&rsa, "rsa-1", &with(&fresh(), json!({"aud": ["other"]}))),
            "no trust policy matches",
        ),
        (
            "iss with a trailing slash",
            issuer.sign(
                &rsa,
                "rsa-1",
                &with(&fresh(), json!({"iss": format!("{}/", issuer.url)})),
            ),
            "is not trusted",
        ),
        (
            "foreign iss",
            issuer.sign(
                &rsa,
                "rsa-1",
                &with(
                    &fresh(),
                    json!({"iss": "https://token.actions.githubusercontent.com.evil.example"}),
                ),
            ),
            "is not trusted",
        ),
        (
            "missing iss",
            issuer.sign(&rsa, "rsa-1", &with(&fresh(), json!({"iss": null}))),
            "names no issuer",
        ),
        (
            "expired past the leeway",
            issuer.sign(
                &rsa,
                "rsa-1",
                &with(
                    &fresh(),
                    json!({"exp": now() - 120, "iat": now() - 600, "nbf": now() - 600}),
                ),
            ),
            "expired",
        ),
        (
            "nbf in the future",
            issuer.sign(&rsa, "rsa-1", &with(&fresh(), json!({"nbf": now() + 600}))),
            "not valid for another",
        ),
        (
            "iat in the future",
            issuer.sign(&rsa, "rsa-1", &with(&fresh(), json!({"iat": now() + 600}))),
            "issued in the future",
        ),
        (
            "missing exp",
            issuer.sign(&rsa, "rsa-1", &with(&fresh(), json!({"exp": null}))),
            "no expiry",
        ),
        (
            "exp as text",
            issuer.sign(&rsa, "rsa-1", &with(&fresh(), json!({"exp": "tomorrow"}))),
            "`exp` is not a number",
        ),
        (
            "missing sub",
            issuer.sign(&rsa, "rsa-1", &with(&fresh(), json!({"sub": null}))),
            "names no subject",
        ),
        (
            "missing jti",
            issuer.sign(&rsa, "rsa-1", &with(&fresh(), json!({"jti": null}))),
            "no id (`jti`)",
        ),
        (
            "claims outside the policy (another branch)",
            issuer.sign(
                &rsa,
                "rsa-1",
                &with(&fresh(), json!({"ref": "refs/heads/feature"})),
            ),
            "no trust policy matches",
        ),
        (
            "claims outside the policy (another repository)",
            issuer.sign(
                &rsa,
                "rsa-1",
                &with(&fresh(), json!({"repository": "acme/web-fork"})),
            ),
            "no trust policy matches",
        ),
        (
            "oversized token",
            issuer.sign(
                &rsa,
                "rsa-1",
                &with(&fresh(), json!({"padding": "x".repeat(20_000)})),
            ),
            "larger than 16384 bytes",
        ),
        (
            "a Gantry token presented as an OIDC token",
            gantry_token.clone(),
            "Gantry token, not a CI job's OIDC token",
        ),
        (
            "garbage",
            "not a token at all".to_owned(),
            "3 dot-separated segments",
        ),
    ];
    assert!(cases.len() >= 30, "the suite has {} cases", cases.len());
    for (name, token, reason) in &cases {
        let response = exchange(&app, token).await;
        assert_eq!(
            response.status,
            StatusCode::UNAUTHORIZED,
            "{name}: {}",
            response.text()
        );
        let message = response.json()["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            message.contains(reason),
            "{name}: expected `{reason}` in `{message}`"
        );
    }
    // Refusals issued nothing.
    let users = app.store.users().list(None, 100).await.expect("users");
    assert!(
        users.iter().all(|user| !user.name.starts_with("oidc/")),
        "{users:?}"
    );

    // The valid controls: RS256, ES256, a one-element audience array, leeway on expiry.
    for (name, token) in [
        ("RS256", issuer.sign(&rsa, "rsa-1", &fresh())),
        ("ES256", issuer.sign(&ec, "ec-1", &fresh())),
        (
            "aud as a one-element array",
            issuer.sign(&rsa, "rsa-1", &with(&fresh(), json!({"aud": [AUDIENCE]}))),
        ),
        (
            "expired within the leeway",
            issuer.sign(&rsa, "rsa-1", &with(&fresh(), json!({"exp": now() - 20}))),
        ),
    ] {
        let response = exchange(&app, &token).await;
        assert_status(&response, StatusCode::CREATED);
        let body = response.json();
        assert_eq!(body["user"], "oidc/web-ci", "{name}");
        assert_eq!(body["scope"], json!(["developer@web"]), "{name}");
        assert_eq!(body["policies"], json!(["web-ci"]), "{name}");
        let expires_in = body["expires_in"].as_i64().expect("expires_in");
        assert!(
            (890..=900).contains(&expires_in),
            "{name}: the policy caps it at 15m: {expires_in}"
        );
    }

    // A replayed jti is refused, even though the token is otherwise valid.
    let once = issuer.sign(&rsa, "rsa-1", &base);
    assert_status(&exchange(&app, &once).await, StatusCode::CREATED);
    let replay = exchange(&app, &once).await;
    assert_eq!(replay.status, StatusCode::UNAUTHORIZED);
    assert!(
        replay.text().contains("already exchanged"),
        "{}",
        replay.text()
    );

    // Vice versa: a job token is not a Gantry token, on the API or the registry.
    let job = issuer.sign(&rsa, "rsa-1", &fresh());
    let bearer = format!("Bearer {job}");
    let response = app
        .send(
            Method::GET,
            "/api/v1/tokens",
            &[("authorization", bearer.as_str())],
            Body::empty(),
        )
        .await;
    assert_eq!(response.status, StatusCode::UNAUTHORIZED);
    let basic = TestApp::basic("oidc/web-ci", &job);
    let response = app
        .send(
            Method::GET,
            "/v2/acme/web/tags/list",
            &[("authorization", basic.as_str())],
            Body::empty(),
        )
        .await;
    assert_eq!(response.status, StatusCode::UNAUTHORIZED);
    // Every exchange is in the audit log with the job's claims, and the chain holds.
    let entries = app.store.audit().entries(0, 1000).await.expect("audit");
    let exchanges: Vec<Value> = entries
        .iter()
        .map(|entry| serde_json::from_str::<Value>(&entry.payload).expect("JSON payload"))
        .filter(|payload| payload.get("oidc").is_some())
        .collect();
    assert_eq!(
        exchanges.len(),
        5,
        "four controls and the first use of the replayed token"
    );
    assert_eq!(exchanges[0]["oidc"]["job"]["repository"], "acme/web");
    assert!(
        !exchanges[0].to_string().contains("gnt_"),
        "no secret in the audit log"
    );
}

async fn an_exchanged_token_pushes_notifies_and_reports_for_its_application_only(backend: Backend) {
    let issuer = TestIssuer::start().await;
    let rsa = SigningKey::rsa();
    issuer.publish("rsa-1", &rsa);
    let app = app_trusting(backend, &issuer, Duration::from_secs(3600)).await;
    let response = exchange(&app, &issuer.sign(&rsa, "rsa-1", &issuer.claims(AUDIENCE))).await;
    assert_status(&response, StatusCode::CREATED);
    let body = response.json();
    let token = body["token"].as_str().expect("token").to_owned();
    let user = body["user"].as_str().expect("user").to_owned();
    let basic = TestApp::basic(&user, &token);
    let bearer = format!("Bearer {token}");
    let auth = [("authorization", basic.as_str())];

    // The version check clients start with (`docker login` pings it) passes.
    let response = app.send(Method::GET, "/v2/", &auth, Body::empty()).await;
    assert_status(&response, StatusCode::OK);

    // Push to its own application's repository.
    let image = Image::new("ci-built");
    for blob in [&image.config, &image.layer] {
        let response = app
            .send(
                Method::POST,
                "/v2/acme/web/blobs/uploads/",
                &auth,
                Body::empty(),
            )
            .await;
        assert_status(&response, StatusCode::ACCEPTED);
        let location = response.header("location").expect("location").to_owned();
        let separator = if location.contains('?') { '&' } else { '?' };
        let response = app
            .send(
                Method::PUT,
                &format!("{location}{separator}digest={}", blob.digest),
                &auth,
                blob.bytes.clone(),
            )
            .await;
        assert_status(&response, StatusCode::CREATED);
    }
    let manifest_type = [
        ("authorization", basic.as_str()),
        ("content-type", "application/vnd.oci.image.manifest.v1+json"),
    ];
    let response = app
        .send(
            Method::PUT,
            "/v2/acme/web/manifests/v1",
            &manifest_type,
            image.manifest.bytes.clone(),
        )
        .await;
    assert_status(&response, StatusCode::CREATED);
    let digest = image.manifest.digest.clone();

    // Not to another application's repository, nor delete.
    let response = app
        .send(
            Method::POST,
            "/v2/acme/api/blobs/uploads/",
            &auth,
            Body::empty(),
        )
        .await;
    assert_eq!(
        response.status,
        StatusCode::FORBIDDEN,
        "{}",
        response.text()
    );
    assert!(
        response.text().contains("repository:acme/api:push"),
        "{}",
        response.text()
    );
    let response = app
        .send(
            Method::DELETE,
            &format!("/v2/acme/web/manifests/{digest}"),
            &auth,
            Body::empty(),
        )
        .await;
    assert_eq!(response.status, StatusCode::FORBIDDEN);
    // Nor pull another application's images, nor list the catalog.
    push_image(&app, "acme/api", "v1", "api-image").await;
    let response = app
        .send(Method::GET, "/v2/acme/api/tags/list", &auth, Body::empty())
        .await;
    assert_eq!(response.status, StatusCode::FORBIDDEN);
    let response = app
        .send(Method::GET, "/v2/_catalog", &auth, Body::empty())
        .await;
    assert_eq!(response.status, StatusCode::FORBIDDEN);

    let json_auth = [
        ("authorization", bearer.as_str()),
        ("content-type", "application/json"),
    ];
    // Notify: the dev stage is auto, so the digest deploys there.
    let response = app
        .send(
            Method::POST,
            "/api/v1/builds",
            &json_auth,
            json!({"application": "web", "digest": digest, "commit": "0123456789abcdef0123456789abcdef01234567"}).to_string(),
        )
        .await;
    assert_status(&response, StatusCode::CREATED);
    // Report a check.
    let response = app
        .send(
            Method::POST,
            "/api/v1/checks",
            &json_auth,
            json!({"application": "web", "digest": digest, "name": "unit", "status": "passed"})
                .to_string(),
        )
        .await;
    assert_status(&response, StatusCode::CREATED);
    // Not for another application.
    let response = app
        .send(
            Method::POST,
            "/api/v1/checks",
            &json_auth,
            json!({"application": "api", "digest": digest, "name": "unit", "status": "passed"})
                .to_string(),
        )
        .await;
    assert_eq!(
        response.status,
        StatusCode::FORBIDDEN,
        "{}",
        response.text()
    );
    // A build identity never promotes (its grant is for building the whole application,
    // not for any environment), nor approves.
    let response = app
        .send(
            Method::POST,
            "/api/v1/promotions",
            &json_auth,
            json!({"application": "web", "environment": "staging", "digest": digest}).to_string(),
        )
        .await;
    assert_eq!(
        response.status,
        StatusCode::FORBIDDEN,
        "{}",
        response.text()
    );
    let response = app
        .admin(
            Method::POST,
            "/api/v1/promotions",
            &[("content-type", "application/json")],
            json!({"application": "web", "environment": "staging", "digest": digest}).to_string(),
        )
        .await;
    assert_status(&response, StatusCode::CREATED);
    let id = response.json()["id"].as_i64().expect("id");
    let response = app
        .send(
            Method::POST,
            &format!("/api/v1/promotions/{id}/approve"),
            &json_auth,
            "{}",
        )
        .await;
    assert_eq!(
        response.status,
        StatusCode::FORBIDDEN,
        "{}",
        response.text()
    );
    // Nor read or change anything else.
    for (method, uri) in [
        (Method::GET, "/api/v1/resources/applications"),
        (Method::GET, "/api/v1/promotions"),
        (Method::GET, "/api/v1/audit/verify"),
        (Method::GET, "/api/v1/users"),
        (Method::POST, "/api/v1/apply"),
    ] {
        let response = app
            .send(
                method.clone(),
                uri,
                &[("authorization", bearer.as_str())],
                Body::empty(),
            )
            .await;
        assert_eq!(
            response.status,
            StatusCode::FORBIDDEN,
            "{method} {uri}: {}",
            response.text()
        );
    }
    // A deploy job (another workflow, GitHub environment `staging`) is granted staging
    // by its own policy: it promotes there and nowhere else, and builds nothing.
    let deploy_claims = {
        let mut claims = issuer.claims(AUDIENCE);
        claims.insert("ref".to_owned(), json!("refs/heads/release"));
        claims.insert("environment".to_owned(), json!("staging"));
        claims
    };
    let response = exchange(&app, &issuer.sign(&rsa, "rsa-1", &deploy_claims)).await;
    assert_status(&response, StatusCode::CREATED);
    assert_eq!(response.json()["user"], "oidc/web-deploy");
    assert_eq!(response.json()["scope"], json!(["developer@web/staging"]));
    let deploy = format!(
        "Bearer {}",
        response.json()["token"].as_str().expect("token")
    );
    let deploy_json = [
        ("authorization", deploy.as_str()),
        ("content-type", "application/json"),
    ];
    let promote = |environment: &'static str| {
        app.send(
            Method::POST,
            "/api/v1/promotions",
            &deploy_json,
            json!({"application": "web", "environment": environment, "digest": digest}).to_string(),
        )
    };
    let response = promote("staging").await;
    assert!(response.status.is_success(), "{}", response.text());
    let response = promote("prod").await;
    assert_eq!(
        response.status,
        StatusCode::FORBIDDEN,
        "{}",
        response.text()
    );
    assert!(
        response.text().contains("promote:web/prod"),
        "{}",
        response.text()
    );
    let response = app
        .send(
            Method::POST,
            "/api/v1/checks",
            &deploy_json,
            json!({"application": "web", "digest": digest, "name": "unit", "status": "failed"})
                .to_string(),
        )
        .await;
    assert_eq!(
        response.status,
        StatusCode::FORBIDDEN,
        "{}",
        response.text()
    );
    let response = app
        .send(
            Method::POST,
            "/v2/acme/web/blobs/uploads/",
            &[("authorization", deploy.as_str())],
            Body::empty(),
        )
        .await;
    assert_eq!(
        response.status,
        StatusCode::FORBIDDEN,
        "{}",
        response.text()
    );
    let response = app
        .send(
            Method::POST,
            &format!("/api/v1/promotions/{id}/approve"),
            &deploy_json,
            "{}",
        )
        .await;
    assert_eq!(
        response.status,
        StatusCode::FORBIDDEN,
        "{}",
        response.text()
    );

    // Once revoked, it is worth nothing at once.
    let id = body["id"].as_str().expect("id");
    let response = app
        .admin(
            Method::DELETE,
            &format!("/api/v1/tokens/{id}"),
            &[],
            Body::empty(),
        )
        .await;
    assert_status(&response, StatusCode::OK);
    let response = app
        .send(Method::GET, "/v2/acme/web/tags/list", &auth, Body::empty())
        .await;
    assert_eq!(response.status, StatusCode::UNAUTHORIZED);
    push_blob(&app, "acme/web", &Image::new("admin-still-works").config).await;
}

async fn rotated_keys_are_fetched_once_and_unknown_kids_cannot_flood_the_issuer(backend: Backend) {
    let issuer = TestIssuer::start().await;
    let first = SigningKey::rsa();
    issuer.publish("k1", &first);
    let interval = Duration::from_millis(1500);
    let app = app_trusting(backend, &issuer, interval).await;
    assert_status(
        &exchange(&app, &issuer.sign(&first, "k1", &issuer.claims(AUDIENCE))).await,
        StatusCode::CREATED,
    );
    assert_eq!(issuer.fetches(), 1, "the keys are fetched on first use");
    assert_status(
        &exchange(&app, &issuer.sign(&first, "k1", &issuer.claims(AUDIENCE))).await,
        StatusCode::CREATED,
    );
    assert_eq!(issuer.fetches(), 1, "and then served from the cache");

    // The issuer rotates: a key added after start is found by one refetch.
    let second = SigningKey::p256();
    issuer.publish("k2", &second);
    tokio::time::sleep(interval).await;
    assert_status(
        &exchange(&app, &issuer.sign(&second, "k2", &issuer.claims(AUDIENCE))).await,
        StatusCode::CREATED,
    );
    assert_eq!(issuer.fetches(), 2, "one refetch for the new kid");

    // A flood of made-up kids, concurrently: refused, and at most one fetch per interval.
    let started = std::time::Instant::now();
    let mut refused = 0;
    for round in 0..3 {
        let tokens: Vec<String> = (0..20)
            .map(|i| {
                issuer.sign(
                    &first,
                    &format!("bogus-{round}-{i}"),
                    &issuer.claims(AUDIENCE),
                )
            })
            .collect();
        let calls: Vec<_> = tokens.iter().map(|token| exchange(&app, token)).collect();
        for response in futures_util::future::join_all(calls).await {
            assert_eq!(response.status, StatusCode::UNAUTHORIZED);
            refused += 1;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let elapsed = started.elapsed();
    let intervals = (elapsed.as_secs_f64() / interval.as_secs_f64()).ceil() as u64;
    let flood_fetches = issuer.fetches() - 2;
    assert_eq!(refused, 60);
    assert!(
        flood_fetches <= intervals,
        "{flood_fetches} fetches in {elapsed:?} ({intervals} intervals of {interval:?})"
    );
    // The known keys still work without a fetch.
    let before = issuer.fetches();
    assert_status(
        &exchange(&app, &issuer.sign(&first, "k1", &issuer.claims(AUDIENCE))).await,
        StatusCode::CREATED,
    );
    assert_eq!(issuer.fetches(), before);
}

/// Room for the many refused tokens these tests send (the limit has a test of its own).
fn many_failures_allowed() -> registry::RegistryConfig {
    registry::RegistryConfig {
        credential_failures: auth::FailureLimits {
            burst: 100_000,
            per_minute: 100_000,
        },
        ..registry::RegistryConfig::default()
    }
}

async fn refused_exchanges_are_limited_and_then_no_credential_is_checked_from_that_address(
    backend: Backend,
) {
    let access = server::AccessConfig {
        federation: auth::oidc::Federation::new(
            Vec::new(),
            auth::oidc::KeyCaching::default(),
            std::sync::Arc::new(outbound::Policy::default()),
        ),
        outbound: std::sync::Arc::new(outbound::Policy::default()),
    };
    let config = registry::RegistryConfig {
        credential_failures: auth::FailureLimits {
            burst: 3,
            per_minute: 6,
        },
        ..registry::RegistryConfig::default()
    };
    let app = TestApp::spawn_with_access(backend, config, access).await;
    let admin = app.admin_basic();
    // Successful checks spend nothing.
    for _ in 0..50 {
        let response = app
            .send(
                Method::GET,
                "/api/v1/tokens",
                &[("authorization", admin.as_str())],
                Body::empty(),
            )
            .await;
        assert_status(&response, StatusCode::OK);
    }
    for guess in 0..3 {
        let response = exchange(&app, &format!("a.b.c{guess}")).await;
        assert_eq!(response.status, StatusCode::UNAUTHORIZED);
    }
    let response = exchange(&app, "a.b.c9").await;
    assert_eq!(
        response.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        response.text()
    );
    assert!(response.header("retry-after").is_some());
    assert_eq!(response.json()["code"], "too_many_requests");
    // Every credential check from that address now waits, the right ones too: the
    // registry's token endpoint and the rest of the API share the limiter.
    let response = app
        .send(
            Method::GET,
            "/token?service=gantry",
            &[("authorization", admin.as_str())],
            Body::empty(),
        )
        .await;
    assert_eq!(response.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.error_code(), "TOOMANYREQUESTS");
    let response = app
        .send(
            Method::GET,
            "/api/v1/tokens",
            &[("authorization", admin.as_str())],
            Body::empty(),
        )
        .await;
    assert_eq!(response.status, StatusCode::TOO_MANY_REQUESTS);
    // Requests without credentials are not credential checks.
    let response = app.send(Method::GET, "/healthz", &[], Body::empty()).await;
    assert_status(&response, StatusCode::OK);
}

async fn an_issuer_on_a_restricted_address_is_not_fetched_unless_allow_listed(backend: Backend) {
    let issuer = TestIssuer::start().await;
    let rsa = SigningKey::rsa();
    issuer.publish("rsa-1", &rsa);
    let access = server::AccessConfig {
        federation: auth::oidc::Federation::new(
            vec![auth::oidc::IssuerConfig {
                issuer: issuer.url.clone(),
                jwks_uri: None,
                algorithms: vec![auth::oidc::Algorithm::Rs256],
            }],
            auth::oidc::KeyCaching::default(),
            std::sync::Arc::new(outbound::Policy::default()),
        ),
        outbound: std::sync::Arc::new(outbound::Policy::default()),
    };
    let app =
        TestApp::spawn_with_access(backend, registry::RegistryConfig::default(), access).await;
    let response = exchange(&app, &issuer.sign(&rsa, "rsa-1", &issuer.claims(AUDIENCE))).await;
    assert_eq!(
        response.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        response.text()
    );
    assert!(
        response.text().contains("could not be fetched"),
        "{}",
        response.text()
    );
    assert!(
        !response.text().contains("loopback"),
        "the reason stays in the log: {}",
        response.text()
    );
    assert_eq!(issuer.fetches(), 0, "nothing reached the loopback issuer");
}

both_backends!(
    forged_tokens_are_refused_and_valid_ones_accepted,
    an_exchanged_token_pushes_notifies_and_reports_for_its_application_only,
    rotated_keys_are_fetched_once_and_unknown_kids_cannot_flood_the_issuer,
    refused_exchanges_are_limited_and_then_no_credential_is_checked_from_that_address,
    an_issuer_on_a_restricted_address_is_not_fetched_unless_allow_listed
);
