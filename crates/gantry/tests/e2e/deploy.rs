//! Deployments through the real `gantry` binary into real destinations: a container
//! promoted dev → staging → prod by commits to a bare git repository and a copy into
//! the reference registry; a static site synced to a directory and to SeaweedFS's S3;
//! a `command` target; and a server killed with SIGKILL in the middle of a deployment,
//! whose job another process finishes exactly once.

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{
    GantryServer, PeerRegistry, Seaweed, curl, describe, make_image, push_new_image, run,
    served_manifest_digest, sha256_hex, skopeo, stdout_of,
};

/// The exit code of `gantry promote` when the promotion waits on its gate.
const WAITING: i32 = 6;

/// A digest nothing was ever built with: what the values files hold before the first
/// deployment.
const PLACEHOLDER: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

/// A server started with a configuration file, in a temporary directory that is also
/// the command line's `HOME` (so no login file of the machine is read). The admin
/// token printed at the first start is kept across restarts.
struct Platform {
    server: Option<GantryServer>,
    admin_token: String,
    dir: tempfile::TempDir,
    tokens: Vec<(String, String)>,
}

impl Platform {
    /// Writes `config` to `gantry.toml` and starts `gantry serve --config gantry.toml`.
    fn start(dir: tempfile::TempDir, config: &str) -> Platform {
        std::fs::write(dir.path().join("gantry.toml"), config).expect("write the config");
        let server = GantryServer::start(dir.path(), &["--config", "gantry.toml"], &[]);
        let admin_token = server.token().to_owned();
        Platform {
            server: Some(server),
            admin_token,
            dir,
            tokens: Vec::new(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn server(&self) -> &GantryServer {
        self.server.as_ref().expect("the server runs")
    }

    fn address(&self) -> String {
        self.server().address.clone()
    }

    /// Kills the server with SIGKILL and waits until it is gone.
    fn kill(&mut self) {
        let server = self.server.take().expect("the server runs");
        run(Command::new("kill").args(["-KILL", &server.pid().to_string()]));
        let status = server.wait();
        assert!(!status.success(), "the server was killed: {status}");
    }

    /// Starts the server again on the same data directory and configuration.
    fn restart(&mut self) {
        assert!(self.server.is_none(), "stop the server first");
        self.server = Some(GantryServer::start(
            self.path(),
            &["--config", "gantry.toml"],
            &[],
        ));
    }

    fn token(&self, user: &str) -> &str {
        if user == "admin" {
            return &self.admin_token;
        }
        self.tokens
            .iter()
            .find(|(name, _)| name == user)
            .map(|(_, token)| token.as_str())
            .unwrap_or_else(|| panic!("no token for {user}"))
    }

    /// `gantry ARGS…` as `user`.
    fn gantry(&self, user: &str, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_gantry"))
            .args(args)
            .current_dir(self.path())
            .env("HOME", self.path())
            .env("GANTRY_URL", format!("http://{}", self.address()))
            .env("GANTRY_TOKEN", self.token(user))
            .output()
            .expect("run the gantry binary")
    }

    /// `gantry ARGS…` as `user`, which must exit `code`; its stdout.
    fn expect(&self, user: &str, code: i32, args: &[&str]) -> String {
        let output = self.gantry(user, args);
        assert_eq!(
            output.status.code(),
            Some(code),
            "gantry {args:?} as {user}\nstatus {}\nstdout:\n{}\nstderr:\n{}\nserver log:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            self.server().log()
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// `gantry ARGS… -o json` as `user`, which must exit `code`; its JSON.
    fn json(&self, user: &str, code: i32, args: &[&str]) -> Value {
        let out = self.expect(user, code, &[args, &["-o", "json"]].concat());
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?} -o json: {e}\n{out}"))
    }

    /// Declares resources with `gantry apply`.
    fn apply(&self, yaml: &str) {
        std::fs::write(self.path().join("resources.yaml"), yaml).expect("write resources");
        self.expect("admin", 0, &["apply", "-f", "resources.yaml"]);
    }

    /// Creates `name` with `role` and a token for it.
    fn add_user(&mut self, name: &str, role: &str) {
        self.expect("admin", 0, &["user", "create", name, "--role", role]);
        let token = self.expect("admin", 0, &["token", "create", name]);
        self.tokens.push((name.to_owned(), token.trim().to_owned()));
    }

    /// Builds an image with mkimage.py and pushes it with skopeo as `REPOSITORY:TAG`;
    /// its manifest digest.
    fn push_image(&self, repository: &str, tag: &str) -> String {
        let layout = self.path().join(format!("image-{tag}"));
        let image = &make_image(&layout, &["--layers", "2x16K", "--tag", tag])[0];
        run(skopeo()
            .args([
                "copy",
                "--dest-tls-verify=false",
                "--dest-creds",
                &format!("admin:{}", self.admin_token),
            ])
            .arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("docker://{}/{repository}:{tag}", self.address())));
        image["manifest"]
            .as_str()
            .expect("mkimage names the manifest digest")
            .to_owned()
    }

    /// `gantry build notify` as admin; the promotion into the first stage.
    fn notify(&self, application: &str, digest: &str, commit: &str) -> Value {
        let notified = self.json(
            "admin",
            0,
            &[
                "build",
                "notify",
                "--app",
                application,
                "--digest",
                digest,
                "--commit",
                commit,
                "--branch",
                "main",
            ],
        );
        notified["promotion"].clone()
    }

    /// The body of `GET PATH` with the admin token.
    fn get(&self, path: &str) -> Vec<u8> {
        run(Command::new("curl")
            .args(["-s", "-f", "-H"])
            .arg(format!("Authorization: Bearer {}", self.admin_token))
            .arg(format!("http://{}{path}", self.address())))
        .stdout
    }

    fn api(&self, path: &str) -> Value {
        let body = self.get(path);
        serde_json::from_slice(&body)
            .unwrap_or_else(|e| panic!("GET {path}: {e}\n{}", String::from_utf8_lossy(&body)))
    }

    /// `GET /api/v1/deployments/{id}`: the deployment with its job.
    fn deployment(&self, id: i64) -> Value {
        self.api(&format!("/api/v1/deployments/{id}"))
    }

    /// `GET /api/v1/deployments/{id}/log`: its lines, oldest first.
    fn log(&self, id: i64) -> Vec<String> {
        self.api(&format!("/api/v1/deployments/{id}/log"))["lines"]
            .as_array()
            .expect("lines")
            .iter()
            .map(|line| line["line"].as_str().expect("a line").to_owned())
            .collect()
    }

    /// Waits (bounded) until deployment `id` is no longer `deploying`; the deployment.
    fn wait_for_deployment(&self, id: i64, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let deployment = self.deployment(id);
            if deployment["state"] != "deploying" {
                return deployment;
            }
            assert!(
                Instant::now() < deadline,
                "deployment {id} still deploying after {within:?}: {deployment:#}\nserver log:\n{}",
                self.server().log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The deployment a promotion started.
fn deployment_of(promotion: &Value) -> i64 {
    promotion["deployment_id"]
        .as_i64()
        .unwrap_or_else(|| panic!("the promotion started no deployment: {promotion:#}"))
}

/// Asserts that `lines` contain a line containing each of `expected`, in that order.
fn assert_log_has(lines: &[String], expected: &[&str]) {
    let mut rest = lines.iter();
    for text in expected {
        assert!(
            rest.any(|line| line.contains(text)),
            "the log has no line containing {text:?} (after the ones before it):\n{}",
            lines.join("\n")
        );
    }
}

/// Runs git for the test's own setup and checks, with a fixed identity and no user or
/// system configuration.
fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env_remove("GIT_DIR")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Platform Team")
        .env("GIT_AUTHOR_EMAIL", "platform@example.com")
        .env("GIT_COMMITTER_NAME", "Platform Team")
        .env("GIT_COMMITTER_EMAIL", "platform@example.com")
        .output()
        .unwrap_or_else(|e| panic!("cannot run git (is it installed? see .ci/run): {e}"));
    assert!(
        output.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A bare repository holding the environments' values files, as a platform team keeps
/// them; pushes that are not fast-forwards are refused, as on a protected branch.
struct ConfigRepo {
    bare: PathBuf,
}

impl ConfigRepo {
    fn new(root: &Path, files: &[(&str, &str)]) -> ConfigRepo {
        let bare = root.join("deploy-config.git");
        std::fs::create_dir_all(&bare).expect("bare repository directory");
        git(&bare, &["init", "-q", "--bare", "--initial-branch=main"]);
        git(&bare, &["config", "receive.denyNonFastForwards", "true"]);
        let seed = root.join("deploy-config-seed");
        std::fs::create_dir_all(&seed).expect("seed directory");
        git(&seed, &["init", "-q", "--initial-branch=main"]);
        for (path, content) in files {
            let path = seed.join(path);
            std::fs::create_dir_all(path.parent().expect("a parent")).expect("directories");
            std::fs::write(path, content).expect("a values file");
        }
        git(&seed, &["add", "-A"]);
        git(
            &seed,
            &["commit", "-q", "-m", "Values of every environment"],
        );
        git(&seed, &["push", "-q", &bare.display().to_string(), "main"]);
        ConfigRepo { bare }
    }

    fn path(&self) -> String {
        self.bare.display().to_string()
    }

    /// Every commit on main, newest first: its id and its whole message.
    fn commits(&self) -> Vec<(String, String)> {
        git(&self.bare, &["log", "--format=%H%n%B%x1e", "main"])
            .split('\u{1e}')
            .filter(|entry| !entry.trim().is_empty())
            .map(|entry| {
                let (id, message) = entry
                    .trim_start()
                    .split_once('\n')
                    .expect("an id, then a message");
                (id.to_owned(), message.to_owned())
            })
            .collect()
    }

    /// The one commit of deployment `id` (by its `Gantry-Deployment` trailer); fails
    /// unless there is exactly one.
    fn commit_of(&self, id: i64) -> (String, String) {
        let trailer = format!("Gantry-Deployment: {id}\n");
        let found: Vec<(String, String)> = self
            .commits()
            .into_iter()
            .filter(|(_, message)| message.contains(&trailer))
            .collect();
        assert_eq!(
            found.len(),
            1,
            "deployment {id} has exactly one commit: {found:#?}"
        );
        found.into_iter().next().expect("one commit")
    }

    fn show(&self, revision: &str, path: &str) -> String {
        git(&self.bare, &["show", &format!("{revision}:{path}")])
    }

    /// The files a commit changed.
    fn changed_files(&self, commit: &str) -> Vec<String> {
        git(&self.bare, &["show", "--format=", "--name-only", commit])
            .lines()
            .filter(|line| !line.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// The removed and added lines of a commit's diff, without context.
    fn changed_lines(&self, commit: &str) -> (Vec<String>, Vec<String>) {
        let diff = git(&self.bare, &["show", "--format=", "--unified=0", commit]);
        let removed = diff
            .lines()
            .filter(|line| line.starts_with('-') && !line.starts_with("---"))
            .map(|line| line[1..].to_owned())
            .collect();
        let added = diff
            .lines()
            .filter(|line| line.starts_with('+') && !line.starts_with("+++"))
            .map(|line| line[1..].to_owned())
            .collect();
        (removed, added)
    }

    /// Asserts that `commit` changed exactly one line of `path` — `old_line` — into a
    /// line naming `digest` that keeps its indentation and trailing comment, and nothing
    /// else of the file or the repository.
    fn assert_one_value_line(&self, commit: &str, path: &str, old_line: &str, digest: &str) {
        assert_eq!(self.changed_files(commit), [path], "commit {commit}");
        let (removed, added) = self.changed_lines(commit);
        assert_eq!(
            removed,
            [old_line],
            "commit {commit} removed only the value line"
        );
        assert_eq!(added.len(), 1, "commit {commit} added one line: {added:?}");
        let new_line = &added[0];
        assert!(new_line.contains(digest), "{new_line:?} names {digest}");
        let indent = |line: &str| line.len() - line.trim_start().len();
        assert_eq!(indent(new_line), indent(old_line), "{new_line:?}");
        let comment = |line: &str| line.split_once(" #").map(|(_, c)| c.to_owned());
        assert_eq!(
            comment(new_line),
            comment(old_line),
            "the trailing comment stays: {new_line:?}"
        );
        let before = self.show(&format!("{commit}^"), path);
        let after = self.show(commit, path);
        assert_eq!(
            after,
            before.replacen(old_line, new_line, 1),
            "everything but the value line is byte for byte as it was"
        );
    }
}

/// An HTTP endpoint on loopback for health checks. The first health request is
/// announced on a channel and never answered (its connection is held open); every later
/// one gets 200. Requests for other paths (a stray client that found the port) get 404
/// and are not counted.
struct StallingHealthEndpoint {
    url: String,
    requests: Arc<AtomicUsize>,
    first: mpsc::Receiver<()>,
}

impl StallingHealthEndpoint {
    fn start() -> StallingHealthEndpoint {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let path = format!("/healthz/{}", std::process::id());
        let url = format!("http://{}{path}", listener.local_addr().expect("address"));
        let request_line = format!("GET {path} HTTP/1.1\r\n");
        let requests = Arc::new(AtomicUsize::new(0));
        let counted = requests.clone();
        let (announce, first) = mpsc::channel();
        std::thread::spawn(move || {
            use std::io::Write;
            let mut held = Vec::new();
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut buffer = [0u8; 4096];
                let read = stream.read(&mut buffer).unwrap_or(0);
                if !buffer[..read].starts_with(request_line.as_bytes()) {
                    let _ = write!(
                        stream,
                        "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    );
                    continue;
                }
                if counted.fetch_add(1, Ordering::SeqCst) == 0 {
                    held.push(stream);
                    let _ = announce.send(());
                    continue;
                }
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
                );
            }
        });
        StallingHealthEndpoint {
            url,
            requests,
            first,
        }
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// The base of a configuration: data and secrets in `root`, targets may reach loopback.
fn config_base(root: &Path) -> String {
    format!(
        r#"data_dir = "{data}"

[outbound]
allow = ["127.0.0.1"]

[deploy]
secrets_dir = "{secrets}"
work_dir = "{work}"
"#,
        data = root.join("data").display(),
        secrets = root.join("secrets").display(),
        work = root.join("deploy-work").display(),
    )
}

/// The dev values file: comments, odd spacing, flow collections, blank lines.
fn dev_values() -> String {
    format!(
        r#"# web in dev — edited by hand, except for the image line.

replicaCount:    1          # one is plenty here
image:
    reference:   "acme/web@{PLACEHOLDER}"    # written by Gantry
    pullPolicy:  IfNotPresent
env: {{ LOG_LEVEL: debug,   FEATURE_X: "true" }}
ports: [ 8080,8443 ]


# notes at the end stay at the end
"#
    )
}

/// The staging values file: the tag and the digest as keys of their own (a chart
/// that writes `image: {{repository}}:{{tag}}@{{digest}}`).
fn staging_values() -> String {
    format!(
        r#"---
replicaCount: 3
image:
  repository: acme/web      # pulled through the mirror
  tag: latest   # the build's tag
  digest: {PLACEHOLDER}   # pinned: never a tag
  pullPolicy: IfNotPresent
resources: {{limits: {{cpu: 500m, memory: 256Mi}}}}
"#
    )
}

#[test]
fn a_container_moves_by_git_commits_through_dev_and_staging_then_is_copied_to_prod_registry() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let dev_file = "envs/dev/values.yaml";
    let staging_file = "envs/staging/values.yaml";
    let (dev_text, staging_text) = (dev_values(), staging_values());
    let repo = ConfigRepo::new(
        dir.path(),
        &[(dev_file, &dev_text), (staging_file, &staging_text)],
    );
    let prod_registry = PeerRegistry::start();
    std::fs::create_dir_all(dir.path().join("secrets")).expect("secrets directory");
    let config = format!(
        "{}\n[deploy.registry_copy.registries.\"{}\"]\nplain_http = true\n",
        config_base(dir.path()),
        prod_registry.address
    );
    let mut platform = Platform::start(dir, &config);
    platform.apply(&format!(
        r#"kind: Pipeline
name: web-flow
stages:
  - name: dev
    auto: true
  - name: staging
  - name: prod
    gate:
      approvals: [{{ role: staff, count: 1 }}]
---
kind: Application
name: web
type: container
repository: acme/web
pipeline: web-flow
environments:
  dev:
    target: {{ gitops: {{ repo: "{repo}", file: {dev_file}, key: image.reference }} }}
  staging:
    target:
      gitops: {{ repo: "{repo}", branch: main, file: {staging_file}, keys: {{ tag: image.tag, digest: image.digest }} }}
  prod:
    target: {{ registry-copy: {{ to: "{registry}/acme/web" }} }}
"#,
        repo = repo.path(),
        registry = prod_registry.address,
    ));
    platform.add_user("staff-sam", "staff");

    // CI pushes and notifies: dev deploys at once, by one commit.
    let digest = platform.push_image("acme/web", "v1");
    let dev = platform.notify("web", &digest, "3c1d9e0a7b5f4e2d1c0b9a8f7e6d5c4b3a291807");
    assert_eq!(dev["environment"], "dev", "{dev:#}");
    assert_eq!(dev["state"], "deployed", "{dev:#}");
    let dev_deployment = deployment_of(&dev);

    // Staging by promotion (no gate), prod behind a staff approval.
    let staging = platform.json(
        "admin",
        0,
        &["promote", "web", "--env", "staging", "--digest", &digest],
    );
    assert_eq!(staging["state"], "deployed", "{staging:#}");
    let staging_deployment = deployment_of(&staging);
    let prod = platform.json(
        "admin",
        WAITING,
        &["promote", "web", "--env", "prod", "--digest", &digest],
    );
    assert_eq!(prod["state"], "waiting", "{prod:#}");
    let prod_id = prod["id"].as_i64().expect("a promotion id").to_string();
    let approved = platform.json("staff-sam", 0, &["approve", &prod_id]);
    assert_eq!(approved["state"], "deployed", "{approved:#}");
    let prod_deployment = deployment_of(&approved);

    // The git repository: the seed commit and one commit per gitops deployment, each
    // naming the digest and changing only the value line.
    let commits = repo.commits();
    assert_eq!(commits.len(), 3, "{commits:#?}");
    let (dev_commit, dev_message) = repo.commit_of(dev_deployment);
    let (staging_commit, staging_message) = repo.commit_of(staging_deployment);
    assert_eq!(
        commits[0].0, staging_commit,
        "staging's commit is the newest"
    );
    assert_eq!(commits[1].0, dev_commit);
    for (message, environment) in [(&dev_message, "dev"), (&staging_message, "staging")] {
        assert!(
            message.starts_with(&format!("Deploy web {} to {environment}", &digest[7..19])),
            "{message}"
        );
        assert!(
            message.contains(&format!("Gantry-Digest: {digest}\n")),
            "{message}"
        );
        assert!(
            message.contains(&format!("Gantry-Environment: {environment}\n")),
            "{message}"
        );
    }
    // The full reference is pullable as written: it names the registry's host.
    repo.assert_one_value_line(
        &dev_commit,
        dev_file,
        &format!("    reference:   \"acme/web@{PLACEHOLDER}\"    # written by Gantry"),
        &format!("\"{}/acme/web@{digest}\"", platform.address()),
    );
    // The tag key gets the tag the build was pushed under, the digest key its digest.
    assert_eq!(repo.changed_files(&staging_commit), [staging_file]);
    assert_eq!(
        repo.changed_lines(&staging_commit),
        (
            vec![
                "  tag: latest   # the build's tag".to_owned(),
                format!("  digest: {PLACEHOLDER}   # pinned: never a tag"),
            ],
            vec![
                "  tag: v1   # the build's tag".to_owned(),
                format!("  digest: {digest}   # pinned: never a tag"),
            ]
        )
    );
    // Dev's commit left staging's file alone, and the other way round.
    assert_eq!(repo.show(&dev_commit, staging_file), staging_text);
    assert_eq!(
        repo.show("main", dev_file),
        repo.show(&dev_commit, dev_file)
    );

    // Prod: the reference registry serves the promoted digest under the build's tag and
    // the tag `prod`.
    assert_eq!(
        served_manifest_digest(&format!("{}/acme/web:v1", prod_registry.address), None),
        digest
    );
    let reference = format!("{}/acme/web:prod", prod_registry.address);
    let inspected: Value = serde_json::from_str(&stdout_of(
        skopeo()
            .args(["inspect", "--tls-verify=false"])
            .arg(format!("docker://{reference}")),
    ))
    .expect("skopeo inspect prints JSON");
    assert_eq!(inspected["Digest"], digest.as_str(), "{inspected:#}");
    assert_eq!(served_manifest_digest(&reference, None), digest);

    // Each deployment is recorded with its job and the target's steps.
    for (id, target) in [
        (dev_deployment, "gitops"),
        (staging_deployment, "gitops"),
        (prod_deployment, "registry-copy"),
    ] {
        let deployment = platform.deployment(id);
        assert_eq!(deployment["state"], "deployed", "{deployment:#}");
        assert_eq!(deployment["target"], target, "{deployment:#}");
        assert_eq!(deployment["digest"], digest.as_str(), "{deployment:#}");
        assert_eq!(deployment["job"]["state"], "finished", "{deployment:#}");
        assert_eq!(deployment["job"]["attempts"], 1, "{deployment:#}");
    }
    assert_log_has(
        &platform.log(dev_deployment),
        &[
            "attempt 1 of",
            "gitops target: deploying",
            "fetching ",
            "set image.reference in envs/dev/values.yaml",
            &format!("committed {dev_commit}"),
            &format!("pushed {dev_commit} to main"),
            "deployed: committed",
        ],
    );
    assert_log_has(
        &platform.log(staging_deployment),
        &[
            "set image.tag, image.digest in envs/staging/values.yaml",
            &format!("pushed {staging_commit} to main"),
        ],
    );
    assert_log_has(
        &platform.log(prod_deployment),
        &[
            "attempt 1 of",
            "registry-copy target: deploying",
            &format!(
                "copying acme/web@{digest} to {}/acme/web as v1, prod",
                prod_registry.address
            ),
            "manifest pushed as",
            &format!("the destination serves {digest}"),
            "deployed: copied",
        ],
    );

    // What runs where, as the command line reports it.
    let status = platform.json("admin", 0, &["status", "web"]);
    for environment in ["dev", "staging", "prod"] {
        let row = status["environments"]
            .as_array()
            .expect("environments")
            .iter()
            .find(|e| e["name"] == environment)
            .unwrap_or_else(|| panic!("no {environment} in {status:#}"));
        assert_eq!(row["current"]["digest"], digest.as_str(), "{status:#}");
    }
}

/// The files of a small static-site build.
const SITE: &[(&str, &str)] = &[
    (
        "index.html",
        "<!doctype html>\n<title>Docs</title>\n<script src=\"assets/app.3f2a9c.js\"></script>\n",
    ),
    ("assets/app.3f2a9c.js", "document.title += \" ready\";\n"),
    ("data.json", "{\"pages\": 12, \"version\": 3}\n"),
    ("robots.txt", "User-agent: *\nAllow: /\n"),
];

/// What each file of [`SITE`] must be served with: its Content-Type and Cache-Control.
const SITE_HEADERS: &[(&str, &str, &str)] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        "max-age=0, must-revalidate",
    ),
    (
        "assets/app.3f2a9c.js",
        "text/javascript; charset=utf-8",
        "public, max-age=31536000, immutable",
    ),
    (
        "data.json",
        "application/json",
        "max-age=0, must-revalidate",
    ),
    (
        "robots.txt",
        "text/plain; charset=utf-8",
        "public, max-age=300",
    ),
];

/// Lists a bucket under a prefix and reads each object's headers and bytes (as a
/// SHA-256), and the deployment record, with boto3.
const DESCRIBE_BUCKET: &str = r#"
import hashlib, json, sys
bucket, prefix = sys.argv[1], sys.argv[2]
objects = {}
for page in S3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
    for entry in page.get("Contents", []):
        key = entry["Key"]
        got = S3.get_object(Bucket=bucket, Key=key)
        objects[key[len(prefix):]] = {
            "content_type": got.get("ContentType"),
            "cache_control": got.get("CacheControl"),
            "sha256": hashlib.sha256(got["Body"].read()).hexdigest(),
        }
record = S3.get_object(Bucket=bucket, Key=prefix + ".gantry/deployed.json")["Body"].read()
print(json.dumps({"objects": objects, "deployed": json.loads(record)}))
"#;

#[test]
fn a_static_site_is_synced_to_a_directory_and_to_s3_with_cache_headers_and_a_record() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let seaweed = Seaweed::start(&["docs-site"]);
    let secrets = dir.path().join("secrets");
    std::fs::create_dir_all(secrets.join("s3")).expect("secrets directory");
    std::fs::write(
        secrets.join("s3/seaweed"),
        format!("{}\n", seaweed.secret_key),
    )
    .expect("write the secret");
    let preview_dir = dir.path().join("www-preview");
    let config = format!(
        r#"{base}
[deploy.static_site.s3]
endpoint = "{endpoint}"
region = "us-east-1"
access_key_id = "{key}"
secret_access_key_ref = "s3/seaweed"
allow_http = true
"#,
        base = config_base(dir.path()),
        endpoint = seaweed.endpoint,
        key = seaweed.access_key,
    );
    let site = dir.path().join("dist");
    for (path, content) in SITE {
        let path = site.join(path);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("site directories");
        std::fs::write(path, content).expect("a site file");
    }
    let platform = Platform::start(dir, &config);
    platform.apply(&format!(
        r#"kind: Pipeline
name: site-flow
stages:
  - name: preview
    auto: true
  - name: prod
---
kind: Application
name: docs
type: static-site
repository: acme/docs
pipeline: site-flow
environments:
  preview: {{ target: {{ static-site: {{ destination: "{preview}" }} }} }}
  prod: {{ target: {{ static-site: {{ destination: "s3://docs-site/www" }} }} }}
"#,
        preview = preview_dir.display(),
    ));

    // CI pushes the build directory as a site artifact tagged with its commit.
    let commit = "9f8e7d6c5b4a39281706f5e4d3c2b1a098765432";
    let pushed = platform.json(
        "admin",
        0,
        &[
            "push",
            "site",
            &site.display().to_string(),
            "--app",
            "docs",
            "--commit",
            commit,
        ],
    );
    assert_eq!(pushed["files"], SITE.len(), "{pushed:#}");
    assert_eq!(pushed["tag"], commit, "{pushed:#}");
    let digest = pushed["digest"].as_str().expect("a digest").to_owned();
    let archive_digest = pushed["archive_digest"]
        .as_str()
        .expect("the archive's digest")
        .to_owned();

    // The archive is served by its commit, byte for byte what was pushed.
    let zip = platform.get(&format!("/builds/docs/{commit}.zip"));
    assert_eq!(format!("sha256:{}", sha256_hex(&zip)), archive_digest);
    assert_eq!(pushed["archive_bytes"], zip.len(), "{pushed:#}");

    // Notify: preview (a directory) deploys at once.
    let preview = platform.notify("docs", &digest, commit);
    assert_eq!(preview["environment"], "preview", "{preview:#}");
    assert_eq!(preview["state"], "deployed", "{preview:#}");
    let preview_deployment = deployment_of(&preview);
    for (path, content) in SITE {
        let written = std::fs::read_to_string(preview_dir.join(path))
            .unwrap_or_else(|e| panic!("{path} in the preview directory: {e}"));
        assert_eq!(&written, content, "{path}");
    }
    let record: Value = serde_json::from_slice(
        &std::fs::read(preview_dir.join(".gantry/deployed.json")).expect("deployed.json"),
    )
    .expect("deployed.json is JSON");
    assert_eq!(record["digest"], digest.as_str(), "{record:#}");
    assert_eq!(record["application"], "docs", "{record:#}");
    assert_eq!(record["environment"], "preview", "{record:#}");
    assert_eq!(record["deployment_id"], preview_deployment, "{record:#}");

    // Prod: the S3 bucket, under the prefix `www/`.
    let prod = platform.json(
        "admin",
        0,
        &["promote", "docs", "--env", "prod", "--digest", &digest],
    );
    assert_eq!(prod["state"], "deployed", "{prod:#}");
    let prod_deployment = deployment_of(&prod);
    let bucket: Value =
        serde_json::from_str(&seaweed.boto3(DESCRIBE_BUCKET, &["docs-site", "www/"]))
            .expect("the description is JSON");
    let objects = &bucket["objects"];
    for ((path, content), (headed, content_type, cache_control)) in SITE.iter().zip(SITE_HEADERS) {
        assert_eq!(path, headed);
        let object = &objects[*path];
        assert_eq!(object["content_type"], *content_type, "{path}: {object:#}");
        assert_eq!(
            object["cache_control"], *cache_control,
            "{path}: {object:#}"
        );
        assert_eq!(
            object["sha256"],
            sha256_hex(content.as_bytes()),
            "{path}: {object:#}"
        );
    }
    let mut keys: Vec<&str> = objects
        .as_object()
        .expect("objects")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            ".gantry/deployed.json",
            ".gantry/files.json",
            "assets/app.3f2a9c.js",
            "data.json",
            "index.html",
            "robots.txt"
        ],
        "{bucket:#}"
    );
    // Gantry's own records are never cached.
    let record_object = &objects[".gantry/deployed.json"];
    assert_eq!(record_object["cache_control"], "no-store", "{bucket:#}");
    assert_eq!(
        record_object["content_type"], "application/json",
        "{bucket:#}"
    );
    let deployed = &bucket["deployed"];
    assert_eq!(deployed["digest"], digest.as_str(), "{bucket:#}");
    assert_eq!(deployed["environment"], "prod", "{bucket:#}");
    assert_eq!(deployed["deployment_id"], prod_deployment, "{bucket:#}");

    let log = platform.log(prod_deployment);
    assert_log_has(
        &log,
        &[
            "static-site target: deploying",
            &format!("fetched the site archive {archive_digest}"),
            "syncing to s3://docs-site/www",
            "synced s3://docs-site/www: 4 uploaded",
            &format!("recorded {digest} in .gantry/deployed.json"),
            "deployed:",
        ],
    );
}

#[test]
fn a_command_target_runs_the_declared_program_with_the_digest() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let written = dir.path().join("deployed-digest");
    let config = config_base(dir.path());
    let platform = Platform::start(dir, &config);
    platform.apply(&format!(
        r#"kind: Pipeline
name: tool-flow
stages:
  - name: dev
    auto: true
---
kind: Application
name: tool
type: container
repository: acme/tool
pipeline: tool-flow
environments:
  dev:
    target:
      command:
        program: sh
        args: ["-c", "printf %s \"$GANTRY_DIGEST\" > \"$0\"; echo rolled out $GANTRY_APP to $GANTRY_ENV", "{file}"]
        timeout: 30s
"#,
        file = written.display()
    ));
    let digest = platform.push_image("acme/tool", "v1");
    let dev = platform.notify("tool", &digest, "0a1b2c3d4e5f60718293a4b5c6d7e8f901234567");
    assert_eq!(dev["state"], "deployed", "{dev:#}");
    assert_eq!(
        std::fs::read_to_string(&written).expect("the program ran"),
        digest
    );
    let deployment = platform.deployment(deployment_of(&dev));
    assert_eq!(deployment["target"], "command", "{deployment:#}");
    let message = deployment["message"].as_str().unwrap_or_default();
    assert!(message.contains("rolled out tool to dev"), "{message}");
    assert_log_has(
        &platform.log(deployment_of(&dev)),
        &["command target: deploying", "deployed:"],
    );
}

/// The lease owner named by an `attempt N of M by OWNER: …` log line.
fn attempt_owner(lines: &[String], attempt: u32) -> String {
    let prefix = format!("attempt {attempt} of ");
    let line = lines
        .iter()
        .find(|line| line.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no attempt {attempt} in the log:\n{}", lines.join("\n")));
    line.split_once(" by ")
        .and_then(|(_, rest)| rest.split_once(": "))
        .map(|(owner, _)| owner.to_owned())
        .unwrap_or_else(|| panic!("no owner in {line:?}"))
}

#[test]
fn a_server_killed_during_a_deployment_finishes_it_exactly_once_after_a_restart() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let values = "image:\n  digest: sha256:0000000000000000000000000000000000000000000000000000000000000000 # set by Gantry\n";
    let repo = ConfigRepo::new(dir.path(), &[("values.yaml", values)]);
    let health = StallingHealthEndpoint::start();
    // Short leases so the job is picked up again soon after the crash; requests do not
    // wait for deployments, so the notify answers while the deployment runs.
    let config = format!(
        "{}lease_seconds = 2\nwait_seconds = 0\n",
        config_base(dir.path())
    );
    let mut platform = Platform::start(dir, &config);
    platform.apply(&format!(
        r#"kind: Pipeline
name: api-flow
stages:
  - name: dev
    auto: true
---
kind: Application
name: api
type: container
repository: acme/api
pipeline: api-flow
environments:
  dev:
    target: {{ gitops: {{ repo: "{repo}", file: values.yaml, keys: {{ digest: image.digest }} }} }}
    health_check: {{ url: "{url}", expect_status: 200, timeout: 30s, retries: 0 }}
"#,
        repo = repo.path(),
        url = health.url,
    ));
    let digest = platform.push_image("acme/api", "v1");
    let dev = platform.notify("api", &digest, "5e4d3c2b1a0f9e8d7c6b5a4938271605f4e3d2c1");
    assert_eq!(dev["state"], "deploying", "{dev:#}");
    let id = deployment_of(&dev);

    // The health check's first request arrives: the commit is pushed, the deployment
    // is not finished. The server dies now.
    health
        .first
        .recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| {
            panic!(
                "the health check never came; server log:\n{}",
                platform.server().log()
            )
        });
    let (commit, _) = repo.commit_of(id);
    let during = platform.deployment(id);
    assert_eq!(during["state"], "deploying", "{during:#}");
    assert_eq!(during["job"]["attempts"], 1, "{during:#}");
    assert_eq!(during["job"]["state"], "running", "{during:#}");
    platform.kill();

    // Another process on the same data picks the job up once its lease ran out.
    platform.restart();
    let finished = platform.wait_for_deployment(id, Duration::from_secs(30));
    assert_eq!(finished["state"], "deployed", "{finished:#}");
    assert_eq!(finished["job"]["attempts"], 2, "{finished:#}");
    assert_eq!(finished["job"]["state"], "finished", "{finished:#}");
    assert_eq!(health.requests(), 2, "one stalled request, one answered");

    // Still exactly one commit: the second attempt found the value already there.
    assert_eq!(repo.commit_of(id).0, commit);
    assert_eq!(
        repo.commits().len(),
        2,
        "the seed and one deployment commit"
    );
    assert!(
        repo.show("main", "values.yaml").contains(&digest),
        "main holds the digest"
    );

    // Exactly one audit entry records the deployment as deployed.
    let export = platform.expect("admin", 0, &["audit", "export"]);
    let finished_entries: Vec<Value> = export
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str::<Value>(line).expect("a JSON line"))
        .filter_map(|entry| {
            let payload: Value =
                serde_json::from_str(entry["payload"].as_str().expect("the payload is a string"))
                    .expect("the payload is JSON");
            (payload["deployment"] == id && payload["state"] == "deployed").then_some(payload)
        })
        .collect();
    assert_eq!(finished_entries.len(), 1, "{export}");
    assert_eq!(finished_entries[0]["digest"], digest.as_str());

    // The log shows both attempts, by two different lease owners.
    let lines = platform.log(id);
    let (first, second) = (attempt_owner(&lines, 1), attempt_owner(&lines, 2));
    assert_ne!(first, second, "{}", lines.join("\n"));
    assert_log_has(
        &lines,
        &[
            "attempt 1 of",
            &format!("pushed {commit} to main"),
            "health check:",
            "attempt 2 of",
            "already holds these values",
            "health check:",
            "deployed:",
        ],
    );
    assert!(
        !lines.iter().any(|line| line.starts_with("attempt 3 of")),
        "{}",
        lines.join("\n")
    );
}

/// Declares `tool` (repository `acme/tool`), deployed to its one manual stage `dev` by
/// `sh -c SCRIPT ARG` (`$0` in the script is `ARG`).
fn declare_tool(platform: &Platform, script: &str, arg: &str) {
    platform.apply(&format!(
        r#"kind: Pipeline
name: tool-flow
stages:
  - name: dev
---
kind: Application
name: tool
type: container
repository: acme/tool
pipeline: tool-flow
environments:
  dev:
    target:
      command: {{ program: sh, args: [-c, {script}, {arg}], timeout: 30s }}
"#,
        script = serde_json::to_string(script).expect("a JSON string is a YAML string"),
        arg = serde_json::to_string(arg).expect("a JSON string is a YAML string"),
    ));
}

/// Pushes a fresh image as `REPOSITORY:TAG` (layers seeded by the tag); its digest.
fn push_tagged(platform: &Platform, repository: &str, tag: &str) -> String {
    platform.push_image(repository, tag)
}

#[test]
fn a_command_target_gets_a_pullable_image_and_reads_what_its_environment_should_run_from_params() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).expect("output directory");
    let config = config_base(dir.path());
    let platform = Platform::start(dir, &config);
    std::fs::write(out.join("token"), platform.token("admin")).expect("token file");
    // The program does what the seed's deploy script does: it reads the image to run
    // from Gantry's parameters (as an ECS task definition reads SSM), and records
    // what it was handed.
    let script = format!(
        "curl -s -f -H \"Authorization: Bearer $(cat \"$0/token\")\" http://{address}/params/tool/dev/image > \"$0/params.$GANTRY_DEPLOYMENT_ID\" && printf '%s %s' \"$GANTRY_IMAGE\" \"$GANTRY_TAG\" > \"$0/env.$GANTRY_DEPLOYMENT_ID\"",
        address = platform.address()
    );
    declare_tool(&platform, &script, &out.display().to_string());
    let handed = |deployment: i64| {
        let read = |name: &str| {
            std::fs::read_to_string(out.join(format!("{name}.{deployment}")))
                .unwrap_or_else(|e| panic!("{name}.{deployment}: {e}"))
        };
        (read("params").trim_end().to_owned(), read("env"))
    };
    let address = platform.address();

    let good = push_tagged(&platform, "acme/tool", "sha-abc1234");
    platform.notify("tool", &good, "abc1234abc1234abc1234abc1234abc1234abc12");
    let first = platform.json(
        "admin",
        0,
        &["promote", "tool", "--env", "dev", "--digest", &good],
    );
    assert_eq!(first["state"], "deployed", "{first:#}");
    let pullable = format!("{address}/acme/tool@{good}");
    assert_eq!(
        handed(deployment_of(&first)),
        (pullable.clone(), format!("{pullable} sha-abc1234"))
    );

    let bad = push_tagged(&platform, "acme/tool", "sha-def5678");
    platform.notify("tool", &bad, "def5678def5678def5678def5678def5678def56");
    let second = platform.json(
        "admin",
        0,
        &["promote", "tool", "--env", "dev", "--digest", &bad],
    );
    assert_eq!(second["state"], "deployed", "{second:#}");
    // Promoting what runs already deploys nothing (exit 0, the same promotion).
    let again = platform.json(
        "admin",
        0,
        &["promote", "tool", "--env", "dev", "--digest", &bad],
    );
    assert_eq!(again["id"], second["id"], "{again:#}");

    // The rollback: its own deployment reads the digest being rolled back to.
    let output = platform.gantry("admin", &["rollback", "tool", "--env", "dev", "-o", "json"]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("rolling back tool/dev from {bad}")),
        "{stderr}"
    );
    let rolled: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(rolled["digest"], good.as_str(), "{rolled:#}");
    let id = rolled["id"].as_i64().expect("a deployment id");
    assert_eq!(
        handed(id),
        (pullable.clone(), format!("{pullable} sha-abc1234"))
    );
    // Rolling back again never lands on the digest the rollback left.
    let output = platform.gantry("admin", &["rollback", "tool", "--env", "dev"]);
    assert_eq!(output.status.code(), Some(3), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("rollback did not leave"), "{stderr}");
    let status = platform.json("admin", 0, &["status", "tool"]);
    assert_eq!(
        status["environments"][0]["current"]["digest"],
        good.as_str(),
        "{status:#}"
    );
}

