//! `gantry gc` against the release binary: a pass killed with SIGKILL as soon as its
//! sweep has deleted its first objects, and run again, deletes nothing referenced and
//! finishes the sweep (harbor#15822), on
//! SQLite and on PostgreSQL.

use std::process::{Command, Output};
use std::time::Duration;

use crate::support::{GantryServer, describe, push_new_image, sha256_hex, stdout_of};

/// How many unreferenced blobs the killed passes have to sweep.
const ORPHANS: usize = 2000;

/// `[gc]` with passes only by hand and a one-second window.
const CONFIG: &str = "[gc]\ninterval_seconds = 0\ngrace_seconds = 1\n";

fn gantry(server: &GantryServer, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args(args)
        .args(["--url", &format!("http://{}", server.address)])
        .env("GANTRY_TOKEN", server.token())
        .output()
        .expect("run gantry")
}

fn gc_json(server: &GantryServer, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["gc", "-o", "json"];
    all.extend_from_slice(args);
    let output = gantry(server, &all);
    assert!(output.status.success(), "gantry gc\n{}", describe(&output));
    serde_json::from_slice(&output.stdout).expect("gantry gc -o json prints JSON")
}

fn status(address: &str, creds: &str, path: &str) -> String {
    stdout_of(
        Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-u", creds])
            .arg(format!("http://{address}{path}")),
    )
}

/// Uploads `count` blobs no manifest will ever reference, in one curl run.
fn upload_orphans(address: &str, creds: &str, count: usize) -> Vec<String> {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut command = Command::new("curl");
    command.args(["-s", "-f", "-u", creds, "-o", "/dev/null"]);
    let mut digests = Vec::new();
    for n in 0..count {
        let content = format!("orphan number {n} of a run that is killed");
        let digest = format!("sha256:{}", sha256_hex(content.as_bytes()));
        let path = dir.path().join(n.to_string());
        std::fs::write(&path, &content).expect("write");
        command
            .arg("--data-binary")
            .arg(format!("@{}", path.display()))
            .arg(format!(
                "http://{address}/v2/acme/app/blobs/uploads/?digest={digest}"
            ));
        if n + 1 < count {
            command
                .arg("--next")
                .args(["-s", "-f", "-u", creds, "-o", "/dev/null"]);
        }
        digests.push(digest);
    }
    let output = command.output().expect("run curl");
    assert!(output.status.success(), "uploads\n{}", describe(&output));
    digests
}

/// Every manifest and blob of the images pushed, by path.
fn referenced_paths(address: &str, creds: &str, references: &[String]) -> Vec<String> {
    let mut paths = Vec::new();
    for reference in references {
        let manifest = stdout_of(
            Command::new("curl")
                .args(["-s", "-f", "-u", creds])
                .args(["-H", "Accept: application/vnd.oci.image.manifest.v1+json"])
                .arg(format!(
                    "http://{address}/v2/acme/app/manifests/{reference}"
                )),
        );
        let manifest: serde_json::Value = serde_json::from_str(&manifest).expect("manifest JSON");
        paths.push(format!("/v2/acme/app/manifests/{reference}"));
        let config = std::iter::once(&manifest["config"]);
        let layers = manifest["layers"].as_array().into_iter().flatten();
        for descriptor in config.chain(layers) {
            let digest = descriptor["digest"].as_str().expect("digest");
            paths.push(format!("/v2/acme/app/blobs/{digest}"));
        }
    }
    paths
}

