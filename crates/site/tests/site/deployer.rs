//! The `static-site` deployer end to end: a site artifact stored in a real store and
//! blob store (as a push leaves it) is fetched, checked, unpacked, synced, the CDN told
//! and the digest recorded; re-running the job changes nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use blobs::BlobStore;
use deploy::{DeployContext, DeployError, DeployLog, Deployer, ObserveContext, Secrets};
use domain::application::{
    EnvironmentSpec, HttpUrl, InvalidationHook, SiteDestination, StaticSiteTarget, Target,
};
use domain::promotion::DeploymentReason;
use domain::{Digest, RepoName};
use site::{
    ArchiveLimits, EMPTY_CONFIG, OCI_IMAGE_MANIFEST, SITE_ARTIFACT_TYPE, StaticSiteDeployer,
    StaticSiteSettings, pack, site_manifest,
};
use store::{DeploymentOrder, ManifestChild, NewManifest, Store, StoreOptions};

use crate::raw_zip::{RawEntry, build};
use crate::support::{SECRET_KEY, Seaweed, s3_settings, write_site};

const REPOSITORY: &str = "acme/web";

/// Gantry's store and blob store in a temporary directory.
struct Registry {
    store: Store,
    blobs: BlobStore,
    dir: tempfile::TempDir,
}

impl Registry {
    async fn new() -> Registry {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("gantry.db").display());
        let store = Store::open(&url, StoreOptions::default())
            .await
            .expect("store");
        let blobs = BlobStore::open(
            dir.path().join("blobs").to_str().expect("utf-8 path"),
            false,
        )
        .expect("blobs");
        store
            .repositories()
            .get_or_create(&RepoName::parse(REPOSITORY).expect("name"), "tester")
            .await
            .expect("repository");
        Registry { store, blobs, dir }
    }

    /// Stores an artifact as a push would: its blobs, then its manifest; returns the
    /// manifest's digest.
    async fn push(&self, manifest: Vec<u8>, blobs: &[&[u8]]) -> Digest {
        let repository = self
            .store
            .repositories()
            .get_or_create(&RepoName::parse(REPOSITORY).expect("name"), "tester")
            .await
            .expect("repository");
        let mut children = Vec::new();
        for blob in blobs {
            let digest = Digest::sha256_of(blob);
            self.blobs
                .put_small(&digest, bytes::Bytes::copy_from_slice(blob))
                .await
                .expect("blob");
            self.store
                .blobs()
                .record(repository.id, &digest, blob.len() as i64)
                .await
                .expect("record blob");
            children.push(ManifestChild::Blob {
                digest,
                size: blob.len() as u64,
            });
        }
        let digest = Digest::sha256_of(&manifest);
        let outcome = self
            .store
            .manifests()
            .put(
                &repository,
                &NewManifest {
                    digest: digest.clone(),
                    media_type: OCI_IMAGE_MANIFEST.to_owned(),
                    artifact_type: Some(SITE_ARTIFACT_TYPE.to_owned()),
                    subject: None,
                    annotations: None,
                    content: manifest,
                    children,
                },
                None,
                "ci",
            )
            .await
            .expect("manifest");
        assert_eq!(outcome, store::PutManifestOutcome::Stored);
        digest
    }

    /// Pushes a site archive (its bytes) as a site artifact.
    async fn push_site(&self, archive: &[u8]) -> Digest {
        let layer = Digest::sha256_of(archive);
        let manifest = site_manifest(&layer, archive.len() as u64, &BTreeMap::new());
        self.push(manifest, &[EMPTY_CONFIG, archive]).await
    }

    /// Packs `files` and pushes the archive.
    async fn push_files(&self, files: &[(&str, &[u8])]) -> Digest {
        let source = self.dir.path().join(format!("source-{}", files.len()));
        write_site(&source, files);
        let packed = pack(&source, &ArchiveLimits::default(), &mut |_| {}).expect("pack");
        let archive = std::fs::read(packed.path()).expect("read archive");
        self.push_site(&archive).await
    }

    fn deployer(&self, settings: StaticSiteSettings, secrets: Secrets) -> StaticSiteDeployer {
        StaticSiteDeployer::new(
            settings,
            self.store.clone(),
            self.blobs.clone(),
            secrets,
            Arc::new(outbound::Policy::parse(&["127.0.0.1".to_owned()]).expect("policy")),
        )
    }
}

