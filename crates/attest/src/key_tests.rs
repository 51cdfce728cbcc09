use std::fs;
use std::os::unix::fs::PermissionsExt;

use super::*;

#[test]
fn a_key_is_made_once_with_mode_0600_and_read_back_as_the_same_key() {
    let dir = tempfile::tempdir().expect("directory");
    let path = dir.path().join("keys/gantry-signing.pem");
    let made = SigningKey::load_or_create(&path).expect("made");
    let mode = fs::metadata(&path).expect("file").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let parent = fs::metadata(path.parent().expect("parent")).expect("dir");
    assert_eq!(parent.permissions().mode() & 0o777, 0o700);
    let again = SigningKey::load_or_create(&path).expect("read");
    assert_eq!(again.key_id(), made.key_id());
    assert_eq!(made.key_id().len(), 64);
    let text = fs::read_to_string(&path).expect("text");
    assert!(text.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{text}");
    let leftovers: Vec<_> = fs::read_dir(path.parent().expect("parent"))
        .expect("list")
        .flatten()
        .map(|entry| entry.file_name())
        .collect();
    assert_eq!(
        leftovers.len(),
        1,
        "no temporary file is left: {leftovers:?}"
    );
}

#[test]
fn a_key_others_may_read_or_that_is_not_a_p256_key_is_refused_with_the_fix() {
    let dir = tempfile::tempdir().expect("directory");
    let path = dir.path().join("key.pem");
    SigningKey::load_or_create(&path).expect("made");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
    let error = SigningKey::load(&path).expect_err("refused").to_string();
    assert!(error.contains("chmod 600"), "{error}");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
    fs::write(
        &path,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .expect("write");
    let error = SigningKey::load(&path).expect_err("refused").to_string();
    assert!(error.contains("not a PEM `PRIVATE KEY`"), "{error}");
    fs::write(&path, "hello").expect("write");
    assert!(SigningKey::load(&path).is_err());
}

#[test]
fn signatures_verify_with_the_public_key_only_for_that_message_and_key() {
    let dir = tempfile::tempdir().expect("directory");
    let key = SigningKey::load_or_create(&dir.path().join("key.pem")).expect("made");
    let other = SigningKey::load_or_create(&dir.path().join("other.pem")).expect("made");
    let signature = key.sign(b"the payload").expect("signed");
    // ASN.1 DER: a SEQUENCE of two INTEGERs.
    assert_eq!(signature[0], 0x30);
    assert!(key.public().verify(b"the payload", &signature));
    assert!(!key.public().verify(b"the payload!", &signature));
    assert!(!other.public().verify(b"the payload", &signature));
    let published = PublicKey::from_pem(&key.public().pem()).expect("reads back");
    assert_eq!(published, *key.public());
    assert!(published.verify(b"the payload", &signature));
}

#[test]
fn the_public_key_is_published_as_spki_pem_and_as_a_jwk_of_its_coordinates() {
    let dir = tempfile::tempdir().expect("directory");
    let key = SigningKey::load_or_create(&dir.path().join("key.pem")).expect("made");
    let pem = key.public().pem();
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"), "{pem}");
    let der = key.public().spki_der();
    assert_eq!(der.len(), 91);
    assert_eq!(key.key_id(), hex::encode(Sha256::digest(&der)));
    let jwk = key.public().jwk();
    assert_eq!(
        (jwk["kty"].as_str(), jwk["crv"].as_str()),
        (Some("EC"), Some("P-256"))
    );
    let x = URL_SAFE_NO_PAD
        .decode(jwk["x"].as_str().expect("x"))
        .expect("base64url");
    let y = URL_SAFE_NO_PAD
        .decode(jwk["y"].as_str().expect("y"))
        .expect("base64url");
    assert_eq!([&[0x04][..], &x, &y].concat(), der[26..].to_vec());
    assert_eq!(jwk["kid"].as_str(), Some(key.key_id().as_str()));
}

#[test]
fn a_rotation_replaces_the_file_with_a_new_key_and_the_old_public_key_still_verifies() {
    let dir = tempfile::tempdir().expect("directory");
    let path = dir.path().join("key.pem");
    let old = SigningKey::load_or_create(&path).expect("made");
    let signed = old.sign(b"before").expect("signed");
    let new = old.rotate().expect("rotated");
    assert_ne!(new.key_id(), old.key_id());
    assert_eq!(
        SigningKey::load(&path).expect("read").key_id(),
        new.key_id()
    );
    assert_eq!(
        fs::metadata(&path).expect("file").permissions().mode() & 0o777,
        0o600
    );
    assert!(old.public().verify(b"before", &signed));
    assert!(!new.public().verify(b"before", &signed));
}

#[test]
fn a_public_key_that_is_not_p256_is_refused() {
    // An Ed25519 SubjectPublicKeyInfo.
    let ed25519 = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n";
    let error = PublicKey::from_pem(ed25519)
        .expect_err("refused")
        .to_string();
    assert!(error.contains("not an ECDSA P-256 key"), "{error}");
    assert!(PublicKey::from_pem("nothing").is_err());
}

#[test]
fn a_file_of_several_public_keys_reads_as_all_of_them() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let first = SigningKey::load_or_create(&directory.path().join("key.pem")).expect("a key");
    let second = first.rotate().expect("rotated");
    let text = format!(
        "# current\n{}\n# retired\n{}",
        second.public().pem(),
        first.public().pem()
    );
    let keys = PublicKey::all_from_pem(&text).expect("two keys");
    assert_eq!(keys, vec![second.public().clone(), first.public().clone()]);
    assert!(PublicKey::all_from_pem("nothing here").is_err());
    assert!(PublicKey::all_from_pem("-----BEGIN PUBLIC KEY-----\nAAAA").is_err());
}
