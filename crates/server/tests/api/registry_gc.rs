//! Online garbage collection, against the failure modes other registries shipped:
//! nothing a manifest references (directly, through an index, or as a referrer of a
//! live subject) is ever deleted, a blob acknowledged and then referenced within the
//! grace window survives passes running all the while, a re-referenced old orphan
//! survives, a listing never causes a deletion, a dry run changes nothing, and what
//! is unreferenced past the window is deleted, audited and counted.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::body::Body;
use futures_util::StreamExt;
use http::{Method, StatusCode};
use registry::{CollectOptions, CollectReport};
use serde_json::{Value, json};
use testkit::TestApp;

use crate::support::{
    Blob, CONFIG_MEDIA_TYPE, EMPTY_JSON_MEDIA_TYPE, Manifest, assert_error, assert_status, delete,
    get, head, image_index, image_manifest, mutable_tags_config, push_blob, push_image,
    push_manifest, put_manifest,
};

/// Runs one pass with grace window `grace`.
async fn collect(app: &TestApp, grace: Duration) -> CollectReport {
    collect_with(app, grace, false).await
}

async fn collect_with(app: &TestApp, grace: Duration, dry_run: bool) -> CollectReport {
    let report = app
        .state
        .registry
        .collect(&CollectOptions {
            grace,
            dry_run,
            replica: "test".into(),
            retention: Ok(registry::RetentionPlan::default()),
        })
        .await
        .expect("a collection pass runs")
        .expect("no other pass is running");
    assert!(
        report.errors.is_empty(),
        "the pass failed somewhere: {:?}",
        report.errors
    );
    report
}

/// Passes with no grace window until what is unreferenced is gone: the first marks
/// it (its window starts when the marks are written), the second deletes it, and a
/// third finds nothing more to do. What the first two did, together.
async fn collect_everything(app: &TestApp) -> CollectReport {
    let mut report = collect(app, Duration::ZERO).await;
    let second = collect(app, Duration::ZERO).await;
    report.blobs_deleted += second.blobs_deleted;
    report.bytes_reclaimed += second.bytes_reclaimed;
    report.orphans_deleted += second.orphans_deleted;
    report.referrers_deleted += second.referrers_deleted;
    report.blobs.extend(second.blobs);
    report.referrers.extend(second.referrers);
    report.orphans.extend(second.orphans);
    let again = collect(app, Duration::ZERO).await;
    assert_eq!(
        (
            again.blobs_deleted,
            again.orphans_deleted,
            again.referrers_deleted
        ),
        (0, 0, 0),
        "a third pass finds nothing left: {again:?}"
    );
    report
}

/// The app collecting garbage with grace window `grace` when asked through the API.
fn with_grace(mut app: TestApp, grace: Duration) -> TestApp {
    app.state = app.state.clone().with_gc(server::GcSettings {
        interval: None,
        grace,
    });
    app.router = server::router(app.state.clone());
    app
}

async fn pulls_blob(app: &TestApp, repository: &str, blob: &Blob) -> bool {
    let response = get(app, &format!("/v2/{repository}/blobs/{}", blob.digest)).await;
    if response.status != StatusCode::OK {
        return false;
    }
    assert_eq!(
        response.body.as_ref(),
        blob.bytes.as_slice(),
        "served bytes are the blob's"
    );
    true
}

#[track_caller]
fn assert_pulls_manifest(response: &testkit::TestResponse, manifest: &Manifest) {
    assert_status(response, StatusCode::OK);
    assert_eq!(response.body.as_ref(), manifest.bytes.as_slice());
}

async fn pull_manifest(app: &TestApp, repository: &str, manifest: &Manifest) {
    let response = get(
        app,
        &format!("/v2/{repository}/manifests/{}", manifest.digest),
    )
    .await;
    assert_pulls_manifest(&response, manifest);
}

/// An image manifest of `config` and `layers` with a layer media type of its own.
fn manifest_with(media_type: &str, config: (&Blob, &str), layers: &[(&Blob, &str)]) -> Manifest {
    Manifest::from_json(&json!({
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": config.0.descriptor(config.1),
        "layers": layers.iter().map(|(blob, kind)| blob.descriptor(kind)).collect::<Vec<_>>(),
    }))
}

