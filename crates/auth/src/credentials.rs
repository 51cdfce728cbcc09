//! The credentials a client presents in `Authorization`: `Basic user:token` (what
//! registry clients send) or `Bearer token`.

use base64::Engine;

/// Parsed credentials. The secret is never logged.
pub struct Credentials {
    user: Option<String>,
    secret: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("secret", &"***")
            .finish()
    }
}

impl Credentials {
    /// Parses an `Authorization` header value; `None` if it is neither scheme or malformed.
    pub fn parse(header: &str) -> Option<Credentials> {
        let (scheme, rest) = header.trim().split_once(' ')?;
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest)
                .ok()?;
            let decoded = String::from_utf8(decoded).ok()?;
            let (user, secret) = decoded.split_once(':')?;
            if secret.is_empty() {
                return None;
            }
            return Some(Credentials {
                user: Some(user.to_owned()).filter(|u| !u.is_empty()),
                secret: secret.to_owned(),
            });
        }
        if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() && !rest.contains(' ') {
            return Some(Credentials {
                user: None,
                secret: rest.to_owned(),
            });
        }
        None
    }

    /// The user name given with Basic credentials.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    pub fn secret(&self) -> &str {
        &self.secret
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(text: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(text)
        )
    }

    #[test]
    fn basic_and_bearer_credentials_parse_and_garbage_does_not() {
        let c = Credentials::parse(&basic("admin:gnt_x")).expect("basic parses");
        assert_eq!((c.user(), c.secret()), (Some("admin"), "gnt_x"));
        let c = Credentials::parse("Bearer gnt_y").expect("bearer parses");
        assert_eq!((c.user(), c.secret()), (None, "gnt_y"));
        let c = Credentials::parse(&basic(":gnt_z")).expect("empty user is allowed");
        assert_eq!(c.user(), None);
        for bad in [
            "",
            "Basic",
            "Basic !!!",
            &basic("nocolon"),
            &basic("admin:"),
            "Bearer ",
            "Bearer a b",
            "Digest x",
        ] {
            assert!(Credentials::parse(bad).is_none(), "{bad:?}");
        }
        assert!(
            !format!("{:?}", Credentials::parse("Bearer secret").expect("parses"))
                .contains("secret\"")
        );
    }
}
