//! Who may do what, end to end: a CI job logs in with the OIDC token its platform
//! minted (a real issuer on loopback serving its JWKS), pushes with skopeo and buildah
//! (through the registry's Bearer challenge) and with oras (Basic credentials), notifies
//! and reports, and is refused everything its trust policy does not grant; people with
//! application- and environment-scoped roles approve and promote through a two-role
//! gate; admission lets in only what was promoted; and the audit log records the
//! exchange with the job's claims.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use testkit::issuer::{SigningKey, TestIssuer};

use crate::support::{GantryServer, describe, make_image, peer_python, skopeo};

/// The exit codes the scenario relies on (see `gantry promote --help`).
const NOT_ALLOWED: i32 = 4;
const WAITING: i32 = 6;

/// The key id the issuer publishes its signing key under.
const KID: &str = "ci-key-1";

/// The identity a job token matching the `web-ci` policy acts as.
const CI_USER: &str = "oidc/web-ci";

/// dev deploys every build; staging needs a staff approval; prod a staff and a client
/// approval. CI jobs of acme/web-app on main may build web-app (push, notify, report).
fn resources(issuer: &str) -> String {
    format!(
        r#"kind: Pipeline
name: standard
stages:
  - name: dev
    auto: true
  - name: staging
    gate:
      approvals: [{{ role: staff, count: 1 }}]
  - name: prod
    gate:
      approvals: [{{ role: staff, count: 1 }}, {{ role: client, count: 1 }}]
---
kind: Application
name: web-app
type: container
repository: acme/web-app
pipeline: standard
environments:
  dev: {{ target: {{ record: {{}} }} }}
  staging: {{ target: {{ record: {{}} }} }}
  prod: {{ target: {{ record: {{}} }} }}
---
kind: Application
name: api
type: container
repository: acme/api
pipeline: standard
environments:
  dev: {{ target: {{ record: {{}} }} }}
  staging: {{ target: {{ record: {{}} }} }}
  prod: {{ target: {{ record: {{}} }} }}
---
kind: TrustPolicy
name: web-ci
issuer: {issuer}
audience: gantry
claims:
  repository: acme/web-app
  ref: refs/heads/main
role: developer
applications: [web-app]
max_token_lifetime: 30m
"#
    )
}

/// Who runs a `gantry` command.
#[derive(Clone, Copy, Debug)]
enum Caller<'a> {
    /// A person (or the admin), with `GANTRY_TOKEN`.
    User(&'a str),
    /// The CI job, with the token `gantry login` saved in its `HOME`.
    CiJob,
}

/// A server trusting a loopback OIDC issuer, with the resources applied, people with
/// tokens, and a working directory (also people's `HOME`; the CI job has its own).
struct Platform {
    server: GantryServer,
    dir: tempfile::TempDir,
    tokens: Vec<(&'static str, String)>,
}

impl Platform {
    fn start(issuer: &str) -> Platform {
        let dir = tempfile::tempdir().expect("temporary directory");
        std::fs::write(
            dir.path().join("gantry.toml"),
            format!(
                "[outbound]\nallow = [\"127.0.0.1\"]\n\n\
                 [access]\ngithub_actions = false\n\n[[access.oidc_issuers]]\n\
                 issuer = \"{issuer}\"\nalgorithms = [\"RS256\", \"ES256\"]\n"
            ),
        )
        .expect("write gantry.toml");
        let server = GantryServer::start(dir.path(), &["--config", "gantry.toml"], &[]);
        let mut platform = Platform {
            server,
            dir,
            tokens: Vec::new(),
        };
        platform.write("resources.yaml", &resources(issuer));
        platform.ok(Caller::User("admin"), &["apply", "-f", "resources.yaml"]);
        for (name, role) in [
            ("dana", "developer@web-app"),
            ("sam", "staff@web-app"),
            ("cleo", "client@web-app"),
            ("stella", "developer@web-app/staging"),
            ("vic", "viewer"),
        ] {
            platform.ok(
                Caller::User("admin"),
                &["user", "create", name, "--role", role],
            );
            let token = platform.ok(Caller::User("admin"), &["token", "create", name]);
            platform.tokens.push((name, token.trim().to_owned()));
        }
        platform
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn url(&self) -> String {
        format!("http://{}", self.server.address)
    }

    /// The CI job's `HOME`, where `gantry login` saves its token.
    fn ci_home(&self) -> PathBuf {
        self.path().join("ci-home")
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.path().join(name), text).expect("write a file for the CLI");
    }

