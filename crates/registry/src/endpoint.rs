//! One parser from (method, path) to the OCI endpoint it names. Repository names may
//! have any number of `/`-separated components, so the path is read from its end:
//! the last components say which endpoint it is, everything before is the name.

use domain::{Digest, NameError, Reference, RepoName};
use http::Method;

use crate::error::RegistryError;

/// Every endpoint of the OCI Distribution Specification v1.1 that Gantry serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET|HEAD /v2/`
    Base,
    /// `GET /v2/_catalog`
    Catalog,
    /// `GET|HEAD /v2/{name}/manifests/{reference}`
    GetManifest {
        name: RepoName,
        reference: Reference,
    },
    /// `PUT /v2/{name}/manifests/{reference}`
    PutManifest {
        name: RepoName,
        reference: Reference,
    },
    /// `DELETE /v2/{name}/manifests/{reference}`
    DeleteManifest {
        name: RepoName,
        reference: Reference,
    },
    /// `GET|HEAD /v2/{name}/blobs/{digest}`
    GetBlob { name: RepoName, digest: Digest },
    /// `DELETE /v2/{name}/blobs/{digest}`
    DeleteBlob { name: RepoName, digest: Digest },
    /// `POST /v2/{name}/blobs/uploads/`
    StartUpload { name: RepoName },
    /// `GET /v2/{name}/blobs/uploads/{id}`
    UploadStatus { name: RepoName, id: UploadId },
    /// `PATCH /v2/{name}/blobs/uploads/{id}`
    PatchUpload { name: RepoName, id: UploadId },
    /// `PUT /v2/{name}/blobs/uploads/{id}`
    FinishUpload { name: RepoName, id: UploadId },
    /// `DELETE /v2/{name}/blobs/uploads/{id}`
    CancelUpload { name: RepoName, id: UploadId },
    /// `GET /v2/{name}/tags/list`
    ListTags { name: RepoName },
    /// `GET /v2/{name}/referrers/{digest}`
    Referrers { name: RepoName, digest: Digest },
}

/// The class of an endpoint, for metrics: a small closed set, never a raw path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteClass {
    Base,
    Catalog,
    Manifest,
    Blob,
    Upload,
    Tags,
    Referrers,
    Unknown,
}

impl RouteClass {
    pub fn as_str(self) -> &'static str {
        match self {
            RouteClass::Base => "registry_base",
            RouteClass::Catalog => "registry_catalog",
            RouteClass::Manifest => "registry_manifest",
            RouteClass::Blob => "registry_blob",
            RouteClass::Upload => "registry_upload",
            RouteClass::Tags => "registry_tags",
            RouteClass::Referrers => "registry_referrers",
            RouteClass::Unknown => "registry_unknown",
        }
    }
}

/// An upload session id: a UUID, as Gantry issues them. Anything else is unknown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadId(String);

impl Default for UploadId {
    fn default() -> Self {
        UploadId::new()
    }
}

impl UploadId {
    pub fn new() -> UploadId {
        UploadId(uuid::Uuid::new_v4().to_string())
    }

