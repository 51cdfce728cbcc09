use std::sync::Mutex;

use regcopy::{CopyError, CopyOptions, ManifestReference, Progress, ProgressEvent, copy_between};

use crate::support::{
    PeerRegistry, Proxy, Rules, client, loopback_policy, mkimage_and_push, peak_rss_bytes,
    push_image, push_index, repo, skopeo_digest, skopeo_raw_digest, tag,
};

fn plain_http_options() -> CopyOptions {
    let mut options = CopyOptions::new(loopback_policy());
    options.source.plain_http = true;
    options.destination.plain_http = true;
    options
}

fn no_progress(_: &Progress) {}

#[test]
fn an_image_pushed_by_skopeo_arrives_with_the_same_digest() {
    let source = PeerRegistry::start();
    let destination = PeerRegistry::start();
    let pushed = mkimage_and_push(&format!("{}/acme/web:v1", source.address()), "3x1M");

    let events = Mutex::new(Vec::new());
    let report = copy_between(
        &format!("{}/acme/web:v1", source.address()),
        &format!("{}/prod/web", destination.address()),
        &plain_http_options(),
        &|progress: &Progress| events.lock().expect("events").push(progress.clone()),
    )
    .expect("copy");

    assert_eq!(report.digest.to_string(), pushed);
    assert_eq!(report.tags.first().map(|t| t.as_str()), Some("v1"));
    assert_eq!(report.blobs_total, 4, "three layers and a config");
    assert_eq!(report.blobs_copied, 4);
    assert_eq!(report.bytes_copied, report.bytes_total);
    assert!(report.bytes_total > 3 << 20);
    assert_eq!(
        skopeo_digest(&format!("{}/prod/web:v1", destination.address()), None),
        pushed
    );
    let events = events.into_inner().expect("events");
    let last = events.last().expect("progress was reported");
    assert_eq!(last.event, ProgressEvent::Verified(report.digest.clone()));
    assert_eq!(last.bytes_done, last.bytes_total);
    assert_eq!(last.blobs_done, 4);
}

#[test]
fn an_index_is_copied_with_its_children_before_it() {
    let source = PeerRegistry::start();
    let destination = PeerRegistry::start();
    let source_client = client(&source.address(), None);
    let name = repo("acme/multi");
    let amd64 = push_image(&source_client, &name, None, 10, &[2048, 4096]);
    let arm64 = push_image(&source_client, &name, None, 11, &[1024]);
    let index = push_index(&source_client, &name, &tag("v2"), &[&amd64, &arm64]);

    let report = copy_between(
        &format!("{}/acme/multi:v2", source.address()),
        &format!("{}/mirror/multi:stable", destination.address()),
        &plain_http_options(),
        &no_progress,
    )
    .expect("copy");

    assert_eq!(report.digest, index.digest);
    assert_eq!(report.manifests, 3);
    assert_eq!(report.blobs_copied, 5, "two configs and three layers");
    assert_eq!(
        skopeo_raw_digest(&format!("{}/mirror/multi:stable", destination.address())),
        index.digest
    );
    let destination_client = client(&destination.address(), None);
    for child in [&amd64, &arm64] {
        let copied = destination_client
            .manifest(
                &repo("mirror/multi"),
                &ManifestReference::Digest(child.manifest.digest.clone()),
            )
            .expect("child manifest at the destination");
        assert_eq!(copied.content, child.manifest.content);
    }
}

