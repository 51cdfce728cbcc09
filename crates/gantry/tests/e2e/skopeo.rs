//! skopeo moves images into and out of Gantry, and between Gantry and the reference
//! registry, with every manifest digest preserved: on SQLite, on PostgreSQL, and
//! with the blobs in an S3 bucket (SeaweedFS), its keys from the environment or from
//! a profile of a shared credentials file.

use std::process::Command;

use crate::support::{
    GantryServer, PeerRegistry, Seaweed, curl, make_image, run, served_manifest_digest, skopeo,
    stdout_of,
};

fn sqlite_server(dir: &std::path::Path) -> GantryServer {
    GantryServer::start(dir, &[], &[])
}

/// Pushes an image of several layers to `address` with `creds`, then pulls it back,
/// checking the manifest's digest and every layer's bytes.
pub(crate) fn copy_multi_layer_image_in_and_out(address: &str, creds: &str) {
    let work = tempfile::tempdir().expect("temporary directory");
    let layout = work.path().join("image");
    let image = &make_image(&layout, &["--layers", "5x256K,2M", "--tag", "v1"])[0];
    let want = image["manifest"]
        .as_str()
        .expect("manifest digest")
        .to_owned();
    let target = format!("{address}/acme/web-app:v1");
    run(skopeo()
        .args(["copy", "--dest-tls-verify=false", "--dest-creds", creds])
        .arg(format!("oci:{}:v1", layout.display()))
        .arg(format!("docker://{target}")));
    assert_eq!(served_manifest_digest(&target, Some(creds)), want);
    let pulled = work.path().join("pulled");
    run(skopeo()
        .args(["copy", "--src-tls-verify=false", "--src-creds", creds])
        .arg(format!("docker://{target}"))
        .arg(format!("oci:{}:v1", pulled.display())));
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(pulled.join("index.json")).expect("pulled index"))
            .expect("json");
    assert_eq!(
        index["manifests"][0]["digest"].as_str(),
        Some(want.as_str())
    );
    for layer in image["layers"].as_array().expect("layers") {
        let digest = layer["digest"].as_str().expect("digest");
        let path = pulled
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"));
        let bytes = std::fs::read(&path).expect("pulled layer exists");
        assert_eq!(
            format!("sha256:{}", crate::support::sha256_hex(&bytes)),
            digest,
            "layer bytes intact"
        );
    }
}

#[test]
fn skopeo_copies_a_multi_layer_image_in_and_out_with_its_digest_on_sqlite() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let server = sqlite_server(dir.path());
    copy_multi_layer_image_in_and_out(&server.address, &server.creds());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_copies_a_multi_layer_image_in_and_out_with_its_digest_on_postgres() {
    let database = testkit::TestDatabase::create(testkit::Backend::Postgres).await;
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = database.url().to_owned();
    tokio::task::spawn_blocking(move || {
        let server = GantryServer::start(dir.path(), &["--database-url", &url], &[]);
        copy_multi_layer_image_in_and_out(&server.address, &server.creds());
        assert!(
            server.log().contains("database=\"postgres\""),
            "the server used PostgreSQL: {}",
            server.log()
        );
    })
    .await
    .expect("test thread");
}

#[test]
fn skopeo_copies_a_multi_layer_image_in_and_out_with_its_digest_on_s3() {
    let seaweed = Seaweed::start(&["registry"]);
    let dir = tempfile::tempdir().expect("temporary directory");
    let blob_store = format!("s3://registry/gantry?endpoint={}", seaweed.endpoint);
    let server = GantryServer::start(
        dir.path(),
        &["--blob-store", &blob_store],
        &[
            ("AWS_ACCESS_KEY_ID", &seaweed.access_key),
            ("AWS_SECRET_ACCESS_KEY", &seaweed.secret_key),
        ],
    );
    copy_multi_layer_image_in_and_out(&server.address, &server.creds());
    let log = server.log();
    assert!(log.contains("blob_store=\"s3://registry/gantry"), "{log}");
    assert!(
        !log.contains(&seaweed.secret_key),
        "the secret is never logged: {log}"
    );
    // The layers are in the bucket, under the prefix, content-addressed.
    let keys = seaweed.boto3(
        "for page in S3.get_paginator('list_objects_v2').paginate(Bucket='registry'):\n\
         \x20   for item in page.get('Contents', []): print(item['Key'])\n",
        &[],
    );
    assert!(
        keys.lines()
            .any(|key| key.starts_with("gantry/blobs/sha256/")),
        "{keys}"
    );
    assert!(
        !dir.path().join("gantry-data/blobs").exists(),
        "nothing is stored on the local disk"
    );
}

