//! The `git` command line, run the one way the deployer needs it: nothing inherited
//! from the server's environment (no `GIT_*` variables, no system or user config, no
//! credential helpers, no prompts, no hooks), a home directory the deployer owns, the
//! committer named explicitly, a time limit after which the whole process group is
//! killed, and stderr kept for the error.
//!
//! Settings that hold secrets (an `Authorization` header) reach git through
//! `GIT_CONFIG_COUNT`/`GIT_CONFIG_KEY_n`/`GIT_CONFIG_VALUE_n` in its environment, never
//! on its command line, which any local user can read.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The most git may print on stdout (a file it shows, a listing) before the call
/// fails rather than hold more.
const MAX_STDOUT_BYTES: usize = 64 << 20;

/// How much of git's stderr an error keeps (the end of it).
const STDERR_TAIL_BYTES: usize = 4 * 1024;

/// One way of running git: environment, config and time limit.
#[derive(Clone)]
pub(crate) struct Git {
    home: PathBuf,
    timeout: Duration,
    author_name: String,
    author_email: String,
    /// `(key, value)` config given to every call through the environment.
    config: Vec<(String, String)>,
    /// Other variables (`GIT_SSH_COMMAND`, `GIT_ALLOW_PROTOCOL`).
    variables: Vec<(String, OsString)>,
}

impl fmt::Debug for Git {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Config values may hold credentials: only their keys are shown.
        f.debug_struct("Git")
            .field("home", &self.home)
            .field("timeout", &self.timeout)
            .field(
                "config",
                &self.config.iter().map(|(key, _)| key).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// Why a git call did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum GitError {
    #[error("cannot run git ({0}); is it installed and on PATH?")]
    Spawn(String),
    #[error("`git {command}` did not finish within {seconds}s and was stopped")]
    TimedOut { command: String, seconds: u64 },
    #[error("`git {command}` failed ({status}): {stderr}")]
    Exited {
        command: String,
        status: String,
        stderr: String,
    },
}

impl GitError {
    /// Whether trying again later may succeed: the network, a lock held by another
    /// process, a remote that answered 5xx, a call that ran out of time.
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            GitError::Spawn(_) => false,
            GitError::TimedOut { .. } => true,
            GitError::Exited { stderr, .. } => transient_stderr(stderr),
        }
    }

    /// Whether the remote asked for credentials it did not get, or refused them.
    pub(crate) fn is_authentication(&self) -> bool {
        let stderr = self.stderr().to_ascii_lowercase();
        [
            "could not read username",
            "could not read password",
            "authentication failed",
            "permission denied (publickey",
        ]
        .iter()
        .any(|pattern| stderr.contains(pattern))
    }

    /// What git wrote to stderr (empty when it did not run).
    pub(crate) fn stderr(&self) -> &str {
        match self {
            GitError::Exited { stderr, .. } => stderr,
            GitError::Spawn(_) | GitError::TimedOut { .. } => "",
        }
    }
}

/// Messages of failures that are about the moment, not the request.
fn transient_stderr(stderr: &str) -> bool {
    const PATTERNS: [&str; 22] = [
        "could not resolve host",
        "temporary failure in name resolution",
        "connection refused",
        "connection timed out",
        "connection reset",
        "operation timed out",
        "failed to connect",
        "couldn't connect to server",
        "network is unreachable",
        "no route to host",
        "early eof",
        "the remote end hung up unexpectedly",
        "rpc failed",
        "returned error: 5",
        "http 5",
        "ssh: connect to host",
        "kex_exchange_identification",
        "connection closed by",
        ".lock': file exists",
        "unable to create",
        "another git process",
        "cannot lock ref",
    ];
    let stderr = stderr.to_ascii_lowercase();
    PATTERNS.iter().any(|pattern| stderr.contains(pattern))
}

