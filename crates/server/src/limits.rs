//! Request hygiene applied before any handler runs: a bound on the size of the
//! request head (header count and bytes), and a per-client rate limit on the two
//! endpoints that mint credentials (`/token` and `/api/v1/auth/oidc`), which are what
//! an attacker guessing credentials or replaying job tokens would hammer. Request
//! bodies are bounded where they are read (the API's JSON limit, the registry's
//! manifest and blob limits).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, header};

use crate::AppState;
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
        return ApiError::headers_too_large(format!(
            "at most {MAX_HEADERS} header fields and {MAX_HEADER_BYTES} bytes of headers"
        ))
        .into_response();
    }
    next.run(request).await
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

/// A token bucket per client address: `burst` requests at once, refilled at
/// `per_minute`.
pub struct RateLimiter {
    per_minute: u32,
    burst: u32,
    buckets: Mutex<HashMap<Option<IpAddr>, Bucket>>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// How many client buckets are kept before idle ones are dropped.
const MAX_BUCKETS: usize = 10_000;

impl RateLimiter {
    pub fn new(per_minute: u32, burst: u32) -> RateLimiter {
        RateLimiter {
            per_minute: per_minute.max(1),
            burst: burst.max(1),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from `client`'s bucket; `Err` with the wait until the next.
    fn take(&self, client: Option<IpAddr>, now: Instant) -> Result<(), Duration> {
        let rate = f64::from(self.per_minute) / 60.0;
        let burst = f64::from(self.burst);
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_BUCKETS {
            // A full bucket is as good as none; if that is not enough, the longest idle
            // half goes (a client that comes back starts with a full bucket).
            buckets.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < burst);
            if buckets.len() >= MAX_BUCKETS / 2 {
                let mut ages: Vec<Instant> = buckets.values().map(|b| b.at).collect();
                ages.sort_unstable();
                let cutoff = ages[ages.len() / 2];
                buckets.retain(|_, b| b.at > cutoff);
            }
        }
        let bucket = buckets.entry(client).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let refilled =
            (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * rate).min(burst);
        bucket.at = now;
        if refilled >= 1.0 {
            bucket.tokens = refilled - 1.0;
            Ok(())
        } else {
            bucket.tokens = refilled;
            Err(Duration::from_secs_f64((1.0 - refilled) / rate))
        }
    }
}

/// The bucket of an address: IPv4 addresses each have their own; IPv6 clients get a
/// /64 each (one host usually holds a whole /64, so single addresses cost nothing).
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(std::net::Ipv6Addr::from(prefix))
            }
        },
    }
}

/// Rate-limits the credential endpoints by client address: `429` with `Retry-After`.
pub(crate) async fn limit_credentials(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| client_key(info.0.ip()));
    if let Err(wait) = state.credential_limiter.take(client, Instant::now()) {
        let seconds = wait.as_secs().max(1);
        tracing::info!(
            ?client,
            path = request.uri().path(),
            "credential request rate-limited"
        );
        let mut response = ApiError::too_many_requests(format!(
            "too many credential requests from this address; retry in {seconds} s"
        ))
        .into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        return response;
    }
    next.run(request).await
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

    #[test]
    fn a_bucket_allows_its_burst_then_refills_at_its_rate() {
        let limiter = RateLimiter::new(60, 3);
        let start = Instant::now();
        let client = Some(IpAddr::from([127, 0, 0, 1]));
        for _ in 0..3 {
            assert!(limiter.take(client, start).is_ok());
        }
        let wait = limiter.take(client, start).expect_err("burst spent");
        assert!(wait <= Duration::from_secs(1), "{wait:?}");
        // Another client has its own bucket.
        assert!(
            limiter
                .take(Some(IpAddr::from([10, 0, 0, 1])), start)
                .is_ok()
        );
        // An IPv6 /64 is one client.
        let a = client_key("2001:db8::1".parse().expect("address"));
        let b = client_key("2001:db8::ffff:2".parse().expect("address"));
        assert_eq!(a, b);
        assert_ne!(a, client_key("2001:db8:0:1::1".parse().expect("address")));
        // One second refills one request at 60 a minute.
        assert!(
            limiter
                .take(client, start + Duration::from_millis(1001))
                .is_ok()
        );
        assert!(
            limiter
                .take(client, start + Duration::from_millis(1002))
                .is_err()
        );
    }
}
