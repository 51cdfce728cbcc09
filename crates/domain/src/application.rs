//! Applications as Gantry understands them once parsed: a repository, a pipeline, and
//! for each stage of that pipeline an environment with its deploy target, optional
//! health check and config. Plain data with no serde derive: declarative resources
//! (`resources`, the YAML shapes in its `wire`) produce it, and the engine and the
//! deployers (`gitops`, `site`, `regcopy`, which depend on no YAML crate) read it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::RepoName;
use crate::pipeline::{AppName, EnvName, PipelineName};

/// Why a target's field was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplicationError {
    #[error("`{0}` is not a git repository: give a local path, an https URL or an ssh address")]
    InvalidGitRepository(String),
    #[error("`{0}` is not a git branch name")]
    InvalidGitBranch(String),
    #[error(
        "`{0}` is not a file path inside the repository: use a relative path without `.` or `..` components"
    )]
    InvalidRepoFile(String),
    #[error(
        "`{0}` is not a YAML key path: use dot-separated keys of letters, digits, `_` and `-`, e.g. `image.digest`"
    )]
    InvalidKeyPath(String),
    #[error("`{0}` is not a secret reference: use 1–128 letters, digits, `.`, `_`, `-` and `/`")]
    InvalidSecretRef(String),
    #[error(
        "`{0}` is not a registry destination: use `HOST[:PORT]/REPOSITORY`, e.g. `prod-registry.example.com/acme/web-app`"
    )]
    InvalidRegistryDestination(String),
    #[error(
        "`{0}` is not a site destination: use an absolute directory (`/srv/www/site`) or `s3://BUCKET[/PREFIX]`"
    )]
    InvalidSiteDestination(String),
    #[error("`{url}` is not an http(s) URL: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("{0} is not an HTTP status code (100–599)")]
    InvalidStatus(u16),
    #[error("the program to run is empty")]
    EmptyProgram,
}

fn shorten(text: &str) -> String {
    text.chars().take(80).collect()
}

/// What an application's artifacts are, which decides how they can be deployed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ApplicationType {
    /// An OCI image run somewhere else.
    Container,
    /// A static site stored as an OCI artifact (a zip) and synced to a destination.
    StaticSite,
    /// No build of its own: Gantry only records the revisions applied.
    Infra,
}

impl ApplicationType {
    pub fn as_str(self) -> &'static str {
        match self {
            ApplicationType::Container => "container",
            ApplicationType::StaticSite => "static-site",
            ApplicationType::Infra => "infra",
        }
    }
}

impl fmt::Display for ApplicationType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A deployable workload and how each of its environments is deployed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Application {
    pub name: AppName,
    pub app_type: ApplicationType,
    /// The OCI repository its artifacts are pushed to, e.g. `acme/web-app`.
    pub repository: RepoName,
    pub pipeline: PipelineName,
    /// Free text, e.g. `rust/axum`.
    pub tech_stack: Option<String>,
    /// Free text naming the infrastructure module, e.g. `terraform/modules/web`.
    pub module: Option<String>,
    pub environments: BTreeMap<EnvName, EnvironmentSpec>,
    /// Retention for its repository; it wins over any `kind: RetentionPolicy`.
    pub retention: Option<crate::retention::RetentionRules>,
}

/// One environment of an application: where promoted artifacts go and how to verify them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvironmentSpec {
    pub target: Target,
    pub health_check: Option<HealthCheck>,
    /// Roll back to the previous successful digest when a deployment fails.
    pub auto_rollback: bool,
    /// Admission lets an image run here only with a signed attestation of its
    /// deployment to this environment (see `attest::verify`).
    pub require_attestation: bool,
    /// Keys set alongside the digest (a release bundle's default config).
    pub config: BTreeMap<KeyPath, ConfigValue>,
}

/// A config value as written: YAML scalars keep their type so GitOps files keep theirs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigValue {
    String(String),
    Integer(i64),
    Boolean(bool),
}

/// How an environment is deployed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Nothing is deployed by Gantry; it records what was promoted (e.g. infra applied by hand).
    Record,
    Gitops(GitopsTarget),
    StaticSite(StaticSiteTarget),
    RegistryCopy(RegistryCopyTarget),
    Webhook(WebhookTarget),
    Command(CommandTarget),
}

