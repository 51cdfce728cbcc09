//! Admission: may an image run in an environment? Only digests that were deployed
//! successfully to that environment of the application whose repository holds them
//! pass, referenced through the repository the environment's stage serves from (its
//! release tier's, for a `release` stage); a tag is resolved to its digest first and
//! judged by the digest, so moving a tag cannot smuggle other bytes in. A quarantined
//! digest is denied everywhere.

use domain::pipeline::EnvName;
use domain::{Digest, Reference, RepoName};

use crate::{Engine, EngineError};

/// The answer for one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    pub image: String,
    pub allowed: bool,
    /// Why, in words.
    pub reason: String,
    /// The digest the image was judged by, when it resolved to one.
    pub digest: Option<String>,
}

/// An image reference split into its repository and reference. A leading registry
/// host (`registry.example.com/`, `localhost:5000/`) is dropped: Gantry judges its
/// own repositories by name.
pub fn parse_image(image: &str) -> Result<(RepoName, Reference), String> {
    let (name, reference) = match image.rsplit_once('@') {
        Some((name, digest)) => (name, digest),
        None => match image.rsplit_once(':') {
            Some((name, tag)) if !tag.contains('/') => (name, tag),
            _ => return Err(format!("`{image}` names no tag or digest")),
        },
    };
    let name = match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            rest
        }
        _ => name,
    };
    let repository = RepoName::parse(name).map_err(|e| format!("`{image}`: {e}"))?;
    let reference = Reference::parse(reference).map_err(|e| format!("`{image}`: {e}"))?;
    Ok((repository, reference))
}

/// Judges `image` for `environment`: the image must name the repository the
/// environment's stage serves from (the application's own, or its release tier
/// `release/{repository}`), and its digest must have been deployed there.
pub(crate) async fn admit(
    engine: &Engine,
    environment: &EnvName,
    image: &str,
) -> Result<Admission, EngineError> {
    let store = &engine.store;
    let deny = |reason: String, digest: Option<String>| Admission {
        image: image.to_owned(),
        allowed: false,
        reason,
        digest,
    };
    let (repository, reference) = match parse_image(image) {
        Ok(parsed) => parsed,
        Err(reason) => return Ok(deny(reason, None)),
    };
    // A tier repository (`release/acme/web`) belongs to the application whose
    // repository it mirrors.
    let shared = repository
        .as_str()
        .strip_prefix(domain::RELEASE_NAMESPACE)
        .and_then(|rest| rest.strip_prefix('/'))
        .and_then(|rest| RepoName::parse(rest).ok())
        .unwrap_or_else(|| repository.clone());
    let Some(application) = store.resources().application_of(&shared).await? else {
        return Ok(deny(
            format!("no application declares repository {shared}"),
            None,
        ));
    };
    let loaded = engine.load(&application).await?;
    if loaded.pipeline.pipeline().stage(environment).is_none() {
        return Ok(deny(
            format!("{application} has no environment {environment}"),
            None,
        ));
    }
    let serves_from = loaded
        .pipeline
        .release_tier(environment)
        .repository(&shared)
        .map_err(|e| EngineError::Invalid(e.to_string()))?;
    if serves_from != repository {
        return Ok(deny(
            format!("{application}/{environment} runs images from {serves_from}, not {repository}"),
            None,
        ));
    }
    let digest: Digest = match reference {
        Reference::Digest(digest) => digest,
        Reference::Tag(tag) => {
            let Some(repo) = store.repositories().get(&repository).await? else {
                return Ok(deny(
                    format!("repository {repository} does not exist"),
                    None,
                ));
            };
            match store.manifests().by_tag(repo.id, &tag).await? {
                Some(manifest) => manifest.digest,
                None => {
                    return Ok(deny(format!("{repository} has no tag {tag}"), None));
                }
            }
        }
    };
    let digest_text = digest.to_string();
    if let Some(quarantine) = store.quarantines().get(&application, &digest).await? {
        return Ok(deny(
            format!(
                "{digest_text} is quarantined in {application} (by {}: {})",
                quarantine.by, quarantine.reason
            ),
            Some(digest_text),
        ));
    }
    if store
        .deployments()
        .was_deployed(&application, environment.as_str(), &digest_text)
        .await?
    {
        let requires = loaded
            .application
            .environments
            .get(environment)
            .is_some_and(|spec| spec.require_attestation);
        if requires {
            return match attested(engine, &application, environment, &digest).await? {
                Ok(reason) => Ok(Admission {
                    image: image.to_owned(),
                    allowed: true,
                    reason: format!(
                        "{digest_text} was promoted to {application}/{environment}; {reason}"
                    ),
                    digest: Some(digest_text),
                }),
                Err(reason) => Ok(deny(
                    format!(
                        "{digest_text} was promoted to {application}/{environment}, but {environment} requires a signed attestation: {reason}"
                    ),
                    Some(digest_text),
                )),
            };
        }
        Ok(Admission {
            image: image.to_owned(),
            allowed: true,
            reason: format!("{digest_text} was promoted to {application}/{environment}"),
            digest: Some(digest_text),
        })
    } else {
        Ok(deny(
            format!("{digest_text} was never promoted to {application}/{environment}"),
            Some(digest_text),
        ))
    }
}

