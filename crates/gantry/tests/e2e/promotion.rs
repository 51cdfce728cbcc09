//! A build's whole journey through the `gantry` command line against a real server:
//! CI pushes an image with skopeo and notifies, the dev stage deploys it at once,
//! people promote it through staging and prod behind approvals and a Trivy threshold,
//! nobody approves their own promotion, a clean scan opens the last gate, a later build
//! is rolled back, and the audit log of all of it verifies — until someone edits the
//! database.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use crate::support::{GantryServer, describe, make_image, run, skopeo};

/// dev deploys every build at once; staging needs a staff approval; prod needs a staff
/// and a client approval and a Trivy scan with no critical and no high finding.
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
      checks: [{ name: trivy, max: { critical: 0, high: 0 } }]
      approvals: [{ role: staff, count: 1 }, { role: client, count: 1 }]
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

/// `trivy image -f json` output with one HIGH vulnerability.
const TRIVY_WITH_A_HIGH_FINDING: &str = r#"{
  "SchemaVersion": 2,
  "ArtifactName": "acme/web-app",
  "ArtifactType": "container_image",
  "Results": [
    {
      "Target": "acme/web-app (debian 12.5)",
      "Class": "os-pkgs",
      "Type": "debian",
      "Vulnerabilities": [
        {
          "VulnerabilityID": "CVE-2024-0001",
          "PkgName": "openssl",
          "InstalledVersion": "3.0.11-1",
          "FixedVersion": "3.0.13-1",
          "Severity": "HIGH"
        },
        {
          "VulnerabilityID": "CVE-2024-0002",
          "PkgName": "zlib1g",
          "InstalledVersion": "1:1.2.13",
          "Severity": "LOW"
        }
      ]
    }
  ]
}"#;

/// The same scan after the fix: nothing found.
const TRIVY_CLEAN: &str = r#"{
  "SchemaVersion": 2,
  "ArtifactName": "acme/web-app",
  "ArtifactType": "container_image",
  "Results": [
    { "Target": "acme/web-app (debian 12.5)", "Class": "os-pkgs", "Type": "debian" }
  ]
}"#;

/// The exit codes the scenario relies on (see `gantry promote --help`).
const WAITING: i32 = 6;
const CONFLICT: i32 = 3;
const NOT_ALLOWED: i32 = 4;
const BROKEN_CHAIN: i32 = 5;

/// A server with the pipeline applied, people and a CI identity with tokens, and a
/// working directory (also `HOME`, so no login file of the machine is read).
struct Platform {
    server: GantryServer,
    dir: tempfile::TempDir,
    tokens: Vec<(&'static str, String)>,
}

impl Platform {
    fn start() -> Platform {
        let dir = tempfile::tempdir().expect("temporary directory");
        let server = GantryServer::start(dir.path(), &[], &[]);
        let mut platform = Platform {
            server,
            dir,
            tokens: Vec::new(),
        };
        platform.write("gantry.yaml", RESOURCES);
        platform.ok("admin", &["apply", "-f", "gantry.yaml"]);
        for (name, flags) in [
            ("ci-bot", &["--ci", "--role", "developer"][..]),
            ("dev-dana", &["--role", "developer"]),
            ("staff-sam", &["--role", "staff"]),
            ("client-cleo", &["--role", "client"]),
        ] {
            let created = platform.ok("admin", &[&["user", "create", name][..], flags].concat());
            assert!(
                created.starts_with(&format!("created {name} (")),
                "{created}"
            );
            let token = platform.ok("admin", &["token", "create", name]);
            platform.tokens.push((name, token.trim().to_owned()));
        }
        platform
    }