fn killed_passes_then_a_whole_one_delete_only_what_is_unreferenced(database_url: Option<&str>) {
    let dir = tempfile::tempdir().expect("temporary directory");
    std::fs::write(dir.path().join("gantry.toml"), CONFIG).expect("config");
    let args: Vec<&str> = database_url
        .map(|url| vec!["--database-url", url])
        .unwrap_or_default();
    let mut server = GantryServer::start(dir.path(), &args, &[]);
    let creds = server.creds();
    let token = server.token().to_owned();
    let references: Vec<String> = (0..3)
        .map(|n| {
            push_new_image(&server.address, &creds, &format!("acme/app:v{n}"), "2x16K");
            format!("v{n}")
        })
        .collect();
    let referenced = referenced_paths(&server.address, &creds, &references);
    let orphans = upload_orphans(&server.address, &creds, ORPHANS);
    // The first pass marks them; a second one, a window later, deletes them.
    let first = gc_json(&server, &[]);
    assert_eq!(first["blobs_marked"], serde_json::json!(ORPHANS), "{first}");
    std::thread::sleep(Duration::from_millis(1200));

    // A pass killed as soon as its sweep has deleted its first objects, then passes
    // left alone until one got to the end.
    let objects = dir.path().join("gantry-data/blobs/blobs");
    let stored = walk(&objects).len();
    let mut interrupted = 0;
    for attempt in 1..=5u64 {
        let mut pass = Command::new(env!("CARGO_BIN_EXE_gantry"))
            .args(["gc", "--url", &format!("http://{}", server.address)])
            .env("GANTRY_TOKEN", &token)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start gantry gc");
        if attempt == 1 {
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while walk(&objects).len() == stored {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the pass deleted nothing"
                );
                std::thread::sleep(Duration::from_millis(2));
            }
            let pid = server.pid().to_string();
            let killed = Command::new("kill")
                .args(["-KILL", &pid])
                .status()
                .expect("kill");
            assert!(killed.success());
            assert!(!server.wait().success(), "the server was killed");
            server = GantryServer::start(dir.path(), &args, &[]);
            server.token = Some(token.clone());
        }
        let _ = pass.wait();
        for path in &referenced {
            assert_eq!(
                status(&server.address, &creds, path),
                "200",
                "{path} after pass {attempt}"
            );
        }
        let audited = audited_collections(&server);
        if audited == ORPHANS {
            break;
        }
        interrupted += usize::from(audited > 0);
    }
    assert!(interrupted > 0, "no kill landed in the middle of a sweep");
    let report = gc_json(&server, &[]);
    assert!(
        report["errors"].as_array().is_some_and(Vec::is_empty),
        "{report}"
    );
    for path in &referenced {
        assert_eq!(status(&server.address, &creds, path), "200", "{path}");
    }
    for digest in &orphans {
        let path = format!("/v2/acme/app/blobs/{digest}");
        assert_eq!(
            status(&server.address, &creds, &path),
            "404",
            "{path} was not collected"
        );
    }
    // Nothing left: no condemned blob, no orphan object, nothing deletable.
    let dry = gc_json(&server, &["--dry-run"]);
    assert_eq!(
        (
            &dry["blobs_deleted"],
            &dry["orphans_deleted"],
            &dry["blobs_marked"]
        ),
        (
            &serde_json::json!(0),
            &serde_json::json!(0),
            &serde_json::json!(0)
        ),
        "{dry}"
    );
    if database_url.is_none() {
        let blobs: std::collections::BTreeSet<&String> = referenced
            .iter()
            .filter(|path| path.contains("/blobs/"))
            .collect();
        let files = walk(&dir.path().join("gantry-data/blobs/blobs")).len();
        assert_eq!(files, blobs.len(), "only the referenced blobs are stored");
    }
    // Each deletion was audited exactly once, however many passes it took.
    assert_eq!(audited_collections(&server), orphans.len());
    let history = gantry(&server, &["gc", "--history"]);
    assert!(history.status.success(), "{}", describe(&history));
    let text = String::from_utf8_lossy(&history.stdout);
    assert!(text.contains("scheduled passes off"), "{text}");
}

/// How many `collect` entries the audit log holds.
fn audited_collections(server: &GantryServer) -> usize {
    let export = gantry(server, &["audit", "export"]);
    assert!(export.status.success(), "{}", describe(&export));
    String::from_utf8_lossy(&export.stdout)
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).expect("JSON line"))
        .filter(|entry| entry["action"] == "collect")
        .count()
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(walk(&path));
        } else {
            found.push(path);
        }
    }
    found
}

#[test]
fn a_gc_pass_killed_part_way_and_run_again_deletes_only_unreferenced_blobs_on_sqlite() {
    killed_passes_then_a_whole_one_delete_only_what_is_unreferenced(None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gc_pass_killed_part_way_and_run_again_deletes_only_unreferenced_blobs_on_postgres() {
    let database = testkit::TestDatabase::create(testkit::Backend::Postgres).await;
    let url = database.url().to_owned();
    tokio::task::spawn_blocking(move || {
        killed_passes_then_a_whole_one_delete_only_what_is_unreferenced(Some(&url));
    })
    .await
    .expect("the test ran");
}
