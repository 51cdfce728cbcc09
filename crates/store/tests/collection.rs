//! Garbage collection's state machine in the store, on both databases: a blob no
//! manifest references is marked deletable, anything that needs it again clears the
//! mark in the statement that finds it, only a blob still marked past the cutoff and
//! referenced by nothing is condemned, and a condemned blob is refused to everyone.

use domain::{Digest, RepoName, Tag};
use store::{
    GcPass, InRepository, ManifestChild, NewManifest, PutManifestOutcome, Reservation, Store,
    TagPolicy,
};
use testkit::store_tests;

fn repo(name: &str) -> RepoName {
    RepoName::parse(name).expect("valid name")
}

fn digest_of(text: &str) -> Digest {
    Digest::sha256_of(text.as_bytes())
}

fn manifest(content: &str, layers: &[&Digest], subject: Option<Digest>) -> NewManifest {
    NewManifest {
        digest: digest_of(content),
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        artifact_type: None,
        subject,
        annotations: None,
        content: content.as_bytes().to_vec(),
        children: layers
            .iter()
            .map(|digest| ManifestChild::Blob {
                digest: (*digest).clone(),
                size: 5,
            })
            .collect(),
    }
}

/// Marks as of `at` (a mark is stamped after its statement, a little later), then
/// condemns whatever is marked within a second of `at`.
async fn collect_at(store: &Store, at: i64, digests: &[Digest]) -> Vec<Digest> {
    store.collection().mark(at).await.expect("mark");
    store
        .collection()
        .condemn(digests, at + 1_000, at + 1_001, "gc")
        .await
        .expect("condemn")
        .into_iter()
        .map(|blob| blob.digest)
        .collect()
}

