//! Reading the request headers and query parameters the spec gives meaning to.

use std::collections::HashMap;

use axum::extract::Query;
use http::{HeaderMap, StatusCode, Uri, header};

use crate::error::{ErrorCode, RegistryError};

/// The query parameters of a request; a malformed query string, or a parameter
/// holding a control character (which no name, tag, digest or media type has, and
/// PostgreSQL cannot even store), is an error naming it.
pub(crate) fn query(uri: &Uri) -> Result<HashMap<String, String>, RegistryError> {
    let map = Query::<HashMap<String, String>>::try_from_uri(uri)
        .map(|Query(map)| map)
        .map_err(|e| {
            RegistryError::new(
                ErrorCode::Unsupported,
                StatusCode::BAD_REQUEST,
                format!("malformed query string: {e}"),
            )
        })?;
    for (key, value) in &map {
        if domain::text::control_character(key, false).is_some()
            || domain::text::control_character(value, false).is_some()
        {
            let shown: String = key.chars().filter(|c| !c.is_control()).take(64).collect();
            return Err(RegistryError::new(
                ErrorCode::Unsupported,
                StatusCode::BAD_REQUEST,
                format!("query parameter `{shown}` holds a control character"),
            )
            .with_detail(serde_json::json!({ "parameter": shown })));
        }
    }
    Ok(map)
}

/// The media type of `Content-Type`, without parameters.
pub(crate) fn content_type(headers: &HeaderMap) -> Result<Option<String>, RegistryError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| RegistryError::manifest_invalid("Content-Type is not text"))?;
    let media_type = text.split(';').next().unwrap_or_default().trim();
    Ok(if media_type.is_empty() {
        None
    } else {
        Some(media_type.to_ascii_lowercase())
    })
}

/// `Content-Length`, if the client sent one; a malformed one is an error.
pub(crate) fn content_length(headers: &HeaderMap) -> Result<Option<u64>, RegistryError> {
    let Some(value) = headers.get(header::CONTENT_LENGTH) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|text| text.trim().parse::<u64>().ok())
        .map(Some)
        .ok_or_else(|| {
            RegistryError::new(
                ErrorCode::SizeInvalid,
                StatusCode::BAD_REQUEST,
                "Content-Length is not a number",
            )
        })
}

/// The inclusive byte range of a chunk, from a PATCH's `Content-Range: <start>-<end>`.
/// (Tolerates the `bytes ` unit prefix and a `/total` suffix some clients add.)
pub(crate) fn chunk_range(headers: &HeaderMap) -> Result<Option<(u64, u64)>, RegistryError> {
    let Some(value) = headers.get(header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let invalid = || {
        RegistryError::new(
            ErrorCode::BlobUploadInvalid,
            StatusCode::BAD_REQUEST,
            "Content-Range must be <start>-<end> with start <= end",
        )
    };
    let text = value.to_str().map_err(|_| invalid())?.trim();
    let text = text
        .strip_prefix("bytes")
        .map(|t| t.trim_start_matches([' ', '=']))
        .unwrap_or(text);
    let text = text.split('/').next().unwrap_or_default();
    let (start, end) = text.split_once('-').ok_or_else(invalid)?;
    let start: u64 = start.trim().parse().map_err(|_| invalid())?;
    let end: u64 = end.trim().parse().map_err(|_| invalid())?;
    if end < start || end == u64::MAX {
        return Err(invalid());
    }
    Ok(Some((start, end)))
}

/// The outcome of reading a blob GET's `Range` header against the blob's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ByteRange {
    /// No range (or one Gantry serves whole): the whole blob.
    Whole,
    /// The inclusive range `first..=last`.
    Part { first: u64, last: u64 },
    /// A range that cannot be satisfied for this size.
    Unsatisfiable,
}

pub(crate) fn byte_range(headers: &HeaderMap, size: u64) -> ByteRange {
    let Some(text) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return ByteRange::Whole;
    };
    let Some(spec) = text.trim().strip_prefix("bytes=") else {
        // Other units are ignored, as RFC 9110 allows.
        return ByteRange::Whole;
    };
    if spec.contains(',') {
        // Several ranges: answered with the whole blob (RFC 9110 allows it).
        return ByteRange::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return ByteRange::Unsatisfiable;
    };
    let (first, last) = (first.trim(), last.trim());
    if size == 0 {
        return ByteRange::Unsatisfiable;
    }
    let parsed = if first.is_empty() {
        // Suffix range: the last N bytes.
        match last.parse::<u64>() {
            Ok(0) | Err(_) => return ByteRange::Unsatisfiable,
            Ok(n) => (size.saturating_sub(n), size - 1),
        }
    } else {
        let Ok(first) = first.parse::<u64>() else {
            return ByteRange::Unsatisfiable;
        };
        let last = if last.is_empty() {
            size - 1
        } else {
            match last.parse::<u64>() {
                Ok(last) => last.min(size - 1),
                Err(_) => return ByteRange::Unsatisfiable,
            }
        };
        (first, last)
    };
    let (first, last) = parsed;
    if first > last || first >= size {
        return ByteRange::Unsatisfiable;
    }
    if first == 0 && last == size - 1 {
        return ByteRange::Whole;
    }
    ByteRange::Part { first, last }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn range(value: &str, size: u64) -> ByteRange {
        let mut headers = HeaderMap::new();
        headers.insert(header::RANGE, HeaderValue::from_str(value).expect("header"));
        byte_range(&headers, size)
    }

    #[test]
    fn byte_ranges_follow_rfc_9110() {
        use ByteRange::*;
        assert_eq!(range("bytes=0-9", 100), Part { first: 0, last: 9 });
        assert_eq!(
            range("bytes=10-", 100),
            Part {
                first: 10,
                last: 99
            }
        );
        assert_eq!(
            range("bytes=-10", 100),
            Part {
                first: 90,
                last: 99
            }
        );
        assert_eq!(
            range("bytes=90-500", 100),
            Part {
                first: 90,
                last: 99
            }
        );
        assert_eq!(range("bytes=0-99", 100), Whole);
        assert_eq!(range("bytes=-500", 100), Whole);
        assert_eq!(range("bytes=100-", 100), Unsatisfiable);
        assert_eq!(range("bytes=5-2", 100), Unsatisfiable);
        assert_eq!(range("bytes=x-2", 100), Unsatisfiable);
        assert_eq!(range("bytes=-0", 100), Unsatisfiable);
        assert_eq!(range("bytes=0-0", 0), Unsatisfiable);
        assert_eq!(range("items=0-5", 100), Whole);
        assert_eq!(range("bytes=0-1,5-6", 100), Whole);
    }

    fn chunk(value: &str) -> Result<Option<(u64, u64)>, ErrorCode> {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(value).expect("header"),
        );
        chunk_range(&headers).map_err(|e| e.code())
    }

    #[test]
    fn chunk_ranges_parse_in_the_spec_form_and_common_variants() {
        assert_eq!(chunk("0-99"), Ok(Some((0, 99))));
        assert_eq!(chunk("bytes 100-199/*"), Ok(Some((100, 199))));
        assert_eq!(chunk("bytes=5-5"), Ok(Some((5, 5))));
        assert_eq!(chunk("9-3"), Err(ErrorCode::BlobUploadInvalid));
        assert_eq!(chunk("abc"), Err(ErrorCode::BlobUploadInvalid));
        assert_eq!(chunk("-5"), Err(ErrorCode::BlobUploadInvalid));
        assert_eq!(
            chunk_range(&HeaderMap::new()).map_err(|e| e.code()),
            Ok(None)
        );
    }
}
