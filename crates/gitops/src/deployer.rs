//! [`GitopsDeployer`]: one deployment is one commit. Each repository has a clone under
//! the work directory, used by one job at a time in this process. A job fetches the
//! branch, resets the clone to its head, sets the image and config keys in the file,
//! commits and pushes without force; when another writer moved the branch in
//! between, it starts again from the new head (bounded, with jitter). A job whose
//! values the file already holds commits nothing, so a job run again after a crash
//! finds its own commit and reports it instead of making a second one.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deploy::{
    DeployContext, DeployError, DeployFuture, DeployLog, Deployer, ObserveContext, ObserveFuture,
    Secrets,
};
use domain::application::{ConfigValue, GitopsTarget, ImageKeys, KeyPath, SecretRef, Target};
use sha2::{Digest, Sha256};

use crate::edit::{self, Assignment};
use crate::git::{Git, GitError};
use crate::message::commit_message;
use crate::paths::checked_file;
use crate::remote::{self, Access, Remote};
use crate::settings::GitopsSettings;

/// Why the deployer could not be set up from its settings.
#[derive(Debug, thiserror::Error)]
pub enum GitopsSetupError {
    #[error("gitops: {0}")]
    Invalid(String),
    #[error("gitops: cannot prepare the work directory {path}: {source}")]
    WorkDir {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The `gitops` target. Cheap to share (`Arc`); one per server process, each with its
/// own work directory.
pub struct GitopsDeployer {
    settings: GitopsSettings,
    /// `settings.work_dir`, made absolute.
    work_dir: PathBuf,
    secrets: Secrets,
    outbound: Arc<outbound::Policy>,
    git: Git,
    /// One lock per clone: a clone's working tree serves one job at a time.
    clones: Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>,
}

impl std::fmt::Debug for GitopsDeployer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitopsDeployer")
            .field("work_dir", &self.work_dir)
            .finish_non_exhaustive()
    }
}

/// A clone, checked out at the head of the branch, ready for one job.
struct Checkout {
    dir: PathBuf,
    git: Git,
    branch: String,
    head: String,
}

impl GitopsDeployer {
    /// A deployer keeping its clones under `settings.work_dir` (created if missing),
    /// reading credentials from `secrets`, and reaching https hosts only where
    /// `outbound` allows.
    pub fn new(
        mut settings: GitopsSettings,
        secrets: Secrets,
        outbound: Arc<outbound::Policy>,
    ) -> Result<GitopsDeployer, GitopsSetupError> {
        if settings.max_push_attempts == 0 {
            return Err(GitopsSetupError::Invalid(
                "max_push_attempts must be at least 1".to_owned(),
            ));
        }
        for (field, value) in [
            ("author_name", &settings.author_name),
            ("author_email", &settings.author_email),
        ] {
            if value.trim().is_empty() || value.chars().any(|c| c.is_control() || "<>".contains(c))
            {
                return Err(GitopsSetupError::Invalid(format!(
                    "{field} `{value}` cannot name a git author"
                )));
            }
        }
        for credential in &settings.credentials {
            if credential.matches.trim().is_empty() {
                return Err(GitopsSetupError::Invalid(
                    "a credential has an empty `match`".to_owned(),
                ));
            }
            for secret in [&credential.token_secret, &credential.ssh_key_secret]
                .into_iter()
                .flatten()
            {
                SecretRef::parse(secret).map_err(|error| {
                    GitopsSetupError::Invalid(format!(
                        "credential `{}`: {error}",
                        credential.matches
                    ))
                })?;
            }
            if credential.token_secret.is_some() != credential.username.is_some() {
                return Err(GitopsSetupError::Invalid(format!(
                    "credential `{}`: an https token needs a `username`, and a `username` a `token_secret`",
                    credential.matches
                )));
            }
            if credential.token_secret.is_none() && credential.ssh_key_secret.is_none() {
                return Err(GitopsSetupError::Invalid(format!(
                    "credential `{}` names no secret (`token_secret` or `ssh_key_secret`)",
                    credential.matches
                )));
            }
        }
        let configured = settings
            .work_dir
            .clone()
            .ok_or_else(|| GitopsSetupError::Invalid("work_dir is not set".to_owned()))?;
        let work_dir =
            std::path::absolute(&configured).map_err(|source| GitopsSetupError::WorkDir {
                path: configured.clone(),
                source,
            })?;
        for dir in [
            work_dir.join("home/.config"),
            work_dir.join("ssh"),
            work_dir.join("repos"),
        ] {
            std::fs::create_dir_all(&dir)
                .map_err(|source| GitopsSetupError::WorkDir { path: dir, source })?;
        }
        settings.work_dir = Some(work_dir.clone());
        let mut git = Git::new(
            work_dir.join("home"),
            settings.git_timeout(),
            settings.author_name.clone(),
            settings.author_email.clone(),
        );
        // Of the server's environment git sees only where programs are.
        for (name, value) in settings.programs.only(&["PATH"]) {
            git = git.with_variable(name, value);
        }
        Ok(GitopsDeployer {
            settings,
            work_dir,
            secrets,
            outbound,
            git,
            clones: Mutex::new(HashMap::new()),
        })
    }

