//! Hostile archives: each is refused with its own error, and nothing is written.

use site::{ArchiveError, ArchiveLimits, NameError, check, unpack};

use crate::raw_zip::{FLAG_ENCRYPTED, FLAG_UTF8, RawEntry, build, build_with_aliases};

/// Writes `archive`, then asserts that both `check` and `unpack` refuse it as `expected`
/// says and that the staging directory was never created.
fn refused(
    label: &str,
    archive: &[u8],
    limits: &ArchiveLimits,
    expected: &dyn Fn(&ArchiveError) -> bool,
) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("site.zip");
    std::fs::write(&path, archive).expect("write archive");
    let staging = dir.path().join("staging");

    let checked = check(&path, limits);
    match &checked {
        Err(error) => assert!(expected(error), "{label}: check refused it as {error:?}"),
        Ok(contents) => panic!("{label}: check accepted it: {contents:?}"),
    }
    let unpacked = unpack(&path, &staging, limits);
    match &unpacked {
        Err(error) => assert!(expected(error), "{label}: unpack refused it as {error:?}"),
        Ok(site) => panic!("{label}: unpack accepted it: {site:?}"),
    }
    assert!(
        !staging.exists(),
        "{label}: the staging directory was created"
    );
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .expect("list")
        .map(|entry| entry.expect("entry").file_name())
        .collect();
    assert_eq!(left, vec![std::ffi::OsString::from("site.zip")], "{label}");
}

/// A hostile archive: what it is, its bytes, the limits it is checked under, and the
/// refusal expected.
type Case = (
    &'static str,
    Vec<u8>,
    ArchiveLimits,
    Box<dyn Fn(&ArchiveError) -> bool>,
);

fn name_refused(reason: NameError) -> impl Fn(&ArchiveError) -> bool {
    move |error| matches!(error, ArchiveError::Name { reason: actual, .. } if *actual == reason)
}

