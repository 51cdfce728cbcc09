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
    pub(crate) limits: Limits,
    pub(crate) registry: RegistrySection,
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
            limits: Limits::default(),
            registry: RegistrySection::default(),
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

    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        if self.limits.max_manifest_bytes == 0 || self.limits.max_blob_bytes == 0 {
            bail!("limits must be positive");
        }
        if self.limits.upload_ttl_seconds == 0 || self.limits.maintenance_interval_seconds == 0 {
            bail!("upload_ttl_seconds and maintenance_interval_seconds must be positive");
        }
        if self.max_connections == 0 {
            bail!("max_connections must be positive");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