    /// Where the clone of `remote` is kept.
    fn clone_dir(&self, remote: &Remote) -> PathBuf {
        let name = hex::encode(&Sha256::digest(remote.git_url().as_bytes())[..10]);
        self.work_dir.join("repos").join(name)
    }

    fn clone_lock(&self, dir: &Path) -> Arc<tokio::sync::Mutex<()>> {
        let mut clones = self
            .clones
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        clones.entry(dir.to_path_buf()).or_default().clone()
    }

    /// Brings the clone of `target`'s repository to the head of its branch. The
    /// caller holds the clone's lock.
    async fn checkout(
        &self,
        target: &GitopsTarget,
        remote: &Remote,
        dir: &Path,
        log: &DeployLog,
    ) -> Result<Checkout, DeployError> {
        let access = Access {
            secrets: &self.secrets,
            policy: &self.outbound,
            ssh_dir: &self.work_dir.join("ssh"),
            ssh_known_hosts: self.settings.ssh_known_hosts.as_deref(),
            https_ca_file: self.settings.https_ca_file.as_deref(),
        };
        let credential = remote.credential(&self.settings.credentials);
        let git = remote::prepare(self.git.clone(), remote, credential, &access).await?;
        prepare_clone(&git, remote, dir).await?;
        let branch = match &target.branch {
            Some(branch) => branch.as_str().to_owned(),
            None => {
                let branch = default_branch(&git, dir).await?;
                log.line(format!("the repository's default branch is {branch}"));
                branch
            }
        };
        let head = fetch(&git, dir, &branch).await?;
        run(&git, dir, &["checkout", "-q", "--force", "--detach", &head]).await?;
        run(&git, dir, &["clean", "-q", "-ffdx"]).await?;
        Ok(Checkout {
            dir: dir.to_path_buf(),
            git,
            branch,
            head,
        })
    }