impl Git {
    /// Git with its home (and XDG config home) at `home`, committing as
    /// `author_name <author_email>`, each call limited to `timeout`.
    pub(crate) fn new(
        home: PathBuf,
        timeout: Duration,
        author_name: String,
        author_email: String,
    ) -> Git {
        let config = [
            // Nothing in a checkout may run code or reach further than asked.
            ("core.hooksPath", "/dev/null"),
            ("core.fsmonitor", "false"),
            ("credential.helper", ""),
            ("core.askPass", ""),
            ("commit.gpgSign", "false"),
            ("tag.gpgSign", "false"),
            ("http.followRedirects", "false"),
            ("http.proxy", ""),
            ("submodule.recurse", "false"),
            ("fetch.recurseSubmodules", "false"),
            ("gc.autoDetach", "false"),
            ("init.defaultBranch", "main"),
            ("advice.detachedHead", "false"),
            ("pull.rebase", "false"),
        ];
        Git {
            home,
            timeout,
            author_name,
            author_email,
            config: config
                .iter()
                .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
                .collect(),
            variables: Vec::new(),
        }
    }

    /// The same git with one more config setting (last one wins for single-valued keys).
    pub(crate) fn with_config(mut self, key: impl Into<String>, value: impl Into<String>) -> Git {
        self.config.push((key.into(), value.into()));
        self
    }

    /// The same git with one more environment variable.
    pub(crate) fn with_variable(
        mut self,
        name: impl Into<String>,
        value: impl Into<OsString>,
    ) -> Git {
        self.variables.push((name.into(), value.into()));
        self
    }

    /// The settings given to each call, for tests of how remotes are reached.
    #[cfg(test)]
    pub(crate) fn config_value(&self, key: &str) -> Option<&str> {
        self.config
            .iter()
            .rev()
            .find(|(name, _)| name.eq_ignore_ascii_case(key))
            .map(|(_, value)| value.as_str())
    }