fn order(id: i64, digest: &Digest) -> DeploymentOrder {
    DeploymentOrder {
        deployment_id: id,
        application: "web".to_owned(),
        environment: "prod".to_owned(),
        digest: digest.to_string(),
        config: None,
        target: "static-site".to_owned(),
        reason: DeploymentReason::Promotion,
        promotion_id: Some(id),
        requested_by: "alice".to_owned(),
        tag: None,
    }
}

fn environment(
    destination: SiteDestination,
    invalidate: Option<InvalidationHook>,
) -> EnvironmentSpec {
    EnvironmentSpec {
        target: Target::StaticSite(StaticSiteTarget {
            destination,
            default_cache_control: None,
            invalidate,
        }),
        health_check: None,
        auto_rollback: false,
        require_attestation: false,
        config: BTreeMap::new(),
    }
}

/// Runs one deployment; returns its outcome and log.
async fn deploy(
    deployer: &StaticSiteDeployer,
    order: &DeploymentOrder,
    environment: &EnvironmentSpec,
    attempt: u32,
) -> (Result<String, DeployError>, Vec<String>) {
    let (log, mut lines) = DeployLog::channel();
    let image = format!("gantry.example/{REPOSITORY}@{}", order.digest);
    let job = DeployContext {
        order,
        environment,
        image: &image,
        repository: REPOSITORY,
        approvers: &[],
        attempt,
        log: &log,
    };
    let outcome = deployer.deploy(&job).await;
    drop(log);
    let mut collected = Vec::new();
    while let Ok(line) = lines.try_recv() {
        collected.push(line);
    }
    (outcome, collected)
}

fn settings(work: &Path) -> StaticSiteSettings {
    StaticSiteSettings {
        work_dir: Some(work.to_owned()),
        // What a hook program sees of this process's environment, as the server
        // hands it down.
        programs: deploy::ChildEnvironment::inherited(|name| std::env::var_os(name)),
        ..StaticSiteSettings::default()
    }
}

fn listing(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| entries.map(|e| e.expect("entry").path()).collect())
        .unwrap_or_default()
}

