//! What can go wrong copying, sorted by what the caller can do about it: retry later
//! ([`CopyError::is_transient`]) or give up and tell someone.

use domain::Digest;

/// Why a copy failed.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The connection failed or timed out; trying again may succeed.
    #[error("{context}: {message}")]
    Network { context: String, message: String },
    /// The outbound guard refused the address (loopback, private, metadata), the
    /// address is otherwise not one Gantry may reach, or the TLS handshake failed
    /// (a plain-HTTP registry, a certificate not trusted): retrying will not help.
    #[error("{context}: {message}")]
    Refused { context: String, message: String },
    /// The registry answered 5xx or 429; trying again may succeed.
    #[error("{context}: the registry answered {status}: {message}")]
    Unavailable {
        context: String,
        status: u16,
        message: String,
    },
    /// The registry refused the request (4xx): trying again will not help.
    #[error("{context}: the registry answered {status}: {message}")]
    Rejected {
        context: String,
        status: u16,
        message: String,
    },
    /// The registry wants credentials Gantry does not have, or refused them.
    #[error("{context}: {message}")]
    Unauthorized { context: String, message: String },
    /// The manifest or tag does not exist at the source.
    #[error("{0} was not found")]
    NotFound(String),
    /// Bytes did not hash to the digest that names them: the copy is aborted before
    /// they are committed anywhere.
    #[error("{what} should have digest {expected} but its bytes hash to {actual}")]
    DigestMismatch {
        what: String,
        expected: Digest,
        actual: Digest,
    },
    /// A blob's length differs from the size its descriptor declares.
    #[error("{what} should be {expected} bytes but {actual} arrived")]
    SizeMismatch {
        what: String,
        expected: u64,
        actual: u64,
    },
    /// After the copy, the destination serves something other than what was copied.
    #[error(
        "verification failed: {reference} serves {served} but {expected} was copied; the destination does not hold the promoted artifact"
    )]
    VerificationFailed {
        reference: String,
        expected: Digest,
        served: String,
    },
    /// The destination refused to point a tag that names another digest there at the
    /// copy: it keeps tags immutable.
    #[error(
        "{location} names {existing} and the destination refused to move it (its tags are immutable): {message}"
    )]
    TagNotMoved {
        location: String,
        tag: domain::Tag,
        existing: String,
        message: String,
    },
    /// The manifest is not one this copier understands (or is malformed).
    #[error("{0}")]
    InvalidManifest(String),
    /// A reference or setting could not be read, or a registry cannot be followed
    /// (too many redirects).
    #[error("{0}")]
    Invalid(String),
    /// Gantry's own store failed while reading the source.
    #[error("reading from Gantry's store: {0}")]
    Store(String),
}

impl CopyError {
    /// Whether trying the same copy again later may succeed (connection errors,
    /// timeouts, 5xx and 429 answers, a failing store).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            CopyError::Network { .. } | CopyError::Unavailable { .. } | CopyError::Store(_)
        )
    }

    /// The error for an HTTP status that is not the expected one.
    pub(crate) fn from_status(context: String, status: u16, body: &str) -> CopyError {
        let message = summarize_error_body(body);
        match status {
            401 | 403 => CopyError::Unauthorized {
                context,
                message: format!("the registry answered {status}: {message}"),
            },
            429 | 500..=599 => CopyError::Unavailable {
                context,
                status,
                message,
            },
            _ => CopyError::Rejected {
                context,
                status,
                message,
            },
        }
    }

    /// The error for a failed HTTP exchange (no status).
    pub(crate) fn from_transport(context: String, error: ureq::Error) -> CopyError {
        // A failed TLS handshake fails the same way every time (most often the
        // registry speaks plain HTTP): no retry, and the setting that fixes it named.
        // (TLS records that do not parse reach here as `InvalidData` I/O errors.)
        let tls = match &error {
            ureq::Error::Rustls(_) | ureq::Error::Tls(_) => true,
            ureq::Error::Io(io) => io.kind() == std::io::ErrorKind::InvalidData,
            _ => false,
        };
        if tls {
            return CopyError::Refused {
                context,
                message: format!(
                    "the TLS handshake failed ({error}); if the registry speaks plain HTTP, say so: `plain_http = true` under [deploy.registry_copy.registries.\"HOST:PORT\"] for the registry-copy target, `--src-plain-http` or `--dest-plain-http` for `gantry copy`"
                ),
            };
        }
        let refused = match &error {
            ureq::Error::Io(io) => io.kind() == std::io::ErrorKind::PermissionDenied,
            ureq::Error::BadUri(_)
            | ureq::Error::RequireHttpsOnly(_)
            | ureq::Error::InvalidProxyUrl => true,
            _ => false,
        };
        let message = error.to_string();
        if refused {
            CopyError::Refused { context, message }
        } else {
            CopyError::Network { context, message }
        }
    }
}

/// The messages of an OCI error envelope, or the start of any other body.
fn summarize_error_body(body: &str) -> String {
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(body)
        && let Some(errors) = value.get("errors").and_then(|e| e.as_array())
    {
        let parts: Vec<String> = errors
            .iter()
            .map(|error| {
                let code = error.get("code").and_then(|c| c.as_str()).unwrap_or("");
                let message = error.get("message").and_then(|m| m.as_str()).unwrap_or("");
                format!("{code} {message}").trim().to_owned()
            })
            .collect();
        if !parts.is_empty() {
            return parts.join("; ");
        }
    }
    let trimmed = body.trim();
    if trimmed.is_empty() {
        return "(no details)".to_owned();
    }
    trimmed.chars().take(300).collect()
}
