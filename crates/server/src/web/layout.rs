//! The page shell every screen shares (landmarks, a skip link, the navigation, the
//! signed-in person and their sign-out form), the stylesheet served from the binary,
//! and the small renderings pages share: times, ages, short digests, links from data.

use axum::response::IntoResponse;
use http::{HeaderValue, header};
use maud::{DOCTYPE, Markup, html};

use super::Viewer;

/// The stylesheet and the optional script, served from the binary (no build step).
const STYLESHEET: &str = include_str!("gantry.css");
const SCRIPT: &str = include_str!("gantry.js");

pub(crate) async fn stylesheet() -> impl IntoResponse {
    asset("text/css; charset=utf-8", STYLESHEET)
}

pub(crate) async fn script() -> impl IntoResponse {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            ),
        ],
        body,
    )
}

/// A whole page: `title` in the window and as the page's purpose, the navigation for
/// a signed-in `viewer`, and `content` as the main landmark.
pub(crate) fn page(title: &str, viewer: Option<&Viewer>, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Gantry" }
                link rel="stylesheet" href="/static/gantry.css";
                script src="/static/gantry.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to the content" }
                header.top {
                    a.brand href="/" { "Gantry" }
                    @if let Some(viewer) = viewer {
                        nav aria-label="Main" {
                            ul {
                                li { a href="/" { "Board" } }
                                li { a href="/approvals" { "My approvals" } }
                                li { a href="/audit" { "Audit log" } }
                                li { a href="/dora" { "DORA" } }
                                @if viewer.actor.admin { li { a href="/admin/users" { "Administration" } } }
                            }
                        }
                        form.signout method="post" action="/sign-out" {
                            span { "Signed in as " strong { (viewer.actor.name) } }
                            input type="hidden" name="csrf" value=(viewer.session.csrf_token);
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main id="main" tabindex="-1" { (content) }
            }
        }
    }
}

/// A UTC time, to the minute, in a `<time>` element with the exact instant.
pub(crate) fn time(millis: i64) -> Markup {
    match jiff::Timestamp::from_millisecond(millis) {
        Ok(at) => html! {
            time datetime=(at.to_string()) { (at.strftime("%Y-%m-%d %H:%M UTC").to_string()) }
        },
        Err(_) => html! { "—" },
    }
}

/// How long ago `millis` was, from `now`, in the largest whole unit.
pub(crate) fn age(millis: i64, now: i64) -> String {
    let seconds = (now - millis).max(0) / 1000;
    match seconds {
        0..60 => format!("{seconds} s ago"),
        60..3600 => format!("{} min ago", seconds / 60),
        3600..86_400 => format!("{} h ago", seconds / 3600),
        _ => format!("{} d ago", seconds / 86_400),
    }
}

/// A digest shortened to the algorithm and 12 hex digits, with the whole digest in a
/// title for who needs it.
pub(crate) fn short_digest(digest: &str) -> Markup {
    html! { code title=(digest) { (shortened(digest)) } }
}

/// `sha256:` and the first 12 hex digits.
pub(crate) fn shortened(digest: &str) -> String {
    match digest.split_once(':') {
        Some((algorithm, _)) => format!("{algorithm}:{}", short_hex(digest)),
        None => digest.chars().take(19).collect(),
    }
}

/// The first 12 hex digits of a digest, without its algorithm.
pub(crate) fn short_hex(digest: &str) -> &str {
    digest
        .split_once(':')
        .map_or(digest, |(_, hex)| &hex[..hex.len().min(12)])
}

/// A digest shortened as [`short_digest`], linked to its artifact page (which shows
/// it whole) instead of carrying it in a title: the board's cells stay small.
pub(crate) fn digest_link(digest: &str) -> Markup {
    html! { a href=(format!("/artifacts/{digest}")) { code { (shortened(digest)) } } }
}

/// A commit shortened to 10 characters.
pub(crate) fn short_commit(commit: &str) -> String {
    commit.chars().take(10).collect()
}

/// A link to `url` if it is `http(s)` (never `javascript:` or `data:`), else the text.
pub(crate) fn external_link(url: &str, text: &str) -> Markup {
    let lower = url.trim_start().to_ascii_lowercase();
    if lower.starts_with("https://") || lower.starts_with("http://") {
        html! { a href=(url) rel="noopener noreferrer" { (text) } }
    } else {
        html! { (text) }
    }
}

/// A notice at the top of a page after an action (`?done=` of the redirect after a
/// form), as a status message screen readers announce.
pub(crate) fn notice(done: Option<&str>) -> Markup {
    let text = match done {
        Some("approved") => "Approved.",
        Some("rejected") => "Rejected.",
        Some("cancelled") => "Cancelled.",
        Some("promoted") => "Promotion requested.",
        Some("rolled-back") => "Rollback started.",
        Some("held") => "Environment held.",
        Some("released") => "Hold released.",
        Some("created") => "User created.",
        Some("revoked") => "Token revoked.",
        Some("password") => "Password set; every session of the user ended.",
        Some("invited") => "Your password is set. Sign in with it.",
        _ => return html! {},
    };
    html! { p.notice role="status" { (text) } }
}
