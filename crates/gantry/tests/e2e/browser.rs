//! The web UI in a real browser: Debian's chromium, headless, driven through
//! chromedriver. A staff member whose password an admin set with `gantry user passwd`
//! signs in, finds the promotion waiting on them, and approves it with the keyboard
//! alone; it deploys. Each flow runs with JavaScript switched off and on (the UI needs
//! none), and with JavaScript on every screen is checked by axe-core for WCAG 2.2 A and
//! AA violations and photographed into `docs/ui/` (the README links those pictures,
//! so they show the UI as it is). An admin signs in with their token and makes an
//! invitation link; the invited person opens it, chooses a password and signs in.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::support::{GantryServer, free_port, push_new_image, slow_app};

const RESOURCES: &str = r#"kind: Pipeline
name: standard
stages:
  - name: dev
    auto: true
  - name: staging
    gate:
      approvals: [{ role: staff, count: 1 }]
  - name: prod
    gate:
      approvals: [{ role: client, count: 1 }]
---
kind: Application
name: web-app
type: container
repository: acme/web-app
pipeline: standard
environments:
  dev: { target: { record: {} } }
  staging: { target: { record: {} } }
  prod: { target: { record: {} } }
"#;

const PASSWORD: &str = "a long staff password";

/// Where axe-core is installed (see .ci/run): `GANTRY_AXE_JS`, else the CI's place.
fn axe_script() -> String {
    let path = std::env::var_os("GANTRY_AXE_JS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/gantry-npm/node_modules/axe-core/axe.min.js"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read axe-core at {} ({e}); .ci/run installs it",
            path.display()
        )
    })
}

