//! Syncing to a directory: only changed files are rewritten, stale ones deleted, the
//! headers recorded, and a re-run (even after losing the record) changes nothing.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use site::{
    DEFAULT_CACHE_CONTROL, DeployedRecord, Destination, IMMUTABLE, REVALIDATE, SyncOptions,
    SyncReport,
};

use crate::support::staged_site;

fn options() -> SyncOptions {
    SyncOptions {
        default_cache_control: DEFAULT_CACHE_CONTROL.to_owned(),
        concurrency: 4,
    }
}

fn inode(path: &Path) -> u64 {
    std::fs::metadata(path).expect("stat").ino()
}

const FIRST: &[(&str, &[u8])] = &[
    (
        "index.html",
        b"<h1>v1</h1><script src=/assets/app.3f2a9c.js>",
    ),
    ("about/index.html", b"<h1>about</h1>"),
    ("assets/app.3f2a9c.js", b"console.log(1)"),
    ("assets/style.css", b"body{}"),
    ("data.json", b"{\"v\":1}"),
    ("logo.png", b"\x89PNG..."),
    ("docs", b"a file that becomes a directory"),
];

const SECOND: &[(&str, &[u8])] = &[
    (
        "index.html",
        b"<h1>v1</h1><script src=/assets/app.3f2a9c.js>",
    ),
    ("about/index.html", b"<h1>about</h1>"),
    ("assets/app.3f2a9c.js", b"console.log(1)"),
    ("assets/style.css", b"body{color:red}"),
    ("data.json", b"{\"v\":1}"),
    ("new.txt", b"new"),
    ("docs/index.html", b"now a directory"),
];

#[tokio::test]
async fn a_directory_sync_rewrites_only_changed_files_and_deletes_stale_ones() {
    let work = tempfile::tempdir().expect("temp dir");
    let root = work.path().join("www");
    let destination = Destination::directory(&root);

    let (_packed, first) = staged_site(work.path(), "first", FIRST);
    let report = destination
        .sync(&first.root, &first.files, &options())
        .await
        .expect("first sync");
    assert_eq!(
        report,
        SyncReport {
            uploaded: 7,
            unchanged: 0,
            deleted: 0
        }
    );
    for (name, content) in FIRST {
        assert_eq!(
            std::fs::read(root.join(name)).expect("read"),
            *content,
            "{name}"
        );
    }
    let record = destination.files_record().await.expect("files.json");
    let app = &record.files["assets/app.3f2a9c.js"];
    assert_eq!(app.headers.cache_control, IMMUTABLE);
    assert_eq!(app.headers.content_type, "text/javascript; charset=utf-8");
    assert_eq!(record.files["index.html"].headers.cache_control, REVALIDATE);
    assert_eq!(record.files["data.json"].headers.cache_control, REVALIDATE);
    assert_eq!(record.files["logo.png"].headers.content_type, "image/png");
    assert_eq!(
        record.files["logo.png"].headers.cache_control,
        DEFAULT_CACHE_CONTROL
    );
    assert_eq!(record.files.len(), 7);
    assert!(destination.deployed().await.expect("read").is_none());

    let kept_inodes: Vec<u64> = ["index.html", "assets/app.3f2a9c.js", "data.json"]
        .iter()
        .map(|name| inode(&root.join(name)))
        .collect();
    let style_inode = inode(&root.join("assets/style.css"));

    let (_packed, second) = staged_site(work.path(), "second", SECOND);
    let report = destination
        .sync(&second.root, &second.files, &options())
        .await
        .expect("second sync");
    assert_eq!(
        report,
        SyncReport {
            uploaded: 3,
            unchanged: 4,
            deleted: 2
        }
    );
    for (name, content) in SECOND {
        assert_eq!(
            std::fs::read(root.join(name)).expect("read"),
            *content,
            "{name}"
        );
    }
    assert!(!root.join("logo.png").exists());
    assert_eq!(
        ["index.html", "assets/app.3f2a9c.js", "data.json"]
            .iter()
            .map(|name| inode(&root.join(name)))
            .collect::<Vec<_>>(),
        kept_inodes,
        "unchanged files were rewritten"
    );
    assert_ne!(inode(&root.join("assets/style.css")), style_inode);
    assert_eq!(
        destination
            .files_record()
            .await
            .expect("files.json")
            .files
            .len(),
        7
    );

    // Run again: nothing to do, and the record itself is left alone.
    let files_json = root.join(".gantry/files.json");
    let record_inode = inode(&files_json);
    let report = destination
        .sync(&second.root, &second.files, &options())
        .await
        .expect("re-run");
    assert_eq!(
        report,
        SyncReport {
            uploaded: 0,
            unchanged: 7,
            deleted: 0
        }
    );
    assert_eq!(inode(&files_json), record_inode);

    // A sync that crashed before writing its record: the files are compared by
    // content instead, and nothing already in place is uploaded again.
    std::fs::remove_file(&files_json).expect("lose the record");
    let report = destination
        .sync(&second.root, &second.files, &options())
        .await
        .expect("re-run without a record");
    assert_eq!(report.uploaded, 0);
    assert_eq!(report.unchanged, 7);
    assert!(files_json.exists());

    // Nothing is left in the temporary area, and only the site and its records are
    // in the directory.
    let temporaries = std::fs::read_dir(root.join(".gantry/tmp"))
        .expect("tmp")
        .count();
    assert_eq!(temporaries, 0);
}

