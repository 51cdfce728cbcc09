//! A small, blocking OCI Distribution client: just what copying needs (manifests by tag
//! or digest, blob existence, streaming blob downloads and uploads, cross-repository
//! mounts), over an SSRF-guarded [`ureq`] agent.
//!
//! Credentials belong to one registry host. They (and tokens obtained with them) are
//! sent only to URLs on that host: an upload `Location` or a download redirect that
//! points elsewhere (a storage bucket, a CDN) is followed without them.

use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use domain::{Digest, DigestHasher, RepoName};
use ureq::SendBody;
use ureq::http::{self, Method, Response};
use url::Url;

use crate::CopyError;
use crate::auth::{AuthState, Challenge, Credentials, Scheme};
use crate::manifest::{ACCEPTED_MEDIA_TYPES, MAX_MANIFEST_BYTES, Manifest, OCI_INDEX};
use crate::reference::ManifestReference;

/// How many redirects a blob download follows (registries send blobs to storage).
const MAX_REDIRECTS: usize = 5;
/// How much of an error answer is read for its message.
const MAX_ERROR_BODY: u64 = 64 << 10;
/// Token lifetime assumed when the token service does not say (the spec's default).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);

/// How a client reaches registries.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The outbound guard every connection is checked against.
    pub policy: Arc<outbound::Policy>,
    /// For each request that moves no blob (manifests, checks, tokens).
    pub request_timeout: Duration,
    /// For each blob download or upload, start to finish.
    pub transfer_timeout: Duration,
}

impl ClientOptions {
    /// 30 s per request, one hour per blob transfer.
    pub fn new(policy: Arc<outbound::Policy>) -> ClientOptions {
        ClientOptions {
            policy,
            request_timeout: Duration::from_secs(30),
            transfer_timeout: Duration::from_secs(3600),
        }
    }
}

/// One registry host, how to reach it and who to be there.
#[derive(Debug, Clone)]
pub struct RegistryEndpoint {
    /// `host[:port]`.
    pub registry: String,
    /// Speak plain HTTP instead of HTTPS (a registry on the loopback interface, tests).
    pub plain_http: bool,
    /// `None`: anonymous.
    pub credentials: Option<Credentials>,
}

/// Where a started upload stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadStart {
    /// The registry mounted the blob from another repository: nothing to send.
    Mounted,
    /// Send the bytes to this session URL.
    Session(Url),
}

/// A request body.
enum RequestBody<'a> {
    None,
    Bytes(&'a [u8]),
    Stream { reader: &'a mut dyn Read, len: u64 },
}

impl RequestBody<'_> {
    /// A streamed body is consumed by sending it; it cannot be sent again after a 401.
    fn replayable(&self) -> bool {
        !matches!(self, RequestBody::Stream { .. })
    }
}

/// A client for one registry host. Shareable between threads.
pub struct RegistryClient {
    registry: String,
    base: Url,
    credentials: Option<Credentials>,
    agent: ureq::Agent,
    transfer_timeout: Duration,
    auth: Mutex<AuthState>,
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient")
            .field("base", &self.base.as_str())
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

fn pull_scope(repository: &RepoName) -> String {
    format!("repository:{repository}:pull")
}

fn push_scope(repository: &RepoName) -> String {
    format!("repository:{repository}:pull,push")
}

fn header<'r>(response: &'r Response<ureq::Body>, name: &str) -> Option<&'r str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

/// The body of an unexpected answer, for the error message.
fn error_text(response: Response<ureq::Body>) -> String {
    response
        .into_body()
        .with_config()
        .limit(MAX_ERROR_BODY)
        .lossy_utf8(true)
        .read_to_string()
        .unwrap_or_default()
}

impl RegistryClient {
    /// A client for `endpoint` (no request is made yet).
    pub fn new(
        endpoint: RegistryEndpoint,
        options: &ClientOptions,
    ) -> Result<RegistryClient, CopyError> {
        if !domain::application::is_registry_host(&endpoint.registry) {
            return Err(CopyError::Invalid(format!(
                "`{}` is not a registry host (HOST[:PORT])",
                endpoint.registry
            )));
        }
        let scheme = if endpoint.plain_http { "http" } else { "https" };
        let base = Url::parse(&format!("{scheme}://{}/", endpoint.registry)).map_err(|e| {
            CopyError::Invalid(format!(
                "`{}` is not a registry host: {e}",
                endpoint.registry
            ))
        })?;
        Ok(RegistryClient {
            registry: endpoint.registry,
            base,
            credentials: endpoint.credentials,
            agent: outbound::agent(options.policy.clone(), options.request_timeout),
            transfer_timeout: options.transfer_timeout,
            auth: Mutex::new(AuthState::default()),
        })
    }

