//! Secrets that targets name by reference (`secret_ref: webhooks/prod`): a webhook's
//! signing key, a destination registry's password, a git deploy key. Declarations hold
//! only the name; the value is a file under the server's secrets directory
//! (`[deploy] secrets_dir`), as mounted secrets are in most platforms, and is read when
//! a deployment needs it, so rotating one needs no restart.

use std::path::{Component, Path, PathBuf};

use domain::application::SecretRef;

/// Reads secrets by reference from one directory.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    dir: Option<PathBuf>,
}

impl Secrets {
    /// Secrets kept as files under `dir`; `None` means this server holds none.
    pub fn new(dir: Option<PathBuf>) -> Secrets {
        Secrets { dir }
    }

    /// Where the secret `reference` is kept, refusing references that would leave the
    /// directory.
    pub fn path(&self, reference: &SecretRef) -> Result<PathBuf, String> {
        let Some(dir) = &self.dir else {
            return Err(format!(
                "secret `{}` is needed but this server has no secrets directory ([deploy] secrets_dir)",
                reference.as_str()
            ));
        };
        let relative = Path::new(reference.as_str());
        let inside = relative.components().all(|c| match c {
            Component::Normal(part) => !part.to_string_lossy().starts_with('.'),
            _ => false,
        });
        if !inside {
            return Err(format!(
                "secret reference `{}` must name a file inside the secrets directory",
                reference.as_str()
            ));
        }
        Ok(dir.join(relative))
    }

    /// The secret's value, without a trailing newline.
    pub fn read(&self, reference: &SecretRef) -> Result<String, String> {
        let path = self.path(reference)?;
        let value = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read secret `{}`: {e}", reference.as_str()))?;
        Ok(value.trim_end_matches(['\r', '\n']).to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_files_inside_the_directory() {
        let dir = std::env::temp_dir().join(format!("gantry-secrets-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("webhooks")).expect("dir");
        std::fs::write(dir.join("webhooks/prod"), "s3cret\n").expect("write");
        let secrets = Secrets::new(Some(dir.clone()));
        let name = |text: &str| SecretRef::parse(text).expect("reference");
        assert_eq!(
            secrets.read(&name("webhooks/prod")),
            Ok("s3cret".to_owned())
        );
        assert!(secrets.read(&name("webhooks/missing")).is_err());
        for outside in [
            "../etc/passwd",
            "webhooks/../../x",
            ".hidden",
            "/etc/passwd",
        ] {
            if let Ok(reference) = SecretRef::parse(outside) {
                assert!(secrets.path(&reference).is_err(), "{outside}");
            }
        }
        assert!(Secrets::default().read(&name("webhooks/prod")).is_err());
        std::fs::remove_dir_all(dir).expect("clean");
    }
}
