//! Signing in (a user name and password, or an API token) and signing out.

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use http::{StatusCode, header};
use maud::{Markup, html};
use serde::Deserialize;

use super::layout::page;
use super::{ClientAddress, PageError, Viewer, WebForm, local_path, session_cookie_header};
use crate::AppState;
use auth::sessions::{OpenedSession, SignInError};

#[derive(Debug, Deserialize)]
pub(crate) struct Next {
    next: Option<String>,
    done: Option<String>,
}

/// The sign-in page.
pub(crate) async fn form(Query(query): Query<Next>) -> Markup {
    sign_in_page(
        local_path(query.next.as_deref()),
        None,
        query.done.as_deref(),
    )
}

fn sign_in_page(next: &str, error: Option<&str>, done: Option<&str>) -> Markup {
    page(
        "Sign in",
        None,
        html! {
            h1 { "Sign in to Gantry" }
            (super::layout::notice(done))
            @if let Some(error) = error {
                p.error role="alert" id="sign-in-error" { (error) }
            }
            form method="post" action="/sign-in" {
                input type="hidden" name="next" value=(next);
                fieldset {
                    legend { "With your user name and password" }
                    label for="user" { "User name" }
                    input type="text" id="user" name="user" autocomplete="username"
                        autocapitalize="none" spellcheck="false";
                    label for="password" { "Password" }
                    input type="password" id="password" name="password" autocomplete="current-password";
                    p { button type="submit" name="with" value="password" { "Sign in" } }
                }
                fieldset {
                    legend { "Or with an API token" }
                    label for="token" { "API token" }
                    input type="password" id="token" name="token" autocomplete="off"
                        aria-describedby="token-help";
                    p.muted id="token-help" { "A token from " code { "gantry token create" } ". CI tokens cannot sign in." }
                    p { button type="submit" name="with" value="token" { "Sign in with the token" } }
                }
            }
        },
    )
}

#[derive(Debug, Deserialize)]
pub(crate) struct SignInForm {
    next: Option<String>,
    with: Option<String>,
    #[serde(default)]
    user: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    token: String,
}

/// Signs a person in and sends them where they were going.
pub(crate) async fn sign_in(
    State(state): State<AppState>,
    ClientAddress(address): ClientAddress,
    WebForm(form): WebForm<SignInForm>,
) -> Response {
    let next = local_path(form.next.as_deref()).to_owned();
    let attempt = auth::Attempt {
        limiter: state.registry.failures(),
        address,
    };
    let client = address.map(|address| address.to_string());
    let now = store::now_millis();
    let policy = state.web.sessions;
    let with_token =
        form.with.as_deref() == Some("token") || (form.user.is_empty() && !form.token.is_empty());
    let opened = if with_token {
        if form.token.trim().is_empty() {
            return refused(&next, StatusCode::BAD_REQUEST, "Enter an API token.");
        }
        auth::sessions::sign_in_with_token(
            &state.store,
            attempt,
            &form.token,
            policy,
            client.as_deref(),
            now,
        )
        .await
    } else {
        if form.user.trim().is_empty() || form.password.is_empty() {
            return refused(
                &next,
                StatusCode::BAD_REQUEST,
                "Enter your user name and password.",
            );
        }
        auth::sessions::sign_in_with_password(
            &state.store,
            attempt,
            form.user.trim(),
            &form.password,
            policy,
            client.as_deref(),
            now,
        )
        .await
    };
    match opened {
        Ok(OpenedSession { cookie_secret, .. }) => {
            let mut response = Redirect::to(&next).into_response();
            response.headers_mut().insert(
                header::SET_COOKIE,
                session_cookie_header(&state.web, Some(&cookie_secret), policy.absolute.as_secs()),
            );
            response
        }
        Err(error) => {
            let status = match &error {
                SignInError::WrongPassword | SignInError::InvalidToken(_) => {
                    StatusCode::UNAUTHORIZED
                }
                SignInError::CiIdentity => StatusCode::FORBIDDEN,
                SignInError::TooManyFailures(_) => StatusCode::TOO_MANY_REQUESTS,
                SignInError::Random(_) | SignInError::Store(_) => {
                    tracing::error!(%error, "signing in failed");
                    return PageError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "Signing in failed on the server; the server log has the cause.",
                    )
                    .into_response();
                }
            };
            tracing::info!(%error, "sign-in refused");
            refused(&next, status, &error.to_string())
        }
    }
}