    async fn deploy_job(&self, job: &DeployContext<'_>) -> Result<String, DeployError> {
        let Target::Gitops(target) = &job.environment.target else {
            return Err(DeployError::Failed(
                "the environment's target is not gitops".to_owned(),
            ));
        };
        let remote = Remote::parse(target.repo.as_str()).map_err(DeployError::Failed)?;
        let assignments = assignments(job, target)?;
        let shown = remote.git_url();
        let file = target.file.as_str();
        let dir = self.clone_dir(&remote);
        let lock = self.clone_lock(&dir);
        let _clone = lock.lock().await;
        job.log.line(format!("fetching {shown}"));
        let message = commit_message(job, file, &assignments);
        let attempts = self.settings.max_push_attempts;
        for attempt in 1..=attempts {
            let checkout = self.checkout(target, &remote, &dir, job.log).await?;
            let (branch, head) = (&checkout.branch, &checkout.head);
            job.log.line(format!("{branch} is at {head}"));
            let path = checked_file(&dir, &target.file).map_err(DeployError::Failed)?;
            let text = std::fs::read_to_string(&path).map_err(|error| {
                DeployError::Failed(format!("cannot read {file} at {head}: {error}"))
            })?;
            let edited = edit::apply(&text, &assignments)
                .map_err(|error| DeployError::Failed(format!("{file} at {head}: {error}")))?;
            if edited == text {
                job.log.line(format!(
                    "{file} already holds these values at {head}: nothing to commit"
                ));
                return Ok(format!(
                    "{file} already holds {} at {head} on {branch} of {shown}; no new commit",
                    job.order.digest
                ));
            }
            std::fs::write(&path, &edited).map_err(|error| {
                DeployError::Transient(format!("cannot write {file} in the clone: {error}"))
            })?;
            job.log.line(format!(
                "set {} in {file}",
                assignments
                    .iter()
                    .map(|a| a.key.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            let git = &checkout.git;
            run(git, &dir, &["--literal-pathspecs", "add", "--", file]).await?;
            git.run_with_input(
                &dir,
                &["commit", "-q", "--no-verify", "-F", "-"],
                Some(&message),
            )
            .await
            .map_err(classify)?;
            let commit = rev_parse(git, &dir, "HEAD").await?;
            job.log.line(format!("committed {commit}"));
            let refspec = format!("HEAD:refs/heads/{branch}");
            match git
                .run(
                    &dir,
                    &["push", "--porcelain", "--no-verify", "origin", &refspec],
                )
                .await
            {
                Ok(_) => {
                    tracing::info!(
                        repository = %shown,
                        %branch,
                        %commit,
                        deployment = job.order.deployment_id,
                        "gitops commit pushed"
                    );
                    job.log.line(format!("pushed {commit} to {branch}"));
                    return Ok(format!("committed {commit} to {branch} of {shown}"));
                }
                Err(push_error) => {
                    let now = fetch(git, &dir, branch).await?;
                    if now == commit {
                        // The push landed though its answer was lost.
                        job.log.line(format!("pushed {commit} to {branch}"));
                        return Ok(format!("committed {commit} to {branch} of {shown}"));
                    }
                    if now == *head {
                        return Err(classify(push_error));
                    }
                    tracing::info!(
                        repository = %shown,
                        %branch,
                        attempt,
                        deployment = job.order.deployment_id,
                        "gitops push lost a race with another writer; applying again"
                    );
                    job.log.line(format!(
                        "push {attempt} of {attempts} lost a race: {branch} moved from {head} to {now}; applying again on the new head"
                    ));
                    if attempt < attempts {
                        tokio::time::sleep(jitter(attempt)).await;
                    }
                }
            }
        }
        Err(DeployError::Transient(format!(
            "{shown}: other writers kept moving the branch; gave up after {attempts} push attempts"
        )))
    }

    async fn observe_target(&self, context: &ObserveContext<'_>) -> Result<Option<String>, String> {
        let Target::Gitops(target) = &context.spec.target else {
            return Ok(None);
        };
        let remote = Remote::parse(target.repo.as_str())?;
        let dir = self.clone_dir(&remote);
        let lock = self.clone_lock(&dir);
        let _clone = lock.lock().await;
        let checkout = self
            .checkout(target, &remote, &dir, &DeployLog::discard())
            .await
            .map_err(|error| error.message().to_owned())?;
        let path = checked_file(&checkout.dir, &target.file)?;
        let text = std::fs::read_to_string(&path)
            .map_err(|error| format!("cannot read {}: {error}", target.file))?;
        let file = target.file.as_str();
        let read = |key: &KeyPath| {
            edit::read(&text, key).map_err(|error| {
                format!(
                    "{file} at {} of {}: {error}",
                    checkout.head, checkout.branch
                )
            })
        };
        let (key, value) = match &target.image {
            ImageKeys::Reference(key) => {
                let value = read(key)?;
                let digest = value.as_deref().map(|reference| {
                    reference
                        .rsplit_once('@')
                        .map_or("", |(_, digest)| digest)
                        .to_owned()
                });
                (
                    key,
                    digest.map(|digest| (digest, value.unwrap_or_default())),
                )
            }
            ImageKeys::Split { digest, .. } => {
                let value = read(digest)?;
                (digest, value.map(|value| (value.clone(), value)))
            }
        };
        match value {
            None => Ok(None),
            Some((_, written)) if written.trim().is_empty() => Ok(None),
            Some((digest, _)) if is_digest(&digest) => Ok(Some(digest)),
            Some((_, written)) => Err(format!(
                "{file}: `{}` holds `{written}`, which names no image digest",
                key.as_str()
            )),
        }
    }
}

impl Deployer for GitopsDeployer {
    fn kind(&self) -> &'static str {
        "gitops"
    }

    fn deploy<'a>(&'a self, job: &'a DeployContext<'a>) -> DeployFuture<'a> {
        Box::pin(async move {
            let outcome = self.deploy_job(job).await;
            if let Err(error) = &outcome {
                job.log.line(error.message());
            }
            outcome
        })
    }