    fn path(&self) -> &Path {
        self.dir.path()
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

    /// `gantry ARGS…` as `user`.
    fn gantry(&self, user: &str, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_gantry"))
            .args(args)
            .current_dir(self.path())
            .env("HOME", self.path())
            .env("GANTRY_URL", format!("http://{}", self.server.address))
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
            "gantry {args:?} as {user}\n{}\nserver log:\n{}",
            describe(&output),
            self.server.log()
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// `gantry ARGS…` as `user`, which must succeed; its stdout.
    fn ok(&self, user: &str, args: &[&str]) -> String {
        self.expect(user, 0, args)
    }

    /// `gantry ARGS… -o json` as `user`, which must succeed; its JSON.
    fn json(&self, user: &str, args: &[&str]) -> Value {
        let out = self.ok(user, &[args, &["-o", "json"]].concat());
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?} -o json: {e}\n{out}"))
    }

    /// Builds an image (unique content) and pushes it as `acme/web-app:TAG` with the CI
    /// identity's own token (its developer role lets it push to the application's
    /// repository), as CI does; its manifest digest.
    fn push_image(&self, tag: &str) -> String {
        let layout = self.path().join(format!("image-{tag}"));
        let image = &make_image(&layout, &["--layers", "2x16K", "--tag", tag])[0];
        run(skopeo()
            .args([
                "copy",
                "--dest-tls-verify=false",
                "--dest-creds",
                &format!("ci-bot:{}", self.token("ci-bot")),
            ])
            .arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!(
                "docker://{}/acme/web-app:{tag}",
                self.server.address
            )));
        image["manifest"]
            .as_str()
            .expect("mkimage names the manifest digest")
            .to_owned()
    }

    /// The digest running in `environment` of web-app, and the whole environment.
    fn environment(&self, environment: &str) -> Value {
        let status = self.json("dev-dana", &["status", "web-app"]);
        status["environments"]
            .as_array()
            .expect("environments")
            .iter()
            .find(|e| e["name"] == environment)
            .cloned()
            .unwrap_or_else(|| panic!("no {environment} in {status:#}"))
    }

    fn running(&self, environment: &str) -> Value {
        self.environment(environment)["current"]["digest"].clone()
    }

    /// `gantry check report` as CI: a Trivy scan of `digest` from `report`.
    fn report_trivy(&self, digest: &str, report: &str) -> String {
        self.write("trivy.json", report);
        self.ok(
            "ci-bot",
            &[
                "check",
                "report",
                "--app",
                "web-app",
                "--digest",
                digest,
                "--name",
                "trivy",
                "--status",
                "passed",
                "--file",
                "trivy.json",
            ],
        )
    }

    /// `gantry build notify` as CI, for a run dev-dana triggered.
    fn notify(&self, digest: &str, commit: &str, run: &str) -> Value {
        self.json(
            "ci-bot",
            &[
                "build",
                "notify",
                "--app",
                "web-app",
                "--digest",
                digest,
                "--commit",
                commit,
                "--branch",
                "main",
                "--run",
                run,
                "--triggered-by",
                "dev-dana",
                "--committed-at",
                "2026-01-05T09:00:00Z",
            ],
        )
    }

    /// `gantry promote web-app --env ENV --digest D` as dev-dana, expecting `code`;
    /// the promotion's id and the table printed.
    fn promote(&self, environment: &str, digest: &str, code: i32) -> (i64, String) {
        let out = self.expect(
            "dev-dana",
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
        (promotion_id(&out), out)
    }

    fn promotion_state(&self, id: i64) -> Value {
        self.json("dev-dana", &["promotion", &id.to_string()])["state"].clone()
    }
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

/// The row of a condition in a promotion's table, e.g. `check trivy  ✗  …`.
fn condition_row<'a>(table: &'a str, label: &str) -> &'a str {
    table
        .lines()
        .find(|line| line.starts_with(label))
        .unwrap_or_else(|| panic!("no condition {label} in:\n{table}"))
}

/// Runs SQL against the server's SQLite database: with the `sqlite3` command line where
/// it is installed, else with Python's sqlite3 module. Its output.
fn sqlite(database: &Path, sql: &str) -> String {
    let output = match Command::new("sqlite3").arg(database).arg(sql).output() {
        Ok(output) => output,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let script = "import sqlite3, sys\n\
                          c = sqlite3.connect(sys.argv[1])\n\
                          for row in c.execute(sys.argv[2]): print('|'.join(map(str, row)))\n\
                          c.commit()";
            Command::new("python3")
                .args(["-c", script])
                .arg(database)
                .arg(sql)
                .output()
                .expect("python3 runs")
        }
        Err(error) => panic!("cannot run sqlite3: {error}"),
    };
    assert!(output.status.success(), "{sql}\n{}", describe(&output));
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

#[test]
fn a_build_moves_through_gates_approvals_and_scans_then_rolls_back_on_a_verifiable_record() {
    let platform = Platform::start();

    // CI pushes the first build and notifies: dev deploys it at once.
    let first = platform.push_image("v1");
    let notified = platform.notify(&first, "1111111aaaaaaabbbbbbbcccccccdddddddeeeee", "101");
    assert_eq!(notified["build"]["builder"], "ci-bot", "{notified:#}");
    assert_eq!(notified["promotion"]["environment"], "dev", "{notified:#}");
    assert_eq!(notified["promotion"]["state"], "deployed", "{notified:#}");
    assert_eq!(platform.running("dev"), first.as_str());
    assert_eq!(
        platform.environment("dev")["current"]["commit"],
        "1111111aaaaaaabbbbbbbcccccccdddddddeeeee"
    );

    // The scanner finds a HIGH vulnerability; the counts come from the report.
    let scanned = platform.report_trivy(&first, TRIVY_WITH_A_HIGH_FINDING);
    assert!(scanned.contains("high 1"), "{scanned}");
    assert!(scanned.contains("low 1"), "{scanned}");

    // Staging waits for a staff approval; its requester may not give it.
    let (staging, table) = platform.promote("staging", &first, WAITING);
    assert!(table.contains("waiting"), "{table}");
    assert!(
        condition_row(&table, "approval staff").contains('✗'),
        "{table}"
    );
    let refused = platform.gantry("dev-dana", &["approve", &staging.to_string()]);
    assert_eq!(
        refused.status.code(),
        Some(NOT_ALLOWED),
        "{}",
        describe(&refused)
    );
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("own promotion"),
        "{}",
        describe(&refused)
    );
    let approved = platform.ok("staff-sam", &["approve", &staging.to_string()]);
    assert!(approved.contains("deployed"), "{approved}");
    assert_eq!(platform.running("staging"), first.as_str());

