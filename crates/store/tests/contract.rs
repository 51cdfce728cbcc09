//! The store contract: every behaviour the rest of Gantry relies on, run against both
//! SQLite and PostgreSQL by `store_tests!`.

use domain::pipeline::PipelineName;
use domain::{Digest, RepoName, ResourceKind, Tag};
use store::{
    Append, ApplicationColumns, AppliedChanges, AppliedResource, ApplyConflict, ApplyOutcome,
    DeleteManifestOutcome, DeleteTagOutcome, FinishOutcome, ManifestChild, NewManifest, NewToken,
    PutManifestOutcome, Reservation, ResourceChange, ResourceColumns, StoreError, TagPolicy,
    UnlinkOutcome, UploadPart,
};
use testkit::store_tests;

fn repo(name: &str) -> RepoName {
    RepoName::parse(name).expect("valid name")
}

fn tag(name: &str) -> Tag {
    Tag::parse(name).expect("valid tag")
}

fn digest_of(text: &str) -> Digest {
    Digest::sha256_of(text.as_bytes())
}

fn manifest(content: &str, children: Vec<ManifestChild>) -> NewManifest {
    NewManifest {
        digest: digest_of(content),
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        artifact_type: Some("application/vnd.example+json".into()),
        subject: None,
        annotations: None,
        content: content.as_bytes().to_vec(),
        children,
    }
}

fn pipeline(name: &str, canonical: &str, expected_revision: Option<i64>) -> ResourceChange {
    ResourceChange {
        columns: ResourceColumns::Pipeline,
        name: name.into(),
        canonical: canonical.into(),
        expected_revision,
    }
}

fn application(
    name: &str,
    repository: &str,
    canonical: &str,
    expected_revision: Option<i64>,
) -> ResourceChange {
    ResourceChange {
        columns: ResourceColumns::Application(ApplicationColumns {
            repository: repo(repository),
            pipeline: PipelineName::parse("standard").expect("valid pipeline name"),
            app_type: "container".into(),
        }),
        name: name.into(),
        canonical: canonical.into(),
        expected_revision,
    }
}

fn trust_policy(name: &str, canonical: &str, expected_revision: Option<i64>) -> ResourceChange {
    ResourceChange {
        columns: ResourceColumns::TrustPolicy,
        name: name.into(),
        canonical: canonical.into(),
        expected_revision,
    }
}

fn applied(outcome: ApplyOutcome) -> AppliedChanges {
    match outcome {
        ApplyOutcome::Applied(changes) => changes,
        ApplyOutcome::Conflict(conflict) => panic!("unexpected conflict: {conflict:?}"),
    }
}

/// `(name, revision)` of each resource, in the order given.
fn revisions(resources: &[AppliedResource]) -> Vec<(&str, i64)> {
    resources
        .iter()
        .map(|r| (r.name.as_str(), r.revision))
        .collect()
}

async fn audit_length(store: &store::Store) -> usize {
    store.audit().entries(0, 1000).await.expect("entries").len()
}

