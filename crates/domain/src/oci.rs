//! The OCI (and Docker) media types Gantry speaks, named once: the registry accepts
//! and serves them, the copier asks for them, the site artifact and provenance read
//! them. A tidy test keeps their strings out of every other file.

/// An OCI image manifest (also the envelope of OCI artifacts).
pub const IMAGE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// An OCI image index.
pub const IMAGE_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// The withdrawn OCI artifact manifest of image-spec 1.1's drafts.
pub const ARTIFACT_MANIFEST: &str = "application/vnd.oci.artifact.manifest.v1+json";
/// An OCI image's config.
pub const IMAGE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// The empty descriptor's content (`{}`), the config of artifacts.
pub const EMPTY: &str = "application/vnd.oci.empty.v1+json";
/// A Docker image manifest (schema 2).
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// A Docker manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// A Docker image's config.
pub const DOCKER_IMAGE_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker schema 1 manifests, which nothing accepts any more.
pub const DOCKER_SCHEMA1: [&str; 2] = [
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
];