    fn parse(text: &str) -> Option<UploadId> {
        let parsed = uuid::Uuid::try_parse(text).ok()?;
        // Only the canonical hyphenated lowercase form, so one session has one URL.
        (parsed.to_string() == text).then(|| UploadId(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Endpoint {
    /// The name of every endpoint, as [`Endpoint::kind`] gives them: for tables that
    /// must cover every endpoint, such as the authorization matrix.
    pub const KINDS: [&'static str; 14] = [
        "Base",
        "Catalog",
        "GetManifest",
        "PutManifest",
        "DeleteManifest",
        "GetBlob",
        "DeleteBlob",
        "StartUpload",
        "UploadStatus",
        "PatchUpload",
        "FinishUpload",
        "CancelUpload",
        "ListTags",
        "Referrers",
    ];

    /// A stable name for which endpoint this is, one of [`Endpoint::KINDS`].
    pub fn kind(&self) -> &'static str {
        match self {
            Endpoint::Base => "Base",
            Endpoint::Catalog => "Catalog",
            Endpoint::GetManifest { .. } => "GetManifest",
            Endpoint::PutManifest { .. } => "PutManifest",
            Endpoint::DeleteManifest { .. } => "DeleteManifest",
            Endpoint::GetBlob { .. } => "GetBlob",
            Endpoint::DeleteBlob { .. } => "DeleteBlob",
            Endpoint::StartUpload { .. } => "StartUpload",
            Endpoint::UploadStatus { .. } => "UploadStatus",
            Endpoint::PatchUpload { .. } => "PatchUpload",
            Endpoint::FinishUpload { .. } => "FinishUpload",
            Endpoint::CancelUpload { .. } => "CancelUpload",
            Endpoint::ListTags { .. } => "ListTags",
            Endpoint::Referrers { .. } => "Referrers",
        }
    }

    /// Parses the request line. `path` is the raw (still percent-encoded) path: no
    /// valid name, tag or digest contains `%`, so nothing needs decoding.
    pub fn parse(method: &Method, path: &str) -> Result<Endpoint, RegistryError> {
        let rest = path
            .strip_prefix("/v2")
            .ok_or_else(|| RegistryError::not_found_route(path))?;
        if rest.is_empty() || rest == "/" {
            return match *method {
                Method::GET | Method::HEAD => Ok(Endpoint::Base),
                _ => Err(RegistryError::method_not_allowed(method)),
            };
        }
        let rest = rest
            .strip_prefix('/')
            .ok_or_else(|| RegistryError::not_found_route(path))?;
        if rest == "_catalog" {
            return match *method {
                Method::GET => Ok(Endpoint::Catalog),
                _ => Err(RegistryError::method_not_allowed(method)),
            };
        }
        let segments: Vec<&str> = rest.split('/').collect();
        let n = segments.len();
        let name_of = |count: usize| -> Result<RepoName, RegistryError> {
            if count == 0 {
                return Err(RegistryError::not_found_route(path));
            }
            RepoName::parse(&segments[..count].join("/")).map_err(RegistryError::from_name)
        };
        let tail = |k: usize| segments.get(n.wrapping_sub(k)).copied();

        // …/blobs/uploads/ and …/blobs/uploads (the trailing slash is optional).
        if n >= 3 && tail(3) == Some("blobs") && tail(2) == Some("uploads") && tail(1) == Some("") {
            let name = name_of(n - 3)?;
            return match *method {
                Method::POST => Ok(Endpoint::StartUpload { name }),
                _ => Err(RegistryError::method_not_allowed(method)),
            };
        }
        if n >= 2 && tail(2) == Some("blobs") && tail(1) == Some("uploads") {
            let name = name_of(n - 2)?;
            return match *method {
                Method::POST => Ok(Endpoint::StartUpload { name }),
                _ => Err(RegistryError::method_not_allowed(method)),
            };
        }
        if n >= 3 && tail(3) == Some("blobs") && tail(2) == Some("uploads") {
            let name = name_of(n - 3)?;
            let id = tail(1)
                .and_then(UploadId::parse)
                .ok_or_else(RegistryError::upload_unknown)?;
            return match *method {
                Method::GET | Method::HEAD => Ok(Endpoint::UploadStatus { name, id }),
                Method::PATCH => Ok(Endpoint::PatchUpload { name, id }),
                Method::PUT => Ok(Endpoint::FinishUpload { name, id }),
                Method::DELETE => Ok(Endpoint::CancelUpload { name, id }),
                _ => Err(RegistryError::method_not_allowed(method)),
            };
        }
        if n >= 2 && tail(2) == Some("tags") && tail(1) == Some("list") {
            let name = name_of(n - 2)?;
            return match *method {
                Method::GET => Ok(Endpoint::ListTags { name }),
                _ => Err(RegistryError::method_not_allowed(method)),
            };
        }
        if n >= 2 {
            let last = tail(1).unwrap_or_default();
            match tail(2) {
                Some("manifests") => {
                    let name = name_of(n - 2)?;
                    let reading = matches!(*method, Method::GET | Method::HEAD);
                    let reference = Reference::parse(last).map_err(|error| {
                        RegistryError::from_reference(error, reading.then_some(last))
                    })?;
                    return match *method {
                        Method::GET | Method::HEAD => Ok(Endpoint::GetManifest { name, reference }),
                        Method::PUT => Ok(Endpoint::PutManifest { name, reference }),
                        Method::DELETE => Ok(Endpoint::DeleteManifest { name, reference }),
                        _ => Err(RegistryError::method_not_allowed(method)),
                    };
                }
                Some("blobs") => {
                    let name = name_of(n - 2)?;
                    let digest = Digest::parse(last).map_err(RegistryError::digest_invalid)?;
                    return match *method {
                        Method::GET | Method::HEAD => Ok(Endpoint::GetBlob { name, digest }),
                        Method::DELETE => Ok(Endpoint::DeleteBlob { name, digest }),
                        _ => Err(RegistryError::method_not_allowed(method)),
                    };
                }
                Some("referrers") => {
                    let name = name_of(n - 2)?;
                    let digest = Digest::parse(last).map_err(RegistryError::digest_invalid)?;
                    return match *method {
                        Method::GET => Ok(Endpoint::Referrers { name, digest }),
                        _ => Err(RegistryError::method_not_allowed(method)),
                    };
                }
                _ => {}
            }
        }
        Err(RegistryError::not_found_route(path))
    }

    /// The repository the endpoint acts on, if any.
    pub fn repository(&self) -> Option<&RepoName> {
        match self {
            Endpoint::Base | Endpoint::Catalog => None,
            Endpoint::GetManifest { name, .. }
            | Endpoint::PutManifest { name, .. }
            | Endpoint::DeleteManifest { name, .. }
            | Endpoint::GetBlob { name, .. }
            | Endpoint::DeleteBlob { name, .. }
            | Endpoint::StartUpload { name }
            | Endpoint::UploadStatus { name, .. }
            | Endpoint::PatchUpload { name, .. }
            | Endpoint::FinishUpload { name, .. }
            | Endpoint::CancelUpload { name, .. }
            | Endpoint::ListTags { name }
            | Endpoint::Referrers { name, .. } => Some(name),
        }
    }

    /// What the caller must be allowed to do.
    pub fn action(&self) -> domain::Action {
        use domain::Action;
        match self {
            Endpoint::Base
            | Endpoint::GetManifest { .. }
            | Endpoint::GetBlob { .. }
            | Endpoint::ListTags { .. }
            | Endpoint::Referrers { .. } => Action::Pull,
            Endpoint::Catalog => Action::Catalog,
            Endpoint::PutManifest { .. }
            | Endpoint::StartUpload { .. }
            | Endpoint::UploadStatus { .. }
            | Endpoint::PatchUpload { .. }
            | Endpoint::FinishUpload { .. }
            | Endpoint::CancelUpload { .. } => Action::Push,
            Endpoint::DeleteManifest { .. } | Endpoint::DeleteBlob { .. } => Action::Delete,
        }
    }

    pub fn class(&self) -> RouteClass {
        match self {
            Endpoint::Base => RouteClass::Base,
            Endpoint::Catalog => RouteClass::Catalog,
            Endpoint::GetManifest { .. }
            | Endpoint::PutManifest { .. }
            | Endpoint::DeleteManifest { .. } => RouteClass::Manifest,
            Endpoint::GetBlob { .. } | Endpoint::DeleteBlob { .. } => RouteClass::Blob,
            Endpoint::StartUpload { .. }
            | Endpoint::UploadStatus { .. }
            | Endpoint::PatchUpload { .. }
            | Endpoint::FinishUpload { .. }
            | Endpoint::CancelUpload { .. } => RouteClass::Upload,
            Endpoint::ListTags { .. } => RouteClass::Tags,
            Endpoint::Referrers { .. } => RouteClass::Referrers,
        }
    }
}

impl RegistryError {
    fn from_name(error: NameError) -> RegistryError {
        RegistryError::name_invalid(error.to_string())
    }

    /// A reference that does not parse. A malformed digest is always `DIGEST_INVALID`;
    /// any other text is `TAG_INVALID` for a write, but for a read (`read` holds the
    /// text) simply a manifest nobody can have pushed: 404 `MANIFEST_UNKNOWN`, as for
    /// any unknown tag (the distribution spec's conformance suite reads
    /// `.INVALID_MANIFEST_NAME` and expects exactly that).
    fn from_reference(error: NameError, read: Option<&str>) -> RegistryError {
        match (error, read) {
            (NameError::InvalidDigest(e), _) => RegistryError::digest_invalid(e),
            (_, Some(text)) => RegistryError::manifest_unknown(text),
            (other, None) => RegistryError::tag_invalid(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn check(method: Method, path: &str, expected: Result<&str, ErrorCode>) {
        let got = Endpoint::parse(&method, path)
            .map(|e| format!("{e:?}"))
            .map_err(|e| e.code());
        match (&got, &expected) {
            (Ok(got), Ok(want)) => assert!(
                got.starts_with(want),
                "{method} {path}: got {got}, want {want}…"
            ),
            (Err(got), Err(want)) => assert_eq!(got, want, "{method} {path}"),
            _ => panic!("{method} {path}: got {got:?}, want {expected:?}"),
        }
    }

    #[test]
    fn every_endpoint_parses_with_names_of_any_depth() {
        check(Method::GET, "/v2/", Ok("Base"));
        check(Method::HEAD, "/v2", Ok("Base"));
        check(Method::GET, "/v2/_catalog", Ok("Catalog"));
        check(
            Method::GET,
            "/v2/a/manifests/v1",
            Ok("GetManifest { name: RepoName(a), reference: Tag(Tag(v1))"),
        );
        check(
            Method::HEAD,
            &format!("/v2/a/b/c/d/manifests/{D}"),
            Ok("GetManifest { name: RepoName(a/b/c/d)"),
        );
        check(
            Method::PUT,
            "/v2/acme/web/manifests/latest",
            Ok("PutManifest"),
        );
        check(
            Method::DELETE,
            "/v2/acme/web/manifests/latest",
            Ok("DeleteManifest"),
        );
        check(Method::GET, &format!("/v2/x/blobs/{D}"), Ok("GetBlob"));
        check(
            Method::DELETE,
            &format!("/v2/x/blobs/{D}"),
            Ok("DeleteBlob"),
        );
        check(
            Method::POST,
            "/v2/x/y/blobs/uploads/",
            Ok("StartUpload { name: RepoName(x/y)"),
        );
        check(
            Method::POST,
            "/v2/x/y/blobs/uploads",
            Ok("StartUpload { name: RepoName(x/y)"),
        );
        let id = "0b9c8f4e-7d1a-4c47-9b1e-2f2f1d3c4b5a";
        check(
            Method::GET,
            &format!("/v2/x/blobs/uploads/{id}"),
            Ok("UploadStatus"),
        );
        check(
            Method::PATCH,
            &format!("/v2/x/blobs/uploads/{id}"),
            Ok("PatchUpload"),
        );
        check(
            Method::PUT,
            &format!("/v2/x/blobs/uploads/{id}"),
            Ok("FinishUpload"),
        );
        check(
            Method::DELETE,
            &format!("/v2/x/blobs/uploads/{id}"),
            Ok("CancelUpload"),
        );
        check(
            Method::GET,
            "/v2/a/b/tags/list",
            Ok("ListTags { name: RepoName(a/b) }"),
        );
        check(
            Method::GET,
            &format!("/v2/a/referrers/{D}"),
            Ok("Referrers"),
        );
        // A repository may itself contain the words the endpoints use.
        check(
            Method::GET,
            "/v2/blobs/manifests/manifests/v1",
            Ok("GetManifest { name: RepoName(blobs/manifests)"),
        );
        check(
            Method::GET,
            "/v2/tags/list/tags/list",
            Ok("ListTags { name: RepoName(tags/list) }"),
        );
    }

    #[test]
    fn every_kind_is_named_once_and_names_the_endpoint_it_parses_from() {
        let distinct: std::collections::BTreeSet<&str> = Endpoint::KINDS.into_iter().collect();
        assert_eq!(
            distinct.len(),
            Endpoint::KINDS.len(),
            "a kind is listed twice"
        );
        let id = "0b9c8f4e-7d1a-4c47-9b1e-2f2f1d3c4b5a";
        let one_of_each = [
            (Method::GET, "/v2/".to_owned()),
            (Method::GET, "/v2/_catalog".to_owned()),
            (Method::GET, "/v2/a/manifests/v1".to_owned()),
            (Method::PUT, "/v2/a/manifests/v1".to_owned()),
            (Method::DELETE, format!("/v2/a/manifests/{D}")),
            (Method::GET, format!("/v2/a/blobs/{D}")),
            (Method::DELETE, format!("/v2/a/blobs/{D}")),
            (Method::POST, "/v2/a/blobs/uploads/".to_owned()),
            (Method::GET, format!("/v2/a/blobs/uploads/{id}")),
            (Method::PATCH, format!("/v2/a/blobs/uploads/{id}")),
            (Method::PUT, format!("/v2/a/blobs/uploads/{id}")),
            (Method::DELETE, format!("/v2/a/blobs/uploads/{id}")),
            (Method::GET, "/v2/a/tags/list".to_owned()),
            (Method::GET, format!("/v2/a/referrers/{D}")),
        ];
        assert_eq!(one_of_each.len(), Endpoint::KINDS.len());
        for ((method, path), kind) in one_of_each.iter().zip(Endpoint::KINDS) {
            let endpoint = Endpoint::parse(method, path)
                .unwrap_or_else(|e| panic!("{method} {path}: {}", e.code().as_str()));
            assert_eq!(endpoint.kind(), kind, "{method} {path}");
        }
    }

    #[test]
    fn malformed_requests_get_the_specific_error() {
        check(
            Method::GET,
            "/v2/UPPER/manifests/v1",
            Err(ErrorCode::NameInvalid),
        );
        check(
            Method::GET,
            "/v2/a/../b/manifests/v1",
            Err(ErrorCode::NameInvalid),
        );
        check(
            Method::GET,
            "/v2/a%2fb/manifests/v1",
            Err(ErrorCode::NameInvalid),
        );
        check(
            Method::GET,
            "//v2/a/manifests/v1",
            Err(ErrorCode::Unsupported),
        );
        check(
            Method::GET,
            "/v2//manifests/v1",
            Err(ErrorCode::NameInvalid),
        );
        check(Method::GET, "/v2/manifests/v1", Err(ErrorCode::Unsupported));
        check(
            Method::GET,
            "/v2/a/manifests/sha256:abc",
            Err(ErrorCode::DigestInvalid),
        );
        check(
            Method::PUT,
            "/v2/a/manifests/-bad",
            Err(ErrorCode::TagInvalid),
        );
        check(
            Method::DELETE,
            "/v2/a/manifests/.INVALID_MANIFEST_NAME",
            Err(ErrorCode::TagInvalid),
        );
        check(
            Method::GET,
            "/v2/a/blobs/notadigest",
            Err(ErrorCode::DigestInvalid),
        );
        check(
            Method::GET,
            "/v2/a/blobs/uploads/not-a-uuid",
            Err(ErrorCode::BlobUploadUnknown),
        );
        check(
            Method::GET,
            "/v2/a/blobs/uploads/0B9C8F4E-7D1A-4C47-9B1E-2F2F1D3C4B5A",
            Err(ErrorCode::BlobUploadUnknown),
        );
        check(
            Method::POST,
            "/v2/a/manifests/v1",
            Err(ErrorCode::Unsupported),
        );
        check(
            Method::PUT,
            &format!("/v2/a/blobs/{D}"),
            Err(ErrorCode::Unsupported),
        );
        check(Method::GET, "/v2/a/b/c", Err(ErrorCode::Unsupported));
        check(
            Method::GET,
            "/v2/a/referrers/xyz",
            Err(ErrorCode::DigestInvalid),
        );
        check(Method::DELETE, "/v2/_catalog", Err(ErrorCode::Unsupported));
        check(
            Method::GET,
            &format!("/v2/{}/tags/list", "a".repeat(300)),
            Err(ErrorCode::NameInvalid),
        );
    }
}