    /// An environment variable given to each call, for tests.
    #[cfg(test)]
    pub(crate) fn variable(&self, name: &str) -> Option<&OsString> {
        self.variables
            .iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value)
    }

    /// Runs `git ARGS` in `dir`; what it printed on stdout.
    pub(crate) async fn run(&self, dir: &Path, args: &[&str]) -> Result<String, GitError> {
        self.run_with_input(dir, args, None).await
    }

    /// Runs `git ARGS` in `dir` with `input` on its stdin.
    pub(crate) async fn run_with_input(
        &self,
        dir: &Path,
        args: &[&str],
        input: Option<&str>,
    ) -> Result<String, GitError> {
        let described = args.join(" ");
        let mut command = tokio::process::Command::new("git");
        command
            .args(args)
            .current_dir(dir)
            .env_clear()
            .env("HOME", &self.home)
            .env("XDG_CONFIG_HOME", self.home.join(".config"))
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_ASKPASS", "")
            .env("SSH_ASKPASS", "")
            .env("LC_ALL", "C")
            .env("GIT_AUTHOR_NAME", &self.author_name)
            .env("GIT_AUTHOR_EMAIL", &self.author_email)
            .env("GIT_COMMITTER_NAME", &self.author_name)
            .env("GIT_COMMITTER_EMAIL", &self.author_email)
            .env("GIT_CONFIG_COUNT", self.config.len().to_string())
            .envs(self.variables.iter().map(|(name, value)| (name, value)));
        for (index, (key, value)) in self.config.iter().enumerate() {
            command
                .env(format!("GIT_CONFIG_KEY_{index}"), key)
                .env(format!("GIT_CONFIG_VALUE_{index}"), value);
        }
        let bounds = deploy::process::Bounds {
            timeout: self.timeout,
            stdout_bytes: MAX_STDOUT_BYTES,
            stderr_bytes: STDERR_TAIL_BYTES,
        };
        match deploy::process::run(&mut command, input.map(str::as_bytes), bounds).await {
            Ok(finished) if finished.stdout_cut => Err(GitError::Exited {
                command: described,
                status: finished.status.to_string(),
                stderr: format!("its output exceeded {MAX_STDOUT_BYTES} bytes"),
            }),
            Ok(finished) if finished.status.success() => {
                Ok(String::from_utf8_lossy(&finished.stdout).into_owned())
            }
            Ok(finished) => {
                let stderr = String::from_utf8_lossy(&finished.stderr).into_owned();
                Err(GitError::Exited {
                    command: described,
                    status: finished.status.to_string(),
                    stderr: deploy::process::text_tail(stderr.trim(), STDERR_TAIL_BYTES),
                })
            }
            Err(deploy::process::RunError::TimedOut(_)) => Err(GitError::TimedOut {
                command: described,
                seconds: self.timeout.as_secs(),
            }),
            Err(error) => Err(GitError::Spawn(error.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(stderr: &str, transient: bool) {
        let error = GitError::Exited {
            command: "fetch".to_owned(),
            status: "exit status: 128".to_owned(),
            stderr: stderr.to_owned(),
        };
        assert_eq!(error.is_transient(), transient, "{stderr}");
    }

    #[test]
    fn network_and_lock_failures_are_transient_and_refusals_are_not() {
        for (stderr, transient) in [
            (
                "fatal: unable to access 'https://git.example.com/a.git/': Could not resolve host: git.example.com",
                true,
            ),
            (
                "fatal: unable to access 'https://x/': Failed to connect to x port 443: Connection refused",
                true,
            ),
            (
                "error: RPC failed; HTTP 502 curl 22 The requested URL returned error: 502",
                true,
            ),
            (
                "ssh: connect to host git.example.com port 22: Connection timed out",
                true,
            ),
            (
                "fatal: Unable to create '/w/.git/index.lock': File exists.",
                true,
            ),
            (
                "fatal: Authentication failed for 'https://git.example.com/a.git/'",
                false,
            ),
            (
                "git@git.example.com: Permission denied (publickey).\nfatal: Could not read from remote repository.",
                false,
            ),
            (
                "fatal: '/srv/none' does not appear to be a git repository",
                false,
            ),
        ] {
            check(stderr, transient);
        }
        assert!(
            GitError::TimedOut {
                command: "fetch".to_owned(),
                seconds: 1
            }
            .is_transient()
        );
        assert!(!GitError::Spawn("not found".to_owned()).is_transient());
        let refused = GitError::Exited {
            command: "ls-remote".to_owned(),
            status: "exit status: 128".to_owned(),
            stderr: "fatal: could not read Username for 'https://git.example.com': terminal prompts disabled".to_owned(),
        };
        assert!(refused.is_authentication() && !refused.is_transient());
    }

    fn git_in(home: &Path, timeout: Duration) -> Git {
        Git::new(
            home.to_path_buf(),
            timeout,
            "Gantry Bot".to_owned(),
            "gantry@example.com".to_owned(),
        )
    }

    #[tokio::test]
    async fn git_reads_no_config_files_and_commits_as_the_configured_identity() {
        let home = tempfile::tempdir().expect("home");
        std::fs::write(
            home.path().join(".gitconfig"),
            "[user]\n\tname = Intruder\n",
        )
        .expect("a config git must not read");
        let git = git_in(home.path(), Duration::from_secs(30));
        let origins = git
            .run(home.path(), &["config", "--list", "--show-origin"])
            .await
            .expect("config listed");
        assert!(origins.contains("core.hookspath=/dev/null"), "{origins}");
        for line in origins.lines() {
            assert!(line.starts_with("command line:"), "{line}");
        }
        let ident = git
            .run(home.path(), &["var", "GIT_COMMITTER_IDENT"])
            .await
            .expect("identity");
        assert!(
            ident.starts_with("Gantry Bot <gantry@example.com> "),
            "{ident}"
        );
    }

    #[tokio::test]
    async fn a_call_past_its_time_limit_is_stopped_and_failures_keep_stderr() {
        let home = tempfile::tempdir().expect("home");
        let git = git_in(home.path(), Duration::from_millis(300))
            .with_config("alias.linger", "!sleep 30");
        assert_eq!(
            git.run(home.path(), &["linger"]).await,
            Err(GitError::TimedOut {
                command: "linger".to_owned(),
                seconds: 0
            })
        );
        let error = git
            .run(home.path(), &["rev-parse", "--verify", "no-such-thing"])
            .await
            .expect_err("not a repository");
        assert!(error.stderr().contains("not a git repository"), "{error}");
        assert!(!error.is_transient());
    }

    #[test]
    fn long_stderr_keeps_its_end() {
        let text = format!("{}END", "é".repeat(STDERR_TAIL_BYTES));
        let kept = deploy::process::text_tail(&text, STDERR_TAIL_BYTES);
        assert!(kept.ends_with("END"));
        assert!(kept.len() <= STDERR_TAIL_BYTES + "…".len());
    }
}
