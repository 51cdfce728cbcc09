//! Authentication the way registry clients expect it: `user:token` Basic credentials
//! on every request, or the token protocol — a `401` with
//! `WWW-Authenticate: Bearer realm="…/token",service="…",scope="repository:NAME:pull,push"`,
//! the client fetching a bearer token from the realm with its credentials, and
//! presenting that token. The token endpoint ([`token`]) grants the intersection of
//! the scopes asked for and the caller's permissions, signed with a secret all
//! replicas share.

use std::sync::Arc;

use auth::registry_token::{self, Access, RegistryClaims, RegistryTokenKey};
use axum::Json;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use domain::{Action, Principal, RepoName};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};

use crate::{ErrorCode, Registry, RegistryError};

/// The secret registry tokens are signed with, by name in the store.
const SECRET_NAME: &str = "registry-token-hmac";

/// Who is calling, and the scopes a registry bearer token limits them to.
pub(crate) struct Caller {
    pub(crate) principal: Principal,
    pub(crate) token: Option<RegistryClaims>,
    /// The Gantry token presented, if one was.
    pub(crate) token_id: Option<String>,
}

impl Registry {
    /// The key registry tokens are signed with, created on first use.
    async fn token_key(&self) -> Result<RegistryTokenKey, RegistryError> {
        self.token_key
            .get_or_try_init(|| async {
                let fresh = auth::generate_token().map_err(|e| {
                    RegistryError::internal("generating the registry token secret", e)
                })?;
                let secret = self.store.access().secret(SECRET_NAME, &fresh).await?;
                Ok::<_, RegistryError>(RegistryTokenKey::new(secret.as_bytes()))
            })
            .await
            .cloned()
    }

    /// The base URL clients reach this registry at: configured, or from the request.
    pub fn base_url(&self, headers: &HeaderMap) -> String {
        match &self.config.external_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("http://{}", request_host(headers)),
        }
    }

    /// The host clients pull from (`gantry.example.com`, `127.0.0.1:5000`), for image
    /// references: configured, or from the request.
    pub fn public_host(&self, headers: &HeaderMap) -> String {
        self.config
            .public_host()
            .unwrap_or_else(|| request_host(headers).to_owned())
    }

    /// The `service` named in challenges and tokens.
    fn service(&self, headers: &HeaderMap) -> String {
        match &self.config.service {
            Some(service) => service.clone(),
            None => self.public_host(headers),
        }
    }
}

/// The request's `Host`, when it is a plain host name or address (it is echoed into
/// challenges), else `localhost`.
fn request_host(headers: &HeaderMap) -> &str {
    headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .filter(|host| {
            !host.is_empty()
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
        })
        .unwrap_or("localhost")
}

/// The `scope` a challenge asks for: what the refused request needed.
fn scope_of(action: Action, repository: Option<&RepoName>) -> Option<String> {
    match (action, repository) {
        (Action::Catalog, _) => Some("registry:catalog:*".to_owned()),
        (Action::Pull, Some(name)) => Some(format!("repository:{name}:pull")),
        (Action::Push, Some(name)) => Some(format!("repository:{name}:pull,push")),
        (Action::Delete, Some(name)) => Some(format!("repository:{name}:delete")),
        _ => None,
    }
}

/// A `401` with the Bearer challenge for what the request needed.
pub(crate) fn challenge(
    registry: &Registry,
    headers: &HeaderMap,
    action: Action,
    repository: Option<&RepoName>,
    message: &str,
    insufficient_scope: bool,
) -> RegistryError {
    let mut value = format!(
        "Bearer realm=\"{}/token\",service=\"{}\"",
        registry.base_url(headers),
        registry.service(headers).replace('"', "")
    );
    if let Some(scope) = scope_of(action, repository) {
        value.push_str(&format!(",scope=\"{scope}\""));
    }
    if insufficient_scope {
        value.push_str(",error=\"insufficient_scope\"");
    }
    let value = HeaderValue::from_str(&value)
        .unwrap_or_else(|_| HeaderValue::from_static("Bearer realm=\"/token\""));
    RegistryError::new(ErrorCode::Unauthorized, StatusCode::UNAUTHORIZED, message)
        .with_header(header::WWW_AUTHENTICATE, value)
}

