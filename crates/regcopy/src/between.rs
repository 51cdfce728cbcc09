//! `gantry copy SRC DST`: one artifact from one registry to another (or to another
//! repository of the same registry, where blobs are mounted rather than copied).

use std::sync::Arc;

use crate::CopyError;
use crate::auth::Credentials;
use crate::client::{ClientOptions, RegistryClient, RegistryEndpoint};
use crate::copier::{CopyReport, CopySettings, Destination, Progress, copy};
use crate::reference::{ImageReference, ManifestReference};
use crate::source::RegistrySource;

/// How to reach one side of a copy.
#[derive(Debug, Clone, Default)]
pub struct EndpointOptions {
    /// `None`: anonymous.
    pub credentials: Option<Credentials>,
    /// Speak plain HTTP (a registry on the loopback interface, tests).
    pub plain_http: bool,
}

/// Options of [`copy_between`].
#[derive(Debug, Clone)]
pub struct CopyOptions {
    pub source: EndpointOptions,
    pub destination: EndpointOptions,
    pub client: ClientOptions,
    pub copy: CopySettings,
}

impl CopyOptions {
    /// Anonymous HTTPS on both sides, default timeouts and parallelism.
    pub fn new(policy: Arc<outbound::Policy>) -> CopyOptions {
        CopyOptions {
            source: EndpointOptions::default(),
            destination: EndpointOptions::default(),
            client: ClientOptions::new(policy),
            copy: CopySettings::default(),
        }
    }
}

/// Copies `source` (`HOST[:PORT]/REPO:TAG` or `…@DIGEST`) to `destination`
/// (`HOST[:PORT]/REPO`, optionally `:TAG`; without one the source's tag is used, and a
/// `@DIGEST` there must be the source's digest), then verifies the destination.
/// Blocking; `progress` is called from the copying threads.
pub fn copy_between(
    source: &str,
    destination: &str,
    options: &CopyOptions,
    progress: &(dyn Fn(&Progress) + Sync),
) -> Result<CopyReport, CopyError> {
    let source = ImageReference::parse(source)?;
    let destination = ImageReference::parse(destination)?;
    let Some(reference) = source.reference().cloned() else {
        return Err(CopyError::Invalid(format!(
            "the source `{source}` must name a tag (:TAG) or a digest (@sha256:…)"
        )));
    };
    let tag = match (destination.reference(), &reference) {
        (Some(ManifestReference::Tag(tag)), _) => Some(tag.clone()),
        (Some(ManifestReference::Digest(wanted)), ManifestReference::Digest(digest))
            if wanted == digest =>
        {
            None
        }
        (Some(ManifestReference::Digest(_)), _) => {
            return Err(CopyError::Invalid(format!(
                "the destination `{destination}` names a digest other than the source's; name it by repository or tag"
            )));
        }
        (None, ManifestReference::Tag(tag)) => Some(tag.clone()),
        (None, ManifestReference::Digest(_)) => None,
    };
    let source_client = Arc::new(RegistryClient::new(
        RegistryEndpoint {
            registry: source.registry().to_owned(),
            plain_http: options.source.plain_http,
            credentials: options.source.credentials.clone(),
        },
        &options.client,
    )?);
    let same_registry = source.registry() == destination.registry()
        && options.source.plain_http == options.destination.plain_http
        && options.source.credentials == options.destination.credentials;
    // One client for both sides of a copy within a registry: one token cache, and the
    // mount request carries both scopes.
    let destination_client = if same_registry {
        source_client.clone()
    } else {
        Arc::new(RegistryClient::new(
            RegistryEndpoint {
                registry: destination.registry().to_owned(),
                plain_http: options.destination.plain_http,
                credentials: options.destination.credentials.clone(),
            },
            &options.client,
        )?)
    };
    let from = RegistrySource::new(source_client, source.repository().clone());
    copy(
        &from,
        &reference,
        Destination {
            client: &destination_client,
            repository: destination.repository(),
            tags: tag.as_slice(),
        },
        options.copy,
        progress,
    )
}