/// `web` (repository `acme/web`), deployed to its one stage `prod` by a registry copy
/// to `REGISTRY/acme/web`.
fn forge(registry: &str, env_tag: bool) -> String {
    format!(
        r#"kind: Pipeline
name: forge
stages:
  - name: prod
---
kind: Application
name: web
type: container
repository: acme/web
pipeline: forge
environments:
  prod: {{ target: {{ registry-copy: {{ to: "{registry}/acme/web", env_tag: {env_tag} }} }} }}
"#
    )
}

/// A second Gantry on its defaults (tags immutable) as a registry-copy destination,
/// reached with its admin token.
struct DestinationGantry {
    server: GantryServer,
    _dir: tempfile::TempDir,
}

impl DestinationGantry {
    fn start() -> DestinationGantry {
        let dir = tempfile::tempdir().expect("temporary directory");
        let server = GantryServer::start(dir.path(), &[], &[]);
        DestinationGantry { server, _dir: dir }
    }

    /// Declares `acme/web` there so it may be pushed to.
    fn declare(&self) {
        let resources = "kind: Pipeline\nname: p\nstages:\n  - name: live\n---\nkind: Application\nname: web\ntype: container\nrepository: acme/web\npipeline: p\nenvironments:\n  live: { target: { record: {} } }\n";
        let output = Command::new("curl")
            .args([
                "-s",
                "-f",
                "-X",
                "POST",
                "-H",
                "content-type: application/yaml",
                "-H",
            ])
            .arg(format!("Authorization: Bearer {}", self.server.token()))
            .arg("--data-binary")
            .arg(resources)
            .arg(format!("http://{}/api/v1/apply", self.server.address))
            .output()
            .expect("curl");
        assert!(output.status.success(), "{output:?}");
    }

