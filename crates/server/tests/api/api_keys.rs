//! Signing keys: the public keys are served to anyone as PEM and JWK with the time
//! range each signed; a rotation (admins) replaces the key file with a new key, keeps
//! the old public key listed, is audited, and another replica sharing the file picks
//! the new key up.

use axum::body::Body;
use http::{Method, StatusCode};
use serde_json::{Value, json};
use testkit::{TestApp, app_tests};

use crate::support::{assert_status, call, user_with_roles as user};

async fn keys(app: &TestApp) -> Value {
    let response = app
        .send(Method::GET, "/api/v1/keys", &[], Body::empty())
        .await;
    assert_status(&response, StatusCode::OK);
    response.json()
}

app_tests! {
    async fn the_public_keys_are_served_to_anyone_as_pem_and_jwk(app) {
        let listed = keys(&app).await;
        let all = listed["keys"].as_array().expect("keys");
        assert_eq!(all.len(), 1, "{listed}");
        let key = &all[0];
        let held = attest::SigningKey::load(&app.signing_key_file()).expect("the key file");
        assert_eq!(key["key_id"], held.key_id().as_str());
        assert_eq!(key["algorithm"], "ecdsa-p256-sha256");
        assert_eq!(key["current"], true);
        assert!(key["signed_until"].is_null());
        let pem = key["public_key"].as_str().expect("pem");
        let public = attest::PublicKey::from_pem(pem).expect("a P-256 public key");
        let signature = held.sign(b"payload").expect("signed");
        assert!(public.verify(b"payload", &signature), "the served key verifies the held key's signatures");
        assert_eq!(key["jwk"]["kty"], "EC");
        assert_eq!(key["jwk"]["crv"], "P-256");
        assert_eq!(key["jwk"]["kid"], held.key_id().as_str());
    }

    async fn a_rotation_replaces_the_key_keeps_the_old_one_listed_and_is_audited(app) {
        let before = attest::SigningKey::load(&app.signing_key_file()).expect("the key file");
        let dana = user(&app, "dana", false, &["developer"]).await;
        let response = app.send(Method::POST, "/api/v1/keys/rotate", &[], Body::empty()).await;
        assert_status(&response, StatusCode::UNAUTHORIZED);
        let response = call(&app, Method::POST, "/api/v1/keys/rotate", &dana, Value::Null).await;
        assert_status(&response, StatusCode::FORBIDDEN);
        assert_eq!(keys(&app).await["keys"].as_array().map(Vec::len), Some(1), "a refused rotation changes nothing");

        let response = app.admin(Method::POST, "/api/v1/keys/rotate", &[], Body::empty()).await;
        assert_status(&response, StatusCode::CREATED);
        let rotated = response.json();
        let new_id = rotated["key_id"].as_str().expect("key id").to_owned();
        assert_ne!(new_id, before.key_id());
        assert_eq!(rotated["current"], true);
        let held = attest::SigningKey::load(&app.signing_key_file()).expect("the key file");
        assert_eq!(held.key_id(), new_id, "the file holds the new key");

        let listed = keys(&app).await;
        let all = listed["keys"].as_array().expect("keys");
        assert_eq!(all.len(), 2, "{listed}");
        assert_eq!(all[0]["key_id"], new_id.as_str(), "the current key first");
        assert_eq!(all[1]["key_id"], before.key_id().as_str());
        assert_eq!(all[1]["current"], false);
        assert_eq!(all[1]["signed_until"], all[0]["signed_from"], "{listed}");
        // What the old key signed still verifies with its listed public key.
        let signed = before.sign(b"attested before").expect("signed");
        let old = attest::PublicKey::from_pem(all[1]["public_key"].as_str().expect("pem")).expect("pem");
        assert!(old.verify(b"attested before", &signed));

        let export = app.admin(Method::GET, "/api/v1/audit/export", &[], Body::empty()).await.text();
        let entries: Vec<Value> = export
            .lines()
            .map(|line| serde_json::from_str::<Value>(line).expect("JSON"))
            .filter(|entry| entry["action"] == "signing-key")
            .collect();
        assert_eq!(entries.len(), 2, "the first key at start, then the rotation: {export}");
        assert_eq!(entries[1]["actor"], "admin");
        let payload: Value = serde_json::from_str(entries[1]["payload"].as_str().expect("payload")).expect("JSON");
        assert_eq!(payload["retired"], json!([before.key_id()]));

        // A replica still holding the old key picks the new one up from the file.
        let other = engine::KeyRing::new(before);
        assert_eq!(other.current(&app.store).await.expect("current"), new_id);
        // Publishing the key a replica already holds changes nothing.
        assert!(!other.publish(&app.store, "gantry").await.expect("publish"));
        assert_eq!(keys(&app).await["keys"].as_array().map(Vec::len), Some(2));
    }
}
