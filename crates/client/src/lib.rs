//! The typed client of Gantry's JSON API (`/api/v1`): apply a resources file, list
//! and read declared resources, verify the audit log, and the promotion API — notify
//! builds, report checks, promote, approve, reject, roll back, hold, read where each
//! application's environments stand, DORA metrics, users and tokens. The `gantry`
//! command line is built on it.
//!
//! It is blocking (`ureq`), which is what a command line wants, and depends on nothing
//! of the server: the response types in [`types`] mirror the API's JSON. Every failure
//! is a [`ClientError`] whose variant says what to do next; the token never appears in
//! an error, a log line or `Debug` output.
//!
//! ```no_run
//! let client = client::Client::new("http://127.0.0.1:5000", Some("gnt_…".to_owned()))?;
//! let report = client.apply("kind: Pipeline\n…", "gantry.yaml", true)?;
//! for resource in &report.resources {
//!     println!("{:?} {}/{}", resource.action, resource.kind, resource.name);
//! }
//! # Ok::<(), client::ClientError>(())
//! ```

mod error;
mod promotion;
pub mod promotion_types;
pub mod types;

use std::fmt;
use std::time::Duration;

use serde::de::DeserializeOwned;
use url::Url;

pub use error::ClientError;
pub use promotion_types::*;
pub use types::*;

/// How long one call may take, connecting included, before it is given up.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// A connection to one Gantry server, with or without a token.
pub struct Client {
    base_url: Url,
    token: Option<Token>,
    agent: ureq::Agent,
}