#[test]
fn copying_again_skips_every_blob_and_uploads_nothing() {
    let source = PeerRegistry::start();
    let destination = PeerRegistry::start();
    let image = push_image(
        &client(&source.address(), None),
        &repo("acme/web"),
        Some(&tag("v1")),
        20,
        &[300_000, 5000],
    );
    // Upload locations are made relative on the way, as some registries send them.
    let counting = Proxy::start(
        destination.port,
        Rules {
            relative_location: true,
            ..Rules::default()
        },
    );
    let copy = || {
        copy_between(
            &format!("{}/acme/web:v1", source.address()),
            &format!("{}/acme/web:v1", counting.address()),
            &plain_http_options(),
            &no_progress,
        )
        .expect("copy")
    };
    let first = copy();
    assert_eq!(first.blobs_copied, 3);
    let uploads_before = counting
        .seen()
        .iter()
        .filter(|seen| seen.target.contains("/blobs/uploads/"))
        .count();
    assert_eq!(uploads_before, 6, "a POST and a PUT per blob");

    let second = copy();

    assert_eq!(second.digest, image.manifest.digest);
    assert_eq!(second.blobs_present, 3);
    assert_eq!(second.blobs_copied, 0);
    assert_eq!(second.bytes_copied, 0);
    let uploads_after = counting
        .seen()
        .iter()
        .filter(|seen| seen.target.contains("/blobs/uploads/"))
        .count();
    assert_eq!(uploads_after, uploads_before, "no upload was started");
}

#[test]
fn within_one_registry_blobs_are_mounted_not_copied() {
    let registry = PeerRegistry::start();
    let image = push_image(
        &client(&registry.address(), None),
        &repo("acme/web"),
        Some(&tag("v1")),
        30,
        &[100_000, 2000],
    );

    let report = copy_between(
        &format!("{}/acme/web:v1", registry.address()),
        &format!("{}/release/acme/web:v1", registry.address()),
        &plain_http_options(),
        &no_progress,
    )
    .expect("copy");

    assert_eq!(report.blobs_mounted, 3);
    assert_eq!(report.blobs_copied, 0);
    assert_eq!(report.bytes_copied, 0);
    assert_eq!(
        skopeo_digest(&format!("{}/release/acme/web:v1", registry.address()), None),
        image.manifest.digest.to_string()
    );
}

#[test]
fn a_200_mib_blob_streams_through_with_bounded_memory() {
    const SIZE: u64 = 200 << 20;
    let source = PeerRegistry::start();
    let destination = PeerRegistry::start();
    let image = push_image(
        &client(&source.address(), None),
        &repo("acme/big"),
        Some(&tag("v1")),
        40,
        &[SIZE],
    );

    let report = copy_between(
        &format!("{}/acme/big:v1", source.address()),
        &format!("{}/acme/big:v1", destination.address()),
        &plain_http_options(),
        &no_progress,
    )
    .expect("copy");

    assert_eq!(report.bytes_copied, report.bytes_total);
    assert!(report.bytes_copied > SIZE);
    assert_eq!(
        skopeo_digest(&format!("{}/acme/big:v1", destination.address()), None),
        image.manifest.digest.to_string()
    );
    let peak = peak_rss_bytes();
    assert!(
        peak < 96 << 20,
        "peak memory {} MiB: the blob was buffered instead of streamed",
        peak >> 20
    );
}

#[test]
fn the_outbound_guard_refuses_loopback_registries_unless_allow_listed() {
    let source = PeerRegistry::start();
    let destination = PeerRegistry::start();
    push_image(
        &client(&source.address(), None),
        &repo("acme/web"),
        Some(&tag("v1")),
        50,
        &[100],
    );
    let mut options = plain_http_options();
    options.client.policy = std::sync::Arc::new(outbound::Policy::default());

    let refused = copy_between(
        &format!("{}/acme/web:v1", source.address()),
        &format!("{}/acme/web:v1", destination.address()),
        &options,
        &no_progress,
    )
    .expect_err("loopback is refused by default");

    assert!(matches!(refused, CopyError::Refused { .. }), "{refused:?}");
    assert!(!refused.is_transient());
    assert!(refused.to_string().contains("outbound.allow"), "{refused}");
}

#[test]
fn a_missing_source_tag_is_reported_as_not_found() {
    let source = PeerRegistry::start();
    let destination = PeerRegistry::start();
    let missing = copy_between(
        &format!("{}/acme/web:nope", source.address()),
        &format!("{}/acme/web", destination.address()),
        &plain_http_options(),
        &no_progress,
    )
    .expect_err("nothing to copy");
    assert!(matches!(missing, CopyError::NotFound(_)), "{missing:?}");
    assert!(!missing.is_transient());
}
