//! Several replicas for real: three `gantry serve` on one PostgreSQL database and one
//! S3 bucket (SeaweedFS), behind HAProxy balancing every request round robin over
//! them. skopeo, oras and buildah push and pull through the balancer, each request
//! landing on any replica (the registry token one grants, another checks); a chunked
//! upload is opened on one replica, continued and committed on others (one chunk
//! larger than an S3 part, one smaller), and every replica serves the blob; a
//! promotion requested through
//! one replica is approved through another and deploys, and a third sees it; the
//! audit entries all three committed are chained by the replicas' own chainers into
//! one chain that verifies. A replica killed with SIGKILL while pushes and a
//! deployment run loses nothing acknowledged: every push that was answered pulls
//! whole, and another replica finishes the deployment.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::skopeo::copy_multi_layer_image_in_and_out;
use crate::support::{
    GantryServer, Seaweed, curl, free_port, push_new_image, sha256_hex, slow_app,
};

const RESOURCES: &str = r#"kind: Pipeline
name: standard
stages:
  - name: dev
    auto: true
  - name: staging
    gate:
      approvals: [{ role: staff, count: 1 }]
---
kind: Application
name: web-app
type: container
repository: acme/web-app
pipeline: standard
environments:
  dev: { target: { record: {} } }
  staging: { target: { record: {} } }
"#;

/// HAProxy in the foreground on `port`, balancing every request over `backends`
/// round robin, logging each request (with how it ended) to `log`; stopped when
/// dropped.
struct Balancer {
    child: Child,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Balancer {
    fn start(port: u16, backends: &[&str]) -> Balancer {
        let dir = tempfile::tempdir().expect("directory");
        let servers: String = backends
            .iter()
            .enumerate()
            .map(|(i, address)| format!("    server replica{i} {address}\n"))
            .collect();
        // `http-server-close` balances each request, not each client connection.
        let config = format!(
            "global\n    maxconn 512\n    log stderr format raw local0 info\n\
             defaults\n    mode http\n    log global\n    option httplog\n    option http-server-close\n    option redispatch\n    retries 3\n    timeout connect 5s\n    timeout client 120s\n    timeout server 120s\n\
             frontend gantry\n    bind 127.0.0.1:{port}\n    default_backend replicas\n\
             backend replicas\n    balance roundrobin\n{servers}"
        );
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, config).expect("write haproxy.cfg");
        let log = dir.path().join("haproxy.log");
        let child = Command::new("haproxy")
            .args(["-db", "-f"])
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("the balancer's log"))
            .spawn()
            .expect("start haproxy (Debian's haproxy; .ci/run installs it)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "haproxy did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Balancer {
            child,
            log,
            _dir: dir,
        }
    }

