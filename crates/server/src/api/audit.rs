//! `GET /api/v1/audit/verify` and `GET /api/v1/audit/export`: what auditors ask of the
//! hash-chained log. Verification recomputes the chain in the store; the export
//! streams every entry as JSON Lines, page by page, so its memory stays flat.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderValue, header};
use store::{AuditEntry, ChainVerdict, Store};

use super::error::ApiError;
use super::extract::{Authorized, ReadAudit};
use super::types::{AuditEntryView, AuditVerification};
use crate::AppState;

/// Entries read from the store per page of the export.
const EXPORT_PAGE: i64 = 500;

/// Recomputes the audit chain and names the first entry that does not verify.
#[utoipa::path(
    get,
    path = "/api/v1/audit/verify",
    responses(
        (status = 200, description = "The verdict (intact or not)", body = AuditVerification),
        (status = 401, description = "No valid credentials", body = super::types::ErrorBody),
        (status = 403, description = "Not allowed to read the audit log (`audit:read`)", body = super::types::ErrorBody),
    )
)]
pub(super) async fn verify(
    State(state): State<AppState>,
    _: Authorized<ReadAudit>,
) -> Result<Json<AuditVerification>, ApiError> {
    let verdict = state.store.audit().verify().await?;
    Ok(Json(match verdict {
        ChainVerdict::Intact { entries, head } => AuditVerification {
            intact: true,
            entries,
            head: Some(head),
            broken_at: None,
            reason: None,
        },
        ChainVerdict::Broken { sequence, reason } => AuditVerification {
            intact: false,
            entries: sequence - 1,
            head: None,
            broken_at: Some(sequence),
            reason: Some(reason),
        },
    }))
}

/// Every audit entry, oldest first, one JSON object per line.
#[utoipa::path(
    get,
    path = "/api/v1/audit/export",
    responses(
        (status = 200, description = "JSON Lines of `AuditEntryView`", content_type = "application/x-ndjson"),
        (status = 401, description = "No valid credentials", body = super::types::ErrorBody),
        (status = 403, description = "Not allowed to read the audit log (`audit:read`)", body = super::types::ErrorBody),
    )
)]
pub(super) async fn export(
    State(state): State<AppState>,
    _: Authorized<ReadAudit>,
) -> Result<Response, ApiError> {
    Ok(export_response(state.store.clone()))
}

/// The whole audit log as JSON lines, oldest first, streamed a page at a time (the
/// API's export and the web UI's download).
pub(crate) fn export_response(store: Store) -> Response {
    let pages = futures_util::stream::unfold(Some((store, 0i64)), |cursor| async move {
        let (store, after) = cursor?;
        match next_page(&store, after).await {
            Ok(None) => None,
            Ok(Some((bytes, last))) => {
                Some((Ok::<Bytes, std::io::Error>(bytes), Some((store, last))))
            }
            Err(error) => {
                // The status line is gone by now; ending the body early tells the client.
                tracing::error!(%error, "audit export failed");
                Some((Err(std::io::Error::other("audit export failed")), None))
            }
        }
    });
    let mut response = Body::from_stream(pages).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    response
}

async fn next_page(store: &Store, after: i64) -> Result<Option<(Bytes, i64)>, store::StoreError> {
    let entries = store.audit().entries(after, EXPORT_PAGE).await?;
    let Some(last) = entries.last().map(|entry| entry.sequence) else {
        return Ok(None);
    };
    let mut lines = Vec::new();
    for entry in &entries {
        // Serializing these plain fields cannot fail; a failure would be a bug, logged.
        match serde_json::to_vec(&view(entry)) {
            Ok(line) => {
                lines.extend_from_slice(&line);
                lines.push(b'\n');
            }
            Err(error) => {
                tracing::error!(%error, sequence = entry.sequence, "cannot serialize an audit entry")
            }
        }
    }
    Ok(Some((Bytes::from(lines), last)))
}

fn view(entry: &AuditEntry) -> AuditEntryView {
    AuditEntryView {
        sequence: entry.sequence,
        at: jiff::Timestamp::from_millisecond(entry.at)
            .map(|t| t.to_string())
            .unwrap_or_default(),
        at_millis: entry.at,
        actor: entry.actor.clone(),
        action: entry.action.clone(),
        subject: entry.subject.clone(),
        payload: entry.payload.clone(),
        previous_hash: entry.previous_hash.clone(),
        hash: entry.hash.clone(),
    }
}
