//! The server's configuration: defaults, then `gantry.toml`, then `GANTRY_*`
//! environment variables, then command-line flags, each layer overriding the last.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;

/// Everything `gantry serve` can be told. Every key may be set in `gantry.toml`;
/// the commonly changed ones also by environment variable and flag (see `ServeArgs`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Config {
    /// Address to listen on for the registry and the API.
    pub(crate) listen: SocketAddr,
    /// Directory for the embedded database and blobs when no URLs are given.
    pub(crate) data_dir: PathBuf,
    /// `sqlite://PATH` or `postgres://USER@HOST/DB`; default: SQLite in `data_dir`.
    pub(crate) database_url: Option<String>,
    /// A directory, `file:///PATH` or `memory://`; default: `data_dir/blobs`.
    pub(crate) blob_store: Option<String>,
    /// Flush blob files and database commits to disk before acknowledging them. Off by
    /// default: a crash of the process never loses an acknowledged write (the page
    /// cache survives it); turn it on to survive power loss too, at the disk's speed.
    pub(crate) fsync: bool,
    /// `text` or `json`.
    pub(crate) log_format: LogFormat,
    /// Whether pulls need no credentials.
    pub(crate) anonymous_pull: bool,
    /// Maximum database connections (PostgreSQL) or SQLite readers.
    pub(crate) max_connections: u32,
    /// The base URL clients reach Gantry at (`https://gantry.example.com`), named in
    /// the registry's token challenges; default: each request's `Host`.
    pub(crate) external_url: Option<String>,
    pub(crate) limits: Limits,
    pub(crate) http: HttpSection,
    pub(crate) web: WebSection,
    pub(crate) registry: RegistrySection,
    pub(crate) access: AccessSection,
    pub(crate) outbound: OutboundSection,
    pub(crate) deploy: DeploySection,
    pub(crate) gc: GcSection,
    pub(crate) signing: SigningSection,
}

/// `[signing]`: the key Gantry signs with, and what it signs.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct SigningSection {
    /// The PEM file of the private key (ECDSA P-256, PKCS#8), made (mode 0600) on
    /// first start when absent; default `gantry-signing-key.pem` under `[deploy]
    /// secrets_dir`. Every replica must read the same file.
    pub(crate) key_file: Option<PathBuf>,
    /// Sign an attestation of every successful deployment and store it beside the
    /// image as an OCI referrer.
    pub(crate) attest_deployments: bool,
    /// Sign a checkpoint of the audit log once this many entries were appended since
    /// the last one, or `checkpoint_minutes` passed with any appended; 0 turns that
    /// trigger off.
    pub(crate) checkpoint_entries: u64,
    pub(crate) checkpoint_minutes: u64,
}

impl Default for SigningSection {
    fn default() -> Self {
        SigningSection {
            key_file: None,
            attest_deployments: true,
            checkpoint_entries: 1000,
            checkpoint_minutes: 10,
        }
    }
}

/// `[gc]`: garbage collection.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct GcSection {
    /// Seconds between scheduled passes; 0: only passes run by hand (`gantry gc`).
    pub(crate) interval_seconds: u64,
    /// Seconds a blob no manifest references stays before it is deleted: longer than
    /// any client takes between uploading a blob and pushing the manifest that needs
    /// it (or between an existence check and that push).
    pub(crate) grace_seconds: u64,
}

impl Default for GcSection {
    fn default() -> Self {
        GcSection {
            interval_seconds: 3600,
            grace_seconds: 3600,
        }
    }
}

impl GcSection {
    /// As the server takes it.
    pub(crate) fn settings(&self) -> server::GcSettings {
        server::GcSettings {
            interval: (self.interval_seconds > 0)
                .then(|| std::time::Duration::from_secs(self.interval_seconds)),
            grace: std::time::Duration::from_secs(self.grace_seconds),
        }
    }
}

