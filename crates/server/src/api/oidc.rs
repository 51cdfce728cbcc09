//! `POST /api/v1/auth/oidc`: a CI job exchanges the OIDC token its platform minted
//! for it for a short-lived Gantry token, scoped by the trust policies its claims
//! match. Every refusal is a `401` whose message (also logged) says why.

use api_types::{OidcExchangeRequest, OidcExchangeResponse};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use domain::ResourceKind;
use domain::trust::TrustPolicy;

use super::error::ApiError;
use super::promotion_types::rfc3339;
use super::types::ErrorBody;
use crate::AppState;

/// Every declared trust policy.
async fn trust_policies(state: &AppState) -> Result<Vec<TrustPolicy>, ApiError> {
    let stored = state
        .store
        .resources()
        .all(ResourceKind::TrustPolicy)
        .await?;
    stored
        .iter()
        .map(|record| {
            resources::trust_policy_from_canonical(&record.canonical)
                .map_err(|error| ApiError::internal("reading a stored trust policy", &error))
        })
        .collect()
}

/// Exchange a CI job's OIDC token for a Gantry token.
#[utoipa::path(
    post,
    path = "/api/v1/auth/oidc",
    request_body = OidcExchangeRequest,
    responses(
        (status = 201, description = "Issued", body = OidcExchangeResponse),
        (status = 400, description = "Not a JSON body with `token`", body = ErrorBody),
        (status = 401, description = "The job token was refused; the message says why", body = ErrorBody),
        (status = 429, description = "Too many refused exchanges from this address", body = ErrorBody),
    )
)]
pub(crate) async fn exchange(
    State(state): State<AppState>,
    body: Result<super::body::JsonBody<OidcExchangeRequest>, ApiError>,
) -> Result<Response, ApiError> {
    let super::body::JsonBody(request) = body?;
    let policies = trust_policies(&state).await?;
    let now = store::now_millis();
    let token = request.token.trim();
    let exchanged = super::attempt(&state)
        .limit(
            token,
            || None,
            auth::oidc::exchange(&state.store, &state.federation, &policies, token, now),
            |error| matches!(error, auth::oidc::ExchangeError::Refused(_)),
        )
        .await
        .map_err(super::too_many_failures)?;
    match exchanged {
        Ok(exchanged) => {
            tracing::info!(
                user = exchanged.user,
                token = exchanged.token_id,
                policies = ?exchanged.policies,
                "OIDC token exchanged"
            );
            let response = OidcExchangeResponse {
                id: exchanged.token_id,
                user: exchanged.user,
                token: exchanged.secret,
                expires_at: rfc3339(exchanged.expires_at),
                expires_in: (exchanged.expires_at - now).div_euclid(1000),
                scope: exchanged.grants.iter().map(ToString::to_string).collect(),
                policies: exchanged.policies,
            };
            Ok((StatusCode::CREATED, Json(response)).into_response())
        }
        Err(auth::oidc::ExchangeError::Refused(reason)) => {
            tracing::info!(reason, "OIDC token refused");
            Err(ApiError::unauthorized(
                &state.registry.config().realm,
                format!("OIDC token refused: {reason}"),
            ))
        }
        Err(auth::oidc::ExchangeError::Store(error)) => Err(error.into()),
        Err(error @ auth::oidc::ExchangeError::Random(_)) => {
            Err(ApiError::internal("issuing a token", &error))
        }
    }
}
