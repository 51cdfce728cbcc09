//! Static sites, from an archive to a bucket. The archive format itself (packing,
//! checking, unpacking, the artifact manifest) is the crate `site_archive`, re-exported
//! here for the deploy target's users.
//!
//! - [`Destination::sync`] makes a directory or an S3 prefix hold exactly the unpacked
//!   site, uploading only what changed (assets before HTML, deletions last) with the
//!   right `Content-Type` and `Cache-Control` ([`FileHeaders`]).
//! - [`StaticSiteDeployer`] is the `static-site` deploy target that puts these together
//!   with the CDN-invalidation hook ([`invalidate`]) and `.gantry/deployed.json`.

mod deployer;
mod destination;
mod headers;
mod invalidate;
mod sync;

pub use deployer::{StaticSiteDeployer, StaticSiteSettings};
pub use destination::{Destination, S3Settings, SyncError};
pub use headers::{
    DEFAULT_CACHE_CONTROL, FileHeaders, IMMUTABLE, REVALIDATE, cache_control, content_type,
    is_fingerprinted, is_html,
};
pub use invalidate::{INVALIDATED_PATHS, InvalidationError, InvalidationRequest, invalidate};
pub use site_archive::{
    ArchiveError, ArchiveLimits, ArtifactError, CheckedArchive, CheckedFile, EMPTY_CONFIG,
    EMPTY_CONFIG_DIGEST, EMPTY_CONFIG_MEDIA_TYPE, MAX_COMPONENT_BYTES, MAX_NAME_BYTES, NameError,
    OCI_IMAGE_MANIFEST, PackError, PackProgress, PackedSite, RECORDS_DIRECTORY, SITE_ARTIFACT_TYPE,
    SiteLayer, UnpackedSite, ZIP_LAYER_MEDIA_TYPE, check, check_name, extract_files, pack,
    read_site_manifest, site_manifest, unpack,
};
pub use sync::{
    DEPLOYED_RECORD, DeployedRecord, FILES_RECORD, FilesRecord, RecordedFile, SyncOptions,
    SyncReport,
};
