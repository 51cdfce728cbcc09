//! Static-site artifacts are checked at push: a manifest with `artifactType`
//! `application/vnd.gantry.site.v1+zip` is stored only when it has the site shape and
//! its zip layer passes the archive check; a hostile archive is refused with
//! `MANIFEST_INVALID`, a message naming why, and nothing stored.

use domain::Digest;
use http::StatusCode;
use registry::{OCI_MANIFEST, RegistryConfig, SiteArchiveChecks};
use serde_json::json;
use testkit::{TestApp, TestResponse};

use crate::support::{
    Blob, Manifest, assert_error, assert_status, error_message, get, push_blob, push_image,
    push_site, put_manifest,
};

const REPOSITORY: &str = "acme/site";

/// A zip archive written byte by byte, so that a test can say what no well-behaved
/// writer would: names that escape, links, duplicates, sizes that lie. Entries are
/// stored (not compressed).
#[derive(Clone)]
struct RawEntry {
    name: String,
    data: Vec<u8>,
    /// The size the headers declare the data expands to.
    declared_size: u32,
    /// Unix file type and permission bits.
    mode: u32,
}

impl RawEntry {
    fn file(name: &str, data: &[u8]) -> RawEntry {
        RawEntry {
            name: name.to_owned(),
            data: data.to_vec(),
            declared_size: data.len() as u32,
            mode: 0o100_644,
        }
    }

    fn symlink(name: &str, target: &str) -> RawEntry {
        RawEntry {
            mode: 0o120_777,
            ..RawEntry::file(name, target.as_bytes())
        }
    }

    fn declaring(self, declared_size: u32) -> RawEntry {
        RawEntry {
            declared_size,
            ..self
        }
    }
}

/// The archive of `entries`: local headers and data, the central directory, its end.
fn raw_zip(entries: &[RawEntry]) -> Vec<u8> {
    fn u16le(out: &mut Vec<u8>, value: u16) {
        out.extend_from_slice(&value.to_le_bytes());
    }
    fn u32le(out: &mut Vec<u8>, value: u32) {
        out.extend_from_slice(&value.to_le_bytes());
    }
    // Fields shared by the local header and the central-directory record: version
    // needed, flags, method (stored), time, date (1980-01-01), CRC-32, sizes, name length.
    fn common(out: &mut Vec<u8>, entry: &RawEntry) {
        u16le(out, 20);
        u16le(out, 0);
        u16le(out, 0);
        u16le(out, 0);
        u16le(out, 0x21);
        u32le(out, crc32(&entry.data));
        u32le(out, entry.data.len() as u32);
        u32le(out, entry.declared_size);
        u16le(out, entry.name.len() as u16);
    }

    let mut out = Vec::new();
    let mut offsets = Vec::new();
    for entry in entries {
        offsets.push(out.len() as u32);
        u32le(&mut out, 0x0403_4b50);
        common(&mut out, entry);
        u16le(&mut out, 0); // extra field length
        out.extend_from_slice(entry.name.as_bytes());
        out.extend_from_slice(&entry.data);
    }
    let directory_start = out.len() as u32;
    for (entry, offset) in entries.iter().zip(offsets) {
        u32le(&mut out, 0x0201_4b50);
        u16le(&mut out, (3 << 8) | 20); // made by: Unix, spec 2.0
        common(&mut out, entry);
        u16le(&mut out, 0); // extra field length
        u16le(&mut out, 0); // comment length
        u16le(&mut out, 0); // disk number
        u16le(&mut out, 0); // internal attributes
        u32le(&mut out, entry.mode << 16);
        u32le(&mut out, offset);
        out.extend_from_slice(entry.name.as_bytes());
    }
    let directory_size = out.len() as u32 - directory_start;
    u32le(&mut out, 0x0605_4b50);
    u16le(&mut out, 0); // this disk
    u16le(&mut out, 0); // disk of the directory
    u16le(&mut out, entries.len() as u16);
    u16le(&mut out, entries.len() as u16);
    u32le(&mut out, directory_size);
    u32le(&mut out, directory_start);
    u16le(&mut out, 0); // comment length
    out
}