/// Resolves the caller: a registry bearer token, or a Gantry token (Basic or Bearer),
/// within the limits on failed checks for `client` (refused with 429 while they are
/// spent; every failed check spends one).
pub(crate) async fn authenticate(
    registry: &Registry,
    headers: &HeaderMap,
    client: Option<std::net::IpAddr>,
    action: Action,
    repository: Option<&RepoName>,
) -> Result<Caller, RegistryError> {
    let refused = |reason: &str| {
        tracing::info!(reason, "registry credentials refused");
        challenge(
            registry,
            headers,
            action,
            repository,
            &format!("invalid credentials: {reason}"),
            false,
        )
    };
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(Caller {
            principal: Principal::Anonymous,
            token: None,
            token_id: None,
        });
    };
    // A header that is not text is a failed check like any other.
    let text = String::from_utf8_lossy(value.as_bytes());
    let attempt = auth::Attempt {
        limiter: &registry.failures,
        address: client,
    };
    let resolved = attempt
        .limit(
            &text,
            || auth::account_of(&text),
            resolve(registry, headers, value.to_str().ok()),
            |failure| matches!(failure, Unresolved::Invalid(_)),
        )
        .await
        .map_err(too_many_failures)?;
    match resolved {
        Ok(caller) => Ok(caller),
        Err(Unresolved::Invalid(reason)) => Err(refused(reason)),
        Err(Unresolved::Failed(error)) => Err(error),
    }
}

/// The 429 for a client or account whose failed checks are spent.
fn too_many_failures(refusal: auth::TooManyFailures) -> RegistryError {
    tracing::info!(%refusal, "credential check refused: too many failures");
    let seconds = refusal.retry_after.as_secs().max(1);
    RegistryError::new(
        ErrorCode::TooManyRequests,
        StatusCode::TOO_MANY_REQUESTS,
        refusal.to_string(),
    )
    .with_header(header::RETRY_AFTER, HeaderValue::from(seconds))
}

/// Why credentials did not resolve: invalid (a failed check), or the store failed.
enum Unresolved {
    Invalid(&'static str),
    Failed(RegistryError),
}

async fn resolve(
    registry: &Registry,
    headers: &HeaderMap,
    header: Option<&str>,
) -> Result<Caller, Unresolved> {
    let Some(header) = header else {
        return Err(Unresolved::Invalid("the Authorization header is not text"));
    };
    let now = store::now_millis();
    let bearer = header
        .trim()
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|token| token.starts_with(registry_token::PREFIX));
    if let Some(token) = bearer {
        let key = registry.token_key().await.map_err(Unresolved::Failed)?;
        let claims = registry_token::verify(&key, token, now.div_euclid(1000))
            .map_err(Unresolved::Invalid)?;
        if claims.service != registry.service(headers) {
            return Err(Unresolved::Invalid(
                "the registry token was issued for another service",
            ));
        }
        let principal = match &claims.token_id {
            None => Principal::Anonymous,
            Some(id) => match auth::authenticate_token_id(&registry.store, id, now).await {
                Ok(principal) => principal,
                Err(auth::AuthError::InvalidCredentials(reason)) => {
                    return Err(Unresolved::Invalid(reason));
                }
                Err(auth::AuthError::Store(error)) => {
                    return Err(Unresolved::Failed(error.into()));
                }
                Err(auth::AuthError::TooManyFailures(refusal)) => {
                    return Err(Unresolved::Failed(too_many_failures(refusal)));
                }
            },
        };
        return Ok(Caller {
            principal,
            token_id: claims.token_id.clone(),
            token: Some(claims),
        });
    }
    match auth::authenticate_token(&registry.store, Some(header), now).await {
        Ok((principal, token_id)) => Ok(Caller {
            principal,
            token: None,
            token_id,
        }),
        Err(auth::AuthError::InvalidCredentials(reason)) => Err(Unresolved::Invalid(reason)),
        Err(auth::AuthError::Store(error)) => Err(Unresolved::Failed(error.into())),
        Err(auth::AuthError::TooManyFailures(refusal)) => {
            Err(Unresolved::Failed(too_many_failures(refusal)))
        }
    }
}