/// Deployments: how their durable jobs run, where targets keep their work and read
/// secrets, and each target's own settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct DeploySection {
    /// Files holding the secrets targets name by `secret_ref`; default `data_dir/secrets`.
    pub(crate) secrets_dir: Option<PathBuf>,
    /// Scratch space of targets (git clones, unpacked sites); default `data_dir/deploy`.
    pub(crate) work_dir: Option<PathBuf>,
    /// This replica's name in job leases and logs; default the host name.
    pub(crate) replica: Option<String>,
    /// Seconds a claimed job stays this replica's without a heartbeat (after a crash,
    /// the job is picked up again once they have passed).
    pub(crate) lease_seconds: u64,
    /// Attempts in all before a transient failure is final.
    pub(crate) max_attempts: u32,
    /// Seconds before the second attempt, doubling (jittered) up to `retry_max_seconds`.
    pub(crate) retry_base_seconds: u64,
    pub(crate) retry_max_seconds: u64,
    /// Seconds one attempt may take.
    pub(crate) timeout_seconds: u64,
    /// Seconds an API request that started a deployment waits for it.
    pub(crate) wait_seconds: u64,
    /// Jobs one replica's worker runs at once.
    pub(crate) concurrency: usize,
    /// Seconds between reads of what each environment's target actually runs (drift);
    /// 0 turns the reconcile loop off.
    pub(crate) reconcile_interval_seconds: u64,
    /// `[deploy.registry_copy]`: destination registries' credentials and transfer limits.
    pub(crate) registry_copy: regcopy::RegistryCopySettings,
    /// `[deploy.static_site]`: archive limits, the S3 endpoint and credentials, cache
    /// headers.
    pub(crate) static_site: site::StaticSiteSettings,
    /// `[deploy.gitops]`: commit identity, push attempts, git credentials by host.
    pub(crate) gitops: gitops::GitopsSettings,
}

impl Default for DeploySection {
    fn default() -> Self {
        let jobs = engine::JobSettings::default();
        DeploySection {
            secrets_dir: None,
            work_dir: None,
            replica: None,
            lease_seconds: jobs.lease.as_secs(),
            max_attempts: jobs.max_attempts,
            retry_base_seconds: jobs.retry_base.as_secs(),
            retry_max_seconds: jobs.retry_max.as_secs(),
            timeout_seconds: jobs.timeout.as_secs(),
            wait_seconds: jobs.wait.as_secs(),
            concurrency: jobs.concurrency,
            reconcile_interval_seconds: 60,
            registry_copy: regcopy::RegistryCopySettings::default(),
            static_site: site::StaticSiteSettings::default(),
            gitops: gitops::GitopsSettings::default(),
        }
    }
}

impl DeploySection {
    /// The job settings, checked.
    pub(crate) fn jobs(&self) -> anyhow::Result<engine::JobSettings> {
        if self.lease_seconds == 0 || self.max_attempts == 0 || self.concurrency == 0 {
            bail!("deploy: lease_seconds, max_attempts and concurrency must be at least 1");
        }
        let defaults = engine::JobSettings::default();
        Ok(engine::JobSettings {
            lease: std::time::Duration::from_secs(self.lease_seconds),
            max_attempts: self.max_attempts,
            retry_base: std::time::Duration::from_secs(self.retry_base_seconds),
            retry_max: std::time::Duration::from_secs(
                self.retry_max_seconds.max(self.retry_base_seconds),
            ),
            timeout: std::time::Duration::from_secs(self.timeout_seconds.max(1)),
            wait: std::time::Duration::from_secs(self.wait_seconds),
            concurrency: self.concurrency,
            replica: self
                .replica
                .clone()
                .or_else(host_name)
                .unwrap_or(defaults.replica),
            ..defaults
        })
    }
}

/// Requests Gantry makes to URLs people configure (OIDC issuers' keys; deploy
/// targets). Loopback, private, link-local and cloud-metadata addresses are refused
/// unless listed here.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct OutboundSection {
    /// Addresses or networks that may be reached anyway: `["10.20.0.0/16", "127.0.0.1"]`.
    pub(crate) allow: Vec<String>,
}

impl OutboundSection {
    pub(crate) fn policy(&self) -> anyhow::Result<outbound::Policy> {
        outbound::Policy::parse(&self.allow).map_err(|e| anyhow::anyhow!("outbound.allow: {e}"))
    }
}

