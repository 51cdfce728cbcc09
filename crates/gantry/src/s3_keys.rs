//! The keys an S3 blob store is reached with, found where every AWS tool looks for
//! them: the variables `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` (with
//! `AWS_SESSION_TOKEN`); else a profile (`AWS_PROFILE`, default `default`) of the
//! shared credentials file (`AWS_SHARED_CREDENTIALS_FILE`, default
//! `~/.aws/credentials`), the file a secret store mounts; else none, and the
//! instance's metadata service is asked. Key values never appear in an error or log.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// Reads the process environment (and the shared credentials file it points at).
pub(crate) fn from_environment() -> anyhow::Result<Option<blobs::S3Credentials>> {
    let read = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
    match (read("AWS_ACCESS_KEY_ID"), read("AWS_SECRET_ACCESS_KEY")) {
        (Some(access_key_id), Some(secret_access_key)) => {
            return Ok(Some(blobs::S3Credentials {
                access_key_id,
                secret_access_key,
                session_token: read("AWS_SESSION_TOKEN"),
            }));
        }
        (None, None) => {}
        _ => bail!(
            "set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for the S3 blob store, or neither"
        ),
    }
    let named = read("AWS_SHARED_CREDENTIALS_FILE").map(PathBuf::from);
    let file = match (&named, read("HOME")) {
        (Some(file), _) => file.clone(),
        (None, Some(home)) => Path::new(&home).join(".aws/credentials"),
        (None, None) => return Ok(None),
    };
    let profile = read("AWS_PROFILE");
    if named.is_none() && profile.is_none() && !file.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("reading the S3 credentials file {}", file.display()))?;
    warn_if_readable_by_others(&file);
    let profile = profile.as_deref().unwrap_or("default");
    profile_keys(&text, profile)
        .with_context(|| format!("the S3 credentials file {}", file.display()))
        .map(Some)
}

/// The keys of `[profile]` in a shared credentials file's text.
fn profile_keys(text: &str, profile: &str) -> anyhow::Result<blobs::S3Credentials> {
    let mut section: Option<&str> = None;
    let mut found = false;
    let (mut access, mut secret, mut session) = (None, None, None);
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[') {
            let Some(name) = name.strip_suffix(']') else {
                bail!("line {} opens a section it does not close", number + 1);
            };
            section = Some(name.trim());
            found |= section == Some(profile);
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            bail!(
                "line {} is neither a [section] nor a key = value",
                number + 1
            );
        };
        if section != Some(profile) {
            continue;
        }
        let value = value.trim().to_owned();
        match key.trim().to_ascii_lowercase().as_str() {
            "aws_access_key_id" => access = Some(value),
            "aws_secret_access_key" => secret = Some(value),
            "aws_session_token" => session = Some(value),
            _ => {}
        }
    }
    if !found {
        bail!("has no profile [{profile}] (AWS_PROFILE names the profile)");
    }
    match (
        access.filter(|v| !v.is_empty()),
        secret.filter(|v| !v.is_empty()),
    ) {
        (Some(access_key_id), Some(secret_access_key)) => Ok(blobs::S3Credentials {
            access_key_id,
            secret_access_key,
            session_token: session.filter(|v| !v.is_empty()),
        }),
        _ => bail!("profile [{profile}] needs both aws_access_key_id and aws_secret_access_key"),
    }
}

#[cfg(unix)]
fn warn_if_readable_by_others(file: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(file)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            file = %file.display(),
            "the S3 credentials file is readable by other users than its owner: chmod 600 it"
        );
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_file: &Path) {}

#[cfg(test)]
mod tests {
    use super::profile_keys;

    const FILE: &str = "# written by the secret store\n\
        [default]\n\
        aws_access_key_id = AKIDEFAULT\n\
        aws_secret_access_key = default-secret\n\
        \n\
        [gantry]\n\
        ; the registry's own keys\n\
        AWS_ACCESS_KEY_ID=AKIGANTRY\n\
        aws_secret_access_key =  gantry-secret  \n\
        aws_session_token = session\n\
        region = eu-west-1\n";

    #[test]
    fn a_profile_is_read_from_its_own_section_only() {
        let keys = profile_keys(FILE, "gantry").expect("the gantry profile");
        assert_eq!(keys.access_key_id, "AKIGANTRY");
        assert_eq!(keys.secret_access_key, "gantry-secret");
        assert_eq!(keys.session_token.as_deref(), Some("session"));
        let keys = profile_keys(FILE, "default").expect("the default profile");
        assert_eq!(keys.access_key_id, "AKIDEFAULT");
        assert_eq!(keys.session_token, None);
    }

    #[test]
    fn a_missing_profile_or_key_is_named_and_no_value_is_shown() {
        let missing = profile_keys(FILE, "prod").expect_err("no such profile");
        assert!(missing.to_string().contains("[prod]"), "{missing}");
        let half = profile_keys("[default]\naws_access_key_id = AKIHALF\n", "default")
            .expect_err("no secret");
        let text = format!("{half:#}");
        assert!(text.contains("aws_secret_access_key"), "{text}");
        assert!(!text.contains("AKIHALF"), "{text}");
        let broken = profile_keys("[default\naws_secret_access_key = s3cr3t\n", "default")
            .expect_err("unclosed section");
        assert!(broken.to_string().contains("line 1"), "{broken}");
        let stray = profile_keys("[default]\ns3cr3t\n", "default").expect_err("no =");
        assert!(
            stray.to_string().contains("line 2") && !stray.to_string().contains("s3cr3t"),
            "{stray}"
        );
    }
}