#[test]
fn hostile_archives_are_refused_each_for_its_own_reason_before_anything_is_written() {
    let limits = ArchiveLimits::default();
    let ok = || RawEntry::stored("index.html", b"<h1>hi</h1>");
    let cases: Vec<Case> = vec![
        (
            "zip slip with ../",
            build(&[ok(), RawEntry::stored("../evil.sh", b"rm -rf /")]),
            limits,
            Box::new(name_refused(NameError::ParentDirectory)),
        ),
        (
            "zip slip in the middle of a path",
            build(&[RawEntry::stored("assets/../../evil.sh", b"x")]),
            limits,
            Box::new(name_refused(NameError::ParentDirectory)),
        ),
        (
            "zip slip with ..\\",
            build(&[RawEntry::stored("..\\evil.bat", b"x")]),
            limits,
            Box::new(name_refused(NameError::Backslash)),
        ),
        (
            "absolute path",
            build(&[RawEntry::stored("/etc/x", b"x")]),
            limits,
            Box::new(name_refused(NameError::Absolute)),
        ),
        (
            "drive letter with a slash",
            build(&[RawEntry::stored("C:/x", b"x")]),
            limits,
            Box::new(name_refused(NameError::Colon)),
        ),
        (
            "drive letter with a backslash",
            build(&[RawEntry::stored("C:\\x", b"x")]),
            limits,
            Box::new(name_refused(NameError::Backslash)),
        ),
        (
            "UNC path",
            build(&[RawEntry::stored("\\\\server\\share\\x", b"x")]),
            limits,
            Box::new(name_refused(NameError::Backslash)),
        ),
        (
            "NUL in a name",
            build(&[RawEntry::stored("index.html\0.png", b"x")]),
            limits,
            Box::new(name_refused(NameError::ControlCharacter)),
        ),
        (
            "newline in a name",
            build(&[RawEntry::stored("a\nb.html", b"x")]),
            limits,
            Box::new(name_refused(NameError::ControlCharacter)),
        ),
        (
            "empty name",
            build(&[ok(), RawEntry::stored("", b"x")]),
            limits,
            Box::new(name_refused(NameError::Empty)),
        ),
        (
            "a `.` component",
            build(&[RawEntry::stored("./index.html", b"x")]),
            limits,
            Box::new(name_refused(NameError::CurrentDirectory)),
        ),
        (
            "an empty component",
            build(&[RawEntry::stored("a//index.html", b"x")]),
            limits,
            Box::new(name_refused(NameError::EmptyComponent)),
        ),
        (
            "a name that is not UTF-8",
            build(&[RawEntry::stored("x", b"x")
                .named(b"caf\xe9.html")
                .flags(FLAG_UTF8)]),
            limits,
            Box::new(name_refused(NameError::NotUtf8)),
        ),
        (
            "a non-ASCII name without the UTF-8 flag (read as CP437 elsewhere)",
            build(&[RawEntry::stored("café.html", b"x").flags(0)]),
            limits,
            Box::new(name_refused(NameError::NotUtf8)),
        ),
        (
            "Gantry's own records",
            build(&[RawEntry::stored(".gantry/deployed.json", b"{}")]),
            limits,
            Box::new(name_refused(NameError::Reserved)),
        ),
        (
            "symbolic link",
            build(&[
                ok(),
                RawEntry::stored("passwd", b"/etc/passwd").mode(0o120_777),
            ]),
            limits,
            Box::new(|e| matches!(e, ArchiveError::Link { name } if name == "passwd")),
        ),
        (
            "symbolic link, then a file through it",
            build(&[
                RawEntry::stored("out", b"/tmp").mode(0o120_777),
                RawEntry::stored("out/evil.sh", b"x"),
            ]),
            limits,
            Box::new(|e| matches!(e, ArchiveError::Link { name } if name == "out")),
        ),
        (
            "NTFS reparse point",
            build(&[RawEntry::stored("junction", b"x").dos_attributes(0x400)]),
            limits,
            Box::new(|e| matches!(e, ArchiveError::Link { .. })),
        ),
        (
            "named pipe",
            build(&[RawEntry::stored("fifo", b"").mode(0o010_644)]),
            limits,
            Box::new(|e| matches!(e, ArchiveError::SpecialFile { .. })),
        ),
        (
            "device",
            build(&[RawEntry::stored("sda", b"").mode(0o060_660)]),
            limits,
            Box::new(|e| matches!(e, ArchiveError::SpecialFile { .. })),
        ),
        (
            "directory by its mode but not by its name",
            build(&[RawEntry::stored("assets", b"").mode(0o040_755)]),
            limits,
            Box::new(|e| matches!(e, ArchiveError::DirectoryMismatch { .. })),
        ),
        (
            "name with a trailing slash holding data",
            build(&[RawEntry::directory("assets/")
                .declared_size(5)
                .crc(crc32fast::hash(b"hello"))]),
            limits,
            Box::new(|e| matches!(e, ArchiveError::DirectoryWithData { .. })),
        ),
        (
            "name with a trailing slash, regular file mode, holding data",
            build(&[RawEntry::stored("assets/", b"hello")]),
            limits,
            Box::new(|e| matches!(e, ArchiveError::DirectoryMismatch { .. })),
        ),
        (
            "duplicate names",
            build(&[
                RawEntry::stored("index.html", b"first"),
                RawEntry::stored("index.html", b"second"),
            ]),
            limits,
            Box::new(|e| matches!(e, ArchiveError::DuplicateName)),
        ),
        (
            "names differing only in case",
            build(&[
                RawEntry::stored("Index.html", b"a"),
                RawEntry::stored("index.html", b"b"),
            ]),
            limits,
            Box::new(|e| matches!(e, ArchiveError::CaseCollision { .. })),
        ),
        (
            "directories differing only in case",
            build(&[
                RawEntry::stored("Assets/a.js", b"a"),
                RawEntry::stored("assets/b.js", b"b"),
            ]),
            limits,
            Box::new(|e| matches!(e, ArchiveError::CaseCollision { .. })),
        ),
        (
            "names differing only in Unicode normalization",
            build(&[
                RawEntry::stored("caf\u{e9}.html", b"a"),
                RawEntry::stored("cafe\u{301}.html", b"b"),
            ]),
            limits,
            Box::new(|e| matches!(e, ArchiveError::CaseCollision { .. })),
        ),
        (
            "a file and a directory of the same name",
            build(&[
                RawEntry::stored("docs", b"a file"),
                RawEntry::stored("docs/index.html", b"a page"),
            ]),
            limits,
            Box::new(
                |e| matches!(e, ArchiveError::FileDirectoryCollision { name } if name == "docs"),
            ),
        ),
        (
            "too many entries",
            build(
                &(0..11)
                    .map(|i| RawEntry::stored(&format!("f{i}.txt"), b"x"))
                    .collect::<Vec<_>>(),
            ),
            ArchiveLimits {
                max_entries: 10,
                ..limits
            },
            Box::new(|e| {
                matches!(
                    e,
                    ArchiveError::TooManyEntries {
                        count: 11,
                        limit: 10
                    }
                )
            }),
        ),
        (
            "too large once expanded",
            build(&[
                RawEntry::deflated("a.txt", &[b'a'; 600]),
                RawEntry::deflated("b.txt", &[b'b'; 600]),
            ]),
            ArchiveLimits {
                max_expanded_bytes: 1000,
                ..limits
            },
            Box::new(|e| matches!(e, ArchiveError::TooLarge { limit: 1000 })),
        ),
        (
            "a high-ratio zip bomb",
            build(&[RawEntry::deflated("zeros.bin", &vec![0u8; 16 << 20])]),
            limits,
            Box::new(|e| matches!(e, ArchiveError::RatioTooHigh { limit: 200, .. })),
        ),
        (
            "declared size smaller than what it expands to",
            build(&[RawEntry::deflated("a.txt", &[b'a'; 5000]).declared_size(500)]),
            limits,
            Box::new(|e| matches!(e, ArchiveError::LargerThanDeclared { declared: 500, .. })),
        ),
        (
            "declared size larger than what it expands to",
            build(&[RawEntry::deflated("a.txt", &[b'a'; 500]).declared_size(5000)]),
            limits,
            Box::new(|e| {
                matches!(
                    e,
                    ArchiveError::SmallerThanDeclared {
                        declared: 5000,
                        actual: 500,
                        ..
                    }
                )
            }),
        ),
        (
            "stored entry whose sizes disagree",
            build(&[RawEntry::stored("a.txt", b"0123456789").declared_size(4)]),
            limits,
            Box::new(|e| matches!(e, ArchiveError::LargerThanDeclared { declared: 4, .. })),
        ),
        (
            "encrypted entry",
            build(&[RawEntry::stored("secret.html", b"x").flags(FLAG_ENCRYPTED)]),
            limits,
            Box::new(|e| matches!(e, ArchiveError::Encrypted { .. })),
        ),
        (
            "CRC mismatch",
            build(&[RawEntry::deflated("a.txt", b"hello world").crc(0xdead_beef)]),
            limits,
            Box::new(|e| matches!(e, ArchiveError::CrcMismatch { .. })),
        ),
        (
            "corrupt deflate data",
            build(&[RawEntry::stored("a.txt", b"\xff\xff\xff\xff\xff\xff")
                .method(8)
                .declared_size(100)]),
            limits,
            Box::new(|e| matches!(e, ArchiveError::CorruptData { .. })),
        ),
        (
            "unsupported compression method",
            build(&[RawEntry::stored("a.txt", b"BZh9").method(12)]),
            limits,
            Box::new(|e| matches!(e, ArchiveError::UnsupportedCompression { .. })),
        ),
        (
            "entries sharing their bytes (overlapping zip bomb)",
            build_with_aliases(
                &[RawEntry::deflated("a.txt", &[b'a'; 4096])],
                &[("b.txt", 0), ("c.txt", 0)],
            ),
            limits,
            Box::new(|e| matches!(e, ArchiveError::OverlappingEntries)),
        ),
        (
            "local header naming another file than the central directory",
            build(&[RawEntry::stored("index.html", b"x").local_name("../../x.sh")]),
            limits,
            Box::new(|e| matches!(e, ArchiveError::InconsistentHeaders(_))),
        ),
        (
            "not a zip archive",
            b"PK\x03\x04 this is not really a zip".to_vec(),
            limits,
            Box::new(|e| matches!(e, ArchiveError::Unreadable(_))),
        ),
    ];
    assert!(cases.len() >= 20);
    for (label, archive, limits, expected) in &cases {
        refused(label, archive, limits, expected.as_ref());
    }
}