/// Access: trusted CI token issuers and the rate of credential requests.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct AccessSection {
    /// Trust GitHub Actions' OIDC issuer (`https://token.actions.githubusercontent.com`,
    /// keys from its discovery document). Trust is only where a `TrustPolicy` grants it.
    pub(crate) github_actions: bool,
    /// More issuers: `[[access.oidc_issuers]] issuer = "https://gitlab.example.com"`.
    pub(crate) oidc_issuers: Vec<OidcIssuer>,
    /// Seconds an issuer's keys are cached before they are fetched again.
    pub(crate) jwks_max_age_seconds: u64,
    /// The least seconds between key fetches caused by tokens naming unknown key ids.
    pub(crate) jwks_min_refetch_seconds: u64,
    /// Failed credential checks (bad tokens or passwords on any request, refused job
    /// tokens) a client address, and separately an account, may make per minute once
    /// its burst is spent; beyond that its requests are refused with 429 unchecked.
    /// Successful checks are never limited.
    #[serde(alias = "credential_rate_per_minute")]
    pub(crate) failed_credentials_per_minute: u32,
    /// How many failed checks a client address or an account may make at once.
    #[serde(alias = "credential_burst")]
    pub(crate) failed_credentials_burst: u32,
}

/// `[[access.oidc_issuers]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OidcIssuer {
    /// The exact `iss` of its tokens.
    pub(crate) issuer: String,
    /// Its JWKS; default: from `ISSUER/.well-known/openid-configuration`.
    pub(crate) jwks_uri: Option<String>,
    /// `RS256` and/or `ES256`; default both.
    #[serde(default = "default_algorithms")]
    pub(crate) algorithms: Vec<String>,
}

fn default_algorithms() -> Vec<String> {
    vec!["RS256".to_owned(), "ES256".to_owned()]
}

impl Default for AccessSection {
    fn default() -> Self {
        AccessSection {
            github_actions: true,
            oidc_issuers: Vec::new(),
            jwks_max_age_seconds: 3600,
            jwks_min_refetch_seconds: 60,
            failed_credentials_per_minute: 30,
            failed_credentials_burst: 30,
        }
    }
}

impl AccessSection {
    /// The trusted issuers, checked.
    pub(crate) fn issuers(&self) -> anyhow::Result<Vec<auth::oidc::IssuerConfig>> {
        let mut issuers = Vec::new();
        if self.github_actions {
            issuers.push(auth::oidc::IssuerConfig::github_actions());
        }
        for issuer in &self.oidc_issuers {
            if !domain::trust::valid_issuer(&issuer.issuer) {
                bail!(
                    "access.oidc_issuers: {} must be an https URL (or http on a loopback address)",
                    issuer.issuer
                );
            }
            if let Some(uri) = &issuer.jwks_uri
                && !domain::trust::valid_issuer(uri)
            {
                bail!(
                    "access.oidc_issuers: jwks_uri {uri} must be https (or http on a loopback address)"
                );
            }
            if issuers
                .iter()
                .any(|known: &auth::oidc::IssuerConfig| known.issuer == issuer.issuer)
            {
                bail!("access.oidc_issuers: {} is listed twice", issuer.issuer);
            }
            let mut algorithms = Vec::new();
            for name in &issuer.algorithms {
                match auth::oidc::Algorithm::parse(name) {
                    Some(algorithm) => algorithms.push(algorithm),
                    None => bail!(
                        "access.oidc_issuers: algorithm {name} is not accepted: use RS256 or ES256"
                    ),
                }
            }
            if algorithms.is_empty() {
                bail!(
                    "access.oidc_issuers: {} needs at least one algorithm",
                    issuer.issuer
                );
            }
            issuers.push(auth::oidc::IssuerConfig {
                issuer: issuer.issuer.clone(),
                jwks_uri: issuer.jwks_uri.clone(),
                algorithms,
            });
        }
        Ok(issuers)
    }
}

