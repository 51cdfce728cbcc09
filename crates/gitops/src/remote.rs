//! Where a gitops repository lives and how git reaches it: a local path or `file://`
//! URL, an `https://` URL (credentials from a secret, sent as a header scoped to that
//! host, never written into the URL; the host's addresses checked against the
//! outbound policy and pinned for the call), or an ssh address (a deploy key from a
//! secret, `known_hosts` kept in the deployer's directory).

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use base64::Engine;
use deploy::{DeployError, Secrets};
use domain::application::SecretRef;
use sha2::{Digest, Sha256};

use crate::git::Git;
use crate::settings::GitCredential;

/// A repository address, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Remote {
    /// A repository on this machine: an absolute path or a `file://` URL, as written.
    Local(String),
    /// An https URL without credentials.
    Https(url::Url),
    /// `ssh://[user@]host[:port]/path` or `[user@]host:path`, as written.
    Ssh { address: String, host: String },
}

impl Remote {
    /// Reads a declared repository, refusing what git would reach in ways the
    /// deployer does not control (other schemes, credentials inside the URL,
    /// relative paths).
    pub(crate) fn parse(text: &str) -> Result<Remote, String> {
        // `-…` would be read as an option, `X::…` as a transport helper program.
        let helper = text.split_once("::").is_some_and(|(transport, _)| {
            !transport.is_empty()
                && transport
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        });
        if text.starts_with('-') || helper {
            return Err(format!("`{text}` is not a repository address"));
        }
        if let Some((scheme, _)) = text.split_once("://") {
            let url = url::Url::parse(text)
                .map_err(|error| format!("`{text}` is not a repository URL: {error}"))?;
            if (!url.username().is_empty() && scheme != "ssh") || url.password().is_some() {
                return Err(format!(
                    "the repository URL `{}` holds credentials: declare them as a secret in the server's [deploy.gitops] credentials instead",
                    redacted(&url)
                ));
            }
            return match scheme.to_ascii_lowercase().as_str() {
                "file" => {
                    let path = url
                        .to_file_path()
                        .map_err(|()| format!("`{text}` is not a local repository URL"))?;
                    if path.is_absolute() {
                        Ok(Remote::Local(text.to_owned()))
                    } else {
                        Err(format!("`{text}` does not name an absolute path"))
                    }
                }
                "https" if url.host_str().is_some_and(|host| !host.is_empty()) => {
                    Ok(Remote::Https(url))
                }
                "ssh" => match url.host_str() {
                    // A host or user starting with `-` would reach ssh as an option.
                    Some(host)
                        if !host.is_empty()
                            && !host.starts_with('-')
                            && !url.username().starts_with('-') =>
                    {
                        Ok(Remote::Ssh {
                            address: text.to_owned(),
                            host: host.to_owned(),
                        })
                    }
                    _ => Err(format!("`{text}` names no usable host")),
                },
                "http" => Err(format!(
                    "`{text}` is plain http: use https, so credentials and commits are not sent in the clear"
                )),
                _ => Err(format!(
                    "`{text}`: the {scheme}:// scheme is not supported; use a local path, file://, https:// or ssh"
                )),
            };
        }
        if text.starts_with('/') {
            return Ok(Remote::Local(text.to_owned()));
        }
        // scp-like: `[user@]host:path` (the host in brackets when it is IPv6), where
        // no `/` comes before the `:`.
        let (user, rest) = match text.split_once('@') {
            Some((user, rest)) if !user.contains(['/', ':']) => (Some(user), rest),
            _ => (None, text),
        };
        let split = match rest.strip_prefix('[') {
            Some(bracketed) => bracketed
                .split_once("]:")
                .filter(|(host, _)| host.parse::<std::net::Ipv6Addr>().is_ok()),
            None => rest.split_once(':'),
        };
        if let Some((host, path)) = split
            && !host.is_empty()
            && !path.is_empty()
            && !host.starts_with('-')
            && user.is_none_or(|user| !user.is_empty() && !user.starts_with('-'))
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-_:".contains(&b))
        {
            return Ok(Remote::Ssh {
                address: text.to_owned(),
                host: host.to_owned(),
            });
        }
        Err(format!(
            "`{text}` is not a repository address: use an absolute path, file://, https:// or `user@host:path`"
        ))
    }