fn refused(next: &str, status: StatusCode, message: &str) -> Response {
    (status, sign_in_page(next, Some(message), None)).into_response()
}

#[derive(Debug, Deserialize)]
pub(crate) struct SignOutForm {
    #[serde(default)]
    csrf: String,
}

/// Ends the session everywhere and sends the browser to the sign-in page.
pub(crate) async fn sign_out(
    State(state): State<AppState>,
    viewer: Viewer,
    WebForm(form): WebForm<SignOutForm>,
) -> Result<Response, PageError> {
    viewer.check_csrf(&form.csrf)?;
    auth::sessions::sign_out(&state.store, &viewer.session.id, store::now_millis()).await?;
    let mut response = Redirect::to("/sign-in").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        session_cookie_header(&state.web, None, 0),
    );
    Ok(response)
}

/// The page an invitation link opens: choose a password (twice).
pub(crate) async fn invitation_form(
    State(state): State<AppState>,
    axum::extract::Path(secret): axum::extract::Path<String>,
) -> Result<Markup, PageError> {
    let invitation = auth::invitations::pending(&state.store, &secret, store::now_millis())
        .await?
        .ok_or_else(|| {
            PageError::not_found(auth::invitations::AcceptError::NotValid.to_string())
        })?;
    Ok(invitation_page(&secret, &invitation.user_name, None))
}

fn invitation_page(secret: &str, user: &str, error: Option<&str>) -> Markup {
    page(
        "Choose your password",
        None,
        html! {
            h1 { "Welcome to Gantry, " (user) }
            @if let Some(error) = error { p.error role="alert" { (error) } }
            form method="post" action=(format!("/invitations/{secret}")) {
                input type="text" name="user" value=(user) autocomplete="username" readonly aria-label="User name";
                label for="new-password" { "Choose a password (at least 12 characters)" }
                input type="password" id="new-password" name="password" autocomplete="new-password" required minlength="12";
                label for="repeat-password" { "The same password again" }
                input type="password" id="repeat-password" name="repeat" autocomplete="new-password" required minlength="12";
                p { button type="submit" { "Set my password" } }
            }
        },
    )
}

#[derive(Debug, Deserialize)]
pub(crate) struct InvitationForm {
    #[serde(default)]
    password: String,
    #[serde(default)]
    repeat: String,
}

/// Sets the invited person's password (the link works once) and sends them to sign
/// in with it.
pub(crate) async fn accept_invitation(
    State(state): State<AppState>,
    axum::extract::Path(secret): axum::extract::Path<String>,
    WebForm(form): WebForm<InvitationForm>,
) -> Result<Response, PageError> {
    let now = store::now_millis();
    let invitation = auth::invitations::pending(&state.store, &secret, now)
        .await?
        .ok_or_else(|| {
            PageError::not_found(auth::invitations::AcceptError::NotValid.to_string())
        })?;
    if form.password != form.repeat {
        let page = invitation_page(
            &secret,
            &invitation.user_name,
            Some("The two passwords differ. Type the same password twice."),
        );
        return Ok((StatusCode::BAD_REQUEST, page).into_response());
    }
    match auth::invitations::accept(&state.store, &secret, &form.password, now).await {
        Ok(_) => Ok(Redirect::to("/sign-in?done=invited").into_response()),
        Err(auth::invitations::AcceptError::Refused(
            refused @ auth::passwords::PasswordRefused::Hashing(_),
        )) => Err(PageError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            refused.to_string(),
        )),
        Err(auth::invitations::AcceptError::Refused(refused)) => {
            let page = invitation_page(&secret, &invitation.user_name, Some(&refused.to_string()));
            Ok((StatusCode::BAD_REQUEST, page).into_response())
        }
        Err(error @ auth::invitations::AcceptError::NotValid) => {
            Err(PageError::not_found(error.to_string()))
        }
        Err(auth::invitations::AcceptError::Store(error)) => Err(error.into()),
    }
}
