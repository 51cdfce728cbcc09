//! "My approvals" (`/approvals`): every promotion waiting on a decision the signed-in
//! person may make, with its conditions and the approve and reject forms.

use axum::extract::State;
use maud::{Markup, html};

use super::application::pending_promotion;
use super::board::require_read;
use super::layout::page;
use super::{PageError, Viewer};
use crate::AppState;

/// The most promotions the page lists.
const MAX_LISTED: usize = 200;

pub(crate) async fn approvals(
    State(state): State<AppState>,
    viewer: Viewer,
) -> Result<Markup, PageError> {
    require_read(&state, &viewer)?;
    let waiting = state
        .engine
        .awaiting_approval(&viewer.actor, MAX_LISTED)
        .await?;
    let now = store::now_millis();
    Ok(page(
        "My approvals",
        Some(&viewer),
        html! {
            h1 { "My approvals" }
            @if waiting.is_empty() {
                p { "Nothing waits on you." }
            } @else {
                p { (waiting.len()) " promotion" @if waiting.len() != 1 { "s" } " wait on your decision, newest first." }
                @for promotion in &waiting {
                    h2 { a href=(format!("/apps/{}", promotion.application)) { (promotion.application) } }
                    (pending_promotion(&viewer, promotion, None, now))
                }
            }
        },
    ))
}