    fn served(&self, tag: &str) -> String {
        served_manifest_digest(
            &format!("{}/acme/web:{tag}", self.server.address),
            Some(&self.server.creds()),
        )
    }
}

/// Pushes a referrer (an SBOM-like artifact whose `subject` is `subject`) to
/// `repository` with curl; its digest.
fn push_referrer(address: &str, token: &str, repository: &str, subject: &str, size: u64) -> String {
    let auth = format!("Authorization: Bearer {token}");
    let blob = |bytes: &[u8]| {
        let digest = format!("sha256:{}", sha256_hex(bytes));
        let output = Command::new("curl")
            .args([
                "-s",
                "-f",
                "-X",
                "POST",
                "-H",
                &auth,
                "-H",
                "content-type: application/octet-stream",
                "--data-binary",
                "@-",
            ])
            .arg(format!(
                "http://{address}/v2/{repository}/blobs/uploads/?digest={digest}"
            ))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                child.stdin.take().expect("stdin").write_all(bytes)?;
                child.wait_with_output()
            })
            .expect("curl");
        assert!(output.status.success(), "{output:?}");
        digest
    };
    let config = blob(b"{}");
    let document: &[u8] = br#"{"spdxVersion":"SPDX-2.3","name":"web"}"#;
    let sbom = blob(document);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/spdx+json",
        "config": { "mediaType": "application/vnd.oci.empty.v1+json", "digest": config, "size": 2 },
        "layers": [{ "mediaType": "application/spdx+json", "digest": sbom, "size": document.len() }],
        "subject": { "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": subject, "size": size },
    })
    .to_string();
    let digest = format!("sha256:{}", sha256_hex(manifest.as_bytes()));
    let output = Command::new("curl")
        .args([
            "-s",
            "-f",
            "-X",
            "PUT",
            "-H",
            &auth,
            "-H",
            "content-type: application/vnd.oci.image.manifest.v1+json",
            "--data-binary",
        ])
        .arg(&manifest)
        .arg(format!(
            "http://{address}/v2/{repository}/manifests/{digest}"
        ))
        .output()
        .expect("curl");
    assert!(output.status.success(), "{output:?}");
    digest
}

