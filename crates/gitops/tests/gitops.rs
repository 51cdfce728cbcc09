//! The gitops target against real git: bare repositories in temporary directories,
//! reached by path and by `file://`, with the deployer's own clones.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use deploy::{DeployContext, DeployError, DeployLog, Deployer, ObserveContext, Secrets};
use domain::application::{
    ConfigValue, EnvironmentSpec, GitBranch, GitRepository, GitopsTarget, ImageKeys, KeyPath,
    RepoFilePath, Target,
};
use domain::promotion::DeploymentReason;
use gitops::{GitopsDeployer, GitopsSettings};
use store::DeploymentOrder;

const VALUES: &str = r#"# Values for web-app in staging.
# Managed by hand, except for the keys Gantry writes.

replicaCount:   2      # scaled by the platform team

image:
   repository: "registry.example.com/acme/web-app"   # quoted on purpose
   reference: registry.example.com/acme/web-app@sha256:1111111111111111111111111111111111111111111111111111111111111111
   pullPolicy: IfNotPresent

ports: [80, 443]          # flow sequence
env: {LOG_LEVEL: info, FEATURE_X: "false"}

resources:
  limits: {cpu: 500m, memory: 256Mi}


# trailing notes stay where they are
"#;

fn digest(n: u32) -> String {
    format!("sha256:{n:064x}")
}

fn image(n: u32) -> String {
    format!("gantry.example.com/acme/web-app@{}", digest(n))
}