    /// The address given to git (never holding credentials).
    pub(crate) fn git_url(&self) -> String {
        match self {
            Remote::Local(text) | Remote::Ssh { address: text, .. } => text.clone(),
            Remote::Https(url) => url.to_string(),
        }
    }

    /// Whether `credential` is meant for this repository: its `match` is the host
    /// (`git.example.com`, `host:port` for https) or a prefix of the address.
    fn matches(&self, credential: &GitCredential) -> bool {
        let pattern = credential.matches.as_str();
        let address = self.git_url();
        let host_matches = match self {
            Remote::Local(_) => false,
            Remote::Https(url) => {
                url.host_str()
                    .is_some_and(|host| host.eq_ignore_ascii_case(pattern))
                    || url.host_str().zip(url.port()).is_some_and(|(host, port)| {
                        format!("{host}:{port}").eq_ignore_ascii_case(pattern)
                    })
            }
            Remote::Ssh { host, .. } => host.eq_ignore_ascii_case(pattern),
        };
        host_matches || (!pattern.is_empty() && address.starts_with(pattern))
    }

    /// The credential for this repository: of those that match, the longest `match`.
    pub(crate) fn credential<'c>(
        &self,
        credentials: &'c [GitCredential],
    ) -> Option<&'c GitCredential> {
        credentials
            .iter()
            .filter(|credential| self.matches(credential))
            .max_by_key(|credential| credential.matches.len())
    }
}

/// A URL for messages, with any credentials left out.
fn redacted(url: &url::Url) -> String {
    let mut url = url.clone();
    // Only URLs that cannot have credentials refuse these, and those never get here.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.to_string()
}

/// What reaching a remote needs beyond git itself.
pub(crate) struct Access<'a> {
    pub(crate) secrets: &'a Secrets,
    pub(crate) policy: &'a outbound::Policy,
    /// Where deploy keys and `known_hosts` are kept.
    pub(crate) ssh_dir: &'a Path,
    /// Host keys trusted from the start, besides those learned on first use.
    pub(crate) ssh_known_hosts: Option<&'a Path>,
    /// Certificate authorities for https hosts, instead of the system's.
    pub(crate) https_ca_file: Option<&'a Path>,
}

/// `git` set up to reach `remote`: only its protocol allowed, its credentials in
/// place, and for https its host's addresses checked and pinned.
pub(crate) async fn prepare(
    git: Git,
    remote: &Remote,
    credential: Option<&GitCredential>,
    access: &Access<'_>,
) -> Result<Git, DeployError> {
    match remote {
        Remote::Local(_) => Ok(git.with_variable("GIT_ALLOW_PROTOCOL", "file")),
        Remote::Https(url) => {
            let host = url
                .host_str()
                .ok_or_else(|| DeployError::Failed(format!("`{url}` names no host")))?;
            let port = url.port_or_known_default().unwrap_or(443);
            let addresses = resolve(host, port).await?;
            let mut git = git
                .with_variable("GIT_ALLOW_PROTOCOL", "https")
                .with_config(
                    "http.curloptResolve",
                    pinned(host, port, &addresses, access)?,
                );
            if let Some(ca_file) = access.https_ca_file {
                git = git.with_config("http.sslCAInfo", ca_file.display().to_string());
            }
            if let Some(credential) = credential {
                let (Some(username), Some(secret)) =
                    (&credential.username, &credential.token_secret)
                else {
                    return Err(DeployError::Failed(format!(
                        "the [deploy.gitops] credential matching `{}` needs `username` and `token_secret` for an https repository",
                        credential.matches
                    )));
                };
                let token = read_secret(access.secrets, secret)?;
                let basic =
                    base64::engine::general_purpose::STANDARD.encode(format!("{username}:{token}"));
                git = git.with_config(
                    format!("http.{}.extraHeader", origin(url)),
                    format!("Authorization: Basic {basic}"),
                );
            }
            Ok(git)
        }
        Remote::Ssh { .. } => {
            let known_hosts = access.ssh_dir.join("known_hosts");
            let global = access
                .ssh_known_hosts
                .map_or_else(|| PathBuf::from("/dev/null"), Path::to_path_buf);
            let mut command = vec![
                "ssh".to_owned(),
                "-F".to_owned(),
                "/dev/null".to_owned(),
                "-o".to_owned(),
                "BatchMode=yes".to_owned(),
                "-o".to_owned(),
                "IdentitiesOnly=yes".to_owned(),
                "-o".to_owned(),
                "StrictHostKeyChecking=accept-new".to_owned(),
                "-o".to_owned(),
                format!("UserKnownHostsFile={}", known_hosts.display()),
                "-o".to_owned(),
                format!("GlobalKnownHostsFile={}", global.display()),
                "-o".to_owned(),
                "ConnectTimeout=30".to_owned(),
            ];
            if let Some(credential) = credential {
                let Some(secret) = &credential.ssh_key_secret else {
                    return Err(DeployError::Failed(format!(
                        "the [deploy.gitops] credential matching `{}` needs `ssh_key_secret` for an ssh repository",
                        credential.matches
                    )));
                };
                let key = write_key(access, secret)?;
                command.push("-i".to_owned());
                command.push(key.display().to_string());
            }
            let command = command
                .iter()
                .map(|word| shell_quote(word))
                .collect::<Vec<_>>()
                .join(" ");
            Ok(git
                .with_variable("GIT_ALLOW_PROTOCOL", "ssh")
                .with_variable("GIT_SSH_COMMAND", command))
        }
    }
}

