//! The `gantry` command line against a real server: `apply` (dry run, create,
//! unchanged, invalid files, wrong tokens) and `resources`, with the exit codes and
//! messages scripts and people rely on.

use std::path::Path;
use std::process::{Command, Output};

use crate::support::{GantryServer, describe, free_port};

/// A pipeline with approvals and a freeze window, and an application that uses it.
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
      approvals: [{ role: staff, count: 1 }, { role: client, count: 1 }]
      freeze: ["Fri 16:00 - Mon 08:00 Europe/London"]
---
kind: Application
name: web-app
type: container
repository: acme/web-app
pipeline: standard
environments:
  dev: { target: { record: {} } }
  staging: { target: { record: {} } }
  prod: { target: { registry-copy: { to: "prod-registry.example.com/acme/web-app" } } }
"#;

/// A running server and a working directory holding `gantry.yaml`; `HOME` points
/// into it, so no login file of the machine running the tests is read.
struct Session {
    server: GantryServer,
    dir: tempfile::TempDir,
}

impl Session {
    fn start() -> Session {
        let dir = tempfile::tempdir().expect("temporary directory");
        let server = GantryServer::start(dir.path(), &[], &[]);
        std::fs::write(dir.path().join("gantry.yaml"), RESOURCES).expect("write gantry.yaml");
        Session { server, dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `gantry ARGS…` with the server's URL and `token` in the environment.
    fn gantry_with_token(&self, token: Option<&str>, args: &[&str]) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_gantry"));
        command
            .args(args)
            .current_dir(self.path())
            .env("HOME", self.path())
            .env("GANTRY_URL", format!("http://{}", self.server.address))
            .env_remove("GANTRY_TOKEN");
        if let Some(token) = token {
            command.env("GANTRY_TOKEN", token);
        }
        command.output().expect("run the gantry binary")
    }

    /// `gantry ARGS…` as the admin.
    fn gantry(&self, args: &[&str]) -> Output {
        self.gantry_with_token(Some(self.server.token()), args)
    }

    /// `gantry ARGS…` as the admin, which must succeed; its stdout.
    fn gantry_ok(&self, args: &[&str]) -> String {
        let output = self.gantry(args);
        assert_eq!(
            exit_code(&output),
            0,
            "gantry {args:?}\n{}",
            describe(&output)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

fn exit_code(output: &Output) -> i32 {
    output.status.code().expect("gantry exited, not killed")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_dry_run_shows_both_resources_to_be_created_with_diffs_and_stores_nothing() {
    let session = Session::start();
    let out = session.gantry_ok(&["apply", "-f", "gantry.yaml", "--dry-run"]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.contains(&"would create  Pipeline/standard"), "{out}");
    assert!(
        lines.contains(&"would create  Application/web-app"),
        "{out}"
    );
    assert!(
        lines
            .iter()
            .any(|line| line.starts_with("    + ") && line.contains("standard")),
        "the diff is shown, indented:\n{out}"
    );
    assert_eq!(lines.last(), Some(&"dry run: nothing was changed"), "{out}");

    let listed = session.gantry_ok(&["resources", "pipelines"]);
    assert_eq!(listed, "no resources of this kind\n");
}

#[test]
fn an_apply_creates_the_resources_and_applying_again_leaves_them_unchanged() {
    let session = Session::start();
    let first = session.gantry_ok(&["apply", "-f", "gantry.yaml"]);
    assert_eq!(
        first,
        "created    Pipeline/standard  (revision 1)\n\
         created    Application/web-app  (revision 1)\n\
         created repository acme/web-app\n"
    );

    let second = session.gantry_ok(&["apply", "-f", "gantry.yaml"]);
    assert_eq!(
        second,
        "unchanged  Pipeline/standard  (revision 1)\n\
         unchanged  Application/web-app  (revision 1)\n"
    );

    let listed = session.gantry_ok(&["resources", "pipelines"]);
    let rows: Vec<Vec<&str>> = listed
        .lines()
        .map(|line| line.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0], ["NAME", "REVISION", "UPDATED"], "{listed}");
    assert_eq!(rows[1][..2], ["standard", "1"], "{listed}");

    let canonical = session.gantry_ok(&["resources", "pipelines", "standard"]);
    assert!(canonical.contains("Europe/London"), "{canonical}");
}

#[test]
fn json_output_is_the_servers_json() {
    let session = Session::start();
    let applied = session.gantry_ok(&["apply", "-f", "gantry.yaml", "-o", "json"]);
    let applied: serde_json::Value = serde_json::from_str(&applied).expect("apply -o json");
    assert_eq!(applied["dry_run"], false);
    assert_eq!(applied["resources"][0]["action"], "create");
    assert_eq!(applied["resources"][1]["name"], "web-app");
    assert_eq!(
        applied["created_repositories"],
        serde_json::json!(["acme/web-app"])
    );

    let listed = session.gantry_ok(&["resources", "applications", "-o", "json"]);
    let listed: serde_json::Value = serde_json::from_str(&listed).expect("resources -o json");
    let names: Vec<&str> = listed["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|item| item["name"].as_str())
        .collect();
    assert_eq!(names, ["web-app"]);
    assert_eq!(listed["items"][0]["revision"], 1);
}

#[test]
fn a_file_with_an_unknown_field_exits_2_naming_the_file_document_and_field() {
    let session = Session::start();
    let bad = RESOURCES.replace("    auto: true", "    auto: true\n    colour: blue");
    std::fs::write(session.path().join("bad.yaml"), bad).expect("write bad.yaml");
    let output = session.gantry(&["apply", "-f", "bad.yaml"]);
    assert_eq!(exit_code(&output), 2, "{}", describe(&output));
    let problem = stderr(&output)
        .lines()
        .find(|line| line.contains("colour"))
        .map(str::to_owned)
        .unwrap_or_else(|| {
            panic!(
                "the problem is on a line of its own:\n{}",
                describe(&output)
            )
        });
    assert!(problem.starts_with("bad.yaml:"), "{problem}");
    assert!(
        problem.contains(": document 1 (Pipeline `standard`), field stages[0]"),
        "{problem}"
    );

    let listed = session.gantry_ok(&["resources", "pipelines"]);
    assert_eq!(listed, "no resources of this kind\n", "nothing was applied");
}

#[test]
fn a_wrong_token_exits_4_and_says_how_to_pass_one() {
    let session = Session::start();
    for token in [Some("gnt_wrong"), None] {
        let output = session.gantry_with_token(token, &["apply", "-f", "gantry.yaml"]);
        assert_eq!(exit_code(&output), 4, "{}", describe(&output));
        assert!(
            stderr(&output).contains("set GANTRY_TOKEN or pass --token"),
            "{}",
            describe(&output)
        );
        assert!(
            !stderr(&output).contains("gnt_wrong"),
            "the token is never printed"
        );
    }
}

#[test]
fn the_token_is_read_from_the_login_file_when_none_is_given() {
    let session = Session::start();
    let config = session.path().join(".config/gantry");
    std::fs::create_dir_all(&config).expect("create ~/.config/gantry");
    std::fs::write(
        config.join("token"),
        format!("{}\n", session.server.token()),
    )
    .expect("write the login file");
    let output = session.gantry_with_token(None, &["apply", "-f", "gantry.yaml"]);
    assert_eq!(exit_code(&output), 0, "{}", describe(&output));
}

#[test]
fn an_unreachable_server_exits_1_naming_the_url_and_what_to_check() {
    let session = Session::start();
    let url = format!("http://127.0.0.1:{}", free_port());
    let output = session.gantry(&["resources", "pipelines", "--url", &url]);
    assert_eq!(exit_code(&output), 1, "{}", describe(&output));
    assert!(stderr(&output).contains(&url), "{}", describe(&output));
    assert!(
        stderr(&output).contains("GANTRY_URL"),
        "{}",
        describe(&output)
    );
}

#[test]
fn audit_verify_passes_on_an_untouched_log_and_names_an_entry_edited_in_the_database() {
    let session = Session::start();
    session.gantry_ok(&["apply", "-f", "gantry.yaml"]);
    let changed = RESOURCES.replace("count: 1 }]\n  - name: prod", "count: 2 }]\n  - name: prod");
    std::fs::write(session.path().join("gantry.yaml"), changed).expect("write gantry.yaml");
    session.gantry_ok(&["apply", "-f", "gantry.yaml"]);
    let intact = session.gantry_ok(&["audit", "verify"]);
    assert!(
        intact.starts_with("audit log intact: 6 entries"),
        "{intact}"
    );

    let exported = session.gantry_ok(&["audit", "export"]);
    let entries: Vec<serde_json::Value> = exported
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON Lines"))
        .collect();
    assert_eq!(
        entries.len(),
        6,
        "the admin, its token and the signing key, two creations and one update: {exported}"
    );
    assert!(
        entries[..3].iter().all(|e| e["actor"] == "gantry"),
        "the first start's admin, token and signing key, recorded as done by Gantry: {exported}"
    );
    assert_eq!(entries[2]["action"], "signing-key", "{exported}");
    assert!(
        entries[3..]
            .iter()
            .all(|e| e["action"] == "apply" && e["actor"] == "admin"),
        "{exported}"
    );
    session.gantry_ok(&["audit", "export", "-f", "audit.jsonl"]);
    let written = std::fs::read_to_string(session.path().join("audit.jsonl")).expect("export file");
    assert_eq!(written, exported, "--file writes the same lines");

    // Someone with access to the database rewrites who made the second change.
    let database = session.path().join("gantry-data/gantry.db");
    let edit = format!(
        "import sqlite3; c = sqlite3.connect({:?}); c.execute(\"UPDATE audit_log SET actor = 'mallory' WHERE sequence = 5\"); c.commit()",
        database.display().to_string()
    );
    let edited = Command::new("python3")
        .args(["-c", &edit])
        .output()
        .expect("python3 runs");
    assert!(edited.status.success(), "{}", describe(&edited));
    let broken = session.gantry(&["audit", "verify"]);
    assert_eq!(exit_code(&broken), 5, "{}", describe(&broken));
    let verdict = String::from_utf8_lossy(&broken.stdout);
    assert!(verdict.contains("BROKEN at entry 5"), "{verdict}");
}

/// Rewrites the audit log as someone with write access to the database but not to the
/// signing key would: entry `sequence`'s actor changed, and every later hash (and the
/// head) recomputed, so the plain chain still verifies.
fn rewrite_audit_log(database: &Path, sequence: i64) {
    let script = r#"
import hashlib, sqlite3, sys
def entry_hash(seq, at, actor, action, subject, payload, previous):
    h = hashlib.sha256()
    for part in (b"gantry-audit-v1", seq.to_bytes(8, "big", signed=True), at.to_bytes(8, "big", signed=True),
                 actor.encode(), action.encode(), subject.encode(), payload.encode(), previous.encode()):
        h.update(len(part).to_bytes(8, "big")); h.update(part)
    return h.hexdigest()
c = sqlite3.connect(sys.argv[1]); target = int(sys.argv[2])
c.execute("UPDATE audit_log SET actor = 'mallory' WHERE sequence = ?", (target,))
rows = c.execute("SELECT sequence, at, actor, action, subject, payload, previous_hash FROM audit_log WHERE sequence >= ? ORDER BY sequence", (target,)).fetchall()
previous = rows[0][6]
for seq, at, actor, action, subject, payload, _ in rows:
    digest = entry_hash(seq, at, actor, action, subject, payload, previous)
    c.execute("UPDATE audit_log SET previous_hash = ?, hash = ? WHERE sequence = ?", (previous, digest, seq))
    previous = digest
c.execute("UPDATE audit_head SET hash = ? WHERE id = 1", (previous,))
c.commit()
"#;
    let rewritten = Command::new("python3")
        .args(["-c", script])
        .arg(database)
        .arg(sequence.to_string())
        .output()
        .expect("python3 runs");
    assert!(rewritten.status.success(), "{}", describe(&rewritten));
}

#[test]
fn a_consistent_rewrite_of_the_audit_log_passes_the_plain_check_and_not_the_signed_checkpoints() {
    let session = Session::start();
    session.gantry_ok(&["apply", "-f", "gantry.yaml"]);
    let changed = RESOURCES.replace("count: 1 }]\n  - name: prod", "count: 2 }]\n  - name: prod");
    std::fs::write(session.path().join("gantry.yaml"), changed).expect("write gantry.yaml");
    session.gantry_ok(&["apply", "-f", "gantry.yaml"]);
    // The head signed now, the checkpoints kept elsewhere, the public keys exported.
    session.gantry_ok(&["audit", "checkpoints", "--now", "-f", "kept.jsonl"]);
    let kept = std::fs::read_to_string(session.path().join("kept.jsonl")).expect("checkpoints");
    let last: serde_json::Value =
        serde_json::from_str(kept.lines().last().expect("a checkpoint")).expect("JSON");
    assert_eq!(last["sequence"], 6, "{kept}");
    session.gantry_ok(&["keys", "export", "-f", "gantry.pub"]);
    let intact = session.gantry_ok(&["audit", "verify", "--key", "gantry.pub"]);
    assert!(
        intact.starts_with("audit log intact: 6 entries"),
        "{intact}"
    );
    assert!(intact.contains("the last at entry 6"), "{intact}");

    rewrite_audit_log(&session.path().join("gantry-data/gantry.db"), 5);
    // The hash chain alone cannot tell.
    let fooled = session.gantry_ok(&["audit", "verify"]);
    assert!(
        fooled.starts_with("audit log intact: 6 entries"),
        "{fooled}"
    );
    // The signed checkpoints can: the server's, and those kept elsewhere.
    for args in [
        vec!["audit", "verify", "--key", "gantry.pub"],
        vec![
            "audit",
            "verify",
            "--key",
            "gantry.pub",
            "--checkpoints",
            "kept.jsonl",
        ],
    ] {
        let caught = session.gantry(&args);
        assert_eq!(exit_code(&caught), 5, "{}", describe(&caught));
        // Named at the first checkpoint at or after the rewritten entry: 6 (signed
        // above), or 5 if the server's own periodic checkpoint fell there.
        let verdict = String::from_utf8_lossy(&caught.stdout);
        assert!(
            verdict.contains("BROKEN at entry 5") || verdict.contains("BROKEN at entry 6"),
            "{verdict}"
        );
        assert!(
            verdict.contains("no longer matches the checkpoint"),
            "{verdict}"
        );
    }
    // A checkpoint rewritten to match is not signed by the key.
    let database = session.path().join("gantry-data/gantry.db");
    let forge = format!(
        "import sqlite3; c = sqlite3.connect({:?}); h = c.execute('SELECT hash FROM audit_head').fetchone()[0]; c.execute('UPDATE audit_checkpoints SET hash = ? WHERE sequence = 6', (h,)); c.execute('DELETE FROM audit_checkpoints WHERE sequence < 6'); c.commit()",
        database.display().to_string()
    );
    let forged = Command::new("python3")
        .args(["-c", &forge])
        .output()
        .expect("python3 runs");
    assert!(forged.status.success(), "{}", describe(&forged));
    let caught = session.gantry(&["audit", "verify", "--key", "gantry.pub"]);
    assert_eq!(exit_code(&caught), 5, "{}", describe(&caught));
    assert!(
        String::from_utf8_lossy(&caught.stdout).contains("signature does not verify"),
        "{}",
        describe(&caught)
    );
}

#[test]
fn audit_commands_need_a_token() {
    let session = Session::start();
    let refused = session.gantry_with_token(None, &["audit", "verify"]);
    assert_eq!(exit_code(&refused), 4, "{}", describe(&refused));
}

#[test]
fn a_ci_token_reads_only_its_own_names_follow_one_grammar_and_release_repositories_are_not_declared()
 {
    let session = Session::start();
    session.gantry_ok(&["apply", "-f", "gantry.yaml"]);
    session.gantry_ok(&[
        "user",
        "create",
        "ci-bot",
        "--ci",
        "--role",
        "developer@web-app",
    ]);
    let ci_token = session.gantry_ok(&["token", "create", "ci-bot"]);
    let ci_token = ci_token.trim();

    // The CI identity's own token reads no status, promotion or resource.
    for args in [
        &["status", "web-app"][..],
        &["promotions"][..],
        &["resources", "applications"][..],
    ] {
        let refused = session.gantry_with_token(Some(ci_token), args);
        assert_eq!(exit_code(&refused), 4, "{args:?}: {}", describe(&refused));
    }

    // One grammar of user names, unique without regard to case.
    session.gantry_ok(&["user", "create", "staff2", "--role", "staff"]);
    let taken = session.gantry(&["user", "create", "Staff2", "--role", "staff"]);
    assert_eq!(exit_code(&taken), 3, "{}", describe(&taken));
    for name in [".", "..", "_underscore"] {
        let refused = session.gantry(&["user", "create", name]);
        assert_eq!(exit_code(&refused), 2, "{name}: {}", describe(&refused));
        assert!(
            stderr(&refused).contains("beginning with a letter or digit"),
            "{}",
            describe(&refused)
        );
    }

    // An application may not live in the release tier, nor share a repository.
    for (name, repository, reason) in [
        ("sneaky", "release/acme/web-app", "inside `release/`"),
        (
            "twin",
            "acme/web-app",
            "already the repository of application `web-app`",
        ),
    ] {
        let yaml = RESOURCES
            .split("---\n")
            .nth(1)
            .expect("the application")
            .replace("name: web-app", &format!("name: {name}"))
            .replace(
                "repository: acme/web-app",
                &format!("repository: {repository}"),
            );
        std::fs::write(session.path().join("bad.yaml"), yaml).expect("write");
        let refused = session.gantry(&["apply", "-f", "bad.yaml"]);
        assert_eq!(exit_code(&refused), 2, "{}", describe(&refused));
        assert!(stderr(&refused).contains(reason), "{}", describe(&refused));
    }
}