/// A chromedriver on a free port, stopped when dropped.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    fn start(log: &Path) -> Driver {
        let port = free_port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver (Debian's chromium-driver; .ci/run installs it)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Driver { child, port }
    }

    async fn browser(&self, javascript: bool, profile: &Path) -> Client {
        let mut options = json!({
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,1000", format!("--user-data-dir={}", profile.display())],
        });
        if !javascript {
            options["prefs"] = json!({ "profile.managed_default_content_settings.javascript": 2 });
        }
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".to_owned(), json!("chrome"));
        capabilities.insert("goog:chromeOptions".to_owned(), options);
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("a browser session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A server with the pipeline, a CI identity, a developer and a staff member with a
/// password, and one build waiting in staging for a staff approval.
struct Release {
    server: GantryServer,
    dir: tempfile::TempDir,
    promotion: i64,
    digest: String,
    /// The tokens of the CI identity, dev-dana and staff-sam.
    ci_token: String,
    dana_token: String,
    sam_token: String,
}

impl Release {
    /// `gantry ARGS…` with `token`, which must succeed; its stdout.
    fn gantry(&self, token: &str, args: &[&str], stdin: Option<&str>) -> String {
        let output = self.gantry_output(token, args, stdin);
        assert!(
            output.status.success(),
            "gantry {args:?}: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn gantry_output(
        &self,
        token: &str,
        args: &[&str],
        stdin: Option<&str>,
    ) -> std::process::Output {
        let mut child = Command::new(env!("CARGO_BIN_EXE_gantry"))
            .args(args)
            .current_dir(self.dir.path())
            .env("HOME", self.dir.path())
            .env("GANTRY_URL", format!("http://{}", self.server.address))
            .env("GANTRY_TOKEN", token)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run gantry");
        let mut input = child.stdin.take().expect("stdin");
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).expect("write stdin");
        }
        drop(input);
        child.wait_with_output().expect("gantry finishes")
    }

    fn start() -> Release {
        let dir = tempfile::tempdir().expect("temporary directory");
        let server = GantryServer::start(dir.path(), &[], &[]);
        let mut release = Release {
            server,
            dir,
            promotion: 0,
            digest: String::new(),
            ci_token: String::new(),
            dana_token: String::new(),
            sam_token: String::new(),
        };
        let admin = release.server.token().to_owned();
        std::fs::write(release.dir.path().join("gantry.yaml"), RESOURCES).expect("write");
        release.gantry(&admin, &["apply", "-f", "gantry.yaml"], None);
        let mut tokens = Vec::new();
        for (name, flags) in [
            ("ci-bot", &["--ci", "--role", "developer"][..]),
            ("dev-dana", &["--role", "developer"]),
            ("staff-sam", &["--role", "staff"]),
            ("client-cleo", &["--role", "client@web-app"]),
        ] {
            release.gantry(
                &admin,
                &[&["user", "create", name][..], flags].concat(),
                None,
            );
            tokens.push(
                release
                    .gantry(&admin, &["token", "create", name], None)
                    .trim()
                    .to_owned(),
            );
        }
        let said = release.gantry(
            &admin,
            &["user", "passwd", "staff-sam"],
            Some(&format!("{PASSWORD}\n")),
        );
        assert_eq!(said.trim(), "password set for staff-sam");
        release.ci_token = tokens[0].clone();
        let digest = release.push("acme/web-app", "v1", "1x8K");
        release.gantry(
            &tokens[0],
            &[
                "build",
                "notify",
                "--app",
                "web-app",
                "--digest",
                &digest,
                "--commit",
                "1234567abcdef",
            ],
            None,
        );
        // A promotion left waiting on its gate exits non-zero by design; its JSON is on
        // stdout all the same.
        let output = release.gantry_output(
            &tokens[1],
            &[
                "promote", "web-app", "--env", "staging", "--digest", &digest, "-o", "json",
            ],
            None,
        );
        let promoted: Value = serde_json::from_slice(&output.stdout).expect("JSON");
        assert_eq!(promoted["state"], "waiting", "{promoted}");
        release.promotion = promoted["id"].as_i64().expect("id");
        release.digest = digest;
        release.dana_token = tokens[1].clone();
        release.sam_token = tokens[2].clone();
        release
    }

    /// Sets `user`'s password to PASSWORD (as the admin).
    fn set_password(&self, user: &str) {
        let admin = self.server.token().to_owned();
        self.gantry(
            &admin,
            &["user", "passwd", user],
            Some(&format!("{PASSWORD}\n")),
        );
    }

    /// Pushes a new image of `layers` as `repository:tag` with skopeo, as the CI
    /// identity: its digest.
    fn push(&self, repository: &str, tag: &str, layers: &str) -> String {
        push_new_image(
            &self.server.address,
            &format!("ci-bot:{}", self.ci_token),
            &format!("{repository}:{tag}"),
            layers,
        )
    }

    /// Pushes a new image tagged `tag` to acme/web-app and notifies it (dev is
    /// automatic): its digest.
    fn build(&self, tag: &str, layers: &str) -> String {
        let digest = self.push("acme/web-app", tag, layers);
        self.gantry(
            &self.ci_token,
            &[
                "build",
                "notify",
                "--app",
                "web-app",
                "--digest",
                &digest,
                "--commit",
                &format!("{tag}00000abc"),
            ],
            None,
        );
        digest
    }

    /// Where `environment` of web-app stands, as `gantry status` tells.
    fn current(&self, environment: &str) -> Value {
        let admin = self.server.token().to_owned();
        let status: Value =
            serde_json::from_str(&self.gantry(&admin, &["status", "web-app", "-o", "json"], None))
                .expect("JSON");
        status["environments"]
            .as_array()
            .and_then(|all| all.iter().find(|e| e["name"] == environment))
            .map(|e| e["current"]["digest"].clone())
            .unwrap_or(Value::Null)
    }

    fn promotion_state(&self, id: i64) -> Value {
        let admin = self.server.token().to_owned();
        let promotion: Value = serde_json::from_str(&self.gantry(
            &admin,
            &["promotion", &id.to_string(), "-o", "json"],
            None,
        ))
        .expect("JSON");
        promotion["state"].clone()
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.server.address)
    }

    fn staging_state(&self) -> Value {
        let admin = self.server.token().to_owned();
        let promotion: Value = serde_json::from_str(&self.gantry(
            &admin,
            &["promotion", &self.promotion.to_string(), "-o", "json"],
            None,
        ))
        .expect("JSON");
        promotion["state"].clone()
    }
}

