//! Packing and unpacking: what goes in comes out, the same build gives the same bytes,
//! and what cannot be packed faithfully is refused.

use site::{ArchiveLimits, PackError, PackProgress, check, pack, unpack};

use crate::support::write_site;

const SITE: &[(&str, &[u8])] = &[
    ("index.html", b"<!doctype html><h1>Home</h1>"),
    ("about/index.html", b"<h1>About</h1>"),
    ("assets/app.3f2a9c.js", b"console.log('app')"),
    ("assets/main-5b8c1e2f.css", b"body { color: red }"),
    ("blog/[slug].html", b"<h1>post</h1>"),
    ("empty.txt", b""),
];

#[test]
fn a_packed_site_unpacks_to_the_same_files() {
    let work = tempfile::tempdir().expect("temp dir");
    let source = work.path().join("dist");
    write_site(&source, SITE);
    // Incompressible, so it stays under the zip-bomb ratio.
    let big = noise(3 << 20);
    std::fs::write(source.join("big.bin"), &big).expect("write");

    let mut seen = Vec::new();
    let packed = pack(
        &source,
        &ArchiveLimits::default(),
        &mut |progress: PackProgress| {
            seen.push(progress);
        },
    )
    .expect("pack");
    let total: u64 = SITE.iter().map(|(_, c)| c.len() as u64).sum::<u64>() + big.len() as u64;
    assert_eq!(seen.first(), Some(&PackProgress { done: 0, total }));
    assert_eq!(seen.last(), Some(&PackProgress { done: total, total }));
    assert!(seen.windows(2).all(|pair| pair[0].done <= pair[1].done));
    assert_eq!(
        packed.size,
        std::fs::metadata(packed.path()).expect("stat").len()
    );

    let checked = check(packed.path(), &ArchiveLimits::default()).expect("check");
    assert_eq!(checked, packed.contents);
    let staging = work.path().join("staging");
    let site = unpack(packed.path(), &staging, &ArchiveLimits::default()).expect("unpack");
    assert_eq!(site.files.len(), SITE.len() + 1);
    for (name, content) in SITE {
        assert_eq!(
            std::fs::read(staging.join(name)).expect("read"),
            *content,
            "{name}"
        );
    }
    assert_eq!(std::fs::read(staging.join("big.bin")).expect("read"), big);
    let app = site
        .files
        .iter()
        .find(|f| f.name == "assets/app.3f2a9c.js")
        .expect("listed");
    assert_eq!(app.sha256, hex_sha256(b"console.log('app')"));
}

/// Bytes from a linear congruential generator: deterministic and incompressible.
fn noise(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 56) as u8
        })
        .collect()
}

fn hex_sha256(bytes: &[u8]) -> String {
    domain::Digest::sha256_of(bytes).hex().to_owned()
}

#[test]
fn packing_is_deterministic_whatever_the_timestamps_and_permissions() {
    let work = tempfile::tempdir().expect("temp dir");
    let first = work.path().join("first");
    let second = work.path().join("second");
    write_site(&first, SITE);
    // The same files written in the reverse order, with other permissions and times.
    for (name, content) in SITE.iter().rev() {
        write_site(&second, &[(name, content)]);
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        second.join("index.html"),
        std::fs::Permissions::from_mode(0o600),
    )
    .expect("chmod");
    let file = std::fs::File::options()
        .write(true)
        .open(second.join("about/index.html"))
        .expect("open");
    file.set_modified(
        std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000),
    )
    .expect("set mtime");

    let one = pack(&first, &ArchiveLimits::default(), &mut |_| {}).expect("pack");
    let two = pack(&second, &ArchiveLimits::default(), &mut |_| {}).expect("pack");
    assert_eq!(one.digest, two.digest);
    assert_eq!(
        std::fs::read(one.path()).expect("read"),
        std::fs::read(two.path()).expect("read")
    );
}

#[test]
fn links_cannot_be_packed() {
    let work = tempfile::tempdir().expect("temp dir");
    let source = work.path().join("dist");
    write_site(&source, SITE);
    std::os::unix::fs::symlink("/etc/passwd", source.join("passwd")).expect("symlink");
    let outcome = pack(&source, &ArchiveLimits::default(), &mut |_| {});
    assert!(matches!(outcome, Err(PackError::Link(path)) if path.ends_with("passwd")));
}

#[test]
fn names_that_would_be_refused_at_deployment_cannot_be_packed() {
    let work = tempfile::tempdir().expect("temp dir");
    let source = work.path().join("dist");
    write_site(&source, &[("index.html", b"x"), ("back\\slash.html", b"x")]);
    let outcome = pack(&source, &ArchiveLimits::default(), &mut |_| {});
    assert!(
        matches!(outcome, Err(PackError::Name { .. })),
        "{outcome:?}"
    );

    let source = work.path().join("cased");
    write_site(&source, &[("Index.html", b"x"), ("index.html", b"y")]);
    let outcome = pack(&source, &ArchiveLimits::default(), &mut |_| {});
    assert!(
        matches!(
            outcome,
            Err(PackError::Check(site::ArchiveError::CaseCollision { .. }))
        ),
        "{outcome:?}"
    );

    let empty = work.path().join("empty");
    std::fs::create_dir(&empty).expect("mkdir");
    assert!(matches!(
        pack(&empty, &ArchiveLimits::default(), &mut |_| {}),
        Err(PackError::Empty(_))
    ));
}

/// Archives written by common tools pass the check and unpack to their files: Info-ZIP
/// `zip` (with directory entries and Unix modes) and Python's `zipfile` writing to a
/// pipe (sizes in data descriptors after each entry).
#[test]
fn archives_written_by_other_tools_are_accepted() {
    let work = tempfile::tempdir().expect("temp dir");
    let source = work.path().join("dist");
    write_site(&source, SITE);

    let info_zip = work.path().join("info-zip.zip");
    let status = std::process::Command::new("zip")
        .current_dir(&source)
        .args(["-q", "-r"])
        .arg(&info_zip)
        .arg(".")
        .status()
        .expect("the `zip` program (Info-ZIP) is needed for this test");
    assert!(status.success());

    let streamed = work.path().join("streamed.zip");
    let script = r#"
import os, sys, zipfile
root = sys.argv[1]
with zipfile.ZipFile(sys.stdout.buffer, "w", zipfile.ZIP_DEFLATED) as archive:
    for directory, _, names in sorted(os.walk(root)):
        for name in sorted(names):
            path = os.path.join(directory, name)
            archive.write(path, os.path.relpath(path, root))
"#;
    let output = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(&source)
        .output()
        .expect("python3 is needed for this test");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::write(&streamed, &output.stdout).expect("write");

    for archive in [&info_zip, &streamed] {
        let staging = work.path().join(format!(
            "staging-{}",
            archive.file_stem().expect("stem").to_string_lossy()
        ));
        let site = unpack(archive, &staging, &ArchiveLimits::default())
            .unwrap_or_else(|error| panic!("{}: {error}", archive.display()));
        assert_eq!(site.files.len(), SITE.len(), "{}", archive.display());
        for (name, content) in SITE {
            assert_eq!(
                std::fs::read(staging.join(name)).expect("read"),
                *content,
                "{name}"
            );
        }
    }
}
