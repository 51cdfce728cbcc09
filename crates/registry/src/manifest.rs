//! Manifest validation: the OCI image spec and Docker schema 2 wire JSON, read only to
//! check it and to learn what it references. The bytes themselves are stored untouched.

use std::collections::BTreeMap;

use domain::Digest;
use serde::Deserialize;
use store::ManifestChild;

use crate::error::RegistryError;

use domain::oci::DOCKER_SCHEMA1;
pub use domain::oci::{
    DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, IMAGE_INDEX as OCI_INDEX, IMAGE_MANIFEST as OCI_MANIFEST,
};

/// The shape of a manifest media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Image,
    Index,
}

fn kind_of(media_type: &str) -> Option<Kind> {
    match media_type {
        OCI_MANIFEST | DOCKER_MANIFEST => Some(Kind::Image),
        OCI_INDEX | DOCKER_MANIFEST_LIST => Some(Kind::Index),
        _ => None,
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireManifest {
    schema_version: Option<serde_json::Value>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<WireDescriptor>,
    layers: Option<Vec<WireDescriptor>>,
    manifests: Option<Vec<WireDescriptor>>,
    subject: Option<WireDescriptor>,
    annotations: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireDescriptor {
    media_type: String,
    digest: String,
    size: i64,
    #[serde(default)]
    urls: Vec<String>,
}

/// What the registry needs to know about a valid manifest.
#[derive(Debug, Clone)]
pub(crate) struct ParsedManifest {
    pub(crate) media_type: String,
    pub(crate) artifact_type: Option<String>,
    /// The subject, when its digest is one Gantry can look up in referrers queries.
    pub(crate) subject: Option<Digest>,
    /// The subject's digest as written, for the `OCI-Subject` response header.
    pub(crate) subject_text: Option<String>,
    pub(crate) annotations: Option<String>,
    pub(crate) children: Vec<ManifestChild>,
    /// Each child with the field that declares it (`layers[2]`), to name a descriptor
    /// the store refuses.
    pub(crate) fields: Vec<(String, ManifestChild)>,
    /// The archive layer, when the manifest is a static-site artifact: its content must
    /// pass the archive check before the manifest is stored.
    pub(crate) site_archive: Option<site_archive::SiteLayer>,
}

/// Validates `body` as a manifest declared with `content_type` (the request's
/// `Content-Type`, without parameters, if it had one).
pub(crate) fn parse(
    content_type: Option<&str>,
    body: &[u8],
) -> Result<ParsedManifest, RegistryError> {
    let wire: WireManifest = serde_json::from_slice(body).map_err(|e| {
        RegistryError::manifest_invalid(format!(
            "the manifest is not valid JSON of a manifest: {e}"
        ))
    })?;
    if wire
        .schema_version
        .as_ref()
        .and_then(serde_json::Value::as_i64)
        != Some(2)
    {
        return Err(RegistryError::manifest_invalid("schemaVersion must be 2"));
    }
    let media_type = match (content_type, wire.media_type.as_deref()) {
        (Some(header), Some(field)) if header != field => {
            return Err(RegistryError::manifest_invalid(format!(
                "Content-Type {header} does not match the manifest's mediaType {field}"
            )));
        }
        (Some(header), _) => header.to_owned(),
        (None, Some(field)) => field.to_owned(),
        (None, None) => {
            return Err(RegistryError::manifest_invalid(
                "the manifest's media type is unknown: send Content-Type or set mediaType",
            ));
        }
    };
    if DOCKER_SCHEMA1.contains(&media_type.as_str()) {
        return Err(RegistryError::manifest_invalid(
            "Docker schema 1 manifests are not supported; push schema 2 or OCI",
        ));
    }
    let kind = kind_of(&media_type).ok_or_else(|| {
        RegistryError::manifest_invalid(format!(
            "unsupported manifest media type {media_type}; use {OCI_MANIFEST}, {OCI_INDEX}, {DOCKER_MANIFEST} or {DOCKER_MANIFEST_LIST}"
        ))
    })?;
    let mut fields: Vec<(String, ManifestChild)> = Vec::new();
    let artifact_type =
        match kind {
            Kind::Image => {
                let config = wire.config.as_ref().ok_or_else(|| {
                    RegistryError::manifest_invalid("an image manifest needs a config")
                })?;
                let layers = wire.layers.as_ref().ok_or_else(|| {
                    RegistryError::manifest_invalid("an image manifest needs layers")
                })?;
                if wire.manifests.is_some() {
                    return Err(RegistryError::manifest_invalid(
                        "an image manifest cannot list manifests",
                    ));
                }
                fields.push(("config".to_owned(), blob_child("config", config)?));
                for (i, layer) in layers.iter().enumerate() {
                    // Non-distributable layers live elsewhere (their `urls`); they are never pushed
                    // here, so only their digest's grammar matters.
                    let field = format!("layers[{i}]");
                    if layer.urls.is_empty() {
                        let child = blob_child(&field, layer)?;
                        fields.push((field, child));
                    } else {
                        descriptor_well_formed(&format!("layers[{i}]"), layer)?;
                    }
                }
                wire.artifact_type
                    .clone()
                    .filter(|t| !t.is_empty())
                    .or_else(|| Some(config.media_type.clone()))
            }
            Kind::Index => {
                let manifests = wire.manifests.as_ref().ok_or_else(|| {
                    RegistryError::manifest_invalid("an image index needs manifests")
                })?;
                if wire.config.is_some() || wire.layers.is_some() {
                    return Err(RegistryError::manifest_invalid(
                        "an image index cannot have a config or layers",
                    ));
                }
                for (i, entry) in manifests.iter().enumerate() {
                    let field = format!("manifests[{i}]");
                    let child = ManifestChild::Manifest {
                        digest: descriptor_digest(&field, entry)?,
                        size: descriptor_size(entry),
                    };
                    fields.push((field, child));
                }
                wire.artifact_type.clone().filter(|t| !t.is_empty())
            }
        };
    if let Some(artifact_type) = &artifact_type {
        check_media_type("artifactType", artifact_type)?;
    }
    let site_archive = if artifact_type.as_deref() == Some(site_archive::SITE_ARTIFACT_TYPE) {
        Some(site_layer(&wire, &media_type, body)?)
    } else {
        None
    };
    // A subject is only ever looked up, never fetched: any well-formed digest will do,
    // and those Gantry can verify are indexed for the referrers API.
    let subject_text = wire
        .subject
        .as_ref()
        .map(|s| descriptor_well_formed("subject", s))
        .transpose()?;
    let subject = subject_text
        .as_deref()
        .and_then(|text| Digest::parse(text).ok());
    let mut children = Vec::with_capacity(fields.len());
    for (_, child) in &fields {
        if !children.contains(child) {
            children.push(child.clone());
        }
    }
    let annotations = match &wire.annotations {
        Some(map) if !map.is_empty() => Some(
            serde_json::to_string(map).map_err(|e| RegistryError::internal("annotations", e))?,
        ),
        _ => None,
    };
    Ok(ParsedManifest {
        media_type,
        artifact_type,
        subject,
        subject_text,
        annotations,
        children,
        fields,
        site_archive,
    })
}

/// The archive layer of a manifest whose artifact type is the static-site one, which
/// must have exactly the shape `gantry push site` gives it and the `static-site`
/// deployer reads back: an OCI image manifest naming the type in `artifactType`, the
/// empty config, and one `application/zip` layer stored here.
fn site_layer(
    wire: &WireManifest,
    media_type: &str,
    body: &[u8],
) -> Result<site_archive::SiteLayer, RegistryError> {
    let refuse = |reason: String| {
        RegistryError::manifest_invalid(format!(
            "not a well-formed {} artifact: {reason}",
            site_archive::SITE_ARTIFACT_TYPE
        ))
    };
    if media_type != OCI_MANIFEST {
        return Err(refuse(format!(
            "it must be an {OCI_MANIFEST}, not {media_type}"
        )));
    }
    if wire.artifact_type.as_deref() != Some(site_archive::SITE_ARTIFACT_TYPE) {
        return Err(refuse(
            "artifactType must name the type, with the empty config".to_owned(),
        ));
    }
    let empty_config = wire.config.as_ref().is_some_and(|config| {
        config.media_type == site_archive::EMPTY_CONFIG_MEDIA_TYPE
            && config.digest == site_archive::EMPTY_CONFIG_DIGEST
            && u64::try_from(config.size).ok() == Some(site_archive::EMPTY_CONFIG.len() as u64)
    });
    if !empty_config {
        return Err(refuse(format!(
            "the config must be the empty descriptor ({}, {}, size {})",
            site_archive::EMPTY_CONFIG_MEDIA_TYPE,
            site_archive::EMPTY_CONFIG_DIGEST,
            site_archive::EMPTY_CONFIG.len()
        )));
    }
    let layers = wire.layers.as_deref().unwrap_or_default();
    match layers {
        [layer]
            if layer.media_type == site_archive::ZIP_LAYER_MEDIA_TYPE && layer.urls.is_empty() => {}
        [layer] if layer.media_type == site_archive::ZIP_LAYER_MEDIA_TYPE => {
            return Err(refuse(
                "the archive must be stored here, not at foreign urls".to_owned(),
            ));
        }
        _ => {
            let types: Vec<&str> = layers.iter().map(|l| l.media_type.as_str()).collect();
            return Err(refuse(format!(
                "it needs exactly one layer of type {}, not [{}]",
                site_archive::ZIP_LAYER_MEDIA_TYPE,
                types.join(", ")
            )));
        }
    }
    // What the deployer will read must be what was checked here.
    site_archive::read_site_manifest(body).map_err(|error| refuse(error.to_string()))
}

fn descriptor_well_formed(
    field: &str,
    descriptor: &WireDescriptor,
) -> Result<String, RegistryError> {
    check_media_type(&format!("{field}.mediaType"), &descriptor.media_type)?;
    if descriptor.size < 0 {
        return Err(RegistryError::manifest_invalid(format!(
            "{field}.size must not be negative"
        )));
    }
    if !Digest::is_well_formed(&descriptor.digest) {
        return Err(RegistryError::manifest_invalid(format!(
            "{field}.digest `{}` is not a digest",
            descriptor.digest
        )));
    }
    Ok(descriptor.digest.clone())
}

/// A descriptor's size, once [`descriptor_well_formed`] has refused negative ones.
fn descriptor_size(descriptor: &WireDescriptor) -> u64 {
    u64::try_from(descriptor.size).unwrap_or(0)
}

fn blob_child(field: &str, descriptor: &WireDescriptor) -> Result<ManifestChild, RegistryError> {
    Ok(ManifestChild::Blob {
        digest: descriptor_digest(field, descriptor)?,
        size: descriptor_size(descriptor),
    })
}

fn descriptor_digest(field: &str, descriptor: &WireDescriptor) -> Result<Digest, RegistryError> {
    let text = descriptor_well_formed(field, descriptor)?;
    Digest::parse(&text)
        .map_err(|e| RegistryError::manifest_invalid(format!("{field}.digest is invalid: {e}")))
}

/// RFC 6838 shape: `type/subtype`, restricted-name characters only.
fn check_media_type(field: &str, value: &str) -> Result<(), RegistryError> {
    let restricted = |s: &str| {
        !s.is_empty()
            && s.len() <= 127
            && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    match value.split_once('/') {
        Some((kind, sub)) if restricted(kind) && restricted(sub) => Ok(()),
        _ => Err(RegistryError::manifest_invalid(format!(
            "{field} `{value}` is not a media type"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn image(extra: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{D1}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{D2}","size":3}}]{extra}}}"#
        )
    }

    fn check(content_type: Option<&str>, body: &str, expected: Result<usize, ErrorCode>) {
        let got = parse(content_type, body.as_bytes())
            .map(|m| m.children.len())
            .map_err(|e| e.code());
        assert_eq!(got, expected, "{content_type:?} {body}");
    }

    #[test]
    fn valid_manifests_yield_their_children() {
        check(Some(OCI_MANIFEST), &image(""), Ok(2));
        check(None, &image(""), Ok(2));
        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{D1}","size":9}}]}}"#
        );
        check(Some(OCI_INDEX), &index, Ok(1));
        let foreign = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"a/b","digest":"{D1}","size":1}},"layers":[{{"mediaType":"a/c","digest":"{D2}","size":1,"urls":["https://x"]}}]}}"#
        );
        check(Some(DOCKER_MANIFEST), &foreign, Ok(1));
        let parsed = parse(Some(OCI_MANIFEST), image(&format!(r#","subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{D2}","size":1}},"annotations":{{"k":"v"}}"#)).as_bytes())
            .expect("valid");
        assert_eq!(parsed.subject.map(|d| d.to_string()).as_deref(), Some(D2));
        assert_eq!(
            parsed.artifact_type.as_deref(),
            Some("application/vnd.oci.image.config.v1+json")
        );
        assert_eq!(parsed.annotations.as_deref(), Some(r#"{"k":"v"}"#));
    }

    #[test]
    fn subjects_and_foreign_layers_may_use_digests_gantry_cannot_verify() {
        let body = image(&format!(r#","subject":{{"mediaType":"{OCI_MANIFEST}","digest":"blake3:abc","size":1}},"artifactType":"""#))
            .replace(&format!(r#""digest":"{D2}","size":3"#), r#""digest":"blake3:ff","size":3,"urls":["https://x"]"#);
        let parsed = parse(Some(OCI_MANIFEST), body.as_bytes()).expect("valid");
        assert_eq!(parsed.subject, None, "not indexable");
        assert_eq!(parsed.subject_text.as_deref(), Some("blake3:abc"));
        assert_eq!(parsed.children.len(), 1, "only the config must exist");
        assert_eq!(
            parsed.artifact_type.as_deref(),
            Some("application/vnd.oci.image.config.v1+json"),
            "empty artifactType falls back"
        );
    }

    /// A site manifest as `gantry push site` writes it, with `layers` as its layers.
    fn site(layers: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","artifactType":"{}","config":{{"mediaType":"{}","digest":"{}","size":2,"data":"e30="}},"layers":{layers}}}"#,
            site_archive::SITE_ARTIFACT_TYPE,
            site_archive::EMPTY_CONFIG_MEDIA_TYPE,
            site_archive::EMPTY_CONFIG_DIGEST
        )
    }

    fn zip_layer(digest: &str) -> String {
        format!(r#"{{"mediaType":"application/zip","digest":"{digest}","size":3}}"#)
    }

    #[test]
    fn a_site_artifact_names_its_archive_for_the_push_check() {
        let body = site(&format!("[{}]", zip_layer(D2)));
        let parsed = parse(Some(OCI_MANIFEST), body.as_bytes()).expect("valid");
        let layer = parsed.site_archive.expect("a site artifact");
        assert_eq!((layer.digest.to_string().as_str(), layer.size), (D2, 3));
        assert_eq!(parsed.children.len(), 2, "the empty config and the archive");
        let packed =
            site_archive::site_manifest(&Digest::parse(D2).expect("digest"), 3, &BTreeMap::new());
        let parsed = parse(Some(OCI_MANIFEST), &packed).expect("what gantry push site writes");
        assert!(parsed.site_archive.is_some());
    }

    #[test]
    fn other_artifacts_and_images_are_not_checked_as_sites() {
        let parsed = parse(Some(OCI_MANIFEST), image("").as_bytes()).expect("valid");
        assert!(parsed.site_archive.is_none());
        let other = site(&format!("[{}]", zip_layer(D2))).replace(
            site_archive::SITE_ARTIFACT_TYPE,
            "application/vnd.example.thing+zip",
        );
        let parsed = parse(Some(OCI_MANIFEST), other.as_bytes()).expect("valid");
        assert!(parsed.site_archive.is_none());
    }

    #[test]
    fn malformed_site_artifacts_are_refused_with_manifest_invalid() {
        let refused = |label: &str, content_type: &str, body: String, says: &str| {
            let error = parse(Some(content_type), body.as_bytes())
                .expect_err(&format!("{label}: accepted"));
            assert_eq!(error.code(), ErrorCode::ManifestInvalid, "{label}");
            assert!(
                error.message().contains(says),
                "{label}: {}",
                error.message()
            );
        };
        let one = format!("[{}]", zip_layer(D2));
        refused(
            "two layers",
            OCI_MANIFEST,
            site(&format!("[{},{}]", zip_layer(D2), zip_layer(D1))),
            "exactly one layer of type application/zip, not [application/zip, application/zip]",
        );
        refused("no layers", OCI_MANIFEST, site("[]"), "exactly one layer");
        refused(
            "a tar layer",
            OCI_MANIFEST,
            site(&one.replace("application/zip", "application/vnd.oci.image.layer.v1.tar")),
            "not [application/vnd.oci.image.layer.v1.tar]",
        );
        refused(
            "a foreign layer",
            OCI_MANIFEST,
            site(&one.replace("\"size\":3", "\"size\":3,\"urls\":[\"https://x\"]")),
            "not at foreign urls",
        );
        refused(
            "a real config",
            OCI_MANIFEST,
            site(&one).replace(site_archive::EMPTY_CONFIG_DIGEST, D1),
            "the config must be the empty descriptor",
        );
        refused(
            "a config of another type",
            OCI_MANIFEST,
            site(&one).replace(
                site_archive::EMPTY_CONFIG_MEDIA_TYPE,
                "application/vnd.oci.image.config.v1+json",
            ),
            "the config must be the empty descriptor",
        );
        refused(
            "the type only in the config",
            OCI_MANIFEST,
            format!(
                r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"{}","digest":"{}","size":2}},"layers":{one}}}"#,
                site_archive::SITE_ARTIFACT_TYPE,
                site_archive::EMPTY_CONFIG_DIGEST
            ),
            "artifactType must name the type",
        );
        refused(
            "a Docker manifest",
            DOCKER_MANIFEST,
            site(&one).replace(OCI_MANIFEST, DOCKER_MANIFEST),
            "must be an application/vnd.oci.image.manifest.v1+json",
        );
        refused(
            "an index",
            OCI_INDEX,
            format!(
                r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","artifactType":"{}","manifests":[]}}"#,
                site_archive::SITE_ARTIFACT_TYPE
            ),
            "must be an application/vnd.oci.image.manifest.v1+json",
        );
        refused(
            "no mediaType field",
            OCI_MANIFEST,
            site(&one).replacen(&format!(r#""mediaType":"{OCI_MANIFEST}","#), "", 1),
            "not an OCI image manifest",
        );
    }

    #[test]
    fn invalid_manifests_are_refused_with_manifest_invalid() {
        use ErrorCode::ManifestInvalid as Invalid;
        check(Some(OCI_MANIFEST), "not json", Err(Invalid));
        check(Some(OCI_MANIFEST), "[]", Err(Invalid));
        check(
            Some(OCI_MANIFEST),
            &image("").replace("\"schemaVersion\":2", "\"schemaVersion\":1"),
            Err(Invalid),
        );
        check(Some(OCI_INDEX), &image(""), Err(Invalid));
        check(Some("application/json"), &image(""), Err(Invalid));
        check(
            Some("application/vnd.docker.distribution.manifest.v1+json"),
            &image("").replace(
                OCI_MANIFEST,
                "application/vnd.docker.distribution.manifest.v1+json",
            ),
            Err(Invalid),
        );
        check(None, r#"{"schemaVersion":2}"#, Err(Invalid));
        check(
            Some(OCI_MANIFEST),
            &image("").replace(D1, "sha256:nothex"),
            Err(Invalid),
        );
        check(
            Some(OCI_MANIFEST),
            &image("").replace("\"size\":2", "\"size\":-2"),
            Err(Invalid),
        );
        check(
            Some(OCI_MANIFEST),
            &image("").replace("application/vnd.oci.image.config.v1+json", "not a type"),
            Err(Invalid),
        );
        check(
            Some(OCI_MANIFEST),
            &format!(
                r#"{{"schemaVersion":2,"config":{{"mediaType":"a/b","digest":"{D1}","size":1}}}}"#
            ),
            Err(Invalid),
        );
    }
}
