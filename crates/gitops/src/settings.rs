//! What the server's configuration tells the gitops deployer (`[deploy.gitops]` in
//! `gantry.toml`): where it keeps its clones, who it commits as, how hard it tries
//! when a push races another writer, and which credentials reach which repositories.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// `[deploy.gitops]`: the deployer's settings. Every field has a default.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GitopsSettings {
    /// The directory holding one clone per repository (and the deployer's git home,
    /// deploy keys and `known_hosts`). Each server process needs its own: two
    /// processes must not share one. The server defaults it to `gitops` under
    /// `[deploy] work_dir`.
    pub work_dir: Option<PathBuf>,
    /// The author and committer name of deployment commits.
    pub author_name: String,
    /// The author and committer email of deployment commits.
    pub author_email: String,
    /// How many times a deployment pushes before giving up when other writers keep
    /// moving the branch (each time after fetching and re-applying on the new head).
    pub max_push_attempts: u32,
    /// The longest one git call (a fetch, a push) may run.
    pub git_timeout_seconds: u64,
    /// Host keys trusted from the start (an OpenSSH `known_hosts` file); hosts not
    /// in it are trusted on first use and remembered under `work_dir`.
    pub ssh_known_hosts: Option<PathBuf>,
    /// Certificate authorities (a PEM file) trusted for https repositories instead of
    /// the system's, for git hosts behind a private CA.
    pub https_ca_file: Option<PathBuf>,
    /// Credentials by repository: `[[deploy.gitops.credentials]]` entries.
    pub credentials: Vec<GitCredential>,
    /// What git sees of the server's environment (only `PATH` is passed on; set by
    /// the server, never read from the file).
    #[serde(skip)]
    pub programs: deploy::ChildEnvironment,
}

impl Default for GitopsSettings {
    fn default() -> Self {
        GitopsSettings {
            work_dir: None,
            author_name: "Gantry".to_owned(),
            author_email: "gantry@localhost".to_owned(),
            max_push_attempts: GitopsSettings::DEFAULT_MAX_PUSH_ATTEMPTS,
            git_timeout_seconds: 300,
            ssh_known_hosts: None,
            https_ca_file: None,
            credentials: Vec::new(),
            programs: deploy::ChildEnvironment::default(),
        }
    }
}

impl GitopsSettings {
    pub const DEFAULT_MAX_PUSH_ATTEMPTS: u32 = 10;

    /// Settings with the defaults and `work_dir`.
    pub fn with_work_dir(work_dir: impl Into<PathBuf>) -> GitopsSettings {
        GitopsSettings {
            work_dir: Some(work_dir.into()),
            ..GitopsSettings::default()
        }
    }

    pub(crate) fn git_timeout(&self) -> Duration {
        Duration::from_secs(self.git_timeout_seconds.max(1))
    }
}

/// `[[deploy.gitops.credentials]]`: how to authenticate to the repositories it matches.
/// Secrets are named (files under the server's secrets directory), never written here.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitCredential {
    /// A host (`git.example.com`, or `host:port` for https) or the beginning of
    /// repository addresses (`https://git.example.com/acme/`, `git@github.com:acme/`).
    /// Of the entries matching a repository, the longest `match` is used.
    #[serde(rename = "match")]
    pub matches: String,
    /// The https user name sent with the token.
    pub username: Option<String>,
    /// The secret holding the https token or password.
    pub token_secret: Option<String>,
    /// The secret holding an ssh private key (a deploy key).
    pub ssh_key_secret: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_read_from_toml_fill_in_defaults() {
        let settings: GitopsSettings = serde_json::from_value(serde_json::json!({
            "work_dir": "/var/lib/gantry/gitops",
            "credentials": [
                {"match": "git.example.com", "username": "bot", "token_secret": "git/example"},
                {"match": "git@github.com:acme/", "ssh_key_secret": "git/acme-deploy-key"}
            ]
        }))
        .expect("settings");
        assert_eq!(
            settings.work_dir,
            Some(PathBuf::from("/var/lib/gantry/gitops"))
        );
        assert_eq!(settings.max_push_attempts, 10);
        assert_eq!(settings.author_name, "Gantry");
        assert_eq!(settings.credentials.len(), 2);
        assert_eq!(
            settings.credentials[1].ssh_key_secret.as_deref(),
            Some("git/acme-deploy-key")
        );
        let unknown = serde_json::from_value::<GitopsSettings>(serde_json::json!({"workdir": "x"}));
        assert!(unknown.is_err());
    }
}