#[test]
fn registry_copy_into_a_gantry_with_immutable_tags_carries_the_build_tag_and_referrers() {
    let destination = DestinationGantry::start();
    destination.declare();
    let dir = tempfile::tempdir().expect("temporary directory");
    std::fs::create_dir_all(dir.path().join("secrets/registries")).expect("secrets directory");
    std::fs::write(
        dir.path().join("secrets/registries/dest"),
        destination.server.token(),
    )
    .expect("secret");
    let config = format!(
        "{}\n[deploy.registry_copy.registries.\"{}\"]\nplain_http = true\nusername = \"admin\"\npassword_secret = \"registries/dest\"\n",
        config_base(dir.path()),
        destination.server.address
    );
    let platform = Platform::start(dir, &config);
    let resources = |env_tag: bool| forge(&destination.server.address, env_tag);
    platform.apply(&resources(true));

    // The first build: copied under its own tag and `prod`, with its referrer.
    let first = push_tagged(&platform, "acme/web", "101");
    let manifest_size = platform
        .get(&format!("/v2/acme/web/manifests/{first}"))
        .len() as u64;
    let referrer = push_referrer(
        &platform.address(),
        platform.token("admin"),
        "acme/web",
        &first,
        manifest_size,
    );
    platform.notify("web", &first, "1010101010101010101010101010101010101010");
    let promoted = platform.json(
        "admin",
        0,
        &["promote", "web", "--env", "prod", "--digest", &first],
    );
    assert_eq!(promoted["state"], "deployed", "{promoted:#}");
    assert_eq!(destination.served("101"), first);
    assert_eq!(destination.served("prod"), first);
    let referrers = run(Command::new("curl")
        .args(["-s", "-f", "-u", &destination.server.creds()])
        .arg(format!(
            "http://{}/v2/acme/web/referrers/{first}",
            destination.server.address
        )))
    .stdout;
    let referrers: Value = serde_json::from_slice(&referrers).expect("an index");
    let listed = referrers["manifests"].as_array().expect("manifests");
    assert!(
        listed
            .iter()
            .any(|entry| entry["digest"] == referrer.as_str()),
        "the build's referrer was carried: {referrers:#}"
    );
    // So were the deployment's two signed attestations, made after the copy.
    let attestations = listed
        .iter()
        .filter(|entry| entry["artifactType"] == "application/vnd.dev.sigstore.bundle.v0.3+json")
        .count();
    assert_eq!(attestations, 2, "{referrers:#}");

    // The second build: the destination will not move `prod`, and the failure says so.
    let second = push_tagged(&platform, "acme/web", "102");
    platform.notify("web", &second, "1020202020202020202020202020202020202020");
    let failed = platform.json(
        "admin",
        7,
        &["promote", "web", "--env", "prod", "--digest", &second],
    );
    assert_eq!(failed["state"], "failed", "{failed:#}");
    let reason = failed["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("immutable"), "{reason}");
    assert!(reason.contains("env_tag: false"), "{reason}");
    assert_eq!(destination.served("prod"), first);

    // Without the environment tag the build's own tag carries it.
    platform.apply(&resources(false));
    let retried = platform.json(
        "admin",
        0,
        &["promote", "web", "--env", "prod", "--digest", &second],
    );
    assert_eq!(retried["state"], "deployed", "{retried:#}");
    assert_eq!(destination.served("102"), second);
    assert_eq!(destination.served("prod"), first);
}

#[test]
fn a_registry_copy_to_a_plain_http_registry_fails_at_once_naming_the_setting() {
    let plain = PeerRegistry::start();
    let dir = tempfile::tempdir().expect("temporary directory");
    let config = config_base(dir.path());
    let platform = Platform::start(dir, &config);
    platform.apply(&forge(&plain.address, true));
    let digest = push_tagged(&platform, "acme/web", "v1");
    let started = Instant::now();
    let failed = platform.json(
        "admin",
        7,
        &["promote", "web", "--env", "prod", "--digest", &digest],
    );
    assert_eq!(failed["state"], "failed", "{failed:#}");
    let reason = failed["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("plain_http = true"), "{reason}");
    let deployment = platform.deployment(deployment_of(&failed));
    assert_eq!(
        deployment["job"]["attempts"], 1,
        "not retried: {deployment:#}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn the_command_line_shows_a_deployment_its_log_its_progress_and_why_it_failed() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let config = config_base(dir.path());
    let platform = Platform::start(dir, &config);
    // The program fails for the build tagged `broken` and takes a moment otherwise.
    let script = "echo step one; if [ \"$GANTRY_TAG\" = broken ]; then echo gave up >&2; exit 3; fi; sleep 1.5; echo step two";
    declare_tool(&platform, script, "sh");
    let good = push_tagged(&platform, "acme/tool", "v1");

    // At a terminal, `promote` shows the deployment's progress while it waits.
    let gantry = env!("CARGO_BIN_EXE_gantry");
    let output = Command::new("script")
        .args(["-q", "-e", "-c"])
        .arg(format!("{gantry} promote tool --env dev --digest {good}"))
        .arg("/dev/null")
        .current_dir(platform.path())
        .env("HOME", platform.path())
        .env("GANTRY_URL", format!("http://{}", platform.address()))
        .env("GANTRY_TOKEN", platform.token("admin"))
        .output()
        .expect("run script");
    let shown = String::from_utf8_lossy(&output.stdout).replace('\r', "");
    assert_eq!(output.status.code(), Some(0), "{shown}");
    assert!(shown.contains("deployment 1: deploying"), "{shown}");
    assert!(shown.contains("  step one"), "{shown}");
    assert!(shown.contains("  step two"), "{shown}");
    assert!(shown.contains("deployment 1: deployed"), "{shown}");
    // Not at a terminal: only the answer.
    let plain = platform.expect("admin", 0, &["promotion", "1"]);
    assert!(!plain.contains("deployment 1: deploying"), "{plain}");

    // A failure: `history` says why on one line, `deployment show` and `log` say all.
    let broken = push_tagged(&platform, "acme/tool", "broken");
    let failed = platform.json(
        "admin",
        7,
        &["promote", "tool", "--env", "dev", "--digest", &broken],
    );
    let id = deployment_of(&failed).to_string();
    let history = platform.expect("admin", 0, &["history", "tool"]);
    let row = history
        .lines()
        .find(|line| line.starts_with(&format!("{id} ")))
        .unwrap_or_else(|| panic!("no row for {id}:\n{history}"));
    assert!(
        row.contains("failed") && row.contains("exit status: 3"),
        "{row}"
    );
    let shown = platform.gantry("admin", &["deployment", "show", &id]);
    assert_eq!(shown.status.code(), Some(7), "{shown:?}");
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown
            .lines()
            .any(|line| line.trim_start().starts_with("tag ") && line.ends_with(" broken")),
        "{shown}"
    );
    assert!(shown.contains("gave up"), "{shown}");
    let log = platform.gantry("admin", &["deployment", "log", &id, "--follow"]);
    let log = String::from_utf8_lossy(&log.stdout);
    assert_log_has(
        &log.lines().map(str::to_owned).collect::<Vec<_>>(),
        &["command target: deploying", "step one", "gave up"],
    );
    let lines = platform.json("admin", 7, &["deployment", "log", &id]);
    assert!(
        lines.as_array().is_some_and(|lines| !lines.is_empty()),
        "{lines:#}"
    );
    // The server logs the program's several lines of output one record per line: each
    // line of its log is a record of its own, starting with the time.
    let log = platform.server().log();
    assert!(log.contains("gave up"), "{log}");
    for line in log.lines().filter(|line| !line.is_empty()) {
        assert!(
            line.starts_with("20") && line.contains('Z'),
            "a record spans lines: {line:?}\n{log}"
        );
    }
}

#[test]
fn gantry_copy_answers_in_o_json_and_names_plain_http_for_a_plain_registry() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let config = config_base(dir.path());
    let platform = Platform::start(dir, &config);
    let digest = push_tagged(&platform, "acme/tool", "v1");
    let peer = PeerRegistry::start();
    let source = format!("{}/acme/tool:v1", platform.address());
    let creds = format!("admin:{}", platform.token("admin"));
    let copied = platform.json(
        "admin",
        0,
        &[
            "copy",
            &source,
            &format!("{}/acme/tool:v1", peer.address),
            "--src-creds",
            &creds,
            "--src-plain-http",
            "--dest-plain-http",
        ],
    );
    assert_eq!(copied["digest"], digest.as_str(), "{copied:#}");
    // Without saying the destination speaks plain HTTP: at once, naming the flag.
    let started = Instant::now();
    let refused = platform.gantry(
        "admin",
        &[
            "copy",
            &source,
            &format!("{}/acme/other:v1", peer.address),
            "--src-creds",
            &creds,
            "--src-plain-http",
        ],
    );
    assert_ne!(refused.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("--dest-plain-http"), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );

    // `serve --help` lists every setting of the file, not only the flags.
    let help = platform.expect("admin", 0, &["serve", "--help"]);
    for key in [
        "[deploy.gitops]",
        "[outbound]",
        "[access]",
        "failed_credentials_burst",
        "[http]",
        "external_url",
    ] {
        assert!(
            help.contains(key),
            "{key} missing from serve --help:\n{help}"
        );
    }
}

/// `gantry verify` as an outside verifier runs it: against the reference registry a
/// prod deployment was copied into, with only the public keys, Gantry stopped.
fn verify(platform: &Platform, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gantry"))
        .arg("verify")
        .args(args)
        .current_dir(platform.path())
        .env("HOME", platform.path())
        .env_remove("GANTRY_URL")
        .env_remove("GANTRY_TOKEN")
        .output()
        .expect("run the gantry binary")
}

#[test]
fn a_promotion_copied_into_the_reference_registry_verifies_there_offline_until_its_tag_moves() {
    let destination = PeerRegistry::start();
    let dir = tempfile::tempdir().expect("temporary directory");
    let config = format!(
        "{}\n[deploy.registry_copy.registries.\"{}\"]\nplain_http = true\n",
        config_base(dir.path()),
        destination.address
    );
    let mut platform = Platform::start(dir, &config);
    platform.apply(&forge(&destination.address, true));
    let digest = push_tagged(&platform, "acme/web", "v1");
    let promoted = platform.json(
        "admin",
        0,
        &["promote", "web", "--env", "prod", "--digest", &digest],
    );
    assert_eq!(promoted["state"], "deployed", "{promoted:#}");
    platform.expect("admin", 0, &["keys", "export", "-f", "gantry.pub"]);
    // The reference registry has no referrers API: the attestations are listed under
    // the referrers tag schema, `sha256-HEX`, as the distribution specification asks.
    let hex = digest.trim_start_matches("sha256:");
    let listed = curl(
        &format!(
            "http://{}/v2/acme/web/manifests/sha256-{hex}",
            destination.address
        ),
        &["-H", "Accept: application/vnd.oci.image.index.v1+json"],
    );
    assert_eq!(listed.status, 200, "{}", listed.body);
    let index: Value = serde_json::from_str(&listed.body).expect("an index");
    let bundles: Vec<&Value> = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .filter(|entry| entry["artifactType"] == "application/vnd.dev.sigstore.bundle.v0.3+json")
        .collect();
    assert_eq!(bundles.len(), 2, "{index:#}");
    assert!(
        bundles.iter().any(
            |entry| entry["annotations"]["dev.sigstore.bundle.predicateType"]
                == "https://slsa.dev/verification_summary/v1"
        ),
        "{index:#}"
    );

    // An independent DSSE implementation (securesystemslib) verifies each envelope
    // with the exported public key.
    let keys = platform.api("/api/v1/keys");
    let current = &keys["keys"][0];
    std::fs::write(
        platform.path().join("current.pub"),
        current["public_key"].as_str().expect("PEM"),
    )
    .expect("write the key");
    let mut bundle_files = Vec::new();
    for (n, entry) in bundles.iter().enumerate() {
        let referrer = entry["digest"].as_str().expect("digest");
        let manifest = curl(
            &format!(
                "http://{}/v2/acme/web/manifests/{referrer}",
                destination.address
            ),
            &["-H", "Accept: application/vnd.oci.image.manifest.v1+json"],
        );
        let manifest: Value = serde_json::from_str(&manifest.body).expect("a manifest");
        let layer = manifest["layers"][0]["digest"].as_str().expect("layer");
        let bundle = curl(
            &format!("http://{}/v2/acme/web/blobs/{layer}", destination.address),
            &["-L"],
        );
        let path = platform.path().join(format!("bundle-{n}.json"));
        std::fs::write(&path, &bundle.body).expect("write the bundle");
        bundle_files.push(path);
    }
    let checked = Command::new(crate::support::peer_python())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/e2e/sslib_verify.py"
        ))
        .arg(platform.path().join("current.pub"))
        .arg(current["key_id"].as_str().expect("key id"))
        .args(&bundle_files)
        .output()
        .expect("run python");
    assert!(checked.status.success(), "{}", describe(&checked));
    let mut types: Vec<String> = String::from_utf8_lossy(&checked.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    types.sort();
    assert_eq!(
        types,
        [
            "https://gantry.dev/attestations/promotion/v1",
            "https://slsa.dev/verification_summary/v1"
        ]
    );

    // The custody view lists both attestations, verified, beside the deployment.
    let custody = platform.expect("admin", 0, &["artifact", &digest, "--custody"]);
    assert!(
        custody.contains("deployed   to prod by promotion (registry-copy target, deployed)"),
        "{custody}"
    );
    assert_eq!(custody.matches(" verified\n").count(), 2, "{custody}");
    let custody = platform.json("admin", 0, &["artifact", "web", &digest, "--custody"]);
    assert_eq!(
        custody["applications"][0]["attestations"]
            .as_array()
            .map(Vec::len),
        Some(2),
        "{custody:#}"
    );

    // Gantry is stopped: only the registry and the key are involved.
    platform.kill();
    let by_digest = format!("{}/acme/web@{digest}", destination.address);
    let by_tag = format!("{}/acme/web:prod", destination.address);
    let verified = verify(
        &platform,
        &[
            &by_digest,
            "--env",
            "prod",
            "--app",
            "web",
            "--key",
            "gantry.pub",
            "--plain-http",
        ],
    );
    assert_eq!(verified.status.code(), Some(0), "{}", describe(&verified));
    // Environments are per application: another application's prod is not this one's.
    let refused = verify(
        &platform,
        &[
            &by_digest,
            "--env",
            "prod",
            "--app",
            "sandbox",
            "--key",
            "gantry.pub",
            "--plain-http",
        ],
    );
    assert_eq!(refused.status.code(), Some(5), "{}", describe(&refused));
    assert!(
        String::from_utf8_lossy(&refused.stdout).contains("of web, not of sandbox"),
        "{}",
        describe(&refused)
    );
    let shown = String::from_utf8_lossy(&verified.stdout);
    assert!(shown.starts_with("VERIFIED:"), "{shown}");
    assert!(
        shown.contains("deployed   to prod by promotion (registry-copy target)"),
        "{shown}"
    );
    let verified = verify(
        &platform,
        &[
            &by_tag,
            "--env",
            "prod",
            "--key",
            "gantry.pub",
            "--plain-http",
            "-o",
            "json",
        ],
    );
    assert_eq!(verified.status.code(), Some(0), "{}", describe(&verified));
    let report: Value = serde_json::from_slice(&verified.stdout).expect("JSON");
    assert_eq!(report["verified"], true);
    assert_eq!(report["custody"]["environment"], "prod");
    // Not for an environment it was never deployed to.
    let refused = verify(
        &platform,
        &[
            &by_digest,
            "--env",
            "staging",
            "--key",
            "gantry.pub",
            "--plain-http",
        ],
    );
    assert_eq!(refused.status.code(), Some(5), "{}", describe(&refused));
    // Nor with a key that did not sign it.
    let other = tempfile::tempdir().expect("temporary directory");
    let stranger = attest::SigningKey::load_or_create(&other.path().join("k.pem")).expect("a key");
    std::fs::write(
        platform.path().join("stranger.pub"),
        stranger.public().pem(),
    )
    .expect("write");
    let refused = verify(
        &platform,
        &[
            &by_digest,
            "--env",
            "prod",
            "--key",
            "stranger.pub",
            "--plain-http",
        ],
    );
    assert_eq!(refused.status.code(), Some(5), "{}", describe(&refused));
    assert!(
        String::from_utf8_lossy(&refused.stdout).contains("no trusted key verifies its signature"),
        "{}",
        describe(&refused)
    );

    // The tag moved to other bytes: those bytes were never attested.
    push_new_image(&destination.address, "anyone:x", "acme/web:prod", "1x8K");
    let refused = verify(
        &platform,
        &[
            &by_tag,
            "--env",
            "prod",
            "--key",
            "gantry.pub",
            "--plain-http",
        ],
    );
    assert_eq!(refused.status.code(), Some(5), "{}", describe(&refused));
    assert!(
        String::from_utf8_lossy(&refused.stdout).starts_with("NOT VERIFIED"),
        "{}",
        describe(&refused)
    );
    // The attested bytes still verify by digest.
    let verified = verify(
        &platform,
        &[
            &by_digest,
            "--env",
            "prod",
            "--key",
            "gantry.pub",
            "--plain-http",
        ],
    );
    assert_eq!(verified.status.code(), Some(0), "{}", describe(&verified));
}