/// Runs git for the test's own setup and checks, with a fixed identity and no
/// user configuration.
fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env_remove("GIT_DIR")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Someone Else")
        .env("GIT_AUTHOR_EMAIL", "someone@example.com")
        .env("GIT_COMMITTER_NAME", "Someone Else")
        .env("GIT_COMMITTER_EMAIL", "someone@example.com")
        .output()
        .unwrap_or_else(|error| panic!("git must be installed to run these tests: {error}"));
    assert!(
        output.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A bare repository (refusing non-fast-forward pushes) seeded with files, and a
/// clone of it for the test to look at and to write to as "another writer".
struct Upstream {
    _dir: tempfile::TempDir,
    root: PathBuf,
    bare: PathBuf,
    clone: PathBuf,
}

impl Upstream {
    fn new(files: &[(&str, &str)]) -> Upstream {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().to_path_buf();
        let bare = root.join("upstream.git");
        std::fs::create_dir_all(&bare).expect("bare dir");
        git(&bare, &["init", "-q", "--bare", "--initial-branch=main"]);
        git(&bare, &["config", "receive.denyNonFastForwards", "true"]);
        git(&bare, &["config", "receive.denyDeletes", "true"]);
        let seed = root.join("seed");
        std::fs::create_dir_all(&seed).expect("seed dir");
        git(&seed, &["init", "-q", "--initial-branch=main"]);
        for (path, content) in files {
            let path = seed.join(path);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("dirs");
            std::fs::write(path, content).expect("file");
        }
        git(&seed, &["add", "-A"]);
        git(&seed, &["commit", "-q", "-m", "Initial layout"]);
        git(
            &seed,
            &["remote", "add", "origin", &bare.display().to_string()],
        );
        git(&seed, &["push", "-q", "origin", "main"]);
        let clone = root.join("observer");
        git(
            &root,
            &["clone", "-q", &bare.display().to_string(), "observer"],
        );
        Upstream {
            _dir: dir,
            root,
            bare,
            clone,
        }
    }

    fn path(&self) -> String {
        self.bare.display().to_string()
    }

    /// The observer clone, fetched up to date; returns the head of `main`.
    fn refresh(&self) -> String {
        git(&self.clone, &["fetch", "-q", "origin"]);
        git(&self.clone, &["reset", "-q", "--hard", "origin/main"]);
        self.head()
    }

    fn head(&self) -> String {
        git(&self.bare, &["rev-parse", "main"]).trim().to_owned()
    }

    fn commit_count(&self) -> usize {
        git(&self.bare, &["rev-list", "--count", "main"])
            .trim()
            .parse()
            .expect("a count")
    }

    fn file_at_head(&self, path: &str) -> String {
        git(&self.bare, &["show", &format!("main:{path}")])
    }

    /// Commits `content` to `path` as another writer and pushes it.
    fn hand_edit(&self, path: &str, content: &str) {
        self.refresh();
        std::fs::write(self.clone.join(path), content).expect("edit");
        git(&self.clone, &["commit", "-q", "-am", "Hand edit"]);
        git(&self.clone, &["push", "-q", "origin", "HEAD:main"]);
    }
}

/// What git sees of this process's environment, as the server hands it down.
fn programs() -> deploy::ChildEnvironment {
    deploy::ChildEnvironment::inherited(|name| std::env::var_os(name))
}

fn deployer(work_dir: &Path, max_push_attempts: u32) -> GitopsDeployer {
    let settings = GitopsSettings {
        author_name: "Gantry Bot".to_owned(),
        author_email: "gantry@example.com".to_owned(),
        max_push_attempts,
        programs: programs(),
        ..GitopsSettings::with_work_dir(work_dir)
    };
    GitopsDeployer::new(
        settings,
        Secrets::new(None),
        Arc::new(outbound::Policy::default()),
    )
    .expect("a deployer")
}

fn key(text: &str) -> KeyPath {
    KeyPath::parse(text).expect("key path")
}

fn target(repo: &str, file: &str, image: ImageKeys) -> GitopsTarget {
    GitopsTarget {
        repo: GitRepository::parse(repo).expect("repository"),
        branch: None,
        file: RepoFilePath::parse(file).expect("file"),
        image,
    }
}

/// One deployment order with its environment, as the deploy worker would hand it over.
struct Job {
    order: DeploymentOrder,
    environment: EnvironmentSpec,
    image: String,
    approvers: Vec<String>,
    log: DeployLog,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
}

impl Job {
    fn new(deployment_id: i64, n: u32, target: GitopsTarget) -> Job {
        let (log, lines) = DeployLog::channel();
        Job {
            order: DeploymentOrder {
                deployment_id,
                application: "web-app".to_owned(),
                environment: "staging".to_owned(),
                digest: digest(n),
                config: None,
                target: "gitops".to_owned(),
                reason: DeploymentReason::Promotion,
                promotion_id: Some(deployment_id + 1000),
                requested_by: "alice".to_owned(),
                tag: Some(format!("sha-{n:07}")),
            },
            environment: EnvironmentSpec {
                target: Target::Gitops(target),
                health_check: None,
                auto_rollback: false,
                require_attestation: false,
                config: BTreeMap::new(),
            },
            image: image(n),
            approvers: vec!["bob".to_owned(), "carol".to_owned()],
            log,
            lines,
        }
    }

    async fn run(&self, deployer: &GitopsDeployer) -> Result<String, DeployError> {
        let context = DeployContext {
            order: &self.order,
            environment: &self.environment,
            image: &self.image,
            repository: "acme/web-app",
            approvers: &self.approvers,
            attempt: 1,
            log: &self.log,
        };
        deployer.deploy(&context).await
    }

    fn log_lines(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        while let Ok(line) = self.lines.try_recv() {
            lines.push(line);
        }
        lines
    }
}

/// The commit a note names (`committed SHA to …`).
fn committed(note: &str) -> String {
    note.strip_prefix("committed ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("`{note}` names no commit"))
        .to_owned()
}

async fn observe(deployer: &GitopsDeployer, job: &Job) -> Result<Option<String>, String> {
    deployer
        .observe(&ObserveContext {
            application: "web-app",
            environment: "staging",
            spec: &job.environment,
            repository: "acme/web-app",
        })
        .await
}

#[tokio::test]
async fn a_deployment_changes_only_the_image_line_and_keeps_comments_and_formatting() {
    let upstream = Upstream::new(&[
        ("apps/web-app/values.yaml", VALUES),
        ("README.md", "infra\n"),
    ]);
    let work = tempfile::tempdir().expect("work dir");
    let deployer = deployer(work.path(), 10);
    let mut job = Job::new(
        42,
        7,
        target(
            &upstream.path(),
            "apps/web-app/values.yaml",
            ImageKeys::Reference(key("image.reference")),
        ),
    );

    let note = job.run(&deployer).await.expect("deployed");

    let commit = committed(&note);
    assert_eq!(
        note,
        format!("committed {commit} to main of {}", upstream.path())
    );
    assert_eq!(upstream.head(), commit);
    assert_eq!(upstream.commit_count(), 2);
    let diff = git(
        &upstream.bare,
        &["show", "--format=", "--unified=0", &commit],
    );
    assert_eq!(
        diff,
        format!(
            "diff --git a/apps/web-app/values.yaml b/apps/web-app/values.yaml\n\
             index {}\n\
             --- a/apps/web-app/values.yaml\n\
             +++ b/apps/web-app/values.yaml\n\
             @@ -8 +8 @@ image:\n\
             -   reference: registry.example.com/acme/web-app@sha256:1111111111111111111111111111111111111111111111111111111111111111\n\
             +   reference: {}\n",
            diff.lines()
                .nth(1)
                .and_then(|l| l.strip_prefix("index "))
                .expect("index line"),
            image(7)
        )
    );
    assert_eq!(
        upstream.file_at_head("apps/web-app/values.yaml"),
        VALUES.replace(
            "registry.example.com/acme/web-app@sha256:1111111111111111111111111111111111111111111111111111111111111111",
            &image(7)
        )
    );
    let lines = job.log_lines();
    assert!(
        lines.iter().any(|l| l.starts_with("main is at ")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l == &format!("pushed {commit} to main")),
        "{lines:?}"
    );
}

#[tokio::test]
async fn config_keys_in_flow_mappings_and_commented_lines_change_alone() {
    let upstream = Upstream::new(&[("values.yaml", VALUES)]);
    let work = tempfile::tempdir().expect("work dir");
    let deployer = deployer(work.path(), 10);
    let mut job = Job::new(
        12,
        8,
        target(
            &upstream.path(),
            "values.yaml",
            ImageKeys::Reference(key("image.reference")),
        ),
    );
    job.environment.config = BTreeMap::from([
        (key("replicaCount"), ConfigValue::Integer(3)),
        (
            key("env.LOG_LEVEL"),
            ConfigValue::String("debug".to_owned()),
        ),
        (key("env.FEATURE_X"), ConfigValue::String("true".to_owned())),
        (
            key("resources.limits.memory"),
            ConfigValue::String("512Mi".to_owned()),
        ),
    ]);

    let commit = committed(&job.run(&deployer).await.expect("deployed"));

    let diff = git(
        &upstream.bare,
        &["show", "--format=", "--unified=0", &commit],
    );
    let hunks: Vec<&str> = diff.lines().skip(4).collect();
    assert_eq!(
        hunks,
        [
            "@@ -4 +4 @@",
            "-replicaCount:   2      # scaled by the platform team",
            "+replicaCount:   3      # scaled by the platform team",
            "@@ -8 +8 @@ image:",
            "-   reference: registry.example.com/acme/web-app@sha256:1111111111111111111111111111111111111111111111111111111111111111",
            &format!("+   reference: {}", image(8)),
            "@@ -12 +12 @@ ports: [80, 443]          # flow sequence",
            "-env: {LOG_LEVEL: info, FEATURE_X: \"false\"}",
            "+env: {LOG_LEVEL: debug, FEATURE_X: \"true\"}",
            "@@ -15 +15 @@ resources:",
            "-  limits: {cpu: 500m, memory: 256Mi}",
            "+  limits: {cpu: 500m, memory: 512Mi}",
        ]
    );
}

#[tokio::test]
async fn split_keys_receive_repository_the_build_tag_and_digest() {
    let values =
        "image:\n  repository: old/repo # from the chart\n  tag: \"v1.2.3\"\n  digest: ''\n";
    let upstream = Upstream::new(&[("values.yaml", values)]);
    let work = tempfile::tempdir().expect("work dir");
    let deployer = deployer(work.path(), 10);
    let job = Job::new(
        3,
        9,
        target(
            &format!("file://{}", upstream.path()),
            "values.yaml",
            ImageKeys::Split {
                repository: Some(key("image.repository")),
                tag: Some(key("image.tag")),
                digest: key("image.digest"),
            },
        ),
    );

    job.run(&deployer).await.expect("deployed");

    assert_eq!(
        upstream.file_at_head("values.yaml"),
        format!(
            "image:\n  repository: gantry.example.com/acme/web-app # from the chart\n  tag: \"sha-0000009\"\n  digest: '{0}'\n",
            digest(9)
        )
    );
}

#[tokio::test]
async fn a_tag_key_without_a_known_build_tag_fails_the_deployment_and_changes_nothing() {
    let values = "image:\n  tag: \"v1.2.3\"\n  digest: ''\n";
    let upstream = Upstream::new(&[("values.yaml", values)]);
    let work = tempfile::tempdir().expect("work dir");
    let deployer = deployer(work.path(), 10);
    let mut job = Job::new(
        3,
        9,
        target(
            &format!("file://{}", upstream.path()),
            "values.yaml",
            ImageKeys::Split {
                repository: None,
                tag: Some(key("image.tag")),
                digest: key("image.digest"),
            },
        ),
    );
    job.order.tag = None;

    let error = job.run(&deployer).await.expect_err("refused");

    assert!(!error.is_transient(), "{error}");
    assert!(error.message().contains("--tag"), "{error}");
    assert_eq!(upstream.file_at_head("values.yaml"), values);
}

#[tokio::test]
async fn config_keys_from_the_environment_and_the_release_bundle_keep_their_types() {
    let values = "\
image: old@sha256:00 # pinned by Gantry
replicas: 2
features:
  beta: false   # off until launch
log:
  level: 'info'
";
    let upstream = Upstream::new(&[("values.yaml", values)]);
    let work = tempfile::tempdir().expect("work dir");
    let deployer = deployer(work.path(), 10);
    let mut job = Job::new(
        5,
        1,
        target(
            &upstream.path(),
            "values.yaml",
            ImageKeys::Reference(key("image")),
        ),
    );
    job.environment.config = BTreeMap::from([
        (key("replicas"), ConfigValue::Integer(3)),
        (key("features.beta"), ConfigValue::Boolean(true)),
        (key("log.level"), ConfigValue::String("warn".to_owned())),
    ]);
    job.order.config = Some(
        r#"{"replicas":"5","log.level":"debug","limits.memory":"512Mi","limits.count":10}"#
            .to_owned(),
    );

    job.run(&deployer).await.expect("deployed");

    assert_eq!(
        upstream.file_at_head("values.yaml"),
        format!(
            "\
image: {} # pinned by Gantry
replicas: 5
features:
  beta: true   # off until launch
log:
  level: 'debug'
limits:
  count: 10
  memory: 512Mi
",
            image(1)
        )
    );
}

#[tokio::test]
async fn the_commit_names_application_environment_digest_promotion_and_approvers() {
    let upstream = Upstream::new(&[("values.yaml", "image: none\n")]);
    let work = tempfile::tempdir().expect("work dir");
    let deployer = deployer(work.path(), 10);
    let job = Job::new(
        42,
        4,
        target(
            &upstream.path(),
            "values.yaml",
            ImageKeys::Reference(key("image")),
        ),
    );

    let commit = committed(&job.run(&deployer).await.expect("deployed"));

    let message = git(&upstream.bare, &["log", "-1", "--format=%B", &commit]);
    assert_eq!(
        message,
        format!(
            "Deploy web-app {short} to staging\n\
             \n\
             Promotion 1042 of {image} into web-app/staging, requested by alice, approved by bob, carol.\n\
             \n\
             values.yaml:\n  \
             image = {image}\n\
             \n\
             Gantry-Application: web-app\n\
             Gantry-Environment: staging\n\
             Gantry-Digest: {digest}\n\
             Gantry-Deployment: 42\n\
             Gantry-Promotion: 1042\n\
             Gantry-Requested-By: alice\n\
             Gantry-Approved-By: bob\n\
             Gantry-Approved-By: carol\n\n",
            short = &format!("{:064x}", 4)[..12],
            image = image(4),
            digest = digest(4),
        )
    );
    let trailers = git(
        &upstream.bare,
        &["log", "-1", "--format=%(trailers:only,unfold)", &commit],
    );
    assert_eq!(
        trailers,
        format!(
            "Gantry-Application: web-app\nGantry-Environment: staging\nGantry-Digest: {}\nGantry-Deployment: 42\nGantry-Promotion: 1042\nGantry-Requested-By: alice\nGantry-Approved-By: bob\nGantry-Approved-By: carol\n\n",
            digest(4)
        )
    );
    assert_eq!(
        git(
            &upstream.bare,
            &["log", "-1", "--format=%an <%ae>|%cn <%ce>", &commit]
        )
        .trim(),
        "Gantry Bot <gantry@example.com>|Gantry Bot <gantry@example.com>"
    );
}

#[tokio::test]
async fn running_a_finished_deployment_again_makes_no_second_commit() {
    let upstream = Upstream::new(&[("values.yaml", "image: none\n")]);
    let work = tempfile::tempdir().expect("work dir");
    let deployer = deployer(work.path(), 10);
    let job = Job::new(
        8,
        2,
        target(
            &upstream.path(),
            "values.yaml",
            ImageKeys::Reference(key("image")),
        ),
    );
    let commit = committed(&job.run(&deployer).await.expect("deployed"));

    let again = job.run(&deployer).await.expect("ran again");
    // After a crash the job may land on another replica, with a clone of its own.
    let other_work = tempfile::tempdir().expect("work dir");
    let elsewhere = job
        .run(&self::deployer(other_work.path(), 10))
        .await
        .expect("ran elsewhere");

    for note in [&again, &elsewhere] {
        assert_eq!(
            note,
            &format!(
                "values.yaml already holds {} at {commit} on main of {}; no new commit",
                digest(2),
                upstream.path()
            )
        );
    }
    assert_eq!(upstream.head(), commit);
    assert_eq!(upstream.commit_count(), 2);
}

/// Another writer's commit, ready in its own clone, replacing `values.yaml` with
/// `content`; the bare repository's hook pushes it while the next push is being
/// received, so that push finds the branch moved. Returns the file that exists once
/// the race happened.
fn race_on_next_push(upstream: &Upstream, content: &str) -> PathBuf {
    let writer = upstream.root.join("writer");
    git(&upstream.root, &["clone", "-q", &upstream.path(), "writer"]);
    std::fs::write(writer.join("values.yaml"), content).expect("edit");
    git(&writer, &["commit", "-q", "-am", "Scale to 4"]);
    let marker = upstream.root.join("raced");
    install_hook(
        upstream,
        &format!(
            "if [ ! -e '{marker}' ]; then\n  touch '{marker}'\n  unset $(git rev-parse --local-env-vars) GIT_QUARANTINE_PATH GIT_PUSH_OPTION_COUNT\n  git -C '{writer}' push -q origin HEAD:main || exit 1\nfi\nexit 0\n",
            marker = marker.display(),
            writer = writer.display()
        ),
    );
    marker
}

/// Installs `body` as the bare repository's pre-receive hook.
fn install_hook(upstream: &Upstream, body: &str) {
    let hook = upstream.bare.join("hooks/pre-receive");
    std::fs::write(&hook, format!("#!/bin/sh\ncat >/dev/null\n{body}")).expect("hook");
    std::fs::set_permissions(
        &hook,
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755),
    )
    .expect("executable hook");
}

#[tokio::test]
async fn a_push_that_loses_a_race_is_applied_again_on_the_new_head() {
    let values = "replicas: 2\nimage: none\n";
    let upstream = Upstream::new(&[("values.yaml", values)]);
    let marker = race_on_next_push(&upstream, "replicas: 4\nimage: none\n");
    let work = tempfile::tempdir().expect("work dir");
    let deployer = deployer(work.path(), 10);
    let mut job = Job::new(
        11,
        6,
        target(
            &upstream.path(),
            "values.yaml",
            ImageKeys::Reference(key("image")),
        ),
    );

    let commit = committed(&job.run(&deployer).await.expect("deployed"));

    assert!(
        marker.exists(),
        "the other writer pushed during Gantry's push"
    );
    let lines = job.log_lines();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("push 1 of 10 lost a race")),
        "{lines:?}"
    );
    assert_eq!(upstream.head(), commit);
    let history = git(&upstream.bare, &["log", "--format=%s", "main"]);
    assert_eq!(
        history,
        format!(
            "Deploy web-app {} to staging\nScale to 4\nInitial layout\n",
            &format!("{:064x}", 6)[..12]
        )
    );
    assert_eq!(
        upstream.file_at_head("values.yaml"),
        format!("replicas: 4\nimage: {}\n", image(6))
    );
}