    fn token(&self, user: &str) -> &str {
        if user == "admin" {
            return self.server.token();
        }
        self.tokens
            .iter()
            .find(|(name, _)| *name == user)
            .map(|(_, token)| token.as_str())
            .unwrap_or_else(|| panic!("no token for {user}"))
    }

    /// `gantry` with no credentials but those of `HOME`, which is `home`.
    fn bare_gantry(&self, home: &Path) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_gantry"));
        command
            .current_dir(self.path())
            .env("HOME", home)
            .env("GANTRY_URL", self.url())
            .env_remove("GANTRY_TOKEN");
        command
    }

    /// `gantry ARGS…` as `caller`.
    fn gantry(&self, caller: Caller<'_>, args: &[&str]) -> Output {
        let mut command = match caller {
            Caller::User(user) => {
                let mut command = self.bare_gantry(self.path());
                command.env("GANTRY_TOKEN", self.token(user));
                command
            }
            Caller::CiJob => self.bare_gantry(&self.ci_home()),
        };
        command.args(args).output().expect("run the gantry binary")
    }

    /// `gantry ARGS…` as `caller`, which must exit `code`; its output.
    fn expect(&self, caller: Caller<'_>, code: i32, args: &[&str]) -> Output {
        let output = self.gantry(caller, args);
        assert_eq!(
            output.status.code(),
            Some(code),
            "gantry {args:?} as {caller:?}\n{}\nserver log:\n{}",
            describe(&output),
            self.server.log()
        );
        output
    }

    /// `gantry ARGS…` as `caller`, which must succeed; its stdout.
    fn ok(&self, caller: Caller<'_>, args: &[&str]) -> String {
        String::from_utf8_lossy(&self.expect(caller, 0, args).stdout).into_owned()
    }

