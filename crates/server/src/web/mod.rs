//! The web UI: HTML rendered on the server (maud templates, which escape every value),
//! complete without JavaScript. People sign in with a password or an API token into a
//! session kept in the store (`auth::sessions`); every page reads through the same
//! engine queries as the JSON API and every form calls the same engine use case, with
//! the same permission checks, audit entries and messages.
//!
//! Every state-changing form is a POST carrying the session's CSRF token; a POST from
//! another site (by `Sec-Fetch-Site` or `Origin`) is refused before any handler runs,
//! and the session cookie is `SameSite=Strict`. Every answer carries a
//! Content-Security-Policy that allows no inline script and no inline style (only
//! Gantry's own stylesheet and its one optional script, `gantry.js`, which updates a
//! running deployment's log), and refuses framing.

mod admin;
mod application;
mod approvals;
mod artifact;
mod audit;
mod board;
mod dora;
mod history;
mod layout;
mod promotion;
mod signin;

use axum::Router;
use axum::extract::{FromRequestParts, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use engine::Actor;
use http::request::Parts;
use http::{HeaderValue, Method, StatusCode, header};

use crate::AppState;
use crate::api::ApiError;

/// How the web UI's sessions behave.
#[derive(Debug, Clone, Copy, Default)]
pub struct WebSettings {
    pub sessions: auth::sessions::SessionPolicy,
    /// Mark the session cookie `Secure` (Gantry is reached over HTTPS, by its
    /// external URL).
    pub secure_cookies: bool,
}

/// The cookie that carries a session's secret.
const SESSION_COOKIE: &str = "gantry_session";

/// The routes of the web UI.
pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(board::board))
        .route("/sign-in", get(signin::form).post(signin::sign_in))
        .route("/sign-out", post(signin::sign_out))
        .route("/approvals", get(approvals::approvals))
        .route("/audit", get(audit::audit))
        .route("/audit/export", get(audit::export))
        .route("/dora", get(dora::dora))
        .route("/artifacts/{digest}", get(artifact::artifact))
        .route("/apps/{app}", get(application::application))
        .route("/apps/{app}/environments/{env}", get(history::environment))
        .route("/apps/{app}/promote", post(application::promote))
        .route(
            "/apps/{app}/environments/{env}/rollback",
            get(application::rollback_confirm).post(application::rollback),
        )
        .route(
            "/apps/{app}/environments/{env}/hold",
            post(application::hold),
        )
        .route(
            "/apps/{app}/environments/{env}/release",
            post(application::release),
        )
        .route("/admin/users", get(admin::users).post(admin::create_user))
        .route("/admin/users/{name}", get(admin::user))
        .route("/admin/users/{name}/tokens", post(admin::issue_token))
        .route("/admin/users/{name}/password", post(admin::set_password))
        .route("/admin/users/{name}/invitation", post(admin::invite))
        .route("/admin/tokens/{id}/revoke", post(admin::revoke_token))
        .route("/admin/resources", get(admin::resources))
        .route("/admin/resources/dry-run", post(admin::dry_run))
        .route("/admin/resources/apply", post(admin::apply))
        .route("/admin/resources/{kind}/{name}", get(admin::resource))
        .route(
            "/invitations/{secret}",
            get(signin::invitation_form).post(signin::accept_invitation),
        )
        .route("/promotions/{id}", get(promotion::promotion))
        .route("/promotions/{id}/log", get(promotion::live_log))
        .route("/promotions/{id}/approve", post(promotion::approve))
        .route("/promotions/{id}/reject", post(promotion::reject))
        .route("/promotions/{id}/cancel", post(promotion::cancel))
        .route("/static/gantry.css", get(layout::stylesheet))
        .route("/static/gantry.js", get(layout::script))
        .route_layer(axum::middleware::from_fn(refuse_cross_site))
        .route_layer(axum::middleware::from_fn(
            crate::limits::refuse_control_characters,
        ))
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(state)
}

/// The headers every page carries: scripts and styles from Gantry only (none inline), no
/// framing, no MIME sniffing, no referrer beyond Gantry, nothing cached (pages show
/// what a signed-in person may see).
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; \
             img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// Refuses a state-changing request another site made: one whose browser says it is
/// cross-site (`Sec-Fetch-Site`), or whose `Origin` is not this server's host. Runs
/// before the handler, so nothing changes; the CSRF token and the `SameSite=Strict`
/// cookie stop it too.
async fn refuse_cross_site(request: Request, next: Next) -> Response {
    if matches!(*request.method(), Method::GET | Method::HEAD) {
        return next.run(request).await;
    }
    let headers = request.headers();
    let site = headers
        .get("sec-fetch-site")
        .and_then(|value| value.to_str().ok());
    let cross_site = matches!(site, Some("cross-site" | "same-site"));
    let host = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok());
    let foreign_origin = match headers.get(header::ORIGIN) {
        None => false,
        Some(origin) => {
            let origin = origin.to_str().unwrap_or("");
            let origin_host = origin
                .strip_prefix("https://")
                .or_else(|| origin.strip_prefix("http://"));
            origin_host.is_none() || origin_host != host
        }
    };
    if cross_site || foreign_origin {
        return PageError::new(
            StatusCode::FORBIDDEN,
            "This form was sent from another site, so Gantry refused it. Open the page in Gantry and send it from there.",
        )
        .into_response();
    }
    next.run(request).await
}

