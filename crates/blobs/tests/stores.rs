//! The blob store's contract, the same on every kind of store: a local directory,
//! memory and a real S3 (SeaweedFS). Parts of exactly 5 MiB, 5 MiB + 1 and 1 byte
//! are committed into one blob (a multipart write whose parts S3 accepts), ranges read
//! back exactly, a hashing state saved between parts resumes (as a chunked upload
//! continued on another replica does), an upload over the limit keeps nothing, and
//! what an upload left behind is found and removed. The S3 contract also holds
//! behind a proxy that answers every third request with `503 SlowDown`, as S3 does
//! under load: every such answer is retried. Behind a proxy whose listings leave
//! objects out, only what a listing names is ever removed; one that refuses
//! server-side copies still commits a part larger than its copy limit.

use blobs::{
    BlobError, BlobStore, BlobStoreConfig, Claim, PartRef, S3Credentials, Staged, new_part_key,
};
use bytes::Bytes;
use domain::{Digest, DigestAlgorithm, DigestHasher};
use futures_util::StreamExt;
use testkit::seaweed::{ACCESS_KEY, SECRET_KEY, Seaweed};

const MIB: usize = 1 << 20;

/// `len` bytes of a pattern that differs at every offset modulo 251.
fn content(seed: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
}

fn body(bytes: &[u8]) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    // Chunks of 64 KiB, as a request body arrives.
    let chunks: Vec<Result<Bytes, std::io::Error>> = bytes
        .chunks(64 << 10)
        .map(|chunk| Ok(Bytes::copy_from_slice(chunk)))
        .collect();
    futures_util::stream::iter(chunks)
}

/// Asserts that `store` serves `expected` as blob `digest` and that nothing of its
/// upload is left (the pieces and the completed object are gone).
async fn assert_committed_whole(store: &BlobStore, digest: &Digest, expected: &[u8]) {
    assert_eq!(read_all(store, digest, None).await, expected);
    let left = store.stale_uploads(i64::MAX).await.expect("listing");
    assert!(
        left.is_empty(),
        "the pieces and the completed object are gone: {left:?}"
    );
}

/// `bytes` in chunks of 64 KiB, then an error, as a request cut off midway arrives.
fn failing_body(
    bytes: &[u8],
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    let mut chunks: Vec<Result<Bytes, std::io::Error>> = bytes
        .chunks(64 << 10)
        .map(|chunk| Ok(Bytes::copy_from_slice(chunk)))
        .collect();
    chunks.push(Err(std::io::Error::other("the client went away")));
    futures_util::stream::iter(chunks)
}

async fn read_all(store: &BlobStore, digest: &Digest, range: Option<(u64, u64)>) -> Vec<u8> {
    let mut stream = store.get(digest, range).await.expect("the blob");
    let mut read = Vec::new();
    while let Some(chunk) = stream.next().await {
        read.extend_from_slice(&chunk.expect("a chunk"));
    }
    read
}

/// An upload session as the database would keep it, and the claim of the one request
/// writing to it (which lapses when `lapsed` is set).
#[derive(Default)]
struct Session {
    id: String,
    multipart: std::sync::Mutex<Option<String>>,
    parts: Vec<PartRef>,
    lapsed: std::sync::atomic::AtomicBool,
}

impl Claim for Session {
    fn remaining(&self) -> Option<std::time::Duration> {
        (!self.lapsed.load(std::sync::atomic::Ordering::SeqCst))
            .then_some(std::time::Duration::from_secs(60))
    }

    fn begin_multipart<'a>(
        &'a self,
        multipart: &'a str,
    ) -> futures_util::future::BoxFuture<'a, Result<bool, BlobError>> {
        let mut recorded = self.multipart.lock().expect("the lock");
        let began = recorded.is_none();
        if began {
            *recorded = Some(multipart.to_owned());
        }
        Box::pin(async move { Ok(began) })
    }
}

impl Session {
    fn new(id: &str) -> Session {
        Session {
            id: id.to_owned(),
            ..Session::default()
        }
    }

    fn multipart(&self) -> Option<String> {
        self.multipart.lock().expect("the lock").clone()
    }

    fn size(&self) -> u64 {
        self.parts.iter().map(|part| part.size).sum()
    }

