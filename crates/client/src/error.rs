//! Why a call failed, sorted by what the caller can do about it: fix the URL, fix the
//! credentials, fix the file, look again at what changed, or report a server problem.
//! No variant holds a credential, so neither `Display` nor `Debug` can show one.

use crate::types::{ErrorBody, ResourceProblem};

/// A failed API call.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The base URL given to [`crate::Client::new`] cannot be used.
    #[error("invalid server URL `{url}`: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// No HTTP answer came back: nothing listens there, DNS, TLS or a timeout.
    /// (`cause` is shown in the message rather than chained as a source: `ureq`'s
    /// errors already print their own cause.)
    #[error("cannot reach Gantry at {url}: {cause}")]
    Unreachable {
        url: String,
        cause: Box<ureq::Error>,
    },
    /// 401: no credentials, or ones the server does not accept.
    #[error("not authenticated: {}", .0.message)]
    Unauthorized(ErrorBody),
    /// 403: the credentials are valid but lack a permission (named in `detail`).
    #[error("forbidden: {}", .0.message)]
    Forbidden(ErrorBody),
    /// 409: the thing changed or is in a state that does not allow it (a resource
    /// changed since the server diffed it, a promotion already decided, an environment
    /// held or busy); nothing was changed. Look at its current state.
    #[error("conflict: {}", .0.message)]
    Conflict(ErrorBody),
    /// 400 or 422: the server refused the input as it stands (a bad value, a digest
    /// that is not in the application's repository, a reused idempotency key); fix it
    /// and send it again.
    #[error("{}", .body.message)]
    InvalidRequest { status: u16, body: ErrorBody },
    /// 400 `invalid_resources`: the file has problems, every one listed; nothing was
    /// applied.
    #[error("{message}")]
    InvalidResources {
        message: String,
        problems: Vec<ResourceProblem>,
    },
    /// Any other error status, with the server's envelope.
    #[error("the server answered HTTP {status}: {}", .body.message)]
    Api { status: u16, body: ErrorBody },
    /// The server answered, but not with what the API promises.
    #[error("unexpected answer from {url} (HTTP {status}): {reason}")]
    InvalidResponse {
        url: String,
        status: u16,
        reason: String,
    },
}

impl ClientError {
    /// The error for a non-2xx answer whose body was `text`.
    pub(crate) fn from_status(status: u16, text: &str) -> ClientError {
        let body = serde_json::from_str::<ErrorBody>(text).unwrap_or_else(|_| ErrorBody {
            code: format!("http_{status}"),
            message: format!("HTTP {status} without Gantry's error envelope (is this Gantry?)"),
            detail: serde_json::Value::Null,
        });
        match status {
            401 => ClientError::Unauthorized(body),
            403 => ClientError::Forbidden(body),
            409 => ClientError::Conflict(body),
            _ if body.code == "invalid_resources" => {
                match serde_json::from_value::<Vec<ResourceProblem>>(body.detail.clone()) {
                    Ok(problems) => ClientError::InvalidResources {
                        message: body.message,
                        problems,
                    },
                    Err(_) => ClientError::InvalidRequest { status, body },
                }
            }
            400 | 422 => ClientError::InvalidRequest { status, body },
            _ => ClientError::Api { status, body },
        }
    }

    /// The server's error envelope, when the server answered with one.
    pub fn body(&self) -> Option<&ErrorBody> {
        match self {
            ClientError::Unauthorized(body)
            | ClientError::Forbidden(body)
            | ClientError::Conflict(body)
            | ClientError::InvalidRequest { body, .. }
            | ClientError::Api { body, .. } => Some(body),
            ClientError::InvalidUrl { .. }
            | ClientError::Unreachable { .. }
            | ClientError::InvalidResources { .. }
            | ClientError::InvalidResponse { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(status: u16, body: &str, expected: &str) {
        let error = ClientError::from_status(status, body);
        let variant = format!("{error:?}");
        let variant = variant.split(['(', ' ', '{']).next().unwrap_or_default();
        assert_eq!(variant, expected, "{error:?}");
    }

    #[test]
    fn each_status_becomes_the_variant_that_says_what_to_do() {
        let envelope = |code: &str| format!(r#"{{"code":"{code}","message":"m","detail":null}}"#);
        check(401, &envelope("unauthorized"), "Unauthorized");
        check(403, &envelope("forbidden"), "Forbidden");
        check(409, &envelope("conflict"), "Conflict");
        check(404, &envelope("not_found"), "Api");
        check(400, &envelope("bad_request"), "InvalidRequest");
        check(422, &envelope("not_an_artifact"), "InvalidRequest");
        check(422, &envelope("idempotency_key_reused"), "InvalidRequest");
        check(502, "<html>bad gateway</html>", "Api");
        check(401, "", "Unauthorized");
        check(
            400,
            r#"{"code":"invalid_resources","message":"m","detail":[{"file":"f","document":null,"field":null,"line":null,"column":null,"message":"x"}]}"#,
            "InvalidResources",
        );
        check(400, &envelope("invalid_resources"), "InvalidRequest");
    }
}