    /// `host[:port]`, as configured.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    fn url(&self, repository: &RepoName, tail: &str) -> Result<Url, CopyError> {
        self.base
            .join(&format!("v2/{repository}/{tail}"))
            .map_err(|e| CopyError::Invalid(format!("cannot build a URL for {repository}: {e}")))
    }

    /// Whether `url` is on this registry's host (same scheme, host and port), the only
    /// place its credentials may go.
    fn is_own(&self, url: &Url) -> bool {
        url.scheme() == self.base.scheme()
            && url.host_str() == self.base.host_str()
            && url.port_or_known_default() == self.base.port_or_known_default()
    }

    fn lock_auth(&self) -> std::sync::MutexGuard<'_, AuthState> {
        // A panic while holding the lock leaves only a token cache behind: keep going.
        self.auth
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The `Authorization` value for a request on this host needing `scopes`, once the
    /// registry has said how it wants to be authenticated.
    fn authorization(&self, scopes: &[String]) -> Result<Option<String>, CopyError> {
        let mut auth = self.lock_auth();
        match auth.scheme.clone() {
            None => Ok(None),
            Some(Scheme::Basic) => Ok(self.credentials.as_ref().map(Credentials::basic_header)),
            Some(Scheme::Bearer { realm, service }) => {
                let key = scopes.join(" ");
                if let Some(token) = auth.token(&key) {
                    return Ok(Some(format!("Bearer {token}")));
                }
                let (token, lifetime) = self.fetch_token(&realm, service.as_deref(), scopes)?;
                auth.store_token(&key, token.clone(), lifetime);
                Ok(Some(format!("Bearer {token}")))
            }
        }
    }

    /// Takes in a 401's challenge to a request sent with `sent` as its
    /// `Authorization`. `true` when the request is worth sending again: with
    /// credentials it lacked, or with a fresh token. Other threads may have learned
    /// the same challenge meanwhile; what they fetched is reused.
    fn learn(
        &self,
        challenge: Option<Challenge>,
        scopes: &[String],
        sent: Option<&str>,
    ) -> Result<bool, CopyError> {
        let mut auth = self.lock_auth();
        match challenge {
            Some(Challenge::Basic) => {
                auth.scheme = Some(Scheme::Basic);
                let basic = self.credentials.as_ref().map(Credentials::basic_header);
                Ok(basic.is_some() && basic.as_deref() != sent)
            }
            Some(Challenge::Bearer {
                realm,
                service,
                scope,
            }) => {
                let key = scopes.join(" ");
                auth.scheme = Some(Scheme::Bearer {
                    realm: realm.clone(),
                    service: service.clone(),
                });
                if let Some(token) = auth.token(&key)
                    && Some(format!("Bearer {token}").as_str()) != sent
                {
                    return Ok(true);
                }
                auth.forget_token(&key);
                let mut wanted = scopes.to_vec();
                if let Some(scope) = scope
                    && !wanted.contains(&scope)
                {
                    wanted.push(scope);
                }
                let (token, lifetime) = self.fetch_token(&realm, service.as_deref(), &wanted)?;
                auth.store_token(&key, token, lifetime);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Asks the token service named by a Bearer challenge for a token.
    ///
    /// The credentials go to the realm only over HTTPS or when the realm is on this
    /// registry's own host name: a realm must not be a way to read them in clear text.
    fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
    ) -> Result<(String, Duration), CopyError> {
        let context = format!("getting a token for {} from {realm}", self.registry);
        let mut url = Url::parse(realm).map_err(|e| CopyError::Unauthorized {
            context: context.clone(),
            message: format!("the registry named an invalid token realm: {e}"),
        })?;
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = service {
                query.append_pair("service", service);
            }
            for scope in scopes {
                query.append_pair("scope", scope);
            }
        }
        let credentials_allowed = url.scheme() == "https" || url.host_str() == self.base.host_str();
        let mut request = http::Request::builder()
            .method(Method::GET)
            .uri(url.as_str());
        if let Some(credentials) = &self.credentials
            && credentials_allowed
        {
            request = request.header("Authorization", credentials.basic_header());
        }
        let request = request
            .body(SendBody::none())
            .map_err(|e| CopyError::Invalid(format!("{context}: {e}")))?;
        let response = self
            .agent
            .run(request)
            .map_err(|e| CopyError::from_transport(context.clone(), e))?;
        let status = response.status().as_u16();
        if status != 200 {
            let body = error_text(response);
            return Err(
                match CopyError::from_status(context.clone(), status, &body) {
                    CopyError::Rejected { message, .. } => CopyError::Unauthorized {
                        context,
                        message: format!("the token service answered {status}: {message}"),
                    },
                    other => other,
                },
            );
        }
        let value: serde_json::Value = response
            .into_body()
            .with_config()
            .limit(MAX_ERROR_BODY)
            .read_json()
            .map_err(|e| CopyError::Unauthorized {
                context: context.clone(),
                message: format!("the token service answered something other than JSON: {e}"),
            })?;
        let token = value
            .get("token")
            .or_else(|| value.get("access_token"))
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| CopyError::Unauthorized {
                context: context.clone(),
                message: "the token service's answer holds no token".to_owned(),
            })?;
        let lifetime = value
            .get("expires_in")
            .and_then(serde_json::Value::as_u64)
            .map_or(DEFAULT_TOKEN_LIFETIME, Duration::from_secs);
        Ok((token.to_owned(), lifetime))
    }

    /// Sends one request (authenticating on this host as the registry asks, and again
    /// once after a 401 if the body can be replayed) and returns the answer, whatever
    /// its status.
    fn execute(
        &self,
        method: Method,
        url: &Url,
        scopes: &[String],
        headers: &[(&str, String)],
        mut body: RequestBody<'_>,
        transfer: bool,
    ) -> Result<Response<ureq::Body>, CopyError> {
        let own = self.is_own(url);
        let context = format!("{method} {url}");
        let mut attempt = 0;
        loop {
            attempt += 1;
            let authorization = if own {
                self.authorization(scopes)?
            } else {
                None
            };
            let response = self
                .send_once(
                    &method,
                    url,
                    headers,
                    authorization.as_deref(),
                    &mut body,
                    transfer,
                )
                .map_err(|e| CopyError::from_transport(context.clone(), e))?;
            if response.status().as_u16() == 401 && own && attempt == 1 && body.replayable() {
                let challenge = header(&response, "www-authenticate").and_then(Challenge::parse);
                if self.learn(challenge, scopes, authorization.as_deref())? {
                    continue;
                }
            }
            if response.status().as_u16() == 401 && own && self.credentials.is_none() {
                return Err(CopyError::Unauthorized {
                    context,
                    message: format!(
                        "{} requires credentials and none are configured for it",
                        self.registry
                    ),
                });
            }
            return Ok(response);
        }
    }

    fn send_once(
        &self,
        method: &Method,
        url: &Url,
        headers: &[(&str, String)],
        authorization: Option<&str>,
        body: &mut RequestBody<'_>,
        transfer: bool,
    ) -> Result<Response<ureq::Body>, ureq::Error> {
        let mut builder = http::Request::builder()
            .method(method.clone())
            .uri(url.as_str());
        for (name, value) in headers {
            builder = builder.header(*name, value.as_str());
        }
        if let Some(authorization) = authorization {
            builder = builder.header("Authorization", authorization);
        }
        match body {
            RequestBody::None => self.run(builder.body(SendBody::none())?, transfer),
            RequestBody::Bytes(content) => self.run(builder.body(*content)?, transfer),
            RequestBody::Stream { reader, len } => {
                let builder = builder.header("Content-Length", len.to_string());
                self.run(builder.body(SendBody::from_reader(*reader))?, transfer)
            }
        }
    }

    fn run(
        &self,
        request: http::Request<impl ureq::AsSendBody>,
        transfer: bool,
    ) -> Result<Response<ureq::Body>, ureq::Error> {
        if transfer {
            let request = self
                .agent
                .configure_request(request)
                .timeout_global(Some(self.transfer_timeout))
                .build();
            self.agent.run(request)
        } else {
            self.agent.run(request)
        }
    }

    /// The manifest `reference` names in `repository`, its bytes checked against its
    /// digest (the one asked for, or the one the registry states).
    pub fn manifest(
        &self,
        repository: &RepoName,
        reference: &ManifestReference,
    ) -> Result<Manifest, CopyError> {
        let url = self.url(repository, &format!("manifests/{reference}"))?;
        let response = self.execute(
            Method::GET,
            &url,
            &[pull_scope(repository)],
            &[("Accept", ACCEPTED_MEDIA_TYPES.join(", "))],
            RequestBody::None,
            false,
        )?;
        let status = response.status().as_u16();
        let what = format!("{}/{repository}:{reference}", self.registry);
        if status == 404 {
            return Err(CopyError::NotFound(format!("manifest {what}")));
        }
        if status != 200 {
            let body = error_text(response);
            return Err(CopyError::from_status(format!("GET {url}"), status, &body));
        }
        let content_type = header(&response, "content-type")
            .map(|v| v.split(';').next().unwrap_or("").trim().to_owned());
        let stated = header(&response, "docker-content-digest").map(str::to_owned);
        let content = response
            .into_body()
            .with_config()
            .limit(MAX_MANIFEST_BYTES)
            .read_to_vec()
            .map_err(|e| match e {
                ureq::Error::BodyExceedsLimit(_) => CopyError::InvalidManifest(format!(
                    "manifest {what} is larger than {MAX_MANIFEST_BYTES} bytes"
                )),
                other => CopyError::from_transport(format!("GET {url}"), other),
            })?;
        let expected = match reference {
            ManifestReference::Digest(digest) => Some(digest.clone()),
            ManifestReference::Tag(_) => stated.as_deref().and_then(|d| Digest::parse(d).ok()),
        };
        let digest = match expected {
            Some(expected) => {
                let actual = digest_of(expected.algorithm(), &content);
                if actual != expected {
                    return Err(CopyError::DigestMismatch {
                        what: format!("manifest {what}"),
                        expected,
                        actual,
                    });
                }
                expected
            }
            None => Digest::sha256_of(&content),
        };
        let media_type = content_type
            .filter(|t| ACCEPTED_MEDIA_TYPES.contains(&t.as_str()))
            .or_else(|| Manifest::declared_media_type(&content))
            .unwrap_or_default();
        Ok(Manifest {
            digest,
            media_type,
            content,
        })
    }

    /// The digest `reference` names in `repository` as the registry serves it (its
    /// `Docker-Content-Digest`, or the hash of the body when it states none); `None`
    /// when there is no such manifest.
    pub fn manifest_digest(
        &self,
        repository: &RepoName,
        reference: &ManifestReference,
    ) -> Result<Option<String>, CopyError> {
        let url = self.url(repository, &format!("manifests/{reference}"))?;
        let response = self.execute(
            Method::HEAD,
            &url,
            &[pull_scope(repository)],
            &[("Accept", ACCEPTED_MEDIA_TYPES.join(", "))],
            RequestBody::None,
            false,
        )?;
        match response.status().as_u16() {
            200 => match header(&response, "docker-content-digest") {
                Some(digest) => Ok(Some(digest.trim().to_owned())),
                None => {
                    let manifest = self.manifest(repository, reference)?;
                    Ok(Some(manifest.digest.to_string()))
                }
            },
            404 => Ok(None),
            status => Err(CopyError::from_status(format!("HEAD {url}"), status, "")),
        }
    }

    /// Stores `manifest`'s exact bytes under `reference` (its digest or a tag), and,
    /// when it names a `subject` and the registry did not answer with `OCI-Subject`
    /// (it has no referrers API, as the reference registry 2.8), adds it to the
    /// subject's referrers list under the referrers tag schema, as the distribution
    /// specification asks of clients.
    pub fn put_manifest(
        &self,
        repository: &RepoName,
        reference: &ManifestReference,
        manifest: &Manifest,
    ) -> Result<(), CopyError> {
        let subject_acknowledged = self.put_manifest_bytes(repository, reference, manifest)?;
        if !subject_acknowledged && let Some(referrer) = crate::manifest::as_referrer(manifest) {
            self.add_to_referrers_tag(repository, &referrer)?;
        }
        Ok(())
    }

    /// The manifests referring to `subject` in `repository`, as an index's
    /// descriptors (with `artifactType` and `annotations`): from the referrers API, or,
    /// where the registry has none, from the referrers tag schema (`sha256-HEX`). An
    /// empty list when nothing refers to it.
    pub fn referrers(
        &self,
        repository: &RepoName,
        subject: &Digest,
    ) -> Result<Vec<serde_json::Value>, CopyError> {
        let mut url = self.url(repository, &format!("referrers/{subject}"))?;
        let mut entries = Vec::new();
        // The referrers API pages with `Link: <…>; rel="next"`.
        for page in 0..MAX_REFERRER_PAGES {
            let response = self.execute(
                Method::GET,
                &url,
                &[pull_scope(repository)],
                &[("Accept", OCI_INDEX.to_owned())],
                RequestBody::None,
                false,
            )?;
            match response.status().as_u16() {
                200 => {
                    let next = header(&response, "link").and_then(next_link);
                    let index: serde_json::Value = response
                        .into_body()
                        .with_config()
                        .limit(MAX_MANIFEST_BYTES)
                        .read_json()
                        .map_err(|e| {
                            CopyError::InvalidManifest(format!("the referrers of {subject}: {e}"))
                        })?;
                    entries.extend(index_entries(&index));
                    match next {
                        Some(next) => {
                            url = url.join(&next).map_err(|e| {
                                CopyError::Invalid(format!(
                                    "the referrers' next page `{next}`: {e}"
                                ))
                            })?;
                        }
                        None => return Ok(entries),
                    }
                }
                // No referrers API: the referrers tag schema. A tag that is not a
                // referrers index lists nothing, as the specification asks.
                404 if page == 0 => {
                    return match self.manifest(repository, &referrers_tag(subject)?) {
                        Ok(index) => {
                            Ok(serde_json::from_slice::<serde_json::Value>(&index.content)
                                .ok()
                                .filter(|value| {
                                    value.get("mediaType").and_then(serde_json::Value::as_str)
                                        == Some(OCI_INDEX)
                                })
                                .map(|value| index_entries(&value))
                                .unwrap_or_default())
                        }
                        Err(CopyError::NotFound(_) | CopyError::InvalidManifest(_)) => {
                            Ok(Vec::new())
                        }
                        Err(other) => Err(other),
                    };
                }
                status => {
                    let body = error_text(response);
                    return Err(CopyError::from_status(format!("GET {url}"), status, &body));
                }
            }
        }
        Err(CopyError::InvalidManifest(format!(
            "the referrers of {subject} run past {MAX_REFERRER_PAGES} pages"
        )))
    }

    /// Adds `referrer` to its subject's list under the referrers tag schema, unless it
    /// is listed already.
    fn add_to_referrers_tag(
        &self,
        repository: &RepoName,
        referrer: &crate::manifest::Referrer,
    ) -> Result<(), CopyError> {
        let tag = referrers_tag(&referrer.subject)?;
        let mut index = match self.manifest(repository, &tag) {
            Ok(existing) => {
                let value: serde_json::Value =
                    serde_json::from_slice(&existing.content).map_err(|e| {
                        CopyError::InvalidManifest(format!("the referrers tag {tag}: {e}"))
                    })?;
                if value.get("mediaType").and_then(serde_json::Value::as_str) != Some(OCI_INDEX) {
                    return Err(CopyError::InvalidManifest(format!(
                        "tag {tag} of {repository} is not a referrers index; the referrer was not listed"
                    )));
                }
                value
            }
            Err(CopyError::NotFound(_)) => serde_json::json!({
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": [],
            }),
            Err(other) => return Err(other),
        };
        let digest = referrer.descriptor["digest"].clone();
        let Some(entries) = index
            .get_mut("manifests")
            .and_then(serde_json::Value::as_array_mut)
        else {
            return Err(CopyError::InvalidManifest(format!(
                "the referrers index under {tag} lists no manifests"
            )));
        };
        if entries.iter().any(|entry| entry["digest"] == digest) {
            return Ok(());
        }
        entries.push(referrer.descriptor.clone());
        let content = serde_json::to_vec(&index)
            .map_err(|e| CopyError::InvalidManifest(format!("the referrers index: {e}")))?;
        let updated = Manifest {
            digest: Digest::sha256_of(&content),
            media_type: OCI_INDEX.to_owned(),
            content,
        };
        self.put_manifest_bytes(repository, &tag, &updated)?;
        Ok(())
    }

    /// Stores `manifest`'s exact bytes under `reference`; whether the registry
    /// answered with `OCI-Subject` (it lists referrers itself).
    fn put_manifest_bytes(
        &self,
        repository: &RepoName,
        reference: &ManifestReference,
        manifest: &Manifest,
    ) -> Result<bool, CopyError> {
        let url = self.url(repository, &format!("manifests/{reference}"))?;
        let response = self.execute(
            Method::PUT,
            &url,
            &[push_scope(repository)],
            &[("Content-Type", manifest.media_type.clone())],
            RequestBody::Bytes(&manifest.content),
            false,
        )?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            let body = error_text(response);
            return Err(CopyError::from_status(format!("PUT {url}"), status, &body));
        }
        if let Some(stated) = header(&response, "docker-content-digest")
            && let Ok(stated) = Digest::parse(stated.trim())
            && stated != manifest.digest
        {
            return Err(CopyError::DigestMismatch {
                what: format!(
                    "manifest {}/{repository}:{reference} as the destination stored it",
                    self.registry
                ),
                expected: manifest.digest.clone(),
                actual: stated,
            });
        }
        Ok(header(&response, "oci-subject").is_some())
    }

    /// Whether `repository` holds the blob.
    pub fn blob_exists(&self, repository: &RepoName, digest: &Digest) -> Result<bool, CopyError> {
        let url = self.url(repository, &format!("blobs/{digest}"))?;
        let response = self.execute(
            Method::HEAD,
            &url,
            &[pull_scope(repository)],
            &[],
            RequestBody::None,
            false,
        )?;
        match response.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            status => Err(CopyError::from_status(format!("HEAD {url}"), status, "")),
        }
    }

    /// The blob's bytes as a stream, following redirects (without credentials when
    /// they leave this host). The caller checks them against the digest.
    pub fn open_blob(
        &self,
        repository: &RepoName,
        digest: &Digest,
    ) -> Result<Box<dyn Read + Send>, CopyError> {
        let mut url = self.url(repository, &format!("blobs/{digest}"))?;
        let scopes = [pull_scope(repository)];
        for _ in 0..=MAX_REDIRECTS {
            let response =
                self.execute(Method::GET, &url, &scopes, &[], RequestBody::None, true)?;
            let status = response.status().as_u16();
            match status {
                200 => return Ok(Box::new(response.into_body().into_reader())),
                301 | 302 | 303 | 307 | 308 => {
                    url = self.location(&url, &response)?;
                }
                404 => {
                    return Err(CopyError::NotFound(format!(
                        "blob {digest} in {}/{repository}",
                        self.registry
                    )));
                }
                _ => {
                    let body = error_text(response);
                    return Err(CopyError::from_status(format!("GET {url}"), status, &body));
                }
            }
        }
        Err(CopyError::Invalid(format!(
            "GET blob {digest} from {}/{repository}: more than {MAX_REDIRECTS} redirects",
            self.registry
        )))
    }

    /// The `Location` of an answer, resolved against the request's URL.
    fn location(&self, request: &Url, response: &Response<ureq::Body>) -> Result<Url, CopyError> {
        let location = header(response, "location").ok_or_else(|| CopyError::Rejected {
            context: format!("{request}"),
            status: response.status().as_u16(),
            message: "the answer has no Location".to_owned(),
        })?;
        request.join(location).map_err(|e| CopyError::Rejected {
            context: format!("{request}"),
            status: response.status().as_u16(),
            message: format!("invalid Location `{location}`: {e}"),
        })
    }

    /// Starts an upload into `repository`, asking to mount the blob from another
    /// repository of this registry when `mount` says which.
    pub fn start_upload(
        &self,
        repository: &RepoName,
        mount: Option<(&Digest, &RepoName)>,
    ) -> Result<UploadStart, CopyError> {
        let mut url = self.url(repository, "blobs/uploads/")?;
        let mut scopes = vec![push_scope(repository)];
        if let Some((digest, from)) = mount {
            url.query_pairs_mut()
                .append_pair("mount", &digest.to_string())
                .append_pair("from", from.as_str());
            scopes.push(pull_scope(from));
        }
        let response = self.execute(
            Method::POST,
            &url,
            &scopes,
            &[],
            RequestBody::Bytes(&[]),
            false,
        )?;
        match response.status().as_u16() {
            201 if mount.is_some() => Ok(UploadStart::Mounted),
            202 => Ok(UploadStart::Session(self.location(&url, &response)?)),
            status => {
                let body = error_text(response);
                Err(CopyError::from_status(format!("POST {url}"), status, &body))
            }
        }
    }

    /// Sends a whole blob to an upload session in one `PUT` with its length declared,
    /// streaming from `reader` (which should fail rather than yield wrong bytes).
    pub fn finish_upload(
        &self,
        repository: &RepoName,
        session: &Url,
        digest: &Digest,
        size: u64,
        reader: &mut dyn Read,
    ) -> Result<(), CopyError> {
        let mut url = session.clone();
        url.query_pairs_mut()
            .append_pair("digest", &digest.to_string());
        let response = self.execute(
            Method::PUT,
            &url,
            &[push_scope(repository)],
            &[("Content-Type", "application/octet-stream".to_owned())],
            RequestBody::Stream { reader, len: size },
            true,
        )?;
        let status = response.status().as_u16();
        if status != 201 {
            let body = error_text(response);
            return Err(CopyError::from_status(
                format!("PUT blob {digest} to {}/{repository}", self.registry),
                status,
                &body,
            ));
        }
        Ok(())
    }

    /// Abandons an upload session (best effort: registries expire them anyway).
    pub fn cancel_upload(&self, repository: &RepoName, session: &Url) {
        let _ = self.execute(
            Method::DELETE,
            session,
            &[push_scope(repository)],
            &[],
            RequestBody::None,
            false,
        );
    }

    /// Uploads a blob from `reader` (POST, then one streaming PUT).
    pub fn push_blob(
        &self,
        repository: &RepoName,
        digest: &Digest,
        size: u64,
        reader: &mut dyn Read,
    ) -> Result<(), CopyError> {
        match self.start_upload(repository, None)? {
            UploadStart::Session(session) => {
                self.finish_upload(repository, &session, digest, size, reader)
            }
            UploadStart::Mounted => Ok(()),
        }
    }
}