#[tokio::test]
async fn losing_every_allowed_push_race_is_transient() {
    let upstream = Upstream::new(&[("values.yaml", "replicas: 2\nimage: none\n")]);
    let marker = race_on_next_push(&upstream, "replicas: 4\nimage: none\n");
    let work = tempfile::tempdir().expect("work dir");
    let deployer = deployer(work.path(), 1);
    let job = Job::new(
        13,
        6,
        target(
            &upstream.path(),
            "values.yaml",
            ImageKeys::Reference(key("image")),
        ),
    );

    match job.run(&deployer).await {
        Err(DeployError::Transient(message)) => {
            assert!(
                message.contains("gave up after 1 push attempts"),
                "{message}"
            );
        }
        other => panic!("expected a transient failure, got {other:?}"),
    }
    assert!(marker.exists());
    assert_eq!(
        upstream.file_at_head("values.yaml"),
        "replicas: 4\nimage: none\n"
    );
    // The job is retried later and lands on the new head.
    let commit = committed(&job.run(&deployer).await.expect("deployed on retry"));
    assert_eq!(upstream.head(), commit);
    assert_eq!(
        upstream.file_at_head("values.yaml"),
        format!("replicas: 4\nimage: {}\n", image(6))
    );
}

#[tokio::test]
async fn a_push_the_remote_refuses_fails_with_its_reason() {
    let upstream = Upstream::new(&[("values.yaml", "image: none\n")]);
    install_hook(
        &upstream,
        "echo 'main is protected: open a merge request' >&2\nexit 1\n",
    );
    let before = upstream.head();
    let work = tempfile::tempdir().expect("work dir");
    let deployer = deployer(work.path(), 10);
    let mut job = Job::new(
        14,
        6,
        target(
            &upstream.path(),
            "values.yaml",
            ImageKeys::Reference(key("image")),
        ),
    );

    match job.run(&deployer).await {
        Err(DeployError::Failed(message)) => {
            assert!(message.contains("main is protected"), "{message}");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    assert_eq!(upstream.head(), before);
    let lines = job.log_lines();
    assert!(
        lines.iter().any(|l| l.contains("main is protected")),
        "{lines:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_deployments_from_two_replicas_lose_no_update() {
    let upstream = Upstream::new(&[("values.yaml", VALUES)]);
    git(&upstream.bare, &["config", "core.logAllRefUpdates", "true"]);
    let work = tempfile::tempdir().expect("work dirs");
    // Each job can lose a race only to a push of another job, so twenty attempts
    // bound the worst case for twenty jobs.
    let replicas = [
        Arc::new(deployer(&work.path().join("replica-a"), 20)),
        Arc::new(deployer(&work.path().join("replica-b"), 20)),
    ];
    let mut tasks = Vec::new();
    for id in 1..=20_i64 {
        let deployer = replicas[usize::try_from(id % 2).expect("index")].clone();
        let job = Job::new(
            id,
            u32::try_from(100 + id).expect("small"),
            target(
                &upstream.path(),
                "values.yaml",
                ImageKeys::Reference(key("image.reference")),
            ),
        );
        tasks.push(tokio::spawn(async move {
            let mut job = job;
            let outcome = job.run(&deployer).await;
            (id, outcome, job.log_lines())
        }));
    }
    let mut commits = BTreeMap::new();
    let mut races = 0;
    for task in tasks {
        let (id, outcome, lines) = task.await.expect("task");
        let note = outcome.unwrap_or_else(|error| panic!("deployment {id}: {error}"));
        commits.insert(id, committed(&note));
        races += lines
            .iter()
            .filter(|line| line.contains("lost a race"))
            .count();
    }
    eprintln!("{races} pushes lost a race and were applied again");

    let head = upstream.head();
    assert_eq!(upstream.commit_count(), 21, "one commit per deployment");
    assert_eq!(
        git(&upstream.bare, &["rev-list", "--merges", "main"]),
        "",
        "linear history"
    );
    assert_eq!(
        commits.values().collect::<BTreeSet<_>>().len(),
        20,
        "every deployment made its own commit"
    );
    for (id, commit) in &commits {
        git(
            &upstream.bare,
            &["merge-base", "--is-ancestor", commit, &head],
        );
        let message = git(&upstream.bare, &["log", "-1", "--format=%B", commit]);
        assert!(
            message.contains(&format!("\nGantry-Deployment: {id}\n")),
            "{commit} names deployment {id}: {message}"
        );
    }
    let mut named: Vec<i64> = git(
        &upstream.bare,
        &[
            "log",
            "--format=%(trailers:key=Gantry-Deployment,valueonly)",
            "main",
        ],
    )
    .lines()
    .filter(|line| !line.is_empty())
    .map(|line| line.parse().expect("a deployment id"))
    .collect();
    named.sort_unstable();
    assert_eq!(named, (1..=20).collect::<Vec<_>>());
    // The value at the head is the one its last commit wrote.
    let last_id: i64 = git(
        &upstream.bare,
        &[
            "log",
            "-1",
            "--format=%(trailers:key=Gantry-Deployment,valueonly)",
            "main",
        ],
    )
    .trim()
    .parse()
    .expect("an id");
    assert_eq!(
        upstream.file_at_head("values.yaml"),
        VALUES.replace(
            "registry.example.com/acme/web-app@sha256:1111111111111111111111111111111111111111111111111111111111111111",
            &image(u32::try_from(100 + last_id).expect("small"))
        )
    );
    // Every update of the branch moved it forward from where it was.
    let reflog = git(
        &upstream.bare,
        &["reflog", "show", "--format=%H", "refs/heads/main"],
    );
    let updates: Vec<&str> = reflog.lines().collect();
    assert_eq!(updates.len(), 20, "{reflog}");
    for pair in updates.windows(2) {
        assert_eq!(
            git(&upstream.bare, &["rev-parse", &format!("{}^", pair[0])]).trim(),
            pair[1]
        );
    }
}

#[tokio::test]
async fn files_outside_the_repository_proper_are_refused() {
    let upstream = Upstream::new(&[("apps/values.yaml", "image: none\n")]);
    git(&upstream.clone, &["pull", "-q"]);
    std::os::unix::fs::symlink("apps/values.yaml", upstream.clone.join("linked.yaml"))
        .expect("link");
    std::os::unix::fs::symlink("apps", upstream.clone.join("linked-apps")).expect("link");
    git(&upstream.clone, &["add", "linked.yaml", "linked-apps"]);
    git(&upstream.clone, &["commit", "-q", "-m", "Links"]);
    git(&upstream.clone, &["push", "-q", "origin", "HEAD:main"]);
    let before = upstream.head();
    let work = tempfile::tempdir().expect("work dir");
    let deployer = deployer(work.path(), 10);

    for (file, fragment) in [
        (".git/config", "inside a `.git` directory"),
        (".Git/HEAD", "inside a `.git` directory"),
        ("linked.yaml", "is a symbolic link"),
        (
            "linked-apps/values.yaml",
            "runs through a symbolic link (`linked-apps`)",
        ),
        ("apps/missing.yaml", "does not exist"),
    ] {
        let job = Job::new(
            1,
            1,
            target(&upstream.path(), file, ImageKeys::Reference(key("image"))),
        );
        match job.run(&deployer).await {
            Err(DeployError::Failed(message)) => {
                assert!(message.contains(fragment), "{file}: {message}");
            }
            other => panic!("{file}: expected a refusal, got {other:?}"),
        }
    }
    assert_eq!(upstream.head(), before, "nothing was pushed");
}

#[tokio::test]
async fn yaml_that_cannot_take_the_values_fails_for_good() {
    let upstream = Upstream::new(&[
        ("broken.yaml", "image: [unclosed\n"),
        ("scalar.yaml", "image: nginx:latest\n"),
    ]);
    let work = tempfile::tempdir().expect("work dir");
    let deployer = deployer(work.path(), 10);
    for (file, fragment) in [
        ("broken.yaml", "not valid YAML"),
        ("scalar.yaml", "runs through `image`, which holds a scalar"),
    ] {
        let job = Job::new(
            1,
            1,
            target(
                &upstream.path(),
                file,
                ImageKeys::Reference(key("image.reference")),
            ),
        );
        match job.run(&deployer).await {
            Err(DeployError::Failed(message)) => {
                assert!(message.contains(fragment), "{file}: {message}");
            }
            other => panic!("{file}: expected a failure, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_missing_branch_fails_and_an_unreachable_host_is_transient() {
    let upstream = Upstream::new(&[("values.yaml", "image: none\n")]);
    let work = tempfile::tempdir().expect("work dir");
    let deployer = deployer(work.path(), 10);
    let mut on_branch = target(
        &upstream.path(),
        "values.yaml",
        ImageKeys::Reference(key("image")),
    );
    on_branch.branch = Some(GitBranch::parse("release").expect("branch"));
    match Job::new(1, 1, on_branch).run(&deployer).await {
        Err(DeployError::Failed(message)) => {
            assert!(message.contains("no branch `release`"), "{message}");
        }
        other => panic!("expected a failure, got {other:?}"),
    }

    // Nothing listens on port 9 of the loopback interface, which the policy allows.
    let settings = GitopsSettings::with_work_dir(work.path().join("https"));
    let allowing = GitopsDeployer::new(
        settings,
        Secrets::new(None),
        Arc::new(outbound::Policy::parse(&["127.0.0.1".to_owned()]).expect("policy")),
    )
    .expect("a deployer");
    let job = Job::new(
        1,
        1,
        target(
            "https://127.0.0.1:9/acme/infra.git",
            "values.yaml",
            ImageKeys::Reference(key("image")),
        ),
    );
    match job.run(&allowing).await {
        Err(DeployError::Transient(message)) => {
            assert!(message.to_lowercase().contains("connect"), "{message}");
        }
        other => panic!("expected a transient failure, got {other:?}"),
    }
    // Without the allow-list the loopback host is refused before git runs.
    match job.run(&deployer).await {
        Err(DeployError::Failed(message)) => {
            assert!(message.contains("loopback"), "{message}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn observe_reads_the_digest_at_the_head_and_sees_hand_edits() {
    let upstream = Upstream::new(&[("values.yaml", "image:\n  digest: \"\"\n  ref: none\n")]);
    let work = tempfile::tempdir().expect("work dir");
    let deployer = deployer(work.path(), 10);
    let by_reference = Job::new(
        1,
        5,
        target(
            &upstream.path(),
            "values.yaml",
            ImageKeys::Reference(key("image.ref")),
        ),
    );
    let by_digest = Job::new(
        2,
        5,
        target(
            &upstream.path(),
            "values.yaml",
            ImageKeys::Split {
                repository: None,
                tag: None,
                digest: key("image.digest"),
            },
        ),
    );
    assert_eq!(
        observe(&deployer, &by_digest).await,
        Ok(None),
        "nothing deployed yet"
    );
    assert!(
        observe(&deployer, &by_reference).await.is_err(),
        "`none` names no digest"
    );

    by_reference.run(&deployer).await.expect("deployed");
    by_digest.run(&deployer).await.expect("deployed");
    assert_eq!(observe(&deployer, &by_reference).await, Ok(Some(digest(5))));
    assert_eq!(observe(&deployer, &by_digest).await, Ok(Some(digest(5))));

    upstream.hand_edit(
        "values.yaml",
        &format!("image:\n  digest: \"{}\"\n  ref: {}\n", digest(6), image(7)),
    );
    assert_eq!(observe(&deployer, &by_reference).await, Ok(Some(digest(7))));
    assert_eq!(observe(&deployer, &by_digest).await, Ok(Some(digest(6))));
}

/// `git http-backend` behind TLS and Basic authentication, serving the repositories
/// under `root` on a port of 127.0.0.1 (python3 and openssl must be installed).
struct HttpsServer {
    child: std::process::Child,
    port: u16,
    certificate: PathBuf,
}

impl HttpsServer {
    fn start(root: &Path, authorization: &str) -> HttpsServer {
        let tls = root.join("tls");
        std::fs::create_dir_all(&tls).expect("tls dir");
        let certificate = tls.join("cert.pem");
        let status = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=localhost"])
            .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
            .arg("-keyout")
            .arg(tls.join("key.pem"))
            .arg("-out")
            .arg(&certificate)
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap_or_else(|error| {
                panic!("openssl must be installed for the https tests: {error}")
            });
        assert!(status.success(), "openssl could not make a certificate");
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/git_https_server.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(root)
            .arg(&certificate)
            .arg(tls.join("key.pem"))
            .arg(authorization)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|error| {
                panic!("python3 must be installed for the https tests: {error}")
            });
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
            .expect("the server's port");
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("the https server did not start: {line:?}"));
        HttpsServer {
            child,
            port,
            certificate,
        }
    }
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every file under `dir`, read as bytes.
fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("dir") {
            let entry = entry.expect("entry");
            let kind = entry.file_type().expect("type");
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() {
                files.push((entry.path(), std::fs::read(entry.path()).expect("read")));
            }
        }
    }
    files
}

#[tokio::test]
async fn https_repositories_get_the_token_from_a_secret_and_never_store_it() {
    use base64::Engine;

    let upstream = Upstream::new(&[("values.yaml", "image: none # set by Gantry\n")]);
    let secrets = tempfile::tempdir().expect("secrets");
    std::fs::create_dir_all(secrets.path().join("git")).expect("secrets dir");
    std::fs::write(secrets.path().join("git/token"), "t0ken-Zq81\n").expect("token");
    std::fs::write(secrets.path().join("git/stale"), "expired\n").expect("token");
    let basic = base64::engine::general_purpose::STANDARD.encode("bot:t0ken-Zq81");
    let server = HttpsServer::start(&upstream.root, &format!("Basic {basic}"));
    let repository = format!("https://localhost:{}/upstream.git", server.port);
    let work = tempfile::tempdir().expect("work dir");
    let deployer_with = |work_dir: PathBuf, secret: &str| {
        GitopsDeployer::new(
            GitopsSettings {
                https_ca_file: Some(server.certificate.clone()),
                credentials: vec![gitops::GitCredential {
                    matches: format!("https://localhost:{}/", server.port),
                    username: Some("bot".to_owned()),
                    token_secret: Some(secret.to_owned()),
                    ssh_key_secret: None,
                }],
                programs: programs(),
                ..GitopsSettings::with_work_dir(work_dir)
            },
            Secrets::new(Some(secrets.path().to_path_buf())),
            Arc::new(
                outbound::Policy::parse(&["127.0.0.1".to_owned(), "::1".to_owned()])
                    .expect("policy"),
            ),
        )
        .expect("a deployer")
    };
    let deployer = deployer_with(work.path().join("good"), "git/token");
    let job = Job::new(
        21,
        3,
        target(
            &repository,
            "values.yaml",
            ImageKeys::Reference(key("image")),
        ),
    );

    let note = job.run(&deployer).await.expect("deployed over https");

    let commit = committed(&note);
    assert_eq!(note, format!("committed {commit} to main of {repository}"));
    assert_eq!(upstream.head(), commit);
    assert_eq!(
        upstream.file_at_head("values.yaml"),
        format!("image: {} # set by Gantry\n", image(3))
    );
    assert_eq!(observe(&deployer, &job).await, Ok(Some(digest(3))));
    for (path, bytes) in files_under(work.path()) {
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains("t0ken-Zq81") && !text.contains(&basic),
            "{} holds the token",
            path.display()
        );
    }

    let refused = deployer_with(work.path().join("stale"), "git/stale");
    match Job::new(
        22,
        4,
        target(
            &repository,
            "values.yaml",
            ImageKeys::Reference(key("image")),
        ),
    )
    .run(&refused)
    .await
    {
        Err(DeployError::Failed(message)) => {
            assert!(message.contains("refused the credentials"), "{message}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(upstream.head(), commit);
}