const SITE: &[(&str, &[u8])] = &[
    ("index.html", b"<h1>v1</h1>"),
    ("assets/app.3f2a9c.js", b"console.log(1)"),
    ("robots.txt", b"User-agent: *"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_is_deployed_to_a_directory_and_a_rerun_changes_nothing() {
    let registry = Registry::new().await;
    let digest = registry.push_files(SITE).await;
    let work = registry.dir.path().join("work");
    let www = registry.dir.path().join("www");
    let hook_log = registry.dir.path().join("hook.log");
    // The hook records what it found: the files in place, deployed.json not yet.
    let hook = InvalidationHook::Command {
        program: "sh".to_owned(),
        args: vec![
            "-c".to_owned(),
            format!(
                "{{ test -f {www}/index.html && echo files-in-place; test -f {www}/.gantry/deployed.json && echo recorded-too-early; echo \"$GANTRY_DIGEST $GANTRY_INVALIDATE_PATHS\"; }} >> {log}",
                www = www.display(),
                log = hook_log.display()
            ),
        ],
    };
    let environment = environment(SiteDestination::Directory(www.clone()), Some(hook));
    let deployer = registry.deployer(settings(&work), Secrets::default());
    let order = order(1, &digest);

    let (outcome, log) = deploy(&deployer, &order, &environment, 1).await;
    let note = outcome.expect("deployed");
    assert!(note.contains("3 uploaded"), "{note}");
    assert!(note.contains("CDN invalidated"), "{note}");
    for (name, content) in SITE {
        assert_eq!(
            std::fs::read(www.join(name)).expect("read"),
            *content,
            "{name}"
        );
    }
    let expect_line = |needle: &str| {
        assert!(
            log.iter().any(|line| line.contains(needle)),
            "no log line with {needle:?} in {log:#?}"
        );
    };
    expect_line("fetched the site archive");
    expect_line("checked 3 files");
    expect_line("extracting the 3 files the destination lacks");
    expect_line("3 uploaded, 0 unchanged, 0 deleted");
    expect_line("invalidated /*");
    expect_line("recorded sha256:");
    assert_eq!(
        std::fs::read_to_string(&hook_log).expect("hook ran"),
        format!("files-in-place\n{digest} /*\n")
    );
    let deployed: serde_json::Value = serde_json::from_slice(
        &std::fs::read(www.join(".gantry/deployed.json")).expect("deployed.json"),
    )
    .expect("json");
    assert_eq!(deployed["digest"], serde_json::json!(digest.to_string()));
    assert_eq!(deployed["deployment_id"], serde_json::json!(1));
    assert_eq!(deployed["application"], serde_json::json!("web"));
    let files: serde_json::Value =
        serde_json::from_slice(&std::fs::read(www.join(".gantry/files.json")).expect("files.json"))
            .expect("json");
    assert_eq!(
        files["files"]["assets/app.3f2a9c.js"]["cache_control"],
        serde_json::json!(site::IMMUTABLE)
    );
    assert!(
        listing(&work).is_empty(),
        "the work directory was not cleaned"
    );

    // The same job again (a retry after a crash): nothing uploaded, the CDN not told
    // again, deployed.json untouched.
    let deployed_before = std::fs::read(www.join(".gantry/deployed.json")).expect("read");
    let (outcome, log) = deploy(&deployer, &order, &environment, 2).await;
    let note = outcome.expect("re-run");
    assert!(
        note.contains("0 uploaded, 3 unchanged, 0 deleted"),
        "{note}"
    );
    assert!(
        log.iter()
            .any(|l| l.contains("already names this deployment")),
        "{log:#?}"
    );
    assert!(
        log.iter()
            .any(|l| l == "extracting the 0 files the destination lacks"),
        "a re-run extracts nothing: {log:#?}"
    );
    assert_eq!(
        std::fs::read_to_string(&hook_log)
            .expect("hook log")
            .lines()
            .count(),
        2,
        "the hook ran again"
    );
    assert_eq!(
        std::fs::read(www.join(".gantry/deployed.json")).expect("read"),
        deployed_before
    );

    let observe = ObserveContext {
        application: "web",
        environment: "prod",
        spec: &environment,
        repository: REPOSITORY,
    };
    assert_eq!(
        deployer.observe(&observe).await,
        Ok(Some(digest.to_string()))
    );

    // A later deployment of a changed site replaces only what changed.
    let next = registry
        .push_files(&[
            ("index.html", b"<h1>v2</h1>"),
            ("assets/app.3f2a9c.js", b"console.log(1)"),
        ])
        .await;
    let (outcome, _) = deploy(&deployer, &order_with(2, &next), &environment, 1).await;
    let note = outcome.expect("second deployment");
    assert!(
        note.contains("1 uploaded, 1 unchanged, 1 deleted"),
        "{note}"
    );
    assert!(!www.join("robots.txt").exists());
    assert_eq!(deployer.observe(&observe).await, Ok(Some(next.to_string())));
}

fn order_with(id: i64, digest: &Digest) -> DeploymentOrder {
    order(id, digest)
}

#[tokio::test]
async fn a_hostile_archive_fails_the_deployment_and_touches_nothing() {
    let registry = Registry::new().await;
    let archive = build(&[
        RawEntry::stored("index.html", b"<h1>hi</h1>"),
        RawEntry::stored("../../../../tmp/owned.sh", b"echo owned"),
    ]);
    let digest = registry.push_site(&archive).await;
    let work = registry.dir.path().join("work");
    let www = registry.dir.path().join("www");
    let deployer = registry.deployer(settings(&work), Secrets::default());
    let environment = environment(SiteDestination::Directory(www.clone()), None);
    let (outcome, log) = deploy(&deployer, &order(1, &digest), &environment, 1).await;
    match outcome {
        Err(DeployError::Failed(message)) => {
            assert!(message.contains("refused"), "{message}");
            assert!(message.contains(".."), "{message}");
        }
        other => panic!("expected a permanent failure, got {other:?}"),
    }
    assert!(
        log.iter().any(|line| line.starts_with("failed:")),
        "{log:#?}"
    );
    assert!(!www.exists(), "the destination was created");
    assert!(
        listing(&work).is_empty(),
        "the work directory was not cleaned"
    );
}

#[tokio::test]
async fn artifacts_that_are_not_sites_or_not_stored_fail_permanently() {
    let registry = Registry::new().await;
    let work = registry.dir.path().join("work");
    let www = registry.dir.path().join("www");
    let deployer = registry.deployer(settings(&work), Secrets::default());
    let environment = environment(SiteDestination::Directory(www.clone()), None);

    let missing = Digest::sha256_of(b"never pushed");
    let (outcome, _) = deploy(&deployer, &order(1, &missing), &environment, 1).await;
    assert!(
        matches!(&outcome, Err(DeployError::Failed(m)) if m.contains("not in the registry")),
        "{outcome:?}"
    );

    let image_manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#;
    let image = registry
        .push(image_manifest.to_vec(), &[EMPTY_CONFIG])
        .await;
    let (outcome, _) = deploy(&deployer, &order(2, &image), &environment, 1).await;
    assert!(
        matches!(&outcome, Err(DeployError::Failed(m)) if m.contains("not a site artifact")),
        "{outcome:?}"
    );
    assert!(!www.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_is_deployed_to_s3_with_an_http_invalidation_and_observed_from_the_bucket() {
    let seaweed = Seaweed::start("prod-sites").await;
    let registry = Registry::new().await;
    let digest = registry.push_files(SITE).await;
    let secrets_dir = registry.dir.path().join("secrets");
    std::fs::create_dir_all(secrets_dir.join("s3")).expect("mkdir");
    std::fs::write(secrets_dir.join("s3/sites"), format!("{SECRET_KEY}\n")).expect("secret");
    let mut settings = settings(&registry.dir.path().join("work"));
    settings.s3 = site::S3Settings {
        secret_access_key_ref: Some("s3/sites".to_owned()),
        ..s3_settings(&seaweed)
    };
    let deployer = registry.deployer(settings, Secrets::new(Some(secrets_dir)));

    // A CDN API stand-in answering the one invalidation it expects.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/purge", listener.local_addr().expect("addr"));
    let cdn = std::thread::spawn(move || {
        use std::io::{BufRead, BufReader, Write};
        let (stream, _) = listener.accept().expect("accept");
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut request_line = String::new();
        reader.read_line(&mut request_line).expect("read");
        let mut stream = stream;
        stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            .expect("respond");
        request_line
    });
    let environment = environment(
        SiteDestination::parse("s3://prod-sites/web").expect("destination"),
        Some(InvalidationHook::Http(HttpUrl::parse(&url).expect("url"))),
    );
    let (outcome, log) = deploy(&deployer, &order(9, &digest), &environment, 1).await;
    let note = outcome.unwrap_or_else(|error| panic!("{error}: {log:#?}"));
    assert!(note.contains("3 uploaded"), "{note}");
    assert!(note.contains("CDN invalidated"), "{note}");
    assert!(cdn.join().expect("cdn").starts_with("POST /purge"));

    let client = seaweed.client();
    use object_store::ObjectStoreExt;
    let index = client
        .get(&object_store::path::Path::from("web/index.html"))
        .await
        .expect("index.html uploaded")
        .bytes()
        .await
        .expect("body");
    assert_eq!(index.as_ref(), b"<h1>v1</h1>");
    let observe = ObserveContext {
        application: "web",
        environment: "prod",
        spec: &environment,
        repository: REPOSITORY,
    };
    assert_eq!(
        deployer.observe(&observe).await,
        Ok(Some(digest.to_string()))
    );
}

#[tokio::test]
async fn an_unreachable_bucket_is_transient_and_a_missing_secret_is_not() {
    let registry = Registry::new().await;
    let digest = registry.push_files(SITE).await;
    let work = registry.dir.path().join("work");
    let secrets_dir = registry.dir.path().join("secrets");
    std::fs::create_dir_all(&secrets_dir).expect("mkdir");
    std::fs::write(secrets_dir.join("s3-key"), "secret").expect("secret");
    let unreachable = site::S3Settings {
        endpoint: Some("http://127.0.0.1:9".to_owned()),
        access_key_id: Some("key".to_owned()),
        secret_access_key_ref: Some("s3-key".to_owned()),
        allow_http: true,
        request_timeout_secs: 2,
        ..site::S3Settings::default()
    };
    let environment = environment(
        SiteDestination::parse("s3://sites/web").expect("destination"),
        None,
    );

    let mut with_secret = settings(&work);
    with_secret.s3 = unreachable.clone();
    let deployer = registry.deployer(with_secret, Secrets::new(Some(secrets_dir.clone())));
    let (outcome, _) = deploy(&deployer, &order(3, &digest), &environment, 1).await;
    assert!(
        matches!(outcome, Err(DeployError::Transient(_))),
        "{outcome:?}"
    );
    assert!(
        listing(&work).is_empty(),
        "the work directory was not cleaned"
    );

    let mut missing_secret = settings(&work);
    missing_secret.s3 = site::S3Settings {
        secret_access_key_ref: Some("absent".to_owned()),
        ..unreachable
    };
    let deployer = registry.deployer(missing_secret, Secrets::new(Some(secrets_dir)));
    let (outcome, _) = deploy(&deployer, &order(3, &digest), &environment, 2).await;
    assert!(
        matches!(&outcome, Err(DeployError::Failed(m)) if m.contains("secret")),
        "{outcome:?}"
    );
}
