//! `gantry verify IMAGE@DIGEST --env ENV --key gantry.pub`: checks, against any OCI
//! registry holding the image (Gantry, or where `registry-copy` put it) and without
//! asking Gantry anything, that a deployment of those bytes to ENV was attested:
//! it lists the image's referrers (the referrers API, else the referrers tag schema),
//! opens each Sigstore bundle among them (layer digest, DSSE signature under a trusted
//! key, in-toto subject = the image), and judges them (`attest::verify`): a signed
//! Verification Summary saying ENV's gates passed, fresh enough, with the required
//! approver roles. It then prints the custody chain the promotion attestation carries.
//! Exit 0 only when such an attestation exists.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use attest::PublicKey;
use attest::referrer::{BUNDLE_MEDIA_TYPE, MAX_BUNDLE_BYTES, OpenedAttestation};
use attest::verify::{Accepted, Requirements};
use clap::Args;
use domain::Digest;
use regcopy::{
    ClientOptions, CopyError, ImageReference, ManifestReference, RegistryClient, RegistryEndpoint,
};
use serde_json::{Value, json};

use crate::remote::OutputFormat;

/// The exit code when no valid attestation for the environment was found.
pub(crate) const NOT_ATTESTED: u8 = 5;

#[derive(Args)]
pub(crate) struct VerifyArgs {
    /// The image: `HOST[:PORT]/REPOSITORY@sha256:…` (a `:TAG` is resolved to the
    /// digest it names now)
    image: String,
    /// The environment the deployment must have been attested for
    #[arg(long = "env")]
    environment: String,
    /// The application the deployment must be of (environments are per application:
    /// name it unless every application on the server is trusted alike)
    #[arg(long = "app")]
    application: Option<String>,
    /// A PEM public key to trust (`gantry keys list --pem`); repeat for several
    #[arg(long = "key")]
    keys: Vec<PathBuf>,
    /// Trust the public keys a Gantry server lists (`https://HOST/api/v1/keys`; plain
    /// HTTP only to a loopback address or with --insecure-keys-url)
    #[arg(long = "keys-url")]
    keys_url: Option<String>,
    /// Allow --keys-url over plain HTTP to any host (anyone on the path could swap the
    /// keys; a trusted network only)
    #[arg(long = "insecure-keys-url")]
    insecure_keys_url: bool,
    /// Refuse an attestation older than this (`90m`, `12h`, `30d`)
    #[arg(long = "max-age")]
    max_age: Option<String>,
    /// Require an approver of the promotion holding this role; repeat for several
    #[arg(long = "require-role")]
    roles: Vec<String>,
    /// Accept a deployment an admin let past its gate (break-glass)
    #[arg(long)]
    allow_override: bool,
    /// Credentials for the registry, `USER:PASSWORD`
    #[arg(long = "creds", env = "GANTRY_REGISTRY_CREDS", hide_env_values = true)]
    credentials: Option<String>,
    /// Reach the registry over plain HTTP (a registry on a trusted network only)
    #[arg(long = "plain-http")]
    plain_http: bool,
    /// `table` (text for people) or `json`
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Table)]
    output: OutputFormat,
}