#[tokio::test]
async fn a_file_changed_behind_the_records_back_is_uploaded_again() {
    let work = tempfile::tempdir().expect("temp dir");
    let root = work.path().join("www");
    let destination = Destination::directory(&root);
    let (_packed, site) = staged_site(work.path(), "site", FIRST);
    destination
        .sync(&site.root, &site.files, &options())
        .await
        .expect("sync");
    // Someone truncates a file; a stray file appears.
    std::fs::write(root.join("assets/style.css"), b"").expect("tamper");
    std::fs::write(root.join("stray.html"), b"not ours").expect("stray");
    let report = destination
        .sync(&site.root, &site.files, &options())
        .await
        .expect("sync");
    assert_eq!(report.uploaded, 1);
    assert_eq!(report.deleted, 1);
    assert_eq!(
        std::fs::read(root.join("assets/style.css")).expect("read"),
        b"body{}"
    );
    assert!(!root.join("stray.html").exists());
}

#[tokio::test]
async fn assets_land_before_the_html_that_references_them() {
    let work = tempfile::tempdir().expect("temp dir");
    let root = work.path().join("www");
    let destination = Destination::directory(&root);
    let (_packed, site) = staged_site(work.path(), "site", FIRST);
    destination
        .sync(&site.root, &site.files, &options())
        .await
        .expect("sync");
    let modified = |name: &str| {
        std::fs::metadata(root.join(name))
            .expect("stat")
            .modified()
            .expect("mtime")
    };
    let latest_asset = [
        "assets/app.3f2a9c.js",
        "assets/style.css",
        "data.json",
        "logo.png",
    ]
    .iter()
    .map(|name| modified(name))
    .max()
    .expect("assets");
    let first_page = ["index.html", "about/index.html"]
        .iter()
        .map(|name| modified(name))
        .min()
        .expect("pages");
    assert!(latest_asset <= first_page);
}

#[tokio::test]
async fn deployed_json_is_written_once_per_deployment() {
    let work = tempfile::tempdir().expect("temp dir");
    let destination = Destination::directory(work.path().join("www"));
    let record = DeployedRecord {
        application: "web".to_owned(),
        environment: "prod".to_owned(),
        digest: format!("sha256:{}", "a".repeat(64)),
        deployment_id: 7,
        deployed_at: "2026-01-01T00:00:00Z".to_owned(),
    };
    assert!(destination.record_deployment(&record).await.expect("write"));
    let again = DeployedRecord {
        deployed_at: "2026-01-02T00:00:00Z".to_owned(),
        ..record.clone()
    };
    assert!(!destination.record_deployment(&again).await.expect("no-op"));
    assert_eq!(destination.deployed().await.expect("read"), Some(record));
}