/// The digest of `content` with `algorithm`.
pub(crate) fn digest_of(algorithm: domain::DigestAlgorithm, content: &[u8]) -> Digest {
    let mut hasher = DigestHasher::new(algorithm);
    hasher.update(content);
    hasher.finish()
}

/// The referrers tag schema's tag for `subject`: `ALGORITHM-REF`, the reference its
/// hex truncated to 64 characters (as the distribution specification writes it).
fn referrers_tag(subject: &Digest) -> Result<ManifestReference, CopyError> {
    let hex = subject.hex();
    let reference = &hex[..hex.len().min(64)];
    domain::Tag::parse(&format!("{}-{reference}", subject.algorithm().as_str()))
        .map(ManifestReference::Tag)
        .map_err(|e| CopyError::Invalid(format!("the referrers tag of {subject}: {e}")))
}

/// The most pages of referrers read for one subject.
const MAX_REFERRER_PAGES: usize = 100;

/// The target of a `Link: <URL>; rel="next"` header.
fn next_link(link: &str) -> Option<String> {
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        params
            .split(';')
            .any(|param| {
                let param = param.trim().replace(' ', "");
                param == "rel=\"next\"" || param == "rel=next"
            })
            .then(|| {
                target
                    .trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_owned()
            })
    })
}