/// Exit codes: 0 a valid attestation for the environment exists, 5 none does (each
/// candidate's shortfall is printed), 2 invalid input (an unreadable key, a bad
/// duration), 4 the registry refused the credentials, 1 anything else.
pub(crate) fn run(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let mut keys = Vec::new();
    for path in &args.keys {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the key {}", path.display()))?;
        match PublicKey::all_from_pem(&text) {
            Ok(found) => keys.extend(found),
            Err(error) => {
                eprintln!("gantry: {}: {error}", path.display());
                return Ok(ExitCode::from(2));
            }
        }
    }
    if let Some(url) = &args.keys_url {
        if !trusted_keys_url(url, args.insecure_keys_url) {
            eprintln!(
                "gantry: --keys-url must be an https:// URL (keys fetched in clear text could be anyone's); --insecure-keys-url allows http://"
            );
            return Ok(ExitCode::from(2));
        }
        keys.extend(keys_from(url)?);
    }
    if keys.is_empty() {
        eprintln!("gantry: name the keys to trust with --key FILE or --keys-url URL");
        return Ok(ExitCode::from(2));
    }
    let max_age_millis = match args.max_age.as_deref().map(parse_age).transpose() {
        Ok(age) => age,
        Err(error) => {
            eprintln!("gantry: --max-age: {error}");
            return Ok(ExitCode::from(2));
        }
    };
    let image = match ImageReference::parse(&args.image) {
        Ok(image) => image,
        Err(error) => {
            eprintln!("gantry: {error}");
            return Ok(ExitCode::from(2));
        }
    };
    let credentials = args
        .credentials
        .as_deref()
        .map(|text| {
            text.split_once(':')
                .map(|(user, password)| regcopy::Credentials::new(user, password))
                .context("--creds takes USER:PASSWORD")
        })
        .transpose()?;
    let options = ClientOptions::new(Arc::new(outbound::Policy::unrestricted()));
    let client = RegistryClient::new(
        RegistryEndpoint {
            registry: image.registry().to_owned(),
            plain_http: args.plain_http,
            credentials,
        },
        &options,
    )?;
    let repository = image.repository().clone();
    let outcome = (|| -> Result<(Digest, Vec<OpenedAttestation>, Vec<String>), CopyError> {
        let digest = match image.reference() {
            Some(ManifestReference::Digest(digest)) => digest.clone(),
            Some(reference) => client.manifest(&repository, reference)?.digest,
            None => {
                return Err(CopyError::Invalid(
                    "name the image by digest (`@sha256:…`) or tag".to_owned(),
                ));
            }
        };
        let (opened, refused) = attestations(&client, &repository, &digest, &keys)?;
        Ok((digest, opened, refused))
    })();
    let (digest, opened, refused) = match outcome {
        Ok(found) => found,
        Err(CopyError::Unauthorized { context, message }) => {
            eprintln!("gantry: {context}: {message}");
            return Ok(ExitCode::from(4));
        }
        Err(error) => return Err(error.into()),
    };
    let requirements = Requirements {
        environment: args.environment.clone(),
        max_age_millis,
        now_millis: jiff::Timestamp::now().as_millisecond(),
        roles: args.roles.clone(),
        allow_override: args.allow_override,
        application: args.application.clone(),
    };
    let verdict = attest::verify::judge(&opened, &requirements);
    let shown = format!("{}/{repository}@{digest}", image.registry());
    if args.output == OutputFormat::Json {
        let value = match &verdict {
            Ok(accepted) => json!({
                "image": shown,
                "environment": args.environment,
                "verified": true,
                "attestation": accepted.summary.manifest_digest.to_string(),
                "key_id": accepted.summary.key_id,
                "summary": accepted.summary.predicate,
                "custody": accepted.promotion.as_ref().map(|p| p.predicate.clone()),
            }),
            Err(reasons) => json!({
                "image": shown,
                "environment": args.environment,
                "verified": false,
                "reasons": reasons,
                "refused": refused,
            }),
        };
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        match &verdict {
            Ok(accepted) => print!("{}", render(&shown, &args.environment, accepted)),
            Err(reasons) => {
                println!(
                    "NOT VERIFIED: {shown} has no valid attestation for {}",
                    args.environment
                );
                for reason in reasons.iter().chain(&refused) {
                    println!("  - {reason}");
                }
            }
        }
    }
    Ok(match verdict {
        Ok(_) => ExitCode::SUCCESS,
        Err(_) => ExitCode::from(NOT_ATTESTED),
    })
}

