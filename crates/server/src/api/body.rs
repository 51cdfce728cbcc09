//! How every `/api` route reads its JSON body, one way for all: a non-empty body must
//! be declared JSON (`application/json` or a `+json` type; anything else, or nothing,
//! is 415), fit the route's limit (413), parse as JSON into the route's type (400
//! naming the field), and hold no control character in any string (400 naming the
//! field; free text may hold tabs and line breaks). A route whose body is optional
//! takes [`OptionalJsonBody`]: an empty body means "no body", never a body read with
//! the wrong content type as if it were absent.
//!
//! Handlers take the extractor as `Result<JsonBody<T>, ApiError>` and look at it after
//! authenticating, so an unauthenticated caller learns nothing about the body rules.

use axum::extract::{FromRequest, Request};
use bytes::Bytes;
use http::header;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::error::{ApiError, JSON_BODY_LIMIT};

/// A required JSON body of type `T`, at most `LIMIT` bytes.
pub(crate) struct JsonBody<T, const LIMIT: usize = JSON_BODY_LIMIT>(pub(crate) T);

/// An optional JSON body: `None` when the request has no body at all.
pub(crate) struct OptionalJsonBody<T, const LIMIT: usize = JSON_BODY_LIMIT>(pub(crate) Option<T>);

impl<T, S, const LIMIT: usize> FromRequest<S> for JsonBody<T, LIMIT>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, ApiError> {
        match read::<T>(request, LIMIT).await? {
            Some(value) => Ok(JsonBody(value)),
            None => Err(ApiError::bad_request(
                "this request needs a JSON body (Content-Type: application/json)",
            )),
        }
    }
}

impl<T, S, const LIMIT: usize> FromRequest<S> for OptionalJsonBody<T, LIMIT>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, ApiError> {
        Ok(OptionalJsonBody(read::<T>(request, LIMIT).await?))
    }
}

/// A JSON document of another system's (a Kubernetes `AdmissionReview`), read the
/// same way but taken as it is: its strings are looked at, never stored, and may hold
/// anything the other system allows.
pub(crate) struct ForeignJson(pub(crate) Value);

impl<S: Send + Sync> FromRequest<S> for ForeignJson {
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, ApiError> {
        match read_value(request, JSON_BODY_LIMIT).await? {
            Some(value) => Ok(ForeignJson(value)),
            None => Err(ApiError::bad_request(
                "this request needs a JSON body (Content-Type: application/json)",
            )),
        }
    }
}

/// Whether a `Content-Type` names JSON: `application/json` or `application/…+json`,
/// parameters (a charset) allowed.
fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|subtype| subtype.ends_with("+json"))
}

async fn read<T: DeserializeOwned>(request: Request, limit: usize) -> Result<Option<T>, ApiError> {
    let Some(value) = read_value(request, limit).await? else {
        return Ok(None);
    };
    refuse_control_characters(&value, &mut String::new())?;
    serde_path_to_error::deserialize(value)
        .map(Some)
        .map_err(|error| {
            let path = error.path().to_string();
            let field = if path == "." {
                "the body".to_owned()
            } else {
                format!("field `{path}`")
            };
            ApiError::bad_request(format!("{field}: {}", error.inner()))
                .with_detail(serde_json::json!({ "field": path }))
        })
}

/// The body as JSON, `None` when there is none.
async fn read_value(request: Request, limit: usize) -> Result<Option<Value>, ApiError> {
    let (parts, body) = request.into_parts();
    let declared_json = parts
        .headers
        .get(header::CONTENT_TYPE)
        .map(|value| value.to_str().map(is_json).unwrap_or(false));
    let bytes: Bytes = axum::body::to_bytes(body, limit).await.map_err(|error| {
        let too_large = std::error::Error::source(&error)
            .is_some_and(|source| source.is::<http_body_util::LengthLimitError>());
        if too_large {
            ApiError::payload_too_large(limit)
        } else {
            ApiError::bad_request(format!("the request body could not be read: {error}"))
        }
    })?;
    if bytes.is_empty() {
        return Ok(None);
    }
    if declared_json != Some(true) {
        return Err(ApiError::unsupported_media_type(
            "send the body as application/json",
            &["application/json"],
        ));
    }
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|error| ApiError::bad_request(format!("the body is not valid JSON: {error}")))
}