    /// `gantry ARGS… -o json` as `caller`, which must succeed; its JSON.
    fn json(&self, caller: Caller<'_>, args: &[&str]) -> Value {
        let out = self.ok(caller, &[args, &["-o", "json"]].concat());
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?} -o json: {e}\n{out}"))
    }

    /// `gantry login --oidc-token - --print-token` in the CI job's `HOME`, the job
    /// token on stdin.
    fn login_with_job_token(&self, job_token: &str) -> Output {
        let mut child = self
            .bare_gantry(&self.ci_home())
            .args(["login", "--oidc-token", "-", "--print-token", "--url"])
            .arg(self.url())
            .env_remove("GANTRY_URL")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run gantry login");
        child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(job_token.as_bytes())
            .expect("write the job token");
        child.wait_with_output().expect("gantry login ends")
    }

    /// Writes an image layout (unique content) tagged `tag`: its directory and its
    /// mkimage description.
    fn image(&self, tag: &str) -> (PathBuf, Value) {
        let layout = self.path().join(format!("image-{tag}"));
        let image = make_image(&layout, &["--layers", "2x16K", "--tag", tag])
            .into_iter()
            .next()
            .expect("mkimage describes the image");
        (layout, image)
    }

    /// `skopeo copy` of the layout's `tag` to `repository:tag` with `creds`.
    fn skopeo_push(&self, layout: &Path, tag: &str, repository: &str, creds: &str) -> Output {
        skopeo()
            .args(["copy", "--dest-tls-verify=false", "--dest-creds", creds])
            .arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!(
                "docker://{}/{repository}:{tag}",
                self.server.address
            ))
            .output()
            .expect("run skopeo")
    }

    /// Pushes a one-file artifact to `repository:oras` with oras-py, presenting
    /// `user:password` as Basic credentials on every request. (Its token backend keeps
    /// the pull-only token of its first `HEAD` and does not ask for a wider one when
    /// the upload is refused with `insufficient_scope`, so it cannot push to any
    /// registry that scopes its tokens; skopeo and buildah cover the token flow.)
    fn oras_push(&self, repository: &str, user: &str, password: &str) -> Output {
        const SCRIPT: &str = r#"
import os, sys
import oras.client
host, repository, user, password, directory = sys.argv[1:6]
os.chdir(directory)
with open("notes.txt", "w") as notes:
    notes.write("release notes for " + repository + "\n")
client = oras.client.OrasClient(hostname=host, insecure=True, auth_backend="basic")
client.auth.set_basic_auth(user, password)
response = client.push(files=["notes.txt:text/plain"], target=f"{host}/{repository}:oras")
print(f"HTTP {response.status_code}")
sys.exit(0 if response.status_code in (200, 201) else 1)
"#;
        let directory = tempfile::tempdir_in(self.path()).expect("oras directory");
        Command::new(peer_python())
            .args([
                "-c",
                SCRIPT,
                &self.server.address,
                repository,
                user,
                password,
            ])
            .arg(directory.path())
            .env("HOME", directory.path())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {} (with oras): {e}", peer_python()))
    }

    /// Builds an image from scratch with buildah (one file, the commit as a label) and
    /// pushes it to `repository:buildah` with `creds`; the pushed manifest's digest.
    fn buildah_push(&self, repository: &str, creds: &str, commit: &str) -> String {
        crate::support::buildah_push(
            self.path(),
            &format!("{}/{repository}:buildah", self.server.address),
            creds,
            commit,
        )
        .unwrap_or_else(|failure| panic!("{failure}\nserver log:\n{}", self.server.log()))
    }

    /// `GET PATH` (with its query) with `user`'s token as a Bearer token: the status
    /// and the body.
    fn http_get(&self, user: &str, path: &str, query: &[(&str, &str)]) -> (u16, String) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut request = agent
            .get(format!("{}{path}", self.url()))
            .header("Authorization", format!("Bearer {}", self.token(user)));
        for (name, value) in query {
            request = request.query(*name, *value);
        }
        let mut response = request.call().expect("the server answers");
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string().unwrap_or_default();
        (status, body)
    }

    /// The admission decision for `repository@digest` in `environment`, as a viewer.
    fn admission(&self, environment: &str, repository: &str, digest: &str) -> Value {
        let image = format!("{}/{repository}@{digest}", self.server.address);
        let (status, body) = self.http_get(
            "vic",
            "/api/v1/admission",
            &[("env", environment), ("image", &image)],
        );
        assert_eq!(status, 200, "admission of {image}: {body}");
        serde_json::from_str(&body).expect("admission answers JSON")
    }

    /// The digest running in `environment` of web-app.
    fn running(&self, environment: &str) -> Value {
        let status = self.json(Caller::User("vic"), &["status", "web-app"]);
        status["environments"]
            .as_array()
            .expect("environments")
            .iter()
            .find(|e| e["name"] == environment)
            .map(|e| e["current"]["digest"].clone())
            .unwrap_or_else(|| panic!("no {environment} in {status:#}"))
    }

    /// `gantry promote web-app --env ENV --digest D` as `user`, which must exit `code`;
    /// the promotion's id.
    fn promote(&self, user: &str, environment: &str, digest: &str, code: i32) -> i64 {
        let out = self.expect(
            Caller::User(user),
            code,
            &[
                "promote",
                "web-app",
                "--env",
                environment,
                "--digest",
                digest,
            ],
        );
        promotion_id(&String::from_utf8_lossy(&out.stdout))
    }
}

/// A job token of acme/web-app on main for audience `gantry`, fresh `jti`.
fn job_token(issuer: &TestIssuer, key: &SigningKey) -> String {
    let mut claims = issuer.claims("gantry");
    claims.insert("repository".to_owned(), "acme/web-app".into());
    claims.insert(
        "sub".to_owned(),
        "repo:acme/web-app:ref:refs/heads/main".into(),
    );
    issuer.sign(key, KID, &claims)
}