/// Every Sigstore bundle among `digest`'s referrers, opened: those that hold, and why
/// each of the others was refused.
fn attestations(
    client: &RegistryClient,
    repository: &domain::RepoName,
    digest: &Digest,
    keys: &[PublicKey],
) -> Result<(Vec<OpenedAttestation>, Vec<String>), CopyError> {
    let mut opened = Vec::new();
    let mut refused = Vec::new();
    for entry in client.referrers(repository, digest)? {
        if entry.get("artifactType").and_then(Value::as_str) != Some(BUNDLE_MEDIA_TYPE) {
            continue;
        }
        let Some(referrer) = entry
            .get("digest")
            .and_then(Value::as_str)
            .and_then(|text| Digest::parse(text).ok())
        else {
            continue;
        };
        let manifest =
            match client.manifest(repository, &ManifestReference::Digest(referrer.clone())) {
                Ok(manifest) => manifest,
                Err(CopyError::NotFound(_)) => {
                    refused.push(format!(
                        "{referrer}: listed, but the registry no longer holds it"
                    ));
                    continue;
                }
                Err(error @ CopyError::Unauthorized { .. }) => return Err(error),
                // One unreadable referrer does not hide the others.
                Err(other) => {
                    refused.push(format!("{referrer}: {other}"));
                    continue;
                }
            };
        let Some((layer, size)) = attest::referrer::bundle_layer(&manifest.content) else {
            refused.push(format!("{referrer}: not a Sigstore bundle referrer"));
            continue;
        };
        if size > MAX_BUNDLE_BYTES {
            refused.push(format!(
                "{referrer}: its bundle is larger than {MAX_BUNDLE_BYTES} bytes"
            ));
            continue;
        }
        let mut bundle = Vec::new();
        let read = client.open_blob(repository, &layer).and_then(|blob| {
            blob.take(MAX_BUNDLE_BYTES + 1)
                .read_to_end(&mut bundle)
                .map_err(|e| CopyError::Invalid(format!("reading bundle {layer}: {e}")))
        });
        match read {
            Ok(_) => {}
            Err(error @ CopyError::Unauthorized { .. }) => return Err(error),
            Err(other) => {
                refused.push(format!("{referrer}: {other}"));
                continue;
            }
        }
        match attest::referrer::open(&manifest.content, &bundle, digest, keys) {
            Ok(attestation) => opened.push(attestation),
            Err(refusal) => refused.push(format!("{referrer}: {refusal}")),
        }
    }
    Ok((opened, refused))
}

/// Whether keys may be fetched from `url`: over HTTPS, or plain HTTP to a loopback
/// address or when the caller allowed it (`insecure`).
fn trusted_keys_url(url: &str, insecure: bool) -> bool {
    match url::Url::parse(url) {
        Ok(parsed) if parsed.scheme() == "https" => true,
        Ok(parsed) if parsed.scheme() == "http" => {
            insecure
                || matches!(parsed.host(), Some(url::Host::Domain("localhost")))
                || matches!(parsed.host(), Some(url::Host::Ipv4(ip)) if ip.is_loopback())
                || matches!(parsed.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback())
        }
        _ => false,
    }
}

/// The public keys a Gantry server lists at `url` (`GET /api/v1/keys`).
fn keys_from(url: &str) -> anyhow::Result<Vec<PublicKey>> {
    let agent = outbound::agent(
        Arc::new(outbound::Policy::unrestricted()),
        std::time::Duration::from_secs(30),
    );
    let list: Value = agent
        .get(url)
        .call()
        .with_context(|| format!("fetching the keys at {url}"))?
        .body_mut()
        .read_json()
        .with_context(|| format!("the keys at {url} are not JSON"))?;
    let keys = list
        .get("keys")
        .and_then(Value::as_array)
        .with_context(|| format!("{url} lists no `keys`"))?;
    keys.iter()
        .map(|key| {
            let pem = key
                .get("public_key")
                .and_then(Value::as_str)
                .with_context(|| format!("a key at {url} has no `public_key`"))?;
            PublicKey::from_pem(pem).with_context(|| format!("a key at {url}"))
        })
        .collect()
}

/// `90s`, `90m`, `12h`, `30d` in milliseconds.
fn parse_age(text: &str) -> Result<i64, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("`{text}` needs a unit: s, m, h or d"))?;
    let (number, unit) = text.split_at(split);
    let number: i64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a number and a unit (s, m, h or d)"))?;
    let unit = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        other => return Err(format!("unknown unit `{other}`: use s, m, h or d")),
    };
    Ok(number.saturating_mul(unit))
}

