//! The `registry-copy` deploy target: copies the promoted digest from Gantry's
//! repository to the declared registry with its referrers (signatures, SBOMs,
//! attestations), tags it with the build's own tag (always, when the build has one)
//! and the environment's name (unless `env_tag: false`), and verifies that the
//! destination serves that digest by digest and under each tag.
//!
//! ```yaml
//! environments:
//!   prod: { target: { registry-copy: { to: "prod-registry.example.com/acme/web-app", env_tag: false } } }
//! ```
//!
//! A destination that keeps tags immutable refuses to move the environment tag on
//! the second promotion; the deployment then fails saying so and naming `env_tag`.
//!
//! Credentials and transport per destination registry come from the server's
//! configuration ([`RegistryCopySettings`]); passwords are secret references read
//! at each deployment, so rotating one needs no restart.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use blobs::BlobStore;
use deploy::{
    AttachContext, AttachFuture, DeployContext, DeployError, DeployFuture, Deployer,
    ObserveContext, ObserveFuture, Secrets,
};
use domain::application::{RegistryCopyTarget, SecretRef, Target};
use domain::{Digest, RepoName, Tag};
use serde::Deserialize;
use store::Store;

use crate::CopyError;
use crate::auth::Credentials;
use crate::client::{ClientOptions, RegistryClient, RegistryEndpoint};
use crate::copier::{CopySettings, Destination, Progress, ProgressEvent, copy};
use crate::reference::ManifestReference;
use crate::source::{Source, StoreSource};

/// Server configuration of the `registry-copy` target (`[deploy.registry_copy]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryCopySettings {
    /// Per destination registry, keyed by `host[:port]` exactly as written in the
    /// targets' `to:`. A registry not listed is reached anonymously over HTTPS.
    pub registries: BTreeMap<String, DestinationRegistry>,
    /// Seconds allowed for each request that moves no blob (default 30).
    pub request_timeout_seconds: u64,
    /// Seconds allowed for each blob transfer (default 3600).
    pub transfer_timeout_seconds: u64,
    /// Blobs copied at the same time (default 4).
    pub parallel_blobs: usize,
}

impl Default for RegistryCopySettings {
    fn default() -> Self {
        RegistryCopySettings {
            registries: BTreeMap::new(),
            request_timeout_seconds: 30,
            transfer_timeout_seconds: 3600,
            parallel_blobs: CopySettings::default().parallel_blobs,
        }
    }
}

/// How to reach one destination registry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DestinationRegistry {
    /// User name for Basic authentication or the token service.
    pub username: Option<String>,
    /// The secret (a file under `[deploy] secrets_dir`) holding the password or
    /// access token, e.g. `registries/prod`.
    pub password_secret: Option<String>,
    /// Speak plain HTTP instead of HTTPS (only for a registry on a trusted network).
    pub plain_http: bool,
}

/// Why the settings cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    #[error("registry_copy.registries.\"{registry}\": {message}")]
    Registry { registry: String, message: String },
    #[error("registry_copy.{field} must be greater than 0")]
    Zero { field: &'static str },
}

/// A destination registry's settings, checked.
#[derive(Debug, Clone)]
struct RegistryAccess {
    username: Option<String>,
    password: Option<SecretRef>,
    plain_http: bool,
}

/// Carries out `registry-copy` deployments.
pub struct RegistryCopyDeployer {
    registries: BTreeMap<String, RegistryAccess>,
    client: ClientOptions,
    copy: CopySettings,
    store: Store,
    blobs: BlobStore,
    secrets: Secrets,
}

impl RegistryCopyDeployer {
    /// A deployer reading artifacts from `store`/`blobs`, passwords through
    /// `secrets`, and reaching registries through the outbound guard `policy`.
    pub fn new(
        settings: RegistryCopySettings,
        store: Store,
        blobs: BlobStore,
        secrets: Secrets,
        policy: Arc<outbound::Policy>,
    ) -> Result<RegistryCopyDeployer, SettingsError> {
        if settings.request_timeout_seconds == 0 {
            return Err(SettingsError::Zero {
                field: "request_timeout_seconds",
            });
        }
        if settings.transfer_timeout_seconds == 0 {
            return Err(SettingsError::Zero {
                field: "transfer_timeout_seconds",
            });
        }
        if settings.parallel_blobs == 0 {
            return Err(SettingsError::Zero {
                field: "parallel_blobs",
            });
        }
        let mut registries = BTreeMap::new();
        for (registry, access) in settings.registries {
            let invalid = |message: String| SettingsError::Registry {
                registry: registry.clone(),
                message,
            };
            if !domain::application::is_registry_host(&registry) {
                return Err(invalid("is not a registry host (HOST[:PORT])".to_owned()));
            }
            let password = access
                .password_secret
                .as_deref()
                .map(SecretRef::parse)
                .transpose()
                .map_err(|e| invalid(format!("password_secret: {e}")))?;
            if access.username.is_some() != password.is_some() {
                return Err(invalid(
                    "set both username and password_secret, or neither".to_owned(),
                ));
            }
            registries.insert(
                registry,
                RegistryAccess {
                    username: access.username,
                    password,
                    plain_http: access.plain_http,
                },
            );
        }
        let mut client = ClientOptions::new(policy);
        client.request_timeout = Duration::from_secs(settings.request_timeout_seconds);
        client.transfer_timeout = Duration::from_secs(settings.transfer_timeout_seconds);
        Ok(RegistryCopyDeployer {
            registries,
            client,
            copy: CopySettings {
                parallel_blobs: settings.parallel_blobs,
            },
            store,
            blobs,
            secrets,
        })
    }