/// The id in the first line of a promotion's table (`promotion 12  web-app → prod …`).
fn promotion_id(table: &str) -> i64 {
    table
        .lines()
        .find_map(|line| line.strip_prefix("promotion "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("no promotion id in:\n{table}"))
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_ci_job_logs_in_with_its_oidc_token_and_may_push_and_notify_only_what_its_trust_policy_grants()
{
    // The issuer runs on its own runtime for the whole test.
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let issuer = runtime.block_on(TestIssuer::start());
    let key = SigningKey::rsa();
    issuer.publish(KID, &key);
    let platform = Platform::start(&issuer.url);

    // The job exchanges its token once; the Gantry token is saved, readable by it alone.
    let job = job_token(&issuer, &key);
    let login = platform.login_with_job_token(&job);
    assert_eq!(login.status.code(), Some(0), "{}", describe(&login));
    let token = String::from_utf8_lossy(&login.stdout).trim().to_owned();
    assert!(!token.is_empty() && !token.contains('\n'), "{token:?}");
    assert!(
        stderr(&login).contains(&format!("logged in as {CI_USER} (developer@web-app)")),
        "{}",
        describe(&login)
    );
    let login_file = platform.ci_home().join(".config/gantry/token");
    let saved = std::fs::read_to_string(&login_file).expect("the login file exists");
    assert_eq!(saved.trim(), token);
    let mode = std::fs::metadata(&login_file)
        .expect("login file metadata")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
    let replay = platform.login_with_job_token(&job);
    assert_eq!(
        replay.status.code(),
        Some(NOT_ALLOWED),
        "{}",
        describe(&replay)
    );
    assert!(
        stderr(&replay).contains("already exchanged"),
        "{}",
        describe(&replay)
    );
    let still = std::fs::read_to_string(&login_file).expect("the login file exists");
    assert_eq!(still.trim(), token, "a refused login keeps the saved token");
    let ci_creds = format!("{CI_USER}:{token}");

    // skopeo, oras and buildah push into the application's repository with it.
    let (layout, image) = platform.image("v1");
    let first = image["manifest"]
        .as_str()
        .expect("manifest digest")
        .to_owned();
    let pushed = platform.skopeo_push(&layout, "v1", "acme/web-app", &ci_creds);
    assert!(
        pushed.status.success(),
        "skopeo with the OIDC token\n{}\nserver log:\n{}",
        describe(&pushed),
        platform.server.log()
    );
    assert!(
        platform
            .server
            .log()
            .contains(&format!("registry token issued caller=\"{CI_USER}\"")),
        "skopeo answered the Bearer challenge at /token:\n{}",
        platform.server.log()
    );
    let oras = platform.oras_push("acme/web-app", CI_USER, &token);
    assert!(
        oras.status.success(),
        "oras with the OIDC token\n{}\nserver log:\n{}",
        describe(&oras),
        platform.server.log()
    );
    let built_commit = "b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0";
    let built = platform.buildah_push("acme/web-app", &ci_creds, built_commit);
    assert!(built.starts_with("sha256:"), "{built}");
    let (status, tags) = platform.http_get("admin", "/v2/acme/web-app/tags/list", &[]);
    assert_eq!(status, 200, "{tags}");
    let tags: Value = serde_json::from_str(&tags).expect("tags JSON");
    for tag in ["v1", "oras", "buildah"] {
        assert!(
            tags["tags"]
                .as_array()
                .is_some_and(|t| t.iter().any(|t| t == tag)),
            "{tags}"
        );
    }

    // A person's own token works with skopeo too: dana pushes a build nobody promotes.
    let (layout, image) = platform.image("unpromoted");
    let unpromoted = image["manifest"]
        .as_str()
        .expect("manifest digest")
        .to_owned();
    let dana_creds = format!("dana:{}", platform.token("dana"));
    let pushed = platform.skopeo_push(&layout, "unpromoted", "acme/web-app", &dana_creds);
    assert!(pushed.status.success(), "{}", describe(&pushed));

    // Another application's repository is out of the job's reach, whatever the client.
    let (layout, image) = platform.image("stolen");
    let refused = platform.skopeo_push(&layout, "stolen", "acme/api", &ci_creds);
    assert!(!refused.status.success(), "{}", describe(&refused));
    assert!(
        stderr(&refused).contains("denied"),
        "{}",
        describe(&refused)
    );
    let oras_refused = platform.oras_push("acme/api", CI_USER, &token);
    assert!(
        !oras_refused.status.success()
            && stderr(&oras_refused)
                .contains("oidc/web-ci lacks the permission repository:acme/api:push"),
        "{}",
        describe(&oras_refused)
    );
    let (status, tags) = platform.http_get("admin", "/v2/acme/api/tags/list", &[]);
    assert!(
        status == 404
            || serde_json::from_str::<Value>(&tags)
                .is_ok_and(|t| t["tags"].as_array().is_none_or(Vec::is_empty)),
        "HTTP {status}: {tags}"
    );
    for layer in image["layers"].as_array().expect("layers") {
        let digest = layer["digest"].as_str().expect("layer digest");
        let (status, body) =
            platform.http_get("admin", &format!("/v2/acme/api/blobs/{digest}"), &[]);
        assert_eq!(status, 404, "layer {digest} of the refused push: {body}");
    }

    // The job notifies with its saved login and reports a check; dev deploys at once.
    let notified = platform.json(
        Caller::CiJob,
        &[
            "build",
            "notify",
            "--app",
            "web-app",
            "--digest",
            &first,
            "--commit",
            "1111111aaaaaaabbbbbbbcccccccdddddddeeeee",
            "--branch",
            "main",
        ],
    );
    assert_eq!(notified["build"]["builder"], CI_USER, "{notified:#}");
    assert_eq!(notified["promotion"]["environment"], "dev", "{notified:#}");
    assert_eq!(notified["promotion"]["state"], "deployed", "{notified:#}");
    assert_eq!(platform.running("dev"), first.as_str());
    let reported = platform.ok(
        Caller::CiJob,
        &[
            "check",
            "report",
            "--app",
            "web-app",
            "--digest",
            &first,
            "--name",
            "unit-tests",
            "--status",
            "passed",
            "--token",
            &token,
        ],
    );
    assert!(reported.contains("unit-tests"), "{reported}");
    let notified = platform.json(
        Caller::CiJob,
        &["build", "notify", "--app", "web-app", "--digest", &built],
    );
    assert_eq!(notified["build"]["commit"], built_commit, "{notified:#}");
    assert_eq!(notified["promotion"]["state"], "deployed", "{notified:#}");

    // Beyond dev the job may neither promote nor approve.
    let denied = platform.expect(
        Caller::CiJob,
        NOT_ALLOWED,
        &["promote", "web-app", "--env", "staging", "--digest", &first],
    );
    assert!(
        stderr(&denied).contains("forbidden: oidc/web-ci is a CI identity"),
        "{}",
        describe(&denied)
    );
    let staging = platform.promote("dana", "staging", &first, WAITING);
    let denied = platform.expect(
        Caller::CiJob,
        NOT_ALLOWED,
        &["approve", &staging.to_string()],
    );
    assert!(
        stderr(&denied).contains("forbidden"),
        "{}",
        describe(&denied)
    );

    // Staff of web-app opens staging; prod needs staff and client alike.
    let approved = platform.ok(Caller::User("sam"), &["approve", &staging.to_string()]);
    assert!(approved.contains("deployed"), "{approved}");
    assert_eq!(platform.running("staging"), first.as_str());
    let prod = platform.promote("dana", "prod", &first, WAITING);
    let half = platform.expect(
        Caller::User("sam"),
        WAITING,
        &["approve", &prod.to_string()],
    );
    let table = String::from_utf8_lossy(&half.stdout);
    let client_row = table
        .lines()
        .find(|line| line.starts_with("approval client"));
    assert!(
        client_row.is_some_and(|row| row.contains('✗')),
        "{}",
        describe(&half)
    );
    let approved = platform.ok(Caller::User("cleo"), &["approve", &prod.to_string()]);
    assert!(approved.contains("deployed"), "{approved}");
    assert_eq!(platform.running("prod"), first.as_str());

    // A developer of web-app's staging alone may ask for staging, not for prod.
    platform.promote("stella", "staging", &built, WAITING);
    let beyond = platform.expect(
        Caller::User("stella"),
        NOT_ALLOWED,
        &["promote", "web-app", "--env", "prod", "--digest", &built],
    );
    assert!(
        stderr(&beyond).contains("permission promote:web-app/prod"),
        "{}",
        describe(&beyond)
    );

    // Admission lets into prod what was promoted there, nothing else.
    let admitted = platform.admission("prod", "acme/web-app", &first);
    assert_eq!(admitted["allowed"], true, "{admitted:#}");
    let kept_out = platform.admission("prod", "acme/web-app", &unpromoted);
    assert_eq!(kept_out["allowed"], false, "{kept_out:#}");
    assert!(
        kept_out["reason"]
            .as_str()
            .is_some_and(|r| r.contains("never promoted")),
        "{kept_out:#}"
    );

    // The record verifies and holds the one exchange with the job's claims.
    let intact = platform.ok(Caller::User("admin"), &["audit", "verify"]);
    assert!(intact.starts_with("audit log intact"), "{intact}");
    let export = platform.ok(Caller::User("admin"), &["audit", "export"]);
    // Each entry's payload is the JSON text the chain hashes.
    let exchanges: Vec<(Value, Value)> = export
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("JSON Lines"))
        .map(|entry| {
            let payload = entry["payload"].as_str().map_or(Value::Null, |text| {
                serde_json::from_str(text).expect("the payload is JSON text")
            });
            (entry, payload)
        })
        .filter(|(_, payload)| payload["oidc"].is_object())
        .collect();
    assert_eq!(
        exchanges.len(),
        1,
        "one exchange, the replay is not one:\n{export}"
    );
    let (entry, payload) = &exchanges[0];
    assert_eq!(entry["actor"], CI_USER, "{entry:#}");
    assert_eq!(
        payload["oidc"]["issuer"],
        issuer.url.as_str(),
        "{payload:#}"
    );
    assert_eq!(
        payload["oidc"]["job"]["repository"], "acme/web-app",
        "{payload:#}"
    );
    assert_eq!(payload["scope"][0], "developer@web-app", "{payload:#}");
    let lifetime = payload["expires_at"].as_i64().unwrap_or_default()
        - entry["at_millis"].as_i64().unwrap_or_default();
    assert!(
        (25 * 60_000..=30 * 60_000).contains(&lifetime),
        "the policy's max_token_lifetime is 30m: {lifetime} ms\n{payload:#}"
    );
    assert!(!export.contains(&token), "the audit log holds no token");
}

/// Serves one GitHub Actions ID-token request (`GET …?audience=gantry` with
/// `Authorization: bearer REQUEST_TOKEN`) on a loopback port, answering `{"value":
/// JOB_TOKEN}`; anything else gets 401. Returns the request URL and the thread, which
/// yields the request line it saw.
fn github_token_endpoint(
    request_token: &'static str,
    job_token: String,
) -> (String, std::thread::JoinHandle<String>) {
    use std::io::{BufRead, BufReader};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let url = format!(
        "http://{}/_apis/pipelines/idtoken?api-version=2.0",
        listener.local_addr().expect("address")
    );
    let thread = std::thread::spawn(move || {
        let (stream, _) = listener.accept().expect("one request");
        let mut reader = BufReader::new(stream.try_clone().expect("clone the stream"));
        let mut request_line = String::new();
        reader.read_line(&mut request_line).expect("request line");
        let mut authorized = false;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("header line");
            if line.trim().is_empty() {
                break;
            }
            if line.to_ascii_lowercase().trim() == format!("authorization: bearer {request_token}")
            {
                authorized = true;
            }
        }
        let (status, body) = if authorized && request_line.contains("audience=gantry") {
            (
                "200 OK",
                serde_json::json!({ "value": job_token }).to_string(),
            )
        } else {
            ("401 Unauthorized", "{}".to_owned())
        };
        let mut stream = stream;
        write!(
            stream,
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .expect("answer");
        request_line
    });
    (url, thread)
}

#[test]
fn gantry_login_takes_the_job_token_from_github_actions_or_an_api_token_from_stdin() {
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let issuer = runtime.block_on(TestIssuer::start());
    let key = SigningKey::rsa();
    issuer.publish(KID, &key);
    let platform = Platform::start(&issuer.url);
    let home = platform.ci_home();
    std::fs::create_dir_all(&home).expect("CI home");

    // Outside GitHub Actions, --oidc says what it needs.
    let outside = platform
        .bare_gantry(&home)
        .args(["login", "--oidc"])
        .env_remove("ACTIONS_ID_TOKEN_REQUEST_URL")
        .env_remove("ACTIONS_ID_TOKEN_REQUEST_TOKEN")
        .output()
        .expect("run gantry login");
    assert_eq!(outside.status.code(), Some(2), "{}", describe(&outside));
    assert!(
        stderr(&outside).contains("id-token: write"),
        "{}",
        describe(&outside)
    );

    // Inside: the job token is requested for audience `gantry` and exchanged.
    let (url, endpoint) = github_token_endpoint("request-secret", job_token(&issuer, &key));
    let login = platform
        .bare_gantry(&home)
        .args(["login", "--oidc", "--print-token"])
        .env("ACTIONS_ID_TOKEN_REQUEST_URL", &url)
        .env("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "request-secret")
        .output()
        .expect("run gantry login");
    assert_eq!(login.status.code(), Some(0), "{}", describe(&login));
    let request_line = endpoint.join().expect("the endpoint answered");
    assert!(
        request_line.starts_with("GET /_apis/pipelines/idtoken?api-version=2.0&audience=gantry "),
        "{request_line}"
    );
    let token = String::from_utf8_lossy(&login.stdout).trim().to_owned();
    // The saved token is the CI identity's: it lists its own tokens, and nothing else.
    let tokens = platform.json(Caller::CiJob, &["token", "list"]);
    assert_eq!(tokens["tokens"][0]["user"], CI_USER, "{tokens}");
    let saved = std::fs::read_to_string(home.join(".config/gantry/token")).expect("saved");
    assert_eq!(saved.trim(), token);
    platform.expect(Caller::CiJob, NOT_ALLOWED, &["apps"]);

    // A person pipes an API token in; it is checked before it is saved.
    let person_home = platform.path().join("dana-home");
    std::fs::create_dir_all(&person_home).expect("dana's home");
    let pipe = |token: &str| {
        let mut child = platform
            .bare_gantry(&person_home)
            .args(["login", "--token-stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run gantry login");
        child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(token.as_bytes())
            .expect("write the token");
        child.wait_with_output().expect("gantry login ends")
    };
    let refused = pipe("gnt_not_a_real_token");
    assert_eq!(
        refused.status.code(),
        Some(NOT_ALLOWED),
        "{}",
        describe(&refused)
    );
    assert!(!person_home.join(".config/gantry/token").exists());
    let accepted = pipe(platform.token("dana"));
    assert_eq!(accepted.status.code(), Some(0), "{}", describe(&accepted));
    assert!(
        stderr(&accepted).contains("logged in as dana"),
        "{}",
        describe(&accepted)
    );
    let apps = platform
        .bare_gantry(&person_home)
        .args(["apps"])
        .output()
        .expect("run gantry apps");
    assert_eq!(apps.status.code(), Some(0), "{}", describe(&apps));
    // Without a way to log in, it says which.
    let nothing = platform
        .bare_gantry(&person_home)
        .arg("login")
        .output()
        .expect("run");
    assert_eq!(nothing.status.code(), Some(2), "{}", describe(&nothing));
}