    /// Writes one chunk and records it as the registry does.
    async fn write(
        &mut self,
        store: &BlobStore,
        bytes: &[u8],
        hasher: &mut DigestHasher,
    ) -> Result<(), BlobError> {
        let parts = self.parts.clone();
        let multipart = self.multipart();
        let staged = Staged {
            upload_id: &self.id,
            multipart: multipart.as_deref(),
            parts: &parts,
        };
        let chunk = store
            .write_chunk(
                &staged,
                self.size(),
                body(bytes),
                Some(hasher),
                u64::MAX,
                &*self,
            )
            .await?;
        assert_eq!(chunk.size, bytes.len() as u64);
        let kept = self.parts.len() - chunk.removed.len();
        assert_eq!(
            self.parts[kept..],
            chunk.removed[..],
            "only trailing pieces fold"
        );
        self.parts.truncate(kept);
        assert_eq!(
            chunk.start,
            self.size(),
            "the chunk's parts start where the kept ones end"
        );
        self.parts.extend(chunk.added.iter().cloned());
        store.discard(&self.id, &chunk.removed).await;
        Ok(())
    }

    async fn commit(&self, store: &BlobStore, digest: &Digest) -> Result<(), BlobError> {
        let multipart = self.multipart();
        let staged = Staged {
            upload_id: &self.id,
            multipart: multipart.as_deref(),
            parts: &self.parts,
        };
        store.commit(&staged, digest, false, Some(self)).await
    }
}

/// Writes `chunks` as upload `upload`'s chunks, hashing across them with the hashing
/// state saved and restored between chunks (as a chunked upload continued on another
/// replica does); the session and the digest.
async fn upload(store: &BlobStore, upload: &str, chunks: &[&[u8]]) -> (Session, Digest) {
    let mut saved = DigestHasher::new(DigestAlgorithm::Sha256).save_state();
    let mut session = Session::new(upload);
    for chunk in chunks {
        let mut hasher = DigestHasher::restore_state(&saved).expect("a saved state restores");
        session
            .write(store, chunk, &mut hasher)
            .await
            .expect("a chunk is written");
        saved = hasher.save_state();
    }
    let digest = DigestHasher::restore_state(&saved).expect("state").finish();
    (session, digest)
}

fn sha256_hex(bytes: &[u8]) -> String {
    let mut hasher = DigestHasher::new(DigestAlgorithm::Sha256);
    hasher.update(bytes);
    hasher.finish().hex().to_owned()
}