    fn observe<'a>(&'a self, target: &'a ObserveContext<'a>) -> ObserveFuture<'a> {
        Box::pin(self.observe_target(target))
    }
}

/// `algorithm:hex`, as image digests are written.
fn is_digest(text: &str) -> bool {
    text.split_once(':').is_some_and(|(algorithm, hex)| {
        !algorithm.is_empty()
            && algorithm
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b))
            && hex.len() >= 32
            && hex.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

/// The keys a job sets: the environment's config, overridden by the promotion's
/// release bundle, then the image keys (which no config key may also name).
fn assignments(
    job: &DeployContext<'_>,
    target: &GitopsTarget,
) -> Result<Vec<Assignment>, DeployError> {
    let mut config: BTreeMap<KeyPath, ConfigValue> = job.environment.config.clone();
    if let Some(text) = &job.order.config {
        let values: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text)
            .map_err(|error| {
                DeployError::Failed(format!("the release bundle is not a JSON object: {error}"))
            })?;
        for (key, value) in values {
            let path = KeyPath::parse(&key).map_err(|error| {
                DeployError::Failed(format!("release bundle key `{key}`: {error}"))
            })?;
            let value = match value {
                serde_json::Value::String(text) => ConfigValue::String(text),
                serde_json::Value::Bool(flag) => ConfigValue::Boolean(flag),
                serde_json::Value::Number(number) => match number.as_i64() {
                    Some(number) => ConfigValue::Integer(number),
                    None => {
                        return Err(DeployError::Failed(format!(
                            "release bundle key `{key}`: {number} is not an integer (write it as a string)"
                        )));
                    }
                },
                other => {
                    return Err(DeployError::Failed(format!(
                        "release bundle key `{key}`: {other} is not a string, integer or boolean"
                    )));
                }
            };
            config.insert(path, value);
        }
    }
    let (repository, digest) = job
        .image
        .rsplit_once('@')
        .unwrap_or((job.image, job.order.digest.as_str()));
    let image = |key: &KeyPath, value: &str| Assignment {
        key: key.clone(),
        value: ConfigValue::String(value.to_owned()),
    };
    let images = match &target.image {
        ImageKeys::Reference(key) => vec![image(key, job.image)],
        ImageKeys::Split {
            repository: repository_key,
            tag: tag_key,
            digest: digest_key,
        } => {
            let tag = match (tag_key, job.order.tag.as_deref()) {
                (None, _) => None,
                (Some(key), Some(tag)) => Some(image(key, tag)),
                (Some(key), None) => {
                    return Err(DeployError::Failed(format!(
                        "`keys.tag` ({}) wants the tag {} was pushed under, and none is known: push it under a tag before notifying, or name it with `gantry build notify --tag`",
                        key.as_str(),
                        job.order.digest
                    )));
                }
            };
            repository_key
                .iter()
                .map(|key| image(key, repository))
                .chain(tag)
                .chain([image(digest_key, digest)])
                .collect()
        }
    };
    for assignment in &images {
        if config.contains_key(&assignment.key) {
            return Err(DeployError::Failed(format!(
                "config key `{}` is also where the image is written",
                assignment.key.as_str()
            )));
        }
    }
    Ok(images
        .into_iter()
        .chain(
            config
                .into_iter()
                .map(|(key, value)| Assignment { key, value }),
        )
        .collect())
}

/// A usable clone at `dir` with `origin` pointing at `remote`: made if missing (in a
/// staging directory renamed into place, so a crash never leaves half a clone), and
/// without the lock files a git killed mid-call leaves behind (this process holds the
/// clone's lock, and no other process uses its work directory).
async fn prepare_clone(git: &Git, remote: &Remote, dir: &Path) -> Result<(), DeployError> {
    let io = |error: std::io::Error| {
        DeployError::Transient(format!(
            "cannot prepare the clone {}: {error}",
            dir.display()
        ))
    };
    if !dir.join(".git").is_dir() {
        let staging = dir.with_extension("new");
        if staging.exists() {
            std::fs::remove_dir_all(&staging).map_err(io)?;
        }
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(io)?;
        }
        std::fs::create_dir_all(&staging).map_err(io)?;
        run(git, &staging, &["init", "-q"]).await?;
        run(
            git,
            &staging,
            &["remote", "add", "origin", &remote.git_url()],
        )
        .await?;
        std::fs::rename(&staging, dir).map_err(io)?;
        return Ok(());
    }
    remove_stale_locks(&dir.join(".git")).map_err(io)?;
    run(
        git,
        dir,
        &["remote", "set-url", "origin", &remote.git_url()],
    )
    .await?;
    Ok(())
}