store_tests! {
    async fn repositories_are_created_once_and_listed_in_byte_order(store) {
        let first = store.repositories().get_or_create(&repo("acme/web"), "tester").await.expect("create");
        let again = store.repositories().get_or_create(&repo("acme/web"), "tester").await.expect("create again");
        assert_eq!(first, again);
        for name in ["b", "a/b", "a-b", "a0"] {
            store.repositories().get_or_create(&repo(name), "tester").await.expect("create");
        }
        let all: Vec<String> = store.repositories().list(None, 100).await.expect("list").iter().map(|n| n.to_string()).collect();
        assert_eq!(all, ["a-b", "a/b", "a0", "acme/web", "b"]);
        let page: Vec<String> = store.repositories().list(Some("a0"), 2).await.expect("list").iter().map(|n| n.to_string()).collect();
        assert_eq!(page, ["acme/web", "b"]);
        assert!(store.repositories().get(&repo("missing")).await.expect("get").is_none());
    }

    async fn blobs_are_recorded_once_and_linked_per_repository(store) {
        let a = store.repositories().get_or_create(&repo("a"), "tester").await.expect("repo");
        let b = store.repositories().get_or_create(&repo("b"), "tester").await.expect("repo");
        let blob = digest_of("layer");
        store.blobs().record(a.id, &blob, 5).await.expect("record");
        store.blobs().record(a.id, &blob, 5).await.expect("record is idempotent");
        assert_eq!(store.blobs().linked(a.id, &blob).await.expect("linked").map(|l| l.size), Some(5));
        assert!(store.blobs().linked(b.id, &blob).await.expect("linked").is_none(), "not linked to b yet");
        assert_eq!(store.blobs().size(&blob).await.expect("size"), Some(5));
        assert!(store.blobs().mount(b.id, a.id, &digest_of("other")).await.expect("mount").is_none());
        assert!(store.blobs().mount(a.id, b.id, &blob).await.expect("mount").is_some());
        assert!(store.blobs().linked(b.id, &blob).await.expect("linked").is_some(), "mounted into b");
        assert_eq!(store.blobs().unlink(&b, &blob, "tester").await.expect("unlink"), UnlinkOutcome::Unlinked);
        assert_eq!(store.blobs().unlink(&b, &blob, "tester").await.expect("unlink"), UnlinkOutcome::NotLinked);
        assert!(store.blobs().linked(a.id, &blob).await.expect("linked").is_some(), "a keeps its link");
    }

    async fn a_manifest_with_a_missing_blob_stores_nothing(store) {
        let r = store.repositories().get_or_create(&repo("acme/app"), "tester").await.expect("repo");
        let layer = digest_of("layer");
        let m = manifest("m1", vec![ManifestChild::Blob { digest: layer.clone(), size: 5 }]);
        let outcome = store.manifests().put(&r, &m, Some((&tag("v1"), TagPolicy::Immutable)), "tester").await.expect("put");
        assert_eq!(outcome, PutManifestOutcome::MissingBlob(layer.clone()));
        assert!(store.manifests().by_digest(r.id, &m.digest).await.expect("get").is_none());
        assert!(store.manifests().by_tag(r.id, &tag("v1")).await.expect("get").is_none());
        store.blobs().record(r.id, &layer, 5).await.expect("record");
        let outcome = store.manifests().put(&r, &m, Some((&tag("v1"), TagPolicy::Immutable)), "tester").await.expect("put");
        assert_eq!(outcome, PutManifestOutcome::Stored);
        let got = store.manifests().by_tag(r.id, &tag("v1")).await.expect("get").expect("tagged");
        assert_eq!(got.digest, m.digest);
        assert_eq!(got.content, b"m1");
    }

    async fn a_descriptor_stating_another_size_than_the_stored_content_stores_nothing(store) {
        let r = store.repositories().get_or_create(&repo("acme/app"), "tester").await.expect("repo");
        let layer = digest_of("layer");
        store.blobs().record(r.id, &layer, 5).await.expect("record");
        let wrong = ManifestChild::Blob { digest: layer.clone(), size: 6 };
        let m = manifest("m1", vec![wrong.clone()]);
        let outcome = store.manifests().put(&r, &m, Some((&tag("v1"), TagPolicy::Immutable)), "tester").await.expect("put");
        assert_eq!(outcome, PutManifestOutcome::SizeMismatch { child: wrong, stored: 5 });
        assert!(store.manifests().by_digest(r.id, &m.digest).await.expect("get").is_none());
        assert!(store.manifests().by_tag(r.id, &tag("v1")).await.expect("get").is_none());
        // An index child is held to the stored manifest's size the same way.
        let child = manifest("child", vec![]);
        store.manifests().put(&r, &child, None, "tester").await.expect("put");
        let wrong = ManifestChild::Manifest { digest: child.digest.clone(), size: 4 };
        let index = manifest("index", vec![wrong.clone()]);
        let outcome = store.manifests().put(&r, &index, Some((&tag("i"), TagPolicy::Immutable)), "tester").await.expect("put");
        assert_eq!(outcome, PutManifestOutcome::SizeMismatch { child: wrong, stored: 5 });
        assert!(store.manifests().by_tag(r.id, &tag("i")).await.expect("get").is_none());
        let right = manifest("index", vec![ManifestChild::Manifest { digest: child.digest.clone(), size: 5 }]);
        assert_eq!(store.manifests().put(&r, &right, Some((&tag("i"), TagPolicy::Immutable)), "tester").await.expect("put"), PutManifestOutcome::Stored);
    }

    async fn immutable_tags_accept_the_same_bytes_and_refuse_others(store) {
        let r = store.repositories().get_or_create(&repo("acme/app"), "tester").await.expect("repo");
        let first = manifest("first", vec![]);
        let second = manifest("second", vec![]);
        let v1 = tag("v1");
        assert_eq!(store.manifests().put(&r, &first, Some((&v1, TagPolicy::Immutable)), "tester").await.expect("put"), PutManifestOutcome::Stored);
        assert_eq!(store.manifests().put(&r, &first, Some((&v1, TagPolicy::Immutable)), "tester").await.expect("put"), PutManifestOutcome::Stored);
        assert_eq!(
            store.manifests().put(&r, &second, Some((&v1, TagPolicy::Immutable)), "tester").await.expect("put"),
            PutManifestOutcome::TagImmutable { existing: first.digest.clone() }
        );
        assert!(store.manifests().by_digest(r.id, &second.digest).await.expect("get").is_none(), "refused push stored nothing");
        assert_eq!(store.manifests().put(&r, &second, Some((&v1, TagPolicy::Mutable)), "tester").await.expect("put"), PutManifestOutcome::Stored);
        assert_eq!(store.manifests().by_tag(r.id, &v1).await.expect("get").expect("tag").digest, second.digest);
    }

    async fn tags_page_in_case_insensitive_lexical_order(store) {
        let r = store.repositories().get_or_create(&repo("acme/app"), "tester").await.expect("repo");
        let m = manifest("m", vec![]);
        for t in ["v2", "V1", "v10", "_x", "a.b", "a-b", "v1"] {
            store.manifests().put(&r, &m, Some((&tag(t), TagPolicy::Immutable)), "tester").await.expect("put");
        }
        let all: Vec<String> = store.manifests().tags(r.id, None, 100).await.expect("tags").iter().map(|t| t.to_string()).collect();
        assert_eq!(all, ["_x", "a-b", "a.b", "V1", "v1", "v10", "v2"]);
        let page: Vec<String> = store.manifests().tags(r.id, Some("V1"), 2).await.expect("tags").iter().map(|t| t.to_string()).collect();
        assert_eq!(page, ["v1", "v10"]);
    }

    async fn referrers_are_found_by_subject_and_filtered_by_artifact_type(store) {
        let r = store.repositories().get_or_create(&repo("acme/app"), "tester").await.expect("repo");
        let subject = manifest("subject", vec![]);
        store.manifests().put(&r, &subject, None, "tester").await.expect("put");
        let mut sbom = manifest("sbom", vec![]);
        sbom.subject = Some(subject.digest.clone());
        sbom.artifact_type = Some("application/spdx+json".into());
        sbom.annotations = Some(r#"{"k":"v"}"#.into());
        let mut signature = manifest("sig", vec![]);
        signature.subject = Some(subject.digest.clone());
        signature.artifact_type = Some("application/vnd.dev.sigstore".into());
        store.manifests().put(&r, &sbom, None, "tester").await.expect("put");
        store.manifests().put(&r, &signature, None, "tester").await.expect("put");
        let all = store.manifests().referrers(r.id, &subject.digest, None).await.expect("referrers");
        assert_eq!(all.len(), 2);
        let sboms = store.manifests().referrers(r.id, &subject.digest, Some("application/spdx+json")).await.expect("referrers");
        assert_eq!(sboms.len(), 1);
        assert_eq!(sboms[0].digest, sbom.digest);
        assert_eq!(sboms[0].annotations.as_deref(), Some(r#"{"k":"v"}"#));
        assert!(store.manifests().referrers(r.id, &sbom.digest, None).await.expect("referrers").is_empty());
    }

    async fn deleting_manifests_respects_indexes_and_removes_tags(store) {
        let r = store.repositories().get_or_create(&repo("acme/app"), "tester").await.expect("repo");
        let child = manifest("child", vec![]);
        store.manifests().put(&r, &child, Some((&tag("c"), TagPolicy::Immutable)), "tester").await.expect("put");
        let index = manifest("index", vec![ManifestChild::Manifest { digest: child.digest.clone(), size: 5 }]);
        assert_eq!(store.manifests().put(&r, &index, Some((&tag("i"), TagPolicy::Immutable)), "tester").await.expect("put"), PutManifestOutcome::Stored);
        assert_eq!(
            store.manifests().delete(&r, &child.digest, "tester", |_| false).await.expect("delete"),
            DeleteManifestOutcome::StillReferenced { by: index.digest.clone() }
        );
        assert_eq!(
            store.manifests().delete(&r, &index.digest, "tester", |tag| tag == "i").await.expect("delete"),
            DeleteManifestOutcome::ProtectedTag { tag: "i".into() },
            "a protected tag keeps its manifest"
        );
        assert_eq!(store.manifests().delete(&r, &index.digest, "tester", |_| false).await.expect("delete"), DeleteManifestOutcome::Deleted);
        assert!(store.manifests().by_tag(r.id, &tag("i")).await.expect("get").is_none(), "tag went with the manifest");
        assert_eq!(store.manifests().delete(&r, &child.digest, "tester", |_| false).await.expect("delete"), DeleteManifestOutcome::Deleted);
        assert_eq!(store.manifests().delete(&r, &child.digest, "tester", |_| false).await.expect("delete"), DeleteManifestOutcome::NotFound);
        let missing = manifest("missing-child", vec![ManifestChild::Manifest { digest: digest_of("nope"), size: 1 }]);
        assert_eq!(store.manifests().put(&r, &missing, None, "tester").await.expect("put"), PutManifestOutcome::MissingManifest(digest_of("nope")));
    }

    async fn a_blob_in_use_by_a_manifest_cannot_be_unlinked(store) {
        let r = store.repositories().get_or_create(&repo("acme/app"), "tester").await.expect("repo");
        let layer = digest_of("layer");
        store.blobs().record(r.id, &layer, 5).await.expect("record");
        let m = manifest("m", vec![ManifestChild::Blob { digest: layer.clone(), size: 5 }]);
        store.manifests().put(&r, &m, None, "tester").await.expect("put");
        assert_eq!(store.blobs().unlink(&r, &layer, "tester").await.expect("unlink"), UnlinkOutcome::StillReferenced { manifest: m.digest.clone() });
        assert_eq!(store.manifests().delete(&r, &m.digest, "tester", |_| false).await.expect("delete"), DeleteManifestOutcome::Deleted);
        assert_eq!(store.blobs().unlink(&r, &layer, "tester").await.expect("unlink"), UnlinkOutcome::Unlinked);
    }

    async fn tag_deletion_leaves_the_manifest(store) {
        let r = store.repositories().get_or_create(&repo("acme/app"), "tester").await.expect("repo");
        let m = manifest("m", vec![]);
        store.manifests().put(&r, &m, Some((&tag("v1"), TagPolicy::Immutable)), "tester").await.expect("put");
        assert_eq!(store.manifests().delete_tag(&r, &tag("v1"), "tester").await.expect("delete"), DeleteTagOutcome::Deleted);
        assert_eq!(store.manifests().delete_tag(&r, &tag("v1"), "tester").await.expect("delete"), DeleteTagOutcome::NotFound);
        assert!(store.manifests().by_digest(r.id, &m.digest).await.expect("get").is_some());
    }

    async fn upload_sessions_append_in_order_and_refuse_a_stale_offset(store) {
        let r = store.repositories().get_or_create(&repo("acme/app"), "tester").await.expect("repo");
        store.uploads().create("u1", r.id).await.expect("create");
        let later = store::now_millis() + 60_000;
        let piece = |start: i64, size: i64, key: &str| UploadPart { start, size, key: key.to_owned(), number: None };
        fn chunk<'a>(writer: &'a str, expected_size: i64, added_size: i64, added: &'a [UploadPart], hash_state: Option<&'a [u8]>) -> Append<'a> {
            Append { id: "u1", writer, expected_size, added_size, removed: &[], added, hash_state, release: true }
        }
        assert!(store.uploads().claim("u1", 0, "w1", later).await.expect("claim"));
        assert!(!store.uploads().claim("u1", 0, "w2", later).await.expect("claim"), "one writer at a time");
        store.uploads().append(chunk("w1", 0, 10, &[piece(0, 10, "k1")], Some(&b"state-1"[..]))).await.expect("append");
        let unclaimed = store.uploads().append(chunk("w1", 10, 5, &[piece(10, 5, "k2")], None)).await;
        assert!(matches!(unclaimed, Err(StoreError::Conflict(_))), "a released claim records nothing: {unclaimed:?}");
        assert!(!store.uploads().claim("u1", 0, "w2", later).await.expect("claim"), "a stale size claims nothing");
        assert!(store.uploads().claim("u1", 10, "w2", later).await.expect("claim"));
        assert!(store.uploads().renew("u1", "w2", later + 1).await.expect("renew"));
        assert!(!store.uploads().renew("u1", "w1", later + 1).await.expect("renew"), "only the holder renews");
        store.uploads().append(chunk("w2", 10, 5, &[piece(10, 5, "k2")], Some(&b"state-2"[..]))).await.expect("append");
        let stale = store.uploads().append(chunk("w2", 10, 5, &[piece(10, 5, "k3")], None)).await;
        assert!(matches!(stale, Err(StoreError::Conflict(_))), "{stale:?}");
        let upload = store.uploads().get_in(&r.name, "u1").await.expect("get").expect("exists");
        assert_eq!(upload.size, 15);
        assert_eq!(upload.hash_state.as_deref(), Some(&b"state-2"[..]));
        assert_eq!(upload.parts.iter().map(|p| (p.start, p.size, p.key.as_str())).collect::<Vec<_>>(), [(0, 10, "k1"), (10, 5, "k2")]);
        assert_eq!(upload.multipart, None);

        // A lapsed claim is taken over; its holder then records nothing.
        assert!(store.uploads().claim("u1", 15, "w3", store::now_millis() - 1).await.expect("claim"));
        assert!(store.uploads().claim("u1", 15, "w4", later).await.expect("claim"), "a lapsed claim is taken");
        assert!(!store.uploads().begin_multipart("u1", "w3", "mp-3").await.expect("begin"), "the old holder records nothing");
        assert!(store.uploads().begin_multipart("u1", "w4", "mp-4").await.expect("begin"));
        assert!(!store.uploads().begin_multipart("u1", "w4", "mp-5").await.expect("begin"), "one multipart upload per session");
        // Two pieces fold into a whole part; the claim is kept to finish the session.
        let whole = UploadPart { start: 0, size: 20, key: "etag-1".to_owned(), number: Some(1) };
        store.uploads().append(Append { id: "u1", writer: "w4", expected_size: 15, added_size: 5, removed: &[0, 10], added: std::slice::from_ref(&whole), hash_state: Some(b"state-3"), release: false }).await.expect("fold");
        let upload = store.uploads().get_in(&r.name, "u1").await.expect("get").expect("exists");
        assert_eq!((upload.size, upload.multipart.as_deref()), (20, Some("mp-4")));
        assert_eq!(upload.parts, [whole]);
        assert!(!store.uploads().claim("u1", 20, "w5", later).await.expect("claim"), "the claim was kept");

        let other = store.repositories().get_or_create(&repo("other"), "tester").await.expect("repo");
        assert!(store.uploads().get_in(&other.name, "u1").await.expect("get").is_none(), "a session belongs to its repository");
        assert!(store.uploads().exists("u1").await.expect("exists"));
        assert_eq!(store.uploads().count().await.expect("count"), 1);
        assert_eq!(store.uploads().idle_since(store::now_millis() + 1000, 10).await.expect("idle"), ["u1"]);
        assert!(store.uploads().idle_since(0, 10).await.expect("idle").is_empty());
        let blob = digest_of("twenty bytes.......");
        let Reservation::Reserved { generation } = store.blobs().reserve(&blob, 20).await.expect("reserve") else {
            panic!("a new blob is reserved");
        };
        assert_eq!(store.uploads().finish("u1", "w4", 15, &blob, generation).await.expect("finish"), FinishOutcome::NotHeld, "a stale size does not finish");
        assert_eq!(store.uploads().finish("u1", "w1", 20, &blob, generation).await.expect("finish"), FinishOutcome::NotHeld, "only the holder finishes");
        assert_eq!(store.uploads().finish("u1", "w4", 20, &blob, generation + 1).await.expect("finish"), FinishOutcome::Collected, "another generation of the row does not finish");
        assert!(store.blobs().linked(r.id, &blob).await.expect("linked").is_none());
        assert_eq!(store.uploads().finish("u1", "w4", 20, &blob, generation).await.expect("finish"), FinishOutcome::Finished);
        assert_eq!(store.blobs().linked(r.id, &blob).await.expect("linked").map(|b| b.size), Some(20));
        assert_eq!(store.uploads().finish("u1", "w4", 20, &blob, generation).await.expect("finish"), FinishOutcome::NotHeld, "only one request finishes a session");
        store.uploads().create("u2", r.id).await.expect("create");
        assert!(store.uploads().claim("u2", 0, "w", later).await.expect("claim"));
        assert!(store.uploads().begin_multipart("u2", "w", "mp-u2").await.expect("begin"));
        assert_eq!(store.uploads().delete("u2").await.expect("delete"), Some(Some("mp-u2".to_owned())), "deleting a session names its multipart upload");
        assert_eq!(store.uploads().delete("u2").await.expect("delete"), None);
        store.uploads().create("u3", r.id).await.expect("create");
        assert_eq!(store.uploads().delete_if_idle("u3", 0).await.expect("delete"), None, "a fresh session is not idle");
        assert_eq!(store.uploads().delete_if_idle("u3", store::now_millis() + 1000).await.expect("delete"), Some(None));
        assert!(store.uploads().get_in(&r.name, "u1").await.expect("get").is_none());
    }

    async fn the_admin_is_bootstrapped_exactly_once(store) {
        let token = |id: &'static str, hash: &'static str| NewToken { id, user_name: "admin", description: "boot", token_hash: hash, expires_at: None, scope: None };
        assert!(store.users().bootstrap_admin(token("t1", "h1")).await.expect("bootstrap"));
        assert!(!store.users().bootstrap_admin(token("t2", "h2")).await.expect("bootstrap"));
        let owner = store.users().token_owner("h1").await.expect("owner").expect("known");
        assert_eq!((owner.user_name.as_str(), owner.admin), ("admin", true));
        assert!(store.users().token_owner("h2").await.expect("owner").is_none());
        store.users().create("dev", false).await.expect("user");
        store.users().create_token(NewToken { id: "t3", user_name: "dev", description: "d", token_hash: "h3", expires_at: Some(5), scope: None }).await.expect("token");
        let dev = store.users().token_owner("h3").await.expect("owner").expect("known");
        assert_eq!((dev.admin, dev.expires_at), (false, Some(5)));
    }

    async fn pushes_and_deletions_are_audited_with_their_actor_and_no_ops_are_not(store) {
        let r = store.repositories().get_or_create(&repo("acme/app"), "tester").await.expect("repo");
        let first = manifest("first", vec![]);
        let second = manifest("second", vec![]);
        store.manifests().put(&r, &first, Some((&tag("latest"), TagPolicy::Mutable)), "ann").await.expect("put");
        store.manifests().put(&r, &first, Some((&tag("latest"), TagPolicy::Mutable)), "ann").await.expect("same again");
        store.manifests().put(&r, &second, Some((&tag("latest"), TagPolicy::Mutable)), "bob").await.expect("move");
        let refused = store.manifests().put(&r, &first, Some((&tag("v1"), TagPolicy::Immutable)), "eve").await.expect("put");
        assert_eq!(refused, PutManifestOutcome::Stored);
        let refused = store.manifests().put(&r, &second, Some((&tag("v1"), TagPolicy::Immutable)), "eve").await.expect("put");
        assert!(matches!(refused, PutManifestOutcome::TagImmutable { .. }));
        assert_eq!(store.manifests().delete_tag(&r, &tag("v1"), "carl").await.expect("delete tag"), DeleteTagOutcome::Deleted);
        let entries = store.audit().entries(0, 100).await.expect("entries");
        let summary: Vec<(&str, &str)> = entries.iter().map(|e| (e.actor.as_str(), e.action.as_str())).collect();
        assert_eq!(summary, [("tester", "create-repository"), ("ann", "push"), ("bob", "push"), ("eve", "push"), ("carl", "delete-tag")], "no entry for the no-op or the refused push");
        let moved: serde_json::Value = serde_json::from_str(&entries[2].payload).expect("json");
        assert_eq!(moved["previous_digest"], first.digest.to_string());
        assert_eq!(moved["digest"], second.digest.to_string());
        assert!(matches!(store.audit().verify().await.expect("verify"), store::ChainVerdict::Intact { entries: 5, .. }));
        // Asking for a repository that exists creates nothing and records nothing.
        store.repositories().get_or_create(&repo("acme/app"), "again").await.expect("repo");
        assert_eq!(store.audit().entries(0, 100).await.expect("entries").len(), 5);
    }

    async fn applying_creates_resources_at_revision_one_and_their_repositories(store) {
        store.repositories().get_or_create(&repo("acme/api"), "tester").await.expect("existing repository");
        let changes = [
            application("web-app", "acme/web-app", "web v1\n", None),
            pipeline("standard", "standard v1\n", None),
            application("api", "acme/api", "api v1\n", None),
        ];
        let outcome = applied(store.resources().apply(&changes, "ann").await.expect("apply"));
        assert_eq!(revisions(&outcome.created), [("standard", 1), ("api", 1), ("web-app", 1)], "pipelines first, then by name");
        assert!(outcome.updated.is_empty() && outcome.unchanged.is_empty());
        assert_eq!(outcome.created_repositories, [repo("acme/web-app")], "acme/api existed already");
        assert!(store.repositories().get(&repo("acme/web-app")).await.expect("get").is_some());
        let web = store.resources().get(ResourceKind::Application, "web-app").await.expect("get").expect("stored");
        assert_eq!((web.canonical.as_str(), web.revision), ("web v1\n", 1));
        assert!(store.resources().get(ResourceKind::Pipeline, "web-app").await.expect("get").is_none(), "kinds are apart");
        let entries = store.audit().entries(0, 100).await.expect("entries");
        let summary: Vec<(&str, &str, &str)> = entries.iter().map(|e| (e.actor.as_str(), e.action.as_str(), e.subject.as_str())).collect();
        assert_eq!(summary, [("tester", "create-repository", "acme/api"), ("ann", "apply", "Pipeline/standard"), ("ann", "apply", "Application/api"), ("ann", "apply", "Application/web-app")]);
        let payload: serde_json::Value = serde_json::from_str(&entries[3].payload).expect("json");
        assert_eq!(payload, serde_json::json!({ "kind": "Application", "name": "web-app", "revision": 1, "previous_revision": null }));
    }

    async fn applying_the_same_text_again_changes_nothing_and_adds_no_audit_entry(store) {
        let first = [pipeline("standard", "standard v1\n", None), application("web-app", "acme/web-app", "web v1\n", None)];
        applied(store.resources().apply(&first, "ann").await.expect("apply"));
        let before = store.resources().get(ResourceKind::Pipeline, "standard").await.expect("get").expect("stored");
        let entries_before = audit_length(&store).await;
        let again = [pipeline("standard", "standard v1\n", Some(1)), application("web-app", "acme/web-app", "web v1\n", Some(1))];
        let outcome = applied(store.resources().apply(&again, "bob").await.expect("apply"));
        assert_eq!(outcome, AppliedChanges {
            unchanged: vec![
                AppliedResource { kind: ResourceKind::Pipeline, name: "standard".into(), revision: 1 },
                AppliedResource { kind: ResourceKind::Application, name: "web-app".into(), revision: 1 },
            ],
            ..AppliedChanges::default()
        });
        assert_eq!(store.resources().get(ResourceKind::Pipeline, "standard").await.expect("get"), Some(before), "not even the timestamp moved");
        assert_eq!(audit_length(&store).await, entries_before);
    }

    async fn a_changed_resource_gets_revision_two_and_exactly_one_audit_entry(store) {
        let first = [pipeline("standard", "standard v1\n", None), application("web-app", "acme/web-app", "web v1\n", None)];
        applied(store.resources().apply(&first, "ann").await.expect("apply"));
        let entries_before = audit_length(&store).await;
        let second = [pipeline("standard", "standard v2\n", Some(1)), application("web-app", "acme/web-app", "web v1\n", Some(1))];
        let outcome = applied(store.resources().apply(&second, "bob").await.expect("apply"));
        assert_eq!(revisions(&outcome.updated), [("standard", 2)]);
        assert_eq!(revisions(&outcome.unchanged), [("web-app", 1)]);
        assert!(outcome.created.is_empty() && outcome.created_repositories.is_empty());
        let stored = store.resources().get(ResourceKind::Pipeline, "standard").await.expect("get").expect("stored");
        assert_eq!((stored.canonical.as_str(), stored.revision), ("standard v2\n", 2));
        let entries = store.audit().entries(0, 100).await.expect("entries");
        assert_eq!(entries.len(), entries_before + 1);
        let last = entries.last().expect("an entry");
        assert_eq!((last.actor.as_str(), last.action.as_str(), last.subject.as_str()), ("bob", "apply", "Pipeline/standard"));
        let payload: serde_json::Value = serde_json::from_str(&last.payload).expect("json");
        assert_eq!(payload, serde_json::json!({ "kind": "Pipeline", "name": "standard", "revision": 2, "previous_revision": 1 }));
        assert!(matches!(store.audit().verify().await.expect("verify"), store::ChainVerdict::Intact { entries: 3, .. }));
    }

    async fn a_stale_expected_revision_refuses_the_whole_apply_and_changes_nothing(store) {
        let first = [pipeline("standard", "standard v1\n", None), application("web-app", "acme/web-app", "web v1\n", None)];
        applied(store.resources().apply(&first, "ann").await.expect("apply"));
        let stored_before = store.resources().list(ResourceKind::Pipeline, None, 100).await.expect("list");
        let entries_before = store.audit().entries(0, 100).await.expect("entries");
        // Every change but the last (in apply order) is valid and gets written before the
        // stale one is found: all of it must be rolled back.
        let stale = [
            pipeline("standard", "standard v2\n", Some(1)),
            pipeline("extra", "extra v1\n", None),
            application("api", "acme/api", "api v1\n", None),
            application("web-app", "acme/web-app", "web v2\n", None),
        ];
        let outcome = store.resources().apply(&stale, "eve").await.expect("apply");
        assert_eq!(outcome, ApplyOutcome::Conflict(ApplyConflict {
            kind: ResourceKind::Application,
            name: "web-app".into(),
            expected_revision: None,
            stored_revision: Some(1),
        }));
        assert_eq!(store.resources().list(ResourceKind::Pipeline, None, 100).await.expect("list"), stored_before);
        let web = store.resources().get(ResourceKind::Application, "web-app").await.expect("get").expect("stored");
        assert_eq!((web.canonical.as_str(), web.revision), ("web v1\n", 1));
        assert!(store.resources().get(ResourceKind::Application, "api").await.expect("get").is_none());
        assert!(store.repositories().get(&repo("acme/api")).await.expect("get").is_none(), "no repository either");
        assert_eq!(store.audit().entries(0, 100).await.expect("entries"), entries_before);
        let missing = store.resources().apply(&[pipeline("gone", "gone\n", Some(3))], "eve").await.expect("apply");
        assert_eq!(missing, ApplyOutcome::Conflict(ApplyConflict {
            kind: ResourceKind::Pipeline,
            name: "gone".into(),
            expected_revision: Some(3),
            stored_revision: None,
        }), "a resource expected to exist must exist");
    }

    async fn two_concurrent_applies_of_conflicting_changes_to_one_resource_give_one_success_and_one_conflict(store) {
        applied(store.resources().apply(&[pipeline("standard", "round 0\n", None)], "ann").await.expect("apply"));
        // Several rounds, so that on PostgreSQL both the check before writing and the
        // conditional write itself get a chance to be the one that catches the race.
        for round in 1..=5_i64 {
            let start = std::sync::Arc::new(tokio::sync::Barrier::new(2));
            let spawn_apply = |actor: &'static str| {
                let (store, start) = (store.clone(), start.clone());
                let change = pipeline("standard", &format!("round {round} by {actor}\n"), Some(round));
                tokio::spawn(async move {
                    start.wait().await;
                    store.resources().apply(&[change], actor).await.expect("apply")
                })
            };
            let (ann, bob) = (spawn_apply("ann"), spawn_apply("bob"));
            let outcomes = [ann.await.expect("ann's apply"), bob.await.expect("bob's apply")];
            let winners: Vec<usize> = (0..2).filter(|&i| matches!(outcomes[i], ApplyOutcome::Applied(_))).collect();
            assert_eq!(winners.len(), 1, "round {round}: {outcomes:?}");
            let winner = ["ann", "bob"][winners[0]];
            let loser = &outcomes[1 - winners[0]];
            assert_eq!(loser, &ApplyOutcome::Conflict(ApplyConflict {
                kind: ResourceKind::Pipeline,
                name: "standard".into(),
                expected_revision: Some(round),
                stored_revision: Some(round + 1),
            }), "round {round}");
            let stored = store.resources().get(ResourceKind::Pipeline, "standard").await.expect("get").expect("stored");
            assert_eq!((stored.canonical, stored.revision), (format!("round {round} by {winner}\n"), round + 1));
        }
        assert_eq!(audit_length(&store).await, 6, "one creation and one update per round");
        assert!(matches!(store.audit().verify().await.expect("verify"), store::ChainVerdict::Intact { entries: 6, .. }));
    }

    async fn resources_are_listed_by_kind_in_byte_order_of_their_names_page_by_page(store) {
        let changes = ["b", "a-b", "a0", "a"].map(|name| pipeline(name, "text\n", None));
        applied(store.resources().apply(&changes, "ann").await.expect("apply"));
        applied(store.resources().apply(&[application("a1", "acme/a1", "text\n", None)], "ann").await.expect("apply"));
        let names = |page: Vec<store::StoredResource>| page.into_iter().map(|r| r.name).collect::<Vec<_>>();
        assert_eq!(names(store.resources().list(ResourceKind::Pipeline, None, 100).await.expect("list")), ["a", "a-b", "a0", "b"]);
        assert_eq!(names(store.resources().list(ResourceKind::Pipeline, Some("a-b"), 2).await.expect("list")), ["a0", "b"]);
        assert!(store.resources().list(ResourceKind::Pipeline, Some("b"), 2).await.expect("list").is_empty());
        assert_eq!(names(store.resources().list(ResourceKind::Application, None, 100).await.expect("list")), ["a1"]);
    }

    async fn trust_policies_are_stored_apart_from_other_kinds_and_read_whole_or_page_by_page(store) {
        let changes = [
            trust_policy("web-ci", "web-ci v1\n", None),
            pipeline("web-ci", "pipeline\n", None),
            trust_policy("api-ci", "api-ci v1\n", None),
            application("web-ci", "acme/web", "application\n", None),
        ];
        let outcome = applied(store.resources().apply(&changes, "ann").await.expect("apply"));
        let created: Vec<(ResourceKind, &str)> = outcome.created.iter().map(|r| (r.kind, r.name.as_str())).collect();
        assert_eq!(created, [
            (ResourceKind::Pipeline, "web-ci"),
            (ResourceKind::Application, "web-ci"),
            (ResourceKind::TrustPolicy, "api-ci"),
            (ResourceKind::TrustPolicy, "web-ci"),
        ], "kinds in declaration order, then names");
        assert_eq!(outcome.created_repositories, [repo("acme/web")], "a policy creates no repository");

        let names = |page: Vec<store::StoredResource>| page.into_iter().map(|r| (r.kind, r.name, r.canonical)).collect::<Vec<_>>();
        let policies = vec![
            (ResourceKind::TrustPolicy, "api-ci".to_owned(), "api-ci v1\n".to_owned()),
            (ResourceKind::TrustPolicy, "web-ci".to_owned(), "web-ci v1\n".to_owned()),
        ];
        assert_eq!(names(store.resources().all(ResourceKind::TrustPolicy).await.expect("all")), policies);
        assert_eq!(names(store.resources().list(ResourceKind::TrustPolicy, None, 100).await.expect("list")), policies);
        assert_eq!(names(store.resources().list(ResourceKind::TrustPolicy, Some("api-ci"), 1).await.expect("list")), policies[1..]);
        let web = store.resources().get(ResourceKind::TrustPolicy, "web-ci").await.expect("get").expect("stored");
        assert_eq!((web.kind, web.canonical.as_str(), web.revision), (ResourceKind::TrustPolicy, "web-ci v1\n", 1));
        assert_eq!(store.resources().get(ResourceKind::Pipeline, "web-ci").await.expect("get").map(|r| r.canonical), Some("pipeline\n".to_owned()));
        assert!(store.resources().application_of(&repo("acme/web")).await.expect("lookup").is_some());

        let entries_before = audit_length(&store).await;
        let changed = applied(store.resources().apply(&[trust_policy("web-ci", "web-ci v2\n", Some(1))], "bob").await.expect("apply"));
        assert_eq!(revisions(&changed.updated), [("web-ci", 2)]);
        let entries = store.audit().entries(0, 100).await.expect("entries");
        assert_eq!(entries.len(), entries_before + 1);
        let last = entries.last().expect("an entry");
        assert_eq!((last.actor.as_str(), last.action.as_str(), last.subject.as_str()), ("bob", "apply", "TrustPolicy/web-ci"));
        let stale = store.resources().apply(&[trust_policy("web-ci", "web-ci v3\n", Some(1))], "eve").await.expect("apply");
        assert_eq!(stale, ApplyOutcome::Conflict(ApplyConflict {
            kind: ResourceKind::TrustPolicy,
            name: "web-ci".into(),
            expected_revision: Some(1),
            stored_revision: Some(2),
        }));
    }
}