async fn contract(store: BlobStore) {
    let (a, b, c) = (content(1, 5 * MIB), content(2, 5 * MIB + 1), content(3, 1));
    let whole: Vec<u8> = [a.as_slice(), b.as_slice(), c.as_slice()].concat();
    let (session, digest) = upload(&store, "three-parts", &[&a, &b, &c]).await;
    assert_eq!(
        digest.to_string(),
        format!("sha256:{}", sha256_hex(&whole)),
        "hashing resumed across parts"
    );
    assert!(
        !store.exists(&digest).await.expect("exists"),
        "nothing is served before the commit"
    );
    assert_eq!(
        session.multipart().is_some(),
        store.multipart_sessions(),
        "a multipart store keeps whole parts in a multipart upload"
    );
    session.commit(&store, &digest).await.expect("commit");
    assert!(store.exists(&digest).await.expect("exists"));
    assert_eq!(
        read_all(&store, &digest, None).await,
        whole,
        "the blob is the parts in order"
    );
    let edge = (5 * MIB - 1) as u64;
    assert_eq!(
        read_all(&store, &digest, Some((edge, edge + 2))).await,
        whole[edge as usize..edge as usize + 3].to_vec(),
        "a range across the first part's end"
    );
    let last = whole.len() as u64 - 1;
    assert_eq!(
        read_all(&store, &digest, Some((last, last))).await,
        vec![whole[last as usize]]
    );

    // One part is committed in place; committing a stored blob again keeps it.
    let single = content(4, 300 << 10);
    let (session, one) = upload(&store, "one-part", &[&single]).await;
    assert_eq!(session.multipart(), None, "less than a part is one piece");
    session.commit(&store, &one).await.expect("commit");
    assert_eq!(read_all(&store, &one, None).await, single);
    let (session, again) = upload(&store, "again", &[&single]).await;
    session.commit(&store, &again).await.expect("commit again");
    assert_eq!(read_all(&store, &one, None).await, single);

    // Chunks that end exactly on, one past and one short of the store's part size,
    // and one that spans several parts at once.
    let part = 8 * MIB;
    let sizes = [part, part + 1, part - 1, 1, 2 * part + 3, 5];
    let chunks: Vec<Vec<u8>> = sizes
        .iter()
        .enumerate()
        .map(|(n, &len)| content(10 + n as u8, len))
        .collect();
    let whole: Vec<u8> = chunks.concat();
    let slices: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
    let (session, digest) = upload(&store, "boundaries", &slices).await;
    if store.multipart_sessions() {
        let numbered: Vec<Option<u32>> = session.parts.iter().map(|p| p.number).collect();
        assert_eq!(
            numbered,
            [Some(1), Some(2), Some(3), Some(4), Some(5), None, None]
        );
        assert!(session.parts[..5].iter().all(|p| p.size == part as u64));
    }
    session.commit(&store, &digest).await.expect("commit");
    assert_eq!(read_all(&store, &digest, None).await, whole);
    let edge = (3 * part - 2) as u64;
    assert_eq!(
        read_all(&store, &digest, Some((edge, edge + 4))).await,
        whole[edge as usize..edge as usize + 5].to_vec(),
        "a range across a part boundary"
    );

    // A commit that hashes again refuses bytes of another digest and keeps nothing.
    let (session, actual) = upload(&store, "mislabelled", &[&a, &b]).await;
    let claimed = Digest::parse(&format!("sha256:{}", "2".repeat(64))).expect("digest");
    let multipart = session.multipart();
    let staged = Staged {
        upload_id: "mislabelled",
        multipart: multipart.as_deref(),
        parts: &session.parts,
    };
    match store.commit(&staged, &claimed, true, Some(&session)).await {
        Err(BlobError::DigestMismatch { actual: found }) => assert_eq!(found, actual),
        other => panic!("expected a mismatch, got {other:?}"),
    }
    assert!(!store.exists(&claimed).await.expect("exists"));
    assert!(!store.exists(&actual).await.expect("exists"));

    // A chunk whose body fails after whole parts went out records nothing, and a
    // shorter chunk then written at the same offset is all the blob holds: the parts
    // the failed chunk wrote beyond it are never assembled.
    let mut session = Session::new("failed-chunk");
    let mut hasher = DigestHasher::new(DigestAlgorithm::Sha256);
    let failed = store
        .write_chunk(
            &Staged {
                upload_id: "failed-chunk",
                multipart: None,
                parts: &[],
            },
            0,
            failing_body(&content(30, 3 * part)),
            Some(&mut hasher),
            u64::MAX,
            &session,
        )
        .await;
    assert!(matches!(failed, Err(BlobError::Body(_))), "{failed:?}");
    let shorter = content(31, part + MIB);
    let mut hasher = DigestHasher::new(DigestAlgorithm::Sha256);
    session
        .write(&store, &shorter, &mut hasher)
        .await
        .expect("a chunk");
    let digest = hasher.finish();
    session.commit(&store, &digest).await.expect("commit");
    assert_eq!(read_all(&store, &digest, None).await, shorter);

    // A writer whose claim lapsed writes no part; what it wrote stays unrecorded.
    let mut lapsed = Session::new("lapsed");
    lapsed
        .lapsed
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let mut hasher = DigestHasher::new(DigestAlgorithm::Sha256);
    let refused = lapsed
        .write(&store, &content(9, part + 10), &mut hasher)
        .await;
    if store.multipart_sessions() {
        assert!(matches!(refused, Err(BlobError::ClaimLost)), "{refused:?}");
        assert!(lapsed.parts.is_empty());
    }

    // An upload over the limit keeps nothing of the part it was writing.
    let mut hasher = DigestHasher::new(DigestAlgorithm::Sha256);
    let over = store
        .write_part(
            "too-big",
            &new_part_key(),
            0,
            body(&content(5, MIB)),
            Some(&mut hasher),
            1000,
        )
        .await;
    assert!(
        matches!(over, Err(BlobError::TooLarge { limit: 1000 })),
        "{over:?}"
    );

    // What an abandoned upload left is found, and removed.
    let future = i64::MAX;
    upload(&store, "abandoned", &[&content(6, 1000)]).await;
    let stale = store.stale_uploads(future).await.expect("listing");
    assert!(stale.contains(&"abandoned".to_owned()), "{stale:?}");
    assert!(
        !stale.contains(&"too-big".to_owned()),
        "the refused part was not kept: {stale:?}"
    );
    store.discard_all("abandoned", None).await.expect("discard");
    let stale = store.stale_uploads(future).await.expect("listing");
    assert!(!stale.contains(&"abandoned".to_owned()), "{stale:?}");
    let missing = Digest::parse(&format!("sha256:{}", "0".repeat(64))).expect("digest");
    assert!(matches!(
        store.get(&missing, None).await,
        Err(BlobError::NotFound)
    ));

    // Garbage collection's view: the listing names every committed blob by digest,
    // with its size and a time it was written, and nothing of upload sessions; a
    // blob deleted is gone, and deleting it again is no error.
    let before = store_time_now();
    let small = content(7, 10);
    let small_digest = Digest::parse(&format!("sha256:{}", sha256_hex(&small))).expect("digest");
    store
        .put_small(&small_digest, small.clone().into())
        .await
        .expect("put");
    upload(&store, "still-open", &[&content(8, 100)]).await;
    let listed: Vec<blobs::StoredObject> = store
        .list()
        .map(|object| object.expect("listing"))
        .collect()
        .await;
    let found = |digest: &Digest| listed.iter().find(|object| &object.digest == digest);
    assert_eq!(found(&small_digest).map(|o| o.size), Some(10));
    assert!(found(&digest).is_some(), "every committed blob is listed");
    let written = found(&small_digest).map_or(0, |o| o.written_at_millis);
    assert!(
        (before - 60_000..before + 60_000).contains(&written),
        "written {written}, around {before}"
    );
    assert!(
        listed.iter().all(|object| object.digest != missing),
        "only stored blobs are listed"
    );
    store.delete(&small_digest).await.expect("delete");
    assert!(!store.exists(&small_digest).await.expect("exists"));
    store.delete(&small_digest).await.expect("deleting again");
    assert!(
        store.exists(&digest).await.expect("exists"),
        "other blobs stay"
    );
    store
        .discard_all("still-open", None)
        .await
        .expect("discard");
}

