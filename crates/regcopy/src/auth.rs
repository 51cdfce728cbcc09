//! Registry authentication: anonymous, Basic, and the Bearer token flow.
//!
//! A registry announces what it wants in a `401` answer's `WWW-Authenticate` header.
//! `Basic` means "send the credentials with every request"; `Bearer realm=…,service=…`
//! means "fetch a token for the scope you need from the realm (with the credentials,
//! if any) and send that". Tokens are cached per scope until shortly before they
//! expire, so a copy of many blobs asks for each scope once.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

/// A user name and password (or token) for one registry host.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl Credentials {
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Credentials {
        Credentials {
            username: username.into(),
            password: password.into(),
        }
    }

    /// The `Authorization` value for Basic authentication.
    pub(crate) fn basic_header(&self) -> String {
        use base64::Engine;
        let encoded = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", self.username, self.password));
        format!("Basic {encoded}")
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// What a registry's `WWW-Authenticate` header asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

impl Challenge {
    /// Reads the first challenge Gantry can answer from a `WWW-Authenticate` value.
    pub(crate) fn parse(header: &str) -> Option<Challenge> {
        let header = header.trim();
        let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            return Some(Challenge::Basic);
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let parameters = parse_parameters(rest);
        let get = |name: &str| {
            parameters
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .map(|(_, value)| value.clone())
        };
        Some(Challenge::Bearer {
            realm: get("realm")?,
            service: get("service"),
            scope: get("scope"),
        })
    }
}

/// `key="value", key=value, …` with quoted values that may hold commas.
fn parse_parameters(text: &str) -> Vec<(String, String)> {
    let mut parameters = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ',' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if key.is_empty() {
            break;
        }
        if chars.next() != Some('=') {
            continue;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '"' => break,
                    '\\' => {
                        if let Some(escaped) = chars.next() {
                            value.push(escaped);
                        }
                    }
                    _ => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        parameters.push((key.trim().to_owned(), value.trim().to_owned()));
    }
    parameters
}

/// How one registry wants to be authenticated, learned from its challenges.
#[derive(Debug, Default)]
pub(crate) struct AuthState {
    pub(crate) scheme: Option<Scheme>,
    tokens: HashMap<String, CachedToken>,
}

/// The scheme a registry asked for.
#[derive(Debug, Clone)]
pub(crate) enum Scheme {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

#[derive(Debug)]
struct CachedToken {
    value: String,
    expires: Instant,
}

/// A token is not reused in its last seconds: a long request started with it could
/// outlive it.
const TOKEN_MARGIN: Duration = Duration::from_secs(15);

impl AuthState {
    /// The cached token for `scope`, if still fresh.
    pub(crate) fn token(&self, scope: &str) -> Option<String> {
        self.tokens
            .get(scope)
            .filter(|token| token.expires > Instant::now() + TOKEN_MARGIN)
            .map(|token| token.value.clone())
    }

    pub(crate) fn store_token(&mut self, scope: &str, value: String, lifetime: Duration) {
        self.tokens.insert(
            scope.to_owned(),
            CachedToken {
                value,
                expires: Instant::now() + lifetime,
            },
        );
    }

    pub(crate) fn forget_token(&mut self, scope: &str) {
        self.tokens.remove(scope);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(header: &str, expected: Option<Challenge>) {
        assert_eq!(Challenge::parse(header), expected, "{header}");
    }

    #[test]
    fn challenges_are_read_with_quoted_values_that_hold_commas() {
        check(
            r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:acme/web:pull,push""#,
            Some(Challenge::Bearer {
                realm: "https://auth.example.com/token".to_owned(),
                service: Some("registry.example.com".to_owned()),
                scope: Some("repository:acme/web:pull,push".to_owned()),
            }),
        );
        check(
            r#"bearer realm=https://auth.example.com/token, service=reg"#,
            Some(Challenge::Bearer {
                realm: "https://auth.example.com/token".to_owned(),
                service: Some("reg".to_owned()),
                scope: None,
            }),
        );
        check(r#"Basic realm="Registry Realm""#, Some(Challenge::Basic));
        check(r#"Bearer service="no realm""#, None);
        check("Negotiate abc", None);
    }

    #[test]
    fn credentials_never_show_the_password_in_debug_output() {
        let credentials = Credentials::new("ci", "hunter2");
        assert!(!format!("{credentials:?}").contains("hunter2"));
        assert_eq!(credentials.basic_header(), "Basic Y2k6aHVudGVyMg==");
    }
}
