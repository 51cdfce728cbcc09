//! The site artifact as it is pushed to Gantry's registry: an OCI image manifest
//! (v1.1, with `artifactType`) whose config is the empty descriptor and whose one layer
//! is the zip archive. `gantry push site` builds the manifest with
//! [`site_manifest`]; the `static-site` deployer reads it back with
//! [`read_site_manifest`] to find the archive.

use std::collections::BTreeMap;

use domain::Digest;

/// The `artifactType` of a site artifact.
pub const SITE_ARTIFACT_TYPE: &str = "application/vnd.gantry.site.v1+zip";
/// The manifest's media type.
pub const OCI_IMAGE_MANIFEST: &str = domain::oci::IMAGE_MANIFEST;
/// The media type of the empty config.
pub const EMPTY_CONFIG_MEDIA_TYPE: &str = domain::oci::EMPTY;
/// The empty config's content, which must be pushed as a blob alongside the archive.
pub const EMPTY_CONFIG: &[u8] = b"{}";
/// The digest of [`EMPTY_CONFIG`].
pub const EMPTY_CONFIG_DIGEST: &str =
    "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
/// The media type of the archive layer.
pub const ZIP_LAYER_MEDIA_TYPE: &str = "application/zip";
/// The annotation naming the layer's file, which `oras pull` uses.
const TITLE_ANNOTATION: &str = "org.opencontainers.image.title";

/// Why a manifest is not a site artifact.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArtifactError {
    #[error("the manifest is not JSON of an OCI image manifest: {0}")]
    NotAManifest(String),
    #[error("the manifest's media type is {0:?}, not an OCI image manifest")]
    MediaType(String),
    #[error("the artifact type is {0:?}, not {SITE_ARTIFACT_TYPE}")]
    ArtifactType(String),
    #[error(
        "a site artifact has exactly one layer of type {ZIP_LAYER_MEDIA_TYPE}; this one has {0}"
    )]
    Layers(String),
    #[error("the layer digest {0:?} is not a valid digest")]
    LayerDigest(String),
}

/// The archive layer of a site artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteLayer {
    pub digest: Digest,
    pub size: u64,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct ManifestWire {
    schema_version: u32,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    artifact_type: Option<String>,
    config: DescriptorWire,
    layers: Vec<DescriptorWire>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescriptorWire {
    media_type: String,
    digest: String,
    size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    data: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
}

/// The manifest bytes for a site archive of `size` bytes with digest `archive`, with
/// the manifest-level `annotations` given (e.g. `org.opencontainers.image.revision`).
/// Deterministic: the same inputs give the same bytes, hence the same digest.
pub fn site_manifest(
    archive: &Digest,
    size: u64,
    annotations: &BTreeMap<String, String>,
) -> Vec<u8> {
    let manifest = ManifestWire {
        schema_version: 2,
        media_type: Some(OCI_IMAGE_MANIFEST.to_owned()),
        artifact_type: Some(SITE_ARTIFACT_TYPE.to_owned()),
        config: DescriptorWire {
            media_type: EMPTY_CONFIG_MEDIA_TYPE.to_owned(),
            digest: EMPTY_CONFIG_DIGEST.to_owned(),
            size: EMPTY_CONFIG.len() as u64,
            // The empty descriptor carries its content inline (`{}`, base64).
            data: Some("e30=".to_owned()),
            annotations: BTreeMap::new(),
        },
        layers: vec![DescriptorWire {
            media_type: ZIP_LAYER_MEDIA_TYPE.to_owned(),
            digest: archive.to_string(),
            size,
            data: None,
            annotations: BTreeMap::from([(TITLE_ANNOTATION.to_owned(), "site.zip".to_owned())]),
        }],
        annotations: annotations.clone(),
    };
    serde_json::to_vec(&manifest).expect("a manifest of strings and numbers serializes")
}

/// The archive layer of the site artifact whose manifest is `content`.
pub fn read_site_manifest(content: &[u8]) -> Result<SiteLayer, ArtifactError> {
    let manifest: ManifestWire = serde_json::from_slice(content)
        .map_err(|error| ArtifactError::NotAManifest(error.to_string()))?;
    let media_type = manifest.media_type.unwrap_or_default();
    if media_type != OCI_IMAGE_MANIFEST || manifest.schema_version != 2 {
        return Err(ArtifactError::MediaType(media_type));
    }
    let artifact_type = manifest.artifact_type.unwrap_or_default();
    if artifact_type != SITE_ARTIFACT_TYPE {
        return Err(ArtifactError::ArtifactType(artifact_type));
    }
    let layer = match manifest.layers.as_slice() {
        [layer] if layer.media_type == ZIP_LAYER_MEDIA_TYPE => layer,
        layers => {
            let types: Vec<&str> = layers.iter().map(|l| l.media_type.as_str()).collect();
            return Err(ArtifactError::Layers(format!("[{}]", types.join(", "))));
        }
    };
    let digest = Digest::parse(&layer.digest)
        .map_err(|_| ArtifactError::LayerDigest(layer.digest.clone()))?;
    Ok(SiteLayer {
        digest,
        size: layer.size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_empty_config_digest_is_that_of_its_content() {
        assert_eq!(
            Digest::sha256_of(EMPTY_CONFIG).to_string(),
            EMPTY_CONFIG_DIGEST
        );
    }

    #[test]
    fn a_site_manifest_reads_back_as_its_layer() {
        let archive = Digest::sha256_of(b"zip bytes");
        let annotations = BTreeMap::from([(
            "org.opencontainers.image.revision".to_owned(),
            "abc123".to_owned(),
        )]);
        let bytes = site_manifest(&archive, 9, &annotations);
        assert_eq!(bytes, site_manifest(&archive, 9, &annotations));
        let text = String::from_utf8(bytes.clone()).expect("utf-8");
        assert!(text.contains(r#""artifactType":"application/vnd.gantry.site.v1+zip""#));
        assert!(text.contains(r#""mediaType":"application/vnd.oci.empty.v1+json""#));
        assert_eq!(
            read_site_manifest(&bytes),
            Ok(SiteLayer {
                digest: archive,
                size: 9
            })
        );
    }

    #[test]
    fn other_artifacts_are_not_sites() {
        let image = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
            "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},
            "layers":[]}"#;
        assert_eq!(
            read_site_manifest(image),
            Err(ArtifactError::ArtifactType(String::new()))
        );
        assert!(matches!(
            read_site_manifest(b"not json"),
            Err(ArtifactError::NotAManifest(_))
        ));
    }
}