/// Whether `digest` has a signed attestation of a deployment to `environment`, stored
/// beside it: each recorded attestation is opened with the public keys Gantry signs
/// and signed with and judged as `gantry verify` judges it. What was accepted, or why
/// nothing was.
async fn attested(
    engine: &Engine,
    application: &str,
    environment: &EnvName,
    digest: &Digest,
) -> Result<Result<String, String>, EngineError> {
    let store = &engine.store;
    let keys: Vec<attest::PublicKey> = store
        .signing_keys()
        .list()
        .await?
        .iter()
        .filter_map(|record| attest::PublicKey::from_pem(&record.public_key).ok())
        .collect();
    let mut opened = Vec::new();
    let mut refused = Vec::new();
    for record in store
        .attestations()
        .of_digest(application, &digest.to_string())
        .await?
        .into_iter()
        .filter(|record| record.environment == environment.as_str())
    {
        if record.published_at.is_none() {
            refused.push(format!(
                "attestation {} is not stored beside the image yet",
                record.manifest_digest
            ));
            continue;
        }
        match attest::referrer::open(
            record.manifest.as_bytes(),
            record.bundle.as_bytes(),
            digest,
            &keys,
        ) {
            Ok(attestation) => opened.push(attestation),
            Err(refusal) => {
                refused.push(format!("attestation {}: {refusal}", record.manifest_digest))
            }
        }
    }
    // A break-glass deployment is admitted: its attestation says an admin let it past
    // the gate (and why), and refusing its pods would undo the override.
    let requirements = attest::verify::Requirements {
        environment: environment.as_str().to_owned(),
        application: Some(application.to_owned()),
        allow_override: true,
        now_millis: engine.clock.now_millis(),
        ..attest::verify::Requirements::default()
    };
    Ok(match attest::verify::judge(&opened, &requirements) {
        Ok(accepted) => Ok(format!(
            "attested by {} (key {})",
            accepted.summary.manifest_digest, accepted.summary.key_id
        )),
        Err(mut reasons) => {
            reasons.extend(refused);
            Err(reasons.join("; "))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references_split_into_repository_and_reference() {
        let digest = format!("sha256:{}", "a".repeat(64));
        let cases = [
            ("acme/web:v1", "acme/web", "v1"),
            ("registry.example.com/acme/web:v1", "acme/web", "v1"),
            ("localhost:5000/acme/web:v1", "acme/web", "v1"),
            ("127.0.0.1:5000/acme/web:v1", "acme/web", "v1"),
        ];
        for (image, name, reference) in cases {
            let (repository, parsed) = parse_image(image).expect(image);
            assert_eq!(repository.as_str(), name, "{image}");
            assert_eq!(parsed.to_string(), reference, "{image}");
        }
        let (repository, reference) =
            parse_image(&format!("gantry.internal:443/acme/web@{digest}")).expect("digest");
        assert_eq!(repository.as_str(), "acme/web");
        assert_eq!(reference.to_string(), digest);
        for bad in [
            "acme/web",
            "localhost:5000/acme/web",
            "acme/web@sha256:zz",
            "Acme/Web:v1",
        ] {
            assert!(parse_image(bad).is_err(), "{bad} should be refused");
        }
    }
}
