use regcopy::{CopyError, CopyOptions, ManifestReference, copy_between};

use crate::support::{PeerRegistry, Proxy, Rules, client, loopback_policy, push_image, repo, tag};

fn plain_http_options() -> CopyOptions {
    let mut options = CopyOptions::new(loopback_policy());
    options.source.plain_http = true;
    options.destination.plain_http = true;
    options
}

#[test]
fn a_blob_altered_in_transit_aborts_the_copy_and_the_destination_gets_no_manifest() {
    let source = PeerRegistry::start();
    let destination = PeerRegistry::start();
    let image = push_image(
        &client(&source.address(), None),
        &repo("acme/web"),
        Some(&tag("v1")),
        60,
        &[1 << 20],
    );
    let tampering = Proxy::start(
        source.port,
        Rules {
            flip_blob_byte: true,
            ..Rules::default()
        },
    );
    let mut options = plain_http_options();
    options.copy.parallel_blobs = 1;

    let failure = copy_between(
        &format!("{}/acme/web:v1", tampering.address()),
        &format!("{}/acme/web:v1", destination.address()),
        &options,
        &|_| {},
    )
    .expect_err("the altered blob is refused");

    assert!(
        matches!(failure, CopyError::DigestMismatch { .. }),
        "{failure:?}"
    );
    assert!(!failure.is_transient());
    let destination_client = client(&destination.address(), None);
    let name = repo("acme/web");
    assert_eq!(
        destination_client
            .manifest_digest(&name, &ManifestReference::Tag(tag("v1")))
            .expect("HEAD"),
        None,
        "no manifest was pushed"
    );
    assert_eq!(
        destination_client
            .manifest_digest(
                &name,
                &ManifestReference::Digest(image.manifest.digest.clone())
            )
            .expect("HEAD"),
        None
    );
    for (digest, _) in &image.blobs {
        let (layer, _) = &image.blobs[0];
        if digest == layer {
            assert!(
                !destination_client.blob_exists(&name, digest).expect("HEAD"),
                "the altered layer was not completed at the destination"
            );
        }
    }
}

#[test]
fn a_destination_serving_another_digest_after_the_push_fails_the_copy_loudly() {
    let source = PeerRegistry::start();
    let destination = PeerRegistry::start();
    push_image(
        &client(&source.address(), None),
        &repo("acme/web"),
        Some(&tag("v1")),
        61,
        &[1000],
    );
    let impostor = format!("sha256:{}", "e".repeat(64));
    let lying = Proxy::start(
        destination.port,
        Rules {
            fake_manifest_digest: Some(impostor.clone()),
            ..Rules::default()
        },
    );

    let failure = copy_between(
        &format!("{}/acme/web:v1", source.address()),
        &format!("{}/acme/web:v1", lying.address()),
        &plain_http_options(),
        &|_| {},
    )
    .expect_err("verification fails");

    let CopyError::VerificationFailed { served, .. } = &failure else {
        panic!("expected a verification failure, got {failure:?}");
    };
    assert_eq!(served, &impostor);
    assert!(
        failure.to_string().contains("verification failed"),
        "{failure}"
    );
    assert!(!failure.is_transient());
}