#[test]
fn a_well_formed_raw_archive_passes_so_the_refusals_above_are_about_their_defects() {
    let archive = build(&[
        RawEntry::directory("assets/"),
        RawEntry::deflated("assets/app.3f2a9c.js", b"console.log('hi')"),
        RawEntry::stored("index.html", b"<h1>hi</h1>"),
        RawEntry::stored("caf\u{e9}.html", b"utf-8 flagged"),
        RawEntry::deflated("small-zeros.bin", &[0u8; 64 << 10]),
    ]);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("site.zip");
    std::fs::write(&path, &archive).expect("write");
    let staging = dir.path().join("staging");
    let site = unpack(&path, &staging, &ArchiveLimits::default()).expect("a clean archive");
    let names: Vec<&str> = site.files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "assets/app.3f2a9c.js",
            "caf\u{e9}.html",
            "index.html",
            "small-zeros.bin"
        ]
    );
    assert_eq!(
        std::fs::read(staging.join("assets/app.3f2a9c.js")).expect("read"),
        b"console.log('hi')"
    );
}

#[test]
fn an_existing_staging_directory_is_never_written_into() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("site.zip");
    std::fs::write(&path, build(&[RawEntry::stored("index.html", b"x")])).expect("write");
    let staging = dir.path().join("staging");
    std::fs::create_dir(&staging).expect("mkdir");
    let outcome = unpack(&path, &staging, &ArchiveLimits::default());
    assert!(
        matches!(outcome, Err(ArchiveError::StagingExists(_))),
        "{outcome:?}"
    );
    assert_eq!(std::fs::read_dir(&staging).expect("list").count(), 0);
}
