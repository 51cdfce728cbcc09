use super::*;
use crate::dsse::Envelope;
use serde_json::json;

fn key() -> (tempfile::TempDir, SigningKey) {
    let directory = tempfile::tempdir().expect("temporary directory");
    let key = SigningKey::load_or_create(&directory.path().join("key.pem")).expect("a key");
    (directory, key)
}

fn subject(content: &[u8]) -> Subject {
    Subject {
        name: "gantry.example:5000/acme/web".to_owned(),
        digest: Digest::sha256_of(content),
        media_type: oci::IMAGE_MANIFEST.to_owned(),
        size: content.len() as u64,
    }
}

fn signed(key: &SigningKey, image: &Subject) -> SignedAttestation {
    sign(
        image,
        VSA_PREDICATE_TYPE,
        json!({ "verificationResult": "PASSED" }),
        "2026-12-05T10:00:00Z",
        key,
    )
    .expect("signed")
}

fn json_of(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("JSON")
}

/// Field by field, the layout cosign v3 writes for an attestation (its BUNDLE_SPEC:
/// "Publishing" and "Annotations"), so `cosign verify-attestation` finds ours.
#[test]
fn the_referrer_has_cosign_v3s_layout_field_by_field() {
    let (_directory, key) = key();
    let image = subject(b"an image manifest");
    let attestation = signed(&key, &image);
    let manifest = json_of(&attestation.manifest);
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(manifest["mediaType"], oci::IMAGE_MANIFEST);
    assert_eq!(
        manifest["artifactType"],
        "application/vnd.dev.sigstore.bundle.v0.3+json"
    );
    // The empty descriptor: `{}`, two bytes, its well-known digest.
    assert_eq!(manifest["config"]["mediaType"], oci::EMPTY);
    assert_eq!(
        manifest["config"]["digest"],
        "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
    );
    assert_eq!(manifest["config"]["size"], 2);
    // One layer: the bundle, titled `sha256-HEX.sigstore.json`.
    let layers = manifest["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 1);
    let layer_digest = Digest::sha256_of(&attestation.bundle);
    assert_eq!(
        layers[0]["mediaType"],
        "application/vnd.dev.sigstore.bundle.v0.3+json"
    );
    assert_eq!(layers[0]["digest"], layer_digest.to_string());
    assert_eq!(layers[0]["size"], attestation.bundle.len());
    assert_eq!(
        layers[0]["annotations"]["org.opencontainers.image.title"],
        format!("sha256-{}.sigstore.json", layer_digest.hex())
    );
    // The subject: the image, as the registry stores it.
    assert_eq!(manifest["subject"]["mediaType"], oci::IMAGE_MANIFEST);
    assert_eq!(manifest["subject"]["digest"], image.digest.to_string());
    assert_eq!(manifest["subject"]["size"], image.size);
    // The three annotations.
    let annotations = manifest["annotations"].as_object().expect("annotations");
    assert_eq!(annotations.len(), 3);
    assert_eq!(annotations["dev.sigstore.bundle.content"], "dsse-envelope");
    assert_eq!(
        annotations["dev.sigstore.bundle.predicateType"],
        "https://slsa.dev/verification_summary/v1"
    );
    assert_eq!(
        annotations["org.opencontainers.image.created"],
        "2026-12-05T10:00:00Z"
    );
    // The bundle: v0.3, a public-key hint, no transparency-log entries, the envelope.
    let bundle = json_of(&attestation.bundle);
    assert_eq!(
        bundle["mediaType"],
        "application/vnd.dev.sigstore.bundle.v0.3+json"
    );
    assert_eq!(
        bundle["verificationMaterial"]["publicKey"]["hint"],
        key.key_id()
    );
    assert_eq!(bundle["verificationMaterial"]["tlogEntries"], json!([]));
    let envelope = &bundle["dsseEnvelope"];
    assert_eq!(envelope["payloadType"], "application/vnd.in-toto+json");
    assert_eq!(envelope["signatures"][0]["keyid"], key.key_id());
    // The statement: in-toto v1, the image by digest, the predicate.
    let parsed = Envelope::from_json(envelope).expect("an envelope");
    let payload = parsed.verify(key.public()).expect("signed by the key");
    let statement = json_of(payload);
    assert_eq!(statement["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(
        statement["subject"][0]["name"],
        "gantry.example:5000/acme/web"
    );
    assert_eq!(
        statement["subject"][0]["digest"]["sha256"],
        image.digest.hex()
    );
    assert_eq!(statement["predicateType"], VSA_PREDICATE_TYPE);
    assert_eq!(statement["predicate"]["verificationResult"], "PASSED");
    // ASN.1 DER: a SEQUENCE, as cosign writes.
    assert_eq!(parsed.signatures[0].sig[0], 0x30);
    assert_eq!(
        attestation.manifest_digest,
        Digest::sha256_of(&attestation.manifest)
    );
}

#[test]
fn an_attestation_opens_with_its_key_and_says_what_it_signed() {
    let (_directory, key) = key();
    let image = subject(b"an image manifest");
    let attestation = signed(&key, &image);
    let opened = open(
        &attestation.manifest,
        &attestation.bundle,
        &image.digest,
        &[key.public().clone()],
    )
    .expect("opens");
    assert_eq!(opened.key_id, key.key_id());
    assert_eq!(opened.predicate_type, VSA_PREDICATE_TYPE);
    assert_eq!(opened.predicate["verificationResult"], "PASSED");
    assert_eq!(opened.created.as_deref(), Some("2026-12-05T10:00:00Z"));
    assert_eq!(opened.manifest_digest, attestation.manifest_digest);
}

/// Rewrites the envelope inside a bundle, keeping everything else.
fn with_envelope(bundle: &[u8], change: impl FnOnce(&mut Envelope)) -> Vec<u8> {
    let mut value = json_of(bundle);
    let mut envelope = Envelope::from_json(&value["dsseEnvelope"]).expect("an envelope");
    change(&mut envelope);
    value["dsseEnvelope"] = envelope.to_json();
    serde_json::to_vec(&value).expect("JSON")
}

/// The manifest naming `bundle` as its layer (as a forger would rewrite it).
fn manifest_for(manifest: &[u8], bundle: &[u8], subject: Option<&Digest>) -> Vec<u8> {
    let mut value = json_of(manifest);
    value["layers"][0]["digest"] = json!(Digest::sha256_of(bundle).to_string());
    value["layers"][0]["size"] = json!(bundle.len());
    if let Some(subject) = subject {
        value["subject"]["digest"] = json!(subject.to_string());
    }
    serde_json::to_vec(&value).expect("JSON")
}

#[test]
fn an_edited_payload_is_refused() {
    let (_directory, key) = key();
    let image = subject(b"an image manifest");
    let attestation = signed(&key, &image);
    let bundle = with_envelope(&attestation.bundle, |envelope| {
        let text = String::from_utf8(envelope.payload.clone()).expect("UTF-8");
        envelope.payload = text.replace("PASSED", "PASSEd").into_bytes();
    });
    let manifest = manifest_for(&attestation.manifest, &bundle, None);
    let refused = open(&manifest, &bundle, &image.digest, &[key.public().clone()]);
    assert_eq!(refused, Err(Refusal::Signature(key.key_id())));
}

#[test]
fn a_signature_by_another_key_is_refused() {
    let (_directory, key) = key();
    let (_other_directory, other) = super::tests::key();
    let image = subject(b"an image manifest");
    let attestation = signed(&other, &image);
    let refused = open(
        &attestation.manifest,
        &attestation.bundle,
        &image.digest,
        &[key.public().clone()],
    );
    assert_eq!(refused, Err(Refusal::Signature(other.key_id())));
}

#[test]
fn an_attestation_about_another_digest_is_refused() {
    let (_directory, key) = key();
    let image = subject(b"an image manifest");
    let other = subject(b"another image manifest");
    let attestation = signed(&key, &other);
    let refused = open(
        &attestation.manifest,
        &attestation.bundle,
        &image.digest,
        &[key.public().clone()],
    );
    assert_eq!(
        refused,
        Err(Refusal::Subject {
            expected: image.digest.to_string(),
            found: other.digest.to_string()
        })
    );
}

#[test]
fn an_envelope_replayed_onto_another_image_is_refused() {
    let (_directory, key) = key();
    let image = subject(b"an image manifest");
    let target = subject(b"the image a forger wants trusted");
    let attestation = signed(&key, &image);
    // The same signed bundle, under a manifest whose subject is the other image.
    let manifest = manifest_for(
        &attestation.manifest,
        &attestation.bundle,
        Some(&target.digest),
    );
    let refused = open(
        &manifest,
        &attestation.bundle,
        &target.digest,
        &[key.public().clone()],
    );
    assert!(
        matches!(refused, Err(Refusal::Subject { ref found, .. }) if found == &image.digest.to_string()),
        "{refused:?}"
    );
}

#[test]
fn a_bundle_that_is_not_the_layer_named_is_refused() {
    let (_directory, key) = key();
    let image = subject(b"an image manifest");
    let attestation = signed(&key, &image);
    let other = signed(&key, &image);
    let refused = open(
        &attestation.manifest,
        &other.bundle,
        &image.digest,
        &[key.public().clone()],
    );
    assert!(
        matches!(refused, Err(Refusal::LayerMismatch(_))),
        "{refused:?}"
    );
    let not_a_referrer = open(
        b"{}",
        &attestation.bundle,
        &image.digest,
        &[key.public().clone()],
    );
    assert!(
        matches!(not_a_referrer, Err(Refusal::Malformed(_))),
        "{not_a_referrer:?}"
    );
}

#[test]
fn a_rotated_out_key_still_opens_what_it_signed_and_only_that() {
    let (_directory, old) = key();
    let image = subject(b"an image manifest");
    let before = signed(&old, &image);
    let new = old.rotate().expect("rotated");
    let after = signed(&new, &image);
    let keys = [old.public().clone(), new.public().clone()];
    let opened_before =
        open(&before.manifest, &before.bundle, &image.digest, &keys).expect("opens");
    let opened_after = open(&after.manifest, &after.bundle, &image.digest, &keys).expect("opens");
    assert_eq!(opened_before.key_id, old.key_id());
    assert_eq!(opened_after.key_id, new.key_id());
    assert!(
        open(
            &before.manifest,
            &before.bundle,
            &image.digest,
            &[new.public().clone()]
        )
        .is_err()
    );
    assert!(
        open(
            &after.manifest,
            &after.bundle,
            &image.digest,
            &[old.public().clone()]
        )
        .is_err()
    );
}