/// Runs axe-core on the page the browser shows and fails on any WCAG 2.2 A or AA
/// violation, naming each with its nodes.
async fn assert_accessible(browser: &Client, axe: &str, page: &str) {
    browser.execute(axe, vec![]).await.expect("inject axe-core");
    let result = browser
        .execute_async(
            "const done = arguments[arguments.length - 1];
             axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa'] } })
                .then(r => done(r.violations.map(v => ({ id: v.id, help: v.help, nodes: v.nodes.map(n => n.html) }))))
                .catch(e => done([{ id: 'axe-error', help: String(e), nodes: [] }]));",
            vec![],
        )
        .await
        .expect("axe runs");
    let violations = result.as_array().cloned().unwrap_or_default();
    assert!(violations.is_empty(), "{page}: {violations:#?}");
}

/// Saves what the browser shows as `docs/ui/NAME.png`.
async fn photograph(browser: &Client, name: &str) {
    let png = browser.screenshot().await.expect("a screenshot");
    let directory = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/ui");
    std::fs::create_dir_all(&directory).expect("docs/ui");
    std::fs::write(directory.join(format!("{name}.png")), png).expect("write the screenshot");
}

/// Opens `page`, checks it with axe-core and photographs it as `name`.
async fn check_screen(browser: &Client, release: &Release, axe: &str, page: &str, name: &str) {
    browser.goto(&release.url(page)).await.expect("open");
    assert_accessible(browser, axe, page).await;
    photograph(browser, name).await;
}

async fn sign_in(browser: &Client, release: &Release, next: &str) {
    sign_in_as(browser, release, "staff-sam", next).await;
}

async fn sign_out(browser: &Client) {
    browser
        .find(Locator::XPath("//button[normalize-space()='Sign out']"))
        .await
        .expect("the sign-out button")
        .click()
        .await
        .expect("signed out");
    wait_for_path(browser, "/sign-in").await;
}

async fn click_button(browser: &Client, label: &str) {
    browser
        .find(Locator::XPath(&format!(
            "//button[normalize-space()='{label}']"
        )))
        .await
        .unwrap_or_else(|e| panic!("a button `{label}`: {e}"))
        .click()
        .await
        .expect("click");
}

