//! Through the real binary: a `webhook` target answered by a small receiver that checks
//! the signature itself and calls back; and drift on a `gitops` target — someone edits
//! the deployed file by hand, the reconcile loop flags it, a re-promotion puts it back
//! and the flag clears.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{GantryServer, make_image, run, skopeo};

const SECRET: &str = "whsec-e2e-2f1c";

/// A server with a config file and the admin's token.
struct Platform {
    server: GantryServer,
    dir: tempfile::TempDir,
}

impl Platform {
    fn start(config: &str) -> Platform {
        let dir = tempfile::tempdir().expect("temporary directory");
        std::fs::create_dir_all(dir.path().join("secrets/hooks")).expect("secrets");
        std::fs::write(dir.path().join("secrets/hooks/prod"), SECRET).expect("secret");
        let config = format!(
            "[outbound]\nallow = [\"127.0.0.1\"]\n[deploy]\nsecrets_dir = \"{}\"\n{config}",
            dir.path().join("secrets").display()
        );
        std::fs::write(dir.path().join("gantry.toml"), config).expect("config");
        let server = GantryServer::start(dir.path(), &["--config", "gantry.toml"], &[]);
        Platform { server, dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn gantry(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_gantry"))
            .args(args)
            .current_dir(self.path())
            .env("HOME", self.path())
            .env("GANTRY_URL", format!("http://{}", self.server.address))
            .env("GANTRY_TOKEN", self.server.token())
            .output()
            .expect("run the gantry binary")
    }

    fn ok(&self, args: &[&str]) -> String {
        let output = self.gantry(args);
        assert!(
            output.status.success(),
            "gantry {args:?}: {}\n{}\nserver log:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr),
            self.server.log()
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn apply(&self, resources: &str) {
        std::fs::write(self.path().join("gantry.yaml"), resources).expect("resources");
        self.ok(&["apply", "-f", "gantry.yaml"]);
    }

    /// An image pushed with skopeo as the admin; its digest.
    fn push_image(&self, repository: &str, tag: &str) -> String {
        let layout = self.path().join(format!("image-{tag}"));
        let image = &make_image(&layout, &["--layers", "1x8K", "--tag", tag])[0];
        run(skopeo()
            .args([
                "copy",
                "--dest-tls-verify=false",
                "--dest-creds",
                &self.server.creds(),
            ])
            .arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!(
                "docker://{}/{repository}:{tag}",
                self.server.address
            )));
        image["manifest"].as_str().expect("a digest").to_owned()
    }

    fn api(&self, path: &str) -> Value {
        let response = ureq::get(&format!("http://{}{path}", self.server.address))
            .header("Authorization", &format!("Bearer {}", self.server.token()))
            .call()
            .expect("the API answers");
        response.into_body().read_json().expect("JSON")
    }
}

/// HMAC-SHA256, written out from its definition, to check Gantry's signature
/// independently of how Gantry computes it.
fn hmac_sha256(key: &[u8], message: &[u8]) -> String {
    use sha2::Digest;
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&sha2::Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = sha2::Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    let outer = sha2::Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize();
    hex::encode(outer)
}

/// What the receiver saw of one delivery.
struct Seen {
    signature_ok: bool,
    payload: Value,
    callback_status: u16,
}

/// A receiver that checks the signature, answers 202, then reports success through the
/// callback with the payload's token.
fn start_receiver() -> (String, mpsc::Receiver<Seen>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/deploy", listener.local_addr().expect("address"));
    let (sender, seen) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut headers = Vec::new();
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                    break;
                }
                if let Some((name, value)) = line.trim_end().split_once(':') {
                    headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
                }
            }
            let header = |name: &str| {
                headers
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            let length: usize = header("content-length").parse().unwrap_or(0);
            let mut body = vec![0u8; length];
            let _ = reader.read_exact(&mut body);
            let _ = write!(
                stream,
                "HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
            drop(stream);
            let mut signed = header("x-gantry-timestamp").into_bytes();
            signed.push(b'.');
            signed.extend_from_slice(&body);
            let signature_ok = header("x-gantry-signature")
                == format!("sha256={}", hmac_sha256(SECRET.as_bytes(), &signed));
            let payload: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let callback = payload["callback_url"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let token = payload["callback_token"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let callback_status = ureq::post(&callback)
                .header("Authorization", &format!("Bearer {token}"))
                .config()
                .http_status_as_error(false)
                .build()
                .send_json(serde_json::json!({"state": "succeeded", "message": "rolled out by the receiver"}))
                .map(|response| response.status().as_u16())
                .unwrap_or(0);
            let _ = sender.send(Seen {
                signature_ok,
                payload,
                callback_status,
            });
        }
    });
    (url, seen)
}

#[test]
fn a_webhook_receiver_checks_the_signature_and_reports_through_its_callback() {
    let platform = Platform::start("");
    let (url, seen) = start_receiver();
    platform.apply(&format!(
        "kind: Pipeline\nname: hooked\nstages:\n  - name: prod\n    auto: true\n---\n\
kind: Application\nname: api\ntype: container\nrepository: acme/api\npipeline: hooked\n\
environments:\n  prod:\n    target:\n      webhook: {{url: \"{url}\", secret_ref: hooks/prod, timeout: 30s}}\n"
    ));
    let digest = platform.push_image("acme/api", "v1");
    // The first stage is auto: the notification deploys, and waits for the callback.
    let notified = platform.ok(&[
        "build", "notify", "--app", "api", "--digest", &digest, "-o", "json",
    ]);
    let notified: Value = serde_json::from_str(&notified).expect("JSON");
    assert_eq!(notified["promotion"]["state"], "deployed", "{notified}");
    let seen = seen
        .recv_timeout(Duration::from_secs(10))
        .expect("the receiver got the deployment");
    assert!(
        seen.signature_ok,
        "the signature checks out under the shared secret: {}",
        seen.payload
    );
    assert_eq!(seen.callback_status, 200);
    assert_eq!(seen.payload["digest"], digest.as_str());
    assert_eq!(seen.payload["environment"], "prod");
    let id = seen.payload["deployment_id"].as_i64().expect("id");
    let deployment = platform.api(&format!("/api/v1/deployments/{id}"));
    assert_eq!(deployment["state"], "deployed");
    assert_eq!(
        deployment["message"],
        "the receiver reported success: rolled out by the receiver"
    );
    let log = platform.api(&format!("/api/v1/deployments/{id}/log"));
    let lines: Vec<&str> = log["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .filter_map(|l| l["line"].as_str())
        .collect();
    assert!(
        lines.iter().any(|l| l.starts_with("delivering deployment")),
        "{lines:#?}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("callback: succeeded")),
        "{lines:#?}"
    );
}

fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Hand")
        .env("GIT_AUTHOR_EMAIL", "hand@example.com")
        .env("GIT_COMMITTER_NAME", "Hand")
        .env("GIT_COMMITTER_EMAIL", "hand@example.com")
        .output()
        .expect("git runs");
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Polls the environment's status until `wanted` holds of it (at most 30 s).
fn wait_for(platform: &Platform, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = platform.api("/api/v1/apps/web");
        let dev = status["environments"]
            .as_array()
            .and_then(|envs| envs.iter().find(|e| e["name"] == "dev").cloned())
            .expect("dev");
        if wanted(&dev) {
            return dev;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not happen: {dev}\n{}",
            platform.server.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn a_gitops_file_edited_by_hand_drifts_until_a_re_promotion_puts_it_back() {
    let platform = Platform::start("reconcile_interval_seconds = 1\n");
    let origin = platform.path().join("deploy.git");
    git(
        platform.path(),
        &[
            "init",
            "--bare",
            "-b",
            "main",
            origin.to_str().expect("utf-8"),
        ],
    );
    let seed = platform.path().join("seed");
    git(
        platform.path(),
        &[
            "clone",
            origin.to_str().expect("utf-8"),
            seed.to_str().expect("utf-8"),
        ],
    );
    std::fs::write(
        seed.join("values.yaml"),
        "# web in dev\nimage: none  # set by Gantry\n",
    )
    .expect("values");
    git(&seed, &["add", "."]);
    git(&seed, &["commit", "-m", "seed"]);
    git(&seed, &["push", "origin", "main"]);
    platform.apply(&format!(
        "kind: Pipeline\nname: web\nstages:\n  - name: dev\n    auto: true\n---\n\
kind: Application\nname: web\ntype: container\nrepository: acme/web\npipeline: web\n\
environments:\n  dev:\n    target:\n      gitops: {{repo: \"{}\", branch: main, file: values.yaml, key: image}}\n",
        origin.display()
    ));
    let digest = platform.push_image("acme/web", "v1");
    let notified: Value = serde_json::from_str(&platform.ok(&[
        "build", "notify", "--app", "web", "--digest", &digest, "-o", "json",
    ]))
    .expect("JSON");
    assert_eq!(notified["promotion"]["state"], "deployed", "{notified}");
    let dev = wait_for(&platform, "the read-back", |dev| {
        dev["observed"]["digest"] == digest.as_str()
    });
    assert_eq!(dev["drift_since"], Value::Null);
    // Someone points dev at another image by hand.
    git(&seed, &["pull", "origin", "main"]);
    let by_hand = format!("sha256:{}", "cd".repeat(32));
    let values = std::fs::read_to_string(seed.join("values.yaml")).expect("values");
    let edited = values
        .lines()
        .map(|line| {
            if line.starts_with("image:") {
                format!("image: acme/web@{by_hand}  # hotfix")
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    std::fs::write(seed.join("values.yaml"), edited).expect("edit");
    git(&seed, &["commit", "-am", "hotfix by hand"]);
    git(&seed, &["push", "origin", "main"]);
    let dev = wait_for(&platform, "drift", |dev| dev["drift_since"].is_string());
    assert_eq!(dev["observed"]["digest"], by_hand.as_str());
    let metrics = ureq::get(&format!("http://{}/metrics", platform.server.address))
        .call()
        .expect("metrics")
        .into_body()
        .read_to_string()
        .expect("text");
    assert!(
        metrics.lines().any(|l| l.starts_with("gantry_drift{")
            && l.contains("application=\"web\"")
            && l.ends_with(" 1")),
        "{metrics}"
    );
    // Promoting the digest again writes it back; the read-back agrees and drift ends.
    let promoted = platform.gantry(&["promote", "web", "--env", "dev", "--digest", &digest]);
    assert!(
        promoted.status.success(),
        "{}",
        String::from_utf8_lossy(&promoted.stderr)
    );
    let dev = wait_for(&platform, "the end of drift", |dev| {
        dev["drift_since"].is_null()
    });
    assert_eq!(dev["observed"]["digest"], digest.as_str());
    let log = git(&origin, &["log", "--format=%s%n%b%n--", "main"]);
    assert_eq!(
        log.matches("Gantry-Deployment:").count(),
        2,
        "one commit per deployment:\n{log}"
    );
    let audit = platform.ok(&["audit", "export"]);
    let drift_entries = audit
        .lines()
        .filter(|line| line.contains("\"action\":\"drift\""))
        .count();
    assert_eq!(drift_entries, 2, "drift started and ended:\n{audit}");
}
