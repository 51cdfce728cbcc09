use std::collections::BTreeMap;
use std::sync::Arc;

use blobs::BlobStore;
use bytes::Bytes;
use deploy::{DeployContext, DeployError, DeployLog, Deployer, ObserveContext, Secrets};
use domain::Digest;
use domain::application::{EnvironmentSpec, RegistryCopyTarget, RegistryDestination, Target};
use domain::promotion::DeploymentReason;
use regcopy::{DestinationRegistry, OCI_MANIFEST, RegistryCopyDeployer, RegistryCopySettings};
use store::{DeploymentOrder, ManifestChild, NewManifest, PutManifestOutcome, Store, StoreOptions};

use crate::support::{
    HTPASSWD_HASH, PeerRegistry, RandomBytes, free_port, loopback_policy, repo, skopeo_digest,
};

/// Gantry's store and blob store with one image in `acme/web`.
struct Gantry {
    store: Store,
    blobs: BlobStore,
    digest: Digest,
    blob_count: usize,
    _directory: tempfile::TempDir,
}

async fn gantry_with_an_image() -> Gantry {
    use std::io::Read;
    let directory = tempfile::tempdir().expect("directory");
    let store = Store::open(
        &format!("sqlite://{}", directory.path().join("gantry.db").display()),
        StoreOptions::default(),
    )
    .await
    .expect("store");
    let blobs = BlobStore::open(&directory.path().join("blobs").display().to_string(), false)
        .expect("blob store");
    let repository = store
        .repositories()
        .get_or_create(&repo("acme/web"), "tester")
        .await
        .expect("repository");
    let mut layer = Vec::new();
    RandomBytes::new(90, 700_000)
        .read_to_end(&mut layer)
        .expect("layer bytes");
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let mut children = Vec::new();
    let mut descriptors = Vec::new();
    for (content, media_type) in [
        (layer.as_slice(), "application/vnd.oci.image.layer.v1.tar"),
        (
            config.as_slice(),
            "application/vnd.oci.image.config.v1+json",
        ),
    ] {
        let digest = Digest::sha256_of(content);
        blobs
            .put_small(&digest, Bytes::copy_from_slice(content))
            .await
            .expect("blob");
        store
            .blobs()
            .record(repository.id, &digest, content.len() as i64)
            .await
            .expect("record blob");
        children.push(ManifestChild::Blob {
            digest: digest.clone(),
            size: content.len() as u64,
        });
        descriptors.push(serde_json::json!({
            "mediaType": media_type, "digest": digest.to_string(), "size": content.len(),
        }));
    }
    let content = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptors[1],
        "layers": [descriptors[0]],
    }))
    .expect("manifest");
    let digest = Digest::sha256_of(&content);
    let outcome = store
        .manifests()
        .put(
            &repository,
            &NewManifest {
                digest: digest.clone(),
                media_type: OCI_MANIFEST.to_owned(),
                artifact_type: None,
                subject: None,
                annotations: None,
                content,
                children,
            },
            None,
            "test",
        )
        .await
        .expect("manifest");
    assert_eq!(outcome, PutManifestOutcome::Stored);
    Gantry {
        store,
        blobs,
        digest,
        blob_count: 2,
        _directory: directory,
    }
}

fn order(digest: &str) -> DeploymentOrder {
    DeploymentOrder {
        deployment_id: 7,
        application: "web".to_owned(),
        environment: "prod".to_owned(),
        digest: digest.to_owned(),
        config: None,
        target: "registry-copy".to_owned(),
        reason: DeploymentReason::Promotion,
        promotion_id: Some(3),
        requested_by: "alice".to_owned(),
        tag: None,
    }
}

fn environment(destination: &str) -> EnvironmentSpec {
    EnvironmentSpec {
        target: Target::RegistryCopy(RegistryCopyTarget {
            to: RegistryDestination::parse(destination).expect("destination"),
            env_tag: true,
        }),
        health_check: None,
        auto_rollback: false,
        require_attestation: false,
        config: BTreeMap::new(),
    }
}

/// Runs one deployment and returns its outcome and log.
async fn deploy(
    deployer: &RegistryCopyDeployer,
    order: &DeploymentOrder,
    environment: &EnvironmentSpec,
    attempt: u32,
) -> (Result<String, DeployError>, Vec<String>) {
    let (log, mut lines) = DeployLog::channel();
    let image = format!("gantry.example.com/acme/web@{}", order.digest);
    let job = DeployContext {
        order,
        environment,
        image: &image,
        repository: "acme/web",
        approvers: &[],
        attempt,
        log: &log,
    };
    let outcome = deployer.deploy(&job).await;
    drop(log);
    let mut collected = Vec::new();
    while let Some(line) = lines.recv().await {
        collected.push(line);
    }
    (outcome, collected)
}