/// The descriptors an index lists.
fn index_entries(index: &serde_json::Value) -> Vec<serde_json::Value> {
    index
        .get("manifests")
        .and_then(serde_json::Value::as_array)
        .cloned()
        .unwrap_or_default()
}

#[cfg(test)]
mod referrer_tests {
    use super::*;

    #[test]
    fn the_referrers_tag_is_the_algorithm_and_at_most_64_characters_of_the_hex() {
        let sha256 = Digest::sha256_of(b"subject");
        assert_eq!(
            referrers_tag(&sha256).expect("a tag").to_string(),
            format!("sha256-{}", sha256.hex())
        );
        let sha512 = Digest::of(domain::DigestAlgorithm::Sha512, b"subject");
        assert_eq!(
            referrers_tag(&sha512).expect("a tag").to_string(),
            format!("sha512-{}", &sha512.hex()[..64])
        );
    }

    #[test]
    fn the_next_page_is_read_from_the_link_header() {
        assert_eq!(
            next_link(r#"</v2/a/referrers/sha256:x?last=y>; rel="next""#).as_deref(),
            Some("/v2/a/referrers/sha256:x?last=y")
        );
        assert_eq!(
            next_link(r#"<https://r/prev>; rel="prev", <https://r/next>; rel="next""#).as_deref(),
            Some("https://r/next")
        );
        assert_eq!(next_link(r#"<https://r/prev>; rel="prev""#), None);
    }
}