/// A page that could not be served: its status and a message a person can act on
/// (the engine's own words, as the API gives them).
#[derive(Debug)]
pub(crate) struct PageError {
    status: StatusCode,
    message: String,
}

impl PageError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> PageError {
        PageError {
            status,
            message: message.into(),
        }
    }

    fn not_found(message: impl Into<String>) -> PageError {
        PageError::new(StatusCode::NOT_FOUND, message)
    }

    fn bad_request(message: impl Into<String>) -> PageError {
        PageError::new(StatusCode::BAD_REQUEST, message)
    }
}

impl From<ApiError> for PageError {
    fn from(error: ApiError) -> PageError {
        PageError::new(error.status(), error.message())
    }
}

impl From<engine::EngineError> for PageError {
    fn from(error: engine::EngineError) -> PageError {
        ApiError::from(error).into()
    }
}

impl From<store::StoreError> for PageError {
    fn from(error: store::StoreError) -> PageError {
        ApiError::from(error).into()
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let title = self.status.canonical_reason().unwrap_or("Error").to_owned();
        let body = layout::page(
            &title,
            None,
            maud::html! {
                h1 { (title) }
                p role="alert" { (self.message) }
                p { a href="/" { "Back to the board" } }
            },
        );
        (self.status, body).into_response()
    }
}

/// The signed-in person looking at a page: their session and the engine's view of
/// them. Without a valid session, a page read sends the browser to sign in (and back
/// afterwards); anything else is refused.
pub(crate) struct Viewer {
    pub(crate) session: auth::sessions::WebSession,
    pub(crate) actor: Actor,
}

impl Viewer {
    /// Refuses a form whose CSRF token is not this session's.
    pub(crate) fn check_csrf(&self, presented: &str) -> Result<(), PageError> {
        if auth::sessions::csrf_matches(&self.session, presented) {
            Ok(())
        } else {
            Err(PageError::new(
                StatusCode::FORBIDDEN,
                "This form is out of date or was not sent from Gantry. Reload the page and try again.",
            ))
        }
    }
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        match signed_in(parts, state).await {
            Ok(Some(viewer)) => Ok(viewer),
            Ok(None) if parts.method == Method::GET || parts.method == Method::HEAD => {
                let next = parts.uri.path_and_query().map_or("/", |path| path.as_str());
                let target = format!(
                    "/sign-in?next={}",
                    percent_encoding::utf8_percent_encode(next, percent_encoding::NON_ALPHANUMERIC)
                );
                Err(Redirect::to(&target).into_response())
            }
            Ok(None) => Err(PageError::new(
                StatusCode::UNAUTHORIZED,
                "Your session has ended. Sign in again, then repeat what you were doing.",
            )
            .into_response()),
            Err(error) => Err(error.into_response()),
        }
    }
}

/// The viewer, if the request carries a valid session cookie.
async fn signed_in(parts: &Parts, state: &AppState) -> Result<Option<Viewer>, PageError> {
    let Some(secret) = session_cookie(&parts.headers) else {
        return Ok(None);
    };
    let Some(session) = auth::sessions::session(
        &state.store,
        secret,
        state.web.sessions,
        store::now_millis(),
    )
    .await?
    else {
        return Ok(None);
    };
    let user = state.store.users().get(&session.user_name).await?;
    let actor = Actor {
        name: session.user_name.clone(),
        admin: session.admin,
        ci: user.as_ref().is_some_and(|user| user.ci),
        user,
        scope: None,
    };
    Ok(Some(Viewer { session, actor }))
}

/// The session secret from the `Cookie` header, if any.
fn session_cookie(headers: &http::HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value)
}

/// The `Set-Cookie` value that hands the browser a session (or, with `None`, takes
/// it away).
fn session_cookie_header(
    settings: &WebSettings,
    secret: Option<&str>,
    max_age_secs: u64,
) -> HeaderValue {
    let secure = if settings.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    let value = match secret {
        Some(secret) => format!(
            "{SESSION_COOKIE}={secret}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{secure}"
        ),
        None => format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}"),
    };
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// A local path to return to after signing in: only paths on this server (`/…`, not
/// `//host`), so a link cannot send a person elsewhere.
fn local_path(next: Option<&str>) -> &str {
    match next {
        Some(path) if path.starts_with('/') && !path.starts_with("//") && !path.contains('\\') => {
            path
        }
        _ => "/",
    }
}

/// A submitted form, refused as a page (400 naming what is wrong) when it cannot be
/// read.
pub(crate) struct WebForm<T>(pub(crate) T);

impl<T, S> axum::extract::FromRequest<S> for WebForm<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = PageError;

    async fn from_request(request: Request, state: &S) -> Result<Self, PageError> {
        match axum::Form::<T>::from_request(request, state).await {
            Ok(axum::Form(value)) => Ok(WebForm(value)),
            Err(rejection) => Err(PageError::new(
                rejection.status(),
                format!("The form could not be read: {}", rejection.body_text()),
            )),
        }
    }
}

/// The client's address, when the connection is known (the limits on failed sign-ins
/// count by it, and the sign-in's audit entry names it).
pub(crate) struct ClientAddress(pub(crate) Option<std::net::IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddress(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|info| info.0.ip()),
        ))
    }
}
