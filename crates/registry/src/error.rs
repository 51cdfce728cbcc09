//! The OCI error envelope: every failure the registry reports is one [`RegistryError`]
//! with a spec code, an HTTP status and a message that says what to do.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;

/// The error codes of the OCI Distribution Specification (4xx answers use only these,
/// plus `TAG_INVALID` from its legacy Docker list), and two for 5xx answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    Unauthorized,
    Denied,
    Unsupported,
    TooManyRequests,
    TagInvalid,
    Internal,
    Unavailable,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BlobUnknown => "BLOB_UNKNOWN",
            ErrorCode::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            ErrorCode::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            ErrorCode::DigestInvalid => "DIGEST_INVALID",
            ErrorCode::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            ErrorCode::ManifestInvalid => "MANIFEST_INVALID",
            ErrorCode::ManifestUnknown => "MANIFEST_UNKNOWN",
            ErrorCode::NameInvalid => "NAME_INVALID",
            ErrorCode::NameUnknown => "NAME_UNKNOWN",
            ErrorCode::SizeInvalid => "SIZE_INVALID",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Denied => "DENIED",
            ErrorCode::Unsupported => "UNSUPPORTED",
            ErrorCode::TooManyRequests => "TOOMANYREQUESTS",
            ErrorCode::TagInvalid => "TAG_INVALID",
            ErrorCode::Internal => "INTERNAL_ERROR",
            ErrorCode::Unavailable => "UNAVAILABLE",
        }
    }
}

/// A registry failure, rendered as `{"errors":[{"code","message","detail"}]}`.
#[derive(Debug)]
pub struct RegistryError {
    code: ErrorCode,
    status: StatusCode,
    message: String,
    detail: Option<serde_json::Value>,
    headers: Vec<(header::HeaderName, HeaderValue)>,
}

impl RegistryError {
    pub fn new(code: ErrorCode, status: StatusCode, message: impl Into<String>) -> RegistryError {
        RegistryError {
            code,
            status,
            message: message.into(),
            detail: None,
            headers: Vec::new(),
        }
    }

    pub fn with_detail(mut self, detail: serde_json::Value) -> RegistryError {
        self.detail = Some(detail);
        self
    }

    pub fn with_header(mut self, name: header::HeaderName, value: HeaderValue) -> RegistryError {
        self.headers.push((name, value));
        self
    }

    pub fn code(&self) -> ErrorCode {
        self.code
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub(crate) fn not_found_route(path: &str) -> RegistryError {
        let shown: String = path.chars().take(120).collect();
        RegistryError::new(
            ErrorCode::Unsupported,
            StatusCode::NOT_FOUND,
            format!("no registry endpoint at {shown}"),
        )
    }

    pub(crate) fn method_not_allowed(method: &http::Method) -> RegistryError {
        RegistryError::new(
            ErrorCode::Unsupported,
            StatusCode::METHOD_NOT_ALLOWED,
            format!("method {method} is not supported on this endpoint"),
        )
    }

    /// A malformed request outside the distribution API proper (the token endpoint).
    pub(crate) fn bad_request(message: impl Into<String>) -> RegistryError {
        RegistryError::new(ErrorCode::Unsupported, StatusCode::BAD_REQUEST, message)
    }

    pub(crate) fn name_invalid(message: impl Into<String>) -> RegistryError {
        RegistryError::new(ErrorCode::NameInvalid, StatusCode::BAD_REQUEST, message)
    }

    pub(crate) fn tag_invalid(message: impl Into<String>) -> RegistryError {
        RegistryError::new(ErrorCode::TagInvalid, StatusCode::BAD_REQUEST, message)
    }

    pub(crate) fn digest_invalid(message: impl std::fmt::Display) -> RegistryError {
        RegistryError::new(
            ErrorCode::DigestInvalid,
            StatusCode::BAD_REQUEST,
            message.to_string(),
        )
    }

    pub(crate) fn upload_unknown() -> RegistryError {
        RegistryError::new(
            ErrorCode::BlobUploadUnknown,
            StatusCode::NOT_FOUND,
            "upload session unknown, finished or expired; start a new upload with POST /v2/<name>/blobs/uploads/",
        )
    }

    pub(crate) fn name_unknown(name: &domain::RepoName) -> RegistryError {
        RegistryError::new(
            ErrorCode::NameUnknown,
            StatusCode::NOT_FOUND,
            format!("repository {name} is not known"),
        )
    }

    /// 404 `MANIFEST_UNKNOWN` for a reference (a tag, digest, or text no manifest has).
    pub(crate) fn manifest_unknown(reference: impl std::fmt::Display) -> RegistryError {
        let shown: String = reference.to_string().chars().take(140).collect();
        RegistryError::new(
            ErrorCode::ManifestUnknown,
            StatusCode::NOT_FOUND,
            format!("manifest {shown} is not known"),
        )
    }

    pub(crate) fn manifest_invalid(message: impl Into<String>) -> RegistryError {
        RegistryError::new(ErrorCode::ManifestInvalid, StatusCode::BAD_REQUEST, message)
    }

    pub(crate) fn internal(context: &str, error: impl std::fmt::Display) -> RegistryError {
        // The chain is logged once here; the client gets no internals.
        tracing::error!(%error, context, "registry request failed");
        RegistryError::new(
            ErrorCode::Internal,
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error; see the server log",
        )
    }
}

impl From<store::StoreError> for RegistryError {
    fn from(error: store::StoreError) -> RegistryError {
        if error.is_busy() {
            return RegistryError::new(
                ErrorCode::Unavailable,
                StatusCode::SERVICE_UNAVAILABLE,
                "the database is busy; retry shortly",
            );
        }
        RegistryError::internal("store", error)
    }
}

impl From<blobs::BlobError> for RegistryError {
    fn from(error: blobs::BlobError) -> RegistryError {
        match error {
            blobs::BlobError::Body(message) => RegistryError::new(
                ErrorCode::BlobUploadInvalid,
                StatusCode::BAD_REQUEST,
                format!("the upload body could not be read: {message}"),
            ),
            blobs::BlobError::TooLarge { limit } => RegistryError::new(
                ErrorCode::SizeInvalid,
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the blob exceeds the maximum blob size of {limit} bytes"),
            ),
            blobs::BlobError::NotFound => RegistryError::new(
                ErrorCode::BlobUnknown,
                StatusCode::NOT_FOUND,
                "blob content is not in the blob store",
            ),
            other => RegistryError::internal("blob store", other),
        }
    }
}

#[derive(Serialize)]
struct Envelope<'a> {
    errors: [Entry<'a>; 1],
}

#[derive(Serialize)]
struct Entry<'a> {
    code: &'static str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a serde_json::Value>,
}

impl IntoResponse for RegistryError {
    fn into_response(self) -> Response {
        let body = Envelope {
            errors: [Entry {
                code: self.code.as_str(),
                message: &self.message,
                detail: self.detail.as_ref(),
            }],
        };
        let body = serde_json::to_vec(&body).unwrap_or_else(|_| b"{\"errors\":[]}".to_vec());
        let mut response = (
            self.status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response();
        for (name, value) in self.headers {
            response.headers_mut().append(name, value);
        }
        response
    }
}