    // Prod waits on both approvals and on the scan: the table says which and why.
    let (prod, table) = platform.promote("prod", &first, WAITING);
    let trivy = condition_row(&table, "check trivy");
    assert!(trivy.contains('✗'), "{table}");
    assert!(trivy.to_lowercase().contains("high"), "{table}");
    assert!(
        condition_row(&table, "approval staff").contains('✗'),
        "{table}"
    );
    platform.expect(
        "staff-sam",
        WAITING,
        &[
            "approve",
            &prod.to_string(),
            "--comment",
            "ok once the scan is clean",
        ],
    );
    let still = platform.expect("client-cleo", WAITING, &["approve", &prod.to_string()]);
    assert!(
        condition_row(&still, "approval client").contains('✓'),
        "{still}"
    );
    assert!(
        condition_row(&still, "check trivy").contains('✗'),
        "{still}"
    );
    assert!(still.contains("waiting: 1 of"), "{still}");

    // A clean scan arrives: the waiting promotion is evaluated again and deploys.
    let rescanned = platform.report_trivy(&first, TRIVY_CLEAN);
    assert!(rescanned.contains("high 0"), "{rescanned}");
    assert_eq!(platform.promotion_state(prod), "deployed");
    assert_eq!(platform.running("prod"), first.as_str());
    let shown = platform.ok("dev-dana", &["promotion", &prod.to_string()]);
    assert!(shown.contains("ok once the scan is clean"), "{shown}");

    // Nothing ran in prod before the first build: there is nothing to roll back to.
    let nothing = platform.gantry("dev-dana", &["rollback", "web-app", "--env", "prod"]);
    assert_eq!(
        nothing.status.code(),
        Some(CONFLICT),
        "{}",
        describe(&nothing)
    );

    // A second build goes the same way; a repeated promote with the same idempotency
    // key is the same promotion.
    let second = platform.push_image("v2");
    let notified = platform.notify(&second, "2222222aaaaaaabbbbbbbcccccccdddddddeeeee", "102");
    assert_eq!(notified["promotion"]["state"], "deployed", "{notified:#}");
    assert_eq!(platform.running("dev"), second.as_str());
    let keyed = [
        "promote",
        "web-app",
        "--env",
        "staging",
        "--digest",
        &second,
        "--idempotency-key",
        "release-102",
    ];
    let staging = promotion_id(&platform.expect("dev-dana", WAITING, &keyed));
    let again = platform.expect("dev-dana", WAITING, &keyed);
    assert_eq!(promotion_id(&again), staging, "{again}");
    assert!(again.contains("already existed"), "{again}");
    platform.ok("staff-sam", &["approve", &staging.to_string()]);
    platform.report_trivy(&second, TRIVY_CLEAN);
    let (prod, _) = platform.promote("prod", &second, WAITING);
    platform.expect("staff-sam", WAITING, &["approve", &prod.to_string()]);
    platform.ok("client-cleo", &["approve", &prod.to_string()]);
    assert_eq!(platform.running("prod"), second.as_str());