store_tests! {
    async fn an_unreferenced_blob_is_condemned_only_after_its_mark_passes_the_cutoff(store) {
        let r = store.repositories().get_or_create(&repo("acme/app"), "tester").await.expect("repo");
        let (used, unused) = (digest_of("used"), digest_of("unused"));
        for blob in [&used, &unused] {
            assert!(store.blobs().record(r.id, blob, 5).await.expect("record"));
        }
        let m = manifest("m", &[&used], None);
        assert_eq!(store.manifests().put(&r, &m, None, "tester").await.expect("put"), PutManifestOutcome::Stored);

        let (marked, cleared) = store.collection().mark(1_000).await.expect("mark");
        assert_eq!((marked, cleared), (1, 0), "only the unreferenced blob is marked");
        let deletable = store.collection().deletable(999, None, 10).await.expect("deletable");
        assert!(deletable.is_empty(), "marked at 1000, so not deletable with a cutoff of 999");
        let both = [used.clone(), unused.clone()];
        assert!(store.collection().condemn(&both, 999, 2_000, "gc").await.expect("condemn").is_empty());
        assert_eq!(store.collection().mark(5_000).await.expect("mark again"), (0, 0), "a mark keeps its first time");

        // Stamped after the marking statement: later than 1000 by the time it took.
        let deletable = store.collection().deletable(2_000, None, 10).await.expect("deletable");
        assert_eq!(deletable.iter().map(|b| &b.digest).collect::<Vec<_>>(), [&unused]);
        assert!((1_001..2_000).contains(&deletable[0].deletable_since), "{deletable:?}");
        let condemned = store.collection().condemn(&both, 2_000, 2_000, "gc").await.expect("condemn");
        assert_eq!(condemned.iter().map(|b| &b.digest).collect::<Vec<_>>(), [&unused], "the referenced blob is never condemned");
        assert!(store.blobs().linked(r.id, &unused).await.expect("linked").is_none(), "its links went with it");
        assert!(store.blobs().linked(r.id, &used).await.expect("linked").is_some());
        assert_eq!(store.collection().condemned(None, 10).await.expect("condemned").len(), 1);
        let entries = store.audit().entries(0, 100).await.expect("audit");
        let collected: Vec<_> = entries.iter().filter(|e| e.action == "collect").collect();
        assert_eq!(collected.len(), 1, "the condemnation is audited");
        assert_eq!((collected[0].actor.as_str(), collected[0].subject.as_str()), ("gc", unused.to_string().as_str()));
        assert!(collected[0].payload.contains(r#""unlinked_from":["acme/app"]"#), "{}", collected[0].payload);

        assert_eq!(store.collection().forget(&[unused.clone(), used.clone()]).await.expect("forget"), 1, "only condemned rows are forgotten");
        assert!(store.collection().condemned(None, 10).await.expect("condemned").is_empty());
        assert_eq!(store.collection().unknown(&both).await.expect("unknown"), [unused]);
    }

    async fn everything_that_needs_a_marked_blob_again_clears_its_mark(store) {
        let a = store.repositories().get_or_create(&repo("a"), "tester").await.expect("repo");
        let b = store.repositories().get_or_create(&repo("b"), "tester").await.expect("repo");
        let blobs: Vec<Digest> = (0..5).map(|i| digest_of(&format!("blob {i}"))).collect();
        for blob in &blobs {
            store.blobs().record(a.id, blob, 5).await.expect("record");
        }
        store.collection().mark(1_000).await.expect("mark");
        // An existence check, a mount, a record (a monolithic upload's link), a
        // reservation (an upload about to place the bytes) and a manifest push.
        assert!(store.blobs().touch(&blobs[0]).await.expect("touch"));
        assert!(store.blobs().mount(a.id, b.id, &blobs[1]).await.expect("mount").is_some());
        assert!(store.blobs().record(b.id, &blobs[2], 5).await.expect("record"));
        assert!(matches!(store.blobs().reserve(&blobs[3], 5).await.expect("reserve"), Reservation::Reserved { .. }));
        let m = manifest("m", &[&blobs[4]], None);
        assert_eq!(store.manifests().put(&a, &m, None, "tester").await.expect("put"), PutManifestOutcome::Stored);

        let condemned = store.collection().condemn(&blobs, 10_000, 10_001, "gc").await.expect("condemn");
        assert!(condemned.is_empty(), "every blob was needed again after its mark: {condemned:?}");
        // Still unreferenced (but the manifest's): the next pass marks them anew, and
        // their window starts again.
        assert_eq!(store.collection().mark(20_000).await.expect("mark"), (4, 0));
        assert!(store.collection().deletable(19_999, None, 10).await.expect("deletable").is_empty());
    }

    async fn a_condemned_blob_is_refused_to_every_writer_and_reader(store) {
        let a = store.repositories().get_or_create(&repo("a"), "tester").await.expect("repo");
        let b = store.repositories().get_or_create(&repo("b"), "tester").await.expect("repo");
        let blob = digest_of("doomed");
        store.blobs().record(a.id, &blob, 5).await.expect("record");
        assert_eq!(collect_at(&store, 1_000, std::slice::from_ref(&blob)).await, std::slice::from_ref(&blob));

        assert_eq!(store.blobs().reserve(&blob, 5).await.expect("reserve"), Reservation::Condemned);
        assert!(!store.blobs().touch(&blob).await.expect("touch"));
        assert!(!store.blobs().record(a.id, &blob, 5).await.expect("record"));
        assert!(store.blobs().mount(a.id, b.id, &blob).await.expect("mount").is_none());
        assert_eq!(store.blobs().linked_in(&a.name, &blob).await.expect("linked"), InRepository::Missing);
        assert_eq!(store.blobs().size(&blob).await.expect("size"), None);
        let m = manifest("needs it", &[&blob], None);
        assert_eq!(store.manifests().put(&a, &m, None, "tester").await.expect("put"), PutManifestOutcome::MissingBlob(blob.clone()));

        // Once its object and row are gone, the blob can be uploaded anew.
        store.collection().forget(std::slice::from_ref(&blob)).await.expect("forget");
        let Reservation::Reserved { generation } = store.blobs().reserve(&blob, 5).await.expect("reserve") else {
            panic!("a forgotten blob is reserved anew");
        };
        assert!(store.blobs().link_reserved(a.id, &blob, generation).await.expect("link"));
        assert!(!store.blobs().link_reserved(a.id, &blob, generation - 1).await.expect("link"), "a stale reservation links nothing");
        assert_eq!(store.manifests().put(&a, &m, None, "tester").await.expect("put"), PutManifestOutcome::Stored);
    }

    async fn a_manifest_push_racing_a_condemnation_never_references_a_condemned_blob(store) {
        let r = store.repositories().get_or_create(&repo("race"), "tester").await.expect("repo");
        for round in 0..40 {
            let blob = digest_of(&format!("racing layer {round}"));
            store.blobs().record(r.id, &blob, 5).await.expect("record");
            store.collection().mark(1_000).await.expect("mark");
            let m = manifest(&format!("racing manifest {round}"), &[&blob], None);
            let (manifests, collection) = (store.manifests(), store.collection());
            let (pushed, condemned) = tokio::join!(
                manifests.put(&r, &m, None, "tester"),
                collection.condemn(std::slice::from_ref(&blob), 2_000, 2_000, "gc"),
            );
            let pushed = pushed.expect("put");
            let condemned = condemned.expect("condemn");
            match (&pushed, condemned.is_empty()) {
                (PutManifestOutcome::Stored, true) => {}
                (PutManifestOutcome::MissingBlob(_), false) => {}
                other => panic!("round {round}: push {:?} with the blob condemned: {}", other.0, !other.1),
            }
            // Whatever won, nothing references a condemned blob.
            let referenced = store.manifests().by_digest(r.id, &m.digest).await.expect("get").is_some();
            let gone = !store.collection().condemned(None, 100).await.expect("condemned").iter().all(|b| b.digest != blob);
            assert!(!(referenced && gone), "round {round}: a stored manifest references a condemned blob");
        }
    }

    async fn an_object_without_a_row_is_tombstoned_once_and_a_row_refuses_it(store) {
        let r = store.repositories().get_or_create(&repo("acme/app"), "tester").await.expect("repo");
        let (known, orphan) = (digest_of("known"), digest_of("orphan"));
        store.blobs().record(r.id, &known, 5).await.expect("record");
        assert!(!store.collection().tombstone(&known, 5, 1_000, "gc").await.expect("tombstone"), "a blob with a row is not an orphan");
        assert!(store.blobs().linked(r.id, &known).await.expect("linked").is_some(), "and is untouched");
        assert!(store.collection().tombstone(&orphan, 7, 1_000, "gc").await.expect("tombstone"));
        assert!(!store.collection().tombstone(&orphan, 7, 1_000, "gc").await.expect("tombstone"), "once");
        assert_eq!(store.blobs().reserve(&orphan, 7).await.expect("reserve"), Reservation::Condemned, "an upload waits for the deletion");
        assert_eq!(store.collection().forget(std::slice::from_ref(&orphan)).await.expect("forget"), 1);
        assert!(matches!(store.blobs().reserve(&orphan, 7).await.expect("reserve"), Reservation::Reserved { .. }));
    }

    async fn a_referrer_is_collected_only_while_its_subject_is_missing_and_nothing_names_it(store) {
        let r = store.repositories().get_or_create(&repo("acme/app"), "tester").await.expect("repo");
        let layer = digest_of("layer");
        store.blobs().record(r.id, &layer, 5).await.expect("record");
        let subject = manifest("subject", &[&layer], None);
        let orphan = manifest("orphan referrer", &[&layer], Some(digest_of("never pushed")));
        let tagged = manifest("tagged referrer", &[&layer], Some(digest_of("never pushed either")));
        let live = manifest("live referrer", &[&layer], Some(subject.digest.clone()));
        for (m, tag) in [(&subject, None), (&orphan, None), (&tagged, Some("keep")), (&live, None)] {
            let tag = tag.map(|t| (Tag::parse(t).expect("tag"), TagPolicy::Mutable));
            let outcome = store.manifests().put(&r, m, tag.as_ref().map(|(t, p)| (t, *p)), "tester").await.expect("put");
            assert_eq!(outcome, PutManifestOutcome::Stored);
        }
        let now = store::now_millis();
        assert!(store.collection().orphan_referrers(now - 60_000, None, 10).await.expect("orphans").is_empty(), "none is older than the cutoff");
        let found = store.collection().orphan_referrers(now + 1_000, None, 10).await.expect("orphans");
        assert_eq!(found.iter().map(|o| &o.digest).collect::<Vec<_>>(), [&orphan.digest], "tagged and live referrers are kept");
        assert!(!store.manifests().delete_orphan_referrer(&r, &live.digest, now + 1_000, "gc").await.expect("delete"));
        assert!(!store.manifests().delete_orphan_referrer(&r, &orphan.digest, now - 60_000, "gc").await.expect("delete"), "the cutoff is checked again");
        assert!(store.manifests().delete_orphan_referrer(&r, &orphan.digest, now + 1_000, "gc").await.expect("delete"));
        assert!(store.manifests().by_digest(r.id, &orphan.digest).await.expect("get").is_none());
        assert!(store.manifests().by_digest(r.id, &live.digest).await.expect("get").is_some());
    }

    async fn passes_are_recorded_and_totalled_and_quiet_ones_pruned(store) {
        let busy = GcPass { replica: "r1".into(), started_at: 1, finished_at: 251, blobs_deleted: 3, bytes_reclaimed: 300, manifests_deleted: 1, orphans_deleted: 2, ..GcPass::default() };
        store.collection().record_pass(&busy).await.expect("record");
        for i in 0..150 {
            let quiet = GcPass { replica: "r2".into(), started_at: 1_000 + i, finished_at: 1_001 + i, ..GcPass::default() };
            store.collection().record_pass(&quiet).await.expect("record");
        }
        let failed = GcPass { replica: "r1".into(), started_at: 5_000, finished_at: 5_010, errors: 1, last_error: Some("store refused".into()), ..GcPass::default() };
        store.collection().record_pass(&failed).await.expect("record");
        let totals = store.collection().totals().await.expect("totals");
        assert_eq!((totals.blobs_deleted, totals.bytes_reclaimed, totals.manifests_deleted, totals.orphans_deleted, totals.errors), (3, 300, 1, 2, 1));
        let passes = store.collection().passes(1_000).await.expect("passes");
        assert_eq!(passes[0], failed, "newest first");
        assert!(passes.contains(&busy), "a pass that deleted something is kept");
        assert!(passes.len() <= 102, "quiet passes beyond the most recent 100 are pruned: {}", passes.len());
    }
}