/// Size and time limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Limits {
    /// Largest manifest accepted, in bytes.
    pub(crate) max_manifest_bytes: usize,
    /// Largest blob accepted, in bytes.
    pub(crate) max_blob_bytes: u64,
    /// Seconds an untouched upload session lives before it is purged.
    pub(crate) upload_ttl_seconds: u64,
    /// Seconds between purges of expired upload sessions.
    pub(crate) maintenance_interval_seconds: u64,
}

/// `[http]`: how long and how slowly a client may hold a connection.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct HttpSection {
    /// Seconds a request head may take from its first byte; also the window over
    /// which a request body's rate is measured.
    pub(crate) header_read_timeout_seconds: u64,
    /// Seconds a keep-alive connection may wait with no request under way, or with
    /// a response nobody reads, before it is closed.
    pub(crate) idle_timeout_seconds: u64,
    /// The least bytes per second a request body must arrive at (measured over time
    /// spent waiting for it); a slower upload is cut, its session stays resumable.
    /// 0 turns the bound off.
    pub(crate) min_body_bytes_per_second: u64,
    /// The most connections one client address (IPv6: one /64) may hold open.
    pub(crate) max_connections_per_address: usize,
}

impl Default for HttpSection {
    fn default() -> Self {
        let limits = server::connections::ConnectionLimits::default();
        HttpSection {
            header_read_timeout_seconds: limits.header_read_timeout.as_secs(),
            idle_timeout_seconds: limits.idle_timeout.as_secs(),
            min_body_bytes_per_second: limits.min_body_bytes_per_second,
            max_connections_per_address: limits.max_connections_per_address,
        }
    }
}

impl HttpSection {
    pub(crate) fn limits(&self) -> server::connections::ConnectionLimits {
        server::connections::ConnectionLimits {
            header_read_timeout: std::time::Duration::from_secs(self.header_read_timeout_seconds),
            idle_timeout: std::time::Duration::from_secs(self.idle_timeout_seconds),
            min_body_bytes_per_second: self.min_body_bytes_per_second,
            max_connections_per_address: self.max_connections_per_address,
        }
    }
}

/// `[web]`: how long a web UI session lasts.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct WebSection {
    /// Minutes a session may go unused before it ends.
    pub(crate) session_idle_minutes: u64,
    /// Hours after signing in that a session ends, however busy.
    pub(crate) session_max_hours: u64,
}

impl Default for WebSection {
    fn default() -> Self {
        let policy = auth::sessions::SessionPolicy::default();
        WebSection {
            session_idle_minutes: policy.idle.as_secs() / 60,
            session_max_hours: policy.absolute.as_secs() / 3600,
        }
    }
}

impl WebSection {
    pub(crate) fn sessions(&self) -> auth::sessions::SessionPolicy {
        auth::sessions::SessionPolicy {
            idle: std::time::Duration::from_secs(self.session_idle_minutes * 60),
            absolute: std::time::Duration::from_secs(self.session_max_hours * 3600),
        }
    }
}

/// Registry policy.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RegistrySection {
    /// Rules that let some tags move; all other tags are immutable.
    pub(crate) mutable_tags: Vec<MutableTags>,
    /// Who may create a repository by pushing to a new name: `admins` or `never`
    /// (then repositories come only from applications declared with `gantry apply`).
    pub(crate) repository_creation: RepositoryCreation,
    /// Per-namespace exceptions: `[[registry.namespace_creation]] namespace = "platform"
    /// policy = "never"`; the first rule whose glob matches a repository's namespace
    /// decides.
    pub(crate) namespace_creation: Vec<NamespaceCreation>,
    /// What a quarantined digest is refused to: `deny-pulls` (pulls too, the default)
    /// or `deny-deployments` (promotions, rollbacks onto it and admission only).
    pub(crate) quarantine: QuarantineMode,
}

/// `registry.quarantine`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum QuarantineMode {
    #[default]
    DenyPulls,
    DenyDeployments,
}

/// `[[registry.namespace_creation]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NamespaceCreation {
    pub(crate) namespace: String,
    pub(crate) policy: RepositoryCreation,
}

