//! Users, their tokens, and the exchange of a CI job's OIDC token for a Gantry token.
//! A type carrying a token's secret never shows it in its `Debug` output.

use std::fmt;

use serde::{Deserialize, Serialize};

/// `POST /api/v1/users`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UserRequest {
    pub name: String,
    #[serde(default)]
    pub admin: bool,
    /// A CI identity: may push, notify builds and report checks; never approves.
    #[serde(default)]
    pub ci: bool,
    /// Roles, each global (`staff`) or for one application (`staff@web-app`): `viewer`,
    /// `developer`, `staff`, `client`, `platform`, `admin`.
    #[serde(default)]
    pub roles: Vec<String>,
}

/// `PUT /api/v1/users/{name}/password`: the password that user signs in to the web UI
/// with (at least 12 characters). Hidden from `Debug`.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PasswordRequest {
    pub password: String,
}

impl std::fmt::Debug for PasswordRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordRequest")
            .field("password", &"<hidden>")
            .finish()
    }
}

/// A user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserView {
    pub name: String,
    pub admin: bool,
    pub ci: bool,
    pub roles: Vec<String>,
}

/// A page of users, by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserList {
    pub users: Vec<UserView>,
    pub next: Option<String>,
}

/// `POST /api/v1/users/{name}/tokens`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Lifetime in days; no expiry when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_in_days: Option<u32>,
}

/// A token as listed: never its secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenView {
    pub id: String,
    pub user: String,
    pub description: String,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    /// To the minute.
    pub last_used_at: Option<String>,
    /// Neither revoked nor expired.
    pub active: bool,
}

/// A user's tokens, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenList {
    pub tokens: Vec<TokenView>,
}

/// A new token: the secret is shown this once and stored only as a hash.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenResponse {
    pub id: String,
    pub user: String,
    pub token: String,
    pub expires_at: Option<String>,
}

/// A CI job's OIDC token to exchange.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct OidcExchangeRequest {
    /// The job token (a JWT), e.g. GitHub Actions' `ACTIONS_ID_TOKEN` for audience `gantry`.
    pub token: String,
}

/// The Gantry token issued for a job token; the secret is in this answer only.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OidcExchangeResponse {
    pub id: String,
    /// The CI identity it acts as (`oidc/POLICY`).
    pub user: String,
    pub token: String,
    pub expires_at: String,
    /// Seconds until it expires.
    pub expires_in: i64,
    /// What it may do: `role@application` or `role@application/environment`.
    pub scope: Vec<String>,
    /// The trust policies that matched.
    pub policies: Vec<String>,
}

/// Shows everything but the secret.
impl fmt::Debug for OidcExchangeResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OidcExchangeResponse")
            .field("id", &self.id)
            .field("user", &self.user)
            .field("token", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .field("scope", &self.scope)
            .field("policies", &self.policies)
            .finish()
    }
}

/// Shows everything but the secret.
impl fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenResponse")
            .field("id", &self.id)
            .field("user", &self.user)
            .field("token", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_tokens_debug_output_hides_the_secret() {
        let token = TokenResponse {
            id: "t1".to_owned(),
            user: "ci-bot".to_owned(),
            token: "gnt_secret".to_owned(),
            expires_at: None,
        };
        assert!(!format!("{token:?}").contains("gnt_secret"));
    }
}