    // Roll prod back: the first build runs there again, and prod is held.
    let rolled = platform.json(
        "dev-dana",
        &[
            "rollback",
            "web-app",
            "--env",
            "prod",
            "--reason",
            "error rate up",
        ],
    );
    assert_eq!(rolled["digest"], first.as_str(), "{rolled:#}");
    assert_eq!(rolled["reason"], "rollback", "{rolled:#}");
    assert_eq!(platform.running("prod"), first.as_str());
    assert!(
        platform.environment("prod")["hold"].is_object(),
        "a rolled-back environment is held"
    );
    let status = platform.ok("dev-dana", &["status", "web-app"]);
    let prod_row = status
        .lines()
        .find(|line| line.starts_with("prod "))
        .unwrap_or_else(|| panic!("no prod row:\n{status}"));
    assert!(prod_row.contains("(rollback)"), "{status}");
    assert!(prod_row.contains("held by dev-dana"), "{status}");
    platform.ok("dev-dana", &["unhold", "web-app", "--env", "prod"]);
    assert!(platform.environment("prod")["hold"].is_null());

    let history = platform.json("dev-dana", &["history", "web-app", "--env", "prod"]);
    let reasons: Vec<&str> = history["deployments"]
        .as_array()
        .expect("deployments")
        .iter()
        .filter_map(|d| d["reason"].as_str())
        .collect();
    assert_eq!(
        reasons,
        ["rollback", "promotion", "promotion"],
        "{history:#}"
    );
    let artifact = platform.json("dev-dana", &["artifact", "web-app", &first]);
    assert_eq!(
        artifact["build"]["triggered_by"], "dev-dana",
        "{artifact:#}"
    );
    assert_eq!(
        artifact["checks"].as_array().map(Vec::len),
        Some(2),
        "{artifact:#}"
    );

    // Two promotions reached production and one was rolled back.
    let dora = platform.json("staff-sam", &["metrics", "--app", "web-app"]);
    assert_eq!(
        dora["applications"]["web-app"]["deployments"], 2,
        "{dora:#}"
    );
    assert_eq!(dora["applications"]["web-app"]["rollbacks"], 1, "{dora:#}");
    let table = platform.ok("staff-sam", &["metrics", "--app", "web-app"]);
    assert!(
        table.lines().any(|line| line.starts_with("web-app ")),
        "{table}"
    );

    // Tokens are listed without secrets; a revoked one stops working at once.
    let own = platform.json("ci-bot", &["token", "list"]);
    let tokens = own["tokens"].as_array().expect("tokens");
    assert_eq!(tokens.len(), 1, "{own}");
    assert_eq!(tokens[0]["active"], true);
    assert!(tokens[0]["last_used_at"].is_string(), "{own}");
    assert!(!own.to_string().contains(platform.token("ci-bot")));
    let id = tokens[0]["id"].as_str().expect("id").to_owned();
    let table = platform.ok("admin", &["token", "list", "ci-bot"]);
    assert!(table.contains(&id) && table.contains("active"), "{table}");
    platform.expect("dev-dana", NOT_ALLOWED, &["token", "revoke", &id]);
    let revoked = platform.ok("admin", &["token", "revoke", &id]);
    assert!(
        revoked.starts_with(&format!("revoked {id} of ci-bot")),
        "{revoked}"
    );
    platform.expect("ci-bot", NOT_ALLOWED, &["apps"]);

    // The record of all of it verifies, until someone edits an approval in the database.
    let intact = platform.ok("admin", &["audit", "verify"]);
    assert!(intact.starts_with("audit log intact"), "{intact}");
    let database = platform.path().join("gantry-data/gantry.db");
    let approval = sqlite(
        &database,
        "SELECT MIN(sequence) FROM audit_log WHERE actor = 'staff-sam'",
    );
    assert!(
        !approval.is_empty(),
        "staff-sam's approvals are in the audit log"
    );
    sqlite(
        &database,
        &format!("UPDATE audit_log SET actor = 'mallory' WHERE sequence = {approval}"),
    );
    let broken = platform.gantry("admin", &["audit", "verify"]);
    assert_eq!(
        broken.status.code(),
        Some(BROKEN_CHAIN),
        "{}",
        describe(&broken)
    );
    let verdict = String::from_utf8_lossy(&broken.stdout);
    assert!(
        verdict.contains(&format!("BROKEN at entry {approval}")),
        "{verdict}"
    );
}