/// The verdict and the custody chain, for people.
fn render(image: &str, environment: &str, accepted: &Accepted) -> String {
    let summary = &accepted.summary;
    let application = summary.predicate["verifiedLevels"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .find_map(|level| level.strip_prefix("GANTRY_APPLICATION_"))
        .unwrap_or("-");
    let mut out = format!(
        "VERIFIED: {image} passed the gates of {environment} (application {application})\n"
    );
    out.push_str(&format!(
        "  attested   {} by key {} at {}\n",
        summary.manifest_digest,
        short(&summary.key_id),
        text(&summary.predicate, &["timeVerified"])
    ));
    out.push_str(&format!(
        "  policy     {}\n",
        text(&summary.predicate, &["policy", "uri"])
    ));
    let Some(promotion) = &accepted.promotion else {
        out.push_str("  (no promotion attestation for this environment: no custody chain)\n");
        return out;
    };
    let p = &promotion.predicate;
    if p["provenance"].is_object() {
        out.push_str(&format!(
            "  built      commit {} run {} by {}\n",
            text(p, &["provenance", "commit"]),
            text(p, &["provenance", "runId"]),
            text(p, &["provenance", "builder"])
        ));
    } else {
        out.push_str("  built      (no build provenance was reported)\n");
    }
    for check in p["checks"].as_array().into_iter().flatten() {
        let findings = check["findings"]
            .as_object()
            .map(|findings| {
                findings
                    .iter()
                    .map(|(severity, count)| format!("{severity} {count}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .filter(|text| !text.is_empty())
            .map(|text| format!(" ({text})"))
            .unwrap_or_default();
        out.push_str(&format!(
            "  checked    {} {}{findings} by {}\n",
            text(check, &["name"]),
            if check["passed"] == json!(true) {
                "passed"
            } else {
                "FAILED"
            },
            text(check, &["reportedBy"])
        ));
    }
    for approval in p["approvals"].as_array().into_iter().flatten() {
        let roles: Vec<&str> = approval["roles"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        out.push_str(&format!(
            "  approved   by {} ({}) at {}\n",
            text(approval, &["approver"]),
            if roles.is_empty() {
                "no role".to_owned()
            } else {
                roles.join(", ")
            },
            text(approval, &["at"])
        ));
    }
    if p["override"].is_object() {
        out.push_str(&format!(
            "  OVERRIDE   by {}: {}\n",
            text(p, &["override", "by"]),
            text(p, &["override", "reason"])
        ));
    }
    out.push_str(&format!(
        "  deployed   to {} by {} ({} target) at {}, requested by {}\n",
        text(p, &["environment"]),
        text(p, &["deployment", "reason"]),
        text(p, &["deployment", "target"]),
        text(p, &["deployment", "finishedAt"]),
        text(p, &["requestedBy"])
    ));
    if p["audit"].is_object() {
        out.push_str(&format!(
            "  audit      entry {} hash {}\n",
            text(p, &["audit", "sequence"]),
            short(&text(p, &["audit", "hash"]))
        ));
    }
    out
}

/// A field of `value` at `path` as text, `-` when absent.
fn text(value: &Value, path: &[&str]) -> String {
    let mut at = value;
    for key in path {
        at = &at[*key];
    }
    match at {
        Value::Null => "-".to_owned(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

fn short(id: &str) -> String {
    id.chars().take(16).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_fetched_over_https_or_from_loopback_unless_plain_http_is_allowed() {
        assert!(trusted_keys_url(
            "https://gantry.example.com/api/v1/keys",
            false
        ));
        assert!(!trusted_keys_url(
            "http://gantry.example.com/api/v1/keys",
            false
        ));
        assert!(trusted_keys_url(
            "http://gantry.example.com/api/v1/keys",
            true
        ));
        assert!(trusted_keys_url("http://127.0.0.1:5000/api/v1/keys", false));
        assert!(trusted_keys_url("http://localhost:5000/api/v1/keys", false));
        assert!(trusted_keys_url("http://[::1]:5000/api/v1/keys", false));
        assert!(!trusted_keys_url("ftp://gantry.example.com/keys", true));
        assert!(!trusted_keys_url("not a url", true));
    }

    #[test]
    fn ages_read_with_their_units_and_refuse_others() {
        assert_eq!(parse_age("90s"), Ok(90_000));
        assert_eq!(parse_age("2h"), Ok(7_200_000));
        assert_eq!(parse_age("30d"), Ok(30 * 86_400_000));
        assert!(parse_age("30").is_err());
        assert!(parse_age("3w").is_err());
        assert!(parse_age("h").is_err());
    }
}
