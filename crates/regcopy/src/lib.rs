//! Copying artifacts between OCI registries.
//!
//! - [`copy`] moves one artifact (an image, or an index with all its images) from a
//!   [`Source`] to a registry: blobs the destination has are skipped, blobs in another
//!   repository of the same registry are mounted, the rest are streamed through while
//!   hashed (never buffered whole; wrong bytes abort the upload), manifests are pushed
//!   byte-for-byte children first, and the destination is read back to check it serves
//!   the same digest.
//! - [`copy_between`] is `gantry copy SRC DST`: registry to registry.
//! - [`RegistryCopyDeployer`] is the `registry-copy` deploy target: from Gantry's own
//!   store ([`StoreSource`]) to the declared registry, tagged with the environment.
//! - [`RegistryClient`] is the small OCI Distribution client under all of it
//!   (anonymous, Basic and Bearer-token authentication; credentials never leave their
//!   registry host), built on the SSRF-guarded agent of `outbound`.
//!
//! Everything here blocks: async callers run it in `tokio::task::spawn_blocking`.

mod auth;
mod between;
mod client;
mod copier;
mod deployer;
mod error;
mod manifest;
mod reference;
mod source;

pub use auth::Credentials;
pub use between::{CopyOptions, EndpointOptions, copy_between};
pub use client::{ClientOptions, RegistryClient, RegistryEndpoint, UploadStart};
pub use copier::{CopyReport, CopySettings, Destination, Progress, ProgressEvent, copy, verify};
pub use deployer::{
    DestinationRegistry, RegistryCopyDeployer, RegistryCopySettings, SettingsError,
};
pub use error::CopyError;
pub use manifest::{
    ACCEPTED_MEDIA_TYPES, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, Descriptor, Manifest,
    OCI_ARTIFACT_MANIFEST, OCI_INDEX, OCI_MANIFEST, References,
};
pub use reference::{ImageReference, ManifestReference};
pub use source::{RegistrySource, Source, StoreSource};