/// CRC-32 (IEEE), as zip headers carry it.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for byte in data {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Bytes that do not compress: a xorshift sequence from `seed`.
fn incompressible(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// `files` packed into a zip by the site packer, checked only under `limits`, so that
/// what the packer would refuse by default can still be built.
fn packed(files: &[(&str, &[u8])], limits: &site_archive::ArchiveLimits) -> Vec<u8> {
    let directory = tempfile::tempdir().expect("temporary directory");
    for (name, content) in files {
        std::fs::write(directory.path().join(name), content).expect("a file");
    }
    let packed =
        site_archive::pack(directory.path(), limits, &mut |_| {}).expect("the build packs");
    std::fs::read(packed.path()).expect("the packed archive")
}

/// No limit a packed test site could reach.
fn unlimited() -> site_archive::ArchiveLimits {
    site_archive::ArchiveLimits {
        max_entries: u64::MAX,
        max_expanded_bytes: u64::MAX,
        max_ratio: u64::MAX,
        ratio_floor_bytes: u64::MAX,
    }
}

/// The manifest `gantry push site` writes for `zip`.
fn site_manifest_of(zip: &[u8]) -> Manifest {
    Manifest::from_bytes(
        site_archive::OCI_IMAGE_MANIFEST,
        site_archive::site_manifest(
            &Digest::sha256_of(zip),
            zip.len() as u64,
            &Default::default(),
        ),
    )
}

/// Pushes `zip` and the empty config as blobs, then its site manifest as `tag`.
async fn push_site_archive(app: &TestApp, tag: &str, zip: &[u8]) -> (Manifest, TestResponse) {
    push_blob(
        app,
        REPOSITORY,
        &Blob::new(site_archive::EMPTY_CONFIG.to_vec()),
    )
    .await;
    push_blob(app, REPOSITORY, &Blob::new(zip.to_vec())).await;
    let manifest = site_manifest_of(zip);
    let response = put_manifest(app, REPOSITORY, tag, &manifest).await;
    (manifest, response)
}

/// Asserts that the push was refused as an invalid manifest whose message says `why`,
/// and that neither the manifest nor the tag exists afterwards.
#[track_caller]
fn assert_refused(label: &str, response: &TestResponse, why: &str) {
    assert_error(response, StatusCode::BAD_REQUEST, "MANIFEST_INVALID");
    let message = error_message(response);
    assert!(
        message.contains(why),
        "{label}: the message {message:?} does not say {why:?}"
    );
}

async fn assert_nothing_stored(app: &TestApp, label: &str, manifest: &Manifest, tag: &str) {
    for reference in [tag, manifest.digest.as_str()] {
        let response = get(app, &format!("/v2/{REPOSITORY}/manifests/{reference}")).await;
        assert_eq!(
            (response.status, response.error_code().as_str()),
            (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN"),
            "{label}: {reference} after the refusal: {}",
            response.text()
        );
    }
    let tags = get(app, &format!("/v2/{REPOSITORY}/tags/list")).await;
    assert_status(&tags, StatusCode::OK);
    let listed = tags.json()["tags"].as_array().cloned().unwrap_or_default();
    assert!(
        !listed.contains(&json!(tag)),
        "{label}: tag {tag} is listed: {listed:?}"
    );
}

/// Small limits, so that a test site can exceed them: at most 8 entries, 64 KiB in
/// all, and a ratio of 10 once an entry expands to 4 KiB.
fn small_limits_config() -> RegistryConfig {
    RegistryConfig {
        site_archives: SiteArchiveChecks {
            limits: site_archive::ArchiveLimits {
                max_entries: 8,
                max_expanded_bytes: 64 << 10,
                max_ratio: 10,
                ratio_floor_bytes: 4 << 10,
            },
            ..SiteArchiveChecks::default()
        },
        ..RegistryConfig::default()
    }
}

fn max_archive_config() -> RegistryConfig {
    RegistryConfig {
        site_archives: SiteArchiveChecks {
            max_archive_bytes: 1000,
            ..SiteArchiveChecks::default()
        },
        ..RegistryConfig::default()
    }
}

registry_tests! {
    async fn a_well_formed_site_is_stored_and_tagged(app) {
        let (manifest, zip) = push_site(
            &app,
            REPOSITORY,
            "0123abcd",
            &[("index.html", b"<h1>hello</h1>"), ("assets/app.js", b"console.log(1)")],
        )
        .await;
        let stored = get(&app, &format!("/v2/{REPOSITORY}/manifests/0123abcd")).await;
        assert_status(&stored, StatusCode::OK);
        assert_eq!(stored.header("docker-content-digest"), Some(manifest.digest.as_str()));
        assert_eq!(stored.body.as_ref(), manifest.bytes.as_slice());
        let archive = get(&app, &format!("/v2/{REPOSITORY}/blobs/{}", Digest::sha256_of(&zip))).await;
        assert_status(&archive, StatusCode::OK);
        assert_eq!(archive.body.as_ref(), zip.as_slice());
    }

    async fn hostile_archives_are_refused_each_for_its_reason_and_nothing_is_stored(app) {
        let page = || RawEntry::file("index.html", b"<h1>hello</h1>");
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            (
                "zip slip",
                raw_zip(&[page(), RawEntry::file("../x", b"escaped")]),
                r#"entry "../x": the name contains a `..` component"#,
            ),
            (
                "zip slip inside a path",
                raw_zip(&[page(), RawEntry::file("assets/../../x", b"escaped")]),
                r#"entry "assets/../../x": the name contains a `..` component"#,
            ),
            (
                "an absolute path",
                raw_zip(&[page(), RawEntry::file("/etc/cron.d/x", b"* * * * * root id")]),
                r#"entry "/etc/cron.d/x": the name is absolute"#,
            ),
            (
                "a symbolic link",
                raw_zip(&[page(), RawEntry::symlink("passwd", "/etc/passwd")]),
                r#"entry "passwd" is a symbolic link"#,
            ),
            (
                "duplicate names",
                raw_zip(&[page(), RawEntry::file("index.html", b"<h1>other</h1>")]),
                "the archive names the same entry twice",
            ),
            (
                "a declared size larger than the data",
                raw_zip(&[page(), RawEntry::file("app.js", b"let a = 1;").declaring(4000)]),
                r#"entry "app.js" holds 10 bytes, not its declared 4000"#,
            ),
            (
                "a declared size smaller than the data",
                raw_zip(&[page(), RawEntry::file("app.js", b"let a = 1;").declaring(3)]),
                r#"entry "app.js" holds more than its declared 3 bytes"#,
            ),
            ("not a zip", b"<html>this is not an archive</html>".to_vec(), "not a readable zip archive"),
            ("empty", Vec::new(), "not a readable zip archive"),
        ];
        for (index, (label, zip, why)) in cases.iter().enumerate() {
            let tag = format!("hostile-{index}");
            let (manifest, response) = push_site_archive(&app, &tag, zip).await;
            assert_refused(label, &response, why);
            assert!(
                error_message(&response).starts_with(&format!(
                    "the site archive {} is refused: ",
                    Digest::sha256_of(zip)
                )),
                "{label}: {}",
                error_message(&response)
            );
            assert_nothing_stored(&app, label, &manifest, &tag).await;
        }
    }

    async fn a_zip_bomb_over_the_ratio_limit_is_refused(app = small_limits_config()) {
        let zeros = vec![0u8; 256 << 10];
        let bomb = packed(&[("index.html", b"<h1>hi</h1>"), ("bomb.bin", &zeros)], &unlimited());
        assert!(bomb.len() < 4 << 10, "the bomb compresses: {} bytes", bomb.len());
        let (manifest, response) = push_site_archive(&app, "bomb", &bomb).await;
        assert_refused("zip bomb", &response, "entry \"bomb.bin\" expands");
        assert!(error_message(&response).contains("at most 10x is allowed"), "{}", error_message(&response));
        assert_nothing_stored(&app, "zip bomb", &manifest, "bomb").await;
    }

    async fn an_archive_expanding_past_the_size_limit_is_refused(app = small_limits_config()) {
        let first = incompressible(40 << 10, 1);
        let second = incompressible(40 << 10, 2);
        let large = packed(&[("a.bin", &first), ("b.bin", &second)], &unlimited());
        let (manifest, response) = push_site_archive(&app, "large", &large).await;
        assert_refused("too large", &response, "the archive expands to more than 65536 bytes");
        assert_nothing_stored(&app, "too large", &manifest, "large").await;
    }

    async fn an_archive_with_too_many_entries_is_refused(app = small_limits_config()) {
        let names: Vec<String> = (0..9).map(|i| format!("page{i}.html")).collect();
        let entries: Vec<RawEntry> = names.iter().map(|name| RawEntry::file(name, b"<p>")).collect();
        let (manifest, response) = push_site_archive(&app, "many", &raw_zip(&entries)).await;
        assert_refused("too many entries", &response, "the archive holds 9 entries; at most 8 are allowed");
        assert_nothing_stored(&app, "too many entries", &manifest, "many").await;
    }

    async fn the_same_site_within_the_limits_is_stored_under_small_limits(app = small_limits_config()) {
        let zip = raw_zip(&[RawEntry::file("index.html", b"<h1>hello</h1>")]);
        let (manifest, response) = push_site_archive(&app, "fine", &zip).await;
        assert_status(&response, StatusCode::CREATED);
        assert_eq!(response.header("docker-content-digest"), Some(manifest.digest.as_str()));
        assert_status(&get(&app, &format!("/v2/{REPOSITORY}/manifests/fine")).await, StatusCode::OK);
    }

    async fn an_archive_larger_than_the_archive_limit_is_refused_before_it_is_read(app = max_archive_config()) {
        let zip = packed(&[("index.html", &incompressible(2000, 3))], &unlimited());
        let (manifest, response) = push_site_archive(&app, "big", &zip).await;
        assert_refused("archive limit", &response, "at most 1000 are accepted");
        assert_nothing_stored(&app, "archive limit", &manifest, "big").await;
    }

    async fn a_site_manifest_with_two_layers_or_another_layer_type_is_refused(app) {
        let zip = raw_zip(&[RawEntry::file("index.html", b"<h1>hello</h1>")]);
        let second = raw_zip(&[RawEntry::file("other.html", b"<h1>other</h1>")]);
        let config = Blob::new(site_archive::EMPTY_CONFIG.to_vec());
        push_blob(&app, REPOSITORY, &config).await;
        push_blob(&app, REPOSITORY, &Blob::new(zip.clone())).await;
        push_blob(&app, REPOSITORY, &Blob::new(second.clone())).await;
        let site_json = |layers: Vec<serde_json::Value>| {
            Manifest::from_json(&json!({
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "artifactType": site_archive::SITE_ARTIFACT_TYPE,
                "config": config.descriptor(site_archive::EMPTY_CONFIG_MEDIA_TYPE),
                "layers": layers,
            }))
        };
        let cases = [
            (
                "two layers",
                site_json(vec![
                    Blob::new(zip.clone()).descriptor("application/zip"),
                    Blob::new(second.clone()).descriptor("application/zip"),
                ]),
                "exactly one layer of type application/zip, not [application/zip, application/zip]",
            ),
            (
                "a tar layer",
                site_json(vec![Blob::new(zip.clone()).descriptor("application/vnd.oci.image.layer.v1.tar")]),
                "not [application/vnd.oci.image.layer.v1.tar]",
            ),
            (
                "no layer",
                site_json(vec![]),
                "exactly one layer",
            ),
            (
                "an image config",
                Manifest::from_json(&json!({
                    "schemaVersion": 2,
                    "mediaType": OCI_MANIFEST,
                    "artifactType": site_archive::SITE_ARTIFACT_TYPE,
                    "config": config.descriptor("application/vnd.oci.image.config.v1+json"),
                    "layers": [Blob::new(zip.clone()).descriptor("application/zip")],
                })),
                "the config must be the empty descriptor",
            ),
        ];
        for (index, (label, manifest, why)) in cases.iter().enumerate() {
            let tag = format!("shape-{index}");
            let response = put_manifest(&app, REPOSITORY, &tag, manifest).await;
            assert_refused(label, &response, why);
            assert!(
                error_message(&response).contains("not a well-formed application/vnd.gantry.site.v1+zip artifact"),
                "{label}: {}",
                error_message(&response)
            );
            assert_nothing_stored(&app, label, manifest, &tag).await;
        }
    }

    async fn a_site_manifest_whose_layer_size_disagrees_with_the_blob_is_refused(app) {
        let zip = raw_zip(&[RawEntry::file("index.html", b"<h1>hello</h1>")]);
        push_blob(&app, REPOSITORY, &Blob::new(site_archive::EMPTY_CONFIG.to_vec())).await;
        push_blob(&app, REPOSITORY, &Blob::new(zip.clone())).await;
        let manifest = Manifest::from_bytes(
            site_archive::OCI_IMAGE_MANIFEST,
            site_archive::site_manifest(&Digest::sha256_of(&zip), zip.len() as u64 + 1, &Default::default()),
        );
        let response = put_manifest(&app, REPOSITORY, "lying", &manifest).await;
        assert_refused(
            "size",
            &response,
            &format!("the manifest says it is {} bytes, but {} are stored", zip.len() + 1, zip.len()),
        );
        assert_nothing_stored(&app, "size", &manifest, "lying").await;
    }

    async fn a_site_archive_of_another_repository_is_not_read(app) {
        let zip = raw_zip(&[RawEntry::symlink("passwd", "/etc/passwd")]);
        push_blob(&app, "acme/elsewhere", &Blob::new(zip.clone())).await;
        push_blob(&app, REPOSITORY, &Blob::new(site_archive::EMPTY_CONFIG.to_vec())).await;
        let manifest = site_manifest_of(&zip);
        let response = put_manifest(&app, REPOSITORY, "borrowed", &manifest).await;
        assert_error(&response, StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN");
        assert_eq!(response.json()["errors"][0]["detail"]["digest"], json!(Digest::sha256_of(&zip).to_string()));
        assert!(!error_message(&response).contains("symbolic link"), "{}", error_message(&response));
        assert_nothing_stored(&app, "borrowed", &manifest, "borrowed").await;
    }

    async fn images_and_other_artifacts_are_not_checked_as_sites(app) {
        // An image whose layer is no zip at all.
        let image = push_image(&app, REPOSITORY, "v1", "plain").await;
        assert_status(&get(&app, &format!("/v2/{REPOSITORY}/manifests/{}", image.manifest.digest)).await, StatusCode::OK);
        // An artifact of another type whose application/zip layer would be refused as a site.
        let hostile = raw_zip(&[RawEntry::file("../x", b"escaped")]);
        let config = Blob::new(site_archive::EMPTY_CONFIG.to_vec());
        push_blob(&app, REPOSITORY, &config).await;
        push_blob(&app, REPOSITORY, &Blob::new(hostile.clone())).await;
        let other = Manifest::from_json(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": "application/vnd.example.bundle.v1+zip",
            "config": config.descriptor(site_archive::EMPTY_CONFIG_MEDIA_TYPE),
            "layers": [Blob::new(hostile).descriptor("application/zip")],
        }));
        let response = put_manifest(&app, REPOSITORY, "bundle", &other).await;
        assert_status(&response, StatusCode::CREATED);
        assert_status(&get(&app, &format!("/v2/{REPOSITORY}/manifests/bundle")).await, StatusCode::OK);
    }
}

