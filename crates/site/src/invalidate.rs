//! Telling a CDN that a site changed, so it drops its cached copies of `/*`: either an
//! HTTP POST to a configured URL (through the outbound guard, like every request to a
//! URL a user declared) or a configured program (`aws cloudfront
//! create-invalidation …`), run with the deployment in `GANTRY_*` variables, nothing
//! else of the server's environment beyond `PATH`, `HOME` and the locale, and killed
//! with its whole process group past the timeout.

use std::sync::Arc;
use std::time::Duration;

use domain::application::InvalidationHook;

/// The paths every invalidation covers.
pub const INVALIDATED_PATHS: &str = "/*";

/// How much of a failing program's output an error quotes.
const OUTPUT_TAIL_BYTES: usize = 2048;

/// The deployment an invalidation is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidationRequest {
    pub application: String,
    pub environment: String,
    pub digest: String,
    pub deployment_id: i64,
    /// Where the site was synced (`s3://bucket/prefix` or a directory).
    pub destination: String,
}

/// Why an invalidation failed, and whether trying again may help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InvalidationError {
    pub message: String,
    pub transient: bool,
}

impl InvalidationError {
    fn failed(message: String) -> InvalidationError {
        InvalidationError {
            message,
            transient: false,
        }
    }

    fn transient(message: String) -> InvalidationError {
        InvalidationError {
            message,
            transient: true,
        }
    }
}

/// Calls `hook` for [`INVALIDATED_PATHS`]; `Ok` carries a note for the log.
pub async fn invalidate(
    hook: &InvalidationHook,
    request: &InvalidationRequest,
    environment: &deploy::ChildEnvironment,
    outbound: Arc<outbound::Policy>,
    timeout: Duration,
) -> Result<String, InvalidationError> {
    match hook {
        InvalidationHook::Http(url) => {
            let url = url.as_str().to_owned();
            let body = serde_json::json!({
                "paths": [INVALIDATED_PATHS],
                "application": request.application,
                "environment": request.environment,
                "digest": request.digest,
                "deployment_id": request.deployment_id,
                "destination": request.destination,
            });
            tokio::task::spawn_blocking(move || post(&url, &body, outbound, timeout))
                .await
                .map_err(|error| InvalidationError::transient(error.to_string()))?
        }
        InvalidationHook::Command { program, args } => {
            run(program, args, request, environment, timeout).await
        }
    }
}

fn post(
    url: &str,
    body: &serde_json::Value,
    outbound: Arc<outbound::Policy>,
    timeout: Duration,
) -> Result<String, InvalidationError> {
    let agent = outbound::agent(outbound, timeout);
    match agent.post(url).send_json(body) {
        Ok(response) => {
            let status = response.status().as_u16();
            match status {
                200..=299 => Ok(format!("POST {url} answered {status}")),
                408 | 429 | 500..=599 => Err(InvalidationError::transient(format!(
                    "the invalidation hook {url} answered {status}"
                ))),
                _ => Err(InvalidationError::failed(format!(
                    "the invalidation hook {url} answered {status}"
                ))),
            }
        }
        // The outbound guard refused the address: configuration, not weather.
        Err(ureq::Error::Io(error)) if error.kind() == std::io::ErrorKind::PermissionDenied => {
            Err(InvalidationError::failed(format!(
                "the invalidation hook {url} may not be called: {error}"
            )))
        }
        Err(error) => Err(InvalidationError::transient(format!(
            "calling the invalidation hook {url}: {error}"
        ))),
    }
}

async fn run(
    program: &str,
    args: &[String],
    request: &InvalidationRequest,
    environment: &deploy::ChildEnvironment,
    timeout: Duration,
) -> Result<String, InvalidationError> {
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .env_clear()
        .envs(environment.iter())
        .envs([
            ("GANTRY_APP", request.application.clone()),
            ("GANTRY_ENV", request.environment.clone()),
            ("GANTRY_DIGEST", request.digest.clone()),
            ("GANTRY_DEPLOYMENT_ID", request.deployment_id.to_string()),
            ("GANTRY_DESTINATION", request.destination.clone()),
            ("GANTRY_INVALIDATE_PATHS", INVALIDATED_PATHS.to_owned()),
        ]);
    let bounds = deploy::process::Bounds {
        timeout,
        stdout_bytes: OUTPUT_TAIL_BYTES,
        stderr_bytes: OUTPUT_TAIL_BYTES,
    };
    match deploy::process::run(&mut command, None, bounds).await {
        Ok(finished) if finished.status.success() => Ok(format!("{program} exited 0")),
        Ok(finished) => {
            let mut text = String::from_utf8_lossy(&finished.stderr).into_owned();
            text.push_str(&String::from_utf8_lossy(&finished.stdout));
            Err(InvalidationError::failed(format!(
                "the invalidation command {program} {}: {}",
                finished.status,
                deploy::process::text_tail(text.trim(), OUTPUT_TAIL_BYTES)
            )))
        }
        Err(error @ deploy::process::RunError::TimedOut(_)) => Err(InvalidationError::transient(
            format!("the invalidation command {}", error.about(program)),
        )),
        Err(error) => Err(InvalidationError::failed(error.about(program))),
    }
}
