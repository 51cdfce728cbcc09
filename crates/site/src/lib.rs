//! Static sites, from a build directory to a bucket.
//!
//! - [`pack`] zips a build directory deterministically into the archive `gantry push
//!   site` pushes, as the OCI artifact [`site_manifest`] describes
//!   (`artifactType` [`SITE_ARTIFACT_TYPE`]).
//! - [`check`] refuses hostile archives — zip slip, links, special files, duplicate
//!   and case-colliding names, encryption, zip bombs, entries that lie about their size
//!   or CRC — without writing anything; [`unpack`] checks first, then extracts into a
//!   fresh staging directory, verifying every file again.
//! - [`Destination::sync`] makes a directory or an S3 prefix hold exactly the unpacked
//!   site, uploading only what changed (assets before HTML, deletions last) with the
//!   right `Content-Type` and `Cache-Control` ([`FileHeaders`]).
//! - [`StaticSiteDeployer`] is the `static-site` deploy target that puts these together
//!   with the CDN-invalidation hook ([`invalidate`]) and `.gantry/deployed.json`.

mod artifact;
mod check;
mod deployer;
mod destination;
mod headers;
mod invalidate;
mod names;
mod pack;
mod sync;
mod unpack;

pub use artifact::{
    ArtifactError, EMPTY_CONFIG, EMPTY_CONFIG_DIGEST, EMPTY_CONFIG_MEDIA_TYPE, OCI_IMAGE_MANIFEST,
    SITE_ARTIFACT_TYPE, SiteLayer, ZIP_LAYER_MEDIA_TYPE, read_site_manifest, site_manifest,
};
pub use check::{ArchiveError, ArchiveLimits, CheckedArchive, CheckedFile, check};
pub use deployer::{StaticSiteDeployer, StaticSiteSettings};
pub use destination::{Destination, S3Settings, SyncError};
pub use headers::{
    DEFAULT_CACHE_CONTROL, FileHeaders, IMMUTABLE, REVALIDATE, cache_control, content_type,
    is_fingerprinted, is_html,
};
pub use invalidate::{INVALIDATED_PATHS, InvalidationError, InvalidationRequest, invalidate};
pub use names::{MAX_COMPONENT_BYTES, MAX_NAME_BYTES, NameError, RECORDS_DIRECTORY, check_name};
pub use pack::{PackError, PackProgress, PackedSite, pack};
pub use sync::{
    DEPLOYED_RECORD, DeployedRecord, FILES_RECORD, FilesRecord, RecordedFile, SyncOptions,
    SyncReport,
};
pub use unpack::{UnpackedSite, extract_files, unpack};
