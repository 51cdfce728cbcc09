//! The static-site archive format, from a build directory to checked files on disk.
//!
//! - [`pack`] zips a build directory deterministically into the archive `gantry push
//!   site` pushes, as the OCI artifact [`site_manifest`] describes
//!   (`artifactType` [`SITE_ARTIFACT_TYPE`]).
//! - [`check`] refuses hostile archives — zip slip, links, special files, duplicate
//!   and case-colliding names, encryption, zip bombs, entries that lie about their size
//!   or CRC — without writing anything; [`unpack`] checks first, then extracts into a
//!   fresh staging directory, verifying every file again.
//!
//! It depends on `domain` alone: the registry checks pushed archives with it, and the
//! `static-site` deploy target (crate `site`) unpacks them, without either depending on
//! the other.

mod artifact;
mod check;
mod names;
mod pack;
mod unpack;

pub use artifact::{
    ArtifactError, EMPTY_CONFIG, EMPTY_CONFIG_DIGEST, EMPTY_CONFIG_MEDIA_TYPE, OCI_IMAGE_MANIFEST,
    SITE_ARTIFACT_TYPE, SiteLayer, ZIP_LAYER_MEDIA_TYPE, read_site_manifest, site_manifest,
};
pub use check::{ArchiveError, ArchiveLimits, CheckedArchive, CheckedFile, check};
pub use names::{MAX_COMPONENT_BYTES, MAX_NAME_BYTES, NameError, RECORDS_DIRECTORY, check_name};
pub use pack::{PackError, PackProgress, PackedSite, pack};
pub use unpack::{UnpackedSite, extract_files, unpack};