    /// A client for the destination registry, with its password read now.
    fn client_for(&self, registry: &str) -> Result<RegistryClient, DeployError> {
        let access = self.registries.get(registry);
        let credentials = match access {
            Some(RegistryAccess {
                username: Some(username),
                password: Some(password),
                ..
            }) => Some(Credentials::new(
                username.clone(),
                self.secrets.read(password).map_err(DeployError::Failed)?,
            )),
            _ => None,
        };
        RegistryClient::new(
            RegistryEndpoint {
                registry: registry.to_owned(),
                plain_http: access.is_some_and(|access| access.plain_http),
                credentials,
            },
            &self.client,
        )
        .map_err(|e| DeployError::Failed(e.to_string()))
    }

    async fn run(&self, job: &DeployContext<'_>) -> Result<String, DeployError> {
        let target = registry_copy_target(&job.environment.target)?;
        let digest = Digest::parse(&job.order.digest)
            .map_err(|e| DeployError::Failed(format!("the deployment's digest is invalid: {e}")))?;
        let mut tags = Vec::new();
        if let Some(build_tag) = job.order.tag.as_deref() {
            tags.push(Tag::parse(build_tag).map_err(|e| {
                DeployError::Failed(format!("the build's tag `{build_tag}` is invalid: {e}"))
            })?);
        }
        let environment_tag = if target.env_tag {
            Some(environment_tag(&job.order.environment)?)
        } else {
            None
        };
        if let Some(tag) = &environment_tag
            && !tags.contains(tag)
        {
            tags.push(tag.clone());
        }
        let repository = RepoName::parse(job.repository)
            .map_err(|e| DeployError::Failed(format!("the source repository is invalid: {e}")))?;
        let destination_name = target.to.to_string();
        let shown: Vec<&str> = tags.iter().map(Tag::as_str).collect();
        job.log.line(format!(
            "copying {repository}@{digest} to {destination_name}{}",
            if shown.is_empty() {
                " by digest".to_owned()
            } else {
                format!(" as {}", shown.join(", "))
            }
        ));
        let source = StoreSource::open(self.store.clone(), self.blobs.clone(), repository)
            .await
            .map_err(deploy_error)?;
        let client = self.client_for(target.to.registry())?;
        let destination_repository = target.to.repository().clone();
        let settings = self.copy;
        let log = job.log.clone();
        let (report, referrers) = tokio::task::spawn_blocking(move || {
            let progress = |progress: &Progress| log_progress(&log, progress);
            let destination = Destination {
                client: &client,
                repository: &destination_repository,
                tags: &tags,
            };
            let report = copy(
                &source,
                &ManifestReference::Digest(digest.clone()),
                destination,
                settings,
                &progress,
            )?;
            // Signatures, SBOMs and attestations travel with the artifact, by digest.
            let referrers = source.referrers(&digest)?;
            for referrer in &referrers {
                log.line(format!("copying referrer {referrer}"));
                copy(
                    &source,
                    &ManifestReference::Digest(referrer.clone()),
                    Destination {
                        tags: &[],
                        ..destination
                    },
                    settings,
                    &progress,
                )?;
            }
            Ok::<_, CopyError>((report, referrers.len()))
        })
        .await
        .map_err(|e| DeployError::Transient(format!("the copy task failed: {e}")))?
        .map_err(|error| refused_tag(error, environment_tag.as_ref()))?;
        let tags: Vec<&str> = report.tags.iter().map(Tag::as_str).collect();
        let note = format!(
            "copied {} to {}{} and verified it ({} of {} blobs copied, {} mounted, {} already there; {} bytes sent; {} referrer(s))",
            report.digest,
            destination_name,
            if tags.is_empty() {
                String::new()
            } else {
                format!(" as {}", tags.join(", "))
            },
            report.blobs_copied,
            report.blobs_total,
            report.blobs_mounted,
            report.blobs_present,
            report.bytes_copied,
            referrers
        );
        job.log.line(note.clone());
        Ok(note)
    }

