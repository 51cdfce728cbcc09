use super::*;

/// The specification's test vector (protocol.md, "Test Vectors"): its public key
/// (X and Y, written here in hex), body, type, PAE and envelope.
const SPEC_POINT: &str = "0467cd390f77aa359cb08c2235f652270493a9ed832b0abcc01f70954c0390d2380c782bd54e269125a44f4433aff1432ce94e12bca73aa67ac80cea12608ddf74";
const SPEC_ENVELOPE: &str = r#"{"payload": "aGVsbG8gd29ybGQ=",
 "payloadType": "http://example.com/HelloWorld",
 "signatures": [{"sig": "A3JqsQGtVsJ2O2xqrI5IcnXip5GToJ3F+FnZ+O88SjtR6rDAajabZKciJTfUiHqJPcIAriEGAHTVeCUjW2JIZA=="}]}"#;

fn spec_key() -> PublicKey {
    PublicKey::from_point(&hex::decode(SPEC_POINT).expect("hex")).expect("a P-256 point")
}

#[test]
fn the_pae_is_the_specifications_own_and_counts_bytes() {
    assert_eq!(
        pae("http://example.com/HelloWorld", b"hello world"),
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    );
    assert_eq!(pae("t", "é".as_bytes()), "DSSEv1 1 t 2 é".as_bytes());
    assert_eq!(pae("", b""), b"DSSEv1 0  0 ");
}

#[test]
fn the_specifications_envelope_verifies_with_its_key_and_not_once_altered() {
    let value: Value = serde_json::from_str(SPEC_ENVELOPE).expect("JSON");
    let envelope = Envelope::from_json(&value).expect("an envelope");
    assert_eq!(envelope.payload, b"hello world");
    assert_eq!(envelope.signatures[0].keyid, None);
    assert_eq!(envelope.verify(&spec_key()), Ok(&b"hello world"[..]));
    let mut altered = envelope.clone();
    altered.payload = b"hello world!".to_vec();
    assert!(altered.verify(&spec_key()).is_err());
    let mut retyped = envelope;
    retyped.payload_type = "http://example.com/Other".to_owned();
    assert!(
        retyped.verify(&spec_key()).is_err(),
        "the type is authenticated"
    );
}

#[test]
fn an_envelope_gantry_signs_round_trips_through_json_and_verifies_only_with_its_key() {
    let dir = tempfile::tempdir().expect("directory");
    let key = SigningKey::load_or_create(&dir.path().join("key.pem")).expect("key");
    let other = SigningKey::load_or_create(&dir.path().join("other.pem")).expect("key");
    let envelope =
        Envelope::sign("application/vnd.in-toto+json", b"{\"a\":1}", &key).expect("signed");
    let json = envelope.to_json();
    assert_eq!(json["payloadType"], "application/vnd.in-toto+json");
    assert_eq!(json["signatures"][0]["keyid"], key.key_id().as_str());
    let read = Envelope::from_json(&json).expect("reads back");
    assert_eq!(read, envelope);
    assert_eq!(read.verify(key.public()), Ok(&b"{\"a\":1}"[..]));
    assert!(read.verify(other.public()).is_err());
    // URL-safe base64 is read too.
    let mut url_safe = json.clone();
    let sig = &envelope.signatures[0].sig;
    url_safe["signatures"][0]["sig"] = Value::String(URL_SAFE_NO_PAD.encode(sig));
    assert_eq!(Envelope::from_json(&url_safe).expect("reads"), envelope);
}

#[test]
fn what_is_not_an_envelope_is_refused_naming_the_field() {
    for (value, field) in [
        (json!({}), "payload"),
        (
            json!({"payload": "!!", "payloadType": "t", "signatures": []}),
            "payload",
        ),
        (
            json!({"payload": "", "payloadType": 1, "signatures": []}),
            "payloadType",
        ),
        (
            json!({"payload": "", "payloadType": "t", "signatures": []}),
            "no signature",
        ),
        (
            json!({"payload": "", "payloadType": "t", "signatures": [{"sig": 5}]}),
            "sig",
        ),
    ] {
        let error = Envelope::from_json(&value)
            .expect_err("refused")
            .to_string();
        assert!(error.contains(field), "{value}: {error}");
    }
}