/// `registry.repository_creation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RepositoryCreation {
    #[default]
    Admins,
    Never,
}

/// `[[registry.mutable_tags]] repository = "acme/*"  tags = ["latest"]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MutableTags {
    pub(crate) repository: String,
    pub(crate) tags: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LogFormat {
    Text,
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 5000)),
            data_dir: PathBuf::from("gantry-data"),
            database_url: None,
            blob_store: None,
            fsync: false,
            log_format: LogFormat::Text,
            anonymous_pull: false,
            max_connections: 16,
            external_url: None,
            limits: Limits::default(),
            http: HttpSection::default(),
            web: WebSection::default(),
            registry: RegistrySection::default(),
            access: AccessSection::default(),
            outbound: OutboundSection::default(),
            deploy: DeploySection::default(),
            gc: GcSection::default(),
            signing: SigningSection::default(),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_manifest_bytes: 4 << 20,
            max_blob_bytes: 1 << 40,
            upload_ttl_seconds: 24 * 3600,
            maintenance_interval_seconds: 600,
        }
    }
}

impl Config {
    /// Reads `path` if given, else `./gantry.toml` if it exists, else the defaults.
    pub(crate) fn load(path: Option<&Path>) -> anyhow::Result<Config> {
        let (path, required) = match path {
            Some(path) => (path.to_path_buf(), true),
            None => (PathBuf::from("gantry.toml"), false),
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text)
                .with_context(|| format!("invalid configuration file {}", path.display())),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound && !required => {
                Ok(Config::default())
            }
            Err(error) => Err(error)
                .with_context(|| format!("cannot read configuration file {}", path.display())),
        }
    }

    /// The database URL, defaulting to SQLite inside the data directory.
    pub(crate) fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("gantry.db").display()))
    }

    /// The blob store URL, defaulting to a directory inside the data directory.
    pub(crate) fn blob_store(&self) -> String {
        self.blob_store
            .clone()
            .unwrap_or_else(|| self.data_dir.join("blobs").display().to_string())
    }

    /// The files holding targets' secrets: `[deploy] secrets_dir`, default
    /// `data_dir/secrets`.
    pub(crate) fn secrets_dir(&self) -> PathBuf {
        self.deploy
            .secrets_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("secrets"))
    }

    /// The signing key's file: `[signing] key_file`, default
    /// `gantry-signing-key.pem` in [`Config::secrets_dir`].
    pub(crate) fn signing_key_file(&self) -> PathBuf {
        self.signing
            .key_file
            .clone()
            .unwrap_or_else(|| self.secrets_dir().join("gantry-signing-key.pem"))
    }

    /// Where blobs live, read from [`Config::blob_store`].
    pub(crate) fn blob_store_config(&self) -> anyhow::Result<blobs::BlobStoreConfig> {
        Ok(blobs::BlobStoreConfig::parse(&self.blob_store())?)
    }

    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        self.blob_store_config()?;
        if self.limits.max_manifest_bytes == 0 || self.limits.max_blob_bytes == 0 {
            bail!("limits must be positive");
        }
        if self.limits.upload_ttl_seconds == 0 || self.limits.maintenance_interval_seconds == 0 {
            bail!("upload_ttl_seconds and maintenance_interval_seconds must be positive");
        }
        if self.max_connections == 0 {
            bail!("max_connections must be positive");
        }
        if self.gc.grace_seconds == 0 {
            bail!(
                "[gc] grace_seconds must be positive: it is how long a blob just uploaded waits for the manifest that needs it"
            );
        }
        if let Some(url) = &self.external_url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            bail!("external_url must be an http(s) URL, not {url}");
        }
        if self.access.failed_credentials_per_minute == 0
            || self.access.failed_credentials_burst == 0
        {
            bail!(
                "access.failed_credentials_per_minute and failed_credentials_burst must be positive"
            );
        }
        if self.web.session_idle_minutes == 0 || self.web.session_max_hours == 0 {
            bail!("web.session_idle_minutes and web.session_max_hours must be positive");
        }
        if self.http.header_read_timeout_seconds == 0
            || self.http.idle_timeout_seconds == 0
            || self.http.max_connections_per_address == 0
        {
            bail!(
                "http.header_read_timeout_seconds, idle_timeout_seconds and max_connections_per_address must be positive"
            );
        }
        if self.access.jwks_max_age_seconds == 0 {
            bail!("access.jwks_max_age_seconds must be positive");
        }
        self.access.issuers()?;
        self.outbound.policy()?;
        Ok(())
    }
}