/// Milliseconds since the epoch, as the store's clock should roughly say.
fn store_time_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_directory_keeps_the_contract() {
    let dir = tempfile::tempdir().expect("dir");
    contract(BlobStore::open(&dir.path().display().to_string(), false).expect("store")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_keeps_the_contract() {
    contract(BlobStore::memory()).await;
}

/// The store in bucket `bucket` under the prefix `gantry`, reached at `endpoint`,
/// with more of the URL's query in `query`.
fn open_s3(bucket: &str, endpoint: &str, query: &str) -> BlobStore {
    let config =
        BlobStoreConfig::parse(&format!("s3://{bucket}/gantry?endpoint={endpoint}{query}"))
            .expect("an S3 URL");
    BlobStore::open_config(&config, false, Some(&credentials(SECRET_KEY))).expect("store")
}

fn credentials(secret: &str) -> S3Credentials {
    S3Credentials {
        access_key_id: ACCESS_KEY.to_owned(),
        secret_access_key: secret.to_owned(),
        session_token: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_bucket_keeps_the_contract_under_a_prefix() {
    let seaweed = Seaweed::start("blobs").await;
    let config = BlobStoreConfig::parse(&format!(
        "s3://{}/gantry/registry?endpoint={}",
        seaweed.bucket, seaweed.endpoint
    ))
    .expect("an S3 URL");
    let store =
        BlobStore::open_config(&config, false, Some(&credentials(SECRET_KEY))).expect("store");
    assert!(
        store
            .description()
            .starts_with("s3://blobs/gantry/registry"),
        "{}",
        store.description()
    );
    store.ping().await.expect("the bucket answers");
    contract(store).await;
    // Everything lives under the prefix.
    let client = seaweed.client();
    let mut listing = object_store::ObjectStore::list(&*client, None);
    let mut keys = Vec::new();
    while let Some(meta) = listing.next().await {
        keys.push(meta.expect("an object").location.to_string());
    }
    assert!(
        !keys.is_empty() && keys.iter().all(|key| key.starts_with("gantry/registry/")),
        "{keys:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_s3_credentials_are_a_storage_error_not_a_missing_blob() {
    let seaweed = Seaweed::start("locked").await;
    let config = BlobStoreConfig::parse(&format!("s3://locked?endpoint={}", seaweed.endpoint))
        .expect("an S3 URL");
    let store = BlobStore::open_config(&config, false, Some(&credentials("not the secret")))
        .expect("store");
    let digest = Digest::parse(&format!("sha256:{}", "1".repeat(64))).expect("digest");
    let error = store.exists(&digest).await.expect_err("refused");
    assert!(matches!(error, BlobError::Storage(_)), "{error}");
}

/// What the fault-injecting proxy does to every `every`-th request of its kind.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// Any request: answered `503 SlowDown`, as S3 does under load.
    SlowDown { every: usize },
    /// A listing (`ListObjectsV2`): answered with its first object only and
    /// `IsTruncated` false, as a store whose listing is incomplete or stale may.
    TruncateListings { every: usize },
    /// Every server-side copy (`CopyObject`): refused, as S3 refuses one of more
    /// than 5 GiB.
    RefuseCopies,
    /// Nothing: the bytes of every object read (`GetObject`) are counted.
    CountReads,
}

/// On S3 a chunked upload's whole parts go into one multipart upload spanning its
/// requests, so neither its chunks nor its commit read the blob back: only pieces
/// shorter than a part are (here 14 bytes of 32 MiB), and the object the commit
/// completes is moved by a server-side copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_upload_on_s3_is_committed_without_reading_its_bytes_back() {
    let seaweed = Seaweed::start("noreread").await;
    let (proxy, read) = faulty_proxy(seaweed.endpoint.clone(), Fault::CountReads).await;
    let open = |endpoint: &str| open_s3("noreread", endpoint, "");
    let (store, honest) = (open(&proxy), open(&seaweed.endpoint));
    let part = 8 * MIB;
    let chunks = [
        content(20, part + 3),
        content(21, part),
        content(22, 2 * part + 5),
    ];
    let slices: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
    let (session, digest) = upload(&store, "chunked", &slices).await;
    let numbered: Vec<Option<u32>> = session.parts.iter().map(|p| p.number).collect();
    assert_eq!(numbered, [Some(1), Some(2), Some(3), Some(4), None]);
    session.commit(&store, &digest).await.expect("commit");
    assert_eq!(
        read.load(std::sync::atomic::Ordering::SeqCst),
        3 + 3 + 8,
        "only the pieces were read back"
    );
    assert_committed_whole(&honest, &digest, &chunks.concat()).await;
}

/// A commit whose multipart upload completed but whose move to the blob's address
/// failed (here the store refuses the copy) keeps what it completed, and a retried
/// commit moves it: the session is not lost to a passing failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_that_failed_after_completing_its_upload_succeeds_when_retried() {
    let seaweed = Seaweed::start("retried").await;
    let (proxy, refused) = faulty_proxy(seaweed.endpoint.clone(), Fault::RefuseCopies).await;
    let open = |endpoint: &str| open_s3("retried", endpoint, "");
    let (refusing, honest) = (open(&proxy), open(&seaweed.endpoint));
    let chunks = [content(40, 6 * MIB), content(41, 6 * MIB)];
    let slices: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
    let (session, digest) = upload(&refusing, "retried", &slices).await;
    assert!(session.multipart().is_some());
    session
        .commit(&refusing, &digest)
        .await
        .expect_err("the copy is refused");
    assert!(refused.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    assert!(!honest.exists(&digest).await.expect("exists"));
    session.commit(&honest, &digest).await.expect("the retry");
    assert_committed_whole(&honest, &digest, &chunks.concat()).await;
}

/// Keeps the first `<Contents>` of a `ListObjectsV2` answer, says it is complete.
fn truncate_listing(xml: &str) -> String {
    let mut out = String::with_capacity(xml.len());
    let mut rest = xml;
    let mut kept = false;
    while let Some(start) = rest.find("<Contents>") {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find("</Contents>")
            .map_or(rest.len(), |end| start + end + "</Contents>".len());
        if !kept {
            out.push_str(&rest[start..end]);
            kept = true;
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    let out = out.replace(
        "<IsTruncated>true</IsTruncated>",
        "<IsTruncated>false</IsTruncated>",
    );
    match (
        out.find("<NextContinuationToken>"),
        out.find("</NextContinuationToken>"),
    ) {
        (Some(start), Some(end)) => {
            format!(
                "{}{}",
                &out[..start],
                &out[end + "</NextContinuationToken>".len()..]
            )
        }
        _ => out,
    }
}

/// An HTTP proxy on loopback in front of `upstream` that injects `fault` and forwards
/// everything else unchanged (the `Host` header included, so signatures still
/// verify); how many requests it tampered with.
async fn faulty_proxy(
    upstream: String,
    fault: Fault,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let seen = Arc::new(AtomicUsize::new(0));
    let tampered = Arc::new(AtomicUsize::new(0));
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<axum::body::Body>();
    let (seen_in, tampered_in) = (seen.clone(), tampered.clone());
    let forward = move |request: axum::extract::Request| {
        let (client, upstream) = (client.clone(), upstream.clone());
        let (seen, tampered) = (seen_in.clone(), tampered_in.clone());
        async move {
            let listing = request.method() == axum::http::Method::GET
                && request
                    .uri()
                    .query()
                    .is_some_and(|q| q.contains("list-type=2"));
            let (every, applies) = match fault {
                Fault::SlowDown { every } => (every, true),
                Fault::TruncateListings { every } => (every, listing),
                Fault::RefuseCopies => (1, request.headers().contains_key("x-amz-copy-source")),
                Fault::CountReads => (usize::MAX, false),
            };
            let object_read = request.method() == axum::http::Method::GET && !listing;
            if applies && matches!(fault, Fault::RefuseCopies) {
                tampered.fetch_add(1, Ordering::SeqCst);
                return axum::response::Response::builder()
                    .status(400)
                    .header("content-type", "application/xml")
                    .body(axum::body::Body::from(
                        "<Error><Code>InvalidRequest</Code><Message>The specified copy source is larger than the maximum allowable size for a copy source: 5368709120</Message></Error>",
                    ))
                    .expect("a response");
            }
            let hit = applies && (seen.fetch_add(1, Ordering::SeqCst) + 1) % every == 0;
            if hit && matches!(fault, Fault::SlowDown { .. }) {
                tampered.fetch_add(1, Ordering::SeqCst);
                return axum::response::Response::builder()
                    .status(503)
                    .header("content-type", "application/xml")
                    .body(axum::body::Body::from(
                        "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>",
                    ))
                    .expect("a response");
            }
            let (mut parts, body) = request.into_parts();
            let path = parts
                .uri
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_owned();
            parts.uri = format!("{upstream}{path}").parse().expect("a URI");
            let response = match client
                .request(axum::extract::Request::from_parts(parts, body))
                .await
            {
                Ok(response) => response.map(axum::body::Body::new),
                Err(error) => {
                    return axum::response::Response::builder()
                        .status(502)
                        .body(axum::body::Body::from(error.to_string()))
                        .expect("a response");
                }
            };
            if matches!(fault, Fault::CountReads) && object_read {
                let length = response
                    .headers()
                    .get("content-length")
                    .and_then(|value| value.to_str().ok())
                    .and_then(|value| value.parse::<usize>().ok())
                    .expect("an object read has a length");
                tampered.fetch_add(length, Ordering::SeqCst);
            }
            if !hit || response.status() != 200 {
                return response;
            }
            tampered.fetch_add(1, Ordering::SeqCst);
            let (mut parts, body) = response.into_parts();
            let xml = axum::body::to_bytes(body, usize::MAX)
                .await
                .expect("the listing");
            let truncated = truncate_listing(&String::from_utf8_lossy(&xml));
            parts.headers.remove("content-length");
            axum::response::Response::from_parts(parts, axum::body::Body::from(truncated))
        }
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let app = axum::Router::new().fallback(forward);
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("the proxy serves");
    });
    (format!("http://{address}"), tampered)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_bucket_that_answers_slow_down_keeps_the_contract_by_retrying() {
    let seaweed = Seaweed::start("throttled").await;
    let (proxy, refused) =
        faulty_proxy(seaweed.endpoint.clone(), Fault::SlowDown { every: 3 }).await;
    contract(open_s3("throttled", &proxy, "")).await;
    let refused = refused.load(std::sync::atomic::Ordering::SeqCst);
    assert!(refused >= 10, "the proxy refused only {refused} requests");
}

/// A listing that leaves objects out only ever leads to fewer deletions: what it
/// names is what gets removed (the uploads' parts it found), nothing it left out is
/// touched, blobs (never listed for deletion) all stay, and later passes over honest
/// listings finish the job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_listing_never_causes_a_deletion_of_what_it_left_out() {
    let seaweed = Seaweed::start("lying").await;
    let (proxy, truncated) = faulty_proxy(
        seaweed.endpoint.clone(),
        Fault::TruncateListings { every: 1 },
    )
    .await;
    let open = |endpoint: &str| open_s3("lying", endpoint, "");
    let (lying, honest) = (open(&proxy), open(&seaweed.endpoint));

    let kept = content(7, 1000);
    let (session, digest) = upload(&honest, "committed", &[&kept]).await;
    session.commit(&honest, &digest).await.expect("commit");
    for (id, count) in [("stale-a", 3), ("stale-b", 2), ("stale-c", 1)] {
        let bytes: Vec<Vec<u8>> = (0..count).map(|n| content(n, 100)).collect();
        let slices: Vec<&[u8]> = bytes.iter().map(Vec::as_slice).collect();
        upload(&honest, id, &slices).await;
    }
    let left = || async { honest.stale_uploads(i64::MAX).await.expect("listing") };
    assert_eq!(left().await, ["stale-a", "stale-b", "stale-c"]);

    // One pass over lying listings: it finds one upload and removes one of its parts.
    let found = lying.stale_uploads(i64::MAX).await.expect("listing");
    assert_eq!(found, ["stale-a"], "the listing named one object");
    lying.discard_all("stale-a", None).await.expect("discard");
    assert!(truncated.load(std::sync::atomic::Ordering::SeqCst) >= 2);
    assert_eq!(
        left().await,
        ["stale-a", "stale-b", "stale-c"],
        "what the listing left out is untouched (two parts of stale-a remain)"
    );
    assert_eq!(read_all(&lying, &digest, None).await, kept);

    // Passes go on removing what they are shown, and only that, until nothing is left.
    for _ in 0..10 {
        for id in lying.stale_uploads(i64::MAX).await.expect("listing") {
            lying.discard_all(&id, None).await.expect("discard");
        }
    }
    assert!(left().await.is_empty());
    assert_eq!(
        read_all(&honest, &digest, None).await,
        kept,
        "the blob was never a candidate"
    );
}

/// S3 copies at most 5 GiB server-side, and an S3 rename is a copy: a blob received
/// in one part larger than the store's copy limit is committed by a multipart write
/// instead. Here the store refuses every copy and the limit is set to 1 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_larger_than_the_stores_copy_limit_is_committed_without_a_copy() {
    let seaweed = Seaweed::start("nocopy").await;
    let (proxy, refused) = faulty_proxy(seaweed.endpoint.clone(), Fault::RefuseCopies).await;
    let open = |query: &str| open_s3("nocopy", &proxy, query);
    let big = content(8, 2 * MIB);

    // Under S3's own limit the part is moved by a copy, which this store refuses.
    let copying = open("");
    let (session, digest) = upload(&copying, "copied", &[&big]).await;
    session
        .commit(&copying, &digest)
        .await
        .expect_err("the copy is refused");
    assert!(refused.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    assert!(!copying.exists(&digest).await.expect("exists"));

    // Over the limit it is read back into a multipart write: no copy asked for.
    let refused_before = refused.load(std::sync::atomic::Ordering::SeqCst);
    let store = open("&copy_limit=1048576");
    let (session, digest) = upload(&store, "streamed", &[&big]).await;
    session.commit(&store, &digest).await.expect("commit");
    assert_eq!(
        refused.load(std::sync::atomic::Ordering::SeqCst),
        refused_before
    );
    assert_eq!(read_all(&store, &digest, None).await, big);
    let left = store.stale_uploads(i64::MAX).await.expect("listing");
    assert_eq!(left, ["copied"], "the committed part is gone");
}
