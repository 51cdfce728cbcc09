//! Shared test helpers: site directories, and the settings that reach a real S3
//! (testkit's SeaweedFS).

use std::path::Path;

use site::{ArchiveLimits, PackedSite, S3Settings, UnpackedSite, pack, unpack};

pub(crate) use testkit::seaweed::{ACCESS_KEY, SECRET_KEY, Seaweed};

/// Writes `files` (path → content) under `dir`.
pub(crate) fn write_site(dir: &Path, files: &[(&str, &[u8])]) {
    for (name, content) in files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        std::fs::write(path, content).expect("write");
    }
}

/// Packs `files` and unpacks the archive into `work/NAME`, as a deployment would.
pub(crate) fn staged_site(
    work: &Path,
    name: &str,
    files: &[(&str, &[u8])],
) -> (PackedSite, UnpackedSite) {
    let source = work.join(format!("{name}-source"));
    write_site(&source, files);
    let packed = pack(&source, &ArchiveLimits::default(), &mut |_| {}).expect("pack");
    let unpacked =
        unpack(packed.path(), &work.join(name), &ArchiveLimits::default()).expect("unpack");
    (packed, unpacked)
}

/// The settings a deployer would use to reach `seaweed`.
pub(crate) fn s3_settings(seaweed: &Seaweed) -> S3Settings {
    S3Settings {
        endpoint: Some(seaweed.endpoint.clone()),
        access_key_id: Some(ACCESS_KEY.to_owned()),
        allow_http: true,
        ..S3Settings::default()
    }
}