/// The machine's host name, when it can be read.
pub(crate) fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readme_configuration_example_parses_and_validates() {
        let readme = include_str!("../../../README.md");
        let section = readme
            .split("## Configure it")
            .nth(1)
            .expect("the README has a Configure it section");
        let example = section
            .split("```toml\n")
            .nth(1)
            .and_then(|rest| rest.split("```").next())
            .expect("the section has a toml example");
        let config: Config = toml::from_str(example).expect("the README's example parses");
        config.validate().expect("and is valid");
        let jobs = config.deploy.jobs().expect("deploy settings");
        assert_eq!(jobs.lease, std::time::Duration::from_secs(30));
        assert_eq!(config.deploy.gitops.credentials.len(), 2);
        assert_eq!(config.deploy.registry_copy.registries.len(), 1);
        assert_eq!(config.deploy.static_site.s3.region, "eu-west-1");
        assert_eq!(
            example,
            include_str!("settings.toml"),
            "`gantry serve --help` shows the README's settings: keep crates/gantry/src/settings.toml and the README one"
        );
    }

    #[test]
    fn a_full_configuration_file_parses_and_unknown_keys_are_refused() {
        let text = r#"
            listen = "0.0.0.0:6000"
            data_dir = "/var/lib/gantry"
            database_url = "postgres://gantry@db/gantry"
            blob_store = "file:///srv/blobs"
            fsync = true
            log_format = "json"
            anonymous_pull = true
            max_connections = 8
            [limits]
            max_manifest_bytes = 1024
            max_blob_bytes = 2048
            upload_ttl_seconds = 60
            maintenance_interval_seconds = 5
            [registry]
            repository_creation = "never"
            [[registry.mutable_tags]]
            repository = "acme/*"
            tags = ["latest"]
            [[registry.namespace_creation]]
            namespace = "sandbox-*"
            policy = "admins"
        "#;
        let config: Config = toml::from_str(text).expect("parses");
        assert_eq!(config.listen.port(), 6000);
        assert_eq!(config.log_format, LogFormat::Json);
        assert_eq!(config.limits.max_blob_bytes, 2048);
        assert_eq!(
            config.registry.mutable_tags[0].tags,
            vec!["latest".to_owned()]
        );
        assert_eq!(
            config.registry.repository_creation,
            RepositoryCreation::Never
        );
        assert_eq!(config.registry.namespace_creation[0].namespace, "sandbox-*");
        assert_eq!(
            config.registry.namespace_creation[0].policy,
            RepositoryCreation::Admins
        );
        assert!(toml::from_str::<Config>("listen_address = \"x\"").is_err());
        assert!(toml::from_str::<Config>("[limits]\nmax_blobs = 1").is_err());
    }

    #[test]
    fn defaults_put_everything_under_the_data_directory() {
        let config = Config::default();
        assert_eq!(config.listen.to_string(), "127.0.0.1:5000");
        assert_eq!(config.database_url(), "sqlite://gantry-data/gantry.db");
        assert_eq!(config.blob_store(), "gantry-data/blobs");
    }

    #[test]
    fn a_blob_store_gantry_cannot_use_is_refused_when_the_configuration_is_read() {
        let mut config = Config {
            blob_store: Some("s3://gantry-blobs/registry?endpoint=http://127.0.0.1:8333".into()),
            ..Config::default()
        };
        config.validate().expect("an S3 bucket");
        for bad in ["gs://bucket", "s3://Bucket", "s3://b?endpoint=ftp://x"] {
            config.blob_store = Some(bad.to_owned());
            let error = config.validate().expect_err(bad).to_string();
            assert!(error.contains("unsupported blob store"), "{bad}: {error}");
        }
    }
}
