//! The JSON API's one error envelope, `{ "code", "message", "detail" }`, and the status
//! that goes with each code. Every `/api` handler fails with an [`ApiError`]; nothing
//! else in the API writes an error body.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde_json::{Value, json};

use super::types::{ErrorBody, ResourceProblem};

/// The largest JSON body a request may carry (check reports have their own limit).
pub(crate) const JSON_BODY_LIMIT: usize = 2 << 20;

/// What went wrong, as the client is told.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: Box<str>,
    detail: Value,
    /// A header the answer carries: a 401's challenge, a 429's wait.
    header: Option<(Extra, HeaderValue)>,
}

/// Which header an [`ApiError`] adds (small, so the error stays small).
#[derive(Debug, Clone, Copy)]
enum Extra {
    WwwAuthenticate,
    RetryAfter,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into().into_boxed_str(),
            detail: Value::Null,
            header: None,
        }
    }

    /// The status the error answers with.
    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }

    /// What the client is told went wrong.
    pub(crate) fn message(&self) -> &str {
        &self.message
    }

    pub(crate) fn with_detail(mut self, detail: Value) -> ApiError {
        self.detail = detail;
        self
    }

    #[cfg(test)]
    pub(crate) fn detail(&self) -> &Value {
        &self.detail
    }

    /// 431: the request head is larger than the server reads.
    pub(crate) fn headers_too_large(message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            message,
        )
    }

    /// 429: the caller has used up its share for now; `Retry-After` says how long.
    pub(crate) fn too_many_requests(
        message: impl Into<String>,
        retry_after: std::time::Duration,
    ) -> ApiError {
        ApiError {
            header: Some((
                Extra::RetryAfter,
                HeaderValue::from(retry_after.as_secs().max(1)),
            )),
            ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_requests", message)
        }
    }

    /// 400: the request itself is malformed (a query parameter, a body that is not text).
    pub(crate) fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 400: the resources file has problems; `detail` lists every one.
    pub(crate) fn invalid_resources(problems: Vec<ResourceProblem>) -> ApiError {
        let message = match problems.len() {
            1 => "the resources file has 1 problem".to_owned(),
            count => format!("the resources file has {count} problems"),
        };
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_resources", message)
            .with_detail(json!(problems))
    }

    /// 401 with a Bearer challenge in `realm`.
    pub(crate) fn unauthorized(realm: &str, message: impl Into<String>) -> ApiError {
        let challenge =
            HeaderValue::from_str(&format!("Bearer realm=\"{}\"", realm.replace('"', "")))
                .unwrap_or_else(|_| HeaderValue::from_static("Bearer realm=\"gantry\""));
        ApiError {
            header: Some((Extra::WwwAuthenticate, challenge)),
            ..ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
        }
    }

    /// 403: authenticated, but without `permission`.
    pub(crate) fn forbidden(message: impl Into<String>, permission: &str) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
            .with_detail(json!({ "permission": permission }))
    }

    /// 403: authenticated, but this person may not do this (the message says why:
    /// a missing role, their own promotion, a CI identity).
    pub(crate) fn refused(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 422: well-formed, but about something that cannot be acted on (`code` says what).
    pub(crate) fn unprocessable(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 409: a resource changed since the request's diff was computed.
    pub(crate) fn conflict(message: impl Into<String>, detail: Value) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "conflict", message).with_detail(detail)
    }

    pub(crate) fn payload_too_large(limit: usize) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body is larger than the limit of {limit} bytes"),
        )
        .with_detail(json!({ "limit": limit }))
    }

    pub(crate) fn unsupported_media_type(
        message: impl Into<String>,
        accepted: &[&str],
    ) -> ApiError {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            message,
        )
        .with_detail(json!({ "accepted": accepted }))
    }

    /// 500: logged here, with its cause, once; the client learns only that it failed.
    pub(crate) fn internal(context: &str, error: &dyn std::error::Error) -> ApiError {
        let mut chain = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            chain.push_str(": ");
            chain.push_str(&cause.to_string());
            source = cause.source();
        }
        tracing::error!(error = chain, "{context}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("{context}; the server log has the cause"),
        )
    }
}

impl From<store::StoreError> for ApiError {
    fn from(error: store::StoreError) -> ApiError {
        ApiError::internal("the metadata store failed", &error)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            code: self.code.to_owned(),
            message: self.message.into(),
            detail: self.detail,
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some((extra, value)) = self.header {
            let name = match extra {
                Extra::WwwAuthenticate => header::WWW_AUTHENTICATE,
                Extra::RetryAfter => header::RETRY_AFTER,
            };
            response.headers_mut().insert(name, value);
        }
        response
    }
}