registry_tests! {
    async fn an_unreferenced_blob_is_deleted_only_after_the_grace_window_and_audited(app) {
        let image = push_image(&app, "acme/app", "v1", "kept").await;
        let abandoned = Blob::new("uploaded, never referenced");
        push_blob(&app, "acme/app", &abandoned).await;

        let first = collect(&app, Duration::from_secs(3600)).await;
        assert_eq!((first.blobs_marked, first.blobs_deleted), (1, 0), "marked, not deleted: {first:?}");
        let second = collect(&app, Duration::from_secs(3600)).await;
        assert_eq!(second.blobs_deleted, 0, "an hour has not passed");
        assert!(pulls_blob(&app, "acme/app", &abandoned).await, "still there within the window");

        // Pulling it counted as needing it again (the mark went); with no window at all
        // the next two passes mark it and delete it.
        let report = collect_everything(&app).await;
        assert_eq!(report.blobs_deleted, 1, "{report:?}");
        assert_eq!(report.bytes_reclaimed, abandoned.bytes.len() as u64);
        assert_eq!(report.blobs[0].digest.to_string(), abandoned.digest);
        let response = get(&app, &format!("/v2/acme/app/blobs/{}", abandoned.digest)).await;
        assert_error(&response, StatusCode::NOT_FOUND, "BLOB_UNKNOWN");
        for blob in [&image.config, &image.layer] {
            assert!(pulls_blob(&app, "acme/app", blob).await, "a referenced blob is never deleted");
        }
        pull_manifest(&app, "acme/app", &image.manifest).await;

        let audit = app.admin(Method::GET, "/api/v1/audit/export", &[], Body::empty()).await;
        let collected: Vec<Value> = audit
            .text()
            .lines()
            .map(|line| serde_json::from_str::<Value>(line).expect("JSON line"))
            .filter(|entry| entry["action"] == "collect")
            .collect();
        assert_eq!(collected.len(), 1, "{collected:?}");
        assert_eq!(collected[0]["actor"], "gc");
        assert_eq!(collected[0]["subject"], abandoned.digest.as_str());

        // Uploaded again, it is a new blob.
        push_blob(&app, "acme/app", &abandoned).await;
        assert!(pulls_blob(&app, "acme/app", &abandoned).await);
    }

    async fn blobs_acknowledged_and_referenced_within_the_window_survive_passes_every_50_ms(app) {
        // quay#6318: a blob answered 201 and referenced by a manifest soon after must
        // never be lost to a pass between the two.
        let app = Arc::new(app);
        let stop = Arc::new(AtomicBool::new(false));
        let collector = {
            let (app, stop) = (app.clone(), stop.clone());
            tokio::spawn(async move {
                let mut passes = 0u32;
                let mut deleted = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let report = collect(&app, Duration::from_secs(2)).await;
                    deleted += report.blobs_deleted;
                    passes += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                (passes, deleted)
            })
        };
        let pushers: Vec<_> = (0..4)
            .map(|client| {
                let app = app.clone();
                tokio::spawn(async move {
                    let mut pushed = Vec::new();
                    for round in 0..12 {
                        // A shared base layer, a layer of its own, and an abandoned one.
                        let base = Blob::new("a base layer every client shares");
                        let own = Blob::new(format!("layer of client {client} round {round}"));
                        let config = Blob::new(format!(r#"{{"client":{client},"round":{round}}}"#));
                        let abandoned = Blob::new(format!("abandoned by {client} in {round}"));
                        for blob in [&base, &own, &config, &abandoned] {
                            push_blob(&app, "acme/soak", blob).await;
                        }
                        let manifest = Manifest::from_json(&image_manifest(&config, &[&base, &own]));
                        let response = put_manifest(&app, "acme/soak", &format!("c{client}-r{round}"), &manifest).await;
                        assert_status(&response, StatusCode::CREATED);
                        pushed.push((manifest, vec![base, own, config]));
                        tokio::time::sleep(Duration::from_millis(60)).await;
                    }
                    pushed
                })
            })
            .collect();
        let mut images = Vec::new();
        for pusher in pushers {
            images.extend(pusher.await.expect("a pusher finishes"));
        }
        // Long enough for the first abandoned blobs to pass the window.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        stop.store(true, Ordering::Relaxed);
        let (passes, deleted) = collector.await.expect("the collector finishes");
        assert!(passes >= 20, "only {passes} passes ran");
        assert!(deleted > 0, "the passes deleted nothing: the test would not catch a lost blob");
        for (manifest, blobs) in &images {
            pull_manifest(&app, "acme/soak", manifest).await;
            for blob in blobs {
                assert!(pulls_blob(&app, "acme/soak", blob).await, "a referenced blob was lost");
            }
        }
    }

    async fn an_old_orphan_checked_mounted_or_uploaded_again_and_then_referenced_survives(app) {
        // harbor#23116: re-referencing an orphan past the window must clear its state,
        // whoever wins the race with the pass deleting it. A client does what real ones
        // do: skips the upload when the existence check says 200, uploads when a mount
        // falls back to a session, and its manifest push must then succeed.
        let app = Arc::new(app);
        let grace = Duration::from_millis(300);
        let config = Blob::new(r#"{"architecture":"amd64","os":"linux"}"#);
        // The config stays referenced throughout: only the orphans race the passes.
        for repository in ["acme/source", "acme/target"] {
            push_blob(&app, repository, &config).await;
            let base = Manifest::from_json(&image_manifest(&config, &[]));
            push_manifest(&app, repository, "base", &base).await;
        }
        let mut images = Vec::new();
        let mut skipped = 0;
        for round in 0..8 {
            let orphans: Vec<Blob> = (0..3).map(|i| Blob::new(format!("old orphan {i} of round {round}"))).collect();
            for blob in &orphans {
                push_blob(&app, "acme/source", blob).await;
            }
            collect(&app, Duration::from_secs(3600)).await;
            // The marks are now older than the window: the next pass deletes them
            // unless something needs them first.
            tokio::time::sleep(grace + Duration::from_millis(100)).await;
            let stop = Arc::new(AtomicBool::new(false));
            let collector = {
                let (app, stop) = (app.clone(), stop.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        collect(&app, grace).await;
                        tokio::task::yield_now().await;
                    }
                })
            };
            // An existence check that lets a client skip the upload…
            let response = head(&app, &format!("/v2/acme/source/blobs/{}", orphans[0].digest)).await;
            if response.status == StatusCode::OK {
                skipped += 1;
            } else {
                // A HEAD answer has no body to name the error code in.
                assert_eq!(response.status, StatusCode::NOT_FOUND);
                push_blob(&app, "acme/source", &orphans[0]).await;
            }
            // …a cross-repository mount…
            let response = app
                .admin(
                    Method::POST,
                    &format!("/v2/acme/target/blobs/uploads/?mount={}&from=acme/source", orphans[1].digest),
                    &[],
                    Body::empty(),
                )
                .await;
            if response.status == StatusCode::CREATED {
                skipped += 1;
            } else {
                assert_status(&response, StatusCode::ACCEPTED);
                push_blob(&app, "acme/target", &orphans[1]).await;
            }
            // …and the same bytes uploaded again.
            push_blob(&app, "acme/target", &orphans[2]).await;
            let in_source = Manifest::from_json(&image_manifest(&config, &[&orphans[0]]));
            let response = put_manifest(&app, "acme/source", &format!("checked-{round}"), &in_source).await;
            assert_status(&response, StatusCode::CREATED);
            let in_target = Manifest::from_json(&image_manifest(&config, &[&orphans[1], &orphans[2]]));
            let response = put_manifest(&app, "acme/target", &format!("mounted-{round}"), &in_target).await;
            assert_status(&response, StatusCode::CREATED);
            stop.store(true, Ordering::Relaxed);
            collector.await.expect("the collector finishes");
            images.push((in_source, in_target, orphans));
        }
        tokio::time::sleep(grace + Duration::from_millis(100)).await;
        collect(&app, grace).await;
        for (in_source, in_target, orphans) in &images {
            pull_manifest(&app, "acme/source", in_source).await;
            pull_manifest(&app, "acme/target", in_target).await;
            assert!(pulls_blob(&app, "acme/source", &orphans[0]).await);
            assert!(pulls_blob(&app, "acme/target", &orphans[1]).await);
            assert!(pulls_blob(&app, "acme/target", &orphans[2]).await);
        }
        // Which side won varies; the test means something only if clients were told
        // an old orphan existed at least once.
        assert!(skipped > 0, "no existence check or mount ever found the old orphan");
    }

    async fn index_children_nested_indexes_and_referrers_of_a_tagged_root_all_survive(app = mutable_tags_config()) {
        // distribution#3178, zot#2624: children of a multi-arch image are untagged.
        let amd = push_image(&app, "acme/multi", "amd64-build", "amd64").await;
        let arm = push_image(&app, "acme/multi", "arm64-build", "arm64").await;
        let inner = Manifest::from_json(&image_index(&[&amd.manifest, &arm.manifest]));
        push_manifest(&app, "acme/multi", &inner.digest, &inner).await;
        let outer = Manifest::from_json(&image_index(&[&inner]));
        push_manifest(&app, "acme/multi", "release", &outer).await;
        let empty = Blob::new("{}");
        let statement = Blob::new("an attestation of the amd64 image");
        push_blob(&app, "acme/multi", &empty).await;
        push_blob(&app, "acme/multi", &statement).await;
        let attestation = Manifest::from_json(&json!({
            "schemaVersion": 2,
            "mediaType": registry::OCI_MANIFEST,
            "artifactType": "application/vnd.in-toto+json",
            "config": empty.descriptor(EMPTY_JSON_MEDIA_TYPE),
            "layers": [statement.descriptor("application/vnd.in-toto+json")],
            "subject": amd.manifest.descriptor(),
        }));
        push_manifest(&app, "acme/multi", &attestation.digest, &attestation).await;
        // The children's own tags go; only the outer index stays tagged.
        for tag in ["amd64-build", "arm64-build"] {
            assert_status(&delete(&app, &format!("/v2/acme/multi/manifests/{tag}")).await, StatusCode::ACCEPTED);
        }
        collect_everything(&app).await;
        for manifest in [&outer, &inner, &amd.manifest, &arm.manifest, &attestation] {
            pull_manifest(&app, "acme/multi", manifest).await;
        }
        for blob in [&amd.config, &amd.layer, &arm.config, &arm.layer, &empty, &statement] {
            assert!(pulls_blob(&app, "acme/multi", blob).await, "{} was deleted", blob.digest);
        }
    }

    async fn a_referrer_of_a_deleted_subject_is_collected_after_the_window_and_one_of_a_live_subject_never(app = mutable_tags_config()) {
        let live = push_image(&app, "acme/app", "live", "live subject").await;
        let doomed = push_image(&app, "acme/app", "doomed", "doomed subject").await;
        let empty = Blob::new("{}");
        push_blob(&app, "acme/app", &empty).await;
        let mut referrers = Vec::new();
        for (subject, text) in [(&live, "signature of the live one"), (&doomed, "signature of the doomed one")] {
            let payload = Blob::new(text);
            push_blob(&app, "acme/app", &payload).await;
            let referrer = Manifest::from_json(&json!({
                "schemaVersion": 2,
                "mediaType": registry::OCI_MANIFEST,
                "artifactType": "application/vnd.example.signature",
                "config": empty.descriptor(EMPTY_JSON_MEDIA_TYPE),
                "layers": [payload.descriptor("application/octet-stream")],
                "subject": subject.manifest.descriptor(),
            }));
            push_manifest(&app, "acme/app", &referrer.digest, &referrer).await;
            referrers.push((referrer, payload));
        }
        let response = delete(&app, &format!("/v2/acme/app/manifests/{}", doomed.manifest.digest)).await;
        assert_status(&response, StatusCode::ACCEPTED);

        let within = collect(&app, Duration::from_secs(3600)).await;
        assert!(within.referrers.is_empty(), "a referrer whose subject went is kept within the window");
        pull_manifest(&app, "acme/app", &referrers[1].0).await;

        let report = collect(&app, Duration::ZERO).await;
        assert_eq!(report.referrers_deleted, 1, "{report:?}");
        assert_eq!(report.referrers[0].digest.to_string(), referrers[1].0.digest);
        collect_everything(&app).await;
        let response = get(&app, &format!("/v2/acme/app/manifests/{}", referrers[1].0.digest)).await;
        assert_error(&response, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN");
        assert!(!pulls_blob(&app, "acme/app", &referrers[1].1).await, "its payload went after it");
        assert!(!pulls_blob(&app, "acme/app", &doomed.layer).await, "and the deleted subject's layer");
        pull_manifest(&app, "acme/app", &referrers[0].0).await;
        assert!(pulls_blob(&app, "acme/app", &referrers[0].1).await);
        assert!(pulls_blob(&app, "acme/app", &empty).await, "shared with the live referrer");
        let listed = get(&app, &format!("/v2/acme/app/referrers/{}", live.manifest.digest)).await;
        assert_eq!(listed.json()["manifests"].as_array().map(Vec::len), Some(1));
    }

    async fn docker_oci_artifact_and_unknown_media_types_neither_lose_referenced_blobs_nor_leak(app = mutable_tags_config()) {
        // zot PR #1762 and zot#3347.
        let kinds = [
            (registry::DOCKER_MANIFEST, "application/vnd.docker.container.image.v1+json", "application/vnd.docker.image.rootfs.diff.tar.gzip"),
            (registry::OCI_MANIFEST, CONFIG_MEDIA_TYPE, "application/vnd.oci.image.layer.v1.tar+zstd"),
            (registry::OCI_MANIFEST, "application/vnd.acme.unknown.config+json", "application/x-acme-never-heard-of-it"),
        ];
        let mut kept = Vec::new();
        let mut dropped = Vec::new();
        for (i, (media_type, config_type, layer_type)) in kinds.iter().enumerate() {
            for fate in ["kept", "dropped"] {
                let config = Blob::new(format!(r#"{{"kind":{i},"fate":"{fate}"}}"#));
                let layer = Blob::new(format!("layer {i} {fate}"));
                push_blob(&app, "acme/kinds", &config).await;
                push_blob(&app, "acme/kinds", &layer).await;
                let manifest = manifest_with(media_type, (&config, config_type), &[(&layer, layer_type)]);
                push_manifest(&app, "acme/kinds", &format!("{i}-{fate}"), &manifest).await;
                if fate == "kept" { kept.push((manifest, config, layer)) } else { dropped.push((manifest, config, layer)) }
            }
        }
        let empty = Blob::new("{}");
        let payload = Blob::new("an artifact's only layer");
        push_blob(&app, "acme/kinds", &empty).await;
        push_blob(&app, "acme/kinds", &payload).await;
        let artifact = Manifest::from_json(&json!({
            "schemaVersion": 2,
            "mediaType": registry::OCI_MANIFEST,
            "artifactType": "application/vnd.acme.unknown.artifact",
            "config": empty.descriptor(EMPTY_JSON_MEDIA_TYPE),
            "layers": [payload.descriptor("application/vnd.acme.whatever")],
        }));
        push_manifest(&app, "acme/kinds", "artifact", &artifact).await;
        for (manifest, _, _) in &dropped {
            let response = delete(&app, &format!("/v2/acme/kinds/manifests/{}", manifest.digest)).await;
            assert_status(&response, StatusCode::ACCEPTED);
        }
        let report = collect_everything(&app).await;
        assert_eq!(report.blobs_deleted, 6, "every blob of the deleted manifests, none other: {report:?}");
        for (manifest, config, layer) in &kept {
            pull_manifest(&app, "acme/kinds", manifest).await;
            assert!(pulls_blob(&app, "acme/kinds", config).await);
            assert!(pulls_blob(&app, "acme/kinds", layer).await);
        }
        pull_manifest(&app, "acme/kinds", &artifact).await;
        assert!(pulls_blob(&app, "acme/kinds", &payload).await);
        for (_, config, layer) in &dropped {
            assert!(!pulls_blob(&app, "acme/kinds", config).await && !pulls_blob(&app, "acme/kinds", layer).await);
        }
    }

    async fn a_stale_or_incomplete_blob_store_listing_never_causes_a_deletion(app) {
        // harbor#12975: a listing proposes; the database decides.
        let image = push_image(&app, "acme/app", "v1", "listed").await;
        let orphan = Blob::new("an orphan object the database forgot");
        // Written straight into the store, as a crash before its row would leave it.
        let orphan_digest = domain::Digest::parse(&orphan.digest).expect("digest");
        app.state.blobs.put_small(&orphan_digest, orphan.bytes.clone().into()).await.expect("put");
        let old = store::now_millis() - 10_000;
        let stale = |blob: &Blob| Ok(blobs::StoredObject {
            digest: domain::Digest::parse(&blob.digest).expect("digest"),
            size: blob.bytes.len() as u64,
            written_at_millis: old,
        });
        // A stale listing naming referenced blobs as old objects, and an incomplete
        // one that leaves out everything: neither deletes a referenced blob.
        let sweep = |listing: futures_util::stream::BoxStream<'static, Result<blobs::StoredObject, blobs::BlobError>>| {
            let registry = app.state.registry.clone();
            async move {
                registry
                    .sweep_listing(listing, store::now_millis(), "test")
                    .await
                    .expect("sweep")
                    .expect("no other pass is running")
            }
        };
        let report = sweep(futures_util::stream::iter(vec![stale(&image.config), stale(&image.layer)]).boxed()).await;
        assert_eq!(report.orphans_deleted, 0, "{report:?}");
        let report = sweep(futures_util::stream::iter(Vec::new()).boxed()).await;
        assert_eq!(report.orphans_deleted, 0, "{report:?}");
        assert!(pulls_blob(&app, "acme/app", &image.config).await);
        assert!(pulls_blob(&app, "acme/app", &image.layer).await);
        assert!(app.state.blobs.exists(&orphan_digest).await.expect("exists"), "not listed, not deleted");
        // A listing that errors half way deletes nothing after the error.
        let failed = sweep(
            futures_util::stream::iter(vec![
                Err(blobs::BlobError::Session("the store's listing failed".into())),
                stale(&orphan),
            ])
            .boxed(),
        )
        .await;
        assert_eq!((failed.orphans_deleted, failed.errors.len()), (0, 1));
        // The store's own listing finds the orphan, once it is older than the window.
        let recent = collect_with(&app, Duration::from_secs(3600), true).await;
        assert_eq!(recent.orphans_deleted, 0, "written just now: within the window");
        let report = collect(&app, Duration::ZERO).await;
        assert_eq!(report.orphans_deleted, 1, "{report:?}");
        assert!(!app.state.blobs.exists(&orphan_digest).await.expect("exists"));
        assert!(pulls_blob(&app, "acme/app", &image.layer).await);
    }

    async fn a_dry_run_changes_nothing_in_the_database_or_the_blob_store(app = mutable_tags_config()) {
        // zot's `verify-feature retention` warning: a dry run must be dry.
        let app = with_grace(app, Duration::from_secs(1));
        let kept = push_image(&app, "acme/app", "kept", "kept").await;
        let dropped = push_image(&app, "acme/app", "dropped", "dropped").await;
        push_blob(&app, "acme/app", &Blob::new("abandoned")).await;
        let orphan = domain::Digest::sha256_of(b"an orphan object");
        app.state.blobs.put_small(&orphan, bytes::Bytes::from_static(b"an orphan object")).await.expect("put");
        collect(&app, Duration::from_secs(3600)).await;
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let response = delete(&app, &format!("/v2/acme/app/manifests/{}", dropped.manifest.digest)).await;
        assert_status(&response, StatusCode::ACCEPTED);
        // Let the audit chain settle before the snapshot (PostgreSQL chains later).
        app.store.audit().verify().await.expect("verify");

        let database = app.database().snapshot().await;
        let files = app.blob_files();
        let response = app.admin(Method::POST, "/api/v1/gc", &[("content-type", "application/json")], r#"{"dry_run":true}"#).await;
        assert_status(&response, StatusCode::OK);
        let report = response.json();
        assert_eq!(report["dry_run"], json!(true));
        assert_eq!(report["blobs_deleted"], json!(1), "the abandoned blob, marked by the first pass: {report}");
        assert_eq!(report["blobs_marked"], json!(2), "the dropped image's config and layer would be marked");
        assert_eq!(report["orphans_deleted"], json!(1));
        assert_eq!(app.database().snapshot().await, database, "the dry run changed the database");
        assert_eq!(app.blob_files(), files, "the dry run changed the blob store");

        let response = app.admin(Method::POST, "/api/v1/gc", &[], Body::empty()).await;
        assert_status(&response, StatusCode::OK);
        assert_eq!(response.json()["dry_run"], json!(false));
        assert_ne!(app.database().snapshot().await, database, "a real pass records itself");
        pull_manifest(&app, "acme/app", &kept.manifest).await;
    }

    async fn gc_is_for_admins_and_its_record_shows_in_the_api_and_metrics(app) {
        push_blob(&app, "acme/app", &Blob::new("abandoned")).await;
        let report = collect_everything(&app).await;
        assert_eq!(report.blobs_deleted, 1);

        let anonymous = app.send(Method::POST, "/api/v1/gc", &[], Body::empty()).await;
        assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
        let token = crate::support::user_with_roles(&app, "dev", false, &["developer"]).await;
        let bearer = format!("Bearer {token}");
        let developer = app.send(Method::POST, "/api/v1/gc", &[("authorization", &bearer)], Body::empty()).await;
        assert_eq!(developer.status, StatusCode::FORBIDDEN, "{}", developer.text());
        let response = app.send(Method::GET, "/api/v1/gc", &[("authorization", &bearer)], Body::empty()).await;
        assert_eq!(response.status, StatusCode::FORBIDDEN);
        let response = app.admin(Method::POST, "/api/v1/gc", &[("content-type", "application/json")], r#"{"dry_run":true,"force":1}"#).await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST, "unknown fields are refused");

        let response = app.admin(Method::GET, "/api/v1/gc", &[], Body::empty()).await;
        assert_status(&response, StatusCode::OK);
        let status = response.json();
        assert_eq!(status["grace_seconds"], json!(3600));
        assert!(status["blobs_deleted"].as_i64() >= Some(1), "{status}");
        assert_eq!(status["passes"][0]["replica"], json!("test"));

        let metrics = app.send(Method::GET, "/metrics", &[], Body::empty()).await.text();
        let value = |name: &str| {
            metrics
                .lines()
                .find(|line| line.starts_with(name))
                .and_then(|line| line.split_whitespace().nth(1))
                .map(str::to_owned)
        };
        assert!(value("gantry_gc_deleted_blobs_total").is_some_and(|v| v != "0"), "{metrics}");
        assert!(value("gantry_gc_reclaimed_bytes_total").is_some_and(|v| v != "0"));
        assert!(value("gantry_gc_last_pass_duration_seconds").is_some());
        assert_eq!(value("gantry_gc_last_pass_errors").as_deref(), Some("0"));
    }

    async fn one_pass_runs_at_a_time_and_one_asked_for_meanwhile_is_refused(app) {
        // Two passes at once could both finish one condemned blob, the second deleting
        // the bytes of a blob uploaded again in between.
        let now = store::now_millis();
        assert!(app.store.jobs().lead("gc-pass", "r9/running", now, now + 60_000).await.expect("lead"));
        let options = CollectOptions { grace: Duration::ZERO, dry_run: false, replica: "test".into(), retention: Ok(registry::RetentionPlan::default()) };
        assert!(app.state.registry.collect(&options).await.expect("collect").is_none());
        let response = app.admin(Method::POST, "/api/v1/gc", &[], Body::empty()).await;
        assert_status(&response, StatusCode::CONFLICT);
        assert_eq!(response.json()["detail"]["running"], "r9/running");
        // A dry run changes nothing, so it never waits.
        let response = app.admin(Method::POST, "/api/v1/gc", &[("content-type", "application/json")], r#"{"dry_run":true}"#).await;
        assert_status(&response, StatusCode::OK);
        app.store.jobs().release_lead("gc-pass", "r9/running").await.expect("release");
        let response = app.admin(Method::POST, "/api/v1/gc", &[], Body::empty()).await;
        assert_status(&response, StatusCode::OK);
        assert!(app.state.registry.collecting().await.expect("collecting").is_none(), "a pass gives its lease up");
    }

    async fn blobs_a_killed_pass_condemned_are_finished_by_the_next_while_an_upload_of_one_waits(app) {
        let blob = Blob::new("condemned by a pass that died before deleting it");
        push_blob(&app, "acme/app", &blob).await;
        let digest = domain::Digest::parse(&blob.digest).expect("digest");
        app.store.collection().mark(store::now_millis()).await.expect("mark");
        let later = store::now_millis() + 1;
        let condemned = app.store.collection().condemn(std::slice::from_ref(&digest), later, later, "gc").await.expect("condemn");
        assert_eq!(condemned.len(), 1);
        assert!(app.state.blobs.exists(&digest).await.expect("exists"), "the dead pass deleted nothing yet");
        let response = head(&app, &format!("/v2/acme/app/blobs/{}", blob.digest)).await;
        assert_eq!(response.status, StatusCode::NOT_FOUND, "a condemned blob is not served");
        // An upload of the same bytes waits for the row to go, then stores them anew.
        let app = Arc::new(app);
        let upload = {
            let (app, bytes) = (app.clone(), blob.bytes.clone());
            tokio::spawn(async move {
                let blob = Blob::new(bytes);
                push_blob(&app, "acme/app", &blob).await;
            })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!upload.is_finished(), "the upload waits while the blob is condemned");
        let report = collect(&app, Duration::from_secs(3600)).await;
        assert_eq!(report.blobs_deleted, 1, "the next pass finished it: {report:?}");
        upload.await.expect("the upload is acknowledged");
        assert!(pulls_blob(&app, "acme/app", &blob).await, "stored anew after the deletion");
        let config = Blob::new(r#"{"os":"linux"}"#);
        push_blob(&app, "acme/app", &config).await;
        let manifest = Manifest::from_json(&image_manifest(&config, &[&blob]));
        push_manifest(&app, "acme/app", "again", &manifest).await;
        collect(&app, Duration::ZERO).await;
        assert!(pulls_blob(&app, "acme/app", &blob).await);
    }

    async fn a_refused_upload_the_session_could_not_hash_leaves_no_row_a_later_upload_would_inherit(app) {
        // A sha512 digest: the session hashes sha256 as it goes, so the commit checks.
        let real = b"nineteen bytes ok!!".to_vec();
        let digest = crate::support::sha512(&real);
        let location = crate::support::start_upload(&app, "acme/app").await;
        let chunk = b"twenty other bytes!!".to_vec();
        let response = app.admin(Method::PUT, &format!("{location}?digest={digest}"), &[("content-type", "application/octet-stream"), ("content-length", &chunk.len().to_string())], chunk).await;
        assert_error(&response, StatusCode::BAD_REQUEST, "DIGEST_INVALID");
        let response = app.admin(Method::POST, &format!("/v2/acme/app/blobs/uploads/?digest={digest}"), &[("content-type", "application/octet-stream"), ("content-length", &real.len().to_string())], real.clone()).await;
        assert_status(&response, StatusCode::CREATED);
        let response = head(&app, &format!("/v2/acme/app/blobs/{digest}")).await;
        assert_status(&response, StatusCode::OK);
        assert_eq!(response.header("content-length"), Some("19"), "the blob has its own size");
        // And a session that could not hash as it went still finishes when right.
        let other = b"another blob, sha512".to_vec();
        let other_digest = crate::support::sha512(&other);
        let location = crate::support::start_upload(&app, "acme/app").await;
        let response = app.admin(Method::PUT, &format!("{location}?digest={other_digest}"), &[("content-type", "application/octet-stream"), ("content-length", &other.len().to_string())], other.clone()).await;
        assert_status(&response, StatusCode::CREATED);
        let response = get(&app, &format!("/v2/acme/app/blobs/{other_digest}")).await;
        assert_eq!(response.body.as_ref(), other.as_slice());
    }

    async fn random_pushes_retags_deletes_and_passes_over_shared_layers_agree_with_a_reachability_model(app = mutable_tags_config()) {
        // distribution#4939 and #3899: shared layers swept non-deterministically.
        for seed in [0x9E37_79B9_7F4A_7C15u64, 0xD1B5_4A32_D192_ED03, 0x8CB9_2BA7_2F3D_8DD7] {
            let mut random = Random(seed);
            let mut model = Model::default();
            for step in 0..70 {
                random_step(&app, &mut model, &mut random, step).await;
            }
            collect_everything(&app).await;
            check_model(&app, &model, 70).await;
            assert!(
                model.uploaded.len() > model.reachable().len() && !model.manifests.is_empty(),
                "seed {seed:#x}: the sequence left both kept and collected blobs to check"
            );
            // The next seed starts from an empty registry.
            for ((repo, digest), _) in std::mem::take(&mut model.manifests) {
                let response = delete(&app, &format!("/v2/{}/manifests/{digest}", REPOSITORIES[repo])).await;
                assert_status(&response, StatusCode::ACCEPTED);
            }
            collect_everything(&app).await;
            check_model(&app, &model, 71).await;
        }
    }
}

/// A small deterministic random source (xorshift64*), so a failing sequence can be
/// replayed from its seed.
struct Random(u64);

impl Random {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
    }
}

/// What the model says the registry holds: each repository's manifests (by digest,
/// with the blobs each references) and tags.
#[derive(Default)]
struct Model {
    manifests: std::collections::BTreeMap<(usize, String), (Manifest, Vec<String>)>,
    tags: std::collections::BTreeMap<(usize, String), String>,
    uploaded: std::collections::BTreeMap<String, Blob>,
}

impl Model {
    fn reachable(&self) -> std::collections::BTreeSet<String> {
        self.manifests
            .values()
            .flat_map(|(_, blobs)| blobs.iter().cloned())
            .collect()
    }
}

const REPOSITORIES: [&str; 3] = ["shared/one", "shared/two", "shared/three"];

/// Pushes `blob` as a client does: skipped when the existence check finds it.
async fn ensure_blob(app: &TestApp, repository: &str, blob: &Blob) {
    let response = head(app, &format!("/v2/{repository}/blobs/{}", blob.digest)).await;
    if response.status != StatusCode::OK {
        push_blob(app, repository, blob).await;
    }
}

/// One random step against the registry and the model.
async fn random_step(app: &TestApp, model: &mut Model, random: &mut Random, step: usize) {
    let repo = random.below(REPOSITORIES.len());
    let name = REPOSITORIES[repo];
    let base_layers: Vec<Blob> = (0..6)
        .map(|i| Blob::new(format!("base layer {i}")))
        .collect();
    match random.below(7) {
        // Push a new image sharing base layers, tagged.
        0 | 1 => {
            let config = Blob::new(format!(r#"{{"step":{step}}}"#));
            let mut layers = vec![Blob::new(format!("own layer of step {step}"))];
            for _ in 0..1 + random.below(3) {
                layers.push(Blob::new(
                    base_layers[random.below(base_layers.len())].bytes.clone(),
                ));
            }
            layers.dedup_by(|a, b| a.digest == b.digest);
            for blob in std::iter::once(&config).chain(&layers) {
                ensure_blob(app, name, blob).await;
                model
                    .uploaded
                    .insert(blob.digest.clone(), Blob::new(blob.bytes.clone()));
            }
            let manifest =
                Manifest::from_json(&image_manifest(&config, &layers.iter().collect::<Vec<_>>()));
            let tag = format!("t{}", random.below(4));
            push_manifest(app, name, &tag, &manifest).await;
            let blobs = std::iter::once(&config)
                .chain(&layers)
                .map(|b| b.digest.clone())
                .collect();
            model.tags.insert((repo, tag), manifest.digest.clone());
            model
                .manifests
                .insert((repo, manifest.digest.clone()), (manifest, blobs));
        }
        // Retag an existing manifest of the repository.
        2 => {
            let Some(((_, digest), (manifest, _))) = model
                .manifests
                .iter()
                .filter(|((r, _), _)| *r == repo)
                .nth(random.below(4))
            else {
                return;
            };
            let tag = format!("t{}", random.below(4));
            push_manifest(app, name, &tag, manifest).await;
            model.tags.insert((repo, tag), digest.clone());
        }
        // Delete a tag (the manifest stays).
        3 => {
            let Some(((_, tag), _)) = model.tags.iter().find(|((r, _), _)| *r == repo) else {
                return;
            };
            let tag = tag.clone();
            assert_status(
                &delete(app, &format!("/v2/{name}/manifests/{tag}")).await,
                StatusCode::ACCEPTED,
            );
            model.tags.remove(&(repo, tag));
        }
        // Delete a manifest by digest, with its tags.
        4 => {
            let Some(((_, digest), _)) = model.manifests.iter().find(|((r, _), _)| *r == repo)
            else {
                return;
            };
            let digest = digest.clone();
            assert_status(
                &delete(app, &format!("/v2/{name}/manifests/{digest}")).await,
                StatusCode::ACCEPTED,
            );
            model.manifests.remove(&(repo, digest.clone()));
            model.tags.retain(|(r, _), d| !(*r == repo && *d == digest));
        }
        // Upload a blob and never reference it.
        5 => {
            let blob = Blob::new(format!("abandoned at step {step}"));
            push_blob(app, name, &blob).await;
            model.uploaded.insert(blob.digest.clone(), blob);
        }
        // Passes with no window: everything unreferenced goes now.
        _ => {
            collect_everything(app).await;
            check_model(app, model, step).await;
        }
    }
}

/// Everything the model holds pulls; every blob uploaded that no manifest references
/// is gone from every repository.
async fn check_model(app: &TestApp, model: &Model, step: usize) {
    for ((repo, _), (manifest, blobs)) in &model.manifests {
        let name = REPOSITORIES[*repo];
        pull_manifest(app, name, manifest).await;
        for digest in blobs {
            let blob = &model.uploaded[digest];
            assert!(
                pulls_blob(app, name, blob).await,
                "step {step}: {digest} of {name}@{} was deleted",
                manifest.digest
            );
        }
    }
    let reachable = model.reachable();
    for digest in model.uploaded.keys().filter(|d| !reachable.contains(*d)) {
        for name in REPOSITORIES {
            let response = head(app, &format!("/v2/{name}/blobs/{digest}")).await;
            assert_ne!(
                response.status,
                StatusCode::OK,
                "step {step}: unreferenced {digest} still in {name}"
            );
        }
    }
}