    /// Copies `context.referrers` (attestations made after the deployment) to the
    /// destination, beside the artifact.
    async fn carry(&self, context: &AttachContext<'_>) -> Result<String, DeployError> {
        let target = registry_copy_target(&context.spec.target)?;
        let repository = RepoName::parse(context.repository)
            .map_err(|e| DeployError::Failed(format!("the source repository is invalid: {e}")))?;
        let referrers = context
            .referrers
            .iter()
            .map(|digest| Digest::parse(digest))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| DeployError::Failed(format!("a referrer's digest is invalid: {e}")))?;
        let source = StoreSource::open(self.store.clone(), self.blobs.clone(), repository)
            .await
            .map_err(deploy_error)?;
        let client = self.client_for(target.to.registry())?;
        let destination_repository = target.to.repository().clone();
        let destination_name = target.to.to_string();
        let settings = self.copy;
        let count = referrers.len();
        tokio::task::spawn_blocking(move || {
            for referrer in &referrers {
                copy(
                    &source,
                    &ManifestReference::Digest(referrer.clone()),
                    Destination {
                        client: &client,
                        repository: &destination_repository,
                        tags: &[],
                    },
                    settings,
                    &|_: &Progress| {},
                )?;
            }
            Ok::<_, CopyError>(())
        })
        .await
        .map_err(|e| DeployError::Transient(format!("the copy task failed: {e}")))?
        .map_err(deploy_error)?;
        Ok(format!(
            "copied {count} referrer(s) of {} to {destination_name}",
            context.digest
        ))
    }

    async fn read_back(&self, target: &ObserveContext<'_>) -> Result<Option<String>, String> {
        let Target::RegistryCopy(copy_target) = &target.spec.target else {
            return Ok(None);
        };
        // Without an environment tag nothing at the destination says what runs.
        if !copy_target.env_tag {
            return Ok(None);
        }
        let tag = environment_tag(target.environment).map_err(|e| e.to_string())?;
        let client = self
            .client_for(copy_target.to.registry())
            .map_err(|e| e.to_string())?;
        let repository = copy_target.to.repository().clone();
        tokio::task::spawn_blocking(move || {
            client.manifest_digest(&repository, &ManifestReference::Tag(tag))
        })
        .await
        .map_err(|e| format!("reading the destination failed: {e}"))?
        .map_err(|e| e.to_string())
    }
}

impl Deployer for RegistryCopyDeployer {
    fn kind(&self) -> &'static str {
        "registry-copy"
    }

    fn deploy<'a>(&'a self, job: &'a DeployContext<'a>) -> DeployFuture<'a> {
        Box::pin(async move {
            let outcome = self.run(job).await;
            if let Err(error) = &outcome {
                job.log.line(format!("failed: {error}"));
            }
            outcome
        })
    }

    /// Copies attestations made after the deployment to the destination.
    fn attach<'a>(&'a self, context: &'a AttachContext<'a>) -> AttachFuture<'a> {
        Box::pin(self.carry(context))
    }

    /// The digest the destination's environment tag names.
    fn observe<'a>(&'a self, target: &'a ObserveContext<'a>) -> ObserveFuture<'a> {
        Box::pin(self.read_back(target))
    }
}

fn registry_copy_target(target: &Target) -> Result<&RegistryCopyTarget, DeployError> {
    match target {
        Target::RegistryCopy(target) => Ok(target),
        other => Err(DeployError::Failed(format!(
            "the registry-copy deployer was handed a `{}` target",
            other.kind_name()
        ))),
    }
}

/// The tag an environment's deployments carry at the destination: its name.
fn environment_tag(environment: &str) -> Result<Tag, DeployError> {
    Tag::parse(environment).map_err(|e| {
        DeployError::Failed(format!(
            "environment `{environment}` cannot be used as a tag: {e}"
        ))
    })
}

/// A copy error as a deployment error; a refused environment tag says what to set.
fn refused_tag(error: CopyError, environment_tag: Option<&Tag>) -> DeployError {
    if let CopyError::TagNotMoved { tag, .. } = &error {
        let advice = if Some(tag) == environment_tag {
            format!(
                "; set `env_tag: false` on this environment's registry-copy target (the build's own tag is still carried), or let tag `{tag}` move at the destination"
            )
        } else {
            format!(
                "; the build's tag `{tag}` names other bytes there: push each build under a tag of its own"
            )
        };
        return DeployError::Failed(format!("{error}{advice}"));
    }
    deploy_error(error)
}

fn deploy_error(error: CopyError) -> DeployError {
    if error.is_transient() {
        DeployError::Transient(error.to_string())
    } else {
        DeployError::Failed(error.to_string())
    }
}

fn log_progress(log: &deploy::DeployLog, progress: &Progress) {
    match &progress.event {
        ProgressEvent::Planned { manifests } => log.line(format!(
            "{manifests} manifest(s), {} blob(s), {} bytes to check",
            progress.blobs_total, progress.bytes_total
        )),
        ProgressEvent::BlobPresent(digest) => {
            log.line(format!("blob {digest}: already at the destination"));
        }
        ProgressEvent::BlobMounted(digest) => log.line(format!("blob {digest}: mounted")),
        ProgressEvent::BlobCopied { digest, size } => {
            log.line(format!(
                "blob {digest}: copied {size} bytes, digest verified"
            ));
        }
        ProgressEvent::ManifestPushed(reference) => {
            log.line(format!("manifest pushed as {reference}"));
        }
        ProgressEvent::Verified(digest) => {
            log.line(format!("the destination serves {digest}"));
        }
        ProgressEvent::Bytes => {}
    }
}