/// Fields whose text is prose a person wrote, where tabs and line breaks belong.
const PROSE: [&str; 5] = [
    "comment",
    "reason",
    "override_reason",
    "message",
    "description",
];
/// Fields holding documents of their own: a release bundle's configuration (file
/// contents among it) and a scanner's report text.
const DOCUMENTS: [&str; 2] = ["config", "report"];

/// Whether the field at `path` holds free text (tabs and line breaks allowed).
fn is_free_text(path: &str) -> bool {
    let first = path.split(['.', '[']).next().unwrap_or_default();
    let last = path.rsplit('.').next().unwrap_or_default();
    DOCUMENTS.contains(&first) || PROSE.contains(&last)
}

/// Refuses a string (or key) holding a control character anywhere in `value`, naming
/// its field (`config.replicas`, `items[2]`). Tabs and line breaks are allowed in
/// free text only.
fn refuse_control_characters(value: &Value, path: &mut String) -> Result<(), ApiError> {
    match value {
        Value::String(text) => match domain::text::control_character(text, is_free_text(path)) {
            None => Ok(()),
            Some(found) => Err(control_character_error(path, found)),
        },
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                refuse_control_characters(item, path)?;
                path.truncate(len);
            }
            Ok(())
        }
        Value::Object(map) => {
            for (key, item) in map {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                if let Some(found) = domain::text::control_character(key, false) {
                    let shown: String = key.chars().filter(|c| !c.is_control()).take(64).collect();
                    path.push_str(&shown);
                    return Err(control_character_error(path, found));
                }
                path.push_str(key);
                refuse_control_characters(item, path)?;
                path.truncate(len);
            }
            Ok(())
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => Ok(()),
    }
}

fn control_character_error(field: &str, found: char) -> ApiError {
    let field = if field.is_empty() { "the body" } else { field };
    ApiError::bad_request(format!(
        "field `{field}` holds the control character U+{:04X}; names and identifiers are plain text",
        u32::from(found)
    ))
    .with_detail(serde_json::json!({ "field": field }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types_are_recognised_with_parameters_and_suffixes() {
        for yes in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/vnd.gantry+json",
        ] {
            assert!(is_json(yes), "{yes}");
        }
        for no in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "",
            "json",
        ] {
            assert!(!is_json(no), "{no}");
        }
    }

    fn refused_field(value: Value) -> Option<String> {
        refuse_control_characters(&value, &mut String::new())
            .err()
            .map(|error| {
                error.detail()["field"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
    }

    #[test]
    fn control_characters_are_refused_naming_the_field() {
        use serde_json::json;
        assert_eq!(refused_field(json!({"commit": "abc"})), None);
        assert_eq!(
            refused_field(json!({"commit": "ab\u{0}c"})).as_deref(),
            Some("commit")
        );
        assert_eq!(
            refused_field(json!({"config": {"items": ["ok", "b\u{1b}[31m"]}})).as_deref(),
            Some("config.items[1]")
        );
        assert_eq!(
            refused_field(json!({"run": "1\n2"})).as_deref(),
            Some("run")
        );
        // Free text may hold line breaks and tabs, never NUL.
        assert_eq!(
            refused_field(json!({"reason": "line one\n\tline two"})),
            None
        );
        assert_eq!(
            refused_field(json!({"reason": "a\u{0}"})).as_deref(),
            Some("reason")
        );
        assert_eq!(
            refused_field(
                json!({"override_reason": "a\nb", "config": {"files": {"app.conf": "a = 1\n\tb = 2\n"}}})
            ),
            None
        );
        assert_eq!(
            refused_field(json!({"report": "{\n  \"Results\": []\n}"})),
            None
        );
        assert_eq!(
            refused_field(json!({"config": {"k": "\u{0}"}})).as_deref(),
            Some("config.k")
        );
        assert_eq!(refused_field(json!({"k\u{7f}": 1})).as_deref(), Some("k"));
        assert_eq!(refused_field(json!("\u{85}")).as_deref(), Some("the body"));
    }
}
