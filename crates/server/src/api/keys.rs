//! `GET /api/v1/keys` (the public keys Gantry signs and signed with; no credentials
//! needed, verifying is for anyone) and `POST /api/v1/keys/rotate` (a new key, admins
//! only, audited).

use api_types::{SigningKeyList, SigningKeyView};
use axum::Json;
use axum::extract::State;
use http::StatusCode;
use store::SigningKeyRecord;

use super::error::ApiError;
use super::extract::{Authorized, ManageKeys};
use super::promotion_types::rfc3339;
use super::types::ErrorBody;
use crate::AppState;

fn view(record: SigningKeyRecord) -> Result<SigningKeyView, ApiError> {
    let public = attest::PublicKey::from_pem(&record.public_key)
        .map_err(|error| ApiError::internal("reading a recorded public key", &error))?;
    Ok(SigningKeyView {
        jwk: public.jwk(),
        key_id: record.key_id,
        algorithm: record.algorithm,
        public_key: record.public_key,
        current: record.retired_at.is_none(),
        signed_from: rfc3339(record.created_at),
        signed_until: record.retired_at.map(rfc3339),
    })
}

/// Lists the public keys Gantry signs and signed with, the current one first, each
/// as PEM and JWK with the time range it signed.
#[utoipa::path(
    get,
    path = "/api/v1/keys",
    responses(
        (status = 200, description = "The keys", body = SigningKeyList),
    )
)]
pub(crate) async fn list(State(state): State<AppState>) -> Result<Json<SigningKeyList>, ApiError> {
    let keys = state
        .store
        .signing_keys()
        .list()
        .await?
        .into_iter()
        .map(view)
        .collect::<Result<_, _>>()?;
    Ok(Json(SigningKeyList { keys }))
}

/// Makes a new signing key: its file replaces the old one's, it becomes the current
/// key, and the old one stays listed with the time range it signed. Audited.
#[utoipa::path(
    post,
    path = "/api/v1/keys/rotate",
    responses(
        (status = 201, description = "The new current key", body = SigningKeyView),
        (status = 401, description = "No valid credentials", body = ErrorBody),
        (status = 403, description = "Not an admin (`keys:manage`)", body = ErrorBody),
        (status = 409, description = "This server holds no signing key", body = ErrorBody),
    )
)]
pub(crate) async fn rotate(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<ManageKeys>,
) -> Result<(StatusCode, Json<SigningKeyView>), ApiError> {
    let Some(ring) = &state.signing else {
        return Err(ApiError::conflict(
            "this server holds no signing key",
            serde_json::Value::Null,
        ));
    };
    let id = ring
        .rotate(&state.store, principal.display_name())
        .await
        .map_err(|error| ApiError::internal("rotating the signing key", &error))?;
    let record = state
        .store
        .signing_keys()
        .list()
        .await?
        .into_iter()
        .find(|record| record.key_id == id)
        .ok_or_else(|| {
            ApiError::internal(
                "reading the new key back",
                &std::io::Error::other("the new key is not recorded"),
            )
        })?;
    Ok((StatusCode::CREATED, Json(view(record)?)))
}