#[tokio::test(flavor = "multi_thread")]
async fn deploying_copies_the_digest_tags_it_with_the_environment_and_a_rerun_moves_nothing() {
    let gantry = gantry_with_an_image().await;
    let destination = PeerRegistry::start_with_htpasswd("deployer", HTPASSWD_HASH);
    let secrets_dir = tempfile::tempdir().expect("secrets");
    std::fs::create_dir_all(secrets_dir.path().join("registries")).expect("dir");
    std::fs::write(secrets_dir.path().join("registries/prod"), "s3cret-pass\n").expect("secret");
    let mut registries = BTreeMap::new();
    registries.insert(
        destination.address(),
        DestinationRegistry {
            username: Some("deployer".to_owned()),
            password_secret: Some("registries/prod".to_owned()),
            plain_http: true,
        },
    );
    let deployer = RegistryCopyDeployer::new(
        RegistryCopySettings {
            registries,
            ..RegistryCopySettings::default()
        },
        gantry.store.clone(),
        gantry.blobs.clone(),
        Secrets::new(Some(secrets_dir.path().to_owned())),
        loopback_policy(),
    )
    .expect("settings");
    assert_eq!(deployer.kind(), "registry-copy");
    let spec = environment(&format!("{}/prod/web", destination.address()));
    let order = order(&gantry.digest.to_string());

    let (first, first_log) = deploy(&deployer, &order, &spec, 1).await;

    let note = first.expect("deployed");
    assert!(note.contains(&gantry.digest.to_string()), "{note}");
    let reference = format!("{}/prod/web:prod", destination.address());
    let served = tokio::task::spawn_blocking(move || {
        skopeo_digest(&reference, Some("deployer:s3cret-pass"))
    })
    .await
    .expect("skopeo");
    assert_eq!(served, gantry.digest.to_string());
    assert_eq!(
        first_log
            .iter()
            .filter(|l| l.contains("digest verified"))
            .count(),
        gantry.blob_count,
        "{first_log:#?}"
    );

    let (second, second_log) = deploy(&deployer, &order, &spec, 2).await;

    second.expect("a re-run succeeds");
    assert_eq!(
        second_log
            .iter()
            .filter(|l| l.contains("already at the destination"))
            .count(),
        gantry.blob_count,
        "{second_log:#?}"
    );
    assert!(
        !second_log.iter().any(|l| l.contains("digest verified")),
        "{second_log:#?}"
    );
    let observed = deployer
        .observe(&ObserveContext {
            application: "web",
            environment: "prod",
            spec: &spec,
            repository: "acme/web",
        })
        .await
        .expect("observe");
    assert_eq!(observed, Some(gantry.digest.to_string()));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_registry_is_transient_and_an_unknown_digest_is_permanent() {
    let gantry = gantry_with_an_image().await;
    let port = free_port();
    let mut registries = BTreeMap::new();
    registries.insert(
        format!("127.0.0.1:{port}"),
        DestinationRegistry {
            plain_http: true,
            ..DestinationRegistry::default()
        },
    );
    let deployer = RegistryCopyDeployer::new(
        RegistryCopySettings {
            registries,
            ..RegistryCopySettings::default()
        },
        gantry.store.clone(),
        gantry.blobs.clone(),
        Secrets::default(),
        loopback_policy(),
    )
    .expect("settings");
    let spec = environment(&format!("127.0.0.1:{port}/prod/web"));

    let (unreachable, _) = deploy(&deployer, &order(&gantry.digest.to_string()), &spec, 1).await;
    assert!(
        matches!(unreachable, Err(DeployError::Transient(_))),
        "{unreachable:?}"
    );

    let unknown = format!("sha256:{}", "0".repeat(64));
    let (missing, log) = deploy(&deployer, &order(&unknown), &spec, 1).await;
    let Err(DeployError::Failed(message)) = missing else {
        panic!("expected a permanent failure, got {missing:?}");
    };
    assert!(message.contains("not found"), "{message}");
    assert!(log.iter().any(|l| l.starts_with("failed:")), "{log:#?}");
}

#[test]
fn settings_name_both_user_and_password_secret_or_neither() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let gantry = runtime.block_on(gantry_with_an_image());
    let settings: RegistryCopySettings =
        toml_like(r#"{"registries": {"registry.example.com": {"username": "ci"}}}"#);
    let refused = RegistryCopyDeployer::new(
        settings,
        gantry.store.clone(),
        gantry.blobs.clone(),
        Secrets::default(),
        Arc::new(outbound::Policy::default()),
    )
    .err()
    .expect("a user without a password is refused");
    assert!(refused.to_string().contains("password_secret"), "{refused}");
    let unknown_field = serde_json::from_str::<RegistryCopySettings>(
        r#"{"registries": {"r.example.com": {"password": "x"}}}"#,
    );
    assert!(unknown_field.is_err(), "unknown keys are refused");
    let defaults: RegistryCopySettings = toml_like("{}");
    assert_eq!(defaults.request_timeout_seconds, 30);
    assert_eq!(defaults.parallel_blobs, 4);
}

fn toml_like(json: &str) -> RegistryCopySettings {
    serde_json::from_str(json).expect("settings")
}
