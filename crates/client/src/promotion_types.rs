//! The JSON of the promotion API — builds, checks, promotions, approvals, deployments,
//! environments, users, tokens and DORA metrics — is `api_types`' (re-exported here),
//! the definitions the server answers with. What is here is the client's own: the
//! arguments of calls that are not one JSON body (a rollback's `Idempotency-Key`, a
//! listing's filters), whether a promotion was created, and a check's status as a type.

pub use api_types::access::*;
pub use api_types::collection::*;
pub use api_types::keys::*;
pub use api_types::promotion::*;

/// Whether a check passed ([`CheckRequest::status`] spells it with [`CheckStatus::as_str`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckStatus {
    Passed,
    Failed,
}

impl CheckStatus {
    /// As the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Passed => "passed",
            CheckStatus::Failed => "failed",
        }
    }
}

/// A rollback to request.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rollback<'a> {
    /// The digest to return to; `None`: the one that ran before the current one.
    pub to: Option<&'a str>,
    /// The digest the caller saw the environment run: the server refuses (409) when
    /// it runs another by now.
    pub from: Option<&'a str>,
    pub reason: Option<&'a str>,
    /// Repeating the request with the same key answers with the deployment the first
    /// one started.
    pub idempotency_key: Option<&'a str>,
}

/// The answer of `POST /api/v1/promotions`.
#[derive(Debug, Clone, PartialEq)]
pub struct Promoted {
    /// False when the server returned an existing promotion (same `Idempotency-Key`).
    pub created: bool,
    pub promotion: PromotionView,
}

/// Which promotions `GET /api/v1/promotions` lists; `None` leaves a filter out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PromotionFilter {
    pub application: Option<String>,
    pub environment: Option<String>,
    pub state: Option<String>,
    /// Only promotions with a smaller id (the `next` of the previous page).
    pub before: Option<i64>,
    pub limit: Option<u32>,
}