impl Target {
    /// The name the target is written under in YAML.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Target::Record => "record",
            Target::Gitops(_) => "gitops",
            Target::StaticSite(_) => "static-site",
            Target::RegistryCopy(_) => "registry-copy",
            Target::Webhook(_) => "webhook",
            Target::Command(_) => "command",
        }
    }
}

/// Set the digest in a YAML file of a git repository, commit and push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitopsTarget {
    pub repo: GitRepository,
    /// The branch to commit to; the remote's default branch when absent.
    pub branch: Option<GitBranch>,
    pub file: RepoFilePath,
    pub image: ImageKeys,
}

/// Where in the YAML file the promoted image is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageKeys {
    /// One key holding the full, pullable reference, `HOST/REPOSITORY@sha256:…`.
    Reference(KeyPath),
    /// Separate keys: `repository` gets `HOST/REPOSITORY`, `tag` the tag the build
    /// was pushed under (`sha-abc1234`), `digest` the digest (always written).
    Split {
        repository: Option<KeyPath>,
        tag: Option<KeyPath>,
        digest: KeyPath,
    },
}

/// Unpack the site artifact and sync it to a destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticSiteTarget {
    pub destination: SiteDestination,
    /// `Cache-Control` for files that are neither fingerprinted assets nor HTML/JSON.
    pub default_cache_control: Option<String>,
    /// Called for `/*` after a sync.
    pub invalidate: Option<InvalidationHook>,
}

/// Where a static site is synced to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SiteDestination {
    Directory(PathBuf),
    S3 { bucket: String, prefix: String },
}

impl SiteDestination {
    pub fn parse(text: &str) -> Result<SiteDestination, ApplicationError> {
        let invalid = || ApplicationError::InvalidSiteDestination(shorten(text));
        if let Some(rest) = text.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let bucket_ok = (3..=63).contains(&bucket.len())
                && bucket.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-'
                })
                && bucket
                    .bytes()
                    .next()
                    .is_some_and(|b| b.is_ascii_alphanumeric())
                && bucket
                    .bytes()
                    .last()
                    .is_some_and(|b| b.is_ascii_alphanumeric());
            let prefix = prefix.trim_end_matches('/');
            let prefix_ok = prefix.split('/').all(|part| !matches!(part, "." | ".."))
                && !prefix.contains("//")
                && !text.chars().any(char::is_whitespace);
            if bucket_ok && prefix_ok {
                Ok(SiteDestination::S3 {
                    bucket: bucket.to_owned(),
                    prefix: prefix.to_owned(),
                })
            } else {
                Err(invalid())
            }
        } else {
            let path = PathBuf::from(text);
            let clean = path.is_absolute()
                && path.components().all(|c| {
                    matches!(
                        c,
                        std::path::Component::RootDir | std::path::Component::Normal(_)
                    )
                });
            if clean {
                Ok(SiteDestination::Directory(path))
            } else {
                Err(invalid())
            }
        }
    }
}

impl fmt::Display for SiteDestination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SiteDestination::Directory(path) => write!(f, "{}", path.display()),
            SiteDestination::S3 { bucket, prefix } if prefix.is_empty() => {
                write!(f, "s3://{bucket}")
            }
            SiteDestination::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

/// How a CDN is told that a site changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvalidationHook {
    Http(HttpUrl),
    Command { program: String, args: Vec<String> },
}

/// Copy the manifest and blobs to another registry, then verify the digest there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryCopyTarget {
    pub to: RegistryDestination,
    /// Point a tag named after the environment (`prod`) at the copy, besides the
    /// build's own tag, which is always carried. Off for destinations whose tags are
    /// immutable (ECR configured so, another Gantry).
    pub env_tag: bool,
}

/// POST a signed payload and wait for the receiver's callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookTarget {
    pub url: HttpUrl,
    /// The secret the payload is signed with (HMAC-SHA256).
    pub secret_ref: Option<SecretRef>,
    /// How long to wait for the callback.
    pub timeout: Duration,
}

impl WebhookTarget {
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);
}

/// Run a program; its exit status decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandTarget {
    pub program: String,
    pub args: Vec<String>,
    pub timeout: Duration,
}

impl CommandTarget {
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);
}

/// An HTTP check run after each deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub url: HttpUrl,
    pub expect_status: u16,
    /// For each attempt.
    pub timeout: Duration,
    /// Further attempts after a failed one.
    pub retries: u32,
}

