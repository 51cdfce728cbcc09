//! Request hygiene applied before any handler runs: a bound on the size of the
//! request head (header count and bytes), and control characters refused in the JSON
//! API's path segments and query parameters. Request bodies are bounded where they
//! are read (the API's JSON limit, the registry's manifest and blob limits); failed
//! credential checks are limited where credentials are checked (`auth::failures`).

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::api::ApiError;

/// The most header fields a request may carry.
pub const MAX_HEADERS: usize = 100;
/// The most bytes of header names and values a request may carry.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// Refuses requests whose headers exceed the limits with `431`.
pub(crate) async fn bound_headers(request: Request, next: Next) -> Response {
    let headers = request.headers();
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if headers.len() > MAX_HEADERS || bytes > MAX_HEADER_BYTES {
        tracing::info!(
            fields = headers.len(),
            bytes,
            "request refused: headers too large"
        );
        let message =
            format!("at most {MAX_HEADERS} header fields and {MAX_HEADER_BYTES} bytes of headers");
        // Each protocol answers in its own envelope.
        if is_registry_path(request.uri().path()) {
            return registry::RegistryError::new(
                registry::ErrorCode::Unsupported,
                http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                message,
            )
            .into_response();
        }
        return ApiError::headers_too_large(message).into_response();
    }
    next.run(request).await
}

/// Whether `path` is the registry's (`/v2`, `/v2/…`), whose errors use the OCI envelope.
fn is_registry_path(path: &str) -> bool {
    path == "/v2" || path.starts_with("/v2/")
}

/// Refuses a request to the JSON API whose path segments or query parameters hold a
/// control character (after percent-decoding), with `400` naming the parameter. Runs
/// after routing, so a path segment is named by the route's parameter (`{app}`).
/// JSON bodies are held to the same rule where they are read (`api::body`).
pub(crate) async fn refuse_control_characters(
    matched: Option<axum::extract::MatchedPath>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(field) = control_character_in(matched.as_ref().map(|m| m.as_str()), request.uri()) {
        tracing::info!(field, "request refused: control character");
        return ApiError::bad_request(format!(
            "{field} holds a control character; names and identifiers are plain text"
        ))
        .with_detail(serde_json::json!({ "field": field }))
        .into_response();
    }
    next.run(request).await
}

/// The parameter of `uri` holding a control character or text that is not UTF-8, if
/// any: `path parameter `app``, `query parameter `after``.
fn control_character_in(template: Option<&str>, uri: &http::Uri) -> Option<String> {
    let bad = |raw: &str| {
        // A URI holds no raw ASCII control character: only escapes and non-ASCII text
        // (C1 controls) need a closer look.
        if raw.is_ascii() && !raw.contains('%') {
            return false;
        }
        let bytes: Vec<u8> = percent_encoding::percent_decode_str(raw).collect();
        match std::str::from_utf8(&bytes) {
            Ok(text) => domain::text::control_character(text, false).is_some(),
            Err(_) => true,
        }
    };
    let segments = uri.path().split('/');
    let names = template.map(|t| t.split('/').map(Some).collect::<Vec<_>>());
    for (i, segment) in segments.enumerate() {
        if bad(segment) {
            let name = names
                .as_ref()
                .and_then(|names| names.get(i).copied().flatten())
                .and_then(|name| name.strip_prefix('{'))
                .and_then(|name| name.strip_suffix('}'))
                .map(|name| name.trim_start_matches('*'));
            return Some(match name {
                Some(name) => format!("path parameter `{name}`"),
                None => "the path".to_owned(),
            });
        }
    }
    let query = uri.query()?;
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        // `+` is a space in a query; it is never a control character.
        if bad(key) || bad(value) {
            let shown: String = percent_encoding::percent_decode_str(key)
                .decode_utf8_lossy()
                .chars()
                .filter(|c| !c.is_control())
                .take(64)
                .collect();
            return Some(format!("query parameter `{shown}`"));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_in_paths_and_queries_are_named_by_their_parameter() {
        let check = |template: Option<&str>, uri: &str| {
            control_character_in(template, &uri.parse().expect("a URI"))
        };
        let app = Some("/api/v1/apps/{app}/environments/{env}");
        assert_eq!(check(app, "/api/v1/apps/web/environments/prod?x=1"), None);
        assert_eq!(check(app, "/api/v1/apps/web%20app/environments/prod"), None);
        assert_eq!(
            check(app, "/api/v1/apps/web/environments/pr%00od").as_deref(),
            Some("path parameter `env`")
        );
        assert_eq!(
            check(app, "/api/v1/apps/%ff/environments/prod").as_deref(),
            Some("path parameter `app`")
        );
        assert_eq!(
            check(None, "/api/v1/apps?after=%0a").as_deref(),
            Some("query parameter `after`")
        );
        assert_eq!(
            check(None, "/api/v1/apps?limit=1&a%01b=2").as_deref(),
            Some("query parameter `ab`")
        );
        assert_eq!(check(None, "/api/v1/apps?q=a+b&r=%E2%9C%93"), None);
    }
}