/// An API token; its `Debug` shows only that there is one.
struct Token(String);

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.base_url.as_str())
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Client {
    /// A client of the server at `base_url` (`http://` or `https://`, optionally with a
    /// path prefix). Credentials belong in `token`, so a URL holding a user or password
    /// is refused rather than risk printing it in an error.
    pub fn new(base_url: &str, token: Option<String>) -> Result<Client, ClientError> {
        let invalid = |reason: &str| ClientError::InvalidUrl {
            url: base_url.to_owned(),
            reason: reason.to_owned(),
        };
        let mut parsed = Url::parse(base_url).map_err(|error| ClientError::InvalidUrl {
            url: base_url.to_owned(),
            reason: error.to_string(),
        })?;
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(ClientError::InvalidUrl {
                url: "(redacted: it holds credentials)".to_owned(),
                reason: "pass the token separately, not inside the URL".to_owned(),
            });
        }
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(invalid("use an http:// or https:// URL"));
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(invalid("a server URL has no query or fragment"));
        }
        if !parsed.path().ends_with('/') {
            let path = format!("{}/", parsed.path());
            parsed.set_path(&path);
        }
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(CALL_TIMEOUT))
            .user_agent(concat!("gantry-client/", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        Ok(Client {
            base_url: parsed,
            token: token.filter(|token| !token.is_empty()).map(Token),
            agent,
        })
    }

    /// The server's URL, as given (it never holds credentials).
    pub fn base_url(&self) -> &str {
        self.base_url.as_str()
    }

    /// Sends a resources file (multi-document YAML) to `POST /api/v1/apply`.
    /// `file_label` is how the server names the file in problems; with `dry_run`
    /// nothing changes and the report says what would.
    pub fn apply(
        &self,
        yaml: &str,
        file_label: &str,
        dry_run: bool,
    ) -> Result<ApplyResponse, ClientError> {
        let url = self.endpoint(&["apply"])?;
        let request = self
            .authorized(self.agent.post(url.as_str()))
            .header("Content-Type", "application/yaml")
            .query("dry_run", if dry_run { "true" } else { "false" })
            .query("file", file_label);
        self.answer(&url, request.send(yaml))
    }

    /// One page of the stored resources of `kind`, names after `after`, at most
    /// `limit` of them (the server's default when `None`).
    pub fn list_resources(
        &self,
        kind: ResourceKind,
        after: Option<&str>,
        limit: Option<u32>,
    ) -> Result<ResourceList, ClientError> {
        let url = self.endpoint(&["resources", kind.plural()])?;
        let mut request = self.authorized(self.agent.get(url.as_str()));
        if let Some(after) = after {
            request = request.query("after", after);
        }
        if let Some(limit) = limit {
            request = request.query("limit", limit.to_string());
        }
        self.answer(&url, request.call())
    }

    /// One stored resource and its canonical text.
    pub fn get_resource(
        &self,
        kind: ResourceKind,
        name: &str,
    ) -> Result<ResourceDetail, ClientError> {
        let url = self.endpoint(&["resources", kind.plural(), name])?;
        let request = self.authorized(self.agent.get(url.as_str()));
        self.answer(&url, request.call())
    }

    /// Asks the server to recompute the audit log's hash chain.
    pub fn audit_verify(&self) -> Result<AuditVerification, ClientError> {
        let url = self.endpoint(&["audit", "verify"])?;
        let request = self.authorized(self.agent.get(url.as_str()));
        self.answer(&url, request.call())
    }

    /// Runs a garbage collection pass now (admins), or with `dry_run` reports what one
    /// would delete.
    pub fn gc(&self, dry_run: bool) -> Result<GcReport, ClientError> {
        let url = self.endpoint(&["gc"])?;
        let request = self.authorized(self.agent.post(url.as_str()));
        self.answer(&url, request.send_json(&GcRequest { dry_run }))
    }

    /// The public keys the server signs and signed with (no credentials needed).
    pub fn signing_keys(&self) -> Result<SigningKeyList, ClientError> {
        let url = self.endpoint(&["keys"])?;
        let request = self.authorized(self.agent.get(url.as_str()));
        self.answer(&url, request.call())
    }

    /// Signs a checkpoint of the audit log's head now (admins): the one made, or the
    /// newest when the head is checkpointed already.
    pub fn audit_checkpoint(&self) -> Result<CheckpointView, ClientError> {
        let url = self.endpoint(&["audit", "checkpoints"])?;
        let request = self.authorized(self.agent.post(url.as_str()));
        self.answer(&url, request.send(""))
    }

    /// The audit log's signed checkpoints, oldest first.
    pub fn audit_checkpoints(&self) -> Result<CheckpointList, ClientError> {
        let url = self.endpoint(&["audit", "checkpoints"])?;
        let request = self.authorized(self.agent.get(url.as_str()));
        self.answer(&url, request.call())
    }

    /// Makes a new signing key the current one (admins); the old one stays listed.
    pub fn rotate_signing_key(&self) -> Result<SigningKeyView, ClientError> {
        let url = self.endpoint(&["keys", "rotate"])?;
        let request = self.authorized(self.agent.post(url.as_str()));
        self.answer(&url, request.send(""))
    }

    /// Garbage collection's settings and record (admins).
    pub fn gc_status(&self) -> Result<GcStatus, ClientError> {
        let url = self.endpoint(&["gc"])?;
        let request = self.authorized(self.agent.get(url.as_str()));
        self.answer(&url, request.call())
    }

    /// Streams the whole audit log, as JSON Lines, into `out`; returns the bytes copied.
    pub fn audit_export(&self, out: &mut dyn std::io::Write) -> Result<u64, ClientError> {
        let url = self.endpoint(&["audit", "export"])?;
        let request = self.authorized(self.agent.get(url.as_str()));
        let unreachable = |source: ureq::Error| ClientError::Unreachable {
            url: url.to_string(),
            cause: Box::new(source),
        };
        let mut response = request.call().map_err(unreachable)?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            let text = response.body_mut().read_to_string().map_err(unreachable)?;
            return Err(ClientError::from_status(status, &text));
        }
        let mut body = response.body_mut().as_reader();
        std::io::copy(&mut body, out).map_err(|error| ClientError::InvalidResponse {
            url: url.to_string(),
            status,
            reason: format!("the export ended early: {error}"),
        })
    }

    /// `{base}api/v1/{segments…}`, each segment percent-encoded.
    fn endpoint(&self, segments: &[&str]) -> Result<Url, ClientError> {
        let mut url = self.base_url.clone();
        url.path_segments_mut()
            .map_err(|()| ClientError::InvalidUrl {
                url: self.base_url.to_string(),
                reason: "it cannot have a path".to_owned(),
            })?
            .pop_if_empty()
            .extend(["api", "v1"])
            .extend(segments);
        Ok(url)
    }

    fn authorized<B>(&self, request: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.token {
            Some(Token(token)) => request.header("Authorization", format!("Bearer {token}")),
            None => request,
        }
    }

    /// Turns an HTTP exchange into the typed answer or the error that explains it.
    fn answer<T: DeserializeOwned>(
        &self,
        url: &Url,
        sent: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<T, ClientError> {
        self.answer_with_status(url, sent).map(|(_, answer)| answer)
    }

    /// [`Client::answer`], with the success status (some calls tell 200 from 201).
    fn answer_with_status<T: DeserializeOwned>(
        &self,
        url: &Url,
        sent: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<(u16, T), ClientError> {
        let (status, text) = self.successful(url, sent)?;
        let answer = serde_json::from_str(&text).map_err(|error| ClientError::InvalidResponse {
            url: url.to_string(),
            status,
            reason: error.to_string(),
        })?;
        Ok((status, answer))
    }

    /// The status and body text of a 2xx answer, or the error that explains another.
    fn successful(
        &self,
        url: &Url,
        sent: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<(u16, String), ClientError> {
        let unreachable = |source: ureq::Error| ClientError::Unreachable {
            url: url.to_string(),
            cause: Box::new(source),
        };
        let mut response = sent.map_err(unreachable)?;
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().map_err(unreachable)?;
        if !(200..300).contains(&status) {
            return Err(ClientError::from_status(status, &text));
        }
        Ok((status, text))
    }
}