impl HealthCheck {
    pub const DEFAULT_STATUS: u16 = 200;
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
    pub const DEFAULT_RETRIES: u32 = 3;

    pub fn status(code: u16) -> Result<u16, ApplicationError> {
        if (100..=599).contains(&code) {
            Ok(code)
        } else {
            Err(ApplicationError::InvalidStatus(code))
        }
    }
}

macro_rules! text_newtype {
    ($(#[$doc:meta])* $name:ident, $valid:expr, $error:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub fn parse(text: &str) -> Result<$name, ApplicationError> {
                let valid: fn(&str) -> bool = $valid;
                if valid(text) {
                    Ok($name(text.to_owned()))
                } else {
                    Err(ApplicationError::$error(shorten(text)))
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

text_newtype!(
    /// A git remote: a local path, an https URL or an ssh address (`git@host:org/repo.git`).
    /// Only its shape is checked here; whether it can be reached is the deployer's concern.
    GitRepository,
    |text| !text.is_empty() && !text.chars().any(|c| c.is_whitespace() || c.is_control()),
    InvalidGitRepository
);

text_newtype!(
    /// A branch name, following the rules `git check-ref-format` applies to them.
    GitBranch,
    |text| {
        !text.is_empty()
            && !text.starts_with(['-', '/', '.'])
            && !text.ends_with(['/', '.'])
            && !text.ends_with(".lock")
            && !text.contains("..")
            && !text.contains("//")
            && !text.contains("@{")
            && !text
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || "~^:?*[\\".contains(c))
    },
    InvalidGitBranch
);

text_newtype!(
    /// A file inside a git repository, relative to its root: `apps/web-app/values.yaml`.
    RepoFilePath,
    |text| {
        !text.is_empty()
            && !text.contains('\\')
            && !text.chars().any(char::is_control)
            && text
                .split('/')
                .all(|part| !part.is_empty() && part != "." && part != "..")
    },
    InvalidRepoFile
);

text_newtype!(
    /// A path of keys into a YAML document: `image.digest`.
    KeyPath,
    |text| {
        text.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        })
    },
    InvalidKeyPath
);

text_newtype!(
    /// The name of a secret held by Gantry (never the secret itself).
    SecretRef,
    |text| {
        (1..=128).contains(&text.len())
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'))
    },
    InvalidSecretRef
);

/// An http or https URL with a host.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HttpUrl(url::Url);

impl HttpUrl {
    pub fn parse(text: &str) -> Result<HttpUrl, ApplicationError> {
        let invalid = |reason: String| ApplicationError::InvalidUrl {
            url: shorten(text),
            reason,
        };
        let url = url::Url::parse(text).map_err(|error| invalid(error.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid(format!(
                "the scheme is `{}`, not http or https",
                url.scheme()
            )));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(invalid("it has no host".to_owned()));
        }
        Ok(HttpUrl(url))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

/// Another OCI registry and the repository there: `prod-registry.example.com/acme/web-app`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RegistryDestination {
    registry: String,
    repository: RepoName,
}

/// Whether `registry` is `host[:port]` naming a registry as container tools decide
/// it: a DNS name or IPv4 address with a dot or a port, or `localhost`.
pub fn is_registry_host(registry: &str) -> bool {
    let (host, port) = match registry.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (registry, None),
    };
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        && !host.starts_with(['.', '-'])
        && !host.ends_with(['.', '-']);
    let port_ok = port.is_none_or(|port| port.parse::<u16>().is_ok_and(|p| p > 0));
    host_ok && port_ok && (host.contains('.') || port.is_some() || host == "localhost")
}

impl RegistryDestination {
    /// The first path component must name a registry host (it contains a `.` or a
    /// `:port`, or is `localhost`), as container tools decide it.
    pub fn parse(text: &str) -> Result<RegistryDestination, ApplicationError> {
        let invalid = || ApplicationError::InvalidRegistryDestination(shorten(text));
        let (registry, repository) = text.split_once('/').ok_or_else(invalid)?;
        if !is_registry_host(registry) {
            return Err(invalid());
        }
        let repository = RepoName::parse(repository).map_err(|_| invalid())?;
        Ok(RegistryDestination {
            registry: registry.to_owned(),
            repository,
        })
    }

    /// `host[:port]`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    pub fn repository(&self) -> &RepoName {
        &self.repository
    }
}

