//! Provenance a build notification leaves out, read from the artifact itself: the
//! manifest's annotations and the image config's labels
//! (`org.opencontainers.image.revision`, `org.opencontainers.image.source`,
//! `git.commit`, `ci.run`). What the call says wins over annotations, which win over
//! labels.

use std::collections::BTreeMap;

use blobs::BlobStore;
use domain::{Digest, RepoName};
use futures_util::StreamExt;
use store::{Provenance, Store};

use crate::EngineError;

/// Image configs are small; a larger "config" is not read for labels.
const MAX_CONFIG_BYTES: usize = 1 << 20;

/// `provenance` with its gaps filled from the manifest `digest` in `repository`.
pub(crate) async fn complete(
    store: &Store,
    blobs: &BlobStore,
    repository: &RepoName,
    digest: &Digest,
    provenance: Provenance,
) -> Result<Provenance, EngineError> {
    let Some(repo) = store.repositories().get(repository).await? else {
        return Ok(provenance);
    };
    let Some(manifest) = store.manifests().by_digest(repo.id, digest).await? else {
        return Ok(provenance);
    };
    let Ok(manifest) = serde_json::from_slice::<serde_json::Value>(&manifest.content) else {
        return Ok(provenance);
    };
    let mut found = labels(blobs, &manifest).await;
    found.extend(string_map(&manifest["annotations"]));
    Ok(fill(provenance, &found))
}

/// Fills each empty field of `provenance` from the well-known keys in `found`.
pub(crate) fn fill(mut provenance: Provenance, found: &BTreeMap<String, String>) -> Provenance {
    let first = |keys: &[&str]| keys.iter().find_map(|key| found.get(*key).cloned());
    if provenance.commit.is_none() {
        provenance.commit = first(&["org.opencontainers.image.revision", "git.commit"]);
    }
    if provenance.source.is_none() {
        provenance.source = first(&["org.opencontainers.image.source"]);
    }
    if provenance.run_id.is_none() {
        provenance.run_id = first(&["ci.run"]);
    }
    provenance
}

fn string_map(value: &serde_json::Value) -> BTreeMap<String, String> {
    value
        .as_object()
        .map(|object| {
            object
                .iter()
                .filter_map(|(key, value)| Some((key.clone(), value.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// The image config's labels, if the manifest is an image with a readable config.
async fn labels(blobs: &BlobStore, manifest: &serde_json::Value) -> BTreeMap<String, String> {
    let config = &manifest["config"];
    let media_type = config["mediaType"].as_str().unwrap_or_default();
    let is_image_config =
        media_type == domain::oci::IMAGE_CONFIG || media_type == domain::oci::DOCKER_IMAGE_CONFIG;
    let size = config["size"].as_u64().unwrap_or(u64::MAX);
    let Some(digest) = config["digest"]
        .as_str()
        .and_then(|d| Digest::parse(d).ok())
    else {
        return BTreeMap::new();
    };
    if !is_image_config || size > MAX_CONFIG_BYTES as u64 {
        return BTreeMap::new();
    }
    let Ok(mut body) = blobs.get(&digest, None).await else {
        return BTreeMap::new();
    };
    let mut bytes = Vec::new();
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(chunk) if bytes.len() + chunk.len() <= MAX_CONFIG_BYTES => {
                bytes.extend_from_slice(&chunk)
            }
            _ => return BTreeMap::new(),
        }
    }
    serde_json::from_slice::<serde_json::Value>(&bytes)
        .map(|config| string_map(&config["config"]["Labels"]))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_call_wins_then_annotations_fill_the_gaps() {
        let found: BTreeMap<String, String> = [
            ("org.opencontainers.image.revision", "abc"),
            ("git.commit", "def"),
            (
                "org.opencontainers.image.source",
                "https://git.example.com/app",
            ),
            ("ci.run", "42"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let filled = fill(Provenance::default(), &found);
        assert_eq!(filled.commit.as_deref(), Some("abc"));
        assert_eq!(
            filled.source.as_deref(),
            Some("https://git.example.com/app")
        );
        assert_eq!(filled.run_id.as_deref(), Some("42"));
        let given = Provenance {
            commit: Some("given".to_owned()),
            ..Provenance::default()
        };
        assert_eq!(fill(given, &found).commit.as_deref(), Some("given"));
        let only_git: BTreeMap<String, String> =
            [("git.commit".to_owned(), "def".to_owned())].into();
        assert_eq!(
            fill(Provenance::default(), &only_git).commit.as_deref(),
            Some("def")
        );
    }
}