/// `scheme://host[:port]/`, the prefix a header is scoped to.
fn origin(url: &url::Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{}://{host}:{port}/", url.scheme()),
        (Some(host), None) => format!("{}://{host}/", url.scheme()),
        _ => url.to_string(),
    }
}

/// Every address `host` resolves to.
async fn resolve(host: &str, port: u16) -> Result<Vec<IpAddr>, DeployError> {
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = literal.parse::<IpAddr>() {
        return Ok(vec![ip]);
    }
    let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|error| DeployError::Transient(format!("cannot resolve {host}: {error}")))?
        .collect();
    if addresses.is_empty() {
        return Err(DeployError::Transient(format!(
            "{host} resolves to no address"
        )));
    }
    Ok(addresses.iter().map(SocketAddr::ip).collect())
}

/// The `HOST:PORT:ADDRESS,…` git (curl) connects through, after every address passed
/// the outbound policy: a name that resolved to a public address here cannot
/// resolve to a private one when git connects.
fn pinned(
    host: &str,
    port: u16,
    addresses: &[IpAddr],
    access: &Access<'_>,
) -> Result<String, DeployError> {
    let mut allowed = Vec::new();
    for address in addresses {
        access.policy.check(*address).map_err(|refused| {
            DeployError::Failed(format!("the repository host {host}: {refused}"))
        })?;
        allowed.push(match address {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
        });
    }
    Ok(format!("{host}:{port}:{}", allowed.join(",")))
}

fn read_secret(secrets: &Secrets, name: &str) -> Result<String, DeployError> {
    let reference =
        SecretRef::parse(name).map_err(|error| DeployError::Failed(error.to_string()))?;
    secrets.read(&reference).map_err(DeployError::Failed)
}

/// Copies the deploy key `secret` to a file only this user can read (ssh refuses
/// keys others can read), under a name derived from the secret's name.
fn write_key(access: &Access<'_>, secret: &str) -> Result<PathBuf, DeployError> {
    let key = read_secret(access.secrets, secret)?;
    let keys = access.ssh_dir.join("keys");
    let failed = |error: std::io::Error| {
        DeployError::Failed(format!("cannot write the deploy key `{secret}`: {error}"))
    };
    std::fs::create_dir_all(&keys).map_err(failed)?;
    let name = hex::encode(&Sha256::digest(secret.as_bytes())[..8]);
    let path = keys.join(name);
    // A private (0600) file beside the key, renamed over it: a job reading the key
    // never sees it half written.
    let mut staged = tempfile::NamedTempFile::new_in(&keys).map_err(failed)?;
    // Secrets are read without their final newline; OpenSSH wants the key's back.
    staged
        .write_all(format!("{key}\n").as_bytes())
        .map_err(failed)?;
    staged.persist(&path).map_err(|error| failed(error.error))?;
    Ok(path)
}