/// Waits until the browser shows `path` (a form's answer may still be loading when a
/// click returns).
async fn wait_for_path(browser: &Client, path: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let here = browser.current_url().await.expect("url");
        if here.path() == path {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the browser stayed at {here}, not {path}: {}",
            browser.source().await.expect("source")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn sign_in_as(browser: &Client, release: &Release, user: &str, next: &str) {
    browser.goto(&release.url(next)).await.expect("open a page");
    // Not signed in: the page sends the browser to sign in, and back afterwards.
    let here = browser.current_url().await.expect("url");
    assert_eq!(here.path(), "/sign-in", "{here}");
    browser
        .find(Locator::Id("user"))
        .await
        .expect("user field")
        .send_keys(user)
        .await
        .expect("type");
    let password = browser.find(Locator::Id("password")).await.expect("field");
    password.send_keys(PASSWORD).await.expect("type");
    // Enter in the password field submits the form, as a keyboard user does.
    password.send_keys("\u{E007}").await.expect("enter");
    wait_for_path(browser, next).await;
}

async fn approve_with_the_keyboard(javascript: bool) {
    let release = Release::start();
    let profile = tempfile::tempdir().expect("profile");
    let driver = Driver::start(&release.dir.path().join("chromedriver.log"));
    let browser = driver.browser(javascript, profile.path()).await;
    let axe = javascript.then(axe_script);
    if let Some(axe) = &axe {
        check_screen(&browser, &release, axe, "/sign-in", "sign-in").await;
    }
    sign_in(&browser, &release, "/approvals").await;
    let source = browser.source().await.expect("source");
    assert!(
        source.contains(&format!("Approve promotion {}", release.promotion)),
        "{source}"
    );
    if let Some(axe) = &axe {
        for (page, name) in [
            ("/approvals".to_owned(), "approvals"),
            ("/".to_owned(), "board"),
            ("/apps/web-app".to_owned(), "application"),
            (format!("/promotions/{}", release.promotion), "promotion"),
        ] {
            check_screen(&browser, &release, axe, &page, name).await;
        }
        browser
            .goto(&release.url("/approvals"))
            .await
            .expect("open");
    }
    let comment = browser
        .find(Locator::Id(&format!(
            "approve-comment-{}",
            release.promotion
        )))
        .await
        .expect("the comment field");
    comment.send_keys("ship it").await.expect("type");
    comment
        .send_keys("\u{E007}")
        .await
        .expect("enter submits the approval");
    wait_for_path(&browser, &format!("/promotions/{}", release.promotion)).await;
    let source = browser.source().await.expect("source");
    assert!(source.contains("Approved."), "{source}");
    assert_eq!(release.staging_state(), "deployed");
    if let Some(axe) = &axe {
        assert_accessible(&browser, axe, "the promotion after approval").await;
        for (page, name) in [
            (
                "/apps/web-app/environments/staging".to_owned(),
                "environment-history",
            ),
            (format!("/artifacts/{}", release.digest), "artifact"),
            ("/dora".to_owned(), "dora"),
            (
                "/apps/web-app/environments/staging/rollback".to_owned(),
                "rollback",
            ),
        ] {
            check_screen(&browser, &release, axe, &page, name).await;
        }
    }
    browser.close().await.expect("close the browser");
}

/// An admin signs in with their token, makes an invitation link for client-cleo on
/// her page, and signs out; cleo opens the link, chooses her password and signs in.
async fn invite_a_client(javascript: bool) {
    let release = Release::start();
    let profile = tempfile::tempdir().expect("profile");
    let driver = Driver::start(&release.dir.path().join("chromedriver.log"));
    let browser = driver.browser(javascript, profile.path()).await;
    let axe = javascript.then(axe_script);
    browser
        .goto(&release.url("/admin/users/client-cleo"))
        .await
        .expect("open");
    let token = browser
        .find(Locator::Id("token"))
        .await
        .expect("token field");
    token.send_keys(release.server.token()).await.expect("type");
    token.send_keys("\u{E007}").await.expect("enter");
    wait_for_path(&browser, "/admin/users/client-cleo").await;
    if let Some(axe) = &axe {
        check_screen(&browser, &release, axe, "/admin/users", "admin-users").await;
        check_screen(&browser, &release, axe, "/audit", "audit").await;
        check_screen(
            &browser,
            &release,
            axe,
            "/admin/resources",
            "admin-resources",
        )
        .await;
        check_screen(
            &browser,
            &release,
            axe,
            "/admin/resources/applications/web-app",
            "admin-resource",
        )
        .await;
        browser
            .goto(&release.url("/admin/users/client-cleo"))
            .await
            .expect("open");
    }
    click_button(&browser, "Make an invitation link").await;
    wait_for_path(&browser, "/admin/users/client-cleo/invitation").await;
    let source = browser.source().await.expect("source");
    let start = source.find("/invitations/").expect("the link on the page");
    let link = source[start..].split('<').next().expect("link").to_owned();
    if let Some(axe) = &axe {
        assert_accessible(&browser, axe, "the user page with the invitation").await;
        photograph(&browser, "admin-user").await;
    }
    sign_out(&browser).await;

    browser
        .goto(&release.url(&link))
        .await
        .expect("open the invitation");
    let source = browser.source().await.expect("source");
    assert!(
        source.contains("Welcome to Gantry, client-cleo"),
        "{source}"
    );
    if let Some(axe) = &axe {
        assert_accessible(&browser, axe, "the invitation").await;
        photograph(&browser, "invitation").await;
    }
    let chosen = "cleo's own long password";
    for id in ["new-password", "repeat-password"] {
        browser
            .find(Locator::Id(id))
            .await
            .expect("password field")
            .send_keys(chosen)
            .await
            .expect("type");
    }
    browser
        .find(Locator::Id("repeat-password"))
        .await
        .expect("field")
        .send_keys("\u{E007}")
        .await
        .expect("submit");
    wait_for_path(&browser, "/sign-in").await;
    assert!(
        browser
            .source()
            .await
            .expect("source")
            .contains("Your password is set.")
    );
    browser
        .find(Locator::Id("user"))
        .await
        .expect("user")
        .send_keys("client-cleo")
        .await
        .expect("type");
    let password = browser
        .find(Locator::Id("password"))
        .await
        .expect("password");
    password.send_keys(chosen).await.expect("type");
    password.send_keys("\u{E007}").await.expect("enter");
    wait_for_path(&browser, "/").await;
    let source = browser.source().await.expect("source");
    assert!(
        source.contains("Signed in as <strong>client-cleo</strong>"),
        "{source}"
    );
    // The link worked once.
    browser
        .goto(&release.url(&link))
        .await
        .expect("open the link again");
    let source = browser.source().await.expect("source");
    assert!(source.contains("was used already"), "{source}");
    browser.close().await.expect("close the browser");
}

/// A staff member opens the promotion of a deployment while it runs (it runs until
/// the test lets it finish). Without JavaScript the page says it runs and links to
/// reload it; with it, the page says its log grows, and reloads by itself when the
/// deployment ends.
async fn watch_a_deployment_run(javascript: bool) {
    let release = Release::start();
    let admin = release.server.token().to_owned();
    let go = release.dir.path().join("go");
    std::fs::write(release.dir.path().join("slow.yaml"), slow_app(&go)).expect("write");
    release.gantry(&admin, &["apply", "-f", "slow.yaml"], None);
    let digest = release.push("acme/slow-app", "v1", "1x4K");
    // The notification deploys into dev before it answers: run it in the background
    // and find the promotion while it deploys.
    let mut notify = Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args(["build", "notify", "--app", "slow-app", "--digest", &digest])
        .current_dir(release.dir.path())
        .env("HOME", release.dir.path())
        .env("GANTRY_URL", format!("http://{}", release.server.address))
        .env("GANTRY_TOKEN", &release.ci_token)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run gantry build notify");
    let deadline = Instant::now() + Duration::from_secs(20);
    let id = loop {
        let listed: Value = serde_json::from_str(&release.gantry(
            &admin,
            &["promotions", "--app", "slow-app", "-o", "json"],
            None,
        ))
        .expect("JSON");
        if let Some(id) = listed["promotions"]
            .as_array()
            .and_then(|all| all.iter().find(|p| p["state"] == "deploying"))
            .and_then(|p| p["id"].as_i64())
        {
            break id;
        }
        assert!(Instant::now() < deadline, "no deployment started: {listed}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let page = format!("/promotions/{id}");

    let profile = tempfile::tempdir().expect("profile");
    let driver = Driver::start(&release.dir.path().join("chromedriver.log"));
    let browser = driver.browser(javascript, profile.path()).await;
    sign_in(&browser, &release, &page).await;
    let source = browser.source().await.expect("source");
    assert!(source.contains("state-deploying"), "it runs: {source}");
    let deadline = Instant::now() + Duration::from_secs(30);
    if javascript {
        let status = browser
            .find(Locator::Css("[data-live-status]"))
            .await
            .expect("the live status")
            .text()
            .await
            .expect("text");
        assert!(status.contains("its log grows below"), "{status}");
        assert_accessible(&browser, &axe_script(), "a running deployment").await;
        photograph(&browser, "promotion-running").await;
        std::fs::write(&go, b"").expect("let the deployment finish");
        // The page reloads by itself when the deployment ends: the log's last line
        // streams in first, then the reloaded page shows the outcome with it.
        loop {
            let source = browser.source().await.expect("source");
            if source.contains("sh exited 0") && source.contains("state-deployed") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the page did not follow the deployment: {source}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    } else {
        assert!(source.contains("Reload the page"), "{source}");
        std::fs::write(&go, b"").expect("let the deployment finish");
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            browser.goto(&release.url(&page)).await.expect("reload");
            let source = browser.source().await.expect("source");
            if source.contains("sh exited 0") {
                assert!(
                    source.contains("state-deployed") && !source.contains("Reload the page"),
                    "{source}"
                );
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the deployment did not end: {source}"
            );
        }
    }
    browser.close().await.expect("close the browser");
    assert!(notify.wait().expect("notify ends").success());
}

/// A client approves production (after a reject without a reason went nowhere) and
/// sees it deploy; a developer rolls dev back after seeing from → to; a viewer finds
/// every action disabled.
async fn release_to_production(javascript: bool) {
    let release = Release::start();
    let staging = release.promotion.to_string();
    release.gantry(&release.sam_token, &["approve", &staging], None);
    let output = release.gantry_output(
        &release.dana_token,
        &[
            "promote",
            "web-app",
            "--env",
            "prod",
            "--digest",
            &release.digest,
            "-o",
            "json",
        ],
        None,
    );
    let promoted: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(promoted["state"], "waiting", "{promoted}");
    let prod = promoted["id"].as_i64().expect("id");
    let admin = release.server.token().to_owned();
    release.gantry(&admin, &["user", "create", "vic", "--role", "viewer"], None);
    for user in ["client-cleo", "dev-dana", "vic"] {
        release.set_password(user);
    }
    let profile = tempfile::tempdir().expect("profile");
    let driver = Driver::start(&release.dir.path().join("chromedriver.log"));
    let browser = driver.browser(javascript, profile.path()).await;
    let axe = javascript.then(axe_script);

    // The client: a rejection without a reason is not sent; an approval deploys.
    sign_in_as(&browser, &release, "client-cleo", "/approvals").await;
    if let Some(axe) = &axe {
        assert_accessible(&browser, axe, "the client's approvals").await;
    }
    click_button(&browser, &format!("Reject promotion {prod}")).await;
    assert_eq!(
        browser.current_url().await.expect("url").path(),
        "/approvals"
    );
    assert_eq!(
        release.promotion_state(prod),
        "waiting",
        "a reason is required"
    );
    click_button(&browser, &format!("Approve promotion {prod}")).await;
    wait_for_path(&browser, &format!("/promotions/{prod}")).await;
    let source = browser.source().await.expect("source");
    assert!(
        source.contains("Approved.") && source.contains("client-cleo approved"),
        "{source}"
    );
    assert_eq!(release.promotion_state(prod), "deployed");
    assert_eq!(release.current("prod"), release.digest.as_str());
    sign_out(&browser).await;

    // The developer rolls dev back to the first build after seeing both sides.
    let second = release.build("v2", "1x9K");
    assert_eq!(release.current("dev"), second.as_str());
    sign_in_as(
        &browser,
        &release,
        "dev-dana",
        "/apps/web-app/environments/dev",
    )
    .await;
    browser
        .find(Locator::XPath(
            "//a[starts-with(normalize-space(), 'Roll back to this')]",
        ))
        .await
        .expect("roll back to this")
        .click()
        .await
        .expect("open the confirmation");
    let source = browser.source().await.expect("source");
    let from = source.find(&second).expect("from: what dev runs");
    let to = source.find(&release.digest).expect("to: the first build");
    assert!(from < to, "from, then to");
    if let Some(axe) = &axe {
        assert_accessible(&browser, axe, "the rollback's confirmation").await;
    }
    assert_eq!(
        release.current("dev"),
        second.as_str(),
        "nothing happened yet"
    );
    click_button(&browser, "Roll back dev now").await;
    wait_for_path(&browser, "/apps/web-app").await;
    assert!(
        browser
            .source()
            .await
            .expect("source")
            .contains("Rollback started.")
    );
    assert_eq!(release.current("dev"), release.digest.as_str());
    sign_out(&browser).await;

    // The viewer sees the application with every action disabled.
    sign_in_as(&browser, &release, "vic", "/apps/web-app").await;
    let buttons = browser
        .find_all(Locator::Css("main button"))
        .await
        .expect("buttons");
    assert!(!buttons.is_empty());
    for button in buttons {
        let label = button.text().await.expect("label");
        assert!(
            button.attr("disabled").await.expect("attribute").is_some(),
            "the viewer may use `{label}`"
        );
    }
    if let Some(axe) = &axe {
        assert_accessible(&browser, axe, "the application as a viewer").await;
    }
    browser.close().await.expect("close the browser");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_approves_production_a_developer_rolls_back_and_a_viewer_may_not_act_javascript_off()
 {
    release_to_production(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_approves_production_a_developer_rolls_back_and_a_viewer_may_not_act_with_javascript()
 {
    release_to_production(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_deployment_says_so_and_links_to_reload_javascript_off() {
    watch_a_deployment_run(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_deployments_page_follows_it_live_and_reloads_when_it_ends() {
    watch_a_deployment_run(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_invites_a_client_who_chooses_a_password_and_signs_in_javascript_off() {
    invite_a_client(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_invites_a_client_who_chooses_a_password_and_signs_in_and_every_screen_passes_axe()
{
    invite_a_client(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staff_member_signs_in_and_approves_staging_with_the_keyboard_javascript_off() {
    approve_with_the_keyboard(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staff_member_signs_in_and_approves_staging_with_the_keyboard_and_every_screen_passes_axe()
 {
    approve_with_the_keyboard(true).await;
}