/// The Sigstore bundle referrers a registry lists for `digest` in `acme/web` (the
/// referrers API, else the referrers tag schema), by digest, sorted.
fn bundle_referrers(address: &str, creds: Option<&str>, digest: &str) -> Vec<String> {
    let mut args = vec!["-H", "Accept: application/vnd.oci.image.index.v1+json"];
    if let Some(creds) = creds {
        args.extend(["-u", creds]);
    }
    let mut answer = curl(
        &format!("http://{address}/v2/acme/web/referrers/{digest}"),
        &args,
    );
    if answer.status == 404 {
        let hex = digest.trim_start_matches("sha256:");
        answer = curl(
            &format!("http://{address}/v2/acme/web/manifests/sha256-{hex}"),
            &args,
        );
    }
    if answer.status == 404 {
        return Vec::new();
    }
    let index: Value = serde_json::from_str(&answer.body)
        .unwrap_or_else(|e| panic!("{e}: {} {}", answer.status, answer.body));
    let mut found: Vec<String> = index["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|entry| entry["artifactType"] == "application/vnd.dev.sigstore.bundle.v0.3+json")
        .filter_map(|entry| entry["digest"].as_str().map(str::to_owned))
        .collect();
    found.sort();
    found
}

#[test]
fn a_server_killed_between_a_deployment_and_its_attestation_writes_it_exactly_once_after_restart() {
    let mut destination = PeerRegistry::start();
    let health = StallingHealthEndpoint::start();
    let dir = tempfile::tempdir().expect("temporary directory");
    let config = format!(
        "{}lease_seconds = 2\n\n[deploy.registry_copy.registries.\"{}\"]\nplain_http = true\n",
        config_base(dir.path()),
        destination.address
    );
    let mut platform = Platform::start(dir, &config);
    platform.apply(&format!(
        r#"kind: Pipeline
name: forge
stages:
  - name: prod
---
kind: Application
name: web
type: container
repository: acme/web
pipeline: forge
environments:
  prod:
    target: {{ registry-copy: {{ to: "{registry}/acme/web" }} }}
    health_check: {{ url: "{url}", expect_status: 200, timeout: 2s, retries: 1 }}
"#,
        registry = destination.address,
        url = health.url,
    ));
    let digest = push_tagged(&platform, "acme/web", "v1");
    let gantry = env!("CARGO_BIN_EXE_gantry");
    let mut promote = Command::new(gantry)
        .args([
            "promote", "web", "--env", "prod", "--digest", &digest, "-o", "json",
        ])
        .current_dir(platform.path())
        .env("HOME", platform.path())
        .env("GANTRY_URL", format!("http://{}", platform.address()))
        .env("GANTRY_TOKEN", platform.token("admin"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run gantry promote");
    // The image is at the destination and the health check has begun: the destination
    // goes away, so the attestations made once the deployment is done cannot follow.
    health
        .first
        .recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| {
            panic!(
                "the health check never came; server log:\n{}",
                platform.server().log()
            )
        });
    destination.stop();
    let promoted = promote.wait().expect("gantry promote ends");
    assert!(promoted.success(), "{promoted}");
    // Deployed, attested inside Gantry, not yet carried: the follow-up is due again.
    platform.server().wait_for_log("it will be retried");
    let creds = format!("admin:{}", platform.token("admin"));
    let in_gantry = bundle_referrers(&platform.address(), Some(&creds), &digest);
    assert_eq!(in_gantry.len(), 2, "{}", platform.server().log());

    // Killed there. The destination comes back; so does Gantry, on the same data.
    platform.kill();
    destination.restart();
    platform.restart();
    // A follow-up whose replica died is taken over once its grace (30 s) has passed.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut carried = Vec::new();
    while Instant::now() < deadline {
        carried = bundle_referrers(&destination.address, None, &digest);
        if carried.len() == 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // The same two attestations, signed once: the bytes recorded before the crash.
    assert_eq!(carried, in_gantry, "{}", platform.server().log());
    assert_eq!(
        bundle_referrers(&platform.address(), Some(&creds), &digest),
        in_gantry
    );
    let export = platform.expect("admin", 0, &["audit", "export"]);
    let signed = export
        .lines()
        .filter(|line| line.contains("\"action\":\"attest\""))
        .count();
    assert_eq!(signed, 2, "{export}");
    // And the copy verifies where it landed.
    platform.expect("admin", 0, &["keys", "export", "-f", "gantry.pub"]);
    let verified = verify(
        &platform,
        &[
            &format!("{}/acme/web@{digest}", destination.address),
            "--env",
            "prod",
            "--key",
            "gantry.pub",
            "--plain-http",
        ],
    );
    assert_eq!(verified.status.code(), Some(0), "{}", describe(&verified));
}

#[test]
fn gantry_verify_checks_gantrys_own_registry_and_finds_nothing_once_the_attestations_are_deleted() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let config = config_base(dir.path());
    let platform = Platform::start(dir, &config);
    platform.apply(
        "kind: Pipeline\nname: p\nstages:\n  - name: prod\n---\nkind: Application\nname: web\ntype: container\n\
repository: acme/web\npipeline: p\nenvironments:\n  prod: { target: { record: {} } }\n",
    );
    let digest = push_tagged(&platform, "acme/web", "v1");
    let promoted = platform.json(
        "admin",
        0,
        &["promote", "web", "--env", "prod", "--digest", &digest],
    );
    assert_eq!(promoted["state"], "deployed", "{promoted:#}");
    platform.expect("admin", 0, &["keys", "export", "-f", "gantry.pub"]);
    let creds = format!("admin:{}", platform.token("admin"));
    let image = format!("{}/acme/web@{digest}", platform.address());
    let args = [
        &image,
        "--env",
        "prod",
        "--key",
        "gantry.pub",
        "--plain-http",
        "--creds",
        &creds,
    ];
    let verified = verify(&platform, &args);
    assert_eq!(verified.status.code(), Some(0), "{}", describe(&verified));
    // Without credentials for a registry that wants them: exit 4, saying so.
    let refused = verify(&platform, &args[..6]);
    assert_eq!(refused.status.code(), Some(4), "{}", describe(&refused));

    // Someone deletes the attestations: no valid one is found.
    for referrer in bundle_referrers(&platform.address(), Some(&creds), &digest) {
        let deleted = curl(
            &format!(
                "http://{}/v2/acme/web/manifests/{referrer}",
                platform.address()
            ),
            &["-X", "DELETE", "-u", &creds],
        );
        assert_eq!(deleted.status, 202, "{}", deleted.body);
    }
    let refused = verify(&platform, &args);
    assert_eq!(refused.status.code(), Some(5), "{}", describe(&refused));
    assert!(
        String::from_utf8_lossy(&refused.stdout)
            .contains("no signed verification summary for prod"),
        "{}",
        describe(&refused)
    );
}