/// `word` as one POSIX shell word (git runs `GIT_SSH_COMMAND` through the shell).
fn shell_quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:@,".contains(&b))
    {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    fn check(text: &str, expected: Result<&str, &str>) {
        let parsed = Remote::parse(text);
        match (parsed, expected) {
            (Ok(remote), Ok(kind)) => {
                let actual = match remote {
                    Remote::Local(_) => "local",
                    Remote::Https(_) => "https",
                    Remote::Ssh { .. } => "ssh",
                };
                assert_eq!(actual, kind, "{text}");
            }
            (Err(message), Err(fragment)) => {
                assert!(message.contains(fragment), "{text}: {message}");
            }
            (parsed, expected) => panic!("{text}: got {parsed:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn repositories_are_local_paths_file_https_or_ssh_addresses() {
        for (text, expected) in [
            ("/srv/git/infra", Ok("local")),
            ("file:///srv/git/infra.git", Ok("local")),
            ("https://git.example.com/acme/infra.git", Ok("https")),
            ("git@github.com:acme/infra-config.git", Ok("ssh")),
            ("ssh://git@git.example.com:2222/acme/infra.git", Ok("ssh")),
            (
                "https://bot:s3cret@git.example.com/acme/infra.git",
                Err("holds credentials"),
            ),
            (
                "https://bot@git.example.com/acme/infra.git",
                Err("holds credentials"),
            ),
            ("http://git.example.com/acme/infra.git", Err("use https")),
            ("git://git.example.com/acme/infra.git", Err("not supported")),
            ("ext::sh -c touch% /tmp/x", Err("not a repository address")),
            ("fd::17", Err("not a repository address")),
            ("git@-oProxyCommand:x", Err("not a repository address")),
            ("ssh://-oProxyCommand=x/acme", Err("names no usable host")),
            ("git@[::1]:acme/infra.git", Ok("ssh")),
            ("relative/path", Err("not a repository address")),
            ("--upload-pack=touch", Err("not a repository address")),
        ] {
            check(text, expected);
        }
    }

    fn credential(matches: &str) -> GitCredential {
        GitCredential {
            matches: matches.to_owned(),
            username: Some("bot".to_owned()),
            token_secret: Some("git/token".to_owned()),
            ssh_key_secret: Some("git/key".to_owned()),
        }
    }

    #[test]
    fn the_longest_matching_credential_wins() {
        let credentials = [
            credential("git.example.com"),
            credential("https://git.example.com/acme/"),
            credential("https://git.example.com/other/"),
            credential("github.com"),
        ];
        let pick = |text: &str| {
            Remote::parse(text)
                .expect("remote")
                .credential(&credentials)
                .map(|c| c.matches.clone())
        };
        assert_eq!(
            pick("https://git.example.com/acme/infra.git").as_deref(),
            Some("https://git.example.com/acme/")
        );
        assert_eq!(
            pick("https://git.example.com/team/infra.git").as_deref(),
            Some("git.example.com")
        );
        assert_eq!(
            pick("git@github.com:acme/infra.git").as_deref(),
            Some("github.com")
        );
        assert_eq!(pick("https://gitlab.example.com/a.git"), None);
        assert_eq!(pick("/srv/git/infra"), None);
    }

    struct Fixture {
        dir: tempfile::TempDir,
        secrets: Secrets,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let secrets_dir = dir.path().join("secrets");
        std::fs::create_dir_all(secrets_dir.join("git")).expect("secrets dir");
        std::fs::write(secrets_dir.join("git/token"), "t0ken-value\n").expect("token");
        std::fs::write(
            secrets_dir.join("git/key"),
            "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
        )
        .expect("key");
        Fixture {
            secrets: Secrets::new(Some(secrets_dir)),
            dir,
        }
    }

    fn git(home: &Path) -> Git {
        Git::new(
            home.to_path_buf(),
            Duration::from_secs(5),
            "Gantry".to_owned(),
            "gantry@example.com".to_owned(),
        )
    }

    #[tokio::test]
    async fn https_credentials_travel_as_a_header_scoped_to_the_host_and_the_address_is_pinned() {
        let fixture = fixture();
        let policy = Arc::new(outbound::Policy::parse(&["127.0.0.1".to_owned()]).expect("policy"));
        let access = Access {
            secrets: &fixture.secrets,
            policy: &policy,
            ssh_dir: &fixture.dir.path().join("ssh"),
            ssh_known_hosts: None,
            https_ca_file: None,
        };
        let remote = Remote::parse("https://127.0.0.1:8443/acme/infra.git").expect("remote");
        let git = prepare(
            git(fixture.dir.path()),
            &remote,
            Some(&credential("127.0.0.1:8443")),
            &access,
        )
        .await
        .expect("prepared");
        let expected = format!(
            "Authorization: Basic {}",
            base64::engine::general_purpose::STANDARD.encode("bot:t0ken-value")
        );
        assert_eq!(
            git.config_value("http.https://127.0.0.1:8443/.extraHeader"),
            Some(expected.as_str())
        );
        assert_eq!(
            git.config_value("http.curloptResolve"),
            Some("127.0.0.1:8443:127.0.0.1")
        );
        assert_eq!(git.config_value("http.followRedirects"), Some("false"));
        assert_eq!(
            git.variable("GIT_ALLOW_PROTOCOL")
                .map(|v| v.to_string_lossy().into_owned()),
            Some("https".to_owned())
        );
        assert!(!remote.git_url().contains("t0ken"));
        assert!(!format!("{git:?}").contains("t0ken"));
        assert!(!format!("{git:?}").contains(&expected));
    }

    #[tokio::test]
    async fn https_hosts_on_restricted_addresses_are_refused_unless_allow_listed() {
        let fixture = fixture();
        let policy = outbound::Policy::default();
        let access = Access {
            secrets: &fixture.secrets,
            policy: &policy,
            ssh_dir: &fixture.dir.path().join("ssh"),
            ssh_known_hosts: None,
            https_ca_file: None,
        };
        for address in [
            "https://localhost/acme/infra.git",
            "https://10.1.2.3/acme/infra.git",
            "https://169.254.169.254/latest",
            "https://[::1]/acme/infra.git",
        ] {
            let remote = Remote::parse(address).expect("remote");
            match prepare(git(fixture.dir.path()), &remote, None, &access).await {
                Err(DeployError::Failed(message)) => {
                    assert!(message.contains("outbound.allow"), "{address}: {message}");
                }
                other => panic!("{address}: expected a refusal, got {:?}", other.map(|_| ())),
            }
        }
    }

    #[tokio::test]
    async fn ssh_uses_the_deploy_key_only_and_a_known_hosts_file_of_its_own() {
        let fixture = fixture();
        let policy = outbound::Policy::default();
        let ssh_dir = fixture.dir.path().join("ssh dir");
        let access = Access {
            secrets: &fixture.secrets,
            policy: &policy,
            ssh_dir: &ssh_dir,
            ssh_known_hosts: Some(Path::new("/etc/gantry/known_hosts")),
            https_ca_file: None,
        };
        let remote = Remote::parse("git@git.example.com:acme/infra.git").expect("remote");
        let git = prepare(
            git(fixture.dir.path()),
            &remote,
            Some(&credential("git.example.com")),
            &access,
        )
        .await
        .expect("prepared");
        let command = git
            .variable("GIT_SSH_COMMAND")
            .expect("an ssh command")
            .to_string_lossy()
            .into_owned();
        let key = ssh_dir
            .join("keys")
            .join(hex::encode(&Sha256::digest(b"git/key")[..8]));
        for part in [
            "ssh -F /dev/null -o BatchMode=yes -o IdentitiesOnly=yes -o StrictHostKeyChecking=accept-new".to_owned(),
            format!("'UserKnownHostsFile={}'", ssh_dir.join("known_hosts").display()),
            "-o GlobalKnownHostsFile=/etc/gantry/known_hosts".to_owned(),
            format!("-i '{}'", key.display()),
        ] {
            assert!(command.contains(&part), "{command} lacks {part}");
        }
        let metadata = std::fs::metadata(&key).expect("key written");
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&metadata.permissions()) & 0o777,
            0o600
        );
        assert!(
            std::fs::read_to_string(&key)
                .expect("key")
                .ends_with("-----END OPENSSH PRIVATE KEY-----\n")
        );
        assert_eq!(
            git.variable("GIT_ALLOW_PROTOCOL")
                .map(|v| v.to_string_lossy().into_owned()),
            Some("ssh".to_owned())
        );
    }

    #[test]
    fn shell_words_are_quoted() {
        assert_eq!(shell_quote("-o"), "-o");
        assert_eq!(shell_quote("/a b/it's"), "'/a b/it'\\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