/// Each check copies the archive into the configured directory and removes the copy
/// when it is done, accepted or refused.
async fn archive_copies_are_removed_after_each_check(backend: testkit::Backend) {
    let directory = tempfile::tempdir().expect("temporary directory");
    let config = RegistryConfig {
        site_archives: SiteArchiveChecks {
            temp_dir: Some(directory.path().to_owned()),
            ..SiteArchiveChecks::default()
        },
        ..RegistryConfig::default()
    };
    let app = TestApp::spawn_with(backend, config).await;
    let good = raw_zip(&[RawEntry::file("index.html", b"<h1>hello</h1>")]);
    let (_, response) = push_site_archive(&app, "good", &good).await;
    assert_status(&response, StatusCode::CREATED);
    let bad = raw_zip(&[RawEntry::symlink("passwd", "/etc/passwd")]);
    let (_, response) = push_site_archive(&app, "bad", &bad).await;
    assert_refused("link", &response, "is a symbolic link");
    let left: Vec<_> = std::fs::read_dir(directory.path())
        .expect("the check directory")
        .map(|entry| entry.expect("an entry").file_name())
        .collect();
    assert!(left.is_empty(), "copies left behind: {left:?}");

    // A directory that cannot be written to fails the push as a server error, and
    // stores nothing.
    let missing = directory.path().join("missing");
    let config = RegistryConfig {
        site_archives: SiteArchiveChecks {
            temp_dir: Some(missing),
            ..SiteArchiveChecks::default()
        },
        ..RegistryConfig::default()
    };
    let app = TestApp::spawn_with(backend, config).await;
    let (manifest, response) = push_site_archive(&app, "good", &good).await;
    assert_error(
        &response,
        StatusCode::INTERNAL_SERVER_ERROR,
        "INTERNAL_ERROR",
    );
    assert_nothing_stored(&app, "no check directory", &manifest, "good").await;
}

mod copies {
    both_backends!(archive_copies_are_removed_after_each_check);
    use super::archive_copies_are_removed_after_each_check;
}