/// Removes `*.lock` files in git's directory and under its refs.
fn remove_stale_locks(git_dir: &Path) -> std::io::Result<()> {
    let mut pending = vec![git_dir.to_path_buf(), git_dir.join("refs")];
    let mut top = true;
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let entry = entry?;
            let kind = entry.file_type()?;
            let name = entry.file_name();
            if kind.is_file() && name.to_string_lossy().ends_with(".lock") {
                std::fs::remove_file(entry.path())?;
            } else if kind.is_dir() && !top {
                pending.push(entry.path());
            }
        }
        top = false;
    }
    Ok(())
}

/// The branch the remote's `HEAD` points at.
async fn default_branch(git: &Git, dir: &Path) -> Result<String, DeployError> {
    let output = run(git, dir, &["ls-remote", "--symref", "origin", "HEAD"]).await?;
    output
        .lines()
        .find_map(|line| {
            line.strip_prefix("ref: refs/heads/")
                .and_then(|rest| rest.split_once('\t'))
                .filter(|(_, name)| *name == "HEAD")
                .map(|(branch, _)| branch.to_owned())
        })
        .ok_or_else(|| {
            DeployError::Failed(
                "the repository has no default branch (is it empty?); name one with `branch`"
                    .to_owned(),
            )
        })
}

/// Fetches `branch` and returns the commit it is at.
async fn fetch(git: &Git, dir: &Path, branch: &str) -> Result<String, DeployError> {
    let refspec = format!("+refs/heads/{branch}:refs/remotes/origin/{branch}");
    match git
        .run(
            dir,
            &[
                "fetch",
                "-q",
                "--no-tags",
                "--no-write-fetch-head",
                "origin",
                &refspec,
            ],
        )
        .await
    {
        Ok(_) => {}
        Err(error) if error.stderr().contains("couldn't find remote ref") => {
            return Err(DeployError::Failed(format!(
                "the repository has no branch `{branch}`"
            )));
        }
        Err(error) => return Err(classify(error)),
    }
    rev_parse(git, dir, &format!("refs/remotes/origin/{branch}")).await
}

async fn rev_parse(git: &Git, dir: &Path, name: &str) -> Result<String, DeployError> {
    let revision = format!("{name}^{{commit}}");
    let output = run(git, dir, &["rev-parse", "--verify", "-q", &revision]).await?;
    Ok(output.trim().to_owned())
}

/// Runs git and returns its stdout, with failures classified.
async fn run(git: &Git, dir: &Path, args: &[&str]) -> Result<String, DeployError> {
    git.run(dir, args).await.map_err(classify)
}

fn classify(error: GitError) -> DeployError {
    if error.is_authentication() {
        DeployError::Failed(format!(
            "the repository refused the credentials (or got none): check the server's [deploy.gitops] credentials matching it and the secret they name; {error}"
        ))
    } else if error.is_transient() {
        DeployError::Transient(error.to_string())
    } else {
        DeployError::Failed(error.to_string())
    }
}

/// A pause before pushing again, growing with the attempt and spread at random so
/// writers that collided do not collide again in step.
fn jitter(attempt: u32) -> Duration {
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let base = 25 * u64::from(attempt.min(8));
    Duration::from_millis(base + random % (base * 2 + 25))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_algorithm_and_hex() {
        assert!(is_digest(&format!("sha256:{}", "ab".repeat(32))));
        assert!(!is_digest("sha256:"));
        assert!(!is_digest("latest"));
        assert!(!is_digest(&format!("sha256:{}", "zz".repeat(32))));
    }

    #[test]
    fn jitter_grows_and_stays_bounded() {
        for attempt in 1..20 {
            let pause = jitter(attempt);
            let base = 25 * u64::from(attempt.min(8));
            assert!(pause >= Duration::from_millis(base));
            assert!(pause < Duration::from_millis(base * 3 + 25));
        }
    }
}