#[test]
fn the_s3_keys_can_come_from_a_profile_of_a_shared_credentials_file() {
    let seaweed = Seaweed::start(&["fromfile"]);
    let dir = tempfile::tempdir().expect("temporary directory");
    let file = dir.path().join("credentials");
    std::fs::write(
        &file,
        format!(
            "[default]\naws_access_key_id = not-these\naws_secret_access_key = nor-this\n\n\
             [gantry]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            seaweed.access_key, seaweed.secret_key
        ),
    )
    .expect("write the credentials file");
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod 600");
    let file = file.display().to_string();
    let blob_store = format!("s3://fromfile/gantry?endpoint={}", seaweed.endpoint);
    // No keys in the environment: empty variables count as unset.
    let env = |profile: &'static str| {
        [
            ("AWS_ACCESS_KEY_ID", ""),
            ("AWS_SECRET_ACCESS_KEY", ""),
            ("AWS_SHARED_CREDENTIALS_FILE", file.as_str()),
            ("AWS_PROFILE", profile),
        ]
    };
    let server = GantryServer::start(dir.path(), &["--blob-store", &blob_store], &env("gantry"));
    // The default profile's keys would be refused by the bucket: these are gantry's.
    copy_multi_layer_image_in_and_out(&server.address, &server.creds());
    let log = server.log();
    assert!(
        !log.contains(&seaweed.secret_key) && !log.contains("readable by other users"),
        "{log}"
    );
    drop(server);

    // A profile the file does not have: the server does not start, and says why.
    let mut command = Command::new(env!("CARGO_BIN_EXE_gantry"));
    command
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--blob-store",
            &blob_store,
        ])
        .current_dir(dir.path())
        .env_remove("GANTRY_DATABASE_URL")
        .env_remove("GANTRY_BLOB_STORE");
    for (key, value) in env("prod") {
        command.env(key, value);
    }
    let refused = command.output().expect("run gantry serve");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains("[prod]") && stderr.contains(&file),
        "the error names the profile and the file: {stderr}"
    );
    assert!(!stderr.contains(&seaweed.secret_key), "{stderr}");
}

