//! The manifest media types the copier understands and what each one references: an
//! image manifest its config and layer blobs, an index its child manifests.

use domain::Digest;
use serde::Deserialize;

use crate::CopyError;

pub use domain::oci::{
    ARTIFACT_MANIFEST as OCI_ARTIFACT_MANIFEST, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST,
    IMAGE_INDEX as OCI_INDEX, IMAGE_MANIFEST as OCI_MANIFEST,
};

/// Every manifest media type the copier accepts, for `Accept` headers.
pub const ACCEPTED_MEDIA_TYPES: [&str; 5] = [
    OCI_INDEX,
    OCI_MANIFEST,
    DOCKER_MANIFEST_LIST,
    DOCKER_MANIFEST,
    OCI_ARTIFACT_MANIFEST,
];

/// The largest manifest read (the size the registry spec lets registries refuse above).
pub(crate) const MAX_MANIFEST_BYTES: u64 = 4 << 20;

/// A manifest exactly as stored: its bytes are never re-serialized, so the digest
/// stays the same wherever it is copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub digest: Digest,
    pub media_type: String,
    pub content: Vec<u8>,
}

/// What a blob or manifest descriptor says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
}

/// What a manifest references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum References {
    /// An image (or artifact) manifest: its config and layers.
    Blobs(Vec<Descriptor>),
    /// An index: the manifests it lists.
    Manifests(Vec<Descriptor>),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Wire {
    media_type: Option<String>,
    config: Option<WireDescriptor>,
    layers: Option<Vec<WireDescriptor>>,
    blobs: Option<Vec<WireDescriptor>>,
    manifests: Option<Vec<WireDescriptor>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireDescriptor {
    media_type: Option<String>,
    digest: String,
    size: u64,
    #[serde(default)]
    urls: Vec<String>,
}

/// A manifest that names a `subject`: the subject, and the descriptor that lists it
/// in the subject's referrers (its `artifactType`, else its config's media type, and
/// its annotations).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Referrer {
    pub(crate) subject: Digest,
    pub(crate) descriptor: serde_json::Value,
}

/// The referrer `manifest` is, if it names a subject.
pub(crate) fn as_referrer(manifest: &Manifest) -> Option<Referrer> {
    let value: serde_json::Value = serde_json::from_slice(&manifest.content).ok()?;
    let subject = Digest::parse(value.get("subject")?.get("digest")?.as_str()?).ok()?;
    let artifact_type = value
        .get("artifactType")
        .and_then(serde_json::Value::as_str)
        .filter(|t| !t.is_empty())
        .or_else(|| value.get("config")?.get("mediaType")?.as_str());
    let mut descriptor = serde_json::json!({
        "mediaType": manifest.media_type,
        "digest": manifest.digest.to_string(),
        "size": manifest.content.len(),
    });
    if let Some(artifact_type) = artifact_type {
        descriptor["artifactType"] = serde_json::json!(artifact_type);
    }
    if let Some(annotations) = value.get("annotations").filter(|a| a.is_object()) {
        descriptor["annotations"] = annotations.clone();
    }
    Some(Referrer {
        subject,
        descriptor,
    })
}

impl Manifest {
    /// The media type the bytes declare, when a registry's `Content-Type` is missing
    /// or generic.
    pub(crate) fn declared_media_type(content: &[u8]) -> Option<String> {
        serde_json::from_slice::<Wire>(content)
            .ok()
            .and_then(|wire| wire.media_type)
    }

    /// Whether this media type lists other manifests.
    pub fn is_index(media_type: &str) -> bool {
        media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
    }

    /// The blobs or child manifests this manifest references. Foreign layers (ones
    /// with `urls`, fetched from elsewhere by design) are not copied, as container
    /// tools do.
    pub fn references(&self) -> Result<References, CopyError> {
        if !ACCEPTED_MEDIA_TYPES.contains(&self.media_type.as_str()) {
            return Err(CopyError::InvalidManifest(format!(
                "manifest {} has media type `{}`, which cannot be copied (supported: {})",
                self.digest,
                self.media_type,
                ACCEPTED_MEDIA_TYPES.join(", ")
            )));
        }
        let wire: Wire = serde_json::from_slice(&self.content).map_err(|e| {
            CopyError::InvalidManifest(format!("manifest {} is not valid: {e}", self.digest))
        })?;
        let convert = |descriptors: Vec<WireDescriptor>| -> Result<Vec<Descriptor>, CopyError> {
            descriptors
                .into_iter()
                .filter(|descriptor| descriptor.urls.is_empty())
                .map(|descriptor| {
                    let digest = Digest::parse(&descriptor.digest).map_err(|e| {
                        CopyError::InvalidManifest(format!(
                            "manifest {} references an invalid digest: {e}",
                            self.digest
                        ))
                    })?;
                    Ok(Descriptor {
                        media_type: descriptor.media_type.unwrap_or_default(),
                        digest,
                        size: descriptor.size,
                    })
                })
                .collect()
        };
        if Manifest::is_index(&self.media_type) {
            return Ok(References::Manifests(convert(
                wire.manifests.unwrap_or_default(),
            )?));
        }
        let mut blobs = Vec::new();
        blobs.extend(wire.config);
        blobs.extend(wire.layers.unwrap_or_default());
        blobs.extend(wire.blobs.unwrap_or_default());
        Ok(References::Blobs(convert(blobs)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(media_type: &str, content: &str) -> Manifest {
        Manifest {
            digest: Digest::sha256_of(content.as_bytes()),
            media_type: media_type.to_owned(),
            content: content.as_bytes().to_vec(),
        }
    }

    #[test]
    fn images_reference_config_and_layers_and_indexes_reference_manifests() {
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "b".repeat(64));
        let image = manifest(
            OCI_MANIFEST,
            &format!(
                r#"{{"schemaVersion":2,"config":{{"mediaType":"c","digest":"{a}","size":3}},
                "layers":[{{"mediaType":"l","digest":"{b}","size":5}},
                {{"mediaType":"f","digest":"{b}","size":5,"urls":["https://x"]}}]}}"#
            ),
        );
        let References::Blobs(blobs) = image.references().expect("image") else {
            panic!("an image references blobs");
        };
        assert_eq!(
            blobs
                .iter()
                .map(|d| (d.digest.to_string(), d.size))
                .collect::<Vec<_>>(),
            vec![(a.clone(), 3), (b.clone(), 5)]
        );
        let index = manifest(
            DOCKER_MANIFEST_LIST,
            &format!(
                r#"{{"manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{a}","size":9}}]}}"#
            ),
        );
        assert!(matches!(index.references(), Ok(References::Manifests(m)) if m.len() == 1));
        let schema1 = manifest("application/vnd.docker.distribution.manifest.v1+json", "{}");
        assert!(schema1.references().is_err());
        let broken = manifest(OCI_MANIFEST, r#"{"layers":[{"digest":"md5:x","size":1}]}"#);
        assert!(broken.references().is_err());
    }
}