/// One scope asked of the token endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Requested {
    kind: String,
    name: String,
    actions: Vec<String>,
}

/// Parses `type:name:actions` (the name may itself hold `:`, e.g. a port); a resource
/// class (`repository(plugin)`) is dropped. `None` for anything else.
fn parse_scope(text: &str) -> Option<Requested> {
    let (kind, rest) = text.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    let kind = kind.split('(').next().unwrap_or(kind);
    if kind.is_empty() || name.is_empty() {
        return None;
    }
    Some(Requested {
        kind: kind.to_owned(),
        name: name.to_owned(),
        actions: actions
            .split(',')
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

/// The actions of `requested` the caller is allowed now.
async fn grant(
    registry: &Registry,
    principal: &Principal,
    requested: &Requested,
) -> Result<Vec<String>, RegistryError> {
    let mut granted = Vec::new();
    match requested.kind.as_str() {
        "repository" => {
            let Ok(name) = RepoName::parse(&requested.name) else {
                return Ok(granted);
            };
            for asked in &requested.actions {
                let actions: &[(&str, Action)] = match asked.as_str() {
                    "pull" => &[("pull", Action::Pull)],
                    "push" => &[("push", Action::Push)],
                    "delete" => &[("delete", Action::Delete)],
                    "*" => &[
                        ("pull", Action::Pull),
                        ("push", Action::Push),
                        ("delete", Action::Delete),
                    ],
                    _ => &[],
                };
                for (text, action) in actions {
                    let allowed = auth::authorize_repository(
                        &registry.store,
                        principal,
                        *action,
                        Some(&name),
                        &registry.config.access,
                    )
                    .await?
                    .is_ok();
                    if allowed && !granted.iter().any(|g| g == text) {
                        granted.push((*text).to_owned());
                    }
                }
            }
        }
        "registry" if requested.name == "catalog" => {
            let wants = requested.actions.iter().any(|a| a == "*" || a == "catalog");
            if wants
                && auth::authorize(principal, Action::Catalog, None, &registry.config.access)
                    .is_ok()
            {
                granted.push("*".to_owned());
            }
        }
        _ => {}
    }
    Ok(granted)
}

/// The most scopes one token request may ask for.
const MAX_SCOPES: usize = 32;

/// The token endpoint (`GET /token?service=…&scope=…`, credentials as Basic or a Gantry
/// token as Bearer; `POST` with a `password` grant form for OAuth2 clients). Invalid
/// credentials are refused; scopes the caller may not have are left out of the token,
/// as the protocol says, and the registry then refuses the request that needed them.
pub async fn token(State(registry): State<Arc<Registry>>, request: Request) -> Response {
    match issue(&registry, request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn issue(registry: &Registry, request: Request) -> Result<Response, RegistryError> {
    let (parts, body) = request.into_parts();
    let mut params: Vec<(String, String)> = parts
        .uri
        .query()
        .map(|query| {
            url::form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let mut headers = parts.headers.clone();
    if parts.method == Method::POST {
        let bytes = axum::body::to_bytes(body, 64 * 1024)
            .await
            .map_err(|_| RegistryError::bad_request("the form is larger than 64 KiB"))?;
        let form: Vec<(String, String)> =
            url::form_urlencoded::parse(&bytes).into_owned().collect();
        let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        match field("grant_type").as_deref() {
            Some("password") => {
                let (Some(user), Some(password)) = (field("username"), field("password")) else {
                    return Err(RegistryError::bad_request(
                        "the password grant needs username and password",
                    ));
                };
                use base64::Engine;
                let basic =
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
                let value = HeaderValue::from_str(&format!("Basic {basic}"))
                    .map_err(|_| RegistryError::bad_request("the credentials are not text"))?;
                headers.insert(header::AUTHORIZATION, value);
            }
            Some("refresh_token") => {
                let Some(refresh) = field("refresh_token") else {
                    return Err(RegistryError::bad_request(
                        "the refresh_token grant needs refresh_token",
                    ));
                };
                let value = HeaderValue::from_str(&format!("Bearer {refresh}"))
                    .map_err(|_| RegistryError::bad_request("the refresh token is not text"))?;
                headers.insert(header::AUTHORIZATION, value);
            }
            _ => {
                return Err(RegistryError::bad_request(
                    "grant_type must be password or refresh_token",
                ));
            }
        }
        params.extend(form);
    } else if parts.method != Method::GET {
        return Err(RegistryError::new(
            ErrorCode::Unsupported,
            StatusCode::METHOD_NOT_ALLOWED,
            "the token endpoint answers GET and POST",
        ));
    }
    // Registry tokens are not credentials for more registry tokens.
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|text| text.contains(registry_token::PREFIX));
    if presented {
        return Err(challenge(
            registry,
            &headers,
            Action::Pull,
            None,
            "present a Gantry token, not a registry token",
            false,
        ));
    }
    let client = crate::client_address(&parts.extensions);
    let caller = authenticate(registry, &headers, client, Action::Pull, None).await?;
    // Several scopes may share one parameter, separated by spaces.
    let scopes: Vec<&str> = params
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' '))
        .filter(|scope| !scope.is_empty())
        .collect();
    if scopes.len() > MAX_SCOPES {
        return Err(RegistryError::bad_request(format!(
            "at most {MAX_SCOPES} scopes per token"
        )));
    }
    let mut access: Vec<Access> = Vec::new();
    for scope in scopes {
        let Some(requested) = parse_scope(scope) else {
            return Err(RegistryError::bad_request(format!(
                "scope `{scope}` is not type:name:actions"
            )));
        };
        let actions = grant(registry, &caller.principal, &requested).await?;
        if actions.is_empty() {
            continue;
        }
        match access
            .iter_mut()
            .find(|a| a.kind == requested.kind && a.name == requested.name)
        {
            Some(existing) => {
                for action in actions {
                    if !existing.actions.contains(&action) {
                        existing.actions.push(action);
                    }
                }
            }
            None => access.push(Access {
                kind: requested.kind.clone(),
                name: requested.name.clone(),
                actions,
            }),
        }
    }
    let token_id = caller.token_id.clone();
    let now = store::now_millis().div_euclid(1000);
    let claims = RegistryClaims {
        token_id,
        service: registry.service(&headers),
        access,
        iat: now,
        exp: now + registry_token::LIFETIME_SECONDS,
    };
    let key = registry.token_key().await?;
    let token = registry_token::sign(&key, &claims);
    tracing::info!(
        caller = caller.principal.display_name(),
        scopes = claims.access.len(),
        "registry token issued"
    );
    let issued_at = jiff::Timestamp::from_second(now)
        .map(|t| t.to_string())
        .unwrap_or_default();
    let mut response = Json(serde_json::json!({
        "token": token,
        "access_token": token,
        "expires_in": registry_token::LIFETIME_SECONDS,
        "issued_at": issued_at,
    }))
    .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_with_names_holding_colons_and_classes() {
        let scope = parse_scope("repository:acme/web:pull,push").expect("valid");
        assert_eq!(
            (scope.kind.as_str(), scope.name.as_str()),
            ("repository", "acme/web")
        );
        assert_eq!(scope.actions, ["pull", "push"]);
        let scope = parse_scope("repository:localhost:5000/web:pull").expect("valid");
        assert_eq!(scope.name, "localhost:5000/web");
        let scope = parse_scope("repository(plugin):x:pull").expect("valid");
        assert_eq!(scope.kind, "repository");
        let scope = parse_scope("registry:catalog:*").expect("valid");
        assert_eq!(
            (scope.name.as_str(), scope.actions[0].as_str()),
            ("catalog", "*")
        );
        for bad in [
            "",
            "repository",
            "repository:x",
            ":x:pull",
            "repository::pull",
        ] {
            assert!(parse_scope(bad).is_none(), "{bad:?}");
        }
    }
}