#[test]
fn with_redirects_on_s3_blobs_are_downloaded_from_the_bucket_by_presigned_urls() {
    let seaweed = Seaweed::start(&["direct"]);
    let dir = tempfile::tempdir().expect("temporary directory");
    let blob_store = format!(
        "s3://direct/gantry?endpoint={}&redirect=true",
        seaweed.endpoint
    );
    let server = GantryServer::start(
        dir.path(),
        &["--blob-store", &blob_store],
        &[
            ("AWS_ACCESS_KEY_ID", &seaweed.access_key),
            ("AWS_SECRET_ACCESS_KEY", &seaweed.secret_key),
        ],
    );
    // skopeo follows the redirects and checks every byte.
    copy_multi_layer_image_in_and_out(&server.address, &server.creds());
    let manifest = stdout_of(
        skopeo()
            .args([
                "inspect",
                "--raw",
                "--tls-verify=false",
                "--creds",
                &server.creds(),
            ])
            .arg(format!("docker://{}/acme/web-app:v1", server.address)),
    );
    let manifest: serde_json::Value = serde_json::from_str(&manifest).expect("a manifest");
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .expect("a layer")
        .to_owned();
    let url = format!("http://{}/v2/acme/web-app/blobs/{layer}", server.address);
    // Without credentials: refused before any redirect.
    let answer = curl(&url, &[]);
    assert_eq!(answer.status, 401, "{}", answer.body);
    // With them: a redirect into the bucket, which serves the bytes and ranges.
    let answer = curl(&url, &["-u", &server.creds()]);
    assert_eq!(answer.status, 307, "{}", answer.body);
    let location = answer.header("location").expect("a location").to_owned();
    assert!(
        location.starts_with(&format!("{}/direct/gantry/blobs/sha256/", seaweed.endpoint)),
        "{location}"
    );
    assert_eq!(answer.header("docker-content-digest"), Some(layer.as_str()));
    let bytes = run(Command::new("curl")
        .args(["-s", "-L", "-u", &server.creds()])
        .arg(&url))
    .stdout;
    assert_eq!(
        format!("sha256:{}", crate::support::sha256_hex(&bytes)),
        layer
    );
    let part = run(Command::new("curl")
        .args(["-s", "-L", "-r", "10-19", "-u", &server.creds()])
        .arg(&url))
    .stdout;
    assert_eq!(
        part,
        bytes[10..20].to_vec(),
        "a range is served by the bucket"
    );
    // HEAD is still answered by Gantry.
    let answer = curl(&url, &["-I", "-u", &server.creds()]);
    assert_eq!(answer.status, 200);
}

#[test]
fn skopeo_copies_a_two_platform_index_with_every_child() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let server = sqlite_server(dir.path());
    let layout = dir.path().join("index");
    let info = &make_image(
        &layout,
        &[
            "--layers",
            "2x100K",
            "--tag",
            "multi",
            "--platforms",
            "linux/amd64,linux/arm64",
        ],
    )[0];
    let target = format!("{}/acme/multi:1.0", server.address);
    run(skopeo()
        .args([
            "copy",
            "--all",
            "--dest-tls-verify=false",
            "--dest-creds",
            &server.creds(),
        ])
        .arg(format!("oci:{}:multi", layout.display()))
        .arg(format!("docker://{target}")));
    assert_eq!(
        served_manifest_digest(&target, Some(&server.creds())),
        info["manifest"].as_str().expect("digest")
    );
    for child in info["images"].as_array().expect("images") {
        let digest = child["manifest"].as_str().expect("child digest");
        let by_digest = format!("{}/acme/multi@{digest}", server.address);
        assert_eq!(
            served_manifest_digest(&by_digest, Some(&server.creds())),
            digest
        );
    }
    let pulled = dir.path().join("pulled");
    run(skopeo()
        .args([
            "copy",
            "--all",
            "--src-tls-verify=false",
            "--src-creds",
            &server.creds(),
        ])
        .arg(format!("docker://{target}"))
        .arg(format!("oci:{}:multi", pulled.display())));
    let raw = run(skopeo()
        .args(["inspect", "--raw"])
        .arg(format!("oci:{}:multi", pulled.display())))
    .stdout;
    assert_eq!(
        format!("sha256:{}", crate::support::sha256_hex(&raw)),
        info["manifest"].as_str().expect("digest")
    );
}

#[test]
fn skopeo_inspect_reports_the_tags_layers_and_labels() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let server = sqlite_server(dir.path());
    let layout = dir.path().join("image");
    let image = &make_image(&layout, &["--layers", "3x10K", "--tag", "v1"])[0];
    for tag in ["v1", "v2"] {
        run(skopeo()
            .args([
                "copy",
                "--dest-tls-verify=false",
                "--dest-creds",
                &server.creds(),
            ])
            .arg(format!("oci:{}:v1", layout.display()))
            .arg(format!("docker://{}/team/sub/app:{tag}", server.address)));
    }
    let out = run(skopeo()
        .args(["inspect", "--tls-verify=false", "--creds", &server.creds()])
        .arg(format!("docker://{}/team/sub/app:v1", server.address)))
    .stdout;
    let inspected: serde_json::Value = serde_json::from_slice(&out).expect("inspect prints JSON");
    assert_eq!(inspected["Digest"].as_str(), image["manifest"].as_str());
    let tags: Vec<&str> = inspected["RepoTags"]
        .as_array()
        .expect("tags")
        .iter()
        .filter_map(|t| t.as_str())
        .collect();
    assert_eq!(tags, ["v1", "v2"]);
    assert_eq!(inspected["Layers"].as_array().expect("layers").len(), 3);
    assert_eq!(inspected["Labels"]["mkimage.tag"].as_str(), Some("v1"));
}