impl fmt::Display for RegistryDestination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check<T: fmt::Debug>(
        parse: fn(&str) -> Result<T, ApplicationError>,
        text: &str,
        valid: bool,
    ) {
        assert_eq!(parse(text).is_ok(), valid, "{text:?}: {:?}", parse(text));
    }

    #[test]
    fn git_repositories_are_paths_urls_or_ssh_addresses_without_spaces() {
        for (text, valid) in [
            ("git@github.com:acme/infra-config.git", true),
            ("https://git.example.com/acme/infra.git", true),
            ("/srv/git/infra", true),
            ("git@…:acme/infra-config.git", true),
            ("", false),
            ("git@host: acme/infra", false),
        ] {
            check(GitRepository::parse, text, valid);
        }
    }

    #[test]
    fn branch_names_follow_gits_rules() {
        for (text, valid) in [
            ("main", true),
            ("release/2026-04", true),
            ("", false),
            ("-main", false),
            ("a..b", false),
            ("feature branch", false),
            ("topic.lock", false),
            ("what?", false),
        ] {
            check(GitBranch::parse, text, valid);
        }
    }

    #[test]
    fn repository_files_are_relative_and_stay_inside_the_repository() {
        for (text, valid) in [
            ("apps/web-app/dev/values.yaml", true),
            ("values.yaml", true),
            ("/etc/passwd", false),
            ("apps/../../secrets", false),
            ("apps//values.yaml", false),
            ("./values.yaml", false),
            ("", false),
        ] {
            check(RepoFilePath::parse, text, valid);
        }
    }

    #[test]
    fn key_paths_are_dotted_keys() {
        for (text, valid) in [
            ("image.digest", true),
            ("image", true),
            ("env.LOG_LEVEL", true),
            ("", false),
            ("image..digest", false),
            (".image", false),
            ("image digest", false),
        ] {
            check(KeyPath::parse, text, valid);
        }
    }

    #[test]
    fn urls_must_be_http_or_https_with_a_host() {
        for (text, valid) in [
            ("https://web-app.example.com/healthz", true),
            ("http://127.0.0.1:8080/", true),
            ("ftp://example.com/", false),
            ("file:///etc/passwd", false),
            ("example.com/healthz", false),
            ("", false),
        ] {
            check(HttpUrl::parse, text, valid);
        }
    }

    #[test]
    fn registry_destinations_start_with_a_host() {
        for (text, valid) in [
            ("prod-registry.example.com/acme/web-app", true),
            ("localhost:5000/acme/web-app", true),
            ("localhost/web-app", true),
            ("acme/web-app", false),
            ("prod-registry.example.com", false),
            ("prod-registry.example.com/Acme/Web", false),
            ("registry.example.com:0/app", false),
            ("registry.example.com/app:latest", false),
        ] {
            check(RegistryDestination::parse, text, valid);
        }
        let destination = RegistryDestination::parse("localhost:5000/acme/web-app").expect("valid");
        assert_eq!(destination.registry(), "localhost:5000");
        assert_eq!(destination.repository().as_str(), "acme/web-app");
    }

    #[test]
    fn site_destinations_are_absolute_directories_or_s3_buckets() {
        for (text, valid) in [
            ("/srv/www/site", true),
            ("s3://acme-sites/web-app/", true),
            ("s3://acme-sites", true),
            ("site", false),
            ("/srv/../etc", false),
            ("s3://Acme/site", false),
            ("s3://ab", false),
            ("s3://acme-sites/a/../b", false),
        ] {
            check(SiteDestination::parse, text, valid);
        }
        assert_eq!(
            SiteDestination::parse("s3://acme-sites/web-app/").map(|d| d.to_string()),
            Ok("s3://acme-sites/web-app".to_owned())
        );
    }

    #[test]
    fn secret_references_are_names_not_values() {
        for (text, valid) in [
            ("webhooks/prod", true),
            ("deploy.key", true),
            ("", false),
            ("has space", false),
            (&"a".repeat(129), false),
        ] {
            check(SecretRef::parse, text, valid);
        }
    }

    #[test]
    fn health_check_statuses_are_http_status_codes() {
        for (code, valid) in [
            (200, true),
            (100, true),
            (599, true),
            (99, false),
            (600, false),
        ] {
            assert_eq!(HealthCheck::status(code).is_ok(), valid, "{code}");
        }
    }
}
