//! `GET /api/v1/keys` (the public keys Gantry signs and signed with; no credentials
//! needed, verifying is for anyone) and `POST /api/v1/keys/rotate` (a new key, admins
//! only, audited), and the audit log's signed checkpoints: `GET` (auditors) and
//! `POST` (sign one now, admins) `/api/v1/audit/checkpoints`.

use api_types::{CheckpointList, CheckpointView, SigningKeyList, SigningKeyView};
use axum::Json;
use axum::extract::State;
use http::StatusCode;
use store::SigningKeyRecord;

use super::error::ApiError;
use super::extract::{Authorized, ManageKeys, ReadAudit};
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

fn checkpoint_view(checkpoint: store::Checkpoint) -> CheckpointView {
    CheckpointView {
        at: rfc3339(checkpoint.at),
        at_millis: checkpoint.at,
        sequence: checkpoint.sequence,
        hash: checkpoint.hash,
        key_id: checkpoint.key_id,
        signature: checkpoint.signature,
    }
}

/// Every signed checkpoint of the audit log, oldest first: keep them elsewhere, and
/// `gantry audit verify --key` checks the chain against them.
#[utoipa::path(
    get,
    path = "/api/v1/audit/checkpoints",
    responses(
        (status = 200, description = "The checkpoints", body = CheckpointList),
        (status = 401, description = "No valid credentials", body = ErrorBody),
        (status = 403, description = "Not allowed to read the audit log (`audit:read`)", body = ErrorBody),
    )
)]
pub(crate) async fn checkpoints(
    State(state): State<AppState>,
    _: Authorized<ReadAudit>,
) -> Result<Json<CheckpointList>, ApiError> {
    let checkpoints = state
        .store
        .attestations()
        .checkpoints()
        .await?
        .into_iter()
        .map(checkpoint_view)
        .collect();
    Ok(Json(CheckpointList { checkpoints }))
}

/// Signs a checkpoint of the audit log's head now (admins); `200` with the newest
/// checkpoint when the head is already checkpointed.
#[utoipa::path(
    post,
    path = "/api/v1/audit/checkpoints",
    responses(
        (status = 201, description = "The checkpoint signed", body = CheckpointView),
        (status = 200, description = "The head was already checkpointed: the newest checkpoint", body = CheckpointView),
        (status = 401, description = "No valid credentials", body = ErrorBody),
        (status = 403, description = "Not an admin (`keys:manage`)", body = ErrorBody),
        (status = 409, description = "This server holds no signing key, or the log is empty", body = ErrorBody),
    )
)]
pub(crate) async fn checkpoint(
    State(state): State<AppState>,
    _: Authorized<ManageKeys>,
) -> Result<(StatusCode, Json<CheckpointView>), ApiError> {
    match state.checkpoint_audit(true).await {
        Ok(Some(made)) => Ok((StatusCode::CREATED, Json(checkpoint_view(made)))),
        Ok(None) => match state.store.attestations().latest_checkpoint().await? {
            Some(latest) => Ok((StatusCode::OK, Json(checkpoint_view(latest)))),
            None => Err(ApiError::conflict(
                "the audit log is empty: there is nothing to checkpoint",
                serde_json::Value::Null,
            )),
        },
        Err(crate::CheckpointError::NoKey) => Err(ApiError::conflict(
            "this server holds no signing key",
            serde_json::Value::Null,
        )),
        Err(error) => Err(ApiError::internal("signing an audit checkpoint", &error)),
    }
}