#[test]
fn images_travel_from_gantry_to_the_reference_registry_and_back_unchanged() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let server = sqlite_server(dir.path());
    let peer = PeerRegistry::start();
    let layout = dir.path().join("image");
    let image = &make_image(&layout, &["--layers", "4x300K", "--tag", "v1"])[0];
    let want = image["manifest"].as_str().expect("digest");
    let ours = format!("{}/acme/app:v1", server.address);
    let theirs = format!("{}/acme/app:v1", peer.address);
    let back = format!("{}/acme/returned:v1", server.address);
    run(skopeo()
        .args([
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            &server.creds(),
        ])
        .arg(format!("oci:{}:v1", layout.display()))
        .arg(format!("docker://{ours}")));
    run(skopeo()
        .args([
            "copy",
            "--src-tls-verify=false",
            "--src-creds",
            &server.creds(),
            "--dest-tls-verify=false",
        ])
        .arg(format!("docker://{ours}"))
        .arg(format!("docker://{theirs}")));
    assert_eq!(served_manifest_digest(&theirs, None), want);
    run(skopeo()
        .args([
            "copy",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            "--dest-creds",
            &server.creds(),
        ])
        .arg(format!("docker://{theirs}"))
        .arg(format!("docker://{back}")));
    assert_eq!(served_manifest_digest(&back, Some(&server.creds())), want);
}

#[test]
fn a_push_without_credentials_is_refused_and_stores_nothing() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let server = sqlite_server(dir.path());
    let layout = dir.path().join("image");
    make_image(&layout, &["--layers", "10K", "--tag", "v1"]);
    let output = skopeo()
        .args(["copy", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:v1", layout.display()))
        .arg(format!("docker://{}/acme/app:v1", server.address))
        .output()
        .expect("skopeo runs");
    assert!(!output.status.success(), "an anonymous push must fail");
    let catalog = Command::new("curl")
        .args(["-s", "-u", &server.creds()])
        .arg(format!("http://{}/v2/_catalog", server.address))
        .output()
        .expect("curl runs");
    let catalog: serde_json::Value = serde_json::from_slice(&catalog.stdout).expect("catalog JSON");
    assert_eq!(catalog["repositories"], serde_json::json!([]));
}

#[test]
fn with_anonymous_pulls_skopeo_still_pushes_with_credentials_and_pulls_without() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let server = GantryServer::start(dir.path(), &["--anonymous-pull", "true"], &[]);
    let work = tempfile::tempdir().expect("temporary directory");
    let layout = work.path().join("image");
    let image = &make_image(&layout, &["--layers", "2x64K", "--tag", "v1"])[0];
    let target = format!("{}/acme/public:v1", server.address);
    // skopeo learns from the version check that it must authenticate to push.
    run(skopeo()
        .args([
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            &server.creds(),
        ])
        .arg(format!("oci:{}:v1", layout.display()))
        .arg(format!("docker://{target}")));
    // And pulls with no credentials at all, through an anonymous token.
    assert_eq!(
        served_manifest_digest(&target, None),
        image["manifest"].as_str().expect("manifest digest")
    );
    let pulled = work.path().join("pulled");
    run(skopeo()
        .args(["copy", "--src-tls-verify=false"])
        .arg(format!("docker://{target}"))
        .arg(format!("oci:{}:v1", pulled.display())));
}