    /// What the balancer logged: a line per request, ending with how it ended.
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The HTTP requests a replica has answered, from its `/metrics`.
/// The values of the replica's metric lines that start with `prefix`.
fn metric_values(replica: &GantryServer, prefix: &str) -> Vec<f64> {
    curl(&format!("http://{}/metrics", replica.address), &[])
        .body
        .lines()
        .filter(|line| line.starts_with(prefix))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .collect()
}

fn requests_answered(replica: &GantryServer) -> f64 {
    metric_values(replica, "gantry_http_requests_total")
        .iter()
        .sum()
}

fn json_call(base: &str, method: &str, path: &str, token: &str, body: &Value) -> (u16, Value) {
    let bearer = format!("authorization: Bearer {token}");
    let text = body.to_string();
    let mut args = vec!["-X", method, "-H", &bearer];
    if !body.is_null() {
        args.extend([
            "-H",
            "content-type: application/json",
            "--data-binary",
            &text,
        ]);
    }
    let answer = curl(&format!("{base}{path}"), &args);
    let value = serde_json::from_str(&answer.body).unwrap_or(Value::Null);
    (answer.status, value)
}

/// Three replicas on the PostgreSQL database `url` and one SeaweedFS bucket, each
/// with `[deploy] replica = "rN"` and `deploy` (more `[deploy]` settings), behind a
/// balancer at `front`.
struct Cluster {
    replicas: Vec<Option<GantryServer>>,
    dirs: Vec<tempfile::TempDir>,
    front: String,
    admin: String,
    balancer: Balancer,
    _seaweed: Seaweed,
}

impl Cluster {
    /// Every running replica's log, for a failure's message.
    fn logs(&self) -> String {
        self.replicas
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, replica)| format!("replica r{i}:\n{}\n", replica.log()))
            .collect()
    }

    fn start(url: &str, deploy: &str) -> Cluster {
        let seaweed = Seaweed::start(&["registry"]);
        let port = free_port();
        let front = format!("127.0.0.1:{port}");
        let blob_store = format!("s3://registry/gantry?endpoint={}", seaweed.endpoint);
        let env = [
            ("AWS_ACCESS_KEY_ID", seaweed.access_key.as_str()),
            ("AWS_SECRET_ACCESS_KEY", seaweed.secret_key.as_str()),
        ];
        let dirs: Vec<tempfile::TempDir> = (0..3)
            .map(|_| tempfile::tempdir().expect("directory"))
            .collect();
        let replicas: Vec<Option<GantryServer>> = dirs
            .iter()
            .enumerate()
            .map(|(i, dir)| {
                let config = dir.path().join("gantry.toml");
                std::fs::write(&config, format!("[deploy]\nreplica = \"r{i}\"\n{deploy}"))
                    .expect("write the configuration");
                Some(GantryServer::start(
                    dir.path(),
                    &[
                        "--config",
                        &config.display().to_string(),
                        "--database-url",
                        url,
                        "--blob-store",
                        &blob_store,
                        "--external-url",
                        &format!("http://{front}"),
                    ],
                    &env,
                ))
            })
            .collect();
        let admin = replicas[0].as_ref().expect("r0").token().to_owned();
        let addresses: Vec<&str> = replicas
            .iter()
            .map(|r| r.as_ref().expect("running").address.as_str())
            .collect();
        let balancer = Balancer::start(port, &addresses);
        Cluster {
            replicas,
            dirs,
            front,
            admin,
            balancer,
            _seaweed: seaweed,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_behind_a_load_balancer_serve_one_registry_and_one_pipeline() {
    let database = testkit::TestDatabase::create(testkit::Backend::Postgres).await;
    let url = database.url().to_owned();
    tokio::task::spawn_blocking(move || {
        // Garbage collection by hand only, with a one-second window.
        let cluster = Cluster::start(&url, "[gc]\ninterval_seconds = 0\ngrace_seconds = 1\n");
        let (replicas, front, admin) = (&cluster.replicas, &cluster.front, &cluster.admin);
        let replicas: Vec<&GantryServer> = replicas
            .iter()
            .map(|r| r.as_ref().expect("running"))
            .collect();
        let external = format!("http://{front}");

        // The registry through the balancer: every request may reach another replica.
        let before: Vec<f64> = replicas.iter().map(|r| requests_answered(r)).collect();
        copy_multi_layer_image_in_and_out(front, &format!("admin:{admin}"));
        for (i, replica) in replicas.iter().enumerate() {
            let answered = requests_answered(replica) - before[i] - 1.0;
            assert!(
                answered >= 3.0,
                "replica {i} answered {answered} of the push and pull"
            );
        }

        // oras (an artifact pushed chunked and monolithic, and a referrer) and buildah
        // through the balancer too.
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/oras_roundtrip.py");
        let oras = Command::new(crate::support::peer_python())
            .arg(&script)
            .args([front.as_str(), "artifacts/site", "admin", admin.as_str()])
            .output()
            .expect("run the oras round trip");
        let said = String::from_utf8_lossy(&oras.stdout);
        assert!(
            oras.status.success() && said.lines().filter(|l| l.starts_with("PASS ")).count() == 7,
            "oras through the balancer:\n{}\nthe balancer:\n{}\n{}",
            crate::support::describe(&oras),
            cluster.balancer.log(),
            cluster.logs()
        );
        let built = crate::support::buildah_push(
            cluster.dirs[1].path(),
            &format!("{front}/acme/built:v1"),
            &format!("admin:{admin}"),
            "abc1234",
        )
        .unwrap_or_else(|failure| {
            panic!(
                "buildah through the balancer: {failure}\nthe balancer:\n{}\n{}",
                cluster.balancer.log(),
                cluster.logs()
            )
        });
        for replica in &replicas {
            assert_eq!(
                crate::support::served_manifest_digest(
                    &format!("{}/acme/built:v1", replica.address),
                    Some(&format!("admin:{admin}")),
                ),
                built,
                "every replica serves what buildah pushed"
            );
        }

        // A chunked upload through the balancer: its session opened on one replica,
        // each chunk and the commit on the next ones.
        let creds = format!("admin:{admin}");
        // The second chunk completes the store's first 8 MiB part (on S3 a part of one
        // multipart upload spanning the requests) from the first chunk's piece, kept
        // in the object store, and its own bytes.
        let chunks: [&[u8]; 3] = [&[7u8; 6 << 20], &[9u8; 6 << 20], b"and the last bytes"];
        let whole = chunks.concat();
        let digest = format!("sha256:{}", crate::support::sha256_hex(&whole));
        let answer = curl(
            &format!("{external}/v2/acme/web-app/blobs/uploads/"),
            &["-u", &creds, "-X", "POST"],
        );
        assert_eq!(answer.status, 202, "{}", answer.body);
        let mut location = answer.header("location").expect("a location").to_owned();
        let mut offset = 0;
        for (i, chunk) in chunks.iter().enumerate() {
            let file = cluster.dirs[0].path().join(format!("chunk-{i}"));
            std::fs::write(&file, chunk).expect("write the chunk");
            let url = if location.starts_with("http") {
                location.clone()
            } else {
                format!("{external}{location}")
            };
            let range = format!("content-range: {offset}-{}", offset + chunk.len() - 1);
            let answer = curl(
                &url,
                &[
                    "-u",
                    &creds,
                    "-X",
                    "PATCH",
                    "-H",
                    &range,
                    "-H",
                    "content-type: application/octet-stream",
                    "-H",
                    "expect:",
                    "--data-binary",
                    &format!("@{}", file.display()),
                ],
            );
            assert_eq!(answer.status, 202, "chunk {i}: {}", answer.body);
            location = answer.header("location").expect("a location").to_owned();
            offset += chunk.len();
        }
        let url = if location.starts_with("http") {
            location.clone()
        } else {
            format!("{external}{location}")
        };
        let separator = if url.contains('?') { '&' } else { '?' };
        let answer = curl(
            &format!("{url}{separator}digest={digest}"),
            &["-u", &creds, "-X", "PUT"],
        );
        assert_eq!(answer.status, 201, "{}", answer.body);
        for replica in &replicas {
            let served = std::process::Command::new("curl")
                .args(["-s", "-u", &creds])
                .arg(format!(
                    "http://{}/v2/acme/web-app/blobs/{digest}",
                    replica.address
                ))
                .output()
                .expect("curl");
            assert!(
                served.stdout == whole,
                "every replica serves the committed blob"
            );
        }

        // A promotion asked of one replica, approved through another, seen by a third.
        let base = |i: usize| format!("http://{}", replicas[i].address);
        let answer = curl(
            &format!("{}/api/v1/apply", base(0)),
            &[
                "-H",
                &format!("authorization: Bearer {admin}"),
                "-H",
                "content-type: application/yaml",
                "--data-binary",
                RESOURCES,
            ],
        );
        assert_eq!(answer.status, 200, "{}", answer.body);
        let (status, _) = json_call(
            &base(1),
            "POST",
            "/api/v1/users",
            admin,
            &json!({ "name": "sam", "roles": ["staff"] }),
        );
        assert_eq!(status, 201);
        let (status, issued) = json_call(
            &base(2),
            "POST",
            "/api/v1/users/sam/tokens",
            admin,
            &json!({}),
        );
        assert_eq!(status, 201, "{issued}");
        let sam = issued["token"].as_str().expect("sam's token").to_owned();
        let digest = crate::support::served_manifest_digest(
            &format!("{front}/acme/web-app:v1"),
            Some(&format!("admin:{admin}")),
        );
        let (status, notified) = json_call(
            &base(0),
            "POST",
            "/api/v1/builds",
            admin,
            &json!({ "application": "web-app", "digest": digest, "commit": "abc1234" }),
        );
        assert_eq!(status, 201, "{notified}");
        let (status, promoted) = json_call(
            &base(1),
            "POST",
            "/api/v1/promotions",
            admin,
            &json!({ "application": "web-app", "environment": "staging", "digest": digest }),
        );
        assert_eq!(status, 201, "{promoted}");
        assert_eq!(promoted["state"], "waiting", "{promoted}");
        let id = promoted["id"].as_i64().expect("id");
        let (status, approved) = json_call(
            &base(2),
            "POST",
            &format!("/api/v1/promotions/{id}/approve"),
            &sam,
            &json!({ "comment": "from replica 2" }),
        );
        assert_eq!(status, 200, "{approved}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (_, app) = json_call(&base(0), "GET", "/api/v1/apps/web-app", admin, &Value::Null);
            let staging = app["environments"]
                .as_array()
                .and_then(|all| all.iter().find(|e| e["name"] == "staging").cloned());
            if staging
                .as_ref()
                .is_some_and(|s| s["current"]["digest"] == digest.as_str())
            {
                break;
            }
            assert!(Instant::now() < deadline, "staging did not deploy: {app}");
            std::thread::sleep(Duration::from_millis(200));
        }

        // The audit entries the replicas committed as pending are chained by the
        // replicas themselves, with no reader of the log asking, into one chain.
        let deadline = Instant::now() + Duration::from_secs(10);
        while audit_pending(replicas[0]) != 0.0 {
            assert!(
                Instant::now() < deadline,
                "audit entries left unchained for 10 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let (status, verdict) =
            json_call(&base(2), "GET", "/api/v1/audit/verify", admin, &Value::Null);
        assert_eq!(status, 200, "{verdict}");
        assert_eq!(verdict["intact"], true, "{verdict}");
        let export = curl(
            &format!("{}/api/v1/audit/export", base(1)),
            &["-H", &format!("authorization: Bearer {admin}")],
        );
        let entries: Vec<Value> = export
            .body
            .lines()
            .map(|line| serde_json::from_str(line).expect("each line is JSON"))
            .collect();
        // The export may hold entries appended after the verification, never fewer.
        assert!(
            entries.len() as i64 >= verdict["entries"].as_i64().expect("entries"),
            "{verdict}"
        );
        for (n, entry) in entries.iter().enumerate() {
            assert_eq!(entry["sequence"], n as i64 + 1, "sequences without a gap");
        }
        for (action, actor) in [("apply", "admin"), ("promote", "admin"), ("approve", "sam")] {
            assert!(
                entries
                    .iter()
                    .any(|e| e["action"] == action && e["actor"] == actor),
                "{action} by {actor} is in the chain"
            );
        }

        // Garbage collection over the bucket, through the balancer: an abandoned blob
        // goes, everything every repository's tags name still pulls.
        let abandoned = b"a blob no manifest will reference";
        let digest = format!("sha256:{}", sha256_hex(abandoned));
        let answer = curl(
            &format!("{external}/v2/acme/web-app/blobs/uploads/?digest={digest}"),
            &["-u", &format!("admin:{admin}"), "-X", "POST", "--data-binary", "a blob no manifest will reference"],
        );
        assert_eq!(answer.status, 201, "{}", answer.body);
        let (status, first) = json_call(&external, "POST", "/api/v1/gc", admin, &serde_json::json!({}));
        assert_eq!(status, 200, "{first}");
        std::thread::sleep(Duration::from_millis(1200));
        let (status, report) = json_call(&external, "POST", "/api/v1/gc", admin, &serde_json::json!({}));
        assert_eq!(status, 200, "{report}");
        assert_eq!(report["errors"], serde_json::json!([]), "{report}\n{}", cluster.logs());
        assert!(report["blobs_deleted"].as_u64() >= Some(1), "{report}");
        let gone = curl(
            &format!("{external}/v2/acme/web-app/blobs/{digest}"),
            &["-u", &format!("admin:{admin}"), "-I"],
        );
        assert_eq!(gone.status, 404);
        let creds = format!("admin:{admin}");
        let catalog = curl(&format!("{external}/v2/_catalog?n=1000"), &["-u", &creds]);
        let catalog: Value = serde_json::from_str(&catalog.body).expect("catalog JSON");
        let mut pulled = 0;
        for repository in catalog["repositories"].as_array().expect("repositories") {
            let repository = repository.as_str().expect("name");
            let tags = curl(&format!("{external}/v2/{repository}/tags/list"), &["-u", &creds]);
            let tags: Value = serde_json::from_str(&tags.body).expect("tags JSON");
            for tag in tags["tags"].as_array().into_iter().flatten() {
                let tag = tag.as_str().expect("tag");
                let accept = "Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json";
                let manifest = curl(&format!("{external}/v2/{repository}/manifests/{tag}"), &["-u", &creds, "-H", accept]);
                assert_eq!(manifest.status, 200, "{repository}:{tag}");
                let manifest: Value = serde_json::from_str(&manifest.body).expect("manifest JSON");
                let config = std::iter::once(&manifest["config"]).filter(|c| c.is_object());
                for descriptor in config.chain(manifest["layers"].as_array().into_iter().flatten()) {
                    let blob = descriptor["digest"].as_str().expect("digest");
                    let answer = curl(&format!("{external}/v2/{repository}/blobs/{blob}"), &["-u", &creds, "-I"]);
                    assert_eq!(answer.status, 200, "{repository}@{blob} after collection");
                    pulled += 1;
                }
            }
        }
        assert!(pulled >= 3, "the check pulled {pulled} blobs");
    })
    .await
    .expect("the test ran");
}

/// The replica's `gantry_audit_pending_entries`, which must be there.
fn audit_pending(replica: &GantryServer) -> f64 {
    metric_values(replica, "gantry_audit_pending_entries ")
        .first()
        .copied()
        .expect("gantry_audit_pending_entries in /metrics")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_deployment_loses_nothing_acknowledged_and_another_finishes_its_job() {
    let database = testkit::TestDatabase::create(testkit::Backend::Postgres).await;
    let url = database.url().to_owned();
    tokio::task::spawn_blocking(move || {
        // Short leases, so a dead replica's job is taken over within seconds; requests
        // do not wait for their deployments.
        let mut cluster = Cluster::start(&url, "lease_seconds = 2\nwait_seconds = 0\n");
        let (front, admin) = (cluster.front.clone(), cluster.admin.clone());
        let addresses: Vec<String> = cluster
            .replicas
            .iter()
            .map(|r| r.as_ref().expect("running").address.clone())
            .collect();
        let go = cluster.dirs[0].path().join("go");
        let answer = curl(
            &format!("http://{}/api/v1/apply", addresses[0]),
            &[
                "-H",
                &format!("authorization: Bearer {admin}"),
                "-H",
                "content-type: application/yaml",
                "--data-binary",
                &slow_app(&go),
            ],
        );
        assert_eq!(answer.status, 200, "{}", answer.body);

        // An image pushed and acknowledged through the balancer.
        copy_multi_layer_image_in_and_out(&front, &format!("admin:{admin}"));
        let creds = format!("admin:{admin}");
        let pushed = crate::support::served_manifest_digest(
            &format!("{front}/acme/web-app:v1"),
            Some(&creds),
        );
        // A deployment into slow-app's dev, running on some replica.
        let slow = push_new_image(&front, &creds, "acme/slow-app:v1", "1x4K");
        let (status, _) = json_call(
            &format!("http://{}", addresses[1]),
            "POST",
            "/api/v1/builds",
            &admin,
            &json!({ "application": "slow-app", "digest": slow }),
        );
        assert_eq!(status, 201);
        let deadline = Instant::now() + Duration::from_secs(30);
        let (id, owner) = loop {
            let (_, history) = json_call(
                &format!("http://{}", addresses[2]),
                "GET",
                "/api/v1/apps/slow-app/history",
                &admin,
                &Value::Null,
            );
            if let Some(id) = history["deployments"][0]["id"].as_i64() {
                let (_, detail) = json_call(
                    &format!("http://{}", addresses[2]),
                    "GET",
                    &format!("/api/v1/deployments/{id}"),
                    &admin,
                    &Value::Null,
                );
                if let Some(owner) = detail["job"]["lease_owner"].as_str() {
                    break (id, owner.to_owned());
                }
            }
            assert!(
                Instant::now() < deadline,
                "no replica took the deployment: {history}"
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        let holder: usize = owner[1..2].parse().expect("the owner is rN/…");

        // Pushes go on through the balancer while the replica running it dies; the
        // file that lets a deployment finish appears.
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let pusher = {
            let (front, creds, stop) = (front.clone(), creds.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut acknowledged = Vec::new();
                let mut attempts = 0;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) || attempts < 4 {
                    let reference = format!("acme/during-the-kill:v{attempts}");
                    attempts += 1;
                    if let Some(digest) =
                        crate::support::try_push_new_image(&front, &creds, &reference, "2x64K")
                    {
                        acknowledged.push((reference, digest));
                    }
                }
                (attempts, acknowledged)
            })
        };
        std::thread::sleep(Duration::from_millis(500));
        let killed = cluster.replicas[holder].take().expect("running");
        crate::support::run(Command::new("kill").args(["-KILL", &killed.pid().to_string()]));
        std::fs::write(&go, b"").expect("let deployments finish");
        let survivor = format!("http://{}", addresses[(holder + 1) % 3]);
        let deadline = Instant::now() + Duration::from_secs(60);
        let finished = loop {
            let (_, detail) = json_call(
                &survivor,
                "GET",
                &format!("/api/v1/deployments/{id}"),
                &admin,
                &Value::Null,
            );
            if detail["state"] == "deployed" {
                break detail;
            }
            assert!(
                Instant::now() < deadline,
                "no other replica finished the deployment: {detail}"
            );
            std::thread::sleep(Duration::from_millis(200));
        };
        assert_eq!(finished["job"]["attempts"], 2, "{finished}");
        let second_owner = finished["job"]["lease_owner"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            !second_owner.starts_with(&format!("r{holder}/")),
            "{finished}"
        );

        // Every push acknowledged while the replica died is served, whole.
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let (attempts, acknowledged) = pusher.join().expect("the pushes ran");
        assert!(
            acknowledged.len() >= 2,
            "{} of {attempts} pushes around the kill were acknowledged",
            acknowledged.len()
        );
        for (reference, digest) in &acknowledged {
            assert_eq!(
                &crate::support::served_manifest_digest(
                    &format!("{front}/{reference}"),
                    Some(&creds)
                ),
                digest,
                "{reference}"
            );
            let layout = cluster.dirs[2]
                .path()
                .join(reference.replace([':', '/'], "-"));
            crate::support::run(
                crate::support::skopeo()
                    .args(["copy", "--src-tls-verify=false", "--src-creds", &creds])
                    .arg(format!("docker://{front}/{reference}"))
                    .arg(format!("oci:{}:x", layout.display())),
            );
        }

        // What was acknowledged before the kill is still served through the balancer.
        assert_eq!(
            crate::support::served_manifest_digest(
                &format!("{front}/acme/web-app:v1"),
                Some(&creds)
            ),
            pushed
        );
        // And the two replicas left take new pushes through it.
        let after = push_new_image(&front, &creds, "acme/after-the-kill:v1", "1x4K");
        assert_eq!(
            crate::support::served_manifest_digest(
                &format!("{front}/acme/after-the-kill:v1"),
                Some(&creds)
            ),
            after
        );
        drop(killed);
    })
    .await
    .expect("the test ran");
}
